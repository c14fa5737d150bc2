#!/usr/bin/env bash
# soundhash dlq show|tail against the broker process with real dead letters written by a worker:
# a garbage upload (SH_EDECODE, with its track id) and a message that is not Avro (SH_EFORMAT, no
# track id). Each is one JSON line with the documented fields; --since filters by time; tail
# prints new dead letters as they arrive and exits 0 on SIGTERM; the worker logs each dead letter
# as a warn line. Usage errors exit 2.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
wk_setup

expect_exit 0 "$SH_BIN" dlq show --brokers "$BOOT"
check "empty dead-letter topic: no lines" test ! -s "$SH_TMP/out"
t0_ms=$(( $(date +%s%3N) - 1000 ))

# tail from now on, started before anything is dead-lettered.
"$SH_BIN" dlq tail --brokers "$BOOT" > "$SH_TMP/tail.out" 2> "$SH_TMP/tail.err" & tail_pid=$!
WK_PIDS+=("$tail_pid")

head -c 30000 /dev/urandom > "$MEDIA/garbage.wav"
wk_start w1 --worker-id it-dlq-1
wk_publish "$MEDIA/garbage.wav"
printf 'this is not avro' > "$SH_TMP/raw1"
"$KT" produce "$BOOT" soundhash.audio.events rawjunk "$SH_TMP/raw1"

lines() { [ "$("$SH_BIN" dlq show --brokers "$BOOT" 2> /dev/null | wc -l)" -eq "$1" ]; }
wait_for 60 lines 2
expect_exit 0 "$SH_BIN_ASAN" dlq show --brokers "$BOOT"
check "show: two JSON lines" test "$(jq -c . "$SH_TMP/out" | wc -l)" -eq 2
jq -c 'select(.track_id == "garbage")' "$SH_TMP/out" > "$SH_TMP/garbage.json"
check "garbage upload: code, reason, ids, worker, attempts, source position" jq -e '
  .code == "SH_EDECODE" and .error_code < 0 and (.reason | length) > 0 and
  (.event_id | test("^[0-9a-f-]{36}$")) and .worker == "it-dlq-1" and .attempts >= 1 and
  .source_topic == "soundhash.audio.events" and .source_partition >= 0 and .source_offset >= 0 and
  .partition >= 0 and .offset >= 0 and .schema_id > 0 and .original_bytes > 0 and
  (.failed_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$"))' "$SH_TMP/garbage.json"
check "not Avro: SH_EFORMAT, no track id" \
  jq -se 'map(select(.code == "SH_EFORMAT" and .track_id == null and .schema_id == -1)) | length == 1' "$SH_TMP/out"
check "failed_at_ms is after the test started" jq -se --argjson t "$t0_ms" 'all(.failed_at_ms >= $t)' "$SH_TMP/out"

# --since: a time in the future shows nothing; an hour ago shows both.
expect_exit 0 "$SH_BIN" dlq show --brokers "$BOOT" --since "$(( $(date +%s%3N) + 3600000 ))"
check "--since in the future: nothing" test ! -s "$SH_TMP/out"
expect_exit 0 "$SH_BIN" dlq show --brokers "$BOOT" --since 1h
check "--since 1h: both" test "$(wc -l < "$SH_TMP/out")" -eq 2
expect_exit 0 "$SH_BIN" dlq show --brokers "$BOOT" --since "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)"
check "--since UTC time: both" test "$(wc -l < "$SH_TMP/out")" -eq 2

# tail saw both as they came, and SIGTERM ends it with 0.
wait_for 30 test "$(wc -l < "$SH_TMP/tail.out")" -ge 2
kill -TERM "$tail_pid"
set +e; wait "$tail_pid"; rc=$?; set -e
check "tail: exit 0 on SIGTERM (got $rc)" test "$rc" -eq 0
check "tail: the same two dead letters" \
  test "$(jq -c '[.partition, .offset]' "$SH_TMP/tail.out" | sort)" = "$("$SH_BIN" dlq show --brokers "$BOOT" | jq -c '[.partition, .offset]' | sort)"

# The worker's log: one warn line per dead letter, valid logfmt values.
check "worker: dead letter is a warn line naming the track and the reason" \
  grep -Eq 'level=warn event=dead_lettered .*track_id="garbage" code=SH_EDECODE reason="[^"]+' "$SH_TMP/w1.log"
check "worker: the not-Avro one too" grep -Eq 'level=warn event=dead_lettered .*track_id="" code=SH_EFORMAT' "$SH_TMP/w1.log"

# Usage errors: exit 2 naming the flag; an unreachable broker: one line, exit 1.
expect_exit 2 "$SH_BIN" dlq show --brokers "$BOOT" --since yesterday
check "bad --since named" grep -q -- "--since 'yesterday'" "$SH_TMP/err"
expect_exit 2 "$SH_BIN" dlq show
check "missing --brokers named" grep -q -- "--brokers is required" "$SH_TMP/err"
expect_exit 2 "$SH_BIN" dlq frobnicate
expect_exit 1 "$SH_BIN" dlq show --brokers 127.0.0.1:1 --timeout 1
check "unreachable broker: one line" test "$(wc -l < "$SH_TMP/err")" -eq 1
echo "57_dlq_cli: all checks passed"
