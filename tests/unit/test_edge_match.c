/* test_edge_match.c — POST /v1/match over real HTTP against real LMDB shards (edge/match.c): a
 * shard holding track A at fp_version 2 and track B at fp_version 3 answers both from audio; the
 * same clips as JSON and binary hashes; a version the node cannot compare (422), the shard filter
 * and its "missing" list, malformed bodies (4xx, the node keeps serving), the hash cap, a track
 * reindexed from version 2 to 3 still matching, the request counters, and a track reindexed to
 * the speed-invariant version 4 found from 10 % faster audio. */
#include "../../edge/edge.h"

#include "sh_qhash.h"
#include "synth.h"

#include <curl/curl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

enum { NSHARDS = 4, RATE = 8000, TRACK_S = 30, CLIP_S = 8 };

typedef struct world {
    char root[64], data[96];
    ed x;
    ed_shard held[2]; /* shards 1 and 2 */
    float *music[3];  /* A, B, C */
    char url[64];
} world;

static world *W;

/* A 16-bit mono WAV of x[0..n) at RATE, malloc'ed. */
static uint8_t *wav(const float *x, size_t n, size_t *len)
{
    *len = 44 + 2 * n;
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    const uint32_t data = (uint32_t)(2 * n), riff = data + 36, rate = RATE, brate = 2 * RATE;
    memcpy(b, "RIFF", 4);
    memcpy(b + 4, &riff, 4);
    memcpy(b + 8, "WAVEfmt ", 8);
    const uint32_t fmt_len = 16;
    const uint16_t pcm = 1, ch = 1, align = 2, bits = 16;
    memcpy(b + 16, &fmt_len, 4);
    memcpy(b + 20, &pcm, 2);
    memcpy(b + 22, &ch, 2);
    memcpy(b + 24, &rate, 4);
    memcpy(b + 28, &brate, 4);
    memcpy(b + 32, &align, 2);
    memcpy(b + 34, &bits, 2);
    memcpy(b + 36, "data", 4);
    memcpy(b + 40, &data, 4);
    for (size_t i = 0; i < n; i++) {
        const int16_t v = (int16_t)(x[i] * 20000.0f);
        memcpy(b + 44 + 2 * i, &v, 2);
    }
    return b;
}

/* Hashes of x[0..n) with fp_version v's config (query or index mode); caller frees. */
static sh_hash *hashes(int v, int query, const float *x, size_t n, size_t *nh)
{
    sh_fp_config c;
    assert_int_equal(sh_fp_config_for_version(v, &c, NULL), 0);
    c.query = query;
    sh_fp *fp = NULL;
    assert_int_equal(sh_fp_new(&c, &fp, NULL), 0);
    assert_int_equal(sh_fp_feed(fp, x, n, NULL), 0);
    assert_int_equal(sh_fp_finish(fp, NULL), 0);
    const sh_hash *h = sh_fp_hashes(fp, nh);
    sh_hash *out = malloc((*nh ? *nh : 1) * sizeof *out);
    assert_non_null(out);
    memcpy(out, h, *nh * sizeof *out);
    sh_fp_free(fp);
    return out;
}

/* Upserts track `id` (the music of index m) at fp_version v into held shard hi, at `seq`. */
static void put(world *w, int hi, const char *id, int m, int v, int64_t seq)
{
    size_t n;
    sh_hash *h = hashes(v, 0, w->music[m], (size_t)RATE * TRACK_S, &n);
    sh_shard_batch *b = NULL;
    sh_err e = {0};
    assert_int_equal(sh_shard_batch_begin(w->held[hi].s, 0, &b, &e), 0);
    sh_dop op = {.seq = seq, .kind = SH_DOP_UPSERT, .track_id = id, .tenant = "t", .version = 1,
                 .fp_version = v, .duration_s = TRACK_S, .metadata = "{\"title\":\"x\"}",
                 .postings = h, .npostings = n};
    assert_int_equal(sh_shard_batch_apply(b, &op, &e), 0);
    assert_int_equal(sh_shard_batch_commit(b, NULL, &e), 0);
    atomic_store(&w->held[hi].position, seq);
    atomic_store(&w->held[hi].epoch, 1);
    free(h);
}

