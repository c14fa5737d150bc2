/* Fuzz target: sh_dpay_decode() on arbitrary bytes as an index-delta payload.
 * Byte 0 picks the mode, the rest is the payload:
 *   bit 0  codec ZSTD (raw_size = the frame's declared content size) or NONE (raw_size = length)
 *   bit 1  caps.allow_unordered (snapshot chunks)
 *   bit 2  NONE only: the last 8 bytes are replaced by the right checksum first, so the fuzzer
 *          explores the parser behind the checksum instead of stopping at SH_ECHECKSUM.
 * Anything accepted must re-encode (builder) into a payload that decodes to the same ops. */
#include "sh_dpay.h"
#include "sh_media.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static void same_or_abort(const sh_dpay *a, const sh_dpay *b)
{
    if (sh_dpay_count(a) != sh_dpay_count(b) || sh_dpay_postings(a) != sh_dpay_postings(b) ||
        sh_dpay_flags(a) != sh_dpay_flags(b))
        abort();
    for (size_t i = 0; i < sh_dpay_count(a); i++) {
        const sh_dop *x = sh_dpay_op(a, i), *y = sh_dpay_op(b, i);
        if (x->seq != y->seq || x->kind != y->kind || strcmp(x->track_id, y->track_id) ||
            strcmp(x->tenant, y->tenant) || strcmp(x->metadata, y->metadata) ||
            x->version != y->version || x->fp_version != y->fp_version ||
            memcmp(&x->duration_s, &y->duration_s, sizeof x->duration_s) ||
            x->npostings != y->npostings ||
            (x->npostings && memcmp(x->postings, y->postings, x->npostings * sizeof(sh_hash))))
            abort();
    }
}

static void round_trip(const sh_dpay *d, const sh_dpay_caps *caps)
{
    sh_dpay_builder *b;
    sh_err e = {0};
    if (sh_dpay_builder_new(caps, sh_dpay_flags(d), &b, &e))
        abort();
    for (size_t i = 0; i < sh_dpay_count(d); i++)
        if (sh_dpay_builder_add(b, sh_dpay_op(d, i), &e))
            abort(); /* whatever decodes must be acceptable to the builder */
    uint8_t *buf;
    size_t len, raw;
    if (sh_dpay_builder_finish(b, SH_DPAY_CODEC_ZSTD, 1, &buf, &len, &raw, &e))
        abort();
    sh_dpay *d2;
    if (sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, caps, &d2, &e))
        abort();
    same_or_abort(d, d2);
    sh_dpay_free(d2);
    free(buf);
    sh_dpay_builder_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const unsigned mode = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1, raw_size = n;
    const int codec = mode & 1 ? SH_DPAY_CODEC_ZSTD : SH_DPAY_CODEC_NONE;
    sh_dpay_caps caps = {.max_raw = 1 << 20, .max_ops = 1024, .max_postings = 1 << 16,
                         .max_op_postings = 1 << 15, .allow_unordered = (mode >> 1) & 1};
    uint8_t *fixed = NULL;
    if (codec == SH_DPAY_CODEC_ZSTD) {
        unsigned long long cs = ZSTD_getFrameContentSize(p, n);
        raw_size = cs > (1ull << 21) ? 0 : (size_t)cs; /* errors are huge: 0 then */
    } else if ((mode & 4) && n >= 8) {
        uint8_t sum[SH_SHA256_LEN];
        fixed = malloc(n);
        if (!fixed || sh_sha256(p, n - 8, sum, NULL))
            abort();
        memcpy(fixed, p, n - 8);
        memcpy(fixed + n - 8, sum, 8);
        p = fixed;
    }
    sh_dpay *d = NULL;
    sh_err e = {0};
    if (sh_dpay_decode(p, n, codec, raw_size, &caps, &d, &e) == 0) {
        if (sh_dpay_count(d) > caps.max_ops || sh_dpay_postings(d) > caps.max_postings)
            abort();
        round_trip(d, &caps);
    } else if (d) {
        abort(); /* never a partial result */
    }
    sh_dpay_free(d);
    free(fixed);
    return 0;
}
