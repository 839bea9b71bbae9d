/* fuzz_fleet.c: vsoc_fleet_restore (fleet.h) on arbitrary bytes, into a new counter. A blob
 * refused must be refused with VSOC_EPARSE and a reason ("fleet state: ... at byte N"),
 * never crash or leak, and leave the counter empty: it snapshots as empty and takes a valid
 * blob. A blob accepted must be one consistent state: the format is canonical (rules by id,
 * vehicles oldest first), so the counter's snapshot is the input, byte for byte; and the
 * restored structure works: hits on every rule, of vehicles it holds and new ones, at times
 * around its newest, give the same results as on a second counter restored from the first
 * one's snapshot, and a counter after them snapshots and restores to the same bytes.
 *
 * The corpus (corpus/fleet/) holds snapshots of a few scenarios (empty, one vehicle,
 * several rules with alerts raised and re-armed, late hits, negative times, vins of every
 * length) and some of them truncated or corrupted. */
#include "fleet.h"
#include "vsoc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t empty_blob[8] = {'V', 'S', 'F', '1', 0, 0, 0, 0};

/* One rule, one vehicle: what a refused restore must still take. */
static uint8_t *valid;
static size_t valid_n;

static void setup(void)
{
    if (valid)
        return;
    vsoc_fleet_t *f = vsoc_fleet_new();
    vsoc_fleet_result_t r;
    void *p;
    if (!f || vsoc_fleet_hit(f, "fuzz.valid", 1000000, 1, "VALID", 5, 42, &r) != 0 ||
        vsoc_fleet_snapshot(f, &p, &valid_n) != 0)
        abort();
    valid = p;
    vsoc_fleet_free(f);
}

/* f's snapshot must be the n bytes of want. */
static void snap_is(vsoc_fleet_t *f, const uint8_t *want, size_t n)
{
    void *p;
    size_t pn;
    if (vsoc_fleet_snapshot(f, &p, &pn) != 0)
        abort();
    if (pn != n || memcmp(p, want, n) != 0)
        abort();
    if (vsoc_fleet_changed(f))
        abort();
    free(p);
}

