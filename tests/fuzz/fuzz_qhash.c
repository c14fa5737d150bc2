/* Fuzz target: sh_qhash_parse() on arbitrary bytes, as a binary and as a JSON hash payload (the
 * bodies POST /v1/match accepts). A binary payload that parses re-encodes to its normal form (no
 * longer than the input, a fixed point of parse → encode: parsing normalises); a JSON one must survive encode → binary parse unchanged up to the
 * (t, hash) order the encoder imposes. Both stay within the cap. */
#include "sh_qhash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { FUZZ_MAX_HASHES = 1 << 16 };

static int cmp_t_hash(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return (x->hash > y->hash) - (x->hash < y->hash);
}

static void check_binary(const uint8_t *data, size_t size)
{
    sh_qhash q;
    sh_err e = {0};
    if (sh_qhash_parse(data, size, 1, FUZZ_MAX_HASHES, &q, &e) != 0) {
        if (q.h || q.n)
            abort();
        return;
    }
    /* Parsing normalises (repeats dropped, a cap per hash value, (t, hash) order), so the bytes
     * of a parsed query re-encode to at most the input's length, and the normal form is a fixed
     * point: it parses to the same entries and re-encodes to itself byte for byte. */
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    sh_qhash r;
    if (q.n > FUZZ_MAX_HASHES || sh_qhash_encode(q.fp_version, q.h, q.n, &buf, &len, &e) != 0 ||
        len > size || sh_qhash_parse(buf, len, 1, FUZZ_MAX_HASHES, &r, &e) != 0)
        abort();
    if (r.n != q.n || r.fp_version != q.fp_version ||
        (q.n && memcmp(r.h, q.h, q.n * sizeof *q.h) != 0) ||
        sh_qhash_encode(r.fp_version, r.h, r.n, &buf2, &len2, &e) != 0 || len2 != len ||
        memcmp(buf2, buf, len) != 0)
        abort();
    free(buf);
    free(buf2);
    sh_qhash_free(&q);
    sh_qhash_free(&r);
}

static void check_json(const uint8_t *data, size_t size)
{
    sh_qhash q, r;
    sh_err e = {0};
    if (sh_qhash_parse(data, size, 0, FUZZ_MAX_HASHES, &q, &e) != 0)
        return;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (q.n > FUZZ_MAX_HASHES || sh_qhash_encode(q.fp_version, q.h, q.n, &buf, &len, &e) != 0 ||
        sh_qhash_parse(buf, len, 1, q.n, &r, &e) != 0 || r.n != q.n ||
        r.fp_version != q.fp_version)
        abort();
    if (q.n)
        qsort(q.h, q.n, sizeof *q.h, cmp_t_hash);
    for (size_t i = 1; i < r.n; i++)
        if (r.h[i].t < r.h[i - 1].t)
            abort();
    /* The encoder keeps t-sorted input as is and sorts the rest by (t, hash): compare as
     * multisets. */
    if (r.n)
        qsort(r.h, r.n, sizeof *r.h, cmp_t_hash);
    if (q.n && memcmp(q.h, r.h, q.n * sizeof *q.h) != 0)
        abort();
    free(buf);
    sh_qhash_free(&q);
    sh_qhash_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_binary(data, size);
    check_json(data, size);
    return 0;
}
