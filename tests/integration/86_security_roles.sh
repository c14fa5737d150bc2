#!/usr/bin/env bash
# Least privilege and secret hygiene (ops/SECURITY.md). ops/sql/roles.sql (run twice: idempotent)
# creates soundhash_worker, soundhash_replicator and soundhash_pruner. The whole pipeline runs under
# them — a worker as soundhash_worker (password from SOUNDHASH_DB_PASSWORD_FILE), the replicator as
# soundhash_replicator (password from SOUNDHASH_DB_PASSWORD), an edge with no database at all (a
# bearer token from SOUNDHASH_API_TOKEN), `soundhash verify` as soundhash_replicator, prune as
# soundhash_pruner — and converges. Each role is refused what it must not do (DDL, TRUNCATE, deletes
# of the change log, the other roles' writes, reading replication_epoch for the worker).
# Then the secrets — both database passwords, the API token, a Kafka SASL password from
# SOUNDHASH_KAFKA_SASL_PASSWORD_FILE — appear in no process's argv (/proc/PID/cmdline), no log
# line (debug level included), no /metrics or /health answer; a wrong password or a malformed DSN
# holding a password fails without echoing it; argv secrets are warned about and masked by
# --print-config.
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"
. "$SH_ROOT/tests/lib/worker.sh"
WK_KAFKA=mock wk_setup

PORT=$(cat "$SH_PG_DIR/port")
base="host=127.0.0.1 port=$PORT dbname=soundhash connect_timeout=5"
W_DSN="$base user=soundhash_worker"
R_DSN="$base user=soundhash_replicator"
P_DSN="$base user=soundhash_pruner"
# Random secrets with a recognisable prefix, so a leak is found by a plain grep.
W_PW="wpw-$(openssl rand -hex 12)"
R_PW="rpw-$(openssl rand -hex 12)"
P_PW="ppw-$(openssl rand -hex 12)"
TOKEN="tok-$(openssl rand -hex 12)"
K_PW="kpw-$(openssl rand -hex 12)"
SECRETS=("$W_PW" "$R_PW" "$P_PW" "$TOKEN" "$K_PW")
umask 077
printf '%s\n' "$W_PW" > "$SH_TMP/worker.pw"
printf '%s\n' "$K_PW" > "$SH_TMP/kafka.pw"

# ---- roles ---------------------------------------------------------------------------------------
for i in 1 2; do
  psql "$SH_DSN" -X -q -v ON_ERROR_STOP=1 -f "$SH_ROOT/ops/sql/roles.sql" > /dev/null 2> "$SH_TMP/roles.err" || {
    cat "$SH_TMP/roles.err" >&2; fail "ops/sql/roles.sql (run $i)"; }
done
echo "ok: ops/sql/roles.sql applies, twice"
# Passwords go in through stdin, never argv.
psql "$SH_DSN" -X -q -v ON_ERROR_STOP=1 > /dev/null <<EOF
ALTER ROLE soundhash_worker PASSWORD '$W_PW';
ALTER ROLE soundhash_replicator PASSWORD '$R_PW';
ALTER ROLE soundhash_pruner PASSWORD '$P_PW';
EOF
check "no role of the services is superuser, createrole, createdb or replication" \
  test "$(pg_sql "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'soundhash\_%'
                  AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR NOT rolcanlogin)")" = 0

# as ROLE PW SQL: runs SQL as a role (password in the environment); prints psql's stderr.
as() { PGPASSWORD="$2" psql "$base user=$1" -X -q -v ON_ERROR_STOP=1 -Atc "$3" 2>&1 > /dev/null; }
# denied ROLE PW SQL: the statement fails with a privilege error.
denied() {
  local out
  if out=$(as "$1" "$2" "$3"); then echo "FAIL: $1 may: $3" >&2; return 1; fi
  grep -Eq 'permission denied|must be owner' <<< "$out" || { echo "$out" >&2; return 1; }
}
for sql in "DROP TABLE tracks" "ALTER TABLE tracks ADD COLUMN x int" "TRUNCATE change_log" \
  "DELETE FROM change_log" "DELETE FROM tracks" "UPDATE change_log SET op = 'delete'" \
  "UPDATE replication_epoch SET epoch = 9" "SELECT * FROM replication_epoch" \
  "CREATE TABLE evil (x int)" "CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1'" \
  "DROP FUNCTION sh_write_track" "CREATE ROLE evil" "INSERT INTO schema_migrations VALUES (99, 'x')"; do
  check "soundhash_worker is refused: $sql" denied soundhash_worker "$W_PW" "$sql"
