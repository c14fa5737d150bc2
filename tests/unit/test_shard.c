/* Unit tests for sh_shard: add/replace/delete/stats exact counts, version checks, batches and
 * cursors (atomic, aborted batches leave no trace), reopen, map growth, vacuum, corrupted and
 * foreign files, and lookups checked against a brute-force count of matching postings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_match.h"
#include "sh_shard.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fixture {
    char dir[256];
    sh_shard *s;
    sh_matcher *m;
} fixture;

static uint32_t rnd_next(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (uint32_t)*state;
}

static uint64_t rng = 88172645463325252ull; /* main thread only */
static uint32_t rnd(void)
{
    return rnd_next(&rng);
}

/* Track postings: hashes drawn from `seed` so they can be regenerated (thread-safe). */
static sh_hash *track_hashes(uint32_t seed, size_t n)
{
    sh_hash *h = malloc(n * sizeof *h);
    uint64_t state = 0x1234567ull * (seed + 1) + 99;
    for (size_t i = 0; i < n; i++)
        h[i] = (sh_hash){.hash = rnd_next(&state), .t = (uint32_t)(i * 3)};
    return h;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Brute force: how many postings of the live tracks (seeds[i], n each) share a hash with the
 * query (qseed, n) — what a lookup must vote, collisions of random hashes included. */
static size_t expected_votes(uint32_t qseed, const uint32_t *seeds, size_t nseeds, size_t n)
{
    uint32_t *all = malloc(nseeds * n * sizeof *all);
    for (size_t i = 0; i < nseeds; i++) {
        sh_hash *h = track_hashes(seeds[i], n);
        for (size_t j = 0; j < n; j++)
            all[i * n + j] = h[j].hash;
        free(h);
    }
    qsort(all, nseeds * n, sizeof *all, cmp_u32);
    sh_hash *q = track_hashes(qseed, n);
    size_t votes = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t *hit = bsearch(&q[j].hash, all, nseeds * n, sizeof *all, cmp_u32);
        while (hit && hit > all && hit[-1] == q[j].hash)
            hit--;
        for (; hit && hit < all + nseeds * n && *hit == q[j].hash; hit++)
            votes++;
    }
    free(q);
    free(all);
    return votes;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sh-test-shard.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    sh_err e = {0};
    sh_shard_opts o;
    sh_shard_opts_default(&o);
    assert_int_equal(sh_shard_open(f->dir, &o, &f->s, &e), 0);
    sh_fp_config qc;
    sh_fp_config_query(&qc);
    assert_int_equal(sh_matcher_new(&qc, &f->m, &e), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sh_shard_free(f->s);
    sh_matcher_free(f->m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Reopens the fixture's shard with a map of `map_size` bytes growing up to `map_max` (0 = the
 * default limit); returns the options used. */
static sh_shard_opts reopen(fixture *f, size_t map_size, size_t map_max)
{
    sh_shard_free(f->s);
    f->s = NULL;
    sh_shard_opts o;
    sh_shard_opts_default(&o);
    o.map_size = map_size;
    if (map_max)
        o.map_size_max = map_max;
    assert_int_equal(sh_shard_open(f->dir, &o, &f->s, NULL), 0);
    return o;
}

static void put_track(sh_shard *s, const char *id, uint64_t version, uint32_t seed, size_t n,
                      sh_shard_commit_stats *st)
{
    sh_shard_batch *b;
    sh_err e = {0};
    assert_int_equal(sh_shard_batch_begin(s, 0, &b, &e), 0);
    sh_hash *h = track_hashes(seed, n);
    sh_shard_track t = {.id = id,
                        .tenant = "acme",
                        .version = version,
                        .duration_s = 10.0,
                        .meta_json = "{\"title\":\"x\"}"};
    assert_int_equal(sh_shard_batch_put(b, &t, h, n, &e), 0);
    free(h);
    assert_int_equal(sh_shard_batch_commit(b, st, &e), 0);
}

/* Votes cast for the hashes of (seed, n). */
static size_t votes_for(fixture *f, uint32_t seed, size_t n)
{
    sh_hash *h = track_hashes(seed, n);
    size_t votes = 0;
    sh_matcher_reset(f->m);
    assert_int_equal(sh_shard_lookup(f->s, h, n, f->m, &votes, NULL), 0);
    free(h);
    return votes;
}

static void get_stats(fixture *f, sh_shard_stats *st)
{
    sh_err e = {0};
    assert_int_equal(sh_shard_stats_get(f->s, st, &e), 0);
}

typedef struct ref_posting {
    uint32_t hash, track, t;
} ref_posting;

static int cmp_ref(const void *a, const void *b)
{
    const ref_posting *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    if (x->track != y->track)
        return x->track < y->track ? -1 : 1;
    return x->t < y->t ? -1 : x->t > y->t;
}

static int cmp_query(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->t < y->t ? -1 : x->t > y->t;
}

/* Reference lookup: the votes a merge walk over fully decoded, sorted postings casts, in its
 * order (query hashes by (hash, t), each against its postings by (hash, track, t)). */
static size_t ref_vote(sh_matcher *m, const ref_posting *p, size_t np, const sh_hash *q, size_t nq)
{
    sh_hash *s = malloc(nq * sizeof *s);
    memcpy(s, q, nq * sizeof *q);
    qsort(s, nq, sizeof *s, cmp_query);
    size_t votes = 0, lo = 0;
    for (size_t i = 0; i < nq; i++) {
        while (lo < np && p[lo].hash < s[i].hash)
            lo++;
        for (size_t x = lo; x < np && p[x].hash == s[i].hash; x++, votes++)
            sh_matcher_vote(m, p[x].track, p[x].t, s[i].t);
    }
    free(s);
    return votes;
}

/* A track's postings from a small hash space (shared hashes, long runs of one hash across tracks
 * and within a track), with the extremes 0 and UINT32_MAX. */
static sh_hash *dense_hashes(uint32_t seed, size_t n)
{
    sh_hash *h = malloc(n * sizeof *h);
    uint64_t state = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd_next(&state);
        /* ≤ 18000 distinct values spread over 32 bits, in triples of neighbours */
        uint32_t v = (r % 6000u) * 715827u + (r >> 20) % 3;
        v = r % 97 == 0 ? 0 : r % 89 == 0 ? UINT32_MAX : v;
        h[i] = (sh_hash){.hash = v, .t = (uint32_t)(i * 2 + r % 2)};
    }
    return h;
}

/* The lookup (blobs decoded only up to the last query hash, ranges found by MDB_NEXT or a
 * descent, radix-sorted query) casts exactly the votes of a full-decode reference: the same
 * count per single hash and, for whole queries, the same matcher results. */
static void test_lookup_matches_reference(void **state)
{
    fixture *f = *state;
    enum { NT = 24, NP = 2500, NQ = 3000 };
    char id[NT][16];
    sh_shard_batch *b;
    sh_err e = {0};
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    for (int i = 0; i < NT; i++) {
        snprintf(id[i], sizeof id[i], "t%d", i);
        sh_hash *h = dense_hashes((uint32_t)i, NP);
        sh_shard_track t = {.id = id[i], .version = 1, .duration_s = 10.0};
        assert_int_equal(sh_shard_batch_put(b, &t, h, NP, &e), 0);
        free(h);
    }
    assert_int_equal(sh_shard_batch_commit(b, NULL, &e), 0);
    /* Three deleted tracks: their postings may linger in the blobs but must not vote. */
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    for (int i = 3; i < NT; i += 9)
        assert_int_equal(sh_shard_batch_delete(b, id[i], 2, &e), 0);
    assert_int_equal(sh_shard_batch_commit(b, NULL, &e), 0);

    ref_posting *p = malloc((size_t)NT * NP * sizeof *p);
    size_t np = 0;
    char buf[SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3];
    for (int i = 0; i < NT; i++) {
        if (i % 9 == 3)
            continue;
        sh_shard_info info;
        assert_int_equal(sh_shard_info_by_id(f->s, id[i], &info, buf, sizeof buf, &e), 0);
        sh_hash *h = dense_hashes((uint32_t)i, NP);
        for (size_t j = 0; j < NP; j++)
            p[np++] = (ref_posting){.hash = h[j].hash, .track = info.track, .t = h[j].t};
        free(h);
    }
    qsort(p, np, sizeof *p, cmp_ref);

    sh_fp_config qc;
    sh_fp_config_query(&qc);
    sh_matcher *ref;
    assert_int_equal(sh_matcher_new(&qc, &ref, &e), 0);
    /* Single hashes: present, absent between and beyond the stored ones, the extremes. */
    for (int i = 0; i < 400; i++) {
        uint32_t r = rnd();
        sh_hash q = {.hash = i % 4 == 0 ? r : p[r % np].hash + (uint32_t)(i % 4 == 1), .t = 7};
        q.hash = i == 1 ? 0 : i == 2 ? UINT32_MAX : q.hash;
        size_t got = 0;
        sh_matcher_reset(f->m);
        sh_matcher_reset(ref);
        assert_int_equal(sh_shard_lookup(f->s, &q, 1, f->m, &got, &e), 0);
        assert_int_equal(got, ref_vote(ref, p, np, &q, 1));
    }
    /* Whole queries: a live track's stretch (shifted), a deleted one's, random and repeated
     * hashes. */
    sh_hash *q = malloc(NQ * sizeof *q);
    for (int round = 0; round < 6; round++) {
        sh_hash *live = dense_hashes((uint32_t)(round * 4 + 1), NP);
        sh_hash *dead = dense_hashes(3, NP);
        for (size_t j = 0; j < NQ; j++) {
            uint32_t r = rnd();
            q[j] = j < 1200   ? (sh_hash){live[j + 300].hash, live[j + 300].t - 600}
                   : j < 1500 ? dead[j]
                   : j < 2200 ? (sh_hash){r, r % 2000}
                              : (sh_hash){p[r % np].hash, r % 2000};
        }
        q[NQ - 1] = q[NQ - 2]; /* one hash twice at the same time */
        free(live);
        free(dead);
        size_t got = 0;
        sh_matcher_reset(f->m);
        sh_matcher_reset(ref);
        assert_int_equal(sh_shard_lookup(f->s, q, NQ, f->m, &got, &e), 0);
        assert_int_equal(got, ref_vote(ref, p, np, q, NQ));
        assert_int_equal(sh_matcher_votes(f->m), sh_matcher_votes(ref));
        sh_match_result r1[16], r2[16];
        size_t n1 = 0, n2 = 0;
        assert_int_equal(sh_matcher_result(f->m, r1, 16, &n1), 0);
        assert_int_equal(sh_matcher_result(ref, r2, 16, &n2), 0);
        assert_int_equal(n1, n2);
        assert_true(round > 0 || n1 > 0); /* the live stretch is found */
        assert_memory_equal(r1, r2, n1 * sizeof *r1);
        /* Sorted once by the caller (sh_shard_query_sort), the lookup uses the hashes as they
         * are: the same votes and answers. */
        sh_hash *qs = malloc(NQ * sizeof *qs);
        memcpy(qs, q, NQ * sizeof *qs);
        assert_int_equal(sh_shard_query_sort(qs, NQ, &e), 0);
        for (size_t j = 1; j < NQ; j++)
            assert_true(qs[j - 1].hash < qs[j].hash ||
                        (qs[j - 1].hash == qs[j].hash && qs[j - 1].t <= qs[j].t));
        sh_matcher_reset(f->m);
        assert_int_equal(sh_shard_lookup(f->s, qs, NQ, f->m, &got, &e), 0);
        assert_int_equal(got, ref_vote(ref, p, np, q, NQ));
        assert_int_equal(sh_matcher_result(f->m, r1, 16, &n1), 0);
        assert_int_equal(n1, n2);
        assert_memory_equal(r1, r2, n1 * sizeof *r1);
        free(qs);
    }
    free(q);
    sh_matcher_free(ref);
    free(p);
}

static void test_add_replace_delete(void **state)
{
    fixture *f = *state;
    sh_shard_commit_stats cs;
    put_track(f->s, "a", 1, 1, 500, &cs);
    assert_int_equal(cs.upserts, 1);
    put_track(f->s, "b", 1, 2, 700, &cs);
    put_track(f->s, "c", 1, 3, 300, &cs);
    sh_shard_stats st;
    get_stats(f, &st);
    assert_int_equal(st.tracks, 3);
    assert_int_equal(st.postings, 1500);
    assert_int_equal(st.dead_postings, 0);
    assert_true(st.audio_s > 29.9 && st.audio_s < 30.1);
    assert_true(st.file_bytes > 0);
    assert_int_equal(votes_for(f, 2, 700), 700);

    /* The matcher names b for b's hashes shifted in time. */
    sh_hash *h = track_hashes(2, 700);
    for (size_t i = 0; i < 700; i++)
        h[i].t -= 30;
    sh_matcher_reset(f->m);
    assert_int_equal(sh_shard_lookup(f->s, h + 30, 300, f->m, NULL, NULL), 0);
    free(h);
    sh_match_result r[2];
    size_t nr = 0;
    assert_int_equal(sh_matcher_result(f->m, r, 2, &nr), 0);
    assert_true(nr >= 1);
    char buf[SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3];
    sh_shard_info info;
    assert_int_equal(sh_shard_info_by_track(f->s, r[0].track, &info, buf, sizeof buf, NULL), 0);
    assert_string_equal(info.id, "b");
    assert_string_equal(info.tenant, "acme");
    assert_string_equal(info.meta_json, "{\"title\":\"x\"}");
    assert_int_equal(info.postings, 700);

    /* Replace b: the old postings are gone, the new ones found. */
    put_track(f->s, "b", 2, 20, 400, &cs);
    assert_int_equal(cs.upserts, 1);
    get_stats(f, &st);
    assert_int_equal(st.tracks, 3);
    assert_int_equal(st.postings, 1200);
    assert_int_equal(st.dead_postings, 0); /* small index: the commit's sweep removed them */
    assert_int_equal(votes_for(f, 2, 700), 0);
    assert_int_equal(votes_for(f, 20, 400), 400);
    assert_int_equal(sh_shard_info_by_id(f->s, "b", &info, buf, sizeof buf, NULL), 0);
    assert_int_equal(info.version, 2);

    /* Older and equal versions are ignored (re-delivered deltas). */
    put_track(f->s, "b", 1, 2, 700, &cs);
    assert_int_equal(cs.stale, 1);
    assert_int_equal(cs.upserts, 0);
    put_track(f->s, "b", 2, 2, 700, &cs);
    assert_int_equal(cs.stale, 1);
    assert_int_equal(votes_for(f, 2, 700), 0);
    get_stats(f, &st);
    assert_int_equal(st.postings, 1200);

    /* Delete: gone; an older upsert delivered afterwards stays refused; a newer one applies. */
    sh_shard_batch *b;
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, NULL), 0);
    assert_int_equal(sh_shard_batch_delete(b, "b", 3, NULL), 0);
    assert_int_equal(sh_shard_batch_delete(b, "never-seen", 5, NULL), 0);
    assert_int_equal(sh_shard_batch_commit(b, &cs, NULL), 0);
    assert_int_equal(cs.deletes, 1);
    assert_int_equal(cs.not_found, 1);
    get_stats(f, &st);
    assert_int_equal(st.tracks, 2);
    assert_int_equal(st.postings, 800);
    assert_int_equal(votes_for(f, 20, 400), 0);
    assert_int_equal(sh_shard_info_by_id(f->s, "b", &info, buf, sizeof buf, NULL), SH_ENOTFOUND);
    put_track(f->s, "b", 2, 2, 700, &cs);
    assert_int_equal(cs.stale, 1);
    put_track(f->s, "never-seen", 4, 9, 10, &cs);
    assert_int_equal(cs.stale, 1);
    put_track(f->s, "b", SH_SHARD_VERSION_NEXT, 21, 50, &cs);
    assert_int_equal(cs.upserts, 1);
    assert_int_equal(sh_shard_info_by_id(f->s, "b", &info, buf, sizeof buf, NULL), 0);
    assert_int_equal(info.version, 4);
    assert_int_equal(votes_for(f, 21, 50), 50);
    get_stats(f, &st);
    assert_int_equal(st.tracks, 3);
    assert_int_equal(st.postings, 850);
}

