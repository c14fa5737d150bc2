#include "sh_shard.h"

#include "sh_log.h"
#include "sh_shard_range.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- constants ---------------------------------------------------------------------------------
 */

#define SH_SHARD_MAGIC "soundhash-shard"
enum {
    SH_SHARD_FORMAT = 1,
    /* A range blob is split when it grows past this; pieces are cut at ~3/4 of it so that the
     * next few inserts do not split again. Kept well under LMDB's inline node limit (~2 KB for
     * 4 KB pages): bigger values would go to whole overflow pages. */
    SH_RANGE_BLOB_MAX = 1024,
    SH_RANGE_BLOB_TARGET = SH_RANGE_BLOB_MAX * 3 / 4,
    /* Ranges the incremental vacuum visits per commit while dead postings remain. */
    SH_VACUUM_RANGES_MIN = 64,
    SH_BATCH_POSTINGS_DEFAULT = 16 << 20,
    SH_COMPACT_POSTINGS_MAX = 64 << 20, /* 768 MB of postings in memory */
    SH_RETRIES_MAX = 40,
};

static const size_t SH_MAP_DEFAULT = (size_t)64 << 20;
static const size_t SH_MAP_MAX_DEFAULT = (size_t)1 << 40;

/* ---- handle
 * -------------------------------------------------------------------------------------- */

struct sh_shard {
    MDB_env *env;
    MDB_dbi post, ids, tracks, dead, cursor, meta;
    char *dir;
    size_t map_size, map_max;
    int fp_version;
    bool read_only;
    bool no_create;
    /* Growing the map is only allowed with no transaction active in this process: readers hold
     * this lock shared, the resize holds it exclusively. */
    pthread_rwlock_t map_lock;
    pthread_mutex_t write_lock; /* one committing batch at a time */
};

void sh_shard_opts_default(sh_shard_opts *o)
{
    *o = (sh_shard_opts){.map_size = SH_MAP_DEFAULT, .map_size_max = SH_MAP_MAX_DEFAULT};
}

int sh_shard_fp_version(const sh_shard *s)
{
    return s->fp_version;
}

/* Translates an LMDB code at the boundary. */
static int lmdb_err(sh_err *e, int rc, const char *what)
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

static MDB_val mval(const void *p, size_t n)
{
    return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}

/* ---- meta counters
 * ------------------------------------------------------------------------------- */

typedef struct shard_counters {
    uint64_t postings, dead_postings, audio_ms;
    uint32_t next_track, vacuum_pos;
} shard_counters;

static int meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t *v)
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

static int meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t v)
{
    MDB_val k = mval(key, strlen(key)), d = mval(&v, 8);
    return mdb_put(txn, dbi, &k, &d, 0);
}

static int counters_load(const sh_shard *s, MDB_txn *txn, shard_counters *c)
{
    uint64_t nt = 0, vp = 0;
    int rc = meta_get_u64(txn, s->meta, "postings", &c->postings);
    if (!rc)
        rc = meta_get_u64(txn, s->meta, "dead_postings", &c->dead_postings);
    if (!rc)
        rc = meta_get_u64(txn, s->meta, "audio_ms", &c->audio_ms);
    if (!rc)
        rc = meta_get_u64(txn, s->meta, "next_track", &nt);
    if (!rc)
        rc = meta_get_u64(txn, s->meta, "vacuum_pos", &vp);
    c->next_track = nt ? (uint32_t)nt : 1; /* 0 means "deleted" in the ids table */
    c->vacuum_pos = (uint32_t)vp;
    return rc;
}

static int counters_store(const sh_shard *s, MDB_txn *txn, const shard_counters *c)
{
    int rc = meta_put_u64(txn, s->meta, "postings", c->postings);
    if (!rc)
        rc = meta_put_u64(txn, s->meta, "dead_postings", c->dead_postings);
    if (!rc)
        rc = meta_put_u64(txn, s->meta, "audio_ms", c->audio_ms);
    if (!rc)
        rc = meta_put_u64(txn, s->meta, "next_track", c->next_track);
    if (!rc)
        rc = meta_put_u64(txn, s->meta, "vacuum_pos", c->vacuum_pos);
    return rc;
}

/* ---- open / close ------------------------------------------------------------------------------
 */

static int open_dbis(sh_shard *s, MDB_txn *txn, unsigned flags)
{
    int rc = mdb_dbi_open(txn, "post", flags | MDB_INTEGERKEY, &s->post);
    if (!rc)
        rc = mdb_dbi_open(txn, "ids", flags, &s->ids);
    if (!rc)
        rc = mdb_dbi_open(txn, "tracks", flags | MDB_INTEGERKEY, &s->tracks);
    if (!rc)
        rc = mdb_dbi_open(txn, "dead", flags | MDB_INTEGERKEY, &s->dead);
    if (!rc)
        rc = mdb_dbi_open(txn, "cursor", flags, &s->cursor);
    return rc;
}

static int init_new(sh_shard *s, MDB_txn *txn, sh_err *e)
{
    int rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
    if (!rc)
        rc = open_dbis(s, txn, MDB_CREATE);
    MDB_val k = mval("format", 6), d;
    char fmt[64];
    int fl = snprintf(fmt, sizeof fmt, "%s %d", SH_SHARD_MAGIC, SH_SHARD_FORMAT);
    d = mval(fmt, (size_t)fl);
    if (!rc)
        rc = mdb_put(txn, s->meta, &k, &d, 0);
    if (!rc)
        rc = meta_put_u64(txn, s->meta, "fp_version", (uint64_t)s->fp_version);
    return rc ? lmdb_err(e, rc, "initialising shard") : 0;
}

