/* Unit tests for the replicated side of core/engine/sh_shard: ops applied by change-log seq
 * (sh_shard_batch_apply), two fingerprint versions in one shard through a reindex (real
 * fingerprints of synth.h audio: SH_FP_PAIRS hashes as fp_version 2, triplets as 3), the
 * incremental checksum against sh_shardsum computed from scratch, format-1 shards (read-only),
 * format-2 shards (plain range blobs: read, written as they are, converted by compact),
 * aborted batches and a writer killed at a random instant. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_match.h"
#include "sh_shard.h"
#include "sh_shard_range.h"
#include "sh_shardsum.h"
#include "synth.h"

#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { RATE = 8000, TRACK_S = 20, CLIP_S = 6, NTRACKS = 4, FP_PAIRS = 2, FP_TRIPLETS = 3 };

typedef struct fixture {
    char dir[256];
    sh_shard *s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sh-test-shard-apply.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sh_shard_free(f->s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Postings drawn from `seed` (regenerable). */
static sh_hash *rand_hashes(uint32_t seed, size_t n)
{
    sh_hash *h = malloc((n ? n : 1) * sizeof *h);
    uint64_t st = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (size_t i = 0; i < n; i++)
        h[i] = (sh_hash){.hash = synth_rand(&st), .t = (uint32_t)(i * 2)};
    return h;
}

static sh_dop upsert(int64_t seq, const char *id, int64_t version, int32_t fp, const sh_hash *h,
                     size_t n)
{
    return (sh_dop){.seq = seq,
                    .kind = SH_DOP_UPSERT,
                    .track_id = id,
                    .tenant = "acme",
                    .version = version,
                    .fp_version = fp,
                    .duration_s = 10.0,
                    .metadata = "{}",
                    .postings = h,
                    .npostings = n};
}

static sh_dop delete_op(int64_t seq, const char *id, int64_t version)
{
    return (sh_dop){.seq = seq, .kind = SH_DOP_DELETE, .track_id = id, .version = version};
}

/* Applies ops[0..n) in one batch; returns its stats. */
static sh_shard_commit_stats apply_ops(sh_shard *s, const sh_dop *ops, size_t n)
{
    sh_shard_batch *b;
    sh_err e = {0};
    sh_shard_commit_stats st;
    assert_int_equal(sh_shard_batch_begin(s, 0, &b, &e), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sh_shard_batch_apply(b, &ops[i], &e), 0);
    assert_int_equal(sh_shard_batch_commit(b, &st, &e), 0);
    return st;
}

static sh_shard_commit_stats apply1(sh_shard *s, sh_dop op)
{
    return apply_ops(s, &op, 1);
}

static void expect_track(sh_shard *s, const char *id, uint64_t version, int fp)
{
    static char buf[SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3];
    sh_shard_info in;
    sh_err e = {0};
    assert_int_equal(sh_shard_info_by_id(s, id, &in, buf, sizeof buf, &e), 0);
    assert_int_equal(in.version, version);
    assert_int_equal(in.fp_version, fp);
}

static void expect_gone(sh_shard *s, const char *id)
{
    static char buf[SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3];
    sh_shard_info in;
    assert_int_equal(sh_shard_info_by_id(s, id, &in, buf, sizeof buf, NULL), SH_ENOTFOUND);
}

/* ---- seq-keyed apply ----------------------------------------------------------------------- */

