/* engine.c: the matcher and correlation windows (see engine.h).
 *
 * Invariants: event time alone drives windows and suppression, so a replay gives the same
 * alerts every time; the per-event path takes no locks, logs nothing and allocates only for
 * a group seen for the first time; groups idle longer than their window (and out of
 * suppression) are freed by a sweep that runs once per second of event time.
 *
 * Time is each vehicle's own: a group is judged idle against the latest event time of the
 * vehicle that opened it, never against another vehicle's. One engine serves many vehicles
 * in the service, whose streams interleave with clocks a little apart; judging by the
 * newest time of any vehicle would end a lagging vehicle's windows early and change its
 * alerts (and their ids) from what a replay of its capture gives. A vehicle silent for an
 * hour of the engine's time has its groups freed whatever their windows.
 *
 * Each group is also on the list of the vehicle that opened it, and a vehicle whose state
 * changed since the last snapshot is on the engine's dirty list, so that a snapshot writes
 * the vehicles that changed, each with its groups, without walking everything. */
#include "engine.h"

#include "decode.h"
#include "rule_internal.h"
#include "score.h"
#include "util.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_STR_MAX 32 /* longer strings are cut and followed by their hash */
/* Room for the longest key: every group-by field a long string (tag, length, text, hash).
 * Keys are never truncated, so two groups never share one by accident. */
#define GROUP_KEY_MAX (VSOC_MAX_GROUP_BY * (2 + KEY_STR_MAX + 8))
#define SWEEP_EVERY_US 1000000
#define VIN_MAX 64
#define HELD_KEEP_US (86400LL * 1000000)
#define STALE_SWEEPS 3600           /* sweeps without an event of a vehicle: an hour */
#define SWEEP_EVENTS (1u << 20)     /* a sweep at least this often when time stands still */
#define MISSING_CHECK_US 250000

enum { G_CORR = 1, G_SUPP = 2 };

typedef struct sample {
    int64_t ts;
    uint16_t n;
    char text[VSOC_SAMPLE_MAX];
} sample_t;

typedef struct vslot {
    uint64_t key;
    int64_t ts;
    uint8_t used;
} vslot_t;

typedef struct group {
    uint64_t hash;
    uint32_t rule;
    uint32_t vid; /* the vehicle that opened it (below); here, where lookups read anyway */
    uint8_t kind;
    uint16_t keylen;
    char key[GROUP_KEY_MAX];
    int64_t last_ts; /* latest event time seen (correlation), last alert time (suppress) */
    uint8_t seen;
    /* suppress: alerts are held back while since <= t < until */
    int64_t since;
    int64_t until;
    uint64_t held;
    /* event_count: timestamps of the matches inside the window, oldest at head */
    int64_t *ring;
    uint32_t cap, head, n;
    /* value_count: distinct values and when each was last seen */
    vslot_t *vmap;
    uint32_t vcap, vcount;
    /* temporal: per item, last seen (unordered) or start of the chain that reached it */
    int64_t t[VSOC_MAX_ITEMS];
    /* evidence: the most recent matching events */
    uint8_t nsamples, shead;
    sample_t samples[VSOC_ALERT_SAMPLES];
    /* The vehicle that opened the group: its clock judges when the group is idle, and its
     * snapshot carries the group. */
    uint8_t vinlen;
    char vin[VIN_MAX];
    struct group *vnext, *vprev; /* that vehicle's groups */
} group_t;

typedef struct vehicle {
    void *score; /* the scorer's state for this vehicle, when there is a baseline */
    int64_t next_missing; /* event time of the next check for silent messages */
    char vin[VIN_MAX];
    uint8_t vinlen, used, has_speed;
    uint8_t dirty;        /* changed since the last snapshot: in e->dirty */
    uint32_t vid;         /* unique in the engine, never 0 */
    double speed_kph;
    int64_t speed_ts;
    int64_t now_ts;       /* time of the vehicle's latest event: its clock */
    uint64_t seen_sweep;  /* the engine's sweep count at that event */
    group_t *groups;      /* the groups it opened, most recent first */
    uint8_t blank;        /* forgotten (vsoc_engine_forget): as if never seen, until its
                             next event or a restore fills the slot again */
} vehicle_t;

/* Candidate lists per CAN identifier, computed once from the ruleset's index: the list is a
 * function of (id, ext) alone, so a frame costs one probe here instead of a merge. */
#define CAND_CACHE_MAX 65536
#define CSLOT_EMPTY UINT32_MAX

typedef struct cslot {
    uint32_t key; /* id | ext << 31 */
    uint32_t off, n;
} cslot_t;

struct vsoc_engine {
    vsoc_ruleset_t *rs;
    int64_t regs[32];
    uint8_t payload[VSOC_CAN_MAX_LEN + 8];
    uint32_t regs_ok;
    int regs_ready;
    cslot_t *ctab;
    size_t ccap, ccount;
    uint32_t *cpool;
    size_t cpool_n, cpool_cap;
    vsoc_engine_opts_t opts;
    vsoc_rule_stats_t *stats;
    uint32_t *cand;
    uint8_t *detmemo;
    uint64_t events;
    char hexbuf[2 * VSOC_CAN_MAX_LEN + 8];
    char numbuf[64];
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    /* groups: open addressing, linear probing, backward-shift deletion */
    group_t **gtab;
    uint64_t *ghash; /* beside gtab: probes compare hashes without touching the groups */
    group_t **glast; /* per rule and kind, the group found last: a flood or a per-vehicle
                        group is hit again and again, and then needs no hashing at all */
    size_t gcap, gcount;
    int64_t next_sweep;   /* on max_ts */
    int64_t max_ts;       /* the newest event time of any vehicle */
    uint64_t sweeps;
    uint32_t since_sweep; /* events since the last sweep */
    vsoc_str_t cur_vin;   /* the vehicle of the event being matched */
    vehicle_t *cur_veh;   /* its record (NULL when it could not be allocated) */
    uint32_t cur_vid;     /* its vid, 0 for none */
    /* vehicles */
    vehicle_t *vtab;
    size_t vcap, vcount;
    vehicle_t *vlast;
    uint32_t next_vid;
    /* snapshots (see "snapshots" below) */
    uint32_t *dirty;      /* slots of the dirty vehicles, each once; room for vcap */
    size_t ndirty;
    uint32_t marked_vid;  /* the opener last marked dirty for a shared group, 0 for none */
    uint8_t clock_known;  /* the engine clocks came from an event or a restored blob */
    uint64_t sweeps_off;  /* added to sweeps in blobs, so that a restored engine's count
                             goes on from the one it was restored from */
    uint64_t *rfp;        /* per rule, the fingerprint of its compiled form; lazily */
    struct rid *rids;     /* the rules in order of id, for restore's lookups */
    uint8_t *sbuf;        /* a blob being written */
    size_t scap;
    struct sref *sgroups; /* one vehicle's groups, sorted for its blob */
    size_t sgcap;
};

/* ---- small helpers ------------------------------------------------------------------ */

