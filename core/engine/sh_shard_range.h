/* sh_shard_range.h — the shard's range blob codec (internal to the shard module and its tests and
 * fuzzer).
 *
 * A range blob holds postings sorted by (hash, track, t); hashes are all ≤ the range's key.
 *   varint n (≥ 1) · varint first hash · u8 k (Rice parameter) · u8 w_track · u8 w_t ·
 *   varint track_min · varint hash_bits · bit stream (LSB first):
 *     n-1 hash deltas, Rice(k) coded (q zero bits, a one bit, then k low bits), hash_bits long;
 *     n × w_track bits (track - track_min); n × w_t bits (t).
 * The blob's length must be exactly the header plus the bit stream rounded up to bytes.
 * Hash deltas of a dense index are small and Rice codes them within ~1.5 bits of their entropy;
 * the fixed-width columns give O(1) access to posting i once its hash matched.
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

/* Bytes sh_range_encode() may write for n postings. */
size_t sh_range_bound(size_t n);

/* Encodes p[0..n) (1 ≤ n ≤ SH_RANGE_MAX_POSTINGS, sorted by (hash, track, t)) into buf, which has
 * sh_range_bound(n) bytes; returns the length written. */
size_t sh_range_encode(const sh_posting *p, size_t n, uint8_t *buf);

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
} sh_range;

/* Parses and validates the header of [buf, buf+len) for a range whose hashes are ≤ key. `scratch`
 * must hold min(len, 8) + 8 bytes (len + 8 always does); r reads buf in place, so buf and scratch
 * must outlive r (for an LMDB value: the read transaction). Returns 0 or -1 (malformed). */
int sh_range_open(const uint8_t *buf, size_t len, uint32_t key, uint8_t *scratch, sh_range *r);

/* Decodes the hash column into hashes[0..r->n), validating order and bounds. Returns 0 or -1. */
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
 * the codes on the way — a lookup decodes a blob up to its last query hash, not whole. Validates
 * what it decodes (order, bounds, key; the column's exact length once c passes the last posting),
 * so a damaged tail that no seek reaches goes unnoticed. Returns 0 or -1 (malformed). */
int sh_range_seek(const sh_range *r, uint32_t key, sh_range_cursor *c, uint32_t target);

/* Track and time of posting i (< r->n); valid after sh_range_open() succeeded
 * (reads stay inside the blob whatever its bits hold). */
uint32_t sh_range_track(const sh_range *r, size_t i);
uint32_t sh_range_t(const sh_range *r, size_t i);

/* Full decode into out[0..r->n) (hashes via sh_range_hashes). Returns 0 or -1. */
int sh_range_decode(const sh_range *r, uint32_t key, uint32_t *hash_scratch, sh_posting *out);

#endif
