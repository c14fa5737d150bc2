/* sh_clock.h — clocks, interruptible sleeps and retry backoff: one copy for every component.
 *
 * Two clocks, never mixed:
 *   monotonic  for durations, deadlines and latencies (never jumps; its zero is arbitrary);
 *   wall       for timestamps that leave the process (event times, dead-letter times), in ms
 *              since the Unix epoch (UTC; may jump when the system clock is set).
 * Backoff: retry `attempt` (0 = the first retry) waits min(cap, base × 2^attempt) scaled by a
 * uniform jitter factor in [0.5, 1.5), so that processes that failed together do not retry
 * together. The jitter comes from the kernel (getrandom): no shared PRNG state between threads.
 * Everything here is thread-safe.
 */
#ifndef SH_CLOCK_H
#define SH_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* Monotonic time in seconds / milliseconds (fractional). */
double sh_clock_mono_s(void);
double sh_clock_mono_ms(void);

/* Wall-clock time in whole milliseconds since the Unix epoch. */
int64_t sh_clock_wall_ms(void);

/* Asked between sleep slices: true stops the sleep (e.g. a stop flag or an abandon flag). */
typedef bool (*sh_clock_stop_fn)(void *arg);

/* Sleeps `ms` (≤ 0: not at all) in slices of at most 50 ms, asking `stop` (may be NULL) before
 * each slice and once more at the end. Returns 0, or SH_ECANCELED as soon as stop said true. */
int sh_clock_sleep_ms(double ms, sh_clock_stop_fn stop, void *arg);

/* The delay before retry `attempt` (negative counts as 0; exponents past 20 as 20), in ms:
 * min(cap_ms, base_ms × 2^attempt) × jitter in [0.5, 1.5). */
double sh_backoff_ms(double base_ms, double cap_ms, int attempt);

#endif
