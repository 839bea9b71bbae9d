/* baseline.c: learning a CAN traffic baseline, writing it as YAML and loading it back.
 *
 * Invariants: the learner's per-ID state lives in an open-addressing table (linear probing,
 * at most half full) of pointers; an entry is allocated only when an ID first appears and
 * never moves afterwards. Each entry has a file-local period accumulator (cur) that is
 * merged into the totals (tot) when the next file begins or when the baseline is built, so
 * no period or counter pair ever spans two files. A built baseline holds only the finished
 * figures, rounded as the YAML prints them, so that write -> load -> write is exact. */
#include "baseline.h"

#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

/* Fewer consecutive pairs than this never make a counter: two or three frames that happen to
 * count up prove nothing. */
#define COUNTER_MIN_PAIRS 8

typedef struct welford {
    uint64_t n;
    double mean, m2, min, max; /* microseconds */
} welford_t;

typedef struct id_state {
    char *bus;
    uint32_t id;
    uint8_t ext;
    uint8_t nbytes;
    uint16_t dlc_mask;
    uint64_t frames;
    welford_t tot, cur;
    uint32_t hist[VSOC_BASELINE_HIST_BUCKETS];
    uint8_t bmin[VSOC_BASELINE_BYTES], bmax[VSOC_BASELINE_BYTES];
    uint8_t band[VSOC_BASELINE_BYTES], bor[VSOC_BASELINE_BYTES];
    uint64_t pairs[VSOC_BASELINE_BYTES], inc_byte[VSOC_BASELINE_BYTES],
        inc_nib[VSOC_BASELINE_BYTES];
    /* checksum candidates: frames holding byte i, and how often it was the XOR / the sum
     * of the frame's other bytes */
    uint64_t cs_n[VSOC_BASELINE_BYTES], xor_ok[VSOC_BASELINE_BYTES], sum_ok[VSOC_BASELINE_BYTES];
    /* The previous frame in the current file. */
    size_t last_file; /* 1-based source index; 0 before the first frame */
    int64_t last_ts;
    uint8_t last_len;
    uint8_t last[VSOC_BASELINE_BYTES];
} id_state_t;

typedef struct source {
    char *file;
    char *sha256;
    uint64_t frames;
    int64_t first_ts, last_ts;
} source_t;

struct vsoc_baseline_learner {
    id_state_t **slots;
    size_t cap, n; /* cap is a power of two */
    source_t *src;
    size_t nsrc, srccap;
    uint64_t frames;
};

struct vsoc_baseline {
    char *name, *tool;
    source_t *src;
    size_t nsrc;
    uint64_t frames;
    double duration_s;
    vsoc_baseline_id_t *ids;
    size_t nids;
};

const char *vsoc_baseline_checksum_name(vsoc_baseline_checksum_t c)
{
    switch (c) {
    case VSOC_BASELINE_CHECKSUM_XOR:
        return "xor";
    case VSOC_BASELINE_CHECKSUM_SUM:
        return "sum";
    default:
        return "none";
    }
}

const char *vsoc_baseline_counter_name(vsoc_baseline_counter_t c)
{
    switch (c) {
    case VSOC_BASELINE_COUNTER_NIBBLE:
        return "nibble";
    case VSOC_BASELINE_COUNTER_BYTE:
        return "byte";
    default:
        return "none";
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Statistics */

static void welford_add(welford_t *w, double x)
{
    w->n++;
    double d = x - w->mean;
    w->mean += d / (double)w->n;
    w->m2 += d * (x - w->mean);
    if (w->n == 1 || x < w->min)
        w->min = x;
    if (w->n == 1 || x > w->max)
        w->max = x;
}

/* Chan et al.'s parallel combination: a absorbs b. */
static void welford_merge(welford_t *a, const welford_t *b)
{
    if (b->n == 0)
        return;
    if (a->n == 0) {
        *a = *b;
        return;
    }
    double n = (double)(a->n + b->n), d = b->mean - a->mean;
    a->m2 += b->m2 + d * d * (double)a->n * (double)b->n / n;
    a->mean += d * (double)b->n / n;
    a->n += b->n;
    if (b->min < a->min)
        a->min = b->min;
    if (b->max > a->max)
        a->max = b->max;
}

static const double hist_decades = 7.0; /* log10(HIST_MAX_US / HIST_MIN_US) */

static size_t hist_bucket(double us)
{
    if (!(us > VSOC_BASELINE_HIST_MIN_US))
        return 0;
    double x = log10(us / VSOC_BASELINE_HIST_MIN_US) / hist_decades * VSOC_BASELINE_HIST_BUCKETS;
    if (x >= VSOC_BASELINE_HIST_BUCKETS - 1)
        return VSOC_BASELINE_HIST_BUCKETS - 1;
    return (size_t)x;
}

static double hist_edge(size_t b)
{
    return VSOC_BASELINE_HIST_MIN_US *
           pow(10.0, hist_decades * (double)b / VSOC_BASELINE_HIST_BUCKETS);
}

/* The q-quantile (0..1) of the histogram, clamped to the observed [min, max]. */
static double hist_quantile(const uint32_t *h, const welford_t *w, double q)
{
    if (w->n == 0)
        return 0;
    double target = q * (double)w->n, cum = 0;
    double v = w->max;
    for (size_t b = 0; b < VSOC_BASELINE_HIST_BUCKETS; b++) {
        if (!h[b])
            continue;
        if (cum + h[b] >= target) {
            double frac = (target - cum) / h[b];
            double lo = hist_edge(b), hi = hist_edge(b + 1);
            v = lo * pow(hi / lo, frac);
            break;
        }
        cum += h[b];
    }
    if (v < w->min)
        v = w->min;
    if (v > w->max)
        v = w->max;
    return v;
}

/* ---------------------------------------------------------------------------------------- */
/* Learner */

vsoc_baseline_learner_t *vsoc_baseline_learner_new(void)
{
    vsoc_baseline_learner_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cap = 64;
    l->slots = calloc(l->cap, sizeof *l->slots);
    if (!l->slots) {
        free(l);
        return NULL;
    }
    return l;
}

void vsoc_baseline_learner_free(vsoc_baseline_learner_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->cap; i++) {
        if (l->slots[i]) {
            free(l->slots[i]->bus);
            free(l->slots[i]);
        }
    }
    for (size_t i = 0; i < l->nsrc; i++) {
        free(l->src[i].file);
        free(l->src[i].sha256);
    }
    free(l->src);
    free(l->slots);
    free(l);
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s ? s : "");
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s ? s : "", n + 1);
    return d;
}

