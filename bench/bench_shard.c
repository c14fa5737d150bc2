/* bench_shard — the LMDB shard (sh_shard) over the real-music corpus: index size on disk
 * (bytes per posting, MB per audio hour) for a bulk build, an incremental build (one track per
 * transaction) and a compacted snapshot; build speed; match latency p50/p99 of 5 s and 10 s
 * queries in-process (audio decoded beforehand; timed: query fingerprint + shard lookup + ranking,
 * and lookup + ranking alone), with top-1 accuracy as a sanity check.
 *
 * usage: bench_shard [--data DIR] [--queries DIR] [--work DIR] [--max-queries N]
 *   --data     corpus root (default $SOUNDHASH_DATA_DIR or ~/.cache/soundhash-data)
 *   --queries  query set with ground_truth.csv (default DATA/q1536/queries/dev, else queries/dev)
 *   --work     scratch directory for the shards (default a fresh /tmp/sh-bench-shard.XXXXXX)
 */
#include "bench_util.h"
#include "sh_audio.h"
#include "sh_clock.h"
#include "sh_fp.h"
#include "sh_recognize.h"
#include "sh_shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_TRACKS = 512, MAX_QUERIES = 8192, LINE_MAX_LEN = 2048 };

typedef struct pcm {
    float *x;
    size_t n;
} pcm;

static void print_stats(const char *what, sh_shard *s, double audio_s)
{
    sh_shard_stats st;
    sh_err e = {0};
    if (sh_shard_stats_get(s, &st, &e)) {
        fprintf(stderr, "stats: %s\n", sh_err_text(&e));
        return;
    }
    printf("%-28s %9.0f KB on disk (%6.0f KB used), %5.2f bytes/posting, %5.3f MB per audio "
           "hour\n",
           what, st.file_bytes / 1024.0, st.used_bytes / 1024.0,
           st.postings ? (double)st.file_bytes / (double)st.postings : 0.0,
           st.file_bytes / 1e6 / (audio_s / 3600.0));
}

typedef struct track {
    char id[256];
    sh_hash *h;
    size_t n;
    double dur;
} track;

static sh_shard *open_shard(const char *dir)
{
    sh_shard *s = NULL;
    sh_err e = {0};
    if (sh_shard_open(dir, NULL, &s, &e))
        fprintf(stderr, "%s: %s\n", dir, sh_err_text(&e));
    return s;
}

static int build(sh_shard *s, const track *t, int nt, int per_batch)
{
    sh_err e = {0};
    sh_shard_batch *b = NULL;
    for (int i = 0; i < nt; i++) {
        if (!b && sh_shard_batch_begin(s, 0, &b, &e))
            break;
        sh_shard_track st = {.id = t[i].id, .version = 1, .duration_s = t[i].dur};
        if (sh_shard_batch_put(b, &st, t[i].h, t[i].n, &e))
            break;
        if ((i + 1) % per_batch == 0 || i == nt - 1) {
            int rc = sh_shard_batch_commit(b, NULL, &e);
            b = NULL;
            if (rc)
                break;
        }
    }
    sh_shard_batch_abort(b);
    if (e.code) {
        fprintf(stderr, "build: %s\n", sh_err_text(&e));
        return -1;
    }
    return 0;
}

static int load_corpus(const char *data, sh_fp *fp, track *t, int *nt, double *audio_s,
                       double *fp_s)
{
    char path[2200], line[LINE_MAX_LEN];
    snprintf(path, sizeof path, "%s/corpus/dev/manifest.csv", data);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot read %s (run scripts/data/make_corpus.sh)\n", path);
        return -1;
    }
    *nt = 0;
    *audio_s = *fp_s = 0;
    sh_fp_config fc;
    sh_fp_config_default(&fc);
    while (fgets(line, sizeof line, f) && *nt < MAX_TRACKS) {
        char *fl[8];
        if (bench_split(line, fl, 8) < 2 || !strcmp(fl[0], "track_id"))
            continue;
        snprintf(path, sizeof path, "%s/corpus/dev/%s", data, fl[1]);
        pcm p;
        if (bench_decode(path, fc.rate, &p.x, &p.n))
            continue; /* reported; the benchmark goes on without it */
        double t0 = sh_clock_mono_s();
        int rc = bench_fingerprint(fp, p.x, p.n);
        *fp_s += sh_clock_mono_s() - t0;
        if (rc) {
            free(p.x);
            continue;
        }
        track *tr = &t[*nt];
        snprintf(tr->id, sizeof tr->id, "%s", fl[1]);
        const sh_hash *h = sh_fp_hashes(fp, &tr->n);
        tr->h = malloc((tr->n ? tr->n : 1) * sizeof *h);
        memcpy(tr->h, h, tr->n * sizeof *h);
        tr->dur = (double)p.n / fc.rate;
        *audio_s += tr->dur;
        free(p.x);
        (*nt)++;
    }
    fclose(f);
    return *nt ? 0 : -1;
}

