/* test_engine.c: the matcher and correlation windows on event time: operators, sliding
 * windows and their restart, value_count, temporal order, suppression with its count,
 * the regex match limit, alert ids and the OCSF document. */
#include "engine.h"
#include "test.h"

#include <jansson.h>

typedef struct got {
    int n;
    int fleet_hit[8];
    char uid[8][40];
    uint64_t count[8], suppressed[8];
    int64_t first[8], last[8];
    char *json;
} got_t;

static void on_alert(void *ctx, const vsoc_alert_t *a)
{
    got_t *g = ctx;
    if (g->n < 8) {
        g->fleet_hit[g->n] = a->fleet_hit;
        strcpy(g->uid[g->n], a->uid);
        g->count[g->n] = a->count;
        g->suppressed[g->n] = a->suppressed;
        g->first[g->n] = a->first_us;
        g->last[g->n] = a->last_us;
    }
    free(g->json);
    g->json = vsoc_alert_json(a);
    g->n++;
}

static vsoc_ruleset_t *rules(const char *yaml)
{
    vsoc_diags_t *d = vsoc_diags_new();
    vsoc_ruleset_t *rs = vsoc_ruleset_load_string("t.yml", yaml, strlen(yaml), NULL, d);
    if (vsoc_diags_errors(d)) {
        vsoc_diags_print(d, stderr);
        exit(1);
    }
    vsoc_diags_free(d);
    return rs;
}

static vsoc_engine_t *engine(vsoc_ruleset_t *rs, got_t *g)
{
    char err[128];
    memset(g, 0, sizeof *g);
    vsoc_engine_opts_t o = {.on_alert = on_alert, .ctx = g, .regex_match_limit = 1000};
    vsoc_engine_t *e = vsoc_engine_new(rs, &o, err, sizeof err);
    ASSERT(e != NULL);
    vsoc_ruleset_unref(rs); /* the engine holds its own reference */
    return e;
}

static int hexv(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Feeds one CAN frame; returns the alerts it raised. */
static int can(vsoc_engine_t *e, double t, uint32_t id, const char *hex, const char *vin)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_CAN;
    ev.ts_us = (int64_t)(t * 1e6 + 0.5);
    ev.can.id = id;
    ev.can.ext = id > 0x7FF;
    ev.can.len = (uint8_t)(strlen(hex) / 2);
    ev.can.dlc = ev.can.len;
    for (unsigned i = 0; i < ev.can.len; i++)
        ev.can.data[i] = (uint8_t)(hexv(hex[2 * i]) << 4 | hexv(hex[2 * i + 1]));
    ev.vin.p = vin;
    ev.vin.n = strlen(vin);
    ev.line.p = hex;
    ev.line.n = strlen(hex);
    int rc = vsoc_engine_process(e, &ev);
    ASSERT(rc >= 0);
    return rc;
}

static int ids(vsoc_engine_t *e, const char *json)
{
    json_error_t jerr;
    json_t *doc = json_loads(json, 0, &jerr);
    ASSERT(doc != NULL);
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_IDS;
    ev.doc = doc;
    ev.ts_us = (int64_t)(json_number_value(json_object_get(doc, "ts")) * 1e6);
    ev.vin.p = json_string_value(json_object_get(doc, "vin"));
    ev.vin.n = strlen(ev.vin.p);
    ev.ids_type.p = json_string_value(json_object_get(doc, "type"));
    ev.ids_type.n = strlen(ev.ids_type.p);
    ev.line.p = json;
    ev.line.n = strlen(json);
    int rc = vsoc_engine_process(e, &ev);
    json_decref(doc);
    return rc;
}

#define CAN_HEAD(id, level)                                                                    \
    "id: " id "\ntitle: T " id "\nlevel: " level "\ntags: [a.b]\n"                             \
    "logsource: {product: vehicle, category: can}\n"

