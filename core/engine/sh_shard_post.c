/* sh_shard_post.c — the posting indexes, one per fingerprint version: their names, the list kept
 * in the meta table ("tracks.vN" = live tracks of version N), opening them in a handle (also
 * those another process created since) and in a write transaction, and listing the versions. */
#include "sh_shard_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sh_shard_fp_key(char *buf, size_t cap, int fp)
{
    snprintf(buf, cap, "tracks.v%d", fp);
}

void sh_shard_post_name(const sh_shard *s, char *buf, size_t cap, int fp)
{
    if (fp == s->base_fp)
        snprintf(buf, cap, "post");
    else
        snprintf(buf, cap, "post.v%d", fp);
}

int sh_shard_post_find(const sh_shard *s, int fp, MDB_dbi *dbi)
{
    for (size_t i = 0; i < s->nposts; i++)
        if (s->posts[i].fp_version == fp) {
            *dbi = s->posts[i].dbi;
            return 0;
        }
    return MDB_NOTFOUND;
}

static int cmp_int(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    return a < b ? -1 : a > b;
}

/* Format 2: the meta keys "tracks.v<N>". Format 1: the one fp_version, every track. */
int sh_shard_fp_scan(const sh_shard *s, MDB_txn *txn, int *fps, uint64_t *tracks, size_t *n)
{
    *n = 0;
    if (s->format == SH_SHARD_FORMAT_V1) {
        MDB_stat st;
        int rc = mdb_stat(txn, s->tracks, &st);
        if (rc)
            return rc;
        fps[0] = s->base_fp;
        if (tracks)
            tracks[0] = st.ms_entries;
        *n = 1;
        return 0;
    }
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->meta, &c);
    if (rc)
        return rc;
    static const char prefix[] = "tracks.v";
    MDB_val k = mval(prefix, sizeof prefix - 1), v;
    int found[SH_SHARD_FP_VERSIONS_MAX];
    uint64_t cnt[SH_SHARD_FP_VERSIONS_MAX];
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); !rc;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= sizeof prefix - 1 || memcmp(k.mv_data, prefix, sizeof prefix - 1))
            break;
        char num[16];
        size_t nl = k.mv_size - (sizeof prefix - 1);
        if (nl >= sizeof num || v.mv_size != 8 || *n == SH_SHARD_FP_VERSIONS_MAX) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(num, (const char *)k.mv_data + sizeof prefix - 1, nl);
        num[nl] = '\0';
        char *end;
        long fp = strtol(num, &end, 10);
        if (*end || fp < 1 || fp > SH_SHARD_FP_VERSION_MAX) {
            rc = MDB_CORRUPTED;
            break;
        }
        found[*n] = (int)fp;
        memcpy(&cnt[*n], v.mv_data, 8);
        (*n)++;
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    /* Keys sort as text ("tracks.v10" < "tracks.v2"): order by number, counts alongside. */
    int order[SH_SHARD_FP_VERSIONS_MAX];
    memcpy(order, found, *n * sizeof *order);
    qsort(order, *n, sizeof *order, cmp_int);
    for (size_t i = 0; i < *n; i++) {
        fps[i] = order[i];
        for (size_t j = 0; tracks && j < *n; j++)
            if (found[j] == order[i])
                tracks[i] = cnt[j];
    }
    return 0;
}

int sh_shard_posts_open_missing(sh_shard *s, MDB_txn *txn, post_dbi *got, size_t *ngot)
{
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    size_t n;
    *ngot = 0;
    int rc = sh_shard_fp_scan(s, txn, fps, NULL, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        MDB_dbi d;
        if (!sh_shard_post_find(s, fps[i], &d))
            continue;
        char name[32];
        sh_shard_post_name(s, name, sizeof name, fps[i]);
        rc = mdb_dbi_open(txn, name, MDB_INTEGERKEY, &d); /* listed ones exist: same commit */
        if (!rc)
            got[(*ngot)++] = (post_dbi){.fp_version = fps[i], .dbi = d};
    }
    return rc;
}

