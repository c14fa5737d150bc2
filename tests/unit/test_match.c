/* Unit tests for sh_match (offset voting) and sh_memindex, end to end with sh_fp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sh_fp.h"
#include "sh_match.h"
#include "sh_memindex.h"
#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RATE 8000
#define TRACK_S 40

typedef struct world {
    sh_fp_config ic, qc;
    sh_memindex *mi;
    sh_matcher *m;
    sh_fp *qfp;
    float *tracks[3]; /* tracks[0..1] indexed (track numbers 10 and 11), tracks[2] never indexed */
} world;

static float *music(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    synth_music(x, n, RATE, seed);
    return x;
}

/* The world tests run once per hash mode: the matcher must work with both. */
static int setup_mode(void **state, int mode)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    sh_fp_config_default(&w->ic);
    sh_fp_config_query(&w->qc);
    sh_fp_config_mode(&w->ic, mode);
    sh_fp_config_mode(&w->qc, mode);
    sh_err e = {0};
    sh_fp *fp = NULL;
    assert_int_equal(sh_fp_new(&w->ic, &fp, &e), 0);
    assert_int_equal(sh_fp_new(&w->qc, &w->qfp, &e), 0);
    assert_int_equal(sh_memindex_new(&w->mi, &e), 0);
    assert_int_equal(sh_matcher_new(&w->qc, &w->m, &e), 0);
    const size_t n = (size_t)TRACK_S * RATE;
    for (int i = 0; i < 3; i++) {
        w->tracks[i] = music(n, 100 + (uint64_t)i);
        if (i == 2)
            break;
        sh_fp_reset(fp);
        assert_int_equal(sh_fp_feed(fp, w->tracks[i], n, &e), 0);
        assert_int_equal(sh_fp_finish(fp, &e), 0);
        size_t nh;
        const sh_hash *h = sh_fp_hashes(fp, &nh);
        assert_true(nh > 0);
        assert_int_equal(sh_memindex_add(w->mi, 10 + (uint32_t)i, h, nh, &e), 0);
    }
    assert_int_equal(sh_memindex_build(w->mi, &e), 0);
    assert_int_equal(sh_memindex_add(w->mi, 12, NULL, 0, NULL), SH_EINVAL); /* built */
    sh_fp_free(fp);
    *state = w;
    return 0;
}

static int setup_triplets(void **state)
{
    return setup_mode(state, SH_FP_TRIPLETS);
}

static int setup_pairs(void **state)
{
    return setup_mode(state, SH_FP_PAIRS);
}

static int setup_speed(void **state)
{
    return setup_mode(state, SH_FP_SPEED);
}

static int teardown(void **state)
{
    world *w = *state;
    for (int i = 0; i < 3; i++)
        free(w->tracks[i]);
    sh_fp_free(w->qfp);
    sh_matcher_free(w->m);
    sh_memindex_free(w->mi);
    free(w);
    return 0;
}

/* Matches x[0..n) against the index; returns the number of results (≤ k). */
static size_t query(world *w, const float *x, size_t n, sh_match_result *r, size_t k)
{
    sh_fp_reset(w->qfp);
    assert_int_equal(sh_fp_feed(w->qfp, x, n, NULL), 0);
    assert_int_equal(sh_fp_finish(w->qfp, NULL), 0);
    size_t nh, nr = 99;
    const sh_hash *h = sh_fp_hashes(w->qfp, &nh);
    sh_matcher_reset(w->m);
    sh_memindex_query(w->mi, h, nh, w->m);
    assert_int_equal(sh_matcher_result(w->m, r, k, &nr), 0);
    assert_true(nr <= k);
    return nr;
}

/* An 8 s excerpt starting off the frame grid is found at the right offset (±1 frame). */
static void test_excerpt_matches_at_offset(void **state)
{
    world *w = *state;
    const double fs = sh_fp_frame_seconds(&w->ic);
    const size_t starts[] = {0, 80040, 200013}; /* 0 s, 10.005 s, 25.0016 s */
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
            sh_match_result r[3];
            const size_t nr = query(w, w->tracks[t] + starts[i], 8 * RATE, r, 3);
            assert_true(nr >= 1);
            assert_int_equal(r[0].track, 10 + (uint32_t)t);
            assert_true(fabs(r[0].offset_s - (double)starts[i] / RATE) <= fs + 1e-9);
            assert_true(r[0].confidence >= 0.5 && r[0].confidence <= 1.0);
            assert_true(r[0].duration_s > 4.0 && r[0].duration_s <= 8.0);
            assert_true(fabs(r[0].scale - 1.0) < 0.006);
        }
}

