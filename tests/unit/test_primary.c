/* test_primary.c — the PostgreSQL primary against a real private server (one per test binary,
 * started with sh_pgctl into a temp dir): round trips, version checks, tombstones, gap-free
 * commit-ordered change log under concurrent writers, transient errors when the server stops,
 * SQL injection stored literally, batch writes with per-track atomicity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sh_fpblob.h"
#include "sh_pgctl.h"
#include "sh_primary.h"

#include <libpq-fe.h>

#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
    char tmp[64];
    char dir[96];
    char dsn[SH_PGCTL_DSN_MAX];
    sh_primary *db;
} fixture;

static fixture F;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static sh_pgctl_opts pg_opts(void)
{
    sh_pgctl_opts o = {.dir = F.dir, .timeout_s = 60};
    return o;
}

static sh_primary *connect_db(void)
{
    sh_primary_config c;
    sh_primary_config_default(&c);
    c.dsn = F.dsn;
    sh_primary *db = NULL;
    sh_err e = {0};
    int rc = sh_primary_new(&c, &db, &e);
    if (rc)
        fprintf(stderr, "connect: %s\n", e.msg);
    assert_int_equal(rc, 0);
    return db;
}

static int setup(void **state)
{
    (void)state;
    snprintf(F.tmp, sizeof F.tmp, "/tmp/sh-ut-primary.XXXXXX");
    if (!mkdtemp(F.tmp))
        return -1;
    snprintf(F.dir, sizeof F.dir, "%s/pg", F.tmp);
    sh_err e = {0};
    sh_pgctl_opts o = pg_opts();
    if (sh_pgctl_start(&o, F.dsn, sizeof F.dsn, &e)) {
        fprintf(stderr, "test_primary: cannot start PostgreSQL: %s\n", e.msg);
        return -1;
    }
    sh_primary_config c;
    sh_primary_config_default(&c);
    c.dsn = F.dsn;
    if (sh_primary_new(&c, &F.db, &e) || sh_primary_migrate(F.db, NULL, 0, NULL, &e)) {
        fprintf(stderr, "test_primary: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sh_primary_free(F.db);
    sh_pgctl_opts o = pg_opts();
    sh_pgctl_stop(&o, NULL);
    nftw(F.tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* A track with `n` synthetic postings encoded as a real blob; the caller frees tw->fp_blob. */
static sh_track_write make_track(const char *id, const char *tenant, int64_t version, size_t n)
{
    sh_hash *h = calloc(n ? n : 1, sizeof *h);
    assert_non_null(h);
    for (size_t i = 0; i < n; i++)
        h[i] = (sh_hash){.hash = (uint32_t)(i * 2654435761u) ^ (uint32_t)version,
                         .t = (uint32_t)(i / 3)};
    uint8_t *blob = NULL;
    size_t len = 0;
    assert_int_equal(sh_fpblob_encode(h, n, 0, &blob, &len, NULL), 0);
    free(h);
    sh_track_write tw = {.external_id = id,
                         .tenant = tenant,
                         .metadata_json = "{\"title\": \"t\"}",
                         .sha256_hex = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
                         .source_uri = "file:///media/a.ogg",
                         .duration_s = 12.5,
                         .fp_version = 1,
                         .version = version,
                         .n_hashes = (uint32_t)n,
                         .fp_blob = blob,
                         .fp_blob_len = len};
    return tw;
}

static int write_n(sh_primary *db, const char *id, int64_t version, size_t n, int64_t *seq)
{
    sh_track_write tw = make_track(id, "acme", version, n);
    int rc = sh_primary_write_track(db, &tw, seq, NULL);
    free((void *)tw.fp_blob);
    return rc;
}

static sh_primary_counts counts(void)
{
    sh_primary_counts k;
    assert_int_equal(sh_primary_counts_get(F.db, &k, NULL), 0);
    return k;
}

static void test_migrate_idempotent(void **state)
{
    (void)state;
    size_t n = 99;
    int v[8];
    assert_int_equal(sh_primary_migrate(F.db, v, 8, &n, NULL), 0);
    assert_int_equal(n, 0); /* everything was applied by setup */
    assert_int_equal(sh_primary_applied_versions(F.db, v, 8, &n, NULL), 0);
    assert_int_equal(n, (size_t)sh_primary_schema_version());
    for (size_t i = 0; i < n; i++)
        assert_int_equal(v[i], (int)i + 1);
}

