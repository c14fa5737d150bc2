/* sh_primary_int.h — private to core/runtime/sh_primary*.c: the connection handle and the statement
 * helpers that sh_primary.c (writes, reads) and sh_primary_repl.c (replication reads, pruning)
 * share. Nothing outside core/runtime/sh_primary*.c includes it. */
#ifndef SH_PRIMARY_INT_H
#define SH_PRIMARY_INT_H

#include "sh_primary.h"

#include <libpq-fe.h>

struct sh_primary {
    PGconn *conn;
    char *dsn;
    char *password;
    char *app_name;
    int connect_timeout_s;
    int statement_timeout_ms;
    int dsn_has_timeout; /* the DSN sets connect_timeout itself: keep it */
    int listening;       /* LISTEN sh_changes issued on this connection; -1: refused (a standby:
                            poll only, LISTEN retried after a while) */
    double listen_retry_ms; /* monotonic ms after which a refused LISTEN is tried again */
    int allow_fenced;    /* connect to a fenced server too (status, fence) */
};

/* Reconnects if the connection is gone. 0, SH_ETRANSIENT, SH_EDB. */
int sh_ensure(sh_primary *db, sh_err *e);

/* Runs a statement with text parameters and binary results (NULL params are SQL NULL). On success
 * *out owns the result (PQclear it). Errors as sh_pgutil.h; a lost connection is dropped. */
int sh_query(sh_primary *db, const char *sql, int n, const char *const *vals, const int *lens,
             const int *fmts, PGresult **out, sh_err *e, const char *what);

/* A statement without parameters (embedded SQL, BEGIN/COMMIT). 0 or SH_ETRANSIENT/SH_EDB. */
int sh_exec(sh_primary *db, const char *sql, sh_err *e, const char *what);

/* Rolls back an open transaction if the connection is alive; returns rc. */
int sh_rollback(sh_primary *db, int rc);

/* The columns of one track as sh_track_from_row reads them (0..12; a blob may follow as 13),
 * from `tracks t`. Shared by the track reads and the snapshot cursor. */
#define SQL_TRACK_COLS                                                                             \
    "t.id::int8, t.external_id::text, t.tenant::text, t.metadata::text, t.source_uri::text, "      \
    "t.sha256::text, t.duration_s::float8, t.fp_version::int4, t.version::int8, "                  \
    "(t.status = 'deleted')::bool, t.n_hashes::int8, "                                             \
    SH_PG_EPOCH_MS("t.created_at") ", "                                                            \
    SH_PG_EPOCH_MS("t.updated_at")

/* Decodes a row selected with SQL_TRACK_COLS (blob at `blob_col`, or -1) into `t`; SH_EDB (and a
 * zeroed `t`) when the row has another shape. */
int sh_track_from_row(const PGresult *r, int row, sh_track *t, int blob_col);

#endif
