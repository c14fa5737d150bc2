# Sourceable helpers for the edge integration tests (after lib.sh, pg.sh and worker.sh, whose EXIT
# trap stops everything listed in WK_PIDS, the broker and the database).
#
#   ed_setup                 starts `soundhash broker` (sets BOOT), migrates the database, builds
#                            tests/integration/helpers/repl_tool.c into $RT
#   rp_start NAME [ARGS...]  starts the replicator (log $SH_TMP/NAME.log; RP_PID, RP_PORT); waits
#                            until it runs (its HTTP port: --http 127.0.0.1:0 unless ARGS set one)
#   rp_stop [SIG]            signals the replicator (default TERM) and waits for it
#   ed_start NAME [--asan] ARGS...   starts an edge (log $SH_TMP/NAME.log; ED_PID_NAME, ED_PORT_NAME)
#   ed_stop NAME SIG         signals an edge and waits for it; sets ED_RC
#   ed_converged PORT        every shard the edge holds is loaded and has the primary's checksum
#   ed_metric NAME PORT      one sample of the edge's /metrics
#                            (PORT: an edge on 127.0.0.1, or HOST:PORT, e.g. one in a namespace)
#   free_port                a TCP port nobody listens on now
: "${SH_BIN:?}" "${SH_TMP:?}" "${SH_ROOT:?}"
RT="$SH_TMP/repl_tool"

ed_setup() {
  "$SH_BIN" broker --bootstrap-file "$SH_TMP/boot" > /dev/null 2> "$SH_TMP/broker.log" &
  BROKER_PID=$!
  wait_for 20 test -s "$SH_TMP/boot"
  BOOT=$(cat "$SH_TMP/boot")
  pg_migrate
  local pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
  # shellcheck disable=SC2046
  cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" \
    -I"$SH_ROOT/schemas" $(pkg-config --cflags $pk) \
    -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" "$(dirname "$SH_BIN")/libsoundhash.a" \
    $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"
}

rp_start() {
  local name="$1"; shift
  local http=(--http 127.0.0.1:0)
  [[ " $* " == *" --http "* ]] && http=()
  "$SH_BIN" replicator --brokers "$BOOT" --dsn "$SH_DSN" "${http[@]}" --heartbeat-ms 200 "$@" \
    > /dev/null 2> "$SH_TMP/$name.log" &
  RP_PID=$!
  WK_PIDS+=("$RP_PID")
  wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/$name.log"
  RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/$name.log" | head -n1)
}
rp_stop() { kill -s "${1:-TERM}" "$RP_PID"; set +e; wait "$RP_PID"; set -e; }

ed_start() {
  local name="$1" bin="$SH_BIN"; shift
  if [ "${1:-}" = "--asan" ]; then bin="$SH_BIN_ASAN"; shift; fi
  # a restart logs afresh (its port is read from the log); the previous run's log is kept aside
  [ -f "$SH_TMP/$name.log" ] && mv "$SH_TMP/$name.log" "$SH_TMP/$name.log.$(date +%s%N)"
  "$bin" edge --brokers "$BOOT" --listen 127.0.0.1:0 --data "$SH_TMP/data-$name" \
    --lag-threshold-ms 3000 "$@" > /dev/null 2> "$SH_TMP/$name.log" &
  local pid=$!
  WK_PIDS+=("$pid")
  printf -v "ED_PID_$name" '%s' "$pid"
  wait_for 30 grep -q 'event=http_listening' "$SH_TMP/$name.log"
  printf -v "ED_PORT_$name" '%s' "$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/$name.log" | head -n1)"
}
ed_stop() {
  local pidvar="ED_PID_$1"
  kill -s "$2" "${!pidvar}"
  set +e; wait "${!pidvar}"; ED_RC=$?; set -e
}

ed_addr() { if [[ "$1" == *:* ]]; then echo "$1"; else echo "127.0.0.1:$1"; fi; }
ed_converged() {
  curl -fsS "$(ed_addr "$1")/v1/shards" > "$SH_TMP/conv-shards.json" || return 1
  # a shard waiting for its snapshot must not pass for an empty shard of the primary
  jq -e 'all(.shards[]; .loaded and .position >= 0)' "$SH_TMP/conv-shards.json" > /dev/null || return 1
  "$RT" sums "$SH_DSN" "$(jq .nshards "$SH_TMP/conv-shards.json")" > "$SH_TMP/conv-sums.json" || return 1
  local got want
  got=$(jq -r '.shards[] | "\(.shard) \(.checksum.sum) \(.checksum.tracks) \(.checksum.postings)"' "$SH_TMP/conv-shards.json")
  want=$(jq -r --argjson held "$(jq '[.shards[].shard]' "$SH_TMP/conv-shards.json")" \
    'select(.shard as $s | $held | index($s)) | "\(.shard) \(.sum) \(.tracks) \(.postings)"' "$SH_TMP/conv-sums.json")
  [ -n "$got" ] && [ "$got" = "$want" ]
}

ed_metric() { curl -fsS "$(ed_addr "$2")/metrics" | awk -v n="$1" '$1 == n {print $2}'; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
