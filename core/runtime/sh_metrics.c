/* sh_metrics.c — Prometheus registry. Values are doubles stored as bit patterns in 64-bit atomics,
 * because C17 has no atomic fetch-add for floating types: adds are compare-and-swap loops. */
#include "sh_metrics.h"
#include "sh_vec.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } metric_kind;

struct sh_series {
    const struct sh_metric *fam;
    char values[SH_METRICS_MAX_LABELS][SH_METRICS_MAX_VALUE];
    _Atomic uint64_t value; /* counter/gauge: double bits; histogram: sum as double bits */
    _Atomic uint64_t count; /* histogram observation count */
    atomic_bool absent;     /* gauge: not rendered until set again (sh_series_unset) */
    _Atomic uint64_t buckets[]; /* histogram: per-bucket (non-cumulative) counts, nbounds + 1 */
};

struct sh_metric {
    char *name;
    char *help;
    metric_kind kind;
    size_t nlabels;
    char *labels[SH_METRICS_MAX_LABELS];
    size_t nbounds;
    double bounds[SH_METRICS_MAX_BUCKETS];
    pthread_mutex_t lock; /* guards series creation and the series list during rendering */
    size_t nseries;
    sh_series *series[SH_METRICS_MAX_SERIES];
    sh_metric *next;
};

struct sh_metrics {
    pthread_mutex_t lock; /* guards the family list */
    sh_metric *head, *tail;
};

