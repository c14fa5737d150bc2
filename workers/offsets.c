/* offsets.c — per-partition in-flight offsets; the commit point follows the finished prefix. */
#include "offsets.h"

#include "sh_vec.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    int64_t offset;
    bool done;
} entry;

/* In-flight offsets of one partition as a ring buffer in arrival (= offset) order. */
typedef struct part {
    char topic[SH_OFFSETS_TOPIC_MAX + 1];
    int32_t partition;
    entry *ring;
    size_t head, count, cap;
    int64_t last_added;   /* -1: none yet */
    int64_t commit_point; /* next offset to read that may be committed; -1: none */
    int64_t committed;    /* last confirmed commit; -1: none */
} part;

struct sh_offsets {
    part *parts;
    size_t n, cap;
};

int sh_offsets_new(sh_offsets **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : SH_ENOMEM;
}

void sh_offsets_free(sh_offsets *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->parts[i].ring);
    free(t->parts);
    free(t);
}

static bool valid_key(const char *topic, int32_t partition)
{
    return topic && topic[0] && strlen(topic) <= SH_OFFSETS_TOPIC_MAX && partition >= 0;
}

static part *find(const sh_offsets *t, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->parts[i].partition == partition && strcmp(t->parts[i].topic, topic) == 0)
            return &t->parts[i];
    }
    return NULL;
}

static part *find_or_add(sh_offsets *t, const char *topic, int32_t partition)
{
    part *p = find(t, topic, partition);
    if (p)
        return p;
    if (sh_vec_reserve(&t->parts, &t->cap, t->n + 1, SH_VEC_NOCAP))
        return NULL;
    p = &t->parts[t->n++];
    memset(p, 0, sizeof *p);
    memcpy(p->topic, topic, strlen(topic) + 1);
    p->partition = partition;
    p->last_added = p->commit_point = p->committed = -1;
    return p;
}

static entry *at(const part *p, size_t i) { return &p->ring[(p->head + i) % p->cap]; }

static int ring_grow(part *p)
{
    size_t cap = p->cap ? p->cap * 2 : 64;
    entry *r = malloc(cap * sizeof *r);
    if (!r)
        return SH_ENOMEM;
    for (size_t i = 0; i < p->count; i++)
        r[i] = *at(p, i);
    free(p->ring);
    p->ring = r;
    p->cap = cap;
    p->head = 0;
    return 0;
}

int sh_offsets_add(sh_offsets *t, const char *topic, int32_t partition, int64_t offset)
{
    if (!t || !valid_key(topic, partition) || offset < 0)
        return SH_EINVAL;
    part *p = find_or_add(t, topic, partition);
    if (!p)
        return SH_ENOMEM;
    if (offset <= p->last_added || (p->committed >= 0 && offset < p->committed))
        return SH_EINVAL;
    if (p->count == p->cap && ring_grow(p))
        return SH_ENOMEM;
    *at(p, p->count) = (entry){offset, false};
    p->count++;
    p->last_added = offset;
    return 0;
}

/* Index of `offset` in the ring (binary search: the ring is sorted), or -1. */
static long ring_find(const part *p, int64_t offset)
{
    size_t lo = 0, hi = p->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t o = at(p, mid)->offset;
        if (o == offset)
            return (long)mid;
        if (o < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int sh_offsets_done(sh_offsets *t, const char *topic, int32_t partition, int64_t offset)
{
    if (!t || !valid_key(topic, partition))
        return SH_EINVAL;
    part *p = find(t, topic, partition);
    long i = p ? ring_find(p, offset) : -1;
    if (i < 0 || at(p, (size_t)i)->done)
        return SH_ENOTFOUND;
    at(p, (size_t)i)->done = true;
    /* Advance over the finished prefix. */
    while (p->count && at(p, 0)->done) {
        p->commit_point = at(p, 0)->offset + 1;
        p->head = (p->head + 1) % p->cap;
        p->count--;
    }
    return 0;
}

size_t sh_offsets_collect(const sh_offsets *t, sh_offset_commit *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; t && i < t->n && n < cap; i++) {
        const part *p = &t->parts[i];
        if (p->commit_point < 0 || p->commit_point <= p->committed)
            continue;
        memcpy(out[n].topic, p->topic, sizeof p->topic);
        out[n].partition = p->partition;
        out[n].offset = p->commit_point;
        n++;
    }
    return n;
}

int sh_offsets_committed(sh_offsets *t, const char *topic, int32_t partition, int64_t offset)
{
    if (!t || !valid_key(topic, partition))
        return SH_EINVAL;
    part *p = find(t, topic, partition);
    if (!p)
        return SH_ENOTFOUND;
    if (offset > p->committed)
        p->committed = offset;
    return 0;
}

int sh_offsets_reset(sh_offsets *t, const char *topic, int32_t partition)
{
    if (!t || !valid_key(topic, partition))
        return SH_EINVAL;
    part *p = find(t, topic, partition);
    if (!p)
        return SH_ENOTFOUND;
    free(p->ring);
    *p = t->parts[--t->n];
    return 0;
}

size_t sh_offsets_pending(const sh_offsets *t, const char *topic, int32_t partition)
{
    size_t n = 0;
    for (size_t i = 0; t && i < t->n; i++) {
        const part *p = &t->parts[i];
        if (!topic || (p->partition == partition && strcmp(p->topic, topic) == 0))
            n += p->count;
    }
    return n;
}

int64_t sh_offsets_commit_point(const sh_offsets *t, const char *topic, int32_t partition)
{
    const part *p = (t && valid_key(topic, partition)) ? find(t, topic, partition) : NULL;
    return p ? p->commit_point : -1;
}
