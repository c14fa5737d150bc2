/* sh_httpc.h — a bounded HTTP GET for the operator tools (verify, status): one request, a body
 * cap, connect and total timeouts, an optional bearer token. The edge's own clients (snapshot
 * download, upstream queries) stream or pool connections and use libcurl directly.
 *
 * The caller initialises libcurl once (curl_global_init) in main, as every command that links it.
 */
#ifndef SH_HTTPC_H
#define SH_HTTPC_H

#include "sh_err.h"

#include <stddef.h>

typedef struct sh_httpc_opts {
    const char *token;   /* "Authorization: Bearer" value, or NULL */
    size_t max_body;     /* bytes; a longer answer is SH_ETOOBIG [4 MiB] */
    long connect_ms;     /* [3000] */
    long total_ms;       /* [10000] */
} sh_httpc_opts;

void sh_httpc_opts_default(sh_httpc_opts *o);

/* GETs base_url + path (a trailing '/' of base_url is dropped). On success *status gets the HTTP
 * status (any: the caller decides) and *body a NUL-terminated copy of the answer (caller frees;
 * "" when empty), *len its length (may be NULL). Errors: SH_EINVAL (URL over 2 KiB or not
 * http(s)://), SH_EIO (unreachable, a transport error: the message says which, naming the URL),
 * SH_ETIMEOUT, SH_ETOOBIG, SH_ENOMEM. */
int sh_httpc_get(const char *base_url, const char *path, const sh_httpc_opts *o, long *status,
                 char **body, size_t *len, sh_err *e);

/* 1 when u is an absolute http:// or https:// URL with a host, printable ASCII only (no spaces,
 * control characters or raw non-ASCII bytes), at most 1 KiB: what the tools accept for --edge /
 * --node. */
int sh_httpc_url_ok(const char *u);

/* The bearer token for the operator tools: env SOUNDHASH_API_TOKEN when set, non-empty and at most
 * 4 KiB; else NULL. */
const char *sh_httpc_env_token(void);

#endif
