/* sh_kclient.c — building a Kafka producer or consumer (see sh_kclient.h). */
#include "sh_kclient.h"

#include "sh_kafka.h"

static int set_all(rd_kafka_conf_t *conf, const sh_kclient_kv *kv, size_t n, sh_err *e)
{
    int rc = 0;
    for (size_t i = 0; !rc && kv && i < n; i++)
        rc = sh_kafka_conf_set(conf, kv[i][0], kv[i][1], e);
    return rc;
}

/* The configuration of `c`, in the documented order. */
static int build_conf(const sh_kclient_config *c, rd_kafka_conf_t **out, sh_err *e)
{
    rd_kafka_conf_t *conf = NULL;
    int rc = sh_kafka_conf_new(c->bootstrap, NULL, &conf, e);
    if (rc)
        return rc;
    rc = set_all(conf, c->defaults, c->n_defaults, e);
    for (size_t i = 0; !rc && c->props && i < c->props->n; i++)
        rc = sh_kafka_conf_set_kv(conf, c->props->v[i], e);
    if (!rc)
        rc = set_all(conf, c->forced, c->n_forced, e);
    if (!rc && c->require_bootstrap) {
        char val[512];
        size_t vlen = sizeof val;
        if (rd_kafka_conf_get(conf, "bootstrap.servers", val, &vlen) != RD_KAFKA_CONF_OK ||
            !val[0])
            rc = sh_err_set(e, SH_EUSAGE,
                            "no Kafka brokers given (--brokers or -X bootstrap.servers)");
    }
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    if (c->quiet_until_ready)
        sh_kafka_conf_quiet_until_ready(conf);
    if (c->opaque)
        rd_kafka_conf_set_opaque(conf, c->opaque);
    if (c->dr_msg_cb)
        rd_kafka_conf_set_dr_msg_cb(conf, c->dr_msg_cb);
    if (c->rebalance_cb)
        rd_kafka_conf_set_rebalance_cb(conf, c->rebalance_cb);
    if (c->stats_cb)
        rd_kafka_conf_set_stats_cb(conf, c->stats_cb);
    if (c->error_cb)
        rd_kafka_conf_set_error_cb(conf, c->error_cb);
    *out = conf;
    return 0;
}

static int client_new(rd_kafka_type_t type, const sh_kclient_config *c, rd_kafka_t **out,
                      sh_err *e)
{
    *out = NULL;
    if (!c)
        return sh_err_set(e, SH_EINVAL, "kafka client: NULL config");
    rd_kafka_conf_t *conf = NULL;
    int rc = build_conf(c, &conf, e);
    if (rc)
        return rc;
    char errstr[512];
    *out = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!*out) { /* on success rd_kafka_new took the configuration over */
        rd_kafka_conf_destroy(conf);
        return sh_err_set(e, c->new_error ? c->new_error : SH_EKAFKA, "%s: %s",
                          c->what ? c->what : "kafka client", errstr);
    }
    return 0;
}

int sh_kafka_producer_new(const sh_kclient_config *c, rd_kafka_t **out, sh_err *e)
{
    return client_new(RD_KAFKA_PRODUCER, c, out, e);
}

int sh_kafka_consumer_new(const sh_kclient_config *c, rd_kafka_t **out, sh_err *e)
{
    return client_new(RD_KAFKA_CONSUMER, c, out, e);
}
