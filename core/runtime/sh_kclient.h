/* sh_kclient.h — building a Kafka producer or consumer the one SoundHash way, so that every
 * component (workers, their DLQ producer, ingest, the DLQ reader, the broker tool, the replicator,
 * the edge) configures its client in the same order with the same errors.
 *
 * Order: bootstrap servers → the client's `defaults` → the operator's -X `props` (so -X overrides
 * any default) → `forced` settings the client's correctness depends on (after -X: not
 * overridable) → opaque and callbacks → rd_kafka_new. librdkafka's log lines go to sh_log (see
 * sh_kafka_conf_new). Nothing is connected yet when these return: check the cluster with
 * sh_kafka_wait_ready (sh_kafka.h).
 */
#ifndef SH_KCLIENT_H
#define SH_KCLIENT_H

#include "sh_err.h"
#include "sh_opt.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

/* {key, value} settings. */
typedef const char *const sh_kclient_kv[2];

typedef struct sh_kclient_config {
    const char *bootstrap;        /* host:port,...; NULL or "": from props (-X bootstrap.servers) */
    const sh_kclient_kv *defaults; /* set before props; may be NULL */
    size_t n_defaults;
    const sh_strlist *props; /* -X "key=value" entries; may be NULL */
    const sh_kclient_kv *forced; /* set after props; may be NULL */
    size_t n_forced;
    bool require_bootstrap; /* SH_EUSAGE when no bootstrap servers end up configured */
    bool quiet_until_ready; /* see sh_kafka_conf_quiet_until_ready (sh_kafka.h) */
    const char *what;       /* names the client in the rd_kafka_new failure ["kafka client"] */
    int new_error;          /* the code of an rd_kafka_new failure [SH_EKAFKA] */
    void *opaque;           /* rd_kafka_opaque(); passed to every callback */
    void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
    void (*rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);
    int (*stats_cb)(rd_kafka_t *rk, char *json, size_t len, void *opaque);
    void (*error_cb)(rd_kafka_t *rk, int err, const char *reason, void *opaque);
} sh_kclient_config;

/* Creates the client; on success *out is the caller's (rd_kafka_destroy). Errors: SH_EUSAGE (a
 * props entry without '=', or no bootstrap servers when required), SH_EINVAL (a property
 * librdkafka refused: the message names it), SH_ENOMEM, `new_error` ("<what>: <librdkafka's
 * reason>") when rd_kafka_new refuses the configuration as a whole. On error *out is NULL. */
int sh_kafka_producer_new(const sh_kclient_config *c, rd_kafka_t **out, sh_err *e);
int sh_kafka_consumer_new(const sh_kclient_config *c, rd_kafka_t **out, sh_err *e);

#endif
