/* util.h: small helpers shared by engine modules: hashing, number and duration parsing,
 * ASCII case folding and did-you-mean suggestions. All functions are pure and thread-safe. */
#ifndef VSOC_UTIL_H
#define VSOC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 64-bit mix of an integer (splitmix64's finaliser): cheap and well distributed. */
static inline uint64_t vsoc_hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Hash of a byte string, eight bytes at a time (keys here are short: group keys, type
 * names). In-process only: nothing persisted or compared across hosts depends on it. */
static inline uint64_t vsoc_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = vsoc_hash_u64(h ^ w);
        s += 8;
        n -= 8;
    }
    if (n) {
        /* Build the tail in a register: a byte-wise copy into memory followed by a word
         * load stalls on store forwarding. */
        uint64_t w = 0;
        for (size_t i = 0; i < n; i++)
            w |= (uint64_t)s[i] << (8 * i);
        h = vsoc_hash_u64(h ^ w ^ 0xA5A5A5A5ULL);
    }
    return h;
}

static inline int vsoc_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* Value of a hex digit, or -1. */
static inline int vsoc_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parses a whole string as an integer: decimal, 0x hex, 0b binary, optional sign.
 * Returns 0 or -1 when s is not entirely an integer or overflows. */
int vsoc_parse_int(const char *s, int64_t *out);

/* Parses a whole string as a finite number (an integer form of vsoc_parse_int or a decimal
 * fraction). Returns 0 or -1. */
int vsoc_parse_number(const char *s, double *out);

/* Parses a duration such as "500ms", "30s", "10m", "2h", "1d" (a bare number is seconds).
 * Returns 0 with microseconds in *us, or -1. */
int vsoc_parse_duration(const char *s, int64_t *us);

/* Returns the candidate closest to word by edit distance when it is close enough to be a
 * likely typo (distance <= max(1, strlen(word)/3)), else NULL. */
const char *vsoc_did_you_mean(const char *word, const char *const *cands, size_t n);

/* ASCII case-insensitive comparison of a with a pattern p that is already lower case. */
static inline int vsoc_eq_lower(const char *a, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (vsoc_lower((unsigned char)a[i]) != (unsigned char)p[i])
            return 0;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back: for RFC 3339 times in
 * captures and command envelopes, without the process's time zone. */
/* The first 16 bytes of a SHA-256 digest as a UUID of version 8 (vendor-defined) with the
 * RFC 9562 variant, "xxxxxxxx-xxxx-8xxx-Vxxx-xxxxxxxxxxxx" (lower-case), into out[37]: the
 * form of every content-derived id (alerts, incidents, runs, commands). md is modified. */
void vsoc_uuid_format(unsigned char *md, char out[37]);

/* Fingerprints (FNV-1a 64) fed field by field in little-endian form: the same in every run
 * and on every host, since they are stored with engine snapshots. Start *h at
 * 0xcbf29ce484222325. */
void vsoc_fp_bytes(uint64_t *h, const void *p, size_t n);
void vsoc_fp_u64(uint64_t *h, uint64_t x);
void vsoc_fp_f64(uint64_t *h, double d);

/* Formats an error message into err (errlen bytes; nothing when err is NULL or errlen 0):
 * the out-parameter every constructor and connector call fills. */
void vsoc_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Replaces each control character (below 0x20, and 0x7f) of the NUL-terminated s with '?':
 * a text log line that quotes what others sent (an ack's reason) stays one line. */
void vsoc_one_line(char *s);

/* Makes room for one more element in a growable array: when n == *cap, doubles *cap
 * (first 16) and reallocates *arr. Returns 0, or VSOC_ENOMEM with *arr unchanged. */
int vsoc_array_grow(void **arr, size_t *cap, size_t n, size_t elem);

/* Name tables of enums: names[i] is the name of value i. vsoc_name_of returns NULL outside
 * the table; vsoc_name_index returns the value of name, or -1. */
const char *vsoc_name_of(const char *const *names, size_t n, unsigned i);
int vsoc_name_index(const char *const *names, size_t n, const char *name);

int64_t vsoc_days_from_civil(int64_t y, int m, int d);
void vsoc_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

#endif
