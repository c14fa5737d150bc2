/* sh_fp.h — landmark fingerprints: STFT (FFTW3) → spectral peaks → pitch-tolerant pair hashes.
 *
 * Pipeline (all in sh_fp.c):
 *   mono float samples at `rate` → Hann-windowed FFT frames (`fft_size`, `hop`) → power spectrum
 *   → 2-D local maxima inside the band [fmin_hz, fmax_hz] (±peak_df bins, ±peak_dt frames)
 *   → density cap: a peak survives if it is among the `peaks_per_window` strongest (by power) of
 *     the window of ±rank_half frames centred on it — translation invariant, so a query cut
 *     anywhere in a track selects the same peaks as the track, and noise that adds power
 *     everywhere leaves the strongest music peaks on top
 *   → landmark pairs: each anchor with its `fanout` nearest-in-time targets in the zone
 *     dt ∈ [dt_min, dt_max] frames, |log2(f2/f1)| ≤ df_max_oct
 *   → one 32-bit hash per pair (query mode: a few, see below).
 *
 * Hash bit layout (SH_FP_VERSION 2), packed into the low 22 bits so that sorted hashes have small
 * gaps (the shard Rice-codes hash deltas):
 *   bits 31..22  0   reserved
 *   bits 21..16  f1  anchor frequency, log scale: floor(log2(f1/fmin_hz) * f1_steps)      (6 bits)
 *   bits 15..8   df  frequency RATIO target/anchor: floor(log2(f2/f1) * df_steps) + 128   (8 bits)
 *   bits  7..0   dt  time difference: floor((t2 - t1) / dt_step), t in interpolated frames (8 bits)
 * df is invariant to a pitch shift and f1 is coarse (f1_steps per octave), which is what makes
 * ±2 % speed changes (pitch and tempo together) matchable. Frequencies and times are refined by
 * parabolic interpolation, so df and dt are stable to a fraction of a bin/frame.
 *
 * Index vs query mode: an index extracts exactly the hashes above. A query (`query = 1`) extracts
 * a superset — more peaks per window (`q_peaks_per_window`), more targets (`q_fanout`), and every
 * quantisation cell that a ±q_scale_tol time/pitch scale change plus ±q_jitter of measurement noise
 * could move a value into — so that degraded or speed-changed audio still finds the indexed hashes,
 * while the index stays small. Hashes of the two modes are the same function; only coverage
 * differs.
 *
 * Bounds: any rank_half+1 consecutive frames hold ≤ peaks_per_window kept peaks, pairs ≤ fanout
 * per peak, and in query mode ≤ q_max_variants hashes per pair; so the hash count per second of
 * audio is bounded (sh_fp_max_hashes_per_s()). Measured on the dev corpus: 31.7 index hashes
 * (postings) per second of music, ~200 query hashes per second. Silence, DC, clipping, NaN/Inf
 * samples and input shorter than one frame give zero or bounded hashes, never an error.
 */
#ifndef SH_FP_H
#define SH_FP_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

/* Identifies the hashes that sh_fp_config_default() produces; it changes whenever they would
 * change (algorithm, layout or a default index-mode tunable). Index-mode tunables are all fields
 * below except `query` and those starting with q_: an index built with non-default ones is not
 * described by this number. Query-mode tunables may vary freely. */
#define SH_FP_VERSION 2

/* One landmark hash: `hash` is the 32-bit key; `t` the anchor time in analysis frames. */
typedef struct sh_hash {
    uint32_t hash;
    uint32_t t;
} sh_hash;

/* Bit layout helpers (see the table above). */
#define SH_FP_F1_BITS 6
#define SH_FP_DF_BITS 8
#define SH_FP_DT_BITS 8
#define SH_FP_DF_BIAS 128
static inline uint32_t sh_fp_hash_pack(uint32_t f1, uint32_t df, uint32_t dt)
{
    return (f1 & 0x3fu) << 16 | (df & 0xffu) << 8 | (dt & 0xffu);
}
static inline uint32_t sh_fp_hash_f1(uint32_t h)
{
    return (h >> 16) & 0x3fu;
}
static inline uint32_t sh_fp_hash_df(uint32_t h)
{
    return (h >> 8) & 0xffu;
}
static inline uint32_t sh_fp_hash_dt(uint32_t h)
{
    return h & 0xffu;
}

