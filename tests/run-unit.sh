#!/usr/bin/env bash
# Runs every cmocka unit-test binary given; prints a summary line and fails if any test failed.
set -u
pass=0; fail=0; failed=()
for t in "$@"; do
  if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed+=("$t"); fi
done
echo "unit test binaries: $pass passed, $fail failed"
[ $fail -eq 0 ] || { printf 'FAILED: %s\n' "${failed[@]}"; exit 1; }
