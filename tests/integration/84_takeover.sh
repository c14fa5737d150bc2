#!/usr/bin/env bash
# A region takeover drill at small scale, against the real processes: a primary PostgreSQL (A), a
# follower made by `soundhash db start --follow` (B, a streaming hot standby), the broker, a worker
# writing to A, the replicator reading B, an edge holding every shard, a client matching clips of 6
# stable tracks on the edge throughout, and an ingest loop publishing uploads, re-uploads and
# deletes of 18 more corpus tracks the whole time.
#   - the follower tracks the primary (same last change seq, replay lag reported);
#   - the replication to B is cut (a partition between the regions) so that the last commits on A
#     are certainly lost, then A's postgres is SIGKILLed mid-ingest, the worker too;
#   - ops/takeover.sh: promote B, fence A (its directory is reachable here), rewind the group to the
#     offsets B recorded; a worker starts against B;
#   - every acknowledged event is in B: each track once, at the version of its newest event,
#     deletes as tombstones (none resurrected by the replay of older uploads);
#   - the worker and the replicator continue against B (a new upload reaches the edge), the edge
#     verifies against B (`soundhash verify`), with no re-bootstrap and no shard going back;
#   - every match request of the client during the drill was answered 200 with the right track;
#   - A restarted is fenced: psql writes fail, a worker pointed at it refuses to start;
#   - RTO (kill → B accepting writes) within 30 s.
# The worker on B and the takeover's soundhash commands run the ASan+UBSan build.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
. "$SH_ROOT/tests/lib/edge.sh"

corpus="$SH_DATA_DIR/corpus/dev"
[ -d "$corpus" ] || fail "no dev corpus at $corpus (scripts/data/make_corpus.sh builds it)"
PGB="$SH_TMP/pgb"
stop_all() {
  touch "$SH_TMP/ingest.stop" "$SH_TMP/client.stop"
  wk_cleanup
  "$SH_BIN" db stop --dir "$PGB" > /dev/null 2>&1 || true
}
trap stop_all EXIT
wk_setup
pk="rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl libcrypto"
# shellcheck disable=SC2046,SC2086
cc -std=c17 -D_GNU_SOURCE -O1 -I"$SH_ROOT/core/engine" -I"$SH_ROOT/core/runtime" -I"$SH_ROOT/schemas" \
  $(pkg-config --cflags $pk) -o "$RT" "$SH_ROOT/tests/integration/helpers/repl_tool.c" \
  "$(dirname "$SH_BIN")/libsoundhash.a" $(pkg-config --libs $pk) -lm -pthread || fail "cannot build repl_tool"
DSN_A=$SH_DSN
# The least-privilege roles (ops/sql/roles.sql): the takeover's steps after the promotion log in as
# the worker and replicator roles, not as the follower's DIR/dsn (passwords in a passfile).
psql "$DSN_A" -X -q -v ON_ERROR_STOP=1 -f "$SH_ROOT/ops/sql/roles.sql" > /dev/null || fail "ops/sql/roles.sql"
W_PW="wpw-$(openssl rand -hex 12)" R_PW="rpw-$(openssl rand -hex 12)"
psql "$DSN_A" -X -q -v ON_ERROR_STOP=1 > /dev/null <<EOF
ALTER ROLE soundhash_worker PASSWORD '$W_PW';
ALTER ROLE soundhash_replicator PASSWORD '$R_PW';
EOF
(umask 077; printf '*:*:*:soundhash_worker:%s\n*:*:*:soundhash_replicator:%s\n' "$W_PW" "$R_PW" > "$SH_TMP/roles.pgpass")
now_ms() { date +%s%3N; }
seq_of() { psql "$1" -X -Atq -c 'SELECT last_seq FROM change_counter' 2> /dev/null; }

