/* rmetrics.c — the replicator's metrics and its HTTP side: /health, /metrics and the per-shard
 * snapshots new or lagging subscribers bootstrap from. */
#include "replicator.h"

#include "sh_clock.h"
#include "sh_log.h"
#include "sh_token.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rp_metrics_shards(rp *r)
{
    for (int s = 0; s < r->nshards; s++) {
        char v[16];
        snprintf(v, sizeof v, "%d", s);
        const char *lv[] = {v, NULL};
        rp_shard *sh = &r->shards[s];
        sh->deltas = sh_metric_series(r->m.f_deltas, lv);
        sh->bytes = sh_metric_series(r->m.f_bytes, lv);
        sh->ops = sh_metric_series(r->m.f_ops, lv);
        sh->position = sh_metric_series(r->m.f_pos, lv);
        /* Past SH_METRICS_MAX_SERIES shards the series are NULL (updates are no-ops): the
         * per-shard metrics cover the first ones, the totals all. */
    }
    return 0;
}

static sh_series *plain(sh_metrics *m, int kind, const char *name, const char *help)
{
    sh_metric *f = NULL;
    int rc = kind == 0 ? sh_metrics_counter(m, name, help, NULL, &f)
                       : sh_metrics_gauge(m, name, help, NULL, &f);
    return rc ? NULL : sh_metric_series(f, NULL);
}

int rp_metrics_init(rp *r)
{
    rp_metrics *m = &r->m;
    int rc = sh_metrics_new(&m->reg);
    if (rc)
        return rc;
    const char *shard[] = {"shard", NULL};
    double b[20];
    sh_metrics_exp_buckets(0.002, 1.5, 20, b); /* 2 ms .. 4.4 s */
    sh_metric *lag = NULL;
    rc = sh_metrics_counter(m->reg, "soundhash_replicator_deltas_total",
                            "Deltas acknowledged by Kafka, per shard.", shard, &m->f_deltas);
    if (rc == 0)
        rc = sh_metrics_counter(m->reg, "soundhash_replicator_delta_bytes_total",
                                "Bytes of acknowledged delta messages, per shard.", shard,
                                &m->f_bytes);
    if (rc == 0)
        rc = sh_metrics_counter(m->reg, "soundhash_replicator_ops_total",
                                "Ops (upserts and deletes) published, per shard.", shard, &m->f_ops);
    if (rc == 0)
        rc = sh_metrics_gauge(m->reg, "soundhash_replicator_shard_position",
                              "Change-log seq of the last acknowledged delta, per shard.", shard,
                              &m->f_pos);
    if (rc == 0)
        rc = sh_metrics_histogram(m->reg, "soundhash_replicator_commit_to_ack_seconds",
                                  "Primary commit to Kafka acknowledgement of the change's delta.",
                                  NULL, b, 20, &lag);
    sh_metric *rd = NULL, *pub = NULL;
    double sb[16];
    sh_metrics_exp_buckets(0.0005, 2, 14, sb); /* 0.5 ms .. 4 s */
    if (rc == 0)
        rc = sh_metrics_histogram(m->reg, "soundhash_replicator_read_seconds",
                                  "One batch read from the primary's change log (with blobs).",
                                  NULL, sb, 14, &rd);
    if (rc == 0)
        rc = sh_metrics_histogram(m->reg, "soundhash_replicator_publish_seconds",
                                  "Produce to the last Kafka acknowledgement of a batch's deltas.",
                                  NULL, sb, 14, &pub);
    if (rc)
        return rc;
    m->lag_hist = sh_metric_series(lag, NULL);
    m->read_hist = sh_metric_series(rd, NULL);
    m->publish_hist = sh_metric_series(pub, NULL);
    m->postings = plain(m->reg, 0, "soundhash_replicator_postings_total", "Postings published.");
    m->raw_bytes = plain(m->reg, 0, "soundhash_replicator_payload_raw_bytes_total",
                         "Delta payload bytes before zstd.");
    m->wire_bytes = plain(m->reg, 0, "soundhash_replicator_payload_wire_bytes_total",
                          "Delta payload bytes on the wire (after zstd).");
    m->blob_bytes = plain(m->reg, 0, "soundhash_replicator_primary_blob_bytes_total",
                          "The primary's posting-blob bytes of the tracks published "
                          "(wire/blob = the delta codec's gain over the stored blob).");
    m->backlog = plain(m->reg, 1, "soundhash_replicator_backlog_changes",
                       "Changes committed in the primary and not yet published.");
    m->last_seq = plain(m->reg, 1, "soundhash_replicator_last_seq",
                        "Change-log seq every shard's stream has reached.");
    m->primary_seq = plain(m->reg, 1, "soundhash_replicator_primary_seq",
                           "The primary's last change-log seq.");
    m->batches = plain(m->reg, 0, "soundhash_replicator_batches_total", "Batches published.");
    m->errors = plain(m->reg, 0, "soundhash_replicator_errors_total",
                      "Rounds that failed and were retried (database or Kafka).");
    m->superseded = plain(m->reg, 0, "soundhash_replicator_superseded_total",
                          "Changes skipped because a later change carries the newer state.");
    m->snapshots = plain(m->reg, 0, "soundhash_replicator_snapshots_total", "Snapshots served.");
    if (!m->postings || !m->raw_bytes || !m->wire_bytes || !m->blob_bytes || !m->backlog ||
        !m->last_seq || !m->primary_seq || !m->batches || !m->errors || !m->superseded ||
        !m->snapshots)
        return SH_ENOMEM;
    return 0;
}

