/* writer.c — the database writer: drains fingerprinted jobs in batches. Upserts go through
 * sh_primary_write_tracks (pipelined: one round trip, one transaction per track, version-checked),
 * deletes through sh_primary_delete_track. A transient failure keeps the affected jobs, flags the
 * database down (the main thread pauses consumption) and retries with backoff; a permanent one
 * sends the job to the dead-letter topic. */
#include "worker.h"

#include "sh_clock.h"
#include "sh_log.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BATCH 256

typedef struct writer {
    wk *w;
    sh_primary *db;
    int attempt; /* consecutive transient failures */
} writer;

/* Up to `cap` jobs; blocks while the queue is empty. Returns 0 when the worker is exiting and the
 * queue is empty. */
static size_t take_batch(wk *w, wk_job **out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&w->lock);
    while (!w->writes.head && !atomic_load(&w->threads_exit))
        pthread_cond_wait(&w->write_cv, &w->lock);
    while (n < cap && w->writes.head)
        out[n++] = wk_fifo_pop(&w->writes);
    pthread_mutex_unlock(&w->lock);
    return n;
}

static int connect_db(writer *wr, sh_err *e)
{
    if (wr->db)
        return 0;
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = wr->w->cfg.dsn;
    pc.application_name = "soundhash-worker";
    int rc = sh_primary_new(&pc, &wr->db, e);
    /* A database that refuses us permanently (auth, missing db) may be fixed by an operator:
     * retrying beats dropping events. */
    return rc == SH_EDB ? SH_ETRANSIENT : rc;
}

static void fill_write(const wk_job *j, sh_track_write *tw)
{
    memset(tw, 0, sizeof *tw);
    tw->external_id = j->ev.track_id;
    tw->tenant = j->ev.tenant;
    tw->metadata_json = j->meta_json;
    tw->sha256_hex = j->sha256_hex[0] ? j->sha256_hex : NULL;
    tw->source_uri = j->source_uri;
    tw->duration_s = j->duration_s;
    tw->fp_version = j->fp_version > 0 ? j->fp_version : SH_FP_VERSION;
    tw->version = j->ev.submitted_at_ms;
    /* A reindex keeps the version of the audio it re-fingerprints (sh_primary.h, issue #4). */
    tw->is_reindex = j->ev.op == SH_OP_REINDEX;
    tw->base_version = j->ev.base_version;
    tw->n_hashes = j->n_hashes;
    tw->fp_blob = j->blob;
    tw->fp_blob_len = j->blob_len;
}

/* Resolves one job from its result code; returns 1 when it must be retried. */
static int settle(writer *wr, wk_job *j, int rc, const sh_err *e)
{
    if (rc == 0 || rc == SH_ESTALE) {
        SH_DEBUG("track_written", "track=%s op=%s stale=%d hashes=%u", j->ev.track_id,
                 sh_event_op_name(j->ev.op), rc == SH_ESTALE, j->n_hashes);
        wk_job_done(wr->w, j, rc == SH_ESTALE ? "stale" : "ok");
        return 0;
    }
    if (rc == SH_ETRANSIENT || rc == SH_ENOMEM)
        return 1;
    SH_WARN("track_write_rejected", "track=%s code=%s msg=\"%.300s\"", j->ev.track_id,
            sh_err_name(rc), sh_err_text(e));
    wk_count_failure(wr->w, rc);
    if (wk_dlq_send(wr->w, j, rc, sh_err_text(e)) == 0)
        wk_job_done(wr->w, j, "dlq");
    else
        wk_job_abandon(wr->w, j);
    return 0;
}

/* Writes the upserts among jobs[0..n); compacts the ones to retry to the front; returns their
 * count. */
