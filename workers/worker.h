/* worker.h — internals of `soundhash worker`, shared by the files of workers/ (not a public API).
 *
 * Threads and data flow:
 *
 *   main (consume.c)   polls the consumer: live events first, reindex events only when no live
 *                      event waits; pushes jobs to the job queue; pauses all partitions when the
 *                      queue is full (back-pressure) or the database is down; commits offsets of
 *                      the finished prefix (offsets.h); handles rebalances and SIGTERM.
 *   N fp threads       (process.c) take a job (live before reindex), decode the Avro event, fetch
 *                      the audio (fetch.c), fingerprint it with their own sh_fp, encode the blob,
 *                      and hand the result to the writer queue; bad events go to the DLQ (dlq.c).
 *   1 writer thread    (writer.c) drains the writer queue in batches: sh_primary_write_tracks (one
 *                      transaction per track, version-checked), deletes one by one; retries
 *                      transient failures with jittered exponential backoff while flagging the
 *                      database down; permanent failures go to the DLQ.
 *   1 dr thread        (dlq.c) serves the DLQ producer's delivery reports.
 *   1 lag thread       (lag.c) asks the cluster for end and committed offsets every 2 s: the
 *                      consumer lag of this worker's partitions and of the whole group.
 *   http pool          (wmetrics.c) /health and /metrics.
 *
 * A job is "done" once its database transaction committed (or was a stale no-op) or its dead
 * letter was delivered; only then does its offset count as finished. Jobs whose work was abandoned
 * at shutdown are never marked done: their events are redelivered to the next owner.
 */
#ifndef SH_WORKER_H
#define SH_WORKER_H

#include "offsets.h"
#include "sh_audio.h"
#include "sh_err.h"
#include "sh_fp.h"
#include "sh_http.h"
#include "sh_media.h"
#include "sh_metrics.h"
#include "sh_opt.h"
#include "sh_primary.h"
#include "sh_registry.h"
#include "sh_schema.h"
#include "sh_signal.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- configuration (documented defaults in worker.c's option table) ------------------------- */
typedef struct wk_config {
    char *brokers;
    char *dsn;
    char *media_root;
    long threads;
    char *group;
    char *http;
    char *worker_id;
    sh_strlist kafka_props; /* -X */
    long max_inflight;
    long batch;
    double max_duration_s;
    size_t max_fetch_bytes;
    long http_timeout_s;
    long retry_max_ms;
    long shutdown_grace_s;
    char *tmp_dir;
    long connect_timeout_s; /* bounded wait for a broker at start; 0: no check at start */
    long db_wait_s;         /* bounded wait for the database before joining; 0: one attempt */
    long max_retry_time_s;  /* per-event budget for transient source failures; 0: unlimited */
    bool fetch_deny_private; /* refuse http(s) sources at non-public addresses (SSRF guard) */
} wk_config;

/* ---- jobs ------------------------------------------------------------------------------------ */
typedef struct wk_job {
    rd_kafka_message_t *msg; /* owned until the job is done */
    bool live;               /* from the live topic (else reindex) */
    double t0;               /* monotonic seconds when received */
    sh_audio_event ev;       /* decoded event (owned) */
    bool decoded;
    int attempts;
    /* Transient failures of the event's own http(s) source (not of the database or the host):
     * monotonic time of the first one (0: none yet) and how many; bounded by --max-retry-time. */
    double src_fail_t0;
    int src_fails;
    /* Result of fingerprinting, consumed by the writer. */
    uint8_t *blob;
    size_t blob_len;
    uint32_t n_hashes;
    int fp_version; /* the version the blob was made with (the event's, else SH_FP_VERSION) */
    double duration_s;
    char sha256_hex[SH_SHA256_HEX_LEN + 1];
    char *meta_json;
    char *source_uri;
    struct wk_job *next;
} wk_job;

/* A FIFO of jobs. */
typedef struct wk_fifo {
    wk_job *head, *tail;
    size_t n;
} wk_fifo;

