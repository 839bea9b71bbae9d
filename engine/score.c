/* score.c: baseline scoring (see score.h).
 *
 * Timing: a period shorter than 0.6 x the baseline's p1 is period_short (an injected copy
 * of a periodic message arrives between two genuine ones); longer than 3 x p99 and 1.5 x the
 * longest seen is period_long (weak on its own: a gap is only seen when the next frame
 * comes). Payload: a byte outside its learned range, or a bit that never changed now
 * changed. Counters: a learned counter that did not step by one. IDs with fewer than
 * MIN_PERIODS learned periods are not judged on timing. */
#include "score.h"

#include "field.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define MIN_PERIODS 10
#define MIN_FRAMES 3
#define NO_TIME INT64_MIN

typedef struct slot {
    uint32_t key; /* id | ext << 31 */
    uint32_t first; /* index of the first baseline entry with this key */
    uint32_t n;     /* entries with this key (one per bus) */
    uint32_t used;
} slot_t;

/* Per baseline ID and vehicle. */
typedef struct idstate {
    int64_t last_ts;
    uint8_t last[VSOC_BASELINE_BYTES];
    uint8_t silent; /* its silence was reported; cleared when the ID is seen again */
    uint8_t pad[7];
} idstate_t;
_Static_assert(sizeof(idstate_t) == 24, "idstate_t layout");

struct vsoc_scorer {
    const vsoc_baseline_t *b;
    const vsoc_baseline_id_t *ids; /* b's entries, contiguous, in order */
    size_t nids;
    slot_t *tab;
    size_t mask;
    uint32_t bit_unknown, bit_short, bit_long, bit_dlc, bit_payload, bit_counter, bit_missing, bit_checksum;
    uint64_t fp; /* vsoc_scorer_fingerprint */
};


static uint64_t baseline_fingerprint(const vsoc_baseline_id_t *ids, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    vsoc_fp_bytes(&h, "vsoc-baseline-1", 15);
    vsoc_fp_u64(&h, n);
    for (size_t i = 0; i < n; i++) {
        const vsoc_baseline_id_t *e = &ids[i];
        size_t bl = strlen(e->bus);
        vsoc_fp_u64(&h, bl);
        vsoc_fp_bytes(&h, e->bus, bl);
        vsoc_fp_u64(&h, e->id);
        vsoc_fp_u64(&h, e->ext);
        vsoc_fp_u64(&h, e->nbytes);
        vsoc_fp_u64(&h, e->dlc_mask);
        vsoc_fp_u64(&h, e->frames);
        const vsoc_baseline_period_t *p = &e->period;
        vsoc_fp_u64(&h, p->count);
        vsoc_fp_f64(&h, p->mean);
        vsoc_fp_f64(&h, p->std);
        vsoc_fp_f64(&h, p->min);
        vsoc_fp_f64(&h, p->p1);
        vsoc_fp_f64(&h, p->p50);
        vsoc_fp_f64(&h, p->p99);
        vsoc_fp_f64(&h, p->max);
        for (int k = 0; k < VSOC_BASELINE_BYTES; k++) {
            const vsoc_baseline_byte_t *bb = &e->bytes[k];
            unsigned char b6[6] = {bb->min, bb->max, bb->and_bits, bb->or_bits, bb->counter,
                                   bb->checksum};
            vsoc_fp_bytes(&h, b6, sizeof b6);
        }
    }
    return h;
}

vsoc_scorer_t *vsoc_scorer_new(const vsoc_baseline_t *b)
{
    vsoc_scorer_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->b = b;
    s->nids = vsoc_baseline_count(b);
    s->ids = s->nids ? vsoc_baseline_at(b, 0) : NULL;
    size_t cap = 16;
    while (cap < 2 * s->nids + 2)
        cap *= 2;
    s->tab = calloc(cap, sizeof *s->tab);
    if (!s->tab) {
        free(s);
        return NULL;
    }
    s->mask = cap - 1;
    /* Entries are sorted by bus first, so one key's entries are not adjacent: the slot
     * keeps the first, and lookups walk the rest by key (they are few: one per bus). */
    for (size_t i = 0; i < s->nids; i++) {
        uint32_t key = s->ids[i].id | (uint32_t)s->ids[i].ext << 31;
        size_t h = (size_t)vsoc_hash_u64(key) & s->mask;
        while (s->tab[h].used && s->tab[h].key != key)
            h = (h + 1) & s->mask;
        if (!s->tab[h].used)
            s->tab[h] = (slot_t){key, (uint32_t)i, 0, 1};
        s->tab[h].n++;
    }
    s->bit_unknown = vsoc_reason_bit("unknown_id");
    s->bit_short = vsoc_reason_bit("period_short");
    s->bit_long = vsoc_reason_bit("period_long");
    s->bit_dlc = vsoc_reason_bit("dlc");
    s->bit_payload = vsoc_reason_bit("payload");
    s->bit_counter = vsoc_reason_bit("counter");
    s->bit_missing = vsoc_reason_bit("missing");
    s->bit_checksum = vsoc_reason_bit("checksum");
    s->fp = baseline_fingerprint(s->ids, s->nids);
    return s;
}

