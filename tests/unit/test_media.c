/* Unit tests for sh_media: confinement under the media root (.., absolute paths, symlinks,
 * percent-encoded escapes) with both openat2 and the O_NOFOLLOW walk, capped reads, URIs,
 * SHA-256 and hex. Each test builds its own tree under a fresh temp dir:
 *   T/outside.txt   T/root/a.wav   T/root/sub/b.wav   T/root/fifo   T/root/dir/
 *   T/root/out -> ../outside.txt   T/root/abs -> T/outside.txt   T/root/in -> a.wav
 *   T/root/subout -> ..           T/link-root -> root
 */
/* cmocka.h needs these first; keep clang-format from sorting them after it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include "sh_media.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fx {
    char dir[256];
    char root[300];
    sh_media *m[2]; /* [0] openat2, [1] portable walk */
} fx;

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* snprintf into an array, failing the test on truncation. */
#define PATHF(out, ...) assert_true(snprintf(out, sizeof out, __VA_ARGS__) < (int)sizeof out)

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char p[512];
    snprintf(f->dir, sizeof f->dir, "/tmp/sh-test-media.XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    snprintf(f->root, sizeof f->root, "%s/root", f->dir);
    mkdir(f->root, 0755);
    PATHF(p, "%s/outside.txt", f->dir), put(p, "secret");
    PATHF(p, "%s/a.wav", f->root), put(p, "AAAA");
    PATHF(p, "%s/sub", f->root), mkdir(p, 0755);
    PATHF(p, "%s/dir", f->root), mkdir(p, 0755);
    PATHF(p, "%s/sub/b.wav", f->root), put(p, "BB");
    PATHF(p, "%s/sub/we ird%%.wav", f->root), put(p, "W");
    PATHF(p, "%s/fifo", f->root), mkfifo(p, 0644);
    PATHF(p, "%s/out", f->root), symlink("../outside.txt", p);
    PATHF(p, "%s/in", f->root), symlink("a.wav", p);
    PATHF(p, "%s/subout", f->root), symlink("..", p);
    char target[512];
    PATHF(target, "%s/outside.txt", f->dir);
    PATHF(p, "%s/abs", f->root), symlink(target, p);
    PATHF(p, "%s/link-root", f->dir), symlink("root", p);
    for (int i = 0; i < 2; i++) {
        if (sh_media_new(f->root, i ? SH_MEDIA_NO_OPENAT2 : 0, &f->m[i], NULL))
            return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[400];
    sh_media_free(f->m[0]);
    sh_media_free(f->m[1]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Opens `ref` with both resolvers, asserting the same code; returns the content read (or ""). */
static int open_both(fx *f, const char *ref, char *content, size_t cap)
{
    int rc0 = 0;
    for (int i = 0; i < 2; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        sh_err e = {0};
        int rc = sh_media_read(f->m[i], ref, 1024, &buf, &len, &e);
        if (rc) {
            assert_null(buf);
            assert_true(e.msg[0] != '\0');
        }
        if (i == 0)
            rc0 = rc;
        else if (rc != rc0)
            fail_msg("%s: openat2 gave %s, walk gave %s (%s)", ref, sh_err_name(rc0),
                     sh_err_name(rc), e.msg);
        if (!rc) {
            assert_true(len < cap);
            memcpy(content, buf, len);
            content[len] = '\0';
        }
        free(buf);
    }
    return rc0;
}

static void test_open_inside(void **state)
{
    fx *f = *state;
    char got[64], ref[600];
    assert_int_equal(open_both(f, "a.wav", got, sizeof got), 0);
    assert_string_equal(got, "AAAA");
    assert_int_equal(open_both(f, "./sub//b.wav", got, sizeof got), 0);
    assert_string_equal(got, "BB");
    PATHF(ref, "%s/sub/b.wav", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), 0);
    assert_string_equal(got, "BB");
    PATHF(ref, "file://%s/sub/b.wav", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), 0);
    PATHF(ref, "file://localhost%s/a.wav", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), 0);
    assert_string_equal(got, "AAAA");
    PATHF(ref, "FILE:%s/sub/we%%20ird%%25.wav", f->root); /* "we ird%.wav" */
    assert_int_equal(open_both(f, ref, got, sizeof got), 0);
    assert_string_equal(got, "W");
    /* The root spelled through a symlink still counts as the root. */
    char spelled[400];
    PATHF(spelled, "%s/link-root", f->dir);
    sh_media *m = NULL;
    assert_int_equal(sh_media_new(spelled, 0, &m, NULL), 0);
    assert_string_equal(sh_media_root(m), sh_media_root(f->m[0]));
    int fd = -1;
    PATHF(ref, "%s/link-root/a.wav", f->dir);
    assert_int_equal(sh_media_open(m, ref, &fd, NULL), 0);
    assert_true(fd >= 0);
    close(fd);
    sh_media_free(m);
}

