/* sh_snap.c — see sh_snap.h for the stream format. */
#include "sh_snap.h"

#include "sh_media.h"
#include "sh_shardmap.h"
#include "sh_varint.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static const uint8_t MAGIC[4] = {'S', 'H', 'S', 'N'};
enum {
    SUM_LEN = 8,
    TAG_CHUNK = 'C',
    TAG_END = 'E',
    HDR_MAX = 6 + (5 + SH_SNAP_FPV_MAX) * SH_VARINT_MAX + SUM_LEN,
    CHUNK_DEFAULT = 1 << 20,
    IN_BUF = 64 * 1024,
};

int sh_snap_fd_write(void *ctx, const void *buf, size_t len)
{
    const int fd = *(const int *)ctx;
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return SH_EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

long sh_snap_fd_read(void *ctx, void *buf, size_t len)
{
    const int fd = *(const int *)ctx;
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? SH_EIO : (long)n;
    }
}

static int check_info(const sh_snap_info *i, sh_err *e)
{
    if (!i->nshards || i->nshards > SH_SHARDS_MAX || i->shard >= i->nshards)
        return sh_err_set(e, SH_EINVAL, "snapshot: shard %u of %u invalid", i->shard, i->nshards);
    if (i->epoch < 0 || i->seq < 0)
        return sh_err_set(e, SH_EINVAL, "snapshot: negative epoch or seq");
    if (!i->nfp || i->nfp > SH_SNAP_FPV_MAX)
        return sh_err_set(e, SH_EINVAL, "snapshot: %zu fp_versions (1..%d)", i->nfp,
                          SH_SNAP_FPV_MAX);
    for (size_t k = 0; k < i->nfp; k++) {
        if (i->fp_versions[k] < 0)
            return sh_err_set(e, SH_EINVAL, "snapshot: negative fp_version");
        for (size_t j = 0; j < k; j++)
            if (i->fp_versions[j] == i->fp_versions[k])
                return sh_err_set(e, SH_EINVAL, "snapshot: fp_version %d listed twice",
                                  i->fp_versions[k]);
    }
    return 0;
}

static int fp_listed(const sh_snap_info *i, int32_t v)
{
    for (size_t k = 0; k < i->nfp; k++)
        if (i->fp_versions[k] == v)
            return 1;
    return 0;
}

/* The per-op rules every snapshot op obeys (writer: SH_EINVAL; reader: SH_EFORMAT). */
static int op_fits(const sh_snap_info *i, const sh_dop *op)
{
    return op->kind == SH_DOP_UPSERT && op->seq <= i->seq && fp_listed(i, op->fp_version) &&
           op->track_id &&
           sh_shard_of(op->track_id, strlen(op->track_id), i->nshards) == i->shard;
}

/* First 8 bytes of SHA-256 of what ctx has seen (ctx is not disturbed: a copy is finalised). */
static int digest8(EVP_MD_CTX *ctx, uint8_t out[SUM_LEN])
{
    uint8_t full[SH_SHA256_LEN];
    unsigned int n = 0;
    EVP_MD_CTX *tmp = EVP_MD_CTX_new();
    int ok = tmp && EVP_MD_CTX_copy_ex(tmp, ctx) == 1 && EVP_DigestFinal_ex(tmp, full, &n) == 1 &&
             n == SH_SHA256_LEN;
    EVP_MD_CTX_free(tmp);
    if (!ok)
        return SH_EINTERNAL;
    memcpy(out, full, SUM_LEN);
    return 0;
}

static EVP_MD_CTX *sha_new(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    return c;
}

static size_t put_header(const sh_snap_info *i, uint8_t *p)
{
    size_t n = 0;
    memcpy(p, MAGIC, 4);
    n += 4;
    p[n++] = SH_SNAP_VERSION;
    p[n++] = 0;
    n += sh_varint_put(p + n, i->shard);
    n += sh_varint_put(p + n, i->nshards);
    n += sh_varint_put(p + n, (uint64_t)i->epoch);
    n += sh_varint_put(p + n, (uint64_t)i->seq);
    n += sh_varint_put(p + n, i->nfp);
    for (size_t k = 0; k < i->nfp; k++)
        n += sh_varint_put(p + n, (uint64_t)i->fp_versions[k]);
    return n;
}

