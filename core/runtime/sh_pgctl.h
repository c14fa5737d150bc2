/* sh_pgctl.h — a private, local PostgreSQL cluster for development, tests and the demo
 * (`soundhash db start/stop`). Not for production: see ops/postgresql.md for a real server.
 *
 * Layout of DIR (created 0700):
 *   DIR/data/        PGDATA (initdb; wal_level=logical, listen_addresses=127.0.0.1)
 *   DIR/sock/        the unix socket (omitted when DIR's path is too long for sun_path)
 *   DIR/pgpass       0600 libpq password file for role "soundhash" (random password made at
 *                    initdb): the DSN names it with passfile=, so no secret is ever in argv/DSN
 *   DIR/port         the port last used; DIR/dsn the DSN; DIR/postgres.log the server log;
 *   DIR/ctl.log      output of initdb / pg_ctl
 *   DIR/role         a follower only: the role it followed the primary as (its DSN logs in as it)
 * Binaries: opts->bin_dir, else env SOUNDHASH_PG_BIN, else the highest /usr/lib/postgresql/N/bin.
 * PostgreSQL refuses to run as root: when the caller is root, initdb/pg_ctl run as opts->run_as
 * (default "postgres"), DIR is chowned to that user, and ancestors of DIR that user cannot
 * traverse get o+x (search only, logged as a warning) — e.g. a 0700 mktemp directory.
 */
#ifndef SH_PGCTL_H
#define SH_PGCTL_H

#include "sh_err.h"

#include <stddef.h>

typedef struct sh_pgctl_opts {
    const char *dir; /* required */
    int port;        /* 0: DIR/port if still free, else any free loopback port */
    const char *bin_dir;
    const char *run_as; /* only used when root; NULL → "postgres" */
    int timeout_s;      /* bound on initdb/pg_ctl waits; 0 → 60 */
    const char *follow_dsn; /* non-NULL: create DIR as a follower of this primary (see below) */
    const char *slot;       /* the follower's replication slot; NULL → "soundhash_follower" */
} sh_pgctl_opts;

#define SH_PGCTL_DSN_MAX 1024

/* Initialises DIR if needed (initdb, config, password, database "soundhash"), starts the server
 * unless it is already running, waits until it accepts connections, writes DIR/dsn and stores the
 * DSN in `dsn` (cap >= SH_PGCTL_DSN_MAX recommended). Errors: SH_EINVAL (no dir), SH_ENOTFOUND
 * (no PostgreSQL binaries / run_as user), SH_EIO (initdb/pg_ctl failed: message quotes the log),
 * SH_ETIMEOUT, SH_EDB (creating the database failed). */
int sh_pgctl_start(const sh_pgctl_opts *o, char *dsn, size_t cap, sh_err *e);

/* Followers (physical streaming standbys, ops/takeover.sh). With o->follow_dsn and no cluster in
 * DIR yet, sh_pgctl_start connects to that primary (its password from the DSN's passfile,
 * PGPASSWORD or ~/.pgpass; the role must have REPLICATION), copies the role and password into
 * DIR/pgpass, runs pg_basebackup with a replication slot (o->slot; an inactive slot of the same
 * name is dropped first) and -R (standby.signal, primary_conninfo naming DIR/pgpass), appends this
 * cluster's own settings and starts it as a hot standby: read-only, replaying the primary's WAL.
 * The DSN it returns is the follower's. A DIR that already holds a follower is just started;
 * one that holds a primary is SH_EINVAL. Errors also: SH_EDB (primary unreachable or refusing),
 * SH_EIO (pg_basebackup failed: the message quotes its log). */

/* The conninfo pg_basebackup gets for --follow DSN `dsn`: every keyword of it except dbname,
 * replication, passfile and every secret (libpq's dispchar '*': password, sslpassword, ...), plus
 * passfile=`passfile`. Errors: SH_EINVAL (bad DSN: the message is libpq's; too long for cap). */
int sh_pgctl_follow_conninfo(const char *dsn, const char *passfile, char *out, size_t cap,
                             sh_err *e);

/* Promotes the follower in DIR to a primary (pg_ctl promote, waits until it accepts writes).
 * Errors: SH_ENOTFOUND (no cluster), SH_EINVAL (not a follower, or not running), SH_EIO. */
int sh_pgctl_promote(const sh_pgctl_opts *o, sh_err *e);

/* Fences the cluster in DIR after a takeover replaced it: appends soundhash.fenced = on and
 * default_transaction_read_only = on to postgresql.auto.conf (works while it is down, so it comes
 * back fenced); when running, reloads and ends every client session. soundhash's own clients then
 * refuse to connect to it (sh_primary.h, allow_fenced) and plain SQL clients get read-only
 * transactions. Undo: remove the two lines (or ALTER SYSTEM RESET both) and reload. Errors:
 * SH_ENOTFOUND (no cluster), SH_EIO, SH_EDB. */
int sh_pgctl_fence(const sh_pgctl_opts *o, sh_err *e);

/* Stops the server in DIR (fast shutdown, waits). Returns 0 also when it was not running;
 * SH_ENOTFOUND when DIR holds no cluster; SH_EIO when pg_ctl fails. */
int sh_pgctl_stop(const sh_pgctl_opts *o, sh_err *e);

/* 1 when the server in DIR is running, 0 when not (or no cluster). */
int sh_pgctl_running(const sh_pgctl_opts *o);

#endif