typedef struct buf {
    char *p;
    size_t n;
} buf;

static size_t on_data(char *p, size_t sz, size_t nm, void *ud)
{
    buf *b = ud;
    char *q = realloc(b->p, b->n + sz * nm + 1);
    assert_non_null(q);
    memcpy(q + b->n, p, sz * nm);
    b->p = q;
    b->n += sz * nm;
    b->p[b->n] = '\0';
    return sz * nm;
}

/* POSTs body to /v1/match?query with Content-Type ct (NULL: curl's default); the answer's JSON
 * (asserted to be JSON) and *status. */
static json_t *post(const char *query, const char *ct, const void *body, size_t len, long *status)
{
    char url[256];
    snprintf(url, sizeof url, "%s/v1/match%s%s", W->url, query ? "?" : "", query ? query : "");
    CURL *c = curl_easy_init();
    assert_non_null(c);
    buf b = {0};
    struct curl_slist *hd = NULL;
    char h[128];
    if (ct) {
        snprintf(h, sizeof h, "Content-Type: %s", ct);
        hd = curl_slist_append(hd, h);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    json_error_t je;
    json_t *o = b.p ? json_loads(b.p, 0, &je) : NULL;
    if (!o)
        fail_msg("not JSON: %s", b.p ? b.p : "(empty)");
    free(b.p);
    return o;
}

static const char *match_id(const json_t *o)
{
    return json_string_value(json_object_get(json_object_get(o, "match"), "track_id"));
}

static int match_fpv(const json_t *o)
{
    return (int)json_integer_value(json_object_get(json_object_get(o, "match"), "fp_version"));
}

/* The JSON text of member `key` of o, compact (for comparisons). */
static char *member(const json_t *o, const char *key)
{
    char *s = json_dumps(json_object_get(o, key), JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(s);
    return s;
}

static void assert_member(const json_t *o, const char *key, const char *want)
{
    char *s = member(o, key);
    if (strcmp(s, want))
        fail_msg("%s: %s, want %s", key, s, want);
    free(s);
}

static const float *clip(int m)
{
    return W->music[m] + (size_t)RATE * 11; /* 11 s into the track */
}

static int setup(void **state)
{
    (void)state;
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    W = w;
    snprintf(w->root, sizeof w->root, "/tmp/sh-test-edge-match.XXXXXX");
    assert_non_null(mkdtemp(w->root));
    snprintf(w->data, sizeof w->data, "%s/data", w->root);
    assert_int_equal(mkdir(w->data, 0755), 0);
    for (int m = 0; m < 3; m++) {
        w->music[m] = malloc((size_t)RATE * TRACK_S * sizeof(float));
        assert_non_null(w->music[m]);
        synth_music(w->music[m], (size_t)RATE * TRACK_S, RATE, 100 + (uint64_t)m);
    }
    ed *x = &w->x;
    x->cfg.data = w->data;
    x->cfg.region = "test-node";
    x->cfg.listen = "127.0.0.1:0";
    x->cfg.max_body = 2 << 20;
    x->cfg.max_clip_s = 60;
    x->cfg.http_threads = 2;
    x->cfg.request_timeout_s = 10;
    x->nshards = NSHARDS;
    x->held = w->held;
    x->nheld = 2;
    for (int i = 0; i < 2; i++) {
        w->held[i].n = i + 1;
        snprintf(w->held[i].dir, sizeof w->held[i].dir, "%s/shard-%d", w->data, i + 1);
        pthread_rwlock_init(&w->held[i].lock, NULL);
        atomic_store(&w->held[i].position, -1);
    }
    sh_err e = {0};
    assert_int_equal(ed_shards_open(x, &e), 0);
    put(w, 0, "track-A", 0, 2, 1);
    put(w, 0, "track-B", 1, 3, 2);
    put(w, 1, "track-C", 2, 3, 3);
    assert_int_equal(ed_metrics_init(x), 0);
    assert_int_equal(ed_slots_new(x, &e), 0);
    assert_int_equal(ed_http_start(x, &e), 0);
    atomic_store(&x->opened, true);
    snprintf(w->url, sizeof w->url, "http://127.0.0.1:%d", sh_http_port(x->http));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    world *w = W;
    sh_http_free(w->x.http);
    ed_shards_close(&w->x);
    ed_slots_free(&w->x);
    ed_metrics_free(&w->x);
    for (int i = 0; i < 2; i++)
        pthread_rwlock_destroy(&w->held[i].lock);
    for (int m = 0; m < 3; m++)
        free(w->music[m]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->root);
    assert_int_equal(system(cmd), 0);
    free(w);
    return 0;
}

/* Audio: one shard holding versions 2 (A) and 3 (B) answers both; the answer names the node,
 * the shard and the versions looked up. */
static void test_audio_two_versions(void **state)
{
    (void)state;
    const char *ids[] = {"track-A", "track-B", "track-C"};
    const int fpv[] = {2, 3, 3}, shard[] = {1, 1, 2};
    for (int m = 0; m < 3; m++) {
        size_t len;
        uint8_t *b = wav(clip(m), (size_t)RATE * CLIP_S, &len);
        long st = 0;
        json_t *o = post(NULL, "audio/wav", b, len, &st);
        assert_int_equal(st, 200);
        assert_string_equal(match_id(o), ids[m]);
        assert_int_equal(match_fpv(o), fpv[m]);
        json_t *best = json_object_get(o, "match");
        assert_string_equal(json_string_value(json_object_get(best, "node")), "test-node");
        assert_int_equal(json_integer_value(json_object_get(best, "shard")), shard[m]);
        assert_member(o, "fp_versions", "[2,3]");
        assert_member(o, "missing", "[]");
        assert_int_equal(json_array_size(json_object_get(o, "shards")), 2);
        assert_true(json_integer_value(json_object_get(o, "hashes")) > 100);
        json_decref(o);
        free(b);
    }
}

/* The same clips as client hashes, JSON and binary, in the version their track is indexed in. */
static void test_hashes(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++) {
        const int v = m == 0 ? 2 : 3;
        const char *id = m == 0 ? "track-A" : "track-B";
        size_t n;
        sh_hash *h = hashes(v, 1, clip(m), (size_t)RATE * CLIP_S, &n);
        uint8_t *bin;
        size_t len;
        assert_int_equal(sh_qhash_encode(v, h, n, &bin, &len, NULL), 0);
        long st = 0;
        json_t *o = post("top=3", SH_QHASH_CONTENT_TYPE, bin, len, &st);
        assert_int_equal(st, 200);
        assert_string_equal(match_id(o), id);
        assert_int_equal(json_integer_value(json_object_get(o, "hashes")), n);
        char want[8];
        snprintf(want, sizeof want, "[%d]", v);
        assert_member(o, "fp_versions", want);
        assert_true(json_array_size(json_object_get(o, "candidates")) >= 1);
        json_decref(o);
        /* JSON: the line `soundhash fingerprint --hashes --query` prints (extra keys ignored). */
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, json_pack("[II]", (json_int_t)h[i].hash,
                                                  (json_int_t)h[i].t));
        json_t *doc = json_pack("{s:s, s:i, s:I, s:o}", "file", "clip.wav", "fp_version", v,
                                "hashes", (json_int_t)n, "hash_list", list);
        char *text = json_dumps(doc, JSON_COMPACT);
        o = post(NULL, "application/json; charset=utf-8", text, strlen(text), &st);
        assert_int_equal(st, 200);
        assert_string_equal(match_id(o), id);
        assert_null(json_object_get(o, "candidates"));
        json_decref(o);
        free(text);
        json_decref(doc);
        /* In-process, hashes in t-order and reversed: the lookups sort a copy once, so the
         * answers agree and the caller's hashes (what an upstream is sent) keep their order. */
        sh_hash *copy = malloc(n * sizeof *copy), *rev = malloc(n * sizeof *rev);
        memcpy(copy, h, n * sizeof *copy);
        for (size_t i = 0; i < n; i++)
            rev[i] = h[n - 1 - i];
        ed_slot *slot = ed_slot_take(&W->x);
        assert_non_null(slot);
        ed_match m1, m2;
        sh_err e = {0};
        assert_int_equal(ed_match_hashes(&W->x, slot, v, h, n, 3, NULL, &m1, &e), 0);
        assert_int_equal(ed_match_hashes(&W->x, slot, v, rev, n, 3, NULL, &m2, &e), 0);
        ed_slot_give(&W->x, slot);
        assert_memory_equal(h, copy, n * sizeof *h);
        assert_int_equal(m1.nsent, 1);
        assert_ptr_equal(m1.sent[0].h, h);
        assert_ptr_equal(m2.sent[0].h, rev);
        assert_true(json_array_size(m1.answers) >= 1);
        assert_true(json_equal(m1.answers, m2.answers));
        assert_string_equal(json_string_value(json_object_get(json_array_get(m1.answers, 0),
                                                              "track_id")),
                            id);
        ed_match_free(&m1);
        ed_match_free(&m2);
        free(rev);
        free(copy);
        free(bin);
        free(h);
    }
}

