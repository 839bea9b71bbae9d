/* test_snapshot.c: engine state snapshots. An engine restored from a snapshot taken at any
 * point of a stream raises, for the rest of the stream, exactly the alerts (ids, counts,
 * times, documents) of an engine that saw the whole stream: for every correlation type,
 * suppression with held alerts, fleet hits and baseline scoring, for engines split and
 * merged by vehicle. Also: dirty tracking, rules removed or changed between snapshot and
 * restore, and blobs truncated or corrupted. */
#include "baseline.h"
#include "engine.h"
#include "score.h"
#include "test.h"

#include <jansson.h>

/* ---- alerts as a consumer sees them ------------------------------------------------- */

typedef struct rec {
    int ev; /* index of the event that raised it */
    char rule[32], vin[32], uid[37];
    int fleet_hit;
    uint64_t count, suppressed;
    int64_t time, first, last;
    char *json;
} rec_t;

typedef struct alog {
    rec_t *v;
    size_t n, cap;
    int cur; /* index of the event being processed */
} alog_t;

static void on_alert(void *ctx, const vsoc_alert_t *a)
{
    alog_t *l = ctx;
    if (!l)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        ASSERT(l->v != NULL);
    }
    rec_t *r = &l->v[l->n++];
    memset(r, 0, sizeof *r);
    r->ev = l->cur;
    snprintf(r->rule, sizeof r->rule, "%s", vsoc_rule_id(a->rule));
    snprintf(r->vin, sizeof r->vin, "%.*s", (int)a->vin.n, a->vin.p);
    memcpy(r->uid, a->uid, sizeof r->uid);
    r->fleet_hit = a->fleet_hit;
    r->count = a->count;
    r->suppressed = a->suppressed;
    r->time = a->time_us;
    r->first = a->first_us;
    r->last = a->last_us;
    r->json = vsoc_alert_json(a);
    ASSERT(r->json != NULL);
}

static void alog_free(alog_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].json);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* The alerts of want raised from event `from` on by vehicles in `vins` (NULL: all) must be
 * got's, in the same order and identical. */
static void same_alerts(const alog_t *got, const alog_t *want, int from, const char *const *vins,
                        const char *what, int cut)
{
    size_t j = 0;
    for (size_t i = 0; i < want->n; i++) {
        const rec_t *w = &want->v[i];
        if (w->ev < from)
            continue;
        if (vins) {
            int in = 0;
            for (const char *const *v = vins; *v; v++)
                in |= strcmp(*v, w->vin) == 0;
            if (!in)
                continue;
        }
        if (j >= got->n)
            TEST_FAIL_("%s, cut %d: alert %s of %s (event %d) missing", what, cut, w->uid,
                       w->rule, w->ev);
        const rec_t *g = &got->v[j++];
        if (strcmp(g->uid, w->uid) != 0 || g->count != w->count ||
            g->suppressed != w->suppressed || g->time != w->time || g->first != w->first ||
            g->last != w->last || g->fleet_hit != w->fleet_hit || strcmp(g->json, w->json) != 0)
            TEST_FAIL_("%s, cut %d: alert %zu differs:\n got  %s\n want %s", what, cut, j - 1,
                       g->json, w->json);
    }
    if (j != got->n)
        TEST_FAIL_("%s, cut %d: %zu extra alerts, first %s", what, cut, got->n - j,
                   got->v[j].json);
}

/* ---- events -------------------------------------------------------------------------- */

typedef struct tev {
    int64_t ts;
    char vin[64];
    int ids;        /* an IDS event: type login_failed with user */
    uint32_t id;    /* CAN */
    uint8_t len, data[8];
    char user[8];
} tev_t;

static int feed(vsoc_engine_t *e, alog_t *l, const tev_t *t, int index)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    char line[256];
    json_t *doc = NULL;
    ev.ts_us = t->ts;
    ev.vin.p = t->vin;
    ev.vin.n = strlen(t->vin);
    if (t->ids) {
        int n = snprintf(line, sizeof line,
                         "{\"vin\":\"%s\",\"ts\":%lld,\"type\":\"auth.login_failed\","
                         "\"user\":\"%s\"}",
                         t->vin, (long long)t->ts, t->user);
        json_error_t jerr;
        doc = json_loadb(line, (size_t)n, 0, &jerr);
        ASSERT(doc != NULL);
        ev.kind = VSOC_EVENT_IDS;
        ev.doc = doc;
        ev.ids_type.p = "auth.login_failed";
        ev.ids_type.n = strlen(ev.ids_type.p);
        ev.line.p = line;
        ev.line.n = (size_t)n;
    } else {
        ev.kind = VSOC_EVENT_CAN;
        ev.can.id = t->id;
        ev.can.ext = t->id > 0x7FF;
        ev.can.len = ev.can.dlc = t->len;
        memcpy(ev.can.data, t->data, t->len);
        ev.bus.p = "can0";
        ev.bus.n = 4;
        int n = snprintf(line, sizeof line, "(%lld.%06lld) can0 %03X#", (long long)(t->ts / 1000000),
                         (long long)(t->ts % 1000000), (unsigned)t->id);
        for (unsigned i = 0; i < t->len; i++)
            n += snprintf(line + n, sizeof line - (size_t)n, "%02X", t->data[i]);
        n += snprintf(line + n, sizeof line - (size_t)n, " %s", t->vin);
        ev.line.p = line;
        ev.line.n = (size_t)n;
    }
    if (l)
        l->cur = index;
    int rc = vsoc_engine_process(e, &ev);
    json_decref(doc);
    ASSERT(rc >= 0);
    return rc;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

#define CCVS1 0x18FEF100u /* J1939 PGN 65265 from address 0: wheel-based vehicle speed */

/* A stream over four vehicles whose clocks are a little apart, hitting every rule below.
 * late: some events arrive up to 300 ms after later ones of their vehicle, and one vehicle
 * starts a second capture 40 s back in time. */
