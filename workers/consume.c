/* consume.c — the main thread: group membership, fetching with live events first, back-pressure
 * and database-down pausing, offset commits of the finished prefix, and graceful shutdown. */
#include "worker.h"

#include "sh_clock.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMMIT_EVERY_S 0.2
#define PING_EVERY_S 1.0
#define MAX_COMMITS 256
#define WAIT_SLICE_MS 250
#define OFFSETS_RETRY_MS 10000.0

/* ---- offsets ------------------------------------------------------------------------------- */

/* Adds the commit points c[0..n) to the unrecorded set (the later offset of a partition wins).
 * The set holds at most MAX_COMMITS partitions; what does not fit waits for a later commit. */
static void unrec_merge(wk *w, const sh_offset_commit *c, size_t n)
{
    if (!w->offsets_unrec) {
        w->offsets_unrec = calloc(MAX_COMMITS, sizeof *w->offsets_unrec);
        if (!w->offsets_unrec)
            return; /* best effort (see record_offsets) */
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strnlen(c[i].topic, SH_PRIMARY_TOPIC_MAX); /* both Kafka's 249 */
        size_t j = 0;
        while (j < w->n_offsets_unrec &&
               (w->offsets_unrec[j].partition != c[i].partition ||
                strncmp(w->offsets_unrec[j].topic, c[i].topic, len + 1) != 0))
            j++;
        if (j == w->n_offsets_unrec) {
            if (j == MAX_COMMITS)
                continue;
            w->n_offsets_unrec++;
            memcpy(w->offsets_unrec[j].topic, c[i].topic, len);
            w->offsets_unrec[j].topic[len] = '\0';
            w->offsets_unrec[j].partition = c[i].partition;
            w->offsets_unrec[j].next_offset = c[i].offset;
        } else if (c[i].offset > w->offsets_unrec[j].next_offset) {
            w->offsets_unrec[j].next_offset = c[i].offset;
        }
    }
}

/* Records the commit points in the primary (sh_primary_offsets_save): every event below them is
 * committed there, so after a takeover the group rewinds to what the promoted follower replayed
 * (`soundhash worker rewind`). Best effort: a row that lags behind Kafka only means a longer
 * replay, never a lost upload. After a failure the next try waits OFFSETS_RETRY_MS (a database
 * that does not answer holds each try for the connect timeout, and this runs on the consumer
 * loop) unless `force` (a revoke, the end of a drain); what is not recorded is kept and recorded
 * with the next try. */
static void record_offsets(wk *w, const sh_offset_commit *c, size_t n, bool force)
{
    if (!w->ctl)
        return;
    unrec_merge(w, c, n);
    if (!w->n_offsets_unrec || (!force && sh_clock_mono_ms() < w->offsets_retry_ms))
        return;
    sh_err e = {0};
    int rc = sh_primary_offsets_save(w->ctl, w->cfg.group, w->offsets_unrec, w->n_offsets_unrec,
                                     &e);
    if (rc && !w->offsets_warned) /* once per failure streak: e.g. a role without the grant */
        SH_WARN("offsets_record_failed", "msg=\"%.300s\"", sh_err_text(&e));
    w->offsets_warned = rc != 0;
    w->offsets_retry_ms = rc ? sh_clock_mono_ms() + OFFSETS_RETRY_MS : 0;
    if (rc == 0)
        w->n_offsets_unrec = 0;
}

static void commit_now(wk *w, bool force)
{
    if (atomic_load(&w->untracked))
        return; /* a finished later offset would commit past the untracked event */
    sh_offset_commit c[MAX_COMMITS];
    pthread_mutex_lock(&w->lock);
    size_t n = sh_offsets_collect(w->offsets, c, MAX_COMMITS);
    pthread_mutex_unlock(&w->lock);
    if (!n) {
        record_offsets(w, NULL, 0, force); /* what an earlier try left unrecorded */
        return;
    }
    record_offsets(w, c, n, force);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, c[i].topic, c[i].partition)->offset = c[i].offset;
    rd_kafka_resp_err_t err = rd_kafka_commit(w->consumer, l, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        SH_WARN("commit_failed", "err=\"%s\"", rd_kafka_err2str(err));
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &l->elems[i];
        if (!err && !p->err)
            sh_offsets_committed(w->offsets, p->topic, p->partition, p->offset);
    }
    pthread_mutex_unlock(&w->lock);
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- rebalancing --------------------------------------------------------------------------- */

