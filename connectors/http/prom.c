/* prom.c: the Prometheus text writer, the fixed-bucket histogram and its quantile estimate.
 *
 * Invariants:
 *   - p->buf is never NULL after vsoc_prom_new and always holds NUL-terminated text made of
 *     whole lines: every public writer remembers where it started and cuts the buffer back
 *     there when it fails, so a failed call leaves no half-written sample behind.
 *   - Numbers go through fmt_number only, so samples and "le" labels print alike.
 *   - A histogram has one writer: observe loads and stores (no read-modify-write atomics,
 *     which would cost a locked instruction on the hot path for nothing). */
#include "prom.h"

#include "vsoc.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROM_INITIAL_CAP 4096
#define HIST_MAX_BOUNDS 256

struct prom_family {
    char *name;
    const char *type; /* one of the static strings of prom_types */
};

struct vsoc_prom {
    char *buf;
    size_t len, cap;
    struct prom_family *fams; /* families whose HELP/TYPE were written; a scrape has tens,
                                 so a linear search costs less than a hash table's code */
    size_t nfams, capfams;
    int err;
    char errstr[192];
};

static const char *const prom_types[] = {"counter", "gauge", "histogram", "summary",
                                         "untyped"};

/* ---- buffer ------------------------------------------------------------------------------ */

static int reserve(vsoc_prom_t *p, size_t n)
{
    if (n <= p->cap - p->len - 1)
        return 0;
    size_t cap = p->cap;
    while (n > cap - p->len - 1) {
        if (cap > SIZE_MAX / 2)
            return VSOC_ENOMEM;
        cap *= 2;
    }
    char *b = realloc(p->buf, cap);
    if (!b)
        return VSOC_ENOMEM;
    p->buf = b;
    p->cap = cap;
    return 0;
}

static int put(vsoc_prom_t *p, const char *s, size_t n)
{
    if (reserve(p, n) != 0)
        return VSOC_ENOMEM;
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
    return 0;
}

static int puts_(vsoc_prom_t *p, const char *s)
{
    return put(p, s, strlen(s));
}

/* Cuts the text back to mark, records the first error, returns code. */
static int fail(vsoc_prom_t *p, size_t mark, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(vsoc_prom_t *p, size_t mark, int code, const char *fmt, ...)
{
    p->len = mark;
    p->buf[mark] = '\0';
    if (p->err == 0) {
        p->err = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->errstr, sizeof p->errstr, fmt, ap);
        va_end(ap);
    }
    return code;
}

vsoc_prom_t *vsoc_prom_new(void)
{
    vsoc_prom_t *p = calloc(1, sizeof *p);
    if (!p)
        goto fail;
    p->buf = malloc(PROM_INITIAL_CAP);
    if (!p->buf)
        goto fail;
    p->cap = PROM_INITIAL_CAP;
    p->buf[0] = '\0';
    return p;
fail:
    vsoc_prom_free(p);
    return NULL;
}

void vsoc_prom_free(vsoc_prom_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nfams; i++)
        free(p->fams[i].name);
    free(p->fams);
    free(p->buf);
    free(p);
}

void vsoc_prom_reset(vsoc_prom_t *p)
{
    for (size_t i = 0; i < p->nfams; i++)
        free(p->fams[i].name);
    p->nfams = 0;
    p->len = 0;
    p->buf[0] = '\0';
    p->err = 0;
    p->errstr[0] = '\0';
}

const char *vsoc_prom_text(const vsoc_prom_t *p, size_t *len)
{
    if (len)
        *len = p->len;
    return p->buf;
}

int vsoc_prom_err(const vsoc_prom_t *p)
{
    return p->err;
}

const char *vsoc_prom_errstr(const vsoc_prom_t *p)
{
    return p->errstr;
}

/* ---- names, values, numbers ------------------------------------------------------------- */

static int is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static int valid_metric_name(const char *s)
{
    if (!s || !(is_alpha_(*s) || *s == ':'))
        return 0;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s) || *s == ':'))
            return 0;
    return 1;
}

/* [a-zA-Z_][a-zA-Z0-9_]*, and names starting with "__" are reserved for Prometheus. */
static int valid_label_name(const char *s)
{
    if (!s || !is_alpha_(*s) || (s[0] == '_' && s[1] == '_'))
        return 0;
    for (s++; *s; s++)
        if (!(is_alpha_(*s) || is_digit(*s)))
            return 0;
    return 1;
}

