/* sh_primary.h — the primary region's PostgreSQL: schema migrations, versioned track writes,
 * the commit-ordered change log. (libpq; used by workers, the reindex job and the replicator; the
 * edge never calls it, so the static archive never pulls libpq into the edge.)
 *
 * Schema (created by sh_primary_migrate; see the migration texts in sh_primary.c):
 *   schema_migrations(version, name, applied_at)
 *   tracks(id, external_id UNIQUE, tenant, metadata jsonb, sha256, duration_s, source_uri,
 *          fp_version, n_hashes, version bigint, status 'active'|'deleted', created_at, updated_at)
 *   fingerprints(external_id → tracks, fp_version, n_hashes, blob bytea)   one row per track: the
 *          compressed posting blob (core/engine/sh_fpblob.h); bench/bench_primary.c measures why.
 *   change_log(seq, op 'upsert'|'delete', external_id, tenant, track_id, version, fp_version,
 *          committed_at)
 *   change_counter(id = 1, last_seq)      the single-row counter that orders the change log
 *   publication soundhash_pub FOR TABLE tracks, fingerprints, change_log (needs wal_level=logical
 *          on the server for logical decoding; see ops/postgresql.md)
 *
 * Commit order. A bigserial is NOT commit ordered across concurrent transactions (T1 takes 5, T2
 * takes 6 and commits first: a reader sees 6 before 5 and would skip 5 forever). Each write
 * transaction therefore increments the single row of change_counter as its LAST statement before
 * COMMIT: the row lock is held until commit, so change-log appends serialize on it, seqs are
 * assigned in commit order, and a rolled-back transaction rolls its increment back too. Hence:
 * seqs are gap-free (1, 2, 3, ...) and a reader that sees seq N also sees every seq < N. The price
 * is that commits of track writes are serialized (only the short tail of each transaction; the
 * upsert of the track and its blob run concurrently). Every change also NOTIFYs channel
 * "sh_changes" with the seq as payload, delivered at commit (sh_primary_wait_changes).
 *
 * Versions. Every track carries a bigint version chosen by the writer (e.g. the event's
 * submitted-at milliseconds, or an explicit version). A write or delete whose version is <= the
 * stored one changes nothing and returns SH_ESTALE: re-delivery is harmless and an older event
 * never overwrites a newer one. A delete leaves a tombstone row (status 'deleted', its version, no
 * fingerprints) so an older upsert arriving later does not resurrect the track; a newer upsert
 * does.
 *
 * Errors: SH_EINVAL (bad argument, caught before any SQL), SH_EDB (permanent: constraint,
 * malformed metadata JSON, permission, ...), SH_ETRANSIENT (retry later: connection lost or
 * refused, SQLSTATE classes 08 connection, 40 serialization/deadlock, 53 insufficient resources /
 * too many connections, 57 operator intervention incl. admin shutdown and statement timeout),
 * SH_ESTALE (version check: nothing written), SH_ENOTFOUND, SH_ENOMEM. The message in `e` carries
 * PostgreSQL's text and SQLSTATE. (The translation lives in core/runtime/sh_pgutil.h.)
 *
 * Connections. One sh_primary is one libpq connection: use it from one thread at a time (one per
 * worker thread). After SH_ETRANSIENT the next call reconnects by itself (bounded by
 * connect_timeout); nothing is cached per connection except LISTEN. All SQL that carries data uses
 * parameters (PQexecParams / PQsendQueryParams; the blob travels in binary); the only literal SQL
 * is the embedded migrations. Connection failures carry no SQLSTATE: authentication, missing
 * database/role and pg_hba rejections are SH_EDB, everything else (refused, timeout, starting up,
 * too many clients) SH_ETRANSIENT.
 */
#ifndef SH_PRIMARY_H
#define SH_PRIMARY_H

#include "sh_err.h"
#include "sh_shardsum.h"

#include <stddef.h>
#include <stdint.h>

