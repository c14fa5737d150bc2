/* sh_dpay.c — see sh_dpay.h for the op model and the outer format.
 *
 * Raw payload, in order (varints are LEB128):
 *   'D', 1, flags
 *   varint nops, varint total postings
 *   nops op records: varint zigzag(seq - previous seq) (previous = 0 for the first), u8 kind,
 *     varint id length + bytes, varint tenant length + bytes, varint metadata length + bytes,
 *     varint version, varint fp_version, 8 bytes duration (IEEE-754 binary64 bits, LE),
 *     varint npostings (0 for deletes)
 *   SH_DPAY_NCOLS varints: the byte length of each posting column, then the columns
 *   8 bytes: SHA-256 of everything above, first 8 bytes
 *
 * Posting columns. Each upsert's postings, in op order, sorted by (t, hash) and cut into groups of
 * equal t (one anchor peak, sometimes two: a triplet anchor yields C(4,2) = 6 hashes at one t).
 * Per group: COL_T varint(t - previous group's t) (0 for a track's first group, then >= 1),
 * COL_N varint(group size - 1). Per hash, split into its triplet fields (sh_fp.h) f1 6 bits,
 * db 7, dc 7, lt 7, r 5 — which cover all 32 bits, so ANY hash round-trips, only triplets
 * compress well:
 *   f1  first of group: COL_F1L f1; others: COL_F1D f1 - previous f1 (>= 0: sorted). A new f1
 *       is a new anchor: the per-anchor state below restarts with it and with every group.
 *   db, dc  COL_DB / COL_DC: the index (0..15) of the value in the anchor's list of frequency
 *       ratios seen so far (db and dc values, first 16 distinct), or 16 + value when new. The
 *       anchor's 4 targets appear as b and c of its 6 triplets, so most are repeats.
 *   lt  the time to c depends on c alone: if this dc value was seen before as a dc of the anchor,
 *       COL_LTP zigzag(lt - its first lt) (mostly 0), else COL_LTL lt.
 *   r   COL_R r (a function of both targets' exact times: little to predict).
 * Measured on the dev corpus: ~17 bits per posting of order-0 entropy over these columns and
 * ~2 bytes per posting after zstd, against 4+ for (t, hash) pairs (bench/bench_dpay.c).
 */
#include "sh_dpay.h"

#include "sh_media.h"
#include "sh_varint.h"
#include "sh_vec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

enum {
    COL_T,
    COL_N,
    COL_F1L,
    COL_F1D,
    COL_DB,
    COL_DC,
    COL_LTL,
    COL_LTP,
    COL_R,
};
_Static_assert(COL_R + 1 == SH_DPAY_NCOLS, "column count");

enum {
    HDR_MAX = 3 + 2 * SH_VARINT_MAX,
    SUM_LEN = 8,
    SEEN_MAX = 16,
    /* Smallest op record: seq 1, kind 1, 3 lengths, id >= 1, version 1, fp_version 1, duration 8,
     * npostings 1. */
    OP_MIN = 17,
    OP_FIXED_MAX = 5 * SH_VARINT_MAX + 1 + 8 + 3 * SH_VARINT_MAX,
    /* Every posting writes one byte to each of: F1L|F1D, DB, DC, LTL|LTP, R. */
    POSTING_MIN = 5,
};

void sh_dpay_caps_default(sh_dpay_caps *c)
{
    c->max_raw = (size_t)64 << 20;
    c->max_ops = (size_t)1 << 20;
    c->max_postings = (size_t)32 << 20;
    c->max_op_postings = (size_t)8 << 20;
    c->allow_unordered = 0;
}

static sh_dpay_caps caps_or_default(const sh_dpay_caps *c)
{
    sh_dpay_caps d;
    sh_dpay_caps_default(&d);
    if (!c)
        return d;
    if (c->max_raw)
        d.max_raw = c->max_raw;
    if (c->max_ops)
        d.max_ops = c->max_ops;
    if (c->max_postings)
        d.max_postings = c->max_postings;
    if (c->max_op_postings)
        d.max_op_postings = c->max_op_postings;
    d.allow_unordered = c->allow_unordered;
    return d;
}

static uint64_t zigzag(int64_t v)
{
    return v >= 0 ? (uint64_t)v << 1 : (((uint64_t)(-(v + 1))) << 1) | 1u;
}

static int64_t unzigzag(uint64_t z)
{
    return (z & 1u) ? -(int64_t)(z >> 1) - 1 : (int64_t)(z >> 1);
}

static int cmp_t_hash(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return 0;
}

/* ---- posting columns ---------------------------------------------------------------------- */

/* Per-anchor coding state (see the top of the file). ltgen stamps replace clearing 128 entries
 * at every anchor. */
