/* bench_primary.c — how to store fingerprints in the primary: one compressed posting blob per track
 * (what sh_primary does) vs one row per posting written with COPY (Dejavu's layout, with the
 * index on hash that matching needs). Starts a private PostgreSQL in a temp dir, writes the same
 * synthetic tracks both ways, and prints tracks/s, postings/s (overall and over the last 10% of
 * tracks, to show how each scales as the table grows), on-disk size, and the time to read
 * everything back (what a shard bootstrap does).
 *
 *   bench_primary [TRACKS [POSTINGS_PER_TRACK]]     defaults 300 and 7000 (≈ a 3.5 min track at
 *                                                   the fingerprinter's ~35 hashes/s)
 */
#include "sh_clock.h"
#include "sh_fpblob.h"
#include "sh_pgctl.h"
#include "sh_primary.h"

#include <ftw.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 32 /* tracks per sh_primary_write_tracks call, as a worker would batch */

/* Deterministic synthetic postings: random 32-bit hashes, times rising a few frames at a time. */
static void make_hashes(sh_hash *h, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    uint32_t t = 0;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        t += (uint32_t)(x >> 61); /* 0..7 frames */
        h[i] = (sh_hash){.hash = (uint32_t)(x >> 16), .t = t};
    }
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int64_t one_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int64_t v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                    ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                    : -1;
    PQclear(r);
    return v;
}

static int exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "bench_primary: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

typedef struct result {
    double secs, tail_secs;
    size_t tail_tracks; /* tracks written during tail_secs */
    int64_t bytes;
    double read_secs;
} result;

static void report(const char *name, const result *r, size_t tracks, size_t per)
{
    printf("%-18s %9.0f tracks/s %11.0f postings/s  last10%% %9.0f tracks/s  size %8.1f MiB "
           "(%6.1f B/posting)  read-all %6.2f s\n",
           name, (double)tracks / r->secs, (double)(tracks * per) / r->secs,
           (double)r->tail_tracks / r->tail_secs, (double)r->bytes / 1048576.0,
           (double)r->bytes / (double)(tracks * per), r->read_secs);
}

/* Blob layout through the real API: encode + pipelined per-track transactions. */
static int bench_blob(sh_primary *db, PGconn *c, size_t tracks, size_t per, result *out)
{
    sh_hash *h = malloc(per * sizeof *h);
    sh_track_write tw[BATCH];
    char ids[BATCH][32];
    int res[BATCH];
    size_t tail_from = tracks - (tracks / 10 ? tracks / 10 : 1);
    double t0 = sh_clock_mono_s(), tail0 = t0;
    for (size_t i = 0; i < tracks && h; i += BATCH) {
        size_t m = tracks - i < BATCH ? tracks - i : BATCH;
        for (size_t k = 0; k < m; k++) {
            make_hashes(h, per, i + k);
            uint8_t *blob = NULL;
            size_t len = 0;
            if (sh_fpblob_encode(h, per, 0, &blob, &len, NULL))
                return 1;
            snprintf(ids[k], sizeof ids[k], "bench-%07zu", i + k);
            tw[k] = (sh_track_write){.external_id = ids[k],
                                     .tenant = "bench",
                                     .fp_version = 1,
                                     .version = 1,
                                     .duration_s = per / 35.0,
                                     .n_hashes = (uint32_t)per,
                                     .fp_blob = blob,
                                     .fp_blob_len = len};
        }
        if (i <= tail_from && tail_from < i + m) {
            tail0 = sh_clock_mono_s();
            out->tail_tracks = tracks - i; /* from the batch holding the last 10% */
        }
        sh_err e = {0};
        int rc = sh_primary_write_tracks(db, tw, m, res, NULL, &e);
        for (size_t k = 0; k < m; k++) {
            free((void *)tw[k].fp_blob);
            rc = rc ? rc : res[k];
        }
        if (rc) {
            fprintf(stderr, "bench_primary: blob write: %s\n", e.msg);
            return 1;
        }
    }
    double t1 = sh_clock_mono_s();
    free(h);
    out->secs = t1 - t0;
    out->tail_secs = t1 - tail0;
    exec_ok(c, "VACUUM ANALYZE tracks, fingerprints");
    out->bytes = one_int(c, "SELECT pg_total_relation_size('fingerprints') + "
                            "pg_total_relation_size('tracks')");
    double r0 = sh_clock_mono_s();
    PGresult *r =
        PQexecParams(c, "SELECT external_id, blob FROM fingerprints", 0, NULL, NULL, NULL, NULL, 1);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && (size_t)PQntuples(r) == tracks;
    for (int i = 0; ok && i < PQntuples(r); i++) { /* decode like a shard bootstrap would */
        sh_hash *d = NULL;
        size_t n = 0;
        ok = sh_fpblob_decode(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), 0, &d, &n, NULL) ==
                 0 &&
             n == per;
        free(d);
    }
    PQclear(r);
    out->read_secs = sh_clock_mono_s() - r0;
    return ok ? 0 : 1;
}

