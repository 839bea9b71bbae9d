/* fleet.c: the in-process fleet_count counter (see fleet.h for the semantics it shares with
 * the Redis counter).
 *
 * Per rule: a hash from vin to the vehicle's entry, and the entries in a doubly linked list
 * ordered by (latest hit, vin), oldest first. Hits nearly always arrive in event-time order,
 * so a re-hit moves its entry to the tail in O(1), expiry pops from the head, and the sample
 * reads back from the tail; only a hit older than the newest walks the list to its place.
 * Entries live in one array per rule (linked by index, so the array can grow by realloc)
 * and freed entries go to a free list: a known vehicle's hit allocates nothing, and a new
 * vehicle allocates only when the rule has never had that many vehicles at once.
 *
 * Invariant after every call: every entry of a rule is inside the rule's window
 * (t >= newest - timespan), so the count is the number of entries. */
#include "fleet.h"

#include "util.h"
#include "vsoc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX
/* The longest rule id a counter takes: a snapshot stores its length in 16 bits. Compiled
 * rules' ids are far shorter (VSOC_RULE_ID_MAX). */
#define FLEET_ID_MAX 65535

typedef struct fentry {
    int64_t t;             /* the vehicle's latest hit */
    uint32_t hash;         /* of the vin: rehashing and deletion need no second pass */
    uint32_t prev, next;   /* time order; next also links the free list */
    uint8_t vinlen;
    char vin[VSOC_VIN_MAX + 1];
} fentry_t;

typedef struct frule {
    char *id;
    uint64_t idhash;
    int64_t newest;        /* INT64_MIN until the first recorded hit */
    int64_t alert_clock;   /* newest when the last alert was raised */
    int alerted;           /* an alert was raised for the rule */
    int below;             /* a hit saw the count below gte since the last alert */
    int64_t alert_hit_us;  /* the hit that raised the last alert: its time and vehicle */
    uint8_t alert_vinlen;
    char alert_vin[VSOC_VIN_MAX + 1];
    fentry_t *e;
    uint32_t ecap, eused;  /* entries allocated, entries ever handed out */
    uint32_t n;            /* live entries: the count */
    uint32_t free;         /* free list head */
    uint32_t head, tail;   /* oldest, newest */
    uint32_t *slot;        /* vin hash table: entry index + 1, 0 empty */
    uint32_t scap;         /* a power of two, at least twice n */
} frule_t;

struct vsoc_fleet {
    frule_t **rtab;        /* rule table by id hash, open addressing; never shrinks */
    size_t rcap, rn;
    frule_t *last;         /* the rule hit last: bursts of hits are for one rule */
    int changed;           /* a hit changed something since the last snapshot */
};

/* ---- rules -------------------------------------------------------------------------- */

static void rule_free(frule_t *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->e);
    free(r->slot);
    free(r);
}

vsoc_fleet_t *vsoc_fleet_new(void)
{
    return calloc(1, sizeof(vsoc_fleet_t));
}

void vsoc_fleet_free(vsoc_fleet_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->rcap; i++)
        rule_free(f->rtab[i]);
    free(f->rtab);
    free(f);
}

static int rtab_grow(vsoc_fleet_t *f)
{
    size_t ncap = f->rcap ? f->rcap * 2 : 16;
    frule_t **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return VSOC_ENOMEM;
    for (size_t i = 0; i < f->rcap; i++) {
        frule_t *r = f->rtab[i];
        if (!r)
            continue;
        size_t h = (size_t)r->idhash & (ncap - 1);
        while (nt[h])
            h = (h + 1) & (ncap - 1);
        nt[h] = r;
    }
    free(f->rtab);
    f->rtab = nt;
    f->rcap = ncap;
    return 0;
}

