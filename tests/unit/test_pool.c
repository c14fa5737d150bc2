/* Unit tests for sh_pool: every item runs exactly once, on a lane below the call's lanes, never two
 * at once on one lane; helpers really run items beside the caller; a pool of 0 threads (or none)
 * runs everything on the caller; many callers share one pool; bad arguments are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define NITEMS 2000

typedef struct tally {
    atomic_int runs[NITEMS];
    atomic_int busy[SH_POOL_LANES_MAX]; /* items running on a lane now */
    atomic_int overlap;                 /* times a lane ran two items at once */
    atomic_int bad_lane;
    atomic_int lanes_seen[SH_POOL_LANES_MAX];
    int lanes;
} tally;

static void count_item(void *ud, size_t i, int lane)
{
    tally *t = ud;
    if (lane < 0 || lane >= t->lanes) {
        atomic_fetch_add(&t->bad_lane, 1);
        return;
    }
    if (atomic_fetch_add(&t->busy[lane], 1) != 0)
        atomic_fetch_add(&t->overlap, 1);
    atomic_fetch_add(&t->runs[i], 1);
    atomic_fetch_add(&t->lanes_seen[lane], 1);
    atomic_fetch_sub(&t->busy[lane], 1);
}

static void tally_init(tally *t, int lanes)
{
    memset(t, 0, sizeof *t);
    t->lanes = lanes;
}

static void assert_once_each(tally *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atomic_load(&t->runs[i]), 1);
    for (size_t i = n; i < NITEMS; i++)
        assert_int_equal(atomic_load(&t->runs[i]), 0);
    assert_int_equal(atomic_load(&t->overlap), 0);
    assert_int_equal(atomic_load(&t->bad_lane), 0);
}

static void test_every_item_once(void **state)
{
    (void)state;
    sh_pool *p = NULL;
    sh_err e = {0};
    assert_int_equal(sh_pool_new(3, &p, &e), 0);
    assert_int_equal(sh_pool_threads(p), 3);
    static tally t;
    const size_t sizes[] = {1, 2, 7, 8, NITEMS};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (int lanes = 1; lanes <= 6; lanes++) {
            tally_init(&t, lanes < 4 ? lanes : 4); /* clamped to threads + 1 */
            sh_pool_run(p, sizes[k], lanes, count_item, &t);
            assert_once_each(&t, sizes[k]);
        }
    tally_init(&t, 1);
    sh_pool_run(p, 0, 4, count_item, &t); /* nothing to do */
    assert_once_each(&t, 0);
    sh_pool_free(p);
}

/* Two items that each wait for the other to start: only two lanes running at once finish them
 * (the wait gives up after 20 s so that a broken pool fails instead of hanging). */
typedef struct meet {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;
    int met[2];
    int lane[2];
} meet;

static void meet_item(void *ud, size_t i, int lane)
{
    meet *m = ud;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&m->lock);
    m->lane[i] = lane;
    m->started++;
    pthread_cond_broadcast(&m->cond);
    int rc = 0;
    while (m->started < 2 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&m->cond, &m->lock, &until);
    m->met[i] = m->started == 2;
    pthread_mutex_unlock(&m->lock);
}

static void test_helpers_run_beside_caller(void **state)
{
    (void)state;
    sh_pool *p = NULL;
    sh_err e = {0};
    assert_int_equal(sh_pool_new(1, &p, &e), 0);
    meet m = {.started = 0};
    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.cond, NULL);
    sh_pool_run(p, 2, 2, meet_item, &m);
    assert_true(m.met[0] && m.met[1]);
    assert_int_not_equal(m.lane[0], m.lane[1]);
    pthread_cond_destroy(&m.cond);
    pthread_mutex_destroy(&m.lock);
    sh_pool_free(p);
}

static void test_no_threads_runs_on_caller(void **state)
{
    (void)state;
    static tally t;
    sh_pool *p = NULL;
    sh_err e = {0};
    assert_int_equal(sh_pool_new(0, &p, &e), 0);
    tally_init(&t, 1);
    sh_pool_run(p, 100, 8, count_item, &t);
    assert_once_each(&t, 100);
    assert_int_equal(atomic_load(&t.lanes_seen[0]), 100);
    sh_pool_free(p);
    tally_init(&t, 1);
    sh_pool_run(NULL, 50, 8, count_item, &t); /* no pool at all */
    assert_once_each(&t, 50);
}

typedef struct caller {
    sh_pool *p;
    tally t;
} caller;

static void *call_many(void *arg)
{
    caller *c = arg;
    for (int r = 0; r < 20; r++) {
        for (size_t i = 0; i < NITEMS; i++)
            atomic_store(&c->t.runs[i], 0);
        sh_pool_run(c->p, 300, 3, count_item, &c->t);
        for (size_t i = 0; i < 300; i++)
            if (atomic_load(&c->t.runs[i]) != 1)
                atomic_fetch_add(&c->t.bad_lane, 1000);
    }
    return NULL;
}

static void test_callers_share_a_pool(void **state)
{
    (void)state;
    sh_pool *p = NULL;
    sh_err e = {0};
    assert_int_equal(sh_pool_new(2, &p, &e), 0);
    static caller c[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        tally_init(&c[i].t, 3);
        c[i].p = p;
        assert_int_equal(pthread_create(&th[i], NULL, call_many, &c[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&c[i].t.bad_lane), 0);
        assert_int_equal(atomic_load(&c[i].t.overlap), 0);
    }
    sh_pool_free(p);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    sh_pool *p = (sh_pool *)&p;
    sh_err e = {0};
    assert_int_equal(sh_pool_new(-1, &p, &e), SH_EINVAL);
    assert_null(p);
    assert_int_equal(sh_pool_new(SH_POOL_THREADS_MAX + 1, &p, &e), SH_EINVAL);
    assert_int_equal(sh_pool_new(1, NULL, &e), SH_EINVAL);
    sh_pool_free(NULL);
    assert_int_equal(sh_pool_threads(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_item_once),
        cmocka_unit_test(test_helpers_run_beside_caller),
        cmocka_unit_test(test_no_threads_runs_on_caller),
        cmocka_unit_test(test_callers_share_a_pool),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
