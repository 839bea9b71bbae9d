/* test_fleet_state.c: the fleet counter's state (fleet.h): vsoc_fleet_snapshot,
 * vsoc_fleet_restore and vsoc_fleet_changed. A counter restored from a snapshot taken at any
 * point of a stream of hits gives, for the rest of the stream, exactly the results of a
 * counter that saw the whole stream, and snapshots to the same bytes (the format is
 * canonical); the blob is the documented format; blobs truncated or corrupted are refused
 * with the reason and its byte offset and leave the counter empty. Run under ASan in the
 * sanitizer build, which also checks that refusals free what they built. */
#include "fleet.h"
#include "test.h"
#include "vsoc.h"

#define S 1000000LL /* one second in us */

static const unsigned char empty_blob[8] = {'V', 'S', 'F', '1', 0, 0, 0, 0};

/* ---- helpers ------------------------------------------------------------------------- */

static void snap(vsoc_fleet_t *f, unsigned char **blob, size_t *n)
{
    void *p = NULL;
    ASSERT_EQ(vsoc_fleet_snapshot(f, &p, n), 0);
    ASSERT(p != NULL);
    *blob = p;
}

/* f's snapshot must be the n bytes of want. */
static void snap_is(vsoc_fleet_t *f, const void *want, size_t n, const char *what)
{
    unsigned char *got;
    size_t gn;
    snap(f, &got, &gn);
    if (gn != n || memcmp(got, want, n) != 0) {
        size_t at = 0;
        while (at < gn && at < n && got[at] == ((const unsigned char *)want)[at])
            at++;
        TEST_FAIL_("%s: snapshot of %zu bytes differs from the %zu expected at byte %zu", what,
                   gn, n, at);
    }
    free(got);
}

/* A new counter restored from blob; the restore must succeed. */
static vsoc_fleet_t *restored(const void *blob, size_t n)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    ASSERT(f != NULL);
    char err[256] = "";
    int rc = vsoc_fleet_restore(f, blob, n, err, sizeof err);
    if (rc != 0)
        TEST_FAIL_("restore of %zu bytes: %d (%s)", n, rc, err);
    ASSERT_EQ(vsoc_fleet_changed(f), 0);
    return f;
}

static void same_result(const vsoc_fleet_result_t *got, const vsoc_fleet_result_t *want,
                        const char *what, size_t hit)
{
    if (got->vehicles != want->vehicles || got->alert != want->alert ||
        strcmp(got->uid, want->uid) != 0 || got->first_us != want->first_us ||
        got->nvins != want->nvins)
        TEST_FAIL_("%s, hit %zu: vehicles %llu/%llu alert %d/%d uid \"%s\"/\"%s\" "
                   "first %lld/%lld nvins %zu/%zu (got/want)", what, hit,
                   (unsigned long long)got->vehicles, (unsigned long long)want->vehicles,
                   got->alert, want->alert, got->uid, want->uid, (long long)got->first_us,
                   (long long)want->first_us, got->nvins, want->nvins);
    for (size_t k = 0; k < got->nvins; k++)
        if (memcmp(got->vins[k], want->vins[k], sizeof got->vins[k]) != 0)
            TEST_FAIL_("%s, hit %zu: sample %zu \"%s\" != \"%s\"", what, hit, k, got->vins[k],
                       want->vins[k]);
}

/* ---- a stream of hits ---------------------------------------------------------------- */

typedef struct frule_def {
    const char *id;
    int64_t span;
    uint64_t gte;
    int64_t t0;
} frule_def_t;

/* Windows from 1 s to 2 min, thresholds from 1 to 12; one rule lives in negative event
 * time (the i64 fields are signed). Listed out of id order: the blob sorts them. */
