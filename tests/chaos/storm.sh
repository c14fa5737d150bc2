#!/usr/bin/env bash
# tests/chaos/storm.sh — the seeded fault storm (issue 11): the whole pipeline on a real 3-node
# Kafka cluster (ops/kafka.sh), a private PostgreSQL, two workers, the replicator and two
# all-shards edges — eB a region of its own in a network namespace (tests/chaos/netns.sh) —,
# while tracks of the dev corpus are uploaded, re-uploaded, deleted and reindexed and clients
# keep matching against the edges; faults (on eB's link too) are injected at seeded points
# (tests/chaos/plan.py: the schedule derives from the seed alone; the seed is printed). Then:
# every acknowledged upload is in the primary once at its newest version, nothing deleted is
# anywhere, both edges verify, the DLQ holds exactly the poison events, no match was wrong; and
# a table of the faults, events, lost, duplicated, wrong answers and time to converge.
#
# Environment: SH_BIN SH_TMP SH_ROOT SH_DATA_DIR as tests/integration/run.sh sets them (or
# tests/chaos/run.sh for `make chaos`), and
#   CHAOS_SEED      the seed (default: from the clock)      CHAOS_SECONDS  load time (default 60)
#   CHAOS_TRACKS    track ids (default 100)                 CHAOS_FAULT_GAP mean s between faults (8)
#   CHAOS_KINDS     fault kinds (default: all, see plan.py) CHAOS_MATCH_RATE requests/s (default 4)
#   CHAOS_NET       1: eB in its namespace and the net_* faults (needs root, ip, iptables); 0: eB
#                   here, no net_* faults; default: 1 when those are there, else 0 with a message
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"
. "$SH_ROOT/tests/chaos/lib.sh"
. "$SH_ROOT/tests/chaos/netns.sh"

SEED=${CHAOS_SEED:-$(( $(date +%s) % 100000 ))}
SECONDS_LOAD=${CHAOS_SECONDS:-60}
NTRACKS=${CHAOS_TRACKS:-100}
KINDS=${CHAOS_KINDS:-worker_kill,replicator_kill,replicator_ack,edge_kill,retention,broker_kill,broker_stop,broker_restart,elect,pg_fast,pg_immediate,net_partition,net_loss,net_delay}
echo "storm: seed $SEED (CHAOS_SEED=$SEED repeats this schedule), ${SECONDS_LOAD} s of load, $NTRACKS track ids"
# the network faults need a namespace for eB: without root (or the tools) they are left out
NET=${CHAOS_NET:-auto} no_net=""
[ "$(id -u)" = 0 ] || no_net="not root"
command -v ip > /dev/null || no_net="no ip (iproute2; ops/install-deps.sh installs it)"
command -v iptables > /dev/null || no_net="no iptables (ops/install-deps.sh installs it)"
if [ "$NET" = 0 ] || [ -n "$no_net" ]; then
  [ "$NET" = 1 ] && fail "CHAOS_NET=1, but $no_net"
  NET=0
  KINDS=$(tr ',' '\n' <<< "$KINDS" | grep -v '^net_' | paste -sd, -)
  echo "storm: SKIPPED the network faults (${no_net:-CHAOS_NET=0}): edge eB runs in this namespace, no net_* faults"
else
  NET=1
  [[ ",$KINDS," == *,net_* ]] || echo "storm: edge eB in a namespace of its own; no net_* fault among CHAOS_KINDS"
fi
[ -n "$KINDS" ] || fail "no fault kinds left"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
C="$SH_TMP/chaos"; mkdir -p "$C" "$MEDIA/pool" "$MEDIA/poison" "$C/q"
KLIB=$("$SH_ROOT/ops/kafka.sh" fetch)
BG_PIDS=()
storm_cleanup() {
  touch "$C/stop" 2> /dev/null || true
  for p in "${BG_PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
  [ "$NET" = 1 ] && ns_cleanup || true
  # a broker left SIGSTOPped still dies by SIGKILL in wk_cleanup (ops/kafka.sh stop --kill)
  wk_cleanup
}
trap storm_cleanup EXIT
now_ms() { date +%s%3N; }
T0=$(now_ms)
log() { printf '[%6.1f s] %s\n' "$(( $(now_ms) - T0 ))e-3" "$*"; }