static bool is_reindex(const char *topic) { return strcmp(topic, SH_TOPIC_AUDIO_REINDEX) == 0; }

/* Reindex partitions feed their own queue, so the main loop can serve live ones first. */
static void route_queues(wk *w, const rd_kafka_topic_partition_list_t *parts, bool on)
{
    for (int i = 0; i < parts->cnt; i++) {
        if (!is_reindex(parts->elems[i].topic))
            continue;
        rd_kafka_queue_t *q =
            rd_kafka_queue_get_partition(w->consumer, parts->elems[i].topic, parts->elems[i].partition);
        if (q) {
            rd_kafka_queue_forward(q, on ? w->reindex_q : NULL);
            rd_kafka_queue_destroy(q);
        }
    }
}

static bool cooperative(const wk *w)
{
    const char *p = rd_kafka_rebalance_protocol(w->consumer);
    return p && strcmp(p, "COOPERATIVE") == 0;
}

static void on_assign(wk *w, rd_kafka_topic_partition_list_t *parts, bool paused)
{
    if (cooperative(w))
        rd_kafka_error_destroy(rd_kafka_incremental_assign(w->consumer, parts));
    else
        rd_kafka_assign(w->consumer, parts);
    route_queues(w, parts, true);
    /* Explicitly either way: librdkafka keeps a partition's pause flag across unassign and assign
     * (librdkafka #1849), so a partition paused when it was revoked would come back paused after a
     * pause that ended in between, and never be fetched again. */
    if (paused)
        rd_kafka_pause_partitions(w->consumer, parts);
    else
        rd_kafka_resume_partitions(w->consumer, parts);
    atomic_fetch_add(&w->assigned, parts->cnt);
    wk_lag_assign(w, parts, true);
    SH_INFO("partitions_assigned", "count=%d", parts->cnt);
}

static void on_revoke(wk *w, rd_kafka_topic_partition_list_t *parts)
{
    /* Commit what is finished while we still own it; unfinished events go to the next owner. */
    commit_now(w, true);
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < parts->cnt; i++)
        sh_offsets_reset(w->offsets, parts->elems[i].topic, parts->elems[i].partition);
    pthread_mutex_unlock(&w->lock);
    route_queues(w, parts, false);
    wk_lag_assign(w, parts, false);
    if (cooperative(w)) {
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(w->consumer, parts));
        atomic_fetch_sub(&w->assigned, parts->cnt);
    } else {
        rd_kafka_assign(w->consumer, NULL);
        atomic_store(&w->assigned, 0);
    }
    SH_INFO("partitions_revoked", "count=%d", parts->cnt);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)rk;
    wk *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(w, parts, sh_series_value(w->m.paused_s) > 0);
    else
        on_revoke(w, parts);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    wk *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        atomic_store(&w->kafka_up, false);
        sh_series_set(w->m.kafka_up_s, 0);
    }
    SH_WARN("kafka_error", "err=%s reason=\"%.300s\"", rd_kafka_err2name(err), reason);
}

/* A mistyped or dead --brokers would otherwise leave a silent worker retrying forever: at start, a
 * bounded wait and a clear error; once running, outages are librdkafka's to ride out. The wait is
 * sliced so that SIGTERM/SIGINT (handled from here on) ends it at once: SH_ECANCELED. */
static int wait_broker(wk *w, sh_err *e)
{
    if (w->cfg.connect_timeout_s <= 0)
        return 0;
    SH_INFO("kafka_waiting", "brokers=%s timeout_s=%ld", w->cfg.brokers, w->cfg.connect_timeout_s);
    double deadline = sh_clock_mono_s() + (double)w->cfg.connect_timeout_s;
    for (;;) {
        if (sh_stop_requested(&w->stop))
            return sh_err_set(e, SH_ECANCELED, "stopped by a signal while waiting for a Kafka "
                                               "broker at %s", w->cfg.brokers);
        int rc = sh_kafka_wait_ready(w->consumer, w->cfg.brokers, WAIT_SLICE_MS, e);
        if (rc != SH_ETIMEOUT)
            return rc;
        if (sh_clock_mono_s() >= deadline)
            return sh_err_set(e, SH_ETIMEOUT, "no Kafka broker reachable at %s within %ld s",
                              w->cfg.brokers, w->cfg.connect_timeout_s);
    }
}