typedef struct anchor {
    uint32_t f1;
    uint8_t seen[SEEN_MAX];
    unsigned nseen;
    uint32_t gen;
    uint32_t ltgen[128];
    uint8_t ltval[128];
} anchor;

static void anchor_restart(anchor *a, uint32_t f1)
{
    a->f1 = f1;
    a->nseen = 0;
    a->gen++;
    if (a->gen == 0) { /* wrapped: stamps of 4 G anchors ago could look current */
        memset(a->ltgen, 0, sizeof a->ltgen);
        a->gen = 1;
    }
}

static int seen_find(const anchor *a, uint32_t q)
{
    for (unsigned i = 0; i < a->nseen; i++)
        if (a->seen[i] == q)
            return (int)i;
    return -1;
}

static void seen_add(anchor *a, uint32_t q)
{
    if (a->nseen < SEEN_MAX)
        a->seen[a->nseen++] = (uint8_t)q;
}

/* Column writer: buffers sized up front by cols_bound(), so writes never fail. */
typedef struct colw {
    uint8_t *p[SH_DPAY_NCOLS];
    size_t len[SH_DPAY_NCOLS];
} colw;

static void col_byte(colw *c, int col, uint32_t v)
{
    c->p[col][c->len[col]++] = (uint8_t)v;
}

static void col_varint(colw *c, int col, uint64_t v)
{
    c->len[col] += sh_varint_put(c->p[col] + c->len[col], v);
}

static void put_q(colw *c, int col, anchor *a, uint32_t q)
{
    int i = seen_find(a, q);
    if (i >= 0) {
        col_byte(c, col, (uint32_t)i);
    } else {
        col_byte(c, col, SEEN_MAX + q);
        seen_add(a, q);
    }
}

static void enc_hash(colw *c, anchor *a, uint32_t h, int first)
{
    const uint32_t f1 = sh_fp_hash3_f1(h), db = sh_fp_hash3_db(h), dc = sh_fp_hash3_dc(h);
    const uint32_t lt = sh_fp_hash3_lt(h);
    if (first) {
        col_byte(c, COL_F1L, f1);
        anchor_restart(a, f1);
    } else {
        col_byte(c, COL_F1D, f1 - a->f1); /* sorted within the group: f1 never decreases */
        if (f1 != a->f1)
            anchor_restart(a, f1);
    }
    put_q(c, COL_DB, a, db);
    put_q(c, COL_DC, a, dc);
    if (a->ltgen[dc] == a->gen) {
        col_byte(c, COL_LTP, (uint32_t)zigzag((int64_t)lt - a->ltval[dc]));
    } else {
        col_byte(c, COL_LTL, lt);
        a->ltgen[dc] = a->gen;
        a->ltval[dc] = (uint8_t)lt;
    }
    col_byte(c, COL_R, sh_fp_hash3_r(h));
}

/* Writes one track's postings, sorted by (t, hash). */
static void enc_postings(colw *c, anchor *a, const sh_hash *h, size_t n)
{
    uint32_t prev_t = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && h[j].t == h[i].t)
            j++;
        col_varint(c, COL_T, h[i].t - prev_t);
        col_varint(c, COL_N, j - i - 1);
        prev_t = h[i].t;
        for (size_t k = i; k < j; k++)
            enc_hash(c, a, h[k].hash, k == i);
        i = j;
    }
}

/* Byte capacity each column needs for postings with `groups` distinct (op, t) groups. */
static void cols_bound(size_t postings, size_t groups, size_t cap[SH_DPAY_NCOLS])
{
    for (int i = 0; i < SH_DPAY_NCOLS; i++)
        cap[i] = postings;
    cap[COL_T] = cap[COL_N] = groups * SH_VARINT_MAX;
}

static size_t count_groups(const sh_hash *h, size_t n)
{
    size_t g = n ? 1 : 0;
    for (size_t i = 1; i < n; i++)
        g += h[i].t != h[i - 1].t;
    return g;
}

/* Column reader. */
typedef struct colr {
    const uint8_t *p[SH_DPAY_NCOLS], *end[SH_DPAY_NCOLS];
} colr;

static int rd_byte(colr *c, int col, uint32_t *v)
{
    if (c->p[col] >= c->end[col])
        return -1;
    *v = *c->p[col]++;
    return 0;
}

static int rd_q(colr *c, int col, anchor *a, uint32_t *q)
{
    uint32_t b;
    if (rd_byte(c, col, &b))
        return -1;
    if (b < SEEN_MAX) {
        if (b >= a->nseen)
            return -1;
        *q = a->seen[b];
        return 0;
    }
    if (b >= SEEN_MAX + 128 || seen_find(a, b - SEEN_MAX) >= 0)
        return -1; /* out of range, or a repeat written as new: not what the encoder writes */
    *q = b - SEEN_MAX;
    seen_add(a, *q);
    return 0;
}