/* Checks every label before anything is written. forbid_le: a histogram adds its own. */
static int check_labels(vsoc_prom_t *p, const char *metric, const vsoc_prom_label_t *labels,
                        size_t n, int forbid_le)
{
    if (n > 0 && !labels)
        return fail(p, p->len, VSOC_EINVAL, "metric %s: %zu labels but no label array",
                    metric, n);
    for (size_t i = 0; i < n; i++) {
        if (!valid_label_name(labels[i].name))
            return fail(p, p->len, VSOC_EINVAL, "metric %s: invalid label name '%s'", metric,
                        labels[i].name ? labels[i].name : "(null)");
        if (!labels[i].value)
            return fail(p, p->len, VSOC_EINVAL, "metric %s: label %s has no value", metric,
                        labels[i].name);
        if (forbid_le && strcmp(labels[i].name, "le") == 0)
            return fail(p, p->len, VSOC_EINVAL,
                        "histogram %s: label 'le' is reserved for the bucket bound", metric);
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0)
                return fail(p, p->len, VSOC_EINVAL, "metric %s: label %s given twice",
                            metric, labels[i].name);
    }
    return 0;
}

/* Writes s with the given characters escaped as the format says: label values escape
 * backslash, double quote and newline; HELP text escapes backslash and newline. */
static int put_escaped(vsoc_prom_t *p, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (quote && *s == '"')
            esc = "\\\"";
        if (!esc)
            continue;
        if (put(p, run, (size_t)(s - run)) != 0 || put(p, esc, 2) != 0)
            return VSOC_ENOMEM;
        run = s + 1;
    }
    return put(p, run, (size_t)(s - run));
}

/* Prints v so that strtod reads back the same double: integral values as integers (exact,
 * since every double of magnitude below 1e17 that is integral prints exactly with %.0f),
 * others with the fewest of 15, 16 or 17 significant digits that round-trip. The caller's
 * locale must keep '.' as the decimal point (vsoc never calls setlocale for LC_NUMERIC). */
static void fmt_number(char out[40], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) { /* also -0: "-0" reads back fine but surprises people */
        strcpy(out, "0");
        return;
    }
    if (fabs(v) < 1e17 && v == floor(v)) {
        snprintf(out, 40, "%.0f", v);
        return;
    }
    for (int prec = 15; prec < 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
    snprintf(out, 40, "%.17g", v);
}

/* name suffix{labels[,le="le"]} value\n. Names and labels are checked by the caller. */
static int put_sample(vsoc_prom_t *p, const char *name, const char *suffix,
                      const vsoc_prom_label_t *labels, size_t n, const char *le,
                      const char *value)
{
    if (puts_(p, name) != 0 || puts_(p, suffix) != 0)
        return VSOC_ENOMEM;
    if (n > 0 || le) {
        if (put(p, "{", 1) != 0)
            return VSOC_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            if ((i > 0 && put(p, ",", 1) != 0) || puts_(p, labels[i].name) != 0 ||
                put(p, "=\"", 2) != 0 || put_escaped(p, labels[i].value, 1) != 0 ||
                put(p, "\"", 1) != 0)
                return VSOC_ENOMEM;
        }
        if (le && ((n > 0 && put(p, ",", 1) != 0) || put(p, "le=\"", 4) != 0 ||
                   puts_(p, le) != 0 || put(p, "\"", 1) != 0))
            return VSOC_ENOMEM;
        if (put(p, "}", 1) != 0)
            return VSOC_ENOMEM;
    }
    if (put(p, " ", 1) != 0 || puts_(p, value) != 0 || put(p, "\n", 1) != 0)
        return VSOC_ENOMEM;
    return 0;
}

/* ---- families and samples --------------------------------------------------------------- */

