/* sh_primary_repl.c — the primary as the replicator reads it: the epoch, the last seq, consistent
 * snapshot reads and change-log retention. The change log itself is read by
 * sh_primary_changes_since (sh_primary.c). */
#include "sh_primary.h"
#include "sh_primary_int.h"
#include "sh_fpblob.h"
#include "sh_pgutil.h"
#include "sh_shardmap.h"
#include "sh_shardsum.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sh_primary_replication_get(sh_primary *db, int64_t *epoch, int64_t *start_seq, sh_err *e)
{
    PGresult *r;
    int rc = sh_query(db, "SELECT epoch::int8, start_seq::int8 FROM replication_epoch WHERE id = 1",
                      0, NULL, NULL, NULL, &r, e, "replication epoch");
    if (rc)
        return sh_err_wrap(e, rc, "is the database migrated (`soundhash db migrate`)?");
    int bad = 0;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return sh_err_set(e, SH_EDB, "replication_epoch has no row: run `soundhash db migrate`");
    }
    *epoch = sh_pg_col_i64(r, 0, 0, &bad);
    *start_seq = sh_pg_col_i64(r, 0, 1, &bad);
    PQclear(r);
    return bad ? sh_err_set(e, SH_EDB, "postgres: unexpected replication_epoch row") : 0;
}

int sh_primary_last_seq(sh_primary *db, int64_t *seq, sh_err *e)
{
    PGresult *r;
    int rc = sh_query(db, "SELECT last_seq::int8 FROM change_counter WHERE id = 1", 0, NULL, NULL,
                      NULL, &r, e, "last seq");
    if (rc)
        return rc;
    int bad = 0;
    *seq = PQntuples(r) == 1 ? sh_pg_col_i64(r, 0, 0, &bad) : 0;
    PQclear(r);
    return bad ? sh_err_set(e, SH_EDB, "postgres: unexpected change_counter row") : 0;
}

/* ---- snapshot reads ----------------------------------------------------------------------- */

