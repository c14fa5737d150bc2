/* sh_shard.c — opening and closing a shard, read transactions, lookups, info, stats and cursors.
 * Batches are applied in sh_shard_batch.c, compact/snapshot/repack live in sh_shard_repack.c. */
#include "sh_shard_int.h"

#include "sh_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const size_t SH_MAP_DEFAULT = (size_t)64 << 20;
static const size_t SH_MAP_MAX_DEFAULT = (size_t)1 << 40;

void sh_shard_opts_default(sh_shard_opts *o)
{
    *o = (sh_shard_opts){.map_size = SH_MAP_DEFAULT, .map_size_max = SH_MAP_MAX_DEFAULT};
}

int sh_shard_fp_version(const sh_shard *s)
{
    return s->fp_version;
}

/* Translates an LMDB code at the boundary. */
int sh_shard_lmdb_err(sh_err *e, int rc, const char *what)
{
    switch (rc) {
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return sh_err_set(e, SH_EFORMAT, "%s: not a SoundHash shard (not an LMDB file: %s)", what,
                          mdb_strerror(rc));
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
        return sh_err_set(e, SH_EFORMAT, "%s: shard file corrupted (%s)", what, mdb_strerror(rc));
    case MDB_MAP_FULL:
        return sh_err_set(e, SH_ETOOBIG, "%s: shard map full (%s)", what, mdb_strerror(rc));
    case MDB_TXN_FULL:
        return sh_err_set(e, SH_ETOOBIG, "%s: batch too large for one transaction (%s)", what,
                          mdb_strerror(rc));
    case ENOMEM:
        return sh_err_set(e, SH_ENOMEM, "%s: out of memory", what);
    default:
        return sh_err_set(e, SH_ELMDB, "%s: %s", what, mdb_strerror(rc));
    }
}

int sh_shard_meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t *v)
{
    MDB_val k = mval(key, strlen(key)), d;
    int rc = mdb_get(txn, dbi, &k, &d);
    if (rc == MDB_NOTFOUND) {
        *v = 0;
        return 0;
    }
    if (rc)
        return rc;
    if (d.mv_size != 8)
        return MDB_CORRUPTED;
    memcpy(v, d.mv_data, 8);
    return 0;
}

int sh_shard_meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t v)
{
    MDB_val k = mval(key, strlen(key)), d = mval(&v, 8);
    return mdb_put(txn, dbi, &k, &d, 0);
}

/* The checksum: three u64 (sum, tracks, postings) under "sum". */
static int sum_get(const sh_shard *s, MDB_txn *txn, sh_shardsum *sum)
{
    MDB_val k = mval("sum", 3), d;
    int rc = mdb_get(txn, s->meta, &k, &d);
    if (rc == MDB_NOTFOUND) {
        *sum = (sh_shardsum)SH_SHARDSUM_INIT;
        return 0;
    }
    if (rc)
        return rc;
    if (d.mv_size != 24)
        return MDB_CORRUPTED;
    memcpy(&sum->sum, d.mv_data, 8);
    memcpy(&sum->tracks, (const char *)d.mv_data + 8, 8);
    memcpy(&sum->postings, (const char *)d.mv_data + 16, 8);
    return 0;
}

static int sum_put(const sh_shard *s, MDB_txn *txn, const sh_shardsum *sum)
{
    uint8_t buf[24];
    memcpy(buf, &sum->sum, 8);
    memcpy(buf + 8, &sum->tracks, 8);
    memcpy(buf + 16, &sum->postings, 8);
    MDB_val k = mval("sum", 3), d = mval(buf, 24);
    return mdb_put(txn, s->meta, &k, &d, 0);
}

int sh_shard_counters_load(const sh_shard *s, MDB_txn *txn, shard_counters *c)
{
    uint64_t nt = 0, vp = 0, vf = 0;
    int rc = sh_shard_meta_get_u64(txn, s->meta, "postings", &c->postings);
    if (!rc)
        rc = sh_shard_meta_get_u64(txn, s->meta, "dead_postings", &c->dead_postings);
    if (!rc)
        rc = sh_shard_meta_get_u64(txn, s->meta, "audio_ms", &c->audio_ms);
    if (!rc)
        rc = sh_shard_meta_get_u64(txn, s->meta, "next_track", &nt);
    if (!rc)
        rc = sh_shard_meta_get_u64(txn, s->meta, "vacuum_pos", &vp);
    if (!rc)
        rc = sh_shard_meta_get_u64(txn, s->meta, "vacuum_fp", &vf);
    if (!rc)
        rc = sum_get(s, txn, &c->sum);
    c->vacuum_fp = (int)vf;
    c->next_track = nt ? (uint32_t)nt : 1; /* 0 means "deleted" in the ids table */
    c->vacuum_pos = (uint32_t)vp;
    return rc;
}