static size_t make_stream(tev_t *out, size_t max, int late)
{
    static const uint32_t ids[] = {0x100, 0x100, 0x100, 0x200, 0x201, 0x202, 0x203,
                                   0x300, 0x301, 0x310, 0x311, 0x312, 0x310, 0x311,
                                   0x312, 0x400, 0x500, 0x500, 0x600, 0x600, 0x600,
                                   0x700, 0x700, 0x999, CCVS1, CCVS1};
    int64_t clock[4] = {100000000, 98000000, 101500000, 100700000};
    size_t n = 0;
    int jumped = 0;
    rng_state = 0x9E3779B97F4A7C15ULL;
    while (n < max) {
        int v = (int)rnd(4);
        tev_t *t = &out[n];
        memset(t, 0, sizeof *t);
        clock[v] += 20000 + (int64_t)rnd(300000);
        t->ts = clock[v];
        if (late && rnd(8) == 0)
            t->ts -= (int64_t)rnd(300000);
        if (late && v == 3 && n >= max / 2 && !jumped) {
            clock[v] -= 40000000; /* a second capture of V4 */
            jumped = 1;
        }
        snprintf(t->vin, sizeof t->vin, "V%d", v + 1);
        if (rnd(7) == 0) {
            t->ids = 1;
            snprintf(t->user, sizeof t->user, "u%u", rnd(2));
        } else {
            t->id = ids[rnd(sizeof ids / sizeof *ids)];
            t->len = (uint8_t)(1 + rnd(3));
            for (unsigned i = 0; i < t->len; i++)
                t->data[i] = (uint8_t)rnd(3);
            if (t->id == CCVS1) { /* the vehicle's speed, 0..59 km/h */
                t->len = 3;
                t->data[1] = 0;
                t->data[2] = (uint8_t)rnd(60);
            }
        }
        n++;
    }
    return n;
}

#define CAN_HEAD(id)                                                                           \
    "id: " id "\ntitle: T " id "\nlevel: high\ntags: [a.b]\n"                                  \
    "logsource: {product: vehicle, category: can}\n"
#define IDS_HEAD(id)                                                                           \
    "id: " id "\ntitle: T " id "\nlevel: medium\ntags: [a.b]\n"                                \
    "logsource: {product: vehicle, category: ids}\n"

/* Every correlation type, per vehicle. */
static const char *per_vehicle_rules =
    CAN_HEAD("s.ec") "detection:\n  s: {can.id: 0x100}\n  condition: s\n"
    "correlation: {type: event_count, group-by: [vin], timespan: 5s, condition: {gte: 3}}\n"
    "---\n" CAN_HEAD("s.vc") "detection:\n  s: {can.id|in_range: [0x200, 0x20F]}\n  condition: s\n"
    "correlation: {type: value_count, field: can.id, group-by: [vin], timespan: 4s, condition: {gte: 3}}\n"
    "---\n" CAN_HEAD("s.tu") "detection:\n  a: {can.id: 0x300}\n  b: {can.id: 0x301}\n"
    "correlation: {type: temporal, detections: [a, b], group-by: [vin], timespan: 3s}\n"
    "---\n" CAN_HEAD("s.to") "detection:\n  x: {can.id: 0x310}\n  y: {can.id: 0x311}\n  z: {can.id: 0x312}\n"
    "correlation: {type: temporal_ordered, detections: [x, y, z], group-by: [vin], timespan: 10s}\n"
    "---\n" CAN_HEAD("s.fl") "detection:\n  s: {can.id: 0x400}\n  condition: s\n"
    "correlation: {type: fleet_count, timespan: 16s, condition: {gte: 2}}\n"
    "---\n" CAN_HEAD("s.sup") "detection:\n  s: {can.id: 0x500}\n  condition: s\n"
    "suppress: {group-by: [vin], for: 3s}\n"
    "---\n" CAN_HEAD("s.ecsup") "detection:\n  s: {can.id: 0x600}\n  condition: s\n"
    "correlation: {type: event_count, group-by: [vin, can.bus], timespan: 10s, condition: {gte: 2}}\n"
    "suppress: {group-by: [vin], for: 5s}\n"
    "---\n" IDS_HEAD("s.ids") "detection:\n  s: {type: auth.login_failed}\n  condition: s\n"
    "correlation: {type: event_count, group-by: [vin, user], timespan: 5s, condition: {gte: 2}}\n"
    "suppress: {group-by: [vin], for: 4s}\n"
    "---\n" CAN_HEAD("s.moving") "detection:\n  s: {can.id: 0x203, vehicle.speed_kph|gte: 30}\n"
    "  condition: s\n";

/* One group for all vehicles: meaningful within one engine only. */
static const char *shared_rule =
    "---\n" CAN_HEAD("s.shared") "detection:\n  s: {can.id: 0x700}\n  condition: s\n"
    "correlation: {type: event_count, timespan: 5s, condition: {gte: 4}}\n";

static vsoc_ruleset_t *rules(const char *a, const char *b)
{
    char *yaml = malloc(strlen(a) + (b ? strlen(b) : 0) + 1);
    ASSERT(yaml != NULL);
    strcpy(yaml, a);
    if (b)
        strcat(yaml, b);
    vsoc_diags_t *d = vsoc_diags_new();
    vsoc_ruleset_t *rs = vsoc_ruleset_load_string("t.yml", yaml, strlen(yaml), NULL, d);
    if (vsoc_diags_errors(d)) {
        vsoc_diags_print(d, stderr);
        exit(1);
    }
    vsoc_diags_free(d);
    free(yaml);
    return rs;
}

static vsoc_engine_t *engine(vsoc_ruleset_t *rs, alog_t *l, const vsoc_scorer_t *sc)
{
    char err[128];
    vsoc_engine_opts_t o = {.on_alert = on_alert, .ctx = l, .scorer = sc};
    vsoc_engine_t *e = vsoc_engine_new(rs, &o, err, sizeof err);
    ASSERT(e != NULL);
    return e;
}

/* ---- blobs ---------------------------------------------------------------------------- */

typedef struct blob {
    char vin[64];
    uint8_t *p;
    size_t n;
} blob_t;

typedef struct blobs {
    blob_t v[64];
    size_t n;
    int stop_after; /* fn fails after this many calls (0: never) */
} blobs_t;

static int keep_blob(void *ctx, const char *vin, size_t vinlen, const void *p, size_t n)
{
    blobs_t *b = ctx;
    if (b->stop_after && (int)b->n == b->stop_after)
        return 42;
    ASSERT(b->n < 64);
    ASSERT(vinlen < 64);
    blob_t *x = &b->v[b->n++];
    memcpy(x->vin, vin, vinlen);
    x->vin[vinlen] = 0;
    x->p = malloc(n ? n : 1);
    ASSERT(x->p != NULL);
    memcpy(x->p, p, n);
    x->n = n;
    return 0;
}

static void blobs_free(blobs_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i].p);
    b->n = 0;
}

static const blob_t *blob_of(const blobs_t *b, const char *vin)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->v[i].vin, vin) == 0)
            return &b->v[i];
    return NULL;
}

