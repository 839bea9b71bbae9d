/* test_playbook.c: the playbook compiler: every key and its default, each diagnostic at its
 * line:col, trigger globs, vehicle-state gates, args canonicalisation, loading files and
 * directories, the check of trigger globs against rules, and the default playbooks. */
#include "envelope.h"
#include "playbook.h"
#include "rule.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Loads text; *d receives the diagnostics (caller frees both). */
static vsoc_playbooks_t *load(const char *text, vsoc_diags_t **d)
{
    *d = vsoc_diags_new();
    ASSERT(*d != NULL);
    vsoc_playbooks_t *s = vsoc_playbooks_load_string("pb.yml", text, strlen(text), *d);
    ASSERT(s != NULL);
    return s;
}

static void dump_diags(const vsoc_diags_t *d)
{
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        fprintf(stderr, "  %s:%d:%d: %s: %s\n", g->file, g->line, g->col,
                g->severity == VSOC_DIAG_ERROR ? "error" : "warning", g->msg);
    }
}

/* Loads text that must compile without any diagnostic into one playbook. */
static vsoc_playbooks_t *load_clean(const char *text)
{
    vsoc_diags_t *d;
    vsoc_playbooks_t *s = load(text, &d);
    if (vsoc_diags_count(d)) {
        dump_diags(d);
        TEST_FAIL_("unexpected diagnostics for:\n%s", text);
    }
    vsoc_diags_free(d);
    return s;
}

/* The example of the design (PLAYBOOKS.md), with a description that explains nothing. */
static const char example[] =
    "id: contain-can-injection\n"
    "title: Contain CAN injection through the telematics unit\n"
    "trigger:\n"
    "  rules: [\"vsoc.can.*\", \"vsoc.uds.*\"]   # globs on rule ids\n"
    "  min_level: high\n"
    "  cooldown: 30m                          # per vehicle\n"
    "steps:\n"
    "  - id: evidence\n"
    "    action: collect_logs\n"
    "    args: {minutes: 10}\n"
    "  - id: isolate\n"
    "    action: quarantine\n"
    "    args: {segment: telematics, mode: block_external}\n"
    "    ttl: 2h\n"
    "    approval: required\n"
    "    approval_timeout: 15m\n"
    "    vehicle_state: {speed_kph: {lte: 0}}\n"
    "    ack_timeout: 60s\n"
    "    retries: 3\n"
    "    on_failure: escalate\n"
    "  - id: escalate\n"
    "    action: notify\n"
    "    args: {channel: soc-oncall}\n"
    "limits:\n"
    "  max_vehicles_per_hour: 50\n";

static void test_example(void)
{
    vsoc_playbooks_t *s = load_clean(example);
    ASSERT_EQ(vsoc_playbooks_count(s), 1);
    ASSERT_EQ(vsoc_playbooks_files(s), 1);
    const vsoc_playbook_t *p = vsoc_playbooks_get(s, 0);
    ASSERT(vsoc_playbooks_get(s, 1) == NULL);
    ASSERT(vsoc_playbooks_find(s, "contain-can-injection") == p);
    ASSERT(vsoc_playbooks_find(s, "nope") == NULL);
    ASSERT_STREQ(p->id, "contain-can-injection");
    ASSERT_STREQ(p->title, "Contain CAN injection through the telematics unit");
    ASSERT(p->description == NULL);
    ASSERT_STREQ(p->file, "pb.yml");
    ASSERT_EQ(p->line, 1);
    ASSERT_EQ(p->col, 1);
    ASSERT_EQ(p->nrules, 2);
    ASSERT_STREQ(p->rules[0], "vsoc.can.*");
    ASSERT_STREQ(p->rules[1], "vsoc.uds.*");
    ASSERT_EQ(p->min_level, VSOC_LEVEL_HIGH);
    ASSERT_EQ(p->cooldown_s, 1800);
    ASSERT_EQ(p->max_vehicles_per_hour, 50);
    ASSERT_EQ(p->nsteps, 3);

    const vsoc_pb_step_t *e = &p->steps[0];
    ASSERT_STREQ(e->id, "evidence");
    ASSERT_EQ(e->action, VSOC_ACTION_COLLECT_LOGS);
    ASSERT_STREQ(e->args, "{\"minutes\":10}");
    ASSERT_EQ(e->approval, VSOC_APPROVAL_AUTO);
    ASSERT_EQ(e->approval_timeout_s, 0);
    ASSERT_EQ(e->ack_timeout_s, 60);
    ASSERT_EQ(e->retries, 0);
    ASSERT_EQ(e->on_failure, VSOC_ONFAIL_ABORT);
    ASSERT_EQ(e->ttl_s, 0);
    ASSERT_EQ(e->expires_s, 60 + 60);
    ASSERT_EQ(e->gate.op, VSOC_GATE_NONE);
    ASSERT_EQ(e->line, 8);
    ASSERT_EQ(e->col, 5);

    const vsoc_pb_step_t *q = &p->steps[1];
    ASSERT_STREQ(q->id, "isolate");
    ASSERT_EQ(q->action, VSOC_ACTION_QUARANTINE);
    ASSERT_STREQ(q->args, "{\"mode\":\"block_external\",\"segment\":\"telematics\"}");
    ASSERT_EQ(q->approval, VSOC_APPROVAL_REQUIRED);
    ASSERT_EQ(q->approval_timeout_s, 900);
    ASSERT_EQ(q->ack_timeout_s, 60);
    ASSERT_EQ(q->retries, 3);
    ASSERT_EQ(q->on_failure, VSOC_ONFAIL_ESCALATE);
    ASSERT_EQ(q->ttl_s, 7200);
    ASSERT_EQ(q->expires_s, 60 * 4 + 60);
    ASSERT_EQ(q->gate.op, VSOC_GATE_LTE);
    ASSERT(q->gate.speed_kph == 0);
    ASSERT_EQ(q->line, 11);

    const vsoc_pb_step_t *n = &p->steps[2];
    ASSERT_EQ(n->action, VSOC_ACTION_NOTIFY);
    ASSERT_STREQ(n->args, "{\"channel\":\"soc-oncall\"}");
    ASSERT_EQ(n->ack_timeout_s, 0);
    ASSERT_EQ(n->expires_s, 0);
    ASSERT_EQ(n->approval, VSOC_APPROVAL_AUTO);

    ASSERT(vsoc_playbook_triggered_by(p, "vsoc.can.id-fuzzing", VSOC_LEVEL_HIGH));
    ASSERT(vsoc_playbook_triggered_by(p, "vsoc.uds.request-download", VSOC_LEVEL_CRITICAL));
    ASSERT(!vsoc_playbook_triggered_by(p, "vsoc.can.id-fuzzing", VSOC_LEVEL_MEDIUM));
    ASSERT(!vsoc_playbook_triggered_by(p, "vsoc.ids.firewall-port-scan", VSOC_LEVEL_HIGH));
    ASSERT(!vsoc_playbook_triggered_by(p, NULL, VSOC_LEVEL_HIGH));
    vsoc_playbooks_free(s);
    vsoc_playbooks_free(NULL);
}