int vsoc_baseline_learner_file_begin(vsoc_baseline_learner_t *l, const char *source,
                                     const char *sha256_hex)
{
    if (l->nsrc == l->srccap) {
        size_t cap = l->srccap ? l->srccap * 2 : 4;
        source_t *ns = realloc(l->src, cap * sizeof *ns);
        if (!ns)
            return VSOC_ENOMEM;
        l->src = ns;
        l->srccap = cap;
    }
    source_t s = {dupstr(source), dupstr(sha256_hex), 0, 0, 0};
    if (!s.file || !s.sha256) {
        free(s.file);
        free(s.sha256);
        return VSOC_ENOMEM;
    }
    /* Close the previous file: its periods join the totals. */
    for (size_t i = 0; i < l->cap; i++) {
        id_state_t *st = l->slots[i];
        if (st) {
            welford_merge(&st->tot, &st->cur);
            memset(&st->cur, 0, sizeof st->cur);
        }
    }
    l->src[l->nsrc++] = s;
    return 0;
}

static uint64_t key_hash(const char *bus, size_t buslen, uint32_t id, int ext)
{
    return vsoc_hash_bytes(bus, buslen, vsoc_hash_u64(((uint64_t)id << 1) | (ext ? 1u : 0u)));
}

static int key_eq(const id_state_t *st, const char *bus, size_t buslen, uint32_t id, int ext)
{
    return st->id == id && st->ext == (ext ? 1 : 0) && strlen(st->bus) == buslen &&
           memcmp(st->bus, bus, buslen) == 0;
}

static int grow(vsoc_baseline_learner_t *l)
{
    size_t cap = l->cap * 2;
    id_state_t **ns = calloc(cap, sizeof *ns);
    if (!ns)
        return VSOC_ENOMEM;
    for (size_t i = 0; i < l->cap; i++) {
        id_state_t *st = l->slots[i];
        if (!st)
            continue;
        size_t j = key_hash(st->bus, strlen(st->bus), st->id, st->ext) & (cap - 1);
        while (ns[j])
            j = (j + 1) & (cap - 1);
        ns[j] = st;
    }
    free(l->slots);
    l->slots = ns;
    l->cap = cap;
    return 0;
}

