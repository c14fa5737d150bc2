#!/usr/bin/env bash
# tests/chaos/soak-run.sh — `make soak`: tests/chaos/soak.sh with the environment
# tests/integration/run.sh would give it (SOAK_* pass through; output in SOAK_OUT, default
# build/soak). The run's temp directory is removed when it passes, kept when it fails.
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export SH_ROOT="$ROOT"
export SH_BIN="$(realpath "$ROOT/${1:-build/soundhash}")"
export SH_BIN_ASAN="$SH_BIN"
export SH_DATA_DIR="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
export SH_TMP; SH_TMP=$(mktemp -d /tmp/sh-soak.XXXXXX)
if bash "$ROOT/tests/chaos/soak.sh"; then
  rm -rf "$SH_TMP"
else
  echo "soak: FAILED; logs kept in $SH_TMP"
  exit 1
fi
