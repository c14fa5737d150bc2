/* reindex.c — `soundhash ingest reindex`: re-fingerprint a catalogue at a controlled rate.
 *
 * Selects tracks from the primary (sh_primary_list_tracks, ordered by external id, or a list
 * file), publishes one REINDEX event per track to soundhash.audio.reindex (its own topic, so live
 * uploads never wait behind it) at most --rate events/s, and after each page is DELIVERED writes
 * a checkpoint (tmp + fsync + rename) naming the last track of the page. A killed job re-run with
 * the same command resumes after the checkpoint; at most one page is sent twice, which is
 * harmless (workers treat reindex events idempotently). Each event carries the version it was made
 * from (base_version): a worker re-fingerprints only while the track still has that version. The
 * checkpoint records the selection, so
 * resuming with a different one is refused (--restart starts over).
 */
#include "reindex.h"

#include "manifest.h"
#include "sh_clock.h"
#include "sh_file.h"
#include "sh_fp.h"
#include "sh_ingest.h"
#include "sh_kafka.h"
#include "sh_log.h"
#include "sh_media.h"
#include "sh_opt.h"
#include "sh_primary.h"
#include "sh_signal.h"
#include "sh_vec.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SH_STR_(x) #x
#define SH_STR(x) SH_STR_(x)
#define SH_REINDEX_FP_VERSION_TEXT SH_STR(SH_FP_VERSION)

enum {
    CHECKPOINT_MAX = 64 * 1024,    /* bytes of a checkpoint file */
    LIST_FILE_MAX = 256 << 20,     /* bytes of a --list file */
};

typedef struct reindex_conf {
    char *brokers;
    sh_strlist props;
    double timeout_s;
    double delivery_timeout_s;
    char *dsn;
    char *tenant;
    bool older;
    char *list;
    bool all;
    char *rate_text;
    char *checkpoint;
    long batch;
    long fp_version;
    bool restart;
} reindex_conf;

/* Where a job stands; persisted as JSON in the checkpoint file. */
typedef struct job_state {
    char selection[512];                   /* "all", "tenant:X", "fp_below:N", "list:PATH" */
    char after[SH_PRIMARY_ID_MAX + 1];     /* last external id delivered ("" = start) */
    long long list_pos;                    /* --list: lines consumed */
    long long published;
    bool done;
} job_state;

/* ---- checkpoint ------------------------------------------------------------------------------- */

static int save_state(const char *path, const job_state *s, sh_err *e)
{
    json_t *o = json_pack("{s:i,s:s,s:s,s:I,s:I,s:b}", "version", 1, "selection", s->selection,
                          "after", s->after, "list_pos", (json_int_t)s->list_pos, "published",
                          (json_int_t)s->published, "done", s->done);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    size_t len = strlen(text);
    char *line = malloc(len + 2);
    int rc = line ? 0 : sh_err_set(e, SH_ENOMEM, "out of memory");
    if (line) {
        memcpy(line, text, len);
        memcpy(line + len, "\n", 2);
        /* After a crash the checkpoint is the old or the new state, never empty or torn. */
        rc = sh_file_write_atomic(path, line, len + 1, e);
        if (rc)
            sh_err_wrap(e, rc, "checkpoint");
    }
    free(line);
    free(text);
    return rc;
}

