/* sh_recognize.h — clip → fingerprint → lookup → ranked answer, in one place. `soundhash match`,
 * the shard benchmark and the accuracy evaluation recognise through it, and so will the edge: it
 * needs the engine only (audio, fp, match, shard, memindex), never libpq or Kafka.
 *
 * A recognizer owns a query-mode fingerprinter, a matcher and the buffers of its answers; one
 * thread uses it at a time (make one per thread; the store may be shared). A query is two steps,
 * so that callers can time or replace either:
 *   1. the clip's hashes: from an audio file or buffer (decoded, mixed to mono, resampled to the
 *      fingerprint rate, capped in duration) or from PCM samples already at that rate;
 *      sh_recognize_hashes() then gives them (they may also come from elsewhere, e.g. a client
 *      that fingerprinted on its side);
 *   2. lookup + ranking of hashes against a store: an LMDB shard, whose answers carry the track's
 *      external id, tenant and metadata, or an in-memory index, whose answers carry only the
 *      track number the caller gave it.
 * Answers are the matcher's (see sh_match.h: best first, at most one per track, only above the
 * no-match threshold; none = no match).
 */
#ifndef SH_RECOGNIZE_H
#define SH_RECOGNIZE_H

#include "sh_err.h"
#include "sh_fp.h"
#include "sh_match.h"
#include "sh_memindex.h"
#include "sh_shard.h"

#include <stddef.h>
#include <stdint.h>

enum { SH_RECOGNIZE_TOP_MAX = 100 }; /* answers per query at most */

typedef struct sh_recognize_config {
    sh_fp_config fp;       /* the queries' fingerprint config [sh_fp_config_query()] */
    sh_match_config match; /* ranking tunables [sh_match_config_for(&fp)] */
    double max_duration_s; /* longer clips are refused with SH_ETOOLONG [600] */
} sh_recognize_config;

/* Fills the defaults in brackets above. */
void sh_recognize_config_default(sh_recognize_config *c);

typedef struct sh_recognize_answer {
    uint32_t track;        /* the store's track number */
    const char *id;        /* external track id; "" from an in-memory index */
    const char *tenant;    /* "" when none */
    const char *meta_json; /* the track's metadata JSON; "" when none */
    double offset_s;       /* where the clip starts within the track (negative: before it) */
    double duration_s;     /* span of the clip covered by aligned votes */
    int score;             /* aligned votes */
    int landmarks;         /* distinct clip frames among the aligned votes (see sh_match.h) */
    int spread;            /* 0.5 s stretches of the clip holding aligned votes */
    double confidence;     /* 0..1, calibrated probability that the answer is right */
    double scale;          /* time-scale of the clip against the track (1.02: 2 % fast) */
    int noise;             /* the noise floor the confidence was judged against (sh_match.h) */
    int noise_landmarks;
} sh_recognize_answer;
/* The strings of answers point into the recognizer: valid until its next query or its free. */

typedef struct sh_recognize_stats {
    size_t hashes;    /* query hashes looked up */
    size_t postings;  /* postings the store visited */
    size_t votes;     /* votes cast into the matcher (including any dropped past max_votes) */
    double lookup_ms; /* store lookup (wall clock, monotonic) */
    double rank_ms;   /* ranking and, for a shard, reading the answers' track records */
    int top_score;     /* the best score and the most landmarks among every candidate ranked, */
    int top_landmarks; /* reported or not (sh_matcher_top): for sh_recognize_judge() */
} sh_recognize_stats;

typedef struct sh_recognizer sh_recognizer;

/* Creates a recognizer (`c` copied; NULL = defaults). Errors: SH_EINVAL (a tunable out of range:
 * the matcher's or the fingerprint config's message), SH_ENOMEM. */
int sh_recognizer_new(const sh_recognize_config *c, sh_recognizer **out, sh_err *e);

/* Frees the recognizer and its answers' strings; accepts NULL. */
void sh_recognizer_free(sh_recognizer *r);

/* Step 1: the clip's hashes, replacing the previous clip's. From a file or a borrowed buffer of
 * encoded audio: the errors of sh_extract_file()/sh_extract_mem() (SH_ENOTFOUND, SH_EDECODE,
 * SH_ETOOLONG, SH_ETOOSHORT, ...). From `n` mono samples at the config's fp.rate: the errors of
 * sh_fp_feed()/sh_fp_finish(). After an error there are no hashes (n = 0). */
int sh_recognize_clip_file(sh_recognizer *r, const char *path, sh_err *e);
int sh_recognize_clip_mem(sh_recognizer *r, const void *buf, size_t len, sh_err *e);
int sh_recognize_clip_pcm(sh_recognizer *r, const float *x, size_t n, sh_err *e);

/* The last clip's hashes (owned by the recognizer; valid until the next clip call). */
const sh_hash *sh_recognize_hashes(const sh_recognizer *r, size_t *n);

/* Step 2: looks up h[0..n) (QUERY-mode hashes of this recognizer's fp config, e.g. from
 * sh_recognize_hashes) and ranks: out[0..*nout) best first, *nout ≤ k ≤ SH_RECOGNIZE_TOP_MAX
 * (0 = no match). `st` (may be NULL) receives counts and times. A shard answer whose track was
 * deleted meanwhile (another process) is left out. Errors: SH_EINVAL (NULL store, k out of
 * range), the shard's lookup errors (SH_EFORMAT, SH_ELMDB, ...), SH_ENOMEM ("ranking failed"). */
int sh_recognize_shard(sh_recognizer *r, sh_shard *s, const sh_hash *h, size_t n, size_t k,
                       sh_recognize_answer *out, size_t *nout, sh_recognize_stats *st, sh_err *e);
/* sh_recognize_shard() against the posting index of `fp_version` (sh_shard_lookup_fp), whatever
 * the handle's fp_version: an edge opens its shards for any version and queries the one its
 * recognizer fingerprints with. No answers when the shard holds none of that version. */
int sh_recognize_shard_fp(sh_recognizer *r, sh_shard *s, int fp_version, const sh_hash *h,
                          size_t n, size_t k, sh_recognize_answer *out, size_t *nout,
                          sh_recognize_stats *st, sh_err *e);
int sh_recognize_memindex(sh_recognizer *r, const sh_memindex *mi, const sh_hash *h, size_t n,
                          size_t k, sh_recognize_answer *out, size_t *nout,
                          sh_recognize_stats *st, sh_err *e);

/* One query looked up in several shards (the lookups st[0..nst) of the same hashes, e.g. the 8
 * shards of an edge): judges each answer a[i], which came from lookup from[i] (< nst), against
 * the other lookups' best candidates too (sh_match_confidence_against), as one index of the whole
 * catalogue would, lowering a[i].confidence where they raise its noise floor. An answer whose
 * confidence falls below the config's min_confidence (sh_recognize_is_answer) is no answer any
 * more: the caller drops it. `c`: the recognizers' config (NULL = defaults). */
void sh_recognize_judge(const sh_recognize_config *c, sh_recognize_answer *a, size_t na,
                        const size_t *from, const sh_recognize_stats *st, size_t nst);

/* Whether a's confidence passes the no-match threshold of config c (NULL = defaults). */
int sh_recognize_is_answer(const sh_recognize_config *c, const sh_recognize_answer *a);

#endif
