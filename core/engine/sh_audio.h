/* sh_audio.h — decode any audio libsndfile reads into mono float samples at one analysis rate.
 *
 * Formats: whatever libsndfile 1.2 reads — WAV/RF64/W64, AIFF, FLAC, Ogg Vorbis, Ogg Opus, MP3 and
 * the rest; 1..SH_AUDIO_MAX_CHANNELS channels at 8..192 kHz. Channels are averaged to mono, then
 * resampled to `opts.rate` with libsoxr (streaming, high quality; bit-exact pass-through when the
 * rates are equal).
 *
 * Streaming: sh_audio_read() hands out resampled mono chunks; the reader holds one decode chunk
 * (SH_AUDIO_CHUNK_FRAMES frames) plus the resampler's state, so memory stays bounded whatever the
 * file length.
 *
 * Input is hostile. Checked at open: size (opts.max_bytes), channel count, sample rate, declared
 * duration (opts.max_duration_s), zero-length audio, and truncation the container reveals (a
 * WAV/AIFF data chunk larger than the file, an Ogg stream without its final page, an MP3 ending
 * inside a frame). Checked while decoding, because headers lie: decoded duration against the cap,
 * decode errors, fewer frames than the header declared (exactly for WAV/AIFF/FLAC; Ogg within
 * max(0.5 s, 1 %), as encoders leave the last granule slightly past the end).
 *
 * Output samples are finite and within ±16 (float files may hold anything: NaN/Inf become 0, the
 * rest is clamped); ordinary audio lies within ±1. Error messages do not repeat the path or buffer
 * name: callers add it.
 *
 * Known gap: MP3 has no reliable length field. A cut inside a frame is found by walking the frame
 * headers at the end of the input; a cut exactly on a frame boundary cannot be told from a shorter
 * file and decodes as one (the upload's SHA-256 is what catches that).
 *
 * libsndfile 1.2.0 quirks handled here: (1) a WAV/AIFF data chunk that claims more than the file
 * holds is silently clamped and only logged — we read its log to refuse it; (2) a truncated Ogg
 * stream reports an unknown length rather than an error — we refuse it; (3) libmpg123 prints
 * "Note:"/"Warning:" lines on stderr for damaged MP3s (not silenceable through libsndfile); (4) a
 * Vorbis header that fails to parse leaks ~5.8 KB inside libsndfile (suppressed for LeakSanitizer
 * in sh_audio.c; bounded per bad file, not per sample).
 *
 * Thread safety: one reader per thread; distinct readers are independent.
 */
#ifndef SH_AUDIO_H
#define SH_AUDIO_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

enum {
    SH_AUDIO_MIN_RATE = 8000, /* source sample rates accepted, Hz */
    SH_AUDIO_MAX_RATE = 192000,
    SH_AUDIO_MAX_CHANNELS = 64,   /* libsndfile allows 1024; nobody uploads that, it costs memory */
    SH_AUDIO_CHUNK_FRAMES = 4096, /* frames decoded per libsndfile call */
};

typedef struct sh_audio_opts {
    int rate;              /* output sample rate in Hz (the fingerprinter's analysis rate) [8000] */
    double max_duration_s; /* reject longer input with SH_ETOOLONG [10800 = 3 h] */
    size_t max_bytes;      /* cap on encoded input size, SH_ETOOBIG [2 GiB] */
} sh_audio_opts;

typedef struct sh_audio_info {
    int src_rate;       /* rate of the encoded stream, Hz */
    int channels;       /* channels of the encoded stream */
    int64_t frames;     /* frames the header declares, -1 when unknown (may lie: see above) */
    double duration_s;  /* declared duration (frames / src_rate), -1 when unknown */
    size_t input_bytes; /* size of the encoded input */
    char format[32];    /* "WAV", "FLAC", "OGG/VORBIS", "OGG/OPUS", "MPEG/MP3", "AIFF", ... */
} sh_audio_info;

typedef struct sh_audio sh_audio; /* opaque reader */

/* Fills defaults: rate 8000 (callers set the fingerprint config's rate), 3 h, 2 GiB. */
void sh_audio_opts_default(sh_audio_opts *o);

/* Opens a regular file (FIFOs, devices and directories are refused without blocking).
 * `o` may be NULL for defaults. On success *out owns the file; free it with sh_audio_free().
 * Errors: SH_EINVAL (bad opts), SH_ENOTFOUND (no such file), SH_EIO (unreadable, not a regular
 * file), SH_ETOOBIG (over o->max_bytes), SH_EDECODE (not audio, corrupt, truncated),
 * SH_EUNSUPPORTED (rate outside 8..192 kHz, channels 0 or > SH_AUDIO_MAX_CHANNELS), SH_ETOOLONG
 * (declared duration over the cap), SH_ETOOSHORT (no samples), SH_ENOMEM. On error *out is NULL. */
int sh_audio_open_file(const char *path, const sh_audio_opts *o, sh_audio **out, sh_err *e);

/* Same for an open file descriptor (e.g. from sh_media_open()). Takes ownership of `fd` in every
 * case: it is closed by sh_audio_free(), or before returning an error. Reads with pread(), so the
 * descriptor's offset is irrelevant; the size is fixed at open. */
int sh_audio_open_fd(int fd, const sh_audio_opts *o, sh_audio **out, sh_err *e);

/* Same from memory (libsndfile virtual I/O). `buf` is borrowed and must stay valid and unchanged
 * until sh_audio_free(). Errors as sh_audio_open_file() except the file-system ones. */
int sh_audio_open_mem(const void *buf, size_t len, const sh_audio_opts *o, sh_audio **out,
                      sh_err *e);

/* What the header says. Valid until sh_audio_free(). */
const sh_audio_info *sh_audio_get_info(const sh_audio *a);

/* Reads up to `max` (> 0) mono samples at o->rate into `buf`. Returns the number of samples (> 0),
 * 0 at the end of the stream, or a negative SH_E* code: SH_ETOOLONG once the decoded duration
 * passes the cap, SH_EDECODE for a stream that breaks or ends before its declared length,
 * SH_ETOOSHORT when the stream ends without a single sample, SH_EINVAL for max == 0. Errors are
 * sticky: later calls return the same code. */
long sh_audio_read(sh_audio *a, float *buf, size_t max, sh_err *e);

/* Seconds of source audio decoded so far (the truth, unlike info->duration_s). */
double sh_audio_decoded_seconds(const sh_audio *a);

/* Output samples handed out so far by sh_audio_read(). */
uint64_t sh_audio_samples_out(const sh_audio *a);

/* Frees the reader and closes its input; accepts NULL. */
void sh_audio_free(sh_audio *a);

#endif