static const frule_def_t rdefs[] = {
    {"fleet.can.flood", 30 * S, 3, 1764064800LL * S},
    {"fleet.ecu.reflash", 5 * S, 2, 1764064800LL * S},
    {"fleet.gps.jump", 120 * S, 12, 1764064900LL * S},
    {"a.early", 2 * S, 1, -500 * S},
    {"fleet.diag.unlock", 10 * S, 6, 1764065000LL * S},
};
#define NRULES (sizeof rdefs / sizeof *rdefs)

#define NVINS 50
typedef struct vin {
    char b[VSOC_VIN_MAX + 1];
    size_t n;
} vin_t;
static vin_t vins[NVINS];

/* VIN-like names, short ones, prefixes of each other, one of VSOC_VIN_MAX bytes, bytes
 * above 0x7f (memcmp order is unsigned) and one with a NUL inside (vins are bytes). */
static void make_vins(void)
{
    for (int i = 0; i < NVINS; i++) {
        vin_t *v = &vins[i];
        if (i % 5 == 0)
            snprintf(v->b, sizeof v->b, "V%d", i / 5);
        else if (i % 5 == 1)
            snprintf(v->b, sizeof v->b, "V%dX", i / 5); /* "V1" is a prefix of "V1X" */
        else
            snprintf(v->b, sizeof v->b, "WVWZZZ1JZXW%06d", i);
        v->n = strlen(v->b);
    }
    memset(vins[47].b, 'M', VSOC_VIN_MAX);
    vins[47].n = VSOC_VIN_MAX;
    memcpy(vins[48].b, "\xc3\xa9V\xff", 4);
    vins[48].n = 4;
    memcpy(vins[49].b, "N\0UL", 4);
    vins[49].n = 4;
}

typedef struct fhit {
    int rule, vin;
    int64_t t;
} fhit_t;

#define NHITS 3000

static uint64_t rnd_state;
static uint64_t rnd(void)
{
    /* splitmix64: deterministic across platforms. */
    uint64_t z = (rnd_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Mostly forward in steps of up to 1.5 s, sometimes at the same time as the previous hit,
 * sometimes late within the window, sometimes late beyond it. */
static void make_stream(fhit_t *hs, size_t n, int *late_beyond)
{
    int64_t now[NRULES];
    for (size_t r = 0; r < NRULES; r++)
        now[r] = rdefs[r].t0;
    rnd_state = 20251125;
    *late_beyond = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = rnd();
        int r = (int)(x % 8);
        r = r < (int)NRULES ? r : (int)(x % 3); /* the first three rules get more hits */
        const frule_def_t *d = &rdefs[r];
        unsigned kind = (unsigned)((x >> 8) % 20);
        int64_t t = now[r];
        if (kind < 13) {
            now[r] += (int64_t)((x >> 16) % (uint64_t)(3 * S / 2));
            t = now[r];
        } else if (kind < 16) {
            /* same time as the rule's newest */
        } else if (kind < 19) {
            t = now[r] - (int64_t)((x >> 16) % (uint64_t)(d->span + 1));
        } else {
            t = now[r] - d->span - 1 - (int64_t)((x >> 16) % (uint64_t)d->span);
            (*late_beyond)++;
        }
        hs[i].rule = r;
        hs[i].vin = (int)((x >> 40) % NVINS);
        hs[i].t = t;
    }
}

static void feed(vsoc_fleet_t *f, const fhit_t *h, vsoc_fleet_result_t *out)
{
    const frule_def_t *d = &rdefs[h->rule];
    const vin_t *v = &vins[h->vin];
    ASSERT_EQ(vsoc_fleet_hit(f, d->id, d->span, d->gte, v->b, v->n, h->t, out), 0);
}

static fhit_t stream[NHITS];
static vsoc_fleet_result_t want[NHITS]; /* what a counter that sees the whole stream gives */
static unsigned char *want_end;         /* its snapshot after the whole stream */
static size_t want_end_n;

static void whole_stream(void)
{
    make_vins();
    int late;
    make_stream(stream, NHITS, &late);
    vsoc_fleet_t *f = vsoc_fleet_new();
    ASSERT(f != NULL);
    int alerts = 0, drops = 0, full = 0;
    uint64_t prev[NRULES] = {0};
    for (size_t i = 0; i < NHITS; i++) {
        feed(f, &stream[i], &want[i]);
        alerts += want[i].alert;
        drops += want[i].vehicles < prev[stream[i].rule];
        full += want[i].nvins == VSOC_FLEET_SAMPLES;
        prev[stream[i].rule] = want[i].vehicles;
    }
    /* The stream does exercise what the state has to carry: alerts (and re-arming),
     * vehicles leaving windows, late hits, full samples. */
    ASSERT(alerts > 20);
    ASSERT(drops > 100);
    ASSERT(late > 50);
    ASSERT(full > 100);
    snap(f, &want_end, &want_end_n);
    vsoc_fleet_free(f);
}

/* ---- 1. round trip ------------------------------------------------------------------- */

/* Every k-th hit the counter is snapshotted, restored into a new counter that goes on in
 * its place: a chain of restores gives the whole stream's results, each restored counter
 * snapshots to the blob it came from, and the last one ends in the same state. */
static void test_round_trip_chain(void)
{
    static const size_t ks[] = {1, 7, 64, 500, 1999};
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
        size_t k = ks[ki];
        char what[64];
        snprintf(what, sizeof what, "cut every %zu", k);
        vsoc_fleet_t *f = vsoc_fleet_new();
        int cuts = 0;
        for (size_t i = 0; i < NHITS; i++) {
            if (i > 0 && i % k == 0) {
                unsigned char *blob;
                size_t n;
                snap(f, &blob, &n);
                ASSERT_EQ(vsoc_fleet_changed(f), 0);
                vsoc_fleet_t *g = restored(blob, n);
                snap_is(g, blob, n, what); /* canonical */
                free(blob);
                vsoc_fleet_free(f);
                f = g;
                cuts++;
            }
            vsoc_fleet_result_t got;
            feed(f, &stream[i], &got);
            same_result(&got, &want[i], what, i);
        }
        ASSERT_EQ(cuts, (NHITS - 1) / k);
        snap_is(f, want_end, want_end_n, what);
        vsoc_fleet_free(f);
    }
}

