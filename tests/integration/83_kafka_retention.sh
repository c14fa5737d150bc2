#!/usr/bin/env bash
# Retention on a real Apache Kafka node deletes old delta segments: the delta topic gets
# segment.ms / retention.ms of a few hundred ms / seconds (the broker checks retention every second),
# an edge that converged is stopped, writes go on until Kafka no longer holds the offset the edge
# had reached, and the restarted edge sees the lost stream (an offset Kafka no longer holds: a
# gap), bootstraps from the replicator's snapshots and converges (`soundhash verify` passes).
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

SEED=${SH_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SH_SEED=$SEED repeats the writes)"
SOUNDHASH_KAFKA_PROPS="log.retention.check.interval.ms=1000 log.segment.delete.delay.ms=0 log.initial.task.delay.ms=0" \
  WK_KAFKA=real WK_KAFKA_NODES=1 wk_setup
pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
# shellcheck disable=SC2046
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
  -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" "$(dirname "$SH_BIN")/libsoundhash.a" \
  $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"

T=soundhash.index.deltas
"$KT" topic-config "$BOOT" "$T" segment.ms=200 retention.ms=2500 || fail "topic-config"
rp_start rp
published() { [ "$(ed_metric soundhash_replicator_last_seq "$RP_PORT")" = "$(pg_sql 'SELECT last_seq FROM change_counter')" ]; }
"$RT" write "$SH_DSN" 40 "$SEED" 2 > /dev/null || fail "repl_tool write"
wait_for 60 published

ed_start late --shards all --snapshot-source "http://127.0.0.1:$RP_PORT"
wait_for 90 ed_converged "$ED_PORT_late"
echo "ok: the edge converged (first bootstrap: $(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_late") shards)"
"$KT" watermarks "$BOOT" "$T" > "$SH_TMP/wm.before"
ed_stop late TERM
[ "$ED_RC" -eq 0 ] || fail "edge exited $ED_RC on SIGTERM"

# writes in rounds (each new delta past segment.ms rolls a segment), until Kafka's log start of
# every partition is past the end the edge had seen there (≥ 80 s of rounds). The broker's first
# retention check waits log.initial.task.delay.ms (30 s by default since Kafka 3.9, set to 0
# above): on a fast machine 40 rounds used to end before it, and retention never ran.
all_past() { # every partition's low watermark beyond its high watermark in wm.before
  "$KT" watermarks "$BOOT" "$T" > "$SH_TMP/wm.now" || return 1
  join "$SH_TMP/wm.before" "$SH_TMP/wm.now" | awk '{ if ($3 > 0 && $4 <= $3) bad++ } END { exit bad > 0 }'
}
round=0
until all_past; do
  round=$((round + 1))
  [ "$round" -le 160 ] || fail "retention never deleted past the edge's offsets: $(cat "$SH_TMP/wm.now")"
  "$RT" write "$SH_DSN" 16 $((SEED + round)) 2 > /dev/null || fail "repl_tool write"
  sleep 0.5
done
wait_for 60 published
echo "ok: after $round rounds Kafka no longer holds the offsets the edge had reached:"
join "$SH_TMP/wm.before" "$SH_TMP/wm.now" | awk '{printf "  partition %s: the edge had read to %s, the log now starts at %s\n", $1, $3, $4}'

ed_start late --shards all --snapshot-source "http://127.0.0.1:$RP_PORT"
wait_for 120 ed_converged "$ED_PORT_late"
gaps=$(ed_metric soundhash_edge_gaps_total "$ED_PORT_late")
boots=$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_late")
check "the restarted edge saw the lost stream (gaps $gaps) and bootstrapped ($boots shards)" \
  awk -v g="$gaps" -v b="$boots" 'BEGIN { exit !(g >= 1 && b >= 1) }'
check "it equals the primary (verify)" \
  "$SH_BIN" verify --dsn "$SH_DSN" --wait 60 --edge "http://127.0.0.1:$ED_PORT_late"
