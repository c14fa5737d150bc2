/* sh_ingest.h — the publisher an upload service embeds: audio events → Kafka.
 *
 *     sh_ingest_config cfg;
 *     sh_ingest_config_default(&cfg);
 *     cfg.brokers = "kafka1:9092,kafka2:9092";
 *     sh_ingest *p;
 *     if (sh_ingest_new(&cfg, &p, &err)) ...              // fails fast if no broker answers
 *     sh_ingest_publish(p, &event, on_result, ctx, &err);  // validates, encodes, enqueues
 *     sh_ingest_flush(p, 30000, &err);                     // waits; callbacks run in here
 *     sh_ingest_free(p);
 *
 * What it guarantees: each event is validated (sh_event_validate) and encoded (Confluent-framed
 * Avro, sh_schema.h) before anything is sent, so nothing half-formed reaches Kafka. The producer is
 * idempotent (enable.idempotence=true, acks=all): retries never duplicate or reorder a track's
 * events. The key is the track id, so one track's events stay in order on one partition. Routing:
 * UPSERT and DELETE go to soundhash.audio.events, REINDEX to soundhash.audio.reindex (sh_kafka.h),
 * unless cfg.topic overrides it.
 *
 * Callback contract (as libuv's): when sh_ingest_publish() returns an error, the callback is never
 * called for that event; when it returns 0, the callback is called exactly once, from inside
 * sh_ingest_poll(), sh_ingest_flush() or sh_ingest_publish() (which polls when the local queue is
 * full) — always on the caller's thread, never from a librdkafka thread.
 *
 * Threads: one sh_ingest is used from one thread at a time.
 */
#ifndef SH_INGEST_H
#define SH_INGEST_H

#include "sh_err.h"
#include "sh_opt.h"
#include "sh_registry.h"
#include "sh_schema.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sh_ingest_config {
    const char *brokers;       /* bootstrap servers "host:port,..."; may instead come from props */
    const sh_strlist *props;   /* librdkafka properties "key=value" (-X), applied last; may be NULL */
    const char *topic;         /* NULL: route by op (see above) */
    sh_registry *registry;     /* borrowed; NULL: sh_registry_new_from_env(), owned by the publisher */
    const sh_schema_limits *limits; /* borrowed; NULL: defaults (inline audio <= 900 KiB) */
    const char *producer;      /* filled into events whose producer is ""; default
                                  "soundhash-ingest/<version>" */
    int connect_timeout_ms;    /* bounded wait in sh_ingest_new for a broker to answer;
                                  0: skip the check */
    int delivery_timeout_ms;   /* how long librdkafka retries one event (message.timeout.ms) */
} sh_ingest_config;

/* Defaults: connect_timeout_ms 10000, delivery_timeout_ms 30000, linger 5 ms, lz4 compression,
 * everything else NULL. */
void sh_ingest_config_default(sh_ingest_config *cfg);

/* Outcome of one event. Valid only during the callback; copy what you keep. */
typedef struct sh_ingest_result {
    int code;            /* 0: stored by the cluster (acks=all); else an SH_E* code */
    const char *message; /* "" on success, else librdkafka's reason */
    const char *track_id;
    const char *event_id;
    const char *topic;
    int32_t partition;   /* -1 when failed */
    int64_t offset;      /* -1 when failed */
} sh_ingest_result;

typedef void (*sh_ingest_cb)(const sh_ingest_result *r, void *opaque);

typedef struct sh_ingest sh_ingest;

/* Creates the producer and, if cfg->connect_timeout_ms > 0, waits at most that long for a broker
 * to answer. Returns 0, SH_EUSAGE/SH_EINVAL (bad property, no brokers), SH_ETIMEOUT (no broker
 * reachable: "no Kafka broker reachable at B within N ms"), SH_EKAFKA, registry errors, SH_ENOMEM.
 * *out is set only on success. */
int sh_ingest_new(const sh_ingest_config *cfg, sh_ingest **out, sh_err *e);

/* Validates, encodes and enqueues one event. `ev` is only read during the call. Fields filled in
 * for the copy that is sent (ev itself is unchanged): event_id when "", submitted_at_ms when 0
 * (now), producer when "". If `event_id_out` is not NULL it receives the event id used.
 * Blocks (serving delivery callbacks) while the local queue is full, at most the delivery
 * timeout. Returns 0 (cb will be called once), or sh_event_validate/sh_event_encode errors (event
 * named in the message), SH_ETIMEOUT (queue stayed full), SH_EKAFKA. */
int sh_ingest_publish(sh_ingest *p, const sh_audio_event *ev, sh_ingest_cb cb, void *opaque,
                      char event_id_out[SH_EVENT_ID_LEN + 1], sh_err *e);

/* Publishes one event and waits for its delivery report (at most timeout_ms, < 0: the delivery
 * timeout). Fills `*partition` and `*offset` (may be NULL). Returns 0 or the event's error code
 * with librdkafka's reason in `e`; SH_ETIMEOUT if no report came in time (the event may still be
 * delivered later). */
int sh_ingest_publish_sync(sh_ingest *p, const sh_audio_event *ev, int timeout_ms,
                           int32_t *partition, int64_t *offset, sh_err *e);

/* Serves delivery callbacks that are ready, waiting at most timeout_ms for the first. Returns the
 * number of callbacks served. */
int sh_ingest_poll(sh_ingest *p, int timeout_ms);

/* Waits until every enqueued event has been reported (callbacks run here). Returns 0, or
 * SH_ETIMEOUT ("N events still in flight") when timeout_ms passed first. */
int sh_ingest_flush(sh_ingest *p, int timeout_ms, sh_err *e);

/* Events enqueued whose callback has not run yet. */
size_t sh_ingest_in_flight(const sh_ingest *p);

/* Frees the publisher. Events still in flight are purged first and their callbacks run (here)
 * with SH_ECANCELED: call sh_ingest_flush() before to deliver them. Accepts NULL. */
void sh_ingest_free(sh_ingest *p);

#endif
