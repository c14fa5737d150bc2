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
} sh_pgctl_opts;

#define SH_PGCTL_DSN_MAX 1024

/* Initialises DIR if needed (initdb, config, password, database "soundhash"), starts the server
 * unless it is already running, waits until it accepts connections, writes DIR/dsn and stores the
 * DSN in `dsn` (cap >= SH_PGCTL_DSN_MAX recommended). Errors: SH_EINVAL (no dir), SH_ENOTFOUND
 * (no PostgreSQL binaries / run_as user), SH_EIO (initdb/pg_ctl failed: message quotes the log),
 * SH_ETIMEOUT, SH_EDB (creating the database failed). */
int sh_pgctl_start(const sh_pgctl_opts *o, char *dsn, size_t cap, sh_err *e);

/* Stops the server in DIR (fast shutdown, waits). Returns 0 also when it was not running;
 * SH_ENOTFOUND when DIR holds no cluster; SH_EIO when pg_ctl fails. */
int sh_pgctl_stop(const sh_pgctl_opts *o, sh_err *e);

/* 1 when the server in DIR is running, 0 when not (or no cluster). */
int sh_pgctl_running(const sh_pgctl_opts *o);

#endif
