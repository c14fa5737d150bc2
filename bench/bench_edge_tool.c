/* bench_edge_tool — the C side of bench/bench_edge.sh (the edge benchmark).
 *
 *   bench_edge_tool gen   --data DIR --out FILE [--hours H] [--threads N] [--max-tracks N]
 *   bench_edge_tool write --dsn DSN --in FILE [--from I] [--to J] [--rate R] [--edge URL] [--pid P]
 *   bench_edge_tool match --url URL --queries DIR [--len S] [--clients N] [--seconds S] [--label L]
 *                         [--pid P] [--hashes 1] [--max N]
 * --pid: the edge's process id, for its CPU time and run-queue wait over the phase.
 *
 * gen    the index inputs: every dev-corpus track (DIR/corpus/dev) decoded once, then resampled
 *        in-process with libsoxr at speed factors 1, 0.95, 1.05, 0.938, 1.062, ... (pitch and tempo
 *        shifted together; none within 5 % of 1, so a query's ±2 % shift stays nearest its
 *        original) until the audio reaches H hours (default 100), each copy a new track id
 *        ("FILE@speedF"; factor 1 keeps the manifest's file name, which the query set's ground
 *        truth names). Fingerprinted with the index config (the worker's) and stored as posting
 *        blobs (sh_fpblob) in FILE. A FILE whose header matches (fp version, corpus manifest,
 *        hours, tracks) is kept: reruns skip the generation. --max-tracks takes only the first N
 *        corpus tracks (the smoke test's tiny index).
 * write  writes records [I, J) of FILE into the primary through sh_primary (the workers' write
 *        path): pipelined batches of 64 at full speed, or one track per transaction at R tracks/s.
 *        With --edge, a poller reads the edge's per-shard positions (/metrics) every few ms; once
 *        the edge holds every write it prints the write rate, the edge's apply rate (first to last
 *        delta applied) and each track's commit (write returned) → applied (first poll showing
 *        its shard at or past its change seq) lag, p50/p99/max.
 * match  POSTs every S-second query of DIR/ground_truth.csv to URL/v1/match as audio, from N
 *        client threads (one keep-alive connection each), or with --hashes the clip's hashes in
 *        the binary form (sh_qhash, fingerprinted beforehand as a device would): one pass in
 *        order (N = 1, no --seconds), or round robin until --seconds run out (--max N: N queries
 *        taken evenly). Prints matches/s, client-side latency p50/p99, the server's elapsed_ms
 *        p50, and top-1 accuracy (right track on positives, any match on negatives = a false
 *        match).
 *
 * Benchmark code: problems go to stderr and the exit status is 1.
 */
#include "bench_util.h"
#include "sh_clock.h"
#include "sh_fp.h"
#include "sh_fpblob.h"
#include "sh_primary.h"
#include "sh_qhash.h"
#include "sh_recognize.h"
#include "sh_shardmap.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <soxr.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    MAX_TRACKS = 512,
    MAX_FACTORS = 200,
    MAX_QUERIES = 8192,
    LINE_LEN = 2048,
    ID_LEN = 300,
    MAX_SHARDS = 64,
    WRITE_BATCH = 64,
    RESP_MAX = 1 << 20,
    POLL_MS = 5,
};
#define CACHE_MAGIC "soundhash-bench-edge 1"

/* ---- small helpers -------------------------------------------------------------------------- */

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

static long arg_long(int argc, char **argv, const char *name, long def)
{
    const char *v = arg(argc, argv, name, NULL);
    return v ? strtol(v, NULL, 10) : def;
}

static double arg_double(int argc, char **argv, const char *name, double def)
{
    const char *v = arg(argc, argv, name, NULL);
    return v ? strtod(v, NULL) : def;
}

static int read_all(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 0, n = 0;
    char *b = NULL;
    size_t got;
    do {
        if (sh_vec_reserve(&b, &cap, n + 65536, SH_VEC_NOCAP)) {
            fclose(f);
            free(b);
            return -1;
        }
        got = fread(b + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *buf = b;
    *len = n;
    return 0;
}

/* A process's CPU time (user + system, every thread) and the time its threads waited on a run
 * queue for a CPU (the schedstat run delay: on a shared machine, the share of wall time a process
 * was ready but not running), both in ms; -1 when unknown. */
typedef struct proc_times {
    double cpu_ms, wait_ms;
} proc_times;

static proc_times proc_read(long pid)
{
    proc_times pt = {-1, -1};
    char path[64], buf[1024];
    if (pid <= 0)
        return pt;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f && fgets(buf, sizeof buf, f)) {
        const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
        unsigned long long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                        &st) == 2)
            pt.cpu_ms = (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
    }
    if (f)
        fclose(f);
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    double wait_ns = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        char tp[300];
        unsigned long long run, delay;
        snprintf(tp, sizeof tp, "/proc/%ld/task/%s/schedstat", pid, de->d_name);
        FILE *t = de->d_name[0] != '.' ? fopen(tp, "r") : NULL;
        if (t && fscanf(t, "%llu %llu", &run, &delay) == 2)
            wait_ns += (double)delay;
        if (t)
            fclose(t);
    }
    if (d) {
        closedir(d);
        pt.wait_ms = wait_ns / 1e6;
    }
    return pt;
}

