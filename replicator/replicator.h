/* replicator.h — `soundhash replicator`: the primary's change log → index deltas on Kafka.
 *
 * The moving parts (one folder, one thread of control plus librdkafka's own threads):
 *   cmd_replicator.c  options, start-up, the `snapshot` and `prune` subcommands
 *   run.c             the loop: wait for NOTIFY (poll fallback) → read a batch of changes →
 *                     group per shard → encode payloads → publish → wait for acks → advance
 *   position.c        where each shard's stream stands, read back from the topic itself
 *   rmetrics.c        /health, /metrics, GET /v1/snapshots/{shard}
 *   snapshot.c        a shard's snapshot from one consistent read of the primary
 *
 * Positions. The unit of progress is the change-log seq. A delta of shard s covers the change
 * seqs (prev_sequence, sequence]: it carries every op of shard s in that range (each with its own
 * seq) and says nothing else happened to shard s there. The replicator keeps, per shard, the
 * sequence of the last delta Kafka acknowledged; it reads the change log from the smallest of
 * them. Progress lives ONLY in the topic: at start-up (and after a publish failure) the last
 * message of each partition is read back and decoded. So there is no second place to disagree
 * with what subscribers see, and the primary role needs SELECT and LISTEN only. A crash anywhere
 * (before publish, between publish and ack, after ack) re-publishes at most what was in flight;
 * subscribers skip ops whose seq is at or below their position, so the replay is harmless even
 * when the second run batches differently.
 */
#ifndef SH_REPLICATOR_H
#define SH_REPLICATOR_H

#include "sh_err.h"
#include "sh_http.h"
#include "sh_metrics.h"
#include "sh_opt.h"
#include "sh_primary.h"
#include "sh_schema.h"
#include "sh_signal.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct rp_config {
    char *dsn;
    char *brokers;
    char *http;
    char *region;
    char *topic;
    sh_strlist kafka_props;
    long batch_ms;           /* a batch closes this long after its first change */
    size_t batch_bytes;      /* ... or when its postings blobs reach this size */
    long poll_ms;            /* read the change log at least this often (NOTIFY is a hint) */
    long heartbeat_ms;       /* an idle shard gets an empty delta at most this often */
    long lag_threshold_ms;   /* /health fails when the oldest unpublished change is older */
    long connect_timeout_s;  /* bounded waits for Kafka and PostgreSQL at start */
    long zstd_level;
    size_t max_delta_bytes;  /* a delta's payload stays under this (one Kafka message) */
    char *token_file;        /* bearer token for /v1/snapshots (else env SOUNDHASH_SNAPSHOT_TOKEN) */
    /* Fault-injection hook for the chaos suite (tests/chaos/storm.sh), inert unless the
     * environment sets SOUNDHASH_TEST_KILL_AFTER_ACKS=N: the process SIGKILLs itself right after
     * the N-th round whose deltas Kafka acknowledged, before its position moves — the one instant
     * a timed kill from outside rarely hits. 0: off. Never an option, never in a config file. */
    long test_kill_after_acks;
} rp_config;

/* One shard = one partition of the delta topic. */
typedef struct rp_shard {
    int64_t pos;     /* sequence of the last acknowledged delta of this epoch (or the epoch's
                        start when it has none) */
    int64_t last_ms; /* monotonic ms of the last publish (heartbeat pacing) */
    sh_series *deltas, *bytes, *ops, *position;
} rp_shard;

