/* Unit tests for sh_log: every line it writes is valid logfmt, whatever the values hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sh_log.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A strict logfmt check of one line (without its '\n'): `key=value` pairs separated by one space;
 * a key is [A-Za-z0-9_.-]+; a value is bare (no space, '=', '"' or control byte) or a quoted string
 * in which only \" and \\ escapes occur. Returns true when the line is valid. */
static bool logfmt_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = i;
        while (i < n && (isalnum((unsigned char)s[i]) || strchr("_.-", s[i])))
            i++;
        if (i == k || i >= n || s[i] != '=')
            return false;
        i++;
        if (i < n && s[i] == '"') {
            for (i++;; i++) {
                if (i >= n || (unsigned char)s[i] < 0x20)
                    return false;
                if (s[i] == '\\') {
                    if (i + 1 >= n || (s[i + 1] != '"' && s[i + 1] != '\\'))
                        return false;
                    i++;
                } else if (s[i] == '"') {
                    i++;
                    break;
                }
            }
        } else {
            while (i < n && s[i] != ' ') {
                if (s[i] == '=' || s[i] == '"' || (unsigned char)s[i] < 0x20)
                    return false;
                i++;
            }
        }
        if (i < n) {
            if (s[i] != ' ' || i + 1 >= n)
                return false;
            i++;
        }
    }
    return true;
}

static void test_validator_rejects(void **state)
{
    (void)state;
    /* The check itself must be able to fail, or the tests below prove nothing. */
    const char *bad[] = {"k=a b=c d",   "k=\"a\" b\"",   "k=a\"b",     "k=\"a\\x\"",
                         "k=\"open",    "=v",            "k=v  j=w",   "k=\"a\"\"b\"",
                         "msg=\"a \"quoted\" word\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(logfmt_valid(bad[i], strlen(bad[i])));
    const char *good = "ts=1 level=info msg=\"a \\\"b\\\" c=d \\\\\" x=";
    assert_true(logfmt_valid(good, strlen(good)));
}

static void test_quote_escapes(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(sh_log_q(buf, sizeof buf, "a b=c"), "\"a b=c\"");
    assert_string_equal(sh_log_q(buf, sizeof buf, "say \"hi\""), "\"say \\\"hi\\\"\"");
    assert_string_equal(sh_log_q(buf, sizeof buf, "C:\\dir"), "\"C:\\\\dir\"");
    assert_string_equal(sh_log_q(buf, sizeof buf, NULL), "\"\"");
    assert_string_equal(sh_log_q(buf, sizeof buf, "tab\there"), "\"tab?here\"");
    assert_string_equal(sh_log_q(buf, 2, "x"), "");
    /* Truncation never cuts an escape in half: every prefix length stays valid. */
    const char *nasty = "\"\\\"\\\"\\ a=b \"\"";
    for (unsigned len = 3; len < 24; len++) {
        char line[80];
        snprintf(line, sizeof line, "k=%s", sh_log_q(buf, len, nasty));
        assert_true(strlen(buf) < len);
        assert_true(logfmt_valid(line, strlen(line)));
    }
}

/* Runs `fn`, capturing what it writes to stderr into `out` (NUL-terminated). */
static void capture_stderr(void (*fn)(void), char *out, size_t cap)
{
    char path[] = "/tmp/sh-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, out, cap - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    out[n] = '\0';
}

static const char *const hostile[] = {
    "plain", "two words", "k=v", "quote \" inside", "back\\slash", "", "multi\nline\r\n",
    "\"leading", "trailing\\", "= = =", "esc\x1b[2J",
};

static void log_hostile(void)
{
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++)
        SH_WARN("hostile_value", "i=%zu path=%s msg=%s", i, SH_Q(hostile[i]), SH_Q(hostile[i]));
}

static void test_lines_are_logfmt(void **state)
{
    (void)state;
    char buf[8192];
    capture_stderr(log_hostile, buf, sizeof buf);
    size_t lines = 0;
    for (char *p = buf; *p;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (!logfmt_valid(p, (size_t)(nl - p)))
            fail_msg("not logfmt: %.*s", (int)(nl - p), p);
        assert_non_null(strstr(p, " level=warn event=hostile_value i="));
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, sizeof hostile / sizeof hostile[0]);
    assert_non_null(strstr(buf, "msg=\"quote \\\" inside\""));
    assert_non_null(strstr(buf, "msg=\"back\\\\slash\""));
}

/* Call sites that do not quote (`msg=\"%s\"`, `k=%s`) still give valid logfmt: sh_log repairs
 * the line — inner quotes and stray backslashes escaped, bare values with '=' or '"' quoted. */
static void log_raw(void)
{
    static const char *const raw[] = {
        "plain", "quote \" inside", "back\\slash", "\"leading", "trailing\\", "= = =",
        "a\" k=v", "missing \"=\" after \"not\" in connection info string", "",
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++)
        SH_WARN("raw_value", "i=%zu msg=\"%s\" id=%s n=1", i, raw[i], i % 2 ? "a=b" : "x\"y");
    SH_WARN("raw_unterminated", "msg=\"%s", "no end");
}

static void test_raw_lines_are_logfmt(void **state)
{
    (void)state;
    char buf[8192];
    capture_stderr(log_raw, buf, sizeof buf);
    size_t lines = 0;
    for (char *p = buf; *p;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (!logfmt_valid(p, (size_t)(nl - p)))
            fail_msg("not logfmt: %.*s", (int)(nl - p), p);
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, 10);
    /* Valid values come out unchanged; broken ones are escaped, not dropped. */
    assert_non_null(strstr(buf, "i=0 msg=\"plain\" id=\"x\\\"y\" n=1"));
    assert_non_null(strstr(buf, "i=1 msg=\"quote \\\" inside\" id=\"a=b\" n=1"));
    assert_non_null(strstr(buf, "msg=\"back\\\\slash\""));
    assert_non_null(strstr(buf, "msg=\"missing \\\"=\\\" after \\\"not\\\" in connection info string\""));
    assert_non_null(strstr(buf, "event=raw_unterminated msg=\"no end\"\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validator_rejects),
        cmocka_unit_test(test_quote_escapes),
        cmocka_unit_test(test_lines_are_logfmt),
        cmocka_unit_test(test_raw_lines_are_logfmt),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
