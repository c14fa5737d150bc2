/* test_edge_upstream.c — the edge's --upstream client (edge/upstream.c): an upstream's answer is validated field by field (hostile answers are
 * refused whole, extra fields dropped, K kept); local and upstream answers merge best confidence
 * first, one per track id; the client against a real HTTP server: it sends the hashes in the
 * binary form with top, shards, the bearer token and its origin, over one kept connection; a non-200,
 * an oversized answer, a dead port and a server that does not answer in time become status error
 * or timeout and are counted. */
#include "../../edge/edge.h"

#include "sh_http.h"
#include "sh_qhash.h"

#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

enum { NSHARDS = 8 };

/* ask = {1, 3, 5}: the shards an edge holding 0, 2, 4, 6, 7 would ask for. */
static const unsigned char ASK[NSHARDS] = {0, 1, 0, 1, 0, 1, 0, 0};

static const char *OK_BODY =
    "{\"node\":\"secondary\",\"evil\":[1,2],"
    "\"shards\":[{\"shard\":1,\"epoch\":7,\"position\":42},{\"shard\":3,\"epoch\":7,"
    "\"position\":40}],"
    "\"match\":{\"track_id\":\"t-a\",\"offset_s\":30.1,\"duration_s\":9.5,\"score\":120,"
    "\"confidence\":0.99,\"scale\":1.0,\"shard\":1,\"metadata\":{\"title\":\"A\"},"
    "\"extra\":\"dropped\"},"
    "\"candidates\":[{\"track_id\":\"t-a\",\"offset_s\":30.1,\"duration_s\":9.5,\"score\":120,"
    "\"confidence\":0.99,\"scale\":1.0,\"shard\":1,\"metadata\":{\"title\":\"A\"},"
    "\"extra\":\"dropped\",\"fp_version\":3},"
    "{\"track_id\":\"t-b\",\"offset_s\":-1,\"duration_s\":3,\"score\":20,\"confidence\":0.85,"
    "\"scale\":1.02,\"shard\":3,\"metadata\":null,\"node\":\"other-name\",\"fp_version\":2}]}";

static int parse(const char *body, size_t k, ed_up_answer *a)
{
    sh_err e = {0};
    assert_int_equal(ed_up_answer_init(a), 0);
    return ed_up_parse(body, strlen(body), ASK, NSHARDS, k, a, &e);
}

static void test_parse_valid(void **state)
{
    (void)state;
    ed_up_answer a;
    assert_int_equal(parse(OK_BODY, 5, &a), 0);
    assert_string_equal(a.node, "secondary");
    assert_int_equal(json_array_size(a.candidates), 2);
    assert_int_equal(json_array_size(a.shards), 2);
    json_t *c0 = json_array_get(a.candidates, 0), *c1 = json_array_get(a.candidates, 1);
    assert_string_equal(json_string_value(json_object_get(c0, "track_id")), "t-a");
    assert_string_equal(json_string_value(json_object_get(c0, "node")), "secondary");
    assert_string_equal(json_string_value(json_object_get(c1, "node")), "other-name");
    assert_null(json_object_get(c0, "extra")); /* copied field by field */
    assert_int_equal(json_integer_value(json_object_get(c0, "fp_version")), 3);
    assert_int_equal(json_integer_value(json_object_get(c1, "fp_version")), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(c0, "metadata"), "title")), "A");
    assert_true(json_is_null(json_object_get(c1, "metadata")));
    json_t *s0 = json_array_get(a.shards, 0);
    assert_int_equal(json_integer_value(json_object_get(s0, "position")), 42);
    assert_string_equal(json_string_value(json_object_get(s0, "node")), "secondary");
    ed_up_answer_clear(&a);

    /* K = 1 keeps the best only */
    assert_int_equal(parse(OK_BODY, 1, &a), 0);
    assert_int_equal(json_array_size(a.candidates), 1);
    ed_up_answer_clear(&a);

    /* no candidates list: "match" alone; null: no answers, the shards still count */
    assert_int_equal(parse("{\"node\":\"n\",\"shards\":[{\"shard\":5,\"epoch\":1,\"position\":-1}]"
                           ",\"match\":null}",
                           3, &a),
                     0);
    assert_int_equal(json_array_size(a.candidates), 0);
    assert_int_equal(json_array_size(a.shards), 1);
    ed_up_answer_clear(&a);
}

