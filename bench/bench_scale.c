/* bench_scale — recognition at catalogue scale: the dev corpus indexed among up to 1,000+ hours of
 * distinct distractor tracks in 8 shards (as an edge holding every shard keeps them), queried
 * in-process with the hashes given, as the edge answers a hash query. bench/bench_scale.sh runs
 * it (`make bench-scale`); everything heavy is cached under DATA/bench/scale.
 *
 *   bench_scale gen   --data DIR --hours H [--threads N]
 *   bench_scale build --data DIR --hours H
 *   bench_scale query --data DIR --hours H [--queries DIR] [--reps R] [--len S] [--stop N]
 *                     [--sort once|per-shard] [--threads N]
 *                     [--verbose 1] [--dump FILE] [--judge all|shard] [--q-fanout N --q-ppw N --q-variants N --q-scale-tol X
 *                     --q-jitter X]
 *
 * gen    the distractor fingerprints. Sources: DIR/corpus/distract/manifest.csv
 *        (bench/make_distractors.sh: real music from Debian game packages that share no track with
 *        the dev or negative corpora). Each source track is decoded once (8 kHz mono) and turned
 *        into V variants, the first V of this fixed order (v = 4 j + c):
 *          speed factor F[j], j = 0..10: 1, 1.2^-1, 1.2, 1.2^-2, 1.2^2, ..., 1.2^5 (resampled with
 *            libsoxr: pitch and tempo together; neighbouring factors are 20 % apart, twice the
 *            ±10 % speed range the fingerprint is asked to tolerate, so no variant is a tolerated
 *            speed change of another);
 *          c = 0 as is, 1 time-reversed, 2 spectrum-inverted (every odd sample negated: a
 *            frequency f becomes 4 kHz - f, which maps frequency ratios to other ratios, unlike
 *            any pitch shift), 3 both.
 *        Every source gets all 44 variants; gen takes the sources in manifest order until their
 *        variants reach H hours (the build's (source, variant) order), so a size's index does not
 *        depend on the largest size asked for nor on sources appended to the manifest. Each
 *        variant is fingerprinted with the index config by the real extractor; a source's variants
 *        are cached in one file (DATA/bench/scale/fp<V>/src/<sha256>.fpv, written once: a finished
 *        file is never rewritten), so gen resumes where it stopped, a larger --hours only adds
 *        sources, and a new fingerprint version regenerates. The dev corpus (the indexed tracks
 *        the queries are cut from) is fingerprinted the same way, variant 0 only, under its
 *        manifest file names.
 * build  8 LMDB shards (split by sh_shard_of like the edge's) holding the dev corpus plus the
 *        distractor variants in (source, variant) order up to H hours in all, written in bulk
 *        batches; cached in DATA/bench/scale/fp<V>/shards-<H>h (with a "built" record of the
 *        build's time and sizes). Prints the build time, postings and index bytes per hour (the
 *        LMDB pages in use; the files also hold free pages, reused by later writes and left out
 *        by a snapshot or `soundhash index compact`, which repacks the file).
 * query  every query of --len seconds (default 10) of the query set (default
 *        DATA/q1536/queries/dev) fingerprinted once with the recognizer's query config, then
 *        answered --reps times: each shard looked up and ranked (sh_recognize_shard, as the edge
 *        does) and the most confident answer kept. Prints votes per query, wall and thread-CPU
 *        p50/p99 per query (all 8 shards), top-1 accuracy of the positives (per condition) and
 *        false matches on the negatives. --stop: the shards' stop_postings (sh_shard_opts; 0 =
 *        the default). --sort once (default): the query's hashes are sorted once
 *        (sh_shard_query_sort, inside the timed part) and each shard's lookup uses them as they
 *        are; per-shard: each lookup sorts its own copy, as the edge did before 8a0daf2.
 *        --judge all (default): every shard's answers judged against the other shards' candidates
 *        too (sh_recognize_judge, as the edge does); shard: each shard's answers as it ranked them.
 *        --threads N (1..8, default 1): the 8 shards are looked up on N threads (the caller and
 *        N - 1 of an sh_pool, a recognizer each), as an edge with match_threads N does. CPU is
 *        the whole process's (every lane), wall the query's latency.
 * Benchmark code: problems go to stderr and the exit status is 1.
 */
#include "bench_util.h"
#include "sh_clock.h"
#include "sh_fp.h"
#include "sh_pool.h"
#include "sh_recognize.h"
#include "sh_shard.h"
#include "sh_shardmap.h"

#include <errno.h>
#include <pthread.h>
#include <soxr.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    NSHARDS = 8,
    NVARIANTS = 44,
    MAX_SOURCES = 20000,
    MAX_QUERIES = 8192,
    MAX_CONDS = 64,
    LINE_LEN = 4096,
    PATH_LEN = 2048,
    BATCH_POSTINGS = 4 << 20,
};
#define FPV_MAGIC 0x31565046u /* "FPV1" */

typedef struct source {
    char id[200];
    char path[1024];
    char sha[65];
    double dur;
} source;

typedef struct ctx {
    char data[1024];
    char dir[1200]; /* DATA/bench/scale/fp<V> */
    source *src;
    int nsrc;
    source *dev;
    int ndev;
} ctx;

static double factor_of(int v)
{
    static const double step = 1.2;
    const int j = v / 4, k = (j + 1) / 2;
    double f = 1;
    for (int i = 0; i < k; i++)
        f *= step;
    return j % 2 ? 1 / f : f;
}

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

