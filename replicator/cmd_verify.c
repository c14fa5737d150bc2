/* cmd_verify.c — `soundhash verify`: each shard's checksum (sh_shardsum.h) from one consistent
 * read of the primary, compared with what every edge publishes at GET {URL}/v1/shards.
 *
 *   soundhash verify --dsn DSN --edge URL [--edge URL...] [--wait S] [--shards N]
 *
 * Lives with the replicator because it needs libpq (the primary) and libcurl + jansson (the
 * edges); the edge itself never links the primary's code.
 */
#include "sh_clock.h"
#include "sh_cmds.h"
#include "sh_opt.h"
#include "sh_httpc.h"
#include "sh_primary.h"
#include "sh_shardmap.h"
#include "sh_shardsum.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VF_BODY_MAX (4u << 20) /* /v1/shards of 1024 shards is well under 1 MiB */

typedef struct vf_cfg {
    char *dsn;
    sh_strlist edges;
    long wait_s;
    long shards;
} vf_cfg;

/* One edge shard as published. */
typedef struct vf_eshard {
    int shard;
    int64_t epoch;
    int64_t position;
    sh_shardsum sum;
} vf_eshard;

typedef struct vf_edge {
    const char *url; /* borrowed from the config */
    char node[128];
    vf_eshard *v;
    size_t n;
    int starting; /* its last answer was 503 (opening, bootstrapping): waited for like a lag */
} vf_edge;

/* ---- the edges' side ---------------------------------------------------------------------- */

/* GET {url}/v1/shards into *out (caller frees). Errors: SH_ETRANSIENT (503: the edge is starting),
 * SH_EIO (unreachable, another non-200), SH_ETIMEOUT, SH_ETOOBIG, SH_ENOMEM. */
static int http_get_shards(const char *url, const char *token, char **out, sh_err *e)
{
    sh_httpc_opts o;
    sh_httpc_opts_default(&o);
    o.token = token;
    o.max_body = VF_BODY_MAX;
    long status = 0;
    char *body = NULL;
    int rc = sh_httpc_get(url, "/v1/shards", &o, &status, &body, NULL, e);
    if (rc == 0 && status == 503)
        rc = sh_err_set(e, SH_ETRANSIENT, "edge %s: still starting (503)", url);
    else if (rc == 0 && status != 200)
        rc = sh_err_set(e, SH_EIO, "edge %s: GET /v1/shards answered %ld", url, status);
    else if (rc == 0 && !*body)
        rc = sh_err_set(e, SH_EIO, "edge %s: empty answer", url);
    if (rc)
        free(body);
    else
        *out = body;
    return rc;
}

static int parse_sum(json_t *ck, sh_shardsum *s)
{
    const char *hex = NULL;
    json_int_t tracks = -1, postings = -1;
    if (json_unpack(ck, "{s:s, s:I, s:I}", "sum", &hex, "tracks", &tracks, "postings", &postings) ||
        strlen(hex) != 16 || tracks < 0 || postings < 0)
        return -1;
    char *end = NULL;
    s->sum = strtoull(hex, &end, 16);
    s->tracks = (uint64_t)tracks;
    s->postings = (uint64_t)postings;
    return *end ? -1 : 0;
}

/* Parses one /v1/shards answer into ed (replacing what it held). Errors: SH_EFORMAT. */
static int parse_shards(const char *body, long nshards, vf_edge *ed, sh_err *e)
{
    json_error_t je;
    json_t *root = json_loads(body, 0, &je), *arr = NULL;
    const char *node = NULL;
    json_int_t ns = 0;
    int rc = 0;
    if (!root || json_unpack(root, "{s:s, s:I, s:o}", "node", &node, "nshards", &ns, "shards",
                             &arr) || !json_is_array(arr))
        rc = sh_err_set(e, SH_EFORMAT, "edge %s: /v1/shards is not the expected JSON", ed->url);
    else if (ns != nshards)
        rc = sh_err_set(e, SH_EFORMAT, "edge %s: %" PRId64 " shards, --shards is %ld", ed->url,
                        (int64_t)ns, nshards);
    free(ed->v);
    ed->v = NULL;
    ed->n = 0;
    if (rc == 0) {
        snprintf(ed->node, sizeof ed->node, "%s", node);
        ed->v = calloc(json_array_size(arr) + 1, sizeof *ed->v);
        if (!ed->v)
            rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it) {
        if (rc)
            break;
        json_int_t sh = -1, ep = 0, pos = -1;
        json_t *ck = NULL;
        vf_eshard *x = &ed->v[ed->n];
        if (json_unpack(it, "{s:I, s:I, s:I, s:o}", "shard", &sh, "epoch", &ep, "position", &pos,
                        "checksum", &ck) || sh < 0 || sh >= nshards || parse_sum(ck, &x->sum))
            rc = sh_err_set(e, SH_EFORMAT, "edge %s: a malformed shard entry", ed->url);
        x->shard = (int)sh;
        x->epoch = ep;
        x->position = pos;
        ed->n += rc == 0;
    }
    json_decref(root);
    return rc;
}

