/* sh_kafka.h — what every SoundHash Kafka client shares: the topics, building a client
 * configuration, translating librdkafka errors, and a bounded check that a cluster answers.
 *
 * Topics (the contract between producers and consumers; partition counts are what
 * `soundhash broker` creates and what a real cluster should be provisioned with):
 *
 *   soundhash.audio.events   6 partitions  live audio events (upsert/delete) from upload services.
 *                                           Key = track id, so one track's events stay in order.
 *   soundhash.audio.reindex  6 partitions  reindex jobs (`soundhash ingest reindex`). A topic of its
 *                                           own so workers can favour live uploads: live ingest never
 *                                           waits behind a million-track reindex. Key = track id.
 *   soundhash.audio.dlq      3 partitions  dead-letter records (bad audio, undecodable events).
 *   soundhash.index.deltas   8 partitions  zstd index deltas from the replicator; partition = shard,
 *                                           so this count IS the shard count of the deployment.
 *
 * Error translation (sh_kafka_errcode): timeouts → SH_ETIMEOUT; broker/transport/leadership
 * trouble that a retry may cure → SH_ETRANSIENT; unknown topic/partition → SH_ENOTFOUND; message
 * too large → SH_ETOOBIG; bad argument/configuration → SH_EINVAL; unsupported → SH_EUNSUPPORTED;
 * handle being destroyed → SH_ECANCELED; everything else → SH_EKAFKA. librdkafka's own text always
 * goes into the sh_err message.
 */
#ifndef SH_KAFKA_H
#define SH_KAFKA_H

#include "sh_err.h"
#include "sh_opt.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#define SH_TOPIC_AUDIO_EVENTS "soundhash.audio.events"
#define SH_TOPIC_AUDIO_REINDEX "soundhash.audio.reindex"
#define SH_TOPIC_AUDIO_DLQ "soundhash.audio.dlq"
#define SH_TOPIC_INDEX_DELTAS "soundhash.index.deltas"

enum {
    SH_TOPIC_AUDIO_EVENTS_PARTITIONS = 6,
    SH_TOPIC_AUDIO_REINDEX_PARTITIONS = 6,
    SH_TOPIC_AUDIO_DLQ_PARTITIONS = 3,
    SH_TOPIC_INDEX_DELTAS_PARTITIONS = 8, /* = number of shards */
};

/* Default bounded wait for "is the cluster there?" checks, in milliseconds. */
enum { SH_KAFKA_DEFAULT_TIMEOUT_MS = 10000 };

typedef struct sh_kafka_topic_def {
    const char *name;
    int partitions;
    const char *doc; /* one line */
} sh_kafka_topic_def;

/* The project's topics, in the order listed above. Static storage; `*n` receives the count. */
const sh_kafka_topic_def *sh_kafka_topics(size_t *n);

/* Returns the documented partition count of `topic`, or 0 if it is not one of the project's. */
int sh_kafka_topic_partitions(const char *topic);

/* Creates a client configuration: `bootstrap` (comma-separated host:port list; NULL or "" leaves
 * bootstrap.servers unset, e.g. when it comes from `props`) and then every "key=value" of `props`
 * (the `-X` passthrough; may be NULL) applied in order, so -X overrides anything set before.
 * Between the two, the secret properties (sh_kafka_prop_is_secret: sasl.password, ...) are taken
 * from the environment: SOUNDHASH_KAFKA_<KEY> ('.' → '_', upper case), else the file named by
 * SOUNDHASH_KAFKA_<KEY>_FILE (its content, trailing newlines stripped, ≤ 64 KiB); an unreadable
 * file is SH_EUSAGE naming the variable.
 * librdkafka's log lines are routed to sh_log (logfmt on stderr).
 * On success `*out` is owned by the caller (rd_kafka_new takes it over, else
 * rd_kafka_conf_destroy). Errors: SH_EUSAGE (an entry without '='), SH_EINVAL (unknown property or
 * bad value — the message names it and quotes librdkafka), SH_ENOMEM. On error `*out` is NULL. */
int sh_kafka_conf_new(const char *bootstrap, const sh_strlist *props, rd_kafka_conf_t **out,
                      sh_err *e);

/* Checks `props` (the -X list) against a throw-away configuration, so that a typo is a usage
 * error before anything starts. Returns 0 or SH_EUSAGE with a message naming -X and the
 * property (SH_ENOMEM when out of memory). */
int sh_kafka_props_check(const char *bootstrap, const sh_strlist *props, sh_err *e);

/* Sets one "key=value" on `conf` with the same errors as sh_kafka_conf_new. */
int sh_kafka_conf_set_kv(rd_kafka_conf_t *conf, const char *kv, sh_err *e);

/* Marks `conf` for a client that checks the cluster with sh_kafka_wait_ready() right after
 * rd_kafka_new(): the handle's librdkafka warnings and errors (failed connection attempts, "all
 * brokers are down") are logged at debug level until a wait succeeds, and a failed wait's message
 * quotes the first of them — so an unreachable broker is one line, not a burst of librdkafka lines
 * before it. (Every handle is quiet like this during sh_kafka_wait_ready() itself; this extends it
 * to the connection attempts rd_kafka_new() starts before the wait.) */
void sh_kafka_conf_quiet_until_ready(rd_kafka_conf_t *conf);

/* Sets `key` to `value`; SH_EINVAL with librdkafka's reason on failure. */
int sh_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, sh_err *e);

/* Maps a librdkafka error to an SH_E* code (see the table above); 0 for NO_ERROR. */
int sh_kafka_errcode(rd_kafka_resp_err_t err);

/* sh_err_set(e, sh_kafka_errcode(err), "<what>: <librdkafka text>") and returns the code;
 * `what` is printf-formatted. Returns 0 (and leaves `e` alone) for NO_ERROR. */
int sh_kafka_err_set(sh_err *e, rd_kafka_resp_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Bounded wait until the cluster behind `rk` answers a metadata request (at most `timeout_ms`).
 * Returns 0, or SH_ETIMEOUT ("no Kafka broker reachable at <bootstrap> within N ms (<reason>:
 * <librdkafka's first connection error>)") when nothing answered, or another translated code.
 * `bootstrap` is used only in the message (may be NULL). While it waits, and after it failed until
 * a later wait succeeds, the handle's librdkafka warnings/errors are logged at debug level. */
int sh_kafka_wait_ready(rd_kafka_t *rk, const char *bootstrap, int timeout_ms, sh_err *e);

/* Asks the cluster how many partitions `topic` has (bounded by `timeout_ms`). Sets `*partitions`
 * (0 when the topic does not exist). Returns 0 or a translated error. Does not create the topic. */
int sh_kafka_describe_topic(rd_kafka_t *rk, const char *topic, int timeout_ms, int *partitions,
                            sh_err *e);

/* Consumer lag of the group behind `consumer` (a consumer client created with that group.id; it
 * need not subscribe): for every entry of `parts` (topic, partition) asks the cluster for the end
 * and start offsets (ListOffsets) and the group's committed offset (OffsetFetch), then sets the
 * entry's `offset` to the events not yet done:
 *   end - committed   (nothing committed: end - start, where auto.offset.reset=earliest starts;
 *                      a committed offset below the start counts from the start)
 * or -1 where the cluster gave no answer for that partition. Bounded: three requests of at most
 * `timeout_ms` each. Returns 0 or a translated error (then no entry is changed). */
int sh_kafka_group_lag(rd_kafka_t *consumer, rd_kafka_topic_partition_list_t *parts,
                       int timeout_ms, sh_err *e);

#endif