void vsoc_scorer_free(vsoc_scorer_t *s)
{
    if (!s)
        return;
    free(s->tab);
    free(s);
}

size_t vsoc_scorer_state_bytes(const vsoc_scorer_t *s)
{
    return (s->nids ? s->nids : 1) * sizeof(idstate_t);
}

void vsoc_scorer_state_init(const vsoc_scorer_t *s, void *state)
{
    idstate_t *st = state;
    for (size_t i = 0; i < (s->nids ? s->nids : 1); i++) {
        st[i].last_ts = NO_TIME;
        memset(st[i].last, 0, sizeof st[i].last);
        st[i].silent = 0;
    }
}

/* ---- saved state -------------------------------------------------------------------- */

#define SAVED_ENTRY (4 + 8 + VSOC_BASELINE_BYTES + 1)
#define SAVED_TIME_LIMIT (INT64_C(1) << 62) /* scoring subtracts times: keep them apart */

uint64_t vsoc_scorer_fingerprint(const vsoc_scorer_t *s) { return s->fp; }

/* An ID whose state differs from a fresh vehicle's: only those are saved. */
static int id_touched(const idstate_t *st)
{
    static const uint8_t zero[VSOC_BASELINE_BYTES];
    return st->last_ts != NO_TIME || st->silent || memcmp(st->last, zero, sizeof zero) != 0;
}

size_t vsoc_scorer_state_saved_bytes(const vsoc_scorer_t *s, const void *state)
{
    const idstate_t *st = state;
    size_t n = 0;
    for (size_t i = 0; i < s->nids; i++)
        n += id_touched(&st[i]);
    return 8 + n * SAVED_ENTRY;
}

static void put_le(uint8_t *p, uint64_t x, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
    uint64_t x = 0;
    for (int i = 0; i < bytes; i++)
        x |= (uint64_t)p[i] << (8 * i);
    return x;
}

size_t vsoc_scorer_state_save(const vsoc_scorer_t *s, const void *state, uint8_t *out)
{
    const idstate_t *st = state;
    uint8_t *p = out + 8;
    uint32_t n = 0;
    for (size_t i = 0; i < s->nids; i++) {
        if (!id_touched(&st[i]))
            continue;
        put_le(p, i, 4);
        put_le(p + 4, (uint64_t)st[i].last_ts, 8);
        memcpy(p + 12, st[i].last, VSOC_BASELINE_BYTES);
        p[12 + VSOC_BASELINE_BYTES] = st[i].silent;
        p += SAVED_ENTRY;
        n++;
    }
    put_le(out, s->nids, 4);
    put_le(out + 4, n, 4);
    return (size_t)(p - out);
}

int vsoc_scorer_state_load(const vsoc_scorer_t *s, void *state, const uint8_t *in, size_t n)
{
    idstate_t *st = state;
    vsoc_scorer_state_init(s, state);
    if (n < 8 || get_le(in, 4) != s->nids)
        return VSOC_EPARSE;
    uint64_t count = get_le(in + 4, 4);
    if (count > s->nids || (n - 8) / SAVED_ENTRY != count || (n - 8) % SAVED_ENTRY)
        return VSOC_EPARSE;
    const uint8_t *p = in + 8;
    uint64_t next = 0; /* the smallest index the next entry may have */
    for (uint64_t k = 0; k < count; k++, p += SAVED_ENTRY) {
        uint64_t i = get_le(p, 4);
        if (i < next || i >= s->nids || p[12 + VSOC_BASELINE_BYTES] > 1)
            return VSOC_EPARSE;
        next = i + 1;
        st[i].last_ts = (int64_t)get_le(p + 4, 8);
        if (st[i].last_ts != NO_TIME &&
            (st[i].last_ts < -SAVED_TIME_LIMIT || st[i].last_ts > SAVED_TIME_LIMIT))
            return VSOC_EPARSE;
        memcpy(st[i].last, p + 12, VSOC_BASELINE_BYTES);
        st[i].silent = p[12 + VSOC_BASELINE_BYTES];
        if (!id_touched(&st[i]))
            return VSOC_EPARSE; /* save never writes a fresh entry: not its form */
    }
    return 0;
}

