#!/usr/bin/env bash
# The threaded paths under ThreadSanitizer (build/tsan/soundhash, `make test` builds it): a worker
# with two processing threads ingests real tracks while its HTTP server is scraped, and an edge
# (four HTTP threads and its Kafka applier) answers concurrent match requests — audio and hashes,
# /v1/shards, /metrics — while deltas of a new upload and a delete are applied to the shards they
# read. Both exit 0 on SIGTERM with zero ThreadSanitizer reports (exitcode 66 otherwise);
# suppressions (tests/tsan/tsan.supp) name third-party libraries only, each with its reason.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

TSAN_BIN="$SH_ROOT/build/tsan/soundhash"
[ -x "$TSAN_BIN" ] || fail "no $TSAN_BIN: make build/tsan/soundhash BUILD=build/tsan SAN=tsan"
corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
export TSAN_OPTIONS="suppressions=$SH_ROOT/tests/tsan/tsan.supp exitcode=66 halt_on_error=0 second_deadlock_stack=1 history_size=4"
WK_KAFKA=mock wk_setup   # TSan: the protocol is enough (not yet run on the shared real cluster)
pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
# shellcheck disable=SC2046
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
  -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" "$(dirname "$SH_BIN")/libsoundhash.a" \
  $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"
mapfile -t tracks < <(ls "$corpus"/*.ogg | head -n 3)
T0=$(date +%s)
phase() { echo "$1 at $(( $(date +%s) - T0 )) s"; }
for f in "${tracks[@]}"; do cp "$f" "$MEDIA/"; done
m() { echo "$MEDIA/$(basename "${tracks[$1]}")"; }
id() { basename "${tracks[$1]}" .ogg; }

# ---- the worker (2 tracks: its two threads at once) ------------------------------------------------------------------------------------
"$TSAN_BIN" worker --brokers "$BOOT" --dsn "$SH_DSN" --media-root "$MEDIA" --http 127.0.0.1:0 \
  --threads 2 --worker-id it-tsan > /dev/null 2> "$SH_TMP/w.log" &
W_PID=$!
WK_PIDS+=("$W_PID")
wait_for 60 grep -q 'event=http_listening' "$SH_TMP/w.log"
W_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/w.log" | head -n1)
wk_publish "$(m 0)" "$(m 1)"
scrape() { while :; do curl -fsS -o /dev/null "127.0.0.1:$W_PORT/metrics"; curl -fsS -o /dev/null "127.0.0.1:$W_PORT/health"; sleep 0.05; done; }
scrape > /dev/null 2>&1 &
SCRAPE=$!
WK_PIDS+=("$SCRAPE")
active2() { kill -0 "$W_PID" || { tail -n 60 "$SH_TMP/w.log" >&2; fail "the TSan worker died"; }; wk_tracks_active 2; }
for _ in $(seq 1200); do active2 && break; sleep 0.1; done
wk_tracks_active 2 || fail "2 tracks stored"
phase "worker: 2 tracks stored"
rp_start rp

# ---- the edge: concurrent readers while the applier writes -----------------------------------------
"$TSAN_BIN" edge --brokers "$BOOT" --listen 127.0.0.1:0 --data "$SH_TMP/data-e1" --shards all \
  --snapshot-source "http://127.0.0.1:$RP_PORT" --http-threads 4 --request-timeout 30 \
  > /dev/null 2> "$SH_TMP/e1.log" &
E_PID=$!
WK_PIDS+=("$E_PID")
wait_for 60 grep -q 'event=http_listening' "$SH_TMP/e1.log"
EP=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/e1.log" | head -n1)
conv() { kill -0 "$E_PID" || { grep -v 'level=info' "$SH_TMP/e1.log" | tail -n 60 >&2; fail "the TSan edge died"; }; ed_converged "$EP"; }
for _ in $(seq 900); do conv && break; sleep 0.1; done
ed_converged "$EP" || { grep -v 'level=debug' "$SH_TMP/e1.log" | tail -n 40 >&2; fail "the edge converges"; }
phase "edge: bootstrapped"
sox "$(m 0)" -r 22050 -c 1 "$SH_TMP/clip.wav" trim 20 6
clients() { # 4 loops of matches and reads, each until the file stop exists
  for i in 1 2 3 4; do
    ( n=0; while [ ! -e "$SH_TMP/stop" ]; do
        curl -sS -o "$SH_TMP/m$i.json" --data-binary @"$SH_TMP/clip.wav" "127.0.0.1:$EP/v1/match"
        curl -sS -o /dev/null "127.0.0.1:$EP/v1/shards"; curl -sS -o /dev/null "127.0.0.1:$EP/metrics"
        n=$((n + 1)); done; echo "$n" > "$SH_TMP/n$i" ) &
  done
}
clients
wk_publish "$(m 2)"                                     # an upload applied while matches run
"$SH_BIN" ingest delete --brokers "$BOOT" --track-id "$(id 1)" > /dev/null 2>&1
wait_for 120 wk_tracks_active 2
wait_for 90 ed_converged "$EP"
phase "edge: upload and delete applied under load"
touch "$SH_TMP/stop"
wait_for 60 test -s "$SH_TMP/n1" -a -s "$SH_TMP/n2" -a -s "$SH_TMP/n3" -a -s "$SH_TMP/n4"
echo "match rounds under TSan: $(cat "$SH_TMP"/n? | paste -sd+ | bc)"
check "a match under TSan identifies its track" test "$(jq -r .match.track_id "$SH_TMP/m1.json")" = "$(id 0)"
kill "$SCRAPE" 2> /dev/null || true

kill -TERM "$E_PID"; set +e; wait "$E_PID"; E_RC=$?; set -e
kill -TERM "$W_PID"; set +e; wait "$W_PID"; W_RC=$?; set -e
reports() { grep -c 'WARNING: ThreadSanitizer' "$1" || true; }
echo "ThreadSanitizer reports: worker $(reports "$SH_TMP/w.log"), edge $(reports "$SH_TMP/e1.log")"
for f in w e1; do
  if grep -q 'WARNING: ThreadSanitizer' "$SH_TMP/$f.log"; then
    grep -A 30 'WARNING: ThreadSanitizer' "$SH_TMP/$f.log" | head -n 80 >&2
    fail "ThreadSanitizer reported in $f"
  fi
done
check "the edge exits 0 (no report)" test "$E_RC" = 0
check "the worker exits 0 (no report)" test "$W_RC" = 0
echo "OK 89_tsan"
