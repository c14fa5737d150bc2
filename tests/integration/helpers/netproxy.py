#!/usr/bin/env python3
"""netproxy.py — TCP relays with a one-way delay, for the region tests.

This machine's kernel has no netem qdisc (`tc qdisc add ... netem` says "unknown qdisc"), so the
latency between namespace-separated regions is added here, in user space: every byte read on one
side is written to the other DELAY ms later, in order, in both directions (RTT = 2 x DELAY).
Partitions are real: the tests take the namespace's veth down; so is packet loss (82_regions.sh
drops packets with iptables' `statistic` match, and the kernel's TCP retransmits them).

  netproxy.py --delay-ms 40 LISTEN_HOST:PORT=TARGET_HOST:PORT [...]

Prints "ready" on stdout once every listener is bound. Runs until SIGTERM.
"""
import argparse
import asyncio
import signal
import sys
import time

CHUNK = 65536


async def pump(reader, writer, delay_s):
    """Copies reader to writer, each chunk delivered delay_s after it was read."""
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
            await q.put((time.monotonic() + delay_s, data))
    except (ConnectionError, OSError):
        pass
    await q.put((0, None))
    try:
        await task
        writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        pass


async def handle(client_r, client_w, target, delay_s):
    host, port = target
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except (OSError, asyncio.TimeoutError):
        client_w.close()
        return
    await asyncio.gather(pump(client_r, up_w, delay_s), pump(up_r, client_w, delay_s))
    for w in (client_w, up_w):
        try:
            w.close()
        except OSError:
            pass


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("maps", nargs="+", help="LISTEN_HOST:PORT=TARGET_HOST:PORT")
    a = ap.parse_args()
    delay_s = a.delay_ms / 1000.0
    servers = []
    for m in a.maps:
        listen, _, target = m.partition("=")
        lh, lp = hostport(listen)
        t = hostport(target)
        servers.append(await asyncio.start_server(
            lambda r, w, t=t: handle(r, w, t, delay_s), lh, lp, reuse_address=True))
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OSError as e:
        print(f"netproxy: {e}", file=sys.stderr)
        sys.exit(1)