/* ---- gen ------------------------------------------------------------------------------------ */

typedef struct rec {
    char id[ID_LEN];
    double dur;
    uint32_t n;       /* postings */
    uint8_t *blob;
    size_t blob_len;
} rec;

typedef struct corpus {
    char file[MAX_TRACKS][256];
    float *x[MAX_TRACKS];
    size_t n[MAX_TRACKS];
    int nt;
    double hours; /* of the original tracks */
} corpus;

typedef struct gen_job {
    const corpus *c;
    const double *factors;
    int nf;
    rec *out;            /* nf * c->nt records, factor-major */
    _Atomic int next;
    _Atomic int failed;
    int rate;
} gen_job;

/* Speed factors: 1, then 1 ∓ (0.05 + 0.012 j) alternately until the audio reaches `hours`. */
static int make_factors(double base_hours, double hours, double *f)
{
    int n = 0;
    double h = 0;
    f[n++] = 1.0;
    h += base_hours;
    for (int j = 0; h < hours && n < MAX_FACTORS; j++) {
        const double d = 0.05 + 0.012 * (j / 2);
        const double v = (j % 2 == 0) ? 1.0 - d : 1.0 + d;
        if (v < 0.5)
            break;
        f[n++] = v;
        h += base_hours / v;
    }
    return n;
}

static int load_corpus(const char *data, int rate, int max_tracks, corpus *c,
                       uint64_t *manifest_hash)
{
    char path[2200], line[LINE_LEN];
    snprintf(path, sizeof path, "%s/corpus/dev/manifest.csv", data);
    char *all;
    size_t len;
    if (read_all(path, &all, &len))
        return -1;
    *manifest_hash = sh_fnv1a64(all, len);
    free(all);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    c->nt = 0;
    c->hours = 0;
    while (fgets(line, sizeof line, f) && c->nt < max_tracks) {
        char *fl[8];
        if (bench_split(line, fl, 8) < 2 || !strcmp(fl[0], "track_id"))
            continue;
        snprintf(c->file[c->nt], sizeof c->file[0], "%s", fl[1]);
        c->nt += c->file[c->nt][0] != '\0';
    }
    fclose(f);
    for (int i = 0; i < c->nt; i++) {
        snprintf(path, sizeof path, "%s/corpus/dev/%s", data, c->file[i]);
        if (bench_decode(path, rate, &c->x[i], &c->n[i]))
            return -1;
        c->hours += (double)c->n[i] / rate / 3600.0;
    }
    return c->nt ? 0 : -1;
}

/* Speed-shifts x by factor f (f > 1: faster and higher) into a new buffer of *m samples. */
static float *speed_shift(const float *x, size_t n, int rate, double f, size_t *m)
{
    const size_t cap = (size_t)((double)n / f) + 64;
    float *y = malloc(cap * sizeof *y);
    if (!y)
        return NULL;
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_MQ, 0);
    size_t done = 0;
    soxr_error_t err =
        soxr_oneshot(rate * f, rate, 1, x, n, NULL, y, cap, &done, NULL, &q, NULL);
    if (err) {
        fprintf(stderr, "soxr: %s\n", err);
        free(y);
        return NULL;
    }
    *m = done;
    return y;
}

static int gen_one(gen_job *g, sh_fp *fp, int item)
{
    const int fi = item / g->c->nt, ti = item % g->c->nt;
    const double f = g->factors[fi];
    rec *r = &g->out[item];
    const float *x = g->c->x[ti];
    size_t n = g->c->n[ti];
    float *y = NULL;
    if (f != 1.0 && !(y = speed_shift(x, n, g->rate, f, &n)))
        return -1;
    int rc = bench_fingerprint(fp, y ? y : x, n);
    free(y);
    if (rc)
        return -1;
    size_t nh;
    const sh_hash *h = sh_fp_hashes(fp, &nh);
    sh_err e = {0};
    if (sh_fpblob_encode(h, nh, 0, &r->blob, &r->blob_len, &e)) {
        fprintf(stderr, "fpblob: %s\n", sh_err_text(&e));
        return -1;
    }
    if (f == 1.0)
        snprintf(r->id, sizeof r->id, "%s", g->c->file[ti]);
    else
        snprintf(r->id, sizeof r->id, "%s@speed%.3f", g->c->file[ti], f);
    r->n = (uint32_t)nh;
    r->dur = (double)n / g->rate;
    return 0;
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
    const int total = g->nf * g->c->nt;
    for (int i; !atomic_load(&g->failed) && (i = atomic_fetch_add(&g->next, 1)) < total;)
        if (gen_one(g, fp, i))
            atomic_store(&g->failed, 1);
    sh_fp_free(fp);
    return NULL;
}

