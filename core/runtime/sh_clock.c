/* sh_clock.c — clocks, interruptible sleeps and retry backoff (see sh_clock.h). */
#include "sh_clock.h"

#include "sh_err.h"

#include <math.h>
#include <sys/random.h>
#include <time.h>

enum { SH_SLEEP_SLICE_MS = 50, SH_BACKOFF_MAX_EXP = 20 };

double sh_clock_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double sh_clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int64_t sh_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sh_clock_sleep_ms(double ms, sh_clock_stop_fn stop, void *arg)
{
    const double end = sh_clock_mono_ms() + ms;
    for (double left = ms; left > 0; left = end - sh_clock_mono_ms()) {
        if (stop && stop(arg))
            return SH_ECANCELED;
        double slice = left < SH_SLEEP_SLICE_MS ? left : SH_SLEEP_SLICE_MS;
        struct timespec ts = {0, (long)(slice * 1e6)};
        nanosleep(&ts, NULL);
    }
    return stop && stop(arg) ? SH_ECANCELED : 0;
}

/* Uniform in [0, 1) from the kernel (falls back to the clock's low bits if it has none). */
static double jitter_unit(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uint32_t)(sh_clock_mono_s() * 1e6);
    return (double)r / 4294967296.0;
}

double sh_backoff_ms(double base_ms, double cap_ms, int attempt)
{
    if (attempt < 0)
        attempt = 0;
    double d = base_ms * pow(2.0, attempt < SH_BACKOFF_MAX_EXP ? attempt : SH_BACKOFF_MAX_EXP);
    if (d > cap_ms)
        d = cap_ms;
    return d * (0.5 + jitter_unit());
}