static void test_seq_order(void **state)
{
    fixture *f = *state;
    sh_hash *h = rand_hashes(1, 100), *h2 = rand_hashes(2, 80);

    sh_shard_commit_stats st = apply1(f->s, upsert(10, "a", 1, FP_TRIPLETS, h, 100));
    assert_int_equal(st.upserts, 1);
    expect_track(f->s, "a", 1, FP_TRIPLETS);

    /* Redelivery and an older op: stale, nothing changes. */
    st = apply1(f->s, upsert(10, "a", 1, FP_TRIPLETS, h, 100));
    assert_int_equal(st.stale, 1);
    assert_int_equal(st.upserts, 0);
    st = apply1(f->s, upsert(9, "a", 5, FP_TRIPLETS, h2, 80));
    assert_int_equal(st.stale, 1);
    expect_track(f->s, "a", 1, FP_TRIPLETS);

    /* Duplicates inside one batch: the first applies, its copy is stale. */
    sh_dop dup[2] = {upsert(11, "a", 2, FP_TRIPLETS, h2, 80),
                     upsert(11, "a", 2, FP_TRIPLETS, h2, 80)};
    st = apply_ops(f->s, dup, 2);
    assert_int_equal(st.upserts, 1);
    assert_int_equal(st.stale, 1);
    expect_track(f->s, "a", 2, FP_TRIPLETS);

    /* A lower version with a higher seq applies: the seq is the key, not the version. */
    st = apply1(f->s, upsert(12, "a", 1, FP_TRIPLETS, h, 100));
    assert_int_equal(st.upserts, 1);
    expect_track(f->s, "a", 1, FP_TRIPLETS);

    /* Delete, then the older upsert redelivered: stays out. */
    st = apply1(f->s, delete_op(13, "a", 1));
    assert_int_equal(st.deletes, 1);
    expect_gone(f->s, "a");
    st = apply1(f->s, upsert(12, "a", 1, FP_TRIPLETS, h, 100));
    assert_int_equal(st.stale, 1);
    expect_gone(f->s, "a");
    st = apply1(f->s, delete_op(13, "a", 1)); /* the delete redelivered */
    assert_int_equal(st.stale, 1);

    /* A delete of an id never seen remembers its seq. */
    st = apply1(f->s, delete_op(20, "b", 3));
    assert_int_equal(st.not_found, 1);
    st = apply1(f->s, upsert(15, "b", 2, FP_TRIPLETS, h, 100));
    assert_int_equal(st.stale, 1);
    expect_gone(f->s, "b");
    st = apply1(f->s, upsert(21, "b", 4, FP_TRIPLETS, h, 100));
    assert_int_equal(st.upserts, 1);
    expect_track(f->s, "b", 4, FP_TRIPLETS);

    /* Reindex: same version, another fp_version, higher seq. */
    st = apply1(f->s, upsert(22, "b", 4, FP_PAIRS, h2, 80));
    assert_int_equal(st.upserts, 1);
    expect_track(f->s, "b", 4, FP_PAIRS);

    sh_shard_stats ss;
    assert_int_equal(sh_shard_stats_get(f->s, &ss, NULL), 0);
    assert_int_equal(ss.tracks, 1);
    assert_int_equal(ss.postings, 80);

    /* Bad ops. */
    sh_shard_batch *b;
    sh_err e = {0};
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    sh_dop bad = upsert(0, "c", 1, FP_TRIPLETS, h, 1);
    assert_int_equal(sh_shard_batch_apply(b, &bad, &e), SH_EINVAL);
    bad = upsert(30, "c", 1, 0, h, 1);
    assert_int_equal(sh_shard_batch_apply(b, &bad, &e), SH_EINVAL);
    bad = upsert(30, "c", -1, FP_TRIPLETS, h, 1);
    assert_int_equal(sh_shard_batch_apply(b, &bad, &e), SH_EINVAL);
    bad = upsert(30, "", 1, FP_TRIPLETS, h, 1);
    assert_int_equal(sh_shard_batch_apply(b, &bad, &e), SH_EINVAL);
    bad.kind = 7;
    assert_int_equal(sh_shard_batch_apply(b, &bad, &e), SH_EINVAL);
    sh_shard_batch_abort(b);
    free(h);
    free(h2);
}

/* ---- two fingerprint versions through a reindex --------------------------------------------- */

typedef struct corpus {
    float *audio[NTRACKS];
    sh_hash *idx[2][NTRACKS]; /* [0]: pairs (fp 2), [1]: triplets (fp 3) */
    size_t nidx[2][NTRACKS];
    sh_hash *q[2][NTRACKS]; /* a clip of each track, query mode */
    size_t nq[2][NTRACKS];
    sh_matcher *m[2];
} corpus;

static const char *const IDS[NTRACKS] = {"t0", "t1", "t2", "t3"};

static void hashes_of(const sh_fp_config *c, const float *x, size_t n, sh_hash **out, size_t *nout)
{
    sh_fp *fp;
    sh_err e = {0};
    assert_int_equal(sh_fp_new(c, &fp, &e), 0);
    assert_int_equal(sh_fp_feed(fp, x, n, &e), 0);
    assert_int_equal(sh_fp_finish(fp, &e), 0);
    const sh_hash *h = sh_fp_hashes(fp, nout);
    assert_true(*nout > 100);
    *out = malloc(*nout * sizeof **out);
    memcpy(*out, h, *nout * sizeof **out);
    sh_fp_free(fp);
}

