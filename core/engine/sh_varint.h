/* sh_varint.h — LEB128 unsigned varints (7 bits per byte, low group first), header-only.
 * Used by the posting blob (sh_fpblob) and the shard's range blobs (sh_shard). */
#ifndef SH_VARINT_H
#define SH_VARINT_H

#include <stddef.h>
#include <stdint.h>

enum { SH_VARINT_MAX = 10 }; /* bytes of the longest uint64 */

/* Writes v at p (which must have SH_VARINT_MAX bytes free); returns the bytes written. */
static inline size_t sh_varint_put(uint8_t *p, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        p[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[i++] = (uint8_t)v;
    return i;
}

/* Reads a varint from [*p, end); advances *p. Returns 0, or -1 when truncated or longer than
 * 64 bits (hostile input). */
static inline int sh_varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        if (shift == 63 && b > 1)
            return -1;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

#endif
