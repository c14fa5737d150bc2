/* Unit tests for sh_recognize: clip → fingerprint → lookup → ranked answer against a real
 * LMDB shard (answers carry id, tenant and metadata) and an in-memory index (track numbers), from
 * PCM and from an encoded WAV buffer; the duration cap, argument errors and a failed clip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_recognize.h"
#include "synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RATE 8000
#define TRACK_S 40

typedef struct world {
    char dir[64];
    sh_shard *s;
    sh_memindex *mi;
    sh_recognizer *r;
    float *tracks[3]; /* [0], [1] indexed; [2] never */
} world;

static const char *const IDS[2] = {"track-zero", "track-one"};
static const char *const METAS[2] = {"{\"title\":\"Zero\"}", "{\"title\":\"One\"}"};

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    snprintf(w->dir, sizeof w->dir, "/tmp/sh-test-recognize.XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    sh_err e = {0};
    assert_int_equal(sh_shard_open(w->dir, NULL, &w->s, &e), 0);
    assert_int_equal(sh_memindex_new(&w->mi, &e), 0);
    sh_fp_config ic;
    sh_fp_config_default(&ic);
    sh_fp *fp = NULL;
    assert_int_equal(sh_fp_new(&ic, &fp, &e), 0);
    sh_shard_batch *b = NULL;
    assert_int_equal(sh_shard_batch_begin(w->s, 0, &b, &e), 0);
    const size_t n = (size_t)TRACK_S * RATE;
    for (int i = 0; i < 3; i++) {
        w->tracks[i] = malloc(n * sizeof(float));
        assert_non_null(w->tracks[i]);
        synth_music(w->tracks[i], n, RATE, 300 + (uint64_t)i);
        if (i == 2)
            break;
        sh_fp_reset(fp);
        assert_int_equal(sh_fp_feed(fp, w->tracks[i], n, &e), 0);
        assert_int_equal(sh_fp_finish(fp, &e), 0);
        size_t nh;
        const sh_hash *h = sh_fp_hashes(fp, &nh);
        sh_shard_track t = {.id = IDS[i],
                            .tenant = "acme",
                            .version = 1,
                            .duration_s = TRACK_S,
                            .meta_json = METAS[i]};
        assert_int_equal(sh_shard_batch_put(b, &t, h, nh, &e), 0);
        assert_int_equal(sh_memindex_add(w->mi, 70 + (uint32_t)i, h, nh, &e), 0);
    }
    assert_int_equal(sh_shard_batch_commit(b, NULL, &e), 0);
    assert_int_equal(sh_memindex_build(w->mi, &e), 0);
    sh_fp_free(fp);
    assert_int_equal(sh_recognizer_new(NULL, &w->r, &e), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    for (int i = 0; i < 3; i++)
        free(w->tracks[i]);
    sh_recognizer_free(w->r);
    sh_memindex_free(w->mi);
    sh_shard_free(w->s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
    assert_int_equal(system(cmd), 0);
    free(w);
    return 0;
}

/* An 8 s excerpt of track 1 from 11.3 s: the shard names it, with its tenant and metadata. */
static void test_shard_answer(void **state)
{
    world *w = *state;
    sh_err e = {0};
    const size_t off = (size_t)(11.3 * RATE);
    assert_int_equal(sh_recognize_clip_pcm(w->r, w->tracks[1] + off, 8 * RATE, &e), 0);
    size_t nh;
    const sh_hash *h = sh_recognize_hashes(w->r, &nh);
    assert_true(nh > 100);
    sh_recognize_answer a[5];
    size_t na = 99;
    sh_recognize_stats st;
    assert_int_equal(sh_recognize_shard(w->r, w->s, h, nh, 5, a, &na, &st, &e), 0);
    assert_int_equal(na, 1); /* the other track is noise, below the no-match threshold */
    assert_string_equal(a[0].id, "track-one");
    assert_string_equal(a[0].tenant, "acme");
    assert_string_equal(a[0].meta_json, METAS[1]);
    assert_true(a[0].offset_s > 11.3 - 0.05 && a[0].offset_s < 11.3 + 0.05);
    assert_true(a[0].duration_s > 6.0 && a[0].duration_s <= 8.1);
    assert_true(a[0].score > 50);
    assert_true(a[0].confidence >= 0.8);
    assert_true(a[0].scale > 0.99 && a[0].scale < 1.01);
    assert_int_equal(st.hashes, nh);
    assert_true(st.postings > 0);
    assert_true(st.votes >= st.postings);
    assert_true(st.lookup_ms >= 0 && st.rank_ms >= 0);

    /* Never indexed: no answer. */
    assert_int_equal(sh_recognize_clip_pcm(w->r, w->tracks[2] + off, 8 * RATE, &e), 0);
    h = sh_recognize_hashes(w->r, &nh);
    assert_int_equal(sh_recognize_shard(w->r, w->s, h, nh, 5, a, &na, NULL, &e), 0);
    assert_int_equal(na, 0);
}

/* sh_recognize_shard_fp: the posting index of the version asked for, whatever the handle's —
 * the same answer for the version the shard holds, none for a version it does not. */
static void test_shard_fp_version(void **state)
{
    world *w = *state;
    sh_err e = {0};
    const size_t off = (size_t)(11.3 * RATE);
    assert_int_equal(sh_recognize_clip_pcm(w->r, w->tracks[1] + off, 8 * RATE, &e), 0);
    size_t nh;
    const sh_hash *h = sh_recognize_hashes(w->r, &nh);
    sh_recognize_answer a[5];
    size_t na = 99;
    assert_int_equal(sh_recognize_shard_fp(w->r, w->s, SH_FP_VERSION, h, nh, 5, a, &na, NULL, &e),
                     0);
    assert_int_equal(na, 1);
    assert_string_equal(a[0].id, "track-one");
    na = 99;
    assert_int_equal(
        sh_recognize_shard_fp(w->r, w->s, SH_FP_VERSION + 1, h, nh, 5, a, &na, NULL, &e), 0);
    assert_int_equal(na, 0);
    assert_int_equal(sh_recognize_shard_fp(w->r, w->s, 0, h, nh, 5, a, &na, NULL, &e), SH_EINVAL);
    assert_int_equal(sh_recognize_shard_fp(w->r, NULL, SH_FP_VERSION, h, nh, 5, a, &na, NULL, &e),
                     SH_EINVAL);
}

/* The same excerpt against the in-memory index: the caller's track number, no strings. */
static void test_memindex_answer(void **state)
{
    world *w = *state;
    const size_t off = (size_t)(3.0 * RATE);
    assert_int_equal(sh_recognize_clip_pcm(w->r, w->tracks[0] + off, 6 * RATE, NULL), 0);
    size_t nh, na = 0;
    const sh_hash *h = sh_recognize_hashes(w->r, &nh);
    sh_recognize_answer a[2];
    assert_int_equal(sh_recognize_memindex(w->r, w->mi, h, nh, 2, a, &na, NULL, NULL), 0);
    assert_int_equal(na, 1);
    assert_int_equal(a[0].track, 70);
    assert_string_equal(a[0].id, "");
    assert_string_equal(a[0].meta_json, "");
    assert_true(a[0].offset_s > 3.0 - 0.05 && a[0].offset_s < 3.0 + 0.05);
}

/* A 16-bit mono WAV of x[0..n) at RATE, malloc'd; its size in *len. */
static unsigned char *wav(const float *x, size_t n, size_t *len)
{
    *len = 44 + 2 * n;
    unsigned char *b = malloc(*len);
    assert_non_null(b);
    uint32_t v32;
    uint16_t v16;
#define PUT(off, v) memcpy(b + (off), &(v), sizeof(v))
    memcpy(b, "RIFF", 4);
    v32 = (uint32_t)(*len - 8), PUT(4, v32);
    memcpy(b + 8, "WAVEfmt ", 8);
    v32 = 16, PUT(16, v32);
    v16 = 1, PUT(20, v16); /* PCM */
    v16 = 1, PUT(22, v16); /* mono */
    v32 = RATE, PUT(24, v32);
    v32 = RATE * 2, PUT(28, v32);
    v16 = 2, PUT(32, v16);
    v16 = 16, PUT(34, v16);
    memcpy(b + 36, "data", 4);
    v32 = (uint32_t)(2 * n), PUT(40, v32);
#undef PUT
    for (size_t i = 0; i < n; i++) {
        float f = x[i] > 1.0f ? 1.0f : x[i] < -1.0f ? -1.0f : x[i];
        int16_t s = (int16_t)(f * 32767.0f);
        memcpy(b + 44 + 2 * i, &s, 2);
    }
    return b;
}

/* Encoded audio decodes to the same answer; a clip over max_duration_s is refused. */
static void test_clip_mem_and_duration_cap(void **state)
{
    world *w = *state;
    sh_err e = {0};
    size_t len;
    unsigned char *b = wav(w->tracks[1] + 5 * RATE, 10 * RATE, &len);
    assert_int_equal(sh_recognize_clip_mem(w->r, b, len, &e), 0);
    size_t nh, na = 0;
    const sh_hash *h = sh_recognize_hashes(w->r, &nh);
    sh_recognize_answer a[1];
    assert_int_equal(sh_recognize_shard(w->r, w->s, h, nh, 1, a, &na, NULL, &e), 0);
    assert_int_equal(na, 1);
    assert_string_equal(a[0].id, "track-one");
    assert_true(a[0].offset_s > 5.0 - 0.05 && a[0].offset_s < 5.0 + 0.05);

    sh_recognize_config c;
    sh_recognize_config_default(&c);
    c.max_duration_s = 4;
    sh_recognizer *short_r = NULL;
    assert_int_equal(sh_recognizer_new(&c, &short_r, &e), 0);
    assert_int_equal(sh_recognize_clip_mem(short_r, b, len, &e), SH_ETOOLONG);
    sh_recognize_hashes(short_r, &nh);
    assert_int_equal(nh, 0);
    sh_recognizer_free(short_r);
    free(b);
}

static void test_errors(void **state)
{
    world *w = *state;
    sh_err e = {0};
    sh_recognize_answer a[1];
    size_t na = 7, nh;
    assert_int_equal(sh_recognize_clip_file(w->r, "/nonexistent/clip.wav", &e), SH_ENOTFOUND);
    const sh_hash *h = sh_recognize_hashes(w->r, &nh);
    assert_int_equal(nh, 0);
    assert_int_equal(sh_recognize_shard(w->r, w->s, h, nh, 1, a, &na, NULL, &e), 0);
    assert_int_equal(na, 0); /* no hashes, no answer */
    assert_int_equal(sh_recognize_shard(w->r, w->s, h, nh, 0, a, &na, NULL, &e), SH_EINVAL);
    assert_int_equal(
        sh_recognize_shard(w->r, w->s, h, nh, SH_RECOGNIZE_TOP_MAX + 1, a, &na, NULL, &e),
        SH_EINVAL);
    assert_int_equal(sh_recognize_shard(w->r, NULL, h, nh, 1, a, &na, NULL, &e), SH_EINVAL);
    assert_int_equal(sh_recognize_memindex(w->r, NULL, h, nh, 1, a, &na, NULL, &e), SH_EINVAL);

    sh_recognize_config c;
    sh_recognize_config_default(&c);
    c.match.min_confidence = 1.5;
    sh_recognizer *bad = (sh_recognizer *)&c;
    assert_int_equal(sh_recognizer_new(&c, &bad, &e), SH_EINVAL);
    assert_null(bad);
    sh_recognizer_free(NULL);
}

/* An answer as one shard's lookup judged it: its confidence against its own shard's noise. */
static sh_recognize_answer judged(const sh_recognize_config *c, int score, int landmarks,
                                  int spread, int noise, int noise_lm)
{
    const sh_match_result r = {.score = score,
                               .landmarks = landmarks,
                               .spread = spread,
                               .noise = noise,
                               .noise_landmarks = noise_lm};
    return (sh_recognize_answer){.score = score,
                                 .landmarks = landmarks,
                                 .spread = spread,
                                 .noise = noise,
                                 .noise_landmarks = noise_lm,
                                 .confidence = sh_match_confidence_against(&c->match, &r, NULL,
                                                                           NULL, 0)};
}

/* Answers of several shards' lookups judged against each other (the false match of the 100 h
 * benchmark: 14 votes, 9 landmarks in 8 stretches against its shard's 3 landmarks passes alone
 * and not against another shard's 6); strong answers stay; a near-equal strong score elsewhere
 * is a duplicate, not noise; an answer's own lookup is not its noise. */
static void test_judge_across_shards(void **state)
{
    (void)state;
    sh_recognize_config c;
    sh_recognize_config_default(&c);
    sh_recognize_answer a[3] = {judged(&c, 14, 9, 8, 0, 3), judged(&c, 345, 78, 20, 0, 2),
                                judged(&c, 100, 40, 20, 0, 2)};
    assert_true(sh_recognize_is_answer(&c, &a[0]));
    assert_true(a[0].confidence < 0.9);
    assert_true(sh_recognize_is_answer(&c, &a[1]) && sh_recognize_is_answer(&c, &a[2]));
    const double c1 = a[1].confidence, c2 = a[2].confidence;
    const size_t from[3] = {0, 1, 2};
    sh_recognize_stats st[4] = {{.top_score = 14, .top_landmarks = 9},
                                {.top_score = 345, .top_landmarks = 78},
                                {.top_score = 100, .top_landmarks = 40},
                                {.top_score = 6, .top_landmarks = 6}};
    /* Without the noisy 4th shard, a[0] is judged against 345 and 100 (not duplicates of 14). */
    sh_recognize_answer b[3];
    memcpy(b, a, sizeof b);
    sh_recognize_judge(&c, b, 3, from, st, 4);
    assert_false(sh_recognize_is_answer(&c, &b[0]));
    /* a[1] against 100/40 and 6/6 and 14/9: its 78 landmarks stand out. */
    assert_true(sh_recognize_is_answer(&c, &b[1]));
    /* a[2] against 345/78 (not a duplicate: 100 is not within 20 %): lowered below the bar. */
    assert_true(b[2].confidence < c2);
    assert_false(sh_recognize_is_answer(&c, &b[2]));
    /* Only a weak shard beside each: a[0] falls, a[1] and a[2] keep their confidence. */
    const size_t from1[3] = {0, 0, 0};
    sh_recognize_stats st1[2] = {{.top_score = 345, .top_landmarks = 78}, /* their own shard */
                                 {.top_score = 6, .top_landmarks = 6}};
    memcpy(b, a, sizeof b);
    sh_recognize_judge(NULL, b, 3, from1, st1, 2);
    assert_false(sh_recognize_is_answer(NULL, &b[0]));
    assert_true(b[1].confidence == c1 && b[2].confidence == c2);
    /* A duplicate elsewhere (95 against 100, both strong) is not noise. */
    sh_recognize_stats st2[2] = {{.top_score = 100, .top_landmarks = 40},
                                 {.top_score = 95, .top_landmarks = 39}};
    memcpy(b, a, sizeof b);
    sh_recognize_judge(&c, b + 2, 1, from1, st2, 2);
    assert_true(b[2].confidence == c2);
    /* No other lookup: nothing changes. */
    memcpy(b, a, sizeof b);
    sh_recognize_judge(&c, b, 3, from1, st2, 1);
    assert_memory_equal(a, b, sizeof b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_answer),
        cmocka_unit_test(test_shard_fp_version),
        cmocka_unit_test(test_memindex_answer),
        cmocka_unit_test(test_clip_mem_and_duration_cap),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_judge_across_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
