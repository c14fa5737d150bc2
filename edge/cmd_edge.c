/* cmd_edge.c — `soundhash edge`: options, start-up, tear-down.
 *
 *   soundhash edge --brokers B --data DIR --shards 0-3|all|LIST --listen ADDR [--region NAME]
 *                  [--snapshot-source URL|DIR] [-X k=v]
 */
#include "edge.h"

#include "sh_cmds.h"
#include "sh_kafka.h"
#include "sh_log.h"
#include "sh_shardmap.h"
#include "sh_token.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>


static const char *const SUMMARY =
    "Keeps local LMDB shards (format 3, DIR/shard-N) exact from the replicator's index deltas "
    "(topic soundhash.index.deltas, partition = shard; partitions assigned by the node itself, no "
    "consumer group) and answers POST /v1/match with an audio clip as the body, or the clip's hashes "
    "(the JSON of `soundhash fingerprint --hashes --query`, or the binary "
    "application/vnd.soundhash.hashes form). Each delta is "
    "applied with the shard's (epoch, position) in one transaction, so a kill at any instant "
    "resumes exactly; a gap, an epoch change, an empty shard or an offset Kafka no longer holds "
    "bootstraps the shard from a snapshot (--snapshot-source: the replicator's URL, or a "
    "directory of shard-N.snap files), swapped in whole. Also GET /health, /ready, /v1/shards "
    "(per-shard checksum for `soundhash verify`), /metrics. Bearer token for /v1/* from env "
    "SOUNDHASH_API_TOKEN or --api-token-file. With --upstream URL, a node that lacks shards asks "
    "URL (POST /v1/match?shards=..., the clip's hashes, never its audio) when its own shards give "
    "fewer answers than asked for; an upstream failure or timeout still answers 200 from the local "
    "shards. SIGTERM/SIGINT: finishes the delta in hand and "
    "exits 0.";