/* Hard caps on what is accepted from callers (and hence from events). */
#define SH_PRIMARY_ID_MAX 256                   /* external_id bytes */
#define SH_PRIMARY_TENANT_MAX 128               /* tenant bytes */
#define SH_PRIMARY_META_MAX (64 * 1024)         /* metadata JSON bytes */
#define SH_PRIMARY_URI_MAX 4096                 /* source_uri bytes */
#define SH_PRIMARY_BLOB_MAX (64u * 1024 * 1024) /* fingerprint blob bytes */
#define SH_PRIMARY_LIST_MAX 10000               /* rows per list/changes call */

typedef struct sh_primary_config {
    const char *dsn;              /* libpq connection string or URI; required */
    const char *password;         /* NULL: env SOUNDHASH_DB_PASSWORD, else the first line of the file
                                     named by SOUNDHASH_DB_PASSWORD_FILE, else libpq's own PGPASSWORD /
                                     passfile / ~/.pgpass. Never put it in argv. */
    int connect_timeout_s;        /* default 5 (0 → default); bounds every (re)connect */
    int statement_timeout_ms;     /* default 30000 (0 → default); server-side per statement */
    const char *application_name; /* default "soundhash" */
    int allow_fenced;             /* 0 (default): a server fenced by a takeover (`soundhash db fence`,
                                     soundhash.fenced = on) is refused at connect with
                                     SH_ETRANSIENT; 1: connect anyway (status tools) */
} sh_primary_config;

/* Fills the defaults above (dsn = NULL). */
void sh_primary_config_default(sh_primary_config *c);

typedef struct sh_primary sh_primary;

/* Connects. Copies what it needs from `c`. Errors: SH_EINVAL (no DSN, unparsable DSN),
 * SH_ETRANSIENT (server unreachable / refused / timed out: it may come up later), SH_EDB
 * (authentication or database missing), SH_ENOMEM. On error *out is NULL. */
int sh_primary_new(const sh_primary_config *c, sh_primary **out, sh_err *e);
void sh_primary_free(sh_primary *db);

/* Checks the connection (reconnecting if needed) with a trivial query. 0 or SH_ETRANSIENT/SH_EDB.
 * The worker calls it while paused to learn when the database is back. */
int sh_primary_ping(sh_primary *db, sh_err *e);

/* Applies every migration not yet recorded in schema_migrations, each in its own transaction
 * (serialized against concurrent migrators by an advisory lock). Idempotent. If `applied` is not
 * NULL, up to `cap` newly applied versions are stored there and *n_applied says how many.
 * Returns 0 or SH_EDB / SH_ETRANSIENT. */
int sh_primary_migrate(sh_primary *db, int *applied, size_t cap, size_t *n_applied, sh_err *e);

/* Highest migration version this build knows (= the schema version after sh_primary_migrate). */
int sh_primary_schema_version(void);

/* Versions recorded in schema_migrations, ascending; up to `cap`, count in *n. */
int sh_primary_applied_versions(sh_primary *db, int *versions, size_t cap, size_t *n, sh_err *e);

/* ---- writes --------------------------------------------------------------------------------- */

/* One track and its fingerprints. Borrowed: nothing is kept after the call. */
typedef struct sh_track_write {
    const char *external_id;   /* required, 1..SH_PRIMARY_ID_MAX bytes, any bytes but NUL */
    const char *tenant;        /* required, 1..SH_PRIMARY_TENANT_MAX bytes */
    const char *metadata_json; /* NULL → {}; a JSON object/value, <= SH_PRIMARY_META_MAX
                                  (invalid JSON → SH_EDB from the server) */
    const char *sha256_hex;    /* NULL or 64 hex digits (lower/upper case) */
    const char *source_uri;    /* NULL or where the audio came from (the reindex job re-reads it) */
    double duration_s;         /* >= 0 */
    int fp_version;            /* SH_FP_VERSION the blob was computed with; >= 1 */
    int64_t version;           /* > 0; see "Versions" above (ignored when is_reindex) */
    uint32_t n_hashes;         /* postings inside the blob (for counts and stats) */
    const void *fp_blob;       /* compressed posting blob (sh_fpblob.h); stored as opaque bytes */
    size_t fp_blob_len;        /* <= SH_PRIMARY_BLOB_MAX; 0 allowed (track without hashes) */
    int is_reindex;            /* 0: a normal versioned write (upload). 1: a reindex write, see
                                  "Reindex writes" below */
    int64_t base_version;      /* is_reindex: the stored version the reindex job read; > 0 */
} sh_track_write;

