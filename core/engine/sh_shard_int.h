/* sh_shard_int.h — private to the shard module; sh_shard.h is its contract. The module is
 * three files sharing the handle, the table records and the write-transaction machinery below:
 *   sh_shard.c         open/close, read transactions, lookups, info, stats, cursors
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

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- constants ---------------------------------------------------------------------------------
 */

#define SH_SHARD_MAGIC "soundhash-shard"
enum {
    SH_SHARD_FORMAT = 1,
    /* A range blob is split when it grows past this; pieces are cut at ~3/4 of it so that the
     * next few inserts do not split again. Kept well under LMDB's inline node limit (~2 KB for
     * 4 KB pages): bigger values would go to whole overflow pages. */
    SH_RANGE_BLOB_MAX = 1024,
    SH_RANGE_BLOB_TARGET = SH_RANGE_BLOB_MAX * 3 / 4,
    /* Ranges the incremental vacuum visits per commit while dead postings remain. */
    SH_VACUUM_RANGES_MIN = 64,
    SH_BATCH_POSTINGS_DEFAULT = 16 << 20,
    SH_COMPACT_POSTINGS_MAX = 64 << 20, /* 768 MB of postings in memory */
    SH_RETRIES_MAX = 40,
};

/* ---- handle ------------------------------------------------------------------------------------
 */

struct sh_shard {
    MDB_env *env;
    MDB_dbi post, ids, tracks, dead, cursor, meta;
    char *dir;
    size_t map_size, map_max;
    int fp_version;
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

/* ids value: track number (0 = deleted) and version. */
typedef struct id_rec {
    uint32_t track;
    uint64_t version;
} id_rec;

/* tracks value: fixed header then id, tenant and meta bytes (native byte order, like LMDB). */
typedef struct track_hdr {
    uint64_t version;
    double duration_s;
    uint32_t fp_version;
    uint32_t postings;
    uint32_t meta_len;
    uint16_t id_len;
    uint16_t tenant_len;
} track_hdr;

/* ---- applying: one write transaction ----------------------------------------------------------
 */

/* State of one attempt at applying a batch (rebuilt from scratch when the map had to grow). */
typedef struct apply_ctx {
    sh_shard *s;
    MDB_txn *txn;
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

/* The meta table's counters (absent keys read as 0; next_track as 1). LMDB codes. */
int sh_shard_counters_load(const sh_shard *s, MDB_txn *txn, shard_counters *c);
int sh_shard_counters_store(const sh_shard *s, MDB_txn *txn, const shard_counters *c);

/* Begins a read transaction under the shared map lock, adopting a map grown by another process;
 * sh_shard_read_end aborts it and releases the lock. SH_E* codes. */
int sh_shard_read_begin(sh_shard *s, MDB_txn **txn, sh_err *e);
void sh_shard_read_end(sh_shard *s, MDB_txn *txn);

/* The ids record of `id` (a valid id). LMDB codes (MDB_NOTFOUND, MDB_CORRUPTED). */
int sh_shard_id_get(const sh_shard *s, MDB_txn *txn, const char *id, id_rec *r);

/* Checks and copies the fixed header of a tracks value. 0 or MDB_CORRUPTED. */
int sh_shard_track_parse(const MDB_val *v, track_hdr *h);

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

/* Runs `body` in one write transaction and commits it, holding the handle's write lock; retries
 * when the map must grow or was grown by another process. Returns an SH_E* code with `e` set.
 * `st` (may be NULL) receives the body's stats, `resizes` (may be NULL) counts map growths. */
int sh_shard_write_txn(sh_shard *s, const char *what, int (*body)(apply_ctx *a, void *arg),
                       void *arg, sh_shard_commit_stats *st, size_t *resizes, sh_err *e);

#endif
