#!/usr/bin/env bash
# soundhash worker against the real broker process and a real PostgreSQL: every published track is
# stored once with exactly the fingerprint count `soundhash fingerprint` computes; publishing the
# same files again changes nothing; deletes leave tombstones; poison events (garbage audio, checksum
# mismatch, path and symlink escape, over-long audio, malformed Avro, unknown schema id) land in the DLQ with
# their reasons while good events keep flowing; offsets reach the end; /health and /metrics answer;
# SIGTERM exits 0.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
wk_setup

# Real audio of several formats, rates and channel counts, plus real music from the corpus.
sox -n -r 44100 -c 2 "$MEDIA/pluck.flac" synth 12 pluck 220 pluck 330 tremolo 4 50
sox -n -r 22050 -c 1 "$MEDIA/chirp.wav" synth 10 sine 300-2400 vol 0.5
sox -n -r 48000 -c 2 "$MEDIA/chord.ogg" synth 8 pluck 196 pluck 247 pluck 294 tremolo 2 60
sox -n -r 16000 -c 1 "$MEDIA/square.aiff" synth 9 square 150-900 vol 0.3
corpus="$SH_DATA_DIR/corpus/dev"
files=("$MEDIA/pluck.flac" "$MEDIA/chirp.wav" "$MEDIA/chord.ogg" "$MEDIA/square.aiff")
if [ -d "$corpus" ]; then
  for f in "$(ls "$corpus"/*.ogg | head -n1)" "$(ls "$corpus"/*.ogg | sed -n 2p)"; do
    cp "$f" "$MEDIA/"; files+=("$MEDIA/$(basename "$f")")
  done