static void test_batch_cursor_atomic(void **state)
{
    fixture *f = *state;
    sh_shard_batch *b;
    sh_err e = {0};
    char cur[64];
    size_t len = 0;
    assert_int_equal(sh_shard_get_cursor(f->s, "deltas/0", cur, sizeof cur, &len, NULL),
                     SH_ENOTFOUND);
    /* Several tracks, a delete of one added in the same batch, and the cursor: one commit. */
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    for (uint32_t i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "t%u", i);
        sh_hash *h = track_hashes(100 + i, 200);
        sh_shard_track t = {.id = id, .version = 10};
        assert_int_equal(sh_shard_batch_put(b, &t, h, 200, &e), 0);
        free(h);
    }
    assert_int_equal(sh_shard_batch_delete(b, "t3", 11, &e), 0);
    assert_int_equal(sh_shard_batch_set_cursor(b, "deltas/0", "e1:s42", 6, &e), 0);
    sh_shard_commit_stats cs;
    assert_int_equal(sh_shard_batch_commit(b, &cs, &e), 0);
    assert_int_equal(cs.upserts, 5);
    assert_int_equal(cs.deletes, 1);
    assert_int_equal(cs.postings_added, 800); /* t3's postings never reached the disk */
    assert_int_equal(sh_shard_get_cursor(f->s, "deltas/0", cur, sizeof cur, &len, NULL), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(cur, "e1:s42", 6);
    sh_shard_stats st;
    get_stats(f, &st);
    assert_int_equal(st.tracks, 4);
    assert_int_equal(st.postings, 800);
    assert_int_equal(votes_for(f, 103, 200), 0);
    assert_int_equal(votes_for(f, 104, 200), 200);

    /* An aborted batch leaves no trace. */
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    sh_hash *h = track_hashes(200, 100);
    sh_shard_track t = {.id = "aborted", .version = 1};
    assert_int_equal(sh_shard_batch_put(b, &t, h, 100, &e), 0);
    assert_int_equal(sh_shard_batch_delete(b, "t0", 99, &e), 0);
    assert_int_equal(sh_shard_batch_set_cursor(b, "deltas/0", "e1:s99", 6, &e), 0);
    sh_shard_batch_abort(b);
    get_stats(f, &st);
    assert_int_equal(st.tracks, 4);
    assert_int_equal(st.postings, 800);
    assert_int_equal(votes_for(f, 200, 100), 0);
    assert_int_equal(votes_for(f, 100, 200), 200);
    assert_int_equal(sh_shard_get_cursor(f->s, "deltas/0", cur, sizeof cur, &len, NULL), 0);
    assert_memory_equal(cur, "e1:s42", 6);
    assert_int_equal(sh_shard_get_cursor(f->s, "deltas/0", cur, 2, &len, NULL), SH_ETOOBIG);

    /* The batch cap: put refuses past it; the batch stays usable. */
    assert_int_equal(sh_shard_batch_begin(f->s, 150, &b, &e), 0);
    assert_int_equal(sh_shard_batch_put(b, &t, h, 100, &e), 0);
    assert_int_equal(sh_shard_batch_put(b, &t, h, 100, &e), SH_ETOOBIG);
    sh_shard_batch_abort(b);
    free(h);

    /* Bad arguments. */
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    char long_id[SH_SHARD_ID_MAX + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    sh_shard_track bad = {.id = long_id, .version = 1};
    assert_int_equal(sh_shard_batch_put(b, &bad, NULL, 0, &e), SH_EINVAL);
    bad.id = "";
    assert_int_equal(sh_shard_batch_put(b, &bad, NULL, 0, &e), SH_EINVAL);
    bad.id = "ok";
    bad.fp_version = SH_SHARD_FP_VERSION_MAX + 1; /* other fp_versions go to their own index */
    assert_int_equal(sh_shard_batch_put(b, &bad, NULL, 0, &e), SH_EINVAL);
    bad.fp_version = -1;
    assert_int_equal(sh_shard_batch_put(b, &bad, NULL, 0, &e), SH_EINVAL);
    bad.fp_version = 0;
    bad.version = (uint64_t)INT64_MAX + 1; /* the checksum's versions are signed */
    assert_int_equal(sh_shard_batch_put(b, &bad, NULL, 0, &e), SH_EINVAL);
    sh_shard_batch_abort(b);
}

/* Another process grows the map (its writes pass our map's end): our next write transactions —
 * commit, vacuum, compact — adopt the new size (MDB_MAP_RESIZED) instead of failing. This is
 * `index delete` (commit + compact) racing an `index add` of another process. */
static void test_map_grown_by_other_process(void **state)
{
    fixture *f = *state;
    const sh_shard_opts o = reopen(f, 256 << 10, 0);
    put_track(f->s, "small", 1, 1, 100, NULL);
    for (int step = 0; step < 3; step++) {
        char id[16];
        snprintf(id, sizeof id, "big%d", step);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) { /* the other process: its own handle, a map that has to grow */
            sh_shard *other = NULL;
            if (sh_shard_open(f->dir, &o, &other, NULL))
                _exit(1);
            sh_shard_batch *b;
            sh_hash *h = track_hashes(100 + (uint32_t)step, 200000);
            sh_shard_track t = {.id = id, .version = 1};
            int rc = sh_shard_batch_begin(other, 0, &b, NULL) ||
                     sh_shard_batch_put(b, &t, h, 200000, NULL) ||
                     sh_shard_batch_commit(b, NULL, NULL);
            _exit(rc ? 2 : 0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        sh_err e = {0};
        if (step == 0)
            assert_int_equal(sh_shard_vacuum(f->s, &e), 0);
        else if (step == 1)
            assert_int_equal(sh_shard_compact(f->s, &e), 0);
        else
            put_track(f->s, "small2", 1, 2, 100, NULL);
    }
    sh_shard_stats st;
    get_stats(f, &st);
    assert_int_equal(st.tracks, 5);
    assert_int_equal(st.postings, 3 * 200000 + 2 * 100);
    assert_true(votes_for(f, 102, 200000) >= 200000);
}

/* A batch that fails at commit (map limit reached) applies nothing, cursor included. */
static void test_failed_commit_no_trace(void **state)
{
    fixture *f = *state;
    reopen(f, 1 << 20, 1 << 20);
    put_track(f->s, "small", 1, 1, 100, NULL);
    sh_shard_batch *b;
    sh_err e = {0};
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    sh_hash *h = track_hashes(7, 400000);
    sh_shard_track t = {.id = "huge", .version = 1};
    assert_int_equal(sh_shard_batch_put(b, &t, h, 400000, &e), 0);
    free(h);
    assert_int_equal(sh_shard_batch_set_cursor(b, "src", "x", 1, &e), 0);
    assert_int_equal(sh_shard_batch_commit(b, NULL, &e), SH_ETOOBIG);
    sh_shard_stats st;
    get_stats(f, &st);
    assert_int_equal(st.tracks, 1);
    assert_int_equal(st.postings, 100);
    char cur[8];
    size_t len;
    assert_int_equal(sh_shard_get_cursor(f->s, "src", cur, sizeof cur, &len, NULL), SH_ENOTFOUND);
    assert_int_equal(votes_for(f, 1, 100), 100);
}

/* A small map grows on demand; many tracks exercise range splits, the incremental path (tracks
 * much smaller than the index: merged range by range) and lookups, checked against exact
 * expected vote counts. Then reopen. */
static void test_growth_reopen_vacuum(void **state)
{
    fixture *f = *state;
    enum { NB = 200, NI = 10, NL = NB + NI, NP = 3000 };
    sh_shard_opts o = reopen(f, 256 << 10, 0);
    sh_shard_batch *b;
    sh_err e = {0};
    sh_shard_commit_stats cs;
    /* Bulk: NB tracks in one batch (append path). */
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    for (uint32_t i = 0; i < NB; i++) {
        char id[16];
        snprintf(id, sizeof id, "bulk%u", i);
        sh_hash *h = track_hashes(1000 + i, NP);
        sh_shard_track t = {.id = id, .version = 1, .duration_s = 60};
        assert_int_equal(sh_shard_batch_put(b, &t, h, NP, &e), 0);
        free(h);
    }
    assert_int_equal(sh_shard_batch_commit(b, &cs, &e), 0);
    assert_true(cs.resizes > 0);
    sh_shard_stats st;
    get_stats(f, &st);
    assert_true(st.ranges > NP); /* so one track is merged range by range, not rewritten */
    /* Incremental: one track per batch (merge into existing ranges). */
    for (uint32_t i = 0; i < NI; i++) {
        char id[16];
        snprintf(id, sizeof id, "inc%u", i);
        put_track(f->s, id, 1, 2000 + i, NP, &cs);
        assert_true(cs.ranges_written < NP); /* the ranges it falls in, not the whole index */
    }
    get_stats(f, &st);
    assert_int_equal(st.tracks, NL);
    assert_int_equal(st.postings, NL * NP);
    uint32_t live[NL];
    for (uint32_t i = 0; i < NL; i++)
        live[i] = i < NB ? 1000 + i : 2000 + (i - NB);
    const uint32_t probes[] = {1000, 1013, 1126, 1199, 2000, 2005, 2009, 5555};
    size_t want[8];
    for (size_t i = 0; i < 8; i++) {
        want[i] = expected_votes(probes[i], live, NL, NP);
        assert_true(probes[i] == 5555 ? want[i] < 10 : want[i] >= NP);
        assert_int_equal(votes_for(f, probes[i], NP), want[i]);
    }

    /* Compaction repacks the incrementally grown table: fewer pages in use, same answers. */
    assert_int_equal(sh_shard_compact(f->s, &e), 0);
    sh_shard_stats cst;
    get_stats(f, &cst);
    assert_int_equal(cst.postings, NL * NP);
    assert_int_equal(cst.tracks, NL);
    assert_true(cst.used_bytes < st.used_bytes);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(votes_for(f, probes[i], NP), want[i]);

    /* Delete 20 tracks in one batch: the bounded sweep leaves dead postings; vacuum removes. */
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    for (uint32_t i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "bulk%u", i);
        assert_int_equal(sh_shard_batch_delete(b, id, SH_SHARD_VERSION_NEXT, &e), 0);
    }
    assert_int_equal(sh_shard_batch_commit(b, &cs, &e), 0);
    assert_int_equal(cs.deletes, 20);
    get_stats(f, &st);
    assert_int_equal(st.tracks, NL - 20);
    assert_int_equal(st.postings, (NL - 20) * NP);
    assert_true(st.dead_postings > 0 && st.dead_postings <= 20 * NP);
    /* Dead postings are never voted: only collisions with live tracks remain. */
    assert_int_equal(votes_for(f, 1000, NP), expected_votes(1000, live + 20, NL - 20, NP));
    assert_int_equal(sh_shard_vacuum(f->s, &e), 0);
    get_stats(f, &st);
    assert_int_equal(st.dead_postings, 0);
    assert_int_equal(st.postings, (NL - 20) * NP);

    /* Reopen: everything persisted. */
    sh_shard_free(f->s);
    o.read_only = true;
    assert_int_equal(sh_shard_open(f->dir, &o, &f->s, &e), 0);
    get_stats(f, &st);
    assert_int_equal(st.tracks, NL - 20);
    assert_int_equal(votes_for(f, 1039, NP), expected_votes(1039, live + 20, NL - 20, NP));
    assert_int_equal(votes_for(f, 2009, NP), expected_votes(2009, live + 20, NL - 20, NP));
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), SH_EINVAL); /* read-only */

    /* Snapshot: a compacted copy opens and answers the same. */
    char snap[300];
    snprintf(snap, sizeof snap, "%s/snap", f->dir);
    assert_int_equal(mkdir(snap, 0755), 0);
    assert_int_equal(sh_shard_snapshot(f->s, snap, &e), 0);
    sh_shard *s2;
    assert_int_equal(sh_shard_open(snap, &o, &s2, &e), 0);
    sh_shard_stats st2;
    assert_int_equal(sh_shard_stats_get(s2, &st2, &e), 0);
    assert_int_equal(st2.postings, (NL - 20) * NP);
    assert_true(st2.file_bytes <= st.file_bytes);
    sh_shard_free(s2);
}

