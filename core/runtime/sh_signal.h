/* sh_signal.h — SIGINT/SIGTERM as a stop request, the same in every long-running command (worker,
 * reindex, broker, dlq tail, replicator, edge).
 *
 * The command owns its sh_stop (on its stack, or in the state its main-level function owns) and
 * registers it with sh_stop_install(); core keeps no flag of its own. A signal handler cannot be
 * given an argument, so the registration is the one piece of process-wide state: a pointer to the
 * registered sh_stop, read by the handler, which only stores the signal number into the flag's
 * volatile sig_atomic_t (async-signal-safe). One registration per process at a time;
 * sh_stop_uninstall() restores the previous handlers and unregisters. Readers poll the flag
 * (sh_stop_requested) — from any thread — or sleep in sh_stop_wait().
 */
#ifndef SH_SIGNAL_H
#define SH_SIGNAL_H

#include "sh_err.h"

#include <signal.h>
#include <stdbool.h>

enum {
    SH_STOP_IGNORE_SIGPIPE = 1, /* a peer vanishing mid-write must not kill the process */
    /* Blocks SIGINT/SIGTERM in the calling thread — and so in every thread it creates afterwards
     * (e.g. librdkafka's) — and delivers them only inside sh_stop_wait(). Install before
     * creating threads. */
    SH_STOP_BLOCK = 2,
};

typedef struct sh_stop {
    volatile sig_atomic_t sig; /* 0, or the signal that asked to stop */
    /* private */
    unsigned flags;
    sigset_t old_mask, wait_mask;
    struct sigaction old_int, old_term, old_pipe;
} sh_stop;

/* Zeroes `s`, registers it and installs the handlers. Errors: SH_EINVAL (another sh_stop is
 * registered), SH_EINTERNAL (sigaction/sigprocmask failed; nothing left installed). */
int sh_stop_install(sh_stop *s, unsigned flags, sh_err *e);

/* Restores the handlers and signal mask found by sh_stop_install and unregisters `s`. Accepts
 * NULL and an sh_stop that is not registered (then does nothing). */
void sh_stop_uninstall(sh_stop *s);

/* True once a stop was asked (by a signal or sh_stop_request). */
bool sh_stop_requested(const sh_stop *s);

/* The signal that asked to stop (SIGINT, SIGTERM), or the number given to sh_stop_request; 0 while
 * nobody asked. */
int sh_stop_signal(const sh_stop *s);

/* Asks to stop as if signal `sig` (0: SIGTERM) had arrived (a fatal error elsewhere, tests). */
void sh_stop_request(sh_stop *s, int sig);

/* Sleeps until a stop is asked. With SH_STOP_BLOCK the signals are delivered here (sigsuspend:
 * no polling); otherwise it polls every 50 ms. */
void sh_stop_wait(sh_stop *s);

/* sh_clock_stop_fn adapter (sh_clock.h): `arg` is the sh_stop. */
bool sh_stop_requested_fn(void *arg);

#endif
