/* sh_match.h — offset-histogram voting over postings, independent of where postings are stored.
 * The store (LMDB shard, in-memory index) calls sh_matcher_vote() for every posting that shares a
 * hash with the query; sh_matcher_result() then ranks candidates.
 * (Owner: fingerprint module. Draft interface — the implementer may refine it, keeping the shape.)
 */
#ifndef SH_MATCH_H
#define SH_MATCH_H

#include "sh_err.h"
#include "sh_fp.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sh_match_result {
    uint32_t track;    /* shard-internal track number */
    double offset_s;   /* where the query starts within the track */
    double duration_s; /* span of the query covered by matching hashes */
    int score;         /* aligned votes */
    double confidence; /* 0..1, calibrated: below the threshold means "no match" */
} sh_match_result;

typedef struct sh_matcher sh_matcher;

int sh_matcher_new(const sh_fp_config *c, sh_matcher **out, sh_err *e);
void sh_matcher_reset(sh_matcher *m);

/* Hot path: one posting (track, t_db) found for a query hash at t_query. */
void sh_matcher_vote(sh_matcher *m, uint32_t track, uint32_t t_db, uint32_t t_query);

/* Best candidates above the no-match threshold, best first; *n ≤ k. */
int sh_matcher_result(sh_matcher *m, sh_match_result *out, size_t k, size_t *n);

void sh_matcher_free(sh_matcher *m);

#endif