static uint64_t dbits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double bitsd(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

int sh_metrics_new(sh_metrics **out)
{
    sh_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return SH_ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return 0;
}

static void family_free(sh_metric *f)
{
    for (size_t i = 0; i < f->nseries; i++)
        free(f->series[i]);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void sh_metrics_free(sh_metrics *m)
{
    if (!m)
        return;
    for (sh_metric *f = m->head, *next; f; f = next) {
        next = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int valid_name(const char *s, int allow_colon)
{
    if (!s || !s[0])
        return 0;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static int check_labels(const char *const *labels, size_t *n)
{
    *n = 0;
    if (!labels)
        return 0;
    for (; labels[*n]; (*n)++) {
        if (*n >= SH_METRICS_MAX_LABELS || !valid_name(labels[*n], 0) ||
            strcmp(labels[*n], "le") == 0)
            return SH_EINVAL;
    }
    return 0;
}

static int check_bounds(const double *bounds, size_t n)
{
    if (n > SH_METRICS_MAX_BUCKETS || (n > 0 && !bounds))
        return SH_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return SH_EINVAL;
    }
    return 0;
}

static sh_metric *find_locked(const sh_metrics *m, const char *name)
{
    for (sh_metric *f = m->head; f; f = f->next) {
        if (strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

static sh_metric *family_alloc(const char *name, const char *help, metric_kind kind,
                               const char *const *labels, size_t nlabels)
{
    sh_metric *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->kind = kind;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    int ok = f->name && f->help;
    for (size_t i = 0; i < nlabels; i++) {
        f->labels[i] = strdup(labels[i]);
        ok = ok && f->labels[i];
        f->nlabels = i + 1;
    }
    if (!ok) {
        family_free(f);
        return NULL;
    }
    return f;
}

static int family_register(sh_metrics *m, const char *name, const char *help, metric_kind kind,
                           const char *const *labels, const double *bounds, size_t nbounds,
                           sh_metric **out)
{
    size_t nlabels;
    if (!m || !out || !valid_name(name, 1) || check_labels(labels, &nlabels) ||
        check_bounds(bounds, nbounds))
        return SH_EINVAL;
    sh_metric *f = family_alloc(name, help, kind, labels, nlabels);
    if (!f)
        return SH_ENOMEM;
    f->nbounds = nbounds;
    if (nbounds)
        memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
    pthread_mutex_lock(&m->lock);
    int rc = find_locked(m, name) ? SH_EEXIST : 0;
    if (rc == 0) {
        if (m->tail)
            m->tail->next = f;
        else
            m->head = f;
        m->tail = f;
    }
    pthread_mutex_unlock(&m->lock);
    if (rc) {
        family_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int sh_metrics_counter(sh_metrics *m, const char *name, const char *help,
                       const char *const *labels, sh_metric **out)
{
    return family_register(m, name, help, KIND_COUNTER, labels, NULL, 0, out);
}

int sh_metrics_gauge(sh_metrics *m, const char *name, const char *help, const char *const *labels,
                     sh_metric **out)
{
    return family_register(m, name, help, KIND_GAUGE, labels, NULL, 0, out);
}

int sh_metrics_histogram(sh_metrics *m, const char *name, const char *help,
                         const char *const *labels, const double *bounds, size_t nbounds,
                         sh_metric **out)
{
    return family_register(m, name, help, KIND_HISTOGRAM, labels, bounds, nbounds, out);
}

static int series_matches(const sh_metric *f, const sh_series *s, const char *const *values)
{
    for (size_t i = 0; i < f->nlabels; i++) {
        if (strncmp(s->values[i], values[i], SH_METRICS_MAX_VALUE - 1) != 0)
            return 0;
    }
    return 1;
}

static size_t count_values(const char *const *values)
{
    size_t n = 0;
    while (values && values[n] && n <= SH_METRICS_MAX_LABELS)
        n++;
    return n;
}

sh_series *sh_metric_series(sh_metric *f, const char *const *values)
{
    if (!f || count_values(values) != f->nlabels)
        return NULL;
    sh_series *found = NULL;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->nseries && !found; i++) {
        if (series_matches(f, f->series[i], values))
            found = f->series[i];
    }
    if (!found && f->nseries < SH_METRICS_MAX_SERIES) {
        size_t nb = f->kind == KIND_HISTOGRAM ? f->nbounds + 1 : 0;
        found = calloc(1, sizeof *found + nb * sizeof found->buckets[0]);
        if (found) {
            found->fam = f;
            for (size_t i = 0; i < f->nlabels; i++)
                snprintf(found->values[i], sizeof found->values[i], "%s", values[i]);
            f->series[f->nseries++] = found;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return found;
}

void sh_series_add(sh_series *s, double v)
{
    if (!s || isnan(v) || s->fam->kind == KIND_HISTOGRAM || (s->fam->kind == KIND_COUNTER && v < 0))
        return;
    atomic_add_double(&s->value, v);
    if (s->fam->kind == KIND_GAUGE)
        atomic_store_explicit(&s->absent, false, memory_order_relaxed);
}

void sh_series_set(sh_series *s, double v)
{
    if (!s || s->fam->kind != KIND_GAUGE)
        return;
    atomic_store_explicit(&s->value, dbits(v), memory_order_relaxed);
    atomic_store_explicit(&s->absent, false, memory_order_relaxed);
}

void sh_series_unset(sh_series *s)
{
    if (!s || s->fam->kind != KIND_GAUGE)
        return;
    atomic_store_explicit(&s->absent, true, memory_order_relaxed);
    atomic_store_explicit(&s->value, dbits(0), memory_order_relaxed);
}

void sh_series_observe(sh_series *s, double v)
{
    if (!s || s->fam->kind != KIND_HISTOGRAM || isnan(v))
        return;
    size_t i = 0;
    while (i < s->fam->nbounds && v > s->fam->bounds[i])
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&s->value, v);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

double sh_series_value(const sh_series *s)
{
    if (!s)
        return 0;
    if (s->fam->kind == KIND_HISTOGRAM)
        return (double)atomic_load_explicit(&s->count, memory_order_relaxed);
    return bitsd(atomic_load_explicit(&s->value, memory_order_relaxed));
}

int sh_metrics_exp_buckets(double start, double factor, size_t n, double *bounds)
{
    if (!bounds || n == 0 || n > SH_METRICS_MAX_BUCKETS || !(start > 0) || !(factor > 1) ||
        !isfinite(start) || !isfinite(factor))
        return SH_EINVAL;
    for (size_t i = 0; i < n; i++)
        bounds[i] = i ? bounds[i - 1] * factor : start;
    return isfinite(bounds[n - 1]) ? 0 : SH_EINVAL;
}

/* ---- rendering ------------------------------------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int err; /* sticky: first error wins, later appends are no-ops */
} strbuf;

static void sb_grow(strbuf *b, size_t need)
{
    if (b->err || b->len + need + 1 <= b->cap)
        return;
    b->err = sh_vec_reserve(&b->p, &b->cap, b->len + need + 1, SH_METRICS_MAX_OUTPUT);
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->err = b->err ? b->err : SH_EINTERNAL; /* callers only format short fixed items */
        return;
    }
    sb_grow(b, (size_t)n);
    if (b->err)
        return;
    memcpy(b->p + b->len, tmp, (size_t)n + 1);
    b->len += (size_t)n;
}

static void sb_putc(strbuf *b, char c)
{
    sb_grow(b, 1);
    if (b->err)
        return;
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

/* Escapes per the exposition format: backslash and newline always, the double quote in label
 * values only (`quote`). */
static void sb_escaped(strbuf *b, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            sb_printf(b, "\\\\");
        else if (*s == '\n')
            sb_printf(b, "\\n");
        else if (quote && *s == '"')
            sb_printf(b, "\\\"");
        else
            sb_putc(b, *s);
    }
}

/* Shortest text that reads back as the same double, so that "0.1" stays "0.1". */
static void fmt_double(char *out, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(out, len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, len, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* Writes `{a="x",b="y"` plus an optional extra `le` pair, then `}`; nothing at all when empty. */
static void sb_labels(strbuf *b, const sh_metric *f, const sh_series *s, const char *le)
{
    if (f->nlabels == 0 && !le)
        return;
    sb_putc(b, '{');
    for (size_t i = 0; i < f->nlabels; i++) {
        sb_printf(b, "%s%s=\"", i ? "," : "", f->labels[i]);
        sb_escaped(b, s->values[i], 1);
        sb_putc(b, '"');
    }
    if (le)
        sb_printf(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    sb_putc(b, '}');
}

static void render_histogram(strbuf *b, const sh_metric *f, const sh_series *s)
{
    char num[64];
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->nbounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        if (i < f->nbounds)
            fmt_double(num, sizeof num, f->bounds[i]);
        else
            snprintf(num, sizeof num, "+Inf");
        sb_printf(b, "%s_bucket", f->name);
        sb_labels(b, f, s, num);
        sb_printf(b, " %llu\n", (unsigned long long)cum);
    }
    /* _count is the +Inf bucket so that the two always agree, even mid-update. */
    fmt_double(num, sizeof num, bitsd(atomic_load_explicit(&s->value, memory_order_relaxed)));
    sb_printf(b, "%s_sum", f->name);
    sb_labels(b, f, s, NULL);
    sb_printf(b, " %s\n%s_count", num, f->name);
    sb_labels(b, f, s, NULL);
    sb_printf(b, " %llu\n", (unsigned long long)cum);
}

static void render_family(strbuf *b, sh_metric *f)
{
    static const char *const kinds[] = {"counter", "gauge", "histogram"};
    sb_printf(b, "# HELP %s ", f->name);
    sb_escaped(b, f->help, 0);
    sb_printf(b, "\n# TYPE %s %s\n", f->name, kinds[f->kind]);
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->nseries; i++) {
        const sh_series *s = f->series[i];
        if (f->kind == KIND_HISTOGRAM) {
            render_histogram(b, f, s);
            continue;
        }
        if (atomic_load_explicit(&s->absent, memory_order_relaxed))
            continue;
        char num[64];
        fmt_double(num, sizeof num, bitsd(atomic_load_explicit(&s->value, memory_order_relaxed)));
        sb_printf(b, "%s", f->name);
        sb_labels(b, f, s, NULL);
        sb_printf(b, " %s\n", num);
    }
    pthread_mutex_unlock(&f->lock);
}

int sh_metrics_render(sh_metrics *m, char **out, size_t *len)
{
    if (!m || !out)
        return SH_EINVAL;
    strbuf b = {0};
    sb_grow(&b, 0);
    pthread_mutex_lock(&m->lock);
    for (sh_metric *f = m->head; f && !b.err; f = f->next)
        render_family(&b, f);
    pthread_mutex_unlock(&m->lock);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    b.p[b.len] = '\0';
    *out = b.p;
    if (len)
        *len = b.len;
    return 0;
}
