#!/usr/bin/env bash
# `soundhash ingest reindex` against a private PostgreSQL and `soundhash broker`: selections
# (all / tenant / older fp_version / list), the reindex topic only, the rate limit, a killed job
# resuming from its checkpoint, and refusals (mixed selections, foreign checkpoint, bad list).
source "$SH_ROOT/tests/integration/lib.sh"
source "$SH_ROOT/tests/lib/pg.sh"
pg_migrate

"$SH_BIN" broker --bootstrap-file "$SH_TMP/bs" > /dev/null 2> "$SH_TMP/broker.err" &
broker=$!
job=
trap 'kill $broker ${job:-} 2> /dev/null || true; pg_stop' EXIT
wait_for 20 test -s "$SH_TMP/bs"
B=$(cat "$SH_TMP/bs")

# 40 tracks: t00..t39; tenants a (even) and b (odd); fp_version V-1 for the first 10, else V
# (V = this build's SH_FP_VERSION).
V=$(sed -n 's/^#define SH_FP_VERSION \([0-9][0-9]*\).*/\1/p' "$SH_ROOT/core/engine/sh_fp.h")
[ -n "$V" ] && [ "$V" -ge 2 ] || fail "cannot read SH_FP_VERSION from core/engine/sh_fp.h"
sql="SELECT count(*) FROM ("
for i in $(seq 0 39); do
  id=$(printf 't%02d' "$i"); ten=$([ $((i % 2)) -eq 0 ] && echo a || echo b)
  fp=$([ "$i" -lt 10 ] && echo $((V - 1)) || echo "$V")
  sql+="SELECT sh_write_track('$id', '$ten', '{}', NULL, 1.0, 'file:///srv/media/$id.flac', $fp, 5, 0, ''::bytea)"
  [ "$i" -lt 39 ] && sql+=" UNION ALL "
done
pg_sql "$sql) s" > /dev/null
check "40 tracks in the primary" test "$(pg_sql 'SELECT count(*) FROM tracks')" -eq 40
pg_sql "UPDATE tracks SET version = 77 WHERE external_id = 't00'" > /dev/null  # base_version check

count() { # messages in topic $1
  "$SH_BIN" broker topics --brokers "$B" | grep "\"$1\"" | sed 's/.*"messages":\([0-9]*\).*/\1/'
}
ck="$SH_TMP/ck.json"

# --tenant a: 20 events, all on the reindex topic, none on the live topic.
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --tenant a --rate 1000/s \
  --checkpoint "$ck" --batch 7
check "tenant a: summary" grep -q '{"published":20,"skipped":0,"done":true' "$SH_TMP/out"
check "tenant a: 5 of them outdated (t00..t08 even)" jq -e '.outdated == 5' "$SH_TMP/out"
check "tenant a: no 'nothing changes' warning" bash -c "! grep -q 'workers will change nothing' '$SH_TMP/err'"
check "20 reindex events" test "$(count soundhash.audio.reindex)" -eq 20
check "live topic untouched" test "$(count soundhash.audio.events)" -eq 0
check "checkpoint done" grep -q '"done":true' "$ck"
# Each REINDEX event names the stored version it was made from (base_version, schema v3).
pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
# shellcheck disable=SC2046,SC2086
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
  -o "$SH_TMP/kafka_tool" "$SH_ROOT/tests/integration/helpers/kafka_tool.c" \
  "$(dirname "$SH_BIN")/libsoundhash.a" $(pkg-config --libs $pk) -lm -pthread || fail "cannot build kafka_tool"
"$SH_TMP/kafka_tool" events "$B" soundhash.audio.reindex 20 20 > "$SH_TMP/events" \
  || fail "reindex events not readable: $(cat "$SH_TMP/events")"
check "base_version = the stored version (t00 at 77)" grep -Eq '^t00\|REINDEX\|[0-9]+\|77\|[0-9]+\|-1$' "$SH_TMP/events"
check "base_version = the stored version (t02 at 5)" grep -Eq '^t02\|REINDEX\|[0-9]+\|5\|[0-9]+\|-1$' "$SH_TMP/events"
check "every event carries a base_version" test "$(grep -Ec '^t[0-9]+\|REINDEX\|[0-9]+\|(5|77)\|' "$SH_TMP/events")" -eq 20
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --tenant a --rate 1000/s \
  --checkpoint "$ck"
check "re-run of a finished job publishes nothing" grep -q '"already_complete":true' "$SH_TMP/out"
check "still 20" test "$(count soundhash.audio.reindex)" -eq 20
expect_exit 2 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --all --rate 1000/s \
  --checkpoint "$ck"
