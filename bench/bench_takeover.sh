#!/usr/bin/env bash
# Takeover drill with figures (`make bench-takeover`): the primary region is lost while ingest runs
# and the secondary region takes over with ops/takeover.sh. Every process on this machine:
# `soundhash broker`, a primary PostgreSQL (A), its follower (B, `db start --follow`), a worker on
# A, the replicator reading B, an edge holding all 8 shards, a client matching clips of 6 tracks
# on the edge the whole time, and an ingest loop (every dev-corpus track, then re-uploads and a
# few deletes, one event every ~0.2 s).
#
#   bench/bench_takeover.sh [BIN]          (default build/soundhash)
#
# After SH_BENCH_TAKEOVER_INGEST_S (default 20) seconds of ingest, A's postmaster is SIGKILLed (no
# partition first: whatever the follower had not replayed is lost from PostgreSQL), the worker
# too; the drill then runs ops/takeover.sh (promote B, fence A, rewind the group) and starts a
# worker on B. Printed:
#   rto_ms               kill → B accepts a write (the script measures it; target <= 30 s)
#   commits_lost_by_pg   A's last change seq (read after the drill from A restarted, fenced) − B's at
#                        promotion: what asynchronous replication lost
#   uploads_lost         tracks whose state in B is not their newest acknowledged event, once the
#                        replay is done (target 0)
#   lag p50/p99/max      follower replay lag before the kill, two ways: per change, commit on A →
#                        visible on B (B polled every 20 ms: an upper bound by one poll), and
#                        PostgreSQL's own pg_stat_replication.replay_lag sampled (target p99 < 1 s)
#   match requests       answered / failed / wrong during the whole drill (target 0 failed)
# It uses the integration tests' helpers (tests/lib) to start the processes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export SH_ROOT="$ROOT"
export SH_BIN; SH_BIN="$(realpath "${1:-$ROOT/build/soundhash}")"
export SH_BIN_ASAN="$SH_BIN"
export SH_DATA_DIR="${SOUNDHASH_DATA_DIR:-$HOME/.cache/soundhash-data}"
INGEST_S="${SH_BENCH_TAKEOVER_INGEST_S:-20}"
export SH_TMP; SH_TMP=$(mktemp -d /tmp/sh-bench-takeover.XXXXXX)
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/worker.sh"
. "$ROOT/tests/lib/edge.sh"
PGB="$SH_TMP/pgb"
finish() {
  touch "$SH_TMP/ingest.stop" "$SH_TMP/client.stop"
  kill "${SAMPLER_B:-}" "${SAMPLER_A:-}" 2> /dev/null || true
  wk_cleanup
  "$SH_BIN" db stop --dir "$PGB" > /dev/null 2>&1 || true
  [ "${SH_BENCH_KEEP:-0}" = 1 ] || rm -rf "$SH_TMP"
}
trap finish EXIT
say() { printf '\n== %s\n' "$*"; }
now_ms() { date +%s%3N; }
seq_of() { psql "$1" -X -Atq -c 'SELECT last_seq FROM change_counter' 2> /dev/null; }
corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"

wk_setup > /dev/null
pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
# shellcheck disable=SC2046,SC2086
cc -std=c17 -D_GNU_SOURCE -O1 -I"$ROOT/core/engine" -I"$ROOT/core/runtime" -I"$ROOT/schemas" \
  $(pkg-config --cflags $pk) -o "$RT" "$ROOT/tests/integration/helpers/repl_tool.c" \
  "$(dirname "$SH_BIN")/libsoundhash.a" $(pkg-config --libs $pk) -lm -pthread
