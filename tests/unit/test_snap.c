/* Unit tests for sh_snap (shard snapshot streams): round trips through memory and a file,
 * several chunks, and every way a stream can be wrong (truncated, bit-flipped, trailing bytes,
 * ops that do not belong, caps, failing callbacks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_media.h"
#include "sh_shardmap.h"
#include "sh_snap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a memory stream ---- */
typedef struct mem {
    uint8_t *p;
    size_t len, cap, pos;
    size_t read_max; /* bytes per read call (exercises short reads) */
    int fail_after;  /* writes before an error, -1 = never */
} mem;

static int mem_write(void *ctx, const void *buf, size_t len)
{
    mem *m = ctx;
    if (m->fail_after == 0)
        return SH_EIO;
    if (m->fail_after > 0)
        m->fail_after--;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2;
        m->p = realloc(m->p, m->cap);
        assert_non_null(m->p);
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

static long mem_read(void *ctx, void *buf, size_t len)
{
    mem *m = ctx;
    size_t n = m->len - m->pos;
    if (n > len)
        n = len;
    if (m->read_max && n > m->read_max)
        n = m->read_max;
    memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    return (long)n;
}

enum { NTRACKS = 40, SHARD = 3, NSHARDS = 8 };

typedef struct fixture {
    char ids[NTRACKS][32];
    sh_hash *post[NTRACKS];
    size_t np[NTRACKS];
    sh_snap_info info;
} fixture;

static uint64_t rng = 7;
static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}

static void fixture_make(fixture *f)
{
    memset(f, 0, sizeof *f);
    int k = 0;
    for (unsigned i = 0; k < NTRACKS; i++) {
        char id[32];
        int n = snprintf(id, sizeof id, "track-%u", i);
        if (sh_shard_of(id, (size_t)n, NSHARDS) != SHARD)
            continue;
        memcpy(f->ids[k], id, (size_t)n + 1);
        f->np[k] = k % 7 == 0 ? 0 : 50 + rnd() % 400;
        f->post[k] = malloc((f->np[k] + 1) * sizeof(sh_hash));
        for (size_t j = 0; j < f->np[k]; j++)
            f->post[k][j] = (sh_hash){rnd(), rnd() % 5000};
        k++;
    }
    f->info = (sh_snap_info){.shard = SHARD, .nshards = NSHARDS, .epoch = 2, .seq = 1000,
                             .nfp = 2, .fp_versions = {2, 3}};
}

static void fixture_free(fixture *f)
{
    for (int k = 0; k < NTRACKS; k++)
        free(f->post[k]);
}

static sh_dop fixture_op(const fixture *f, int k)
{
    return (sh_dop){.seq = 1000 - k * 7, .kind = SH_DOP_UPSERT, .track_id = f->ids[k],
                    .tenant = "t", .version = k, .fp_version = k % 2 ? 2 : 3,
                    .duration_s = 1.0 + k, .metadata = "{}", .postings = f->post[k],
                    .npostings = f->np[k]};
}

/* Writes the fixture as a snapshot with small chunks (several of them). */
static void write_snapshot(const fixture *f, sh_snap_write_fn fn, void *ctx)
{
    sh_snap_writer *w;
    sh_err e = {0};
    assert_int_equal(sh_snap_writer_new(&f->info, 4096, fn, ctx, &w, &e), 0);
    size_t total = 0;
    for (int k = 0; k < NTRACKS; k++) {
        sh_dop op = fixture_op(f, k);
        assert_int_equal(sh_snap_writer_add(w, &op, &e), 0);
        total += f->np[k];
    }
    assert_int_equal(sh_snap_writer_ops(w), NTRACKS);
    assert_int_equal(sh_snap_writer_postings(w), total);
    assert_int_equal(sh_snap_writer_finish(w, &e), 0);
    assert_int_equal(sh_snap_writer_finish(w, NULL), SH_EINVAL);
    sh_snap_writer_free(w);
}

