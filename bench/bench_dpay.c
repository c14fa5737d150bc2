/* bench_dpay — the index-delta payload codec (sh_dpay) over the real-music corpus: bytes per
 * posting on the wire (one track per payload; per-shard batches as the replicator sends them;
 * the whole corpus in one payload), against today's posting blob (sh_fpblob), the order-0
 * entropy bound of the columns the codec writes, and encode/decode throughput in postings/s.
 *
 * usage: bench_dpay [--data DIR] [--level N] [--rounds N]
 *   --data    corpus root (default $SOUNDHASH_DATA_DIR or ~/.cache/soundhash-data)
 *   --level   zstd level of the payloads (default 3, what the replicator uses)
 *   --rounds  timing rounds over the corpus (default 5)
 */
#include "bench_util.h"
#include "sh_clock.h"
#include "sh_dpay.h"
#include "sh_fp.h"
#include "sh_fpblob.h"
#include "sh_shardmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_TRACKS = 512, LINE_MAX_LEN = 2048, NSHARDS = SH_SHARDS_DEFAULT };

typedef struct track {
    char id[256];
    sh_hash *h;
    size_t n;
} track;

static int load_corpus(const char *data, track *t, int *nt, double *audio_s)
{
    char path[2200], line[LINE_MAX_LEN];
    snprintf(path, sizeof path, "%s/corpus/dev/manifest.csv", data);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot read %s (run scripts/data/make_corpus.sh)\n", path);
        return -1;
    }
    sh_fp_config fc;
    sh_fp_config_default(&fc);
    sh_fp *fp;
    sh_err e = {0};
    if (sh_fp_new(&fc, &fp, &e)) {
        fclose(f);
        fprintf(stderr, "fp: %s\n", sh_err_text(&e));
        return -1;
    }
    *nt = 0;
    *audio_s = 0;
    while (fgets(line, sizeof line, f) && *nt < MAX_TRACKS) {
        char *fl[8];
        if (bench_split(line, fl, 8) < 2 || !strcmp(fl[0], "track_id"))
            continue;
        snprintf(path, sizeof path, "%s/corpus/dev/%s", data, fl[1]);
        float *x;
        size_t n;
        if (bench_decode(path, fc.rate, &x, &n))
            continue;
        if (bench_fingerprint(fp, x, n) == 0) {
            track *tr = &t[(*nt)++];
            snprintf(tr->id, sizeof tr->id, "%s", fl[0]);
            const sh_hash *h = sh_fp_hashes(fp, &tr->n);
            tr->h = malloc((tr->n ? tr->n : 1) * sizeof *h);
            memcpy(tr->h, h, tr->n * sizeof *h);
            *audio_s += (double)n / fc.rate;
        }
        free(x);
    }
    fclose(f);
    sh_fp_free(fp);
    return *nt ? 0 : -1;
}

static sh_dop op_of(const track *t, int64_t seq)
{
    return (sh_dop){.seq = seq, .kind = SH_DOP_UPSERT, .track_id = t->id, .tenant = "bench",
                    .version = 1, .fp_version = SH_FP_VERSION, .duration_s = 60.0,
                    .metadata = "{}", .postings = t->h, .npostings = t->n};
}

/* Encodes tracks [i] for every i with which(i) == group into one payload; returns its size on the
 * wire (0 on error) and the raw size in *raw. */
static size_t encode_group(sh_dpay_builder *b, const track *t, int nt, const int *group, int g,
                           int level, uint8_t **out, size_t *raw)
{
    sh_err e = {0};
    for (int i = 0; i < nt; i++) {
        if (group && group[i] != g)
            continue;
        sh_dop op = op_of(&t[i], i + 1);
        if (sh_dpay_builder_add(b, &op, &e)) {
            fprintf(stderr, "add: %s\n", sh_err_text(&e));
            return 0;
        }
    }
    size_t len;
    if (sh_dpay_builder_finish(b, SH_DPAY_CODEC_ZSTD, level, out, &len, raw, &e)) {
        fprintf(stderr, "finish: %s\n", sh_err_text(&e));
        return 0;
    }
    return len;
}

