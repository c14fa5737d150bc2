#!/usr/bin/env bash
# An edge's bootstraps against the real processes (PostgreSQL, broker, replicator, an ASan edge
# holding all shards; 6 real corpus tracks written into the primary, 2 more later):
#   (a) epoch changes: the replicator restarted on a new epoch (README "Epochs"), then a second
#       epoch the running replicator follows by itself — the running edge re-bootstraps every shard
#       from the snapshots (soundhash_edge_bootstraps_total +8 each time), takes the new epoch's
#       deltas afterwards and `soundhash verify` passes;
#   (b) readers during the shard swaps: a client POSTing degraded clips of every track and reading
#       /v1/shards throughout gets only 200s, the right track every time, and every shard's
#       checksum equal to the primary's (the catalogue does not change meanwhile: never a half
#       shard, never an empty one);
#   (c) an edge (with a snapshot source) SIGKILLed at seeded moments while a burst of writes is
#       applied resumes from its cursor: it converges with no bootstrap and no gap after restart;
#   (d) an edge SIGKILLed during its first bootstraps starts over and converges, leaving no staging
#       directory; bootstrapped from snapshot files, it refuses them once they are older than what its
#       shards hold (an epoch change the files do not have yet): it keeps serving its shards,
#       retries, and bootstraps into the new epoch once fresh files are there.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
V=$(sed -n 's/^#define SH_FP_VERSION \([0-9][0-9]*\).*/\1/p' "$SH_ROOT/core/engine/sh_fp.h")
[ -n "$V" ] || fail "cannot read SH_FP_VERSION from core/engine/sh_fp.h"
ed_setup
SEED=${SH_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SH_SEED=$SEED repeats the clip offsets, the writes and the kill delays)"
RANDOM=$SEED
jq_true() { jq -e "$@" > /dev/null; }

