/* fetch.c — where an event's audio comes from: a file under the media root, an http(s) URL
 * (downloaded to an unlinked temporary file, so memory stays bounded), or inline bytes. The sha256
 * given in the event is checked before decoding, on exactly the bytes that will be decoded. */
#include "worker.h"

#include "sh_clock.h"
#include "sh_log.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

void wk_fetch_global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void audio_opts(const wk *w, sh_audio_opts *o)
{
    sh_audio_opts_default(o);
    o->rate = w->fpc.rate;
    o->max_duration_s = w->cfg.max_duration_s;
    o->max_bytes = w->cfg.max_fetch_bytes;
}

static int check_digest(const wk_job *j, const uint8_t got[SH_SHA256_LEN], sh_err *e)
{
    if (!j->ev.has_sha256 || memcmp(got, j->ev.sha256, SH_SHA256_LEN) == 0)
        return 0;
    char want_hex[SH_SHA256_HEX_LEN + 1], got_hex[SH_SHA256_HEX_LEN + 1];
    sh_hex_encode(j->ev.sha256, SH_SHA256_LEN, want_hex);
    sh_hex_encode(got, SH_SHA256_LEN, got_hex);
    return sh_err_set(e, SH_ECHECKSUM, "sha256 mismatch: event says %s, audio is %s", want_hex,
                      got_hex);
}

/* Verifies (if asked) and opens a descriptor; takes ownership of fd in every case. */
static int open_fd_checked(const wk *w, wk_job *j, int fd, sh_audio **out, sh_err *e)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > w->cfg.max_fetch_bytes) {
        close(fd);
        return sh_err_set(e, SH_ETOOBIG, "audio is %lld bytes, cap %zu", (long long)st.st_size,
                          w->cfg.max_fetch_bytes);
    }
    uint8_t dig[SH_SHA256_LEN];
    int rc = sh_sha256_fd(fd, dig, NULL, e);
    if (rc == 0)
        rc = check_digest(j, dig, e);
    if (rc) {
        close(fd);
        return rc;
    }
    sh_hex_encode(dig, SH_SHA256_LEN, j->sha256_hex);
    sh_audio_opts o;
    audio_opts(w, &o);
    return sh_audio_open_fd(fd, &o, out, e);
}

static int fetch_file(const wk *w, wk_job *j, const char *uri, sh_audio **out, sh_err *e)
{
    int fd = -1;
    int rc = sh_media_open(w->media, uri, &fd, e);
    if (rc)
        return rc;
    return open_fd_checked(w, j, fd, out, e);
}

/* ---- http(s) ------------------------------------------------------------------------------- */

typedef struct dl {
    int fd;
    size_t len, cap;
    bool too_big, io_error;
    bool deny_private;          /* --fetch-deny-private */
    char refused[INET6_ADDRSTRLEN]; /* the last address refused since the last connection, or "" */
    int opened;                 /* public sockets opened since the last connection was made */
} dl;

/* True for an IPv4 address (host byte order) that is not a public unicast one: "this network",
 * private, CGNAT, loopback, link-local (cloud metadata services), IETF protocol assignments,
 * benchmarking, multicast, reserved, broadcast. The documentation nets (TEST-NET-1..3) are left
 * alone: nothing routes them, and tests stand in a "public" host with one. */
static bool v4_private(uint32_t a)
{
    static const struct {
        uint32_t net, mask;
    } nets[] = {{0x00000000u, 0xff000000u}, {0x0a000000u, 0xff000000u},  /* 0/8, 10/8 */
                {0x64400000u, 0xffc00000u}, {0x7f000000u, 0xff000000u},  /* 100.64/10, 127/8 */
                {0xa9fe0000u, 0xffff0000u}, {0xac100000u, 0xfff00000u},  /* 169.254/16, 172.16/12 */
                {0xc0000000u, 0xffffff00u}, {0xc0a80000u, 0xffff0000u},  /* 192.0.0/24, 192.168/16 */
                {0xc6120000u, 0xfffe0000u}, {0xe0000000u, 0xe0000000u}}; /* 198.18/15, 224/3 */
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++)
        if ((a & nets[i].mask) == nets[i].net)
            return true;
    return false;
}