typedef struct rp_metrics {
    sh_metrics *reg;
    sh_metric *f_deltas, *f_bytes, *f_ops, *f_pos;
    sh_series *lag_hist;      /* commit → Kafka ack, seconds */
    sh_series *read_hist;     /* one batch read from the primary, seconds */
    sh_series *publish_hist;  /* produce → every ack of a batch's deltas, seconds */
    sh_series *postings;      /* postings published */
    sh_series *raw_bytes;     /* uncompressed payload bytes */
    sh_series *wire_bytes;    /* compressed payload bytes */
    sh_series *blob_bytes;    /* the primary's posting blobs of the same tracks */
    sh_series *backlog;       /* changes committed but not yet published */
    sh_series *last_seq;      /* last change seq published to every shard */
    sh_series *primary_seq;   /* the primary's last seq */
    sh_series *batches;
    sh_series *errors;
    sh_series *superseded;    /* changes skipped because a later change carries the newer state */
    sh_series *snapshots;
} rp_metrics;

typedef struct rp {
    rp_config cfg;
    sh_primary *db;
    rd_kafka_t *producer;
    sh_registry *reg;
    sh_schema_limits lim;
    int nshards;
    rp_shard *shards;
    _Atomic int64_t epoch; /* read by the snapshot handler; changed by follow_epoch */
    int64_t epoch_start; /* change-log seq the epoch's stream starts after */
    int64_t read_pos;    /* every change <= read_pos is acknowledged in every shard */
    rp_metrics m;
    sh_http *http;
    /* Read by HTTP threads. */
    _Atomic int64_t primary_seq;
    _Atomic int64_t oldest_pending_ms; /* commit time of the oldest unpublished change, 0: none */
    _Atomic bool db_ok, kafka_ok;
    /* Monotonic ms at which the round's deltas were handed to librdkafka, 0 while none wait for
     * an ack: /health reports Kafka "blocked" once this is older than RP_ACK_BLOCKED_MS (acks=all
     * with too few in-sync replicas, no leader: librdkafka retries silently meanwhile). */
    _Atomic int64_t acks_since_ms;
    _Atomic bool started; /* start-up checks and waits are over */
    sh_stop *stop; /* owned by the command (sh_signal.h) */
    /* The round being published, for the delivery-report callback (run.c). */
    uint64_t round;
    struct pending *inflight;
    size_t n_inflight;
    _Atomic bool snapshot_busy; /* one snapshot at a time (rmetrics.c) */
    char *token; /* bearer token /v1/snapshots asks for, or NULL (open) */
} rp;

/* Deltas unacknowledged this long make /health say "kafka":"blocked" (acks on a healthy cluster
 * take milliseconds; a leader election after a broker crash a few seconds). */
#define RP_ACK_BLOCKED_MS 5000

/* run.c */
int rp_run(rp *r, sh_err *e);
/* Creates r->producer: idempotent, acks=all, then the -X properties. */
int rp_producer_new(rp *r, sh_err *e);

/* position.c: reads the last delta of every partition; fills r->shards[].pos (epoch r->epoch) and
 * r->read_pos. Errors: SH_ETIMEOUT, SH_EKAFKA, SH_EFORMAT (a message that is not a delta). */
int rp_positions_load(rp *r, int timeout_ms, sh_err *e);

/* Per shard: the sequence of the last delta in the topic at `epoch` (or -1 when the partition
 * holds none of that epoch) into seqs[0..nshards). A standalone consumer, closed before return. */
int rp_topic_last_sequences(const char *brokers, const sh_strlist *props, const char *topic,
                            int nshards, int64_t epoch, sh_registry *reg,
                            const sh_schema_limits *lim, int timeout_ms, int64_t *seqs,
                            sh_err *e);

/* rmetrics.c: the registry and the process-wide series (before the shard count is known), then
 * the per-shard series once it is. */
int rp_metrics_init(rp *r);
int rp_metrics_shards(rp *r);
void rp_metrics_free(rp *r);
int rp_http_start(rp *r, sh_err *e);

/* snapshot.c: writes shard `shard` of `nshards` at the primary's current seq to `fd`.
 * *seq_out (may be NULL) gets the seq it reflects, *tracks_out the tracks written. */
int rp_snapshot_write(sh_primary *db, int shard, int nshards, int64_t epoch, int fd,
                      int64_t *seq_out, uint64_t *tracks_out, sh_err *e);

#endif