/* Checks the format record and fp_version of an existing shard. */
static int check_existing(sh_shard *s, MDB_txn *txn, int want_fp, sh_err *e)
{
    MDB_val k = mval("format", 6), d;
    int rc = mdb_get(txn, s->meta, &k, &d);
    char want[64];
    int wl = snprintf(want, sizeof want, "%s %d", SH_SHARD_MAGIC, SH_SHARD_FORMAT);
    if (rc == MDB_NOTFOUND ||
        (rc == 0 && (d.mv_size < sizeof SH_SHARD_MAGIC - 1 ||
                     memcmp(d.mv_data, SH_SHARD_MAGIC, sizeof SH_SHARD_MAGIC - 1))))
        return sh_err_set(e, SH_EFORMAT, "%s: not a SoundHash shard (no format record)", s->dir);
    if (rc)
        return lmdb_err(e, rc, s->dir);
    if (d.mv_size != (size_t)wl || memcmp(d.mv_data, want, (size_t)wl))
        return sh_err_set(e, SH_EUNSUPPORTED, "%s: shard format '%.*s', this build reads '%s'",
                          s->dir, (int)(d.mv_size < 64 ? d.mv_size : 64), (char *)d.mv_data, want);
    uint64_t fp = 0;
    rc = meta_get_u64(txn, s->meta, "fp_version", &fp);
    if (rc)
        return lmdb_err(e, rc, s->dir);
    if (want_fp >= 0 && (uint64_t)want_fp != fp)
        return sh_err_set(e, SH_EUNSUPPORTED,
                          "%s: shard holds fp_version %llu postings, this build computes %d "
                          "(rebuild the index)",
                          s->dir, (unsigned long long)fp, want_fp);
    s->fp_version = (int)fp;
    rc = open_dbis(s, txn, 0);
    if (rc == MDB_NOTFOUND)
        return sh_err_set(e, SH_EFORMAT, "%s: shard incomplete (a table is missing)", s->dir);
    return rc ? lmdb_err(e, rc, s->dir) : 0;
}

/* Opens the tables, creating them in an empty environment. Refuses foreign LMDB files. */
static int open_tables(sh_shard *s, int want_fp, sh_err *e)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return lmdb_err(e, rc, s->dir);
    rc = mdb_dbi_open(txn, "meta", 0, &s->meta);
    if (rc == MDB_NOTFOUND) {
        MDB_dbi main_dbi;
        MDB_stat st = {0};
        int r2 = mdb_dbi_open(txn, NULL, 0, &main_dbi);
        if (!r2)
            r2 = mdb_stat(txn, main_dbi, &st);
        if (r2)
            rc = lmdb_err(e, r2, s->dir);
        else if (st.ms_entries > 0)
            rc = sh_err_set(e, SH_EFORMAT, "%s: an LMDB environment but not a SoundHash shard",
                            s->dir);
        else if (s->read_only || s->no_create)
            rc = sh_err_set(e, SH_ENOTFOUND, "%s: no shard index there", s->dir);
        else
            rc = init_new(s, txn, e);
    } else if (rc) {
        rc = lmdb_err(e, rc, s->dir);
    } else {
        rc = check_existing(s, txn, want_fp, e);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = mdb_txn_commit(txn); /* also makes the dbi handles visible to later transactions */
    return rc ? lmdb_err(e, rc, s->dir) : 0;
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
        return lmdb_err(e, rc, s->dir);
    rc = mdb_env_set_maxdbs(s->env, 8);
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
        return lmdb_err(e, rc, s->dir);
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
static int read_begin(sh_shard *s, MDB_txn **txn, sh_err *e)
{
    for (int i = 0; i < SH_RETRIES_MAX; i++) {
        pthread_rwlock_rdlock(&s->map_lock);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc != MDB_MAP_RESIZED) {
            if (rc) {
                pthread_rwlock_unlock(&s->map_lock);
                return lmdb_err(e, rc, s->dir);
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

static void read_end(sh_shard *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->map_lock);
}

/* ---- dead set: sorted (track, postings left) pairs ----------------------------------------------
 */

typedef struct dead_ent {
    uint32_t track;
    uint32_t left;
    bool dirty;
} dead_ent;

typedef struct dead_set {
    dead_ent *v;
    size_t n, cap;
} dead_set;

static dead_ent *dead_find(const dead_set *d, uint32_t track)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->v[mid].track < track)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->n && d->v[lo].track == track ? &d->v[lo] : NULL;
}

static int dead_add(dead_set *d, uint32_t track, uint32_t left)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        dead_ent *v = realloc(d->v, cap * sizeof *v);
        if (!v)
            return ENOMEM;
        d->v = v;
        d->cap = cap;
    }
    size_t i = d->n;
    while (i > 0 && d->v[i - 1].track > track) /* track numbers only grow: usually appends */
        i--;
    memmove(d->v + i + 1, d->v + i, (d->n - i) * sizeof *d->v);
    d->v[i] = (dead_ent){.track = track, .left = left, .dirty = true};
    d->n++;
    return 0;
}