int sh_primary_snap_begin(sh_primary *db, int64_t *seq, sh_err *e)
{
    int rc = sh_ensure(db, e);
    if (rc == 0)
        rc = sh_exec(db, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", e, "snapshot begin");
    if (rc)
        return rc;
    /* The first statement fixes the transaction's snapshot; the counter is bumped by the last
     * statement of every write transaction, so it names exactly the changes this read sees. */
    rc = sh_primary_last_seq(db, seq, e);
    if (rc == 0)
        rc = sh_exec(db,
                     "DECLARE sh_snap NO SCROLL CURSOR FOR "
                     "SELECT " SQL_TRACK_COLS ", f.blob::bytea "
                     "FROM tracks t LEFT JOIN fingerprints f ON f.external_id = t.external_id "
                     "WHERE t.status = 'active' ORDER BY t.external_id",
                     e, "snapshot cursor");
    if (rc)
        sh_rollback(db, rc);
    return rc;
}

static int snap_row(const PGresult *r, int row, void *item)
{
    return sh_track_from_row(r, row, item, 13);
}

int sh_primary_snap_next(sh_primary *db, size_t limit, sh_track_list *out, sh_err *e)
{
    if (limit == 0 || limit > SH_PRIMARY_LIST_MAX)
        return sh_err_set(e, SH_EINVAL, "snapshot: bad limit %zu", limit);
    char n[24];
    snprintf(n, sizeof n, "%zu", limit);
    char sql[64];
    snprintf(sql, sizeof sql, "FETCH FORWARD %s FROM sh_snap", n);
    PGresult *r;
    int rc = sh_query(db, sql, 0, NULL, NULL, NULL, &r, e, "snapshot fetch");
    if (rc)
        return rc;
    void *v = NULL;
    rc = sh_pg_rows_decode(r, sizeof *out->v, snap_row, &v, &out->n, "snapshot", e);
    out->v = v;
    PQclear(r);
    if (rc)
        sh_track_list_clear(out);
    return rc;
}

int sh_primary_snap_fp_versions(sh_primary *db, int32_t *v, size_t cap, size_t *n, sh_err *e)
{
    PGresult *r;
    int rc = sh_query(db,
                      "SELECT DISTINCT fp_version::int4 FROM tracks WHERE status = 'active' "
                      "ORDER BY 1",
                      0, NULL, NULL, NULL, &r, e, "snapshot fp_versions");
    if (rc)
        return rc;
    int bad = 0;
    *n = (size_t)PQntuples(r);
    for (size_t i = 0; i < *n && i < cap; i++)
        v[i] = sh_pg_col_i32(r, (int)i, 0, &bad);
    PQclear(r);
    return bad ? sh_err_set(e, SH_EDB, "postgres: unexpected fp_version row") : 0;
}

void sh_primary_snap_end(sh_primary *db)
{
    sh_rollback(db, 0); /* read only: nothing to commit */
}

int sh_primary_shard_sums(sh_primary *db, int nshards, sh_shardsum *sums, int64_t *seq,
                          sh_primary_track_fn each, void *ud, sh_err *e)
{
    if (nshards < 1)
        return sh_err_set(e, SH_EINVAL, "shard sums: bad shard count %d", nshards);
    for (int s = 0; s < nshards; s++)
        sums[s] = (sh_shardsum)SH_SHARDSUM_INIT;
    int rc = sh_primary_snap_begin(db, seq, e);
    if (rc)
        return rc;
    while (rc == 0) {
        sh_track_list l = {0};
        if ((rc = sh_primary_snap_next(db, 256, &l, e)) || l.n == 0) {
            sh_track_list_clear(&l);
            break;
        }
        for (size_t i = 0; i < l.n && rc == 0; i++) {
            const sh_track *t = &l.v[i];
            sh_hash *h = NULL;
            size_t n = 0, idlen = strlen(t->external_id);
            if (t->fp_blob_len)
                rc = sh_fpblob_decode(t->fp_blob, t->fp_blob_len, 0, &h, &n, e);
            int s = (int)sh_shard_of(t->external_id, idlen, (uint32_t)nshards);
            if (rc == 0)
                rc = sh_shardsum_add(&sums[s], t->external_id, idlen, t->version, t->fp_version,
                                     h, n, e);
            if (rc == 0 && each)
                each(t, s, ud);
            free(h);
        }
        sh_track_list_clear(&l);
    }
    sh_primary_snap_end(db);
    return rc;
}

/* ---- retention ---------------------------------------------------------------------------- */

int sh_primary_prune(sh_primary *db, int64_t upto_seq, int64_t tombstone_age_s, int64_t *changes,
                     int64_t *tombstones, sh_err *e)
{
    if (upto_seq < 0 || tombstone_age_s < 0)
        return sh_err_set(e, SH_EINVAL, "prune: negative seq or age");
    char seq[24], age[24];
    snprintf(seq, sizeof seq, "%" PRId64, upto_seq);
    snprintf(age, sizeof age, "%" PRId64, tombstone_age_s);
    const char *p[2] = {seq, age};
    PGresult *r;
    /* One statement (one transaction). A tombstone stays while the log still holds its delete:
     * the replicator may yet publish it. */
    int rc = sh_query(
        db,
        "WITH c AS (DELETE FROM change_log WHERE seq <= $1::int8 RETURNING 1), "
        "t AS (DELETE FROM tracks tr WHERE tr.status = 'deleted' "
        "  AND tr.updated_at < now() - make_interval(secs => $2::int8) "
        "  AND NOT EXISTS (SELECT 1 FROM change_log l WHERE l.external_id = tr.external_id "
        "                  AND l.seq > $1::int8) RETURNING 1) "
        "SELECT (SELECT count(*) FROM c)::int8, (SELECT count(*) FROM t)::int8",
        2, p, NULL, NULL, &r, e, "prune");
    if (rc)
        return rc;
    int bad = 0;
    int64_t nc = sh_pg_col_i64(r, 0, 0, &bad), nt = sh_pg_col_i64(r, 0, 1, &bad);
    PQclear(r);
    if (bad)
        return sh_err_set(e, SH_EDB, "postgres: unexpected prune row");
    if (changes)
        *changes = nc;
    if (tombstones)
        *tombstones = nt;
    return 0;
}
