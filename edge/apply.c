/* apply.c — the edge's only writer: Kafka deltas → its shards, each delta with the shard's cursor
 * in one LMDB transaction (so a SIGKILL at any instant resumes exactly where the shard's data is).
 *
 * Per delta of shard N at (epoch E, position P), read at offset O:
 *   not a valid IndexDelta, of another shard, or a payload that does not decode (truncated,
 *   bit-flipped, wrong checksum, sizes past the caps: refused before allocation by the decoders)
 *   or holds another number of changes than the envelope's count
 *                                 rejected: skipped, never applied, counted in
 *                                 soundhash_edge_rejected_total{input="delta",reason}, and the
 *                                 edge serves on (a track id or metadata the answers could not
 *                                 carry as strict JSON too: ed_op_check).
 *                                 Skipping loses nothing silently: if the message was the real
 *                                 delta, the next one's prev_sequence is past P, a gap (below)
 *   epoch older than E            skipped (a stream the node has already left; counted as
 *                                 rejected, reason epoch)
 *   epoch newer than E            bootstrap (the primary's history restarted)
 *   sequence <= P                 skipped (redelivery, or the tail behind a snapshot)
 *   prev_sequence > P             a gap: bootstrap
 *   otherwise                     ops with seq > P applied, cursor (E, sequence, O) in the same
 *                                 transaction
 * A bootstrap a delta asked for must reach the delta's (epoch, prev_sequence): that is the delta's
 * claim. When the snapshot source keeps answering with valid snapshots older than the claim for
 * --snapshot-confirm-timeout, the delta is rejected (reason unconfirmed) and the shard resumes
 * after it (claim_unconfirmed): an unsigned delta alone cannot stop a shard.
 * An empty shard (no cursor) bootstraps when a snapshot source is configured; without one it
 * reads the partition from the beginning and accepts a stream that starts at seq 0 (a topic that
 * holds its whole history), any other start being a gap. An offset Kafka no longer holds
 * (auto.offset.reset=error) is a gap too. A bootstrap that fails is retried every few seconds; the
 * shard then takes no deltas and /ready says so. A bootstrap never takes a snapshot older than the
 * shard's (epoch, position), nor one short of the (epoch, prev_sequence) of the delta that asked
 * for it (a stale snapshot file, a replicator not yet in the new epoch): swapped in, it would move
 * the shard back in time, and the newer deltas, then the same bootstrap again, would loop.
 * Snapshots refused for their bytes or their header count in soundhash_edge_rejected_total
 * {input="snapshot"} (ed_bootstrap names the reason), and in the bootstrap failures.
 */
#include "edge.h"

#include "sh_shardmap.h"

#include "sh_clock.h"
#include "sh_dpay.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ED_REASSIGN_GAP_MS: the least time between two assign() calls (see ed_run). */
enum { ED_BOOTSTRAP_RETRY_MS = 3000, ED_REASSIGN_GAP_MS = 1000, ED_CURSOR_MAX = 128 };
#define ED_CURSOR_KEY "edge"

int ed_cursor_parse(const char *v, size_t len, int64_t *epoch, int64_t *pos, int64_t *offset,
                    int64_t *created_ms)
{
    char buf[ED_CURSOR_MAX];
    if (len == 0 || len >= sizeof buf)
        return SH_EFORMAT;
    memcpy(buf, v, len);
    buf[len] = '\0';
    int fmt = 0;
    long long a, b, c, d;
    if (sscanf(buf, "%d %lld %lld %lld %lld", &fmt, &a, &b, &c, &d) != 5 || fmt != 1 || a < 0 ||
        b < 0 || c < -1 || d < 0)
        return SH_EFORMAT;
    *epoch = a;
    *pos = b;
    *offset = c;
    *created_ms = d;
    return 0;
}

