#!/usr/bin/env bash
# Scale benchmark (issue 13): the dev corpus indexed among distinct distractor tracks made from
# real Debian game music, at each size of the curve, queried in-process with the hashes given
# (bench_scale: 8 shards as one edge holds them, each looked up and ranked as the edge does).
#
#   bench/bench_scale.sh [BENCH_SCALE_BIN] [HOURS...]     (defaults: build/bench/bench_scale,
#                                                          10 100 1000)
#
# Steps (each cached under $SOUNDHASH_DATA_DIR, so only the first run pays for it):
#   1. bench/make_distractors.sh: the source music (corpus/distract/manifest.csv)
#   2. bench_scale gen --hours MAX: the distractor fingerprints (the first sources in manifest
#      order x 44 speed/reversal/inversion variants, see bench_scale.c), bench/scale/fp<V>/src
#   3. per size: bench_scale build (8 LMDB shards, bench/scale/fp<V>/shards-<H>h) and query
# Knobs: SH_BENCH_SCALE_THREADS (gen threads, 2), SH_BENCH_SCALE_REPS (query passes, 2),
# SH_BENCH_SCALE_QUERIES (query set dir; default DATA/q1536/queries/dev, else DATA/queries/dev),
# SH_BENCH_SCALE_NICE (niceness of gen and build, 15: the machine is shared).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/build/bench/bench_scale}"
shift || true
HOURS=("$@")
[ ${#HOURS[@]} -gt 0 ] || HOURS=(10 100 1000)
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
THREADS="${SH_BENCH_SCALE_THREADS:-2}"
REPS="${SH_BENCH_SCALE_REPS:-2}"
NICE="${SH_BENCH_SCALE_NICE:-15}"
QDIR="${SH_BENCH_SCALE_QUERIES:-$DATA/q1536/queries/dev}"
[ -f "$QDIR/ground_truth.csv" ] || QDIR="$DATA/queries/dev"
[ -d "$DATA/corpus/dev" ] && [ -f "$QDIR/ground_truth.csv" ] ||
  { echo "   (skipped: no corpus or queries under $DATA; scripts/data/make_corpus.sh, make_queries.sh)"; exit 0; }
[ -x "$BIN" ] || { echo "   (not built: $BIN)"; exit 1; }
say() { echo "   $*"; }
say "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
[ -f "$DATA/corpus/distract/manifest.csv" ] || nice -n "$NICE" "$ROOT/bench/make_distractors.sh" | sed 's/^/   /'
max=0
for h in "${HOURS[@]}"; do awk -v a="$h" -v b="$max" 'BEGIN { exit !(a > b) }' && max=$h; done
nice -n "$NICE" "$BIN" gen --data "$DATA" --hours "$max" --threads "$THREADS" | sed 's/^/   /'
say "queries: $QDIR"
for h in "${HOURS[@]}"; do
  nice -n "$NICE" "$BIN" build --data "$DATA" --hours "$h" | sed 's/^/   /'
  "$BIN" query --data "$DATA" --hours "$h" --queries "$QDIR" --reps "$REPS" | sed 's/^/   /'
done
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
