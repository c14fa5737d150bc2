/* wmetrics.c — the worker's Prometheus metrics, broker state from librdkafka's statistics, and
 * the /health and /metrics endpoints. */
#include "worker.h"

#include "sh_clock.h"
#include "sh_log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L(...) ((const char *[]){__VA_ARGS__, NULL})

static int reg_all(wk_metrics *m)
{
    static const double lat[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
    static const double db[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                1, 2.5, 5};
    int rc = 0;
    rc = rc ? rc : sh_metrics_counter(m->reg, "soundhash_worker_events_total",
                                      "Events finished, by topic kind (live/reindex), op and "
                                      "result (ok, stale, dlq).",
                                      L("source", "op", "result"), &m->events);
    rc = rc ? rc : sh_metrics_counter(m->reg, "soundhash_worker_events_failed_total",
                                      "Events sent to the dead-letter topic, by error.",
                                      L("reason"), &m->failed);
    rc = rc ? rc : sh_metrics_counter(m->reg, "soundhash_worker_retries_total",
                                      "Transient failures retried with backoff, by error.",
                                      L("reason"), &m->retries);
    rc = rc ? rc : sh_metrics_histogram(m->reg, "soundhash_worker_processing_seconds",
                                        "Time from receiving an event to finishing it.",
                                        L("source"), lat, sizeof lat / sizeof lat[0],
                                        &m->latency);
    rc = rc ? rc : sh_metrics_counter(m->reg, "soundhash_worker_audio_seconds_total",
                                      "Seconds of audio fingerprinted.", NULL, &m->audio_s);
    rc = rc ? rc : sh_metrics_counter(m->reg, "soundhash_worker_hashes_total",
                                      "Landmark hashes written.", NULL, &m->hashes);
    rc = rc ? rc : sh_metrics_gauge(m->reg, "soundhash_worker_consumer_lag",
                                    "Events not yet done in a partition assigned to this worker: "
                                    "end offset minus the group's committed offset, asked of the "
                                    "cluster every 2 s (removed when the partition is revoked).",
                                    L("topic", "partition"), &m->lag);
    rc = rc ? rc : sh_metrics_gauge(m->reg, "soundhash_worker_consumer_lag_sum",
                                    "Events not yet done, summed over assigned partitions.", NULL,
                                    &m->lag_total);
    rc = rc ? rc : sh_metrics_gauge(m->reg, "soundhash_worker_group_lag",
                                    "Events not yet done in every partition of the worker topics, "
                                    "whoever owns it: a stalled or dead owner's partitions grow "
                                    "here on every worker.",
                                    L("topic", "partition"), &m->group_lag);
    rc = rc ? rc : sh_metrics_histogram(m->reg, "soundhash_worker_db_write_seconds",
                                        "Database write latency per call (a batch for upserts).",
                                        L("op"), db, sizeof db / sizeof db[0], &m->db_latency);
    rc = rc ? rc : sh_metrics_gauge(m->reg, "soundhash_worker_inflight",
                                    "Events received and not yet finished.", NULL, &m->inflight);
    rc = rc ? rc : sh_metrics_gauge(m->reg, "soundhash_worker_paused",
                                    "1 while consumption is paused (back-pressure or database "
                                    "down).",
                                    NULL, &m->paused);
    rc = rc ? rc : sh_metrics_gauge(m->reg, "soundhash_worker_kafka_up",
                                    "1 when a Kafka broker is connected.", NULL, &m->kafka_up);
    rc = rc ? rc : sh_metrics_gauge(m->reg, "soundhash_worker_db_up",
                                    "1 when the primary database answers.", NULL, &m->db_up);
    return rc;
}

int wk_metrics_init(wk_metrics *m)
{
    memset(m, 0, sizeof *m);
    int rc = sh_metrics_new(&m->reg);
    if (rc == 0)
        rc = reg_all(m);
    if (rc)
        return rc;
    m->audio_total = sh_metric_series(m->audio_s, NULL);
    m->hashes_total = sh_metric_series(m->hashes, NULL);
    m->inflight_s = sh_metric_series(m->inflight, NULL);
    m->paused_s = sh_metric_series(m->paused, NULL);
    m->kafka_up_s = sh_metric_series(m->kafka_up, NULL);
    m->db_up_s = sh_metric_series(m->db_up, NULL);
    m->lag_total_s = sh_metric_series(m->lag_total, NULL);
    return 0;
}

void wk_metrics_free(wk_metrics *m) { sh_metrics_free(m->reg); }

void wk_count_event(wk *w, const wk_job *j, const char *result)
{
    const char *src = j->live ? "live" : "reindex";
    const char *op = j->decoded ? sh_event_op_name(j->ev.op) : "UNKNOWN";
    sh_series_add(sh_metric_series(w->m.events, L(src, op ? op : "UNKNOWN", result)), 1);
    sh_series_observe(sh_metric_series(w->m.latency, L(src)), sh_clock_mono_s() - j->t0);
    if (strcmp(result, "ok") == 0)
        sh_series_add(w->m.hashes_total, j->n_hashes);
}

void wk_count_failure(wk *w, int code)
{
    sh_series_add(sh_metric_series(w->m.failed, L(sh_err_name(code))), 1);
}

void wk_count_retry(wk *w, int code)
{
    sh_series_add(sh_metric_series(w->m.retries, L(sh_err_name(code))), 1);
}

/* ---- librdkafka statistics --------------------------------------------------------------------
 * {"brokers": {"host:port/1": {"state": "UP", "nodeid": 1, ...}}, ...}: only whether a broker is
 * up. (Consumer lag is not taken from here: see lag.c.) */

static bool stats_broker_up(json_t *brokers)
{
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        json_t *id = json_object_get(b, "nodeid");
        const char *state = json_string_value(json_object_get(b, "state"));
        if (json_is_integer(id) && json_integer_value(id) >= 0 && state && !strcmp(state, "UP"))
            return true;
    }
    return false;
}