int ed_cursor_put(sh_shard_batch *b, int64_t epoch, int64_t pos, int64_t offset,
                  int64_t created_ms, sh_err *e)
{
    char v[ED_CURSOR_MAX];
    int n = snprintf(v, sizeof v, "1 %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64, epoch, pos,
                     offset, created_ms);
    return sh_shard_batch_set_cursor(b, ED_CURSOR_KEY, v, (size_t)n, e);
}

static int open_one(ed_shard *sh, sh_err *e)
{
    /* Leftovers of a bootstrap a crash interrupted (bootstrap.c): the live directory, or none
     * (then the shard is empty and bootstraps again). */
    char p[4200];
    snprintf(p, sizeof p, "%s.staging", sh->dir);
    int rc = ed_rm_shard_dir(p, e);
    snprintf(p, sizeof p, "%s.old", sh->dir);
    if (rc == 0)
        rc = ed_rm_shard_dir(p, e);
    if (rc)
        return rc;
    sh_shard_opts so;
    sh_shard_opts_default(&so);
    so.fp_version = -1; /* whatever versions the stream brings */
    rc = sh_shard_open(sh->dir, &so, &sh->s, e);
    if (rc)
        return rc;
    char v[ED_CURSOR_MAX];
    size_t len = 0;
    int64_t ep = 0, pos = 0, off = -1, cr = 0;
    rc = sh_shard_get_cursor(sh->s, ED_CURSOR_KEY, v, sizeof v, &len, e);
    sh->floor_epoch = sh->floor_seq = -1;
    sh->claim_offset = -1;
    sh->claim_contradicted = false;
    if (rc == SH_ENOTFOUND) {
        sh->need_bootstrap = true; /* empty (or never finished a bootstrap) */
        sh->offset = -1;
        atomic_store(&sh->epoch, -1);
        atomic_store(&sh->position, -1);
        return 0;
    }
    if (rc == 0 && ed_cursor_parse(v, len, &ep, &pos, &off, &cr))
        rc = sh_err_set(e, SH_EFORMAT, "%s: unreadable cursor", sh->dir);
    if (rc)
        return rc;
    atomic_store(&sh->epoch, ep);
    atomic_store(&sh->position, pos);
    atomic_store(&sh->created_ms, cr);
    sh->need_bootstrap = false;
    sh->offset = off;
    return 0;
}

int ed_shards_open(ed *x, sh_err *e)
{
    for (size_t i = 0; i < x->nheld; i++) {
        ed_shard *sh = &x->held[i];
        int rc = open_one(sh, e);
        if (rc)
            return sh_err_wrap(e, rc, "shard %d (%s)", sh->n, sh->dir);
        ed_shard_gauges(x, sh);
        SH_INFO("shard_opened", "shard=%d epoch=%" PRId64 " position=%" PRId64 " offset=%" PRId64,
                sh->n, (int64_t)atomic_load(&sh->epoch), (int64_t)atomic_load(&sh->position),
                sh->offset);
    }
    return 0;
}

void ed_shards_close(ed *x)
{
    for (size_t i = 0; i < x->nheld; i++) {
        sh_shard_free(x->held[i].s);
        x->held[i].s = NULL;
    }
}

static ed_shard *held_of(ed *x, int partition)
{
    for (size_t i = 0; i < x->nheld; i++)
        if (x->held[i].n == partition)
            return &x->held[i];
    return NULL;
}

/* (Re)assigns every held partition from where its shard stands: the offset after the last delta
 * handled, or the beginning of what Kafka holds (after a bootstrap, or an empty shard). */
