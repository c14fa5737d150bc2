#!/usr/bin/env bash
# Audio from http(s) URLs and inline bytes: a URL is downloaded and fingerprinted like a file; an
# HTTP 503 is retried with backoff (offset held) until the server recovers; a 404 and a body over
# --max-fetch-bytes go to the DLQ; an inline clip is stored with its sha256. A source that never
# recovers goes to the DLQ after --max-retry-time; SIGTERM during the start-up broker wait exits 0.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
command -v python3 > /dev/null || { echo "skip: python3 missing"; exit 0; }
wk_setup

WEB="$SH_TMP/web"
mkdir -p "$WEB"
sox -n -r 22050 -c 1 -b 16 "$WEB/web1.wav" synth 4 square 150-1500 vol 0.3
sox -n -r 22050 -c 1 -b 16 "$WEB/flaky.wav" synth 4 sine 400-2400 vol 0.4
sox -n -r 22050 -c 1 "$WEB/big.wav" synth 30 sine 300 vol 0.4
sox -n -r 8000 -c 1 "$MEDIA/clip.wav" synth 4 square 220-1760 vol 0.3
wk_expect_counts "$WEB/web1.wav" "$WEB/flaky.wav" "$MEDIA/clip.wav"

# A file server whose /flaky.wav answers 503 until the file "$SH_TMP/heal" exists.
cat > "$SH_TMP/server.py" << 'EOF'
import http.server, os, sys
root, heal, portfile = sys.argv[1], sys.argv[2], sys.argv[3]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k): super().__init__(*a, directory=root, **k)
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/flaky.wav" and not os.path.exists(heal):
            self.send_response(503); self.send_header("Content-Length", "0"); self.end_headers(); return
        super().do_GET()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(portfile, "w").write(str(s.server_address[1]))
s.serve_forever()
EOF
python3 "$SH_TMP/server.py" "$WEB" "$SH_TMP/heal" "$SH_TMP/web.port" &
WEB_PID=$!
WK_PIDS+=("$WEB_PID")
wait_for 60 test -s "$SH_TMP/web.port"
URL="http://127.0.0.1:$(cat "$SH_TMP/web.port")"

wk_start w1 --threads 2 --retry-max-ms 300 --max-fetch-bytes 600K
wk_publish "$URL/web1.wav" "$URL/flaky.wav" "$URL/missing.wav" "$URL/big.wav"
wk_publish --inline "$MEDIA/clip.wav"
stored() { [ "$(pg_sql "SELECT count(*) FROM tracks WHERE external_id = '$1'")" = 1 ]; }
wait_for 60 stored web1
wait_for 60 stored clip
retried() { [ "$(wk_metric 'soundhash_worker_retries_total{reason="SH_ETRANSIENT"}' "$WK_PORT_w1")" -ge 2 ]; }
wait_for 60 retried
check "503: not stored, offset held while retrying" bash -c "[ \"\$(psql '$SH_DSN' -XAtq -c \"SELECT count(*) FROM tracks WHERE external_id = 'flaky'\")\" = 0 ]"
not_committed() { ! wk_all_committed soundhash-workers; }
check "503: offsets not all committed" not_committed
touch "$SH_TMP/heal"
wait_for 60 stored flaky
wait_for 60 wk_all_committed soundhash-workers
wk_check_tracks
check "url stored as the source" test "$(pg_sql "SELECT source_uri FROM tracks WHERE external_id = 'web1'")" = "$URL/web1.wav"
check "inline clip: sha256 of its bytes" \
  test "$(pg_sql "SELECT sha256 FROM tracks WHERE external_id = 'clip'")" = "$(sha256sum "$MEDIA/clip.wav" | cut -c1-64)"
"$KT" dlq "$BOOT" 2 30 > "$SH_TMP/dlq.txt" || { cat "$SH_TMP/dlq.txt" >&2; fail "2 dead letters"; }
check "404 → SH_EHTTP in the DLQ" grep -q '^missing|[^|]*|SH_EHTTP|.*HTTP 404' "$SH_TMP/dlq.txt"
check "body over --max-fetch-bytes → SH_ETOOBIG in the DLQ" grep -q '^big|[^|]*|SH_ETOOBIG|' "$SH_TMP/dlq.txt"
wk_kill w1 TERM
check "exit 0" test "$WK_RC" -eq 0

# A source that fails transiently forever (a closed loopback port: connection refused) is bounded by
# --max-retry-time: after retrying for that long its event goes to the DLQ as SH_ETIMEOUT with the
# attempt count, its offset moves on, and later events are written and committed. (This part and
# the next run the ASan+UBSan build.)
DEAD_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
sox -n -r 22050 -c 1 -b 16 "$WEB/web2.wav" synth 3 sine 500-3000 vol 0.4
wk_start w2 --asan --threads 2 --retry-max-ms 300 --max-retry-time 2
wk_publish "http://127.0.0.1:$DEAD_PORT/dead.wav" "$URL/web2.wav"
wait_for 60 stored web2
"$KT" dlq "$BOOT" 3 30 > "$SH_TMP/dlq2.txt" || { cat "$SH_TMP/dlq2.txt" >&2; fail "3 dead letters"; }
check "dead source → SH_ETIMEOUT in the DLQ with the last reason" \
  grep -q '^dead|[^|]*|SH_ETIMEOUT|.*--max-retry-time 2.*GET http://127.0.0.1:'"$DEAD_PORT" "$SH_TMP/dlq2.txt"
check "dead source: retried (attempts > 1)" \
  test "$(awk -F'|' '$1 == "dead" && $3 == "SH_ETIMEOUT" {print $7}' "$SH_TMP/dlq2.txt")" -gt 1
wait_for 30 wk_all_committed soundhash-workers
check "dead source: never stored" test "$(pg_sql "SELECT count(*) FROM tracks WHERE external_id = 'dead'")" = 0
wk_kill w2 TERM
check "w2 exit 0" test "$WK_RC" -eq 0

# SIGTERM while waiting for a broker at start (--connect-timeout) exits 0 at once, not by the signal.
"$SH_BIN_ASAN" worker --brokers "127.0.0.1:$DEAD_PORT" --dsn "$SH_DSN" --media-root "$MEDIA" \
  --connect-timeout 30 > /dev/null 2> "$SH_TMP/w3.log" &
W3=$!
WK_PIDS+=("$W3")
wait_for 20 grep -q 'event=kafka_waiting' "$SH_TMP/w3.log"
kill -TERM "$W3"
gone() { ! kill -0 "$W3" 2> /dev/null; }
wait_for 5 gone
set +e; wait "$W3"; W3_RC=$?; set -e
check "SIGTERM during the broker wait: exit 0" test "$W3_RC" -eq 0
check "SIGTERM during the broker wait: logged" grep -q 'event=worker_start_interrupted' "$SH_TMP/w3.log"
echo "54_worker_sources: all checks passed"
