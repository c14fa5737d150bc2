#!/usr/bin/env bash
# A partition paused when it is revoked must not stay paused when it comes back. librdkafka keeps
# the application's pause flag of a partition across unassign and assign (librdkafka #1849), so a
# worker whose pause ended during a rebalance (database back between revoke and assign) was given
# partitions it never fetched from again: their events waited forever while /health said ok.
# Here w1's database role is disabled (w1 pauses), w2 joins, and the role is enabled again between
# w1's revoke and its new assignment; then every event published must be done and committed.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
# The mock even in a run on real Kafka (SH_TEST_KAFKA=real): real Kafka's rebalance is over too
# fast for the database to come back inside it, so the case would not be exercised.
WK_KAFKA=mock wk_setup

for i in $(seq 1 12); do
  sox -n -r 22050 -c 1 "$MEDIA/p$i.wav" synth 3 square $((90 * i))-$((500 * i)) vol 0.3
done

# w1 writes as its own role, which can be refused without touching w2's.
pg_sql "CREATE ROLE w1role LOGIN SUPERUSER PASSWORD 'w1pw'" > /dev/null
w1_dsn=$(sed 's/user=[^ ]*/user=w1role/; s/passfile=[^ ]*//' <<< "$SH_DSN")
SOUNDHASH_DB_PASSWORD=w1pw wk_start w1 --threads 1 --dsn "$w1_dsn" --shutdown-grace 2
wait_for 30 grep -q 'event=partitions_assigned count=12' "$SH_TMP/w1.log"

pg_sql "ALTER ROLE w1role NOLOGIN" > /dev/null
pg_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'w1role'" > /dev/null
wait_for 20 grep -q 'event=consumption_paused why=db_down' "$SH_TMP/w1.log"

wk_start w2 --threads 1 --shutdown-grace 2
wait_for 30 grep -q 'event=partitions_revoked' "$SH_TMP/w1.log"
pg_sql "ALTER ROLE w1role LOGIN" > /dev/null
wait_for 30 grep -q 'event=partitions_assigned' "$SH_TMP/w2.log"
wait_for 30 bash -c "[ \$(grep -c 'event=partitions_assigned' '$SH_TMP/w1.log') -ge 2 ]"
# The case under test: w1 resumed (with nothing assigned) before its new partitions arrived.
order=$(grep -o 'event=\(partitions_revoked\|consumption_resumed\|partitions_assigned\)' "$SH_TMP/w1.log" \
  | sed -n '2,$p' | tr '\n' ' ')
echo "w1 after its first assignment: $order"
[[ "$order" == "event=partitions_revoked event=consumption_resumed event=partitions_assigned"* ]] \
  || fail "the database came back outside the rebalance window; the case was not exercised"

wk_publish "$MEDIA"/p*.wav
wait_for 60 wk_tracks_active 12
check "all 12 tracks written: no partition was left paused" wk_tracks_active 12
wait_for 30 wk_all_committed soundhash-workers
check "every event committed" wk_all_committed soundhash-workers
wk_kill w1 TERM
check "w1: exit 0" test "$WK_RC" -eq 0
wk_kill w2 TERM
check "w2: exit 0" test "$WK_RC" -eq 0
echo "58_worker_pause_rebalance: all checks passed"