static int assign_all(ed *x, sh_err *e)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)x->nheld);
    if (!l)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    for (size_t i = 0; i < x->nheld; i++) {
        const ed_shard *sh = &x->held[i];
        rd_kafka_topic_partition_list_add(l, x->cfg.topic, sh->n)->offset =
            sh->offset >= 0 ? sh->offset + 1 : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(x->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    return err ? sh_kafka_err_set(e, err, "assign %s", x->cfg.topic) : 0;
}

/* The oldest snapshot the next bootstrap of `sh` may take (ed_bootstrap): (epoch, seq) — the start
 * of the delta that asks for it — or what the shard holds, whichever is newer. */
static void set_floor(ed_shard *sh, int64_t epoch, int64_t seq)
{
    const int64_t e0 = atomic_load(&sh->epoch), p0 = atomic_load(&sh->position);
    if (epoch < e0 || (epoch == e0 && seq < p0)) {
        epoch = e0;
        seq = p0;
    }
    sh->floor_epoch = epoch;
    sh->floor_seq = seq;
}

/* A delta message refused (see the file comment): skipped, logged and counted by `reason`. */
static void reject(ed *x, ed_shard *sh, int64_t offset, const char *reason, const sh_err *why)
{
    sh->offset = offset;
    ed_count_rejected(x, "delta", reason);
    SH_WARN("delta_rejected", "shard=%d offset=%" PRId64 " reason=%s code=%s msg=\"%s\"", sh->n,
            offset, reason, sh_err_name(why ? why->code : 0), why ? sh_err_text(why) : "");
}

/* The claim of the delta at sh->claim_offset — its (epoch, prev_sequence), which the bootstrap it
 * asked for must reach — contradicted by the snapshot source: a valid snapshot, older (SH_ESTALE).
 * Nothing but the delta says that epoch or sequence exists, and deltas are not signed: a forged
 * or corrupt one would keep the shard waiting (taking no deltas) forever. Once the source has
 * contradicted it for --snapshot-confirm-timeout, the delta is rejected (reason unconfirmed) and
 * the shard resumes after it with what it holds (untouched: the snapshot was refused from its
 * header). A real delta rejected so (a source lagging longer than that) loses nothing: the next
 * delta of that epoch, at the latest the next heartbeat, asks again. Returns true when rejected
 * (the caller re-assigns). A source that cannot be reached confirms nothing and contradicts
 * nothing: the shard waits for it. */
static bool claim_unconfirmed(ed *x, ed_shard *sh, const sh_err *why)
{
    if (sh->claim_offset < 0)
        return false;
    const double now = sh_clock_mono_ms();
    if (!sh->claim_contradicted) {
        sh->claim_contradicted = true;
        sh->claim_since_ms = now;
    }
    if (now - sh->claim_since_ms < (double)x->cfg.snapshot_confirm_s * 1000.0)
        return false;
    reject(x, sh, sh->claim_offset, "unconfirmed", why);
    sh->need_bootstrap = false;
    sh->claim_offset = -1;
    sh->claim_contradicted = false;
    sh->floor_epoch = sh->floor_seq = -1;
    return true;
}

/* Bootstraps a shard; on failure the shard waits (need_bootstrap) and the loop retries. Returns
 * 1 when the shard was replaced or the delta that asked was rejected (the caller re-assigns), 0
 * when it still waits, or a fatal code (the swap itself failed). */
static int try_bootstrap(ed *x, ed_shard *sh, sh_err *e)
{
    sh->need_bootstrap = true;
    sh->offset = -1;
    sh_err be = {0};
    const char *rejected = NULL;
    const double t0 = sh_clock_mono_ms();
    int rc = ed_bootstrap(x, sh, &rejected, &be);
    if (rc == SH_EINTERNAL) {
        *e = be;
        return rc;
    }
    if (rc) {
        sh_series_add(x->m.errors, 1);
        if (rejected)
            ed_count_rejected(x, "snapshot", rejected);
        SH_WARN("bootstrap_failed", "shard=%d code=%s rejected=%s msg=\"%s\"", sh->n,
                sh_err_name(rc), rejected ? rejected : "no", sh_err_text(&be));
        return rc == SH_ESTALE && claim_unconfirmed(x, sh, &be) ? 1 : 0;
    }
    sh->need_bootstrap = false;
    sh->claim_offset = -1;
    sh->claim_contradicted = false;
    sh_series_add(x->m.bootstraps, 1);
    ed_shard_gauges(x, sh);
    SH_INFO("bootstrapped", "shard=%d epoch=%" PRId64 " position=%" PRId64 " ms=%.0f", sh->n,
            (int64_t)atomic_load(&sh->epoch), (int64_t)atomic_load(&sh->position),
            sh_clock_mono_ms() - t0);
    return 1;
}

/* Shards that wait for a bootstrap: tried now (start-up) or every few seconds. An empty shard
 * without a snapshot source starts from seq 0 instead (see the file comment). */
static int bootstrap_waiting(ed *x, bool *reassign, sh_err *e)
{
    for (size_t i = 0; i < x->nheld; i++) {
        ed_shard *sh = &x->held[i];
        if (!sh->need_bootstrap || sh_stop_requested(x->stop))
            continue;
        if (!x->cfg.snapshot_source[0] && atomic_load(&sh->position) < 0) {
            atomic_store(&sh->position, 0); /* epoch -1: adopted from the first delta */
            sh->need_bootstrap = false;
            *reassign = true;
            continue;
        }
        int rc = try_bootstrap(x, sh, e);
        if (rc < 0)
            return rc;
        *reassign |= rc == 1;
    }
    return 0;
}

int ed_op_check(const sh_dop *op, sh_err *e)
{
    int rc = sh_track_id_check(op->track_id, strlen(op->track_id), e);
    if (rc)
        return sh_err_wrap(e, SH_EFORMAT, "op seq %" PRId64, op->seq);
    if (op->metadata && op->metadata[0]) {
        json_error_t je;
        json_t *j = json_loads(op->metadata, JSON_DECODE_ANY, &je);
        if (!j)
            return sh_err_set(e, SH_EFORMAT, "op seq %" PRId64 ": metadata is not UTF-8 JSON: %s",
                              op->seq, je.text);
        json_decref(j);
    }
    return 0;
}

/* The payload's ops, decoded and checked against the shard (every track hashes to it) and
 * ed_op_check. Returns 0,
 * or an error with *p NULL: the payload is hostile or corrupt, never a storage failure. */
static int decode_ops(const ed *x, const ed_shard *sh, const sh_delta_envelope *d, sh_dpay **p,
                      const char **reason, sh_err *e)
{
    *reason = "payload";
    int rc = sh_dpay_decode(d->payload, d->payload_len, (int)d->codec, (size_t)d->raw_size, NULL,
                            p, e);
    if (rc == 0 && sh_dpay_count(*p) != (size_t)d->count)
        rc = sh_err_set(e, SH_EFORMAT, "the envelope counts %d changes, the payload holds %zu",
                        (int)d->count, sh_dpay_count(*p));
    for (size_t i = 0; rc == 0 && i < sh_dpay_count(*p); i++) {
        const sh_dop *op = sh_dpay_op(*p, i);
        if (sh_shard_of(op->track_id, strlen(op->track_id), (uint32_t)x->nshards) !=
            (uint32_t)sh->n) {
            *reason = "shard";
            rc = sh_err_set(e, SH_EFORMAT, "op seq %" PRId64 ": a track of another shard",
                            op->seq);
        }
        if (rc == 0)
            rc = ed_op_check(op, e); /* what the answers carry: strict JSON */
    }
    if (rc) {
        sh_dpay_free(*p);
        *p = NULL;
    }
    return rc;
}

/* Applies the ops above the shard's position and the new cursor in one transaction. */
static int apply_delta(ed *x, ed_shard *sh, const sh_delta_envelope *d, const sh_dpay *p,
                       int64_t offset, sh_err *e)
{
    int rc;
    const int64_t pos = atomic_load(&sh->position);
    sh_shard_batch *b = NULL;
    size_t applied = 0, skipped = 0;
    rc = sh_shard_batch_begin(sh->s, 0, &b, e);
    for (size_t i = 0; rc == 0 && i < sh_dpay_count(p); i++) {
        const sh_dop *op = sh_dpay_op(p, i);
        if (op->seq <= pos || op->seq > d->sequence) {
            skipped++;
            continue;
        }
        rc = sh_shard_batch_apply(b, op, e);
        applied++;
    }
    if (rc == 0)
        rc = ed_cursor_put(b, d->epoch, d->sequence, offset, d->created_at_ms, e);
    if (rc == 0) {
        rc = sh_shard_batch_commit(b, NULL, e);
        b = NULL;
    }
    sh_shard_batch_abort(b);
    if (rc)
        return rc;
    atomic_store(&sh->epoch, d->epoch);
    atomic_store(&sh->position, d->sequence);
    atomic_store(&sh->created_ms, d->created_at_ms);
    sh->offset = offset;
    sh_series_add(x->m.deltas, 1);
    sh_series_add(x->m.ops_applied, (double)applied);
    sh_series_add(x->m.ops_skipped, (double)skipped);
    int64_t lag = sh_clock_wall_ms() - d->created_at_ms;
    sh_series_observe(x->m.apply_lag, (double)(lag > 0 ? lag : 0) / 1000.0);
    sh_series_set(sh->m_position, (double)d->sequence); /* sizes: ed_run, once a second */
    return 0;
}

typedef enum { ED_DONE, ED_NEED_BOOTSTRAP } ed_verdict;

/* Decides what one delta message means for its shard (file comment) and applies it. */
static int handle_delta(ed *x, ed_shard *sh, const rd_kafka_message_t *m, ed_verdict *v,
                        sh_err *e)
{
    *v = ED_DONE;
    sh_delta_envelope d;
    memset(&d, 0, sizeof d);
    sh_err why = {0};
    int rc = sh_delta_decode(m->payload, m->len, x->reg, &x->lim, &d, &why);
    if (rc) {
        reject(x, sh, m->offset, "envelope", &why);
        return 0;
    }
    int64_t epoch = atomic_load(&sh->epoch), pos = atomic_load(&sh->position);
    if (d.shard != sh->n) {
        sh_err_set(&why, SH_EFORMAT, "partition %d holds a delta of shard %d", sh->n,
                   (int)d.shard);
        reject(x, sh, m->offset, "shard", &why);
    } else if (epoch < 0 && d.prev_sequence > 0) {
        *v = ED_NEED_BOOTSTRAP; /* an empty shard and a stream that starts later */
    } else if (epoch >= 0 && d.epoch < epoch) {
        sh_err_set(&why, SH_EFORMAT, "epoch %" PRId64 " is older than the shard's %" PRId64,
                   d.epoch, epoch);
        reject(x, sh, m->offset, "epoch", &why);
    } else if (epoch >= 0 && d.epoch > epoch) {
        SH_INFO("epoch_changed", "shard=%d from=%" PRId64 " to=%" PRId64, sh->n, epoch, d.epoch);
        *v = ED_NEED_BOOTSTRAP;
    } else if (d.sequence <= pos) {
        sh->offset = m->offset;
        sh_series_add(x->m.ops_skipped, d.count);
    } else if (d.prev_sequence > pos) {
        SH_WARN("gap", "shard=%d position=%" PRId64 " prev_sequence=%" PRId64 " offset=%lld",
                sh->n, pos, d.prev_sequence, (long long)m->offset);
        sh_series_add(x->m.gaps, 1);
        *v = ED_NEED_BOOTSTRAP;
    } else {
        sh_dpay *p = NULL;
        const char *reason = NULL;
        if (decode_ops(x, sh, &d, &p, &reason, &why)) {
            reject(x, sh, m->offset, reason, &why);
        } else {
            rc = apply_delta(x, sh, &d, p, m->offset, e); /* a storage failure: fatal */
            if (rc)
                rc = sh_err_wrap(e, rc,
                                 "shard %d: delta (%" PRId64 ", %" PRId64 "] at offset %lld",
                                 sh->n, d.prev_sequence, d.sequence, (long long)m->offset);
        }
        sh_dpay_free(p);
    }
    if (rc == 0 && *v == ED_NEED_BOOTSTRAP) {
        set_floor(sh, d.epoch, d.prev_sequence); /* the snapshot must reach this delta's start */
        sh->claim_offset = m->offset;            /* ...or the delta is rejected (claim_unconfirmed) */
        sh->claim_contradicted = false;
    }
    sh_delta_clear(&d);
    return rc;
}

/* One message (or consumer event). Returns 0, or a fatal code: a delta that cannot be applied is
 * data the edge must not skip, so the process stops naming it (like the replicator). */
static int on_message(ed *x, const rd_kafka_message_t *m, bool *reassign, sh_err *e)
{
    ed_shard *sh = m->rkt ? held_of(x, m->partition) : NULL;
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && sh) {
        /* Retention dropped deltas this shard has not applied: only a snapshot can bridge it. */
        SH_WARN("offset_gone", "shard=%d offset=%" PRId64 " reason=\"%s\"", sh->n,
                sh->offset + 1, rd_kafka_message_errstr(m));
        sh_series_add(x->m.gaps, 1);
        *reassign = true;
        set_floor(sh, -1, -1); /* what the shard holds */
        sh->claim_offset = -1;  /* no delta asked: nothing to reject */
        int rc = try_bootstrap(x, sh, e); /* the partition restarts from its beginning */
        return rc < 0 ? rc : 0;
    }
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            SH_WARN("kafka_error", "msg=\"%s\"", rd_kafka_message_errstr(m));
        return 0;
    }
    if (!sh || sh->need_bootstrap)
        return 0; /* a waiting shard takes nothing: it re-reads from its snapshot's position */
    ed_verdict v = ED_DONE;
    int rc = handle_delta(x, sh, m, &v, e);
    if (rc == 0 && v == ED_NEED_BOOTSTRAP) {
        rc = try_bootstrap(x, sh, e);
        *reassign = true; /* bootstrapped or not: the partition restarts from its new state */
        rc = rc < 0 ? rc : 0;
    }
    return rc;
}

