#!/usr/bin/env bash
# ops/takeover.sh — the secondary region takes over after the primary region is lost
# (ops/RUNBOOK.md, "Take over with a secondary region"; README, "Region takeover").
#
#   ops/takeover.sh --follower-dir DIR --brokers B [--group G] [--old-dir DIR | --old-dsn DSN]
#                   [--worker-dsn DSN] [--admin-dsn DSN] [--replicator-dsn DSN]
#                   [--stop-workers CMD] [--start-workers CMD] [--new-epoch] [--force]
#
# DIR/dsn logs in as the role the follower replicates with (REPLICATION, no database grants), so
# the steps after promotion take their own DSNs, each to the follower's server:
#   --worker-dsn DSN      the worker role (soundhash_worker): `worker rewind` and the NEW_DSN
#                         given to --start-workers;
#   --admin-dsn DSN       a role that may connect (default: the worker DSN): waits until the
#                         server left recovery, and --new-epoch's UPDATE (the owner's role then);
#   --replicator-dsn DSN  optional: the replicator role's login is checked on the new primary.
# Without --worker-dsn, DIR/dsn is used (a local test server whose DSN is a superuser's). Passwords
# never in a DSN here (argv is readable by every local user): PGPASSFILE or ~/.pgpass.
#
# Steps, each logged as one line on stderr; one JSON summary on stdout:
#   0. preflight: the admin, worker (and replicator) logins work on the follower (hot standby):
#      a wrong role or password fails before anything changed;
#   1. the old primary must be unreachable (--old-dsn, or DIR/dsn of --old-dir): a primary that
#      still answers is refused unless --force (two primaries taking writes is the one thing a
#      takeover must not cause);
#   2. --stop-workers CMD: the workers stop (they were paused anyway: their database is gone);
#   3. fence the old primary BEFORE the follower is promoted (a failure here stops the takeover
#      with one primary, not two): with --old-dir `soundhash db fence` (also while it is down: it
#      comes back fenced); otherwise a warning with what to run on it before it starts again;
#   4. `soundhash db promote --dir FOLLOWER`: the follower becomes the primary (new timeline);
#      promote_ms and rto_ms (since --since-ms, e.g. when the loss was detected) are measured here
#      (until pg_is_in_recovery() is false over --admin-dsn);
#   4. fence the old primary: with --old-dir `soundhash db fence` (also while it is down: it comes
#      back fenced); otherwise a reminder of what to run on it once reachable;
#   5. `soundhash worker rewind`: the group's offsets go back to the ones the promoted follower
#      recorded, so every upload the lost primary took after the follower's last replayed commit
#      is consumed again (RPO 0 for uploads);
#   6. --new-epoch only if the replicator read the OLD primary (not the recommended setup): a new
#      epoch makes every edge re-bootstrap from the new primary, dropping changes it lacks;
#   7. --start-workers CMD runs with NEW_DSN (the worker DSN) in its environment: the workers start
#      against the new primary. The replicator, which reads the follower's server as the
#      replicator role, needs nothing: it continues.
# Exit 0 when every step passed; 1 at the first failure (the log says which); 2 usage.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SOUNDHASH_BIN:-$ROOT/build/soundhash}"
FOLLOWER_DIR="" BROKERS="" GROUP="soundhash-workers" OLD_DIR="" OLD_DSN=""
STOP_CMD="" START_CMD="" NEW_EPOCH=0 FORCE=0 SINCE_MS=""
WORKER_DSN="" ADMIN_DSN="" REPL_DSN=""

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { printf 'ts=%s level=%s event=%s %s\n' "$(date -u +%FT%T.%3NZ)" "$1" "$2" "${3:-}" >&2; }
die() { log error takeover_failed "step=$1 msg=\"$2\""; exit 1; }
now_ms() { date +%s%3N; }

