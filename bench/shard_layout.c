/* shard_layout — where a shard's bytes go: LMDB pages per table (leaf, branch, overflow, free),
 * how full the posting index's leaf pages are, a histogram of the range blobs' sizes and the
 * blobs' bytes by component (header, skip table, hash codes, track and time columns, padding).
 * Read-only; the shards may be in use. Used to explain the index size of `bench_scale build`
 * (README, "Recognition at scale").
 *
 * usage: shard_layout SHARD_DIR...   (each a shard directory holding data.mdb; the totals over
 *                                     all of them are printed last)
 *        shard_layout --same A B      (whether shards A and B hold the same postings, posting by
 *                                     posting in (hash, track, t) order, whatever their blobs:
 *                                     then every lookup casts the same votes in both)
 * Benchmark code: problems go to stderr and the exit status is 1.
 */
#include "sh_shard_range.h"

#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HIST_STEP = 64, HIST_N = 40, PAGE_HDR = 16, NODE_HDR = 8, PTR = 2 };

typedef struct layout {
    uint64_t pages_used, pages_free, psize;
    uint64_t post_leaf, post_branch, post_ovf, other_pages;
    uint64_t blobs, postings, blob_bytes, node_bytes;
    uint64_t hdr_bits, skip_bits, hash_bits, track_bits, t_bits, pad_bits;
    uint64_t w_track_sum, w_t_sum, k_sum;
    uint64_t hist[HIST_N + 1];
} layout;

static void add_stat(layout *l, const MDB_stat *st, int post)
{
    if (post) {
        l->post_leaf += st->ms_leaf_pages;
        l->post_branch += st->ms_branch_pages;
        l->post_ovf += st->ms_overflow_pages;
    } else {
        l->other_pages += st->ms_leaf_pages + st->ms_branch_pages + st->ms_overflow_pages;
    }
}

/* One blob: its size class and components. */
static int add_blob(layout *l, uint32_t key, const MDB_val *v)
{
    uint8_t pad[16];
    sh_range r;
    if (sh_range_open(v->mv_data, v->mv_size, key, pad, &r))
        return -1;
    const uint64_t bytes = v->mv_size, cols = r.n * (uint64_t)(r.w_track + r.w_t);
    const uint64_t stream = (uint64_t)(r.hash_bits + cols + 7) / 8;
    const uint64_t skip = r.skip ? (r.nskip * (uint64_t)(r.w_sh + r.w_so) + 7) / 8 + 3 : 0;
    l->blobs++;
    l->postings += r.n;
    l->blob_bytes += bytes;
    l->node_bytes += NODE_HDR + 4 + ((bytes + 1) & ~1ull) + PTR; /* LMDB node, even size */
    l->hdr_bits += 8 * (bytes - stream - skip);
    l->skip_bits += 8 * skip;
    l->hash_bits += r.hash_bits;
    l->track_bits += r.n * (uint64_t)r.w_track;
    l->t_bits += r.n * (uint64_t)r.w_t;
    l->pad_bits += 8 * stream - r.hash_bits - cols;
    l->w_track_sum += r.w_track;
    l->w_t_sum += r.w_t;
    l->k_sum += r.k;
    l->hist[bytes / HIST_STEP < HIST_N ? bytes / HIST_STEP : HIST_N]++;
    return 0;
}

