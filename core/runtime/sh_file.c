/* sh_file.c — atomic file replacement (see sh_file.h). */
#include "sh_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory holding `path`: makes the rename itself durable. */
static int sync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int sh_file_write_atomic(const char *path, const void *data, size_t len, sh_err *e)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return sh_err_set(e, SH_EINVAL, "%.200s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sh_err_set(e, SH_EIO, "cannot create %s: %s", tmp, strerror(errno));
    const char *step = NULL;
    if (write_all(fd, data, len) != 0)
        step = "write";
    else if (fsync(fd) != 0) /* before the rename: never a renamed but empty file after a crash */
        step = "fsync";
    int err = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        err = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename";
        err = errno;
    }
    if (step) {
        unlink(tmp);
        return sh_err_set(e, SH_EIO, "cannot write %s (%s): %s", path, step, strerror(err));
    }
    if (sync_dir(path) != 0)
        return sh_err_set(e, SH_EIO, "%s written, but its directory could not be synced: %s", path,
                          strerror(errno));
    return 0;
}

int sh_file_check_writable_dir(const char *path, sh_err *e)
{
    char dir[PATH_MAX];
    if (!path || !*path || strlen(path) >= sizeof dir)
        return sh_err_set(e, SH_EUSAGE, "%.200s: not a usable file name", path ? path : "");
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK | X_OK) != 0)
        return sh_err_set(e, SH_EUSAGE, "%s: directory %s: %s", path, dir, strerror(errno));
    return 0;
}