/* The rule's state, created on its first hit. NULL when out of memory. */
static frule_t *rule_get(vsoc_fleet_t *f, const char *id)
{
    if (f->last && !strcmp(f->last->id, id))
        return f->last;
    size_t len = strlen(id);
    uint64_t h = vsoc_hash_bytes(id, len, 0x466c656574ULL);
    if (f->rcap) {
        for (size_t i = (size_t)h & (f->rcap - 1); f->rtab[i]; i = (i + 1) & (f->rcap - 1))
            if (f->rtab[i]->idhash == h && !strcmp(f->rtab[i]->id, id))
                return f->last = f->rtab[i];
    }
    if ((f->rn + 1) * 2 > f->rcap && rtab_grow(f) != 0)
        return NULL;
    frule_t *r = calloc(1, sizeof *r);
    if (!r || !(r->id = malloc(len + 1))) {
        free(r);
        return NULL;
    }
    memcpy(r->id, id, len + 1);
    r->idhash = h;
    r->newest = INT64_MIN;
    r->free = r->head = r->tail = NIL;
    size_t i = (size_t)h & (f->rcap - 1);
    while (f->rtab[i])
        i = (i + 1) & (f->rcap - 1);
    f->rtab[i] = r;
    f->rn++;
    return f->last = r;
}

/* ---- the vin table ------------------------------------------------------------------ */

static uint32_t vin_hash(const char *vin, size_t n)
{
    return (uint32_t)vsoc_hash_bytes(vin, n, 0x56494eULL);
}

/* The entry of vin, or NIL. */
static uint32_t vin_find(const frule_t *r, const char *vin, size_t n, uint32_t h)
{
    if (!r->scap)
        return NIL;
    uint32_t mask = r->scap - 1;
    for (uint32_t i = h & mask; r->slot[i]; i = (i + 1) & mask) {
        const fentry_t *x = &r->e[r->slot[i] - 1];
        if (x->hash == h && x->vinlen == n && memcmp(x->vin, vin, n) == 0)
            return r->slot[i] - 1;
    }
    return NIL;
}

static void slot_put(uint32_t *slot, uint32_t cap, uint32_t h, uint32_t idx)
{
    uint32_t i = h & (cap - 1);
    while (slot[i])
        i = (i + 1) & (cap - 1);
    slot[i] = idx + 1;
}