/* Defaults of a minimal playbook, per action, and of approval. */
static void test_defaults(void)
{
    vsoc_playbooks_t *s = load_clean("id: p\n"
                                     "title: t\n"
                                     "trigger: {rules: [x]}\n"
                                     "steps:\n"
                                     "  - {id: a, action: rotate_credentials}\n"
                                     "  - {id: c, action: collect_logs, approval: required}\n"
                                     "  - {id: d, action: collect_logs, approval: two_person,"
                                     " approval_timeout: 1h, retries: 2, ack_timeout: 30s}\n"
                                     "  - {id: e, action: escalate, on_failure: continue}\n"
                                     "  - {id: f, action: collect_logs, expires: 1d, ttl: 10m}\n"
                                     "  - {id: g, action: notify, args: null}\n"
                                     "  - {id: q, action: quarantine, args: {segment: x, mode: y},"
                                     " ttl: 1h, approval: required}\n"
                                     "  - {id: b, action: release, args: {segment: x}}\n");
    const vsoc_playbook_t *p = vsoc_playbooks_get(s, 0);
    ASSERT_EQ(p->min_level, VSOC_LEVEL_MEDIUM);
    ASSERT_EQ(p->cooldown_s, 0);
    ASSERT_EQ(p->max_vehicles_per_hour, 0);
    ASSERT_EQ(p->nsteps, 8);
    const vsoc_pb_step_t *st = p->steps;
    ASSERT_EQ(st[0].action, VSOC_ACTION_ROTATE_CREDENTIALS);
    ASSERT_STREQ(st[0].args, "{}");
    ASSERT_EQ(st[0].approval, VSOC_APPROVAL_AUTO);
    ASSERT_EQ(st[0].approval_timeout_s, 0);
    ASSERT_EQ(st[0].ack_timeout_s, 60);
    ASSERT_EQ(st[0].retries, 0);
    ASSERT_EQ(st[0].on_failure, VSOC_ONFAIL_ABORT);
    ASSERT_EQ(st[0].expires_s, 120);
    ASSERT_EQ(st[0].ttl_s, 0);
    ASSERT_EQ(st[0].gate.op, VSOC_GATE_NONE);
    ASSERT_EQ(st[1].approval, VSOC_APPROVAL_REQUIRED);
    ASSERT_EQ(st[1].approval_timeout_s, 900);
    ASSERT_EQ(st[2].approval, VSOC_APPROVAL_TWO_PERSON);
    ASSERT_EQ(st[2].approval_timeout_s, 3600);
    ASSERT_EQ(st[2].retries, 2);
    ASSERT_EQ(st[2].ack_timeout_s, 30);
    ASSERT_EQ(st[2].expires_s, 30 * 3 + 60);
    ASSERT_EQ(st[3].action, VSOC_ACTION_ESCALATE);
    ASSERT_EQ(st[3].on_failure, VSOC_ONFAIL_CONTINUE);
    ASSERT_EQ(st[3].ack_timeout_s, 0);
    ASSERT_EQ(st[3].expires_s, 0);
    ASSERT_EQ(st[4].expires_s, 86400);
    ASSERT_EQ(st[4].ttl_s, 600);
    ASSERT_STREQ(st[5].args, "{}");
    ASSERT_EQ(st[6].action, VSOC_ACTION_QUARANTINE);
    ASSERT_EQ(st[6].ttl_s, 3600);
    ASSERT_EQ(st[7].action, VSOC_ACTION_RELEASE);
    ASSERT_STREQ(st[7].args, "{\"segment\":\"x\"}");
    vsoc_playbooks_free(s);
}

static void test_actions(void)
{
    static const char *const names[] = {"quarantine", "release", "collect_logs",
                                        "rotate_credentials", "notify", "escalate"};
    for (int i = 0; i < 6; i++) {
        vsoc_action_t a;
        ASSERT_STREQ(vsoc_action_name((vsoc_action_t)i), names[i]);
        ASSERT_EQ(vsoc_action_from_name(names[i], &a), 0);
        ASSERT_EQ(a, i);
        ASSERT_EQ(vsoc_action_is_command(a), i < 4);
        /* The envelope knows every action a playbook can name. */
        ASSERT(vsoc_envelope_action_known(names[i]));
    }
    vsoc_action_t a = VSOC_ACTION_NOTIFY;
    ASSERT_EQ(vsoc_action_from_name("Quarantine", &a), -1);
    ASSERT_EQ(vsoc_action_from_name(NULL, &a), -1);
    ASSERT_EQ(a, VSOC_ACTION_NOTIFY);
    ASSERT(vsoc_action_name((vsoc_action_t)6) == NULL);
    ASSERT(vsoc_action_name((vsoc_action_t)-1) == NULL);
}

static void test_durations(void)
{
    char b[32];
    static const struct {
        int64_t s;
        const char *t;
    } c[] = {{0, "0s"}, {1, "1s"}, {59, "59s"}, {60, "1m"}, {90, "90s"}, {900, "15m"},
             {3600, "1h"}, {5400, "90m"}, {7200, "2h"}, {86400, "1d"}, {90000, "25h"}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        vsoc_playbook_duration(c[i].s, b, sizeof b);
        ASSERT_STREQ(b, c[i].t);
    }
    /* Duration spellings the compiler reads. */
    vsoc_playbooks_t *s = load_clean("id: p\ntitle: t\ntrigger: {rules: [x], cooldown: 1.5h}\n"
                                     "steps: [{id: a, action: collect_logs, ack_timeout: 120,"
                                     " expires: 200000ms}]\n");
    const vsoc_playbook_t *p = vsoc_playbooks_get(s, 0);
    ASSERT_EQ(p->cooldown_s, 5400);
    ASSERT_EQ(p->steps[0].ack_timeout_s, 120);
    ASSERT_EQ(p->steps[0].expires_s, 200);
    vsoc_playbooks_free(s);
}

