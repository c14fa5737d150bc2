/* Unit tests for sh_qhash: the query hashes clients send (JSON and the binary form). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_qhash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}

static int cmp_t_hash(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return (x->hash > y->hash) - (x->hash < y->hash);
}

/* Encodes, parses back, and checks the result is the input sorted by (t, hash). */
static void round_trip(int ver, sh_hash *h, size_t n)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(sh_qhash_encode(ver, h, n, &buf, &len, NULL), 0);
    assert_memory_equal(buf, "SHQ1", 4);
    sh_qhash q;
    sh_err e = {0};
    assert_int_equal(sh_qhash_parse(buf, len, 1, n, &q, &e), 0);
    assert_int_equal(q.fp_version, ver);
    assert_int_equal(q.n, n);
    qsort(h, n, sizeof *h, cmp_t_hash);
    if (n)
        assert_memory_equal(q.h, h, n * sizeof *h);
    else
        assert_null(q.h);
    /* Parsed (hence t-ordered) hashes re-encode to the same bytes. */
    uint8_t *again;
    size_t len2;
    assert_int_equal(sh_qhash_encode(q.fp_version, q.h, q.n, &again, &len2, NULL), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(again, buf, len);
    free(again);
    free(buf);
    sh_qhash_free(&q);
    assert_null(q.h);
    assert_int_equal(q.n, 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 2, 1000, 50000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        sh_hash *h = malloc((n ? n : 1) * sizeof *h);
        assert_non_null(h);
        for (size_t i = 0; i < n; i++)
            h[i] = (sh_hash){.hash = rnd(), .t = rnd() % 3000};
        round_trip(3, h, n);
        free(h);
    }
    /* Extremes: t = 0 and t = 2^32-1 (a 5-byte dt), hash 0 and 2^32-1, a large fp_version. */
    sh_hash x[] = {{UINT32_MAX, UINT32_MAX}, {0, 0}, {7, 0}};
    round_trip(2, x, 3);
    sh_hash y[] = {{1, 5}};
    round_trip(0x7fffffff, y, 1);
}

static void test_layout(void **state)
{
    (void)state;
    /* The documented bytes of a small query: fp_version 3, (t 1, 0x11223344), (t 130, 0xff). */
    sh_hash h[] = {{0xff, 130}, {0x11223344, 1}};
    uint8_t *buf;
    size_t len;
    assert_int_equal(sh_qhash_encode(3, h, 2, &buf, &len, NULL), 0);
    const uint8_t want[] = {'S', 'H', 'Q', '1', 3, 2, 1, 0x44, 0x33, 0x22, 0x11,
                            0x81, 0x01, 0xff, 0, 0, 0};
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    free(buf);
}

/* Expects `rc` from parsing the binary bytes, a zeroed result and `needle` in the message. */
static void bad_bin(const uint8_t *b, size_t len, size_t max_n, int rc, const char *needle)
{
    sh_qhash q = {.fp_version = 9, .n = 9};
    sh_err e = {0};
    assert_int_equal(sh_qhash_parse(b, len, 1, max_n, &q, &e), rc);
    assert_null(q.h);
    assert_int_equal(q.n, 0);
    if (!strstr(sh_err_text(&e), needle))
        fail_msg("message \"%s\" lacks \"%s\"", sh_err_text(&e), needle);
}

static void test_binary_malformed(void **state)
{
    (void)state;
    const uint8_t ok[] = {'S', 'H', 'Q', '1', 3, 1, 5, 1, 2, 3, 4};
    sh_qhash q;
    assert_int_equal(sh_qhash_parse(ok, sizeof ok, 1, 10, &q, NULL), 0);
    assert_int_equal(q.h[0].t, 5);
    assert_int_equal(q.h[0].hash, 0x04030201u);
    sh_qhash_free(&q);
    /* Every proper prefix is truncated. */
    for (size_t l = 0; l < sizeof ok; l++)
        bad_bin(ok, l, 10, SH_EFORMAT, "hashes");
    const uint8_t trailing[] = {'S', 'H', 'Q', '1', 3, 1, 5, 1, 2, 3, 4, 0};
    bad_bin(trailing, sizeof trailing, 10, SH_EFORMAT, "trailing");
    const uint8_t magic[] = {'S', 'H', 'Q', '2', 3, 0};
    bad_bin(magic, sizeof magic, 10, SH_EFORMAT, "magic");
    const uint8_t noncanon[] = {'S', 'H', 'Q', '1', 0x83, 0x00, 0};
    bad_bin(noncanon, sizeof noncanon, 10, SH_EFORMAT, "fp_version");
    const uint8_t bigver[] = {'S', 'H', 'Q', '1', 0x80, 0x80, 0x80, 0x80, 0x08, 0};
    bad_bin(bigver, sizeof bigver, 10, SH_EFORMAT, "fp_version");
    /* dt = 2^32 alone, then two dts whose sum passes 2^32-1. */
    const uint8_t bigdt[] = {'S', 'H', 'Q', '1', 3, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3, 4};
    bad_bin(bigdt, sizeof bigdt, 10, SH_EFORMAT, "t over");
    const uint8_t overflow[] = {'S', 'H', 'Q', '1', 3,    2,    0xff, 0xff, 0xff, 0xff, 0x0f, 1,
                                2,   3,   4,   1,   1, 2, 3, 4};
    bad_bin(overflow, sizeof overflow, 10, SH_EFORMAT, "entry 1: t over");
    /* A count the bytes cannot hold is refused before allocating. */
    const uint8_t huge[] = {'S', 'H', 'Q', '1', 3, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3, 4, 5};
    bad_bin(huge, sizeof huge, SIZE_MAX, SH_EFORMAT, "announced");
    /* Varint longer than 64 bits. */
    uint8_t longv[20] = {'S', 'H', 'Q', '1', 3};
    memset(longv + 5, 0xff, 15);
    bad_bin(longv, sizeof longv, 10, SH_EFORMAT, "count");
}