/* ---- writer ------------------------------------------------------------------------------- */

struct sh_snap_writer {
    sh_snap_info info;
    size_t chunk_raw;
    sh_snap_write_fn fn;
    void *ctx;
    sh_dpay_builder *b;
    EVP_MD_CTX *sha;
    uint64_t ops, postings;
    int failed, finished;
};

/* Writes bytes to the output and into the running checksum. */
static int out(sh_snap_writer *w, const void *buf, size_t len, sh_err *e)
{
    if (EVP_DigestUpdate(w->sha, buf, len) != 1)
        return sh_err_set(e, SH_EINTERNAL, "snapshot: libcrypto failure");
    int rc = w->fn(w->ctx, buf, len);
    if (rc) {
        w->failed = 1;
        return sh_err_set(e, rc < 0 ? rc : SH_EIO, "snapshot: write failed");
    }
    return 0;
}

int sh_snap_writer_new(const sh_snap_info *info, size_t chunk_raw, sh_snap_write_fn fn, void *ctx,
                       sh_snap_writer **out_w, sh_err *e)
{
    if (!info || !fn || !out_w)
        return sh_err_set(e, SH_EINVAL, "snapshot: NULL argument");
    *out_w = NULL;
    int rc = check_info(info, e);
    if (rc)
        return rc;
    sh_snap_writer *w = calloc(1, sizeof *w);
    if (!w)
        return sh_err_set(e, SH_ENOMEM, "snapshot: out of memory");
    w->info = *info;
    w->chunk_raw = chunk_raw ? chunk_raw : CHUNK_DEFAULT;
    w->fn = fn;
    w->ctx = ctx;
    w->sha = sha_new();
    if (!w->sha || (rc = sh_dpay_builder_new(NULL, SH_DPAY_UNORDERED, &w->b, e))) {
        sh_snap_writer_free(w);
        return rc ? rc : sh_err_set(e, SH_ENOMEM, "snapshot: out of memory");
    }
    uint8_t hdr[HDR_MAX];
    size_t n = put_header(info, hdr);
    if ((rc = out(w, hdr, n, e)) == 0 && (rc = digest8(w->sha, hdr + n)) == 0)
        rc = out(w, hdr + n, SUM_LEN, e);
    if (rc) {
        sh_snap_writer_free(w);
        return sh_err_set(e, rc, "snapshot: writing the header: %s", sh_strerror(rc));
    }
    *out_w = w;
    return 0;
}

static int flush_chunk(sh_snap_writer *w, sh_err *e)
{
    uint8_t *z;
    size_t zlen, raw;
    int rc = sh_dpay_builder_finish(w->b, SH_DPAY_CODEC_ZSTD, 0, &z, &zlen, &raw, e);
    if (rc)
        return rc;
    uint8_t hdr[1 + 2 * SH_VARINT_MAX];
    size_t n = 0;
    hdr[n++] = TAG_CHUNK;
    n += sh_varint_put(hdr + n, raw);
    n += sh_varint_put(hdr + n, zlen);
    rc = out(w, hdr, n, e);
    if (!rc)
        rc = out(w, z, zlen, e);
    free(z);
    return rc;
}

int sh_snap_writer_add(sh_snap_writer *w, const sh_dop *op, sh_err *e)
{
    if (!w || !op)
        return sh_err_set(e, SH_EINVAL, "snapshot: NULL argument");
    if (w->failed || w->finished)
        return sh_err_set(e, SH_EINVAL, "snapshot: writer failed or finished");
    if (!op_fits(&w->info, op))
        return sh_err_set(e, SH_EINVAL,
                          "snapshot: op seq %lld is not an upsert of shard %u at or below seq "
                          "%lld with a listed fp_version",
                          (long long)op->seq, w->info.shard, (long long)w->info.seq);
    int rc = sh_dpay_builder_add(w->b, op, e);
    if (rc == SH_ETOOBIG && sh_dpay_builder_count(w->b)) { /* chunk full by count: start anew */
        if ((rc = flush_chunk(w, e)) == 0)
            rc = sh_dpay_builder_add(w->b, op, e);
    }
    if (rc)
        return rc;
    w->ops++;
    w->postings += op->npostings;
    if (sh_dpay_builder_raw_bound(w->b) >= w->chunk_raw)
        return flush_chunk(w, e);
    return 0;
}

