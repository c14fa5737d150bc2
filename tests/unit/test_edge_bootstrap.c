/* test_edge_bootstrap.c — the edge's bootstrap from snapshot files (edge/bootstrap.c) and its
 * cursor format: a verified snapshot replaces the shard whole with its position; a truncated,
 * bit-flipped or oversized one, one with a wrong checksum, one of another shard, or one older than
 * the shard's floor (what it holds, or the start of the delta that asked for the bootstrap)
 * leaves the live shard as it was, with no staging directory left, and is named by the reason
 * soundhash_edge_rejected_total{input="snapshot"} counts it under. */
#include "../../edge/edge.h"

#include "sh_shardmap.h"
#include "sh_snap.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

enum { NSHARDS = 4, SHARD = 1 };

typedef struct world {
    char root[64], data[96], snaps[96];
    ed x;
    ed_shard held;
} world;

/* What write_snap names its tracks and gives them as metadata (hostile cases change them). */
static const char *g_id_prefix = "track";
static const char *g_meta = "{}";

/* An id of track k that lands in shard `shard`. */
static void id_in_shard(int shard, int k, char *out, size_t cap)
{
    for (int i = 0;; i++) {
        snprintf(out, cap, "%s-%d-%d", g_id_prefix, k, i);
        if ((int)sh_shard_of(out, strlen(out), NSHARDS) == shard)
            return;
    }
}

/* Writes DIR/shard-N.snap of `ntracks` tracks at (epoch, seq); *sum gets their checksum. When
 * `cut` > 0 the file is truncated by that many bytes. */
static void write_snap(const world *w, int shard, int64_t epoch, int64_t seq, int ntracks,
                       size_t cut, sh_shardsum *sum)
{
    char path[160];
    snprintf(path, sizeof path, "%s/shard-%d.snap", w->snaps, SHARD);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    sh_snap_info info = {.shard = (uint32_t)shard, .nshards = NSHARDS, .epoch = epoch, .seq = seq,
                         .nfp = 1, .fp_versions = {3}};
    sh_snap_writer *sw = NULL;
    sh_err e = {0};
    assert_int_equal(sh_snap_writer_new(&info, 0, sh_snap_fd_write, &fd, &sw, &e), 0);
    *sum = (sh_shardsum)SH_SHARDSUM_INIT;
    for (int k = 0; k < ntracks; k++) {
        char id[64];
        id_in_shard(shard, k + (int)seq, id, sizeof id);
        sh_hash h[50];
        for (int i = 0; i < 50; i++)
            h[i] = (sh_hash){.hash = (uint32_t)(k * 7919 + i * 104729), .t = (uint32_t)i * 3};
        sh_dop op = {.seq = seq - k, .kind = SH_DOP_UPSERT, .track_id = id, .tenant = "acme",
                     .version = 1, .fp_version = 3, .duration_s = 12, .metadata = g_meta,
                     .postings = h, .npostings = 50};
        assert_int_equal(sh_snap_writer_add(sw, &op, &e), 0);
        assert_int_equal(sh_shardsum_add(sum, id, strlen(id), 1, 3, h, 50, &e), 0);
    }
    assert_int_equal(sh_snap_writer_finish(sw, &e), 0);
    sh_snap_writer_free(sw);
    if (cut) {
        off_t size = lseek(fd, 0, SEEK_END);
        assert_int_equal(ftruncate(fd, size - (off_t)cut), 0);
    }
    close(fd);
}

static void snap_path(const world *w, char *p, size_t cap)
{
    snprintf(p, cap, "%s/shard-%d.snap", w->snaps, SHARD);
}

/* The snapshot file's bytes; *len gets their count. */
static unsigned char *snap_read(const world *w, size_t *len)
{
    char p[160];
    snap_path(w, p, sizeof p);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    static unsigned char buf[1 << 20];
    *len = fread(buf, 1, sizeof buf, f);
    assert_true(*len > 0 && *len < sizeof buf);
    fclose(f);
    return buf;
}