# ---- 24 corpus tracks (15 s excerpts); clips of the first 6, which the drill never changes ------
mapfile -t src < <(ls "$corpus"/*.ogg | head -n 24)
[ "${#src[@]}" -eq 24 ] || fail "the dev corpus has ${#src[@]} tracks, want 24"
: > "$SH_TMP/clips6"
for i in "${!src[@]}"; do
  id=$(basename "${src[$i]}" .ogg)
  sox -G "${src[$i]}" -c 1 -r 16000 "$MEDIA/$id.flac" trim 5 15 || fail "sox"
  if [ "$i" -lt 6 ]; then
    sox "$MEDIA/$id.flac" "$SH_TMP/cut-$id.wav" trim 3 8 &&
      sox -n -r 16000 -c 1 "$SH_TMP/noise-$id.wav" synth 8 whitenoise vol 0.05 &&
      sox -m "$SH_TMP/cut-$id.wav" "$SH_TMP/noise-$id.wav" "$SH_TMP/clip-$id.wav" || fail "sox"
    echo "$id $SH_TMP/clip-$id.wav" >> "$SH_TMP/clips6"
  fi
done
mapfile -t flacs < <(for f in "${src[@]}"; do echo "$MEDIA/$(basename "$f" .ogg).flac"; done)

# ---- the follower -------------------------------------------------------------------------------
DSN_B=$("$SH_BIN" db start --dir "$PGB" --follow "$DSN_A" 2> "$SH_TMP/pgb-start.err") || {
  cat "$SH_TMP/pgb-start.err" >&2; fail "db start --follow"; }
"$SH_BIN" db status --dsn "$DSN_B" > "$SH_TMP/b-status.json"
check "B is a follower (hot standby) of A" jq -e '.role == "follower" and .migrated' "$SH_TMP/b-status.json"
check "A sees one streaming follower" \
  jq -e '.role == "primary" and .followers == 1' <("$SH_BIN" db status --dsn "$DSN_A")
expect_exit 1 psql "$DSN_B" -X -Atq -v ON_ERROR_STOP=1 -c "INSERT INTO consumer_offsets VALUES ('x', 't', 0, 1)"
check "B refuses writes while it follows" grep -q 'read-only transaction' "$SH_TMP/err"

# ---- replicator on B, an edge, a worker on A; the 6 stable tracks --------------------------------
RP_ADDR="127.0.0.1:$(free_port)"
SH_DSN=$DSN_B rp_start rp --http "$RP_ADDR"
ed_start E --shards all --snapshot-source "http://$RP_ADDR" --region secondary
wk_start w1 --threads 2 --worker-id w1-region-a
wk_publish "${flacs[@]:0:6}"
wait_for 120 wk_tracks_active 6
caught_up() { [ "$(seq_of "$DSN_B")" = "$(seq_of "$DSN_A")" ]; }
wait_for 30 caught_up
check "the follower tracks the primary: same last change seq ($(seq_of "$DSN_B"))" caught_up
wait_for 60 ed_converged "$ED_PORT_E"
echo "ok: the edge holds the 6 tracks (read by the replicator from the follower)"
boots_before=$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_E")
python3 "$SH_ROOT/tests/integration/helpers/edge_client.py" "$ED_PORT_E" "$SH_TMP/clips6" \
  "$SH_TMP/client.stop" "$SH_TMP/client.json" &
CLIENT=$!
WK_PIDS+=("$CLIENT")

# ---- ingest the whole time: 18 uploads, then re-uploads; deletes of every 5th drill track ---------
ingest_loop() {
  local n=0 i id
  publish() { "$SH_BIN" ingest publish --brokers "$BOOT" --media-root "$MEDIA" "$@" >> "$SH_TMP/acks" 2>> "$SH_TMP/ingest.err" || echo "publish $*" >> "$SH_TMP/ingest.fail"; }
  for i in $(seq 6 23); do
    publish "${flacs[$i]}"; n=$((n + 1))
    if [ $((i % 5)) -eq 0 ] && [ "$i" -gt 6 ]; then # delete a drill track that stays deleted
      id=$(basename "${flacs[$i]}" .flac)
      "$SH_BIN" ingest delete --brokers "$BOOT" --track-id "$id" >> "$SH_TMP/acks" 2>> "$SH_TMP/ingest.err" ||
        echo "delete $id" >> "$SH_TMP/ingest.fail"
    fi
    sleep 0.2
  done
  while [ ! -e "$SH_TMP/ingest.stop" ] && [ "$n" -lt 120 ]; do # re-uploads (new versions)
    i=$(( 6 + RANDOM % 18 ))
    [ $((i % 5)) -eq 0 ] && [ "$i" -gt 6 ] && continue
    publish "${flacs[$i]}"; n=$((n + 1))
    sleep 0.2
  done
}
: > "$SH_TMP/acks"
ingest_loop &
INGEST=$!
a_has() { [ "$(pg_sql "SELECT count(*) FROM tracks")" -ge "$1" ]; }
wait_for 120 a_has 12
lag_s=$("$SH_BIN" db status --dsn "$DSN_B" | jq .replay_lag_s)
echo "follower replay lag while ingesting: ${lag_s}s; A seq $(seq_of "$DSN_A"), B seq $(seq_of "$DSN_B")"
b_reached() { [ "$(seq_of "$DSN_B")" -ge "$1" ]; }
a_seq=$(seq_of "$DSN_A")
wait_for 30 b_reached "$a_seq"
echo "ok: while ingesting, the follower replays what the primary commits (A's seq $a_seq reached)"

# ---- the region link breaks, then region A is lost ------------------------------------------------
psql "$DSN_B" -X -Atq -c "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 connect_timeout=1'" \
  -c 'SELECT pg_reload_conf()' > /dev/null
b_cut=$(seq_of "$DSN_B")
a_ahead() { [ "$(seq_of "$DSN_A")" -ge $(( b_cut + 4 )) ]; }
wait_for 90 a_ahead
A_LAST=$(seq_of "$DSN_A")
kill -9 "$(head -n1 "$SH_PG_DIR/data/postmaster.pid")"
T_KILL=$(now_ms)
echo "A's postgres SIGKILLed at seq >= $A_LAST; B replayed up to seq $(seq_of "$DSN_B")"
wk_kill w1 KILL

# ---- takeover ---------------------------------------------------------------------------------
B_BASE="host=127.0.0.1 port=$(cat "$PGB/port") dbname=soundhash connect_timeout=5"
export PGPASSFILE="$SH_TMP/roles.pgpass"
expect_exit 1 "$SH_ROOT/ops/takeover.sh" --follower-dir "$PGB" --brokers "$BOOT" --old-dir "$SH_PG_DIR" \
  --worker-dsn "$B_BASE user=soundhash_nobody"
check "a login that does not work fails the takeover before anything changed (preflight)" \
  bash -c "grep -q 'step=preflight' '$SH_TMP/err' && test \"\$(psql '$DSN_B' -X -Atq -c 'SELECT pg_is_in_recovery()')\" = t &&
    ! grep -qs 'soundhash.fenced' '$SH_PG_DIR/data/postgresql.auto.conf'"
SOUNDHASH_BIN="$SH_BIN_ASAN" "$SH_ROOT/ops/takeover.sh" --follower-dir "$PGB" --brokers "$BOOT" \
  --worker-dsn "$B_BASE user=soundhash_worker" --admin-dsn "$B_BASE user=soundhash_worker" \
  --replicator-dsn "$B_BASE user=soundhash_replicator" \
  --old-dir "$SH_PG_DIR" --since-ms "$T_KILL" > "$SH_TMP/takeover.json" 2> "$SH_TMP/takeover.log" || {
  cat "$SH_TMP/takeover.log" >&2; fail "ops/takeover.sh"; }
cat "$SH_TMP/takeover.json"
check "RTO (kill → B accepts writes) $(jq .rto_ms "$SH_TMP/takeover.json") ms <= 30000" \
  jq -e '.rto_ms <= 30000 and .old_fenced and (.new_epoch | not)' "$SH_TMP/takeover.json"
B_PROMOTED=$(seq_of "$DSN_B")
check "the follower lacked $((A_LAST - B_PROMOTED)) of A's commits (asynchronous replication lost them)" \
  test "$B_PROMOTED" -lt "$A_LAST"
check "the rewind replays events" jq -e '.events_to_replay > 0' "$SH_TMP/takeover.json"
SH_DSN=$DSN_B
check "B is the primary now, on a new timeline" \
  jq -e '.role == "primary" and .timeline >= 2 and (.fenced | not)' <("$SH_BIN" db status --dsn "$DSN_B")
wk_start w2 --asan --threads 2 --worker-id w2-region-b
touch "$SH_TMP/ingest.stop"
wait "$INGEST"
check "every publish was acknowledged" test ! -s "$SH_TMP/ingest.fail"

# ---- every acknowledged event is in B, at its newest version ---------------------------------------
n_events=$("$KT" end "$BOOT" soundhash.audio.events | awk '{s += $2} END {print s}')
check "the events topic holds every acknowledged event ($n_events >= 6 + $(grep -c '"event_id"' "$SH_TMP/acks"))" \
  test "$n_events" -ge $(( 6 + $(grep -c '"event_id"' "$SH_TMP/acks") ))
"$KT" events "$BOOT" soundhash.audio.events "$n_events" 30 > "$SH_TMP/events.txt" || fail "read the events back"
# per track the newest event: its op and version (submitted_at)
sort -t'|' -k1,1 -k3,3n "$SH_TMP/events.txt" | awk -F'|' '{last[$1] = $2 "|" $3} END {for (t in last) print t "|" last[t]}' |
  sort > "$SH_TMP/want.txt"
state_matches() {
  pg_sql "SELECT external_id || '|' || CASE status WHEN 'active' THEN 'UPSERT' ELSE 'DELETE' END || '|' || version
          FROM tracks ORDER BY 1" | sort > "$SH_TMP/got.txt"
  cmp -s "$SH_TMP/got.txt" "$SH_TMP/want.txt"
}
end=$(( $(date +%s) + 180 ))
until state_matches || [ "$(date +%s)" -ge "$end" ]; do sleep 0.5; done
state_matches || { diff "$SH_TMP/want.txt" "$SH_TMP/got.txt" >&2 || true; fail "B's tracks differ from the newest acknowledged events"; }
n_del=$(grep -c '|DELETE|' "$SH_TMP/want.txt" || true)
check "all $n_events acknowledged events ($(wc -l < "$SH_TMP/want.txt") tracks, $n_del deleted) are in B at their newest version" \
  test "$n_del" -ge 2
check "each track once; one fingerprint row per active track, none for a deleted one" test \
  "$(pg_sql "SELECT (SELECT count(*) FROM tracks) - (SELECT count(DISTINCT external_id) FROM tracks),
     (SELECT count(*) FROM fingerprints f JOIN tracks t USING (external_id) WHERE t.status = 'active'),
     (SELECT count(*) FROM tracks WHERE status = 'active'), (SELECT count(*) FROM fingerprints)")" = \
  "0|$(pg_sql "SELECT count(*) FROM tracks WHERE status = 'active'")|$(pg_sql "SELECT count(*) FROM tracks WHERE status = 'active'")|$(pg_sql "SELECT count(*) FROM tracks WHERE status = 'active'")"
wait_for 60 wk_all_committed soundhash-workers
echo "ok: the group's offsets reach the end of the events topic again"

# ---- the worker and the replicator continue against B; the edge verifies against it -------------
"$SH_BIN" ingest publish --brokers "$BOOT" --media-root "$MEDIA" "${flacs[7]}" > /dev/null 2>&1 || fail "publish after takeover"
new_id=$(basename "${flacs[7]}" .flac)
is_active() { [ "$(pg_sql "SELECT status FROM tracks WHERE external_id = '$new_id'")" = active ]; }
wait_for 60 is_active
wait_for 60 ed_converged "$ED_PORT_E"
expect_exit 0 "$SH_BIN" verify --dsn "$DSN_B" --wait 30 --edge "http://127.0.0.1:$ED_PORT_E"
check "soundhash verify: the edge equals the new primary (8 shards)" \
  test "$(jq -rs '[.[] | select(.ok == true)] | length' "$SH_TMP/out")" = 8
check "the replicator is still running" kill -0 "$RP_PID"
check "no re-bootstrap: the edge continued the same delta stream" \
  test "$(ed_metric soundhash_edge_bootstraps_total "$ED_PORT_E")" = "$boots_before"
touch "$SH_TMP/client.stop"
wait "$CLIENT" || fail "the match client failed"
jq -c '{answers, nerrors, nwrong, nback, partial}' "$SH_TMP/client.json"
check "match requests during the drill: $(jq .answers "$SH_TMP/client.json"), 0 failed, all right" \
  jq -e '.answers >= 12 and .nerrors == 0 and .nwrong == 0' "$SH_TMP/client.json"
check "... no shard's (epoch, position) ever went back" jq -e '.nback == 0' "$SH_TMP/client.json"

# ---- the old primary comes back fenced ---------------------------------------------------------------
"$SH_BIN" db start --dir "$SH_PG_DIR" > /dev/null 2> "$SH_TMP/a-restart.err" || { cat "$SH_TMP/a-restart.err" >&2; fail "restart A"; }
A_BACK=$(seq_of "$DSN_A")
check "A restarted says it is fenced and read-only" \
  jq -e '.fenced and .read_only' <("$SH_BIN" db status --dsn "$DSN_A")
expect_exit 1 psql "$DSN_A" -X -Atq -v ON_ERROR_STOP=1 -c "SELECT sh_delete_track('x', 't', 1)"
check "A refuses a write (read-only transaction)" grep -q 'read-only transaction' "$SH_TMP/err"
expect_exit 1 "$SH_BIN" worker --brokers "$BOOT" --dsn "$DSN_A" --media-root "$MEDIA" --db-wait 2
check "a worker pointed at A refuses to start, naming the fence" grep -q 'fenced' "$SH_TMP/err"
check "nothing was written to A after it came back" test "$(seq_of "$DSN_A")" = "$A_BACK"
rp_stop TERM
wk_kill w2 TERM
check "the ASan worker on B exits 0 on SIGTERM (rc $WK_RC)" test "$WK_RC" -eq 0
check "no sanitizer report (worker on B, takeover: promote, fence, rewind)" \
  bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$SH_TMP/w2.log' '$SH_TMP/takeover.log'"
echo "84_takeover: all checks passed"