int sh_shard_counters_store(const sh_shard *s, MDB_txn *txn, const shard_counters *c)
{
    int rc = sh_shard_meta_put_u64(txn, s->meta, "postings", c->postings);
    if (!rc)
        rc = sh_shard_meta_put_u64(txn, s->meta, "dead_postings", c->dead_postings);
    if (!rc)
        rc = sh_shard_meta_put_u64(txn, s->meta, "audio_ms", c->audio_ms);
    if (!rc)
        rc = sh_shard_meta_put_u64(txn, s->meta, "next_track", c->next_track);
    if (!rc)
        rc = sh_shard_meta_put_u64(txn, s->meta, "vacuum_pos", c->vacuum_pos);
    if (!rc)
        rc = sh_shard_meta_put_u64(txn, s->meta, "vacuum_fp", (uint64_t)c->vacuum_fp);
    if (!rc)
        rc = sum_put(s, txn, &c->sum);
    return rc;
}

/* ---- open / close ------------------------------------------------------------------------------
 */

static int open_dbis(sh_shard *s, MDB_txn *txn, unsigned flags)
{
    int rc = mdb_dbi_open(txn, "ids", flags, &s->ids);
    if (!rc)
        rc = mdb_dbi_open(txn, "tracks", flags | MDB_INTEGERKEY, &s->tracks);
    if (!rc)
        rc = mdb_dbi_open(txn, "dead", flags | MDB_INTEGERKEY, &s->dead);
    if (!rc)
        rc = mdb_dbi_open(txn, "cursor", flags, &s->cursor);
    return rc;
}

int sh_shard_format_put(const sh_shard *s, MDB_txn *txn, int format)
{
    MDB_val k = mval("format", 6), d;
    char fmt[64];
    int fl = snprintf(fmt, sizeof fmt, "%s %d", SH_SHARD_MAGIC, format);
    d = mval(fmt, (size_t)fl);
    return mdb_put(txn, s->meta, &k, &d, 0);
}

static int init_new(sh_shard *s, MDB_txn *txn, sh_err *e)
{
    s->format = SH_SHARD_FORMAT;
    s->base_fp = s->fp_version;
    char fk[32];
    sh_shard_fp_key(fk, sizeof fk, s->base_fp);
    int rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
    if (!rc)
        rc = open_dbis(s, txn, MDB_CREATE);
    MDB_dbi post;
    if (!rc)
        rc = mdb_dbi_open(txn, "post", MDB_CREATE | MDB_INTEGERKEY, &post);
    if (!rc) {
        s->posts[0] = (post_dbi){.fp_version = s->base_fp, .dbi = post};
        s->nposts = 1;
        rc = sh_shard_meta_put_u64(txn, s->meta, fk, 0);
    }
    if (!rc)
        rc = sh_shard_format_put(s, txn, SH_SHARD_FORMAT);
    if (!rc)
        rc = sh_shard_meta_put_u64(txn, s->meta, "fp_version", (uint64_t)s->fp_version);
    return rc ? sh_shard_lmdb_err(e, rc, "initialising shard") : 0;
}

/* The format record: "soundhash-shard N". Sets s->format; format 1 only read-only. */
static int check_format(sh_shard *s, MDB_txn *txn, sh_err *e)
{
    MDB_val k = mval("format", 6), d;
    int rc = mdb_get(txn, s->meta, &k, &d);
    if (rc == MDB_NOTFOUND ||
        (rc == 0 && (d.mv_size < sizeof SH_SHARD_MAGIC - 1 ||
                     memcmp(d.mv_data, SH_SHARD_MAGIC, sizeof SH_SHARD_MAGIC - 1))))
        return sh_err_set(e, SH_EFORMAT, "%s: not a SoundHash shard (no format record)", s->dir);
    if (rc)
        return sh_shard_lmdb_err(e, rc, s->dir);
    char want[64], v2[64], v1[64];
    int wl = snprintf(want, sizeof want, "%s %d", SH_SHARD_MAGIC, SH_SHARD_FORMAT);
    int v2l = snprintf(v2, sizeof v2, "%s %d", SH_SHARD_MAGIC, SH_SHARD_FORMAT_V2);
    int vl = snprintf(v1, sizeof v1, "%s %d", SH_SHARD_MAGIC, SH_SHARD_FORMAT_V1);
    if (d.mv_size == (size_t)wl && !memcmp(d.mv_data, want, (size_t)wl)) {
        s->format = SH_SHARD_FORMAT;
        return 0;
    }
    /* Format 2 differs only in its range blobs having no skip table: read and written as it is
     * (so a build before format 3 still reads it), converted by sh_shard_compact(). */
    if (d.mv_size == (size_t)v2l && !memcmp(d.mv_data, v2, (size_t)v2l)) {
        s->format = SH_SHARD_FORMAT_V2;
        return 0;
    }
    if (d.mv_size == (size_t)vl && !memcmp(d.mv_data, v1, (size_t)vl)) {
        s->format = SH_SHARD_FORMAT_V1;
        if (s->read_only)
            return 0;
        return sh_err_set(e, SH_EUNSUPPORTED,
                          "%s: shard format 1 (one fingerprint version, no apply seqs or "
                          "checksum) is read-only in this build: open it read-only, or rebuild "
                          "the index into a new directory to write to it",
                          s->dir);
    }
    return sh_err_set(e, SH_EUNSUPPORTED, "%s: shard format '%.*s', this build reads '%s' and "
                      "formats 1 and 2", s->dir,
                      (int)(d.mv_size < 64 ? d.mv_size : 64), (char *)d.mv_data, want);
}

