#!/usr/bin/env python3
"""matcher.py — the storm's clients: keep matching query clips against the edges.

    matcher.py --edges URL[,URL...] --queries DIR --out LOG --stop FILE [--seed N] [--rate R]

DIR holds one `soundhash fingerprint --hashes --query` JSON line per source audio file, named
<source>.json. Until FILE exists, about R requests a second (default 4) go to a random edge with
a random source's hashes (POST /v1/match?top=3, Content-Type application/json, 5 s timeout).
One line per request in LOG (tab-separated):
    unix_ms  edge  source  outcome  track_id  candidates
outcome: 200 (track_id "-" when no match), a non-200 HTTP status (503 = a clean refusal), or
"down" (connection refused or reset: the edge is being restarted) / "timeout". The storm driver
judges the answers afterwards against which track ids held which source (tests/chaos/storm.sh).
Only the standard library: the queries are read once, the request loop is sequential.
"""
import argparse
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=4.0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    edges = [e for e in a.edges.split(",") if e]
    queries = {}
    for name in sorted(os.listdir(a.queries)):
        if name.endswith(".json"):
            with open(os.path.join(a.queries, name), "rb") as f:
                queries[name[:-5]] = f.read()
    if not edges or not queries:
        sys.exit("matcher: no edges or no queries")
    sources = sorted(queries)
    period = 1.0 / a.rate
    with open(a.out, "a", buffering=1) as log:
        while not os.path.exists(a.stop):
            t0 = time.monotonic()
            edge = rng.choice(edges)
            src = rng.choice(sources)
            req = urllib.request.Request(edge + "/v1/match?top=3", data=queries[src], method="POST",
                                         headers={"Content-Type": "application/json"})
            outcome, track, cands = "", "-", "-"
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    body = json.loads(r.read())
                    outcome = str(r.status)
                    m = body.get("match")
                    if m:
                        track = m["track_id"]
                    cands = ",".join(c["track_id"] for c in body.get("candidates") or []) or "-"
            except urllib.error.HTTPError as e:
                outcome = str(e.code)
                e.read()
            except (ConnectionError, urllib.error.URLError, socket.timeout, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                timed_out = isinstance(reason, (socket.timeout, TimeoutError))
                outcome = "timeout" if timed_out else "down"
            except (ValueError, KeyError, TypeError):
                outcome = "badjson"  # an answer that is not the documented JSON counts as wrong
            log.write("%d\t%s\t%s\t%s\t%s\t%s\n" % (time.time() * 1000, edge, src, outcome, track,
                                                    cands))
            left = period - (time.monotonic() - t0)
            if left > 0:
                time.sleep(left)


if __name__ == "__main__":
    main()
