#!/usr/bin/env bash
# tests/chaos/run.sh — `make chaos`: one long seeded fault storm (tests/chaos/storm.sh) with the
# environment tests/integration/run.sh would give it. CHAOS_SECONDS (default 600), CHAOS_TRACKS
# (default 300), CHAOS_SEED (default: from the clock) and the other CHAOS_* of storm.sh pass
# through. The run's directory is removed when it passes and kept (path printed) when it fails.
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export SH_ROOT="$ROOT"
export SH_BIN="$(realpath "$ROOT/${1:-build/soundhash}")"
export SH_BIN_ASAN="$(realpath "$ROOT/${2:-build/asan/soundhash}" 2> /dev/null || echo "$SH_BIN")"
export SH_DATA_DIR="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
export CHAOS_SECONDS="${CHAOS_SECONDS:-600}" CHAOS_TRACKS="${CHAOS_TRACKS:-300}"
export SH_TMP; SH_TMP=$(mktemp -d /tmp/sh-chaos.XXXXXX)
start=$(date +%s)
if bash "$ROOT/tests/chaos/storm.sh" 2>&1 | tee "$SH_TMP.log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
  echo "chaos: passed in $(( $(date +%s) - start )) s"
  rm -rf "$SH_TMP" "$SH_TMP.log"
else
  echo "chaos: FAILED after $(( $(date +%s) - start )) s; logs kept in $SH_TMP (and $SH_TMP.log)"
  exit 1
fi