int ed_consumer_start(ed *x, sh_err *e)
{
    /* assign() joins no group and nothing is ever committed: the position lives in the shard. */
    static sh_kclient_kv forced[] = {{"group.id", "soundhash-edge"},
                                     {"enable.auto.commit", "false"},
                                     {"enable.auto.offset.store", "false"},
                                     {"auto.offset.reset", "error"}};
    /* A fetch is held by the broker until data arrives or this wait ends. Apache Kafka answers
     * as soon as a delta lands, but some brokers (librdkafka's mock among them) hold the fetch
     * for the whole wait: 500 ms by default, which the apply lag would carry. 100 ms bounds it
     * at ten idle fetches a second per broker. -X overrides it. */
    static sh_kclient_kv defaults[] = {{"fetch.wait.max.ms", "100"}};
    sh_kclient_config kc = {.bootstrap = x->cfg.brokers,
                            .defaults = defaults,
                            .n_defaults = sizeof defaults / sizeof defaults[0],
                            .props = &x->cfg.kafka_props,
                            .forced = forced,
                            .n_forced = sizeof forced / sizeof forced[0],
                            .quiet_until_ready = true,
                            .what = "edge consumer"};
    int rc = sh_kafka_consumer_new(&kc, &x->consumer, e);
    if (rc == 0)
        rd_kafka_poll_set_consumer(x->consumer);
    int tmo = (int)x->cfg.connect_timeout_s * 1000;
    if (rc == 0)
        rc = sh_kafka_wait_ready(x->consumer, x->cfg.brokers, tmo, e);
    if (rc == 0)
        rc = sh_kafka_describe_topic(x->consumer, x->cfg.topic, tmo, &x->nshards, e);
    if (rc == 0 && x->nshards <= 0)
        rc = sh_err_set(e, SH_ENOTFOUND, "topic %s does not exist", x->cfg.topic);
    /* The shard count sizes per-request arrays (match, upstream): bounded like everywhere else. */
    if (rc == 0 && (unsigned)x->nshards > SH_SHARDS_MAX)
        rc = sh_err_set(e, SH_EUNSUPPORTED, "topic %s has %d partitions: at most %u shards",
                        x->cfg.topic, x->nshards, SH_SHARDS_MAX);
    return rc;
}