static int dec_hash(colr *c, anchor *a, int first, uint32_t *out)
{
    uint32_t f1, db, dc, lt, r, v;
    if (first) {
        if (rd_byte(c, COL_F1L, &f1) || f1 > 63)
            return -1;
        anchor_restart(a, f1);
    } else {
        if (rd_byte(c, COL_F1D, &v) || a->f1 + v > 63)
            return -1;
        f1 = a->f1 + v;
        if (v)
            anchor_restart(a, f1);
    }
    if (rd_q(c, COL_DB, a, &db) || rd_q(c, COL_DC, a, &dc))
        return -1;
    if (a->ltgen[dc] == a->gen) {
        if (rd_byte(c, COL_LTP, &v))
            return -1;
        const int64_t l = a->ltval[dc] + unzigzag(v);
        if (l < 0 || l > 127)
            return -1;
        lt = (uint32_t)l;
    } else {
        if (rd_byte(c, COL_LTL, &lt) || lt > 127)
            return -1;
        a->ltgen[dc] = a->gen;
        a->ltval[dc] = (uint8_t)lt;
    }
    if (rd_byte(c, COL_R, &r) || r > 31)
        return -1;
    *out = sh_fp_hash_pack3(f1, db, dc, lt, r);
    return 0;
}

static int rd_varint(colr *c, int col, uint64_t *v)
{
    return sh_varint_get(&c->p[col], c->end[col], v);
}

/* Reads one track's n postings into h, which come out sorted by (t, hash) or it fails. */
static int dec_postings(colr *c, anchor *a, sh_hash *h, size_t n, sh_err *e)
{
    uint64_t t = 0;
    for (size_t i = 0; i < n;) {
        uint64_t dt, size1;
        if (rd_varint(c, COL_T, &dt) || rd_varint(c, COL_N, &size1))
            return sh_err_set(e, SH_EFORMAT, "dpay: posting groups truncated");
        if ((i && dt == 0) || dt > UINT32_MAX || t + dt > UINT32_MAX)
            return sh_err_set(e, SH_EFORMAT, "dpay: bad posting time delta %llu",
                              (unsigned long long)dt);
        if (size1 >= n - i)
            return sh_err_set(e, SH_EFORMAT, "dpay: posting group larger than the op");
        t += dt;
        for (size_t k = i; k <= i + size1; k++) {
            if (dec_hash(c, a, k == i, &h[k].hash))
                return sh_err_set(e, SH_EFORMAT, "dpay: bad posting column data");
            h[k].t = (uint32_t)t;
            if (k > i && h[k].hash < h[k - 1].hash)
                return sh_err_set(e, SH_EFORMAT, "dpay: postings out of order");
        }
        i += (size_t)size1 + 1;
    }
    return 0;
}

/* ---- stats -------------------------------------------------------------------------------- */

int sh_dpay_stats_add(sh_dpay_stats *s, const sh_hash *h, size_t n, sh_err *e)
{
    if (!s || (!h && n))
        return sh_err_set(e, SH_EINVAL, "dpay stats: NULL argument");
    sh_hash *sorted = malloc((n ? n : 1) * sizeof *sorted);
    size_t cap[SH_DPAY_NCOLS];
    colw c = {0};
    cols_bound(n, n, cap);
    int ok = sorted != NULL;
    for (int i = 0; i < SH_DPAY_NCOLS; i++)
        ok = ok && (c.p[i] = malloc(cap[i] + 1)) != NULL;
    anchor *a = calloc(1, sizeof *a);
    if (!ok || !a) {
        for (int i = 0; i < SH_DPAY_NCOLS; i++)
            free(c.p[i]);
        free(sorted);
        free(a);
        return sh_err_set(e, SH_ENOMEM, "dpay stats: out of memory");
    }
    if (n)
        memcpy(sorted, h, n * sizeof *h);
    qsort(sorted, n, sizeof *sorted, cmp_t_hash);
    enc_postings(&c, a, sorted, n);
    for (int i = 0; i < SH_DPAY_NCOLS; i++) {
        for (size_t k = 0; k < c.len[i]; k++)
            s->count[i][c.p[i][k]]++;
        free(c.p[i]);
    }
    s->postings += n;
    free(sorted);
    free(a);
    return 0;
}

double sh_dpay_stats_bits(const sh_dpay_stats *s)
{
    double bits = 0;
    for (int i = 0; i < SH_DPAY_NCOLS; i++) {
        uint64_t tot = 0;
        for (int b = 0; b < 256; b++)
            tot += s->count[i][b];
        for (int b = 0; b < 256; b++)
            if (s->count[i][b])
                bits -= (double)s->count[i][b] * log2((double)s->count[i][b] / (double)tot);
    }
    return bits;
}

/* ---- builder ------------------------------------------------------------------------------ */

