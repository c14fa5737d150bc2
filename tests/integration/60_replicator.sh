#!/usr/bin/env bash
# The replicator: concurrent writers (uploads, re-uploads, reindexes, deletes) while it runs, and
# SIGKILLs at seeded random points with restarts. Afterwards, reading the delta topic like a
# subscriber reconstructs, shard by shard, exactly the primary's active tracks with their
# postings (per-shard checksums), with no gap. Also: /health, /metrics, snapshots over HTTP and to
# a file (checksummed, same content as the primary), change-log pruning, SIGTERM, usage errors.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
wk_setup

SEED=${SH_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SH_SEED=$SEED repeats the writes and the delays before each kill)"
RANDOM=$SEED

pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
RT="$SH_TMP/repl_tool"
# shellcheck disable=SC2046
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
  -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" "$(dirname "$SH_BIN")/libsoundhash.a" \
  $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"

RP_PID=
rp_start() { # rp_start NAME [--asan] [ARGS...]
  local name="$1" bin="$SH_BIN"; shift
  if [ "${1:-}" = "--asan" ]; then bin="$SH_BIN_ASAN"; shift; fi
  "$bin" replicator --brokers "$BOOT" --dsn "$SH_DSN" --http 127.0.0.1:0 --region us-east \
    --heartbeat-ms 200 "$@" > /dev/null 2> "$SH_TMP/$name.log" &
  RP_PID=$!
  WK_PIDS+=("$RP_PID")
  wait_for 30 grep -q 'event=http_listening' "$SH_TMP/$name.log"
  RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/$name.log" | head -n1)
  # /health is served (503 "starting") before the primary and Kafka are reached
  [ -n "${RP_NO_WAIT:-}" ] || wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/$name.log"
  RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/$name.log" | head -n1)
}
rp_kill() { kill -s "${1:-TERM}" "$RP_PID"; set +e; wait "$RP_PID"; RP_RC=$?; set -e; }

# ---- usage errors ------------------------------------------------------------------------------
expect_exit 2 "$SH_BIN" replicator --brokers "$BOOT"
grep -q -- '--dsn' "$SH_TMP/err" || fail "missing --dsn names the flag"
expect_exit 2 "$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --batch-ms 0
expect_exit 2 "$SH_BIN" replicator snapshot --dsn "$SH_DSN" --shard 9 --shards 8 --out "$SH_TMP/x"
expect_exit 0 "$SH_BIN" replicator --help
grep -q 'heartbeat-ms' "$SH_TMP/out" || fail "--help lists --heartbeat-ms"

# ---- /health says "starting" until the primary answers; then healthy on an empty primary --------
"$SH_BIN" db stop --dir "$SH_PG_DIR" > /dev/null
RP_NO_WAIT=1 rp_start rp0 --asan
check "health is 503 starting while the primary is down" \
  bash -c "curl -s 127.0.0.1:$RP_PORT/health | grep -q '\"starting\"'"
SH_DSN2=$("$SH_BIN" db start --dir "$SH_PG_DIR" 2> /dev/null)
check "the primary comes back at the same DSN" test "$SH_DSN2" = "$SH_DSN"
wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/rp0.log"
check "health ok on an idle primary" curl -fsS "127.0.0.1:$RP_PORT/health"
rp_kill TERM
check "SIGTERM exits 0 (rc $RP_RC)" test "$RP_RC" -eq 0

# ---- writers + kills ---------------------------------------------------------------------------
rp_start rp1
"$RT" write "$SH_DSN" 1200 "$SEED" 4 > "$SH_TMP/write.out" &
WRITER=$!
kills=0
for i in 1 2 3; do
  sleep "0.$(( RANDOM % 9 + 1 ))"
  rp_kill KILL
  kills=$((kills + 1))
  check "kill $i: SIGKILL (rc $RP_RC)" test "$RP_RC" -eq 137
  rp_start "rp-restart$i"
done
wait "$WRITER" || fail "writers failed"
cat "$SH_TMP/write.out"
echo "replicator killed $kills times"

"$RT" reconstruct "$BOOT" "$SH_DSN" soundhash.index.deltas 60 > "$SH_TMP/recon" 2> "$SH_TMP/recon.err" || {
  cat "$SH_TMP/recon" "$SH_TMP/recon.err" >&2; fail "reconstruction differs from the primary"; }