/* A version this build cannot compare: 422 naming the versions the node holds. A version it
 * compares that the selected shards do not hold: an ordinary answer without a match. */
static void test_versions(void **state)
{
    (void)state;
    const sh_hash h[] = {{1, 0}, {2, 3}};
    uint8_t *bin;
    size_t len;
    assert_int_equal(sh_qhash_encode(7, h, 2, &bin, &len, NULL), 0);
    long st = 0;
    json_t *o = post(NULL, SH_QHASH_CONTENT_TYPE, bin, len, &st);
    assert_int_equal(st, 422);
    assert_non_null(strstr(json_string_value(json_object_get(o, "error")), "fp_version 7"));
    assert_member(o, "fp_versions", "[2,3]");
    assert_member(o, "supported", "[2,3,4]");
    json_decref(o);
    free(bin);
    /* the library call's message names every version the node compares, not two of them */
    ed_match m;
    sh_err e;
    assert_int_equal(ed_match_hashes(&W->x, NULL, 7, h, 2, 1, NULL, &m, &e), SH_EUNSUPPORTED);
    assert_int_equal(m.status, 422);
    assert_non_null(strstr(e.msg, "this node compares 2, 3, 4"));
    const char *j = "{\"fp_version\":1,\"hash_list\":[[1,2]]}";
    o = post(NULL, "application/json", j, strlen(j), &st);
    assert_int_equal(st, 422);
    json_decref(o);
    /* Shard 2 holds only version 3: A's version-2 hashes find nothing there. */
    size_t n;
    sh_hash *ha = hashes(2, 1, clip(0), (size_t)RATE * CLIP_S, &n);
    assert_int_equal(sh_qhash_encode(2, ha, n, &bin, &len, NULL), 0);
    o = post("shards=2", SH_QHASH_CONTENT_TYPE, bin, len, &st);
    assert_int_equal(st, 200);
    assert_true(json_is_null(json_object_get(o, "match")));
    assert_member(o, "fp_versions", "[2]");
    json_decref(o);
    free(bin);
    free(ha);
}