/* Checks the format record and fp_versions of an existing shard and opens its tables. */
static int check_existing(sh_shard *s, MDB_txn *txn, int want_fp, sh_err *e)
{
    int rc = check_format(s, txn, e);
    if (rc)
        return rc;
    uint64_t fp = 0;
    rc = sh_shard_meta_get_u64(txn, s->meta, "fp_version", &fp);
    if (rc)
        return sh_shard_lmdb_err(e, rc, s->dir);
    if (fp < 1 || fp > SH_SHARD_FP_VERSION_MAX)
        return sh_err_set(e, SH_EFORMAT, "%s: shard file corrupted (fp_version %llu)", s->dir,
                          (unsigned long long)fp);
    s->base_fp = (int)fp;
    rc = open_dbis(s, txn, 0);
    if (rc == MDB_NOTFOUND)
        return sh_err_set(e, SH_EFORMAT, "%s: shard incomplete (a table is missing)", s->dir);
    if (rc)
        return sh_shard_lmdb_err(e, rc, s->dir);
    int fps[SH_SHARD_FP_VERSIONS_MAX];
    size_t n;
    if ((rc = sh_shard_fp_scan(s, txn, fps, NULL, &n)))
        return sh_shard_lmdb_err(e, rc, s->dir);
    bool has = false;
    for (size_t i = 0; i < n; i++)
        has |= fps[i] == want_fp;
    if (want_fp >= 0 && !has)
        return sh_err_set(e, SH_EUNSUPPORTED,
                          "%s: shard holds fp_version %llu postings, this build computes %d "
                          "(rebuild the index)",
                          s->dir, (unsigned long long)fp, want_fp);
    s->fp_version = want_fp >= 0 ? want_fp : s->base_fp;
    post_dbi got[SH_SHARD_FP_VERSIONS_MAX];
    rc = sh_shard_posts_open_missing(s, txn, got, &n);
    if (rc == MDB_NOTFOUND)
        return sh_err_set(e, SH_EFORMAT, "%s: shard incomplete (a posting index is missing)",
                          s->dir);
    if (rc)
        return sh_shard_lmdb_err(e, rc, s->dir);
    sh_shard_posts_publish(s, got, n); /* the open transaction commits before anyone reads them */
    return 0;
}

/* Opens the tables, creating them in an empty environment. Refuses foreign LMDB files. */
static int open_tables(sh_shard *s, int want_fp, sh_err *e)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return sh_shard_lmdb_err(e, rc, s->dir);
    rc = mdb_dbi_open(txn, "meta", 0, &s->meta);
    if (rc == MDB_NOTFOUND) {
        MDB_dbi main_dbi;
        MDB_stat st = {0};
        int r2 = mdb_dbi_open(txn, NULL, 0, &main_dbi);
        if (!r2)
            r2 = mdb_stat(txn, main_dbi, &st);
        if (r2)
            rc = sh_shard_lmdb_err(e, r2, s->dir);
        else if (st.ms_entries > 0)
            rc = sh_err_set(e, SH_EFORMAT, "%s: an LMDB environment but not a SoundHash shard",
                            s->dir);
        else if (s->read_only || s->no_create)
            rc = sh_err_set(e, SH_ENOTFOUND, "%s: no shard index there", s->dir);
        else
            rc = init_new(s, txn, e);
    } else if (rc) {
        rc = sh_shard_lmdb_err(e, rc, s->dir);
    } else {
        rc = check_existing(s, txn, want_fp, e);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = mdb_txn_commit(txn); /* also makes the dbi handles visible to later transactions */
    return rc ? sh_shard_lmdb_err(e, rc, s->dir) : 0;
}

/* A shard that must already exist has its data file: checked before LMDB would create one. */
static int check_data_file(const char *dir, sh_err *e)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/data.mdb", dir) >= (int)sizeof path)
        return sh_err_set(e, SH_EINVAL, "shard: directory name too long");
    if (stat(path, &st) != 0)
        return sh_err_set(e, SH_ENOTFOUND, "%s: no shard index there", dir);
    return 0;
}

static int prepare_dir(const char *dir, bool read_only, bool no_create, sh_err *e)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return sh_err_set(e, SH_EIO, "%s: not a directory (an index is a directory)", dir);
        return no_create && !read_only ? check_data_file(dir, e) : 0;
    }
    if (errno != ENOENT)
        return sh_err_set(e, SH_EIO, "%s: %s", dir, strerror(errno));
    if (read_only || no_create)
        return sh_err_set(e, SH_ENOTFOUND, "%s: no shard index there", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sh_err_set(e, SH_EIO, "%s: cannot create: %s", dir, strerror(errno));
    return 0;
}

