/* test_metrics.c — the Prometheus registry: registration rules, label handling, exact rendering,
 * histogram bucketing, concurrent updates, caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sh_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sh_metrics *new_reg(void)
{
    sh_metrics *m = NULL;
    assert_int_equal(sh_metrics_new(&m), 0);
    assert_non_null(m);
    return m;
}

static char *render(sh_metrics *m)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(sh_metrics_render(m, &out, &len), 0);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_counter_render(void **state)
{
    (void)state;
    sh_metrics *m = new_reg();
    sh_metric *c;
    assert_int_equal(sh_metrics_counter(m, "sh_events_total", "Events handled.",
                                        (const char *[]){"result", "reason", NULL}, &c),
                     0);
    sh_series *ok = sh_metric_series(c, (const char *[]){"ok", "none", NULL});
    sh_series *bad = sh_metric_series(c, (const char *[]){"dlq", "SH_EDECODE", NULL});
    assert_non_null(ok);
    assert_non_null(bad);
    /* The same values give the same series. */
    assert_ptr_equal(ok, sh_metric_series(c, (const char *[]){"ok", "none", NULL}));
    sh_series_add(ok, 1);
    sh_series_add(ok, 2);
    sh_series_add(bad, 1);
    sh_series_add(ok, -5); /* counters never go down */
    sh_series_add(ok, NAN);
    assert_true(sh_series_value(ok) == 3.0);
    char *out = render(m);
    assert_string_equal(out, "# HELP sh_events_total Events handled.\n"
                             "# TYPE sh_events_total counter\n"
                             "sh_events_total{result=\"ok\",reason=\"none\"} 3\n"
                             "sh_events_total{result=\"dlq\",reason=\"SH_EDECODE\"} 1\n");
    free(out);
    sh_metrics_free(m);
}

static void test_gauge_and_unlabelled(void **state)
{
    (void)state;
    sh_metrics *m = new_reg();
    sh_metric *g;
    assert_int_equal(sh_metrics_gauge(m, "sh_inflight", "In flight.", NULL, &g), 0);
    sh_series *s = sh_metric_series(g, NULL);
    assert_non_null(s);
    sh_series_set(s, 7);
    sh_series_add(s, -2.5);
    assert_true(sh_series_value(s) == 4.5);
    /* Wrong number of values: no series. */
    assert_null(sh_metric_series(g, (const char *[]){"x", NULL}));
    char *out = render(m);
    assert_string_equal(out, "# HELP sh_inflight In flight.\n# TYPE sh_inflight gauge\n"
                             "sh_inflight 4.5\n");
    free(out);
    sh_metrics_free(m);
}

/* A gauge series that stops meaning anything (a revoked partition) disappears from the rendering
 * and comes back when set again; counters cannot be unset. */
static void test_gauge_unset(void **state)
{
    (void)state;
    sh_metrics *m = new_reg();
    sh_metric *g, *c;
    assert_int_equal(sh_metrics_gauge(m, "sh_lag", "Lag.", (const char *[]){"p", NULL}, &g), 0);
    assert_int_equal(sh_metrics_counter(m, "sh_n_total", "N.", NULL, &c), 0);
    sh_series *p0 = sh_metric_series(g, (const char *[]){"0", NULL});
    sh_series *p1 = sh_metric_series(g, (const char *[]){"1", NULL});
    sh_series *n = sh_metric_series(c, NULL);
    sh_series_set(p0, 5);
    sh_series_set(p1, 7);
    sh_series_add(n, 2);
    sh_series_unset(p1);
    sh_series_unset(n);
    sh_series_unset(NULL);
    assert_true(sh_series_value(p1) == 0);
    assert_true(sh_series_value(n) == 2);
    char *out = render(m);
    assert_string_equal(out, "# HELP sh_lag Lag.\n# TYPE sh_lag gauge\nsh_lag{p=\"0\"} 5\n"
                             "# HELP sh_n_total N.\n# TYPE sh_n_total counter\nsh_n_total 2\n");
    free(out);
    /* The same pointer shows it again, in its old place. */
    assert_ptr_equal(p1, sh_metric_series(g, (const char *[]){"1", NULL}));
    sh_series_add(p1, 3);
    out = render(m);
    assert_non_null(strstr(out, "sh_lag{p=\"0\"} 5\nsh_lag{p=\"1\"} 3\n"));
    free(out);
    sh_metrics_free(m);
}

