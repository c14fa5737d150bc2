/* sh_shardsum.h — the per-shard checksum that `soundhash verify` compares between the primary
 * and an edge. Defined once, here; PART OF THE CONTRACT between the primary's side and the edge's.
 *
 * Per track (an active track: deleted ones are absent):
 *   track_sum = the first 8 bytes, read as a little-endian uint64, of SHA-256 over
 *     "SHT1"                                   (4 bytes: domain and version of this definition)
 *     varint(len(external_id)) external_id     (the bytes as stored)
 *     varint(version) varint(fp_version) varint(n)
 *     n times: u32le hash, u32le t             (the postings sorted by (t, hash), duplicates kept)
 *   (varints are LEB128, sh_varint.h)
 * Per shard: sum = the tracks' track_sum added modulo 2^64, plus the number of tracks and of
 * postings. Addition makes it independent of the order tracks are visited in (the primary reads
 * rows in id order, an edge walks its LMDB shard), and lets an edge keep it up to date as it
 * applies ops (remove the old state of a track, add the new). Tenant, metadata and duration are
 * not covered: verify is about what matching uses.
 *
 * Formatting (sh_shardsum_format): "tracks=<n> postings=<n> sum=<16 lower-case hex digits>".
 */
#ifndef SH_SHARDSUM_H
#define SH_SHARDSUM_H

#include "sh_err.h"
#include "sh_fp.h"

#include <stddef.h>
#include <stdint.h>

/* Caller-owned; start from SH_SHARDSUM_INIT (the empty shard). */
typedef struct sh_shardsum {
    uint64_t sum;      /* sum of track_sum mod 2^64 */
    uint64_t tracks;   /* tracks counted */
    uint64_t postings; /* postings counted */
} sh_shardsum;

#define SH_SHARDSUM_INIT {0, 0, 0}
#define SH_SHARDSUM_TEXT_MAX 96 /* bytes sh_shardsum_format() needs at most, with the NUL */

/* The track_sum of one track (postings in any order; not modified) into *out.
 * Errors: SH_EINVAL (NULL, empty id, negative version/fp_version), SH_ENOMEM, SH_EINTERNAL
 * (libcrypto). */
int sh_shardsum_track(const char *id, size_t id_len, int64_t version, int32_t fp_version,
                      const sh_hash *h, size_t n, uint64_t *out, sh_err *e);

/* Counts one track into s (sh_shardsum_track() then add). Errors: those of
 * sh_shardsum_track(); s is unchanged on error. */
int sh_shardsum_add(sh_shardsum *s, const char *id, size_t id_len, int64_t version,
                    int32_t fp_version, const sh_hash *h, size_t n, sh_err *e);

/* Takes a track counted before out of s (the same arguments it was added with): for an edge
 * that replaces or deletes a track. Errors: those of sh_shardsum_track(), SH_EINVAL when s
 * holds fewer tracks or postings than that. */
int sh_shardsum_remove(sh_shardsum *s, const char *id, size_t id_len, int64_t version,
                       int32_t fp_version, const sh_hash *h, size_t n, sh_err *e);

/* Adds the sums of another part of the same shard (e.g. counted by another thread). */
void sh_shardsum_merge(sh_shardsum *into, const sh_shardsum *part);

/* 1 when equal (sum, tracks and postings), else 0. */
int sh_shardsum_equal(const sh_shardsum *a, const sh_shardsum *b);

/* Writes the text form into buf (size >= SH_SHARDSUM_TEXT_MAX for it to fit); returns buf. */
const char *sh_shardsum_format(const sh_shardsum *s, char *buf, size_t size);

#endif