static int env_open(sh_shard *s, sh_err *e)
{
    int rc = mdb_env_create(&s->env);
    if (rc)
        return sh_shard_lmdb_err(e, rc, s->dir);
    /* ids, tracks, dead, cursor, meta, the posting indexes, a rewrite's scratch table, a spare */
    rc = mdb_env_set_maxdbs(s->env, 7 + SH_SHARD_FP_VERSIONS_MAX);
    if (!rc)
        rc = mdb_env_set_mapsize(s->env, s->map_size);
    /* NOTLS: read transactions are not tied to threads (the edge serves from a pool). */
    unsigned flags = MDB_NOTLS | (s->read_only ? MDB_RDONLY : 0);
    if (!rc)
        rc = mdb_env_open(s->env, s->dir, flags, 0644);
    if (rc == ENOENT)
        return sh_err_set(e, SH_ENOTFOUND, "%s: no shard index there", s->dir);
    if (rc == EACCES)
        return sh_err_set(e, SH_EIO, "%s: permission denied", s->dir);
    if (rc)
        return sh_shard_lmdb_err(e, rc, s->dir);
    MDB_envinfo info;
    if (!mdb_env_info(s->env, &info))
        s->map_size = info.me_mapsize; /* an existing file may be larger than asked */
    return 0;
}

int sh_shard_open(const char *dir, const sh_shard_opts *o, sh_shard **out, sh_err *e)
{
    sh_shard_opts def;
    if (!o) {
        sh_shard_opts_default(&def);
        o = &def;
    }
    if (!dir || !*dir || !out)
        return sh_err_set(e, SH_EINVAL, "shard: no directory given");
    *out = NULL;
    int rc = prepare_dir(dir, o->read_only, o->no_create, e);
    if (rc)
        return rc;
    sh_shard *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return sh_err_set(e, SH_ENOMEM, "shard: out of memory");
    }
    pthread_rwlock_init(&s->map_lock, NULL);
    pthread_mutex_init(&s->write_lock, NULL);
    s->read_only = o->read_only;
    s->no_create = o->no_create;
    s->map_size = o->map_size ? o->map_size : SH_MAP_DEFAULT;
    s->map_max = o->map_size_max ? o->map_size_max : SH_MAP_MAX_DEFAULT;
    s->fp_version = o->fp_version > 0 ? o->fp_version : SH_FP_VERSION;
    s->stop_postings = o->stop_postings ? o->stop_postings : SH_SHARD_STOP_POSTINGS_DEFAULT;
    int want_fp = o->fp_version < 0 ? -1 : s->fp_version;
    rc = env_open(s, e);
    if (!rc)
        rc = open_tables(s, want_fp, e);
    if (rc) {
        sh_shard_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sh_shard_free(sh_shard *s)
{
    if (!s)
        return;
    if (s->env)
        mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->map_lock);
    pthread_mutex_destroy(&s->write_lock);
    free(s->dir);
    free(s);
}

/* Begins a read transaction under the shared map lock, adopting a map grown by another process. */
int sh_shard_read_begin(sh_shard *s, MDB_txn **txn, sh_err *e)
{
    for (int i = 0; i < SH_RETRIES_MAX; i++) {
        pthread_rwlock_rdlock(&s->map_lock);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc != MDB_MAP_RESIZED) {
            if (rc) {
                pthread_rwlock_unlock(&s->map_lock);
                return sh_shard_lmdb_err(e, rc, s->dir);
            }
            return 0;
        }
        pthread_rwlock_unlock(&s->map_lock);
        pthread_rwlock_wrlock(&s->map_lock);
        mdb_env_set_mapsize(s->env, 0);
        pthread_rwlock_unlock(&s->map_lock);
    }
    return sh_err_set(e, SH_ELMDB, "%s: map keeps being resized", s->dir);
}

void sh_shard_read_end(sh_shard *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->map_lock);
}

/* ---- track records ------------------------------------------------------------------------------
 */

int sh_shard_id_get(const sh_shard *s, MDB_txn *txn, const char *id, id_rec *r)
{
    MDB_val k = mval(id, strlen(id)), v;
    int rc = mdb_get(txn, s->ids, &k, &v);
    if (rc)
        return rc;
    if (v.mv_size != (s->format == SH_SHARD_FORMAT_V1 ? 12u : 20u))
        return MDB_CORRUPTED;
    memcpy(&r->track, v.mv_data, 4);
    memcpy(&r->version, (const char *)v.mv_data + 4, 8);
    r->seq = 0;
    if (v.mv_size == 20)
        memcpy(&r->seq, (const char *)v.mv_data + 12, 8);
    return 0;
}

int sh_shard_track_parse(const sh_shard *s, const MDB_val *v, track_hdr *h, size_t *hlen)
{
    size_t hl = s->format == SH_SHARD_FORMAT_V1 ? SH_TRACK_HDR_V1 : sizeof *h;
    if (v->mv_size < hl)
        return MDB_CORRUPTED;
    *h = (track_hdr){0};
    memcpy(h, v->mv_data, hl);
    *hlen = hl;
    if (v->mv_size != hl + h->id_len + h->tenant_len + (size_t)h->meta_len ||
        h->id_len > SH_SHARD_ID_MAX || h->tenant_len > SH_SHARD_TENANT_MAX ||
        h->meta_len > SH_SHARD_META_MAX)
        return MDB_CORRUPTED;
    return 0;
}

