/* bootstrap.c — a shard replaced by a snapshot (sh_snap.h) from --snapshot-source: a URL (the
 * replicator's GET {URL}/v1/snapshots/{N}, downloaded with libcurl into an unlinked temporary file
 * under --data, bounded in size and time) or a directory holding shard-N.snap.
 *
 * A snapshot older than the shard's floor (edge.h: what it holds, or the start of the delta that
 * asked for the bootstrap) is refused from its header. Otherwise it is applied into
 * DATA/shard-N.staging (a fresh shard), one batch per chunk, and the
 * cursor (epoch, snapshot seq, offset -1) is written only after the reader verified the trailer
 * (sh_snap_reader_next returned 0). Then, under the shard's write lock, the live directory is
 * renamed aside and the staging one renamed in its place. A crash before the second rename
 * leaves no DATA/shard-N: the next start finds an empty shard and bootstraps again; stale
 * .staging and .old directories are removed first.
 */
#include "edge.h"
#include "sh_token.h"

#include "sh_log.h"
#include "sh_snap.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ed_rm_shard_dir(const char *dir, sh_err *e)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : sh_err_set(e, SH_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    char p[4200];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    if (rmdir(dir) != 0)
        return sh_err_set(e, SH_EIO, "rmdir %s: %s", dir, strerror(errno));
    return 0;
}

typedef struct dl {
    int fd;
    size_t got, max;
    int err;
    sh_stop *stop;
} dl;

/* libcurl's progress callback: a stop (SIGTERM) aborts a download in progress. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    const dl *d = ud;
    return d->stop && sh_stop_requested(d->stop);
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    dl *d = ud;
    size_t len = sz * n;
    if (len > d->max - d->got) {
        d->err = SH_ETOOBIG;
        return 0;
    }
    if (sh_snap_fd_write(&d->fd, p, len)) {
        d->err = SH_EIO;
        return 0;
    }
    d->got += len;
    return len;
}

/* Downloads {url}/v1/snapshots/{n} into fd. A body over --snapshot-max-bytes is a refused
 * snapshot (*rejected = "size"); every other failure is the source's. */
static int download(const ed *x, int n, int fd, const char **rejected, sh_err *e)
{
    char url[4200];
    const char *base = x->cfg.snapshot_source;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof url, "%.*s/v1/snapshots/%d", (int)bl, base, n);
    CURL *c = curl_easy_init();
    if (!c)
        return sh_err_set(e, SH_ENOMEM, "curl_easy_init");
    dl d = {fd, 0, x->cfg.snapshot_max, 0, x->stop};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, x->cfg.snapshot_timeout_s);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->cfg.snapshot_max);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    struct curl_slist *hdr = NULL;
    if (x->snap_token) {
        /* The replicator's /v1/snapshots hands out the whole shard: it asks for a token. */
        char auth[SH_TOKEN_MAX + 32];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", x->snap_token);
        hdr = curl_slist_append(NULL, auth);
        if (!hdr) {
            curl_easy_cleanup(c);
            return sh_err_set(e, SH_ENOMEM, "out of memory");
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    }
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    if (cc == CURLE_HTTP_RETURNED_ERROR && status == 401)
        return sh_err_set(e, SH_EHTTP, "%s: 401: the snapshot source wants a bearer token "
                          "(--snapshot-token-file or SOUNDHASH_SNAPSHOT_TOKEN)", url);
    if (d.err == SH_ETOOBIG || cc == CURLE_FILESIZE_EXCEEDED) {
        *rejected = "size";
        return sh_err_set(e, SH_ETOOBIG, "%s: over --snapshot-max-bytes %zu", url,
                          x->cfg.snapshot_max);
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK)
        return sh_err_set(e, SH_ECANCELED, "%s: stopped", url);
    if (cc != CURLE_OK)
        return sh_err_set(e, cc == CURLE_OPERATION_TIMEDOUT ? SH_ETIMEOUT : SH_EHTTP, "%s: %s",
                          url, curl_easy_strerror(cc));
    if (lseek(fd, 0, SEEK_SET) != 0)
        return sh_err_set(e, SH_EIO, "lseek: %s", strerror(errno));
    SH_INFO("snapshot_downloaded", "shard=%d bytes=%zu", n, d.got);
    return 0;
}

