/* lag.c — consumer lag from the cluster's own offsets, for this worker and for the whole group.
 *
 * Why not librdkafka's statistics (which this used to read): their consumer_lag takes the high
 * watermark from the last fetch response, and a paused partition (database down, back-pressure)
 * is not fetched, so its lag froze while its backlog grew — a stalled worker showed lag 0, and its
 * partitions were invisible on every other worker. The statistics also keep revoked partitions,
 * so their series lingered on the worker that had lost them.
 *
 * Instead, every LAG_EVERY_S a thread asks the cluster for every partition of both topics (end,
 * start and committed offsets: sh_kafka_group_lag, which `soundhash status` uses too) the number
 * of events not yet done. It is published as
 *   soundhash_worker_consumer_lag{topic,partition}  partitions assigned to this worker only; the
 *                                                   series is removed when the partition is revoked
 *   soundhash_worker_consumer_lag_sum               their sum
 *   soundhash_worker_group_lag{topic,partition}     every partition, whoever owns it (or nobody):
 *                                                   each worker reports the whole group, so a
 *                                                   stalled or dead owner's partitions show here
 * The assigned set is kept here under `lock`, which on_revoke also takes, so a round that was
 * computed before a revoke never republishes a revoked partition. */
#include "worker.h"

#include "sh_kafka.h"
#include "sh_log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define LAG_EVERY_S 2
#define LAG_META_EVERY 15 /* rounds: partition counts are refreshed every 30 s */
#define LAG_TIMEOUT_MS 2000
#define L(...) ((const char *[]){__VA_ARGS__, NULL})

static const char *const TOPICS[WK_LAG_TOPICS] = {SH_TOPIC_AUDIO_EVENTS, SH_TOPIC_AUDIO_REINDEX};

static int topic_index(const char *topic)
{
    for (int i = 0; i < WK_LAG_TOPICS; i++)
        if (strcmp(topic, TOPICS[i]) == 0)
            return i;
    return -1;
}

static sh_series *series(sh_metric *f, int t, int p)
{
    char pn[16];
    snprintf(pn, sizeof pn, "%d", p);
    return sh_metric_series(f, L(TOPICS[t], pn));
}

/* Partition counts of both topics, capped at WK_LAG_MAX_PARTITIONS (a larger topic is reported
 * in part, with one warning). */
static int partition_counts(wk *w, int n[WK_LAG_TOPICS])
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(w->consumer, 1, NULL, &md, LAG_TIMEOUT_MS))
        return SH_ETRANSIENT;
    for (int t = 0; t < WK_LAG_TOPICS; t++)
        n[t] = 0;
    for (int i = 0; i < md->topic_cnt; i++) {
        int t = topic_index(md->topics[i].topic);
        if (t < 0 || md->topics[i].err)
            continue;
        n[t] = md->topics[i].partition_cnt;
        if (n[t] > WK_LAG_MAX_PARTITIONS) {
            if (!w->lag.warned_cap)
                SH_WARN("lag_partitions_capped", "topic=%s partitions=%d reported=%d",
                        TOPICS[t], n[t], WK_LAG_MAX_PARTITIONS);
            w->lag.warned_cap = true;
            n[t] = WK_LAG_MAX_PARTITIONS;
        }
    }
    rd_kafka_metadata_destroy(md);
    return 0;
}

static rd_kafka_topic_partition_list_t *all_partitions(const int n[WK_LAG_TOPICS], int64_t offset)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(WK_LAG_TOPICS * WK_LAG_MAX_PARTITIONS);
    for (int t = 0; t < WK_LAG_TOPICS; t++)
        for (int p = 0; p < n[t]; p++)
            rd_kafka_topic_partition_list_add(l, TOPICS[t], p)->offset = offset;
    return l;
}

