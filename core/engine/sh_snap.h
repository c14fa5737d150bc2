/* sh_snap.h — shard snapshots: the state of one shard at a known (epoch, seq) as one checksummed
 * stream, written and read in bounded memory. The replicator serves it (GET /v1/snapshots/{shard})
 * and writes it to files; a new or lagging subscriber bootstraps from it and then applies the
 * delta stream from seq + 1 on.
 *
 * Stream format (version 1; varints are LEB128, see sh_varint.h):
 *   header   "SHSN", u8 1 (format version; others: SH_EUNSUPPORTED), u8 flags (0),
 *            varint shard, varint nshards, varint epoch, varint seq (the last change-log seq the
 *            snapshot reflects: the subscriber's position once it is applied),
 *            varint nfp (1..SH_SNAP_FPV_MAX) and nfp varints: the fp_versions present,
 *            8 bytes: SHA-256 of the header bytes before them, first 8 bytes
 *   chunks   any number of: u8 'C', varint raw_size, varint compressed length, then a payload of
 *            sh_dpay.h (codec ZSTD, flag SH_DPAY_UNORDERED, its own checksum) holding UPSERT ops
 *            only, each of a track of this shard (sh_shard_of), with seq <= the header's seq and
 *            an fp_version listed in the header. Every active track of the shard appears once.
 *   trailer  u8 'E', varint total ops, varint total postings (sums over the chunks),
 *            8 bytes: SHA-256 of every stream byte before them, first 8 bytes.
 *
 * A reader must treat what it reads as provisional until sh_snap_reader_next() returns 0 (the
 * trailer's totals and checksum verified): apply chunks into a staging copy and publish it only
 * then. A stream that ends early is SH_EFORMAT; any checksum that does not match is SH_ECHECKSUM.
 */
#ifndef SH_SNAP_H
#define SH_SNAP_H

#include "sh_dpay.h"
#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

#define SH_SNAP_VERSION 1
#define SH_SNAP_FPV_MAX 16

/* What a snapshot is of. */
typedef struct sh_snap_info {
    uint32_t shard;   /* < nshards */
    uint32_t nshards; /* 1..SH_SHARDS_MAX (sh_shardmap.h) */
    int64_t epoch;    /* >= 0 */
    int64_t seq;      /* >= 0: the last change-log seq reflected */
    size_t nfp;       /* 1..SH_SNAP_FPV_MAX */
    int32_t fp_versions[SH_SNAP_FPV_MAX]; /* distinct, >= 0 */
} sh_snap_info;

/* Output callback: writes all len bytes; returns 0 or a negative SH_E* code (then the writer
 * fails with that code). */
typedef int (*sh_snap_write_fn)(void *ctx, const void *buf, size_t len);

/* Input callback: reads up to len (> 0) bytes into buf; returns the count (> 0), 0 at the end of
 * the stream, or a negative SH_E* code. */
typedef long (*sh_snap_read_fn)(void *ctx, void *buf, size_t len);

/* Ready-made callbacks over a file descriptor; ctx points to an int fd. They retry EINTR and
 * short writes; errors are SH_EIO. */
int sh_snap_fd_write(void *ctx, const void *buf, size_t len);
long sh_snap_fd_read(void *ctx, void *buf, size_t len);

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct sh_snap_writer sh_snap_writer;

/* Starts a snapshot stream: checks *info and writes the header through fn(ctx). chunk_raw is the
 * raw size a chunk aims at (0 = 1 MiB; at most the dpay raw cap): the writer holds about one
 * chunk of ops in memory. Errors: SH_EINVAL (bad info), SH_ENOMEM, or the callback's code. */
int sh_snap_writer_new(const sh_snap_info *info, size_t chunk_raw, sh_snap_write_fn fn, void *ctx,
                       sh_snap_writer **out, sh_err *e);

/* Adds one track (copied): an UPSERT of a track of this shard with seq <= info->seq and a listed
 * fp_version; ops may come in any order. Writes a chunk when enough is buffered.
 * Errors: SH_EINVAL (not such an op), those of sh_dpay_builder_add(), the callback's code. After
 * a callback error the writer only accepts sh_snap_writer_free(). */
int sh_snap_writer_add(sh_snap_writer *w, const sh_dop *op, sh_err *e);

/* Writes the last chunk and the trailer. Errors: SH_EINVAL (called twice), SH_ENOMEM, SH_EZSTD,
 * the callback's code. */
int sh_snap_writer_finish(sh_snap_writer *w, sh_err *e);

/* Tracks and postings added so far. */
uint64_t sh_snap_writer_ops(const sh_snap_writer *w);
uint64_t sh_snap_writer_postings(const sh_snap_writer *w);

/* Frees the writer (an unfinished stream stays unfinished: readers will reject it); accepts
 * NULL. */
void sh_snap_writer_free(sh_snap_writer *w);

/* ---- reading ------------------------------------------------------------------------------- */

typedef struct sh_snap_reader sh_snap_reader;

/* Reading caps; zero fields take the defaults in brackets. */
typedef struct sh_snap_caps {
    sh_dpay_caps chunk;      /* per chunk [sh_dpay_caps_default(), allow_unordered forced on] */
    uint64_t max_ops;        /* tracks in the whole snapshot [1 << 26] */
    uint64_t max_postings;   /* postings in the whole snapshot [1 << 36] */
} sh_snap_caps;

/* Reads and verifies the header through fn(ctx). caps NULL = defaults. Memory stays bounded by
 * one chunk (caps.chunk.max_raw plus its compressed size) whatever the stream's length.
 * Errors: SH_EFORMAT (not a snapshot, truncated, bad field), SH_EUNSUPPORTED (format version or
 * flags), SH_ECHECKSUM, SH_ENOMEM, the callback's code. */
int sh_snap_reader_new(sh_snap_read_fn fn, void *ctx, const sh_snap_caps *caps,
                       sh_snap_reader **out, sh_err *e);

/* The header; owned by r. */
const sh_snap_info *sh_snap_reader_info(const sh_snap_reader *r);

/* Reads the next chunk. Returns 1 with *chunk set (owned by r, valid until the next call or
 * free), 0 when the trailer was read and verified (the snapshot is complete and may be used),
 * or a negative code: SH_EFORMAT (truncated stream, bad tag or length, an op that is not an
 * upsert of this shard at or below the header's seq with a listed fp_version, totals that
 * disagree), SH_ECHECKSUM (a chunk's or the stream's checksum), SH_ETOOBIG (caps), SH_ENOMEM, the
 * callback's code, and those of sh_dpay_decode(). Once it has returned 0 or an error, it keeps
 * returning that. */
int sh_snap_reader_next(sh_snap_reader *r, const sh_dpay **chunk, sh_err *e);

/* Frees the reader (and the last chunk); accepts NULL. */
void sh_snap_reader_free(sh_snap_reader *r);

#endif
