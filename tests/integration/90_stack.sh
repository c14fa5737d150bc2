#!/usr/bin/env bash
# The demo's stack at a small scale, end to end, with assertions: a real Kafka node (ops/kafka.sh),
# PostgreSQL, two workers, the replicator, two edge caches with disjoint shards (edge-eu 0-3,
# edge-ap 4-7, --upstream to the region) and a secondary region with all shards, all bootstrapped
# from the replicator's snapshots. After uploads and a delete: every node verifies against the
# primary; a clip of every stored track is identified by the region, by the cache holding its
# shard (locally) and by the other cache (through the upstream, naming the region); the deleted
# track matches nowhere; `soundhash status` reports every node healthy; every process stops on
# SIGTERM with exit 0 and nothing of the stack is left running.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
WK_KAFKA=real WK_KAFKA_NODES=1 wk_setup

mapfile -t tracks < <(ls "$corpus"/*.ogg | head -n 8)
for f in "${tracks[@]}"; do cp "$f" "$MEDIA/"; done
wk_start w1 --threads 1 --worker-id it-stack-a
wk_start w2 --threads 1 --worker-id it-stack-b
wk_publish "${tracks[@]/#$corpus/$MEDIA}"
wait_for 180 wk_tracks_active 8
rp_start rp

ed_start region --shards all --region region --snapshot-source "http://127.0.0.1:$RP_PORT"
up=(--upstream "http://127.0.0.1:$ED_PORT_region")
ed_start eu --shards 0-3 --region edge-eu --snapshot-source "http://127.0.0.1:$RP_PORT" "${up[@]}"
ed_start ap --shards 4-7 --region edge-ap --snapshot-source "http://127.0.0.1:$RP_PORT" "${up[@]}"
URLS=("http://127.0.0.1:$ED_PORT_eu" "http://127.0.0.1:$ED_PORT_ap" "http://127.0.0.1:$ED_PORT_region")

victim=$(basename "${tracks[0]}" .ogg)
"$SH_BIN" ingest delete --brokers "$BOOT" --track-id "$victim" > /dev/null 2>&1 || fail "ingest delete"
victim_deleted() { [ "$(pg_sql "SELECT status FROM tracks WHERE external_id = '$victim'")" = deleted ]; }
wait_for 60 victim_deleted
check "every node equals the primary (verify, three nodes)" \
  "$SH_BIN" verify --dsn "$SH_DSN" --wait 120 "${URLS[@]/#/--edge=}"

ask() { # ask URL FILE: the answer's "track node" ("none -" when no match)
  curl -fsS --max-time 30 --data-binary @"$2" "$1/v1/match" |
    jq -r '"\(.match.track_id // "none") \(.match.node // "-") \(.match.shard // -1)"'
}
held_local=0; via_upstream=0
for f in "${tracks[@]:1}"; do
  id=$(basename "$f" .ogg)
  sox "$f" -c 1 "$SH_TMP/clip.wav" trim 30 10 2> /dev/null || fail "sox clip of $id"
  read -r got node shard < <(ask "${URLS[2]}" "$SH_TMP/clip.wav")
  [ "$got $node" = "$id region" ] || fail "the region answers '$got' ($node) for $id"
  if [ "$shard" -le 3 ]; then own=0; other=1; else own=1; other=0; fi
  read -r got node _ < <(ask "${URLS[$own]}" "$SH_TMP/clip.wav")
  [ "$got" = "$id" ] && [ "$node" != region ] || fail "the cache holding shard $shard answers '$got' ($node) for $id"
  held_local=$((held_local + 1))
  read -r got node _ < <(ask "${URLS[$other]}" "$SH_TMP/clip.wav")
  [ "$got $node" = "$id region" ] || fail "the other cache answers '$got' ($node) for $id, want it through the upstream"
  via_upstream=$((via_upstream + 1))
done
check "7 tracks: identified by the region, locally by the cache holding the shard ($held_local) and through the upstream by the other ($via_upstream)" \
  test "$held_local $via_upstream" = "7 7"
sox "${tracks[0]}" -c 1 "$SH_TMP/victim.wav" trim 30 10 2> /dev/null
for u in "${URLS[@]}"; do
  read -r got _ _ < <(ask "$u" "$SH_TMP/victim.wav")
  [ "$got" = none ] || fail "$u still answers the deleted track $victim ($got)"
done
echo "ok: the deleted track $victim matches nowhere (3 nodes)"

expect_exit 0 "$SH_BIN" status --brokers "$BOOT" --dsn "$SH_DSN" --json \
  --node "http://127.0.0.1:$WK_PORT_w1" --node "http://127.0.0.1:$WK_PORT_w2" \
  --node "http://127.0.0.1:$RP_PORT" "${URLS[@]/#/--node=}"
check "status: 2 workers, the replicator, 2 edges and a region, all healthy, no group lag" \
  jq -e '[.nodes[].role] == ["worker", "worker", "replicator", "edge", "edge", "region"] and
         all(.nodes[]; .ok) and ([.kafka.groups[0].topics[].lag] | add) == 0' "$SH_TMP/out"

# ---- everything stops cleanly, nothing left ------------------------------------------------------
for n in region eu ap; do
  ed_stop "$n" TERM
  [ "$ED_RC" -eq 0 ] || fail "edge $n exited $ED_RC on SIGTERM"
done
rp_stop TERM
for w in w1 w2; do wk_kill "$w" TERM; [ "$WK_RC" -eq 0 ] || fail "worker $w exited $WK_RC"; done
echo "ok: edges, replicator and workers exit 0 on SIGTERM"
wk_cleanup
trap - EXIT
# (a function, not `bash -c`: that shell's own command line would name $SH_TMP)
leftovers() { pgrep -af -- "$SH_TMP" || true; }
check "nothing of this stack is left running" test -z "$(leftovers)"