static void test_escapes(void **state)
{
    fx *f = *state;
    char got[64], ref[600];
    assert_int_equal(open_both(f, "../outside.txt", got, sizeof got), SH_EPATH);
    assert_int_equal(open_both(f, "sub/../a.wav", got, sizeof got), SH_EPATH); /* '..' never */
    assert_int_equal(open_both(f, "/etc/passwd", got, sizeof got), SH_EPATH);
    PATHF(ref, "%s/outside.txt", f->dir);
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EPATH);
    PATHF(ref, "%s-evil/a.wav", f->root); /* prefix, not a parent */
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EPATH);
    PATHF(ref, "file://%s/%%2e%%2e/outside.txt", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EPATH);
    PATHF(ref, "file://%s/sub/%%2E%%2e%%2f%%2e./outside.txt", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EPATH);
    assert_int_equal(open_both(f, "file:///etc/passwd", got, sizeof got), SH_EPATH);
    /* Symlinks out of the root, relative and absolute, and through a directory link. */
    assert_int_equal(open_both(f, "out", got, sizeof got), SH_EPATH);
    assert_int_equal(open_both(f, "abs", got, sizeof got), SH_EPATH);
    assert_int_equal(open_both(f, "subout/outside.txt", got, sizeof got), SH_EPATH);
}

static void test_bad_refs(void **state)
{
    fx *f = *state;
    char got[64], ref[600];
    assert_int_equal(open_both(f, "missing.wav", got, sizeof got), SH_ENOTFOUND);
    assert_int_equal(open_both(f, "dir", got, sizeof got), SH_EIO);
    assert_int_equal(open_both(f, "fifo", got, sizeof got), SH_EIO); /* refused, not blocked on */
    assert_int_equal(open_both(f, "", got, sizeof got), SH_EINVAL);
    assert_int_equal(open_both(f, "a\n.wav", got, sizeof got), SH_EINVAL);
    PATHF(ref, "file://%s/a%%00.wav", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EINVAL);
    PATHF(ref, "file://%s/a%%0a.wav", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EINVAL);
    PATHF(ref, "file://%s/a%%zz.wav", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EINVAL);
    PATHF(ref, "file://%s/a.wav?x=1", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EINVAL);
    PATHF(ref, "file://evil.example%s/a.wav", f->root);
    assert_int_equal(open_both(f, ref, got, sizeof got), SH_EUNSUPPORTED);
    assert_int_equal(open_both(f, "http://example.com/a.wav", got, sizeof got), SH_EUNSUPPORTED);
    /* A symlink inside the root to a file inside: openat2 follows it, the walk refuses all. */
    int fd = -1;
    assert_int_equal(sh_media_open(f->m[0], "in", &fd, NULL), 0);
    close(fd);
    assert_int_equal(sh_media_open(f->m[1], "in", &fd, NULL), SH_EPATH);
    assert_int_equal(fd, -1);
    sh_media *m = NULL;
    assert_int_equal(sh_media_new("/nonexistent/media", 0, &m, NULL), SH_ENOTFOUND);
    assert_null(m);
}

