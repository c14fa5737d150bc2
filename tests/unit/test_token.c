/* test_token.c — sh_token: loading a bearer token from a file or the environment, and the
 * constant-time header check. */
#include "sh_token.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char *write_tmp(const char *content, size_t n)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/sh-test-token.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
    return path;
}

static void test_file_first_line(void **state)
{
    (void)state;
    char *p = write_tmp("s3cret\r\nsecond line\n", 20);
    char *t = NULL;
    sh_err e = {0};
    assert_int_equal(sh_token_load(p, "--tf", "SH_TEST_TOKEN_UNSET", &t, &e), 0);
    assert_string_equal(t, "s3cret");
    free(t);
    unlink(p);
}

static void test_file_errors(void **state)
{
    (void)state;
    char *t = NULL;
    sh_err e = {0};
    assert_int_equal(sh_token_load("/nonexistent/x", "--tf", NULL, &t, &e), SH_EUSAGE);
    assert_non_null(strstr(sh_err_text(&e), "--tf /nonexistent/x"));
    assert_null(t);
    char *p = write_tmp("\n", 1);
    assert_int_equal(sh_token_load(p, "--tf", NULL, &t, &e), SH_EUSAGE);
    assert_non_null(strstr(sh_err_text(&e), "empty"));
    unlink(p);
    p = write_tmp("ab\001cd\n", 6);
    assert_int_equal(sh_token_load(p, "--tf", NULL, &t, &e), SH_EUSAGE);
    assert_non_null(strstr(sh_err_text(&e), "control character"));
    assert_null(t);
    unlink(p);
    p = write_tmp("ab\0cd\n", 6);
    assert_int_equal(sh_token_load(p, "--tf", NULL, &t, &e), SH_EUSAGE);
    assert_non_null(strstr(sh_err_text(&e), "NUL"));
    unlink(p);
    p = write_tmp(" secret\n", 8);
    assert_int_equal(sh_token_load(p, "--tf", NULL, &t, &e), SH_EUSAGE);
    assert_non_null(strstr(sh_err_text(&e), "space"));
    unlink(p);
    p = write_tmp("secret \n", 8);
    assert_int_equal(sh_token_load(p, "--tf", NULL, &t, &e), SH_EUSAGE);
    unlink(p);
    /* over the cap: refused, not silently cut to a shorter (different) token */
    char *big = malloc(SH_TOKEN_MAX + 10);
    memset(big, 'a', SH_TOKEN_MAX + 10);
    p = write_tmp(big, SH_TOKEN_MAX + 10);
    assert_int_equal(sh_token_load(p, "--tf", NULL, &t, &e), SH_EUSAGE);
    assert_non_null(strstr(sh_err_text(&e), "over"));
    unlink(p);
    free(big);
}

static void test_env(void **state)
{
    (void)state;
    char *t = NULL;
    sh_err e = {0};
    unsetenv("SH_TEST_TOKEN");
    assert_int_equal(sh_token_load("", "--tf", "SH_TEST_TOKEN", &t, &e), 0);
    assert_null(t); /* neither set: open */
    setenv("SH_TEST_TOKEN", "", 1);
    assert_int_equal(sh_token_load("", "--tf", "SH_TEST_TOKEN", &t, &e), 0);
    assert_null(t);
    setenv("SH_TEST_TOKEN", "envtok", 1);
    assert_int_equal(sh_token_load(NULL, "--tf", "SH_TEST_TOKEN", &t, &e), 0);
    assert_string_equal(t, "envtok");
    free(t);
    setenv("SH_TEST_TOKEN", "a\nX-Injected: 1", 1);
    assert_int_equal(sh_token_load("", "--tf", "SH_TEST_TOKEN", &t, &e), SH_EUSAGE);
    assert_non_null(strstr(sh_err_text(&e), "SH_TEST_TOKEN"));
    unsetenv("SH_TEST_TOKEN");
}

static void test_bearer(void **state)
{
    (void)state;
    assert_true(sh_token_bearer_ok("Bearer abc", "abc"));
    assert_true(sh_token_bearer_ok("bearer   abc", "abc"));
    assert_false(sh_token_bearer_ok("Bearer abcd", "abc"));
    assert_false(sh_token_bearer_ok("Bearer ab", "abc"));
    assert_false(sh_token_bearer_ok("Bearer ", "abc"));
    assert_false(sh_token_bearer_ok("Basic abc", "abc"));
    assert_false(sh_token_bearer_ok("Bearerabc", "abc"));
    assert_false(sh_token_bearer_ok(NULL, "abc"));
    assert_false(sh_token_bearer_ok("Bearer abc", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_first_line),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
