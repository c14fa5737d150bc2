/* dlq.c — dead letters: an idempotent producer to the DLQ topic and a thread serving its
 * delivery reports. A job's offset may move on only after its dead letter is acknowledged
 * (acks=all), so wk_dlq_send() blocks its caller until the delivery report arrives. */
#include "worker.h"

#include "sh_clock.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"

#include <stdlib.h>
#include <string.h>

/* One outstanding delivery; lives on the sender's stack until its report arrived. */
typedef struct dr_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    rd_kafka_resp_err_t err;
} dr_wait;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    dr_wait *d = m->_private;
    pthread_mutex_lock(&d->mu);
    d->err = m->err;
    d->done = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void *dr_thread(void *arg)
{
    wk *w = arg;
    while (!atomic_load(&w->dr_stop))
        rd_kafka_poll(w->producer, 100);
    return NULL;
}

int wk_dlq_new(wk *w, sh_err *e)
{
    static const sh_kclient_kv defaults[] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"message.timeout.ms", "30000"},
        {"linger.ms", "5"},
    };
    const sh_kclient_config kc = {.bootstrap = w->cfg.brokers,
                                  .defaults = defaults, /* -X may override them */
                                  .n_defaults = sizeof defaults / sizeof defaults[0],
                                  .props = &w->cfg.kafka_props,
                                  .what = "dlq producer",
                                  .dr_msg_cb = on_delivery};
    int rc = sh_kafka_producer_new(&kc, &w->producer, e);
    if (rc)
        return rc;
    if (pthread_create(&w->dr_thread, NULL, dr_thread, w)) {
        rd_kafka_destroy(w->producer);
        w->producer = NULL;
        return sh_err_set(e, SH_EINTERNAL, "dlq: cannot start delivery thread");
    }
    return 0;
}

void wk_dlq_free(wk *w)
{
    if (!w->producer)
        return;
    rd_kafka_flush(w->producer, 10000);
    atomic_store(&w->dr_stop, true);
    pthread_join(w->dr_thread, NULL);
    rd_kafka_destroy(w->producer);
    w->producer = NULL;
}

static void fill_record(const wk *w, const wk_job *j, int code, const char *reason,
                        sh_dlq_record *r)
{
    const rd_kafka_message_t *m = j->msg;
    memset(r, 0, sizeof *r);
    r->original = (uint8_t *)m->payload; /* borrowed: never freed through the record */
    r->original_len = m->len <= w->lim.dlq_original_max ? m->len : 0;
    int32_t id = -1;
    if (sh_frame_schema_id(m->payload, m->len, &id, NULL))
        id = -1;
    r->schema_id = id;
    if (j->decoded) {
        snprintf(r->track_id, sizeof r->track_id, "%s", j->ev.track_id);
        snprintf(r->event_id, sizeof r->event_id, "%s", j->ev.event_id);
    }
    r->error_code = code;
    snprintf(r->error_name, sizeof r->error_name, "%s", sh_err_name(code));
    r->reason = (char *)reason;
    snprintf(r->worker, sizeof r->worker, "%s", w->cfg.worker_id);
    r->attempts = j->attempts > 0 ? j->attempts : 1;
    r->failed_at_ms = sh_clock_wall_ms();
    snprintf(r->source_topic, sizeof r->source_topic, "%s", rd_kafka_topic_name(m->rkt));
    r->source_partition = m->partition;
    r->source_offset = m->offset;
}

/* Encodes the record; if the reason is the problem (e.g. control bytes from a library message),
 * retries with a neutral reason so the event still reaches the DLQ. */
static int encode_record(wk *w, sh_dlq_record *r, uint8_t **buf, size_t *len, sh_err *e)
{
    char reason[SH_REASON_MAX + 1];
    snprintf(reason, sizeof reason, "%s", r->reason ? r->reason : "");
    for (char *p = reason; *p; p++) {
        if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t')
            *p = ' ';
    }
    r->reason = reason;
    int rc = sh_dlq_encode(r, w->reg, &w->lim, buf, len, e);
    if (rc) {
        r->reason = (char *)sh_strerror(r->error_code);
        r->original_len = 0;
        rc = sh_dlq_encode(r, w->reg, &w->lim, buf, len, e);
    }
    r->reason = NULL;
    return rc;
}

/* Produces once and waits for the report. Returns 0 or a translated Kafka error. */
static int produce_once(wk *w, const char *key, const uint8_t *buf, size_t len, sh_err *e)
{
    dr_wait d = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    rd_kafka_resp_err_t err = rd_kafka_producev(
        w->producer, RD_KAFKA_V_TOPIC(SH_TOPIC_AUDIO_DLQ),
        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)buf, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
    if (err)
        return sh_kafka_err_set(e, err, "dlq produce");
    /* librdkafka reports every message within message.timeout.ms, success or not: waiting
     * unconditionally is bounded, and `d` must outlive the report. */
    pthread_mutex_lock(&d.mu);
    while (!d.done)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    return d.err ? sh_kafka_err_set(e, d.err, "dlq delivery") : 0;
}

int wk_dlq_send(wk *w, wk_job *j, int code, const char *reason)
{
    sh_dlq_record r;
    fill_record(w, j, code, reason, &r);
    uint8_t *buf = NULL;
    size_t len = 0;
    sh_err e = {0};
    if (encode_record(w, &r, &buf, &len, &e)) {
        SH_ERROR("dlq_encode_failed", "code=%s msg=%s", sh_err_name(code), SH_Q(sh_err_text(&e)));
        return SH_ECANCELED; /* leave the offset: a fixed worker will handle it */
    }
    const char *key = j->decoded ? j->ev.track_id : NULL;
    int rc;
    for (int attempt = 0;; attempt++) {
        rc = produce_once(w, key, buf, len, &e);
        if (rc == 0 || wk_backoff(w, attempt))
            break;
        wk_count_retry(w, rc);
        SH_WARN("dlq_retry", "attempt=%d msg=%s", attempt + 1, SH_Q(sh_err_text(&e)));
    }
    free(buf);
    /* A warning: a dead letter is an upload that will not be in the index until someone acts. */
    if (rc == 0)
        SH_WARN("dead_lettered", "topic=%s partition=%d offset=%lld track_id=%s code=%s reason=%s",
                rd_kafka_topic_name(j->msg->rkt), (int)j->msg->partition,
                (long long)j->msg->offset, SH_Q(j->decoded ? j->ev.track_id : ""),
                sh_err_name(code), SH_Q(reason));
    return rc ? SH_ECANCELED : 0;
}