bool sh_shard_valid_id(const char *id)
{
    size_t n = id ? strnlen(id, SH_SHARD_ID_MAX + 1) : 0;
    return n >= 1 && n <= SH_SHARD_ID_MAX;
}

/* ---- reading ----------------------------------------------------------------------------------
 */

static int cursor_get_txn(sh_shard *s, MDB_txn *txn, const char *key, void *buf, size_t cap,
                          size_t *len, sh_err *e)
{
    MDB_val k = mval(key, strlen(key)), v;
    int rc = mdb_get(txn, s->cursor, &k, &v);
    if (rc == MDB_NOTFOUND)
        return sh_err_set(e, SH_ENOTFOUND, "cursor '%.64s' not set", key);
    if (rc)
        return sh_shard_lmdb_err(e, rc, "reading cursor");
    *len = v.mv_size;
    if (v.mv_size > cap)
        return sh_err_set(e, SH_ETOOBIG, "cursor '%.64s' is %zu bytes", key, v.mv_size);
    if (v.mv_size)
        memcpy(buf, v.mv_data, v.mv_size);
    return 0;
}

int sh_shard_get_cursor(sh_shard *s, const char *key, void *buf, size_t cap, size_t *len, sh_err *e)
{
    if (!s || !key || !len || (!buf && cap))
        return sh_err_set(e, SH_EINVAL, "shard cursor: NULL argument");
    MDB_txn *txn;
    int rc = sh_shard_read_begin(s, &txn, e);
    if (rc)
        return rc;
    rc = cursor_get_txn(s, txn, key, buf, cap, len, e);
    sh_shard_read_end(s, txn);
    return rc;
}

static int cmp_hash_only(const void *x, const void *y)
{
    const sh_hash *p = x, *q = y;
    if (p->hash != q->hash)
        return p->hash < q->hash ? -1 : 1;
    return p->t < q->t ? -1 : p->t > q->t;
}

/* Sorts q[0..n) by (hash, t) — cmp_hash_only's order — with tmp (n entries) as scratch: an LSD
 * radix sort, a byte at a time, skipping bytes that every key shares. A fingerprint's hashes come
 * in time order, and then sorting stably by hash alone is enough (4 bytes instead of 6 of the
 * 64-bit key). Every shard of a lookup sorts its query: qsort's compare calls cost a sixth of a
 * lookup. Small queries keep qsort. */
static void sort_query(sh_hash *q, sh_hash *tmp, size_t n)
{
    if (n < 256) {
        qsort(q, n, sizeof *q, cmp_hash_only);
        return;
    }
    bool by_t = true;
    for (size_t i = 1; i < n && by_t; i++)
        by_t = q[i - 1].t <= q[i].t;
    const int nb = by_t ? 4 : 8, lo = by_t ? 4 : 0; /* key bytes lo..7 (hash = bytes 4..7) */
    size_t cnt[8][256] = {{0}};
    for (size_t i = 0; i < n; i++) {
        const uint64_t k = (uint64_t)q[i].hash << 32 | q[i].t;
        for (int b = lo; b < lo + nb; b++)
            cnt[b][(k >> (8 * b)) & 255]++;
    }
    sh_hash *src = q, *dst = tmp;
    const uint64_t k0 = (uint64_t)q[0].hash << 32 | q[0].t;
    for (int b = lo; b < lo + nb; b++) {
        if (cnt[b][(k0 >> (8 * b)) & 255] == n)
            continue;
        size_t sum = 0;
        for (int d = 0; d < 256; d++) {
            const size_t c = cnt[b][d];
            cnt[b][d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            const uint64_t k = (uint64_t)src[i].hash << 32 | src[i].t;
            dst[cnt[b][(k >> (8 * b)) & 255]++] = src[i];
        }
        sh_hash *t = src;
        src = dst;
        dst = t;
    }
    if (src != q)
        memcpy(q, src, n * sizeof *q);
}

/* Whether q[0..n) is in cmp_hash_only's order already. */
static bool query_sorted(const sh_hash *q, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (q[i - 1].hash > q[i].hash || (q[i - 1].hash == q[i].hash && q[i - 1].t > q[i].t))
            return false;
    return true;
}

int sh_shard_query_sort(sh_hash *q, size_t n, sh_err *e)
{
    if (!q && n)
        return sh_err_set(e, SH_EINVAL, "query sort: NULL argument");
    if (n < 2 || query_sorted(q, n))
        return 0;
    if (n > SIZE_MAX / sizeof(sh_hash))
        return sh_err_set(e, SH_ETOOBIG, "query sort: %zu hashes", n);
    sh_hash *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return sh_err_set(e, SH_ENOMEM, "query sort: out of memory");
    sort_query(q, tmp, n);
    free(tmp);
    return 0;
}

typedef struct lookup_ctx {
    sh_shard *s;
    MDB_dbi post; /* the posting index of the query's fp_version */
    sh_matcher *m;
    const sh_hash *q; /* sorted by hash */
    size_t nq;
    const uint32_t *dead; /* sorted dead track numbers */
    size_t ndead;
    size_t votes;
    size_t stop; /* hash values with more postings than this cast no vote */
} lookup_ctx;

static bool is_dead(const lookup_ctx *l, uint32_t track)
{
    size_t lo = 0, hi = l->ndead;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->dead[mid] < track)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->ndead && l->dead[lo] == track;
}