# ---- the schedule -----------------------------------------------------------------------------
NSRC=$(ls "$corpus"/*.ogg | wc -l)
python3 "$SH_ROOT/tests/chaos/plan.py" --seed "$SEED" --seconds "$SECONDS_LOAD" --tracks "$NTRACKS" \
  --sources "$NSRC" --kinds "$KINDS" --fault-gap "${CHAOS_FAULT_GAP:-8}" \
  --ops "$C/ops.plan" --faults "$C/faults.plan" || fail "plan.py"
echo "storm: $(wc -l < "$C/ops.plan") op batches, $(wc -l < "$C/faults.plan") faults planned:"
sed 's/^/  /' "$C/faults.plan"

# ---- media: the corpus (hard links when possible), poison files, query hashes per source -----
chaos_media "$MEDIA/pool" "$C/q" "$C"
while read -r _ kind ids; do
  [ "$kind" = poison ] || continue
  for id in $ids; do head -c 30000 /dev/urandom > "$MEDIA/poison/$id.ogg"; done
done < "$C/ops.plan"

# ---- the stack ----------------------------------------------------------------------------------
# KafkaAdmin.java compiled once, while the cluster starts (a JVM per call is slow enough)
javac -nowarn -d "$C/kadmin" -cp "$KLIB/*" "$SH_ROOT/tests/chaos/KafkaAdmin.java" 2> "$C/javac.err" &
JAVAC_PID=$!
SOUNDHASH_KAFKA_PROPS="log.retention.check.interval.ms=1000 log.segment.delete.delay.ms=0 log.initial.task.delay.ms=0" \
  WK_KAFKA=real WK_KAFKA_NODES=3 wk_setup
pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
# shellcheck disable=SC2046
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
  -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
  -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" "$(dirname "$SH_BIN")/libsoundhash.a" \
  $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"
wait "$JAVAC_PID" || { cat "$C/javac.err"; fail "javac KafkaAdmin.java"; }
log "cluster up: $BOOT"
DT=soundhash.index.deltas
RP_HTTP=127.0.0.1:$(free_port)
EPORT_eA=$(free_port); EPORT_eB=$(free_port)
# where the edges answer: eA here; eB in its namespace (reached across its link) when NET=1
EADDR_eA=127.0.0.1:$EPORT_eA; EADDR_eB=127.0.0.1:$EPORT_eB
if [ "$NET" = 1 ]; then
  # eB needs every broker (at the address each advertises) and the replicator's HTTP
  ns_setup $(tr ',' '\n' < "$KAFKA_DIR/bootstrap" | sed 's/.*://') "${RP_HTTP#*:}"
  EADDR_eB=$NS_IP:$EPORT_eB
  log "edge eB's namespace $NS_NS at $NS_IP, $NS_BASE_DELAY ms one way to the primary region"
fi
rp_up() { # (re)starts the replicator on its fixed port; as rp_start (tests/lib/edge.sh), but a
  # start right after PostgreSQL or a broker came back may take minutes on a loaded machine
  "$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" --http "$RP_HTTP" --region primary \
    --heartbeat-ms 200 "$@" > /dev/null 2> "$SH_TMP/rp.log" &
  RP_PID=$!
  WK_PIDS+=("$RP_PID")
  wait_for 180 grep -q 'event=replicator_started' "$SH_TMP/rp.log"
}
ed_up() { # ed_up NAME: (re)starts an edge on its fixed port (eB in its namespace when NET=1)
  local p="EPORT_$1"
  if [ "$NET" = 1 ] && [ "$1" = eB ]; then
    # as ed_start (tests/lib/edge.sh), run in the namespace: `ip netns exec` execs the edge, so
    # $! is the edge's pid (ed_stop signals it)
    [ -f "$SH_TMP/eB.log" ] && mv "$SH_TMP/eB.log" "$SH_TMP/eB.log.$(date +%s%N)"
    ip netns exec "$NS_NS" "$SH_BIN" edge --brokers "$BOOT" --listen "0.0.0.0:$EPORT_eB" --data "$SH_TMP/data-eB" \
      --lag-threshold-ms 3000 --shards all --snapshot-source "http://$RP_HTTP" --region eB \
      > /dev/null 2> "$SH_TMP/eB.log" &
    ED_PID_eB=$!
    WK_PIDS+=("$ED_PID_eB")
    wait_for 30 grep -q 'event=http_listening' "$SH_TMP/eB.log"
  else
    ed_start "$1" --shards all --listen "127.0.0.1:${!p}" --snapshot-source "http://$RP_HTTP" --region "$1"
  fi
}
wk_start w1 --threads 2 --worker-id chaos-w1
wk_start w2 --threads 2 --worker-id chaos-w2
rp_up
ed_up eA; ed_up eB
log "workers, replicator and edges up"

# ---- the load: op batches at their planned times ------------------------------------------------
# ops.log lines: "ack|nak  up ID SRC" / "ack|nak  del ID" / "ack|nak poison ID" / "ran|fail reindex N"
# The plan's clock: faults take longer than planned (a broker or PostgreSQL restart on a loaded
# machine: tens of seconds), so the load follows the fault loop, not the wall clock. $C/vclock
# holds "planned_ms next_planned_ms wall_ms" of the fault in progress: plan time runs on from its
# planned time as the wall clock does, but not past the next fault's planned time until that fault
# has begun ("inf" once the last fault is over). Ops and faults interleave as planned.
vclock_set() { echo "$*" > "$C/vclock.tmp" && mv "$C/vclock.tmp" "$C/vclock"; }
vnow() {
  local p n w
  read -r p n w < "$C/vclock" || { echo 0; return 0; }
  [ "$p" = inf ] && { echo 999999999; return 0; }
  w=$(( p + $(now_ms) - w ))
  echo $(( w < n ? w : n ))
}
# publish up|poison TAG ITEM...: one `ingest publish` of ITEMs (ID:SRC for up, ID for poison),
# each logged as sent, then ack (in the output: Kafka acknowledged it) or nak. TAG names the temp
# files (the loader and the fault loop publish concurrently, never the same ids).
publish() {
  local kind="$1" tag="$2" item id; shift 2
  echo "track_id,uri" > "$C/manifest.$tag.csv"
  for item in "$@"; do
    if [ "$kind" = up ]; then echo "${item%%:*},pool/s${item#*:}.ogg"
    else echo "$item,poison/$item.ogg"; fi
  done >> "$C/manifest.$tag.csv"
  for item in "$@"; do echo "sent $kind ${item%%:*} ${item#*:}"; done >> "$C/ops.log"
  "$SH_BIN" ingest publish --brokers "$BOOT" --media-root "$MEDIA" --manifest "$C/manifest.$tag.csv" \
    --timeout 20 > "$C/pub.$tag.out" 2>> "$C/pub.err" || true
  for item in "$@"; do
    id=${item%%:*}
    if grep -q "\"track_id\":\"$id\"" "$C/pub.$tag.out"; then echo "ack $kind $id ${item#*:}"
    else echo "nak $kind $id ${item#*:}"; fi
  done >> "$C/ops.log"
}
run_ops() {
  local t kind rest
  while read -r t kind rest; do
    [ -e "$C/stop" ] && break
    while [ "$(vnow)" -lt "$t" ]; do sleep 0.1; done
    case "$kind" in
      up|poison) publish "$kind" run $rest ;;
      del)
        local args=() id
        for id in $rest; do args+=(--track-id "$id"); echo "sent del $id -"; done >> "$C/ops.log"
        "$SH_BIN" ingest delete --brokers "$BOOT" "${args[@]}" --timeout 20 > "$C/del.out" 2>> "$C/pub.err" || true
        for id in $rest; do
          if grep -q "\"track_id\":\"$id\"" "$C/del.out"; then echo "ack del $id -"; else echo "nak del $id -"; fi
        done >> "$C/ops.log" ;;
      reindex)
        tr ' ' '\n' <<< "$rest" > "$C/reindex.list"
        if timeout 60 "$SH_BIN" ingest reindex --brokers "$BOOT" --dsn "$SH_DSN" --list "$C/reindex.list" \
             --rate 500 --checkpoint "$C/reindex.ckpt" --restart > /dev/null 2>> "$C/pub.err"; then
          echo "ran reindex $(wc -w <<< "$rest") -" >> "$C/ops.log"
        else
          echo "fail reindex $(wc -w <<< "$rest") -" >> "$C/ops.log"
        fi ;;
    esac
  done < "$C/ops.plan"
  echo done > "$C/ops.done"
}
first_fault=$(awk 'NR == 1 { printf "%d", $1 * 1000 }' "$C/faults.plan")
vclock_set 0 "${first_fault:-999999999}" "$(now_ms)"
run_ops &
BG_PIDS+=($!); LOAD_PID=$!
python3 "$SH_ROOT/tests/chaos/matcher.py" --edges "http://$EADDR_eA,http://$EADDR_eB" \
  --queries "$C/q" --out "$C/match.log" --stop "$C/stop" --seed "$SEED" --rate "${CHAOS_MATCH_RATE:-4}" &
BG_PIDS+=($!); MATCH_PID=$!

# ---- the faults ---------------------------------------------------------------------------------
declare -A FAULTS
count_fault() { FAULTS[$1]=$(( ${FAULTS[$1]:-0} + 1 )); }
node_pid() { cat "$KAFKA_DIR/pids/node-$1.pid" 2> /dev/null; }
kadmin() { timeout 180 java -Xmx128m -XX:TieredStopAtLevel=1 -cp "$C/kadmin:$KLIB/*" KafkaAdmin "$BOOT" "$@" 2>> "$C/kadmin.err"; }
resolve_node() { # leader:P | controller | node:I -> a node id that is up now
  local n=""
  case "$1" in
    leader:*) n=$("$KT" replicas "$BOOT" "$DT" 2> /dev/null | awk -v p="${1#leader:}" '$1 == p {print $2}') ;;
    controller) # the KRaft quorum's leader as the nodes last recorded it (newest epoch wins)
      n=$(for f in "$KAFKA_DIR"/data/node-*/__cluster_metadata-0/quorum-state; do
            jq -r '"\(.leaderEpoch) \(.leaderId)"' "$f"; done 2> /dev/null | sort -n | tail -n1 | awk '{print $2}') ;;
    node:*) n=${1#node:} ;;
  esac
  [[ "$n" =~ ^[1-3]$ ]] || n=$(( (RANDOM % 3) + 1 ))
  echo "$n"
}
wk_inflight() { curl -fsS "127.0.0.1:$1/health" 2> /dev/null | jq -e '.inflight > 0' > /dev/null; }
worker_restart() { # NAME: after SIGKILL
  sleep 1
  wk_start "$1" --threads 2 --worker-id "chaos-$1"
}
pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1; }
pg_down() { # MODE: pg_ctl stop as the server's owner
  local owner; owner=$(stat -c %U "$SH_PG_DIR/data")
  if [ "$(id -un)" = "$owner" ]; then "$(pg_bin)/pg_ctl" -D "$SH_PG_DIR/data" stop -m "$1" -w -t 60
  else runuser -u "$owner" -- "$(pg_bin)/pg_ctl" -D "$SH_PG_DIR/data" stop -m "$1" -w -t 60; fi > /dev/null
}
pg_up() {
  local dsn; dsn=$("$SH_BIN" db start --dir "$SH_PG_DIR" 2> "$C/pg-restart.err") || {
    cat "$C/pg-restart.err" >&2; fail "PostgreSQL did not restart"; }
  [ "$dsn" = "$SH_DSN" ] || fail "PostgreSQL came back with another DSN ($dsn)"
}
all_isr() { "$KT" replicas "$BOOT" "$DT" 2> /dev/null | awk '{ if ($2 < 0 || split($4, i, ",") != 3) bad++ } END { exit bad > 0 }'; }

