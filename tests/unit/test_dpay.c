/* Unit tests for core/engine/sh_dpay (index-delta payload codec): round trips with both codecs,
 * determinism, every cap, and corrupt input (truncated, bit-flipped, wrong checksum, lying
 * counts behind a valid checksum) rejected as a whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_dpay.h"
#include "sh_fp.h"
#include "sh_media.h"
#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}

/* Triplet-like postings: groups of 6 hashes per anchor time sharing f1 and targets, like the
 * fingerprinter makes, plus a few arbitrary 32-bit hashes and duplicates. */
static sh_hash *make_postings(size_t n)
{
    sh_hash *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    uint32_t t = rnd() % 50;
    for (size_t i = 0; i < n;) {
        uint32_t f1 = rnd() % 64, q[4], lt[4];
        for (int k = 0; k < 4; k++) {
            q[k] = rnd() % 128;
            lt[k] = rnd() % 128;
        }
        for (int b = 0; b < 3 && i < n; b++)
            for (int c = b + 1; c < 4 && i < n; c++)
                h[i++] = (sh_hash){sh_fp_hash_pack3(f1, q[b], q[c], lt[c], rnd() % 32), t};
        if (i < n && rnd() % 4 == 0)
            h[i++] = (sh_hash){rnd(), t};
        if (i < n && rnd() % 8 == 0) {
            h[i] = h[i - 1];
            i++;
        }
        t += 1 + rnd() % 20;
    }
    /* Shuffle: the codec must not depend on input order. */
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd() % i;
        sh_hash x = h[i - 1];
        h[i - 1] = h[j];
        h[j] = x;
    }
    return h;
}

static int cmp_t_hash(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

typedef struct opset {
    sh_dop ops[8];
    sh_hash *post[8];
    size_t n;
} opset;

static void opset_make(opset *s)
{
    static const char *ids[] = {"track-a", "t\xc3\xa9l\xc3\xa9phone", "x", "track-d",
                                "track-e", "track-f", "track-g", "track-h"};
    static const size_t counts[] = {1000, 0, 1, 2, 7, 0, 3000, 64};
    memset(s, 0, sizeof *s);
    s->n = 8;
    for (size_t i = 0; i < s->n; i++) {
        const int del = i == 5;
        s->post[i] = make_postings(counts[i]);
        s->ops[i] = (sh_dop){
            .seq = 10 + (int64_t)i * 3,
            .kind = del ? SH_DOP_DELETE : SH_DOP_UPSERT,
            .track_id = ids[i],
            .tenant = i % 2 ? "acme" : NULL,
            .version = (int64_t)i * 1000000007LL,
            .fp_version = 3,
            .duration_s = 12.5 * (double)i,
            .metadata = i == 0 ? "{\"title\":\"A\"}" : NULL,
            .postings = s->post[i],
            .npostings = del ? 0 : counts[i],
        };
    }
}

static void opset_free(opset *s)
{
    for (size_t i = 0; i < 8; i++)
        free(s->post[i]);
}

static void encode(const opset *s, unsigned flags, int codec, uint8_t **buf, size_t *len,
                   size_t *raw)
{
    sh_dpay_builder *b;
    assert_int_equal(sh_dpay_builder_new(NULL, flags, &b, NULL), 0);
    for (size_t i = 0; i < s->n; i++)
        assert_int_equal(sh_dpay_builder_add(b, &s->ops[i], NULL), 0);
    assert_int_equal(sh_dpay_builder_count(b), s->n);
    const size_t bound = sh_dpay_builder_raw_bound(b);
    assert_int_equal(sh_dpay_builder_finish(b, codec, 0, buf, len, raw, NULL), 0);
    assert_true(*raw <= bound);
    assert_int_equal(sh_dpay_builder_count(b), 0); /* ready for the next payload */
    sh_dpay_builder_free(b);
}

static void check_equal(const opset *s, const sh_dpay *d)
{
    assert_int_equal(sh_dpay_count(d), s->n);
    size_t total = 0;
    for (size_t i = 0; i < s->n; i++) {
        const sh_dop *a = &s->ops[i], *b = sh_dpay_op(d, i);
        assert_non_null(b);
        assert_int_equal(b->seq, a->seq);
        assert_int_equal(b->kind, a->kind);
        assert_string_equal(b->track_id, a->track_id);
        assert_string_equal(b->tenant, a->tenant ? a->tenant : "");
        assert_string_equal(b->metadata, a->metadata ? a->metadata : "");
        assert_int_equal(b->version, a->version);
        assert_int_equal(b->fp_version, a->fp_version);
        assert_true(b->duration_s == a->duration_s);
        assert_int_equal(b->npostings, a->npostings);
        if (a->npostings) {
            sh_hash *sorted = malloc(a->npostings * sizeof *sorted);
            memcpy(sorted, a->postings, a->npostings * sizeof *sorted);
            qsort(sorted, a->npostings, sizeof *sorted, cmp_t_hash);
            assert_memory_equal(b->postings, sorted, a->npostings * sizeof *sorted);
            free(sorted);
        } else {
            assert_null(b->postings);
        }
        total += a->npostings;
    }
    assert_null(sh_dpay_op(d, s->n));
    assert_int_equal(sh_dpay_postings(d), total);
}

static void test_round_trip(void **state)
{
    (void)state;
    opset s;
    opset_make(&s);
    const int codecs[] = {SH_DPAY_CODEC_ZSTD, SH_DPAY_CODEC_NONE};
    for (int c = 0; c < 2; c++) {
        uint8_t *buf;
        size_t len, raw;
        encode(&s, 0, codecs[c], &buf, &len, &raw);
        sh_dpay *d;
        sh_err e = {0};
        assert_int_equal(sh_dpay_decode(buf, len, codecs[c], raw, NULL, &d, &e), 0);
        check_equal(&s, d);
        assert_int_equal(sh_dpay_flags(d), 0);
        sh_dpay_free(d);
        free(buf);
    }
    opset_free(&s);
}

static void test_empty_payload(void **state)
{
    (void)state;
    sh_dpay_builder *b;
    assert_int_equal(sh_dpay_builder_new(NULL, 0, &b, NULL), 0);
    uint8_t *buf;
    size_t len, raw;
    assert_int_equal(sh_dpay_builder_finish(b, SH_DPAY_CODEC_ZSTD, 0, &buf, &len, &raw, NULL), 0);
    sh_dpay *d;
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, NULL, &d, NULL), 0);
    assert_int_equal(sh_dpay_count(d), 0);
    sh_dpay_free(d);
    free(buf);
    sh_dpay_builder_free(b);
    sh_dpay_free(NULL);
    sh_dpay_builder_free(NULL);
}