/* Audio that is not in the index, silence, and noise give no match. */
static void test_unknown_audio_no_match(void **state)
{
    world *w = *state;
    sh_match_result r[3];
    assert_int_equal(query(w, w->tracks[2] + 5 * RATE, 10 * RATE, r, 3), 0);
    float *z = calloc(10 * RATE, sizeof *z);
    assert_non_null(z);
    assert_int_equal(query(w, z, 10 * RATE, r, 3), 0);
    uint64_t s = 1;
    for (size_t i = 0; i < 10 * RATE; i++)
        z[i] = (float)(synth_unit(&s) - 0.5);
    assert_int_equal(query(w, z, 10 * RATE, r, 3), 0);
    free(z);
}

/* An excerpt played f times faster (pitch and tempo, as sox `speed f`; linear interpolation is
 * enough to make the test signal) matches track 11 at 12 s with the scale f. */
static void speed_matches(world *w, double f)
{
    const size_t n = (size_t)(10 * RATE / f), start = 12 * RATE;
    float *y = malloc(n * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) {
        const double p = start + i * f;
        const size_t k = (size_t)p;
        y[i] = (float)(w->tracks[1][k] * (1.0 - (p - k)) + w->tracks[1][k + 1] * (p - k));
    }
    sh_match_result r[1];
    assert_int_equal(query(w, y, n, r, 1), 1);
    assert_int_equal(r[0].track, 11);
    assert_true(fabs(r[0].offset_s - 12.0) < 0.1);
    assert_true(fabs(r[0].scale - f) < 0.011);
    free(y);
}

/* ±2 %: every mode. */
static void test_speed_change_matches(void **state)
{
    speed_matches(*state, 1.02);
}

/* ±10 % and ±5 %: the speed-invariant mode only (fp_version 4). */
static void test_speed_10_percent(void **state)
{
    const double f[] = {1.10, 0.90, 1.05, 0.95};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        speed_matches(*state, f[i]);
}