/* Each of these must be refused whole, leaving the arrays empty. */
static void test_parse_hostile(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "not json",
        "[1,2]",
        "{\"node\":\"n\",\"shards\":[],\"match\":null",                /* truncated */
        "{\"shards\":[],\"match\":null}",                              /* no node */
        "{\"node\":\"\",\"shards\":[],\"match\":null}",                /* empty node */
        "{\"node\":\"a\\u0001b\",\"shards\":[],\"match\":null}",       /* control char */
        "{\"node\":\"a\\u0000b\",\"shards\":[],\"match\":null}",       /* NUL inside */
        "{\"node\":\"n\",\"node\":\"m\",\"shards\":[],\"match\":null}", /* duplicate key */
        "{\"node\":\"n\",\"shards\":{},\"match\":null}",
        "{\"node\":\"n\",\"shards\":[],\"match\":3}",
        "{\"node\":\"n\",\"shards\":[]}",                               /* no match */
        "{\"node\":\"n\",\"shards\":[{\"shard\":2,\"epoch\":1,\"position\":1}],\"match\":null}",
        "{\"node\":\"n\",\"shards\":[{\"shard\":9,\"epoch\":1,\"position\":1}],\"match\":null}",
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1},"
        "{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":null}",
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1.5,\"position\":1}],\"match\":null}",
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1}],\"match\":null}",
        /* an answer from a shard not consulted */
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":"
        "{\"track_id\":\"t\",\"offset_s\":1,\"duration_s\":1,\"score\":9,\"confidence\":0.9,"
        "\"scale\":1,\"fp_version\":3,\"shard\":3,\"metadata\":null}}",
        /* confidence above 1 */
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":"
        "{\"track_id\":\"t\",\"offset_s\":1,\"duration_s\":1,\"score\":9,\"confidence\":1.5,"
        "\"scale\":1,\"fp_version\":3,\"shard\":1,\"metadata\":null}}",
        /* negative score */
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":"
        "{\"track_id\":\"t\",\"offset_s\":1,\"duration_s\":1,\"score\":-9,\"confidence\":0.9,"
        "\"scale\":1,\"fp_version\":3,\"shard\":1,\"metadata\":null}}",
        /* empty track id */
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":"
        "{\"track_id\":\"\",\"offset_s\":1,\"duration_s\":1,\"score\":9,\"confidence\":0.9,"
        "\"scale\":1,\"fp_version\":3,\"shard\":1,\"metadata\":null}}",
        /* nested metadata */
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":"
        "{\"track_id\":\"t\",\"offset_s\":1,\"duration_s\":1,\"score\":9,\"confidence\":0.9,"
        "\"scale\":1,\"fp_version\":3,\"shard\":1,\"metadata\":{\"a\":{\"b\":1}}}}",
        /* no fp_version */
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":"
        "{\"track_id\":\"t\",\"offset_s\":1,\"duration_s\":1,\"score\":9,\"confidence\":0.9,"
        "\"scale\":1,\"shard\":1,\"metadata\":null}}",
        /* a negative fp_version */
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":"
        "{\"track_id\":\"t\",\"offset_s\":1,\"duration_s\":1,\"score\":9,\"confidence\":0.9,"
        "\"scale\":1,\"shard\":1,\"metadata\":null,\"fp_version\":-3}}",
        /* a candidate that is not an object */
        "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":null,"
        "\"candidates\":[\"t\"]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ed_up_answer a;
        sh_err e = {0};
        assert_int_equal(ed_up_answer_init(&a), 0);
        int rc = ed_up_parse(bad[i], strlen(bad[i]), ASK, NSHARDS, 3, &a, &e);
        if (rc != SH_EFORMAT)
            fail_msg("bad[%zu] accepted (rc %d): %s", i, rc, bad[i]);
        assert_int_equal(json_array_size(a.candidates), 0);
        assert_int_equal(json_array_size(a.shards), 0);
        ed_up_answer_clear(&a);
    }

    /* a node name over SH_REGION_MAX bytes; a track id over SH_TRACK_ID_MAX */
    char big[1024];
    snprintf(big, sizeof big, "{\"node\":\"%0*d\",\"shards\":[],\"match\":null}",
             SH_REGION_MAX + 1, 0);
    ed_up_answer a;
    assert_int_equal(parse(big, 1, &a), SH_EFORMAT);
    ed_up_answer_clear(&a);
    snprintf(big, sizeof big,
             "{\"node\":\"n\",\"shards\":[{\"shard\":1,\"epoch\":1,\"position\":1}],\"match\":"
             "{\"track_id\":\"%0*d\",\"offset_s\":1,\"duration_s\":1,\"score\":9,"
             "\"confidence\":0.9,\"scale\":1,\"shard\":1,\"metadata\":null}}",
             SH_TRACK_ID_MAX + 1, 0);
    assert_int_equal(parse(big, 1, &a), SH_EFORMAT);
    ed_up_answer_clear(&a);
}

