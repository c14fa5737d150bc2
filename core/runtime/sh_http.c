/* sh_http.c — libmicrohttpd wrapper: exact-path routing, bounded bodies, a thread pool. */
#include "sh_http.h"

#include "sh_clock.h"
#include "sh_log.h"
#include "sh_vec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#define MAX_ROUTES 32
#define MAX_ADDR 128

typedef struct route {
    char *method;
    char *path;
    sh_http_handler fn;
    void *ud;
} route;

/* One open TCP connection, for the request-header deadline (see conn_reaper). Created and freed
 * by libmicrohttpd's connection notifications; the list is guarded by sh_http.lock. */
typedef struct conn_node {
    struct conn_node *prev, *next;
    int fd;
    int in_headers; /* waiting for a request's headers (new, or keep-alive after an answer) */
    int answered;   /* a request of this connection was answered */
    double t0_ms;   /* monotonic time that wait began */
} conn_node;

struct sh_http {
    sh_http_opts opts;
    route routes[MAX_ROUTES];
    size_t nroutes;
    struct MHD_Daemon *daemon;
    int port;
    sh_metric *responses; /* soundhash_http_responses_total, or NULL (opts.metrics unset) */
    pthread_mutex_t lock; /* conns, stop */
    pthread_cond_t wake;
    conn_node *conns;
    int stop;
    int reaper_running;
    pthread_t reaper;
};

/* Per-request state, created on the first callback of a request, freed on completion. */
typedef struct req_state {
    char *body;
    size_t len, cap;
    int answered;     /* a response was queued (possibly before the body ended) */
    int too_big;      /* the body passed the cap: discard the rest, then answer 413 */
    double t0_ms;     /* monotonic time the request's headers were complete */
} req_state;

void sh_http_opts_default(sh_http_opts *o)
{
    o->max_body = 1u << 20;
    o->timeout_s = 10;
    o->header_timeout_s = 10;
    o->threads = 2;
    o->max_conns = 64;
    o->max_conns_per_ip = 0;
    o->json_errors = 0;
    o->metrics = NULL;
}

int sh_http_new(const sh_http_opts *o, sh_http **out, sh_err *e)
{
    sh_http *h = calloc(1, sizeof *h);
    if (!h)
        return sh_err_set(e, SH_ENOMEM, "http: out of memory");
    sh_http_opts_default(&h->opts);
    if (o)
        h->opts = *o;
    if (h->opts.threads == 0 || h->opts.threads > 64 || h->opts.max_conns == 0) {
        free(h);
        return sh_err_set(e, SH_EINVAL, "http: threads must be 1..64 and max_conns > 0");
    }
    int rc = h->opts.metrics
                 ? sh_metrics_counter(h->opts.metrics, "soundhash_http_responses_total",
                                      "HTTP answers by route (the registered path that matched, "
                                      "or other) and status code.",
                                      (const char *[]){"route", "code", NULL}, &h->responses)
                 : 0;
    if (rc) {
        free(h);
        return sh_err_set(e, rc, "http: cannot register soundhash_http_responses_total");
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->wake, NULL);
    *out = h;
    return 0;
}

int sh_http_route(sh_http *h, const char *method, const char *path, sh_http_handler fn, void *ud)
{
    if (!h || h->daemon || !method || !path || path[0] != '/' || !fn)
        return SH_EINVAL;
    if (h->nroutes >= MAX_ROUTES)
        return SH_ENOMEM;
    for (size_t i = 0; i < h->nroutes; i++) {
        if (!strcmp(h->routes[i].method, method) && !strcmp(h->routes[i].path, path))
            return SH_EEXIST;
    }
    route *r = &h->routes[h->nroutes];
    r->method = strdup(method);
    r->path = strdup(path);
    if (!r->method || !r->path) {
        free(r->method);
        free(r->path);
        return SH_ENOMEM;
    }
    r->fn = fn;
    r->ud = ud;
    h->nroutes++;
    return 0;
}

