#include "sh_fpblob.h"

#include "sh_varint.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

enum { SH_FPBLOB_HDR_MAX = 2 + 2 * SH_VARINT_MAX, SH_FPBLOB_POSTING_MAX = 5 + 4 };

static int cmp_t_hash(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return 0;
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The uncompressed body: (varint dt, u32 hash) per posting, in (t, hash) order. */
static size_t build_body(const sh_hash *sorted, size_t n, uint8_t *body)
{
    size_t len = 0;
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        len += sh_varint_put(body + len, sorted[i].t - prev);
        prev = sorted[i].t;
        put_u32le(body + len, sorted[i].hash);
        len += 4;
    }
    return len;
}

int sh_fpblob_encode(const sh_hash *h, size_t n, int level, uint8_t **out, size_t *out_len,
                     sh_err *e)
{
    if ((!h && n) || !out || !out_len)
        return sh_err_set(e, SH_EINVAL, "fpblob: NULL argument");
    if (n > SH_FPBLOB_MAX_POSTINGS_DEFAULT)
        return sh_err_set(e, SH_EINVAL, "fpblob: %zu postings over the cap", n);
    *out = NULL;
    *out_len = 0;
    sh_hash *sorted = malloc((n ? n : 1) * sizeof *sorted);
    uint8_t *body = malloc(n * SH_FPBLOB_POSTING_MAX + 1);
    if (!sorted || !body) {
        free(sorted);
        free(body);
        return sh_err_set(e, SH_ENOMEM, "fpblob: out of memory for %zu postings", n);
    }
    if (n)
        memcpy(sorted, h, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_t_hash);
    size_t raw = build_body(sorted, n, body);
    free(sorted);

    size_t cap = SH_FPBLOB_HDR_MAX + ZSTD_compressBound(raw);
    uint8_t *buf = malloc(cap);
    if (!buf) {
        free(body);
        return sh_err_set(e, SH_ENOMEM, "fpblob: out of memory");
    }
    size_t hl = 0;
    buf[hl++] = SH_FPBLOB_MAGIC;
    buf[hl++] = SH_FPBLOB_VERSION;
    hl += sh_varint_put(buf + hl, n);
    hl += sh_varint_put(buf + hl, raw);
    size_t z = ZSTD_compress(buf + hl, cap - hl, body, raw, level ? level : 3);
    free(body);
    if (ZSTD_isError(z)) {
        free(buf);
        return sh_err_set(e, SH_EZSTD, "fpblob: zstd: %s", ZSTD_getErrorName(z));
    }
    *out = buf;
    *out_len = hl + z;
    return 0;
}

/* Parses the header; on success *body points at the zstd frame. */
static int parse_header(const uint8_t *p, size_t len, uint64_t *n, uint64_t *raw,
                        const uint8_t **body, sh_err *e)
{
    const uint8_t *end = p + len;
    if (len < 2 || p[0] != SH_FPBLOB_MAGIC)
        return sh_err_set(e, SH_EFORMAT, "fpblob: not a posting blob (bad magic)");
    if (p[1] != SH_FPBLOB_VERSION)
        return sh_err_set(e, SH_EFORMAT, "fpblob: unknown format version %u", p[1]);
    p += 2;
    if (sh_varint_get(&p, end, n) || sh_varint_get(&p, end, raw))
        return sh_err_set(e, SH_EFORMAT, "fpblob: truncated header");
    *body = p;
    return 0;
}

int sh_fpblob_count(const void *buf, size_t len, size_t *n, sh_err *e)
{
    uint64_t cnt, raw;
    const uint8_t *body;
    if (!buf || !n)
        return sh_err_set(e, SH_EINVAL, "fpblob: NULL argument");
    int rc = parse_header(buf, len, &cnt, &raw, &body, e);
    if (rc)
        return rc;
    if (cnt > SIZE_MAX / sizeof(sh_hash))
        return sh_err_set(e, SH_EFORMAT, "fpblob: absurd posting count");
    *n = (size_t)cnt;
    return 0;
}