int wk_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    wk *w = opaque;
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    if (!root)
        return 0;
    bool up = stats_broker_up(json_object_get(root, "brokers"));
    atomic_store(&w->kafka_up, up);
    sh_series_set(w->m.kafka_up_s, up ? 1 : 0);
    json_decref(root);
    return 0; /* librdkafka frees `json` */
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

static int on_health(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    (void)req;
    wk *w = ud;
    bool kafka = atomic_load(&w->kafka_up), db = !atomic_load(&w->db_down);
    bool joined = atomic_load(&w->joined);
    bool ok = joined && kafka && db;
    /* "starting": still checking and waiting for the database and a broker, not in the group. */
    const char *status = !joined ? "starting" : ok ? "ok" : "degraded";
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"%s\",\"kafka\":\"%s\",\"db\":\"%s\",\"assigned\":%d,"
                     "\"inflight\":%.0f,\"paused\":%s}\n",
                     status, kafka ? "up" : "down", db ? "up" : "down",
                     atomic_load(&w->assigned), sh_series_value(w->m.inflight_s),
                     sh_series_value(w->m.paused_s) > 0 ? "true" : "false");
    return sh_http_resp_set(resp, ok ? 200 : 503, "application/json", body, (size_t)n);
}

static int on_metrics(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    (void)req;
    wk *w = ud;
    char *out;
    size_t len;
    int rc = sh_metrics_render(w->m.reg, &out, &len);
    if (rc)
        return rc;
    sh_http_resp_take(resp, 200, "text/plain; version=0.0.4; charset=utf-8", out, len);
    return 0;
}

int wk_http_start(wk *w, sh_err *e)
{
    if (!w->cfg.http || !w->cfg.http[0])
        return 0;
    sh_http_opts o;
    sh_http_opts_default(&o);
    o.metrics = w->m.reg; /* soundhash_http_responses_total */
    int rc = sh_http_new(&o, &w->http, e);
    if (rc == 0)
        rc = sh_http_route(w->http, "GET", "/health", on_health, w);
    if (rc == 0)
        rc = sh_http_route(w->http, "GET", "/metrics", on_metrics, w);
    if (rc == 0)
        rc = sh_http_start(w->http, w->cfg.http, e);
    return rc;
}