/* Hashes of track `seed` (track_hashes) moved into the low half of the hash space (or = 1), the
 * high half (2) or left as they are (0). */
static sh_hash *half_hashes(uint32_t seed, size_t n, int half)
{
    sh_hash *h = track_hashes(seed, n);
    for (size_t i = 0; i < n; i++)
        h[i].hash = half == 1 ? h[i].hash >> 1 : half == 2 ? h[i].hash | 0x80000000u : h[i].hash;
    return h;
}

typedef struct half_track {
    uint32_t seed;
    int half;
} half_track;

/* Brute force: postings of the tracks t[0..nt) (np each) sharing a hash with the query q. */
static size_t half_votes(const half_track *t, size_t nt, size_t np, const sh_hash *q, size_t nq)
{
    size_t votes = 0;
    for (size_t i = 0; i < nt; i++) {
        sh_hash *h = half_hashes(t[i].seed, np, t[i].half);
        for (size_t j = 0; j < nq; j++)
            for (size_t x = 0; x < np; x++)
                votes += h[x].hash == q[j].hash;
        free(h);
    }
    return votes;
}

static void put_half_tracks(sh_shard *s, const half_track *t, size_t nt, size_t np,
                            sh_shard_commit_stats *cs)
{
    sh_shard_batch *b;
    sh_err e = {0};
    assert_int_equal(sh_shard_batch_begin(s, 0, &b, &e), 0);
    for (size_t i = 0; i < nt; i++) {
        char id[32];
        snprintf(id, sizeof id, "s%u.%d", t[i].seed, t[i].half);
        sh_hash *h = half_hashes(t[i].seed, np, t[i].half);
        sh_shard_track tr = {.id = id, .version = 1, .duration_s = 60};
        assert_int_equal(sh_shard_batch_put(b, &tr, h, np, &e), 0);
        free(h);
    }
    assert_int_equal(sh_shard_batch_commit(b, cs, &e), 0);
}

