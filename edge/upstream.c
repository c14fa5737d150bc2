/* upstream.c — the edge's client of an upstream node and the merge of its answers (upstream.h).
 *
 * One exchange: the query's fingerprints encoded in the binary hashes form, POSTed with a bounded
 * total time; the body collected up to ED_UP_RESPONSE_MAX; a 200 JSON answer validated field by
 * field into new objects. Everything else (curl errors, other statuses, bad JSON) becomes status
 * error/timeout with a reason — the caller's request never fails because of the upstream.
 */
#include "upstream.h"

#include "sh_clock.h"
#include "sh_log.h"
#include "sh_qhash.h"
#include "sh_recognize.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ed_upstream {
    char *url;
    char *auth;   /* "Authorization: Bearer T" or NULL */
    char *origin; /* "X-SoundHash-Origin: ID" */
    long timeout_ms;
    int nshards;
    pthread_mutex_t lock; /* guards the pool and the last exchange */
    CURL *pool[ED_UP_HANDLES_MAX];
    size_t npool, maxpool;
    ed_up_status last_status;
    double last_ms;
    int64_t last_at_ms;
    char last_node[SH_REGION_MAX + 1];
    _Atomic int64_t requests;
    _Atomic int64_t connects; /* connections opened (keep-alive reuses them) */
    sh_series *m_ok, *m_error, *m_timeout, *m_seconds;
};

const char *ed_up_status_name(ed_up_status s)
{
    switch (s) {
    case ED_UP_OK:
        return "ok";
    case ED_UP_ERROR:
        return "error";
    case ED_UP_TIMEOUT:
        return "timeout";
    default:
        return "not_needed";
    }
}

/* ---- answers ------------------------------------------------------------------------------ */

int ed_up_answer_init(ed_up_answer *a)
{
    memset(a, 0, sizeof *a);
    a->candidates = json_array();
    a->shards = json_array();
    if (!a->candidates || !a->shards) {
        ed_up_answer_clear(a);
        return SH_ENOMEM;
    }
    return 0;
}

void ed_up_answer_clear(ed_up_answer *a)
{
    json_decref(a->candidates);
    json_decref(a->shards);
    a->candidates = a->shards = NULL;
}

/* ---- validation of an upstream's answer --------------------------------------------------- */

