/* sh_extract.h — decode + fingerprint in one call: sh_audio streams chunks straight into sh_fp.
 *
 * Kept apart from sh_audio so that the decoder does not depend on the fingerprinter (workers,
 * fuzzers and benchmarks that only decode link no FFTW code paths through it).
 * Memory: one chunk of SH_EXTRACT_CHUNK samples on the stack plus the reader's own bounded buffers;
 * the hashes accumulate in `fp` (bounded by sh_fp_max_hashes_per_s() × the duration cap).
 */
#ifndef SH_EXTRACT_H
#define SH_EXTRACT_H

#include "sh_audio.h"
#include "sh_err.h"
#include "sh_fp.h"

#include <stddef.h>

enum { SH_EXTRACT_CHUNK = 4096 }; /* samples per sh_audio_read → sh_fp_feed step */

typedef struct sh_extract_result {
    sh_audio_info info; /* what the header said (rate, channels, format, declared duration) */
    double duration_s;  /* seconds actually decoded */
} sh_extract_result;

/* Resets `fp`, then reads `a` to its end feeding every sample to `fp`, then finishes `fp`: on
 * success sh_fp_hashes(fp) holds the track's hashes. `a` must have been opened with opts.rate equal
 * to the rate of fp's config (otherwise hashes are silently wrong — the caller builds both from
 * one config). Errors: any of sh_audio_read() or sh_fp_feed()/sh_fp_finish(). On error fp holds a
 * partial result that must not be used (sh_fp_reset() it). */
int sh_extract_audio(sh_audio *a, sh_fp *fp, sh_err *e);

/* Open + sh_extract_audio() + close, for a path, a descriptor (ownership taken, as in
 * sh_audio_open_fd()) or a borrowed buffer. `r` (may be NULL) receives the stream description.
 * Errors: those of the sh_audio_open_*() call and of sh_extract_audio(). */
int sh_extract_file(const char *path, const sh_audio_opts *o, sh_fp *fp, sh_extract_result *r,
                    sh_err *e);
int sh_extract_fd(int fd, const sh_audio_opts *o, sh_fp *fp, sh_extract_result *r, sh_err *e);
int sh_extract_mem(const void *buf, size_t len, const sh_audio_opts *o, sh_fp *fp,
                   sh_extract_result *r, sh_err *e);

#endif
