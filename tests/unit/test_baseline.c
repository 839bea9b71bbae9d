/* test_baseline.c: the baseline learner (engine/baseline.c): period statistics on synthetic
 * sequences, merging across files, DLCs, byte ranges, constant bits and counters, the YAML
 * writer (deterministic, round trip through the loader), loader errors with a position,
 * then the real capture ../shared/data/can/j1939/normal.log when it is present. */
#include "baseline.h"
#include "file/reader.h"
#include "test.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#define ASSERT_NEAR(a, b, tol)                                                             \
    do {                                                                                   \
        double a_ = (a), b_ = (b);                                                         \
        if (!(fabs(a_ - b_) <= (tol)))                                                     \
            TEST_FAIL_("%s ~= %s: %.6f != %.6f (tolerance %g)", #a, #b, a_, b_,            \
                       (double)(tol));                                                     \
    } while (0)

static vsoc_event_t frame(const char *bus, uint32_t id, int ext, int64_t ts, uint8_t dlc,
                          const uint8_t *data)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_CAN;
    ev.bus.p = bus;
    ev.bus.n = strlen(bus);
    ev.ts_us = ts;
    ev.can.id = id;
    ev.can.ext = (uint8_t)ext;
    ev.can.dlc = dlc;
    ev.can.len = dlc > 8 ? 8 : dlc;
    if (data)
        memcpy(ev.can.data, data, ev.can.len);
    return ev;
}

static char *write_str(const vsoc_baseline_learner_t *l, const vsoc_baseline_t *b)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ASSERT(f);
    if (l)
        ASSERT_EQ(vsoc_baseline_write_yaml(l, f, "test", "vsoc test"), 0);
    else
        ASSERT_EQ(vsoc_baseline_write(b, f), 0);
    fclose(f);
    return buf;
}

static vsoc_baseline_t *build(const vsoc_baseline_learner_t *l)
{
    vsoc_baseline_t *b = vsoc_baseline_from_learner(l, "test", "vsoc test");
    ASSERT(b);
    return b;
}

/* 1001 frames, periods 95..105 ms in a repeating ramp: mean 100, min 95, max 105. */
static void test_period(void)
{
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    ASSERT(l);
    ASSERT_EQ(vsoc_baseline_learner_file_begin(l, "a.log", "00"), 0);
    int64_t t = 1000000;
    uint8_t d[8] = {0};
    for (int i = 0; i <= 1000; i++) {
        vsoc_event_t ev = frame("can0", 0x123, 0, t, 8, d);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
        t += 95000 + (i % 11) * 1000;
    }
    vsoc_event_t ids;
    vsoc_event_clear(&ids);
    ids.kind = VSOC_EVENT_IDS;
    ASSERT_EQ(vsoc_baseline_learner_add(l, &ids), 0); /* ignored */
    vsoc_baseline_t *b = build(l);
    ASSERT_EQ(vsoc_baseline_count(b), 1);
    const vsoc_baseline_id_t *e = vsoc_baseline_lookup(b, "can0", 4, 0x123, 0);
    ASSERT(e);
    ASSERT(!vsoc_baseline_lookup(b, "can0", 4, 0x123, 1));
    ASSERT(!vsoc_baseline_lookup(b, "can1", 4, 0x123, 0));
    ASSERT_EQ(e->frames, 1001);
    ASSERT_EQ(e->period.count, 1000);
    ASSERT_NEAR(e->period.mean, 100.0, 0.01);
    ASSERT_NEAR(e->period.std, sqrt(10.0), 0.05); /* uniform over 11 values: var 10 */
    ASSERT_NEAR(e->period.min, 95.0, 1e-9);
    ASSERT_NEAR(e->period.max, 105.0, 1e-9);
    ASSERT_NEAR(e->period.p50, 100.0, 2.0); /* histogram buckets are ~4 % wide */
    ASSERT_NEAR(e->period.p1, 95.0, 2.0);
    ASSERT_NEAR(e->period.p99, 105.0, 2.0);
    ASSERT(e->period.p1 <= e->period.p50 && e->period.p50 <= e->period.p99);
    vsoc_baseline_free(b);
    vsoc_baseline_learner_free(l);
}