static json_t *cand(const char *id, double conf, int score, const char *node)
{
    return json_pack("{s:s, s:f, s:i, s:s}", "track_id", id, "confidence", conf, "score", score,
                     "node", node);
}

static const char *id_at(const json_t *a, size_t i)
{
    return json_string_value(json_object_get(json_array_get(a, i), "track_id"));
}

static const char *node_at(const json_t *a, size_t i)
{
    return json_string_value(json_object_get(json_array_get(a, i), "node"));
}

static void test_merge(void **state)
{
    (void)state;
    json_t *local = json_array(), *remote = json_array();
    json_array_append_new(local, cand("a", 0.90, 10, "L"));
    json_array_append_new(local, cand("b", 0.85, 30, "L"));
    json_array_append_new(remote, cand("c", 0.95, 5, "R"));
    json_array_append_new(remote, cand("a", 0.99, 12, "R")); /* same track, better: kept */
    json_array_append_new(remote, cand("d", 0.85, 30, "R")); /* ties b: local first */
    json_t *m = ed_up_merge(local, remote, 10);
    assert_non_null(m);
    assert_int_equal(json_array_size(m), 4);
    assert_string_equal(id_at(m, 0), "a");
    assert_string_equal(node_at(m, 0), "R");
    assert_string_equal(id_at(m, 1), "c");
    assert_string_equal(id_at(m, 2), "b");
    assert_string_equal(id_at(m, 3), "d");
    json_decref(m);

    m = ed_up_merge(local, remote, 2); /* K caps */
    assert_int_equal(json_array_size(m), 2);
    assert_string_equal(id_at(m, 1), "c");
    json_decref(m);

    json_t *none = json_array();
    m = ed_up_merge(local, none, 1); /* no upstream answer: the local best */
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(node_at(m, 0), "L");
    json_decref(m);
    m = ed_up_merge(none, none, 3);
    assert_int_equal(json_array_size(m), 0);
    json_decref(m);

    /* equal confidence: the higher score wins whatever the side */
    json_t *r2 = json_array();
    json_array_append_new(r2, cand("e", 0.90, 11, "R"));
    m = ed_up_merge(local, r2, 1);
    assert_string_equal(id_at(m, 0), "e");
    json_decref(m);
    json_decref(r2);
    json_decref(none);
    json_decref(local);
    json_decref(remote);
}

/* ---- the client against a real server ----------------------------------------------------- */

typedef struct fake {
    int mode; /* 0 answer `body`, 1: 503 JSON, 2: 5 MiB, 3: hold until released */
    const char *body;
    _Atomic int released;
    _Atomic int calls;
    char query_top[16], query_shards[64], auth[128], origin[64], ctype[64];
    sh_qhash got;
} fake;

static int on_match(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    fake *f = ud;
    atomic_fetch_add(&f->calls, 1);
    const char *v;
    snprintf(f->query_top, sizeof f->query_top, "%s",
             (v = sh_http_req_query(req, "top")) ? v : "");
    snprintf(f->query_shards, sizeof f->query_shards, "%s",
             (v = sh_http_req_query(req, "shards")) ? v : "");
    snprintf(f->auth, sizeof f->auth, "%s",
             (v = sh_http_req_header(req, "Authorization")) ? v : "");
    snprintf(f->origin, sizeof f->origin, "%s",
             (v = sh_http_req_header(req, "X-SoundHash-Origin")) ? v : "");
    snprintf(f->ctype, sizeof f->ctype, "%s",
             (v = sh_http_req_header(req, "Content-Type")) ? v : "");
    sh_err e = {0};
    sh_qhash_free(&f->got);
    sh_qhash_parse(req->body, req->body_len, 1, 100000, &f->got, &e);
    if (f->mode == 1)
        return sh_http_resp_set(resp, 503, "application/json", "{\"error\":\"busy\"}", 16);
    if (f->mode == 2) {
        size_t n = (size_t)5 << 20;
        char *b = malloc(n);
        memset(b, ' ', n);
        sh_http_resp_take(resp, 200, "application/json", b, n);
        return 0;
    }
    while (f->mode == 3 && !atomic_load(&f->released)) /* waits for the client to give up */
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    return sh_http_resp_set(resp, 200, "application/json", f->body, strlen(f->body));
}

