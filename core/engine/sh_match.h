/* sh_match.h — offset-histogram voting over postings, independent of where postings are stored.
 *
 * A store (LMDB shard, in-memory index) looks up every hash of a QUERY-mode fingerprint
 * (sh_fp_config_query) and calls sh_matcher_vote() for every posting (track, t_db) that shares the
 * hash at query time t_query. sh_matcher_result() then ranks candidates:
 *   1. coarse: votes are grouped by track (a counting sort over a shard's dense track numbers;
 *      tracks with fewer votes than a candidate needs are dropped there) and counted per
 *      (track, (t_db - t_query) / coarse_frames); a candidate's
 *      coarse score sums three adjacent cells, so the linear drift of a ±2 % speed change (0.2 s
 *      over 10 s) stays inside it; with coarse_scale_step > 0 (speed-invariant hashes) the
 *      offsets t_db - (1 + s_j) t_query are counted for several rows s_j, so that a ±10 % speed
 *      change (±1 s of drift over 10 s) still gathers its votes in one row;
 *   2. fine: for the best `refine` coarse candidates, the offset t_db - (1 + s) * t_query is
 *      histogrammed for time-scale factors s in [-max_scale, +max_scale] (steps of scale_step);
 *      score = the most votes within ±tol_frames of one offset over all s;
 *   3. no-match threshold: a candidate is reported only when its confidence is ≥ min_confidence.
 *      The confidence is a calibrated probability that the answer is right, the larger of
 *      (votes) for score ≥ min_score, a function of z = score - 1.5 * (best score of any other
 *      track: the noise floor of this very query), fitted on the dev query sets:
 *      1 / (1 + exp(-0.58 (z - 4.9))); (landmarks) for a candidate with ≥ min_landmarks
 *      landmarks (distinct query frames among its aligned votes) in ≥ min_spread half-second
 *      stretches, 1 / (1 + exp(-(zl - 2.6))) with zl = landmarks - 1.5 * (the best other track's
 *      landmarks): weak matches of noisy clips spread over the clip, bursts of similar music
 *      do not (triplets only; measured in the README, issue 13). Another track
 *      scoring within 20 % while both score ≥ dup_score is taken for a duplicate of the same
 *      audio (both are reported), not for noise.
 * One matcher per thread; sh_matcher_reset() between queries keeps its buffers.
 */
#ifndef SH_MATCH_H
#define SH_MATCH_H

#include "sh_err.h"
#include "sh_fp.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sh_match_result {
    uint32_t track;    /* shard-internal track number */
    double offset_s;   /* where the query starts within the track (negative if it starts before) */
    double duration_s; /* span of the query covered by aligned votes */
    int score;         /* aligned votes */
    int landmarks;     /* distinct query frames among the aligned votes (≤ score) */
    int spread;        /* 0.5 s stretches of the query holding aligned votes */
    double confidence; /* 0..1; reported results have confidence ≥ min_confidence */
    double scale;      /* estimated time-scale factor (1.02 = query plays 2 % fast) */
    int noise;           /* the noise floor the confidence was judged against: the best other
                            track's score (counted from min_score on; 0: none) ... */
    int noise_landmarks; /* ... and the most landmarks of another track */
} sh_match_result;

/* Tunables of the matcher; sh_match_config_default() gives the values in brackets. */
typedef struct sh_match_config {
    int coarse_frames;     /* coarse offset cell in frames [16 = 0.26 s] */
    int tol_frames;        /* ± frames of one fine offset [1] */
    double max_scale;      /* largest |s| searched [0.03] */
    double scale_step;     /* step of s [0.005] */
    int refine;            /* coarse candidates refined [8] */
    int min_score;         /* votes path: floor on aligned votes [17 triplets, 12 pairs and speed] */
    double min_confidence; /* no-match threshold on the confidence [0.8 triplets, i.e. z ≥ 7.3;
                              0.65 pairs, i.e. z ≥ 6] */
    int dup_score;         /* near-equal tracks both above this are duplicates, not noise [40] */
    size_t max_votes;      /* votes beyond this are dropped (hostile or huge queries); memory is
                              about 44 bytes per vote [1000000; a 10 s query casts ~15k] */
    double coarse_scale_step; /* 0: one coarse row (offsets t_db - t_q, drift up to ±3 %);
                                 > 0: coarse rows of time-scale factors this far apart within
                                 ±max_scale, each vote counted in every row, the fine stage ±
                                 one step around the best row (at most 31 rows) [0; speed-
                                 invariant hashes: 0.025 with max_scale q_speed_tol + 0.005] */
    int min_landmarks;     /* landmark path of the confidence (see 3. above): a candidate with at
                              least this many landmarks in min_spread stretches is judged by
                              landmarks too; 0 = off [4 triplets; 0 pairs and speed] */
    int min_spread;        /* 0.5 s stretches of the clip those landmarks must cover [4] */
} sh_match_config;

