#!/usr/bin/env bash
# The pipeline on a real Apache Kafka cluster (ops/kafka.sh: 3 KRaft nodes, replication factor 3,
# min.insync.replicas 2): a worker stores real corpus tracks in PostgreSQL and dead-letters a bad
# upload; the replicator streams them and an all-shards edge converges. Then a real broker failure:
# while changes are written into the primary and the replicator publishes them, the broker leading
# a delta partition is SIGKILLed — leadership moves, an upload published while it is down is
# stored, every delta the replicator had acknowledged is in the topic (reading it like a subscriber
# rebuilds each shard equal to the primary, no gap), the edge converges and `soundhash verify`
# passes. The broker restarts, rejoins every ISR, and the stream goes on without a gap. Then two of
# the three brokers stop (acks=all, min.insync.replicas 2): the replicator acknowledges nothing,
# keeps running and reports it on /health (503, lag); the brokers return and every change written
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

# ---- SIGKILL the leader of a delta partition while the replicator publishes ----------------------
leader=$("$KT" replicas "$BOOT" soundhash.index.deltas | awk '$1 == 0 {print $2}')
check "delta partition 0 has a leader (node $leader)" test "${leader:-0}" -ge 1
"$RT" write "$SH_DSN" 600 "$SEED" 2 > "$SH_TMP/write.out" &
WRITER=$!
base=$(metric soundhash_replicator_last_seq)
published_more() { [ "$(metric soundhash_replicator_last_seq)" -ge $(( base + 100 )) ]; }
wait_for 30 published_more
check "the writers still write when the broker dies" kill -0 "$WRITER"
"$SH_ROOT/ops/kafka.sh" node-stop --dir "$KAFKA_DIR" --node "$leader" --kill
echo "node $leader SIGKILLed with the replicator at seq $(metric soundhash_replicator_last_seq) (run started at $base)"
new_leader() { # partition 0 led by another node, the dead one out of its ISR
  "$KT" replicas "$BOOT" soundhash.index.deltas |
    awk -v d="$leader" '$1 == 0 { split($4, i, ","); ok = ($2 >= 0 && $2 != d); for (k in i) if (i[k] == d) ok = 0 }
                        END { exit !ok }'
}
wait_for 30 new_leader
echo "ok: partition 0 is led by node $("$KT" replicas "$BOOT" soundhash.index.deltas | awk '$1 == 0 {print $2}') without node $leader"
wk_publish "${files[2]}"
wk_expect_counts "${files[@]}"
late=$(basename "${files[2]}" .ogg)
# (the writers' tracks are in the primary too: count this one, not all)
track_active() { [ "$(pg_sql "SELECT status FROM tracks WHERE external_id = '$1'")" = active ]; }
wait_for 120 track_active "$late"
wk_check_tracks
echo "ok: an upload published while a broker is down is stored"
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
rp_unhealthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$RP_PORT/health")" = 503 ]; }
wait_for 60 rp_unhealthy
curl -s "127.0.0.1:$RP_PORT/health" > "$SH_TMP/rp-health.json"
echo "replicator /health with two brokers down: $(cat "$SH_TMP/rp-health.json")"
check "two brokers down: nothing acknowledged past seq $base, the replicator's /health is 503 and reports lag" \
  bash -c "[ \"\$(curl -fsS 127.0.0.1:$RP_PORT/metrics | awk '\$1 == \"soundhash_replicator_last_seq\" {print \$2}')\" = '$base' ] &&
           jq -e '.lag_ms > 0' '$SH_TMP/rp-health.json' > /dev/null"
check "the replicator keeps running (blocks, does not exit)" kill -0 "$RP_PID"
for n in 1 2; do "$SH_ROOT/ops/kafka.sh" node-start --dir "$KAFKA_DIR" --node "$n"; done
wait_for 120 caught_up
echo "ok: the brokers are back and the replicator published everything written meanwhile"
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