/* Real fingerprints (synthetic music) round-trip and take fewer bytes than 4 per posting. */
static void test_real_fingerprints(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_default(&c);
    sh_fp *fp;
    assert_int_equal(sh_fp_new(&c, &fp, NULL), 0);
    const size_t n = (size_t)c.rate * 60;
    float *x = malloc(n * sizeof *x);
    synth_music(x, n, c.rate, 7);
    assert_int_equal(sh_fp_feed(fp, x, n, NULL), 0);
    assert_int_equal(sh_fp_finish(fp, NULL), 0);
    size_t nh;
    const sh_hash *h = sh_fp_hashes(fp, &nh);
    assert_true(nh > 1000);
    opset s = {.n = 1}; /* not opset_free()d: the postings belong to fp */
    s.ops[0] = (sh_dop){.seq = 1, .kind = SH_DOP_UPSERT, .track_id = "synth", .fp_version = 3,
                        .postings = h, .npostings = nh};
    uint8_t *buf;
    size_t len, raw;
    encode(&s, 0, SH_DPAY_CODEC_ZSTD, &buf, &len, &raw);
    assert_true((double)len / (double)nh < 4.0);
    sh_dpay *d;
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, NULL, &d, NULL), 0);
    check_equal(&s, d);
    sh_dpay_free(d);
    sh_dpay_stats *st = calloc(1, sizeof *st);
    assert_int_equal(sh_dpay_stats_add(st, h, nh, NULL), 0);
    const double bits = sh_dpay_stats_bits(st);
    assert_int_equal(st->postings, nh);
    assert_true(bits > 0 && bits < (double)raw * 8);
    free(st);
    free(buf);
    free(x);
    sh_fp_free(fp);
}