/* ---- metrics --------------------------------------------------------------------------------- */
typedef struct wk_metrics {
    sh_metrics *reg;
    sh_metric *events, *failed, *retries, *latency, *audio_s, *lag, *db_latency, *inflight,
        *paused, *kafka_up, *db_up, *hashes, *lag_total, *group_lag;
    sh_series *audio_total, *inflight_s, *paused_s, *kafka_up_s, *db_up_s, *hashes_total,
        *lag_total_s;
} wk_metrics;

/* ---- consumer lag (lag.c) -------------------------------------------------------------------- */
enum { WK_LAG_TOPICS = 2, WK_LAG_MAX_PARTITIONS = 64 }; /* events, reindex; partitions reported */

typedef struct wk_lag {
    pthread_t thread;
    pthread_mutex_t lock; /* guards the fields below and publishing the lag gauges */
    pthread_cond_t cv;
    bool inited, started, stop, warned_cap;
    uint64_t assigned[WK_LAG_TOPICS]; /* bit p: partition p is assigned to this worker */
    int64_t value[WK_LAG_TOPICS][WK_LAG_MAX_PARTITIONS]; /* last known lag */
} wk_lag;

/* ---- the worker ------------------------------------------------------------------------------ */
typedef struct wk {
    wk_config cfg;
    sh_registry *reg;
    sh_schema_limits lim;
    sh_media *media;
    sh_fp_config fpc;
    wk_metrics m;
    sh_http *http;
    wk_lag lag;

    rd_kafka_t *consumer;
    rd_kafka_queue_t *live_q;    /* the consumer queue: live partitions */
    rd_kafka_queue_t *reindex_q; /* reindex partitions are forwarded here */
    rd_kafka_t *producer;        /* dead letters */
    pthread_t dr_thread;

    /* Job queue (main → fp threads) and writer queue (fp threads → writer). */
    pthread_mutex_t lock;
    pthread_cond_t job_cv, write_cv;
    wk_fifo live_jobs, reindex_jobs, writes;
    size_t inflight; /* received and not yet done or abandoned */
    sh_offsets *offsets; /* guarded by lock */
    sh_primary *ctl;     /* the main thread's own connection: database health while idle, and the
                            committed offsets recorded for a takeover (consume.c) */
    bool offsets_warned; /* main thread: the last recording failed and was logged */
    double offsets_retry_ms; /* main thread: no recording before this monotonic time */
    /* main thread: commit points not recorded yet (a failed or skipped recording), recorded with
     * the next one so that a partition that goes idle meanwhile is not left behind */
    struct sh_group_offset *offsets_unrec;
    size_t n_offsets_unrec;

    pthread_t *fp_threads;
    long n_fp_threads;
    pthread_t writer_thread;
    bool writer_started;

    atomic_bool stop_fetch;   /* SIGTERM: no new jobs */
    atomic_bool abandon;      /* grace expired: give up retries */
    atomic_bool threads_exit; /* queues drained (or abandoned): threads leave */
    atomic_bool db_down;      /* set by the writer on SH_ETRANSIENT, cleared on success/ping */
    atomic_bool kafka_up;
    atomic_bool dr_stop;      /* the DLQ delivery-report thread leaves */
    atomic_bool untracked;    /* an event could not be tracked: never commit again */
    atomic_int assigned;      /* partitions currently assigned */
    atomic_bool joined;       /* subscribed: the start-up checks and waits are over */
    sh_stop stop;             /* SIGTERM/SIGINT: installed by sh_cmd_worker, read by wk_run */
} wk;

/* rewind.c: `soundhash worker rewind` (takeover: the group's offsets back to the recorded ones). */
int wk_cmd_rewind(int argc, char **argv);

/* queue.c */
void wk_fifo_push(wk_fifo *q, wk_job *j);
wk_job *wk_fifo_pop(wk_fifo *q);
void wk_job_free(wk_job *j);
/* Marks the job finished (offset may be committed), frees it, wakes the main thread's bookkeeping.
 * Thread-safe. */
