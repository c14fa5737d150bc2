/* sh_fp.h — landmark fingerprints: STFT (FFTW3) → spectral peaks → pitch-tolerant pair hashes.
 *
 * Pipeline (all in sh_fp.c):
 *   mono float samples at `rate` → Hann-windowed FFT frames (`fft_size`, `hop`) → power spectrum
 *   → 2-D local maxima inside the band [fmin_hz, fmax_hz] (±peak_df bins, ±peak_dt frames)
 *   → density cap: a peak survives if it is among the `peaks_per_window` strongest (by power) of
 *     the window of ±rank_half frames centred on it — translation invariant, so a query cut
 *     anywhere in a track selects the same peaks as the track, and noise that adds power
 *     everywhere leaves the strongest music peaks on top
 *   → targets: each anchor's `fanout` nearest-in-time kept peaks in the zone
 *     dt ∈ [dt_min, dt_max] frames, |log2(f2/f1)| ≤ df_max_oct
 *   → hash_mode SH_FP_TRIPLETS (default): one 32-bit hash per anchor and two of its targets
 *     (C(fanout, 2) per anchor); SH_FP_PAIRS: one per anchor and target. Query mode: a few per
 *     triplet/pair, see below.
 *
 * Why triplets (SH_FP_VERSION 3): pair hashes hold ~22 bits but music fills only ~270k distinct
 * cells, so postings per lookup — and query latency — grow linearly with the audio in a shard
 * (measured 2.1 h → 21.6 h: 14.8k → 124.5k votes per 10 s query, p50 2.0 → 6.2 ms, p99 12 ms).
 * A triplet adds a third peak: 32 well-used bits, ~0.2 postings per lookup at 2 h, ~1.3 at
 * 21.6 h (8.8k votes per 10 s query, p50 2.2 ms, p99 3.0 ms) and ~2.8 at 51 h (19k votes, p50
 * 2.7 ms, p99 4.3 ms; pairs there: 284k votes, p50 13.5 ms), at the price of ~1.5 points of
 * top-1 on heavily degraded 5 s queries (a triplet needs three peaks to survive) and 43 instead
 * of 31.7 postings per second of music (0.71 MB per audio hour in the LMDB shard).
 *
 * Triplet layout (SH_FP_TRIPLETS, anchor a, targets b then c in time, all fields ≥ 0):
 *   bits 31..26 f1  anchor frequency, log scale: floor(log2(fa/fmin_hz) * f1_steps)       (6 bits)
 *   bits 25..19 db  ratio b/anchor: floor(log2(fb/fa) * t_df_steps) + 64                  (7 bits)
 *   bits 18..12 dc  ratio c/anchor: floor(log2(fc/fa) * t_df_steps) + 64                  (7 bits)
 *   bits 11..5  lt  time to c, log scale: floor(log2(tc - ta) * t_dt_steps)               (7 bits)
 *   bits  4..0  r   time ratio: floor((tb - ta) / (tc - ta) * t_ratio_steps), 0..steps    (5 bits)
 * db, dc and r are invariant to pitch, tempo and speed changes; f1 and lt move by log2(1 + s)
 * cells-per-octave under a scale change s (≈ 0.4 and 0.6 cells for 2.5 %), which the query
 * variants cover. lt is fine enough (16 cells per octave) that a 15 % tempo change of the same
 * recording lands in other cells: triplets stay specific to one rendition, like pairs.
 *
 * Pair layout (SH_FP_PAIRS, SH_FP_VERSION 2 hashes when every other tunable is default), packed
 * into the low 22 bits so that sorted hashes have small gaps (the shard Rice-codes hash deltas):
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
 * (cells for f/df/dt, frames for the triplet times) could move a value into, at most
 * q_max_variants (the widest range is narrowed around the measured cell first) — so that degraded
 * or speed-changed audio still finds the indexed hashes, while the index stays small. Hashes of
 * the two modes are the same function; only coverage differs. Index and query must use the same
 * hash_mode and index-mode tunables.
 *
 * Bounds: any rank_half+1 consecutive frames hold ≤ peaks_per_window kept peaks, hashes ≤ fanout
 * (pairs) or C(fanout, 2) (triplets) per peak, and in query mode ≤ q_max_variants hashes each;
 * so the hash count per second of audio is bounded (sh_fp_max_hashes_per_s()). Measured on the
 * dev corpus: triplets 43.0 index hashes (postings) per second of music, ~685 query hashes per
 * second; pairs 31.7 and ~195. Silence, DC, clipping, NaN/Inf
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
#define SH_FP_VERSION 3

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

/* Hash modes (sh_fp_config.hash_mode). */
#define SH_FP_PAIRS 0
#define SH_FP_TRIPLETS 1
#define SH_FP_SPEED 2