static int in_set(const char *vin, const char *const *set)
{
    for (const char *const *v = set; *v; v++)
        if (strcmp(*v, vin) == 0)
            return 1;
    return 0;
}

static void restore_all(vsoc_engine_t *e, const blobs_t *b, const char *const *only)
{
    for (size_t i = 0; i < b->n; i++) {
        if (only && !in_set(b->v[i].vin, only))
            continue;
        size_t dropped = 99;
        char err[256];
        int rc = vsoc_engine_restore(e, b->v[i].p, b->v[i].n, &dropped, err, sizeof err);
        if (rc != 0)
            TEST_FAIL_("restore of %s: %d %s", b->v[i].vin, rc, err);
        ASSERT_EQ(dropped, 0);
    }
}

/* ---- the property: any cut point ------------------------------------------------------ */

/* For every cut k (every step-th): A sees events [0, k) and is snapshotted; B is restored
 * from the snapshot and sees [k, n), and must raise exactly the twin's alerts from k on. At
 * every eighth cut A goes on too: taking a snapshot must not change what it raises. */
static void every_cut(const char *what, vsoc_ruleset_t *rs, const vsoc_scorer_t *sc,
                      const tev_t *s, size_t n, int step)
{
    alog_t twin = {0};
    vsoc_engine_t *t = engine(rs, &twin, sc);
    for (size_t i = 0; i < n; i++)
        feed(t, &twin, &s[i], (int)i);
    vsoc_engine_free(t);
    for (size_t k = 0; k <= n; k += (size_t)step) {
        alog_t la = {0}, lb = {0};
        vsoc_engine_t *a = engine(rs, &la, sc);
        for (size_t i = 0; i < k; i++)
            feed(a, &la, &s[i], (int)i);
        blobs_t b = {0};
        ASSERT_EQ(vsoc_engine_snapshot(a, 1, keep_blob, &b), 0);
        vsoc_engine_t *e = engine(rs, &lb, sc);
        restore_all(e, &b, NULL);
        ASSERT_EQ(vsoc_engine_groups(e), vsoc_engine_groups(a));
        /* A snapshot of the restored engine is the same bytes: nothing was lost. */
        blobs_t again = {0};
        ASSERT_EQ(vsoc_engine_snapshot(e, 1, keep_blob, &again), 0);
        ASSERT_EQ(again.n, b.n);
        for (size_t i = 0; i < b.n; i++) {
            const blob_t *x = blob_of(&again, b.v[i].vin);
            ASSERT(x != NULL);
            ASSERT_EQ(x->n, b.v[i].n);
            ASSERT(memcmp(x->p, b.v[i].p, x->n) == 0);
        }
        blobs_free(&again);
        alog_free(&la);
        const int go_on = (k / (size_t)step) % 8 == 0;
        for (size_t i = k; i < n; i++) {
            if (go_on)
                feed(a, &la, &s[i], (int)i);
            feed(e, &lb, &s[i], (int)i);
        }
        if (go_on)
            same_alerts(&la, &twin, (int)k, NULL, what, (int)k); /* snapshots change nothing */
        same_alerts(&lb, &twin, (int)k, NULL, what, (int)k);     /* as if never cut */
        blobs_free(&b);
        vsoc_engine_free(a);
        vsoc_engine_free(e);
        alog_free(&la);
        alog_free(&lb);
    }
    alog_free(&twin);
}

/* As the service checkpoints: every few events only the vehicles that changed are written,
 * each over its previous blob. Restoring the blobs stored at any checkpoint must give the
 * twin's alerts from there on: nothing that changed was missed, even a vehicle whose only
 * change was another vehicle's event in a group it opened. */
static void incremental_checkpoints(const char *what, vsoc_ruleset_t *rs,
                                    const vsoc_scorer_t *sc, const tev_t *s, size_t n,
                                    int every, int expect_skips)
{
    alog_t twin = {0};
    vsoc_engine_t *t = engine(rs, &twin, sc);
    for (size_t i = 0; i < n; i++)
        feed(t, &twin, &s[i], (int)i);
    vsoc_engine_free(t);
    blobs_t stored = {0};
    vsoc_engine_t *a = engine(rs, NULL, sc);
    size_t skips = 0; /* checkpoints that left some stored vehicle alone */
    for (size_t k = 0; k < n; k++) {
        feed(a, NULL, &s[k], (int)k);
        if ((k + 1) % (size_t)every)
            continue;
        blobs_t changed = {0};
        ASSERT_EQ(vsoc_engine_snapshot(a, 0, keep_blob, &changed), 0);
        ASSERT(changed.n > 0); /* at least the vehicles of the last events */
        skips += changed.n < stored.n;
        for (size_t i = 0; i < changed.n; i++) {
            blob_t *old = (blob_t *)blob_of(&stored, changed.v[i].vin);
            if (!old) {
                ASSERT(stored.n < 64);
                old = &stored.v[stored.n++];
                memcpy(old->vin, changed.v[i].vin, sizeof old->vin);
            } else {
                free(old->p);
            }
            old->p = changed.v[i].p;
            old->n = changed.v[i].n;
        }
        changed.n = 0; /* their bytes now belong to stored */
        alog_t lb = {0};
        vsoc_engine_t *b = engine(rs, &lb, sc);
        restore_all(b, &stored, NULL);
        for (size_t i = k + 1; i < n; i++)
            feed(b, &lb, &s[i], (int)i);
        same_alerts(&lb, &twin, (int)k + 1, NULL, what, (int)k + 1);
        vsoc_engine_free(b);
        alog_free(&lb);
    }
    if (expect_skips && skips == 0)
        TEST_FAIL_("%s: every checkpoint rewrote every vehicle", what);
    blobs_free(&stored);
    vsoc_engine_free(a);
    alog_free(&twin);
}

/* Every rule must have fired in the stream, or the property test proves little. */
static void all_rules_fire(vsoc_ruleset_t *rs, const vsoc_scorer_t *sc, const tev_t *s,
                           size_t n)
{
    alog_t l = {0};
    vsoc_engine_t *e = engine(rs, &l, sc);
    for (size_t i = 0; i < n; i++)
        feed(e, &l, &s[i], (int)i);
    for (size_t r = 0; r < vsoc_ruleset_count(rs); r++) {
        const char *id = vsoc_rule_id(vsoc_ruleset_rule(rs, r));
        int fired = 0, held = 0;
        for (size_t i = 0; i < l.n; i++) {
            fired += strcmp(l.v[i].rule, id) == 0;
            held += strcmp(l.v[i].rule, id) == 0 && l.v[i].suppressed > 0;
        }
        if (fired < 2)
            TEST_FAIL_("rule %s fired %d times in the test stream", id, fired);
        if (strstr(id, "sup") && !held)
            TEST_FAIL_("rule %s never reported held alerts", id);
    }
    vsoc_engine_free(e);
    alog_free(&l);
}

