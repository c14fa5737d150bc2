/* repl_tool.c — test helper for the replicator's integration tests.
 *
 *   repl_tool write DSN N SEED THREADS
 *       N writes from THREADS connections at once on a pool of track ids: uploads (new and
 *       re-uploads), reindexes (same version, next fp_version) and deletes, with random postings.
 *   repl_tool reconstruct BROKERS DSN TOPIC TIMEOUT_S
 *       Reads the whole delta topic like a subscriber (ops applied only above the shard's
 *       position, a prev_sequence ahead of it is a gap), until every shard has reached the
 *       primary's last seq, then compares each shard's checksum (sh_shardsum.h) with the
 *       primary's. Prints one JSON line per shard and a summary; exit 1 on any mismatch or gap.
 *   repl_tool sums DSN NSHARDS
 *       The primary's checksum per shard (sh_shardsum.h) from one consistent read, one JSON line
 *       per shard in the form an edge's GET /v1/shards reports it:
 *       {"shard":N,"seq":S,"sum":"16 hex","tracks":T,"postings":P}.
 *   repl_tool fpwrite DSN pairs|triplets FP_VERSION FILE...
 *       Fingerprints each audio FILE (index mode, the mode's defaults: pairs with every other
 *       tunable default are SH_FP_VERSION 2's hashes) and writes it as track BASENAME (extension
 *       dropped, tenant "acme", source_uri file://FILE — FILE absolute, so a reindex re-reads it)
 *       at FP_VERSION: tracks as an older build made them. One JSON line per track.
 */
#include "sh_dpay.h"
#include "sh_extract.h"
#include "sh_fpblob.h"
#include "sh_kafka.h"
#include "sh_primary.h"
#include "sh_schema.h"
#include "sh_shardmap.h"
#include "sh_shardsum.h"
#include "sh_snap.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL 64

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static sh_primary *connect_db(const char *dsn)
{
    sh_primary_config c;
    sh_primary_config_default(&c);
    c.dsn = dsn;
    sh_primary *db = NULL;
    sh_err e = {0};
    if (sh_primary_new(&c, &db, &e)) {
        fprintf(stderr, "repl_tool: %s\n", e.msg);
        exit(2);
    }
    return db;
}

/* ---- write -------------------------------------------------------------------------------- */

typedef struct wargs {
    const char *dsn;
    long n;
    uint64_t seed;
    int thread;
    long done[3];
} wargs;

static int upload(sh_primary *db, const char *id, uint64_t *s)
{
    size_t n = 50 + rnd(s) % 2000;
    sh_hash *h = calloc(n, sizeof *h);
    if (!h)
        return SH_ENOMEM;
    for (size_t i = 0; i < n; i++)
        h[i] = (sh_hash){.hash = (uint32_t)rnd(s), .t = (uint32_t)(rnd(s) % 20000)};
    uint8_t *blob = NULL;
    size_t len = 0;
    int rc = sh_fpblob_encode(h, n, 0, &blob, &len, NULL);
    free(h);
    if (rc)
        return rc;
    char meta[64];
    snprintf(meta, sizeof meta, "{\"title\":\"t%llu\"}", (unsigned long long)(rnd(s) % 1000));
    /* versions from the clock in µs plus a random tail: concurrent writers rarely tie, and a
     * tie is just a stale write, as in production */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sh_track_write tw = {.external_id = id, .tenant = "acme", .metadata_json = meta,
                         .duration_s = 10 + (double)(rnd(s) % 300), .fp_version = 1,
                         .version = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
                         .n_hashes = (uint32_t)n, .fp_blob = blob, .fp_blob_len = len};
    rc = sh_primary_write_track(db, &tw, NULL, NULL);
    free(blob);
    return rc == SH_ESTALE ? 0 : rc;
}

