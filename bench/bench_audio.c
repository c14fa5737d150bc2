/* bench_audio — decode cost per core, in x realtime (seconds of audio per CPU second):
 *   sndfile   libsndfile alone (sf_readf_float, interleaved float, what any libsndfile user pays)
 *   audio     sh_audio: the same decode + mono downmix + soxr resample to the analysis rate
 *   extract   sh_extract: all of the above + fingerprinting (sh_fp), i.e. the worker's CPU per
 * track. `--fp-version N` (first) picks the fingerprint version [3]. Files: the arguments, or every *.ogg in $SOUNDHASH_DATA_DIR/corpus/dev (default
 * ~/.cache/soundhash-data). CPU time of this process (CLOCK_PROCESS_CPUTIME_ID), so other load on a
 * shared machine barely matters. Also prints the peak RSS, to show memory stays bounded.
 */
#include "sh_audio.h"
#include "sh_extract.h"
#include "sh_fp.h"

#include <glob.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* libsndfile alone; returns seconds of audio or -1. */
static double decode_sndfile(const char *path)
{
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf)
        return -1;
    float *buf = malloc(sizeof(float) * 4096 * (size_t)info.channels);
    sf_count_t n, total = 0;
    while (buf && (n = sf_readf_float(sf, buf, 4096)) > 0)
        total += n;
    free(buf);
    sf_close(sf);
    return (double)total / info.samplerate;
}

static double decode_audio(const char *path, const sh_audio_opts *o)
{
    sh_audio *a;
    sh_err e = {0};
    if (sh_audio_open_file(path, o, &a, &e) != 0) {
        fprintf(stderr, "bench_audio: %s: %s\n", path, sh_err_text(&e));
        return -1;
    }
    static float buf[4096];
    long n;
    while ((n = sh_audio_read(a, buf, 4096, &e)) > 0)
        ;
    double s = n == 0 ? sh_audio_decoded_seconds(a) : -1;
    sh_audio_free(a);
    return s;
}

static double extract(const char *path, const sh_audio_opts *o, sh_fp *fp, size_t *hashes)
{
    sh_extract_result r;
    sh_err e = {0};
    if (sh_extract_file(path, o, fp, &r, &e) != 0) {
        fprintf(stderr, "bench_audio: %s: %s\n", path, sh_err_text(&e));
        return -1;
    }
    size_t n;
    sh_fp_hashes(fp, &n);
    *hashes += n;
    return r.duration_s;
}

int main(int argc, char **argv)
{
    glob_t g = {0};
    int fpv = 3; /* --fp-version N first: the fingerprint version to extract (sh_fp_config_for_version) */
    if (argc >= 3 && strcmp(argv[1], "--fp-version") == 0) {
        fpv = atoi(argv[2]);
        argv += 2;
        argc -= 2;
    }
    char **files = argv + 1;
    size_t nfiles = (size_t)(argc - 1);
    if (argc < 2) {
        const char *dir = getenv("SOUNDHASH_DATA_DIR");
        char pat[1024];
        if (dir)
            snprintf(pat, sizeof pat, "%s/corpus/dev/*.ogg", dir);
        else
            snprintf(pat, sizeof pat, "%s/.cache/soundhash-data/corpus/dev/*.ogg",
                     getenv("HOME") ? getenv("HOME") : "");
        if (glob(pat, 0, NULL, &g) != 0) {
            fprintf(stderr, "bench_audio: no files match %s (run scripts/data/make_corpus.sh)\n",
                    pat);
            return 1;
        }
        files = g.gl_pathv;
        nfiles = g.gl_pathc;
    }
    sh_fp_config fc;
    sh_err fe = {0};
    if (sh_fp_config_for_version(fpv, &fc, &fe) != 0) {
        fprintf(stderr, "bench_audio: %s\n", sh_err_text(&fe));
        return 2;
    }
    printf("fp_version %d\n", fpv);
    sh_audio_opts o;
    sh_audio_opts_default(&o);
    o.rate = fc.rate;
    sh_fp *fp = NULL;
    if (sh_fp_new(&fc, &fp, NULL) != 0)
        return 1;
    const char *names[] = {"sndfile (libsndfile decode only)", "audio (decode+downmix+resample)",
                           "extract (audio + fingerprint)"};
    size_t hashes = 0;
    double cpus[3] = {0};
    for (int mode = 0; mode < 3; mode++) {
        double audio = 0, t0 = cpu_now();
        for (size_t i = 0; i < nfiles; i++) {
            double s = mode == 0   ? decode_sndfile(files[i])
                       : mode == 1 ? decode_audio(files[i], &o)
                                   : extract(files[i], &o, fp, &hashes);
            if (s < 0) {
                fprintf(stderr, "bench_audio: %s failed\n", files[i]);
                return 1;
            }
            audio += s;
        }
        double cpu = cpu_now() - t0;
        cpus[mode] = cpu;
        printf("%-34s files=%zu audio_s=%.1f cpu_s=%.3f x_realtime_per_core=%.0f\n", names[mode],
               nfiles, audio, cpu, audio / cpu);
    }
    /* The "cost of fingerprinting relative to libsndfile's own decode of the same files":
     * everything past sf_readf_float, in CPU time. */
    printf("cost relative to libsndfile's own decode: decode+fingerprint = %.2fx libsndfile "
           "(downmix+resample +%.0f%%, fingerprint +%.0f%%)\n",
           cpus[2] / cpus[0], 100.0 * (cpus[1] - cpus[0]) / cpus[0],
           100.0 * (cpus[2] - cpus[1]) / cpus[0]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("analysis_rate=%d hashes=%zu peak_rss_mb=%.1f\n", o.rate, hashes, ru.ru_maxrss / 1024.0);
    sh_fp_free(fp);
    globfree(&g);
    return 0;
}