typedef struct bop {
    sh_dop op;
    void *mem; /* one block: postings (sorted), then id, tenant, metadata with their NULs */
    size_t id_len, tenant_len, meta_len, groups;
} bop;

struct sh_dpay_builder {
    sh_dpay_caps caps;
    unsigned flags;
    bop *ops;
    size_t n, cap;
    size_t postings, groups, strings;
    ZSTD_CCtx *cctx;
};

int sh_dpay_builder_new(const sh_dpay_caps *caps, unsigned flags, sh_dpay_builder **out,
                        sh_err *e)
{
    if (!out)
        return sh_err_set(e, SH_EINVAL, "dpay: NULL argument");
    *out = NULL;
    if (flags & ~SH_DPAY_UNORDERED)
        return sh_err_set(e, SH_EINVAL, "dpay: unknown flags 0x%x", flags);
    sh_dpay_builder *b = calloc(1, sizeof *b);
    if (!b)
        return sh_err_set(e, SH_ENOMEM, "dpay: out of memory");
    b->caps = caps_or_default(caps);
    b->flags = flags;
    *out = b;
    return 0;
}

/* Length of s (NULL = "") if at most max bytes, else max + 1. */
static size_t bounded_len(const char *s, size_t max)
{
    return s ? strnlen(s, max + 1) : 0;
}

static int check_op(const sh_dpay_builder *b, const sh_dop *op, size_t lens[3], sh_err *e)
{
    if (op->seq < 1)
        return sh_err_set(e, SH_EINVAL, "dpay: seq %lld < 1", (long long)op->seq);
    if (b->n && !(b->flags & SH_DPAY_UNORDERED) && op->seq <= b->ops[b->n - 1].op.seq)
        return sh_err_set(e, SH_EINVAL, "dpay: seq %lld not above the previous op's %lld",
                          (long long)op->seq, (long long)b->ops[b->n - 1].op.seq);
    if (op->kind != SH_DOP_UPSERT && op->kind != SH_DOP_DELETE)
        return sh_err_set(e, SH_EINVAL, "dpay: unknown op kind %d", op->kind);
    if (op->kind == SH_DOP_DELETE && op->npostings)
        return sh_err_set(e, SH_EINVAL, "dpay: a delete has no postings");
    if (op->npostings && !op->postings)
        return sh_err_set(e, SH_EINVAL, "dpay: NULL postings");
    if (op->version < 0 || op->fp_version < 0 || !isfinite(op->duration_s) || op->duration_s < 0)
        return sh_err_set(e, SH_EINVAL, "dpay: negative version/fp_version or bad duration");
    lens[0] = bounded_len(op->track_id, SH_DPAY_ID_MAX);
    lens[1] = bounded_len(op->tenant, SH_DPAY_TENANT_MAX);
    lens[2] = bounded_len(op->metadata, SH_DPAY_META_MAX);
    if (!lens[0])
        return sh_err_set(e, SH_EINVAL, "dpay: empty track id");
    if (lens[0] > SH_DPAY_ID_MAX || lens[1] > SH_DPAY_TENANT_MAX || lens[2] > SH_DPAY_META_MAX)
        return sh_err_set(e, SH_ETOOBIG, "dpay: track id, tenant or metadata over its cap");
    if (op->npostings > b->caps.max_op_postings ||
        op->npostings > b->caps.max_postings - b->postings || b->n >= b->caps.max_ops)
        return sh_err_set(e, SH_ETOOBIG, "dpay: ops or postings over the caps");
    return 0;
}

static int grow_ops(sh_dpay_builder *b)
{
    return sh_vec_reserve(&b->ops, &b->cap, b->n + 1, SH_VEC_NOCAP) ? -1 : 0;
}

int sh_dpay_builder_add(sh_dpay_builder *b, const sh_dop *op, sh_err *e)
{
    if (!b || !op)
        return sh_err_set(e, SH_EINVAL, "dpay: NULL argument");
    size_t lens[3];
    int rc = check_op(b, op, lens, e);
    if (rc)
        return rc;
    const size_t pbytes = op->npostings * sizeof(sh_hash);
    uint8_t *mem = malloc(pbytes + lens[0] + lens[1] + lens[2] + 3);
    if (!mem || grow_ops(b)) {
        free(mem);
        return sh_err_set(e, SH_ENOMEM, "dpay: out of memory");
    }
    bop *o = &b->ops[b->n];
    *o = (bop){.op = *op, .mem = mem, .id_len = lens[0], .tenant_len = lens[1],
               .meta_len = lens[2]};
    sh_hash *post = (sh_hash *)mem;
    char *s = (char *)mem + pbytes;
    const char *src[3] = {op->track_id, op->tenant ? op->tenant : "",
                          op->metadata ? op->metadata : ""};
    const char **dst[3] = {&o->op.track_id, &o->op.tenant, &o->op.metadata};
    for (int i = 0; i < 3; i++) {
        memcpy(s, src[i], lens[i]);
        s[lens[i]] = '\0';
        *dst[i] = s;
        s += lens[i] + 1;
    }
    if (op->npostings)
        memcpy(post, op->postings, pbytes);
    qsort(post, op->npostings, sizeof *post, cmp_t_hash);
    o->op.postings = op->npostings ? post : NULL;
    o->groups = count_groups(post, op->npostings);
    b->n++;
    b->postings += op->npostings;
    b->groups += o->groups;
    b->strings += lens[0] + lens[1] + lens[2];
    return 0;
}

