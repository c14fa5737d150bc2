/* sh_shard_int.h — private to the shard module; sh_shard.h is its contract. The module is
 * four files sharing the handle, the table records and the write-transaction machinery below:
 *   sh_shard.c         open/close, read transactions, lookups, info, stats, cursors, checksum
 *   sh_shard_post.c    the posting indexes, one per fp_version (names, list, opening them)
 *   sh_shard_batch.c   building a batch and applying it in one transaction (range rewrites, the
 *                      dead set, the incremental vacuum)
 *   sh_shard_repack.c  compact (every range rewritten in place), snapshot, repack (a compacted copy
 *                      swapped in for the file)
 * Functions here return 0, a positive LMDB code (MDB_NOTFOUND, MDB_CORRUPTED, ...) to be
 * translated with sh_shard_lmdb_err at the public boundary, or a negative SH_E* code whose message
 * is already set — as each says.
 */
#ifndef SH_SHARD_INT_H
#define SH_SHARD_INT_H

#include "sh_shard.h"
#include "sh_shard_range.h"
#include "sh_shardsum.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- constants ---------------------------------------------------------------------------------
 */

#define SH_SHARD_MAGIC "soundhash-shard"
/* The scratch table a big batch or a compaction rewrites a posting index into; it exists only
 * inside that write transaction (sh_shard_rewrite_index). */
#define SH_SHARD_REWRITE_DB "post.rewrite"
enum {
    SH_SHARD_FORMAT = 3,    /* range blobs may carry a skip table (sh_shard_range.h) */
    SH_SHARD_FORMAT_V2 = 2, /* read-write, plain range blobs only (sh_shard.h) */
    SH_SHARD_FORMAT_V1 = 1, /* read-only: one fp_version, no seqs, no checksum (sh_shard.h) */
    /* A range blob is split when it grows past this; pieces are cut at ~3/4 of it so that the
     * next few inserts do not split again. Kept well under LMDB's inline node limit (~2 KB for
     * 4 KB pages): bigger values would go to whole overflow pages. */
    SH_RANGE_BLOB_MAX = 1024,
    SH_RANGE_BLOB_TARGET = SH_RANGE_BLOB_MAX * 3 / 4,
    /* Ranges the incremental vacuum visits per commit while dead postings remain. */
    SH_VACUUM_RANGES_MIN = 64,
    SH_BATCH_POSTINGS_DEFAULT = 16 << 20,
    SH_RETRIES_MAX = 40,
};

/* ---- handle ------------------------------------------------------------------------------------
 */

/* The posting index of one fp_version: LMDB database "post" for the shard's first fp_version
 * (the only one a format-1 shard has), "post.v<N>" for the others. */
typedef struct post_dbi {
    int fp_version;
    MDB_dbi dbi;
} post_dbi;

struct sh_shard {
    MDB_env *env;
    MDB_dbi ids, tracks, dead, cursor, meta;
    /* Posting indexes this handle has opened. Read under map_lock (shared); appended under
     * write_lock and map_lock (exclusive), only after the transaction that opened them
     * committed. */
    post_dbi posts[SH_SHARD_FP_VERSIONS_MAX];
    size_t nposts;
    char *dir;
    size_t map_size, map_max;
    int fp_version;  /* this handle's default (puts without one, sh_shard_lookup) */
    uint32_t stop_postings; /* lookups skip hash values with more postings (sh_shard_opts) */
    int base_fp;     /* the shard's first fp_version: its index is "post" */
    int format;      /* SH_SHARD_FORMAT, SH_SHARD_FORMAT_V2 or SH_SHARD_FORMAT_V1 (then
                        read_only) */
    bool read_only;
    bool no_create;
    /* Growing the map is only allowed with no transaction active in this process: readers hold
     * this lock shared, the resize holds it exclusively. */
    pthread_rwlock_t map_lock;
    pthread_mutex_t write_lock; /* one committing batch at a time */
};

/* ---- meta counters -----------------------------------------------------------------------------
 */

typedef struct shard_counters {
    uint64_t postings, dead_postings, audio_ms;
    uint32_t next_track, vacuum_pos;
    int vacuum_fp;  /* the posting index the incremental vacuum is in (0: the first) */
    sh_shardsum sum; /* the checksum of the live tracks (format 2) */
} shard_counters;

