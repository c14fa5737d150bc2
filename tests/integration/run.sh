#!/usr/bin/env bash
# Runs every tests/integration/NN_*.sh with the environment they share:
#   SH_BIN        the optimised binary          SH_BIN_ASAN  the ASan+UBSan binary
#   SH_TMP        a fresh temp dir per test     SH_ROOT      the repository root
#   SH_DATA_DIR   cache of generated/fetched test audio (scripts/data)
#   SH_KAFKA_BOOT the bootstrap list of one real 3-node Apache Kafka cluster (ops/kafka.sh, KRaft,
#                 replication factor 3, min.insync.replicas 2) shared by the run; the pipeline
#                 tests (those whose setup is a plain `wk_setup`: workers, replicator, edge, status)
#                 run on it, each on freshly created topics. SH_TEST_KAFKA=mock (the quick option)
#                 runs them on their own `soundhash broker` (librdkafka's mock cluster) instead.
#                 Tests that need only the protocol or inject faults only the mock has stay on
#                 the mock either way (WK_KAFKA=mock or ed_setup).
# A test passes when it exits 0; it prints what it checked. Summary: "N passed, N failed".
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export SH_ROOT="$ROOT"
export SH_BIN="$(cd "$ROOT" && realpath "${1:-build/soundhash}")"
export SH_BIN_ASAN="$(cd "$ROOT" && realpath "${2:-build/asan/soundhash}")"
export SH_DATA_DIR="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# kafka_start: the run's shared cluster, started before the first test that uses it: one whose
# line says just `wk_setup` (WK_KAFKA=mock|real wk_setup picks the mock or a private cluster).
uses_shared_kafka() { [ "${SH_TEST_KAFKA:-real}" = real ] && grep -qx ' *wk_setup' "$1"; }
kafka_start() {
  KAFKA_RUN_DIR=$(mktemp -d /tmp/sh-it-kafka.XXXXXX)
  trap '"$ROOT/ops/kafka.sh" stop --kill --dir "$KAFKA_RUN_DIR" 2> /dev/null; rm -rf "$KAFKA_RUN_DIR"' EXIT
  SOUNDHASH_BIN="$SH_BIN" "$ROOT/ops/kafka.sh" start --brokers 3 --dir "$KAFKA_RUN_DIR" \
    > /dev/null 2> "$KAFKA_RUN_DIR.log" || { cat "$KAFKA_RUN_DIR.log"; rm -f "$KAFKA_RUN_DIR.log"; return 1; }
  grep 'up in' "$KAFKA_RUN_DIR.log"
  rm -f "$KAFKA_RUN_DIR.log"
  export SH_KAFKA_BOOT; SH_KAFKA_BOOT=$(cat "$KAFKA_RUN_DIR/bootstrap")
}
pass=0; fail=0; failed=()
only="${SH_TEST_ONLY:-}"
for t in "$ROOT"/tests/integration/[0-9]*.sh; do
  name=$(basename "$t" .sh)
  [ -n "$only" ] && [[ "$name" != *"$only"* ]] && continue
  if [ -z "${SH_KAFKA_BOOT:-}" ] && uses_shared_kafka "$t"; then
    kafka_start || { echo "FAIL: ops/kafka.sh could not start the shared cluster"; exit 1; }
  fi
  export SH_TMP; SH_TMP=$(mktemp -d "/tmp/sh-it-$name.XXXXXX")
  start=$(date +%s)
  if timeout 1200 bash "$t" > "$SH_TMP.log" 2>&1; then
    pass=$((pass + 1)); echo "ok   $name ($(( $(date +%s) - start )) s)"
    rm -rf "$SH_TMP" "$SH_TMP.log"
  else
    fail=$((fail + 1)); failed+=("$name"); echo "FAIL $name ($(( $(date +%s) - start )) s)"
    tail -n 40 "$SH_TMP.log" | sed 's/^/    /'
  fi
done
echo "integration: $pass passed, $fail failed"
[ $fail -eq 0 ]