/* Parses exactly n postings from the body, which must be consumed exactly. */
static int parse_body(const uint8_t *p, size_t raw, size_t n, sh_hash *out, sh_err *e)
{
    const uint8_t *end = p + raw;
    uint64_t t = 0;
    uint32_t prev_hash = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t dt;
        if (sh_varint_get(&p, end, &dt) || end - p < 4)
            return sh_err_set(e, SH_EFORMAT, "fpblob: body truncated at posting %zu", i);
        t += dt;
        if (dt > UINT32_MAX || t > UINT32_MAX)
            return sh_err_set(e, SH_EFORMAT, "fpblob: time overflow at posting %zu", i);
        uint32_t hash = get_u32le(p);
        p += 4;
        /* Canonical order only: the decoder promises (t, hash) order to its callers. */
        if (i && dt == 0 && hash < prev_hash)
            return sh_err_set(e, SH_EFORMAT, "fpblob: postings out of order at %zu", i);
        out[i].t = (uint32_t)t;
        out[i].hash = hash;
        prev_hash = hash;
    }
    if (p != end)
        return sh_err_set(e, SH_EFORMAT, "fpblob: %zu trailing body bytes", (size_t)(end - p));
    return 0;
}

static int decompress_body(const uint8_t *z, size_t zlen, uint8_t *raw, size_t rawlen, sh_err *e)
{
    unsigned long long declared = ZSTD_getFrameContentSize(z, zlen);
    if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN ||
        declared != rawlen)
        return sh_err_set(e, SH_EFORMAT, "fpblob: compressed frame size disagrees with header");
    size_t fsz = ZSTD_findFrameCompressedSize(z, zlen);
    if (ZSTD_isError(fsz) || fsz != zlen)
        return sh_err_set(e, SH_EFORMAT, "fpblob: truncated or trailing compressed data");
    size_t got = ZSTD_decompress(raw, rawlen ? rawlen : 1, z, zlen);
    if (ZSTD_isError(got))
        return sh_err_set(e, SH_EFORMAT, "fpblob: zstd: %s", ZSTD_getErrorName(got));
    if (got != rawlen)
        return sh_err_set(e, SH_EFORMAT, "fpblob: decompressed %zu bytes, header says %zu", got,
                          rawlen);
    return 0;
}

int sh_fpblob_decode(const void *buf, size_t len, size_t max_postings, sh_hash **out, size_t *n,
                     sh_err *e)
{
    if (!buf || !out || !n)
        return sh_err_set(e, SH_EINVAL, "fpblob: NULL argument");
    *out = NULL;
    *n = 0;
    if (!max_postings)
        max_postings = SH_FPBLOB_MAX_POSTINGS_DEFAULT;
    uint64_t cnt, rawlen;
    const uint8_t *z;
    int rc = parse_header(buf, len, &cnt, &rawlen, &z, e);
    if (rc)
        return rc;
    if (cnt > max_postings)
        return sh_err_set(e, SH_ETOOBIG, "fpblob: %llu postings over the cap %zu",
                          (unsigned long long)cnt, max_postings);
    /* Each posting takes 5..9 body bytes: anything else is a lie, caught before allocating. */
    if (rawlen < cnt * 5 || rawlen > cnt * SH_FPBLOB_POSTING_MAX)
        return sh_err_set(e, SH_EFORMAT, "fpblob: body size %llu impossible for %llu postings",
                          (unsigned long long)rawlen, (unsigned long long)cnt);
    size_t zlen = len - (size_t)(z - (const uint8_t *)buf);
    uint8_t *raw = malloc(rawlen ? rawlen : 1);
    sh_hash *h = malloc(cnt ? cnt * sizeof *h : 1);
    if (!raw || !h) {
        free(raw);
        free(h);
        return sh_err_set(e, SH_ENOMEM, "fpblob: out of memory");
    }
    rc = decompress_body(z, zlen, raw, (size_t)rawlen, e);
    if (!rc)
        rc = parse_body(raw, (size_t)rawlen, (size_t)cnt, h, e);
    free(raw);
    if (rc) {
        free(h);
        return rc;
    }
    if (!cnt) {
        free(h);
        h = NULL;
    }
    *out = h;
    *n = (size_t)cnt;
    return 0;
}
