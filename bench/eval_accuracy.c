/* eval_accuracy — accuracy and speed of the fingerprint + matcher on the real-music query sets.
 *
 *   build/bench/eval_accuracy [--data DIR] [--queries DIR] [--cache DIR] [--repeat N]
 *                             [--extra DIR] [--dump FILE] [--set key=value]...
 *
 * Indexes corpus/dev (manifest.csv) of the data dir (default $SOUNDHASH_DATA_DIR or
 * ~/.cache/soundhash-data) in memory, runs every query of <queries>/ground_truth.csv (default
 * <data>/q1536/queries/dev if present, else <data>/queries/dev) and prints:
 *   top-1 accuracy per degradation for 5 s and 10 s queries, false matches on negatives (NONE),
 *   postings per second of audio, extraction speed in x realtime on one core (fingerprinting only,
 *   on samples decoded beforehand; minimum over --repeat runs; bench_audio measures it with
 *   decoding), per-query latency p50/p99 (query fingerprint + lookups + voting, excluding
 *   decoding), and query hashes, postings voted and postings per lookup. All times are CPU time of
 *   the measuring thread (see now_s).
 * --extra DIR also indexes every file of DIR as a distractor track (never an expected answer):
 *   emulates a bigger shard, to see how votes, latency and accuracy grow with the index.
 * Decoded samples are cached as raw float files in --cache (default /tmp/sh-fp-cache) so reruns
 * while tuning skip decoding; the cache key is the file name plus its size and mtime.
 * --set changes a tunable for this run: fp fields by their sh_fp_config name (applied to index and
 * query configs), match fields by their sh_match_config name, e.g. --set peaks_per_window=6.
 * --set hash_mode=0 (pairs, fp_version 2 hashes), =1 (triplets, 3) or =2 (speed-invariant
 * triplets, 4) also resets the mode's query and match defaults (sh_fp_config_mode,
 * sh_match_config_for), so give it before other --set.
 */
#include "bench_util.h"
#include "sh_audio.h"
#include "sh_fp.h"
#include "sh_match.h"
#include "sh_memindex.h"
#include "sh_recognize.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_TRACKS 4096
#define MAX_QUERIES 65536
#define MAX_CONDS 64
#define LINE_MAX_LEN 4096

typedef struct audio {
    float *x;
    size_t n;
} audio;

typedef struct query {
    char file[256];
    char expected[256];
    char cond[64];
    double start_s, audio_off_s;
    int len_s;
} query;

/* snprintf that reports truncation (paths longer than the buffer are refused, not cut). */
#define FMT(buf, ...) (snprintf((buf), sizeof(buf), __VA_ARGS__) >= (int)sizeof(buf) ? -1 : 0)

/* CPU time of this thread: on a machine shared with other builds, wall time measures the
 * neighbours; CPU time measures us (it still includes cache and memory contention). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- tunables by name ------------------------------------------------------------------------ */

typedef struct knob {
    const char *name;
    char type; /* 'i' int, 'f' float, 'd' double, 'z' size_t */
    int which; /* 0 fp config, 1 match config */
    size_t off;
} knob;

#define FPI(f)                                                                                     \
    {                                                                                              \
#f, 'i', 0, offsetof(sh_fp_config, f)                                                      \
    }
#define FPF(f)                                                                                     \
    {                                                                                              \
#f, 'f', 0, offsetof(sh_fp_config, f)                                                      \
    }
static const knob knobs[] = {
    FPI(fft_size),
    FPI(hop),
    FPF(fmin_hz),
    FPF(fmax_hz),
    FPI(peak_df),
    FPI(peak_dt),
    FPF(floor_db),
    FPI(rank_half),
    FPI(peaks_per_window),
    FPI(dt_min),
    FPI(dt_max),
    FPF(df_max_oct),
    FPI(fanout),
    FPF(f1_steps),
    FPF(df_steps),
    FPF(dt_step),
    FPI(q_peaks_per_window),
    FPI(q_fanout),
    FPF(q_scale_tol),
    FPF(q_jitter),
    FPI(q_max_variants),
    FPI(hash_mode),
    FPF(t_df_steps),
    FPF(t_dt_steps),
    FPF(t_ratio_steps),
    FPF(s_u_steps),
    FPF(s_f_steps),
    FPF(q_speed_tol),
    {"coarse_frames", 'i', 1, offsetof(sh_match_config, coarse_frames)},
    {"tol_frames", 'i', 1, offsetof(sh_match_config, tol_frames)},
    {"max_scale", 'd', 1, offsetof(sh_match_config, max_scale)},
    {"scale_step", 'd', 1, offsetof(sh_match_config, scale_step)},
    {"refine", 'i', 1, offsetof(sh_match_config, refine)},
    {"min_score", 'i', 1, offsetof(sh_match_config, min_score)},
    {"min_confidence", 'd', 1, offsetof(sh_match_config, min_confidence)},
    {"dup_score", 'i', 1, offsetof(sh_match_config, dup_score)},
    {"coarse_scale_step", 'd', 1, offsetof(sh_match_config, coarse_scale_step)},
    {"min_landmarks", 'i', 1, offsetof(sh_match_config, min_landmarks)},
    {"min_spread", 'i', 1, offsetof(sh_match_config, min_spread)},
};