static void corpus_make(corpus *c)
{
    const size_t n = (size_t)TRACK_S * RATE, off = (size_t)5 * RATE, qn = (size_t)CLIP_S * RATE;
    const int modes[2] = {SH_FP_PAIRS, SH_FP_TRIPLETS};
    for (int v = 0; v < 2; v++) {
        sh_fp_config ic, qc;
        sh_fp_config_default(&ic);
        sh_fp_config_mode(&ic, modes[v]);
        sh_fp_config_query(&qc);
        sh_fp_config_mode(&qc, modes[v]);
        assert_int_equal(sh_matcher_new(&qc, &c->m[v], NULL), 0);
        for (int i = 0; i < NTRACKS; i++) {
            if (!v) {
                c->audio[i] = malloc(n * sizeof(float));
                synth_music(c->audio[i], n, RATE, 500 + (uint64_t)i);
            }
            hashes_of(&ic, c->audio[i], n, &c->idx[v][i], &c->nidx[v][i]);
            hashes_of(&qc, c->audio[i] + off, qn, &c->q[v][i], &c->nq[v][i]);
        }
    }
}

static void corpus_free(corpus *c)
{
    for (int v = 0; v < 2; v++) {
        sh_matcher_free(c->m[v]);
        for (int i = 0; i < NTRACKS; i++) {
            free(c->idx[v][i]);
            free(c->q[v][i]);
        }
    }
    for (int i = 0; i < NTRACKS; i++)
        free(c->audio[i]);
}

/* What a matcher does: the clip fingerprinted with every version present, each looked up in its
 * own index, the best answer kept. Returns the id matched ("" for none) in `id`. */
static void best_match(sh_shard *s, corpus *c, int clip, char *id, size_t cap)
{
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    size_t nfp;
    sh_err e = {0};
    assert_int_equal(sh_shard_fp_versions(s, fps, SH_SHARD_FP_VERSIONS_MAX, &nfp, &e), 0);
    double best = 0;
    uint32_t track = 0;
    for (size_t i = 0; i < nfp; i++) {
        assert_true(fps[i] == FP_PAIRS || fps[i] == FP_TRIPLETS);
        int v = fps[i] == FP_PAIRS ? 0 : 1;
        sh_matcher_reset(c->m[v]);
        assert_int_equal(
            sh_shard_lookup_fp(s, fps[i], c->q[v][clip], c->nq[v][clip], c->m[v], NULL, &e), 0);
        sh_match_result r;
        size_t nr = 0;
        assert_int_equal(sh_matcher_result(c->m[v], &r, 1, &nr), 0);
        if (nr && r.confidence > best) {
            best = r.confidence;
            track = r.track;
        }
    }
    id[0] = '\0';
    if (!track)
        return;
    static char buf[SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3];
    sh_shard_info in;
    assert_int_equal(sh_shard_info_by_track(s, track, &in, buf, sizeof buf, &e), 0);
    snprintf(id, cap, "%s", in.id);
}

static void expect_all_match(sh_shard *s, corpus *c)
{
    for (int i = 0; i < NTRACKS; i++) {
        char id[SH_SHARD_ID_MAX + 1];
        best_match(s, c, i, id, sizeof id);
        assert_string_equal(id, IDS[i]);
    }
}

static void expect_fps(sh_shard *s, const int *want, size_t nwant)
{
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    size_t n;
    assert_int_equal(sh_shard_fp_versions(s, fps, SH_SHARD_FP_VERSIONS_MAX, &n, NULL), 0);
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(fps[i], want[i]);
}

