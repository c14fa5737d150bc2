#include "sh_shard_range.h"

#include "sh_varint.h"

#include <stdbool.h>
#include <string.h>

enum { SH_RANGE_HDR_MAX = 3 * SH_VARINT_MAX + 3 + SH_VARINT_MAX + 3 };

/* ---- bit writer (LSB first) ------------------------------------------------------------------ */

typedef struct bitw {
    uint8_t *p;
    uint64_t acc;
    unsigned nacc;
    size_t bits;
} bitw;

static void bw_put(bitw *w, uint64_t v, unsigned nbits)
{
    /* nbits ≤ 32, so acc (≤ 7 bits pending) never overflows. */
    w->acc |= v << w->nacc;
    w->nacc += nbits;
    w->bits += nbits;
    while (w->nacc >= 8) {
        *w->p++ = (uint8_t)w->acc;
        w->acc >>= 8;
        w->nacc -= 8;
    }
}

static void bw_flush(bitw *w)
{
    if (w->nacc)
        *w->p++ = (uint8_t)w->acc;
    w->acc = 0;
    w->nacc = 0;
}

static unsigned bits_for(uint32_t v)
{
    return v ? 32u - (unsigned)__builtin_clz(v) : 0;
}

/* Rice codes with an escape: a quotient ≥ SH_RICE_QESC is written as SH_RICE_QESC zeros followed
 * by the raw 32-bit delta, so one large gap cannot force a large k on the whole blob. */
enum { SH_RICE_QESC = 24, SH_RICE_MAXBITS = SH_RICE_QESC + 32 };

static uint64_t rice_cost(uint32_t d, unsigned k)
{
    uint32_t q = d >> k;
    return q < SH_RICE_QESC ? q + 1 + k : SH_RICE_MAXBITS;
}

/* Rice parameter minimising the coded size of the n-1 deltas. */
static unsigned best_k(const sh_posting *p, size_t n, uint64_t *cost)
{
    unsigned best = 0;
    uint64_t best_cost = UINT64_MAX;
    for (unsigned k = 0; k < 32; k++) {
        uint64_t c = 0;
        for (size_t i = 1; i < n; i++)
            c += rice_cost(p[i].hash - p[i - 1].hash, k);
        if (c < best_cost) {
            best_cost = c;
            best = k;
        }
    }
    *cost = n > 1 ? best_cost : 0;
    return best;
}

size_t sh_range_bound(size_t n)
{
    /* the columns, then at most one 64-bit skip entry per posting */
    return SH_RANGE_HDR_MAX + (n * (SH_RICE_MAXBITS + 64) + 7) / 8 + 8 + n * 8;
}

/* The skip table: an entry for every posting j·2^shift (j ≥ 1): its hash minus the first, and
 * the bit offset where the next code starts — the sum of the code lengths before it. */
static void put_skip(bitw *w, const sh_posting *p, size_t n, unsigned k, unsigned shift,
                     unsigned wsh, unsigned wso)
{
    uint64_t off = 0;
    for (size_t i = 1; i < n; i++) {
        off += rice_cost(p[i].hash - p[i - 1].hash, k);
        if (!(i & (((size_t)1 << shift) - 1))) {
            bw_put(w, p[i].hash - p[0].hash, wsh);
            bw_put(w, off, wso);
        }
    }
    bw_flush(w);
}

