#!/usr/bin/env bash
# Edge benchmark: an index of >= HOURS hours of distinct audio streamed from the primary through the
# replicator into a real `soundhash edge`, then matched over HTTP.
#
#   bench/bench_edge.sh [BIN] [HOURS]      (defaults: build/soundhash, 100)
#
# The index: every dev-corpus track ($SOUNDHASH_DATA_DIR/corpus/dev) speed-shifted in-process
# (libsoxr) into distinct tracks until the audio reaches HOURS, fingerprinted with the real
# extractor (bench_edge_tool gen; cached in $SOUNDHASH_DATA_DIR/bench, so only the first run pays
# for it). Against a local `soundhash broker`, a private PostgreSQL, the replicator and an edge
# holding all 8 shards (every process on the same machine):
#   ingest     all but the last PACED tracks written into the primary at full speed (pipelined,
#              one transaction per track) while the edge applies the stream: write rate, the edge's
#              apply rate (postings/s) and its CPU share
#   lag        the last PACED tracks written one by one at RATE tracks/s: commit → applied lag
#              p50/p99 (the tool polls the edge's shard positions; target p99 <= 1 s), with the
#              replicator's commit → Kafka-ack and the edge's delta-created → applied histograms
#   bootstrap  a fresh edge with --snapshot-source (the replicator's snapshot URL): time until
#              /ready, per audio hour; shard bytes per audio hour (applied from deltas, and from the
#              snapshot)
#   match      the 10 s queries of the q1536 set POSTed as audio, then as hashes (fingerprinted by
#              the client beforehand, the binary sh_qhash form; target p99 <= 20 ms): one client
#              (each query once), then CLIENTS clients for SECONDS (saturation); latency p50/p99,
#              matches/s, top-1 accuracy and false matches, edge CPU per match; the edge's peak RSS
# Knobs (environment): SH_BENCH_EDGE_PACED (150), SH_BENCH_EDGE_RATE (5: about what two worker threads
# fingerprint on this machine, bench_worker.sh), SH_BENCH_EDGE_CLIENTS (4), SH_BENCH_EDGE_SECONDS (15).
# The edge's CPU time and the time its threads waited for a CPU are printed per phase: on a shared
# machine the wall-clock figures depend on the other load, the CPU per unit much less.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$(realpath "${1:-$ROOT/build/soundhash}")"
HOURS="${2:-100}"
TOOL="${SH_BENCH_EDGE_TOOL:-$(dirname "$BIN")/bench/bench_edge_tool}"
PACED="${SH_BENCH_EDGE_PACED:-150}"
RATE="${SH_BENCH_EDGE_RATE:-5}"
CLIENTS="${SH_BENCH_EDGE_CLIENTS:-4}"
SECONDS_SAT="${SH_BENCH_EDGE_SECONDS:-15}"
# The mock broker answers a fetch only when fetch.wait.max.ms (librdkafka's default 500 ms) has
# run out, even when deltas arrive meanwhile (Kafka answers once fetch.min.bytes, 1, is there):
# with the default, every delta waits up to 0.5 s in the broker (measured at 6 h: lag p50 314 ms
# vs 33 ms at 10 ms). Set SH_BENCH_EDGE_ARGS= (empty) to measure the edge's defaults.
EDGE_ARGS="${SH_BENCH_EDGE_ARGS--X fetch.wait.max.ms=10}"
TRACKS="${SH_BENCH_EDGE_TRACKS:-0}"   # 0: every corpus track
QUERIES="${SH_BENCH_EDGE_QUERIES:-0}" # 0: every 10 s query
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
QDIR="$DATA/q1536/queries/dev"
[ -d "$DATA/corpus/dev" ] || { echo "   (skipped: no corpus at $DATA/corpus/dev; run scripts/data/make_corpus.sh)"; exit 0; }
[ -f "$QDIR/ground_truth.csv" ] || QDIR="$DATA/queries/dev"
[ -x "$TOOL" ] || { echo "   (not built: $TOOL; make $TOOL)"; exit 1; }
TMP=$(mktemp -d /tmp/sh-bench-edge.XXXXXX)
PIDS=()
cleanup() {
  [ "${ok:-0}" = 1 ] || for f in "$TMP"/*.log; do echo "--- $f"; tail -n 5 "$f"; done
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  "$BIN" db stop --dir "$TMP/pg" > /dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
say() { echo "   $*"; }
now() { date +%s.%N; }
wait_for() { # wait_for SECS cmd...
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" > /dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || { echo "timeout: $*" >&2; return 1; }; sleep 0.05; done
}
metric() { curl -fsS "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
port_of() { sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$1" | head -n1; }
# Quantile q of a Prometheus histogram (linear within the bucket), in ms.
quantile() { # quantile PORT NAME Q
  curl -fsS "127.0.0.1:$1/metrics" | awk -v n="$2_bucket" -v q="$3" '
    index($1, n "{") == 1 { match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5);
                            b[++k] = le; c[k] = $2 }
    END { tot = c[k]; want = q * tot; prev_b = 0; prev_c = 0;
          for (i = 1; i <= k; i++) { if (c[i] >= want) {
              if (b[i] == "+Inf") { printf "> %.0f", prev_b * 1000; exit }
              f = (c[i] > prev_c) ? (want - prev_c) / (c[i] - prev_c) : 0;
              printf "%.1f", (prev_b + f * (b[i] - prev_b)) * 1000; exit }
            prev_b = b[i]; prev_c = c[i] } }'
}
cpu_s() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; } # user + system CPU seconds
# used_bytes DIR: LMDB pages in use summed over DIR/shard-* (the file also holds free pages), and
# the number of posting range blobs (a lookup decodes every blob that holds a query hash)
used_bytes() {
  for d in "$1"/shard-*; do "$BIN" index stats --index "$d" 2> /dev/null; done |
    jq -rs '"\(map(.used_bytes) | add) \(map(.ranges) | add)"'
}
ready() { curl -fsS "127.0.0.1:$1/ready" > /dev/null; }
edge() { # edge NAME ARGS... : starts an edge holding every shard, sets ED_PID and ED_PORT
  local name="$1"; shift
  "$BIN" edge --brokers "$BOOT" --listen 127.0.0.1:0 --data "$TMP/data-$name" --shards all "$@" \
    > /dev/null 2> "$TMP/$name.log" &
  ED_PID=$!
  PIDS+=("$ED_PID")
  wait_for 30 grep -q event=http_listening "$TMP/$name.log"
  ED_PORT=$(port_of "$TMP/$name.log")
}
shard_sum() { # shard_sum PORT FIELD: the field summed over the edge's shards
  curl -fsS "127.0.0.1:$1/v1/shards" | jq ".shards | map(.$2) | add"
}

say "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
# ---- the index inputs (cached) -------------------------------------------------------------------
CDIR="${SH_BENCH_EDGE_CACHE_DIR:-$DATA/bench}"
CACHE="$CDIR/edge-${HOURS}h.idx"
[ "$TRACKS" = 0 ] || CACHE="$CDIR/edge-${HOURS}h-${TRACKS}t.idx"
mkdir -p "$CDIR"
"$TOOL" gen --data "$DATA" --out "$CACHE" --hours "$HOURS" --max-tracks "$TRACKS" | tee "$TMP/gen.out" | sed 's/^/   /'
read -r NTRACKS AUDIO_H < <(awk '/^index:/ {print $2, $4}' "$TMP/gen.out")
[ "$PACED" -lt "$NTRACKS" ] || PACED=$((NTRACKS / 2))
BULK=$((NTRACKS - PACED))

# ---- the stack ----------------------------------------------------------------------------------
DSN=$("$BIN" db start --dir "$TMP/pg" 2> "$TMP/pg.log")
"$BIN" db migrate --dsn "$DSN" > /dev/null 2>&1
"$BIN" broker --bootstrap-file "$TMP/boot" > /dev/null 2> "$TMP/broker.log" &
PIDS+=($!)
wait_for 20 test -s "$TMP/boot"
BOOT=$(cat "$TMP/boot")
"$BIN" replicator --brokers "$BOOT" --dsn "$DSN" --http 127.0.0.1:0 > /dev/null 2> "$TMP/rp.log" &
PIDS+=($!)
wait_for 30 grep -q event=http_listening "$TMP/rp.log"
RP_PORT=$(port_of "$TMP/rp.log")
SNAP="http://127.0.0.1:$RP_PORT"
say "measured edge: --shards all --snapshot-source $SNAP $EDGE_ARGS"
# shellcheck disable=SC2086 # extra edge options, word-split on purpose
edge live --snapshot-source "$SNAP" $EDGE_ARGS
LIVE_PID=$ED_PID LIVE_PORT=$ED_PORT
wait_for 60 ready "$LIVE_PORT"

# ---- ingest: full-speed writes, the edge applying -------------------------------------------------
say "ingest at full speed ($BULK tracks; broker, PostgreSQL, replicator and edge on the same cores):"
"$TOOL" write --dsn "$DSN" --in "$CACHE" --from 0 --to "$BULK" --edge "http://127.0.0.1:$LIVE_PORT" \
  --pid "$LIVE_PID" | sed 's/^/     /'

# ---- lag under paced ingest -------------------------------------------------------------------------
say "ingest at $RATE tracks/s ($PACED tracks, one transaction each):"
"$TOOL" write --dsn "$DSN" --in "$CACHE" --from "$BULK" --to "$NTRACKS" --rate "$RATE" \
  --edge "http://127.0.0.1:$LIVE_PORT" --pid "$LIVE_PID" | sed 's/^/     /'
say "  (whole run) replicator commit -> Kafka ack p50 $(quantile "$RP_PORT" soundhash_replicator_commit_to_ack_seconds 0.5) / p99 $(quantile "$RP_PORT" soundhash_replicator_commit_to_ack_seconds 0.99) ms; edge delta created -> applied p50 $(quantile "$LIVE_PORT" soundhash_edge_apply_lag_seconds 0.5) / p99 $(quantile "$LIVE_PORT" soundhash_edge_apply_lag_seconds 0.99) ms"
gaps=$(metric "$LIVE_PORT" soundhash_edge_gaps_total)
boots=$(metric "$LIVE_PORT" soundhash_edge_bootstraps_total)
[ "$gaps" = 0 ] || say "  WARNING: the edge saw $gaps gap(s) ($boots bootstraps): broker retention"

# ---- sizes and bootstrap ----------------------------------------------------------------------------
live_bytes=$(shard_sum "$LIVE_PORT" bytes)
tracks=$(shard_sum "$LIVE_PORT" tracks)
postings=$(shard_sum "$LIVE_PORT" postings)
t0=$(now)
edge boot --snapshot-source "$SNAP"
wait_for 600 ready "$ED_PORT"
t1=$(now)
boot_ms=$(sed -n 's/.*event=bootstrapped.* ms=\([0-9]*\).*/\1/p' "$TMP/boot.log" | awk '{s += $1} END {print s + 0}')
boot_bytes=$(shard_sum "$ED_PORT" bytes)
boot_cpu=$(cpu_s "$ED_PID")
[ "$(shard_sum "$ED_PORT" postings)" = "$postings" ] || say "WARNING: the bootstrapped edge holds $(shard_sum "$ED_PORT" postings) postings, the live one $postings"
kill "$ED_PID"; wait "$ED_PID" 2> /dev/null || true
read -r boot_used boot_ranges < <(used_bytes "$TMP/data-boot")
awk -v h="$AUDIO_H" -v t="$tracks" -v p="$postings" -v lb="$live_bytes" -v bb="$boot_bytes" \
    -v bc="$boot_cpu" -v bu="$boot_used" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v bm="$boot_ms" 'BEGIN {
  printf "   edge shards: %d tracks, %.1f h of audio, %.2f M postings\n", t, h, p / 1e6;
  printf "   bootstrap from the replicator'"'"'s snapshots (8 shards): %.1f s to /ready (%.2f s of it applying snapshots; edge CPU %.1f s) = %.2f s per audio hour (%.2f CPU s)\n", w, bm / 1000, bc, w / h, bc / h;
  printf "   shard files: %.2f MB per audio hour applied from deltas (%.0f MB), %.2f MB per audio hour bootstrapped (%.0f MB, of which %.0f MB in use: %.2f MB per audio hour, %.2f B/posting)\n",
         lb / 1e6 / h, lb / 1e6, bb / 1e6 / h, bb / 1e6, bu / 1e6, bu / 1e6 / h, bu / p }'