static void test_reindex_matchable(void **state)
{
    fixture *f = *state;
    corpus c = {0};
    corpus_make(&c);
    sh_err e = {0};

    for (int i = 0; i < NTRACKS; i++)
        apply1(f->s, upsert(1 + i, IDS[i], 7, FP_PAIRS, c.idx[0][i], c.nidx[0][i]));
    expect_fps(f->s, (int[]){FP_PAIRS}, 1);
    expect_all_match(f->s, &c);
    /* No index of the query's version: no votes (triplet hashes are never compared with pairs). */
    size_t votes = 1;
    sh_matcher_reset(c.m[1]);
    assert_int_equal(
        sh_shard_lookup_fp(f->s, FP_TRIPLETS, c.q[1][0], c.nq[1][0], c.m[1], &votes, &e), 0);
    assert_int_equal(votes, 0);

    /* The first track is reindexed by another process: this handle never opened the fp 3 index
     * and must find it. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sh_shard *other = NULL;
        sh_shard_batch *b = NULL;
        sh_dop op = upsert(10, IDS[0], 7, FP_TRIPLETS, c.idx[1][0], c.nidx[1][0]);
        int rc = sh_shard_open(f->dir, NULL, &other, NULL) ||
                 sh_shard_batch_begin(other, 0, &b, NULL) ||
                 sh_shard_batch_apply(b, &op, NULL) || sh_shard_batch_commit(b, NULL, NULL);
        _exit(rc ? 1 : 0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    expect_track(f->s, IDS[0], 7, FP_TRIPLETS);
    expect_fps(f->s, (int[]){FP_PAIRS, FP_TRIPLETS}, 2);
    expect_all_match(f->s, &c);

    /* The rest, one at a time: every track matches after every step, across a reopen too. */
    for (int i = 1; i < NTRACKS; i++) {
        apply1(f->s, upsert(10 + i, IDS[i], 7, FP_TRIPLETS, c.idx[1][i], c.nidx[1][i]));
        expect_all_match(f->s, &c);
        if (i == 2) {
            sh_shard_free(f->s);
            assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, &e), 0);
            expect_all_match(f->s, &c);
        }
    }
    expect_fps(f->s, (int[]){FP_TRIPLETS}, 1);
    /* The pairs index keeps no live postings: its clip hashes vote nothing. */
    votes = 1;
    assert_int_equal(
        sh_shard_lookup_fp(f->s, FP_PAIRS, c.q[0][1], c.nq[0][1], c.m[0], &votes, &e), 0);
    assert_int_equal(votes, 0);
    assert_int_equal(sh_shard_vacuum(f->s, &e), 0);
    assert_int_equal(sh_shard_compact(f->s, &e), 0);
    sh_shard_stats st;
    assert_int_equal(sh_shard_stats_get(f->s, &st, &e), 0);
    assert_int_equal(st.dead_postings, 0);
    size_t total = 0;
    for (int i = 0; i < NTRACKS; i++)
        total += c.nidx[1][i];
    assert_int_equal(st.postings, total);
    expect_all_match(f->s, &c);
    corpus_free(&c);
}

/* ---- checksum ------------------------------------------------------------------------------ */

enum { NIDS = 24 };

typedef struct model_track {
    int64_t seq; /* 0: never seen */
    bool live;
    int64_t version;
    int32_t fp;
    uint32_t seed;
    size_t n;
} model_track;

static void model_apply(model_track *m, const sh_dop *op, uint32_t seed)
{
    if (op->seq <= m->seq)
        return;
    m->seq = op->seq;
    m->live = op->kind == SH_DOP_UPSERT;
    m->version = op->version;
    m->fp = op->fp_version;
    m->seed = seed;
    m->n = op->npostings;
}

static sh_shardsum model_sum(const model_track *m, size_t n)
{
    sh_shardsum s = SH_SHARDSUM_INIT;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].live)
            continue;
        char id[16];
        snprintf(id, sizeof id, "id%zu", i);
        sh_hash *h = rand_hashes(m[i].seed, m[i].n);
        assert_int_equal(
            sh_shardsum_add(&s, id, strlen(id), m[i].version, m[i].fp, h, m[i].n, NULL), 0);
        free(h);
    }
    return s;
}

static void expect_sum(sh_shard *s, const model_track *m)
{
    sh_shardsum got, want = model_sum(m, NIDS);
    char a[SH_SHARDSUM_TEXT_MAX], b[SH_SHARDSUM_TEXT_MAX];
    assert_int_equal(sh_shard_checksum(s, &got, NULL), 0);
    assert_string_equal(sh_shardsum_format(&got, a, sizeof a),
                        sh_shardsum_format(&want, b, sizeof b));
    sh_shard_stats st;
    assert_int_equal(sh_shard_stats_get(s, &st, NULL), 0);
    assert_int_equal(st.tracks, want.tracks);
    assert_int_equal(st.postings, want.postings);
}