void wk_job_done(wk *w, wk_job *j, const char *result);
/* Drops a job without marking its offset finished (shutdown abandon). Thread-safe. */
void wk_job_abandon(wk *w, wk_job *j);

/* process.c: the fp thread body. */
void *wk_fp_thread(void *arg);
/* fetch.c: opens the event's audio as a streaming reader, verifying sha256 when given; fills
 * job->sha256_hex and job->source_uri. Errors are permanent unless SH_ETRANSIENT. */
int wk_fetch_open(wk *w, wk_job *j, sh_primary *db, sh_audio **out, sh_err *e);
void wk_fetch_global_init(void);
/* fetch.c: true when `raw` (a struct in_addr for AF_INET, in6_addr for AF_INET6, network byte
 * order) is not a public unicast address, the --fetch-deny-private classifier: private, CGNAT,
 * loopback, link-local, benchmarking, IETF protocol, multicast, reserved; for IPv6
 * also site-local, unique-local and every form wrapping an IPv4 address (mapped, compatible,
 * NAT64 64:ff9b::/96, 6to4 2002::/16) whose IPv4 is not public. Other families: true. */
bool wk_fetch_addr_private(int family, const void *raw);

/* writer.c */
void *wk_writer_thread(void *arg);

/* dlq.c */
int wk_dlq_new(wk *w, sh_err *e);
void wk_dlq_free(wk *w);
/* Produces the dead letter of `j` and waits for its delivery report, retrying transient failures
 * with backoff until delivered or w->abandon. Returns 0 (delivered) or SH_ECANCELED. */
int wk_dlq_send(wk *w, wk_job *j, int code, const char *reason);

/* backoff: sleeps sh_backoff_ms(100 ms, --retry-max-ms, attempt) (sh_clock.h: exponential,
 * ±50 % jitter) in slices, returning early when `w->abandon` is set. Returns 0, or SH_ECANCELED
 * when abandoned. */
int wk_backoff(wk *w, int attempt);
/* True for errors a retry may cure. */
bool wk_transient(int code);

/* wmetrics.c */
int wk_metrics_init(wk_metrics *m);
void wk_metrics_free(wk_metrics *m);
void wk_count_event(wk *w, const wk_job *j, const char *result);
void wk_count_failure(wk *w, int code);
void wk_count_retry(wk *w, int code);
int wk_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque);
int wk_http_start(wk *w, sh_err *e);

/* lag.c: a thread that publishes soundhash_worker_consumer_lag / _group_lag (see lag.c).
 * wk_lag_init before anything else touches w->lag (SH_ENOMEM); wk_lag_start after the consumer
 * exists; wk_lag_stop before the consumer closes; wk_lag_free last (accepts a never-inited lag). */
int wk_lag_init(wk *w);
int wk_lag_start(wk *w, sh_err *e);
void wk_lag_stop(wk *w);
void wk_lag_free(wk *w);
/* From the rebalance callback: records `parts` as assigned or revoked; a revoked partition's
 * consumer-lag series is removed at once. */
void wk_lag_assign(wk *w, const rd_kafka_topic_partition_list_t *parts, bool assigned);

/* consume.c */
/* Before joining the consumer group, so that partitions go only to workers that can write: waits
 * up to --db-wait seconds for the primary database to accept a connection. Returns 0; SH_EDB when
 * it kept refusing us (authentication, missing database or role) or SH_ETRANSIENT when it never
 * answered, by the deadline; SH_ECANCELED on SIGTERM/SIGINT; SH_EIO/SH_ENOMEM at once (password
 * file unreadable, out of memory). Installs the signal handlers. */
int wk_wait_db(wk *w, sh_err *e);
/* Creates the consumer, waits (bounded) for a broker, and subscribes: joins the group. */
int wk_consumer_new(wk *w, sh_err *e);
/* Consumes until SIGTERM/SIGINT (returns 0 after draining and committing) or until an event
 * cannot be tracked (returns SH_ENOMEM at once, committing nothing more). */
int wk_run(wk *w);
void wk_consumer_close(wk *w);

#endif