/* Two files with periods 10 ms and 30 ms; a 1000 s gap between them must not count. */
static void test_merge(void)
{
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    vsoc_event_t ev = frame("can0", 0x100, 0, 0, 8, NULL);
    ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), VSOC_EINVAL); /* no file begun */
    ASSERT_EQ(vsoc_baseline_learner_file_begin(l, "a.log", "aa"), 0);
    for (int i = 0; i < 101; i++) {
        ev = frame("can0", 0x100, 0, i * 10000, 8, NULL);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
    }
    ASSERT_EQ(vsoc_baseline_learner_file_begin(l, "b.log", "bb"), 0);
    for (int i = 0; i < 101; i++) {
        ev = frame("can0", 0x100, 0, 1000000000 + i * 30000, 8, NULL);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
    }
    ASSERT_EQ(vsoc_baseline_learner_frames(l), 202);
    ASSERT_EQ(vsoc_baseline_learner_duration_us(l), 1000000 + 3000000);
    vsoc_baseline_t *b = build(l);
    const vsoc_baseline_id_t *e = vsoc_baseline_at(b, 0);
    ASSERT_EQ(e->period.count, 200);
    ASSERT_NEAR(e->period.mean, 20.0, 1e-9);
    ASSERT_NEAR(e->period.std, sqrt(100.0 * 200 / 199), 0.001); /* sample std of 10s and 30s */
    ASSERT_NEAR(e->period.min, 10.0, 1e-9);
    ASSERT_NEAR(e->period.max, 30.0, 1e-9);
    ASSERT_EQ(vsoc_baseline_sources(b), 2);
    ASSERT_NEAR(vsoc_baseline_duration_s(b), 4.0, 1e-9);
    vsoc_baseline_free(b);
    vsoc_baseline_learner_free(l);
}

