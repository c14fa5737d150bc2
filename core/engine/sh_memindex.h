/* sh_memindex.h — an in-memory posting index (hash → track, t) for tests, benchmarks and tools.
 *
 * Build once (add tracks, then sh_memindex_build), query many times, concurrently if each thread
 * has its own sh_matcher. The on-disk shard (LMDB) is a different module; this one exists so the
 * fingerprint and matcher can be evaluated without it.
 */
#ifndef SH_MEMINDEX_H
#define SH_MEMINDEX_H

#include "sh_err.h"
#include "sh_fp.h"
#include "sh_match.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sh_memindex sh_memindex;

/* Creates an empty index. Errors: SH_ENOMEM. */
int sh_memindex_new(sh_memindex **out, sh_err *e);

/* Adds the hashes of one track (copied). Only before sh_memindex_build(). Errors: SH_EINVAL
 * (already built, or over 2^31 postings), SH_ENOMEM. */
int sh_memindex_add(sh_memindex *mi, uint32_t track, const sh_hash *h, size_t n, sh_err *e);

/* Sorts the postings and builds the lookup directory. Errors: SH_ENOMEM. */
int sh_memindex_build(sh_memindex *mi, sh_err *e);

/* Votes every posting of every query hash into m (which the caller resets beforehand).
 * Returns the number of postings visited. Requires a built index. */
size_t sh_memindex_query(const sh_memindex *mi, const sh_hash *q, size_t n, sh_matcher *m);

/* Number of postings. */
size_t sh_memindex_postings(const sh_memindex *mi);

/* Frees the index; accepts NULL. */
void sh_memindex_free(sh_memindex *mi);

#endif
