#!/usr/bin/env bash
# A worker killed with SIGKILL in the middle of a run leaves no partial track, and after a restart
# the final state is exactly that of an uninterrupted run: same tracks, versions, hash counts and
# blobs, and one change-log entry per track (re-delivered events are stale no-ops).
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
wk_setup

# Enough audio that the kill lands mid-run: corpus music when present, else long sox tracks.
files=()
corpus="$SH_DATA_DIR/corpus/dev"
if [ -d "$corpus" ]; then
  for f in $(ls "$corpus"/*.ogg | head -n 8); do cp "$f" "$MEDIA/"; files+=("$MEDIA/$(basename "$f")"); done
else
  for i in $(seq 8); do
    sox -n -r 22050 -c 2 "$MEDIA/long$i.flac" synth 150 pluck $((110 * i)) square $((90 * i))-$((400 * i)) vol 0.3
    files+=("$MEDIA/long$i.flac")
  done
fi
N=${#files[@]}
wk_expect_counts "${files[@]}"

written() { [ "$(pg_sql 'SELECT count(*) FROM tracks')" -ge "$1" ]; }
wk_start w1 --threads 2 --batch 2 --max-inflight 4
wk_publish "${files[@]}"
wait_for 120 written 2
wk_kill w1 KILL
at_kill=$(pg_sql 'SELECT count(*) FROM tracks')
echo "killed with $at_kill of $N tracks written"
check "killed by SIGKILL (rc $WK_RC)" test "$WK_RC" -eq 137
check "no partial track: every stored track has its whole fingerprint row" \
  test "$(pg_sql 'SELECT count(*) FROM tracks t LEFT JOIN fingerprints f USING (external_id)
                  WHERE f.external_id IS NULL OR f.n_hashes <> t.n_hashes')" = 0
for id in $(pg_sql 'SELECT external_id FROM tracks'); do
  check "track $id written before the kill is complete" \
    test "$(pg_sql "SELECT n_hashes FROM fingerprints WHERE external_id = '$id'")" = "${EXPECT[$id]}"
done

wk_start w2 --threads 2 --batch 2 --max-inflight 4
wait_for 180 wk_tracks_active "$N"
wait_for 60 wk_all_committed soundhash-workers
wk_check_tracks
check "exactly one change per track: re-delivered events were stale no-ops" \
  test "$(pg_sql 'SELECT count(*), count(DISTINCT external_id) FROM change_log')" = "$N|$N"
snap() { pg_sql "SELECT t.external_id, t.version, t.status, t.sha256, t.n_hashes, round(t.duration_s::numeric, 3),
                        md5(f.blob) FROM tracks t JOIN fingerprints f USING (external_id) ORDER BY 1"; }
killed=$(snap)
wk_kill w2 TERM
check "restarted worker exits 0 on SIGTERM" test "$WK_RC" -eq 0

# The reference: the same events consumed without interruption into an emptied database, by two
# worker processes sharing the group (the second one joining triggers a rebalance mid-run).
pg_sql 'TRUNCATE fingerprints, change_log, tracks; UPDATE change_counter SET last_seq = 0' > /dev/null
wk_start ref --threads 1 --group reference
wk_start ref2 --threads 1 --group reference
wait_for 180 wk_tracks_active "$N"
wait_for 60 wk_all_committed reference
check "killed+restarted run = uninterrupted run (versions, hashes, blobs)" test "$(snap)" = "$killed"
check "two processes in one group: one change per track" \
  test "$(pg_sql 'SELECT count(*), count(DISTINCT external_id) FROM change_log')" = "$N|$N"
both() { grep -q 'event=partitions_assigned' "$SH_TMP/ref.log" && grep -q 'event=partitions_assigned' "$SH_TMP/ref2.log"; }
check "both processes got partitions" both
wk_kill ref TERM
check "first reference worker exits 0" test "$WK_RC" -eq 0
wk_kill ref2 TERM
check "second reference worker exits 0" test "$WK_RC" -eq 0
echo "51_worker_kill: all checks passed"