static void test_globs(void)
{
    static const struct {
        const char *g, *s;
        int m;
    } c[] = {
        {"vsoc.can.*", "vsoc.can.id-fuzzing", 1},
        {"vsoc.can.*", "vsoc.can.", 1},
        {"vsoc.can.*", "vsoc.canx", 0},
        {"vsoc.can.*", "xvsoc.can.a", 0},
        {"*", "", 1},
        {"*", "anything", 1},
        {"", "", 1},
        {"", "a", 0},
        {"a", "", 0},
        {"?", "a", 1},
        {"?", "", 0},
        {"?", "ab", 0},
        {"vsoc.*.baseline-*", "vsoc.can.baseline-unknown-id", 1},
        {"vsoc.*.baseline-*", "vsoc.can.dos-high-priority-flood", 0},
        {"*flood", "vsoc.can.dos-high-priority-flood", 1},
        {"*flood", "vsoc.can.flood-x", 0},
        {"*a*b*c", "xxaxxbxxbxxc", 1},
        {"*a*b*c", "xxaxxcxxbxx", 0},
        {"a**b", "ab", 1},
        {"a*?", "a", 0},
        {"a*?", "ab", 1},
        {"vsoc.uds.security-access-bruteforce", "vsoc.uds.security-access-bruteforce", 1},
        {"vsoc.uds.security-access-bruteforce", "vsoc.uds.security-access-bruteforc", 0},
        {"VSOC.*", "vsoc.can.x", 0}, /* case matters: rule ids are compared as written */
        {"**********************************b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        if (vsoc_glob_match(c[i].g, c[i].s) != c[i].m)
            TEST_FAIL_("glob '%s' on '%s': expected %d", c[i].g, c[i].s, c[i].m);

    /* Every level at and above min_level triggers, none below. */
    vsoc_playbooks_t *s = load_clean("id: p\ntitle: t\n"
                                     "trigger: {rules: [\"a.?\", b.*], min_level: low}\n"
                                     "steps: [{id: a, action: notify}]\n");
    const vsoc_playbook_t *p = vsoc_playbooks_get(s, 0);
    ASSERT(!vsoc_playbook_triggered_by(p, "a.x", VSOC_LEVEL_INFORMATIONAL));
    for (int l = VSOC_LEVEL_LOW; l <= VSOC_LEVEL_CRITICAL; l++) {
        ASSERT(vsoc_playbook_triggered_by(p, "a.x", (vsoc_level_t)l));
        ASSERT(vsoc_playbook_triggered_by(p, "b.yy", (vsoc_level_t)l));
        ASSERT(!vsoc_playbook_triggered_by(p, "a.xy", (vsoc_level_t)l));
        ASSERT(!vsoc_playbook_triggered_by(p, "c.x", (vsoc_level_t)l));
    }
    vsoc_playbooks_free(s);
}

static void test_gates(void)
{
    static const struct {
        vsoc_gate_op_t op;
        double v, speed;
        int allows;
    } c[] = {
        {VSOC_GATE_NONE, 0, 130, 1}, {VSOC_GATE_LTE, 0, 0, 1},   {VSOC_GATE_LTE, 0, 0.1, 0},
        {VSOC_GATE_LT, 5, 4.9, 1},   {VSOC_GATE_LT, 5, 5, 0},    {VSOC_GATE_GT, 5, 5, 0},
        {VSOC_GATE_GT, 5, 5.1, 1},   {VSOC_GATE_GTE, 5, 5, 1},   {VSOC_GATE_GTE, 5, 4, 0},
        {VSOC_GATE_EQ, 0, 0, 1},     {VSOC_GATE_EQ, 0, 1, 0},    {VSOC_GATE_LTE, 0, NAN, 0},
        {VSOC_GATE_GTE, 0, NAN, 0},  {VSOC_GATE_NONE, 0, NAN, 1},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        vsoc_gate_t g = {c[i].op, c[i].v};
        if (vsoc_gate_allows(&g, c[i].speed) != c[i].allows)
            TEST_FAIL_("gate case %zu: expected %d", i, c[i].allows);
    }

    static const struct {
        vsoc_gate_op_t op;
        double v;
        const char *json;
    } j[] = {
        {VSOC_GATE_LTE, 0, "{\"speed_kph\":{\"lte\":0}}"},
        {VSOC_GATE_LTE, -0.0, "{\"speed_kph\":{\"lte\":0}}"},
        {VSOC_GATE_LT, 5, "{\"speed_kph\":{\"lt\":5}}"},
        {VSOC_GATE_GT, 2.5, "{\"speed_kph\":{\"gt\":2.5}}"},
        {VSOC_GATE_GTE, 120.5, "{\"speed_kph\":{\"gte\":120.5}}"},
        {VSOC_GATE_EQ, 0.1, "{\"speed_kph\":{\"eq\":0.1}}"},
        {VSOC_GATE_LT, 1.0 / 3, "{\"speed_kph\":{\"lt\":0.3333333333333333}}"},
        {VSOC_GATE_NONE, 7, ""},
    };
    char buf[128];
    for (size_t i = 0; i < sizeof j / sizeof j[0]; i++) {
        vsoc_gate_t g = {j[i].op, j[i].v};
        vsoc_gate_json(&g, buf, sizeof buf);
        ASSERT_STREQ(buf, j[i].json);
        if (j[i].op == VSOC_GATE_NONE)
            continue;
        /* Carried in args, it reads back exactly. */
        char args[256];
        snprintf(args, sizeof args, "{\"mode\":\"x\",\"vehicle_state\":%s}", buf);
        vsoc_gate_t back = {VSOC_GATE_NONE, 99};
        ASSERT_EQ(vsoc_gate_from_args(args, &back), 0);
        ASSERT_EQ(back.op, j[i].op);
        ASSERT(back.speed_kph == j[i].v);
    }
    /* A buffer too small never overflows. */
    vsoc_gate_t g = {VSOC_GATE_LTE, 0};
    memset(buf, 'x', sizeof buf);
    vsoc_gate_json(&g, buf, 5);
    ASSERT_EQ(strlen(buf), 4);

    vsoc_gate_t r = {VSOC_GATE_LT, 3};
    ASSERT_EQ(vsoc_gate_from_args("{\"segment\":\"x\"}", &r), 0);
    ASSERT_EQ(r.op, VSOC_GATE_NONE);
    ASSERT_EQ(vsoc_gate_from_args("{}", &r), 0);
    ASSERT_EQ(r.op, VSOC_GATE_NONE);
    static const char *const bad[] = {
        "",
        "[]",
        "not json",
        "{\"vehicle_state\":1}",
        "{\"vehicle_state\":{}}",
        "{\"vehicle_state\":{\"speed_kph\":0}}",
        "{\"vehicle_state\":{\"speed_kph\":{}}}",
        "{\"vehicle_state\":{\"speed_kph\":{\"le\":0}}}",
        "{\"vehicle_state\":{\"speed_kph\":{\"lte\":\"0\"}}}",
        "{\"vehicle_state\":{\"speed_kph\":{\"lte\":0,\"gt\":1}}}",
        "{\"vehicle_state\":{\"speed_kph\":{\"lte\":0},\"rpm\":{\"lt\":1}}}",
        "{\"vehicle_state\":{\"speed_kph\":{\"lte\":0}},\"vehicle_state\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vsoc_gate_t b = {VSOC_GATE_LT, 3};
        if (vsoc_gate_from_args(bad[i], &b) != VSOC_EPARSE)
            TEST_FAIL_("gate_from_args accepted %s", bad[i]);
        ASSERT_EQ(b.op, VSOC_GATE_NONE);
    }
    ASSERT_EQ(vsoc_gate_from_args(NULL, &r), VSOC_EPARSE);

    /* The compiler reads every comparison. */
    static const char *const ops[] = {"lt", "lte", "gt", "gte", "eq"};
    for (int i = 0; i < 5; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "id: p\ntitle: t\ntrigger: {rules: [x]}\n"
                 "steps: [{id: a, action: collect_logs, vehicle_state: {speed_kph: {%s: 2.5}}}]\n",
                 ops[i]);
        vsoc_playbooks_t *s = load_clean(text);
        const vsoc_pb_step_t *st = &vsoc_playbooks_get(s, 0)->steps[0];
        ASSERT_EQ(st->gate.op, VSOC_GATE_LT + i);
        ASSERT(st->gate.speed_kph == 2.5);
        vsoc_playbooks_free(s);
    }
}

/* args: YAML to canonical JSON. */
static void test_args(void)
{
    static const struct {
        const char *yaml, *json;
    } c[] = {
        {"{b: 1, a: 2}", "{\"a\":2,\"b\":1}"},
        {"{n: -7, p: +3, z: 007, h: 0x1F, o: 0o17}", "{\"h\":31,\"n\":-7,\"o\":15,\"p\":3,\"z\":7}"},
        {"{f: 2.5, g: 1e3, h: -.5, i: 1.}", "{\"f\":2.5,\"g\":1000.0,\"h\":-0.5,\"i\":1.0}"},
        {"{t: true, T: True, f: false, F: FALSE}", "{\"F\":false,\"T\":true,\"f\":false,\"t\":true}"},
        {"{a: null, b: ~, c: }", "{\"a\":null,\"b\":null,\"c\":null}"},
        {"{a: \"10\", b: '0x1F', c: \"true\", d: 'null'}",
         "{\"a\":\"10\",\"b\":\"0x1F\",\"c\":\"true\",\"d\":\"null\"}"},
        {"{a: yes, b: no, c: on, d: 1_000, e: 0x, f: 1.2.3, g: .inf1}",
         "{\"a\":\"yes\",\"b\":\"no\",\"c\":\"on\",\"d\":\"1_000\",\"e\":\"0x\",\"f\":\"1.2.3\","
         "\"g\":\".inf1\"}"},
        {"{s: \"tab\\there \\\"q\\\" \\u00e9\"}", "{\"s\":\"tab\\there \\\"q\\\" \xc3\xa9\"}"},
        {"{l: [1, a, [true, {x: null}]], m: {z: 1, a: {}}}",
         "{\"l\":[1,\"a\",[true,{\"x\":null}]],\"m\":{\"a\":{},\"z\":1}}"},
        {"{}", "{}"},
        {"\n      block: |\n        two\n        lines", "{\"block\":\"two\\nlines\\n\"}"},
        {"{anchor: &a [1, 2], again: *a}", "{\"again\":[1,2],\"anchor\":[1,2]}"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "id: p\ntitle: t\ntrigger: {rules: [x]}\n"
                 "steps:\n  - id: a\n    action: collect_logs\n    args: %s\n",
                 c[i].yaml);
        vsoc_playbooks_t *s = load_clean(text);
        const char *got = vsoc_playbooks_get(s, 0)->steps[0].args;
        if (strcmp(got, c[i].json))
            TEST_FAIL_("args %s: got %s, expected %s", c[i].yaml, got, c[i].json);
        /* These are exactly the bytes the envelope signs. */
        vsoc_envelope_t e;
        char err[128];
        memset(&e, 0, sizeof e);
        ASSERT_EQ(vsoc_envelope_set_args(&e, got, err, sizeof err), 0);
        ASSERT_STREQ(e.args, got);
        vsoc_playbooks_free(s);
    }

    /* The largest args accepted and the smallest refused. */
    for (int over = 0; over <= 1; over++) {
        /* {"k":"xxx..."} is 8 bytes plus the string. */
        size_t len = 3900 - 8 + (size_t)over;
        char *text = malloc(len + 200);
        ASSERT(text != NULL);
        int n = snprintf(text, 200, "id: p\ntitle: t\ntrigger: {rules: [x]}\n"
                                    "steps: [{id: a, action: notify, args: {k: ");
        memset(text + n, 'x', len);
        strcpy(text + n + len, "}}]\n");
        vsoc_diags_t *d;
        vsoc_playbooks_t *s = load(text, &d);
        ASSERT_EQ(vsoc_playbooks_count(s), over ? 0 : 1);
        ASSERT_EQ(vsoc_diags_count(d), over);
        if (over) {
            ASSERT(strstr(vsoc_diags_get(d, 0)->msg, "3901 bytes as canonical JSON") != NULL);
            ASSERT_EQ(vsoc_diags_get(d, 0)->line, 4);
            ASSERT_EQ(vsoc_diags_get(d, 0)->col, 39);
        } else {
            ASSERT_EQ(strlen(vsoc_playbooks_get(s, 0)->steps[0].args), 3900);
        }
        vsoc_playbooks_free(s);
        vsoc_diags_free(d);
        free(text);
    }
}

/* Aliases can make a graph out of a document: walks must stay bounded. */
static void test_args_bombs(void)
{
    static const char *const bombs[] = {
        /* an alias to its own parent */
        "id: p\ntitle: t\ntrigger: {rules: [x]}\nsteps: [{id: a, action: notify, "
        "args: &a {self: *a}}]\n",
        /* billion laughs */
        "id: p\ntitle: t\ntrigger: {rules: [x]}\n"
        "x1: &a1 [a, a, a, a, a, a, a, a, a, a]\n"
        "x2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n"
        "x3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n"
        "x4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n"
        "x5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]\n"
        "x6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]\n"
        "x7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]\n"
        "x8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]\n"
        "steps: [{id: a, action: notify, args: {k: *a8}}]\n",
        /* deep nesting */
        "id: p\ntitle: t\ntrigger: {rules: [x]}\nsteps: [{id: a, action: notify, args: "
        "{a: [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}}]\n",
    };
    static const char *const msgs[] = {"nested more than 16 levels", "more than 4096 values",
                                       "nested more than 16 levels"};
    for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
        vsoc_diags_t *d;
        vsoc_playbooks_t *s = load(bombs[i], &d);
        ASSERT_EQ(vsoc_playbooks_count(s), 0);
        int found = 0;
        for (size_t k = 0; k < vsoc_diags_count(d); k++)
            found |= strstr(vsoc_diags_get(d, k)->msg, msgs[i]) != NULL;
        if (!found) {
            dump_diags(d);
            TEST_FAIL_("bomb %zu: no '%s'", i, msgs[i]);
        }
        vsoc_playbooks_free(s);
        vsoc_diags_free(d);
    }
}