while [ $# -gt 0 ]; do
  case "$1" in
    --follower-dir) FOLLOWER_DIR="$2"; shift 2 ;;
    --brokers) BROKERS="$2"; shift 2 ;;
    --group) GROUP="$2"; shift 2 ;;
    --old-dir) OLD_DIR="$2"; shift 2 ;;
    --old-dsn) OLD_DSN="$2"; shift 2 ;;
    --worker-dsn) WORKER_DSN="$2"; shift 2 ;;
    --admin-dsn) ADMIN_DSN="$2"; shift 2 ;;
    --replicator-dsn) REPL_DSN="$2"; shift 2 ;;
    --stop-workers) STOP_CMD="$2"; shift 2 ;;
    --start-workers) START_CMD="$2"; shift 2 ;;
    --since-ms) SINCE_MS="$2"; shift 2 ;;
    --new-epoch) NEW_EPOCH=1; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage ;;
    *) echo "ops/takeover.sh: unknown option '$1'" >&2; usage ;;
  esac
done
[ -n "$FOLLOWER_DIR" ] || { echo "ops/takeover.sh: --follower-dir is required" >&2; exit 2; }
[ -n "$BROKERS" ] || { echo "ops/takeover.sh: --brokers is required" >&2; exit 2; }
[ -d "$FOLLOWER_DIR" ] || { echo "ops/takeover.sh: --follower-dir $FOLLOWER_DIR: no such directory" >&2; exit 2; }
for d in "$WORKER_DSN" "$ADMIN_DSN" "$REPL_DSN" "$OLD_DSN"; do
  case "$d" in *password=*|*://*:*@*)
    echo "ops/takeover.sh: a password in a DSN on the command line: use PGPASSFILE or ~/.pgpass" >&2
    exit 2 ;;
  esac
done
DSN_SOURCE=options
if [ -z "$WORKER_DSN" ]; then
  [ -f "$FOLLOWER_DIR/dsn" ] || { echo "ops/takeover.sh: --worker-dsn is required (no $FOLLOWER_DIR/dsn)" >&2; exit 2; }
  WORKER_DSN=$(cat "$FOLLOWER_DIR/dsn") DSN_SOURCE=follower_dir
fi
[ -n "$ADMIN_DSN" ] || ADMIN_DSN=$WORKER_DSN
[ -n "$SINCE_MS" ] || SINCE_MS=$(now_ms)
T0=$(now_ms)
if [ -z "$OLD_DSN" ] && [ -n "$OLD_DIR" ] && [ -f "$OLD_DIR/dsn" ]; then OLD_DSN=$(cat "$OLD_DIR/dsn"); fi

export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-3}" # a lost region may not even refuse
# 0. preflight on the follower (a hot standby answers reads): every login the steps after the
#    promotion need works now, so a wrong role or password fails here, before anything changed
psql "$ADMIN_DSN" -X -Atq -c 'SELECT pg_is_in_recovery()' > /dev/null 2>&1 ||
  die preflight "--admin-dsn cannot connect to the follower (nothing changed yet)"
psql "$WORKER_DSN" -X -Atq -c 'SELECT count(*) FROM consumer_offsets' > /dev/null 2>&1 ||
  die preflight "--worker-dsn cannot read consumer_offsets on the follower (nothing changed yet)"
if [ -n "$REPL_DSN" ]; then
  psql "$REPL_DSN" -X -Atq -c 'SELECT last_seq FROM change_counter' > /dev/null 2>&1 ||
    die preflight "--replicator-dsn cannot read change_counter on the follower (nothing changed yet)"
fi
log info preflight_ok "dsn_source=$DSN_SOURCE"

# 1. the old primary must be gone
if [ -n "$OLD_DSN" ] && old=$(psql "$OLD_DSN" -X -Atq -c \
    "SELECT coalesce(current_setting('soundhash.fenced', true), '')" 2> /dev/null); then
  if [ "$old" = on ]; then
    log info old_primary_answers "fenced=true"
  else
    [ "$FORCE" = 1 ] || die old_primary "the old primary still answers: fence or stop it first (or --force)"
    log warn old_primary_answers "fenced=false forced=true"
  fi
