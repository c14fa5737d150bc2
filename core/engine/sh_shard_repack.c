/* sh_shard_repack.c — giving space back: compact (every range rewritten in key order in one
 * transaction, sh_shard_rewrite_index), snapshot (a compacted copy of the environment) and repack
 * (that copy swapped in for the file while no other process has it open). */
#include "sh_shard_int.h"

#include "sh_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- compact: every range rewritten in key order -----------------------------------------------
 */

/* Every fp_version's index, one after the other, rewritten in key order (sh_shard_rewrite_index
 * with no new postings: dead postings dropped, blobs re-cut, leaf pages full). */
static int compact_body(apply_ctx *a, void *unused)
{
    (void)unused;
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    size_t nfp = 0;
    int rc = sh_shard_counters_load(a->s, a->txn, &a->c);
    if (!rc)
        rc = sh_shard_dead_load(a->s, a->txn, &a->dead);
    if (!rc)
        rc = sh_shard_fp_scan(a->s, a->txn, fps, NULL, &nfp);
    /* Every range is rewritten here: a format 2 shard becomes format 3 (skip tables) in the same
     * transaction. Readers of this build read both kinds of blob meanwhile. */
    if (!rc && a->s->format == SH_SHARD_FORMAT_V2) {
        a->skip_shift = SH_RANGE_SKIP_SHIFT;
        rc = sh_shard_format_put(a->s, a->txn, SH_SHARD_FORMAT);
    }
    for (size_t i = 0; i < nfp && !rc; i++) {
        rc = sh_shard_post_open(a, fps[i], false, &a->post);
        if (!rc)
            rc = sh_shard_rewrite_index(a);
    }
    if (rc)
        return rc;
    a->c.vacuum_pos = 0;
    a->c.vacuum_fp = 0;
    rc = sh_shard_dead_store(a->s, a->txn, &a->dead);
    return rc ? rc : sh_shard_counters_store(a->s, a->txn, &a->c);
}

int sh_shard_compact(sh_shard *s, sh_err *e)
{
    if (!s || s->read_only)
        return sh_err_set(e, SH_EINVAL, "shard compact: shard not writable");
    int rc = sh_shard_write_txn(s, "compact", compact_body, NULL, NULL, NULL, e);
    if (!rc) { /* writers read it under write_lock; readers only ever test for format 1 */
        pthread_mutex_lock(&s->write_lock);
        if (s->format == SH_SHARD_FORMAT_V2)
            s->format = SH_SHARD_FORMAT;
        pthread_mutex_unlock(&s->write_lock);
    }
    return rc;
}

/* ---- snapshot: a compacted copy of the environment ---------------------------------------------
 */

int sh_shard_snapshot(sh_shard *s, const char *dir, sh_err *e)
{
    if (!s || !dir)
        return sh_err_set(e, SH_EINVAL, "snapshot: NULL argument");
    int rc = mdb_env_copy2(s->env, dir, MDB_CP_COMPACT);
    if (rc == ENOENT || rc == EACCES || rc == EEXIST)
        return sh_err_set(e, SH_EIO, "snapshot to %s: %s", dir, mdb_strerror(rc));
    return rc ? sh_shard_lmdb_err(e, rc, "snapshot") : 0;
}

/* ---- repack: compact and give the space back ---------------------------------------------------
 */

enum { SH_REPACK_POLL_MS = 50 };

static int dir_path(char *out, size_t cap, const char *dir, const char *name, sh_err *e)
{
    if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap)
        return sh_err_set(e, SH_EINVAL, "%s: directory name too long", dir);
    return 0;
}

/* Takes, for this process, the write lock on byte 0 of lock.mdb: every process with the
 * environment open holds a read lock there (LMDB's liveness lock, taken in mdb_env_open and kept
 * until mdb_env_close), so getting it proves no other process has the shard open, and openers
 * arriving later block in mdb_env_open until this process downgrades it. It must be a classic
 * POSIX lock (per process, not an OFD lock): this process's own LMDB handles then do not conflict
 * with it. Caveat of per-process locks: closing any descriptor of lock.mdb in this process drops
 * it, so `*fd` stays open until the repack is over. */
