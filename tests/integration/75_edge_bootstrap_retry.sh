#!/usr/bin/env bash
# An all-shards edge whose Kafka offsets are all gone (a new, empty broker: every partition answers
# "offset out of range") while its snapshot source has nothing to give retries its bootstraps and
# keeps running: each failure re-assigns the partitions, back to back for the 8 shards. Found by
# the chaos storm (88_chaos, CHAOS_SEED=23): librdkafka 2.0.2 aborted the edge
# (rdkafka_assignment.c:872, assertion rktp_started) when assign() came again while an earlier
# assign's partitions were still stopping. Once snapshot files appear, the edge bootstraps every
# shard and equals the primary; SIGTERM exits 0.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

ed_setup
SEED=${SH_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SH_SEED=$SEED repeats the writes)"
rp_start rp
published() { [ "$(ed_metric soundhash_replicator_last_seq "$RP_PORT")" = "$(pg_sql 'SELECT last_seq FROM change_counter')" ]; }
snap_files() { # $1: directory; every shard's snapshot, straight from the primary
  mkdir -p "$1"
  for s in 0 1 2 3 4 5 6 7; do
    "$SH_BIN" replicator snapshot --dsn "$SH_DSN" --shard "$s" --out "$1/shard-$s.snap" > /dev/null
  done
}

# E bootstraps from files, then applies deltas: every shard's cursor holds a Kafka offset
"$RT" write "$SH_DSN" 30 "$SEED" 2 > /dev/null || fail "repl_tool write"
wait_for 60 published
snap_files "$SH_TMP/snaps1"
ed_start E --shards all --snapshot-source "$SH_TMP/snaps1"
wait_for 60 ed_converged "$ED_PORT_E"
"$RT" write "$SH_DSN" 60 "$((SEED + 1))" 2 > /dev/null || fail "repl_tool write"
wait_for 60 published
wait_for 60 ed_converged "$ED_PORT_E"
ed_stop E TERM
[ "$ED_RC" -eq 0 ] || fail "edge exited $ED_RC on SIGTERM"
echo "ok: E converged (bootstrapped from files, then applied deltas)"

# A new, empty broker (the old one's log is gone) and no snapshot to take
rp_stop TERM
kill "$BROKER_PID"; wait "$BROKER_PID" 2> /dev/null || true
"$SH_BIN" broker --bootstrap-file "$SH_TMP/boot2" > /dev/null 2> "$SH_TMP/broker2.log" &
BROKER_PID=$!
wait_for 20 test -s "$SH_TMP/boot2"
BOOT=$(cat "$SH_TMP/boot2")
mkdir -p "$SH_TMP/snaps2"
ed_start E --shards all --snapshot-source "$SH_TMP/snaps2"
grep 'event=shard_opened' "$SH_TMP/E.log" | sed 's/^.*event=/  /'
check "every shard resumes from a Kafka offset (none at -1)" \
  test "$(grep 'event=shard_opened' "$SH_TMP/E.log" | grep -c -v 'offset=-1')" = 8
failed() { [ "$(ed_metric soundhash_edge_bootstrap_failures_total "$ED_PORT_E")" -ge "$1" ]; }
# the 8 lost offsets (each a failed bootstrap and a re-assign), then two retry rounds (3 s apart)
wait_for 60 failed 24
gaps=$(ed_metric soundhash_edge_gaps_total "$ED_PORT_E")
check "E saw every lost offset (gaps $gaps >= 8)" test "$gaps" -ge 8
check "E kept running through $(ed_metric soundhash_edge_bootstrap_failures_total "$ED_PORT_E") failed bootstraps" \
  kill -0 "$ED_PID_E"
check "E logged no abort" bash -c "! grep -q 'Assertion' '$SH_TMP/E.log'"
check "E is not ready while its shards wait" bash -c "! curl -fsS 127.0.0.1:$ED_PORT_E/ready > /dev/null"

snap_files "$SH_TMP/snaps2"
wait_for 60 ed_converged "$ED_PORT_E"
check "with the files there E bootstrapped its 8 shards and equals the primary" \
  test "$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_E")" -ge 8
ed_stop E TERM
check "E exits 0 on SIGTERM (rc $ED_RC)" test "$ED_RC" -eq 0