static int bus_eq(const char *a, vsoc_str_t b)
{
    return strlen(a) == b.n && (b.n == 0 || memcmp(a, b.p, b.n) == 0);
}

/* The baseline entry of the frame's (bus, id, ext), or -1. */
static long find(const vsoc_scorer_t *s, const vsoc_event_t *ev)
{
    uint32_t key = ev->can.id | (uint32_t)ev->can.ext << 31;
    size_t h = (size_t)vsoc_hash_u64(key) & s->mask;
    for (; s->tab[h].used; h = (h + 1) & s->mask) {
        if (s->tab[h].key != key)
            continue;
        uint32_t left = s->tab[h].n;
        for (size_t i = s->tab[h].first; i < s->nids && left; i++) {
            const vsoc_baseline_id_t *e = &s->ids[i];
            if (e->id != ev->can.id || e->ext != ev->can.ext)
                continue;
            left--;
            if (bus_eq(e->bus, ev->bus))
                return (long)i;
        }
        return -1;
    }
    return -1;
}

/* A gap no learnt traffic came close to: over 3 x p99 and 1.5 x the longest seen. */
static int gap_too_long(const vsoc_baseline_id_t *e, double ms)
{
    return ms > 3 * e->period.p99 && ms > 1.5 * e->period.max;
}

size_t vsoc_scorer_missing(const vsoc_scorer_t *s, void *state, int64_t now, size_t *out,
                           size_t max)
{
    idstate_t *st = state;
    size_t n = 0;
    for (size_t i = 0; i < s->nids && n < max; i++) {
        const vsoc_baseline_id_t *e = &s->ids[i];
        if (st[i].last_ts == NO_TIME || st[i].silent || e->period.count < MIN_PERIODS ||
            now <= st[i].last_ts)
            continue;
        if (gap_too_long(e, (double)(now - st[i].last_ts) / 1000.0)) {
            st[i].silent = 1;
            out[n++] = i;
        }
    }
    return n;
}

void vsoc_scorer_missing_event(const vsoc_scorer_t *s, const void *state, size_t i, int64_t now,
                               vsoc_event_t *ev)
{
    const vsoc_baseline_id_t *e = &s->ids[i];
    const idstate_t *st = &((const idstate_t *)state)[i];
    ev->kind = VSOC_EVENT_CAN;
    ev->ts_us = now;
    ev->can.id = e->id;
    ev->can.ext = e->ext;
    ev->bus.p = e->bus;
    ev->bus.n = strlen(e->bus);
    ev->baseline_score = VSOC_SCORE_MISSING;
    ev->baseline_reasons = s->bit_missing;
    ev->obs_byte = -1;
    ev->obs_period_ms = (double)(now - st->last_ts) / 1000.0;
    ev->exp_p1_ms = e->period.p1;
    ev->exp_p50_ms = e->period.p50;
    ev->exp_p99_ms = e->period.p99;
    ev->derived |= VSOC_HAS_BASELINE;
}

