#!/usr/bin/env bash
# soundhash status against real processes: broker, PostgreSQL, a worker, the replicator and an
# edge holding every shard (a "region"). With everything converged it reports the primary's
# epoch/seq/tracks, zero group lag on the events topic, each node's role and health and the edge at
# the primary's seq, and exits 0; with a backlog published while no worker runs it reports that
# lag; with the edge killed it reports the node down and exits 1.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
wk_setup
mapfile -t tracks < <(ls "$corpus"/*.ogg | head -n 3)
for f in "${tracks[@]}"; do cp "$f" "$MEDIA/"; done

wk_start w1 --threads 2 --worker-id it-status-worker
wk_publish "${tracks[@]/#$corpus/$MEDIA}"
wait_for 120 wk_tracks_active 3
wait_for 30 wk_all_committed soundhash-workers

"$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --http 127.0.0.1:0 --heartbeat-ms 200 \
  > /dev/null 2> "$SH_TMP/rp.log" &
WK_PIDS+=("$!")
wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/rp.log"
RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/rp.log" | head -n1)
"$SH_BIN" edge --brokers "$BOOT" --listen 127.0.0.1:0 --data "$SH_TMP/data-r" --shards all \
  --region region-x > /dev/null 2> "$SH_TMP/edge.log" &
ED_PID=$!
WK_PIDS+=("$ED_PID")
wait_for 30 grep -q 'event=http_listening' "$SH_TMP/edge.log"
ED_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/edge.log" | head -n1)
wait_for 60 "$SH_BIN" verify --dsn "$SH_DSN" --edge "http://127.0.0.1:$ED_PORT" --wait 1

nodes=(--node "http://127.0.0.1:$WK_PORT_w1" --node "http://127.0.0.1:$RP_PORT"
       --node "http://127.0.0.1:$ED_PORT")
expect_exit 0 "$SH_BIN" status --brokers "$BOOT" --dsn "$SH_DSN" "${nodes[@]}" --json
S="$SH_TMP/out"
seq=$(pg_sql 'SELECT last_seq FROM change_counter')
check "the primary: 3 active tracks at seq $seq" \
  jq -e --argjson s "$seq" '.primary.ok and .primary.tracks_active == 3 and .primary.last_seq == $s' "$S"
check "the workers' group has no lag on the events topic (6 partitions)" \
  jq -e '.kafka.groups[0] | .group == "soundhash-workers" and
         (.topics[] | select(.topic == "soundhash.audio.events") | .lag == 0 and .partitions == 6)' "$S"
check "the delta topic holds deltas" jq -e '.kafka.deltas.messages > 0' "$S"
check "nodes: worker, replicator, region — all healthy" \
  jq -e '[.nodes[] | .role] == ["worker", "replicator", "region"] and all(.nodes[]; .ok)' "$S"
check "the region is at the primary's seq on every shard, named, shards 0-7" \
  jq -e --argjson s "$seq" '.nodes[2] | .position_min == $s and .name == "region-x" and .shards == "0-7"' "$S"

# a table for people: a header and one row per node
expect_exit 0 "$SH_BIN" status --brokers "$BOOT" --dsn "$SH_DSN" "${nodes[@]}"
check "the table has the NODE header and the three nodes" \
  bash -c "grep -q '^NODE' '$SH_TMP/out' && grep -c '127.0.0.1' '$SH_TMP/out' | grep -qx 3"

cat "$SH_TMP/out"
# a backlog while no worker runs shows as group lag
wk_kill w1 TERM
"$SH_BIN" ingest delete --brokers "$BOOT" --track-id ghost-1 --track-id ghost-2 > /dev/null 2>&1 ||
  fail "ingest delete"
expect_exit 1 "$SH_BIN" status --brokers "$BOOT" "${nodes[@]:0:2}" --json
check "the workers' group lag shows the 2 unconsumed events; the dead worker is down (exit 1)" \
  jq -e '(.kafka.groups[0].topics[] | select(.topic == "soundhash.audio.events") | .lag == 2) and
         .nodes[0].health == "down" and (.nodes[0].ok | not)' "$SH_TMP/out"

# the edge killed: reported down, exit 1
kill -9 "$ED_PID"
expect_exit 1 "$SH_BIN" status --dsn "$SH_DSN" --node "http://127.0.0.1:$ED_PORT" --timeout-ms 1000
check "a dead edge is reported down" grep -q 'down' "$SH_TMP/out"

# a hostile node: shard numbers at INT_MAX, a position of -2^63, escapes in its name — no
# overflow (ASan+UBSan binary), the entries counted as malformed, the node not ok, exit 1
cat > "$SH_TMP/hostile.py" <<'PY'
import http.server, json
SHARDS = {"node": "evil\u001b[2J", "nshards": 2147483647, "shards": [
    {"shard": 2147483647, "position": -9223372036854775808, "tracks": 9223372036854775807,
     "loaded": True, "lag_ms": 1},
    {"shard": 2147483646, "position": 5, "tracks": 1, "loaded": True, "lag_ms": 1}]}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok"} if self.path == "/health" else SHARDS).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$SH_TMP/hostile.py" > "$SH_TMP/hostile.port" &
HOSTILE=$!
wait_for 60 test -s "$SH_TMP/hostile.port"   # python start-up: seconds on a loaded machine
expect_exit 1 "$SH_BIN_ASAN" status --node "http://127.0.0.1:$(cat "$SH_TMP/hostile.port")" --json
kill "$HOSTILE" 2> /dev/null || true
check "a hostile node's /v1/shards: every entry malformed, the node not ok, no sanitizer report" \
  jq -e '.nodes[0].malformed == 2 and (.nodes[0].ok | not)' "$SH_TMP/out"
