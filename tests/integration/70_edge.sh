#!/usr/bin/env bash
# soundhash edge against the real processes: broker, PostgreSQL, a worker ingesting real corpus
# tracks, the replicator, and three edges — two with disjoint shards (0-3, 4-7; empty data dirs
# started after the replicator ran, so they bootstrap from its snapshot URL; one with a bearer
# token) and one with all shards reading the topic from its beginning. Each edge's /v1/shards
# checksums equal the primary's per-shard sums; a degraded real clip POSTed as audio identifies
# its track (on the all-shards edge, and on the disjoint edge that holds its shard only), and so
# do its hashes sent as JSON and by `soundhash match --edge` (binary; wrong-version and malformed
# hashes get 4xx JSON); a
# deleted track stops matching; an edge SIGKILLed while deltas flow converges after restart; bad
# requests get 4xx JSON and the node keeps serving; churn with reindexes and deletes while the
# all-shards edge is SIGKILLed mid-stream converges; an edge bootstraps from snapshot files; an edge
# whose delta stream is lost (a new cluster after the change log was pruned) sees the gap, bootstraps
# from the new replicator's snapshots and converges; `soundhash verify` passes on the converged edges
# and exits 1 on a wrong shard (a doctored copy of an edge's answer) or an unreachable edge; SIGTERM
# exits 0.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
wk_setup

pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
RT="$SH_TMP/repl_tool"
# shellcheck disable=SC2046
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
  -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" "$(dirname "$SH_BIN")/libsoundhash.a" \
  $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"

# ---- usage errors ------------------------------------------------------------------------------
expect_exit 2 "$SH_BIN" edge --brokers "$BOOT" --data "$SH_TMP/x" --shards 0-3
grep -q -- '--listen' "$SH_TMP/err" || fail "missing --listen names the flag"
expect_exit 2 "$SH_BIN" edge --brokers "$BOOT" --data "$SH_TMP/x" --shards 3-1 --listen :0
grep -q -- '--shards' "$SH_TMP/err" || fail "a bad --shards names the flag"
expect_exit 2 "$SH_BIN" edge --brokers "$BOOT" --data "$SH_TMP/x" --shards 0 --listen nohost
grep -q -- '--listen' "$SH_TMP/err" || fail "a bad --listen names the flag"
expect_exit 0 "$SH_BIN" edge --help
grep -q 'snapshot-source' "$SH_TMP/out" || fail "--help lists --snapshot-source"

