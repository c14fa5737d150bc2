/* edge.h — `soundhash edge`: index deltas → local LMDB shards (format 2) → /v1/match over HTTP.
 *
 * The moving parts (one folder; depends on core and schemas only — never on the primary's code):
 *   cmd_edge.c   options, start-up, tear-down
 *   apply.c      the loop: one Kafka consumer assigned the held partitions (no group); each delta
 *                applied with the shard's new cursor in ONE LMDB transaction; gaps, epoch changes,
 *                empty shards and offsets Kafka no longer holds bootstrap the shard from a snapshot
 *   bootstrap.c  a snapshot (HTTP or file) applied into a staging shard, verified whole, swapped in
 *   api.c        routes: /health, /ready, /v1/shards, /metrics and POST /v1/match (match.c)
 *   match.c      POST /v1/match: audio or client hashes (sh_qhash) → lookups over every
 *                fingerprint version a held shard holds → one merged, ranked answer
 *
 * Threads: the main thread applies (the only writer); the HTTP pool reads. A shard's handle is
 * replaced only under its write lock (a bootstrap's swap); lookups hold the read lock, so readers
 * never see half a delta (LMDB MVCC) nor half a bootstrap (the swap is a rename of a complete
 * directory).
 *
 * Cursor (key "edge" in each shard, written with the ops it covers): "1 EPOCH POSITION OFFSET
 * CREATED_MS" — the delta stream's epoch, the last change-log seq applied, the Kafka offset of the
 * delta that brought it (-1 after a bootstrap: read the partition from its beginning) and that
 * delta's created_at (for the lag after a restart).
 */
#ifndef SH_EDGE_H
#define SH_EDGE_H

#include "sh_err.h"
#include "sh_http.h"
#include "sh_metrics.h"
#include "sh_opt.h"
#include "sh_pool.h"
#include "sh_recognize.h"
#include "sh_schema.h"
#include "sh_shard.h"
#include "sh_signal.h"
#include "upstream.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct ed_config {
    char *brokers;
    char *data;
    char *shards;
    char *listen;
    char *region;
    char *snapshot_source;
    char *topic;
    char *token_file;
    char *upstream;            /* "" = none */
    char *upstream_token_file;
    char *snapshot_token_file; /* bearer token sent to a --snapshot-source URL */
    long upstream_timeout_ms;
    sh_strlist kafka_props;
    long lag_threshold_ms;   /* /ready fails when a shard's last delta is older */
    long connect_timeout_s;
    size_t max_body;         /* POST /v1/match body cap */
    long max_clip_s;         /* longest clip decoded */
    long http_threads;
    long match_threads;    /* threads one match request looks its shards up on (1: the HTTP
                              thread alone; <1 counts as 1); the helpers are one pool shared by
                              every request */
    long request_timeout_s;
    long max_conns;        /* HTTP connections, all clients */
    long max_conns_per_ip; /* HTTP connections from one address; 0: no limit */
    size_t snapshot_max;     /* bytes of one downloaded snapshot */
    long snapshot_timeout_s;
    long snapshot_confirm_s; /* a delta's newer epoch or gap the source contradicts this long:
                                the delta is rejected (apply.c) */
} ed_config;

/* One held shard. `lock` guards `s` (the handle) against the bootstrap's swap. The atomics are
 * written by the applier and read by HTTP threads. */
typedef struct ed_shard {
    int n;                     /* shard number = partition */
    char dir[4096];            /* DATA/shard-N */
    pthread_rwlock_t lock;
    sh_shard *s;
    _Atomic int64_t epoch;
    _Atomic int64_t position;  /* last change-log seq applied; -1: not loaded */
    _Atomic int64_t created_ms;/* created_at of the last delta applied (0: none yet) */
    _Atomic bool caught_up;    /* every message Kafka holds of the partition is handled (then the
                                  lag is 0: an idle primary publishes no heartbeats) */
    int64_t offset;            /* Kafka offset of the last delta handled; -1: none */
    _Atomic bool need_bootstrap;
    int64_t floor_epoch;       /* applier only: the oldest snapshot (epoch, seq) the pending */
    int64_t floor_seq;         /* bootstrap may take (ed_bootstrap); -1 -1: any */
    int64_t claim_offset;      /* applier only: Kafka offset of the delta that asked for the
                                  pending bootstrap (a newer epoch, a gap; apply.c's
                                  claim_unconfirmed); -1: none */
    bool claim_contradicted;   /* the snapshot source has answered older than that delta's claim, */
    double claim_since_ms;     /* first at this monotonic time */
    sh_series *m_position, *m_bytes, *m_tracks;
} ed_shard;