size_t sh_dpay_builder_count(const sh_dpay_builder *b)
{
    return b ? b->n : 0;
}

size_t sh_dpay_builder_postings(const sh_dpay_builder *b)
{
    return b ? b->postings : 0;
}

size_t sh_dpay_builder_raw_bound(const sh_dpay_builder *b)
{
    if (!b)
        return 0;
    size_t cap[SH_DPAY_NCOLS], cols = 0;
    cols_bound(b->postings, b->groups, cap);
    for (int i = 0; i < SH_DPAY_NCOLS; i++)
        cols += cap[i];
    return HDR_MAX + b->n * OP_FIXED_MAX + b->strings + SH_DPAY_NCOLS * SH_VARINT_MAX + cols +
           SUM_LEN;
}

void sh_dpay_builder_reset(sh_dpay_builder *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->ops[i].mem);
    b->n = b->postings = b->groups = b->strings = 0;
}

void sh_dpay_builder_free(sh_dpay_builder *b)
{
    if (!b)
        return;
    sh_dpay_builder_reset(b);
    free(b->ops);
    ZSTD_freeCCtx(b->cctx);
    free(b);
}

static size_t put_bytes(uint8_t *p, const void *s, size_t len)
{
    size_t n = sh_varint_put(p, len);
    memcpy(p + n, s, len);
    return n + len;
}

static size_t put_op(uint8_t *p, const bop *o, int64_t prev_seq)
{
    size_t n = sh_varint_put(p, zigzag(o->op.seq - prev_seq));
    p[n++] = (uint8_t)o->op.kind;
    n += put_bytes(p + n, o->op.track_id, o->id_len);
    n += put_bytes(p + n, o->op.tenant, o->tenant_len);
    n += put_bytes(p + n, o->op.metadata, o->meta_len);
    n += sh_varint_put(p + n, (uint64_t)o->op.version);
    n += sh_varint_put(p + n, (uint64_t)o->op.fp_version);
    uint64_t bits;
    memcpy(&bits, &o->op.duration_s, sizeof bits);
    for (int i = 0; i < 8; i++)
        p[n++] = (uint8_t)(bits >> (8 * i));
    n += sh_varint_put(p + n, o->op.npostings);
    return n;
}

/* Lays the raw payload out in *raw (malloc'ed, owned by the caller); returns its size or 0. */
static size_t build_raw(sh_dpay_builder *b, uint8_t **raw)
{
    size_t cap[SH_DPAY_NCOLS];
    colw c = {0};
    cols_bound(b->postings, b->groups, cap);
    uint8_t *buf = malloc(sh_dpay_builder_raw_bound(b));
    anchor *a = calloc(1, sizeof *a);
    int ok = buf && a;
    for (int i = 0; ok && i < SH_DPAY_NCOLS; i++)
        ok = (c.p[i] = malloc(cap[i] + 1)) != NULL;
    size_t len = 0;
    if (ok) {
        buf[len++] = SH_DPAY_MAGIC;
        buf[len++] = SH_DPAY_VERSION;
        buf[len++] = (uint8_t)b->flags;
        len += sh_varint_put(buf + len, b->n);
        len += sh_varint_put(buf + len, b->postings);
        int64_t prev = 0;
        for (size_t i = 0; i < b->n; i++) {
            len += put_op(buf + len, &b->ops[i], prev);
            prev = b->ops[i].op.seq;
            enc_postings(&c, a, b->ops[i].op.postings, b->ops[i].op.npostings);
        }
        for (int i = 0; i < SH_DPAY_NCOLS; i++)
            len += sh_varint_put(buf + len, c.len[i]);
        for (int i = 0; i < SH_DPAY_NCOLS; i++) {
            memcpy(buf + len, c.p[i], c.len[i]);
            len += c.len[i];
        }
        uint8_t sum[SH_SHA256_LEN];
        ok = sh_sha256(buf, len, sum, NULL) == 0;
        memcpy(buf + len, sum, SUM_LEN);
        len += SUM_LEN;
    }
    for (int i = 0; i < SH_DPAY_NCOLS; i++)
        free(c.p[i]);
    free(a);
    if (!ok) {
        free(buf);
        return 0;
    }
    *raw = buf;
    return len;
}

