#!/usr/bin/env bash
# A misconfigured worker stalls nobody: it checks what it can before joining the consumer group.
#   - usage errors exit 2 at once and never join: malformed --dsn, bad -X, missing --media-root,
#     bad --http address; a busy --http port exits 1 saying the address is in use;
#   - a database that refuses us (missing database, missing role, wrong password) exits 1 after the
#     bounded --db-wait, without joining;
#   - a database that is down at start is waited for before joining (--db-wait): beyond the bound
#     exit 1; SIGTERM during the wait exits 0; started in time, the worker joins and processes;
# while a healthy worker of the same group is never rebalanced by any of them. And consumer lag:
# after a rebalance each worker reports lag series only for the partitions it holds; a worker
# stalled by a database outage reports its own growing lag, and every worker the whole group's.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
wk_setup

for i in 1 2 3 4 5 6; do
  sox -n -r 22050 -c 1 "$MEDIA/m$i.wav" synth 5 square $((110 * i))-$((650 * i)) vol 0.3
done

now_ms() { date +%s%3N; }
# bad_worker CODE PATTERN ARGS... : a worker that must exit CODE with PATTERN in its last stderr
# line and must never have joined the group; sets ELAPSED_MS.
bad_worker() {
  local want="$1" pat="$2"; shift 2
  local t0; t0=$(now_ms)
  set +e
  timeout 60 "$SH_BIN" worker --brokers "$BOOT" --group soundhash-workers "$@" \
    > /dev/null 2> "$SH_TMP/bad.err"
  local got=$?
  set -e
  ELAPSED_MS=$(( $(now_ms) - t0 ))
  [ "$got" -eq "$want" ] || { cat "$SH_TMP/bad.err" >&2; fail "exit $got, want $want: worker $*"; }
  grep -v '^(see ' "$SH_TMP/bad.err" | tail -n1 | grep -q -- "$pat" \
    || { cat "$SH_TMP/bad.err" >&2; fail "message lacks '$pat': worker $*"; }
  ! grep -q 'event=group_joining' "$SH_TMP/bad.err" || fail "joined the consumer group: worker $*"
  echo "ok: exit $got in ${ELAPSED_MS} ms, says '$pat', never joined: worker ${*:1:6}"
}
fast() { [ "$ELAPSED_MS" -lt 3000 ] || fail "took ${ELAPSED_MS} ms, want at once"; }
bounded() { # bounded SECONDS: the wait lasted the bound, not much more
  [ "$ELAPSED_MS" -ge $(( $1 * 1000 )) ] && [ "$ELAPSED_MS" -lt $(( $1 * 1000 + 10000 )) ] \
    || fail "took ${ELAPSED_MS} ms, want about $1 s"
}

# A healthy member of the group: nothing below may take its partitions away.
wk_start w1 --threads 1 --shutdown-grace 2
wait_for 30 grep -q 'event=partitions_assigned count=12' "$SH_TMP/w1.log"

# Usage errors: exit 2 at once, naming the flag.
bad_worker 2 '--dsn' --dsn not_a_dsn --media-root "$MEDIA"; fast
bad_worker 2 '--dsn' --dsn "host='127.0.0.1" --media-root "$MEDIA"; fast
bad_worker 2 '-X' --dsn "$SH_DSN" --media-root "$MEDIA" -X bogus=1; fast
bad_worker 2 '-X' --dsn "$SH_DSN" --media-root "$MEDIA" -X noequals; fast
bad_worker 2 '--media-root' --dsn "$SH_DSN" --media-root /nonexistent; fast
bad_worker 2 '--media-root' --dsn "$SH_DSN" --media-root "$MEDIA/m1.wav"; fast
bad_worker 2 '--tmp-dir' --dsn "$SH_DSN" --media-root "$MEDIA" --tmp-dir /nonexistent; fast
bad_worker 2 '--http' --dsn "$SH_DSN" --media-root "$MEDIA" --http notanaddr; fast
bad_worker 1 'Address already in use' --dsn "$SH_DSN" --media-root "$MEDIA" \
  --http "127.0.0.1:$WK_PORT_w1"; fast

