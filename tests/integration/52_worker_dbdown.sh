#!/usr/bin/env bash
# The database goes away under a running worker: /health turns 503 with db down, consumption
# pauses, offsets do not move past unwritten events; when the database comes back the worker
# resumes by itself and every event is written — none lost.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
wk_setup

for i in 1 2 3 4 5 6; do
  sox -n -r 22050 -c 1 "$MEDIA/s$i.wav" synth 8 square $((100 * i))-$((700 * i)) vol 0.3
done
wk_expect_counts "$MEDIA"/s*.wav

wk_start w1 --threads 2 --retry-max-ms 500
wk_publish "$MEDIA/s1.wav" "$MEDIA/s2.wav" "$MEDIA/s3.wav"
wait_for 60 wk_tracks_active 3
wait_for 30 wk_all_committed soundhash-workers

health() { curl -s "http://127.0.0.1:$WK_PORT_w1/health"; }
health_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WK_PORT_w1/health"; }
db_down() { [ "$(health_code)" = 503 ] && health | grep -q '"db":"down"'; }
paused() { [ "$(wk_metric soundhash_worker_paused "$WK_PORT_w1")" = 1 ]; }
resumed() { [ "$(wk_metric soundhash_worker_paused "$WK_PORT_w1")" = 0 ] && [ "$(health_code)" = 200 ]; }

pg_stop
wait_for 30 db_down
check "/health: 503, db down, kafka still up" bash -c "curl -s http://127.0.0.1:$WK_PORT_w1/health | grep -q '\"kafka\":\"up\",\"db\":\"down\"'"
wait_for 30 paused
wk_publish "$MEDIA/s4.wav" "$MEDIA/s5.wav" "$MEDIA/s6.wav"
not_committed() { ! wk_all_committed soundhash-workers; }
check "offsets not committed past the unwritten events" not_committed
check "worker still running while the database is down" kill -0 "$WK_PID_w1"

"$SH_BIN" db start --dir "$SH_PG_DIR" > /dev/null 2>&1 || fail "db restart"
wait_for 60 resumed
wait_for 60 wk_tracks_active 6
wait_for 30 wk_all_committed soundhash-workers
wk_check_tracks
check "log: paused for the database and resumed" bash -c \
  "grep -q 'event=consumption_paused why=db_down' '$SH_TMP/w1.log' && grep -q 'event=consumption_resumed' '$SH_TMP/w1.log'"

# Phase 2: the database dies while an event is being fingerprinted, so the writer itself meets the
# outage: it retries with backoff (offset held) and writes the track once the database is back.
sox -n -r 22050 -c 1 "$MEDIA/long.wav" synth 900 square 120-2400 vol 0.3
wk_expect_counts "$MEDIA/long.wav"
busy() { [ "$(wk_metric soundhash_worker_inflight "$WK_PORT_w1")" -ge 1 ]; }
retried() { [ "$(wk_metric 'soundhash_worker_retries_total{reason="SH_ETRANSIENT"}' "$WK_PORT_w1")" -ge 1 ]; }
wk_publish "$MEDIA/long.wav"
wait_for 30 busy
pg_stop
wait_for 60 retried
check "held offset while the write is retried" not_committed
"$SH_BIN" db start --dir "$SH_PG_DIR" > /dev/null 2>&1 || fail "db restart"
wait_for 60 wk_tracks_active 7
wait_for 30 wk_all_committed soundhash-workers
wk_check_tracks

# Phase 3: SIGTERM while an event is in flight: the worker finishes it, commits, exits 0.
sox -n -r 22050 -c 1 "$MEDIA/long2.wav" synth 2400 square 100-2000 vol 0.3
wk_expect_counts "$MEDIA/long2.wav"
wk_publish "$MEDIA/long2.wav"
wait_for 30 busy
wk_kill w1 TERM
check "SIGTERM with work in flight: exit 0" test "$WK_RC" -eq 0
check "the in-flight track was finished before exiting" \
  test "$(pg_sql "SELECT n_hashes FROM fingerprints WHERE external_id = 'long2'")" = "${EXPECT[long2]}"
check "and its offset committed" wk_all_committed soundhash-workers
check "log: drained in-flight work" grep -q 'event=shutdown_draining inflight=[1-9]' "$SH_TMP/w1.log"
echo "52_worker_dbdown: all checks passed"