/* Diagnostics: each case has n diagnostics in all, one of them the one described. */
typedef struct dcase {
    const char *text;
    size_t n;
    int line, col;
    vsoc_diag_severity_t sev;
    const char *msg;
} dcase_t;

#define HEAD "id: p\ntitle: t\ntrigger: {rules: [\"vsoc.*\"]}\nsteps:\n"
/* A step at 5:5 whose action is on line 6; its further keys start on line 7 at col 5. */
#define NOTIFY HEAD "  - id: s\n    action: notify\n"
#define LOGS HEAD "  - id: s\n    action: collect_logs\n"
/* A quarantine that compiles; further keys start on line 10. */
#define QUAR                                                                               \
    HEAD "  - id: s\n    action: quarantine\n"                                             \
         "    args: {segment: telematics, mode: block_external}\n    ttl: 2h\n"

/* The rest of a document: a trigger and a step that compile, starting on line 3. */
#define TAIL "trigger: {rules: [x]}\nsteps: [{id: s, action: notify}]\n"
/* A document whose trigger (on line 3 at col 10) is trig. */
#define TRIGGER(trig) "id: p\ntitle: t\ntrigger: " trig "\nsteps: [{id: s, action: notify}]\n"
/* A step at 5:5 whose action, on line 6 at col 13, is followed by rest. */
#define STEP(rest) HEAD "  - id: s\n    action: " rest
/* A quarantine needing approval whose args (on line 7 at col 11) are a. */
#define QARGS(a) STEP("quarantine\n    args: " a "\n    ttl: 2h\n    approval: required\n")

#define E VSOC_DIAG_ERROR
#define W VSOC_DIAG_WARNING

