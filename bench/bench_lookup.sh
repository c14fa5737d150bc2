#!/usr/bin/env bash
# bench_lookup.sh BENCH_LOOKUP_BIN — the shard lookup's CPU per 10 s hash query over the edge
# benchmark's 100 h index (DATA/bench/edge-100h.idx, built by `make bench-edge`; skipped when
# missing), in-process: wall-clock p50/p99 (3 passes over the q1536 set's 768 10 s queries) and
# callgrind's instruction count of sh_shard_lookup (48 queries), against one shard (12.5 h) and
# all 8. Instructions are the figure that stays put on a loaded machine. Alone: `make bench-lookup`.
set -eu
BIN="$1"
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
IDX="$DATA/bench/edge-100h.idx"
if [ ! -f "$IDX" ]; then
  echo "   (skipped: no $IDX; make bench-edge generates it)"
  exit 0
fi
WORK=$(mktemp -d /tmp/sh-bench-lookup.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "   machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" --work "$WORK" --reps 3 | sed 's/^/   /'
if ! command -v valgrind > /dev/null; then
  echo "   (no valgrind: instruction counts skipped)"
  exit 0
fi
NQ=48
for k in 1 8; do
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$k" --toggle-collect=sh_shard_lookup \
    "$BIN" --work "$WORK" --max-queries $NQ --shards $k > "$WORK/cg.$k.log" 2>&1
  ir=$(awk '/I +refs:/ { gsub(",", "", $NF); print $NF }' "$WORK/cg.$k.log")
  awk -v ir="$ir" -v k="$k" -v nq="$NQ" 'BEGIN {
    printf "   10 s hash query, %d shard%s (%5.1f h): %6.2f M instructions (callgrind, sh_shard_lookup, %d queries)\n",
      k, (k > 1 ? "s" : " "), 100 * k / 8, ir / nq / 1e6, nq }'
done
