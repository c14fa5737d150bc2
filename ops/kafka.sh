#!/usr/bin/env bash
# ops/kafka.sh — a real Apache Kafka cluster (KRaft, every node broker + controller) on loopback,
# for the integration tests, the demo and development. Not a production deployment.
#
#   ops/kafka.sh fetch                              the pinned release's jars into the cache (once)
#   ops/kafka.sh start --brokers N --dir DIR        format, start N nodes, create the topics;
#                                                   prints the bootstrap list (also in DIR/bootstrap)
#   ops/kafka.sh stop --dir DIR [--kill]            SIGTERM every node, SIGKILL after a bound
#                                                   (--kill: SIGKILL at once, for throwaway data)
#   ops/kafka.sh status --dir DIR                   one line per node; exit 1 unless all are up
#   ops/kafka.sh node-stop --dir DIR --node I [--kill]   stop (or SIGKILL) one node
#   ops/kafka.sh node-start --dir DIR --node I      start one node again (its data kept)
#
# The version is pinned in ops/kafka/pom.xml; `mvn dependency:copy-dependencies` copies its jars to
# $SOUNDHASH_KAFKA_CACHE/<version>/lib (default ~/.cache/soundhash-kafka). Node I (1..N) has its
# config in DIR/config/node-I.properties, data in DIR/data/node-I, log in DIR/logs/node-I.log and
# pid in DIR/pids/node-I.pid. Topics: those of core/runtime/sh_kafka.h, created by
# `soundhash broker topics --create` (SOUNDHASH_BIN, default build/soundhash) with replication
# factor min(3, N); min.insync.replicas is 2 when N >= 3 (a cluster default, so it also holds for
# topics created later and for Kafka's own offsets and transaction topics), else 1.
# Environment: SOUNDHASH_KAFKA_PROPS (extra broker settings, "k=v k=v"),
# SOUNDHASH_KAFKA_HEAP (default 256m), SOUNDHASH_KAFKA_START_TIMEOUT (s, default 120),
# SOUNDHASH_KAFKA_STOP_TIMEOUT (s, default 20).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
POM="$ROOT/ops/kafka/pom.xml"
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
CACHE="${SOUNDHASH_KAFKA_CACHE:-$HOME/.cache/soundhash-kafka}/$VERSION"
LIB="$CACHE/lib"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
HEAP="${SOUNDHASH_KAFKA_HEAP:-256m}"
START_TIMEOUT="${SOUNDHASH_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT="${SOUNDHASH_KAFKA_STOP_TIMEOUT:-20}"

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*" >&2; }
now_ms() { date +%s%3N; }