static void sizes(const track *t, int nt, size_t postings, int level)
{
    sh_dpay_builder *b;
    sh_dpay_builder_new(NULL, 0, &b, NULL);
    size_t blob = 0, one = 0, one_raw = 0, shard = 0, all = 0, raw;
    int single[MAX_TRACKS], shard_of[MAX_TRACKS];
    for (int i = 0; i < nt; i++) {
        uint8_t *p;
        size_t len;
        if (sh_fpblob_encode(t[i].h, t[i].n, 0, &p, &len, NULL) == 0) {
            blob += len;
            free(p);
        }
        single[i] = i;
        shard_of[i] = (int)sh_shard_of(t[i].id, strlen(t[i].id), NSHARDS);
    }
    for (int i = 0; i < nt; i++) {
        uint8_t *p = NULL;
        one += encode_group(b, t, nt, single, i, level, &p, &raw);
        one_raw += raw;
        free(p);
    }
    for (int s = 0; s < NSHARDS; s++) {
        uint8_t *p = NULL;
        shard += encode_group(b, t, nt, shard_of, s, level, &p, &raw);
        free(p);
    }
    uint8_t *p = NULL;
    all = encode_group(b, t, nt, NULL, 0, level, &p, &raw);
    free(p);
    sh_dpay_builder_free(b);
    const double n = (double)postings;
    printf("today's posting blob (sh_fpblob, zstd 3)       %6.3f bytes/posting\n", blob / n);
    printf("payload, one track per payload (zstd %d)        %6.3f bytes/posting on the wire "
           "(raw before zstd %.3f)\n",
           level, one / n, one_raw / n);
    printf("payload, one per shard (%d shards, zstd %d)      %6.3f bytes/posting on the wire\n",
           NSHARDS, level, shard / n);
    printf("payload, whole corpus in one (zstd %d)          %6.3f bytes/posting on the wire\n",
           level, all / n);
}

static void entropy(const track *t, int nt)
{
    sh_dpay_stats *st = calloc(1, sizeof *st);
    if (!st)
        return;
    for (int i = 0; i < nt; i++)
        sh_dpay_stats_add(st, t[i].h, t[i].n, NULL);
    const double bits = sh_dpay_stats_bits(st);
    printf("entropy bound of the posting columns (order 0)  %6.3f bytes/posting (%.2f bits)\n",
           bits / 8.0 / (double)st->postings, bits / (double)st->postings);
    free(st);
}

/* Encode and decode throughput: per-shard payloads of the whole corpus, `rounds` times. */
static void speed(const track *t, int nt, size_t postings, int level, int rounds)
{
    int shard_of[MAX_TRACKS];
    for (int i = 0; i < nt; i++)
        shard_of[i] = (int)sh_shard_of(t[i].id, strlen(t[i].id), NSHARDS);
    sh_dpay_builder *b;
    sh_dpay_builder_new(NULL, 0, &b, NULL);
    uint8_t *p[NSHARDS] = {0};
    size_t len[NSHARDS] = {0}, raw[NSHARDS] = {0};
    double enc = 0, dec = 0;
    size_t decoded = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = sh_clock_mono_s();
        for (int s = 0; s < NSHARDS; s++) {
            free(p[s]);
            p[s] = NULL;
            len[s] = encode_group(b, t, nt, shard_of, s, level, &p[s], &raw[s]);
        }
        double t1 = sh_clock_mono_s();
        for (int s = 0; s < NSHARDS; s++) {
            sh_dpay *d;
            sh_err e = {0};
            if (sh_dpay_decode(p[s], len[s], SH_DPAY_CODEC_ZSTD, raw[s], NULL, &d, &e)) {
                fprintf(stderr, "decode: %s\n", sh_err_text(&e));
                continue;
            }
            decoded += sh_dpay_postings(d);
            sh_dpay_free(d);
        }
        enc += t1 - t0;
        dec += sh_clock_mono_s() - t1;
    }
    for (int s = 0; s < NSHARDS; s++)
        free(p[s]);
    sh_dpay_builder_free(b);
    const double n = (double)postings * rounds;
    printf("encode (copy + sort + columns + zstd %d)        %6.2f M postings/s (one core)\n", level,
           n / enc / 1e6);
    printf("decode (zstd + checksum + columns)             %6.2f M postings/s (one core)%s\n",
           (double)decoded / dec / 1e6, decoded == postings * (size_t)rounds ? "" : " MISMATCH");
}

int main(int argc, char **argv)
{
    const char *env = getenv("SOUNDHASH_DATA_DIR");
    const char *home = getenv("HOME");
    char defdata[1024];
    snprintf(defdata, sizeof defdata, "%s/.cache/soundhash-data", home ? home : ".");
    const char *data = env && *env ? env : defdata;
    int level = 3, rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--level") && i + 1 < argc)
            level = (int)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = (int)strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_dpay [--data DIR] [--level N] [--rounds N]\n");
            return 2;
        }
    }
    static track t[MAX_TRACKS];
    int nt;
    double audio_s;
    if (load_corpus(data, t, &nt, &audio_s))
        return 1;
    size_t postings = 0;
    for (int i = 0; i < nt; i++)
        postings += t[i].n;
    printf("corpus: %d tracks, %.1f min, %zu postings, fp_version %d\n", nt, audio_s / 60,
           postings, SH_FP_VERSION);
    sizes(t, nt, postings, level);
    entropy(t, nt);
    speed(t, nt, postings, level, rounds > 0 ? rounds : 1);
    for (int i = 0; i < nt; i++)
        free(t[i].h);
    return 0;
}
