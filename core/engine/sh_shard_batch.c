/* sh_shard_batch.c — building a batch of puts, deletes and cursor updates, and applying it in one
 * LMDB write transaction: new postings merged into the range blobs they fall in, replaced and
 * deleted tracks' postings marked dead and swept by a bounded vacuum (see sh_shard.h). */
#include "sh_shard_int.h"

#include "sh_log.h"
#include "sh_vec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dead set: sorted (track, postings left) pairs ----------------------------------------------
 */

static dead_ent *dead_find(const dead_set *d, uint32_t track)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->v[mid].track < track)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->n && d->v[lo].track == track ? &d->v[lo] : NULL;
}

static int dead_add(dead_set *d, uint32_t track, uint32_t left)
{
    if (sh_vec_reserve(&d->v, &d->cap, d->n + 1, SH_VEC_NOCAP))
        return ENOMEM; /* an LMDB-style code, like the callers' */
    size_t i = d->n;
    while (i > 0 && d->v[i - 1].track > track) /* track numbers only grow: usually appends */
        i--;
    memmove(d->v + i + 1, d->v + i, (d->n - i) * sizeof *d->v);
    d->v[i] = (dead_ent){.track = track, .left = left, .dirty = true};
    d->n++;
    return 0;
}

int sh_shard_dead_load(const sh_shard *s, MDB_txn *txn, dead_set *d)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->dead, &c);
    if (rc)
        return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint32_t tr, left;
        if (k.mv_size != 4 || v.mv_size != 4) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(&tr, k.mv_data, 4);
        memcpy(&left, v.mv_data, 4);
        if ((rc = dead_add(d, tr, left)))
            break;
        d->v[d->n - 1].dirty = false;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int sh_shard_dead_store(const sh_shard *s, MDB_txn *txn, const dead_set *d)
{
    for (size_t i = 0; i < d->n; i++) {
        if (!d->v[i].dirty)
            continue;
        MDB_val k = mval(&d->v[i].track, 4), v = mval(&d->v[i].left, 4);
        int rc = d->v[i].left ? mdb_put(txn, s->dead, &k, &v, 0) : mdb_del(txn, s->dead, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

/* ---- track records ------------------------------------------------------------------------------
 */

static int id_put(const sh_shard *s, MDB_txn *txn, const char *id, const id_rec *r)
{
    uint8_t buf[20];
    memcpy(buf, &r->track, 4);
    memcpy(buf + 4, &r->version, 8);
    memcpy(buf + 12, &r->seq, 8);
    MDB_val k = mval(id, strlen(id)), v = mval(buf, 20);
    return mdb_put(txn, s->ids, &k, &v, 0);
}

static int track_get_hdr(const sh_shard *s, MDB_txn *txn, uint32_t track, track_hdr *h)
{
    MDB_val k = mval(&track, 4), v;
    size_t hl;
    int rc = mdb_get(txn, s->tracks, &k, &v);
    return rc ? rc : sh_shard_track_parse(s, &v, h, &hl);
}

/* Adds `delta` (±1) to the live-track count of fp_version fp. */
static int fp_count(apply_ctx *a, int fp, int delta)
{
    char key[32];
    uint64_t n;
    sh_shard_fp_key(key, sizeof key, fp);
    int rc = sh_shard_meta_get_u64(a->txn, a->s->meta, key, &n);
    if (rc)
        return rc;
    if (delta < 0 && !n)
        return MDB_CORRUPTED;
    return sh_shard_meta_put_u64(a->txn, a->s->meta, key, delta < 0 ? n - 1 : n + 1);
}

/* ---- batch
 * ------------------------------------------------------------------------------------------ */

typedef enum { OP_PUT, OP_DELETE, OP_CURSOR } op_kind;

typedef struct batch_op {
    op_kind kind;
    uint64_t seq; /* apply key of a replicated op (sh_shard_batch_apply); 0: keyed by version */
    char *id; /* or cursor key */
    char *tenant;
    char *meta; /* or cursor value */
    size_t meta_len;
    uint64_t version;
    int fp_version;
    double duration_s;
    size_t first, n; /* postings in batch->h */
} batch_op;

struct sh_shard_batch {
    sh_shard *s;
    batch_op *ops;
    size_t nops, capops;
    sh_hash *h;
    size_t nh, caph, maxh;
};

int sh_shard_batch_begin(sh_shard *s, size_t max_postings, sh_shard_batch **out, sh_err *e)
{
    if (!s || !out)
        return sh_err_set(e, SH_EINVAL, "shard batch: NULL argument");
    if (s->read_only)
        return sh_err_set(e, SH_EINVAL, "%s: shard opened read-only", s->dir);
    sh_shard_batch *b = calloc(1, sizeof *b);
    if (!b)
        return sh_err_set(e, SH_ENOMEM, "shard batch: out of memory");
    b->s = s;
    b->maxh = max_postings ? max_postings : SH_BATCH_POSTINGS_DEFAULT;
    *out = b;
    return 0;
}

void sh_shard_batch_abort(sh_shard_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nops; i++) {
        free(b->ops[i].id);
        free(b->ops[i].tenant);
        free(b->ops[i].meta);
    }
    free(b->ops);
    free(b->h);
    free(b);
}

static batch_op *op_push(sh_shard_batch *b)
{
    if (sh_vec_reserve(&b->ops, &b->capops, b->nops + 1, SH_VEC_NOCAP))
        return NULL;
    batch_op *op = &b->ops[b->nops];
    *op = (batch_op){0};
    return op;
}

static int dup_str(const char *src, size_t max, char **dst)
{
    if (!src)
        return 0;
    size_t n = strnlen(src, max + 1);
    if (n > max)
        return SH_EINVAL;
    *dst = strndup(src, n);
    return *dst ? 0 : SH_ENOMEM;
}

static int reserve_postings(sh_shard_batch *b, size_t n, sh_err *e)
{
    if (n > b->maxh - b->nh)
        return sh_err_set(e, SH_ETOOBIG, "shard batch: over %zu postings; commit first", b->maxh);
    if (sh_vec_reserve(&b->h, &b->caph, b->nh + n, b->maxh))
        return sh_err_set(e, SH_ENOMEM, "shard batch: out of memory for postings");
    return 0;
}

int sh_shard_batch_put(sh_shard_batch *b, const sh_shard_track *t, const sh_hash *h, size_t n,
                       sh_err *e)
{
    if (!b || !t || (!h && n))
        return sh_err_set(e, SH_EINVAL, "shard put: NULL argument");
    if (!sh_shard_valid_id(t->id))
        return sh_err_set(e, SH_EINVAL, "shard put: track id must be 1..%d bytes", SH_SHARD_ID_MAX);
    if (t->fp_version < 0 || t->fp_version > SH_SHARD_FP_VERSION_MAX)
        return sh_err_set(e, SH_EINVAL, "shard put: track %s has fp_version %d (1..%d)", t->id,
                          t->fp_version, SH_SHARD_FP_VERSION_MAX);
    if (t->version > INT64_MAX)
        return sh_err_set(e, SH_EINVAL, "shard put: track %s: version over 2^63 - 1", t->id);
    if (n > UINT32_MAX)
        return sh_err_set(e, SH_ETOOBIG, "shard put: too many postings");
    int rc = reserve_postings(b, n, e);
    if (rc)
        return rc;
    batch_op *op = op_push(b);
    if (!op)
        return sh_err_set(e, SH_ENOMEM, "shard put: out of memory");
    rc = dup_str(t->id, SH_SHARD_ID_MAX, &op->id);
    if (!rc)
        rc = dup_str(t->tenant, SH_SHARD_TENANT_MAX, &op->tenant);
    if (!rc)
        rc = dup_str(t->meta_json, SH_SHARD_META_MAX, &op->meta);
    if (rc) {
        free(op->id);
        free(op->tenant);
        free(op->meta);
        return sh_err_set(e, rc, "shard put: %s",
                          rc == SH_EINVAL ? "tenant or metadata too long" : "out of memory");
    }
    op->kind = OP_PUT;
    op->meta_len = op->meta ? strlen(op->meta) : 0;
    op->version = t->version;
    op->fp_version = t->fp_version ? t->fp_version : b->s->fp_version;
    op->duration_s = t->duration_s > 0 ? t->duration_s : 0;
    op->first = b->nh;
    op->n = n;
    if (n)
        memcpy(b->h + b->nh, h, n * sizeof *h);
    b->nh += n;
    b->nops++;
    return 0;
}

int sh_shard_batch_delete(sh_shard_batch *b, const char *id, uint64_t version, sh_err *e)
{
    if (!b || !sh_shard_valid_id(id))
        return sh_err_set(e, SH_EINVAL, "shard delete: track id must be 1..%d bytes",
                          SH_SHARD_ID_MAX);
    batch_op *op = op_push(b);
    if (!op || dup_str(id, SH_SHARD_ID_MAX, &op->id))
        return sh_err_set(e, SH_ENOMEM, "shard delete: out of memory");
    op->kind = OP_DELETE;
    op->version = version;
    b->nops++;
    return 0;
}

int sh_shard_batch_apply(sh_shard_batch *b, const sh_dop *op, sh_err *e)
{
    if (!b || !op)
        return sh_err_set(e, SH_EINVAL, "shard apply: NULL argument");
    if (op->seq < 1 || op->version < 0 || (op->kind != SH_DOP_UPSERT && op->kind != SH_DOP_DELETE))
        return sh_err_set(e, SH_EINVAL, "shard apply: seq %lld, version %lld, kind %d invalid",
                          (long long)op->seq, (long long)op->version, op->kind);
    size_t before = b->nops;
    int rc;
    if (op->kind == SH_DOP_DELETE) {
        rc = sh_shard_batch_delete(b, op->track_id, (uint64_t)op->version, e);
    } else {
        if (op->fp_version < 1)
            return sh_err_set(e, SH_EINVAL, "shard apply: track %.256s has fp_version %d",
                              op->track_id ? op->track_id : "", (int)op->fp_version);
        sh_shard_track t = {.id = op->track_id,
                            .tenant = op->tenant,
                            .version = (uint64_t)op->version,
                            .fp_version = (int)op->fp_version,
                            .duration_s = op->duration_s,
                            .meta_json = op->metadata};
        rc = sh_shard_batch_put(b, &t, op->postings, op->npostings, e);
    }
    if (!rc && b->nops == before + 1)
        b->ops[before].seq = (uint64_t)op->seq;
    return rc;
}

int sh_shard_batch_set_cursor(sh_shard_batch *b, const char *key, const void *val, size_t len,
                              sh_err *e)
{
    size_t kl = key ? strnlen(key, SH_SHARD_CURSOR_KEY_MAX + 1) : 0;
    if (!b || !kl || kl > SH_SHARD_CURSOR_KEY_MAX || (!val && len) || len > SH_SHARD_CURSOR_VAL_MAX)
        return sh_err_set(e, SH_EINVAL, "shard cursor: key 1..%d bytes, value ≤ %d bytes",
                          SH_SHARD_CURSOR_KEY_MAX, SH_SHARD_CURSOR_VAL_MAX);
    batch_op *op = op_push(b);
    if (!op || dup_str(key, SH_SHARD_CURSOR_KEY_MAX, &op->id) || !(op->meta = malloc(len + 1))) {
        if (op)
            free(op->id);
        return sh_err_set(e, SH_ENOMEM, "shard cursor: out of memory");
    }
    if (len)
        memcpy(op->meta, val, len);
    op->meta_len = len;
    op->kind = OP_CURSOR;
    b->nops++;
    return 0;
}

/* ---- applying a batch: one transaction --------------------------------------------------------
 */

static void apply_ctx_free(apply_ctx *a)
{
    free(a->dead.v);
    free(a->cancelled);
    free(a->new_op);
    free(a->pend);
    free(a->work);
    free(a->hscratch);
    free(a->blob);
    free(a->pad);
}

/* Logically removes a live track: its postings become dead (or are dropped before being written
 * when the track was created in this very batch). */
static int kill_track(apply_ctx *a, uint32_t track)
{
    track_hdr h;
    int rc = track_get_hdr(a->s, a->txn, track, &h);
    if (rc)
        return rc;
    MDB_val k = mval(&track, 4);
    if ((rc = mdb_del(a->txn, a->s->tracks, &k, NULL)))
        return rc;
    a->c.postings -= h.postings;
    a->c.sum.sum -= h.sum;
    a->c.sum.tracks--;
    a->c.sum.postings -= h.postings;
    if ((rc = fp_count(a, (int)h.fp_version, -1)))
        return rc;
    uint64_t ms = (uint64_t)(h.duration_s * 1000.0 + 0.5);
    a->c.audio_ms = a->c.audio_ms > ms ? a->c.audio_ms - ms : 0;
    if (track >= a->first_new) {
        a->cancelled[track - a->first_new] = 1;
        return 0;
    }
    if (!h.postings)
        return 0;
    a->c.dead_postings += h.postings;
    dead_ent *d = dead_find(&a->dead, track);
    if (d) { /* cannot normally happen: a track dies once */
        d->left += h.postings;
        d->dirty = true;
        return 0;
    }
    return dead_add(&a->dead, track, h.postings);
}

static int track_write(apply_ctx *a, uint32_t track, const batch_op *op, uint64_t version,
                       uint64_t sum)
{
    size_t il = strlen(op->id), tl = op->tenant ? strlen(op->tenant) : 0;
    track_hdr h = {.version = version,
                   .duration_s = op->duration_s,
                   .fp_version = (uint32_t)op->fp_version,
                   .postings = (uint32_t)op->n,
                   .meta_len = (uint32_t)op->meta_len,
                   .id_len = (uint16_t)il,
                   .tenant_len = (uint16_t)tl,
                   .sum = sum};
    MDB_val k = mval(&track, 4), v = {.mv_size = sizeof h + il + tl + op->meta_len};
    int rc = mdb_put(a->txn, a->s->tracks, &k, &v, MDB_RESERVE);
    if (rc)
        return rc;
    uint8_t *p = v.mv_data;
    memcpy(p, &h, sizeof h);
    memcpy(p + sizeof h, op->id, il);
    if (tl)
        memcpy(p + sizeof h + il, op->tenant, tl);
    if (op->meta_len)
        memcpy(p + sizeof h + il + tl, op->meta, op->meta_len);
    return 0;
}

static int new_track_push(apply_ctx *a, uint32_t op_index)
{
    if (a->nnew == a->capnew) {
        size_t cap = a->capnew ? a->capnew * 2 : 64;
        uint8_t *c = realloc(a->cancelled, cap);
        if (!c)
            return ENOMEM;
        a->cancelled = c;
        uint32_t *o = realloc(a->new_op, cap * sizeof *o);
        if (!o)
            return ENOMEM;
        a->new_op = o;
        a->capnew = cap;
    }
    a->cancelled[a->nnew] = 0;
    a->new_op[a->nnew++] = op_index;
    return 0;
}

static int apply_put(apply_ctx *a, const sh_shard_batch *b, size_t i)
{
    const batch_op *op = &b->ops[i];
    id_rec cur = {0};
    int rc = sh_shard_id_get(a->s, a->txn, op->id, &cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    bool exists = rc == 0;
    uint64_t version = op->version;
    if (!op->seq && version == SH_SHARD_VERSION_NEXT)
        version = exists ? cur.version + 1 : 1;
    /* A replicated op is keyed by its seq alone (a reindex keeps the version); a local put by
     * version. */
    if (exists && (op->seq ? cur.seq >= op->seq : cur.version >= version)) {
        a->st.stale++;
        return 0;
    }
    uint64_t sum;
    MDB_dbi post;
    if ((rc = sh_shardsum_track(op->id, strlen(op->id), (int64_t)version, op->fp_version,
                                b->h + op->first, op->n, &sum, a->e)))
        return rc;
    if ((rc = sh_shard_post_open(a, op->fp_version, true, &post)))
        return rc;
    if (exists && cur.track && (rc = kill_track(a, cur.track)))
        return rc;
    if (a->c.next_track == UINT32_MAX)
        return MDB_MAP_FULL; /* 4 billion tracks: never in practice */
    uint32_t track = a->c.next_track++;
    if ((rc = new_track_push(a, (uint32_t)i)))
        return rc;
    rc = track_write(a, track, op, version, sum);
    if (!rc)
        rc = id_put(a->s, a->txn, op->id,
                    &(id_rec){.track = track, .version = version,
                              .seq = op->seq ? op->seq : cur.seq});
    if (!rc)
        rc = fp_count(a, op->fp_version, +1);
    if (rc)
        return rc;
    a->c.sum.sum += sum;
    a->c.sum.tracks++;
    a->c.sum.postings += op->n;
    a->c.postings += op->n;
    a->c.audio_ms += (uint64_t)(op->duration_s * 1000.0 + 0.5);
    a->st.upserts++;
    return 0;
}

/* A replicated delete (seq-keyed): applies when its seq is above the id's; a missing or already
 * deleted id remembers the seq so that an older upsert delivered later stays out. */
static int apply_delete_seq(apply_ctx *a, const batch_op *op, bool exists, const id_rec *cur)
{
    if (exists && cur->seq >= op->seq) {
        a->st.stale++;
        return 0;
    }
    int rc = 0;
    if (exists && cur->track) {
        if ((rc = kill_track(a, cur->track)))
            return rc;
        a->st.deletes++;
    } else {
        a->st.not_found++;
    }
    return id_put(a->s, a->txn, op->id,
                  &(id_rec){.track = 0, .version = op->version, .seq = op->seq});
}

static int apply_delete(apply_ctx *a, const batch_op *op)
{
    id_rec cur = {0};
    int rc = sh_shard_id_get(a->s, a->txn, op->id, &cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (op->seq)
        return apply_delete_seq(a, op, rc == 0, &cur);
    if (rc == MDB_NOTFOUND) {
        a->st.not_found++;
        uint64_t v = op->version == SH_SHARD_VERSION_NEXT ? 1 : op->version;
        return id_put(a->s, a->txn, op->id, &(id_rec){.track = 0, .version = v});
    }
    uint64_t version = op->version == SH_SHARD_VERSION_NEXT ? cur.version + 1 : op->version;
    if (!cur.track || version < cur.version) {
        a->st.stale++;
        return 0;
    }
    if ((rc = kill_track(a, cur.track)))
        return rc;
    a->st.deletes++;
    return id_put(a->s, a->txn, op->id,
                  &(id_rec){.track = 0, .version = version, .seq = cur.seq});
}

static int apply_cursor(apply_ctx *a, const batch_op *op)
{
    MDB_val k = mval(op->id, strlen(op->id)), v = mval(op->meta, op->meta_len);
    return mdb_put(a->txn, a->s->cursor, &k, &v, 0);
}

static int cmp_posting(const void *x, const void *y)
{
    const sh_posting *p = x, *q = y;
    if (p->hash != q->hash)
        return p->hash < q->hash ? -1 : 1;
    if (p->track != q->track)
        return p->track < q->track ? -1 : 1;
    return p->t < q->t ? -1 : p->t > q->t;
}

/* Gathers the postings of surviving new tracks of fp_version fp, sorted by (hash, track, t). */
static int gather_pending(apply_ctx *a, const sh_shard_batch *b, int fp)
{
    size_t total = 0;
    for (size_t i = 0; i < a->nnew; i++)
        total += a->cancelled[i] || b->ops[a->new_op[i]].fp_version != fp ? 0
                                                                          : b->ops[a->new_op[i]].n;
    free(a->pend);
    a->pend = malloc((total ? total : 1) * sizeof *a->pend);
    if (!a->pend)
        return ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < a->nnew; i++) {
        if (a->cancelled[i] || b->ops[a->new_op[i]].fp_version != fp)
            continue;
        const batch_op *op = &b->ops[a->new_op[i]];
        for (size_t j = 0; j < op->n; j++)
            a->pend[k++] = (sh_posting){.hash = b->h[op->first + j].hash,
                                        .track = a->first_new + (uint32_t)i,
                                        .t = b->h[op->first + j].t};
    }
    qsort(a->pend, total, sizeof *a->pend, cmp_posting);
    a->npend = total;
    return 0;
}

static int ensure_work(apply_ctx *a, size_t n)
{
    if (n <= a->capwork)
        return 0;
    size_t cap = a->capwork ? a->capwork : 1024;
    while (cap < n)
        cap *= 2;
    sh_posting *w = realloc(a->work, cap * sizeof *w);
    if (!w)
        return ENOMEM;
    a->work = w;
    uint32_t *h = realloc(a->hscratch, cap * sizeof *h);
    if (!h)
        return ENOMEM;
    a->hscratch = h;
    a->capwork = cap;
    return 0;
}

static int ensure_blob(apply_ctx *a, size_t n)
{
    if (n <= a->capblob)
        return 0;
    size_t cap = a->capblob ? a->capblob : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *b = realloc(a->blob, cap), *p;
    if (!b)
        return ENOMEM;
    a->blob = b;
    if (!(p = realloc(a->pad, cap + 8)))
        return ENOMEM;
    a->pad = p;
    a->capblob = cap;
    return 0;
}

/* Decodes a stored range into a->work[*n ...], dropping postings of dead tracks (and counting
 * them off the dead set). Sets *dropped. */
int sh_shard_load_range(apply_ctx *a, uint32_t key, const MDB_val *v, size_t *n, size_t *dropped)
{
    int rc = ensure_blob(a, v->mv_size);
    if (rc)
        return rc;
    sh_range r;
    if (sh_range_open(v->mv_data, v->mv_size, key, a->pad, &r))
        return sh_err_set(a->e, SH_EFORMAT, "%s: corrupted range blob at key %u", a->s->dir, key);
    if ((rc = ensure_work(a, *n + r.n)))
        return rc;
    if (sh_range_decode(&r, key, a->hscratch, a->work + *n))
        return sh_err_set(a->e, SH_EFORMAT, "%s: corrupted range blob at key %u", a->s->dir, key);
    size_t keep = *n;
    *dropped = 0;
    for (size_t i = 0; i < r.n; i++) {
        sh_posting p = a->work[*n + i];
        dead_ent *d = a->dead.n ? dead_find(&a->dead, p.track) : NULL;
        if (d && d->left) {
            d->left--;
            d->dirty = true;
            a->c.dead_postings--;
            (*dropped)++;
            continue;
        }
        a->work[keep++] = p;
    }
    *n = keep;
    return 0;
}

static int put_range(apply_ctx *a, uint32_t key, size_t len, bool append)
{
    MDB_val k = mval(&key, 4), v = mval(a->blob, len);
    a->st.ranges_written++;
    return mdb_put(a->txn, a->post, &k, &v, append ? MDB_APPEND : 0);
}

/* Writes sorted postings p[0..n) as ranges ending at `key`: one blob when it fits, else pieces
 * of ~SH_RANGE_BLOB_TARGET bytes cut between distinct hashes (recursively, until each fits or
 * holds a single hash). `append` when every key written is past the last existing key (bulk
 * loads: LMDB then fills pages completely). */
int sh_shard_write_ranges(apply_ctx *a, uint32_t key, const sh_posting *p, size_t n, bool append)
{
    bool one_hash = p[0].hash == p[n - 1].hash;
    if (one_hash && n > SH_RANGE_MAX_POSTINGS)
        return sh_err_set(a->e, SH_ETOOBIG, "%s: one hash has over %u postings", a->s->dir,
                          SH_RANGE_MAX_POSTINGS);
    size_t len = SIZE_MAX;
    if (n <= SH_RANGE_MAX_POSTINGS) {
        int rc = ensure_blob(a, sh_range_bound(n));
        if (rc)
            return rc;
        len = sh_range_encode(p, n, a->skip_shift, a->blob);
        if (len <= SH_RANGE_BLOB_MAX || one_hash)
            return put_range(a, key, len, append);
    }
    size_t per = len == SIZE_MAX ? SH_RANGE_MAX_POSTINGS / 2 : n * SH_RANGE_BLOB_TARGET / len + 1;
    if (per >= n)
        per = n / 2;
    size_t start = 0;
    while (start < n) {
        size_t end = start + per < n ? start + per : n;
        while (end < n && p[end].hash == p[end - 1].hash)
            end++;
        if (start == 0 && end == n) { /* the cut ran to the end: cut before the last hash run */
            end = n - 1;
            while (end > 0 && p[end - 1].hash == p[n - 1].hash)
                end--;
        }
        uint32_t piece_key = end == n ? key : p[end - 1].hash;
        int rc = sh_shard_write_ranges(a, piece_key, p + start, end - start, append);
        if (rc)
            return rc;
        start = end;
    }
    return 0;
}

/* Merges new postings pend[i..j) (all ≤ key) into the range at `key` (v may be NULL: none). */
static int merge_range(apply_ctx *a, uint32_t key, const MDB_val *v, size_t i, size_t j,
                       bool append)
{
    size_t n = 0, dropped = 0;
    int rc = v ? sh_shard_load_range(a, key, v, &n, &dropped) : 0;
    if (rc)
        return rc;
    if ((rc = ensure_work(a, n + (j - i))))
        return rc;
    memcpy(a->work + n, a->pend + i, (j - i) * sizeof *a->pend);
    n += j - i;
    if (v && j > i)
        qsort(a->work, n, sizeof *a->work, cmp_posting); /* two sorted runs: cheap */
    if (!n) {
        MDB_val k = mval(&key, 4);
        return mdb_del(a->txn, a->post, &k, NULL);
    }
    return sh_shard_write_ranges(a, key, a->work, n, append);
}

/* The sweep: every new posting goes into the range whose key is the first ≥ its hash. */
static int merge_pending(apply_ctx *a)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(a->txn, a->post, &c);
    if (rc)
        return rc;
    size_t i = 0;
    while (i < a->npend && !rc) {
        uint32_t h = a->pend[i].hash, key = UINT32_MAX;
        MDB_val k = mval(&h, 4), v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        bool found = rc == 0;
        if (rc && rc != MDB_NOTFOUND)
            break;
        rc = 0;
        if (found) {
            if (k.mv_size != 4) {
                rc = MDB_CORRUPTED;
                break;
            }
            memcpy(&key, k.mv_data, 4);
        }
        size_t j = i;
        while (j < a->npend && a->pend[j].hash <= key)
            j++;
        /* `v` points into the map and stays valid until we write: sh_shard_load_range copies
         * first. */
        rc = merge_range(a, key, found ? &v : NULL, i, j, !found);
        i = j;
    }
    mdb_cursor_close(c);
    return rc;
}

/* ---- merging a big batch: the index rewritten in key order -------------------------------------
 *
 * A range rewritten in place (merge_pending) usually grows, and LMDB splits a full leaf page in the
 * middle: after a batch that touches most ranges of an index that was written in key order (pages
 * full), most leaf pages are half full, and the index ~1.5x the size (measured: 4.3 B per posting
 * after one bulk batch, 7.4 B after six at 1,000 h). Only appending fills pages completely, so a
 * batch with at least as many new postings as the index has ranges (it then touches ~2/3 of them
 * or more) rewrites the whole index instead: the ranges merged with the new postings in key order
 * and re-cut to ~SH_RANGE_BLOB_TARGET bytes, appended to a scratch table, then appended back. The
 * blob format is unchanged. */

enum { SH_REWRITE_CHUNK = 1 << 14 }; /* postings re-cut into blobs at a time */

/* Appends the postings gathered in a->work[0..*n) (sorted, all ≤ key, all above what was written
 * before) to `out` as ranges ending at `key`. */
static int rewrite_flush(apply_ctx *a, MDB_dbi out, uint32_t key, size_t *n)
{
    if (!*n)
        return 0;
    const MDB_dbi post = a->post;
    a->post = out;
    int rc = sh_shard_write_ranges(a, key, a->work, *n, true);
    a->post = post;
    *n = 0;
    return rc;
}

/* Gathers the next range (at `key`, value v) with the new postings pend[*i..) that fall in it
 * into a->work after its *n postings. */
static int rewrite_gather(apply_ctx *a, uint32_t key, const MDB_val *v, size_t *i, size_t *n)
{
    const size_t n0 = *n;
    size_t dropped, j = *i;
    int rc = v ? sh_shard_load_range(a, key, v, n, &dropped) : 0;
    if (rc)
        return rc;
    while (j < a->npend && a->pend[j].hash <= key)
        j++;
    if (j > *i && (rc = ensure_work(a, *n + (j - *i))))
        return rc;
    if (j > *i)
        memcpy(a->work + *n, a->pend + *i, (j - *i) * sizeof *a->pend);
    const bool both = *n > n0 && j > *i;
    *n += j - *i;
    *i = j;
    if (both) /* two sorted runs */
        qsort(a->work + n0, *n - n0, sizeof *a->work, cmp_posting);
    return 0;
}

/* The merged index into `out` (empty), in key order. */
static int rewrite_into(apply_ctx *a, MDB_dbi out)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(a->txn, a->post, &c);
    if (rc)
        return rc;
    size_t i = 0, n = 0;
    uint32_t key = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 4) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(&key, k.mv_data, 4);
        /* The cursor is on the old index, the writes go to `out`: v stays valid. */
        if ((rc = rewrite_gather(a, key, &v, &i, &n)))
            break;
        if (n >= SH_REWRITE_CHUNK && (rc = rewrite_flush(a, out, key, &n)))
            break;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return rc;
    rc = 0;
    if (i < a->npend) { /* past the last range */
        key = UINT32_MAX;
        rc = rewrite_gather(a, key, NULL, &i, &n);
    }
    return rc ? rc : rewrite_flush(a, out, key, &n);
}