usage() { # usage [RC]
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

# ---- the jars ------------------------------------------------------------------------------------
# fetch: copies the release's runtime jars once. Concurrent callers (parallel tests, several
# engineers) serialise on a lock; the copy lands in a temp dir renamed into place, so a fetch
# killed half-way leaves no half-filled lib/ behind.
fetch() {
  [ -f "$LIB/.complete" ] && return 0
  command -v mvn > /dev/null || die "mvn not found (ops/install-deps.sh installs maven)"
  mkdir -p "$CACHE"
  exec 8> "$CACHE/.lock"
  flock 8
  if [ ! -f "$LIB/.complete" ]; then
    local t0 tmp; t0=$(now_ms); tmp="$CACHE/lib.tmp.$$"
    rm -rf "$tmp" "$LIB"
    say "fetching Apache Kafka $VERSION jars through Maven into $LIB (once)"
    mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$tmp" >&2 || { rm -rf "$tmp"; die "mvn could not fetch Kafka $VERSION"; }
    touch "$tmp/.complete"
    mv "$tmp" "$LIB"
    say "fetched $(ls "$LIB" | wc -l) jars in $(( $(now_ms) - t0 )) ms"
  fi
  flock -u 8
}

check_java() {
  command -v java > /dev/null || die "java not found (ops/install-deps.sh installs default-jdk-headless)"
  local v; v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [ "${v%%.*}" -ge 17 ] 2> /dev/null || die "Kafka $VERSION needs Java 17 or newer (found ${v:-none})"
}

# java_cmd HEAP: sets JAVA_CMD to the JVM command every node and tool uses: a small fixed heap, G1,
# C1 only (start-up and CPU matter more than peak throughput on a shared test machine), no GC log,
# log4j 2 reading our config.
java_cmd() {
  JAVA_CMD=(java -Xms"$1" -Xmx"$1" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1
            -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
            -Dlog4j2.configurationFile="$DIR/config/log4j2.properties" -cp "$LIB/*")
}

# ---- the cluster directory ---------------------------------------------------------------------
pid_of() { cat "$DIR/pids/node-$1.pid" 2> /dev/null || true; }
alive() { [ -n "$1" ] && kill -0 "$1" 2> /dev/null; }
nodes() { { ls "$DIR/config" 2> /dev/null || true; } | sed -n 's/^node-\([0-9]*\)\.properties$/\1/p' | sort -n; }

# free_ports K: K distinct free loopback TCP ports, held open together while chosen.
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

write_log4j() {
  cat > "$DIR/config/log4j2.properties" <<'EOF'
# Kafka's logs, one file per node (stdout is redirected there by ops/kafka.sh).
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# The full config dump of every client and server: long, and in the .properties file anyway.
logger.config.name = org.apache.kafka.common.config
logger.config.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

# extra_props: SOUNDHASH_KAFKA_PROPS, whitespace-separated key=value broker settings (tests: e.g.
# log.retention.check.interval.ms=1000 so retention runs within a test), one per line.
extra_props() {
  local kv
  for kv in ${SOUNDHASH_KAFKA_PROPS:-}; do
    [[ "$kv" =~ ^[a-z][a-z0-9._-]*=[^[:space:]]+$ ]] || die "SOUNDHASH_KAFKA_PROPS: '$kv' is not key=value"
    echo "$kv"
  done
}

# write_config I N VOTERS PORT CPORT: node I's server.properties.
write_config() {
  local i="$1" n="$2" voters="$3" port="$4" cport="$5"
  local rf=$(( n < 3 ? n : 3 )) isr=$(( n >= 3 ? 2 : 1 ))
  cat > "$DIR/config/node-$i.properties" <<EOF
# node $i of $n — written by ops/kafka.sh
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/data/node-$i
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
unclean.leader.election.enable=false
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
$(extra_props)
# Few threads: a test cluster on a shared 2-core machine.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
# A broker that fell out is noticed within seconds, not the default 18 s / 30 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
replica.lag.time.max.ms=10000
EOF
}

# launch I: starts node I in its own session (so a terminal's ^C or a test's process group does not
# reach it unannounced); its pid goes to DIR/pids/node-I.pid.
launch() {
  local i="$1"
  alive "$(pid_of "$i")" && die "node $i already runs (pid $(pid_of "$i"))"
  java_cmd "$HEAP"
  setsid "${JAVA_CMD[@]}" kafka.Kafka "$DIR/config/node-$i.properties" \
    >> "$DIR/logs/node-$i.log" 2>&1 < /dev/null &
  echo $! > "$DIR/pids/node-$i.pid"
}

# wait_started I DEADLINE_MS: until node I logs that it is serving; fails if it died.
wait_started() {
  local i="$1" deadline="$2" pid; pid=$(pid_of "$i")
  until grep -q 'Kafka Server started' "$DIR/logs/node-$i.log" 2> /dev/null; do
    alive "$pid" || { tail -n 30 "$DIR/logs/node-$i.log" >&2; die "node $i exited during start"; }
    [ "$(now_ms)" -lt "$deadline" ] || die "node $i not started after ${START_TIMEOUT}s (DIR/logs/node-$i.log)"
    sleep 0.2
  done
}

# stop_nodes SIGNAL I...: signals the nodes, waits up to STOP_TIMEOUT, then SIGKILLs the rest.
stop_nodes() {
  local sig="$1"; shift
  local i pid pids=() end
  for i in "$@"; do
    pid=$(pid_of "$i")
    alive "$pid" && { kill -s "$sig" "$pid" 2> /dev/null || true; pids+=("$pid"); }
  done
  end=$(( $(now_ms) + STOP_TIMEOUT * 1000 ))
  for pid in "${pids[@]}"; do
    while alive "$pid" && [ "$(now_ms)" -lt "$end" ]; do sleep 0.1; done
    alive "$pid" && { say "pid $pid still up after ${STOP_TIMEOUT}s: SIGKILL"; kill -9 "$pid" 2> /dev/null || true; }
  done
  for i in "$@"; do rm -f "$DIR/pids/node-$i.pid"; done
}

bootstrap_list() {
  local i list=""
  for i in $(nodes); do
    list="$list,$(sed -n 's|^advertised.listeners=PLAINTEXT://||p' "$DIR/config/node-$i.properties")"
  done
  echo "${list#,}"
}

# ---- commands ------------------------------------------------------------------------------------
cmd_start() {
  local n="$1" t0; t0=$(now_ms)
  [ -x "$BIN" ] || die "$BIN not found (make build/soundhash, or set SOUNDHASH_BIN)"
  fetch
  check_java
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  local i
  for i in $(nodes); do alive "$(pid_of "$i")" && die "a cluster already runs in $DIR (node $i)"; done
  rm -rf "$DIR/config" "$DIR/data" "$DIR/logs" "$DIR/pids" "$DIR/bootstrap"
  mkdir -p "$DIR/config" "$DIR/data" "$DIR/logs" "$DIR/pids"
  trap 'say "start failed: stopping what started"; stop_nodes KILL $(nodes)' EXIT

  local ports voters="" p=() c=()
  read -r -a ports <<< "$(free_ports $((2 * n)))"
  for i in $(seq 1 "$n"); do
    p[i]=${ports[2 * (i - 1)]}; c[i]=${ports[2 * (i - 1) + 1]}
    voters="$voters,$i@127.0.0.1:${c[i]}"
  done
  voters=${voters#,}
  write_log4j
  for i in $(seq 1 "$n"); do write_config "$i" "$n" "$voters" "${p[i]}" "${c[i]}"; done

  # One cluster id for all; formatting writes each node's meta.properties and the bootstrap metadata.
  # (An id starting with '-' is valid to Kafka but the tool's argument parser reads it as an
  # option: "--cluster-id: expected one argument", one start in 64. Draw again.)
  local cid=-
  while [ "${cid:0:1}" = - ]; do cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); done
  local fpids=()
  for i in $(seq 1 "$n"); do
    java_cmd 128m
    "${JAVA_CMD[@]}" kafka.tools.StorageTool format --cluster-id "$cid" \
      --config "$DIR/config/node-$i.properties" > "$DIR/logs/format-$i.log" 2>&1 &
    fpids+=($!)
  done
  for i in "${!fpids[@]}"; do
    wait "${fpids[i]}" || { cat "$DIR/logs/format-$((i + 1)).log" >&2; die "formatting node $((i + 1)) failed"; }
  done
  local t_fmt; t_fmt=$(now_ms)

  for i in $(seq 1 "$n"); do launch "$i"; done
  local deadline=$(( $(now_ms) + START_TIMEOUT * 1000 ))
  for i in $(seq 1 "$n"); do wait_started "$i" "$deadline"; done
  local t_up; t_up=$(now_ms)

  local boot rf=$(( n < 3 ? n : 3 )); boot=$(bootstrap_list)
  # Creating a topic needs rf registered brokers: the controller may still be counting them.
  until "$BIN" broker topics --brokers "$boot" --create --replication "$rf" > "$DIR/logs/topics.json" \
      2> "$DIR/logs/topics.err"; do
    [ "$(now_ms)" -lt "$deadline" ] || { cat "$DIR/logs/topics.err" >&2; die "topics not created"; }
    sleep 0.5
  done
  printf '%s\n' "$boot" > "$DIR/bootstrap.tmp" && mv "$DIR/bootstrap.tmp" "$DIR/bootstrap"
  trap - EXIT
  say "$n node(s) of Kafka $VERSION up in $(( $(now_ms) - t0 )) ms (format $(( t_fmt - t0 )) ms, nodes serving +$(( t_up - t_fmt )) ms, topics +$(( $(now_ms) - t_up )) ms); logs in $DIR/logs"
  echo "$boot"
}

cmd_stop() {
  local t0 list sig=TERM; t0=$(now_ms); list=$(nodes)
  [ -n "$list" ] || { say "no cluster in $DIR"; return 0; }
  [ "$KILL" = 1 ] && sig=KILL
  # shellcheck disable=SC2086
  stop_nodes "$sig" $list
  rm -f "$DIR/bootstrap"
  say "stopped in $(( $(now_ms) - t0 )) ms"
}

cmd_status() {
  local i pid ok=0
  [ -n "$(nodes)" ] || { echo "no cluster in $DIR"; return 1; }
  for i in $(nodes); do
    pid=$(pid_of "$i")
    if alive "$pid"; then echo "node $i up pid $pid $(sed -n 's|^advertised.listeners=PLAINTEXT://||p' "$DIR/config/node-$i.properties")"
    else echo "node $i down"; ok=1; fi
  done
  return $ok
}

# ---- arguments -----------------------------------------------------------------------------------
[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in -h|--help|help) usage 0 ;; esac
N=""; DIR=""; NODE=""; KILL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --brokers) N="${2:?}"; shift 2 ;;
    --dir) DIR="${2:?}"; shift 2 ;;
    --node) NODE="${2:?}"; shift 2 ;;
    --kill) KILL=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "kafka.sh: unknown argument $1" >&2; usage ;;
  esac
done
need_dir() { [ -n "$DIR" ] || { echo "kafka.sh: $cmd needs --dir DIR" >&2; exit 2; }; }
need_node() {
  [[ "$NODE" =~ ^[0-9]+$ ]] && [ -f "$DIR/config/node-$NODE.properties" ] ||
    { echo "kafka.sh: $cmd needs --node I of a node in $DIR" >&2; exit 2; }
}
case "$cmd" in
  fetch) fetch; echo "$LIB" ;;
  start)
    need_dir
    [[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 9 ] ||
      { echo "kafka.sh: start needs --brokers N (1..9)" >&2; exit 2; }
    cmd_start "$N" ;;
  stop) need_dir; cmd_stop ;;
  status) need_dir; cmd_status ;;
  node-stop)
    need_dir; need_node
    if [ "$KILL" = 1 ]; then stop_nodes KILL "$NODE"; else stop_nodes TERM "$NODE"; fi ;;
  node-start)
    need_dir; need_node; DIR="$(cd "$DIR" && pwd)"
    launch "$NODE"; wait_started "$NODE" $(( $(now_ms) + START_TIMEOUT * 1000 )) ;;
  *) usage ;;
esac