static void test_checksum_incremental(void **state)
{
    fixture *f = *state;
    model_track m[NIDS] = {{0}};
    sh_shardsum empty = SH_SHARDSUM_INIT, got;
    assert_int_equal(sh_shard_checksum(f->s, &got, NULL), 0);
    assert_true(sh_shardsum_equal(&got, &empty));
    uint64_t r = 42;
    int64_t seq = 0;
    char ids[8][16];
    for (int round = 0; round < 30; round++) {
        sh_shard_batch *b;
        assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, NULL), 0);
        sh_hash *held[8] = {0};
        int nops = 1 + (int)(synth_rand(&r) % 8);
        for (int k = 0; k < nops; k++) {
            size_t i = synth_rand(&r) % NIDS;
            snprintf(ids[k], sizeof ids[k], "id%zu", i);
            uint32_t kind = synth_rand(&r) % 10, seed = synth_rand(&r);
            /* Mostly new ops; some redelivered older ones (stale), some deletes, some reindexes. */
            int64_t s = kind < 2 && seq > 5 ? seq - 1 - (int64_t)(synth_rand(&r) % 5) : ++seq;
            sh_dop op;
            if (kind == 2 || kind == 3) {
                op = delete_op(s, ids[k], m[i].version);
            } else {
                size_t n = 20 + synth_rand(&r) % 200;
                bool reindex = kind == 4 && m[i].live;
                int64_t version = reindex ? m[i].version : (int64_t)(synth_rand(&r) % 50);
                int32_t fp = reindex ? (m[i].fp == FP_PAIRS ? FP_TRIPLETS : FP_PAIRS)
                                     : (synth_rand(&r) % 2 ? FP_PAIRS : FP_TRIPLETS);
                held[k] = rand_hashes(seed, n);
                op = upsert(s, ids[k], version, fp, held[k], n);
            }
            assert_int_equal(sh_shard_batch_apply(b, &op, NULL), 0);
            model_apply(&m[i], &op, seed);
        }
        assert_int_equal(sh_shard_batch_commit(b, NULL, NULL), 0);
        for (int k = 0; k < 8; k++)
            free(held[k]);
        expect_sum(f->s, m);
        if (round == 15) { /* kept across reopen, vacuum and compact */
            sh_shard_free(f->s);
            assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, NULL), 0);
            assert_int_equal(sh_shard_vacuum(f->s, NULL), 0);
            assert_int_equal(sh_shard_compact(f->s, NULL), 0);
            expect_sum(f->s, m);
        }
    }
}

/* ---- atomicity ------------------------------------------------------------------------------- */

/* The op of seq `seq` in the killed-writer test: deterministic, so the parent can replay it. */
static sh_dop crash_op(int64_t seq, char *id, size_t cap, sh_hash **h)
{
    snprintf(id, cap, "id%d", (int)(seq % NIDS));
    *h = NULL;
    if (seq % 5 == 0)
        return delete_op(seq, id, seq / 3);
    size_t n = 50 + (size_t)(seq % 300);
    *h = rand_hashes((uint32_t)seq, n);
    return upsert(seq, id, seq / 3, seq % 2 ? FP_PAIRS : FP_TRIPLETS, *h, n);
}

enum { CRASH_PER_BATCH = 6, CRASH_BATCHES = 400 };

