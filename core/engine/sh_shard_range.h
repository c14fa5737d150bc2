/* sh_shard_range.h — the shard's range blob codec (internal to the shard module and its tests and
 * fuzzer).
 *
 * A range blob holds postings sorted by (hash, track, t); hashes are all ≤ the range's key.
 *   varint n (≥ 1) · varint first hash · u8 k (Rice parameter; | SH_RANGE_SKIP: a skip table
 *   follows the header) · u8 w_track · u8 w_t · varint track_min · varint hash_bits ·
 *   [skip table] · bit stream (LSB first):
 *     n-1 hash deltas, Rice(k) coded (q zero bits, a one bit, then k low bits), hash_bits long;
 *     n × w_track bits (track - track_min); n × w_t bits (t).
 *   skip table (only with SH_RANGE_SKIP): u8 s (1..SH_RANGE_SKIP_SHIFT_MAX) · u8 w_sh · u8 w_so ·
 *     m = ceil(n / 2^s) - 1 entries of w_sh + w_so bits (LSB first, padded to a byte): entry j
 *     (1..m) is posting j·2^s's hash minus the first hash (w_sh bits), then the bit offset in
 *     the hash column where posting j·2^s + 1's delta starts (w_so bits).
 * The blob's length must be exactly the header plus the bit stream rounded up to bytes.
 * Hash deltas of a dense index are small and Rice codes them within ~1.5 bits of their entropy;
 * the fixed-width columns give O(1) access to posting i once its hash matched. The skip table lets
 * a seek start at most 2^s - 1 codes before the posting it looks for instead of at the first:
 * in a big index a query's hashes are sparser than the blobs (100 h in 8 shards: ~12.4k ranges
 * per shard against ~7k query hashes), so without it each probe decoded about half a blob.
 * Blobs without SH_RANGE_SKIP (shard format 2, and any blob of at most 2^s postings) read as
 * before; a full decode checks every skip entry against the codes, so a blob that decodes whole
 * never misleads a seek. A seek checks the entries it uses (sh_range_seek).
 */
#ifndef SH_SHARD_RANGE_H
#define SH_SHARD_RANGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sh_posting {
    uint32_t hash;
    uint32_t track;
    uint32_t t;
} sh_posting;

/* Postings per blob accepted by the decoder (a single hash shared by more tracks than this is
 * refused at encode time by the shard). */
#define SH_RANGE_MAX_POSTINGS (1u << 20)

/* The flag on the Rice parameter's byte saying that a skip table follows the header. */
#define SH_RANGE_SKIP 0x80u
#define SH_RANGE_SKIP_SHIFT_MAX 20u
/* The skip step the shard writes (format 3): an entry every 2^4 = 16 postings. */
#define SH_RANGE_SKIP_SHIFT 4u

/* Bytes sh_range_encode() may write for n postings (with or without a skip table). */
size_t sh_range_bound(size_t n);

/* Encodes p[0..n) (1 ≤ n ≤ SH_RANGE_MAX_POSTINGS, sorted by (hash, track, t)) into buf, which has
 * sh_range_bound(n) bytes; returns the length written. skip_shift: 0 = no skip table (the format
 * every reader knows), else 1..SH_RANGE_SKIP_SHIFT_MAX: an entry every 2^skip_shift postings
 * (none is written when n ≤ 2^skip_shift: the blob is then the plain format). */
size_t sh_range_encode(const sh_posting *p, size_t n, unsigned skip_shift, uint8_t *buf);

/* A parsed blob. `bits` points into the caller's buffer (nbytes of bit stream, read in place);
 * `tail` is a copy of its last bytes from tail_from on, padded with 8 zero bytes (in
 * sh_range_open's scratch), so that 64-bit loads never pass the blob's end. */
typedef struct sh_range {
    size_t n;
    uint32_t first_hash;
    unsigned k, w_track, w_t;
    uint32_t track_min;
    uint64_t hash_bits;
    const uint8_t *bits;
    size_t nbytes;
    const uint8_t *tail;
    size_t tail_from;
    /* skip table (skip_shift 0: none): nskip entries at `skip`, skip_avail bytes from there to
     * the blob's end */
    unsigned skip_shift, w_sh, w_so;
    size_t nskip;
    const uint8_t *skip;
    size_t skip_avail;
} sh_range;

/* Parses and validates the header of [buf, buf+len) for a range whose hashes are ≤ key. `scratch`
 * must hold min(len, 8) + 8 bytes (len + 8 always does); r reads buf in place, so buf and scratch
 * must outlive r (for an LMDB value: the read transaction). Returns 0 or -1 (malformed). */
int sh_range_open(const uint8_t *buf, size_t len, uint32_t key, uint8_t *scratch, sh_range *r);

/* Decodes the hash column into hashes[0..r->n), validating order, bounds and every skip entry.
 * Returns 0 or -1. */
int sh_range_hashes(const sh_range *r, uint32_t key, uint32_t *hashes);

/* A position in the hash column: posting i (≤ n; n = past the end) has hash `hash`, and the
 * delta of posting i + 1 starts at bit `off`. */
typedef struct sh_range_cursor {
    size_t i;
    uint64_t off;
    uint32_t hash;
} sh_range_cursor;

/* Sets c to posting 0. */
void sh_range_cursor_init(const sh_range *r, sh_range_cursor *c);

/* Moves c forward to the first posting whose hash is ≥ target (c->i == r->n: none), decoding only
 * the codes on the way — from the last skip entry below target when the blob has a skip table
 * (so a seek decodes fewer than 2^skip_shift codes), else from c. Validates what it decodes
 * (order, bounds, key; the column's exact length once c passes the last posting), so a damaged
 * tail that no seek reaches goes unnoticed. A seek that starts from a skip entry checks it: the
 * entry must lie where the codes can put it (hash not below c's, offset at least k+1 bits per
 * code after c's and leaving k+1 bits per code after it), and the decoding stops at the next entry
 * at the latest and must meet it exactly (hash and offset) or stay at or below its hash short of
 * it; from the last entry, the column must end exactly at the last posting. So a damaged entry is
 * reported (-1) by the seeks that decode from it to the next one, whatever their target (a lookup
 * then reports the blob corrupted); one that stops inside the block trusts the entry within those
 * bounds, as every seek trusts the track and time columns (LMDB pages carry no checksum). Never
 * reads outside the blob. Returns 0 or -1 (malformed). */
int sh_range_seek(const sh_range *r, uint32_t key, sh_range_cursor *c, uint32_t target);

/* Track and time of posting i (< r->n); valid after sh_range_open() succeeded
 * (reads stay inside the blob whatever its bits hold). */
uint32_t sh_range_track(const sh_range *r, size_t i);
uint32_t sh_range_t(const sh_range *r, size_t i);

/* Full decode into out[0..r->n) (hashes via sh_range_hashes). Returns 0 or -1. */
int sh_range_decode(const sh_range *r, uint32_t key, uint32_t *hash_scratch, sh_posting *out);

#endif