typedef struct qstats {
    double *all[2], *look[2], *shard[2];
    size_t hashes[2], votes[2];
    int n[2], ok[2], pos[2], neg[2], negfp[2];
} qstats;

static int run_queries(const char *qdir, int max_q, sh_shard *s, qstats *q)
{
    char path[3300], line[LINE_MAX_LEN];
    snprintf(path, sizeof path, "%s/ground_truth.csv", qdir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot read %s (run scripts/data/make_queries.sh dev)\n", path);
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
    for (int L = 0; L < 2; L++) {
        q->all[L] = malloc(MAX_QUERIES * sizeof(double));
        q->look[L] = malloc(MAX_QUERIES * sizeof(double));
        q->shard[L] = malloc(MAX_QUERIES * sizeof(double));
    }
    int done = 0;
    while (fgets(line, sizeof line, f) && done < max_q) {
        char *fl[8];
        if (bench_split(line, fl, 8) < 4 || !strcmp(fl[0], "query_file"))
            continue;
        const int L = atoi(fl[3]) >= 8 ? 1 : 0;
        snprintf(path, sizeof path, "%s/%s", qdir, fl[0]);
        pcm p;
        if (bench_decode(path, qc.fp.rate, &p.x, &p.n) || q->n[L] >= MAX_QUERIES)
            continue;
        double t0 = sh_clock_mono_s();
        if (sh_recognize_clip_pcm(rz, p.x, p.n, &e))
            fprintf(stderr, "fingerprint: %s\n", sh_err_text(&e));
        size_t nh;
        const sh_hash *h = sh_recognize_hashes(rz, &nh);
        double t1 = sh_clock_mono_s();
        sh_recognize_answer r[1];
        size_t nr = 0;
        sh_recognize_stats st;
        if (sh_recognize_shard(rz, s, h, nh, 1, r, &nr, &st, &e)) {
            fprintf(stderr, "lookup: %s\n", sh_err_text(&e));
            free(p.x);
            break;
        }
        double t2 = sh_clock_mono_s();
        q->shard[L][q->n[L]] = st.lookup_ms;
        q->hashes[L] += nh;
        q->votes[L] += st.postings;
        q->all[L][q->n[L]] = (t2 - t0) * 1e3;
        q->look[L][q->n[L]++] = (t2 - t1) * 1e3;
        const char *ans = nr ? r[0].id : "NONE";
        if (!strcmp(fl[1], "NONE")) {
            q->neg[L]++;
            q->negfp[L] += nr > 0;
        } else {
            q->pos[L]++;
            q->ok[L] += !strcmp(ans, fl[1]);
        }
        free(p.x);
        done++;
    }
    fclose(f);
    sh_recognizer_free(rz);
    return 0;
}

int main(int argc, char **argv)
{
    const char *env = getenv("SOUNDHASH_DATA_DIR"), *home = getenv("HOME");
    char data[1024], qdir[1100] = "", work[1024] = "";
    int max_q = MAX_QUERIES;
    snprintf(data, sizeof data, "%s", env ? env : "");
    if (!env)
        snprintf(data, sizeof data, "%s/.cache/soundhash-data", home ? home : ".");
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--data") && v)
            snprintf(data, sizeof data, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--queries") && v)
            snprintf(qdir, sizeof qdir, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--work") && v)
            snprintf(work, sizeof work, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--max-queries") && v)
            max_q = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--data DIR] [--queries DIR] [--work DIR] "
                    "[--max-queries N]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!qdir[0]) {
        struct stat st;
        snprintf(qdir, sizeof qdir, "%s/q1536/queries/dev/ground_truth.csv", data);
        if (stat(qdir, &st) == 0)
            snprintf(qdir, sizeof qdir, "%s/q1536/queries/dev", data);
        else
            snprintf(qdir, sizeof qdir, "%s/queries/dev", data);
    }
    if (!work[0]) {
        snprintf(work, sizeof work, "/tmp/sh-bench-shard.XXXXXX");
        if (!mkdtemp(work)) {
            perror("mkdtemp");
            return 1;
        }
    }
    sh_fp_config fc;
    sh_fp_config_default(&fc);
    sh_fp *fp = NULL;
    sh_err e = {0};
    static track t[MAX_TRACKS];
    int nt;
    double audio_s, fp_s;
    if (sh_fp_new(&fc, &fp, &e) || load_corpus(data, fp, t, &nt, &audio_s, &fp_s))
        return 1;
    sh_fp_free(fp);
    size_t np = 0;
    for (int i = 0; i < nt; i++)
        np += t[i].n;
    printf("corpus: %d tracks, %.1f min, %zu postings (%.1f per second of audio), fp_version %d\n",
           nt, audio_s / 60, np, np / audio_s, SH_FP_VERSION);

    char dir[1200];
    snprintf(dir, sizeof dir, "%s/bulk", work);
    sh_shard *s = open_shard(dir);
    double t0 = sh_clock_mono_s();
    if (!s || build(s, t, nt, nt))
        return 1;
    double bulk_s = sh_clock_mono_s() - t0;
    print_stats("bulk build (1 transaction)", s, audio_s);
    printf("%-28s %9.0f postings/s (%.0fx realtime), shard write only\n", "  build speed",
           np / bulk_s, audio_s / bulk_s);

    snprintf(dir, sizeof dir, "%s/incremental", work);
    sh_shard *s2 = open_shard(dir);
    t0 = sh_clock_mono_s();
    if (!s2 || build(s2, t, nt, 1))
        return 1;
    double inc_s = sh_clock_mono_s() - t0;
    print_stats("incremental (1 track/txn)", s2, audio_s);
    printf("%-28s %9.0f postings/s (%.0fx realtime), shard write only\n", "  build speed",
           np / inc_s, audio_s / inc_s);
    snprintf(dir, sizeof dir, "%s/snapshot", work);
    mkdir(dir, 0755);
    sh_shard *s3 = NULL;
    if (sh_shard_snapshot(s2, dir, &e) == 0 && (s3 = open_shard(dir)))
        print_stats("snapshot of incremental", s3, audio_s);
    sh_shard_free(s3);
    s3 = NULL;
    t0 = sh_clock_mono_s();
    int crc = sh_shard_compact(s2, &e);
    double comp_s = sh_clock_mono_s() - t0;
    snprintf(dir, sizeof dir, "%s/compacted", work);
    mkdir(dir, 0755);
    if (!crc && sh_shard_snapshot(s2, dir, &e) == 0 && (s3 = open_shard(dir))) {
        print_stats("incremental, compacted+snap", s3, audio_s);
        printf("%-28s %9.0f ms\n", "  compaction time", comp_s * 1e3);
    } else {
        fprintf(stderr, "compact: %s\n", sh_err_text(&e));
    }
    sh_shard_free(s3);
    sh_shard_free(s2);

    qstats q = {0};
    if (run_queries(qdir, max_q, s, &q))
        return 1;
    printf("\nmatch latency over %s (in-process; decode excluded; 2 shared cores)\n", qdir);
    const char *len[2] = {"5 s", "10 s"};
    for (int L = 0; L < 2; L++) {
        if (!q.n[L])
            continue;
        int n = q.n[L];
        printf("  %-4s queries (%4d): fingerprint+lookup+rank p50 %6.2f ms  p99 %6.2f ms | "
               "lookup+rank p50 %5.2f ms  p99 %5.2f ms | top-1 %5.1f%%, false matches %d/%d\n",
               len[L], n, bench_pct(q.all[L], n, 0.5), bench_pct(q.all[L], n, 0.99),
               bench_pct(q.look[L], n, 0.5), bench_pct(q.look[L], n, 0.99),
               q.pos[L] ? 100.0 * q.ok[L] / q.pos[L] : 0.0, q.negfp[L], q.neg[L]);
        printf("        shard lookup alone: p50 %5.2f ms  p99 %5.2f ms (%.0f query hashes, %.0f "
               "postings voted per query on average)\n",
               bench_pct(q.shard[L], n, 0.5), bench_pct(q.shard[L], n, 0.99),
               (double)q.hashes[L] / n, (double)q.votes[L] / n);
    }
    printf("fingerprinting of the corpus (index mode): %.0fx realtime\n", audio_s / fp_s);
    sh_shard_free(s);
    for (int i = 0; i < nt; i++)
        free(t[i].h);
    for (int L = 0; L < 2; L++) {
        free(q.all[L]);
        free(q.look[L]);
        free(q.shard[L]);
    }
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    if (!strncmp(work, "/tmp/sh-bench-shard.", 20) && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", work);
    return 0;
}