static int compress_raw(sh_dpay_builder *b, const uint8_t *raw, size_t len, int level,
                        uint8_t **out, size_t *out_len, sh_err *e)
{
    if (!b->cctx && !(b->cctx = ZSTD_createCCtx()))
        return sh_err_set(e, SH_ENOMEM, "dpay: out of memory for zstd");
    const size_t cap = ZSTD_compressBound(len);
    uint8_t *z = malloc(cap);
    if (!z)
        return sh_err_set(e, SH_ENOMEM, "dpay: out of memory");
    const size_t n = ZSTD_compressCCtx(b->cctx, z, cap, raw, len, level ? level : 3);
    if (ZSTD_isError(n)) {
        free(z);
        return sh_err_set(e, SH_EZSTD, "dpay: zstd: %s", ZSTD_getErrorName(n));
    }
    *out = z;
    *out_len = n;
    return 0;
}

int sh_dpay_builder_finish(sh_dpay_builder *b, int codec, int level, uint8_t **out,
                           size_t *out_len, size_t *raw_size, sh_err *e)
{
    if (!b || !out || !out_len || !raw_size)
        return sh_err_set(e, SH_EINVAL, "dpay: NULL argument");
    if (codec != SH_DPAY_CODEC_NONE && codec != SH_DPAY_CODEC_ZSTD)
        return sh_err_set(e, SH_EINVAL, "dpay: unknown codec %d", codec);
    uint8_t *raw = NULL;
    const size_t len = build_raw(b, &raw);
    if (!len)
        return sh_err_set(e, SH_ENOMEM, "dpay: out of memory");
    if (len > b->caps.max_raw) {
        free(raw);
        return sh_err_set(e, SH_ETOOBIG, "dpay: raw payload %zu bytes over the cap %zu", len,
                          b->caps.max_raw);
    }
    int rc = 0;
    if (codec == SH_DPAY_CODEC_ZSTD) {
        rc = compress_raw(b, raw, len, level, out, out_len, e);
        free(raw);
    } else {
        *out = raw;
        *out_len = len;
    }
    if (rc)
        return rc;
    *raw_size = len;
    sh_dpay_builder_reset(b);
    return 0;
}

/* ---- decoder ------------------------------------------------------------------------------ */

struct sh_dpay {
    unsigned flags;
    size_t nops, npostings;
    sh_dop *ops;
    char *strings;
    sh_hash *postings;
};

size_t sh_dpay_count(const sh_dpay *d)
{
    return d ? d->nops : 0;
}

size_t sh_dpay_postings(const sh_dpay *d)
{
    return d ? d->npostings : 0;
}

const sh_dop *sh_dpay_op(const sh_dpay *d, size_t i)
{
    return d && i < d->nops ? &d->ops[i] : NULL;
}

unsigned sh_dpay_flags(const sh_dpay *d)
{
    return d ? d->flags : 0;
}

void sh_dpay_free(sh_dpay *d)
{
    if (!d)
        return;
    free(d->ops);
    free(d->strings);
    free(d->postings);
    free(d);
}

/* A bounded cursor over the raw bytes. */
typedef struct cur {
    const uint8_t *p, *end;
} cur;

static int cur_varint(cur *c, uint64_t *v)
{
    return sh_varint_get(&c->p, c->end, v);
}

/* A string field: length, bytes without NUL, copied NUL-terminated into *arena. */
static int cur_string(cur *c, size_t max, char **arena, const char **out)
{
    uint64_t len;
    if (cur_varint(c, &len) || len > max || len > (uint64_t)(c->end - c->p) ||
        memchr(c->p, 0, (size_t)len))
        return -1;
    memcpy(*arena, c->p, (size_t)len);
    (*arena)[len] = '\0';
    *out = *arena;
    *arena += len + 1;
    c->p += len;
    return 0;
}