static int glob_match(const char *s, size_t n, const char *p, size_t pn, int cased)
{
    size_t si = 0, pi = 0, star_p = (size_t)-1, star_s = 0;
    while (si < n) {
        if (pi < pn && p[pi] == '*') {
            star_p = pi++;
            star_s = si;
        } else if (pi < pn && (p[pi] == '?' ||
                               (cased ? s[si] == p[pi]
                                      : vsoc_lower((unsigned char)s[si]) == (unsigned char)p[pi]))) {
            si++;
            pi++;
        } else if (star_p != (size_t)-1) {
            pi = star_p + 1;
            si = ++star_s;
        } else {
            return 0;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

static int text_eq(const char *s, size_t n, const cval_t *v, int cased)
{
    if (n != v->n)
        return 0;
    return cased ? memcmp(s, v->s, n) == 0 : vsoc_eq_lower(s, v->s, n);
}

static int text_contains(const char *s, size_t n, const cval_t *v, int cased)
{
    if (v->n > n)
        return 0;
    for (size_t i = 0; i + v->n <= n; i++)
        if (cased ? memcmp(s + i, v->s, v->n) == 0 : vsoc_eq_lower(s + i, v->s, v->n))
            return 1;
    return 0;
}

static int cidr_match(const char *s, size_t n, const cval_t *v)
{
    char buf[64];
    uint8_t addr[16];
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    if (inet_pton(v->family == 4 ? AF_INET : AF_INET6, buf, addr) != 1)
        return 0;
    unsigned bits = v->prefix, full = bits / 8, rest = bits % 8;
    if (memcmp(addr, v->addr, full) != 0)
        return 0;
    if (rest) {
        uint8_t mask = (uint8_t)(0xFF << (8 - rest));
        return (addr[full] & mask) == (v->addr[full] & mask);
    }
    return 1;
}

/* Extracts a bit field from the payload, DBC style: little-endian (Intel) from the start
 * bit upwards; big-endian (Motorola) from the start bit as the most significant bit. */
static int extract_bits(const fmatch_t *m, const vsoc_can_frame_t *f, uint64_t *out)
{
    uint64_t v = 0;
    unsigned pos = m->bits_start;
    if (m->bits_le) {
        if ((pos + m->bits_len - 1u) / 8u >= f->len)
            return 0;
        for (unsigned i = 0; i < m->bits_len; i++, pos++)
            v |= (uint64_t)((f->data[pos / 8] >> (pos % 8)) & 1u) << i;
    } else {
        for (unsigned i = 0; i < m->bits_len; i++) {
            if (pos / 8 >= f->len)
                return 0;
            v = (v << 1) | ((f->data[pos / 8] >> (pos % 8)) & 1u);
            pos = (pos % 8 == 0) ? pos + 15 : pos - 1;
        }
    }
    *out = v;
    return 1;
}

/* The numeric form of a value, if it has one. */
static int as_number(const vsoc_value_t *v, double *d, int64_t *i, int *is_int)
{
    switch (v->type) {
    case VSOC_FT_INT:
    case VSOC_FT_BOOL:
        *i = v->i;
        *d = (double)v->i;
        *is_int = 1;
        return 1;
    case VSOC_FT_FLOAT:
        *d = v->f;
        *is_int = 0;
        return 1;
    case VSOC_FT_STR: {
        char buf[64];
        if (v->is_list || v->n == 0 || v->n >= sizeof buf)
            return 0;
        memcpy(buf, v->s, v->n);
        buf[v->n] = 0;
        if (vsoc_parse_int(buf, i) == 0) {
            *d = (double)*i;
            *is_int = 1;
            return 1;
        }
        *is_int = 0;
        return vsoc_parse_number(buf, d) == 0;
    }
    default:
        return 0;
    }
}

static int cmp_num(match_op_t op, const vsoc_value_t *v, const cval_t *c)
{
    double d;
    int64_t i = 0;
    int is_int;
    if (!as_number(v, &d, &i, &is_int))
        return 0;
    if (is_int && c->kind == CV_INT) {
        switch (op) {
        case OP_EQ: return i == c->i;
        case OP_GT: return i > c->i;
        case OP_GTE: return i >= c->i;
        case OP_LT: return i < c->i;
        case OP_LTE: return i <= c->i;
        case OP_IN_RANGE: return i >= c->i && i <= c->i2;
        case OP_MASK: return (i & c->i) == c->i2;
        default: return 0;
        }
    }
    switch (op) {
    case OP_EQ: return d == c->f;
    case OP_GT: return d > c->f;
    case OP_GTE: return d >= c->f;
    case OP_LT: return d < c->f;
    case OP_LTE: return d <= c->f;
    case OP_IN_RANGE: return d >= c->f && d <= c->f2;
    case OP_MASK: return is_int && (i & c->i) == c->i2;
    default: return 0;
    }
}

/* Text of a value for string operators: strings as they are, numbers in decimal. */
static int as_text(vsoc_engine_t *e, const vsoc_value_t *v, const char **s, size_t *n)
{
    switch (v->type) {
    case VSOC_FT_STR:
    case VSOC_FT_BYTES:
        if (v->is_list)
            return 0;
        *s = v->s;
        *n = v->n;
        return 1;
    case VSOC_FT_INT:
        *n = (size_t)snprintf(e->numbuf, sizeof e->numbuf, "%lld", (long long)v->i);
        *s = e->numbuf;
        return 1;
    case VSOC_FT_FLOAT:
        *n = (size_t)snprintf(e->numbuf, sizeof e->numbuf, "%.17g", v->f);
        *s = e->numbuf;
        return 1;
    case VSOC_FT_BOOL:
        *s = v->i ? "true" : "false";
        *n = strlen(*s);
        return 1;
    default:
        return 0;
    }
}

static int match_one(vsoc_engine_t *e, const fmatch_t *m, const vsoc_value_t *v, const cval_t *c,
                     uint32_t rule)
{
    const int cased = m->cased & 1;
    switch (m->op) {
    case OP_EQ:
        if (v->type == VSOC_FT_REASONS)
            return (v->i & c->i) != 0;
        if (v->type == VSOC_FT_BOOL && c->has_num == 2)
            return v->i == c->i;
        if (c->kind == CV_STR) {
            if (v->type == VSOC_FT_INT || v->type == VSOC_FT_FLOAT)
                return c->has_num == 1 && cmp_num(OP_EQ, v, c);
            if (v->type != VSOC_FT_STR && v->type != VSOC_FT_BYTES)
                return 0;
            if (c->glob)
                return glob_match(v->s, v->n, c->s, c->n, cased || v->type == VSOC_FT_BYTES);
            return v->type == VSOC_FT_BYTES ? (v->n == c->n && memcmp(v->s, c->s, v->n) == 0)
                                            : text_eq(v->s, v->n, c, cased);
        }
        return cmp_num(OP_EQ, v, c);
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
    case OP_IN_RANGE:
    case OP_MASK:
        return cmp_num(m->op, v, c);
    case OP_CONTAINS:
    case OP_STARTSWITH:
    case OP_ENDSWITH: {
        const char *s;
        size_t n;
        if (!as_text(e, v, &s, &n))
            return 0;
        int cs = cased || v->type == VSOC_FT_BYTES;
        if (m->op == OP_CONTAINS && v->type == VSOC_FT_BYTES) {
            /* Hex text: a match must start on a byte, not in the middle of one. */
            for (size_t i = 0; i + c->n <= n; i += 2)
                if (memcmp(s + i, c->s, c->n) == 0)
                    return 1;
            return 0;
        }
        if (m->op == OP_CONTAINS)
            return text_contains(s, n, c, cs);
        if (c->n > n || (v->type == VSOC_FT_BYTES && ((n - c->n) & 1)))
            return 0;
        const char *at = m->op == OP_STARTSWITH ? s : s + n - c->n;
        return cs ? memcmp(at, c->s, c->n) == 0 : vsoc_eq_lower(at, c->s, c->n);
    }
    case OP_RE: {
        const char *s;
        size_t n;
        if (!as_text(e, v, &s, &n))
            return 0;
        int rc = pcre2_match(c->re, (PCRE2_SPTR)s, n, 0, 0, e->md, e->mctx);
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
            rc == PCRE2_ERROR_JIT_STACKLIMIT) {
            e->stats[rule].regex_limit++;
            return 0;
        }
        return rc >= 0;
    }
    case OP_CIDR:
        return v->type == VSOC_FT_STR && !v->is_list && cidr_match(v->s, v->n, c);
    default:
        return 0;
    }
}

static int match_values(vsoc_engine_t *e, const fmatch_t *m, const vsoc_value_t *v,
                        uint32_t rule)
{
    if (m->all) {
        for (uint32_t i = 0; i < m->nvals; i++)
            if (!match_one(e, m, v, &m->vals[i], rule))
                return 0;
        return 1;
    }
    for (uint32_t i = 0; i < m->nvals; i++)
        if (match_one(e, m, v, &m->vals[i], rule))
            return 1;
    return 0;
}

/* Integer comparisons without the general value machinery: most CAN rules are these. */
static int match_int(const fmatch_t *m, int64_t x)
{
    for (uint32_t i = 0; i < m->nvals; i++) {
        const cval_t *c = &m->vals[i];
        int ok;
        switch (m->op) {
        case OP_EQ: ok = x == c->i; break;
        case OP_GT: ok = x > c->i; break;
        case OP_GTE: ok = x >= c->i; break;
        case OP_LT: ok = x < c->i; break;
        case OP_LTE: ok = x <= c->i; break;
        case OP_IN_RANGE: ok = x >= c->i && x <= c->i2; break;
        default: ok = (x & c->i) == c->i2; break;
        }
        if (ok != m->all)
            return ok;
    }
    return m->all;
}

static int eval_match(vsoc_engine_t *e, const fmatch_t *m, const vsoc_event_t *ev, uint32_t rule)
{
    vsoc_value_t v;
    if (!vsoc_field_get(&m->field, ev, &v, e->hexbuf))
        return m->op == OP_NULL || (m->op == OP_EXISTS && !m->vals[0].i);
    if (m->op == OP_NULL)
        return 0;
    if (m->op == OP_EXISTS)
        return m->vals[0].i != 0;
    if (m->bits) {
        uint64_t b;
        if (!extract_bits(m, &ev->can, &b))
            return 0;
        v.type = VSOC_FT_INT;
        v.i = (int64_t)b;
        v.is_list = 0;
    }
    if (m->fast && m->field.type != VSOC_FT_REASONS) /* reasons: a set, matched below */
        return match_int(m, v.i);
    if (v.is_list) {
        size_t n = vsoc_field_json_len(&v);
        for (size_t i = 0; i < n; i++) {
            vsoc_value_t el;
            if (vsoc_field_json_elem(&v, i, &el) && match_values(e, m, &el, rule))
                return 1;
        }
        return 0;
    }
    return match_values(e, m, &v, rule);
}

static int eval_det(vsoc_engine_t *e, const det_t *d, const vsoc_event_t *ev, uint32_t rule)
{
    for (uint32_t a = 0; a < d->nalt; a++) {
        const alt_t *alt = &d->alts[a];
        uint32_t i;
        for (i = 0; i < alt->n; i++)
            if (!eval_match(e, &alt->m[i], ev, rule))
                break;
        if (i == alt->n)
            return 1;
    }
    return 0;
}

/* Evaluates a condition node, short-circuiting; detections are evaluated at most once per
 * event (memo: 0 unknown, 1 false, 2 true). */
static int eval_node(vsoc_engine_t *e, const vsoc_rule_t *r, uint32_t ni, const vsoc_event_t *ev,
                     uint32_t rule)
{
    const cnode_t *n = &r->nodes[ni];
    switch (n->op) {
    case CN_DET:
        if (!e->detmemo[n->det])
            e->detmemo[n->det] = eval_det(e, &r->dets[n->det], ev, rule) ? 2 : 1;
        return e->detmemo[n->det] == 2;
    case CN_AND:
        return eval_node(e, r, n->a, ev, rule) && eval_node(e, r, n->b, ev, rule);
    case CN_OR:
        return eval_node(e, r, n->a, ev, rule) || eval_node(e, r, n->b, ev, rule);
    case CN_NOT:
        return !eval_node(e, r, n->a, ev, rule);
    }
    return 0;
}

/* ---- groups ------------------------------------------------------------------------- */

static void key_put(char *key, size_t *len, const void *p, size_t n)
{
    if (n)
        memcpy(key + *len, p, n);
    *len += n;
}

/* Integers go in as little-endian bytes whatever the host, because alert ids hash keys. */
static void key_put_u64(char *key, size_t *len, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        key[(*len)++] = (char)(x >> (8 * i));
}

/* FNV-1a: fixed and byte-order independent, since it ends up in alert ids. */
static uint64_t fnv1a64(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static size_t build_key(vsoc_engine_t *e, const vsoc_field_t *fields, uint32_t n,
                        const vsoc_event_t *ev, char *key)
{
    size_t len = 0;
    for (uint32_t i = 0; i < n; i++) {
        vsoc_value_t v;
        /* The usual group-by fields, read without the general field reader. */
        if (fields[i].id == VSOC_F_VIN || fields[i].id == VSOC_F_CAN_BUS) {
            vsoc_str_t str = fields[i].id == VSOC_F_VIN ? ev->vin : ev->bus;
            if (fields[i].id == VSOC_F_VIN || ev->kind == VSOC_EVENT_CAN) {
                if (str.n <= KEY_STR_MAX) {
                    key[len++] = 's';
                    key[len++] = (char)str.n;
                    if (str.n) /* a capture without interfaces has no bus */
                        memcpy(key + len, str.p, str.n);
                    len += str.n;
                    continue;
                }
            }
        } else if (fields[i].id == VSOC_F_CAN_ID && ev->kind == VSOC_EVENT_CAN) {
            key[len++] = 'i';
            key_put_u64(key, &len, ev->can.id);
            continue;
        }
        if (!vsoc_field_get(&fields[i], ev, &v, e->hexbuf) || v.is_list ||
            v.type == VSOC_FT_JSON) {
            key_put(key, &len, "n", 1);
            continue;
        }
        switch (v.type) {
        case VSOC_FT_INT:
        case VSOC_FT_BOOL:
        case VSOC_FT_REASONS:
            key_put(key, &len, "i", 1);
            key_put_u64(key, &len, (uint64_t)v.i);
            break;
        case VSOC_FT_FLOAT: {
            uint64_t b;
            memcpy(&b, &v.f, 8);
            key_put(key, &len, "f", 1);
            key_put_u64(key, &len, b);
            break;
        }
        default: {
            size_t sn = v.n > KEY_STR_MAX ? KEY_STR_MAX : v.n;
            uint8_t l = (uint8_t)sn;
            /* "h": cut and hashed, never equal to a string of exactly KEY_STR_MAX bytes */
            key_put(key, &len, v.n > sn ? "h" : "s", 1);
            key_put(key, &len, &l, 1);
            key_put(key, &len, v.s, sn);
            if (v.n > sn)
                key_put_u64(key, &len, fnv1a64(v.s, v.n));
        }
        }
    }
    return len;
}

static uint64_t group_hash(uint32_t rule, uint8_t kind, const char *key, size_t n)
{
    return vsoc_hash_bytes(key, n, ((uint64_t)rule << 8) | kind);
}

static void group_free(group_t *g)
{
    if (!g)
        return;
    free(g->ring);
    free(g->vmap);
    free(g);
}

static int gtab_grow(vsoc_engine_t *e)
{
    size_t ncap = e->gcap ? e->gcap * 2 : 1024;
    group_t **nt = calloc(ncap, sizeof *nt);
    uint64_t *nh = calloc(ncap, sizeof *nh);
    if (!nt || !nh) {
        free(nt);
        free(nh);
        return VSOC_ENOMEM;
    }
    for (size_t i = 0; i < e->gcap; i++) {
        group_t *g = e->gtab[i];
        if (!g)
            continue;
        size_t h = (size_t)g->hash & (ncap - 1);
        while (nt[h])
            h = (h + 1) & (ncap - 1);
        nt[h] = g;
        nh[h] = g->hash;
    }
    free(e->gtab);
    free(e->ghash);
    e->gtab = nt;
    e->ghash = nh;
    e->gcap = ncap;
    return 0;
}

/* Equality of short keys, inline: a call to memcmp costs more than these compares. */
static inline int key_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    for (; n >= 8; a += 8, b += 8, n -= 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y)
            return 0;
    }
    for (; n; a++, b++, n--)
        if (*a != *b)
            return 0;
    return 1;
}

static int group_is(const group_t *g, uint64_t h, uint32_t rule, uint8_t kind, const char *key,
                    size_t keylen)
{
    return g->hash == h && g->rule == rule && g->kind == kind && g->keylen == keylen &&
           key_eq(g->key, key, keylen);
}

static vehicle_t *vehicle_find(vsoc_engine_t *e, const char *vin, size_t n);

/* Marks v changed since the last snapshot: a list of slots, so that a snapshot visits the
 * vehicles that changed and not the whole table. */
static void mark_dirty(vsoc_engine_t *e, vehicle_t *v)
{
    if (v->dirty)
        return;
    v->dirty = 1;
    e->dirty[e->ndirty++] = (uint32_t)(v - e->vtab);
}

/* An event of one vehicle reached a group another vehicle opened (a group-by without vin):
 * the opener's blob changes with it. Rare, so kept off the inline path. */
static void mark_opener(vsoc_engine_t *e, const group_t *g)
{
    vehicle_t *v = vehicle_find(e, g->vin, g->vinlen);
    if (v)
        mark_dirty(e, v);
    e->marked_vid = g->vid; /* a flood on a shared group looks the opener up once */
}

/* Dirty tracking for a group found by the current event: its own vehicle is marked by
 * vsoc_engine_process already, so the usual case costs one compare. */
static inline group_t *touched(vsoc_engine_t *e, group_t *g)
{
    if (g->vid != e->cur_vid && g->vid != e->marked_vid)
        mark_opener(e, g);
    return g;
}

/* Links g at the head of v's list of groups. */
static void group_link(vehicle_t *v, group_t *g)
{
    g->vprev = NULL;
    g->vnext = v->groups;
    if (v->groups)
        v->groups->vprev = g;
    v->groups = g;
}

/* Unlinks g from the list of v, its opener (NULL when the opener has no record). */
static void group_unlink(vehicle_t *v, group_t *g)
{
    if (g->vprev)
        g->vprev->vnext = g->vnext;
    else if (v && v->groups == g)
        v->groups = g->vnext;
    if (g->vnext)
        g->vnext->vprev = g->vprev;
    g->vnext = g->vprev = NULL;
}

/* Finds or creates the group; returns NULL only when memory runs out. */
static group_t *group_get(vsoc_engine_t *e, uint32_t rule, uint8_t kind, const char *key,
                          size_t keylen)
{
    group_t **last = &e->glast[2 * rule + (kind == G_SUPP)];
    if (*last && (*last)->keylen == keylen && key_eq((*last)->key, key, keylen))
        return touched(e, *last);
    uint64_t h = group_hash(rule, kind, key, keylen);
    if (e->gcap) {
        size_t i = (size_t)h & (e->gcap - 1);
        for (; e->gtab[i]; i = (i + 1) & (e->gcap - 1))
            if (e->ghash[i] == h && group_is(e->gtab[i], h, rule, kind, key, keylen))
                return touched(e, *last = e->gtab[i]);
    }
    if ((e->gcount + 1) * 2 > e->gcap && gtab_grow(e) != 0)
        return NULL;
    group_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->hash = h;
    g->rule = rule;
    g->kind = kind;
    g->keylen = (uint16_t)keylen;
    memcpy(g->key, key, keylen);
    g->until = INT64_MIN;
    for (int i = 0; i < VSOC_MAX_ITEMS; i++)
        g->t[i] = INT64_MIN;
    g->vinlen = (uint8_t)(e->cur_vin.n < VIN_MAX ? e->cur_vin.n : VIN_MAX - 1);
    if (g->vinlen)
        memcpy(g->vin, e->cur_vin.p, g->vinlen);
    g->vid = e->cur_vid;
    if (e->cur_veh)
        group_link(e->cur_veh, g);
    size_t i = (size_t)h & (e->gcap - 1);
    while (e->gtab[i])
        i = (i + 1) & (e->gcap - 1);
    e->gtab[i] = g;
    e->ghash[i] = h;
    e->gcount++;
    return *last = g;
}

/* Removes slot i with backward-shift deletion, so probes never need tombstones. */
static void gtab_remove_at(vsoc_engine_t *e, size_t i)
{
    size_t mask = e->gcap - 1;
    group_t *dead = e->gtab[i];
    group_t **last = &e->glast[2 * dead->rule + (dead->kind == G_SUPP)];
    if (*last == dead)
        *last = NULL;
    group_free(e->gtab[i]);
    e->gtab[i] = NULL;
    e->gcount--;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        group_t *g = e->gtab[j];
        if (!g)
            return;
        size_t home = (size_t)g->hash & mask;
        /* Move g back into the hole when the hole lies between its home and j. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            e->gtab[i] = g;
            e->ghash[i] = e->ghash[j];
            e->gtab[j] = NULL;
            i = j;
        }
    }
}

static int64_t rule_horizon(const vsoc_rule_t *r, uint8_t kind)
{
    return kind == G_SUPP ? r->sup.for_us : r->corr.span_us;
}

/* Frees groups whose window and suppression have passed on their vehicle's clock. */
static void sweep(vsoc_engine_t *e)
{
    e->sweeps++;
    e->since_sweep = 0;
    for (size_t i = 0; i < e->gcap;) {
        group_t *g = e->gtab[i];
        if (g) {
            const vsoc_rule_t *r = e->rs->rules[g->rule];
            vehicle_t *v = vehicle_find(e, g->vin, g->vinlen);
            int64_t now = v ? v->now_ts : e->max_ts;
            int stale = !v || e->sweeps - v->seen_sweep > STALE_SWEEPS;
            /* A suppress group that held alerts back stays (a day at most) so that the
             * next alert can report how many. */
            int idle = stale ||
                       (g->kind == G_SUPP
                            ? g->until <= now && (g->held == 0 || g->until + HELD_KEEP_US <= now)
                            : g->last_ts < now - rule_horizon(r, g->kind) ||
                                  g->last_ts > now + rule_horizon(r, g->kind));
            if (idle) {
                if (v)
                    mark_dirty(e, v); /* its blob loses the group */
                group_unlink(v, g);
                gtab_remove_at(e, i);
                continue; /* slot i may now hold a shifted group */
            }
        }
        i++;
    }
}

/* Evidence: the oldest events of the window are kept (up to VSOC_ALERT_SAMPLES - 1), the
 * firing event is added at fire time. Keeping the oldest rather than the newest means a
 * flood costs no copy per event once the slots are full. */
static void sample_expire(group_t *g, int64_t horizon)
{
    while (g->nsamples && g->samples[g->shead].ts <= horizon) {
        g->shead = (uint8_t)((g->shead + 1) % VSOC_ALERT_SAMPLES);
        g->nsamples--;
    }
}

static void add_sample(group_t *g, const vsoc_event_t *ev)
{
    if (g->nsamples >= VSOC_ALERT_SAMPLES - 1)
        return;
    sample_t *s = &g->samples[(g->shead + g->nsamples) % VSOC_ALERT_SAMPLES];
    g->nsamples++;
    size_t n = ev->line.n < VSOC_SAMPLE_MAX ? ev->line.n : VSOC_SAMPLE_MAX;
    /* Cut before a UTF-8 continuation byte, so a cut line is still valid text. */
    if (n < ev->line.n)
        while (n > 0 && ((unsigned char)ev->line.p[n] & 0xC0) == 0x80)
            n--;
    memcpy(s->text, ev->line.p, n);
    s->n = (uint16_t)n;
    s->ts = ev->ts_us;
}

static void group_reset(group_t *g)
{
    g->n = 0;
    g->head = 0;
    if (g->vmap)
        memset(g->vmap, 0, g->vcap * sizeof *g->vmap);
    g->vcount = 0;
    for (int i = 0; i < VSOC_MAX_ITEMS; i++)
        g->t[i] = INT64_MIN;
    g->nsamples = 0;
    g->shead = 0;
}

/* ---- alerts ------------------------------------------------------------------------- */

static void put_le(EVP_MD_CTX *c, uint64_t x, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(x >> (8 * i));
    EVP_DigestUpdate(c, b, (size_t)bytes);
}

/* The alert id: SHA-256 over the rule id, the group key and the window start (and, for a
 * plain rule, the event itself), so a replay and the live service give the same id and a
 * second replay into one store adds nothing. docs/alerts.md gives the exact bytes. */
static void make_uid(const vsoc_rule_t *r, const char *key, size_t keylen, int64_t start,
                     const vsoc_event_t *ev, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    static const unsigned char zero = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
        /* Without a digest there is no stable id; say so rather than invent one. */
        snprintf(out, 37, "00000000-0000-8000-8000-000000000000");
        EVP_MD_CTX_free(c);
        return;
    }
    EVP_DigestUpdate(c, r->id, strlen(r->id));
    EVP_DigestUpdate(c, &zero, 1);
    EVP_DigestUpdate(c, key, keylen);
    EVP_DigestUpdate(c, &zero, 1);
    put_le(c, (uint64_t)start, 8);
    if (ev) {
        EVP_DigestUpdate(c, ev->vin.p, ev->vin.n);
        EVP_DigestUpdate(c, &zero, 1);
        if (ev->kind == VSOC_EVENT_CAN) {
            put_le(c, ev->can.id, 4);
            unsigned char f[5] = {ev->can.ext, ev->can.fd, ev->can.rtr, ev->can.dlc, ev->can.len};
            EVP_DigestUpdate(c, f, 5);
            EVP_DigestUpdate(c, ev->can.data, ev->can.len);
        } else {
            EVP_DigestUpdate(c, ev->line.p, ev->line.n);
        }
    }
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(c, md, &mdlen);
    EVP_MD_CTX_free(c);
    /* Formatted as a UUID (version 8: vendor-defined) so that OCSF tools accept it. */
    vsoc_uuid_format(md, out);
}

/* Applies suppression and emits. Returns 1 when an alert went out. */
static int fire(vsoc_engine_t *e, uint32_t ri, const vsoc_event_t *ev, group_t *g,
                const char *key, size_t keylen, int64_t first, uint64_t count)
{
    const vsoc_rule_t *r = e->rs->rules[ri];
    vsoc_rule_stats_t *st = &e->stats[ri];
    uint64_t held = 0;
    if (r->sup.on) {
        char skey[GROUP_KEY_MAX];
        size_t sk = build_key(e, r->sup.group_by, r->sup.ngroup, ev, skey);
        group_t *sg = group_get(e, ri, G_SUPP, skey, sk);
        if (sg) {
            sg->last_ts = ev->ts_us;
            /* Only the period after the last alert suppresses: an event from before it (a
             * capture replayed after a later one) is not in the period. */
            if (ev->ts_us >= sg->since && ev->ts_us < sg->until) {
                sg->held++;
                st->suppressed++;
                return 0;
            }
            held = sg->held;
            sg->held = 0;
            sg->since = ev->ts_us;
            sg->until = ev->ts_us + r->sup.for_us;
        }
    }
    st->alerts++;
    if (!e->opts.on_alert)
        return 1;
    vsoc_alert_t a;
    memset(&a, 0, sizeof a);
    a.rule = r;
    a.time_us = ev->ts_us;
    a.first_us = first;
    a.last_us = ev->ts_us > first ? ev->ts_us : first; /* a late event ends at the window */
    a.count = count;
    a.suppressed = held;
    a.vin = ev->vin;
    a.event = ev;
    make_uid(r, key, keylen, first, g ? NULL : ev, a.uid);
    if (g) {
        a.ngroup = r->corr.ngroup;
        for (uint32_t i = 0; i < r->corr.ngroup; i++) {
            a.group_fields[i] = &r->corr.group_by[i];
            a.group_present[i] =
                vsoc_field_get(&r->corr.group_by[i], ev, &a.group_vals[i], e->hexbuf);
        }
        for (unsigned i = 0; i < g->nsamples; i++) {
            const sample_t *s = &g->samples[(g->shead + i) % VSOC_ALERT_SAMPLES];
            if (s->ts < first)
                continue;
            a.samples[a.nsamples].p = s->text;
            a.samples[a.nsamples].n = s->n;
            a.nsamples++;
        }
        a.samples[a.nsamples++] = ev->line;
    } else {
        a.samples[0] = ev->line;
        a.nsamples = 1;
    }
    e->opts.on_alert(e->opts.ctx, &a);
    return 1;
}

/* ---- correlation -------------------------------------------------------------------- */

/* The ring's next index without a division (this runs for every matching event). */
static inline uint32_t ring_next(const group_t *g, uint32_t i)
{
    return i + 1 == g->cap ? 0 : i + 1;
}

static int ring_push(group_t *g, int64_t ts, uint32_t limit)
{
    if (g->n == g->cap) {
        if (g->cap < limit) {
            uint32_t ncap = g->cap ? g->cap * 2 : 8;
            if (ncap > limit)
                ncap = limit;
            int64_t *nr = malloc(ncap * sizeof *nr);
            if (!nr)
                return VSOC_ENOMEM;
            for (uint32_t i = 0; i < g->n; i++)
                nr[i] = g->ring[(g->head + i) % g->cap];
            free(g->ring);
            g->ring = nr;
            g->cap = ncap;
            g->head = 0;
        } else {
            g->head = ring_next(g, g->head); /* drop the oldest: the count stays at limit */
            g->n--;
        }
    }
    uint32_t at = g->head + g->n;
    g->ring[at >= g->cap ? at - g->cap : at] = ts;
    g->n++;
    return 0;
}

static uint64_t value_key(vsoc_engine_t *e, const vsoc_field_t *f, const vsoc_event_t *ev,
                          int *ok)
{
    vsoc_value_t v;
    *ok = vsoc_field_get(f, ev, &v, e->hexbuf) && !v.is_list && v.type != VSOC_FT_JSON;
    if (!*ok)
        return 0;
    switch (v.type) {
    case VSOC_FT_INT:
    case VSOC_FT_BOOL:
    case VSOC_FT_REASONS:
        return vsoc_hash_u64((uint64_t)v.i ^ 0x1234567ULL);
    case VSOC_FT_FLOAT: {
        uint64_t b;
        memcpy(&b, &v.f, 8);
        return vsoc_hash_u64(b ^ 0x7654321ULL);
    }
    default:
        return vsoc_hash_bytes(v.s, v.n, 0x99);
    }
}

static void vmap_insert(vslot_t *m, uint32_t cap, uint64_t key, int64_t ts)
{
    uint32_t i = (uint32_t)key & (cap - 1);
    while (m[i].used && m[i].key != key)
        i = (i + 1) & (cap - 1);
    m[i].used = 1;
    m[i].key = key;
    m[i].ts = ts;
}

/* Drops values not seen within the window; returns the oldest remaining time. */
static int64_t vmap_purge(group_t *g, int64_t horizon)
{
    vslot_t *tmp = g->vmap + g->vcap;
    int64_t oldest = INT64_MAX;
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->vcap; i++)
        if (g->vmap[i].used && g->vmap[i].ts > horizon)
            tmp[n++] = g->vmap[i];
    memset(g->vmap, 0, g->vcap * sizeof *g->vmap);
    for (uint32_t i = 0; i < n; i++) {
        vmap_insert(g->vmap, g->vcap, tmp[i].key, tmp[i].ts);
        if (tmp[i].ts < oldest)
            oldest = tmp[i].ts;
    }
    g->vcount = n;
    return oldest;
}

