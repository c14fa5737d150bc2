/* sh_fpblob.h — the compressed per-track posting blob: one encoding of a track's landmark hashes
 * used by the primary database (a column), the replicator's index deltas (payload) and tools.
 *
 * Format (all integers little-endian; version 1):
 *   byte 0     'H'  (magic)
 *   byte 1     1    (format version; a decoder rejects versions it does not know)
 *   varint     n    number of postings
 *   varint     raw  size in bytes of the uncompressed body
 *   rest       one zstd frame whose content is the body:
 *              n times: varint(t - previous t) then uint32 hash (LE), in (t, hash) order.
 * The encoder sorts a copy by (t, hash), so the output is deterministic for a given multiset.
 * Hashes are random 32-bit keys and do not compress; times are small deltas (mostly one byte).
 *
 * Decoding is hostile-input safe: every length is checked against the caps given by the caller
 * before any allocation; anything inconsistent is SH_EFORMAT, never a crash.
 */
#ifndef SH_FPBLOB_H
#define SH_FPBLOB_H

#include "sh_err.h"
#include "sh_fp.h"

#include <stddef.h>
#include <stdint.h>

#define SH_FPBLOB_MAGIC 'H'
#define SH_FPBLOB_VERSION 1

/* Default caps: 3 h of audio at a few hundred postings per second fits comfortably. */
#define SH_FPBLOB_MAX_POSTINGS_DEFAULT (8u << 20)

/* Encodes n hashes (any order; `h` is not modified) into a new malloc'ed buffer *out of *out_len
 * bytes, owned by the caller (free()). `level` is the zstd level (0 = default, 3).
 * Errors: SH_EINVAL (NULL arguments, n over SH_FPBLOB_MAX_POSTINGS_DEFAULT), SH_ENOMEM, SH_EZSTD.
 */
int sh_fpblob_encode(const sh_hash *h, size_t n, int level, uint8_t **out, size_t *out_len,
                     sh_err *e);

/* Reads the posting count from the header without decompressing. Errors: SH_EFORMAT. */
int sh_fpblob_count(const void *buf, size_t len, size_t *n, sh_err *e);

/* Decodes a blob into a new malloc'ed array *out of *n hashes sorted by (t, hash), owned by the
 * caller (free(); *out is NULL when *n is 0). `max_postings` caps the count (0 = the default);
 * the decompressed size is capped at 9 bytes per posting.
 * Errors: SH_EFORMAT (bad magic, unknown version, truncated, trailing bytes, counts or sizes that
 * disagree, t overflow), SH_ETOOBIG (count over the cap), SH_ENOMEM. */
int sh_fpblob_decode(const void *buf, size_t len, size_t max_postings, sh_hash **out, size_t *n,
                     sh_err *e);

#endif