/* One cut: the snapshotted counter and the restored one both go on, and both give the
 * whole stream's results (a snapshot changes nothing but vsoc_fleet_changed). */
static void test_round_trip_fork(void)
{
    static const size_t cuts[] = {1, 2, 333, NHITS / 2, NHITS - 1, NHITS};
    for (size_t ci = 0; ci < sizeof cuts / sizeof *cuts; ci++) {
        size_t cut = cuts[ci];
        char what[64];
        vsoc_fleet_t *f = vsoc_fleet_new();
        vsoc_fleet_result_t got;
        for (size_t i = 0; i < cut; i++)
            feed(f, &stream[i], &got);
        unsigned char *blob;
        size_t n;
        snap(f, &blob, &n);
        vsoc_fleet_t *g = restored(blob, n);
        snprintf(what, sizeof what, "cut at %zu, restored", cut);
        snap_is(g, blob, n, what);
        for (size_t i = cut; i < NHITS; i++) {
            feed(g, &stream[i], &got);
            same_result(&got, &want[i], what, i);
        }
        snap_is(g, want_end, want_end_n, what);
        snprintf(what, sizeof what, "cut at %zu, original", cut);
        for (size_t i = cut; i < NHITS; i++) {
            feed(f, &stream[i], &got);
            same_result(&got, &want[i], what, i);
        }
        snap_is(f, want_end, want_end_n, what);
        free(blob);
        vsoc_fleet_free(f);
        vsoc_fleet_free(g);
    }
}

/* ---- the format, byte by byte --------------------------------------------------------- */

typedef struct wb {
    unsigned char p[512];
    size_t n;
} wb_t;

static void w_u(wb_t *b, uint64_t v, size_t bytes)
{
    ASSERT(b->n + bytes <= sizeof b->p);
    for (size_t i = 0; i < bytes; i++)
        b->p[b->n++] = (unsigned char)(v >> (8 * i));
}

