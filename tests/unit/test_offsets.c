/* test_offsets.c — the worker's offset tracker: the commit point only ever covers a contiguous
 * prefix of finished events, whatever order they finish in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../workers/offsets.h"

#include <stdlib.h>
#include <string.h>

#define T "soundhash.audio.events"
#define R "soundhash.audio.reindex"

static sh_offsets *tracker(void)
{
    sh_offsets *t = NULL;
    assert_int_equal(sh_offsets_new(&t), 0);
    return t;
}

static void add_range(sh_offsets *t, const char *topic, int32_t p, int64_t from, int64_t to)
{
    for (int64_t o = from; o <= to; o++)
        assert_int_equal(sh_offsets_add(t, topic, p, o), 0);
}

static void test_in_order(void **state)
{
    (void)state;
    sh_offsets *t = tracker();
    assert_int_equal(sh_offsets_commit_point(t, T, 0), -1);
    add_range(t, T, 0, 0, 2);
    assert_int_equal(sh_offsets_pending(t, T, 0), 3);
    assert_int_equal(sh_offsets_commit_point(t, T, 0), -1);
    assert_int_equal(sh_offsets_done(t, T, 0, 0), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 0), 1);
    assert_int_equal(sh_offsets_done(t, T, 0, 1), 0);
    assert_int_equal(sh_offsets_done(t, T, 0, 2), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 0), 3);
    assert_int_equal(sh_offsets_pending(t, T, 0), 0);
    sh_offsets_free(t);
}

static void test_out_of_order(void **state)
{
    (void)state;
    sh_offsets *t = tracker();
    add_range(t, T, 3, 10, 12);
    assert_int_equal(sh_offsets_done(t, T, 3, 12), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 3), -1); /* 10 and 11 still running */
    assert_int_equal(sh_offsets_done(t, T, 3, 10), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 3), 11);
    /* 12 is finished but behind 11: still pending for back-pressure purposes. */
    assert_int_equal(sh_offsets_pending(t, T, 3), 2);
    assert_int_equal(sh_offsets_done(t, T, 3, 11), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 3), 13);
    assert_int_equal(sh_offsets_pending(t, NULL, 0), 0);
    sh_offsets_free(t);
}

static void test_gaps_in_offsets(void **state)
{
    (void)state;
    sh_offsets *t = tracker();
    /* Compacted topics and transaction markers leave holes: they are not waited for. */
    assert_int_equal(sh_offsets_add(t, T, 0, 5), 0);
    assert_int_equal(sh_offsets_add(t, T, 0, 9), 0);
    assert_int_equal(sh_offsets_add(t, T, 0, 20), 0);
    assert_int_equal(sh_offsets_done(t, T, 0, 9), 0);
    assert_int_equal(sh_offsets_done(t, T, 0, 5), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 0), 10);
    assert_int_equal(sh_offsets_done(t, T, 0, 6), SH_ENOTFOUND); /* never added */
    assert_int_equal(sh_offsets_done(t, T, 0, 20), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 0), 21);
    sh_offsets_free(t);
}

static void test_partitions_independent(void **state)
{
    (void)state;
    sh_offsets *t = tracker();
    add_range(t, T, 0, 0, 1);
    add_range(t, T, 1, 100, 101);
    add_range(t, R, 0, 7, 7); /* same partition number, other topic */
    assert_int_equal(sh_offsets_done(t, T, 1, 100), 0);
    assert_int_equal(sh_offsets_done(t, R, 0, 7), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 0), -1);
    assert_int_equal(sh_offsets_commit_point(t, T, 1), 101);
    assert_int_equal(sh_offsets_commit_point(t, R, 0), 8);
    assert_int_equal(sh_offsets_pending(t, NULL, 0), 3);
    assert_int_equal(sh_offsets_pending(t, T, 0), 2);
    assert_int_equal(sh_offsets_pending(t, R, 0), 0);
    assert_int_equal(sh_offsets_pending(t, R, 5), 0);
    sh_offsets_free(t);
}

