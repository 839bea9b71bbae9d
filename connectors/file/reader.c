/* reader.c: candump (compact, spaced, labelled) and JSON Lines capture readers.
 *
 * The reader is on the replay hot path (millions of lines per second), so a line is never
 * copied or allocated: read() fills one large buffer, memchr finds the newline, and the
 * parsers below walk the bytes in place with table-driven hex decoding. Lines that repeat a
 * layout seen before skip both the newline search and the token scan ("Line shapes"). Event
 * slices point into that buffer and stay valid until the next call, which may move or
 * overwrite it.
 *
 * Invariants:
 *   - buf[pos, end) holds unread bytes; a line is always contiguous in the buffer, so a line
 *     longer than the buffer cannot be returned and is reported as malformed instead.
 *   - The parsers never read outside [line, line + n) and never write more than
 *     VSOC_CAN_MAX_LEN bytes of data; the fuzz targets check both.
 *   - Parse failures carry a short reason naming the offending token; building that text is
 *     the only formatting, and it only happens on the error path. */
#include "reader.h"

#include "../../engine/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READER_BUF_SIZE (1u << 20)
#define REASON_MAX 160
#define DEFAULT_GAP_US 1000

/* Seconds are limited to 12 digits so that seconds * 1e6 cannot overflow int64. */
#define MAX_SECONDS_DIGITS 12

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ &&                  \
    (defined(__GNUC__) || defined(__clang__))
#define READER_SWAR 1
#endif

#ifdef READER_SWAR
/* The layout of a candump line seen before (see "Line shapes" below). */
#define SHAPE_MAX_LEN 128
#define SHAPES 4
typedef struct line_shape {
    uint32_t len;                     /* line length; 0 for an empty slot */
    uint32_t nchunks;                 /* 8-byte chunks, the last one ending at the line end */
    uint64_t sp[SHAPE_MAX_LEN / 8];   /* 0xFF at each byte of a chunk that is a space */
    vsoc_format_t fmt;                /* CANDUMP_SPACED or CANDUMP_LOG */
    uint8_t timed;                    /* a "(...)" timestamp token comes first */
    uint8_t fd, dlc, n;               /* the frame kind and payload length */
    uint16_t ts_off, ts_end;          /* the timestamp token */
    uint16_t ts_digits;               /* "(" ts_digits digits ".DDDDDD)", or 0: other forms */
    uint16_t iface_off, iface_len;    /* iface_len <= 8 */
    uint16_t id_off, id_len;          /* id_len <= 8 and 8 bytes readable at id_off */
    uint16_t len_off;                 /* spaced: the "[n]" token, 4 bytes readable */
    uint16_t data_off, data_end;      /* spaced: "HH HH"; log: the hex after '#' */
    uint32_t len_tok, len_tok_mask;   /* the "[n]" token's bytes, compared as a word */
} line_shape_t;
#endif

struct vsoc_reader {
    int fd;
    int own_fd;       /* 0 for stdin, which the reader must not close */
    int eof;
    int discard;      /* dropping the rest of a line that did not fit the buffer */
    char *buf;        /* READER_BUF_SIZE bytes */
    size_t pos, end;  /* unread bytes are buf[pos, end) */
    vsoc_format_t fmt;
    int64_t gap_us;
    uint64_t lines, skipped, bytes, events;
    char *name;       /* display name: the path as given, "stdin" for "-" */
    char *vin;        /* opts->vin or derived from the name */
    size_t name_len, vin_len;
    vsoc_reader_bad_fn on_bad;
    void *on_bad_ctx;
    json_t *doc;      /* the last JSON event's document, freed at the next call */
#ifdef READER_SWAR
    line_shape_t shapes[SHAPES];
    unsigned next_shape; /* the slot the next learned shape replaces */
    unsigned nshapes;    /* slots in use */
#endif
    char reason[REASON_MAX];
    char errstr[256];
};

/* Where a parser reports failure. reason is static text or points into rbuf. untimed is set
 * by formats without timestamps so that the reader can give them synthetic time. */
typedef struct parse_out {
    const char *reason;
    char *rbuf;
    size_t rlen;
    int untimed;
} parse_out_t;

/* ---------------------------------------------------------------------------------------- */
/* Character helpers */

/* Hex digit values; X (0xFF) marks a non-hex byte, so that OR-ing the values of several
 * digits and testing for > 15 validates them all with one branch. */
#define X 0xFF
static const uint8_t hexv[256] = {
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, X, X, X, X, X, X,
    X, 10, 11, 12, 13, 14, 15, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, 10, 11, 12, 13, 14, 15, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
};
#undef X

static inline unsigned hexval(char c)
{
    return hexv[(uint8_t)c];
}

/* Eight bytes at a time (SWAR). Candump's fixed-width fields (six fraction digits, IDs of up
 * to eight hex digits) are decoded from one 64-bit load instead of a loop with a branch per
 * byte, which is most of the cost of a line. Little-endian gcc/clang only; elsewhere the
 * scalar loops, which handle every case anyway, do all the work. */
#ifdef READER_SWAR
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t load8(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* The high bit of each byte is set iff that byte is a hex digit (exact for every byte: no
 * carries cross byte boundaries because bytes >= 0x80 are masked off first). */
static inline uint64_t swar_hex_mask(uint64_t w)
{
    uint64_t x = w & ~HIGHS;
    uint64_t digit = (x + 0x50 * ONES) & ~(x + 0x46 * ONES);  /* '0'..'9' */
    uint64_t y = x | 0x20 * ONES;                             /* fold case */
    uint64_t alpha = (y + 0x1F * ONES) & ~(y + 0x19 * ONES);  /* 'a'..'f' */
    return (digit | alpha) & ~w & HIGHS;
}

/* The value of the first nd (1..8) hex digits of w, first digit most significant. */
static inline uint32_t swar_hex_value(uint64_t w, size_t nd)
{
    uint64_t v = (w & 0x0F * ONES) + ((w >> 6) & ONES) * 9; /* a nibble per byte */
    v = __builtin_bswap64(v) >> ((8 - nd) * 8);            /* last digit in byte 0 */
    v = (v | v >> 4) & 0x00FF00FF00FF00FFULL;
    v = (v | v >> 8) & 0x0000FFFF0000FFFFULL;
    v = (v | v >> 16) & 0xFFFFFFFFULL;
    return (uint32_t)v;
}

/* Parses ".DDDDDD)" at q (candump's "%06ld" fraction) into microseconds; 0 when q holds
 * something else. Needs 8 readable bytes. */
static inline int swar_fraction6(const char *q, int64_t *frac)
{
    uint64_t w = load8(q);
    const uint64_t dmask = 0x00F0F0F0F0F0F000ULL, dwant = 0x0030303030303000ULL;
    if ((w & 0xFF) != '.' || (w >> 56) != ')' || (w & dmask) != dwant ||
        ((w + 0x06 * ONES) & dmask) != dwant)
        return 0;
    /* Six digits as the low six of eight (two leading zeros), then the usual pairwise
     * multiply-and-add reduction of eight ASCII digits. */
    uint64_t v = (w & 0x000F0F0F0F0F0F00ULL) << 8;
    v = v * 10 + (v >> 8);
    v = ((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32)) +
         ((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32))) >> 32;
    *frac = (int64_t)v;
    return 1;
}

/* Parses k (1..8) decimal digits at p; 0 when one of them is not a digit. Needs 8 readable
 * bytes at p. */