static void w_s(wb_t *b, const char *s, size_t n)
{
    ASSERT(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

/* Where the fields of the golden blob are, for the corruptions below. */
static struct {
    size_t nrules, a, a_flags, a_avl, a_nv, a_v1, a_v2, b, b_id, b_newest, b_nv, b_v1;
} at;

/* The blob of golden_counter(), written from the format's description in fleet.c: "VSF1",
 * u32 rules; per rule: u16 id length, id, i64 newest, i64 alert_clock, u8 flags (1 alerted,
 * 2 below), i64 alert_hit_us, u8 alert vin length, alert vin, u32 vehicles; per vehicle,
 * oldest first: i64 latest hit, u8 vin length, vin. Little-endian. */
static void golden_blob(wb_t *b)
{
    b->n = 0;
    w_s(b, "VSF1", 4);
    at.nrules = b->n;
    w_u(b, 2, 4);
    /* Rule "a" (10 s, gte 2): V1 at 1 s, V2 at 2 s raised the alert. */
    at.a = b->n;
    w_u(b, 1, 2);
    w_s(b, "a", 1);
    w_u(b, 2 * S, 8);
    w_u(b, 2 * S, 8);
    at.a_flags = b->n;
    w_u(b, 1, 1);
    w_u(b, 2 * S, 8);
    at.a_avl = b->n;
    w_u(b, 2, 1);
    w_s(b, "V2", 2);
    at.a_nv = b->n;
    w_u(b, 2, 4);
    at.a_v1 = b->n;
    w_u(b, 1 * S, 8);
    w_u(b, 2, 1);
    w_s(b, "V1", 2);
    at.a_v2 = b->n;
    w_u(b, 2 * S, 8);
    w_u(b, 2, 1);
    w_s(b, "V2", 2);
    /* Rule "b" (5 s, gte 5): X at -100 s, below the threshold, never alerted. */
    at.b = b->n;
    w_u(b, 1, 2);
    at.b_id = b->n;
    w_s(b, "b", 1);
    at.b_newest = b->n;
    w_u(b, (uint64_t)(-100 * S), 8);
    w_u(b, 0, 8);
    w_u(b, 2, 1);
    w_u(b, 0, 8);
    w_u(b, 0, 1);
    at.b_nv = b->n;
    w_u(b, 1, 4);
    at.b_v1 = b->n;
    w_u(b, (uint64_t)(-100 * S), 8);
    w_u(b, 1, 1);
    w_s(b, "X", 1);
}

static vsoc_fleet_t *golden_counter(void)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    vsoc_fleet_result_t r;
    /* "b" first: the blob orders rules by id, not by arrival. */
    ASSERT_EQ(vsoc_fleet_hit(f, "b", 5 * S, 5, "X", 1, -100 * S, &r), 0);
    ASSERT_EQ(vsoc_fleet_hit(f, "a", 10 * S, 2, "V1", 2, 1 * S, &r), 0);
    ASSERT_EQ(vsoc_fleet_hit(f, "a", 10 * S, 2, "V2", 2, 2 * S, &r), 0);
    ASSERT_EQ(r.alert, 1);
    return f;
}

static void test_format(void)
{
    wb_t b;
    golden_blob(&b);
    vsoc_fleet_t *f = golden_counter();
    snap_is(f, b.p, b.n, "golden");
    vsoc_fleet_free(f);
    /* The restored counter counts as the original did: the alert is not raised again by
     * a third vehicle, but is by the very hit that raised it; "b" still needs 4 more. */
    f = restored(b.p, b.n);
    vsoc_fleet_result_t r;
    char uid[37];
    ASSERT_EQ(vsoc_fleet_hit(f, "a", 10 * S, 2, "V3", 2, 3 * S, &r), 0);
    ASSERT_EQ(r.alert, 0);
    ASSERT_EQ(r.vehicles, 3);
    ASSERT_EQ(r.first_us, 1 * S);
    ASSERT_EQ(r.nvins, 3);
    ASSERT_STREQ(r.vins[0], "V3");
    ASSERT_STREQ(r.vins[2], "V1");
    ASSERT_EQ(vsoc_fleet_hit(f, "a", 10 * S, 2, "V2", 2, 2 * S, &r), 0);
    ASSERT_EQ(r.alert, 1);
    vsoc_fleet_uid("a", 2 * S, uid);
    ASSERT_STREQ(r.uid, uid);
    ASSERT_EQ(vsoc_fleet_hit(f, "b", 5 * S, 5, "Y", 1, -99 * S, &r), 0);
    ASSERT_EQ(r.vehicles, 2);
    ASSERT_EQ(r.alert, 0);
    ASSERT_EQ(r.first_us, -100 * S);
    /* V1 at 1 s leaves when the newest passes 11 s. */
    ASSERT_EQ(vsoc_fleet_hit(f, "a", 10 * S, 2, "V4", 2, 11 * S + 1, &r), 0);
    ASSERT_EQ(r.vehicles, 3);
    ASSERT_EQ(r.first_us, 2 * S);
    vsoc_fleet_free(f);
}

/* ---- 2. vsoc_fleet_changed ------------------------------------------------------------ */

static void test_changed(void)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    vsoc_fleet_result_t r;
    unsigned char *blob;
    size_t n;
    ASSERT_EQ(vsoc_fleet_changed(f), 0);
    ASSERT_EQ(vsoc_fleet_hit(f, "r", 60 * S, 3, "A", 1, 1000 * S, &r), 0);
    ASSERT_EQ(vsoc_fleet_changed(f), 1);
    snap(f, &blob, &n);
    ASSERT_EQ(vsoc_fleet_changed(f), 0);
    free(blob);
    /* Late beyond the window: records nothing, so nothing to checkpoint. */
    ASSERT_EQ(vsoc_fleet_hit(f, "r", 60 * S, 3, "B", 1, 900 * S, &r), 0);
    ASSERT_EQ(r.vehicles, 1);
    ASSERT_EQ(vsoc_fleet_changed(f), 0);
    /* A recorded hit, then one of another rule after a snapshot. */
    ASSERT_EQ(vsoc_fleet_hit(f, "r", 60 * S, 3, "B", 1, 950 * S, &r), 0);
    ASSERT_EQ(r.vehicles, 2);
    ASSERT_EQ(vsoc_fleet_changed(f), 1);
    ASSERT_EQ(vsoc_fleet_changed(f), 1); /* asking does not clear it */
    snap(f, &blob, &n);
    ASSERT_EQ(vsoc_fleet_changed(f), 0);
    ASSERT_EQ(vsoc_fleet_hit(f, "s", 60 * S, 3, "A", 1, 0, &r), 0);
    ASSERT_EQ(vsoc_fleet_changed(f), 1);
    /* A restore: the counter is what was checkpointed, nothing to snapshot again. */
    vsoc_fleet_t *g = vsoc_fleet_new();
    ASSERT_EQ(vsoc_fleet_restore(g, blob, n, NULL, 0), 0);
    ASSERT_EQ(vsoc_fleet_changed(g), 0);
    ASSERT_EQ(vsoc_fleet_hit(g, "r", 60 * S, 3, "C", 1, 1001 * S, &r), 0);
    ASSERT_EQ(r.vehicles, 3);
    ASSERT_EQ(vsoc_fleet_changed(g), 1);
    /* A refused restore does not make an empty counter changed either. */
    vsoc_fleet_t *h = vsoc_fleet_new();
    ASSERT_EQ(vsoc_fleet_restore(h, blob, n - 1, NULL, 0), VSOC_EPARSE);
    ASSERT_EQ(vsoc_fleet_changed(h), 0);
    free(blob);
    vsoc_fleet_free(f);
    vsoc_fleet_free(g);
    vsoc_fleet_free(h);
}