static const dcase_t dcases[] = {
    /* the document */
    {"- a\n- b\n", 1, 1, 1, E, "a playbook must be a map, not a list"},
    {"id: p\ntitle: [t\n", 1, 3, 1, E, "YAML: "},
    {"title: t\n" TAIL, 1, 1, 1, E, "playbook needs an 'id'"},
    {"id: Bad_Id\ntitle: t\n" TAIL, 1, 1, 5, E, "playbook id 'Bad_Id' must start with a-z or 0-9"},
    {"id: .p\ntitle: t\n" TAIL, 1, 1, 5, E, "playbook id '.p'"},
    {"id: [p]\ntitle: t\n" TAIL, 1, 1, 5, E, "id must be a string, not a list"},
    {"id: p\n" TAIL, 1, 1, 1, E, "playbook needs a 'title'"},
    {"id: p\ntitel: t\n" TAIL, 2, 2, 1, E,
     "unknown key 'titel' in playbook (did you mean 'title'?)"},
    {"id: p\ntitle: t\ntitle: u\n" TAIL, 1, 3, 1, E, "duplicate key 'title' in playbook"},
    {"id: p\ntitle: t\ndescription: {a: 1}\n" TAIL, 1, 3, 14, E,
     "description must be a string, not a map"},
    {"id: p\ntitle: \"a\\0b\"\n" TAIL, 1, 2, 8, E, "title contains a NUL character"},
    {"id: p\ntitle: t\nauthor: me\n" TAIL, 1, 3, 1, E, "unknown key 'author' in playbook"},
    /* trigger */
    {"id: p\ntitle: t\nsteps: [{id: s, action: notify}]\n", 1, 1, 1, E,
     "playbook needs a 'trigger'"},
    {TRIGGER("[x]"), 1, 3, 10, E, "trigger must be a map"},
    {TRIGGER("{min_level: high}"), 1, 3, 10, E, "trigger needs 'rules'"},
    {TRIGGER("{rules: []}"), 1, 3, 18, E, "trigger rules must be a non-empty list"},
    {TRIGGER("{rules: vsoc.*}"), 1, 3, 18, E, "trigger rules must be a non-empty list"},
    {TRIGGER("{rules: [a, \"vsoc can\"]}"), 1, 3, 22, E,
     "trigger rule glob 'vsoc can' may only use"},
    {TRIGGER("{rules: [\"\"]}"), 1, 3, 19, E, "trigger rule glob ''"},
    {TRIGGER("{rules: [[a]]}"), 1, 3, 19, E, "a trigger rule glob must be a string, not a list"},
    {TRIGGER("{rules: [a], min_level: hihg}"), 1, 3, 34, E,
     "unknown min_level 'hihg' (did you mean 'high'?)"},
    {TRIGGER("{rules: [a], min_level: severe}"), 1, 3, 34, E,
     "unknown min_level 'severe' (informational, low, medium, high or critical)"},
    {TRIGGER("{rules: [a], cooldown: 1.5s}"), 1, 3, 33, E,
     "cooldown '1.5s' is not a whole number of seconds"},
    {TRIGGER("{rules: [a], cooldown: -5m}"), 1, 3, 33, E, "cooldown '-5m' is negative"},
    {TRIGGER("{rules: [a], cooldown: 10 minutes}"), 1, 3, 33, E,
     "bad duration '10 minutes' for cooldown"},
    {TRIGGER("{rules: [a], cooldown: 400d}"), 1, 3, 33, E, "cooldown '400d' is longer than 365d"},
    {TRIGGER("{rules: [a], colldown: 5m}"), 1, 3, 23, E,
     "unknown key 'colldown' in trigger (did you mean 'cooldown'?)"},
    /* steps */
    {"id: p\ntitle: t\ntrigger: {rules: [x]}\n", 1, 1, 1, E, "playbook needs 'steps'"},
    {"id: p\ntitle: t\ntrigger: {rules: [x]}\nsteps: []\n", 1, 4, 8, E,
     "steps must be a non-empty list"},
    {"id: p\ntitle: t\ntrigger: {rules: [x]}\nsteps: {id: s}\n", 1, 4, 8, E,
     "steps must be a non-empty list"},
    {HEAD "  - notify\n", 1, 5, 5, E, "a step must be a map with id and action, not a scalar"},
    {HEAD "  - action: notify\n", 1, 5, 5, E, "step needs an 'id'"},
    {HEAD "  - id: s\n", 1, 5, 5, E, "step needs an 'action'"},
    {HEAD "  - id: S 1\n    action: notify\n", 1, 5, 9, E, "step id 'S 1' may only use"},
    {HEAD "  - id: s.1\n    action: notify\n", 1, 5, 9, E, "step id 's.1'"},
    {NOTIFY "  - id: s\n    action: notify\n", 1, 7, 9, E,
     "duplicate step id 's' (first at line 5)"},
    {STEP("notfy\n"), 1, 6, 13, E, "unknown action 'notfy' (did you mean 'notify'?)"},
    {STEP("reboot\n"), 1, 6, 13, E,
     "unknown action 'reboot' (quarantine, release, collect_logs, rotate_credentials, notify "
     "or escalate)"},
    {NOTIFY "    aprovel: auto\n", 1, 7, 5, E, "unknown key 'aprovel' in step"},
    {NOTIFY "    id: t\n", 1, 7, 5, E, "duplicate key 'id' in step"},
    /* keys only for commands */
    {NOTIFY "    approval: required\n", 1, 7, 5, E,
     "'approval' applies only to commands sent to the vehicle (quarantine, release, "
     "collect_logs, rotate_credentials), not to notify"},
    {NOTIFY "    approval_timeout: 5m\n", 1, 7, 5, E, "'approval_timeout' applies only"},
    {NOTIFY "    ack_timeout: 5m\n", 1, 7, 5, E, "'ack_timeout' applies only"},
    {NOTIFY "    retries: 1\n", 1, 7, 5, E, "'retries' applies only"},
    {NOTIFY "    ttl: 1h\n", 1, 7, 5, E, "'ttl' applies only"},
    {NOTIFY "    expires: 1h\n", 1, 7, 5, E, "'expires' applies only"},
    {STEP("escalate\n    vehicle_state: {speed_kph: {lte: 0}}\n"), 1, 7, 5, E,
     "'vehicle_state' applies only to commands sent to the vehicle (quarantine, release, "
     "collect_logs, rotate_credentials), not to escalate"},
    /* approval, timeouts, retries, on_failure */
    {LOGS "    approval: two-person\n", 1, 7, 15, E,
     "unknown approval 'two-person' (did you mean 'two_person'?)"},
    {LOGS "    approval_timeout: 5m\n", 1, 7, 5, W,
     "approval_timeout has no effect: approval is auto"},
    {LOGS "    approval: auto\n    approval_timeout: 5m\n", 1, 8, 5, W,
     "approval_timeout has no effect"},
    {LOGS "    approval: required\n    approval_timeout: 0s\n", 1, 8, 23, E,
     "approval_timeout must be at least 1s"},
    {LOGS "    ack_timeout: 500ms\n", 1, 7, 18, E,
     "ack_timeout '500ms' is not a whole number of seconds"},
    {LOGS "    ack_timeout: soon\n", 1, 7, 18, E, "bad duration 'soon' for ack_timeout"},
    {LOGS "    retries: 11\n", 1, 7, 14, E, "retries 11 is out of range (0..10)"},
    {LOGS "    retries: -1\n", 1, 7, 14, E, "retries -1 is out of range (0..10)"},
    {LOGS "    retries: 1.5\n", 1, 7, 14, E, "retries '1.5' is not an integer"},
    {LOGS "    on_failure: retry\n", 1, 7, 17, E,
     "unknown on_failure 'retry' (abort, continue or escalate)"},
    {LOGS "    on_failure: escalte\n", 1, 7, 17, E,
     "unknown on_failure 'escalte' (did you mean 'escalate'?)"},
    {LOGS "    ack_timeout: 60s\n    retries: 3\n    expires: 4m\n", 1, 9, 14, E,
     "expires must be more than ack_timeout x (retries + 1) = 1m x 4 = 4m"},
    {LOGS "    retries: 1\n    expires: 2m\n", 1, 8, 14, E,
     "expires must be more than ack_timeout x (retries + 1) = 1m x 2 = 2m"},
    {LOGS "    ttl: 0s\n", 1, 7, 10, E, "ttl must be at least 1s"},
    /* quarantine */
    {STEP("quarantine\n    args: {segment: telematics, mode: block_external}\n"
          "    approval: required\n"), 1, 5, 5, E,
     "step 's': quarantine needs a ttl (at most 24h)"},
    {QUAR "    ttl: 25h\n", 1, 9, 5, E, "duplicate key 'ttl' in step"},
    {STEP("quarantine\n    args: {segment: telematics, mode: block_external}\n"
          "    ttl: 25h\n    approval: required\n"), 1, 8, 10, E,
     "ttl '25h' is longer than 24h"},
    {QUAR, 1, 6, 13, W,
     "step 's': quarantine while moving: add vehicle_state or say why in description"},
    {QUAR "    approval: auto\n", 1, 6, 13, W, "quarantine while moving"},
    {STEP("quarantine\n    ttl: 2h\n    approval: required\n"), 1, 5, 5, E,
     "quarantine needs args: segment and mode, can_ids or feature"},
    {QARGS("{}"), 1, 7, 11, E, "quarantine needs segment and mode, can_ids or feature"},
    {QARGS("{segment: telematics}"), 1, 7, 21, E, "quarantine segment and mode go together"},
    {QARGS("{segmnt: telematics, mode: x}"), 2, 7, 12, E,
     "unknown quarantine argument 'segmnt' (did you mean 'segment'?)"},
    {QARGS("{can_ids: [\"0x123\", 0x124]}"), 1, 7, 31, E,
     "quarantine can_ids: 0x124 is not a CAN id written as a quoted hex string"},
    {QARGS("{can_ids: [\"0x20000000\"]}"), 1, 7, 22, E,
     "quarantine can_ids: 0x20000000 is not a CAN id"},
    {QARGS("{can_ids: []}"), 1, 7, 21, E, "quarantine can_ids must be a list of 1..64 CAN ids"},
    {QARGS("{feature: \"remote start\"}"), 1, 7, 21, E, "quarantine feature must be a name"},
    {STEP("release\n"), 1, 5, 5, E, "release needs args: the segment"},
    {STEP("release\n    args: {cmd_id: x}\n"), 1, 7, 20, E, "release cmd_id names one command"},
    {STEP("release\n    args: {segment: a/b}\n"), 1, 7, 21, E, "release segment must be a name"},
    {STEP("release\n    args: {segment: x}\n"), 1, 6, 13, W,
     "step 's': release before any quarantine in this playbook"},
    /* vehicle_state */
    {LOGS "    vehicle_state: stopped\n", 1, 7, 20, E, "vehicle_state must be a map"},
    {LOGS "    vehicle_state: {}\n", 1, 7, 20, E, "vehicle_state needs speed_kph"},
    {LOGS "    vehicle_state: {speed: {lte: 0}}\n", 1, 7, 21, E,
     "unknown key 'speed' in vehicle_state"},
    {LOGS "    vehicle_state: {speed_kph: 0}\n", 1, 7, 32, E, "speed_kph must be a map"},
    {LOGS "    vehicle_state: {speed_kph: {}}\n", 1, 7, 32, E, "speed_kph needs one comparison"},
    {LOGS "    vehicle_state: {speed_kph: {lte: 0, gt: 1}}\n", 1, 7, 41, E,
     "speed_kph takes exactly one comparison"},
    {LOGS "    vehicle_state: {speed_kph: {below: 5}}\n", 1, 7, 33, E,
     "unknown key 'below' in speed_kph"},
    {LOGS "    vehicle_state: {speed_kph: {lte: fast}}\n", 1, 7, 38, E,
     "speed_kph lte needs a number, not fast"},
    {LOGS "    vehicle_state: {speed_kph: {lte: -1}}\n", 1, 7, 38, E,
     "speed_kph lte -1 is outside 0..500 km/h"},
    {LOGS "    vehicle_state: {speed_kph: {lt: 0}}\n", 1, 7, 37, E, "speed_kph lt 0 never holds"},
    /* args */
    {LOGS "    args: [1]\n", 1, 7, 11, E, "args must be a map, not a list"},
    {LOGS "    args: {vehicle_state: {speed_kph: {lte: 0}}}\n", 1, 7, 12, E,
     "args: 'vehicle_state' is reserved"},
    {LOGS "    args: {a: 1, a: 2}\n", 1, 7, 18, E, "args: duplicate key 'a'"},
    {LOGS "    args: {[a]: 1}\n", 1, 7, 12, E, "args: keys must be strings"},
    {LOGS "    args: {a: .inf}\n", 1, 7, 15, E, "args: .inf has no JSON form"},
    {LOGS "    args: {a: 99999999999999999999}\n", 1, 7, 15, E,
     "args: integer 99999999999999999999 is out of range"},
    {LOGS "    args: {a: 1e999}\n", 1, 7, 15, E, "args: number 1e999 is out of range"},
    {LOGS "    args: {a: [\"x\\0y\"]}\n", 1, 7, 16, E, "args: string contains a NUL character"},
    /* limits */
    {NOTIFY "limits: {max_vehicles_per_hour: 0}\n", 1, 7, 33, E,
     "max_vehicles_per_hour 0 is out of range (1..1000000)"},
    {NOTIFY "limits: {max_vehicles: 5}\n", 1, 7, 10, E, "unknown key 'max_vehicles' in limits"},
    {NOTIFY "limits: 50\n", 1, 7, 9, E, "limits must be a map"},
    /* across documents */
    {NOTIFY "---\n" NOTIFY, 1, 8, 5, E, "duplicate playbook id 'p' (first defined at pb.yml:1)"},
};