/* Reindex writes (is_reindex = 1). The version names the AUDIO (an upload's submitted-at), the
 * fp_version the algorithm that fingerprinted it, so re-fingerprinting must not take a new
 * version: a reindex job that read the track at version B and a re-upload at T1 would otherwise
 * race (the old audio overwriting the new one, or the new upload refused as stale). A reindex
 * write replaces the blob, n_hashes, duration, sha256 (when given) and fp_version ONLY IF the
 * track is still active at exactly version == base_version AND its stored fp_version <
 * tw->fp_version; the version stays base_version, tenant/metadata/source_uri stay as stored, and
 * one 'upsert' change (version base_version, the new fp_version) is appended in the same
 * transaction. Otherwise (re-uploaded, deleted, unknown, or already at this fp_version — so
 * re-running the same reindex is a no-op) it is SH_ESTALE and nothing is written. A later upload
 * with a newer version replaces a reindexed track as usual. */

/* Writes the track row and its fingerprint blob and appends one 'upsert' change, all in ONE
 * transaction, if tw->version is newer than the stored version (or there is none, or a tombstone
 * older than it). Returns 0 (written; *seq_out, if not NULL, gets the change seq), SH_ESTALE
 * (stored version >= tw->version: nothing changed, *seq_out = 0 — treat as success for an
 * idempotent re-delivery), SH_EINVAL, SH_EDB, SH_ETRANSIENT. */
int sh_primary_write_track(sh_primary *db, const sh_track_write *tw, int64_t *seq_out, sh_err *e);

/* Deletes a track at `version`: in one transaction, removes its fingerprints, turns the row into a
 * tombstone (creating one if the track is unknown, so an older upsert arriving later stays out)
 * and appends one 'delete' change. `tenant` may be NULL (kept / empty for an unknown track).
 * Returns 0 (*seq_out = change seq), SH_ESTALE (stored version >= version; nothing changed),
 * SH_EINVAL, SH_EDB, SH_ETRANSIENT. */
int sh_primary_delete_track(sh_primary *db, const char *external_id, const char *tenant,
                            int64_t version, int64_t *seq_out, sh_err *e);

/* Writes n tracks pipelined (libpq pipeline mode, one round trip per 64 tracks): each track is
 * its own transaction, so each is whole or absent and one bad track does not sink the others.
 * results[i] gets what sh_primary_write_track would have returned for tws[i] (0, SH_ESTALE,
 * SH_EINVAL, SH_EDB, SH_ETRANSIENT); seqs (may be NULL) gets the change seqs (0 when nothing was
 * written). A result of 0 is only reported once the track's commit is confirmed.
 * Returns 0 when the batch ran (inspect results[]), SH_ETRANSIENT if the connection broke (tracks
 * with results[i] == 0 are committed; those whose outcome is unknown or never sent hold
 * SH_ETRANSIENT: retry them — the version check makes a retry of a committed one SH_ESTALE),
 * SH_EINVAL (n > SH_PRIMARY_LIST_MAX or NULL arrays). e describes the first failure. */
int sh_primary_write_tracks(sh_primary *db, const sh_track_write *tws, size_t n, int *results,
                            int64_t *seqs, sh_err *e);

/* ---- reads ---------------------------------------------------------------------------------- */

/* A stored track. Strings and blob are malloc'd and owned by the struct: sh_track_clear() frees
 * them (and zeroes the struct). */