nudge() { # one upload under a fresh hook-N id (checked like every other), to make the primary move
  HOOK_N=$(( ${HOOK_N:-0} + 1 ))
  publish up hook "hook-$(printf %04d "$HOOK_N"):$(( HOOK_N % NSRC ))"
}
fault() { # KIND ARG: runs one fault to its end (the component restarted)
  local kind="$1" arg="$2" n pid
  case "$kind" in
    worker_kill)
      local portv="WK_PORT_$arg"
      local hit=no end=$(( $(date +%s) + 5 ))
      while [ "$(date +%s)" -lt "$end" ]; do wk_inflight "${!portv}" && { hit=yes; break; }; sleep 0.05; done
      wk_kill "$arg" KILL
      log "worker $arg SIGKILLed (events in flight: $hit)"
      [ $hit = yes ] && count_fault "worker_kill_mid_batch"
      worker_restart "$arg" ;;
    replicator_kill)
      rp_stop KILL; log "replicator SIGKILLed"; sleep 0.5; rp_up ;;
    replicator_ack)
      rp_stop TERM
      SOUNDHASH_TEST_KILL_AFTER_ACKS=$arg rp_up
      # rounds are acknowledged only while the primary changes: if the load is quiet, upload a
      # track of this fault's own (hook-N ids: checked like every other upload)
      local end=$(( $(date +%s) + 180 ))
      while kill -0 "$RP_PID" 2> /dev/null && [ "$(date +%s)" -lt "$end" ]; do
        timeout 5 tail --pid="$RP_PID" -f /dev/null || true
        kill -0 "$RP_PID" 2> /dev/null || break
        nudge
      done
      kill -0 "$RP_PID" 2> /dev/null && { kill -9 "$RP_PID"; fail "the replicator's ack hook did not fire in 180 s"; }
      set +e; wait "$RP_PID"; local rc=$?; set -e
      [ "$rc" -eq 137 ] || fail "the replicator's ack hook did not fire (exit $rc)"
      log "replicator killed itself after $arg acknowledged rounds, before moving its position"
      rp_up ;;
    edge_kill)
      local pidv="ED_PID_$arg"
      ed_stop "$arg" KILL; log "edge $arg SIGKILLed"; sleep 0.5; ed_up "$arg" ;;
    retention)
      ed_stop "$arg" KILL
      "$KT" watermarks "$BOOT" "$DT" > "$C/wm.before"
      "$KT" topic-config "$BOOT" "$DT" segment.ms=200 retention.ms=2500 || fail "topic-config"
      log "edge $arg SIGKILLed, delta retention 2.5 s"
      past() {
        "$KT" watermarks "$BOOT" "$DT" > "$C/wm.now" || return 1
        join "$C/wm.before" "$C/wm.now" | awk '{ if ($3 > 0 && $4 <= $3) bad++ } END { exit bad > 0 }'
      }
      # segments roll only as deltas arrive: if the load is quiet, upload tracks of this fault's own
      local end=$(( $(date +%s) + 120 ))
      until past; do
        [ "$(date +%s)" -lt "$end" ] || fail "retention never dropped past edge $arg's offsets"
        sleep 3; past && break
        nudge
      done
      "$KT" topic-config "$BOOT" "$DT" retention.ms=604800000 || fail "topic-config"
      log "Kafka dropped every delta edge $arg had not read; retention back to 7 days"
      ed_up "$arg"
      local eaddr="EADDR_$arg"
      bootstrapped() { [ "$(ed_metric soundhash_edge_bootstraps_total "${!eaddr}")" -ge 1 ] 2> /dev/null; }
      wait_for 120 bootstrapped
      log "edge $arg bootstrapped from snapshots ($(ed_metric soundhash_edge_bootstraps_total "${!eaddr}") shards)" ;;
    broker_kill)
      n=$(resolve_node "$arg")
      "$SH_ROOT/ops/kafka.sh" node-stop --dir "$KAFKA_DIR" --node "$n" --kill 2> /dev/null
      log "broker $n ($arg) SIGKILLed"
      [ "$arg" = controller ] && count_fault "broker_kill_controller"
      [[ "$arg" = leader:* ]] && count_fault "broker_kill_leader"
      sleep 3
      "$SH_ROOT/ops/kafka.sh" node-start --dir "$KAFKA_DIR" --node "$n" 2> /dev/null
      log "broker $n restarted" ;;
    broker_stop)
      n=$(resolve_node "$arg"); pid=$(node_pid "$n")
      kill -STOP "$pid"; log "broker $n ($arg) SIGSTOPped"
      [ "$arg" = controller ] && count_fault "broker_stop_controller"
      [[ "$arg" = leader:* ]] && count_fault "broker_stop_leader"
      sleep $(( 3 + RANDOM % 6 ))
      kill -CONT "$pid"; log "broker $n SIGCONTed" ;;
    broker_restart)
      n=$(resolve_node "$arg")
      "$SH_ROOT/ops/kafka.sh" node-stop --dir "$KAFKA_DIR" --node "$n" 2> /dev/null
      log "broker $n stopped (SIGTERM)"
      "$SH_ROOT/ops/kafka.sh" node-start --dir "$KAFKA_DIR" --node "$n" 2> /dev/null
      log "broker $n restarted" ;;
    elect)
      # after a restart the preferred leaders are back in the ISR; wait for that (bounded)
      local e=$(( $(date +%s) + 30 ))
      until all_isr || [ "$(date +%s)" -ge "$e" ]; do sleep 0.5; done
      kadmin elect-preferred soundhash.audio.events soundhash.audio.dlq "$DT" > "$C/elect.out" || true
      if [ -s "$C/elect.out" ]; then
        log "preferred-leader election: $(awk '{print $3}' "$C/elect.out" | sort | uniq -c | tr '\n' ' ')"
      else
        kind=elect_failed; log "preferred-leader election failed: $(tail -n1 "$C/kadmin.err")"
      fi ;;
    pg_fast|pg_immediate)
      pg_down "${kind#pg_}"; log "PostgreSQL stopped (-m ${kind#pg_}) for $arg s"
      sleep "$arg"; pg_up; log "PostgreSQL restarted" ;;
    net_partition)
      log "edge eB's link down (partition) for $arg s"
      ns_partition "$arg"; log "edge eB's link up" ;;
    net_loss)
      log "${arg%%:*} % of the packets dropped each way on eB's link for ${arg#*:} s"
      ns_loss "${arg%%:*}" "${arg#*:}" ;;
    net_delay)
      log "eB's link delayed ${arg%%:*} ms one way for ${arg#*:} s"
      ns_delay "${arg%%:*}" "${arg#*:}"; log "eB's link back to $NS_BASE_DELAY ms" ;;
    *) fail "unknown fault $kind" ;;
  esac
  count_fault "$kind"
}

