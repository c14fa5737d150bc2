#!/usr/bin/env bash
# Regions that are really apart: the primary region (a real Apache Kafka node, PostgreSQL, a worker,
# the replicator) in this network namespace; a secondary region (all shards) and two edge caches
# (edge-eu 0-3, edge-ap 4-7, --upstream to the region) each in its own namespace (`ip netns`),
# joined by veth pairs on a bridge. Every byte between a namespace and the primary region crosses
# a delay relay (tests/integration/helpers/netproxy.py: this kernel has no netem qdisc): 20 ms
# one way to the region, 40 ms to edge-eu, 90 ms to edge-ap. Packet loss is real: iptables'
# `statistic` match drops LOSS_PCT % of the packets each namespace receives on its veth and of those
# the primary region receives from each namespace (the kernel's TCP retransmits them). Asserts:
#   - all three bootstrap across the link and converge with the primary (`soundhash verify` run
#     from the primary region against their namespace addresses);
#   - under ingest, with that delay and loss, delta created (replicator) -> applied (edge) lag p99
#     stays within 1 s on every node (the edges' soundhash_edge_apply_lag_seconds histogram, the
#     quantile interpolated within its bucket as Prometheus' histogram_quantile does, over >= 100
#     deltas per node: a stream of LAG_TRACKS short uploads, one commit each, so that p99 is a
#     percentile and not the maximum of a handful), and packets were really dropped on every link
#     (iptables counters, TCP retransmits in each namespace);
#   - edge-ap cut off (its veth down: a real partition) keeps answering matches from its shards
#     while uploads and a delete go on; the others converge; after the link heals edge-ap
#     converges too (verify passes) and the deleted track is gone from it;
#   - every namespace, veth, bridge and process is gone at the end, also on failure.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
command -v ip > /dev/null || fail "ip (iproute2) not installed (ops/install-deps.sh installs it)"
command -v iptables > /dev/null || fail "iptables not installed (ops/install-deps.sh installs it)"
[ "$(id -u)" = 0 ] || fail "network namespaces need root"

# ---- names unique to this run; cleanup of everything, also on failure ----------------------------
TAG="sh$(( $$ % 10000 ))"
BR="${TAG}br"
NET="10.$(( 64 + $$ % 64 )).$(( $$ / 64 % 250 + 1 ))"
NODES=(region eu ap)
declare -A IP=([region]="$NET.2" [eu]="$NET.3" [ap]="$NET.4")
declare -A DELAY=([region]=20 [eu]=40 [ap]=90)
declare -A SHARDS=([region]=all [eu]=0-3 [ap]=4-7)
LOSS_PCT=${SH_REGION_LOSS_PCT:-2}   # % of packets dropped in each direction of every link
LOSS_P=$(awk -v p="$LOSS_PCT" 'BEGIN { printf "%.4f", p / 100 }')
# drops what the primary region receives from namespace $1 (its bridge address is ours alone)
root_loss_rule() { echo INPUT -i "$BR" -s "${IP[$1]}" -m statistic --mode random --probability "$LOSS_P" -j DROP; }
KAFKA_DIR="$SH_TMP/kafka"
net_cleanup() {
  for n in "${NODES[@]}"; do
    ip netns pids "$TAG-$n" 2> /dev/null | xargs -r kill -9 2> /dev/null || true
    ip netns del "$TAG-$n" 2> /dev/null || true
    ip link del "$TAG-v$n" 2> /dev/null || true
  done
  ip link del "$BR" 2> /dev/null || true
  # shellcheck disable=SC2046
  for n in "${NODES[@]}"; do while iptables -D $(root_loss_rule "$n") 2> /dev/null; do :; done; done
  [ -d "$KAFKA_DIR" ] && "$SH_ROOT/ops/kafka.sh" stop --dir "$KAFKA_DIR" --kill > /dev/null 2>&1 || true
  wk_cleanup
}
trap net_cleanup EXIT