/* Row-per-posting layout: one transaction per track with COPY, index on hash. */
static int bench_rows(PGconn *c, size_t tracks, size_t per, result *out)
{
    if (!exec_ok(c, "CREATE TABLE bench_postings (track_id integer NOT NULL, "
                    "hash integer NOT NULL, t integer NOT NULL)") ||
        !exec_ok(c, "CREATE INDEX bench_postings_hash ON bench_postings (hash)"))
        return 1;
    sh_hash *h = malloc(per * sizeof *h);
    char *buf = malloc(per * 40 + 1);
    size_t tail_from = tracks - (tracks / 10 ? tracks / 10 : 1);
    double t0 = sh_clock_mono_s(), tail0 = t0;
    for (size_t i = 0; i < tracks && h && buf; i++) {
        if (i == tail_from) {
            tail0 = sh_clock_mono_s();
            out->tail_tracks = tracks - i;
        }
        make_hashes(h, per, i);
        size_t o = 0;
        for (size_t k = 0; k < per; k++)
            o += (size_t)snprintf(buf + o, 40, "%zu\t%d\t%u\n", i, (int32_t)h[k].hash, h[k].t);
        if (!exec_ok(c, "BEGIN"))
            return 1;
        PGresult *cr = PQexec(c, "COPY bench_postings FROM STDIN");
        int copying = PQresultStatus(cr) == PGRES_COPY_IN;
        PQclear(cr);
        if (!copying)
            return 1;
        if (PQputCopyData(c, buf, (int)o) != 1 || PQputCopyEnd(c, NULL) != 1)
            return 1;
        PGresult *r = PQgetResult(c);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        while ((r = PQgetResult(c)) != NULL)
            PQclear(r);
        if (!ok || !exec_ok(c, "COMMIT"))
            return 1;
    }
    double t1 = sh_clock_mono_s();
    free(h);
    free(buf);
    out->secs = t1 - t0;
    out->tail_secs = t1 - tail0;
    exec_ok(c, "VACUUM ANALYZE bench_postings");
    out->bytes = one_int(c, "SELECT pg_total_relation_size('bench_postings')");
    double r0 = sh_clock_mono_s();
    int64_t n = one_int(c, "SELECT count(*) FROM (SELECT * FROM bench_postings "
                           "ORDER BY track_id) s");
    out->read_secs = sh_clock_mono_s() - r0;
    return n == (int64_t)(tracks * per) ? 0 : 1;
}

int main(int argc, char **argv)
{
    size_t tracks = argc > 1 ? strtoul(argv[1], NULL, 10) : 300;
    size_t per = argc > 2 ? strtoul(argv[2], NULL, 10) : 7000;
    if (tracks < 1 || tracks > 1000000 || per < 1 || per > 1000000) {
        fprintf(stderr, "usage: bench_primary [TRACKS [POSTINGS_PER_TRACK]]\n");
        return 2;
    }
    char tmp[] = "/tmp/sh-bench-primary.XXXXXX", dir[64], dsn[SH_PGCTL_DSN_MAX];
    if (!mkdtemp(tmp))
        return 1;
    snprintf(dir, sizeof dir, "%s/pg", tmp);
    sh_pgctl_opts o = {.dir = dir};
    sh_err e = {0};
    int rc = 1;
    sh_primary *db = NULL;
    PGconn *c = NULL;
    if (sh_pgctl_start(&o, dsn, sizeof dsn, &e)) {
        fprintf(stderr, "bench_primary: %s\n", e.msg);
        goto out;
    }
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = dsn;
    pc.statement_timeout_ms = 3600 * 1000;
    if (sh_primary_new(&pc, &db, &e) || sh_primary_migrate(db, NULL, 0, NULL, &e)) {
        fprintf(stderr, "bench_primary: %s\n", e.msg);
        goto out;
    }
    c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK)
        goto out;
    printf("bench_primary: %zu tracks x %zu postings = %zu postings, PostgreSQL %d, "
           "fsync on\n",
           tracks, per, tracks * per, PQserverVersion(c) / 10000);
    result blob = {0}, rows = {0};
    if (bench_blob(db, c, tracks, per, &blob) || bench_rows(c, tracks, per, &rows)) {
        fprintf(stderr, "bench_primary: run failed\n");
        goto out;
    }
    report("blob per track", &blob, tracks, per);
    report("row per posting", &rows, tracks, per);
    printf("blob/rows: %.1fx faster writes, %.1fx smaller, %.1fx faster read-all\n",
           rows.secs / blob.secs, (double)rows.bytes / (double)blob.bytes,
           rows.read_secs / blob.read_secs);
    rc = 0;
out:
    PQfinish(c);
    sh_primary_free(db);
    sh_pgctl_stop(&o, NULL);
    nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
