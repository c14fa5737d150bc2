/* Fuzz target: the HTTP request handling that is ours — percent-escape decoding of paths and
 * query arguments (sh_http_unescape), route matching (sh_http_path_matches), the bearer token
 * check (ed_bearer_ok) and the shards= argument (ed_parse_shards). The input is split on '\n'
 * into a URL, a route pattern, an Authorization header value, a token and a shards= value.
 * Properties: decoding never grows a string and never makes a control character the input did
 * not hold; a route pattern without '*' matches exactly itself; the token check accepts exactly
 * "Bearer" (any case), spaces, then the token; a parsed shard list marks only shards < nshards
 * and accepts exactly the comma lists of such numbers. */
#include "../../edge/edge.h"
#include "sh_http.h"
#include "sh_shardmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { FIELDS = 5 };

static int has_ctrl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static void check_unescape(const char *url)
{
    char *d = strdup(url);
    if (!d)
        return;
    size_t n = sh_http_unescape(d);
    if (n != strlen(d) || n > strlen(url) || (!has_ctrl(url) && has_ctrl(d)))
        abort();
    free(d);
}

static void check_routes(const char *url, const char *pattern)
{
    if (pattern[0] != '/')
        return;
    int m = sh_http_path_matches(pattern, url);
    size_t n = strlen(pattern);
    int is_pattern = n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '/';
    if (!is_pattern && m != (strcmp(pattern, url) == 0))
        abort();
    if (is_pattern && m && (strncmp(url, pattern, n - 1) != 0 || !url[n - 1] ||
                            strchr(url + n - 1, '/')))
        abort();
}

static void check_bearer(const char *h, const char *token)
{
    if (!token[0])
        return; /* no token configured: the check is not called */
    int want = strncasecmp(h, "Bearer ", 7) == 0;
    const char *p = h + (want ? 7 : 0);
    while (want && *p == ' ')
        p++;
    want = want && strcmp(p, token) == 0;
    if (ed_bearer_ok(h, token) != want || ed_bearer_ok(NULL, token) != 0)
        abort();
}

static void check_shards(const char *s, int nshards)
{
    unsigned char want[SH_SHARDS_MAX];
    sh_err e = {0};
    int rc = ed_parse_shards(s, nshards, want, &e);
    /* reference: a comma list of decimal numbers, each < nshards */
    int ok = 1;
    const char *p = s;
    for (;;) {
        if (*p < '0' || *p > '9') {
            ok = 0;
            break;
        }
        unsigned long v = 0;
        while (*p >= '0' && *p <= '9' && v < 100000)
            v = v * 10 + (unsigned long)(*p++ - '0');
        if (v >= (unsigned long)nshards || (*p >= '0' && *p <= '9')) {
            ok = 0;
            break;
        }
        if (*p != ',')
            break;
        p++;
    }
    if (ok && *p)
        ok = 0;
    if ((rc == 0) != ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *f[FIELDS] = {"", "/", "", "", ""};
    char *p = buf;
    for (int i = 0; i < FIELDS && p; i++) {
        f[i] = p;
        p = strchr(p, '\n');
        if (p)
            *p++ = '\0';
    }
    check_unescape(f[0]);
    check_routes(f[0], f[1]);
    check_bearer(f[2], f[3]);
    check_shards(f[4], 1 + (int)(size % SH_SHARDS_MAX));
    free(buf);
    return 0;
}