typedef struct ed_metrics {
    sh_metrics *reg;
    sh_series *deltas, *ops_applied, *ops_skipped, *bootstraps, *gaps, *errors;
    sh_series *apply_lag, *match_hist, *matches, *no_matches, *bad_requests;
    sh_series *req_audio, *req_json, *req_binary; /* match requests by body kind */
    sh_series *ans_local, *ans_upstream, *ans_none; /* who gave the best answer (hit rate) */
    sh_metric *f_pos, *f_bytes, *f_tracks, *f_requests;
    sh_metric *f_rejected; /* soundhash_edge_rejected_total{input,reason}: never applied */
} ed_metrics;

/* The fingerprint versions this build makes and compares (sh_fp_config_for_version), ascending. */
enum { ED_FPV_N = 3 };
extern const int ed_fpv[ED_FPV_N];

/* Lanes of one match request at most (ed_config.match_threads is clamped to it). */
enum { ED_LANES_MAX = 16 };

/* One HTTP thread's recognizers: r[l][i] fingerprints and ranks with version ed_fpv[i]'s query
 * config on lane l (lane 0: the HTTP thread, which also fingerprints audio; lanes 1..: the match
 * pool's threads while they work for this request). A request holds a slot for its whole
 * lookup. */
typedef struct ed_slot {
    sh_recognizer *r[ED_LANES_MAX][ED_FPV_N];
} ed_slot;

typedef struct ed {
    ed_config cfg;
    char *token;       /* bearer token for the /v1/ routes, or NULL */
    char *up_token;    /* bearer token sent to --upstream, or NULL */
    char *snap_token;  /* bearer token sent to the snapshot source, or NULL */
    ed_upstream *up;   /* the --upstream client, or NULL */
    char origin[ED_UP_ORIGIN_LEN + 1]; /* this process's random id (X-SoundHash-Origin) */
    int nshards;       /* partitions of the topic */
    ed_shard *held;
    size_t nheld;
    rd_kafka_t *consumer;
    sh_registry *reg;
    sh_schema_limits lim;
    ed_metrics m;
    sh_http *http;
    /* Recognizer slots, one per HTTP thread (FFTW planning is done once, at start). */
    pthread_mutex_t pool_lock;
    ed_slot *slots;
    ed_slot **pool; /* the free ones: pool[0..nfree) */
    size_t npool, nfree;
    int lanes;            /* lanes per request: match_threads clamped to 1..ED_LANES_MAX */
    sh_pool *match_pool;  /* lanes - 1 helper threads, shared by every request */
    size_t max_hashes; /* hashes one request may submit: max_clip_s × the densest query config */
    _Atomic bool opened;  /* shards open, metrics ready: the API answers */
    _Atomic bool started; /* Kafka reached, waiting shards bootstrapped (or retrying) */
    sh_stop *stop;
} ed;

/* apply.c: the consumer (cluster reached, topic described: x->nshards), then the loop, which runs
 * until a stop is requested. */
int ed_consumer_start(ed *x, sh_err *e);
int ed_run(ed *x, sh_err *e);
/* Opens (creating) every held shard and reads its cursor. */
int ed_shards_open(ed *x, sh_err *e);
void ed_shards_close(ed *x);

