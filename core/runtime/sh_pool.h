/* sh_pool.h — a small pool of helper threads for running one call's items in parallel: the
 * shards of one recognition (an edge holds 8; a query looks each up), so that a query's latency
 * is that of its slowest lanes rather than the sum over its shards.
 *
 * sh_pool_run() runs fn(ud, i, lane) for every item i in [0, n): the calling thread is lane 0 and
 * up to lanes - 1 pool threads join it as lanes 1.., each taking the next item not yet taken
 * until none is left. The caller always works too, so a call finishes even when every pool thread
 * is busy with other calls (its items then simply run on fewer lanes) and calls never wait for
 * each other: many threads may call sh_pool_run() on one pool at once. `lane` (< lanes) names the
 * thread running the item for this call only: two items of one call never run at once on the same
 * lane, so per-lane state (a recognizer per lane) needs no lock. sh_pool_run() returns once every
 * item is done and no pool thread touches the call any more.
 */
#ifndef SH_POOL_H
#define SH_POOL_H

#include "sh_err.h"

#include <stddef.h>

enum { SH_POOL_THREADS_MAX = 64, SH_POOL_LANES_MAX = SH_POOL_THREADS_MAX + 1 };

typedef struct sh_pool sh_pool;

/* Starts `threads` helper threads (0..SH_POOL_THREADS_MAX; 0 = every call runs on its caller
 * alone). Errors: SH_EINVAL (threads out of range, NULL out), SH_ENOMEM, SH_EIO (a thread could not
 * be started; none is left running). */
int sh_pool_new(int threads, sh_pool **out, sh_err *e);

/* Stops and joins the threads; accepts NULL. No call may be running. */
void sh_pool_free(sh_pool *p);

/* The pool's helper threads (0 for NULL). */
int sh_pool_threads(const sh_pool *p);

/* Runs fn(ud, i, lane) for i in [0, n) on at most `lanes` threads (the caller and lanes - 1 pool
 * threads; lanes is clamped to 1..threads + 1; p NULL = the caller alone), in no particular order.
 * Returns when all are done. fn must not call sh_pool_run() on the same pool. */
void sh_pool_run(sh_pool *p, size_t n, int lanes, void (*fn)(void *ud, size_t i, int lane),
                 void *ud);

#endif