/* The snapshot's stream, as a readable fd positioned at its start. */
static int snapshot_fd(const ed *x, const ed_shard *sh, int *fd, const char **rejected,
                       sh_err *e)
{
    const char *src = x->cfg.snapshot_source;
    char p[4200];
    if (!strncmp(src, "http://", 7) || !strncmp(src, "https://", 8)) {
        snprintf(p, sizeof p, "%s/shard-%d.snap.XXXXXX", x->cfg.data, sh->n);
        *fd = mkstemp(p);
        if (*fd < 0)
            return sh_err_set(e, SH_EIO, "%s: %s", p, strerror(errno));
        unlink(p); /* gone with the process, whatever happens */
        int rc = download(x, sh->n, *fd, rejected, e);
        if (rc) {
            close(*fd);
            *fd = -1;
        }
        return rc;
    }
    snprintf(p, sizeof p, "%s/shard-%d.snap", src, sh->n);
    *fd = open(p, O_RDONLY | O_CLOEXEC);
    return *fd < 0 ? sh_err_set(e, SH_ENOTFOUND, "%s: %s", p, strerror(errno)) : 0;
}

/* The reason label of a reader's error: the snapshot's bytes are at fault (format, checksum,
 * size), or NULL: the failure is not the snapshot's (reading the file, memory). */
static const char *reader_reason(int rc)
{
    switch (rc) {
    case SH_EFORMAT:
    case SH_EUNSUPPORTED:
    case SH_EZSTD:
        return "format";
    case SH_ECHECKSUM:
        return "checksum";
    case SH_ETOOBIG:
        return "size";
    default:
        return NULL;
    }
}

/* One verified chunk into the staging shard, in one transaction. */
static int apply_chunk(sh_shard *s, const sh_dpay *chunk, sh_err *e)
{
    sh_shard_batch *b = NULL;
    int rc = sh_shard_batch_begin(s, 0, &b, e);
    for (size_t i = 0; rc == 0 && i < sh_dpay_count(chunk); i++)
        rc = sh_shard_batch_apply(b, sh_dpay_op(chunk, i), e);
    if (rc == 0)
        return sh_shard_batch_commit(b, NULL, e);
    sh_shard_batch_abort(b);
    return rc;
}

/* The header's checks against the shard (before anything is applied; see ed_bootstrap in
 * edge.h). */
static int check_header(const ed *x, const ed_shard *sh, const sh_snap_info *info,
                        const char **rejected, sh_err *e)
{
    if ((int)info->shard != sh->n || (int)info->nshards != x->nshards) {
        *rejected = "shard";
        return sh_err_set(e, SH_EFORMAT, "snapshot of shard %u of %u, not %d of %d", info->shard,
                          info->nshards, sh->n, x->nshards);
    }
    if (info->epoch < sh->floor_epoch ||
        (info->epoch == sh->floor_epoch && info->seq < sh->floor_seq)) {
        *rejected = "stale";
        return sh_err_set(e, SH_ESTALE,
                          "snapshot of shard %d at (epoch %" PRId64 ", seq %" PRId64 ") is older "
                          "than the shard needs (epoch %" PRId64 ", seq %" PRId64 "): the shard "
                          "is kept, retrying",
                          sh->n, info->epoch, info->seq, sh->floor_epoch, sh->floor_seq);
    }
    return 0;
}