/* Direct votes: ranking, one result per track, k, scale estimate, reset. */
static void test_votes_ranking(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_query(&c);
    sh_matcher *m = NULL;
    assert_int_equal(sh_matcher_new(&c, &m, NULL), 0);
    sh_match_result r[4];
    size_t n = 99;
    assert_int_equal(sh_matcher_result(m, r, 4, &n), 0); /* no votes */
    assert_int_equal(n, 0);
    uint64_t s = 7;
    for (uint32_t t = 0; t < 600; t += 10) {
        sh_matcher_vote(m, 1, 1000 + t, t); /* 60 aligned votes */
        if (t % 20 == 0)
            sh_matcher_vote(m, 2, 5000 + t + (t % 40 == 0), t);    /* 30, ±1 frame jitter */
        sh_matcher_vote(m, 3, (uint32_t)(50 + 1.02 * t + 0.5), t); /* 60, scale 1.02 */
        sh_matcher_vote(m, 1 + synth_rand(&s) % 3, synth_rand(&s) % 100000, t); /* noise */
    }
    for (uint32_t t = 0; t < 600; t += 30)
        sh_matcher_vote(m, 1, 9000 + t, t); /* a weaker second alignment of track 1 */
    assert_int_equal(sh_matcher_votes(m), 60 + 30 + 60 + 60 + 20);
    sh_match_config mc;
    sh_match_config_default(&mc);
    mc.min_confidence = 0.0; /* rank everything */
    assert_int_equal(sh_matcher_configure(m, &mc, NULL), 0);
    assert_int_equal(sh_matcher_result(m, r, 4, &n), 0);
    assert_int_equal(n, 3); /* one per track */
    for (size_t i = 1; i < n; i++)
        assert_true(r[i - 1].score >= r[i].score);
    int seen[4] = {0};
    for (size_t i = 0; i < n; i++) {
        seen[r[i].track]++;
        if (r[i].track == 1) {
            assert_true(r[i].score >= 60);
            assert_true(fabs(r[i].offset_s - 1000 * sh_fp_frame_seconds(&c)) < 0.02);
        } else if (r[i].track == 2) {
            assert_true(r[i].score >= 30);
        } else {
            assert_true(r[i].score >= 58);
            assert_true(fabs(r[i].scale - 1.02) < 0.006);
        }
    }
    assert_true(seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
    assert_int_equal(r[n - 1].track, 2);
    /* k smaller than the candidates: the best only */
    assert_int_equal(sh_matcher_result(m, r, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_true(r[0].track == 1 || r[0].track == 3);
    sh_matcher_reset(m);
    assert_int_equal(sh_matcher_votes(m), 0);
    assert_int_equal(sh_matcher_result(m, r, 4, &n), 0);
    assert_int_equal(n, 0);
    sh_matcher_free(m);
}

/* The no-match threshold: a lone weak alignment is not reported with default tunables. */
static void test_threshold(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_query(&c);
    sh_matcher *m = NULL;
    assert_int_equal(sh_matcher_new(&c, &m, NULL), 0);
    sh_match_result r[2];
    size_t n = 99;
    for (uint32_t t = 0; t < 4; t++)
        sh_matcher_vote(m, 5, 100 + t * 7, t * 7);
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 0);
    for (uint32_t t = 4; t < 40; t++)
        sh_matcher_vote(m, 5, 100 + t * 7, t * 7);
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_true(r[0].confidence > 0.9);
    sh_matcher_free(m);
}

/* The score floor follows the hash mode: 14 aligned votes and nothing else pass the pair floor
 * (12) but not the triplet floor (17), whose collisions are rarer but similar music aligns more. */
static void test_threshold_per_mode(void **state)
{
    (void)state;
    sh_match_config mc;
    sh_match_config_default(&mc);
    assert_int_equal(mc.min_score, 17);
    assert_true(mc.min_confidence == 0.8);
    for (int mode = 0; mode < 2; mode++) {
        sh_fp_config c;
        sh_fp_config_query(&c);
        sh_fp_config_mode(&c, mode);
        sh_match_config_for(&c, &mc);
        assert_int_equal(mc.min_score, mode == SH_FP_PAIRS ? 12 : 17);
        assert_true(mc.min_confidence == (mode == SH_FP_PAIRS ? 0.65 : 0.8));
        assert_true(mc.coarse_scale_step == 0.0 && mc.max_scale == 0.03);
        sh_matcher *m = NULL;
        assert_int_equal(sh_matcher_new(&c, &m, NULL), 0);
        for (uint32_t t = 0; t < 14; t++)
            sh_matcher_vote(m, 5, 100 + t * 7, t * 7);
        sh_match_result r[2];
        size_t n = 99;
        assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
        assert_int_equal(n, mode == SH_FP_PAIRS ? 1 : 0);
        sh_matcher_free(m);
    }
    /* The speed mode: the pairs' floor, coarse rows over ±12.5 %, and 14 votes of a 10 % faster
     * alignment (t_db = 1.1 t_q + 100) found with that scale. */
    sh_fp_config c;
    sh_fp_config_query(&c);
    sh_fp_config_mode(&c, SH_FP_SPEED);
    sh_match_config_for(&c, &mc);
    assert_int_equal(mc.min_score, 12);
    assert_true(mc.coarse_scale_step == 0.025 && fabs(mc.max_scale - 0.125) < 1e-6);
    sh_matcher *m = NULL;
    assert_int_equal(sh_matcher_new(&c, &m, NULL), 0);
    for (uint32_t t = 0; t < 14; t++)
        sh_matcher_vote(m, 5, 100 + (uint32_t)(t * 7 * 1.1 + 0.5), t * 7 * 5);
    sh_match_result r[2];
    size_t n = 99;
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 0); /* t_q * 5: a 50 % drift, outside ±12.5 % */
    sh_matcher_reset(m);
    for (uint32_t t = 0; t < 14; t++)
        sh_matcher_vote(m, 5, 100 + (uint32_t)(t * 37 * 1.1 + 0.5), t * 37);
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_true(fabs(r[0].scale - 1.1) < 0.006);
    assert_true(fabs(r[0].offset_s - 100 * sh_fp_frame_seconds(&c)) < 0.05);
    /* A config with more rows than the matcher holds is refused. */
    mc.coarse_scale_step = 0.005;
    assert_int_equal(sh_matcher_configure(m, &mc, NULL), SH_EINVAL);
    sh_matcher_free(m);
}

/* Votes of one alignment (t_db = 100 + t_q) at query frames t[0 .. n), `per` votes per frame. */
static void vote_frames(sh_matcher *m, uint32_t track, const uint32_t *t, int n, int per)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < per; k++)
            sh_matcher_vote(m, track, 100 + t[i], t[i]);
}