static void test_diagnostics(void)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof dcases / sizeof dcases[0]; i++) {
        const dcase_t *c = &dcases[i];
        vsoc_diags_t *d;
        vsoc_playbooks_t *s = load(c->text, &d);
        int found = 0;
        for (size_t k = 0; k < vsoc_diags_count(d); k++) {
            const vsoc_diag_t *g = vsoc_diags_get(d, k);
            found |= g->line == c->line && g->col == c->col && g->severity == c->sev &&
                     strstr(g->msg, c->msg) != NULL && !strcmp(g->file, "pb.yml");
        }
        if (!found || vsoc_diags_count(d) != c->n) {
            /* Report every case that fails, not only the first. */
            fprintf(stderr, "case %zu: expected %zu diagnostic(s) with %d:%d: %s: %s\n%sgot:\n",
                    i, c->n, c->line, c->col, c->sev == E ? "error" : "warning", c->msg,
                    c->text);
            dump_diags(d);
            failed++;
        }
        /* A playbook with an error is left out; warnings keep it. */
        size_t want = vsoc_diags_errors(d) ? 0 : 1;
        if (c->text[0] == 'i' && strstr(c->text, "---"))
            want = 1; /* the first of the two documents compiled */
        ASSERT_EQ(vsoc_playbooks_count(s), want);
        vsoc_playbooks_free(s);
        vsoc_diags_free(d);
    }
    if (failed)
        TEST_FAIL_("%d diagnostic case(s) failed", failed);
}