# ---- the primary region: real Kafka (one node), PostgreSQL, a worker, the replicator -------------
SOUNDHASH_BIN="$SH_BIN" "$SH_ROOT/ops/kafka.sh" start --brokers 1 --dir "$KAFKA_DIR" > /dev/null 2> "$SH_TMP/kafka.err" ||
  { cat "$SH_TMP/kafka.err" >&2; fail "ops/kafka.sh start"; }
BOOT=$(cat "$KAFKA_DIR/bootstrap")
pg_migrate
mapfile -t tracks < <(ls "$corpus"/*.ogg | head -n 8)
for f in "${tracks[@]}"; do cp "$f" "$MEDIA/"; done
first=("${tracks[@]:0:5}")
wk_start w1 --threads 2 --worker-id it-regions
wk_publish "${first[@]/#$corpus/$MEDIA}"
wait_for 120 wk_tracks_active 5
rp_start rp

# ---- the bridge, one namespace per remote node, relays with each link's delay --------------------
ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
# Everything a remote node needs from the primary region: the broker and the replicator's HTTP.
PORTS=("${BOOT##*:}" "$RP_PORT")
maps_root=() ; for p in "${PORTS[@]}"; do maps_root+=("$NET.1:$p=127.0.0.1:$p"); done
python3 "$SH_ROOT/tests/integration/helpers/netproxy.py" "${maps_root[@]}" > "$SH_TMP/relay-root.out" 2>&1 &
WK_PIDS+=("$!")
wait_for 60 grep -q ready "$SH_TMP/relay-root.out"
for n in "${NODES[@]}"; do
  ns="$TAG-$n"
  ip netns add "$ns"
  ip link add "$TAG-v$n" type veth peer name eth0 netns "$ns"
  ip link set "$TAG-v$n" master "$BR" up
  ip -n "$ns" addr add "${IP[$n]}/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip netns exec "$ns" iptables -A INPUT -i eth0 -m statistic --mode random --probability "$LOSS_P" -j DROP
  # shellcheck disable=SC2046
  iptables -A $(root_loss_rule "$n")
  # Inside the namespace the primary region's services answer at the addresses they advertise
  # (127.0.0.1:port), through a relay that adds this link's one-way delay.
  maps=() ; for p in "${PORTS[@]}"; do maps+=("127.0.0.1:$p=$NET.1:$p"); done
  ip netns exec "$ns" python3 "$SH_ROOT/tests/integration/helpers/netproxy.py" \
    --delay-ms "${DELAY[$n]}" "${maps[@]}" > "$SH_TMP/relay-$n.out" 2>&1 &
  WK_PIDS+=("$!")
  wait_for 60 grep -q ready "$SH_TMP/relay-$n.out"
done

node_url() { echo "http://${IP[$1]}:8080"; }
start_node() { # start_node NAME [ARGS...]
  local n="$1"; shift
  ip netns exec "$TAG-$n" "$SH_BIN" edge --brokers "$BOOT" --listen 0.0.0.0:8080 \
    --data "$SH_TMP/data-$n" --shards "${SHARDS[$n]}" --region "$n" \
    --snapshot-source "http://127.0.0.1:$RP_PORT" --lag-threshold-ms 3000 "$@" \
    > /dev/null 2> "$SH_TMP/edge-$n.log" &
  WK_PIDS+=("$!")
  wait_for 60 grep -q 'event=http_listening' "$SH_TMP/edge-$n.log"
}
start_node region
start_node eu --upstream "$(node_url region)"
start_node ap --upstream "$(node_url region)"
EDGES=(); for n in "${NODES[@]}"; do EDGES+=(--edge "$(node_url "$n")"); done
for n in "${NODES[@]}"; do
  wait_for 60 curl -fsS --max-time 2 "$(node_url "$n")/health"   # across the bridge
done

# the delay is real: a request from here to edge-ap's namespace is direct, but the edge's own reads
# of the broker cross its relay (checked below by the lag histogram's floor)
check "all three nodes bootstrap across their links and equal the primary" \
  "$SH_BIN" verify --dsn "$SH_DSN" --wait 90 "${EDGES[@]}"

# ---- lag under ingest ----------------------------------------------------------------------------
more=("${tracks[@]:5:2}")
wk_publish "${more[@]/#$corpus/$MEDIA}"
wait_for 120 wk_tracks_active 7
check "they converge after more uploads" "$SH_BIN" verify --dsn "$SH_DSN" --wait 60 "${EDGES[@]}"
# A stream of short uploads, one commit each: every commit gives each node a delta per shard (the
# replicator's --heartbeat-ms 200 seals idle shards too), so each node sees >= 100 deltas.
LAG_TRACKS=${SH_REGION_LAG_TRACKS:-40}
for i in $(seq 1 "$LAG_TRACKS"); do
  sox -n -r 22050 -c 1 "$MEDIA/lag$i.wav" synth 6 pinknoise synth 6 sine $((200 + i * 37)) remix - \
    2> /dev/null || fail "sox synth lag$i.wav"
done
for i in $(seq 1 "$LAG_TRACKS"); do wk_publish "$MEDIA/lag$i.wav"; sleep 0.25; done
ACTIVE=$((7 + LAG_TRACKS))
wait_for 180 wk_tracks_active "$ACTIVE"
check "they converge after the stream of uploads" "$SH_BIN" verify --dsn "$SH_DSN" --wait 60 "${EDGES[@]}"
lag_q_ms() { # lag_q_ms NODE Q: quantile Q (ms) of NODE's soundhash_edge_apply_lag_seconds,
             # interpolated linearly within its bucket (Prometheus' histogram_quantile); then the count
  curl -fsS "$(node_url "$1")/metrics" | awk -v q="$2" '
    /^soundhash_edge_apply_lag_seconds_bucket/ { match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      n++; les[n] = (le == "+Inf" ? 1e9 : le + 0); c[n] = $2 }
    END { total = c[n]; rank = q * total; lo = 0; below = 0
          for (i = 1; i <= n; i++) { if (c[i] >= rank) break; lo = les[i]; below = c[i] }
          if (i > n || les[i] >= 1e9) v = 1e9
          else v = lo + (les[i] - lo) * (c[i] > below ? (rank - below) / (c[i] - below) : 1)
          printf "%.0f %d\n", v * 1000, total }'
}
drops() { # drops NODE: packets dropped so far on NODE's link, into the namespace and out of it
  local in out
  in=$(ip netns exec "$TAG-$1" iptables -L INPUT -v -n -x | awk '$3 == "DROP" {s += $1} END {print s + 0}')
  out=$(iptables -L INPUT -v -n -x | awk -v ip="${IP[$1]}" '$3 == "DROP" && $6 == "'"$BR"'" && $8 == ip {s += $1} END {print s + 0}')
  echo "$in $out"
}
retrans() { ip netns exec "$TAG-$1" awk '$1 == "Tcp:" && !h { for (i = 1; i <= NF; i++) f[$i] = i; h = 1; next }
                                         $1 == "Tcp:" { print $f["RetransSegs"] }' /proc/net/snmp; }
for n in "${NODES[@]}"; do
  read -r p99 cnt < <(lag_q_ms "$n" 0.99); read -r p50 _ < <(lag_q_ms "$n" 0.5); read -r din dout < <(drops "$n")
  echo "delta created -> applied lag on $n (one-way delay ${DELAY[$n]} ms, loss $LOSS_PCT % each way, $cnt deltas): p50 $p50 ms, p99 $p99 ms;" \
       "packets dropped: $din into the namespace, $dout out of it; TCP segments retransmitted in it: $(retrans "$n")"
  check "packets were dropped both ways on $n's link" test "$din" -gt 0 -a "$dout" -gt 0
  check "$n applied >= 100 deltas (a p99 over enough samples)" test "$cnt" -ge 100
  check "lag p99 on $n within 1 s under delay and loss" awk -v v="$p99" 'BEGIN { exit !(v <= 1000) }'
done
check "edge-ap's lag reflects its 90 ms link (p50 bucket above 90 ms)" bash -c "
  curl -fsS '$(node_url ap)/metrics' | awk '/^soundhash_edge_apply_lag_seconds_bucket/ {
    match(\$0, /le=\"[^\"]*\"/); le = substr(\$0, RSTART + 4, RLENGTH - 5); n++; les[n] = le; c[n] = \$2 }
    END { for (i = 1; i <= n; i++) if (c[i] >= 0.5 * c[n]) exit !(les[i] == \"+Inf\" || les[i] > 0.09) }'"

# ---- a partition: edge-ap cut off, keeps answering; heals and converges --------------------------
# a clip of a track edge-ap holds (shards 4-7): the region's answer names each clip's shard
clip_track=""
for f in "${tracks[@]:1:6}"; do
  sox "$f" -r 22050 -c 1 "$SH_TMP/clip.wav" trim 20 10 2> /dev/null || fail "sox clip of $f"
  curl -fsS --max-time 10 --data-binary @"$SH_TMP/clip.wav" "$(node_url region)/v1/match" > "$SH_TMP/r.json" ||
    fail "the region did not answer"
  if jq -e --arg t "$(basename "$f" .ogg)" '.match.track_id == $t and .match.shard >= 4' "$SH_TMP/r.json" > /dev/null; then
    clip_track=$(basename "$f" .ogg); break
  fi
done
[ -n "$clip_track" ] || fail "no corpus track of shards 4-7 among tracks 2-7 (or the region missed it)"
curl -fsS --max-time 10 --data-binary @"$SH_TMP/clip.wav" "$(node_url ap)/v1/match" > "$SH_TMP/ap.json" ||
  fail "edge-ap did not answer"
check "edge-ap identifies $clip_track from its own shard before the cut" \
  jq -e --arg t "$clip_track" '.match.track_id == $t and .match.node == "ap"' "$SH_TMP/ap.json"

ip link set "$TAG-vap" down
victim=$(basename "${tracks[0]}" .ogg)
"$SH_BIN" ingest delete --brokers "$BOOT" --track-id "$victim" > /dev/null 2>&1 || fail "ingest delete"
wk_publish "${tracks[7]/#$corpus/$MEDIA}"
gone_and_added() {
  [ "$(pg_sql "SELECT status FROM tracks WHERE external_id = '$victim'")" = deleted ] && wk_tracks_active "$ACTIVE"
}
wait_for 120 gone_and_added
check "the region and edge-eu converge while edge-ap is cut off" \
  "$SH_BIN" verify --dsn "$SH_DSN" --wait 60 --edge "$(node_url region)" --edge "$(node_url eu)"
ip netns exec "$TAG-ap" curl -fsS --max-time 10 --data-binary @"$SH_TMP/clip.wav" \
  http://127.0.0.1:8080/v1/match > "$SH_TMP/cut.json" || fail "edge-ap did not answer while cut off"
check "cut off, edge-ap still answers from its shards ($clip_track)" \
  jq -e --arg t "$clip_track" '.match.track_id == $t' "$SH_TMP/cut.json"
expect_exit 1 "$SH_BIN" verify --dsn "$SH_DSN" --wait 3 --edge "$(node_url ap)"
check "the partition is real both ways: verify cannot reach edge-ap from the primary region" \
  grep -q "$(node_url ap)" "$SH_TMP/err"

ip link set "$TAG-vap" up
check "after the link heals edge-ap converges (verify of all three passes)" \
  "$SH_BIN" verify --dsn "$SH_DSN" --wait 90 "${EDGES[@]}"
check "the track deleted during the cut matches nowhere on edge-ap" bash -c "
  sox '${tracks[0]}' -r 22050 -c 1 '$SH_TMP/victim.wav' trim 20 10 2> /dev/null &&
  curl -fsS --data-binary @'$SH_TMP/victim.wav' '$(node_url ap)/v1/match' |
    jq -e --arg t '$victim' '.match.track_id != \$t'"

# ---- nothing left behind -------------------------------------------------------------------------
net_cleanup
trap - EXIT
check "no namespace of this run is left" bash -c "! ip netns list | grep -q '^$TAG-'"
check "no bridge or veth of this run is left" bash -c "! ip link show | grep -q '$TAG'"
check "no loss rule of this run is left" bash -c "! iptables -S INPUT | grep -q -- '-i $BR '"
