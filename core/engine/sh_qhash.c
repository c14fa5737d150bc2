/* sh_qhash.c — query hashes as clients send them: JSON and the compact binary form (sh_qhash.h). */
#include "sh_qhash.h"

#include "sh_varint.h"

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum {
    QH_MAGIC_LEN = 4,
    QH_ENTRY_MIN = 5,                      /* one varint byte + 4 hash bytes */
    QH_ENTRY_MAX = 5 + 4,                  /* a dt < 2^32 takes at most 5 varint bytes */
    QH_HEADER_MAX = QH_MAGIC_LEN + 2 * SH_VARINT_MAX,
    QH_JSON_ENTRY_MAX = 64, /* "[4294967295,4294967295]," is 24 bytes; the rest for whitespace */
    QH_JSON_SLACK = 16384,  /* the fingerprint line's other keys (file name, format, ...) */
};

void sh_qhash_free(sh_qhash *q)
{
    if (!q)
        return;
    free(q->h);
    memset(q, 0, sizeof *q);
}

/* ---- binary ------------------------------------------------------------------------------- */

/* A varint that is also canonical: a multi-byte one must not end in a zero group, or the same
 * value would have two spellings (and a re-encoding would differ). */
static int get_canonical(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *start = *p;
    if (sh_varint_get(p, end, v) != 0)
        return -1;
    return (*p - start > 1 && (*p)[-1] == 0) ? -1 : 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int parse_entries(const uint8_t *p, const uint8_t *end, sh_qhash *q, sh_err *e)
{
    uint64_t t = 0;
    for (size_t i = 0; i < q->n; i++) {
        uint64_t dt;
        if (get_canonical(&p, end, &dt) != 0)
            return sh_err_set(e, SH_EFORMAT, "hashes: entry %zu: truncated or bad varint", i);
        if (dt > UINT32_MAX || (t += dt) > UINT32_MAX) /* t, dt < 2^32: the sum cannot wrap */
            return sh_err_set(e, SH_EFORMAT, "hashes: entry %zu: t over 2^32-1", i);
        if (end - p < 4)
            return sh_err_set(e, SH_EFORMAT, "hashes: entry %zu: truncated", i);
        q->h[i] = (sh_hash){.hash = le32(p), .t = (uint32_t)t};
        p += 4;
    }
    if (p != end)
        return sh_err_set(e, SH_EFORMAT, "hashes: %zu trailing bytes after %zu entries",
                          (size_t)(end - p), q->n);
    return 0;
}

static int parse_binary(const uint8_t *p, size_t len, size_t max_n, sh_qhash *q, sh_err *e)
{
    const uint8_t *end = p + len;
    if (len < QH_MAGIC_LEN || memcmp(p, SH_QHASH_MAGIC, QH_MAGIC_LEN) != 0)
        return sh_err_set(e, SH_EFORMAT, "hashes: bad magic (want \"%s\")", SH_QHASH_MAGIC);
    p += QH_MAGIC_LEN;
    uint64_t v, n;
    if (get_canonical(&p, end, &v) != 0)
        return sh_err_set(e, SH_EFORMAT, "hashes: fp_version: truncated or bad varint");
    if (v > INT_MAX)
        return sh_err_set(e, SH_EFORMAT, "hashes: fp_version %llu out of range",
                          (unsigned long long)v);
    if (get_canonical(&p, end, &n) != 0)
        return sh_err_set(e, SH_EFORMAT, "hashes: count: truncated or bad varint");
    if (n > max_n)
        return sh_err_set(e, SH_ETOOBIG, "hashes: %llu hashes, at most %zu accepted",
                          (unsigned long long)n, max_n);
    if (n > (uint64_t)(end - p) / QH_ENTRY_MIN)
        return sh_err_set(e, SH_EFORMAT, "hashes: %llu hashes announced, %zu bytes hold fewer",
                          (unsigned long long)n, (size_t)(end - p));
    q->fp_version = (int)v;
    q->n = (size_t)n;
    if (n && !(q->h = malloc((size_t)n * sizeof *q->h)))
        return sh_err_set(e, SH_ENOMEM, "hashes: out of memory");
    return parse_entries(p, end, q, e);
}

/* ---- JSON --------------------------------------------------------------------------------- */

/* An integer 0..2^32-1 (jansson's json_int_t is long long: every such value fits). */
static int u32_of(const json_t *j, uint32_t *v)
{
    if (!json_is_integer(j))
        return -1;
    json_int_t x = json_integer_value(j);
    if (x < 0 || x > (json_int_t)UINT32_MAX)
        return -1;
    *v = (uint32_t)x;
    return 0;
}

static int parse_list(const json_t *list, sh_qhash *q, sh_err *e)
{
    for (size_t i = 0; i < q->n; i++) {
        const json_t *pair = json_array_get(list, i);
        if (!json_is_array(pair) || json_array_size(pair) != 2)
            return sh_err_set(e, SH_EFORMAT, "hash_list[%zu]: not [hash, t]", i);
        if (u32_of(json_array_get(pair, 0), &q->h[i].hash) != 0)
            return sh_err_set(e, SH_EFORMAT, "hash_list[%zu]: hash not an integer 0..2^32-1",
                              i);
        if (u32_of(json_array_get(pair, 1), &q->h[i].t) != 0)
            return sh_err_set(e, SH_EFORMAT, "hash_list[%zu]: t not an integer 0..2^32-1", i);
    }
    return 0;
}

static int parse_doc(const json_t *doc, size_t max_n, sh_qhash *q, sh_err *e)
{
    if (!json_is_object(doc))
        return sh_err_set(e, SH_EFORMAT, "hashes: JSON is not an object");
    const json_t *v = json_object_get(doc, "fp_version");
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
        return sh_err_set(e, SH_EFORMAT, "fp_version: missing or not an integer 0..%d",
                          INT_MAX);
    const json_t *list = json_object_get(doc, "hash_list");
    if (!json_is_array(list))
        return sh_err_set(e, SH_EFORMAT, "hash_list: missing or not an array");
    size_t n = json_array_size(list);
    if (n > max_n)
        return sh_err_set(e, SH_ETOOBIG, "hash_list: %zu hashes, at most %zu accepted", n,
                          max_n);
    q->fp_version = (int)json_integer_value(v);
    q->n = n;
    if (n && !(q->h = malloc(n * sizeof *q->h)))
        return sh_err_set(e, SH_ENOMEM, "hashes: out of memory");
    return parse_list(list, q, e);
}

static int parse_json(const void *buf, size_t len, size_t max_n, sh_qhash *q, sh_err *e)
{
    /* jansson builds the whole document before the count can be checked: refuse a body longer
     * than max_n entries can be ("[4294967295,4294967295]," with room for whitespace), plus the
     * other keys of the fingerprint line, before parsing it. */
    if (len > QH_JSON_SLACK && (len - QH_JSON_SLACK) / QH_JSON_ENTRY_MAX > max_n)
        return sh_err_set(e, SH_ETOOBIG, "hashes: %zu bytes of JSON for at most %zu hashes",
                              len, max_n);
    json_error_t je;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return sh_err_set(e, SH_EFORMAT, "hashes: JSON: %s (line %d, column %d)", je.text,
                          je.line, je.column);
    int rc = parse_doc(doc, max_n, q, e);
    json_decref(doc);
    return rc;
}

static int cmp_t_hash(const void *a, const void *b);

static int cmp_hash_t(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

/* Drops repeated (hash, t) pairs and keeps at most SH_QHASH_PER_HASH_MAX entries per hash value:
 * a lookup walks a hash's postings once per query entry, so a body of one popular hash repeated
 * 200k times would cost 200k walks of its list. Real queries repeat a hash a few times at most
 * (repeating music). The survivors are left in (t, hash) order. */
static void normalise(sh_qhash *q)
{
    if (q->n < 2)
        return;
    qsort(q->h, q->n, sizeof *q->h, cmp_hash_t);
    size_t w = 0, run = 0;
    for (size_t i = 0; i < q->n; i++) {
        bool same_hash = w && q->h[w - 1].hash == q->h[i].hash;
        if (same_hash && q->h[w - 1].t == q->h[i].t)
            continue;
        run = same_hash ? run + 1 : 1;
        if (run > SH_QHASH_PER_HASH_MAX)
            continue;
        q->h[w++] = q->h[i];
    }
    q->n = w;
    qsort(q->h, q->n, sizeof *q->h, cmp_t_hash);
}

int sh_qhash_parse(const void *buf, size_t len, int binary, size_t max_n, sh_qhash *out,
                   sh_err *e)
{
    if (!out || (!buf && len))
        return sh_err_set(e, SH_EINVAL, "sh_qhash_parse: NULL argument");
    memset(out, 0, sizeof *out);
    static const uint8_t none[1];
    const void *b = buf ? buf : none;
    int rc = binary ? parse_binary(b, len, max_n, out, e) : parse_json(b, len, max_n, out, e);
    if (rc)
        sh_qhash_free(out);
    else
        normalise(out);
    return rc;
}

/* ---- encode ------------------------------------------------------------------------------- */

static int cmp_t_hash(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return (x->hash > y->hash) - (x->hash < y->hash);
}

static int sorted_by_t(const sh_hash *h, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (h[i].t < h[i - 1].t)
            return 0;
    return 1;
}

int sh_qhash_encode(int fp_version, const sh_hash *h, size_t n, uint8_t **out, size_t *len,
                    sh_err *e)
{
    if (fp_version < 0 || !out || !len || (!h && n))
        return sh_err_set(e, SH_EINVAL, "sh_qhash_encode: bad argument");
    *out = NULL;
    *len = 0;
    if (n > (SIZE_MAX - QH_HEADER_MAX) / QH_ENTRY_MAX)
        return sh_err_set(e, SH_EINVAL, "sh_qhash_encode: %zu hashes", n);
    sh_hash *s = n ? malloc(n * sizeof *s) : NULL;
    uint8_t *buf = malloc(QH_HEADER_MAX + n * QH_ENTRY_MAX);
    if ((n && !s) || !buf) {
        free(s);
        free(buf);
        return sh_err_set(e, SH_ENOMEM, "hashes: out of memory");
    }
    if (n)
        memcpy(s, h, n * sizeof *s);
    /* Input already in t order (an extractor's output) is kept as is: parse → encode is then
     * the identity on canonical bytes. */
    if (!sorted_by_t(s, n))
        qsort(s, n, sizeof *s, cmp_t_hash);
    uint8_t *p = buf;
    memcpy(p, SH_QHASH_MAGIC, QH_MAGIC_LEN);
    p += QH_MAGIC_LEN;
    p += sh_varint_put(p, (uint64_t)fp_version);
    p += sh_varint_put(p, n);
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        p += sh_varint_put(p, s[i].t - prev);
        prev = s[i].t;
        const uint32_t v = s[i].hash;
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
        p += 4;
    }
    free(s);
    *out = buf;
    *len = (size_t)(p - buf);
    return 0;
}
