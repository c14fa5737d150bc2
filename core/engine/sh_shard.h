/* sh_shard.h — the local shard index: the on-disk format edge caches, secondary regions and the
 * `soundhash index` / `match` commands keep. One LMDB environment (a directory holding data.mdb and
 * lock.mdb): readers never block the writer (MVCC), every change is one ACID transaction.
 *
 * Layout (format 3; named LMDB databases):
 *   post    postings of the shard's first fp_version, as "range blobs": key u32 K
 *           (MDB_INTEGERKEY) holds every posting whose hash is in (previous key, K], sorted by
 *           (hash, track, t), bit-packed: Rice-coded hash deltas, then fixed-width track and t
 *           columns, with a skip table (the hash and code offset of every 16th posting) so a
 *           lookup's probe decodes fewer than 16 codes, not the blob up to its hash
 *           (sh_shard_range.h). Blobs stay under ~1 KB (split when they grow) so a write
 *           rewrites one small node; a batch with as many new postings as the index has ranges
 *           rewrites the whole index in key order instead, so that its pages stay full.
 *   post.vN the same for each further fp_version N (at most SH_SHARD_FP_VERSIONS_MAX per shard):
 *           one posting index per fingerprint version, so during a catalogue reindex a shard
 *           holds tracks of two versions and a query of version N only meets version-N postings.
 *   ids     external track id (1..256 bytes) -> {internal track number, version, seq}; a deleted
 *           track keeps its entry with track number 0 so older versions/seqs stay refused after a
 *           delete. seq is the change-log seq of the last replicated op (0 for local puts).
 *   tracks  internal track number (u32, never reused) -> record: version, fp_version, duration,
 *           posting count, the track's sh_shardsum_track() (so a replace or delete takes it out
 *           of the shard's checksum without reading its postings), id, tenant, metadata.
 *   dead    track numbers deleted or replaced whose postings are still in `post` -> count left.
 *           Lookups ignore them; every rewrite of a range drops them and a bounded sweep per
 *           commit (plus sh_shard_vacuum()) removes the rest, so deletes cost O(1) up front and
 *           the index needs no per-track posting list (which would cost ~50 % more space).
 *   cursor  opaque key -> opaque value: the applied position of each delta source (e.g. a Kafka
 *           partition -> epoch/sequence), written in the same transaction as the changes.
 *   meta    format magic/version ("soundhash-shard 3"; 2 is read and written as
 *           it is, see sh_shard_compact), the first fp_version, counters, the
 *           live-track count per fp_version ("tracks.vN": also the list of posting indexes), and
 *           the checksum (sh_shardsum: sum, tracks, postings) of the live tracks, updated in the
 *           transaction of every commit.
 *
 * Two ways to write, not to be mixed on the same ids:
 *   - local (`soundhash index add/delete`): sh_shard_batch_put()/delete(), ordered by version
 *     (SH_SHARD_VERSION_NEXT = one more than stored);
 *   - replicated (an edge applying index deltas and snapshot chunks): sh_shard_batch_apply(),
 *     ordered by the op's change-log seq, the apply key; the edge puts its (epoch, position) for
 *     the shard in the same batch with sh_shard_batch_set_cursor().
 *
 * Format 2 (range blobs without skip tables) opens read-write and answers the same; its writes
 * keep writing plain blobs, so a build from before format 3 can still open it. sh_shard_compact()
 * (and so sh_shard_repack(), `soundhash index compact`) converts it: every range is rewritten with
 * a skip table and the format record becomes 3 in the same transaction. A build from before
 * format 3 refuses a format-3 shard (SH_EUNSUPPORTED) rather than meeting blobs it cannot read.
 *
 * Format 1 (before the apply key and several fp_versions: 12-byte ids values, no checksum, one
 * posting index) is read, read-only, as a single-version shard: lookups, info, stats and cursors
 * work; a read-write open is refused with SH_EUNSUPPORTED saying so (rebuild the index to write).
 *
 * Threads: one sh_shard may be shared by many threads for lookups and reads; one batch at a time
 * writes (sh_shard_batch_begin() blocks while another batch of the same handle is committing).
 * Other processes may open the same directory (LMDB's lock file coordinates them).
 */