static void test_operators(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("op.mask", "low") "detection:\n  s:\n    can.id: 0x100\n    can.data[0]|mask: [0xF0, 0x20]\n  condition: s\n"
              "---\n" CAN_HEAD("op.range", "low") "detection:\n  s:\n    can.id: 0x101\n    can.data[1:3]|in_range: [0x0100, 0x01FF]\n  condition: s\n"
              "---\n" CAN_HEAD("op.bits.le", "low") "detection:\n  s: {can.id: 0x102, can.data|bits: {start: 12, len: 4, le: true, eq: 0xA}}\n  condition: s\n"
              "---\n" CAN_HEAD("op.bits.be", "low") "detection:\n  s: {can.id: 0x103, can.data|bits: {start: 7, len: 12, gte: 0xABC}}\n  condition: s\n"
              "---\n" CAN_HEAD("op.data", "low") "detection:\n  s: {can.id: 0x104, can.data|startswith: de ad, can.data|re: 'BE.F$'}\n  condition: s\n"
              "---\n" CAN_HEAD("op.contains", "low") "detection:\n  s: {can.id: 0x107, can.data|contains: '0FF0'}\n  condition: s\n"
              "---\n" CAN_HEAD("op.re", "low") "detection:\n  s: {can.id: 0x108, can.data|re: '^de.d'}\n  condition: s\n"
              "---\n" CAN_HEAD("op.wild", "low") "detection:\n  s: {can.id: 0x109, can.data: 'de*ef'}\n  condition: s\n"
              "---\n" CAN_HEAD("op.vin", "low") "detection:\n  s: {can.id: 0x105, vin: 'wvw*0?1'}\n  condition: s\n"
              "---\n" CAN_HEAD("op.null", "low") "detection:\n  s:\n    can.id: 0x106\n    can.data[4]: null\n  condition: s\n"),
        &g);
    ASSERT_EQ(can(e, 0, 0x100, "2F", "V"), 1);
    ASSERT_EQ(can(e, 0, 0x100, "3F", "V"), 0);
    ASSERT_EQ(can(e, 0, 0x101, "00015000", "V"), 1);
    ASSERT_EQ(can(e, 0, 0x101, "00025000", "V"), 0);
    ASSERT_EQ(can(e, 0, 0x102, "00A0", "V"), 1); /* bits 12..15 = high nibble of byte 1 */
    ASSERT_EQ(can(e, 0, 0x102, "000A", "V"), 0);
    ASSERT_EQ(can(e, 0, 0x103, "ABC0", "V"), 1); /* Motorola: byte 0, then high nibble of 1 */
    ASSERT_EQ(can(e, 0, 0x103, "ABB0", "V"), 0);
    ASSERT_EQ(can(e, 0, 0x104, "DEADBEEF", "V"), 1);
    ASSERT_EQ(can(e, 0, 0x104, "DEADBEE0", "V"), 0);
    ASSERT_EQ(can(e, 0, 0x105, "00", "WVWZZZ1JZXW000001"), 1);
    ASSERT_EQ(can(e, 0, 0x105, "00", "WVWZZZ1JZXW000002"), 0);
    ASSERT_EQ(can(e, 0, 0x107, "DE0FF0EF", "V"), 1);
    ASSERT_EQ(can(e, 0, 0x107, "00FF00", "V"), 0); /* "0FF0" only on byte boundaries */
    ASSERT_EQ(can(e, 0, 0x108, "DEADBEEF", "V"), 1); /* re on hex ignores case */
    ASSERT_EQ(can(e, 0, 0x109, "DE0102EF", "V"), 1); /* wildcard in a plain value */
    ASSERT_EQ(can(e, 0, 0x109, "DE0102EE", "V"), 0);
    ASSERT_EQ(can(e, 0, 0x106, "0000", "V"), 1);
    ASSERT_EQ(can(e, 0, 0x106, "0000000000", "V"), 0);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_event_count_sliding(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("ec", "high") "detection:\n  s: {can.id: 0x7E8, uds.nrc: 0x35}\n  condition: s\n"
              "correlation: {type: event_count, group-by: [vin], timespan: 30s, condition: {gte: 3}}\n"),
        &g);
    /* 3 in 30 s straddling what would be a fixed-bucket boundary still fire. */
    ASSERT_EQ(can(e, 20, 0x7E8, "037F273500000000", "V1"), 0);
    ASSERT_EQ(can(e, 35, 0x7E8, "037F273500000000", "V1"), 0);
    ASSERT_EQ(can(e, 49, 0x7E8, "037F273500000000", "V1"), 1);
    ASSERT_EQ(g.count[0], 3);
    ASSERT_EQ(g.first[0], 20000000);
    ASSERT_EQ(g.last[0], 49000000);
    /* The window restarted: two more are not enough... */
    ASSERT_EQ(can(e, 50, 0x7E8, "037F273500000000", "V1"), 0);
    ASSERT_EQ(can(e, 51, 0x7E8, "037F273500000000", "V1"), 0);
    /* ...and events older than the timespan fall out. */
    ASSERT_EQ(can(e, 90, 0x7E8, "037F273500000000", "V1"), 0);
    ASSERT_EQ(can(e, 100, 0x7E8, "037F273500000000", "V1"), 0);
    ASSERT_EQ(can(e, 110, 0x7E8, "037F273500000000", "V1"), 1);
    /* Groups are per vehicle. */
    ASSERT_EQ(can(e, 111, 0x7E8, "037F273500000000", "V2"), 0);
    ASSERT_EQ(can(e, 112, 0x7E8, "037F273500000000", "V3"), 0);
    ASSERT_EQ(g.n, 2);
    ASSERT(strcmp(g.uid[0], g.uid[1]) != 0);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_value_count(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("vc", "medium") "detection:\n  s: {can.dlc|gte: 0}\n  condition: s\n"
              "correlation: {type: value_count, field: can.id, group-by: [vin], timespan: 1s, condition: {gte: 5}}\n"),
        &g);
    /* The same ID many times is one value. */
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(can(e, i * 0.001, 0x100, "00", "V"), 0);
    ASSERT_EQ(can(e, 0.2, 0x101, "00", "V"), 0);
    ASSERT_EQ(can(e, 0.3, 0x102, "00", "V"), 0);
    /* 0x100 was last seen at 0.099: by 1.2 it has left the window. */
    ASSERT_EQ(can(e, 1.15, 0x103, "00", "V"), 0);
    ASSERT_EQ(can(e, 1.16, 0x104, "00", "V"), 0);
    ASSERT_EQ(can(e, 1.18, 0x105, "00", "V"), 1);
    ASSERT_EQ(g.count[0], 5);
    ASSERT_EQ(g.first[0], 200000);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_temporal(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("to", "critical") "detection:\n"
              "  session: {uds.sid: 0x10, uds.sub: 3}\n"
              "  access: {uds.sid: 0x27}\n"
              "  write: {uds.sid: 0x2E}\n"
              "correlation: {type: temporal_ordered, detections: [session, access, write], group-by: [vin], timespan: 60s}\n"
              "---\n" CAN_HEAD("tu", "high") "detection:\n"
              "  a: {can.id: 0x200}\n  b: {can.id: 0x201}\n"
              "correlation: {type: temporal, detections: [a, b], group-by: [vin], timespan: 10s}\n"),
        &g);
    /* Out of order: write, access, session does not fire the ordered rule. */
    ASSERT_EQ(can(e, 1, 0x7E0, "032EF19000000000", "V"), 0);
    ASSERT_EQ(can(e, 2, 0x7E0, "0227010000000000", "V"), 0);
    ASSERT_EQ(can(e, 3, 0x7E0, "0210030000000000", "V"), 0);
    ASSERT_EQ(can(e, 4, 0x7E0, "0227010000000000", "V"), 0);
    ASSERT_EQ(can(e, 5, 0x7E0, "042EF19001000000", "V"), 1);
    ASSERT_EQ(g.first[0], 3000000);
    /* Too slow: session, then write more than 60 s later. */
    ASSERT_EQ(can(e, 100, 0x7E0, "0210030000000000", "V"), 0);
    ASSERT_EQ(can(e, 101, 0x7E0, "0227010000000000", "V"), 0);
    ASSERT_EQ(can(e, 170, 0x7E0, "042EF19001000000", "V"), 0);
    /* Unordered: b then a within 10 s fires. */
    ASSERT_EQ(can(e, 200, 0x201, "00", "V"), 0);
    ASSERT_EQ(can(e, 209, 0x200, "00", "V"), 1);
    ASSERT_EQ(can(e, 230, 0x200, "00", "V"), 0);
    ASSERT_EQ(can(e, 241, 0x201, "00", "V"), 0);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_suppress_keeps_count(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("sup", "low") "detection:\n  s: {can.id: 0x300}\n  condition: s\n"
              "suppress: {group-by: [vin], for: 10s}\n"),
        &g);
    ASSERT_EQ(can(e, 0, 0x300, "01", "V"), 1);
    for (int i = 1; i <= 7; i++)
        ASSERT_EQ(can(e, i, 0x300, "01", "V"), 0);
    ASSERT_EQ(can(e, 10, 0x300, "01", "V"), 1);
    ASSERT_EQ(g.suppressed[1], 7);
    ASSERT(strstr(g.json, "\"suppressed\":7") != NULL);
    ASSERT_EQ(vsoc_engine_rule_stats(e, 0)->suppressed, 7);
    ASSERT_EQ(vsoc_engine_rule_stats(e, 0)->alerts, 2);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_index_visits_only_candidates(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("ix.a", "low") "detection:\n  s: {can.id: 0x10}\n  condition: s\n"
              "---\n" CAN_HEAD("ix.b", "low") "detection:\n  s: {j1939.pgn: 59904}\n  condition: s\n"
              "---\n" CAN_HEAD("ix.c", "low") "detection:\n  s: {can.id|lte: 0xFF}\n  condition: s\n"
              "---\n" CAN_HEAD("ix.d", "low") "detection:\n  s: {can.dlc: 9}\n  condition: s\n"),
        &g);
    can(e, 0, 0x10, "00", "V");
    can(e, 0, 0x18EA00F9, "00EE00", "V");
    can(e, 0, 0x400, "00", "V");
    ASSERT_EQ(vsoc_engine_rule_stats(e, 0)->evals, 1); /* ix.a: only 0x10 */
    ASSERT_EQ(vsoc_engine_rule_stats(e, 1)->evals, 1); /* ix.b: only the PGN 59904 frame */
    ASSERT_EQ(vsoc_engine_rule_stats(e, 2)->evals, 1); /* ix.c: only IDs up to 0xFF */
    ASSERT_EQ(vsoc_engine_rule_stats(e, 3)->evals, 3); /* ix.d: every frame */
    vsoc_engine_free(e);
    free(g.json);
}

