#include "sh_log.h"

#include "sh_err.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* The one process-wide setting: written by main() before threads start, read atomically. */
static atomic_int g_level = SH_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int sh_log_level_parse(const char *s, int *out)
{
    for (int i = 0; i <= SH_LOG_OFF; i++) {
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return SH_EINVAL;
}

void sh_log_set_level(int level) { atomic_store(&g_level, level); }

int sh_log_enabled(int level) { return level >= atomic_load(&g_level); }

/* True when `s` (just after a space) starts `key=`: what may follow the closing quote of a value. */
static bool starts_pair(const char *s, const char *end)
{
    const char *k = s;
    while (s < end && (isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-'))
        s++;
    return s > k && s < end && *s == '=';
}

/* The safety net under "quote values with sh_log_q": makes any formatted line valid logfmt, so a
 * call site writing `msg=\"%s\"` with a value that holds quotes or backslashes, or `k=%s` with one
 * that holds '=' or a quote, cannot produce a line a logfmt parser rejects. Inside a quoted value a
 * quote closes it only when the line ends or ` key=` follows, else it is escaped; a backslash that
 * does not start \" or \\ is escaped; an unterminated value is closed. A bare value that meets '='
 * or '"' is turned into a quoted one. Lines that are already valid logfmt come out unchanged.
 * `out` holds at least 3 * n + 2 bytes; returns the output length. */
static size_t logfmt_repair(const char *in, size_t n, char *out)
{
    enum { KEY, VALUE, BARE, QUOTED, REQUOTED } st = KEY; /* REQUOTED: a bare value, now quoted */
    const char *end = in + n;
    size_t o = 0, vstart = 0;
    for (const char *p = in; p < end; p++) {
        char c = *p;
        if (st == VALUE) {
            vstart = o;
            st = c == '"' ? QUOTED : c == ' ' ? KEY : BARE;
            out[o++] = c;
            continue;
        }
        if (st == BARE && (c == '"' || c == '=')) { /* quote the value retroactively */
            memmove(out + vstart + 1, out + vstart, o - vstart);
            out[vstart] = '"';
            o++;
            st = REQUOTED;
        }
        if (st == REQUOTED) { /* ends where the bare value would have: at a space */
            if (c == ' ')
                out[o++] = '"';
            else if (c == '"' || c == '\\')
                out[o++] = '\\';
            out[o++] = c;
            st = c == ' ' ? KEY : REQUOTED;
            continue;
        }
        if (st == KEY || st == BARE) {
            if (c == '=' && st == KEY)
                st = VALUE;
            else if (c == ' ')
                st = KEY;
            out[o++] = c == '"' ? '\'' : c;
        } else if (c == '\\' && p + 1 < end && (p[1] == '"' || p[1] == '\\')) {
            out[o++] = c;
            out[o++] = *++p;
        } else if (c == '"' && (p + 1 == end || (p[1] == ' ' && starts_pair(p + 2, end)))) {
            out[o++] = '"';
            st = BARE; /* the space that follows returns to KEY */
        } else if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = c;
        } else {
            out[o++] = c;
        }
    }
    if (st == QUOTED || st == REQUOTED)
        out[o++] = '"';
    return o;
}

void sh_log(int level, const char *event, const char *fmt, ...)
{
    if (level < 0 || level >= SH_LOG_OFF || !sh_log_enabled(level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], event);
    if (n < 0)
        return;
    if ((size_t)n < sizeof line - 2 && fmt && fmt[0]) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    /* One event, one line: control bytes in values (libpq's multi-line messages, hostile names)
     * become spaces so they can neither split the line nor drive a terminal. */
    for (int i = 0; i < n; i++) {
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    }
    char out[3 * sizeof line + 2];
    size_t len = logfmt_repair(line, (size_t)n, out);
    out[len++] = '\n';
    /* One write(2) per line so lines of concurrent threads never interleave. */
    ssize_t w = write(STDERR_FILENO, out, len);
    (void)w;
}

const char *sh_log_q(char *buf, unsigned len, const char *value)
{
    if (!buf || len < 3)
        return "";
    unsigned o = 0;
    buf[o++] = '"';
    for (const char *p = value ? value : ""; *p && o + 3 < len; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            buf[o++] = '?';
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
