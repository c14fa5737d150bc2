#!/usr/bin/env bash
# During a catalogue reindex every track stays matchable at every moment (issue 8). Real processes:
# PostgreSQL, broker, replicator, a worker, one edge holding all shards. 12 real corpus tracks
# (40 s excerpts) are written into the primary as an older build made them: fp_version 2, pair
# hashes. The edge must identify a degraded clip of each from audio. Then `ingest reindex
# --older-than-fp-version` goes through the worker (the REINDEX event path: the stored audio is
# re-read and fingerprinted at this build's version) while a client keeps POSTing every clip and
# reading /v1/shards: every single answer names the right track, a shard holds both fp_versions at
# some moment, only the new one at the end, and `soundhash verify` passes. SH_REINDEX_TO=4 runs the
# same with this build's speed-invariant version 4 as the target.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
V=$(sed -n 's/^#define SH_FP_VERSION \([0-9][0-9]*\).*/\1/p' "$SH_ROOT/core/engine/sh_fp.h")
[ "$V" = 3 ] || fail "this test writes pair hashes as fp_version 2 and reindexes to 3, not $V"
# SH_REINDEX_TO=4: reindex to the speed-invariant version 4 instead (ingest reindex --fp-version 4;
# the worker fingerprints at the version the event asks for).
TO=${SH_REINDEX_TO:-$V}
. "$SH_ROOT/tests/lib/edge.sh"
ed_setup
SEED=${SH_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SH_SEED=$SEED repeats the clip offsets)"
RANDOM=$SEED

# ---- 12 tracks at fp_version 2 (pairs), their degraded clips ------------------------------------
mapfile -t tracks < <(ls "$corpus"/*.ogg | head -n 12)
: > "$SH_TMP/clips"
cuts=()
for f in "${tracks[@]}"; do
  id=$(basename "$f" .ogg)
  off=$(( RANDOM % 28 + 2 ))
  # 8 s from a seeded offset, mixed with white noise: what a phone hears; cut side by side
  ( sox -G "$f" -c 1 -r 16000 "$MEDIA/$id.flac" trim 10 40 &&
    sox "$MEDIA/$id.flac" "$SH_TMP/cut-$id.wav" trim "$off" 8 &&
    sox -n -r 16000 -c 1 "$SH_TMP/noise-$id.wav" synth 8 whitenoise vol 0.05 &&
    sox -m "$SH_TMP/cut-$id.wav" "$SH_TMP/noise-$id.wav" "$SH_TMP/clip-$id.wav" ) &
  cuts+=($!)
  echo "$id $SH_TMP/clip-$id.wav" >> "$SH_TMP/clips"
done
for p in "${cuts[@]}"; do wait "$p" || fail "sox"; done
"$RT" fpwrite "$SH_DSN" pairs 2 "$MEDIA"/*.flac > "$SH_TMP/fpwrite.out" || fail "fpwrite"
check "12 tracks at fp_version 2 in the primary" \
  test "$(pg_sql "SELECT count(*) FROM tracks WHERE status = 'active' AND fp_version = 2")" = 12

rp_start rp
ed_start E --shards all --snapshot-source "http://127.0.0.1:$RP_PORT" --region secondary
wait_for 60 ed_converged "$ED_PORT_E"
echo "ok: the edge equals the primary (12 tracks at fp_version 2)"
check "the edge's shards hold fp_version 2 only" test \
  "$(curl -fsS "127.0.0.1:$ED_PORT_E/v1/shards" | jq -c '[.shards[].fp_versions[]] | unique')" = "[2]"

jq_true() { jq -e "$@" > /dev/null; }
answer() { curl -sS --data-binary @"$2" "127.0.0.1:$1/v1/match" | jq -r '.match.track_id'; }
while read -r id clip; do
  check "before the reindex: the fp_version 2 track $id matches from audio" \
    test "$(answer "$ED_PORT_E" "$clip")" = "$id"
done < "$SH_TMP/clips"

# ---- the reindex, through the worker, under a client that never stops asking --------------------
wk_start w1 --threads 1 --batch 1 --worker-id it-edge-reindex
python3 "$SH_ROOT/tests/integration/helpers/edge_client.py" "$ED_PORT_E" "$SH_TMP/clips" \
  "$SH_TMP/client.stop" "$SH_TMP/client.json" &
CLIENT=$!
WK_PIDS+=("$CLIENT")
wait_for 30 test -s "$SH_TMP/client.json.rounds"
# 12 events at 3/s: the shards change one track at a time for ~4 s
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$BOOT" --dsn "$SH_DSN" --older-than-fp-version \
  --fp-version "$TO" --rate 3/s --batch 1 --checkpoint "$SH_TMP/reindex.json"
check "12 reindex events published" jq_true '.published == 12 and .outdated == 12' "$SH_TMP/out"
at_version() { [ "$(pg_sql "SELECT count(*) FROM tracks WHERE status = 'active' AND fp_version = $1")" = "$2" ]; }
wait_for 60 at_version "$TO" 12
echo "ok: the worker reindexed the 12 tracks to fp_version $TO"
wait_for 30 ed_converged "$ED_PORT_E"
# at least one whole round of the client against the final state, then stop it
rounds_past() { [ "$(cat "$SH_TMP/client.json.rounds")" -ge "$1" ]; }
wait_for 30 rounds_past $(( $(cat "$SH_TMP/client.json.rounds") + 2 ))
touch "$SH_TMP/client.stop"
wait "$CLIENT" || fail "the client failed"
jq -c . "$SH_TMP/client.json"
check "during the reindex every answer named the right track ($(jq -r '"\(.answers) answers in \(.rounds) rounds, \(.nwrong) wrong"' "$SH_TMP/client.json"))" \
  jq_true '.nwrong == 0 and .nerrors == 0 and .answers >= 36' "$SH_TMP/client.json"
check "... each consulting every shard, and no shard's (epoch, position) ever went back" \
  jq_true '.partial == 0 and .nback == 0' "$SH_TMP/client.json"
check "/v1/shards showed a shard holding two fp_versions ($(jq .mixed_reads "$SH_TMP/client.json") reads)" \
  jq_true ".mixed_reads >= 1 and .versions_seen == [2, $TO]" "$SH_TMP/client.json"
check "at the end every shard holds fp_version $TO only" test \
  "$(curl -fsS "127.0.0.1:$ED_PORT_E/v1/shards" | jq -c '[.shards[].fp_versions[]] | unique')" = "[$TO]"
expect_exit 0 "$SH_BIN" verify --dsn "$SH_DSN" --wait 20 --edge "http://127.0.0.1:$ED_PORT_E"
check "soundhash verify: 8 shards equal" \
  test "$(jq -rs '[.[] | select(.ok == true)] | length' "$SH_TMP/out")" = 8
while read -r id clip; do
  check "after the reindex: $id matches at fp_version $TO" test "$(answer "$ED_PORT_E" "$clip")" = "$id"
done < "$SH_TMP/clips"
if [ "$TO" = 4 ]; then
  # what version 4 is for: the same clips played 10 % faster (pitch and tempo, sox `speed`)
  while read -r id clip; do
    sox "$clip" "$SH_TMP/fast-$id.wav" speed 1.10 rate 16000
    check "after the reindex: $id matches from its clip at speed 1.10" \
      test "$(answer "$ED_PORT_E" "$SH_TMP/fast-$id.wav")" = "$id"
  done < "$SH_TMP/clips"
fi

ed_stop E TERM
check "the edge exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0
