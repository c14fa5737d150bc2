/* Unit tests for sh_opt (configuration layering) and sh_err (the error table). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sh_err.h"
#include "sh_log.h"
#include "sh_opt.h"

#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cfg {
    char *brokers;
    long threads;
    double rate;
    bool verbose;
    size_t cap;
    sh_strlist props;
    char *password;
} cfg;

static sh_cmd_spec make_spec(cfg *c, sh_opt *opts)
{
    sh_opt tmpl[] = {
        {"brokers", 'b', SH_OPT_STR, &c->brokers, "localhost:9092", "bootstrap servers", 0, 0, 0},
        {"threads", 't', SH_OPT_INT, &c->threads, "2", "threads", 0, 1, 64},
        {"rate", 0, SH_OPT_DOUBLE, &c->rate, "1.5", "rate", 0, 0, 0},
        {"verbose", 'v', SH_OPT_BOOL, &c->verbose, "false", "chatty", 0, 0, 0},
        {"cap", 0, SH_OPT_SIZE, &c->cap, "900K", "cap", 0, 0, 0},
        {"prop", 'X', SH_OPT_LIST, &c->props, NULL, "key=value", 0, 0, 0},
        {"password", 0, SH_OPT_STR, &c->password, NULL, "secret", SH_OPT_SECRET, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    memcpy(opts, tmpl, sizeof tmpl);
    sh_cmd_spec s = {.name = "test", .usage = "[options] FILE...", .summary = "test", .opts = opts};
    return s;
}

static int setup(void **state)
{
    (void)state;
    unsetenv("SOUNDHASH_THREADS");
    unsetenv("SOUNDHASH_BROKERS");
    unsetenv("SOUNDHASH_PROP");
    unsetenv("SOUNDHASH_CONFIG");
    unsetenv("SOUNDHASH_PASSWORD");
    unsetenv("SOUNDHASH_PASSWORD_FILE");
    unsetenv("SOUNDHASH_DSN");
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    cfg c = {0};
    sh_opt opts[8];
    sh_cmd_spec s = make_spec(&c, opts);
    char *argv[] = {"test", "a.wav", "b.wav", NULL};
    sh_err e;
    assert_int_equal(sh_opt_parse(&s, 3, argv, &e), SH_OK);
    assert_string_equal(c.brokers, "localhost:9092");
    assert_int_equal(c.threads, 2);
    assert_true(c.rate > 1.49 && c.rate < 1.51);
    assert_false(c.verbose);
    assert_int_equal(c.cap, 900 * 1024);
    assert_int_equal(s.args.n, 2);
    assert_string_equal(s.args.v[1], "b.wav");
    sh_opt_free(&s);
    assert_null(c.brokers);
}

static void test_precedence(void **state)
{
    (void)state;
    char path[] = "/tmp/sh-opt-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\nthreads = 4\nbrokers = file:1\nprop = a=1\nprop = b=2\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    setenv("SOUNDHASH_THREADS", "8", 1);
    cfg c = {0};
    sh_opt opts[8];
    sh_cmd_spec s = make_spec(&c, opts);
    char *argv[] = {"test", "--config", path, "-b", "flag:2", "-v", NULL};
    sh_err e;
    assert_int_equal(sh_opt_parse(&s, 6, argv, &e), SH_OK);
    assert_string_equal(c.brokers, "flag:2"); /* flag beats file */
    assert_int_equal(c.threads, 8);           /* env beats file */
    assert_true(c.verbose);
    assert_int_equal(c.props.n, 2); /* the file's list */
    assert_string_equal(c.props.v[1], "b=2");
    sh_opt_free(&s);

    /* A list on the command line replaces the file's. */
    cfg d = {0};
    s = make_spec(&d, opts);
    char *argv2[] = {"test", "--config", path, "-X", "c=3", NULL};
    assert_int_equal(sh_opt_parse(&s, 5, argv2, &e), SH_OK);
    assert_int_equal(d.props.n, 1);
    assert_string_equal(d.props.v[0], "c=3");
    sh_opt_free(&s);
    unlink(path);
}

