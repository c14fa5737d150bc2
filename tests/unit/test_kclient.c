/* Unit tests for sh_kclient: the configuration order (defaults < -X < forced), opaque and
 * callbacks, a required bootstrap, and the errors of a refused property or client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_kclient.h"

#include <string.h>

static void prop(rd_kafka_t *rk, const char *key, char *buf, size_t cap)
{
    assert_int_equal(rd_kafka_conf_get(rd_kafka_conf(rk), key, buf, &cap), RD_KAFKA_CONF_OK);
}

static void test_order_defaults_props_forced(void **state)
{
    (void)state;
    sh_strlist props = {0};
    assert_int_equal(sh_strlist_push(&props, "linger.ms=42"), 0);     /* overrides a default */
    assert_int_equal(sh_strlist_push(&props, "client.id=from-x"), 0);  /* loses to forced */
    const sh_kclient_kv defaults[] = {{"linger.ms", "5"}, {"message.timeout.ms", "1234"}};
    const sh_kclient_kv forced[] = {{"client.id", "forced"}};
    int marker = 0;
    sh_kclient_config c = {.bootstrap = "127.0.0.1:1",
                           .defaults = defaults,
                           .n_defaults = 2,
                           .props = &props,
                           .forced = forced,
                           .n_forced = 1,
                           .opaque = &marker};
    rd_kafka_t *rk = NULL;
    sh_err e = {0};
    assert_int_equal(sh_kafka_producer_new(&c, &rk, &e), 0);
    char buf[128];
    prop(rk, "bootstrap.servers", buf, sizeof buf);
    assert_string_equal(buf, "127.0.0.1:1");
    prop(rk, "linger.ms", buf, sizeof buf);
    assert_string_equal(buf, "42");
    prop(rk, "message.timeout.ms", buf, sizeof buf);
    assert_string_equal(buf, "1234");
    prop(rk, "client.id", buf, sizeof buf);
    assert_string_equal(buf, "forced");
    assert_ptr_equal(rd_kafka_opaque(rk), &marker);
    rd_kafka_destroy(rk);
    sh_strlist_clear(&props);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    int *seen = opaque;
    *seen = m->err ? 2 : 1;
}

/* The delivery callback is wired: a message to an unreachable broker fails, and is reported. */
static void test_delivery_callback(void **state)
{
    (void)state;
    const sh_kclient_kv defaults[] = {{"message.timeout.ms", "200"}, {"log_level", "0"}};
    int seen = 0;
    sh_kclient_config c = {.bootstrap = "127.0.0.1:1",
                           .defaults = defaults,
                           .n_defaults = 2,
                           .opaque = &seen,
                           .dr_msg_cb = on_delivery};
    rd_kafka_t *rk = NULL;
    assert_int_equal(sh_kafka_producer_new(&c, &rk, NULL), 0);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_VALUE("x", 1),
                                       RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int i = 0; i < 300 && !seen; i++) /* bounded: message.timeout.ms fails it */
        rd_kafka_poll(rk, 50);
    assert_int_equal(seen, 2);
    rd_kafka_destroy(rk);
}

static void test_errors(void **state)
{
    (void)state;
    rd_kafka_t *rk = (rd_kafka_t *)&rk;
    sh_err e = {0};
    sh_kclient_config none = {.require_bootstrap = true};
    assert_int_equal(sh_kafka_consumer_new(&none, &rk, &e), SH_EUSAGE);
    assert_null(rk);
    assert_non_null(strstr(e.msg, "no Kafka brokers"));

    sh_strlist props = {0};
    assert_int_equal(sh_strlist_push(&props, "no.such.property=1"), 0);
    sh_kclient_config bad = {.bootstrap = "h:1", .props = &props};
    assert_int_equal(sh_kafka_consumer_new(&bad, &rk, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "no.such.property"));
    sh_strlist_clear(&props);

    /* Each property is valid, the combination is not: rd_kafka_new refuses it. */
    const sh_kclient_kv conflict[] = {{"enable.idempotence", "true"}, {"acks", "1"}};
    sh_kclient_config c = {.bootstrap = "h:1",
                           .defaults = conflict,
                           .n_defaults = 2,
                           .what = "test producer",
                           .new_error = SH_EINVAL};
    assert_int_equal(sh_kafka_producer_new(&c, &rk, &e), SH_EINVAL);
    assert_null(rk);
    assert_true(strncmp(e.msg, "test producer: ", 15) == 0);
    c.new_error = 0;
    assert_int_equal(sh_kafka_producer_new(&c, &rk, &e), SH_EKAFKA);
    assert_int_equal(sh_kafka_producer_new(NULL, &rk, &e), SH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_defaults_props_forced),
        cmocka_unit_test(test_delivery_callback),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