static int correlate_step(vsoc_engine_t *e, uint32_t ri, const vsoc_event_t *ev, group_t *g,
                          const char *key, size_t keylen, const int *items, int64_t now);

/* Runs a correlation for a matching event. Returns alerts raised or VSOC_ENOMEM. */
static int correlate(vsoc_engine_t *e, uint32_t ri, const vsoc_event_t *ev, const int *items)
{
    const vsoc_rule_t *r = e->rs->rules[ri];
    const corr_t *co = &r->corr;
    char key[GROUP_KEY_MAX];
    size_t keylen = build_key(e, co->group_by, co->ngroup, ev, key);
    group_t *g = group_get(e, ri, G_CORR, key, keylen);
    if (!g)
        return VSOC_ENOMEM;
    /* Time that jumps back by more than the window (a second capture, a clock reset) starts
     * the group afresh. A smaller step back (jitter between interfaces) counts the event at
     * the group's latest time, so the window only moves forward and stays sorted. */
    int64_t now = ev->ts_us;
    if (g->seen && now < g->last_ts - co->span_us)
        group_reset(g);
    else if (g->seen && now < g->last_ts)
        now = g->last_ts;
    g->seen = 1;
    g->last_ts = now;
    sample_expire(g, now - co->span_us);
    int rc = correlate_step(e, ri, ev, g, key, keylen, items, now);
    if (rc == 0)
        add_sample(g, ev);
    return rc;
}