static int scan_post(layout *l, MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi, &c);
    for (rc = rc ? rc : mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint32_t key;
        if (k.mv_size != 4)
            return -1;
        memcpy(&key, k.mv_data, 4);
        if (add_blob(l, key, &v)) {
            fprintf(stderr, "corrupt blob at key %u\n", key);
            return -1;
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Free pages: the free list's records are (txn id -> page-number list, count first). */
static int count_free(layout *l, MDB_txn *txn)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, 0, &c);
    for (rc = rc ? rc : mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        size_t n;
        memcpy(&n, v.mv_data, sizeof n);
        l->pages_free += n;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int scan_shard(const char *dir, layout *l)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi main;
    MDB_cursor *c;
    MDB_val k, v;
    MDB_stat st;
    MDB_envinfo info;
    int rc = mdb_env_create(&env);
    if (!rc)
        rc = mdb_env_set_maxdbs(env, 64);
    if (!rc)
        rc = mdb_env_open(env, dir, MDB_RDONLY, 0644);
    if (!rc)
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        fprintf(stderr, "%s: %s\n", dir, mdb_strerror(rc));
        return -1;
    }
    mdb_env_info(env, &info);
    mdb_env_stat(env, &st);
    l->psize = st.ms_psize;
    l->pages_used += info.me_last_pgno + 1;
    rc = count_free(l, txn);
    if (!rc)
        rc = mdb_dbi_open(txn, NULL, 0, &main);
    if (!rc)
        rc = mdb_cursor_open(txn, main, &c);
    if (!rc && !(rc = mdb_stat(txn, main, &st)))
        add_stat(l, &st, 0);
    /* Every named table: "post" and "post.vN" are posting indexes. */
    for (rc = rc ? rc : mdb_cursor_get(c, &k, &v, MDB_FIRST); !rc;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        char name[64];
        MDB_dbi dbi;
        if (k.mv_size >= sizeof name)
            continue;
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        if (mdb_dbi_open(txn, name, 0, &dbi) || mdb_stat(txn, dbi, &st))
            continue;
        const int post = !strncmp(name, "post", 4);
        add_stat(l, &st, post);
        if (post && scan_post(l, txn, dbi)) {
            rc = -1;
            break;
        }
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    if (rc != MDB_NOTFOUND) {
        fprintf(stderr, "%s: scan failed\n", dir);
        return -1;
    }
    return 0;
}

static void print(const char *what, const layout *l)
{
    const double mb = 1e6, ps = (double)l->psize, blobs = l->blobs ? (double)l->blobs : 1;
    const double posts = l->postings ? (double)l->postings : 1;
    printf("%s: %.1f M postings in %llu blobs (%.1f postings, %.0f B per blob)\n", what,
           l->postings / 1e6, (unsigned long long)l->blobs, posts / blobs, l->blob_bytes / blobs);
    printf("  pages in use %.1f MB (%.3f B/posting): posting leaves %.1f MB, branches %.1f MB, "
           "overflow %.1f MB, other tables %.1f MB; free pages %.1f MB\n",
           (l->pages_used - l->pages_free) * ps / mb,
           (l->pages_used - l->pages_free) * ps / posts, l->post_leaf * ps / mb,
           l->post_branch * ps / mb, l->post_ovf * ps / mb, l->other_pages * ps / mb,
           l->pages_free * ps / mb);
    printf("  posting leaf pages %.1f %% full (nodes %.1f MB in %.1f MB of page space), "
           "%.2f blobs per leaf page\n",
           l->post_leaf ? 100.0 * l->node_bytes / (l->post_leaf * (ps - PAGE_HDR)) : 0,
           l->node_bytes / mb, l->post_leaf * (ps - PAGE_HDR) / mb,
           l->post_leaf ? l->blobs / (double)l->post_leaf : 0);
    printf("  blob bytes per posting %.3f: header %.3f, skip table %.3f, hash codes %.3f, "
           "track column %.3f, time column %.3f, padding %.3f; LMDB node overhead %.3f\n",
           l->blob_bytes / posts, l->hdr_bits / 8.0 / posts, l->skip_bits / 8.0 / posts,
           l->hash_bits / 8.0 / posts, l->track_bits / 8.0 / posts, l->t_bits / 8.0 / posts,
           l->pad_bits / 8.0 / posts, (l->node_bytes - l->blob_bytes) / posts);
    printf("  mean per blob: Rice k %.2f, track width %.2f bits, time width %.2f bits\n",
           l->k_sum / blobs, l->w_track_sum / blobs, l->w_t_sum / blobs);
    printf("  blob sizes:");
    for (int i = 0; i <= HIST_N; i++)
        if (l->hist[i])
            printf(" %s%d:%.1f%%", i == HIST_N ? ">=" : "", i * HIST_STEP,
                   100.0 * l->hist[i] / blobs);
    printf("\n");
}

/* ---- --same: the postings of two shards, compared one by one ---------------------------------- */

typedef struct stream {
    MDB_env *env;
    MDB_txn *txn;
    MDB_cursor *c;
    sh_posting *p;
    uint32_t *hs;
    size_t n, at, cap;
    int started, done;
} stream;

static int stream_open(stream *s, const char *dir)
{
    MDB_dbi dbi;
    memset(s, 0, sizeof *s);
    int rc = mdb_env_create(&s->env);
    if (!rc)
        rc = mdb_env_set_maxdbs(s->env, 64);
    if (!rc)
        rc = mdb_env_open(s->env, dir, MDB_RDONLY, 0644);
    if (!rc)
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->txn);
    if (!rc)
        rc = mdb_dbi_open(s->txn, "post", 0, &dbi);
    if (!rc)
        rc = mdb_cursor_open(s->txn, dbi, &s->c);
    if (rc)
        fprintf(stderr, "%s: %s\n", dir, mdb_strerror(rc));
    return rc;
}