static int write_cache(const char *out, const char *header, const rec *r, int n)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "%s\n%d\n", header, n);
    for (int i = 0; i < n; i++) {
        const uint32_t idl = (uint32_t)strlen(r[i].id), bl = (uint32_t)r[i].blob_len;
        fwrite(&idl, sizeof idl, 1, f);
        fwrite(r[i].id, 1, idl, f);
        fwrite(&r[i].dur, sizeof r[i].dur, 1, f);
        fwrite(&r[i].n, sizeof r[i].n, 1, f);
        fwrite(&bl, sizeof bl, 1, f);
        fwrite(r[i].blob, 1, bl, f);
    }
    if (fclose(f) != 0 || rename(tmp, out) != 0) {
        fprintf(stderr, "%s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

/* The header line names what the file was built from: a change of any makes it stale. */
static void cache_header(char *buf, size_t len, uint64_t manifest, double hours, int max_tracks)
{
    int n = snprintf(buf, len, CACHE_MAGIC " fp_version=%d manifest=%016" PRIx64 " hours=%.1f",
                     SH_FP_VERSION, manifest, hours);
    if (max_tracks < MAX_TRACKS && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " tracks=%d", max_tracks);
}

static int header_matches(const char *path, const char *header)
{
    char line[512];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int ok = fgets(line, sizeof line, f) && !strncmp(line, header, strlen(header)) &&
             line[strlen(header)] == '\n';
    fclose(f);
    return ok;
}

static void summarise(const rec *r, int n, const char *what)
{
    double h = 0, p = 0, b = 0;
    for (int i = 0; i < n; i++) {
        h += r[i].dur / 3600.0;
        p += r[i].n;
        b += (double)r[i].blob_len;
    }
    printf("index: %d tracks, %.1f h of audio, %.2f M postings, %.1f MB of blobs (%s)\n", n, h,
           p / 1e6, b / 1e6, what);
}

static int load_cache(const char *path, rec **out, int *n);

static int cmd_gen(int argc, char **argv)
{
    const char *data = arg(argc, argv, "--data", NULL), *out = arg(argc, argv, "--out", NULL);
    const double hours = arg_double(argc, argv, "--hours", 100);
    const long threads = arg_long(argc, argv, "--threads", 2);
    long max_tracks = arg_long(argc, argv, "--max-tracks", MAX_TRACKS);
    if (max_tracks <= 0 || max_tracks > MAX_TRACKS)
        max_tracks = MAX_TRACKS;
    if (!data || !out || threads < 1 || threads > 16) {
        fprintf(stderr, "usage: gen --data DIR --out FILE [--hours H] [--threads N] "
                        "[--max-tracks N]\n");
        return 1;
    }
    sh_fp_config fc;
    sh_fp_config_default(&fc);
    char mpath[2200], *m;
    size_t mlen;
    snprintf(mpath, sizeof mpath, "%s/corpus/dev/manifest.csv", data);
    if (read_all(mpath, &m, &mlen))
        return 1;
    char header[256];
    cache_header(header, sizeof header, sh_fnv1a64(m, mlen), hours, (int)max_tracks);
    free(m);
    if (header_matches(out, header)) {
        rec *r;
        int n;
        if (load_cache(out, &r, &n))
            return 1;
        summarise(r, n, "cached: generation skipped");
        return 0;
    }
    const double t0 = sh_clock_mono_s();
    static corpus c;
    uint64_t mh;
    if (load_corpus(data, fc.rate, (int)max_tracks, &c, &mh))
        return 1;
    double factors[MAX_FACTORS];
    gen_job g = {.c = &c, .factors = factors, .rate = fc.rate};
    g.nf = make_factors(c.hours, hours, factors);
    const int total = g.nf * c.nt;
    g.out = calloc((size_t)total, sizeof *g.out);
    pthread_t th[16];
    for (long i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, gen_thread, &g);
    for (long i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    int rc = atomic_load(&g.failed) ? -1 : write_cache(out, header, g.out, total);
    if (rc == 0) {
        char what[128];
        double lo = 1, hi = 1;
        for (int i = 0; i < g.nf; i++) {
            lo = factors[i] < lo ? factors[i] : lo;
            hi = factors[i] > hi ? factors[i] : hi;
        }
        snprintf(what, sizeof what, "generated in %.1f s on %ld threads: %d speed factors "
                 "%.3f..%.3f", sh_clock_mono_s() - t0, threads, g.nf, lo, hi);
        summarise(g.out, total, what);
    }
    for (int i = 0; i < total; i++)
        free(g.out[i].blob);
    free(g.out);
    for (int i = 0; i < c.nt; i++)
        free(c.x[i]);
    return rc ? 1 : 0;
}

/* ---- reading the cache ---------------------------------------------------------------------- */

static int read_rec(FILE *f, rec *r)
{
    uint32_t idl, bl;
    if (fread(&idl, sizeof idl, 1, f) != 1 || idl == 0 || idl >= ID_LEN ||
        fread(r->id, 1, idl, f) != idl)
        return -1;
    r->id[idl] = '\0';
    if (fread(&r->dur, sizeof r->dur, 1, f) != 1 || fread(&r->n, sizeof r->n, 1, f) != 1 ||
        fread(&bl, sizeof bl, 1, f) != 1 || bl > SH_PRIMARY_BLOB_MAX)
        return -1;
    r->blob_len = bl;
    r->blob = malloc(bl ? bl : 1);
    return r->blob && fread(r->blob, 1, bl, f) == bl ? 0 : -1;
}

static int load_cache(const char *path, rec **out, int *n)
{
    char line[512];
    FILE *f = fopen(path, "rb");
    int count = 0;
    if (!f || !fgets(line, sizeof line, f) || strncmp(line, CACHE_MAGIC, strlen(CACHE_MAGIC)) ||
        !fgets(line, sizeof line, f) || (count = (int)strtol(line, NULL, 10)) <= 0 ||
        count > 1000000) {
        fprintf(stderr, "%s: not an index cache (run gen)\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    rec *r = calloc((size_t)count, sizeof *r);
    int i = 0;
    while (r && i < count && read_rec(f, &r[i]) == 0)
        i++;
    fclose(f);
    if (i != count) {
        fprintf(stderr, "%s: truncated at record %d of %d\n", path, i, count);
        return -1;
    }
    *out = r;
    *n = count;
    return 0;
}

/* ---- write ---------------------------------------------------------------------------------- */

typedef struct sample {
    double t; /* monotonic ms when the answer arrived */
    int64_t pos[MAX_SHARDS];
} sample;

typedef struct poller {
    char url[2048];
    CURL *c;
    sample *v;
    size_t n, cap;
    _Atomic bool stop;
    pthread_mutex_t lock;
    char *buf;
    size_t len;
} poller;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    poller *pl = ud;
    const size_t len = sz * nm;
    if (pl->len + len >= RESP_MAX)
        return 0;
    memcpy(pl->buf + pl->len, p, len);
    pl->len += len;
    pl->buf[pl->len] = '\0';
    return len;
}

/* One GET of /metrics: the soundhash_edge_shard_position{shard="N"} gauges into s->pos. */
static int poll_once(poller *pl, sample *s)
{
    pl->len = 0;
    if (curl_easy_perform(pl->c) != CURLE_OK)
        return -1;
    s->t = sh_clock_mono_ms();
    for (int i = 0; i < MAX_SHARDS; i++)
        s->pos[i] = -1;
    static const char key[] = "soundhash_edge_shard_position{shard=\"";
    for (const char *p = pl->buf; (p = strstr(p, key));) {
        p += sizeof key - 1;
        char *end;
        long sh = strtol(p, &end, 10);
        if (strncmp(end, "\"} ", 3) || sh < 0 || sh >= MAX_SHARDS)
            continue;
        s->pos[sh] = (int64_t)strtod(end + 3, NULL);
    }
    return 0;
}

static void *poll_thread(void *ud)
{
    poller *pl = ud;
    while (!atomic_load(&pl->stop)) {
        sample s;
        if (poll_once(pl, &s) == 0) {
            pthread_mutex_lock(&pl->lock);
            if (!sh_vec_reserve(&pl->v, &pl->cap, pl->n + 1, SH_VEC_NOCAP))
                pl->v[pl->n++] = s;
            pthread_mutex_unlock(&pl->lock);
        }
        sh_clock_sleep_ms(POLL_MS, NULL, NULL);
    }
    return NULL;
}

static int poller_start(poller *pl, const char *edge, pthread_t *th)
{
    snprintf(pl->url, sizeof pl->url, "%s/metrics", edge);
    pl->buf = malloc(RESP_MAX);
    pl->c = curl_easy_init();
    if (!pl->buf || !pl->c)
        return -1;
    pthread_mutex_init(&pl->lock, NULL);
    curl_easy_setopt(pl->c, CURLOPT_URL, pl->url);
    curl_easy_setopt(pl->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(pl->c, CURLOPT_WRITEDATA, pl);
    curl_easy_setopt(pl->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(pl->c, CURLOPT_TIMEOUT, 10L);
    return pthread_create(th, NULL, poll_thread, pl) ? -1 : 0;
}

/* A write: the track's shard, its change seq, when the write returned (monotonic ms). */
typedef struct wrote {
    int shard;
    int64_t seq;
    double t;
    uint32_t postings;
} wrote;

/* First sample (from index `from`) whose shard position reached seq; -1 when none yet. */
static long applied_at(const poller *pl, size_t from, int shard, int64_t seq)
{
    for (size_t i = from; i < pl->n; i++)
        if (pl->v[i].pos[shard] >= seq)
            return (long)i;
    return -1;
}

static int all_applied(poller *pl, const wrote *w, int n)
{
    pthread_mutex_lock(&pl->lock);
    int ok = pl->n > 0;
    for (int i = 0; ok && i < n; i++)
        ok = pl->v[pl->n - 1].pos[w[i].shard] >= w[i].seq;
    pthread_mutex_unlock(&pl->lock);
    return ok;
}

static void sh_track_write_of(const rec *r, sh_track_write *tw)
{
    memset(tw, 0, sizeof *tw);
    tw->external_id = r->id;
    tw->tenant = "bench";
    tw->duration_s = r->dur;
    tw->fp_version = SH_FP_VERSION;
    tw->version = 1;
    tw->n_hashes = r->n;
    tw->fp_blob = r->blob;
    tw->fp_blob_len = r->blob_len;
}

/* Full speed: pipelined batches (each track its own transaction). */
static int write_bulk(sh_primary *db, const rec *r, int n, wrote *w, int nshards)
{
    sh_track_write tw[WRITE_BATCH];
    int res[WRITE_BATCH];
    int64_t seq[WRITE_BATCH];
    sh_err e = {0};
    for (int i = 0; i < n; i += WRITE_BATCH) {
        const int k = n - i < WRITE_BATCH ? n - i : WRITE_BATCH;
        for (int j = 0; j < k; j++)
            sh_track_write_of(&r[i + j], &tw[j]);
        if (sh_primary_write_tracks(db, tw, (size_t)k, res, seq, &e)) {
            fprintf(stderr, "write: %s\n", sh_err_text(&e));
            return -1;
        }
        const double t = sh_clock_mono_ms();
        for (int j = 0; j < k; j++) {
            if (res[j]) {
                fprintf(stderr, "write %s: %s\n", r[i + j].id, sh_err_name(res[j]));
                return -1;
            }
            const char *id = r[i + j].id;
            w[i + j] = (wrote){(int)sh_shard_of(id, strlen(id), (uint32_t)nshards), seq[j], t,
                               r[i + j].n};
        }
    }
    return 0;
}

/* Paced: one track per transaction, at `rate` tracks per second. */
static int write_paced(sh_primary *db, const rec *r, int n, double rate, wrote *w, int nshards)
{
    const double t0 = sh_clock_mono_ms();
    sh_err e = {0};
    for (int i = 0; i < n; i++) {
        const double due = t0 + 1000.0 * i / rate, now = sh_clock_mono_ms();
        if (due > now)
            sh_clock_sleep_ms(due - now, NULL, NULL);
        sh_track_write tw;
        sh_track_write_of(&r[i], &tw);
        int64_t seq = 0;
        if (sh_primary_write_track(db, &tw, &seq, &e)) {
            fprintf(stderr, "write %s: %s\n", r[i].id, sh_err_text(&e));
            return -1;
        }
        w[i] = (wrote){(int)sh_shard_of(r[i].id, strlen(r[i].id), (uint32_t)nshards), seq,
                       sh_clock_mono_ms(), r[i].n};
    }
    return 0;
}

/* The edge's CPU and run-queue wait over a phase of `wall_ms`, per `n` units of `unit`. */
static void report_proc(proc_times a, proc_times b, double wall_ms, double n, const char *unit,
                        double per)
{
    if (a.cpu_ms < 0 || b.cpu_ms < 0)
        return;
    const double cpu = b.cpu_ms - a.cpu_ms, wait = b.wait_ms - a.wait_ms;
    printf("edge process: CPU %.1f s (%.0f %% of one core), %.2f ms per %s; its threads waited "
           "%.1f s for a CPU (run queue: the machine's other load)\n",
           cpu / 1000, 100 * cpu / wall_ms, cpu / n * per, unit, wait / 1000);
}

/* Lags (ms) per write and the edge's apply window; prints the figures. */
static void report_lag(const poller *pl, const wrote *w, int n, double tw0, double tw1)
{
    double *lag = calloc((size_t)n, sizeof *lag);
    double postings = 0, t_last = 0, t_first = -1;
    for (int i = 0; i < n; i++) {
        long s = applied_at(pl, 0, w[i].shard, w[i].seq);
        if (s < 0)
            continue; /* cannot happen after all_applied */
        lag[i] = pl->v[s].t - w[i].t;
        if (lag[i] < 0)
            lag[i] = 0;
        t_last = pl->v[s].t > t_last ? pl->v[s].t : t_last;
        postings += w[i].postings;
    }
    for (size_t i = 0; i < pl->n && t_first < 0; i++)
        for (int k = 0; k < MAX_SHARDS && t_first < 0; k++)
            if (pl->v[i].pos[k] > pl->v[0].pos[k])
                t_first = pl->v[i].t;
    const double ws = (tw1 - tw0) / 1000.0, as = (t_last - (t_first < 0 ? tw0 : t_first)) / 1000.0;
    printf("wrote %d tracks, %.2f M postings in %.2f s: %.1f tracks/s, %.2f M postings/s into "
           "the primary\n",
           n, postings / 1e6, ws, n / ws, postings / ws / 1e6);
    printf("edge applied them in %.2f s (first to last delta seen): %.2f M postings/s; all "
           "applied %.2f s after the first write\n",
           as, as > 0 ? postings / as / 1e6 : 0.0, (t_last - tw0) / 1000.0);
    const double p50 = bench_pct(lag, n, 0.5), p99 = bench_pct(lag, n, 0.99);
    printf("commit -> applied lag: p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d tracks, edge "
           "polled every %d ms)\n",
           p50, p99, lag[n - 1], n, POLL_MS);
    free(lag);
}

static int cmd_write(int argc, char **argv)
{
    const char *dsn = arg(argc, argv, "--dsn", NULL), *in = arg(argc, argv, "--in", NULL);
    const char *edge = arg(argc, argv, "--edge", NULL);
    const long pid = arg_long(argc, argv, "--pid", 0);
    const double rate = arg_double(argc, argv, "--rate", 0);
    const int nshards = (int)arg_long(argc, argv, "--nshards", SH_SHARDS_DEFAULT);
    rec *r;
    int nr;
    if (!dsn || !in || nshards < 1 || nshards > MAX_SHARDS) {
        fprintf(stderr, "usage: write --dsn DSN --in FILE [--from I] [--to J] [--rate R] "
                        "[--edge URL] [--nshards N]\n");
        return 1;
    }
    if (load_cache(in, &r, &nr))
        return 1;
    const int from = (int)arg_long(argc, argv, "--from", 0);
    const int to = (int)arg_long(argc, argv, "--to", nr);
    if (from < 0 || to > nr || from >= to) {
        fprintf(stderr, "--from/--to: 0 <= I < J <= %d\n", nr);
        return 1;
    }
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = dsn;
    sh_primary *db = NULL;
    sh_err e = {0};
    if (sh_primary_new(&pc, &db, &e)) {
        fprintf(stderr, "%s\n", sh_err_text(&e));
        return 1;
    }
    static poller pl;
    pthread_t th;
    if (edge && poller_start(&pl, edge, &th)) {
        fprintf(stderr, "poller: cannot start\n");
        return 1;
    }
    while (edge && !all_applied(&pl, NULL, 0)) /* a first sample: the positions before */
        sh_clock_sleep_ms(POLL_MS, NULL, NULL);
    const int n = to - from;
    wrote *w = calloc((size_t)n, sizeof *w);
    const proc_times p0 = proc_read(pid);
    const double tw0 = sh_clock_mono_ms();
    int rc = rate > 0 ? write_paced(db, r + from, n, rate, w, nshards)
                      : write_bulk(db, r + from, n, w, nshards);
    const double tw1 = sh_clock_mono_ms(), deadline = tw1 + 600e3;
    while (rc == 0 && edge && !all_applied(&pl, w, n))
        if (sh_clock_mono_ms() > deadline) {
            fprintf(stderr, "the edge did not apply every write within 600 s\n");
            rc = -1;
        } else {
            sh_clock_sleep_ms(POLL_MS, NULL, NULL);
        }
    if (edge) {
        atomic_store(&pl.stop, true);
        pthread_join(th, NULL);
        if (rc == 0) {
            double postings = 0;
            for (int i = 0; i < n; i++)
                postings += w[i].postings;
            report_lag(&pl, w, n, tw0, tw1);
            report_proc(p0, proc_read(pid), sh_clock_mono_ms() - tw0, postings / 1e6,
                        "M postings", 1);
        }
        curl_easy_cleanup(pl.c);
        free(pl.buf);
        free(pl.v);
    }
    sh_primary_free(db);
    for (int i = 0; i < nr; i++)
        free(r[i].blob);
    free(r);
    free(w);
    return rc ? 1 : 0;
}

/* ---- match ---------------------------------------------------------------------------------- */

typedef struct query {
    char *body;
    size_t len;
    char expected[256]; /* "NONE" for a negative */
} query;

typedef struct client_run {
    const char *url;
    const query *q;
    int nq;
    int start;          /* first query of this client */
    int one_pass;       /* 1: each query once, then stop */
    double deadline;    /* monotonic ms (when !one_pass) */
    const char *content_type;
    double *lat, *srv;  /* per request, ms */
    int n, cap, ok, pos, neg, falsepos, errors;
    double hashes; /* sum of the answers' "hashes" (query hashes looked up) */
} client_run;

typedef struct resp {
    char *buf;
    size_t len;
} resp;

static size_t on_resp(char *p, size_t sz, size_t nm, void *ud)
{
    resp *r = ud;
    const size_t len = sz * nm;
    if (r->len + len >= RESP_MAX)
        return 0;
    memcpy(r->buf + r->len, p, len);
    r->len += len;
    r->buf[r->len] = '\0';
    return len;
}

/* Scores one answer: right track on a positive, any match on a negative (a false match). */
static void score(client_run *c, const query *q, const char *body)
{
    json_t *o = json_loads(body, 0, NULL);
    json_t *m = o ? json_object_get(o, "match") : NULL;
    const char *id = m && json_is_object(m) ? json_string_value(json_object_get(m, "track_id"))
                                            : NULL;
    json_t *el = o ? json_object_get(o, "elapsed_ms") : NULL;
    if (!o) {
        c->errors++;
        return;
    }
    c->srv[c->n - 1] = json_is_number(el) ? json_number_value(el) : 0;
    json_t *nh = json_object_get(o, "hashes");
    c->hashes += json_is_number(nh) ? json_number_value(nh) : 0;
    if (!strcmp(q->expected, "NONE")) {
        c->neg++;
        c->falsepos += id != NULL;
    } else {
        c->pos++;
        c->ok += id && !strcmp(id, q->expected);
    }
    json_decref(o);
}

static void *client_thread(void *ud)
{
    client_run *c = ud;
    char url[2100], ct[128];
    snprintf(url, sizeof url, "%s/v1/match", c->url);
    snprintf(ct, sizeof ct, "Content-Type: %s", c->content_type);
    CURL *h = curl_easy_init();
    resp rb = {malloc(RESP_MAX), 0};
    struct curl_slist *hdr = curl_slist_append(NULL, ct);
    hdr = curl_slist_append(hdr, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_resp);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &rb);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    for (int i = 0; c->n < c->cap; i++) {
        if (c->one_pass ? i >= c->nq : sh_clock_mono_ms() >= c->deadline)
            break;
        const query *q = &c->q[(c->start + i) % c->nq];
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->len);
        rb.len = 0;
        const double t0 = sh_clock_mono_ms();
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK || status != 200) {
            c->errors++;
            continue;
        }
        c->lat[c->n++] = sh_clock_mono_ms() - t0;
        score(c, q, rb.buf);
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    free(rb.buf);
    return NULL;
}

/* Replaces an audio body by the clip's hashes in the binary form (sh_qhash), fingerprinted here as
 * a client does before it sends: the audio never leaves the device. Adds the seconds to *fp_s. */
static int to_hashes(sh_recognizer *rz, const char *path, query *q, double *fp_s)
{
    sh_err e = {0};
    const double t0 = sh_clock_mono_s();
    if (sh_recognize_clip_mem(rz, q->body, q->len, &e)) {
        fprintf(stderr, "%s: %s\n", path, sh_err_text(&e));
        return -1;
    }
    size_t n;
    const sh_hash *h = sh_recognize_hashes(rz, &n);
    uint8_t *buf;
    size_t len;
    if (sh_qhash_encode(SH_FP_VERSION, h, n, &buf, &len, &e)) {
        fprintf(stderr, "%s: %s\n", path, sh_err_text(&e));
        return -1;
    }
    *fp_s += sh_clock_mono_s() - t0;
    free(q->body);
    q->body = (char *)buf;
    q->len = len;
    return 0;
}

/* 1 when a ground-truth line is a `len`-second query (fl filled), else 0. */
static int gt_row(char *line, int len, char **fl)
{
    return bench_split(line, fl, 8) >= 4 && strcmp(fl[0], "query_file") != 0 &&
           strtol(fl[3], NULL, 10) == len;
}

/* The `len`-second queries of qdir/ground_truth.csv (at most `max`, taken evenly across the file,
 * which lists negatives first), each file read whole into memory (or, with rz, turned into its
 * hashes). */
static int load_queries(const char *qdir, int len, int max, sh_recognizer *rz, query **out,
                        int *n)
{
    double fp_s = 0;
    size_t bytes = 0;
    char path[4200], line[LINE_LEN], *fl[8];
    snprintf(path, sizeof path, "%s/ground_truth.csv", qdir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    int all = 0, row = 0, k = 0;
    while (fgets(line, sizeof line, f))
        all += gt_row(line, len, fl);
    const int stride = all > max ? all / max : 1;
    rewind(f);
    query *q = calloc(MAX_QUERIES, sizeof *q);
    while (q && fgets(line, sizeof line, f) && k < max) {
        if (!gt_row(line, len, fl) || row++ % stride != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", qdir, fl[0]);
        snprintf(q[k].expected, sizeof q[k].expected, "%s", fl[1]);
        if (read_all(path, &q[k].body, &q[k].len) || (rz && to_hashes(rz, path, &q[k], &fp_s))) {
            fclose(f);
            return -1;
        }
        bytes += q[k].len;
        k++;
    }
    fclose(f);
    if (k)
        printf("%d queries of %d s, %.1f KB per request body on average%s", k, len,
               (double)bytes / k / 1024, rz ? "" : "\n");
    if (rz && k)
        printf(" (hashes, fingerprinted by the client in %.1f ms per query)\n", 1e3 * fp_s / k);
    *out = q;
    *n = k;
    return k ? 0 : -1;
}

static void report_match(const char *label, client_run *c, int nc, double secs)
{
    int n = 0, ok = 0, pos = 0, neg = 0, fp = 0, err = 0;
    double hashes = 0;
    for (int i = 0; i < nc; i++)
        n += c[i].n;
    double *lat = malloc((size_t)(n ? n : 1) * sizeof *lat);
    double *srv = malloc((size_t)(n ? n : 1) * sizeof *srv);
    int k = 0;
    for (int i = 0; i < nc; i++) {
        memcpy(lat + k, c[i].lat, (size_t)c[i].n * sizeof *lat);
        memcpy(srv + k, c[i].srv, (size_t)c[i].n * sizeof *srv);
        k += c[i].n;
        ok += c[i].ok, pos += c[i].pos, neg += c[i].neg, fp += c[i].falsepos, err += c[i].errors;
        hashes += c[i].hashes;
    }
    printf("%s: %d requests in %.1f s = %.1f matches/s; latency p50 %.1f ms, p99 %.1f ms "
           "(server elapsed_ms p50 %.1f, %.0f query hashes on average); top-1 %.2f %% (%d / %d), "
           "false matches %d / %d, errors %d\n",
           label, n, secs, n / secs, bench_pct(lat, n, 0.5), bench_pct(lat, n, 0.99),
           bench_pct(srv, n, 0.5), n ? hashes / n : 0.0, pos ? 100.0 * ok / pos : 0.0, ok, pos,
           fp, neg, err);
    free(lat);
    free(srv);
}

static int cmd_match(int argc, char **argv)
{
    const char *url = arg(argc, argv, "--url", NULL), *qdir = arg(argc, argv, "--queries", NULL);
    const char *label = arg(argc, argv, "--label", "match");
    const int len = (int)arg_long(argc, argv, "--len", 10);
    const int clients = (int)arg_long(argc, argv, "--clients", 1);
    const long pid = arg_long(argc, argv, "--pid", 0);
    const bool hashes = arg(argc, argv, "--hashes", NULL) != NULL;
    long max = arg_long(argc, argv, "--max", MAX_QUERIES);
    if (max <= 0 || max > MAX_QUERIES)
        max = MAX_QUERIES;
    const double seconds = arg_double(argc, argv, "--seconds", 0);
    if (!url || !qdir || clients < 1 || clients > 256) {
        fprintf(stderr, "usage: match --url URL --queries DIR [--len S] [--clients N] "
                        "[--seconds S] [--label L] [--pid P] [--hashes 1] [--max N]\n");
        return 1;
    }
    query *q;
    int nq;
    sh_recognizer *rz = NULL;
    sh_err e = {0};
    if (hashes && sh_recognizer_new(NULL, &rz, &e)) {
        fprintf(stderr, "%s\n", sh_err_text(&e));
        return 1;
    }
    int lrc = load_queries(qdir, len, (int)max, rz, &q, &nq);
    sh_recognizer_free(rz);
    if (lrc)
        return 1;
    client_run *c = calloc((size_t)clients, sizeof *c);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    const proc_times p0 = proc_read(pid);
    const double t0 = sh_clock_mono_ms();
    for (int i = 0; i < clients; i++) {
        c[i] = (client_run){.url = url, .q = q, .nq = nq, .start = i * nq / clients,
                            .one_pass = seconds <= 0, .deadline = t0 + seconds * 1000,
                            .content_type = hashes ? SH_QHASH_CONTENT_TYPE
                                                   : "application/octet-stream",
                            .cap = 1 << 20};
        c[i].lat = malloc((size_t)c[i].cap * sizeof(double));
        c[i].srv = malloc((size_t)c[i].cap * sizeof(double));
        pthread_create(&th[i], NULL, client_thread, &c[i]);
    }
    for (int i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    const double wall = sh_clock_mono_ms() - t0;
    report_match(label, c, clients, wall / 1000.0);
    int errors = 0, done = 0;
    for (int i = 0; i < clients; i++)
        done += c[i].n;
    report_proc(p0, proc_read(pid), wall, done ? done : 1, "match", 1);
    for (int i = 0; i < clients; i++) {
        errors += c[i].errors;
        free(c[i].lat);
        free(c[i].srv);
    }
    for (int i = 0; i < nq; i++)
        free(q[i].body);
    free(q);
    free(c);
    free(th);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_edge_tool gen|write|match ... (see the file's comment)\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = !strcmp(argv[1], "gen")     ? cmd_gen(argc, argv)
             : !strcmp(argv[1], "write") ? cmd_write(argc, argv)
             : !strcmp(argv[1], "match") ? cmd_match(argc, argv)
                                         : 2;
    curl_global_cleanup();
    return rc;
}
