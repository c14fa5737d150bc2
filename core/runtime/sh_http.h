/* sh_http.h — a small HTTP server over libmicrohttpd for /health, /metrics and small JSON APIs.
 *
 * Routes are (method, exact path) pairs registered before sh_http_start(). Each request is served
 * by a thread of an internal pool (opts.threads); handlers therefore run concurrently and must be
 * thread-safe. Bodies are buffered up to opts.max_body bytes: a larger declared Content-Length is
 * answered 413 at once; a larger streamed (chunked) body is read to its end without being stored,
 * then answered 413; the handler is not called. Idle connections are closed after opts.timeout_s,
 * and so is a connection whose request body is still arriving opts.timeout_s after its headers (a
 * client trickling bytes; no answer can be sent before the body's end). Request headers have a
 * total deadline too: a connection whose headers are not complete opts.header_timeout_s after it
 * opened (or after its previous answer, keep-alive) is answered 408 and closed — libmicrohttpd's own
 * timeout counts idle time only, so a client sending a header byte every few seconds would hold
 * its connection forever. Unknown paths get 404, a known path with another method gets 405.
 *
 * Percent-escapes in the path and query are decoded, except in a string where one would decode
 * to a control character (%00 truncating "/v1/match%00x" to "/v1/match", %0a): such a string is
 * left as sent, so it matches no route and parses as no number. A raw NUL byte in the request
 * line (not an escape) ends the path there: libmicrohttpd hands over C strings, so
 * "GET /health\0x" is served as GET /health — the request the bytes before the NUL name, with
 * every check of that route.
 *
 * Answers libmicrohttpd gives itself, before any callback of ours runs, are small HTML pages and
 * cannot be replaced in 0.9.75 (the bodies are compile-time constants): 400 for a malformed
 * request line or header, 431 for headers larger than its per-connection memory pool (32 KiB),
 * 505 for an HTTP version other than 1.0/1.1, 413 for an over-long URI. Connections past
 * opts.max_conns or opts.max_conns_per_ip are closed at once without an answer.
 *
 * Nothing here is global; several servers may run in one process.
 */
#ifndef SH_HTTP_H
#define SH_HTTP_H

#include "sh_err.h"
#include "sh_metrics.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sh_http sh_http;

typedef struct sh_http_opts {
    size_t max_body;    /* request body cap in bytes; default 1 MiB */
    unsigned timeout_s; /* idle connection timeout, and the time a request body may take;
                           default 10 s (0: none) */
    unsigned header_timeout_s; /* the time a request's headers may take, whatever the client
                                  sends meanwhile (408, closed); default 10 s (0: none) */
    unsigned threads;   /* worker threads of the pool; default 2 */
    unsigned max_conns; /* concurrent connections; default 64 */
    unsigned max_conns_per_ip; /* concurrent connections from one client address (the rest are
                                  closed at once); default 0: no limit but max_conns */
    int json_errors;    /* the server's own 404/405/413/500 answers as {"error": "..."} JSON
                           instead of plain text (an API whose every error is JSON); default 0 */
    sh_metrics *metrics; /* when set, every answer is counted in the counter
                            soundhash_http_responses_total{route,code} registered there by
                            sh_http_new (route: the registered path that matched, a pattern as
                            registered, or "other"; code: the status, e.g. "503") — what
                            5xx-rate alerts read. Not owned; must outlive the server.
                            Default NULL: nothing counted */
} sh_http_opts;

/* One request, valid only during the handler call. */
typedef struct sh_http_req {
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated copy of the body (may be empty, never NULL) */
    size_t body_len;
    void *conn_;      /* private: the libmicrohttpd connection */
} sh_http_req;

/* The response a handler fills. The handler sets `status` (default 200), `content_type` (static
 * string; default "text/plain; charset=utf-8") and the body via sh_http_resp_set/_take. */
typedef struct sh_http_resp {
    int status;
    const char *content_type;
    char *body; /* owned by the server once set */
    size_t body_len;
    int body_fd;      /* >= 0: the body is this file instead (sh_http_resp_fd); -1 otherwise */
    uint64_t fd_size; /* bytes of body_fd sent from offset 0 */
} sh_http_resp;

/* A handler returns 0, or a negative SH_E* code to make the server answer 500 (the body, if
 * already set, is discarded). `ud` is the pointer given at registration. */
typedef int (*sh_http_handler)(const sh_http_req *req, sh_http_resp *resp, void *ud);

/* Fills the defaults listed above. */
void sh_http_opts_default(sh_http_opts *o);

/* Creates a stopped server. `o` may be NULL for defaults. Errors: SH_EINVAL, SH_ENOMEM, SH_EEXIST
 * (o->metrics already holds soundhash_http_responses_total: one server per registry). */
int sh_http_new(const sh_http_opts *o, sh_http **out, sh_err *e);

/* Registers `fn` for `method` ("GET", "POST", ...) and the exact `path` ("/health"). A path whose
 * last segment is a lone '*' is a pattern for one more segment: registered as "/v1/snapshots/"
 * followed by '*', it serves "/v1/snapshots/3", not "/v1/snapshots/" nor "/v1/snapshots/3/x";
 * the handler reads req->path, which the server has not validated further (parse it as hostile
 * input). Strings are copied. Only before sh_http_start(). Errors: SH_EINVAL (after start, bad
 * args), SH_EEXIST, SH_ENOMEM. */
int sh_http_route(sh_http *h, const char *method, const char *path, sh_http_handler fn, void *ud);

/* Binds and starts serving. `addr` is "HOST:PORT", ":PORT" (all interfaces) or "[V6]:PORT", with
 * numeric hosts only; PORT 0 picks a free port (see sh_http_port). Errors: SH_EINVAL (bad addr),
 * SH_EIO (bind/listen failed; the message gives the system's reason, e.g. "Address already in
 * use"). */
int sh_http_start(sh_http *h, const char *addr, sh_err *e);

/* The bound TCP port after a successful start, else 0. */
int sh_http_port(const sh_http *h);

/* Stops serving (waits for running handlers) and frees; accepts NULL. */
void sh_http_free(sh_http *h);

/* Copies `len` bytes of `body` as the response body. Returns 0 or SH_ENOMEM. */
int sh_http_resp_set(sh_http_resp *r, int status, const char *content_type, const char *body,
                     size_t len);
/* Takes ownership of a malloc'd `body`. Never fails. */
void sh_http_resp_take(sh_http_resp *r, int status, const char *content_type, char *body,
                       size_t len);

/* Answers with the first `size` bytes of the regular file `fd`, streamed by the server (large
 * bodies without holding them in memory). Takes ownership of `fd` (closed after sending, or
 * on failure). Returns 0. */
int sh_http_resp_fd(sh_http_resp *r, int status, const char *content_type, int fd, uint64_t size);

/* The pure parts of request handling, exposed for tests and the fuzz target (fuzz_http). */

/* 1 when `url` is served by the route registered as `pattern` (see sh_http_route), else 0. */
int sh_http_path_matches(const char *pattern, const char *url);

/* Decodes %XX escapes of the NUL-terminated `s` in place and returns the new length; a string in
 * which an escape would decode to a control character (< 0x20 or 0x7f) is left unchanged. */
size_t sh_http_unescape(char *s);

/* Value of query argument `key` (URL-decoded) or NULL; valid during the handler call. */
const char *sh_http_req_query(const sh_http_req *req, const char *key);
/* Value of request header `name` (case-insensitive) or NULL; valid during the handler call. */
const char *sh_http_req_header(const sh_http_req *req, const char *name);

#endif