/* A batch with at least as many new postings as the index has ranges is merged by rewriting the
 * index in key order (sh_shard_rewrite_index): its pages end up as full as those of the same
 * tracks written in one batch (merged range by range, leaf pages split in the middle: ~1.5x the
 * bytes), every dead posting is dropped on the way, new hashes past the last range are placed, and
 * lookups cast exactly the votes of a brute-force count. */
static void test_big_batch_rewrite(void **state)
{
    fixture *f = *state;
    enum { N1 = 40, N2 = 40, NP = 3000 };
    half_track t[N1 + N2 + 1];
    for (uint32_t i = 0; i < N1; i++) /* low half: the last ranges are the high track's */
        t[i] = (half_track){.seed = 3000 + i, .half = 1};
    t[N1] = (half_track){.seed = 4000, .half = 2};
    for (uint32_t i = 0; i < N2; i++) /* everywhere: half of them past the last range */
        t[N1 + 1 + i] = (half_track){.seed = 5000 + i, .half = 0};
    sh_shard_commit_stats cs;
    sh_err e = {0};
    put_half_tracks(f->s, t, N1 + 1, NP, &cs);
    /* Delete the high track and vacuum (the index then ends below 2^31), then 2 others whose
     * postings the bounded sweep of their commit leaves in place. */
    sh_shard_batch *b;
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    assert_int_equal(sh_shard_batch_delete(b, "s4000.2", SH_SHARD_VERSION_NEXT, &e), 0);
    assert_int_equal(sh_shard_batch_commit(b, &cs, &e), 0);
    assert_int_equal(sh_shard_vacuum(f->s, &e), 0);
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    assert_int_equal(sh_shard_batch_delete(b, "s3001.1", SH_SHARD_VERSION_NEXT, &e), 0);
    assert_int_equal(sh_shard_batch_delete(b, "s3002.1", SH_SHARD_VERSION_NEXT, &e), 0);
    assert_int_equal(sh_shard_batch_commit(b, &cs, &e), 0);
    sh_shard_stats st;
    get_stats(f, &st);
    assert_true(st.dead_postings > 0);
    assert_true(st.ranges <= N2 * NP); /* the next batch rewrites */
    half_track live[N1 + N2];
    size_t nlive = 0;
    for (size_t i = 0; i < N1 + N2 + 1; i++)
        if (i != 1 && i != 2 && i != N1)
            live[nlive++] = t[i];

    put_half_tracks(f->s, t + N1 + 1, N2, NP, &cs);
    assert_true(cs.ranges_written >= st.ranges); /* every range written again */
    sh_shard_stats rw;
    get_stats(f, &rw);
    assert_int_equal(rw.tracks, nlive);
    assert_int_equal(rw.postings, nlive * NP);
    assert_int_equal(rw.dead_postings, 0);

    /* The same live tracks in one batch, in a shard of their own. */
    char dir[300];
    snprintf(dir, sizeof dir, "%s/one", f->dir);
    sh_shard *one;
    assert_int_equal(sh_shard_open(dir, NULL, &one, &e), 0);
    put_half_tracks(one, live, nlive, NP, NULL);
    sh_shard_stats os;
    assert_int_equal(sh_shard_stats_get(one, &os, &e), 0);
    assert_int_equal(os.postings, rw.postings);
    assert_true(rw.used_bytes * 100 <= os.used_bytes * 102);
    assert_true(rw.ranges * 100 <= os.ranges * 102 && os.ranges * 100 <= rw.ranges * 102);

    /* Votes: stretches of live tracks (low, everywhere), of a deleted one, random hashes. */
    const uint32_t probes[][2] = {{3000, 1}, {3030, 1}, {5000, 0}, {5039, 0}, {4000, 2}, {3001, 1},
                                  {7777, 0}};
    for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
        sh_hash *q = half_hashes(probes[i][0], NP, (int)probes[i][1]);
        const size_t want = half_votes(live, nlive, NP, q + 500, 400);
        size_t got = 0, got1 = 0;
        sh_matcher_reset(f->m);
        assert_int_equal(sh_shard_lookup(f->s, q + 500, 400, f->m, &got, &e), 0);
        assert_int_equal(got, want);
        sh_matcher_reset(f->m);
        assert_int_equal(sh_shard_lookup(one, q + 500, 400, f->m, &got1, &e), 0);
        assert_int_equal(got1, want);
        assert_true(probes[i][0] == 4000 || probes[i][0] == 3001 || probes[i][0] == 7777
                        ? want < 10
                        : want >= 400);
        free(q);
    }
    sh_shard_free(one);
}

