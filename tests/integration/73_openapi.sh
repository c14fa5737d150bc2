#!/usr/bin/env bash
# ops/openapi.yaml (the edge) and ops/openapi-replicator.yaml against the real servers: a worker
# ingests one real track, the replicator serves its snapshot, an ASan edge (token from
# SOUNDHASH_API_TOKEN, --request-timeout 3) bootstraps from it. (c) each document is valid OpenAPI
# 3.0 (structure, schemas, $refs, examples) and lists exactly the routes its server's sources
# register; (a) every documented operation is served, every other method on its path is the
# document's 405, undocumented paths are its 404; (b) requests of each kind — a real clip, its
# hashes as JSON and binary, shards= — and the bad requests 70_edge does not already assert (a
# 100 MiB chunked body streamed from a pipe, a trickled body, malformed, wrong-version and
# oversized hashes, wrong content types, bad tokens given through the environment, bad top and
# shards) get the status the document lists and a body valid against its schema; after each bad
# request the node still answers /health; a trickled body is cut within the time limit while
# other clients are served.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
# Debian's python3 with python3-yaml and python3-jsonschema (ops/install-deps.sh); another python3
# on PATH may lack them.
PY=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import yaml, jsonschema' 2> /dev/null && PY=/usr/bin/python3
"$PY" -c 'import yaml, jsonschema' || fail "python3-yaml and python3-jsonschema are needed (ops/install-deps.sh)"
OA=("$PY" "$SH_ROOT/tests/integration/helpers/openapi_check.py")
EDGE_SPEC="$SH_ROOT/ops/openapi.yaml"
RP_SPEC="$SH_ROOT/ops/openapi-replicator.yaml"

# ---- (c) the documents themselves, and the routes the sources register -----------------------------
"${OA[@]}" spec "$EDGE_SPEC" --routes-from "$SH_ROOT/edge" -- \
  spec "$RP_SPEC" --routes-from "$SH_ROOT/replicator" || fail "ops/openapi*.yaml"