int vsoc_baseline_learner_add(vsoc_baseline_learner_t *l, const vsoc_event_t *ev)
{
    if (ev->kind != VSOC_EVENT_CAN)
        return 0;
    if (l->nsrc == 0)
        return VSOC_EINVAL;
    const vsoc_can_frame_t *f = &ev->can;
    const char *bus = ev->bus.p ? ev->bus.p : "";
    size_t buslen = ev->bus.p ? ev->bus.n : 0;
    size_t j = key_hash(bus, buslen, f->id, f->ext) & (l->cap - 1);
    id_state_t *st;
    while ((st = l->slots[j]) && !key_eq(st, bus, buslen, f->id, f->ext))
        j = (j + 1) & (l->cap - 1);
    if (!st) {
        if ((l->n + 1) * 2 > l->cap) {
            if (grow(l) != 0)
                return VSOC_ENOMEM;
            j = key_hash(bus, buslen, f->id, f->ext) & (l->cap - 1);
            while (l->slots[j])
                j = (j + 1) & (l->cap - 1);
        }
        st = calloc(1, sizeof *st);
        if (!st)
            return VSOC_ENOMEM;
        st->bus = malloc(buslen + 1);
        if (!st->bus) {
            free(st);
            return VSOC_ENOMEM;
        }
        memcpy(st->bus, bus, buslen);
        st->bus[buslen] = '\0';
        st->id = f->id;
        st->ext = f->ext ? 1 : 0;
        memset(st->bmin, 0xFF, sizeof st->bmin);
        memset(st->band, 0xFF, sizeof st->band);
        l->slots[j] = st;
        l->n++;
    }

    source_t *src = &l->src[l->nsrc - 1];
    if (src->frames == 0 || ev->ts_us < src->first_ts)
        src->first_ts = ev->ts_us;
    if (src->frames == 0 || ev->ts_us > src->last_ts)
        src->last_ts = ev->ts_us;
    src->frames++;
    l->frames++;

    st->frames++;
    st->dlc_mask |= (uint16_t)(1u << (f->dlc & 15));
    size_t len = f->len < VSOC_BASELINE_BYTES ? f->len : VSOC_BASELINE_BYTES;
    if (f->rtr)
        len = 0; /* a remote request carries no data, whatever its DLC says */
    if (len > st->nbytes)
        st->nbytes = (uint8_t)len;
    int same_file = st->last_file == l->nsrc;
    if (len >= 3) {
        uint8_t x = 0, sum = 0;
        for (size_t i = 0; i < len; i++) {
            x ^= f->data[i];
            sum = (uint8_t)(sum + f->data[i]);
        }
        for (size_t i = 0; i < len; i++) {
            uint8_t v = f->data[i];
            st->cs_n[i]++;
            st->xor_ok[i] += (uint8_t)(x ^ v) == v;
            st->sum_ok[i] += (uint8_t)(sum - v) == v;
        }
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t v = f->data[i];
        if (v < st->bmin[i])
            st->bmin[i] = v;
        if (v > st->bmax[i])
            st->bmax[i] = v;
        st->band[i] &= v;
        st->bor[i] |= v;
        if (same_file && i < st->last_len) {
            uint8_t p = st->last[i];
            st->pairs[i]++;
            if (v == (uint8_t)(p + 1))
                st->inc_byte[i]++;
            if ((v & 15) == ((p + 1) & 15))
                st->inc_nib[i]++;
        }
    }
    if (same_file) {
        double d = (double)(ev->ts_us - st->last_ts);
        welford_add(&st->cur, d);
        st->hist[hist_bucket(d)]++;
    }
    st->last_file = l->nsrc;
    st->last_ts = ev->ts_us;
    st->last_len = (uint8_t)len;
    memcpy(st->last, f->data, len);
    return 0;
}

uint64_t vsoc_baseline_learner_frames(const vsoc_baseline_learner_t *l)
{
    return l->frames;
}

size_t vsoc_baseline_learner_ids(const vsoc_baseline_learner_t *l)
{
    return l->n;
}

int64_t vsoc_baseline_learner_duration_us(const vsoc_baseline_learner_t *l)
{
    int64_t d = 0;
    for (size_t i = 0; i < l->nsrc; i++)
        d += l->src[i].last_ts - l->src[i].first_ts;
    return d;
}

/* ---------------------------------------------------------------------------------------- */
/* Building a baseline */

static int id_cmp(const void *a, const void *b)
{
    const vsoc_baseline_id_t *x = a, *y = b;
    int c = strcmp(x->bus, y->bus);
    if (c)
        return c;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return (int)x->ext - (int)y->ext;
}

/* Rounds to what "%.3f" prints, so that a built baseline and a loaded one are equal. */
static double round3(double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.3f", v);
    return strtod(buf, NULL);
}

void vsoc_baseline_free(vsoc_baseline_t *b)
{
    if (!b)
        return;
    free(b->name);
    free(b->tool);
    for (size_t i = 0; i < b->nsrc; i++) {
        free(b->src[i].file);
        free(b->src[i].sha256);
    }
    free(b->src);
    for (size_t i = 0; i < b->nids; i++)
        free((char *)b->ids[i].bus);
    free(b->ids);
    free(b);
}