size_t sh_range_encode(const sh_posting *p, size_t n, unsigned skip_shift, uint8_t *buf)
{
    uint32_t tmin = UINT32_MAX, tmax = 0, timax = 0;
    for (size_t i = 0; i < n; i++) {
        tmin = p[i].track < tmin ? p[i].track : tmin;
        tmax = p[i].track > tmax ? p[i].track : tmax;
        timax = p[i].t > timax ? p[i].t : timax;
    }
    uint64_t hbits;
    unsigned k = best_k(p, n, &hbits);
    unsigned wtr = bits_for(tmax - tmin), wt = bits_for(timax);
    /* hbits < 2^26 (n ≤ 2^20 codes of ≤ 56 bits), so offsets fit the u32 of off[] */
    const unsigned shift = skip_shift && n > ((size_t)1 << skip_shift) ? skip_shift : 0;
    size_t len = sh_varint_put(buf, n);
    len += sh_varint_put(buf + len, p[0].hash);
    buf[len++] = (uint8_t)(k | (shift ? SH_RANGE_SKIP : 0));
    buf[len++] = (uint8_t)wtr;
    buf[len++] = (uint8_t)wt;
    len += sh_varint_put(buf + len, tmin);
    len += sh_varint_put(buf + len, hbits);
    if (shift) {
        const size_t m = (n - 1) >> shift;
        const unsigned wsh = bits_for(p[m << shift].hash - p[0].hash);
        const unsigned wso = bits_for((uint32_t)hbits); /* hbits < 2^26: n ≤ 2^20 codes ≤ 56 bits */
        buf[len++] = (uint8_t)shift;
        buf[len++] = (uint8_t)wsh;
        buf[len++] = (uint8_t)wso;
        bitw sw = {.p = buf + len};
        put_skip(&sw, p, n, k, shift, wsh, wso);
        len = (size_t)(sw.p - buf);
    }
    bitw w = {.p = buf + len};
    for (size_t i = 1; i < n; i++) {
        uint32_t d = p[i].hash - p[i - 1].hash, q = d >> k;
        if (q >= SH_RICE_QESC) {
            bw_put(&w, 0, SH_RICE_QESC);
            bw_put(&w, d, 32);
            continue;
        }
        bw_put(&w, 1ull << q, q + 1); /* unary: q zeros then a one */
        if (k)
            bw_put(&w, d & ((1u << k) - 1), k);
    }
    for (size_t i = 0; i < n && wtr; i++)
        bw_put(&w, p[i].track - tmin, wtr);
    for (size_t i = 0; i < n && wt; i++)
        bw_put(&w, p[i].t, wt);
    bw_flush(&w);
    return (size_t)(w.p - buf);
}

/* ---- reading ------------------------------------------------------------------------------- */

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only, like LMDB's native integer keys */
}

/* The 8 bytes at byte b (< r->nbytes) of the bit stream, zeros past its end: read in place (the
 * LMDB page), except near the end where the padded copy of the last bytes stands in — a page can
 * end the map, so nothing may be read past the blob. */
static inline uint64_t rload(const sh_range *r, uint64_t b)
{
    if (b + 8 <= r->nbytes)
        return load64(r->bits + b);
    return load64(r->tail + (b - r->tail_from));
}

/* Reads nbits (≤ 32) at bit offset off of the stream. */
static uint32_t get_bits(const sh_range *r, uint64_t off, unsigned nbits)
{
    if (!nbits)
        return 0;
    uint64_t v = rload(r, off >> 3) >> (off & 7);
    return (uint32_t)(v & ((1ull << nbits) - 1));
}

/* sh_varint_get, unrolled for the header's varints of up to 5 bytes (every lookup parses a
 * header: the generic loop was ~1/3 of sh_range_open); longer or near the end: the loop. */
static inline int hdr_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    if (end - p >= 5) {
        uint64_t r = p[0];
        if (r < 0x80) {
            *pp = p + 1;
            *v = r;
            return 0;
        }
        r = (r & 0x7f) | (uint64_t)(p[1] & 0x7f) << 7;
        if (p[1] < 0x80) {
            *pp = p + 2;
            *v = r;
            return 0;
        }
        r |= (uint64_t)(p[2] & 0x7f) << 14;
        if (p[2] < 0x80) {
            *pp = p + 3;
            *v = r;
            return 0;
        }
        r |= (uint64_t)(p[3] & 0x7f) << 21;
        if (p[3] < 0x80) {
            *pp = p + 4;
            *v = r;
            return 0;
        }
        r |= (uint64_t)(p[4] & 0x7f) << 28;
        if (p[4] < 0x80) {
            *pp = p + 5;
            *v = r;
            return 0;
        }
    }
    return sh_varint_get(pp, end, v);
}

