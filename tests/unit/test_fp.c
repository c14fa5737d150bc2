/* Unit tests for sh_fp: determinism, streaming, degenerate input, bounds, hash layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sh_fp.h"
#include "synth.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RATE 8000

typedef struct hashes {
    sh_hash *h;
    size_t n;
} hashes;

/* Fingerprints x in chunks of `chunk` samples (0 = one call) with config c. */
static hashes run(const sh_fp_config *c, const float *x, size_t n, size_t chunk)
{
    sh_fp *fp = NULL;
    sh_err e = {0};
    assert_int_equal(sh_fp_new(c, &fp, &e), 0);
    if (chunk == 0)
        chunk = n ? n : 1;
    for (size_t i = 0; i < n; i += chunk)
        assert_int_equal(sh_fp_feed(fp, x + i, n - i < chunk ? n - i : chunk, &e), 0);
    assert_int_equal(sh_fp_finish(fp, &e), 0);
    assert_int_equal(sh_fp_samples(fp), n);
    hashes r;
    const sh_hash *h = sh_fp_hashes(fp, &r.n);
    r.h = malloc((r.n ? r.n : 1) * sizeof *r.h);
    assert_non_null(r.h);
    if (r.n)
        memcpy(r.h, h, r.n * sizeof *h);
    sh_fp_free(fp);
    return r;
}

static void assert_same(hashes a, hashes b)
{
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.h, b.h, a.n * sizeof *a.h);
}

static float *music(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    synth_music(x, n, RATE, seed);
    return x;
}

static void test_deterministic(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_default(&c);
    const size_t n = 20 * RATE;
    float *x = music(n, 1);
    hashes a = run(&c, x, n, 0), b = run(&c, x, n, 0);
    assert_true(a.n > 100); /* the synthetic music has plenty of peaks */
    assert_same(a, b);
    /* sorted by t */
    for (size_t i = 1; i < a.n; i++)
        assert_true(a.h[i - 1].t <= a.h[i].t);
    /* a different signal gives different hashes */
    float *y = music(n, 2);
    hashes d = run(&c, y, n, 0);
    assert_true(d.n != a.n || memcmp(d.h, a.h, a.n * sizeof *a.h) != 0);
    free(a.h), free(b.h), free(d.h), free(x), free(y);
}

static void test_streaming_equals_oneshot(void **state)
{
    (void)state;
    const size_t n = 12 * RATE + 77;
    float *x = music(n, 3);
    for (int q = 0; q < 2; q++) {
        sh_fp_config c;
        if (q)
            sh_fp_config_query(&c);
        else
            sh_fp_config_default(&c);
        hashes one = run(&c, x, n, 0);
        assert_true(one.n > 0);
        const size_t chunks[] = {1, 7, 127, 128, 129, 333, 4097};
        for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
            hashes s = run(&c, x, n, chunks[i]);
            assert_same(one, s);
            free(s.h);
        }
        free(one.h);
    }
    free(x);
}

static void test_reset_reuses(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_default(&c);
    const size_t n = 8 * RATE;
    float *x = music(n, 4), *y = music(n, 5);
    hashes ref = run(&c, x, n, 0);
    sh_fp *fp = NULL;
    assert_int_equal(sh_fp_new(&c, &fp, NULL), 0);
    assert_int_equal(sh_fp_feed(fp, y, n, NULL), 0); /* an unfinished stream, then reset */
    sh_fp_reset(fp);
    assert_int_equal(sh_fp_feed(fp, x, n, NULL), 0);
    assert_int_equal(sh_fp_finish(fp, NULL), 0);
    size_t m;
    const sh_hash *h = sh_fp_hashes(fp, &m);
    assert_int_equal(m, ref.n);
    assert_memory_equal(h, ref.h, m * sizeof *h);
    /* finished: more input or a second finish is a usage error */
    assert_int_equal(sh_fp_feed(fp, x, 10, NULL), SH_EINVAL);
    assert_int_equal(sh_fp_finish(fp, NULL), SH_EINVAL);
    sh_fp_free(fp);
    free(ref.h), free(x), free(y);
}