static void test_errors(void **state)
{
    (void)state;
    sh_opt opts[8];
    sh_err e;
    struct {
        int argc;
        char *argv[4];
    } bad[] = {
        {2, {"test", "--nope"}},         {3, {"test", "--threads", "x"}},
        {3, {"test", "--threads", "0"}}, {2, {"test", "--threads"}},
        {3, {"test", "--cap", "9Q"}},    {3, {"test", "--password", "hunter2"}},
        {2, {"test", "--config=/nonexistent/file"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg c = {0};
        sh_cmd_spec s = make_spec(&c, opts);
        int rc = sh_opt_parse(&s, bad[i].argc, bad[i].argv, &e);
        assert_true(rc < 0);
        assert_true(strlen(e.msg) > 0);
        sh_opt_free(&s);
    }
}

static void test_secret_from_file_and_env(void **state)
{
    (void)state;
    char path[] = "/tmp/sh-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret\n", 7), 7);
    close(fd);
    sh_opt opts[8];
    sh_err e;
    cfg c = {0};
    sh_cmd_spec s = make_spec(&c, opts);
    char *argv[] = {"test", "--password-file", path, NULL};
    assert_int_equal(sh_opt_parse(&s, 3, argv, &e), SH_OK);
    assert_string_equal(c.password, "s3cret");
    sh_opt_free(&s);

    setenv("SOUNDHASH_PASSWORD", "fromenv", 1);
    cfg d = {0};
    s = make_spec(&d, opts);
    char *argv2[] = {"test", NULL};
    assert_int_equal(sh_opt_parse(&s, 1, argv2, &e), SH_OK);
    assert_string_equal(d.password, "fromenv");
    sh_opt_free(&s);
    unsetenv("SOUNDHASH_PASSWORD");
    unlink(path);
}

static void test_double_dash_and_sizes(void **state)
{
    (void)state;
    sh_opt opts[8];
    sh_err e;
    cfg c = {0};
    sh_cmd_spec s = make_spec(&c, opts);
    char *argv[] = {"test", "--cap=5M", "--", "--verbose", NULL};
    assert_int_equal(sh_opt_parse(&s, 4, argv, &e), SH_OK);
    assert_int_equal(c.cap, 5u << 20);
    assert_false(c.verbose);
    assert_int_equal(s.args.n, 1);
    assert_string_equal(s.args.v[0], "--verbose");
    sh_opt_free(&s);
    size_t z;
    assert_int_equal(sh_parse_size("1GiB", &z), 0);
    assert_int_equal(z, 1u << 30);
    assert_int_equal(sh_parse_size("-1", &z), SH_EINVAL);
    assert_int_equal(sh_parse_size("99999999999999999999", &z), SH_EINVAL);
    long l;
    assert_int_equal(sh_parse_long("12x", &l), SH_EINVAL);
}

static void test_err_table(void **state)
{
    (void)state;
    assert_string_equal(sh_err_name(SH_EINVAL), "SH_EINVAL");
    assert_string_equal(sh_strerror(SH_OK), "success");
    assert_string_equal(sh_strerror(-9999), "unknown error");
    sh_err e;
    sh_err_clear(&e);
    assert_string_equal(sh_err_text(&e), "success");
    assert_int_equal(sh_err_set(&e, SH_EIO, "read %s", "x.wav"), SH_EIO);
    assert_int_equal(sh_err_wrap(&e, SH_EIO, "track %d", 7), SH_EIO);
    assert_string_equal(e.msg, "track 7: read x.wav");
    assert_int_equal(sh_err_set(NULL, SH_EDB, "ignored"), SH_EDB);
}

/* A log line stays one line whatever its values hold (libpq messages span lines). */
static void test_log_one_line(void **state)
{
    (void)state;
    char path[] = "/tmp/sh-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    sh_log(SH_LOG_ERROR, "db_down", "msg=\"%s\"", "could not connect\n\tIs the server running?\x1b[2J");
    char q[64];
    sh_log(SH_LOG_WARN, "quoted", "name=%s", sh_log_q(q, sizeof q, "a \"b\"\n"));
    sh_log(SH_LOG_DEBUG, "hidden", "x=1"); /* below the default level */
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[4096] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    int lines = 0;
    for (ssize_t i = 0; i < n; i++) {
        lines += buf[i] == '\n';
        assert_false(buf[i] == '\t' || buf[i] == 0x1b);
    }
    assert_int_equal(lines, 2);
    assert_non_null(strstr(buf, "level=error event=db_down msg=\"could not connect  Is the server"));
    assert_non_null(strstr(buf, "name=\"a \\\"b\\\"?\""));
    assert_null(strstr(buf, "hidden"));
}

