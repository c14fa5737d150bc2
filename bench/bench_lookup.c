/* bench_lookup — the CPU of one 10 s hash query against the 100 h edge index, in-process: the
 * shard lookup (sh_shard_lookup: range blobs found and decoded, postings voted into a matcher)
 * against one shard (12.5 h, 1/8 of the index) and against all 8 shards, as the edge does it.
 * Prints wall-clock and thread-CPU p50/p99 and, where the kernel lets a process count its own instructions
 * (perf_event_open, user space only), instructions per query: the figure that stays put on a
 * loaded machine. `make bench-lookup` also runs it under callgrind for the same figure.
 *
 * usage: bench_lookup [--data DIR] [--idx FILE] [--work DIR] [--queries DIR] [--max-queries N]
 *                     [--reps R] [--shards K]
 *   --idx      the edge benchmark's index cache (default DATA/bench/edge-100h.idx; built by
 *              `bench_edge_tool gen`, i.e. `make bench-edge`)
 *   --work     where the 8 shards are built, split by sh_shard_of() like the edge's; a directory
 *              holding a previous build ("built" marker) is reused (default a fresh /tmp dir,
 *              removed at the end)
 *   --queries  query set (default DATA/q1536/queries/dev): its 10 s queries, fingerprinted once
 *              (query config) and cached in WORK/queries.bin
 *   --reps     passes over the queries for the wall-clock figures (default 1)
 *   --shards   only the K-shard figure (1 or 8; default both)
 *
 * Benchmark code: problems go to stderr and the exit status is 1.
 */
#include "bench_util.h"
#include "sh_clock.h"
#include "sh_fpblob.h"
#include "sh_match.h"
#include "sh_recognize.h"
#include "sh_shard.h"
#include "sh_shardmap.h"

#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { NSHARDS = 8, ID_LEN = 300, MAX_QUERIES = 4096, LINE_LEN = 2048, MAX_TRACKS_IDX = 1000000 };

#define IDX_MAGIC "soundhash-bench-edge 1"
#define QCACHE_MAGIC 0x314b4c48u /* "HLK1" */

typedef struct query {
    sh_hash *h;
    size_t n;
} query;

/* ---- building the shards from the edge benchmark's cache ---------------------------------------- */

typedef struct rec {
    char id[ID_LEN];
    double dur;
    uint8_t *blob;
    uint32_t blob_len;
} rec;

static int read_rec(FILE *f, rec *r)
{
    uint32_t idl, n, bl;
    if (fread(&idl, 4, 1, f) != 1 || idl == 0 || idl >= ID_LEN || fread(r->id, 1, idl, f) != idl)
        return -1;
    r->id[idl] = '\0';
    if (fread(&r->dur, sizeof r->dur, 1, f) != 1 || fread(&n, 4, 1, f) != 1 ||
        fread(&bl, 4, 1, f) != 1 || bl > (64u << 20))
        return -1;
    r->blob_len = bl;
    r->blob = malloc(bl ? bl : 1);
    return r->blob && fread(r->blob, 1, bl, f) == bl ? 0 : -1;
}

static rec *load_idx(const char *path, int *count)
{
    char line[512];
    FILE *f = fopen(path, "rb");
    int n = 0;
    if (!f || !fgets(line, sizeof line, f) || strncmp(line, IDX_MAGIC, strlen(IDX_MAGIC)) ||
        !fgets(line, sizeof line, f) || (n = (int)strtol(line, NULL, 10)) <= 0 ||
        n > MAX_TRACKS_IDX) {
        fprintf(stderr, "%s: not an index cache (make bench-edge builds it)\n", path);
        if (f)
            fclose(f);
        return NULL;
    }
    rec *r = calloc((size_t)n, sizeof *r);
    int i = 0;
    while (r && i < n && read_rec(f, &r[i]) == 0)
        i++;
    fclose(f);
    if (i != n) {
        fprintf(stderr, "%s: truncated at record %d of %d\n", path, i, n);
        return NULL;
    }
    *count = n;
    return r;
}

