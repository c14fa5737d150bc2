/* worker.c — `soundhash worker`: options, start-up and tear-down. The moving parts are described
 * in worker.h. */
#include "worker.h"

#include "sh_cmds.h"
#include "sh_kafka.h"
#include "sh_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const SUMMARY =
    "Consumes audio events from soundhash.audio.events (live, favoured) and "
    "soundhash.audio.reindex, fetches and fingerprints the audio with --threads threads, and "
    "writes each track and its fingerprints to the primary PostgreSQL in one version-checked "
    "transaction. Offsets are committed only up to events that are fully done (written, or "
    "delivered to soundhash.audio.dlq with the reason when bad), so a worker killed at any "
    "instant loses nothing. Before joining the consumer group it waits (--db-wait) until the "
    "database accepts a connection, so partitions go only to workers that can write; once running "
    "it pauses while the database is down and resumes by itself. "
    "SIGTERM/SIGINT: finishes in-flight work, commits, leaves the group, exits 0. Exit 1: a "
    "runtime failure (database or broker not reachable in time, authentication refused, --http "
    "address in use); exit 2: a usage error (bad flag value, malformed --dsn or -X, missing "
    "--media-root or --tmp-dir). /health and /metrics on --http.";

/* The option table without targets (immutable); init_opts() copies it and points the copy at a
 * config struct. */
