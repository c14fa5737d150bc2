# Sourceable helper: a private PostgreSQL for one integration test.
#
#   . "$SH_ROOT/tests/lib/pg.sh"     starts `$SH_BIN db start --dir $SH_TMP/pg` and sets
#                                    SH_PG_DIR and SH_DSN (exported); stops the server on exit
#   pg_migrate                       applies the schema (`soundhash db migrate`)
#   pg_sql "SELECT ..."              runs SQL with psql, unaligned tuples-only output
#   pg_stop                          stops the server (idempotent)
# The EXIT trap set here calls pg_stop; a test that sets its own EXIT trap must call pg_stop in it.
: "${SH_BIN:?}" "${SH_TMP:?}"
SH_PG_DIR="$SH_TMP/pg"
pg_stop() { "$SH_BIN" db stop --dir "$SH_PG_DIR" > /dev/null 2>&1 || true; }
pg_migrate() { "$SH_BIN" db migrate --dsn "$SH_DSN" > /dev/null; }
pg_sql() { psql "$SH_DSN" -X -v ON_ERROR_STOP=1 -Atq -c "$1"; }
trap pg_stop EXIT
SH_DSN=$("$SH_BIN" db start --dir "$SH_PG_DIR" 2> "$SH_TMP/pg-start.err") || {
  cat "$SH_TMP/pg-start.err" >&2; echo "FAIL: soundhash db start" >&2; exit 1; }
export SH_PG_DIR SH_DSN