/* 1 when s holds 1..max bytes (0..max when empty_ok) and no control character (C0, DEL). */
static int plain_text(const json_t *j, size_t max, int empty_ok)
{
    if (!json_is_string(j))
        return 0;
    const char *s = json_string_value(j);
    size_t n = json_string_length(j);
    if (n > max || (n == 0 && !empty_ok) || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int num_in(const json_t *o, const char *key, double lo, double hi, double *out)
{
    const json_t *j = json_object_get(o, key);
    if (!json_is_number(j))
        return 0;
    double v = json_number_value(j);
    if (!isfinite(v) || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int int_in(const json_t *o, const char *key, json_int_t lo, json_int_t hi,
                  json_int_t *out)
{
    const json_t *j = json_object_get(o, key);
    if (!json_is_integer(j))
        return 0;
    json_int_t v = json_integer_value(j);
    if (v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

/* Metadata: null, or an object of at most SH_META_MAX_ENTRIES scalar values (the catalogue's
 * string map). A new deep copy, or NULL when invalid. */
static json_t *metadata_copy(const json_t *m)
{
    if (!m || json_is_null(m))
        return json_null();
    if (!json_is_object(m) || json_object_size(m) > SH_META_MAX_ENTRIES)
        return NULL;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)m, k, v) {
        if (strlen(k) > SH_META_KEY_MAX || json_is_object(v) || json_is_array(v))
            return NULL;
    }
    return json_deep_copy(m);
}

static int shard_asked(json_int_t s, const unsigned char *ask, int nshards)
{
    return s >= 0 && s < nshards && ask[s];
}

/* One candidate, copied field by field; NULL (with *why) when any field is off. */
static json_t *candidate_copy(const json_t *c, const char *node, const unsigned char *ask,
                              int nshards, const unsigned char *seen, const char **why)
{
    double off, dur, conf, scale;
    json_int_t score, shard;
    const json_t *id = json_object_get(c, "track_id");
    const json_t *cn = json_object_get(c, "node");
    *why = "candidate: bad field";
    if (!json_is_object(c) || !plain_text(id, SH_TRACK_ID_MAX, 0) ||
        !num_in(c, "offset_s", -1e7, 1e7, &off) || !num_in(c, "duration_s", 0, 1e7, &dur) ||
        !int_in(c, "score", 0, INT_MAX, &score) || !num_in(c, "confidence", 0, 1, &conf) ||
        !num_in(c, "scale", 1e-3, 1e3, &scale) || !int_in(c, "shard", 0, INT_MAX, &shard))
        return NULL;
    if (!shard_asked(shard, ask, nshards) || !seen[shard]) {
        *why = "candidate of a shard not asked for or not consulted";
        return NULL;
    }
    if (cn && !plain_text(cn, SH_REGION_MAX, 0)) {
        *why = "candidate: bad node";
        return NULL;
    }
    json_int_t fpv;
    if (!int_in(c, "fp_version", 0, INT_MAX, &fpv)) {
        *why = "candidate: bad fp_version";
        return NULL;
    }
    json_t *meta = metadata_copy(json_object_get(c, "metadata"));
    if (!meta) {
        *why = "candidate: bad metadata";
        return NULL;
    }
    return json_pack("{s:s, s:f, s:f, s:I, s:f, s:f, s:s, s:I, s:I, s:o}", "track_id",
                     json_string_value(id), "offset_s", off, "duration_s", dur, "score", score,
                     "confidence", conf, "scale", scale, "node", cn ? json_string_value(cn) : node,
                     "shard", shard, "fp_version", fpv, "metadata", meta);
}

/* The consulted shards: each asked for, at most once; marks them in seen[]. */
static int shards_copy(const json_t *arr, const char *node, const unsigned char *ask, int nshards,
                       unsigned char *seen, json_t *out, sh_err *e)
{
    if (!json_is_array(arr) || json_array_size(arr) > (size_t)nshards)
        return sh_err_set(e, SH_EFORMAT, "upstream answer: \"shards\" is not an array of at most "
                          "%d", nshards);
    size_t i;
    const json_t *s;
    json_array_foreach(arr, i, s) {
        json_int_t n, epoch, pos;
        if (!json_is_object(s) || !int_in(s, "shard", 0, INT_MAX, &n) ||
            !int_in(s, "epoch", -1, INT64_MAX, &epoch) ||
            !int_in(s, "position", -1, INT64_MAX, &pos))
            return sh_err_set(e, SH_EFORMAT, "upstream answer: shards[%zu]: bad field", i);
        if (!shard_asked(n, ask, nshards) || seen[n])
            return sh_err_set(e, SH_EFORMAT, "upstream answer: shard %" PRId64 " not asked for "
                              "or listed twice", (int64_t)n);
        seen[n] = 1;
        if (json_array_append_new(out, json_pack("{s:I, s:I, s:I, s:s}", "shard", n, "epoch",
                                                 epoch, "position", pos, "node", node)))
            return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    return 0;
}

/* The answers: "candidates" when present (top > 1), else "match" (object or null). */
static int candidates_copy(const json_t *root, const char *node, const unsigned char *ask,
                           int nshards, const unsigned char *seen, size_t k, json_t *out,
                           sh_err *e)
{
    const json_t *match = json_object_get(root, "match");
    const json_t *list = json_object_get(root, "candidates");
    if (!match || (!json_is_null(match) && !json_is_object(match)))
        return sh_err_set(e, SH_EFORMAT, "upstream answer: \"match\" is not an object or null");
    if (list && (!json_is_array(list) || json_array_size(list) > SH_RECOGNIZE_TOP_MAX))
        return sh_err_set(e, SH_EFORMAT, "upstream answer: \"candidates\" is not an array of at "
                          "most %d", SH_RECOGNIZE_TOP_MAX);
    json_t *one = NULL;
    if (!list) {
        one = json_is_null(match) ? json_array() : json_pack("[O]", match);
        if (!one)
            return sh_err_set(e, SH_ENOMEM, "out of memory");
        list = one;
    }
    int rc = 0;
    size_t i;
    const json_t *c;
    json_array_foreach(list, i, c) {
        const char *why = NULL;
        json_t *cp = candidate_copy(c, node, ask, nshards, seen, &why);
        if (!cp) {
            rc = sh_err_set(e, SH_EFORMAT, "upstream answer: candidates[%zu]: %s", i, why);
            break;
        }
        if (json_array_size(out) >= k) {
            json_decref(cp); /* validated (a bad answer is bad anywhere), but past K */
        } else if (json_array_append_new(out, cp)) {
            rc = sh_err_set(e, SH_ENOMEM, "out of memory");
            break;
        }
    }
    json_decref(one);
    return rc;
}

int ed_up_parse(const char *body, size_t len, const unsigned char *ask, int nshards, size_t k,
                ed_up_answer *a, sh_err *e)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    unsigned char *seen = calloc(nshards > 0 ? (size_t)nshards : 1, 1);
    int rc = 0;
    if (!seen)
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    else if (!json_is_object(root))
        rc = sh_err_set(e, SH_EFORMAT, "upstream answer: not a JSON object%s%s",
                        root ? "" : ": ", root ? "" : je.text);
    const json_t *node = json_object_get(root, "node");
    if (rc == 0 && !plain_text(node, SH_REGION_MAX, 0))
        rc = sh_err_set(e, SH_EFORMAT, "upstream answer: \"node\" is not a name of 1..%d bytes",
                        SH_REGION_MAX);
    if (rc == 0) {
        snprintf(a->node, sizeof a->node, "%s", json_string_value(node));
        rc = shards_copy(json_object_get(root, "shards"), a->node, ask, nshards, seen, a->shards,
                         e);
    }
    if (rc == 0)
        rc = candidates_copy(root, a->node, ask, nshards, seen, k, a->candidates, e);
    if (rc) {
        json_array_clear(a->candidates);
        json_array_clear(a->shards);
    }
    free(seen);
    json_decref(root);
    return rc;
}

/* ---- merge -------------------------------------------------------------------------------- */

typedef struct ranked {
    json_t *j;
    double confidence;
    json_int_t score;
    size_t order; /* local before remote, each side in its own order: the sort is stable */
} ranked;

static int ranked_cmp(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->confidence != b->confidence)
        return a->confidence < b->confidence ? 1 : -1;
    if (a->score != b->score)
        return a->score < b->score ? 1 : -1;
    return (a->order > b->order) - (a->order < b->order);
}

static size_t ranked_add(ranked *r, size_t n, json_t *arr)
{
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) {
        r[n] = (ranked){c, json_number_value(json_object_get(c, "confidence")),
                        json_integer_value(json_object_get(c, "score")), n};
        n++;
    }
    return n;
}

/* 1 when out already holds an answer for c's track id. */
static int has_track(const json_t *out, const json_t *c)
{
    const char *id = json_string_value(json_object_get(c, "track_id"));
    size_t i;
    const json_t *o;
    json_array_foreach(out, i, o) {
        const char *oid = json_string_value(json_object_get(o, "track_id"));
        if (id && oid && !strcmp(id, oid))
            return 1;
    }
    return 0;
}

json_t *ed_up_merge(json_t *local, json_t *remote, size_t k)
{
    size_t nl = json_array_size(local), nr = json_array_size(remote);
    ranked *r = malloc((nl + nr + 1) * sizeof *r);
    json_t *out = json_array();
    if (!r || !out) {
        free(r);
        json_decref(out);
        return NULL;
    }
    size_t n = ranked_add(r, ranked_add(r, 0, local), remote);
    qsort(r, n, sizeof *r, ranked_cmp);
    for (size_t i = 0; i < n && json_array_size(out) < k; i++) {
        if (has_track(out, r[i].j))
            continue; /* the track's best answer is already in */
        if (json_array_append(out, r[i].j)) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
    free(r);
    return out;
}

/* ---- the client --------------------------------------------------------------------------- */

/* "NAME: VALUE" as a new string, or NULL. */
static char *header_line(const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s: %s", name, value);
    return s;
}

static int metrics_new(ed_upstream *u, sh_metrics *reg, sh_err *e)
{
    const char *result[] = {"result", NULL};
    double b[SH_METRICS_MAX_BUCKETS];
    sh_metric *req = NULL, *secs = NULL;
    sh_metrics_exp_buckets(0.001, 1.6, 20, b);
    int rc = sh_metrics_counter(reg, "soundhash_edge_upstream_requests_total",
                                "Requests to the --upstream node, by outcome.", result, &req);
    if (rc == 0)
        rc = sh_metrics_histogram(reg, "soundhash_edge_upstream_seconds",
                                  "One exchange with the --upstream node (failed ones too).",
                                  NULL, b, 20, &secs);
    if (rc)
        return sh_err_set(e, rc, "upstream metrics: %s", sh_strerror(rc));
    u->m_ok = sh_metric_series(req, (const char *[]){"ok", NULL});
    u->m_error = sh_metric_series(req, (const char *[]){"error", NULL});
    u->m_timeout = sh_metric_series(req, (const char *[]){"timeout", NULL});
    u->m_seconds = sh_metric_series(secs, NULL);
    if (!u->m_ok || !u->m_error || !u->m_timeout || !u->m_seconds)
        return sh_err_set(e, SH_ENOMEM, "upstream metrics");
    return 0;
}

int ed_upstream_new(const ed_up_config *c, sh_metrics *reg, ed_upstream **out, sh_err *e)
{
    *out = NULL;
    if (strncmp(c->url, "http://", 7) != 0 && strncmp(c->url, "https://", 8) != 0)
        return sh_err_set(e, SH_EUSAGE, "--upstream %s: want http:// or https://", c->url);
    if (strlen(c->url) > SH_URI_MAX)
        return sh_err_set(e, SH_EUSAGE, "--upstream: over %d bytes", SH_URI_MAX);
    if (c->timeout_ms < 1 || c->timeout_ms > 600000 || c->handles < 1 ||
        c->handles > ED_UP_HANDLES_MAX || c->nshards < 1 || !c->origin)
        return sh_err_set(e, SH_EUSAGE, "upstream client: a setting out of range");
    ed_upstream *u = calloc(1, sizeof *u);
    if (!u)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    pthread_mutex_init(&u->lock, NULL);
    u->timeout_ms = c->timeout_ms;
    u->nshards = c->nshards;
    u->maxpool = c->handles;
    u->url = strdup(c->url);
    u->origin = header_line("X-SoundHash-Origin", c->origin);
    if (c->token) {
        char bearer[8 + 4096];
        snprintf(bearer, sizeof bearer, "Bearer %s", c->token);
        u->auth = header_line("Authorization", bearer);
    }
    int rc = 0;
    if (!u->url || !u->origin || (c->token && !u->auth))
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    else
        rc = metrics_new(u, reg, e);
    if (rc) {
        ed_upstream_free(u);
        return rc;
    }
    size_t n = strlen(u->url);
    while (n > 0 && u->url[n - 1] == '/')
        u->url[--n] = '\0';
    *out = u;
    return 0;
}

void ed_upstream_free(ed_upstream *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->npool; i++)
        curl_easy_cleanup(u->pool[i]);
    pthread_mutex_destroy(&u->lock);
    free(u->url);
    free(u->auth);
    free(u->origin);
    free(u);
}

const char *ed_upstream_url(const ed_upstream *u)
{
    return u->url;
}

/* A handle from the pool (its connection kept alive), else a new one; NULL when out of memory. */
static CURL *handle_take(ed_upstream *u)
{
    pthread_mutex_lock(&u->lock);
    CURL *c = u->npool ? u->pool[--u->npool] : NULL;
    pthread_mutex_unlock(&u->lock);
    return c ? c : curl_easy_init();
}

static void handle_give(ed_upstream *u, CURL *c)
{
    pthread_mutex_lock(&u->lock);
    if (u->npool < u->maxpool) {
        u->pool[u->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&u->lock);
    curl_easy_cleanup(c); /* a temporary one (all kept handles were busy); NULL is fine */
}

typedef struct body {
    char *p;
    size_t n, cap;
    int over;
} body;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    body *b = ud;
    size_t len = sz * nm;
    if (len > ED_UP_RESPONSE_MAX - b->n) {
        b->over = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->over = 1;
            return 0;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

/* {URL}/v1/match?top=K&shards=a,b,... */
static int match_url(const ed_upstream *u, const unsigned char *ask, size_t k, char **out)
{
    size_t cap = strlen(u->url) + 64 + (size_t)u->nshards * 6;
    char *s = malloc(cap);
    if (!s)
        return SH_ENOMEM;
    size_t n = (size_t)snprintf(s, cap, "%s/v1/match?top=%zu&shards=", u->url, k);
    for (int i = 0; i < u->nshards; i++)
        if (ask[i])
            n += (size_t)snprintf(s + n, cap - n, "%s%d", s[n - 1] == '=' ? "" : ",", i);
    *out = s;
    return 0;
}

/* The error text of a non-200 answer: its JSON "error" when it has one, else the status alone. */
static void status_reason(long code, const body *b, char *out, size_t cap)
{
    json_t *j = b->p ? json_loadb(b->p, b->n, 0, NULL) : NULL;
    const json_t *m = json_object_get(j, "error");
    if (plain_text(m, 200, 0))
        snprintf(out, cap, "HTTP %ld: %s", code, json_string_value(m));
    else
        snprintf(out, cap, "HTTP %ld", code);
    json_decref(j);
}

/* One POST of one fingerprint, within timeout_ms: the body and HTTP status, or a curl error. */
static CURLcode post(ed_upstream *u, CURL *c, const char *url, const uint8_t *req, size_t len,
                     long timeout_ms, body *b, long *code)
{
    struct curl_slist *hdr = NULL, *t;
    const char *lines[] = {"Content-Type: " SH_QHASH_CONTENT_TYPE, "Accept: application/json",
                           "Expect:", u->origin, u->auth};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!lines[i])
            continue;
        if (!(t = curl_slist_append(hdr, lines[i]))) {
            curl_slist_free_all(hdr);
            return CURLE_OUT_OF_MEMORY;
        }
        hdr = t;
    }
    curl_easy_reset(c); /* options of the last exchange go; the connection stays */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)req);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ED_UP_RESPONSE_MAX);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    CURLcode cc = curl_easy_perform(c);
    long opened = 0;
    if (curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &opened) == CURLE_OK)
        atomic_fetch_add(&u->connects, opened);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
    curl_slist_free_all(hdr);
    return cc;
}

