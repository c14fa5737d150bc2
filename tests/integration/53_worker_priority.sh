#!/usr/bin/env bash
# Live uploads overtake a reindex backlog: while a worker is busy with a backlog of reindex events
# (from `soundhash ingest reindex`), two live uploads published meanwhile are written after at most
# a few more reindex writes (those already in flight), and the whole backlog is still
# re-fingerprinted (a second change per track, same hashes).
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
wk_setup

N=16
for i in $(seq $N); do
  sox -n -r 16000 -c 1 "$MEDIA/r$i.wav" synth 90 square $((80 + 20 * i))-$((900 + 90 * i)) vol 0.3
done
sox -n -r 16000 -c 1 "$MEDIA/live1.wav" synth 10 sine 200-3000 vol 0.4
sox -n -r 16000 -c 1 "$MEDIA/live2.wav" synth 10 square 300-1500 vol 0.3
wk_expect_counts "$MEDIA"/*.wav

wk_start w1 --threads 2
wk_publish "$MEDIA"/r*.wav
wait_for 60 wk_tracks_active $N
wk_kill w1 TERM
# The catalogue was fingerprinted by an older algorithm: a reindex rewrites only older fingerprints
# (re-running one at the same fp_version is a no-op, see sh_primary.h "Reindex writes").
pg_sql "UPDATE tracks SET fp_version = fp_version - 1; UPDATE fingerprints SET fp_version = fp_version - 1" > /dev/null

# The backlog, then live uploads behind it.
"$SH_BIN" ingest reindex --brokers "$BOOT" --dsn "$SH_DSN" --all --rate 10000/s \
  --checkpoint "$SH_TMP/reindex.ckpt" > "$SH_TMP/reindex.out" 2> "$SH_TMP/reindex.err" \
  || { cat "$SH_TMP/reindex.err" >&2; fail "ingest reindex"; }
base=$(pg_sql 'SELECT max(seq) FROM change_log')
reindex_started() { [ "$(pg_sql "SELECT max(seq) FROM change_log")" -gt "$base" ]; }
wk_start w2 --threads 1 --max-inflight 2
wait_for 120 reindex_started
last=$(pg_sql 'SELECT max(seq) FROM change_log')
wk_publish "$MEDIA/live1.wav" "$MEDIA/live2.wav"
wait_for 120 wk_tracks_active $((N + 2))
wait_for 120 wk_all_committed soundhash-workers soundhash.audio.reindex
wait_for 60 wk_all_committed soundhash-workers
wk_check_tracks
check "every reindexed track written again (2 changes each)" \
  test "$(pg_sql "SELECT count(*) FROM (SELECT external_id FROM change_log WHERE external_id LIKE 'r%'
                  GROUP BY 1 HAVING count(*) = 2) x")" = $N
before_live=$(pg_sql "SELECT count(*) FROM change_log WHERE seq > $last AND external_id LIKE 'r%'
                      AND seq < (SELECT max(seq) FROM change_log WHERE external_id LIKE 'live%')")
left=$(( N - last + base ))
echo "reindex writes after the live uploads and before both were written: $before_live ($left were left)"
check "live uploads overtook the reindex backlog ($before_live <= 4)" test "$before_live" -le 4
check "the backlog was still long when they arrived ($left >= 8)" test "$left" -ge 8
check "metrics: reindex events counted as such" \
  test "$(wk_metric 'soundhash_worker_events_total{source="reindex",op="REINDEX",result="ok"}' "$WK_PORT_w2")" = $N
wk_kill w2 TERM
check "exit 0" test "$WK_RC" -eq 0
echo "53_worker_priority: all checks passed"
