#!/usr/bin/env bash
# ops/tests/run.sh — `make test-ops`: the operations files checked with real parsers and real
# processes, in well under 30 s. One line per check; the exit code is 1 if any failed.
#   promtool check config / check rules / test rules   ops/prometheus.yml, ops/prometheus/*.yml
#   check_metrics.sh   metric names of alerts and dashboard = what the processes export
#   check_grafana.sh   dashboard and provisioning files
#   check_compose.sh   docker-compose.yml: `docker-compose config`, scrape targets, command lines
#   check_systemd.sh   ops/systemd units: systemd-analyze verify, hardening, command lines
#   check_image.sh     the Dockerfile's runtime stage installs every library the binary links
#   check_runbook.sh   ops/RUNBOOK.md: every soundhash command and flag exists, every alert has a section
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
TOOLS="${SOUNDHASH_TOOLS_DIR:-$HOME/.cache/soundhash-tools}"
PROMTOOL="${PROMTOOL:-$(command -v promtool || echo "$TOOLS/promtool")}"
export SOUNDHASH_BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
# The checks run concurrently (each is mostly waiting: parsers starting, processes timing out);
# their outputs are printed in order once all are done.
OUT=$(mktemp -d /tmp/sh-test-ops.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
names=(); pids=()
start() {
  local i=${#names[@]}
  names+=("$1"); shift
  ( t0=$SECONDS; "$@" > "$OUT/$i.log" 2>&1; rc=$?; echo "$rc $((SECONDS - t0))" > "$OUT/$i.rc" ) &
  pids+=($!)
}
start "promtool check config ops/prometheus.yml" "$PROMTOOL" check config ops/prometheus.yml
start "promtool check rules ops/prometheus/alerts.yml" "$PROMTOOL" check rules ops/prometheus/alerts.yml
start "promtool test rules ops/prometheus/alerts_test.yml" "$PROMTOOL" test rules ops/prometheus/alerts_test.yml
for t in ops/tests/check_*.sh; do
  start "$(basename "$t" .sh)" "$t"
done
wait "${pids[@]}"
pass=0; fail=0
for i in "${!names[@]}"; do
  read -r rc secs < "$OUT/$i.rc"
  if [ "$rc" -eq 0 ]; then
    pass=$((pass + 1)); echo "ok   ${names[$i]} ($secs s)"
  else
    fail=$((fail + 1)); echo "FAIL ${names[$i]} ($secs s)"; tail -n 30 "$OUT/$i.log" | sed 's/^/    /'
  fi
done
echo "test-ops: $pass passed, $fail failed"
[ $fail -eq 0 ]