/* DLCs, byte ranges, constant bits, counters, ordering of IDs. */
static void test_bytes(void)
{
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    ASSERT_EQ(vsoc_baseline_learner_file_begin(l, "c.log", ""), 0);
    for (int i = 0; i < 300; i++) {
        uint8_t d[8] = {(uint8_t)i,                        /* byte counter */
                        (uint8_t)(0xA0 | (i & 15)),        /* nibble counter, high nibble A */
                        (uint8_t)(i % 3 == 0 ? 0x10 : 0x30), /* bit 5 toggles */
                        0x55,                              /* constant */
                        (uint8_t)(i * 37),                 /* noise */
                        0, 0, 0};
        vsoc_event_t ev = frame("can1", 0x18FEF100, 1, i * 1000, i % 2 ? 8 : 5, d);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
        ev = frame("can0", 0x7E0, 0, i * 1000, 8, d);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
        ev = frame("can0", 0x0FF, 0, i * 1000, 2, d);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
    }
    vsoc_baseline_t *b = build(l);
    ASSERT_EQ(vsoc_baseline_count(b), 3);
    ASSERT_EQ(vsoc_baseline_at(b, 0)->id, 0x0FF);
    ASSERT_EQ(vsoc_baseline_at(b, 1)->id, 0x7E0);
    ASSERT_STREQ(vsoc_baseline_at(b, 2)->bus, "can1");
    ASSERT(!vsoc_baseline_at(b, 3));
    const vsoc_baseline_id_t *e = vsoc_baseline_lookup(b, "can1", 4, 0x18FEF100, 1);
    ASSERT(e);
    ASSERT_EQ(e->dlc_mask, (1u << 5) | (1u << 8));
    ASSERT_EQ(e->nbytes, 8);
    ASSERT_EQ(e->bytes[0].counter, VSOC_BASELINE_COUNTER_BYTE);
    ASSERT_EQ(e->bytes[0].min, 0x00);
    ASSERT_EQ(e->bytes[0].max, 0xFF);
    ASSERT_EQ(e->bytes[1].counter, VSOC_BASELINE_COUNTER_NIBBLE);
    ASSERT_EQ(e->bytes[1].min, 0xA0);
    ASSERT_EQ(e->bytes[1].max, 0xAF);
    ASSERT_EQ((uint8_t)~(e->bytes[1].or_bits ^ e->bytes[1].and_bits), 0xF0);
    ASSERT_EQ(e->bytes[2].counter, VSOC_BASELINE_COUNTER_NONE);
    ASSERT_EQ((uint8_t)~(e->bytes[2].or_bits ^ e->bytes[2].and_bits), 0xDF);
    ASSERT_EQ(e->bytes[2].and_bits, 0x10);
    ASSERT_EQ(e->bytes[3].min, 0x55);
    ASSERT_EQ(e->bytes[3].max, 0x55);
    ASSERT_EQ((uint8_t)~(e->bytes[3].or_bits ^ e->bytes[3].and_bits), 0xFF);
    ASSERT_EQ(e->bytes[4].counter, VSOC_BASELINE_COUNTER_NONE);
    e = vsoc_baseline_lookup(b, "can0", 4, 0x0FF, 0);
    ASSERT(e);
    ASSERT_EQ(e->nbytes, 2);
    ASSERT_EQ(e->dlc_mask, 1u << 2);
    vsoc_baseline_free(b);

    /* Deterministic text, and write -> load -> write is exact. */
    char *y1 = write_str(l, NULL), *y2 = write_str(l, NULL);
    ASSERT_STREQ(y1, y2);
    ASSERT(strstr(y1, "  - id: 0x18FEF100\n    ext: true\n    bus: \"can1\"\n"));
    ASSERT(strstr(y1, "{min: 0xA0, max: 0xAF, const_mask: 0xF0, const_bits: 0xA0, "
                      "counter: nibble, checksum: none}"));
    char path[] = "/tmp/vsoc_test_baseline.XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, y1, strlen(y1)), (long long)strlen(y1));
    close(fd);
    char err[512];
    b = vsoc_baseline_load(path, err, sizeof err);
    if (!b)
        TEST_FAIL_("load: %s", err);
    char *y3 = write_str(NULL, b);
    ASSERT_STREQ(y1, y3);
    e = vsoc_baseline_lookup(b, "can1", 4, 0x18FEF100, 1);
    ASSERT(e);
    ASSERT_EQ(e->bytes[1].counter, VSOC_BASELINE_COUNTER_NIBBLE);
    ASSERT_EQ(e->bytes[2].and_bits, 0x10);
    ASSERT_EQ(e->bytes[2].or_bits, 0x30);
    vsoc_baseline_free(b);
    unlink(path);
    free(y1);
    free(y2);
    free(y3);
    vsoc_baseline_learner_free(l);
}

static void expect_load_error(const char *text, const char *want)
{
    char path[] = "/tmp/vsoc_test_baseline.XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    char err[512], full[600];
    vsoc_baseline_t *b = vsoc_baseline_load(path, err, sizeof err);
    if (b)
        TEST_FAIL_("loading %s should fail with %s", text, want);
    snprintf(full, sizeof full, "%s%s", path, want);
    if (strncmp(err, full, strlen(full)) != 0)
        TEST_FAIL_("error \"%s\" does not start with \"%s\"", err, full);
    unlink(path);
}