#ifndef SH_SHARD_H
#define SH_SHARD_H

#include "sh_dpay.h"
#include "sh_err.h"
#include "sh_fp.h"
#include "sh_match.h"
#include "sh_shardsum.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    SH_SHARD_ID_MAX = 256,        /* bytes of an external track id */
    SH_SHARD_TENANT_MAX = 128,    /* bytes of a tenant name */
    SH_SHARD_META_MAX = 64 << 10, /* bytes of a track's metadata JSON */
    SH_SHARD_CURSOR_KEY_MAX = 256,
    SH_SHARD_CURSOR_VAL_MAX = 1024,
    SH_SHARD_FP_VERSIONS_MAX = 16, /* fingerprint versions (posting indexes) one shard holds */
    SH_SHARD_FP_VERSION_MAX = 65535,
};

/* Version value meaning "one more than the current version" (CLI adds/replacements). */
#define SH_SHARD_VERSION_NEXT 0

typedef struct sh_shard_opts {
    size_t map_size; /* initial LMDB map size (virtual; the file grows as used); default 64 MiB */
    size_t map_size_max; /* growth stops here (SH_ETOOBIG); default 1 TiB */
    bool read_only;      /* open an existing shard read-only; never creates */
    bool no_create;      /* open an existing shard read-write; never creates (SH_ENOTFOUND), so
                            e.g. a delete aimed at a mistyped directory leaves nothing behind */
    int fp_version;      /* this handle's fingerprint version: a new shard's first one, the one of
                            puts without one and of sh_shard_lookup(); 0 = SH_FP_VERSION. An
                            existing shard without a posting index of it is refused
                            (SH_EUNSUPPORTED) unless this is -1 (any: the handle takes the shard's
                            first fp_version; edges, stats, delete). */
    uint32_t stop_postings; /* lookups cast no vote for a hash value that has more postings than
                            this in the shard: a "stop hash", shared by so many tracks that it
                            says little about which one a clip is from, while its votes cost the
                            most (the votes per query grow with the catalogue through them).
                            0 = SH_SHARD_STOP_POSTINGS_DEFAULT; UINT32_MAX = no cap. */
} sh_shard_opts;

/* The default cap on postings per hash value voted by a lookup (sh_shard_opts.stop_postings): no
 * cap. Measured with bench/bench_scale.sh (README, "Recognition at scale"): triplet hash values
 * rarely have more than a few postings per shard, so caps cut few votes and no lookup time. */
#define SH_SHARD_STOP_POSTINGS_DEFAULT 0xffffffffu

void sh_shard_opts_default(sh_shard_opts *o);

typedef struct sh_shard sh_shard;

/* Opens (creating the directory and the shard unless read_only or no_create) the shard in `dir`.
 * Errors: SH_ENOTFOUND (read_only or no_create, and no shard there), SH_EIO (directory not
 * creatable/readable), SH_EFORMAT (the files are not an LMDB environment or not a SoundHash shard,
 * or corrupted; the message says which), SH_EUNSUPPORTED (unknown format, a format 1 shard opened
 * read-write, or no index of opts->fp_version), SH_ELMDB, SH_ENOMEM. */
int sh_shard_open(const char *dir, const sh_shard_opts *o, sh_shard **out, sh_err *e);

/* Closes; accepts NULL. No batch may be open. */
void sh_shard_free(sh_shard *s);

/* The handle's fp_version (sh_shard_opts.fp_version; the shard's first one when that was -1). */
int sh_shard_fp_version(const sh_shard *s);

/* ---- writing: batches ------------------------------------------------------------------------ */

typedef struct sh_shard_batch sh_shard_batch;