/* Adds one exchange's shards to a's, skipping shards already there (a second fingerprint
 * consults the same shards). */
static int shards_union(json_t *into, json_t *from)
{
    size_t i, j;
    json_t *s, *t;
    json_array_foreach(from, i, s) {
        json_int_t n = json_integer_value(json_object_get(s, "shard"));
        int dup = 0;
        json_array_foreach(into, j, t)
            dup |= json_integer_value(json_object_get(t, "shard")) == n;
        if (!dup && json_array_append(into, s))
            return SH_ENOMEM;
    }
    return 0;
}

/* One fingerprint's exchange into `one` (initialised); status and reason set. */
static int exchange(ed_upstream *u, const char *url, const ed_up_query *q,
                    const unsigned char *ask, size_t k, long timeout_ms, ed_up_answer *one,
                    sh_err *e)
{
    uint8_t *req = NULL;
    size_t len = 0;
    int rc = sh_qhash_encode(q->fp_version, q->h, q->n, &req, &len, e);
    CURL *c = rc == 0 ? handle_take(u) : NULL;
    if (rc == 0 && !c)
        rc = sh_err_set(e, SH_ENOMEM, "curl_easy_init");
    if (rc) {
        free(req);
        return rc;
    }
    body b = {0};
    long code = 0;
    CURLcode cc = post(u, c, url, req, len, timeout_ms, &b, &code);
    handle_give(u, c);
    free(req);
    sh_err pe = {0};
    one->status = ED_UP_ERROR;
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        one->status = ED_UP_TIMEOUT;
        snprintf(one->error, sizeof one->error, "no answer within %ld ms", timeout_ms);
    } else if (b.over || cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(one->error, sizeof one->error, "answer over %d bytes", ED_UP_RESPONSE_MAX);
    } else if (cc != CURLE_OK) {
        snprintf(one->error, sizeof one->error, "%s", curl_easy_strerror(cc));
    } else if (code != 200) {
        status_reason(code, &b, one->error, sizeof one->error);
    } else if (ed_up_parse(b.p ? b.p : "", b.n, ask, u->nshards, k, one, &pe)) {
        snprintf(one->error, sizeof one->error, "%s", sh_err_text(&pe));
    } else {
        one->status = ED_UP_OK;
    }
    free(b.p);
    return 0;
}