static uint64_t get_u(const uint8_t *p, size_t bytes)
{
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* What the hits below need of a rule of the blob: its id, newest hit, oldest and newest
 * vehicles. Read from a blob that vsoc_fleet_restore accepted, so it is well formed. */
#define MAXR 8
typedef struct rinfo {
    char id[1025];
    int64_t newest;
    const uint8_t *vin[2];
    size_t vinlen[2];
} rinfo_t;

static size_t read_rules(const uint8_t *p, rinfo_t *rs)
{
    uint64_t nr = get_u(p + 4, 4);
    size_t at = 8, got = 0;
    for (uint64_t k = 0; k < nr; k++) {
        size_t idlen = (size_t)get_u(p + at, 2);
        rinfo_t *r = got < MAXR ? &rs[got++] : NULL;
        if (r) {
            if (idlen >= sizeof r->id)
                abort(); /* restore takes at most 1024 bytes */
            memcpy(r->id, p + at + 2, idlen);
            r->id[idlen] = 0;
            r->newest = (int64_t)get_u(p + at + 2 + idlen, 8);
            r->vin[0] = r->vin[1] = NULL;
        }
        at += 2 + idlen + 8 + 8 + 1 + 8;
        at += 1 + p[at];
        uint64_t nv = get_u(p + at, 4);
        at += 4;
        for (uint64_t v = 0; v < nv; v++) {
            size_t vl = p[at + 8];
            if (r && (v == 0 || v == nv - 1)) {
                r->vin[v == 0 ? 0 : 1] = p + at + 9;
                r->vinlen[v == 0 ? 0 : 1] = vl;
            }
            at += 9 + vl;
        }
    }
    return got;
}

/* t + d, clamped to the int64 range. */
static int64_t add_sat(int64_t t, int64_t d)
{
    if (d > 0 && t > INT64_MAX - d)
        return INT64_MAX;
    if (d < 0 && t < INT64_MIN - d)
        return INT64_MIN;
    return t + d;
}

static void check_result(const char *rule, int64_t t, const vsoc_fleet_result_t *r)
{
    size_t want = r->vehicles < VSOC_FLEET_SAMPLES ? (size_t)r->vehicles : VSOC_FLEET_SAMPLES;
    if (r->nvins != want)
        abort();
    if (r->alert) {
        char uid[37];
        vsoc_fleet_uid(rule, t, uid);
        if (strcmp(uid, r->uid) != 0 || r->vehicles == 0)
            abort();
    } else if (r->uid[0]) {
        abort();
    }
}

static void same(const vsoc_fleet_result_t *a, const vsoc_fleet_result_t *b)
{
    if (a->vehicles != b->vehicles || a->alert != b->alert || strcmp(a->uid, b->uid) != 0 ||
        a->first_us != b->first_us || a->nvins != b->nvins)
        abort();
    for (size_t k = 0; k < a->nvins; k++)
        if (memcmp(a->vins[k], b->vins[k], sizeof a->vins[k]) != 0)
            abort();
}

/* A few hits on every rule of f and of its copy g: known and new vehicles, at the newest,
 * before it, after it, and far before it; windows from 1 us to the whole int64 range. */
static void hits(vsoc_fleet_t *f, vsoc_fleet_t *g, const rinfo_t *rs, size_t nr, uint8_t seed)
{
    static const int64_t spans[] = {1, 1000, 1000000, 60000000, INT64_MAX};
    static const int64_t deltas[] = {0, -1, 1, -1000000, 500000, INT64_MIN, -60000000};
    for (size_t i = 0; i < nr; i++) {
        const rinfo_t *r = &rs[i];
        int64_t base = r->newest;
        int64_t span = spans[(seed + i) % 5];
        uint64_t gte = 1 + (seed + i) % 3;
        for (size_t k = 0; k < sizeof deltas / sizeof *deltas; k++) {
            const char *vin = "FUZZNEW";
            size_t vinlen = 7;
            if (k % 3 != 2 && r->vin[k % 2]) {
                vin = (const char *)r->vin[k % 2];
                vinlen = r->vinlen[k % 2];
            }
            int64_t t = add_sat(base, deltas[k]);
            vsoc_fleet_result_t a, b;
            if (vsoc_fleet_hit(f, r->id, span, gte, vin, vinlen, t, &a) != 0 ||
                vsoc_fleet_hit(g, r->id, span, gte, vin, vinlen, t, &b) != 0)
                abort();
            check_result(r->id, t, &a);
            same(&a, &b);
        }
    }
    /* And a rule the blob does not have. */
    vsoc_fleet_result_t a, b;
    if (vsoc_fleet_hit(f, "fuzz.other", 1000, 1, "FUZZNEW", 7, 0, &a) != 0 ||
        vsoc_fleet_hit(g, "fuzz.other", 1000, 1, "FUZZNEW", 7, 0, &b) != 0)
        abort();
    same(&a, &b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    vsoc_fleet_t *f = vsoc_fleet_new();
    if (!f)
        abort();
    char err[256] = "";
    int rc = vsoc_fleet_restore(f, data, size, err, sizeof err);
    if (rc != 0) {
        if (rc != VSOC_EPARSE || strncmp(err, "fleet state: ", 13) != 0 ||
            !strstr(err, " at byte "))
            abort();
        snap_is(f, empty_blob, sizeof empty_blob);
        if (vsoc_fleet_restore(f, valid, valid_n, err, sizeof err) != 0)
            abort();
        snap_is(f, valid, valid_n);
        vsoc_fleet_free(f);
        return 0;
    }
    if (vsoc_fleet_changed(f))
        abort();
    /* Canonical: the snapshot is the input. */
    snap_is(f, data, size);
    vsoc_fleet_t *g = vsoc_fleet_new();
    if (!g || vsoc_fleet_restore(g, data, size, err, sizeof err) != 0)
        abort();
    rinfo_t rs[MAXR];
    size_t nr = read_rules(data, rs);
    hits(f, g, rs, nr, size ? data[size - 1] : 0);
    /* After the hits: still one state that snapshots and restores to the same bytes. */
    void *p;
    size_t pn;
    if (vsoc_fleet_snapshot(f, &p, &pn) != 0)
        abort();
    snap_is(g, p, pn);
    vsoc_fleet_t *h = vsoc_fleet_new();
    if (!h || vsoc_fleet_restore(h, p, pn, err, sizeof err) != 0)
        abort();
    snap_is(h, p, pn);
    free(p);
    vsoc_fleet_free(f);
    vsoc_fleet_free(g);
    vsoc_fleet_free(h);
    return 0;
}
