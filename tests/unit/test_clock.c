/* Unit tests for core/runtime/sh_clock: the clocks move the right way, the backoff stays inside its
 * jittered bounds and cap, and a sleep ends with SH_ECANCELED once its stop function says so
 * (counted calls, no timing assertions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_clock.h"
#include "sh_err.h"

#include <math.h>
#include <time.h>

static void test_clocks(void **state)
{
    (void)state;
    double s0 = sh_clock_mono_s(), m0 = sh_clock_mono_ms();
    for (int i = 0; i < 1000; i++) {
        double s1 = sh_clock_mono_s(), m1 = sh_clock_mono_ms();
        assert_true(s1 >= s0);
        assert_true(m1 >= m0);
        s0 = s1, m0 = m1;
    }
    /* The two monotonic readings are the same clock in different units. */
    assert_true(fabs(sh_clock_mono_ms() / 1e3 - sh_clock_mono_s()) < 1.0);
    /* Wall clock: ms since the epoch, agreeing with time() to the second. */
    int64_t w = sh_clock_wall_ms();
    time_t t = time(NULL);
    assert_true(w / 1000 >= (int64_t)t - 1 && w / 1000 <= (int64_t)t + 1);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    for (int attempt = -2; attempt < 40; attempt++) {
        int a = attempt < 0 ? 0 : attempt > 20 ? 20 : attempt;
        double nominal = fmin(100.0 * pow(2.0, a), 10000.0);
        for (int i = 0; i < 50; i++) {
            double d = sh_backoff_ms(100.0, 10000.0, attempt);
            assert_true(d >= 0.5 * nominal);
            assert_true(d < 1.5 * nominal);
        }
    }
    /* The jitter really varies (not a constant factor). */
    double lo = 1e9, hi = 0;
    for (int i = 0; i < 200; i++) {
        double d = sh_backoff_ms(100.0, 1000.0, 0);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(hi - lo > 10.0);
}

static bool stop_after(void *arg)
{
    int *calls = arg;
    return ++*calls >= 3;
}

static bool never(void *arg)
{
    int *calls = arg;
    ++*calls;
    return false;
}

static void test_sleep_stops(void **state)
{
    (void)state;
    int calls = 0;
    /* An hour-long sleep whose stop function says yes on its third call ends then. */
    assert_int_equal(sh_clock_sleep_ms(3600e3, stop_after, &calls), SH_ECANCELED);
    assert_int_equal(calls, 3);
    calls = 0;
    assert_int_equal(sh_clock_sleep_ms(1, never, &calls), 0);
    assert_true(calls >= 2); /* asked before the slice and once at the end */
    assert_int_equal(sh_clock_sleep_ms(0, NULL, NULL), 0);
    assert_int_equal(sh_clock_sleep_ms(-5, NULL, NULL), 0);
    calls = 2;
    assert_int_equal(sh_clock_sleep_ms(0, stop_after, &calls), SH_ECANCELED); /* asked at the end */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_sleep_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