static int parse_op(cur *c, const sh_dpay_caps *caps, unsigned flags, int64_t prev_seq,
                    char **arena, sh_dop *op, sh_err *e)
{
    uint64_t dseq, version, fpv, np;
    if (cur_varint(c, &dseq) || c->p >= c->end)
        return sh_err_set(e, SH_EFORMAT, "dpay: op truncated");
    const int64_t d = unzigzag(dseq);
    if ((d > 0 && prev_seq > INT64_MAX - d) || prev_seq + d < 1)
        return sh_err_set(e, SH_EFORMAT, "dpay: op seq out of range");
    op->seq = prev_seq + d;
    if (!(flags & SH_DPAY_UNORDERED) && op->seq <= prev_seq)
        return sh_err_set(e, SH_EFORMAT, "dpay: ops not in increasing seq order");
    op->kind = *c->p++;
    if (op->kind != SH_DOP_UPSERT && op->kind != SH_DOP_DELETE)
        return sh_err_set(e, SH_EFORMAT, "dpay: unknown op kind %d", op->kind);
    if (cur_string(c, SH_DPAY_ID_MAX, arena, &op->track_id) || !op->track_id[0] ||
        cur_string(c, SH_DPAY_TENANT_MAX, arena, &op->tenant) ||
        cur_string(c, SH_DPAY_META_MAX, arena, &op->metadata))
        return sh_err_set(e, SH_EFORMAT, "dpay: bad track id, tenant or metadata");
    if (cur_varint(c, &version) || cur_varint(c, &fpv) || version > INT64_MAX ||
        fpv > INT32_MAX || c->end - c->p < 8)
        return sh_err_set(e, SH_EFORMAT, "dpay: bad op version fields");
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
        bits |= (uint64_t)c->p[i] << (8 * i);
    c->p += 8;
    memcpy(&op->duration_s, &bits, sizeof bits);
    if (!isfinite(op->duration_s) || op->duration_s < 0 || cur_varint(c, &np))
        return sh_err_set(e, SH_EFORMAT, "dpay: bad op duration or posting count");
    if (np > caps->max_op_postings)
        return sh_err_set(e, SH_ETOOBIG, "dpay: op with %llu postings over the cap %zu",
                          (unsigned long long)np, caps->max_op_postings);
    if (op->kind == SH_DOP_DELETE && np)
        return sh_err_set(e, SH_EFORMAT, "dpay: a delete with postings");
    op->version = (int64_t)version;
    op->fp_version = (int32_t)fpv;
    op->npostings = (size_t)np;
    return 0;
}

/* Column directory and columns: they must fill [c->p, c->end) exactly. */
static int parse_cols(cur *c, colr *r, sh_err *e)
{
    uint64_t len[SH_DPAY_NCOLS];
    for (int i = 0; i < SH_DPAY_NCOLS; i++)
        if (cur_varint(c, &len[i]))
            return sh_err_set(e, SH_EFORMAT, "dpay: column directory truncated");
    for (int i = 0; i < SH_DPAY_NCOLS; i++) {
        if (len[i] > (uint64_t)(c->end - c->p))
            return sh_err_set(e, SH_EFORMAT, "dpay: column %d longer than the payload", i);
        r->p[i] = c->p;
        r->end[i] = c->p + len[i];
        c->p += len[i];
    }
    if (c->p != c->end)
        return sh_err_set(e, SH_EFORMAT, "dpay: %zu trailing bytes", (size_t)(c->end - c->p));
    return 0;
}

static int parse_header(cur *c, const sh_dpay_caps *caps, unsigned *flags, uint64_t *nops,
                        uint64_t *np, sh_err *e)
{
    const size_t len = (size_t)(c->end - c->p) + SUM_LEN;
    if (c->p[0] != SH_DPAY_MAGIC)
        return sh_err_set(e, SH_EFORMAT, "dpay: not an index-delta payload (bad magic)");
    if (c->p[1] != SH_DPAY_VERSION)
        return sh_err_set(e, SH_EUNSUPPORTED, "dpay: unknown format version %u", c->p[1]);
    *flags = c->p[2];
    if ((*flags & ~SH_DPAY_UNORDERED) || ((*flags & SH_DPAY_UNORDERED) && !caps->allow_unordered))
        return sh_err_set(e, SH_EUNSUPPORTED, "dpay: flags 0x%x not accepted here", *flags);
    c->p += 3;
    if (cur_varint(c, nops) || cur_varint(c, np))
        return sh_err_set(e, SH_EFORMAT, "dpay: header truncated");
    if (*nops > caps->max_ops || *np > caps->max_postings)
        return sh_err_set(e, SH_ETOOBIG, "dpay: %llu ops / %llu postings over the caps",
                          (unsigned long long)*nops, (unsigned long long)*np);
    /* Each op and posting takes a minimum of raw bytes: more than fit is a lie. */
    if (*nops > len / OP_MIN || *np > len / POSTING_MIN)
        return sh_err_set(e, SH_EFORMAT, "dpay: counts impossible for %zu bytes", len);
    return 0;
}

static int verify_sum(const uint8_t *raw, size_t len, sh_err *e)
{
    uint8_t sum[SH_SHA256_LEN];
    int rc = sh_sha256(raw, len - SUM_LEN, sum, e);
    if (rc)
        return rc;
    if (memcmp(sum, raw + len - SUM_LEN, SUM_LEN) != 0)
        return sh_err_set(e, SH_ECHECKSUM, "dpay: payload checksum mismatch");
    return 0;
}

