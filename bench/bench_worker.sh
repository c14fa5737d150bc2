#!/usr/bin/env bash
# Worker end-to-end throughput vs raw fingerprinting, and worker peak memory.
#
#   bench/bench_worker.sh [BIN] [THREADS]      (defaults: build/soundhash, 2)
#
# Against a local `soundhash broker` (BENCH_KAFKA=real: a real Apache Kafka node, ops/kafka.sh;
# BENCH_KAFKA_NODES of them) and a private PostgreSQL (`soundhash db start`), with the dev
# corpus ($SOUNDHASH_DATA_DIR/corpus/dev, scripts/data/make_corpus.sh):
#   raw      `soundhash fingerprint` over the same files, THREADS processes in parallel
#            (decode + fingerprint, the work of one worker thread, without Kafka or PostgreSQL)
#   worker   a running worker (group joined first), events published, clock stopped when every
#            track is in the database: audio-hours per wall-hour, tracks/s, ratio to raw
#   memory   the worker's peak RSS (VmHWM) on the corpus, and a fresh worker's (same group, so it
#            only sees the new event) on one long
#            sox-made FLAC (default 90 min; BENCH_LONG_S), to show memory does not grow with length
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$(realpath "${1:-$ROOT/build/soundhash}")"
THREADS="${2:-2}"
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
CORPUS="$DATA/corpus/dev"
LONG_S="${BENCH_LONG_S:-5400}"
[ -d "$CORPUS" ] || { echo "   (skipped: no corpus at $CORPUS; run scripts/data/make_corpus.sh)"; exit 0; }
TMP=$(mktemp -d /tmp/sh-bench-worker.XXXXXX)
PIDS=()
cleanup() {
  # TERM and reap quietly (a SIGKILLed background job makes bash print "Killed").
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  "$BIN" db stop --dir "$TMP/pg" > /dev/null 2>&1 || true
  [ -z "${KAFKA_DIR:-}" ] || "$ROOT/ops/kafka.sh" stop --kill --dir "$KAFKA_DIR" > /dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
now() { date +%s.%N; }
wait_for() { # wait_for SECS cmd...
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" > /dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || { echo "timeout: $*" >&2; return 1; }; sleep 0.05; done
}

mkdir -p "$TMP/media"
cp "$CORPUS"/*.ogg "$TMP/media/"
mapfile -t FILES < <(ls "$TMP/media"/*.ogg)
N=${#FILES[@]}

# ---- raw fingerprinting: THREADS processes over interleaved shares of the files -----------------
# Sets RAW_S (wall) and RAW_CPU (user+sys of the processes).
raw_round() {
  local t0 t1 k i part raw_pids=()
  t0=$(now)
  for ((k = 0; k < THREADS; k++)); do
    part=(); for ((i = k; i < N; i += THREADS)); do part+=("${FILES[$i]}"); done
    /usr/bin/time -f '%U %S' -o "$TMP/raw.cpu.$k" "$BIN" fingerprint "${part[@]}" > "$TMP/raw.$k" 2> /dev/null &
    raw_pids+=($!)
  done
  wait "${raw_pids[@]}" || true   # a file the decoder rejects is counted below, not fatal
  t1=$(now)
  RAW_S=$(echo "$t1 - $t0" | bc -l)
  RAW_CPU=$(cat "$TMP"/raw.cpu.* | awk '/^[0-9.]+ [0-9.]+$/ {s += $1 + $2} END {print s}')
}
raw_round
# Tracks the fingerprinter accepts are the ones the worker must store (the others go to the DLQ).
N_OK=$(cat "$TMP"/raw.[0-9]* | grep -c '"hashes"')
AUDIO_S=$(cat "$TMP"/raw.[0-9]* | sed -n 's/.*"duration_s":\([0-9.]*\).*/\1/p' | awk '{s += $1} END {printf "%.1f", s}')

# ---- stack -----------------------------------------------------------------------------------
if [ "${BENCH_KAFKA:-mock}" = real ]; then # a real Apache Kafka node (ops/kafka.sh)
  KAFKA_DIR="$TMP/kafka"
  SOUNDHASH_BIN="$BIN" "$ROOT/ops/kafka.sh" start --brokers "${BENCH_KAFKA_NODES:-1}" \
    --dir "$KAFKA_DIR" > /dev/null 2> "$TMP/broker.log"
  echo "$(cat "$KAFKA_DIR/bootstrap")" > "$TMP/boot"
else
  "$BIN" broker --bootstrap-file "$TMP/boot" > /dev/null 2> "$TMP/broker.log" &
  PIDS+=($!)
fi
echo "   Kafka: ${BENCH_KAFKA:-mock}$([ "${BENCH_KAFKA:-mock}" = real ] && echo " (Apache Kafka, ${BENCH_KAFKA_NODES:-1} node(s))")"
DSN=$("$BIN" db start --dir "$TMP/pg" 2> "$TMP/pg.log")
"$BIN" db migrate --dsn "$DSN" > /dev/null 2>&1
wait_for 20 test -s "$TMP/boot"
BOOT=$(cat "$TMP/boot")
count() { psql "$DSN" -XAtq -c "SELECT count(*) FROM tracks WHERE status = 'active'"; }
have() { [ "$(count)" -ge "$1" ]; }

start_worker() { # start_worker NAME → WPID
  "$BIN" worker --brokers "$BOOT" --dsn "$DSN" --media-root "$TMP/media" --threads "$THREADS" \
    --group bench --http 127.0.0.1:0 --log-level info > /dev/null 2> "$TMP/$1.log" &
  WPID=$!
  PIDS+=("$WPID")
  wait_for 60 grep -q 'event=partitions_assigned' "$TMP/$1.log"
  WPORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$TMP/$1.log" | head -n1)
}
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# ---- worker on the corpus ----------------------------------------------------------------------
# The machine is shared, so raw and worker rounds alternate and the best of ROUNDS of each counts.
# Each round republishes every file (a newer version), so the worker really re-fingerprints and
# rewrites every track; a round ends when the change log holds one more entry per track.
cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
# Progress from the worker's own /metrics: cheaper than a psql process per poll, which would steal
# CPU from the worker on a small machine. Rows are checked with psql once a round is over.
events_ok() {
  curl -sf "http://127.0.0.1:$WPORT/metrics" |
    awk '$1 ~ /^soundhash_worker_events_total\{.*result="(ok|dlq)"/ {s += $2} END {print s + 0}'
}
have_events() { [ "$(events_ok)" -ge "$1" ] || { sleep 0.05; return 1; }; }
ROUNDS="${BENCH_ROUNDS:-3}"
start_worker corpus
BEST_RAW=$RAW_S BEST_RAW_CPU=$RAW_CPU BEST_WK=999999 BEST_WK_CPU=0
for ((r = 1; r <= ROUNDS; r++)); do
  if [ "$r" -gt 1 ]; then
    raw_round
    if (( $(echo "$RAW_S < $BEST_RAW" | bc) )); then BEST_RAW=$RAW_S BEST_RAW_CPU=$RAW_CPU; fi
  fi
  c0=$(cpu_s "$WPID")
  t0=$(now)
  "$BIN" ingest publish --brokers "$BOOT" --media-root "$TMP/media" "${FILES[@]}" > /dev/null 2>&1
  wait_for 600 have_events "$((r * N))"
  t1=$(now)
  WK_S=$(echo "$t1 - $t0" | bc -l)
  WK_CPU=$(echo "$(cpu_s "$WPID") - $c0" | bc -l)
  [ "$(psql "$DSN" -XAtq -c 'SELECT count(*) FROM change_log')" = "$((r * N_OK))" ] ||
    { echo "   round $r: change log holds $(psql "$DSN" -XAtq -c "SELECT count(*) FROM change_log"), want $((r * N_OK))" >&2; exit 1; }
  printf '   round %d: raw %.2f s, worker %.2f s\n' "$r" "$RAW_S" "$WK_S"
  if (( $(echo "$WK_S < $BEST_WK" | bc) )); then BEST_WK=$WK_S BEST_WK_CPU=$WK_CPU; fi
done
HWM_CORPUS=$(hwm_kb "$WPID")
kill -TERM "$WPID"; wait "$WPID" || true

# ---- one long file, fresh worker -----------------------------------------------------------------
mkdir -p "$DATA/bench"
LONG="$DATA/bench/long_${LONG_S}s.flac"
if [ ! -s "$LONG" ]; then
  sox -n -r 22050 -c 1 "$LONG.tmp.flac" synth "$LONG_S" square 120-2400 pluck 330 tremolo 3 40 vol 0.3 2> /dev/null
  mv "$LONG.tmp.flac" "$LONG"
fi
cp "$LONG" "$TMP/media/long.flac"
start_worker long
t0=$(now)
"$BIN" ingest publish --brokers "$BOOT" --media-root "$TMP/media" "$TMP/media/long.flac" > /dev/null 2>&1
wait_for 900 have "$((N_OK + 1))"   # the corpus tracks plus the long one
t1=$(now)
LONG_WK_S=$(echo "$t1 - $t0" | bc -l)
HWM_LONG=$(hwm_kb "$WPID")
kill -TERM "$WPID"; wait "$WPID" || true
t0=$(now); "$BIN" fingerprint "$TMP/media/long.flac" > /dev/null; t1=$(now)
LONG_RAW_S=$(echo "$t1 - $t0" | bc -l)
LONG_MB=$(du -m "$TMP/media/long.flac" | cut -f1)

awk -v n="$N_OK" -v nall="$N" -v a="$AUDIO_S" -v raw="$BEST_RAW" -v wk="$BEST_WK" -v th="$THREADS" \
    -v rc="$BEST_RAW_CPU" -v wc="$BEST_WK_CPU" -v rounds="$ROUNDS" \
    -v hc="$HWM_CORPUS" -v hl="$HWM_LONG" -v ls="$LONG_S" -v lw="$LONG_WK_S" -v lr="$LONG_RAW_S" \
    -v lmb="$LONG_MB" 'BEGIN {
  printf "   corpus: %d tracks (%d rejected by the decoder), %.1f min of audio, %d threads\n", n, nall - n, a / 60, th
  printf "   best of %d rounds each:\n", rounds
  printf "   raw fingerprint (%d processes):  %7.2f s wall  %8.0f audio-h/wall-h  %6.2f tracks/s  cpu %.2f s\n", th, raw, a / raw, n / raw, rc
  printf "   worker end to end:               %7.2f s wall  %8.0f audio-h/wall-h  %6.2f tracks/s  cpu %.2f s\n", wk, a / wk, n / wk, wc
  printf "   worker / raw throughput: %.1f %% (target >= 80 %%); worker process cpu / raw cpu: %.2f\n", 100 * raw / wk, wc / rc
  printf "   worker peak RSS (VmHWM): %.1f MiB on the corpus\n", hc / 1024
  printf "   long file: %.0f min FLAC (%d MB): worker %.2f s (raw %.2f s), fresh worker peak RSS %.1f MiB\n", ls / 60, lmb, lw, lr, hl / 1024
}'
