/* sh_dpay.h — the index-delta PAYLOAD codec: the ops of one IndexDelta envelope (and of one
 * snapshot chunk, sh_snap.h), checksummed and zstd-compressed.
 *
 * An op is one committed change of one track, taken from the primary's change log:
 *   seq         the change-log seq of the change: THE APPLY KEY. A subscriber applies an op only
 *               if seq > the position it holds for the shard, and then holds seq. Ops in a payload
 *               are in strictly increasing seq order (the builder refuses anything else, the
 *               decoder too) unless the payload is flagged SH_DPAY_UNORDERED (below). version/fp_version are data, not the key: a reindex keeps the
 *               version and raises fp_version, and a re-upload may be read after its reindex.
 *   kind        SH_DOP_UPSERT (the track's whole current state: replaces what the subscriber has)
 *               or SH_DOP_DELETE (tombstone: the track is gone; no postings).
 *   track_id    the external id, 1..SH_DPAY_ID_MAX bytes, no NUL. Its shard is sh_shard_of().
 *   tenant      0..SH_DPAY_TENANT_MAX bytes, no NUL.
 *   version, fp_version, duration_s, metadata (JSON text 0..SH_DPAY_META_MAX bytes, no NUL;
 *               "" = none), postings (upserts only: the track's (hash, t) multiset).
 *
 * Wire format (version 1; integers are LEB128 varints unless said otherwise):
 *   The envelope's payload is ONE zstd frame (codec ZSTD; the frame states its content size,
 *   which must equal the envelope's raw_size) or the raw bytes themselves (codec NONE). Raw:
 *     u8 'D' magic, u8 1 format version (a decoder refuses versions it does not know:
 *     SH_EUNSUPPORTED), u8 flags (SH_DPAY_UNORDERED or 0; others refused: SH_EUNSUPPORTED),
 *     varint nops, varint total postings,
 *     nops op records (see sh_dpay.c: seq as a zigzag delta from the previous op, kind, lengths and
 *     bytes of the strings, version, fp_version, duration as IEEE-754 binary64 bits, posting
 *     count), then the postings of all upserts in op order in the column layout of sh_dpay.c
 *     (sorted by (t, hash), grouped by anchor time, fields of the triplet hash coded against
 *     earlier hashes of the same anchor: ~5.4 bytes per posting before zstd, whose entropy
 *     coder takes that to 2.1-2.6 on real fingerprints), then
 *     8 bytes: the first 8 bytes of SHA-256 over every raw byte before them.
 *   Encoding is deterministic: the same ops (postings in any order) give the same bytes.
 *
 * Decoding is hostile-input safe: every count and length is checked against the caller's caps
 * before anything is allocated; the decompressor's output is bounded by the declared raw size
 * (itself capped); the checksum is verified before any op is parsed; anything inconsistent fails
 * the whole payload — there is never a partial result. A decode holds at most about 9 times
 * the raw size (raw bytes, postings, strings, op table) while it runs.
 */
#ifndef SH_DPAY_H
#define SH_DPAY_H

#include "sh_err.h"
#include "sh_fp.h"

#include <stddef.h>
#include <stdint.h>

#define SH_DPAY_MAGIC 'D'
#define SH_DPAY_VERSION 1

/* Payload codecs; the values are the IndexDelta envelope's `codec` enum (NONE = 0, ZSTD = 1). */
#define SH_DPAY_CODEC_NONE 0
#define SH_DPAY_CODEC_ZSTD 1

/* Payload flags (on the wire). UNORDERED: ops may come in any seq order (snapshot chunks). */
#define SH_DPAY_UNORDERED 0x01u

/* Op kinds (values are on the wire). */
#define SH_DOP_UPSERT 1
#define SH_DOP_DELETE 2

/* Field caps (the schemas' caps for the same fields). */
#define SH_DPAY_ID_MAX 256
#define SH_DPAY_TENANT_MAX 128
#define SH_DPAY_META_MAX (64 * 1024)

/* One op. In a decoded payload every pointer points into the sh_dpay that owns it. */
typedef struct sh_dop {
    int64_t seq;              /* change-log seq, >= 1: the apply key (see above) */
    int kind;                 /* SH_DOP_UPSERT or SH_DOP_DELETE */
    const char *track_id;     /* NUL-terminated, 1..SH_DPAY_ID_MAX bytes */
    const char *tenant;       /* NUL-terminated, 0..SH_DPAY_TENANT_MAX bytes (NULL = "" on add) */
    int64_t version;          /* the track's version (>= 0) */
    int32_t fp_version;       /* fingerprint version of the postings (>= 0) */
    double duration_s;        /* finite, >= 0 */
    const char *metadata;     /* JSON text, 0..SH_DPAY_META_MAX bytes (NULL = "" on add) */
    const sh_hash *postings;  /* upserts: npostings hashes; decoded: sorted by (t, hash) */
    size_t npostings;         /* 0 for deletes */
} sh_dop;

/* Decoder caps. sh_dpay_caps_default() fills the defaults in brackets; 0 in a field = default. */
typedef struct sh_dpay_caps {
    size_t max_raw;          /* raw (decompressed) bytes [64 MiB: SH_DELTA_PAYLOAD_HARD_MAX] */
    size_t max_ops;          /* ops per payload [1 << 20] */
    size_t max_postings;     /* postings per payload, all ops [32 << 20] */
    size_t max_op_postings;  /* postings per op [8 << 20: SH_FPBLOB_MAX_POSTINGS_DEFAULT] */
    int allow_unordered;     /* decoder: accept SH_DPAY_UNORDERED payloads [0: deltas never are] */
} sh_dpay_caps;

