/* sh_ingest.c — idempotent Kafka producer of framed audio events (see sh_ingest.h). */
#include "sh_ingest.h"

#include "sh_clock.h"
#include "sh_kafka.h"
#include "sh_kclient.h"

#include <librdkafka/rdkafka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sh_ingest {
    rd_kafka_t *rk;
    sh_registry *reg;
    bool owns_reg;
    sh_schema_limits lim;
    char *topic;    /* override, or NULL */
    char *producer; /* default producer name */
    int delivery_timeout_ms;
    size_t in_flight;
};

/* Per-event context handed to librdkafka as msg_opaque; freed in the delivery callback. */
typedef struct msg_ctx {
    sh_ingest *p;
    sh_ingest_cb cb;
    void *opaque;
    char event_id[SH_EVENT_ID_LEN + 1];
} msg_ctx;

void sh_ingest_config_default(sh_ingest_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->connect_timeout_ms = SH_KAFKA_DEFAULT_TIMEOUT_MS;
    cfg->delivery_timeout_ms = 30000;
}

/* Runs on the thread that called rd_kafka_poll/flush, i.e. the caller's (see the header). */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *conf_opaque)
{
    (void)rk;
    (void)conf_opaque;
    msg_ctx *ctx = m->_private;
    if (!ctx)
        return;
    char track[SH_TRACK_ID_MAX + 1];
    size_t klen = m->key_len < SH_TRACK_ID_MAX ? m->key_len : SH_TRACK_ID_MAX;
    if (m->key)
        memcpy(track, m->key, klen);
    track[m->key ? klen : 0] = '\0';
    int code = sh_kafka_errcode(m->err);
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        code = SH_ECANCELED;
    sh_ingest_result r = {
        .code = code,
        .message = m->err ? rd_kafka_err2str(m->err) : "",
        .track_id = track,
        .event_id = ctx->event_id,
        .topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "",
        .partition = m->err ? -1 : m->partition,
        .offset = m->err ? -1 : m->offset,
    };
    ctx->p->in_flight--;
    if (ctx->cb)
        ctx->cb(&r, ctx->opaque);
    free(ctx);
}

/* Producer defaults tuned for many small events (bench/bench_publish.c); -X overrides them. */
static int make_producer(const sh_ingest_config *cfg, sh_ingest *p, sh_err *e)
{
    char tmo[32];
    const int timeout_ms = cfg->delivery_timeout_ms > 0 ? cfg->delivery_timeout_ms : 30000;
    snprintf(tmo, sizeof tmo, "%d", timeout_ms);
    const sh_kclient_kv defaults[] = {
        {"enable.idempotence", "true"}, {"acks", "all"},       {"linger.ms", "5"},
        {"compression.codec", "lz4"},   {"client.id", "soundhash-ingest"},
        {"message.timeout.ms", tmo},
    };
    const sh_kclient_config kc = {
        .bootstrap = cfg->brokers,
        .defaults = defaults,
        .n_defaults = sizeof defaults / sizeof defaults[0],
        .props = cfg->props,
        .require_bootstrap = true,
        .quiet_until_ready = cfg->connect_timeout_ms > 0, /* sh_ingest_new waits: its failure is
                                                             the one line */
        .what = "cannot create Kafka producer",
        .new_error = SH_EINVAL,
        .dr_msg_cb = dr_cb,
    };
    return sh_kafka_producer_new(&kc, &p->rk, e);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int sh_ingest_new(const sh_ingest_config *cfg, sh_ingest **out, sh_err *e)
{
    *out = NULL;
    sh_ingest *p = calloc(1, sizeof *p);
    if (!p)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    p->delivery_timeout_ms = cfg->delivery_timeout_ms > 0 ? cfg->delivery_timeout_ms : 30000;
    if (cfg->limits)
        p->lim = *cfg->limits;
    else
        sh_schema_limits_default(&p->lim);
    p->topic = dup_or_null(cfg->topic);
    p->producer = strdup(cfg->producer ? cfg->producer : "soundhash-ingest/" SH_VERSION);
    int rc = (cfg->topic && !p->topic) || !p->producer ? sh_err_set(e, SH_ENOMEM, "out of memory")
                                                        : 0;
    if (!rc && cfg->registry) {
        p->reg = cfg->registry;
    } else if (!rc) {
        rc = sh_registry_new_from_env(&p->reg, e);
        p->owns_reg = rc == 0;
    }
    if (!rc)
        rc = make_producer(cfg, p, e);
    if (!rc && cfg->connect_timeout_ms > 0)
        rc = sh_kafka_wait_ready(p->rk, cfg->brokers, cfg->connect_timeout_ms, e);
    if (rc) {
        sh_ingest_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Shallow copy of `ev` with the defaults filled in; owned pointers stay ev's (encode only reads). */
static int complete_event(const sh_ingest *p, const sh_audio_event *ev, sh_audio_event *out,
                          sh_err *e)
{
    *out = *ev;
    if (!out->event_id[0]) {
        int rc = sh_event_id_new(out->event_id, e);
        if (rc)
            return rc;
    }
    if (!out->submitted_at_ms)
        out->submitted_at_ms = sh_clock_wall_ms();
    if (!out->producer[0])
        snprintf(out->producer, sizeof out->producer, "%s", p->producer);
    return 0;
}

static const char *topic_for(const sh_ingest *p, sh_event_op op)
{
    if (p->topic)
        return p->topic;
    return op == SH_OP_REINDEX ? SH_TOPIC_AUDIO_REINDEX : SH_TOPIC_AUDIO_EVENTS;
}

/* rd_kafka_producev, waiting (and serving callbacks) while the local queue is full. On success
 * librdkafka owns `buf` (F_FREE). */
static rd_kafka_resp_err_t produce(sh_ingest *p, const char *topic, const char *key, uint8_t *buf,
                                   size_t len, msg_ctx *ctx)
{
    const double deadline = sh_clock_mono_ms() + p->delivery_timeout_ms;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_OPAQUE(ctx), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || sh_clock_mono_ms() >= deadline)
            return err;
        rd_kafka_poll(p->rk, 10); /* backpressure: let deliveries drain the queue */
    }
}

int sh_ingest_publish(sh_ingest *p, const sh_audio_event *ev, sh_ingest_cb cb, void *opaque,
                      char event_id_out[SH_EVENT_ID_LEN + 1], sh_err *e)
{
    sh_audio_event full;
    int rc = complete_event(p, ev, &full, e);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!rc)
        rc = sh_event_encode(&full, p->reg, &p->lim, &buf, &len, e);
    if (rc)
        return sh_err_wrap(e, rc, "event for track '%.256s'", ev->track_id);
    msg_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        free(buf);
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    ctx->p = p;
    ctx->cb = cb;
    ctx->opaque = opaque;
    memcpy(ctx->event_id, full.event_id, sizeof ctx->event_id);
    const char *topic = topic_for(p, full.op);
    rd_kafka_resp_err_t err = produce(p, topic, full.track_id, buf, len, ctx);
    if (err) {
        free(buf);
        free(ctx);
        return sh_kafka_err_set(e, err, "enqueueing event for track '%.256s' to %s", ev->track_id,
                                topic);
    }
    p->in_flight++;
    if (event_id_out)
        memcpy(event_id_out, full.event_id, SH_EVENT_ID_LEN + 1);
    return 0;
}