static uint32_t v4_at(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* The same for IPv6: unspecified, loopback, link-local, site-local, unique-local, multicast, and every form that wraps an IPv4 address (mapped, compatible, NAT64, 6to4): the
 * IPv4 inside decides, a NAT64 or 6to4 gateway would forward to it. */
static bool v6_private(const struct in6_addr *a)
{
    const uint8_t *b = a->s6_addr;
    static const uint8_t zero10[10] = {0};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (!memcmp(b, zero10, 10) && ((b[10] == 0xff && b[11] == 0xff) || (!b[10] && !b[11])))
        return v4_private(v4_at(b + 12)); /* ::ffff:a.b.c.d, ::a.b.c.d, :: and ::1 */
    if (!memcmp(b, nat64, 12))
        return v4_private(v4_at(b + 12)); /* 64:ff9b::a.b.c.d (RFC 6052) */
    if (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b)
        return true; /* 64:ff9b:1::/48 local-use NAT64 (RFC 8215) and the rest of 64:ff9b::/32 */
    if (b[0] == 0x20 && b[1] == 0x02)
        return v4_private(v4_at(b + 2)); /* 2002:aabb:ccdd::/48 (6to4) */
    return b[0] == 0xfe /* fe80::/10 link-local, fec0::/10 site-local (and the rest of fe00::/8) */
           || (b[0] & 0xfe) == 0xfc || b[0] == 0xff;
}

bool wk_fetch_addr_private(int family, const void *raw)
{
    if (family == AF_INET) {
        struct in_addr in;
        memcpy(&in, raw, sizeof in);
        return v4_private(ntohl(in.s_addr));
    }
    if (family == AF_INET6) {
        struct in6_addr in6;
        memcpy(&in6, raw, sizeof in6);
        return v6_private(&in6);
    }
    return true;
}

/* libcurl asks this for every connection it makes (the first, redirects, retries), with the
 * address it resolved: checking here, not the URL's host name, also stops DNS answers that point
 * inside. A refused address gets no socket (libcurl tries the host's next address, if any) and is
 * remembered until a connection is made (on_connected). */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    dl *d = ud;
    if (purpose == CURLSOCKTYPE_IPCXN && d->deny_private) {
        const void *raw = NULL;
        if (a->family == AF_INET)
            raw = &((const struct sockaddr_in *)(const void *)&a->addr)->sin_addr;
        else if (a->family == AF_INET6)
            raw = &((const struct sockaddr_in6 *)(const void *)&a->addr)->sin6_addr;
        if (!raw || wk_fetch_addr_private(a->family, raw)) {
            if (!raw || !inet_ntop(a->family, raw, d->refused, sizeof d->refused))
                snprintf(d->refused, sizeof d->refused, "family %d", a->family);
            return CURL_SOCKET_BAD;
        }
        d->opened++;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Called once a connection is up, before each request goes out, with the address actually
 * connected to: a private address refused on the way (a host with a private and a public one) does
 * not fail a transfer that goes to a public one. The connected address is checked again. */
static int on_connected(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                        int conn_local_port)
{
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    dl *d = ud;
    if (!d->deny_private)
        return CURL_PREREQFUNC_OK;
    unsigned char raw[sizeof(struct in6_addr)];
    int fam = strchr(conn_primary_ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, conn_primary_ip, raw) != 1 || wk_fetch_addr_private(fam, raw)) {
        snprintf(d->refused, sizeof d->refused, "%s", conn_primary_ip);
        d->opened = 0;
        return CURL_PREREQFUNC_ABORT;
    }
    d->refused[0] = '\0';
    d->opened = 0;
    return CURL_PREREQFUNC_OK;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    dl *d = ud;
    size_t len = sz * n;
    if (len > d->cap - d->len) {
        d->too_big = true;
        return 0; /* aborts the transfer */
    }
    for (size_t off = 0; off < len;) {
        ssize_t wr = write(d->fd, p + off, len - off);
        if (wr < 0 && errno == EINTR)
            continue;
        if (wr <= 0) {
            d->io_error = true;
            return 0;
        }
        off += (size_t)wr;
    }
    d->len += len;
    return len;
}

/* An unlinked temporary file: nothing to clean up whatever happens. */
static int tmp_fd(const char *dir, sh_err *e)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[4200];
    snprintf(path, sizeof path, "%s/soundhash-dl-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return sh_err_set(e, SH_EIO, "temporary file in %s: %s", dir, strerror(errno));
    unlink(path);
    return fd;
}

/* Maps a finished transfer to an error: 5xx, 408, 429, timeouts and connection trouble are worth a
 * retry; other 4xx and oversize bodies are not. */
static int http_result(CURLcode cc, long status, const dl *d, const char *url, sh_err *e)
{
    /* refused and no public address tried since: the only way in was a private one */
    if (d->refused[0] && cc != CURLE_OK && !d->opened)
        return sh_err_set(e, SH_EHTTP,
                          "GET %s: refused to connect to %s, not a public address "
                          "(--fetch-deny-private)", url, d->refused);
    if (d->too_big)
        return sh_err_set(e, SH_ETOOBIG, "GET %s: body over %zu bytes", url, d->cap);
    if (d->io_error)
        return sh_err_set(e, SH_ETRANSIENT, "GET %s: cannot write temporary file", url);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return sh_err_set(e, SH_ETRANSIENT, "GET %s: timed out", url);
    if (cc == CURLE_FILESIZE_EXCEEDED)
        return sh_err_set(e, SH_ETOOBIG, "GET %s: declared size over %zu bytes", url, d->cap);
    if (cc == CURLE_UNSUPPORTED_PROTOCOL || cc == CURLE_URL_MALFORMAT)
        return sh_err_set(e, SH_EUNSUPPORTED, "GET %s: %s", url, curl_easy_strerror(cc));
    if (cc != CURLE_OK)
        return sh_err_set(e, SH_ETRANSIENT, "GET %s: %s", url, curl_easy_strerror(cc));
    if (status >= 500 || status == 408 || status == 429)
        return sh_err_set(e, SH_ETRANSIENT, "GET %s: HTTP %ld", url, status);
    if (status != 200)
        return sh_err_set(e, SH_EHTTP, "GET %s: HTTP %ld", url, status);
    return 0;
}

/* *local: the failure was this host's (temporary file), not the source's. */
static int download(const wk *w, const char *url, int fd, bool *local, sh_err *e)
{
    CURL *c = curl_easy_init();
    if (!c)
        return sh_err_set(e, SH_ENOMEM, "curl_easy_init failed");
    dl d = {fd, 0, w->cfg.max_fetch_bytes, false, false, w->cfg.fetch_deny_private, "", 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &d);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_connected);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, &d);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, w->cfg.http_timeout_s);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)w->cfg.max_fetch_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "soundhash-worker/" SH_VERSION);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    *local = d.io_error;
    return http_result(cc, status, &d, url, e);
}