done
for sql in "INSERT INTO tracks (external_id, tenant, version, status) VALUES ('x', 't', 1, 'active')" \
  "UPDATE tracks SET version = 0" "DELETE FROM fingerprints" "DELETE FROM change_log" \
  "UPDATE change_counter SET last_seq = 0" "SELECT sh_delete_track('x', 't', 1)" \
  "TRUNCATE tracks" "DROP TABLE change_log" "CREATE TABLE evil (x int)"; do
  check "soundhash_replicator is refused: $sql" denied soundhash_replicator "$R_PW" "$sql"
done
for sql in "INSERT INTO change_log (seq, op, external_id, tenant, version) VALUES (0, 'upsert', 'x', 't', 1)" \
  "UPDATE tracks SET version = 0" "SELECT sh_delete_track('x', 't', 1)" "DROP TABLE tracks"; do
  check "soundhash_pruner is refused: $sql" denied soundhash_pruner "$P_PW" "$sql"
done
check "PUBLIC cannot connect (a role without a grant is refused)" bash -c "
  psql '$SH_DSN' -X -q -c \"CREATE ROLE sh_nobody LOGIN PASSWORD 'x'\" &&
  ! PGPASSWORD=x psql '$base user=sh_nobody' -X -Atc 'SELECT 1' 2> '$SH_TMP/nobody.err' &&
  grep -q 'permission denied for database' '$SH_TMP/nobody.err'"

# ---- the pipeline under those roles --------------------------------------------------------------
sox -n -r 22050 -c 1 "$MEDIA/a.wav" synth 10 sine 300-2400 vol 0.5
sox -n -r 44100 -c 2 "$MEDIA/b.flac" synth 12 pluck 220 pluck 330 tremolo 4 50
sox -n -r 16000 -c 1 "$MEDIA/c.wav" synth 9 square 150-900 vol 0.3

SOUNDHASH_DB_PASSWORD_FILE="$SH_TMP/worker.pw" SOUNDHASH_KAFKA_SASL_PASSWORD_FILE="$SH_TMP/kafka.pw" \
  "$SH_BIN" worker --brokers "$BOOT" --dsn "$W_DSN" --media-root "$MEDIA" --http 127.0.0.1:0 \
  --log-level debug -X session.timeout.ms=6000 > /dev/null 2> "$SH_TMP/w.log" &
W_PID=$!; WK_PIDS+=("$W_PID")
wait_for 30 grep -q 'event=http_listening' "$SH_TMP/w.log"
W_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/w.log" | head -n1)
wk_publish "$MEDIA/a.wav" "$MEDIA/b.flac" "$MEDIA/c.wav"
wait_for 120 wk_tracks_active 3
"$SH_BIN" ingest delete --brokers "$BOOT" --track-id c > /dev/null 2>&1
c_deleted() { [ "$(pg_sql "SELECT status FROM tracks WHERE external_id = 'c'")" = deleted ]; }
wait_for 60 c_deleted # a function: wait_for re-runs it (a "$(...)" argument is evaluated once)
check "the worker (soundhash_worker) wrote 2 tracks and a tombstone, 4 changes" \
  test "$(pg_sql "SELECT count(*) FROM change_log")" = 4
check "the worker's connections are soundhash_worker's" \
  test "$(pg_sql "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name LIKE 'soundhash-worker%'")" = soundhash_worker

