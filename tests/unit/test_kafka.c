/* Unit tests for sh_kafka: -X passthrough, error translation, topic table, reachability. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sh_kafka.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void get_prop(rd_kafka_conf_t *conf, const char *key, char *buf, size_t len)
{
    size_t n = len;
    assert_int_equal(rd_kafka_conf_get(conf, key, buf, &n), RD_KAFKA_CONF_OK);
}

static void test_conf_bootstrap_and_passthrough(void **state)
{
    (void)state;
    sh_strlist props = {0};
    assert_int_equal(sh_strlist_push(&props, "linger.ms=42"), 0);
    assert_int_equal(sh_strlist_push(&props, "client.id=a=b"), 0); /* '=' inside the value */
    assert_int_equal(sh_strlist_push(&props, "linger.ms=7"), 0);   /* later wins */
    rd_kafka_conf_t *conf = NULL;
    sh_err e = {0};
    assert_int_equal(sh_kafka_conf_new("127.0.0.1:9092", &props, &conf, &e), 0);
    assert_non_null(conf);
    char buf[256];
    get_prop(conf, "bootstrap.servers", buf, sizeof buf);
    assert_string_equal(buf, "127.0.0.1:9092");
    get_prop(conf, "linger.ms", buf, sizeof buf);
    assert_string_equal(buf, "7");
    get_prop(conf, "client.id", buf, sizeof buf);
    assert_string_equal(buf, "a=b");
    rd_kafka_conf_destroy(conf);
    sh_strlist_clear(&props);
}

static void test_conf_props_override_bootstrap(void **state)
{
    (void)state;
    sh_strlist props = {0};
    assert_int_equal(sh_strlist_push(&props, "bootstrap.servers=h2:1"), 0);
    rd_kafka_conf_t *conf = NULL;
    assert_int_equal(sh_kafka_conf_new("h1:1", &props, &conf, NULL), 0);
    char buf[64];
    get_prop(conf, "bootstrap.servers", buf, sizeof buf);
    assert_string_equal(buf, "h2:1");
    rd_kafka_conf_destroy(conf);
    sh_strlist_clear(&props);
}

static void expect_conf_error(const char *kv, int code, const char *needle)
{
    sh_strlist props = {0};
    assert_int_equal(sh_strlist_push(&props, kv), 0);
    rd_kafka_conf_t *conf = (rd_kafka_conf_t *)&props; /* must be reset to NULL on error */
    sh_err e = {0};
    assert_int_equal(sh_kafka_conf_new("127.0.0.1:9092", &props, &conf, &e), code);
    assert_null(conf);
    assert_int_equal(e.code, code);
    assert_non_null(strstr(e.msg, needle));
    sh_strlist_clear(&props);
}

static void test_conf_errors(void **state)
{
    (void)state;
    expect_conf_error("linger.ms", SH_EUSAGE, "'linger.ms'");        /* no '=' */
    expect_conf_error("=5", SH_EUSAGE, "key=value");                /* empty key */
    expect_conf_error("no.such.property=1", SH_EINVAL, "no.such.property");
    expect_conf_error("acks=banana", SH_EINVAL, "acks");
    expect_conf_error("linger.ms=-5", SH_EINVAL, "linger.ms");
    char longkey[400];
    memset(longkey, 'k', sizeof longkey - 3);
    memcpy(longkey + sizeof longkey - 3, "=1", 3);
    expect_conf_error(longkey, SH_EUSAGE, "longer than");
}

/* Secret properties come from SOUNDHASH_KAFKA_<KEY> or its _FILE form; -X still overrides; an
 * unreadable file is a usage error naming the variable. */
static void test_conf_secret_env(void **state)
{
    (void)state;
    char path[] = "/tmp/sh-test-kafka-secretXXXXXX", buf[128];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "from-file\n", 10), 10);
    close(fd);
    setenv("SOUNDHASH_KAFKA_SASL_PASSWORD_FILE", path, 1);
    setenv("SOUNDHASH_KAFKA_SSL_KEY_PASSWORD", "from-env", 1);
    rd_kafka_conf_t *conf = NULL;
    sh_err e = {0};
    assert_int_equal(sh_kafka_conf_new("127.0.0.1:1", NULL, &conf, &e), 0);
    get_prop(conf, "sasl.password", buf, sizeof buf);
    assert_string_equal(buf, "from-file");
    get_prop(conf, "ssl.key.password", buf, sizeof buf);
    assert_string_equal(buf, "from-env");
    rd_kafka_conf_destroy(conf);

    sh_strlist props = {0};
    assert_int_equal(sh_strlist_push(&props, "sasl.password=from-flag"), 0);
    assert_int_equal(sh_kafka_conf_new("127.0.0.1:1", &props, &conf, &e), 0);
    get_prop(conf, "sasl.password", buf, sizeof buf);
    assert_string_equal(buf, "from-flag");
    rd_kafka_conf_destroy(conf);
    sh_strlist_clear(&props);

    unlink(path);
    assert_int_equal(sh_kafka_conf_new("127.0.0.1:1", NULL, &conf, &e), SH_EUSAGE);
    assert_null(conf);
    assert_non_null(strstr(e.msg, "SOUNDHASH_KAFKA_SASL_PASSWORD_FILE"));
    unsetenv("SOUNDHASH_KAFKA_SASL_PASSWORD_FILE");
    unsetenv("SOUNDHASH_KAFKA_SSL_KEY_PASSWORD");
}