/* Removes entry idx from the table with backward-shift deletion (no tombstones). */
static void vin_remove(frule_t *r, uint32_t idx)
{
    uint32_t mask = r->scap - 1, i = r->e[idx].hash & mask;
    while (r->slot[i] != idx + 1)
        i = (i + 1) & mask;
    r->slot[i] = 0;
    for (uint32_t j = (i + 1) & mask; r->slot[j]; j = (j + 1) & mask) {
        uint32_t home = r->e[r->slot[j] - 1].hash & mask;
        /* Move the entry at j into the hole when the hole lies between its home and j. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            r->slot[i] = r->slot[j];
            r->slot[j] = 0;
            i = j;
        }
    }
}

/* Makes room for one more vehicle: a free entry and a table at most half full. Allocates
 * only here, before anything changes, so a failure leaves the rule as it was. */
static int reserve(frule_t *r)
{
    if (r->free == NIL && r->eused == r->ecap) {
        uint32_t ncap = r->ecap ? r->ecap * 2 : 16;
        if (ncap <= r->ecap)
            return VSOC_ENOMEM;
        fentry_t *ne = realloc(r->e, (size_t)ncap * sizeof *ne);
        if (!ne)
            return VSOC_ENOMEM;
        r->e = ne;
        r->ecap = ncap;
    }
    if ((r->n + 1) * 2 > r->scap) {
        uint32_t ncap = r->scap ? r->scap * 2 : 32;
        if (ncap <= r->scap)
            return VSOC_ENOMEM;
        uint32_t *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return VSOC_ENOMEM;
        for (uint32_t i = 0; i < r->scap; i++)
            if (r->slot[i])
                slot_put(ns, ncap, r->e[r->slot[i] - 1].hash, r->slot[i] - 1);
        free(r->slot);
        r->slot = ns;
        r->scap = ncap;
    }
    return 0;
}

/* ---- time order --------------------------------------------------------------------- */

/* Orders (t, vin) pairs: time, then bytes, a prefix first. The list runs in this order, so
 * reading it backwards gives the sample order of fleet.h. */
static int key_cmp(int64_t ta, const char *va, size_t na, const fentry_t *b)
{
    if (ta != b->t)
        return ta < b->t ? -1 : 1;
    size_t m = na < b->vinlen ? na : b->vinlen;
    int c = memcmp(va, b->vin, m);
    if (c)
        return c;
    return na < b->vinlen ? -1 : na > b->vinlen;
}

static void unlink_entry(frule_t *r, uint32_t idx)
{
    fentry_t *x = &r->e[idx];
    if (x->prev != NIL)
        r->e[x->prev].next = x->next;
    else
        r->head = x->next;
    if (x->next != NIL)
        r->e[x->next].prev = x->prev;
    else
        r->tail = x->prev;
}

/* Links entry idx at its place, searching back from the tail: in-order hits stop at once. */
static void link_entry(frule_t *r, uint32_t idx)
{
    fentry_t *x = &r->e[idx];
    uint32_t after = r->tail;
    while (after != NIL && key_cmp(x->t, x->vin, x->vinlen, &r->e[after]) < 0)
        after = r->e[after].prev;
    x->prev = after;
    x->next = after == NIL ? r->head : r->e[after].next;
    if (x->next != NIL)
        r->e[x->next].prev = idx;
    else
        r->tail = idx;
    if (after != NIL)
        r->e[after].next = idx;
    else
        r->head = idx;
}

/* Drops the vehicles whose latest hit is before horizon. */
static void expire(frule_t *r, int64_t horizon)
{
    while (r->head != NIL && r->e[r->head].t < horizon) {
        uint32_t idx = r->head;
        unlink_entry(r, idx);
        vin_remove(r, idx);
        r->e[idx].next = r->free;
        r->free = idx;
        r->n--;
    }
}

/* Counts a vehicle the rule does not know yet, its latest hit at t (h: its vin's hash).
 * Returns 0, or VSOC_ENOMEM with the rule as it was. */
static int add_entry(frule_t *r, const char *vin, size_t vinlen, uint32_t h, int64_t t)
{
    if (reserve(r) != 0)
        return VSOC_ENOMEM;
    uint32_t idx;
    if (r->free != NIL) {
        idx = r->free;
        r->free = r->e[idx].next;
    } else {
        idx = r->eused++;
    }
    fentry_t *x = &r->e[idx];
    x->t = t;
    x->hash = h;
    x->vinlen = (uint8_t)vinlen;
    memcpy(x->vin, vin, vinlen);
    x->vin[vinlen] = 0;
    slot_put(r->slot, r->scap, h, idx);
    link_entry(r, idx);
    r->n++;
    return 0;
}

/* ---- hits --------------------------------------------------------------------------- */

/* a - b without overflow, clamped to the int64 range. */
static int64_t sub_sat(int64_t a, int64_t b)
{
    if (b > 0 && a < INT64_MIN + b)
        return INT64_MIN;
    if (b < 0 && a > INT64_MAX + b)
        return INT64_MAX;
    return a - b;
}

static void fill(const frule_t *r, vsoc_fleet_result_t *out)
{
    out->vehicles = r->n;
    out->first_us = r->head != NIL ? r->e[r->head].t : 0;
    out->nvins = 0;
    for (uint32_t i = r->tail; i != NIL && out->nvins < VSOC_FLEET_SAMPLES; i = r->e[i].prev) {
        const fentry_t *x = &r->e[i];
        memcpy(out->vins[out->nvins], x->vin, x->vinlen);
        out->vins[out->nvins][x->vinlen] = 0;
        out->nvins++;
    }
}

int vsoc_fleet_hit(vsoc_fleet_t *f, const char *rule_id, int64_t timespan_us, uint64_t gte,
                   const char *vin, size_t vinlen, int64_t time_us, vsoc_fleet_result_t *out)
{
    if (!f || !rule_id || !*rule_id || strlen(rule_id) > FLEET_ID_MAX || !vin || vinlen == 0 ||
        vinlen > VSOC_VIN_MAX || timespan_us < 1 || gte < 1 || !out)
        return VSOC_EINVAL;
    memset(out, 0, sizeof *out);
    frule_t *r = rule_get(f, rule_id);
    if (!r)
        return VSOC_ENOMEM;
    int64_t newest = r->newest == INT64_MIN || time_us > r->newest ? time_us : r->newest;
    int64_t horizon = sub_sat(newest, timespan_us);
    if (time_us < horizon) {
        /* Late beyond the window: as of its own time the vehicle is already out. */
        uint32_t before = r->n;
        expire(r, sub_sat(r->newest, timespan_us));
        if (r->n != before)
            f->changed = 1;
        fill(r, out);
        return 0;
    }
    uint32_t h = vin_hash(vin, vinlen);
    uint32_t idx = vin_find(r, vin, vinlen, h);
    if (idx == NIL) {
        if (add_entry(r, vin, vinlen, h, time_us) != 0)
            return VSOC_ENOMEM;
    } else if (time_us > r->e[idx].t) {
        unlink_entry(r, idx);
        r->e[idx].t = time_us;
        link_entry(r, idx);
    }
    r->newest = newest;
    f->changed = 1;
    expire(r, horizon);
    if (r->n < gte) {
        r->below = 1;
    } else if (!r->alerted || r->below || sub_sat(r->newest, r->alert_clock) >= timespan_us) {
        r->alerted = 1;
        r->below = 0;
        r->alert_clock = r->newest;
        r->alert_hit_us = time_us;
        r->alert_vinlen = (uint8_t)vinlen;
        memcpy(r->alert_vin, vin, vinlen);
        out->alert = 1;
        vsoc_fleet_uid(rule_id, time_us, out->uid);
    } else if (time_us == r->alert_hit_us && vinlen == r->alert_vinlen &&
               !memcmp(vin, r->alert_vin, vinlen)) {
        /* The very hit that raised the alert, again: a service read its events a second
         * time after a crash. The alert is raised again, same uid, so that it is not lost
         * with what the crash lost; a consumer deduplicates it by its uid. */
        out->alert = 1;
        vsoc_fleet_uid(rule_id, time_us, out->uid);
    }
    fill(r, out);
    return 0;
}

void vsoc_fleet_uid(const char *rule_id, int64_t time_us, char uid[37])
{
    char t[24];
    snprintf(t, sizeof t, "%lld", (long long)time_us);
    const char *parts[3] = {"fleet", rule_id, t};
    vsoc_uuid_derive(parts, 3, uid);
}

/* ---- snapshot and restore ----------------------------------------------------------- */

/* The blob: "VSF1", u32 rules; per rule: u16 id length, id, i64 newest, i64 alert_clock,
 * u8 flags (1 alerted, 2 below), i64 alert_hit_us, u8 alert vin length, alert vin, u32
 * vehicles; per vehicle, oldest first: i64 latest hit, u8 vin length, vin. */
#define FLEET_MAGIC "VSF1"

typedef struct wbuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} wbuf_t;

static void put(wbuf_t *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->n + n)
            ncap *= 2;
        unsigned char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u(wbuf_t *b, uint64_t v, size_t bytes)
{
    unsigned char t[8];
    for (size_t i = 0; i < bytes; i++)
        t[i] = (unsigned char)(v >> (8 * i));
    put(b, t, bytes);
}

static int rule_cmp(const void *a, const void *b)
{
    return strcmp((*(frule_t *const *)a)->id, (*(frule_t *const *)b)->id);
}

int vsoc_fleet_snapshot(vsoc_fleet_t *f, void **blob, size_t *n)
{
    frule_t **rules = malloc((f->rn ? f->rn : 1) * sizeof *rules);
    if (!rules)
        return VSOC_ENOMEM;
    size_t nr = 0;
    for (size_t i = 0; i < f->rcap; i++)
        if (f->rtab[i])
            rules[nr++] = f->rtab[i];
    qsort(rules, nr, sizeof *rules, rule_cmp);
    wbuf_t b = {0};
    put(&b, FLEET_MAGIC, 4);
    put_u(&b, nr, 4);
    for (size_t k = 0; k < nr; k++) {
        const frule_t *r = rules[k];
        size_t idlen = strlen(r->id); /* at most FLEET_ID_MAX: vsoc_fleet_hit refuses more */
        put_u(&b, idlen, 2);
        put(&b, r->id, idlen);
        put_u(&b, (uint64_t)r->newest, 8);
        put_u(&b, (uint64_t)r->alert_clock, 8);
        put_u(&b, (uint64_t)(r->alerted ? 1 : 0) | (r->below ? 2 : 0), 1);
        put_u(&b, (uint64_t)r->alert_hit_us, 8);
        put_u(&b, r->alert_vinlen, 1);
        put(&b, r->alert_vin, r->alert_vinlen);
        put_u(&b, r->n, 4);
        for (uint32_t i = r->head; i != NIL; i = r->e[i].next) {
            put_u(&b, (uint64_t)r->e[i].t, 8);
            put_u(&b, r->e[i].vinlen, 1);
            put(&b, r->e[i].vin, r->e[i].vinlen);
        }
    }
    free(rules);
    if (b.oom) {
        free(b.p);
        return VSOC_ENOMEM;
    }
    *blob = b.p;
    *n = b.n;
    f->changed = 0;
    return 0;
}

int vsoc_fleet_changed(const vsoc_fleet_t *f)
{
    return f->changed;
}

typedef struct rbuf {
    const unsigned char *p;
    size_t n, at;
    char *err;
    size_t errlen;
} rbuf_t;

static int bad(rbuf_t *b, const char *why)
{
    if (b->err && b->errlen)
        snprintf(b->err, b->errlen, "fleet state: %s at byte %zu", why, b->at);
    return VSOC_EPARSE;
}

static int get_u(rbuf_t *b, size_t bytes, uint64_t *v)
{
    if (b->n - b->at < bytes)
        return bad(b, "truncated");
    *v = 0;
    for (size_t i = 0; i < bytes; i++)
        *v |= (uint64_t)b->p[b->at + i] << (8 * i);
    b->at += bytes;
    return 0;
}

static int get_bytes(rbuf_t *b, size_t n, const unsigned char **p)
{
    if (b->n - b->at < n)
        return bad(b, "truncated");
    *p = b->p + b->at;
    b->at += n;
    return 0;
}

/* Empties f (after a failed restore). */
static void clear_rules(vsoc_fleet_t *f)
{
    for (size_t i = 0; i < f->rcap; i++) {
        rule_free(f->rtab[i]);
        f->rtab[i] = NULL;
    }
    f->rn = 0;
    f->last = NULL;
}

static int restore_rule(vsoc_fleet_t *f, rbuf_t *b, char *prev)
{
    uint64_t idlen, newest, clock, flags, hit, avl, nv;
    const unsigned char *id, *avin;
    int rc;
    if ((rc = get_u(b, 2, &idlen)) != 0)
        return rc;
    if (idlen == 0 || idlen > FLEET_ID_MAX)
        return bad(b, "rule id length out of bounds");
    if ((rc = get_bytes(b, idlen, &id)) != 0)
        return rc;
    if (memchr(id, 0, idlen))
        return bad(b, "a NUL byte in a rule id");
    char *name = prev + FLEET_ID_MAX + 1; /* the caller's second buffer */
    memcpy(name, id, idlen);
    name[idlen] = 0;
    /* Rules come sorted by id, each once: what vsoc_fleet_snapshot writes, and nothing else
     * (a blob then names exactly one state). */
    if (prev[0] && strcmp(prev, name) >= 0)
        return bad(b, "rules out of order");
    memcpy(prev, name, idlen + 1);
    if ((rc = get_u(b, 8, &newest)) != 0 || (rc = get_u(b, 8, &clock)) != 0 ||
        (rc = get_u(b, 1, &flags)) != 0 || (rc = get_u(b, 8, &hit)) != 0 ||
        (rc = get_u(b, 1, &avl)) != 0)
        return rc;
    if (flags > 3)
        return bad(b, "unknown flags");
    if (avl > VSOC_VIN_MAX)
        return bad(b, "alert vin too long");
    if ((rc = get_bytes(b, avl, &avin)) != 0 || (rc = get_u(b, 4, &nv)) != 0)
        return rc;
    /* Each vehicle takes at least 10 bytes: a count beyond what is left is a lie. */
    if (nv > (b->n - b->at) / 10)
        return bad(b, "more vehicles than bytes");
    frule_t *r = rule_get(f, name);
    if (!r)
        return VSOC_ENOMEM;
    r->newest = (int64_t)newest;
    r->alert_clock = (int64_t)clock;
    r->alerted = (flags & 1) != 0;
    r->below = (flags & 2) != 0;
    r->alert_hit_us = (int64_t)hit;
    r->alert_vinlen = (uint8_t)avl;
    memcpy(r->alert_vin, avin, avl);
    r->alert_vin[avl] = 0;
    if (nv && r->newest == INT64_MIN)
        return bad(b, "vehicles in a rule that never had a hit");
    for (uint64_t k = 0; k < nv; k++) {
        uint64_t t, vl;
        const unsigned char *vin;
        if ((rc = get_u(b, 8, &t)) != 0 || (rc = get_u(b, 1, &vl)) != 0)
            return rc;
        if (vl == 0 || vl > VSOC_VIN_MAX)
            return bad(b, "vin length out of bounds");
        if ((rc = get_bytes(b, vl, &vin)) != 0)
            return rc;
        if ((int64_t)t > r->newest)
            return bad(b, "a hit after the rule's newest");
        /* Oldest first, each vehicle once: strictly increasing in the list's order. */
        if (r->tail != NIL && key_cmp((int64_t)t, (const char *)vin, vl, &r->e[r->tail]) <= 0)
            return bad(b, "vehicles out of order");
        uint32_t h = vin_hash((const char *)vin, vl);
        if (vin_find(r, (const char *)vin, vl, h) != NIL)
            return bad(b, "a vehicle twice");
        if (add_entry(r, (const char *)vin, vl, h, (int64_t)t) != 0)
            return VSOC_ENOMEM;
    }
    return 0;
}

int vsoc_fleet_restore(vsoc_fleet_t *f, const void *blob, size_t n, char *err, size_t errlen)
{
    if (!f || (!blob && n) || f->rn)
        return VSOC_EINVAL;
    rbuf_t b = {blob, n, 0, err, errlen};
    const unsigned char *magic;
    uint64_t nr = 0;
    int rc = get_bytes(&b, 4, &magic);
    if (rc == 0 && memcmp(magic, FLEET_MAGIC, 4) != 0)
        rc = bad(&b, "not a fleet state (magic)");
    if (rc == 0)
        rc = get_u(&b, 4, &nr);
    /* Each rule takes at least 33 bytes. */
    if (rc == 0 && nr > (b.n - b.at) / 33)
        rc = bad(&b, "more rules than bytes");
    /* The previous rule's id and this one's. */
    char *ids = rc == 0 && nr ? malloc(2 * (FLEET_ID_MAX + 1)) : NULL;
    if (rc == 0 && nr && !ids)
        rc = VSOC_ENOMEM;
    if (ids)
        ids[0] = 0;
    for (uint64_t k = 0; rc == 0 && k < nr; k++)
        rc = restore_rule(f, &b, ids);
    free(ids);
    if (rc == 0 && b.at != b.n)
        rc = bad(&b, "trailing bytes");
    if (rc != 0) {
        clear_rules(f);
        if (rc == VSOC_ENOMEM && err && errlen)
            snprintf(err, errlen, "fleet state: out of memory");
        return rc;
    }
    f->changed = 0;
    return 0;
}
