/* test_edge_bootstrap.c — the edge's bootstrap from snapshot files (edge/bootstrap.c) and its
 * cursor format: a verified snapshot replaces the shard whole with its position; a truncated one,
 * one of another shard, or one older than the shard's floor (what it holds, or the start of the
 * delta that asked for the bootstrap) leaves the live shard as it was, with no staging directory
 * left. */
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

/* An id of track k that lands in shard `shard`. */
static void id_in_shard(int shard, int k, char *out, size_t cap)
{
    for (int i = 0;; i++) {
        snprintf(out, cap, "track-%d-%d", k, i);
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
                     .version = 1, .fp_version = 3, .duration_s = 12, .metadata = "{}",
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
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), 0);
    assert_shard(w, 2, 10, &first);

    /* Truncated: refused, the live shard untouched. */
    write_snap(w, SHARD, 2, 20, 2, 5, &ignored);
    int rc = ed_bootstrap(&w->x, &w->held, &e);
    assert_true(rc == SH_EFORMAT || rc == SH_ECHECKSUM);
    assert_shard(w, 2, 10, &first);

    /* Another shard's snapshot: refused. */
    write_snap(w, SHARD + 1, 2, 20, 2, 0, &ignored);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), SH_EFORMAT);
    assert_shard(w, 2, 10, &first);

    /* A newer epoch's snapshot replaces the whole shard (the first tracks are gone). */
    write_snap(w, SHARD, 3, 20, 2, 0, &second);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), 0);
    assert_shard(w, 3, 20, &second);

    /* Older than the floor (apply.c sets it to what the shard holds, or to the start of the delta
     * that asked for the bootstrap): SH_ESTALE, the live shard untouched. Equal is taken; a newer
     * epoch is taken whatever its seq. */
    w->held.floor_epoch = 3;
    w->held.floor_seq = 20;
    write_snap(w, SHARD, 3, 15, 4, 0, &ignored);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), SH_ESTALE);
    assert_shard(w, 3, 20, &second);
    write_snap(w, SHARD, 2, 90, 4, 0, &ignored); /* an older epoch, whatever its seq */
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), SH_ESTALE);
    assert_shard(w, 3, 20, &second);
    w->held.floor_seq = 25; /* a gap: the delta that asked starts at 25 */
    write_snap(w, SHARD, 3, 24, 2, 0, &ignored);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), SH_ESTALE);
    assert_shard(w, 3, 20, &second);
    sh_shardsum third, fourth;
    write_snap(w, SHARD, 3, 25, 2, 0, &third);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), 0);
    assert_shard(w, 3, 25, &third);
    w->held.floor_seq = 40;
    write_snap(w, SHARD, 4, 1, 1, 0, &fourth);
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), 0);
    assert_shard(w, 4, 1, &fourth);
    second = fourth;

    /* Reopened (a restart): the position comes back from the cursor. */
    ed_shards_close(&w->x);
    atomic_store(&w->held.position, -1);
    assert_int_equal(ed_shards_open(&w->x, &e), 0);
    assert_false(atomic_load(&w->held.need_bootstrap));
    assert_shard(w, 4, 1, &second);
    assert_int_equal(w->held.floor_epoch, -1); /* no bootstrap pending: no floor */

    /* No source: a clear error. */
    w->x.cfg.snapshot_source = "";
    assert_int_equal(ed_bootstrap(&w->x, &w->held, &e), SH_ENOTFOUND);
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