static void test_ids_and_regex_limit(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules("id: ids.a\ntitle: T\nlevel: medium\ntags: [a.b]\n"
              "logsource: {product: vehicle, category: ids}\n"
              "detection:\n  s: {type: firewall.drop, src_ip|cidr: 203.0.113.0/24, dst_port|gte: 1000,"
              " proto: TCP}\n  condition: s\n"
              "---\nid: ids.b\ntitle: T\nlevel: low\ntags: [a.b]\n"
              "logsource: {product: vehicle, category: ids}\n"
              "detection:\n  s: {type: auth.login_failed, user|re: '^(a+)+$'}\n  condition: s\n"),
        &g);
    ASSERT_EQ(ids(e, "{\"vin\":\"V\",\"ts\":1.5,\"type\":\"firewall.drop\",\"src_ip\":\"203.0.113.7\","
                     "\"dst_port\":4444,\"proto\":\"tcp\"}"), 1);
    ASSERT_EQ(ids(e, "{\"vin\":\"V\",\"ts\":1.6,\"type\":\"firewall.drop\",\"src_ip\":\"198.51.100.1\","
                     "\"dst_port\":4444,\"proto\":\"tcp\"}"), 0);
    ASSERT_EQ(ids(e, "{\"vin\":\"V\",\"ts\":1.7,\"type\":\"auth.login_failed\",\"user\":"
                     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!\"}"), 0);
    ASSERT_EQ(vsoc_engine_rule_stats(e, 1)->regex_limit, 1);
    ASSERT_EQ(ids(e, "{\"vin\":\"V\",\"ts\":1.8,\"type\":\"auth.login_failed\",\"user\":\"aaa\"}"), 1);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_alert_document(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("doc", "critical") "detection:\n  s: {can.id: 0x7E8}\n  condition: s\n"
              "correlation: {type: event_count, group-by: [vin, can.id], timespan: 30s, condition: {gte: 2}}\n"),
        &g);
    can(e, 1.0, 0x7E8, "037F273500000000", "WVW1");
    can(e, 2.5, 0x7E8, "037F273600000000", "WVW1");
    ASSERT_EQ(g.n, 1);
    json_error_t jerr;
    json_t *o = json_loads(g.json, 0, &jerr);
    ASSERT(o != NULL);
    ASSERT_EQ(json_integer_value(json_object_get(o, "class_uid")), 2004);
    ASSERT_EQ(json_integer_value(json_object_get(o, "severity_id")), 5);
    ASSERT_EQ(json_integer_value(json_object_get(o, "time")), 2500);
    ASSERT_EQ(json_integer_value(json_object_get(o, "count")), 2);
    json_t *fi = json_object_get(o, "finding_info");
    ASSERT_STREQ(json_string_value(json_object_get(fi, "uid")), g.uid[0]);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(fi, "analytic"), "uid")), "doc");
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(o, "vehicle"), "vin")), "WVW1");
    json_t *data = json_object_get(json_array_get(json_object_get(o, "evidences"), 0), "data");
    ASSERT_EQ(json_integer_value(json_object_get(data, "first_seen_time")), 1000);
    ASSERT_EQ(json_array_size(json_object_get(data, "samples")), 2);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(data, "group"), "can.id")), "0x7E8");
    json_decref(o);
    char first_uid[40];
    strcpy(first_uid, g.uid[0]);
    vsoc_engine_free(e);
    free(g.json);

    /* The same input on a new engine gives the same alert id. */
    e = engine(rules(CAN_HEAD("doc", "critical") "detection:\n  s: {can.id: 0x7E8}\n  condition: s\n"
                     "correlation: {type: event_count, group-by: [vin, can.id], timespan: 30s, condition: {gte: 2}}\n"),
               &g);
    can(e, 1.0, 0x7E8, "037F273500000000", "WVW1");
    can(e, 2.5, 0x7E8, "037F273600000000", "WVW1");
    ASSERT_STREQ(g.uid[0], first_uid);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_groups_are_freed(void)
{
    got_t g;
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("gc", "low") "detection:\n  s: {can.dlc|gte: 0}\n  condition: s\n"
              "correlation: {type: event_count, group-by: [vin, can.id], timespan: 1s, condition: {gte: 1000}}\n"),
        &g);
    for (uint32_t i = 0; i < 5000; i++)
        can(e, i * 0.001, 0x1000 + i, "00", "V");
    ASSERT(vsoc_engine_groups(e) <= 2100); /* about one window's worth, not all 5000 */
    can(e, 100, 0x1, "00", "V");
    can(e, 102, 0x1, "00", "V");
    ASSERT(vsoc_engine_groups(e) <= 2);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_review_regressions(void)
{
    got_t g;
    /* Several ranges of one rule: visited once, and no overrun of the candidate buffer. */
    vsoc_engine_t *e = engine(
        rules(CAN_HEAD("rr.a.ranges", "low") "detection:\n  s: {can.id|in_range: [[0x120, 0x125], [0x121, 0x130], [0x100, 0x1FF], [0x110, 0x1FF]]}\n  condition: s\n"
              "---\n" CAN_HEAD("rr.b.sup", "low") "detection:\n  s: {can.id: 0x300}\n  condition: s\n"
              "suppress: {group-by: [vin], for: 10m}\n"
              "---\n" CAN_HEAD("rr.c.late", "low") "detection:\n  s: {can.id: 0x301}\n  condition: s\n"
              "correlation: {type: event_count, group-by: [vin], timespan: 10s, condition: {gte: 2}}\n"),
        &g);
    ASSERT_EQ(can(e, 1, 0x123, "00", "V"), 1);
    ASSERT_EQ(vsoc_engine_rule_stats(e, 0)->evals, 1);
    /* Suppression covers the period after an alert, not time before it. */
    ASSERT_EQ(can(e, 1000, 0x300, "00", "V"), 1);
    ASSERT_EQ(can(e, 0, 0x300, "00", "V"), 1);
    ASSERT_EQ(can(e, 1, 0x300, "00", "V"), 0);
    /* A late event counts at the group's latest time: windows never run backwards. */
    ASSERT_EQ(can(e, 10, 0x301, "00", "V"), 0);
    ASSERT_EQ(can(e, 0.5, 0x301, "00", "V"), 1);
    ASSERT(g.first[g.n - 1] <= g.last[g.n - 1]);
    vsoc_engine_free(e);
    free(g.json);
}

