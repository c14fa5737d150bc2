/* Unit tests for sh_fpblob (posting blob codec) and sh_shard_range (range blobs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_fpblob.h"
#include "sh_shard_range.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}

static sh_hash *random_hashes(size_t n)
{
    sh_hash *h = malloc(n * sizeof *h);
    assert_non_null(h);
    for (size_t i = 0; i < n; i++)
        h[i] = (sh_hash){.hash = rnd(), .t = rnd() % 20000};
    return h;
}

static int cmp_t_hash(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static void test_round_trip(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 2, 100, 20000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        sh_hash *h = random_hashes(n ? n : 1);
        uint8_t *blob;
        size_t len;
        assert_int_equal(sh_fpblob_encode(h, n, 0, &blob, &len, NULL), 0);
        size_t cnt;
        assert_int_equal(sh_fpblob_count(blob, len, &cnt, NULL), 0);
        assert_int_equal(cnt, n);
        sh_hash *out;
        size_t m;
        assert_int_equal(sh_fpblob_decode(blob, len, 0, &out, &m, NULL), 0);
        assert_int_equal(m, n);
        qsort(h, n, sizeof *h, cmp_t_hash);
        if (n)
            assert_memory_equal(out, h, n * sizeof *h);
        else
            assert_null(out);
        /* Deterministic: the same multiset in another order gives the same bytes. */
        if (n > 1) {
            sh_hash tmp = h[0];
            h[0] = h[n - 1];
            h[n - 1] = tmp;
            uint8_t *blob2;
            size_t len2;
            assert_int_equal(sh_fpblob_encode(h, n, 0, &blob2, &len2, NULL), 0);
            assert_int_equal(len2, len);
            assert_memory_equal(blob2, blob, len);
            free(blob2);
        }
        if (n == 20000) /* random 32-bit hashes: ~4 bytes each, times ~1 byte */
            assert_true(len < n * 6);
        free(out);
        free(blob);
        free(h);
    }
}

static void test_caps(void **state)
{
    (void)state;
    sh_hash *h = random_hashes(1000);
    uint8_t *blob;
    size_t len, m;
    sh_hash *out;
    assert_int_equal(sh_fpblob_encode(h, 1000, 0, &blob, &len, NULL), 0);
    sh_err e = {0};
    assert_int_equal(sh_fpblob_decode(blob, len, 999, &out, &m, &e), SH_ETOOBIG);
    assert_int_equal(sh_fpblob_decode(blob, len, 1000, &out, &m, NULL), 0);
    free(out);
    free(blob);
    free(h);
}