/* Warnings that a description or an earlier step answers. */
static void test_warnings_answered(void)
{
    vsoc_playbooks_t *s = load_clean(
        "id: p\ntitle: t\n"
        "description: Safe while Moving, the segment carries only infotainment.\n"
        "trigger: {rules: [x]}\nsteps:\n"
        "  - {id: q, action: quarantine, args: {segment: media, mode: off}, ttl: 1h}\n"
        "  - {id: r, action: release, args: {segment: media}}\n");
    ASSERT_EQ(vsoc_playbooks_get(s, 0)->steps[0].approval, VSOC_APPROVAL_AUTO);
    vsoc_playbooks_free(s);
    s = load_clean("id: p\ntitle: t\ntrigger: {rules: [x]}\nsteps:\n"
                   "  - {id: q, action: quarantine, args: {can_ids: [\"0x7DF\", \"0x1FFFFFFF\"]},"
                   " ttl: 24h, vehicle_state: {speed_kph: {lt: 5}}}\n");
    ASSERT_STREQ(vsoc_playbooks_get(s, 0)->steps[0].args,
                 "{\"can_ids\":[\"0x7DF\",\"0x1FFFFFFF\"]}");
    ASSERT_EQ(vsoc_playbooks_get(s, 0)->steps[0].ttl_s, 86400);
    vsoc_playbooks_free(s);
}

/* Several documents, order by id, duplicates, and a bad document among good ones. */
static void test_documents(void)
{
    vsoc_diags_t *d;
    vsoc_playbooks_t *s = load("id: zeta\ntitle: t\ntrigger: {rules: [x]}\n"
                               "steps: [{id: a, action: notify}]\n"
                               "---\n"
                               "id: alpha\ntitle: t\ntrigger: {rules: [x]}\n"
                               "steps: [{id: a, action: notfy}]\n"
                               "---\n"
                               "id: alpha\ntitle: second\ntrigger: {rules: [x]}\n"
                               "steps: [{id: a, action: notify}]\n"
                               "---\n"
                               "id: mid\ntitle: t\ntrigger: {rules: [x]}\n"
                               "steps: [{id: a, action: notify}]\n",
                               &d);
    /* The first alpha fails, the second is a duplicate id (an error) but compiled. */
    ASSERT_EQ(vsoc_diags_errors(d), 2);
    ASSERT_EQ(vsoc_playbooks_count(s), 3);
    ASSERT_STREQ(vsoc_playbooks_get(s, 0)->id, "alpha");
    ASSERT_STREQ(vsoc_playbooks_get(s, 0)->title, "second");
    ASSERT_EQ(vsoc_playbooks_get(s, 0)->line, 11);
    ASSERT_STREQ(vsoc_playbooks_get(s, 1)->id, "mid");
    ASSERT_STREQ(vsoc_playbooks_get(s, 2)->id, "zeta");
    ASSERT(vsoc_playbooks_find(s, "mid") == vsoc_playbooks_get(s, 1));
    vsoc_playbooks_free(s);
    vsoc_diags_free(d);

    /* Empty input: an empty set, no diagnostics. */
    s = load("", &d);
    ASSERT_EQ(vsoc_playbooks_count(s), 0);
    ASSERT_EQ(vsoc_diags_count(d), 0);
    vsoc_playbooks_free(s);
    vsoc_diags_free(d);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_files(void)
{
    char dir[] = "/tmp/vsoc-playbook-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char path[512], sub[512];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    ASSERT_EQ(mkdir(sub, 0755), 0);
    static const char *const files[][2] = {
        {"b.yml", "b"}, {"a.yaml", "a"}, {"c.txt", "c"}, {".hidden.yml", "h"}, {"sub/d.yml", "d"},
        {"sub/e.yml", "a"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "id: %s\ntitle: t\ntrigger: {rules: [x]}\nsteps: [{id: a, action: notify}]\n",
                 files[i][1]);
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        write_file(path, text);
    }
    vsoc_diags_t *d = vsoc_diags_new();
    const char *paths[] = {dir};
    vsoc_playbooks_t *s = vsoc_playbooks_load(paths, 1, d);
    ASSERT(s != NULL);
    /* a.yaml, b.yml, sub/d.yml, sub/e.yml: not c.txt nor the hidden file. */
    ASSERT_EQ(vsoc_playbooks_files(s), 4);
    ASSERT_EQ(vsoc_playbooks_count(s), 3);
    ASSERT_EQ(vsoc_diags_count(d), 1);
    const vsoc_diag_t *g = vsoc_diags_get(d, 0);
    char want[600];
    snprintf(want, sizeof want, "duplicate playbook id 'a' (first defined at %s/a.yaml:1)", dir);
    ASSERT_STREQ(g->msg, want);
    snprintf(want, sizeof want, "%s/sub/e.yml", dir);
    ASSERT_STREQ(g->file, want);
    ASSERT_EQ(g->line, 1);
    ASSERT_EQ(g->col, 5);
    snprintf(want, sizeof want, "%s/a.yaml", dir);
    ASSERT_STREQ(vsoc_playbooks_find(s, "a")->file, want);
    vsoc_playbooks_free(s);
    vsoc_diags_free(d);

    /* A file named directly is read whatever its name; a missing one is reported. */
    d = vsoc_diags_new();
    snprintf(path, sizeof path, "%s/c.txt", dir);
    snprintf(sub, sizeof sub, "%s/missing.yml", dir);
    const char *two[] = {path, sub};
    s = vsoc_playbooks_load(two, 2, d);
    ASSERT_EQ(vsoc_playbooks_count(s), 1);
    ASSERT_EQ(vsoc_playbooks_files(s), 1);
    ASSERT_EQ(vsoc_diags_count(d), 1);
    ASSERT(strstr(vsoc_diags_get(d, 0)->msg, "cannot open: No such file") != NULL);
    ASSERT_EQ(vsoc_diags_get(d, 0)->line, 0);
    vsoc_playbooks_free(s);
    vsoc_diags_free(d);

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        unlink(path);
    }
    snprintf(sub, sizeof sub, "%s/sub", dir);
    rmdir(sub);
    rmdir(dir);
}