/* Splits "host:port" / ":port" / "[v6]:port" into a socket address. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sl, int *v6)
{
    char host[MAX_ADDR];
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return SH_EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (!colon[1] || *end || port > 65535)
        return SH_EINVAL;
    memset(ss, 0, sizeof *ss);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *sl = sizeof *a6;
        *v6 = 1;
        return inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1 ? 0 : SH_EINVAL;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *sl = sizeof *a4;
    *v6 = 0;
    if (!host[0]) {
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
        return 0;
    }
    return inet_pton(AF_INET, host, &a4->sin_addr) == 1 ? 0 : SH_EINVAL;
}

static enum MHD_Result queue_buffer(struct MHD_Connection *c, int status, const char *ctype,
                                    char *body, size_t len)
{
    /* MUST_FREE: libmicrohttpd free()s the body when the response is destroyed. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            ctype ? ctype : "text/plain; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result queue_fd(struct MHD_Connection *c, int status, const char *ctype, int fd,
                                uint64_t size)
{
    /* libmicrohttpd reads (or sendfile()s) the file as the client drains it, then closes fd. */
    struct MHD_Response *r = MHD_create_response_from_fd64(size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            ctype ? ctype : "application/octet-stream");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The server's own answers (404, 405, 413, 500): plain text, or {"error": "..."} when
 * opts.json_errors asks for every error of an API to be JSON. `text` is a constant without quotes
 * or backslashes. */
static enum MHD_Result queue_text(const sh_http *h, struct MHD_Connection *c, int status,
                                  const char *text)
{
    if (h->opts.json_errors) {
        size_t n = strlen(text) + 16;
        char *b = malloc(n);
        if (!b)
            return MHD_NO;
        int len = snprintf(b, n, "{\"error\":\"%.*s\"}\n", (int)strcspn(text, "\n"), text);
        return queue_buffer(c, status, "application/json", b, (size_t)len);
    }
    char *b = strdup(text);
    return b ? queue_buffer(c, status, NULL, b, strlen(b)) : MHD_NO;
}

/* Exact paths, or a pattern whose last segment is '*': the prefix, then one non-empty segment
 * without '/'. */
int sh_http_path_matches(const char *pattern, const char *url)
{
    size_t n = strlen(pattern);
    if (n < 2 || pattern[n - 1] != '*' || pattern[n - 2] != '/')
        return strcmp(pattern, url) == 0;
    n--; /* the prefix, '/' included */
    return strncmp(pattern, url, n) == 0 && url[n] && !strchr(url + n, '/');
}

static const route *find_route(const sh_http *h, const char *method, const char *url, int *path_ok)
{
    *path_ok = 0;
    for (size_t i = 0; i < h->nroutes; i++) {
        if (!sh_http_path_matches(h->routes[i].path, url))
            continue;
        *path_ok = 1;
        if (strcmp(h->routes[i].method, method) == 0)
            return &h->routes[i];
    }
    return NULL;
}

/* Counts one answer. The route label is a registered path (never the client's URL, so hostile
 * URLs cannot grow the series), the code one of the few statuses handlers use. */
static void count(const sh_http *h, const char *method, const char *url, int status)
{
    if (!h->responses)
        return;
    const char *label = "other";
    for (size_t i = 0; url && i < h->nroutes; i++) {
        if (sh_http_path_matches(h->routes[i].path, url)) {
            label = h->routes[i].path;
            if (method && strcmp(h->routes[i].method, method) == 0)
                break;
        }
    }
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    sh_series_add(sh_metric_series(h->responses, (const char *[]){label, code, NULL}), 1);
}

static int body_append(req_state *st, const char *data, size_t n, size_t max)
{
    if (n > max || st->len > max - n)
        return SH_ETOOBIG;
    int rc = sh_vec_reserve(&st->body, &st->cap, st->len + n + 1, SH_VEC_NOCAP);
    if (rc)
        return rc;
    memcpy(st->body + st->len, data, n);
    st->len += n;
    st->body[st->len] = '\0';
    return 0;
}

