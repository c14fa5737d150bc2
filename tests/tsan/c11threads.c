/* c11threads.c — linked into the ThreadSanitizer build only (Makefile, SAN=tsan).
 *
 * librdkafka runs its threads with C11 <threads.h>. glibc (2.34+) implements thrd_create, mtx_*
 * and cnd_* on internal pthread entry points that GCC 12's ThreadSanitizer does not intercept: a
 * thread made by thrd_create is unknown to TSan (its first intercepted call crashes: "SEGV on
 * unknown address", no report), and the locks taken with mtx_lock are invisible (every handoff
 * between librdkafka's threads would look like a race). These definitions, in the executable,
 * take precedence over glibc's for librdkafka and route the calls to the public pthread
 * functions TSan intercepts: same types (glibc's thrd_t is a pthread_t, mtx_t and cnd_t have the
 * layout of pthread_mutex_t and pthread_cond_t), same semantics. Nothing here runs in the
 * normal builds. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

typedef struct start {
    thrd_start_t fn;
    void *arg;
} start;

static void *trampoline(void *p)
{
    start s = *(start *)p;
    free(p);
    return (void *)(intptr_t)s.fn(s.arg);
}

static int res(int rc) { return rc == 0 ? thrd_success : rc == ENOMEM ? thrd_nomem : rc == ETIMEDOUT ? thrd_timedout : rc == EBUSY ? thrd_busy : thrd_error; }

int thrd_create(thrd_t *t, thrd_start_t fn, void *arg)
{
    start *s = malloc(sizeof *s);
    if (!s)
        return thrd_nomem;
    s->fn = fn;
    s->arg = arg;
    int rc = pthread_create((pthread_t *)t, NULL, trampoline, s);
    if (rc)
        free(s);
    return res(rc);
}

int thrd_join(thrd_t t, int *out)
{
    void *v = NULL;
    int rc = pthread_join((pthread_t)t, &v);
    if (rc == 0 && out)
        *out = (int)(intptr_t)v;
    return res(rc);
}

int thrd_detach(thrd_t t) { return res(pthread_detach((pthread_t)t)); }

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return res(rc);
}

int mtx_lock(mtx_t *m) { return res(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_trylock(mtx_t *m) { return res(pthread_mutex_trylock((pthread_mutex_t *)m)); }
int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return res(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}
int mtx_unlock(mtx_t *m) { return res(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }

int cnd_init(cnd_t *c) { return res(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return res(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return res(pthread_cond_broadcast((pthread_cond_t *)c)); }
int cnd_wait(cnd_t *c, mtx_t *m)
{
    return res(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return res(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }
