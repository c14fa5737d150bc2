/* sh_metrics.h — a small Prometheus metrics registry: counters, gauges and histograms with a fixed
 * small set of labels, rendered in the Prometheus text exposition format (version 0.0.4).
 *
 * Shape: a registry holds metric families (one name, one HELP, one TYPE, up to SH_METRICS_MAX_LABELS
 * label names). A family holds up to SH_METRICS_MAX_SERIES series, one per distinct tuple of label
 * values. Callers look a series up once (sh_metric_series) and keep the pointer: it stays valid until
 * sh_metrics_free(). Updates on a series are lock-free (C11 atomics), so any thread may update any
 * series at any time, also while another thread renders. Registration and first lookup of a series
 * take the family's mutex.
 *
 * Typical use:
 *     sh_metric *ev;
 *     sh_metrics_counter(m, "sh_worker_events_total", "Events handled.", (const char *[]){"result",
 *                        NULL}, &ev);
 *     sh_series *ok = sh_metric_series(ev, (const char *[]){"ok", NULL});
 *     sh_series_add(ok, 1);
 *
 * Nothing here is global: every registry is independent.
 */
#ifndef SH_METRICS_H
#define SH_METRICS_H

#include "sh_err.h"

#include <stddef.h>

#define SH_METRICS_MAX_LABELS 4    /* label names per family */
#define SH_METRICS_MAX_SERIES 128  /* distinct label-value tuples per family */
#define SH_METRICS_MAX_BUCKETS 32  /* histogram buckets (excluding +Inf) */
#define SH_METRICS_MAX_VALUE 128   /* bytes of one label value; longer values are truncated */
#define SH_METRICS_MAX_OUTPUT (4u << 20) /* cap on one rendering */

typedef struct sh_metrics sh_metrics; /* registry */
typedef struct sh_metric sh_metric;   /* family; owned by the registry */
typedef struct sh_series sh_series;   /* one labelled time series; owned by the registry */

/* Creates an empty registry. Errors: SH_ENOMEM. */
int sh_metrics_new(sh_metrics **out);

/* Frees the registry, its families and series; accepts NULL. No update may run concurrently. */
void sh_metrics_free(sh_metrics *m);

/* Registers a family. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*, `labels` is a NULL-terminated
 * array of label names ([a-zA-Z_][a-zA-Z0-9_]*, at most SH_METRICS_MAX_LABELS, not "le"), or NULL
 * for none. Strings are copied. Registering the same name twice is SH_EEXIST. Histograms take
 * `nbounds` strictly increasing finite upper bounds (+Inf is implicit).
 * Errors: SH_EINVAL (bad name/labels/bounds), SH_EEXIST, SH_ENOMEM. `out` is set only on success. */
int sh_metrics_counter(sh_metrics *m, const char *name, const char *help,
                       const char *const *labels, sh_metric **out);
int sh_metrics_gauge(sh_metrics *m, const char *name, const char *help, const char *const *labels,
                     sh_metric **out);
int sh_metrics_histogram(sh_metrics *m, const char *name, const char *help,
                         const char *const *labels, const double *bounds, size_t nbounds,
                         sh_metric **out);

/* Returns the series for `values` (NULL-terminated, exactly as many as the family has labels; NULL
 * when it has none), creating it on first use. Returns NULL when the values do not match the label
 * count or when the family already holds SH_METRICS_MAX_SERIES series (a bounded registry must not
 * grow with hostile label values; callers should use a fixed vocabulary). Values longer than
 * SH_METRICS_MAX_VALUE - 1 bytes are truncated. Thread-safe. */
sh_series *sh_metric_series(sh_metric *f, const char *const *values);

/* Counter/gauge: adds `v` (counters ignore negative or NaN `v`). Histogram: no-op. NULL-safe. */
void sh_series_add(sh_series *s, double v);
/* Gauge: sets the value (and shows a series hidden by sh_series_unset again). Counters and
 * histograms: no-op. NULL-safe. */
void sh_series_set(sh_series *s, double v);
/* Gauge: hides the series from sh_metrics_render and zeroes it, until the next set/add — for label
 * values that stop meaning anything, e.g. a partition no longer assigned. The pointer stays valid
 * and keeps its slot (at most SH_METRICS_MAX_SERIES per family still holds). Counters and
 * histograms: no-op (they must never go back). NULL-safe. */
void sh_series_unset(sh_series *s);
/* Histogram: records one observation. Counters and gauges: no-op. NULL-safe. */
void sh_series_observe(sh_series *s, double v);
/* Current value of a counter/gauge, or the observation count of a histogram; 0 for NULL. */
double sh_series_value(const sh_series *s);

/* Renders every family in registration order in the text format, HELP and TYPE lines included;
 * series in creation order. `*out` is a NUL-terminated malloc'd string owned by the caller (free()),
 * `*len` its length. Errors: SH_ENOMEM, SH_ETOOBIG (over SH_METRICS_MAX_OUTPUT). Thread-safe. */
int sh_metrics_render(sh_metrics *m, char **out, size_t *len);

/* Bucket bound helpers: `n` bounds start, start*factor, ...  Returns 0 or SH_EINVAL (n out of range,
 * start <= 0, factor <= 1). */
int sh_metrics_exp_buckets(double start, double factor, size_t n, double *bounds);

#endif
