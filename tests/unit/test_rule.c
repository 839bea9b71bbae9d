/* test_rule.c: the rule compiler: what compiles, and that every planted mistake is reported
 * at its own file:line:col. */
#include "rule.h"
#include "test.h"

static vsoc_diags_t *d;

static vsoc_ruleset_t *load(const char *yaml)
{
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    vsoc_ruleset_t *rs = vsoc_ruleset_load_string("t.yml", yaml, strlen(yaml), NULL, d);
    ASSERT(rs != NULL);
    vsoc_diags_sort(d);
    return rs;
}

/* Asserts a diagnostic at line:col whose message contains text. */
static void expect_diag(int line, int col, const char *text)
{
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        if (g->line == line && g->col == col && strstr(g->msg, text))
            return;
    }
    fprintf(stderr, "missing diagnostic %d:%d '%s'; got:\n", line, col, text);
    vsoc_diags_print(d, stderr);
    exit(1);
}

#define HEAD "id: t.rule\ntitle: T\nlevel: high\ntags: [atm.t1, unr155.a.1]\n" \
             "logsource: {product: vehicle, category: can}\n"

static void test_good_rule(void)
{
    vsoc_ruleset_t *rs = load(HEAD "detection:\n"
                                   "  sel:\n"
                                   "    can.id: [0x7E8, 2024]\n"
                                   "    can.data[1]: 0x7F\n"
                                   "    can.data[2:4]|gte: 0x2700\n"
                                   "    can.data|bits: {start: 12, len: 4, le: true, eq: 3}\n"
                                   "  filter:\n"
                                   "    vin|startswith: WS-\n"
                                   "  condition: sel and not filter\n"
                                   "correlation:\n"
                                   "  type: event_count\n"
                                   "  group-by: [vin, can.id]\n"
                                   "  timespan: 30s\n"
                                   "  condition: {gte: 3}\n"
                                   "suppress: {group-by: [vin], for: 10m}\n"
                                   "tests:\n"
                                   "  - name: one\n"
                                   "    events: |\n"
                                   "      (0.000) can0 7E8#037F273500000000\n"
                                   "    expect: 0\n");
    ASSERT_EQ(vsoc_diags_errors(d), 0);
    ASSERT_EQ(vsoc_ruleset_count(rs), 1);
    const vsoc_rule_t *r = vsoc_ruleset_rule(rs, 0);
    ASSERT_STREQ(vsoc_rule_id(r), "t.rule");
    ASSERT_EQ(vsoc_rule_level(r), VSOC_LEVEL_HIGH);
    ASSERT_STREQ(vsoc_rule_correlation(r), "event_count");
    ASSERT_EQ(vsoc_rule_test_count(r), 1);
    const vsoc_rule_test_t *t = vsoc_rule_test(r, 0);
    ASSERT_EQ(t->nlines, 1);
    ASSERT_EQ(t->line_nos[0], 24); /* the event's own line in the file */
    ASSERT_EQ(t->expect, 0);
    vsoc_ruleset_unref(rs);
}

static void test_planted_mistakes(void)
{
    const char *y = "id: bad.rule\n"                            /* 1 */
                    "title: T\n"                                 /* 2 */
                    "level: hihg\n"                              /* 3 */
                    "logsource: {product: vehicle, category: can}\n"
                    "detektion: x\n"                             /* 5 */
                    "detection:\n"                               /* 6 */
                    "  sel:\n"                                   /* 7 */
                    "    can.idd: 0x123\n"                       /* 8 */
                    "    can.data|contians: DEAD\n"              /* 9 */
                    "    can.data: ZZ11\n"                       /* 10 */
                    "    vin|re: '(unclosed'\n"                  /* 11 */
                    "    can.id: 0x12G\n"                        /* 12 */
                    "    can.id|gt: abc\n"                       /* 13 */
                    "    vin|gt: 3\n"                            /* 14 */
                    "  condition: sel and sel3\n"                /* 15 */
                    "correlation:\n"                             /* 16 */
                    "  type: event_cuont\n"                      /* 17 */
                    "  timespan: 30x\n";                         /* 18 */
    vsoc_ruleset_t *rs = load(y);
    expect_diag(3, 8, "unknown level 'hihg' (did you mean 'high'?)");
    expect_diag(5, 1, "unknown key 'detektion' in rule (did you mean 'detection'?)");
    expect_diag(8, 5, "unknown field 'can.idd' (did you mean 'can.id'?)");
    expect_diag(9, 5, "unknown modifier 'contians' (did you mean 'contains'?)");
    expect_diag(10, 15, "bad hex 'ZZ11'");
    expect_diag(11, 13, "does not compile: missing closing parenthesis");
    expect_diag(12, 13, "'0x12G' is not an integer");
    expect_diag(13, 16, "'abc' is not an integer");
    expect_diag(14, 5, "needs a numeric field");
    expect_diag(15, 22, "'sel3' names no detection (did you mean 'sel'?)");
    expect_diag(17, 9, "unknown correlation type 'event_cuont' (did you mean 'event_count'?)");
    expect_diag(18, 13, "bad timespan '30x'");
    ASSERT_EQ(vsoc_ruleset_count(rs), 0);
    vsoc_ruleset_unref(rs);
}