/* The next posting into *p; 0, 1 at the end, -1 on an error. */
static int stream_next(stream *s, sh_posting *p)
{
    while (s->at == s->n) {
        MDB_val k, v;
        uint32_t key;
        uint8_t pad[16];
        sh_range r;
        if (s->done || mdb_cursor_get(s->c, &k, &v, s->started ? MDB_NEXT : MDB_FIRST)) {
            s->done = 1;
            return 1;
        }
        s->started = 1;
        memcpy(&key, k.mv_data, 4);
        if (k.mv_size != 4 || sh_range_open(v.mv_data, v.mv_size, key, pad, &r))
            return -1;
        if (r.n > s->cap) {
            s->cap = r.n;
            s->p = realloc(s->p, r.n * sizeof *s->p);
            s->hs = realloc(s->hs, r.n * sizeof *s->hs);
            if (!s->p || !s->hs)
                return -1;
        }
        if (sh_range_decode(&r, key, s->hs, s->p))
            return -1;
        s->n = r.n;
        s->at = 0;
    }
    *p = s->p[s->at++];
    return 0;
}

static void stream_close(stream *s)
{
    mdb_cursor_close(s->c);
    mdb_txn_abort(s->txn);
    mdb_env_close(s->env);
    free(s->p);
    free(s->hs);
}

static int same(const char *a, const char *b)
{
    stream x, y;
    if (stream_open(&x, a) || stream_open(&y, b))
        return 1;
    uint64_t n = 0;
    int rx, ry;
    sh_posting p, q;
    for (;; n++) {
        rx = stream_next(&x, &p);
        ry = stream_next(&y, &q);
        if (rx || ry || p.hash != q.hash || p.track != q.track || p.t != q.t)
            break;
    }
    stream_close(&x);
    stream_close(&y);
    if (rx == 1 && ry == 1) {
        printf("same: %llu postings\n", (unsigned long long)n);
        return 0;
    }
    printf("differ at posting %llu\n", (unsigned long long)n);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--same"))
        return same(argv[2], argv[3]);
    if (argc < 2) {
        fprintf(stderr, "usage: shard_layout SHARD_DIR...\n");
        return 1;
    }
    layout all = {0};
    for (int i = 1; i < argc; i++) {
        layout l = {0};
        if (scan_shard(argv[i], &l))
            return 1;
        if (argc > 2)
            print(argv[i], &l);
        all.psize = l.psize;
        all.pages_used += l.pages_used;
        all.pages_free += l.pages_free;
        all.post_leaf += l.post_leaf;
        all.post_branch += l.post_branch;
        all.post_ovf += l.post_ovf;
        all.other_pages += l.other_pages;
        all.blobs += l.blobs;
        all.postings += l.postings;
        all.blob_bytes += l.blob_bytes;
        all.node_bytes += l.node_bytes;
        all.hdr_bits += l.hdr_bits;
        all.skip_bits += l.skip_bits;
        all.hash_bits += l.hash_bits;
        all.track_bits += l.track_bits;
        all.t_bits += l.t_bits;
        all.pad_bits += l.pad_bits;
        all.w_track_sum += l.w_track_sum;
        all.w_t_sum += l.w_t_sum;
        all.k_sum += l.k_sum;
        for (int j = 0; j <= HIST_N; j++)
            all.hist[j] += l.hist[j];
    }
    print("all", &all);
    return 0;
}