void vsoc_scorer_score(const vsoc_scorer_t *s, void *state, vsoc_event_t *ev)
{
    if (ev->kind != VSOC_EVENT_CAN)
        return;
    uint32_t reasons = 0;
    double score = 0;
    ev->obs_byte = -1;
    ev->obs_period_ms = -1;
    long i = find(s, ev);
    /* An ID learning saw fewer than MIN_FRAMES times is not established as normal: one
     * stray frame in the learning capture must not make a flood of that ID look known. */
    if (i >= 0 && s->ids[i].frames < MIN_FRAMES)
        i = -1;
    if (i < 0) {
        reasons = s->bit_unknown;
        score = VSOC_SCORE_UNKNOWN_ID;
    } else {
        const vsoc_baseline_id_t *e = &s->ids[i];
        idstate_t *st = &((idstate_t *)state)[i];
        if (!((e->dlc_mask >> (ev->can.dlc & 15)) & 1)) {
            reasons |= s->bit_dlc;
            score = VSOC_SCORE_DLC;
        }
        ev->exp_p1_ms = e->period.p1;
        ev->exp_p50_ms = e->period.p50;
        ev->exp_p99_ms = e->period.p99;
        if (st->last_ts != NO_TIME && ev->ts_us >= st->last_ts)
            ev->obs_period_ms = (double)(ev->ts_us - st->last_ts) / 1000.0;
        if (st->last_ts != NO_TIME && e->period.count >= MIN_PERIODS && ev->ts_us >= st->last_ts) {
            double ms = ev->obs_period_ms;
            if (ms < 0.6 * e->period.p1) {
                reasons |= s->bit_short;
                if (score < VSOC_SCORE_PERIOD_SHORT)
                    score = VSOC_SCORE_PERIOD_SHORT;
            } else if (gap_too_long(e, ms)) {
                reasons |= s->bit_long;
                if (score < VSOC_SCORE_PERIOD_LONG)
                    score = VSOC_SCORE_PERIOD_LONG;
            }
        }
        unsigned n = ev->can.len < e->nbytes ? ev->can.len : e->nbytes;
        int payload = 0, counter = 0, checksum = 0;
        uint8_t x = 0, sum = 0;
        for (unsigned k = 0; k < ev->can.len && k < VSOC_BASELINE_BYTES; k++) {
            x ^= ev->can.data[k];
            sum = (uint8_t)(sum + ev->can.data[k]);
        }
        for (unsigned k = 0; k < n; k++) {
            const vsoc_baseline_byte_t *bb = &e->bytes[k];
            uint8_t v = ev->can.data[k];
            uint8_t fixed = (uint8_t)~(bb->or_bits ^ bb->and_bits);
            if (v < bb->min || v > bb->max || ((v ^ bb->and_bits) & fixed)) {
                if (!payload) {
                    ev->obs_byte = (int32_t)k;
                    ev->obs_value = v;
                    ev->exp_min = bb->min;
                    ev->exp_max = bb->max;
                }
                payload = 1;
            }
            if (bb->checksum == VSOC_BASELINE_CHECKSUM_XOR && (uint8_t)(x ^ v) != v)
                checksum = 1;
            else if (bb->checksum == VSOC_BASELINE_CHECKSUM_SUM && (uint8_t)(sum - v) != v)
                checksum = 1;
            if (st->last_ts != NO_TIME && bb->counter != VSOC_BASELINE_COUNTER_NONE) {
                uint8_t want = (uint8_t)(st->last[k] + 1);
                if (bb->counter == VSOC_BASELINE_COUNTER_NIBBLE ? (v & 15) != (want & 15)
                                                                 : v != want)
                    counter = 1;
            }
        }
        if (payload) {
            reasons |= s->bit_payload;
            if (score < VSOC_SCORE_PAYLOAD)
                score = VSOC_SCORE_PAYLOAD;
        }
        if (counter) {
            reasons |= s->bit_counter;
            if (score < VSOC_SCORE_COUNTER)
                score = VSOC_SCORE_COUNTER;
        }
        if (checksum) {
            reasons |= s->bit_checksum;
            if (score < VSOC_SCORE_CHECKSUM)
                score = VSOC_SCORE_CHECKSUM;
        }
        /* Time only moves forward in the state, as in correlation windows. */
        if (st->last_ts == NO_TIME || ev->ts_us >= st->last_ts)
            st->last_ts = ev->ts_us;
        memcpy(st->last, ev->can.data, VSOC_BASELINE_BYTES);
        st->silent = 0;
    }
    ev->baseline_score = score;
    ev->baseline_reasons = reasons;
    ev->derived |= VSOC_HAS_BASELINE;
}

char *vsoc_score_reasons(uint32_t reasons, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < 32; i++) {
        const char *name = vsoc_reason_name(i);
        if (!name)
            break;
        if (!(reasons >> i & 1))
            continue;
        size_t n = strlen(name);
        if (o + n + 2 > len)
            break;
        if (o)
            buf[o++] = ',';
        memcpy(buf + o, name, n + 1);
        o += n;
    }
    return buf;
}