static void test_duplicates_and_yaml_errors(void)
{
    vsoc_ruleset_t *rs = load(HEAD "detection: {s: {can.id: 1}, condition: s}\n"
                                   "tests: [{name: a, events: '(0.0) can0 001#00', expect: 1}]\n"
                                   "---\n" HEAD "detection: {s: {can.id: 2}, condition: s}\n");
    expect_diag(9, 5, "duplicate rule id 't.rule' (first defined at t.yml:1)");
    ASSERT_EQ(vsoc_ruleset_count(rs), 1);
    vsoc_ruleset_unref(rs);

    rs = load("id: x\ntitle: [unclosed\n");
    ASSERT(vsoc_diags_errors(d) == 1);
    ASSERT(strstr(vsoc_diags_get(d, 0)->msg, "YAML:") != NULL);
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  sel: {can.id: 1}\n  condition: sel\n"
                   "tests:\n  - name: x\n    events: '(0.0) can0 001#00'\n");
    expect_diag(10, 5, "test needs 'expect'");
    vsoc_ruleset_unref(rs);
}

static void test_condition_grammar(void)
{
    vsoc_ruleset_t *rs = load(HEAD "detection:\n"
                                   "  sel_a: {can.id: 1}\n"
                                   "  sel_b: {can.id: 2}\n"
                                   "  other: {can.dlc|lt: 8}\n"
                                   "  condition: (1 of sel_* and not other) or all of them\n");
    ASSERT_EQ(vsoc_diags_errors(d), 0);
    ASSERT_EQ(vsoc_ruleset_count(rs), 1);
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  sel: {can.id: 1}\n  condition: sel and (sel\n");
    expect_diag(8, 22, "unclosed '('");
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  sel: {can.id: 1}\n  condition: 1 of nomatch_*\n");
    expect_diag(8, 19, "'nomatch_*' names no detection");
    vsoc_ruleset_unref(rs);
}

static void test_correlation_checks(void)
{
    vsoc_ruleset_t *rs = load(HEAD "detection:\n  a: {can.id: 1}\n  b: {can.id: 2}\n"
                                   "correlation:\n  type: temporal_ordered\n"
                                   "  detections: [a, c]\n  timespan: 1m\n");
    expect_diag(11, 19, "'c' names no detection");
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                   "correlation: {type: event_count, timespan: 1s, condition: {lt: 3}}\n");
    expect_diag(9, 60, "'lt' is not supported");
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                   "correlation: {type: value_count, timespan: 1s, condition: {gte: 3}}\n");
    expect_diag(9, 14, "value_count needs 'field'");
    vsoc_ruleset_unref(rs);
}