/* Fetches every edge; *behind = 1 when some shard's position is below seq. */
static int fetch_edges(vf_edge *edges, size_t n, long nshards, int64_t seq, int *behind, sh_err *e)
{
    const char *token = sh_httpc_env_token();
    *behind = 0;
    for (size_t i = 0; i < n; i++) {
        char *body = NULL;
        int rc = http_get_shards(edges[i].url, token, &body, e);
        edges[i].starting = rc == SH_ETRANSIENT;
        if (edges[i].starting) {
            *behind = 1; /* a starting edge is behind, not broken: --wait covers it */
            continue;
        }
        if (rc == 0)
            rc = parse_shards(body, nshards, &edges[i], e);
        free(body);
        if (rc)
            return rc;
        for (size_t k = 0; k < edges[i].n; k++)
            *behind |= edges[i].v[k].position < seq;
    }
    return 0;
}

static void print_sum(const char *key, const sh_shardsum *s)
{
    printf("\"%s\":{\"sum\":\"%016" PRIx64 "\",\"tracks\":%" PRIu64 ",\"postings\":%" PRIu64 "}",
           key, s->sum, s->tracks, s->postings);
}

/* One line per node and shard; returns how many differ. */
static long report(const vf_edge *edges, size_t n, const sh_shardsum *sums, int64_t seq)
{
    long bad = 0, checked = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < edges[i].n; k++) {
            const vf_eshard *x = &edges[i].v[k];
            int ok = sh_shardsum_equal(&x->sum, &sums[x->shard]);
            json_t *node = json_string(edges[i].node);
            char *nj = node ? json_dumps(node, JSON_ENCODE_ANY) : NULL;
            printf("{\"node\":%s,\"shard\":%d,\"epoch\":%" PRId64 ",\"position\":%" PRId64
                   ",\"primary_seq\":%" PRId64 ",",
                   nj ? nj : "null", x->shard, x->epoch, x->position, seq);
            free(nj);
            json_decref(node);
            print_sum("edge", &x->sum);
            putchar(',');
            print_sum("primary", &sums[x->shard]);
            printf(",\"ok\":%s}\n", ok ? "true" : "false");
            if (!ok)
                fprintf(stderr, "soundhash verify: node %s (%s) shard %d differs from the primary\n",
                        edges[i].node, edges[i].url, x->shard);
            bad += !ok;
            checked++;
        }
    printf("{\"summary\":true,\"nodes\":%zu,\"shards_checked\":%ld,\"mismatched\":%ld,"
           "\"primary_seq\":%" PRId64 "}\n",
           n, checked, bad, seq);
    fflush(stdout);
    return bad;
}

/* The URL of an edge whose last answer was 503, or NULL. */
static const char *starting_url(const vf_edge *edges, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (edges[i].starting)
            return edges[i].url;
    return NULL;
}

/* Waits (bounded) until every edge shard has reached the seq of a primary read that is still
 * current, then compares. *mismatched gets the count. Errors: SH_ETIMEOUT, those of the reads. */
static int verify(sh_primary *db, const vf_cfg *c, vf_edge *edges, long *mismatched, sh_err *e)
{
    sh_shardsum *sums = calloc((size_t)c->shards, sizeof *sums);
    if (!sums)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    double deadline = sh_clock_mono_ms() + (double)c->wait_s * 1000;
    int64_t seq = -1, now = -1;
    int behind = 1, rc = sh_primary_shard_sums(db, (int)c->shards, sums, &seq, NULL, NULL, e);
    while (rc == 0) {
        rc = fetch_edges(edges, c->edges.n, c->shards, seq, &behind, e);
        if (rc == 0 && !behind)
            rc = sh_primary_last_seq(db, &now, e);
        if (rc == 0 && !behind && now == seq)
            break; /* the edges reached a read the primary has not moved past */
        const char *still = starting_url(edges, c->edges.n);
        if (rc == 0 && still && sh_clock_mono_ms() > deadline)
            rc = sh_err_set(e, SH_ETIMEOUT, "edge %s still starting (503) after --wait %ld s",
                            still, c->wait_s);
        if (rc == 0 && sh_clock_mono_ms() > deadline)
            rc = sh_err_set(e, SH_ETIMEOUT,
                            behind ? "edges did not reach the primary's seq %" PRId64
                                     " within --wait %ld s"
                                   : "the primary kept moving (seq %" PRId64
                                     ") for --wait %ld s: no quiet moment to compare at",
                            seq, c->wait_s);
        if (rc == 0 && !behind)
            rc = sh_primary_shard_sums(db, (int)c->shards, sums, &seq, NULL, NULL, e);
        else if (rc == 0)
            sh_clock_sleep_ms(200, NULL, NULL);
    }
    if (rc == 0)
        *mismatched = report(edges, c->edges.n, sums, seq);
    free(sums);
    return rc;
}