static void test_load_errors(void)
{
    expect_load_error("format: 1\nname: \"x\"\nids: [\n", ":4:1: YAML: ");
    expect_load_error("format: 1\nname: [x\n  y: z\n", ":3:4: YAML: ");
    expect_load_error("format: 2\n", ":1:9: format 2 is not supported");
    expect_load_error("format: 1\ncolour: red\n", ":2:1: unknown key 'colour'");
    expect_load_error("format: 1\nname: n\ntool: t\nsources: []\nids:\n"
                      "  - {id: 0x100, ext: false, bus: can0, dlc: [16]}\n",
                      ":6:46: dlc: expected an integer from 0 to 15, not '16'");
    expect_load_error("format: 1\nname: n\ntool: t\nsources: []\n", ":1:1: missing key 'ids'");
    char err[256];
    ASSERT(!vsoc_baseline_load("/nonexistent/b.yaml", err, sizeof err));
    ASSERT(strstr(err, "/nonexistent/b.yaml: cannot open: "));
}

static void test_empty(void)
{
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    char *y = write_str(l, NULL);
    ASSERT(strstr(y, "sources:\n  []\nids:\n  []\n"));
    free(y);
    vsoc_baseline_learner_free(l);
    vsoc_baseline_learner_free(NULL);
    vsoc_baseline_free(NULL);
}

static void test_shared_capture(void)
{
    char path[1024];
    const char *env = getenv("VSOC_SHARED_DATA");
    if (env && *env)
        snprintf(path, sizeof path, "%s/j1939/normal.log", env);
    else
        snprintf(path, sizeof path, "%s/../shared/data/can/j1939/normal.log",
                 getenv("VSOC_SOURCE_DIR") ? getenv("VSOC_SOURCE_DIR") : ".");
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("SKIP: %s not found; set VSOC_SHARED_DATA\n", path);
        return;
    }
    char err[512];
    vsoc_reader_t *r = vsoc_reader_open(path, NULL, err, sizeof err);
    if (!r)
        TEST_FAIL_("%s", err);
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    ASSERT_EQ(vsoc_baseline_learner_file_begin(l, "normal.log", ""), 0);
    vsoc_event_t ev;
    /* Distinct (bus, id, ext) counted independently, by a plain list. */
    static struct { char bus[16]; uint32_t id; int ext; } seen[4096];
    size_t nseen = 0;
    while (vsoc_reader_next(r, &ev) == 1) {
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
        size_t i = 0;
        while (i < nseen && !(seen[i].id == ev.can.id && seen[i].ext == ev.can.ext &&
                              strlen(seen[i].bus) == ev.bus.n &&
                              !memcmp(seen[i].bus, ev.bus.p, ev.bus.n)))
            i++;
        if (i == nseen && nseen < 4096 && ev.bus.n < 16) {
            memcpy(seen[nseen].bus, ev.bus.p, ev.bus.n);
            seen[nseen].bus[ev.bus.n] = '\0';
            seen[nseen].id = ev.can.id;
            seen[nseen].ext = ev.can.ext;
            nseen++;
        }
    }
    ASSERT_EQ(vsoc_reader_skipped(r), 0);
    vsoc_reader_close(r);
    ASSERT_EQ(vsoc_baseline_learner_frames(l), 19957);
    ASSERT_EQ(vsoc_baseline_learner_ids(l), nseen);
    vsoc_baseline_t *b = build(l);
    ASSERT_EQ(vsoc_baseline_count(b), nseen);
    const vsoc_baseline_id_t *e = vsoc_baseline_lookup(b, "can0", 4, 0x18FEF100, 1);
    ASSERT(e);
    ASSERT_NEAR(e->period.p50, 100.0, 5.0);
    printf("normal.log: %zu IDs, 0x18FEF100 p50 %.3f ms\n", nseen, e->period.p50);
    char *y1 = write_str(l, NULL), *y2 = write_str(NULL, b);
    ASSERT_STREQ(y1, y2);
    free(y1);
    free(y2);
    vsoc_baseline_free(b);
    vsoc_baseline_learner_free(l);
}

int main(void)
{
    test_period();
    test_merge();
    test_bytes();
    test_load_errors();
    test_empty();
    test_shared_capture();
    printf("test_baseline: ok\n");
    return 0;
}