/* A shard is caught up when it has handled everything Kafka holds of its partition (the high
 * watermark librdkafka last saw, from its fetches: no request here). */
static void update_caught_up(ed *x)
{
    for (size_t i = 0; i < x->nheld; i++) {
        ed_shard *sh = &x->held[i];
        int64_t lo = 0, hi = 0;
        bool ok = !sh->need_bootstrap &&
                  rd_kafka_get_watermark_offsets(x->consumer, x->cfg.topic, sh->n, &lo, &hi) ==
                      RD_KAFKA_RESP_ERR_NO_ERROR &&
                  hi >= 0 && (hi <= lo || sh->offset + 1 >= hi);
        atomic_store(&sh->caught_up, ok);
    }
}

int ed_run(ed *x, sh_err *e)
{
    bool reassign = true;
    int rc = bootstrap_waiting(x, &reassign, e);
    double next_retry = sh_clock_mono_ms() + ED_BOOTSTRAP_RETRY_MS, next_gauges = 0;
    double next_assign = 0;
    if (rc == 0)
        atomic_store(&x->started, true);
    while (rc == 0 && !sh_stop_requested(x->stop)) {
        /* librdkafka 2.0.2 aborts the process (rdkafka_assignment.c:872, assertion rktp_started)
         * when assign() comes while the partitions an earlier assign() removed still await their
         * fetchers' stop replies: the second removal stops them a second time, and the second
         * reply finds them stopped (librdkafka issue #5573). Failed bootstraps asked for
         * re-assigns back to back (offsets lost to retention while the snapshot source is down:
         * an out-of-range error per partition, each a re-assign, and the removed assignment's
         * queued errors come again). So re-assigns are spaced: a stop reply takes milliseconds,
         * and a waiting shard takes nothing meanwhile (on_message). A new consumer per re-assign
         * was tried: destroying one that had just reported an out-of-range partition hung now and
         * then in 2.0.2 (tests/integration/75_edge_bootstrap_retry.sh). */
        if (reassign && sh_clock_mono_ms() >= next_assign) {
            reassign = false;
            next_assign = sh_clock_mono_ms() + ED_REASSIGN_GAP_MS;
            if ((rc = assign_all(x, e)))
                break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(x->consumer, 200);
        if (m) {
            rc = on_message(x, m, &reassign, e);
            rd_kafka_message_destroy(m);
        }
        update_caught_up(x);
        /* Sizes cost a read transaction and a free-list walk: once a second, not per delta. */
        if (sh_clock_mono_ms() > next_gauges) {
            next_gauges = sh_clock_mono_ms() + 1000;
            for (size_t i = 0; i < x->nheld; i++)
                ed_shard_gauges(x, &x->held[i]);
        }
        if (rc == 0 && sh_clock_mono_ms() > next_retry) {
            next_retry = sh_clock_mono_ms() + ED_BOOTSTRAP_RETRY_MS;
            rc = bootstrap_waiting(x, &reassign, e);
        }
    }
    if (x->consumer) {
        rd_kafka_consumer_close(x->consumer);
        rd_kafka_destroy(x->consumer);
        x->consumer = NULL;
    }
    return rc;
}
