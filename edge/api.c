/* api.c — the edge's HTTP side and metrics: /health, /ready, /v1/shards, /metrics, and the route
 * of POST /v1/match (match.c). Every error is a 4xx/5xx with a {"error": "..."} body (the
 * server's own 404, 405 and 413 too: sh_http_opts.json_errors). */
#include "edge.h"

#include "sh_clock.h"
#include "sh_log.h"
#include "sh_token.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- metrics ------------------------------------------------------------------------------ */

static sh_series *plain(sh_metrics *m, int gauge, const char *name, const char *help)
{
    sh_metric *f = NULL;
    int rc = gauge ? sh_metrics_gauge(m, name, help, NULL, &f)
                   : sh_metrics_counter(m, name, help, NULL, &f);
    return rc ? NULL : sh_metric_series(f, NULL);
}

static sh_series *hist(sh_metrics *m, const char *name, const char *help, double start,
                       double factor, size_t n)
{
    double b[SH_METRICS_MAX_BUCKETS];
    sh_metric *f = NULL;
    sh_metrics_exp_buckets(start, factor, n, b);
    return sh_metrics_histogram(m, name, help, NULL, b, n, &f) ? NULL : sh_metric_series(f, NULL);
}

int ed_metrics_init(ed *x)
{
    ed_metrics *m = &x->m;
    int rc = m->reg ? 0 : sh_metrics_new(&m->reg); /* ed_http_start may have made it */
    if (rc)
        return rc;
    m->deltas = plain(m->reg, 0, "soundhash_edge_deltas_applied_total", "Deltas applied.");
    m->ops_applied = plain(m->reg, 0, "soundhash_edge_ops_applied_total", "Ops applied.");
    m->ops_skipped = plain(m->reg, 0, "soundhash_edge_ops_skipped_total",
                           "Ops skipped: at or below the shard's position (redelivery, tail "
                           "behind a snapshot).");
    m->bootstraps = plain(m->reg, 0, "soundhash_edge_bootstraps_total",
                          "Shards replaced by a snapshot.");
    m->gaps = plain(m->reg, 0, "soundhash_edge_gaps_total",
                    "Gaps seen (prev_sequence ahead of the position, or an offset Kafka no "
                    "longer holds).");
    m->errors = plain(m->reg, 0, "soundhash_edge_bootstrap_failures_total",
                      "Bootstraps that failed (retried).");
    m->matches = plain(m->reg, 0, "soundhash_edge_matches_total", "Match requests answered "
                       "with a track.");
    m->no_matches = plain(m->reg, 0, "soundhash_edge_no_matches_total",
                          "Match requests answered with no track.");
    m->bad_requests = plain(m->reg, 0, "soundhash_edge_bad_requests_total",
                            "Match requests refused (4xx).");
    m->apply_lag = hist(m->reg, "soundhash_edge_apply_lag_seconds",
                        "Delta created (replicator) to applied (edge).", 0.002, 1.6, 20);
    m->match_hist = hist(m->reg, "soundhash_edge_match_seconds",
                         "POST /v1/match handling: decode, fingerprint, lookup, ranking.", 0.001,
                         1.6, 20);
    const char *body[] = {"body", NULL};
    if (sh_metrics_counter(m->reg, "soundhash_edge_match_requests_total",
                           "POST /v1/match requests by body: audio, hashes_json, hashes_binary.",
                           body, &m->f_requests))
        return SH_ENOMEM;
    m->req_audio = sh_metric_series(m->f_requests, (const char *[]){"audio", NULL});
    m->req_json = sh_metric_series(m->f_requests, (const char *[]){"hashes_json", NULL});
    m->req_binary = sh_metric_series(m->f_requests, (const char *[]){"hashes_binary", NULL});
    sh_metric *ans = NULL;
    if (sh_metrics_counter(m->reg, "soundhash_edge_answers_total",
                           "Match answers by who gave the best one: local (a cache hit), "
                           "upstream (asked for the shards this node lacks), none (no match).",
                           (const char *[]){"source", NULL}, &ans))
        return SH_ENOMEM;
    m->ans_local = sh_metric_series(ans, (const char *[]){"local", NULL});
    m->ans_upstream = sh_metric_series(ans, (const char *[]){"upstream", NULL});
    m->ans_none = sh_metric_series(ans, (const char *[]){"none", NULL});
    if (sh_metrics_counter(m->reg, "soundhash_edge_rejected_total",
                           "Inputs refused, never applied, by input and reason. input=delta "
                           "(the message skipped): envelope (not a valid IndexDelta), shard (of "
                           "another shard than its partition, or an op of a track of another "
                           "shard), payload (truncated, bit-flipped, wrong checksum, sizes past "
                           "the caps), epoch (older than the shard's), unconfirmed (a newer epoch "
                           "or a gap the snapshot source contradicted for "
                           "--snapshot-confirm-timeout). input=snapshot (the bootstrap fails and "
                           "is retried): format, checksum, size, shard, stale (older than the "
                           "shard or the delta that asked for it).",
                           (const char *[]){"input", "reason", NULL}, &m->f_rejected))
        return SH_ENOMEM;
    const char *shard[] = {"shard", NULL};
    if (sh_metrics_gauge(m->reg, "soundhash_edge_shard_position",
                         "Change-log seq the shard has applied.", shard, &m->f_pos) ||
        sh_metrics_gauge(m->reg, "soundhash_edge_shard_bytes", "Bytes of the shard's data file.",
                         shard, &m->f_bytes) ||
        sh_metrics_gauge(m->reg, "soundhash_edge_shard_tracks", "Live tracks of the shard.",
                         shard, &m->f_tracks))
        return SH_ENOMEM;
    for (size_t i = 0; i < x->nheld; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", x->held[i].n);
        const char *lv[] = {v, NULL};
        x->held[i].m_position = sh_metric_series(m->f_pos, lv);
        x->held[i].m_bytes = sh_metric_series(m->f_bytes, lv);
        x->held[i].m_tracks = sh_metric_series(m->f_tracks, lv);
    }
    if (!m->deltas || !m->ops_applied || !m->ops_skipped || !m->bootstraps || !m->gaps ||
        !m->errors || !m->matches || !m->no_matches || !m->bad_requests || !m->apply_lag ||
        !m->match_hist || !m->req_audio || !m->req_json || !m->req_binary || !m->ans_local ||
        !m->ans_upstream || !m->ans_none)
        return SH_ENOMEM;
    return 0;
}