/* The same ops with postings in another order give the same bytes. */
static void test_deterministic(void **state)
{
    (void)state;
    opset s;
    opset_make(&s);
    uint8_t *b1, *b2;
    size_t l1, l2, r1, r2;
    encode(&s, 0, SH_DPAY_CODEC_ZSTD, &b1, &l1, &r1);
    for (size_t i = 0; i < s.n; i++) /* reverse each op's postings */
        for (size_t j = 0; j < s.ops[i].npostings / 2; j++) {
            sh_hash t = s.post[i][j];
            s.post[i][j] = s.post[i][s.ops[i].npostings - 1 - j];
            s.post[i][s.ops[i].npostings - 1 - j] = t;
        }
    encode(&s, 0, SH_DPAY_CODEC_ZSTD, &b2, &l2, &r2);
    assert_int_equal(l1, l2);
    assert_int_equal(r1, r2);
    assert_memory_equal(b1, b2, l1);
    free(b1);
    free(b2);
    opset_free(&s);
}

static void test_builder_rejects(void **state)
{
    (void)state;
    sh_dpay_caps caps = {.max_ops = 3, .max_postings = 10, .max_op_postings = 6};
    sh_dpay_builder *b;
    assert_int_equal(sh_dpay_builder_new(NULL, 0x80, &b, NULL), SH_EINVAL);
    assert_int_equal(sh_dpay_builder_new(&caps, 0, &b, NULL), 0);
    sh_hash h[7] = {{1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 5}, {6, 6}, {7, 7}};
    char big[SH_DPAY_META_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const sh_dop ok = {.seq = 5, .kind = SH_DOP_UPSERT, .track_id = "a", .postings = h,
                       .npostings = 6};
    sh_dop o = ok;
    o.seq = 0;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL);
    o = ok, o.kind = 9;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL);
    o = ok, o.kind = SH_DOP_DELETE;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL); /* delete with postings */
    o = ok, o.track_id = "";
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL);
    o = ok, o.track_id = NULL;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL);
    o = ok, o.version = -1;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL);
    o = ok, o.duration_s = NAN;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL);
    o = ok, o.postings = NULL;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL);
    big[SH_DPAY_ID_MAX + 1] = '\0';
    o = ok, o.track_id = big;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_ETOOBIG);
    big[SH_DPAY_ID_MAX] = '\0';
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), 0); /* exactly at the cap */
    big[SH_DPAY_ID_MAX] = 'a';
    big[SH_DPAY_TENANT_MAX + 1] = '\0';
    o = ok, o.seq = 6, o.tenant = big;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_ETOOBIG);
    big[SH_DPAY_TENANT_MAX + 1] = 'a';
    o = ok, o.seq = 6, o.metadata = big;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_ETOOBIG);
    o = ok, o.seq = 6, o.npostings = 7;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_ETOOBIG); /* op cap */
    o = ok, o.seq = 5;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_EINVAL); /* seq not increasing */
    o = ok, o.seq = 6;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_ETOOBIG); /* 12 > 10 postings */
    o.npostings = 4;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), 0);
    o = ok, o.seq = 7, o.npostings = 0;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), 0);
    o.seq = 8;
    assert_int_equal(sh_dpay_builder_add(b, &o, NULL), SH_ETOOBIG); /* 4 > 3 ops */
    assert_int_equal(sh_dpay_builder_count(b), 3);
    assert_int_equal(sh_dpay_builder_postings(b), 10);
    uint8_t *buf;
    size_t len, raw;
    assert_int_equal(sh_dpay_builder_finish(b, 7, 0, &buf, &len, &raw, NULL), SH_EINVAL);
    assert_int_equal(sh_dpay_builder_count(b), 3); /* a failed finish keeps the ops */
    sh_dpay_builder_reset(b);
    assert_int_equal(sh_dpay_builder_count(b), 0);
    sh_dpay_builder_free(b);
}

/* A payload over caps.max_raw is refused by finish (and the decoder's raw cap likewise). */
static void test_raw_cap(void **state)
{
    (void)state;
    opset s;
    opset_make(&s);
    sh_dpay_caps caps = {.max_raw = 200};
    sh_dpay_builder *b;
    assert_int_equal(sh_dpay_builder_new(&caps, 0, &b, NULL), 0);
    assert_int_equal(sh_dpay_builder_add(b, &s.ops[0], NULL), 0);
    uint8_t *buf;
    size_t len, raw;
    assert_int_equal(sh_dpay_builder_finish(b, SH_DPAY_CODEC_ZSTD, 0, &buf, &len, &raw, NULL),
                     SH_ETOOBIG);
    assert_int_equal(sh_dpay_builder_count(b), 1);
    sh_dpay_builder_free(b);
    encode(&s, 0, SH_DPAY_CODEC_ZSTD, &buf, &len, &raw);
    sh_dpay *d = (sh_dpay *)&caps; /* must be reset to NULL on error */
    caps.max_raw = raw - 1;
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, &caps, &d, NULL),
                     SH_ETOOBIG);
    assert_null(d);
    caps.max_raw = raw;
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, &caps, &d, NULL), 0);
    sh_dpay_free(d);
    free(buf);
    opset_free(&s);
}