/* Result slot of a synchronous publish. Heap-allocated so that a report arriving after the caller
 * gave up (timeout) lands in memory that still exists: the callback then frees it. */
typedef struct sync_result {
    bool done, abandoned;
    int code;
    char message[256];
    int32_t partition;
    int64_t offset;
} sync_result;

static void sync_cb(const sh_ingest_result *r, void *opaque)
{
    sync_result *s = opaque;
    if (s->abandoned) {
        free(s);
        return;
    }
    s->done = true;
    s->code = r->code;
    snprintf(s->message, sizeof s->message, "%s", r->message);
    s->partition = r->partition;
    s->offset = r->offset;
}

int sh_ingest_publish_sync(sh_ingest *p, const sh_audio_event *ev, int timeout_ms,
                           int32_t *partition, int64_t *offset, sh_err *e)
{
    sync_result *s = calloc(1, sizeof *s);
    if (!s)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    char id[SH_EVENT_ID_LEN + 1];
    int rc = sh_ingest_publish(p, ev, sync_cb, s, id, e);
    if (rc) {
        free(s); /* the callback is never called for a failed publish */
        return rc;
    }
    const double deadline =
        sh_clock_mono_ms() + (timeout_ms < 0 ? p->delivery_timeout_ms : timeout_ms);
    while (!s->done && sh_clock_mono_ms() < deadline)
        rd_kafka_poll(p->rk, 20);
    if (!s->done) {
        s->abandoned = true;
        return sh_err_set(e, SH_ETIMEOUT, "event %s for track '%.256s': no delivery report in time",
                          id, ev->track_id);
    }
    if (partition)
        *partition = s->partition;
    if (offset)
        *offset = s->offset;
    rc = s->code ? sh_err_set(e, s->code, "event %s for track '%.256s': %s", id, ev->track_id,
                              s->message)
                 : 0;
    free(s);
    return rc;
}

int sh_ingest_poll(sh_ingest *p, int timeout_ms)
{
    return rd_kafka_poll(p->rk, timeout_ms);
}

int sh_ingest_flush(sh_ingest *p, int timeout_ms, sh_err *e)
{
    /* rd_kafka_flush serves delivery callbacks while it waits (we have no background queue). */
    rd_kafka_flush(p->rk, timeout_ms);
    if (p->in_flight)
        return sh_err_set(e, SH_ETIMEOUT, "%zu events still in flight after %d ms", p->in_flight,
                          timeout_ms);
    return 0;
}

size_t sh_ingest_in_flight(const sh_ingest *p)
{
    return p->in_flight;
}

void sh_ingest_free(sh_ingest *p)
{
    if (!p)
        return;
    if (p->rk) {
        if (p->in_flight) {
            /* Purged messages still get a delivery report (code __PURGE_*): serving them frees
             * every msg_ctx and tells the caller. */
            rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            const double deadline = sh_clock_mono_ms() + 5000; /* bounded: free must not hang */
            while (p->in_flight && sh_clock_mono_ms() < deadline)
                rd_kafka_poll(p->rk, 50);
        }
        rd_kafka_destroy(p->rk);
    }
    if (p->owns_reg)
        sh_registry_free(p->reg);
    free(p->topic);
    free(p->producer);
    free(p);
}
