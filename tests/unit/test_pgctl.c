/* sh_pgctl_follow_conninfo: the conninfo handed to pg_basebackup (its argv is visible to every
 * local user) holds no secret of the --follow DSN, whatever libpq keyword carries it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "sh_err.h"
#include "sh_pgctl.h"
#include <stdio.h>
#include <string.h>

static void test_follow_conninfo_drops_secrets(void **state)
{
    (void)state;
    char out[1024];
    sh_err e;
    int rc = sh_pgctl_follow_conninfo("host=db.example port=5433 user=soundhash_follow "
                                      "password=pw-hunter2 sslpassword=kpw-hunter3 "
                                      "sslmode=verify-full dbname=soundhash passfile=/x/pgpass",
                                      "/srv/b/pgpass", out, sizeof out, &e);
    assert_int_equal(rc, 0);
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "hunter3"));
    assert_null(strstr(out, "password="));   /* neither password= nor sslpassword= */
    assert_null(strstr(out, "dbname"));
    assert_null(strstr(out, "/x/pgpass"));
    assert_non_null(strstr(out, "host='db.example'"));
    assert_non_null(strstr(out, "port='5433'"));
    assert_non_null(strstr(out, "user='soundhash_follow'"));
    assert_non_null(strstr(out, "sslmode='verify-full'"));
    assert_non_null(strstr(out, "passfile='/srv/b/pgpass'"));
    /* URI form: the password in the authority is dropped too */
    rc = sh_pgctl_follow_conninfo("postgresql://f:pw-hunter2@db.example/soundhash?sslpassword=k3",
                                  "/p", out, sizeof out, &e);
    assert_int_equal(rc, 0);
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "k3"));
    assert_non_null(strstr(out, "user='f'"));
    assert_int_equal(sh_pgctl_follow_conninfo("host=a bogus=1", "/p", out, sizeof out, &e),
                     SH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follow_conninfo_drops_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
