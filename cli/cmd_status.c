/* cmd_status.c — `soundhash status`: one view of a deployment, what an operator looks at first.
 *
 *   soundhash status [--brokers B] [--dsn DSN] [--node URL...] [--group G...] [--json]
 *
 * Three parts, each optional, each bounded in time:
 *   primary  the database: epoch, last change-log seq, tracks, change-log rows (--dsn)
 *   kafka    per consumer group the lag of the audio topics (events not yet done, the way
 *            `kafka-consumer-groups --describe` counts it: sh_kafka_group_lag) and the delta
 *            topic's retained messages (--brokers)
 *   nodes    per --node URL its role (worker, replicator, edge, region = an edge holding every
 *            shard), health, shards, positions (and how far behind the primary's seq), lag
 * The report is gathered as one JSON object (--json prints it) and rendered as a table
 * otherwise. Exit 0 when everything answered and every node is healthy, 1 otherwise, 2 on a
 * usage error. Read-only: it commits nothing, joins no group, changes nothing.
 */
#include "sh_cmds.h"
#include "sh_httpc.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_opt.h"
#include "sh_primary.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_PARTITIONS_MAX = 1024 };

typedef struct st_cfg {
    char *brokers;
    sh_strlist props;
    char *dsn;
    sh_strlist nodes;
    sh_strlist groups;
    bool json;
    long timeout_ms;
} st_cfg;

static json_t *err_json(const sh_err *e)
{
    return json_pack("{s:b, s:s}", "ok", 0, "error", sh_err_text(e));
}

/* ---- primary ------------------------------------------------------------------------------ */

static json_t *primary_part(const st_cfg *c)
{
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = c->dsn;
    pc.application_name = "soundhash-status";
    sh_primary *db = NULL;
    sh_primary_counts n;
    int64_t epoch = 0, start_seq = 0;
    sh_err e = {0};
    int rc = sh_primary_new(&pc, &db, &e);
    if (rc == 0)
        rc = sh_primary_counts_get(db, &n, &e);
    if (rc == 0)
        rc = sh_primary_replication_get(db, &epoch, &start_seq, &e);
    sh_primary_free(db);
    if (rc)
        return err_json(&e);
    return json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "ok", 1, "epoch", (json_int_t)epoch,
                     "last_seq", (json_int_t)n.last_seq, "tracks_active",
                     (json_int_t)n.tracks_active, "tracks_deleted", (json_int_t)n.tracks_deleted,
                     "hashes", (json_int_t)n.hashes, "change_log_rows", (json_int_t)n.changes);
}

/* ---- kafka -------------------------------------------------------------------------------- */