/* One track as written. Strings are copied by sh_shard_batch_put(). */
typedef struct sh_shard_track {
    const char *id;        /* required, 1..SH_SHARD_ID_MAX bytes */
    const char *tenant;    /* may be NULL */
    uint64_t version;      /* SH_SHARD_VERSION_NEXT or the producer's version (e.g. change seq) */
    int fp_version;        /* 0 = the handle's (sh_shard_fp_version()) */
    double duration_s;     /* of the audio */
    const char *meta_json; /* may be NULL; ≤ SH_SHARD_META_MAX bytes */
} sh_shard_track;

/* Starts a batch. Operations are recorded in memory and applied by sh_shard_batch_commit() in a
 * single LMDB write transaction, together with the cursors; sh_shard_batch_abort() leaves no
 * trace. `max_postings` caps the postings held by the batch (0 = 16 M): past it, put fails with
 * SH_ETOOBIG and the caller commits and starts another batch. Errors: SH_ENOMEM. */
int sh_shard_batch_begin(sh_shard *s, size_t max_postings, sh_shard_batch **out, sh_err *e);

/* Records an upsert: the track `t` with `n` postings `h` (copied). At commit it is applied only if
 * t->version is newer than the stored version of the id (a deleted id remembers its version);
 * otherwise it is counted as stale and skipped. t->fp_version 0 means the handle's
 * (sh_shard_fp_version()); another one goes to that fp_version's index (created at commit; at
 * most SH_SHARD_FP_VERSIONS_MAX per shard, past which the commit fails with SH_ETOOBIG).
 * Errors: SH_EINVAL (bad id/tenant/meta, fp_version outside 0..SH_SHARD_FP_VERSION_MAX, version
 * over INT64_MAX), SH_ETOOBIG, SH_ENOMEM. */
int sh_shard_batch_put(sh_shard_batch *b, const sh_shard_track *t, const sh_hash *h, size_t n,
                       sh_err *e);

/* Records a delete of `id` at `version` (SH_SHARD_VERSION_NEXT: whatever is stored). Applied at
 * commit if version ≥ the stored version; deleting a missing id records the version (so an older
 * upsert delivered later stays refused). Errors: SH_EINVAL, SH_ENOMEM. */
int sh_shard_batch_delete(sh_shard_batch *b, const char *id, uint64_t version, sh_err *e);

/* Records one replicated op (an index delta's or a snapshot chunk's, sh_dpay.h), keyed by
 * its change-log seq (THE APPLY KEY): at commit it applies only if op->seq is above the seq
 * stored for op->track_id (live or deleted), else it counts as stale — so redelivered, duplicated
 * and older ops are harmless, and a reindex (same version, new fp_version, higher seq) applies.
 * The track is stored with its real version and fp_version (any 1..SH_SHARD_FP_VERSION_MAX: its
 * postings go to that fp_version's index) and counted into the shard's checksum; a delete
 * remembers its seq, so an older upsert delivered after it stays out. Strings and postings are
 * copied. Do not mix with sh_shard_batch_put()/delete() on the same ids: those compare versions.
 * Errors: SH_EINVAL (seq < 1, negative version, unknown kind, fp_version < 1 on an upsert, and as
 * sh_shard_batch_put()), SH_ETOOBIG, SH_ENOMEM. */
int sh_shard_batch_apply(sh_shard_batch *b, const sh_dop *op, sh_err *e);

/* Records the applied position of a delta source, written in the same transaction: an edge
 * stores its (epoch, position) per shard here in the batch that carries the ops up to that
 * position, so a crash leaves both or neither. */
int sh_shard_batch_set_cursor(sh_shard_batch *b, const char *key, const void *val, size_t len,
                              sh_err *e);

typedef struct sh_shard_commit_stats {
    size_t upserts;        /* tracks added or replaced */
    size_t deletes;        /* tracks deleted */
    size_t stale;          /* operations skipped: not newer than what is stored */
    size_t not_found;      /* deletes of ids never seen (version recorded) */
    size_t postings_added; /* postings written */
    size_t ranges_written; /* range blobs rewritten */
    size_t resizes;        /* map growths needed */
} sh_shard_commit_stats;