void ed_count_rejected(ed *x, const char *input, const char *reason)
{
    sh_series_add(sh_metric_series(x->m.f_rejected, (const char *[]){input, reason, NULL}), 1);
}

void ed_metrics_free(ed *x)
{
    sh_metrics_free(x->m.reg);
    x->m.reg = NULL;
}

void ed_shard_gauges(ed *x, ed_shard *sh)
{
    (void)x;
    sh_shard_stats st;
    sh_err e = {0};
    sh_series_set(sh->m_position, (double)atomic_load(&sh->position));
    if (sh->s && sh_shard_stats_get(sh->s, &st, &e) == 0) {
        sh_series_set(sh->m_bytes, (double)st.file_bytes);
        sh_series_set(sh->m_tracks, (double)st.tracks);
    }
}

/* ---- helpers ------------------------------------------------------------------------------ */

int ed_json_error(sh_http_resp *resp, int status, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return SH_ENOMEM;
    size_t n = strlen(s);
    sh_http_resp_take(resp, status, "application/json", s, n);
    return 0;
}

int ed_json_answer(sh_http_resp *resp, int status, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(o);
    if (!s)
        return SH_ENOMEM;
    sh_http_resp_take(resp, status, "application/json", s, strlen(s));
    return 0;
}

int ed_bearer_ok(const char *h, const char *token)
{
    return sh_token_bearer_ok(h, token);
}

int ed_authorised(const ed *x, const sh_http_req *req)
{
    return !x->token || ed_bearer_ok(sh_http_req_header(req, "Authorization"), x->token);
}

/* 0 when the shard has handled all Kafka holds; else the age of its last delta (-1: none). */
static int64_t lag_ms(const ed_shard *sh)
{
    if (atomic_load(&sh->caught_up))
        return 0;
    int64_t c = atomic_load(&sh->created_ms);
    if (!c)
        return -1;
    int64_t l = sh_clock_wall_ms() - c;
    return l < 0 ? 0 : l;
}

/* ---- handlers ----------------------------------------------------------------------------- */

static int on_health(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    (void)req;
    ed *x = ud;
    if (!atomic_load(&x->started))
        return ed_json_answer(resp, 503, json_pack("{s:s}", "status", "starting"));
    return ed_json_answer(resp, 200, json_pack("{s:s}", "status", "ok"));
}

/* Ready = started, every held shard loaded (a position, no bootstrap pending) and either caught up
 * with its partition or its last delta younger than --lag-threshold-ms. */
static int on_ready(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    (void)req;
    ed *x = ud;
    json_t *why = json_array();
    if (!atomic_load(&x->started))
        json_array_append_new(why, json_string("starting"));
    for (size_t i = 0; atomic_load(&x->opened) && i < x->nheld; i++) {
        const ed_shard *sh = &x->held[i];
        char b[96];
        int64_t l = lag_ms(sh);
        if (atomic_load(&sh->position) < 0 || sh->need_bootstrap)
            snprintf(b, sizeof b, "shard %d: not loaded", sh->n);
        else if (l < 0 || l > x->cfg.lag_threshold_ms)
            snprintf(b, sizeof b, "shard %d: lag %" PRId64 " ms", sh->n, l);
        else
            continue;
        json_array_append_new(why, json_string(b));
    }
    int ok = json_array_size(why) == 0;
    return ed_json_answer(resp, ok ? 200 : 503,
                       json_pack("{s:s, s:o}", "status", ok ? "ready" : "not ready", "reasons",
                                 why));
}