static rd_kafka_topic_partition_list_t *partitions_of(const char *topic, int n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    for (int p = 0; p < n && p < ST_PARTITIONS_MAX; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    return l;
}

/* One topic's lag for the group behind rk: {"topic","partitions","lag","max","max_partition",
 * "unknown"} or an error object. */
static json_t *topic_lag(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
    sh_err e = {0};
    int n = 0;
    if (sh_kafka_describe_topic(rk, topic, timeout_ms, &n, &e))
        return err_json(&e);
    rd_kafka_topic_partition_list_t *l = partitions_of(topic, n);
    int rc = sh_kafka_group_lag(rk, l, timeout_ms, &e);
    int64_t sum = 0, max = -1;
    int max_p = -1, unknown = 0;
    for (int i = 0; rc == 0 && i < l->cnt; i++) {
        int64_t v = l->elems[i].offset;
        unknown += v < 0;
        sum += v > 0 ? v : 0;
        if (v > max) {
            max = v;
            max_p = l->elems[i].partition;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (rc)
        return err_json(&e);
    return json_pack("{s:b, s:s, s:i, s:I, s:I, s:i, s:i}", "ok", unknown == 0, "topic", topic,
                     "partitions", n, "lag", (json_int_t)sum, "max", (json_int_t)max,
                     "max_partition", max_p, "unknown", unknown);
}

static rd_kafka_t *consumer(const st_cfg *c, const char *group, sh_err *e)
{
    const sh_kclient_kv defaults[] = {{"group.id", group}, {"enable.auto.commit", "false"}};
    sh_kclient_config kc = {.bootstrap = c->brokers,
                            .defaults = defaults,
                            .n_defaults = 2,
                            .props = &c->props,
                            .require_bootstrap = true,
                            .quiet_until_ready = true,
                            .what = "status consumer"};
    rd_kafka_t *rk = NULL;
    if (sh_kafka_consumer_new(&kc, &rk, e))
        return NULL;
    if (sh_kafka_wait_ready(rk, c->brokers, (int)c->timeout_ms, e)) {
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/* The delta topic's retained messages per partition summed (end - start). */
static json_t *delta_part(rd_kafka_t *rk, int timeout_ms)
{
    sh_err e = {0};
    int n = 0;
    if (sh_kafka_describe_topic(rk, SH_TOPIC_INDEX_DELTAS, timeout_ms, &n, &e))
        return err_json(&e);
    int64_t sum = 0;
    for (int p = 0; p < n && p < ST_PARTITIONS_MAX; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, SH_TOPIC_INDEX_DELTAS, p, &lo, &hi, timeout_ms);
        if (err) {
            sh_kafka_err_set(&e, err, "%s[%d] offsets", SH_TOPIC_INDEX_DELTAS, p);
            return err_json(&e);
        }
        sum += hi - lo;
    }
    return json_pack("{s:b, s:s, s:i, s:I}", "ok", 1, "topic", SH_TOPIC_INDEX_DELTAS,
                     "partitions", n, "messages", (json_int_t)sum);
}

static json_t *kafka_part(const st_cfg *c)
{
    static const char *const topics[] = {SH_TOPIC_AUDIO_EVENTS, SH_TOPIC_AUDIO_REINDEX};
    json_t *groups = json_array(), *deltas = NULL;
    sh_err e = {0};
    int ok = 1;
    for (size_t g = 0; g < c->groups.n; g++) {
        rd_kafka_t *rk = consumer(c, c->groups.v[g], &e);
        if (!rk)
            return json_pack("{s:b, s:s, s:o, s:o}", "ok", 0, "error", sh_err_text(&e), "groups",
                             groups, "deltas", deltas ? deltas : json_null());
        json_t *t = json_array();
        for (size_t i = 0; i < 2; i++) {
            json_t *x = topic_lag(rk, topics[i], (int)c->timeout_ms);
            ok &= json_is_true(json_object_get(x, "ok"));
            json_array_append_new(t, x);
        }
        if (!deltas)
            deltas = delta_part(rk, (int)c->timeout_ms);
        rd_kafka_destroy(rk);
        json_array_append_new(groups, json_pack("{s:s, s:o}", "group", c->groups.v[g], "topics",
                                                t));
    }
    ok &= deltas && json_is_true(json_object_get(deltas, "ok"));
    return json_pack("{s:b, s:o, s:o}", "ok", ok, "groups", groups, "deltas",
                     deltas ? deltas : json_null());
}

/* ---- nodes -------------------------------------------------------------------------------- */

/* GET url+path as JSON; *status gets the HTTP status (0: no answer). NULL when unreachable or not
 * JSON (the reason in e). */
static json_t *get_json(const st_cfg *c, const char *url, const char *path, long *status,
                        sh_err *e)
{
    sh_httpc_opts o;
    sh_httpc_opts_default(&o);
    o.token = sh_httpc_env_token();
    o.total_ms = c->timeout_ms;
    o.connect_ms = c->timeout_ms < 3000 ? c->timeout_ms : 3000;
    char *body = NULL;
    *status = 0;
    if (sh_httpc_get(url, path, &o, status, &body, NULL, e))
        return NULL;
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    if (!j)
        sh_err_set(e, SH_EFORMAT, "%s%s: not JSON (HTTP %ld)", url, path, *status);
    return j;
}

/* Shards as ranges: "0-3,6". */
static void shard_ranges(const int *v, size_t n, char *out, size_t cap)
{
    size_t w = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && w < cap; i++) {
        size_t j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        int k = j > i ? snprintf(out + w, cap - w, "%s%d-%d", w ? "," : "", v[i], v[j])
                      : snprintf(out + w, cap - w, "%s%d", w ? "," : "", v[i]);
        w += k > 0 ? (size_t)k : 0;
        i = j;
    }
}

/* An integer field of o within [lo, hi], else -2 (absent, not an integer, out of range). */
static json_int_t int_in(json_t *o, const char *key, json_int_t lo, json_int_t hi)
{
    json_t *v = json_object_get(o, key);
    json_int_t x = json_is_integer(v) ? json_integer_value(v) : -2;
    return x >= lo && x <= hi ? x : -2;
}

/* Adds an edge's /v1/shards summary to node object o. The node is not trusted: entries with a
 * shard outside [0, nshards), a position below -1 or counts out of range are counted in
 * "malformed" and left out. */
static void edge_detail(json_t *o, json_t *sh)
{
    json_t *arr = json_object_get(sh, "shards");
    json_int_t ns = int_in(sh, "nshards", 1, ST_PARTITIONS_MAX);
    int held[ST_PARTITIONS_MAX];
    size_t n = 0, i, bad = 0;
    int64_t lo = INT64_MAX, hi = -1, lag = 0, loaded = 0, tracks = 0;
    json_t *it;
    json_array_foreach(arr, i, it) {
        json_int_t s = int_in(it, "shard", 0, ns - 1);
        json_int_t p = int_in(it, "position", -1, INT64_MAX);
        json_int_t l = int_in(it, "lag_ms", 0, INT64_MAX);
        json_int_t t = int_in(it, "tracks", 0, (json_int_t)1 << 40);
        if (ns < 1 || s < 0 || p < -1 || t < 0 || n >= ST_PARTITIONS_MAX) {
            bad++;
            continue;
        }
        held[n++] = (int)s;
        lo = p < lo ? p : lo;
        hi = p > hi ? p : hi;
        lag = l > lag ? l : lag;
        loaded += json_is_true(json_object_get(it, "loaded"));
        tracks += t;
    }
    char ranges[256];
    shard_ranges(held, n, ranges, sizeof ranges);
    json_object_set_new(o, "role", json_string((json_int_t)n == ns ? "region" : "edge"));
    json_object_set(o, "name", json_object_get(sh, "node"));
    json_object_set_new(o, "shards", json_string(ranges));
    json_object_set_new(o, "position_min", json_integer(n ? lo : -1));
    json_object_set_new(o, "position_max", json_integer(hi));
    json_object_set_new(o, "lag_ms", json_integer(lag));
    json_object_set_new(o, "loaded", json_integer(loaded));
    json_object_set_new(o, "tracks", json_integer(tracks));
    if (bad) {
        json_object_set_new(o, "malformed", json_integer((json_int_t)bad));
        json_object_set_new(o, "ok", json_false());
    }
}

static const char *role_of(json_t *h)
{
    const char *r = json_string_value(json_object_get(h, "role"));
    if (r)
        return r;
    if (json_object_get(h, "assigned"))
        return "worker";
    if (json_object_get(h, "primary_seq"))
        return "replicator";
    return NULL;
}

static json_t *node_part(const st_cfg *c, const char *url)
{
    sh_err e = {0};
    long hs = 0, ss = 0;
    json_t *h = get_json(c, url, "/health", &hs, &e);
    if (!h)
        return json_pack("{s:s, s:b, s:s, s:s}", "url", url, "ok", 0, "health", "down", "error",
                         sh_err_text(&e));
    const char *st = json_string_value(json_object_get(h, "status"));
    json_t *o = json_pack("{s:s, s:b, s:s, s:O}", "url", url, "ok", hs == 200, "health",
                          st ? st : (hs == 200 ? "ok" : "unhealthy"), "detail", h);
    const char *role = role_of(h);
    if (role)
        json_object_set_new(o, "role", json_string(role));
    else {
        json_t *sh = get_json(c, url, "/v1/shards", &ss, &e);
        if (sh && ss == 200)
            edge_detail(o, sh);
        else
            json_object_set_new(o, "role", json_string(ss == 503 ? "edge" : "unknown"));
        json_decref(sh);
    }
    json_decref(h);
    return o;
}

/* ---- the table ---------------------------------------------------------------------------- */

static void print_primary(json_t *p)
{
    if (!json_is_true(json_object_get(p, "ok"))) {
        printf("PRIMARY  DOWN: %s\n", json_string_value(json_object_get(p, "error")));
        return;
    }
    printf("PRIMARY  epoch %" JSON_INTEGER_FORMAT "  seq %" JSON_INTEGER_FORMAT
           "  tracks %" JSON_INTEGER_FORMAT " active, %" JSON_INTEGER_FORMAT
           " deleted  change log %" JSON_INTEGER_FORMAT " rows\n",
           json_integer_value(json_object_get(p, "epoch")),
           json_integer_value(json_object_get(p, "last_seq")),
           json_integer_value(json_object_get(p, "tracks_active")),
           json_integer_value(json_object_get(p, "tracks_deleted")),
           json_integer_value(json_object_get(p, "change_log_rows")));
}

static void print_kafka(json_t *k)
{
    const char *err = json_string_value(json_object_get(k, "error"));
    if (err)
        printf("KAFKA    DOWN: %s\n", err);
    size_t i, j;
    json_t *g, *t;
    json_array_foreach(json_object_get(k, "groups"), i, g) {
        json_array_foreach(json_object_get(g, "topics"), j, t) {
            const char *te = json_string_value(json_object_get(t, "error"));
            if (te) {
                printf("KAFKA    group %s: %s\n", json_string_value(json_object_get(g, "group")),
                       te);
                continue;
            }
            printf("KAFKA    group %-20s %-26s lag %6" JSON_INTEGER_FORMAT
                   " over %d partitions (max %" JSON_INTEGER_FORMAT " on p%d)%s\n",
                   json_string_value(json_object_get(g, "group")),
                   json_string_value(json_object_get(t, "topic")),
                   json_integer_value(json_object_get(t, "lag")),
                   (int)json_integer_value(json_object_get(t, "partitions")),
                   json_integer_value(json_object_get(t, "max")),
                   (int)json_integer_value(json_object_get(t, "max_partition")),
                   json_integer_value(json_object_get(t, "unknown")) ? " (some unknown)" : "");
        }
    }
    json_t *d = json_object_get(k, "deltas");
    if (json_is_true(json_object_get(d, "ok")))
        printf("KAFKA    %s: %" JSON_INTEGER_FORMAT " deltas retained over %d partitions\n",
               SH_TOPIC_INDEX_DELTAS, json_integer_value(json_object_get(d, "messages")),
               (int)json_integer_value(json_object_get(d, "partitions")));
}

/* s with control characters (a hostile node's terminal escapes) shown as '?', cut to cap - 1. */
static const char *printable(const char *s, char *buf, size_t cap)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < cap; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = 0;
    return s ? buf : "-";
}

static void print_nodes(json_t *nodes, json_int_t primary_seq)
{
    printf("%-28s %-12s %-10s %-10s %-10s %-16s %-8s %s\n", "NODE", "ROLE", "NAME", "HEALTH",
           "SHARDS", "POSITION", "LAG_MS", "NOTE");
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) {
        const char *s = json_string_value(json_object_get(n, "shards"));
        const char *name = json_string_value(json_object_get(n, "name"));
        char pos[48] = "-", note[96] = "";
        json_t *lo = json_object_get(n, "position_min"), *hi = json_object_get(n, "position_max");
        json_t *d = json_object_get(n, "detail");
        if (lo)
            snprintf(pos, sizeof pos, "%" JSON_INTEGER_FORMAT "..%" JSON_INTEGER_FORMAT,
                     json_integer_value(lo), json_integer_value(hi));
        if (lo && primary_seq >= 0 && json_integer_value(lo) < primary_seq)
            snprintf(note, sizeof note, "behind the primary by %" JSON_INTEGER_FORMAT,
                     primary_seq - json_integer_value(lo));
        else if (json_object_get(d, "assigned"))
            snprintf(note, sizeof note, "%d partitions assigned%s",
                     (int)json_integer_value(json_object_get(d, "assigned")),
                     json_is_true(json_object_get(d, "paused")) ? ", PAUSED" : "");
        else if (json_object_get(d, "primary_seq"))
            snprintf(note, sizeof note, "epoch %" JSON_INTEGER_FORMAT ", lag %" JSON_INTEGER_FORMAT
                     " ms", json_integer_value(json_object_get(d, "epoch")),
                     json_integer_value(json_object_get(d, "lag_ms")));
        else if (json_object_get(n, "error"))
            snprintf(note, sizeof note, "%s", json_string_value(json_object_get(n, "error")));
        char lag[24] = "-";
        if (json_object_get(n, "lag_ms"))
            snprintf(lag, sizeof lag, "%" JSON_INTEGER_FORMAT,
                     json_integer_value(json_object_get(n, "lag_ms")));
        char b1[64], b2[64], b3[64], b4[160];
        printf("%-28s %-12s %-10s %-10s %-10s %-16s %-8s %s\n",
               json_string_value(json_object_get(n, "url")),
               printable(json_string_value(json_object_get(n, "role")), b1, sizeof b1),
               printable(name, b2, sizeof b2),
               printable(json_string_value(json_object_get(n, "health")), b3, sizeof b3),
               s ? s : "-", pos, lag, printable(note, b4, sizeof b4));
    }
}

/* ---- main --------------------------------------------------------------------------------- */

static int check_config(const st_cfg *c, sh_err *e)
{
    if (!c->brokers && !c->dsn && c->nodes.n == 0)
        return sh_err_set(e, SH_EUSAGE, "nothing to show: give --brokers, --dsn or --node");
    for (size_t i = 0; i < c->nodes.n; i++)
        if (!sh_httpc_url_ok(c->nodes.v[i]))
            return sh_err_set(e, SH_EUSAGE, "--node %s: not an http:// or https:// URL",
                              c->nodes.v[i]);
    if (c->dsn && sh_primary_dsn_check(c->dsn, e))
        return sh_opt_usage_error(e, "--dsn");
    if (c->brokers && sh_kafka_props_check(c->brokers, &c->props, e))
        return SH_EUSAGE;
    return 0;
}

/* Gathers the report; *all_ok = every part answered and every node is healthy. */
static json_t *gather(st_cfg *c, int *all_ok)
{
    json_t *r = json_object();
    *all_ok = 1;
    if (c->dsn) {
        json_t *p = primary_part(c);
        *all_ok &= json_is_true(json_object_get(p, "ok"));
        json_object_set_new(r, "primary", p);
    }
    if (c->brokers) {
        json_t *k = kafka_part(c);
        *all_ok &= json_is_true(json_object_get(k, "ok"));
        json_object_set_new(r, "kafka", k);
    }
    json_t *nodes = json_array();
    for (size_t i = 0; i < c->nodes.n; i++) {
        json_t *n = node_part(c, c->nodes.v[i]);
        *all_ok &= json_is_true(json_object_get(n, "ok"));
        json_array_append_new(nodes, n);
    }
    json_object_set_new(r, "nodes", nodes);
    json_object_set_new(r, "ok", json_boolean(*all_ok));
    return r;
}

int sh_cmd_status(int argc, char **argv)
{
    st_cfg c;
    memset(&c, 0, sizeof c);
    sh_opt opts[] = {
        {"brokers", 'b', SH_OPT_STR, &c.brokers, NULL,
         "Kafka bootstrap servers: consumer-group lag and the delta topic", 0, 0, 0},
        {"property", 'X', SH_OPT_LIST, &c.props, NULL,
         "librdkafka property key=value (repeatable)", 0, 0, 0},
        {"dsn", 0, SH_OPT_STR, &c.dsn, NULL,
         "primary PostgreSQL connection string (password: env SOUNDHASH_DB_PASSWORD)", SH_OPT_DSN,
         0, 0},
        {"node", 0, SH_OPT_LIST, &c.nodes, NULL,
         "a worker, replicator or edge HTTP base URL (repeatable; bearer token: env "
         "SOUNDHASH_API_TOKEN)",
         0, 0, 0},
        {"group", 'g', SH_OPT_LIST, &c.groups, NULL,
         "consumer group to report (repeatable) [soundhash-workers]", 0, 0, 0},
        {"json", 0, SH_OPT_BOOL, &c.json, "false", "print the report as one JSON object", 0, 0,
         0},
        {"timeout-ms", 0, SH_OPT_INT, &c.timeout_ms, "3000",
         "bound on each request (database, Kafka, HTTP)", 0, 100, 600000},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {
        .name = "status",
        .usage = "[--brokers B] [--dsn DSN] [--node URL...] [--group G...] [--json]",
        .examples = "soundhash status --brokers 127.0.0.1:9092 --dsn \"$(cat /tmp/sh-pg/dsn)\" "
                    "--node http://127.0.0.1:9101 --node http://127.0.0.1:8080",
        .summary = "One table of the deployment: the primary (epoch, seq, tracks, change log), "
                   "each consumer group's lag on the audio topics and the delta topic's "
                   "retained deltas, and per node its role (worker, replicator, edge, region), "
                   "health, shards, positions and how far behind the primary it is. Read-only. "
                   "Exit 0 when everything answered and every node is healthy, else 1.",
        .opts = opts};
    sh_err e = {0};
    int code = sh_opt_exit_code(&spec, sh_opt_parse(&spec, argc, argv, &e), &e);
    if (code < 0 && spec.args.n) {
        sh_err_set(&e, SH_EUSAGE, "unexpected argument '%s'", spec.args.v[0]);
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0 && c.groups.n == 0 && sh_strlist_push(&c.groups, "soundhash-workers"))
        code = SH_EXIT_RUNTIME; /* out of memory; sh_opt_free releases the list either way */
    if (code < 0 && check_config(&c, &e))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code >= 0) {
        sh_opt_free(&spec);
        return code;
    }
    int ok = 0;
    json_t *r = gather(&c, &ok);
    if (c.json) {
        char *s = json_dumps(r, JSON_COMPACT);
        if (s)
            puts(s);
        free(s);
    } else {
        json_t *p = json_object_get(r, "primary");
        if (p)
            print_primary(p);
        if (json_object_get(r, "kafka"))
            print_kafka(json_object_get(r, "kafka"));
        json_int_t seq = json_is_true(json_object_get(p, "ok"))
                             ? json_integer_value(json_object_get(p, "last_seq"))
                             : -1;
        if (c.nodes.n)
            print_nodes(json_object_get(r, "nodes"), seq);
    }
    json_decref(r);
    sh_opt_free(&spec);
    return ok ? SH_EXIT_OK : SH_EXIT_RUNTIME;
}