# ---- one real track into the primary; the replicator; an edge bootstrapped from its snapshot ------
# the broker and the schema (wk_setup without its kafka_tool build, which this test does not use)
"$SH_BIN" broker --bootstrap-file "$SH_TMP/boot" > /dev/null 2> "$SH_TMP/broker.log" &
BROKER_PID=$!
wait_for 20 test -s "$SH_TMP/boot"
BOOT=$(cat "$SH_TMP/boot")
pg_migrate 2> /dev/null
target=$(ls "$corpus"/*.ogg | head -n 1)
tid=$(basename "$target" .ogg)
cp "$target" "$MEDIA/"
wk_start w1 --threads 1 --worker-id it-openapi
wk_publish "$MEDIA/$tid.ogg"
"$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --http 127.0.0.1:0 --heartbeat-ms 200 \
  > /dev/null 2> "$SH_TMP/rp.log" &
WK_PIDS+=($!)
wait_for 30 grep -q 'event=http_listening' "$SH_TMP/rp.log"
RP="127.0.0.1:$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/rp.log" | head -n1)"
wait_for 60 wk_tracks_active 1
wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/rp.log"

TOKEN=t0ken-openapi-73
SOUNDHASH_API_TOKEN=$TOKEN "$SH_BIN_ASAN" edge --brokers "$BOOT" --listen 127.0.0.1:0 \
  --data "$SH_TMP/edge" --shards all --snapshot-source "http://$RP" --region oa-edge \
  --request-timeout 3 > /dev/null 2> "$SH_TMP/edge.log" &
ED_PID=$!
WK_PIDS+=("$ED_PID")
wait_for 30 grep -q 'event=http_listening' "$SH_TMP/edge.log"
ED="127.0.0.1:$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/edge.log" | head -n1)"
AUTH=(-H "Authorization: Bearer $TOKEN")
has_track() { curl -fsS "${AUTH[@]}" "$ED/v1/shards" | jq -e '[.shards[].tracks] | add == 1'; }
wait_for 60 has_track
wait_for 30 curl -fsS "$ED/ready"

# ---- (a) every documented route is served, nothing else ---------------------------------------------
"${OA[@]}" probe "$EDGE_SPEC" "http://$ED" --token "$TOKEN" -- probe "$RP_SPEC" "http://$RP" ||
  fail "the edge or the replicator departs from its document"

# ---- (b) requests of each kind; every answer is recorded and validated against the document -------
mkdir -p "$SH_TMP/ex"
: > "$SH_TMP/edge.tsv"
: > "$SH_TMP/rp.tsv"
N=0
# send LABEL METHOD HOSTPORT PATH [curl args...]: the answer's status in $ST, body in $BODY; the
# exchange is appended to the server's manifest (validated at the end, all at once).
send() {
  local label="$1" method="$2" host="$3" path="$4"; shift 4
  N=$((N + 1)); BODY="$SH_TMP/ex/$N.body"
  local out
  out=$(curl -sS -X "$method" -o "$BODY" -w '%{http_code}\t%{content_type}' "$@" "http://$host$path") || true
  ST=${out%%$'\t'*}
  local manifest="$SH_TMP/edge.tsv"
  [ "$host" = "$RP" ] && manifest="$SH_TMP/rp.tsv"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$method" "$path" "$ST" "${out#*$'\t'}" "$BODY" >> "$manifest"
}
json_error() { jq -e '.error | type == "string" and length > 0' "$BODY" > /dev/null; }
alive() { test "$(curl -s -o /dev/null -w '%{http_code}' "$ED/health")" = 200; }
# bad LABEL WANT_STATUS METHOD PATH [curl args...]: a 4xx with a JSON error, and the node still serves.
bad() {
  local label="$1" want="$2" method="$3" path="$4"; shift 4
  send "$label" "$method" "$ED" "$path" "$@"
  [[ "$ST" == $want ]] || fail "$label: status $ST, want $want ($(head -c 200 "$BODY"))"
  json_error || fail "$label: not a JSON error: $(head -c 200 "$BODY")"
  alive || fail "$label: /health does not answer 200 afterwards"
  echo "ok: $label: $ST $(head -c 120 "$BODY") — /health still 200"
}

# a real clip: 10 s from the middle, with noise, as Ogg
sox "$target" -c 1 "$SH_TMP/cut.wav" trim 30 10
sox -n -r "$(soxi -r "$SH_TMP/cut.wav")" -c 1 "$SH_TMP/noise.wav" synth 10 whitenoise vol 0.05
sox -m "$SH_TMP/cut.wav" "$SH_TMP/noise.wav" "$SH_TMP/clip.ogg"
send "audio clip" POST "$ED" /v1/match "${AUTH[@]}" -H 'Content-Type: audio/ogg' --data-binary @"$SH_TMP/clip.ogg"
check "a real clip: 200, identifies $tid" test "$ST $(jq -r '.match.track_id' "$BODY")" = "200 $tid"
send "audio clip, top=3" POST "$ED" '/v1/match?top=3' "${AUTH[@]}" -H 'Content-Type: audio/ogg' --data-binary @"$SH_TMP/clip.ogg"
check "top=3: 200 with candidates" test "$ST $(jq -r '.candidates[0].track_id' "$BODY")" = "200 $tid"
printf 'not audio %.0s' {1..2000} > "$SH_TMP/noise.bin" # 20 kB, no audio format
sox -n -r 16000 -c 1 "$SH_TMP/pink.wav" synth 5 pinknoise vol 0.5
send "a clip of no track" POST "$ED" /v1/match "${AUTH[@]}" -H 'Content-Type: audio/wav' --data-binary @"$SH_TMP/pink.wav"
check "a clip of no track: 200, match null" test "$ST $(jq -r '.match' "$BODY")" = "200 null"
send "shards" GET "$ED" /v1/shards "${AUTH[@]}"
check "/v1/shards: 200, 8 shards, node oa-edge" test "$ST $(jq -r '"\(.shards | length) \(.node)"' "$BODY")" = "200 8 oa-edge"
send "shards, lower-case scheme" GET "$ED" /v1/shards -H "Authorization: bearer $TOKEN"
check "the auth scheme is case-insensitive (RFC 9110): 'bearer T' is accepted" test "$ST" = 200
send "ready" GET "$ED" /ready
send "metrics" GET "$ED" /metrics
send "replicator health" GET "$RP" /health
send "replicator metrics" GET "$RP" /metrics
send "replicator snapshot, not a number" GET "$RP" /v1/snapshots/x1
send "replicator snapshot past the shard count" GET "$RP" /v1/snapshots/99999

# the 100 MiB body, streamed from a pipe (chunked: no length to refuse up front)
t0=$(date +%s%N)
bad "100 MiB chunked body from a pipe" 413 POST /v1/match "${AUTH[@]}" -H 'Content-Type: audio/ogg' \
  -T - < <(head -c 100M /dev/zero)
echo "  (the 100 MiB body was read and dropped in $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
bad "100 MiB declared body from a pipe" 413 POST /v1/match "${AUTH[@]}" -H 'Content-Type: audio/ogg' \
  -H 'Content-Length: 104857600' -T - < <(head -c 100M /dev/zero)

# the clip's hashes, fingerprinted here (the audio never leaves): JSON, and the binary SHQ1 form
"$SH_BIN" fingerprint --hashes --query "$SH_TMP/clip.ogg" > "$SH_TMP/hashes.json"
cat > "$SH_TMP/shq1.py" << 'PY'
import json, struct, sys
def varint(v):
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)
def shq1(q, n):
    """The binary form of q's first n hashes; past the list, more at its last t."""
    hl = sorted((t, h) for h, t in q["hash_list"])
    body, prev = [b"SHQ1", varint(q["fp_version"]), varint(n)], 0
    for t, h in hl[:n]:
        body += [varint(t - prev), struct.pack("<I", h)]
        prev = t
    body.append((varint(0) + struct.pack("<I", hl[-1][1])) * max(0, n - len(hl)))
    return b"".join(body)
q = json.load(open(sys.argv[1]))
open(sys.argv[2], "wb").write(shq1(q, len(q["hash_list"])))  # the clip's hashes
open(sys.argv[3], "wb").write(shq1(q, int(sys.argv[4])))      # a count over the cap
PY
"$PY" "$SH_TMP/shq1.py" "$SH_TMP/hashes.json" "$SH_TMP/hashes.shq" "$SH_TMP/many.shq" 400000
JSON=(-H 'Content-Type: application/json')
SHQ=(-H 'Content-Type: application/vnd.soundhash.hashes')
send "JSON hashes" POST "$ED" /v1/match "${AUTH[@]}" "${JSON[@]}" --data-binary @"$SH_TMP/hashes.json"
check "JSON hashes: 200, identifies $tid under fp_version 3" \
  test "$ST $(jq -r '"\(.match.track_id) \(.fp_versions)"' "$BODY")" = "200 $tid [3]"
send "binary hashes, top=2" POST "$ED" '/v1/match?top=2' "${AUTH[@]}" "${SHQ[@]}" --data-binary @"$SH_TMP/hashes.shq"
check "binary hashes ($(stat -c %s "$SH_TMP/hashes.shq") bytes, $(stat -c %s "$SH_TMP/hashes.json") as JSON): 200, identifies $tid" \
  test "$ST $(jq -r '.match.track_id' "$BODY")" = "200 $tid"
send "JSON hashes, shards=0,3" POST "$ED" '/v1/match?shards=0,3' "${AUTH[@]}" "${JSON[@]}" --data-binary @"$SH_TMP/hashes.json"
check "shards=0,3: only shards 0 and 3 consulted, none missing" \
  test "$ST $(jq -c '[[.shards[].shard], .missing]' "$BODY")" = "200 [[0,3],[]]"
jq -c '.fp_version = 2' "$SH_TMP/hashes.json" > "$SH_TMP/v2.json"
send "hashes of a version no shard holds" POST "$ED" /v1/match "${AUTH[@]}" "${JSON[@]}" --data-binary @"$SH_TMP/v2.json"
check "fp_version 2 (compared, not held): 200 without a match" test "$ST $(jq -r '.match' "$BODY")" = "200 null"

# malformed or wrong-version hashes: each refused; the document must refuse those its schema can
# tell (it and the server agree on what a valid body is)
INVALID=()
malformed() { # malformed LABEL STATUS BODY [spec-invalid]
  N=$((N + 1))
  printf '%s' "$3" > "$SH_TMP/bad-$N.json"
  [ "${4:-}" = spec-invalid ] && INVALID+=("$SH_TMP/bad-$N.json")
  bad "$1" "$2" POST /v1/match "${AUTH[@]}" "${JSON[@]}" --data-binary @"$SH_TMP/bad-$N.json"
}
malformed "hashes: not JSON" 400 '{"fp_version":3,"hash_list":[[1,2]'
malformed "hashes: no hash_list" 400 '{"fp_version":3}' spec-invalid
malformed "hashes: an entry of 3 numbers" 400 '{"fp_version":3,"hash_list":[[1,2],[3,4,5]]}' spec-invalid
malformed "hashes: a hash past 2^32" 400 '{"fp_version":3,"hash_list":[[4294967296,0]]}' spec-invalid
malformed "hashes: a negative t" 400 '{"fp_version":3,"hash_list":[[7,-1]]}' spec-invalid
malformed "hashes: an array, not an object" 400 '[[1,2]]' spec-invalid
malformed "hashes of fp_version 9" 422 '{"fp_version":9,"hash_list":[[1,2]]}'
check "... the 422 names the versions held and those compared" \
  test "$(jq -c '[.fp_versions, .supported]' "$BODY")" = "[[3],[2,3,4]]"
malformed "hashes: times 4e9 frames in (past --max-clip-s)" 422 '{"fp_version":3,"hash_list":[[7,4000000000],[8,4000000010]]}'
check "... the 422 names the clip limit" grep -q 'max-clip-s' "$BODY"
printf 'SHQ1\003\005\000' > "$SH_TMP/trunc.shq"
bad "binary hashes: truncated" 400 POST /v1/match "${AUTH[@]}" "${SHQ[@]}" --data-binary @"$SH_TMP/trunc.shq"
printf 'SHQ2\003\000' > "$SH_TMP/magic.shq"
bad "binary hashes: a wrong magic" 400 POST /v1/match "${AUTH[@]}" "${SHQ[@]}" --data-binary @"$SH_TMP/magic.shq"
bad "binary hashes: 400,000 (over a 60 s clip's cap, 327,301 at fp_version 4, and the 2 MiB body cap; test_qhash covers the count cap alone)" 413 POST /v1/match "${AUTH[@]}" "${SHQ[@]}" --data-binary @"$SH_TMP/many.shq"
bad "shards=8 (past the shard count)" 400 POST '/v1/match?shards=8' "${AUTH[@]}" "${JSON[@]}" --data-binary @"$SH_TMP/hashes.json"
bad "shards=1,,2" 400 POST '/v1/match?shards=1,,2' "${AUTH[@]}" "${JSON[@]}" --data-binary @"$SH_TMP/hashes.json"

# wrong content types: audio declared as JSON or as binary hashes, hashes declared as audio, a
# multipart form upload, text
bad "audio sent as application/json" 400 POST /v1/match "${AUTH[@]}" "${JSON[@]}" --data-binary @"$SH_TMP/clip.ogg"
bad "audio sent as binary hashes" 400 POST /v1/match "${AUTH[@]}" "${SHQ[@]}" --data-binary @"$SH_TMP/clip.ogg"
bad "JSON hashes sent as binary hashes" 400 POST /v1/match "${AUTH[@]}" "${SHQ[@]}" --data-binary @"$SH_TMP/hashes.json"
bad "JSON hashes sent as audio/ogg" 422 POST /v1/match "${AUTH[@]}" -H 'Content-Type: audio/ogg' --data-binary @"$SH_TMP/hashes.json"
bad "a multipart form upload" 422 POST /v1/match "${AUTH[@]}" -F "clip=@$SH_TMP/noise.bin"
bad "text/plain garbage" 422 POST /v1/match "${AUTH[@]}" -H 'Content-Type: text/plain' \
  --data-binary 'what is this song?'

# headers over libmicrohttpd's 32 KiB: its own 431 (HTML, documented as the exception to JSON)
head -c 40000 /dev/zero | tr '\0' a > "$SH_TMP/bighdr"
check "40 KB of headers: 431" test "$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" \
  -H "X-Big: $(cat "$SH_TMP/bighdr")" "$ED/v1/shards")" = 431
check "... and the node keeps serving" alive

# bad top values
bad "top=abc" 400 POST '/v1/match?top=abc' "${AUTH[@]}" --data-binary @"$SH_TMP/clip.ogg"
bad "top=101" 400 POST '/v1/match?top=101' "${AUTH[@]}" --data-binary @"$SH_TMP/clip.ogg"

# tokens (SOUNDHASH_API_TOKEN; 70_edge covers --api-token-file, a missing token on /v1/match and a
# wrong one on /v1/shards)
bad "no token on /v1/shards" 401 GET /v1/shards
bad "wrong token on /v1/match" 401 POST /v1/match -H "Authorization: Bearer x$TOKEN" --data-binary @"$SH_TMP/clip.ogg"
bad "a prefix of the token" 401 POST /v1/match -H "Authorization: Bearer ${TOKEN%?}" --data-binary @"$SH_TMP/clip.ogg"
bad "an empty bearer token" 401 GET /v1/shards -H "Authorization: Bearer "
bad "Basic instead of Bearer" 401 GET /v1/shards -H "Authorization: Basic $(printf 'u:%s' "$TOKEN" | base64)"
check "/health, /ready and /metrics need no token" \
  test "$(for p in /health /ready /metrics; do curl -s -o /dev/null -w '%{http_code} ' "$ED$p"; done)" = "200 200 200 "

# a trickled body: 3 bytes every 0.3 s of a declared 100000 (over 2 h); the edge's request timeout
# (3 s) must cut it in bounded time, and other clients are served meanwhile
cat > "$SH_TMP/slow.py" << 'EOF'
import socket, sys, time
host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port))
s.sendall(("POST /v1/match HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: audio/ogg\r\nContent-Length: 100000\r\n\r\n" % (host, token)).encode())
t0, sent = time.monotonic(), 0
s.settimeout(0.3)
try:
    while time.monotonic() - t0 < 30:
        s.sendall(b"Ogg")
        sent += 3
        try:
            if s.recv(4096) == b"":
                break  # closed by the server
            print("an answer before the body's end"); sys.exit(1)
        except socket.timeout:
            pass
except OSError:
    pass  # reset by the server
else:
    if time.monotonic() - t0 >= 30:
        print("still open after 30 s"); sys.exit(1)
print("%.1f %d" % (time.monotonic() - t0, sent))
EOF
"$PY" "$SH_TMP/slow.py" 127.0.0.1 "${ED##*:}" "$TOKEN" > "$SH_TMP/slow.out" &
SLOW=$!
# while the trickle runs: a real match and /health are answered
send "a match during the trickle" POST "$ED" /v1/match "${AUTH[@]}" --data-binary @"$SH_TMP/clip.ogg"
check "a match is served while a client trickles (status $ST)" test "$ST $(jq -r '.match.track_id' "$BODY")" = "200 $tid"
check "... and /health" alive
wait "$SLOW" || fail "the trickled body was not cut: $(cat "$SH_TMP/slow.out")"
read -r slow_s slow_bytes < "$SH_TMP/slow.out"
echo "the trickled body was cut after ${slow_s} s (${slow_bytes} bytes sent; --request-timeout 3)"
check "cut after the 3 s limit, within 8 s (the client would go on for 30 s)" awk -v s="$slow_s" 'BEGIN { exit !(s >= 2.5 && s < 8) }'
grep -q 'event=http_body_too_slow' "$SH_TMP/edge.log" || fail "the edge logs the slow body"
check "... and the node keeps serving" alive

# ---- every recorded answer against the documents -----------------------------------------------------
# and the request bodies: the clip's JSON hashes are valid, the malformed ones the server refused
# with a 400 are invalid (the document and the server agree on what a valid body is)
"${OA[@]}" exchanges "$EDGE_SPEC" "$SH_TMP/edge.tsv" -- exchanges "$RP_SPEC" "$SH_TMP/rp.tsv" -- \
  request "$EDGE_SPEC" POST /v1/match application/json "$SH_TMP/hashes.json" -- \
  request "$EDGE_SPEC" POST /v1/match application/json --invalid "${INVALID[@]}" ||
  fail "an answer or a request body departs from its document"

check "the edge still identifies the clip" \
  test "$(curl -sS "${AUTH[@]}" --data-binary @"$SH_TMP/clip.ogg" "$ED/v1/match" | jq -r '.match.track_id')" = "$tid"
kill -TERM "$ED_PID"
set +e; wait "$ED_PID"; rc=$?; set -e
check "the ASan edge exits 0 on SIGTERM (rc $rc)" test "$rc" -eq 0
check "no sanitizer report from the edge" bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$SH_TMP/edge.log'"