static void test_fleet_hits_throttled(void)
{
    got_t g;
    /* timespan 160 s: at most one hit per vehicle per 10 s. */
    const char *yaml = CAN_HEAD("fl", "high") "detection:\n  s: {can.id: 0x123}\n  condition: s\n"
                       "correlation: {type: fleet_count, timespan: 160s, gte: 3}\n";
    vsoc_engine_t *e = engine(rules(yaml), &g);
    ASSERT_EQ(can(e, 1000, 0x123, "01", "V1"), 1); /* a vehicle's first match: a hit */
    ASSERT_EQ(g.fleet_hit[0], 1);
    ASSERT_EQ(g.count[0], 1);
    ASSERT_EQ(g.first[0], 1000000000);
    ASSERT_EQ(g.last[0], 1000000000);
    ASSERT_EQ(strlen(g.uid[0]), 36);
    ASSERT_EQ(can(e, 1005, 0x123, "02", "V1"), 0);
    ASSERT_EQ(can(e, 1009.999999, 0x123, "03", "V1"), 0);
    ASSERT_EQ(can(e, 1010, 0x123, "04", "V1"), 1); /* timespan/16 after the last hit */
    ASSERT_EQ(can(e, 1012, 0x123, "05", "V1"), 0);
    ASSERT_EQ(can(e, 1012, 0x124, "05", "V2"), 0); /* not the rule's frame */
    ASSERT_EQ(can(e, 1012, 0x123, "05", "V2"), 1); /* each vehicle has its own throttle */
    ASSERT_EQ(can(e, 1012, 0x123, "05", "V3"), 1);
    /* A flood from one vehicle: one hit per 10 s, not one per frame. */
    int hits = 0;
    for (int i = 0; i < 30000; i++)
        hits += can(e, 2000 + i * 0.001, 0x123, "06", "V4");
    ASSERT_EQ(hits, 3); /* at 2000, 2010 and 2020 s */
    /* Time going back by more than the timespan (a second capture) starts afresh. */
    ASSERT_EQ(can(e, 1500, 0x123, "07", "V4"), 1);
    /* Hits are matches, never alerts: the caller counts fleet alerts. */
    const vsoc_rule_stats_t *st = vsoc_engine_rule_stats(e, 0);
    ASSERT_EQ(st->matches, 7 + 30000 + 1);
    ASSERT_EQ(st->alerts, 0);
    ASSERT_EQ(st->suppressed, 0);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(g.fleet_hit[i], 1);
    char first_uid[40];
    strcpy(first_uid, g.uid[0]);
    ASSERT(strcmp(g.uid[0], g.uid[1]) != 0);
    vsoc_engine_free(e);
    free(g.json);

    /* The same input gives the same hit id. */
    e = engine(rules(yaml), &g);
    can(e, 1000, 0x123, "01", "V1");
    ASSERT_STREQ(g.uid[0], first_uid);
    vsoc_engine_free(e);
    free(g.json);
}

