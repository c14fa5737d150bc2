/* Unit tests for sh_shardsum: fixed vectors (computed independently, in Python, from the
 * definition in the header — if they fail, the contract changed: restore it), order
 * independence, incremental remove, and sensitivity to every covered field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_shardsum.h"

#include <stdlib.h>
#include <string.h>

static const sh_hash P[3] = {{0x01020304u, 5}, {0xdeadbeefu, 2}, {1u, 5}};

static void test_vectors(void **state)
{
    (void)state;
    uint64_t a, b;
    assert_int_equal(sh_shardsum_track("track-1", 7, 7, 3, P, 3, &a, NULL), 0);
    assert_int_equal(a, 0xaf9b0ca64899e7b9ull);
    assert_int_equal(sh_shardsum_track("x", 1, 0, 0, NULL, 0, &b, NULL), 0);
    assert_int_equal(b, 0xae6c80b1b8bc39cfull);
    sh_shardsum s = SH_SHARDSUM_INIT;
    assert_int_equal(sh_shardsum_add(&s, "track-1", 7, 7, 3, P, 3, NULL), 0);
    assert_int_equal(sh_shardsum_add(&s, "x", 1, 0, 0, NULL, 0, NULL), 0);
    char text[SH_SHARDSUM_TEXT_MAX];
    assert_string_equal(sh_shardsum_format(&s, text, sizeof text),
                        "tracks=2 postings=3 sum=5e078d5801562188");
}

/* Tracks in any order, postings in any order, counted in parts: the same sum. */
static void test_order_independent(void **state)
{
    (void)state;
    const sh_hash rev[3] = {P[2], P[1], P[0]};
    sh_shardsum a = SH_SHARDSUM_INIT, b = SH_SHARDSUM_INIT, part = SH_SHARDSUM_INIT;
    assert_int_equal(sh_shardsum_add(&a, "track-1", 7, 7, 3, P, 3, NULL), 0);
    assert_int_equal(sh_shardsum_add(&a, "x", 1, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(sh_shardsum_add(&b, "x", 1, 0, 0, NULL, 0, NULL), 0);
    assert_int_equal(sh_shardsum_add(&part, "track-1", 7, 7, 3, rev, 3, NULL), 0);
    sh_shardsum_merge(&b, &part);
    assert_true(sh_shardsum_equal(&a, &b));
    /* An edge replacing a track: remove the old state, add the new one. */
    const sh_hash p2[2] = {{9, 9}, {8, 8}};
    sh_shardsum c = a;
    assert_int_equal(sh_shardsum_remove(&c, "track-1", 7, 7, 3, rev, 3, NULL), 0);
    assert_int_equal(sh_shardsum_add(&c, "track-1", 7, 7, 4, p2, 2, NULL), 0);
    sh_shardsum d = SH_SHARDSUM_INIT;
    assert_int_equal(sh_shardsum_add(&d, "track-1", 7, 7, 4, p2, 2, NULL), 0);
    assert_int_equal(sh_shardsum_add(&d, "x", 1, 0, 0, NULL, 0, NULL), 0);
    assert_true(sh_shardsum_equal(&c, &d));
    sh_shardsum empty = SH_SHARDSUM_INIT;
    assert_int_equal(sh_shardsum_remove(&empty, "x", 1, 0, 0, NULL, 0, NULL), SH_EINVAL);
}

/* A change in any covered field changes the track sum. */
static void test_sensitive(void **state)
{
    (void)state;
    uint64_t base, v;
    assert_int_equal(sh_shardsum_track("track-1", 7, 7, 3, P, 3, &base, NULL), 0);
    assert_int_equal(sh_shardsum_track("track-2", 7, 7, 3, P, 3, &v, NULL), 0);
    assert_int_not_equal(v, base);
    assert_int_equal(sh_shardsum_track("track-1", 7, 8, 3, P, 3, &v, NULL), 0);
    assert_int_not_equal(v, base);
    assert_int_equal(sh_shardsum_track("track-1", 7, 7, 4, P, 3, &v, NULL), 0);
    assert_int_not_equal(v, base);
    assert_int_equal(sh_shardsum_track("track-1", 7, 7, 3, P, 2, &v, NULL), 0);
    assert_int_not_equal(v, base);
    sh_hash q[3];
    memcpy(q, P, sizeof q);
    q[1].t++;
    assert_int_equal(sh_shardsum_track("track-1", 7, 7, 3, q, 3, &v, NULL), 0);
    assert_int_not_equal(v, base);
    q[1] = P[1];
    q[0].hash ^= 0x80000000u;
    assert_int_equal(sh_shardsum_track("track-1", 7, 7, 3, q, 3, &v, NULL), 0);
    assert_int_not_equal(v, base);
    /* A duplicated posting counts. */
    const sh_hash dup[4] = {P[0], P[1], P[2], P[2]};
    assert_int_equal(sh_shardsum_track("track-1", 7, 7, 3, dup, 4, &v, NULL), 0);
    assert_int_not_equal(v, base);
    /* The postings of a big track stream through the staging buffer: still order-independent. */
    enum { N = 5000 };
    sh_hash *big = malloc(N * sizeof *big), *big_rev = malloc(N * sizeof *big);
    for (size_t i = 0; i < N; i++)
        big[i] = big_rev[N - 1 - i] = (sh_hash){(uint32_t)(i * 2654435761u), (uint32_t)i / 3};
    uint64_t x, y;
    assert_int_equal(sh_shardsum_track("b", 1, 1, 3, big, N, &x, NULL), 0);
    assert_int_equal(sh_shardsum_track("b", 1, 1, 3, big_rev, N, &y, NULL), 0);
    assert_int_equal(x, y);
    free(big);
    free(big_rev);
    assert_int_equal(sh_shardsum_track("", 0, 1, 3, P, 3, &v, NULL), SH_EINVAL);
    assert_int_equal(sh_shardsum_track("a", 1, -1, 3, P, 3, &v, NULL), SH_EINVAL);
    assert_int_equal(sh_shardsum_track("a", 1, 1, 3, NULL, 3, &v, NULL), SH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_sensitive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