static int reindex(sh_primary *db, const char *id, uint64_t *s)
{
    sh_track t = {0};
    int rc = sh_primary_get_track(db, id, 0, &t, NULL);
    if (rc == SH_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    int64_t base = t.version;
    int fpv = t.fp_version + 1, active = !t.deleted;
    sh_track_clear(&t);
    if (!active)
        return 0;
    size_t n = 20 + rnd(s) % 500;
    sh_hash *h = calloc(n, sizeof *h);
    if (!h)
        return SH_ENOMEM;
    for (size_t i = 0; i < n; i++)
        h[i] = (sh_hash){.hash = (uint32_t)rnd(s), .t = (uint32_t)(rnd(s) % 20000)};
    uint8_t *blob = NULL;
    size_t len = 0;
    rc = sh_fpblob_encode(h, n, 0, &blob, &len, NULL);
    free(h);
    if (rc)
        return rc;
    sh_track_write tw = {.external_id = id, .tenant = "acme", .duration_s = 12, .fp_version = fpv,
                         .version = 1, .n_hashes = (uint32_t)n, .fp_blob = blob,
                         .fp_blob_len = len, .is_reindex = 1, .base_version = base};
    rc = sh_primary_write_track(db, &tw, NULL, NULL);
    free(blob);
    return rc == SH_ESTALE ? 0 : rc;
}

static void *writer(void *arg)
{
    wargs *a = arg;
    sh_primary *db = connect_db(a->dsn);
    uint64_t s = a->seed * 1000003u + (uint64_t)a->thread + 1;
    for (long i = 0; i < a->n; i++) {
        char id[32];
        snprintf(id, sizeof id, "track-%02d", (int)(rnd(&s) % POOL));
        int kind = (int)(rnd(&s) % 10), rc;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (kind < 6)
            rc = upload(db, id, &s);
        else if (kind < 8)
            rc = reindex(db, id, &s);
        else
            rc = sh_primary_delete_track(db, id, "acme",
                                         (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, NULL,
                                         NULL);
        if (rc && rc != SH_ESTALE) {
            fprintf(stderr, "repl_tool write: %s\n", sh_err_name(rc));
            exit(1);
        }
        a->done[kind < 6 ? 0 : kind < 8 ? 1 : 2]++;
    }
    sh_primary_free(db);
    return NULL;
}

static int cmd_write(const char *dsn, long n, uint64_t seed, int threads)
{
    pthread_t th[16];
    wargs a[16];
    if (threads < 1 || threads > 16)
        return 2;
    for (int i = 0; i < threads; i++) {
        a[i] = (wargs){.dsn = dsn, .n = n / threads, .seed = seed, .thread = i};
        pthread_create(&th[i], NULL, writer, &a[i]);
    }
    long d[3] = {0};
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        for (int k = 0; k < 3; k++)
            d[k] += a[i].done[k];
    }
    printf("{\"uploads\":%ld,\"reindexes\":%ld,\"deletes\":%ld}\n", d[0], d[1], d[2]);
    return 0;
}

/* ---- reconstruct -------------------------------------------------------------------------- */

/* One track as a subscriber holds it. */
typedef struct rtrack {
    char *id;
    int64_t version;
    int fp_version;
    uint64_t meta; /* meta_hash() of tenant, metadata and duration: the checksum leaves them out */
    sh_hash *h;
    size_t n;
} rtrack;

typedef struct rshard {
    int64_t pos;
    rtrack *v;
    size_t n, cap;
    long deltas, ops_applied, ops_skipped;
} rshard;

/* FNV-1a over tenant, metadata (as text) and duration (to the ms): what the shard checksum does
 * not cover, compared here too. */
static uint64_t meta_hash(const char *tenant, const char *meta, double duration_s)
{
    char d[32];
    snprintf(d, sizeof d, "%.3f", duration_s);
    const char *parts[3] = {tenant ? tenant : "", meta ? meta : "", d};
    uint64_t h = 0xcbf29ce484222325ull;
    for (int k = 0; k < 3; k++) {
        for (const char *p = parts[k]; *p; p++)
            h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull;
    }
    return h;
}

static rtrack *find(rshard *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].id, id) == 0)
            return &s->v[i];
    return NULL;
}

static void drop(rshard *s, const char *id)
{
    rtrack *t = find(s, id);
    if (!t)
        return;
    free(t->id);
    free(t->h);
    *t = s->v[--s->n];
}