static int parse_raw(const uint8_t *raw, size_t len, const sh_dpay_caps *caps, sh_dpay *d,
                     sh_err *e)
{
    if (len < 3 + SUM_LEN)
        return sh_err_set(e, SH_EFORMAT, "dpay: %zu bytes is too short for a payload", len);
    cur c = {raw, raw + len - SUM_LEN};
    uint64_t nops = 0, np = 0;
    int rc = parse_header(&c, caps, &d->flags, &nops, &np, e);
    if (rc || (rc = verify_sum(raw, len, e)))
        return rc;
    d->ops = calloc(nops ? nops : 1, sizeof *d->ops);
    d->strings = malloc(len + 3 * nops); /* every string's bytes plus its NUL */
    d->postings = malloc(np ? np * sizeof *d->postings : 1);
    if (!d->ops || !d->strings || !d->postings)
        return sh_err_set(e, SH_ENOMEM, "dpay: out of memory");
    char *arena = d->strings;
    int64_t prev = 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < nops; i++) {
        if ((rc = parse_op(&c, caps, d->flags, prev, &arena, &d->ops[i], e)))
            return rc;
        prev = d->ops[i].seq;
        sum += d->ops[i].npostings;
        if (sum > np)
            return sh_err_set(e, SH_EFORMAT, "dpay: op postings exceed the header's total");
    }
    if (sum != np)
        return sh_err_set(e, SH_EFORMAT, "dpay: op postings disagree with the header's total");
    colr r;
    if ((rc = parse_cols(&c, &r, e)))
        return rc;
    anchor *a = calloc(1, sizeof *a);
    if (!a)
        return sh_err_set(e, SH_ENOMEM, "dpay: out of memory");
    sh_hash *h = d->postings;
    for (size_t i = 0; i < nops && !rc; i++) {
        d->ops[i].postings = d->ops[i].npostings ? h : NULL;
        rc = dec_postings(&r, a, h, d->ops[i].npostings, e);
        h += d->ops[i].npostings;
    }
    free(a);
    for (int i = 0; !rc && i < SH_DPAY_NCOLS; i++)
        if (r.p[i] != r.end[i])
            rc = sh_err_set(e, SH_EFORMAT, "dpay: column %d has trailing bytes", i);
    d->nops = (size_t)nops;
    d->npostings = (size_t)np;
    return rc;
}

static int decompress(const uint8_t *z, size_t zlen, size_t raw_size, uint8_t **raw, sh_err *e)
{
    const unsigned long long declared = ZSTD_getFrameContentSize(z, zlen);
    if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN ||
        declared != raw_size)
        return sh_err_set(e, SH_EFORMAT, "dpay: zstd frame size disagrees with raw_size");
    const size_t fsz = ZSTD_findFrameCompressedSize(z, zlen);
    if (ZSTD_isError(fsz) || fsz != zlen)
        return sh_err_set(e, SH_EFORMAT, "dpay: truncated or trailing compressed data");
    uint8_t *buf = malloc(raw_size ? raw_size : 1);
    if (!buf)
        return sh_err_set(e, SH_ENOMEM, "dpay: out of memory for %zu raw bytes", raw_size);
    const size_t got = ZSTD_decompress(buf, raw_size, z, zlen);
    if (ZSTD_isError(got) || got != raw_size) {
        free(buf);
        return sh_err_set(e, SH_EFORMAT, "dpay: zstd: %s",
                          ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short output");
    }
    *raw = buf;
    return 0;
}

int sh_dpay_decode(const void *buf, size_t len, int codec, size_t raw_size,
                   const sh_dpay_caps *caps, sh_dpay **out, sh_err *e)
{
    if (!out)
        return sh_err_set(e, SH_EINVAL, "dpay: NULL argument");
    *out = NULL;
    if (!buf && len)
        return sh_err_set(e, SH_EINVAL, "dpay: NULL argument");
    if (codec != SH_DPAY_CODEC_NONE && codec != SH_DPAY_CODEC_ZSTD)
        return sh_err_set(e, SH_EINVAL, "dpay: unknown codec %d", codec);
    const sh_dpay_caps cp = caps_or_default(caps);
    if (raw_size > cp.max_raw)
        return sh_err_set(e, SH_ETOOBIG, "dpay: raw size %zu over the cap %zu", raw_size,
                          cp.max_raw);
    uint8_t *owned = NULL;
    const uint8_t *raw = buf;
    int rc = 0;
    if (codec == SH_DPAY_CODEC_ZSTD)
        rc = decompress(buf, len, raw_size, &owned, e);
    else if (len != raw_size)
        rc = sh_err_set(e, SH_EFORMAT, "dpay: %zu bytes, raw_size says %zu", len, raw_size);
    if (rc)
        return rc;
    if (owned)
        raw = owned;
    sh_dpay *d = calloc(1, sizeof *d);
    if (!d)
        rc = sh_err_set(e, SH_ENOMEM, "dpay: out of memory");
    else
        rc = parse_raw(raw, raw_size, &cp, d, e);
    free(owned);
    if (rc) {
        sh_dpay_free(d);
        return rc;
    }
    *out = d;
    return 0;
}