static int correlate_step(vsoc_engine_t *e, uint32_t ri, const vsoc_event_t *ev, group_t *g,
                          const char *key, size_t keylen, const int *items, int64_t now)
{
    const vsoc_rule_t *r = e->rs->rules[ri];
    const corr_t *co = &r->corr;
    const int64_t horizon = now - co->span_us;
    switch (co->type) {
    case CORR_EVENT_COUNT:
        while (g->n && g->ring[g->head] <= horizon) {
            g->head = ring_next(g, g->head);
            g->n--;
        }
        if (ring_push(g, now, co->threshold) != 0)
            return VSOC_ENOMEM;
        if (g->n >= co->threshold) {
            int64_t first = g->ring[g->head];
            uint64_t count = g->n;
            int rc = fire(e, ri, ev, g, key, keylen, first, count);
            group_reset(g);
            return rc;
        }
        return 0;
    case CORR_VALUE_COUNT: {
        int ok;
        uint64_t k = value_key(e, &co->value_field, ev, &ok);
        if (!ok)
            return 0;
        if (!g->vmap) {
            uint32_t cap = 16;
            while (cap < 2 * co->threshold + 2)
                cap *= 2;
            /* Twice the table: the upper half is the purge's scratch, so purging never
             * allocates on the event path. */
            g->vmap = calloc(2 * (size_t)cap, sizeof *g->vmap);
            if (!g->vmap)
                return VSOC_ENOMEM;
            g->vcap = cap;
        }
        uint32_t i = (uint32_t)k & (g->vcap - 1);
        while (g->vmap[i].used && g->vmap[i].key != k)
            i = (i + 1) & (g->vcap - 1);
        if (g->vmap[i].used) {
            g->vmap[i].ts = now;
            return 0;
        }
        g->vmap[i] = (vslot_t){k, now, 1};
        g->vcount++;
        if (g->vcount < co->threshold && g->vcount * 2 < g->vcap)
            return 0;
        /* Only now are stale values worth dropping: the count is at the threshold, or the
         * table is half full of values that may have left the window. */
        int64_t first = vmap_purge(g, horizon);
        if (g->vcount >= co->threshold) {
            uint64_t count = g->vcount;
            int rc = fire(e, ri, ev, g, key, keylen, first, count);
            group_reset(g);
            return rc;
        }
        return 0;
    }
    case CORR_TEMPORAL: {
        int64_t first = INT64_MAX;
        int all = 1;
        for (uint32_t i = 0; i < co->nitems; i++) {
            if (items[i])
                g->t[i] = now;
            if (g->t[i] == INT64_MIN || g->t[i] <= horizon)
                all = 0;
            else if (g->t[i] < first)
                first = g->t[i];
        }
        if (!all)
            return 0;
        int rc = fire(e, ri, ev, g, key, keylen, first, co->nitems);
        group_reset(g);
        return rc;
    }
    case CORR_TEMPORAL_ORDERED: {
        /* t[i]: start time of the most recent chain that has reached step i. Later steps
         * first, so one event cannot advance a chain by two steps. */
        for (uint32_t i = co->nitems; i-- > 0;) {
            if (!items[i])
                continue;
            if (i == 0)
                g->t[0] = now;
            else if (g->t[i - 1] != INT64_MIN && g->t[i - 1] > horizon)
                g->t[i] = g->t[i - 1];
        }
        int64_t start = g->t[co->nitems - 1];
        if (start == INT64_MIN || start <= horizon)
            return 0;
        int rc = fire(e, ri, ev, g, key, keylen, start, co->nitems);
        group_reset(g);
        return rc;
    }
    default:
        return 0;
    }
}

/* ---- vehicles ----------------------------------------------------------------------- */

/* The vehicle named vin, or NULL when the engine has not seen it. */
static vehicle_t *vehicle_find(vsoc_engine_t *e, const char *vin, size_t n)
{
    if (!e->vcap)
        return NULL;
    size_t h = (size_t)vsoc_hash_bytes(vin, n, 0) & (e->vcap - 1);
    while (e->vtab[h].used) {
        if (e->vtab[h].vinlen == n && key_eq(e->vtab[h].vin, vin, n))
            return &e->vtab[h];
        h = (h + 1) & (e->vcap - 1);
    }
    return NULL;
}

/* Makes room for one more vehicle. Records move: pointers to them (vlast) are dropped.
 * Returns 0 or VSOC_ENOMEM. */
static int vtab_reserve(vsoc_engine_t *e)
{
    if ((e->vcount + 1) * 2 <= e->vcap)
        return 0;
    size_t ncap = e->vcap ? e->vcap * 2 : 64;
    vehicle_t *nt = calloc(ncap, sizeof *nt);
    uint32_t *nd = malloc(ncap * sizeof *nd);
    if (!nt || !nd) {
        free(nt);
        free(nd);
        return VSOC_ENOMEM;
    }
    e->ndirty = 0;
    for (size_t i = 0; i < e->vcap; i++) {
        if (!e->vtab[i].used)
            continue;
        size_t h = (size_t)vsoc_hash_bytes(e->vtab[i].vin, e->vtab[i].vinlen, 0) & (ncap - 1);
        while (nt[h].used)
            h = (h + 1) & (ncap - 1);
        nt[h] = e->vtab[i];
        if (nt[h].dirty)
            nd[e->ndirty++] = (uint32_t)h;
    }
    free(e->vtab);
    free(e->dirty);
    e->vtab = nt;
    e->dirty = nd;
    e->vcap = ncap;
    e->vlast = NULL;
    return 0;
}

/* The free slot for a vehicle the table does not hold (vtab_reserve first), cleared, with
 * its name and a new vid. */
static vehicle_t *vehicle_insert(vsoc_engine_t *e, const char *vin, size_t n)
{
    size_t h = (size_t)vsoc_hash_bytes(vin, n, 0) & (e->vcap - 1);
    while (e->vtab[h].used)
        h = (h + 1) & (e->vcap - 1);
    vehicle_t *v = &e->vtab[h];
    memset(v, 0, sizeof *v);
    if (n)
        memcpy(v->vin, vin, n);
    v->vinlen = (uint8_t)n;
    if (++e->next_vid == 0) /* 0 means "no vehicle"; after 2^32 vehicles ids may repeat,
                               which only marks an opener dirty once too often */
        e->next_vid = 1;
    v->vid = e->next_vid;
    return v;
}

static vehicle_t *vehicle_get(vsoc_engine_t *e, vsoc_str_t vin)
{
    size_t n = vin.n < VIN_MAX ? vin.n : VIN_MAX - 1;
    vehicle_t *l = e->vlast;
    if (l && l->vinlen == n && key_eq(l->vin, vin.p, n))
        return l;
    vehicle_t *found = vehicle_find(e, vin.p, n);
    if (found)
        return e->vlast = found;
    if (vtab_reserve(e) != 0)
        return NULL;
    vehicle_t *v = vehicle_insert(e, vin.p, n);
    if (e->opts.scorer) {
        /* Once per vehicle: scoring then allocates nothing per frame. */
        v->score = malloc(vsoc_scorer_state_bytes(e->opts.scorer));
        if (!v->score)
            return NULL;
        vsoc_scorer_state_init(e->opts.scorer, v->score);
    }
    v->used = 1;
    e->vcount++;
    return e->vlast = v;
}

/* ---- the fast path ------------------------------------------------------------------ */

_Static_assert(VSOC_F_JSON < 32, "integer fields fit the register mask");

/* The integer fields of the event, read once per event for every fast rule it visits.
 * Index: vsoc_field_id_t; regs_ok has a bit for each field the event carries. */
static void load_regs(vsoc_engine_t *e, const vsoc_event_t *ev)
{
    const uint32_t d = ev->derived;
    int64_t *r = e->regs;
    uint32_t ok = 1u << VSOC_F_CAN_ID | 1u << VSOC_F_CAN_EXT | 1u << VSOC_F_CAN_FD |
                  1u << VSOC_F_CAN_RTR | 1u << VSOC_F_CAN_DLC | 1u << VSOC_F_CAN_LEN;
    r[VSOC_F_CAN_ID] = ev->can.id;
    r[VSOC_F_CAN_EXT] = ev->can.ext;
    r[VSOC_F_CAN_FD] = ev->can.fd;
    r[VSOC_F_CAN_RTR] = ev->can.rtr;
    r[VSOC_F_CAN_DLC] = ev->can.dlc;
    r[VSOC_F_CAN_LEN] = ev->can.len;
    if (d & VSOC_HAS_J1939) {
        r[VSOC_F_J1939_PGN] = ev->j1939.pgn;
        r[VSOC_F_J1939_SA] = ev->j1939.sa;
        r[VSOC_F_J1939_DA] = ev->j1939.da;
        r[VSOC_F_J1939_PRIORITY] = ev->j1939.priority;
        ok |= 1u << VSOC_F_J1939_PGN | 1u << VSOC_F_J1939_SA | 1u << VSOC_F_J1939_DA |
              1u << VSOC_F_J1939_PRIORITY;
    }
    if (d & VSOC_HAS_UDS) {
        r[VSOC_F_UDS_SID] = ev->uds.sid;
        r[VSOC_F_UDS_REQ_SID] = ev->uds.req_sid;
        ok |= 1u << VSOC_F_UDS_SID | 1u << VSOC_F_UDS_REQ_SID;
    }
    if (d & VSOC_HAS_UDS_NRC) {
        r[VSOC_F_UDS_NRC] = ev->uds.nrc;
        ok |= 1u << VSOC_F_UDS_NRC;
    }
    if (d & VSOC_HAS_UDS_SUB) {
        r[VSOC_F_UDS_SUB] = ev->uds.sub;
        ok |= 1u << VSOC_F_UDS_SUB;
    }
    if (d & VSOC_HAS_UDS_DID) {
        r[VSOC_F_UDS_DID] = ev->uds.did;
        ok |= 1u << VSOC_F_UDS_DID;
    }
    if (d & VSOC_HAS_SPEED) {
        r[VSOC_F_VEHICLE_STATE_AGE] = ev->state_age_us / 1000;
        ok |= 1u << VSOC_F_VEHICLE_STATE_AGE;
    }
    if (d & VSOC_HAS_BASELINE) {
        r[VSOC_F_BASELINE_REASONS] = ev->baseline_reasons;
        ok |= 1u << VSOC_F_BASELINE_REASONS;
    }
    /* can.data[N:M] reads 8 bytes from N: copy the payload into a zero-padded buffer. */
    memcpy(e->payload, ev->can.data, VSOC_CAN_MAX_LEN);
    ok |= 1u << VSOC_F_CAN_BYTES;
    e->regs_ok = ok;
    e->regs_ready = 1;
}

/* An AND of integer comparisons, read from the ruleset's packed arrays. */
static int eval_fast(vsoc_engine_t *e, const rulehdr_t *h, const vsoc_event_t *ev)
{
    const vsoc_ruleset_t *rs = e->rs;
    if (!e->regs_ready)
        load_regs(e, ev);
    const fastop_t *o = rs->ops + h->op_off, *end = o + h->nops;
    for (; o < end; o++) {
        /* Both readings are computed and one is kept: no branch on the field, which
         * changes from rule to rule and would mispredict. */
        uint64_t w;
        memcpy(&w, e->payload + o->lo, 8);
        int64_t bytes = (int64_t)(__builtin_bswap64(w) >> o->shift);
        int is_bytes = o->field == VSOC_F_CAN_BYTES;
        int64_t x = is_bytes ? bytes : e->regs[o->field];
        if (!((e->regs_ok >> o->field) & 1) | (ev->can.len < o->hi))
            return 0;
        const fastval_t *v = rs->vals + o->voff, *vend = v + o->nvals;
        int hit = o->all;
        for (; v < vend; v++) {
            int64_t y = x & v->mask;
            int ok = y >= v->lo && y <= v->hi;
            if (ok != o->all) {
                hit = ok;
                break;
            }
        }
        if (!hit)
            return 0;
    }
    return 1;
}

/* ---- candidates --------------------------------------------------------------------- */

static size_t candidates(vsoc_engine_t *e, const vsoc_event_t *ev, const uint32_t **out)
{
    if (ev->kind != VSOC_EVENT_CAN || !e->ctab) {
        *out = e->cand;
        return vsoc_index_candidates(e->rs, ev, e->cand);
    }
    uint32_t key = ev->can.id | (uint32_t)ev->can.ext << 31;
    size_t mask = e->ccap - 1, i = (size_t)vsoc_hash_u64(key) & mask;
    for (; e->ctab[i].key != CSLOT_EMPTY; i = (i + 1) & mask) {
        if (e->ctab[i].key == key) {
            *out = e->cpool + e->ctab[i].off;
            return e->ctab[i].n;
        }
    }
    size_t n = vsoc_index_candidates(e->rs, ev, e->cand);
    /* Drop rules whose category this identifier can never carry (UDS rules on a non-
     * diagnostic ID, J1939 rules on an 11-bit ID): most of a pack, for most frames. */
    int diag = vsoc_decode_is_diag_id(ev->can.id, ev->can.ext);
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        const rulehdr_t *r = &e->rs->hdr[e->cand[j]];
        if (((r->need & VSOC_HAS_UDS) && !diag) || ((r->need & VSOC_HAS_J1939) && !ev->can.ext))
            continue;
        e->cand[k++] = e->cand[j];
    }
    n = k;
    *out = e->cand;
    /* A full cache (fuzzing sends every identifier) just stops caching. */
    if (e->ccount >= CAND_CACHE_MAX)
        return n;
    if (!e->cpool || e->cpool_n + n > e->cpool_cap) {
        size_t ncap = e->cpool_cap * 2 + n + 1024;
        uint32_t *np = realloc(e->cpool, ncap * sizeof *np);
        if (!np)
            return n;
        e->cpool = np;
        e->cpool_cap = ncap;
    }
    memcpy(e->cpool + e->cpool_n, e->cand, n * sizeof *e->cand);
    e->ctab[i] = (cslot_t){key, (uint32_t)e->cpool_n, (uint32_t)n};
    e->cpool_n += n;
    e->ccount++;
    return n;
}