static const sh_opt OPTS[] = {
    {"brokers", 'b', SH_OPT_STR, NULL, NULL, "Kafka bootstrap servers host:port,...",
     SH_OPT_REQUIRED, 0, 0},
    {"data", 0, SH_OPT_STR, NULL, NULL, "directory of the shards (DIR/shard-N, created)",
     SH_OPT_REQUIRED, 0, 0},
    {"shards", 0, SH_OPT_STR, NULL, NULL, "shards held: all, N, A-B, or a comma list of those",
     SH_OPT_REQUIRED, 0, 0},
    {"listen", 0, SH_OPT_STR, NULL, NULL, "serve HTTP on HOST:PORT (port 0: any free port)",
     SH_OPT_REQUIRED, 0, 0},
    {"region", 0, SH_OPT_STR, NULL, "", "node name in answers (<= 64 bytes; default \"edge\")",
     0, 0, 0},
    {"snapshot-source", 0, SH_OPT_STR, NULL, "",
     "replicator base URL (GET URL/v1/snapshots/N) or a directory of shard-N.snap files", 0, 0,
     0},
    {"topic", 0, SH_OPT_STR, NULL, SH_TOPIC_INDEX_DELTAS, "index-delta topic", 0, 0, 0},
    {"api-token-file", 0, SH_OPT_STR, NULL, "",
     "file holding the bearer token for /v1/* (else env SOUNDHASH_API_TOKEN; none: open)", 0, 0,
     0},
    {"upstream", 0, SH_OPT_STR, NULL, "",
     "base URL of a wider node asked, with the clip's hashes, for the shards this one lacks", 0,
     0, 0},
    {"upstream-token-file", 0, SH_OPT_STR, NULL, "",
     "file holding the bearer token sent to --upstream (else env SOUNDHASH_UPSTREAM_TOKEN)", 0, 0,
     0},
    {"upstream-timeout-ms", 0, SH_OPT_INT, NULL, "1500",
     "longest wait for --upstream per request (then the local answer alone)", 0, 1, 600000},
    {"property", 'X', SH_OPT_LIST, NULL, NULL, "librdkafka property key=value (repeatable)", 0,
     0, 0},
    {"lag-threshold-ms", 0, SH_OPT_INT, NULL, "5000",
     "/ready fails when a shard's last delta was created longer ago", 0, 1, 86400000},
    {"connect-timeout", 0, SH_OPT_INT, NULL, "30", "seconds to wait for Kafka at start", 0, 1,
     3600},
    {"max-body", 0, SH_OPT_SIZE, NULL, "2M", "POST /v1/match body cap (413 above)", 0, 0, 0},
    {"max-clip-s", 0, SH_OPT_INT, NULL, "60",
     "longest clip decoded, and hashes accepted: this × the densest query config's hashes per "
     "second (413 above)", 0, 1, 600},
    {"http-threads", 0, SH_OPT_INT, NULL, "4",
     "HTTP worker threads (one recognizer per fp_version each)", 0, 1,
     64},
    {"match-threads", 0, SH_OPT_INT, NULL, "2",
     "threads one match request looks its shards up on: the HTTP thread and helpers from one "
     "pool shared by all requests (1: no helpers)", 0, 1, 16},
    {"request-timeout", 0, SH_OPT_INT, NULL, "10",
     "seconds an idle connection lives, and a request's headers or body may take", 0, 1, 600},
    {"max-conns", 0, SH_OPT_INT, NULL, "1024", "concurrent HTTP connections (more: closed)", 0,
     1, 16384},
    {"max-conns-per-ip", 0, SH_OPT_INT, NULL, "256",
     "concurrent HTTP connections from one client address (0: no limit but --max-conns)", 0, 0,
     16384},
    {"snapshot-max-bytes", 0, SH_OPT_SIZE, NULL, "16G", "largest snapshot downloaded", 0, 0, 0},
    {"snapshot-timeout", 0, SH_OPT_INT, NULL, "600", "seconds one snapshot download may take", 0,
     1, 86400},
    {"snapshot-token-file", 0, SH_OPT_STR, NULL, "",
     "file holding the bearer token sent to a --snapshot-source URL (else env "
     "SOUNDHASH_SNAPSHOT_TOKEN)", 0, 0, 0},
    {"snapshot-confirm-timeout", 0, SH_OPT_INT, NULL, "30",
     "seconds the snapshot source may answer older than a delta's newer epoch or gap before that "
     "delta is rejected and the shard resumes after it", 0, 0, 86400},
    {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static void init_opts(ed_config *c, sh_opt *opts, sh_cmd_spec *spec)
{
    void *targets[] = {&c->brokers,          &c->data,          &c->shards,
                       &c->listen,           &c->region,        &c->snapshot_source,
                       &c->topic,            &c->token_file,    &c->upstream,
                       &c->upstream_token_file, &c->upstream_timeout_ms, &c->kafka_props,
                       &c->lag_threshold_ms, &c->connect_timeout_s, &c->max_body,
                       &c->max_clip_s,       &c->http_threads,  &c->match_threads,
                       &c->request_timeout_s,
                       &c->max_conns,        &c->max_conns_per_ip,
                       &c->snapshot_max,     &c->snapshot_timeout_s, &c->snapshot_token_file,
                       &c->snapshot_confirm_s};
    _Static_assert(sizeof targets / sizeof targets[0] == N_OPTS - 1, "one target per option");
    memcpy(opts, OPTS, sizeof OPTS);
    for (size_t i = 0; i < N_OPTS - 1; i++)
        opts[i].target = targets[i];
    spec->name = "edge";
    spec->usage = "--brokers B --data DIR --shards 0-3|all|LIST --listen ADDR [options]";
    spec->examples =
        "soundhash edge --brokers 127.0.0.1:9092 --data /var/lib/soundhash/edge --shards 0-3 "
        "--listen 127.0.0.1:8080 --snapshot-source http://127.0.0.1:9200\n"
        "soundhash edge -b 127.0.0.1:9092 --data ./region --shards all --listen :8080 --region "
        "eu-west\n"
        "soundhash edge -b 127.0.0.1:9092 --data ./edge --shards 0-1 --listen :8081 --upstream "
        "http://eu-west.example:8080 --upstream-timeout-ms 800\n"
        "curl --data-binary @clip.ogg http://127.0.0.1:8080/v1/match";
    spec->summary = SUMMARY;
    spec->opts = opts;
}

/* Parses "all", "N", "A-B" and comma lists into marks[0..SH_SHARDS_MAX); *all for "all". */
static int parse_shards(const char *spec, unsigned char *marks, bool *all, sh_err *e)
{
    *all = !strcmp(spec, "all");
    if (*all)
        return 0;
    const char *p = spec;
    size_t n = 0;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long a = strtoul(p, &end, 10), b = a;
        if (end == p || errno || *p == '-' || *p == '+')
            break;
        p = end;
        if (*p == '-') {
            const char *q = p + 1;
            b = strtoul(q, &end, 10);
            if (end == q || *q == '-' || *q == '+')
                break;
            p = end;
        }
        if (a > b || b >= SH_SHARDS_MAX)
            return sh_err_set(e, SH_EUSAGE, "--shards %s: ranges go up, below %u", spec,
                              SH_SHARDS_MAX);
        for (unsigned long i = a; i <= b; i++)
            n += !marks[i]++;
        if (*p == ',' && p[1])
            p++;
        else if (*p)
            break;
    }
    if (*p || n == 0)
        return sh_err_set(e, SH_EUSAGE, "--shards %s: want all, N, A-B or a comma list", spec);
    return 0;
}

/* An http:// or https:// URL (--snapshot-source may also be a directory). */
static int is_url(const char *s)
{
    return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

static int check_config(const ed_config *c, unsigned char *marks, bool *all, sh_err *e)
{
    int rc = parse_shards(c->shards, marks, all, e);
    if (rc)
        return rc;
    if (strlen(c->region) > SH_REGION_MAX)
        return sh_err_set(e, SH_EUSAGE, "--region: at most %d bytes", SH_REGION_MAX);
    if (!c->data[0])
        return sh_err_set(e, SH_EUSAGE, "--data: empty");
    if (!c->topic[0])
        return sh_err_set(e, SH_EUSAGE, "--topic: empty");
    if (c->max_body < 1024 || c->max_body > (size_t)256 << 20)
        return sh_err_set(e, SH_EUSAGE, "--max-body: 1K to 256M");
    if (c->snapshot_max < 4096)
        return sh_err_set(e, SH_EUSAGE, "--snapshot-max-bytes: at least 4K");
    if (c->upstream[0] && strncmp(c->upstream, "http://", 7) != 0 &&
        strncmp(c->upstream, "https://", 8) != 0)
        return sh_err_set(e, SH_EUSAGE, "--upstream %s: want http://HOST:PORT or https://...",
                          c->upstream);
    if (!c->upstream[0] && c->upstream_token_file[0])
        return sh_err_set(e, SH_EUSAGE, "--upstream-token-file: needs --upstream");
    if (!is_url(c->snapshot_source) && c->snapshot_token_file[0])
        return sh_err_set(e, SH_EUSAGE, "--snapshot-token-file: needs a --snapshot-source URL");
    return sh_kafka_props_check(c->brokers, &c->kafka_props, e);
}

/* The API's bearer token, the one sent to --upstream and the one sent to the snapshot source. */
static int load_tokens(ed *x, sh_err *e)
{
    int rc = sh_token_load(x->cfg.token_file, "--api-token-file", "SOUNDHASH_API_TOKEN",
                           &x->token, e);
    if (rc == 0 && x->cfg.upstream[0])
        rc = sh_token_load(x->cfg.upstream_token_file, "--upstream-token-file",
                           "SOUNDHASH_UPSTREAM_TOKEN", &x->up_token, e);
    if (rc == 0 && is_url(x->cfg.snapshot_source))
        rc = sh_token_load(x->cfg.snapshot_token_file, "--snapshot-token-file",
                           "SOUNDHASH_SNAPSHOT_TOKEN", &x->snap_token, e);
    return rc;
}

/* The held shards, from the marks (or every partition). */
static int held_new(ed *x, const unsigned char *marks, bool all, sh_err *e)
{
    size_t n = 0;
    for (int s = 0; s < x->nshards; s++)
        n += all || marks[s];
    for (unsigned s = (unsigned)x->nshards; !all && s < SH_SHARDS_MAX; s++)
        if (marks[s])
            return sh_err_set(e, SH_EUSAGE, "--shards: shard %u, but topic %s has %d partitions",
                              s, x->cfg.topic, x->nshards);
    if (!(x->held = calloc(n, sizeof *x->held)))
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    for (int s = 0; s < x->nshards; s++) {
        if (!all && !marks[s])
            continue;
        ed_shard *sh = &x->held[x->nheld++];
        sh->n = s;
        snprintf(sh->dir, sizeof sh->dir, "%s/shard-%d", x->cfg.data, s);
        pthread_rwlock_init(&sh->lock, NULL);
        atomic_store(&sh->position, -1);
        atomic_store(&sh->epoch, -1);
        sh->offset = -1;
    }
    return 0;
}

/* 1 when `url` names this node: a loopback or the --listen host, and the port it listens on. */
static int is_self(const ed *x, const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    int self = 0;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        const char *lh = x->cfg.listen, *colon = strrchr(lh, ':');
        size_t lhn = colon ? (size_t)(colon - lh) : 0;
        int local = !strcmp(host, "localhost") || !strncmp(host, "127.", 4) ||
                    !strcmp(host, "[::1]") || !strcmp(host, "0.0.0.0") ||
                    (lhn && strlen(host) == lhn && !strncmp(host, lh, lhn));
        long p = 0;
        self = local && sh_parse_long(port, &p) == 0 && p == sh_http_port(x->http);
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return self;
}

/* The --upstream client (none without the flag), after the metrics registry. */
static int upstream_new(ed *x, sh_err *e)
{
    if (!x->cfg.upstream[0])
        return 0;
    unsigned char raw[ED_UP_ORIGIN_LEN / 2];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return sh_err_set(e, SH_EIO, "getrandom: %s", strerror(errno));
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(x->origin + 2 * i, 3, "%02x", raw[i]);
    ed_up_config c = {.url = x->cfg.upstream,
                      .token = x->up_token,
                      .origin = x->origin,
                      .timeout_ms = x->cfg.upstream_timeout_ms,
                      .handles = (size_t)x->cfg.http_threads,
                      .nshards = x->nshards};
    return ed_upstream_new(&c, x->m.reg, &x->up, e);
}

/* HTTP first (503 "starting" while Kafka is awaited), then Kafka, the shards, the bootstraps. */
static int start(ed *x, const unsigned char *marks, bool all, sh_err *e)
{
    sh_schema_limits_default(&x->lim);
    int rc = sh_registry_new_from_env(&x->reg, e);
    if (rc == 0)
        rc = ed_slots_new(x, e);
    if (rc == 0 && (rc = ed_http_start(x, e))) {
        if (rc == SH_EINVAL)
            return sh_opt_usage_error(e, "--listen");
        char why[SH_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", sh_err_text(e));
        return sh_err_set(e, rc, "--listen: %s", why);
    }
    /* This node's own address is refused at once; the X-SoundHash-Origin check (508) catches the
     * rest, e.g. another name of this host. */
    if (rc == 0 && x->cfg.upstream[0] && is_self(x, x->cfg.upstream))
        rc = sh_err_set(e, SH_EUSAGE, "--upstream %s: that is this node", x->cfg.upstream);
    if (rc == 0 && mkdir(x->cfg.data, 0755) != 0 && errno != EEXIST)
        rc = sh_err_set(e, SH_EUSAGE, "--data %s: %s", x->cfg.data, strerror(errno));
    if (rc == 0)
        rc = ed_consumer_start(x, e);
    if (rc == 0)
        rc = held_new(x, marks, all, e);
    if (rc == 0 && ed_metrics_init(x))
        rc = sh_err_set(e, SH_ENOMEM, "metrics registry");
    if (rc == 0)
        rc = upstream_new(x, e);
    if (rc == 0)
        rc = ed_shards_open(x, e);
    atomic_store(&x->opened, rc == 0);
    return rc;
}

static void teardown(ed *x)
{
    sh_http_free(x->http); /* first: its handlers read what is freed below */
    if (x->consumer) {
        rd_kafka_consumer_close(x->consumer);
        rd_kafka_destroy(x->consumer);
    }
    ed_shards_close(x);
    for (size_t i = 0; i < x->nheld; i++)
        pthread_rwlock_destroy(&x->held[i].lock);
    free(x->held);
    ed_slots_free(x);
    ed_metrics_free(x);
    sh_registry_free(x->reg);
    free(x->token);
    ed_upstream_free(x->up);
    free(x->up_token);
    free(x->snap_token);
}

int sh_cmd_edge(int argc, char **argv)
{
    ed x;
    memset(&x, 0, sizeof x);
    sh_cmd_spec spec;
    memset(&spec, 0, sizeof spec);
    sh_opt opts[N_OPTS];
    init_opts(&x.cfg, opts, &spec);
    unsigned char marks[SH_SHARDS_MAX] = {0};
    bool all = false;
    sh_err e = {0};
    int code = sh_opt_exit_code(&spec, sh_opt_parse(&spec, argc, argv, &e), &e);
    if (code < 0 && spec.args.n) {
        sh_err_set(&e, SH_EUSAGE, "unexpected argument '%s'", spec.args.v[0]);
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0 && (check_config(&x.cfg, marks, &all, &e) || load_tokens(&x, &e)))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code >= 0) {
        free(x.token);
        free(x.up_token);
        free(x.snap_token);
        sh_opt_free(&spec);
        return code;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sh_stop stop;
    int rc = sh_stop_install(&stop, SH_STOP_IGNORE_SIGPIPE, &e);
    x.stop = &stop;
    if (rc == 0)
        rc = start(&x, marks, all, &e);
    if (rc == 0) {
        SH_INFO("edge_started", "shards=%zu of=%d region=%s snapshot_source=%s upstream=%s "
                "origin=%s", x.nheld, x.nshards, x.cfg.region, x.cfg.snapshot_source,
                x.cfg.upstream, x.origin);
        rc = ed_run(&x, &e);
    }
    if (rc == SH_ECANCELED)
        rc = 0;
    if (rc == SH_EUSAGE)
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    else if (rc)
        fprintf(stderr, "soundhash edge: %s\n", sh_err_text(&e));
    teardown(&x);
    sh_stop_uninstall(&stop);
    curl_global_cleanup();
    SH_INFO("edge_stopped", "rc=%d", rc);
    sh_opt_free(&spec);
    return rc == SH_EUSAGE ? SH_EXIT_USAGE : rc ? SH_EXIT_RUNTIME : SH_EXIT_OK;
}