/* Reads a whole stream; returns 0 (complete and verified) or the first error; *chunks and
 * *ops count what was delivered. Checks every delivered op against the fixture. */
static int read_snapshot(const fixture *f, sh_snap_read_fn fn, void *ctx, const sh_snap_caps *caps,
                         int *chunks, int *ops)
{
    sh_snap_reader *r;
    *chunks = *ops = 0;
    int rc = sh_snap_reader_new(fn, ctx, caps, &r, NULL);
    if (rc)
        return rc;
    const sh_snap_info *i = sh_snap_reader_info(r);
    assert_int_equal(i->shard, SHARD);
    assert_int_equal(i->nshards, NSHARDS);
    assert_int_equal(i->epoch, 2);
    assert_int_equal(i->seq, 1000);
    assert_int_equal(i->nfp, 2);
    const sh_dpay *c;
    while ((rc = sh_snap_reader_next(r, &c, NULL)) == 1) {
        (*chunks)++;
        for (size_t j = 0; j < sh_dpay_count(c); j++, (*ops)++) {
            const sh_dop *op = sh_dpay_op(c, j);
            int k = *ops;
            assert_string_equal(op->track_id, f->ids[k]);
            assert_int_equal(op->seq, 1000 - k * 7);
            assert_int_equal(op->npostings, f->np[k]);
        }
    }
    if (rc == 0) {
        assert_int_equal(sh_snap_reader_next(r, &c, NULL), 0); /* stays done */
        assert_null(c);
    } else {
        assert_int_equal(sh_snap_reader_next(r, &c, NULL), rc); /* stays failed */
    }
    sh_snap_reader_free(r);
    return rc;
}

static void test_round_trip_memory(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f);
    mem m = {.fail_after = -1};
    write_snapshot(&f, mem_write, &m);
    int chunks, ops;
    assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), 0);
    assert_true(chunks > 1);
    assert_int_equal(ops, NTRACKS);
    m.pos = 0;
    m.read_max = 3; /* short reads */
    assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), 0);
    assert_int_equal(ops, NTRACKS);
    free(m.p);
    fixture_free(&f);
}

static void test_round_trip_fd(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f);
    char path[] = "/tmp/test_snap_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    write_snapshot(&f, sh_snap_fd_write, &fd);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    int chunks, ops;
    assert_int_equal(read_snapshot(&f, sh_snap_fd_read, &fd, NULL, &chunks, &ops), 0);
    assert_int_equal(ops, NTRACKS);
    close(fd);
    fixture_free(&f);
}

/* An empty shard: header and trailer only. */
static void test_empty(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f);
    mem m = {.fail_after = -1};
    sh_snap_writer *w;
    assert_int_equal(sh_snap_writer_new(&f.info, 0, mem_write, &m, &w, NULL), 0);
    assert_int_equal(sh_snap_writer_finish(w, NULL), 0);
    sh_snap_writer_free(w);
    int chunks, ops;
    assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), 0);
    assert_int_equal(chunks, 0);
    free(m.p);
    fixture_free(&f);
}

static void test_truncated(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f);
    mem m = {.fail_after = -1};
    write_snapshot(&f, mem_write, &m);
    const size_t full = m.len;
    for (size_t l = 0; l < full; l += l < 64 ? 1 : 97) {
        m.len = l;
        m.pos = 0;
        int chunks, ops;
        assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), SH_EFORMAT);
        assert_true(ops < NTRACKS || l >= full - 12); /* only the trailer may be missing */
    }
    m.len = full - 1;
    m.pos = 0;
    int chunks, ops;
    assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), SH_EFORMAT);
    assert_int_equal(ops, NTRACKS); /* every chunk arrived, but the end is not verified */
    /* Bytes after the trailer. */
    m.len = full;
    uint8_t extra = 0;
    assert_int_equal(mem_write(&m, &extra, 1), 0);
    m.pos = 0;
    assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), SH_EFORMAT);
    free(m.p);
    fixture_free(&f);
}

