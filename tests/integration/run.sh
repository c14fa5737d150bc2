#!/usr/bin/env bash
# Runs every tests/integration/NN_*.sh with the environment they share:
#   SH_BIN        the optimised binary          SH_BIN_ASAN  the ASan+UBSan binary
#   SH_TMP        a fresh temp dir per test     SH_ROOT      the repository root
#   SH_DATA_DIR   cache of generated/fetched test audio (scripts/data)
# A test passes when it exits 0; it prints what it checked. Summary: "N passed, N failed".
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export SH_ROOT="$ROOT"
export SH_BIN="$(cd "$ROOT" && realpath "${1:-build/soundhash}")"
export SH_BIN_ASAN="$(cd "$ROOT" && realpath "${2:-build/asan/soundhash}")"
export SH_DATA_DIR="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
pass=0; fail=0; failed=()
only="${SH_TEST_ONLY:-}"
for t in "$ROOT"/tests/integration/[0-9]*.sh; do
  name=$(basename "$t" .sh)
  [ -n "$only" ] && [[ "$name" != *"$only"* ]] && continue
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
