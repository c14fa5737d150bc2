/* sh_fp.h — landmark fingerprints: STFT (FFTW3) → spectral peaks → hashes.
 * (Owner: fingerprint module. Draft interface — the implementer may refine it, keeping the shape.)
 */
#ifndef SH_FP_H
#define SH_FP_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

/* Changes whenever any hash for the same audio would change (layout, tunables, rate). */
#define SH_FP_VERSION 1

/* One landmark hash: `hash` is the 32-bit key; `t` the anchor time in analysis frames. */
typedef struct sh_hash {
    uint32_t hash;
    uint32_t t;
} sh_hash;

/* Every tunable of the extractor, documented where defined (sh_fp.c / below). */
typedef struct sh_fp_config {
    int rate; /* analysis sample rate, Hz */
    int fft_size;
    int hop;
    /* ... peak picking and pairing tunables, filled by sh_fp_config_default() */
} sh_fp_config;

void sh_fp_config_default(sh_fp_config *c);

/* Seconds per analysis frame (hop / rate). */
double sh_fp_frame_seconds(const sh_fp_config *c);

typedef struct sh_fp sh_fp; /* streaming extractor; one per thread */

/* Creates an extractor. FFTW planning is serialized internally (FFTW's planner is not
 * thread-safe); execution is concurrent. Errors: SH_EINVAL, SH_ENOMEM. */
int sh_fp_new(const sh_fp_config *c, sh_fp **out, sh_err *e);

/* Feeds mono samples at c->rate; hashes accumulate inside. */
int sh_fp_feed(sh_fp *fp, const float *x, size_t n, sh_err *e);

/* Flushes the tail; after this sh_fp_hashes() is complete. */
int sh_fp_finish(sh_fp *fp, sh_err *e);

/* The hashes so far, sorted by t; valid until the next feed/reset/free. */
const sh_hash *sh_fp_hashes(const sh_fp *fp, size_t *n);

/* Samples fed so far (for the duration). */
uint64_t sh_fp_samples(const sh_fp *fp);

/* Ready for a new stream; keeps plans and buffers. */
void sh_fp_reset(sh_fp *fp);

void sh_fp_free(sh_fp *fp);

#endif
