#!/usr/bin/env bash
# `soundhash broker`: starts, prints its bootstrap list (stdout and --bootstrap-file), serves the
# project's topics with the documented partition counts over TCP, exits 0 on SIGTERM and SIGINT.
# `soundhash broker topics`: reports them, fails on an unreachable cluster within its timeout.
source "$SH_ROOT/tests/integration/lib.sh"

for bin in "$SH_BIN" "$SH_BIN_ASAN"; do
  for sig in TERM INT; do
    bs="$SH_TMP/bootstrap.$sig"
    "$bin" broker --bootstrap-file "$bs" > "$SH_TMP/broker.out" 2> "$SH_TMP/broker.err" &
    pid=$!
    wait_for 20 test -s "$bs"
    boot=$(cat "$bs")
    check "bootstrap file holds 3 loopback brokers ($boot)" \
      grep -Eq '^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$' "$bs"
    wait_for 10 test -s "$SH_TMP/broker.out"
    check "stdout line equals the bootstrap file" test "$(head -n1 "$SH_TMP/broker.out")" = "$boot"

    expect_exit 0 "$bin" broker topics --brokers "$boot"
    check "4 topics reported" test "$(wc -l < "$SH_TMP/out")" -eq 4
    for t in "soundhash.audio.events 6" "soundhash.audio.reindex 6" "soundhash.audio.dlq 3" \
             "soundhash.index.deltas 8"; do
      set -- $t
      check "topic $1 has $2 partitions" \
        grep -q "{\"topic\":\"$1\",\"partitions\":$2,\"expected_partitions\":$2,\"messages\":0,\"ok\":true}" \
        "$SH_TMP/out"
    done

    kill -s "$sig" "$pid"
    set +e; wait "$pid"; rc=$?; set -e
    check "SIG$sig: broker exits 0 (got $rc)" test "$rc" -eq 0
    check "bootstrap file removed on exit" test ! -e "$bs"
  done
done

# A single-broker cluster works too; bad counts are usage errors.
"$SH_BIN" broker --broker-count 1 --bootstrap-file "$SH_TMP/one" > /dev/null 2>&1 &
pid=$!
wait_for 20 test -s "$SH_TMP/one"
check "one broker" grep -Eq '^127\.0\.0\.1:[0-9]+$' "$SH_TMP/one"
expect_exit 0 "$SH_BIN" broker topics --brokers "$(cat "$SH_TMP/one")"
kill "$pid"; wait "$pid"

# The issue's spelling `--brokers N` works on the command line (as --brokers=N too), while a
# client's SOUNDHASH_BROKERS in the environment never reaches the broker's count.
SOUNDHASH_BROKERS=127.0.0.1:9092 "$SH_BIN" broker --brokers 2 --bootstrap-file "$SH_TMP/two" > /dev/null 2>&1 &
pid=$!
wait_for 20 test -s "$SH_TMP/two"
check "--brokers 2: two brokers" grep -Eq '^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$' "$SH_TMP/two"
kill "$pid"; wait "$pid"
expect_exit 2 "$SH_BIN" broker --brokers=0
check "--brokers=0 refused as the count" grep -q -- "--broker-count must be in 1..16" "$SH_TMP/err"
expect_exit 2 "$SH_BIN" broker --broker-count 0
expect_exit 2 "$SH_BIN" broker extra-arg
expect_exit 0 "$SH_BIN" broker --help
check "--help says it is a development/test broker" grep -q "DEVELOPMENT/TEST" "$SH_TMP/out"
check "--help names the 5 MiB retention limit" grep -q "5 MiB" "$SH_TMP/out"
check "--help says there are no real transactions" grep -q "no real transactions" "$SH_TMP/out"
check "--help names topics' real option" grep -q "broker topics --brokers B" "$SH_TMP/out"

# Unreachable cluster: bounded wait, clear error, exit 1.
start=$(date +%s)
expect_exit 1 "$SH_BIN" broker topics --brokers 127.0.0.1:1 --timeout 1
check "unreachable cluster named in the error" \
  grep -q "no Kafka broker reachable at 127.0.0.1:1 within 1000 ms" "$SH_TMP/err"
check "gave up within a few seconds" test $(( $(date +%s) - start )) -le 5
expect_exit 2 "$SH_BIN" broker topics --brokers 127.0.0.1:1 -X no.such.prop=1
check "bad -X property named" grep -q "no.such.prop" "$SH_TMP/err"
