/* fuzz_snapshot.c: vsoc_engine_restore on arbitrary bytes, into an engine with a rule of
 * every correlation type and a baseline. A blob must be refused with VSOC_EPARSE, never
 * crash or leak; a blob accepted must be one consistent state: the engine's snapshot
 * restores into a fresh engine whose snapshot is the same bytes, and events run on it.
 *
 * The corpus (corpus/snapshot/) holds real snapshots of the stream below. Built with
 * -DFUZZ_SNAPSHOT_GEN this file is instead a program that writes them again, for when the
 * format or the rules here change (bump the format version first, see engine.c):
 *
 *   cc -std=c11 -D_GNU_SOURCE -DFUZZ_SNAPSHOT_GEN -Iengine tests/fuzz/fuzz_snapshot.c \
 *      build/libvsoc_engine.a $(pkg-config --libs yaml-0.1 jansson libpcre2-8 libcrypto) -lm \
 *      -o /tmp/snapshot-gen && /tmp/snapshot-gen tests/fuzz/corpus/snapshot
 */
#include "baseline.h"
#include "engine.h"
#include "score.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD(id, cat)                                                                          \
    "id: " id "\ntitle: T\nlevel: high\ntags: [a.b]\n"                                         \
    "logsource: {product: vehicle, category: " cat "}\n"

static const char *rules_yaml =
    HEAD("f.ec", "can") "detection:\n  s: {can.id: 0x100}\n  condition: s\n"
    "correlation: {type: event_count, group-by: [vin], timespan: 5s, condition: {gte: 3}}\n"
    "---\n" HEAD("f.vc", "can") "detection:\n  s: {can.id|in_range: [0x200, 0x20F]}\n  condition: s\n"
    "correlation: {type: value_count, field: can.id, group-by: [vin], timespan: 4s, condition: {gte: 3}}\n"
    "---\n" HEAD("f.tu", "can") "detection:\n  a: {can.id: 0x300}\n  b: {can.id: 0x301}\n"
    "correlation: {type: temporal, detections: [a, b], group-by: [vin], timespan: 3s}\n"
    "---\n" HEAD("f.to", "can") "detection:\n  x: {can.id: 0x310}\n  y: {can.id: 0x311}\n  z: {can.id: 0x312}\n"
    "correlation: {type: temporal_ordered, detections: [x, y, z], group-by: [vin], timespan: 8s}\n"
    "---\n" HEAD("f.fl", "can") "detection:\n  s: {can.id: 0x400}\n  condition: s\n"
    "correlation: {type: fleet_count, timespan: 16s, condition: {gte: 2}}\n"
    "---\n" HEAD("f.sup", "can") "detection:\n  s: {can.id: 0x500}\n  condition: s\n"
    "suppress: {group-by: [vin], for: 3s}\n"
    "---\n" HEAD("f.shared", "can") "detection:\n  s: {can.id: 0x700}\n  condition: s\n"
    "correlation: {type: event_count, timespan: 5s, condition: {gte: 4}}\n"
    "suppress: {group-by: [can.id], for: 5s}\n"
    "---\n" HEAD("f.score", "can") "detection:\n  s: {baseline.score|gte: 0.5}\n  condition: s\n"
    "correlation: {type: event_count, group-by: [vin, can.id], timespan: 3s, condition: {gte: 2}}\n";

static vsoc_ruleset_t *rs;
static vsoc_baseline_t *bl;
static vsoc_scorer_t *sc;

static void setup(void)
{
    if (rs)
        return;
    vsoc_diags_t *d = vsoc_diags_new();
    rs = vsoc_ruleset_load_string("fuzz.yml", rules_yaml, strlen(rules_yaml), NULL, d);
    if (!rs || vsoc_diags_errors(d) || vsoc_ruleset_count(rs) != 8)
        abort();
    vsoc_diags_free(d);
    /* 0x123 every 100 ms with a nibble counter: scoring state worth saving. */
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    if (!l || vsoc_baseline_learner_file_begin(l, "learn", "") != 0)
        abort();
    for (int i = 0; i < 200; i++) {
        vsoc_event_t ev;
        vsoc_event_clear(&ev);
        ev.kind = VSOC_EVENT_CAN;
        ev.ts_us = (int64_t)i * 100000;
        ev.can.id = 0x123;
        ev.can.len = ev.can.dlc = 2;
        ev.can.data[0] = (uint8_t)(i & 15);
        ev.bus.p = "can0";
        ev.bus.n = 4;
        vsoc_baseline_learner_add(l, &ev);
    }
    bl = vsoc_baseline_from_learner(l, "fuzz", "fuzz");
    vsoc_baseline_learner_free(l);
    sc = bl ? vsoc_scorer_new(bl) : NULL;
    if (!sc)
        abort();
}