static void test_binary_cap(void **state)
{
    (void)state;
    sh_hash h[4] = {{1, 1}, {2, 2}, {3, 3}, {4, 4}};
    uint8_t *buf;
    size_t len;
    assert_int_equal(sh_qhash_encode(3, h, 4, &buf, &len, NULL), 0);
    sh_qhash q;
    assert_int_equal(sh_qhash_parse(buf, len, 1, 4, &q, NULL), 0);
    sh_qhash_free(&q);
    bad_bin(buf, len, 3, SH_ETOOBIG, "at most 3");
    /* The cap wins over truncation: a huge count is "too big", not allocated. */
    const uint8_t huge[] = {'S', 'H', 'Q', '1', 3, 0xff, 0xff, 0xff, 0xff, 0x0f};
    bad_bin(huge, sizeof huge, 1000, SH_ETOOBIG, "at most 1000");
    free(buf);
}

static void bad_json(const char *s, size_t max_n, int rc, const char *needle)
{
    sh_qhash q = {.fp_version = 9, .n = 9};
    sh_err e = {0};
    assert_int_equal(sh_qhash_parse(s, strlen(s), 0, max_n, &q, &e), rc);
    assert_null(q.h);
    assert_int_equal(q.n, 0);
    if (!strstr(sh_err_text(&e), needle))
        fail_msg("message \"%s\" lacks \"%s\"", sh_err_text(&e), needle);
}

static void test_json(void **state)
{
    (void)state;
    const char *line = "{\"file\":\"a.wav\",\"duration_s\":3.5,\"fp_version\":3,\"hashes\":3,"
                       "\"hash_list\":[[4294967295,9],[0,2],[17,4294967295]]}";
    sh_qhash q;
    assert_int_equal(sh_qhash_parse(line, strlen(line), 0, 3, &q, NULL), 0);
    assert_int_equal(q.fp_version, 3);
    assert_int_equal(q.n, 3);
    /* Normalised into (t, hash) order. */
    assert_int_equal(q.h[0].hash, 0);
    assert_int_equal(q.h[0].t, 2);
    assert_int_equal(q.h[1].hash, UINT32_MAX);
    assert_int_equal(q.h[1].t, 9);
    assert_int_equal(q.h[2].t, UINT32_MAX);
    sh_qhash_free(&q);
    sh_qhash_free(NULL);
    const char *empty = "{\"fp_version\":2,\"hash_list\":[]}";
    assert_int_equal(sh_qhash_parse(empty, strlen(empty), 0, 0, &q, NULL), 0);
    assert_int_equal(q.fp_version, 2);
    assert_int_equal(q.n, 0);
    assert_null(q.h);
}