/* shards=: only those are consulted; those not held are listed as missing; bad lists are 400. */
static void test_shard_filter(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = wav(clip(1), (size_t)RATE * CLIP_S, &len);
    long st = 0;
    json_t *o = post("shards=0,1,3", NULL, b, len, &st);
    assert_int_equal(st, 200);
    assert_string_equal(match_id(o), "track-B");
    assert_member(o, "missing", "[0,3]");
    json_t *sh = json_object_get(o, "shards");
    assert_int_equal(json_array_size(sh), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(sh, 0), "shard")), 1);
    json_decref(o);
    o = post("shards=2", NULL, b, len, &st); /* B lives in shard 1 */
    assert_int_equal(st, 200);
    assert_true(json_is_null(json_object_get(o, "match")));
    assert_member(o, "fp_versions", "[3]");
    json_decref(o);
    const char *bad[] = {"shards=", "shards=x", "shards=1,", "shards=,1", "shards=4",
                         "shards=99999999999999999999", "shards=1;2", "shards=-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        o = post(bad[i], NULL, b, len, &st);
        if (st != 400)
            fail_msg("%s: status %ld", bad[i], st);
        assert_non_null(strstr(json_string_value(json_object_get(o, "error")), "shards"));
        json_decref(o);
    }
    free(b);
}