/* Speed-invariant triplet layout (SH_FP_SPEED, fp_version 4; anchor a, targets b then c in time).
 * A speed change by k (sox `speed`, a resampling: radio, DJ pitch faders, "sped-up" versions)
 * multiplies every frequency by k and divides every time difference by k, so besides the ratios
 * (db, dc, r as in SH_FP_TRIPLETS) the product fa * (tc - ta) — cycles of the anchor between a and
 * c — is invariant: u = log2(fa / fmin_hz) + log2(tc - ta) replaces v3's separate f1 and lt.
 *   bits 31..24 u   floor(u * s_u_steps)                                                  (8 bits)
 *   bits 23..19 fc  coarse anchor frequency: floor(log2(fa/fmin_hz) * s_f_steps)          (5 bits)
 *   bits 18..12 db  ratio b/anchor: floor(log2(fb/fa) * t_df_steps) + 64                  (7 bits)
 *   bits 11..5  dc  ratio c/anchor: floor(log2(fc/fa) * t_df_steps) + 64                  (7 bits)
 *   bits  4..0  r   time ratio: floor((tb - ta) / (tc - ta) * t_ratio_steps)              (5 bits)
 * fc is the only field a speed change moves (log2(1.1) * 4 = 0.55 cells at ±10 %): a query emits
 * the fc cells of ±q_speed_tol, so one lookup per variant finds the track at any speed in that
 * range; u moves only under a tempo-only or pitch-only change (±q_scale_tol covered). The matcher
 * then searches time-scale factors up to ±max_scale (sh_match_config_for). */
#define SH_FP_S_U_BITS 8
#define SH_FP_S_F_BITS 5
static inline uint32_t sh_fp_hash_pack_speed(uint32_t u, uint32_t fc, uint32_t db, uint32_t dc,
                                             uint32_t r)
{
    return (u & 0xffu) << 24 | (fc & 0x1fu) << 19 | (db & 0x7fu) << 12 | (dc & 0x7fu) << 5 |
           (r & 0x1fu);
}

/* Triplet layout helpers (see the table above). */
#define SH_FP_T_DF_BITS 7
#define SH_FP_T_DF_BIAS 64
#define SH_FP_T_DT_BITS 7
#define SH_FP_T_R_BITS 5
static inline uint32_t sh_fp_hash_pack3(uint32_t f1, uint32_t db, uint32_t dc, uint32_t lt,
                                        uint32_t r)
{
    return (f1 & 0x3fu) << 26 | (db & 0x7fu) << 19 | (dc & 0x7fu) << 12 | (lt & 0x7fu) << 5 |
           (r & 0x1fu);
}

static inline uint32_t sh_fp_hash3_f1(uint32_t h)
{
    return h >> 26;
}
static inline uint32_t sh_fp_hash3_db(uint32_t h)
{
    return (h >> 19) & 0x7fu;
}
static inline uint32_t sh_fp_hash3_dc(uint32_t h)
{
    return (h >> 12) & 0x7fu;
}
static inline uint32_t sh_fp_hash3_lt(uint32_t h)
{
    return (h >> 5) & 0x7fu;
}
static inline uint32_t sh_fp_hash3_r(uint32_t h)
{
    return h & 0x1fu;
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
    float df_steps;       /* pairs: frequency-ratio cells per octave [48] */
    float dt_step;        /* pairs: time-difference cell in frames [1.0] */
    /* Query mode (does not change hash values, only which are produced): */
    int query;              /* 0 = index extraction, 1 = query extraction [0] */
    int q_peaks_per_window; /* peaks per density window; ≥ peaks_per_window keeps a superset
                               [6 triplets, 5 pairs: sh_fp_config_mode] */
    int q_fanout;           /* targets per anchor; ≥ fanout keeps a superset [6 triplets, 5 pairs] */
    float q_scale_tol;      /* relative time/pitch scale change to cover, e.g. 0.025 [0.025] */
    float q_jitter;         /* ± cells of measurement noise covered for df and dt [0.1] */
    int q_max_variants;     /* hard cap on hashes per pair/triplet in query mode [12] */
    /* Hash mode (index-mode tunables; see the layouts above): */
    int hash_mode;       /* SH_FP_TRIPLETS, SH_FP_PAIRS or SH_FP_SPEED [SH_FP_TRIPLETS]; set it with
                            sh_fp_config_mode() to get the mode's query defaults */
    float t_df_steps;    /* triplets: frequency-ratio cells per octave [32] */
    float t_dt_steps;    /* triplets: cells per octave of the anchor→second-target time [16] */
    float t_ratio_steps; /* triplets: cells of the time ratio dt(b)/dt(c) in [0, 1] [16] */
    /* SH_FP_SPEED only (t_df_steps and t_ratio_steps are shared with triplets): */
    float s_u_steps;   /* cells per octave of u = log2(fa/fmin_hz) + log2(tc - ta) [16] */
    float s_f_steps;   /* coarse anchor frequency cells per octave [4] */
    float q_speed_tol; /* query: relative speed change (pitch and tempo together) covered [0.12] */
} sh_fp_config;

/* Fills the defaults (index mode). */
void sh_fp_config_default(sh_fp_config *c);

/* Selects a hash mode (SH_FP_PAIRS, SH_FP_TRIPLETS or SH_FP_SPEED) and resets the fields whose
 * defaults depend on it (q_peaks_per_window, q_fanout, q_scale_tol, q_max_variants) to that mode's
 * defaults. */
void sh_fp_config_mode(sh_fp_config *c, int mode);

/* Defaults with query = 1. */
void sh_fp_config_query(sh_fp_config *c);

/* The index-mode config whose hashes `fp_version` identifies: 2 = SH_FP_PAIRS with every other
 * tunable default, 3 = the defaults (SH_FP_TRIPLETS), 4 = SH_FP_SPEED with every other tunable
 * default. Set c->query = 1 for a query of that
 * version. The versions a build can make and compare are exactly these. Returns 0, or
 * SH_EUNSUPPORTED for any other version (*c then untouched; message in e). */
int sh_fp_config_for_version(int fp_version, sh_fp_config *c, sh_err *e);

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