tail -n 1 "$SH_TMP/recon"
check "8 shards reconstructed, all equal to the primary" \
  test "$(grep -c '"ok":true' "$SH_TMP/recon")" -eq 8
check "reconstruction holds every active track" \
  test "$(sed -n 's/.*"summary".*"tracks":\([0-9]*\).*/\1/p' "$SH_TMP/recon")" = \
       "$(pg_sql "SELECT count(*) FROM tracks WHERE status = 'active'")"

# ---- metrics and health ------------------------------------------------------------------------
metrics=$(curl -fsS "127.0.0.1:$RP_PORT/metrics")
for m in soundhash_replicator_commit_to_ack_seconds_bucket soundhash_replicator_deltas_total \
         soundhash_replicator_postings_total soundhash_replicator_backlog_changes \
         soundhash_replicator_last_seq soundhash_replicator_payload_wire_bytes_total; do
  check "metric $m" grep -q "^$m" <<< "$metrics"
done
last=$(pg_sql 'SELECT last_seq FROM change_counter')
wait_for 20 bash -c "curl -fsS 127.0.0.1:$RP_PORT/metrics | grep -q '^soundhash_replicator_last_seq $last\$'"
check "health ok and caught up" curl -fsS "127.0.0.1:$RP_PORT/health"

# ---- snapshots ---------------------------------------------------------------------------------
curl -fsS -o "$SH_TMP/s3.http" "127.0.0.1:$RP_PORT/v1/snapshots/3"
"$SH_BIN" replicator snapshot --dsn "$SH_DSN" --shard 3 --out "$SH_TMP/s3.file" > "$SH_TMP/snap.json"
check "snapshot file written" test -s "$SH_TMP/s3.file"
check "snapshot verifies against the primary (HTTP)" "$RT" snapcheck "$SH_TMP/s3.http" "$SH_DSN" 3
check "snapshot verifies against the primary (file)" "$RT" snapcheck "$SH_TMP/s3.file" "$SH_DSN" 3
head -c 200 "$SH_TMP/s3.file" > "$SH_TMP/s3.trunc"
check "a truncated snapshot is refused" bash -c "! '$RT' snapcheck '$SH_TMP/s3.trunc' '$SH_DSN' 3"
check "unknown shard is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$RP_PORT/v1/snapshots/8")" = 404
check "a shard that is not a number is 400" test "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$RP_PORT/v1/snapshots/1x")" = 400
check "a deeper path is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$RP_PORT/v1/snapshots/1/x")" = 404
metrics=$(curl -fsS "127.0.0.1:$RP_PORT/metrics")
for l in 'route="/v1/snapshots/\*",code="200"' 'route="/v1/snapshots/\*",code="404"} 1$' \
         'route="/v1/snapshots/\*",code="400"} 1$' 'route="other",code="404"} 1$'; do
  check "answers counted: $l" grep -q "^soundhash_http_responses_total{$l" <<< "$metrics"
done

# ---- pruning, then a restart still continues without a gap -------------------------------------
before=$(pg_sql 'SELECT count(*) FROM change_log')
"$SH_BIN" replicator prune --dsn "$SH_DSN" --brokers "$BOOT" --tombstone-days 0 > "$SH_TMP/prune.json"
cat "$SH_TMP/prune.json"
after=$(pg_sql 'SELECT count(*) FROM change_log')
check "prune removed change-log rows ($before -> $after)" test "$after" -lt "$before"
rp_kill KILL
rp_start rp-after-prune --asan
"$RT" write "$SH_DSN" 100 "$((SEED + 1))" 2 > /dev/null
"$RT" reconstruct "$BOOT" "$SH_DSN" soundhash.index.deltas 60 > "$SH_TMP/recon2" 2> "$SH_TMP/recon2.err" || {
  cat "$SH_TMP/recon2" "$SH_TMP/recon2.err" >&2; fail "after prune + restart"; }
check "after prune and restart: 8 shards equal to the primary" \
  test "$(grep -c '"ok":true' "$SH_TMP/recon2")" -eq 8
rp_kill TERM
check "ASan replicator exits 0 on SIGTERM (rc $RP_RC)" test "$RP_RC" -eq 0

