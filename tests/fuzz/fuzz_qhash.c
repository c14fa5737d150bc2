/* Fuzz target: sh_qhash_parse() on arbitrary bytes, as a binary and as a JSON hash payload (the
 * bodies POST /v1/match accepts). A binary payload that parses must re-encode to the same bytes
 * (the form is canonical); a JSON one must survive encode → binary parse unchanged up to the
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
    uint8_t *buf = NULL;
    size_t len = 0;
    if (q.n > FUZZ_MAX_HASHES || sh_qhash_encode(q.fp_version, q.h, q.n, &buf, &len, &e) != 0 ||
        len != size || memcmp(buf, data, size) != 0)
        abort();
    free(buf);
    sh_qhash_free(&q);
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