void sh_shard_posts_publish(sh_shard *s, const post_dbi *got, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        MDB_dbi d;
        if (s->nposts < SH_SHARD_FP_VERSIONS_MAX && sh_shard_post_find(s, got[i].fp_version, &d))
            s->posts[s->nposts++] = got[i];
    }
}

int sh_shard_posts_refresh(sh_shard *s, sh_err *e)
{
    pthread_mutex_lock(&s->write_lock);
    MDB_txn *txn;
    int rc = sh_shard_read_begin(s, &txn, e);
    if (rc) {
        pthread_mutex_unlock(&s->write_lock);
        return rc;
    }
    post_dbi got[SH_SHARD_FP_VERSIONS_MAX];
    size_t n = 0;
    rc = sh_shard_posts_open_missing(s, txn, got, &n);
    rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn); /* the handles outlive it */
    pthread_rwlock_unlock(&s->map_lock);
    if (!rc) {
        pthread_rwlock_wrlock(&s->map_lock);
        sh_shard_posts_publish(s, got, n);
        pthread_rwlock_unlock(&s->map_lock);
    }
    pthread_mutex_unlock(&s->write_lock);
    return rc ? sh_shard_lmdb_err(e, rc, "opening posting index") : 0;
}

int sh_shard_fp_listed(sh_shard *s, MDB_txn *txn, int fp, bool *listed)
{
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    size_t n;
    int rc = sh_shard_fp_scan(s, txn, fps, NULL, &n);
    *listed = false;
    for (size_t i = 0; i < n && !rc; i++)
        *listed |= fps[i] == fp;
    return rc;
}

int sh_shard_post_open(apply_ctx *a, int fp, bool create, MDB_dbi *dbi)
{
    if (!sh_shard_post_find(a->s, fp, dbi))
        return 0;
    for (size_t i = 0; i < a->nopened; i++)
        if (a->opened[i].fp_version == fp) {
            *dbi = a->opened[i].dbi;
            return 0;
        }
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    size_t n;
    int rc = sh_shard_fp_scan(a->s, a->txn, fps, NULL, &n);
    if (rc)
        return rc;
    bool listed = false;
    for (size_t i = 0; i < n; i++)
        listed |= fps[i] == fp;
    if (!listed && !create)
        return MDB_NOTFOUND;
    if (!listed && n == SH_SHARD_FP_VERSIONS_MAX)
        return sh_err_set(a->e, SH_ETOOBIG, "%s: shard already holds %d fingerprint versions",
                          a->s->dir, SH_SHARD_FP_VERSIONS_MAX);
    char name[32], key[32];
    sh_shard_post_name(a->s, name, sizeof name, fp);
    sh_shard_fp_key(key, sizeof key, fp);
    rc = mdb_dbi_open(a->txn, name, MDB_CREATE | MDB_INTEGERKEY, dbi);
    if (!rc && !listed)
        rc = sh_shard_meta_put_u64(a->txn, a->s->meta, key, 0);
    if (!rc)
        a->opened[a->nopened++] = (post_dbi){.fp_version = fp, .dbi = *dbi};
    return rc;
}

int sh_shard_fp_versions(sh_shard *s, int *out, size_t cap, size_t *n, sh_err *e)
{
    if (!s || !n || (!out && cap))
        return sh_err_set(e, SH_EINVAL, "fp_versions: NULL argument");
    MDB_txn *txn;
    int rc = sh_shard_read_begin(s, &txn, e);
    if (rc)
        return rc;
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    uint64_t tracks[SH_SHARD_FP_VERSIONS_MAX];
    size_t nf = 0;
    int lr = sh_shard_fp_scan(s, txn, fps, tracks, &nf);
    sh_shard_read_end(s, txn);
    if (lr)
        return sh_shard_lmdb_err(e, lr, "fp_versions");
    *n = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!tracks[i])
            continue;
        if (*n == cap)
            return sh_err_set(e, SH_ETOOBIG, "fp_versions: more than %zu", cap);
        out[(*n)++] = fps[i];
    }
    return 0;
}