static int find_commit(const sh_offset_commit *c, size_t n, const char *topic, int32_t p,
                       int64_t *off)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].partition == p && strcmp(c[i].topic, topic) == 0) {
            *off = c[i].offset;
            return 1;
        }
    }
    return 0;
}

static void test_collect_and_confirm(void **state)
{
    (void)state;
    sh_offsets *t = tracker();
    sh_offset_commit c[8];
    assert_int_equal(sh_offsets_collect(t, c, 8), 0);
    add_range(t, T, 0, 0, 3);
    add_range(t, R, 2, 50, 51);
    assert_int_equal(sh_offsets_collect(t, c, 8), 0); /* nothing finished */
    sh_offsets_done(t, T, 0, 0);
    sh_offsets_done(t, T, 0, 1);
    sh_offsets_done(t, R, 2, 50);
    size_t n = sh_offsets_collect(t, c, 8);
    assert_int_equal(n, 2);
    int64_t off;
    assert_true(find_commit(c, n, T, 0, &off));
    assert_int_equal(off, 2);
    assert_true(find_commit(c, n, R, 2, &off));
    assert_int_equal(off, 51);
    /* Cap respected. */
    assert_int_equal(sh_offsets_collect(t, c, 1), 1);
    /* An unconfirmed (failed) commit is collected again. */
    assert_int_equal(sh_offsets_collect(t, c, 8), 2);
    assert_int_equal(sh_offsets_committed(t, T, 0, 2), 0);
    n = sh_offsets_collect(t, c, 8);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].topic, R);
    assert_int_equal(sh_offsets_committed(t, R, 2, 51), 0);
    assert_int_equal(sh_offsets_collect(t, c, 8), 0);
    /* Progress after a confirmed commit is reported again. */
    sh_offsets_done(t, T, 0, 2);
    n = sh_offsets_collect(t, c, 8);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].offset, 3);
    /* A stale (older) confirmation does not move the committed mark backwards. */
    assert_int_equal(sh_offsets_committed(t, T, 0, 3), 0);
    assert_int_equal(sh_offsets_committed(t, T, 0, 1), 0);
    assert_int_equal(sh_offsets_collect(t, c, 8), 0);
    assert_int_equal(sh_offsets_committed(t, T, 9, 1), SH_ENOTFOUND);
    sh_offsets_free(t);
}

static void test_rewind_and_reset(void **state)
{
    (void)state;
    sh_offsets *t = tracker();
    add_range(t, T, 0, 10, 12);
    assert_int_equal(sh_offsets_add(t, T, 0, 12), SH_EINVAL); /* duplicate */
    assert_int_equal(sh_offsets_add(t, T, 0, 5), SH_EINVAL);  /* rewind */
    assert_int_equal(sh_offsets_done(t, T, 0, 10), 0);
    assert_int_equal(sh_offsets_done(t, T, 0, 10), SH_ENOTFOUND); /* twice */
    /* Revoked in a rebalance: in-flight work that finishes later is ignored. */
    assert_int_equal(sh_offsets_reset(t, T, 0), 0);
    assert_int_equal(sh_offsets_reset(t, T, 0), SH_ENOTFOUND);
    assert_int_equal(sh_offsets_done(t, T, 0, 11), SH_ENOTFOUND);
    assert_int_equal(sh_offsets_commit_point(t, T, 0), -1);
    assert_int_equal(sh_offsets_pending(t, NULL, 0), 0);
    /* Re-assigned: the same offsets are delivered again and tracked afresh. */
    add_range(t, T, 0, 11, 12);
    assert_int_equal(sh_offsets_done(t, T, 0, 11), 0);
    assert_int_equal(sh_offsets_commit_point(t, T, 0), 12);
    /* After a confirmed commit, offsets before it cannot be added. */
    assert_int_equal(sh_offsets_committed(t, T, 0, 12), 0);
    assert_int_equal(sh_offsets_reset(t, T, 0), 0);
    add_range(t, T, 0, 3, 3); /* a new partition state knows no commit: accepted */
    sh_offsets_free(t);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    sh_offsets *t = tracker();
    char longtopic[300];
    memset(longtopic, 'a', sizeof longtopic - 1);
    longtopic[sizeof longtopic - 1] = '\0';
    assert_int_equal(sh_offsets_add(t, NULL, 0, 1), SH_EINVAL);
    assert_int_equal(sh_offsets_add(t, "", 0, 1), SH_EINVAL);
    assert_int_equal(sh_offsets_add(t, longtopic, 0, 1), SH_EINVAL);
    assert_int_equal(sh_offsets_add(t, T, -1, 1), SH_EINVAL);
    assert_int_equal(sh_offsets_add(t, T, 0, -1), SH_EINVAL);
    assert_int_equal(sh_offsets_add(NULL, T, 0, 1), SH_EINVAL);
    assert_int_equal(sh_offsets_done(t, NULL, 0, 1), SH_EINVAL);
    assert_int_equal(sh_offsets_done(t, T, 0, 1), SH_ENOTFOUND);
    assert_int_equal(sh_offsets_commit_point(t, NULL, 0), -1);
    assert_int_equal(sh_offsets_collect(NULL, NULL, 0), 0);
    sh_offsets_free(t);
    sh_offsets_free(NULL);
}

