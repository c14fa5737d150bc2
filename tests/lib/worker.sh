# Sourceable helpers for the worker integration tests (after lib.sh and pg.sh).
#
#   wk_setup                 builds the kafka_tool helper; Kafka: with SH_KAFKA_BOOT set by run.sh
#                            (the default), the run's shared real cluster, its topics and groups
#                            deleted and the topics created afresh; with WK_KAFKA=real a private
#                            real cluster of WK_KAFKA_NODES nodes (default 3) by ops/kafka.sh in
#                            $SH_TMP/kafka; with WK_KAFKA=mock or no SH_KAFKA_BOOT
#                            (SH_TEST_KAFKA=mock) `soundhash broker`. Migrates the database; sets
#                            BOOT (bootstrap list) and KT (the helper)
#   wk_start NAME ARGS...    starts a worker in the background (log: $SH_TMP/NAME.log, pid in
#                            WK_PID_<NAME>, http port in WK_PORT_<NAME> once listening)
#   wk_kill NAME [SIG]       signals a worker (default TERM) and waits for it; sets WK_RC
#   wk_publish FILES...      `soundhash ingest publish` under $MEDIA
#   wk_all_committed GROUP   true when GROUP's committed offsets reach the end of the events topic
#   wk_tracks_active N       true when exactly N active tracks are stored
#   wk_metric NAME PORT      prints the sum of a metric's samples from /metrics
#   wk_expect_counts FILES   fills EXPECT[track_id]=hashes and FPV (fp_version) from `soundhash fingerprint`
# The EXIT trap stops workers, the broker (or the cluster) and the database.
: "${SH_BIN:?}" "${SH_TMP:?}" "${SH_ROOT:?}"
MEDIA="$SH_TMP/media"
mkdir -p "$MEDIA"
WK_PIDS=()
declare -A EXPECT

wk_cleanup() {
  for p in "${WK_PIDS[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  [ -n "${BROKER_PID:-}" ] && kill "$BROKER_PID" 2> /dev/null || true
  # the test's cluster holds nothing worth a clean shutdown (~10 s for 3 nodes)
  [ -n "${KAFKA_DIR:-}" ] && "$SH_ROOT/ops/kafka.sh" stop --kill --dir "$KAFKA_DIR" 2> /dev/null || true
  pg_stop
}
trap wk_cleanup EXIT

wk_setup() {
  local pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
  local lib; lib="$(dirname "$SH_BIN")/libsoundhash.a"
  KT="$SH_TMP/kafka_tool"
  # shellcheck disable=SC2046
  cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
    -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
    -o "$KT" "$SH_ROOT/tests/integration/helpers/kafka_tool.c" "$lib" $(pkg-config --libs $pk) \
    -lm -pthread || fail "cannot build kafka_tool"
  if [ "${WK_KAFKA:-mock}" = real ]; then
    KAFKA_DIR="$SH_TMP/kafka"
    SOUNDHASH_BIN="$SH_BIN" "$SH_ROOT/ops/kafka.sh" start --brokers "${WK_KAFKA_NODES:-3}" \
      --dir "$KAFKA_DIR" > /dev/null 2> "$SH_TMP/kafka-start.log" || {
      cat "$SH_TMP/kafka-start.log" >&2; fail "ops/kafka.sh start"; }
    grep 'up in' "$SH_TMP/kafka-start.log" || true
    BOOT=$(cat "$KAFKA_DIR/bootstrap")
  elif [ -n "${SH_KAFKA_BOOT:-}" ] && [ "${WK_KAFKA:-}" != mock ]; then
    # Each test starts on empty topics with no consumer group: an earlier test's events, dead
    # letters, deltas and committed offsets are gone.
    BOOT=$SH_KAFKA_BOOT
    "$KT" reset "$BOOT" 60 || fail "cannot reset the shared cluster's topics and groups"
    wait_for 60 "$SH_BIN" broker topics --brokers "$BOOT" --create --replication 3
  else
    "$SH_BIN" broker --bootstrap-file "$SH_TMP/boot" > /dev/null 2> "$SH_TMP/broker.log" &
    BROKER_PID=$!
    wait_for 20 test -s "$SH_TMP/boot"
    BOOT=$(cat "$SH_TMP/boot")
  fi
  pg_migrate
}

wk_start() {
  local name="$1" bin="$SH_BIN"; shift
  if [ "${1:-}" = "--asan" ]; then bin="$SH_BIN_ASAN"; shift; fi
  "$bin" worker --brokers "$BOOT" --dsn "$SH_DSN" --media-root "$MEDIA" --http 127.0.0.1:0 \
    -X session.timeout.ms=6000 -X heartbeat.interval.ms=500 "$@" > /dev/null 2> "$SH_TMP/$name.log" &
  local pid=$!
  WK_PIDS+=("$pid")
  printf -v "WK_PID_$name" '%s' "$pid"
  wait_for 30 grep -q 'event=http_listening' "$SH_TMP/$name.log"
  printf -v "WK_PORT_$name" '%s' "$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/$name.log" | head -n1)"
}

wk_kill() {
  local name="$1" sig="${2:-TERM}" pidvar="WK_PID_$1"
  kill -s "$sig" "${!pidvar}"
  set +e; wait "${!pidvar}"; WK_RC=$?; set -e
}

wk_publish() {
  "$SH_BIN" ingest publish --brokers "$BOOT" --media-root "$MEDIA" "$@" > "$SH_TMP/publish.out" \
    2> "$SH_TMP/publish.err" || { cat "$SH_TMP/publish.err" >&2; fail "ingest publish $*"; }
}

# Committed offsets of GROUP equal the high watermarks of the events topic (no commit = 0).
wk_all_committed() {
  local group="$1" topic="${2:-soundhash.audio.events}"
  local c e
  c=$("$KT" committed "$BOOT" "$group" "$topic" | awk '{print $1, ($2 < 0 ? 0 : $2)}') || return 1
  e=$("$KT" end "$BOOT" "$topic") || return 1
  [ "$c" = "$e" ]
}

wk_tracks_active() { [ "$(pg_sql "SELECT count(*) FROM tracks WHERE status = 'active'")" = "$1" ]; }

wk_metric() {
  curl -sf "http://127.0.0.1:$2/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {print s + 0}'
}

wk_expect_counts() {
  local line
  while IFS= read -r line; do
    local f h
    f=$(sed -n 's/.*"file":"\([^"]*\)".*/\1/p' <<< "$line")
    h=$(sed -n 's/.*"hashes":\([0-9]*\).*/\1/p' <<< "$line")
    FPV=$(sed -n 's/.*"fp_version":\([0-9]*\).*/\1/p' <<< "$line")
    f=$(basename "$f"); EXPECT["${f%.*}"]="$h"
  done < <("$SH_BIN" fingerprint "$@")
}

# Every expected track is stored once, active, with the expected hash count in both tables.
wk_check_tracks() {
  local id
  for id in "${!EXPECT[@]}"; do
    check "track $id stored once, active, ${EXPECT[$id]} hashes (tracks and fingerprints agree)" \
      test "$(pg_sql "SELECT count(*), min(t.status), min(t.n_hashes), min(f.n_hashes), min(f.fp_version)
                      FROM tracks t JOIN fingerprints f USING (external_id)
                      WHERE t.external_id = '$id'")" = "1|active|${EXPECT[$id]}|${EXPECT[$id]}|${FPV:?}"
  done
}