/* ---- 3. refusals ---------------------------------------------------------------------- */

/* Restoring the n bytes of blob into a new counter must fail with VSOC_EPARSE, saying
 * "fleet state: <reason containing why> at byte <offset>", offset within [lo, n]; the
 * counter is then empty and takes the valid blob. */
static void refused(const void *blob, size_t n, const char *why, size_t lo, const void *valid,
                    size_t valid_n, const char *what)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    char err[256] = "";
    int rc = vsoc_fleet_restore(f, blob, n, err, sizeof err);
    if (rc != VSOC_EPARSE)
        TEST_FAIL_("%s: restore gave %d (%s), not VSOC_EPARSE", what, rc, err);
    const char *p = strstr(err, " at byte ");
    if (strncmp(err, "fleet state: ", 13) != 0 || !p || (why && !strstr(err, why)))
        TEST_FAIL_("%s: message \"%s\" (want \"fleet state: ...%s... at byte N\")", what, err,
                   why ? why : "");
    char *end;
    unsigned long long off = strtoull(p + 9, &end, 10);
    if (end == p + 9 || *end || off < lo || off > n)
        TEST_FAIL_("%s: \"%s\": offset not in [%zu, %zu]", what, err, lo, n);
    snap_is(f, empty_blob, sizeof empty_blob, what);
    rc = vsoc_fleet_restore(f, valid, valid_n, err, sizeof err);
    if (rc != 0)
        TEST_FAIL_("%s: the valid blob after the refusal: %d (%s)", what, rc, err);
    snap_is(f, valid, valid_n, what);
    vsoc_fleet_free(f);
}