static inline int swar_digits(const char *p, unsigned k, uint64_t *out)
{
    uint64_t w = load8(p), m = k >= 8 ? ~0ULL : (1ULL << (8 * k)) - 1;
    if (((w & 0xF0 * ONES) & m) != (0x30 * ONES & m) ||
        (((w + 0x06 * ONES) & 0xF0 * ONES) & m) != (0x30 * ONES & m))
        return 0;
    uint64_t v = (w & 0x0F * ONES & m) << (8 * (8 - k)); /* leading zeros in the low bytes */
    v = v * 10 + (v >> 8);
    v = ((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32)) +
         ((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32))) >> 32;
    *out = v;
    return 1;
}
#endif

static inline int is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

#ifdef READER_SWAR
/* The high bit of each byte is set iff that byte is ' ' or '\t'. */
static inline uint64_t swar_ws_mask(uint64_t w)
{
    uint64_t sp = w ^ (0x20 * ONES), tab = w ^ (0x09 * ONES);
    uint64_t zs = ~(((sp & ~HIGHS) + ~HIGHS) | sp);
    uint64_t zt = ~(((tab & ~HIGHS) + ~HIGHS) | tab);
    return (zs | zt) & HIGHS;
}
#endif

static inline const char *skip_ws(const char *p, const char *e)
{
#ifdef READER_SWAR
    while (e - p >= 8) {
        uint64_t non = ~swar_ws_mask(load8(p)) & HIGHS;
        if (non)
            return p + (__builtin_ctzll(non) >> 3);
        p += 8;
    }
#endif
    while (p < e && is_ws(*p))
        p++;
    return p;
}

static inline const char *skip_token(const char *p, const char *e)
{
#ifdef READER_SWAR
    while (e - p >= 8) {
        uint64_t ws = swar_ws_mask(load8(p));
        if (ws)
            return p + (__builtin_ctzll(ws) >> 3);
        p += 8;
    }
#endif
    while (p < e && !is_ws(*p))
        p++;
    return p;
}