static void test_abort_and_kill(void **state)
{
    fixture *f = *state;
    sh_err e = {0};
    /* An aborted batch leaves nothing: no track, no cursor, checksum unchanged. */
    sh_shard_batch *b;
    sh_hash *h = rand_hashes(5, 100);
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    sh_dop op = upsert(1, "x", 1, FP_TRIPLETS, h, 100);
    assert_int_equal(sh_shard_batch_apply(b, &op, &e), 0);
    assert_int_equal(sh_shard_batch_set_cursor(b, "p0", "1", 1, &e), 0);
    sh_shard_batch_abort(b);
    free(h);
    expect_gone(f->s, "x");
    char val[32];
    size_t len;
    assert_int_equal(sh_shard_get_cursor(f->s, "p0", val, sizeof val, &len, NULL), SH_ENOTFOUND);
    sh_shardsum got, empty = SH_SHARDSUM_INIT;
    assert_int_equal(sh_shard_checksum(f->s, &got, &e), 0);
    assert_true(sh_shardsum_equal(&got, &empty));

    /* A writer killed at an arbitrary instant: what is there is exactly the batches whose cursor
     * is there (ops and position in one transaction). */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        sh_shard *w = NULL;
        if (sh_shard_open(f->dir, NULL, &w, NULL))
            _exit(1);
        for (int64_t batch = 0; batch < CRASH_BATCHES; batch++) {
            sh_shard_batch *wb;
            if (sh_shard_batch_begin(w, 0, &wb, NULL))
                _exit(1);
            int64_t last = 0;
            for (int k = 0; k < CRASH_PER_BATCH; k++) {
                char id[16];
                sh_hash *hh;
                last = batch * CRASH_PER_BATCH + k + 1;
                sh_dop o = crash_op(last, id, sizeof id, &hh);
                int rc = sh_shard_batch_apply(wb, &o, NULL);
                free(hh);
                if (rc)
                    _exit(1);
            }
            char pos[32];
            int pl = snprintf(pos, sizeof pos, "%lld", (long long)last);
            if (sh_shard_batch_set_cursor(wb, "p0", pos, (size_t)pl, NULL) ||
                sh_shard_batch_commit(wb, NULL, NULL))
                _exit(1);
            if (batch == 20 && write(fds[1], "x", 1) != 1) /* the parent kills from here on */
                _exit(1);
        }
        _exit(0);
    }
    close(fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));

    sh_shard_free(f->s);
    assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, &e), 0);
    assert_int_equal(sh_shard_get_cursor(f->s, "p0", val, sizeof val - 1, &len, &e), 0);
    val[len] = '\0';
    long long pos = strtoll(val, NULL, 10);
    assert_true(pos >= 21 * CRASH_PER_BATCH && pos % CRASH_PER_BATCH == 0);
    model_track m[NIDS] = {{0}};
    for (int64_t s = 1; s <= pos; s++) {
        char id[16];
        sh_hash *hh;
        sh_dop o = crash_op(s, id, sizeof id, &hh);
        free(hh);
        model_apply(&m[s % NIDS], &o, (uint32_t)s);
    }
    expect_sum(f->s, m);
    /* Applying on from the position resumes exactly (the next batch applies, the last is stale). */
    char id[16];
    sh_hash *hh;
    sh_dop o = crash_op(pos, id, sizeof id, &hh);
    sh_shard_commit_stats st = apply1(f->s, o);
    free(hh);
    assert_int_equal(st.stale, 1);
}

/* ---- format 1 ------------------------------------------------------------------------------- */

/* Rewrites the fixture's (closed) format-2 shard into the format-1 layout: format record, 12-byte
 * ids values, track headers without the checksum, no per-version keys. */