/* Hits of an engine into a fleet counter, and the fleet alert they raise as a document. */
typedef struct fleet_run {
    vsoc_fleet_t *f;
    int hits, alerts;
    char uid[37];
    char *json;
} fleet_run_t;

static void on_fleet(void *ctx, const vsoc_alert_t *a)
{
    fleet_run_t *fr = ctx;
    ASSERT(a->fleet_hit);
    fr->hits++;
    int64_t span;
    uint64_t gte;
    ASSERT(vsoc_rule_fleet(a->rule, &span, &gte));
    vsoc_fleet_result_t res;
    ASSERT_EQ(vsoc_fleet_hit(fr->f, vsoc_rule_id(a->rule), span, gte, a->vin.p, a->vin.n,
                             a->time_us, &res), 0);
    if (!res.alert)
        return;
    fr->alerts++;
    strcpy(fr->uid, res.uid);
    free(fr->json);
    fr->json = vsoc_fleet_alert_json(a, &res);
}

static void test_fleet_alert_document(void)
{
    fleet_run_t fr;
    memset(&fr, 0, sizeof fr);
    fr.f = vsoc_fleet_new();
    char err[128];
    vsoc_engine_opts_t o = {.on_alert = on_fleet, .ctx = &fr};
    vsoc_ruleset_t *rs = rules(
        "id: fl.secoc\ntitle: SecOC failures across the fleet\nlevel: high\n"
        "tags: [atm.affect-vehicle-function]\nlogsource: {product: vehicle, category: ids}\n"
        "detection:\n  s: {type: secoc.verification_failed}\n  condition: s\n"
        "correlation: {type: fleet_count, timespan: 1h, condition: {gte: 3}}\n");
    vsoc_engine_t *e = vsoc_engine_new(rs, &o, err, sizeof err);
    ASSERT(e != NULL);
    vsoc_ruleset_unref(rs);
    ids(e, "{\"vin\":\"VA\",\"ts\":100,\"type\":\"secoc.verification_failed\"}");
    ids(e, "{\"vin\":\"VA\",\"ts\":101,\"type\":\"secoc.verification_failed\"}");
    ids(e, "{\"vin\":\"VB\",\"ts\":200,\"type\":\"secoc.verification_failed\"}");
    ASSERT_EQ(fr.alerts, 0);
    ids(e, "{\"vin\":\"VC\",\"ts\":300.5,\"type\":\"secoc.verification_failed\"}");
    ASSERT_EQ(fr.hits, 3);
    ASSERT_EQ(fr.alerts, 1);
    char want[37];
    vsoc_fleet_uid("fl.secoc", 300500000, want);
    ASSERT_STREQ(fr.uid, want);
    json_error_t jerr;
    json_t *doc = json_loads(fr.json, 0, &jerr);
    ASSERT(doc != NULL);
    ASSERT_EQ(json_integer_value(json_object_get(doc, "class_uid")), 2004);
    ASSERT_EQ(json_integer_value(json_object_get(doc, "count")), 3);
    ASSERT_EQ(json_integer_value(json_object_get(doc, "time")), 300500);
    ASSERT_EQ(json_integer_value(json_object_get(doc, "start_time")), 100000);
    ASSERT_EQ(json_integer_value(json_object_get(doc, "end_time")), 300500);
    json_t *fi = json_object_get(doc, "finding_info");
    ASSERT_STREQ(json_string_value(json_object_get(fi, "uid")), want);
    ASSERT_STREQ(json_string_value(json_array_get(json_object_get(fi, "types"), 0)),
                 "fleet_count");
    json_t *veh = json_object_get(doc, "vehicle");
    ASSERT_STREQ(json_string_value(json_object_get(veh, "vin")), "VC");
    json_t *fl = json_object_get(veh, "fleet");
    ASSERT_EQ(json_integer_value(json_object_get(fl, "vehicles")), 3);
    json_t *vins = json_object_get(fl, "vins");
    ASSERT_EQ(json_array_size(vins), 3);
    ASSERT_STREQ(json_string_value(json_array_get(vins, 0)), "VC");
    ASSERT_STREQ(json_string_value(json_array_get(vins, 2)), "VA");
    json_t *data = json_object_get(json_array_get(json_object_get(doc, "evidences"), 0), "data");
    ASSERT_EQ(json_integer_value(json_object_get(data, "count")), 3);
    ASSERT_EQ(json_array_size(json_object_get(data, "samples")), 1);
    ASSERT(strstr(json_string_value(json_array_get(json_object_get(data, "samples"), 0)),
                  "\"VC\"") != NULL);
    ASSERT(json_object_get(data, "group") == NULL);
    json_decref(doc);
    vsoc_engine_free(e);
    vsoc_fleet_free(fr.f);
    free(fr.json);
}

int main(void)
{
    test_fleet_hits_throttled();
    test_fleet_alert_document();
    test_review_regressions();
    test_operators();
    test_event_count_sliding();
    test_value_count();
    test_temporal();
    test_suppress_keeps_count();
    test_index_visits_only_candidates();
    test_ids_and_regex_limit();
    test_alert_document();
    test_groups_are_freed();
    printf("test_engine: ok\n");
    return 0;
}