check "a checkpoint of another selection is refused" grep -q "belongs to selection 'tenant:a'" "$SH_TMP/err"

# --older-than-fp-version (this build's version is V): the 10 tracks at version V-1.
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --older-than-fp-version \
  --rate 1000/s --checkpoint "$SH_TMP/old.json"
check "older fp_version: 10" grep -q '"published":10,' "$SH_TMP/out"
check "30 reindex events" test "$(count soundhash.audio.reindex)" -eq 30

# --list: unknown ids are skipped (and said so), bad lines refuse the whole job.
printf 't05\nnope\nt07\n\n' > "$SH_TMP/list"
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --list "$SH_TMP/list" \
  --rate 1000/s --checkpoint "$SH_TMP/list.json"
check "list: 2 published, 1 skipped" grep -q '{"published":2,"skipped":1,"done":true' "$SH_TMP/out"
check "skip is logged" grep -q 'reindex_skip.*track="nope"' "$SH_TMP/err"
printf 't05\nt09\n' > "$SH_TMP/list"   # same path, other content: not resumed at a stale position
expect_exit 2 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --list "$SH_TMP/list" \
  --rate 1000/s --checkpoint "$SH_TMP/list.json"
check "a changed list is another selection" grep -q "belongs to selection 'list:" "$SH_TMP/err"
printf 't05\nbad\001id\n' > "$SH_TMP/badlist"
expect_exit 1 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --list "$SH_TMP/badlist" \
  --rate 1000/s --checkpoint "$SH_TMP/badlist.json"
check "bad list line named" grep -q "badlist line 2: track id contains control character 0x01" "$SH_TMP/err"
printf '\n\r\n' > "$SH_TMP/emptylist"   # blank lines only: must not fall back to every track
expect_exit 1 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --list "$SH_TMP/emptylist" \
  --rate 1000/s --checkpoint "$SH_TMP/emptylist.json"
check "empty list refused" grep -q "emptylist: no track ids; nothing published" "$SH_TMP/err"
check "32 reindex events" test "$(count soundhash.audio.reindex)" -eq 32

# Rate limit + kill + resume: --all at 20/s in pages of 5; kill once 10 are checkpointed.
before=$(count soundhash.audio.reindex)
"$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --all --rate 20/s --batch 5 \
  --checkpoint "$SH_TMP/all.json" > "$SH_TMP/all.out" 2> "$SH_TMP/all.err" &
job=$!
start_ms=$(( $(date +%s%N) / 1000000 ))
wait_for 30 grep -Eq '"published":(1[0-9]|[2-9][0-9])' "$SH_TMP/all.json"
kill -TERM "$job"; set +e; wait "$job"; rc=$?; set -e
check "interrupted job exits 1 (got $rc)" test "$rc" -eq 1
check "interruption explained" grep -q "interrupted; re-run the same command to resume" "$SH_TMP/all.err"
done1=$(sed 's/.*"published":\([0-9]*\).*/\1/' "$SH_TMP/all.json")
check "not done yet ($done1 of 40)" test "$done1" -lt 40
# Resumed in one page of 40 (about 1.5 s at 20/s): progress must show up inside the page, with
# the total counted from the checkpoint on.
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --all --rate 20/s \
  --batch 40 --checkpoint "$SH_TMP/all.json"
elapsed_ms=$(( $(date +%s%N) / 1000000 - start_ms ))
check "resumed job completes all 40" grep -q '{"published":40,"skipped":0,"done":true' "$SH_TMP/out"
check "progress within a page (sent ahead of published), total 40" \
  grep -Eq "reindex_progress published=$done1 sent=([0-9]+) total=40 " "$SH_TMP/err"
grep "reindex_progress published=$done1 " "$SH_TMP/err" | grep -vq "sent=$done1 " ||
  fail "no progress line with events sent beyond the checkpoint"
added=$(( $(count soundhash.audio.reindex) - before ))
check "resume re-sent at most one page ($added events for 40 tracks)" \
  test "$added" -ge 40 -a "$added" -le 45
check "rate limit held: 40 events at 20/s took >= 1.5 s ($elapsed_ms ms)" \
  test "$elapsed_ms" -ge 1500

# kill -9 mid-run: the checkpoint is never torn (old or new state), and the job resumes from it.
"$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --tenant b --rate 40/s --batch 4 \
  --checkpoint "$SH_TMP/k9.json" > /dev/null 2> "$SH_TMP/k9.err" &