/* Many partitions force the partition table to grow; many in-flight offsets force the ring to grow
 * and wrap around. */
static void test_growth_and_wraparound(void **state)
{
    (void)state;
    sh_offsets *t = tracker();
    for (int32_t p = 0; p < 40; p++)
        add_range(t, T, p, 0, 0);
    for (int32_t p = 0; p < 40; p++)
        assert_int_equal(sh_offsets_done(t, T, p, 0), 0);
    sh_offset_commit c[64];
    assert_int_equal(sh_offsets_collect(t, c, 64), 40);
    int64_t next = 1;
    for (int round = 0; round < 50; round++) {
        /* Add 100, finish the first 70 in reverse order: the ring head moves around. */
        add_range(t, T, 7, next, next + 99);
        for (int64_t o = next + 69; o >= next; o--)
            assert_int_equal(sh_offsets_done(t, T, 7, o), 0);
        assert_int_equal(sh_offsets_commit_point(t, T, 7), next + 70);
        for (int64_t o = next + 99; o >= next + 70; o--)
            assert_int_equal(sh_offsets_done(t, T, 7, o), 0);
        assert_int_equal(sh_offsets_commit_point(t, T, 7), next + 100);
        next += 100;
    }
    assert_int_equal(sh_offsets_pending(t, NULL, 0), 0);
    sh_offsets_free(t);
}

/* Model check: random finishing orders; the commit point always equals 1 + the largest offset
 * such that it and every offset before it finished. */
static void test_random_orders(void **state)
{
    (void)state;
    srand(12345);
    for (int trial = 0; trial < 200; trial++) {
        sh_offsets *t = tracker();
        enum { N = 97 };
        int64_t offs[N];
        int done[N] = {0};
        int64_t o = rand() % 1000;
        for (int i = 0; i < N; i++) {
            o += 1 + rand() % 3;
            offs[i] = o;
            assert_int_equal(sh_offsets_add(t, R, 1, o), 0);
        }
        int order[N];
        for (int i = 0; i < N; i++)
            order[i] = i;
        for (int i = N - 1; i > 0; i--) {
            int j = rand() % (i + 1);
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (int k = 0; k < N; k++) {
            done[order[k]] = 1;
            assert_int_equal(sh_offsets_done(t, R, 1, offs[order[k]]), 0);
            int prefix = 0;
            while (prefix < N && done[prefix])
                prefix++;
            int64_t want = prefix ? offs[prefix - 1] + 1 : -1;
            assert_int_equal(sh_offsets_commit_point(t, R, 1), want);
            assert_int_equal(sh_offsets_pending(t, R, 1), (size_t)(N - prefix));
        }
        sh_offsets_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_gaps_in_offsets),
        cmocka_unit_test(test_partitions_independent),
        cmocka_unit_test(test_collect_and_confirm),
        cmocka_unit_test(test_rewind_and_reset),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_growth_and_wraparound),
        cmocka_unit_test(test_random_orders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
