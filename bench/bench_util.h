/* bench_util.h — helpers shared by the benchmark programs (each bench program is its own binary, so
 * these are static inline): whole-file decode, one-shot fingerprint, CSV split, percentiles.
 * Benchmarks only: they print problems to stderr and keep going where a library would not.
 */
#ifndef SH_BENCH_UTIL_H
#define SH_BENCH_UTIL_H

#include "sh_audio.h"
#include "sh_fp.h"
#include "sh_vec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decodes a whole file to mono floats at `rate` into a malloc'ed *x of *n samples (caller frees).
 * Returns 0, or -1 after printing why. */
static inline int bench_decode(const char *path, int rate, float **x, size_t *n)
{
    sh_audio_opts o;
    sh_audio_opts_default(&o);
    o.rate = rate;
    sh_audio *a;
    sh_err e = {0};
    *x = NULL;
    *n = 0;
    if (sh_audio_open_file(path, &o, &a, &e)) {
        fprintf(stderr, "%s: %s\n", path, sh_err_text(&e));
        return -1;
    }
    size_t cap = 0, len = 0;
    float *buf = NULL;
    long got = 0;
    int grow = 0; /* room for at least 2^20 more samples before each read */
    while (!(grow = sh_vec_reserve(&buf, &cap, len + (1 << 20), SH_VEC_NOCAP)) &&
           (got = sh_audio_read(a, buf + len, cap - len, &e)) > 0)
        len += (size_t)got;
    sh_audio_free(a);
    if (grow || got < 0) {
        fprintf(stderr, "%s: %s\n", path, grow ? "out of memory" : sh_err_text(&e));
        free(buf);
        return -1;
    }
    *x = buf;
    *n = len;
    return 0;
}

/* Fingerprints n samples in one go (sh_fp_hashes(fp) holds the result). Returns 0 or -1. */
static inline int bench_fingerprint(sh_fp *fp, const float *x, size_t n)
{
    sh_err e = {0};
    sh_fp_reset(fp);
    if (sh_fp_feed(fp, x, n, &e) || sh_fp_finish(fp, &e)) {
        fprintf(stderr, "fingerprint: %s\n", sh_err_text(&e));
        return -1;
    }
    return 0;
}

/* Splits a CSV line in place (no quoted commas in the fields we use; the line end is dropped) into
 * at most max fields; returns the count. */
static inline int bench_split(char *line, char **f, int max)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *p = line; n < max;) {
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
    return n;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-quantile (0..1) of v[0..n), nearest rank; sorts v. 0 when n is 0. */
static inline double bench_pct(double *v, int n, double p)
{
    if (n <= 0)
        return 0.0;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[(int)(p * (n - 1) + 0.5)];
}

#endif