static int fetch_url(const wk *w, wk_job *j, const char *url, sh_audio **out, sh_err *e)
{
    int fd = tmp_fd(w->cfg.tmp_dir, e);
    if (fd < 0)
        return SH_ETRANSIENT; /* a full or missing temp dir is the host's problem, not the event's */
    bool local = false;
    int rc = download(w, url, fd, &local, e);
    if (rc) {
        close(fd);
        /* Counted against --max-retry-time: one dead URL must not hold its partition forever. */
        if (rc == SH_ETRANSIENT && !local) {
            if (j->src_fail_t0 <= 0)
                j->src_fail_t0 = sh_clock_mono_s();
            j->src_fails++;
        }
        return rc;
    }
    return open_fd_checked(w, j, fd, out, e);
}

static int fetch_inline(const wk *w, wk_job *j, sh_audio **out, sh_err *e)
{
    uint8_t dig[SH_SHA256_LEN];
    int rc = sh_sha256(j->ev.source.data, j->ev.source.data_len, dig, e);
    if (rc == 0)
        rc = check_digest(j, dig, e);
    if (rc)
        return rc;
    sh_hex_encode(dig, SH_SHA256_LEN, j->sha256_hex);
    sh_audio_opts o;
    audio_opts(w, &o);
    /* The buffer belongs to the job, which outlives the reader. */
    return sh_audio_open_mem(j->ev.source.data, j->ev.source.data_len, &o, out, e);
}

static int fetch_uri(const wk *w, wk_job *j, const char *uri, sh_audio **out, sh_err *e)
{
    sh_uri_kind kind;
    int rc = sh_uri_classify(uri, &kind, e);
    if (rc)
        return rc;
    free(j->source_uri);
    j->source_uri = strdup(uri);
    if (!j->source_uri)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    switch (kind) {
    case SH_URI_FILE:
        return fetch_file(w, j, uri, out, e);
    case SH_URI_HTTP:
    case SH_URI_HTTPS:
        return fetch_url(w, j, uri, out, e);
    default:
        return sh_err_set(e, SH_EUNSUPPORTED, "unsupported audio reference '%.64s'", uri);
    }
}

/* A reindex event without a source re-reads the audio the primary recorded for the track. */
static int fetch_stored(const wk *w, wk_job *j, sh_primary *db, sh_audio **out, sh_err *e)
{
    if (!db)
        return sh_err_set(e, SH_ETRANSIENT, "no database connection to look up the stored audio");
    sh_track t = {0};
    int rc = sh_primary_get_track(db, j->ev.track_id, 0, &t, e);
    if (rc == 0 && (t.deleted || !t.source_uri))
        rc = sh_err_set(e, SH_ENOTFOUND, "track has no stored audio to reindex");
    if (rc == 0)
        rc = fetch_uri(w, j, t.source_uri, out, e);
    sh_track_clear(&t);
    return rc;
}

int wk_fetch_open(wk *w, wk_job *j, sh_primary *db, sh_audio **out, sh_err *e)
{
    *out = NULL;
    switch (j->ev.source.kind) {
    case SH_SRC_FILE:
    case SH_SRC_URL:
        return fetch_uri(w, j, j->ev.source.uri, out, e);
    case SH_SRC_INLINE:
        return fetch_inline(w, j, out, e);
    case SH_SRC_NONE:
        if (j->ev.op == SH_OP_REINDEX)
            return fetch_stored(w, j, db, out, e);
        break;
    }
    return sh_err_set(e, SH_EINVAL, "event has no audio source");
}