# ---- a pruned log and a fresh topic: the stream says where it starts (a gap for a new reader) ---
"$SH_BIN" broker --bootstrap-file "$SH_TMP/boot2" > /dev/null 2> "$SH_TMP/broker2.log" &
WK_PIDS+=($!)
wait_for 20 test -s "$SH_TMP/boot2"
"$SH_BIN" replicator prune --dsn "$SH_DSN" --brokers "$BOOT" --tombstone-days 7 > /dev/null
BOOT_MAIN=$BOOT
BOOT=$(cat "$SH_TMP/boot2")
rp_start rp-fresh-topic
"$RT" write "$SH_DSN" 20 "$((SEED + 2))" 1 > /dev/null
wait_for 20 grep -q 'event=change_log_starts_later' "$SH_TMP/rp-fresh-topic.log"
check "a reader of the fresh topic detects the gap instead of missing the pruned changes" \
  bash -c "! '$RT' reconstruct '$BOOT' '$SH_DSN' soundhash.index.deltas 20 2> '$SH_TMP/gap.err' > /dev/null && grep -q GAP '$SH_TMP/gap.err'"
rp_kill TERM
BOOT=$BOOT_MAIN

# ---- a delta Kafka refuses (over message.max.bytes): a clear stop, nothing half-sent -------------
"$SH_BIN" replicator prune --dsn "$SH_DSN" --brokers "$BOOT" --tombstone-days 7 > /dev/null
"$RT" write "$SH_DSN" 40 "$((SEED + 3))" 1 > /dev/null
set +e
timeout 60 "$SH_BIN_ASAN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --max-delta-bytes 8K \
  -X message.max.bytes=3000 > /dev/null 2> "$SH_TMP/toobig.log"
rc=$?
set -e
check "a delta over Kafka's message size stops the replicator with exit 1 (rc $rc)" test "$rc" -eq 1
check "... saying which limit to raise" grep -q 'max-delta-bytes' "$SH_TMP/toobig.log"
check "... with no sanitizer report" bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$SH_TMP/toobig.log'"
rp_start rp-after-toobig --max-delta-bytes 8K
"$RT" reconstruct "$BOOT" "$SH_DSN" soundhash.index.deltas 60 > "$SH_TMP/recon3" 2> "$SH_TMP/recon3.err" || {
  cat "$SH_TMP/recon3" "$SH_TMP/recon3.err" >&2; fail "after the refused delta"; }
check "small deltas (--max-delta-bytes 8K, shards split into several deltas) still reconstruct" \
  test "$(grep -c '"ok":true' "$SH_TMP/recon3")" -eq 8
rp_kill TERM

# ---- a primary behind the topic is refused; a new epoch is the way on ----------------------------
last=$(pg_sql 'SELECT last_seq FROM change_counter')
pg_sql "UPDATE change_counter SET last_seq = $((last - 5))" > /dev/null
expect_exit 1 timeout 60 "$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN"
check "a primary that lost changes the topic has is refused, naming the epoch procedure" \
  grep -q 'new epoch' "$SH_TMP/err"
pg_sql "UPDATE change_counter SET last_seq = $last;
        UPDATE replication_epoch SET epoch = 2, start_seq = $last, changed_at = now()" > /dev/null
rp_start rp-epoch2
grep -q 'event=positions_loaded epoch=2' "$SH_TMP/rp-epoch2.log" || fail "epoch 2 not started"
echo "ok: a new epoch starts from its start seq"
rp_kill TERM

# ---- verify waits for an edge that is still starting (503), within --wait, and names it -----------
cat > "$SH_TMP/starting.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503); self.send_header("Content-Type", "application/json")
        self.end_headers(); self.wfile.write(b'{"error":"starting"}')
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$SH_TMP/starting.py" > "$SH_TMP/starting.port" &
STARTING_PID=$!
wait_for 60 test -s "$SH_TMP/starting.port"   # python start-up: seconds on a loaded machine
t0=$(date +%s%N)
expect_exit 1 timeout 30 "$SH_BIN" verify --dsn "$SH_DSN" --wait 2 \
  --edge "http://127.0.0.1:$(cat "$SH_TMP/starting.port")"
kill "$STARTING_PID" 2>/dev/null || true
waited=$(( ($(date +%s%N) - t0) / 1000000 ))
check "verify names the edge that stayed in 503 (starting)" grep -q 'still starting (503)' "$SH_TMP/err"
check "... after waiting --wait (2 s), not at the first 503 (waited ${waited} ms)" test "$waited" -ge 1900