static int set_knob(const char *kv, sh_fp_config *fc, sh_fp_config *qc, sh_match_config *mc)
{
    const char *eq = strchr(kv, '=');
    if (!eq)
        return -1;
    const size_t len = (size_t)(eq - kv);
    for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
        const knob *k = &knobs[i];
        if (strlen(k->name) != len || strncmp(k->name, kv, len) != 0)
            continue;
        char *end;
        errno = 0;
        const double v = strtod(eq + 1, &end);
        if (errno || *end || end == eq + 1)
            return -1;
        if (k->which == 1) {
            char *p = (char *)mc + k->off;
            if (k->type == 'i')
                *(int *)p = (int)v;
            else
                *(double *)p = v;
            return 0;
        }
        if (!strcmp(k->name, "hash_mode")) {
            /* The mode brings its own query and match defaults; later --set override them. */
            sh_fp_config_mode(fc, (int)v);
            sh_fp_config_mode(qc, (int)v);
            sh_match_config_for(fc, mc);
            return 0;
        }
        sh_fp_config *cs[2] = {fc, qc};
        for (int j = 0; j < 2; j++) {
            char *p = (char *)cs[j] + k->off;
            if (k->type == 'i')
                *(int *)p = (int)v;
            else
                *(float *)p = (float)v;
        }
        return 0;
    }
    return -1;
}

/* ---- decoding with a cache ------------------------------------------------------------------- */

static int load_audio(const char *cache, const char *path, int rate, audio *a)
{
    struct stat st;
    if (stat(path, &st))
        return -1;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char cpath[1024];
    if (FMT(cpath, "%s/%s.%lld.%lld.%d.f32", cache, base, (long long)st.st_size,
            (long long)st.st_mtime, rate))
        return -1;
    FILE *f = fopen(cpath, "rb");
    if (f) {
        struct stat cs;
        if (fstat(fileno(f), &cs) == 0 && cs.st_size > 0) {
            a->n = (size_t)cs.st_size / sizeof(float);
            a->x = malloc(a->n * sizeof *a->x);
            if (a->x && fread(a->x, sizeof *a->x, a->n, f) == a->n) {
                fclose(f);
                return 0;
            }
            free(a->x);
        }
        fclose(f);
    }
    if (bench_decode(path, rate, &a->x, &a->n))
        return -1;
    mkdir(cache, 0755);
    f = fopen(cpath, "wb");
    if (f) {
        fwrite(a->x, sizeof *a->x, a->n, f);
        fclose(f);
    }
    return 0;
}

/* ---- CSV ------------------------------------------------------------------------------------- */

static int load_manifest(const char *path, char names[][256], int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[LINE_MAX_LEN];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        char *fl[8];
        if (bench_split(line, fl, 8) < 2 || strcmp(fl[0], "track_id") == 0)
            continue;
        snprintf(names[n++], 256, "%s", fl[1]);
    }
    fclose(f);
    return n;
}

