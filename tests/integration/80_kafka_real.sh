#!/usr/bin/env bash
# The pipeline on a real Apache Kafka cluster (ops/kafka.sh: 3 KRaft nodes, replication factor 3,
# min.insync.replicas 2): a worker stores real corpus tracks in PostgreSQL and dead-letters a bad
# upload; the replicator streams them and an all-shards edge converges. Then a real broker failure:
# while changes are written into the primary and the replicator publishes them, the broker leading
# a delta partition is SIGKILLed — leadership moves, an upload published while it is down is
# stored, every delta the replicator had acknowledged is in the topic (reading it like a subscriber
# rebuilds each shard equal to the primary, no gap), the edge converges and `soundhash verify`
# passes. Poison uploads are published just before and while that broker is dead, and it leads a
# partition of the DLQ too: the workers' dead-letter producer rides the leader change, and every
# poison event reaches the DLQ (at least once: each event id present, duplicates counted and
# printed) while no valid upload is lost. The broker restarts, rejoins every ISR, and the stream goes on without a gap. Then two of
# the three brokers stop (acks=all, min.insync.replicas 2): the replicator acknowledges nothing,
# keeps running and reports it on /health (503, "kafka":"blocked" or "down", lag); the brokers return and every change written
# meanwhile is published, no gap, the edge verifies.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
SEED=${SH_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SH_SEED=$SEED repeats the writes)"
WK_KAFKA=real wk_setup

pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
# (ed_setup would start the mock broker: only its repl_tool build is wanted here)
# shellcheck disable=SC2046
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
  -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" "$(dirname "$SH_BIN")/libsoundhash.a" \
  $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"

# ---- the cluster as ops/kafka.sh left it ---------------------------------------------------------
check "3 brokers in the bootstrap list" test "$(tr ',' '\n' <<< "$BOOT" | wc -l)" -eq 3
check "ops/kafka.sh status: every node up" "$SH_ROOT/ops/kafka.sh" status --dir "$KAFKA_DIR"
check "the project's topics with their partition counts" "$SH_BIN" broker topics --brokers "$BOOT"
# replicas: "partition leader r1,r2,r3 i1,i2,i3"
all_isr() { # all_isr TOPIC N: every partition has N replicas, all in sync, and a leader
  "$KT" replicas "$BOOT" "$1" | awk -v n="$2" '
    { c++; if ($2 < 0 || split($3, r, ",") != n || split($4, i, ",") != n) bad++ }
    END { exit (c == 0 || bad) }'
}
for t in soundhash.audio.events soundhash.audio.dlq soundhash.index.deltas; do
  check "$t: 3 replicas per partition, all in sync" all_isr "$t" 3
done
check "min.insync.replicas 2 in every node's config" \
  test "$(grep -lx 'min.insync.replicas=2' "$KAFKA_DIR"/config/node-*.properties | wc -l)" -eq 3

