/* queue.c — job lifetime (FIFO, done/abandon bookkeeping) and retry backoff. */
#include "worker.h"

#include "sh_log.h"

#include <math.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

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

double wk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool wk_transient(int code)
{
    return code == SH_ETRANSIENT || code == SH_ETIMEOUT || code == SH_EKAFKA;
}

/* Uniform in [0, 1) from the kernel: no shared PRNG state between threads. */
static double jitter_unit(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uint32_t)(wk_now() * 1e6);
    return (double)r / 4294967296.0;
}

int wk_backoff(wk *w, int attempt)
{
    double base_ms = 100.0;
    double cap_ms = (double)w->cfg.retry_max_ms;
    double d = base_ms * pow(2.0, attempt < 20 ? attempt : 20);
    if (d > cap_ms)
        d = cap_ms;
    d *= 0.5 + jitter_unit(); /* ±50 %: workers that failed together do not retry together */
    double end = wk_now() + d / 1000.0;
    while (wk_now() < end) {
        if (atomic_load(&w->abandon))
            return SH_ECANCELED;
        double left = end - wk_now();
        double slice = left < 0.05 ? left : 0.05;
        if (slice > 0) {
            struct timespec ts = {0, (long)(slice * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    return atomic_load(&w->abandon) ? SH_ECANCELED : 0;
}