static int load_queries(const char *path, query *q, int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[LINE_MAX_LEN];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        char *fl[8];
        if (bench_split(line, fl, 8) < 6 || strcmp(fl[0], "query_file") == 0)
            continue;
        snprintf(q[n].file, sizeof q[n].file, "%s", fl[0]);
        snprintf(q[n].expected, sizeof q[n].expected, "%s", fl[1]);
        q[n].start_s = strtod(fl[2], NULL);
        q[n].len_s = (int)strtol(fl[3], NULL, 10);
        snprintf(q[n].cond, sizeof q[n].cond, "%s", fl[4]);
        q[n].audio_off_s = strtod(fl[5], NULL);
        n++;
    }
    fclose(f);
    return n;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static int cond_index(char conds[][64], int *nconds, const char *c)
{
    for (int i = 0; i < *nconds; i++)
        if (strcmp(conds[i], c) == 0)
            return i;
    if (*nconds == MAX_CONDS)
        return MAX_CONDS - 1;
    snprintf(conds[*nconds], 64, "%s", c);
    return (*nconds)++;
}

/* Indexes every regular file of `dir` as a distractor track numbered from *nt on (names[] gets
 * "extra:FILE"). Returns the seconds of audio added, or -1. */
static double add_extra(const char *dir, const char *cache, int rate, sh_fp *fp, sh_memindex *mi,
                        char names[][256], int *nt)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "--extra %s: %s\n", dir, strerror(errno));
        return -1;
    }
    double secs = 0.0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL && *nt < MAX_TRACKS) {
        char path[1200];
        struct stat st;
        if (de->d_name[0] == '.' || FMT(path, "%s/%s", dir, de->d_name) || stat(path, &st) ||
            !S_ISREG(st.st_mode))
            continue;
        audio a;
        sh_err e = {0};
        if (load_audio(cache, path, rate, &a) || bench_fingerprint(fp, a.x, a.n))
            continue;
        size_t nh;
        const sh_hash *h = sh_fp_hashes(fp, &nh);
        if (sh_memindex_add(mi, (uint32_t)*nt, h, nh, &e)) {
            fprintf(stderr, "%s\n", sh_err_text(&e));
            free(a.x);
            break;
        }
        snprintf(names[(*nt)++], 256, "extra:%.240s", de->d_name);
        secs += (double)a.n / rate;
        free(a.x);
    }
    closedir(d);
    return secs;
}