int vsoc_prom_family(vsoc_prom_t *p, const char *name, const char *type, const char *help)
{
    size_t mark = p->len;
    if (!valid_metric_name(name))
        return fail(p, mark, VSOC_EINVAL, "invalid metric name '%s'", name ? name : "(null)");
    const char *t = NULL;
    for (size_t i = 0; i < sizeof prom_types / sizeof prom_types[0]; i++)
        if (type && strcmp(type, prom_types[i]) == 0)
            t = prom_types[i];
    if (!t)
        return fail(p, mark, VSOC_EINVAL, "metric %s: unknown type '%s'", name,
                    type ? type : "(null)");
    for (size_t i = 0; i < p->nfams; i++) {
        if (strcmp(p->fams[i].name, name) != 0)
            continue;
        if (p->fams[i].type != t)
            return fail(p, mark, VSOC_EINVAL, "metric %s: declared as %s, then as %s", name,
                        p->fams[i].type, t);
        return 0;
    }
    if (p->nfams == p->capfams) {
        size_t cap = p->capfams ? p->capfams * 2 : 16;
        struct prom_family *f = realloc(p->fams, cap * sizeof *f);
        if (!f)
            return fail(p, mark, VSOC_ENOMEM, "metric %s: out of memory", name);
        p->fams = f;
        p->capfams = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return fail(p, mark, VSOC_ENOMEM, "metric %s: out of memory", name);
    if ((help && (puts_(p, "# HELP ") != 0 || puts_(p, name) != 0 || put(p, " ", 1) != 0 ||
                  put_escaped(p, help, 0) != 0 || put(p, "\n", 1) != 0)) ||
        puts_(p, "# TYPE ") != 0 || puts_(p, name) != 0 || put(p, " ", 1) != 0 ||
        puts_(p, t) != 0 || put(p, "\n", 1) != 0) {
        free(copy);
        return fail(p, mark, VSOC_ENOMEM, "metric %s: out of memory", name);
    }
    p->fams[p->nfams].name = copy;
    p->fams[p->nfams].type = t;
    p->nfams++;
    return 0;
}

static int sample_text(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                       size_t nlabels, const char *value)
{
    size_t mark = p->len;
    if (!valid_metric_name(name))
        return fail(p, mark, VSOC_EINVAL, "invalid metric name '%s'", name ? name : "(null)");
    int rc = check_labels(p, name, labels, nlabels, 0);
    if (rc != 0)
        return rc;
    if (put_sample(p, name, "", labels, nlabels, NULL, value) != 0)
        return fail(p, mark, VSOC_ENOMEM, "metric %s: out of memory", name);
    return 0;
}

int vsoc_prom_sample(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                     size_t nlabels, double value)
{
    char num[40];
    fmt_number(num, value);
    return sample_text(p, name, labels, nlabels, num);
}

int vsoc_prom_sample_u64(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                         size_t nlabels, uint64_t value)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, value);
    return sample_text(p, name, labels, nlabels, num);
}

int vsoc_prom_histogram(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                        size_t nlabels, const double *bounds, const uint64_t *counts,
                        size_t nbounds, double sum)
{
    size_t mark = p->len;
    if (!valid_metric_name(name))
        return fail(p, mark, VSOC_EINVAL, "invalid metric name '%s'", name ? name : "(null)");
    int rc = check_labels(p, name, labels, nlabels, 1);
    if (rc != 0)
        return rc;
    if (!counts || (nbounds > 0 && !bounds))
        return fail(p, mark, VSOC_EINVAL, "histogram %s: no bounds or counts", name);
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return fail(p, mark, VSOC_EINVAL,
                        "histogram %s: bounds must be finite and increasing (bound %zu)",
                        name, i);
    uint64_t cum = 0;
    char le[40], num[40];
    for (size_t i = 0; i <= nbounds; i++) {
        cum += counts[i];
        if (i < nbounds)
            fmt_number(le, bounds[i]);
        else
            strcpy(le, "+Inf");
        snprintf(num, sizeof num, "%" PRIu64, cum);
        if (put_sample(p, name, "_bucket", labels, nlabels, le, num) != 0)
            goto nomem;
    }
    fmt_number(num, sum);
    if (put_sample(p, name, "_sum", labels, nlabels, NULL, num) != 0)
        goto nomem;
    snprintf(num, sizeof num, "%" PRIu64, cum);
    if (put_sample(p, name, "_count", labels, nlabels, NULL, num) != 0)
        goto nomem;
    return 0;
nomem:
    return fail(p, mark, VSOC_ENOMEM, "histogram %s: out of memory", name);
}

/* ---- histogram ---------------------------------------------------------------------------- */

