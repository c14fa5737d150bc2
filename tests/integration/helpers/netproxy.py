#!/usr/bin/env python3
"""netproxy.py — TCP relays with a one-way delay, for the region tests.

This machine's kernel has no netem qdisc (`tc qdisc add ... netem` says "unknown qdisc"), so the
latency between namespace-separated regions is added here, in user space: every byte read on one
side is written to the other DELAY ms later, in order, in both directions (RTT = 2 x DELAY).
Partitions are real: the tests take the namespace's veth down; so is packet loss (82_regions.sh
drops packets with iptables' `statistic` match, and the kernel's TCP retransmits them).

  netproxy.py --delay-ms 40 [--delay-file FILE] LISTEN_HOST:PORT=TARGET_HOST:PORT [...]

Prints "ready" on stdout once every listener is bound. Runs until SIGTERM. With --delay-file, a
SIGHUP sets the delay to the number of milliseconds FILE holds (the fault storm raises a link's
delay for a while without cutting its connections): bytes read from then on wait the new delay,
bytes already queued keep theirs (a lower delay never reorders: each direction is one queue). The
relay prints "delay N ms" on stdout once the new delay holds, or "delay-file: REASON" on stderr
and keeps the old one.
"""
import argparse
import asyncio
import signal
import sys
import time

CHUNK = 65536


class Delay:
    """The one-way delay in seconds, shared by every pump (changed at run time by SIGHUP)."""

    def __init__(self, ms):
        self.s = ms / 1000.0


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk delivered delay.s (as it was when read) after it was read."""
    q = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    task = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            await q.put((time.monotonic() + delay.s, data))
    except (ConnectionError, OSError):
        pass
    await q.put((0, None))
    try:
        await task
        writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        pass


async def handle(client_r, client_w, target, delay):
    host, port = target
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except (OSError, asyncio.TimeoutError):
        client_w.close()
        return
    await asyncio.gather(pump(client_r, up_w, delay), pump(up_r, client_w, delay))
    for w in (client_w, up_w):
        try:
            w.close()
        except OSError:
            pass


def reload_delay(path, delay):
    try:
        with open(path) as f:
            ms = float(f.read().strip())
        if not 0 <= ms <= 60000:
            raise ValueError("%g ms is outside 0..60000" % ms)
    except (OSError, ValueError) as e:
        print("delay-file: %s" % e, file=sys.stderr, flush=True)
        return
    delay.s = ms / 1000.0
    print("delay %g ms" % ms, flush=True)


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--delay-file", help="SIGHUP reads the delay (ms) from this file")
    ap.add_argument("maps", nargs="+", help="LISTEN_HOST:PORT=TARGET_HOST:PORT")
    a = ap.parse_args()
    delay = Delay(a.delay_ms)
    servers = []
    for m in a.maps:
        listen, _, target = m.partition("=")
        lh, lp = hostport(listen)
        t = hostport(target)
        servers.append(await asyncio.start_server(
            lambda r, w, t=t: handle(r, w, t, delay), lh, lp, reuse_address=True))
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if a.delay_file:
        loop.add_signal_handler(signal.SIGHUP, reload_delay, a.delay_file, delay)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OSError as e:
        print(f"netproxy: {e}", file=sys.stderr)
        sys.exit(1)
