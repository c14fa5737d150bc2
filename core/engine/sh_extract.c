/* sh_extract.c — the decode → fingerprint loop, shared by the CLI, workers, fuzzers and benches. */
#include "sh_extract.h"

int sh_extract_audio(sh_audio *a, sh_fp *fp, sh_err *e)
{
    float buf[SH_EXTRACT_CHUNK];
    long n;
    int rc;
    sh_fp_reset(fp);
    while ((n = sh_audio_read(a, buf, SH_EXTRACT_CHUNK, e)) > 0) {
        if ((rc = sh_fp_feed(fp, buf, (size_t)n, e)) != 0)
            return rc;
    }
    if (n < 0)
        return (int)n;
    return sh_fp_finish(fp, e);
}

/* Runs the loop on an opened reader, fills `r`, frees the reader. */
static int run(sh_audio *a, sh_fp *fp, sh_extract_result *r, sh_err *e)
{
    int rc = sh_extract_audio(a, fp, e);
    if (r) {
        r->info = *sh_audio_get_info(a);
        r->duration_s = sh_audio_decoded_seconds(a);
    }
    sh_audio_free(a);
    return rc;
}

int sh_extract_file(const char *path, const sh_audio_opts *o, sh_fp *fp, sh_extract_result *r,
                    sh_err *e)
{
    sh_audio *a;
    int rc = sh_audio_open_file(path, o, &a, e);
    return rc ? rc : run(a, fp, r, e);
}

int sh_extract_fd(int fd, const sh_audio_opts *o, sh_fp *fp, sh_extract_result *r, sh_err *e)
{
    sh_audio *a;
    int rc = sh_audio_open_fd(fd, o, &a, e);
    return rc ? rc : run(a, fp, r, e);
}

int sh_extract_mem(const void *buf, size_t len, const sh_audio_opts *o, sh_fp *fp,
                   sh_extract_result *r, sh_err *e)
{
    sh_audio *a;
    int rc = sh_audio_open_mem(buf, len, o, &a, e);
    return rc ? rc : run(a, fp, r, e);
}
