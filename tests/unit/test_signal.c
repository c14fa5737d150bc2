/* Unit tests for sh_signal: SIGTERM/SIGINT set the registered flag instead of killing the
 * process, SH_STOP_BLOCK delivers them in sh_stop_wait, SIGPIPE can be ignored, one registration
 * at a time, and uninstall restores the handlers found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_clock.h"
#include "sh_signal.h"

#include <signal.h>
#include <string.h>

static void handler_of(int sig, struct sigaction *out)
{
    assert_int_equal(sigaction(sig, NULL, out), 0);
}

static void test_term_and_int_set_the_flag(void **state)
{
    (void)state;
    sh_stop s;
    assert_int_equal(sh_stop_install(&s, 0, NULL), 0);
    assert_false(sh_stop_requested(&s));
    assert_int_equal(raise(SIGTERM), 0); /* would kill the test without the handler */
    assert_true(sh_stop_requested(&s));
    assert_int_equal(sh_stop_signal(&s), SIGTERM);
    assert_int_equal(raise(SIGINT), 0);
    assert_int_equal(sh_stop_signal(&s), SIGINT);
    sh_stop_wait(&s); /* already asked: returns at once */
    assert_true(sh_stop_requested_fn(&s));
    sh_stop_uninstall(&s);
    struct sigaction sa;
    handler_of(SIGTERM, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
    handler_of(SIGINT, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
}

static void test_one_registration(void **state)
{
    (void)state;
    sh_stop a, b;
    sh_err e = {0};
    assert_int_equal(sh_stop_install(&a, 0, NULL), 0);
    assert_int_equal(sh_stop_install(&b, 0, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "another"));
    sh_stop_uninstall(&b); /* not registered: nothing happens */
    assert_int_equal(raise(SIGTERM), 0);
    assert_int_equal(sh_stop_signal(&a), SIGTERM);
    sh_stop_uninstall(&a);
    assert_int_equal(sh_stop_install(&b, 0, NULL), 0); /* free again */
    sh_stop_request(&b, 0);
    assert_int_equal(sh_stop_signal(&b), SIGTERM);
    sh_stop_uninstall(&b);
    sh_stop_uninstall(NULL);
}

static void test_block_and_wait(void **state)
{
    (void)state;
    sh_stop s;
    assert_int_equal(sh_stop_install(&s, SH_STOP_BLOCK, NULL), 0);
    sigset_t now;
    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &now), 0);
    assert_true(sigismember(&now, SIGTERM));
    assert_int_equal(raise(SIGTERM), 0); /* blocked: pending, not yet handled */
    assert_false(sh_stop_requested(&s));
    sh_stop_wait(&s); /* delivered inside */
    assert_int_equal(sh_stop_signal(&s), SIGTERM);
    sh_stop_uninstall(&s);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &now), 0);
    assert_false(sigismember(&now, SIGTERM)); /* the mask found is back */
}

static void test_sigpipe_ignored_and_restored(void **state)
{
    (void)state;
    struct sigaction before, sa;
    handler_of(SIGPIPE, &before);
    sh_stop s;
    assert_int_equal(sh_stop_install(&s, SH_STOP_IGNORE_SIGPIPE, NULL), 0);
    handler_of(SIGPIPE, &sa);
    assert_true(sa.sa_handler == SIG_IGN);
    assert_int_equal(raise(SIGPIPE), 0); /* survives */
    assert_false(sh_stop_requested(&s)); /* and it is no stop request */
    sh_stop_uninstall(&s);
    handler_of(SIGPIPE, &sa);
    assert_true(sa.sa_handler == before.sa_handler);
}

static void test_stops_a_sleep(void **state)
{
    (void)state;
    sh_stop s;
    assert_int_equal(sh_stop_install(&s, 0, NULL), 0);
    assert_int_equal(raise(SIGINT), 0);
    assert_int_equal(sh_clock_sleep_ms(3600e3, sh_stop_requested_fn, &s), SH_ECANCELED);
    sh_stop_uninstall(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_term_and_int_set_the_flag),
        cmocka_unit_test(test_one_registration),
        cmocka_unit_test(test_block_and_wait),
        cmocka_unit_test(test_sigpipe_ignored_and_restored),
        cmocka_unit_test(test_stops_a_sleep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