int main(int argc, char **argv)
{
    const char *env = getenv("SOUNDHASH_DATA_DIR");
    char data[1024], qdir[1024] = "", cache[1024] = "/tmp/sh-fp-cache";
    const char *dump = NULL;
    int repeat = 3;
    const char *extra = NULL;
    snprintf(data, sizeof data, "%s", env ? env : "");
    if (!env)
        snprintf(data, sizeof data, "%s/.cache/soundhash-data",
                 getenv("HOME") ? getenv("HOME") : ".");
    sh_fp_config fc, qc;
    sh_match_config mc;
    sh_fp_config_default(&fc);
    sh_fp_config_query(&qc);
    sh_match_config_default(&mc);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--data") && v)
            snprintf(data, sizeof data, "%s", argv[++i]);
        else if (!strcmp(a, "--queries") && v)
            snprintf(qdir, sizeof qdir, "%s", argv[++i]);
        else if (!strcmp(a, "--cache") && v)
            snprintf(cache, sizeof cache, "%s", argv[++i]);
        else if (!strcmp(a, "--repeat") && v)
            repeat = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--dump") && v)
            dump = argv[++i];
        else if (!strcmp(a, "--extra") && v)
            extra = argv[++i];
        else if (!strcmp(a, "--set") && v) {
            if (set_knob(argv[++i], &fc, &qc, &mc)) {
                fprintf(stderr, "bad --set %s\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: %s [--data DIR] [--queries DIR] [--cache DIR] [--repeat N] "
                    "[--extra DIR] [--dump FILE] [--set key=value]...\n",
                    argv[0]);
            return 2;
        }
    }
    if (!qdir[0]) {
        if (FMT(qdir, "%s/q1536/queries/dev", data))
            return 2;
        struct stat st;
        char gt[1100];
        if (FMT(gt, "%s/ground_truth.csv", qdir))
            return 2;
        if (stat(gt, &st))
            if (FMT(qdir, "%s/queries/dev", data))
                return 2;
    }
    sh_err e = {0};
    if (sh_fp_config_check(&fc, &e) || sh_fp_config_check(&qc, &e)) {
        fprintf(stderr, "%s\n", sh_err_text(&e));
        return 2;
    }

    /* 1. corpus: decode (cached), fingerprint (timed), index. */
    static char names[MAX_TRACKS][256];
    char path[1200];
    if (FMT(path, "%s/corpus/dev/manifest.csv", data))
        return 1;
    const int nt = load_manifest(path, names, MAX_TRACKS);
    if (nt <= 0) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    audio *tr = calloc((size_t)nt, sizeof *tr);
    double audio_s = 0.0;
    for (int i = 0; i < nt; i++) {
        if (FMT(path, "%s/corpus/dev/%s", data, names[i]))
            return 1;
        if (load_audio(cache, path, fc.rate, &tr[i]))
            return 1;
        audio_s += (double)tr[i].n / fc.rate;
    }
    sh_fp *fp = NULL;
    sh_recognizer *rz = NULL;
    sh_memindex *mi = NULL;
    sh_recognize_config rcfg;
    sh_recognize_config_default(&rcfg);
    rcfg.fp = qc;
    rcfg.match = mc;
    if (sh_fp_new(&fc, &fp, &e) || sh_recognizer_new(&rcfg, &rz, &e) ||
        sh_memindex_new(&mi, &e)) {
        fprintf(stderr, "%s\n", sh_err_text(&e));
        return 1;
    }
    double best = 1e30;
    for (int r = 0; r < (repeat < 1 ? 1 : repeat); r++) {
        const double t0 = now_s();
        for (int i = 0; i < nt; i++) {
            if (bench_fingerprint(fp, tr[i].x, tr[i].n))
                return 1;
            if (r == 0) {
                size_t nh;
                const sh_hash *h = sh_fp_hashes(fp, &nh);
                if (sh_memindex_add(mi, (uint32_t)i, h, nh, &e))
                    return 1;
            }
        }
        const double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    const size_t np = sh_memindex_postings(mi);
    printf("hash_mode %d (fp_version %d when every other tunable is default), corpus %d tracks, "
           "%.1f min of audio\n",
           fc.hash_mode, fc.hash_mode + 2, nt, audio_s / 60.0);
    printf("postings: %zu = %.1f per second of audio\n", np, np / audio_s);
    if (extra) {
        int ntot = nt; /* tr[] keeps the corpus only; distractors are freed once indexed */
        const double xs = add_extra(extra, cache, fc.rate, fp, mi, names, &ntot);
        if (xs < 0)
            return 1;
        printf("distractors: %d tracks, %.1f min from %s; index %.1f h, %zu postings\n", ntot - nt,
               xs / 60.0, extra, (audio_s + xs) / 3600.0, sh_memindex_postings(mi));
    }
    if (sh_memindex_build(mi, &e))
        return 1;
    printf("extraction excluding decode: %.0fx realtime on one core (min of %d runs; 2 shared "
           "cores)\n",
           audio_s / best, repeat);

    /* 2. queries. */
    query *qs = malloc(MAX_QUERIES * sizeof *qs);
    if (FMT(path, "%s/ground_truth.csv", qdir))
        return 1;
    const int nq = load_queries(path, qs, MAX_QUERIES);
    if (nq <= 0) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    FILE *df = dump ? fopen(dump, "w") : NULL;
    if (df)
        fprintf(df, "query,cond,len,expected,answer,score,confidence,second,second_score,"
                    "offset_err,scale,nhash,votes,correct,duration,landmarks,second_landmarks,spread\n");
    static char conds[MAX_CONDS][64];
    int nconds = 0;
    static int ok[MAX_CONDS][2], tot[MAX_CONDS][2], offok[MAX_CONDS][2];
    double *lat[2], *latm[2];
    int nlat[2] = {0, 0};
    for (int j = 0; j < 2; j++) {
        lat[j] = malloc((size_t)nq * sizeof(double));
        latm[j] = malloc((size_t)nq * sizeof(double));
    }
    int pos = 0, pos_ok = 0, neg = 0, neg_fp = 0;
    double sum_hashes[2] = {0}, sum_voted[2] = {0};
    for (int i = 0; i < nq; i++) {
        const query *q = &qs[i];
        audio a;
        if (FMT(path, "%s/%s", qdir, q->file))
            return 1;
        if (load_audio(cache, path, qc.rate, &a))
            return 1;
        const double t0 = now_s();
        if (sh_recognize_clip_pcm(rz, a.x, a.n, &e)) {
            fprintf(stderr, "fingerprint: %s\n", sh_err_text(&e));
            return 1;
        }
        size_t nh;
        const sh_hash *h = sh_recognize_hashes(rz, &nh);
        const double t1 = now_s();
        sh_recognize_answer res[2];
        size_t nr = 0;
        sh_recognize_stats rst = {0};
        sh_recognize_memindex(rz, mi, h, nh, 2, res, &nr, &rst, &e);
        const size_t voted = rst.postings;
        const double t2 = now_s();
        const int L = q->len_s >= 8 ? 1 : 0;
        sum_hashes[L] += (double)nh;
        sum_voted[L] += (double)voted;
        lat[L][nlat[L]] = (t2 - t0) * 1e3;
        latm[L][nlat[L]++] = (t2 - t1) * 1e3;
        const char *ans = nr ? names[res[0].track] : "NONE";
        const int correct = strcmp(ans, q->expected) == 0;
        const double oerr = nr ? res[0].offset_s - (q->start_s - q->audio_off_s) : 0.0;
        const int ci = cond_index(conds, &nconds, q->cond);
        tot[ci][L]++;
        ok[ci][L] += correct;
        offok[ci][L] += correct && nr && oerr > -0.1 && oerr < 0.1;
        if (strcmp(q->expected, "NONE") == 0) {
            neg++;
            neg_fp += !correct;
        } else {
            pos++;
            pos_ok += correct;
        }
        if (df)
            fprintf(df, "%s,%s,%d,%s,%s,%d,%.5f,%s,%d,%.3f,%.4f,%zu,%zu,%d,%.2f,%d,%d,%d\n", q->file,
                    q->cond, q->len_s, q->expected, ans, nr ? res[0].score : 0,
                    nr ? res[0].confidence : 0.0, nr > 1 ? names[res[1].track] : "NONE",
                    nr > 1 ? res[1].score : 0, oerr, nr ? res[0].scale : 0.0, nh, rst.votes,
                    correct, nr ? res[0].duration_s : 0.0, nr ? res[0].landmarks : 0,
                    nr > 1 ? res[1].landmarks : 0, nr ? res[0].spread : 0);
        free(a.x);
    }
    if (df)
        fclose(df);
    printf("\nqueries: %s (%d)\n", qdir, nq);
    printf("%-16s %8s %8s   %s\n", "condition", "5 s", "10 s",
           "(top-1 track; offset within 0.1 s)");
    for (int c = 0; c < nconds; c++) {
        printf("%-16s", conds[c]);
        for (int L = 0; L < 2; L++)
            printf(" %7.1f%%", tot[c][L] ? 100.0 * ok[c][L] / tot[c][L] : 0.0);
        printf("   (%.0f%% / %.0f%%)\n", tot[c][0] ? 100.0 * offok[c][0] / tot[c][0] : 0.0,
               tot[c][1] ? 100.0 * offok[c][1] / tot[c][1] : 0.0);
    }
    printf("positives top-1: %.2f%% (%d/%d)\n", pos ? 100.0 * pos_ok / pos : 0.0, pos_ok, pos);
    printf("false matches on negatives: %.2f%% (%d/%d)\n", neg ? 100.0 * neg_fp / neg : 0.0, neg_fp,
           neg);
    for (int L = 0; L < 2; L++) {
        const int n = nlat[L];
        const double p50 = bench_pct(lat[L], n, 0.5), p99 = bench_pct(lat[L], n, 0.99);
        const double m50 = bench_pct(latm[L], n, 0.5), m99 = bench_pct(latm[L], n, 0.99);
        printf("latency %2d s queries: p50 %.2f ms, p99 %.2f ms (fingerprint+lookup+vote); "
               "lookup+vote only p50 %.2f p99 %.2f ms\n",
               L ? 10 : 5, p50, p99, m50, m99);
    }
    for (int L = 0; L < 2; L++)
        if (nlat[L])
            printf("lookups %2d s queries: %.0f query hashes, %.0f postings voted per query "
                   "(%.2f per lookup)\n",
                   L ? 10 : 5, sum_hashes[L] / nlat[L], sum_voted[L] / nlat[L],
                   sum_hashes[L] > 0 ? sum_voted[L] / sum_hashes[L] : 0.0);
    for (int i = 0; i < nt; i++)
        free(tr[i].x);
    free(tr);
    free(qs);
    for (int j = 0; j < 2; j++) {
        free(lat[j]);
        free(latm[j]);
    }
    sh_memindex_free(mi);
    sh_recognizer_free(rz);
    sh_fp_free(fp);
    return 0;
}
