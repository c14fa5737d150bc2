#!/usr/bin/env bash
# The scale benchmark's index over HTTP: a real `soundhash edge --shards all` whose --data is a copy
# of bench_scale's built shards (bench_scale build writes the edge's layout, DIR/shard-N), an idle
# `soundhash broker` for its Kafka side, and every 10 s query of the query set POSTed once as hashes
# (the binary form, fingerprinted by the client beforehand) and once as audio, one client
# (bench_edge_tool match): latency p50/p99 per query, the edge's CPU per match, top-1 and false
# matches.
#
#   bench/bench_scale_edge.sh HOURS [QUERY_DIR]    (after `bench_scale build --hours HOURS`;
#                                                   default QUERY_DIR: DATA/queries/dev)
# SH_BENCH_MATCH_THREADS: the edge's --match-threads (default: the edge's default, 2).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SH_BENCH_BIN:-$ROOT/build/soundhash}"
TOOL="${SH_BENCH_EDGE_TOOL:-$ROOT/build/bench/bench_edge_tool}"
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
HOURS="${1:?usage: bench_scale_edge.sh HOURS [QUERY_DIR]}"
QDIR="${2:-$DATA/queries/dev}"
MT=(); [ -z "${SH_BENCH_MATCH_THREADS:-}" ] || MT=(--match-threads "$SH_BENCH_MATCH_THREADS")
FPV=$(awk '$2 == "SH_FP_VERSION" {print $3}' "$ROOT/core/engine/sh_fp.h")
SRC="$DATA/bench/scale/fp$FPV/shards-${HOURS}h"
[ -f "$SRC/built" ] || { echo "no built index at $SRC (bench_scale build --hours $HOURS)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/sh-bench-scale-edge.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
wait_for() { # wait_for SECS cmd...
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" > /dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || { echo "timeout: $*" >&2; return 1; }; sleep 0.1; done
}
echo "   machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
mkdir -p "$TMP/data"
cp -r "$SRC"/shard-* "$TMP/data/" # the edge writes its positions into the shards: a copy
"$BIN" broker --bootstrap-file "$TMP/boot" > /dev/null 2> "$TMP/broker.log" &
PIDS+=($!)
wait_for 20 test -s "$TMP/boot"
"$BIN" edge --brokers "$(cat "$TMP/boot")" --listen 127.0.0.1:0 --data "$TMP/data" --shards all \
  "${MT[@]}" > /dev/null 2> "$TMP/edge.log" &
EPID=$!
PIDS+=("$EPID")
wait_for 60 grep -q event=http_listening "$TMP/edge.log"
PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$TMP/edge.log" | head -n1)
wait_for 120 curl -fsS "127.0.0.1:$PORT/ready"
echo "   edge (--match-threads ${SH_BENCH_MATCH_THREADS:-default}) over $SRC: $(curl -fsS "127.0.0.1:$PORT/v1/shards" | jq -r '"\(.shards | map(.tracks) | add) tracks, \(.shards | map(.postings) | add) postings in \(.shards | length) shards"')"
for mode in hashes audio; do
  as=(); [ "$mode" = audio ] || as=(--hashes 1) # bench_edge_tool: --hashes present = hashes
  "$TOOL" match --url "http://127.0.0.1:$PORT" --queries "$QDIR" --len 10 --clients 1 "${as[@]}" \
    --label "${HOURS} h, 10 s queries as $mode, 1 client" --pid "$EPID" | sed 's/^/   /'
done
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
