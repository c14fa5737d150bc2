/* Unit tests for sh_shardmap: the shard assignment is part of the wire contract, so these
 * vectors are fixed. If one fails, the function changed: that breaks every deployed replicator
 * and edge — restore it instead of updating the vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_shardmap.h"

#include <stdio.h>
#include <string.h>

typedef struct vec {
    const char *id;
    uint64_t fnv;
    uint32_t of8, of3, of4096;
} vec;

/* FNV-1a 64 of "", "a" and "foobar" are the published reference values; the rest were computed
 * independently (Python) when the contract was written. */
static const vec VECS[] = {
    {"", 0xcbf29ce484222325ull, 5, 2, 805},
    {"a", 0xaf63dc4c8601ec8cull, 4, 1, 3212},
    {"foobar", 0x85944171f73967e8ull, 0, 0, 2024},
    {"track-0001", 0x5ff3e995a3063520ull, 0, 2, 1312},
    {"tenant/\xc3\xa9t\xc3\xa9-42", 0x869a1b3bb4f93387ull, 7, 2, 903},
    {"00000000-0000-0000-0000-000000000000", 0x7c384c6218f299f1ull, 1, 0, 2545},
};

static void test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof VECS / sizeof *VECS; i++) {
        const vec *v = &VECS[i];
        const size_t len = strlen(v->id);
        assert_int_equal(sh_fnv1a64(v->id, len), v->fnv);
        assert_int_equal(sh_shard_of(v->id, len, 8), v->of8);
        assert_int_equal(sh_shard_of(v->id, len, 3), v->of3);
        assert_int_equal(sh_shard_of(v->id, len, 4096), v->of4096);
        assert_int_equal(sh_shard_of(v->id, len, 1), 0);
    }
}

static void test_edges(void **state)
{
    (void)state;
    assert_int_equal(sh_shard_of(NULL, 0, 8), 5); /* the empty id, like "" above */
    assert_int_equal(sh_shard_of("a", 1, 0), 0);  /* nshards 0: a caller bug, never a crash */
    /* Only the given bytes count: an embedded NUL and what follows the length are data. */
    assert_int_not_equal(sh_fnv1a64("a\0b", 3), sh_fnv1a64("a", 1));
    assert_int_equal(sh_fnv1a64("ab", 1), sh_fnv1a64("a", 1));
}

/* 8 shards over 80k ids: each gets its share within 5 % (the hash spreads ids evenly). */
static void test_spread(void **state)
{
    (void)state;
    unsigned cnt[8] = {0};
    char id[32];
    for (unsigned i = 0; i < 80000; i++) {
        int n = snprintf(id, sizeof id, "track-%u", i);
        cnt[sh_shard_of(id, (size_t)n, 8)]++;
    }
    for (int s = 0; s < 8; s++) {
        assert_true(cnt[s] > 9500);
        assert_true(cnt[s] < 10500);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
