#!/usr/bin/env bash
# The replicator's snapshots behind a bearer token (ops/SECURITY.md "API tokens"): a snapshot is a
# whole shard of the catalogue, so with `replicator --api-token-file F` (or env
# SOUNDHASH_SNAPSHOT_TOKEN) GET /v1/snapshots/N answers 401 with a JSON error to a missing or wrong
# token, and 200 with the shard to the right one; /health and /metrics stay open. An edge without
# the token fails its bootstrap saying so (and keeps retrying), an edge given it in
# SOUNDHASH_SNAPSHOT_TOKEN (or --snapshot-token-file) bootstraps and equals the primary. The token
# is in no process's argv and in no log line. Bad token files are usage errors (exit 2).
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"
ed_setup
"$RT" write "$SH_DSN" 40 7 1 > /dev/null || fail "repl_tool write"

TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$TOKEN" > "$SH_TMP/token"
chmod 600 "$SH_TMP/token"

# ---- bad token files: usage errors before anything starts ---------------------------------------
: > "$SH_TMP/empty"
expect_exit 2 "$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --api-token-file "$SH_TMP/empty"
check "an empty token file is refused, naming the flag" grep -q -- "--api-token-file.*empty" "$SH_TMP/err"
expect_exit 2 "$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --api-token-file "$SH_TMP/nope"
check "a missing token file is refused" grep -q "No such file" "$SH_TMP/err"
printf 'a\001b\n' > "$SH_TMP/ctl"
expect_exit 2 "$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --api-token-file "$SH_TMP/ctl"
check "a token with a control character is refused" grep -q "control character" "$SH_TMP/err"
expect_exit 2 "$SH_BIN" edge --brokers "$BOOT" --data "$SH_TMP/x" --shards all --listen 127.0.0.1:0 \
  --snapshot-source "$SH_TMP" --snapshot-token-file "$SH_TMP/token"
check "edge: --snapshot-token-file without a snapshot URL is a usage error" \
  grep -q -- "--snapshot-token-file: needs a --snapshot-source URL" "$SH_TMP/err"

# ---- the replicator asks for the token --------------------------------------------------------
rp_start rp --api-token-file "$SH_TMP/token"
RP="http://127.0.0.1:$RP_PORT"
code() { curl -s -o "$SH_TMP/body" -w '%{http_code}' "$@"; }
check "no token: 401" test "$(code "$RP/v1/snapshots/0")" = 401
check "the 401 is a JSON error" jq -e '.error | test("bearer token")' "$SH_TMP/body"
check "wrong token: 401" test "$(code -H "Authorization: Bearer x$TOKEN" "$RP/v1/snapshots/0")" = 401
check "a prefix of the token: 401" test "$(code -H "Authorization: Bearer ${TOKEN:0:10}" "$RP/v1/snapshots/0")" = 401
check "the right token: 200" test "$(code -H "Authorization: Bearer $TOKEN" "$RP/v1/snapshots/0")" = 200
check "... with a snapshot body" test "$(stat -c %s "$SH_TMP/body")" -gt 16
check "scheme case-insensitive (bearer): 200" test "$(code -H "Authorization: bearer $TOKEN" "$RP/v1/snapshots/1")" = 200
check "/health stays open" test "$(code "$RP/health")" = 200
check "/metrics stays open" test "$(code "$RP/metrics")" = 200

# ---- an edge without the token cannot bootstrap; with it, it does --------------------------------
ed_start nok --shards all --snapshot-source "$RP"
wait_for 60 grep -q 'event=bootstrap_failed.*401.*SOUNDHASH_SNAPSHOT_TOKEN' "$SH_TMP/nok.log"
check "an edge without the token says the source wants one" \
  grep -q 'bootstrap_failed.*wants a bearer token' "$SH_TMP/nok.log"
check "... and serves no shard" bash -c "curl -fsS 127.0.0.1:$ED_PORT_nok/v1/shards | jq -e 'all(.shards[]; .loaded | not)'"
ed_stop nok TERM

SOUNDHASH_SNAPSHOT_TOKEN="$TOKEN" ed_start ok --shards all --snapshot-source "$RP"
wait_for 90 ed_converged "$ED_PORT_ok"
check "with SOUNDHASH_SNAPSHOT_TOKEN the edge bootstraps every shard and equals the primary" ed_converged "$ED_PORT_ok"
ed_start okf --shards 0-3 --snapshot-source "$RP" --snapshot-token-file "$SH_TMP/token"
wait_for 90 ed_converged "$ED_PORT_okf"
check "with --snapshot-token-file too" ed_converged "$ED_PORT_okf"

# ---- the secret stays secret ------------------------------------------------------------------
leak=0
for p in $(pgrep -f "$SH_BIN" || true); do
  tr '\0' ' ' < "/proc/$p/cmdline" 2> /dev/null | grep -q "$TOKEN" && leak=1
done
check "the token is in no process's argv" test "$leak" = 0
check "the token is in no log line" bash -c "! grep -rq '$TOKEN' $SH_TMP/*.log"
check "the snapshots served are counted" bash -c "curl -fsS $RP/metrics | awk '\$1 == \"soundhash_replicator_snapshots_total\" { exit !(\$2 >= 10) }'"
