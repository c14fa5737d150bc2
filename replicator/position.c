/* position.c — where each shard's delta stream stands, read back from the topic.
 *
 * Why from the topic and not from a progress table: the topic is what subscribers see, so it
 * cannot disagree with them, and the replicator's database role stays read-only. The price is one
 * fetch of the last message per partition at start-up and after a publish failure. */
#include "replicator.h"

#include "sh_clock.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static int64_t mono_ms(void) { return (int64_t)sh_clock_mono_ms(); }

static int consumer_new(const char *brokers, const sh_strlist *props, rd_kafka_t **out, sh_err *e)
{
    /* A throw-away group id: assign() joins no group, and nothing is ever committed. */
    static sh_kclient_kv forced[] = {{"group.id", "soundhash-replicator-positions"},
                                     {"enable.auto.commit", "false"},
                                     {"enable.partition.eof", "true"}};
    sh_kclient_config kc = {.bootstrap = brokers,
                            .props = props,
                            .forced = forced,
                            .n_forced = sizeof forced / sizeof forced[0],
                            .quiet_until_ready = true,
                            .what = "position reader"};
    int rc = sh_kafka_consumer_new(&kc, out, e);
    if (rc == 0)
        rd_kafka_poll_set_consumer(*out);
    return rc;
}

/* Decodes one delta message and stores its sequence if it belongs to `epoch`. A message of an
 * older epoch leaves -1 (the shard has not started this epoch); a newer one is an error: another
 * replicator already moved on and this one must not write into the past. */
static int take_message(const rd_kafka_message_t *m, int64_t epoch, sh_registry *reg,
                        const sh_schema_limits *lim, int64_t *seqs, sh_err *e)
{
    sh_delta_envelope d;
    memset(&d, 0, sizeof d);
    int rc = sh_delta_decode(m->payload, m->len, reg, lim, &d, e);
    if (rc)
        return sh_err_wrap(e, SH_EFORMAT, "partition %d offset %lld is not an index delta",
                           (int)m->partition, (long long)m->offset);
    if (d.shard != m->partition)
        rc = sh_err_set(e, SH_EFORMAT, "partition %d offset %lld holds a delta of shard %d",
                        (int)m->partition, (long long)m->offset, (int)d.shard);
    else if (d.epoch > epoch)
        rc = sh_err_set(e, SH_EINVAL,
                        "partition %d already holds epoch %lld, newer than the primary's %lld: "
                        "is this replicator pointed at an old primary?",
                        (int)m->partition, (long long)d.epoch, (long long)epoch);
    else if (d.epoch == epoch)
        seqs[m->partition] = d.sequence;
    sh_delta_clear(&d);
    return rc;
}

static int assign_tails(rd_kafka_t *rk, const char *topic, int nshards, int timeout_ms,
                        int64_t *seqs, int *waiting, sh_err *e)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nshards);
    *waiting = 0;
    int rc = 0;
    for (int p = 0; p < nshards && rc == 0; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, timeout_ms);
        if (err) {
            rc = sh_kafka_err_set(e, err, "watermarks of %s[%d]", topic, p);
            break;
        }
        seqs[p] = -1;
        if (hi > lo) {
            rd_kafka_topic_partition_list_add(l, topic, p)->offset = hi - 1;
            (*waiting)++;
        }
    }
    if (rc == 0 && *waiting) {
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
        if (err)
            rc = sh_kafka_err_set(e, err, "assign %s", topic);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int rp_topic_last_sequences(const char *brokers, const sh_strlist *props, const char *topic,
                            int nshards, int64_t epoch, sh_registry *reg,
                            const sh_schema_limits *lim, int timeout_ms, int64_t *seqs, sh_err *e)
{
    rd_kafka_t *rk = NULL;
    int rc = consumer_new(brokers, props, &rk, e);
    if (rc)
        return rc;
    int waiting = 0;
    rc = assign_tails(rk, topic, nshards, timeout_ms, seqs, &waiting, e);
    char *seen = calloc((size_t)nshards, 1);
    if (!seen && rc == 0)
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    int64_t deadline = mono_ms() + timeout_ms;
    while (rc == 0 && waiting > 0) {
        if (mono_ms() > deadline) {
            rc = sh_err_set(e, SH_ETIMEOUT, "last deltas of %s not read within %d ms", topic,
                            timeout_ms);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->partition >= 0 && m->partition < nshards && !seen[m->partition]) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* The tail vanished between the watermark query and the fetch (retention). */
                seen[m->partition] = 1;
                waiting--;
            } else if (m->err) {
                rc = sh_kafka_err_set(e, m->err, "read %s[%d]", topic, (int)m->partition);
            } else {
                rc = take_message(m, epoch, reg, lim, seqs, e);
                seen[m->partition] = 1;
                waiting--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(seen);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

int rp_positions_load(rp *r, int timeout_ms, sh_err *e)
{
    int64_t *seqs = calloc((size_t)r->nshards, sizeof *seqs);
    if (!seqs)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    int rc = rp_topic_last_sequences(r->cfg.brokers, &r->cfg.kafka_props, r->cfg.topic,
                                     r->nshards, atomic_load(&r->epoch), r->reg, &r->lim, timeout_ms, seqs, e);
    int64_t last = 0, max = 0;
    if (rc == 0)
        rc = sh_primary_last_seq(r->db, &last, e);
    for (int s = 0; rc == 0 && s < r->nshards; s++)
        max = seqs[s] > max ? seqs[s] : max;
    /* The topic holds changes the primary does not: it lost commits the topic has (a promoted
     * asynchronous standby, a restore). Its seqs would be reused by other changes, which the
     * subscribers would skip as already applied: refuse, a new epoch is the way on. */
    if (rc == 0 && max > last)
        rc = sh_err_set(e, SH_EINVAL,
                        "the delta topic is at seq %" PRId64 " but the primary only at %" PRId64
                        " (epoch %" PRId64 "): it lost changes the subscribers have; start a new "
                        "epoch (README, \"Epochs\")",
                        max, last, (int64_t)atomic_load(&r->epoch));
    if (rc == 0) {
        int64_t min = INT64_MAX;
        for (int s = 0; s < r->nshards; s++) {
            r->shards[s].pos = seqs[s] >= 0 ? seqs[s] : r->epoch_start;
            if (r->shards[s].pos < min)
                min = r->shards[s].pos;
            sh_series_set(r->shards[s].position, (double)r->shards[s].pos);
        }
        r->read_pos = min;
        SH_INFO("positions_loaded", "epoch=%lld read_from=%lld shards=%d", (long long)atomic_load(&r->epoch),
                (long long)r->read_pos, r->nshards);
    }
    free(seqs);
    return rc;
}