static void test_client(void **state)
{
    (void)state;
    fake f = {.body = OK_BODY};
    sh_err e = {0};
    sh_http *srv = NULL;
    sh_http_opts o;
    sh_http_opts_default(&o);
    o.threads = 2;
    assert_int_equal(sh_http_new(&o, &srv, &e), 0);
    assert_int_equal(sh_http_route(srv, "POST", "/v1/match", on_match, &f), 0);
    assert_int_equal(sh_http_start(srv, "127.0.0.1:0", &e), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", sh_http_port(srv));

    sh_metrics *reg = NULL;
    assert_int_equal(sh_metrics_new(&reg), 0);
    ed_upstream *u = NULL;
    ed_up_config c = {.url = url, .token = "tok", .origin = "0123456789abcdef0123456789abcdef",
                      .timeout_ms = 5000, .handles = 1, .nshards = NSHARDS};
    assert_int_equal(ed_upstream_new(&c, reg, &u, &e), 0);
    url[strlen(url) - 1] = '\0';
    assert_string_equal(ed_upstream_url(u), url); /* without the trailing '/' */

    sh_hash h[3] = {{7, 1}, {9, 2}, {11, 5}};
    ed_up_query q = {3, h, 3};
    ed_up_answer a;
    assert_int_equal(ed_up_answer_init(&a), 0);
    assert_int_equal(ed_upstream_match(u, &q, 1, ASK, 2, &a, &e), 0);
    assert_int_equal(a.status, ED_UP_OK);
    assert_string_equal(a.node, "secondary");
    assert_int_equal(json_array_size(a.candidates), 2);
    assert_string_equal(f.query_top, "2");
    assert_string_equal(f.query_shards, "1,3,5");
    assert_string_equal(f.auth, "Bearer tok");
    assert_string_equal(f.origin, c.origin);
    assert_string_equal(f.ctype, SH_QHASH_CONTENT_TYPE);
    assert_int_equal(f.got.fp_version, 3);
    assert_int_equal(f.got.n, 3);
    assert_int_equal(f.got.h[2].hash, 11);
    ed_up_answer_clear(&a);

    /* two fingerprints (a reindex): two exchanges, answers merged, shards once each */
    ed_up_query q2[2] = {{3, h, 3}, {2, h, 2}};
    assert_int_equal(ed_up_answer_init(&a), 0);
    assert_int_equal(ed_upstream_match(u, q2, 2, ASK, 3, &a, &e), 0);
    assert_int_equal(a.status, ED_UP_OK);
    assert_int_equal(f.got.fp_version, 2);
    assert_int_equal(json_array_size(a.shards), 2);
    assert_int_equal(json_array_size(a.candidates), 2);
    ed_up_answer_clear(&a);

    /* three exchanges so far over one kept handle: one connection */
    json_t *st = ed_upstream_state_json(u);
    assert_int_equal(json_integer_value(json_object_get(st, "requests")), 2);
    assert_int_equal(json_integer_value(json_object_get(st, "connections")), 1);
    json_decref(st);

    /* a non-200: error, with the upstream's reason */
    f.mode = 1;
    assert_int_equal(ed_up_answer_init(&a), 0);
    assert_int_equal(ed_upstream_match(u, &q, 1, ASK, 1, &a, &e), 0);
    assert_int_equal(a.status, ED_UP_ERROR);
    assert_non_null(strstr(a.error, "503"));
    assert_non_null(strstr(a.error, "busy"));
    assert_int_equal(json_array_size(a.candidates), 0);
    ed_up_answer_clear(&a);

    /* an answer over the cap: error */
    f.mode = 2;
    assert_int_equal(ed_up_answer_init(&a), 0);
    assert_int_equal(ed_upstream_match(u, &q, 1, ASK, 1, &a, &e), 0);
    assert_int_equal(a.status, ED_UP_ERROR);
    assert_non_null(strstr(a.error, "over"));
    ed_up_answer_clear(&a);

    /* an answer of shards not asked for (ASK2 lacks 3): error, nothing kept */
    f.mode = 0;
    static const unsigned char ASK2[NSHARDS] = {0, 1, 0, 0, 0, 1, 0, 0};
    assert_int_equal(ed_up_answer_init(&a), 0);
    assert_int_equal(ed_upstream_match(u, &q, 1, ASK2, 1, &a, &e), 0);
    assert_int_equal(a.status, ED_UP_ERROR);
    assert_int_equal(json_array_size(a.shards), 0);
    ed_up_answer_clear(&a);

    st = ed_upstream_state_json(u);
    assert_string_equal(json_string_value(json_object_get(st, "status")), "error");
    assert_int_equal(json_integer_value(json_object_get(st, "requests")), 5);
    json_decref(st);
    ed_upstream_free(u);

    /* a server that does not answer within the timeout: timeout */
    c.timeout_ms = 200;
    sh_metrics *reg2 = NULL;
    assert_int_equal(sh_metrics_new(&reg2), 0);
    assert_int_equal(ed_upstream_new(&c, reg2, &u, &e), 0);
    f.mode = 3;
    assert_int_equal(ed_up_answer_init(&a), 0);
    assert_int_equal(ed_upstream_match(u, &q, 1, ASK, 1, &a, &e), 0);
    atomic_store(&f.released, 1);
    assert_int_equal(a.status, ED_UP_TIMEOUT);
    ed_up_answer_clear(&a);
    ed_upstream_free(u);

    /* counted: 2 ok (the two-fingerprint round counts once), 3 errors */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(sh_metrics_render(reg, &text, &len), 0);
    assert_non_null(strstr(text, "soundhash_edge_upstream_requests_total{result=\"ok\"} 2"));
    assert_non_null(strstr(text, "soundhash_edge_upstream_requests_total{result=\"error\"} 3"));
    assert_non_null(strstr(text, "soundhash_edge_upstream_seconds_count 5"));
    free(text);
    assert_int_equal(sh_metrics_render(reg2, &text, &len), 0);
    assert_non_null(strstr(text, "soundhash_edge_upstream_requests_total{result=\"timeout\"} 1"));
    free(text);
    sh_http_free(srv);

    /* nobody listening: error (the server above is gone) */
    sh_metrics_free(reg2);
    assert_int_equal(sh_metrics_new(&reg2), 0);
    assert_int_equal(ed_upstream_new(&c, reg2, &u, &e), 0);
    assert_int_equal(ed_up_answer_init(&a), 0);
    assert_int_equal(ed_upstream_match(u, &q, 1, ASK, 1, &a, &e), 0);
    assert_int_equal(a.status, ED_UP_ERROR);
    ed_up_answer_clear(&a);
    ed_upstream_free(u);
    sh_qhash_free(&f.got);
    sh_metrics_free(reg);
    sh_metrics_free(reg2);
}

static void test_config(void **state)
{
    (void)state;
    sh_metrics *reg = NULL;
    assert_int_equal(sh_metrics_new(&reg), 0);
    ed_upstream *u = NULL;
    sh_err e = {0};
    ed_up_config c = {.url = "ftp://x", .origin = "00", .timeout_ms = 100, .handles = 1,
                      .nshards = 8};
    assert_int_equal(ed_upstream_new(&c, reg, &u, &e), SH_EUSAGE);
    assert_null(u);
    c.url = "http://127.0.0.1:1///";
    c.handles = 0;
    assert_int_equal(ed_upstream_new(&c, reg, &u, &e), SH_EUSAGE);
    c.handles = 2;
    assert_int_equal(ed_upstream_new(&c, reg, &u, &e), 0);
    assert_string_equal(ed_upstream_url(u), "http://127.0.0.1:1"); /* trailing '/' dropped */
    ed_upstream_free(u);
    ed_upstream_free(NULL);
    sh_metrics_free(reg);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid), cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_merge),       cmocka_unit_test(test_client),
        cmocka_unit_test(test_config),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