static void test_check_rules(void)
{
    vsoc_playbooks_t *s = load_clean("id: p\ntitle: t\n"
                                     "trigger:\n"
                                     "  rules: [\"vsoc.can.*\", vsoc.can.low-one, vsoc.nope]\n"
                                     "  min_level: high\n"
                                     "steps: [{id: a, action: notify}]\n");
    const char *ids[] = {"vsoc.can.high-one", "vsoc.can.low-one", "vsoc.ids.x"};
    vsoc_level_t levels[] = {VSOC_LEVEL_HIGH, VSOC_LEVEL_MEDIUM, VSOC_LEVEL_CRITICAL};
    vsoc_diags_t *d = vsoc_diags_new();
    ASSERT_EQ(vsoc_playbooks_check_rules(s, ids, levels, 3, "the test rules", d), 2);
    ASSERT_EQ(vsoc_diags_warnings(d), 2);
    vsoc_diags_sort(d);
    const vsoc_diag_t *g = vsoc_diags_get(d, 0);
    ASSERT_EQ(g->line, 4);
    ASSERT_EQ(g->col, 25);
    ASSERT_STREQ(g->msg, "trigger rule glob 'vsoc.can.low-one' matches only rules below "
                         "min_level high: it never starts this playbook");
    g = vsoc_diags_get(d, 1);
    ASSERT_EQ(g->line, 4);
    ASSERT_EQ(g->col, 43);
    ASSERT_STREQ(g->msg, "trigger rule glob 'vsoc.nope' matches no rule of the test rules");
    vsoc_diags_free(d);
    vsoc_playbooks_free(s);
}

/* The default playbooks: clean, answering real rules of the default pack. */
static void test_default_playbooks(void)
{
    const char *src = getenv("VSOC_SOURCE_DIR");
    if (!src)
        TEST_FAIL_("VSOC_SOURCE_DIR is not set (CTest sets it)");
    char pb[1024], rules[1024];
    snprintf(pb, sizeof pb, "%s/playbooks", src);
    snprintf(rules, sizeof rules, "%s/rules", src);
    vsoc_diags_t *d = vsoc_diags_new();
    const char *paths[] = {pb};
    vsoc_playbooks_t *s = vsoc_playbooks_load(paths, 1, d);
    const char *rpaths[] = {rules};
    vsoc_ruleset_t *rs = vsoc_ruleset_load(rpaths, 1, NULL, d);
    ASSERT(s != NULL && rs != NULL);
    size_t nr = vsoc_ruleset_count(rs);
    ASSERT(nr >= 20);
    const char **ids = calloc(nr, sizeof *ids);
    vsoc_level_t *levels = calloc(nr, sizeof *levels);
    ASSERT(ids && levels);
    for (size_t i = 0; i < nr; i++) {
        ids[i] = vsoc_rule_id(vsoc_ruleset_rule(rs, i));
        levels[i] = vsoc_rule_level(vsoc_ruleset_rule(rs, i));
    }
    vsoc_playbooks_check_rules(s, ids, levels, nr, "the default rule pack", d);
    if (vsoc_diags_count(d)) {
        dump_diags(d);
        TEST_FAIL_("the default playbooks or rules are not clean");
    }
    ASSERT(vsoc_playbooks_count(s) >= 4);

    const vsoc_playbook_t *p = vsoc_playbooks_find(s, "contain-can-injection");
    ASSERT(p != NULL);
    ASSERT_EQ(p->min_level, VSOC_LEVEL_HIGH);
    ASSERT(vsoc_playbook_triggered_by(p, "vsoc.can.dos-high-priority-flood", VSOC_LEVEL_HIGH));
    ASSERT(vsoc_playbook_triggered_by(p, "vsoc.can.id-fuzzing", VSOC_LEVEL_HIGH));
    ASSERT(!vsoc_playbook_triggered_by(p, "vsoc.can.baseline-unknown-id", VSOC_LEVEL_HIGH));
    ASSERT(p->nsteps >= 3);
    ASSERT_EQ(p->steps[0].action, VSOC_ACTION_COLLECT_LOGS);
    ASSERT_EQ(p->steps[p->nsteps - 1].action, VSOC_ACTION_NOTIFY);
    int quarantines = 0;
    for (size_t i = 0; i < p->nsteps; i++) {
        const vsoc_pb_step_t *st = &p->steps[i];
        if (st->action != VSOC_ACTION_QUARANTINE)
            continue;
        quarantines++;
        ASSERT_EQ(st->approval, VSOC_APPROVAL_REQUIRED);
        ASSERT_EQ(st->gate.op, VSOC_GATE_LTE);
        ASSERT(st->gate.speed_kph == 0);
        ASSERT_EQ(st->ttl_s, 7200);
        ASSERT(strstr(st->args, "\"segment\":\"telematics\"") != NULL);
    }
    ASSERT_EQ(quarantines, 1);

    p = vsoc_playbooks_find(s, "contain-diagnostic-abuse");
    ASSERT(p != NULL);
    ASSERT(vsoc_playbook_triggered_by(p, "vsoc.uds.security-access-bruteforce", VSOC_LEVEL_HIGH));
    int two = 0, logs = 0;
    for (size_t i = 0; i < p->nsteps; i++) {
        const vsoc_pb_step_t *st = &p->steps[i];
        logs += st->action == VSOC_ACTION_COLLECT_LOGS;
        if (st->action == VSOC_ACTION_QUARANTINE) {
            two += st->approval == VSOC_APPROVAL_TWO_PERSON;
            ASSERT_STREQ(st->args, "{\"mode\":\"block_external\",\"segment\":\"diagnostics\"}");
        }
    }
    ASSERT_EQ(two, 1);
    ASSERT_EQ(logs, 1);

    /* Evidence-only playbooks never send a quarantine. */
    static const char *const evidence_only[] = {"ids-response", "baseline-anomaly"};
    static const char *const answers[] = {"vsoc.ids.secoc-mac-failures",
                                          "vsoc.can.baseline-unknown-id"};
    for (int k = 0; k < 2; k++) {
        p = vsoc_playbooks_find(s, evidence_only[k]);
        ASSERT(p != NULL);
        ASSERT(vsoc_playbook_triggered_by(p, answers[k], VSOC_LEVEL_HIGH));
        for (size_t i = 0; i < p->nsteps; i++)
            ASSERT(p->steps[i].action == VSOC_ACTION_COLLECT_LOGS ||
                   p->steps[i].action == VSOC_ACTION_NOTIFY);
        ASSERT_EQ(p->steps[0].approval, VSOC_APPROVAL_AUTO);
    }
    /* Every quarantine of the default set can be lifted by the vehicle itself. */
    for (size_t i = 0; i < vsoc_playbooks_count(s); i++) {
        p = vsoc_playbooks_get(s, i);
        for (size_t k = 0; k < p->nsteps; k++)
            if (p->steps[k].action == VSOC_ACTION_QUARANTINE)
                ASSERT(p->steps[k].ttl_s > 0 && p->steps[k].ttl_s <= 86400);
    }
    free(ids);
    free(levels);
    vsoc_ruleset_unref(rs);
    vsoc_playbooks_free(s);
    vsoc_diags_free(d);
}

int main(void)
{
    test_example();
    test_defaults();
    test_actions();
    test_durations();
    test_globs();
    test_gates();
    test_args();
    test_args_bombs();
    test_diagnostics();
    test_warnings_answered();
    test_documents();
    test_files();
    test_check_rules();
    test_default_playbooks();
    printf("test_playbook: ok\n");
    return 0;
}