int sh_range_open(const uint8_t *buf, size_t len, uint32_t key, uint8_t *scratch, sh_range *r)
{
    const uint8_t *p = buf, *end = buf + len;
    uint64_t n, first, tmin, hbits;
    if (hdr_varint(&p, end, &n) || hdr_varint(&p, end, &first) || end - p < 3)
        return -1;
    unsigned k = p[0], wtr = p[1], wt = p[2];
    p += 3;
    if (hdr_varint(&p, end, &tmin) || hdr_varint(&p, end, &hbits))
        return -1;
    const bool skip = k & SH_RANGE_SKIP;
    k &= ~SH_RANGE_SKIP;
    if (n < 1 || n > SH_RANGE_MAX_POSTINGS || first > key || k > 31 || wtr > 32 || wt > 32 ||
        tmin > UINT32_MAX)
        return -1;
    /* The encoder's widest column value is ≥ 2^(w-1) and track_min + it fits 32 bits. (Columns
     * carry no checksum: LMDB pages are trusted beyond these structural checks.) */
    if (wtr && tmin + (1ull << (wtr - 1)) > UINT32_MAX)
        return -1;
    /* n-1 Rice codes take k+1 .. SH_RICE_MAXBITS bits each. */
    if (hbits < (n - 1) * (k + 1) || hbits > (n - 1) * (uint64_t)SH_RICE_MAXBITS)
        return -1;
    unsigned shift = 0, wsh = 0, wso = 0;
    size_t nskip = 0;
    const uint8_t *skipp = NULL;
    if (skip) {
        if (end - p < 3)
            return -1;
        shift = p[0];
        wsh = p[1];
        wso = p[2];
        p += 3;
        /* The encoder writes a table only when it has an entry, each field ≤ 32 bits. */
        if (shift < 1 || shift > SH_RANGE_SKIP_SHIFT_MAX || n <= (1ull << shift) || wsh > 32 ||
            wso > 32)
            return -1;
        nskip = (size_t)((n - 1) >> shift);
        const uint64_t sbytes = (nskip * (uint64_t)(wsh + wso) + 7) / 8;
        if ((uint64_t)(end - p) < sbytes)
            return -1;
        skipp = p;
        p += sbytes;
    }
    uint64_t total = hbits + n * (uint64_t)(wtr + wt);
    size_t hdr = (size_t)(p - buf);
    if ((uint64_t)(len - hdr) != (total + 7) / 8)
        return -1;
    const size_t nbytes = len - hdr, from = nbytes > 8 ? nbytes - 8 : 0;
    if (nbytes > 8) { /* the usual case, in two fixed-size moves */
        memcpy(scratch, p + from, 8);
        memset(scratch + 8, 0, 8);
    } else {
        memcpy(scratch, p + from, nbytes - from);
        memset(scratch + (nbytes - from), 0, 8);
    }
    *r = (sh_range){.n = (size_t)n,
                    .first_hash = (uint32_t)first,
                    .k = k,
                    .w_track = wtr,
                    .w_t = wt,
                    .track_min = (uint32_t)tmin,
                    .hash_bits = hbits,
                    .bits = p,
                    .nbytes = nbytes,
                    .tail = scratch,
                    .tail_from = from,
                    .skip_shift = shift,
                    .w_sh = wsh,
                    .w_so = wso,
                    .nskip = nskip,
                    .skip = skipp,
                    .skip_avail = skipp ? (size_t)(end - skipp) : 0};
    return 0;
}

/* nbits (≤ 32) at bit `off` of the skip table; reads stay inside the blob (the table and the
 * bit stream after it: skip_avail bytes). */
static inline uint32_t skip_bits(const sh_range *r, uint64_t off, unsigned nbits)
{
    const uint64_t b = off >> 3;
    uint64_t v = 0;
    if (b + 8 <= r->skip_avail) {
        v = load64(r->skip + b);
    } else {
        for (uint64_t i = 0; i < 8 && b + i < r->skip_avail; i++)
            v |= (uint64_t)r->skip[b + i] << (8 * i);
    }
    v >>= off & 7;
    return (uint32_t)(v & ((1ull << nbits) - 1));
}

/* Entry j (1..nskip): posting j·2^s's hash minus the first, and the offset after its code. */
static inline uint32_t skip_hash(const sh_range *r, size_t j)
{
    return skip_bits(r, (uint64_t)(j - 1) * (r->w_sh + r->w_so), r->w_sh);
}

static inline uint64_t skip_off(const sh_range *r, size_t j)
{
    return skip_bits(r, (uint64_t)(j - 1) * (r->w_sh + r->w_so) + r->w_sh, r->w_so);
}

