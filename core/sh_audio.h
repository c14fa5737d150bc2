/* sh_audio.h — decode any audio libsndfile reads into mono float samples at one analysis rate.
 *
 * Streaming: sh_audio_read() hands out resampled mono chunks, so memory stays bounded whatever the
 * file length. Input is hostile: sizes, rates, channel counts and duration are capped and checked.
 * (Owner: audio module. Draft interface — the implementer may refine it, keeping the shape.)
 */
#ifndef SH_AUDIO_H
#define SH_AUDIO_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sh_audio_opts {
    int rate;              /* output sample rate in Hz (the fingerprinter's analysis rate) */
    double max_duration_s; /* reject longer input with SH_ETOOLONG; default 3 h */
    size_t max_bytes;      /* cap on encoded input size; default 2 GiB */
} sh_audio_opts;

typedef struct sh_audio_info {
    int src_rate;      /* rate of the encoded stream */
    int channels;      /* channels of the encoded stream */
    double duration_s; /* declared duration (frames / rate); may lie for broken headers */
    char format[32];   /* "WAV", "FLAC", "OGG/VORBIS", ... */
} sh_audio_info;

typedef struct sh_audio sh_audio; /* opaque reader */

/* Fills defaults: rate 8000 (overridden by the fingerprint config), 3 h, 2 GiB. */
void sh_audio_opts_default(sh_audio_opts *o);

/* Opens a file. Errors: SH_EIO (unreadable), SH_EDECODE (not audio / corrupt), SH_EUNSUPPORTED
 * (rate outside 8..192 kHz, channel count 0 or > 64), SH_ETOOBIG, SH_ETOOLONG (declared duration). */
int sh_audio_open_file(const char *path, const sh_audio_opts *o, sh_audio **out, sh_err *e);

/* Same from memory; `buf` is borrowed and must stay valid until sh_audio_free(). */
int sh_audio_open_mem(const void *buf, size_t len, const sh_audio_opts *o, sh_audio **out,
                      sh_err *e);

const sh_audio_info *sh_audio_get_info(const sh_audio *a);

/* Reads up to `max` mono samples at o->rate into `buf`. Returns the number of samples (> 0), 0 at
 * the end of the stream, or a negative SH_E* code (SH_ETOOLONG once the decoded duration passes the
 * cap, SH_EDECODE for a stream that breaks mid-way). */
long sh_audio_read(sh_audio *a, float *buf, size_t max, sh_err *e);

/* Frees the reader; accepts NULL. */
void sh_audio_free(sh_audio *a);

#endif