/* Applies everything recorded, atomically, then frees the batch (also on failure, after which
 * nothing was applied). When the map is full it grows the map (doubling, up to map_size_max) and
 * retries. `st` may be NULL. Errors: SH_ETOOBIG (map_size_max reached or the transaction would
 * dirty more pages than LMDB allows: use smaller batches), SH_EFORMAT (corrupted range), SH_ELMDB.
 */
int sh_shard_batch_commit(sh_shard_batch *b, sh_shard_commit_stats *st, sh_err *e);

/* Discards the batch; accepts NULL. */
void sh_shard_batch_abort(sh_shard_batch *b);

/* Reads a cursor into buf (cap bytes); *len gets its length. Errors: SH_ENOTFOUND, SH_ETOOBIG
 * (cap too small; *len says how much is needed), SH_ELMDB. */
int sh_shard_get_cursor(sh_shard *s, const char *key, void *buf, size_t cap, size_t *len,
                        sh_err *e);

/* Removes every posting of deleted/replaced tracks now (walks the whole index in one
 * transaction). Commits already do this incrementally. Errors: as commit. */
int sh_shard_vacuum(sh_shard *s, sh_err *e);

/* Rewrites the posting table densely: drops dead postings and repacks the range blobs in key order
 * so LMDB pages are full (incremental commits leave them ~2/3 full); a format-2 shard becomes
 * format 3 (skip tables) in the same transaction. The freed pages stay in the
 * file for reuse; sh_shard_snapshot() afterwards gives a file of the compacted size. One
 * transaction, streaming: each index is written into a scratch table and back (the map needs room
 * for about two more copies of the largest index). Errors: SH_ETOOBIG (the map's size limit or
 * LMDB's per-transaction page limit), SH_EFORMAT, SH_ELMDB. */
int sh_shard_compact(sh_shard *s, sh_err *e);

/* ---- reading ------------------------------------------------------------------------------- */

/* Votes, into `m`, every stored posting (track, t_db) of fp_version `fp_version` whose hash equals
 * a query hash (at t_query, computed with that fingerprint version): sh_matcher_vote(m, track,
 * t_db, t_query). Postings of deleted tracks and of other fp_versions are never voted (no votes
 * when the shard holds none of fp_version), nor those of a hash value with more postings than the
 * handle's stop_postings (sh_shard_opts). Does not reset `m`. Runs in one read transaction;
 * safe from many threads at once. `*postings` (may be NULL) gets the number of votes cast.
 * While a catalogue is reindexed a shard holds two fp_versions: fingerprint the query once per
 * version sh_shard_fp_versions() lists, look each up with a matcher of that version's query
 * config and keep the best answer (track numbers are unique across versions) — every track is
 * then matchable at every moment. Errors: SH_ENOMEM, SH_EFORMAT, SH_ELMDB. */
int sh_shard_lookup_fp(sh_shard *s, int fp_version, const sh_hash *q, size_t n, sh_matcher *m,
                       size_t *postings, sh_err *e);

/* Sorts q[0..n) into the order a lookup works in (by hash, then t). A lookup given hashes in
 * that order uses them as they are; otherwise it sorts a copy, every time: a caller looking one
 * query up in several shards sorts it once here (at 8 shards, 30 % of a lookup's instructions
 * were these repeated sorts). Errors: SH_ENOMEM. */
int sh_shard_query_sort(sh_hash *q, size_t n, sh_err *e);

/* sh_shard_lookup_fp() with the handle's fp_version (sh_shard_fp_version()). */
int sh_shard_lookup(sh_shard *s, const sh_hash *q, size_t n, sh_matcher *m, size_t *postings,
                    sh_err *e);

/* The fp_versions of the live tracks, ascending, into out[0..*n) (cap entries; at most
 * SH_SHARD_FP_VERSIONS_MAX). Errors: SH_ETOOBIG (cap too small), SH_EINVAL, SH_ELMDB. */