static void test_read_cap(void **state)
{
    fx *f = *state;
    uint8_t *buf = (uint8_t *)"x";
    size_t len = 9;
    sh_err e = {0};
    assert_int_equal(sh_media_read(f->m[0], "a.wav", 3, &buf, &len, &e), SH_ETOOBIG);
    assert_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(sh_media_read(f->m[0], "a.wav", 4, &buf, &len, &e), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "AAAA", 4);
    free(buf);
    /* A pipe has no size up front: the cap applies while reading. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "0123456789", 10), 10);
    close(p[1]);
    assert_int_equal(sh_read_fd(p[0], 9, &buf, &len, &e), SH_ETOOBIG);
    close(p[0]);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "0123456789", 10), 10);
    close(p[1]);
    assert_int_equal(sh_read_fd(p[0], 10, &buf, &len, &e), 0);
    assert_int_equal(len, 10);
    free(buf);
    close(p[0]);
}

static void test_uri_classify(void **state)
{
    (void)state;
    sh_uri_kind k = 0;
    assert_int_equal(sh_uri_classify("file:///a", &k, NULL), 0);
    assert_int_equal(k, SH_URI_FILE);
    assert_int_equal(sh_uri_classify("HTTP://h/a", &k, NULL), 0);
    assert_int_equal(k, SH_URI_HTTP);
    assert_int_equal(sh_uri_classify("https://h/a", &k, NULL), 0);
    assert_int_equal(k, SH_URI_HTTPS);
    assert_int_equal(sh_uri_classify("data:audio/wav;base64,AAAA", &k, NULL), 0);
    assert_int_equal(k, SH_URI_INLINE);
    assert_int_equal(sh_uri_classify("ftp://h/a", &k, NULL), SH_EUNSUPPORTED);
    assert_int_equal(sh_uri_classify("s3://b/k", &k, NULL), SH_EUNSUPPORTED);
    assert_int_equal(sh_uri_classify("httpx://h", &k, NULL), SH_EUNSUPPORTED);
    assert_int_equal(sh_uri_classify("/just/a/path", &k, NULL), SH_EINVAL);
    assert_int_equal(sh_uri_classify("", &k, NULL), SH_EINVAL);
    assert_int_equal(sh_uri_classify("http://h/a b", &k, NULL), SH_EINVAL);
    assert_int_equal(sh_uri_classify("http://h/\x01", &k, NULL), SH_EINVAL);
    char *big = malloc(SH_MEDIA_PATH_MAX + 10);
    assert_non_null(big);
    memset(big, 'a', SH_MEDIA_PATH_MAX + 9);
    memcpy(big, "http://", 7);
    big[SH_MEDIA_PATH_MAX + 9] = '\0';
    assert_int_equal(sh_uri_classify(big, &k, NULL), SH_EINVAL);
    free(big);
    char path[16];
    assert_int_equal(sh_uri_file_path("file:///a%2Fb", path, sizeof path, NULL), 0);
    assert_string_equal(path, "/a/b");
    assert_int_equal(sh_uri_file_path("file:///0123456789abcdef", path, sizeof path, NULL),
                     SH_EINVAL);
    assert_int_equal(sh_uri_file_path("file:relative", path, sizeof path, NULL), SH_EINVAL);
    assert_int_equal(sh_uri_file_path("file:///a%", path, sizeof path, NULL), SH_EINVAL);
    assert_int_equal(sh_uri_file_path("file:///a%4", path, sizeof path, NULL), SH_EINVAL);
    assert_int_equal(sh_uri_file_path("https://h/a", path, sizeof path, NULL), SH_EUNSUPPORTED);
}

static void test_sha256_hex(void **state)
{
    (void)state;
    uint8_t d[SH_SHA256_LEN], back[SH_SHA256_LEN];
    char hex[SH_SHA256_HEX_LEN + 1];
    size_t n = 0;
    assert_int_equal(sh_sha256("abc", 3, d, NULL), 0);
    sh_hex_encode(d, sizeof d, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(sh_sha256(NULL, 0, d, NULL), 0);
    sh_hex_encode(d, sizeof d, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(sh_hex_decode("E3B0c442", back, sizeof back, &n, NULL), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(back, d, 4);
    assert_int_equal(sh_hex_decode(hex, back, sizeof back, &n, NULL), 0);
    assert_memory_equal(back, d, sizeof d);
    assert_int_equal(sh_hex_decode("abc", back, sizeof back, &n, NULL), SH_EINVAL);
    assert_int_equal(sh_hex_decode("zz", back, sizeof back, &n, NULL), SH_EINVAL);
    assert_int_equal(sh_hex_decode("0g", back, sizeof back, &n, NULL), SH_EINVAL);
    assert_int_equal(sh_hex_decode("0011", back, 1, &n, NULL), SH_ETOOBIG);
    assert_int_equal(sh_hex_decode("", back, sizeof back, &n, NULL), 0);
    assert_int_equal(n, 0);
}

/* The streaming digest equals the one-shot digest across chunk boundaries, reports the size, and
 * leaves the descriptor's offset where it was. */
static void test_sha256_fd(void **state)
{
    (void)state;
    char path[] = "/tmp/test_media_sha_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    size_t len = 600 * 1024 + 7; /* over two of its 256 KiB chunks */
    uint8_t *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 131u + (i >> 9));
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 5, SEEK_SET), 5);
    uint8_t want[SH_SHA256_LEN], got[SH_SHA256_LEN];
    uint64_t size = 0;
    assert_int_equal(sh_sha256(data, len, want, NULL), 0);
    assert_int_equal(sh_sha256_fd(fd, got, &size, NULL), 0);
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(size, len);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 5);
    assert_int_equal(ftruncate(fd, 0), 0); /* empty file: the digest of nothing */
    assert_int_equal(sh_sha256_fd(fd, got, NULL, NULL), 0);
    assert_int_equal(sh_sha256(NULL, 0, want, NULL), 0);
    assert_memory_equal(got, want, sizeof want);
    close(fd);
    sh_err e = {0};
    assert_int_equal(sh_sha256_fd(fd, got, &size, &e), SH_EIO); /* closed descriptor */
    assert_int_equal(size, 0);
    int p[2];
    assert_int_equal(pipe(p), 0); /* unseekable: refused, not read from the current position */
    assert_int_equal(sh_sha256_fd(p[0], got, NULL, NULL), SH_EIO);
    close(p[0]);
    close(p[1]);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_cap, setup, teardown),
        cmocka_unit_test(test_uri_classify),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_sha256_fd),
    };
    return cmocka_run_group_tests_name("media", tests, NULL, NULL);
}
