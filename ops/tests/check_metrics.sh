#!/usr/bin/env bash
# ops/tests/check_metrics.sh — every metric name the alert rules (ops/prometheus/alerts.yml) and
# the Grafana dashboard (ops/grafana/soundhash.json) query is one a SoundHash process really
# exports. The names are scraped, not grepped: a worker, a replicator and an edge are started
# (the worker and the replicator against a database that is not there — both serve /metrics while
# they wait for it; the edge, with an --upstream so that its upstream metrics exist, against
# `soundhash broker`), and the `# TYPE` lines of their /metrics
# are the truth. A histogram `h` counts as h_bucket, h_sum and h_count. Runs in a few seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
TMP=$(mktemp -d /tmp/sh-check-metrics.XXXXXX)
PIDS=()
# SIGKILL: nothing here holds data worth a clean exit, and graceful stops take seconds.
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
die() { echo "check_metrics: $*" >&2; exit 1; }

# Waits up to 20 s for `event=http_listening ... port=N` in log $1 and prints N.
port_of() {
  for _ in $(seq 200); do
    p=$(sed -n 's/.*event=http_listening .*port=\([0-9]*\).*/\1/p' "$1" | head -1)
    [ -n "$p" ] && { echo "$p"; return 0; }
    sleep 0.1
  done
  cat "$1" >&2
  die "no http_listening line in $1"
}

# Scrapes 127.0.0.1:$1/metrics into $2, retrying up to 20 s (the edge answers 503 while starting).
scrape() {
  for _ in $(seq 200); do
    curl -fsS "127.0.0.1:$1/metrics" > "$2" 2> /dev/null && return 0
    sleep 0.1
  done
  die "no /metrics from 127.0.0.1:$1"
}

"$BIN" broker --bootstrap-file "$TMP/boot" > /dev/null 2> "$TMP/broker.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$TMP/boot" ] && break; sleep 0.1; done
[ -s "$TMP/boot" ] || die "soundhash broker did not start: $(cat "$TMP/broker.log")"
BOOT=$(cat "$TMP/boot")
NODB='host=127.0.0.1 port=1 dbname=none connect_timeout=1'
mkdir -p "$TMP/media"

"$BIN" worker --brokers "$BOOT" --dsn "$NODB" --media-root "$TMP/media" --http 127.0.0.1:0 \
  --db-wait 60 2> "$TMP/worker.log" &
PIDS+=($!)
"$BIN" replicator --brokers "$BOOT" --dsn "$NODB" --http 127.0.0.1:0 --connect-timeout 60 \
  2> "$TMP/replicator.log" &
PIDS+=($!)
"$BIN" edge --brokers "$BOOT" --data "$TMP/edge" --shards 0-3 --listen 127.0.0.1:0 \
  --upstream http://127.0.0.1:1 2> "$TMP/edge.log" &
PIDS+=($!)

for c in worker replicator edge; do
  scrape "$(port_of "$TMP/$c.log")" "$TMP/$c.metrics"
done
cat "$TMP"/*.metrics | sed -n 's/^# TYPE \([^ ]*\) \([a-z]*\)$/\1 \2/p' | sort -u > "$TMP/exported"
[ "$(wc -l < "$TMP/exported")" -ge 40 ] || die "too few metric families scraped: $(cat "$TMP/exported")"

"${PYTHON:-/usr/bin/python3}" - "$TMP/exported" "$ROOT/ops/prometheus/alerts.yml" "$ROOT/ops/grafana/soundhash.json" <<'PY'
import json, re, sys, yaml
exported = dict(l.split() for l in open(sys.argv[1]))
names = set(exported)
for n, kind in exported.items():
    if kind == "histogram":
        names |= {n + "_bucket", n + "_sum", n + "_count"}
exprs = []
for g in yaml.safe_load(open(sys.argv[2]))["groups"]:
    for r in g["rules"]:
        exprs.append(("alerts.yml " + r.get("alert", r.get("record", "?")), r["expr"]))
for p in json.load(open(sys.argv[3]))["panels"]:
    for t in p.get("targets", []):
        exprs.append((f"soundhash.json panel '{p['title']}'", t["expr"]))
bad = 0
used = set()
for where, e in exprs:
    # Drop string literals (label values) before looking for metric names.
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
    for tok in re.findall(r'[a-zA-Z_:][a-zA-Z0-9_:]*', e):
        if tok.startswith("soundhash_"):
            used.add(tok)
            if tok not in names:
                print(f"check_metrics: {where}: {tok} is not exported by any process", file=sys.stderr)
                bad += 1
if not exprs or not used:
    print("check_metrics: no expressions found", file=sys.stderr)
    bad += 1
print(f"check_metrics: {len(exprs)} expressions, {len(used)} metric names, all exported "
      f"({len(exported)} families scraped)" if not bad else f"check_metrics: {bad} unknown names")
sys.exit(1 if bad else 0)
PY