/* Readers never block the writer and always see a consistent snapshot, also while the writer
 * grows the map: a reader thread keeps looking up a committed track while 30 commits (with map
 * growths from a 64 KB map) add others. */
typedef struct reader_arg {
    sh_shard *s;
    atomic_int stop;
    int lookups, bad;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *r = p;
    sh_fp_config qc;
    sh_fp_config_query(&qc);
    sh_matcher *m;
    if (sh_matcher_new(&qc, &m, NULL))
        return NULL;
    sh_hash *h = track_hashes(4242, 2000);
    while (!atomic_load(&r->stop)) {
        size_t votes = 0;
        sh_matcher_reset(m);
        if (sh_shard_lookup(r->s, h, 2000, m, &votes, NULL) || votes != 2000)
            r->bad++;
        r->lookups++;
    }
    free(h);
    sh_matcher_free(m);
    return NULL;
}

static void test_readers_during_writes(void **state)
{
    fixture *f = *state;
    reopen(f, 64 << 10, 0);
    put_track(f->s, "fixed", 1, 4242, 2000, NULL);
    reader_arg r = {.s = f->s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader, &r), 0);
    size_t resizes = 0;
    for (int i = 0; i < 30; i++) {
        char id[16];
        snprintf(id, sizeof id, "w%d", i);
        sh_shard_commit_stats cs;
        put_track(f->s, id, 1, 5000 + (uint32_t)i, 4000, &cs);
        resizes += cs.resizes;
    }
    atomic_store(&r.stop, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(resizes > 0);
    assert_true(r.lookups > 0);
    assert_int_equal(r.bad, 0);
    sh_shard_stats st;
    get_stats(f, &st);
    assert_int_equal(st.postings, 2000 + 30 * 4000);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

static void test_bad_files(void **state)
{
    fixture *f = *state;
    sh_err e = {0};
    sh_shard *s = NULL;
    sh_shard_opts o;
    sh_shard_opts_default(&o);
    char dir[300], path[400];

    /* Garbage where data.mdb should be. */
    snprintf(dir, sizeof dir, "%s/garbage", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    char junk[16384];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)rnd();
    write_file(path, junk, sizeof junk);
    assert_int_equal(sh_shard_open(dir, &o, &s, &e), SH_EFORMAT);
    assert_null(s);
    assert_non_null(strstr(e.msg, "not a SoundHash shard"));

    /* A valid LMDB environment that is not a shard. */
    snprintf(dir, sizeof dir, "%s/foreign", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {3, "key"}, v = {5, "value"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(sh_shard_open(dir, &o, &s, &e), SH_EFORMAT);

    /* Read-only open of nothing; an index path that is a file. */
    snprintf(dir, sizeof dir, "%s/missing", f->dir);
    o.read_only = true;
    assert_int_equal(sh_shard_open(dir, &o, &s, &e), SH_ENOTFOUND);
    assert_int_equal(sh_shard_open(path, &o, &s, &e), SH_EIO);

    /* no_create: neither a missing directory nor an empty one becomes a shard; an existing shard
     * opens read-write. */
    o.read_only = false;
    o.no_create = true;
    assert_int_equal(sh_shard_open(dir, &o, &s, &e), SH_ENOTFOUND);
    assert_int_equal(access(dir, F_OK), -1);
    snprintf(dir, sizeof dir, "%s/empty", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(sh_shard_open(dir, &o, &s, &e), SH_ENOTFOUND);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    assert_int_equal(access(path, F_OK), -1);
    sh_shard_free(f->s);
    f->s = NULL;
    assert_int_equal(sh_shard_open(f->dir, &o, &f->s, &e), 0);
    put_track(f->s, "kept", 1, 1, 10, NULL);
    o.no_create = false;

    /* A shard built for another fp_version is refused unless asked for "any". */
    o.read_only = false;
    o.fp_version = SH_FP_VERSION + 7;
    snprintf(dir, sizeof dir, "%s/otherfp", f->dir);
    assert_int_equal(sh_shard_open(dir, &o, &s, &e), 0);
    sh_shard_free(s);
    o.fp_version = 0;
    assert_int_equal(sh_shard_open(dir, &o, &s, &e), SH_EUNSUPPORTED);
    o.fp_version = -1;
    assert_int_equal(sh_shard_open(dir, &o, &s, &e), 0);
    assert_int_equal(sh_shard_fp_version(s), SH_FP_VERSION + 7);
    sh_shard_free(s);
}

/* sh_shard_repack(): a shard written one track per commit shrinks, keeps every count and answer,
 * stays writable afterwards (LMDB's lock table re-initialised for the new file); it is refused,
 * changing nothing, while another process has the shard open; a crashed repack's leftover is
 * cleaned; a missing shard is SH_ENOTFOUND. */
static void test_repack(void **state)
{
    fixture *f = *state;
    for (uint32_t i = 0; i < 24; i++) {
        char id[16];
        snprintf(id, sizeof id, "t%u", i);
        put_track(f->s, id, 1, 500 + i, 3000, NULL);
    }
    sh_shard_batch *b;
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, NULL), 0);
    assert_int_equal(sh_shard_batch_delete(b, "t3", SH_SHARD_VERSION_NEXT, NULL), 0);
    assert_int_equal(sh_shard_batch_commit(b, NULL, NULL), 0);
    sh_shard_stats st0;
    get_stats(f, &st0);
    size_t votes0 = votes_for(f, 507, 3000);
    assert_true(votes0 >= 3000);
    sh_shard_free(f->s);
    f->s = NULL;

    /* Another process holding the shard open: refused, file untouched. */
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sh_shard *other = NULL;
        char c;
        close(go[1]);
        int rc = sh_shard_open(f->dir, NULL, &other, NULL);
        rc = rc || read(go[0], &c, 1) < 0;
        sh_shard_free(other);
        _exit(rc ? 1 : 0);
    }
    close(go[0]);
    sh_err e = {0};
    sh_shard_stats a, z;
    int rc;
    for (;;) { /* until the child has it open: refused from then on */
        rc = sh_shard_repack(f->dir, NULL, 0, &a, &z, &e);
        if (rc == SH_ETRANSIENT)
            break;
        assert_int_equal(rc, 0); /* the child not there yet: a repack of an idle shard is fine */
    }
    assert_non_null(strstr(e.msg, "open in another process"));
    close(go[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    char path[300];
    snprintf(path, sizeof path, "%s/.repack.tmp", f->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/.repack.tmp/data.mdb", f->dir);
    FILE *junk = fopen(path, "w");
    assert_non_null(junk);
    fputs("leftover of a crashed repack", junk);
    fclose(junk);
    assert_int_equal(sh_shard_repack(f->dir, NULL, 0, &a, &z, &e), 0);
    assert_true(a.file_bytes <= st0.file_bytes);
    assert_true(z.file_bytes * 10 < st0.file_bytes * 7); /* at least 30 % smaller */
    assert_int_equal(z.tracks, st0.tracks);
    assert_int_equal(z.postings, st0.postings);
    assert_int_equal(z.dead_postings, 0);
    assert_true(z.audio_s == st0.audio_s);
    struct stat fs;
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    assert_int_equal(stat(path, &fs), 0);
    assert_int_equal((uint64_t)fs.st_size, z.file_bytes);
    snprintf(path, sizeof path, "%s/.repack.tmp", f->dir);
    assert_int_equal(stat(path, &fs), -1);

    reopen(f, 0, 0);
    assert_int_equal(votes_for(f, 507, 3000), votes0);
    put_track(f->s, "after", 1, 999, 3000, NULL);
    reopen(f, 0, 0);
    sh_shard_stats st1;
    get_stats(f, &st1);
    assert_int_equal(st1.tracks, st0.tracks + 1);
    assert_int_equal(st1.postings, st0.postings + 3000);
    assert_true(votes_for(f, 999, 3000) >= 3000);

    snprintf(path, sizeof path, "%s/nowhere", f->dir);
    assert_int_equal(sh_shard_repack(path, NULL, 0, NULL, NULL, &e), SH_ENOTFOUND);
}

/* stop_postings: a hash value with more postings than the cap in the shard casts no vote; one at
 * the cap still votes; the default (no cap) votes them all. */
static void test_lookup_stop_postings(void **state)
{
    fixture *f = *state;
    enum { NT = 12, COMMON = 0x00abcdefu, RARE = 0x7fff0001u, OTHER = 0x10000000u };
    sh_shard_batch *b;
    sh_err e = {0};
    char id[NT][16];
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    for (int i = 0; i < NT; i++) {
        snprintf(id[i], sizeof id[i], "s%d", i);
        /* every track: the common hash; track 0 also the rare one; tracks 0-4 another (5) */
        sh_hash h[3] = {{.hash = COMMON, .t = (uint32_t)i}, {.hash = OTHER, .t = 7},
                        {.hash = RARE, .t = 9}};
        const size_t n = i == 0 ? 3 : i < 5 ? 2 : 1;
        sh_shard_track t = {.id = id[i], .version = 1, .duration_s = 5.0};
        assert_int_equal(sh_shard_batch_put(b, &t, h, n, &e), 0);
    }
    assert_int_equal(sh_shard_batch_commit(b, NULL, &e), 0);
    const sh_hash q[3] = {{.hash = COMMON, .t = 1}, {.hash = OTHER, .t = 2}, {.hash = RARE, .t = 3}};
    const uint32_t caps[4] = {0, NT, NT - 1, 5}, want[4] = {NT + 5 + 1, NT + 5 + 1, 5 + 1, 5 + 1};
    for (int c = 0; c < 4; c++) {
        sh_shard_free(f->s);
        sh_shard_opts o;
        sh_shard_opts_default(&o);
        o.stop_postings = caps[c];
        assert_int_equal(sh_shard_open(f->dir, &o, &f->s, &e), 0);
        sh_matcher_reset(f->m);
        size_t votes = 0;
        assert_int_equal(sh_shard_lookup(f->s, q, 3, f->m, &votes, &e), 0);
        assert_int_equal(votes, want[c]);
    }
    /* cap 4: the 5-posting hash is a stop hash too; only the rare one votes */
    sh_shard_free(f->s);
    sh_shard_opts o;
    sh_shard_opts_default(&o);
    o.stop_postings = 4;
    assert_int_equal(sh_shard_open(f->dir, &o, &f->s, &e), 0);
    sh_matcher_reset(f->m);
    size_t votes = 0;
    assert_int_equal(sh_shard_lookup(f->s, q, 3, f->m, &votes, &e), 0);
    assert_int_equal(votes, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_replace_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_cursor_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_no_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grown_by_other_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_growth_reopen_vacuum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_batch_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_during_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_matches_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_stop_postings, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