# ---- 8 real tracks (25 s excerpts) and their degraded clips; 6 into the primary now --------------
mapfile -t tracks < <(ls "$corpus"/*.ogg | tail -n 8)
: > "$SH_TMP/clips"
cuts=()
for f in "${tracks[@]}"; do
  id=$(basename "$f" .ogg)
  off=$(( RANDOM % 15 + 2 ))
  # 8 s from a seeded offset, mixed with white noise; the tracks are cut side by side
  ( sox -G "$f" -c 1 -r 16000 "$MEDIA/$id.flac" trim 5 25 &&
    sox "$MEDIA/$id.flac" "$SH_TMP/cut-$id.wav" trim "$off" 8 &&
    sox -n -r 16000 -c 1 "$SH_TMP/noise-$id.wav" synth 8 whitenoise vol 0.05 &&
    sox -m "$SH_TMP/cut-$id.wav" "$SH_TMP/noise-$id.wav" "$SH_TMP/clip-$id.wav" ) &
  cuts+=($!)
  echo "$id $SH_TMP/clip-$id.wav" >> "$SH_TMP/clips"
done
for p in "${cuts[@]}"; do wait "$p" || fail "sox"; done
mapfile -t flacs < <(ls "$MEDIA"/*.flac)
"$RT" fpwrite "$SH_DSN" triplets "$V" "${flacs[@]:0:6}" > /dev/null || fail "fpwrite"
head -n 6 "$SH_TMP/clips" > "$SH_TMP/clips6"

# The replicator keeps one address across restarts: the edge's --snapshot-source names it.
RP_ADDR="127.0.0.1:$(free_port)"
rp_start rp1 --http "$RP_ADDR"
ed_start E --asan --shards all --snapshot-source "http://$RP_ADDR" --region secondary
wait_for 60 ed_converged "$ED_PORT_E"
metric_is() { [ "$(ed_metric "$1" "$ED_PORT_E")" = "$2" ]; }
wait_for 10 metric_is soundhash_edge_bootstraps_total 8
echo "ok: the empty edge bootstrapped its 8 shards and equals the primary"
answer() { curl -sS --data-binary @"$1" "127.0.0.1:$ED_PORT_E/v1/match" | jq -r '.match.track_id'; }

# ---- (a) + (b): two epoch changes under a hammering client ---------------------------------------
"$RT" sums "$SH_DSN" 8 > "$SH_TMP/sums.json"
python3 "$SH_ROOT/tests/integration/helpers/edge_client.py" "$ED_PORT_E" "$SH_TMP/clips6" \
  "$SH_TMP/client.stop" "$SH_TMP/client.json" "$SH_TMP/sums.json" &
CLIENT=$!
WK_PIDS+=("$CLIENT")
wait_for 30 test -s "$SH_TMP/client.json.rounds"
new_epoch() {
  pg_sql "UPDATE replication_epoch SET epoch = epoch + 1, start_seq = (SELECT last_seq FROM
          change_counter), changed_at = now()" > /dev/null
}
# A quiet primary publishes nothing (heartbeats only carry an idle shard along when the log moves):
# one change after the epoch change, a tombstone for an id never stored, moves every shard into the
# new epoch without changing any live track (the catalogue the client checks stays the same).
log_moves() { pg_sql "SELECT sh_delete_track('no-such-track-$1', 'acme', 1)" > /dev/null; }
at_epoch() {
  curl -fsS "127.0.0.1:$ED_PORT_E/v1/shards" |
    jq -e --argjson ep "$1" 'all(.shards[]; .epoch == $ep and .loaded)' > /dev/null
}
# the README's procedure: stop the replicator, start a new epoch, start it again
rp_stop TERM
new_epoch
rp_start rp2 --http "$RP_ADDR"
grep -q 'event=replicator_started epoch=2' "$SH_TMP/rp2.log" || fail "the replicator is not in epoch 2"
log_moves 2
wait_for 60 at_epoch 2
wait_for 10 metric_is soundhash_edge_bootstraps_total 16
echo "ok: epoch 2 (replicator restarted): the edge re-bootstrapped its 8 shards from the snapshots"
# a running replicator follows a new epoch by itself
new_epoch
wait_for 20 grep -q 'event=epoch_changed from=2 to=3' "$SH_TMP/rp2.log"
log_moves 3
wait_for 60 at_epoch 3
wait_for 10 metric_is soundhash_edge_bootstraps_total 24
echo "ok: epoch 3 (followed by the running replicator): 8 more bootstraps"
check "the edge logged the epoch changes" grep -q 'event=epoch_changed shard=[0-9]* from=2 to=3' "$SH_TMP/E.log"
rounds_past() { [ "$(cat "$SH_TMP/client.json.rounds")" -ge "$1" ]; }
wait_for 30 rounds_past $(( $(cat "$SH_TMP/client.json.rounds") + 2 ))
touch "$SH_TMP/client.stop"
wait "$CLIENT" || fail "the client failed"
jq -c . "$SH_TMP/client.json"
check "during 16 shard swaps: $(jq -r '"\(.answers) matches, \(.shard_reads) shard reads"' "$SH_TMP/client.json"), all 200" \
  jq_true '.nerrors == 0 and .answers >= 16' "$SH_TMP/client.json"
check "... every answer named the right track" jq_true '.nwrong == 0' "$SH_TMP/client.json"
check "... every shard read had the primary's checksum (never half a shard)" \
  jq_true '.nbad_sums == 0' "$SH_TMP/client.json"
check "... every answer consulted all 8 shards; no shard's (epoch, position) ever went back" \
  jq_true '.partial == 0 and .nback == 0' "$SH_TMP/client.json"
echo "shard entries reported loaded=false (a bootstrap in progress): $(jq .not_loaded "$SH_TMP/client.json")"

# the new epoch's deltas apply after the bootstraps
"$RT" fpwrite "$SH_DSN" triplets "$V" "${flacs[@]:6:2}" > /dev/null || fail "fpwrite"
wait_for 60 ed_converged "$ED_PORT_E"
expect_exit 0 "$SH_BIN" verify --dsn "$SH_DSN" --wait 20 --edge "http://127.0.0.1:$ED_PORT_E"
check "soundhash verify: 8 shards equal in epoch 3" \
  test "$(jq -rs '[.[] | select(.ok == true and .epoch == 3)] | length' "$SH_TMP/out")" = 8
while read -r id clip; do
  check "$id, written in epoch 3, matches" test "$(answer "$clip")" = "$id"
done < <(tail -n 2 "$SH_TMP/clips")
check "no bootstrap for the new epoch's deltas" test "$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_E")" = 24
ed_stop E TERM
check "the ASan edge exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0
check "no sanitizer report" bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$SH_TMP/E.log'"

# ---- (c) SIGKILL while a burst of deltas is applied: resumes from the cursor, no bootstrap --------
ed_start E --shards all --snapshot-source "http://$RP_ADDR" --region secondary
wait_for 30 ed_converged "$ED_PORT_E"
check "a restart with every cursor in place bootstraps nothing" metric_is soundhash_edge_bootstraps_total 0
applying() { [ "$(ed_metric soundhash_edge_deltas_applied_total "$ED_PORT_E")" != 0 ] || ! kill -0 "$WRITER"; }
"$RT" write "$SH_DSN" 400 "$SEED" 2 > "$SH_TMP/write.out" &
WRITER=$!
for i in 1 2; do
  wait_for 30 applying
  sleep "0.$(( RANDOM % 3 ))"
  ed_stop E KILL
  check "kill $i while applying: SIGKILL (rc $ED_RC)" test "$ED_RC" -eq 137
  ed_start E --shards all --snapshot-source "http://$RP_ADDR" --region secondary
  wait_for 30 grep -q 'event=edge_started' "$SH_TMP/E.log"
  echo "restart $i resumes at positions: $(sed -n 's/.*event=shard_opened .* position=\([0-9-]*\).*/\1/p' "$SH_TMP/E.log" | tr '\n' ' ')"
done
wait "$WRITER" || fail "the writer failed"
cat "$SH_TMP/write.out"
wait_for 60 ed_converged "$ED_PORT_E"
echo "converged at positions: $(curl -fsS "127.0.0.1:$ED_PORT_E/v1/shards" | jq -r '[.shards[].position] | join(" ")')"
check "after the kills the edge converged with no bootstrap" metric_is soundhash_edge_bootstraps_total 0
check "... and no gap" metric_is soundhash_edge_gaps_total 0
expect_exit 0 "$SH_BIN" verify --dsn "$SH_DSN" --wait 20 --edge "http://127.0.0.1:$ED_PORT_E"
echo "ok: soundhash verify passes after the kills"
ed_stop E TERM
check "the edge exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0

# ---- (d) a snapshot older than what the shard holds is refused, not swapped in -------------------
# F (shards 2-3) bootstraps from snapshot files, then applies newer deltas from the topic; after an
# epoch change it needs a snapshot of the new epoch, but the files still hold the old one: taking
# them would move its shards back in time (and loop: the newer deltas, the new epoch again, the
# files again).
snap_files() {
  mkdir -p "$SH_TMP/snaps"
  for s in 2 3; do
    "$SH_BIN" replicator snapshot --dsn "$SH_DSN" --shard "$s" --out "$SH_TMP/snaps/shard-$s.snap" > /dev/null
  done
}
snap_files
"$RT" write "$SH_DSN" 40 "$((SEED + 1))" 1 > /dev/null
# killed as its bootstraps begin, F starts over from what is whole on disk
ed_start F --shards 2-3 --snapshot-source "$SH_TMP/snaps" --region from-files
wait_for 30 grep -q 'event=edge_started' "$SH_TMP/F.log"
ed_stop F KILL
echo "F killed after $(grep -c 'event=bootstrapped' "$SH_TMP/F.log") of its 2 bootstraps"
ed_start F --shards 2-3 --snapshot-source "$SH_TMP/snaps" --region from-files
wait_for 60 ed_converged "$ED_PORT_F"
echo "ok: F bootstrapped from the files, then applied the newer deltas"
check "... leaving no staging or old shard directory" \
  test "$(ls -d "$SH_TMP"/data-F/*.staging "$SH_TMP"/data-F/*.old 2> /dev/null | wc -l)" = 0
curl -fsS "127.0.0.1:$ED_PORT_F/v1/shards" | jq -c '[.shards[] | [.shard, .epoch, .position, .checksum.sum]]' > "$SH_TMP/f-before.json"
new_epoch
wait_for 20 grep -q 'event=epoch_changed from=3 to=4' "$SH_TMP/rp2.log"
log_moves 4
refused() { [ "$(ed_metric soundhash_edge_bootstrap_failures_total "$ED_PORT_F")" -ge "$1" ]; }
wait_for 30 refused 4
f_boot=$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_F")
check "F refused the stale snapshots (each shard twice) and bootstrapped nothing from them" \
  test "$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_F")" = "$f_boot"
check "... its shards still hold what they held (epoch 3, same positions and checksums)" test \
  "$(curl -fsS "127.0.0.1:$ED_PORT_F/v1/shards" | jq -c '[.shards[] | [.shard, .epoch, .position, .checksum.sum]]')" = "$(cat "$SH_TMP/f-before.json")"
grep -q 'event=bootstrap_failed shard=[0-9]* code=SH_ESTALE' "$SH_TMP/F.log" || fail "F logs why it refused"
snap_files
at_epoch_f() {
  curl -fsS "127.0.0.1:$ED_PORT_F/v1/shards" | jq -e 'all(.shards[]; .epoch == 4 and .loaded)' > /dev/null
}
wait_for 30 at_epoch_f
wait_for 30 ed_converged "$ED_PORT_F"
check "with fresh files F bootstrapped into epoch 4 and equals the primary" \
  test "$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_F")" = $((f_boot + 2))
ed_stop F TERM
check "F exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0
rp_stop TERM