/* Every truncation and every single-bit flip is either rejected or decodes within the caps. */
static void test_hostile(void **state)
{
    (void)state;
    sh_hash *h = random_hashes(200);
    uint8_t *blob;
    size_t len, m;
    sh_hash *out;
    assert_int_equal(sh_fpblob_encode(h, 200, 0, &blob, &len, NULL), 0);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *tr = malloc(cut ? cut : 1);
        memcpy(tr, blob, cut);
        int rc = sh_fpblob_decode(tr, cut, 0, &out, &m, NULL);
        assert_int_not_equal(rc, 0); /* the frame size is checked: no prefix is valid */
        assert_null(out);
        free(tr);
    }
    size_t accepted = 0;
    for (size_t bit = 0; bit < len * 8; bit++) {
        uint8_t *x = malloc(len);
        memcpy(x, blob, len);
        x[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = sh_fpblob_decode(x, len, 250, &out, &m, NULL);
        if (rc == 0) {
            accepted++;
            assert_true(m <= 250);
            free(out);
        } else {
            assert_true(rc == SH_EFORMAT || rc == SH_ETOOBIG);
        }
        free(x);
    }
    /* zstd checks no checksum by default: a flipped literal can decode; most flips must not. */
    assert_true(accepted < len * 8);
    const uint8_t junk[] = {'H', 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00};
    assert_int_equal(sh_fpblob_decode(junk, sizeof junk, 0, &out, &m, NULL), SH_ETOOBIG);
    const uint8_t badver[] = {'H', 9, 0, 0};
    assert_int_equal(sh_fpblob_decode(badver, sizeof badver, 0, &out, &m, NULL), SH_EFORMAT);
    free(blob);
    free(h);
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

/* Seeks in r (decoded whole into hs) land on the first posting ≥ the target, from a fresh cursor
 * and from one moved forward target by target, whatever the skip table lets them jump. */
static void range_seeks(const sh_range *r, uint32_t key, const uint32_t *hs)
{
    sh_range_cursor run;
    sh_range_cursor_init(r, &run);
    for (size_t i = 0; i < r->n; i++) {
        const uint32_t targets[3] = {hs[i] ? hs[i] - 1 : 0, hs[i], hs[i] + (hs[i] < key)};
        for (int t = 0; t < 3; t++) {
            size_t want = 0;
            while (want < r->n && hs[want] < targets[t])
                want++;
            sh_range_cursor c;
            sh_range_cursor_init(r, &c);
            assert_int_equal(sh_range_seek(r, key, &c, targets[t]), 0);
            assert_int_equal(c.i, want);
            if (want < r->n)
                assert_int_equal(c.hash, hs[want]);
            if (targets[t] >= run.hash && run.i < r->n) {
                assert_int_equal(sh_range_seek(r, key, &run, targets[t]), 0);
                assert_int_equal(run.i, want);
            }
        }
    }
}

static void range_round_trip_skip(sh_posting *p, size_t n, unsigned skip)
{
    qsort(p, n, sizeof *p, cmp_posting);
    uint8_t *buf = malloc(sh_range_bound(n));
    size_t len = sh_range_encode(p, n, skip, buf);
    assert_true(len <= sh_range_bound(n));
    uint8_t *pad = malloc(len + 8);
    sh_range r;
    uint32_t key = p[n - 1].hash;
    assert_int_equal(sh_range_open(buf, len, key, pad, &r), 0);
    assert_int_equal(r.n, n);
    uint32_t *hs = malloc(n * sizeof *hs);
    sh_posting *out = malloc(n * sizeof *out);
    assert_int_equal(sh_range_decode(&r, key, hs, out), 0);
    assert_memory_equal(out, p, n * sizeof *p);
    /* a skip table exactly when asked for and there is an entry to write */
    assert_int_equal(r.nskip, skip && n > (1u << skip) ? (n - 1) >> skip : 0);
    range_seeks(&r, key, hs);
    /* A key below the largest hash is a corrupt range. */
    if (key > 0 && n > 1 && p[0].hash < key) {
        assert_int_equal(sh_range_open(buf, len, key - 1, pad, &r) == 0 &&
                             sh_range_hashes(&r, key - 1, hs) == 0,
                         0);
    }
    /* Every truncation is rejected; bit flips never read out of bounds (ASan) and never give
     * hashes above the key. */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_not_equal(sh_range_open(buf, cut, key, pad, &r), 0);
    for (size_t bit = 0; bit < len * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (sh_range_open(buf, len, key, pad, &r) == 0 && r.n <= n &&
            sh_range_hashes(&r, key, hs) == 0) {
            for (size_t i = 0; i < r.n; i++) {
                assert_true(hs[i] <= key);
                (void)sh_range_t(&r, i);
                (void)sh_range_track(&r, i);
            }
        }
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    free(out);
    free(hs);
    free(pad);
    free(buf);
}

/* Every blob both ways: plain (format 2), an entry every 2 and every 16 postings (format 3). */
static void range_round_trip(sh_posting *p, size_t n)
{
    range_round_trip_skip(p, n, 0);
    range_round_trip_skip(p, n, 1);
    range_round_trip_skip(p, n, SH_RANGE_SKIP_SHIFT);
}

/* A skip entry that disagrees with the codes makes the blob fail a full decode (what a write
 * does before rewriting it), so a blob that decodes never misleads a seek; a seek through a wrong
 * entry stays in bounds. */
static void test_range_skip_checked(void **state)
{
    (void)state;
    enum { N = 200 };
    sh_posting p[N];
    for (size_t i = 0; i < N; i++)
        p[i] = (sh_posting){.hash = 5000 + 37 * (uint32_t)i, .track = 3, .t = (uint32_t)i};
    uint8_t *buf = malloc(sh_range_bound(N)), pad[64];
    const size_t len = sh_range_encode(p, N, SH_RANGE_SKIP_SHIFT, buf);
    uint8_t *plain = malloc(sh_range_bound(N));
    const size_t plain_len = sh_range_encode(p, N, 0, plain);
    /* 12 entries of 13 + 13 bits and 3 bytes of widths: ~5 % of this blob */
    assert_true(len > plain_len && len <= plain_len + 3 + (12 * 26 + 7) / 8);
    uint32_t hs[N];
    sh_range r;
    const uint32_t key = p[N - 1].hash;
    assert_int_equal(sh_range_open(buf, len, key, pad, &r), 0);
    assert_int_equal(sh_range_hashes(&r, key, hs), 0);
    const size_t at = (size_t)(r.skip - buf);
    for (size_t b = at; b < at + (r.nskip * (r.w_sh + r.w_so) + 7) / 8; b++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            buf[b] ^= (uint8_t)(1u << bit);
            if (sh_range_open(buf, len, key, pad, &r) == 0) {
                /* the last byte's padding bits are not part of any entry */
                const int padding = b * 8 + bit >= at * 8 + r.nskip * (r.w_sh + r.w_so);
                assert_int_equal(sh_range_hashes(&r, key, hs) == 0, padding);
                sh_range_cursor c;
                sh_range_cursor_init(&r, &c);
                for (uint32_t t = 5000; t <= key && c.i < r.n; t += 500)
                    if (sh_range_seek(&r, key, &c, t) || c.hash > key)
                        break;
            }
            buf[b] ^= (uint8_t)(1u << bit);
        }
    }
    free(plain);
    free(buf);
}

/* Bit access to skip entry j (1..nskip) of r's table (in the caller's buffer): field 0 its hash
 * (minus the first), 1 the code offset after it. */
static uint64_t skip_field_pos(const sh_range *r, size_t j, int field)
{
    return (uint64_t)(j - 1) * (r->w_sh + r->w_so) + (field ? r->w_sh : 0);
}

static uint64_t skip_get(const sh_range *r, size_t j, int field)
{
    const uint64_t at = skip_field_pos(r, j, field);
    const unsigned w = field ? r->w_so : r->w_sh;
    uint64_t v = 0;
    for (unsigned b = 0; b < w; b++)
        v |= (uint64_t)((r->skip[(at + b) / 8] >> ((at + b) % 8)) & 1) << b;
    return v;
}

static void skip_put(const sh_range *r, size_t j, int field, uint64_t v)
{
    const uint64_t at = skip_field_pos(r, j, field);
    uint8_t *t = (uint8_t *)r->skip; /* the test's own buffer */
    for (unsigned b = 0; b < (field ? r->w_so : r->w_sh); b++) {
        const uint8_t m = (uint8_t)(1u << ((at + b) % 8));
        t[(at + b) / 8] = (uint8_t)((t[(at + b) / 8] & ~m) | (((v >> b) & 1) ? m : 0));
    }
}

enum { SEEK_RIGHT, SEEK_FAILED, SEEK_WRONG };

/* A seek for t from a fresh cursor against the truth hs[0..n). */
static int seek_outcome(const sh_range *r, uint32_t key, const uint32_t *hs, size_t n, uint32_t t)
{
    sh_range_cursor c;
    sh_range_cursor_init(r, &c);
    if (sh_range_seek(r, key, &c, t))
        return SEEK_FAILED;
    assert_true(c.i <= r->n && (c.i == r->n || (c.hash >= t && c.hash <= key)));
    size_t want = 0;
    while (want < n && hs[want] < t)
        want++;
    return c.i == want && (want == n || c.hash == hs[want]) ? SEEK_RIGHT : SEEK_WRONG;
}

/* A damaged skip entry (its hash or its code offset) is detected by a seek that uses it
 * (sh_range_seek returns -1, the lookup reports the blob corrupted) rather than giving wrong
 * postings: at once when it points where the codes cannot be (past the column, before the codes
 * ahead of the cursor, leaving too few bits for the codes after it), and whenever the seek decodes
 * from it up to the next entry, which must then be met exactly. With any single-bit error in any
 * entry but the last, the seek whose target is the next entry's hash fails or stays right, never
 * wrong (the last entry is checked only against the column's exact end: a code offset off by a bit
 * inside a unary run re-synchronises, so there a seek can still go wrong); no error makes a seek
 * read outside the blob or return a hash above the key. */
static void test_range_skip_seek_detects(void **state)
{
    (void)state;
    enum { N = 16 * 24 + 5 };
    sh_posting p[N];
    uint32_t h = 100000;
    for (size_t i = 0; i < N; i++) {
        h += rnd() % 7 == 0 ? 0 : rnd() % 400; /* a dense index: small gaps, some repeats */
        p[i] = (sh_posting){.hash = h, .track = rnd() % 900, .t = rnd() % 30000};
    }
    qsort(p, N, sizeof *p, cmp_posting);
    uint32_t hs[N];
    for (size_t i = 0; i < N; i++)
        hs[i] = p[i].hash;
    const uint32_t key = hs[N - 1];
    uint8_t *buf = malloc(sh_range_bound(N)), *pad = malloc(sh_range_bound(N) + 8);
    const size_t len = sh_range_encode(p, N, SH_RANGE_SKIP_SHIFT, buf);
    sh_range r;
    assert_int_equal(sh_range_open(buf, len, key, pad, &r), 0);
    assert_int_equal(r.nskip, 24);
    const size_t step = (size_t)1 << r.skip_shift;
    for (size_t j = 1; j <= r.nskip; j++) {
        /* the seek that starts from entry j and decodes up to the next entry: its target is the
         * next entry's posting's hash (when no posting before it has that hash) */
        const size_t next = (j + 1) * step;
        const uint32_t through = j < r.nskip ? hs[next] : key;
        const int verifies = j < r.nskip && hs[next - 1] < hs[next];
        const uint32_t inside = hs[j * step] + 1; /* a target just past the entry's posting */
        const uint64_t hash0 = skip_get(&r, j, 0), off0 = skip_get(&r, j, 1);
        assert_int_equal(hs[j * step] - hs[0], hash0);
        assert_int_equal(seek_outcome(&r, key, hs, N, inside), SEEK_RIGHT);
        if (verifies)
            assert_int_equal(seek_outcome(&r, key, hs, N, through), SEEK_RIGHT);
        /* Offsets where the codes cannot be: caught by any seek that jumps to the entry. */
        const uint64_t bad_off[] = {r.hash_bits + 1, 0, (j * step) * (r.k + 1ull) - 1,
                                    off0 + 57 * step * (r.nskip + 1)};
        for (size_t b = 0; b < sizeof bad_off / sizeof *bad_off; b++) {
            if (bad_off[b] >> r.w_so)
                continue; /* does not fit the field */
            skip_put(&r, j, 1, bad_off[b]);
            assert_int_equal(seek_outcome(&r, key, hs, N, inside), SEEK_FAILED);
            skip_put(&r, j, 1, off0);
        }
        /* Every single-bit error in the entry: never out of bounds, and never a wrong answer from
         * the seek that decodes from the entry (or the one before it) up to the next one. */
        for (int field = 0; field < 2; field++) {
            const unsigned w = field ? r.w_so : r.w_sh;
            const uint64_t v0 = field ? off0 : hash0;
            for (unsigned bit = 0; bit < w; bit++) {
                skip_put(&r, j, field, v0 ^ (1ull << bit));
                for (size_t x = 0; x < N; x++) {
                    (void)seek_outcome(&r, key, hs, N, hs[x]);
                    (void)seek_outcome(&r, key, hs, N, hs[x] + 1);
                }
                if (verifies)
                    assert_int_not_equal(seek_outcome(&r, key, hs, N, through), SEEK_WRONG);
                skip_put(&r, j, field, v0);
            }
        }
    }
    free(pad);
    free(buf);
}

static void test_range_codec(void **state)
{
    (void)state;
    size_t n = 300;
    sh_posting *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) /* dense hashes, a few tracks */
        p[i] = (sh_posting){
            .hash = 1000000 + rnd() % 2000000, .track = 1 + rnd() % 40, .t = rnd() % 30000};
    range_round_trip(p, n);
    for (size_t i = 0; i < n; i++) /* sparse: huge gaps use the escape code */
        p[i] = (sh_posting){.hash = rnd(), .track = rnd(), .t = rnd()};
    range_round_trip(p, n);
    for (size_t i = 0; i < n; i++) /* one hash everywhere, zero widths */
        p[i] = (sh_posting){.hash = 42, .track = 7, .t = 0};
    range_round_trip(p, n);
    p[0] = (sh_posting){.hash = UINT32_MAX, .track = UINT32_MAX, .t = UINT32_MAX};
    range_round_trip(p, 1);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_range_codec),
        cmocka_unit_test(test_range_skip_checked),
        cmocka_unit_test(test_range_skip_seek_detects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