static int mkdirs(const char *path)
{
    char buf[PATH_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

/* ---- sources ------------------------------------------------------------------------------------- */

/* distract manifest: track_id,path,package,duration_s,sha256. dev manifest: track_id,file,...,
 * duration_s (6th),sha256 (7th); its id is the file name (the query set's expected_track). */
static int load_manifest(const char *path, int dev, const char *devdir, source **out, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    source *s = calloc(MAX_SOURCES, sizeof *s);
    char line[LINE_LEN];
    int k = 0;
    while (s && fgets(line, sizeof line, f) && k < MAX_SOURCES) {
        char *fl[9];
        const int nf = bench_split(line, fl, 9);
        if (!strcmp(fl[0], "track_id") || nf < (dev ? 7 : 5))
            continue;
        if (dev) {
            snprintf(s[k].id, sizeof s[k].id, "%s", fl[1]);
            snprintf(s[k].path, sizeof s[k].path, "%s/%s", devdir, fl[1]);
            s[k].dur = strtod(fl[5], NULL);
            snprintf(s[k].sha, sizeof s[k].sha, "%.64s", fl[6]);
        } else {
            snprintf(s[k].id, sizeof s[k].id, "%s", fl[0]);
            snprintf(s[k].path, sizeof s[k].path, "%s", fl[1]);
            s[k].dur = strtod(fl[3], NULL);
            snprintf(s[k].sha, sizeof s[k].sha, "%.64s", fl[4]);
        }
        k++;
    }
    fclose(f);
    if (!s || !k) {
        fprintf(stderr, "%s: no tracks\n", path);
        free(s);
        return -1;
    }
    *out = s;
    *n = k;
    return 0;
}

static int ctx_init(ctx *c, int argc, char **argv)
{
    const char *env = getenv("SOUNDHASH_DATA_DIR"), *home = getenv("HOME");
    char def[1024], path[PATH_LEN], devdir[1200];
    snprintf(def, sizeof def, "%s", env ? env : "");
    if (!env)
        snprintf(def, sizeof def, "%s/.cache/soundhash-data", home ? home : ".");
    snprintf(c->data, sizeof c->data, "%s", arg(argc, argv, "--data", def));
    snprintf(c->dir, sizeof c->dir, "%s/bench/scale/fp%d", c->data, SH_FP_VERSION);
    snprintf(path, sizeof path, "%s/corpus/distract/manifest.csv", c->data);
    if (load_manifest(path, 0, NULL, &c->src, &c->nsrc))
        return -1;
    snprintf(devdir, sizeof devdir, "%s/corpus/dev", c->data);
    snprintf(path, sizeof path, "%s/manifest.csv", devdir);
    return load_manifest(path, 1, devdir, &c->dev, &c->ndev);
}

static void ctx_free(ctx *c)
{
    free(c->src);
    free(c->dev);
}

/* Hours of audio in all NVARIANTS variants of one hour of source. */
static double variant_hours(void)
{
    double tot = 0;
    for (int v = 0; v < NVARIANTS; v++)
        tot += 1 / factor_of(v);
    return tot;
}

/* Sources (a manifest prefix) whose variants reach `hours` of audio; -1 when all do not. */
static int sources_for(const ctx *c, double hours)
{
    const double per = variant_hours();
    double tot = 0;
    for (int i = 0; i < c->nsrc; i++)
        if ((tot += c->src[i].dur / 3600 * per) >= hours)
            return i + 1;
    return -1;
}

/* ---- gen ------------------------------------------------------------------------------------------ */

typedef struct gen_job {
    const ctx *c;
    const source *s;
    int n;
    int nvar;
    int dev;
    atomic_int next;
    atomic_int failed;
    atomic_llong postings;
    atomic_llong audio_ms; /* audio fingerprinted by this run */
    int rate;
} gen_job;

static void fpv_path(const ctx *c, const source *s, int dev, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s/%s.fpv", c->dir, dev ? "dev" : "src", s->sha);
}

/* Header of a cached file: magic, variants; then per variant: code, duration, n, hashes. */
static int fpv_nvar(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint32_t h[2] = {0, 0};
    const int ok = f && fread(h, sizeof h, 1, f) == 1 && h[0] == FPV_MAGIC;
    if (f)
        fclose(f);
    return ok ? (int)h[1] : -1;
}

static float *speed(const float *x, size_t n, int rate, double f, size_t *m)
{
    const size_t cap = (size_t)((double)n / f) + 64;
    float *y = malloc(cap * sizeof *y);
    if (!y)
        return NULL;
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_LQ, 0);
    size_t done = 0;
    soxr_error_t err = soxr_oneshot(rate * f, rate, 1, x, n, NULL, y, cap, &done, NULL, &q, NULL);
    if (err) {
        fprintf(stderr, "soxr: %s\n", err);
        free(y);
        return NULL;
    }
    *m = done;
    return y;
}

/* Writes one variant (transform c of y[0..n)) into f. */
static int gen_variant(sh_fp *fp, FILE *f, const float *y, size_t n, int v, int rate, float *tmp,
                       long long *np, double *secs)
{
    const int c = v % 4;
    for (size_t i = 0; i < n; i++) {
        const float s = c & 1 ? y[n - 1 - i] : y[i];
        tmp[i] = c & 2 && (i & 1) ? -s : s;
    }
    if (bench_fingerprint(fp, tmp, n))
        return -1;
    size_t nh;
    const sh_hash *h = sh_fp_hashes(fp, &nh);
    const uint32_t code = (uint32_t)v, cnt = (uint32_t)nh;
    const double dur = (double)n / rate;
    *np += (long long)nh;
    *secs += dur;
    return fwrite(&code, 4, 1, f) == 1 && fwrite(&dur, sizeof dur, 1, f) == 1 &&
                   fwrite(&cnt, 4, 1, f) == 1 && fwrite(h, sizeof *h, nh, f) == nh
               ? 0
               : -1;
}

/* Copies the `nvar` variant records of the cached file `path` (header skipped) to out. */
static int copy_variants(const char *path, int nvar, FILE *out)
{
    FILE *f = fopen(path, "rb");
    int rc = f && fseek(f, 8, SEEK_SET) == 0 ? 0 : -1;
    static const size_t fixed = 4 + sizeof(double) + 4;
    uint8_t head[16];
    sh_hash buf[4096];
    for (int v = 0; v < nvar && !rc; v++) {
        uint32_t n;
        rc = fread(head, fixed, 1, f) == 1 && fwrite(head, fixed, 1, out) == 1 ? 0 : -1;
        memcpy(&n, head + 4 + sizeof(double), 4);
        while (!rc && n) {
            const size_t k = n < 4096 ? n : 4096;
            rc = fread(buf, sizeof *buf, k, f) == k && fwrite(buf, sizeof *buf, k, out) == k ? 0
                                                                                          : -1;
            n -= (uint32_t)k;
        }
    }
    if (f)
        fclose(f);
    return rc;
}

/* The source's variants [0, g->nvar) in its cache file; a file holding fewer keeps those and
 * gets the rest appended (gen --hours 100 then --hours 1000 fingerprints each variant once). */
static int gen_one(gen_job *g, sh_fp *fp, const source *s)
{
    char path[PATH_LEN], tmp[PATH_LEN + 8];
    fpv_path(g->c, s, g->dev, path, sizeof path);
    const int have = fpv_nvar(path) < 0 ? 0 : fpv_nvar(path);
    if (have >= g->nvar)
        return 0;
    float *x;
    size_t n;
    if (bench_decode(s->path, g->rate, &x, &n))
        return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    const uint32_t hdr[2] = {FPV_MAGIC, (uint32_t)g->nvar};
    int rc = f && fwrite(hdr, sizeof hdr, 1, f) == 1 ? 0 : -1;
    if (!rc && have)
        rc = copy_variants(path, have, f);
    long long np = 0;
    double secs = 0;
    for (int j = have / 4; !rc && 4 * j < g->nvar; j++) {
        const double fac = factor_of(4 * j);
        size_t m = n;
        float *y = fac == 1 ? x : speed(x, n, g->rate, fac, &m);
        float *t = malloc((m ? m : 1) * sizeof *t);
        for (int c = 0; y && t && !rc && c < 4 && 4 * j + c < g->nvar; c++)
            if (4 * j + c >= have)
                rc = gen_variant(fp, f, y, m, 4 * j + c, g->rate, t, &np, &secs);
        rc = rc || !y || !t ? -1 : 0;
        free(t);
        if (y != x)
            free(y);
    }
    free(x);
    if (f && fclose(f))
        rc = -1;
    if (!rc && rename(tmp, path))
        rc = -1;
    if (rc)
        fprintf(stderr, "%s: could not generate %s\n", s->path, path);
    atomic_fetch_add(&g->postings, np);
    atomic_fetch_add(&g->audio_ms, (long long)(secs * 1000));
    return rc;
}

static void *gen_thread(void *ud)
{
    gen_job *g = ud;
    sh_fp_config fc;
    sh_fp_config_default(&fc);
    sh_fp *fp = NULL;
    sh_err e = {0};
    if (sh_fp_new(&fc, &fp, &e)) {
        fprintf(stderr, "%s\n", sh_err_text(&e));
        atomic_store(&g->failed, 1);
        return NULL;
    }
    for (int i; (i = atomic_fetch_add(&g->next, 1)) < g->n;)
        if (gen_one(g, fp, &g->s[i]))
            atomic_store(&g->failed, 1);
    sh_fp_free(fp);
    return NULL;
}

/* Adds the audio hours fingerprinted to *done. */
static int gen_run(const ctx *c, const source *s, int n, int nvar, int dev, int threads,
                   double *done)
{
    sh_fp_config fc;
    sh_fp_config_default(&fc);
    gen_job g = {.c = c, .s = s, .n = n, .nvar = nvar, .dev = dev, .rate = fc.rate};
    atomic_init(&g.next, 0);
    atomic_init(&g.failed, 0);
    atomic_init(&g.postings, 0);
    atomic_init(&g.audio_ms, 0);
    pthread_t th[16];
    int nt = threads < 1 ? 1 : threads > 16 ? 16 : threads;
    for (int i = 0; i < nt; i++)
        pthread_create(&th[i], NULL, gen_thread, &g);
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    *done += (double)atomic_load(&g.audio_ms) / 3.6e6;
    return atomic_load(&g.failed) ? -1 : 0;
}

static int cmd_gen(int argc, char **argv)
{
    ctx c;
    if (ctx_init(&c, argc, argv))
        return 1;
    const double hours = strtod(arg(argc, argv, "--hours", "1000"), NULL);
    const int threads = (int)strtol(arg(argc, argv, "--threads", "2"), NULL, 10);
    const int nsrc = sources_for(&c, hours);
    char d[PATH_LEN];
    double base = 0, used = 0;
    for (int i = 0; i < c.nsrc; i++) {
        base += c.src[i].dur / 3600;
        used += i < nsrc ? c.src[i].dur / 3600 : 0;
    }
    if (nsrc < 0) {
        fprintf(stderr, "%.1f h of sources cannot reach %.0f h with %d variants (%.1f h needed)\n",
                base, hours, NVARIANTS, hours / variant_hours());
        ctx_free(&c);
        return 1;
    }
    snprintf(d, sizeof d, "%s/src", c.dir);
    int rc = mkdirs(d);
    snprintf(d, sizeof d, "%s/dev", c.dir);
    rc = rc || mkdirs(d);
    const double t0 = sh_clock_mono_s();
    struct timespec c0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    double g_hours_done = 0;
    rc = rc || gen_run(&c, c.dev, c.ndev, 1, 1, threads, &g_hours_done) ||
         gen_run(&c, c.src, nsrc, NVARIANTS, 0, threads, &g_hours_done);
    struct timespec c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    const double wall = sh_clock_mono_s() - t0,
                 cpu = (double)(c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) / 1e9;
    printf("distractors: the first %d of %d sources (%.2f of %.1f h of real music), %d variants "
           "each (speed 1.2^-5..1.2^5, reversed, inverted) = %.0f h: fingerprints cached in %s "
           "(this run: %.0f s wall, %.0f s CPU, %.0f audio hours fingerprinted = %.0f x real "
           "time per CPU second)\n",
           nsrc, c.nsrc, used, base, NVARIANTS, used * variant_hours(), c.dir, wall, cpu,
           g_hours_done, cpu > 0 ? g_hours_done * 3600 / cpu : 0);
    ctx_free(&c);
    return rc ? 1 : 0;
}

/* ---- build ------------------------------------------------------------------------------------------ */

typedef struct shards {
    sh_shard *s[NSHARDS];
    sh_shard_batch *b[NSHARDS];
    size_t inb[NSHARDS];
} shards;

static int put(shards *sh, const char *id, double dur, const sh_hash *h, size_t n)
{
    sh_err e = {0};
    const uint32_t k = sh_shard_of(id, strlen(id), NSHARDS);
    sh_shard_track t = {.id = id, .version = 1, .duration_s = dur};
    int rc = 0;
    if (!sh->b[k])
        rc = sh_shard_batch_begin(sh->s[k], 0, &sh->b[k], &e);
    if (!rc)
        rc = sh_shard_batch_put(sh->b[k], &t, h, n, &e);
    if (!rc && (sh->inb[k] += n) >= BATCH_POSTINGS) {
        rc = sh_shard_batch_commit(sh->b[k], NULL, &e);
        sh->b[k] = NULL;
        sh->inb[k] = 0;
    }
    if (rc)
        fprintf(stderr, "%s: %s\n", id, sh_err_text(&e));
    return rc;
}

/* Reads variant records of one cached file, putting those with code < nvar and wanted. */
typedef struct want {
    int v_lo, v_hi; /* variants [v_lo, v_hi) */
} want;

static int put_file(shards *sh, const ctx *c, const source *s, int dev, want w, double *hours,
                    size_t *np, int *ntracks, double upto)
{
    char path[PATH_LEN], id[300];
    fpv_path(c, s, dev, path, sizeof path);
    FILE *f = fopen(path, "rb");
    uint32_t hdr[2];
    if (!f) {
        /* gen could not decode this source (e.g. a video container the manifest's probe
         * took for audio): left out; the size is reached with the next sources */
        fprintf(stderr, "%s: no fingerprints for %s (gen could not decode it): left out\n", path,
                s->path);
        return 1;
    }
    if (fread(hdr, sizeof hdr, 1, f) != 1 || hdr[0] != FPV_MAGIC) {
        fprintf(stderr, "%s: damaged (run gen)\n", path);
        fclose(f);
        return -1;
    }
    int rc = 0;
    sh_hash *h = NULL;
    for (uint32_t i = 0; i < hdr[1] && !rc && *hours < upto; i++) {
        uint32_t code, n;
        double dur;
        if (fread(&code, 4, 1, f) != 1 || fread(&dur, sizeof dur, 1, f) != 1 ||
            fread(&n, 4, 1, f) != 1 || n > (64u << 20)) {
            rc = -1;
            break;
        }
        if ((int)code < w.v_lo || (int)code >= w.v_hi) {
            rc = fseek(f, (long)n * (long)sizeof *h, SEEK_CUR);
            continue;
        }
        sh_hash *nh = realloc(h, (n ? n : 1) * sizeof *h);
        if (!nh || fread(nh, sizeof *h, n, f) != n) {
            h = nh ? nh : h;
            rc = -1;
            break;
        }
        h = nh;
        if (dev)
            snprintf(id, sizeof id, "%s", s->id);
        else
            snprintf(id, sizeof id, "%s@v%u:speed%.3f%s%s", s->id, code, factor_of((int)code),
                     code & 1 ? ":rev" : "", code & 2 ? ":inv" : "");
        rc = put(sh, id, dur, h, n);
        *hours += dur / 3600;
        *np += n;
        ++*ntracks;
    }
    free(h);
    fclose(f);
    if (rc)
        fprintf(stderr, "%s: could not read its variants\n", path);
    return rc;
}

static void shards_path(const ctx *c, double hours, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/shards-%gh", c->dir, hours);
}

static int shards_open(const char *dir, uint32_t stop, shards *sh)
{
    char path[PATH_LEN];
    sh_shard_opts o;
    sh_shard_opts_default(&o);
    o.stop_postings = stop;
    memset(sh, 0, sizeof *sh);
    for (int k = 0; k < NSHARDS; k++) {
        sh_err e = {0};
        snprintf(path, sizeof path, "%s/shard-%d", dir, k);
        if (sh_shard_open(path, &o, &sh->s[k], &e)) {
            fprintf(stderr, "%s: %s\n", path, sh_err_text(&e));
            return -1;
        }
    }
    return 0;
}

static void shards_close(shards *sh)
{
    for (int k = 0; k < NSHARDS; k++) {
        sh_shard_batch_abort(sh->b[k]);
        sh_shard_free(sh->s[k]);
    }
}

/* Bytes in use (the files also hold LMDB's free pages: `file`), postings and ranges over the 8
 * shards. */
static int shards_stats(shards *sh, uint64_t *used, uint64_t *file, uint64_t *postings,
                        uint64_t *ranges)
{
    *used = *file = *postings = *ranges = 0;
    for (int k = 0; k < NSHARDS; k++) {
        sh_shard_stats st;
        sh_err e = {0};
        if (sh_shard_stats_get(sh->s[k], &st, &e)) {
            fprintf(stderr, "stats: %s\n", sh_err_text(&e));
            return -1;
        }
        *used += st.used_bytes;
        *file += st.file_bytes;
        *postings += st.postings;
        *ranges += st.ranges;
    }
    return 0;
}

static int do_build(const ctx *c, double hours, const char *dir)
{
    shards sh;
    char path[PATH_LEN + 16];
    if (mkdirs(dir) || shards_open(dir, 0, &sh))
        return -1;
    const double t0 = sh_clock_mono_s();
    double h = 0;
    size_t np = 0;
    int nt = 0, rc = 0;
    for (int i = 0; i < c->ndev && !rc; i++)
        rc = put_file(&sh, c, &c->dev[i], 1, (want){0, 1}, &h, &np, &nt, 1e9);
    /* (source, variant) order up to the hours asked for: gen makes a source's variants together,
     * so a size is buildable as soon as the sources before it are done */
    for (int i = 0; i < c->nsrc && !rc && h < hours; i++)
        if ((rc = put_file(&sh, c, &c->src[i], 0, (want){0, NVARIANTS}, &h, &np, &nt, hours)) > 0)
            rc = 0; /* left out */
    for (int k = 0; k < NSHARDS && !rc; k++) {
        sh_err e = {0};
        if (sh.b[k] && (rc = sh_shard_batch_commit(sh.b[k], NULL, &e)))
            fprintf(stderr, "commit: %s\n", sh_err_text(&e));
        sh.b[k] = NULL;
    }
    const double secs = sh_clock_mono_s() - t0;
    uint64_t used = 0, file = 0, posts = 0, ranges = 0;
    rc = rc || h < hours * 0.99 || shards_stats(&sh, &used, &file, &posts, &ranges);
    if (h < hours * 0.99)
        fprintf(stderr, "only %.1f h of fingerprints cached: run gen --hours %g\n", h, hours);
    shards_close(&sh);
    if (rc)
        return -1;
    snprintf(path, sizeof path, "%s/built", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "hours=%.2f tracks=%d postings=%llu used_bytes=%llu ranges=%llu build_s=%.1f "
            "file_bytes=%llu\n",
            h, nt, (unsigned long long)posts, (unsigned long long)used, (unsigned long long)ranges,
            secs, (unsigned long long)file);
    return fclose(f) ? -1 : 0;
}

static int cmd_build(int argc, char **argv)
{
    ctx c;
    if (ctx_init(&c, argc, argv))
        return 1;
    const double hours = strtod(arg(argc, argv, "--hours", "10"), NULL);
    char dir[PATH_LEN], path[PATH_LEN + 16], line[512] = "";
    shards_path(&c, hours, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/built", dir);
    FILE *f = fopen(path, "r");
    int rc = 0;
    if (!f) {
        char cmd[PATH_LEN + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir); /* a build that stopped half way */
        if (system(cmd) != 0 || (rc = do_build(&c, hours, dir)) || !(f = fopen(path, "r")))
            rc = -1;
    }
    if (f) {
        if (!fgets(line, sizeof line, f))
            rc = -1;
        fclose(f);
    }
    double h = 0, bs = 0;
    unsigned long long posts = 0, used = 0, ranges = 0, file = 0;
    int nt = 0;
    /* file_bytes: records written since the shards' rewrite of big batches (older ones lack it) */
    const int got = rc ? 0
                       : sscanf(line,
                                "hours=%lf tracks=%d postings=%llu used_bytes=%llu ranges=%llu "
                                "build_s=%lf file_bytes=%llu",
                                &h, &nt, &posts, &used, &ranges, &bs, &file);
    char files[64] = "";
    if (got == 7)
        snprintf(files, sizeof files, "; files %.0f MB with LMDB's free pages", file / 1e6);
    if (got >= 6)
        printf("index %gh: %d tracks, %.1f h, %.1f M postings, %.0f MB in use = %.3f MB per audio "
               "hour (%.2f B/posting%s), %llu range blobs; built in %.0f s (%.1f s per audio "
               "hour) %s\n",
               hours, nt, h, posts / 1e6, used / 1e6, used / 1e6 / h, (double)used / posts, files,
               ranges, bs, bs / h, dir);
    ctx_free(&c);
    return rc ? 1 : 0;
}

/* ---- query ------------------------------------------------------------------------------------------ */

typedef struct query {
    sh_hash *h;
    size_t n;
    char file[256];
    char expected[256];
    int cond;
} query;

/* The recognizers' config: the defaults, query-mode tunables changed by --q-fanout N,
 * --q-ppw N (q_peaks_per_window), --q-variants N (q_max_variants), --q-scale-tol X, --q-jitter X
 * (to measure their cost and accuracy at scale without a rebuild). */
static void query_config(int argc, char **argv, sh_recognize_config *rc)
{
    sh_recognize_config_default(rc);
    sh_fp_config *f = &rc->fp;
    f->q_fanout = (int)strtol(arg(argc, argv, "--q-fanout", ""), NULL, 10);
    f->q_peaks_per_window = (int)strtol(arg(argc, argv, "--q-ppw", ""), NULL, 10);
    f->q_max_variants = (int)strtol(arg(argc, argv, "--q-variants", ""), NULL, 10);
    f->q_scale_tol = strtof(arg(argc, argv, "--q-scale-tol", "-1"), NULL);
    f->q_jitter = strtof(arg(argc, argv, "--q-jitter", "-1"), NULL);
    sh_fp_config d;
    sh_fp_config_query(&d);
    f->q_fanout = f->q_fanout > 0 ? f->q_fanout : d.q_fanout;
    f->q_peaks_per_window = f->q_peaks_per_window > 0 ? f->q_peaks_per_window : d.q_peaks_per_window;
    f->q_max_variants = f->q_max_variants > 0 ? f->q_max_variants : d.q_max_variants;
    f->q_scale_tol = f->q_scale_tol >= 0 ? f->q_scale_tol : d.q_scale_tol;
    f->q_jitter = f->q_jitter >= 0 ? f->q_jitter : d.q_jitter;
}

static int load_queries(const char *qdir, int len, const sh_recognize_config *rc, query *q,
                        int *nq, char conds[][48], int *ncond)
{
    char path[PATH_LEN], line[LINE_LEN];
    snprintf(path, sizeof path, "%s/ground_truth.csv", qdir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    sh_recognizer *rz = NULL;
    sh_err e = {0};
    if (sh_recognizer_new(rc, &rz, &e)) {
        fprintf(stderr, "%s\n", sh_err_text(&e));
        fclose(f);
        return -1;
    }
    *nq = 0;
    while (fgets(line, sizeof line, f) && *nq < MAX_QUERIES) {
        char *fl[8];
        if (bench_split(line, fl, 8) < 5 || strtol(fl[3], NULL, 10) != len)
            continue;
        snprintf(path, sizeof path, "%s/%s", qdir, fl[0]);
        if (sh_recognize_clip_file(rz, path, &e)) {
            fprintf(stderr, "%s: %s\n", path, sh_err_text(&e));
            continue;
        }
        size_t nh;
        const sh_hash *h = sh_recognize_hashes(rz, &nh);
        query *x = &q[*nq];
        x->h = malloc((nh ? nh : 1) * sizeof *h);
        if (!x->h)
            break;
        memcpy(x->h, h, nh * sizeof *h);
        x->n = nh;
        snprintf(x->expected, sizeof x->expected, "%s", fl[1]);
        snprintf(x->file, sizeof x->file, "%s", fl[0]);
        const char *cond = strcmp(fl[1], "NONE") ? fl[4] : "negative";
        int ci = 0;
        while (ci < *ncond && strcmp(conds[ci], cond))
            ci++;
        if (ci == *ncond && *ncond < MAX_CONDS)
            snprintf(conds[(*ncond)++], 48, "%s", cond);
        x->cond = ci;
        (*nq)++;
    }
    fclose(f);
    sh_recognizer_free(rz);
    return *nq ? 0 : -1;
}

/* CPU of the whole process (every lane's thread; the pool's idle threads cost nothing). */
static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One query's lookups: shard k's best answer (confidence, id) and votes, filled by lane `lane`'s
 * recognizer; a lane's answer strings are copied before its next shard. */
typedef struct shard_job {
    sh_recognizer **rz; /* one per lane */
    shards *sh;
    const sh_hash *h;
    size_t n;
    sh_recognize_answer a[NSHARDS][4]; /* strings not valid: id[][] holds the ids */
    size_t na[NSHARDS];
    char id[NSHARDS][4][300];
    sh_recognize_stats st[NSHARDS];
    const query *q;
    int failed;
} shard_job;

static void answer_shard(void *ud, size_t k, int lane)
{
    shard_job *j = ud;
    sh_recognize_answer *a = j->a[k];
    sh_recognize_stats *st = &j->st[k];
    sh_err e = {0};
    j->na[k] = 0;
    if (sh_recognize_shard(j->rz[lane], j->sh->s[k], j->h, j->n, 4, a, &j->na[k], st, &e)) {
        fprintf(stderr, "lookup: %s\n", sh_err_text(&e));
        j->failed = 1;
        return;
    }
    for (size_t i = 0; i < j->na[k]; i++)
        snprintf(j->id[k][i], sizeof j->id[k][i], "%s", a[i].id);
}

/* One query against every shard, as the edge answers it (the shards on up to `lanes` threads of
 * the pool): the most confident answer's id ("" for no match) into best. */
static int answer(sh_recognizer **rz, sh_pool *pool, int lanes, shards *sh, const query *q,
                  sh_hash *scratch, int sort_once, char *best, size_t cap, size_t *votes,
                  int verbose, double min_conf, FILE *dump, const sh_recognize_config *rcfg,
                  int judge_all)
{
    double conf = -1;
    best[0] = '\0';
    const sh_hash *h = q->h;
    if (sort_once) { /* the hashes as a client sends them, sorted once for the 8 lookups */
        sh_err e = {0};
        memcpy(scratch, q->h, q->n * sizeof *scratch);
        if (sh_shard_query_sort(scratch, q->n, &e)) {
            fprintf(stderr, "sort: %s\n", sh_err_text(&e));
            return -1;
        }
        h = scratch;
    }
    static shard_job j;
    j = (shard_job){.rz = rz, .sh = sh, .h = h, .n = q->n, .q = q};
    sh_pool_run(pool, NSHARDS, lanes, answer_shard, &j);
    if (j.failed)
        return -1;
    /* every shard's answers, judged against the other shards' candidates (--judge all) */
    sh_recognize_answer all[NSHARDS * 4];
    size_t from[NSHARDS * 4], slot[NSHARDS * 4], na = 0;
    for (int k = 0; k < NSHARDS; k++) {
        *votes += j.st[k].votes;
        for (size_t i = 0; i < j.na[k]; i++) {
            from[na] = (size_t)k;
            slot[na] = i;
            all[na++] = j.a[k][i];
        }
    }
    if (judge_all)
        sh_recognize_judge(rcfg, all, na, from, j.st, NSHARDS);
    if (dump)
        for (size_t i = 0; i < na; i++)
            fprintf(dump, "%s,%s,%zu,%zu,%s,%d,%d,%d,%.4f,%.4f,%zu,%d,%d\n", q->file,
                    q->expected, from[i], slot[i], j.id[from[i]][slot[i]], all[i].score,
                    all[i].landmarks, all[i].spread, all[i].confidence, all[i].scale,
                    j.st[from[i]].votes, all[i].noise, all[i].noise_landmarks);
    int bk = -1;
    size_t bi = 0;
    for (size_t i = 0; i < na; i++) /* shard order: the same answer whatever the lanes */
        if (all[i].confidence >= min_conf && all[i].confidence > conf) {
            conf = all[i].confidence;
            bk = (int)from[i];
            bi = i;
            snprintf(best, cap, "%s", j.id[from[i]][slot[i]]);
        }
/* --verbose: every wrong answer (a false match, or a positive answered by another track) */
    if (verbose && bk >= 0 && strcmp(best, q->expected)) {
        const sh_recognize_answer *a = &all[bi];
        printf("  wrong: %s (expected %s) -> %s shard %d score %d landmarks %d spread %d "
               "confidence %.3f scale %.3f offset %.1f s\n",
               q->file, q->expected, best, bk, a->score, a->landmarks, a->spread, a->confidence,
               a->scale, a->offset_s);
    }
    return 0;
}

static int cmd_query(int argc, char **argv)
{
    ctx c;
    if (ctx_init(&c, argc, argv))
        return 1;
    const double hours = strtod(arg(argc, argv, "--hours", "10"), NULL);
    const int reps = (int)strtol(arg(argc, argv, "--reps", "2"), NULL, 10);
    const int len = (int)strtol(arg(argc, argv, "--len", "10"), NULL, 10);
    const uint32_t stop = (uint32_t)strtoul(arg(argc, argv, "--stop", "0"), NULL, 10);
    const int sort_once = strcmp(arg(argc, argv, "--sort", "once"), "per-shard") != 0;
    const int lanes = (int)strtol(arg(argc, argv, "--threads", "1"), NULL, 10);
    const int verbose = !strcmp(arg(argc, argv, "--verbose", "0"), "1");
    const int judge_all = strcmp(arg(argc, argv, "--judge", "all"), "shard") != 0;
    char qdef[1200], dir[PATH_LEN];
    snprintf(qdef, sizeof qdef, "%s/q1536/queries/dev", c.data);
    const char *qdir = arg(argc, argv, "--queries", qdef);
    shards_path(&c, hours, dir, sizeof dir);
    static query q[MAX_QUERIES];
    static char conds[MAX_CONDS][48];
    int nq = 0, ncond = 0;
    shards sh;
    sh_recognizer *rz[NSHARDS] = {NULL};
    sh_pool *pool = NULL;
    sh_err e = {0};
    sh_recognize_config rcfg;
    query_config(argc, argv, &rcfg);
    const double min_conf = rcfg.match.min_confidence;
    FILE *dump = NULL;
    if (strcmp(arg(argc, argv, "--dump", ""), "")) { /* every candidate: rank everything */
        rcfg.match.min_confidence = 0.0;
        if (!(dump = fopen(arg(argc, argv, "--dump", ""), "w"))) {
            fprintf(stderr, "cannot write %s\n", arg(argc, argv, "--dump", ""));
            ctx_free(&c);
            return 1;
        }
        fprintf(dump, "query,expected,shard,rank,id,score,landmarks,spread,confidence,scale,"
                      "shard_votes,noise,noise_landmarks\n");
    }
    if (reps < 1 || lanes < 1 || lanes > NSHARDS ||
        load_queries(qdir, len, &rcfg, q, &nq, conds, &ncond) ||
        shards_open(dir, stop, &sh) || sh_pool_new(lanes - 1, &pool, &e)) {
        if (e.code)
            fprintf(stderr, "%s\n", sh_err_text(&e));
        ctx_free(&c);
        return 1;
    }
    for (int i = 0; i < lanes; i++)
        if (sh_recognizer_new(&rcfg, &rz[i], &e)) {
            fprintf(stderr, "%s\n", sh_err_text(&e));
            ctx_free(&c);
            return 1;
        }
    double *ms = malloc((2 * (size_t)reps + 1) * sizeof *ms * (size_t)nq), *cpu = ms + nq * reps;
    double *vq = cpu + nq * reps; /* votes of each query (first pass) */
    double cond_cpu[MAX_CONDS] = {0}, cond_votes[MAX_CONDS] = {0};
    size_t maxn = 1;
    for (int i = 0; i < nq; i++)
        maxn = q[i].n > maxn ? q[i].n : maxn;
    sh_hash *scratch = malloc(maxn * sizeof *scratch);
    if (!scratch) {
        free(ms);
        ms = NULL;
    }
    int ok[MAX_CONDS] = {0}, tot[MAX_CONDS] = {0}, n = 0, rc = 0;
    size_t votes = 0, hashes = 0;
    char best[300];
    for (int r = 0; r < reps && !rc && ms; r++)
        for (int i = 0; i < nq && !rc; i++) {
            size_t v = 0;
            const double t0 = sh_clock_mono_s(), c0 = process_cpu_s();
            rc = answer(rz, pool, lanes, &sh, &q[i], scratch, sort_once, best, sizeof best, &v,
                        verbose && r == 0, min_conf, r == 0 ? dump : NULL, &rcfg, judge_all);
            cpu[n] = (process_cpu_s() - c0) * 1e3;
            cond_cpu[q[i].cond] += cpu[n];
            ms[n++] = (sh_clock_mono_s() - t0) * 1e3;
            if (r)
                continue;
            vq[i] = (double)v;
            cond_votes[q[i].cond] += (double)v;
            votes += v;
            hashes += q[i].n;
            tot[q[i].cond]++;
            ok[q[i].cond] += !strcmp(q[i].expected, "NONE") ? best[0] != '\0'
                                                             : !strcmp(best, q[i].expected);
        }
    if (!rc && ms) {
        int pos = 0, pos_ok = 0, neg = 0, fm = 0;
        for (int k = 0; k < ncond; k++) {
            if (!strcmp(conds[k], "negative")) {
                neg += tot[k];
                fm += ok[k];
            } else {
                pos += tot[k];
                pos_ok += ok[k];
            }
        }
        printf("stop_postings %s, sort %s, %d thread(s), judged %s: ",
               stop ? arg(argc, argv, "--stop", "") : "default", sort_once ? "once" : "per shard",
               lanes, judge_all ? "across shards" : "per shard");
        printf("queries %gh (%d s): %d queries x %d, %.0f hashes and %.0f votes per query; wall p50 "
               "%.2f ms p99 %.2f ms | CPU p50 %.2f ms p99 %.2f ms; top-1 %.2f %% (%d/%d), false "
               "matches %d/%d\n",
               hours, len, nq, reps, (double)hashes / nq, (double)votes / nq, bench_pct(ms, n, 0.5),
               bench_pct(ms, n, 0.99), bench_pct(cpu, n, 0.5), bench_pct(cpu, n, 0.99),
               100.0 * pos_ok / (pos ? pos : 1), pos_ok, pos, fm, neg);
        printf("  per condition:");
        for (int k = 0; k < ncond; k++)
            if (strcmp(conds[k], "negative"))
                printf(" %s %.0f%%", conds[k], 100.0 * ok[k] / (tot[k] ? tot[k] : 1));
        printf("\n  votes per query: p50 %.0f p99 %.0f\n", bench_pct(vq, nq, 0.5),
               bench_pct(vq, nq, 0.99));
        if (verbose) {
            printf("  mean CPU ms / votes per condition:");
            for (int k = 0; k < ncond; k++)
                printf(" %s %.2f/%.0f", conds[k], cond_cpu[k] / (tot[k] ? tot[k] : 1) / reps,
                       cond_votes[k] / (tot[k] ? tot[k] : 1));
            printf("\n");
        }
    }
    if (dump)
        fclose(dump);
    free(ms);
    free(scratch);
    for (int i = 0; i < lanes; i++)
        sh_recognizer_free(rz[i]);
    sh_pool_free(pool);
    shards_close(&sh);
    for (int i = 0; i < nq; i++)
        free(q[i].h);
    ctx_free(&c);
    return rc || !ms ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_scale gen|build|query --data DIR --hours H ... (see the "
                        "file's comment)\n");
        return 2;
    }
    return !strcmp(argv[1], "gen")     ? cmd_gen(argc, argv)
           : !strcmp(argv[1], "build") ? cmd_build(argc, argv)
           : !strcmp(argv[1], "query") ? cmd_query(argc, argv)
                                       : 2;
}