static void test_every_cut_one_engine(void)
{
    tev_t s[300];
    size_t n = make_stream(s, 300, 1);
    vsoc_ruleset_t *rs = rules(per_vehicle_rules, shared_rule);
    all_rules_fire(rs, NULL, s, n);
    every_cut("one engine", rs, NULL, s, n, 1);
    vsoc_ruleset_unref(rs);
}

/* Vehicles over two engines A1, A2 merged into one B; and one engine A split into B1, B2.
 * Groups are per vehicle, so each vehicle's alerts are those of a single engine that saw
 * everything. */
static void test_split_and_merge(void)
{
    tev_t s[300];
    size_t n = make_stream(s, 300, 0);
    vsoc_ruleset_t *rs = rules(per_vehicle_rules, NULL);
    static const char *const left[] = {"V1", "V2", NULL}, *const right[] = {"V3", "V4", NULL};
    alog_t twin = {0};
    vsoc_engine_t *t = engine(rs, &twin, NULL);
    for (size_t i = 0; i < n; i++)
        feed(t, &twin, &s[i], (int)i);
    vsoc_engine_free(t);
    for (size_t k = 0; k <= n; k += 5) {
        /* Two into one. */
        alog_t l1 = {0}, l2 = {0}, lb = {0};
        vsoc_engine_t *a1 = engine(rs, &l1, NULL), *a2 = engine(rs, &l2, NULL);
        for (size_t i = 0; i < k; i++)
            feed(in_set(s[i].vin, left) ? a1 : a2, NULL, &s[i], (int)i);
        blobs_t b = {0};
        ASSERT_EQ(vsoc_engine_snapshot(a1, 1, keep_blob, &b), 0);
        ASSERT_EQ(vsoc_engine_snapshot(a2, 1, keep_blob, &b), 0);
        vsoc_engine_t *m = engine(rs, &lb, NULL);
        restore_all(m, &b, NULL);
        for (size_t i = k; i < n; i++)
            feed(m, &lb, &s[i], (int)i);
        same_alerts(&lb, &twin, (int)k, NULL, "two engines into one", (int)k);
        vsoc_engine_free(a1);
        vsoc_engine_free(a2);
        vsoc_engine_free(m);
        blobs_free(&b);
        alog_free(&lb);
        alog_free(&l1); /* what A1 and A2 raised before the cut */
        alog_free(&l2);

        /* One into two. */
        alog_t la = {0};
        vsoc_engine_t *a = engine(rs, &la, NULL);
        for (size_t i = 0; i < k; i++)
            feed(a, NULL, &s[i], (int)i);
        ASSERT_EQ(vsoc_engine_snapshot(a, 1, keep_blob, &b), 0);
        vsoc_engine_t *b1 = engine(rs, &l1, NULL), *b2 = engine(rs, &l2, NULL);
        restore_all(b1, &b, left);
        restore_all(b2, &b, right);
        for (size_t i = k; i < n; i++)
            feed(in_set(s[i].vin, left) ? b1 : b2, in_set(s[i].vin, left) ? &l1 : &l2, &s[i],
                 (int)i);
        same_alerts(&l1, &twin, (int)k, left, "one engine into two (left)", (int)k);
        same_alerts(&l2, &twin, (int)k, right, "one engine into two (right)", (int)k);
        vsoc_engine_free(a);
        vsoc_engine_free(b1);
        vsoc_engine_free(b2);
        blobs_free(&b);
        alog_free(&la);
        alog_free(&l1);
        alog_free(&l2);
    }
    alog_free(&twin);
    vsoc_ruleset_unref(rs);
}

/* ---- baseline scoring ------------------------------------------------------------------ */

static vsoc_event_t frame(double t, uint32_t id, const uint8_t *data, uint8_t len)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_CAN;
    ev.ts_us = (int64_t)(t * 1e6 + 0.5);
    ev.can.id = id;
    ev.can.len = ev.can.dlc = len;
    memcpy(ev.can.data, data, len);
    ev.bus.p = "can0";
    ev.bus.n = 4;
    return ev;
}

/* 0x123 every 100 ms with a nibble counter in byte 0; 0x124 every 50 ms, byte 1 in a range. */
static vsoc_baseline_t *learn(int variant)
{
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    ASSERT(l != NULL);
    ASSERT_EQ(vsoc_baseline_learner_file_begin(l, "learn.log", ""), 0);
    for (int i = 0; i < 400; i++) {
        uint8_t d[2] = {(uint8_t)(i & 15), (uint8_t)(0x20 + i % (7 + variant))};
        vsoc_event_t ev = frame(i * 0.1, 0x123, d, 2);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
        ev = frame(i * 0.1 + 0.05, 0x124, d, 2);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
        ev = frame(i * 0.1 + 0.025, 0x124, d, 2);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
    }
    vsoc_baseline_t *b = vsoc_baseline_from_learner(l, "t", "test");
    ASSERT(b != NULL);
    vsoc_baseline_learner_free(l);
    return b;
}

/* Two vehicles sending the learnt traffic, with counter breaks, injected copies, a payload
 * out of range, an unknown ID and a silence of 0x123 (a missing message). */
static size_t make_scored_stream(tev_t *out, size_t max)
{
    size_t n = 0;
    rng_state = 0x1234567ULL;
    for (int i = 0; n + 4 <= max; i++) {
        for (int v = 0; v < 2; v++) {
            int64_t base = 500000000 + (int64_t)i * 100000 + v * 3000;
            int silent = (v == 1 && i >= 40 && i < 55) || (v == 0 && i >= 70 && i < 85);
            tev_t *t = &out[n];
            if (!silent) {
                memset(t, 0, sizeof *t);
                t->ts = base;
                snprintf(t->vin, sizeof t->vin, "W%d", v + 1);
                t->id = 0x123;
                t->len = 2;
                t->data[0] = (uint8_t)((i + (rnd(9) == 0)) & 15); /* sometimes a break */
                t->data[1] = (uint8_t)(0x20 + rnd(rnd(10) == 0 ? 40 : 6));
                n++;
                if (rnd(12) == 0) { /* an injected copy right after */
                    out[n] = *t;
                    out[n].ts += 2000;
                    n++;
                }
            }
            t = &out[n++];
            memset(t, 0, sizeof *t);
            t->ts = base + 50000;
            snprintf(t->vin, sizeof t->vin, "W%d", v + 1);
            t->id = rnd(25) == 0 ? 0x555 : 0x124;
            t->len = 2;
            t->data[1] = 0x21;
        }
    }
    return n;
}

