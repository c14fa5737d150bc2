#!/usr/bin/env bash
# The worker's SSRF guard (`--fetch-deny-private`, ops/SECURITY.md): with it, an event whose
# http(s) source is (or resolves or redirects to) a loopback, link-local, private or IPv4-mapped
# loopback address is dead-lettered as SH_EHTTP naming the refused address, without a single byte
# sent there; a public address still works. The test runs in a network namespace of its own (only
# lo, which also gets 198.51.100.7, a documentation address that counts as public), so nothing of
# the machine's network is touched.
if [ -z "${SH_SEC_NETNS:-}" ]; then
  exec env SH_SEC_NETNS=1 unshare --net bash "$0" "$@"
fi
. "$SH_ROOT/tests/integration/lib.sh"
ip link set lo up
ip addr add 198.51.100.7/32 dev lo
PUB=198.51.100.7
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
WK_KAFKA=mock wk_setup

WEB="$SH_TMP/web"
mkdir -p "$WEB"
sox -n -r 22050 -c 1 "$WEB/pub.wav" synth 10 sine 300-2400 vol 0.5
for n in lo4 lo6 mapped name redir meta; do cp "$WEB/pub.wav" "$WEB/$n.wav"; done
# serve.py ADDR PORTFILE LOG [REDIRECT_BASE]: serves WEB; /redir*.wav answers 302 to
# REDIRECT_BASE/lo4.wav; every request line is appended to LOG.
cat > "$SH_TMP/serve.py" <<'EOF'
import http.server, socket, sys
web, addr, portfile, log = sys.argv[1:5]
target = sys.argv[5] if len(sys.argv) > 5 else ""
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k): super().__init__(*a, directory=web, **k)
    def log_message(self, fmt, *a):
        with open(log, "a") as f: f.write(self.requestline + "\n")
    def do_GET(self):
        if self.path.startswith("/redir"):
            self.send_response(302); self.send_header("Location", target + "/lo4.wav")
            self.send_header("Content-Length", "0"); self.end_headers(); return
        super().do_GET()
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = S((addr, 0), H)
open(portfile, "w").write(str(s.server_address[1]))
s.serve_forever()
EOF
serve() { # serve NAME ADDR [REDIRECT_BASE]
  python3 "$SH_TMP/serve.py" "$WEB" "$2" "$SH_TMP/$1.port" "$SH_TMP/$1.requests" ${3:+"$3"} &
  WK_PIDS+=("$!")
  wait_for 60 test -s "$SH_TMP/$1.port"
  touch "$SH_TMP/$1.requests"
}
serve local4 127.0.0.1
serve local6 ::1
L4="http://127.0.0.1:$(cat "$SH_TMP/local4.port")"
L6PORT=$(cat "$SH_TMP/local6.port")
serve public "$PUB" "$L4"
P="http://$PUB:$(cat "$SH_TMP/public.port")"

"$SH_BIN" worker --brokers "$BOOT" --dsn "$SH_DSN" --media-root "$MEDIA" --http 127.0.0.1:0 \
  --fetch-deny-private --retry-max-ms 300 --max-retry-time 20 -X session.timeout.ms=6000 \
  > /dev/null 2> "$SH_TMP/w.log" &
W_PID=$!; WK_PIDS+=("$W_PID")
wait_for 30 grep -q 'event=http_listening' "$SH_TMP/w.log"
wk_publish "$P/pub.wav" "$L4/lo4.wav" "http://[::1]:$L6PORT/lo6.wav" \
  "http://[::ffff:127.0.0.1]:$(cat "$SH_TMP/local4.port")/mapped.wav" \
  "http://localhost:$(cat "$SH_TMP/local4.port")/name.wav" "$P/redir.wav" \
  "http://169.254.169.254/latest/meta.wav"

wait_for 120 wk_tracks_active 1
check "the public source was fetched and stored" test "$(pg_sql "SELECT external_id FROM tracks")" = pub
"$KT" dlq "$BOOT" 6 60 > "$SH_TMP/dlq.txt" || { cat "$SH_TMP/dlq.txt" >&2; fail "6 dead letters"; }
for want in "lo4 127.0.0.1" "lo6 ::1" "mapped ::ffff:127.0.0.1" "name \\(127.0.0.1\\|::1\\)" "redir 127.0.0.1" \
  "meta 169.254.169.254"; do
  set -- $want
  check "$1: dead-lettered as SH_EHTTP, refused address ${2//\\/} named" \
    grep -q "^$1|[^|]*|SH_EHTTP|.*refused to connect to $2, not a public address" "$SH_TMP/dlq.txt"
done
check "the loopback servers received no request at all" \
  test "$(cat "$SH_TMP/local4.requests" "$SH_TMP/local6.requests" | wc -l)" = 0
check "the public server saw pub.wav and the redirect, nothing else" \
  test "$(grep -c 'GET /\(pub\|redir\).wav' "$SH_TMP/public.requests")" = "$(wc -l < "$SH_TMP/public.requests")"
kill -TERM "$W_PID"
set +e; wait "$W_PID"; rc=$?; set -e
check "SIGTERM: exit 0" test "$rc" -eq 0