static int apply_op(rshard *s, const sh_dop *op)
{
    drop(s, op->track_id);
    if (op->kind == SH_DOP_DELETE)
        return 0;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v)
            return SH_ENOMEM;
    }
    rtrack *t = &s->v[s->n++];
    t->id = strdup(op->track_id);
    t->version = op->version;
    t->fp_version = op->fp_version;
    t->meta = meta_hash(op->tenant, op->metadata, op->duration_s);
    t->n = op->npostings;
    t->h = malloc((op->npostings ? op->npostings : 1) * sizeof *t->h);
    if (!t->id || !t->h)
        return SH_ENOMEM;
    memcpy(t->h, op->postings, op->npostings * sizeof *t->h);
    return 0;
}

static int apply_delta(rshard *shards, int nshards, const rd_kafka_message_t *m, sh_registry *reg,
                       const sh_schema_limits *lim)
{
    sh_delta_envelope d;
    memset(&d, 0, sizeof d);
    sh_err e = {0};
    if (sh_delta_decode(m->payload, m->len, reg, lim, &d, &e)) {
        fprintf(stderr, "repl_tool: partition %d offset %lld: %s\n", (int)m->partition,
                (long long)m->offset, e.msg);
        return 1;
    }
    int rc = 0;
    rshard *s = &shards[d.shard];
    if (d.shard != m->partition || d.shard >= nshards) {
        fprintf(stderr, "repl_tool: shard %d delta in partition %d\n", d.shard, m->partition);
        rc = 1;
    } else if (d.epoch != 1 || d.commit_lsn != d.sequence) {
        fprintf(stderr, "repl_tool: shard %d delta %" PRId64 ": epoch %" PRId64 ", commit_lsn %"
                PRId64 "\n", d.shard, d.sequence, d.epoch, d.commit_lsn);
        rc = 1;
    } else if (d.prev_sequence > s->pos) {
        fprintf(stderr, "repl_tool: GAP in shard %d: prev_sequence %" PRId64 " > position %" PRId64
                "\n", d.shard, d.prev_sequence, s->pos);
        rc = 1;
    }
    sh_dpay *p = NULL;
    if (rc == 0 && sh_dpay_decode(d.payload, d.payload_len, (int)d.codec, (size_t)d.raw_size, NULL, &p, &e)) {
        fprintf(stderr, "repl_tool: shard %d payload: %s\n", d.shard, e.msg);
        rc = 1;
    }
    if (rc == 0 && (size_t)d.count != sh_dpay_count(p)) {
        fprintf(stderr, "repl_tool: shard %d delta %" PRId64 ": count %d, %zu ops\n", d.shard,
                d.sequence, d.count, sh_dpay_count(p));
        rc = 1;
    }
    for (size_t i = 0; rc == 0 && i < sh_dpay_count(p); i++) {
        const sh_dop *op = sh_dpay_op(p, i);
        if ((int)sh_shard_of(op->track_id, strlen(op->track_id), (uint32_t)nshards) != d.shard) {
            fprintf(stderr, "repl_tool: track %s in shard %d's delta\n", op->track_id, d.shard);
            rc = 1;
        } else if (op->seq <= s->pos) {
            s->ops_skipped++;
        } else if (op->seq > d.sequence || op->seq <= d.prev_sequence) {
            fprintf(stderr, "repl_tool: op seq %" PRId64 " outside its delta (%" PRId64 ", %" PRId64
                    "]\n", op->seq, d.prev_sequence, d.sequence);
            rc = 1;
        } else {
            rc = apply_op(s, op);
            s->ops_applied++;
        }
    }
    if (rc == 0 && d.sequence > s->pos)
        s->pos = d.sequence;
    s->deltas++;
    sh_dpay_free(p);
    sh_delta_clear(&d);
    return rc;
}

static sh_shardsum shard_sum(const rshard *s, uint64_t *meta)
{
    sh_shardsum sum = SH_SHARDSUM_INIT;
    *meta = 0;
    for (size_t i = 0; i < s->n; i++) {
        const rtrack *t = &s->v[i];
        sh_shardsum_add(&sum, t->id, strlen(t->id), t->version, t->fp_version, t->h, t->n, NULL);
        *meta += t->meta;
    }
    return sum;
}