static const sh_opt OPTS[] = {
    {"brokers", 'b', SH_OPT_STR, NULL, NULL, "Kafka bootstrap servers host:port,...",
     SH_OPT_REQUIRED, 0, 0},
    {"dsn", 0, SH_OPT_STR, NULL, NULL,
     "primary PostgreSQL connection string (password: env SOUNDHASH_DB_PASSWORD)",
     SH_OPT_REQUIRED | SH_OPT_DSN, 0, 0},
    {"media-root", 0, SH_OPT_STR, NULL, NULL, "directory file:// audio must lie under",
     SH_OPT_REQUIRED, 0, 0},
    {"threads", 't', SH_OPT_INT, NULL, "2", "fingerprinting threads", 0, 1, 64},
    {"group", 'g', SH_OPT_STR, NULL, "soundhash-workers", "consumer group id", 0, 0, 0},
    {"http", 0, SH_OPT_STR, NULL, "", "serve /health and /metrics on HOST:PORT (\"\": off)", 0,
     0, 0},
    {"worker-id", 0, SH_OPT_STR, NULL, "", "name in logs and dead letters (\"\": host-pid)", 0,
     0, 0},
    {"property", 'X', SH_OPT_LIST, NULL, NULL, "librdkafka property key=value (repeatable)", 0,
     0, 0},
    {"max-inflight", 0, SH_OPT_INT, NULL, "0",
     "events received and unfinished before pausing (0: 4 x threads)", 0, 0, 100000},
    {"batch", 0, SH_OPT_INT, NULL, "16", "tracks per database round trip", 0, 1, 256},
    {"max-duration", 0, SH_OPT_DOUBLE, NULL, "10800", "longest audio accepted, seconds", 0, 0,
     0},
    {"max-fetch-bytes", 0, SH_OPT_SIZE, NULL, "1G", "largest audio file accepted", 0, 0, 0},
    {"http-timeout", 0, SH_OPT_INT, NULL, "120", "seconds for one http(s) audio download", 0,
     1, 3600},
    {"retry-max-ms", 0, SH_OPT_INT, NULL, "10000", "longest backoff between retries", 0, 100,
     600000},
    {"shutdown-grace", 0, SH_OPT_INT, NULL, "60",
     "seconds to finish in-flight work after SIGTERM", 0, 0, 3600},
    {"tmp-dir", 0, SH_OPT_STR, NULL, "/tmp", "where http(s) downloads are spooled", 0, 0, 0},
    {"connect-timeout", 0, SH_OPT_INT, NULL, "30",
     "seconds to wait for a Kafka broker at start, then exit 1 (0: no check at start; librdkafka keeps retrying in the background)", 0, 0, 3600},
    {"max-retry-time", 0, SH_OPT_INT, NULL, "900",
     "seconds one event's http(s) source may keep failing transiently (connection refused, DNS, "
     "timeouts, 5xx/408/429) before the event goes to the DLQ as SH_ETIMEOUT (0: retry forever; "
     "a database outage is never counted)",
     0, 0, 604800},
    {"db-wait", 0, SH_OPT_INT, NULL, "60",
     "seconds to wait at start for the primary database to accept a connection before joining "
     "the consumer group, then exit 1 (0: one attempt)",
     0, 0, 604800},
    {"fetch-deny-private", 0, SH_OPT_BOOL, NULL, "false",
     "refuse http(s) audio at loopback, private, link-local, CGNAT, multicast or unspecified "
     "addresses, checked on every connection (redirects and DNS answers included): the event is "
     "dead-lettered (SSRF guard; see ops/SECURITY.md)",
     0, 0, 0},
    {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static void init_opts(wk_config *c, sh_opt *opts, sh_cmd_spec *spec)
{
    void *targets[] = {&c->brokers,      &c->dsn,           &c->media_root,   &c->threads,
                       &c->group,        &c->http,          &c->worker_id,    &c->kafka_props,
                       &c->max_inflight, &c->batch,         &c->max_duration_s,
                       &c->max_fetch_bytes, &c->http_timeout_s, &c->retry_max_ms,
                       &c->shutdown_grace_s, &c->tmp_dir, &c->connect_timeout_s,
                       &c->max_retry_time_s, &c->db_wait_s, &c->fetch_deny_private};
    _Static_assert(sizeof targets / sizeof targets[0] == N_OPTS - 1, "one target per option");
    memcpy(opts, OPTS, sizeof OPTS);
    for (size_t i = 0; i < N_OPTS - 1; i++)
        opts[i].target = targets[i];
    spec->name = "worker";
    spec->usage = "--brokers B --dsn DSN --media-root DIR [options]";
    spec->examples = "soundhash worker --brokers 127.0.0.1:9092 --dsn \"$(cat /tmp/sh-pg/dsn)\" "
                     "--media-root ~/music --http 127.0.0.1:9100\n"
                     "SOUNDHASH_DB_PASSWORD_FILE=/run/secrets/db soundhash worker --brokers "
                     "kafka:9092 --dsn 'host=db user=soundhash_worker dbname=soundhash' --media-root "
                     "/srv/audio --threads 4 --db-wait 300";
    spec->summary = SUMMARY;
    spec->opts = opts;
}

static int check_dir(const char *flag, const char *path, sh_err *e)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sh_err_set(e, SH_EUSAGE, "%s %s: %s", flag, path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sh_err_set(e, SH_EUSAGE, "%s %s: not a directory", flag, path);
    return 0;
}

/* Derived settings and the checks the option table cannot express; every failure is a usage
 * error (exit 2) found before anything connects anywhere. */
static int finish_config(wk *w, sh_err *e)
{
    wk_config *c = &w->cfg;
    if (c->max_inflight == 0)
        c->max_inflight = 4 * c->threads;
    if (!(c->max_duration_s > 0))
        return sh_err_set(e, SH_EUSAGE, "--max-duration must be > 0");
    if (c->max_fetch_bytes == 0)
        return sh_err_set(e, SH_EUSAGE, "--max-fetch-bytes must be > 0");
    int rc = sh_primary_dsn_check(c->dsn, e);
    if (rc)
        return rc == SH_EINVAL ? sh_opt_usage_error(e, "--dsn") : rc;
    if ((rc = sh_kafka_props_check(c->brokers, &c->kafka_props, e)) || (rc = check_dir("--media-root", c->media_root, e)) ||
        (rc = check_dir("--tmp-dir", c->tmp_dir, e)))
        return rc;
    if (!c->worker_id || !c->worker_id[0]) {
        char host[64] = "worker", id[128];
        gethostname(host, sizeof host - 1);
        snprintf(id, sizeof id, "%s-%ld", host, (long)getpid());
        free(c->worker_id); /* owned by the parser, like its replacement */
        c->worker_id = strdup(id);
        if (!c->worker_id)
            return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    return 0;
}

/* /health and /metrics come first, so that they answer (503) while the worker waits for the
 * database and the broker. A malformed address is a usage error; a busy port is not. */
static int start_http(wk *w, sh_err *e)
{
    int rc = wk_http_start(w, e);
    if (rc == SH_EINVAL)
        return sh_opt_usage_error(e, "--http");
    if (rc) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", sh_err_text(e));
        sh_err_set(e, rc, "--http: %s", why);
    }
    return rc;
}

/* Order matters: nothing joins the consumer group before the database has answered. */
static int start(wk *w, sh_err *e)
{
    int rc = sh_registry_new_from_env(&w->reg, e);
    sh_schema_limits_default(&w->lim);
    sh_fp_config_default(&w->fpc);
    if (rc == 0 && (rc = sh_media_new(w->cfg.media_root, 0, &w->media, e)) && rc != SH_ENOMEM)
        rc = sh_opt_usage_error(e, "--media-root"); /* checked in finish_config: a race */
    if (rc == 0 && (rc = sh_offsets_new(&w->offsets)))
        sh_err_set(e, rc, "out of memory");
    if (rc == 0 && (rc = wk_metrics_init(&w->m)))
        sh_err_set(e, rc, "metrics registry");
    if (rc == 0)
        rc = start_http(w, e);
    if (rc == 0)
        rc = wk_wait_db(w, e);
    /* The consumer waits for the broker; the DLQ producer comes after, so an unreachable broker
     * is the wait's one line, not the producer's connection errors too. */
    if (rc == 0)
        rc = wk_consumer_new(w, e);
    if (rc == 0)
        rc = wk_dlq_new(w, e);
    if (rc == 0)
        rc = wk_lag_start(w, e);
    return rc;
}

static int start_threads(wk *w, sh_err *e)
{
    w->fp_threads = calloc((size_t)w->cfg.threads, sizeof *w->fp_threads);
    if (!w->fp_threads)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    for (long i = 0; i < w->cfg.threads; i++) {
        if (pthread_create(&w->fp_threads[i], NULL, wk_fp_thread, w))
            return sh_err_set(e, SH_EINTERNAL, "cannot start thread %ld", i);
        w->n_fp_threads++;
    }
    if (pthread_create(&w->writer_thread, NULL, wk_writer_thread, w))
        return sh_err_set(e, SH_EINTERNAL, "cannot start the writer thread");
    w->writer_started = true;
    return 0;
}

static void stop_threads(wk *w)
{
    atomic_store(&w->threads_exit, true);
    pthread_mutex_lock(&w->lock);
    pthread_cond_broadcast(&w->job_cv);
    pthread_cond_broadcast(&w->write_cv);
    pthread_mutex_unlock(&w->lock);
    for (long i = 0; i < w->n_fp_threads; i++)
        pthread_join(w->fp_threads[i], NULL);
    if (w->writer_started)
        pthread_join(w->writer_thread, NULL);
    free(w->fp_threads);
    /* Left-over jobs (only after an abandon) are dropped without committing their offsets. */
    for (wk_fifo *q = &w->live_jobs; q; q = q == &w->live_jobs ? &w->reindex_jobs
                                           : q == &w->reindex_jobs ? &w->writes
                                                                   : NULL) {
        for (wk_job *j; (j = wk_fifo_pop(q));)
            wk_job_free(j);
    }
}

static void teardown(wk *w)
{
    sh_http_free(w->http); /* first: its handlers read the state freed below */
    wk_lag_stop(w);        /* it queries the consumer */
    wk_consumer_close(w);  /* its last revoke still updates the lag bookkeeping */
    wk_lag_free(w);
    wk_dlq_free(w);
    sh_offsets_free(w->offsets);
    free(w->offsets_unrec);
    wk_metrics_free(&w->m);
    sh_media_free(w->media);
    sh_registry_free(w->reg);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->job_cv);
    pthread_cond_destroy(&w->write_cv);
}

int sh_cmd_worker(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "rewind") == 0)
        return wk_cmd_rewind(argc - 1, argv + 1);
    wk w;
    memset(&w, 0, sizeof w);
    sh_cmd_spec spec;
    memset(&spec, 0, sizeof spec);
    sh_err e = {0};
    sh_opt opts[N_OPTS];
    init_opts(&w.cfg, opts, &spec);
    int rc = sh_opt_parse(&spec, argc, argv, &e);
    int code = sh_opt_exit_code(&spec, rc, &e);
    if (code < 0 && (rc = finish_config(&w, &e)))
        code = sh_opt_exit_code(&spec, rc, &e);
    if (code >= 0) {
        sh_opt_free(&spec);
        return code;
    }
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.job_cv, NULL);
    pthread_cond_init(&w.write_cv, NULL);
    wk_fetch_global_init();
    rc = wk_lag_init(&w);
    if (rc)
        sh_err_set(&e, rc, "out of memory");
    else if (!(rc = sh_stop_install(&w.stop, SH_STOP_IGNORE_SIGPIPE, &e)))
        rc = start(&w, &e); /* SIGTERM/SIGINT from here on: waits end, then a graceful stop */
    if (rc == 0)
        rc = start_threads(&w, &e);
    if (rc == 0) {
        SH_INFO("worker_started", "id=%s threads=%ld group=%s max_inflight=%ld", w.cfg.worker_id,
                w.cfg.threads, w.cfg.group, w.cfg.max_inflight);
        rc = wk_run(&w);
        if (rc)
            sh_err_set(&e, rc, "stopped without committing: %s", sh_strerror(rc));
    } else if (rc == SH_ECANCELED) {
        /* SIGTERM/SIGINT while starting (e.g. waiting for a broker): nothing was consumed. */
        SH_INFO("worker_start_interrupted", "msg=\"%s\"", sh_err_text(&e));
        atomic_store(&w.abandon, true);
        rc = 0;
    } else {
        atomic_store(&w.abandon, true);
    }
    stop_threads(&w);
    teardown(&w);
    sh_stop_uninstall(&w.stop);
    SH_INFO("worker_stopped", "rc=%d", rc);
    /* The reason is the last line on stderr, after the log lines of the tear-down. */
    int exit_code = rc ? sh_opt_exit_code(&spec, rc, &e) : SH_EXIT_OK;
    sh_opt_free(&spec);
    return exit_code;
}