fi
log info old_primary_down "checked=$([ -n "$OLD_DSN" ] && echo true || echo false)"

# 2. workers stop
if [ -n "$STOP_CMD" ]; then bash -c "$STOP_CMD" || die stop_workers "$STOP_CMD failed"; fi
log info workers_stopped "hook=$([ -n "$STOP_CMD" ] && echo true || echo false)"

# 3. fence the old primary, before the promotion: a failure leaves one primary (none), never two
FENCED=false
if [ -n "$OLD_DIR" ]; then
  "$BIN" db fence --dir "$OLD_DIR" > /dev/null || die fence "soundhash db fence --dir $OLD_DIR failed"
  FENCED=true
  log info old_primary_fenced "dir=$OLD_DIR"
else
  log warn old_primary_not_fenced "todo=\"before the old primary starts again: soundhash db fence --dir ITS_DIR, or ALTER SYSTEM SET soundhash.fenced = on; ALTER SYSTEM SET default_transaction_read_only = on (ops/RUNBOOK.md)\""
fi

# 4. promote
t=$(now_ms)
"$BIN" db promote --dir "$FOLLOWER_DIR" > /dev/null || die promote "soundhash db promote failed"
# accepting writes: out of recovery (no TEMP or table grant needed; pg_ctl promote -w waited too)
in_recovery() { psql "$ADMIN_DSN" -X -Atq -c 'SELECT pg_is_in_recovery()' 2> /dev/null || echo err; }
until [ "$(in_recovery)" = f ]; do
  [ $(( $(now_ms) - t )) -lt 60000 ] ||
    die promote "the promoted server is not out of recovery within 60 s over --admin-dsn (old primary fenced=$FENCED)"
  sleep 0.1
done
PROMOTED=$(now_ms)
PROMOTE_MS=$(( PROMOTED - t )) RTO_MS=$(( PROMOTED - SINCE_MS ))
log info promoted "promote_ms=$PROMOTE_MS rto_ms=$RTO_MS"
NEW_DSN=$WORKER_DSN
if [ -n "$REPL_DSN" ]; then
  psql "$REPL_DSN" -X -Atq -c 'SELECT last_seq FROM change_counter' > /dev/null 2>&1 ||
    die replicator_login "the replicator's DSN cannot read change_counter on the new primary"
  log info replicator_login_ok ""
fi

# 5. rewind the group
REWIND=$("$BIN" worker rewind --brokers "$BROKERS" --dsn "$NEW_DSN" --group "$GROUP" --timeout 120) ||
  die rewind "soundhash worker rewind failed"
log info group_rewound "replay=$(jq -r .events_to_replay <<< "$REWIND")"

# 6. a new epoch only when the edges may hold changes the new primary lacks
if [ "$NEW_EPOCH" = 1 ]; then
  psql "$ADMIN_DSN" -X -Atq -v ON_ERROR_STOP=1 -c "UPDATE replication_epoch SET epoch = epoch + 1,
    start_seq = (SELECT last_seq FROM change_counter), changed_at = now()" > /dev/null ||
    die new_epoch "cannot start a new epoch"
  log info new_epoch ""
fi

# 7. workers start against the new primary
if [ -n "$START_CMD" ]; then NEW_DSN="$NEW_DSN" bash -c "$START_CMD" || die start_workers "$START_CMD failed"; fi
log info takeover_done "total_ms=$(( $(now_ms) - T0 ))"
jq -cn --arg dsn "$NEW_DSN" --argjson promote "$PROMOTE_MS" --argjson rto "$RTO_MS" \
  --argjson fenced "$FENCED" --argjson rewind "$REWIND" --argjson epoch "$NEW_EPOCH" \
  --argjson total "$(( $(now_ms) - T0 ))" \
  '{new_dsn: $dsn, promote_ms: $promote, rto_ms: $rto, old_fenced: $fenced,
    events_to_replay: $rewind.events_to_replay, new_epoch: ($epoch == 1), total_ms: $total}'