static int put_rec(sh_shard_batch *b, const rec *r, size_t *np)
{
    sh_hash *h = NULL;
    size_t n = 0;
    sh_err e = {0};
    sh_shard_track t = {.id = r->id, .version = 1, .duration_s = r->dur};
    int rc = sh_fpblob_decode(r->blob, r->blob_len, 0, &h, &n, &e);
    if (!rc)
        rc = sh_shard_batch_put(b, &t, h, n, &e);
    if (rc)
        fprintf(stderr, "%s: %s\n", r->id, sh_err_text(&e));
    *np += n;
    free(h);
    return rc;
}

/* Writes shard k's tracks in batches of 64 (as the edge's bulk apply sees them). */
static int build_shard(sh_shard *s, const rec *r, int nr, int k, size_t *np, double *hours)
{
    sh_err e = {0};
    sh_shard_batch *b = NULL;
    int inb = 0, rc = 0;
    for (int i = 0; i < nr && !rc; i++) {
        if ((int)sh_shard_of(r[i].id, strlen(r[i].id), NSHARDS) != k)
            continue;
        if (!b && (rc = sh_shard_batch_begin(s, 0, &b, &e)))
            break;
        *hours += r[i].dur / 3600;
        if ((rc = put_rec(b, &r[i], np)))
            break;
        if (++inb == 64) {
            rc = sh_shard_batch_commit(b, NULL, &e);
            b = NULL;
            inb = 0;
        }
    }
    if (!rc && b) {
        rc = sh_shard_batch_commit(b, NULL, &e);
        b = NULL;
    }
    sh_shard_batch_abort(b);
    if (rc && e.code)
        fprintf(stderr, "shard %d: %s\n", k, sh_err_text(&e));
    return rc;
}

static int build_all(const char *idx, const char *work)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/built", work);
    struct stat st;
    if (stat(path, &st) == 0)
        return 0;
    int nr = 0;
    rec *r = load_idx(idx, &nr);
    if (!r)
        return -1;
    double t0 = sh_clock_mono_s(), hours = 0;
    size_t np = 0;
    int rc = 0;
    for (int k = 0; k < NSHARDS && !rc; k++) {
        snprintf(path, sizeof path, "%s/shard-%d", work, k);
        sh_shard *s = NULL;
        sh_err e = {0};
        if ((rc = sh_shard_open(path, NULL, &s, &e)))
            fprintf(stderr, "%s: %s\n", path, sh_err_text(&e));
        else
            rc = build_shard(s, r, nr, k, &np, &hours);
        sh_shard_free(s);
    }
    for (int i = 0; i < nr; i++)
        free(r[i].blob);
    free(r);
    if (rc)
        return -1;
    printf("built 8 shards: %d tracks, %.1f h, %.2f M postings in %.0f s\n", nr, hours, np / 1e6,
           sh_clock_mono_s() - t0);
    snprintf(path, sizeof path, "%s/built", work);
    FILE *f = fopen(path, "w");
    return f && fclose(f) == 0 ? 0 : -1;
}

/* ---- the queries' hashes ------------------------------------------------------------------------ */