void rp_metrics_free(rp *r)
{
    sh_metrics_free(r->m.reg);
    r->m.reg = NULL;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

static int on_metrics(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    (void)req;
    rp *r = ud;
    char *text = NULL;
    size_t len = 0;
    int rc = sh_metrics_render(r->m.reg, &text, &len);
    if (rc)
        return rc;
    sh_http_resp_take(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    return 0;
}

/* What /health says of Kafka: "down" after a failed round (until the producer is rebuilt and the
 * positions re-read), "blocked" while a round's deltas wait longer than RP_ACK_BLOCKED_MS for
 * their acks (the producer retries silently: too few in-sync replicas, no leader), else "ok". */
static const char *kafka_state(rp *r)
{
    if (!atomic_load(&r->kafka_ok))
        return "down";
    int64_t since = atomic_load(&r->acks_since_ms);
    if (since && (int64_t)sh_clock_mono_ms() - since > RP_ACK_BLOCKED_MS)
        return "blocked";
    return "ok";
}

/* Healthy = the primary answers, Kafka acknowledges ("ok") and the oldest unpublished change is
 * younger than the lag threshold. */
static int on_health(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    (void)req;
    rp *r = ud;
    if (!atomic_load(&r->started)) {
        const char *b = "{\"status\":\"starting\"}\n";
        return sh_http_resp_set(resp, 503, "application/json", b, strlen(b));
    }
    bool db = atomic_load(&r->db_ok);
    const char *kafka = kafka_state(r);
    int64_t oldest = atomic_load(&r->oldest_pending_ms);
    int64_t lag_ms = oldest ? sh_clock_wall_ms() - oldest : 0;
    if (lag_ms < 0)
        lag_ms = 0;
    bool ok = db && !strcmp(kafka, "ok") && lag_ms <= r->cfg.lag_threshold_ms;
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"%s\",\"db\":\"%s\",\"kafka\":\"%s\",\"lag_ms\":%" PRId64
                     ",\"lag_threshold_ms\":%ld,\"epoch\":%" PRId64 ",\"primary_seq\":%" PRId64
                     ",\"shards\":%d}\n",
                     ok ? "ok" : "unhealthy", db ? "ok" : "down", kafka, lag_ms,
                     r->cfg.lag_threshold_ms, (int64_t)atomic_load(&r->epoch), atomic_load(&r->primary_seq), r->nshards);
    return sh_http_resp_set(resp, ok ? 200 : 503, "application/json", body, (size_t)n);
}

static int json_error(sh_http_resp *resp, int status, const char *msg)
{
    char body[600];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", msg);
    return sh_http_resp_set(resp, status, "application/json", body, (size_t)n);
}

/* Builds the snapshot into an unlinked temporary file and streams that: the snapshot's database
 * transaction ends before the (possibly slow) client reads, and memory stays bounded. */
static int serve_snapshot(rp *r, int shard, sh_http_resp *resp);

/* The shard number of "/v1/snapshots/{shard}": digits only, below the shard count. */
static int parse_shard(const rp *r, const char *path, int *shard)
{
    const char *p = path + strlen("/v1/snapshots/");
    size_t n = strspn(p, "0123456789");
    if (n == 0 || n > 5 || p[n])
        return SH_EINVAL;
    long v = strtol(p, NULL, 10);
    if (v >= r->nshards)
        return SH_ENOTFOUND;
    *shard = (int)v;
    return 0;
}

static int on_snapshot(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    rp *r = ud;
    /* A snapshot is the whole shard: with a token configured, only its holders get one. */
    if (r->token && !sh_token_bearer_ok(sh_http_req_header(req, "Authorization"), r->token))
        return json_error(resp, 401, "missing or wrong bearer token");
    if (!atomic_load(&r->started))
        return json_error(resp, 503, "starting");
    int shard = 0;
    int prc = parse_shard(r, req->path, &shard);
    if (prc)
        return json_error(resp, prc == SH_ENOTFOUND ? 404 : 400,
                          prc == SH_ENOTFOUND ? "no such shard" : "shard must be a number");
    /* One at a time: a snapshot reads the whole catalogue, and /health must keep answering. */
    if (atomic_exchange(&r->snapshot_busy, true))
        return json_error(resp, 503, "another snapshot is being built: retry later");
    int rc = serve_snapshot(r, shard, resp);
    atomic_store(&r->snapshot_busy, false);
    return rc;
}

static int serve_snapshot(rp *r, int shard, sh_http_resp *resp)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/soundhash-snapshot.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return json_error(resp, 500, "cannot create a temporary file");
    unlink(path);
    sh_primary *db = NULL;
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = r->cfg.dsn;
    pc.application_name = "soundhash-replicator-snapshot";
    sh_err e = {0};
    int64_t seq = 0;
    uint64_t tracks = 0;
    int rc = sh_primary_new(&pc, &db, &e);
    if (rc == 0)
        rc = rp_snapshot_write(db, shard, r->nshards, atomic_load(&r->epoch), fd, &seq, &tracks, &e);
    sh_primary_free(db);
    struct stat st;
    if (rc == 0 && fstat(fd, &st) != 0)
        rc = sh_err_set(&e, SH_EIO, "fstat: %s", strerror(errno));
    if (rc) {
        close(fd);
        SH_WARN("snapshot_failed", "shard=%d code=%s msg=\"%s\"", shard, sh_err_name(rc),
                sh_err_text(&e));
        return json_error(resp, rc == SH_ETRANSIENT ? 503 : 500, "snapshot failed");
    }
    sh_series_add(r->m.snapshots, 1);
    SH_INFO("snapshot_served", "shard=%d seq=%" PRId64 " tracks=%" PRIu64 " bytes=%lld",
            shard, seq, tracks, (long long)st.st_size);
    return sh_http_resp_fd(resp, 200, "application/octet-stream", fd, (uint64_t)st.st_size);
}

int rp_http_start(rp *r, sh_err *e)
{
    if (!r->cfg.http || !r->cfg.http[0])
        return 0;
    sh_http_opts o;
    sh_http_opts_default(&o);
    o.max_body = 0; /* no route takes a body */
    o.timeout_s = 120; /* idle: a snapshot is built before its first byte is sent */
    o.header_timeout_s = 10; /* but headers come at once (a trickle would hold a connection) */
    o.threads = 4; /* a snapshot being built occupies one; /health and /metrics keep the others */
    o.metrics = r->m.reg; /* soundhash_http_responses_total */
    int rc = sh_http_new(&o, &r->http, e);
    if (rc == 0)
        rc = sh_http_route(r->http, "GET", "/health", on_health, r);
    if (rc == 0)
        rc = sh_http_route(r->http, "GET", "/metrics", on_metrics, r);
    if (rc == 0)
        rc = sh_http_route(r->http, "GET", "/v1/snapshots/*", on_snapshot, r);
    if (rc == 0)
        rc = sh_http_start(r->http, r->cfg.http, e);
    return rc;
}
