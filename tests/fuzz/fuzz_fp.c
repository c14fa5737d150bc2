/* Fuzz target: the fingerprinter and matcher on arbitrary samples. Byte 0 picks the mode (bit 0:
 * index / query), the sample encoding (bit 1: int16, or raw float bits so NaN/Inf/denormals/huge
 * values occur), a chunk size (bits 2..6) and the hash mode (bit 7: triplets, else bit 6: pairs /
 * speed-invariant triplets); the rest is samples at the analysis rate. Invariants: chunked feeding gives
 * exactly the one-shot hashes, hashes are sorted by t and within the per-second bound, and
 * voting them against themselves never fails. */
#include "sh_fp.h"
#include "sh_match.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { FUZZ_MAX_SAMPLES = 1 << 16 };

static sh_hash *extract(const sh_fp_config *c, const float *x, size_t n, size_t chunk, size_t *nh)
{
    sh_fp *fp = NULL;
    if (sh_fp_new(c, &fp, NULL))
        abort();
    for (size_t i = 0; i < n; i += chunk)
        if (sh_fp_feed(fp, x + i, n - i < chunk ? n - i : chunk, NULL))
            abort();
    if (sh_fp_finish(fp, NULL))
        abort();
    const sh_hash *h = sh_fp_hashes(fp, nh);
    sh_hash *copy = malloc((*nh ? *nh : 1) * sizeof *copy);
    if (!copy)
        abort();
    if (*nh)
        memcpy(copy, h, *nh * sizeof *h);
    sh_fp_free(fp);
    return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t mode = data[0];
    data++, size--;
    const int as_float = mode & 2;
    size_t n = as_float ? size / 4 : size / 2;
    if (n > FUZZ_MAX_SAMPLES)
        n = FUZZ_MAX_SAMPLES;
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (as_float) {
            memcpy(&x[i], data + 4 * i, 4);
        } else {
            int16_t v;
            memcpy(&v, data + 2 * i, 2);
            x[i] = v / 32768.0f;
        }
    }
    sh_fp_config c;
    if (mode & 1)
        sh_fp_config_query(&c);
    else
        sh_fp_config_default(&c);
    if (mode & 0x80)
        sh_fp_config_mode(&c, (mode & 0x40) ? SH_FP_SPEED : SH_FP_PAIRS);
    const size_t chunk = 1 + (size_t)((mode >> 2) & 0x1f) * 37;
    size_t n1, n2;
    sh_hash *a = extract(&c, x, n, n ? n : 1, &n1), *b = extract(&c, x, n, chunk, &n2);
    if (n1 != n2 || (n1 && memcmp(a, b, n1 * sizeof *a) != 0))
        abort();
    const double secs = (double)n / c.rate;
    if ((double)n1 > sh_fp_max_hashes_per_s(&c) * (secs + 1.0))
        abort();
    sh_matcher *m = NULL;
    if (sh_matcher_new(&c, &m, NULL))
        abort();
    for (size_t i = 0; i < n1; i++) {
        if (i && a[i - 1].t > a[i].t)
            abort();
        for (size_t j = i; j < n1 && j < i + 4; j++) /* a few postings per hash */
            sh_matcher_vote(m, (uint32_t)(j % 3), a[j].t, a[i].t);
    }
    sh_match_result r[3];
    size_t nr;
    if (sh_matcher_result(m, r, 3, &nr) || nr > 3)
        abort();
    sh_matcher_free(m);
    free(a);
    free(b);
    free(x);
    return 0;
}