vsoc_baseline_t *vsoc_baseline_from_learner(const vsoc_baseline_learner_t *l, const char *name,
                                            const char *tool_version)
{
    vsoc_baseline_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->name = dupstr(name);
    b->tool = dupstr(tool_version);
    b->src = calloc(l->nsrc ? l->nsrc : 1, sizeof *b->src);
    b->ids = calloc(l->n ? l->n : 1, sizeof *b->ids);
    if (!b->name || !b->tool || !b->src || !b->ids)
        goto fail;
    for (; b->nsrc < l->nsrc; b->nsrc++) {
        source_t *d = &b->src[b->nsrc];
        *d = l->src[b->nsrc];
        d->file = dupstr(d->file);
        d->sha256 = dupstr(d->sha256);
        if (!d->file || !d->sha256)
            goto fail;
    }
    b->frames = l->frames;
    b->duration_s = round3((double)vsoc_baseline_learner_duration_us(l) / 1e6);
    for (size_t s = 0; s < l->cap; s++) {
        const id_state_t *st = l->slots[s];
        if (!st)
            continue;
        vsoc_baseline_id_t *e = &b->ids[b->nids];
        e->bus = dupstr(st->bus);
        if (!e->bus)
            goto fail;
        b->nids++;
        e->id = st->id;
        e->ext = st->ext;
        e->nbytes = st->nbytes;
        e->dlc_mask = st->dlc_mask;
        e->frames = st->frames;
        welford_t w = st->tot;
        welford_merge(&w, &st->cur);
        if (w.n) {
            vsoc_baseline_period_t *p = &e->period;
            p->count = w.n;
            p->mean = round3(w.mean / 1e3);
            p->std = round3(w.n > 1 ? sqrt(w.m2 / (double)(w.n - 1)) / 1e3 : 0);
            p->min = round3(w.min / 1e3);
            p->max = round3(w.max / 1e3);
            p->p1 = round3(hist_quantile(st->hist, &w, 0.01) / 1e3);
            p->p50 = round3(hist_quantile(st->hist, &w, 0.50) / 1e3);
            p->p99 = round3(hist_quantile(st->hist, &w, 0.99) / 1e3);
        }
        for (size_t i = 0; i < st->nbytes; i++) {
            vsoc_baseline_byte_t *by = &e->bytes[i];
            by->min = st->bmin[i];
            by->max = st->bmax[i];
            by->and_bits = st->band[i];
            by->or_bits = st->bor[i];
            by->counter = VSOC_BASELINE_COUNTER_NONE;
            if (st->pairs[i] >= COUNTER_MIN_PAIRS) {
                /* x >= 99.5 % of n, in integers: 200 x >= 199 n. A genuine counter steps
                 * by one in every pair but for lost frames; a checksum nibble that mostly
                 * follows one must not be taken for it, or scoring flags its breaks. */
                if (st->inc_byte[i] * 200 >= st->pairs[i] * 199)
                    by->counter = VSOC_BASELINE_COUNTER_BYTE;
                else if (st->inc_nib[i] * 200 >= st->pairs[i] * 199)
                    by->counter = VSOC_BASELINE_COUNTER_NIBBLE;
            }
            /* A checksum byte must vary: a constant byte next to constant data would pass
             * either test without checking anything. */
            by->checksum = VSOC_BASELINE_CHECKSUM_NONE;
            if (st->cs_n[i] >= COUNTER_MIN_PAIRS && st->bmin[i] != st->bmax[i]) {
                if (st->xor_ok[i] * 200 >= st->cs_n[i] * 199)
                    by->checksum = VSOC_BASELINE_CHECKSUM_XOR;
                else if (st->sum_ok[i] * 200 >= st->cs_n[i] * 199)
                    by->checksum = VSOC_BASELINE_CHECKSUM_SUM;
            }
        }
    }
    qsort(b->ids, b->nids, sizeof *b->ids, id_cmp);
    return b;
fail:
    vsoc_baseline_free(b);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Writing */

/* A double-quoted YAML scalar: backslash, quote and control bytes escaped. */
static void put_quoted(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7F)
            fprintf(out, "\\x%02X", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Event time as seconds with microseconds; exact for any int64. */
static void put_ts(FILE *out, int64_t us)
{
    uint64_t a = us < 0 ? (uint64_t)0 - (uint64_t)us : (uint64_t)us;
    fprintf(out, "%s%llu.%06llu", us < 0 ? "-" : "", (unsigned long long)(a / 1000000),
            (unsigned long long)(a % 1000000));
}

static void put_date(FILE *out, int64_t us)
{
    int64_t sec = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    int64_t frac = us - sec * 1000000;
    time_t t = (time_t)sec;
    struct tm tm;
    char buf[64];
    if (!gmtime_r(&t, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm))
        snprintf(buf, sizeof buf, "1970-01-01T00:00:00");
    fprintf(out, "\"%s.%06lldZ\"", buf, (long long)frac);
}

int vsoc_baseline_write(const vsoc_baseline_t *b, FILE *out)
{
    int64_t last = 0;
    for (size_t i = 0; i < b->nsrc; i++)
        if (i == 0 || b->src[i].last_ts > last)
            last = b->src[i].last_ts;
    fprintf(out, "# vsoc baseline of normal CAN traffic (docs/vsoc-baseline.md)\n");
    fprintf(out, "format: %d\nname: ", VSOC_BASELINE_FORMAT);
    put_quoted(out, b->name);
    fputs("\ntool: ", out);
    put_quoted(out, b->tool);
    fputs("\ndate: ", out);
    put_date(out, last);
    fprintf(out, "\nframes: %llu\nduration_s: %.3f\nsources:\n", (unsigned long long)b->frames,
            b->duration_s);
    if (b->nsrc == 0)
        fputs("  []\n", out);
    for (size_t i = 0; i < b->nsrc; i++) {
        const source_t *s = &b->src[i];
        fputs("  - {file: ", out);
        put_quoted(out, s->file);
        fputs(", sha256: ", out);
        put_quoted(out, s->sha256);
        fprintf(out, ", frames: %llu, first_ts: ", (unsigned long long)s->frames);
        put_ts(out, s->first_ts);
        fputs(", last_ts: ", out);
        put_ts(out, s->last_ts);
        fputs("}\n", out);
    }
    fputs("ids:\n", out);
    if (b->nids == 0)
        fputs("  []\n", out);
    for (size_t i = 0; i < b->nids; i++) {
        const vsoc_baseline_id_t *e = &b->ids[i];
        fprintf(out, "  - id: 0x%0*X\n    ext: %s\n    bus: ", e->ext ? 8 : 3, (unsigned)e->id,
                e->ext ? "true" : "false");
        put_quoted(out, e->bus);
        fprintf(out, "\n    frames: %llu\n", (unsigned long long)e->frames);
        const vsoc_baseline_period_t *p = &e->period;
        if (p->count)
            fprintf(out,
                    "    period_ms: {count: %llu, mean: %.3f, std: %.3f, min: %.3f, p1: %.3f, "
                    "p50: %.3f, p99: %.3f, max: %.3f}\n",
                    (unsigned long long)p->count, p->mean, p->std, p->min, p->p1, p->p50,
                    p->p99, p->max);
        else
            fputs("    period_ms: {count: 0}\n", out);
        fputs("    dlc: [", out);
        const char *sep = "";
        for (int d = 0; d < 16; d++) {
            if (e->dlc_mask & (1u << d)) {
                fprintf(out, "%s%d", sep, d);
                sep = ", ";
            }
        }
        fputs("]\n    bytes:", out);
        if (e->nbytes == 0)
            fputs(" []", out);
        fputc('\n', out);
        for (size_t k = 0; k < e->nbytes; k++) {
            const vsoc_baseline_byte_t *by = &e->bytes[k];
            uint8_t cmask = (uint8_t)~(by->or_bits ^ by->and_bits);
            fprintf(out,
                    "      - {min: 0x%02X, max: 0x%02X, const_mask: 0x%02X, const_bits: 0x%02X, "
                    "counter: %s, checksum: %s}\n",
                    by->min, by->max, cmask, by->and_bits & cmask,
                    vsoc_baseline_counter_name((vsoc_baseline_counter_t)by->counter),
                    vsoc_baseline_checksum_name((vsoc_baseline_checksum_t)by->checksum));
        }
    }
    if (fflush(out) != 0 || ferror(out))
        return VSOC_EIO;
    return 0;
}

int vsoc_baseline_write_yaml(const vsoc_baseline_learner_t *l, FILE *out, const char *name,
                             const char *tool_version)
{
    vsoc_baseline_t *b = vsoc_baseline_from_learner(l, name, tool_version);
    if (!b)
        return VSOC_ENOMEM;
    int rc = vsoc_baseline_write(b, out);
    vsoc_baseline_free(b);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Loading */

typedef struct loader {
    const char *path;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    int failed;
} loader_t;

static void lerr(loader_t *ld, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void lerr(loader_t *ld, const yaml_node_t *n, const char *fmt, ...)
{
    if (ld->failed)
        return; /* keep the first error: later ones are usually its consequences */
    ld->failed = 1;
    int k = snprintf(ld->err, ld->errlen, "%s:%d:%d: ", ld->path,
                     n ? (int)n->start_mark.line + 1 : 0, n ? (int)n->start_mark.column + 1 : 0);
    if (k < 0 || (size_t)k >= ld->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err + k, ld->errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

static const char *scalar(loader_t *ld, yaml_node_t *n, const char *what)
{
    if (!n || n->type != YAML_SCALAR_NODE) {
        lerr(ld, n, "%s: expected a scalar", what);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

static int get_u64(loader_t *ld, yaml_node_t *n, const char *what, uint64_t max, uint64_t *out)
{
    const char *s = scalar(ld, n, what);
    int64_t v;
    if (!s)
        return -1;
    if (vsoc_parse_int(s, &v) != 0 || v < 0 || (uint64_t)v > max) {
        lerr(ld, n, "%s: expected an integer from 0 to %llu, not '%s'", what,
             (unsigned long long)max, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static int get_double(loader_t *ld, yaml_node_t *n, const char *what, double *out)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    if (vsoc_parse_number(s, out) != 0) {
        lerr(ld, n, "%s: expected a number, not '%s'", what, s);
        return -1;
    }
    return 0;
}

/* Event time "SECONDS.MICROS" back to microseconds, exactly. */
static int get_ts(loader_t *ld, yaml_node_t *n, const char *what, int64_t *out)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    int neg = *s == '-';
    char *end;
    errno = 0;
    unsigned long long sec = strtoull(s + neg, &end, 10), frac = 0;
    int digits = 0;
    if (*end == '.') {
        for (end++; *end >= '0' && *end <= '9' && digits < 6; end++, digits++)
            frac = frac * 10 + (unsigned long long)(*end - '0');
    }
    for (; digits < 6; digits++)
        frac *= 10;
    if (errno || *end || end == s + neg || sec > (unsigned long long)INT64_MAX / 1000000 - 1) {
        lerr(ld, n, "%s: expected seconds such as 12.345678, not '%s'", what, s);
        return -1;
    }
    int64_t v = (int64_t)(sec * 1000000 + frac);
    *out = neg ? -v : v;
    return 0;
}

static int get_str(loader_t *ld, yaml_node_t *n, const char *what, char **out)
{
    const char *s = scalar(ld, n, what);
    if (!s)
        return -1;
    free(*out);
    *out = dupstr(s);
    if (!*out) {
        lerr(ld, n, "out of memory");
        return -1;
    }
    return 0;
}

#define FOR_PAIRS(ld, node, what, k, v)                                                        \
    if (!(node) || (node)->type != YAML_MAPPING_NODE)                                          \
        lerr(ld, node, "%s: expected a mapping", what);                                        \
    else                                                                                       \
        for (yaml_node_pair_t *pr_ = (node)->data.mapping.pairs.start;                        \
             !(ld)->failed && pr_ < (node)->data.mapping.pairs.top; pr_++)                     \
            for (yaml_node_t *k = yaml_document_get_node((ld)->doc, pr_->key),                 \
                             *v = yaml_document_get_node((ld)->doc, pr_->value), *once_ = k;   \
                 once_; once_ = NULL)

static int is_key(loader_t *ld, yaml_node_t *k, const char *name)
{
    const char *s = scalar(ld, k, "key");
    return s && !strcmp(s, name);
}

static void load_source(loader_t *ld, yaml_node_t *n, source_t *s)
{
    FOR_PAIRS(ld, n, "sources entry", k, v)
    {
        if (is_key(ld, k, "file"))
            get_str(ld, v, "file", &s->file);
        else if (is_key(ld, k, "sha256"))
            get_str(ld, v, "sha256", &s->sha256);
        else if (is_key(ld, k, "frames"))
            get_u64(ld, v, "frames", UINT64_MAX >> 1, &s->frames);
        else if (is_key(ld, k, "first_ts"))
            get_ts(ld, v, "first_ts", &s->first_ts);
        else if (is_key(ld, k, "last_ts"))
            get_ts(ld, v, "last_ts", &s->last_ts);
        else if (!ld->failed)
            lerr(ld, k, "unknown key '%s' in a sources entry", k->data.scalar.value);
    }
    if (!ld->failed && (!s->file || !s->sha256))
        lerr(ld, n, "a sources entry needs file and sha256");
}

static void load_period(loader_t *ld, yaml_node_t *n, vsoc_baseline_period_t *p)
{
    static const char *const names[] = {"mean", "std", "min", "p1", "p50", "p99", "max"};
    double *vals[] = {&p->mean, &p->std, &p->min, &p->p1, &p->p50, &p->p99, &p->max};
    FOR_PAIRS(ld, n, "period_ms", k, v)
    {
        if (is_key(ld, k, "count")) {
            get_u64(ld, v, "count", UINT64_MAX >> 1, &p->count);
            continue;
        }
        size_t i = 0;
        while (i < 7 && !is_key(ld, k, names[i]))
            i++;
        if (i < 7)
            get_double(ld, v, names[i], vals[i]);
        else if (!ld->failed)
            lerr(ld, k, "unknown key '%s' in period_ms", k->data.scalar.value);
    }
}

static void load_byte(loader_t *ld, yaml_node_t *n, vsoc_baseline_byte_t *by)
{
    uint64_t mn = 0, mx = 255, cmask = 0, cbits = 0;
    FOR_PAIRS(ld, n, "bytes entry", k, v)
    {
        if (is_key(ld, k, "min"))
            get_u64(ld, v, "min", 255, &mn);
        else if (is_key(ld, k, "max"))
            get_u64(ld, v, "max", 255, &mx);
        else if (is_key(ld, k, "const_mask"))
            get_u64(ld, v, "const_mask", 255, &cmask);
        else if (is_key(ld, k, "const_bits"))
            get_u64(ld, v, "const_bits", 255, &cbits);
        else if (is_key(ld, k, "counter")) {
            const char *s = scalar(ld, v, "counter");
            if (s && !strcmp(s, "none"))
                by->counter = VSOC_BASELINE_COUNTER_NONE;
            else if (s && !strcmp(s, "nibble"))
                by->counter = VSOC_BASELINE_COUNTER_NIBBLE;
            else if (s && !strcmp(s, "byte"))
                by->counter = VSOC_BASELINE_COUNTER_BYTE;
            else if (s)
                lerr(ld, v, "counter: expected none, nibble or byte, not '%s'", s);
        } else if (is_key(ld, k, "checksum")) {
            const char *s = scalar(ld, v, "checksum");
            if (s && !strcmp(s, "none"))
                by->checksum = VSOC_BASELINE_CHECKSUM_NONE;
            else if (s && !strcmp(s, "xor"))
                by->checksum = VSOC_BASELINE_CHECKSUM_XOR;
            else if (s && !strcmp(s, "sum"))
                by->checksum = VSOC_BASELINE_CHECKSUM_SUM;
            else if (s)
                lerr(ld, v, "checksum: expected none, xor or sum, not '%s'", s);
        } else if (!ld->failed)
            lerr(ld, k, "unknown key '%s' in a bytes entry", k->data.scalar.value);
    }
    if (!ld->failed && (cbits & ~cmask))
        lerr(ld, n, "const_bits 0x%02llX has bits outside const_mask 0x%02llX",
             (unsigned long long)cbits, (unsigned long long)cmask);
    by->min = (uint8_t)mn;
    by->max = (uint8_t)mx;
    /* The constant bits are where AND and OR agree; the others were seen as 0 and as 1. */
    by->and_bits = (uint8_t)cbits;
    by->or_bits = (uint8_t)(cbits | (~cmask & 0xFF));
}

static void load_id(loader_t *ld, yaml_node_t *n, vsoc_baseline_id_t *e)
{
    uint64_t v64;
    char *bus = NULL;
    FOR_PAIRS(ld, n, "ids entry", k, v)
    {
        if (is_key(ld, k, "id")) {
            if (get_u64(ld, v, "id", 0x1FFFFFFF, &v64) == 0)
                e->id = (uint32_t)v64;
        } else if (is_key(ld, k, "ext")) {
            const char *s = scalar(ld, v, "ext");
            if (s && (!strcmp(s, "true") || !strcmp(s, "false")))
                e->ext = s[0] == 't';
            else if (s)
                lerr(ld, v, "ext: expected true or false, not '%s'", s);
        } else if (is_key(ld, k, "bus")) {
            get_str(ld, v, "bus", &bus);
        } else if (is_key(ld, k, "frames")) {
            get_u64(ld, v, "frames", UINT64_MAX >> 1, &e->frames);
        } else if (is_key(ld, k, "period_ms")) {
            load_period(ld, v, &e->period);
        } else if (is_key(ld, k, "dlc")) {
            if (v->type != YAML_SEQUENCE_NODE) {
                lerr(ld, v, "dlc: expected a list of DLCs 0..15");
                continue;
            }
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 !ld->failed && it < v->data.sequence.items.top; it++)
                if (get_u64(ld, yaml_document_get_node(ld->doc, *it), "dlc", 15, &v64) == 0)
                    e->dlc_mask |= (uint16_t)(1u << v64);
        } else if (is_key(ld, k, "bytes")) {
            if (v->type != YAML_SEQUENCE_NODE) {
                lerr(ld, v, "bytes: expected a list");
                continue;
            }
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 !ld->failed && it < v->data.sequence.items.top; it++) {
                if (e->nbytes == VSOC_BASELINE_BYTES) {
                    lerr(ld, v, "bytes: at most %d entries", VSOC_BASELINE_BYTES);
                    break;
                }
                load_byte(ld, yaml_document_get_node(ld->doc, *it), &e->bytes[e->nbytes++]);
            }
        } else if (!ld->failed) {
            lerr(ld, k, "unknown key '%s' in an ids entry", k->data.scalar.value);
        }
    }
    if (!bus && !ld->failed)
        lerr(ld, n, "an ids entry needs bus");
    e->bus = bus ? bus : dupstr("");
    if (!e->bus && !ld->failed)
        lerr(ld, n, "out of memory");
}

static void load_root(loader_t *ld, yaml_node_t *root, vsoc_baseline_t *b)
{
    uint64_t format = 0;
    FOR_PAIRS(ld, root, "baseline", k, v)
    {
        if (is_key(ld, k, "format")) {
            if (get_u64(ld, v, "format", 1000, &format) == 0 && format != VSOC_BASELINE_FORMAT)
                lerr(ld, v, "format %llu is not supported (this vsoc reads format %d)",
                     (unsigned long long)format, VSOC_BASELINE_FORMAT);
        } else if (is_key(ld, k, "name")) {
            get_str(ld, v, "name", &b->name);
        } else if (is_key(ld, k, "tool")) {
            get_str(ld, v, "tool", &b->tool);
        } else if (is_key(ld, k, "date")) {
            scalar(ld, v, "date"); /* derived from the sources' last_ts when written */
        } else if (is_key(ld, k, "frames")) {
            get_u64(ld, v, "frames", UINT64_MAX >> 1, &b->frames);
        } else if (is_key(ld, k, "duration_s")) {
            get_double(ld, v, "duration_s", &b->duration_s);
        } else if (is_key(ld, k, "sources") || is_key(ld, k, "ids")) {
            int ids = is_key(ld, k, "ids");
            if (v->type != YAML_SEQUENCE_NODE) {
                lerr(ld, v, "%s: expected a list", ids ? "ids" : "sources");
                continue;
            }
            size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
            if (ids ? b->ids != NULL : b->src != NULL) {
                lerr(ld, k, "duplicate key '%s'", ids ? "ids" : "sources");
                continue;
            }
            if (ids)
                b->ids = calloc(cnt ? cnt : 1, sizeof *b->ids);
            else
                b->src = calloc(cnt ? cnt : 1, sizeof *b->src);
            if (ids ? !b->ids : !b->src) {
                lerr(ld, v, "out of memory");
                continue;
            }
            for (size_t i = 0; i < cnt && !ld->failed; i++) {
                yaml_node_t *item =
                    yaml_document_get_node(ld->doc, v->data.sequence.items.start[i]);
                if (ids) {
                    load_id(ld, item, &b->ids[b->nids++]);
                    if (!ld->failed && b->nids > 1 &&
                        id_cmp(&b->ids[b->nids - 2], &b->ids[b->nids - 1]) >= 0)
                        lerr(ld, item, "ids must be sorted by bus, id and ext, without "
                                       "duplicates");
                } else {
                    load_source(ld, item, &b->src[b->nsrc++]);
                }
            }
        } else if (!ld->failed) {
            lerr(ld, k, "unknown key '%s'", k->data.scalar.value);
        }
    }
    if (ld->failed)
        return;
    if (format == 0)
        lerr(ld, root, "missing key 'format'");
    else if (!b->name || !b->tool)
        lerr(ld, root, "missing key '%s'", !b->name ? "name" : "tool");
    else if (!b->ids || !b->src)
        lerr(ld, root, "missing key '%s'", !b->ids ? "ids" : "sources");
}

vsoc_baseline_t *vsoc_baseline_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    vsoc_baseline_t *b = calloc(1, sizeof *b);
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_parser = 0, have_doc = 0;
    loader_t ld = {path, &doc, err, errlen, 0};
    if (!b) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "%s: cannot initialise the YAML parser", path);
        goto fail;
    }
    have_parser = 1;
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%d:%d: YAML: %s%s%s", path,
                 (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        goto fail;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        snprintf(err, errlen, "%s:1:1: empty document: not a baseline", path);
        goto fail;
    }
    load_root(&ld, root, b);
    if (ld.failed)
        goto fail;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return b;
fail:
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    fclose(f);
    vsoc_baseline_free(b);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Accessors */

const char *vsoc_baseline_name(const vsoc_baseline_t *b)
{
    return b->name;
}

const char *vsoc_baseline_tool(const vsoc_baseline_t *b)
{
    return b->tool;
}

uint64_t vsoc_baseline_frames(const vsoc_baseline_t *b)
{
    return b->frames;
}

double vsoc_baseline_duration_s(const vsoc_baseline_t *b)
{
    return b->duration_s;
}

size_t vsoc_baseline_sources(const vsoc_baseline_t *b)
{
    return b->nsrc;
}

size_t vsoc_baseline_count(const vsoc_baseline_t *b)
{
    return b->nids;
}

const vsoc_baseline_id_t *vsoc_baseline_at(const vsoc_baseline_t *b, size_t i)
{
    return i < b->nids ? &b->ids[i] : NULL;
}

const vsoc_baseline_id_t *vsoc_baseline_lookup(const vsoc_baseline_t *b, const char *bus,
                                               size_t buslen, uint32_t id, int ext)
{
    size_t lo = 0, hi = b->nids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const vsoc_baseline_id_t *e = &b->ids[mid];
        size_t el = strlen(e->bus);
        int c = memcmp(e->bus, bus, el < buslen ? el : buslen);
        if (c == 0)
            c = el < buslen ? -1 : el > buslen ? 1 : 0;
        if (c == 0)
            c = e->id < id ? -1 : e->id > id ? 1 : (int)e->ext - (ext ? 1 : 0);
        if (c == 0)
            return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
