# tests/chaos/netns.sh — sourced by storm.sh: edge eB as a region of its own, in a network
# namespace (`ip netns`) joined to this one by a veth pair on a bridge, as 82_regions.sh separates
# regions, and the storm's network faults on that link. Needs root, ip (iproute2) and iptables.
#
#   ns_setup PORT...     the bridge, the namespace (eB's address: $NS_IP) and two relays
#                        (tests/integration/helpers/netproxy.py): here NS_NET.1:PORT -> 127.0.0.1:PORT
#                        for each PORT (the brokers, the replicator's HTTP), and in the namespace
#                        127.0.0.1:PORT -> NS_NET.1:PORT with NS_BASE_DELAY ms one way, so the edge
#                        reaches the primary region at the addresses the brokers advertise
#   ns_run CMD...        runs CMD in the namespace
#   ns_partition S       the link down for S s, then up; asserts eB was unreachable meanwhile and
#                        answers across the link again afterwards
#   ns_loss PCT S        iptables `statistic` drops PCT % of the packets each way for S s; asserts
#                        packets were dropped (the count goes to NS_DROPPED)
#   ns_delay MS S        the namespace relay's delay raised to MS ms (SIGHUP, --delay-file: open
#                        connections stay open) for S s, then back; asserts a request across the
#                        link took at least 2 x MS meanwhile (the slowest goes to NS_DELAY_MAX)
#   ns_cleanup           kills what runs in the namespace, deletes it, the veth, the bridge and
#                        the loss rules here; idempotent (the EXIT trap calls it, also on failure)
#   ns_check_gone        asserts nothing of this run's network is left
# CHAOS_NET_DELAY_MS sets the link's delay outside the delay faults (NS_BASE_DELAY, default 20).
# The kernel has no netem qdisc (netproxy.py says so), hence the relay for delay and iptables for
# loss; a partition is real: the veth is down.
NS_TAG="sc$(( $$ % 10000 ))"
NS_BR="${NS_TAG}br"
NS_NS="$NS_TAG-eB"
NS_VETH="$NS_TAG-veB"
NS_BASE_DELAY=${CHAOS_NET_DELAY_MS:-20}
NS_DROPPED=0; NS_PART_S=0; NS_DELAY_MAX=0
# a /24 no interface here uses (82_regions.sh draws from 10.64-127.x; this from 10.192-223.x)
ns_pick_net() {
  local i a b used
  used=$(ip -4 addr show)  # read once: `ip | grep -q` under pipefail can fail on a match (SIGPIPE)
  for i in $(seq 0 63); do
    a=$(( 192 + ($$ + i) % 32 )); b=$(( ($$ / 32 + i) % 250 + 1 ))
    grep -q "inet 10\.$a\.$b\." <<< "$used" || { echo "10.$a.$b"; return 0; }
  done
  return 1
}
ns_loss_rule() { # the rule here that drops what this namespace receives from eB (P: probability)
  echo INPUT -i "$NS_BR" -s "$NS_IP" -m statistic --mode random --probability "$1" -j DROP
}
ns_run() { ip netns exec "$NS_NS" "$@"; }  # not for `&`: $! would name a subshell, not CMD

ns_setup() {
  local p maps_root=() maps_ns=()
  NS_NET=$(ns_pick_net) || fail "no free 10.x.y.0/24 for the storm's bridge"
  NS_IP="$NS_NET.2"
  for p in "$@"; do maps_root+=("$NS_NET.1:$p=127.0.0.1:$p"); maps_ns+=("127.0.0.1:$p=$NS_NET.1:$p"); done
  ip link add "$NS_BR" type bridge
  ip addr add "$NS_NET.1/24" dev "$NS_BR"
  ip link set "$NS_BR" up
  ip netns add "$NS_NS"
  ip link add "$NS_VETH" type veth peer name eth0 netns "$NS_NS"
  ip link set "$NS_VETH" master "$NS_BR" up
  ip -n "$NS_NS" addr add "$NS_IP/24" dev eth0
  ip -n "$NS_NS" link set eth0 up
  ip -n "$NS_NS" link set lo up
  python3 "$SH_ROOT/tests/integration/helpers/netproxy.py" "${maps_root[@]}" > "$SH_TMP/relay-root.out" 2>&1 &
  WK_PIDS+=("$!")
  echo "$NS_BASE_DELAY" > "$SH_TMP/relay-eB.delay"
  # `ip netns exec` execs the relay: $! is its pid (SIGHUP goes to it)
  ip netns exec "$NS_NS" python3 "$SH_ROOT/tests/integration/helpers/netproxy.py" --delay-ms "$NS_BASE_DELAY" \
    --delay-file "$SH_TMP/relay-eB.delay" "${maps_ns[@]}" > "$SH_TMP/relay-eB.out" 2>&1 &
  NS_RELAY_PID=$!
  WK_PIDS+=("$NS_RELAY_PID")
  wait_for 60 grep -q ready "$SH_TMP/relay-root.out"
  wait_for 60 grep -q ready "$SH_TMP/relay-eB.out"
}