fi
N=${#files[@]}
wk_expect_counts "${files[@]}"

wk_start w1 --threads 2 --worker-id it-worker-1
wk_publish "${files[@]}"
wait_for 120 wk_tracks_active "$N"
wk_check_tracks
wait_for 30 wk_all_committed soundhash-workers
check "fingerprints: one row per track" test "$(pg_sql 'SELECT count(*) FROM fingerprints')" = "$N"
check "change log: one upsert per track" test "$(pg_sql "SELECT count(*) FROM change_log WHERE op = 'upsert'")" = "$N"
check "sha256 of the file stored" \
  test "$(pg_sql "SELECT sha256 FROM tracks WHERE external_id = 'pluck'")" = "$(sha256sum "$MEDIA/pluck.flac" | cut -c1-64)"
check "source uri stored" \
  test "$(pg_sql "SELECT source_uri LIKE 'file://%pluck.flac' FROM tracks WHERE external_id = 'pluck'")" = t

# /health and /metrics.
health_ok() { curl -sf "http://127.0.0.1:$1/health" | grep -q '"status":"ok","kafka":"up","db":"up"'; }
check "/health 200 with kafka and db up" health_ok "$WK_PORT_w1"
curl -sf "http://127.0.0.1:$WK_PORT_w1/metrics" > "$SH_TMP/metrics.txt"
check "metrics: /health answers counted" \
  grep -q '^soundhash_http_responses_total{route="/health",code="200"} [1-9]' "$SH_TMP/metrics.txt"
check "metrics: events by result" grep -q "soundhash_worker_events_total{source=\"live\",op=\"UPSERT\",result=\"ok\"} $N" "$SH_TMP/metrics.txt"
for m in processing_seconds_bucket audio_seconds_total consumer_lag db_write_seconds_bucket inflight; do
  check "metrics: soundhash_worker_$m present with HELP/TYPE" bash -c \
    "grep -q '^soundhash_worker_$m' '$SH_TMP/metrics.txt' && grep -q '^# TYPE soundhash_worker_${m%_bucket} ' '$SH_TMP/metrics.txt'"
done
# Consumer lag from librdkafka's statistics (every second): each partition that holds events has
# its own series, and all are caught up (librdkafka knows no lag for a partition never committed).
lag_caught_up() {
  curl -sf "http://127.0.0.1:$WK_PORT_w1/metrics" > "$SH_TMP/lag.txt" || return 1
  local p hw n=0
  while read -r p hw; do
    [ "$hw" -eq 0 ] && continue
    grep -q "^soundhash_worker_consumer_lag{topic=\"soundhash.audio.events\",partition=\"$p\"} 0\$" "$SH_TMP/lag.txt" || return 1
    n=$((n + 1))
  done < <("$KT" end "$BOOT" soundhash.audio.events)
  [ "$n" -gt 0 ]
}
wait_for 20 lag_caught_up
want_s=$(pg_sql 'SELECT round(sum(duration_s)) FROM tracks')
got_s=$(awk '$1 == "soundhash_worker_audio_seconds_total" {printf "%.0f", $2}' "$SH_TMP/metrics.txt")
check "metrics: audio seconds = stored durations ($got_s)" test "$got_s" = "$want_s"

# Re-delivery: the same files published again leave the same tracks and fingerprints.
snap() { pg_sql "SELECT t.external_id, t.status, t.n_hashes, f.n_hashes, md5(f.blob) FROM tracks t
                 JOIN fingerprints f USING (external_id) ORDER BY 1"; }
before=$(snap)
wk_publish "${files[@]}"
wait_for 120 wk_all_committed soundhash-workers
check "re-delivery: tracks and blobs unchanged" test "$(snap)" = "$before"
check "re-delivery: still one row per track" test "$(pg_sql 'SELECT count(*) FROM tracks')" = "$N"

# Delete: the track becomes a tombstone without fingerprints.
"$SH_BIN" ingest delete --brokers "$BOOT" --track-id chirp > /dev/null 2>&1 || fail "ingest delete"
is_deleted() { [ "$(pg_sql "SELECT status FROM tracks WHERE external_id = '$1'")" = deleted ]; }
wait_for 60 is_deleted chirp
check "delete: fingerprints removed" test "$(pg_sql "SELECT count(*) FROM fingerprints WHERE external_id = 'chirp'")" = 0
check "delete: change logged" test "$(pg_sql "SELECT count(*) FROM change_log WHERE op = 'delete' AND external_id = 'chirp'")" = 1
unset 'EXPECT[chirp]'
wk_check_tracks

# Poison events, mixed with one good event that must still go through.
head -c 40000 /dev/urandom > "$MEDIA/garbage.flac"                       # not audio
sox -n -r 8000 -c 1 "$MEDIA/tampered.wav" synth 6 sine 500
sox -n -r 8000 -c 1 "$MEDIA/toolong.wav" synth 75 sine 700              # over --max-duration
sox -n -r 8000 -c 1 "$SH_TMP/outside.wav" synth 5 sine 800              # outside the media root
cp "$SH_TMP/outside.wav" "$MEDIA/link.wav"          # becomes a symlink out of the root once published
sox -n -r 11025 -c 1 "$MEDIA/late.wav" synth 7 square 200-1200 vol 0.3
wk_kill w1 TERM
check "SIGTERM: worker exits 0 (got $WK_RC)" test "$WK_RC" -eq 0
check "SIGTERM: left the group (log)" grep -q 'event=worker_stopped rc=0' "$SH_TMP/w1.log"
# Published while no worker runs, so the tampering below cannot race a worker reading the files.
wk_publish "$MEDIA/garbage.flac" "$MEDIA/tampered.wav" "$MEDIA/toolong.wav" "$MEDIA/link.wav"
echo tampered >> "$MEDIA/tampered.wav"                                   # after its sha256 was taken
ln -sf "$SH_TMP/outside.wav" "$MEDIA/link.wav"                           # same bytes, escaping path
"$SH_BIN" ingest publish --brokers "$BOOT" --media-root "$SH_TMP" "$SH_TMP/outside.wav" > /dev/null 2>&1 \
  || fail "publish outside.wav"
printf 'this is not avro' > "$SH_TMP/raw1"
printf '\000\000\000\047\017rest' > "$SH_TMP/raw2"                        # magic 0, schema id 9999
"$KT" produce "$BOOT" soundhash.audio.events rawjunk "$SH_TMP/raw1"
"$KT" produce "$BOOT" soundhash.audio.events badschema "$SH_TMP/raw2"
wk_start w2 --asan --threads 2 --worker-id it-worker-2 --max-duration 60
wk_publish "$MEDIA/late.wav"
EXPECT=(); wk_expect_counts "$MEDIA/late.wav"
wait_for 120 wk_tracks_active "$N"   # N - chirp + late
wk_check_tracks
"$KT" dlq "$BOOT" 7 60 > "$SH_TMP/dlq.txt" || { cat "$SH_TMP/dlq.txt" >&2; fail "7 dead letters"; }
cat "$SH_TMP/dlq.txt"
dl() { grep -q "$1" "$SH_TMP/dlq.txt"; }
check "dlq: garbage audio → SH_EDECODE" dl '^garbage|[^|]*|SH_EDECODE|soundhash.audio.events|'
check "dlq: tampered file → SH_ECHECKSUM" dl '^tampered|[^|]*|SH_ECHECKSUM|'
check "dlq: 75 s over a 60 s cap → SH_ETOOLONG" dl '^toolong|[^|]*|SH_ETOOLONG|'
check "dlq: outside the media root → SH_EPATH" dl '^outside|[^|]*|SH_EPATH|'
check "dlq: symlink out of the media root → SH_EPATH" dl '^link|[^|]*|SH_EPATH|'
check "dlq: not Avro → SH_EFORMAT, original bytes kept" dl '^||SH_EFORMAT|soundhash.audio.events|[0-9]*|[0-9]*|1|16|-1|it-worker-2|'
check "dlq: unknown schema id → SH_ESCHEMA" dl '^||SH_ESCHEMA|soundhash.audio.events|[0-9]*|[0-9]*|1|9|9999|'
check "dlq: reasons are human text" dl 'sha256 mismatch'
check "poison tracks not stored" test "$(pg_sql "SELECT count(*) FROM tracks WHERE external_id IN ('garbage','tampered','toolong','outside','link')")" = 0
wait_for 60 wk_all_committed soundhash-workers
check "offsets moved past the poison events" wk_all_committed soundhash-workers
check "metrics: failures by reason" \
  test "$(wk_metric 'soundhash_worker_events_failed_total{reason="SH_ECHECKSUM"}' "$WK_PORT_w2")" = 1
wk_kill w2 INT
check "SIGINT: ASan worker exits 0 (got $WK_RC)" test "$WK_RC" -eq 0
check "ASan worker: no sanitizer report" bash -c "! grep -q 'ERROR: AddressSanitizer\|runtime error' '$SH_TMP/w2.log'"

# True re-delivery: a new consumer group replays every event on the topic (both publishes, the
# delete, the poison events). Nothing stored may change: every write is stale by version.
full_snap() { pg_sql "SELECT external_id, status, version, n_hashes, sha256 FROM tracks ORDER BY 1";
              pg_sql "SELECT count(*), max(seq) FROM change_log"; snap; }
before=$(full_snap)
wk_start w3 --threads 2 --group replay --max-duration 60
wait_for 120 wk_all_committed replay
check "replay: tracks, versions, blobs and change log unchanged" test "$(full_snap)" = "$before"
stale=$(wk_metric soundhash_worker_events_total "$WK_PORT_w3")
check "replay: every event handled again ($stale)" test "$stale" -eq $((2 * N + 1 + 7 + 1))
check "replay: upserts were stale no-ops" \
  test "$(wk_metric 'soundhash_worker_events_total{source="live",op="UPSERT",result="ok"}' "$WK_PORT_w3")" = 0
wk_kill w3 TERM
check "replay worker exits 0" test "$WK_RC" -eq 0

# Usage errors.
expect_exit 2 "$SH_BIN" worker --dsn x --media-root "$MEDIA"
expect_exit 2 "$SH_BIN" worker --brokers "$BOOT" --dsn "$SH_DSN" --media-root "$MEDIA" --threads 0
expect_exit 2 "$SH_BIN" worker --brokers "$BOOT" --dsn "$SH_DSN" --media-root "$SH_TMP/nope"
# No broker at start: a bounded wait, then a clear error and exit 1 (not a silent retry loop).
expect_exit 1 timeout 20 "$SH_BIN" worker --brokers 127.0.0.1:1 --dsn "$SH_DSN" --media-root "$MEDIA" \
  --connect-timeout 1
check "unreachable broker: the error names it" grep -q 'no Kafka broker reachable at 127.0.0.1:1' "$SH_TMP/err"
echo "50_worker: all checks passed"
