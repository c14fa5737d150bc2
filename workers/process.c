/* process.c — fingerprinting threads: event bytes → decoded event → audio → hashes → blob, then
 * the writer queue. Each thread owns one sh_fp per fingerprint version it was asked for (the
 * event's fp_version, e.g. a reindex to the speed-invariant version 4, else SH_FP_VERSION; FFTW
 * plans and buffers are reused across tracks)
 * and decodes in bounded chunks (sh_extract), so a thread's memory does not depend on the file
 * length except for the hash list itself (bounded by sh_fp_max_hashes_per_s × the duration cap). */
#include "worker.h"

#include "sh_clock.h"
#include "sh_extract.h"
#include "sh_fpblob.h"
#include "sh_log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Versions 0..FP_VERSIONS-1 can have an extractor (sh_fp_config_for_version says which exist). */
#define FP_VERSIONS 8

typedef struct fp_ctx {
    wk *w;
    sh_fp *fp[FP_VERSIONS]; /* by fp_version; fp[SH_FP_VERSION] made at start, others lazily */
    sh_primary *db; /* opened lazily: staleness checks, reindex events that re-read stored audio */
} fp_ctx;

/* Next job, live ones first; NULL when the worker is shutting down and nothing is left. */
static wk_job *next_job(wk *w)
{
    pthread_mutex_lock(&w->lock);
    wk_job *j = NULL;
    for (;;) {
        j = wk_fifo_pop(&w->live_jobs);
        if (!j)
            j = wk_fifo_pop(&w->reindex_jobs);
        if (j || atomic_load(&w->threads_exit))
            break;
        pthread_cond_wait(&w->job_cv, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return j;
}

static void to_writer(wk *w, wk_job *j)
{
    pthread_mutex_lock(&w->lock);
    wk_fifo_push(&w->writes, j);
    pthread_cond_signal(&w->write_cv);
    pthread_mutex_unlock(&w->lock);
}

static int meta_to_json(wk_job *j, sh_err *e)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < j->ev.meta.n; i++)
        json_object_set_new(o, j->ev.meta.kv[i].key, json_string(j->ev.meta.kv[i].value));
    j->meta_json = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return j->meta_json ? 0 : sh_err_set(e, SH_EFORMAT, "metadata is not valid UTF-8 JSON");
}

/* The fingerprint version a job asks for: the event's, or this build's. */
static int job_fp_version(const wk_job *j)
{
    return j->ev.fp_version > 0 ? (int)j->ev.fp_version : SH_FP_VERSION;
}

/* This thread's extractor for version v, made on first use. SH_EUNSUPPORTED for a version this
 * build does not make. */
static int extractor(fp_ctx *c, int v, sh_fp **out, sh_err *e)
{
    sh_fp_config fc;
    if (v < 0 || v >= FP_VERSIONS || sh_fp_config_for_version(v, &fc, NULL) != 0)
        return sh_err_set(e, SH_EUNSUPPORTED, "fp_version %d requested, this worker makes 2 to 4",
                          v);
    if (!c->fp[v]) {
        int rc = sh_fp_new(&fc, &c->fp[v], e);
        if (rc)
            return rc;
    }
    *out = c->fp[v];
    return 0;
}

/* Streams the whole reader through the extractor of the job's version and encodes the blob into
 * the job. */
static int fingerprint(fp_ctx *c, wk_job *j, sh_audio *a, sh_err *e)
{
    sh_fp *fp = NULL;
    int rc = extractor(c, job_fp_version(j), &fp, e);
    if (!rc)
        rc = sh_extract_audio(a, fp, e);
    if (rc)
        return rc;
    size_t n = 0;
    const sh_hash *h = sh_fp_hashes(fp, &n);
    rc = sh_fpblob_encode(h, n, 0, &j->blob, &j->blob_len, e);
    if (rc)
        return rc;
    j->n_hashes = (uint32_t)n;
    j->fp_version = job_fp_version(j);
    j->duration_s = sh_audio_decoded_seconds(a);
    return 0;
}

static void ensure_db(fp_ctx *c)
{
    if (c->db)
        return;
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = c->w->cfg.dsn;
    pc.application_name = "soundhash-worker";
    sh_err e = {0};
    if (sh_primary_new(&pc, &c->db, &e))
        SH_WARN("db_connect_failed", "msg=\"%s\"", sh_err_text(&e));
}

/* Re-delivered events (restarts, rebalances, replays) are common and would be written as stale
 * no-ops anyway: a cheap lookup skips fetching and fingerprinting them. Any lookup failure just
 * means "not known to be stale" — the writer's version check stays the authority. */
static bool known_stale(fp_ctx *c, const wk_job *j)
{
    bool reindex = j->ev.op == SH_OP_REINDEX;
    if (reindex && j->ev.base_version <= 0) {
        /* A v1/v2 reindex event does not say which audio it was made from: writing it could
         * undo a newer upload (issue #4), so it is dropped; re-run the reindex job. */
        SH_INFO("reindex_without_base_version", "track=%s", j->ev.track_id);
        return true;
    }
    ensure_db(c);
    if (!c->db)
        return false;
    sh_track t = {0};
    sh_err e = {0};
    int rc = sh_primary_get_track(c->db, j->ev.track_id, 0, &t, &e);
    /* The writer's rules (sh_primary.h): an upload must be newer; a reindex applies only to the
     * active track still at base_version with older fingerprints. */
    bool stale = reindex ? rc == SH_ENOTFOUND ||
                               (rc == 0 && (t.deleted || t.version != j->ev.base_version ||
                                            t.fp_version >= job_fp_version(j)))
                         : rc == 0 && t.version >= j->ev.submitted_at_ms;
    sh_track_clear(&t);
    return stale;
}