static int vote_corrupt(const lookup_ctx *l, uint32_t key, sh_err *e)
{
    return sh_err_set(e, SH_EFORMAT, "%s: corrupted range blob at key %u", l->s->dir, key);
}

/* Votes postings [x0, x1) of r for the query hashes q[qi..qe) (all equal to the postings' hash),
 * query by query, as a merge walk would. */
static void vote_run(lookup_ctx *l, const sh_range *r, size_t x0, size_t x1, size_t qi, size_t qe)
{
    for (; qi < qe; qi++)
        for (size_t x = x0; x < x1; x++) {
            uint32_t track = sh_range_track(r, x);
            if (l->ndead && is_dead(l, track))
                continue;
            sh_matcher_vote(l->m, track, sh_range_t(r, x), l->q[qi].t);
            l->votes++;
        }
}

/* Votes the postings of one range for the query hashes q[i..j) (all ≤ key): a merge walk that
 * decodes the hash column only up to the last query hash (sh_range_seek). */
static int vote_range(lookup_ctx *l, uint32_t key, const MDB_val *v, size_t i, size_t j, sh_err *e)
{
    uint8_t tail[16]; /* the blob is read in place, its last bytes from this padded copy */
    sh_range r;
    sh_range_cursor c;
    if (sh_range_open(v->mv_data, v->mv_size, key, tail, &r))
        return vote_corrupt(l, key, e);
    sh_range_cursor_init(&r, &c);
    for (size_t qi = i; qi < j && c.i < r.n;) {
        const uint32_t h = l->q[qi].hash;
        size_t qe = qi + 1;
        while (qe < j && l->q[qe].hash == h)
            qe++;
        if (sh_range_seek(&r, key, &c, h))
            return vote_corrupt(l, key, e);
        if (c.i < r.n && c.hash == h) {
            const size_t x0 = c.i;
            /* The run of h ends at the first hash ≥ h + 1; nothing follows UINT32_MAX. */
            if (h == UINT32_MAX)
                c.i = r.n;
            else if (sh_range_seek(&r, key, &c, h + 1))
                return vote_corrupt(l, key, e);
            /* The writer never splits a hash's run across ranges (range keys are hash values),
             * so c.i - x0 is all the postings of h in the shard. */
            if (c.i - x0 <= l->stop)
                vote_run(l, &r, x0, c.i, qi, qe);
        }
        qi = qe;
    }
    return 0;
}

static int load_dead_tracks(lookup_ctx *l, MDB_txn *txn, uint32_t **out)
{
    MDB_stat st;
    int rc = mdb_stat(txn, l->s->dead, &st);
    if (rc || !st.ms_entries)
        return rc;
    uint32_t *v = malloc(st.ms_entries * sizeof *v);
    if (!v)
        return ENOMEM;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, l->s->dead, &c))) {
        free(v);
        return rc;
    }
    MDB_val k, d;
    size_t n = 0;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); !rc && n < st.ms_entries;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        if (k.mv_size == 4)
            memcpy(&v[n++], k.mv_data, 4);
    }
    mdb_cursor_close(c);
    *out = v;
    l->dead = v;
    l->ndead = n;
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

/* Positions c at the range holding hash h (the first key ≥ h). The sweep visits ranges in key
 * order and a query hits a large share of them, so the next range is tried first (MDB_NEXT: no
 * B-tree descent); only when h lies beyond it does a MDB_SET_RANGE descend. Returns 0,
 * MDB_NOTFOUND (no key ≥ h) or an LMDB error. */
static int range_find(MDB_cursor *c, bool started, uint32_t h, uint32_t *key, MDB_val *v)
{
    MDB_val k;
    int rc = MDB_NOTFOUND;
    if (started) {
        rc = mdb_cursor_get(c, &k, v, MDB_NEXT);
        if (!rc && k.mv_size != 4)
            return MDB_CORRUPTED;
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        if (rc == MDB_NOTFOUND)
            return rc; /* the previous range was the last: no key ≥ h */
        memcpy(key, k.mv_data, 4);
        if (*key >= h)
            return 0;
    }
    k = mval(&h, 4);
    rc = mdb_cursor_get(c, &k, v, MDB_SET_RANGE);
    if (!rc && k.mv_size != 4)
        return MDB_CORRUPTED;
    if (!rc)
        memcpy(key, k.mv_data, 4);
    return rc;
}