int sh_snap_writer_finish(sh_snap_writer *w, sh_err *e)
{
    if (!w)
        return sh_err_set(e, SH_EINVAL, "snapshot: NULL argument");
    if (w->failed || w->finished)
        return sh_err_set(e, SH_EINVAL, "snapshot: writer failed or finished");
    int rc = 0;
    if (sh_dpay_builder_count(w->b) && (rc = flush_chunk(w, e)))
        return rc;
    uint8_t t[1 + 2 * SH_VARINT_MAX + SUM_LEN];
    size_t n = 0;
    t[n++] = TAG_END;
    n += sh_varint_put(t + n, w->ops);
    n += sh_varint_put(t + n, w->postings);
    if ((rc = out(w, t, n, e)))
        return rc;
    if ((rc = digest8(w->sha, t + n)))
        return sh_err_set(e, rc, "snapshot: libcrypto failure");
    if ((rc = out(w, t + n, SUM_LEN, e)))
        return rc;
    w->finished = 1;
    return 0;
}

uint64_t sh_snap_writer_ops(const sh_snap_writer *w)
{
    return w ? w->ops : 0;
}

uint64_t sh_snap_writer_postings(const sh_snap_writer *w)
{
    return w ? w->postings : 0;
}

void sh_snap_writer_free(sh_snap_writer *w)
{
    if (!w)
        return;
    sh_dpay_builder_free(w->b);
    EVP_MD_CTX_free(w->sha);
    free(w);
}

/* ---- reader ------------------------------------------------------------------------------- */

struct sh_snap_reader {
    sh_snap_read_fn fn;
    void *ctx;
    sh_snap_caps caps;
    sh_snap_info info;
    EVP_MD_CTX *sha;
    uint8_t buf[IN_BUF];
    size_t pos, len; /* unread input is buf[pos..len) */
    int eof;
    uint8_t *z;      /* one compressed chunk, zcap bytes */
    size_t zcap;
    sh_dpay *chunk;
    uint64_t ops, postings;
    int state; /* 0 reading chunks, 1 done (verified), < 0 the error it failed with */
};

static int in_fill(sh_snap_reader *r, sh_err *e)
{
    if (r->eof)
        return sh_err_set(e, SH_EFORMAT, "snapshot: stream truncated");
    long n = r->fn(r->ctx, r->buf, sizeof r->buf);
    if (n < 0)
        return sh_err_set(e, (int)n, "snapshot: read failed: %s", sh_strerror((int)n));
    if (n == 0) {
        r->eof = 1;
        return sh_err_set(e, SH_EFORMAT, "snapshot: stream truncated");
    }
    r->pos = 0;
    r->len = (size_t)n > sizeof r->buf ? sizeof r->buf : (size_t)n;
    return 0;
}

/* Reads exactly n bytes into dst (and, when hash is set, into the running checksum). */
static int in_read(sh_snap_reader *r, void *dst, size_t n, int hash, sh_err *e)
{
    uint8_t *d = dst;
    while (n) {
        if (r->pos == r->len) {
            int rc = in_fill(r, e);
            if (rc)
                return rc;
        }
        size_t k = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(d, r->buf + r->pos, k);
        if (hash && EVP_DigestUpdate(r->sha, d, k) != 1)
            return sh_err_set(e, SH_EINTERNAL, "snapshot: libcrypto failure");
        r->pos += k;
        d += k;
        n -= k;
    }
    return 0;
}

static int in_varint(sh_snap_reader *r, uint64_t *v, sh_err *e)
{
    uint8_t b[SH_VARINT_MAX];
    for (size_t i = 0; i < SH_VARINT_MAX; i++) {
        int rc = in_read(r, &b[i], 1, 1, e);
        if (rc)
            return rc;
        if (!(b[i] & 0x80)) {
            const uint8_t *p = b;
            if (sh_varint_get(&p, b + i + 1, v))
                break;
            return 0;
        }
    }
    return sh_err_set(e, SH_EFORMAT, "snapshot: bad varint");
}