static void test_decoder_caps(void **state)
{
    (void)state;
    opset s;
    opset_make(&s);
    uint8_t *buf;
    size_t len, raw;
    encode(&s, 0, SH_DPAY_CODEC_ZSTD, &buf, &len, &raw);
    sh_dpay *d;
    sh_dpay_caps caps = {.max_ops = 7};
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, &caps, &d, NULL),
                     SH_ETOOBIG);
    caps = (sh_dpay_caps){.max_postings = 4073};
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, &caps, &d, NULL),
                     SH_ETOOBIG);
    caps.max_postings = 4074;
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, &caps, &d, NULL), 0);
    sh_dpay_free(d);
    caps = (sh_dpay_caps){.max_op_postings = 2999};
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, &caps, &d, NULL),
                     SH_ETOOBIG);
    free(buf);
    opset_free(&s);
}

static void test_unordered(void **state)
{
    (void)state;
    opset s;
    opset_make(&s);
    s.ops[3].seq = 2; /* below its predecessor */
    sh_dpay_builder *b;
    assert_int_equal(sh_dpay_builder_new(NULL, 0, &b, NULL), 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(sh_dpay_builder_add(b, &s.ops[i], NULL), 0);
    assert_int_equal(sh_dpay_builder_add(b, &s.ops[3], NULL), SH_EINVAL);
    sh_dpay_builder_free(b);
    uint8_t *buf;
    size_t len, raw;
    encode(&s, SH_DPAY_UNORDERED, SH_DPAY_CODEC_ZSTD, &buf, &len, &raw);
    sh_dpay *d;
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, NULL, &d, NULL),
                     SH_EUNSUPPORTED); /* a delta decoder refuses snapshot-style payloads */
    sh_dpay_caps caps = {.allow_unordered = 1};
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw, &caps, &d, NULL), 0);
    assert_int_equal(sh_dpay_flags(d), SH_DPAY_UNORDERED);
    check_equal(&s, d);
    sh_dpay_free(d);
    free(buf);
    /* The same bytes labelled ordered (flags 0, checksum fixed): the decreasing seq is refused
     * even by a decoder that accepts unordered payloads — the flag of the payload decides. */
    encode(&s, SH_DPAY_UNORDERED, SH_DPAY_CODEC_NONE, &buf, &len, &raw);
    buf[2] = 0;
    uint8_t sum[SH_SHA256_LEN];
    assert_int_equal(sh_sha256(buf, len - 8, sum, NULL), 0);
    memcpy(buf + len - 8, sum, 8);
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_NONE, raw, &caps, &d, NULL),
                     SH_EFORMAT);
    free(buf);
    opset_free(&s);
}

/* Every truncation of the compressed payload and every raw_size but the right one fail. */
static void test_truncated(void **state)
{
    (void)state;
    opset s;
    opset_make(&s);
    s.n = 3;
    uint8_t *buf;
    size_t len, raw;
    encode(&s, 0, SH_DPAY_CODEC_ZSTD, &buf, &len, &raw);
    sh_dpay *d;
    for (size_t l = 0; l < len; l++)
        assert_int_equal(sh_dpay_decode(buf, l, SH_DPAY_CODEC_ZSTD, raw, NULL, &d, NULL),
                         SH_EFORMAT);
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw - 1, NULL, &d, NULL),
                     SH_EFORMAT);
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_ZSTD, raw + 1, NULL, &d, NULL),
                     SH_EFORMAT);
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_NONE, len, NULL, &d, NULL),
                     SH_EFORMAT); /* zstd bytes read as raw: bad magic */
    assert_int_equal(sh_dpay_decode(buf, len, 5, raw, NULL, &d, NULL), SH_EINVAL);
    free(buf);
    encode(&s, 0, SH_DPAY_CODEC_NONE, &buf, &len, &raw);
    for (size_t l = 0; l < len; l++) {
        int rc = sh_dpay_decode(buf, l, SH_DPAY_CODEC_NONE, l, NULL, &d, NULL);
        assert_true(rc == SH_EFORMAT || rc == SH_ECHECKSUM);
    }
    free(buf);
    opset_free(&s);
}

