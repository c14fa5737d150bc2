/* sh_media.h — safe access to uploaded media: open files strictly under a media root, read them
 * into memory with a cap, classify and decode URIs, SHA-256 and hex.
 *
 * Who uses it: workers (an audio event names its audio by a file:// URI under the media root, an
 * http(s):// URL, or carries it inline) and ingest (checksums before publishing).
 *
 * The media root is a trust boundary. A reference that names anything outside it is refused with
 * SH_EPATH, whichever way it tries: an absolute path elsewhere, a `..` component (refused
 * everywhere, even where it would stay inside — there is no legitimate use), a percent-encoded
 * `..` in a file:// URI, or a symlink inside the root pointing out of it. Resolution uses
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), which checks every component atomically (no
 * race with a concurrent rename). Where openat2 is unavailable (kernel < 5.6, seccomp filters) a
 * component-by-component O_NOFOLLOW walk is used instead, which refuses every symlink.
 *
 * Thread safety: an sh_media is immutable after sh_media_new() and may be shared by threads.
 */
#ifndef SH_MEDIA_H
#define SH_MEDIA_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

enum {
    SH_MEDIA_PATH_MAX = 4096, /* bytes of a decoded path, of a URI */
    SH_SHA256_LEN = 32,
    SH_SHA256_HEX_LEN = 64, /* without the NUL */
};

/* sh_media_new() flags. */
enum {
    /* Always use the portable O_NOFOLLOW walk (tests, odd kernels). */
    SH_MEDIA_NO_OPENAT2 = 1u << 0,
};

typedef struct sh_media sh_media;

/* Opens the media root `root` (a directory; relative to the working directory or absolute).
 * Errors: SH_EINVAL (empty/over-long path), SH_ENOTFOUND (no such directory), SH_EIO (not a
 * directory, unreadable), SH_ENOMEM. On success *out is owned by the caller: sh_media_free(). */
int sh_media_new(const char *root, unsigned flags, sh_media **out, sh_err *e);

/* Closes the root; accepts NULL. */
void sh_media_free(sh_media *m);

/* The root's canonical absolute path (realpath). Valid until sh_media_free(). */
const char *sh_media_root(const sh_media *m);

/* Opens a regular file for reading. `ref` is one of:
 *   - a file:// URI ("file:///srv/media/a.flac", "file://localhost/...", "file:/srv/..."), whose
 *     percent-decoded path must lie under the root;
 *   - an absolute path under the root (its configured spelling or its canonical one);
 *   - a path relative to the root.
 * On success *fd is an O_RDONLY|O_CLOEXEC descriptor the caller owns (close it, or hand it to
 * sh_audio_open_fd()). FIFOs, devices and directories are refused without blocking.
 * Errors: SH_EINVAL (malformed reference, NUL/control characters, query/fragment in a URI),
 * SH_EUNSUPPORTED (a URI whose scheme is not file://, or a remote file:// host), SH_EPATH (outside
 * the root, `..`, symlink escape), SH_ENOTFOUND, SH_EIO (not a regular file, permission, I/O).
 * On error *fd is -1. */
int sh_media_open(const sh_media *m, const char *ref, int *fd, sh_err *e);

/* sh_media_open() + sh_read_fd(): the whole file in memory, at most `max` bytes.
 * Errors: those of both. On success *buf (malloc'ed, caller frees) holds *len bytes. */
int sh_media_read(const sh_media *m, const char *ref, size_t max, uint8_t **buf, size_t *len,
                  sh_err *e);

/* Reads `fd` from its current offset to EOF into a malloc'ed buffer the caller frees; does not
 * close `fd`. Errors: SH_ETOOBIG (more than `max` bytes; nothing is returned), SH_EIO, SH_ENOMEM.
 * On error *buf is NULL and *len 0. */
int sh_read_fd(int fd, size_t max, uint8_t **buf, size_t *len, sh_err *e);

/* ---- URIs -------------------------------------------------------------------------------------
 */

typedef enum sh_uri_kind {
    SH_URI_FILE = 1,  /* file:... */
    SH_URI_HTTP = 2,  /* http://... */
    SH_URI_HTTPS = 3, /* https://... */
    SH_URI_INLINE = 4 /* data:... or inline:... (the bytes travel with the event) */
} sh_uri_kind;

/* Classifies `uri` by its scheme (case-insensitive). Errors: SH_EINVAL (empty, over
 * SH_MEDIA_PATH_MAX, control characters or spaces, no scheme), SH_EUNSUPPORTED (any other scheme:
 * ftp, s3, gopher, ...). */
int sh_uri_classify(const char *uri, sh_uri_kind *kind, sh_err *e);

/* Extracts the percent-decoded absolute path of a file:// URI into `out` (`cap` bytes, NUL
 * terminated). Errors: SH_EUNSUPPORTED (not file:, or a host other than "" / "localhost"),
 * SH_EINVAL (bad %-escape, decodes to NUL or a control character, not absolute, query/fragment,
 * does not fit in `cap`). It does not check the root; sh_media_open() does. */
int sh_uri_file_path(const char *uri, char *out, size_t cap, sh_err *e);

/* ---- checksums --------------------------------------------------------------------------------
 */

/* SHA-256 of `len` bytes (libcrypto EVP). Errors: SH_EINTERNAL (libcrypto failure). */
int sh_sha256(const void *buf, size_t len, uint8_t out[SH_SHA256_LEN], sh_err *e);

/* SHA-256 of everything in `fd` from offset 0 to EOF, read with pread in bounded chunks (memory
 * does not grow with the file), leaving the descriptor's offset alone; `*size` (may be NULL)
 * receives the byte count. Does not close `fd`. Errors: SH_EIO (read error, e.g. a bad or
 * unseekable descriptor), SH_ENOMEM, SH_EINTERNAL (libcrypto failure). */
int sh_sha256_fd(int fd, uint8_t out[SH_SHA256_LEN], uint64_t *size, sh_err *e);

/* Lower-case hex of `n` bytes into `out`, which must hold 2n+1 bytes (NUL terminated). */
void sh_hex_encode(const uint8_t *in, size_t n, char *out);

/* Decodes hex (either case, even length, nothing else) into `out` of `cap` bytes; *n gets the byte
 * count. Errors: SH_EINVAL (odd length, non-hex character), SH_ETOOBIG (more than cap bytes). */
int sh_hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *n, sh_err *e);

#endif