DSN_A=$SH_DSN
mapfile -t src < <(ls "$corpus"/*.ogg)
: > "$SH_TMP/clips6"
for i in "${!src[@]}"; do
  id=$(basename "${src[$i]}" .ogg)
  sox -G "${src[$i]}" -c 1 -r 16000 "$MEDIA/$id.flac" trim 5 20
  if [ "$i" -lt 6 ]; then
    sox "$MEDIA/$id.flac" "$SH_TMP/cut-$id.wav" trim 3 8
    sox -n -r 16000 -c 1 "$SH_TMP/noise-$id.wav" synth 8 whitenoise vol 0.05
    sox -m "$SH_TMP/cut-$id.wav" "$SH_TMP/noise-$id.wav" "$SH_TMP/clip-$id.wav"
    echo "$id $SH_TMP/clip-$id.wav" >> "$SH_TMP/clips6"
  fi
done
mapfile -t flacs < <(for f in "${src[@]}"; do echo "$MEDIA/$(basename "$f" .ogg).flac"; done)
N=${#flacs[@]}

say "stack: broker, A, follower B, replicator on B, edge (8 shards), worker on A; $N tracks"
DSN_B=$("$SH_BIN" db start --dir "$PGB" --follow "$DSN_A" 2> "$SH_TMP/pgb.err") || { cat "$SH_TMP/pgb.err"; exit 1; }
RP_ADDR="127.0.0.1:$(free_port)"
SH_DSN=$DSN_B rp_start rp --http "$RP_ADDR"
ed_start E --shards all --snapshot-source "http://$RP_ADDR" --region secondary
wk_start w1 --threads 2
wk_publish "${flacs[@]:0:6}"
wait_for 120 wk_tracks_active 6
wait_for 180 ed_converged "$ED_PORT_E"
python3 "$ROOT/tests/integration/helpers/edge_client.py" "$ED_PORT_E" "$SH_TMP/clips6" \
  "$SH_TMP/client.stop" "$SH_TMP/client.json" &
WK_PIDS+=($!)
CLIENT=$!

# B's last seq every 20 ms and A's replay_lag (one session each: a psql per sample costs seconds on
# a loaded machine); server clock, the same machine's
sampler_start() {
  psql "$DSN_B" -X -Atq -F' ' > "$SH_TMP/bseq" 2> /dev/null <<< \
    "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8, last_seq FROM change_counter \\watch 0.02" &
  SAMPLER_B=$!
  psql "$DSN_A" -X -Atq > "$SH_TMP/replay_lag" 2> /dev/null <<< \
    "SELECT extract(epoch FROM replay_lag) FROM pg_stat_replication WHERE replay_lag IS NOT NULL \\watch 0.05" &
  SAMPLER_A=$!
}
ingest_loop() {
  local n=0 i
  publish() { "$SH_BIN" ingest publish --brokers "$BOOT" --media-root "$MEDIA" "$@" >> "$SH_TMP/acks" 2>> "$SH_TMP/ingest.err" || echo "publish $*" >> "$SH_TMP/ingest.fail"; }
  for i in $(seq 6 $((N - 1))); do
    [ -e "$SH_TMP/ingest.stop" ] && return
    publish "${flacs[$i]}"; n=$((n + 1)); sleep 0.2
    if [ $((i % 7)) -eq 0 ]; then
      "$SH_BIN" ingest delete --brokers "$BOOT" --track-id "$(basename "${flacs[$i]}" .flac)" >> "$SH_TMP/acks" 2>> "$SH_TMP/ingest.err" || echo "delete" >> "$SH_TMP/ingest.fail"
    fi
  done
  while [ ! -e "$SH_TMP/ingest.stop" ] && [ "$n" -lt 400 ]; do
    i=$(( 6 + RANDOM % (N - 6) ))
    [ $((i % 7)) -eq 0 ] && continue
    publish "${flacs[$i]}"; n=$((n + 1)); sleep 0.2
  done
}
: > "$SH_TMP/acks"; : > "$SH_TMP/bseq"; : > "$SH_TMP/replay_lag"
T_START=$(now_ms)
sampler_start
ingest_loop & INGEST=$!
say "ingest running for ${INGEST_S}s, then A's postgres is SIGKILLed"
sleep "$INGEST_S"
BOOTS=$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_E")
kill -9 "$(head -n1 "$SH_PG_DIR/data/postmaster.pid")"
T_KILL=$(now_ms)
kill "$SAMPLER_B" "$SAMPLER_A" 2> /dev/null || true; wait "$SAMPLER_B" "$SAMPLER_A" 2> /dev/null || true
wk_kill w1 KILL
SOUNDHASH_BIN="$SH_BIN" "$ROOT/ops/takeover.sh" --follower-dir "$PGB" --brokers "$BOOT" \
  --old-dir "$SH_PG_DIR" --since-ms "$T_KILL" > "$SH_TMP/takeover.json" 2> "$SH_TMP/takeover.log" ||
  { cat "$SH_TMP/takeover.log"; fail "ops/takeover.sh"; }
B_PROMOTED=$(seq_of "$DSN_B") # before any worker writes to B
SH_DSN=$DSN_B
wk_start w2 --threads 2
sleep 3
touch "$SH_TMP/ingest.stop"; wait "$INGEST" || true
[ ! -s "$SH_TMP/ingest.fail" ] || fail "publishes failed: $(cat "$SH_TMP/ingest.fail")"

# every acknowledged event at its newest version in B, once the replay is done
n_events=$("$KT" end "$BOOT" soundhash.audio.events | awk '{s += $2} END {print s}')
"$KT" events "$BOOT" soundhash.audio.events "$n_events" 60 > "$SH_TMP/events.txt"
sort -t'|' -k1,1 -k3,3n "$SH_TMP/events.txt" |
  awk -F'|' '{last[$1] = $2 "|" $3} END {for (t in last) print t "|" last[t]}' | sort > "$SH_TMP/want.txt"
state() {
  psql "$DSN_B" -X -Atq -c "SELECT external_id || '|' || CASE status WHEN 'active' THEN 'UPSERT'
    ELSE 'DELETE' END || '|' || version FROM tracks" | sort > "$SH_TMP/got.txt"
}
wait_for 300 wk_all_committed soundhash-workers
state
LOST=$(comm -23 "$SH_TMP/want.txt" "$SH_TMP/got.txt" | wc -l)
wait_for 60 ed_converged "$ED_PORT_E"
"$SH_BIN" verify --dsn "$DSN_B" --wait 30 --edge "http://127.0.0.1:$ED_PORT_E" > "$SH_TMP/verify.json"
VERIFIED=$(jq -s '[.[] | select(.ok == true)] | length' "$SH_TMP/verify.json")
touch "$SH_TMP/client.stop"; wait "$CLIENT" || true
# A's true last seq: restarted (fenced: read-only), its crash recovery replays all it committed
"$SH_BIN" db start --dir "$SH_PG_DIR" > /dev/null 2>&1
A_TRUE=$(seq_of "$DSN_A")

# lag per change: commit on A (change_log.committed_at, replicated to B) → first poll of B showing it
psql "$DSN_B" -X -Atq -F' ' -c "SELECT seq, (extract(epoch FROM committed_at) * 1000)::int8 FROM change_log
  WHERE seq <= $B_PROMOTED AND committed_at >= to_timestamp($T_START / 1000.0) ORDER BY seq" > "$SH_TMP/commits"
python3 - "$SH_TMP/commits" "$SH_TMP/bseq" "$SH_TMP/replay_lag" > "$SH_TMP/lag.txt" <<'PY'
import sys
def rows(path, n, conv):
    out = []
    for l in open(path):
        f = l.split()
        try:
            if len(f) == n:
                out.append(tuple(map(conv, f)))
        except ValueError:
            pass  # \watch's blank and title lines
    return out
commits = rows(sys.argv[1], 2, int)
polls = rows(sys.argv[2], 2, int)
pg = sorted(v[0] for v in rows(sys.argv[3], 1, float))
def pct(v, p):
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
lags = []
for seq, at in commits:
    seen = next((t for t, s in polls if s >= seq and t >= at), None)
    if seen is not None:
        lags.append((seen - at) / 1000.0)
lags.sort()
print("visible %d %.3f %.3f %.3f" % (len(lags), pct(lags, .5), pct(lags, .99), lags[-1] if lags else float("nan")))
print("pg %d %.3f %.3f %.3f" % (len(pg), pct(pg, .5), pct(pg, .99), pg[-1] if pg else float("nan")))
PY
read -r _ n_vis v50 v99 vmax < <(grep '^visible' "$SH_TMP/lag.txt")
read -r _ n_pg p50 p99 pmax < <(grep '^pg' "$SH_TMP/lag.txt")
say "figures"
jq -r '"rto_ms               \(.rto_ms) (promote \(.promote_ms) ms; whole script \(.total_ms) ms; target <= 30000)"' "$SH_TMP/takeover.json"
echo "commits_lost_by_pg   $((A_TRUE - B_PROMOTED)) (A's last seq $A_TRUE, read after its restart; B's $B_PROMOTED at promotion); events the rewind replayed $(jq .events_to_replay "$SH_TMP/takeover.json")"
echo "uploads_lost         $LOST of $(wc -l < "$SH_TMP/want.txt") tracks ($n_events acknowledged events; target 0)"
echo "lag commit→visible   p50 ${v50}s p99 ${v99}s max ${vmax}s over $n_vis changes (B polled every 20 ms)"
echo "lag pg replay_lag    p50 ${p50}s p99 ${p99}s max ${pmax}s over $n_pg samples (target p99 < 1 s)"
jq -r '"match requests       \(.answers) answered, \(.nerrors) failed, \(.nwrong) wrong, \(.nback) went back (target 0 failed)"' "$SH_TMP/client.json"
echo "edge verify          $VERIFIED of 8 shards equal the new primary; re-bootstraps during the takeover $(( $(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_E") - BOOTS ))"
[ "$LOST" = 0 ] || exit 1