/* Applies the whole verified stream into a new shard at `dir`. */
static int apply_snapshot(const ed *x, const ed_shard *sh, int fd, const char *dir,
                          sh_snap_info *info_out, const char **rejected, sh_err *e)
{
    sh_snap_reader *r = NULL;
    int rc = sh_snap_reader_new(sh_snap_fd_read, &fd, NULL, &r, e);
    if (rc)
        *rejected = reader_reason(rc);
    const sh_snap_info *info = rc == 0 ? sh_snap_reader_info(r) : NULL;
    if (rc == 0)
        rc = check_header(x, sh, info, rejected, e);
    sh_shard *s = NULL;
    sh_shard_opts so;
    sh_shard_opts_default(&so);
    so.fp_version = -1;
    if (rc == 0)
        rc = sh_shard_open(dir, &so, &s, e);
    while (rc == 0) {
        const sh_dpay *chunk = NULL;
        rc = sh_snap_reader_next(r, &chunk, e);
        if (rc < 0)
            *rejected = reader_reason(rc); /* the reader's verdict on the stream's bytes */
        if (rc != 1)
            break; /* 0: the trailer verified */
        rc = 0;
        for (size_t i = 0; rc == 0 && i < sh_dpay_count(chunk); i++)
            if ((rc = ed_op_check(sh_dpay_op(chunk, i), e)))
                *rejected = "format";
        if (rc == 0)
            rc = apply_chunk(s, chunk, e); /* a storage failure: not the snapshot's */
    }
    /* rc == 0: the trailer verified; only now does the shard get its position. */
    sh_shard_batch *b = NULL;
    if (rc == 0)
        rc = sh_shard_batch_begin(s, 0, &b, e);
    if (rc == 0)
        rc = ed_cursor_put(b, info->epoch, info->seq, -1, 0, e);
    if (rc == 0)
        rc = sh_shard_batch_commit(b, NULL, e);
    else
        sh_shard_batch_abort(b);
    if (rc == 0)
        *info_out = *info;
    sh_shard_free(s);
    sh_snap_reader_free(r);
    return rc;
}

/* Puts the staging directory in place of the live one, and publishes its (epoch, seq), under the
 * write lock: a reader holding the read lock sees a handle together with the position it
 * reflects. A failure here leaves the shard without a handle: SH_EINTERNAL (the process stops; a
 * restart bootstraps). */
static int swap_in(ed_shard *sh, const char *staging, const sh_snap_info *info, sh_err *e)
{
    char old[4200];
    snprintf(old, sizeof old, "%s.old", sh->dir);
    sh_shard_opts so;
    sh_shard_opts_default(&so);
    so.fp_version = -1;
    so.no_create = true;
    pthread_rwlock_wrlock(&sh->lock);
    sh_shard_free(sh->s);
    sh->s = NULL;
    int rc = 0;
    if (rename(sh->dir, old) != 0 && errno != ENOENT)
        rc = sh_err_set(e, SH_EINTERNAL, "rename %s: %s", sh->dir, strerror(errno));
    if (rc == 0 && rename(staging, sh->dir) != 0)
        rc = sh_err_set(e, SH_EINTERNAL, "rename %s: %s", staging, strerror(errno));
    if (rc == 0 && (rc = sh_shard_open(sh->dir, &so, &sh->s, e)))
        rc = sh_err_wrap(e, SH_EINTERNAL, "reopening %s", sh->dir);
    if (rc == 0) {
        atomic_store(&sh->epoch, info->epoch);
        atomic_store(&sh->position, info->seq);
        atomic_store(&sh->created_ms, 0);
    }
    pthread_rwlock_unlock(&sh->lock);
    if (rc == 0)
        ed_rm_shard_dir(old, e);
    return rc;
}

int ed_bootstrap(ed *x, ed_shard *sh, const char **rejected, sh_err *e)
{
    const char *why = NULL;
    if (!rejected)
        rejected = &why;
    *rejected = NULL;
    if (!x->cfg.snapshot_source[0])
        return sh_err_set(e, SH_ENOTFOUND, "shard %d needs a snapshot and no --snapshot-source "
                          "is set", sh->n);
    char staging[4200];
    snprintf(staging, sizeof staging, "%s.staging", sh->dir);
    int rc = ed_rm_shard_dir(staging, e);
    int fd = -1;
    if (rc == 0)
        rc = snapshot_fd(x, sh, &fd, rejected, e);
    sh_snap_info info;
    memset(&info, 0, sizeof info);
    if (rc == 0)
        rc = apply_snapshot(x, sh, fd, staging, &info, rejected, e);
    if (fd >= 0)
        close(fd);
    if (rc) {
        sh_err tmp = {0};
        ed_rm_shard_dir(staging, &tmp);
        return rc;
    }
    if ((rc = swap_in(sh, staging, &info, e)))
        return rc;
    sh->offset = -1;
    sh->need_bootstrap = false;
    return 0;
}
