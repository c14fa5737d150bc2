#!/usr/bin/env bash
# `make bench`: runs every benchmark section in turn and prints its figures. One section per
# benchmark; add yours as a `section NAME CMD...` line. BUILD selects the build directory.
set -u
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
failed=0
section() { # section NAME CMD... : prints a header, runs CMD, remembers failures
  local name="$1"; shift
  echo "== $name"
  if [ ! -x "$1" ]; then echo "   (not built: $1)"; failed=$((failed + 1)); return; fi
  "$@" || { echo "   FAILED: $name"; failed=$((failed + 1)); }
}

# Publish throughput of metadata-only audio events to a broker over loopback TCP (target >= 50k/s).
section publish "$BUILD/bench/bench_publish" 200000

# Encode/decode throughput of the Avro contract (audio event, inline clip, index delta).
section schema "$BUILD/bench/bench_schema" 200000

[ "$failed" -eq 0 ] || { echo "bench: $failed section(s) failed"; exit 1; }