static void test_degenerate_input(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_default(&c);
    const size_t n = 10 * RATE;
    float *x = calloc(n, sizeof *x);
    assert_non_null(x);
    /* digital silence */
    hashes h = run(&c, x, n, 0);
    assert_int_equal(h.n, 0);
    free(h.h);
    /* DC offset, full scale */
    for (size_t i = 0; i < n; i++)
        x[i] = 1.0f;
    h = run(&c, x, n, 0);
    assert_int_equal(h.n, 0);
    free(h.h);
    /* NaN, Inf and absurd values count as 0 / are clamped: no crash, same as silence here */
    for (size_t i = 0; i < n; i++)
        x[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
    h = run(&c, x, n, 0);
    assert_int_equal(h.n, 0);
    free(h.h);
    /* empty stream and shorter than one frame */
    h = run(&c, x, 0, 0);
    assert_int_equal(h.n, 0);
    free(h.h);
    synth_music(x, n, RATE, 6);
    h = run(&c, x, (size_t)c.fft_size - 1, 0);
    assert_int_equal(h.n, 0);
    free(h.h);
    /* just over one frame: bounded, no crash */
    h = run(&c, x, (size_t)c.fft_size + 1, 0);
    assert_true(h.n <= (size_t)(c.fanout * c.fanout * 4));
    free(h.h);
    free(x);
}

/* Hard clipping (music driven 20 dB into ±1) and loud white noise stay within the documented
 * bound per second of audio, in both modes. */
static void test_bounded_count(void **state)
{
    (void)state;
    const size_t n = 20 * RATE;
    float *x = music(n, 7), *w = malloc(n * sizeof *w);
    assert_non_null(w);
    uint64_t s = 99;
    for (size_t i = 0; i < n; i++) {
        const float v = x[i] * 10.0f;
        x[i] = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
        w[i] = (float)(synth_unit(&s) - 0.5);
    }
    for (int q = 0; q < 4; q++) {
        sh_fp_config c;
        if (q & 1)
            sh_fp_config_query(&c);
        else
            sh_fp_config_default(&c);
        sh_fp_config_mode(&c, q < 2 ? SH_FP_TRIPLETS : SH_FP_PAIRS);
        const double bound = sh_fp_max_hashes_per_s(&c) * n / RATE;
        hashes a = run(&c, x, n, 0), b = run(&c, w, n, 0);
        assert_true(a.n > 0);
        assert_true((double)a.n <= bound);
        assert_true((double)b.n <= bound);
        free(a.h), free(b.h);
    }
    free(x), free(w);
}

static void test_layout_roundtrip(void **state)
{
    (void)state;
    uint64_t s = 5;
    for (int i = 0; i < 10000; i++) {
        const uint32_t f1 = synth_rand(&s) % (1u << SH_FP_F1_BITS);
        const uint32_t df = synth_rand(&s) % (1u << SH_FP_DF_BITS);
        const uint32_t dt = synth_rand(&s) % (1u << SH_FP_DT_BITS);
        const uint32_t h = sh_fp_hash_pack(f1, df, dt);
        assert_int_equal(sh_fp_hash_f1(h), f1);
        assert_int_equal(sh_fp_hash_df(h), df);
        assert_int_equal(sh_fp_hash_dt(h), dt);
        assert_int_equal(h >> (SH_FP_F1_BITS + SH_FP_DF_BITS + SH_FP_DT_BITS), 0);
    }
    for (int i = 0; i < 10000; i++) {
        const uint32_t f1 = synth_rand(&s) % (1u << SH_FP_F1_BITS);
        const uint32_t db = synth_rand(&s) % (1u << SH_FP_T_DF_BITS);
        const uint32_t dc = synth_rand(&s) % (1u << SH_FP_T_DF_BITS);
        const uint32_t lt = synth_rand(&s) % (1u << SH_FP_T_DT_BITS);
        const uint32_t r = synth_rand(&s) % (1u << SH_FP_T_R_BITS);
        const uint32_t h = sh_fp_hash_pack3(f1, db, dc, lt, r);
        assert_int_equal(sh_fp_hash3_f1(h), f1);
        assert_int_equal(sh_fp_hash3_db(h), db);
        assert_int_equal(sh_fp_hash3_dc(h), dc);
        assert_int_equal(sh_fp_hash3_lt(h), lt);
        assert_int_equal(sh_fp_hash3_r(h), r);
    }
    /* produced hashes respect the field ranges the config promises, in both modes */
    sh_fp_config c;
    sh_fp_config_query(&c);
    sh_fp_config_mode(&c, SH_FP_PAIRS);
    const size_t n = 10 * RATE;
    float *x = music(n, 8);
    hashes a = run(&c, x, n, 0);
    assert_true(a.n > 0);
    const double fcells = log2(c.fmax_hz / c.fmin_hz) * c.f1_steps + 1;
    for (size_t i = 0; i < a.n; i++) {
        const uint32_t h = a.h[i].hash;
        assert_true(sh_fp_hash_f1(h) <= fcells);
        assert_true(fabs((double)sh_fp_hash_df(h) - SH_FP_DF_BIAS) <=
                    c.df_max_oct * c.df_steps + 1);
        assert_true(sh_fp_hash_dt(h) <= (c.dt_max + 1) * (1 + c.q_scale_tol) / c.dt_step + 1);
    }
    free(a.h);
    sh_fp_config_mode(&c, SH_FP_TRIPLETS);
    a = run(&c, x, n, 0);
    assert_true(a.n > 0);
    size_t short_first = 0;
    for (size_t i = 0; i < a.n; i++) {
        const uint32_t h = a.h[i].hash;
        assert_true(sh_fp_hash3_f1(h) <= fcells);
        assert_true(fabs((double)sh_fp_hash3_db(h) - SH_FP_T_DF_BIAS) <=
                    c.df_max_oct * c.t_df_steps + 1);
        assert_true(fabs((double)sh_fp_hash3_dc(h) - SH_FP_T_DF_BIAS) <=
                    c.df_max_oct * c.t_df_steps + 1);
        assert_true(sh_fp_hash3_lt(h) <= log2((c.dt_max + 1) * (1 + c.q_scale_tol)) * c.t_dt_steps + 1);
        /* the second target is never nearer than the first: the ratio lies in [0, 1] */
        assert_true(sh_fp_hash3_r(h) <= c.t_ratio_steps);
        short_first += sh_fp_hash3_r(h) < c.t_ratio_steps / 2;
    }
    assert_true(short_first > 0 && short_first < a.n); /* the ratio carries information */
    free(a.h), free(x);
}

/* Resamples x by factor f (linear interpolation): a speed change, pitch and tempo together. */
static float *speed(const float *x, size_t n, double f, size_t *m)
{
    *m = (size_t)((double)(n - 1) / f);
    float *y = malloc(*m * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < *m; i++) {
        const double p = (double)i * f;
        const size_t k = (size_t)p;
        const double a = p - (double)k;
        y[i] = (float)((1.0 - a) * x[k] + a * x[k + 1 < n ? k + 1 : k]);
    }
    return y;
}

static int cmp_u32(const void *a, const void *b)
{
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Fraction of the index hashes of a that occur (any time) among the query hashes of b. */
static double shared_fraction(hashes a, hashes b)
{
    uint32_t *v = malloc((b.n ? b.n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < b.n; i++)
        v[i] = b.h[i].hash;
    qsort(v, b.n, sizeof *v, cmp_u32);
    size_t found = 0;
    for (size_t i = 0; i < a.n; i++)
        found += bsearch(&a.h[i].hash, v, b.n, sizeof *v, cmp_u32) != NULL;
    free(v);
    return a.n ? (double)found / (double)a.n : 0.0;
}

/* Both modes are speed-tolerant (±2 % keeps most index hashes findable by a query), and the
 * triplet hashes are far more specific: unrelated music shares fewer of them. */
static void test_modes_speed_and_specificity(void **state)
{
    (void)state;
    const size_t n = 20 * RATE;
    float *x = music(n, 11), *z = music(n, 12);
    size_t m;
    float *y = speed(x, n, 1.02, &m);
    double unrelated[2];
    for (int mode = 0; mode < 2; mode++) {
        sh_fp_config ic, qc;
        sh_fp_config_default(&ic);
        sh_fp_config_query(&qc);
        sh_fp_config_mode(&ic, mode);
        sh_fp_config_mode(&qc, mode);
        hashes a = run(&ic, x, n, 0), b = run(&qc, y, m, 0), u = run(&qc, z, n, 0);
        assert_true(a.n > 100);
        assert_true(shared_fraction(a, b) > 0.3);
        unrelated[mode] = shared_fraction(a, u);
        free(a.h), free(b.h), free(u.h);
    }
    assert_true(unrelated[SH_FP_TRIPLETS] * 5 < unrelated[SH_FP_PAIRS]);
    free(x), free(y), free(z);
}

/* The query extraction covers the index extraction: nearly every index (hash, t) is in it. */
static void query_covers_index(int mode)
{
    sh_fp_config ic, qc;
    sh_fp_config_default(&ic);
    sh_fp_config_query(&qc);
    sh_fp_config_mode(&ic, mode);
    sh_fp_config_mode(&qc, mode);
    const size_t n = 15 * RATE;
    float *x = music(n, 9);
    hashes a = run(&ic, x, n, 0), b = run(&qc, x, n, 0);
    assert_true(b.n > a.n);
    size_t found = 0, j = 0;
    for (size_t i = 0; i < a.n; i++) {
        while (j < b.n && b.h[j].t < a.h[i].t)
            j++;
        for (size_t k = j; k < b.n && b.h[k].t == a.h[i].t; k++)
            if (b.h[k].hash == a.h[i].hash) {
                found++;
                break;
            }
    }
    assert_true(found * 10 >= a.n * 9);
    free(a.h), free(b.h), free(x);
}

static void test_query_covers_index(void **state)
{
    (void)state;
    query_covers_index(SH_FP_TRIPLETS);
    query_covers_index(SH_FP_PAIRS);
    query_covers_index(SH_FP_SPEED);
}

/* The speed-invariant mode keeps most index hashes findable at ±10 % speed, where the triplets
 * of fp_version 3 lose most of theirs, and stays about as specific as they are. */
static void test_speed_mode_invariance(void **state)
{
    (void)state;
    const size_t n = 20 * RATE;
    float *x = music(n, 11), *z = music(n, 12);
    double found[2][2], unrelated[2];
    const int modes[2] = {SH_FP_TRIPLETS, SH_FP_SPEED};
    for (int mi = 0; mi < 2; mi++) {
        sh_fp_config ic, qc;
        sh_fp_config_default(&ic);
        sh_fp_config_query(&qc);
        sh_fp_config_mode(&ic, modes[mi]);
        sh_fp_config_mode(&qc, modes[mi]);
        hashes a = run(&ic, x, n, 0), u = run(&qc, z, n, 0);
        for (int k = 0; k < 2; k++) {
            size_t m;
            float *y = speed(x, n, k ? 0.90 : 1.10, &m);
            hashes b = run(&qc, y, m, 0);
            found[mi][k] = shared_fraction(a, b);
            free(b.h), free(y);
        }
        unrelated[mi] = shared_fraction(a, u);
        free(a.h), free(u.h);
    }
    for (int k = 0; k < 2; k++) {
        assert_true(found[1][k] > 0.25);
        assert_true(found[1][k] > 3 * found[0][k]);
    }
    assert_true(unrelated[1] < 0.1);
    free(x), free(z);
}

typedef struct job {
    const float *x;
    size_t n;
    hashes out;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    sh_fp_config c;
    sh_fp_config_query(&c);
    for (int r = 0; r < 3; r++) { /* create/free repeatedly: plans are made under the lock */
        sh_fp *fp = NULL;
        if (sh_fp_new(&c, &fp, NULL) || sh_fp_feed(fp, j->x, j->n, NULL) || sh_fp_finish(fp, NULL))
            return NULL;
        size_t m;
        const sh_hash *h = sh_fp_hashes(fp, &m);
        free(j->out.h);
        j->out.h = malloc((m ? m : 1) * sizeof *h);
        if (j->out.h && m)
            memcpy(j->out.h, h, m * sizeof *h);
        j->out.n = m;
        sh_fp_free(fp);
    }
    return arg;
}

/* Extractors made and run in parallel threads give the single-threaded result. */
static void test_threads(void **state)
{
    (void)state;
    const size_t n = 6 * RATE;
    float *x = music(n, 10);
    sh_fp_config c;
    sh_fp_config_query(&c);
    hashes ref = run(&c, x, n, 0);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){.x = x, .n = n};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret = NULL;
        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_non_null(ret);
        assert_same(ref, jobs[i].out);
        free(jobs[i].out.h);
    }
    free(ref.h), free(x);
}

static void test_config_checks(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp *fp = (sh_fp *)&c; /* must be reset to NULL on failure */
    sh_err e = {0};
    sh_fp_config_default(&c);
    assert_int_equal(sh_fp_config_check(&c, &e), 0);
    assert_true(fabs(sh_fp_frame_seconds(&c) - 0.016) < 1e-9);
    c.fft_size = 1000;
    assert_int_equal(sh_fp_new(&c, &fp, &e), SH_EINVAL);
    assert_null(fp);
    assert_true(strlen(e.msg) > 0);
    sh_fp_config_default(&c);
    c.hop = 0;
    assert_int_equal(sh_fp_config_check(&c, NULL), SH_EINVAL);
    sh_fp_config_default(&c);
    c.fmax_hz = 5000.0f; /* above Nyquist at 8 kHz */
    assert_int_equal(sh_fp_config_check(&c, NULL), SH_EINVAL);
    sh_fp_config_default(&c);
    c.f1_steps = 100.0f; /* would overflow the 6-bit field */
    assert_int_equal(sh_fp_config_check(&c, NULL), SH_EINVAL);
    sh_fp_config_default(&c);
    c.dt_max = 400; /* would overflow the 8-bit field */
    assert_int_equal(sh_fp_config_check(&c, NULL), SH_EINVAL);
    sh_fp_config_default(&c);
    c.hash_mode = 3;
    assert_int_equal(sh_fp_config_check(&c, NULL), SH_EINVAL);
    sh_fp_config_mode(&c, SH_FP_SPEED);
    assert_int_equal(sh_fp_config_check(&c, NULL), 0);
    c.s_u_steps = 32.0f; /* would overflow the 8-bit u field */
    assert_int_equal(sh_fp_config_check(&c, NULL), SH_EINVAL);
    sh_fp_config_mode(&c, SH_FP_TRIPLETS); /* a speed-only field does not constrain triplets */
    assert_int_equal(sh_fp_config_check(&c, NULL), 0);
    sh_fp_config_default(&c);
    sh_fp_config_mode(&c, SH_FP_SPEED);
    c.s_f_steps = 8.0f; /* would overflow the 5-bit coarse frequency field */
    assert_int_equal(sh_fp_config_check(&c, NULL), SH_EINVAL);
    sh_fp_config_default(&c);
    c.t_dt_steps = 40.0f; /* would overflow the 7-bit triplet time field */
    assert_int_equal(sh_fp_config_check(&c, NULL), SH_EINVAL);
    sh_fp_config_mode(&c, SH_FP_PAIRS); /* a triplet-only field does not constrain pairs */
    assert_int_equal(sh_fp_config_check(&c, NULL), 0);
    assert_int_equal(sh_fp_config_check(NULL, NULL), SH_EINVAL);
    sh_fp_free(NULL);
    size_t n = 1;
    assert_null(sh_fp_hashes(NULL, &n));
    assert_int_equal(n, 0);
}

/* The configs behind fp_versions 2 and 3, and that they make different hashes (pairs keep the
 * top 10 bits zero; triplets use them). */
static void test_config_for_version(void **state)
{
    (void)state;
    sh_fp_config c, want;
    sh_err e = {0};
    assert_int_equal(sh_fp_config_for_version(3, &c, &e), 0);
    sh_fp_config_default(&want);
    assert_memory_equal(&c, &want, sizeof c);
    assert_int_equal(SH_FP_VERSION, 3);
    assert_int_equal(sh_fp_config_for_version(2, &c, &e), 0);
    sh_fp_config_mode(&want, SH_FP_PAIRS);
    assert_memory_equal(&c, &want, sizeof c);
    assert_int_equal(c.q_fanout, 5);
    sh_fp_config keep = c;
    sh_fp_config c4;
    assert_int_equal(sh_fp_config_for_version(4, &c4, &e), 0);
    sh_fp_config_default(&want);
    sh_fp_config_mode(&want, SH_FP_SPEED);
    assert_memory_equal(&c4, &want, sizeof c4);
    const int bad[] = {0, 1, 5, -3, 1000};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sh_fp_config_for_version(bad[i], &c, &e), SH_EUNSUPPORTED);
        assert_non_null(strstr(sh_err_text(&e), "fp_version"));
        assert_memory_equal(&c, &keep, sizeof c);
    }
    assert_int_equal(sh_fp_config_for_version(3, NULL, NULL), SH_EINVAL);
    const size_t n = RATE * 4;
    float *x = music(n, 11);
    sh_fp_config c2, c3;
    assert_int_equal(sh_fp_config_for_version(2, &c2, NULL), 0);
    assert_int_equal(sh_fp_config_for_version(3, &c3, NULL), 0);
    hashes h2 = run(&c2, x, n, 0), h3 = run(&c3, x, n, 0);
    assert_true(h2.n > 0 && h3.n > 0);
    uint32_t top2 = 0, top3 = 0;
    for (size_t i = 0; i < h2.n; i++)
        top2 |= h2.h[i].hash >> 22;
    for (size_t i = 0; i < h3.n; i++)
        top3 |= h3.h[i].hash >> 22;
    assert_int_equal(top2, 0);
    assert_true(top3 != 0);
    free(h2.h), free(h3.h), free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),      cmocka_unit_test(test_streaming_equals_oneshot),
        cmocka_unit_test(test_reset_reuses),       cmocka_unit_test(test_degenerate_input),
        cmocka_unit_test(test_bounded_count),      cmocka_unit_test(test_layout_roundtrip),
        cmocka_unit_test(test_query_covers_index),
        cmocka_unit_test(test_speed_mode_invariance), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_config_checks),      cmocka_unit_test(test_modes_speed_and_specificity),
        cmocka_unit_test(test_config_for_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