static void put_at(wb_t *b, size_t off, uint64_t v, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        b->p[off + i] = (unsigned char)(v >> (8 * i));
}

static void test_refusals(void)
{
    wb_t ok, b;
    golden_blob(&ok);

    b = ok;
    memcpy(b.p, "VSF2", 4);
    refused(b.p, b.n, "magic", 0, ok.p, ok.n, "wrong magic");
    refused("", 0, "truncated", 0, ok.p, ok.n, "no bytes");

    /* Every prefix of the golden blob and of a real one with five rules and many vehicles:
     * whatever the cut, "truncated" (or too few bytes for the counts it read). */
    for (size_t len = 0; len < ok.n; len++) {
        char what[48];
        snprintf(what, sizeof what, "golden cut at %zu", len);
        refused(ok.p, len, NULL, 0, ok.p, ok.n, what);
    }
    {
        vsoc_fleet_t *f = vsoc_fleet_new();
        vsoc_fleet_result_t r;
        for (size_t i = 0; i < NHITS / 2; i++)
            feed(f, &stream[i], &r);
        unsigned char *big;
        size_t bn;
        snap(f, &big, &bn);
        vsoc_fleet_free(f);
        ASSERT(bn > 500);
        for (size_t len = 0; len < bn; len++) {
            char what[48];
            snprintf(what, sizeof what, "stream blob cut at %zu", len);
            refused(big, len, NULL, 0, big, bn, what);
        }
        free(big);
    }

    b = ok;
    b.p[b.n++] = 0;
    refused(b.p, b.n, "trailing", ok.n, ok.p, ok.n, "a trailing byte");

    b = ok;
    b.p[at.b_id] = 'a';
    refused(b.p, b.n, "rules out of order", at.b, ok.p, ok.n, "rule a twice");

    /* Rules not sorted by id would restore, but snapshot back to other bytes: a blob must
     * name one state (the fuzzer found this). */
    b = ok;
    b.p[at.b_id] = '0'; /* the second rule's id now sorts before the first's */
    refused(b.p, b.n, "rules out of order", at.b, ok.p, ok.n, "rules out of id order");

    b = ok; /* V1 at 2 s then V2 at 1 s */
    put_at(&b, at.a_v1, 2 * S, 8);
    put_at(&b, at.a_v2, 1 * S, 8);
    refused(b.p, b.n, "out of order", at.a_v2, ok.p, ok.n, "vehicles out of order");

    b = ok; /* equal times: V2 before V1 is out of byte order */
    put_at(&b, at.a_v1, 2 * S, 8);
    memcpy(b.p + at.a_v1 + 9, "V2", 2);
    memcpy(b.p + at.a_v2 + 9, "V1", 2);
    refused(b.p, b.n, "out of order", at.a_v2, ok.p, ok.n, "equal times out of order");

    b = ok; /* V1 at 1 s and again at 2 s: in time order, but twice */
    memcpy(b.p + at.a_v2 + 9, "V1", 2);
    refused(b.p, b.n, "twice", at.a_v2, ok.p, ok.n, "a vehicle twice");

    b = ok; /* V1 at 1 s twice: the same key */
    put_at(&b, at.a_v2, 1 * S, 8);
    memcpy(b.p + at.a_v2 + 9, "V1", 2);
    refused(b.p, b.n, NULL, at.a_v2, ok.p, ok.n, "a vehicle twice, same time");

    b = ok; /* X one microsecond after b's newest */
    put_at(&b, at.b_v1, (uint64_t)(-100 * S + 1), 8);
    refused(b.p, b.n, "newest", at.b_v1, ok.p, ok.n, "a hit after the newest");

    b = ok;
    b.p[at.a_v1 + 8] = 0;
    refused(b.p, b.n, "vin length", at.a_v1, ok.p, ok.n, "vin length 0");
    b = ok;
    b.p[at.a_v1 + 8] = VSOC_VIN_MAX + 1;
    refused(b.p, b.n, "vin length", at.a_v1, ok.p, ok.n, "vin length VSOC_VIN_MAX + 1");
    b = ok;
    b.p[at.a_v1 + 8] = 255;
    refused(b.p, b.n, "vin length", at.a_v1, ok.p, ok.n, "vin length 255");
    b = ok;
    b.p[at.a_avl] = VSOC_VIN_MAX + 1;
    refused(b.p, b.n, "vin", at.a, ok.p, ok.n, "alert vin length VSOC_VIN_MAX + 1");

    /* 100 bytes after the count hold at most 3 rules of the smallest size (33 bytes). */
    ASSERT_EQ(ok.n - 8, 100);
    b = ok;
    put_at(&b, at.nrules, 4, 4);
    refused(b.p, b.n, "more rules than bytes", at.nrules, ok.p, ok.n, "4 rules");
    b = ok;
    put_at(&b, at.nrules, UINT32_MAX, 4);
    refused(b.p, b.n, "more rules than bytes", at.nrules, ok.p, ok.n, "2^32 - 1 rules");
    b = ok;
    put_at(&b, at.nrules, 3, 4);
    refused(b.p, b.n, "truncated", ok.n, ok.p, ok.n, "3 rules");
    b = ok;
    put_at(&b, at.nrules, 1, 4);
    refused(b.p, b.n, "trailing", at.b, ok.p, ok.n, "1 rule");
    b = ok;
    put_at(&b, at.b_nv, 2, 4);
    refused(b.p, b.n, "vehicles", at.b_nv, ok.p, ok.n, "2 vehicles, bytes for 1");
    b = ok;
    put_at(&b, at.b_nv, UINT32_MAX, 4);
    refused(b.p, b.n, "vehicles", at.b_nv, ok.p, ok.n, "2^32 - 1 vehicles");

    static const unsigned flags[] = {4, 5, 0x80, 0xff};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        char what[32];
        snprintf(what, sizeof what, "flags %u", flags[i]);
        b = ok;
        b.p[at.a_flags] = (unsigned char)flags[i];
        refused(b.p, b.n, "flags", at.a_flags, ok.p, ok.n, what);
    }

    b = ok;
    put_at(&b, at.b, 0, 2);
    refused(b.p, b.n, "id", at.b, ok.p, ok.n, "rule id length 0");
    b = ok;
    put_at(&b, at.b, 0xffff, 2);
    refused(b.p, b.n, NULL, at.b, ok.p, ok.n, "rule id length 65535");
    b = ok;
    b.p[at.b_id] = 0;
    refused(b.p, b.n, "NUL", at.b, ok.p, ok.n, "a NUL in a rule id");
    b = ok;
    put_at(&b, at.b_newest, (uint64_t)INT64_MIN, 8);
    refused(b.p, b.n, "never had a hit", at.b, ok.p, ok.n, "vehicles without a newest");

    /* Refusals with no room for the reason, or a small one. */
    vsoc_fleet_t *f = vsoc_fleet_new();
    char small[8];
    memset(small, 'x', sizeof small);
    ASSERT_EQ(vsoc_fleet_restore(f, ok.p, ok.n - 1, small, sizeof small), VSOC_EPARSE);
    ASSERT(memchr(small, 0, sizeof small) != NULL);
    ASSERT_EQ(vsoc_fleet_restore(f, ok.p, ok.n - 1, NULL, 0), VSOC_EPARSE);
    ASSERT_EQ(vsoc_fleet_restore(f, ok.p, ok.n, NULL, 0), 0);
    vsoc_fleet_free(f);
}