# ---- real tracks into the primary, the replicator streams them ---------------------------------
mapfile -t tracks < <(ls "$corpus"/*.ogg | head -n 6)
for f in "${tracks[@]}"; do cp "$f" "$MEDIA/"; done
first=("${tracks[@]:0:4}")
wk_start w1 --threads 2 --worker-id it-edge-worker
wk_publish "${first[@]/#$corpus/$MEDIA}"
wait_for 120 wk_tracks_active 4

"$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --http 127.0.0.1:0 --heartbeat-ms 200 \
  > /dev/null 2> "$SH_TMP/rp.log" &
RP_PID=$!
WK_PIDS+=("$RP_PID")
wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/rp.log"
RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/rp.log" | head -n1)

ed_start() { # ed_start NAME [--asan] ARGS... : sets ED_PID_NAME, ED_PORT_NAME
  local name="$1" bin="$SH_BIN"; shift
  if [ "${1:-}" = "--asan" ]; then bin="$SH_BIN_ASAN"; shift; fi
  # a restart logs afresh (its port is read from the log); the previous run's log is kept aside
  [ -f "$SH_TMP/$name.log" ] && mv "$SH_TMP/$name.log" "$SH_TMP/$name.log.$(date +%s%N)"
  "$bin" edge --brokers "$BOOT" --listen 127.0.0.1:0 --data "$SH_TMP/data-$name" \
    --lag-threshold-ms 3000 "$@" > /dev/null 2> "$SH_TMP/$name.log" &
  local pid=$!
  WK_PIDS+=("$pid")
  printf -v "ED_PID_$name" '%s' "$pid"
  wait_for 30 grep -q 'event=http_listening' "$SH_TMP/$name.log"
  printf -v "ED_PORT_$name" '%s' "$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/$name.log" | head -n1)"
}
ed_stop() { # ed_stop NAME SIG : sets ED_RC
  local pidvar="ED_PID_$1"
  kill -s "$2" "${!pidvar}"
  set +e; wait "${!pidvar}"; ED_RC=$?; set -e
}
AUTH=()
# Every shard the edge holds has the primary's checksum (sum, tracks, postings).
converged() { # converged PORT
  curl -fsS "${AUTH[@]}" "127.0.0.1:$1/v1/shards" > "$SH_TMP/shards.json" || return 1
  # an empty shard still waiting for its snapshot must not pass for an empty shard of the primary
  jq -e 'all(.shards[]; .loaded and .position >= 0)' "$SH_TMP/shards.json" > /dev/null || return 1
  "$RT" sums "$SH_DSN" 8 > "$SH_TMP/sums.json" || return 1
  local got want
  got=$(jq -r '.shards[] | "\(.shard) \(.checksum.sum) \(.checksum.tracks) \(.checksum.postings)"' "$SH_TMP/shards.json")
  want=$(jq -r --argjson held "$(jq '[.shards[].shard]' "$SH_TMP/shards.json")" \
    'select(.shard as $s | $held | index($s)) | "\(.shard) \(.sum) \(.tracks) \(.postings)"' "$SH_TMP/sums.json")
  [ -n "$got" ] && [ "$got" = "$want" ]
}
metric() { curl -fsS "127.0.0.1:$2/metrics" | awk -v n="$1" '$1 == n {print $2}'; }

echo secret-token > "$SH_TMP/token"
ed_start A --asan --shards 0-3 --snapshot-source "http://127.0.0.1:$RP_PORT" --region edge-a
ed_start B --shards 4-7 --snapshot-source "http://127.0.0.1:$RP_PORT" --region edge-b \
  --api-token-file "$SH_TMP/token"
ed_start C --shards all --region secondary
check "/health answers" curl -fsS "127.0.0.1:$ED_PORT_C/health"
wait_for 60 converged "$ED_PORT_A"
echo "ok: edge A (shards 0-3, ASan) equals the primary"
AUTH=(-H "Authorization: Bearer secret-token")
wait_for 60 converged "$ED_PORT_B"
echo "ok: edge B (shards 4-7, token) equals the primary"
AUTH=()
wait_for 60 converged "$ED_PORT_C"
echo "ok: edge C (all shards, from the topic's beginning) equals the primary"
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }
wait_for 10 metric_is soundhash_edge_bootstraps_total "$ED_PORT_A" 4
echo "ok: A bootstrapped its 4 shards from the replicator's snapshots"
check "C needed no snapshot" test "$(metric soundhash_edge_bootstraps_total "$ED_PORT_C")" = 0
wait_for 20 curl -fsS "127.0.0.1:$ED_PORT_C/ready"
check "/ready on A" curl -fsS "127.0.0.1:$ED_PORT_A/ready"

# ---- a degraded real clip: 10 s from the middle, plus noise, as Ogg -------------------------------
mkclip() { # mkclip TRACK OUT : 10 s from 30 s in, plus white noise, as Ogg
  sox "$1" -c 1 "$SH_TMP/cut.wav" trim 30 10
  sox -n -r "$(soxi -r "$SH_TMP/cut.wav")" -c 1 "$SH_TMP/noise.wav" synth 10 whitenoise vol 0.05
  sox -m "$SH_TMP/cut.wav" "$SH_TMP/noise.wav" "$2"
}
target="${first[1]}"
tid=$(basename "$target" .ogg)
mkclip "$target" "$SH_TMP/clip.ogg"
match() { # match PORT [curl args...] : the answer's JSON
  local port="$1"; shift
  curl -sS "$@" --data-binary @"$SH_TMP/clip.ogg" "127.0.0.1:$port/v1/match"
}
match "$ED_PORT_C" > "$SH_TMP/m.json"
cat "$SH_TMP/m.json"; echo
check "the all-shards edge identifies $tid" test "$(jq -r '.match.track_id' "$SH_TMP/m.json")" = "$tid"
check "... reporting its node, 8 shards consulted with (epoch, position), elapsed_ms" \
  test "$(jq -r '"\(.node) \(.shards | length) \(.shards[0].position >= 0) \(.elapsed_ms > 0)"' "$SH_TMP/m.json")" = "secondary 8 true true"
shard=$(jq -r '.match.shard' "$SH_TMP/m.json")
if [ "$shard" -lt 4 ]; then holder=$ED_PORT_A; other=$ED_PORT_B; else holder=$ED_PORT_B; other=$ED_PORT_A; fi
TOK=(-H "Authorization: Bearer secret-token")
check "the disjoint edge holding shard $shard identifies it" \
  test "$(match "$holder" "${TOK[@]}" | jq -r '.match.track_id')" = "$tid"
check "the other disjoint edge has no match" \
  test "$(match "$other" "${TOK[@]}" | jq -r '.match')" = null
check "top=3 lists candidates, best first" test "$(curl -sS --data-binary @"$SH_TMP/clip.ogg" \
  "127.0.0.1:$ED_PORT_C/v1/match?top=3" | jq -r '"\(.candidates[0].track_id) \(.candidates | length <= 3)"')" = "$tid true"
lat=$(for i in 1 2 3 4 5; do curl -sS -o /dev/null -w '%{time_total}\n' --data-binary @"$SH_TMP/clip.ogg" "127.0.0.1:$ED_PORT_C/v1/match"; done | sort -n | sed -n 3p)
echo "match over HTTP (10 s Ogg clip, all 8 shards, median of 5): ${lat}s"

# ---- bad requests: 4xx with a JSON error, and the node keeps serving ------------------------------
status() { curl -s -o "$SH_TMP/body" -w '%{http_code}' "$@"; }
json_err() { jq -e '.error | type == "string"' "$SH_TMP/body" > /dev/null; }
check "empty body: 400 JSON" test "$(status -X POST "127.0.0.1:$ED_PORT_C/v1/match")" = 400 -a -s "$SH_TMP/body"
json_err || fail "empty body: JSON error"
head -c 50000 /dev/urandom > "$SH_TMP/garbage.bin"
check "garbage audio: 422" test "$(status --data-binary @"$SH_TMP/garbage.bin" "127.0.0.1:$ED_PORT_C/v1/match")" = 422
json_err || fail "garbage: JSON error"
head -c 3000000 /dev/urandom > "$SH_TMP/big.bin"
check "3 MB body over the 2 MiB cap: 413" test "$(status --data-binary @"$SH_TMP/big.bin" "127.0.0.1:$ED_PORT_C/v1/match")" = 413
json_err || fail "oversize: JSON error"
check "unknown path: 404" test "$(status "127.0.0.1:$ED_PORT_C/v1/nothing")" = 404
json_err || fail "404: JSON error"
check "wrong method: 405" test "$(status "127.0.0.1:$ED_PORT_C/v1/match")" = 405
json_err || fail "405: JSON error"
check "bad top: 400" test "$(status -X POST --data-binary @"$SH_TMP/clip.ogg" "127.0.0.1:$ED_PORT_C/v1/match?top=0")" = 400
check "no token: 401" test "$(status --data-binary @"$SH_TMP/clip.ogg" "127.0.0.1:$ED_PORT_B/v1/match")" = 401
json_err || fail "401: JSON error"
check "wrong token: 401" test "$(status -H 'Authorization: Bearer nope' "127.0.0.1:$ED_PORT_B/v1/shards")" = 401
check "/health needs no token" curl -fsS "127.0.0.1:$ED_PORT_B/health"
check "after the bad requests C still identifies the clip" \
  test "$(match "$ED_PORT_C" | jq -r '.match.track_id')" = "$tid"

# ---- client-side hashes: the same clip as JSON hashes, as binary (`match --edge`), bad hashes -----
"$SH_BIN" fingerprint --hashes --query "$SH_TMP/clip.ogg" > "$SH_TMP/clip.json"
hashes() { # hashes PORT FILE [curl args...] : the answer to the hashes JSON in FILE
  local port="$1" file="$2"; shift 2
  curl -sS "$@" -H 'Content-Type: application/json' --data-binary @"$file" "127.0.0.1:$port/v1/match"
}
check "the clip's JSON hashes identify $tid on C (fp_version 3, node named)" \
  test "$(hashes "$ED_PORT_C" "$SH_TMP/clip.json" | jq -r '"\(.match.track_id) \(.fp_versions) \(.match.node)"')" = "$tid [3] secondary"
check "... and on the disjoint edge holding shard $shard" \
  test "$(hashes "$holder" "$SH_TMP/clip.json" "${TOK[@]}" | jq -r '.match.track_id')" = "$tid"
expect_exit 0 "$SH_BIN" match --edge "http://127.0.0.1:$ED_PORT_C" --top 2 "$SH_TMP/clip.ogg"
check "match --edge (binary hashes) identifies $tid, with node and shards" \
  test "$(jq -r '"\(.match.track_id) \(.node) \(.shards | length) \(.candidates[0].track_id)"' "$SH_TMP/out")" = "$tid secondary 8 $tid"
expect_exit 0 "$SH_BIN_ASAN" match --edge "http://127.0.0.1:$ED_PORT_B" --token-file "$SH_TMP/token" "$SH_TMP/clip.ogg"
check "match --edge (ASan) with --token-file asks B" test "$(jq -r '.node' "$SH_TMP/out")" = edge-b
expect_exit 1 "$SH_BIN" match --edge "http://127.0.0.1:$ED_PORT_B" "$SH_TMP/clip.ogg"
check "match --edge without the token: exit 1, the HTTP status on stderr" grep -q 'HTTP 401' "$SH_TMP/err"
jq -c '.fp_version = 9' "$SH_TMP/clip.json" > "$SH_TMP/v9.json"
check "fp_version 9: 422 naming the versions held" \
  test "$(status -H 'Content-Type: application/json' --data-binary @"$SH_TMP/v9.json" "127.0.0.1:$ED_PORT_C/v1/match")" = 422
check "... in JSON" jq -e '(.error | test("fp_version 9")) and .fp_versions == [3]' "$SH_TMP/body"
jq -c '.fp_version = 2' "$SH_TMP/clip.json" > "$SH_TMP/v2.json"
check "fp_version 2 (compared, held by no shard): no match" \
  test "$(hashes "$ED_PORT_C" "$SH_TMP/v2.json" | jq -c '[.match, .fp_versions]')" = '[null,[2]]'
echo '{"fp_version":3,"hash_list":[[1,2],[3]]}' > "$SH_TMP/bad.json"
check "malformed JSON hashes: 400" \
  test "$(status -H 'Content-Type: application/json' --data-binary @"$SH_TMP/bad.json" "127.0.0.1:$ED_PORT_A/v1/match")" = 400
check "... naming the entry" jq -e '.error | test("hash_list\\[1\\]")' "$SH_TMP/body"
printf 'SHQ1\003\005\001\001\002' > "$SH_TMP/bad.bin"
check "truncated binary hashes: 400 JSON (ASan edge)" \
  test "$(status -H 'Content-Type: application/vnd.soundhash.hashes' --data-binary @"$SH_TMP/bad.bin" "127.0.0.1:$ED_PORT_A/v1/match")" = 400
json_err || fail "bad binary: JSON error"
check "requests counted by body" test "$(metric 'soundhash_edge_match_requests_total{body="hashes_binary"}' "$ED_PORT_C")" -ge 1 \
  -a "$(metric 'soundhash_edge_match_requests_total{body="hashes_json"}' "$ED_PORT_C")" -ge 3
lat=$(for i in 1 2 3 4 5; do curl -sS -o /dev/null -w '%{time_total}\n' -H 'Content-Type: application/json' \
  --data-binary @"$SH_TMP/clip.json" "127.0.0.1:$ED_PORT_C/v1/match"; done | sort -n | sed -n 3p)
echo "match over HTTP (the same clip's JSON hashes, $(jq '.hashes' "$SH_TMP/clip.json") of them, $(wc -c < "$SH_TMP/clip.json") bytes, median of 5): ${lat}s"
check "after the bad hashes C still identifies the clip's hashes" \
  test "$(hashes "$ED_PORT_C" "$SH_TMP/clip.json" | jq -r '.match.track_id')" = "$tid"

# ---- --upstream: edge U holds every shard but the clip's; it asks the all-shards node C (hashes
# only, shards= the one it lacks) on a local miss, answers its own shard's clips alone, and keeps
# answering from its own shards (200, upstream.status error) once C is gone ----------------------
expect_exit 2 "$SH_BIN" edge --brokers "$BOOT" --data "$SH_TMP/x" --shards 0 --listen 127.0.0.1:0 \
  --upstream ftp://x
grep -q -- '--upstream' "$SH_TMP/err" || fail "a bad --upstream names the flag"
PSELF=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
expect_exit 2 "$SH_BIN" edge --brokers "$BOOT" --data "$SH_TMP/x" --shards 0 \
  --listen "127.0.0.1:$PSELF" --upstream "http://localhost:$PSELF/"
grep -q 'that is this node' "$SH_TMP/err" || fail "an --upstream naming the node itself is refused"
own=""
for f in "${first[0]}" "${first[2]}" "${first[3]}"; do # a clip of a track outside shard $shard
  mkclip "$f" "$SH_TMP/clip2.ogg"
  s2=$(curl -sS --data-binary @"$SH_TMP/clip2.ogg" "127.0.0.1:$ED_PORT_C/v1/match" | jq -r '.match.shard')
  if [ "$s2" != null ] && [ "$s2" != "$shard" ]; then own=$(basename "$f" .ogg); break; fi
done
[ -n "$own" ] || fail "no other dev track lands outside shard $shard"
ed_start U --asan --shards "$(seq 0 7 | grep -vx "$shard" | paste -sd,)" \
  --snapshot-source "http://127.0.0.1:$RP_PORT" --region edge-u \
  --upstream "http://127.0.0.1:$ED_PORT_C" --upstream-timeout-ms 3000
wait_for 60 converged "$ED_PORT_U"
up() { # up PORT CLIP [QUERY] : U's answer, summarised
  curl -sS --data-binary @"$2" "127.0.0.1:$1/v1/match${3:-}" |
    jq -r '"\(.match.track_id) \(.match.node) \(.node) \(.upstream.status) \(.upstream.node) \(.complete) \(.shards | length)"'
}
bin_c() { metric 'soundhash_edge_match_requests_total{body="hashes_binary"}' "$ED_PORT_C"; }
bin0=$(bin_c)
check "U matches $tid (shard $shard, not held) through C: node secondary, upstream ok, 8 shards" \
  test "$(up "$ED_PORT_U" "$SH_TMP/clip.ogg")" = "$tid secondary edge-u ok secondary true 8"
check "... C was asked with binary hashes, not audio" test "$(bin_c)" = "$((bin0 + 1))"
curl -sS --data-binary @"$SH_TMP/clip.ogg" "127.0.0.1:$ED_PORT_U/v1/match" > "$SH_TMP/u.json"
check "... C's shard $shard joins shards, named by C" \
  test "$(jq -r --argjson s "$shard" '[.shards[] | select(.shard == $s) | .node] | join(",")' "$SH_TMP/u.json")" = secondary
echo "upstream round trip (ASan U → C, warm): $(jq -r '.upstream.elapsed_ms' "$SH_TMP/u.json") ms of $(jq -r '.elapsed_ms' "$SH_TMP/u.json") ms"
cp "$SH_TMP/u.json" "$SH_TMP/u-ok.json"
check "... upstream requests counted, and upstream answers" \
  test "$(metric 'soundhash_edge_upstream_requests_total{result="ok"}' "$ED_PORT_U") $(metric 'soundhash_edge_answers_total{source="upstream"}' "$ED_PORT_U")" = "2 2"
check "U matches $own (a held shard) alone: node edge-u, upstream not needed, 7 shards" \
  test "$(up "$ED_PORT_U" "$SH_TMP/clip2.ogg")" = "$own edge-u edge-u not_needed  false 7"
check "... no upstream request, a local answer" \
  test "$(metric 'soundhash_edge_upstream_seconds_count' "$ED_PORT_U") $(metric 'soundhash_edge_answers_total{source="local"}' "$ED_PORT_U")" = "2 1"
curl -sS --data-binary @"$SH_TMP/clip2.ogg" "127.0.0.1:$ED_PORT_U/v1/match?top=2" > "$SH_TMP/u-local.json"
check "top=2 with one local answer asks the upstream and merges: $own first, from edge-u" \
  test "$(jq -r '"\(.candidates[0].track_id) \(.candidates[0].node) \(.upstream.status)"' "$SH_TMP/u-local.json")" = "$own edge-u ok"
check "... the upstream connection is kept alive: fewer connections than requests" \
  bash -c "curl -fsS 127.0.0.1:$ED_PORT_U/v1/shards | jq -e '.upstream.requests == 3 and .upstream.connections < 3'"
ed_stop C KILL
check "upstream gone: U still answers its shard's clip (top=3 asks the upstream: error)" \
  test "$(up "$ED_PORT_U" "$SH_TMP/clip2.ogg" '?top=3')" = "$own edge-u edge-u error  false 7"
check "... and the other clip with no match, 200, upstream error" \
  test "$(up "$ED_PORT_U" "$SH_TMP/clip.ogg")" = "null null edge-u error  false 7"
check "... counted as upstream errors" \
  test "$(metric 'soundhash_edge_upstream_requests_total{result="error"}' "$ED_PORT_U")" = 2
curl -sS --data-binary @"$SH_TMP/clip.ogg" "127.0.0.1:$ED_PORT_U/v1/match" > "$SH_TMP/u.json"
echo "upstream down: answered in $(jq -r '.elapsed_ms' "$SH_TMP/u.json") ms ($(jq -r '.upstream.error' "$SH_TMP/u.json"))"
curl -fsS "127.0.0.1:$ED_PORT_U/v1/shards" > "$SH_TMP/u-shards.json"
PY=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import yaml, jsonschema' 2> /dev/null && PY=/usr/bin/python3
printf '%s\tPOST\t/v1/match\t200\tapplication/json\t%s\n' upstream-ok "$SH_TMP/u-ok.json" \
  local-top2 "$SH_TMP/u-local.json" upstream-down "$SH_TMP/u.json" > "$SH_TMP/u.tsv"
printf 'shards\tGET\t/v1/shards\t200\tapplication/json\t%s\n' "$SH_TMP/u-shards.json" >> "$SH_TMP/u.tsv"
check "U's answers (upstream ok, local top=2, upstream down) and /v1/shards follow ops/openapi.yaml" \
  "$PY" "$SH_ROOT/tests/integration/helpers/openapi_check.py" exchanges "$SH_ROOT/ops/openapi.yaml" "$SH_TMP/u.tsv"
check "... /v1/shards shows the upstream's last status" \
  test "$(curl -fsS "127.0.0.1:$ED_PORT_U/v1/shards" | jq -r '.upstream.status')" = error
check "... /ready is not affected by the upstream" curl -fsS -o /dev/null "127.0.0.1:$ED_PORT_U/ready"
check "... U keeps serving" test "$(up "$ED_PORT_U" "$SH_TMP/clip2.ogg")" = "$own edge-u edge-u not_needed  false 7"
origin=$(sed -n 's/.*event=edge_started .*origin=\([0-9a-f]*\).*/\1/p' "$SH_TMP/U.log" | tail -n1)
check "a request bearing U's own origin id (U as its own upstream): 508 JSON" test "$(status \
  -H "X-SoundHash-Origin: $origin" --data-binary @"$SH_TMP/clip.ogg" "127.0.0.1:$ED_PORT_U/v1/match")" = 508 -a ${#origin} -eq 32
json_err || fail "508: JSON error"
ed_stop U TERM
check "ASan edge U exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0
ed_start C --shards all --region secondary

# ---- a delete stops matching everywhere; an edge SIGKILLed while deltas flow converges -----------
wait_for 60 converged "$ED_PORT_C"
"$SH_BIN" ingest delete --brokers "$BOOT" --dsn "$SH_DSN" --track-id "$tid" > /dev/null 2> "$SH_TMP/delete.err" || {
  cat "$SH_TMP/delete.err" >&2; fail "ingest delete"; }
wk_publish "${tracks[4]/#$corpus/$MEDIA}" "${tracks[5]/#$corpus/$MEDIA}"
sleep "0.$(( RANDOM % 9 + 1 ))"
ed_stop C KILL
check "SIGKILL (rc $ED_RC)" test "$ED_RC" -eq 137
ed_start C --shards all --region secondary
wait_for 120 wk_tracks_active 5
wait_for 60 converged "$ED_PORT_C"
echo "ok: edge C converges after SIGKILL and restart"
wait_for 60 converged "$ED_PORT_A"
AUTH=(-H "Authorization: Bearer secret-token")
wait_for 60 converged "$ED_PORT_B"
AUTH=()
check "the deleted track no longer matches (C)" test "$(match "$ED_PORT_C" | jq -r '.match')" = null
check "... nor on the edge holding its shard" test "$(match "$holder" "${TOK[@]}" | jq -r '.match')" = null
m=$(curl -fsS "127.0.0.1:$ED_PORT_C/metrics")
for n in soundhash_edge_deltas_applied_total soundhash_edge_ops_applied_total \
         soundhash_edge_apply_lag_seconds_bucket soundhash_edge_match_seconds_bucket \
         soundhash_edge_shard_bytes soundhash_edge_gaps_total \
         'soundhash_http_responses_total{route="/v1/match",code="200"}'; do
  check "metric $n" grep -q "^$n" <<< "$m"
done

# ---- churn written straight into the primary (uploads, reindexes to the next fp_version, deletes)
# while edge C is SIGKILLed at seeded random points and restarted: every edge converges -------------
SEED=${SH_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SH_SEED=$SEED repeats the writes and the kill delays)"
RANDOM=$SEED
"$RT" write "$SH_DSN" 400 "$SEED" 1 > "$SH_TMP/write.out" &
WRITER=$!
for i in 1 2 3; do
  sleep "0.$(( RANDOM % 4 + 1 ))"
  ed_stop C KILL
  check "kill $i during apply: SIGKILL (rc $ED_RC)" test "$ED_RC" -eq 137
  ed_start C --shards all --region secondary
  wait_for 30 grep -q 'event=edge_started' "$SH_TMP/C.log"
  echo "restart $i resumes at positions: $(sed -n 's/.*event=shard_opened .* position=\([0-9-]*\).*/\1/p' "$SH_TMP/C.log" | tr '\n' ' ')"
done
wait "$WRITER" || fail "writers failed"
cat "$SH_TMP/write.out"
check "reindexes left every shard under 16 fp_versions" \
  test "$(pg_sql 'SELECT max(fp_version) FROM tracks')" -lt 12
wait_for 60 converged "$ED_PORT_C"
echo "ok: edge C converges after 3 SIGKILLs during the churn"
wait_for 60 converged "$ED_PORT_A"
AUTH=(-H "Authorization: Bearer secret-token")
wait_for 60 converged "$ED_PORT_B"
AUTH=()
echo "ok: edges A and B converge too (reindexed tracks hold a second fp_version)"
check "a shard holds two fp_versions" \
  bash -c "curl -fsS 127.0.0.1:$ED_PORT_C/v1/shards | jq -e '[.shards[].fp_versions | length] | max >= 2'"

# ---- soundhash verify: the three edges against the primary; then a wrong edge, an unreachable one --
VTOK=(env SOUNDHASH_API_TOKEN=secret-token) # B needs it; A and C hold no token and ignore it
EDGES=(--edge "http://127.0.0.1:$ED_PORT_A" --edge "http://127.0.0.1:$ED_PORT_B" --edge "http://127.0.0.1:$ED_PORT_C/")
expect_exit 0 "${VTOK[@]}" "$SH_BIN" verify --dsn "$SH_DSN" --wait 20 "${EDGES[@]}"
check "verify: 16 ok lines (A 4 + B 4 + C 8 shards), summary without mismatch" \
  test "$(jq -rs '"\([.[] | select(.ok == true and .edge.sum == .primary.sum and .position >= .primary_seq)] | length) \(.[-1].mismatched) \(length)"' "$SH_TMP/out")" = "16 0 17"
# a wrong edge: B's real answer with shard 5's sum altered, served as a stale copy would be
curl -fsS "${TOK[@]}" "127.0.0.1:$ED_PORT_B/v1/shards" |
  jq -c '(.shards[] | select(.shard == 5) | .checksum.sum) |= (if . == "0000000000000001" then "0000000000000002" else "0000000000000001" end)' \
  > "$SH_TMP/fake-shards.json"
cat > "$SH_TMP/fake_edge.py" << 'EOF'
import http.server, os, sys
body = open(sys.argv[1], "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v1/shards" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[2] + ".tmp", "w").write(str(s.server_address[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
s.serve_forever()
EOF
python3 "$SH_TMP/fake_edge.py" "$SH_TMP/fake-shards.json" "$SH_TMP/fake.port" &
FAKE_PID=$!
WK_PIDS+=("$FAKE_PID")
wait_for 60 test -s "$SH_TMP/fake.port"   # python start-up: seconds on a loaded machine
expect_exit 1 "$SH_BIN_ASAN" verify --dsn "$SH_DSN" --wait 20 --edge "http://127.0.0.1:$ED_PORT_A" \
  --edge "http://127.0.0.1:$(cat "$SH_TMP/fake.port")"
check "verify exits 1 naming shard 5 of the wrong edge, the other 7 shards ok" \
  test "$(jq -rs '"\([.[] | select(.ok == false) | .shard]) \([.[] | select(.ok == true)] | length) \(.[-1].mismatched)"' "$SH_TMP/out")" = "[5] 7 1"
grep -q 'shard 5 differs' "$SH_TMP/err" || fail "verify names the shard that differs"
kill "$FAKE_PID"
DEAD=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
expect_exit 1 "$SH_BIN_ASAN" verify --dsn "$SH_DSN" --wait 5 --edge "http://127.0.0.1:$ED_PORT_A" --edge "http://127.0.0.1:$DEAD"
grep -q "127.0.0.1:$DEAD" "$SH_TMP/err" || fail "verify names the unreachable edge"
echo "ok: verify passes on converged edges, fails on a wrong shard and on an unreachable edge"

# ---- an edge bootstrapped from snapshot files (--snapshot-source DIR) -----------------------------
mkdir -p "$SH_TMP/snaps"
for s in 0 1 2 3 4 5 6 7; do
  "$SH_BIN" replicator snapshot --dsn "$SH_DSN" --shard "$s" --out "$SH_TMP/snaps/shard-$s.snap" > /dev/null
done
ed_start D --shards 0,2,4-7 --snapshot-source "$SH_TMP/snaps" --region from-files
wait_for 60 converged "$ED_PORT_D"
wait_for 10 metric_is soundhash_edge_bootstraps_total "$ED_PORT_D" 6
echo "ok: D bootstrapped its 6 shards from the files"
echo "ok: edge D (shards 0,2,4-7 from snapshot files) equals the primary"

# ---- the edge's stream is lost (a new cluster, the change log pruned): gap → snapshot → converges --
kill "$RP_PID"; wait "$RP_PID" || true
"$SH_BIN" replicator prune --dsn "$SH_DSN" --brokers "$BOOT" --tombstone-days 7 > /dev/null
"$SH_BIN" broker --bootstrap-file "$SH_TMP/boot2" > /dev/null 2> "$SH_TMP/broker2.log" &
WK_PIDS+=($!)
wait_for 20 test -s "$SH_TMP/boot2"
BOOT_MAIN=$BOOT
BOOT=$(cat "$SH_TMP/boot2")
"$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --http 127.0.0.1:0 --heartbeat-ms 200 \
  > /dev/null 2> "$SH_TMP/rp2.log" &
RP_PID=$!
WK_PIDS+=("$RP_PID")
wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/rp2.log"
RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/rp2.log" | head -n1)
"$RT" write "$SH_DSN" 40 "$((SEED + 1))" 1 > /dev/null
ed_stop A TERM
check "ASan edge A exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0
ed_start A --asan --shards 0-3 --snapshot-source "http://127.0.0.1:$RP_PORT" --region edge-a
wait_for 60 converged "$ED_PORT_A"
check "A saw the lost stream (gaps or gone offsets: $(metric soundhash_edge_gaps_total "$ED_PORT_A"))" \
  test "$(metric soundhash_edge_gaps_total "$ED_PORT_A")" -ge 1
check "... and bootstrapped from the new replicator's snapshots" \
  test "$(metric soundhash_edge_bootstraps_total "$ED_PORT_A")" -ge 1
echo "ok: edge A moved to a new delta stream through snapshots and equals the primary"

# ---- SIGTERM --------------------------------------------------------------------------------------
for n in A B C D; do
  ed_stop "$n" TERM
  check "edge $n exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0
done
check "no sanitizer report from the ASan edge" bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$SH_TMP'/A.log* '$SH_TMP'/U.log"
kill "$RP_PID"