/* The landmark path (triplets): 8 votes from 8 frames spread over 2.3 s are below the score
 * floor (17) but pass by landmarks; 18 votes from 3 frames within 0.3 s (a burst, as similar
 * music produces) pass the score floor but are not reported; another track with as many
 * landmarks is noise; min_landmarks = 0 restores the votes-only rule. */
static void test_landmark_path(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_query(&c);
    sh_match_config mc;
    sh_match_config_for(&c, &mc);
    assert_int_equal(mc.min_landmarks, 4);
    assert_int_equal(mc.min_spread, 4);
    sh_matcher *m = NULL;
    assert_int_equal(sh_matcher_new(&c, &m, NULL), 0);
    const uint32_t spread[8] = {0, 20, 40, 60, 80, 100, 120, 140}; /* 5 half-second stretches */
    const uint32_t burst[3] = {0, 6, 12};
    sh_match_result r[2];
    size_t n = 99;
    vote_frames(m, 5, spread, 8, 1);
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].track, 5);
    assert_int_equal(r[0].score, 8);
    assert_int_equal(r[0].landmarks, 8);
    assert_int_equal(r[0].spread, 5);
    assert_true(r[0].confidence > 0.99); /* zl = 8: 1 / (1 + e^-5.4) */
    /* The same evidence for another track: neither stands out. */
    vote_frames(m, 9, spread, 8, 1);
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 0);
    sh_matcher_reset(m);
    vote_frames(m, 5, burst, 3, 6);
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 0);
    /* Votes only: the burst's 18 votes pass, the spread 8 do not. */
    mc.min_landmarks = 0;
    assert_int_equal(sh_matcher_configure(m, &mc, NULL), 0);
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].score, 18);
    assert_int_equal(r[0].landmarks, 3);
    sh_matcher_reset(m);
    vote_frames(m, 5, spread, 8, 1);
    assert_int_equal(sh_matcher_result(m, r, 2, &n), 0);
    assert_int_equal(n, 0);
    mc.min_spread = -1;
    assert_int_equal(sh_matcher_configure(m, &mc, NULL), SH_EINVAL);
    sh_matcher_free(m);
    /* Pairs and speed-invariant hashes: the path is off (measured with triplets only). */
    for (int mode = 0; mode <= SH_FP_SPEED; mode += SH_FP_SPEED) {
        sh_fp_config_mode(&c, mode);
        sh_match_config_for(&c, &mc);
        assert_int_equal(mc.min_landmarks, 0);
    }
}

/* Two tracks with the same strong alignment are duplicates (both reported); two weak near-equal
 * alignments are noise (neither is). */
static void test_duplicates_and_ties(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_query(&c);
    sh_matcher *m = NULL;
    assert_int_equal(sh_matcher_new(&c, &m, NULL), 0);
    sh_match_result r[3];
    size_t n = 99;
    for (uint32_t t = 0; t < 600; t += 10) {
        sh_matcher_vote(m, 7, 300 + t, t);
        sh_matcher_vote(m, 8, 900 + t, t);
    }
    assert_int_equal(sh_matcher_result(m, r, 3, &n), 0);
    assert_int_equal(n, 2);
    assert_true(r[0].confidence > 0.99 && r[1].confidence > 0.99);
    assert_true(r[0].track != r[1].track);
    sh_matcher_reset(m);
    for (uint32_t t = 0; t < 150; t += 10) {
        sh_matcher_vote(m, 7, 300 + t, t);
        if (t)
            sh_matcher_vote(m, 8, 900 + t, t);
    }
    assert_int_equal(sh_matcher_result(m, r, 3, &n), 0);
    assert_int_equal(n, 0);
    sh_matcher_free(m);
}