/* Empties the index a->post and appends every range of `from` to it. */
static int rewrite_copy_back(apply_ctx *a, MDB_dbi from)
{
    int rc = mdb_drop(a->txn, a->post, 0);
    MDB_cursor *c;
    if (rc || (rc = mdb_cursor_open(a->txn, from, &c)))
        return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint32_t key;
        if (k.mv_size != 4 || (rc = ensure_blob(a, v.mv_size))) {
            rc = rc ? rc : MDB_CORRUPTED;
            break;
        }
        memcpy(&key, k.mv_data, 4);
        memcpy(a->blob, v.mv_data, v.mv_size); /* copied: the put may move pages */
        MDB_val kk = mval(&key, 4), vv = mval(a->blob, v.mv_size);
        if ((rc = mdb_put(a->txn, a->post, &kk, &vv, MDB_APPEND)))
            break;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Merges the pending postings into a->post by rewriting it (see above); also drops every dead
 * posting of the index. The scratch table exists only inside this transaction. */
int sh_shard_rewrite_index(apply_ctx *a)
{
    MDB_dbi tmp;
    int rc = mdb_dbi_open(a->txn, SH_SHARD_REWRITE_DB, MDB_CREATE | MDB_INTEGERKEY, &tmp);
    if (rc)
        return rc;
    /* No commit leaves it behind (dropped below, or the transaction aborts): emptied anyway. */
    if (!(rc = mdb_drop(a->txn, tmp, 0)))
        rc = rewrite_into(a, tmp);
    if (!rc)
        rc = rewrite_copy_back(a, tmp);
    if (!rc)
        rc = mdb_drop(a->txn, tmp, 1);
    return rc;
}

/* Whether the pending postings are merged by rewriting the index (see above). */
static int rewrite_wanted(apply_ctx *a, bool *yes)
{
    MDB_stat st;
    int rc = mdb_stat(a->txn, a->post, &st);
    *yes = !rc && st.ms_entries && a->npend >= st.ms_entries;
    return rc;
}

/* Rewrites ranges of the index a->post from *pos on, dropping dead postings, until *left (when
 * `bounded`) is used up or no dead postings remain. *at_end when it reached the end of the index.
 */
static int vacuum_index(apply_ctx *a, uint32_t *pos, bool bounded, size_t *left, bool *at_end)
{
    MDB_cursor *c;
    *at_end = false;
    int rc = mdb_cursor_open(a->txn, a->post, &c);
    if (rc)
        return rc;
    MDB_val k = mval(pos, 4), v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (!rc && a->c.dead_postings && (!bounded || *left)) {
        uint32_t key;
        if (k.mv_size != 4) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(&key, k.mv_data, 4);
        size_t n = 0, dropped = 0;
        if ((rc = sh_shard_load_range(a, key, &v, &n, &dropped)))
            break;
        if (dropped) {
            /* Only shrinks, so a single blob; `key` is a copy: k points into the map. */
            MDB_val kk = mval(&key, 4);
            if (n) {
                rc = ensure_blob(a, sh_range_bound(n));
                size_t len = rc ? 0 : sh_range_encode(a->work, n, a->skip_shift, a->blob);
                MDB_val nv = mval(a->blob, len);
                if (!rc)
                    rc = mdb_put(a->txn, a->post, &kk, &nv, 0);
            } else {
                rc = mdb_del(a->txn, a->post, &kk, NULL);
            }
            if (rc)
                break;
            a->st.ranges_written++;
        }
        if (bounded)
            (*left)--;
        if (key == UINT32_MAX) {
            rc = MDB_NOTFOUND;
            break;
        }
        *pos = key + 1;
        /* Re-seek rather than MDB_NEXT: a delete leaves the cursor on the following item. */
        k = mval(pos, 4);
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        *at_end = true;
        *pos = 0;
        rc = 0;
    }
    return rc;
}

/* Rewrites up to `budget` ranges from the vacuum position (an fp_version's index and a key in
 * it), dropping dead postings, moving on to the next index at the end of one. Returns with the
 * position advanced. budget 0 = every index, from the current position round to it again. */
static int vacuum_ranges(apply_ctx *a, size_t budget)
{
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    size_t n, start = 0, left = budget;
    int rc = sh_shard_fp_scan(a->s, a->txn, fps, NULL, &n);
    if (rc || !n)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (fps[i] == a->c.vacuum_fp)
            start = i;
    uint32_t pos = fps[start] == a->c.vacuum_fp ? a->c.vacuum_pos : 0;
    /* n + 1 visits: the start index again from 0, for the part before the start position. */
    for (size_t k = 0; k <= n && a->c.dead_postings && (!budget || left); k++) {
        int fp = fps[(start + k) % n];
        bool at_end;
        if ((rc = sh_shard_post_open(a, fp, false, &a->post)))
            return rc;
        if ((rc = vacuum_index(a, &pos, budget != 0, &left, &at_end)))
            return rc;
        a->c.vacuum_fp = at_end ? fps[(start + k + 1) % n] : fp;
        a->c.vacuum_pos = pos;
    }
    return 0;
}

/* Merges the new postings of each fp_version into its index. */
static int merge_all(apply_ctx *a, const sh_shard_batch *b)
{
    int done[SH_SHARD_FP_VERSIONS_MAX];
    size_t ndone = 0;
    int rc = 0;
    for (size_t i = 0; i < a->nnew && !rc; i++) {
        int fp = b->ops[a->new_op[i]].fp_version;
        bool seen = false;
        for (size_t j = 0; j < ndone; j++)
            seen |= done[j] == fp;
        if (seen || a->cancelled[i])
            continue;
        done[ndone++] = fp; /* ≤ SH_SHARD_FP_VERSIONS_MAX: each has an index */
        rc = sh_shard_post_open(a, fp, true, &a->post);
        if (!rc)
            rc = gather_pending(a, b, fp);
        bool rewrite = false;
        if (!rc)
            rc = rewrite_wanted(a, &rewrite);
        if (!rc)
            rc = rewrite ? sh_shard_rewrite_index(a) : merge_pending(a);
        a->st.postings_added += a->npend;
    }
    return rc;
}

static int apply_ops(apply_ctx *a, sh_shard_batch *b)
{
    int rc = sh_shard_counters_load(a->s, a->txn, &a->c);
    if (!rc)
        rc = sh_shard_dead_load(a->s, a->txn, &a->dead);
    a->first_new = a->c.next_track;
    for (size_t i = 0; i < b->nops && !rc; i++) {
        switch (b->ops[i].kind) {
        case OP_PUT:
            rc = apply_put(a, b, i);
            break;
        case OP_DELETE:
            rc = apply_delete(a, &b->ops[i]);
            break;
        case OP_CURSOR:
            rc = apply_cursor(a, &b->ops[i]);
            break;
        }
    }
    if (!rc)
        rc = merge_all(a, b);
    if (!rc && a->c.dead_postings) {
        size_t budget = a->st.ranges_written > SH_VACUUM_RANGES_MIN ? a->st.ranges_written
                                                                    : SH_VACUUM_RANGES_MIN;
        rc = vacuum_ranges(a, budget);
    }
    if (!rc)
        rc = sh_shard_dead_store(a->s, a->txn, &a->dead);
    if (!rc)
        rc = sh_shard_counters_store(a->s, a->txn, &a->c);
    return rc;
}

/* Doubles the map (no transaction of this handle is active: readers are excluded by the lock). */
static int grow_map(sh_shard *s, sh_err *e)
{
    if (s->map_size >= s->map_max)
        return sh_err_set(e, SH_ETOOBIG, "%s: shard reached its map size limit (%zu bytes)", s->dir,
                          s->map_max);
    size_t want = s->map_size * 2 < s->map_max ? s->map_size * 2 : s->map_max;
    pthread_rwlock_wrlock(&s->map_lock);
    int rc = mdb_env_set_mapsize(s->env, want);
    pthread_rwlock_unlock(&s->map_lock);
    if (rc)
        return sh_shard_lmdb_err(e, rc, "growing shard map");
    s->map_size = want;
    SH_INFO("shard_map_grown", "bytes=%zu", want);
    return 0;
}

/* Posting indexes a committed transaction opened become the handle's (an aborted one closed
 * them). */
static void publish_opened(sh_shard *s, const apply_ctx *a)
{
    pthread_rwlock_wrlock(&s->map_lock);
    for (size_t i = 0; i < a->nopened && s->nposts < SH_SHARD_FP_VERSIONS_MAX; i++)
        s->posts[s->nposts++] = a->opened[i];
    pthread_rwlock_unlock(&s->map_lock);
}

/* Runs `body` in one write transaction and commits it, holding the handle's write lock. Retries
 * with a doubled map when the map is full and with the current size when another process grew it
 * (MDB_MAP_RESIZED). Errors of our own (negative SH_E* codes) keep the body's message; LMDB codes
 * are translated with `what`. `resizes` (may be NULL) counts the growths. */
int sh_shard_write_txn(sh_shard *s, const char *what, int (*body)(apply_ctx *a, void *arg),
                       void *arg, sh_shard_commit_stats *st, size_t *resizes, sh_err *e)
{
    pthread_mutex_lock(&s->write_lock);
    int rc = 0;
    for (int attempt = 0; attempt < SH_RETRIES_MAX; attempt++) {
        sh_err local = {0};
        apply_ctx a = {.s = s,
                       .e = &local,
                       .skip_shift = s->format >= SH_SHARD_FORMAT ? SH_RANGE_SKIP_SHIFT : 0};
        rc = mdb_txn_begin(s->env, NULL, 0, &a.txn);
        if (rc == MDB_MAP_RESIZED) {
            pthread_rwlock_wrlock(&s->map_lock);
            mdb_env_set_mapsize(s->env, 0);
            pthread_rwlock_unlock(&s->map_lock);
            MDB_envinfo info;
            if (!mdb_env_info(s->env, &info))
                s->map_size = info.me_mapsize;
            continue;
        }
        if (!rc) {
            rc = body(&a, arg);
            rc = rc ? (mdb_txn_abort(a.txn), rc) : mdb_txn_commit(a.txn);
            if (!rc && a.nopened)
                publish_opened(s, &a);
        }
        if (st)
            *st = a.st;
        apply_ctx_free(&a);
        if (rc == MDB_MAP_FULL) {
            if (resizes)
                (*resizes)++;
            if ((rc = grow_map(s, e)))
                break;
            continue;
        }
        if (rc < 0 && rc >= SH_EINTERNAL) /* our own code, message in `local` */
            sh_err_set(e, rc, "%s", local.msg);
        else if (rc)
            rc = sh_shard_lmdb_err(e, rc, what);
        break;
    }
    if (rc == MDB_MAP_RESIZED || rc == MDB_MAP_FULL)
        rc = sh_err_set(e, SH_ELMDB, "%s: %s: map keeps being resized", s->dir, what);
    pthread_mutex_unlock(&s->write_lock);
    return rc;
}

static int commit_body(apply_ctx *a, void *batch)
{
    return apply_ops(a, batch);
}

int sh_shard_batch_commit(sh_shard_batch *b, sh_shard_commit_stats *st, sh_err *e)
{
    if (!b)
        return sh_err_set(e, SH_EINVAL, "shard commit: NULL batch");
    sh_shard_commit_stats got = {0};
    size_t resizes = 0;
    int rc = sh_shard_write_txn(b->s, "applying batch", commit_body, b, &got, &resizes, e);
    if (!rc && st) {
        *st = got;
        st->resizes = resizes;
    }
    sh_shard_batch_abort(b);
    return rc;
}

static int vacuum_body(apply_ctx *a, void *unused)
{
    (void)unused;
    int rc = sh_shard_counters_load(a->s, a->txn, &a->c);
    if (!rc)
        rc = sh_shard_dead_load(a->s, a->txn, &a->dead);
    a->c.vacuum_pos = 0;
    a->c.vacuum_fp = 0;
    if (!rc && a->c.dead_postings)
        rc = vacuum_ranges(a, 0);
    if (!rc)
        rc = sh_shard_dead_store(a->s, a->txn, &a->dead);
    return rc ? rc : sh_shard_counters_store(a->s, a->txn, &a->c);
}

int sh_shard_vacuum(sh_shard *s, sh_err *e)
{
    if (!s || s->read_only)
        return sh_err_set(e, SH_EINVAL, "shard vacuum: shard not writable");
    return sh_shard_write_txn(s, "vacuum", vacuum_body, NULL, NULL, NULL, e);
}
