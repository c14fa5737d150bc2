/* Fuzz target: sh_snap_reader on arbitrary bytes as a snapshot stream. Byte 0 sets the size of
 * each read (1..256 bytes: short reads at every boundary), the rest is the stream. A stream that
 * reads to a verified end must rewrite (sh_snap_writer) into one that reads back the same. */
#include "sh_snap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct src {
    const uint8_t *p;
    size_t len, pos, step;
} src;

static long src_read(void *ctx, void *buf, size_t len)
{
    src *s = ctx;
    size_t n = s->len - s->pos;
    if (n > len)
        n = len;
    if (n > s->step)
        n = s->step;
    memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    return (long)n;
}

typedef struct sink {
    uint8_t *p;
    size_t len, cap;
} sink;

static int sink_write(void *ctx, const void *buf, size_t len)
{
    sink *s = ctx;
    if (s->len + len > s->cap) {
        size_t nc = (s->len + len) * 2;
        uint8_t *p = realloc(s->p, nc);
        if (!p)
            return SH_ENOMEM;
        s->p = p;
        s->cap = nc;
    }
    memcpy(s->p + s->len, buf, len);
    s->len += len;
    return 0;
}

static const sh_snap_caps CAPS = {
    .chunk = {.max_raw = 1 << 20, .max_ops = 1024, .max_postings = 1 << 16,
              .max_op_postings = 1 << 15},
    .max_ops = 4096,
    .max_postings = 1 << 18,
};

/* Reads a stream to its end; copies every op into w when w is set. Returns the reader's result
 * and the totals. */
static int read_all(src *s, sh_snap_writer **w, sink *out, uint64_t *ops, uint64_t *postings)
{
    sh_snap_reader *r;
    *ops = *postings = 0;
    int rc = sh_snap_reader_new(src_read, s, &CAPS, &r, NULL);
    if (rc)
        return rc;
    if (w && sh_snap_writer_new(sh_snap_reader_info(r), 0, sink_write, out, w, NULL))
        abort();
    const sh_dpay *c;
    while ((rc = sh_snap_reader_next(r, &c, NULL)) == 1) {
        *ops += sh_dpay_count(c);
        *postings += sh_dpay_postings(c);
        for (size_t i = 0; w && i < sh_dpay_count(c); i++)
            if (sh_snap_writer_add(*w, sh_dpay_op(c, i), NULL))
                abort(); /* every op a reader accepts, a writer accepts */
    }
    if (sh_snap_reader_next(r, &c, NULL) != rc || c)
        abort(); /* the end, or the error, sticks */
    if (*ops > CAPS.max_ops || *postings > CAPS.max_postings)
        abort();
    sh_snap_reader_free(r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    src s = {data + 1, size - 1, 0, (size_t)data[0] + 1};
    sh_snap_writer *w = NULL;
    sink out = {0};
    uint64_t ops, postings;
    if (read_all(&s, &w, &out, &ops, &postings) == 0) {
        if (sh_snap_writer_finish(w, NULL))
            abort();
        src again = {out.p, out.len, 0, 4096};
        uint64_t ops2, postings2;
        if (read_all(&again, NULL, NULL, &ops2, &postings2) != 0 || ops2 != ops ||
            postings2 != postings)
            abort();
    }
    sh_snap_writer_free(w);
    free(out.p);
    return 0;
}