/* Valid CAN FD payload lengths and their DLC: the ISO 11898-1 table. */
static int fd_len_to_dlc(size_t len)
{
    static const int8_t dlc[65] = {
        0,  1,  2,  3,  4,  5,  6,  7,  8,  -1, -1, -1, 9,  -1, -1, -1, 10,
        -1, -1, -1, 11, -1, -1, -1, 12, -1, -1, -1, -1, -1, -1, -1, 13, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 14, -1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 15,
    };
    return len <= 64 ? dlc[len] : -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Failure reasons */

static int fail(parse_out_t *o, const char *reason)
{
    o->reason = reason;
    return -1;
}

/* Fails with "<what> '<token>'", the token shortened and made printable so that a reason
 * stays one short line whatever the input holds. */
static int fail_tok(parse_out_t *o, const char *what, const char *tok, size_t n)
{
    char t[40];
    size_t k = 0, max = sizeof t - 4;
    for (; k < n && k < max; k++) {
        unsigned char c = (unsigned char)tok[k];
        t[k] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    if (n > max) {
        memcpy(t + k, "...", 3);
        k += 3;
    }
    t[k] = '\0';
    snprintf(o->rbuf, o->rlen, "%s '%s'", what, t);
    o->reason = o->rbuf;
    return -1;
}

/* The length of the token starting at p (up to whitespace), for failure reasons. */
static size_t token_len(const char *p, const char *e)
{
    const char *q = p;
    while (q < e && !is_ws(*q))
        q++;
    return (size_t)(q - p);
}

/* ---------------------------------------------------------------------------------------- */
/* Timestamps */


static int days_in_month(int y, int m)
{
    static const int8_t dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

/* Reads exactly n decimal digits. */
static const char *digits_n(const char *p, const char *e, int n, int *v)
{
    if (e - p < n)
        return NULL;
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return NULL;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return p + n;
}

/* Reads '.' and fraction digits, if present: the first six as microseconds (shorter ones
 * padded, longer ones truncated). A '.' without digits is an error. */
static const char *fraction_us(const char *p, const char *e, int64_t *us)
{
    int64_t f = 0;
    int nf = 0;
    *us = 0;
    if (p >= e || *p != '.')
        return p;
    p++;
    const char *start = p;
    for (; p < e && is_digit(*p); p++)
        if (nf < 6) {
            f = f * 10 + (*p - '0');
            nf++;
        }
    if (p == start)
        return NULL;
    for (; nf < 6; nf++)
        f *= 10;
    *us = f;
    return p;
}

/* Parses "YYYY-MM-DD?HH:MM:SS[.frac]" where ? is 'T', 't' or ' ', then, when zone is set,
 * 'Z' or a +hh:mm / -hh:mm offset (RFC 3339). Without zone the time is taken as UTC.
 * Returns the end, or NULL for a malformed or impossible date or one before 1970. */
static const char *parse_datetime(const char *p, const char *e, int zone, int64_t *out)
{
    int y, mo, d, h, mi, s;
    int64_t frac;
    if (!(p = digits_n(p, e, 4, &y)) || p >= e || *p++ != '-' || !(p = digits_n(p, e, 2, &mo)) ||
        p >= e || *p++ != '-' || !(p = digits_n(p, e, 2, &d)) || p >= e ||
        (*p != 'T' && *p != 't' && *p != ' ') || !(p = digits_n(p + 1, e, 2, &h)) || p >= e ||
        *p++ != ':' || !(p = digits_n(p, e, 2, &mi)) || p >= e || *p++ != ':' ||
        !(p = digits_n(p, e, 2, &s)) || !(p = fraction_us(p, e, &frac)))
        return NULL;
    /* Second 60 is a leap second, which RFC 3339 allows; it counts as the next second. */
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60)
        return NULL;
    int64_t off = 0;
    if (zone) {
        if (p < e && (*p == 'Z' || *p == 'z')) {
            p++;
        } else if (p < e && (*p == '+' || *p == '-')) {
            int sign = *p == '-' ? -1 : 1, oh, om;
            if (!(p = digits_n(p + 1, e, 2, &oh)) || p >= e || *p++ != ':' ||
                !(p = digits_n(p, e, 2, &om)) || oh > 23 || om > 59)
                return NULL;
            off = sign * (oh * 3600 + om * 60);
        } else {
            return NULL;
        }
    }
    int64_t secs = vsoc_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off;
    /* Event time is never before the epoch, as the numeric forms cannot be either. */
    if (secs < 0)
        return NULL;
    *out = secs * 1000000 + frac;
    return p;
}

/* Parses "(seconds[.frac])" or "(YYYY-MM-DD HH:MM:SS[.frac])" at p; returns the byte after
 * ')' or NULL. Digit by digit, so the value is exact to the microsecond. */
static const char *parse_paren_ts(const char *p, const char *e, int64_t *us)
{
    if (p == e || *p != '(')
        return NULL;
    const char *q = ++p, *lim = e - p > MAX_SECONDS_DIGITS ? p + MAX_SECONDS_DIGITS : e;
    int64_t sec = 0, frac;
    for (; q < lim && is_digit(*q); q++)
        sec = sec * 10 + (*q - '0');
    size_t nd = (size_t)(q - p);
    if (nd == 0 || (q < e && is_digit(*q)))
        return NULL;
#ifdef READER_SWAR
    if (e - q >= 8 && swar_fraction6(q, &frac)) {
        *us = sec * 1000000 + frac;
        return q + 8;
    }
#endif
    if (nd == 4 && q < e && *q == '-') {
        /* candump -tA: a local date and time; taken as UTC since the zone is not written. */
        if (!(q = parse_datetime(p, e, 0, us)))
            return NULL;
    } else {
        if (!(q = fraction_us(q, e, &frac)))
            return NULL;
        *us = sec * 1000000 + frac;
    }
    if (q >= e || *q != ')')
        return NULL;
    return q + 1;
}

/* ---------------------------------------------------------------------------------------- */
/* CAN frames */

/* Parses the hex CAN identifier at p, up to the first byte that is not a hex digit, and
 * returns that position, or NULL when there are no digits or more than 8. The caller checks
 * what follows. More than 3 digits or a value above 0x7FF is a 29-bit ID; values above
 * 0x1FFFFFFF (error frames, flag bits) are rejected. */
static const char *scan_id(const char *p, const char *e, vsoc_can_frame_t *f)
{
    const char *s = p;
    uint32_t id = 0;
#ifdef READER_SWAR
    if (e - p >= 8) {
        uint64_t w = load8(p), non = ~swar_hex_mask(w) & HIGHS;
        size_t nd = non ? (size_t)__builtin_ctzll(non) >> 3 : 8;
        if (nd == 0 || (nd == 8 && e - p > 8 && hexval(p[8]) <= 15))
            return NULL;
        id = swar_hex_value(w, nd);
        if (id > 0x1FFFFFFFu)
            return NULL;
        f->id = id;
        f->ext = nd > 3 || id > 0x7FFu;
        return p + nd;
    }
#endif
    const char *lim = e - p > 9 ? p + 9 : e;
    unsigned v;
    while (p < lim && (v = hexval(*p)) <= 15) {
        id = (id << 4) | v;
        p++;
    }
    size_t nd = (size_t)(p - s);
    if (nd == 0 || nd > 8 || id > 0x1FFFFFFFu)
        return NULL;
    f->id = id;
    f->ext = nd > 3 || id > 0x7FFu;
    return p;
}

/* The end of a compact token: the end of the line or whitespace. */
static inline int at_token_end(const char *p, const char *e)
{
    return p == e || is_ws(*p);
}

/* Parses the data of a compact frame at p: hex byte pairs, optionally separated by '.', up
 * to whitespace, the end or '_' (a DLC suffix), at most max bytes. Returns the stop position
 * or NULL. */
static const char *parse_hex_data(const char *p, const char *e, vsoc_can_frame_t *f, size_t max,
                                  parse_out_t *o)
{
    size_t len = 0;
    for (;;) {
        while (e - p >= 2) {
            unsigned a = hexval(p[0]), b = hexval(p[1]);
            if ((a | b) > 15)
                break;
            if (len == max) {
                fail(o, max == 8 ? "data longer than 8 bytes for classic CAN"
                                 : "data longer than 64 bytes for CAN FD");
                return NULL;
            }
            f->data[len++] = (uint8_t)((a << 4) | b);
            p += 2;
        }
        if (at_token_end(p, e) || *p == '_')
            break;
        if (*p == '.') {
            p++;
            continue;
        }
        if (hexval(*p) <= 15 && (p + 1 == e || is_ws(p[1]) || p[1] == '.' || p[1] == '_'))
            fail(o, "odd number of hex digits in data");
        else
            fail_tok(o, "bad hex digit in data", p, e - p >= 2 ? 2 : 1);
        return NULL;
    }
    f->len = (uint8_t)len;
    return p;
}

/* Parses a compact frame at p: ID#DATA[_D], ID#R[len][_D], ID##<flags>DATA; with bare_ok
 * also a lone ID, a frame without data (how the labelled captures write them). Returns the
 * end of the token or NULL. One pass over the bytes: this is the candump -l hot path. */
static const char *parse_compact(const char *p, const char *e, vsoc_can_frame_t *f, int bare_ok,
                                 parse_out_t *o)
{
    const char *tok = p;
    const char *q = scan_id(p, e, f);
    if (!q || q == e || *q != '#') {
        size_t n = token_len(tok, e);
        const char *hash = memchr(tok, '#', n);
        if (hash) {
            fail_tok(o, "bad CAN ID", tok, (size_t)(hash - tok));
            return NULL;
        }
        if (q && bare_ok && at_token_end(q, e))
            return q;
        if (!q && n > 0) {
            fail_tok(o, "bad CAN ID", tok, n);
            return NULL;
        }
        fail(o, "missing '#'");
        return NULL;
    }
    p = q + 1;

    if (p < e && *p == '#') {
        /* CAN FD: one hex nibble of flags (BRS=1, ESI=2), then the data. */
        p++;
        if (at_token_end(p, e)) {
            fail(o, "missing CAN FD flags");
            return NULL;
        }
        unsigned fl = hexval(*p);
        if (fl > 15) {
            fail_tok(o, "bad CAN FD flags", p, 1);
            return NULL;
        }
        f->fd = 1;
        f->fd_flags = (uint8_t)fl;
        if (!(p = parse_hex_data(p + 1, e, f, VSOC_CAN_MAX_LEN, o)))
            return NULL;
        if (!at_token_end(p, e)) {
            fail(o, "DLC suffix is only for classic CAN");
            return NULL;
        }
        int dlc = fd_len_to_dlc(f->len);
        if (dlc < 0) {
            fail(o, "CAN FD data length is not one of 0-8,12,16,20,24,32,48,64");
            return NULL;
        }
        f->dlc = (uint8_t)dlc;
        return p;
    }

    if (p < e && (*p == 'R' || *p == 'r')) {
        /* Remote request: no payload on the wire, an optional requested length. */
        f->rtr = 1;
        p++;
        if (!at_token_end(p, e) && *p != '_') {
            if (!is_digit(*p) || *p > '8' || !(at_token_end(p + 1, e) || p[1] == '_')) {
                fail_tok(o, "bad RTR length", p, token_len(p, e));
                return NULL;
            }
            f->dlc = (uint8_t)(*p++ - '0');
        }
    } else {
        if (!(p = parse_hex_data(p, e, f, 8, o)))
            return NULL;
        f->dlc = f->len;
    }
    if (!at_token_end(p, e)) {
        /* "_D": the raw DLC 9..F of a classic frame that carries 8 bytes. */
        if (f->dlc != 8) {
            fail(o, "DLC suffix needs 8 data bytes");
            return NULL;
        }
        unsigned v = e - p >= 2 ? hexval(p[1]) : 0xFF;
        if (v < 9 || v > 15 || !at_token_end(p + 2, e)) {
            fail_tok(o, "bad DLC suffix", p, token_len(p, e));
            return NULL;
        }
        f->dlc = (uint8_t)v;
        p += 2;
    }
    return p;
}

/* After a compact frame: whitespace, at most one direction token "T" or "R" (newer candump
 * -l writes it), whitespace. */
static int parse_compact_tail(const char *p, const char *e, parse_out_t *o)
{
    p = skip_ws(p, e);
    if (p == e)
        return 0;
    if ((*p == 'T' || *p == 'R') && (p + 1 == e || is_ws(p[1])))
        p = skip_ws(p + 1, e);
    if (p == e)
        return 0;
    return fail_tok(o, "unexpected text after frame", p, token_len(p, e));
}

/* (1436509052.249713) can0 123#DEADBEEF */
static int parse_log(const char *p, const char *e, vsoc_event_t *ev, parse_out_t *o)
{
    p = skip_ws(p, e);
    if (p == e || *p != '(')
        return fail(o, "missing '(timestamp)'");
    const char *q = parse_paren_ts(p, e, &ev->ts_us);
    if (!q)
        return fail_tok(o, "bad timestamp", p, token_len(p, e));
    if (q < e && !is_ws(*q))
        return fail(o, "missing space after timestamp");
    p = skip_ws(q, e);
    q = skip_token(p, e);
    ev->bus.p = p;
    ev->bus.n = (size_t)(q - p);
    p = skip_ws(q, e);
    if (p == e)
        return fail(o, ev->bus.n == 0 ? "missing interface" : "missing CAN frame");
    ev->kind = VSOC_EVENT_CAN;
    if (!(q = parse_compact(p, e, &ev->can, 0, o)))
        return -1;
    return parse_compact_tail(q, e, o);
}

/* 0 080#0017dc09161116bb: a ground-truth label, then a compact frame; no time. */
static int parse_labelled(const char *p, const char *e, vsoc_event_t *ev, parse_out_t *o)
{
    p = skip_ws(p, e);
    const char *tok = p;
    int neg = 0;
    int64_t label = 0;
    if (p < e && *p == '-') {
        neg = 1;
        p++;
    }
    const char *digits = p;
    for (; p < e && is_digit(*p); p++) {
        label = label * 10 + (*p - '0');
        if (label > INT32_MAX)
            return fail_tok(o, "bad label", tok, token_len(tok, e));
    }
    if (p == digits || (p < e && !is_ws(*p)))
        return fail_tok(o, "bad label", tok, token_len(tok, e));
    ev->label = (int32_t)(neg ? -label : label);
    p = skip_ws(p, e);
    if (p == e)
        return fail(o, "missing CAN frame");
    ev->kind = VSOC_EVENT_CAN;
    o->untimed = 1;
    const char *q = parse_compact(p, e, &ev->can, 1, o);
    if (!q)
        return -1;
    return parse_compact_tail(q, e, o);
}

/* One-character flag token of candump -x: "-", "B" (bit rate switch), "E" (error state). */
static int spaced_flag(const char *p, const char *q, uint8_t *flags)
{
    if (q - p != 1)
        return -1;
    if (*p == 'B')
        *flags |= 1;
    else if (*p == 'E')
        *flags |= 2;
    else if (*p != '-')
        return -1;
    return 0;
}

/* The usual layout of candump's data column, "8A A0 28": n >= 1 bytes at a stride of
 * three, validated with one branch for the whole column (a branch per byte costs more than
 * all the rest of the line). Returns 0 when the layout differs; the general loop decides. */
static int spaced_bytes_fast(const char *q, size_t n, vsoc_can_frame_t *f)
{
    const uint8_t *b = (const uint8_t *)q;
    unsigned bad = 0, a, c;
    size_t i;
#pragma GCC unroll 8
    for (i = 0; i + 1 < n; i++, b += 3) {
        a = hexv[b[0]];
        c = hexv[b[1]];
        /* A separator other than ' ' sets a bit above 15, as a bad digit does. */
        bad |= a | c | ((unsigned)(b[2] ^ ' ') << 4);
        f->data[i] = (uint8_t)((a << 4) | c);
    }
    a = hexv[b[0]];
    c = hexv[b[1]];
    bad |= a | c;
    f->data[i] = (uint8_t)((a << 4) | c);
    return bad <= 15;
}

/*  (000.005001)  can0  18FEDF00   [8]  8A A0 28 7D 7D FF FF F5
 * Time is optional; "[n]" classic, "[nn]" CAN FD, "{X}" a classic raw DLC; "remote
 * request" instead of data for RTR; candump -x "RX B -" tokens and the -a ASCII column are
 * accepted. */
static int parse_spaced(const char *p, const char *e, vsoc_event_t *ev, parse_out_t *o)
{
    vsoc_can_frame_t *f = &ev->can;
    const char *q;

    p = skip_ws(p, e);
    if (p < e && *p == '(') {
        if (!(q = parse_paren_ts(p, e, &ev->ts_us)))
            return fail_tok(o, "bad timestamp", p, token_len(p, e));
        if (q < e && !is_ws(*q))
            return fail(o, "missing space after timestamp");
        p = skip_ws(q, e);
    } else {
        o->untimed = 1;
    }
    q = skip_token(p, e);
    if (p == q)
        return fail(o, "missing interface");
    ev->bus.p = p;
    ev->bus.n = (size_t)(q - p);
    p = skip_ws(q, e);
    if (e - p >= 2 && (p[0] == 'R' || p[0] == 'T') && p[1] == 'X' && at_token_end(p + 2, e)) {
        /* candump -x: direction, then two flag tokens; an ID never starts with R or T. */
        uint8_t flags = 0;
        q = p + 2;
        for (int i = 0; i < 2; i++) {
            p = skip_ws(q, e);
            q = skip_token(p, e);
            if (spaced_flag(p, q, &flags) != 0)
                return fail_tok(o, "bad candump -x flag", p, (size_t)(q - p));
        }
        f->fd_flags = flags;
        p = skip_ws(q, e);
    }
    if (p == e)
        return fail(o, "missing CAN ID");
    q = scan_id(p, e, f);
    if (!q || !at_token_end(q, e))
        return fail_tok(o, "bad CAN ID", p, token_len(p, e));
    ev->kind = VSOC_EVENT_CAN;
    p = skip_ws(q, e);

    /* The length: [n], [nn] or {X}. */
    size_t n;
    if (e - p >= 3 && p[0] == '[' && is_digit(p[1]) && p[2] == ']') {
        n = (size_t)(p[1] - '0');
        if (n > 8)
            return fail(o, "length over 8 for classic CAN");
        f->dlc = (uint8_t)n;
        p += 3;
    } else if (e - p >= 4 && p[0] == '[' && is_digit(p[1]) && is_digit(p[2]) && p[3] == ']') {
        n = (size_t)((p[1] - '0') * 10 + (p[2] - '0'));
        int dlc = fd_len_to_dlc(n);
        if (dlc < 0)
            return fail_tok(o, "bad CAN FD length", p, 4);
        f->fd = 1;
        f->dlc = (uint8_t)dlc;
        p += 4;
    } else if (e - p >= 3 && p[0] == '{' && hexval(p[1]) <= 15 && p[2] == '}') {
        f->dlc = (uint8_t)hexval(p[1]);
        n = f->dlc > 8 ? 8 : f->dlc;
        p += 3;
    } else {
        return p < e ? fail_tok(o, "bad length", p, token_len(p, e))
                     : fail(o, "missing '[length]'");
    }
    if (!f->fd)
        f->fd_flags = 0;

    q = skip_ws(p, e);
    if (e - q >= 14 && memcmp(q, "remote request", 14) == 0) {
        if (f->fd)
            return fail(o, "CAN FD has no remote request");
        f->rtr = 1;
        p = q + 14;
    } else if (n > 0 && q > p && (size_t)(e - q) >= 3 * n - 1 && spaced_bytes_fast(q, n, f) &&
               at_token_end(q + 3 * n - 1, e)) {
        p = q + 3 * n - 1;
        f->len = (uint8_t)n;
    } else {
        for (size_t i = 0; i < n; i++) {
            if (p == e)
                return fail(o, "fewer data bytes than the length");
            if (!is_ws(*p))
                return fail_tok(o, "bad data byte", p, token_len(p, e));
            p = skip_ws(p, e);
            if (p == e)
                return fail(o, "fewer data bytes than the length");
            unsigned a = hexval(p[0]);
            unsigned b = e - p >= 2 ? hexval(p[1]) : 0xFF;
            if ((a | b) > 15 || !at_token_end(p + 2, e))
                return fail_tok(o, "bad data byte", p, token_len(p, e));
            f->data[i] = (uint8_t)((a << 4) | b);
            p += 2;
        }
        f->len = (uint8_t)n;
    }
    if (p < e && !is_ws(*p))
        return fail_tok(o, "unexpected text after data", p, token_len(p, e));
    p = skip_ws(p, e);
    if (p == e || *p == '\'')
        return 0; /* the end, or candump -a's quoted ASCII column */
    size_t t = token_len(p, e);
    if (t == 2 && (hexval(p[0]) | hexval(p[1])) <= 15)
        return fail(o, "more data bytes than the length");
    return fail_tok(o, "unexpected text after data", p, t);
}

/* ---------------------------------------------------------------------------------------- */
/* JSON Lines */

/* Event time of a JSON "ts": seconds since the epoch as a number, or an RFC 3339 string. */
static int json_ts(json_t *v, int64_t *us)
{
    if (json_is_integer(v)) {
        json_int_t s = json_integer_value(v);
        if (s < 0 || s > 9000000000000LL)
            return -1;
        *us = (int64_t)s * 1000000;
        return 0;
    }
    if (json_is_real(v)) {
        double s = json_real_value(v);
        /* The comparison is false for NaN, so NaN is rejected too. */
        if (!(s >= 0 && s <= 9e12))
            return -1;
        double x = s * 1e6 + 0.5;
        *us = (int64_t)x;
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        const char *e = s + json_string_length(v);
        const char *q = parse_datetime(s, e, 1, us);
        return q && q == e ? 0 : -1;
    }
    return -1;
}

/* A required non-empty string member. */
static int json_req_str(json_t *doc, const char *key, vsoc_str_t *out, parse_out_t *o)
{
    json_t *v = json_object_get(doc, key);
    if (!v) {
        snprintf(o->rbuf, o->rlen, "JSON: missing \"%s\"", key);
        o->reason = o->rbuf;
        return -1;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(o->rbuf, o->rlen, "JSON: \"%s\" must be a non-empty string", key);
        o->reason = o->rbuf;
        return -1;
    }
    out->p = json_string_value(v);
    out->n = json_string_length(v);
    return 0;
}

/* {"vin":"...","ts":...,"type":"...", ...}. On success the document is in ev->doc. */
static int parse_jsonl(const char *p, const char *e, vsoc_event_t *ev, parse_out_t *o)
{
    json_error_t jerr;
    /* Duplicate keys are rejected: two "vin" members would let a producer show one vehicle
     * to one consumer and another to the next. */
    json_t *doc = json_loadb(p, (size_t)(e - p), JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        snprintf(o->rbuf, o->rlen, "JSON: %s", jerr.text);
        o->reason = o->rbuf;
        return -1;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        return fail(o, "JSON: not an object");
    }
    json_t *ts = json_object_get(doc, "ts");
    if (json_req_str(doc, "vin", &ev->vin, o) != 0)
        goto fail;
    if (!ts) {
        fail(o, "JSON: missing \"ts\"");
        goto fail;
    }
    if (json_ts(ts, &ev->ts_us) != 0) {
        fail(o, "JSON: \"ts\" must be epoch seconds or an RFC 3339 time");
        goto fail;
    }
    if (json_req_str(doc, "type", &ev->ids_type, o) != 0)
        goto fail;
    ev->kind = VSOC_EVENT_IDS;
    ev->doc = doc;
    return 0;
fail:
    json_decref(doc);
    ev->vin.p = NULL;
    ev->vin.n = 0;
    return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Format dispatch */

static int parse_fmt(vsoc_format_t fmt, const char *p, const char *e, vsoc_event_t *ev,
                     parse_out_t *o)
{
    switch (fmt) {
    case VSOC_FMT_CANDUMP_LOG: return parse_log(p, e, ev, o);
    case VSOC_FMT_CANDUMP_SPACED: return parse_spaced(p, e, ev, o);
    case VSOC_FMT_LABELLED: return parse_labelled(p, e, ev, o);
    case VSOC_FMT_JSONL: return parse_jsonl(p, e, ev, o);
    case VSOC_FMT_UNKNOWN: break;
    }
    return fail(o, "unknown format");
}

/* The format a line looks like from its shape, so that a line that fits no format is
 * reported with the reason of the format it was meant to be in. */
static vsoc_format_t guess_format(const char *p, const char *e)
{
    p = skip_ws(p, e);
    if (p == e)
        return VSOC_FMT_CANDUMP_SPACED;
    if (*p == '{')
        return VSOC_FMT_JSONL;
    if (*p == '(') {
        /* A compact frame has '#' in the token after the interface. */
        const char *q = memchr(p, ')', (size_t)(e - p));
        if (!q)
            return VSOC_FMT_CANDUMP_LOG;
        q = skip_ws(skip_token(skip_ws(q + 1, e), e), e);
        return memchr(q, '#', token_len(q, e)) ? VSOC_FMT_CANDUMP_LOG
                                                  : VSOC_FMT_CANDUMP_SPACED;
    }
    const char *q = skip_token(p, e);
    const char *r = skip_ws(q, e);
    if (memchr(r, '#', token_len(r, e))) {
        const char *d = p + (*p == '-');
        while (d < q && is_digit(*d))
            d++;
        return d == q ? VSOC_FMT_LABELLED : VSOC_FMT_CANDUMP_LOG;
    }
    return VSOC_FMT_CANDUMP_SPACED;
}

/* Parses [p, e) in fmt; with VSOC_FMT_UNKNOWN the format the line looks like first, then
 * the others, and the first one that parses is stored in *detected. On failure the reason is
 * that of the format the line looks like. ev is cleared between attempts. */
static int parse_any(vsoc_format_t fmt, const char *p, const char *e, vsoc_event_t *ev,
                     vsoc_format_t *detected, parse_out_t *o)
{
    if (fmt != VSOC_FMT_UNKNOWN) {
        int rc = parse_fmt(fmt, p, e, ev, o);
        if (rc == 0 && detected)
            *detected = fmt;
        return rc;
    }
    vsoc_format_t g = guess_format(p, e);
    if (parse_fmt(g, p, e, ev, o) == 0) {
        if (detected)
            *detected = g;
        return 0;
    }
    /* Keep the guessed format's reason; the other attempts write into a scratch buffer. */
    char scratch[REASON_MAX];
    parse_out_t o2 = {NULL, scratch, sizeof scratch, 0};
    static const vsoc_format_t all[] = {VSOC_FMT_CANDUMP_LOG, VSOC_FMT_CANDUMP_SPACED,
                                        VSOC_FMT_LABELLED, VSOC_FMT_JSONL};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (all[i] == g)
            continue;
        vsoc_str_t line = ev->line;
        vsoc_event_clear(ev);
        ev->line = line;
        o2.untimed = 0;
        if (parse_fmt(all[i], p, e, ev, &o2) == 0) {
            o->untimed = o2.untimed;
            if (detected)
                *detected = all[i];
            return 0;
        }
    }
    vsoc_str_t line = ev->line;
    vsoc_event_clear(ev);
    ev->line = line;
    return -1;
}

const char *vsoc_format_name(vsoc_format_t fmt)
{
    switch (fmt) {
    case VSOC_FMT_CANDUMP_LOG: return "candump-log";
    case VSOC_FMT_CANDUMP_SPACED: return "candump-spaced";
    case VSOC_FMT_LABELLED: return "labelled";
    case VSOC_FMT_JSONL: return "jsonl";
    case VSOC_FMT_UNKNOWN: break;
    }
    return "unknown";
}

int vsoc_parse_line(vsoc_format_t fmt, const char *line, size_t n, vsoc_event_t *ev,
                    vsoc_format_t *detected, const char **reason)
{
    /* Reasons that quote the input are built here: one buffer per thread keeps the
     * function thread-safe; the text is valid until this thread's next call. */
    static _Thread_local char rbuf[REASON_MAX];
    parse_out_t o = {NULL, rbuf, sizeof rbuf, 0};
    const char *e = line + n;

    if (detected)
        *detected = VSOC_FMT_UNKNOWN;
    /* Accept what a line reader would hand over untrimmed: a CR before the newline. */
    while (e > line && e[-1] == '\r')
        e--;
    ev->line.p = line;
    ev->line.n = (size_t)(e - line);
    if (parse_any(fmt, line, e, ev, detected, &o) != 0) {
        if (reason)
            *reason = o.reason;
        return VSOC_EPARSE;
    }
    return 0;
}

/* vsoc_event_clear() for the hot path. Its memset of the whole event compiles to rep stos,
 * whose start-up cost alone is a sizeable part of parsing a line; member stores become a
 * few vector stores. The assertion catches a new member that this list would miss. */
_Static_assert(sizeof(void *) != 8 || sizeof(vsoc_event_t) == 288,
               "reset_event must clear every vsoc_event_t member");
static inline void reset_event(vsoc_event_t *ev)
{
    static const vsoc_str_t none = {NULL, 0};
    ev->kind = (vsoc_event_kind_t)0;
    ev->derived = 0;
    ev->ts_us = 0;
    ev->vin = none;
    ev->bus = none;
    ev->source = none;
    ev->line = none;
    ev->lineno = 0;
    ev->label = -1;
    ev->pad0 = 0;
    ev->can = (vsoc_can_frame_t){0};
    ev->j1939 = (vsoc_j1939_t){0};
    ev->uds = (vsoc_uds_t){0};
    ev->doc = NULL;
    ev->ids_type = none;
    ev->speed_kph = 0;
    ev->state_age_us = 0;
    ev->baseline_score = 0;
    ev->baseline_reasons = 0;
    ev->obs_byte = -1;
    ev->obs_period_ms = -1;
    ev->exp_p1_ms = ev->exp_p50_ms = ev->exp_p99_ms = 0;
    ev->obs_value = ev->exp_min = ev->exp_max = ev->pad1 = 0;
    ev->pad2 = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Line shapes
 *
 * Parsing a line token by token is a chain of dependent steps: where a token starts depends
 * on where the previous one ended. Captures, though, repeat a few layouts: every line of a
 * candump -ta file of 29-bit IDs puts the same tokens at the same columns. The reader keeps
 * the last few layouts ("shapes"), learned from lines the full parser accepted: the line
 * length, where the spaces are and where each token starts. A line of the same length with
 * spaces at the same places, whose every token then validates in place, is parsed without
 * scanning. Tokens are validated strictly (digits, hex digits, the exact length token), so
 * none of them can hide a space or tab that would have split it for the full parser; the
 * interface name, which the full parser does not validate, is checked for whitespace. A
 * line that fails any test goes through the full parser. Both paths give the same event for
 * every line; the candump fuzz target checks that. */
#ifdef READER_SWAR
/* 0xFF at each byte of w that is a space. */
static inline uint64_t swar_space_bytes(uint64_t w)
{
    uint64_t x = w ^ (0x20 * ONES);
    uint64_t zero = ~(((x & ~HIGHS) + ~HIGHS) | x) & HIGHS;
    return (zero >> 7) * 0xFF;
}

/* HIGHS limited to the first k (0..8) bytes. */
static inline uint64_t first_bytes(uint64_t m, unsigned k)
{
    return k >= 8 ? m : m & ((1ULL << (8 * k)) - 1);
}

/* Decodes n spaced data bytes "HH HH ..." at q whose separators are known to be spaces.
 * Table lookups, with one test for the whole column: fewer instructions than SWAR here,
 * because the stride of three bytes does not fit a word. The common 8 bytes are unrolled. */
static inline int shape_spaced_bytes(const char *q, size_t n, uint8_t *out)
{
    const uint8_t *b = (const uint8_t *)q;
    unsigned bad = 0;
#define BYTE_AT(i)                                                                         \
    do {                                                                                   \
        unsigned hi_ = hexv[b[3 * (i)]], lo_ = hexv[b[3 * (i) + 1]];                       \
        bad |= hi_ | lo_;                                                                  \
        out[i] = (uint8_t)((hi_ << 4) | lo_);                                              \
    } while (0)
    if (n == 8) {
        BYTE_AT(0);
        BYTE_AT(1);
        BYTE_AT(2);
        BYTE_AT(3);
        BYTE_AT(4);
        BYTE_AT(5);
        BYTE_AT(6);
        BYTE_AT(7);
    } else {
        for (size_t i = 0; i < n; i++)
            BYTE_AT(i);
    }
#undef BYTE_AT
    return bad <= 15;
}

/* Decodes 2n contiguous hex digits at q into n bytes, four bytes per 8-byte word; the last
 * word overlaps the previous one. */
static inline int shape_hex_bytes(const char *q, size_t n, uint8_t *out)
{
    uint64_t bad = 0;
    if (n < 4) {
        for (size_t i = 0; i < n; i++, q += 2) {
            unsigned a = hexval(q[0]), b = hexval(q[1]);
            bad |= a | b;
            out[i] = (uint8_t)((a << 4) | b);
        }
        return bad <= 15;
    }
    for (size_t i = 0;; i += 4) {
        if (i + 4 > n)
            i = n - 4;
        uint64_t w = load8(q + 2 * i);
        bad |= swar_hex_mask(w) ^ HIGHS;
        uint64_t v = (w & 0x0F * ONES) + ((w >> 6) & ONES) * 9;
        uint64_t t = ((v << 4) | (v >> 8)) & 0x00FF00FF00FF00FFULL;
        t = (t | t >> 8) & 0x0000FFFF0000FFFFULL;
        t = (t | t >> 16) & 0xFFFFFFFFULL;
        uint32_t four = (uint32_t)t;
        memcpy(out + i, &four, 4);
        if (i + 4 == n)
            break;
    }
    return bad == 0;
}

/* Fills ev from a line of sh's length with the layout of sh. Returns 0, or -1 when the line
 * differs (then ev is partly written and the caller parses the line in full). */
static int shape_parse(const line_shape_t *sh, const char *line, const char *e, vsoc_event_t *ev,
                       parse_out_t *o)
{
    vsoc_can_frame_t *f = &ev->can;
    uint64_t diff = 0;
    uint32_t last = sh->nchunks - 1;

    for (uint32_t i = 0; i < last; i++)
        diff |= (load8(line + 8 * i) ^ (0x20 * ONES)) & sh->sp[i];
    diff |= (load8(e - 8) ^ (0x20 * ONES)) & sh->sp[last];
    /* The interface is the one token no validator below looks at. A newline in it would
     * make this two lines (the reader's fast path has not looked for newlines). */
    uint64_t iface = load8(line + sh->iface_off), nl = iface ^ (0x0A * ONES);
    diff |= first_bytes(swar_ws_mask(iface) | (~(((nl & ~HIGHS) + ~HIGHS) | nl) & HIGHS),
                        sh->iface_len);
    if (diff)
        return -1;
    if (sh->ts_digits) {
        /* candump's "(%010ld.%06ld)" or "(%03ld.%06ld)": the same checks as parse_paren_ts
         * makes, on a token known to have this width. */
        const char *t = line + sh->ts_off + 1;
        unsigned k = sh->ts_digits;
        uint64_t hi = 0, sec;
        int64_t frac;
        for (; k > 8; k--, t++) {
            unsigned d = (unsigned)(*t - '0');
            if (d > 9)
                return -1;
            hi = hi * 10 + d;
        }
        if (line[sh->ts_off] != '(' || !swar_digits(t, k, &sec) ||
            !swar_fraction6(t + k, &frac))
            return -1;
        ev->ts_us = (int64_t)((hi * 100000000u + sec) * 1000000u) + frac;
    } else if (sh->timed) {
        if (parse_paren_ts(line + sh->ts_off, e, &ev->ts_us) != line + sh->ts_end)
            return -1;
    } else if (line[sh->iface_off] == '(' || line[sh->iface_off] == '#') {
        return -1; /* the full parser reads a timestamp or skips a comment */
    }
    ev->bus.p = line + sh->iface_off;
    ev->bus.n = sh->iface_len;

    uint64_t w = load8(line + sh->id_off);
    uint64_t want = first_bytes(HIGHS, sh->id_len);
    if ((swar_hex_mask(w) & want) != want)
        return -1;
    f->id = swar_hex_value(w, sh->id_len);
    if (f->id > 0x1FFFFFFFu)
        return -1;
    f->ext = sh->id_len > 3 || f->id > 0x7FFu;

    if (sh->fmt == VSOC_FMT_CANDUMP_SPACED) {
        uint32_t tok;
        memcpy(&tok, line + sh->len_off, 4);
        if ((tok & sh->len_tok_mask) != sh->len_tok ||
            !shape_spaced_bytes(line + sh->data_off, sh->n, f->data))
            return -1;
    } else {
        if (line[sh->id_off + sh->id_len] != '#' ||
            !shape_hex_bytes(line + sh->data_off, sh->n, f->data))
            return -1;
    }
    f->len = sh->n;
    f->fd = sh->fd;
    f->dlc = sh->dlc;
    ev->kind = VSOC_EVENT_CAN;
    (void)o;
    return 0;
}

/* Learns the shape of a line that the full parser accepted in r->fmt, when it has one of the
 * plain layouts shape_parse handles: no tabs, a timestamp, the frame, nothing after it. */
static void shape_learn(vsoc_reader_t *r, const char *line, const char *e, const vsoc_event_t *ev,
                        int untimed)
{
    size_t n = (size_t)(e - line);
    const vsoc_can_frame_t *f = &ev->can;
    line_shape_t sh;

    if (n < 8 || n > SHAPE_MAX_LEN || f->rtr || f->len == 0 || ev->bus.n == 0 ||
        ev->bus.n > 8 || memchr(line, '\t', n))
        return;
    memset(&sh, 0, sizeof sh);
    sh.fmt = r->fmt;
    sh.len = (uint32_t)n;
    sh.timed = !untimed;
    sh.fd = f->fd;
    sh.dlc = f->dlc;
    sh.n = f->len;
    if (sh.timed) {
        int64_t ts;
        const char *p = skip_ws(line, e), *q = parse_paren_ts(p, e, &ts);
        if (!q)
            return;
        sh.ts_off = (uint16_t)(p - line);
        sh.ts_end = (uint16_t)(q - line);
        size_t k = (size_t)(q - p) - 9;
        if (q - p >= 10 && k <= MAX_SECONDS_DIGITS && q[-8] == '.')
            sh.ts_digits = (uint16_t)k;
    }
    sh.iface_off = (uint16_t)(ev->bus.p - line);
    sh.iface_len = (uint16_t)ev->bus.n;
    if ((size_t)sh.iface_off + 8 > n)
        return;
    const char *p = skip_ws(ev->bus.p + ev->bus.n, e);
    const char *q = skip_token(p, e);
    sh.id_off = (uint16_t)(p - line);
    if ((size_t)sh.id_off + 8 > n)
        return;
    if (sh.fmt == VSOC_FMT_CANDUMP_SPACED) {
        sh.id_len = (uint16_t)(q - p);
        if (sh.id_len > 8 || hexval(*p) > 15 || f->fd_flags) /* candump -x tokens */
            return;
        p = skip_ws(q, e);
        q = skip_token(p, e);
        size_t tn = (size_t)(q - p);
        if (tn > 4 || (size_t)(p - line) + 4 > n)
            return;
        sh.len_off = (uint16_t)(p - line);
        memcpy(&sh.len_tok, p, 4);
        sh.len_tok_mask = tn == 4 ? 0xFFFFFFFFu : (1u << (8 * tn)) - 1;
        sh.len_tok &= sh.len_tok_mask;
        p = skip_ws(q, e);
        sh.data_off = (uint16_t)(p - line);
        sh.data_end = (uint16_t)(sh.data_off + 3 * f->len - 1);
        if (sh.data_end > n || skip_ws(line + sh.data_end, e) != e)
            return;
        for (size_t i = 0; i + 1 < f->len; i++)
            if (p[3 * i + 2] != ' ')
                return;
    } else {
        const char *hash = memchr(p, '#', (size_t)(q - p));
        if (!hash || hash - p > 8 || f->fd || hash + 1 + 2 * f->len != q || skip_ws(q, e) != e)
            return; /* separators, a DLC suffix or a direction token */
        sh.id_len = (uint16_t)(hash - p);
        sh.data_off = (uint16_t)(hash + 1 - line);
        sh.data_end = (uint16_t)(q - line);
    }
    sh.nchunks = (uint32_t)((n + 7) / 8);
    for (uint32_t i = 0; i + 1 < sh.nchunks; i++)
        sh.sp[i] = swar_space_bytes(load8(line + 8 * i));
    sh.sp[sh.nchunks - 1] = swar_space_bytes(load8(e - 8));
    r->shapes[r->next_shape] = sh;
    r->next_shape = (r->next_shape + 1) % SHAPES;
    if (r->nshapes < SHAPES)
        r->nshapes++;
}

/* Parses a line with a known shape. Returns 0 with ev filled, or -1 with ev as it was. */
static int shape_try(vsoc_reader_t *r, const char *line, const char *e, vsoc_event_t *ev,
                     parse_out_t *o)
{
    size_t n = (size_t)(e - line);
    for (int i = 0; i < SHAPES; i++) {
        const line_shape_t *sh = &r->shapes[i];
        if (sh->len != n || sh->fmt != r->fmt)
            continue;
        if (shape_parse(sh, line, e, ev, o) == 0) {
            o->untimed = !sh->timed;
            return 0;
        }
        reset_event(ev);
        ev->line.p = line;
        ev->line.n = n;
    }
    return -1;
}

/* The reader's fast path: parses the next line without looking for its end, when a known
 * shape says where it ends and the byte there is its newline. shape_parse has then checked
 * every byte of the line, so there is no other newline inside it; a CR before the newline
 * fails the shape (CRLF files take the normal path). Returns 1 with ev filled and the line
 * consumed, or 0 with nothing consumed. */
static int shape_next(vsoc_reader_t *r, vsoc_event_t *ev, parse_out_t *o)
{
    const char *line = r->buf + r->pos;
    size_t avail = r->end - r->pos;
    for (unsigned i = 0; i < r->nshapes; i++) {
        const line_shape_t *sh = &r->shapes[i];
        size_t n = sh->len;
        if (n >= avail || line[n] != '\n' || sh->fmt != r->fmt)
            continue;
        reset_event(ev);
        if (shape_parse(sh, line, line + n, ev, o) != 0)
            continue;
        o->untimed = !sh->timed;
        ev->line.p = line;
        ev->line.n = n;
        r->pos += n + 1;
        r->bytes += n + 1;
        r->lines++;
        return 1;
    }
    return 0;
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* The buffered reader */

/* The VIN a capture's frames get by default: its base name without the last extension. */
static char *default_vin(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (!*b)
        b = path;
    const char *dot = strrchr(b, '.');
    size_t n = dot && dot != b ? (size_t)(dot - b) : strlen(b);
    return strndup(b, n);
}

vsoc_reader_t *vsoc_reader_open(const char *path, const vsoc_reader_opts_t *opts, char *err,
                                size_t errlen)
{
    vsoc_reader_t *r = NULL;
    if (!path || !*path) {
        vsoc_seterr(err, errlen, "no input path given");
        return NULL;
    }
    if (opts && opts->frame_gap_us < 0) {
        vsoc_seterr(err, errlen, "%s: frame gap %lld us is negative", path,
                (long long)opts->frame_gap_us);
        return NULL;
    }
    if (!(r = calloc(1, sizeof *r)))
        goto nomem;
    r->fd = -1;
    int is_stdin = strcmp(path, "-") == 0;
    r->name = strdup(is_stdin ? "stdin" : path);
    r->vin = opts && opts->vin ? strdup(opts->vin) : is_stdin ? strdup("stdin") : default_vin(path);
    r->buf = malloc(READER_BUF_SIZE);
    if (!r->name || !r->vin || !r->buf)
        goto nomem;
    r->name_len = strlen(r->name);
    r->vin_len = strlen(r->vin);
    r->gap_us = opts && opts->frame_gap_us > 0 ? opts->frame_gap_us : DEFAULT_GAP_US;
    if (opts) {
        r->on_bad = opts->on_bad;
        r->on_bad_ctx = opts->on_bad_ctx;
    }

    if (is_stdin) {
        r->fd = STDIN_FILENO;
        return r;
    }
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        vsoc_seterr(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        goto fail;
    }
    r->own_fd = 1;
    struct stat st;
    if (fstat(r->fd, &st) != 0) {
        vsoc_seterr(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        vsoc_seterr(err, errlen, "cannot read '%s': %s", path, strerror(EISDIR));
        goto fail;
    }
    /* A capture is read once, front to back. */
    (void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return r;

nomem:
    vsoc_seterr(err, errlen, "%s: out of memory", path);
fail:
    vsoc_reader_close(r);
    return NULL;
}

void vsoc_reader_close(vsoc_reader_t *r)
{
    if (!r)
        return;
    if (r->own_fd && r->fd >= 0)
        close(r->fd);
    json_decref(r->doc);
    free(r->buf);
    free(r->name);
    free(r->vin);
    free(r);
}

/* Returns 1 with the next line (without '\n') in *line and *n, 2 when a line did not fit the
 * buffer (its rest is skipped on the following calls), 0 at the end, VSOC_EIO. */
static int next_line(vsoc_reader_t *r, const char **line, size_t *n)
{
    for (;;) {
        char *s = r->buf + r->pos;
        size_t avail = r->end - r->pos;
        char *nl = avail ? memchr(s, '\n', avail) : NULL;
        if (nl) {
            size_t len = (size_t)(nl - s);
            r->pos += len + 1;
            r->bytes += len + 1;
            if (r->discard) {
                r->discard = 0;
                continue;
            }
            *line = s;
            *n = len;
            return 1;
        }
        if (r->eof) {
            r->pos = r->end;
            r->bytes += avail;
            if (avail == 0 || r->discard) {
                r->discard = 0;
                return 0;
            }
            *line = s; /* a last line without a newline */
            *n = avail;
            return 1;
        }
        if (r->discard) {
            r->bytes += avail;
            r->pos = r->end = 0;
        } else if (avail == READER_BUF_SIZE) {
            r->bytes += avail;
            r->pos = r->end = 0;
            r->discard = 1;
            return 2;
        } else if (r->pos > 0) {
            /* Keep the partial line, moved to the front so the next read can complete it. */
            memmove(r->buf, s, avail);
            r->pos = 0;
            r->end = avail;
        }
        ssize_t got;
        do
            got = read(r->fd, r->buf + r->end, READER_BUF_SIZE - r->end);
        while (got < 0 && errno == EINTR);
        if (got < 0) {
            snprintf(r->errstr, sizeof r->errstr, "read '%s': %s", r->name, strerror(errno));
            return VSOC_EIO;
        }
        if (got == 0)
            r->eof = 1;
        r->end += (size_t)got;
    }
}

static void report_bad(vsoc_reader_t *r, const char *reason)
{
    r->skipped++;
    if (r->on_bad)
        r->on_bad(r->on_bad_ctx, r->name, r->lines, reason);
}

int vsoc_reader_next(vsoc_reader_t *r, vsoc_event_t *ev)
{
    if (r->doc) {
        json_decref(r->doc);
        r->doc = NULL;
    }
    for (;;) {
        const char *line;
        size_t n;
        parse_out_t o = {NULL, r->reason, sizeof r->reason, 0};
#ifdef READER_SWAR
        if (r->nshapes && !r->discard && shape_next(r, ev, &o))
            goto parsed;
#endif
        int rc = next_line(r, &line, &n);
        if (rc <= 0)
            return rc;
        r->lines++;
        if (rc == 2) {
            snprintf(r->reason, sizeof r->reason, "line too long (over %u bytes)",
                     READER_BUF_SIZE);
            report_bad(r, r->reason);
            continue;
        }
        while (n > 0 && line[n - 1] == '\r')
            n--;
        const char *e = line + n, *p = skip_ws(line, e);
        if (p == e || *p == '#')
            continue;

        reset_event(ev);
        ev->line.p = line;
        ev->line.n = n;
        int prc;
        if (r->fmt == VSOC_FMT_CANDUMP_SPACED || r->fmt == VSOC_FMT_CANDUMP_LOG) {
#ifdef READER_SWAR
            prc = shape_try(r, line, e, ev, &o);
            if (prc != 0 && (prc = parse_fmt(r->fmt, line, e, ev, &o)) == 0)
                shape_learn(r, line, e, ev, o.untimed);
#else
            prc = parse_fmt(r->fmt, line, e, ev, &o);
#endif
        } else if (r->fmt != VSOC_FMT_UNKNOWN) {
            prc = parse_fmt(r->fmt, line, e, ev, &o);
        } else {
            vsoc_format_t det = VSOC_FMT_UNKNOWN;
            prc = parse_any(VSOC_FMT_UNKNOWN, line, e, ev, &det, &o);
            if (prc == 0)
                r->fmt = det;
        }
        if (prc != 0) {
            if (ev->doc)
                json_decref(ev->doc);
            report_bad(r, o.reason);
            continue;
        }
#ifdef READER_SWAR
    parsed:
#endif
        if (ev->kind == VSOC_EVENT_IDS) {
            r->doc = ev->doc;
        } else {
            ev->vin.p = r->vin;
            ev->vin.n = r->vin_len;
        }
        if (o.untimed)
            ev->ts_us = (int64_t)r->events * r->gap_us;
        ev->source.p = r->name;
        ev->source.n = r->name_len;
        ev->lineno = r->lines;
        r->events++;
        return 1;
    }
}

vsoc_format_t vsoc_reader_format(const vsoc_reader_t *r)
{
    return r->fmt;
}

uint64_t vsoc_reader_lines(const vsoc_reader_t *r)
{
    return r->lines;
}

uint64_t vsoc_reader_skipped(const vsoc_reader_t *r)
{
    return r->skipped;
}

uint64_t vsoc_reader_bytes(const vsoc_reader_t *r)
{
    return r->bytes;
}

const char *vsoc_reader_errstr(const vsoc_reader_t *r)
{
    return r->errstr;
}