static size_t write_upserts(writer *wr, wk_job **jobs, size_t n, sh_err *e)
{
    sh_track_write tws[MAX_BATCH];
    int results[MAX_BATCH];
    for (size_t i = 0; i < n; i++)
        fill_write(jobs[i], &tws[i]);
    double t0 = sh_clock_mono_s();
    int rc = n == 1 ? sh_primary_write_track(wr->db, &tws[0], NULL, e)
                    : sh_primary_write_tracks(wr->db, tws, n, results, NULL, e);
    if (n == 1)
        results[0] = rc;
    else if (rc && rc != SH_ETRANSIENT)
        for (size_t i = 0; i < n; i++)
            results[i] = rc;
    sh_series_observe(sh_metric_series(wr->w->m.db_latency, (const char *[]){"upsert", NULL}),
                      sh_clock_mono_s() - t0);
    size_t keep = 0;
    for (size_t i = 0; i < n; i++) {
        if (settle(wr, jobs[i], results[i], e))
            jobs[keep++] = jobs[i];
    }
    return keep;
}

static size_t write_deletes(writer *wr, wk_job **jobs, size_t n, sh_err *e)
{
    size_t keep = 0;
    for (size_t i = 0; i < n; i++) {
        double t0 = sh_clock_mono_s();
        int rc = sh_primary_delete_track(wr->db, jobs[i]->ev.track_id, jobs[i]->ev.tenant,
                                         jobs[i]->ev.submitted_at_ms, NULL, e);
        sh_series_observe(
            sh_metric_series(wr->w->m.db_latency, (const char *[]){"delete", NULL}),
            sh_clock_mono_s() - t0);
        if (settle(wr, jobs[i], rc, e))
            jobs[keep++] = jobs[i];
    }
    return keep;
}

/* One pass over a batch: returns how many jobs are left for a retry (compacted to the front). */
static size_t write_pass(writer *wr, wk_job **jobs, size_t n, sh_err *e)
{
    if (connect_db(wr, e))
        return n; /* nothing written: the caller backs off and reconnects */
    wk_job *up[MAX_BATCH], *del[MAX_BATCH];
    size_t nu = 0, nd = 0;
    for (size_t i = 0; i < n; i++) {
        if (jobs[i]->ev.op == SH_OP_DELETE)
            del[nd++] = jobs[i];
        else
            up[nu++] = jobs[i];
    }
    size_t ku = nu ? write_upserts(wr, up, nu, e) : 0;
    size_t kd = nd ? write_deletes(wr, del, nd, e) : 0;
    memcpy(jobs, up, ku * sizeof *jobs);
    memcpy(jobs + ku, del, kd * sizeof *jobs);
    return ku + kd;
}

static void write_batch(writer *wr, wk_job **jobs, size_t n)
{
    for (;;) {
        sh_err e = {0};
        n = write_pass(wr, jobs, n, &e);
        if (n == 0) {
            if (wr->attempt)
                SH_INFO("db_recovered", "after_attempts=%d", wr->attempt);
            wr->attempt = 0;
            atomic_store(&wr->w->db_down, false);
            return;
        }
        atomic_store(&wr->w->db_down, true);
        wk_count_retry(wr->w, SH_ETRANSIENT);
        SH_WARN("db_write_retry", "pending=%zu attempt=%d msg=\"%.300s\"", n, wr->attempt + 1,
                sh_err_text(&e));
        if (wk_backoff(wr->w, wr->attempt++)) {
            for (size_t i = 0; i < n; i++)
                wk_job_abandon(wr->w, jobs[i]);
            return;
        }
    }
}

void *wk_writer_thread(void *arg)
{
    writer wr = {.w = arg};
    size_t cap = (size_t)wr.w->cfg.batch;
    if (cap < 1 || cap > MAX_BATCH)
        cap = MAX_BATCH;
    wk_job *jobs[MAX_BATCH];
    for (size_t n; (n = take_batch(wr.w, jobs, cap));)
        write_batch(&wr, jobs, n);
    sh_primary_free(wr.db);
    return NULL;
}