/* Any flipped bit makes the stream fail; in a chunk's data or a checksum it is SH_ECHECKSUM. */
static void test_bit_flips(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f);
    mem m = {.fail_after = -1};
    write_snapshot(&f, mem_write, &m);
    size_t checksum = 0;
    for (size_t i = 0; i < m.len; i += i < 200 ? 1 : 13) {
        m.p[i] ^= 0x10;
        m.pos = 0;
        int chunks, ops;
        int rc = read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops);
        assert_true(rc == SH_ECHECKSUM || rc == SH_EFORMAT || rc == SH_EUNSUPPORTED ||
                    rc == SH_ETOOBIG);
        checksum += rc == SH_ECHECKSUM;
        m.p[i] ^= 0x10;
    }
    assert_true(checksum > 0);
    m.p[m.len - 1] ^= 1; /* the stream checksum */
    m.pos = 0;
    int chunks, ops;
    assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), SH_ECHECKSUM);
    m.p[m.len - 1] ^= 1;
    m.p[4] = 9; /* a future format version */
    m.pos = 0;
    assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), SH_EUNSUPPORTED);
    free(m.p);
    fixture_free(&f);
}

static void test_writer_rejects(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f);
    mem m = {.fail_after = -1};
    sh_snap_writer *w;
    sh_snap_info bad = f.info;
    bad.shard = NSHARDS;
    assert_int_equal(sh_snap_writer_new(&bad, 0, mem_write, &m, &w, NULL), SH_EINVAL);
    bad = f.info, bad.nfp = 0;
    assert_int_equal(sh_snap_writer_new(&bad, 0, mem_write, &m, &w, NULL), SH_EINVAL);
    bad = f.info, bad.fp_versions[1] = 2;
    assert_int_equal(sh_snap_writer_new(&bad, 0, mem_write, &m, &w, NULL), SH_EINVAL);
    bad = f.info, bad.seq = -1;
    assert_int_equal(sh_snap_writer_new(&bad, 0, mem_write, &m, &w, NULL), SH_EINVAL);
    assert_int_equal(sh_snap_writer_new(&f.info, 0, mem_write, &m, &w, NULL), 0);
    sh_dop op = fixture_op(&f, 1);
    op.seq = 1001; /* after the snapshot's seq */
    assert_int_equal(sh_snap_writer_add(w, &op, NULL), SH_EINVAL);
    op = fixture_op(&f, 1), op.fp_version = 4;
    assert_int_equal(sh_snap_writer_add(w, &op, NULL), SH_EINVAL);
    op = fixture_op(&f, 1), op.kind = SH_DOP_DELETE, op.npostings = 0;
    assert_int_equal(sh_snap_writer_add(w, &op, NULL), SH_EINVAL);
    op = fixture_op(&f, 1), op.track_id = "track-0"; /* shard 0 of 8? check it is not ours */
    if (sh_shard_of("track-0", 7, NSHARDS) != SHARD)
        assert_int_equal(sh_snap_writer_add(w, &op, NULL), SH_EINVAL);
    sh_snap_writer_free(w);
    /* A failing output: the error comes back and the writer refuses more. */
    mem failing = {.fail_after = 1};
    assert_int_equal(sh_snap_writer_new(&f.info, 0, mem_write, &failing, &w, NULL), SH_EIO);
    failing.fail_after = 2;
    failing.len = 0;
    assert_int_equal(sh_snap_writer_new(&f.info, 0, mem_write, &failing, &w, NULL), 0);
    op = fixture_op(&f, 1);
    assert_int_equal(sh_snap_writer_add(w, &op, NULL), 0);
    assert_int_equal(sh_snap_writer_finish(w, NULL), SH_EIO);
    assert_int_equal(sh_snap_writer_add(w, &op, NULL), SH_EINVAL);
    sh_snap_writer_free(w);
    sh_snap_writer_free(NULL);
    sh_snap_reader_free(NULL);
    free(m.p);
    free(failing.p);
    fixture_free(&f);
}