static const char *scored_rules =
    CAN_HEAD("b.anomaly") "detection:\n  s: {baseline.score|gte: 0.5}\n  condition: s\n"
    "correlation: {type: event_count, group-by: [vin, can.id], timespan: 3s, condition: {gte: 2}}\n"
    "suppress: {group-by: [vin, can.id], for: 2s}\n"
    "---\n" CAN_HEAD("b.counter") "detection:\n  s: {baseline.reasons: counter}\n  condition: s\n"
    "---\n" CAN_HEAD("b.missing") "detection:\n  s: {baseline.reasons: missing}\n  condition: s\n"
    "---\n" CAN_HEAD("b.payload") "detection:\n  s: {baseline.reasons: payload}\n  condition: s\n"
    "suppress: {group-by: [vin], for: 1s}\n";

static void test_every_cut_scored(void)
{
    vsoc_baseline_t *b = learn(0);
    vsoc_scorer_t *sc = vsoc_scorer_new(b);
    ASSERT(sc != NULL);
    tev_t s[400];
    size_t n = make_scored_stream(s, 400);
    vsoc_ruleset_t *rs = rules(scored_rules, NULL);
    all_rules_fire(rs, sc, s, n);
    every_cut("baseline scoring", rs, sc, s, n, 4);
    vsoc_ruleset_unref(rs);
    vsoc_scorer_free(sc);
    vsoc_baseline_free(b);
}

static void test_incremental_checkpoints(void)
{
    tev_t s[300];
    size_t n = make_stream(s, 300, 1);
    vsoc_ruleset_t *rs = rules(per_vehicle_rules, shared_rule);
    incremental_checkpoints("incremental", rs, NULL, s, n, 3, 1);
    vsoc_ruleset_unref(rs);
    vsoc_baseline_t *bl = learn(0);
    vsoc_scorer_t *sc = vsoc_scorer_new(bl);
    tev_t ss[400];
    size_t sn = make_scored_stream(ss, 400);
    rs = rules(scored_rules, NULL);
    incremental_checkpoints("incremental, scored", rs, sc, ss, sn, 5, 0);
    vsoc_ruleset_unref(rs);
    vsoc_scorer_free(sc);
    vsoc_baseline_free(bl);
}

/* ---- dirty tracking -------------------------------------------------------------------- */

static tev_t can_ev(double t, const char *vin, uint32_t id)
{
    tev_t x;
    memset(&x, 0, sizeof x);
    x.ts = (int64_t)(t * 1e6);
    snprintf(x.vin, sizeof x.vin, "%s", vin);
    x.id = id;
    x.len = 1;
    return x;
}

static void send(vsoc_engine_t *e, double t, const char *vin, uint32_t id)
{
    tev_t x = can_ev(t, vin, id);
    feed(e, NULL, &x, 0);
}

/* The vins a snapshot reports, sorted into one string ("V1,V2"). */
static const char *reported(vsoc_engine_t *e, int all, blobs_t *b)
{
    static char buf[256];
    blobs_free(b);
    ASSERT_EQ(vsoc_engine_snapshot(e, all, keep_blob, b), 0);
    buf[0] = 0;
    for (int pass = 0; pass < 2; pass++) /* V1 before V2 */
        for (size_t i = 0; i < b->n; i++)
            if (strcmp(b->v[i].vin, pass ? "V2" : "V1") == 0 ||
                (pass && strcmp(b->v[i].vin, "V1") && strcmp(b->v[i].vin, "V2"))) {
                if (buf[0])
                    strcat(buf, ",");
                strcat(buf, b->v[i].vin);
            }
    return buf;
}

static size_t groups_in(const blob_t *x, vsoc_ruleset_t *rs)
{
    vsoc_engine_t *e = engine(rs, NULL, NULL);
    char err[256];
    ASSERT_EQ(vsoc_engine_restore(e, x->p, x->n, NULL, err, sizeof err), 0);
    size_t g = vsoc_engine_groups(e);
    vsoc_engine_free(e);
    return g;
}

static void test_dirty_tracking(void)
{
    vsoc_ruleset_t *rs = rules(per_vehicle_rules, shared_rule);
    vsoc_engine_t *e = engine(rs, NULL, NULL);
    blobs_t b = {0};
    send(e, 10, "V1", 0x100);
    send(e, 10.5, "V2", 0x100);
    ASSERT_STREQ(reported(e, 0, &b), "V1,V2"); /* the first call: everything */
    ASSERT_STREQ(reported(e, 0, &b), "");      /* nothing happened since */
    send(e, 11, "V1", 0x999); /* no rule: the vehicle's clock moved */
    ASSERT_STREQ(reported(e, 0, &b), "V1");
    ASSERT_STREQ(reported(e, 1, &b), "V1,V2");
    ASSERT_STREQ(reported(e, 0, &b), "");

    /* A shared group opened by V1 and counted by V2 changes V1's blob. */
    send(e, 12, "V1", 0x700);
    ASSERT_STREQ(reported(e, 0, &b), "V1");
    size_t before = blob_of(&b, "V1")->n;
    send(e, 12.5, "V2", 0x700);
    ASSERT_STREQ(reported(e, 0, &b), "V1,V2");
    ASSERT(blob_of(&b, "V1")->n > before); /* one more entry in the shared window */
    ASSERT_EQ(groups_in(blob_of(&b, "V2"), rs), 1); /* V2 has its own s.ec group only */

    /* A failing fn clears nothing: the next call reports the same vehicles. */
    send(e, 13, "V2", 0x999);
    blobs_free(&b);
    b.stop_after = 1;
    send(e, 13.5, "V1", 0x999);
    ASSERT_EQ(vsoc_engine_snapshot(e, 0, keep_blob, &b), 42);
    b.stop_after = 0;
    ASSERT_STREQ(reported(e, 0, &b), "V1,V2");

    /* V2 alone goes on for a while: V1, untouched, is not reported... */
    for (int i = 0; i < 100; i++)
        send(e, 20 + i, "V2", 0x999);
    ASSERT_STREQ(reported(e, 0, &b), "V2");
    ASSERT_EQ(groups_in(blob_of(&b, "V2"), rs), 0); /* V2's windows have passed */
    /* ...until its groups are freed, after an hour of sweeps without it. */
    for (int i = 0; i < 3700; i++)
        send(e, 120 + i, "V2", 0x999);
    ASSERT_STREQ(reported(e, 0, &b), "V1,V2");
    ASSERT_EQ(groups_in(blob_of(&b, "V1"), rs), 0);
    ASSERT_EQ(vsoc_engine_groups(e), 0);
    blobs_free(&b);
    vsoc_engine_free(e);
    vsoc_ruleset_unref(rs);
}