/* Reads a varint that must be <= max. */
static int in_field(sh_snap_reader *r, uint64_t max, uint64_t *v, const char *what, sh_err *e)
{
    int rc = in_varint(r, v, e);
    if (!rc && *v > max)
        rc = sh_err_set(e, SH_EFORMAT, "snapshot: %s %llu out of range", what,
                        (unsigned long long)*v);
    return rc;
}

static int read_sum(sh_snap_reader *r, sh_err *e)
{
    uint8_t want[SUM_LEN], got[SUM_LEN];
    if (digest8(r->sha, want))
        return sh_err_set(e, SH_EINTERNAL, "snapshot: libcrypto failure");
    int rc = in_read(r, got, SUM_LEN, 1, e);
    if (!rc && memcmp(want, got, SUM_LEN) != 0)
        rc = sh_err_set(e, SH_ECHECKSUM, "snapshot: checksum mismatch");
    return rc;
}

static int read_header(sh_snap_reader *r, sh_err *e)
{
    uint8_t m[6];
    int rc = in_read(r, m, sizeof m, 1, e);
    if (rc)
        return rc;
    if (memcmp(m, MAGIC, 4) != 0)
        return sh_err_set(e, SH_EFORMAT, "snapshot: not a snapshot stream (bad magic)");
    if (m[4] != SH_SNAP_VERSION || m[5] != 0)
        return sh_err_set(e, SH_EUNSUPPORTED, "snapshot: format version %u flags %u unknown",
                          m[4], m[5]);
    uint64_t shard, nshards, epoch, seq, nfp, v;
    if ((rc = in_field(r, SH_SHARDS_MAX, &shard, "shard", e)) ||
        (rc = in_field(r, SH_SHARDS_MAX, &nshards, "nshards", e)) ||
        (rc = in_field(r, INT64_MAX, &epoch, "epoch", e)) ||
        (rc = in_field(r, INT64_MAX, &seq, "seq", e)) ||
        (rc = in_field(r, SH_SNAP_FPV_MAX, &nfp, "fp_version count", e)))
        return rc;
    sh_snap_info *i = &r->info;
    *i = (sh_snap_info){.shard = (uint32_t)shard, .nshards = (uint32_t)nshards,
                        .epoch = (int64_t)epoch, .seq = (int64_t)seq, .nfp = (size_t)nfp};
    for (size_t k = 0; k < i->nfp; k++) {
        if ((rc = in_field(r, INT32_MAX, &v, "fp_version", e)))
            return rc;
        i->fp_versions[k] = (int32_t)v;
    }
    if ((rc = read_sum(r, e)))
        return rc;
    sh_err why = {0};
    if (check_info(i, &why))
        return sh_err_set(e, SH_EFORMAT, "snapshot: header: %s", why.msg);
    return 0;
}

int sh_snap_reader_new(sh_snap_read_fn fn, void *ctx, const sh_snap_caps *caps,
                       sh_snap_reader **out_r, sh_err *e)
{
    if (!fn || !out_r)
        return sh_err_set(e, SH_EINVAL, "snapshot: NULL argument");
    *out_r = NULL;
    sh_snap_reader *r = calloc(1, sizeof *r);
    if (!r)
        return sh_err_set(e, SH_ENOMEM, "snapshot: out of memory");
    r->fn = fn;
    r->ctx = ctx;
    if (caps)
        r->caps = *caps;
    sh_dpay_caps dc;
    sh_dpay_caps_default(&dc);
#define DEFAULT_CAP(f) (r->caps.chunk.f ? r->caps.chunk.f : dc.f)
    r->caps.chunk = (sh_dpay_caps){.max_raw = DEFAULT_CAP(max_raw), .max_ops = DEFAULT_CAP(max_ops),
                                   .max_postings = DEFAULT_CAP(max_postings),
                                   .max_op_postings = DEFAULT_CAP(max_op_postings),
                                   .allow_unordered = 1};
#undef DEFAULT_CAP
    if (!r->caps.max_ops)
        r->caps.max_ops = (uint64_t)1 << 26;
    if (!r->caps.max_postings)
        r->caps.max_postings = (uint64_t)1 << 36;
    r->sha = sha_new();
    int rc = r->sha ? read_header(r, e) : sh_err_set(e, SH_ENOMEM, "snapshot: out of memory");
    if (rc) {
        sh_snap_reader_free(r);
        return rc;
    }
    *out_r = r;
    return 0;
}