static vsoc_engine_t *engine(void)
{
    char err[128];
    vsoc_engine_opts_t o = {.scorer = sc};
    vsoc_engine_t *e = vsoc_engine_new(rs, &o, err, sizeof err);
    if (!e)
        abort();
    return e;
}

static void feed(vsoc_engine_t *e, int64_t ts, const char *vin, size_t vinlen, uint32_t id,
                 uint8_t b0)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_CAN;
    ev.ts_us = ts;
    ev.vin.p = vin;
    ev.vin.n = vinlen;
    ev.can.id = id;
    ev.can.len = ev.can.dlc = 2;
    ev.can.data[0] = b0;
    ev.bus.p = "can0";
    ev.bus.n = 4;
    ev.line.p = "frame";
    ev.line.n = 5;
    vsoc_engine_process(e, &ev);
}

typedef struct one {
    int calls;
    size_t n;
    uint8_t *p;
} one_t;

static int keep_one(void *ctx, const char *vin, size_t vinlen, const void *blob, size_t n)
{
    one_t *o = ctx;
    (void)vin;
    (void)vinlen;
    if (o->calls++)
        abort(); /* one vehicle restored: one blob */
    o->p = malloc(n ? n : 1);
    if (!o->p)
        abort();
    memcpy(o->p, blob, n);
    o->n = n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    vsoc_engine_t *e = engine();
    char err[256];
    size_t dropped;
    int rc = vsoc_engine_restore(e, data, size, &dropped, err, sizeof err);
    if (rc != 0) {
        if (rc != VSOC_EPARSE || !err[0] || vsoc_engine_groups(e) != 0)
            abort();
        vsoc_engine_free(e);
        return 0;
    }
    one_t a = {0}, b = {0};
    if (vsoc_engine_snapshot(e, 1, keep_one, &a) != 0 || a.calls != 1)
        abort();
    vsoc_engine_t *e2 = engine();
    if (vsoc_engine_restore(e2, a.p, a.n, &dropped, err, sizeof err) != 0 || dropped != 0)
        abort();
    if (vsoc_engine_snapshot(e2, 1, keep_one, &b) != 0 || b.n != a.n ||
        memcmp(a.p, b.p, a.n) != 0)
        abort();
    /* The restored vehicle goes on: its vin length is at byte 44, after the header. */
    const char *vin = (const char *)a.p + 45;
    size_t vinlen = a.p[44];
    static const uint32_t ids[] = {0x100, 0x200, 0x201, 0x202, 0x300, 0x301, 0x310, 0x311,
                                   0x312, 0x400, 0x500, 0x700, 0x123};
    for (unsigned i = 0; i < sizeof ids / sizeof *ids; i++)
        feed(e, 1000000000 + (int64_t)i * 300000, vin, vinlen, ids[i], (uint8_t)i);
    free(a.p);
    free(b.p);
    vsoc_engine_free(e);
    vsoc_engine_free(e2);
    return 0;
}

#ifdef FUZZ_SNAPSHOT_GEN
/* Writes dir/<cut>-<vin>.vse for each vehicle at a few cut points of a two-vehicle stream
 * that opens a group of every rule. */
static int write_blob(void *ctx, const char *vin, size_t vinlen, const void *blob, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s-%.*s.vse", (const char *)ctx, (int)vinlen, vin);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(blob, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    setup();
    vsoc_engine_t *e = engine();
    static const uint32_t ids[] = {0x100, 0x200, 0x300, 0x310, 0x201, 0x311, 0x400, 0x500,
                                   0x700, 0x123, 0x100, 0x202, 0x312, 0x500, 0x700, 0x123,
                                   0x123, 0x555, 0x100, 0x700};
    const int cuts[] = {4, 12, 20, 40};
    size_t next = 0;
    for (int i = 0; i < 40; i++) {
        const char *vin = i % 3 ? "WVWZZZ1JZXW000001" : "V2";
        feed(e, 100000000 + (int64_t)i * 200000, vin, strlen(vin), ids[i % 20],
             (uint8_t)(i * 7));
        if (next < sizeof cuts / sizeof *cuts && i + 1 == cuts[next]) {
            char prefix[480];
            snprintf(prefix, sizeof prefix, "%s/cut%02d", argv[1], cuts[next]);
            if (vsoc_engine_snapshot(e, 1, write_blob, prefix) != 0)
                return 1;
            next++;
        }
    }
    vsoc_engine_free(e);
    return 0;
}
#endif
