/* edge.h — `soundhash edge`: index deltas → local LMDB shards (format 2) → /v1/match over HTTP.
 *
 * The moving parts (one folder; depends on core and schemas only — never on the primary's code):
 *   cmd_edge.c   options, start-up, tear-down
 *   apply.c      the loop: one Kafka consumer assigned the held partitions (no group); each delta
 *                applied with the shard's new cursor in ONE LMDB transaction; gaps, epoch changes,
 *                empty shards and offsets Kafka no longer holds bootstrap the shard from a snapshot
 *   bootstrap.c  a snapshot (HTTP or file) applied into a staging shard, verified whole, swapped in
 *   api.c        /health, /ready, /v1/shards, /metrics, POST /v1/match
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
#include "sh_recognize.h"
#include "sh_schema.h"
#include "sh_shard.h"
#include "sh_signal.h"

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
    sh_strlist kafka_props;
    long lag_threshold_ms;   /* /ready fails when a shard's last delta is older */
    long connect_timeout_s;
    size_t max_body;         /* POST /v1/match body cap */
    long max_clip_s;         /* longest clip decoded */
    long http_threads;
    long request_timeout_s;
    size_t snapshot_max;     /* bytes of one downloaded snapshot */
    long snapshot_timeout_s;
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
    sh_series *m_position, *m_bytes, *m_tracks;
} ed_shard;

typedef struct ed_metrics {
    sh_metrics *reg;
    sh_series *deltas, *ops_applied, *ops_skipped, *bootstraps, *gaps, *errors;
    sh_series *apply_lag, *match_hist, *matches, *no_matches, *bad_requests;
    sh_metric *f_pos, *f_bytes, *f_tracks;
} ed_metrics;

typedef struct ed {
    ed_config cfg;
    char *token;       /* bearer token for the /v1/ routes, or NULL */
    int nshards;       /* partitions of the topic */
    ed_shard *held;
    size_t nheld;
    rd_kafka_t *consumer;
    sh_registry *reg;
    sh_schema_limits lim;
    ed_metrics m;
    sh_http *http;
    /* Recognizers, one per HTTP thread at most (FFTW planning is done once, at start). */
    pthread_mutex_t pool_lock;
    sh_recognizer **pool;
    size_t npool, nfree;
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
 * the snapshot (SH_EFORMAT, SH_ECHECKSUM, ...) and the shard; the live shard is then untouched.
 * SH_EINTERNAL: the swap failed half-way (the shard has no handle: the process must stop). */
int ed_bootstrap(ed *x, ed_shard *sh, sh_err *e);
/* Removes a shard directory (flat: data.mdb, lock.mdb); a missing one is fine. */
int ed_rm_shard_dir(const char *dir, sh_err *e);
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
/* Refreshes the per-shard gauges (size, tracks, position). */
void ed_shard_gauges(ed *x, ed_shard *sh);

#endif