static void test_errcode_table(void **state)
{
    (void)state;
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR_NO_ERROR), 0);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__TIMED_OUT), SH_ETIMEOUT);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), SH_ETIMEOUT);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__TRANSPORT), SH_ETRANSIENT);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN), SH_ETRANSIENT);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION), SH_ETRANSIENT);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__QUEUE_FULL), SH_ETRANSIENT);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), SH_ENOTFOUND);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION), SH_ENOTFOUND);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), SH_ETOOBIG);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__INVALID_ARG), SH_EINVAL);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS), SH_EEXIST);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__DESTROY), SH_ECANCELED);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION), SH_EUNSUPPORTED);
    /* Anything without a closer meaning is a generic Kafka error. */
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH), SH_EKAFKA);
    assert_int_equal(sh_kafka_errcode(RD_KAFKA_RESP_ERR__FATAL), SH_EKAFKA);
}

static void test_err_set_message(void **state)
{
    (void)state;
    sh_err e = {0};
    assert_int_equal(sh_kafka_err_set(&e, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, "track %s", "t1"),
                     SH_ETOOBIG);
    assert_int_equal(e.code, SH_ETOOBIG);
    assert_non_null(strstr(e.msg, "track t1: "));
    assert_non_null(strstr(e.msg, rd_kafka_err2str(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)));
    sh_err untouched = {0};
    assert_int_equal(sh_kafka_err_set(&untouched, RD_KAFKA_RESP_ERR_NO_ERROR, "x"), 0);
    assert_int_equal(untouched.code, 0);
    assert_string_equal(untouched.msg, "");
    assert_int_equal(sh_kafka_err_set(NULL, RD_KAFKA_RESP_ERR__TIMED_OUT, "x"), SH_ETIMEOUT);
}

static void test_topic_table(void **state)
{
    (void)state;
    size_t n = 0;
    const sh_kafka_topic_def *t = sh_kafka_topics(&n);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_true(t[i].partitions > 0);
        assert_int_equal(sh_kafka_topic_partitions(t[i].name), t[i].partitions);
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(t[i].name, t[j].name);
    }
    assert_int_equal(sh_kafka_topic_partitions(SH_TOPIC_INDEX_DELTAS),
                     SH_TOPIC_INDEX_DELTAS_PARTITIONS);
    assert_int_equal(sh_kafka_topic_partitions("soundhash.nope"), 0);
}

static rd_kafka_t *client_for(const char *bootstrap)
{
    rd_kafka_conf_t *conf = NULL;
    sh_strlist props = {0};
    assert_int_equal(sh_strlist_push(&props, "log_level=0"), 0); /* quiet: failures are expected */
    assert_int_equal(sh_kafka_conf_new(bootstrap, &props, &conf, NULL), 0);
    sh_strlist_clear(&props);
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    return rk;
}

static void test_wait_ready_unreachable(void **state)
{
    (void)state;
    rd_kafka_t *rk = client_for("127.0.0.1:1"); /* port 1: nothing listens, refused at once */
    sh_err e = {0};
    assert_int_equal(sh_kafka_wait_ready(rk, "127.0.0.1:1", 300, &e), SH_ETIMEOUT);
    assert_non_null(strstr(e.msg, "no Kafka broker reachable at 127.0.0.1:1 within 300 ms"));
    rd_kafka_destroy(rk);
}

/* An unreachable broker is one line: the connection errors librdkafka logs while a quiet handle
 * waits are demoted to debug (nothing at warn/error on stderr), and the wait's error quotes the
 * first of them. */
static void test_wait_ready_quiet(void **state)
{
    (void)state;
    char path[] = "/tmp/sh-kafka-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    rd_kafka_conf_t *conf = NULL;
    assert_int_equal(sh_kafka_conf_new("127.0.0.1:1", NULL, &conf, NULL), 0);
    sh_kafka_conf_quiet_until_ready(conf);
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    sh_err e = {0};
    int rc = sh_kafka_wait_ready(rk, "127.0.0.1:1", 1500, &e);
    rd_kafka_destroy(rk);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[8192] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_int_equal(rc, SH_ETIMEOUT);
    assert_non_null(strstr(e.msg, "Connect to ipv4#127.0.0.1:1 failed"));
    assert_true(n >= 0);
    assert_null(strstr(buf, "level=error"));
    assert_null(strstr(buf, "level=warn"));
}

/* A mock cluster in-process (its listeners are real loopback sockets): the client sees topics
 * with the partition counts they were created with, and an absent topic as 0. */
static void test_wait_ready_and_describe(void **state)
{
    (void)state;
    rd_kafka_t *host = client_for("");
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(host, 1);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, SH_TOPIC_AUDIO_DLQ, 3, 1), 0);
    rd_kafka_t *rk = client_for(rd_kafka_mock_cluster_bootstraps(mc));
    sh_err e = {0};
    assert_int_equal(sh_kafka_wait_ready(rk, NULL, 5000, &e), 0);
    int parts = -1;
    assert_int_equal(sh_kafka_describe_topic(rk, SH_TOPIC_AUDIO_DLQ, 5000, &parts, &e), 0);
    assert_int_equal(parts, 3);
    assert_int_equal(sh_kafka_describe_topic(rk, "soundhash.absent", 5000, &parts, &e), 0);
    assert_int_equal(parts, 0);
    rd_kafka_destroy(rk);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(host);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_bootstrap_and_passthrough),
        cmocka_unit_test(test_conf_props_override_bootstrap),
        cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_conf_secret_env),
        cmocka_unit_test(test_errcode_table),
        cmocka_unit_test(test_err_set_message),
        cmocka_unit_test(test_topic_table),
        cmocka_unit_test(test_wait_ready_unreachable),
        cmocka_unit_test(test_wait_ready_quiet),
        cmocka_unit_test(test_wait_ready_and_describe),
    };
    return cmocka_run_group_tests_name("sh_kafka", tests, NULL, NULL);
}
