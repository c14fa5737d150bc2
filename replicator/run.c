/* run.c — the replicator's loop: change log → per-shard deltas → Kafka, acknowledged before the
 * position moves. See replicator.h for the position rules. */
#include "replicator.h"

#include "sh_clock.h"
#include "sh_dpay.h"
#include "sh_fpblob.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"
#include "sh_shardmap.h"
#include "sh_vec.h"

#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Change rows (with blobs) per query: bounds a read's memory to READ_ROWS blobs (a 3-hour
 * track's blob is ~2 MB), twice with the prefetch. */
#define READ_ROWS 64
/* Longer than any message can stay in librdkafka (message.timeout.ms is forced below it), so
 * every produced delta has its delivery report before a round ends. */
#define PUBLISH_TIMEOUT_MS 60000
#define MESSAGE_TIMEOUT_MS "30000"

static int64_t mono_ms(void) { return (int64_t)sh_clock_mono_ms(); }

/* ---- one batch ---------------------------------------------------------------------------- */

/* The changes read for one batch, kept until their deltas are acknowledged. */
typedef struct batch {
    sh_change_list *lists;
    size_t n_lists, cap_lists;
    int64_t start;      /* the batch holds the changes after this seq ... */
    int64_t end;        /* ... up to this one (= start when it holds none) */
    int64_t jump;       /* > 0: the log held nothing in (read_pos, jump] */
    bool read;          /* filled (possibly empty) */
    bool caught_up;     /* the last read found the end of the log */
    size_t blob_bytes;  /* sum of blob sizes read */
} batch;

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n_lists; i++)
        sh_change_list_clear(&b->lists[i]);
    free(b->lists);
    memset(b, 0, sizeof *b);
}

static int batch_push(batch *b, sh_change_list *l)
{
    if (sh_vec_reserve(&b->lists, &b->cap_lists, b->n_lists + 1, SH_VEC_NOCAP))
        return SH_ENOMEM;
    b->lists[b->n_lists++] = *l;
    memset(l, 0, sizeof *l);
    return 0;
}

/* Reads changes after r->read_pos until caught up, or the batch is cfg.batch_ms old, or its blobs
 * reach cfg.batch_bytes. The log is gap-free by construction (a reader that sees seq N sees every
 * seq below it), so the only hole allowed is at the start, where a pruned log or a new epoch
 * begins: then b->jump is the seq before the first one held, and every shard's next delta starts
 * there, so a subscriber behind it sees a gap and bootstraps from a snapshot instead of silently
 * missing changes. Any other hole is SH_EGAP. */
static int batch_read(rp *r, int64_t after, batch *b, sh_err *e)
{
    int64_t t0 = mono_ms();
    bool first = true;
    b->start = after;
    b->read = true;
    for (;;) {
        sh_change_list l = {0};
        int rc = sh_primary_changes_since(r->db, after, READ_ROWS, SH_PRIMARY_WITH_BLOB, &l, e);
        if (rc)
            return rc;
        for (size_t i = 0; i < l.n; i++, first = false) {
            int64_t seq = l.v[i].seq;
            if (seq != after + 1 && first && after == r->read_pos) {
                SH_WARN("change_log_starts_later", "expected_seq=%" PRId64 " first_seq=%" PRId64
                        " note=\"subscribers behind it must bootstrap from a snapshot\"",
                        after + 1, seq);
                b->jump = seq - 1;
            } else if (seq != after + 1) {
                sh_change_list_clear(&l);
                return sh_err_set(e, SH_EGAP, "change log gap: seq %" PRId64 " follows %" PRId64,
                                  seq, after);
            }
            after = seq;
            b->blob_bytes += l.v[i].fp_blob_len;
        }
        size_t n = l.n;
        if (n && (rc = batch_push(b, &l))) {
            sh_change_list_clear(&l);
            return sh_err_set(e, rc, "out of memory");
        }
        b->end = after;
        b->caught_up = n < READ_ROWS;
        if (b->caught_up || b->blob_bytes >= r->cfg.batch_bytes ||
            mono_ms() - t0 >= r->cfg.batch_ms) {
            sh_series_observe(r->m.read_hist, (double)(mono_ms() - t0) / 1000.0);
            return 0;
        }
    }
}