static int lookup_sweep(lookup_ctx *l, MDB_txn *txn, sh_err *e)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, l->post, &c);
    if (rc)
        return sh_shard_lmdb_err(e, rc, "lookup");
    size_t i = 0;
    while (i < l->nq) {
        uint32_t key;
        MDB_val v;
        rc = range_find(c, i > 0, l->q[i].hash, &key, &v);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc) {
            rc = sh_shard_lmdb_err(e, rc, "lookup");
            break;
        }
        size_t j = i;
        while (j < l->nq && l->q[j].hash <= key)
            j++;
        if ((rc = vote_range(l, key, &v, i, j, e)))
            break;
        i = j;
    }
    mdb_cursor_close(c);
    return rc;
}

/* One read transaction: the dead set, then the sweep over fp's index. *refresh is set when the
 * shard has an index for fp that this handle has not opened (another process created it). */
static int lookup_txn(lookup_ctx *l, int fp, uint32_t **dead, bool *refresh, sh_err *e)
{
    MDB_txn *txn;
    int rc = sh_shard_read_begin(l->s, &txn, e);
    if (rc)
        return rc;
    bool listed = false;
    int lr = sh_shard_post_find(l->s, fp, &l->post);
    if (lr == MDB_NOTFOUND) {
        lr = sh_shard_fp_listed(l->s, txn, fp, &listed);
        *refresh = !lr && listed;
        sh_shard_read_end(l->s, txn);
        return lr ? sh_shard_lmdb_err(e, lr, "lookup") : 0; /* no such postings: no votes */
    }
    lr = load_dead_tracks(l, txn, dead);
    rc = lr ? sh_shard_lmdb_err(e, lr, "lookup") : lookup_sweep(l, txn, e);
    sh_shard_read_end(l->s, txn);
    return rc;
}

int sh_shard_lookup_fp(sh_shard *s, int fp_version, const sh_hash *q, size_t n, sh_matcher *m,
                       size_t *postings, sh_err *e)
{
    if (!s || (!q && n) || !m)
        return sh_err_set(e, SH_EINVAL, "lookup: NULL argument");
    if (postings)
        *postings = 0;
    if (n > SIZE_MAX / (2 * sizeof(sh_hash)))
        return sh_err_set(e, SH_ETOOBIG, "lookup: %zu query hashes", n);
    sh_hash *sorted = NULL; /* a sorted copy, when q is not in lookup order */
    if (!query_sorted(q, n)) {
        if (!(sorted = malloc(2 * n * sizeof *sorted))) /* the hashes, then scratch */
            return sh_err_set(e, SH_ENOMEM, "lookup: out of memory");
        memcpy(sorted, q, n * sizeof *q);
        sort_query(sorted, sorted + n, n);
    }
    lookup_ctx l = {.s = s, .m = m, .q = sorted ? sorted : q, .nq = n, .stop = s->stop_postings};
    uint32_t *dead = NULL;
    bool refresh = false;
    int rc = lookup_txn(&l, fp_version, &dead, &refresh, e);
    if (!rc && refresh && !(rc = sh_shard_posts_refresh(s, e)))
        rc = lookup_txn(&l, fp_version, &dead, &refresh, e);
    if (postings)
        *postings = l.votes;
    free(dead);
    free(sorted);
    return rc;
}

int sh_shard_lookup(sh_shard *s, const sh_hash *q, size_t n, sh_matcher *m, size_t *postings,
                    sh_err *e)
{
    if (!s)
        return sh_err_set(e, SH_EINVAL, "lookup: NULL argument");
    return sh_shard_lookup_fp(s, s->fp_version, q, n, m, postings, e);
}

int sh_shard_checksum(sh_shard *s, sh_shardsum *out, sh_err *e)
{
    if (!s || !out)
        return sh_err_set(e, SH_EINVAL, "checksum: NULL argument");
    if (s->format == SH_SHARD_FORMAT_V1)
        return sh_err_set(e, SH_EUNSUPPORTED, "%s: a format 1 shard keeps no checksum", s->dir);
    MDB_txn *txn;
    int rc = sh_shard_read_begin(s, &txn, e);
    if (rc)
        return rc;
    int lr = sum_get(s, txn, out);
    sh_shard_read_end(s, txn);
    return lr ? sh_shard_lmdb_err(e, lr, "checksum") : 0;
}

/* Fills `out` from a tracks record, copying strings into buf. */
static int info_fill(const sh_shard *s, uint32_t track, const MDB_val *v, sh_shard_info *out,
                     char *buf, size_t cap, sh_err *e)
{
    track_hdr h;
    size_t hl;
    if (sh_shard_track_parse(s, v, &h, &hl))
        return sh_err_set(e, SH_EFORMAT, "track %u: corrupted record", track);
    size_t need = (size_t)h.id_len + h.tenant_len + h.meta_len + 3;
    if (!buf || cap < need)
        return sh_err_set(e, SH_ETOOBIG, "track %u: info needs %zu bytes", track, need);
    const char *p = (const char *)v->mv_data + hl;
    char *id = buf, *tenant = id + h.id_len + 1, *meta = tenant + h.tenant_len + 1;
    memcpy(id, p, h.id_len);
    id[h.id_len] = '\0';
    memcpy(tenant, p + h.id_len, h.tenant_len);
    tenant[h.tenant_len] = '\0';
    memcpy(meta, p + h.id_len + h.tenant_len, h.meta_len);
    meta[h.meta_len] = '\0';
    *out = (sh_shard_info){.track = track,
                           .version = h.version,
                           .fp_version = (int)h.fp_version,
                           .duration_s = h.duration_s,
                           .postings = h.postings,
                           .id = id,
                           .tenant = tenant,
                           .meta_json = meta};
    return 0;
}