static void downgrade_to_v1(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, ids, tracks;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, "ids", 0, &ids), 0);
    assert_int_equal(mdb_dbi_open(txn, "tracks", MDB_INTEGERKEY, &tracks), 0);
    MDB_val k = {.mv_size = 6, .mv_data = "format"},
            v = {.mv_size = 17, .mv_data = "soundhash-shard 1"};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    char fpkey[32];
    snprintf(fpkey, sizeof fpkey, "tracks.v%d", SH_FP_VERSION);
    const char *gone[] = {"sum", "vacuum_fp", fpkey};
    for (size_t i = 0; i < 3; i++) {
        k = (MDB_val){.mv_size = strlen(gone[i]), .mv_data = (void *)gone[i]};
        assert_int_equal(mdb_del(txn, meta, &k, NULL), 0);
    }
    MDB_dbi dbis[2] = {ids, tracks};
    for (int d = 0; d < 2; d++) {
        MDB_cursor *c;
        assert_int_equal(mdb_cursor_open(txn, dbis[d], &c), 0);
        char keys[8][64], vals[8][512];
        size_t kl[8], vl[8], n = 0;
        while (mdb_cursor_get(c, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
            assert_true(n < 8 && k.mv_size < 64 && v.mv_size < 512);
            memcpy(keys[n], k.mv_data, kl[n] = k.mv_size);
            if (d == 0) { /* track, version; the seq dropped */
                assert_int_equal(v.mv_size, 20);
                memcpy(vals[n], v.mv_data, vl[n] = 12);
            } else { /* the 32-byte header then the strings; the 8-byte sum dropped */
                memcpy(vals[n], v.mv_data, 32);
                memcpy(vals[n] + 32, (char *)v.mv_data + 40, v.mv_size - 40);
                vl[n] = v.mv_size - 8;
            }
            n++;
        }
        mdb_cursor_close(c);
        for (size_t i = 0; i < n; i++) {
            k = (MDB_val){.mv_size = kl[i], .mv_data = keys[i]};
            v = (MDB_val){.mv_size = vl[i], .mv_data = vals[i]};
            assert_int_equal(mdb_put(txn, dbis[d], &k, &v, 0), 0);
        }
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_format1(void **state)
{
    fixture *f = *state;
    sh_hash *h = rand_hashes(9, 500), *h2 = rand_hashes(10, 300);
    sh_shard_batch *b;
    sh_err e = {0};
    sh_shard_track t = {.id = "old", .version = 4, .duration_s = 3.0, .meta_json = "{\"a\":1}"};
    assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
    assert_int_equal(sh_shard_batch_put(b, &t, h, 500, &e), 0);
    t.id = "gone";
    assert_int_equal(sh_shard_batch_put(b, &t, h2, 300, &e), 0);
    assert_int_equal(sh_shard_batch_delete(b, "gone", SH_SHARD_VERSION_NEXT, &e), 0);
    assert_int_equal(sh_shard_batch_commit(b, NULL, &e), 0);
    sh_fp_config qc;
    sh_fp_config_query(&qc);
    sh_matcher *m;
    assert_int_equal(sh_matcher_new(&qc, &m, &e), 0);
    size_t before = 0, after = 0;
    assert_int_equal(sh_shard_lookup(f->s, h, 500, m, &before, &e), 0);
    assert_true(before >= 500);
    sh_shard_free(f->s);
    f->s = NULL;
    downgrade_to_v1(f->dir);

    /* Writable: refused, saying why. */
    assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, &e), SH_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "format 1"));
    assert_non_null(strstr(e.msg, "read-only"));
    /* Read-only: a single-version shard. */
    sh_shard_opts o;
    sh_shard_opts_default(&o);
    o.read_only = true;
    assert_int_equal(sh_shard_open(f->dir, &o, &f->s, &e), 0);
    sh_matcher_reset(m);
    assert_int_equal(sh_shard_lookup(f->s, h, 500, m, &after, &e), 0);
    assert_int_equal(after, before);
    expect_track(f->s, "old", 4, SH_FP_VERSION);
    expect_gone(f->s, "gone");
    expect_fps(f->s, (int[]){SH_FP_VERSION}, 1);
    sh_shardsum sum;
    assert_int_equal(sh_shard_checksum(f->s, &sum, &e), SH_EUNSUPPORTED);
    sh_shard_stats st;
    assert_int_equal(sh_shard_stats_get(f->s, &st, &e), 0);
    assert_int_equal(st.tracks, 1);
    assert_int_equal(st.postings, 500);
    sh_matcher_free(m);
    free(h);
    free(h2);
}

/* ---- format 2 ------------------------------------------------------------------------------- */

/* The (closed) shard in dir: sets its format record to `rec` when not NULL, and counts the blobs
 * of its first posting index with a skip table and without (those of more than 16 postings). */
static void inspect_v2(const char *dir, const char *rec, size_t *skip, size_t *plain_big)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, post;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    assert_int_equal(mdb_dbi_open(txn, "post", MDB_INTEGERKEY, &post), 0);
    MDB_val k = {.mv_size = 6, .mv_data = "format"}, v;
    if (rec) {
        v = (MDB_val){.mv_size = strlen(rec), .mv_data = (void *)rec};
        assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    }
    *skip = *plain_big = 0;
    MDB_cursor *c;
    assert_int_equal(mdb_cursor_open(txn, post, &c), 0);
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint32_t key;
        uint8_t pad[16];
        sh_range r;
        memcpy(&key, k.mv_data, 4);
        assert_int_equal(sh_range_open(v.mv_data, v.mv_size, key, pad, &r), 0);
        *skip += r.nskip > 0;
        *plain_big += !r.nskip && r.n > (1u << SH_RANGE_SKIP_SHIFT);
    }
    mdb_cursor_close(c);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void lookup_all(sh_shard *s, sh_matcher *m, sh_hash *const *q, size_t nq, size_t n,
                       size_t *votes, sh_match_result (*res)[4], size_t *nres)
{
    for (size_t i = 0; i < nq; i++) {
        sh_matcher_reset(m);
        assert_int_equal(sh_shard_lookup(s, q[i], n, m, &votes[i], NULL), 0);
        assert_int_equal(sh_matcher_result(m, res[i], 4, &nres[i]), 0);
    }
}