# ---- match over HTTP -----------------------------------------------------------------------------------
URL="http://127.0.0.1:$LIVE_PORT"
"$TOOL" match --url "$URL" --queries "$QDIR" --len 10 --max "$QUERIES" --clients 1 \
  --label "10 s queries as audio, 1 client" --pid "$LIVE_PID" | sed 's/^/   /'
"$TOOL" match --url "$URL" --queries "$QDIR" --len 10 --max "$QUERIES" --clients "$CLIENTS" --seconds "$SECONDS_SAT" \
  --label "10 s queries as audio, $CLIENTS clients (saturation)" --pid "$LIVE_PID" | sed 's/^/   /'
"$TOOL" match --url "$URL" --queries "$QDIR" --len 10 --max "$QUERIES" --clients 1 --hashes 1 \
  --label "10 s queries as hashes, 1 client" --pid "$LIVE_PID" | sed 's/^/   /'
"$TOOL" match --url "$URL" --queries "$QDIR" --len 10 --max "$QUERIES" --clients "$CLIENTS" --seconds "$SECONDS_SAT" \
  --hashes 1 --label "10 s queries as hashes, $CLIENTS clients (saturation)" --pid "$LIVE_PID" \
  | sed 's/^/   /'
say "edge peak RSS (VmHWM): $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$LIVE_PID/status"), of which now $(awk '/RssAnon/ {a = $2} /RssFile/ {f = $2} END {printf "%.1f MiB anonymous, %.1f MiB mapped shard pages", a / 1024, f / 1024}' "/proc/$LIVE_PID/status")"
kill "$LIVE_PID"; wait "$LIVE_PID" 2> /dev/null || true
say "shard pages in use, applied from deltas: $(used_bytes "$TMP/data-live" | awk -v h="$AUDIO_H" '{printf "%.0f MB, %.2f MB per audio hour; %d range blobs (bootstrapped: '"$boot_ranges"')", $1 / 1e6, $1 / 1e6 / h, $2}')"
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
ok=1