# The database refuses us: exit 1 after the bounded wait, saying what to check.
bad_db=$(sed 's/dbname=[^ ]*/dbname=no_such_db/' <<< "$SH_DSN")
bad_worker 1 'refused the connection' --dsn "$bad_db" --media-root "$MEDIA" --db-wait 2
bounded 2
check "log: the refusal names the missing database" grep -q 'event=db_refused.*no_such_db' "$SH_TMP/bad.err"
bad_role=$(sed 's/user=[^ ]*/user=no_such_role/' <<< "$SH_DSN")
bad_worker 1 'refused the connection' --dsn "$bad_role" --media-root "$MEDIA" --db-wait 1
bounded 1
SOUNDHASH_DB_PASSWORD=wrong-password \
bad_worker 1 'password' --dsn "$SH_DSN" --media-root "$MEDIA" --db-wait 1
bounded 1
check "log: the refusal says authentication failed" grep -q 'event=db_refused.*authentication failed' "$SH_TMP/bad.err"

check "the healthy worker was never rebalanced" bash -c \
  "! grep -q 'event=partitions_revoked' '$SH_TMP/w1.log' && [ \$(grep -c 'event=partitions_assigned' '$SH_TMP/w1.log') -eq 1 ]"

# Consumer lag after a rebalance: a second worker joins, the first loses half its partitions; each
# reports lag series for exactly the partitions it holds (none left over from before).
metrics() { curl -sf "http://127.0.0.1:$1/metrics"; }
lag_series() { # "topic/partition value" per soundhash_worker_consumer_lag series
  metrics "$1" | sed -n "s/^soundhash_worker_${2:-consumer}_lag{topic=\"\([^\"]*\)\",partition=\"\([0-9]*\)\"} \(.*\)/\1\/\2 \3/p" | sort
}
assigned() { curl -sf "http://127.0.0.1:$1/health" | sed -n 's/.*"assigned":\([0-9]*\).*/\1/p'; }
lag_split() {
  local a b na nb
  a=$(lag_series "$WK_PORT_w1" | cut -d' ' -f1) b=$(lag_series "$WK_PORT_w2" | cut -d' ' -f1)
  na=$(grep -c . <<< "$a") nb=$(grep -c . <<< "$b")
  [ "$na" -gt 0 ] && [ "$nb" -gt 0 ] && [ "$na" -eq "$(assigned "$WK_PORT_w1")" ] \
    && [ "$nb" -eq "$(assigned "$WK_PORT_w2")" ] && [ $((na + nb)) -eq 12 ] \
    && [ "$(printf '%s\n%s\n' "$a" "$b" | sort -u | wc -l)" -eq 12 ]
}
wk_start w2 --asan --threads 1 --shutdown-grace 2   # ASan+UBSan: the lag thread, revoke, tear-down
wait_for 30 grep -q 'event=partitions_assigned' "$SH_TMP/w2.log"
wait_for 30 lag_split
check "after the rebalance: w1 and w2 report lag for disjoint partitions, 12 in all" lag_split
check "and every partition of both topics in the group lag, on both" bash -c \
  "[ \$(curl -sf http://127.0.0.1:$WK_PORT_w1/metrics | grep -c '^soundhash_worker_group_lag{') -eq 12 ] &&
   [ \$(curl -sf http://127.0.0.1:$WK_PORT_w2/metrics | grep -c '^soundhash_worker_group_lag{') -eq 12 ]"

# The database goes down under both: they pause, keep their partitions, and their lag grows with
# what is published meanwhile — each its own, and every worker the whole group's.
pg_stop
for p in "$WK_PORT_w1" "$WK_PORT_w2"; do
  wait_for 30 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$p/health)\" = 503 ]"
done
wk_publish "$MEDIA"/m*.wav
stalled_lag() {
  local g1 g2 c1 c2
  g1=$(wk_metric soundhash_worker_group_lag "$WK_PORT_w1") g2=$(wk_metric soundhash_worker_group_lag "$WK_PORT_w2")
  c1=$(wk_metric soundhash_worker_consumer_lag_sum "$WK_PORT_w1")
  c2=$(wk_metric soundhash_worker_consumer_lag_sum "$WK_PORT_w2")
  [ "$g1" = 6 ] && [ "$g2" = 6 ] && [ $((c1 + c2)) -eq 6 ]
}
wait_for 20 stalled_lag
check "stalled: group lag 6 on both, own lags sum to 6" stalled_lag
# What w2 reports for its own partitions, w1 reports too (and the other way round).
same_view() {
  local own other
  own=$(lag_series "$1") other=$(lag_series "$2" group)
  [ -n "$own" ] && [ -z "$(comm -23 <(echo "$own") <(echo "$other"))" ]
}
check "w1's group lag shows w2's stalled partitions as w2 does" same_view "$WK_PORT_w2" "$WK_PORT_w1"
check "w2's group lag shows w1's stalled partitions as w1 does" same_view "$WK_PORT_w1" "$WK_PORT_w2"
wk_kill w1 TERM
check "w1: exit 0 while the database is down" test "$WK_RC" -eq 0
wk_kill w2 TERM
check "w2: exit 0 while the database is down" test "$WK_RC" -eq 0

# The database is (still) down at start: beyond --db-wait, exit 1 without joining.
bad_worker 1 'did not answer within 2 s' --dsn "$SH_DSN" --media-root "$MEDIA" --db-wait 2
bounded 2

# SIGTERM during that wait: exit 0 at once (nothing was consumed).
"$SH_BIN" worker --brokers "$BOOT" --dsn "$SH_DSN" --media-root "$MEDIA" --db-wait 60 \
  > /dev/null 2> "$SH_TMP/w3.log" &
W3=$!
WK_PIDS+=("$W3")
wait_for 20 grep -q 'event=db_waiting' "$SH_TMP/w3.log"
kill -TERM "$W3"
set +e; wait "$W3"; W3_RC=$?; set -e
check "SIGTERM during the database wait: exit 0, logged" bash -c \
  "[ $W3_RC -eq 0 ] && grep -q 'event=worker_start_interrupted' '$SH_TMP/w3.log'"

# Down at start and started in time: the worker waits outside the group, then joins and processes.
wk_start w4 --threads 2 --db-wait 60
health_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WK_PORT_w4/health"; }
wait_for 20 grep -q 'event=db_waiting' "$SH_TMP/w4.log"
check "waiting: /health 503 with db down" test "$(health_code)" = 503
check "waiting: /health says starting, db down" bash -c \
  "curl -s http://127.0.0.1:$WK_PORT_w4/health | grep -q '\"status\":\"starting\",\"kafka\":\"down\",\"db\":\"down\"'"
"$SH_BIN" db start --dir "$SH_PG_DIR" > /dev/null 2>&1 || fail "db restart"
wait_for 30 grep -q 'event=db_ready' "$SH_TMP/w4.log"
check "did not join the group before the database answered" bash -c \
  "! sed -n '/event=db_waiting/,/event=db_ready/p' '$SH_TMP/w4.log' | grep -q 'event=group_joining'"
check "joined after the database answered" bash -c \
  "sed -n '/event=db_ready/,\$p' '$SH_TMP/w4.log' | grep -q 'event=group_joining'"
wait_for 60 wk_tracks_active 6
wait_for 30 wk_all_committed soundhash-workers
# The worker's Kafka state comes from librdkafka's periodic statistics and broker states: on a
# real cluster /health may still say kafka down for a moment after the first commit.
health_ok() { [ "$(health_code)" = 200 ]; }
for _ in $(seq 300); do health_ok && break; sleep 0.1; done
check "/health 200 once joined ($(curl -s "http://127.0.0.1:$WK_PORT_w4/health"))" health_ok
caught_up() {
  [ "$(lag_series "$WK_PORT_w4" | grep -c ' 0$')" -eq 12 ] \
    && [ "$(wk_metric soundhash_worker_group_lag "$WK_PORT_w4")" = 0 ]
}
wait_for 20 caught_up
check "alone: lag 0 for all 12 partitions" caught_up
wk_kill w4 TERM
check "w4: exit 0" test "$WK_RC" -eq 0
echo "56_worker_misconfig: all checks passed"
