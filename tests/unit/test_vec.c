/* Unit tests for sh_vec: capped growth keeps the contents, never passes the cap, reports
 * SH_ETOOBIG / SH_ENOMEM without touching the array, and cannot overflow a size computation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sh_vec.h"

#include <stdlib.h>
#include <string.h>

typedef struct item {
    uint64_t a, b;
} item;

static void test_grows_and_keeps_contents(void **state)
{
    (void)state;
    item *v = NULL;
    size_t n = 0, cap = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        assert_int_equal(sh_vec_reserve(&v, &cap, n + 1, SH_VEC_NOCAP), 0);
        assert_true(cap >= n + 1);
        v[n++] = (item){i, ~i};
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].a, i);
        assert_int_equal(v[i].b, ~(uint64_t)i);
    }
    free(v);
}

static void test_no_realloc_within_capacity(void **state)
{
    (void)state;
    uint32_t *v = NULL;
    size_t cap = 0;
    assert_int_equal(sh_vec_reserve(&v, &cap, 10, 1000), 0);
    assert_non_null(v);
    uint32_t *first = v;
    size_t cap1 = cap;
    assert_true(cap1 >= 16); /* the first allocation is not a one-element sliver */
    assert_int_equal(sh_vec_reserve(&v, &cap, cap1, 1000), 0);
    assert_ptr_equal(v, first);
    assert_int_equal(cap, cap1);
    assert_int_equal(sh_vec_reserve(&v, &cap, 0, 1000), 0); /* nothing asked: nothing done */
    assert_ptr_equal(v, first);
    free(v);
}

static void test_cap_is_hard(void **state)
{
    (void)state;
    char *v = NULL;
    size_t cap = 0;
    /* Doubling would pass 1000: the capacity stops exactly at the cap. */
    assert_int_equal(sh_vec_reserve(&v, &cap, 999, 1000), 0);
    assert_int_equal(cap, 1000);
    assert_int_equal(sh_vec_reserve(&v, &cap, 1000, 1000), 0);
    assert_int_equal(cap, 1000);
    char *kept = v;
    memset(v, 'x', 1000);
    assert_int_equal(sh_vec_reserve(&v, &cap, 1001, 1000), SH_ETOOBIG);
    assert_ptr_equal(v, kept); /* unchanged on error, still owned by the caller */
    assert_int_equal(cap, 1000);
    assert_int_equal(v[999], 'x');
    free(v);

    /* A cap below the first allocation's size is honoured too. */
    v = NULL;
    cap = 0;
    assert_int_equal(sh_vec_reserve(&v, &cap, 3, 5), 0);
    assert_int_equal(cap, 5);
    assert_int_equal(sh_vec_reserve(&v, &cap, 6, 5), SH_ETOOBIG);
    free(v);
}

static void test_overflow_is_too_big(void **state)
{
    (void)state;
    item *v = NULL;
    size_t cap = 0;
    /* need * sizeof(item) would wrap around: refused before any allocation. */
    assert_int_equal(sh_vec_reserve(&v, &cap, SIZE_MAX / sizeof(item) + 1, SH_VEC_NOCAP),
                     SH_ETOOBIG);
    assert_null(v);
    assert_int_equal(cap, 0);
}

static void test_out_of_memory(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan aborts on an impossible allocation instead of returning NULL */
#else
    item *v = NULL;
    size_t cap = 0;
    assert_int_equal(sh_vec_reserve(&v, &cap, 16, SH_VEC_NOCAP), 0);
    item *kept = v;
    assert_int_equal(sh_vec_reserve(&v, &cap, SIZE_MAX / sizeof(item) / 2, SH_VEC_NOCAP),
                     SH_ENOMEM);
    assert_ptr_equal(v, kept);
    assert_int_equal(cap, 16 > 4096 / sizeof(item) ? 16 : 4096 / sizeof(item));
    free(v);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_and_keeps_contents),
        cmocka_unit_test(test_no_realloc_within_capacity),
        cmocka_unit_test(test_cap_is_hard),
        cmocka_unit_test(test_overflow_is_too_big),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