/* Adds a track's meta_hash() to its shard's (the checksum leaves tenant/metadata/duration out). */
static void add_meta(const sh_track *t, int shard, void *ud)
{
    uint64_t *metas = ud;
    metas[shard] += meta_hash(t->tenant, t->metadata_json, t->duration_s);
}

/* The primary's checksum per shard, from one consistent read; *seq = the seq it reflects. */
static int primary_sums(sh_primary *db, int nshards, sh_shardsum *sums, uint64_t *metas,
                        int64_t *seq)
{
    for (int s = 0; s < nshards; s++)
        metas[s] = 0;
    sh_err e = {0};
    int rc = sh_primary_shard_sums(db, nshards, sums, seq, add_meta, metas, &e);
    if (rc)
        fprintf(stderr, "repl_tool: primary read: %s\n", e.msg);
    return rc;
}

static int cmd_reconstruct(const char *brokers, const char *dsn, const char *topic, int timeout_s)
{
    sh_err e = {0};
    sh_registry *reg = NULL;
    sh_schema_limits lim;
    sh_schema_limits_default(&lim);
    rd_kafka_conf_t *conf = NULL;
    if (sh_registry_new_from_env(&reg, &e) || sh_kafka_conf_new(brokers, NULL, &conf, &e) ||
        sh_kafka_conf_set(conf, "group.id", "repl-tool", &e) ||
        sh_kafka_conf_set(conf, "enable.auto.commit", "false", &e)) {
        fprintf(stderr, "repl_tool: %s\n", e.msg);
        return 2;
    }
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    int nshards = 0;
    if (!rk || sh_kafka_describe_topic(rk, topic, 10000, &nshards, &e) || nshards <= 0) {
        fprintf(stderr, "repl_tool: topic %s: %s\n", topic, e.msg);
        return 2;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nshards);
    for (int p = 0; p < nshards; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    rshard *shards = calloc((size_t)nshards, sizeof *shards);
    sh_primary *db = connect_db(dsn);
    int64_t target = 0, deadline = mono_ms() + (int64_t)timeout_s * 1000;
    sh_primary_last_seq(db, &target, NULL);
    int bad = 0;
    for (;;) {
        int behind = 0;
        for (int s = 0; s < nshards; s++)
            behind += shards[s].pos < target;
        if (!behind)
            break;
        if (mono_ms() > deadline) {
            fprintf(stderr, "repl_tool: %d shards below seq %" PRId64 " after %d s\n", behind,
                    target, timeout_s);
            bad = 1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (!m->err && apply_delta(shards, nshards, m, reg, &lim))
            bad = 1;
        rd_kafka_message_destroy(m);
        if (bad)
            break;
    }
    sh_shardsum *sums = calloc((size_t)nshards, sizeof *sums);
    uint64_t *metas = calloc((size_t)nshards, sizeof *metas);
    int64_t pseq = 0;
    /* The primary may have moved on since `target`: compare at a quiet primary only. */
    if (!bad && primary_sums(db, nshards, sums, metas, &pseq))
        bad = 1;
    long tracks = 0, applied = 0, skipped = 0, deltas = 0, mismatched = 0;
    for (int s = 0; s < nshards && !bad; s++) {
        uint64_t meta = 0;
        sh_shardsum got = shard_sum(&shards[s], &meta);
        int ok = sh_shardsum_equal(&got, &sums[s]) && meta == metas[s];
        mismatched += !ok;
        char a[SH_SHARDSUM_TEXT_MAX], b[SH_SHARDSUM_TEXT_MAX];
        printf("{\"shard\":%d,\"position\":%" PRId64 ",\"tracks\":%zu,\"checksum\":\"%s\","
               "\"primary_checksum\":\"%s\",\"deltas\":%ld,\"ok\":%s}\n",
               s, shards[s].pos, shards[s].n, sh_shardsum_format(&got, a, sizeof a),
               sh_shardsum_format(&sums[s], b, sizeof b), shards[s].deltas,
               ok ? "true" : "false");
        tracks += (long)shards[s].n;
        applied += shards[s].ops_applied;
        skipped += shards[s].ops_skipped;
        deltas += shards[s].deltas;
    }
    if (!bad)
        printf("{\"summary\":true,\"primary_seq\":%" PRId64 ",\"tracks\":%ld,\"deltas\":%ld,"
               "\"ops_applied\":%ld,\"ops_skipped\":%ld,\"mismatched_shards\":%ld}\n",
               pseq, tracks, deltas, applied, skipped, mismatched);
    for (int s = 0; s < nshards; s++) {
        while (shards[s].n)
            drop(&shards[s], shards[s].v[0].id);
        free(shards[s].v);
    }
    free(shards);
    free(sums);
    free(metas);
    sh_primary_free(db);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    sh_registry_free(reg);
    return bad || mismatched ? 1 : 0;
}

/* ---- snapcheck ---------------------------------------------------------------------------- */

/* Reads a snapshot file whole (every chunk and the trailer verified) and compares its checksum
 * with the primary's for the same shard (the primary must be quiet since the snapshot). */
static int cmd_snapcheck(const char *file, const char *dsn, int shard)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 2;
    }
    int fd = fileno(f);
    sh_snap_reader *r = NULL;
    sh_err e = {0};
    sh_shardsum got = SH_SHARDSUM_INIT;
    int rc = sh_snap_reader_new(sh_snap_fd_read, &fd, NULL, &r, &e);
    const sh_snap_info *info = rc == 0 ? sh_snap_reader_info(r) : NULL;
    if (rc == 0 && (int)info->shard != shard)
        rc = sh_err_set(&e, SH_EFORMAT, "snapshot of shard %u, not %d", info->shard, shard);
    const sh_dpay *chunk = NULL;
    while (rc == 0 && (rc = sh_snap_reader_next(r, &chunk, &e)) == 1) {
        rc = 0;
        for (size_t i = 0; rc == 0 && i < sh_dpay_count(chunk); i++) {
            const sh_dop *op = sh_dpay_op(chunk, i);
            rc = sh_shardsum_add(&got, op->track_id, strlen(op->track_id), op->version,
                                 op->fp_version, op->postings, op->npostings, &e);
        }
    }
    int nshards = info ? (int)info->nshards : 0;
    int64_t sseq = info ? info->seq : 0;
    sh_snap_reader_free(r);
    fclose(f);
    if (rc) {
        fprintf(stderr, "repl_tool snapcheck: %s: %s\n", sh_err_name(rc), e.msg);
        return 1;
    }
    sh_primary *db = connect_db(dsn);
    sh_shardsum *sums = calloc((size_t)nshards, sizeof *sums);
    uint64_t *metas = calloc((size_t)nshards, sizeof *metas);
    int64_t pseq = 0;
    rc = primary_sums(db, nshards, sums, metas, &pseq);
    free(metas);
    sh_primary_free(db);
    int ok = rc == 0 && sh_shardsum_equal(&got, &sums[shard]) && pseq == sseq;
    char a[SH_SHARDSUM_TEXT_MAX], b[SH_SHARDSUM_TEXT_MAX];
    printf("{\"shard\":%d,\"seq\":%" PRId64 ",\"primary_seq\":%" PRId64 ",\"checksum\":\"%s\","
           "\"primary_checksum\":\"%s\",\"ok\":%s}\n",
           shard, sseq, pseq, sh_shardsum_format(&got, a, sizeof a),
           rc == 0 ? sh_shardsum_format(&sums[shard], b, sizeof b) : "", ok ? "true" : "false");
    free(sums);
    return ok ? 0 : 1;
}