/* One attempt at everything before the database write. SH_ESTALE: nothing to do. */
static int prepare(fp_ctx *c, wk_job *j, sh_err *e)
{
    wk *w = c->w;
    if (!j->decoded) {
        const rd_kafka_message_t *m = j->msg;
        int rc = sh_event_decode(m->payload, m->len, w->reg, &w->lim, &j->ev, e);
        if (rc)
            return rc == SH_EHTTP ? SH_ETRANSIENT : rc; /* a registry that is down recovers */
        j->decoded = true;
    }
    if (j->ev.op == SH_OP_DELETE)
        return 0;
    if (known_stale(c, j))
        return SH_ESTALE;
    sh_fp *fp = NULL;
    int vrc = extractor(c, job_fp_version(j), &fp, e); /* an unsupported version fails early */
    if (vrc)
        return vrc;
    if (!j->meta_json && meta_to_json(j, e))
        return SH_EFORMAT;
    sh_audio *a = NULL;
    int rc = wk_fetch_open(w, j, c->db, &a, e);
    if (rc == 0)
        rc = fingerprint(c, j, a, e);
    sh_audio_free(a);
    return rc;
}

static void finish_bad(wk *w, wk_job *j, int code, const sh_err *e)
{
    wk_count_failure(w, code);
    if (wk_dlq_send(w, j, code, sh_err_text(e)) == 0)
        wk_job_done(w, j, "dlq");
    else
        wk_job_abandon(w, j);
}

/* True when this transient failure is the event's own source failing for longer than
 * --max-retry-time; then `e` says so (keeping the last reason) for the dead letter. Failures of
 * the database or of this host never count (fetch.c only counts the source's). */
static bool source_gave_up(const wk *w, const wk_job *j, bool src_failed, sh_err *e)
{
    long limit = w->cfg.max_retry_time_s;
    if (limit <= 0 || !src_failed || j->src_fail_t0 <= 0)
        return false;
    double failing_s = sh_clock_mono_s() - j->src_fail_t0;
    if (failing_s < (double)limit)
        return false;
    char last[512];
    snprintf(last, sizeof last, "%s", sh_err_text(e));
    SH_WARN("event_source_gave_up", "track=%s attempts=%d source_failures=%d failing_s=%.1f "
            "msg=\"%.300s\"", j->decoded ? j->ev.track_id : "-", j->attempts, j->src_fails,
            failing_s, last);
    sh_err_set(e, SH_ETIMEOUT, "source still failing after %.0f s (%d attempts, "
               "--max-retry-time %ld): %s", failing_s, j->attempts, limit, last);
    return true;
}

static void process_job(fp_ctx *c, wk_job *j)
{
    wk *w = c->w;
    for (;;) {
        sh_err e = {0};
        j->attempts++;
        int src_fails = j->src_fails;
        int rc = prepare(c, j, &e);
        if (rc == SH_ESTALE) {
            wk_job_done(w, j, "stale");
            return;
        }
        if (rc == 0) {
            sh_audio_event *ev = &j->ev;
            if (ev->op != SH_OP_DELETE)
                sh_series_add(w->m.audio_total, j->duration_s);
            to_writer(w, j);
            return;
        }
        if (!wk_transient(rc)) {
            SH_INFO("event_rejected", "track=%s code=%s attempts=%d msg=\"%.300s\"",
                    j->decoded ? j->ev.track_id : "-", sh_err_name(rc), j->attempts,
                    sh_err_text(&e));
            finish_bad(w, j, rc, &e);
            return;
        }
        if (source_gave_up(w, j, j->src_fails > src_fails, &e)) {
            finish_bad(w, j, SH_ETIMEOUT, &e);
            return;
        }
        wk_count_retry(w, rc);
        SH_WARN("event_retry", "track=%s code=%s attempt=%d msg=\"%.300s\"",
                j->decoded ? j->ev.track_id : "-", sh_err_name(rc), j->attempts, sh_err_text(&e));
        free(j->blob);
        j->blob = NULL;
        if (wk_backoff(w, j->attempts - 1)) {
            wk_job_abandon(w, j);
            return;
        }
    }
}

void *wk_fp_thread(void *arg)
{
    fp_ctx c = {.w = arg};
    sh_err e = {0};
    if (sh_fp_new(&c.w->fpc, &c.fp[SH_FP_VERSION], &e)) {
        /* Cannot happen with a checked config short of OOM; the main thread notices via
         * /health (no progress) — keep draining so shutdown does not hang. */
        SH_ERROR("fp_thread_init_failed", "msg=\"%s\"", sh_err_text(&e));
    }
    for (wk_job *j; (j = next_job(c.w));) {
        if (!c.fp[SH_FP_VERSION])
            wk_job_abandon(c.w, j);
        else
            process_job(&c, j);
    }
    for (int v = 0; v < FP_VERSIONS; v++)
        sh_fp_free(c.fp[v]);
    sh_primary_free(c.db);
    return NULL;
}