static void test_dsn_password(void **state)
{
    (void)state;
    const char *with[] = {
        "host=db password=hunter2",         "password = x dbname=s",
        "host=db\tpassword=x",              "postgresql://u:pw@db/s",
        "postgres://u:@db:5432/s",          "postgresql://db/s?user=u&password=x",
        "postgresql://u:p%40ss@db/s",
    };
    const char *without[] = {
        "host=db user=u passfile=/run/pgpass", "host=db dbname=password",
        "postgresql://u@db/s",                  "postgresql://db:5432/s?passfile=/p",
        "host=db mypassword=x",                 "postgresql://db/s?application_name=password",
        "",
    };
    for (size_t i = 0; i < sizeof with / sizeof with[0]; i++)
        assert_true(sh_dsn_has_password(with[i]));
    for (size_t i = 0; i < sizeof without / sizeof without[0]; i++)
        assert_false(sh_dsn_has_password(without[i]));
    assert_false(sh_dsn_has_password(NULL));
}

/* Every password form of a DSN is replaced by *** wherever a message quotes it; a DSN without a
 * password leaves the text alone. */
static void test_dsn_redact(void **state)
{
    (void)state;
    static const struct {
        const char *dsn, *text, *want;
    } cases[] = {
        {"host=db password=hunter2 user=u", "x host=db password=hunter2 user=u",
         "x host=db password=*** user=u"},
        {"host=db password = 'a b\\'c' user=u", "host=db password = 'a b\\'c' user=u",
         "host=db password = '***' user=u"},
        {"postgresql://u:pw9@[::1/db", "in URI: \"postgresql://u:pw9@[::1/db\"",
         "in URI: \"postgresql://u:***@[::1/db\""},
        {"postgresql://db/s?user=u&password=zz1&sslmode=x", "postgresql://db/s?user=u&password=zz1&sslmode=x",
         "postgresql://db/s?user=u&password=***&sslmode=x"},
        {"host=db user=u", "host=db user=u", "host=db user=u"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sh_dsn_redact(cases[i].dsn, cases[i].text, out, sizeof out);
        assert_string_equal(out, cases[i].want);
    }
    sh_dsn_redact(NULL, "plain", out, sizeof out);
    assert_string_equal(out, "plain");
    sh_dsn_redact("password=abcdef", "abcdef-abcdef", out, 5); /* truncated, still terminated */
    assert_string_equal(out, "***-");
}

static void test_kafka_secret_props(void **state)
{
    (void)state;
    assert_true(sh_kafka_prop_is_secret("sasl.password=x"));
    assert_true(sh_kafka_prop_is_secret("ssl.key.password"));
    assert_true(sh_kafka_prop_is_secret("ssl.keystore.password = y"));
    assert_true(sh_kafka_prop_is_secret("sasl.oauthbearer.client.secret=z"));
    assert_false(sh_kafka_prop_is_secret("sasl.username=u"));
    assert_false(sh_kafka_prop_is_secret("sasl.password.x=u"));
    assert_false(sh_kafka_prop_is_secret("ssl.ca.location=/ca.pem"));
}

/* A --dsn with a password on the command line is accepted with one warning naming the way to pass
 * it; from the environment (a place for secrets) it is not warned about. */
static void test_dsn_password_warns(void **state)
{
    (void)state;
    char *dsn = NULL;
    sh_opt opts[] = {
        {"dsn", 0, SH_OPT_STR, &dsn, NULL, "libpq DSN", SH_OPT_DSN, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec s = {.name = "test", .opts = opts};
    char path[] = "/tmp/sh-opt-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    sh_err e;
    char *argv[] = {"test", "--dsn", "host=db password=hunter2", NULL};
    int rc1 = sh_opt_parse(&s, 3, argv, &e);
    sh_opt_free(&s);
    off_t after_flag = lseek(fd, 0, SEEK_END);
    setenv("SOUNDHASH_DSN", "host=db password=hunter2", 1);
    char *argv2[] = {"test", NULL};
    int rc2 = sh_opt_parse(&s, 1, argv2, &e);
    unsetenv("SOUNDHASH_DSN");
    sh_opt_free(&s);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[2048] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_int_equal(rc1, SH_OK);
    assert_int_equal(rc2, SH_OK);
    assert_true(n > 0 && n == after_flag); /* the environment case added nothing */
    assert_non_null(strstr(buf, "level=warn event=secret_on_command_line option=--dsn"));
    assert_non_null(strstr(buf, "SOUNDHASH_DB_PASSWORD"));
    assert_null(strstr(buf, "hunter2")); /* the warning never repeats the secret */
}

/* Every option marked SH_OPT_DSN (not only one named "dsn", e.g. db start --follow) is warned
 * about and masked in --print-config; an unmarked string option is printed as given. */
static void test_dsn_option_flag(void **state)
{
    (void)state;
    char *follow = NULL, *other = NULL;
    sh_opt opts[] = {
        {"follow", 0, SH_OPT_STR, &follow, NULL, "primary DSN", SH_OPT_DSN, 0, 0},
        {"label", 0, SH_OPT_STR, &other, NULL, "free text", 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec s = {.name = "test", .opts = opts};
    char path[] = "/tmp/sh-opt-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    sh_err e;
    char *argv[] = {"test", "--follow", "host=a user=f password=hunter2", "--label",
                    "password=visible", NULL};
    int rc = sh_opt_parse(&s, 5, argv, &e);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[2048] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_int_equal(rc, SH_OK);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "event=secret_on_command_line option=--follow"));
    assert_null(strstr(buf, "option=--label"));
    assert_null(strstr(buf, "hunter2"));
    char *out = NULL;
    size_t outn = 0;
    FILE *mf = open_memstream(&out, &outn);
    assert_non_null(mf);
    sh_opt_print(&s, mf);
    fclose(mf);
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "follow = host=a user=f password="));
    assert_non_null(strstr(out, "label = password=visible"));
    free(out);
    sh_opt_free(&s);
}

static void test_meta_pairs(void **state)
{
    (void)state;
    sh_strlist in = {0}, out = {0};
    sh_err e;
    assert_int_equal(sh_strlist_push(&in, "genre=rock"), 0);
    assert_int_equal(sh_strlist_push(&in, "eq=a=b"), 0);
    assert_int_equal(sh_strlist_push(&in, " {\"title\":\"T\",\"year\":1999,\"live\":true}"), 0);
    assert_int_equal(sh_opt_meta_pairs(&in, &out, &e), 0);
    assert_int_equal(out.n, 10);
    assert_string_equal(out.v[0], "genre");
    assert_string_equal(out.v[1], "rock");
    assert_string_equal(out.v[2], "eq");
    assert_string_equal(out.v[3], "a=b");
    assert_string_equal(out.v[4], "title");
    assert_string_equal(out.v[7], "1999");
    assert_string_equal(out.v[9], "true");
    sh_strlist_clear(&in);
    sh_strlist_clear(&out);
    const char *bad[] = {"notkv", "=v", "{\"a\":", "[1,2]", "{\"a\":{\"b\":1}}", "{\"a\":null}",
                         "{\"\":\"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sh_strlist_push(&in, bad[i]), 0);
        assert_int_equal(sh_opt_meta_pairs(&in, &out, &e), SH_EUSAGE);
        assert_non_null(strstr(e.msg, "--meta"));
        sh_strlist_clear(&in);
        sh_strlist_clear(&out);
    }
}

/* --help shows the spec's examples; a missing --config file is a usage error (exit 2). */
static void test_usage_examples_and_exit_codes(void **state)
{
    (void)state;
    cfg c = {0};
    sh_opt opts[8];
    sh_cmd_spec s = make_spec(&c, opts);
    s.examples = "soundhash test a.wav\nsoundhash test -v b.wav";
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    sh_opt_usage(&s, f);
    fclose(f);
    assert_non_null(strstr(buf, "\nexamples:\n  soundhash test a.wav\n  soundhash test -v b.wav\n"));
    assert_non_null(strstr(buf, "--threads N"));
    free(buf);
    sh_err e;
    char *argv[] = {"test", "--config", "/nonexistent/sh.conf", NULL};
    int rc = sh_opt_parse(&s, 3, argv, &e);
    assert_int_equal(rc, SH_EUSAGE);
    assert_non_null(strstr(e.msg, "/nonexistent/sh.conf"));
    sh_opt_free(&s);
    char *argv2[] = {"test", "--password-file", "/nonexistent/pw", NULL};
    assert_int_equal(sh_opt_parse(&s, 3, argv2, &e), SH_EUSAGE);
    sh_opt_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_precedence, setup),
        cmocka_unit_test_setup(test_errors, setup),
        cmocka_unit_test_setup(test_secret_from_file_and_env, setup),
        cmocka_unit_test_setup(test_double_dash_and_sizes, setup),
        cmocka_unit_test_setup(test_err_table, setup),
        cmocka_unit_test_setup(test_log_one_line, setup),
        cmocka_unit_test_setup(test_dsn_password, setup),
        cmocka_unit_test_setup(test_dsn_password_warns, setup),
        cmocka_unit_test_setup(test_dsn_option_flag, setup),
        cmocka_unit_test(test_dsn_redact),
        cmocka_unit_test(test_kafka_secret_props),
        cmocka_unit_test_setup(test_meta_pairs, setup),
        cmocka_unit_test_setup(test_usage_examples_and_exit_codes, setup),
    };
    return cmocka_run_group_tests_name("opt", tests, NULL, NULL);
}