/* One query round: lag[t][p], or -1 where the cluster gave no answer. Returns 0 or an error. */
static int query(wk *w, const int n[WK_LAG_TOPICS], int64_t lag[][WK_LAG_MAX_PARTITIONS])
{
    rd_kafka_topic_partition_list_t *l = all_partitions(n, RD_KAFKA_OFFSET_INVALID);
    sh_err e = {0};
    int rc = sh_kafka_group_lag(w->consumer, l, LAG_TIMEOUT_MS, &e);
    for (int i = 0; rc == 0 && i < l->cnt; i++)
        lag[topic_index(l->elems[i].topic)][l->elems[i].partition] = l->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* Sum of the known lags of the assigned partitions; under the lock. */
static double assigned_sum(const wk *w)
{
    double sum = 0;
    for (int t = 0; t < WK_LAG_TOPICS; t++)
        for (int p = 0; p < WK_LAG_MAX_PARTITIONS; p++)
            if ((w->lag.assigned[t] & (UINT64_C(1) << p)) && w->lag.value[t][p] > 0)
                sum += (double)w->lag.value[t][p];
    return sum;
}

/* Under the lock: an assignment change cannot interleave with publishing. */
static void publish(wk *w, const int n[WK_LAG_TOPICS], int64_t lag[][WK_LAG_MAX_PARTITIONS])
{
    pthread_mutex_lock(&w->lag.lock);
    for (int t = 0; t < WK_LAG_TOPICS; t++) {
        for (int p = 0; p < n[t]; p++) {
            if (lag[t][p] < 0)
                continue; /* no answer for it this round: keep the last value */
            w->lag.value[t][p] = lag[t][p];
            sh_series_set(series(w->m.group_lag, t, p), (double)lag[t][p]);
            if (w->lag.assigned[t] & (UINT64_C(1) << p))
                sh_series_set(series(w->m.lag, t, p), (double)lag[t][p]);
        }
    }
    sh_series_set(w->m.lag_total_s, assigned_sum(w));
    pthread_mutex_unlock(&w->lag.lock);
}

/* Partition counts change rarely (an operator adds partitions) and a metadata request lists every
 * topic of the cluster: they are refreshed every LAG_META_EVERY rounds, or after a failure. Only
 * this thread touches `n` and `rounds`. */
static void round_once(wk *w, int n[WK_LAG_TOPICS], unsigned *rounds)
{
    int64_t lag[WK_LAG_TOPICS][WK_LAG_MAX_PARTITIONS];
    int rc = 0;
    if ((*rounds)++ % LAG_META_EVERY == 0)
        rc = partition_counts(w, n);
    if (rc == 0)
        rc = query(w, n, lag);
    if (rc) {
        /* The cluster is away: kafka_up and /health say so; the gauges keep their last values. */
        SH_DEBUG("lag_query_failed", "code=%s", sh_err_name(rc));
        *rounds = 0;
        return;
    }
    publish(w, n, lag);
}

static void *lag_thread(void *arg)
{
    wk *w = arg;
    int n[WK_LAG_TOPICS] = {0};
    unsigned rounds = 0;
    pthread_mutex_lock(&w->lag.lock);
    while (!w->lag.stop) {
        pthread_mutex_unlock(&w->lag.lock);
        round_once(w, n, &rounds);
        pthread_mutex_lock(&w->lag.lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += LAG_EVERY_S;
        while (!w->lag.stop &&
               pthread_cond_timedwait(&w->lag.cv, &w->lag.lock, &until) == 0)
            ; /* woken without stop: keep waiting out the interval */
    }
    pthread_mutex_unlock(&w->lag.lock);
    return NULL;
}

int wk_lag_init(wk *w)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the interval ignores wall-clock steps */
    int rc = pthread_cond_init(&w->lag.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc == 0 && pthread_mutex_init(&w->lag.lock, NULL)) {
        pthread_cond_destroy(&w->lag.cv);
        rc = 1;
    }
    w->lag.inited = rc == 0;
    return rc ? SH_ENOMEM : 0;
}

int wk_lag_start(wk *w, sh_err *e)
{
    if (pthread_create(&w->lag.thread, NULL, lag_thread, w))
        return sh_err_set(e, SH_EINTERNAL, "cannot start the lag thread");
    w->lag.started = true;
    return 0;
}

void wk_lag_stop(wk *w)
{
    if (!w->lag.started)
        return;
    pthread_mutex_lock(&w->lag.lock);
    w->lag.stop = true;
    pthread_cond_signal(&w->lag.cv);
    pthread_mutex_unlock(&w->lag.lock);
    pthread_join(w->lag.thread, NULL);
    w->lag.started = false;
}

void wk_lag_free(wk *w)
{
    if (!w->lag.inited)
        return;
    pthread_mutex_destroy(&w->lag.lock);
    pthread_cond_destroy(&w->lag.cv);
    w->lag.inited = false;
}

void wk_lag_assign(wk *w, const rd_kafka_topic_partition_list_t *parts, bool assigned)
{
    pthread_mutex_lock(&w->lag.lock);
    for (int i = 0; i < parts->cnt; i++) {
        int t = topic_index(parts->elems[i].topic), p = parts->elems[i].partition;
        if (t < 0 || p < 0 || p >= WK_LAG_MAX_PARTITIONS)
            continue;
        if (assigned) {
            w->lag.assigned[t] |= UINT64_C(1) << p; /* its series appears with the next round */
        } else {
            w->lag.assigned[t] &= ~(UINT64_C(1) << p);
            sh_series_unset(series(w->m.lag, t, p));
        }
    }
    sh_series_set(w->m.lag_total_s, assigned_sum(w));
    pthread_mutex_unlock(&w->lag.lock);
}