int sh_shard_fp_versions(sh_shard *s, int *out, size_t cap, size_t *n, sh_err *e);

/* The shard's checksum (sh_shardsum.h: live tracks' ids, versions, fp_versions, postings) as
 * of the last commit: kept up to date by every commit in the same transaction, so this is O(1).
 * Errors: SH_EUNSUPPORTED (a format 1 shard keeps none), SH_ELMDB. */
int sh_shard_checksum(sh_shard *s, sh_shardsum *out, sh_err *e);

/* What is stored about a track. The strings point into `buf` (caller-provided, `cap` bytes:
 * SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3 always suffices). */
typedef struct sh_shard_info {
    uint32_t track; /* internal number */
    uint64_t version;
    int fp_version;
    double duration_s;
    uint32_t postings;
    const char *id;
    const char *tenant;    /* "" when none */
    const char *meta_json; /* "" when none */
} sh_shard_info;

/* By internal number (as reported by the matcher) or by external id.
 * Errors: SH_ENOTFOUND (unknown or deleted), SH_ETOOBIG (buf too small), SH_EFORMAT, SH_ELMDB. */
int sh_shard_info_by_track(sh_shard *s, uint32_t track, sh_shard_info *out, char *buf, size_t cap,
                           sh_err *e);
int sh_shard_info_by_id(sh_shard *s, const char *id, sh_shard_info *out, char *buf, size_t cap,
                        sh_err *e);

typedef struct sh_shard_stats {
    uint64_t tracks;          /* live tracks */
    uint64_t postings;        /* postings of live tracks */
    uint64_t dead_postings;   /* postings of deleted tracks not yet vacuumed */
    uint64_t ranges;          /* range blobs */
    uint64_t file_bytes;      /* size of data.mdb */
    uint64_t used_bytes;      /* pages in use (file minus LMDB's free list) */
    double audio_s;           /* sum of live track durations */
    double bytes_per_posting; /* file_bytes / postings (0 when empty) */
    int fp_version;           /* the handle's (sh_shard_fp_versions() lists those present) */
} sh_shard_stats;

int sh_shard_stats_get(sh_shard *s, sh_shard_stats *out, sh_err *e);

/* Writes a compacted copy of the shard into `dir` (which must exist and be empty): the snapshot a
 * new edge node bootstraps from. Errors: SH_EIO, SH_ELMDB. */
int sh_shard_snapshot(sh_shard *s, const char *dir, sh_err *e);

/* Compacts the shard in `dir` and gives the space back to the file system: sh_shard_compact(),
 * then a compacted copy written to DIR/.repack.tmp/ and renamed over DIR/data.mdb (fsync'd; a
 * crash leaves either the old or the new file, and a stale .repack.tmp that the next run removes).
 *
 * Safety: a process holding the old data file open would go on committing into the replaced
 * file (a writer), or would share lock.mdb, whose lock table is re-initialised for the new file,
 * while reading the old one (a reader), so the swap requires that no other process has the shard
 * open, reader or writer (LMDB cannot tell them apart; a process that opened the shard with
 * MDB_NOLOCK is invisible: none does): every LMDB user holds a shared lock on byte 0 of
 * DIR/lock.mdb while the environment is open, and this takes it exclusively for the whole
 * repack. Processes that
 * open the shard meanwhile block in their open until the new file is in place (so an `index add`
 * started during a repack waits, then writes into the new file). While another process has it
 * open this polls every 50 ms for up to `wait_ms` (0: no wait), then fails with SH_ETRANSIENT
 * naming one such process. The calling process must not have the shard open itself.
 *
 * `before`/`after` (may be NULL) get the stats of the shard before and after.
 * Errors: SH_ENOTFOUND (no shard in dir), SH_ETRANSIENT (shard open elsewhere), SH_EIO, and those
 * of sh_shard_open() and sh_shard_compact(). */
int sh_shard_repack(const char *dir, const sh_shard_opts *o, int wait_ms, sh_shard_stats *before,
                    sh_shard_stats *after, sh_err *e);

#endif