/* Loads `path` into `s`. Returns 0 (loaded), SH_ENOTFOUND (no checkpoint yet), SH_EFORMAT. */
static int load_state(const char *path, job_state *s, sh_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SH_ENOTFOUND
                               : sh_err_set(e, SH_EIO, "checkpoint %s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sh_read_fd(fd, CHECKPOINT_MAX, &buf, &len, e);
    close(fd);
    if (rc)
        return rc;
    json_error_t jerr;
    json_t *o = json_loadb((const char *)buf, len, 0, &jerr);
    free(buf);
    const char *sel = NULL, *after = NULL;
    json_int_t pos = 0, pub = 0;
    int done = 0, version = 0;
    if (!o || json_unpack(o, "{s:i,s:s,s:s,s:I,s:I,s:b}", "version", &version, "selection", &sel,
                          "after", &after, "list_pos", &pos, "published", &pub, "done",
                          &done) != 0 ||
        version != 1 || strlen(sel) >= sizeof s->selection || strlen(after) >= sizeof s->after ||
        pos < 0 || pub < 0) {
        json_decref(o);
        return sh_err_set(e, SH_EFORMAT, "checkpoint %s is not a reindex checkpoint (remove it or "
                                         "pass --restart)", path);
    }
    snprintf(s->selection, sizeof s->selection, "%s", sel);
    snprintf(s->after, sizeof s->after, "%s", after);
    s->list_pos = pos;
    s->published = pub;
    s->done = done;
    json_decref(o);
    return 0;
}

/* ---- events ----------------------------------------------------------------------------------- */

static int track_event(const sh_track *t, int fp_version, sh_audio_event *ev, sh_err *e)
{
    memset(ev, 0, sizeof *ev);
    ev->op = SH_OP_REINDEX;
    ev->size_bytes = -1;
    ev->fp_version = fp_version;
    ev->priority = -1; /* below live uploads */
    /* The version names the audio we point at: the worker applies this reindex only while the
     * track is still at exactly this version, so a re-upload or delete racing the job wins. */
    ev->base_version = t->version;
    int rc = sh_event_set_string(ev, "track_id", t->external_id, e);
    if (!rc)
        rc = sh_event_set_string(ev, "tenant", t->tenant && *t->tenant ? t->tenant : "default", e);
    sh_uri_kind kind;
    if (!rc && t->source_uri && *t->source_uri && !sh_uri_classify(t->source_uri, &kind, NULL) &&
        kind != SH_URI_INLINE)
        rc = sh_event_set_uri(ev, kind == SH_URI_FILE ? SH_SRC_FILE : SH_SRC_URL, t->source_uri, e);
    size_t n = 0;
    if (!rc && t->sha256_hex[0] && !sh_hex_decode(t->sha256_hex, ev->sha256, 32, &n, NULL) &&
        n == 32)
        ev->has_sha256 = true;
    return rc;
}

/* ---- the job ---------------------------------------------------------------------------------- */

typedef struct job {
    const reindex_conf *c;
    double rate;
    sh_primary *db;
    sh_ingest *p;
    job_state st;
    long long published0; /* st.published when this run started */
    long long remaining;  /* tracks after the checkpoint when this run started; -1 unknown */
    long long consumed;   /* tracks handled by this run (sent or skipped) */
    long long page_sent;  /* events sent in the current, not yet checkpointed page */
    long long skipped;    /* --list ids not in the primary */
    long long outdated;   /* selected tracks below --fp-version; -1 not counted */
    size_t page_failed;   /* delivery failures in the current page */
    double t0;
    long long sent_since_t0;
    double last_progress;
    bool tty;
    sh_stop stop;         /* SIGINT/SIGTERM: stop after the current event, keep the checkpoint */
    char **list;          /* --list ids */
    size_t list_n;
    char list_sha[17];    /* first 64 bits of the --list file's SHA-256, hex */
} job;

static void on_result(const sh_ingest_result *r, void *opaque)
{
    job *j = opaque;
    if (r->code) {
        j->page_failed++;
        if (r->code == SH_ECANCELED)
            return; /* purged after an interruption: the checkpoint stays before its page */
        fprintf(stderr, "soundhash ingest reindex: FAILED track '%s' (event %s): %s\n", r->track_id,
                r->event_id, r->message);
    }
}

static void progress(job *j, bool final)
{
    double now = sh_clock_mono_s();
    if (!final && now - j->last_progress < 1.0)
        return;
    j->last_progress = now;
    double el = now - j->t0;
    double rate = el > 0 ? (double)j->sent_since_t0 / el : 0;
    long long sent = j->st.published + j->page_sent; /* checkpointed + the current page */
    long long total = j->remaining >= 0 ? j->published0 + j->remaining : -1;
    long long left = j->remaining - j->consumed;
    double eta = j->remaining >= 0 && rate > 0 ? (double)(left > 0 ? left : 0) / rate : -1;
    if (j->tty) {
        if (total >= 0)
            fprintf(stderr, "\rreindex: %lld/%lld tracks  %.1f/s  ETA %.0f s   %s", sent, total,
                    rate, eta < 0 ? 0 : eta, final ? "\n" : "");
        else
            fprintf(stderr, "\rreindex: %lld tracks  %.1f/s   %s", sent, rate, final ? "\n" : "");
    } else {
        sh_log(SH_LOG_INFO, "reindex_progress",
               "published=%lld sent=%lld total=%lld rate=%.1f eta_s=%.0f", j->st.published, sent,
               total, rate, eta);
    }
}

/* Waits until the next event may go out under --rate, serving delivery reports meanwhile. */
static void pace(job *j)
{
    for (;;) {
        double due = j->t0 + (double)j->sent_since_t0 / j->rate;
        double wait = due - sh_clock_mono_s();
        if (wait <= 0 || sh_stop_requested(&j->stop))
            return;
        /* Slices of at most 100 ms: a stop signal is noticed promptly even at very low rates
         * (and the poll timeout can never overflow an int); progress stays alive meanwhile. */
        sh_ingest_poll(j->p, wait >= 0.1 ? 100 : (int)(wait * 1000.0) + 1);
        progress(j, false);
    }
}

static int publish_track(job *j, const sh_track *t, sh_err *e)
{
    pace(j);
    /* Checked per event, not per page: after a signal nothing more goes out, and the page stays
     * un-checkpointed (a re-run sends it again, which is harmless). */
    if (sh_stop_requested(&j->stop))
        return sh_err_set(e, SH_ECANCELED, "interrupted; re-run the same command to resume");
    sh_audio_event ev;
    int rc = track_event(t, (int)j->c->fp_version, &ev, e);
    if (!rc)
        rc = sh_ingest_publish(j->p, &ev, on_result, j, NULL, e);
    sh_event_clear(&ev);
    if (!rc) {
        j->sent_since_t0++;
        j->page_sent++;
        j->consumed++;
        progress(j, false);
    }
    return rc;
}

/* Delivers what was sent, then moves the checkpoint past this page. */
static int end_page(job *j, const char *last_id, long long list_pos, long long n, sh_err *e)
{
    int rc = sh_ingest_flush(j->p, (int)(j->c->delivery_timeout_s * 1000.0) + 5000, e);
    if (!rc && j->page_failed)
        rc = sh_err_set(e, SH_EKAFKA, "%zu event(s) of the page failed; the checkpoint stays "
                                      "before it, re-run to retry", j->page_failed);
    if (rc)
        return rc;
    snprintf(j->st.after, sizeof j->st.after, "%s", last_id);
    j->st.list_pos = list_pos;
    j->st.published += n;
    j->page_sent = 0;
    rc = save_state(j->c->checkpoint, &j->st, e);
    progress(j, false);
    return rc;
}

/* The primary-side selection of the job, from its checkpoint cursor. */
static sh_track_filter job_filter(const job *j)
{
    return (sh_track_filter){.tenant = j->c->tenant,
                             .fp_version_below = j->c->older ? (int)j->c->fp_version : 0,
                             .after_id = j->st.after[0] ? j->st.after : NULL,
                             .limit = (size_t)j->c->batch};
}

static int run_db_pages(job *j, sh_err *e)
{
    sh_track_filter f = job_filter(j);
    for (;;) {
        if (sh_stop_requested(&j->stop))
            return sh_err_set(e, SH_ECANCELED, "interrupted; re-run the same command to resume");
        sh_track_list l = {0};
        f.after_id = j->st.after[0] ? j->st.after : NULL;
        int rc = sh_primary_list_tracks(j->db, &f, &l, e);
        if (rc)
            return rc;
        if (l.n == 0)
            return 0;
        for (size_t i = 0; !rc && i < l.n; i++)
            rc = publish_track(j, &l.v[i], e);
        if (!rc)
            rc = end_page(j, l.v[l.n - 1].external_id, 0, (long long)l.n, e);
        sh_track_list_clear(&l);
        if (rc)
            return rc;
    }
}

static int run_list_pages(job *j, sh_err *e)
{
    size_t pos = (size_t)j->st.list_pos;
    while (pos < j->list_n) {
        if (sh_stop_requested(&j->stop))
            return sh_err_set(e, SH_ECANCELED, "interrupted; re-run the same command to resume");
        size_t end = pos + (size_t)j->c->batch < j->list_n ? pos + (size_t)j->c->batch : j->list_n;
        long long n = 0;
        int rc = 0;
        for (size_t i = pos; !rc && i < end; i++) {
            sh_track t = {0};
            rc = sh_primary_get_track(j->db, j->list[i], 0, &t, e);
            if (rc == SH_ENOTFOUND || (!rc && t.deleted)) {
                char q[2 * SH_PRIMARY_ID_MAX + 8];
                sh_log(SH_LOG_WARN, "reindex_skip", "track=%s reason=%s",
                       sh_log_q(q, sizeof q, j->list[i]),
                       rc ? "not_in_primary" : "deleted");
                j->skipped++;
                j->consumed++;
                rc = 0;
            } else if (!rc) {
                rc = publish_track(j, &t, e);
                n += !rc;
            }
            sh_track_clear(&t);
        }
        if (!rc)
            rc = end_page(j, j->list[end - 1], (long long)end, n, e);
        if (rc)
            return rc;
        pos = end;
    }
    return 0;
}

/* Tracks left after the checkpoint, for the ETA: one COUNT with the job's own filter from its
 * cursor (counting from the start would mislead: e.g. tracks already reindexed no longer match
 * --older-than-fp-version). -1 when unknown. */
static long long count_remaining(job *j)
{
    if (j->c->list)
        return j->st.list_pos < (long long)j->list_n ? (long long)j->list_n - j->st.list_pos : 0;
    sh_track_filter f = job_filter(j);
    int64_t n = 0;
    sh_err ignored = {0};
    char q[256];
    if (sh_primary_count_tracks(j->db, &f, &n, &ignored)) {
        sh_log(SH_LOG_WARN, "reindex_count_failed", "eta=unknown msg=%s", sh_log_q(q, sizeof q, ignored.msg));
        return -1;
    }
    return (long long)n;
}

/* A reindex that will change nothing says so before it publishes (a warning and the summary's
 * "outdated"): workers replace fingerprints only of an older fp_version, so reindexing tracks that
 * are already current produces events that end as "stale". Only for database selections; with
 * --older-than-fp-version every selected track is outdated by definition. */
static void warn_if_nothing_changes(job *j)
{
    if (j->c->list || j->remaining < 0)
        return;
    if (j->remaining == 0) {
        j->outdated = 0;
        fprintf(stderr, "soundhash ingest reindex: warning: the selection matches no %stracks: "
                        "nothing to publish\n", j->st.published ? "remaining " : "");
        return;
    }
    if (j->c->older) {
        j->outdated = j->remaining;
        return;
    }
    sh_track_filter f = job_filter(j);
    f.fp_version_below = (int)j->c->fp_version;
    int64_t n = 0;
    sh_err ignored = {0};
    if (sh_primary_count_tracks(j->db, &f, &n, &ignored))
        return;
    j->outdated = (long long)n;
    if (n == 0)
        fprintf(stderr, "soundhash ingest reindex: warning: all %lld selected tracks already have "
                        "fingerprint version %ld or newer: workers will change nothing "
                        "(--older-than-fp-version selects only the tracks that need it)\n",
                j->remaining, j->c->fp_version);
}

static int load_list(job *j, sh_err *e)
{
    int fd = open(j->c->list, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sh_err_set(e, SH_EIO, "--list %s: %s", j->c->list, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sh_read_fd(fd, LIST_FILE_MAX, &buf, &len, e);
    close(fd);
    if (rc)
        return sh_err_wrap(e, rc, "--list %s", j->c->list);
    /* The selection records the content, so a changed list is never resumed at a stale position. */
    uint8_t sha[SH_SHA256_LEN];
    if (sh_sha256(buf, len, sha, e)) {
        free(buf);
        return sh_err_wrap(e, SH_EINTERNAL, "--list %s", j->c->list);
    }
    char hex[2 * SH_SHA256_LEN + 1];
    sh_hex_encode(sha, SH_SHA256_LEN, hex);
    snprintf(j->list_sha, sizeof j->list_sha, "%.16s", hex);
    size_t cap = 0, line = 0, bad = 0;
    for (size_t pos = 0; pos < len && !rc;) {
        const char *s = (const char *)buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + (nl ? 1 : 0);
        line++;
        if (l && s[l - 1] == '\r')
            l--;
        if (l == 0)
            continue;
        sh_err le = {0};
        if (memchr(s, '\0', l) || sh_track_id_check(s, l, &le)) {
            fprintf(stderr, "soundhash ingest reindex: %s line %zu: %s\n", j->c->list, line,
                    le.msg[0] ? le.msg : "NUL byte");
            bad++;
            continue;
        }
        if (sh_vec_reserve(&j->list, &cap, j->list_n + 1, SH_VEC_NOCAP)) {
            rc = sh_err_set(e, SH_ENOMEM, "out of memory");
            break;
        }
        j->list[j->list_n] = strndup(s, l);
        rc = j->list[j->list_n++] ? 0 : sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    free(buf);
    if (!rc && bad)
        rc = sh_err_set(e, SH_EFORMAT, "--list %s: %zu bad line(s); nothing published", j->c->list,
                        bad);
    if (!rc && j->list_n == 0)
        rc = sh_err_set(e, SH_EFORMAT, "--list %s: no track ids; nothing published", j->c->list);
    return rc;
}

static void selection_name(const job *j, char *out, size_t cap)
{
    const reindex_conf *c = j->c;
    if (c->list)
        snprintf(out, cap, "list:%s@%s", c->list, j->list_sha);
    else if (c->tenant && c->older)
        snprintf(out, cap, "tenant:%s,fp_below:%ld", c->tenant, c->fp_version);
    else if (c->tenant)
        snprintf(out, cap, "tenant:%s", c->tenant);
    else if (c->older)
        snprintf(out, cap, "fp_below:%ld", c->fp_version);
    else
        snprintf(out, cap, "all");
}

/* Loads or starts the job state; returns 0, SH_EEXIST when the job is already complete. */
static int prepare_state(job *j, sh_err *e)
{
    char sel[sizeof j->st.selection];
    selection_name(j, sel, sizeof sel);
    int rc = j->c->restart ? SH_ENOTFOUND : load_state(j->c->checkpoint, &j->st, e);
    if (rc == SH_ENOTFOUND) {
        memset(&j->st, 0, sizeof j->st);
        snprintf(j->st.selection, sizeof j->st.selection, "%s", sel);
        return save_state(j->c->checkpoint, &j->st, e); /* fail early on an unwritable path */
    }
    if (rc)
        return rc;
    if (strcmp(j->st.selection, sel))
        return sh_err_set(e, SH_EUSAGE, "checkpoint %s belongs to selection '%s', not '%s' (use "
                                        "another --checkpoint or --restart)",
                          j->c->checkpoint, j->st.selection, sel);
    if (j->st.done)
        return SH_EEXIST;
    sh_log(SH_LOG_INFO, "reindex_resume", "after=%s published=%lld", SH_Q(j->st.after),
           j->st.published);
    return 0;
}

static int run_job(job *j, sh_err *e)
{
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = j->c->dsn;
    pc.application_name = "soundhash-reindex";
    int rc = j->c->list ? load_list(j, e) : 0;
    if (!rc)
        rc = prepare_state(j, e);
    if (rc == SH_EEXIST) {
        printf("{\"published\":%lld,\"done\":true,\"already_complete\":true}\n", j->st.published);
        return 0;
    }
    if (!rc)
        rc = sh_primary_new(&pc, &j->db, e);
    if (!rc) {
        sh_ingest_config cfg;
        sh_ingest_config_default(&cfg);
        cfg.brokers = j->c->brokers;
        cfg.props = &j->c->props;
        cfg.topic = SH_TOPIC_AUDIO_REINDEX;
        cfg.connect_timeout_ms = (int)(j->c->timeout_s * 1000.0);
        cfg.delivery_timeout_ms = (int)(j->c->delivery_timeout_s * 1000.0);
        rc = sh_ingest_new(&cfg, &j->p, e);
    }
    if (rc)
        return rc;
    j->published0 = j->st.published;
    j->remaining = count_remaining(j);
    warn_if_nothing_changes(j);
    j->t0 = sh_clock_mono_s();
    j->last_progress = j->t0;
    /* Decide by the option, not by j->list: an empty list must never fall back to every track. */
    rc = j->c->list ? run_list_pages(j, e) : run_db_pages(j, e);
    if (rc == SH_ECANCELED) /* deliver what this page already sent (bounded), not purge it */
        sh_ingest_flush(j->p, 2000, NULL);
    if (!rc) {
        j->st.done = true;
        rc = save_state(j->c->checkpoint, &j->st, e);
    }
    progress(j, true);
    printf("{\"published\":%lld,\"skipped\":%lld,\"done\":%s", j->st.published, j->skipped,
           j->st.done ? "true" : "false");
    if (j->outdated >= 0) /* selected tracks below --fp-version: what workers will re-fingerprint */
        printf(",\"outdated\":%lld", j->outdated);
    printf("}\n");
    fflush(stdout);
    return rc;
}

static int parse_rate(const char *text, double *rate)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", text ? text : "");
    size_t n = strlen(buf);
    if (n > 2 && !strcmp(buf + n - 2, "/s"))
        buf[n - 2] = '\0';
    return sh_parse_double(buf, rate) || !(*rate > 0 && *rate <= 1e6) ? SH_EUSAGE : 0;
}

static int check_conf(const reindex_conf *c, double *rate, sh_err *e)
{
    if (sh_primary_dsn_check(c->dsn, e)) /* malformed: a usage error before anything starts */
        return sh_err_wrap(e, SH_EUSAGE, "--dsn");
    if (c->list && access(c->list, R_OK) != 0)
        return sh_err_set(e, SH_EUSAGE, "--list %s: %s", c->list, strerror(errno));
    if (sh_file_check_writable_dir(c->checkpoint, e)) /* written as tmp + rename beside it */
        return sh_err_wrap(e, SH_EUSAGE, "--checkpoint");
    int modes = (c->tenant != NULL || c->older) + (c->list != NULL) + c->all;
    if (modes != 1)
        return sh_err_set(e, SH_EUSAGE, "choose the tracks: --all, --list FILE, or --tenant T "
                                        "and/or --older-than-fp-version");
    if (parse_rate(c->rate_text, rate))
        return sh_err_set(e, SH_EUSAGE, "--rate: expected N or N/s with 0 < N <= 1000000");
    if (!(c->timeout_s > 0 && c->timeout_s <= 3600) ||
        !(c->delivery_timeout_s > 0 && c->delivery_timeout_s <= 3600))
        return sh_err_set(e, SH_EUSAGE, "timeouts must be in (0, 3600] seconds");
    return 0;
}

int ingest_cmd_reindex(int argc, char **argv)
{
    reindex_conf c = {0};
    sh_opt opts[] = {
        {"brokers", 'b', SH_OPT_STR, &c.brokers, NULL, "Kafka bootstrap servers host:port,...",
         SH_OPT_REQUIRED, 0, 0},
        {"property", 'X', SH_OPT_LIST, &c.props, NULL,
         "librdkafka property key=value (repeatable)", 0, 0, 0},
        {"timeout", 0, SH_OPT_DOUBLE, &c.timeout_s, "10", "seconds to wait for a broker", 0, 0, 0},
        {"delivery-timeout", 0, SH_OPT_DOUBLE, &c.delivery_timeout_s, "30",
         "seconds librdkafka retries one event", 0, 0, 0},
        {"dsn", 0, SH_OPT_STR, &c.dsn, NULL,
         "primary PostgreSQL (libpq DSN; password via SOUNDHASH_DB_PASSWORD or a passfile)",
         SH_OPT_REQUIRED | SH_OPT_DSN, 0, 0},
        {"tenant", 0, SH_OPT_STR, &c.tenant, NULL,
         "only this tenant's tracks (combinable with --older-than-fp-version)", 0, 0, 0},
        {"older-than-fp-version", 0, SH_OPT_BOOL, &c.older, "false",
         "only tracks fingerprinted with a version older than --fp-version", 0, 0, 0},
        {"fp-version", 0, SH_OPT_INT, &c.fp_version, SH_REINDEX_FP_VERSION_TEXT,
         "target fingerprint version (the default is this build's)", 0, 1, 1000000},
        {"list", 0, SH_OPT_STR, &c.list, NULL, "file of track ids, one per line", 0, 0, 0},
        {"all", 0, SH_OPT_BOOL, &c.all, "false", "every active track", 0, 0, 0},
        {"rate", 0, SH_OPT_STR, &c.rate_text, "100/s",
         "events per second, N or N/s, 0 < N <= 1000000 (e.g. 500/s, 0.5/s)", 0, 0, 0},
        {"checkpoint", 0, SH_OPT_STR, &c.checkpoint, NULL,
         "progress file; a re-run resumes after it", SH_OPT_REQUIRED, 0, 0},
        {"batch", 0, SH_OPT_INT, &c.batch, "500",
         "tracks per page (delivered and checkpointed together)", 0, 1, SH_PRIMARY_LIST_MAX},
        {"restart", 0, SH_OPT_BOOL, &c.restart, "false", "ignore an existing checkpoint", 0, 0, 0},
        {0},
    };
    sh_cmd_spec spec = {
        .name = "ingest reindex",
        .usage = "--brokers B --dsn DSN (--all | --tenant T | --older-than-fp-version | --list F) "
                 "[--rate N/s] --checkpoint FILE [--batch N] [--restart]",
        .summary = "Publishes a REINDEX event per selected track of the primary database to "
                   "soundhash.audio.reindex (workers favour live uploads), at most --rate events "
                   "per second, checkpointing after each delivered page so that a killed job "
                   "resumes where it stopped (re-run the same command; at most one page is sent "
                   "twice). Shows progress and ETA on stderr; prints a JSON summary line. SIGTERM "
                   "or SIGINT stops it with exit 1, resumable. Warns when the selection matches "
                   "nothing or every selected track already has --fp-version (workers would change "
                   "nothing); the summary {published, skipped, done[, outdated]} counts the "
                   "selected tracks below --fp-version as outdated.",
        .examples = "soundhash ingest reindex --brokers B --dsn \"$DSN\" --older-than-fp-version "
                    "--rate 200/s --checkpoint /var/lib/sh/reindex.ckpt\n"
                    "soundhash ingest reindex --brokers B --dsn \"$DSN\" --list ids.txt --rate 50 "
                    "--checkpoint ids.ckpt",
        .opts = opts};
    sh_err e = {0};
    int rc = sh_opt_parse(&spec, argc, argv, &e);
    int code = sh_opt_exit_code(&spec, rc, &e);
    job j = {.c = &c, .remaining = -1, .outdated = -1, .tty = isatty(2)};
    if (code < 0 && check_conf(&c, &j.rate, &e))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code < 0) {
        rc = sh_stop_install(&j.stop, 0, &e);
        if (!rc)
            rc = run_job(&j, &e);
        sh_stop_uninstall(&j.stop);
        if (rc)
            fprintf(stderr, "soundhash ingest reindex: %s\n", sh_err_text(&e));
        code = rc == 0 ? SH_EXIT_OK : rc == SH_EUSAGE ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
    }
    sh_ingest_free(j.p);
    sh_primary_free(j.db);
    for (size_t i = 0; i < j.list_n; i++)
        free(j.list[i]);
    free(j.list);
    sh_opt_free(&spec);
    return code;
}
