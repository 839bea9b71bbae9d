/* prom.h: Prometheus text exposition (format 0.0.4) written into a growable buffer, a
 * fixed-bucket histogram that one thread writes while others read it, and a relaxed atomic
 * counter.
 *
 * The writer (vsoc_prom_t) keeps the output valid at all times: a call that fails (an
 * invalid metric or label name, no memory) writes nothing, returns the error, and records
 * the first error on the writer (vsoc_prom_err/vsoc_prom_errstr) so that whoever serves the
 * text can refuse to serve a page with metrics silently missing. A writer is used by one
 * thread.
 *
 * Numbers are printed so that they read back exactly: integral values as plain integers,
 * other finite values in the shortest %g form that round-trips (at most 17 significant
 * digits), and the format's own +Inf, -Inf and NaN. */
#ifndef VSOC_PROM_H
#define VSOC_PROM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vsoc_prom vsoc_prom_t;

/* One label of a sample; both strings are borrowed for the duration of the call. The name
 * must match [a-zA-Z_][a-zA-Z0-9_]* and not start with "__"; the value is any UTF-8 text
 * (backslash, double quote and newline are escaped). */
typedef struct vsoc_prom_label {
    const char *name;
    const char *value;
} vsoc_prom_label_t;

/* Returns an empty writer, or NULL when out of memory. */
vsoc_prom_t *vsoc_prom_new(void);
void vsoc_prom_free(vsoc_prom_t *p); /* NULL does nothing */
/* Empties the text, forgets the families written and clears the recorded error, keeping
 * the memory for the next page. */
void vsoc_prom_reset(vsoc_prom_t *p);

/* Writes the "# HELP" and "# TYPE" lines of a metric family, once: a second call with the
 * same name and type writes nothing and returns 0. type is "counter", "gauge",
 * "histogram", "summary" or "untyped"; help may be NULL (no HELP line) and is escaped.
 * Write a family's samples right after it: the format wants them together.
 * Returns 0, VSOC_EINVAL (bad name or type, or the name was declared with another type)
 * or VSOC_ENOMEM. */
int vsoc_prom_family(vsoc_prom_t *p, const char *name, const char *type, const char *help);

/* Writes one sample line `name{labels} value`. labels may be NULL when nlabels is 0.
 * Returns 0, VSOC_EINVAL (a bad metric or label name, a label named twice) or
 * VSOC_ENOMEM. */
int vsoc_prom_sample(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                     size_t nlabels, double value);
/* The same for an integer, printed exactly even above 2^53 (counters). */
int vsoc_prom_sample_u64(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                         size_t nlabels, uint64_t value);

/* Writes a histogram's samples from per-bucket counts: name_bucket{...,le="b"} for each
 * bound (cumulative), name_bucket{...,le="+Inf"}, name_sum and name_count.
 * bounds: nbounds finite values in increasing order (upper bounds, inclusive).
 * counts: nbounds + 1 entries; counts[i] is the number of observations in
 * (bounds[i-1], bounds[i]], and counts[nbounds] those above the last bound.
 * The caller's labels must not include "le". Returns 0, VSOC_EINVAL or VSOC_ENOMEM. */
int vsoc_prom_histogram(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                        size_t nlabels, const double *bounds, const uint64_t *counts,
                        size_t nbounds, double sum);

/* The text written so far, always NUL-terminated; *len (when len is not NULL) is its
 * length. Valid until the next call on p. */
const char *vsoc_prom_text(const vsoc_prom_t *p, size_t *len);
/* The first error met since vsoc_prom_new/vsoc_prom_reset (0 when none), and its
 * message naming the offending metric or label ("" when none). */
int vsoc_prom_err(const vsoc_prom_t *p);
const char *vsoc_prom_errstr(const vsoc_prom_t *p);

/* ---- vsoc_hist_t: a latency histogram with fixed buckets -------------------------------
 *
 * Written by ONE thread (vsoc_hist_observe) without locks; any number of threads may read
 * it (vsoc_prom_hist, vsoc_hist_quantile, vsoc_hist_count) at the same time. Every field
 * is a relaxed atomic, so a reader sees each bucket's count without tearing; a reading
 * taken during an observation may show that observation in its bucket but not yet in the
 * sum. Counts and _count are derived from the same loaded bucket values, so a rendered
 * histogram is always self-consistent (_count equals the +Inf bucket, buckets never
 * decrease). */
typedef struct vsoc_hist vsoc_hist_t;

/* Default bounds in seconds, 100 µs to 10 s:
 * 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 */
#define VSOC_HIST_LATENCY_NBOUNDS 16
extern const double vsoc_hist_latency_bounds[VSOC_HIST_LATENCY_NBOUNDS];

/* A histogram over nbounds upper bounds (copied; finite, strictly increasing, at most
 * 256), or over vsoc_hist_latency_bounds when bounds is NULL. Returns NULL with the reason
 * in err for bad bounds or no memory. */
vsoc_hist_t *vsoc_hist_new(const double *bounds, size_t nbounds, char *err, size_t errlen);
void vsoc_hist_free(vsoc_hist_t *h); /* NULL does nothing */

/* Counts one observation in the first bucket whose bound is >= v (values above every bound
 * go to the +Inf bucket) and adds v to the sum. NaN is ignored: it would make the sum NaN
 * for ever. Does not allocate; only one thread may call it for a given histogram. */
void vsoc_hist_observe(vsoc_hist_t *h, double v);
/* The number of observations so far. Any thread. */
uint64_t vsoc_hist_count(const vsoc_hist_t *h);
/* The q-quantile (0 <= q <= 1) estimated from the buckets as Prometheus's
 * histogram_quantile does: linear interpolation inside the bucket holding the rank, the
 * first bucket starting at 0 (or at its bound when that is not positive), and the largest
 * finite bound when the rank falls in the +Inf bucket. NaN when there are no observations
 * or q is outside [0, 1]. Any thread. */
double vsoc_hist_quantile(const vsoc_hist_t *h, double q);

/* Writes h as vsoc_prom_histogram does. Any thread, while the writer observes. */
int vsoc_prom_hist(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                   size_t nlabels, const vsoc_hist_t *h);

/* ---- vsoc_counter_t: a monotonic counter any thread may add to and read ---------------
 * Relaxed order: the count itself is exact, but it orders nothing else. Zero-initialise
 * it (static storage, = {0}, or memset). */
typedef struct vsoc_counter {
    _Atomic uint64_t v;
} vsoc_counter_t;

static inline void vsoc_counter_add(vsoc_counter_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

static inline uint64_t vsoc_counter_get(const vsoc_counter_t *c)
{
    return atomic_load_explicit(&c->v, memory_order_relaxed);
}

#endif