job=$!
wait_for 30 grep -Eq '"published":([4-9]|1[0-9]),' "$SH_TMP/k9.json"
kill -KILL "$job"; set +e; wait "$job"; set -e
check "checkpoint after kill -9 is whole JSON, not done" jq -e '.done == false and .published >= 4' "$SH_TMP/k9.json"
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --tenant b --rate 1000/s \
  --batch 4 --checkpoint "$SH_TMP/k9.json"
check "resumed after kill -9: all 20 of tenant b" grep -q '{"published":20,"skipped":0,"done":true' "$SH_TMP/out"
check "resume logged" grep -q 'reindex_resume' "$SH_TMP/err"

# A very low rate still stops promptly on SIGTERM (the wait between events is sliced).
"$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --all --rate 0.02/s --restart \
  --checkpoint "$SH_TMP/slow.json" > "$SH_TMP/slow.out" 2> "$SH_TMP/slow.err" &
job=$!
wait_for 20 grep -q 'reindex_progress published=0 sent=1 ' "$SH_TMP/slow.err"
t0=$(date +%s%N); kill -TERM "$job"; set +e; wait "$job"; rc=$?; set -e
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "slow job interrupted: exit 1 (got $rc) within 3 s ($stop_ms ms)" test "$rc" -eq 1 -a "$stop_ms" -lt 3000
check "nothing sent after the first event" grep -q '"published":0,"skipped":0,"done":false' "$SH_TMP/slow.out"

# Usage errors.
expect_exit 2 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --all --tenant a \
  --checkpoint "$SH_TMP/x.json"
expect_exit 2 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --all --rate fast \
  --checkpoint "$SH_TMP/x.json"
expect_exit 2 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --all

# The ASan+UBSan build runs a whole job (database, paging, checkpoint, publish) cleanly too.
if [ -x "${SH_BIN_ASAN:-}" ]; then
  expect_exit 0 "$SH_BIN_ASAN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --tenant b \
    --rate 1000/s --batch 6 --checkpoint "$SH_TMP/asan.json"
  check "ASan build: tenant b, 20 published" grep -q '{"published":20,"skipped":0,"done":true' "$SH_TMP/out"
fi

# A reindex that changes nothing says so: a selection of no tracks, and tracks already at the
# target version (published anyway — the operator asked — but warned, outdated 0).
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --tenant nobody --rate 1000/s \
  --checkpoint "$SH_TMP/nobody.json"
check "empty selection: warned" grep -q 'warning: the selection matches no tracks: nothing to publish' "$SH_TMP/err"
check "empty selection: nothing published" grep -q '{"published":0,"skipped":0,"done":true,"outdated":0}' "$SH_TMP/out"
pg_sql "SELECT sh_write_track('cur1', 'c', '{}', NULL, 1.0, 'file:///srv/media/cur1.flac', $V, 5, 0, ''::bytea)" > /dev/null
expect_exit 0 "$SH_BIN" ingest reindex --brokers "$B" --dsn "$SH_DSN" --tenant c --rate 1000/s \
  --checkpoint "$SH_TMP/cur.json"
check "current tracks: warned that workers will change nothing" \
  grep -q "warning: all 1 selected tracks already have fingerprint version $V or newer: workers will change nothing" "$SH_TMP/err"
check "current tracks: outdated 0 in the summary" jq -e '.published == 1 and .outdated == 0' "$SH_TMP/out"

# `ingest delete --dsn` warns about ids the primary does not hold (they only become tombstones).
expect_exit 0 "$SH_BIN" ingest delete --brokers "$B" --dsn "$SH_DSN" --track-id t01 --track-id ghost
check "delete: unknown id warned" grep -q "warning: track 'ghost' is not in the primary" "$SH_TMP/err"
check "delete: known id not warned" bash -c "! grep -q \"track 't01'\" '$SH_TMP/err'"
check "delete: summary counts the unknown" grep -q "1 of 2 id(s) were not in the primary" "$SH_TMP/err"
check "delete: both published" test "$(jq -s length "$SH_TMP/out")" -eq 2
expect_exit 0 "$SH_BIN" ingest delete --brokers "$B" --dsn "host=127.0.0.1 port=1 connect_timeout=2" --track-id t03
check "delete: an unreachable --dsn is one warning, the delete still goes out" \
  bash -c "grep -q 'warning: cannot check the ids against the primary' '$SH_TMP/err' && test \$(wc -l < '$SH_TMP/out') -eq 1"