/* bootstrap.c: replaces shard `sh` by the snapshot from cfg.snapshot_source. Errors: those of the
 * download or file (SH_ENOTFOUND, SH_EHTTP, SH_ETIMEOUT, SH_ETOOBIG, SH_ECANCELED on a stop), of
 * the snapshot (SH_EFORMAT, SH_ECHECKSUM, ...) and the shard, SH_ESTALE (the snapshot's (epoch,
 * seq) is below sh->floor_*: taking it would move the shard back, or leave it short of the
 * delta that asked for it); the live shard is then untouched. When the snapshot's own bytes were
 * refused, *rejected (may be NULL) names why, the reason label of soundhash_edge_rejected_total:
 * "format" (not a snapshot, truncated, bit-flipped compressed data, an op that does not belong,
 * totals that disagree), "checksum" (the header's, a chunk's or the stream's), "size" (a declared
 * size past the reader's caps, or a body past --snapshot-max-bytes), "shard" (of another shard or
 * shard count) or "stale" (SH_ESTALE); otherwise (no source, a download or storage failure) NULL.
 * SH_EINTERNAL: the swap failed half-way (the shard has no handle: the process must stop). */
int ed_bootstrap(ed *x, ed_shard *sh, const char **rejected, sh_err *e);
/* Removes a shard directory (flat: data.mdb, lock.mdb); a missing one is fine. */
int ed_rm_shard_dir(const char *dir, sh_err *e);
/* The text an op brings into the answers: its track id keeps the events' contract
 * (sh_track_id_check: valid UTF-8, no control characters, 1..256 bytes) and its metadata, when
 * not empty, is UTF-8 JSON. The payload codec checks neither, and a delta or snapshot that breaks
 * them (only a forged or corrupt one: ingest and the workers refuse such events) would make every
 * answer naming the track fail. 0 or SH_EFORMAT (apply.c: the delta is rejected, reason payload;
 * bootstrap.c: the snapshot, reason format). */
int ed_op_check(const sh_dop *op, sh_err *e);
/* Parses a cursor value; 0 or SH_EFORMAT. */
int ed_cursor_parse(const char *v, size_t len, int64_t *epoch, int64_t *pos, int64_t *offset,
                    int64_t *created_ms);
/* Writes the cursor (see above) into batch b. */
int ed_cursor_put(sh_shard_batch *b, int64_t epoch, int64_t pos, int64_t offset,
                  int64_t created_ms, sh_err *e);

/* api.c */
int ed_metrics_init(ed *x);
void ed_metrics_free(ed *x);
int ed_http_start(ed *x, sh_err *e);
/* Counts one refused input in soundhash_edge_rejected_total: input "delta" or "snapshot", reason
 * as listed there (apply.c, ed_bootstrap). */
void ed_count_rejected(ed *x, const char *input, const char *reason);
/* Refreshes the per-shard gauges (size, tracks, position). */
void ed_shard_gauges(ed *x, ed_shard *sh);
/* Answers `status` with {"error": msg}. Returns 0 or SH_ENOMEM. */
int ed_json_error(sh_http_resp *resp, int status, const char *msg);
/* Answers `status` with the JSON `o` (reference stolen; NULL: SH_ENOMEM). */
int ed_json_answer(sh_http_resp *resp, int status, json_t *o);
/* 1 when the request carries the bearer token (or none is configured). */
int ed_authorised(const ed *x, const sh_http_req *req);
/* The pure parts of request handling (tests/fuzz/fuzz_http.c): 1 when the Authorization header
 * value `h` (NULL: absent) is "Bearer <token>" (scheme case-insensitive, spaces after it
 * skipped), compared in constant time; and the shards= argument "0,3,5" → want[0..nshards)
 * (errors: SH_EFORMAT, the message for a 400). */
int ed_bearer_ok(const char *h, const char *token);
int ed_parse_shards(const char *s, int nshards, unsigned char *want, sh_err *e);
/* The node's name in answers: --region, else "edge". */
const char *ed_node_name(const ed *x);

/* match.c — the lookup behind POST /v1/match, for the handler and for callers that merge answers
 * from elsewhere (an upstream). */

/* Creates cfg.http_threads slots of `lanes` recognizer sets each, the match pool (lanes - 1
 * threads) and sets max_hashes. Errors: those of sh_recognizer_new and sh_pool_new. */