static int lock_env_exclusive(const char *dir, int wait_ms, int *fd, sh_err *e)
{
    char path[PATH_MAX];
    int rc = dir_path(path, sizeof path, dir, "lock.mdb", e);
    if (rc)
        return rc;
    if ((*fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
        return sh_err_set(e, SH_EIO, "%s: %s", path, strerror(errno));
    for (int waited = 0;; waited += SH_REPACK_POLL_MS) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        if (fcntl(*fd, F_SETLK, &fl) == 0)
            return 0;
        if (errno != EAGAIN && errno != EACCES)
            return sh_err_set(e, SH_EIO, "%s: lock: %s", path, strerror(errno));
        if (waited >= wait_ms)
            break;
        struct timespec ts = {.tv_nsec = SH_REPACK_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    long pid = fcntl(*fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK ? (long)q.l_pid : 0;
    return sh_err_set(e, SH_ETRANSIENT,
                      "%s: shard is open in another process (pid %ld); the file can only be "
                      "replaced while no other process has it open (stop it or retry)",
                      dir, pid);
}

/* Removes a leftover DIR/.repack.tmp (a repack that crashed) and creates it empty. */
static int repack_tmp_fresh(const char *tmp, sh_err *e)
{
    char path[PATH_MAX];
    const char *files[] = {"data.mdb", "lock.mdb"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (!dir_path(path, sizeof path, tmp, files[i], NULL))
            unlink(path);
    if (rmdir(tmp) != 0 && errno != ENOENT)
        return sh_err_set(e, SH_EIO, "%s: cannot remove: %s", tmp, strerror(errno));
    if (mkdir(tmp, 0755) != 0)
        return sh_err_set(e, SH_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    return 0;
}

static int fsync_path(const char *path, int flags, sh_err *e)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return sh_err_set(e, SH_EIO, "%s: fsync: %s", path, strerror(err));
    }
    close(fd);
    return 0;
}

/* Writes the compacted copy of `s` (open on `dir`) and renames it over DIR/data.mdb. */
static int repack_swap(sh_shard *s, const char *dir, sh_err *e)
{
    char tmp[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    int rc = dir_path(tmp, sizeof tmp, dir, ".repack.tmp", e);
    if (!rc)
        rc = dir_path(src, sizeof src, tmp, "data.mdb", e);
    if (!rc)
        rc = dir_path(dst, sizeof dst, dir, "data.mdb", e);
    if (!rc)
        rc = repack_tmp_fresh(tmp, e);
    if (!rc)
        rc = sh_shard_snapshot(s, tmp, e);
    if (!rc)
        rc = fsync_path(src, O_RDONLY, e);
    if (!rc && rename(src, dst) != 0)
        rc = sh_err_set(e, SH_EIO, "%s: rename to %s: %s", src, dst, strerror(errno));
    if (!rc)
        rc = fsync_path(dir, O_RDONLY | O_DIRECTORY, e);
    if (!rc && !dir_path(src, sizeof src, tmp, "lock.mdb", NULL))
        unlink(src); /* written by some LMDB versions' copy; never used */
    if (!rc && rmdir(tmp) != 0)
        SH_WARN("shard_repack_tmp_left", "dir=%s err=\"%s\"", tmp, strerror(errno));
    return rc;
}

int sh_shard_repack(const char *dir, const sh_shard_opts *o, int wait_ms, sh_shard_stats *before,
                    sh_shard_stats *after, sh_err *e)
{
    sh_shard_opts oo;
    sh_shard_opts_default(&oo);
    if (o)
        oo = *o;
    oo.read_only = false;
    oo.no_create = true;
    sh_shard *old = NULL, *fresh = NULL;
    sh_shard_stats st0, st1;
    int lockfd = -1;
    int rc = sh_shard_open(dir, &oo, &old, e);
    if (!rc)
        rc = lock_env_exclusive(dir, wait_ms, &lockfd, e);
    if (!rc)
        rc = sh_shard_stats_get(old, &st0, e);
    if (!rc)
        rc = sh_shard_compact(old, e);
    if (!rc)
        rc = repack_swap(old, dir, e);
    /* The lock table in lock.mdb still describes the old file (LMDB readers pick the meta page
     * by the transaction number stored there). Opening again while this process holds the
     * exclusive lock makes LMDB reinitialise the table from the new file, then downgrade the lock:
     * only then may openers waiting in mdb_env_open proceed. */
    if (!rc)
        rc = sh_shard_open(dir, &oo, &fresh, e);
    if (!rc)
        rc = sh_shard_stats_get(fresh, &st1, e);
    sh_shard_free(fresh);
    sh_shard_free(old);
    if (lockfd >= 0)
        close(lockfd);
    if (rc)
        return rc;
    SH_INFO("shard_repacked", "dir=%s bytes_before=%llu bytes_after=%llu", dir,
            (unsigned long long)st0.file_bytes, (unsigned long long)st1.file_bytes);
    if (before)
        *before = st0;
    if (after)
        *after = st1;
    return 0;
}