/* ---- dead set: sorted (track, postings left) pairs ----------------------------------------------
 */

typedef struct dead_ent {
    uint32_t track;
    uint32_t left;
    bool dirty;
} dead_ent;

typedef struct dead_set {
    dead_ent *v;
    size_t n, cap;
} dead_set;

/* ---- track records ------------------------------------------------------------------------------
 */

/* ids value: track number (0 = deleted), version and the change-log seq of the last op applied
 * (0: written by version; format 1 has no seq: 12 bytes, format 2: 20). */
typedef struct id_rec {
    uint32_t track;
    uint64_t version;
    uint64_t seq;
} id_rec;

/* tracks value: fixed header then id, tenant and meta bytes (native byte order, like LMDB).
 * Format 1 headers end before `sum` (SH_TRACK_HDR_V1 bytes). */
typedef struct track_hdr {
    uint64_t version;
    double duration_s;
    uint32_t fp_version;
    uint32_t postings;
    uint32_t meta_len;
    uint16_t id_len;
    uint16_t tenant_len;
    uint64_t sum; /* the track's sh_shardsum_track(), so a replace/delete can take it out */
} track_hdr;
#define SH_TRACK_HDR_V1 offsetof(track_hdr, sum)

/* ---- applying: one write transaction ----------------------------------------------------------
 */

/* State of one attempt at applying a batch (rebuilt from scratch when the map had to grow). */
typedef struct apply_ctx {
    sh_shard *s;
    MDB_txn *txn;
    MDB_dbi post;           /* the posting index being written */
    post_dbi opened[SH_SHARD_FP_VERSIONS_MAX]; /* opened by this transaction: published on commit */
    size_t nopened;
    shard_counters c;
    dead_set dead;
    uint32_t first_new; /* track numbers ≥ this were created by this batch */
    uint8_t *cancelled; /* per new track: replaced/deleted again within the batch */
    uint32_t *new_op;   /* per new track: index of its put op */
    size_t nnew, capnew;
    sh_posting *pend; /* new postings, sorted by (hash, track, t) */
    size_t npend;
    /* scratch for range rewrites */
    sh_posting *work;
    uint32_t *hscratch;
    uint8_t *blob, *pad;
    size_t capwork, capblob;
    sh_shard_commit_stats st;
    unsigned skip_shift; /* range blobs written: sh_range_encode's skip_shift (format 3: a skip
                            table; format 2: none, so that older builds still read the shard) */
    sh_err *e;
} apply_ctx;

static inline MDB_val mval(const void *p, size_t n)
{
    return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}


/* ---- shared between the shard's files ----------------------------------------------------------
 */

/* Translates LMDB code `rc` at the boundary into an SH_E* code with "what: ..." in `e`. */
int sh_shard_lmdb_err(sh_err *e, int rc, const char *what);

/* Writes the format record ("soundhash-shard N") of `format`. LMDB codes. */
int sh_shard_format_put(const sh_shard *s, MDB_txn *txn, int format);

/* The meta table's counters (absent keys read as 0; next_track as 1). LMDB codes. */
int sh_shard_counters_load(const sh_shard *s, MDB_txn *txn, shard_counters *c);
int sh_shard_counters_store(const sh_shard *s, MDB_txn *txn, const shard_counters *c);

/* Begins a read transaction under the shared map lock, adopting a map grown by another process;
 * sh_shard_read_end aborts it and releases the lock. SH_E* codes. */
int sh_shard_read_begin(sh_shard *s, MDB_txn **txn, sh_err *e);
void sh_shard_read_end(sh_shard *s, MDB_txn *txn);

/* The ids record of `id` (a valid id). LMDB codes (MDB_NOTFOUND, MDB_CORRUPTED). */
int sh_shard_id_get(const sh_shard *s, MDB_txn *txn, const char *id, id_rec *r);

/* Checks and copies the fixed header of a tracks value (of s's format) into *h, its size into
 * *hlen. 0 or MDB_CORRUPTED. */
int sh_shard_track_parse(const sh_shard *s, const MDB_val *v, track_hdr *h, size_t *hlen);

