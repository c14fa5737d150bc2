/* sh_memindex.c — postings sorted by hash plus a directory over the top 20 hash bits. */
#include "sh_memindex.h"
#include "sh_vec.h"

#include <stdlib.h>
#include <string.h>

#define DIR_BITS 20

typedef struct posting {
    uint32_t hash, track, t;
} posting;

struct sh_memindex {
    posting *p;
    size_t n, cap;
    uint32_t *dir; /* (1 << DIR_BITS) + 1 start offsets; NULL until built */
    int shift;     /* directory bucket = hash >> shift, fitted to the largest hash */
};

int sh_memindex_new(sh_memindex **out, sh_err *e)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : sh_err_set(e, SH_ENOMEM, "memindex: out of memory");
}

void sh_memindex_free(sh_memindex *mi)
{
    if (!mi)
        return;
    free(mi->p);
    free(mi->dir);
    free(mi);
}

size_t sh_memindex_postings(const sh_memindex *mi)
{
    return mi ? mi->n : 0;
}

int sh_memindex_add(sh_memindex *mi, uint32_t track, const sh_hash *h, size_t n, sh_err *e)
{
    if (!mi || (!h && n) || mi->dir)
        return sh_err_set(e, SH_EINVAL, "memindex: add after build or NULL argument");
    if (n > ((size_t)1 << 31) - mi->n)
        return sh_err_set(e, SH_EINVAL, "memindex: over 2^31 postings");
    if (sh_vec_reserve(&mi->p, &mi->cap, mi->n + n, (size_t)1 << 31))
        return sh_err_set(e, SH_ENOMEM, "memindex: out of memory");
    for (size_t i = 0; i < n; i++)
        mi->p[mi->n++] = (posting){h[i].hash, track, h[i].t};
    return 0;
}

static int by_hash(const void *a, const void *b)
{
    const posting *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    if (x->track != y->track)
        return x->track < y->track ? -1 : 1;
    return x->t < y->t ? -1 : x->t > y->t;
}

int sh_memindex_build(sh_memindex *mi, sh_err *e)
{
    if (!mi)
        return sh_err_set(e, SH_EINVAL, "memindex: NULL");
    if (mi->dir)
        return 0;
    qsort(mi->p, mi->n, sizeof *mi->p, by_hash);
    mi->dir = malloc((((size_t)1 << DIR_BITS) + 1) * sizeof *mi->dir);
    if (!mi->dir)
        return sh_err_set(e, SH_ENOMEM, "memindex: out of memory");
    const uint32_t top = mi->n ? mi->p[mi->n - 1].hash : 0;
    mi->shift = 0;
    while (mi->shift < 32 && (top >> mi->shift) >= (1u << DIR_BITS))
        mi->shift++;
    size_t j = 0;
    for (size_t b = 0; b <= ((size_t)1 << DIR_BITS); b++) {
        while (j < mi->n && (mi->p[j].hash >> mi->shift) < b)
            j++;
        mi->dir[b] = (uint32_t)j;
    }
    return 0;
}

size_t sh_memindex_query(const sh_memindex *mi, const sh_hash *q, size_t n, sh_matcher *m)
{
    if (!mi || !mi->dir || !m)
        return 0;
    size_t visited = 0;
    for (size_t i = 0; i < n; i++) {
        const uint32_t h = q[i].hash, b = h >> mi->shift;
        if (b >= (1u << DIR_BITS))
            continue; /* above the largest indexed hash */
        size_t lo = mi->dir[b], hi = mi->dir[b + 1];
        while (lo < hi) { /* lower bound of h within the bucket */
            const size_t mid = lo + (hi - lo) / 2;
            if (mi->p[mid].hash < h)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t j = lo; j < mi->dir[b + 1] && mi->p[j].hash == h; j++, visited++)
            sh_matcher_vote(m, mi->p[j].track, mi->p[j].t, q[i].t);
    }
    return visited;
}
