/* wk_fetch_addr_private, the --fetch-deny-private classifier: every non-public IPv4 range and
 * every IPv6 form that reaches one (mapped, compatible, NAT64, 6to4) is refused; public unicast
 * addresses, also wrapped, are allowed. */
#include "../../workers/worker.h"

#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

static bool priv(const char *text)
{
    unsigned char raw[16];
    int fam = strchr(text, ':') ? AF_INET6 : AF_INET;
    assert_int_equal(inet_pton(fam, text, raw), 1);
    return wk_fetch_addr_private(fam, raw);
}

static void test_private(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "0.0.0.0", "10.1.2.3", "100.64.0.1", "127.0.0.1", "169.254.169.254", "172.16.0.1",
        "172.31.255.255", "192.168.1.1", "192.0.0.8", "198.18.0.1",
        "198.19.255.254", "224.0.0.1", "240.0.0.1",
        "255.255.255.255",
        "::", "::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::10.0.0.1", "fe80::1", "fec0::1",
        "feff::1", "fc00::1", "fd12:3456::1", "ff02::1", "64:ff9b::a9fe:a9fe" /* 169.254.169.254 */,
        "64:ff9b::10.0.0.1", "64:ff9b:1::1", "2002:0a00:0001::1" /* 6to4 of 10.0.0.1 */,
        "2002:c0a8:0101::1", "2002:7f00:0001::1", "2002:c612:0001::1" /* 198.18.0.1 */};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (!priv(refused[i]))
            fail_msg("%s should be refused", refused[i]);
    }
    static const char *const allowed[] = {"8.8.8.8",         "1.1.1.1",          "198.17.255.255",
                                          "198.20.0.1",      "192.0.1.1",        "100.128.0.1",
                                          "172.32.0.1",      "::ffff:8.8.8.8",   "64:ff9b::8.8.8.8",
                                          "2002:0808:0808::1", "2606:4700::1111", "2a00:1450::1"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        if (priv(allowed[i]))
            fail_msg("%s should be allowed", allowed[i]);
    }
    assert_true(wk_fetch_addr_private(AF_UNIX, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_private)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
