/* fuzz_audio — arbitrary bytes through the decode + fingerprint path, from memory (libsndfile
 * virtual I/O), as a worker would run it on an inline upload.
 *
 * Checks beyond "no crash": every sample handed out is finite and bounded, the output length stays
 * within the duration cap, an error is a known SH_E* code with a message, and decoding the same
 * bytes twice (once through sh_extract) gives the same sample count.
 */
#include "sh_audio.h"
#include "sh_extract.h"
#include "sh_fp.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A low cap keeps each input fast: libsndfile can expand a few bytes into minutes of audio. */
#define FUZZ_MAX_SECONDS 20.0

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_audio: invariant violated: %s\n", what);
        abort();
    }
}

static uint64_t decode_all(const uint8_t *data, size_t size, const sh_audio_opts *o)
{
    sh_audio *a = NULL;
    sh_err e = {0};
    int rc = sh_audio_open_mem(data, size, o, &a, &e);
    if (rc) {
        check(rc < 0 && a == NULL && e.msg[0] != '\0', "open error has a code and a message");
        check(strcmp(sh_strerror(rc), "unknown error") != 0, "known open error code");
        return 0;
    }
    static float buf[1500];
    long n;
    while ((n = sh_audio_read(a, buf, sizeof buf / sizeof buf[0], &e)) > 0) {
        for (long i = 0; i < n; i++)
            check(isfinite(buf[i]) && fabsf(buf[i]) <= 16.0f, "finite bounded samples");
    }
    check(n == 0 || e.msg[0] != '\0', "read error has a message");
    uint64_t out = sh_audio_samples_out(a);
    check(sh_audio_decoded_seconds(a) <= FUZZ_MAX_SECONDS + 1e-6, "decoded within the cap");
    check(out <= (uint64_t)(FUZZ_MAX_SECONDS * o->rate) + 1024, "output within the cap");
    sh_audio_free(a);
    return n == 0 ? out : UINT64_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sh_fp *fp; /* one extractor for the process: FFTW planning is the slow part */
    static sh_fp_config fc;
    if (!fp) {
        sh_fp_config_default(&fc);
        if (sh_fp_new(&fc, &fp, NULL) != 0)
            abort();
    }
    sh_audio_opts o;
    sh_audio_opts_default(&o);
    o.rate = fc.rate;
    o.max_duration_s = FUZZ_MAX_SECONDS;
    o.max_bytes = 4 << 20;
    uint64_t samples = decode_all(data, size, &o);
    sh_extract_result r;
    int rc = sh_extract_mem(data, size, &o, fp, &r, NULL);
    if (rc == 0) {
        check(samples != UINT64_MAX && sh_fp_samples(fp) == samples, "deterministic decode");
        size_t n;
        sh_fp_hashes(fp, &n);
        check(n <= sh_fp_max_hashes_per_s(&fc) * (FUZZ_MAX_SECONDS + 1), "hash count bounded");
    } else {
        check(samples == 0 || samples == UINT64_MAX, "both passes fail alike");
    }
    return 0;
}
