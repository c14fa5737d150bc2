/* queue.c — job lifetime (FIFO, done/abandon bookkeeping) and retry backoff. */
#include "worker.h"

#include "sh_clock.h"
#include "sh_log.h"

#include <stdlib.h>

void wk_fifo_push(wk_fifo *q, wk_job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
}

wk_job *wk_fifo_pop(wk_fifo *q)
{
    wk_job *j = q->head;
    if (!j)
        return NULL;
    q->head = j->next;
    if (!q->head)
        q->tail = NULL;
    q->n--;
    j->next = NULL;
    return j;
}

void wk_job_free(wk_job *j)
{
    if (!j)
        return;
    if (j->msg)
        rd_kafka_message_destroy(j->msg);
    sh_event_clear(&j->ev);
    free(j->blob);
    free(j->meta_json);
    free(j->source_uri);
    free(j);
}

static void job_release(wk *w, wk_job *j, bool done, const char *result)
{
    const char *topic = rd_kafka_topic_name(j->msg->rkt);
    pthread_mutex_lock(&w->lock);
    if (done) {
        /* ENOTFOUND: the partition was revoked meanwhile; the new owner redoes the (idempotent)
         * event, so nothing is lost. */
        int rc = sh_offsets_done(w->offsets, topic, j->msg->partition, j->msg->offset);
        if (rc && rc != SH_ENOTFOUND)
            SH_WARN("offset_done_failed", "topic=%s partition=%d offset=%lld code=%s", topic,
                    (int)j->msg->partition, (long long)j->msg->offset, sh_err_name(rc));
    }
    w->inflight--;
    sh_series_set(w->m.inflight_s, (double)w->inflight);
    pthread_mutex_unlock(&w->lock);
    if (done)
        wk_count_event(w, j, result);
    wk_job_free(j);
}

void wk_job_done(wk *w, wk_job *j, const char *result) { job_release(w, j, true, result); }

void wk_job_abandon(wk *w, wk_job *j)
{
    SH_WARN("job_abandoned", "topic=%s partition=%d offset=%lld",
            rd_kafka_topic_name(j->msg->rkt), (int)j->msg->partition, (long long)j->msg->offset);
    job_release(w, j, false, NULL);
}

bool wk_transient(int code)
{
    return code == SH_ETRANSIENT || code == SH_ETIMEOUT || code == SH_EKAFKA;
}

static bool abandoned(void *arg)
{
    return atomic_load(&((wk *)arg)->abandon);
}

int wk_backoff(wk *w, int attempt)
{
    return sh_clock_sleep_ms(sh_backoff_ms(100.0, (double)w->cfg.retry_max_ms, attempt), abandoned,
                             w);
}