const sh_snap_info *sh_snap_reader_info(const sh_snap_reader *r)
{
    return r ? &r->info : NULL;
}

static int check_chunk(sh_snap_reader *r, const sh_dpay *d, sh_err *e)
{
    for (size_t i = 0; i < sh_dpay_count(d); i++)
        if (!op_fits(&r->info, sh_dpay_op(d, i)))
            return sh_err_set(e, SH_EFORMAT,
                              "snapshot: op %zu of a chunk is not an upsert of shard %u at or "
                              "below seq %lld with a listed fp_version",
                              i, r->info.shard, (long long)r->info.seq);
    r->ops += sh_dpay_count(d);
    r->postings += sh_dpay_postings(d);
    if (r->ops > r->caps.max_ops || r->postings > r->caps.max_postings)
        return sh_err_set(e, SH_ETOOBIG, "snapshot: more tracks or postings than the caps");
    return 0;
}

static int read_chunk(sh_snap_reader *r, sh_err *e)
{
    uint64_t raw, zlen;
    int rc;
    if ((rc = in_varint(r, &raw, e)))
        return rc;
    if (raw > r->caps.chunk.max_raw)
        return sh_err_set(e, SH_ETOOBIG, "snapshot: chunk of %llu raw bytes over the cap %zu",
                          (unsigned long long)raw, r->caps.chunk.max_raw);
    if ((rc = in_field(r, ZSTD_compressBound((size_t)raw), &zlen, "chunk length", e)))
        return rc;
    if (zlen > r->zcap) {
        uint8_t *z = realloc(r->z, (size_t)zlen);
        if (!z)
            return sh_err_set(e, SH_ENOMEM, "snapshot: out of memory");
        r->z = z;
        r->zcap = (size_t)zlen;
    }
    if ((rc = in_read(r, r->z, (size_t)zlen, 1, e)))
        return rc;
    if ((rc = sh_dpay_decode(r->z, (size_t)zlen, SH_DPAY_CODEC_ZSTD, (size_t)raw, &r->caps.chunk,
                             &r->chunk, e)))
        return rc;
    return check_chunk(r, r->chunk, e);
}

static int read_trailer(sh_snap_reader *r, sh_err *e)
{
    uint64_t ops, postings;
    int rc;
    if ((rc = in_varint(r, &ops, e)) || (rc = in_varint(r, &postings, e)))
        return rc;
    if (ops != r->ops || postings != r->postings)
        return sh_err_set(e, SH_EFORMAT, "snapshot: trailer totals disagree with the chunks");
    if ((rc = read_sum(r, e)))
        return rc;
    uint8_t extra;
    if (r->pos < r->len || r->fn(r->ctx, &extra, 1) != 0)
        return sh_err_set(e, SH_EFORMAT, "snapshot: bytes after the trailer");
    return 0;
}

int sh_snap_reader_next(sh_snap_reader *r, const sh_dpay **chunk, sh_err *e)
{
    if (!r || !chunk)
        return sh_err_set(e, SH_EINVAL, "snapshot: NULL argument");
    *chunk = NULL;
    sh_dpay_free(r->chunk);
    r->chunk = NULL;
    if (r->state == 1)
        return 0;
    if (r->state < 0)
        return sh_err_set(e, r->state, "snapshot: the stream already failed");
    uint8_t tag;
    int rc = in_read(r, &tag, 1, 1, e);
    if (!rc && tag == TAG_CHUNK)
        rc = read_chunk(r, e);
    else if (!rc && tag == TAG_END)
        rc = read_trailer(r, e);
    else if (!rc)
        rc = sh_err_set(e, SH_EFORMAT, "snapshot: unknown record tag 0x%02x", tag);
    if (rc) {
        sh_dpay_free(r->chunk);
        r->chunk = NULL;
        r->state = rc;
        return rc;
    }
    if (tag == TAG_END) {
        r->state = 1;
        return 0;
    }
    *chunk = r->chunk;
    return 1;
}

void sh_snap_reader_free(sh_snap_reader *r)
{
    if (!r)
        return;
    sh_dpay_free(r->chunk);
    free(r->z);
    EVP_MD_CTX_free(r->sha);
    free(r);
}