static int save_queries(const char *path, const query *q, int nq)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    const uint32_t hdr[2] = {QCACHE_MAGIC, (uint32_t)nq};
    fwrite(hdr, sizeof hdr, 1, f);
    for (int i = 0; i < nq; i++) {
        const uint32_t n = (uint32_t)q[i].n;
        fwrite(&n, 4, 1, f);
        fwrite(q[i].h, sizeof *q[i].h, q[i].n, f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

static int load_queries(const char *path, query *q, int *nq)
{
    FILE *f = fopen(path, "rb");
    uint32_t hdr[2];
    if (!f)
        return -1;
    int rc = fread(hdr, sizeof hdr, 1, f) == 1 && hdr[0] == QCACHE_MAGIC && hdr[1] <= MAX_QUERIES
                 ? 0
                 : -1;
    for (uint32_t i = 0; !rc && i < hdr[1]; i++) {
        uint32_t n;
        rc = fread(&n, 4, 1, f) == 1 && n <= (1u << 20) ? 0 : -1;
        q[i].n = n;
        q[i].h = rc ? NULL : malloc((n ? n : 1) * sizeof *q[i].h);
        rc = rc || !q[i].h || fread(q[i].h, sizeof *q[i].h, n, f) != n ? -1 : 0;
        *nq = (int)i + 1;
    }
    fclose(f);
    return rc;
}

/* Fingerprints the query set's 10 s queries with the recognizer's query config. */
static int make_queries(const char *qdir, query *q, int *nq)
{
    char path[3300], line[LINE_LEN];
    snprintf(path, sizeof path, "%s/ground_truth.csv", qdir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot read %s (make bench builds the query set)\n", path);
        return -1;
    }
    sh_recognize_config qc;
    sh_recognize_config_default(&qc);
    sh_recognizer *rz = NULL;
    sh_err e = {0};
    if (sh_recognizer_new(&qc, &rz, &e)) {
        fprintf(stderr, "%s\n", sh_err_text(&e));
        fclose(f);
        return -1;
    }
    *nq = 0;
    while (fgets(line, sizeof line, f) && *nq < MAX_QUERIES) {
        char *fl[8];
        if (bench_split(line, fl, 8) < 4 || strtol(fl[3], NULL, 10) < 8)
            continue; /* the header and 5 s queries */
        snprintf(path, sizeof path, "%s/%s", qdir, fl[0]);
        float *x;
        size_t n, nh;
        if (bench_decode(path, qc.fp.rate, &x, &n))
            continue;
        if (sh_recognize_clip_pcm(rz, x, n, &e) == 0) {
            const sh_hash *h = sh_recognize_hashes(rz, &nh);
            q[*nq].h = malloc((nh ? nh : 1) * sizeof *h);
            if (nh)
                memcpy(q[*nq].h, h, nh * sizeof *h);
            q[(*nq)++].n = nh;
        }
        free(x);
    }
    fclose(f);
    sh_recognizer_free(rz);
    return *nq ? 0 : -1;
}

/* ---- timing --------------------------------------------------------------------------------------- */

/* A counter of this thread's user-space instructions, or -1 where the kernel refuses it. */
static int insn_counter(void)
{
    struct perf_event_attr a = {.type = PERF_TYPE_HARDWARE,
                                .size = sizeof a,
                                .config = PERF_COUNT_HW_INSTRUCTIONS,
                                .exclude_kernel = 1,
                                .exclude_hv = 1};
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

static uint64_t insn_read(int fd)
{
    uint64_t v = 0;
    if (fd < 0 || read(fd, &v, sizeof v) != sizeof v)
        return 0;
    return v;
}

/* This thread's CPU time: on a loaded machine the wall clock also counts the waits for a core. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs every query against shards s[0..k) `reps` times; prints the figures. */
static int run(sh_shard **s, int k, const query *q, int nq, int reps, int ifd)
{
    sh_fp_config fc;
    sh_fp_config_default(&fc);
    sh_matcher *m = NULL;
    sh_err e = {0};
    double *ms = malloc(2 * (size_t)nq * (size_t)reps * sizeof *ms), *cpu = ms + (size_t)nq * reps;
    if (!ms || sh_matcher_new(&fc, &m, &e)) {
        free(ms);
        return -1;
    }
    size_t votes = 0, hashes = 0;
    uint64_t insn = 0;
    int n = 0;
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < nq; i++) {
            sh_matcher_reset(m);
            const uint64_t i0 = insn_read(ifd);
            const double t0 = sh_clock_mono_s(), c0 = thread_cpu_s();
            for (int j = 0; j < k; j++) {
                size_t v = 0;
                if (sh_shard_lookup(s[j], q[i].h, q[i].n, m, &v, &e)) {
                    fprintf(stderr, "lookup: %s\n", sh_err_text(&e));
                    sh_matcher_free(m);
                    free(ms);
                    return -1;
                }
                votes += r ? 0 : v;
            }
            cpu[n] = (thread_cpu_s() - c0) * 1e3;
            ms[n++] = (sh_clock_mono_s() - t0) * 1e3;
            insn += insn_read(ifd) - i0;
            hashes += r ? 0 : q[i].n;
        }
    }
    printf("10 s hash query, %d shard%s (%5.1f h): wall p50 %6.2f ms  p99 %6.2f ms | CPU p50 %6.2f "
           "ms  p99 %6.2f ms",
           k, k > 1 ? "s" : " ", 100.0 * k / NSHARDS, bench_pct(ms, n, 0.5),
           bench_pct(ms, n, 0.99), bench_pct(cpu, n, 0.5), bench_pct(cpu, n, 0.99));
    if (ifd >= 0)
        printf("  %6.2f M instructions", (double)insn / n / 1e6);
    printf("  (%d queries x %d, %.0f hashes, %.0f votes per query)\n", nq, reps,
           (double)hashes / nq, (double)votes / nq);
    sh_matcher_free(m);
    free(ms);
    return 0;
}

int main(int argc, char **argv)
{
    const char *env = getenv("SOUNDHASH_DATA_DIR"), *home = getenv("HOME");
    char data[1024], idx[1100] = "", qdir[1100] = "", work[1024] = "", path[1300];
    int max_q = MAX_QUERIES, reps = 1, only = 0;
    snprintf(data, sizeof data, "%s", env ? env : "");
    if (!env)
        snprintf(data, sizeof data, "%s/.cache/soundhash-data", home ? home : ".");
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--data") && v)
            snprintf(data, sizeof data, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--idx") && v)
            snprintf(idx, sizeof idx, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--work") && v)
            snprintf(work, sizeof work, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--queries") && v)
            snprintf(qdir, sizeof qdir, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--max-queries") && v)
            max_q = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && v)
            reps = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--shards") && v)
            only = (int)strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr,
                    "usage: %s [--data DIR] [--idx FILE] [--work DIR] [--queries DIR] "
                    "[--max-queries N] [--reps R] [--shards 1|8]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1 || max_q < 1)
        return 2;
    if (!idx[0])
        snprintf(idx, sizeof idx, "%s/bench/edge-100h.idx", data);
    if (!qdir[0])
        snprintf(qdir, sizeof qdir, "%s/q1536/queries/dev", data);
    const int tmp = !work[0];
    if (tmp) {
        snprintf(work, sizeof work, "/tmp/sh-bench-lookup.XXXXXX");
        if (!mkdtemp(work)) {
            perror("mkdtemp");
            return 1;
        }
    }
    mkdir(work, 0755);
    if (build_all(idx, work))
        return 1;
    static query q[MAX_QUERIES];
    int nq = 0;
    snprintf(path, sizeof path, "%s/queries.bin", work);
    if (load_queries(path, q, &nq)) {
        for (int i = 0; i < nq; i++)
            free(q[i].h);
        if (make_queries(qdir, q, &nq) || save_queries(path, q, nq))
            return 1;
    }
    nq = nq < max_q ? nq : max_q;
    sh_shard *s[NSHARDS] = {0};
    for (int k = 0; k < NSHARDS; k++) {
        sh_err e = {0};
        snprintf(path, sizeof path, "%s/shard-%d", work, k);
        if (sh_shard_open(path, NULL, &s[k], &e)) {
            fprintf(stderr, "%s: %s\n", path, sh_err_text(&e));
            return 1;
        }
    }
    const int ifd = insn_counter();
    int rc = 0;
    if (only != 8)
        rc |= run(s, 1, q, nq, reps, ifd);
    if (only != 1)
        rc |= run(s, NSHARDS, q, nq, reps, ifd);
    if (ifd >= 0)
        close(ifd);
    for (int k = 0; k < NSHARDS; k++)
        sh_shard_free(s[k]);
    for (int i = 0; i < MAX_QUERIES; i++)
        free(q[i].h);
    if (tmp) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", work);
    }
    return rc ? 1 : 0;
}