/* ---- the engine --------------------------------------------------------------------- */

vsoc_engine_t *vsoc_engine_new(vsoc_ruleset_t *rs, const vsoc_engine_opts_t *opts, char *err,
                               size_t errlen)
{
    vsoc_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        goto nomem;
    e->rs = vsoc_ruleset_ref(rs);
    if (opts)
        e->opts = *opts;
    size_t n = rs->n ? rs->n : 1;
    uint32_t maxdets = 1;
    for (size_t i = 0; i < rs->n; i++) {
        if (rs->rules[i]->ndets > maxdets)
            maxdets = rs->rules[i]->ndets;
    }
    e->stats = calloc(n, sizeof *e->stats);
    e->cand = calloc(2 * n, sizeof *e->cand);
    e->glast = calloc(2 * n, sizeof *e->glast);
    e->detmemo = calloc(maxdets, 1);
    e->md = pcre2_match_data_create(1, NULL);
    e->mctx = pcre2_match_context_create(NULL);
    if (!e->stats || !e->cand || !e->glast || !e->detmemo || !e->md || !e->mctx)
        goto nomem;
    pcre2_set_match_limit(e->mctx, e->opts.regex_match_limit ? e->opts.regex_match_limit : 100000);
    pcre2_set_depth_limit(e->mctx, 10000);
    e->next_sweep = INT64_MIN;
    /* Twice the cache's limit keeps probes short; allocated once, up front. */
    e->ccap = 2 * CAND_CACHE_MAX;
    e->ctab = malloc(e->ccap * sizeof *e->ctab);
    if (!e->ctab)
        goto nomem;
    memset(e->ctab, 0xFF, e->ccap * sizeof *e->ctab);
    return e;
nomem:
    snprintf(err, errlen, "out of memory creating the engine");
    vsoc_engine_free(e);
    return NULL;
}

void vsoc_engine_free(vsoc_engine_t *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->gcap; i++)
        group_free(e->gtab[i]);
    free(e->gtab);
    free(e->ghash);
    free(e->glast);
    for (size_t i = 0; i < e->vcap; i++)
        if (e->vtab[i].used)
            free(e->vtab[i].score);
    free(e->vtab);
    free(e->dirty);
    free(e->stats);
    free(e->cand);
    free(e->ctab);
    free(e->cpool);
    free(e->detmemo);
    free(e->rfp);
    free(e->rids);
    free(e->sbuf);
    free(e->sgroups);
    pcre2_match_data_free(e->md);
    pcre2_match_context_free(e->mctx);
    vsoc_ruleset_unref(e->rs);
    free(e);
}

/* ---- fleet hits --------------------------------------------------------------------- */

/* The group of a fleet_count rule is the vehicle: its key is built like a group-by [vin]. */
static const vsoc_field_t vin_field = {.id = VSOC_F_VIN, .type = VSOC_FT_STR};

/* A fleet_count rule's match: a per-vehicle hit for the caller's fleet counter (fleet.h),
 * throttled to one per vehicle per timespan/16 of event time, because the counter only needs
 * each vehicle's latest hit and a CAN rule can match thousands of frames a second. The
 * vehicle's group keeps the time of its last hit; it is swept like any correlation group
 * once that is older than the timespan. Returns 1 (a hit), 0 (throttled) or VSOC_ENOMEM. */
static int fleet_hit(vsoc_engine_t *e, uint32_t ri, const vsoc_event_t *ev)
{
    const vsoc_rule_t *r = e->rs->rules[ri];
    char key[GROUP_KEY_MAX];
    size_t keylen = build_key(e, &vin_field, 1, ev, key);
    group_t *g = group_get(e, ri, G_CORR, key, keylen);
    if (!g)
        return VSOC_ENOMEM;
    const int64_t span = r->corr.span_us, every = span / 16;
    /* Emitted: the vehicle's first match, a match timespan/16 after its last hit, or one
     * from more than a timespan before it (time went back: a second capture). */
    if (g->seen && ev->ts_us >= g->last_ts - span && ev->ts_us - g->last_ts < every)
        return 0;
    g->seen = 1;
    g->last_ts = ev->ts_us;
    if (!e->opts.on_alert)
        return 1;
    vsoc_alert_t a;
    memset(&a, 0, sizeof a);
    a.rule = r;
    a.fleet_hit = 1;
    a.time_us = a.first_us = a.last_us = ev->ts_us;
    a.count = 1;
    a.vin = ev->vin;
    a.event = ev;
    make_uid(r, key, keylen, ev->ts_us, ev, a.uid);
    a.samples[0] = ev->line;
    a.nsamples = 1;
    e->opts.on_alert(e->opts.ctx, &a);
    return 1;
}

/* A rule whose condition holds: an alert for a plain rule, a window step for a correlation,
 * a hit for a fleet_count rule. */
static int on_match(vsoc_engine_t *e, uint32_t ri, const rulehdr_t *h, const vsoc_event_t *ev,
                    const int *items)
{
    e->stats[ri].matches++;
    if (h->corr == CORR_FLEET_COUNT)
        return fleet_hit(e, ri, ev);
    if (h->corr != CORR_NONE)
        return correlate(e, ri, ev, items);
    char key[GROUP_KEY_MAX];
    size_t kl = build_key(e, NULL, 0, ev, key);
    return fire(e, ri, ev, NULL, key, kl, ev->ts_us, 1);
}

/* Evaluates one candidate rule on the event. Returns alerts raised or VSOC_ENOMEM. */
static int visit_rule(vsoc_engine_t *e, uint32_t ri, const rulehdr_t *h, const vsoc_event_t *ev)
{
    e->stats[ri].evals++;
    if (h->fast)
        return eval_fast(e, h, ev) ? on_match(e, ri, h, ev, NULL) : 0;
    const vsoc_rule_t *r = e->rs->rules[ri];
    memset(e->detmemo, 0, r->ndets);
    if (h->corr != CORR_TEMPORAL && h->corr != CORR_TEMPORAL_ORDERED)
        return r->root >= 0 && eval_node(e, r, (uint32_t)r->root, ev, ri)
                   ? on_match(e, ri, h, ev, NULL)
                   : 0;
    if (r->root >= 0 && !eval_node(e, r, (uint32_t)r->root, ev, ri))
        return 0;
    int items[VSOC_MAX_ITEMS], any = 0;
    for (uint32_t i = 0; i < r->corr.nitems; i++) {
        uint32_t d = r->corr.items[i];
        if (!e->detmemo[d])
            e->detmemo[d] = eval_det(e, &r->dets[d], ev, ri) ? 2 : 1;
        items[i] = e->detmemo[d] == 2;
        any |= items[i];
    }
    return any ? on_match(e, ri, h, ev, items) : 0;
}

/* Matches one (decoded, scored) event against its candidate rules. Returns alerts raised,
 * or VSOC_ENOMEM. */
static int match_event(vsoc_engine_t *e, const vsoc_event_t *ev)
{
    const vsoc_ruleset_t *rs = e->rs;
    e->regs_ready = 0;
    const uint32_t *cand;
    size_t nc = candidates(e, ev, &cand);
    const int timed = e->opts.clock_ns && (e->events & 63) == 0;
    int alerts = 0, oom = 0;
    for (size_t c = 0; c < nc; c++) {
        uint32_t ri = cand[c];
        const rulehdr_t *h = &rs->hdr[ri];
        if (h->kind != ev->kind || (ev->derived & h->need) != h->need)
            continue;
        uint64_t t0 = timed ? e->opts.clock_ns() : 0;
        int rc = visit_rule(e, ri, h, ev);
        if (rc < 0)
            oom = 1;
        else
            alerts += rc;
        if (timed)
            e->stats[ri].ns += (e->opts.clock_ns() - t0) * 64;
    }
    return oom ? VSOC_ENOMEM : alerts;
}

/* Messages of the vehicle that went silent by now become synthetic events (reason
 * "missing"), matched before the event that revealed the time. Checked at most every
 * MISSING_CHECK_US of event time per vehicle: a walk over the baseline's IDs. */
static int match_missing(vsoc_engine_t *e, vehicle_t *veh, const vsoc_event_t *ev)
{
    if (ev->ts_us < veh->next_missing && ev->ts_us >= veh->next_missing - 2 * MISSING_CHECK_US)
        return 0;
    veh->next_missing = ev->ts_us + MISSING_CHECK_US;
    size_t idx[16];
    int alerts = 0;
    for (;;) {
        size_t n = vsoc_scorer_missing(e->opts.scorer, veh->score, ev->ts_us, idx, 16);
        for (size_t i = 0; i < n; i++) {
            vsoc_event_t m;
            vsoc_event_clear(&m);
            vsoc_scorer_missing_event(e->opts.scorer, veh->score, idx[i], ev->ts_us, &m);
            vsoc_decode(&m);
            m.derived |= VSOC_HAS_BASELINE;
            m.vin = ev->vin;
            m.source = ev->source;
            char text[96];
            int tn = snprintf(text, sizeof text, "(%lld.%06lld) %.*s %0*X missing",
                              (long long)(m.ts_us / 1000000), (long long)(m.ts_us % 1000000),
                              (int)m.bus.n, m.bus.p, m.can.ext ? 8 : 3, (unsigned)m.can.id);
            m.line.p = text;
            m.line.n = tn > 0 ? (size_t)tn : 0;
            int rc = match_event(e, &m);
            if (rc < 0)
                return rc;
            alerts += rc;
        }
        if (n < 16)
            return alerts;
    }
}

int vsoc_engine_process(vsoc_engine_t *e, vsoc_event_t *ev)
{
    e->events++;
    e->clock_known = 1;
    vsoc_decode(ev);
    vehicle_t *veh = vehicle_get(e, ev->vin);
    if (veh && veh->blank)
        veh->blank = 0; /* forgotten, then seen again: it starts afresh */
    /* Groups opened from here on (by the synthetic events of missing messages too) belong
     * to this vehicle. */
    e->cur_vin = ev->vin;
    e->cur_veh = veh;
    e->cur_vid = veh ? veh->vid : 0;
    int missing = 0;
    if (veh) {
        double kph;
        if (vsoc_decode_speed(ev, &kph)) {
            veh->speed_kph = kph;
            veh->speed_ts = ev->ts_us;
            veh->has_speed = 1;
        }
        /* Only CAN traffic tells that a CAN message is missing: IDS events of the vehicle
         * go on after a capture of its bus ends. */
        if (veh->score && ev->kind == VSOC_EVENT_CAN) {
            vsoc_scorer_score(e->opts.scorer, veh->score, ev);
            missing = match_missing(e, veh, ev);
        }
        if (veh->has_speed) {
            ev->speed_kph = veh->speed_kph;
            /* A reading from later in the capture (out-of-order input) is not fresher than
             * one taken now. */
            ev->state_age_us = ev->ts_us > veh->speed_ts ? ev->ts_us - veh->speed_ts : 0;
            ev->derived |= VSOC_HAS_SPEED;
        }
    }
    /* Sweeps follow the newest time of any vehicle; a vehicle whose own time went back
     * (a second capture of it) is swept at once, so its old timeline's groups are gone
     * before its new one matches; and a sweep comes every SWEEP_EVENTS events anyway. */
    int back = 0;
    if (veh) {
        back = veh->used && ev->ts_us < veh->now_ts - 2 * SWEEP_EVERY_US;
        veh->now_ts = ev->ts_us;
        veh->seen_sweep = e->sweeps;
        if (!veh->dirty) /* once per vehicle between two snapshots */
            mark_dirty(e, veh);
    }
    if (e->max_ts < ev->ts_us || e->next_sweep == INT64_MIN)
        e->max_ts = ev->ts_us;
    if (e->gcount && (back || e->max_ts >= e->next_sweep || ++e->since_sweep >= SWEEP_EVENTS)) {
        if (e->next_sweep != INT64_MIN)
            sweep(e);
        e->next_sweep = e->max_ts + SWEEP_EVERY_US;
    }
    int rc = match_event(e, ev);
    if (rc < 0 || missing < 0)
        return VSOC_ENOMEM;
    return rc + missing;
}


/* ---- snapshots ---------------------------------------------------------------------- */

/* A vehicle's state as a self-contained blob (engine.h, docs/design.md "Engine state
 * snapshots"). Little-endian, no pointers; every count is checked against the bytes left
 * and the engine's limits before it is used, and a restore applies nothing until the whole
 * blob has parsed. Bump VSE_VERSION whenever the bytes written change meaning: the form of
 * a group key, of the value hashes of value_count (vsoc_hash_*), or of any field here. */
#define VSE_VERSION 1
#define VSE_TIME_LIMIT (INT64_C(1) << 62) /* times beyond this (146,000 years) are refused:
                                               the engine adds spans to them */
#define VSE_ID_MAX 65535
/* The least a group takes: a 1-byte id, an empty key, no ring, values, items or samples. */
#define VSE_GROUP_MIN (2 + 1 + 8 + 1 + 2 + 1 + 4 * 8 + 4 + 4 + 1 + 1)

