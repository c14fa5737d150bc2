/* sh_pool.c — helper threads for one call's items (see sh_pool.h). */
#include "sh_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct run run;

/* A helper lane of a call waiting for a pool thread (queued until one takes it). */
typedef struct job {
    run *r;
    int lane;
    struct job *next;
} job;

struct run {
    void (*fn)(void *ud, size_t i, int lane);
    void *ud;
    size_t n;
    atomic_size_t next; /* the next item not yet taken */
    int pending;        /* helper jobs queued or running (under the pool's lock) */
    job jobs[SH_POOL_LANES_MAX - 1];
};

struct sh_pool {
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job was queued, or stop */
    pthread_cond_t done; /* a call's job finished */
    job *head, *tail;
    bool stop;
    int nthreads;
    pthread_t th[SH_POOL_THREADS_MAX];
};

/* Takes the call's items one at a time until none is left. */
static void drain(run *r, int lane)
{
    for (size_t i; (i = atomic_fetch_add(&r->next, 1)) < r->n;)
        r->fn(r->ud, i, lane);
}

static void *worker(void *arg)
{
    sh_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->work, &p->lock);
        if (!p->head)
            break; /* stop, nothing queued */
        job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        drain(j->r, j->lane);
        pthread_mutex_lock(&p->lock);
        if (--j->r->pending == 0)
            pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void stop_threads(sh_pool *p, int n)
{
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n; i++)
        pthread_join(p->th[i], NULL);
}

int sh_pool_new(int threads, sh_pool **out, sh_err *e)
{
    if (out)
        *out = NULL;
    if (!out || threads < 0 || threads > SH_POOL_THREADS_MAX)
        return sh_err_set(e, SH_EINVAL, "pool: NULL out or threads not in 0..%d",
                          SH_POOL_THREADS_MAX);
    sh_pool *p = calloc(1, sizeof *p);
    if (!p)
        return sh_err_set(e, SH_ENOMEM, "pool: out of memory");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (; p->nthreads < threads; p->nthreads++)
        if (pthread_create(&p->th[p->nthreads], NULL, worker, p)) {
            const int started = p->nthreads;
            sh_pool_free(p); /* joins the ones started */
            return sh_err_set(e, SH_EIO, "pool: cannot start thread %d of %d", started + 1,
                              threads);
        }
    *out = p;
    return 0;
}

void sh_pool_free(sh_pool *p)
{
    if (!p)
        return;
    stop_threads(p, p->nthreads);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int sh_pool_threads(const sh_pool *p)
{
    return p ? p->nthreads : 0;
}

/* Removes the call's jobs that no thread took yet (under the lock). */
static void unqueue(sh_pool *p, run *r)
{
    job **pp = &p->head;
    p->tail = NULL;
    while (*pp) {
        if ((*pp)->r == r) {
            *pp = (*pp)->next;
            r->pending--;
        } else {
            p->tail = *pp;
            pp = &(*pp)->next;
        }
    }
}

void sh_pool_run(sh_pool *p, size_t n, int lanes, void (*fn)(void *ud, size_t i, int lane),
                 void *ud)
{
    if (!fn || n == 0)
        return;
    run r = {.fn = fn, .ud = ud, .n = n};
    atomic_init(&r.next, 0);
    int helpers = lanes - 1;
    helpers = helpers < 0 ? 0 : helpers > sh_pool_threads(p) ? sh_pool_threads(p) : helpers;
    helpers = (size_t)helpers > n - 1 ? (int)(n - 1) : helpers; /* no lane would find an item */
    if (helpers > 0) {
        pthread_mutex_lock(&p->lock);
        for (int i = 0; i < helpers; i++) {
            r.jobs[i] = (job){.r = &r, .lane = i + 1};
            if (p->tail)
                p->tail->next = &r.jobs[i];
            else
                p->head = &r.jobs[i];
            p->tail = &r.jobs[i];
        }
        r.pending = helpers;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->lock);
    }
    drain(&r, 0);
    if (helpers > 0) {
        pthread_mutex_lock(&p->lock);
        unqueue(p, &r);
        while (r.pending > 0)
            pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
}
