#!/usr/bin/env bash
# `make demo`: SoundHash end to end on this machine, one stage at a time.
#   Stage 1 — local shard: fetch the demo corpus (real music from Debian's game-music packages, see
#   scripts/data/) and the degraded queries when missing, index corpus/dev into a fresh shard with
#   `soundhash index add`, match a sample of queries (2 per condition, negatives included) with
#   `soundhash match`, print a table and a summary.
#   Stage 2 — ingestion pipeline: start a real Apache Kafka node (ops/kafka.sh; DEMO_KAFKA=mock, or
#   no Java, falls back to the librdkafka mock cluster `soundhash broker`, said on screen) and a
#   private PostgreSQL (`soundhash db start`), run two workers in one consumer group, publish the
#   corpus plus two bad uploads with `soundhash ingest publish`, wait until every track is in the
#   primary, show the tracks, the change log, the dead letters (by reason) and the workers'
#   /health and /metrics; then delete a track and show its tombstone. The replicator streams the
#   change log as per-shard index deltas.
#   Stage 3 — edges: two edge caches with disjoint shards (edge-eu 0-3, edge-ap 4-7, each with
#   --upstream to the secondary region) and a secondary region holding all 8 shards, each a process
#   with its own log and HTTP port, bootstrapped from the replicator's snapshots; `soundhash verify`
#   until every edge equals the primary; one track re-uploaded (a new version) and verified again;
#   degraded clips sent to the edges as audio and as client-side hashes (`soundhash match --edge`),
#   a table (query, expected, answer, offset, node, local or upstream, latency) and a summary
#   (tracks, audio hours, ingest throughput, commit -> edge lag, bytes per posting on the wire,
#   match latency p50/p99, accuracy, false matches); `soundhash status` of the whole deployment.
# Environment: DEMO_KAFKA (real|mock, default real), SOUNDHASH_BIN (default build/soundhash), SOUNDHASH_DATA_DIR (default
# ~/.cache/soundhash-data), DEMO_PER_COND (queries per condition, default 2), DEMO_KEEP=1 keeps the
# scratch directory.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
DATA="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
PER_COND="${DEMO_PER_COND:-2}"
export SOUNDHASH_DATA_DIR="$DATA"
WORK="$(mktemp -d /tmp/soundhash-demo.XXXXXX)"
[ "${DEMO_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ensure_data: builds the corpus and the 384-query set into $DATA when missing.
ensure_data() {
  if [ ! -f "$DATA/corpus/dev/manifest.csv" ] || [ ! -f "$DATA/corpus/neg/manifest.csv" ]; then
    say "fetching the demo corpus into $DATA (Debian game-music packages)"
    "$ROOT/scripts/data/make_corpus.sh" --all --root "$DATA"
  fi
  if [ ! -f "$DATA/queries/dev/ground_truth.csv" ]; then
    say "rendering degraded queries into $DATA/queries/dev"
    "$ROOT/scripts/data/make_queries.sh" dev --root "$DATA"
  fi
}

# sample_queries GT N: N queries of each condition of ground_truth.csv GT, spread evenly over the
# condition's rows (c*5+1 mod total < N: 5 s and 10 s excerpts of different tracks), as CSV rows.
sample_queries() {
  awk -F, -v n="$2" 'NR == FNR { if (FNR > 1) total[$5]++; next }
                     FNR > 1 { c = seen[$5]++; if ((c * 5 + 1) % total[$5] < n) print }' "$1" "$1"
}

# print_match_table SAMPLE_CSV MATCH_JSONL: one row per query (ground-truth rows of SAMPLE_CSV in
# the order of the `soundhash match` lines of MATCH_JSONL), then a summary. Reusable by later
# stages that get their answers elsewhere (e.g. the edge's /v1/match) in the same JSON shape.
print_match_table() {
  local sample="$1" answers="$2"
  jq -r '[(.query | split("/") | last), (.match.track_id // "NONE"),
          (.match.offset_s // "" | tostring), (.elapsed_ms | tostring)] | @tsv' "$answers" |
    paste -d '\t' <(tr ',' '\t' < "$sample") - |
    awk -F'\t' '
      BEGIN {
        printf "%-30s %-14s %-34s %-34s %9s %9s %8s\n", "query", "condition", "expected",
               "answer", "offset_s", "want_s", "ms"
      }
      {
        expected = $2; sub(/\.[^.]*$/, "", expected)
        answer = $9; offset = $10; ms = $11; want = ($2 == "NONE") ? "" : sprintf("%.2f", $3 - $6)
        ok = (expected == answer)
        if (expected == "NONE") { neg++; if (!ok) fm++ } else { pos++; if (ok) hit++ }
        if (ok && expected != "NONE" && (offset - want > 0.2 || want - offset > 0.2)) offbad++
        lat[NR] = ms + 0
        printf "%-30s %-14s %-34s %-34s %9s %9s %8.1f %s\n", substr($1, 1, 30), $5,
               substr(expected, 1, 34), substr(answer, 1, 34),
               offset == "" ? "-" : sprintf("%.2f", offset), want == "" ? "-" : want, ms,
               ok ? "ok" : "MISS"
      }
      END {
        n = NR
        for (i = 2; i <= n; i++) { v = lat[i]; for (j = i - 1; j >= 1 && lat[j] > v; j--) lat[j + 1] = lat[j]; lat[j + 1] = v }
        printf "\nsummary: %d/%d positives identified (%.1f %%), %d with an offset off by > 0.2 s; " \
               "%d/%d negatives falsely matched; latency p50 %.1f ms (decode + fingerprint + " \
               "lookup, per query in one process)\n",
               hit, pos, pos ? 100 * hit / pos : 0, offbad, fm, neg, n ? lat[int((n + 1) / 2)] : 0
      }'
}

stage1_local_shard() {
  say "stage 1: local shard — index corpus/dev, match degraded clips"
  local shard="$WORK/shard" n
  n=$(tail -n +2 "$DATA/corpus/dev/manifest.csv" | wc -l)
  echo "indexing $n tracks into $shard"
  # A track that fails to decode is reported and skipped: the demo goes on with the others.
  "$BIN" index add --index "$shard" "$DATA"/corpus/dev/*.ogg > "$WORK/added.jsonl" ||
    echo "(some tracks could not be indexed: see the messages above)"
  "$BIN" index stats --index "$shard" |
    jq -r '"index: \(.tracks) tracks, \(.postings) postings, \(.file_bytes / 1024 | floor) KB on disk = \(.bytes_per_posting * 100 | round / 100) bytes/posting, \(.mb_per_audio_hour * 1000 | round / 1000) MB per audio hour"'
  sample_queries "$DATA/queries/dev/ground_truth.csv" "$PER_COND" > "$WORK/sample.csv"
  local files=()
  while IFS=, read -r q _; do files+=("$DATA/queries/dev/$q"); done < "$WORK/sample.csv"
  echo "matching ${#files[@]} queries ($PER_COND per condition, negatives included)"
  "$BIN" match --index "$shard" "${files[@]}" > "$WORK/answers.jsonl"
  echo
  print_match_table "$WORK/sample.csv" "$WORK/answers.jsonl"
}

# Stage 2 state: pids to stop and the database dir, cleaned up on exit.
S2_PIDS=()
S2_PG=""
S2_KAFKA=""
stage2_cleanup() {
  for p in "${S2_PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${S2_PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  [ -z "$S2_KAFKA" ] || "$ROOT/ops/kafka.sh" stop --dir "$S2_KAFKA" > /dev/null 2>&1 || true
  [ -z "$S2_PG" ] || "$BIN" db stop --dir "$S2_PG" > /dev/null 2>&1 || true
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.2 s; fails the demo with WHAT after SECONDS.
wait_until() {
  local secs="$1" what="$2"; shift 2
  local end=$(($(date +%s) + secs))
  until "$@" > /dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "demo: timed out waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}

sql() { psql "$DSN" -X -v ON_ERROR_STOP=1 -Atq -F $'\t' -c "$1"; }
# sql_id QUERY ID: QUERY refers to the track id as :'id' (psql quotes it; no string pasting).
sql_id() { printf '%s\n' "$1" | psql "$DSN" -X -v ON_ERROR_STOP=1 -Atq -F $'\t' -v id="$2"; }
seq_past() { [ "$(sql 'SELECT last_seq FROM change_counter')" -gt "$1" ]; }
tracks_written() { [ "$(sql "SELECT count(*) FROM tracks WHERE status = 'active'")" -ge "$1" ]; }
track_deleted() { [ "$(sql_id "SELECT status FROM tracks WHERE external_id = :'id'" "$1")" = deleted ]; }
dead_letters() { # sum of events_failed_total over both workers
  local total=0 port v
  for port in "$@"; do
    v=$(curl -sf "http://127.0.0.1:$port/metrics" |
      awk '$1 ~ /^soundhash_worker_events_failed_total/ {s += $2} END {print s + 0}')
    total=$((total + ${v%.*}))
  done
  echo "$total"
}
dead_letters_at_least() { [ "$(dead_letters "${@:2}")" -ge "$1" ]; }

start_worker() { # start_worker NAME: sets PORT to its /metrics port
  "$BIN" worker --brokers "$BOOT" --dsn "$DSN" --media-root "$WORK/media" --threads 1 \
    --http 127.0.0.1:0 --worker-id "$1" > /dev/null 2> "$WORK/$1.log" &
  S2_PIDS+=($!)
  wait_until 30 "worker $1 to listen" grep -q 'event=http_listening' "$WORK/$1.log"
  PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$WORK/$1.log" | head -n1)
}

# start_kafka: a real Apache Kafka node (ops/kafka.sh, KRaft) unless DEMO_KAFKA=mock or Java and
# the Kafka jars cannot be had; then the librdkafka mock cluster, said plainly. Sets BOOT.
start_kafka() {
  if [ "${DEMO_KAFKA:-real}" = real ] && command -v java > /dev/null &&
     SOUNDHASH_BIN="$BIN" "$ROOT/ops/kafka.sh" fetch > /dev/null 2> "$WORK/kafka-fetch.log"; then
    local t0; t0=$(date +%s.%N)
    S2_KAFKA="$WORK/kafka"
    if SOUNDHASH_BIN="$BIN" "$ROOT/ops/kafka.sh" start --brokers 1 --dir "$S2_KAFKA" > /dev/null 2> "$WORK/kafka.log"; then
      BOOT=$(cat "$S2_KAFKA/bootstrap")
      echo "Kafka: Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/ops/kafka/pom.xml") (KRaft, one node) at $BOOT, started in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s; log in $S2_KAFKA/logs"
      return 0
    fi
    echo "demo: the Kafka node did not start (see $WORK/kafka.log):" >&2
    tail -n 5 "$WORK/kafka.log" >&2
  fi
  echo "NOTE: not running real Apache Kafka (DEMO_KAFKA=${DEMO_KAFKA:-real}; Java or the Kafka jars unavailable): falling back to librdkafka's MOCK cluster, which fakes transactions and keeps ~5 MiB per partition"
  "$BIN" broker --bootstrap-file "$WORK/boot" > /dev/null 2> "$WORK/broker.log" &
  S2_PIDS+=($!)
  wait_until 20 "the broker" test -s "$WORK/boot"
  BOOT=$(cat "$WORK/boot")
  echo "broker (librdkafka mock cluster, 3 brokers over TCP): $BOOT"
}

stage2_pipeline() {
  say "stage 2: ingestion and replication — broker, PostgreSQL primary, two workers, the replicator"
  trap 'stage2_cleanup; [ "${DEMO_KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
  start_kafka
  S2_PG="$WORK/pg"
  DSN=$("$BIN" db start --dir "$S2_PG" 2> "$WORK/db.log")
  "$BIN" db migrate --dsn "$DSN" > /dev/null 2>&1
  echo "primary: private PostgreSQL, $(sql 'SHOW server_version'), wal_level=$(sql 'SHOW wal_level')"

  # The media root the workers read file:// audio from; bad uploads sit beside the real ones.
  mkdir -p "$WORK/media"
  cp "$DATA"/corpus/dev/*.ogg "$WORK/media/"
  head -c 200000 /dev/urandom > "$WORK/media/not_audio.ogg"
  head -c 30000 "$DATA/corpus/dev/$(ls "$DATA/corpus/dev" | grep -m1 '\.ogg$')" > "$WORK/media/truncated.ogg"
  local n; n=$(ls "$WORK"/media/*.ogg | wc -l)

  local ports=()
  start_worker worker-a; ports+=("$PORT")
  start_worker worker-b; ports+=("$PORT")
  echo "workers: worker-a (/metrics on :${ports[0]}), worker-b (:${ports[1]}), group soundhash-workers"
  "$BIN" replicator --brokers "$BOOT" --dsn "$DSN" --http 127.0.0.1:0 --region demo \
    > /dev/null 2> "$WORK/replicator.log" &
  S2_PIDS+=($!)
  wait_until 30 "the replicator" grep -q 'event=replicator_started' "$WORK/replicator.log"
  RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$WORK/replicator.log" | head -n1)
  echo "replicator: change log -> soundhash.index.deltas (8 shards), /metrics on :$RP_PORT"

  local t0; t0=$(date +%s.%N)
  "$BIN" ingest publish --brokers "$BOOT" --media-root "$WORK/media" --tenant demo \
    --meta source=make-demo "$WORK"/media/*.ogg > "$WORK/published.jsonl"
  echo "published $(wc -l < "$WORK/published.jsonl") audio events ($n files, 2 of them bad)"
  wait_until "${DEMO_TIMEOUT:-600}" "the workers to write $((n - 2)) tracks" tracks_written $((n - 2))
  wait_until 60 "2 dead letters" dead_letters_at_least 2 "${ports[@]}"
  local t1; t1=$(date +%s.%N)
  INGEST_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  WORKER_PORTS=("${ports[@]}")

  echo
  sql "SELECT count(*), round((sum(duration_s) / 60)::numeric, 1), sum(n_hashes), max(fp_version)
       FROM tracks WHERE status = 'active'" |
    awk -F'\t' -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" '{printf "primary: %d tracks, %.1f min of audio, %d hashes, fp_version %d — written in %.1f s (%.0fx realtime)\n", $1, $2, $3, $4, s, $2 * 60 / s}'
  echo "change log: $(sql 'SELECT count(*) FROM change_log') entries, seq $(sql 'SELECT min(seq) FROM change_log')..$(sql 'SELECT max(seq) FROM change_log') (commit order, no gaps)"
  echo "dead letters by reason:"
  for port in "${ports[@]}"; do curl -sf "http://127.0.0.1:$port/metrics"; done |
    awk '$1 ~ /^soundhash_worker_events_failed_total\{/ && $2 > 0 {print "  " $1 " " $2}'
  echo "health: $(curl -s "http://127.0.0.1:${ports[0]}/health")"
  echo "metrics (worker-a, excerpt):"
  curl -sf "http://127.0.0.1:${ports[0]}/metrics" |
    grep -E '^soundhash_worker_(events_total|audio_seconds_total|processing_seconds_count|db_write_seconds_count)' |
    sed 's/^/  /'

  # a stored track (the published list is in delivery order, and its bad uploads never became tracks)
  VICTIM=$(sql "SELECT external_id FROM tracks WHERE status = 'active' ORDER BY external_id DESC LIMIT 1")
  local victim="$VICTIM"
  "$BIN" ingest delete --brokers "$BOOT" --track-id "$victim" > /dev/null
  wait_until 60 "the delete of $victim" track_deleted "$victim"
  echo
  echo "deleted $victim: $(sql_id "SELECT status || ' at version ' || version FROM tracks WHERE external_id = :'id'" "$victim"), fingerprint rows left: $(sql_id "SELECT count(*) FROM fingerprints WHERE external_id = :'id'" "$victim")"
  stage2_replication
}

rp_metric() { curl -sf "http://127.0.0.1:$RP_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
replicated() { [ "$(rp_metric soundhash_replicator_last_seq)" = "$(sql 'SELECT last_seq FROM change_counter')" ]; }

# The replication half: every change of the log is in a shard's delta stream; a snapshot of one
# shard is read in one consistent transaction.
stage2_replication() {
  wait_until 30 "the replicator to publish every change" replicated
  echo
  echo "replicator: every change published, last seq $(rp_metric soundhash_replicator_last_seq); health: $(curl -s "http://127.0.0.1:$RP_PORT/health")"
  curl -sf "http://127.0.0.1:$RP_PORT/metrics" | awk '
    $1 ~ /^soundhash_replicator_ops_total\{/ { ops += $2; split($1, a, "\""); per = per " " a[2] ":" $2 }
    $1 == "soundhash_replicator_postings_total" { p = $2 }
    $1 == "soundhash_replicator_payload_wire_bytes_total" { w = $2 }
    $1 == "soundhash_replicator_primary_blob_bytes_total" { b = $2 }
    $1 == "soundhash_replicator_commit_to_ack_seconds_sum" { ls = $2 }
    $1 == "soundhash_replicator_commit_to_ack_seconds_count" { lc = $2 }
    END { printf "  ops per shard:%s (%d in all)\n", per, ops;
          if (p > 0) printf "  %d postings on the wire at %.2f B/posting (the primary stores %.2f); commit -> Kafka ack %.0f ms on average\n",
                            p, w / p, b / p, 1000 * ls / lc }'
  local snap
  snap=$("$BIN" replicator snapshot --dsn "$DSN" --shard 0 --out "$WORK/shard0.snap")
  echo "$snap" | jq -r --arg b "$(stat -c %s "$WORK/shard0.snap")" \
    '"  snapshot of shard \(.shard): \(.tracks) tracks at seq \(.seq), epoch \(.epoch), \($b) bytes"'
}

# ---- stage 3: edges ------------------------------------------------------------------------------

start_edge() { # start_edge NAME SHARDS [ARGS...]: sets EPORT to its HTTP port
  local name="$1" shards="$2"; shift 2
  "$BIN" edge --brokers "$BOOT" --data "$WORK/edge-$name" --shards "$shards" --region "$name" \
    --listen 127.0.0.1:0 --snapshot-source "http://127.0.0.1:$RP_PORT" "$@" \
    > /dev/null 2> "$WORK/edge-$name.log" &
  S2_PIDS+=($!)
  wait_until 30 "edge $name to listen" grep -q 'event=http_listening' "$WORK/edge-$name.log"
  EPORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$WORK/edge-$name.log" | head -n1)
}

edge_ready() { curl -sf "http://127.0.0.1:$1/ready" > /dev/null; }

# verify_all: `soundhash verify` of the three edges against the primary; prints its summary.
verify_all() {
  "$BIN" verify --dsn "$DSN" --wait 60 "${EDGE_URLS[@]/#/--edge=}" > "$WORK/verify.jsonl" ||
    { echo "demo: verify failed:"; cat "$WORK/verify.jsonl"; return 1; }
  tail -n1 "$WORK/verify.jsonl" | jq -r '"verify: \(.nodes) nodes, \(.shards_checked) shards equal to the primary at seq \(.primary_seq), \(.mismatched) mismatched"'
}

# histogram_quantile Q METRIC PORT...: the Q quantile (ms) of a Prometheus histogram summed over
# the nodes' /metrics (linear inside the bucket, as Prometheus does).
histogram_quantile() {
  local q="$1" m="$2"; shift 2
  for port in "$@"; do curl -sf "http://127.0.0.1:$port/metrics"; done |
    awk -v q="$q" -v m="${m}_bucket" '
      index($1, m "{") == 1 { match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
                               c[le] += $2; if (!(le in seen)) { seen[le] = 1; les[++n] = le } }
      END { for (i = 2; i <= n; i++) { v = les[i]; for (j = i - 1; j >= 1 && (les[j] == "+Inf" || (v != "+Inf" && les[j] + 0 > v + 0)); j--) les[j + 1] = les[j]; les[j + 1] = v }
            total = c["+Inf"]; if (!total) { print "-"; exit }
            want = q * total; prev = 0; plo = 0
            for (i = 1; i <= n; i++) { le = les[i]; if (c[le] >= want) {
                if (le == "+Inf") { printf "> %.0f", plo * 1000; exit }
                f = (c[le] > prev) ? (want - prev) / (c[le] - prev) : 1
                printf "%.0f", 1000 * (plo + f * (le - plo)); exit }
              prev = c[le]; plo = le + 0 } }'
}

# ask_edges SAMPLE OUT: each query of SAMPLE to one of the two edge caches in turn, as audio (odd
# rows, curl) or as hashes fingerprinted here (even rows, `soundhash match --edge`); one JSON line
# per query: {query, via, edge, answer...}.
ask_edges() {
  local sample="$1" out="$2" i=0 q url via
  : > "$out"
  while IFS=, read -r q _; do
    url=${CACHE_URLS[$((i % 2))]}
    if [ $((i / 2 % 2)) -eq 0 ]; then
      via=audio
      curl -sS --max-time 20 --data-binary @"$DATA/queries/dev/$q" "$url/v1/match" -w '\n%{time_total}\n' > "$WORK/ans" || true
      jq -c --arg q "$q" --arg via "$via" --arg edge "$url" --argjson t "$(tail -n1 "$WORK/ans")" \
        '. + {query: $q, via: $via, edge: $edge, client_ms: ($t * 1000)}' <(head -n1 "$WORK/ans") >> "$out" ||
        echo "{\"query\":\"$q\",\"via\":\"$via\",\"edge\":\"$url\",\"match\":null,\"error\":true}" >> "$out"
    else
      via=hashes
      local t0 t1; t0=$(date +%s%N)
      "$BIN" match --edge "$url" "$DATA/queries/dev/$q" > "$WORK/ans" 2> "$WORK/ans.err" || true
      t1=$(date +%s%N)
      jq -c --arg q "$q" --arg via "$via" --arg edge "$url" --argjson t "$(( (t1 - t0) / 1000000 ))" \
        '. + {query: $q, via: $via, edge: $edge, client_ms: $t}' "$WORK/ans" >> "$out" 2> /dev/null ||
        echo "{\"query\":\"$q\",\"via\":\"$via\",\"edge\":\"$url\",\"match\":null,\"error\":true}" >> "$out"
    fi
    i=$((i + 1))
  done < "$sample"
}

# print_edge_table SAMPLE ANSWERS: one row per query, then accuracy, false matches and latency
# (edge_ms: the edge's own handling, `elapsed_ms`; client_ms: the client's whole request — for
# hashes that includes starting `soundhash match` and fingerprinting the clip locally).
print_edge_table() {
  jq -r '[.query, .via, (.match.track_id // "NONE"), (.match.offset_s // "" | tostring),
          (.match.node // .node // "-"), (if .match == null then "-" elif (.match.node // .node) == .node then "local" else "upstream" end),
          (.elapsed_ms // 0 | tostring), (.client_ms // 0 | tostring)] | @tsv' "$2" |
    paste -d '\t' <(tr ',' '\t' < "$1") - |
    awk -F'\t' '
      function pct(a, n, q,   i, j, v) {
        for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
        return n ? a[int(n * q + 0.999)] : 0 }
      BEGIN { printf "%-28s %-13s %-6s %-30s %-30s %7s %-8s %-8s %8s %9s\n", "query", "condition", "via",
                     "expected", "answer", "offset", "node", "source", "edge_ms", "client_ms" }
      { expected = $2; sub(/\.[^.]*$/, "", expected); answer = $10
        ok = (expected == answer)
        if (expected == "NONE") { neg++; if (!ok) fm++ } else { pos++; if (ok) hit++ }
        if ($13 == "upstream") up++
        if ($9 == "audio") la[++na] = $14 + 0; else lh[++nh] = $14 + 0
        printf "%-28s %-13s %-6s %-30s %-30s %7s %-8s %-8s %8.1f %9.1f %s\n", substr($1, 1, 28), $5, $9,
               substr(expected, 1, 30), substr(answer, 1, 30), $11 == "" ? "-" : sprintf("%.2f", $11),
               $12, $13, $14, $15, ok ? "ok" : "MISS" }
      END { printf "\nanswers: %d/%d positives identified (%.1f %%), %d/%d negatives falsely matched, %d answered through the upstream\n",
                   hit, pos, pos ? 100 * hit / pos : 0, fm, neg, up
            printf "edge handling (elapsed_ms): audio p50 %.1f ms, p99 %.1f ms (decode + fingerprint + lookup); hashes p50 %.1f ms, p99 %.1f ms (lookup, and the upstream when asked)\n",
                   pct(la, na, 0.5), pct(la, na, 0.99), pct(lh, nh, 0.5), pct(lh, nh, 0.99) }'
}

stage3_edges() {
  say "stage 3: edges — two edge caches (disjoint shards, --upstream to the region) and a secondary region"
  start_edge region all; local region_port=$EPORT
  start_edge edge-eu 0-3 --upstream "http://127.0.0.1:$region_port"; local eu_port=$EPORT
  start_edge edge-ap 4-7 --upstream "http://127.0.0.1:$region_port"; local ap_port=$EPORT
  EDGE_URLS=("http://127.0.0.1:$eu_port" "http://127.0.0.1:$ap_port" "http://127.0.0.1:$region_port")
  CACHE_URLS=("${EDGE_URLS[@]:0:2}")
  echo "edge-eu (shards 0-3) on :$eu_port, edge-ap (4-7) on :$ap_port, region (0-7) on :$region_port; logs in $WORK/edge-*.log"
  local t0 p
  t0=$(date +%s.%N)
  for p in "$eu_port" "$ap_port" "$region_port"; do
    printf '  waiting for :%s to be ready (bootstrap from the snapshots, then the delta tail) ... ' "$p"
    wait_until 120 "edge :$p to be ready" edge_ready "$p"
    echo "ready at +$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
  done
  verify_all

  # a delete and a re-upload while the edges run: both travel as deltas
  VICTIM2=$(sql "SELECT external_id FROM tracks WHERE status = 'active' ORDER BY external_id DESC LIMIT 1")
  "$BIN" ingest delete --brokers "$BOOT" --track-id "$VICTIM2" > /dev/null
  wait_until 60 "the delete of $VICTIM2" track_deleted "$VICTIM2"
  echo "deleted $VICTIM2 while the edges run"
  # a re-upload: the same file again is a new version of its track, replicated to every edge
  # (a track's id is its file name without the extension; the bad uploads never became tracks)
  local again_id again
  again_id=$(sql "SELECT external_id FROM tracks WHERE status = 'active' ORDER BY external_id LIMIT 1")
  again="$WORK/media/$again_id.ogg"
  [ -f "$again" ] || { echo "demo: no media file for track $again_id" >&2; return 1; }
  local before; before=$(sql 'SELECT last_seq FROM change_counter')
  "$BIN" ingest publish --brokers "$BOOT" --media-root "$WORK/media" --tenant demo \
    --meta source=make-demo-again "$again" > "$WORK/republished.jsonl"
  wait_until 120 "the re-upload to reach the primary" seq_past "$before"
  echo "re-uploaded $(jq -r .track_id "$WORK/republished.jsonl"): now at version $(sql_id "SELECT version FROM tracks WHERE external_id = :'id'" "$(jq -r .track_id "$WORK/republished.jsonl")")"
  verify_all

  # the deleted tracks match nowhere: a clip of each, to every node
  local url answered v
  for v in "$VICTIM" "$VICTIM2"; do
    sox "$WORK/media/$v.ogg" -c 1 "$WORK/victim.wav" trim 30 10 2> /dev/null
    answered=""
    for url in "${EDGE_URLS[@]}"; do
      answered="$answered $(curl -sS --max-time 20 --data-binary @"$WORK/victim.wav" "$url/v1/match" | jq -r '.match.track_id // "none"')"
    done
    echo "a clip of the deleted track $v, asked of edge-eu, edge-ap and the region:$answered"
  done

  sample_queries "$DATA/queries/dev/ground_truth.csv" "$PER_COND" > "$WORK/sample3.csv"
  echo "sending $(wc -l < "$WORK/sample3.csv") degraded clips to the edge caches (audio and client-side hashes)"
  ask_edges "$WORK/sample3.csv" "$WORK/edge-answers.jsonl"
  echo
  print_edge_table "$WORK/sample3.csv" "$WORK/edge-answers.jsonl"

  local hours; hours=$(sql "SELECT round((sum(duration_s) / 3600)::numeric, 2) FROM tracks WHERE status = 'active'")
  echo
  echo "summary:"
  echo "  primary: $(sql "SELECT count(*) FROM tracks WHERE status = 'active'") tracks, $hours h of audio; ingest $(awk -v h="$hours" -v s="$INGEST_S" 'BEGIN {printf "%.0fx realtime (%.1f s)", h * 3600 / s, s}')"
  echo "  commit -> edge applied lag: p50 $(histogram_quantile 0.5 soundhash_edge_apply_lag_seconds "$eu_port" "$ap_port" "$region_port") ms, p99 $(histogram_quantile 0.99 soundhash_edge_apply_lag_seconds "$eu_port" "$ap_port" "$region_port") ms"
  echo "  wire: $(curl -sf "http://127.0.0.1:$RP_PORT/metrics" | awk '$1 == "soundhash_replicator_postings_total" {p = $2} $1 == "soundhash_replicator_payload_wire_bytes_total" {w = $2} END {if (p) printf "%.2f bytes per posting", w / p}')"
  echo "  match handling on the edges (their histogram, every request): p50 $(histogram_quantile 0.5 soundhash_edge_match_seconds "$eu_port" "$ap_port" "$region_port") ms, p99 $(histogram_quantile 0.99 soundhash_edge_match_seconds "$eu_port" "$ap_port" "$region_port") ms"
  echo
  "$BIN" status --brokers "$BOOT" --dsn "$DSN" --node "http://127.0.0.1:${WORKER_PORTS[0]}" \
    --node "http://127.0.0.1:${WORKER_PORTS[1]}" --node "http://127.0.0.1:$RP_PORT" \
    "${EDGE_URLS[@]/#/--node=}" || echo "(status: something is not healthy, see above)"
}

[ -x "$BIN" ] || { echo "demo: $BIN not built (run make)" >&2; exit 1; }
ensure_data
stage1_local_shard
stage2_pipeline
stage3_edges
stage2_cleanup
S2_PIDS=()
S2_PG=""
S2_KAFKA=""
say "done: every process and the database are stopped"