/* ---- restoring into a different engine ------------------------------------------------- */

static void test_rules_changed(void)
{
    const char *old_rules =
        CAN_HEAD("c.ec") "detection:\n  s: {can.id: 0x100}\n  condition: s\n"
        "correlation: {type: event_count, group-by: [vin], timespan: 50s, condition: {gte: 3}}\n"
        "---\n" CAN_HEAD("c.tu") "detection:\n  a: {can.id: 0x300}\n  b: {can.id: 0x301}\n"
        "correlation: {type: temporal, detections: [a, b], group-by: [vin], timespan: 30s}\n"
        "---\n" CAN_HEAD("c.sup") "detection:\n  s: {can.id: 0x500}\n  condition: s\n"
        "suppress: {group-by: [vin], for: 30s}\n";
    /* c.ec's threshold changed, c.tu's title only, c.sup removed, c.new added. */
    const char *new_rules =
        CAN_HEAD("c.ec") "detection:\n  s: {can.id: 0x100}\n  condition: s\n"
        "correlation: {type: event_count, group-by: [vin], timespan: 50s, condition: {gte: 4}}\n"
        "---\nid: c.tu\ntitle: A better title\nlevel: low\ntags: [x.y]\n"
        "logsource: {product: vehicle, category: can}\n"
        "detection:\n  a: {can.id: 0x300}\n  b: {can.id: 0x301}\n"
        "correlation: {type: temporal, detections: [a, b], group-by: [vin], timespan: 30s}\n"
        "---\n" CAN_HEAD("c.new") "detection:\n  s: {can.id: 0x500}\n  condition: s\n";
    vsoc_ruleset_t *ro = rules(old_rules, NULL), *rn = rules(new_rules, NULL);
    alog_t la = {0}, lb = {0};
    vsoc_engine_t *a = engine(ro, &la, NULL);
    static const char *const vins[] = {"V1", "V2"};
    for (int v = 0; v < 2; v++) {
        send(a, 1 + v, vins[v], 0x100);
        send(a, 2 + v, vins[v], 0x300);
        send(a, 3 + v, vins[v], 0x500);
    }
    ASSERT_EQ(vsoc_engine_groups(a), 6);
    alog_free(&la);
    blobs_t b = {0};
    ASSERT_EQ(vsoc_engine_snapshot(a, 1, keep_blob, &b), 0);
    vsoc_engine_t *e = engine(rn, &lb, NULL);
    size_t total = 0;
    for (size_t i = 0; i < b.n; i++) {
        size_t dropped = 0;
        char err[256];
        ASSERT_EQ(vsoc_engine_restore(e, b.v[i].p, b.v[i].n, &dropped, err, sizeof err), 0);
        ASSERT_EQ(dropped, 2); /* c.ec (changed) and c.sup (gone) */
        total += dropped;
    }
    ASSERT_EQ(total, 4);
    ASSERT_EQ(vsoc_engine_groups(e), 2); /* c.tu's, kept across a title change */
    /* The kept temporal group completes as it would have. */
    tev_t x = can_ev(10, "V1", 0x301);
    feed(a, &la, &x, 1);
    feed(e, &lb, &x, 1);
    ASSERT_EQ(la.n, 1);
    ASSERT_EQ(lb.n, 1);
    ASSERT_STREQ(lb.v[0].uid, la.v[0].uid);
    ASSERT_EQ(lb.v[0].first, 2000000);
    /* Restored vehicles that lost groups are dirty: the next snapshot stores them again. */
    blobs_t again = {0};
    ASSERT_EQ(vsoc_engine_snapshot(e, 0, keep_blob, &again), 0);
    ASSERT_EQ(again.n, 2);
    blobs_free(&again);

    /* A vehicle the engine has seen, or restored once already, is refused. */
    char err[256];
    ASSERT_EQ(vsoc_engine_restore(e, b.v[0].p, b.v[0].n, NULL, err, sizeof err), VSOC_EINVAL);
    ASSERT(strstr(err, "already") != NULL);
    blobs_free(&b);
    vsoc_engine_free(a);
    vsoc_engine_free(e);
    alog_free(&la);
    alog_free(&lb);
    vsoc_ruleset_unref(ro);
    vsoc_ruleset_unref(rn);
}

static void test_scorer_changed(void)
{
    vsoc_baseline_t *b0 = learn(0), *b1 = learn(3);
    vsoc_scorer_t *s0 = vsoc_scorer_new(b0), *s0b = vsoc_scorer_new(b0), *s1 = vsoc_scorer_new(b1);
    ASSERT(s0 && s0b && s1);
    ASSERT(vsoc_scorer_fingerprint(s0) == vsoc_scorer_fingerprint(s0b));
    ASSERT(vsoc_scorer_fingerprint(s0) != vsoc_scorer_fingerprint(s1));
    vsoc_ruleset_t *rs = rules(scored_rules, NULL);
    vsoc_engine_t *a = engine(rs, NULL, s0);
    tev_t x = can_ev(1, "W1", 0x123);
    x.len = 2;
    feed(a, NULL, &x, 0);
    blobs_t b = {0};
    ASSERT_EQ(vsoc_engine_snapshot(a, 1, keep_blob, &b), 0);
    const vsoc_scorer_t *targets[3] = {s0b, s1, NULL};
    const size_t want[3] = {0, 1, 1}; /* same baseline; another one; none */
    for (int i = 0; i < 3; i++) {
        vsoc_engine_t *e = engine(rs, NULL, targets[i]);
        size_t dropped = 99;
        char err[256];
        ASSERT_EQ(vsoc_engine_restore(e, b.v[0].p, b.v[0].n, &dropped, err, sizeof err), 0);
        ASSERT_EQ(dropped, want[i]);
        vsoc_engine_free(e);
    }
    blobs_free(&b);
    vsoc_engine_free(a);
    vsoc_ruleset_unref(rs);

    /* The saved scoring state itself: one entry round-trips; a time the scorer could not
     * subtract from, or a repeated entry, is refused. */
    void *st = malloc(vsoc_scorer_state_bytes(s0)), *st2 = malloc(vsoc_scorer_state_bytes(s0));
    ASSERT(st && st2);
    vsoc_scorer_state_init(s0, st);
    vsoc_event_t ev = frame(5, 0x123, (const uint8_t *)"\x05\x21", 2);
    vsoc_scorer_score(s0, st, &ev);
    uint8_t saved[256];
    size_t sn = vsoc_scorer_state_save(s0, st, saved);
    ASSERT_EQ(sn, vsoc_scorer_state_saved_bytes(s0, st));
    ASSERT_EQ(sn, 8 + 21);
    ASSERT_EQ(vsoc_scorer_state_load(s0, st2, saved, sn), 0);
    uint8_t again[256];
    ASSERT_EQ(vsoc_scorer_state_save(s0, st2, again), sn);
    ASSERT(memcmp(again, saved, sn) == 0);
    uint8_t bad[256];
    memcpy(bad, saved, sn);
    bad[8 + 4 + 7] = 0x80; /* last time near INT64_MIN, but not "never" */
    ASSERT_EQ(vsoc_scorer_state_load(s0, st2, bad, sn), VSOC_EPARSE);
    ASSERT_EQ(vsoc_scorer_state_load(s0, st2, saved, sn - 1), VSOC_EPARSE);
    free(st);
    free(st2);
    vsoc_scorer_free(s0);
    vsoc_scorer_free(s0b);
    vsoc_scorer_free(s1);
    vsoc_baseline_free(b0);
    vsoc_baseline_free(b1);
}

