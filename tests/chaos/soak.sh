#!/usr/bin/env bash
# tests/chaos/soak.sh — `make soak` (issue 11): sustained ingest and match traffic on the local
# stack (private PostgreSQL, `soundhash broker`, a worker, the replicator, an all-shards edge) for
# SOAK_MINUTES (default 10). Every SOAK_SAMPLE_S seconds (default 5) one CSV row: throughput,
# replication and edge lag, match answers, RSS of every process. Then a PNG (gnuplot), and the
# assertions: after the warm-up (SOAK_WARMUP_S, default 20 % of the run) every process's RSS is
# flat (least-squares slope times the remaining time under SOAK_RSS_GROWTH_MB, default 16 MB,
# and under 10 % of its mean; anonymous RSS, see sample.py; tests/chaos/soak_report.py; the mock
# broker, which keeps every message in memory, is reported, not judged), the lag stays bounded
# (replicator under SOAK_MAX_SEQ_LAG changes behind the primary, default 400; edge lag under
# SOAK_MAX_EDGE_LAG_S, default 30 s), and the run ends converged (`soundhash verify`). Uploads: SOAK_UPLOAD_RATE per second (default 1),
# re-uploads of the dev corpus under SOAK_TRACKS rotating ids (default 150, each re-upload another
# source) with a delete every 10th; matching: SOAK_MATCH_RATE requests per second (default 4).
# Output in SOAK_OUT (default build/soak): soak.csv, soak.png, summary.txt.
# Environment as tests/integration/run.sh gives it; tests/chaos/soak-run.sh sets it for make.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"
. "$SH_ROOT/tests/chaos/lib.sh"

MINUTES=${SOAK_MINUTES:-10}
SAMPLE=${SOAK_SAMPLE_S:-5}
DURATION=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
WARMUP=${SOAK_WARMUP_S:-$(( DURATION / 5 ))}
RATE=${SOAK_UPLOAD_RATE:-1}
NTRACKS=${SOAK_TRACKS:-150}
OUT=${SOAK_OUT:-$SH_ROOT/build/soak}
mkdir -p "$OUT"
C="$SH_TMP/soak"; mkdir -p "$C/q" "$MEDIA/pool"
BG_PIDS=()
soak_cleanup() { touch "$C/stop"; for p in "${BG_PIDS[@]}"; do kill "$p" 2> /dev/null || true; done; wk_cleanup; }
trap soak_cleanup EXIT
echo "soak: ${MINUTES} min, sample every ${SAMPLE} s, warm-up ${WARMUP} s, $RATE uploads/s over $NTRACKS ids"

chaos_media "$MEDIA/pool" "$C/q" "$C"
WK_KAFKA=mock wk_setup
pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
# shellcheck disable=SC2046
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
  -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" "$(dirname "$SH_BIN")/libsoundhash.a" \
  $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"
wk_start w1 --threads 2 --worker-id soak-w1
rp_start rp
ed_start e1 --shards all --snapshot-source "http://127.0.0.1:$RP_PORT"

