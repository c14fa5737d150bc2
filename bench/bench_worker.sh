#!/usr/bin/env bash
# Worker end-to-end throughput vs raw fingerprinting, and worker peak memory.
#
#   bench/bench_worker.sh [BIN] [THREADS]      (defaults: build/soundhash, 2)
#
# Against a local `soundhash broker` and a private PostgreSQL (`soundhash db start`), with the dev
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
  for p in "${PIDS[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  "$BIN" db stop --dir "$TMP/pg" > /dev/null 2>&1 || true
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

# ---- raw fingerprinting: THREADS processes over interleaved halves ----------------------------
t0=$(now)
for ((k = 0; k < THREADS; k++)); do
  part=(); for ((i = k; i < N; i += THREADS)); do part+=("${FILES[$i]}"); done
  "$BIN" fingerprint "${part[@]}" > "$TMP/raw.$k" &
  PIDS+=($!)
done
wait "${PIDS[@]}" || true   # a file the decoder rejects is reported below, not fatal
PIDS=()
t1=$(now)
RAW_S=$(echo "$t1 - $t0" | bc -l)
# Tracks the fingerprinter accepts are the ones the worker must store (the others go to the DLQ).
N_OK=$(cat "$TMP"/raw.* | grep -c '"hashes"')
AUDIO_S=$(cat "$TMP"/raw.* | sed -n 's/.*"duration_s":\([0-9.]*\).*/\1/p' | awk '{s += $1} END {printf "%.1f", s}')

# ---- stack -----------------------------------------------------------------------------------
"$BIN" broker --bootstrap-file "$TMP/boot" > /dev/null 2> "$TMP/broker.log" &
PIDS+=($!)
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
}
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# ---- worker on the corpus ----------------------------------------------------------------------
start_worker corpus
t0=$(now)
"$BIN" ingest publish --brokers "$BOOT" --media-root "$TMP/media" "${FILES[@]}" > /dev/null 2>&1
wait_for 600 have "$N_OK"
t1=$(now)
WK_S=$(echo "$t1 - $t0" | bc -l)
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
wait_for 900 have "$((N_OK + 1))"
t1=$(now)
LONG_WK_S=$(echo "$t1 - $t0" | bc -l)
HWM_LONG=$(hwm_kb "$WPID")
kill -TERM "$WPID"; wait "$WPID" || true
t0=$(now); "$BIN" fingerprint "$TMP/media/long.flac" > /dev/null; t1=$(now)
LONG_RAW_S=$(echo "$t1 - $t0" | bc -l)
LONG_MB=$(du -m "$TMP/media/long.flac" | cut -f1)

awk -v n="$N_OK" -v nall="$N" -v a="$AUDIO_S" -v raw="$RAW_S" -v wk="$WK_S" -v th="$THREADS" \
    -v hc="$HWM_CORPUS" -v hl="$HWM_LONG" -v ls="$LONG_S" -v lw="$LONG_WK_S" -v lr="$LONG_RAW_S" \
    -v lmb="$LONG_MB" 'BEGIN {
  printf "   corpus: %d tracks (%d rejected by the decoder), %.1f min of audio, %d threads\n", n, nall - n, a / 60, th
  printf "   raw fingerprint (%d processes):  %7.2f s wall  %8.0f audio-h/wall-h  %6.2f tracks/s\n", th, raw, a / raw, n / raw
  printf "   worker end to end:               %7.2f s wall  %8.0f audio-h/wall-h  %6.2f tracks/s\n", wk, a / wk, n / wk
  printf "   worker / raw throughput: %.1f %% (target >= 80 %%)\n", 100 * raw / wk
  printf "   worker peak RSS (VmHWM): %.1f MiB on the corpus\n", hc / 1024
  printf "   long file: %.0f min FLAC (%d MB): worker %.2f s (raw %.2f s), fresh worker peak RSS %.1f MiB\n", ls / 60, lmb, lw, lr, hl / 1024
}'