/* Defaults for fingerprints of sh_fp_config_default()'s hash mode (triplets). */
void sh_match_config_default(sh_match_config *mc);

/* Defaults for fingerprints made with *c's hash mode (min_score and min_confidence differ; the
 * speed mode searches ±(q_speed_tol + 0.005) in coarse rows; NULL = the default). */
void sh_match_config_for(const sh_fp_config *c, sh_match_config *mc);

typedef struct sh_matcher sh_matcher;

/* Creates a matcher for fingerprints made with *c (frame duration) and default match tunables.
 * Errors: SH_EINVAL, SH_ENOMEM. */
int sh_matcher_new(const sh_fp_config *c, sh_matcher **out, sh_err *e);

/* Replaces the match tunables (copied). Errors: SH_EINVAL for out-of-range values. */
int sh_matcher_configure(sh_matcher *m, const sh_match_config *mc, sh_err *e);

/* Forgets all votes; keeps buffers. */
void sh_matcher_reset(sh_matcher *m);

/* Longest query time a vote may carry, in frames (2^18: 70 min at 16 ms frames). Bounds the
 * fine stage's histogram (~4 MiB at most) whatever times a client sends. */
#define SH_MATCH_TQ_MAX (1u << 18)

/* Hot path: one posting (track, t_db) found for a query hash at t_query. Never fails: beyond
 * max_votes votes, and votes with t_query > SH_MATCH_TQ_MAX, are counted as dropped and
 * ignored. */
void sh_matcher_vote(sh_matcher *m, uint32_t track, uint32_t t_db, uint32_t t_query);

/* Votes so far (including dropped ones). */
size_t sh_matcher_votes(const sh_matcher *m);

/* Best candidates above the no-match threshold, best first, at most one per track; *n ≤ k
 * (0 = no match). Does not consume the votes. Errors: SH_EINVAL (NULL), SH_ENOMEM. */
int sh_matcher_result(sh_matcher *m, sh_match_result *out, size_t k, size_t *n);

/* The best score and the most landmarks among every candidate the last sh_matcher_result()
 * ranked, reported or not (0 0 when none; m NULL: 0 0): what this lookup offers as the noise
 * floor of another lookup of the same query (see sh_match_confidence_against). */
void sh_matcher_top(const sh_matcher *m, int *score, int *landmarks);

/* The confidence of r (a result of sh_matcher_result) when n other lookups of the same query —
 * the catalogue's other shards — found candidates as strong as other_score[i] with
 * other_landmarks[i] (their sh_matcher_top): the noise floor is then the largest of r's own and
 * theirs, leaving out a lookup whose best is a near-equal strong score (a duplicate of the same
 * audio, as within one lookup). One index judges a clip against the best other track of the whole
 * catalogue; one shard's candidates are a thin sample of the random alignments, which grow with
 * the catalogue (a never-indexed clip matched a distractor at 100 h with 9 landmarks against its
 * shard's 3, README "Recognition at scale"). Never above r->confidence. */
double sh_match_confidence_against(const sh_match_config *mc, const sh_match_result *r,
                                   const int *other_score, const int *other_landmarks, size_t n);

/* Frees the matcher; accepts NULL. */
void sh_matcher_free(sh_matcher *m);

#endif