static int info_txn(sh_shard *s, MDB_txn *txn, uint32_t track, sh_shard_info *out, char *buf,
                    size_t cap, sh_err *e)
{
    MDB_val k = mval(&track, 4), v;
    int rc = mdb_get(txn, s->tracks, &k, &v);
    if (rc == MDB_NOTFOUND)
        return sh_err_set(e, SH_ENOTFOUND, "track %u not in the shard", track);
    if (rc)
        return sh_shard_lmdb_err(e, rc, "reading track");
    return info_fill(s, track, &v, out, buf, cap, e);
}

int sh_shard_info_by_track(sh_shard *s, uint32_t track, sh_shard_info *out, char *buf, size_t cap,
                           sh_err *e)
{
    if (!s || !out)
        return sh_err_set(e, SH_EINVAL, "track info: NULL argument");
    MDB_txn *txn;
    int rc = sh_shard_read_begin(s, &txn, e);
    if (rc)
        return rc;
    rc = info_txn(s, txn, track, out, buf, cap, e);
    sh_shard_read_end(s, txn);
    return rc;
}

int sh_shard_info_by_id(sh_shard *s, const char *id, sh_shard_info *out, char *buf, size_t cap,
                        sh_err *e)
{
    if (!s || !out || !sh_shard_valid_id(id))
        return sh_err_set(e, SH_EINVAL, "track info: bad id");
    MDB_txn *txn;
    int rc = sh_shard_read_begin(s, &txn, e);
    if (rc)
        return rc;
    id_rec r;
    int g = sh_shard_id_get(s, txn, id, &r);
    if (g == MDB_NOTFOUND || (!g && !r.track))
        rc = sh_err_set(e, SH_ENOTFOUND, "track '%.256s' not in the shard", id);
    else if (g)
        rc = sh_shard_lmdb_err(e, g, "reading track id");
    else
        rc = info_txn(s, txn, r.track, out, buf, cap, e);
    sh_shard_read_end(s, txn);
    return rc;
}

/* Pages on LMDB's free list (reusable space inside the file). */
static int free_pages(MDB_txn *txn, uint64_t *out)
{
    MDB_cursor *c;
    *out = 0;
    int rc = mdb_cursor_open(txn, 0 /* FREE_DBI */, &c);
    if (rc)
        return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (v.mv_size >= sizeof(size_t)) {
            size_t n;
            memcpy(&n, v.mv_data, sizeof n); /* an IDL: count first */
            *out += n;
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int sh_shard_stats_get(sh_shard *s, sh_shard_stats *out, sh_err *e)
{
    if (!s || !out)
        return sh_err_set(e, SH_EINVAL, "stats: NULL argument");
    *out = (sh_shard_stats){.fp_version = s->fp_version};
    MDB_txn *txn;
    int rc = sh_shard_read_begin(s, &txn, e);
    if (rc)
        return rc;
    shard_counters c;
    MDB_stat ts, ps;
    MDB_envinfo info;
    uint64_t freep = 0;
    int lr = sh_shard_counters_load(s, txn, &c);
    if (!lr)
        lr = mdb_stat(txn, s->tracks, &ts);
    uint64_t ranges = 0;
    for (size_t i = 0; i < s->nposts && !lr; i++)
        if (!(lr = mdb_stat(txn, s->posts[i].dbi, &ps)))
            ranges += ps.ms_entries;
    if (!lr)
        lr = mdb_env_info(s->env, &info);
    if (!lr)
        lr = free_pages(txn, &freep);
    if (!lr) {
        MDB_stat es;
        mdb_env_stat(s->env, &es);
        out->tracks = ts.ms_entries;
        out->postings = c.postings;
        out->dead_postings = c.dead_postings;
        out->ranges = ranges;
        out->audio_s = (double)c.audio_ms / 1000.0;
        uint64_t pages = (uint64_t)info.me_last_pgno + 1;
        out->used_bytes = (pages > freep ? pages - freep : 0) * es.ms_psize;
    }
    sh_shard_read_end(s, txn);
    if (lr)
        return sh_shard_lmdb_err(e, lr, "stats");
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", s->dir);
    if (stat(path, &st) == 0)
        out->file_bytes = (uint64_t)st.st_size;
    out->bytes_per_posting = out->postings ? (double)out->file_bytes / (double)out->postings : 0;
    return 0;
}