/* Malformed bodies get 4xx JSON and the node keeps serving; over the hash cap is 413. */
static void test_malformed(void **state)
{
    (void)state;
    const struct {
        const char *ct, *body;
        size_t len;
        long status;
        const char *needle;
    } cases[] = {
        {"application/json", "{\"fp_version\":3,", 16, 400, "JSON"},
        {"application/json", "{\"fp_version\":3,\"hash_list\":[[1]]}", 34, 400, "hash_list[0]"},
        {"application/json", "[]", 2, 400, "not an object"},
        {SH_QHASH_CONTENT_TYPE, "SHQ1\x03\x02\x01\x01\x02\x03\x04", 11, 400, "announced"},
        {SH_QHASH_CONTENT_TYPE, "SHQ2\x03\x00", 6, 400, "magic"},
        {SH_QHASH_CONTENT_TYPE, "SHQ1\x03\x00\x00", 7, 400, "trailing"},
        {"audio/wav", "RIFFgarbage", 11, 422, "audio"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        long st = 0;
        json_t *o = post(NULL, cases[i].ct, cases[i].body, cases[i].len, &st);
        const char *err = json_string_value(json_object_get(o, "error"));
        if (st != cases[i].status || !err || !strstr(err, cases[i].needle))
            fail_msg("case %zu: %ld %s", i, st, err ? err : "(no error)");
        json_decref(o);
    }
    long st = 0;
    json_t *o = post(NULL, SH_QHASH_CONTENT_TYPE, "", 0, &st);
    assert_int_equal(st, 400);
    json_decref(o);
    /* The cap: max_clip_s × the densest query config's bound, checked before allocating. */
    assert_true(W->x.max_hashes > 60 * 1000);
    const size_t cap = W->x.max_hashes;
    W->x.max_hashes = 1;
    const sh_hash h[] = {{1, 0}, {2, 3}};
    uint8_t *bin;
    size_t len;
    assert_int_equal(sh_qhash_encode(3, h, 2, &bin, &len, NULL), 0);
    o = post(NULL, SH_QHASH_CONTENT_TYPE, bin, len, &st);
    W->x.max_hashes = cap;
    assert_int_equal(st, 413);
    json_decref(o);
    /* Still serving. */
    o = post(NULL, SH_QHASH_CONTENT_TYPE, bin, len, &st);
    assert_int_equal(st, 200);
    json_decref(o);
    free(bin);
}

/* A reindex moves A from version 2 to 3 (a higher seq): audio still finds it, now under 3, and
 * only version 3 is left to look up. */
static void test_reindexed(void **state)
{
    (void)state;
    put(W, 0, "track-A", 0, 3, 10);
    size_t len;
    uint8_t *b = wav(clip(0), (size_t)RATE * CLIP_S, &len);
    long st = 0;
    json_t *o = post(NULL, NULL, b, len, &st);
    assert_int_equal(st, 200);
    assert_string_equal(match_id(o), "track-A");
    assert_int_equal(match_fpv(o), 3);
    assert_member(o, "fp_versions", "[3]");
    json_decref(o);
    free(b);
}

/* A reindex in flight, in shard 2 (C deleted first, so the shard's versions go {2} → {2,3} →
 * {3}): a writer moves tracks from version 2 to 3, one commit each (as the applier does), each
 * move made while a query for that very track is starting; every query finds its track. A
 * reindex moves a track once, so that is the race to cover: a version that appears in a shard
 * after its versions were read is looked up too (match.c reads them again after each round). */
enum { CHURN_N = 8, CHURN_S = 15 };

typedef struct churn {
    float *music[CHURN_N];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int moving;  /* the track the writer moves next; CHURN_N: done */
    int queries; /* queries completed */
    int failed;
} churn;

static char *churn_id(int i, char *b, size_t cap)
{
    snprintf(b, cap, "churn-%d", i);
    return b;
}

static int churn_put(int i, int v, const float *x, int64_t seq)
{
    size_t n;
    sh_hash *h = hashes(v, 0, x, (size_t)RATE * CHURN_S, &n);
    char id[32];
    sh_shard_batch *b = NULL;
    sh_dop op = {.seq = seq, .kind = SH_DOP_UPSERT, .track_id = churn_id(i, id, sizeof id),
                 .tenant = "t", .version = 1, .fp_version = v, .duration_s = CHURN_S,
                 .metadata = "{}", .postings = h, .npostings = n};
    int rc = sh_shard_batch_begin(W->held[1].s, 0, &b, NULL);
    if (rc == 0)
        rc = sh_shard_batch_apply(b, &op, NULL);
    if (rc == 0)
        rc = sh_shard_batch_commit(b, NULL, NULL);
    else
        sh_shard_batch_abort(b);
    free(h);
    return rc;
}

/* Moves track i once the main thread finished a query of it (it is then starting the next). */
static void *churn_run(void *arg)
{
    churn *c = arg;
    for (int i = 0; i < CHURN_N; i++) {
        pthread_mutex_lock(&c->lock);
        const int want = c->queries + 1;
        while (c->queries < want)
            pthread_cond_wait(&c->cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
        const int rc = churn_put(i, 3, c->music[i], 200 + i);
        pthread_mutex_lock(&c->lock);
        c->failed |= rc != 0;
        c->moving = i + 1;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
    }
    return NULL;
}

static void test_reindex_churn(void **state)
{
    (void)state;
    churn c = {.moving = 0};
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    uint8_t *clips[CHURN_N];
    size_t lens[CHURN_N];
    sh_shard_batch *b = NULL;
    sh_dop del = {.seq = 40, .kind = SH_DOP_DELETE, .track_id = "track-C", .version = 1};
    assert_int_equal(sh_shard_batch_begin(W->held[1].s, 0, &b, NULL), 0);
    assert_int_equal(sh_shard_batch_apply(b, &del, NULL), 0);
    assert_int_equal(sh_shard_batch_commit(b, NULL, NULL), 0);
    for (int i = 0; i < CHURN_N; i++) {
        c.music[i] = malloc((size_t)RATE * CHURN_S * sizeof(float));
        assert_non_null(c.music[i]);
        synth_music(c.music[i], (size_t)RATE * CHURN_S, RATE, 200 + (uint64_t)i);
        assert_int_equal(churn_put(i, 2, c.music[i], 50 + i), 0);
        clips[i] = wav(c.music[i] + RATE * 4, (size_t)RATE * CLIP_S, &lens[i]);
    }
    atomic_store(&W->held[1].position, 300);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn_run, &c), 0);
    int queries = 0;
    for (;;) {
        pthread_mutex_lock(&c.lock);
        const int i = c.moving;
        pthread_mutex_unlock(&c.lock);
        if (i == CHURN_N)
            break;
        long st = 0;
        json_t *o = post(NULL, NULL, clips[i], lens[i], &st);
        char id[32];
        assert_int_equal(st, 200);
        if (!match_id(o) || strcmp(match_id(o), churn_id(i, id, sizeof id)))
            fail_msg("query %d for %s during its move: %s", queries, id,
                     match_id(o) ? match_id(o) : "no match");
        json_decref(o);
        pthread_mutex_lock(&c.lock);
        c.queries = ++queries;
        pthread_cond_broadcast(&c.cond);
        pthread_mutex_unlock(&c.lock);
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_false(c.failed);
    assert_true(queries >= CHURN_N);
    /* Every track now answers under version 3. */
    for (int i = 0; i < CHURN_N; i++) {
        long st = 0;
        json_t *o = post(NULL, NULL, clips[i], lens[i], &st);
        assert_int_equal(match_fpv(o), 3);
        json_decref(o);
        free(clips[i]);
        free(c.music[i]);
    }
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
}

/* Requests are counted by body kind. */
static void test_metrics(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(sh_metrics_render(W->x.m.reg, &text, &len), 0);
    const char *want[] = {"soundhash_edge_match_requests_total{body=\"audio\"}",
                          "soundhash_edge_match_requests_total{body=\"hashes_json\"}",
                          "soundhash_edge_match_requests_total{body=\"hashes_binary\"}"};
    for (size_t i = 0; i < 3; i++) {
        const char *p = strstr(text, want[i]);
        assert_non_null(p);
        assert_true(atof(p + strlen(want[i])) >= 2);
    }
    free(text);
}

/* fp_version 4 (speed-invariant) travels like the others: track A reindexed to it is found from
 * audio played 10 % faster (pitch and tempo, linear interpolation), which version 3 misses. */
static void test_speed_version(void **state)
{
    (void)state;
    put(W, 0, "track-A", 0, 4, 400);
    const double f = 1.10;
    const size_t n = (size_t)((double)RATE * CLIP_S / f);
    float *y = malloc(n * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) {
        const double p = (double)i * f;
        const size_t k = (size_t)p;
        y[i] = (float)(clip(0)[k] * (1.0 - (p - (double)k)) + clip(0)[k + 1] * (p - (double)k));
    }
    size_t len;
    uint8_t *b = wav(y, n, &len);
    long st = 0;
    json_t *o = post("shards=1", "audio/wav", b, len, &st);
    assert_int_equal(st, 200);
    assert_string_equal(match_id(o), "track-A");
    assert_int_equal(match_fpv(o), 4);
    assert_member(o, "fp_versions", "[3,4]");
    json_decref(o);
    free(b);
    free(y);
}

/* One request's answers for the three clips as audio (answers and consulted shards, JSON text). */
static void answers_of(char *out[3][2])
{
    size_t answered = 0;
    for (int m = 0; m < 3; m++) {
        size_t len;
        uint8_t *b = wav(clip(m), (size_t)RATE * CLIP_S, &len);
        ed_slot *slot = ed_slot_take(&W->x);
        assert_non_null(slot);
        ed_match r;
        sh_err e = {0};
        assert_int_equal(ed_match_audio(&W->x, slot, b, len, 3, NULL, &r, &e), 0);
        ed_slot_give(&W->x, slot);
        answered += json_array_size(r.answers) >= 1; /* earlier tests moved some tracks */
        out[m][0] = json_dumps(r.answers, JSON_COMPACT | JSON_SORT_KEYS);
        out[m][1] = json_dumps(r.shards, JSON_COMPACT | JSON_SORT_KEYS);
        ed_match_free(&r);
        free(b);
    }
    assert_true(answered >= 2);
}

/* --match-threads: a request's shards looked up on several lanes answer exactly as one after the
 * other (same answers, same consulted shards in shard order), also over HTTP. */
static void test_match_threads(void **state)
{
    (void)state;
    ed *x = &W->x;
    char *serial[3][2], *par[3][2];
    assert_int_equal(x->lanes, 1);
    answers_of(serial);
    sh_err e = {0};
    ed_slots_free(x);
    x->cfg.match_threads = 3;
    assert_int_equal(ed_slots_new(x, &e), 0);
    assert_int_equal(x->lanes, 3);
    assert_int_equal(sh_pool_threads(x->match_pool), 2);
    for (int rep = 0; rep < 3; rep++) {
        answers_of(par);
        for (int m = 0; m < 3; m++)
            for (int i = 0; i < 2; i++) {
                assert_string_equal(par[m][i], serial[m][i]);
                free(par[m][i]);
            }
    }
    size_t len;
    uint8_t *b = wav(clip(2), (size_t)RATE * CLIP_S, &len);
    long st = 0;
    json_t *o = post("top=3", "audio/wav", b, len, &st);
    assert_int_equal(st, 200);
    char *ans = json_dumps(json_object_get(o, "candidates"), JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(ans);
    assert_string_equal(ans, serial[2][0]); /* top=3 as in answers_of */
    free(ans);
    assert_int_equal(json_array_size(json_object_get(o, "shards")), 2);
    json_decref(o);
    free(b);
    ed_slots_free(x); /* back to one lane for the other tests */
    x->cfg.match_threads = 99; /* clamped */
    assert_int_equal(ed_slots_new(x, &e), 0);
    assert_int_equal(x->lanes, ED_LANES_MAX);
    ed_slots_free(x);
    x->cfg.match_threads = 0;
    assert_int_equal(ed_slots_new(x, &e), 0);
    assert_int_equal(x->lanes, 1);
    for (int m = 0; m < 3; m++)
        for (int i = 0; i < 2; i++)
            free(serial[m][i]);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audio_two_versions), cmocka_unit_test(test_hashes),
        cmocka_unit_test(test_versions),           cmocka_unit_test(test_shard_filter),
        cmocka_unit_test(test_malformed),          cmocka_unit_test(test_reindexed),
        cmocka_unit_test(test_reindex_churn),      cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_speed_version),      cmocka_unit_test(test_match_threads),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