int ed_slots_new(ed *x, sh_err *e);
/* Frees the slots (all must have been given back); accepts a never-created pool. */
void ed_slots_free(ed *x);
/* A free slot, or NULL when every one is in use (answer 503). */
ed_slot *ed_slot_take(ed *x);
void ed_slot_give(ed *x, ed_slot *s);

/* What one lookup found. Every member is owned (ed_match_free). */
typedef struct ed_match {
    json_t *answers;     /* best first, at most k, one per track id; each {"track_id",
                            "offset_s","duration_s","score","confidence","scale","node","shard",
                            "fp_version","metadata"} */
    json_t *shards;      /* consulted: [{"shard","epoch","position"}] in shard order */
    json_t *missing;     /* shard numbers asked for (want) but not held here: [n, ...] */
    json_t *fp_versions; /* versions whose hashes were looked up, ascending */
    size_t hashes;       /* query hashes looked up, over every version */
    int status;          /* after an error: the HTTP status it deserves (4xx: the request's
                            fault, 500: the node's) */
    ed_up_query sent[ED_FPV_N]; /* the fingerprints looked up, for an upstream: borrowed from the
                                   slot (audio) or the caller (hashes), valid while they are */
    size_t nsent;
} ed_match;
void ed_match_free(ed_match *m);

/* Looks client hashes h[0..n) of `fp_version` (query mode) up in the held shards that `want`
 * selects (want[s] != 0 for shard s < x->nshards; NULL = every held shard), answers merged:
 * out->answers holds at most k (1..SH_RECOGNIZE_TOP_MAX). A version this build compares but no
 * shard holds yet is an ordinary lookup with no answers. Errors: SH_EUNSUPPORTED (fp_version not
 * in ed_fpv: status 422), SH_EINVAL (k: 400), the shards' lookup errors (500). On error *out
 * holds nothing. */
int ed_match_hashes(ed *x, ed_slot *slot, int fp_version, const sh_hash *h, size_t n, size_t k,
                    const unsigned char *want, ed_match *out, sh_err *e);

/* The same for an encoded audio clip (`buf` borrowed): fingerprinted once per version some
 * selected shard holds (once with SH_FP_VERSION when none holds any, so that bad audio is always
 * refused), each version looked up in the shards holding it; a version appearing in a shard
 * during the lookup (a reindex moving tracks) is looked up too. Errors: the decoder's
 * (SH_EDECODE, SH_ETOOSHORT, SH_EFORMAT, SH_EUNSUPPORTED: status 422; SH_ETOOLONG: 413), and
 * those of ed_match_hashes. */
int ed_match_audio(ed *x, ed_slot *slot, const void *buf, size_t len, size_t k,
                   const unsigned char *want, ed_match *out, sh_err *e);

/* The fp_versions the held shards hold (union, ascending), as a JSON array (NULL: no memory). */
json_t *ed_held_fp_versions(ed *x);

/* POST /v1/match (registered by ed_http_start; ud = the ed). */
int ed_on_match(const sh_http_req *req, sh_http_resp *resp, void *ud);

/* forward.c: completes a local answer through --upstream. The request wants the shards marked
 * in want[0..nshards) (its `shards=` list), or all when want is NULL. When the upstream is set,
 * wanted shards were not consulted, the local shards gave fewer than k answers and the request
 * is not a forwarded one (want is NULL: a request carrying `shards=` is never forwarded again),
 * asks the upstream with q[0..nq) for the wanted shards not consulted. Then
 * *cands (in: the local answers, best first; owned) is replaced by the merged list (best
 * confidence first, one per track id, at most k), the upstream's consulted shards are appended to
 * `consulted`, and `answer` gets "complete" (every wanted shard consulted) and, with --upstream,
 * "upstream" {url, status, elapsed_ms, node[, error]}; the answer's source is counted. An
 * upstream failure is not an error here. Errors: SH_ENOMEM, SH_EINVAL (bad q). */
int ed_forward(ed *x, const unsigned char *want, const ed_up_query *q, size_t nq, size_t k,
               json_t **cands, json_t *consulted, json_t *answer, sh_err *e);

#endif