/* ---- corrupted blobs ----------------------------------------------------------------- */

/* A blob accepted must mean one state: its engine snapshots to a blob that restores to an
 * engine that snapshots to the same bytes, and events run on it. */
static void accepted_consistently(vsoc_engine_t *e, vsoc_ruleset_t *rs, const vsoc_scorer_t *sc)
{
    blobs_t b1 = {0}, b2 = {0};
    ASSERT_EQ(vsoc_engine_snapshot(e, 1, keep_blob, &b1), 0);
    ASSERT_EQ(b1.n, 1);
    vsoc_engine_t *e2 = engine(rs, NULL, sc);
    char err[256];
    if (vsoc_engine_restore(e2, b1.v[0].p, b1.v[0].n, NULL, err, sizeof err) != 0)
        TEST_FAIL_("a re-snapshot does not restore: %s", err);
    ASSERT_EQ(vsoc_engine_snapshot(e2, 1, keep_blob, &b2), 0);
    ASSERT_EQ(b2.n, 1);
    ASSERT_EQ(b2.v[0].n, b1.v[0].n);
    ASSERT(memcmp(b2.v[0].p, b1.v[0].p, b1.v[0].n) == 0);
    tev_t x = can_ev(1000, b1.v[0].vin, 0x100);
    feed(e, NULL, &x, 0);
    x = can_ev(1000.1, b1.v[0].vin, 0x123);
    feed(e, NULL, &x, 0);
    vsoc_engine_free(e2);
    blobs_free(&b1);
    blobs_free(&b2);
}

static void corrupt(const char *what, vsoc_ruleset_t *rs, const vsoc_scorer_t *sc,
                    const blob_t *x, int flips)
{
    char err[256];
    /* Every truncation, and a byte too many, is refused, with a reason, changing nothing. */
    vsoc_engine_t *e = engine(rs, NULL, sc);
    for (size_t len = 0; len < x->n; len++) {
        err[0] = 0;
        int rc = vsoc_engine_restore(e, x->p, len, NULL, err, sizeof err);
        if (rc != VSOC_EPARSE)
            TEST_FAIL_("%s: a blob cut to %zu of %zu bytes gave %d", what, len, x->n, rc);
        ASSERT(strstr(err, "engine snapshot") != NULL);
    }
    uint8_t *longer = malloc(x->n + 1);
    ASSERT(longer != NULL);
    memcpy(longer, x->p, x->n);
    longer[x->n] = 0;
    ASSERT_EQ(vsoc_engine_restore(e, longer, x->n + 1, NULL, err, sizeof err), VSOC_EPARSE);
    free(longer);
    ASSERT_EQ(vsoc_engine_groups(e), 0);
    ASSERT_EQ(vsoc_engine_restore(e, x->p, x->n, NULL, err, sizeof err), 0);
    ASSERT(vsoc_engine_groups(e) > 0);
    vsoc_engine_free(e);

    /* Random byte flips: refused, or accepted as one consistent state. */
    uint8_t *buf = malloc(x->n);
    ASSERT(buf != NULL);
    int accepted = 0, refused = 0;
    e = engine(rs, NULL, sc);
    rng_state = 0xC0FFEEULL;
    for (int it = 0; it < flips; it++) {
        memcpy(buf, x->p, x->n);
        int k = 1 + (int)rnd(3);
        for (int j = 0; j < k; j++)
            buf[rnd((uint32_t)x->n)] ^= (uint8_t)(1 + rnd(255));
        err[0] = 0;
        int rc = vsoc_engine_restore(e, buf, x->n, NULL, err, sizeof err);
        if (rc == VSOC_EPARSE) {
            ASSERT(err[0] != 0);
            ASSERT_EQ(vsoc_engine_groups(e), 0);
            refused++;
            continue;
        }
        if (rc != 0)
            TEST_FAIL_("%s: flip %d gave %d (%s)", what, it, rc, err);
        accepted++;
        accepted_consistently(e, rs, sc);
        vsoc_engine_free(e);
        e = engine(rs, NULL, sc);
    }
    vsoc_engine_free(e);
    free(buf);
    /* Both outcomes must occur, or the flips did not reach the checks. */
    ASSERT(accepted > 0);
    ASSERT(refused > 0);
}