/* ---- the request-header deadline ---------------------------------------------------------
 * libmicrohttpd calls us only once a request's headers are complete, and its connection timeout
 * counts idle time: a client sending a header byte every few seconds holds a connection (and a
 * slot of max_conns) forever. So every connection is tracked from its opening
 * (MHD_OPTION_NOTIFY_CONNECTION), and a reaper thread answers 408 and shuts down the socket of
 * one still waiting for headers after opts.header_timeout_s. libmicrohttpd then reads EOF and
 * closes it itself. A keep-alive connection that has had an answer is closed without a 408: a
 * client may be sending its next request just then and would read the 408 as its answer. It notifies CLOSED before close(fd), and the node leaves the list under h->lock, which
 * the reaper holds while it writes: the fd it touches is never one already closed and reused. */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    sh_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_node *n = ci ? calloc(1, sizeof *n) : NULL;
        if (!n)
            return; /* untracked: only the idle timeout applies to it */
        n->fd = ci->connect_fd;
        n->in_headers = 1;
        n->t0_ms = sh_clock_mono_ms();
        pthread_mutex_lock(&h->lock);
        n->next = h->conns;
        if (h->conns)
            h->conns->prev = n;
        h->conns = n;
        pthread_mutex_unlock(&h->lock);
        *socket_context = n;
        return;
    }
    conn_node *n = *socket_context;
    if (!n)
        return;
    pthread_mutex_lock(&h->lock);
    if (n->prev)
        n->prev->next = n->next;
    else
        h->conns = n->next;
    if (n->next)
        n->next->prev = n->prev;
    pthread_mutex_unlock(&h->lock);
    free(n);
    *socket_context = NULL;
}

/* Marks connection `c` as waiting for headers (1: from now, after an answer) or past them (0). */
static void conn_mark(sh_http *h, struct MHD_Connection *c, int in_headers)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_node *n = ci ? ci->socket_context : NULL;
    if (!n)
        return;
    pthread_mutex_lock(&h->lock);
    n->in_headers = in_headers;
    n->answered |= in_headers;
    n->t0_ms = sh_clock_mono_ms();
    pthread_mutex_unlock(&h->lock);
}

static void cut_slow_headers(sh_http *h, conn_node *n)
{
    const char *body = h->opts.json_errors ? "{\"error\":\"request headers too slow\"}\n"
                                           : "request headers too slow\n";
    char msg[256];
    int len = snprintf(msg, sizeof msg,
                       "HTTP/1.1 408 Request Timeout\r\nContent-Type: %s\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       h->opts.json_errors ? "application/json" : "text/plain; charset=utf-8",
                       strlen(body), body);
    /* Nothing was ever written on this connection: the 408 is whole or (a full send buffer: the
     * client reads nothing) dropped. */
    if (!n->answered) {
        ssize_t w = send(n->fd, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w;
        SH_WARN("http_headers_too_slow", "elapsed_ms=%.0f limit_s=%u",
                sh_clock_mono_ms() - n->t0_ms, h->opts.header_timeout_s);
        count(h, NULL, NULL, 408);
    }
    shutdown(n->fd, SHUT_RDWR);
    n->in_headers = 0; /* once */
}

static void *conn_reaper(void *arg)
{
    sh_http *h = arg;
    pthread_mutex_lock(&h->lock);
    while (!h->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L; /* the deadline holds within a quarter second */
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->wake, &h->lock, &ts);
        const double now = sh_clock_mono_ms(), limit = 1000.0 * h->opts.header_timeout_s;
        for (conn_node *n = h->conns; !h->stop && n; n = n->next)
            if (n->in_headers && now - n->t0_ms > limit)
                cut_slow_headers(h, n);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* ---- escapes -------------------------------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The byte of the escape at s[i] ('%' and two hex digits), or -1 when s[i] starts none. */
static int escape_at(const char *s, size_t i, size_t n)
{
    if (s[i] != '%' || i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
        return -1;
    return hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
}

size_t sh_http_unescape(char *s)
{
    const size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        const int v = escape_at(s, i, n);
        if (v >= 0 && (v < 0x20 || v == 0x7f))
            return n; /* left as sent: see sh_http.h */
    }
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        const int v = escape_at(s, r, n);
        s[w++] = v < 0 ? s[r] : (char)v;
        r += v < 0 ? 0 : 2;
    }
    s[w] = '\0';
    return w;
}

static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return sh_http_unescape(s);
}