typedef struct sh_track {
    int64_t id; /* internal numeric id: stable, never reused */
    char *external_id;
    char *tenant;
    char *metadata_json; /* the jsonb as text */
    char *source_uri;    /* NULL when not stored */
    char sha256_hex[65]; /* "" when not stored */
    double duration_s;
    int fp_version;
    int64_t version;
    int deleted; /* 1: tombstone */
    uint32_t n_hashes;
    int64_t created_ms, updated_ms; /* unix milliseconds */
    void *fp_blob;                  /* only with SH_PRIMARY_WITH_BLOB; NULL for tombstones */
    size_t fp_blob_len;
} sh_track;

void sh_track_clear(sh_track *t);

enum { SH_PRIMARY_WITH_BLOB = 1u << 0 };

/* Reads one track (tombstones included: check ->deleted). flags: SH_PRIMARY_WITH_BLOB to fetch
 * the fingerprint blob too. Returns 0, SH_ENOTFOUND, SH_EDB, SH_ETRANSIENT. `out` is overwritten
 * (not cleared first): pass a zeroed or cleared struct. */
int sh_primary_get_track(sh_primary *db, const char *external_id, unsigned flags, sh_track *out,
                         sh_err *e);

typedef struct sh_track_list {
    sh_track *v;
    size_t n;
} sh_track_list;

/* Frees every track and the array; zeroes the list. Accepts NULL. */
void sh_track_list_clear(sh_track_list *l);

/* Filter for the reindex job; zero-initialised = every active track from the start. */
typedef struct sh_track_filter {
    const char *tenant;   /* NULL: all tenants */
    int fp_version_below; /* 0: any; else only tracks whose fp_version < this */
    const char *after_id; /* cursor: only external_id > after_id (byte order); NULL: start */
    int include_deleted;  /* 0: active only */
    size_t limit;         /* 1..SH_PRIMARY_LIST_MAX; 0 → 1000 */
} sh_track_filter;

/* Lists tracks ordered by external_id (byte order, COLLATE "C"), without blobs. Resume by passing
 * the last external_id as after_id; an empty list means done. `out` must be zeroed; on success the
 * caller owns it (sh_track_list_clear). Returns 0, SH_EINVAL, SH_EDB, SH_ETRANSIENT. */
int sh_primary_list_tracks(sh_primary *db, const sh_track_filter *f, sh_track_list *out, sh_err *e);

/* Counts the tracks `f` selects (f->limit is ignored; NULL = every active track) into *n, in one
 * statement: with f->after_id set, how many a paging walk from that cursor has left. Returns 0,
 * SH_EINVAL, SH_EDB, SH_ETRANSIENT; *n is 0 on error. */
int sh_primary_count_tracks(sh_primary *db, const sh_track_filter *f, int64_t *n, sh_err *e);

/* ---- change log (replicator) ------------------------------------------------------------------
 */

enum sh_change_op { SH_CHANGE_UPSERT = 1, SH_CHANGE_DELETE = 2 };

typedef struct sh_change {
    int64_t seq;
    int op;            /* enum sh_change_op */
    char *external_id; /* owned */
    char *tenant;      /* owned */
    int64_t track_id;  /* tracks.id */
    int64_t version;   /* the version this change wrote */
    int fp_version;
    int64_t committed_ms; /* clock at the append, just before commit (unix ms) */
    /* superseded = 1 when the track's current state is not the one this change wrote: for an
     * upsert, the track is deleted or at another (version, fp_version) — a reindex keeps the
     * version and raises the fp_version; for a delete, the track was re-uploaded. A later change
     * in the log then carries the newer state. With SH_PRIMARY_WITH_BLOB, an upsert that is not
     * superseded comes with the track's blob, metadata and duration, read in the same snapshot. */
    int superseded;
    uint32_t n_hashes;
    void *fp_blob; /* owned; NULL unless fetched */
    size_t fp_blob_len;
    char *metadata_json; /* owned; the jsonb as text for a current upsert, else NULL */
    double duration_s;   /* a current upsert's duration, else 0 */
} sh_change;

typedef struct sh_change_list {
    sh_change *v;
    size_t n;
} sh_change_list;