static void resum(uint8_t *p, size_t len, size_t at)
{
    uint8_t sum[SH_SHA256_LEN];
    assert_int_equal(sh_sha256(p, at, sum, NULL), 0);
    memcpy(p + at, sum, 8);
    (void)len;
}

/* A stream with valid checksums whose chunk holds a track of another shard (a buggy producer)
 * is refused by the reader: the op checks use the header. */
static void test_reader_rejects_foreign_op(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f);
    sh_snap_info other = f.info;
    other.shard = (SHARD + 1) % NSHARDS;
    mem m = {.fail_after = -1};
    sh_snap_writer *w;
    assert_int_equal(sh_snap_writer_new(&other, 0, mem_write, &m, &w, NULL), 0);
    char id[32];
    for (unsigned i = 0;; i++) {
        int n = snprintf(id, sizeof id, "x-%u", i);
        if (sh_shard_of(id, (size_t)n, NSHARDS) == other.shard)
            break;
    }
    sh_dop op = fixture_op(&f, 1);
    op.track_id = id;
    assert_int_equal(sh_snap_writer_add(w, &op, NULL), 0);
    assert_int_equal(sh_snap_writer_finish(w, NULL), 0);
    sh_snap_writer_free(w);
    sh_snap_reader *r;
    const sh_dpay *c;
    assert_int_equal(sh_snap_reader_new(mem_read, &m, NULL, &r, NULL), 0);
    assert_int_equal(sh_snap_reader_next(r, &c, NULL), 1);
    assert_int_equal(sh_snap_reader_next(r, &c, NULL), 0);
    sh_snap_reader_free(r);
    /* Relabel the header as SHARD: "SHSN" 1 0, shard, nshards, epoch, seq (2 bytes), nfp, 2 fp
     * versions = 14 bytes, then its checksum; then fix the stream checksum too. */
    m.p[6] = SHARD;
    resum(m.p, m.len, 14);
    m.pos = 0;
    assert_int_equal(sh_snap_reader_new(mem_read, &m, NULL, &r, NULL), 0);
    sh_snap_reader_free(r);
    resum(m.p, m.len, m.len - 8);
    m.pos = 0;
    int chunks, ops;
    assert_int_equal(read_snapshot(&f, mem_read, &m, NULL, &chunks, &ops), SH_EFORMAT);
    assert_int_equal(ops, 0);
    free(m.p);
    fixture_free(&f);
}

static void test_reader_caps(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f);
    mem m = {.fail_after = -1};
    write_snapshot(&f, mem_write, &m);
    int chunks, ops;
    sh_snap_caps caps = {.max_ops = NTRACKS - 1};
    assert_int_equal(read_snapshot(&f, mem_read, &m, &caps, &chunks, &ops), SH_ETOOBIG);
    caps = (sh_snap_caps){.max_ops = NTRACKS};
    m.pos = 0;
    assert_int_equal(read_snapshot(&f, mem_read, &m, &caps, &chunks, &ops), 0);
    caps = (sh_snap_caps){.chunk = {.max_raw = 100}};
    m.pos = 0;
    assert_int_equal(read_snapshot(&f, mem_read, &m, &caps, &chunks, &ops), SH_ETOOBIG);
    caps = (sh_snap_caps){.max_postings = 10};
    m.pos = 0;
    assert_int_equal(read_snapshot(&f, mem_read, &m, &caps, &chunks, &ops), SH_ETOOBIG);
    const uint8_t junk[] = "GET / HTTP/1.1\r\n";
    mem j = {.p = (uint8_t *)junk, .len = sizeof junk - 1};
    sh_snap_reader *r;
    assert_int_equal(sh_snap_reader_new(mem_read, &j, NULL, &r, NULL), SH_EFORMAT);
    assert_null(r);
    free(m.p);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_memory),
        cmocka_unit_test(test_round_trip_fd),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_reader_rejects_foreign_op),
        cmocka_unit_test(test_reader_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