/* A hostile client's far query times cost nothing: votes past SH_MATCH_TQ_MAX are dropped (the
 * fine stage would size its histogram by them), an alignment just inside still matches. */
static void test_far_query_times(void **state)
{
    (void)state;
    for (int v = 3; v <= 4; v++) {
        sh_fp_config c;
        assert_int_equal(sh_fp_config_for_version(v, &c, NULL), 0);
        sh_matcher *m = NULL;
        assert_int_equal(sh_matcher_new(&c, &m, NULL), 0);
        sh_match_config mc;
        sh_match_config_for(&c, &mc);
        assert_int_equal(sh_matcher_configure(m, &mc, NULL), 0);
        for (uint32_t t = 0; t < 600; t += 5)
            sh_matcher_vote(m, 1, 1000 + t, 4000000000u + t);
        assert_int_equal(sh_matcher_votes(m), 120);
        sh_match_result r[1];
        size_t n = 9;
        assert_int_equal(sh_matcher_result(m, r, 1, &n), 0);
        assert_int_equal(n, 0);
        sh_matcher_reset(m);
        const uint32_t t0 = SH_MATCH_TQ_MAX - 600;
        for (uint32_t t = 0; t <= 600; t += 5)
            sh_matcher_vote(m, 2, 1000 + t, t0 + t);
        assert_int_equal(sh_matcher_result(m, r, 1, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(r[0].track, 2);
        sh_matcher_free(m);
    }
}

/* max_votes caps memory: extra votes are counted and ignored. */
static void test_vote_cap_and_config(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_query(&c);
    sh_matcher *m = NULL;
    assert_int_equal(sh_matcher_new(&c, &m, NULL), 0);
    sh_match_config mc;
    sh_match_config_default(&mc);
    mc.max_votes = 100;
    assert_int_equal(sh_matcher_configure(m, &mc, NULL), 0);
    for (uint32_t t = 0; t < 1000; t++)
        sh_matcher_vote(m, 1, 10 + t, t);
    assert_int_equal(sh_matcher_votes(m), 1000);
    sh_match_result r[1];
    size_t n;
    assert_int_equal(sh_matcher_result(m, r, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_true(r[0].score <= 100);
    mc.refine = 0;
    assert_int_equal(sh_matcher_configure(m, &mc, NULL), SH_EINVAL);
    mc.refine = 8;
    mc.min_confidence = 2.0;
    assert_int_equal(sh_matcher_configure(m, &mc, NULL), SH_EINVAL);
    assert_int_equal(sh_matcher_result(NULL, r, 1, &n), SH_EINVAL);
    sh_matcher_free(m);
    sh_matcher_free(NULL);
    sh_memindex_free(NULL);
}

/* Casts the same votes into m, track numbers mapped by `sparse` (0: as they are; else t * sparse +
 * 7, far too spread for the matcher's direct track array, so it groups in its hash table), then
 * returns the results with the track numbers mapped back. */
static size_t grouped_results(const sh_fp_config *c, uint32_t sparse, sh_match_result *r)
{
    sh_matcher *m = NULL;
    assert_int_equal(sh_matcher_new(c, &m, NULL), 0);
    sh_match_config mc;
    sh_match_config_for(c, &mc);
    mc.min_confidence = 0.0;
    assert_int_equal(sh_matcher_configure(m, &mc, NULL), 0);
    uint64_t s = 11;
#define TRK(t) ((t) * (sparse ? sparse : 1) + (sparse ? 7 : 0))
    for (uint32_t t = 0; t < 600; t++) {
        sh_matcher_vote(m, TRK(1234u), 3000 + t, t); /* 600 aligned: a dense run of cells */
        if (t % 15 == 0)
            sh_matcher_vote(m, TRK(77u), 900 + t, t); /* 40 aligned ... */
        if (t % 6 == 0) /* ... among 100 spread over 10^6 frames: sorted, not counted densely */
            sh_matcher_vote(m, TRK(77u), (uint32_t)(synth_rand(&s) % 1000000), t);
        if (t % 50 == 0)
            sh_matcher_vote(m, TRK(2500u), 100 + t, t); /* 12 aligned: the short-group path */
    }
    for (int i = 0; i < 6000; i++) /* noise over 3000 tracks, ~2 votes each */
        sh_matcher_vote(m, TRK(1 + (uint32_t)(synth_rand(&s) % 3000)),
                        (uint32_t)(synth_rand(&s) % 20000), (uint32_t)(synth_rand(&s) % 600));
#undef TRK
    size_t n = 0;
    assert_int_equal(sh_matcher_result(m, r, 8, &n), 0);
    for (size_t i = 0; i < n; i++)
        r[i].track = sparse ? (r[i].track - 7) / sparse : r[i].track;
    sh_matcher_free(m);
    return n;
}

/* The coarse stage groups votes by track in a direct array when track numbers are dense (a
 * shard's), else in a hash table: both give the same answers, for one row and for rows
 * (speed-invariant hashes), and find the planted alignments. */
static void test_grouping_paths(void **state)
{
    (void)state;
    const int modes[] = {SH_FP_TRIPLETS, SH_FP_PAIRS, SH_FP_SPEED};
    for (int mi = 0; mi < 3; mi++) {
        sh_fp_config c;
        sh_fp_config_query(&c);
        sh_fp_config_mode(&c, modes[mi]);
        c.query = 1;
        sh_match_result a[8], b[8];
        const size_t na = grouped_results(&c, 0, a), nb = grouped_results(&c, 100003, b);
        assert_int_equal(na, nb);
        assert_true(na >= 3);
        for (size_t i = 0; i < na; i++) {
            assert_int_equal(a[i].track, b[i].track);
            assert_int_equal(a[i].score, b[i].score);
            assert_int_equal(a[i].landmarks, b[i].landmarks);
            assert_int_equal(a[i].spread, b[i].spread);
            assert_true(a[i].offset_s == b[i].offset_s && a[i].scale == b[i].scale);
            assert_true(a[i].confidence == b[i].confidence);
        }
        assert_int_equal(a[0].track, 1234);
        assert_true(a[0].score >= 600);
        assert_true(fabs(a[0].offset_s - 3000 * sh_fp_frame_seconds(&c)) < 0.02);
        int found77 = 0, found2500 = 0;
        for (size_t i = 0; i < na; i++) {
            found77 |= a[i].track == 77 && a[i].score >= 40;
            found2500 |= a[i].track == 2500 && a[i].score >= 12;
        }
        assert_true(found77 && found2500);
    }
}

int main(void)
{
    const struct CMUnitTest world_tests[] = {
        cmocka_unit_test(test_excerpt_matches_at_offset),
        cmocka_unit_test(test_unknown_audio_no_match),
        cmocka_unit_test(test_speed_change_matches),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_votes_ranking),
        cmocka_unit_test(test_threshold),
        cmocka_unit_test(test_threshold_per_mode),
        cmocka_unit_test(test_landmark_path),
        cmocka_unit_test(test_duplicates_and_ties),
        cmocka_unit_test(test_vote_cap_and_config),
        cmocka_unit_test(test_far_query_times),
        cmocka_unit_test(test_grouping_paths),
    };
    const struct CMUnitTest speed_tests[] = {
        cmocka_unit_test(test_excerpt_matches_at_offset),
        cmocka_unit_test(test_unknown_audio_no_match),
        cmocka_unit_test(test_speed_change_matches),
        cmocka_unit_test(test_speed_10_percent),
    };
    const int a = cmocka_run_group_tests_name("triplets", world_tests, setup_triplets, teardown);
    const int b = cmocka_run_group_tests_name("pairs", world_tests, setup_pairs, teardown);
    const int c = cmocka_run_group_tests_name("speed", speed_tests, setup_speed, teardown);
    return a | b | c | cmocka_run_group_tests(tests, NULL, NULL);
}
