/* sh_pgutil.c — libpq error translation and binary column readers (see sh_pgutil.h). */
#include "sh_pgutil.h"

#include "sh_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---------------------------------------------------------------------------------- */

/* SQLSTATE classes worth retrying: 08 connection exception, 40 transaction rollback
 * (serialization failure, deadlock), 53 insufficient resources (too many connections, disk
 * full), 57 operator intervention (admin shutdown, crash shutdown, cannot connect now, query
 * canceled / statement timeout); and 25006 read_only_sql_transaction: a standby or a fenced old
 * primary (ops/takeover.sh) refuses writes, and a write must wait for the operator to point us at
 * the new primary rather than dead-letter the event. */
int sh_pg_sqlstate_transient(const char *st)
{
    if (!st || strlen(st) != 5)
        return 0;
    return !strncmp(st, "08", 2) || !strncmp(st, "40", 2) || !strncmp(st, "53", 2) ||
           !strncmp(st, "57", 2) || !strcmp(st, "25006");
}

void sh_pg_trim_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
    size_t n = strlen(dst);
    while (n && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
        dst[--n] = '\0';
}

/* libpq gives no SQLSTATE for connection failures, so this reads its text. */
int sh_pg_connect_error(PGconn *c, sh_err *e)
{
    char msg[400];
    sh_pg_trim_copy(msg, sizeof msg, PQerrorMessage(c));
    static const char *const permanent[] = {"authentication failed", "does not exist",
                                            "no pg_hba.conf entry",  "permission denied",
                                            "no password supplied",  "invalid "};
    int code = SH_ETRANSIENT;
    if (PQconnectionNeedsPassword(c))
        code = SH_EDB;
    for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++) {
        if (strstr(msg, permanent[i]))
            code = SH_EDB;
    }
    return sh_err_set(e, code, "postgres connect: %s", msg);
}

int sh_pg_conn_lost(const PGconn *conn)
{
    return !conn || PQstatus(conn) != CONNECTION_OK;
}

int sh_pg_result_error(PGconn *conn, const PGresult *r, const char *what, sh_err *e)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *m = r ? PQresultErrorMessage(r) : "";
    if (!m || !*m)
        m = conn ? PQerrorMessage(conn) : "no connection";
    char msg[400];
    sh_pg_trim_copy(msg, sizeof msg, m);
    int code = (sh_pg_conn_lost(conn) || sh_pg_sqlstate_transient(st)) ? SH_ETRANSIENT : SH_EDB;
    return sh_err_set(e, code, "postgres %s: %s%s%s%s", what, msg, st ? " (SQLSTATE " : "",
                      st ? st : "", st ? ")" : "");
}

void sh_pg_notice_to_log(void *arg, const char *message)
{
    (void)arg;
    char q[512];
    size_t n = strcspn(message, "\n");
    char line[480];
    snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), message);
    SH_DEBUG("pg_notice", "msg=%s", sh_log_q(q, sizeof q, line));
}

/* ---- binary result columns ------------------------------------------------------------------- */

/* A big-endian integer of exactly `len` bytes; 0 for NULL; *bad on any other length. */
static uint64_t sh_pg_be(const PGresult *r, int row, int col, int len, int *bad)
{
    if (PQgetisnull(r, row, col))
        return 0;
    if (PQgetlength(r, row, col) != len) {
        *bad = 1;
        return 0;
    }
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < len; i++)
        v = v << 8 | p[i];
    return v;
}

int64_t sh_pg_col_i64(const PGresult *r, int row, int col, int *bad)
{
    return (int64_t)sh_pg_be(r, row, col, 8, bad);
}

int32_t sh_pg_col_i32(const PGresult *r, int row, int col, int *bad)
{
    return (int32_t)(uint32_t)sh_pg_be(r, row, col, 4, bad);
}

int sh_pg_col_bool(const PGresult *r, int row, int col, int *bad)
{
    return sh_pg_be(r, row, col, 1, bad) != 0;
}

double sh_pg_col_f64(const PGresult *r, int row, int col, int *bad)
{
    uint64_t u = sh_pg_be(r, row, col, 8, bad);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

char *sh_pg_col_str(const PGresult *r, int row, int col, int *bad)
{
    if (PQgetisnull(r, row, col))
        return NULL;
    size_t n = (size_t)PQgetlength(r, row, col);
    char *s = malloc(n + 1);
    if (!s) {
        *bad = 1;
        return NULL;
    }
    memcpy(s, PQgetvalue(r, row, col), n);
    s[n] = '\0';
    return s;
}

void *sh_pg_col_bytes(const PGresult *r, int row, int col, size_t *len, int *bad)
{
    *len = 0;
    if (PQgetisnull(r, row, col))
        return NULL;
    size_t n = (size_t)PQgetlength(r, row, col);
    void *p = malloc(n ? n : 1);
    if (!p) {
        *bad = 1;
        return NULL;
    }
    memcpy(p, PQgetvalue(r, row, col), n);
    *len = n;
    return p;
}

int sh_pg_col_fixed(const PGresult *r, int row, int col, char *dst, size_t len)
{
    if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) != len)
        return 0;
    memcpy(dst, PQgetvalue(r, row, col), len);
    return 1;
}

int sh_pg_rows_decode(const PGresult *r, size_t size, sh_pg_row_fn fn, void **v, size_t *n,
                      const char *what, sh_err *e)
{
    size_t rows = (size_t)PQntuples(r);
    *n = 0;
    *v = rows ? calloc(rows, size) : NULL;
    if (rows && !*v)
        return sh_err_set(e, SH_ENOMEM, "%s rows: out of memory", what);
    for (size_t i = 0; i < rows; i++, (*n)++)
        if (fn(r, (int)i, (char *)*v + i * size))
            return sh_err_set(e, SH_EDB, "postgres: unexpected %s row", what);
    return 0;
}