void sh_dpay_caps_default(sh_dpay_caps *c);

/* ---- building ------------------------------------------------------------------------------ */

typedef struct sh_dpay_builder sh_dpay_builder;

/* Creates an empty builder; caps (NULL = defaults) bound what add() accepts, so every payload the
 * builder makes decodes with the same caps. flags: 0 (deltas: add() requires increasing seqs) or
 * SH_DPAY_UNORDERED (snapshot chunks). Errors: SH_EINVAL (unknown flags), SH_ENOMEM. */
int sh_dpay_builder_new(const sh_dpay_caps *caps, unsigned flags, sh_dpay_builder **out,
                        sh_err *e);

/* Appends a copy of *op (strings and postings are copied; the caller keeps its memory).
 * Errors: SH_EINVAL (seq < 1, or not above the previous op's unless UNORDERED, kind unknown, a string NULL/empty where
 * required or containing NUL, postings on a delete, negative version/fp_version, duration not
 * finite or negative), SH_ETOOBIG (a string, the op's postings or the payload's ops or postings
 * over the caps), SH_ENOMEM. On error the builder is unchanged. */
int sh_dpay_builder_add(sh_dpay_builder *b, const sh_dop *op, sh_err *e);

/* Ops added since the last finish/reset. */
size_t sh_dpay_builder_count(const sh_dpay_builder *b);

/* Postings added since the last finish/reset. */
size_t sh_dpay_builder_postings(const sh_dpay_builder *b);

/* An upper bound of the raw size the payload would have now (for batching by size). */
size_t sh_dpay_builder_raw_bound(const sh_dpay_builder *b);

/* Encodes the ops added so far (zero ops is a valid payload) with `codec` (SH_DPAY_CODEC_ZSTD or
 * SH_DPAY_CODEC_NONE) at zstd `level` (0 = 3) into a new malloc'ed *out of *out_len bytes, owned
 * by the caller (free()); *raw_size receives the raw size (the envelope's raw_size). Then the
 * builder is empty again (ready for the next payload). Errors: SH_EINVAL (codec), SH_ENOMEM,
 * SH_ETOOBIG (raw size over caps.max_raw: reset, and split the ops over several payloads), SH_EZSTD;
 * on error the ops stay in the builder. */
int sh_dpay_builder_finish(sh_dpay_builder *b, int codec, int level, uint8_t **out,
                           size_t *out_len, size_t *raw_size, sh_err *e);

/* Drops the ops added so far. */
void sh_dpay_builder_reset(sh_dpay_builder *b);

/* Frees the builder; accepts NULL. */
void sh_dpay_builder_free(sh_dpay_builder *b);

/* ---- decoding ------------------------------------------------------------------------------ */

typedef struct sh_dpay sh_dpay; /* a decoded payload: owns its ops and their strings/postings */

/* Decodes len bytes at buf, compressed with `codec`, whose raw size the envelope declares as
 * raw_size, into a new *out (free with sh_dpay_free()). caps NULL = defaults.
 * Errors: SH_EINVAL (NULL arguments, unknown codec), SH_ETOOBIG (raw_size, ops or postings over
 * the caps), SH_EFORMAT (not a zstd frame of exactly raw_size bytes, bad magic, truncated,
 * trailing bytes, an impossible count, length or value, ops not in increasing seq order, postings
 * not in canonical order), SH_EUNSUPPORTED (unknown format version or flags, SH_DPAY_UNORDERED
 * without caps->allow_unordered), SH_ECHECKSUM (the
 * raw bytes do not match their checksum), SH_ENOMEM. On error *out is NULL. */
int sh_dpay_decode(const void *buf, size_t len, int codec, size_t raw_size,
                   const sh_dpay_caps *caps, sh_dpay **out, sh_err *e);

/* Number of ops. */
size_t sh_dpay_count(const sh_dpay *d);

/* Total postings of all ops. */
size_t sh_dpay_postings(const sh_dpay *d);

/* Op i (0 <= i < count), in increasing seq order; owned by d, valid until sh_dpay_free(d). */
const sh_dop *sh_dpay_op(const sh_dpay *d, size_t i);

/* The payload's flags (SH_DPAY_UNORDERED or 0). */
unsigned sh_dpay_flags(const sh_dpay *d);

/* Frees a decoded payload; accepts NULL. */
void sh_dpay_free(sh_dpay *d);

/* ---- measuring ----------------------------------------------------------------------------- */

/* The posting columns of the format (sh_dpay.c), for the entropy bound the benchmark prints. */
#define SH_DPAY_NCOLS 9

/* Histograms of the bytes the encoder writes into each posting column. Caller-owned (it is
 * large: allocate it; zero it to start). */
typedef struct sh_dpay_stats {
    uint64_t count[SH_DPAY_NCOLS][256];
    uint64_t postings;
} sh_dpay_stats;

/* Adds the column bytes of one track's postings (any order; not modified).
 * Errors: SH_EINVAL, SH_ENOMEM. */
int sh_dpay_stats_add(sh_dpay_stats *s, const sh_hash *h, size_t n, sh_err *e);

/* The order-0 empirical entropy of the columns, in bits: sum over columns of
 * -sum_b count_b * log2(count_b / column total). An order-0 coder of each column on its own
 * cannot do better; divide by s->postings for bits per posting. */
double sh_dpay_stats_bits(const sh_dpay_stats *s);

#endif