static int dead_load(const sh_shard *s, MDB_txn *txn, dead_set *d)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->dead, &c);
    if (rc)
        return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint32_t tr, left;
        if (k.mv_size != 4 || v.mv_size != 4) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(&tr, k.mv_data, 4);
        memcpy(&left, v.mv_data, 4);
        if ((rc = dead_add(d, tr, left)))
            break;
        d->v[d->n - 1].dirty = false;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int dead_store(const sh_shard *s, MDB_txn *txn, const dead_set *d)
{
    for (size_t i = 0; i < d->n; i++) {
        if (!d->v[i].dirty)
            continue;
        MDB_val k = mval(&d->v[i].track, 4), v = mval(&d->v[i].left, 4);
        int rc = d->v[i].left ? mdb_put(txn, s->dead, &k, &v, 0) : mdb_del(txn, s->dead, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

/* ---- track records ------------------------------------------------------------------------------
 */

/* ids value: track number (0 = deleted) and version. */
typedef struct id_rec {
    uint32_t track;
    uint64_t version;
} id_rec;

static int id_get(const sh_shard *s, MDB_txn *txn, const char *id, id_rec *r)
{
    MDB_val k = mval(id, strlen(id)), v;
    int rc = mdb_get(txn, s->ids, &k, &v);
    if (rc)
        return rc;
    if (v.mv_size != 12)
        return MDB_CORRUPTED;
    memcpy(&r->track, v.mv_data, 4);
    memcpy(&r->version, (const char *)v.mv_data + 4, 8);
    return 0;
}

static int id_put(const sh_shard *s, MDB_txn *txn, const char *id, const id_rec *r)
{
    uint8_t buf[12];
    memcpy(buf, &r->track, 4);
    memcpy(buf + 4, &r->version, 8);
    MDB_val k = mval(id, strlen(id)), v = mval(buf, 12);
    return mdb_put(txn, s->ids, &k, &v, 0);
}

/* tracks value: fixed header then id, tenant and meta bytes (native byte order, like LMDB). */
typedef struct track_hdr {
    uint64_t version;
    double duration_s;
    uint32_t fp_version;
    uint32_t postings;
    uint32_t meta_len;
    uint16_t id_len;
    uint16_t tenant_len;
} track_hdr;

static int track_parse(const MDB_val *v, track_hdr *h)
{
    if (v->mv_size < sizeof *h)
        return MDB_CORRUPTED;
    memcpy(h, v->mv_data, sizeof *h);
    if (v->mv_size != sizeof *h + h->id_len + h->tenant_len + (size_t)h->meta_len ||
        h->id_len > SH_SHARD_ID_MAX || h->tenant_len > SH_SHARD_TENANT_MAX ||
        h->meta_len > SH_SHARD_META_MAX)
        return MDB_CORRUPTED;
    return 0;
}

static int track_get_hdr(const sh_shard *s, MDB_txn *txn, uint32_t track, track_hdr *h)
{
    MDB_val k = mval(&track, 4), v;
    int rc = mdb_get(txn, s->tracks, &k, &v);
    return rc ? rc : track_parse(&v, h);
}

/* ---- batch
 * ------------------------------------------------------------------------------------------ */

typedef enum { OP_PUT, OP_DELETE, OP_CURSOR } op_kind;

typedef struct batch_op {
    op_kind kind;
    char *id; /* or cursor key */
    char *tenant;
    char *meta; /* or cursor value */
    size_t meta_len;
    uint64_t version;
    int fp_version;
    double duration_s;
    size_t first, n; /* postings in batch->h */
} batch_op;

struct sh_shard_batch {
    sh_shard *s;
    batch_op *ops;
    size_t nops, capops;
    sh_hash *h;
    size_t nh, caph, maxh;
};

int sh_shard_batch_begin(sh_shard *s, size_t max_postings, sh_shard_batch **out, sh_err *e)
{
    if (!s || !out)
        return sh_err_set(e, SH_EINVAL, "shard batch: NULL argument");
    if (s->read_only)
        return sh_err_set(e, SH_EINVAL, "%s: shard opened read-only", s->dir);
    sh_shard_batch *b = calloc(1, sizeof *b);
    if (!b)
        return sh_err_set(e, SH_ENOMEM, "shard batch: out of memory");
    b->s = s;
    b->maxh = max_postings ? max_postings : SH_BATCH_POSTINGS_DEFAULT;
    *out = b;
    return 0;
}

void sh_shard_batch_abort(sh_shard_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nops; i++) {
        free(b->ops[i].id);
        free(b->ops[i].tenant);
        free(b->ops[i].meta);
    }
    free(b->ops);
    free(b->h);
    free(b);
}

static batch_op *op_push(sh_shard_batch *b)
{
    if (b->nops == b->capops) {
        size_t cap = b->capops ? b->capops * 2 : 16;
        batch_op *v = realloc(b->ops, cap * sizeof *v);
        if (!v)
            return NULL;
        b->ops = v;
        b->capops = cap;
    }
    batch_op *op = &b->ops[b->nops];
    *op = (batch_op){0};
    return op;
}

static bool valid_id(const char *id)
{
    size_t n = id ? strnlen(id, SH_SHARD_ID_MAX + 1) : 0;
    return n >= 1 && n <= SH_SHARD_ID_MAX;
}

static int dup_str(const char *src, size_t max, char **dst)
{
    if (!src)
        return 0;
    size_t n = strnlen(src, max + 1);
    if (n > max)
        return SH_EINVAL;
    *dst = strndup(src, n);
    return *dst ? 0 : SH_ENOMEM;
}

static int reserve_postings(sh_shard_batch *b, size_t n, sh_err *e)
{
    if (n > b->maxh - b->nh)
        return sh_err_set(e, SH_ETOOBIG, "shard batch: over %zu postings; commit first", b->maxh);
    if (b->nh + n <= b->caph)
        return 0;
    size_t cap = b->caph ? b->caph : 4096;
    while (cap < b->nh + n)
        cap *= 2;
    sh_hash *v = realloc(b->h, cap * sizeof *v);
    if (!v)
        return sh_err_set(e, SH_ENOMEM, "shard batch: out of memory for postings");
    b->h = v;
    b->caph = cap;
    return 0;
}

int sh_shard_batch_put(sh_shard_batch *b, const sh_shard_track *t, const sh_hash *h, size_t n,
                       sh_err *e)
{
    if (!b || !t || (!h && n))
        return sh_err_set(e, SH_EINVAL, "shard put: NULL argument");
    if (!valid_id(t->id))
        return sh_err_set(e, SH_EINVAL, "shard put: track id must be 1..%d bytes", SH_SHARD_ID_MAX);
    if (t->fp_version && t->fp_version != b->s->fp_version)
        return sh_err_set(e, SH_EINVAL, "shard put: track %s has fp_version %d, shard holds %d",
                          t->id, t->fp_version, b->s->fp_version);
    if (n > UINT32_MAX)
        return sh_err_set(e, SH_ETOOBIG, "shard put: too many postings");
    int rc = reserve_postings(b, n, e);
    if (rc)
        return rc;
    batch_op *op = op_push(b);
    if (!op)
        return sh_err_set(e, SH_ENOMEM, "shard put: out of memory");
    rc = dup_str(t->id, SH_SHARD_ID_MAX, &op->id);
    if (!rc)
        rc = dup_str(t->tenant, SH_SHARD_TENANT_MAX, &op->tenant);
    if (!rc)
        rc = dup_str(t->meta_json, SH_SHARD_META_MAX, &op->meta);
    if (rc) {
        free(op->id);
        free(op->tenant);
        free(op->meta);
        return sh_err_set(e, rc, "shard put: %s",
                          rc == SH_EINVAL ? "tenant or metadata too long" : "out of memory");
    }
    op->kind = OP_PUT;
    op->meta_len = op->meta ? strlen(op->meta) : 0;
    op->version = t->version;
    op->fp_version = b->s->fp_version;
    op->duration_s = t->duration_s > 0 ? t->duration_s : 0;
    op->first = b->nh;
    op->n = n;
    if (n)
        memcpy(b->h + b->nh, h, n * sizeof *h);
    b->nh += n;
    b->nops++;
    return 0;
}

int sh_shard_batch_delete(sh_shard_batch *b, const char *id, uint64_t version, sh_err *e)
{
    if (!b || !valid_id(id))
        return sh_err_set(e, SH_EINVAL, "shard delete: track id must be 1..%d bytes",
                          SH_SHARD_ID_MAX);
    batch_op *op = op_push(b);
    if (!op || dup_str(id, SH_SHARD_ID_MAX, &op->id))
        return sh_err_set(e, SH_ENOMEM, "shard delete: out of memory");
    op->kind = OP_DELETE;
    op->version = version;
    b->nops++;
    return 0;
}

int sh_shard_batch_set_cursor(sh_shard_batch *b, const char *key, const void *val, size_t len,
                              sh_err *e)
{
    size_t kl = key ? strnlen(key, SH_SHARD_CURSOR_KEY_MAX + 1) : 0;
    if (!b || !kl || kl > SH_SHARD_CURSOR_KEY_MAX || (!val && len) || len > SH_SHARD_CURSOR_VAL_MAX)
        return sh_err_set(e, SH_EINVAL, "shard cursor: key 1..%d bytes, value ≤ %d bytes",
                          SH_SHARD_CURSOR_KEY_MAX, SH_SHARD_CURSOR_VAL_MAX);
    batch_op *op = op_push(b);
    if (!op || dup_str(key, SH_SHARD_CURSOR_KEY_MAX, &op->id) || !(op->meta = malloc(len + 1))) {
        if (op)
            free(op->id);
        return sh_err_set(e, SH_ENOMEM, "shard cursor: out of memory");
    }
    if (len)
        memcpy(op->meta, val, len);
    op->meta_len = len;
    op->kind = OP_CURSOR;
    b->nops++;
    return 0;
}

/* ---- applying a batch: one transaction --------------------------------------------------------
 */

/* State of one attempt at applying a batch (rebuilt from scratch when the map had to grow). */
typedef struct apply_ctx {
    sh_shard *s;
    MDB_txn *txn;
    shard_counters c;
    dead_set dead;
    uint32_t first_new; /* track numbers ≥ this were created by this batch */
    uint8_t *cancelled; /* per new track: replaced/deleted again within the batch */
    uint32_t *new_op;   /* per new track: index of its put op */
    size_t nnew, capnew;
    sh_posting *pend; /* new postings, sorted by (hash, track, t) */
    size_t npend;
    /* scratch for range rewrites */
    sh_posting *work;
    uint32_t *hscratch;
    uint8_t *blob, *pad;
    size_t capwork, capblob;
    sh_shard_commit_stats st;
    sh_err *e;
} apply_ctx;

static void apply_ctx_free(apply_ctx *a)
{
    free(a->dead.v);
    free(a->cancelled);
    free(a->new_op);
    free(a->pend);
    free(a->work);
    free(a->hscratch);
    free(a->blob);
    free(a->pad);
}

/* Logically removes a live track: its postings become dead (or are dropped before being written
 * when the track was created in this very batch). */
static int kill_track(apply_ctx *a, uint32_t track)
{
    track_hdr h;
    int rc = track_get_hdr(a->s, a->txn, track, &h);
    if (rc)
        return rc;
    MDB_val k = mval(&track, 4);
    if ((rc = mdb_del(a->txn, a->s->tracks, &k, NULL)))
        return rc;
    a->c.postings -= h.postings;
    uint64_t ms = (uint64_t)(h.duration_s * 1000.0 + 0.5);
    a->c.audio_ms = a->c.audio_ms > ms ? a->c.audio_ms - ms : 0;
    if (track >= a->first_new) {
        a->cancelled[track - a->first_new] = 1;
        return 0;
    }
    if (!h.postings)
        return 0;
    a->c.dead_postings += h.postings;
    dead_ent *d = dead_find(&a->dead, track);
    if (d) { /* cannot normally happen: a track dies once */
        d->left += h.postings;
        d->dirty = true;
        return 0;
    }
    return dead_add(&a->dead, track, h.postings);
}

static int track_write(apply_ctx *a, uint32_t track, const batch_op *op, uint64_t version)
{
    size_t il = strlen(op->id), tl = op->tenant ? strlen(op->tenant) : 0;
    track_hdr h = {.version = version,
                   .duration_s = op->duration_s,
                   .fp_version = (uint32_t)op->fp_version,
                   .postings = (uint32_t)op->n,
                   .meta_len = (uint32_t)op->meta_len,
                   .id_len = (uint16_t)il,
                   .tenant_len = (uint16_t)tl};
    MDB_val k = mval(&track, 4), v = {.mv_size = sizeof h + il + tl + op->meta_len};
    int rc = mdb_put(a->txn, a->s->tracks, &k, &v, MDB_RESERVE);
    if (rc)
        return rc;
    uint8_t *p = v.mv_data;
    memcpy(p, &h, sizeof h);
    memcpy(p + sizeof h, op->id, il);
    if (tl)
        memcpy(p + sizeof h + il, op->tenant, tl);
    if (op->meta_len)
        memcpy(p + sizeof h + il + tl, op->meta, op->meta_len);
    return 0;
}

static int new_track_push(apply_ctx *a, uint32_t op_index)
{
    if (a->nnew == a->capnew) {
        size_t cap = a->capnew ? a->capnew * 2 : 64;
        uint8_t *c = realloc(a->cancelled, cap);
        if (!c)
            return ENOMEM;
        a->cancelled = c;
        uint32_t *o = realloc(a->new_op, cap * sizeof *o);
        if (!o)
            return ENOMEM;
        a->new_op = o;
        a->capnew = cap;
    }
    a->cancelled[a->nnew] = 0;
    a->new_op[a->nnew++] = op_index;
    return 0;
}

static int apply_put(apply_ctx *a, const sh_shard_batch *b, size_t i)
{
    const batch_op *op = &b->ops[i];
    id_rec cur = {0};
    int rc = id_get(a->s, a->txn, op->id, &cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    bool exists = rc == 0;
    uint64_t version = op->version;
    if (version == SH_SHARD_VERSION_NEXT)
        version = exists ? cur.version + 1 : 1;
    if (exists && cur.version >= version) {
        a->st.stale++;
        return 0;
    }
    if (exists && cur.track && (rc = kill_track(a, cur.track)))
        return rc;
    if (a->c.next_track == UINT32_MAX)
        return MDB_MAP_FULL; /* 4 billion tracks: never in practice */
    uint32_t track = a->c.next_track++;
    if ((rc = new_track_push(a, (uint32_t)i)))
        return rc;
    rc = track_write(a, track, op, version);
    if (!rc)
        rc = id_put(a->s, a->txn, op->id, &(id_rec){.track = track, .version = version});
    if (rc)
        return rc;
    a->c.postings += op->n;
    a->c.audio_ms += (uint64_t)(op->duration_s * 1000.0 + 0.5);
    a->st.upserts++;
    return 0;
}

static int apply_delete(apply_ctx *a, const batch_op *op)
{
    id_rec cur = {0};
    int rc = id_get(a->s, a->txn, op->id, &cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (rc == MDB_NOTFOUND) {
        a->st.not_found++;
        uint64_t v = op->version == SH_SHARD_VERSION_NEXT ? 1 : op->version;
        return id_put(a->s, a->txn, op->id, &(id_rec){.track = 0, .version = v});
    }
    uint64_t version = op->version == SH_SHARD_VERSION_NEXT ? cur.version + 1 : op->version;
    if (!cur.track || version < cur.version) {
        a->st.stale++;
        return 0;
    }
    if ((rc = kill_track(a, cur.track)))
        return rc;
    a->st.deletes++;
    return id_put(a->s, a->txn, op->id, &(id_rec){.track = 0, .version = version});
}

static int apply_cursor(apply_ctx *a, const batch_op *op)
{
    MDB_val k = mval(op->id, strlen(op->id)), v = mval(op->meta, op->meta_len);
    return mdb_put(a->txn, a->s->cursor, &k, &v, 0);
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

/* Gathers the postings of surviving new tracks, sorted by (hash, track, t). */
static int gather_pending(apply_ctx *a, const sh_shard_batch *b)
{
    size_t total = 0;
    for (size_t i = 0; i < a->nnew; i++)
        total += a->cancelled[i] ? 0 : b->ops[a->new_op[i]].n;
    a->pend = malloc((total ? total : 1) * sizeof *a->pend);
    if (!a->pend)
        return ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < a->nnew; i++) {
        if (a->cancelled[i])
            continue;
        const batch_op *op = &b->ops[a->new_op[i]];
        for (size_t j = 0; j < op->n; j++)
            a->pend[k++] = (sh_posting){.hash = b->h[op->first + j].hash,
                                        .track = a->first_new + (uint32_t)i,
                                        .t = b->h[op->first + j].t};
    }
    qsort(a->pend, total, sizeof *a->pend, cmp_posting);
    a->npend = total;
    return 0;
}

static int ensure_work(apply_ctx *a, size_t n)
{
    if (n <= a->capwork)
        return 0;
    size_t cap = a->capwork ? a->capwork : 1024;
    while (cap < n)
        cap *= 2;
    sh_posting *w = realloc(a->work, cap * sizeof *w);
    if (!w)
        return ENOMEM;
    a->work = w;
    uint32_t *h = realloc(a->hscratch, cap * sizeof *h);
    if (!h)
        return ENOMEM;
    a->hscratch = h;
    a->capwork = cap;
    return 0;
}

static int ensure_blob(apply_ctx *a, size_t n)
{
    if (n <= a->capblob)
        return 0;
    size_t cap = a->capblob ? a->capblob : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *b = realloc(a->blob, cap), *p;
    if (!b)
        return ENOMEM;
    a->blob = b;
    if (!(p = realloc(a->pad, cap + 8)))
        return ENOMEM;
    a->pad = p;
    a->capblob = cap;
    return 0;
}

/* Decodes a stored range into a->work[*n ...], dropping postings of dead tracks (and counting
 * them off the dead set). Sets *dropped. */
static int load_range(apply_ctx *a, uint32_t key, const MDB_val *v, size_t *n, size_t *dropped)
{
    int rc = ensure_blob(a, v->mv_size);
    if (rc)
        return rc;
    sh_range r;
    if (sh_range_open(v->mv_data, v->mv_size, key, a->pad, &r))
        return sh_err_set(a->e, SH_EFORMAT, "%s: corrupted range blob at key %u", a->s->dir, key);
    if ((rc = ensure_work(a, *n + r.n)))
        return rc;
    if (sh_range_decode(&r, key, a->hscratch, a->work + *n))
        return sh_err_set(a->e, SH_EFORMAT, "%s: corrupted range blob at key %u", a->s->dir, key);
    size_t keep = *n;
    *dropped = 0;
    for (size_t i = 0; i < r.n; i++) {
        sh_posting p = a->work[*n + i];
        dead_ent *d = a->dead.n ? dead_find(&a->dead, p.track) : NULL;
        if (d && d->left) {
            d->left--;
            d->dirty = true;
            a->c.dead_postings--;
            (*dropped)++;
            continue;
        }
        a->work[keep++] = p;
    }
    *n = keep;
    return 0;
}

static int put_range(apply_ctx *a, uint32_t key, size_t len, bool append)
{
    MDB_val k = mval(&key, 4), v = mval(a->blob, len);
    a->st.ranges_written++;
    return mdb_put(a->txn, a->s->post, &k, &v, append ? MDB_APPEND : 0);
}

/* Writes sorted postings p[0..n) as ranges ending at `key`: one blob when it fits, else pieces
 * of ~SH_RANGE_BLOB_TARGET bytes cut between distinct hashes (recursively, until each fits or
 * holds a single hash). `append` when every key written is past the last existing key (bulk
 * loads: LMDB then fills pages completely). */
static int write_ranges(apply_ctx *a, uint32_t key, const sh_posting *p, size_t n, bool append)
{
    bool one_hash = p[0].hash == p[n - 1].hash;
    if (one_hash && n > SH_RANGE_MAX_POSTINGS)
        return sh_err_set(a->e, SH_ETOOBIG, "%s: one hash has over %u postings", a->s->dir,
                          SH_RANGE_MAX_POSTINGS);
    size_t len = SIZE_MAX;
    if (n <= SH_RANGE_MAX_POSTINGS) {
        int rc = ensure_blob(a, sh_range_bound(n));
        if (rc)
            return rc;
        len = sh_range_encode(p, n, a->blob);
        if (len <= SH_RANGE_BLOB_MAX || one_hash)
            return put_range(a, key, len, append);
    }
    size_t per = len == SIZE_MAX ? SH_RANGE_MAX_POSTINGS / 2 : n * SH_RANGE_BLOB_TARGET / len + 1;
    if (per >= n)
        per = n / 2;
    size_t start = 0;
    while (start < n) {
        size_t end = start + per < n ? start + per : n;
        while (end < n && p[end].hash == p[end - 1].hash)
            end++;
        if (start == 0 && end == n) { /* the cut ran to the end: cut before the last hash run */
            end = n - 1;
            while (end > 0 && p[end - 1].hash == p[n - 1].hash)
                end--;
        }
        uint32_t piece_key = end == n ? key : p[end - 1].hash;
        int rc = write_ranges(a, piece_key, p + start, end - start, append);
        if (rc)
            return rc;
        start = end;
    }
    return 0;
}

/* Merges new postings pend[i..j) (all ≤ key) into the range at `key` (v may be NULL: none). */
static int merge_range(apply_ctx *a, uint32_t key, const MDB_val *v, size_t i, size_t j,
                       bool append)
{
    size_t n = 0, dropped = 0;
    int rc = v ? load_range(a, key, v, &n, &dropped) : 0;
    if (rc)
        return rc;
    if ((rc = ensure_work(a, n + (j - i))))
        return rc;
    memcpy(a->work + n, a->pend + i, (j - i) * sizeof *a->pend);
    n += j - i;
    if (v && j > i)
        qsort(a->work, n, sizeof *a->work, cmp_posting); /* two sorted runs: cheap */
    if (!n) {
        MDB_val k = mval(&key, 4);
        return mdb_del(a->txn, a->s->post, &k, NULL);
    }
    return write_ranges(a, key, a->work, n, append);
}

/* The sweep: every new posting goes into the range whose key is the first ≥ its hash. */
static int merge_pending(apply_ctx *a)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(a->txn, a->s->post, &c);
    if (rc)
        return rc;
    size_t i = 0;
    while (i < a->npend && !rc) {
        uint32_t h = a->pend[i].hash, key = UINT32_MAX;
        MDB_val k = mval(&h, 4), v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        bool found = rc == 0;
        if (rc && rc != MDB_NOTFOUND)
            break;
        rc = 0;
        if (found) {
            if (k.mv_size != 4) {
                rc = MDB_CORRUPTED;
                break;
            }
            memcpy(&key, k.mv_data, 4);
        }
        size_t j = i;
        while (j < a->npend && a->pend[j].hash <= key)
            j++;
        /* `v` points into the map and stays valid until we write: load_range copies first. */
        rc = merge_range(a, key, found ? &v : NULL, i, j, !found);
        i = j;
    }
    mdb_cursor_close(c);
    return rc;
}

/* Rewrites up to `budget` ranges from the vacuum position, dropping dead postings. Returns with
 * a->c.vacuum_pos advanced (wrapping to 0 at the end). budget 0 = the whole index. */
static int vacuum_ranges(apply_ctx *a, size_t budget)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(a->txn, a->s->post, &c);
    if (rc)
        return rc;
    uint32_t pos = a->c.vacuum_pos;
    MDB_val k = mval(&pos, 4), v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    size_t visited = 0;
    while (!rc && a->c.dead_postings && (!budget || visited < budget)) {
        uint32_t key;
        if (k.mv_size != 4) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(&key, k.mv_data, 4);
        size_t n = 0, dropped = 0;
        if ((rc = load_range(a, key, &v, &n, &dropped)))
            break;
        if (dropped) {
            /* Only shrinks, so a single blob; `key` is a copy: k points into the map. */
            MDB_val kk = mval(&key, 4);
            if (n) {
                rc = ensure_blob(a, sh_range_bound(n));
                size_t len = rc ? 0 : sh_range_encode(a->work, n, a->blob);
                MDB_val nv = mval(a->blob, len);
                if (!rc)
                    rc = mdb_put(a->txn, a->s->post, &kk, &nv, 0);
            } else {
                rc = mdb_del(a->txn, a->s->post, &kk, NULL);
            }
            if (rc)
                break;
            a->st.ranges_written++;
        }
        visited++;
        if (key == UINT32_MAX) {
            rc = MDB_NOTFOUND;
            break;
        }
        pos = key + 1;
        /* Re-seek rather than MDB_NEXT: a delete leaves the cursor on the following item. */
        k = mval(&pos, 4);
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    a->c.vacuum_pos = rc == MDB_NOTFOUND ? 0 : pos;
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int apply_ops(apply_ctx *a, sh_shard_batch *b)
{
    int rc = counters_load(a->s, a->txn, &a->c);
    if (!rc)
        rc = dead_load(a->s, a->txn, &a->dead);
    a->first_new = a->c.next_track;
    for (size_t i = 0; i < b->nops && !rc; i++) {
        switch (b->ops[i].kind) {
        case OP_PUT:
            rc = apply_put(a, b, i);
            break;
        case OP_DELETE:
            rc = apply_delete(a, &b->ops[i]);
            break;
        case OP_CURSOR:
            rc = apply_cursor(a, &b->ops[i]);
            break;
        }
    }
    if (!rc)
        rc = gather_pending(a, b);
    if (!rc)
        rc = merge_pending(a);
    a->st.postings_added = a->npend;
    if (!rc && a->c.dead_postings) {
        size_t budget = a->st.ranges_written > SH_VACUUM_RANGES_MIN ? a->st.ranges_written
                                                                    : SH_VACUUM_RANGES_MIN;
        rc = vacuum_ranges(a, budget);
    }
    if (!rc)
        rc = dead_store(a->s, a->txn, &a->dead);
    if (!rc)
        rc = counters_store(a->s, a->txn, &a->c);
    return rc;
}

/* Doubles the map (no transaction of this handle is active: readers are excluded by the lock). */
static int grow_map(sh_shard *s, sh_err *e)
{
    if (s->map_size >= s->map_max)
        return sh_err_set(e, SH_ETOOBIG, "%s: shard reached its map size limit (%zu bytes)", s->dir,
                          s->map_max);
    size_t want = s->map_size * 2 < s->map_max ? s->map_size * 2 : s->map_max;
    pthread_rwlock_wrlock(&s->map_lock);
    int rc = mdb_env_set_mapsize(s->env, want);
    pthread_rwlock_unlock(&s->map_lock);
    if (rc)
        return lmdb_err(e, rc, "growing shard map");
    s->map_size = want;
    SH_INFO("shard_map_grown", "bytes=%zu", want);
    return 0;
}

/* Runs `body` in one write transaction and commits it, holding the handle's write lock. Retries
 * with a doubled map when the map is full and with the current size when another process grew it
 * (MDB_MAP_RESIZED). Errors of our own (negative SH_E* codes) keep the body's message; LMDB codes
 * are translated with `what`. `resizes` (may be NULL) counts the growths. */
static int write_txn(sh_shard *s, const char *what, int (*body)(apply_ctx *a, void *arg), void *arg,
                     sh_shard_commit_stats *st, size_t *resizes, sh_err *e)
{
    pthread_mutex_lock(&s->write_lock);
    int rc = 0;
    for (int attempt = 0; attempt < SH_RETRIES_MAX; attempt++) {
        sh_err local = {0};
        apply_ctx a = {.s = s, .e = &local};
        rc = mdb_txn_begin(s->env, NULL, 0, &a.txn);
        if (rc == MDB_MAP_RESIZED) {
            pthread_rwlock_wrlock(&s->map_lock);
            mdb_env_set_mapsize(s->env, 0);
            pthread_rwlock_unlock(&s->map_lock);
            MDB_envinfo info;
            if (!mdb_env_info(s->env, &info))
                s->map_size = info.me_mapsize;
            continue;
        }
        if (!rc) {
            rc = body(&a, arg);
            rc = rc ? (mdb_txn_abort(a.txn), rc) : mdb_txn_commit(a.txn);
        }
        if (st)
            *st = a.st;
        apply_ctx_free(&a);
        if (rc == MDB_MAP_FULL) {
            if (resizes)
                (*resizes)++;
            if ((rc = grow_map(s, e)))
                break;
            continue;
        }
        if (rc < 0 && rc >= SH_EINTERNAL) /* our own code, message in `local` */
            sh_err_set(e, rc, "%s", local.msg);
        else if (rc)
            rc = lmdb_err(e, rc, what);
        break;
    }
    if (rc == MDB_MAP_RESIZED || rc == MDB_MAP_FULL)
        rc = sh_err_set(e, SH_ELMDB, "%s: %s: map keeps being resized", s->dir, what);
    pthread_mutex_unlock(&s->write_lock);
    return rc;
}

static int commit_body(apply_ctx *a, void *batch)
{
    return apply_ops(a, batch);
}

int sh_shard_batch_commit(sh_shard_batch *b, sh_shard_commit_stats *st, sh_err *e)
{
    if (!b)
        return sh_err_set(e, SH_EINVAL, "shard commit: NULL batch");
    sh_shard_commit_stats got = {0};
    size_t resizes = 0;
    int rc = write_txn(b->s, "applying batch", commit_body, b, &got, &resizes, e);
    if (!rc && st) {
        *st = got;
        st->resizes = resizes;
    }
    sh_shard_batch_abort(b);
    return rc;
}

static int vacuum_body(apply_ctx *a, void *unused)
{
    (void)unused;
    int rc = counters_load(a->s, a->txn, &a->c);
    if (!rc)
        rc = dead_load(a->s, a->txn, &a->dead);
    a->c.vacuum_pos = 0;
    if (!rc && a->c.dead_postings)
        rc = vacuum_ranges(a, 0);
    if (!rc)
        rc = dead_store(a->s, a->txn, &a->dead);
    return rc ? rc : counters_store(a->s, a->txn, &a->c);
}

int sh_shard_vacuum(sh_shard *s, sh_err *e)
{
    if (!s || s->read_only)
        return sh_err_set(e, SH_EINVAL, "shard vacuum: shard not writable");
    return write_txn(s, "vacuum", vacuum_body, NULL, NULL, NULL, e);
}

/* Reads every range (dropping dead postings), empties the table and rewrites it in key order with
 * MDB_APPEND, which fills pages completely. */
static int compact_body(apply_ctx *a, void *unused)
{
    (void)unused;
    int rc = counters_load(a->s, a->txn, &a->c);
    if (!rc)
        rc = dead_load(a->s, a->txn, &a->dead);
    MDB_cursor *c;
    if (rc || (rc = mdb_cursor_open(a->txn, a->s->post, &c)))
        return rc;
    size_t n = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint32_t key;
        size_t dropped;
        if (k.mv_size != 4) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(&key, k.mv_data, 4);
        if (a->c.postings + a->c.dead_postings > SH_COMPACT_POSTINGS_MAX) {
            rc = sh_err_set(a->e, SH_ETOOBIG, "%s: too large to compact in memory", a->s->dir);
            break;
        }
        if ((rc = load_range(a, key, &v, &n, &dropped)))
            break;
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = mdb_drop(a->txn, a->s->post, 0)))
        return rc;
    if (n && (rc = write_ranges(a, UINT32_MAX, a->work, n, true)))
        return rc;
    a->c.vacuum_pos = 0;
    rc = dead_store(a->s, a->txn, &a->dead);
    return rc ? rc : counters_store(a->s, a->txn, &a->c);
}

int sh_shard_compact(sh_shard *s, sh_err *e)
{
    if (!s || s->read_only)
        return sh_err_set(e, SH_EINVAL, "shard compact: shard not writable");
    return write_txn(s, "compact", compact_body, NULL, NULL, NULL, e);
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
        return lmdb_err(e, rc, "reading cursor");
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
    int rc = read_begin(s, &txn, e);
    if (rc)
        return rc;
    rc = cursor_get_txn(s, txn, key, buf, cap, len, e);
    read_end(s, txn);
    return rc;
}

static int cmp_hash_only(const void *x, const void *y)
{
    const sh_hash *p = x, *q = y;
    if (p->hash != q->hash)
        return p->hash < q->hash ? -1 : 1;
    return p->t < q->t ? -1 : p->t > q->t;
}

typedef struct lookup_ctx {
    sh_shard *s;
    sh_matcher *m;
    const sh_hash *q; /* sorted by hash */
    size_t nq;
    const uint32_t *dead; /* sorted dead track numbers */
    size_t ndead;
    uint8_t *pad;
    uint32_t *hashes;
    size_t cappad, caphash;
    size_t votes;
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

/* Votes the postings of one range for the query hashes q[i..j) (all ≤ key): a merge walk of two
 * sorted lists. */
static int vote_range(lookup_ctx *l, uint32_t key, const MDB_val *v, size_t i, size_t j, sh_err *e)
{
    if (v->mv_size + 8 > l->cappad) {
        size_t cap = v->mv_size + 8 > 8192 ? v->mv_size + 8 : 8192;
        uint8_t *p = realloc(l->pad, cap);
        if (!p)
            return sh_err_set(e, SH_ENOMEM, "lookup: out of memory");
        l->pad = p;
        l->cappad = cap;
    }
    sh_range r;
    if (sh_range_open(v->mv_data, v->mv_size, key, l->pad, &r))
        return sh_err_set(e, SH_EFORMAT, "%s: corrupted range blob at key %u", l->s->dir, key);
    if (r.n > l->caphash) {
        uint32_t *h = realloc(l->hashes, r.n * sizeof *h);
        if (!h)
            return sh_err_set(e, SH_ENOMEM, "lookup: out of memory");
        l->hashes = h;
        l->caphash = r.n;
    }
    if (sh_range_hashes(&r, key, l->hashes))
        return sh_err_set(e, SH_EFORMAT, "%s: corrupted range blob at key %u", l->s->dir, key);
    size_t p = 0;
    for (size_t qi = i; qi < j; qi++) {
        uint32_t h = l->q[qi].hash;
        while (p < r.n && l->hashes[p] < h)
            p++;
        for (size_t x = p; x < r.n && l->hashes[x] == h; x++) {
            uint32_t track = sh_range_track(&r, x);
            if (l->ndead && is_dead(l, track))
                continue;
            sh_matcher_vote(l->m, track, sh_range_t(&r, x), l->q[qi].t);
            l->votes++;
        }
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

static int lookup_sweep(lookup_ctx *l, MDB_txn *txn, sh_err *e)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, l->s->post, &c);
    if (rc)
        return lmdb_err(e, rc, "lookup");
    size_t i = 0;
    while (i < l->nq) {
        uint32_t h = l->q[i].hash, key;
        MDB_val k = mval(&h, 4), v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (!rc && k.mv_size != 4)
            rc = MDB_CORRUPTED;
        if (rc) {
            rc = lmdb_err(e, rc, "lookup");
            break;
        }
        memcpy(&key, k.mv_data, 4);
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

int sh_shard_lookup(sh_shard *s, const sh_hash *q, size_t n, sh_matcher *m, size_t *postings,
                    sh_err *e)
{
    if (!s || (!q && n) || !m)
        return sh_err_set(e, SH_EINVAL, "lookup: NULL argument");
    if (postings)
        *postings = 0;
    sh_hash *sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted)
        return sh_err_set(e, SH_ENOMEM, "lookup: out of memory");
    if (n)
        memcpy(sorted, q, n * sizeof *q);
    qsort(sorted, n, sizeof *sorted, cmp_hash_only);
    lookup_ctx l = {.s = s, .m = m, .q = sorted, .nq = n};
    MDB_txn *txn;
    uint32_t *dead = NULL;
    int rc = read_begin(s, &txn, e);
    if (!rc) {
        int lr = load_dead_tracks(&l, txn, &dead);
        rc = lr ? lmdb_err(e, lr, "lookup") : lookup_sweep(&l, txn, e);
        read_end(s, txn);
    }
    if (postings)
        *postings = l.votes;
    free(dead);
    free(l.pad);
    free(l.hashes);
    free(sorted);
    return rc;
}

/* Fills `out` from a tracks record, copying strings into buf. */
static int info_fill(uint32_t track, const MDB_val *v, sh_shard_info *out, char *buf, size_t cap,
                     sh_err *e)
{
    track_hdr h;
    if (track_parse(v, &h))
        return sh_err_set(e, SH_EFORMAT, "track %u: corrupted record", track);
    size_t need = (size_t)h.id_len + h.tenant_len + h.meta_len + 3;
    if (!buf || cap < need)
        return sh_err_set(e, SH_ETOOBIG, "track %u: info needs %zu bytes", track, need);
    const char *p = (const char *)v->mv_data + sizeof h;
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
        return lmdb_err(e, rc, "reading track");
    return info_fill(track, &v, out, buf, cap, e);
}

int sh_shard_info_by_track(sh_shard *s, uint32_t track, sh_shard_info *out, char *buf, size_t cap,
                           sh_err *e)
{
    if (!s || !out)
        return sh_err_set(e, SH_EINVAL, "track info: NULL argument");
    MDB_txn *txn;
    int rc = read_begin(s, &txn, e);
    if (rc)
        return rc;
    rc = info_txn(s, txn, track, out, buf, cap, e);
    read_end(s, txn);
    return rc;
}

int sh_shard_info_by_id(sh_shard *s, const char *id, sh_shard_info *out, char *buf, size_t cap,
                        sh_err *e)
{
    if (!s || !out || !valid_id(id))
        return sh_err_set(e, SH_EINVAL, "track info: bad id");
    MDB_txn *txn;
    int rc = read_begin(s, &txn, e);
    if (rc)
        return rc;
    id_rec r;
    int g = id_get(s, txn, id, &r);
    if (g == MDB_NOTFOUND || (!g && !r.track))
        rc = sh_err_set(e, SH_ENOTFOUND, "track '%.256s' not in the shard", id);
    else if (g)
        rc = lmdb_err(e, g, "reading track id");
    else
        rc = info_txn(s, txn, r.track, out, buf, cap, e);
    read_end(s, txn);
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
    int rc = read_begin(s, &txn, e);
    if (rc)
        return rc;
    shard_counters c;
    MDB_stat ts, ps;
    MDB_envinfo info;
    uint64_t freep = 0;
    int lr = counters_load(s, txn, &c);
    if (!lr)
        lr = mdb_stat(txn, s->tracks, &ts);
    if (!lr)
        lr = mdb_stat(txn, s->post, &ps);
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
        out->ranges = ps.ms_entries;
        out->audio_s = (double)c.audio_ms / 1000.0;
        uint64_t pages = (uint64_t)info.me_last_pgno + 1;
        out->used_bytes = (pages > freep ? pages - freep : 0) * es.ms_psize;
    }
    read_end(s, txn);
    if (lr)
        return lmdb_err(e, lr, "stats");
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", s->dir);
    if (stat(path, &st) == 0)
        out->file_bytes = (uint64_t)st.st_size;
    out->bytes_per_posting = out->postings ? (double)out->file_bytes / (double)out->postings : 0;
    return 0;
}

int sh_shard_snapshot(sh_shard *s, const char *dir, sh_err *e)
{
    if (!s || !dir)
        return sh_err_set(e, SH_EINVAL, "snapshot: NULL argument");
    int rc = mdb_env_copy2(s->env, dir, MDB_CP_COMPACT);
    if (rc == ENOENT || rc == EACCES || rc == EEXIST)
        return sh_err_set(e, SH_EIO, "snapshot to %s: %s", dir, mdb_strerror(rc));
    return rc ? lmdb_err(e, rc, "snapshot") : 0;
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