typedef struct rid {
    const char *id;
    size_t len;
    uint32_t rule;
} rid_t;


static void fp_str(uint64_t *h, const char *s)
{
    if (!s) {
        vsoc_fp_u64(h, UINT64_MAX);
        return;
    }
    size_t n = strlen(s);
    vsoc_fp_u64(h, n);
    vsoc_fp_bytes(h, s, n);
}

static void fp_field(uint64_t *h, const vsoc_field_t *f)
{
    vsoc_fp_u64(h, f->id);
    vsoc_fp_u64(h, f->type);
    vsoc_fp_u64(h, (uint64_t)f->lo | (uint64_t)f->hi << 8 | (uint64_t)f->kinds << 16);
    fp_str(h, f->name);
    vsoc_fp_u64(h, f->npath);
    for (unsigned i = 0; i < f->npath && i < VSOC_FIELD_MAX_PATH; i++)
        fp_str(h, f->path[i]);
}

/* The fingerprint of what decides a rule's groups: the event kind and categories it
 * applies to, its detections, condition, correlation and suppression. Its title, level,
 * tags, description, file and tests are left out, so editing those keeps the state. */
static uint64_t rule_fingerprint(const vsoc_rule_t *r)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    vsoc_fp_bytes(&h, "vsoc-rule-1", 11);
    vsoc_fp_u64(&h, r->kind);
    vsoc_fp_u64(&h, r->need);
    vsoc_fp_u64(&h, r->ndets);
    for (uint32_t d = 0; d < r->ndets; d++) {
        const det_t *det = &r->dets[d];
        fp_str(&h, det->name);
        vsoc_fp_u64(&h, det->nalt);
        for (uint32_t a = 0; a < det->nalt; a++) {
            const alt_t *alt = &det->alts[a];
            vsoc_fp_u64(&h, alt->n);
            for (uint32_t m = 0; m < alt->n; m++) {
                const fmatch_t *fm = &alt->m[m];
                fp_field(&h, &fm->field);
                vsoc_fp_u64(&h, fm->op);
                unsigned char fl[5] = {fm->all, fm->cased, fm->bits, fm->fast, fm->bits_le};
                vsoc_fp_bytes(&h, fl, sizeof fl);
                vsoc_fp_u64(&h, (uint64_t)fm->bits_start | (uint64_t)fm->bits_len << 16);
                vsoc_fp_u64(&h, fm->nvals);
                for (uint32_t v = 0; v < fm->nvals; v++) {
                    const cval_t *c = &fm->vals[v];
                    vsoc_fp_u64(&h, c->kind);
                    vsoc_fp_u64(&h, (uint64_t)(int64_t)c->has_num);
                    vsoc_fp_u64(&h, (uint64_t)c->i);
                    vsoc_fp_u64(&h, (uint64_t)c->i2);
                    vsoc_fp_f64(&h, c->f);
                    vsoc_fp_f64(&h, c->f2);
                    vsoc_fp_u64(&h, c->s ? c->n : UINT64_MAX);
                    if (c->s)
                        vsoc_fp_bytes(&h, c->s, c->n);
                    unsigned char cf[3] = {(unsigned char)c->glob, c->family, c->prefix};
                    vsoc_fp_bytes(&h, cf, sizeof cf);
                    vsoc_fp_bytes(&h, c->addr, sizeof c->addr);
                }
            }
        }
    }
    vsoc_fp_u64(&h, r->nnodes);
    for (uint32_t i = 0; i < r->nnodes; i++) {
        vsoc_fp_u64(&h, r->nodes[i].op);
        vsoc_fp_u64(&h, r->nodes[i].det);
        vsoc_fp_u64(&h, (uint64_t)r->nodes[i].a | (uint64_t)r->nodes[i].b << 32);
    }
    vsoc_fp_u64(&h, (uint64_t)(int64_t)r->root);
    const corr_t *co = &r->corr;
    vsoc_fp_u64(&h, co->type);
    vsoc_fp_u64(&h, co->ngroup);
    for (uint32_t i = 0; i < co->ngroup && i < VSOC_MAX_GROUP_BY; i++)
        fp_field(&h, &co->group_by[i]);
    vsoc_fp_u64(&h, (uint64_t)co->span_us);
    vsoc_fp_u64(&h, co->threshold);
    fp_field(&h, &co->value_field);
    vsoc_fp_u64(&h, co->nitems);
    for (uint32_t i = 0; i < co->nitems && i < VSOC_MAX_ITEMS; i++)
        vsoc_fp_u64(&h, co->items[i]);
    vsoc_fp_u64(&h, (uint64_t)(int64_t)r->sup.on);
    vsoc_fp_u64(&h, r->sup.ngroup);
    for (uint32_t i = 0; i < r->sup.ngroup && i < VSOC_MAX_GROUP_BY; i++)
        fp_field(&h, &r->sup.group_by[i]);
    vsoc_fp_u64(&h, (uint64_t)r->sup.for_us);
    return h;
}

/* Identifies the value hashes of value_count (value_key): a blob's maps only mean the same
 * values to a build whose hash functions give the same probe. */
static uint64_t hash_probe(void)
{
    return vsoc_hash_bytes("vsoc value hash", 15, 0x99) ^ vsoc_hash_u64(0x1234567ULL) ^
           vsoc_hash_u64(0x7654321ULL);
}

static int rid_cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int rid_cmp(const void *x, const void *y)
{
    const rid_t *a = x, *b = y;
    return rid_cmp_bytes(a->id, a->len, b->id, b->len);
}

/* Rule fingerprints and the by-id lookup, computed at the first snapshot or restore (the
 * ruleset never changes under an engine). Returns 0 or VSOC_ENOMEM. */
static int snap_prepare(vsoc_engine_t *e)
{
    if (e->rfp)
        return 0;
    size_t n = e->rs->n;
    uint64_t *fp = malloc((n ? n : 1) * sizeof *fp);
    rid_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!fp || !ids) {
        free(fp);
        free(ids);
        return VSOC_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const vsoc_rule_t *r = e->rs->rules[i];
        fp[i] = rule_fingerprint(r);
        size_t len = strlen(r->id);
        ids[i] = (rid_t){r->id, len > VSE_ID_MAX ? VSE_ID_MAX : len, (uint32_t)i};
    }
    qsort(ids, n, sizeof *ids, rid_cmp);
    e->rfp = fp;
    e->rids = ids;
    return 0;
}