# the RANDOM draws inside faults (SIGSTOP length, fallback node) come from the seed too
RANDOM=$SEED
mapfile -t FPLAN < "$C/faults.plan"
for i in "${!FPLAN[@]}"; do
  read -r t kind arg <<< "${FPLAN[i]}"
  at=$(awk -v t="$t" 'BEGIN { printf "%d", t * 1000 }')
  next=$(awk -v l="${FPLAN[i + 1]:-}" 'BEGIN { split(l, f, " "); printf "%d", (l == "" ? 999999999 : f[1] * 1000) }')
  while [ "$(vnow)" -lt "$at" ]; do sleep 0.1; done  # the ops planned before it are under way
  vclock_set "$at" "$next" "$(now_ms)"
  log "fault: $kind $arg"
  fault "$kind" "$arg"
done
vclock_set inf
LAST_FAULT=$(now_ms)
log "last fault over"
wait "$LOAD_PID" || true
log "load over: $(grep -c '^sent' "$C/ops.log") operations sent"

# ---- convergence --------------------------------------------------------------------------------
rp_caught_up() { [ "$(ed_metric soundhash_replicator_last_seq "${RP_HTTP#*:}")" = "$(pg_sql 'SELECT last_seq FROM change_counter')" ]; }
converged() {
  wk_all_committed soundhash-workers soundhash.audio.events &&
    wk_all_committed soundhash-workers soundhash.audio.reindex && rp_caught_up &&
    ed_converged "$EADDR_eA" && ed_converged "$EADDR_eB"
}
wait_for 300 converged
CONVERGE_MS=$(( $(now_ms) - LAST_FAULT ))
log "converged $CONVERGE_MS ms after the last fault"
touch "$C/stop"; wait "$MATCH_PID" || true

# ---- the checks ---------------------------------------------------------------------------------
expect_exit 0 "$SH_BIN" verify --dsn "$SH_DSN" --wait 60 --edge "http://$EADDR_eA" \
  --edge "http://$EADDR_eB"
check "soundhash verify: both edges, every shard equals the primary" \
  test "$(jq -rs '"\([.[] | select(.ok == true)] | length) \(.[-1].mismatched)"' "$SH_TMP/out")" = "16 0"

# expected final state per track id: its last acknowledged op, unless an unacknowledged op came
# after it (its event may or may not be in Kafka: either outcome is right, counted as ambiguous)
awk '$1 == "ack" || $1 == "nak"' "$C/ops.log" | awk '
  { st = $1; op = $2; id = $3; src = $4
    if (st == "ack") { last[id] = op " " src; amb[id] = "" } else amb[id] = amb[id] " " op ":" src }
  END { for (id in last) print id, last[id], (amb[id] == "" ? "-" : amb[id]) }' | sort > "$C/expect"
pg_sql "SELECT t.external_id, t.status, coalesce(t.sha256, '-'), t.n_hashes, coalesce(f.n_hashes, -1)
        FROM tracks t LEFT JOIN fingerprints f USING (external_id) ORDER BY 1" | tr '|' ' ' > "$C/primary"
# one awk over all tracks (a shell loop forking awk per track took 2 s a track at load 35: 10 min
# for the 300 ids of `make chaos`): a track passes when its primary row matches the last
# acknowledged op or any later unacknowledged one: an upload stored active with that source's
# SHA-256 and its hashes in both tables, a delete a tombstone without fingerprints
for f in "$C"/sha.*; do echo "${f##*.} $(cat "$f")"; done > "$C/sha.all"
awk -v sum="$C/lost.sum" 'FILENAME == ARGV[1] { sha[$1] = $2; next }
     FILENAME == ARGV[2] { row[$1] = $0; st[$1] = $2; sh[$1] = $3; n[$1] = $4; fn[$1] = $5; next }
     $2 == "poison" { next }
     { id = $1; ok = 0; nw = 0; w[++nw] = $2 ":" $3
       for (i = 4; i <= NF; i++) if ($i != "-") w[++nw] = $i
       for (k = 1; k <= nw && !ok; k++) {
         o = substr(w[k], 1, index(w[k], ":") - 1); src = substr(w[k], index(w[k], ":") + 1)
         if (!(id in row)) continue
         if (o == "up") ok = st[id] == "active" && (src in sha) && sh[id] == sha[src] && n[id] > 0 && n[id] == fn[id]
         else ok = st[id] == "deleted" && fn[id] == -1
       }
       checked++; if ($4 != "-") ambiguous++
       if (!ok) { lost++; amb = ""; for (i = 4; i <= NF; i++) amb = amb " " $i
                  printf "LOST: %s want %s:%s (or%s), primary: %s\n", id, $2, $3, amb, (id in row ? row[id] : "none") } }
     END { printf "%d %d %d\n", checked, ambiguous, lost > sum }' "$C/sha.all" "$C/primary" "$C/expect"
read -r checked ambiguous lost < "$C/lost.sum"
# the primary's version of each track is the newest event Kafka holds for it
events=$("$KT" end "$BOOT" soundhash.audio.events | awk '{s += $2} END {print s}')
"$KT" events "$BOOT" soundhash.audio.events "$events" 60 > "$C/events" || fail "reading the events topic"
awk -F'|' '$1 !~ /^poison-/ { if (!($1 in v) || $3 > v[$1]) { v[$1] = $3; o[$1] = $2 } }
           END { for (i in v) print i, v[i], o[i] }' "$C/events" | sort > "$C/newest"
pg_sql "SELECT external_id, version, status FROM tracks WHERE external_id NOT LIKE 'poison-%'" |
  tr '|' ' ' | sort > "$C/versions"
stale=$(join "$C/newest" "$C/versions" | awk '$2 != $4' | wc -l)
missing=$(join -v1 "$C/newest" "$C/versions" | wc -l)
check "every track's stored version is the newest event Kafka holds for it ($(wc -l < "$C/newest") tracks)" \
  test "$stale $missing" = "0 0"
check "no status disagrees with that newest event" \
  test "$(join "$C/newest" "$C/versions" | awk '($3 == "DELETE") != ($5 == "deleted")' | wc -l)" -eq 0
check "every acknowledged upload and delete is in the primary as acknowledged ($checked tracks, $ambiguous with a later unacknowledged op)" \
  test "$lost" -eq 0
# an event applied twice would leave two change-log rows of one (track, version, op, fp_version)
duplicated=$(pg_sql "SELECT count(*) FROM (SELECT 1 FROM change_log GROUP BY external_id, version, op, fp_version
                     HAVING count(*) > 1) d")
check "no event applied twice (change log)" test "$duplicated" -eq 0
check "no poison in the primary" test "$(pg_sql "SELECT count(*) FROM tracks WHERE external_id LIKE 'poison-%'")" -eq 0

# the DLQ: exactly the poison events (distinct ids), duplicates from at-least-once reported
"$SH_BIN" dlq show --brokers "$BOOT" > "$C/dlq.json" 2> "$C/dlq.err" || fail "dlq show: $(cat "$C/dlq.err")"
jq -r .track_id "$C/dlq.json" | sort > "$C/dlq.ids"
sort -u "$C/dlq.ids" > "$C/dlq.uniq"
awk '$1 == "ack" && $2 == "poison" {print $3}' "$C/ops.log" | sort -u > "$C/poison.acked"
awk '$2 == "poison" {print $3}' "$C/ops.log" | sort -u > "$C/poison.sent"
dlq_dups=$(( $(wc -l < "$C/dlq.ids") - $(wc -l < "$C/dlq.uniq") ))
check "every acknowledged poison event is in the DLQ ($(wc -l < "$C/poison.acked"))" \
  test -z "$(comm -23 "$C/poison.acked" "$C/dlq.uniq")"
check "the DLQ holds nothing but poison ($(wc -l < "$C/dlq.uniq") distinct ids, $dlq_dups duplicates)" \
  test -z "$(comm -23 "$C/dlq.uniq" "$C/poison.sent")"

# match answers: a track id is right for a source when the driver ever sent that source under it
awk '$1 == "sent" && $2 == "up" {print $3, $4}' "$C/ops.log" | sort -u > "$C/holders"
awk -F'\t' 'NR == FNR { h[$0] = 1; next }
  { n++; o[$4]++
    if ($4 == 200 && $5 != "-" && !(($5 " " $3) in h)) { wrong++; print "WRONG:", $0 > "/dev/stderr" }
    if ($4 == "badjson") wrong++ }
  END { printf "%d %d", n, wrong + 0; for (k in o) printf " %s=%d", k, o[k]; print "" }' \
  "$C/holders" "$C/match.log" > "$C/match.sum" 2> "$C/wrong"
read -r requests wrong outcomes < "$C/match.sum"
echo "match requests during the storm: $requests ($outcomes)"
head -n 5 "$C/wrong"
check "no match request got a wrong track" test "$wrong" -eq 0
check "no answer other than 200, 503 or a restarting edge" \
  test "$(awk -F'\t' '$4 != 200 && $4 != 503 && $4 != "down" && $4 != "timeout"' "$C/match.log" | wc -l)" -eq 0

# nothing deleted is anywhere: no edge offers a deleted track among 10 candidates for any source
pg_sql "SELECT external_id FROM tracks WHERE status = 'deleted' ORDER BY 1" > "$C/deleted"
for e in "$EADDR_eA" "$EADDR_eB"; do
  for q in "$C"/q/*.json; do
    curl -fsS -H 'Content-Type: application/json' --data-binary @"$q" "$e/v1/match?top=10" |
      jq -r '.candidates[]?.track_id, (.match.track_id // empty)'
  done
done | sort -u > "$C/answered"
check "no edge answers with any of the $(wc -l < "$C/deleted") deleted tracks" \
  test -z "$(comm -12 "$C/answered" "$C/deleted")"

# ---- the table ----------------------------------------------------------------------------------
nsent=$(grep -c '^sent' "$C/ops.log"); nack=$(grep -c '^ack' "$C/ops.log"); nnak=$(grep -c '^nak' "$C/ops.log" || true)
{
  echo
  echo "storm seed $SEED: ${SECONDS_LOAD} s of load, $NTRACKS track ids, $NSRC sources"
  printf '  %-28s %s\n' "fault" "injected"
  for k in $(printf '%s\n' "${!FAULTS[@]}" | sort); do printf '  %-28s %s\n' "$k" "${FAULTS[$k]}"; done
  printf '  %-28s %s\n' "events sent" "$nsent (acknowledged $nack, not acknowledged $nnak; $(grep -c 'reindex' "$C/ops.log" || true) reindex jobs)"
  printf '  %-28s %s\n' "events in Kafka" "$events"
  printf '  %-28s %s\n' "tracks checked" "$checked ($ambiguous ambiguous: a later op not acknowledged)"
  printf '  %-28s %s\n' "lost" "$lost"
  printf '  %-28s %s\n' "duplicated" "$duplicated"
  printf '  %-28s %s\n' "dead letters" "$(wc -l < "$C/dlq.uniq") distinct poison ids ($dlq_dups duplicates)"
  printf '  %-28s %s\n' "match requests" "$requests ($outcomes)"
  printf '  %-28s %s\n' "wrong answers" "$wrong"
  printf '  %-28s %s\n' "edge bootstraps (eA, eB)" "$(ed_metric soundhash_edge_bootstraps_total "$EADDR_eA"), $(ed_metric soundhash_edge_bootstraps_total "$EADDR_eB") (since their last start)"
  [ "$NET" = 1 ] && printf '  %-28s %s\n' "eB's link ($NS_BASE_DELAY ms)" "partitioned $NS_PART_S s in all, $NS_DROPPED packets dropped by the loss faults, delay raised up to $NS_DELAY_MAX ms"
  printf '  %-28s %s\n' "converged after last fault" "$(awk -v m="$CONVERGE_MS" 'BEGIN { printf "%.1f s", m / 1000 }')"
} | tee "$C/table.txt"
[ -n "${CHAOS_TABLE:-}" ] && cp "$C/table.txt" "$CHAOS_TABLE"
kill "$RP_PID" 2> /dev/null || true
if [ "$NET" = 1 ]; then ns_cleanup; ns_check_gone; fi
