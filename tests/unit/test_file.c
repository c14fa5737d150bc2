/* test_file.c — sh_file_write_atomic: content, replacement, no temporary left behind, failures
 * leave the target untouched. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "sh_file.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sh-ut-file.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Entries in the test directory (a leftover temporary would show up here). */
static int entries(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static void test_write_and_replace(void **state)
{
    (void)state;
    char path[128], got[64];
    snprintf(path, sizeof path, "%s/state.json", dir);
    sh_err e = {0};
    assert_int_equal(sh_file_write_atomic(path, "first\n", 6, &e), 0);
    read_file(path, got, sizeof got);
    assert_string_equal(got, "first\n");
    assert_int_equal(sh_file_write_atomic(path, "2nd", 3, &e), 0);
    read_file(path, got, sizeof got);
    assert_string_equal(got, "2nd");
    assert_int_equal(sh_file_write_atomic(path, "", 0, &e), 0);
    read_file(path, got, sizeof got);
    assert_string_equal(got, "");
    assert_int_equal(entries(), 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
}

static void test_failures_leave_target_alone(void **state)
{
    (void)state;
    sh_err e = {0};
    char path[128];
    snprintf(path, sizeof path, "%s/no/such/dir/f", dir);
    assert_int_equal(sh_file_write_atomic(path, "x", 1, &e), SH_EIO);
    assert_non_null(strstr(e.msg, "no/such/dir"));
    /* The target is a directory: the rename fails, the temporary is removed, the dir stays. */
    snprintf(path, sizeof path, "%s/adir", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    int before = entries();
    assert_int_equal(sh_file_write_atomic(path, "x", 1, &e), SH_EIO);
    assert_non_null(strstr(e.msg, "rename"));
    assert_int_equal(entries(), before);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(rmdir(path), 0);
    /* Longer than PATH_MAX with the suffix. */
    char *huge = malloc(PATH_MAX + 16);
    assert_non_null(huge);
    memset(huge, 'a', PATH_MAX + 15);
    huge[PATH_MAX + 15] = '\0';
    assert_int_equal(sh_file_write_atomic(huge, "x", 1, &e), SH_EINVAL);
    free(huge);
}

/* A relative path (no '/') syncs "." and works. */
static void test_relative_path(void **state)
{
    (void)state;
    char cwd[PATH_MAX], got[16];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(sh_file_write_atomic("rel.txt", "rel", 3, NULL), 0);
    read_file("rel.txt", got, sizeof got);
    assert_string_equal(got, "rel");
    assert_int_equal(unlink("rel.txt"), 0);
    assert_int_equal(chdir(cwd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_and_replace),
        cmocka_unit_test(test_failures_leave_target_alone),
        cmocka_unit_test(test_relative_path),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