/* ---- options ------------------------------------------------------------------------------ */

static int check_config(const vf_cfg *c, sh_err *e)
{
    if (c->edges.n == 0)
        return sh_err_set(e, SH_EUSAGE, "--edge: at least one edge URL is required");
    for (size_t i = 0; i < c->edges.n; i++)
        if (!sh_httpc_url_ok(c->edges.v[i]))
            return sh_err_set(e, SH_EUSAGE, "--edge %s: not an http:// or https:// URL",
                              c->edges.v[i]);
    int rc = sh_primary_dsn_check(c->dsn, e);
    return rc == SH_EINVAL ? sh_opt_usage_error(e, "--dsn") : rc;
}

int sh_cmd_verify(int argc, char **argv)
{
    vf_cfg c;
    memset(&c, 0, sizeof c);
    sh_opt opts[] = {
        {"dsn", 0, SH_OPT_STR, &c.dsn, NULL,
         "primary PostgreSQL connection string (password: env SOUNDHASH_DB_PASSWORD)",
         SH_OPT_REQUIRED | SH_OPT_DSN, 0, 0},
        {"edge", 0, SH_OPT_LIST, &c.edges, NULL,
         "edge base URL, e.g. http://10.0.0.5:8080 (repeatable; bearer token: env "
         "SOUNDHASH_API_TOKEN)",
         0, 0, 0},
        {"wait", 0, SH_OPT_INT, &c.wait_s, "30",
         "seconds to wait for the edges to reach the primary's seq", 0, 0, 86400},
        {"shards", 0, SH_OPT_INT, &c.shards, "8",
         "shard count (= partitions of soundhash.index.deltas)", 0, 1, SH_SHARDS_MAX},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {
        .name = "verify",
        .usage = "--dsn DSN --edge URL [--edge URL...] [--wait S] [--shards N]",
        .examples = "soundhash verify --dsn \"$(cat /tmp/sh-pg/dsn)\" --edge "
                    "http://127.0.0.1:8080 --edge http://127.0.0.1:8081",
        .summary = "Computes each shard's checksum (track ids, versions, fp_versions, postings) "
                   "from one consistent read of the primary and compares it with every edge's "
                   "GET /v1/shards, once each edge shard's position has reached the seq of that "
                   "read (re-reading while the primary moves, up to --wait). One JSON line per "
                   "node and shard, then a summary line. Exit 1 on any mismatch, an unreachable "
                   "edge or a timeout.",
        .opts = opts};
    sh_err e = {0};
    int code = sh_opt_exit_code(&spec, sh_opt_parse(&spec, argc, argv, &e), &e);
    if (code < 0 && spec.args.n) {
        sh_err_set(&e, SH_EUSAGE, "unexpected argument '%s'", spec.args.v[0]);
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0 && check_config(&c, &e))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code >= 0) {
        sh_opt_free(&spec);
        return code;
    }
    vf_edge *edges = calloc(c.edges.n, sizeof *edges);
    sh_primary *db = NULL;
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = c.dsn;
    pc.application_name = "soundhash-verify";
    long mismatched = 0;
    int rc = edges ? 0 : sh_err_set(&e, SH_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < c.edges.n; i++)
        edges[i].url = c.edges.v[i];
    if (rc == 0)
        rc = sh_primary_new(&pc, &db, &e);
    if (rc == 0)
        rc = verify(db, &c, edges, &mismatched, &e);
    if (rc)
        fprintf(stderr, "soundhash verify: %s\n", sh_err_text(&e));
    else if (mismatched)
        fprintf(stderr, "soundhash verify: %ld shard(s) differ from the primary\n", mismatched);
    for (size_t i = 0; edges && i < c.edges.n; i++)
        free(edges[i].v);
    free(edges);
    sh_primary_free(db);
    sh_opt_free(&spec);
    return rc || mismatched ? SH_EXIT_RUNTIME : SH_EXIT_OK;
}
