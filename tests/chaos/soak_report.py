#!/usr/bin/env python3
"""soak_report.py — the soak's figures and bounds from its CSV (tests/chaos/sample.py).

    soak_report.py CSV WARMUP_S RSS_GROWTH_MB MAX_SEQ_LAG MAX_EDGE_LAG_S MATCH_LOG

Prints throughput, lag and per-process memory; exits 1 when, after the warm-up, a process's
anonymous RSS has a least-squares growth over the rest of the run above min(RSS_GROWTH_MB, 10 % of
its mean) (2 MB is noise for any process), or the replicator lag or the edge lag exceeds its bound.
The mock broker (`soundhash broker`) is reported, not judged: it keeps every message it was sent
in memory, by design, so it grows with the traffic.
"""
import csv, sys
path, warm, growth_mb, max_lag, max_edge_s, mlog = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
rows = [r for r in csv.DictReader(open(path))]
num = lambda r, k: float(r[k]) if r[k] not in ("", "null") else 0.0
after = [r for r in rows if num(r, "t_s") >= warm]
bad = []
t_all = num(rows[-1], "t_s") - num(rows[0], "t_s")
pub = num(rows[-1], "published") - num(rows[0], "published")
ev = num(rows[-1], "worker_events") - num(rows[0], "worker_events")
print("samples %d over %.0f s (warm-up %.0f s)" % (len(rows), t_all, warm))
print("throughput: %.2f events/s published, %.2f events/s processed by the worker" % (pub / t_all, ev / t_all))
lags = [num(r, "seq_lag") for r in after]
elags = [num(r, "edge_lag_ms") / 1000 for r in after]
print("replicator lag after warm-up: max %.0f changes, mean %.1f (bound %.0f)" % (max(lags), sum(lags) / len(lags), max_lag))
print("edge lag after warm-up: max %.2f s, mean %.2f s (bound %.0f s)" % (max(elags), sum(elags) / len(elags), max_edge_s))
if max(lags) > max_lag: bad.append("replicator lag %.0f > %.0f" % (max(lags), max_lag))
if max(elags) > max_edge_s: bad.append("edge lag %.1f s > %.0f s" % (max(elags), max_edge_s))
span = num(after[-1], "t_s") - num(after[0], "t_s")
for k in [c for c in rows[0] if c.startswith("anon_")]:
    xs = [num(r, "t_s") for r in after]; ys = [num(r, k) / 1024 for r in after]
    n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    grow = slope * span
    lim = min(growth_mb, 0.10 * my) if my > 0 else growth_mb
    ok = grow <= max(lim, 2.0)  # under 2 MB is noise for any process
    rss = [num(r, "rss" + k[4:]) / 1024 for r in after]
    print("%-11s anon RSS mean %7.1f MB (min %7.1f, max %7.1f), fitted growth after warm-up %+6.2f MB (%+.3f MB/min); RSS %.1f-%.1f MB%s" % (
        k[5:-3], my, min(ys), max(ys), grow, slope * 60, min(rss), max(rss), "" if ok else ("  (not judged: holds every message)" if k == "anon_broker_kb" else "  <-- LEAK?")))
    if not ok and k != "anon_broker_kb":
        bad.append("%s grows %.1f MB after warm-up" % (k, grow))
codes = {}
for line in open(mlog):
    f = line.rstrip("\n").split("\t")
    codes[f[3]] = codes.get(f[3], 0) + 1
print("match requests: %s" % " ".join("%s=%d" % kv for kv in sorted(codes.items())))
for b in bad: print("FAIL:", b)
sys.exit(1 if bad else 0)
