#!/usr/bin/env bash
# soundhash db: a private PostgreSQL (start/stop/restart keeps data), idempotent migrations,
# clear failures for a bad DSN, a refused port and a port that never answers (bounded wait).
. "$SH_ROOT/tests/integration/lib.sh"
. "$SH_ROOT/tests/lib/pg.sh"

check "dsn names host, port, db and a passfile (no password)" \
  bash -c '[[ "$SH_DSN" == host=127.0.0.1\ port=*\ dbname=soundhash\ user=soundhash\ passfile=* ]] && [[ "$SH_DSN" != *password=* ]]'
check "DIR/dsn holds the printed DSN" test "$(cat "$SH_PG_DIR/dsn")" = "$SH_DSN"
check "server runs with wal_level=logical" test "$(pg_sql 'SHOW wal_level')" = logical

# Migrations: the first run applies 1..N, the second nothing; each version is recorded once.
# Before any migration, status says what to do.
expect_exit 1 "$SH_BIN" db status --dsn "$SH_DSN"
check "unmigrated: status says to run db migrate" grep -q 'not migrated: run `soundhash db migrate`' "$SH_TMP/err"
expect_exit 0 "$SH_BIN" db migrate --dsn "$SH_DSN"
check "migrate prints one JSON line" test "$(jq -c . "$SH_TMP/out" | wc -l)" -eq 1
n=$(jq '.applied | length' "$SH_TMP/out")
check "first migrate applies every version" test "$n" -ge 3
ver=$(jq .schema_version "$SH_TMP/out")
check "schema version = number applied" test "$ver" = "$n"
expect_exit 0 "$SH_BIN" db migrate --dsn "$SH_DSN"
check "second migrate applies nothing" jq -e '.applied == []' "$SH_TMP/out"
check "schema_migrations holds each version once" \
  test "$(pg_sql 'SELECT count(*), count(DISTINCT version), min(version), max(version) FROM schema_migrations')" = "$n|$n|1|$n"
check "publication soundhash_pub covers the three tables" \
  test "$(pg_sql "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'soundhash_pub'")" = "change_log,fingerprints,tracks"
if [ -x "${SH_BIN_ASAN:-}" ]; then
  expect_exit 0 "$SH_BIN_ASAN" db migrate --dsn "$SH_DSN"
  check "ASan build: migrate is a no-op too" jq -e '.applied == []' "$SH_TMP/out"
fi

# Data survives stop/start, and the DSN stays the same.
check "write a track through the SQL function" \
  test "$(pg_sql "SELECT sh_write_track('it-1', 'acme', '{}', NULL, 1.5, NULL, 1, 5, 3, '\\x0102'::bytea)")" = 1
expect_exit 0 "$SH_BIN" db status --dsn "$SH_DSN"
check "status: one JSON line that counts it" \
  jq -e --argjson v "$ver" '.tracks_active == 1 and .last_seq == 1 and .migrated and .schema_version == $v' "$SH_TMP/out"
expect_exit 0 "$SH_BIN" db stop --dir "$SH_PG_DIR"
expect_exit 0 "$SH_BIN" db stop --dir "$SH_PG_DIR"   # already stopped: still 0
expect_exit 1 "$SH_BIN" db status --dsn "$SH_DSN" --connect-timeout 2
check "stopped server: transient error on stderr" grep -q 'SH_ETRANSIENT' "$SH_TMP/err"
expect_exit 0 "$SH_BIN" db start --dir "$SH_PG_DIR"
check "restart prints the same DSN" test "$(cat "$SH_TMP/out")" = "$SH_DSN"
check "data kept across restart" test "$(pg_sql "SELECT version FROM tracks WHERE external_id = 'it-1'")" = 5
expect_exit 0 "$SH_BIN" db start --dir "$SH_PG_DIR"
check "start while running: same DSN" test "$(cat "$SH_TMP/out")" = "$SH_DSN"

# Failures: clear message, exit 1 at runtime, 2 for usage.
expect_exit 2 "$SH_BIN" db migrate --dsn "not a dsn"   # malformed: a usage error
check "bad DSN is named as such" grep -q 'bad DSN' "$SH_TMP/err"
expect_exit 1 "$SH_BIN" db migrate --dsn "host=127.0.0.1 port=$(( $(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<< "$SH_DSN") )) dbname=nope user=soundhash passfile=$SH_PG_DIR/pgpass"
check "missing database is a permanent error" grep -q 'SH_EDB' "$SH_TMP/err"
expect_exit 2 "$SH_BIN" db migrate
expect_exit 2 "$SH_BIN" db frobnicate
expect_exit 2 "$SH_BIN" db migrate --dsn "$SH_DSN" --db-password hunter2   # secrets never in argv
expect_exit 1 "$SH_BIN" db stop --dir "$SH_TMP"
check "stop on a non-cluster dir says so" grep -q 'no PostgreSQL cluster' "$SH_TMP/err"
expect_exit 2 "$SH_BIN" db start --dir "$SH_TMP/pg2" --pg-bin /nonexistent
check "--pg-bin without initdb says so" grep -q 'no initdb in /nonexistent' "$SH_TMP/err"
check "... and starts nothing" test ! -e "$SH_TMP/pg2"

# A port that accepts TCP but never speaks: the wait is bounded by --connect-timeout.
if command -v python3 > /dev/null; then
  python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)' > "$SH_TMP/silent.port" &
  silent=$!
  wait_for 10 test -s "$SH_TMP/silent.port"
  port=$(cat "$SH_TMP/silent.port")
  t0=$(date +%s)
  expect_exit 1 "$SH_BIN" db status --dsn "host=127.0.0.1 port=$port dbname=x user=x" --connect-timeout 2
  t1=$(date +%s)
  kill "$silent"
  check "silent server: gave up within the timeout (took $((t1 - t0)) s)" test $((t1 - t0)) -le 6
  check "silent server: timeout reported as transient" grep -q 'SH_ETRANSIENT' "$SH_TMP/err"
fi
echo "40_db: all checks passed"
