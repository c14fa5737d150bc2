/* sh_pgutil.h — libpq at the boundary: translating PostgreSQL's errors into SH_E* codes, and
 * reading the columns of binary results. Shared by every module that talks to PostgreSQL (the
 * primary's writes and change log, the replicator); no connection state lives here.
 *
 * Errors. PostgreSQL reports a failed statement with a SQLSTATE; a failed connection carries none
 * and is classified by libpq's text. Both end in one of two codes:
 *   SH_ETRANSIENT  retry later: the connection is lost, refused, unreachable, timed out, the
 *                  server is starting up or has too many clients, or the SQLSTATE class is 08
 *                  (connection exception), 40 (serialization failure, deadlock), 53 (insufficient
 *                  resources) or 57 (operator intervention: admin shutdown, statement timeout)
 *   SH_EDB         permanent: constraint violations, malformed input, permissions, and at connect
 *                  time authentication, a missing database or role, a pg_hba rejection
 * The message in `e` carries PostgreSQL's text (first line, trailing newline removed) and the
 * SQLSTATE when there is one.
 *
 * Columns. Results are requested in binary (resultFormat 1) and every query casts each column to
 * the exact type its reader expects (::int8 for sh_pg_col_i64, ::int4, ::bool, ::float8, ::text,
 * ::bytea). A value whose length does not match the type sets *bad (the readers never read past a
 * value); SQL NULL reads as 0 / NULL without setting *bad. Readers never clear *bad, so a row is
 * read with one flag and checked once. Timestamps are read as int8 milliseconds since the Unix
 * epoch: select them through SH_PG_EPOCH_MS("t.created_at").
 */
#ifndef SH_PGUTIL_H
#define SH_PGUTIL_H

#include "sh_err.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* SQL text selecting timestamp column `col` (a string literal) as int8 ms since the epoch. */
#define SH_PG_EPOCH_MS(col) "(extract(epoch FROM " col ") * 1000)::int8"

/* ---- errors ---- */

/* 1 when `sqlstate` (5 characters, may be NULL) names a class worth retrying (08, 40, 53, 57)
 * or is 25006 (a read-only server: a standby or a fenced old primary). */
int sh_pg_sqlstate_transient(const char *sqlstate);

/* Copies libpq message `src` (NULL → "") into dst[cap] without trailing newlines and spaces. */
void sh_pg_trim_copy(char *dst, size_t cap, const char *src);

/* A connection `c` whose PQstatus is not CONNECTION_OK (after PQconnectdb*): SH_EDB when the
 * server answered "no" (authentication, missing database or role, pg_hba, a password needed),
 * SH_ETRANSIENT otherwise. Returns the code, with "postgres connect: <libpq text>" in `e`. Does
 * not free `c`. */
int sh_pg_connect_error(PGconn *c, sh_err *e);

/* A failed statement: `r` is its result (or NULL when libpq returned none, or when the failure
 * was on the connection itself), `conn` the connection it ran on (may be NULL). SH_ETRANSIENT when
 * the connection is gone (NULL or not CONNECTION_OK) or the SQLSTATE is transient, else SH_EDB;
 * the message is "postgres <what>: <text> (SQLSTATE xxxxx)". Returns the code. The caller decides
 * what to do with a lost connection (sh_pg_conn_lost tells). */
int sh_pg_result_error(PGconn *conn, const PGresult *r, const char *what, sh_err *e);

/* 1 when `conn` is NULL or no longer CONNECTION_OK. */
int sh_pg_conn_lost(const PGconn *conn);

/* A libpq notice processor (PQsetNoticeProcessor(c, sh_pg_notice_to_log, NULL)): server NOTICEs
 * and WARNINGs go to the log at debug level, first line only, instead of raw to stderr. */
void sh_pg_notice_to_log(void *arg, const char *message);

/* ---- binary result columns (see the header comment for the contract) ---- */

int64_t sh_pg_col_i64(const PGresult *r, int row, int col, int *bad);
int32_t sh_pg_col_i32(const PGresult *r, int row, int col, int *bad);
int sh_pg_col_bool(const PGresult *r, int row, int col, int *bad);
double sh_pg_col_f64(const PGresult *r, int row, int col, int *bad);

/* A malloc()ed NUL-terminated copy of a text value (caller frees); NULL for SQL NULL, or NULL
 * with *bad set when out of memory. */
char *sh_pg_col_str(const PGresult *r, int row, int col, int *bad);

/* A malloc()ed copy of a bytea value (caller frees), its length in *len; NULL (and *len 0) for
 * SQL NULL, or NULL with *bad set when out of memory. */
void *sh_pg_col_bytes(const PGresult *r, int row, int col, size_t *len, int *bad);

/* Copies a text value of exactly `len` bytes into dst[len] (no terminator added) and returns 1;
 * returns 0 and leaves dst alone when the value is NULL or of another length (e.g. a hex
 * digest that is optional). */
int sh_pg_col_fixed(const PGresult *r, int row, int col, char *dst, size_t len);

/* Decodes one row of `r` into `item`; nonzero when the row has an unexpected shape. */
typedef int (*sh_pg_row_fn)(const PGresult *r, int row, void *item);

/* Decodes every row of `r` into a calloc()ed array of `size`-byte items: *v (caller frees, NULL
 * when there are no rows). *n counts the items decoded so far, so that on error the caller's
 * clear function frees exactly those (fn must leave a failed item zeroed). Returns 0, SH_ENOMEM,
 * or SH_EDB ("postgres: unexpected <what> row"). */
int sh_pg_rows_decode(const PGresult *r, size_t size, sh_pg_row_fn fn, void **v, size_t *n,
                      const char *what, sh_err *e);

#endif