/* A counter that has a rule takes no blob, and is left as it was. */
static void test_restore_into_used(void)
{
    wb_t ok;
    golden_blob(&ok);
    vsoc_fleet_t *f = vsoc_fleet_new();
    vsoc_fleet_result_t r;
    ASSERT_EQ(vsoc_fleet_hit(f, "z", S, 1, "Q", 1, 7, &r), 0);
    unsigned char *before;
    size_t bn;
    snap(f, &before, &bn);
    char err[128] = "";
    ASSERT_EQ(vsoc_fleet_restore(f, ok.p, ok.n, err, sizeof err), VSOC_EINVAL);
    ASSERT_EQ(vsoc_fleet_restore(f, empty_blob, sizeof empty_blob, err, sizeof err),
              VSOC_EINVAL);
    snap_is(f, before, bn, "after VSOC_EINVAL");
    free(before);
    vsoc_fleet_free(f);
    /* Nor does one restored from a blob with rules. */
    f = restored(ok.p, ok.n);
    ASSERT_EQ(vsoc_fleet_restore(f, ok.p, ok.n, err, sizeof err), VSOC_EINVAL);
    snap_is(f, ok.p, ok.n, "restored, after VSOC_EINVAL");
    vsoc_fleet_free(f);
}

/* ---- 4. the empty counter ------------------------------------------------------------- */