/* ---- deltas ------------------------------------------------------------------------------- */

/* One encoded delta waiting for its acknowledgement. */
typedef struct pending {
    int shard;
    int64_t sequence;
    uint8_t *frame;
    size_t frame_len;
    size_t ops, postings, raw, wire;
    rd_kafka_resp_err_t err;
    bool queued; /* handed to librdkafka: a delivery report will come */
    bool done;
} pending;

typedef struct out_set {
    pending *v;
    size_t n, cap;
} out_set;

static void out_clear(out_set *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->v[i].frame);
    free(o->v);
    memset(o, 0, sizeof *o);
}

static pending *out_add(out_set *o)
{
    if (sh_vec_reserve(&o->v, &o->cap, o->n + 1, SH_VEC_NOCAP))
        return NULL;
    pending *p = &o->v[o->n++];
    memset(p, 0, sizeof *p);
    return p;
}

/* Per-shard builder state while a batch is grouped. */
typedef struct shard_acc {
    sh_dpay_builder *b;
    int64_t prev;     /* prev_sequence of the delta being built */
    int64_t last_op;  /* seq of the last op added */
    size_t postings;
    int fp_version;   /* highest fp_version among the ops */
} shard_acc;

static int seal(rp *r, int shard, shard_acc *a, int64_t sequence, out_set *o, sh_err *e)
{
    uint8_t *payload = NULL;
    size_t len = 0, raw = 0, ops = sh_dpay_builder_count(a->b);
    int rc = sh_dpay_builder_finish(a->b, SH_DPAY_CODEC_ZSTD, (int)r->cfg.zstd_level, &payload,
                                    &len, &raw, e);
    sh_dpay_builder_free(a->b);
    a->b = NULL;
    if (rc)
        return rc;
    sh_delta_envelope d;
    memset(&d, 0, sizeof d);
    d.shard = shard;
    d.epoch = atomic_load(&r->epoch);
    d.sequence = sequence;
    d.prev_sequence = a->prev;
    d.count = (int32_t)ops;
    d.fp_version = a->fp_version;
    d.codec = SH_CODEC_ZSTD;
    d.raw_size = (int64_t)raw;
    d.payload = payload;
    d.payload_len = len;
    d.commit_lsn = sequence;
    d.created_at_ms = sh_clock_wall_ms();
    snprintf(d.region, sizeof d.region, "%s", r->cfg.region ? r->cfg.region : "");
    pending *p = out_add(o);
    if (!p) {
        free(payload);
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    p->shard = shard;
    p->sequence = sequence;
    p->ops = ops;
    p->postings = a->postings;
    p->raw = raw;
    p->wire = len;
    rc = sh_delta_encode(&d, r->reg, &r->lim, &p->frame, &p->frame_len, e);
    free(payload);
    if (rc) {
        o->n--;
        return sh_err_wrap(e, rc, "shard %d delta %" PRId64, shard, sequence);
    }
    a->prev = sequence;
    a->postings = 0;
    a->fp_version = 0;
    return 0;
}

static int acc_begin(shard_acc *a, sh_err *e)
{
    if (a->b)
        return 0;
    return sh_dpay_builder_new(NULL, 0, &a->b, e);
}

/* Adds one change as an op of its shard's delta. */
static int add_change(rp *r, shard_acc *a, int shard, const sh_change *c, out_set *o, sh_err *e)
{
    sh_hash *h = NULL;
    size_t n = 0;
    int rc = 0;
    if (c->op == SH_CHANGE_UPSERT && c->fp_blob_len) {
        rc = sh_fpblob_decode(c->fp_blob, c->fp_blob_len, 0, &h, &n, e);
        if (rc)
            return sh_err_wrap(e, rc, "track %s (seq %" PRId64 ") has a bad posting blob",
                               c->external_id, c->seq);
    }
    /* A delta must fit in one Kafka message: seal what is there before an op that would push
     * the raw size (an upper bound of the compressed one) past --max-delta-bytes. */
    size_t est = n * 4 + strlen(c->external_id) + strlen(c->tenant) +
                 (c->metadata_json ? strlen(c->metadata_json) : 0) + 64;
    if (a->b && a->last_op > a->prev &&
        sh_dpay_builder_raw_bound(a->b) + est > r->cfg.max_delta_bytes)
        rc = seal(r, shard, a, a->last_op, o, e);
    if (rc == 0)
        rc = acc_begin(a, e);
    if (rc == 0) {
        sh_dop op;
        memset(&op, 0, sizeof op);
        op.seq = c->seq;
        op.kind = c->op == SH_CHANGE_DELETE ? SH_DOP_DELETE : SH_DOP_UPSERT;
        op.track_id = c->external_id;
        op.tenant = c->tenant;
        op.version = c->version;
        op.fp_version = c->fp_version;
        op.duration_s = c->duration_s;
        op.metadata = c->metadata_json;
        op.postings = h;
        op.npostings = n;
        rc = sh_dpay_builder_add(a->b, &op, e);
    }
    free(h);
    if (rc)
        return rc;
    a->last_op = c->seq;
    a->postings += n;
    if (c->fp_version > a->fp_version)
        a->fp_version = c->fp_version;
    return 0;
}

static int group_batch(rp *r, const batch *b, shard_acc *acc, out_set *o, size_t *superseded,
                       sh_err *e)
{
    for (size_t li = 0; li < b->n_lists; li++) {
        const sh_change_list *l = &b->lists[li];
        for (size_t i = 0; i < l->n; i++) {
            const sh_change *c = &l->v[i];
            int s = (int)sh_shard_of(c->external_id, strlen(c->external_id), (uint32_t)r->nshards);
            if (c->seq <= r->shards[s].pos || c->seq <= r->read_pos)
                continue; /* already in the topic (a restart re-reads from the slowest shard) */
            if (c->superseded) {
                /* A later change of the same track carries its newer state (or its delete);
                 * it is in this batch or a later one, so skipping loses nothing. */
                (*superseded)++;
                continue;
            }
            int rc = add_change(r, &acc[s], s, c, o, e);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Seals every shard that has ops, and idle shards due a heartbeat, at sequence `end`. */
static int seal_all(rp *r, shard_acc *acc, int64_t end, int64_t now, out_set *o, sh_err *e)
{
    for (int s = 0; s < r->nshards; s++) {
        shard_acc *a = &acc[s];
        /* A shard whose stream must jump (see batch_read) is sealed at once: its next delta
         * has to carry the jump. */
        bool idle_due = !a->b && r->shards[s].pos < end &&
                        (now - r->shards[s].last_ms >= r->cfg.heartbeat_ms ||
                         a->prev != r->shards[s].pos);
        if (!a->b && !idle_due)
            continue;
        int rc = acc_begin(a, e);
        if (rc == 0)
            rc = seal(r, s, a, end, o, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- publishing --------------------------------------------------------------------------- */

/* The delivery-report callback finds a delta through r->inflight, tagged with the round, so a
 * late report of an earlier round (after a failure) can never write into freed memory; frames
 * are copied by librdkafka (F_COPY) for the same reason. */
static void *dr_tag(uint64_t round, size_t i)
{
    return (void *)(uintptr_t)((round << 24) | (uint64_t)i);
}

static int produce(rp *r, out_set *o, sh_err *e)
{
    r->round++;
    r->inflight = o->v;
    r->n_inflight = o->n;
    for (size_t i = 0; i < o->n; i++) {
        pending *p = &o->v[i];
        char key[16];
        int kl = snprintf(key, sizeof key, "%d", p->shard);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            r->producer, RD_KAFKA_V_TOPIC(r->cfg.topic), RD_KAFKA_V_PARTITION(p->shard),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, (size_t)kl),
            RD_KAFKA_V_VALUE(p->frame, p->frame_len), RD_KAFKA_V_OPAQUE(dr_tag(r->round, i)),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(r->producer, 50);
            i--;
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            return sh_err_set(e, SH_ETOOBIG,
                              "the delta of shard %d up to seq %" PRId64 " (%zu bytes) is over "
                              "the producer's message.max.bytes: raise --max-delta-bytes' "
                              "limits (topic max.message.bytes, -X message.max.bytes) together",
                              p->shard, p->sequence, p->frame_len);
        if (err)
            return sh_kafka_err_set(e, err, "produce shard %d", p->shard);
        p->queued = true;
    }
    return 0;
}

/* After a failed round: drop what librdkafka still holds of it and wait for the reports it owes
 * (purged messages report at once), so that nothing of the round is in flight afterwards. */
static void abandon_round(rp *r, out_set *o)
{
    if (!r->producer || !o->n)
        return;
    rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    int64_t deadline = mono_ms() + PUBLISH_TIMEOUT_MS;
    for (;;) {
        size_t open = 0;
        for (size_t i = 0; i < o->n; i++)
            open += o->v[i].queued && !o->v[i].done;
        if (!open || mono_ms() > deadline)
            break;
        rd_kafka_poll(r->producer, 10);
    }
}

/* Waits until every delta of `o` has its delivery report; any failure fails the round (the
 * positions are then re-read from the topic). */
static int wait_acks(rp *r, out_set *o, sh_err *e)
{
    int64_t deadline = mono_ms() + PUBLISH_TIMEOUT_MS;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < o->n; i++) {
            if (o->v[i].done && o->v[i].err)
                return sh_kafka_err_set(e, o->v[i].err, "delta of shard %d not acknowledged",
                                        o->v[i].shard);
            done += o->v[i].done;
        }
        if (done == o->n)
            return 0;
        if (mono_ms() > deadline)
            return sh_err_set(e, SH_ETIMEOUT, "deltas not acknowledged within %d ms",
                              PUBLISH_TIMEOUT_MS);
        rd_kafka_poll(r->producer, 5);
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    rp *r = opaque;
    uint64_t tag = (uint64_t)(uintptr_t)m->_private;
    size_t i = (size_t)(tag & 0xffffff);
    if (tag >> 24 != r->round || !r->inflight || i >= r->n_inflight)
        return; /* a report of an abandoned round */
    r->inflight[i].err = m->err;
    r->inflight[i].done = true;
}

int rp_producer_new(rp *r, sh_err *e)
{
    /* Idempotent with acks=all: a retry inside librdkafka never duplicates or reorders, and an
     * acknowledged delta is on every in-sync replica. Not overridable by -X. */
    char max_bytes[32];
    snprintf(max_bytes, sizeof max_bytes, "%zu", r->cfg.max_delta_bytes + 65536);
    sh_kclient_kv defaults[] = {
        {"linger.ms", "1"},
        {"message.max.bytes", max_bytes}, /* the envelope around a payload of max_delta_bytes */
    };
    static sh_kclient_kv forced[] = {{"enable.idempotence", "true"},
                                     {"acks", "all"},
                                     {"message.timeout.ms", MESSAGE_TIMEOUT_MS}};
    sh_kclient_config kc = {.bootstrap = r->cfg.brokers,
                            .defaults = defaults,
                            .n_defaults = sizeof defaults / sizeof defaults[0],
                            .props = &r->cfg.kafka_props,
                            .forced = forced,
                            .n_forced = sizeof forced / sizeof forced[0],
                            .quiet_until_ready = true,
                            .what = "delta producer",
                            .opaque = r,
                            .dr_msg_cb = on_delivery};
    return sh_kafka_producer_new(&kc, &r->producer, e);
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void record(rp *r, const batch *b, const out_set *o, int64_t acked_ms)
{
    for (size_t i = 0; i < o->n; i++) {
        const pending *p = &o->v[i];
        rp_shard *sh = &r->shards[p->shard];
        sh->pos = p->sequence;
        sh->last_ms = mono_ms();
        sh_series_add(sh->deltas, 1);
        sh_series_add(sh->bytes, (double)p->frame_len);
        sh_series_add(sh->ops, (double)p->ops);
        sh_series_set(sh->position, (double)p->sequence);
        sh_series_add(r->m.postings, (double)p->postings);
        sh_series_add(r->m.raw_bytes, (double)p->raw);
        sh_series_add(r->m.wire_bytes, (double)p->wire);
    }
    for (size_t li = 0; li < b->n_lists; li++)
        for (size_t i = 0; i < b->lists[li].n; i++) {
            const sh_change *c = &b->lists[li].v[i];
            if (c->seq > r->read_pos)
                sh_series_observe(r->m.lag_hist, (double)(acked_ms - c->committed_ms) / 1000.0);
            if (c->seq > r->read_pos && !c->superseded)
                sh_series_add(r->m.blob_bytes, (double)c->fp_blob_len);
        }
}

static int oldest_commit(const batch *b, int64_t *ms)
{
    *ms = 0;
    if (b->n_lists && b->lists[0].n)
        *ms = b->lists[0].v[0].committed_ms;
    return 0;
}

/* One round over batch `b` (read here unless the previous round prefetched it): group, seal and
 * produce its deltas; while Kafka acknowledges them, read the next batch into `next` (the
 * database read overlaps the acks: throughput); then wait for every ack and advance. Deltas of
 * `next` are produced only after this round's are acknowledged, so a failed delivery can never
 * leave a later delta in the topic without the earlier one. *idle = `b` held no change. */
static int round_once(rp *r, batch *b, batch *next, bool *idle, sh_err *e)
{
    out_set o = {0};
    int rc = b->read ? 0 : batch_read(r, r->read_pos, b, e);
    shard_acc *acc = calloc((size_t)r->nshards, sizeof *acc);
    if (!acc)
        rc = rc ? rc : sh_err_set(e, SH_ENOMEM, "out of memory");
    for (int s = 0; acc && s < r->nshards; s++)
        acc[s].prev = r->shards[s].pos < b->jump ? b->jump : r->shards[s].pos;
    size_t superseded = 0;
    *idle = b->n_lists == 0;
    if (rc == 0) {
        int64_t oldest;
        oldest_commit(b, &oldest);
        atomic_store(&r->oldest_pending_ms, oldest);
        rc = group_batch(r, b, acc, &o, &superseded, e);
    }
    int64_t end = b->n_lists ? b->end : r->read_pos;
    if (rc == 0)
        rc = seal_all(r, acc, end, mono_ms(), &o, e);
    int64_t t0 = mono_ms();
    if (rc == 0 && o.n) {
        atomic_store(&r->acks_since_ms, t0 > 0 ? t0 : 1);
        rc = produce(r, &o, e);
    }
    if (rc == 0 && b->n_lists && !b->caught_up) {
        sh_err ne = {0};
        if (batch_read(r, end, next, &ne)) {
            batch_clear(next); /* read again next round, where its error counts */
        }
    }
    if (rc == 0 && o.n)
        rc = wait_acks(r, &o, e);
    if (rc == 0 && o.n && r->cfg.test_kill_after_acks > 0 && --r->cfg.test_kill_after_acks == 0)
        raise(SIGKILL); /* the chaos hook: Kafka holds these deltas, the position has not moved */
    if (rc)
        abandon_round(r, &o);
    atomic_store(&r->acks_since_ms, 0);
    r->inflight = NULL;
    r->n_inflight = 0;
    if (rc == 0) {
        if (o.n)
            sh_series_observe(r->m.publish_hist, (double)(mono_ms() - t0) / 1000.0);
        record(r, b, &o, sh_clock_wall_ms());
        r->read_pos = end;
        atomic_store(&r->oldest_pending_ms, 0);
        sh_series_add(r->m.superseded, (double)superseded);
        sh_series_set(r->m.last_seq, (double)end);
        if (o.n)
            sh_series_add(r->m.batches, 1);
    } else {
        batch_clear(next);
    }
    for (int s = 0; acc && s < r->nshards; s++)
        sh_dpay_builder_free(acc[s].b);
    free(acc);
    out_clear(&o);
    batch_clear(b);
    return rc;
}

static void refresh_primary_seq(rp *r)
{
    sh_primary_counts c;
    sh_err e = {0};
    if (sh_primary_last_seq(r->db, &c.last_seq, &e) == 0) {
        atomic_store(&r->primary_seq, c.last_seq);
        sh_series_set(r->m.primary_seq, (double)c.last_seq);
        sh_series_set(r->m.backlog, (double)(c.last_seq - r->read_pos));
        atomic_store(&r->db_ok, true);
    }
}

/* After a Kafka failure: rebuild the producer and re-read the positions from the topic, until
 * both work (or a stop is asked). A position that cannot be right (the topic ahead of the
 * primary, a newer epoch) is returned: no retry cures it. */
static int recover(rp *r, sh_err *e)
{
    for (int attempt = 0; !sh_stop_requested(r->stop); attempt++) {
        if (r->producer) {
            rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_destroy(r->producer);
            r->producer = NULL;
        }
        int rc = rp_producer_new(r, e);
        if (rc == 0)
            rc = rp_positions_load(r, (int)r->cfg.connect_timeout_s * 1000, e);
        atomic_store(&r->kafka_ok, rc == 0);
        if (rc == 0 || rc == SH_EINVAL || rc == SH_EFORMAT)
            return rc;
        SH_WARN("recover_failed", "code=%s msg=%s", sh_err_name(rc), SH_Q(sh_err_text(e)));
        sh_clock_sleep_ms(sh_backoff_ms(200, 10000, attempt), sh_stop_requested_fn, r->stop);
    }
    return 0;
}

/* An operator started a new epoch (README, "Epochs"): continue in it from its start seq. */
static int follow_epoch(rp *r, sh_err *e)
{
    int64_t epoch = 0, start = 0;
    sh_err ee = {0};
    if (sh_primary_replication_get(r->db, &epoch, &start, &ee) || epoch == atomic_load(&r->epoch))
        return 0; /* an unreachable primary shows in the next round */
    SH_WARN("epoch_changed", "from=%" PRId64 " to=%" PRId64 " start_seq=%" PRId64, (int64_t)atomic_load(&r->epoch), epoch,
            start);
    atomic_store(&r->epoch, epoch);
    r->epoch_start = start;
    return rp_positions_load(r, (int)r->cfg.connect_timeout_s * 1000, e);
}

/* Errors no retry cures: bad data in the primary (a blob, a field over the caps), a delta over
 * Kafka's message size, a gap in the log, positions that cannot be right, memory. The process
 * stops with the message naming the change; a supervisor restart meets the same and alerts. */
static bool is_fatal(int rc)
{
    return rc == SH_EGAP || rc == SH_EFORMAT || rc == SH_ENOMEM || rc == SH_EINVAL ||
           rc == SH_ETOOBIG || rc == SH_EZSTD || rc == SH_EAVRO || rc == SH_ESCHEMA ||
           rc == SH_EUNSUPPORTED || rc == SH_EINTERNAL;
}

int rp_run(rp *r, sh_err *e)
{
    int attempt = 0;
    int64_t last_seq_check = 0;
    batch b[2];
    memset(b, 0, sizeof b);
    int cur = 0;
    while (!sh_stop_requested(r->stop)) {
        bool idle = true;
        sh_err re = {0};
        int rc = round_once(r, &b[cur], &b[1 - cur], &idle, &re);
        cur = 1 - cur; /* the prefetched batch (if any) is the next round's */
        if (is_fatal(rc)) {
            batch_clear(&b[cur]);
            sh_err_set(e, rc, "%s", sh_err_text(&re));
            return rc;
        }
        if (rc) {
            sh_series_add(r->m.errors, 1);
            batch_clear(&b[cur]);
            bool db = rc == SH_ETRANSIENT || rc == SH_EDB;
            atomic_store(db ? &r->db_ok : &r->kafka_ok, false);
            double wait = sh_backoff_ms(100, 10000, attempt++);
            SH_WARN("round_failed", "code=%s msg=\"%s\" backoff_ms=%.0f", sh_err_name(rc),
                    sh_err_text(&re), wait);
            if (sh_clock_sleep_ms(wait, sh_stop_requested_fn, r->stop))
                break;
            if (!db && (rc = recover(r, e)))
                return rc;
            continue;
        }
        attempt = 0;
        atomic_store(&r->kafka_ok, true);
        atomic_store(&r->db_ok, true);
        int64_t now = mono_ms();
        if (now - last_seq_check >= 1000 || !idle) {
            refresh_primary_seq(r);
            last_seq_check = now;
            if ((rc = follow_epoch(r, e)))
                return rc;
        }
        if (idle) {
            /* NOTIFY arrives at commit; the timeout bounds a lost notification and paces the
             * heartbeats of idle shards. */
            long wait = r->cfg.poll_ms < r->cfg.heartbeat_ms ? r->cfg.poll_ms : r->cfg.heartbeat_ms;
            int wrc = sh_primary_wait_changes(r->db, (int)(wait < 200 ? wait : 200), &re);
            if (wrc && wrc != SH_ETIMEOUT)
                atomic_store(&r->db_ok, false);
        }
    }
    batch_clear(&b[cur]);
    return 0;
}
