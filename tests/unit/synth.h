/* synth.h — deterministic test audio for the fingerprint and matcher tests (header-only).
 *
 * synth_music(): a seeded sequence of "notes" (three partials each, random pitch in 200..3000 Hz,
 * a new note every 125 ms with an exponential decay) plus faint noise; distinct seeds give
 * unrelated music. Not a model of real music, just rich enough in spectral peaks. */
#ifndef SH_TEST_SYNTH_H
#define SH_TEST_SYNTH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static inline uint32_t synth_rand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static inline double synth_unit(uint64_t *s)
{
    return synth_rand(s) / 2147483648.0;
}

/* Fills x[0..n) at `rate` Hz. */
static inline void synth_music(float *x, size_t n, int rate, uint64_t seed)
{
    uint64_t s = seed * 2654435761ull + 1;
    const size_t note = (size_t)rate / 8;
    double f[3] = {440, 660, 880}, ph[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        if (i % note == 0)
            for (int j = 0; j < 3; j++)
                f[j] = 200.0 * pow(15.0, synth_unit(&s));
        const double env = exp(-3.0 * (double)(i % note) / (double)note);
        double v = 0.0;
        for (int j = 0; j < 3; j++) {
            ph[j] += 2.0 * M_PI * f[j] / rate;
            v += sin(ph[j]) * (0.25 / (j + 1));
        }
        x[i] = (float)(v * env + 0.002 * (synth_unit(&s) - 0.5));
    }
}

#endif