static void test_corruption(void)
{
    /* A rich blob: V1 partway through the stream, with every kind of group open. */
    tev_t s[300];
    size_t n = make_stream(s, 300, 1);
    vsoc_ruleset_t *rs = rules(per_vehicle_rules, shared_rule);
    vsoc_engine_t *a = engine(rs, NULL, NULL);
    size_t best = 0;
    blobs_t keep = {0};
    for (size_t i = 0; i < n; i++) {
        feed(a, NULL, &s[i], (int)i);
        blobs_t b = {0};
        ASSERT_EQ(vsoc_engine_snapshot(a, 1, keep_blob, &b), 0);
        const blob_t *v1 = blob_of(&b, "V1");
        if (v1 && v1->n > best) {
            best = v1->n;
            blobs_free(&keep);
            keep_blob(&keep, v1->vin, strlen(v1->vin), v1->p, v1->n);
        }
        blobs_free(&b);
    }
    ASSERT(groups_in(&keep.v[0], rs) >= 6);
    corrupt("stream blob", rs, NULL, &keep.v[0], 800);
    blobs_free(&keep);
    vsoc_engine_free(a);
    vsoc_ruleset_unref(rs);

    /* One with baseline scoring state. */
    vsoc_baseline_t *bl = learn(0);
    vsoc_scorer_t *sc = vsoc_scorer_new(bl);
    tev_t ss[200];
    size_t sn = make_scored_stream(ss, 200);
    rs = rules(scored_rules, NULL);
    a = engine(rs, NULL, sc);
    for (size_t i = 0; i < sn; i++)
        feed(a, NULL, &ss[i], (int)i);
    blobs_t b = {0};
    ASSERT_EQ(vsoc_engine_snapshot(a, 1, keep_blob, &b), 0);
    corrupt("scored blob", rs, sc, blob_of(&b, "W1"), 300);
    /* Wrong magic and version say so. */
    char err[256];
    blob_t *w = &b.v[0];
    vsoc_engine_t *e = engine(rs, NULL, sc);
    w->p[0] = 'X';
    ASSERT_EQ(vsoc_engine_restore(e, w->p, w->n, NULL, err, sizeof err), VSOC_EPARSE);
    ASSERT(strstr(err, "magic") != NULL);
    w->p[0] = 'V';
    w->p[4] = 2;
    ASSERT_EQ(vsoc_engine_restore(e, w->p, w->n, NULL, err, sizeof err), VSOC_EPARSE);
    ASSERT(strstr(err, "version 2") != NULL);
    w->p[4] = 1;
    ASSERT_EQ(vsoc_engine_restore(e, w->p, w->n, NULL, err, sizeof err), 0);
    vsoc_engine_free(e);
    blobs_free(&b);
    vsoc_engine_free(a);
    vsoc_ruleset_unref(rs);
    vsoc_scorer_free(sc);
    vsoc_baseline_free(bl);
}

/* vsoc_engine_forget, as the service uses it when a partition goes to another instance
 * and later comes back: the engine forgets the partition's vehicles (left out of
 * snapshots), and takes their state from a blob again; or, with no blob, starts them
 * afresh. Either way each vehicle's alerts are those of an engine that saw its events once. */
static void test_forget(void)
{
    tev_t s[300];
    size_t n = make_stream(s, 300, 0);
    vsoc_ruleset_t *rs = rules(per_vehicle_rules, NULL);
    static const char *const gone[] = {"V1", "V2", NULL};
    alog_t twin = {0};
    vsoc_engine_t *t = engine(rs, &twin, NULL);
    for (size_t i = 0; i < n; i++)
        feed(t, &twin, &s[i], (int)i);
    vsoc_engine_free(t);
    for (size_t k = 10; k < n; k += 29) {
        /* Both engines log into one list: events are fed in order, so it holds every
         * alert in the order a single engine would raise them. */
        alog_t la = {0};
        vsoc_engine_t *a = engine(rs, &la, NULL), *other = engine(rs, &la, NULL);
        for (size_t i = 0; i < k; i++)
            feed(a, NULL, &s[i], (int)i);
        alog_free(&la); /* the alerts before the cut are not compared */
        /* The partition of V1 and V2 goes: its state as handed over, then forgotten. */
        blobs_t b = {0};
        ASSERT_EQ(vsoc_engine_snapshot(a, 1, keep_blob, &b), 0);
        size_t freed = 0;
        for (int v = 0; gone[v]; v++)
            freed += (size_t)vsoc_engine_forget(a, gone[v], strlen(gone[v]));
        ASSERT_EQ(vsoc_engine_forget(a, "nobody", 6), 0);
        blobs_t after = {0};
        ASSERT_EQ(vsoc_engine_snapshot(a, 1, keep_blob, &after), 0);
        for (int v = 0; gone[v]; v++)
            ASSERT(blob_of(&after, gone[v]) == NULL); /* forgotten: not in snapshots */
        blobs_free(&after);
        /* Another engine reads on from the hand-over; then the partition comes back with its
         * state as the other engine leaves it, and A restores it into the forgotten slots. */
        restore_all(other, &b, gone);
        /* Restored state is not in the receiver's own snapshots until touched: a snapshot
         * of changes then reports exactly the touched vehicles. */
        blobs_t none = {0}, touched = {0};
        ASSERT_EQ(vsoc_engine_snapshot(other, 0, keep_blob, &none), 0);
        ASSERT_EQ(none.n, 0);
        int held = 0;
        for (int v = 0; gone[v]; v++)
            held += vsoc_engine_touch(other, gone[v], strlen(gone[v]));
        ASSERT_EQ(vsoc_engine_touch(other, "nobody", 6), 0);
        ASSERT_EQ(vsoc_engine_snapshot(other, 0, keep_blob, &touched), 0);
        ASSERT_EQ(touched.n, (size_t)held);
        for (size_t j = 0; j < touched.n; j++)
            ASSERT(blob_of(&b, touched.v[j].vin) != NULL);
        blobs_free(&none);
        blobs_free(&touched);
        size_t back = k + (n - k) / 2;
        for (size_t i = k; i < back; i++)
            feed(in_set(s[i].vin, gone) ? other : a, &la, &s[i], (int)i);
        blobs_t ret = {0};
        ASSERT_EQ(vsoc_engine_snapshot(other, 1, keep_blob, &ret), 0);
        restore_all(a, &ret, gone);
        for (size_t i = back; i < n; i++)
            feed(a, &la, &s[i], (int)i);
        same_alerts(&la, &twin, (int)k, NULL, "forgotten and restored", (int)k);
        ASSERT(freed > 0 || k < 20); /* they had windows open to forget */
        vsoc_engine_free(a);
        vsoc_engine_free(other);
        blobs_free(&b);
        blobs_free(&ret);
        alog_free(&la);
    }
    alog_free(&twin);
    vsoc_ruleset_unref(rs);
}

int main(void)
{
    test_dirty_tracking();
    test_rules_changed();
    test_scorer_changed();
    test_every_cut_one_engine();
    test_split_and_merge();
    test_forget();
    test_every_cut_scored();
    test_incremental_checkpoints();
    test_corruption();
    return 0;
}