static void test_write_read_back(void **state)
{
    (void)state;
    sh_track_write tw = make_track("rt-1", "acme", 1000, 500);
    int64_t seq = 0;
    assert_int_equal(sh_primary_write_track(F.db, &tw, &seq, NULL), 0);
    assert_true(seq > 0);
    sh_track t = {0};
    assert_int_equal(sh_primary_get_track(F.db, "rt-1", SH_PRIMARY_WITH_BLOB, &t, NULL), 0);
    assert_string_equal(t.external_id, "rt-1");
    assert_string_equal(t.tenant, "acme");
    assert_string_equal(t.metadata_json, "{\"title\": \"t\"}");
    assert_string_equal(t.source_uri, "file:///media/a.ogg");
    assert_string_equal(t.sha256_hex,
                        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    assert_true(t.duration_s == 12.5);
    assert_int_equal(t.fp_version, 1);
    assert_int_equal(t.version, 1000);
    assert_int_equal(t.deleted, 0);
    assert_int_equal(t.n_hashes, 500);
    assert_true(t.id > 0);
    assert_int_equal(t.fp_blob_len, tw.fp_blob_len);
    assert_memory_equal(t.fp_blob, tw.fp_blob, tw.fp_blob_len);
    sh_hash *h = NULL;
    size_t n = 0;
    assert_int_equal(sh_fpblob_decode(t.fp_blob, t.fp_blob_len, 0, &h, &n, NULL), 0);
    assert_int_equal(n, 500);
    free(h);
    sh_track_clear(&t);
    assert_int_equal(sh_primary_get_track(F.db, "rt-1", 0, &t, NULL), 0);
    assert_null(t.fp_blob); /* not asked for */
    sh_track_clear(&t);
    free((void *)tw.fp_blob);
    sh_err e = {0};
    assert_int_equal(sh_primary_get_track(F.db, "rt-missing", 0, &t, &e), SH_ENOTFOUND);
}

static void test_redelivery_is_noop(void **state)
{
    (void)state;
    int64_t seq;
    assert_int_equal(write_n(F.db, "rd-1", 500, 50, &seq), 0);
    sh_track before = {0}, after = {0};
    assert_int_equal(sh_primary_get_track(F.db, "rd-1", 0, &before, NULL), 0);
    sh_primary_counts k0 = counts();
    sh_err e = {0};
    sh_track_write tw = make_track("rd-1", "other-tenant", 500, 7);
    assert_int_equal(sh_primary_write_track(F.db, &tw, &seq, &e), SH_ESTALE);
    free((void *)tw.fp_blob);
    assert_int_equal(seq, 0);
    sh_primary_counts k1 = counts();
    assert_int_equal(k1.last_seq, k0.last_seq); /* no change appended */
    assert_int_equal(k1.changes, k0.changes);
    assert_int_equal(sh_primary_get_track(F.db, "rd-1", 0, &after, NULL), 0);
    assert_string_equal(after.tenant, "acme");
    assert_int_equal(after.n_hashes, 50);
    assert_int_equal(after.updated_ms, before.updated_ms);
    sh_track_clear(&before);
    sh_track_clear(&after);
}

static void test_older_never_overwrites(void **state)
{
    (void)state;
    assert_int_equal(write_n(F.db, "ov-1", 200, 20, NULL), 0);
    assert_int_equal(write_n(F.db, "ov-1", 150, 30, NULL), SH_ESTALE);
    assert_int_equal(write_n(F.db, "ov-1", 199, 30, NULL), SH_ESTALE);
    sh_track t = {0};
    assert_int_equal(sh_primary_get_track(F.db, "ov-1", SH_PRIMARY_WITH_BLOB, &t, NULL), 0);
    assert_int_equal(t.version, 200);
    assert_int_equal(t.n_hashes, 20);
    size_t n = 0;
    assert_int_equal(sh_fpblob_count(t.fp_blob, t.fp_blob_len, &n, NULL), 0);
    assert_int_equal(n, 20);
    sh_track_clear(&t);
    assert_int_equal(write_n(F.db, "ov-1", 201, 40, NULL), 0); /* newer wins */
    assert_int_equal(sh_primary_get_track(F.db, "ov-1", 0, &t, NULL), 0);
    assert_int_equal(t.version, 201);
    assert_int_equal(t.n_hashes, 40);
    sh_track_clear(&t);
}

static void test_delete_tombstone(void **state)
{
    (void)state;
    assert_int_equal(write_n(F.db, "del-1", 10, 25, NULL), 0);
    sh_primary_counts k0 = counts();
    int64_t seq = 0;
    assert_int_equal(sh_primary_delete_track(F.db, "del-1", NULL, 20, &seq, NULL), 0);
    assert_int_equal(seq, k0.last_seq + 1);
    sh_primary_counts k1 = counts();
    assert_int_equal(k1.fingerprint_rows, k0.fingerprint_rows - 1);
    assert_int_equal(k1.hashes, k0.hashes - 25);
    assert_int_equal(k1.tracks_deleted, k0.tracks_deleted + 1);
    sh_track t = {0};
    assert_int_equal(sh_primary_get_track(F.db, "del-1", SH_PRIMARY_WITH_BLOB, &t, NULL), 0);
    assert_int_equal(t.deleted, 1);
    assert_int_equal(t.version, 20);
    assert_null(t.fp_blob);
    assert_string_equal(t.tenant, "acme"); /* kept from the live row */
    sh_track_clear(&t);
    /* An older upsert arriving after the delete stays out; so does a re-delivered delete. */
    assert_int_equal(write_n(F.db, "del-1", 15, 25, NULL), SH_ESTALE);
    assert_int_equal(sh_primary_delete_track(F.db, "del-1", NULL, 20, NULL, NULL), SH_ESTALE);
    assert_int_equal(counts().fingerprint_rows, k1.fingerprint_rows);
    /* Delete of a never-seen track leaves a tombstone that blocks the late older upsert. */
    assert_int_equal(sh_primary_delete_track(F.db, "del-2", "acme", 5, NULL, NULL), 0);
    assert_int_equal(write_n(F.db, "del-2", 4, 10, NULL), SH_ESTALE);
    assert_int_equal(sh_primary_get_track(F.db, "del-2", 0, &t, NULL), 0);
    assert_int_equal(t.deleted, 1);
    sh_track_clear(&t);
    /* A newer upsert resurrects. */
    assert_int_equal(write_n(F.db, "del-1", 30, 5, NULL), 0);
    assert_int_equal(sh_primary_get_track(F.db, "del-1", 0, &t, NULL), 0);
    assert_int_equal(t.deleted, 0);
    assert_int_equal(t.n_hashes, 5);
    sh_track_clear(&t);
}

/* ---- concurrency: 4 writers × 50 writes while a reader checks it never sees a gap ---------- */

enum { WRITERS = 4, PER_WRITER = 50 };

typedef struct writer_arg {
    int idx;
    int64_t seqs[PER_WRITER];
    int failures;
} writer_arg;

static void *writer(void *p)
{
    writer_arg *a = p;
    sh_primary *db = connect_db();
    for (int i = 0; i < PER_WRITER; i++) {
        char id[32];
        snprintf(id, sizeof id, "cc-%d-%d", a->idx, i % 10); /* rewrites: versions grow */
        if (write_n(db, id, 1 + i, 8, &a->seqs[i]) != 0)
            a->failures++;
    }
    sh_primary_free(db);
    return NULL;
}

typedef struct reader_arg {
    int64_t start, end;
    atomic_int stop;
    int gaps, polls;
} reader_arg;

/* Polls the log: whatever it sees must be exactly the next seqs, never N without N-1. */
static void *reader(void *p)
{
    reader_arg *a = p;
    sh_primary *db = connect_db();
    int64_t last = a->start;
    while (last < a->end && !atomic_load(&a->stop)) {
        sh_change_list l = {0};
        if (sh_primary_changes_since(db, last, 1000, 0, &l, NULL) != 0) {
            a->gaps++;
            break;
        }
        for (size_t i = 0; i < l.n; i++) {
            if (l.v[i].seq != last + 1)
                a->gaps++;
            last = l.v[i].seq;
        }
        a->polls++;
        sh_change_list_clear(&l);
    }
    sh_primary_free(db);
    return NULL;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static void test_changelog_gap_free_concurrent(void **state)
{
    (void)state;
    int64_t s0 = counts().last_seq;
    writer_arg w[WRITERS] = {{0}};
    reader_arg r = {.start = s0, .end = s0 + WRITERS * PER_WRITER};
    pthread_t th[WRITERS], rt;
    assert_int_equal(pthread_create(&rt, NULL, reader, &r), 0);
    for (int i = 0; i < WRITERS; i++) {
        w[i].idx = i;
        assert_int_equal(pthread_create(&th[i], NULL, writer, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    pthread_join(rt, NULL);
    assert_int_equal(r.gaps, 0);
    int64_t all[WRITERS * PER_WRITER];
    for (int i = 0; i < WRITERS; i++) {
        assert_int_equal(w[i].failures, 0);
        memcpy(all + i * PER_WRITER, w[i].seqs, sizeof w[i].seqs);
        for (int k = 1; k < PER_WRITER; k++)
            assert_true(w[i].seqs[k] > w[i].seqs[k - 1]); /* one writer's commits stay in order */
    }
    qsort(all, WRITERS * PER_WRITER, sizeof all[0], cmp_i64);
    for (int i = 0; i < WRITERS * PER_WRITER; i++)
        assert_int_equal(all[i], s0 + 1 + i); /* exactly s0+1 .. s0+200, no gaps, no repeats */
    sh_change_list l = {0};
    assert_int_equal(sh_primary_changes_since(F.db, s0, 1000, 0, &l, NULL), 0);
    assert_int_equal(l.n, WRITERS * PER_WRITER);
    for (size_t i = 0; i < l.n; i++) {
        assert_int_equal(l.v[i].seq, s0 + 1 + (int64_t)i);
        assert_int_equal(l.v[i].op, SH_CHANGE_UPSERT);
        /* appends serialize on the counter lock: their clock follows seq order */
        if (i)
            assert_true(l.v[i].committed_ms >= l.v[i - 1].committed_ms);
    }
    sh_change_list_clear(&l);
}

static void test_changes_with_blob(void **state)
{
    (void)state;
    int64_t s0 = counts().last_seq, seq1, seq2;
    assert_int_equal(write_n(F.db, "cb-1", 1, 30, &seq1), 0);
    assert_int_equal(write_n(F.db, "cb-1", 2, 31, &seq2), 0);
    assert_int_equal(sh_primary_delete_track(F.db, "cb-1", NULL, 3, NULL, NULL), 0);
    assert_int_equal(write_n(F.db, "cb-2", 1, 32, NULL), 0);
    sh_change_list l = {0};
    assert_int_equal(sh_primary_changes_since(F.db, s0, 0, SH_PRIMARY_WITH_BLOB, &l, NULL), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.v[0].seq, seq1);
    assert_int_equal(l.v[0].superseded, 1); /* version 1 was overwritten: no blob */
    assert_null(l.v[0].fp_blob);
    assert_int_equal(l.v[1].seq, seq2);
    assert_int_equal(l.v[1].superseded, 1); /* deleted afterwards */
    assert_int_equal(l.v[2].op, SH_CHANGE_DELETE);
    assert_int_equal(l.v[2].version, 3);
    assert_string_equal(l.v[3].external_id, "cb-2");
    assert_int_equal(l.v[3].superseded, 0);
    assert_int_equal(l.v[3].n_hashes, 32);
    size_t n = 0;
    assert_int_equal(sh_fpblob_count(l.v[3].fp_blob, l.v[3].fp_blob_len, &n, NULL), 0);
    assert_int_equal(n, 32);
    sh_change_list_clear(&l);
    /* limit and the cursor */
    assert_int_equal(sh_primary_changes_since(F.db, s0 + 1, 2, 0, &l, NULL), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[0].seq, s0 + 2);
    sh_change_list_clear(&l);
}

static void test_injection_stored_literally(void **state)
{
    (void)state;
    const char *id = "x'); DROP TABLE tracks; --";
    const char *tenant = "t' OR '1'='1";
    sh_track_write tw = make_track(id, tenant, 1, 3);
    tw.metadata_json = "{\"q\": \"'; DELETE FROM fingerprints; --\"}";
    tw.source_uri = "file:///a'b\\c";
    assert_int_equal(sh_primary_write_track(F.db, &tw, NULL, NULL), 0);
    free((void *)tw.fp_blob);
    sh_track t = {0};
    assert_int_equal(sh_primary_get_track(F.db, id, 0, &t, NULL), 0);
    assert_string_equal(t.external_id, id);
    assert_string_equal(t.tenant, tenant);
    assert_string_equal(t.metadata_json, "{\"q\": \"'; DELETE FROM fingerprints; --\"}");
    assert_string_equal(t.source_uri, "file:///a'b\\c");
    sh_track_clear(&t);
    sh_track_filter f = {.tenant = tenant};
    sh_track_list l = {0};
    assert_int_equal(sh_primary_list_tracks(F.db, &f, &l, NULL), 0);
    assert_int_equal(l.n, 1); /* the tenant matched literally, not as `OR '1'='1'` */
    sh_track_list_clear(&l);
    assert_true(counts().fingerprint_rows > 1); /* nothing was dropped or deleted */
    assert_int_equal(sh_primary_delete_track(F.db, id, tenant, 2, NULL, NULL), 0);
}

static void test_batch_per_track_atomic(void **state)
{
    (void)state;
    assert_int_equal(write_n(F.db, "b-stale", 100, 4, NULL), 0);
    sh_track_write tws[5] = {make_track("b-1", "acme", 1, 10), make_track("b-badsha", "acme", 1, 10),
                             make_track("b-stale", "acme", 50, 10), make_track("b-badjson", "acme", 1, 10),
                             make_track("b-2", "acme", 1, 11)};
    tws[1].sha256_hex = "nothex";
    tws[3].metadata_json = "{not json";
    int res[5];
    int64_t seqs[5];
    sh_err e = {0};
    assert_int_equal(sh_primary_write_tracks(F.db, tws, 5, res, seqs, &e), 0);
    assert_int_equal(res[0], 0);
    assert_int_equal(res[1], SH_EINVAL);
    assert_int_equal(res[2], SH_ESTALE);
    assert_int_equal(res[3], SH_EDB); /* permanent: goes to the dead-letter topic */
    assert_int_equal(res[4], 0);
    assert_true(seqs[0] > 0 && seqs[4] == seqs[0] + 1);
    assert_int_equal(seqs[2], 0);
    for (int i = 0; i < 5; i++)
        free((void *)tws[i].fp_blob);
    sh_track t = {0};
    assert_int_equal(sh_primary_get_track(F.db, "b-2", SH_PRIMARY_WITH_BLOB, &t, NULL), 0);
    assert_int_equal(t.n_hashes, 11);
    assert_non_null(t.fp_blob);
    sh_track_clear(&t);
    assert_int_equal(sh_primary_get_track(F.db, "b-badjson", 0, &t, NULL), SH_ENOTFOUND);
    assert_int_equal(sh_primary_get_track(F.db, "b-badsha", 0, &t, NULL), SH_ENOTFOUND);
    /* More than one pipeline chunk, all whole. */
    enum { N = 150 };
    static sh_track_write big[N];
    static char ids[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "bb-%03d", i);
        big[i] = make_track(ids[i], "bulk", 7, (size_t)i % 13);
    }
    int rb[N];
    int64_t sb[N];
    assert_int_equal(sh_primary_write_tracks(F.db, big, N, rb, sb, NULL), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rb[i], 0);
        if (i)
            assert_int_equal(sb[i], sb[i - 1] + 1);
        free((void *)big[i].fp_blob);
    }
}

static void test_list_filters_and_cursor(void **state)
{
    (void)state;
    /* tenant "bulk" holds bb-000..bb-149 from the batch test; page through it by 40. */
    sh_track_filter f = {.tenant = "bulk", .limit = 40};
    char after[64] = "";
    size_t total = 0;
    for (int page = 0; page < 10; page++) {
        sh_track_list l = {0};
        f.after_id = after[0] ? after : NULL;
        assert_int_equal(sh_primary_list_tracks(F.db, &f, &l, NULL), 0);
        if (l.n == 0)
            break;
        for (size_t i = 0; i < l.n; i++) {
            char want[16];
            snprintf(want, sizeof want, "bb-%03zu", total + i);
            assert_string_equal(l.v[i].external_id, want);
            assert_null(l.v[i].fp_blob);
        }
        total += l.n;
        snprintf(after, sizeof after, "%s", l.v[l.n - 1].external_id);
        sh_track_list_clear(&l);
    }
    assert_int_equal(total, 150);
    /* fp_version filter: everything is version 1, so "< 2" lists some and "< 1" none. */
    sh_track_filter g = {.fp_version_below = 1, .limit = 10};
    sh_track_list l = {0};
    assert_int_equal(sh_primary_list_tracks(F.db, &g, &l, NULL), 0);
    assert_int_equal(l.n, 0);
    g.fp_version_below = 2;
    assert_int_equal(sh_primary_list_tracks(F.db, &g, &l, NULL), 0);
    assert_int_equal(l.n, 10);
    sh_track_list_clear(&l);
    /* tombstones only with include_deleted */
    sh_track_filter d = {.after_id = "del-1", .limit = 1};
    assert_int_equal(sh_primary_list_tracks(F.db, &d, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_string_not_equal(l.v[0].external_id, "del-2");
    sh_track_list_clear(&l);
    d.include_deleted = 1;
    assert_int_equal(sh_primary_list_tracks(F.db, &d, &l, NULL), 0);
    assert_string_equal(l.v[0].external_id, "del-2");
    assert_int_equal(l.v[0].deleted, 1);
    sh_track_list_clear(&l);
    sh_track_filter bad = {.limit = SH_PRIMARY_LIST_MAX + 1};
    assert_int_equal(sh_primary_list_tracks(F.db, &bad, &l, NULL), SH_EINVAL);
}

/* Counting uses the listing's filter: the count from any cursor equals what paging would list. */
static void test_count_tracks(void **state)
{
    (void)state;
    int64_t n = -1;
    sh_track_filter f = {.tenant = "bulk"};
    assert_int_equal(sh_primary_count_tracks(F.db, &f, &n, NULL), 0);
    assert_int_equal(n, 150);
    f.after_id = "bb-099";
    assert_int_equal(sh_primary_count_tracks(F.db, &f, &n, NULL), 0);
    assert_int_equal(n, 50);
    f.fp_version_below = 1; /* every bulk track is version 1 */
    assert_int_equal(sh_primary_count_tracks(F.db, &f, &n, NULL), 0);
    assert_int_equal(n, 0);
    /* All tracks: active count from the counts row; tombstones only with include_deleted. */
    sh_primary_counts c;
    assert_int_equal(sh_primary_counts_get(F.db, &c, NULL), 0);
    assert_int_equal(sh_primary_count_tracks(F.db, NULL, &n, NULL), 0);
    assert_int_equal(n, c.tracks_active);
    sh_track_filter d = {.include_deleted = 1};
    assert_int_equal(sh_primary_count_tracks(F.db, &d, &n, NULL), 0);
    assert_int_equal(n, c.tracks_active + c.tracks_deleted);
    char long_tenant[SH_PRIMARY_TENANT_MAX + 2];
    memset(long_tenant, 't', sizeof long_tenant - 1);
    long_tenant[sizeof long_tenant - 1] = '\0';
    sh_track_filter bad = {.tenant = long_tenant};
    n = 7;
    assert_int_equal(sh_primary_count_tracks(F.db, &bad, &n, NULL), SH_EINVAL);
    assert_int_equal(n, 0);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    char longid[SH_PRIMARY_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    sh_track_write tw = {.external_id = longid, .tenant = "t", .fp_version = 1, .version = 1};
    sh_err e = {0};
    assert_int_equal(sh_primary_write_track(F.db, &tw, NULL, &e), SH_EINVAL);
    tw.external_id = "ok";
    tw.version = 0;
    assert_int_equal(sh_primary_write_track(F.db, &tw, NULL, &e), SH_EINVAL);
    tw.version = 1;
    tw.tenant = NULL;
    assert_int_equal(sh_primary_write_track(F.db, &tw, NULL, &e), SH_EINVAL);
    assert_int_equal(sh_primary_delete_track(F.db, "", NULL, 1, NULL, &e), SH_EINVAL);
    sh_primary_config c;
    sh_primary_config_default(&c);
    c.dsn = "this is not a dsn";
    sh_primary *db = NULL;
    assert_int_equal(sh_primary_new(&c, &db, &e), SH_EINVAL);
    assert_null(db);
    /* The same verdicts without connecting. */
    assert_int_equal(sh_primary_dsn_check("this is not a dsn", &e), SH_EINVAL);
    assert_non_null(strstr(sh_err_text(&e), "bad DSN"));
    assert_int_equal(sh_primary_dsn_check("not_a_dsn", &e), SH_EINVAL);
    assert_int_equal(sh_primary_dsn_check("host='unterminated", &e), SH_EINVAL);
    assert_int_equal(sh_primary_dsn_check("postgresql://h:5432/db?nosuchoption=1", &e), SH_EINVAL);
    assert_int_equal(sh_primary_dsn_check("", &e), SH_EINVAL);
    assert_int_equal(sh_primary_dsn_check(NULL, &e), SH_EINVAL);
    assert_int_equal(sh_primary_dsn_check("host=127.0.0.1 port=1 dbname=x", &e), 0);
    assert_int_equal(sh_primary_dsn_check("postgresql://u@127.0.0.1:1/db", &e), 0);
}

/* SOUNDHASH_DB_PASSWORD_FILE (a Docker secret) is read and used: a missing file is a clear error,
 * a wrong password in it is refused by the server (scram), the right one connects. */
static void test_password_file(void **state)
{
    (void)state;
    char path[sizeof F.tmp + 16];
    snprintf(path, sizeof path, "%s/pwfile", F.tmp);
    sh_primary_config c;
    sh_primary_config_default(&c);
    c.dsn = F.dsn;
    sh_primary *db = NULL;
    sh_err e = {0};
    setenv("SOUNDHASH_DB_PASSWORD_FILE", "/nonexistent/pw", 1);
    assert_int_equal(sh_primary_new(&c, &db, &e), SH_EIO);
    assert_non_null(strstr(e.msg, "SOUNDHASH_DB_PASSWORD_FILE"));
    assert_null(db);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("wrong-password\n", f);
    fclose(f);
    setenv("SOUNDHASH_DB_PASSWORD_FILE", path, 1);
    assert_int_equal(sh_primary_new(&c, &db, &e), SH_EDB);
    assert_null(db);

    /* The cluster's pgpass line is host:port:db:user:password; the password is the last field. */
    char pgpass[sizeof F.dir + 16], line[512] = "";
    snprintf(pgpass, sizeof pgpass, "%s/pgpass", F.dir);
    f = fopen(pgpass, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    const char *pw = strrchr(line, ':');
    assert_non_null(pw);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(pw + 1, f);
    fclose(f);
    assert_int_equal(sh_primary_new(&c, &db, &e), 0);
    sh_primary_free(db);
    unsetenv("SOUNDHASH_DB_PASSWORD_FILE");
}

static void test_wait_changes(void **state)
{
    (void)state;
    sh_primary *listener = connect_db();
    sh_err e = {0};
    assert_int_equal(sh_primary_wait_changes(listener, 10, &e), SH_ETIMEOUT); /* LISTENs */
    assert_int_equal(write_n(F.db, "wc-1", 1, 3, NULL), 0);
    assert_int_equal(sh_primary_wait_changes(listener, 30000, &e), 0);
    sh_primary_free(listener);
}

/* Last: stops the server under an open connection, then brings it back. */
/* A reindex write of `id` made from stored version `base` at fp_version `fpv` with `n` postings. */
static int reindex_n(const char *id, int64_t base, int fpv, size_t n, int64_t *seq)
{
    sh_track_write tw = make_track(id, "other-tenant", 999999, n);
    tw.is_reindex = 1;
    tw.base_version = base;
    tw.fp_version = fpv;
    tw.source_uri = "file:///media/reindexed.ogg";
    int rc = sh_primary_write_track(F.db, &tw, seq, NULL);
    free((void *)tw.fp_blob);
    return rc;
}

static sh_track get(const char *id)
{
    sh_track t = {0};
    assert_int_equal(sh_primary_get_track(F.db, id, SH_PRIMARY_WITH_BLOB, &t, NULL), 0);
    return t;
}

/* The reindex race (issue #4): the version names the audio, so a reindex made from version B only
 * applies while the track is still at B, keeps B, and never beats or blocks a re-upload. */
static void test_reindex_versioned(void **state)
{
    (void)state;
    /* 1. The job reads rx-a at version 100, a re-upload (200) lands, then the reindex write:
     * stale, the new audio stays. */
    assert_int_equal(write_n(F.db, "rx-a", 100, 10, NULL), 0);
    sh_track_filter f = {.after_id = "rx-", .limit = 1};
    sh_track_list l = {0};
    assert_int_equal(sh_primary_list_tracks(F.db, &f, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].external_id, "rx-a");
    int64_t seen = l.v[0].version; /* what the reindex job puts in base_version */
    assert_int_equal(seen, 100);
    sh_track_list_clear(&l);
    assert_int_equal(write_n(F.db, "rx-a", 200, 20, NULL), 0);
    int64_t c0 = counts().changes, seq = -1;
    sh_err e = {0};
    sh_track_write tw = make_track("rx-a", "acme", 1, 30);
    tw.is_reindex = 1, tw.base_version = seen, tw.fp_version = 2;
    assert_int_equal(sh_primary_write_track(F.db, &tw, &seq, &e), SH_ESTALE);
    assert_non_null(strstr(e.msg, "no longer at version 100"));
    free((void *)tw.fp_blob);
    assert_int_equal(seq, 0);
    sh_track t = get("rx-a");
    assert_int_equal(t.version, 200);
    assert_int_equal(t.n_hashes, 20);
    assert_int_equal(t.fp_version, 1);
    size_t n = 0;
    assert_int_equal(sh_fpblob_count(t.fp_blob, t.fp_blob_len, &n, NULL), 0);
    assert_int_equal(n, 20);
    sh_track_clear(&t);
    assert_int_equal(counts().changes, c0);

    /* 2. Reindex first, then the re-upload: the reindex keeps version 100 and logs one upsert at
     * (100, fp 2); the upload (200) still wins afterwards. */
    assert_int_equal(write_n(F.db, "rx-b", 100, 10, NULL), 0);
    int64_t s0 = counts().last_seq;
    assert_int_equal(reindex_n("rx-b", 100, 2, 30, &seq), 0);
    assert_int_equal(seq, s0 + 1);
    t = get("rx-b");
    assert_int_equal(t.version, 100);
    assert_int_equal(t.fp_version, 2);
    assert_int_equal(t.n_hashes, 30);
    assert_string_equal(t.tenant, "acme");                      /* kept as stored */
    assert_string_equal(t.source_uri, "file:///media/a.ogg");   /* kept as stored */
    assert_int_equal(sh_fpblob_count(t.fp_blob, t.fp_blob_len, &n, NULL), 0);
    assert_int_equal(n, 30);
    sh_track_clear(&t);
    sh_change_list cl = {0};
    assert_int_equal(sh_primary_changes_since(F.db, s0, 0, SH_PRIMARY_WITH_BLOB, &cl, NULL), 0);
    assert_int_equal(cl.n, 1);
    assert_int_equal(cl.v[0].op, SH_CHANGE_UPSERT);
    assert_string_equal(cl.v[0].external_id, "rx-b");
    assert_string_equal(cl.v[0].tenant, "acme");
    assert_int_equal(cl.v[0].version, 100);
    assert_int_equal(cl.v[0].fp_version, 2);
    assert_int_equal(cl.v[0].superseded, 0);
    assert_int_equal(cl.v[0].n_hashes, 30);
    sh_change_list_clear(&cl);
    /* the same reindex again (re-delivery, or the job re-run): a no-op */
    assert_int_equal(reindex_n("rx-b", 100, 2, 30, &seq), SH_ESTALE);
    assert_int_equal(counts().last_seq, s0 + 1);
    /* an older fingerprint version never replaces a newer one either */
    assert_int_equal(reindex_n("rx-b", 100, 1, 5, NULL), SH_ESTALE);
    assert_int_equal(write_n(F.db, "rx-b", 200, 20, NULL), 0);
    t = get("rx-b");
    assert_int_equal(t.version, 200);
    assert_int_equal(t.fp_version, 1);
    assert_int_equal(t.n_hashes, 20);
    sh_track_clear(&t);
    /* ... and a reindex made from the old version cannot come back */
    assert_int_equal(reindex_n("rx-b", 100, 3, 30, NULL), SH_ESTALE);

    /* 3. A delete in between makes it stale, and an unknown track gets no row. */
    assert_int_equal(write_n(F.db, "rx-c", 100, 10, NULL), 0);
    assert_int_equal(sh_primary_delete_track(F.db, "rx-c", NULL, 150, NULL, NULL), 0);
    assert_int_equal(reindex_n("rx-c", 100, 2, 30, NULL), SH_ESTALE);
    assert_int_equal(reindex_n("rx-c", 150, 2, 30, NULL), SH_ESTALE); /* the tombstone's version */
    t = get("rx-c");
    assert_int_equal(t.deleted, 1);
    assert_int_equal(t.version, 150);
    assert_null(t.fp_blob);
    sh_track_clear(&t);
    assert_int_equal(reindex_n("rx-unknown", 100, 2, 30, NULL), SH_ESTALE);
    assert_int_equal(sh_primary_get_track(F.db, "rx-unknown", 0, &t, NULL), SH_ENOTFOUND);

    /* 4. In a batch, next to normal writes; base_version must be set. */
    assert_int_equal(write_n(F.db, "rx-d", 100, 10, NULL), 0);
    sh_track_write b[3] = {make_track("rx-d", "acme", 1, 40), make_track("rx-a", "acme", 1, 40),
                           make_track("rx-e", "acme", 7, 8)};
    b[0].is_reindex = 1, b[0].base_version = 100, b[0].fp_version = 2;
    b[1].is_reindex = 1, b[1].base_version = 100, b[1].fp_version = 2; /* rx-a is at 200 */
    int res[3];
    int64_t seqs[3];
    assert_int_equal(sh_primary_write_tracks(F.db, b, 3, res, seqs, NULL), 0);
    assert_int_equal(res[0], 0);
    assert_int_equal(res[1], SH_ESTALE);
    assert_int_equal(res[2], 0);
    assert_true(seqs[0] > 0 && seqs[1] == 0 && seqs[2] > seqs[0]);
    b[0].base_version = 0;
    assert_int_equal(sh_primary_write_track(F.db, &b[0], NULL, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "base_version"));
    for (int i = 0; i < 3; i++)
        free((void *)b[i].fp_blob);
    t = get("rx-d");
    assert_int_equal(t.version, 100);
    assert_int_equal(t.n_hashes, 40);
    assert_int_equal(t.fp_version, 2);
    sh_track_clear(&t);
}

/* An upload's change read after a reindex of the same version: the track's state is now
 * (version, new fp_version), so the upload's change is superseded and carries no blob — the
 * reindex's change does. Comparing the version alone handed the upload's change the reindexed
 * blob under the old fp_version. */
static void test_superseded_by_reindex(void **state)
{
    (void)state;
    int64_t s0 = counts().last_seq;
    assert_int_equal(write_n(F.db, "sr-a", 100, 10, NULL), 0);
    assert_int_equal(reindex_n("sr-a", 100, 2, 30, NULL), 0);
    sh_change_list l = {0};
    assert_int_equal(sh_primary_changes_since(F.db, s0, 0, SH_PRIMARY_WITH_BLOB, &l, NULL), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[0].fp_version, 1);
    assert_int_equal(l.v[0].superseded, 1);
    assert_null(l.v[0].fp_blob);
    assert_null(l.v[0].metadata_json);
    assert_int_equal(l.v[1].fp_version, 2);
    assert_int_equal(l.v[1].superseded, 0);
    assert_non_null(l.v[1].fp_blob);
    assert_non_null(l.v[1].metadata_json);
    assert_true(l.v[1].duration_s > 0);
    size_t n = 0;
    assert_int_equal(sh_fpblob_count(l.v[1].fp_blob, l.v[1].fp_blob_len, &n, NULL), 0);
    assert_int_equal(n, 30);
    sh_change_list_clear(&l);
    /* a delete is superseded by a later re-upload, and current while the tombstone stands */
    int64_t s1 = counts().last_seq;
    assert_int_equal(sh_primary_delete_track(F.db, "sr-a", NULL, 150, NULL, NULL), 0);
    assert_int_equal(sh_primary_changes_since(F.db, s1, 0, SH_PRIMARY_WITH_BLOB, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].op, SH_CHANGE_DELETE);
    assert_int_equal(l.v[0].superseded, 0);
    sh_change_list_clear(&l);
    assert_int_equal(write_n(F.db, "sr-a", 160, 12, NULL), 0);
    assert_int_equal(sh_primary_changes_since(F.db, s1, 0, SH_PRIMARY_WITH_BLOB, &l, NULL), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[0].superseded, 1);
    assert_int_equal(l.v[1].superseded, 0);
    sh_change_list_clear(&l);
}

/* Snapshot reads see exactly the state at the seq they report, even while writes go on. */
static void test_snapshot_read_consistent(void **state)
{
    (void)state;
    int64_t epoch = 0, start = -1;
    assert_int_equal(sh_primary_replication_get(F.db, &epoch, &start, NULL), 0);
    assert_int_equal(epoch, 1);
    assert_int_equal(start, 0);
    assert_int_equal(write_n(F.db, "sn-a", 1, 5, NULL), 0);
    int64_t seq = 0, last = 0;
    assert_int_equal(sh_primary_snap_begin(F.db, &seq, NULL), 0);
    assert_int_equal(sh_primary_last_seq(F.db, &last, NULL), 0);
    assert_int_equal(seq, last);
    /* a write on another connection after the snapshot began stays invisible to it */
    sh_primary *db2 = connect_db();
    assert_int_equal(write_n(db2, "sn-b", 1, 5, NULL), 0);
    sh_primary_free(db2);
    size_t seen_a = 0, seen_b = 0, total = 0;
    for (;;) {
        sh_track_list l = {0};
        assert_int_equal(sh_primary_snap_next(F.db, 7, &l, NULL), 0);
        if (!l.n)
            break;
        for (size_t i = 0; i < l.n; i++) {
            assert_int_equal(l.v[i].deleted, 0);
            seen_a += strcmp(l.v[i].external_id, "sn-a") == 0;
            seen_b += strcmp(l.v[i].external_id, "sn-b") == 0;
            if (strcmp(l.v[i].external_id, "sn-a") == 0) {
                size_t n = 0;
                assert_int_equal(sh_fpblob_count(l.v[i].fp_blob, l.v[i].fp_blob_len, &n, NULL), 0);
                assert_int_equal(n, 5);
            }
        }
        total += l.n;
        sh_track_list_clear(&l);
    }
    sh_primary_snap_end(F.db);
    assert_int_equal(seen_a, 1);
    assert_int_equal(seen_b, 0);
    assert_int_equal((int64_t)total, counts().tracks_active - 1);
    assert_int_equal(sh_primary_last_seq(F.db, &last, NULL), 0);
    assert_int_equal(last, seq + 1);
}

/* Retention: changes up to the seq go, tombstones only when old and their delete is gone. */
static void test_prune(void **state)
{
    (void)state;
    assert_int_equal(write_n(F.db, "pr-a", 1, 5, NULL), 0);
    assert_int_equal(sh_primary_delete_track(F.db, "pr-a", NULL, 2, NULL, NULL), 0);
    int64_t mid = counts().last_seq;
    assert_int_equal(write_n(F.db, "pr-b", 1, 5, NULL), 0);
    assert_int_equal(sh_primary_delete_track(F.db, "pr-b", NULL, 2, NULL, NULL), 0);
    int64_t nc = -1, nt = -1;
    /* age 1 day: no tombstone is old enough */
    assert_int_equal(sh_primary_prune(F.db, mid, 86400, &nc, &nt, NULL), 0);
    assert_true(nc >= 2);
    assert_int_equal(nt, 0);
    sh_change_list l = {0};
    assert_int_equal(sh_primary_changes_since(F.db, 0, 1, 0, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].seq, mid + 1);
    sh_change_list_clear(&l);
    /* age 0: pr-a's delete left the log, so its tombstone goes; pr-b's delete is still there */
    assert_int_equal(sh_primary_prune(F.db, mid, 0, &nc, &nt, NULL), 0);
    assert_int_equal(nc, 0);
    assert_true(nt >= 1);
    sh_track t = {0};
    assert_int_equal(sh_primary_get_track(F.db, "pr-a", 0, &t, NULL), SH_ENOTFOUND);
    t = get("pr-b");
    assert_int_equal(t.deleted, 1);
    sh_track_clear(&t);
    assert_int_equal(sh_primary_prune(F.db, -1, 0, NULL, NULL, NULL), SH_EINVAL);
}

/* ---- takeover (sh_primary_takeover.c) --------------------------------------------------------- */

/* One upload event of a history: upsert (n postings) or delete, at `version`. */
typedef struct hev {
    const char *id;
    int del;
    int64_t version;
} hev;

static int apply_ev(const hev *h)
{
    return h->del ? sh_primary_delete_track(F.db, h->id, "acme", h->version, NULL, NULL)
                  : write_n(F.db, h->id, h->version, 4 + (size_t)(h->version % 5), NULL);
}

/* After a takeover the group re-reads events from the follower's recorded offsets: the follower
 * holds a prefix of the history (here the first 5 events), and replaying the WHOLE history over it
 * must give exactly the state of applying it once — newest version wins, deletes stay deleted,
 * nothing already applied changes or enters the change log again. */
static void test_replay_after_takeover(void **state)
{
    (void)state;
    static const hev h[] = {
        {"rp-a", 0, 100}, {"rp-b", 0, 110}, {"rp-a", 0, 120}, {"rp-b", 1, 130}, {"rp-c", 0, 140},
        /* lost with the old primary: */
        {"rp-c", 1, 150}, {"rp-a", 0, 160}, {"rp-d", 1, 170}, {"rp-d", 0, 165},
    };
    const size_t n = sizeof h / sizeof h[0];
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(apply_ev(&h[i]), 0);
    int64_t seq0 = counts().last_seq;
    int written = 0;
    for (size_t i = 0; i < n; i++) { /* the replay, from the first event */
        int rc = apply_ev(&h[i]);
        assert_true(rc == 0 || rc == SH_ESTALE);
        written += rc == 0;
    }
    /* only rp-c's delete, rp-a@160 and rp-d's delete apply; rp-d@165 is older than its delete */
    assert_int_equal(written, 3);
    assert_int_equal(counts().last_seq, seq0 + 3);
    sh_track t = get("rp-a");
    assert_int_equal(t.version, 160);
    assert_int_equal(t.deleted, 0);
    assert_int_equal(t.n_hashes, 4 + 160 % 5);
    sh_track_clear(&t);
    static const char *const gone[] = {"rp-b", "rp-c", "rp-d"};
    for (size_t i = 0; i < 3; i++) {
        t = get(gone[i]);
        assert_int_equal(t.deleted, 1);
        assert_null(t.fp_blob);
        sh_track_clear(&t);
    }
    /* replaying once more changes nothing at all */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(apply_ev(&h[i]), SH_ESTALE);
    assert_int_equal(counts().last_seq, seq0 + 3);
}

static void test_offsets_round_trip(void **state)
{
    (void)state;
    sh_group_offset v[3] = {{"soundhash.audio.events", 0, 10},
                            {"soundhash.audio.events", 3, 7},
                            {"soundhash.audio.reindex", 1, 0}};
    assert_int_equal(sh_primary_offsets_save(F.db, "g1", v, 3, NULL), 0);
    v[0].next_offset = 12; /* a later commit round of partition 0 overwrites */
    assert_int_equal(sh_primary_offsets_save(F.db, "g1", v, 1, NULL), 0);
    assert_int_equal(sh_primary_offsets_save(F.db, "g2", &v[1], 1, NULL), 0);
    sh_group_offset got[4];
    size_t n = 0;
    assert_int_equal(sh_primary_offsets_load(F.db, "g1", got, 4, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_string_equal(got[0].topic, "soundhash.audio.events");
    assert_int_equal(got[0].partition, 0);
    assert_int_equal(got[0].next_offset, 12);
    assert_int_equal(got[1].next_offset, 7);
    assert_string_equal(got[2].topic, "soundhash.audio.reindex");
    assert_int_equal(sh_primary_offsets_load(F.db, "g2", got, 4, &n, NULL), 0);
    assert_int_equal(n, 1); /* groups are separate */
    assert_int_equal(sh_primary_offsets_load(F.db, "g1", got, 2, &n, NULL), SH_ETOOBIG);
    assert_int_equal(sh_primary_offsets_load(F.db, "nobody", got, 4, &n, NULL), 0);
    assert_int_equal(n, 0);
    /* a topic name outside Kafka's alphabet never reaches the array literal */
    sh_group_offset bad = {"x},{y", 0, 1};
    assert_int_equal(sh_primary_offsets_save(F.db, "g1", &bad, 1, NULL), SH_EINVAL);
    sh_group_offset neg = {"t", 0, -1};
    assert_int_equal(sh_primary_offsets_save(F.db, "g1", &neg, 1, NULL), SH_EINVAL);
    assert_int_equal(sh_primary_offsets_save(F.db, "", v, 1, NULL), SH_EINVAL);
    assert_int_equal(sh_primary_offsets_save(F.db, "g1", NULL, 0, NULL), 0);
}

static void test_role_and_fence(void **state)
{
    (void)state;
    sh_primary_role r;
    assert_int_equal(sh_primary_role_get(F.db, &r, NULL), 0);
    assert_int_equal(r.follower, 0);
    assert_int_equal(r.fenced, 0);
    assert_true(r.timeline >= 1);
    assert_int_equal(r.lag_bytes, 0);
    /* fenced: a new connection is refused (transient, naming the fence) unless allow_fenced */
    sh_pgctl_opts o = pg_opts();
    sh_err e = {0};
    assert_int_equal(sh_pgctl_fence(&o, &e), 0);
    sh_primary_config c;
    sh_primary_config_default(&c);
    c.dsn = F.dsn;
    sh_primary *db = NULL;
    assert_int_equal(sh_primary_new(&c, &db, &e), SH_ETRANSIENT);
    assert_non_null(strstr(e.msg, "fenced"));
    assert_null(db);
    c.allow_fenced = 1;
    assert_int_equal(sh_primary_new(&c, &db, &e), 0);
    assert_int_equal(sh_primary_role_get(db, &r, NULL), 0);
    assert_int_equal(r.fenced, 1);
    assert_int_equal(r.read_only, 1);
    /* a write on the fenced server: read-only transaction (25006), transient for the worker */
    sh_track_write tw = make_track("fence-1", "acme", 1, 3);
    assert_int_equal(sh_primary_write_track(db, &tw, NULL, &e), SH_ETRANSIENT);
    assert_non_null(strstr(e.msg, "25006"));
    free((void *)tw.fp_blob);
    /* a promote of a primary is refused */
    assert_int_equal(sh_pgctl_promote(&o, &e), SH_EINVAL);
    /* unfence: the two settings reset (the documented undo), new sessions may write again */
    sh_primary_free(db);
    db = NULL;
    PGconn *pc = PQconnectdb(F.dsn);
    assert_int_equal(PQstatus(pc), CONNECTION_OK);
    PGresult *res = PQexec(pc, "SET default_transaction_read_only = off");
    PQclear(res);
    res = PQexec(pc, "ALTER SYSTEM RESET soundhash.fenced");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    res = PQexec(pc, "ALTER SYSTEM RESET default_transaction_read_only");
    PQclear(res);
    res = PQexec(pc, "SELECT pg_reload_conf()");
    PQclear(res);
    PQfinish(pc);
    c.allow_fenced = 0;
    for (int i = 0; i < 50 && sh_primary_new(&c, &db, NULL) != 0; i++)
        usleep(100 * 1000);
    assert_non_null(db);
    sh_primary_free(db);
    sh_primary_free(F.db); /* its session ended with the fence */
    F.db = connect_db();
    assert_int_equal(write_n(F.db, "fence-1", 1, 3, NULL), 0);
}

static void test_transient_when_server_stops(void **state)
{
    (void)state;
    assert_int_equal(sh_primary_ping(F.db, NULL), 0);
    sh_pgctl_opts o = pg_opts();
    sh_err e = {0};
    assert_int_equal(sh_pgctl_stop(&o, &e), 0);
    assert_int_equal(write_n(F.db, "tr-1", 1, 3, NULL), SH_ETRANSIENT);
    sh_track t = {0};
    assert_int_equal(sh_primary_get_track(F.db, "rt-1", 0, &t, &e), SH_ETRANSIENT);
    assert_int_equal(sh_primary_ping(F.db, &e), SH_ETRANSIENT); /* refused: still transient */
    char dsn[SH_PGCTL_DSN_MAX];
    assert_int_equal(sh_pgctl_start(&o, dsn, sizeof dsn, &e), 0);
    assert_string_equal(dsn, F.dsn); /* same port again: the DSN stays valid */
    assert_int_equal(sh_primary_ping(F.db, &e), 0); /* reconnected by itself */
    assert_int_equal(write_n(F.db, "tr-1", 1, 3, NULL), 0);
    assert_int_equal(sh_primary_get_track(F.db, "rt-1", 0, &t, NULL), 0); /* data survived */
    sh_track_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_idempotent),
        cmocka_unit_test(test_write_read_back),
        cmocka_unit_test(test_redelivery_is_noop),
        cmocka_unit_test(test_older_never_overwrites),
        cmocka_unit_test(test_delete_tombstone),
        cmocka_unit_test(test_changelog_gap_free_concurrent),
        cmocka_unit_test(test_changes_with_blob),
        cmocka_unit_test(test_injection_stored_literally),
        cmocka_unit_test(test_batch_per_track_atomic),
        cmocka_unit_test(test_list_filters_and_cursor),
        cmocka_unit_test(test_count_tracks),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_wait_changes),
        cmocka_unit_test(test_reindex_versioned),
        cmocka_unit_test(test_superseded_by_reindex),
        cmocka_unit_test(test_snapshot_read_consistent),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_replay_after_takeover),
        cmocka_unit_test(test_offsets_round_trip),
        cmocka_unit_test(test_role_and_fence),
        cmocka_unit_test(test_transient_when_server_stops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
