/* sh_shardsum.c — see sh_shardsum.h for the definition (a contract: do not change it in place). */
#include "sh_shardsum.h"

#include "sh_media.h"
#include "sh_varint.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STAGE_POSTINGS = 512 };

static int cmp_t_hash(const void *a, const void *b)
{
    const sh_hash *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return 0;
}

static int is_sorted(const sh_hash *h, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (cmp_t_hash(&h[i - 1], &h[i]) > 0)
            return 0;
    return 1;
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Hashes the header and the sorted postings; the postings go through a small staging buffer so
 * memory does not grow with the track. */
static int digest(EVP_MD_CTX *c, const char *id, size_t id_len, int64_t version,
                  int32_t fp_version, const sh_hash *h, size_t n, uint64_t *out)
{
    uint8_t hdr[4 + 4 * SH_VARINT_MAX], stage[STAGE_POSTINGS * 8], full[SH_SHA256_LEN];
    size_t k = 0;
    memcpy(hdr, "SHT1", 4);
    k = 4 + sh_varint_put(hdr + 4, id_len);
    if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(c, hdr, k) != 1 ||
        EVP_DigestUpdate(c, id, id_len) != 1)
        return -1;
    k = sh_varint_put(hdr, (uint64_t)version);
    k += sh_varint_put(hdr + k, (uint64_t)fp_version);
    k += sh_varint_put(hdr + k, n);
    if (EVP_DigestUpdate(c, hdr, k) != 1)
        return -1;
    for (size_t i = 0; i < n;) {
        size_t m = 0;
        for (; i < n && m < STAGE_POSTINGS; i++, m++) {
            put_u32le(stage + 8 * m, h[i].hash);
            put_u32le(stage + 8 * m + 4, h[i].t);
        }
        if (EVP_DigestUpdate(c, stage, 8 * m) != 1)
            return -1;
    }
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(c, full, &len) != 1 || len != SH_SHA256_LEN)
        return -1;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | full[i];
    *out = v;
    return 0;
}

int sh_shardsum_track(const char *id, size_t id_len, int64_t version, int32_t fp_version,
                      const sh_hash *h, size_t n, uint64_t *out, sh_err *e)
{
    if (!id || !id_len || (!h && n) || !out)
        return sh_err_set(e, SH_EINVAL, "shardsum: NULL argument or empty id");
    if (version < 0 || fp_version < 0)
        return sh_err_set(e, SH_EINVAL, "shardsum: negative version or fp_version");
    sh_hash *sorted = NULL;
    if (!is_sorted(h, n)) {
        if (!(sorted = malloc(n * sizeof *sorted)))
            return sh_err_set(e, SH_ENOMEM, "shardsum: out of memory for %zu postings", n);
        memcpy(sorted, h, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_t_hash);
        h = sorted;
    }
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int rc = c && digest(c, id, id_len, version, fp_version, h, n, out) == 0
                 ? 0
                 : sh_err_set(e, SH_EINTERNAL, "shardsum: libcrypto failure");
    EVP_MD_CTX_free(c);
    free(sorted);
    return rc;
}

int sh_shardsum_add(sh_shardsum *s, const char *id, size_t id_len, int64_t version,
                    int32_t fp_version, const sh_hash *h, size_t n, sh_err *e)
{
    if (!s)
        return sh_err_set(e, SH_EINVAL, "shardsum: NULL argument");
    uint64_t t;
    int rc = sh_shardsum_track(id, id_len, version, fp_version, h, n, &t, e);
    if (rc)
        return rc;
    s->sum += t;
    s->tracks++;
    s->postings += n;
    return 0;
}

int sh_shardsum_remove(sh_shardsum *s, const char *id, size_t id_len, int64_t version,
                       int32_t fp_version, const sh_hash *h, size_t n, sh_err *e)
{
    if (!s)
        return sh_err_set(e, SH_EINVAL, "shardsum: NULL argument");
    if (!s->tracks || s->postings < n)
        return sh_err_set(e, SH_EINVAL, "shardsum: removing a track that was not counted");
    uint64_t t;
    int rc = sh_shardsum_track(id, id_len, version, fp_version, h, n, &t, e);
    if (rc)
        return rc;
    s->sum -= t;
    s->tracks--;
    s->postings -= n;
    return 0;
}

void sh_shardsum_merge(sh_shardsum *into, const sh_shardsum *part)
{
    into->sum += part->sum;
    into->tracks += part->tracks;
    into->postings += part->postings;
}

int sh_shardsum_equal(const sh_shardsum *a, const sh_shardsum *b)
{
    return a->sum == b->sum && a->tracks == b->tracks && a->postings == b->postings;
}

const char *sh_shardsum_format(const sh_shardsum *s, char *buf, size_t size)
{
    if (size)
        snprintf(buf, size, "tracks=%" PRIu64 " postings=%" PRIu64 " sum=%016" PRIx64, s->tracks,
                 s->postings, s->sum);
    return buf;
}
