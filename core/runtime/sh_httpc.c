/* sh_httpc.c — see sh_httpc.h. */
#include "sh_httpc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTPC_URL_MAX 2048
#define HTTPC_TOKEN_MAX 4096

void sh_httpc_opts_default(sh_httpc_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_body = 4u << 20;
    o->connect_ms = 3000;
    o->total_ms = 10000;
}

int sh_httpc_url_ok(const char *u)
{
    const char *rest = strncmp(u, "http://", 7) == 0    ? u + 7
                       : strncmp(u, "https://", 8) == 0 ? u + 8
                                                        : NULL;
    if (!rest || !*rest || *rest == '/' || strlen(u) > 1024)
        return 0;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) /* ASCII only: no IRIs */
            return 0;
    return 1;
}

const char *sh_httpc_env_token(void)
{
    const char *t = getenv("SOUNDHASH_API_TOKEN");
    return t && *t && strlen(t) <= HTTPC_TOKEN_MAX ? t : NULL;
}

typedef struct hc_buf {
    char *p;
    size_t n, cap;
    int over;
} hc_buf;

/* libcurl write callback: appends up to the cap; returning less than given aborts the transfer. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    hc_buf *b = ud;
    size_t len = size * nmemb;
    if (len > b->cap - b->n) {
        b->over = 1;
        return 0;
    }
    char *p = realloc(b->p, b->n + len + 1);
    if (!p)
        return 0;
    memcpy(p + b->n, data, len);
    b->p = p;
    b->n += len;
    p[b->n] = 0;
    return len;
}

static int perform(CURL *c, const char *full, hc_buf *b, long *status, sh_err *e)
{
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (cc == CURLE_OK)
        return 0;
    if (b->over)
        return sh_err_set(e, SH_ETOOBIG, "%s: answer over %zu bytes", full, b->cap);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return sh_err_set(e, SH_ETIMEOUT, "%s: %s", full, curl_easy_strerror(cc));
    if (cc == CURLE_WRITE_ERROR || cc == CURLE_OUT_OF_MEMORY)
        return sh_err_set(e, SH_ENOMEM, "%s: out of memory", full);
    return sh_err_set(e, SH_EIO, "%s: %s", full, curl_easy_strerror(cc));
}

int sh_httpc_get(const char *base_url, const char *path, const sh_httpc_opts *o, long *status,
                 char **body, size_t *len, sh_err *e)
{
    sh_httpc_opts d;
    if (!o) {
        sh_httpc_opts_default(&d);
        o = &d;
    }
    size_t ul = strlen(base_url);
    while (ul && base_url[ul - 1] == '/')
        ul--;
    char full[HTTPC_URL_MAX];
    int fl = snprintf(full, sizeof full, "%.*s%s", (int)ul, base_url, path ? path : "");
    if (fl < 0 || (size_t)fl >= sizeof full || !sh_httpc_url_ok(base_url))
        return sh_err_set(e, SH_EINVAL, "not an http(s) URL of at most 1 KiB: %.64s", base_url);
    if (o->token && strlen(o->token) > HTTPC_TOKEN_MAX)
        return sh_err_set(e, SH_EINVAL, "bearer token over %d bytes", HTTPC_TOKEN_MAX);
    CURL *c = curl_easy_init();
    if (!c)
        return sh_err_set(e, SH_ENOMEM, "curl_easy_init failed");
    hc_buf b = {.cap = o->max_body};
    struct curl_slist *hdr = NULL;
    char auth[HTTPC_TOKEN_MAX + 32];
    if (o->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        hdr = curl_slist_append(NULL, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, o->connect_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->total_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    *status = 0;
    int rc = perform(c, full, &b, status, e);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    if (rc == 0 && !b.p && !(b.p = calloc(1, 1)))
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    if (rc) {
        free(b.p);
        return rc;
    }
    *body = b.p;
    if (len)
        *len = b.n;
    return 0;
}