const double vsoc_hist_latency_bounds[VSOC_HIST_LATENCY_NBOUNDS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10,
};

struct vsoc_hist {
    size_t n;                 /* bounds */
    double *bounds;
    _Atomic uint64_t *counts; /* n + 1: per bucket (not cumulative); counts[n] is +Inf */
    _Atomic double sum;
};

vsoc_hist_t *vsoc_hist_new(const double *bounds, size_t nbounds, char *err, size_t errlen)
{
    vsoc_hist_t *h = NULL;
    if (!bounds) {
        bounds = vsoc_hist_latency_bounds;
        nbounds = VSOC_HIST_LATENCY_NBOUNDS;
    }
    if (nbounds == 0 || nbounds > HIST_MAX_BOUNDS) {
        snprintf(err, errlen, "histogram: %zu bounds (1 to %d allowed)", nbounds,
                 HIST_MAX_BOUNDS);
        return NULL;
    }
    for (size_t i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            snprintf(err, errlen,
                     "histogram: bound %zu (%g) is not finite or not above the one before",
                     i, bounds[i]);
            return NULL;
        }
    }
    h = calloc(1, sizeof *h);
    if (!h)
        goto nomem;
    h->n = nbounds;
    h->bounds = malloc(nbounds * sizeof *h->bounds);
    h->counts = calloc(nbounds + 1, sizeof *h->counts);
    if (!h->bounds || !h->counts)
        goto nomem;
    memcpy(h->bounds, bounds, nbounds * sizeof *h->bounds);
    atomic_init(&h->sum, 0.0);
    return h;
nomem:
    snprintf(err, errlen, "histogram: out of memory");
    vsoc_hist_free(h);
    return NULL;
}

void vsoc_hist_free(vsoc_hist_t *h)
{
    if (!h)
        return;
    free(h->bounds);
    free((void *)h->counts);
    free(h);
}

void vsoc_hist_observe(vsoc_hist_t *h, double v)
{
    if (isnan(v))
        return;
    /* First bound >= v; lo == n when v is above every bound. */
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->bounds[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    uint64_t c = atomic_load_explicit(&h->counts[lo], memory_order_relaxed);
    atomic_store_explicit(&h->counts[lo], c + 1, memory_order_relaxed);
    double s = atomic_load_explicit(&h->sum, memory_order_relaxed);
    atomic_store_explicit(&h->sum, s + v, memory_order_relaxed);
}

/* Loads every bucket once, so that what the caller derives from them is consistent. */
static uint64_t load_counts(const vsoc_hist_t *h, uint64_t *out)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= h->n; i++) {
        out[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        total += out[i];
    }
    return total;
}

uint64_t vsoc_hist_count(const vsoc_hist_t *h)
{
    uint64_t c[HIST_MAX_BOUNDS + 1];
    return load_counts(h, c);
}

double vsoc_hist_quantile(const vsoc_hist_t *h, double q)
{
    uint64_t c[HIST_MAX_BOUNDS + 1];
    uint64_t total = load_counts(h, c);
    if (total == 0 || !(q >= 0 && q <= 1))
        return NAN;
    double rank = q * (double)total;
    uint64_t below = 0; /* observations in the buckets before b */
    size_t b = 0;
    /* The first non-empty bucket whose cumulative count reaches the rank; skipping empty
     * buckets keeps q = 0 from interpolating inside a bucket holding nothing (0/0). */
    for (; b <= h->n; b++) {
        if (c[b] > 0 && (double)(below + c[b]) >= rank)
            break;
        below += c[b];
    }
    if (b >= h->n) /* the +Inf bucket: the best known is the largest finite bound */
        return h->bounds[h->n - 1];
    double upper = h->bounds[b];
    double lower = b > 0 ? h->bounds[b - 1] : 0;
    if (b == 0 && upper <= 0)
        return upper;
    return lower + (upper - lower) * ((rank - (double)below) / (double)c[b]);
}

int vsoc_prom_hist(vsoc_prom_t *p, const char *name, const vsoc_prom_label_t *labels,
                   size_t nlabels, const vsoc_hist_t *h)
{
    uint64_t c[HIST_MAX_BOUNDS + 1];
    load_counts(h, c);
    double sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
    return vsoc_prom_histogram(p, name, labels, nlabels, h->bounds, c, h->n, sum);
}
