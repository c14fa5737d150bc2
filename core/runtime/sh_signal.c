/* sh_signal.c — SIGINT/SIGTERM as a stop request (see sh_signal.h). */
#include "sh_signal.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

/* The registered flag: written by sh_stop_install/uninstall with the handlers not (yet/any longer)
 * pointing here, read by the handler. */
static sh_stop *volatile g_registered;

static void on_stop_signal(int sig)
{
    sh_stop *s = g_registered;
    if (s)
        s->sig = sig;
}

int sh_stop_install(sh_stop *s, unsigned flags, sh_err *e)
{
    if (!s)
        return sh_err_set(e, SH_EINVAL, "stop flag: NULL");
    if (g_registered)
        return sh_err_set(e, SH_EINVAL, "stop flag: another one is installed");
    memset(s, 0, sizeof *s);
    s->flags = flags;
    g_registered = s;
    if (flags & SH_STOP_BLOCK) {
        sigset_t block;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        if (pthread_sigmask(SIG_BLOCK, &block, &s->old_mask)) {
            g_registered = NULL;
            return sh_err_set(e, SH_EINTERNAL, "stop flag: cannot block signals");
        }
        s->wait_mask = s->old_mask;
        sigdelset(&s->wait_mask, SIGINT);
        sigdelset(&s->wait_mask, SIGTERM);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    int bad = sigaction(SIGINT, &sa, &s->old_int) != 0;
    bad = bad || sigaction(SIGTERM, &sa, &s->old_term) != 0;
    if (!bad && (flags & SH_STOP_IGNORE_SIGPIPE)) {
        sa.sa_handler = SIG_IGN;
        bad = sigaction(SIGPIPE, &sa, &s->old_pipe) != 0;
    }
    if (bad) {
        sh_stop_uninstall(s);
        return sh_err_set(e, SH_EINTERNAL, "stop flag: cannot install signal handlers");
    }
    return 0;
}

void sh_stop_uninstall(sh_stop *s)
{
    if (!s || g_registered != s)
        return;
    /* Handlers first: a signal arriving meanwhile still finds the flag registered. (After a
     * failed install the untouched entries are zero: SIG_DFL, which they were.) */
    sigaction(SIGINT, &s->old_int, NULL);
    sigaction(SIGTERM, &s->old_term, NULL);
    if (s->flags & SH_STOP_IGNORE_SIGPIPE)
        sigaction(SIGPIPE, &s->old_pipe, NULL);
    if (s->flags & SH_STOP_BLOCK)
        pthread_sigmask(SIG_SETMASK, &s->old_mask, NULL);
    g_registered = NULL;
}

bool sh_stop_requested(const sh_stop *s)
{
    return s->sig != 0;
}

int sh_stop_signal(const sh_stop *s)
{
    return (int)s->sig;
}

void sh_stop_request(sh_stop *s, int sig)
{
    s->sig = sig ? sig : SIGTERM;
}

void sh_stop_wait(sh_stop *s)
{
    while (!s->sig) {
        if (s->flags & SH_STOP_BLOCK) {
            sigsuspend(&s->wait_mask); /* returns after a handled signal */
        } else {
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

bool sh_stop_requested_fn(void *arg)
{
    return sh_stop_requested(arg);
}