ns_partition() {
  local secs="$1" end
  end=$(( $(date +%s%3N) + $(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }') ))
  ip link set "$NS_VETH" down
  # the cut is real: from here, eB's address does not answer (at most 2 s per try)
  if curl -fsS --max-time 2 -o /dev/null "http://$NS_IP:$EPORT_eB/health" 2> /dev/null; then
    ip link set "$NS_VETH" up; fail "edge eB answered across its link while it was down"
  fi
  while [ "$(date +%s%3N)" -lt "$end" ]; do sleep 0.2; done
  ip link set "$NS_VETH" up
  wait_for 60 curl -fsS --max-time 5 -o /dev/null "http://$NS_IP:$EPORT_eB/health"
  NS_PART_S=$(awk -v a="$NS_PART_S" -v s="$secs" 'BEGIN { print a + s }')
}

ns_drops() { # packets the loss rules dropped so far: into the namespace, out of it
  local in out
  in=$(ns_run iptables -L INPUT -v -n -x | awk '$3 == "DROP" {s += $1} END {print s + 0}')
  out=$(iptables -L INPUT -v -n -x | awk -v br="$NS_BR" -v ip="$NS_IP" '$3 == "DROP" && $6 == br && $8 == ip {s += $1} END {print s + 0}')
  echo "$in $out"
}
ns_loss() {
  local pct="$1" secs="$2" p din dout
  p=$(awk -v x="$pct" 'BEGIN { printf "%.4f", x / 100 }')
  ns_run iptables -A INPUT -i eth0 -m statistic --mode random --probability "$p" -j DROP
  # shellcheck disable=SC2046
  iptables -A $(ns_loss_rule "$p")
  sleep "$secs"
  read -r din dout < <(ns_drops)
  ns_run iptables -D INPUT -i eth0 -m statistic --mode random --probability "$p" -j DROP
  # shellcheck disable=SC2046
  iptables -D $(ns_loss_rule "$p")
  log "loss over: $din packets dropped into eB's namespace, $dout out of it"
  [ $(( din + dout )) -gt 0 ] || fail "the loss rules dropped no packet on eB's link in $secs s"
  NS_DROPPED=$(( NS_DROPPED + din + dout ))
}

# the relay confirms each delay it takes on with a "delay N ms" line
ns_relay_changes() { grep -c '^delay ' "$SH_TMP/relay-eB.out" || true; }
ns_relay_changed() { [ "$(ns_relay_changes)" -gt "$1" ]; }
ns_delay() {
  local ms="$1" secs="$2" t n
  n=$(ns_relay_changes)
  echo "$ms" > "$SH_TMP/relay-eB.delay"; kill -HUP "$NS_RELAY_PID"
  wait_for 30 ns_relay_changed "$n"
  # a request from eB's namespace to the replicator crosses the relay twice: at least 2 x MS
  t=$(ns_run curl -s -o /dev/null --max-time 60 -w '%{time_total}' "http://127.0.0.1:${RP_HTTP#*:}/health") ||
    fail "no answer across eB's link with $ms ms of delay"
  log "round trip across eB's link: $t s"
  awk -v t="$t" -v ms="$ms" 'BEGIN { exit !(t * 1000 >= 2 * ms) }' ||
    fail "a round trip across eB's link took $t s with $ms ms of delay each way"
  NS_DELAY_MAX=$(( ms > NS_DELAY_MAX ? ms : NS_DELAY_MAX ))
  sleep "$secs"
  n=$(ns_relay_changes)
  echo "$NS_BASE_DELAY" > "$SH_TMP/relay-eB.delay"; kill -HUP "$NS_RELAY_PID"
  wait_for 30 ns_relay_changed "$n"
}

ns_cleanup() { # never fails: the EXIT trap goes on to stop everything else
  ip netns pids "$NS_NS" 2> /dev/null | xargs -r kill -9 2> /dev/null || true
  ip netns del "$NS_NS" 2> /dev/null || true
  ip link del "$NS_VETH" 2> /dev/null || true
  ip link del "$NS_BR" 2> /dev/null || true
  # every loss rule of this run here (the namespace's went with it), whatever its probability
  # shellcheck disable=SC2086
  iptables -S INPUT 2> /dev/null | grep -- "-i $NS_BR " | sed 's/^-A //' |
    while read -r rule; do iptables -D $rule 2> /dev/null || true; done || true
}

ns_check_gone() {
  check "no namespace of this run is left" bash -c "! ip netns list | grep -qE '^$NS_NS( |\$)'"
  check "no bridge or veth of this run is left" bash -c "! ip link show | grep -qE '$NS_BR|$NS_VETH'"
  check "no loss rule of this run is left" bash -c "! iptables -S INPUT | grep -q -- '-i $NS_BR '"
}