static json_t *fp_versions_json(sh_shard *s)
{
    int v[SH_SHARD_FP_VERSIONS_MAX];
    size_t n = 0;
    sh_err e = {0};
    json_t *a = json_array();
    if (s && sh_shard_fp_versions(s, v, SH_SHARD_FP_VERSIONS_MAX, &n, &e) == 0)
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *shard_json(ed_shard *sh)
{
    sh_shard_stats st;
    memset(&st, 0, sizeof st);
    sh_shardsum sum = SH_SHARDSUM_INIT;
    sh_err e = {0};
    pthread_rwlock_rdlock(&sh->lock);
    int rc = sh->s ? sh_shard_stats_get(sh->s, &st, &e) : SH_ENOTFOUND;
    if (rc == 0)
        rc = sh_shard_checksum(sh->s, &sum, &e);
    json_t *fpv = fp_versions_json(sh->s);
    pthread_rwlock_unlock(&sh->lock);
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, sum.sum);
    int64_t l = lag_ms(sh);
    return json_pack("{s:i, s:I, s:I, s:b, s:I, s:I, s:I, s:o, s:o, s:o}", "shard", sh->n,
                     "epoch", (json_int_t)atomic_load(&sh->epoch), "position",
                     (json_int_t)atomic_load(&sh->position), "loaded",
                     rc == 0 && !sh->need_bootstrap, "tracks", (json_int_t)st.tracks,
                     "postings", (json_int_t)st.postings, "bytes", (json_int_t)st.file_bytes,
                     "lag_ms", l < 0 ? json_null() : json_integer(l), "fp_versions", fpv,
                     "checksum",
                     json_pack("{s:s, s:I, s:I}", "sum", hex, "tracks", (json_int_t)sum.tracks,
                               "postings", (json_int_t)sum.postings));
}

const char *ed_node_name(const ed *x)
{
    return x->cfg.region[0] ? x->cfg.region : "edge";
}

static int on_shards(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    ed *x = ud;
    if (!ed_authorised(x, req))
        return ed_json_error(resp, 401, "missing or wrong bearer token");
    if (!atomic_load(&x->opened))
        return ed_json_error(resp, 503, "starting");
    json_t *a = json_array();
    for (size_t i = 0; i < x->nheld; i++)
        json_array_append_new(a, shard_json(&x->held[i]));
    json_t *o = json_pack("{s:s, s:i, s:o}", "node", ed_node_name(x), "nshards", x->nshards,
                          "shards", a);
    if (o && x->up)
        json_object_set_new(o, "upstream", ed_upstream_state_json(x->up));
    return ed_json_answer(resp, 200, o);
}

static int on_metrics(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    (void)req;
    ed *x = ud;
    if (!atomic_load(&x->opened))
        return ed_json_error(resp, 503, "starting");
    char *text = NULL;
    size_t len = 0;
    int rc = sh_metrics_render(x->m.reg, &text, &len);
    if (rc)
        return rc;
    sh_http_resp_take(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    return 0;
}

int ed_http_start(ed *x, sh_err *e)
{
    sh_http_opts o;
    sh_http_opts_default(&o);
    o.max_body = x->cfg.max_body;
    o.timeout_s = (unsigned)x->cfg.request_timeout_s;
    o.header_timeout_s = o.timeout_s;
    o.threads = (unsigned)x->cfg.http_threads;
    if (x->cfg.max_conns > 0) /* else the server's default (an ed set up without options) */
        o.max_conns = (unsigned)x->cfg.max_conns;
    o.max_conns_per_ip = (unsigned)x->cfg.max_conns_per_ip;
    o.json_errors = 1;
    /* The registry exists before the shards' families (ed_metrics_init, later): HTTP starts
     * first, and counts its answers there from the first request on. */
    if (!x->m.reg && sh_metrics_new(&x->m.reg))
        return sh_err_set(e, SH_ENOMEM, "metrics registry");
    o.metrics = x->m.reg;
    int rc = sh_http_new(&o, &x->http, e);
    if (rc == 0)
        rc = sh_http_route(x->http, "GET", "/health", on_health, x);
    if (rc == 0)
        rc = sh_http_route(x->http, "GET", "/ready", on_ready, x);
    if (rc == 0)
        rc = sh_http_route(x->http, "GET", "/metrics", on_metrics, x);
    if (rc == 0)
        rc = sh_http_route(x->http, "GET", "/v1/shards", on_shards, x);
    if (rc == 0)
        rc = sh_http_route(x->http, "POST", "/v1/match", ed_on_match, x);
    if (rc == 0)
        rc = sh_http_start(x->http, x->cfg.listen, e);
    return rc;
}