/* Every tunable of the extractor. sh_fp_config_default() fills the defaults given in brackets. */
typedef struct sh_fp_config {
    int rate;               /* analysis sample rate in Hz [8000]; audio must be resampled to it */
    int fft_size;           /* FFT length in samples, a power of two 64..8192 [512 = 64 ms] */
    int hop;                /* frame advance in samples [128 = 16 ms]; one frame = one time unit */
    float fmin_hz, fmax_hz; /* band searched for peaks [150, 3400]: survives 8 kHz telephony */
    int peak_df;            /* a peak is the maximum of ±peak_df bins ... [3] */
    int peak_dt;            /* ... and ±peak_dt frames around it [4] */
    float floor_db; /* peaks weaker than this power (dB, full scale sine ≈ 0) ignored [-75] */
    int rank_half;  /* density window: ±rank_half frames [16] */
    int peaks_per_window; /* peaks kept per density window, index mode [5] */
    int dt_min, dt_max;   /* target zone in frames [2, 48] */
    float df_max_oct;     /* target zone half-height in octaves [1.0] */
    int fanout;           /* targets per anchor, index mode [4] */
    float f1_steps;       /* anchor frequency cells per octave [12] */
    float df_steps;       /* frequency-ratio cells per octave [48] */
    float dt_step;        /* time-difference cell in frames [1.0] */
    /* Query mode (does not change hash values, only which are produced): */
    int query;              /* 0 = index extraction, 1 = query extraction [0] */
    int q_peaks_per_window; /* peaks per density window; ≥ peaks_per_window keeps a superset [5] */
    int q_fanout;           /* targets per anchor; ≥ fanout keeps a superset [5] */
    float q_scale_tol;      /* relative time/pitch scale change to cover, e.g. 0.025 [0.025] */
    float q_jitter;         /* ± cells of measurement noise covered for df and dt [0.1] */
    int q_max_variants;     /* hard cap on hashes per pair in query mode [12] */
} sh_fp_config;

/* Fills the defaults (index mode). */
void sh_fp_config_default(sh_fp_config *c);

/* Defaults with query = 1. */
void sh_fp_config_query(sh_fp_config *c);

/* Checks ranges. Returns 0 or SH_EINVAL (message in e). */
int sh_fp_config_check(const sh_fp_config *c, sh_err *e);

/* Seconds per analysis frame (hop / rate). */
double sh_fp_frame_seconds(const sh_fp_config *c);

/* Upper bound of hashes per second of audio for this config (used to size and cap buffers). */
double sh_fp_max_hashes_per_s(const sh_fp_config *c);

typedef struct sh_fp sh_fp; /* streaming extractor; one per thread */

/* Creates an extractor (copies *c). FFTW planning is serialized internally by a mutex (FFTW's
 * planner is not thread-safe); execution is concurrent (new-array execute on private buffers).
 * Errors: SH_EINVAL (bad config), SH_ENOMEM. */
int sh_fp_new(const sh_fp_config *c, sh_fp **out, sh_err *e);

/* Feeds mono samples at c->rate, any chunk size (the result does not depend on chunking);
 * non-finite samples count as 0. Errors: SH_ENOMEM (then the extractor must be reset). */
int sh_fp_feed(sh_fp *fp, const float *x, size_t n, sh_err *e);

/* Flushes the tail (frames that lack look-ahead are evaluated with what exists); after this
 * sh_fp_hashes() is complete. Further feeding needs sh_fp_reset(). Errors: SH_ENOMEM, SH_EINVAL
 * (called twice). */
int sh_fp_finish(sh_fp *fp, sh_err *e);

/* The hashes produced so far, sorted by t (ties in production order); owned by fp, valid until the
 * next feed/finish/reset/free. *n receives the count. */
const sh_hash *sh_fp_hashes(const sh_fp *fp, size_t *n);

/* Samples fed so far (for the duration). */
uint64_t sh_fp_samples(const sh_fp *fp);

/* Ready for a new stream; keeps plans and buffers. */
void sh_fp_reset(sh_fp *fp);

/* Frees the extractor; accepts NULL. */
void sh_fp_free(sh_fp *fp);

#endif