/* A format-2 shard (plain range blobs, what builds before format 3 wrote) opens read-write, keeps
 * writing plain blobs (so such a build can still read it), answers like a format-3 shard; compact
 * converts it (skip tables, format record 3) without changing an answer. */
static void test_format2(void **state)
{
    fixture *f = *state;
    enum { NT = 6, NP = 3000, NQ = 4 };
    size_t skip = 0, plain = 0;
    sh_shard_free(f->s);
    f->s = NULL;
    inspect_v2(f->dir, "soundhash-shard 2", &skip, &plain);
    assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, NULL), 0);
    sh_shard_batch *b;
    sh_err e = {0};
    for (int round = 0; round < 2; round++) { /* the second merges into existing blobs */
        assert_int_equal(sh_shard_batch_begin(f->s, 0, &b, &e), 0);
        for (int i = 0; i < NT / 2; i++) {
            char id[16];
            snprintf(id, sizeof id, "t%d", round * NT / 2 + i);
            sh_hash *h = rand_hashes((uint32_t)(round * NT / 2 + i), NP);
            sh_shard_track t = {.id = id, .version = 1, .duration_s = 10.0};
            assert_int_equal(sh_shard_batch_put(b, &t, h, NP, &e), 0);
            free(h);
        }
        assert_int_equal(sh_shard_batch_commit(b, NULL, &e), 0);
    }
    sh_hash *q[NQ];
    for (size_t i = 0; i < NQ; i++) { /* a stretch of track i (shifted), and random hashes */
        q[i] = rand_hashes((uint32_t)i, NP);
        for (size_t j = 0; j < NP; j++)
            q[i][j] = j % 3 ? (sh_hash){q[i][j].hash, q[i][j].t + 50}
                            : (sh_hash){(uint32_t)(j * 2654435761u), (uint32_t)j};
    }
    sh_fp_config qc;
    sh_fp_config_query(&qc);
    sh_matcher *m;
    assert_int_equal(sh_matcher_new(&qc, &m, &e), 0);
    size_t v2[NQ], v3[NQ], n2[NQ], n3[NQ];
    sh_match_result r2[NQ][4], r3[NQ][4];
    lookup_all(f->s, m, q, NQ, NP, v2, r2, n2);
    sh_shard_free(f->s);
    f->s = NULL;
    inspect_v2(f->dir, NULL, &skip, &plain);
    assert_int_equal(skip, 0);
    assert_true(plain > 10);

    assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, NULL), 0);
    assert_int_equal(sh_shard_compact(f->s, &e), 0);
    lookup_all(f->s, m, q, NQ, NP, v3, r3, n3);
    for (size_t i = 0; i < NQ; i++) {
        assert_true(v2[i] >= NP * 2 / 3);
        assert_int_equal(v3[i], v2[i]);
        assert_int_equal(n3[i], n2[i]);
        assert_memory_equal(r3[i], r2[i], n2[i] * sizeof r2[i][0]);
    }
    sh_shard_free(f->s);
    f->s = NULL;
    inspect_v2(f->dir, NULL, &skip, &plain);
    assert_true(skip > 10);
    assert_int_equal(plain, 0);
    /* Reopened, it is format 3 (a build before it refuses the format record instead of meeting a
     * blob it cannot read); everything still answers. */
    assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, NULL), 0);
    lookup_all(f->s, m, q, NQ, NP, v3, r3, n3);
    for (size_t i = 0; i < NQ; i++)
        assert_int_equal(v3[i], v2[i]);
    sh_shard_free(f->s);
    f->s = NULL;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, f->dir, MDB_RDONLY, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    MDB_val k = {.mv_size = 6, .mv_data = "format"}, v;
    assert_int_equal(mdb_get(txn, meta, &k, &v), 0);
    assert_int_equal(v.mv_size, 17);
    assert_memory_equal(v.mv_data, "soundhash-shard 3", 17);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    assert_int_equal(sh_shard_open(f->dir, NULL, &f->s, NULL), 0);
    sh_matcher_free(m);
    for (size_t i = 0; i < NQ; i++)
        free(q[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seq_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reindex_matchable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checksum_incremental, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_and_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format2, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
