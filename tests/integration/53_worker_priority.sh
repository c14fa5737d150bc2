#!/usr/bin/env bash
# Live uploads overtake a reindex backlog: a worker with one fingerprinting thread holds a whole
# backlog of reindex events (from `soundhash ingest reindex`) in its job queue; two live uploads
# published meanwhile are written right after the reindex event in progress — not behind the
# queued backlog — and the whole backlog is still re-fingerprinted (a second change per track, same
# hashes). The catalogue's audio is served over HTTP with a fixed delay per download, so every
# reindex event takes a known minimum time however fast the machine is: the backlog lasts long
# enough for the order to show (a worker taking jobs first-in-first-out fails this test).
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
command -v python3 > /dev/null || { echo "skip: python3 missing"; exit 0; }
wk_setup

N=16
WEB="$SH_TMP/web"
mkdir -p "$WEB"
for i in $(seq $N); do
  sox -n -r 16000 -c 1 "$WEB/r$i.wav" synth 20 square $((80 + 20 * i))-$((900 + 90 * i)) vol 0.3
done
sox -n -r 16000 -c 1 "$MEDIA/live1.wav" synth 10 sine 200-3000 vol 0.4
sox -n -r 16000 -c 1 "$MEDIA/live2.wav" synth 10 square 300-1500 vol 0.3
wk_expect_counts "$WEB"/*.wav "$MEDIA"/*.wav

# A file server that answers every request after 0.3 s.
cat > "$SH_TMP/server.py" << 'PY'
import http.server, sys, time
root, portfile = sys.argv[1], sys.argv[2]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k): super().__init__(*a, directory=root, **k)
    def log_message(self, *a): pass
    def do_GET(self):
        time.sleep(0.3)
        super().do_GET()
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(portfile, "w").write(str(s.server_address[1]))
s.serve_forever()
PY
python3 "$SH_TMP/server.py" "$WEB" "$SH_TMP/web.port" &
WK_PIDS+=("$!")
wait_for 60 test -s "$SH_TMP/web.port"   # python start-up: seconds on a loaded machine
URL="http://127.0.0.1:$(cat "$SH_TMP/web.port")"

wk_start w1 --threads 4
wk_publish $(for i in $(seq $N); do echo "$URL/r$i.wav"; done)
wait_for 60 wk_tracks_active $N
wk_kill w1 TERM
# The catalogue was fingerprinted by an older algorithm: a reindex rewrites only older fingerprints
# (re-running one at the same fp_version is a no-op, see sh_primary.h "Reindex writes").
pg_sql "UPDATE tracks SET fp_version = fp_version - 1; UPDATE fingerprints SET fp_version = fp_version - 1" > /dev/null

# The backlog, then live uploads behind it. --max-inflight above the backlog: every reindex event
# is queued in the worker before the live ones arrive, so only the worker's preference for live
# jobs can put them first.
"$SH_BIN" ingest reindex --brokers "$BOOT" --dsn "$SH_DSN" --all --rate 10000/s \
  --checkpoint "$SH_TMP/reindex.ckpt" > "$SH_TMP/reindex.out" 2> "$SH_TMP/reindex.err" \
  || { cat "$SH_TMP/reindex.err" >&2; fail "ingest reindex"; }
base=$(pg_sql 'SELECT max(seq) FROM change_log')
reindex_started() { [ "$(pg_sql "SELECT max(seq) FROM change_log")" -gt "$base" ]; }
wk_start w2 --threads 1 --max-inflight 64
wait_for 120 reindex_started
wk_publish "$MEDIA/live1.wav" "$MEDIA/live2.wav"
last=$(pg_sql 'SELECT max(seq) FROM change_log')
wait_for 120 wk_tracks_active $((N + 2))
wait_for 120 wk_all_committed soundhash-workers soundhash.audio.reindex
wait_for 60 wk_all_committed soundhash-workers
wk_check_tracks
check "every reindexed track written again (2 changes each)" \
  test "$(pg_sql "SELECT count(*) FROM (SELECT external_id FROM change_log WHERE external_id LIKE 'r%'
                  GROUP BY 1 HAVING count(*) = 2) x")" = $N
echo "changes since the reindex began: $(pg_sql "SELECT string_agg(external_id, ' ' ORDER BY seq) FROM change_log WHERE seq > $base")"
before_live=$(pg_sql "SELECT count(*) FROM change_log WHERE seq > $last AND external_id LIKE 'r%'
                      AND seq < (SELECT max(seq) FROM change_log WHERE external_id LIKE 'live%')")
left=$(( N - last + base ))
echo "reindex writes after the live uploads were published and before both were written: $before_live ($left were left)"
check "live uploads overtook the queued reindex backlog ($before_live <= 3)" test "$before_live" -le 3
check "the backlog was still long when they arrived ($left >= 8)" test "$left" -ge 8
check "metrics: reindex events counted as such" \
  test "$(wk_metric 'soundhash_worker_events_total{source="reindex",op="REINDEX",result="ok"}' "$WK_PORT_w2")" = $N
wk_kill w2 TERM
check "exit 0" test "$WK_RC" -eq 0
echo "53_worker_priority: all checks passed"