static void test_json_malformed(void **state)
{
    (void)state;
    bad_json("", 10, SH_EFORMAT, "JSON");
    bad_json("{\"fp_version\":3,", 10, SH_EFORMAT, "JSON");
    bad_json("[1,2]", 10, SH_EFORMAT, "not an object");
    bad_json("{\"hash_list\":[]}", 10, SH_EFORMAT, "fp_version");
    bad_json("{\"fp_version\":\"3\",\"hash_list\":[]}", 10, SH_EFORMAT, "fp_version");
    bad_json("{\"fp_version\":-1,\"hash_list\":[]}", 10, SH_EFORMAT, "fp_version");
    bad_json("{\"fp_version\":3.0,\"hash_list\":[]}", 10, SH_EFORMAT, "fp_version");
    bad_json("{\"fp_version\":3}", 10, SH_EFORMAT, "hash_list: missing");
    bad_json("{\"fp_version\":3,\"hash_list\":{}}", 10, SH_EFORMAT, "hash_list: missing");
    bad_json("{\"fp_version\":3,\"hash_list\":[[1,2],[3]]}", 10, SH_EFORMAT,
             "hash_list[1]: not [hash, t]");
    bad_json("{\"fp_version\":3,\"hash_list\":[[1,2,3]]}", 10, SH_EFORMAT,
             "hash_list[0]: not [hash, t]");
    bad_json("{\"fp_version\":3,\"hash_list\":[5]}", 10, SH_EFORMAT, "hash_list[0]: not");
    bad_json("{\"fp_version\":3,\"hash_list\":[[4294967296,1]]}", 10, SH_EFORMAT,
             "hash_list[0]: hash");
    bad_json("{\"fp_version\":3,\"hash_list\":[[-1,1]]}", 10, SH_EFORMAT, "hash_list[0]: hash");
    bad_json("{\"fp_version\":3,\"hash_list\":[[1,\"2\"]]}", 10, SH_EFORMAT, "hash_list[0]: t");
    bad_json("{\"fp_version\":3,\"hash_list\":[[1,4294967296]]}", 10, SH_EFORMAT,
             "hash_list[0]: t");
    bad_json("{\"fp_version\":3,\"fp_version\":3,\"hash_list\":[]}", 10, SH_EFORMAT, "JSON");
    bad_json("{\"fp_version\":3,\"hash_list\":[[1,2],[3,4],[5,6]]}", 2, SH_ETOOBIG, "at most 2");
}

/* Repeated (hash, t) pairs are dropped and one hash value keeps at most SH_QHASH_PER_HASH_MAX
 * entries: a body of one popular hash repeated must not multiply the lookup's work. */
static void test_normalise(void **state)
{
    (void)state;
    enum { N = 1000 };
    sh_hash *h = calloc(N, sizeof *h);
    assert_non_null(h);
    for (size_t i = 0; i < N; i++)
        h[i] = (sh_hash){.hash = 7, .t = (uint32_t)(i < 500 ? 5 : i)}; /* 500 copies of (7, 5) */
    h[N - 1] = (sh_hash){.hash = 8, .t = 3};
    uint8_t *buf;
    size_t len;
    assert_int_equal(sh_qhash_encode(3, h, N, &buf, &len, NULL), 0);
    sh_qhash q;
    assert_int_equal(sh_qhash_parse(buf, len, 1, N, &q, NULL), 0);
    assert_int_equal(q.n, SH_QHASH_PER_HASH_MAX + 1); /* hash 7 capped, hash 8 kept */
    size_t sevens = 0;
    for (size_t i = 0; i < q.n; i++) {
        sevens += q.h[i].hash == 7;
        if (i)
            assert_true(q.h[i - 1].t <= q.h[i].t);
        for (size_t j = 0; j < i; j++)
            assert_false(q.h[j].hash == q.h[i].hash && q.h[j].t == q.h[i].t);
    }
    assert_int_equal(sevens, SH_QHASH_PER_HASH_MAX);
    sh_qhash_free(&q);
    free(buf);
    free(h);
}

/* A JSON body longer than max_n entries can be is refused before jansson parses it. */
static void test_json_precap(void **state)
{
    (void)state;
    size_t len = 16384 + 64 * 10 + 65;
    char *big = malloc(len + 1);
    assert_non_null(big);
    memset(big, ' ', len);
    const char *doc = "{\"fp_version\":3,\"hash_list\":[]}";
    memcpy(big, doc, strlen(doc));
    big[len] = 0;
    bad_json(big, 10, SH_ETOOBIG, "bytes of JSON");
    /* the same body with room for its length parses (whitespace is valid JSON) */
    sh_qhash q;
    assert_int_equal(sh_qhash_parse(big, len, 0, 11, &q, NULL), 0);
    assert_int_equal(q.n, 0);
    free(big);
}

static void test_args(void **state)
{
    (void)state;
    sh_qhash q;
    uint8_t *buf;
    size_t len;
    assert_int_equal(sh_qhash_parse(NULL, 3, 1, 10, &q, NULL), SH_EINVAL);
    assert_int_equal(sh_qhash_parse("x", 1, 1, 10, NULL, NULL), SH_EINVAL);
    assert_int_equal(sh_qhash_encode(-1, NULL, 0, &buf, &len, NULL), SH_EINVAL);
    assert_int_equal(sh_qhash_encode(3, NULL, 2, &buf, &len, NULL), SH_EINVAL);
    assert_int_equal(sh_qhash_parse(NULL, 0, 1, 10, &q, NULL), SH_EFORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_layout),
        cmocka_unit_test(test_binary_malformed), cmocka_unit_test(test_binary_cap),
        cmocka_unit_test(test_json),            cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_json_precap),
        cmocka_unit_test(test_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