SOUNDHASH_DB_PASSWORD="$R_PW" SOUNDHASH_KAFKA_SASL_PASSWORD="$K_PW" \
  "$SH_BIN" replicator --brokers "$BOOT" --dsn "$R_DSN" --http 127.0.0.1:0 --heartbeat-ms 200 \
  --log-level debug > /dev/null 2> "$SH_TMP/rp.log" &
RP_PID=$!; WK_PIDS+=("$RP_PID")
wait_for 30 grep -q 'event=replicator_started' "$SH_TMP/rp.log"
RP_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/rp.log" | head -n1)

SOUNDHASH_API_TOKEN="$TOKEN" "$SH_BIN" edge --brokers "$BOOT" --listen 127.0.0.1:0 \
  --data "$SH_TMP/edge" --shards all --region secondary --log-level debug > /dev/null 2> "$SH_TMP/ed.log" &
ED_PID=$!; WK_PIDS+=("$ED_PID")
wait_for 30 grep -q 'event=http_listening' "$SH_TMP/ed.log"
ED_PORT=$(sed -n 's/.*event=http_listening.* port=\([0-9]*\).*/\1/p' "$SH_TMP/ed.log" | head -n1)
verify_ok() {
  SOUNDHASH_API_TOKEN="$TOKEN" SOUNDHASH_DB_PASSWORD="$R_PW" "$SH_BIN" verify --dsn "$R_DSN" \
    --edge "http://127.0.0.1:$ED_PORT" --wait 5 > "$SH_TMP/verify.out" 2> "$SH_TMP/verify.err"
}
wait_for 90 verify_ok
check "soundhash verify (soundhash_replicator) passes: the edge equals the primary" \
  grep -q '"mismatched":0' "$SH_TMP/verify.out"
check "the edge holds no database connection (it has no DSN option at all)" \
  bash -c "! '$SH_BIN' edge --help | grep -q -- '--dsn'"
expect_exit 0 env SOUNDHASH_DB_PASSWORD="$R_PW" "$SH_BIN" replicator snapshot --dsn "$R_DSN" --shard 0 \
  --out "$SH_TMP/snap0"
echo "ok: replicator snapshot as soundhash_replicator"
expect_exit 1 env SOUNDHASH_DB_PASSWORD="$R_PW" "$SH_BIN" replicator prune --dsn "$R_DSN" --brokers "$BOOT"
check "prune as soundhash_replicator: exit 1, permission denied named" grep -q 'permission denied' "$SH_TMP/err"
expect_exit 0 env SOUNDHASH_DB_PASSWORD="$P_PW" "$SH_BIN" replicator prune --dsn "$P_DSN" --brokers "$BOOT"
echo "ok: prune as soundhash_pruner: $(cat "$SH_TMP/out")"

# ---- secrets: nowhere in argv, logs, metrics, health ---------------------------------------------
leaks() { # leaks FILE...: prints every secret found in the files
  local s; for s in "${SECRETS[@]}"; do { grep -lF -- "$s" "$@" 2> /dev/null || true; } | sed "s|^|$s in |"; done
}
for pid in "$W_PID" "$RP_PID" "$ED_PID"; do tr '\0' ' ' < "/proc/$pid/cmdline"; echo; done > "$SH_TMP/cmdlines"
curl -fsS "127.0.0.1:$W_PORT/metrics" > "$SH_TMP/w.metrics"
curl -sS "127.0.0.1:$W_PORT/health" > "$SH_TMP/w.health"
curl -fsS "127.0.0.1:$RP_PORT/metrics" > "$SH_TMP/rp.metrics"
curl -sS "127.0.0.1:$RP_PORT/health" > "$SH_TMP/rp.health"
curl -fsS "127.0.0.1:$ED_PORT/metrics" > "$SH_TMP/ed.metrics"
curl -sS "127.0.0.1:$ED_PORT/health" > "$SH_TMP/ed.health"
curl -sS -H "Authorization: Bearer wrong-$TOKEN" "127.0.0.1:$ED_PORT/v1/shards" > "$SH_TMP/ed.401"
check "a wrong token: 401 with a JSON error" jq -e .error "$SH_TMP/ed.401"
check "logs are at debug level and non-trivial" test "$(cat "$SH_TMP"/{w,rp,ed}.log | wc -l)" -gt 20
found=$(leaks "$SH_TMP"/cmdlines "$SH_TMP"/{w,rp,ed}.{log,metrics,health} "$SH_TMP/ed.401" \
  "$SH_TMP"/verify.{out,err} "$SH_TMP/publish.out" "$SH_TMP/publish.err")