/* Decodes the Rice code at c->off (posting c->i + 1's delta) into c: one 64-bit load sees a whole
 * ordinary code (≤ SH_RICE_QESC - 1 zeros + 1 + k ≤ 55 bits of the ≥ 57 valid). Returns 0 or -1
 * (the code runs past the hash column, or the hash passes the key). */
static int rice_step(const sh_range *r, uint32_t key, sh_range_cursor *c)
{
    const uint64_t left = r->hash_bits - c->off;
    if (!left)
        return -1;
    uint64_t w = rload(r, c->off >> 3) >> (c->off & 7);
    if (left < 57)
        w &= (1ull << left) - 1;
    const unsigned z = w ? (unsigned)__builtin_ctzll(w) : 64;
    uint64_t d;
    if (z < SH_RICE_QESC) {
        const unsigned len = z + 1 + r->k;
        if (len > left)
            return -1;
        d = ((uint64_t)z << r->k) | ((w >> (z + 1)) & ((1ull << r->k) - 1));
        c->off += len;
    } else {
        if (left < SH_RICE_MAXBITS)
            return -1;
        d = get_bits(r, c->off + SH_RICE_QESC, 32);
        c->off += SH_RICE_MAXBITS;
    }
    const uint64_t h = c->hash + d;
    if (h > key)
        return -1;
    c->hash = (uint32_t)h;
    c->i++;
    return 0;
}

void sh_range_cursor_init(const sh_range *r, sh_range_cursor *c)
{
    *c = (sh_range_cursor){.i = 0, .off = 0, .hash = r->first_hash};
}

/* Decodes from posting *pi (hash *ph, next code at *poff) until a hash ≥ target, posting `stop`
 * (≤ n - 1) or past the last posting (*pi = n, the column's exact end checked). rice_step's loop
 * with the state in registers. Returns 0 or -1 (a code runs past the column). */
static inline __attribute__((always_inline)) int decode_until(const sh_range *r, size_t *pi,
                                                              uint64_t *poff, uint64_t *ph,
                               size_t stop, uint32_t target)
{
    size_t i = *pi;
    uint64_t off = *poff, h = *ph;
    const uint64_t end = r->hash_bits, kmask = (1ull << r->k) - 1;
    const unsigned k = r->k;
    /* Fast path while ≥ 57 bits of the column remain: the load is in place and whole, and a
     * code (escapes included: 24 + 32 bits) cannot run past the column. */
    while (i < stop && h < target && off + 57 <= end) {
        const uint64_t w = load64(r->bits + (off >> 3)) >> (off & 7);
        const unsigned z = w ? (unsigned)__builtin_ctzll(w) : 64;
        if (__builtin_expect(z < SH_RICE_QESC, 1)) {
            h += ((uint64_t)z << k) | ((w >> (z + 1)) & kmask);
            off += z + 1 + k;
        } else {
            h += (w >> SH_RICE_QESC) & 0xffffffffu;
            off += SH_RICE_MAXBITS;
        }
        i++;
    }
    while (i < r->n && h < target) {
        if (i + 1 == r->n) {
            /* Past the last posting: the column must end exactly here. */
            if (off != end)
                return -1;
            i = r->n;
            break;
        }
        if (i == stop)
            break;
        const uint64_t left = end - off;
        uint64_t w = rload(r, off >> 3) >> (off & 7);
        if (left < 57) {
            if (!left)
                return -1;
            w &= (1ull << left) - 1;
        }
        const unsigned z = w ? (unsigned)__builtin_ctzll(w) : 64;
        if (__builtin_expect(z < SH_RICE_QESC, 1)) {
            const unsigned len = z + 1 + k;
            if (len > left)
                return -1;
            h += ((uint64_t)z << k) | ((w >> (z + 1)) & kmask);
            off += len;
        } else {
            if (left < SH_RICE_MAXBITS)
                return -1;
            h += get_bits(r, off + SH_RICE_QESC, 32);
            off += SH_RICE_MAXBITS;
        }
        i++;
    }
    *pi = i;
    *poff = off;
    *ph = h;
    return 0;
}

/* The part of a seek that starts from skip entry j (ahead of the cursor c; he: the hash of entry
 * j + 1, when j < nskip). The entry must lie where the codes can put it: its hash not below c's,
 * its offset at least k+1 bits per code after c's, and room for k+1 bits per code after it. The
 * decoding then stops at entry j + 1 at the latest, and must meet it exactly there (hash and
 * offset) or stay at or below its hash short of it; from the last entry, the column must end
 * exactly at the last posting. So a damaged entry shows in the seeks that decode from it to the
 * next one, whatever their target. */