static void test_empty(void)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    snap_is(f, empty_blob, sizeof empty_blob, "new counter");
    vsoc_fleet_t *g = restored(empty_blob, sizeof empty_blob);
    snap_is(g, empty_blob, sizeof empty_blob, "restored empty");
    /* No rule yet, so it still takes a blob; and after that it works as any counter. */
    wb_t ok;
    golden_blob(&ok);
    ASSERT_EQ(vsoc_fleet_restore(g, ok.p, ok.n, NULL, 0), 0);
    snap_is(g, ok.p, ok.n, "empty, then golden");
    vsoc_fleet_t *h = restored(empty_blob, sizeof empty_blob);
    vsoc_fleet_result_t r;
    ASSERT_EQ(vsoc_fleet_hit(h, "r", S, 1, "V", 1, 5, &r), 0);
    ASSERT_EQ(r.alert, 1);
    ASSERT_EQ(r.vehicles, 1);
    vsoc_fleet_free(f);
    vsoc_fleet_free(g);
    vsoc_fleet_free(h);
}

int main(void)
{
    whole_stream();
    test_round_trip_chain();
    test_round_trip_fork();
    test_format();
    test_changed();
    test_refusals();
    test_restore_into_used();
    test_empty();
    free(want_end);
    printf("test_fleet_state: ok\n");
    return 0;
}