check "no secret in argv, logs, /metrics, /health or answers${found:+: $found}" test -z "$found"

# A wrong password: a clear error naming the failure, the password not echoed.
expect_exit 1 env SOUNDHASH_DB_PASSWORD="bad-$W_PW" "$SH_BIN" db status --dsn "$W_DSN"
check "wrong password: 'password authentication failed' on stderr" \
  grep -q 'password authentication failed' "$SH_TMP/err"
check "wrong password: not echoed" test -z "$(grep -F -- "$W_PW" "$SH_TMP/err")"
# A worker that cannot authenticate exits 1 at once (no retry loop) without echoing it.
expect_exit 1 env SOUNDHASH_DB_PASSWORD="bad-$W_PW" "$SH_BIN" worker --brokers "$BOOT" --dsn "$W_DSN" \
  --media-root "$MEDIA" --db-wait 30
check "worker with a wrong password: exit 1 naming authentication, no echo" \
  bash -c "grep -qi 'authentication' '$SH_TMP/err' && ! grep -qF -- '$W_PW' '$SH_TMP/err'"

# Secrets on the command line: warned about, masked, and never echoed in an error.
expect_exit 2 "$SH_BIN_ASAN" db status --dsn "postgresql://soundhash_worker:$W_PW@[::1/soundhash"
check "a malformed URI DSN's password is masked in the error" \
  bash -c "grep -q 'bad DSN.*soundhash_worker:\*\*\*@' '$SH_TMP/err' && ! grep -qF -- '$W_PW' '$SH_TMP/err'"
expect_exit 0 "$SH_BIN_ASAN" worker --brokers "$BOOT" --dsn "$W_DSN password=$W_PW" --media-root "$MEDIA" \
  -X "sasl.password=$K_PW" --print-config
check "--print-config masks the DSN password and -X sasl.password" \
  bash -c "grep -q 'password=\*\*\*' '$SH_TMP/out' && grep -q 'sasl.password=(set, hidden)' '$SH_TMP/out' &&
           test -z \"\$(grep -F -e '$W_PW' -e '$K_PW' '$SH_TMP/out' '$SH_TMP/err')\""
check "both argv secrets are warned about" test "$(grep -c 'event=secret_on_command_line' "$SH_TMP/err")" = 2
expect_exit 0 env SOUNDHASH_DB_PASSWORD="$R_PW" "$SH_BIN" db status --dsn "$R_DSN"
check "the same password from the environment: no warning" \
  test "$(grep -c 'secret_on_command_line' "$SH_TMP/err")" = 0
expect_exit 2 env SOUNDHASH_KAFKA_SASL_PASSWORD_FILE="$SH_TMP/nope" "$SH_BIN" worker --brokers "$BOOT" \
  --dsn "$W_DSN" --media-root "$MEDIA"
check "an unreadable SOUNDHASH_KAFKA_SASL_PASSWORD_FILE is a usage error naming it" \
  grep -q 'SOUNDHASH_KAFKA_SASL_PASSWORD_FILE' "$SH_TMP/err"

kill -TERM "$W_PID" "$RP_PID" "$ED_PID"
for pid in "$W_PID" "$RP_PID" "$ED_PID"; do
  set +e; wait "$pid"; rc=$?; set -e
  check "SIGTERM: pid $pid exits 0" test "$rc" -eq 0
done
found=$(leaks "$SH_TMP"/{w,rp,ed}.log)
check "no secret in the logs after shutdown either${found:+: $found}" test -z "$found"