static void snap_write(const world *w, const unsigned char *b, size_t len)
{
    char p[160];
    snap_path(w, p, sizeof p);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

/* The offset of the first chunk's tag: past the header (sh_snap.h: magic, version, flags, five
 * varints and nfp of them, the 8-byte sum). */
static size_t first_chunk(const unsigned char *b, size_t len)
{
    size_t i = 6;
    for (int field = 0; field < 4; field++) /* shard, nshards, epoch, seq */
        while (b[i++] & 0x80)
            ;
    const unsigned nfp = b[i++];
    assert_true(nfp < 0x80); /* one byte */
    for (unsigned k = 0; k < nfp; k++)
        while (b[i++] & 0x80)
            ;
    i += 8;
    assert_true(i < len && b[i] == 'C');
    return i;
}

/* ed_bootstrap on the snapshot file as it is: the code, and the reason named. */
static int bootstrap(world *w, const char **why)
{
    sh_err e = {0};
    *why = "(unset)";
    return ed_bootstrap(&w->x, &w->held, why, &e);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    snprintf(w->root, sizeof w->root, "/tmp/sh-test-edge.XXXXXX");
    assert_non_null(mkdtemp(w->root));
    snprintf(w->data, sizeof w->data, "%s/data", w->root);
    snprintf(w->snaps, sizeof w->snaps, "%s/snaps", w->root);
    assert_int_equal(mkdir(w->data, 0755), 0);
    assert_int_equal(mkdir(w->snaps, 0755), 0);
    w->x.cfg.data = w->data;
    w->x.cfg.snapshot_source = w->snaps;
    w->x.nshards = NSHARDS;
    w->x.held = &w->held;
    w->x.nheld = 1;
    w->held.n = SHARD;
    snprintf(w->held.dir, sizeof w->held.dir, "%s/shard-%d", w->data, SHARD);
    pthread_rwlock_init(&w->held.lock, NULL);
    sh_err e = {0};
    assert_int_equal(ed_shards_open(&w->x, &e), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    ed_shards_close(&w->x);
    pthread_rwlock_destroy(&w->held.lock);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->root);
    assert_int_equal(system(cmd), 0);
    free(w);
    return 0;
}

static void assert_shard(world *w, int64_t epoch, int64_t pos, const sh_shardsum *want)
{
    sh_err e = {0};
    sh_shardsum got;
    assert_non_null(w->held.s);
    assert_int_equal(sh_shard_checksum(w->held.s, &got, &e), 0);
    assert_true(sh_shardsum_equal(&got, want));
    assert_int_equal(atomic_load(&w->held.epoch), epoch);
    assert_int_equal(atomic_load(&w->held.position), pos);
    /* The cursor on disk says the same, with offset -1: read the partition from its start. */
    char v[128];
    size_t len = 0;
    int64_t ce, cp, co, cc;
    assert_int_equal(sh_shard_get_cursor(w->held.s, "edge", v, sizeof v, &len, &e), 0);
    assert_int_equal(ed_cursor_parse(v, len, &ce, &cp, &co, &cc), 0);
    assert_int_equal(ce, epoch);
    assert_int_equal(cp, pos);
    assert_int_equal(co, -1);
    struct stat st;
    char p[4200];
    snprintf(p, sizeof p, "%s.staging", w->held.dir);
    assert_int_not_equal(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s.old", w->held.dir);
    assert_int_not_equal(stat(p, &st), 0);
}

static void test_bootstrap_and_refusals(void **state)
{
    world *w = *state;
    sh_err e = {0};
    assert_true(atomic_load(&w->held.need_bootstrap)); /* an empty shard */
    assert_int_equal(atomic_load(&w->held.position), -1);

    sh_shardsum first, second, ignored;
    write_snap(w, SHARD, 2, 10, 3, 0, &first);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, NULL, &e), 0);
    assert_shard(w, 2, 10, &first);

    /* Truncated: refused, the live shard untouched. */
    write_snap(w, SHARD, 2, 20, 2, 5, &ignored);
    int rc = ed_bootstrap(&w->x, &w->held, NULL, &e);
    assert_true(rc == SH_EFORMAT || rc == SH_ECHECKSUM);
    assert_shard(w, 2, 10, &first);

    /* Another shard's snapshot: refused. */
    write_snap(w, SHARD + 1, 2, 20, 2, 0, &ignored);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, NULL, &e), SH_EFORMAT);
    assert_shard(w, 2, 10, &first);

    /* A newer epoch's snapshot replaces the whole shard (the first tracks are gone). */
    write_snap(w, SHARD, 3, 20, 2, 0, &second);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, NULL, &e), 0);
    assert_shard(w, 3, 20, &second);

    /* Older than the floor (apply.c sets it to what the shard holds, or to the start of the delta
     * that asked for the bootstrap): SH_ESTALE, the live shard untouched. Equal is taken; a newer
     * epoch is taken whatever its seq. */
    w->held.floor_epoch = 3;
    w->held.floor_seq = 20;
    write_snap(w, SHARD, 3, 15, 4, 0, &ignored);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, NULL, &e), SH_ESTALE);
    assert_shard(w, 3, 20, &second);
    write_snap(w, SHARD, 2, 90, 4, 0, &ignored); /* an older epoch, whatever its seq */
    assert_int_equal(ed_bootstrap(&w->x, &w->held, NULL, &e), SH_ESTALE);
    assert_shard(w, 3, 20, &second);
    w->held.floor_seq = 25; /* a gap: the delta that asked starts at 25 */
    write_snap(w, SHARD, 3, 24, 2, 0, &ignored);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, NULL, &e), SH_ESTALE);
    assert_shard(w, 3, 20, &second);
    sh_shardsum third, fourth;
    write_snap(w, SHARD, 3, 25, 2, 0, &third);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, NULL, &e), 0);
    assert_shard(w, 3, 25, &third);
    w->held.floor_seq = 40;
    write_snap(w, SHARD, 4, 1, 1, 0, &fourth);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, NULL, &e), 0);
    assert_shard(w, 4, 1, &fourth);
    second = fourth;

    /* Each kind of bad snapshot: refused, the live shard untouched, the reason named. */
    const char *why;
    size_t len;
    unsigned char *b;
    sh_shardsum fifth;
    write_snap(w, SHARD, 5, 50, 3, 0, &fifth);
    b = snap_read(w, &len);
    unsigned char *good = malloc(len);
    assert_non_null(good);
    memcpy(good, b, len);
    const size_t c0 = first_chunk(good, len);
    struct {
        const char *what;
        size_t at;          /* byte to change ... */
        unsigned char xor;  /* ... by this xor; 0: cut the file at `at` */
        int code;
        const char *reason;
    } bad[] = {
        {"truncated", len / 2, 0, SH_EFORMAT, "format"},
        {"empty", 0, 0, SH_EFORMAT, "format"},
        {"not a snapshot (magic)", 0, 0x20, SH_EFORMAT, "format"},
        {"header bit flip (its epoch)", 8, 0x01, SH_ECHECKSUM, "checksum"},
        {"chunk bit flip", c0 + 20, 0x10, 0, NULL}, /* format or checksum: the zstd frame's */
        {"stream checksum", len - 1, 0x01, SH_ECHECKSUM, "checksum"},
        {"trailer totals", len - 9, 0x01, SH_EFORMAT, "format"}, /* the postings total's last byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(b, good, len);
        if (bad[i].xor)
            b[bad[i].at] ^= bad[i].xor;
        snap_write(w, b, bad[i].xor ? len : bad[i].at);
        rc = bootstrap(w, &why);
        if (bad[i].code) {
            assert_int_equal(rc, bad[i].code);
            assert_string_equal(why, bad[i].reason);
        } else {
            assert_true((rc == SH_EFORMAT && !strcmp(why, "format")) ||
                        (rc == SH_ECHECKSUM && !strcmp(why, "checksum")));
        }
        assert_shard(w, 4, 1, &second);
    }
    /* A chunk declaring a raw size of 2^40 bytes: refused from the varint, before allocation. */
    memcpy(b, good, c0 + 1);
    static const unsigned char huge[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x20}; /* 1 << 40 */
    memcpy(b + c0 + 1, huge, sizeof huge);
    snap_write(w, b, c0 + 1 + sizeof huge);
    assert_int_equal(bootstrap(w, &why), SH_ETOOBIG);
    assert_string_equal(why, "size");
    assert_shard(w, 4, 1, &second);
    /* Sound snapshots whose text would break the answers' JSON (ed_op_check): a track id that is
     * not UTF-8, one with a control character, metadata that is not JSON. */
    const char *ids[] = {"bad\xff\xfe", "bad\x1b[2J", "track"};
    const char *metas[] = {"{}", "{}", "{\"k\": \"\xc3\x28\"}"};
    for (size_t i = 0; i < 3; i++) {
        g_id_prefix = ids[i];
        g_meta = metas[i];
        write_snap(w, SHARD, 5, 50, 2, 0, &ignored);
        assert_int_equal(bootstrap(w, &why), SH_EFORMAT);
        assert_string_equal(why, "format");
        assert_shard(w, 4, 1, &second);
    }
    g_id_prefix = "track";
    g_meta = "{}";
    /* The shard and stale cases name their reasons too; the intact file is then taken. */
    write_snap(w, SHARD + 1, 5, 50, 1, 0, &ignored);
    assert_int_equal(bootstrap(w, &why), SH_EFORMAT);
    assert_string_equal(why, "shard");
    w->held.floor_epoch = 4; /* what the shard holds (apply.c's set_floor) */
    w->held.floor_seq = 1;
    write_snap(w, SHARD, 3, 45, 1, 0, &ignored);
    assert_int_equal(bootstrap(w, &why), SH_ESTALE);
    assert_string_equal(why, "stale");
    assert_shard(w, 4, 1, &second);
    snap_write(w, good, len);
    free(good);
    assert_int_equal(bootstrap(w, &why), 0);
    assert_null(why);
    assert_shard(w, 5, 50, &fifth);
    second = fifth;

    /* Reopened (a restart): the position comes back from the cursor. */
    ed_shards_close(&w->x);
    atomic_store(&w->held.position, -1);
    assert_int_equal(ed_shards_open(&w->x, &e), 0);
    assert_false(atomic_load(&w->held.need_bootstrap));
    assert_shard(w, 5, 50, &second);
    assert_int_equal(w->held.floor_epoch, -1); /* no bootstrap pending: no floor */
    assert_int_equal(w->held.claim_offset, -1);

    /* No source, or a missing file: a clear error, and no snapshot was refused. */
    char p[160];
    snap_path(w, p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(bootstrap(w, &why), SH_ENOTFOUND);
    assert_null(why);
    w->x.cfg.snapshot_source = "";
    assert_int_equal(bootstrap(w, &why), SH_ENOTFOUND);
    assert_null(why);
}

static void test_cursor_format(void **state)
{
    (void)state;
    int64_t a, b, c, d;
    const char ok[] = "1 4 1234 56 1700000000000";
    assert_int_equal(ed_cursor_parse(ok, strlen(ok), &a, &b, &c, &d), 0);
    assert_true(a == 4 && b == 1234 && c == 56 && d == 1700000000000);
    const char *bad[] = {"", "2 4 1 1 1", "1 -1 1 1 1", "1 4 1 -2 1", "1 4 1", "garbage"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ed_cursor_parse(bad[i], strlen(bad[i]), &a, &b, &c, &d), SH_EFORMAT);
    char big[200];
    memset(big, '1', sizeof big);
    assert_int_equal(ed_cursor_parse(big, sizeof big, &a, &b, &c, &d), SH_EFORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bootstrap_and_refusals, setup, teardown),
        cmocka_unit_test(test_cursor_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