/* u64 values of the meta table (absent: 0). LMDB codes. */
int sh_shard_meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t *v);
int sh_shard_meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t v);

/* The meta key holding the live-track count of fp_version `fp` ("tracks.v<N>"); its presence
 * says the shard has a posting index for fp. */
void sh_shard_fp_key(char *buf, size_t cap, int fp);

/* The LMDB name of fp's posting index. */
void sh_shard_post_name(const sh_shard *s, char *buf, size_t cap, int fp);

/* The fp_versions with a posting index in the shard as `txn` sees it, ascending, and their live
 * track counts (tracks may be NULL). *n ≤ SH_SHARD_FP_VERSIONS_MAX. LMDB codes. */
int sh_shard_fp_scan(const sh_shard *s, MDB_txn *txn, int *fps, uint64_t *tracks, size_t *n);

/* The handle's posting index of fp: 0 or MDB_NOTFOUND (not opened by this handle). The caller
 * holds map_lock or write_lock. */
int sh_shard_post_find(const sh_shard *s, int fp, MDB_dbi *dbi);

/* Opens, in `txn` (which the caller commits before publishing them), the posting indexes listed in
 * the meta table that the handle lacks, into got[0..*ngot). LMDB codes. */
int sh_shard_posts_open_missing(sh_shard *s, MDB_txn *txn, post_dbi *got, size_t *ngot);

/* Adds got[0..n) to the handle's posting indexes (caller holds write_lock and map_lock
 * exclusively, or is opening the handle). */
void sh_shard_posts_publish(sh_shard *s, const post_dbi *got, size_t n);

/* Adopts posting indexes another process created since this handle opened them. Takes
 * write_lock, then map_lock: call with neither held. SH_E* codes. */
int sh_shard_posts_refresh(sh_shard *s, sh_err *e);

/* Whether the shard as `txn` sees it lists a posting index for fp. LMDB codes. */
int sh_shard_fp_listed(sh_shard *s, MDB_txn *txn, int fp, bool *listed);

/* The posting index of fp inside the write transaction of `a`, opened (created when `create`)
 * if needed. LMDB codes; SH_ETOOBIG (message in a->e) past SH_SHARD_FP_VERSIONS_MAX. */
int sh_shard_post_open(apply_ctx *a, int fp, bool create, MDB_dbi *dbi);

/* An external id of 1..SH_SHARD_ID_MAX bytes. */
bool sh_shard_valid_id(const char *id);

/* The dead table into `d` (appended, entries clean) / its dirty entries back (left 0 = removed).
 * LMDB codes or ENOMEM. */
int sh_shard_dead_load(const sh_shard *s, MDB_txn *txn, dead_set *d);
int sh_shard_dead_store(const sh_shard *s, MDB_txn *txn, const dead_set *d);

/* Decodes a stored range into a->work[*n ...], dropping postings of dead tracks (and counting
 * them off the dead set). Sets *dropped. */
int sh_shard_load_range(apply_ctx *a, uint32_t key, const MDB_val *v, size_t *n, size_t *dropped);

/* Writes sorted postings p[0..n) as ranges ending at `key` (see sh_shard_batch.c); `append` when
 * every key written is past the last existing key. */
int sh_shard_write_ranges(apply_ctx *a, uint32_t key, const sh_posting *p, size_t n, bool append);

/* Rewrites the posting index a->post in key order with the pending postings a->pend[0..npend)
 * merged in (none: a compaction) and every dead posting dropped: appended to a scratch table,
 * then appended back, so that its leaf pages are full. LMDB codes or SH_E* codes (message in
 * a->e). */
int sh_shard_rewrite_index(apply_ctx *a);

/* Runs `body` in one write transaction and commits it, holding the handle's write lock; retries
 * when the map must grow or was grown by another process. Returns an SH_E* code with `e` set.
 * `st` (may be NULL) receives the body's stats, `resizes` (may be NULL) counts map growths. */
int sh_shard_write_txn(sh_shard *s, const char *what, int (*body)(apply_ctx *a, void *arg),
                       void *arg, sh_shard_commit_stats *st, size_t *resizes, sh_err *e);

#endif
