/* util.c: parsing and suggestion helpers (see util.h). */
#include "util.h"
#include "vsoc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int vsoc_parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    } else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B')) {
        base = 2;
        p += 2;
    }
    if (!*p)
        return -1;
    uint64_t v = 0;
    for (; *p; p++) {
        int d = vsoc_hexval((unsigned char)*p);
        if (*p == '_' && p[1])
            continue; /* 0x18FE_F100 reads better in rules */
        if (d < 0 || d >= base)
            return -1;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return -1;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

int vsoc_parse_number(const char *s, double *out)
{
    int64_t i;
    if (vsoc_parse_int(s, &i) == 0) {
        *out = (double)i;
        return 0;
    }
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno || !isfinite(d))
        return -1;
    /* strtod accepts "inf", "nan" and hex floats; rules only need decimal fractions. */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p))
            return -1;
    *out = d;
    return 0;
}

int vsoc_parse_duration(const char *s, int64_t *us)
{
    const char *p = s;
    if (!*p)
        return -1;
    double v = 0;
    int digits = 0;
    double scale = 0;
    for (; *p && ((*p >= '0' && *p <= '9') || *p == '.'); p++) {
        if (*p == '.') {
            if (scale)
                return -1;
            scale = 1;
            continue;
        }
        digits++;
        if (scale) {
            scale /= 10;
            v += (*p - '0') * scale;
        } else {
            v = v * 10 + (*p - '0');
        }
    }
    if (!digits)
        return -1;
    double mult;
    if (!*p || strcmp(p, "s") == 0)
        mult = 1e6;
    else if (strcmp(p, "ms") == 0)
        mult = 1e3;
    else if (strcmp(p, "us") == 0)
        mult = 1;
    else if (strcmp(p, "m") == 0)
        mult = 60e6;
    else if (strcmp(p, "h") == 0)
        mult = 3600e6;
    else if (strcmp(p, "d") == 0)
        mult = 86400e6;
    else
        return -1;
    double r = v * mult;
    if (r > 9e18)
        return -1;
    *us = (int64_t)llround(r);
    return 0;
}

/* Optimal string alignment distance: Levenshtein plus adjacent transpositions, the most
 * common typo ("hihg" for "high"). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    static _Thread_local size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *vsoc_did_you_mean(const char *word, const char *const *cands, size_t n)
{
    size_t limit = strlen(word) / 3;
    if (limit < 1)
        limit = 1;
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d < bestd) {
            bestd = d;
            best = cands[i];
        }
    }
    /* A suggestion must keep some of the word: "c" is not a typo of "a". */
    return bestd <= limit && bestd < strlen(word) ? best : NULL;
}

/* Howard Hinnant's civil-date algorithms (exact for the proleptic Gregorian calendar). */
int64_t vsoc_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void vsoc_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void vsoc_uuid_format(unsigned char *md, char out[37])
{
    md[6] = (unsigned char)((md[6] & 0x0F) | 0x80);
    md[8] = (unsigned char)((md[8] & 0x3F) | 0x80);
    static const char hx[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hx[md[i] >> 4];
        out[o++] = hx[md[i] & 15];
    }
    out[o] = 0;
}

const char *vsoc_name_of(const char *const *names, size_t n, unsigned i)
{
    return i < n ? names[i] : NULL;
}

int vsoc_name_index(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] && !strcmp(name, names[i]))
            return (int)i;
    return -1;
}

void vsoc_one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

int vsoc_array_grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, nc * elem);
    if (!p)
        return VSOC_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

void vsoc_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void vsoc_fp_bytes(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= 0x100000001b3ULL;
    }
}

void vsoc_fp_u64(uint64_t *h, uint64_t x)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(x >> (8 * i));
    vsoc_fp_bytes(h, b, 8);
}

void vsoc_fp_f64(uint64_t *h, double d)
{
    uint64_t x;
    memcpy(&x, &d, 8);
    vsoc_fp_u64(h, x);
}