void sh_change_list_clear(sh_change_list *l);

/* Changes with seq > after_seq in seq order (= commit order, gap-free), at most `limit`
 * (1..SH_PRIMARY_LIST_MAX; 0 → 1000). flags: SH_PRIMARY_WITH_BLOB. `out` must be zeroed; the
 * caller owns it afterwards. Returns 0, SH_EINVAL, SH_EDB, SH_ETRANSIENT. */
int sh_primary_changes_since(sh_primary *db, int64_t after_seq, size_t limit, unsigned flags,
                             sh_change_list *out, sh_err *e);

/* Blocks until a change newer than the last one seen may exist (a NOTIFY on "sh_changes" arrives)
 * or `timeout_ms` elapses. Returns 0 (notified), SH_ETIMEOUT, SH_ETRANSIENT. The first call
 * LISTENs; callers still poll with sh_primary_changes_since (notifications are a hint). */
int sh_primary_wait_changes(sh_primary *db, int timeout_ms, sh_err *e);

/* ---- replication (the replicator; sh_primary_repl.c) -------------------------------------
 */

/* The replication epoch (table replication_epoch, migration 5): *epoch >= 1 and the change-log
 * seq its delta streams start after. Errors: SH_EDB (e.g. not migrated), SH_ETRANSIENT. */
int sh_primary_replication_get(sh_primary *db, int64_t *epoch, int64_t *start_seq, sh_err *e);

/* The primary's last change-log seq (0 when empty), one cheap statement. */
int sh_primary_last_seq(sh_primary *db, int64_t *seq, sh_err *e);

/* A consistent read of every active track with its blob (for snapshots). begin opens a
 * REPEATABLE READ, READ ONLY transaction on this connection and sets *seq to the change-log seq
 * it reflects (every change <= *seq is in it, none after); next fetches up to `limit`
 * (1..SH_PRIMARY_LIST_MAX) tracks ordered by external_id into `out` (zeroed; caller owns it; an
 * empty list means done); end closes the transaction (always call it after a successful begin).
 * No other call may use this connection in between. Errors: SH_EDB, SH_ETRANSIENT, SH_EINVAL,
 * SH_ENOMEM. */
int sh_primary_snap_begin(sh_primary *db, int64_t *seq, sh_err *e);
int sh_primary_snap_next(sh_primary *db, size_t limit, sh_track_list *out, sh_err *e);
/* Inside a snapshot read (after begin, before the first next): the distinct fp_versions of the
 * active tracks, ascending, up to `cap` into v; *n gets how many there are (may exceed cap).
 * Errors: SH_EDB, SH_ETRANSIENT. */
int sh_primary_snap_fp_versions(sh_primary *db, int32_t *v, size_t cap, size_t *n, sh_err *e);
void sh_primary_snap_end(sh_primary *db);

/* Each shard's checksum (sh_shardsum.h) of the active tracks, from one consistent snapshot read
 * (the calls above): sums[0..nshards) are reset first, *seq gets the seq they reflect. The
 * definition verify and the tests compare edges with — one loop, not one per tool. `each` (may be
 * NULL) sees every track with its shard, e.g. to hash fields the checksum leaves out.
 * Errors: those of the snapshot read, SH_EFORMAT (a stored blob that does not decode). */
typedef void (*sh_primary_track_fn)(const sh_track *t, int shard, void *ud);
int sh_primary_shard_sums(sh_primary *db, int nshards, sh_shardsum *sums, int64_t *seq,
                          sh_primary_track_fn each, void *ud, sh_err *e);

/* Change-log retention: in one transaction deletes every change with seq <= upto_seq and every
 * tombstone older than tombstone_age_s whose delete is no longer in the log. *changes and
 * *tombstones (may be NULL) get the counts. Needs DELETE on change_log and tracks (not the
 * replicator's read-only role). Errors: SH_EINVAL, SH_EDB, SH_ETRANSIENT. */
int sh_primary_prune(sh_primary *db, int64_t upto_seq, int64_t tombstone_age_s, int64_t *changes,
                     int64_t *tombstones, sh_err *e);