# ---- the load -----------------------------------------------------------------------------------
loader() { # one publish per second of RATE events (every 10th a delete), ids and sources rotating
  local i=0 start n k id
  start=$(date +%s)
  while [ ! -e "$C/stop" ]; do
    n=$(awk -v r="$RATE" -v s="$(( $(date +%s) - start + 1 ))" 'BEGIN { printf "%d", r * s }')
    echo "track_id,uri" > "$C/manifest.csv"
    local dels=()
    declare -A seen=()
    while [ "$i" -lt "$n" ]; do
      id="soak-$(( i % NTRACKS ))"
      if [ -z "${seen[$id]:-}" ]; then
        seen[$id]=1
        if [ $(( i % 10 )) -eq 9 ]; then dels+=(--track-id "$id")
        else echo "$id,pool/s$(( (i / NTRACKS + i) % NSRC )).ogg" >> "$C/manifest.csv"; fi
      fi
      i=$((i + 1))
    done
    unset seen
    if [ "$(wc -l < "$C/manifest.csv")" -gt 1 ]; then
      "$SH_BIN" ingest publish --brokers "$BOOT" --media-root "$MEDIA" --manifest "$C/manifest.csv" \
        2>> "$C/pub.err" | wc -l >> "$C/published" || true
    fi
    if [ ${#dels[@]} -gt 0 ]; then
      "$SH_BIN" ingest delete --brokers "$BOOT" "${dels[@]}" 2>> "$C/pub.err" | wc -l >> "$C/published" || true
    fi
    sleep 1
  done
}
loader &
BG_PIDS+=($!)
python3 "$SH_ROOT/tests/chaos/matcher.py" --edges "http://127.0.0.1:$ED_PORT_e1" --queries "$C/q" \
  --out "$C/match.log" --stop "$C/stop" --rate "${SOAK_MATCH_RATE:-4}" &
BG_PIDS+=($!); MATCH_PID=$!

# ---- sampling (tests/chaos/sample.py: one process, nothing spawned per sample) ----------------
CSV="$OUT/soak.csv"
python3 "$SH_ROOT/tests/chaos/sample.py" --csv "$CSV" --every "$SAMPLE" --seconds "$DURATION" \
  --published "$C/published" --matches "$C/match.log" --worker "$WK_PORT_w1:$WK_PID_w1" \
  --replicator "$RP_PORT:$RP_PID" --edge "$ED_PORT_e1:$ED_PID_e1" --broker "$BROKER_PID" \
  --pgdata "$SH_PG_DIR/data" --matcher "$MATCH_PID" || fail "sample.py"
touch "$C/stop"
echo "soak: load stopped after $DURATION s; $(tail -n +2 "$CSV" | wc -l) samples in $CSV"

# ---- convergence, then the figures --------------------------------------------------------------
metric() { { curl -fsS "127.0.0.1:$2/metrics" 2> /dev/null || true; } | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {print s + 0}'; }
caught_up() { [ "$(metric soundhash_replicator_last_seq "$RP_PORT")" = "$(pg_sql 'SELECT last_seq FROM change_counter')" ]; }
t_end=$(date +%s)
wait_for 600 wk_all_committed soundhash-workers
wait_for 300 caught_up
wait_for 300 ed_converged "$ED_PORT_e1"
conv=$(( $(date +%s) - t_end ))
check "converged ${conv} s after the load stopped: soundhash verify passes" \
  "$SH_BIN" verify --dsn "$SH_DSN" --wait 60 --edge "http://127.0.0.1:$ED_PORT_e1"

python3 "$SH_ROOT/tests/chaos/soak_report.py" "$CSV" "$WARMUP" "${SOAK_RSS_GROWTH_MB:-16}" \
  "${SOAK_MAX_SEQ_LAG:-400}" "${SOAK_MAX_EDGE_LAG_S:-30}" "$C/match.log" > "$OUT/summary.txt" ||
  { cat "$OUT/summary.txt"; fail "soak bounds"; }
cat "$OUT/summary.txt"

gnuplot <<EOF || fail "gnuplot"
set terminal pngcairo size 1000,1100 font ",9" noenhanced
set output "$OUT/soak.png"
set datafile separator ","
set key autotitle columnhead outside right
set multiplot layout 4,1 title "soundhash soak: ${MINUTES} min, ${RATE} uploads/s, warm-up ${WARMUP} s"
set xlabel "s"
set ylabel "events / s"
plot "$CSV" using 1:5 with lines title "worker events/s", "" using 1:4 with lines title "published/s"
set ylabel "lag"
set yrange [0:*]
set y2range [0:*]
set y2label "edge lag (s)"
set y2tics
plot "$CSV" using 1:8 with lines title "replicator: changes behind", "" using 1:(\$9 / 1000) axes x1y2 with lines title "edge lag (s)"
unset y2tics; unset y2label
set ylabel "RSS (MB)"
set arrow from $WARMUP, graph 0 to $WARMUP, graph 1 nohead dashtype 2
plot for [c=12:17] "$CSV" using 1:(column(c) / 1024) with lines title columnhead(c)
set ylabel "anonymous RSS (MB)"
plot for [c=18:23] "$CSV" using 1:(column(c) / 1024) with lines title columnhead(c)
unset multiplot
EOF
echo "soak: plot $OUT/soak.png, samples $CSV, summary $OUT/summary.txt"
