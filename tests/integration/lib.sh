# Shared helpers for integration tests (sourced). Every helper fails loudly.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
check() { # check "description" cmd... : runs cmd, fails the test if it fails
  local what="$1"; shift
  if "$@"; then echo "ok: $what"; else fail "$what"; fi
}
expect_exit() { # expect_exit CODE cmd... : runs cmd, asserts its exit code
  local want="$1"; shift
  set +e; "$@" > "$SH_TMP/out" 2> "$SH_TMP/err"; local got=$?; set -e
  [ "$got" -eq "$want" ] || { cat "$SH_TMP/err" >&2; fail "exit $got, want $want: $*"; }
}
# wait_for SECONDS cmd... : polls cmd every 0.1 s until it succeeds; fails after SECONDS.
wait_for() {
  local secs="$1"; shift; local end=$(( $(date +%s) + secs ))
  until "$@" > /dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${secs}s waiting for: $*"
    sleep 0.1
  done
}