/* Sleeps until monotonic time `t` in short slices, returning early when a signal asks us to
 * stop. */
static void nap_until(wk *w, double t)
{
    sh_clock_sleep_ms((t - sh_clock_mono_s()) * 1e3, sh_stop_requested_fn, &w->stop);
}

/* One connection attempt, bounded by what is left of the wait (libpq's minimum is 2 s). */
static int try_db(const wk *w, double deadline, sh_err *e)
{
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = w->cfg.dsn;
    double left = deadline - sh_clock_mono_s();
    pc.connect_timeout_s = left > 5 ? 5 : 2;
    pc.application_name = "soundhash-worker-ctl";
    sh_primary *db = NULL;
    int rc = sh_primary_new(&pc, &db, e);
    sh_primary_free(db);
    return rc;
}

/* libpq's messages span lines ("...failed: Connection refused\n\tIs the server running...");
 * the final error is one line. */
static int db_wait_failed(const wk *w, int rc, const sh_err *pe, sh_err *e)
{
    char why[sizeof pe->msg];
    snprintf(why, sizeof why, "%s", sh_err_text(pe));
    for (char *p = why; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    if (rc == SH_EDB)
        return sh_err_set(e, SH_EDB,
                          "the primary database refused the connection for %ld s (%s): check "
                          "the database name, role and password (SOUNDHASH_DB_PASSWORD or "
                          "SOUNDHASH_DB_PASSWORD_FILE) of --dsn",
                          w->cfg.db_wait_s, why);
    return sh_err_set(e, rc,
                      "the primary database did not answer within %ld s (%s): is PostgreSQL "
                      "running at --dsn? --db-wait sets how long to wait",
                      w->cfg.db_wait_s, why);
}

int wk_wait_db(wk *w, sh_err *e)
{
    double start = sh_clock_mono_s(), deadline = start + (double)w->cfg.db_wait_s;
    int last = 0;
    while (!sh_stop_requested(&w->stop)) {
        sh_err pe = {0};
        double t0 = sh_clock_mono_s();
        int rc = try_db(w, deadline, &pe);
        sh_series_set(w->m.db_up_s, rc ? 0 : 1);
        atomic_store(&w->db_down, rc != 0);
        if (rc == 0) {
            if (last)
                SH_INFO("db_ready", "waited_s=%.1f", sh_clock_mono_s() - start);
            return 0;
        }
        if (rc != SH_ETRANSIENT && rc != SH_EDB)
            return sh_err_set(e, rc, "%s", sh_err_text(&pe));
        if (rc != last) {
            char q[400];
            SH_WARN(rc == SH_EDB ? "db_refused" : "db_waiting", "wait_s=%ld msg=%s",
                    w->cfg.db_wait_s, sh_log_q(q, sizeof q, sh_err_text(&pe)));
        }
        last = rc;
        if (sh_clock_mono_s() >= deadline)
            return db_wait_failed(w, rc, &pe, e);
        double next = t0 + 1.0; /* at most one attempt per second */
        nap_until(w, next < deadline ? next : deadline);
    }
    return sh_err_set(e, SH_ECANCELED, "stopped by a signal while waiting for the database");
}

int wk_consumer_new(wk *w, sh_err *e)
{
    const sh_kclient_kv defaults[] = {
        {"group.id", w->cfg.group},
        {"enable.auto.commit", "false"}, /* we commit the finished prefix ourselves */
        {"auto.offset.reset", "earliest"},
        {"statistics.interval.ms", "1000"},
        {"session.timeout.ms", "10000"},
        /* Prefetch is bounded too: inline clips can be ~1 MiB each, the default allows 64 MiB. */
        {"queued.max.messages.kbytes", "8192"},
        {"client.id", w->cfg.worker_id},
    };
    const sh_kclient_config kc = {.bootstrap = w->cfg.brokers,
                                  .defaults = defaults,
                                  .n_defaults = sizeof defaults / sizeof defaults[0],
                                  .props = &w->cfg.kafka_props,
                                  .what = "consumer",
                                  /* one line for a broker that is not there: wait_broker's */
                                  .quiet_until_ready = true,
                                  .opaque = w,
                                  .rebalance_cb = on_rebalance,
                                  .stats_cb = wk_stats_cb,
                                  .error_cb = on_error};
    int rc = sh_kafka_consumer_new(&kc, &w->consumer, e);
    if (rc)
        return rc;
    rc = wait_broker(w, e);
    if (rc)
        return rc;
    rd_kafka_poll_set_consumer(w->consumer);
    w->live_q = rd_kafka_queue_get_consumer(w->consumer);
    w->reindex_q = rd_kafka_queue_new(w->consumer);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, SH_TOPIC_AUDIO_EVENTS, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, SH_TOPIC_AUDIO_REINDEX, RD_KAFKA_PARTITION_UA);
    SH_INFO("group_joining", "group=%s", w->cfg.group);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(w->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    atomic_store(&w->joined, !err);
    return err ? sh_kafka_err_set(e, err, "subscribe") : 0;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* Hands a message to the threads. Returns SH_ENOMEM when the event could not be tracked: the
 * caller must then stop without committing anything more, because a later offset of the same
 * partition finishing would otherwise commit past this one and lose it. */
static int dispatch(wk *w, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            SH_WARN("consume_error", "err=\"%s\"", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return 0;
    }
    wk_job *j = calloc(1, sizeof *j);
    if (!j) {
        SH_ERROR("out_of_memory", "what=job topic=%s partition=%d offset=%lld",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
        rd_kafka_message_destroy(m);
        return SH_ENOMEM;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    j->msg = m;
    j->live = !is_reindex(topic);
    j->t0 = sh_clock_mono_s();
    pthread_mutex_lock(&w->lock);
    int rc = sh_offsets_add(w->offsets, topic, m->partition, m->offset);
    if (rc == SH_EINVAL) {
        /* A rewind (offset reset, re-seek): older in-flight entries no longer matter. */
        sh_offsets_reset(w->offsets, topic, m->partition);
        rc = sh_offsets_add(w->offsets, topic, m->partition, m->offset);
    }
    if (rc) {
        pthread_mutex_unlock(&w->lock);
        SH_ERROR("offset_tracking_failed", "topic=%s partition=%d offset=%lld code=%s", topic,
                 (int)m->partition, (long long)m->offset, sh_err_name(rc));
        wk_job_free(j);
        return SH_ENOMEM;
    }
    w->inflight++;
    sh_series_set(w->m.inflight_s, (double)w->inflight);
    wk_fifo_push(j->live ? &w->live_jobs : &w->reindex_jobs, j);
    pthread_cond_signal(&w->job_cv);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* Live first; reindex only when no live job is waiting for a thread. */
static rd_kafka_message_t *next_message(wk *w, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 0);
    if (m)
        return m;
    pthread_mutex_lock(&w->lock);
    bool live_waiting = w->live_jobs.n > 0;
    pthread_mutex_unlock(&w->lock);
    if (!live_waiting && (m = rd_kafka_consume_queue(w->reindex_q, 0)))
        return m;
    return rd_kafka_consumer_poll(w->consumer, timeout_ms);
}

/* ---- pausing ------------------------------------------------------------------------------- */

static void set_paused(wk *w, bool pause, const char *why)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(w->consumer, &a) == 0 && a) {
        if (pause)
            rd_kafka_pause_partitions(w->consumer, a);
        else
            rd_kafka_resume_partitions(w->consumer, a);
        rd_kafka_topic_partition_list_destroy(a);
    }
    sh_series_set(w->m.paused_s, pause ? 1 : 0);
    SH_INFO(pause ? "consumption_paused" : "consumption_resumed", "why=%s", why);
}

typedef struct loop_state {
    bool paused;
    double last_commit, last_ping;
} loop_state;

static void ping_db(wk *w, loop_state *s)
{
    s->last_ping = sh_clock_mono_s();
    sh_err e = {0};
    int rc = SH_ETRANSIENT;
    if (!w->ctl) {
        sh_primary_config pc;
        sh_primary_config_default(&pc);
        pc.dsn = w->cfg.dsn;
        pc.connect_timeout_s = 2;
        pc.application_name = "soundhash-worker-ctl";
        rc = sh_primary_new(&pc, &w->ctl, &e);
    }
    if (w->ctl)
        rc = sh_primary_ping(w->ctl, &e);
    bool was_down = atomic_load(&w->db_down);
    if (rc && !was_down)
        SH_WARN("db_down", "msg=\"%.300s\"", sh_err_text(&e));
    /* Only the ping may declare the database back; the writer clears it on its own success. */
    if (rc)
        atomic_store(&w->db_down, true);
    else if (was_down)
        atomic_store(&w->db_down, false);
    sh_series_set(w->m.db_up_s, rc ? 0 : 1);
}

static void housekeeping(wk *w, loop_state *s)
{
    double now = sh_clock_mono_s();
    if (now - s->last_ping >= PING_EVERY_S)
        ping_db(w, s);
    pthread_mutex_lock(&w->lock);
    size_t inflight = w->inflight;
    pthread_mutex_unlock(&w->lock);
    bool db_down = atomic_load(&w->db_down);
    bool full = inflight >= (size_t)w->cfg.max_inflight;
    if (!s->paused && (db_down || full || atomic_load(&w->stop_fetch))) {
        set_paused(w, true, db_down ? "db_down" : full ? "inflight_full" : "shutdown");
        s->paused = true;
    } else if (s->paused && !db_down && inflight <= (size_t)w->cfg.max_inflight / 2 &&
               !atomic_load(&w->stop_fetch)) {
        set_paused(w, false, "ok");
        s->paused = false;
    }
    if (now - s->last_commit >= COMMIT_EVERY_S) {
        commit_now(w, false);
        s->last_commit = now;
    }
}

/* After SIGTERM: keep serving the group and committing until in-flight work is finished, or the
 * grace period ends (then retries are abandoned and those events are left for redelivery). */
static void drain(wk *w, loop_state *s)
{
    double deadline = sh_clock_mono_s() + (double)w->cfg.shutdown_grace_s;
    pthread_mutex_lock(&w->lock); /* threads change it concurrently */
    size_t at_start = w->inflight;
    pthread_mutex_unlock(&w->lock);
    SH_INFO("shutdown_draining", "inflight=%zu", at_start);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        size_t inflight = w->inflight;
        pthread_mutex_unlock(&w->lock);
        if (inflight == 0)
            break;
        if (sh_clock_mono_s() > deadline && !atomic_load(&w->abandon)) {
            SH_WARN("shutdown_grace_expired", "inflight=%zu", inflight);
            atomic_store(&w->abandon, true);
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 50);
        if (m)
            rd_kafka_message_destroy(m); /* fetched before the pause: not ours to start now */
        housekeeping(w, s);
    }
    commit_now(w, true);
}

int wk_run(wk *w)
{
    loop_state s = {0};
    ping_db(w, &s);
    int rc = 0;
    while (!sh_stop_requested(&w->stop) && !rc) {
        housekeeping(w, &s);
        /* While paused, a message fetched just before the pause is handled rather than lose its
         * place. */
        rd_kafka_message_t *m =
            s.paused ? rd_kafka_consumer_poll(w->consumer, 50) : next_message(w, 50);
        if (m)
            rc = dispatch(w, m);
    }
    if (rc) {
        /* An untracked event: stop at once, commit nothing more; every unfinished event (this
         * one included) is redelivered to the next owner of its partition. */
        SH_ERROR("worker_abort", "reason=\"cannot track an event (out of memory)\"");
        atomic_store(&w->untracked, true);
        atomic_store(&w->stop_fetch, true);
        atomic_store(&w->abandon, true);
        sh_primary_free(w->ctl);
        w->ctl = NULL;
        return rc;
    }
    atomic_store(&w->stop_fetch, true);
    housekeeping(w, &s);
    drain(w, &s);
    sh_primary_free(w->ctl);
    w->ctl = NULL;
    return 0;
}

void wk_consumer_close(wk *w)
{
    if (!w->consumer)
        return;
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(w->consumer); /* leaves the group */
    if (err)
        SH_WARN("consumer_close", "err=\"%s\"", rd_kafka_err2str(err));
    if (w->reindex_q)
        rd_kafka_queue_destroy(w->reindex_q);
    if (w->live_q)
        rd_kafka_queue_destroy(w->live_q);
    rd_kafka_destroy(w->consumer);
    w->consumer = NULL;
}
