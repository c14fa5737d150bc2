#!/usr/bin/env python3
"""sample.py — the soak's sampler: one CSV row every --every seconds for --seconds seconds.

    sample.py --csv F --every S --seconds N --published FILE --matches LOG
              --worker PORT:PID --replicator PORT:PID --edge PORT:PID --broker PID
              --pgdata DIR --matcher PID

One process for the whole run (a shell loop spawning curl/awk/psql per probe costs more than it
measures on a loaded machine). Columns: t_s, published (sum of FILE's lines: events the loader
had acknowledged), worker_events, published_per_s, events_per_s, primary_seq and replicator_seq
(from the replicator's metrics), seq_lag, edge_lag_ms (max over shards of /v1/shards lag_ms),
edge_deltas, matches_ok (200 answers in LOG), then the RSS in kB of the worker, replicator, edge,
broker, PostgreSQL (postmaster and all its children) and the matcher, then the same processes'
anonymous RSS (RssAnon: heap and stacks, without the file pages an mmapped LMDB shard or
PostgreSQL's shared buffers bring in as they are touched — where a leak shows). A probe that fails leaves
its cell empty; sampling never stops early.
"""
import argparse
import json
import os
import time
import urllib.request


def get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s%s" % (port, path), timeout=3) as r:
            return r.read().decode()
    except Exception:
        return None


def metric(text, name):
    if text is None:
        return ""
    s, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 2 and (parts[0] == name or parts[0].startswith(name + "{")):
            s += float(parts[1])
            found = True
    return "%.0f" % s if found else ""


def rss_kb(pid, key="VmRSS:"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def anon_kb(pid):
    return rss_kb(pid, "RssAnon:")


def children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def pg_rss(pgdata, fn=rss_kb):
    try:
        with open(os.path.join(pgdata, "postmaster.pid")) as f:
            pm = int(f.readline())
    except (OSError, ValueError):
        return 0
    return fn(pm) + sum(fn(c) for c in children(pm))


def count_lines(path, pred=lambda line: True):
    try:
        with open(path) as f:
            return sum(1 for line in f if pred(line))
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser()
    for k in ("csv", "published", "matches", "worker", "replicator", "edge", "pgdata"):
        ap.add_argument("--" + k, required=True)
    ap.add_argument("--broker", type=int, required=True)
    ap.add_argument("--matcher", type=int, required=True)
    ap.add_argument("--every", type=float, default=5)
    ap.add_argument("--seconds", type=float, required=True)
    a = ap.parse_args()
    wport, wpid = a.worker.split(":")
    rport, rpid = a.replicator.split(":")
    eport, epid = a.edge.split(":")
    cols = ["t_s", "published", "worker_events", "published_per_s", "events_per_s", "primary_seq",
            "replicator_seq", "seq_lag", "edge_lag_ms", "edge_deltas", "matches_ok",
            "rss_worker_kb", "rss_replicator_kb", "rss_edge_kb", "rss_broker_kb",
            "rss_postgres_kb", "rss_matcher_kb", "anon_worker_kb", "anon_replicator_kb",
            "anon_edge_kb", "anon_broker_kb", "anon_postgres_kb", "anon_matcher_kb"]
    t0 = time.monotonic()
    prev = None
    with open(a.csv, "w", buffering=1) as out:
        out.write(",".join(cols) + "\n")
        while True:
            t = time.monotonic() - t0
            if t > a.seconds:
                break
            pub = 0
            try:
                with open(a.published) as f:
                    pub = sum(int(x) for x in f.read().split())
            except (OSError, ValueError):
                pass
            wm, rm, em = get(wport, "/metrics"), get(rport, "/metrics"), get(eport, "/metrics")
            ev = metric(wm, "soundhash_worker_events_total")
            pseq = metric(rm, "soundhash_replicator_primary_seq")
            rseq = metric(rm, "soundhash_replicator_last_seq")
            lag = ""
            sh = get(eport, "/v1/shards")
            if sh:
                try:
                    lag = "%d" % max(s["lag_ms"] for s in json.loads(sh)["shards"])
                except (ValueError, KeyError):
                    pass
            rates = ["", ""]
            if prev and ev != "":
                dt = t - prev[0]
                rates = ["%.3f" % ((pub - prev[1]) / dt), "%.3f" % ((float(ev) - prev[2]) / dt)]
            if ev != "":
                prev = (t, pub, float(ev))
            row = ["%.1f" % t, str(pub), ev] + rates + [
                pseq, rseq, ("%d" % (float(pseq) - float(rseq))) if pseq and rseq else "", lag,
                metric(em, "soundhash_edge_deltas_applied_total"),
                str(count_lines(a.matches, lambda line: line.split("\t")[3:4] == ["200"])),
                str(rss_kb(int(wpid))), str(rss_kb(int(rpid))), str(rss_kb(int(epid))),
                str(rss_kb(a.broker)), str(pg_rss(a.pgdata)), str(rss_kb(a.matcher)),
                str(anon_kb(int(wpid))), str(anon_kb(int(rpid))), str(anon_kb(int(epid))),
                str(anon_kb(a.broker)), str(pg_rss(a.pgdata, anon_kb)), str(anon_kb(a.matcher))]
            out.write(",".join(row) + "\n")
            time.sleep(max(0.0, a.every - (time.monotonic() - t0 - t)))


if __name__ == "__main__":
    main()