/* The index of the rule with this id, or -1. */
static long rule_by_id(const vsoc_engine_t *e, const uint8_t *id, size_t n)
{
    size_t lo = 0, hi = e->rs->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = rid_cmp_bytes((const char *)id, n, e->rids[mid].id, e->rids[mid].len);
        if (c == 0)
            return e->rids[mid].rule;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* ---- writing ---- */

/* Appends to p, or only counts when p is NULL (sizing a blob before writing it). */
typedef struct wbuf {
    uint8_t *p;
    size_t n;
} wbuf_t;

static void w_bytes(wbuf_t *w, const void *src, size_t n)
{
    if (w->p && n)
        memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void w_le(wbuf_t *w, uint64_t x, int bytes)
{
    if (w->p)
        for (int i = 0; i < bytes; i++)
            w->p[w->n + (size_t)i] = (uint8_t)(x >> (8 * i));
    w->n += (size_t)bytes;
}

typedef struct sref {
    const char *id;
    size_t idlen;
    group_t *g;
} sref_t;

/* The order of groups in a blob: rule id, kind, key (bytes, then length). One order for
 * writer and reader makes a blob canonical and lets the reader refuse repeats. */
static int gorder(const char *ia, size_t na, uint8_t ka, const char *kya, size_t kna,
                  const char *ib, size_t nb, uint8_t kb, const char *kyb, size_t knb)
{
    int c = rid_cmp_bytes(ia, na, ib, nb);
    if (c)
        return c;
    if (ka != kb)
        return ka < kb ? -1 : 1;
    return rid_cmp_bytes(kya, kna, kyb, knb);
}

static int sref_cmp(const void *x, const void *y)
{
    const sref_t *a = x, *b = y;
    return gorder(a->id, a->idlen, a->g->kind, a->g->key, a->g->keylen, b->id, b->idlen,
                  b->g->kind, b->g->key, b->g->keylen);
}

static int vslot_cmp(const void *x, const void *y)
{
    const vslot_t *a = x, *b = y;
    return (a->key > b->key) - (a->key < b->key);
}

static void write_group(vsoc_engine_t *e, group_t *g, const char *id, size_t idlen, wbuf_t *w)
{
    const vsoc_rule_t *r = e->rs->rules[g->rule];
    w_le(w, idlen, 2);
    w_bytes(w, id, idlen);
    w_le(w, e->rfp[g->rule], 8);
    w_le(w, g->kind, 1);
    w_le(w, g->keylen, 2);
    w_bytes(w, g->key, g->keylen);
    w_le(w, g->seen, 1);
    w_le(w, (uint64_t)g->last_ts, 8);
    w_le(w, (uint64_t)g->since, 8);
    w_le(w, (uint64_t)g->until, 8);
    w_le(w, g->held, 8);
    w_le(w, g->n, 4);
    for (uint32_t i = 0, at = g->head; i < g->n; i++, at = ring_next(g, at))
        w_le(w, (uint64_t)g->ring[at], 8);
    /* The values sorted by hash, in the map's scratch half (purging overwrites it anyway),
     * so that the same values give the same bytes whatever their slots. Counted from the
     * slots in both passes, so sizing and writing agree whatever vcount says. */
    uint32_t nv = 0;
    for (uint32_t i = 0; i < g->vcap; i++)
        if (g->vmap[i].used) {
            if (w->p)
                g->vmap[g->vcap + nv] = g->vmap[i];
            nv++;
        }
    w_le(w, nv, 4);
    if (!w->p) {
        w->n += 16 * (size_t)nv;
    } else if (nv) {
        vslot_t *tmp = g->vmap + g->vcap;
        qsort(tmp, nv, sizeof *tmp, vslot_cmp);
        for (uint32_t i = 0; i < nv; i++) {
            w_le(w, tmp[i].key, 8);
            w_le(w, (uint64_t)tmp[i].ts, 8);
        }
    }
    uint32_t nt = 0;
    if (g->kind == G_CORR &&
        (r->corr.type == CORR_TEMPORAL || r->corr.type == CORR_TEMPORAL_ORDERED))
        nt = r->corr.nitems;
    w_le(w, nt, 1);
    for (uint32_t i = 0; i < nt; i++)
        w_le(w, (uint64_t)g->t[i], 8);
    w_le(w, g->nsamples, 1);
    for (unsigned i = 0; i < g->nsamples; i++) {
        const sample_t *s = &g->samples[(g->shead + i) % VSOC_ALERT_SAMPLES];
        w_le(w, (uint64_t)s->ts, 8);
        w_le(w, s->n, 2);
        w_bytes(w, s->text, s->n);
    }
}

/* Writes (or, with w->p NULL, sizes) the blob of v. refs has room for v's groups when
 * writing; it receives them sorted. */
static void write_blob(vsoc_engine_t *e, const vehicle_t *v, wbuf_t *w, sref_t *refs)
{
    const vsoc_scorer_t *sc = e->opts.scorer;
    const int has_score = sc && v->score;
    w_bytes(w, "VSE1", 4);
    w_le(w, VSE_VERSION, 4);
    w_le(w, (uint64_t)e->max_ts, 8);
    w_le(w, (uint64_t)e->next_sweep, 8);
    w_le(w, e->since_sweep, 4);
    w_le(w, e->sweeps + e->sweeps_off, 8);
    w_le(w, hash_probe(), 8);
    w_le(w, v->vinlen, 1);
    w_bytes(w, v->vin, v->vinlen);
    w_le(w, (v->has_speed ? 1u : 0u) | (has_score ? 2u : 0u), 1);
    w_le(w, (uint64_t)v->now_ts, 8);
    /* The vehicle's silence in sweeps, not the engine's sweep count: counts differ between
     * engines, and only the difference decides staleness. */
    uint64_t idle = e->sweeps - v->seen_sweep;
    w_le(w, idle > STALE_SWEEPS + 1 ? STALE_SWEEPS + 1 : idle, 8);
    w_le(w, (uint64_t)v->next_missing, 8);
    uint64_t kph;
    memcpy(&kph, &v->speed_kph, 8);
    w_le(w, kph, 8);
    w_le(w, (uint64_t)v->speed_ts, 8);
    if (has_score) {
        size_t sn = vsoc_scorer_state_saved_bytes(sc, v->score);
        w_le(w, vsoc_scorer_fingerprint(sc), 8);
        w_le(w, sn, 4);
        if (w->p)
            vsoc_scorer_state_save(sc, v->score, w->p + w->n);
        w->n += sn;
    }
    uint32_t k = 0;
    for (group_t *g = v->groups; g; g = g->vnext) {
        if (refs) {
            const char *id = e->rs->rules[g->rule]->id;
            size_t len = strlen(id);
            refs[k] = (sref_t){id, len > VSE_ID_MAX ? VSE_ID_MAX : len, g};
        }
        k++;
    }
    w_le(w, k, 4);
    if (!refs) {
        for (group_t *g = v->groups; g; g = g->vnext) {
            size_t len = strlen(e->rs->rules[g->rule]->id);
            write_group(e, g, NULL, len > VSE_ID_MAX ? VSE_ID_MAX : len, w);
        }
        return;
    }
    qsort(refs, k, sizeof *refs, sref_cmp);
    for (uint32_t i = 0; i < k; i++)
        write_group(e, refs[i].g, refs[i].id, refs[i].idlen, w);
}

int vsoc_engine_snapshot(vsoc_engine_t *e, int all,
                         int (*fn)(void *ctx, const char *vin, size_t vinlen, const void *blob,
                                   size_t n),
                         void *ctx)
{
    if (!fn)
        return VSOC_EINVAL;
    if (snap_prepare(e) != 0)
        return VSOC_ENOMEM;
    /* The vehicles to write: the dirty list, or with all the whole table. */
    const size_t count = all ? e->vcap : e->ndirty;
#define SNAP_VEHICLE(k) (all ? &e->vtab[k] : &e->vtab[e->dirty[k]])
    /* Size every blob first: all memory is had before fn is first called, so a failure
     * never leaves a checkpoint half reported. */
    size_t maxn = 0, maxg = 0;
    for (size_t k = 0; k < count; k++) {
        const vehicle_t *v = SNAP_VEHICLE(k);
        if (!v->used || v->blank)
            continue;
        wbuf_t w = {NULL, 0};
        write_blob(e, v, &w, NULL);
        size_t ng = 0;
        for (const group_t *g = v->groups; g; g = g->vnext)
            ng++;
        if (w.n > maxn)
            maxn = w.n;
        if (ng > maxg)
            maxg = ng;
    }
    if (maxn > e->scap) {
        uint8_t *nb = realloc(e->sbuf, maxn);
        if (!nb)
            return VSOC_ENOMEM;
        e->sbuf = nb;
        e->scap = maxn;
    }
    if (maxg > e->sgcap) {
        sref_t *nr = realloc(e->sgroups, maxg * sizeof *nr);
        if (!nr)
            return VSOC_ENOMEM;
        e->sgroups = nr;
        e->sgcap = maxg;
    }
    for (size_t k = 0; k < count; k++) {
        const vehicle_t *v = SNAP_VEHICLE(k);
        if (!v->used || v->blank)
            continue;
        wbuf_t w = {e->sbuf, 0};
        write_blob(e, v, &w, e->sgroups);
        int rc = fn(ctx, v->vin, v->vinlen, e->sbuf, w.n);
        if (rc != 0)
            return rc; /* no flag cleared: the next call reports these vehicles again */
    }
#undef SNAP_VEHICLE
    for (size_t k = 0; k < e->ndirty; k++)
        e->vtab[e->dirty[k]].dirty = 0;
    e->ndirty = 0;
    e->marked_vid = 0;
    return 0;
}

/* ---- reading ---- */

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
    char *err;
    size_t errlen;
} rbuf_t;

static int r_fail(rbuf_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records why the blob is refused (the first reason only) and returns 0. */
static int r_fail(rbuf_t *r, const char *fmt, ...)
{
    if (r->err && r->errlen && !r->err[0]) {
        int k = snprintf(r->err, r->errlen, "engine snapshot, byte %zu: ", r->off);
        if (k >= 0 && (size_t)k < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + k, r->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return 0;
}

static int r_take(rbuf_t *r, size_t k, const uint8_t **out, const char *what)
{
    if (k > r->n - r->off)
        return r_fail(r, "truncated: %s needs %zu bytes, %zu left", what, k, r->n - r->off);
    *out = r->p + r->off;
    r->off += k;
    return 1;
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t x = 0;
    for (int i = 0; i < bytes; i++)
        x |= (uint64_t)p[i] << (8 * i);
    return x;
}

static int r_u(rbuf_t *r, int bytes, uint64_t *x, const char *what)
{
    const uint8_t *p = NULL;
    if (!r_take(r, (size_t)bytes, &p, what))
        return 0;
    *x = get_le(p, bytes);
    return 1;
}

static int time_ok(int64_t t, int unset_ok)
{
    return (unset_ok && t == INT64_MIN) || (t >= -VSE_TIME_LIMIT && t <= VSE_TIME_LIMIT);
}

/* A time; INT64_MIN ("not yet") is accepted where unset_ok. */
static int r_time(rbuf_t *r, int64_t *t, int unset_ok, const char *what)
{
    uint64_t x;
    if (!r_u(r, 8, &x, what))
        return 0;
    *t = (int64_t)x;
    if (!time_ok(*t, unset_ok))
        return r_fail(r, "%s %lld is out of range", what, (long long)*t);
    return 1;
}

typedef struct vhead {
    int64_t max_ts, next_sweep;
    uint64_t since_sweep, sweeps, probe;
    const uint8_t *vin;
    uint64_t vinlen, flags, idle, score_fp, ngroups;
    int64_t now_ts, next_missing, speed_ts;
    double speed_kph;
    const uint8_t *score;
    uint64_t scorelen;
} vhead_t;

static int read_head(rbuf_t *r, vhead_t *h)
{
    const uint8_t *magic = NULL;
    uint64_t version, kph;
    if (!r_take(r, 4, &magic, "magic"))
        return 0;
    if (memcmp(magic, "VSE1", 4) != 0)
        return r_fail(r, "not an engine snapshot (magic is not VSE1)");
    if (!r_u(r, 4, &version, "version"))
        return 0;
    if (version != VSE_VERSION)
        return r_fail(r, "format version %llu, this build reads %d", (unsigned long long)version,
                      VSE_VERSION);
    if (!r_time(r, &h->max_ts, 0, "engine time") ||
        !r_time(r, &h->next_sweep, 1, "next sweep") ||
        !r_u(r, 4, &h->since_sweep, "events since sweep"))
        return 0;
    if (h->since_sweep >= SWEEP_EVENTS)
        return r_fail(r, "events since sweep %llu over %u", (unsigned long long)h->since_sweep,
                      SWEEP_EVENTS);
    if (!r_u(r, 8, &h->sweeps, "sweep count") || !r_u(r, 8, &h->probe, "hash probe") || !r_u(r, 1, &h->vinlen, "vin length"))
        return 0;
    if (h->vinlen >= VIN_MAX)
        return r_fail(r, "vin length %llu over %d", (unsigned long long)h->vinlen, VIN_MAX - 1);
    if (!r_take(r, h->vinlen, &h->vin, "vin") || !r_u(r, 1, &h->flags, "flags"))
        return 0;
    if (h->flags > 3)
        return r_fail(r, "unknown flags 0x%llx", (unsigned long long)h->flags);
    if (!r_time(r, &h->now_ts, 0, "vehicle time") || !r_u(r, 8, &h->idle, "idle sweeps"))
        return 0;
    if (h->idle > STALE_SWEEPS + 1)
        return r_fail(r, "idle sweeps %llu over %d", (unsigned long long)h->idle,
                      STALE_SWEEPS + 1);
    if (!r_time(r, &h->next_missing, 0, "next missing check") ||
        !r_u(r, 8, &kph, "speed"))
        return 0;
    memcpy(&h->speed_kph, &kph, 8);
    if (!(h->speed_kph == h->speed_kph && h->speed_kph - h->speed_kph == 0))
        return r_fail(r, "speed is not a finite number");
    if (!r_time(r, &h->speed_ts, 0, "speed time"))
        return 0;
    h->score = NULL;
    h->scorelen = 0;
    if (h->flags & 2) {
        if (!r_u(r, 8, &h->score_fp, "baseline fingerprint") ||
            !r_u(r, 4, &h->scorelen, "scoring state length") ||
            !r_take(r, h->scorelen, &h->score, "scoring state"))
            return 0;
    }
    if (!r_u(r, 4, &h->ngroups, "group count"))
        return 0;
    if (h->ngroups > (r->n - r->off) / VSE_GROUP_MIN)
        return r_fail(r, "%llu groups cannot fit in the %zu bytes left",
                      (unsigned long long)h->ngroups, r->n - r->off);
    return 1;
}

typedef struct gview {
    const uint8_t *id, *key, *ring, *vals, *t;
    uint64_t idlen, keylen, fp, kind, seen, held, nring, nvals, nt, nsamples;
    int64_t last_ts, since, until;
    struct {
        int64_t ts;
        uint64_t n;
        const uint8_t *text;
    } s[VSOC_ALERT_SAMPLES];
} gview_t;

/* Reads one group and checks what holds for any group: lengths and counts within the
 * engine's limits, times in range, windows in order. */
static int read_group(rbuf_t *r, gview_t *g)
{
    if (!r_u(r, 2, &g->idlen, "rule id length"))
        return 0;
    if (g->idlen == 0)
        return r_fail(r, "empty rule id");
    if (!r_take(r, g->idlen, &g->id, "rule id") || !r_u(r, 8, &g->fp, "rule fingerprint") ||
        !r_u(r, 1, &g->kind, "group kind"))
        return 0;
    if (g->kind != G_CORR && g->kind != G_SUPP)
        return r_fail(r, "unknown group kind %llu", (unsigned long long)g->kind);
    if (!r_u(r, 2, &g->keylen, "key length"))
        return 0;
    if (g->keylen > GROUP_KEY_MAX)
        return r_fail(r, "key length %llu over %d", (unsigned long long)g->keylen,
                      GROUP_KEY_MAX);
    if (!r_take(r, g->keylen, &g->key, "key") || !r_u(r, 1, &g->seen, "seen"))
        return 0;
    if (g->seen > 1)
        return r_fail(r, "seen is %llu, not 0 or 1", (unsigned long long)g->seen);
    if (!r_time(r, &g->last_ts, 0, "group time") || !r_time(r, &g->since, 0, "suppressed since") ||
        !r_time(r, &g->until, 1, "suppressed until") || !r_u(r, 8, &g->held, "held") ||
        !r_u(r, 4, &g->nring, "window count"))
        return 0;
    if (g->nring > VSOC_MAX_THRESHOLD)
        return r_fail(r, "window count %llu over %u", (unsigned long long)g->nring,
                      VSOC_MAX_THRESHOLD);
    if (!r_take(r, 8 * g->nring, &g->ring, "window"))
        return 0;
    for (uint64_t i = 0; i < g->nring; i++) {
        int64_t t = (int64_t)get_le(g->ring + 8 * i, 8);
        if (!time_ok(t, 0) || t > g->last_ts || (i && t < (int64_t)get_le(g->ring + 8 * i - 8, 8)))
            return r_fail(r, "window entry %llu out of order or range", (unsigned long long)i);
    }
    if (!r_u(r, 4, &g->nvals, "value count"))
        return 0;
    if (g->nvals > VSOC_MAX_THRESHOLD)
        return r_fail(r, "value count %llu over %u", (unsigned long long)g->nvals,
                      VSOC_MAX_THRESHOLD);
    if (!r_take(r, 16 * g->nvals, &g->vals, "values"))
        return 0;
    for (uint64_t i = 0; i < g->nvals; i++) {
        int64_t t = (int64_t)get_le(g->vals + 16 * i + 8, 8);
        if (!time_ok(t, 0) || t > g->last_ts ||
            (i && get_le(g->vals + 16 * i, 8) <= get_le(g->vals + 16 * i - 16, 8)))
            return r_fail(r, "value %llu out of order or range", (unsigned long long)i);
    }
    if (!r_u(r, 1, &g->nt, "item count"))
        return 0;
    if (g->nt > VSOC_MAX_ITEMS)
        return r_fail(r, "item count %llu over %d", (unsigned long long)g->nt, VSOC_MAX_ITEMS);
    if (!r_take(r, 8 * g->nt, &g->t, "items"))
        return 0;
    for (uint64_t i = 0; i < g->nt; i++) {
        int64_t t = (int64_t)get_le(g->t + 8 * i, 8);
        if (!time_ok(t, 1) || (t != INT64_MIN && t > g->last_ts))
            return r_fail(r, "item %llu time out of range", (unsigned long long)i);
    }
    if (!r_u(r, 1, &g->nsamples, "sample count"))
        return 0;
    /* One slot stays free for the event that fires (fire() adds it). */
    if (g->nsamples > VSOC_ALERT_SAMPLES - 1)
        return r_fail(r, "sample count %llu over %d", (unsigned long long)g->nsamples,
                      VSOC_ALERT_SAMPLES - 1);
    for (uint64_t i = 0; i < g->nsamples; i++) {
        if (!r_time(r, &g->s[i].ts, 0, "sample time") || !r_u(r, 2, &g->s[i].n, "sample length"))
            return 0;
        if (g->s[i].ts > g->last_ts)
            return r_fail(r, "sample %llu later than its group", (unsigned long long)i);
        if (g->s[i].n > VSOC_SAMPLE_MAX)
            return r_fail(r, "sample length %llu over %d", (unsigned long long)g->s[i].n,
                          VSOC_SAMPLE_MAX);
        if (!r_take(r, g->s[i].n, &g->s[i].text, "sample"))
            return 0;
    }
    return 1;
}

/* What becomes of a parsed group in e: 1 kept (rule index in *ri), 0 dropped (its rule is
 * gone or changed, or its value hashes are another build's), -1 refused (the rule is the
 * same but the group could not have come from it). */
static int judge_group(vsoc_engine_t *e, rbuf_t *r, const gview_t *g, int probe_ok,
                       uint32_t *ri)
{
    long i = rule_by_id(e, g->id, g->idlen);
    if (i < 0 || e->rfp[i] != g->fp)
        return 0;
    const vsoc_rule_t *rule = e->rs->rules[i];
    const corr_t *co = &rule->corr;
    const char *why = NULL;
    if (g->kind == G_SUPP) {
        if (!rule->sup.on)
            why = "a suppression group of a rule without suppress";
        else if (g->nring || g->nvals || g->nt || g->nsamples)
            why = "a suppression group with window state";
    } else {
        switch (co->type) {
        case CORR_EVENT_COUNT:
            if (g->nring >= co->threshold || g->nvals || g->nt)
                why = "an event_count group at or past its threshold, or with other state";
            break;
        case CORR_VALUE_COUNT:
            if (!probe_ok)
                return 0;
            if (g->nvals >= co->threshold || g->nring || g->nt)
                why = "a value_count group at or past its threshold, or with other state";
            break;
        case CORR_TEMPORAL:
        case CORR_TEMPORAL_ORDERED:
            if (g->nt != co->nitems || g->nring || g->nvals)
                why = "a temporal group whose items are not the rule's";
            break;
        case CORR_FLEET_COUNT:
            if (g->nring || g->nvals || g->nt || g->nsamples)
                why = "a fleet_count group with window state";
            break;
        default:
            why = "a correlation group of a rule without correlation";
        }
    }
    if (why) {
        r_fail(r, "rule %s: %s", rule->id, why);
        return -1;
    }
    *ri = (uint32_t)i;
    return 1;
}

/* A group from its checked view: allocated, not yet in any table. NULL when out of memory. */
static group_t *build_group(vsoc_engine_t *e, const gview_t *v, uint32_t ri)
{
    const corr_t *co = &e->rs->rules[ri]->corr;
    group_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->rule = ri;
    g->kind = (uint8_t)v->kind;
    g->keylen = (uint16_t)v->keylen;
    if (v->keylen)
        memcpy(g->key, v->key, v->keylen);
    g->hash = group_hash(ri, g->kind, g->key, g->keylen);
    g->seen = (uint8_t)v->seen;
    g->last_ts = v->last_ts;
    g->since = v->since;
    g->until = v->until;
    g->held = v->held;
    for (int i = 0; i < VSOC_MAX_ITEMS; i++)
        g->t[i] = i < (int)v->nt ? (int64_t)get_le(v->t + 8 * i, 8) : INT64_MIN;
    if (v->nring) {
        /* A capacity ring_push could have reached: a power of two from 8, at most the
         * threshold, which is above the count. */
        uint32_t cap = 8;
        while (cap < v->nring)
            cap *= 2;
        if (cap > co->threshold)
            cap = co->threshold;
        g->ring = malloc(cap * sizeof *g->ring);
        if (!g->ring)
            goto fail;
        g->cap = cap;
        g->n = (uint32_t)v->nring;
        for (uint32_t i = 0; i < g->n; i++)
            g->ring[i] = (int64_t)get_le(v->ring + 8 * i, 8);
    }
    if (v->nvals) {
        uint32_t cap = 16;
        while (cap < 2 * co->threshold + 2)
            cap *= 2;
        g->vmap = calloc(2 * (size_t)cap, sizeof *g->vmap);
        if (!g->vmap)
            goto fail;
        g->vcap = cap;
        for (uint64_t i = 0; i < v->nvals; i++)
            vmap_insert(g->vmap, cap, get_le(v->vals + 16 * i, 8),
                        (int64_t)get_le(v->vals + 16 * i + 8, 8));
        g->vcount = (uint32_t)v->nvals;
    }
    g->nsamples = (uint8_t)v->nsamples;
    for (unsigned i = 0; i < g->nsamples; i++) {
        g->samples[i].ts = v->s[i].ts;
        g->samples[i].n = (uint16_t)v->s[i].n;
        if (v->s[i].n)
            memcpy(g->samples[i].text, v->s[i].text, v->s[i].n);
    }
    return g;
fail:
    group_free(g);
    return NULL;
}

/* The slot of a group equal to g (same rule, kind and key), or -1. */
static long gtab_find(const vsoc_engine_t *e, const group_t *g)
{
    if (!e->gcap)
        return -1;
    for (size_t i = (size_t)g->hash & (e->gcap - 1); e->gtab[i]; i = (i + 1) & (e->gcap - 1))
        if (e->ghash[i] == g->hash && group_is(e->gtab[i], g->hash, g->rule, g->kind, g->key,
                                               g->keylen))
            return (long)i;
    return -1;
}

int vsoc_engine_restore(vsoc_engine_t *e, const void *blob, size_t n, size_t *dropped,
                        char *err, size_t errlen)
{
    if (dropped)
        *dropped = 0;
    if (err && errlen)
        err[0] = 0;
    if (snap_prepare(e) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory restoring an engine snapshot");
        return VSOC_ENOMEM;
    }
    rbuf_t r = {blob, blob ? n : 0, 0, err, errlen};
    vhead_t h;
    if (!read_head(&r, &h))
        return VSOC_EPARSE;
    const int probe_ok = h.probe == hash_probe();
    /* First pass: the whole blob parses and every kept group fits its rule. */
    const size_t groups_at = r.off;
    gview_t views[2];
    size_t keep = 0, drop = 0;
    for (uint64_t k = 0; k < h.ngroups; k++) {
        gview_t *g = &views[k & 1], *prev = &views[!(k & 1)];
        if (!read_group(&r, g))
            return VSOC_EPARSE;
        if (k && gorder((const char *)prev->id, prev->idlen, (uint8_t)prev->kind,
                        (const char *)prev->key, prev->keylen, (const char *)g->id, g->idlen,
                        (uint8_t)g->kind, (const char *)g->key, g->keylen) >= 0) {
            r_fail(&r, "group %llu repeats or is out of order", (unsigned long long)k);
            return VSOC_EPARSE;
        }
        uint32_t ri;
        int j = judge_group(e, &r, g, probe_ok, &ri);
        if (j < 0)
            return VSOC_EPARSE;
        keep += (size_t)j;
        drop += (size_t)!j;
    }
    if (r.off != r.n) {
        r_fail(&r, "%zu bytes after the last group", r.n - r.off);
        return VSOC_EPARSE;
    }
    vehicle_t *blank = vehicle_find(e, (const char *)h.vin, h.vinlen);
    if (blank && !blank->blank) {
        if (err && errlen)
            snprintf(err, errlen, "engine snapshot of vehicle '%.*s': the engine already has it",
                     (int)h.vinlen, (const char *)h.vin);
        return VSOC_EINVAL;
    }

    /* Second pass: build everything aside; e changes only once nothing can fail. */
    const vsoc_scorer_t *sc = e->opts.scorer;
    void *score = NULL;
    group_t **built = calloc(keep ? keep : 1, sizeof *built);
    size_t nb = 0;
    int rc = VSOC_ENOMEM;
    if (!built)
        goto fail;
    if (sc) {
        score = malloc(vsoc_scorer_state_bytes(sc));
        if (!score)
            goto fail;
        vsoc_scorer_state_init(sc, score);
    }
    if (h.flags & 2) {
        if (sc && h.score_fp == vsoc_scorer_fingerprint(sc)) {
            if (vsoc_scorer_state_load(sc, score, h.score, h.scorelen) != 0) {
                r.off = (size_t)(h.score - r.p);
                r_fail(&r, "the baseline scoring state does not parse");
                rc = VSOC_EPARSE;
                goto fail;
            }
        } else {
            drop++; /* another baseline (or none here): its state means nothing */
            if (sc)
                vsoc_scorer_state_init(sc, score);
        }
    }
    r.off = groups_at;
    for (uint64_t k = 0; k < h.ngroups; k++) {
        gview_t g;
        uint32_t ri;
        read_group(&r, &g);
        if (judge_group(e, &r, &g, probe_ok, &ri) != 1)
            continue;
        if (!(built[nb] = build_group(e, &g, ri)))
            goto fail;
        nb++;
    }
    if (vtab_reserve(e) != 0)
        goto fail;
    while ((e->gcount + nb + 1) * 2 > e->gcap)
        if (gtab_grow(e) != 0)
            goto fail;

    /* Commit. A forgotten vehicle's slot is reused, with a new id (marks of the old one
     * must not reach it). */
    vehicle_t *v;
    if (blank) {
        v = blank;
        free(v->score);
        v->blank = 0;
        if (++e->next_vid == 0)
            e->next_vid = 1;
        v->vid = e->next_vid;
        e->vcount--; /* counted again below */
    } else {
        v = vehicle_insert(e, (const char *)h.vin, h.vinlen);
    }
    v->used = 1;
    v->score = score;
    v->has_speed = (uint8_t)(h.flags & 1);
    v->speed_kph = h.speed_kph;
    v->speed_ts = h.speed_ts;
    v->now_ts = h.now_ts;
    v->next_missing = h.next_missing;
    v->seen_sweep = e->sweeps - h.idle;
    e->vcount++;
    /* In reverse, linking at the head: the vehicle's list ends up in the blob's order, so
     * a snapshot of a restored engine gives the same bytes. */
    for (size_t k = nb; k-- > 0;) {
        group_t *g = built[k];
        g->vid = v->vid;
        g->vinlen = v->vinlen;
        memcpy(g->vin, v->vin, v->vinlen);
        /* A group shared by vehicles (a group-by without vin) exists once per engine: when
         * engines merge, the first restored keeps it. */
        if (gtab_find(e, g) >= 0) {
            group_free(g);
            drop++;
            continue;
        }
        size_t i = (size_t)g->hash & (e->gcap - 1);
        while (e->gtab[i])
            i = (i + 1) & (e->gcap - 1);
        e->gtab[i] = g;
        e->ghash[i] = g->hash;
        e->gcount++;
        group_link(v, g);
    }
    free(built);
    /* The engine clocks of the newest blob: max_ts never goes back. Blobs of one engine
     * are ordered by (max_ts, next sweep, sweep count, events since the sweep), each of
     * which only grows while the ones before it stay. */
    if (!e->clock_known || h.max_ts > e->max_ts ||
        (h.max_ts == e->max_ts &&
         (h.next_sweep > e->next_sweep ||
          (h.next_sweep == e->next_sweep &&
           (h.sweeps > e->sweeps + e->sweeps_off ||
            (h.sweeps == e->sweeps + e->sweeps_off && h.since_sweep > e->since_sweep)))))) {
        e->max_ts = h.max_ts;
        e->next_sweep = h.next_sweep;
        e->since_sweep = (uint32_t)h.since_sweep;
        e->sweeps_off = h.sweeps - e->sweeps;
    }
    e->clock_known = 1;
    /* Whatever was dropped is still in the stored blob: have the next snapshot replace it. */
    if (drop)
        mark_dirty(e, v);
    if (dropped)
        *dropped = drop;
    return 0;
fail:
    for (size_t k = 0; k < nb; k++)
        group_free(built[k]);
    free(built);
    free(score);
    if (rc == VSOC_ENOMEM && err && errlen)
        snprintf(err, errlen, "out of memory restoring an engine snapshot");
    return rc;
}

/* A group is the vehicle's own when its key holds the vehicle: a group-by with vin (the
 * fleet_count throttle's group is keyed by vin too). Others are shared with other vehicles. */
static int group_own(const vsoc_engine_t *e, const group_t *g)
{
    const vsoc_rule_t *r = e->rs->rules[g->rule];
    if (g->kind == G_CORR && r->corr.type == CORR_FLEET_COUNT)
        return 1;
    const vsoc_field_t *f = g->kind == G_SUPP ? r->sup.group_by : r->corr.group_by;
    uint32_t n = g->kind == G_SUPP ? r->sup.ngroup : r->corr.ngroup;
    for (uint32_t i = 0; i < n; i++)
        if (f[i].id == VSOC_F_VIN)
            return 1;
    return 0;
}

/* The vehicle a caller names (cut to the engine's length), or NULL when the engine holds
 * nothing of it. */
static vehicle_t *held_vehicle(vsoc_engine_t *e, const char *vin, size_t n)
{
    vehicle_t *v = vehicle_find(e, vin, n < VIN_MAX ? n : VIN_MAX - 1);
    return v && !v->blank ? v : NULL;
}

int vsoc_engine_touch(vsoc_engine_t *e, const char *vin, size_t n)
{
    vehicle_t *v = held_vehicle(e, vin, n);
    if (!v)
        return 0;
    mark_dirty(e, v);
    return 1;
}

int vsoc_engine_forget(vsoc_engine_t *e, const char *vin, size_t n)
{
    vehicle_t *v = held_vehicle(e, vin, n);
    if (!v)
        return 0;
    int forgot = 0;
    for (group_t *g = v->groups, *next; g; g = next) {
        next = g->vnext;
        if (!group_own(e, g))
            continue; /* other vehicles' windows live in it too */
        group_unlink(v, g);
        size_t i = (size_t)g->hash & (e->gcap - 1);
        while (e->gtab[i] != g)
            i = (i + 1) & (e->gcap - 1);
        gtab_remove_at(e, i);
        forgot++;
    }
    v->has_speed = 0;
    v->speed_kph = 0;
    v->speed_ts = 0;
    v->now_ts = 0;
    v->next_missing = 0;
    v->seen_sweep = e->sweeps;
    if (v->score)
        vsoc_scorer_state_init(e->opts.scorer, v->score);
    /* Not dirty: a snapshot must not write the blank over what the store keeps. */
    v->blank = 1;
    return forgot;
}

const vsoc_rule_stats_t *vsoc_engine_rule_stats(const vsoc_engine_t *e, size_t i)
{
    return i < e->rs->n ? &e->stats[i] : NULL;
}

uint64_t vsoc_engine_events(const vsoc_engine_t *e) { return e->events; }
uint64_t vsoc_engine_groups(const vsoc_engine_t *e) { return e->gcount; }