static int cmd_sums(const char *dsn, int nshards)
{
    if (nshards < 1 || nshards > (int)SH_SHARDS_MAX)
        return 2;
    sh_primary *db = connect_db(dsn);
    sh_shardsum *sums = calloc((size_t)nshards, sizeof *sums);
    uint64_t *metas = calloc((size_t)nshards, sizeof *metas);
    int64_t seq = 0;
    int rc = sums && metas ? primary_sums(db, nshards, sums, metas, &seq) : 1;
    for (int s = 0; rc == 0 && s < nshards; s++)
        printf("{\"shard\":%d,\"seq\":%" PRId64 ",\"sum\":\"%016" PRIx64 "\",\"tracks\":%" PRIu64
               ",\"postings\":%" PRIu64 "}\n",
               s, seq, sums[s].sum, sums[s].tracks, sums[s].postings);
    free(sums);
    free(metas);
    sh_primary_free(db);
    return rc ? 1 : 0;
}

/* ---- fpwrite ------------------------------------------------------------------------------ */

static int fpwrite_one(sh_primary *db, sh_fp *fp, const sh_audio_opts *ao, const char *path,
                       int fp_version)
{
    sh_err e = {0};
    sh_extract_result r;
    int rc = sh_extract_file(path, ao, fp, &r, &e);
    size_t n = 0;
    const sh_hash *h = rc == 0 ? sh_fp_hashes(fp, &n) : NULL;
    uint8_t *blob = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = sh_fpblob_encode(h, n, 0, &blob, &len, &e);
    char id[256], uri[4200], meta[300];
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(id, sizeof id, "%s", base);
    if (strrchr(id, '.'))
        *strrchr(id, '.') = '\0';
    snprintf(uri, sizeof uri, "file://%s", path);
    snprintf(meta, sizeof meta, "{\"title\":\"%s\"}", id);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sh_track_write tw = {.external_id = id, .tenant = "acme", .metadata_json = meta,
                         .source_uri = uri, .duration_s = r.duration_s, .fp_version = fp_version,
                         .version = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
                         .n_hashes = (uint32_t)n, .fp_blob = blob, .fp_blob_len = len};
    int64_t seq = 0;
    if (rc == 0)
        rc = sh_primary_write_track(db, &tw, &seq, &e);
    free(blob);
    if (rc) {
        fprintf(stderr, "repl_tool fpwrite: %s: %s: %s\n", path, sh_err_name(rc), e.msg);
        return 1;
    }
    printf("{\"track_id\":\"%s\",\"fp_version\":%d,\"hashes\":%zu,\"seq\":%" PRId64 "}\n", id,
           fp_version, n, seq);
    return 0;
}