/* ---- takeover (sh_primary_takeover.c; ops/takeover.sh) ------------------------------------- */

#define SH_PRIMARY_TOPIC_MAX 249   /* Kafka's limit on topic names */
#define SH_PRIMARY_OFFSETS_MAX 4096 /* partitions per save/load */

/* A consumer group's committed position in one partition: the next offset to read. */
typedef struct sh_group_offset {
    char topic[SH_PRIMARY_TOPIC_MAX + 1];
    int32_t partition;
    int64_t next_offset;
} sh_group_offset;

/* Records, for consumer group `group`, the offsets it commits to Kafka (table consumer_offsets,
 * migration 6), in one statement. Call it only once every event below each next_offset is
 * committed in this database: then any server that replayed the row (a follower) holds those
 * writes too, and the group may safely rewind to the row after a takeover. Topics must be Kafka
 * names ([a-zA-Z0-9._-], <= 249 bytes). Errors: SH_EINVAL (bad group/topic/partition/offset or
 * n > SH_PRIMARY_OFFSETS_MAX), SH_ENOMEM, SH_EDB, SH_ETRANSIENT. */
int sh_primary_offsets_save(sh_primary *db, const char *group, const sh_group_offset *v, size_t n,
                            sh_err *e);

/* The offsets recorded for `group`, ordered by topic and partition: up to cap into v, count in *n.
 * Errors: SH_EINVAL, SH_ETOOBIG (more than cap rows), SH_EDB, SH_ETRANSIENT. */
int sh_primary_offsets_load(sh_primary *db, const char *group, sh_group_offset *v, size_t cap,
                            size_t *n, sh_err *e);

/* The server's replication role and lag, one statement. */
typedef struct sh_primary_role {
    int follower;           /* in recovery: a standby replaying a primary's WAL */
    int fenced;             /* soundhash.fenced = on (connect with allow_fenced to see it) */
    int read_only;          /* default_transaction_read_only */
    int64_t timeline;       /* WAL timeline (a promotion starts a new one) */
    int64_t lag_bytes;      /* follower: WAL received but not yet replayed */
    double lag_s;           /* follower: now - last replayed commit while behind, else 0 */
    int64_t replay_ms;      /* follower: last replayed commit (unix ms), 0: none yet */
    int64_t n_followers;    /* primary: streaming followers (pg_stat_replication) */
    int64_t followers_lag_bytes; /* primary: the furthest follower's unreplayed WAL */
    double followers_lag_s; /* primary: the largest replay_lag (flush here → replayed there) */
} sh_primary_role;

/* Fills `out`. pg_stat_replication shows lag only to superusers and pg_monitor members (else the
 * follower fields read 0). Errors: SH_EDB, SH_ETRANSIENT. */
int sh_primary_role_get(sh_primary *db, sh_primary_role *out, sh_err *e);

/* ---- counts (tests, status, metrics) ------------------------------------------------------- */

typedef struct sh_primary_counts {
    int64_t tracks_active;
    int64_t tracks_deleted;   /* tombstones */
    int64_t fingerprint_rows; /* = tracks with a blob */
    int64_t hashes;           /* sum of n_hashes over fingerprint rows */
    int64_t changes;          /* rows in change_log */
    int64_t last_seq;         /* change_counter.last_seq (0 when empty) */
} sh_primary_counts;

int sh_primary_counts_get(sh_primary *db, sh_primary_counts *out, sh_err *e);

/* Checks that `dsn` parses as a libpq connection string or URI, without connecting (a bare word
 * such as "not_a_dsn" does not). Lets a program reject a malformed --dsn as a usage error before
 * it starts anything; sh_primary_new() applies the same check.
 * Returns 0, or SH_EINVAL ("postgres: bad DSN: <libpq's reason>"; no DSN at all is SH_EINVAL too),
 * or SH_ENOMEM. */
int sh_primary_dsn_check(const char *dsn, sh_err *e);

#endif
