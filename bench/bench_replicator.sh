#!/usr/bin/env bash
# Replicator benchmark: commit → Kafka-ack lag under live ingest, bytes per posting on the wire,
# and sustained throughput (postings/s) with its CPU share.
#
#   bench/bench_replicator.sh [BIN] [COPIES]      (defaults: build/soundhash, 20)
#
# Against a local `soundhash broker` (BENCH_KAFKA=real: a real Apache Kafka node from ops/kafka.sh,
# BENCH_KAFKA_NODES of them) and a private PostgreSQL, with the dev corpus
# ($SOUNDHASH_DATA_DIR/corpus/dev):
#   lag         the replicator runs while two workers ingest the corpus; the commit → ack
#               histogram (soundhash_replicator_commit_to_ack_seconds) gives p50/p99
#   wire        payload bytes on the wire per posting, next to the primary's blob bytes per posting
#   throughput  the corpus's fingerprint rows copied COPIES times more under new ids (through the
#               same write function, so each copy is a change), then a fresh replicator on a fresh
#               broker publishes the whole change log: postings/s of wall time and its CPU seconds
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$(realpath "${1:-$ROOT/build/soundhash}")"
COPIES="${2:-20}"
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
CORPUS="$DATA/corpus/dev"
[ -d "$CORPUS" ] || { echo "   (skipped: no corpus at $CORPUS; run scripts/data/make_corpus.sh)"; exit 0; }
TMP=$(mktemp -d /tmp/sh-bench-repl.XXXXXX)
PIDS=()
cleanup() {
  [ "${ok:-0}" = 1 ] || for f in "$TMP"/*.log; do echo "--- $f"; tail -n 5 "$f"; done
  for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  "$BIN" db stop --dir "$TMP/pg" > /dev/null 2>&1 || true
  for d in "${KAFKA_DIRS[@]}"; do "$ROOT/ops/kafka.sh" stop --kill --dir "$d" > /dev/null 2>&1 || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
now() { date +%s.%N; }
wait_for() { # wait_for SECS cmd...
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" > /dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || { echo "timeout: $*" >&2; return 1; }; sleep 0.05; done
}
sql() { psql "$DSN" -X -Atq -c "$1"; }
metric() { curl -fsS "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
port_of() { sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$1" | head -n1; }
KAFKA_DIRS=()
broker() { # broker NAME: starts a broker (BENCH_KAFKA=real: a real Apache Kafka node), sets BOOT
  if [ "${BENCH_KAFKA:-mock}" = real ]; then
    KAFKA_DIRS+=("$TMP/$1-kafka")
    SOUNDHASH_BIN="$BIN" "$ROOT/ops/kafka.sh" start --brokers "${BENCH_KAFKA_NODES:-1}" \
      --dir "$TMP/$1-kafka" > /dev/null 2> "$TMP/$1.log"
    BOOT=$(cat "$TMP/$1-kafka/bootstrap")
    return
  fi
  "$BIN" broker --bootstrap-file "$TMP/$1.boot" > /dev/null 2> "$TMP/$1.log" &
  PIDS+=($!)
  BROKER_PIDS+=($!)
  wait_for 20 test -s "$TMP/$1.boot"
  BOOT=$(cat "$TMP/$1.boot")
}
BROKER_PIDS=()
replicator() { # replicator NAME: starts one, sets RP and RP_PORT
  "$BIN" replicator --brokers "$BOOT" --dsn "$DSN" --http 127.0.0.1:0 ${RP_ARGS:-} > /dev/null 2> "$TMP/$1.log" &
  RP=$!
  PIDS+=($RP)
  wait_for 30 grep -q event=http_listening "$TMP/$1.log"
  RP_PORT=$(port_of "$TMP/$1.log")
}
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
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }

DSN=$("$BIN" db start --dir "$TMP/pg" 2> "$TMP/pg.log")
"$BIN" db migrate --dsn "$DSN" > /dev/null
broker b1
mkdir -p "$TMP/media"
cp "$CORPUS"/*.ogg "$TMP/media/"

# ---- lag and wire size under live ingest ---------------------------------------------------------
replicator rp1
for w in 1 2; do
  "$BIN" worker --brokers "$BOOT" --dsn "$DSN" --media-root "$TMP/media" --threads 1 \
    > /dev/null 2> "$TMP/w$w.log" &
  PIDS+=($!)
done
sleep 3 # the group forms
"$BIN" ingest publish --brokers "$BOOT" --media-root "$TMP/media" "$TMP/media"/*.ogg > /dev/null
n_files=$(ls "$TMP/media"/*.ogg | wc -l)
tracks_at_least() { [ "$(sql "SELECT count(*) FROM tracks")" -ge "$1" ]; }
caught_up() { [ "$(metric "$RP_PORT" soundhash_replicator_last_seq)" = "$1" ]; }
wait_for 300 tracks_at_least "$((n_files - 2))"
sleep 2
last=$(sql "SELECT last_seq FROM change_counter")
wait_for 30 caught_up "$last"
postings=$(metric "$RP_PORT" soundhash_replicator_postings_total)
wire=$(metric "$RP_PORT" soundhash_replicator_payload_wire_bytes_total)
blob=$(metric "$RP_PORT" soundhash_replicator_primary_blob_bytes_total)
msgs=$(metric "$RP_PORT" soundhash_replicator_delta_bytes_total 2> /dev/null || true)
p50=$(quantile "$RP_PORT" soundhash_replicator_commit_to_ack_seconds 0.5)
p99=$(quantile "$RP_PORT" soundhash_replicator_commit_to_ack_seconds 0.99)
echo "   Kafka: ${BENCH_KAFKA:-mock}$([ "${BENCH_KAFKA:-mock}" = real ] && echo " (Apache Kafka, ${BENCH_KAFKA_NODES:-1} node(s), acks=all)")"
echo "   live ingest: $(sql "SELECT count(*) FROM tracks") tracks, $last changes, $postings postings"
echo "   commit -> Kafka ack lag: p50 $p50 ms, p99 $p99 ms (target p99 <= 250 ms)"
echo "     of which: batch read p50 $(quantile "$RP_PORT" soundhash_replicator_read_seconds 0.5) / p99 $(quantile "$RP_PORT" soundhash_replicator_read_seconds 0.99) ms, produce->acks p50 $(quantile "$RP_PORT" soundhash_replicator_publish_seconds 0.5) / p99 $(quantile "$RP_PORT" soundhash_replicator_publish_seconds 0.99) ms"
awk -v w="$wire" -v b="$blob" -v p="$postings" 'BEGIN {
  printf "   wire: %.2f B/posting (payload after zstd); primary blob: %.2f B/posting (target <= 4.0)\n",
         w / p, b / p }'
for p in "${PIDS[@]}"; do # the workers and the first replicator; the broker stays
  [[ " ${BROKER_PIDS[*]} " == *" $p "* ]] || kill "$p" 2> /dev/null || true
done

# ---- throughput: the whole (amplified) change log through a fresh replicator ---------------------
sql "SELECT count(sh_write_track(t.external_id || '#' || g, t.tenant, t.metadata, NULL, t.duration_s,
       NULL, f.fp_version, 1, f.n_hashes, f.blob))
     FROM tracks t JOIN fingerprints f USING (external_id), generate_series(1, $COPIES) g
     WHERE t.status = 'active'" > /dev/null
total=$(sql "SELECT sum(n_hashes) FROM fingerprints")
last=$(sql "SELECT last_seq FROM change_counter")
broker b2
t0=$(now)
replicator rp2
started() { [ "$(metric "$RP_PORT" soundhash_replicator_postings_total)" != 0 ]; }
wait_for 60 started
t1=$(now)
p1=$(metric "$RP_PORT" soundhash_replicator_postings_total)
c1=$(cpu_s "$RP")
wait_for 600 caught_up "$last"
t2=$(now)
c2=$(cpu_s "$RP")
awk -v p="$total" -v p1="$p1" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c1="$c1" -v c2="$c2" -v n="$last" 'BEGIN {
  w = t2 - t0; s = t2 - t1;
  printf "   throughput: %d changes, %.1f M postings in %.2f s from process start: %.2f M postings/s\n",
         n, p / 1e6, w, p / w / 1e6;
  printf "   sustained (first delta acked -> caught up): %.2f M postings/s, replicator CPU %.0f %% of one core (target >= 2 M/s)\n",
         (p - p1) / s / 1e6, 100 * (c2 - c1) / s }'
ok=1