static int cmd_fpwrite(const char *dsn, const char *mode, int fp_version, char **files, int n)
{
    sh_fp_config c;
    sh_fp_config_default(&c);
    if (strcmp(mode, "pairs") == 0)
        sh_fp_config_mode(&c, SH_FP_PAIRS);
    else if (strcmp(mode, "triplets") == 0)
        sh_fp_config_mode(&c, SH_FP_TRIPLETS);
    else
        return 2;
    if (fp_version < 1)
        return 2;
    sh_audio_opts ao;
    sh_audio_opts_default(&ao);
    ao.rate = c.rate;
    sh_fp *fp = NULL;
    sh_err e = {0};
    if (sh_fp_new(&c, &fp, &e)) {
        fprintf(stderr, "repl_tool fpwrite: %s\n", e.msg);
        return 2;
    }
    sh_primary *db = connect_db(dsn);
    int bad = 0;
    for (int i = 0; i < n && !bad; i++)
        bad = fpwrite_one(db, fp, &ao, files[i], fp_version);
    sh_primary_free(db);
    sh_fp_free(fp);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "fpwrite") == 0)
        return cmd_fpwrite(argv[2], argv[3], atoi(argv[4]), argv + 5, argc - 5);
    if (argc == 4 && strcmp(argv[1], "sums") == 0)
        return cmd_sums(argv[2], atoi(argv[3]));
    if (argc == 5 && strcmp(argv[1], "snapcheck") == 0)
        return cmd_snapcheck(argv[2], argv[3], atoi(argv[4]));
    if (argc == 6 && strcmp(argv[1], "write") == 0)
        return cmd_write(argv[2], atol(argv[3]), (uint64_t)atoll(argv[4]), atoi(argv[5]));
    if (argc == 6 && strcmp(argv[1], "reconstruct") == 0)
        return cmd_reconstruct(argv[2], argv[3], argv[4], atoi(argv[5]));
    fprintf(stderr, "usage: repl_tool write DSN N SEED THREADS | reconstruct BROKERS DSN TOPIC "
                    "TIMEOUT_S | snapcheck FILE DSN SHARD | sums DSN NSHARDS | fpwrite DSN "
                    "pairs|triplets FP_VERSION FILE...\n");
    return 2;
}