/* First callback of a request: reject declared oversize bodies before reading them. */
static enum MHD_Result on_first(sh_http *h, struct MHD_Connection *c, const char *method,
                                const char *url, void **con_cls)
{
    req_state *st = calloc(1, sizeof *st);
    if (!st)
        return MHD_NO;
    *con_cls = st;
    st->t0_ms = sh_clock_mono_ms();
    conn_mark(h, c, 0);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (*end || (unsigned long long)h->opts.max_body < n) {
            st->answered = 1;
            count(h, method, url, MHD_HTTP_CONTENT_TOO_LARGE);
            return queue_text(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
        }
    }
    return MHD_YES;
}

static enum MHD_Result run_handler(const sh_http *h, const route *r, struct MHD_Connection *c,
                                   const char *method, const char *url, req_state *st)
{
    sh_http_req req = {method, url, st->body ? st->body : "", st->len, c};
    sh_http_resp resp = {200, NULL, NULL, 0, -1, 0};
    int rc = r->fn(&req, &resp, r->ud);
    count(h, method, url, rc < 0 ? MHD_HTTP_INTERNAL_SERVER_ERROR : resp.status);
    if (rc == 0 && resp.body_fd >= 0)
        return queue_fd(c, resp.status, resp.content_type, resp.body_fd, resp.fd_size);
    if (resp.body_fd >= 0)
        close(resp.body_fd);
    if (rc < 0) {
        free(resp.body);
        SH_WARN("http_handler_failed", "path=%s code=%s", url, sh_err_name(rc));
        return queue_text(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
    }
    char *body = resp.body ? resp.body : strdup("");
    if (!body)
        return MHD_NO;
    return queue_buffer(c, resp.status, resp.content_type, body, resp.body ? resp.body_len : 0);
}

/* A body chunk. The connection timeout of libmicrohttpd counts idle time only, so a client
 * trickling a few bytes a second would hold its connection forever: a body still arriving
 * opts.timeout_s after the headers closes the connection (libmicrohttpd 0.9.75 refuses a
 * response before the body's end, so no 408 can be sent). For the same reason an oversize body
 * (chunked: no length to refuse up front) is discarded, not stored, and answered 413 at its end;
 * the time limit bounds how long a client may keep sending. */
static enum MHD_Result on_body(const sh_http *h, req_state *st, const char *data, size_t n)
{
    const double ms = sh_clock_mono_ms() - st->t0_ms;
    if (h->opts.timeout_s && ms > 1000.0 * h->opts.timeout_s) {
        SH_WARN("http_body_too_slow", "received=%zu elapsed_ms=%.0f limit_s=%u", st->len, ms,
                h->opts.timeout_s);
        return MHD_NO;
    }
    if (st->too_big)
        return MHD_YES;
    int rc = body_append(st, data, n, h->opts.max_body);
    if (rc == SH_ETOOBIG) {
        st->too_big = 1;
        return MHD_YES;
    }
    return rc == 0 ? MHD_YES : MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    sh_http *h = cls;
    if (!*con_cls)
        return on_first(h, c, method, url, con_cls);
    req_state *st = *con_cls;
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (st->answered)
            return MHD_YES;
        return on_body(h, st, upload_data, n);
    }
    if (st->answered)
        return MHD_YES;
    st->answered = 1;
    if (st->too_big) {
        count(h, method, url, MHD_HTTP_CONTENT_TOO_LARGE);
        return queue_text(h, c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
    }
    int path_ok;
    const route *r = find_route(h, method, url, &path_ok);
    if (!r) {
        int status = path_ok ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND;
        count(h, method, url, status);
        return queue_text(h, c, status, path_ok ? "method not allowed\n" : "not found\n");
    }
    return run_handler(h, r, c, method, url, st);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    conn_mark(cls, c, 1); /* keep-alive: the next request's headers are due from now */
    req_state *st = *con_cls;
    if (st) {
        free(st->body);
        free(st);
        *con_cls = NULL;
    }
}

int sh_http_start(sh_http *h, const char *addr, sh_err *e)
{
    if (!h || h->daemon)
        return sh_err_set(e, SH_EINVAL, "http: server missing or already started");
    struct sockaddr_storage ss;
    socklen_t sl;
    int v6;
    if (parse_addr(addr, &ss, &sl, &v6))
        return sh_err_set(e, SH_EINVAL, "http: bad listen address '%s' (want HOST:PORT)",
                          addr ? addr : "");
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | (v6 ? MHD_USE_IPv6 : 0);
    errno = 0; /* libmicrohttpd leaves bind()'s errno in place: "address already in use" */
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                 MHD_OPTION_THREAD_POOL_SIZE, h->opts.threads,
                                 MHD_OPTION_CONNECTION_TIMEOUT, h->opts.timeout_s,
                                 MHD_OPTION_CONNECTION_LIMIT, h->opts.max_conns,
                                 MHD_OPTION_PER_IP_CONNECTION_LIMIT, h->opts.max_conns_per_ip,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                 MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                                 MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, h, MHD_OPTION_END);
    if (!h->daemon)
        return sh_err_set(e, SH_EIO, "http: cannot listen on %s: %s", addr,
                          errno ? strerror(errno) : "libmicrohttpd refused to start");
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : 0;
    if (h->opts.header_timeout_s) {
        if (pthread_create(&h->reaper, NULL, conn_reaper, h) != 0) {
            MHD_stop_daemon(h->daemon);
            h->daemon = NULL;
            return sh_err_set(e, SH_ENOMEM, "http: cannot start the header-deadline thread");
        }
        h->reaper_running = 1;
    }
    SH_INFO("http_listening", "addr=%s port=%d", addr, h->port);
    return 0;
}