/* Flipping any bit of the raw payload fails the decode: SH_ECHECKSUM (or SH_EFORMAT /
 * SH_EUNSUPPORTED / SH_ETOOBIG when it hits the header, read before the checksum). */
static void test_bit_flips(void **state)
{
    (void)state;
    opset s;
    opset_make(&s);
    s.n = 4;
    uint8_t *buf;
    size_t len, raw;
    encode(&s, 0, SH_DPAY_CODEC_NONE, &buf, &len, &raw);
    sh_dpay *d;
    size_t checksum_errors = 0;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (uint8_t)(1u << bit);
            int rc = sh_dpay_decode(buf, len, SH_DPAY_CODEC_NONE, len, NULL, &d, NULL);
            assert_true(rc == SH_ECHECKSUM || rc == SH_EFORMAT || rc == SH_EUNSUPPORTED ||
                        rc == SH_ETOOBIG);
            assert_null(d);
            checksum_errors += rc == SH_ECHECKSUM;
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_true(checksum_errors > len); /* the body is guarded by the checksum */
    buf[len - 1] ^= 1; /* the checksum itself */
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_NONE, len, NULL, &d, NULL),
                     SH_ECHECKSUM);
    buf[len - 1] ^= 1;
    buf[1] = 2; /* a future format version */
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_NONE, len, NULL, &d, NULL),
                     SH_EUNSUPPORTED);
    buf[1] = SH_DPAY_VERSION;
    buf[2] = 0x40; /* unknown flag */
    assert_int_equal(sh_dpay_decode(buf, len, SH_DPAY_CODEC_NONE, len, NULL, &d, NULL),
                     SH_EUNSUPPORTED);
    free(buf);
    opset_free(&s);
}

static void fix_checksum(uint8_t *raw, size_t len)
{
    uint8_t sum[SH_SHA256_LEN];
    assert_int_equal(sh_sha256(raw, len - 8, sum, NULL), 0);
    memcpy(raw + len - 8, sum, 8);
}

/* Behind a valid checksum (a buggy or hostile producer), any single byte changed either decodes
 * to something that re-encodes identically, or fails cleanly. */
static void test_structure_behind_checksum(void **state)
{
    (void)state;
    opset s;
    opset_make(&s);
    s.n = 5;
    uint8_t *buf;
    size_t len, raw;
    encode(&s, 0, SH_DPAY_CODEC_NONE, &buf, &len, &raw);
    uint8_t *mod = malloc(len);
    const uint8_t vals[] = {0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xff};
    size_t accepted = 0;
    for (size_t i = 0; i + 8 < len; i++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(mod, buf, len);
            if (mod[i] == vals[v])
                continue;
            mod[i] = vals[v];
            fix_checksum(mod, len);
            sh_dpay *d;
            int rc = sh_dpay_decode(mod, len, SH_DPAY_CODEC_NONE, len, NULL, &d, NULL);
            if (rc) {
                assert_true(rc == SH_EFORMAT || rc == SH_EUNSUPPORTED || rc == SH_ETOOBIG);
                continue;
            }
            accepted++;
            sh_dpay_free(d);
        }
    }
    assert_true(accepted > 0); /* e.g. a changed id byte or r field is still a valid payload */
    /* Counts that promise more than the bytes can hold: refused before allocating. */
    const uint8_t lie[] = {'D', 1, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(mod, lie, sizeof lie);
    fix_checksum(mod, sizeof lie);
    sh_dpay *d;
    assert_int_equal(sh_dpay_decode(mod, sizeof lie, SH_DPAY_CODEC_NONE, sizeof lie, NULL, &d,
                                    NULL),
                     SH_ETOOBIG);
    const uint8_t lie2[] = {'D', 1, 0, 0x10, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(mod, lie2, sizeof lie2);
    fix_checksum(mod, sizeof lie2);
    assert_int_equal(sh_dpay_decode(mod, sizeof lie2, SH_DPAY_CODEC_NONE, sizeof lie2, NULL, &d,
                                    NULL),
                     SH_EFORMAT);
    free(mod);
    free(buf);
    opset_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_payload),
        cmocka_unit_test(test_real_fingerprints),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_builder_rejects),
        cmocka_unit_test(test_raw_cap),
        cmocka_unit_test(test_decoder_caps),
        cmocka_unit_test(test_unordered),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_structure_behind_checksum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