static void record(ed_upstream *u, const ed_up_answer *a)
{
    sh_series_add(a->status == ED_UP_OK      ? u->m_ok
                  : a->status == ED_UP_TIMEOUT ? u->m_timeout
                                               : u->m_error,
                  1);
    sh_series_observe(u->m_seconds, a->elapsed_ms / 1000.0);
    atomic_fetch_add(&u->requests, 1);
    pthread_mutex_lock(&u->lock);
    u->last_status = a->status;
    u->last_ms = a->elapsed_ms;
    u->last_at_ms = sh_clock_wall_ms();
    snprintf(u->last_node, sizeof u->last_node, "%s", a->node);
    pthread_mutex_unlock(&u->lock);
}

/* Folds one exchange into the round's answer: its failure ends the round; else its answers and
 * shards join (best first, one per track id). */
static int merge_into(ed_up_answer *a, ed_up_answer *one, size_t k, sh_err *e)
{
    if (one->status != ED_UP_OK) {
        a->status = one->status;
        snprintf(a->error, sizeof a->error, "%s", one->error);
        return 0;
    }
    if (!a->node[0])
        snprintf(a->node, sizeof a->node, "%s", one->node);
    json_t *m = ed_up_merge(a->candidates, one->candidates, k);
    if (!m || shards_union(a->shards, one->shards)) {
        json_decref(m);
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    json_decref(a->candidates);
    a->candidates = m;
    return 0;
}

int ed_upstream_match(ed_upstream *u, const ed_up_query *q, size_t nq,
                      const unsigned char *ask, size_t k, ed_up_answer *a, sh_err *e)
{
    if (nq == 0 || k < 1 || k > SH_RECOGNIZE_TOP_MAX)
        return sh_err_set(e, SH_EINVAL, "upstream: no fingerprint, or K out of range");
    char *url = NULL;
    if (match_url(u, ask, k, &url))
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    const double t0 = sh_clock_mono_ms();
    int rc = 0;
    a->status = ED_UP_OK;
    /* One exchange per fingerprint (the binary form carries one fp_version; two only while a
     * reindex runs), all within one timeout; the first failure ends the round. */
    for (size_t i = 0; rc == 0 && i < nq && a->status == ED_UP_OK; i++) {
        long left = u->timeout_ms - (long)(sh_clock_mono_ms() - t0);
        ed_up_answer one;
        if ((rc = ed_up_answer_init(&one))) {
            sh_err_set(e, rc, "out of memory");
            break;
        }
        if (left < 1) {
            one.status = ED_UP_TIMEOUT;
            snprintf(one.error, sizeof one.error, "no answer within %ld ms", u->timeout_ms);
        } else {
            rc = exchange(u, url, &q[i], ask, k, left, &one, e);
        }
        if (rc == 0)
            rc = merge_into(a, &one, k, e);
        ed_up_answer_clear(&one);
    }
    free(url);
    a->elapsed_ms = sh_clock_mono_ms() - t0;
    if (rc)
        return rc;
    if (a->status != ED_UP_OK) {
        json_array_clear(a->candidates);
        json_array_clear(a->shards);
        SH_WARN("upstream_failed", "url=%s status=%s elapsed_ms=%.1f reason=\"%s\"", u->url,
                ed_up_status_name(a->status), a->elapsed_ms, a->error);
    }
    record(u, a);
    return 0;
}

json_t *ed_upstream_state_json(const ed_upstream *u)
{
    ed_upstream *m = (ed_upstream *)u; /* the lock only */
    pthread_mutex_lock(&m->lock);
    json_t *o = json_pack("{s:s, s:s, s:f, s:s, s:I, s:I, s:I}", "url", u->url, "status",
                          ed_up_status_name(u->last_status), "elapsed_ms", u->last_ms, "node",
                          u->last_node, "at_ms", (json_int_t)u->last_at_ms, "requests",
                          (json_int_t)atomic_load(&m->requests), "connections",
                          (json_int_t)atomic_load(&m->connects));
    pthread_mutex_unlock(&m->lock);
    return o;
}