int sh_http_port(const sh_http *h) { return h ? h->port : 0; }

void sh_http_free(sh_http *h)
{
    if (!h)
        return;
    if (h->reaper_running) {
        pthread_mutex_lock(&h->lock);
        h->stop = 1;
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->reaper, NULL);
    }
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->wake);
    for (size_t i = 0; i < h->nroutes; i++) {
        free(h->routes[i].method);
        free(h->routes[i].path);
    }
    free(h);
}

int sh_http_resp_set(sh_http_resp *r, int status, const char *content_type, const char *body,
                     size_t len)
{
    char *b = malloc(len + 1);
    if (!b)
        return SH_ENOMEM;
    if (len)
        memcpy(b, body, len);
    b[len] = '\0';
    sh_http_resp_take(r, status, content_type, b, len);
    return 0;
}

void sh_http_resp_take(sh_http_resp *r, int status, const char *content_type, char *body,
                       size_t len)
{
    free(r->body);
    r->status = status;
    r->content_type = content_type;
    r->body = body;
    r->body_len = len;
}

int sh_http_resp_fd(sh_http_resp *r, int status, const char *content_type, int fd, uint64_t size)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    if (r->body_fd >= 0)
        close(r->body_fd);
    r->status = status;
    r->content_type = content_type;
    r->body_fd = fd;
    r->fd_size = size;
    return 0;
}

const char *sh_http_req_query(const sh_http_req *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn_, MHD_GET_ARGUMENT_KIND, key);
}

const char *sh_http_req_header(const sh_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn_, MHD_HEADER_KIND, name);
}
