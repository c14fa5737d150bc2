#!/usr/bin/env bash
# Replays each fuzz target's saved corpus (tests/fuzz/corpus/<target>/) through its replay build.
set -u
dir="$1"; pass=0; fail=0
here="$(cd "$(dirname "$0")" && pwd)"
for bin in "$dir"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus="$here/corpus/$name"
  if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
    echo "fuzz replay: $name has no saved corpus"; fail=$((fail + 1)); continue
  fi
  if "$bin" "$corpus"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "fuzz replay: $pass passed, $fail failed"
[ $fail -eq 0 ]
