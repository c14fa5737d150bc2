/* sh_qhash.h — a query's hashes as a client sends them (POST /v1/match, `soundhash match --edge`),
 * so that a clip can be recognised without its audio leaving the device.
 *
 * Two forms carry the same thing, the fingerprint version and the query-mode hashes:
 *
 * JSON (Content-Type application/json): the line `soundhash fingerprint --hashes --query FILE`
 * prints. Required: "fp_version" (integer ≥ 0) and "hash_list" ([[hash, t], ...], integers with
 * 0 ≤ hash < 2^32 and 0 ≤ t < 2^32, t in analysis frames). Other keys are ignored. Entries are
 * kept in the order given.
 *
 * Binary, version 1 (Content-Type SH_QHASH_CONTENT_TYPE), all varints LEB128 unsigned
 * (sh_varint.h) and canonical (no superfluous 0x80 groups):
 *   4 bytes    "SHQ1"           magic and format version
 *   varint     fp_version       ≤ INT_MAX
 *   varint     n                number of hashes
 *   n times:   varint dt        t_i = t_{i-1} + dt (t_{-1} = 0): entries in non-decreasing t,
 *                               every t < 2^32
 *              4 bytes hash     little-endian
 * and nothing after the last entry. Measured on a dev-corpus track: 5.0 bytes per query hash
 * against 18.2 in the JSON line (~490 query hashes per second of music: ~25 KB for 10 s). The
 * encoder sorts a copy by (t, hash) unless already in t order, so parse → encode reproduces a
 * canonical input byte for byte.
 *
 * Parsing is hostile-input safe: the count is checked against the caller's cap and against the
 * bytes left before anything is allocated (a JSON body longer than the cap's entries can be is
 * refused before it is parsed). A parsed query is normalised: repeated (hash, t) pairs dropped,
 * at most SH_QHASH_PER_HASH_MAX entries kept per hash value (a lookup walks a hash's postings once
 * per entry: one popular hash repeated 200k times must not cost 200k walks), in (t, hash) order.
 */
#ifndef SH_QHASH_H
#define SH_QHASH_H

#include "sh_err.h"
#include "sh_fp.h"

#include <stddef.h>
#include <stdint.h>

#define SH_QHASH_CONTENT_TYPE "application/vnd.soundhash.hashes"
#define SH_QHASH_MAGIC "SHQ1"
#define SH_QHASH_PER_HASH_MAX 16 /* entries kept per hash value (see above) */

/* A parsed query: `h[0..n)` is owned (sh_qhash_free); NULL when n is 0. */
typedef struct sh_qhash {
    int fp_version;
    sh_hash *h;
    size_t n;
} sh_qhash;

/* Parses `len` bytes at `buf` (borrowed): the binary form when `binary`, else the JSON form.
 * At most `max_n` hashes are accepted. On success *out holds the query (the caller frees it with
 * sh_qhash_free); on error *out is zeroed.
 * Errors: SH_EINVAL (NULL out, or NULL buf with len > 0), SH_EFORMAT (bad magic, truncated,
 * trailing bytes, non-canonical varint, t or fp_version out of range; JSON that is not an object,
 * lacks "fp_version"/"hash_list" or has an entry that is not [hash, t] in range — the message
 * names the entry, e.g. "hash_list[12]: not [hash, t]"), SH_ETOOBIG (more than max_n hashes),
 * SH_ENOMEM. */
int sh_qhash_parse(const void *buf, size_t len, int binary, size_t max_n, sh_qhash *out,
                   sh_err *e);

/* Frees q->h and zeroes *q; accepts NULL. */
void sh_qhash_free(sh_qhash *q);

/* Encodes fp_version and h[0..n) (any order; `h` is not modified) in the binary form into a new
 * malloc'ed buffer *out of *len bytes, owned by the caller (free()).
 * Errors: SH_EINVAL (negative fp_version, NULL out/len, NULL h with n > 0), SH_ENOMEM. */
int sh_qhash_encode(int fp_version, const sh_hash *h, size_t n, uint8_t **out, size_t *len,
                    sh_err *e);

#endif