static void test_histogram_render(void **state)
{
    (void)state;
    sh_metrics *m = new_reg();
    sh_metric *h;
    const double b[] = {0.1, 0.5, 1};
    assert_int_equal(
        sh_metrics_histogram(m, "sh_lat_seconds", "Latency.", (const char *[]){"op", NULL}, b, 3, &h),
        0);
    sh_series *s = sh_metric_series(h, (const char *[]){"write", NULL});
    sh_series_observe(s, 0.05);
    sh_series_observe(s, 0.1); /* upper bounds are inclusive */
    sh_series_observe(s, 0.7);
    sh_series_observe(s, 3);
    sh_series_add(s, 100); /* no-op on histograms */
    assert_true(sh_series_value(s) == 4.0);
    char *out = render(m);
    assert_string_equal(out, "# HELP sh_lat_seconds Latency.\n"
                             "# TYPE sh_lat_seconds histogram\n"
                             "sh_lat_seconds_bucket{op=\"write\",le=\"0.1\"} 2\n"
                             "sh_lat_seconds_bucket{op=\"write\",le=\"0.5\"} 2\n"
                             "sh_lat_seconds_bucket{op=\"write\",le=\"1\"} 3\n"
                             "sh_lat_seconds_bucket{op=\"write\",le=\"+Inf\"} 4\n"
                             "sh_lat_seconds_sum{op=\"write\"} 3.85\n"
                             "sh_lat_seconds_count{op=\"write\"} 4\n");
    free(out);
    sh_metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    sh_metrics *m = new_reg();
    sh_metric *c;
    assert_int_equal(sh_metrics_counter(m, "x_total", "line1\nback\\slash \"q\"",
                                        (const char *[]){"v", NULL}, &c),
                     0);
    sh_series_add(sh_metric_series(c, (const char *[]){"a\"b\\c\nd", NULL}), 1);
    char *out = render(m);
    assert_string_equal(out, "# HELP x_total line1\\nback\\\\slash \"q\"\n"
                             "# TYPE x_total counter\n"
                             "x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
    free(out);
    sh_metrics_free(m);
}

static void test_registration_errors(void **state)
{
    (void)state;
    sh_metrics *m = new_reg();
    sh_metric *f = NULL;
    assert_int_equal(sh_metrics_counter(m, "9bad", "", NULL, &f), SH_EINVAL);
    assert_int_equal(sh_metrics_counter(m, "", "", NULL, &f), SH_EINVAL);
    assert_int_equal(sh_metrics_counter(m, "a-b", "", NULL, &f), SH_EINVAL);
    assert_int_equal(sh_metrics_counter(m, "ok", "", (const char *[]){"le", NULL}, &f), SH_EINVAL);
    assert_int_equal(sh_metrics_counter(m, "ok", "", (const char *[]){"a:b", NULL}, &f), SH_EINVAL);
    assert_int_equal(
        sh_metrics_counter(m, "ok", "", (const char *[]){"a", "b", "c", "d", "e", NULL}, &f),
        SH_EINVAL);
    const double unsorted[] = {1, 0.5};
    assert_int_equal(sh_metrics_histogram(m, "h", "", NULL, unsorted, 2, &f), SH_EINVAL);
    const double inf[] = {1, INFINITY};
    assert_int_equal(sh_metrics_histogram(m, "h", "", NULL, inf, 2, &f), SH_EINVAL);
    assert_null(f);
    assert_int_equal(sh_metrics_counter(m, "ns:ok_total", "", NULL, &f), 0);
    sh_metric *g = NULL;
    assert_int_equal(sh_metrics_gauge(m, "ns:ok_total", "", NULL, &g), SH_EEXIST);
    assert_null(g);
    sh_metrics_free(m);
    sh_metrics_free(NULL);
}

static void test_series_cap_and_truncation(void **state)
{
    (void)state;
    sh_metrics *m = new_reg();
    sh_metric *c;
    assert_int_equal(sh_metrics_counter(m, "c_total", "", (const char *[]){"k", NULL}, &c), 0);
    char v[32];
    for (int i = 0; i < SH_METRICS_MAX_SERIES; i++) {
        snprintf(v, sizeof v, "v%d", i);
        assert_non_null(sh_metric_series(c, (const char *[]){v, NULL}));
    }
    assert_null(sh_metric_series(c, (const char *[]){"one-too-many", NULL}));
    /* Existing series are still found once the family is full. */
    assert_non_null(sh_metric_series(c, (const char *[]){"v0", NULL}));
    sh_series_add(NULL, 1); /* NULL-safe */

    sh_metric *d;
    assert_int_equal(sh_metrics_counter(m, "d_total", "", (const char *[]){"k", NULL}, &d), 0);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sh_series *s = sh_metric_series(d, (const char *[]){big, NULL});
    assert_non_null(s);
    assert_ptr_equal(s, sh_metric_series(d, (const char *[]){big, NULL}));
    sh_metrics_free(m);
}

typedef struct hammer_arg {
    sh_series *c, *h;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *a = p;
    for (int i = 0; i < 100000; i++) {
        sh_series_add(a->c, 1);
        sh_series_observe(a->h, 0.5);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    sh_metrics *m = new_reg();
    sh_metric *c, *h;
    const double b[] = {1};
    assert_int_equal(sh_metrics_counter(m, "c_total", "", NULL, &c), 0);
    assert_int_equal(sh_metrics_histogram(m, "h", "", NULL, b, 1, &h), 0);
    hammer_arg a = {sh_metric_series(c, NULL), sh_metric_series(h, NULL)};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &a), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(sh_series_value(a.c) == 400000.0);
    assert_true(sh_series_value(a.h) == 400000.0);
    char *out = render(m);
    assert_non_null(strstr(out, "h_sum 200000\n"));
    assert_non_null(strstr(out, "h_bucket{le=\"1\"} 400000\n"));
    free(out);
    sh_metrics_free(m);
}

static void test_exp_buckets(void **state)
{
    (void)state;
    double b[4];
    assert_int_equal(sh_metrics_exp_buckets(0.001, 10, 4, b), 0);
    assert_true(fabs(b[3] - 1.0) < 1e-12);
    assert_int_equal(sh_metrics_exp_buckets(0, 2, 4, b), SH_EINVAL);
    assert_int_equal(sh_metrics_exp_buckets(1, 1, 4, b), SH_EINVAL);
    assert_int_equal(sh_metrics_exp_buckets(1, 2, 0, b), SH_EINVAL);
    assert_int_equal(sh_metrics_exp_buckets(1, 2, SH_METRICS_MAX_BUCKETS + 1, b), SH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_render),
        cmocka_unit_test(test_gauge_and_unlabelled),
        cmocka_unit_test(test_gauge_unset),
        cmocka_unit_test(test_histogram_render),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_registration_errors),
        cmocka_unit_test(test_series_cap_and_truncation),
        cmocka_unit_test(test_concurrent_updates),
        cmocka_unit_test(test_exp_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
