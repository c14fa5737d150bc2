/* Fuzz target: the shard's range blob decoder (sh_shard_range) on arbitrary bytes, as read from a
 * possibly corrupted data.mdb. The first 4 bytes are the range key. Accepted blobs must decode to
 * hashes ≤ key in order and re-encode losslessly; a lookup's partial decode (sh_range_seek) must
 * stay in bounds on any blob (a skip table's entries included) and, on a valid one (every skip
 * entry checked by the full decode), land where the full decode says. The blob is
 * given to the codec in a buffer of exactly its size (it is read in place). */
#include "sh_shard_range.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t key;
    memcpy(&key, data, 4);
    data += 4;
    size -= 4;
    uint8_t *pad = malloc(size + 8);
    sh_range r;
    if (!pad || sh_range_open(data, size, key, pad, &r) != 0 || r.n > (1u << 16)) {
        free(pad);
        return 0;
    }
    uint32_t *hs = malloc(r.n * sizeof *hs);
    sh_posting *p = malloc(r.n * sizeof *p);
    const int valid = hs && p && sh_range_decode(&r, key, hs, p) == 0;
    /* Seeks in steps (targets from the blob's own bytes, then past everything). */
    sh_range_cursor c;
    sh_range_cursor_init(&r, &c);
    for (size_t i = 0; i <= size / 4 && c.i < r.n; i++) {
        uint32_t target = UINT32_MAX;
        if (i < size / 4)
            memcpy(&target, data + 4 * i, 4);
        if (target < c.hash)
            continue;
        if (sh_range_seek(&r, key, &c, target) != 0) {
            if (valid)
                abort(); /* a valid blob never fails a seek */
            break;
        }
        if (c.i < r.n && (c.hash < target || c.hash > key))
            abort();
        if (valid && ((c.i < r.n && hs[c.i] != c.hash) || (c.i > 0 && hs[c.i - 1] >= target)))
            abort();
    }
    if (valid) {
        for (size_t i = 1; i < r.n; i++)
            if (p[i].hash < p[i - 1].hash || p[i].hash > key)
                abort();
        /* Re-encoding sorted postings must round-trip (columns may be unsorted: sort first). */
        uint8_t *buf = malloc(sh_range_bound(r.n));
        uint8_t *pad2 = buf ? malloc(sh_range_bound(r.n) + 8) : NULL;
        if (pad2) {
            size_t len = sh_range_encode(p, r.n, r.skip_shift, buf);
            sh_range r2;
            if (sh_range_open(buf, len, key, pad2, &r2) != 0 || r2.n != r.n ||
                sh_range_hashes(&r2, key, hs) != 0)
                abort();
            for (size_t i = 0; i < r.n; i++)
                if (hs[i] != p[i].hash || sh_range_track(&r2, i) != p[i].track ||
                    sh_range_t(&r2, i) != p[i].t)
                    abort();
        }
        free(pad2);
        free(buf);
    }
    free(p);
    free(hs);
    free(pad);
    return 0;
}