static __attribute__((noinline)) int seek_from_entry(const sh_range *r, uint32_t key,
                                                     sh_range_cursor *c, uint32_t target,
                           size_t j, uint64_t he)
{
    const size_t pj = j << r->skip_shift;
    const uint64_t min = r->k + 1ull, offj = skip_off(r, j);
    uint64_t h = (uint64_t)r->first_hash + skip_hash(r, j), off = offj;
    if (h < c->hash || offj < c->off + (pj - c->i) * min ||
        offj > r->hash_bits - (r->n - 1 - pj) * min)
        return -1;
    const bool last = j == r->nskip;
    const size_t stop = last ? r->n - 1 : (j + 1) << r->skip_shift;
    size_t i = pj;
    if (decode_until(r, &i, &off, &h, stop, target) || h > key)
        return -1;
    if (last ? i + 1 == r->n && off != r->hash_bits
             : i < stop ? h > he : h != he || off != skip_off(r, j + 1))
        return -1;
    *c = (sh_range_cursor){.i = i, .off = off, .hash = (uint32_t)h};
    return 0;
}

int sh_range_seek(const sh_range *r, uint32_t key, sh_range_cursor *c, uint32_t target)
{
    if (r->nskip && c->hash < target) {
        /* The last entry ahead of c whose hash is below target: every posting before it is below
         * target too, so the first posting ≥ target lies after it. Looked for only when the next
         * entry is below target: consecutive query hashes mostly land in the same block. */
        size_t lo = (c->i >> r->skip_shift) + 1, hi = r->nskip + 1;
        if (lo < hi && (uint64_t)r->first_hash + skip_hash(r, lo) < target) {
            uint64_t hhi = 0; /* entry hi's hash once hi moved */
            for (lo++; lo < hi;) {
                const size_t mid = lo + (hi - lo) / 2;
                const uint64_t hm = (uint64_t)r->first_hash + skip_hash(r, mid);
                if (hm < target) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                    hhi = hm;
                }
            }
            return seek_from_entry(r, key, c, target, lo - 1, hhi);
        }
    }
    /* From c, which lies in the block of the first posting ≥ target (or in a blob without a
     * table). Hashes only grow (64-bit sum: no wrap), so checking the key once at the end fails
     * exactly the seeks that passed it on the way. */
    size_t i = c->i;
    uint64_t off = c->off, h = c->hash;
    if (decode_until(r, &i, &off, &h, r->n - 1, target) || h > key)
        return -1;
    *c = (sh_range_cursor){.i = i, .off = off, .hash = (uint32_t)h};
    return 0;
}

int sh_range_hashes(const sh_range *r, uint32_t key, uint32_t *hashes)
{
    sh_range_cursor c;
    sh_range_cursor_init(r, &c);
    hashes[0] = c.hash;
    const size_t smask = r->nskip ? ((size_t)1 << r->skip_shift) - 1 : 0;
    while (c.i + 1 < r->n) {
        if (rice_step(r, key, &c))
            return -1;
        hashes[c.i] = c.hash;
        if (r->nskip && !(c.i & smask)) {
            const size_t j = c.i >> r->skip_shift;
            if ((uint64_t)r->first_hash + skip_hash(r, j) != c.hash || skip_off(r, j) != c.off)
                return -1;
        }
    }
    return c.off == r->hash_bits ? 0 : -1;
}

uint32_t sh_range_track(const sh_range *r, size_t i)
{
    return r->track_min + get_bits(r, r->hash_bits + i * r->w_track, r->w_track);
}

uint32_t sh_range_t(const sh_range *r, size_t i)
{
    return get_bits(r, r->hash_bits + r->n * r->w_track + i * r->w_t, r->w_t);
}

int sh_range_decode(const sh_range *r, uint32_t key, uint32_t *hash_scratch, sh_posting *out)
{
    if (sh_range_hashes(r, key, hash_scratch))
        return -1;
    for (size_t i = 0; i < r->n; i++) {
        out[i].hash = hash_scratch[i];
        out[i].track = sh_range_track(r, i);
        out[i].t = sh_range_t(r, i);
    }
    return 0;
}