# ---- ingest → worker → PostgreSQL, a dead letter -------------------------------------------------
mapfile -t tracks < <(ls "$corpus"/*.ogg | head -n 3)
for f in "${tracks[@]}"; do cp "$f" "$MEDIA/"; done
files=("${tracks[@]/#$corpus/$MEDIA}")
wk_expect_counts "${files[@]:0:2}"
head -c 50000 /dev/urandom > "$MEDIA/garbage.ogg"
wk_start w1 --threads 2 --worker-id it-kafka-real
wk_publish "${files[@]:0:2}" "$MEDIA/garbage.ogg"
wait_for 120 wk_tracks_active 2
wk_check_tracks
"$KT" dlq "$BOOT" 1 60 > "$SH_TMP/dlq.txt" || fail "no dead letter on the real cluster"
check "the bad upload is dead-lettered with its reason" grep -q '^garbage|' "$SH_TMP/dlq.txt"
wait_for 60 wk_all_committed soundhash-workers
echo "ok: the worker's offsets reach the end of the events topic"

# ---- replicator → edge ---------------------------------------------------------------------------
rp_start rp
ed_start E --shards all --region secondary
metric() { curl -fsS "127.0.0.1:$RP_PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
caught_up() { [ "$(metric soundhash_replicator_last_seq)" = "$(pg_sql 'SELECT last_seq FROM change_counter')" ]; }
verify_edge() { # verify_edge NAME: soundhash verify passes on the edge, all 8 shards ok
  expect_exit 0 "$SH_BIN" verify --dsn "$SH_DSN" --wait 20 --edge "http://127.0.0.1:$ED_PORT_E"
  check "verify ($1): 8 shards ok, none mismatched" \
    test "$(jq -rs '"\([.[] | select(.ok == true)] | length) \(.[-1].mismatched)"' "$SH_TMP/out")" = "8 0"
}
wait_for 60 ed_converged "$ED_PORT_E"
echo "ok: the edge equals the primary (2 real tracks)"

# ---- SIGKILL the leader of a delta partition and a DLQ partition while both are produced to ----
# the node to kill leads a partition of each topic (leaders are spread: 8 delta partitions and 3
# DLQ partitions over 3 nodes)
leads() { "$KT" replicas "$BOOT" "$1" | awk -v n="$2" '$2 == n {c++} END {print c + 0}'; }
leader=""
for n in 1 2 3; do
  if [ "$(leads soundhash.audio.dlq "$n")" -gt 0 ] && [ "$(leads soundhash.index.deltas "$n")" -gt 0 ]; then
    leader=$n; break
  fi
done
check "a node leads a DLQ partition and a delta partition (node ${leader:-none})" test -n "$leader"
echo "node $leader leads DLQ partitions [$("$KT" replicas "$BOOT" soundhash.audio.dlq | awk -v n="$leader" '$2 == n {printf " %s", $1}') ]" \
     "and delta partitions [$("$KT" replicas "$BOOT" soundhash.index.deltas | awk -v n="$leader" '$2 == n {printf " %s", $1}') ]"
# poison uploads (not audio: SH_EDECODE), 12 published just before the kill, 12 while the node is
# dead; their track ids spread them over every DLQ partition
POISON=24
for i in $(seq -w 1 "$POISON"); do head -c 20000 /dev/urandom > "$MEDIA/poison-$i.ogg"; done
poison() { for i in $(seq -w "$1" "$2"); do echo "$MEDIA/poison-$i.ogg"; done; }
# (2000 writes: 600 were over, and published, before the kill in a run at load ~20)
"$RT" write "$SH_DSN" 2000 "$SEED" 2 > "$SH_TMP/write.out" &
WRITER=$!
base=$(metric soundhash_replicator_last_seq)
published_more() { [ "$(metric soundhash_replicator_last_seq)" -ge $(( base + 30 )) ]; }
wait_for 30 published_more
# the broker must die mid-publish: the writers still write, or (on a loaded machine the writers can
# finish before the replicator got far) the replicator still has a backlog to publish
backlog() { # committed minus published, read in that order (so never over-estimated; 0 when caught up)
  local b=$(( $(pg_sql 'SELECT last_seq FROM change_counter') - $(metric soundhash_replicator_last_seq) ))
  echo $(( b < 0 ? 0 : b ))
}
mid_publish() { kill -0 "$WRITER" 2> /dev/null || [ "$(backlog)" -ge 50 ]; }
check "the writers still write or the replicator has >= 50 changes left to publish (backlog $(backlog))" mid_publish
mapfile -t batch < <(poison 1 12)
wk_publish "${batch[@]}"
cp "$SH_TMP/publish.out" "$SH_TMP/poison-published.jsonl"
"$SH_ROOT/ops/kafka.sh" node-stop --dir "$KAFKA_DIR" --node "$leader" --kill
echo "node $leader SIGKILLed with the replicator at seq $(metric soundhash_replicator_last_seq) (run started at $base)," \
     "$("$SH_BIN" dlq show --brokers "$BOOT" --timeout 5 2> /dev/null | grep -c '"track_id":"poison-' || true) of the first 12 poison events dead-lettered just after it"
mapfile -t batch < <(poison 13 24)
wk_publish "${batch[@]}"
cat "$SH_TMP/publish.out" >> "$SH_TMP/poison-published.jsonl"
check "$POISON poison events published (with event ids)" \
  test "$(jq -r '.event_id' "$SH_TMP/poison-published.jsonl" | sort -u | grep -c .)" -eq "$POISON"
new_leader() { # every partition of TOPIC led by a live node, the dead one out of every ISR
  "$KT" replicas "$BOOT" "$1" |
    awk -v d="$leader" '{ split($4, i, ","); if ($2 < 0 || $2 == d) bad++; for (k in i) if (i[k] == d) bad++ }
                        END { exit bad > 0 }'
}
wait_for 60 new_leader soundhash.index.deltas
wait_for 60 new_leader soundhash.audio.dlq
echo "ok: every delta and DLQ partition is led without node $leader"
wk_publish "${files[2]}"
wk_expect_counts "${files[@]}"
late=$(basename "${files[2]}" .ogg)
# (the writers' tracks are in the primary too: count this one, not all)
track_active() { [ "$(pg_sql "SELECT status FROM tracks WHERE external_id = '$1'")" = active ]; }
wait_for 120 track_active "$late"
wk_check_tracks
echo "ok: an upload published while a broker is down is stored"
# every poison event in the DLQ: at least once (the producer is idempotent, but a worker that
# retries a send whose ack was lost with the leader writes the record again)
dlq_poison() { "$SH_BIN" dlq show --brokers "$BOOT" --timeout 10 2> /dev/null |
                 jq -r 'select(.track_id != null and (.track_id | startswith("poison-"))) | .event_id'; }
all_poison_dead_lettered() {
  dlq_poison > "$SH_TMP/dlq-poison.txt" || return 1
  [ "$(sort -u "$SH_TMP/dlq-poison.txt" | grep -c .)" -ge "$POISON" ]
}
wait_for 120 all_poison_dead_lettered
missing=$(comm -23 <(jq -r .event_id "$SH_TMP/poison-published.jsonl" | sort -u) <(sort -u "$SH_TMP/dlq-poison.txt"))
check "every poison event id published is in the DLQ (missing: ${missing:-none})" test -z "$missing"
dups=$(( $(grep -c . "$SH_TMP/dlq-poison.txt") - $(sort -u "$SH_TMP/dlq-poison.txt" | grep -c .) ))
echo "DLQ: $POISON poison events, $(grep -c . "$SH_TMP/dlq-poison.txt") dead letters ($dups duplicate(s): at-least-once)"
"$SH_BIN" dlq show --brokers "$BOOT" --timeout 10 2> /dev/null |
  jq -r 'select(.track_id != null and (.track_id | startswith("poison-"))) | "\(.partition)"' | sort | uniq -c |
  awk '{printf "  DLQ partition %s: %s dead letters\n", $2, $1}'
check "dead letters name the decode failure" \
  test "$("$SH_BIN" dlq show --brokers "$BOOT" --timeout 10 2> /dev/null | jq -r 'select(.track_id != null and (.track_id | startswith("poison-"))) | .code' | sort -u)" = SH_EDECODE
check "no poison upload stored" test "$(pg_sql "SELECT count(*) FROM tracks WHERE external_id LIKE 'poison-%'")" = 0
check "no valid upload lost: all 3 real tracks active" \
  test "$(pg_sql "SELECT count(*) FROM tracks WHERE status = 'active' AND external_id IN ('$(basename "${files[0]}" .ogg)', '$(basename "${files[1]}" .ogg)', '$late')")" = 3
wait_for 60 wk_all_committed soundhash-workers
echo "ok: the worker's offsets reach the end of the events topic (past every poison event)"
wait "$WRITER" || fail "writers failed"
cat "$SH_TMP/write.out"
wait_for 60 caught_up
check "the replicator survived the broker's death" kill -0 "$RP_PID"
"$RT" reconstruct "$BOOT" "$SH_DSN" soundhash.index.deltas 60 > "$SH_TMP/recon" 2> "$SH_TMP/recon.err" || {
  cat "$SH_TMP/recon" "$SH_TMP/recon.err" >&2; fail "the delta topic lost what was acknowledged"; }
check "no acknowledged delta lost: 8 shards rebuilt from the topic equal the primary, no gap" \
  test "$(grep -c '"ok":true' "$SH_TMP/recon")" -eq 8
wait_for 60 ed_converged "$ED_PORT_E"
echo "ok: the edge converges with node $leader dead"
verify_edge "one broker dead"

# ---- the broker restarts and rejoins every ISR; the stream goes on ------------------------------
"$SH_ROOT/ops/kafka.sh" node-start --dir "$KAFKA_DIR" --node "$leader"
wait_for 60 all_isr soundhash.index.deltas 3
echo "ok: node $leader is back in the ISR of every delta partition"
"$RT" write "$SH_DSN" 200 "$((SEED + 1))" 2 > /dev/null
wait_for 60 caught_up
"$RT" reconstruct "$BOOT" "$SH_DSN" soundhash.index.deltas 60 > "$SH_TMP/recon2" 2> "$SH_TMP/recon2.err" || {
  cat "$SH_TMP/recon2" "$SH_TMP/recon2.err" >&2; fail "after the restart"; }
check "after the restart: 8 shards equal the primary, no gap" \
  test "$(grep -c '"ok":true' "$SH_TMP/recon2")" -eq 8
wait_for 60 ed_converged "$ED_PORT_E"
verify_edge "broker restarted"

# ---- acks=all with min.insync.replicas 2 and two brokers down: the replicator blocks and says so --
# (two of three nodes down is also two of three controllers: no quorum, no leader moves either)
base=$(metric soundhash_replicator_last_seq)
for n in 1 2; do "$SH_ROOT/ops/kafka.sh" node-stop --dir "$KAFKA_DIR" --node "$n"; done
"$RT" write "$SH_DSN" 60 "$((SEED + 2))" 2 > /dev/null || fail "the primary takes writes with Kafka down"
# /health: 503, lag, and Kafka not "ok": "blocked" while deltas wait for acks longer than 5 s,
# "down" between a failed round and the rebuilt producer
rp_blocked() {
  local code
  code=$(curl -s -o "$SH_TMP/rp-health.json" -w '%{http_code}' "127.0.0.1:$RP_PORT/health")
  [ "$code" = 503 ] && jq -e '.kafka == "blocked"' "$SH_TMP/rp-health.json" > /dev/null
}
wait_for 60 rp_blocked
echo "replicator /health with two brokers down: $(cat "$SH_TMP/rp-health.json")"
check "two brokers down: nothing acknowledged past seq $base, /health is 503, kafka blocked, lag reported" \
  bash -c "[ \"\$(curl -fsS 127.0.0.1:$RP_PORT/metrics | awk '\$1 == \"soundhash_replicator_last_seq\" {print \$2}')\" = '$base' ] &&
           jq -e '.lag_ms > 0 and .status == \"unhealthy\"' '$SH_TMP/rp-health.json' > /dev/null"
kafka_states=$(for _ in 1 2 3 4 5 6 7 8 9 10; do curl -s "127.0.0.1:$RP_PORT/health" | jq -r .kafka; sleep 1; done | sort | uniq -c | xargs)
echo "kafka field over 10 s with two brokers down: $kafka_states"
# (a new round after a failed one is "ok" for its first 5 s: most samples must not be)
check "while the brokers are down /health mostly says so (not ok in >= 5 of 10 samples)" \
  test "$(grep -o '[0-9]* ok' <<< "$kafka_states" | cut -d' ' -f1 || echo 0)" -le 5
check "the replicator keeps running (blocks, does not exit)" kill -0 "$RP_PID"
for n in 1 2; do "$SH_ROOT/ops/kafka.sh" node-start --dir "$KAFKA_DIR" --node "$n"; done
wait_for 120 caught_up
echo "ok: the brokers are back and the replicator published everything written meanwhile"
rp_healthy() { curl -fsS "127.0.0.1:$RP_PORT/health" | jq -e '.status == "ok" and .kafka == "ok"'; }
wait_for 60 rp_healthy
echo "ok: /health is 200 with kafka ok again"
"$RT" reconstruct "$BOOT" "$SH_DSN" soundhash.index.deltas 60 > "$SH_TMP/recon3" 2> "$SH_TMP/recon3.err" || {
  cat "$SH_TMP/recon3" "$SH_TMP/recon3.err" >&2; fail "after two brokers were down"; }
check "after two brokers were down: 8 shards equal the primary, no gap" \
  test "$(grep -c '"ok":true' "$SH_TMP/recon3")" -eq 8
wait_for 60 ed_converged "$ED_PORT_E"
verify_edge "two brokers were down"

kill "$RP_PID"
set +e; wait "$RP_PID"; rc=$?; set -e
check "the replicator exits 0 on SIGTERM (rc $rc)" test "$rc" -eq 0
ed_stop E TERM
check "the edge exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0
wk_kill w1
check "the worker exits 0 on SIGTERM (rc $WK_RC)" test "$WK_RC" -eq 0
