/* sh_media.c — media-root confinement, capped reads, URIs, SHA-256, hex. */
#include "sh_media.h"
#include "sh_vec.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef __has_include
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define SH_HAVE_OPENAT2_H 1
#endif
#endif

struct sh_media {
    int rootfd; /* O_PATH directory */
    unsigned flags;
    char real[SH_MEDIA_PATH_MAX];    /* canonical root */
    char spelled[SH_MEDIA_PATH_MAX]; /* root as configured, normalised, when absolute */
};

/* Flags for every file we open: read-only, never our controlling tty, never blocking on a FIFO. */
#define SH_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)

/* ---- paths ------------------------------------------------------------------------------------
 */

static bool has_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    }
    return false;
}

/* Lexically normalises `in` into `out`: collapses '/', drops '.', refuses '..' (SH_EPATH).
 * Keeps a leading '/' for absolute paths; a relative result has none. */
static int normalise(const char *in, char *out, size_t cap, sh_err *e)
{
    size_t o = 0;
    if (*in == '/')
        out[o++] = '/';
    for (const char *p = in; *p;) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return sh_err_set(e, SH_EPATH, "media: '..' not allowed in a media path");
        if (!(n == 1 && p[0] == '.')) {
            bool sep = o > 0 && out[o - 1] != '/';
            if (o + sep + n + 1 > cap)
                return sh_err_set(e, SH_EINVAL, "media: path too long");
            if (sep)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    out[o] = '\0';
    return 0;
}

/* If `abs` lies under `root` (both normalised), returns the remainder (no leading '/'), else NULL.
 */
static const char *beneath(const char *abs, const char *root)
{
    size_t n = strlen(root);
    if (n == 0)
        return NULL;
    if (n == 1) /* root is "/" */
        return abs + 1;
    if (strncmp(abs, root, n) != 0 || (abs[n] != '/' && abs[n] != '\0'))
        return NULL;
    return abs[n] == '/' ? abs + n + 1 : abs + n;
}

/* ---- opening beneath the root -----------------------------------------------------------------
 */

static int open_errno(int err, const char *rel, sh_err *e)
{
    switch (err) {
    case EXDEV:
    case ELOOP:
        return sh_err_set(e, SH_EPATH, "media: '%s' resolves outside the media root (symlink)",
                          rel);
    case ENOENT:
    case ENOTDIR:
        return sh_err_set(e, SH_ENOTFOUND, "media: '%s': %s", rel, strerror(err));
    default:
        return sh_err_set(e, SH_EIO, "media: '%s': %s", rel, strerror(err));
    }
}

/* Portable fallback: one component at a time, refusing every symlink. Returns fd or -errno. */
static int walk_nofollow(int rootfd, const char *rel)
{
    int dir = rootfd;
    const char *p = rel;
    for (;;) {
        size_t n = strcspn(p, "/");
        char comp[NAME_MAX + 1];
        if (n == 0 || n > NAME_MAX) {
            if (dir != rootfd)
                close(dir);
            return n ? -ENAMETOOLONG : -ENOENT;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        bool last = p[n] == '\0';
        int fl = last ? SH_OPEN_FLAGS | O_NOFOLLOW : O_PATH | O_NOFOLLOW | O_CLOEXEC;
        int fd = openat(dir, comp, fl);
        int err = errno;
        /* O_PATH|O_NOFOLLOW opens a symlink itself instead of failing: refuse it explicitly. */
        struct stat st;
        if (fd >= 0 && !last) {
            if (fstat(fd, &st) != 0)
                err = errno;
            else if (!S_ISDIR(st.st_mode))
                err = S_ISLNK(st.st_mode) ? ELOOP : ENOTDIR;
            else
                err = 0;
            if (err) {
                close(fd);
                fd = -1;
            }
        }
        if (dir != rootfd)
            close(dir);
        if (fd < 0)
            return -err;
        if (last)
            return fd;
        dir = fd;
        p += n + 1;
    }
}

static int open_beneath(const sh_media *m, const char *rel)
{
#if defined(SH_HAVE_OPENAT2_H) && defined(SYS_openat2)
    if (!(m->flags & SH_MEDIA_NO_OPENAT2)) {
        struct open_how how = {
            .flags = SH_OPEN_FLAGS,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, m->rootfd, rel, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        /* ENOSYS: old kernel; EPERM: seccomp profiles that predate openat2. */
        if (errno != ENOSYS && errno != EPERM)
            return -errno;
    }
#endif
    return walk_nofollow(m->rootfd, rel);
}

/* RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":". A relative file name with a
 * colon ("a:b.wav") reads as a URI; "./a:b.wav" does not. */
static bool has_scheme(const char *s)
{
    if (!isalpha((unsigned char)s[0]))
        return false;
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    return s[n] == ':';
}

/* Turns `ref` into a normalised path relative to the root, in `rel`. */
static int to_relative(const sh_media *m, const char *ref, char *rel, size_t cap, sh_err *e)
{
    char path[SH_MEDIA_PATH_MAX], norm[SH_MEDIA_PATH_MAX];
    int rc;
    if (has_scheme(ref)) {
        sh_uri_kind k;
        if ((rc = sh_uri_classify(ref, &k, e)) != 0)
            return rc;
        if (k != SH_URI_FILE)
            return sh_err_set(e, SH_EUNSUPPORTED, "media: only file: URIs name local media");
        if ((rc = sh_uri_file_path(ref, path, sizeof path, e)) != 0)
            return rc;
    } else {
        if (strlen(ref) >= sizeof path)
            return sh_err_set(e, SH_EINVAL, "media: path too long");
        if (has_control(ref))
            return sh_err_set(e, SH_EINVAL, "media: control character in path");
        memcpy(path, ref, strlen(ref) + 1);
    }
    if ((rc = normalise(path, norm, sizeof norm, e)) != 0)
        return rc;
    const char *r = norm;
    if (norm[0] == '/') {
        r = beneath(norm, m->real);
        if (!r && m->spelled[0])
            r = beneath(norm, m->spelled);
        if (!r)
            return sh_err_set(e, SH_EPATH, "media: '%s' is outside the media root %s", norm,
                              m->real);
    }
    if (!*r)
        return sh_err_set(e, SH_EIO, "media: the media root itself is not a file");
    size_t n = strlen(r);
    if (n >= cap)
        return sh_err_set(e, SH_EINVAL, "media: path too long");
    memmove(rel, r, n + 1);
    return 0;
}

int sh_media_open(const sh_media *m, const char *ref, int *fd, sh_err *e)
{
    *fd = -1;
    if (!ref || !*ref)
        return sh_err_set(e, SH_EINVAL, "media: empty reference");
    char rel[SH_MEDIA_PATH_MAX];
    int rc = to_relative(m, ref, rel, sizeof rel, e);
    if (rc)
        return rc;
    int f = open_beneath(m, rel);
    if (f < 0)
        return open_errno(-f, rel, e);
    struct stat st;
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return sh_err_set(e, SH_EIO, "media: '%s' is not a regular file", rel);
    }
    int fl = fcntl(f, F_GETFL);
    if (fl < 0 || fcntl(f, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        close(f);
        return sh_err_set(e, SH_EIO, "media: fcntl: %s", strerror(errno));
    }
    *fd = f;
    return 0;
}

int sh_read_fd(int fd, size_t max, uint8_t **buf, size_t *len, sh_err *e)
{
    *buf = NULL;
    *len = 0;
    if (max > SIZE_MAX / 2)
        max = SIZE_MAX / 2; /* so that max + 1 below cannot overflow */
    struct stat st;
    size_t cap = 64 * 1024;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > max)
            return sh_err_set(e, SH_ETOOBIG, "media: %lld bytes, over the %zu-byte cap",
                              (long long)st.st_size, max);
        cap = (size_t)st.st_size + 1; /* +1 so that EOF is seen without growing */
    }
    if (cap > max + 1)
        cap = max + 1;
    uint8_t *b = malloc(cap);
    size_t n = 0;
    if (!b)
        return sh_err_set(e, SH_ENOMEM, "media: out of memory");
    for (;;) {
        /* The file grew past its fstat size, or it is not a regular file: grow, capped at max + 1
         * (n <= max here, so there is always room for one more byte to detect "over max"). */
        if (n == cap && sh_vec_reserve(&b, &cap, n + 1, max + 1)) {
            free(b);
            return sh_err_set(e, SH_ENOMEM, "media: out of memory");
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            free(b);
            return sh_err_set(e, SH_EIO, "media: read: %s", strerror(err));
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            free(b);
            return sh_err_set(e, SH_ETOOBIG, "media: over the %zu-byte cap", max);
        }
    }
    *buf = b;
    *len = n;
    return 0;
}

int sh_media_read(const sh_media *m, const char *ref, size_t max, uint8_t **buf, size_t *len,
                  sh_err *e)
{
    int fd;
    *buf = NULL;
    *len = 0;
    int rc = sh_media_open(m, ref, &fd, e);
    if (rc)
        return rc;
    rc = sh_read_fd(fd, max, buf, len, e);
    close(fd);
    return rc;
}

int sh_media_new(const char *root, unsigned flags, sh_media **out, sh_err *e)
{
    *out = NULL;
    if (!root || !*root || strlen(root) >= SH_MEDIA_PATH_MAX)
        return sh_err_set(e, SH_EINVAL, "media: root path empty or too long");
    sh_media *m = calloc(1, sizeof *m);
    if (!m)
        return sh_err_set(e, SH_ENOMEM, "media: out of memory");
    m->flags = flags;
    m->rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (m->rootfd < 0) {
        int err = errno;
        free(m);
        return sh_err_set(e, err == ENOENT ? SH_ENOTFOUND : SH_EIO, "media: root %s: %s", root,
                          strerror(err));
    }
    char *real = realpath(root, NULL);
    sh_err tmp;
    /* The configured spelling is kept too: uploaders may name files through a symlinked root. */
    if (!real || strlen(real) >= sizeof m->real ||
        (root[0] == '/' && normalise(root, m->spelled, sizeof m->spelled, &tmp) != 0)) {
        free(real);
        sh_media_free(m);
        return sh_err_set(e, SH_EIO, "media: cannot resolve root %s", root);
    }
    memcpy(m->real, real, strlen(real) + 1);
    free(real);
    *out = m;
    return 0;
}

void sh_media_free(sh_media *m)
{
    if (!m)
        return;
    if (m->rootfd >= 0)
        close(m->rootfd);
    free(m);
}

const char *sh_media_root(const sh_media *m)
{
    return m->real;
}

/* ---- URIs -------------------------------------------------------------------------------------
 */

int sh_uri_classify(const char *uri, sh_uri_kind *kind, sh_err *e)
{
    static const struct {
        const char *prefix;
        sh_uri_kind kind;
    } schemes[] = {
        {"file:", SH_URI_FILE},   {"http://", SH_URI_HTTP},   {"https://", SH_URI_HTTPS},
        {"data:", SH_URI_INLINE}, {"inline:", SH_URI_INLINE},
    };
    if (!uri || !*uri)
        return sh_err_set(e, SH_EINVAL, "uri: empty");
    size_t len = strnlen(uri, SH_MEDIA_PATH_MAX);
    if (len >= SH_MEDIA_PATH_MAX)
        return sh_err_set(e, SH_EINVAL, "uri: longer than %d bytes", SH_MEDIA_PATH_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)uri[i] <= 0x20 || uri[i] == 0x7f)
            return sh_err_set(e, SH_EINVAL, "uri: control character or space at byte %zu", i);
    }
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        if (!strncasecmp(uri, schemes[i].prefix, strlen(schemes[i].prefix))) {
            *kind = schemes[i].kind;
            return 0;
        }
    }
    size_t s = strspn(uri, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    if (s == 0 || uri[s] != ':')
        return sh_err_set(e, SH_EINVAL, "uri: no scheme");
    return sh_err_set(e, SH_EUNSUPPORTED, "uri: unsupported scheme '%.*s'", (int)s, uri);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int sh_uri_file_path(const char *uri, char *out, size_t cap, sh_err *e)
{
    sh_uri_kind k;
    int rc = sh_uri_classify(uri, &k, e);
    if (rc)
        return rc;
    if (k != SH_URI_FILE)
        return sh_err_set(e, SH_EUNSUPPORTED, "uri: not a file: URI");
    const char *p = uri + 5;
    if (p[0] == '/' && p[1] == '/') { /* authority: empty or localhost */
        p += 2;
        size_t h = strcspn(p, "/");
        if (h && !(h == 9 && !strncasecmp(p, "localhost", 9)))
            return sh_err_set(e, SH_EUNSUPPORTED, "uri: remote file host '%.*s'", (int)h, p);
        p += h;
    }
    if (*p != '/')
        return sh_err_set(e, SH_EINVAL, "uri: file path must be absolute");
    if (strpbrk(p, "?#"))
        return sh_err_set(e, SH_EINVAL, "uri: query or fragment in a file URI");
    size_t o = 0;
    for (; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            int hi = hexval((unsigned char)p[1]), lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);
            if (lo < 0)
                return sh_err_set(e, SH_EINVAL, "uri: bad percent-escape");
            c = hi * 16 + lo;
            p += 2;
            if (c < 0x20 || c == 0x7f)
                return sh_err_set(e, SH_EINVAL, "uri: escaped NUL or control character");
        }
        if (o + 1 >= cap)
            return sh_err_set(e, SH_EINVAL, "uri: path too long");
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* ---- checksums --------------------------------------------------------------------------------
 */

int sh_sha256(const void *buf, size_t len, uint8_t out[SH_SHA256_LEN], sh_err *e)
{
    unsigned int n = 0;
    if (EVP_Digest(len ? buf : "", len, out, &n, EVP_sha256(), NULL) != 1 || n != SH_SHA256_LEN)
        return sh_err_set(e, SH_EINTERNAL, "sha256: libcrypto failure");
    return 0;
}

int sh_sha256_fd(int fd, uint8_t out[SH_SHA256_LEN], uint64_t *size, sh_err *e)
{
    enum { CHUNK = 256 * 1024 };
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t *buf = malloc(CHUNK);
    int rc = (ctx && buf) ? 0 : sh_err_set(e, SH_ENOMEM, "sha256: out of memory");
    if (rc == 0 && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        rc = sh_err_set(e, SH_EINTERNAL, "sha256: libcrypto failure");
    uint64_t pos = 0;
    while (rc == 0) {
        ssize_t n = pread(fd, buf, CHUNK, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = sh_err_set(e, SH_EIO, "sha256: read: %s", strerror(errno));
        else if (n == 0)
            break;
        else if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
            rc = sh_err_set(e, SH_EINTERNAL, "sha256: libcrypto failure");
        else
            pos += (uint64_t)n;
    }
    unsigned int len = 0;
    if (rc == 0 && (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != SH_SHA256_LEN))
        rc = sh_err_set(e, SH_EINTERNAL, "sha256: libcrypto failure");
    EVP_MD_CTX_free(ctx);
    free(buf);
    if (size)
        *size = rc == 0 ? pos : 0;
    return rc;
}

void sh_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int sh_hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *n, sh_err *e)
{
    size_t len = strlen(hex);
    *n = 0;
    if (len % 2)
        return sh_err_set(e, SH_EINVAL, "hex: odd length %zu", len);
    if (len / 2 > cap)
        return sh_err_set(e, SH_ETOOBIG, "hex: %zu bytes, room for %zu", len / 2, cap);
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return sh_err_set(e, SH_EINVAL, "hex: bad character at %zu",
                              hi < 0 ? 2 * i : 2 * i + 1);
        out[i] = (uint8_t)(hi * 16 + lo);
    }
    *n = len / 2;
    return 0;
}