static void test_fleet_count(void)
{
    /* Both threshold forms compile; the accessor gives the window and the threshold. */
    vsoc_ruleset_t *rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                                   "correlation: {type: fleet_count, timespan: 1h, gte: 5}\n"
                                   "---\n"
                                   "id: t.rule2\ntitle: T\nlevel: high\ntags: [atm.t1, unr155.a.1]\n"
                                   "logsource: {product: vehicle, category: can}\n"
                                   "detection:\n  a: {can.id: 1}\n  condition: a\n"
                                   "correlation:\n  type: fleet_count\n  timespan: 30m\n"
                                   "  condition: {gt: 9}\n");
    ASSERT_EQ(vsoc_diags_errors(d), 0);
    ASSERT_EQ(vsoc_ruleset_count(rs), 2);
    int64_t span = 0;
    uint64_t gte = 0;
    const vsoc_rule_t *r = vsoc_ruleset_rule(rs, 0);
    ASSERT_STREQ(vsoc_rule_correlation(r), "fleet_count");
    ASSERT_EQ(vsoc_rule_fleet(r, &span, &gte), 1);
    ASSERT_EQ(span, 3600LL * 1000000);
    ASSERT_EQ(gte, 5);
    ASSERT_EQ(vsoc_rule_fleet(vsoc_ruleset_rule(rs, 1), &span, &gte), 1);
    ASSERT_EQ(span, 1800LL * 1000000);
    ASSERT_EQ(gte, 10); /* gt: 9 */
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                   "correlation: {type: event_count, group-by: [vin], timespan: 1s, condition: {gte: 3}}\n");
    ASSERT_EQ(vsoc_rule_fleet(vsoc_ruleset_rule(rs, 0), NULL, NULL), 0);
    vsoc_ruleset_unref(rs);

    /* What a fleet rule cannot take, each at its own position. */
    rs = load(HEAD "detection:\n"                      /* 6 */
                   "  a: {can.id: 1}\n"                 /* 7 */
                   "  condition: a\n"                   /* 8 */
                   "correlation:\n"                     /* 9 */
                   "  type: fleet_count\n"              /* 10 */
                   "  group-by: [vin]\n"                /* 11 */
                   "  field: vin\n"                     /* 12 */
                   "  timespan: 1h\n"                   /* 13 */
                   "  condition: {gte: 5}\n"            /* 14 */
                   "suppress: {group-by: [vin], for: 1m}\n"); /* 15 */
    expect_diag(11, 3, "fleet_count counts distinct vehicles across the fleet; it takes no "
                       "group-by");
    expect_diag(12, 10, "fleet_count counts distinct vehicles; it takes no 'field'");
    expect_diag(15, 1, "fleet_count takes no suppress");
    ASSERT_EQ(vsoc_diags_errors(d), 3);
    ASSERT_EQ(vsoc_ruleset_count(rs), 0);
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                   "correlation: {type: fleet_count, timespan: 1h}\n");
    expect_diag(9, 14, "correlation fleet_count needs a condition such as {gte: 5}");
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                   "correlation: {type: fleet_count, timespan: 1h, gte: 0}\n");
    expect_diag(9, 53, "correlation threshold must be 1..100000");
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                   "correlation: {type: fleet_count, timespan: 1h, gte: 5, condition: {gte: 5}}\n");
    expect_diag(9, 48, "give the threshold once");
    vsoc_ruleset_unref(rs);

    /* The short form belongs to fleet_count only. */
    rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                   "correlation: {type: event_count, timespan: 1s, gte: 3}\n");
    expect_diag(9, 48, "'gte' directly under correlation is fleet_count's short form");
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  a: {can.id: 1}\n  condition: a\n"
                   "correlation: {type: fleet_cuont, timespan: 1h, gte: 5}\n");
    expect_diag(9, 21, "unknown correlation type 'fleet_cuont' (did you mean 'fleet_count'?)");
    vsoc_ruleset_unref(rs);
}

static void test_field_kind_checks(void)
{
    vsoc_ruleset_t *rs = load("id: i\ntitle: T\nlevel: low\ntags: [a.b]\n"
                              "logsource: {product: vehicle, category: ids}\n"
                              "detection:\n  sel: {type: firewall.drop, src_ip|cidr: 10.0.0.0/8,"
                              " context.port|gte: 1024}\n  condition: sel\n");
    ASSERT_EQ(vsoc_diags_errors(d), 0);
    vsoc_ruleset_unref(rs);

    rs = load("id: i\ntitle: T\nlevel: low\nlogsource: {product: vehicle, category: ids}\n"
              "detection:\n  sel: {can.id: 1, src_ip|cidr: 10.0.0.0/33}\n  condition: sel\n");
    expect_diag(6, 9, "does not exist on IDS events");
    expect_diag(6, 33, "bad CIDR");
    vsoc_ruleset_unref(rs);

    rs = load(HEAD "detection:\n  sel: {can.data|bits: {start: 1, len: 4}}\n  condition: sel\n");
    expect_diag(7, 24, "'bits' needs start, len and one comparison");
    vsoc_ruleset_unref(rs);
}

static void test_limits(void)
{
    /* A hostile condition gets a located error, not a stack overflow. */
    char *y = malloc(400000);
    strcpy(y, HEAD "detection:\n  sel: {can.id: 1}\n  condition: ");
    for (int i = 0; i < 50000; i++)
        strcat(y + strlen(y) - 0, "not ");
    strcat(y, "sel\n");
    vsoc_ruleset_t *rs = load(y);
    expect_diag(8, 269, "nested deeper than 64 levels");
    vsoc_ruleset_unref(rs);
    free(y);
    rs = load(HEAD "detection:\n  sel: {can.id: [1, null]}\n  condition: sel\n");
    expect_diag(7, 21, "null cannot be one of several values");
    vsoc_ruleset_unref(rs);
}

int main(void)
{
    test_limits();
    test_good_rule();
    test_planted_mistakes();
    test_duplicates_and_yaml_errors();
    test_condition_grammar();
    test_correlation_checks();
    test_fleet_count();
    test_field_kind_checks();
    vsoc_diags_free(d);
    printf("test_rule: ok\n");
    return 0;
}
