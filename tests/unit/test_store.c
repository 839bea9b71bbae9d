/* test_store.c: the SQLite store: opening, WAL, migrations and refusing newer schemas,
 * idempotent writes (no audit row for a write that changes nothing), records round-tripped
 * field by field, transactions, prefix lookups, and the audit chain against tampering done
 * with the raw sqlite3 API (the triggers, a changed, deleted and forged row, a cut tail). */
#include "store/store.h"
#include "test.h"

#include <sqlite3.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define VIN "WVWZZZ1JZXW000001"
#define T0 1795600800000000LL /* 2026-11-25T10:00:00Z in µs */
#define ZERO_H "0000000000000000000000000000000000000000000000000000000000000000"

static char tmpdir[64];

static void path_in(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static vsoc_store_t *open_ok(const char *path)
{
    char err[600];
    vsoc_store_t *s = vsoc_store_open(path, err, sizeof err);
    if (!s)
        TEST_FAIL_("open %s: %s", path, err);
    return s;
}

/* ---- raw SQLite access, as someone with the sqlite3 shell would have ---------------------- */

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        TEST_FAIL_("raw open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        TEST_FAIL_("%s: %s", sql, msg ? msg : "?");
}

static long long raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        TEST_FAIL_("%s: %s", sql, sqlite3_errmsg(db));
    long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

static void raw_text(sqlite3 *db, const char *sql, char *out, size_t n)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        TEST_FAIL_("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) != SQLITE_ROW)
        TEST_FAIL_("%s: no row", sql);
    snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* ---- counting helpers --------------------------------------------------------------------- */

static int count_audit_cb(void *ctx, int64_t seq, int64_t time_us, const char *actor,
                          const char *event, const char *subject, const char *detail,
                          const char *hash)
{
    (*(int *)ctx)++;
    return 0;
}

static int audit_rows(vsoc_store_t *s)
{
    int n = 0;
    ASSERT_EQ(vsoc_store_each_audit(s, count_audit_cb, &n), 0);
    return n;
}

/* The last audit row's event and subject. */
typedef struct last_audit {
    char actor[64], event[64], subject[64], detail[256];
    int64_t time_us;
} last_audit_t;

static int last_audit_cb(void *ctx, int64_t seq, int64_t time_us, const char *actor,
                         const char *event, const char *subject, const char *detail,
                         const char *hash)
{
    last_audit_t *l = ctx;
    snprintf(l->actor, sizeof l->actor, "%s", actor);
    snprintf(l->event, sizeof l->event, "%s", event);
    snprintf(l->subject, sizeof l->subject, "%s", subject);
    snprintf(l->detail, sizeof l->detail, "%s", detail);
    l->time_us = time_us;
    return 0;
}

static last_audit_t last_audit(vsoc_store_t *s)
{
    last_audit_t l;
    memset(&l, 0, sizeof l);
    ASSERT_EQ(vsoc_store_each_audit(s, last_audit_cb, &l), 0);
    return l;
}

/* ---- records ------------------------------------------------------------------------------ */

static void incident(vsoc_incident_t *inc, const char *id, const char *vin, int64_t first)
{
    memset(inc, 0, sizeof *inc);
    snprintf(inc->id, sizeof inc->id, "%s", id);
    snprintf(inc->vin, sizeof inc->vin, "%s", vin);
    inc->level = VSOC_LEVEL_HIGH;
    inc->state = VSOC_INC_OPEN;
    inc->first_us = first;
    inc->last_us = first + 5000000;
    inc->alerts = 1;
    inc->tactics = 0x5;
    snprintf(inc->first_rule, sizeof inc->first_rule, "vsoc.can.dos-high-priority-flood");
    snprintf(inc->first_alert, sizeof inc->first_alert, "a1");
}

static void a_run(vsoc_run_t *r)
{
    memset(r, 0, sizeof *r);
    strcpy(r->id, "7d1f0c2a-0000-8000-8000-000000000001");
    strcpy(r->playbook, "contain-can-injection");
    strcpy(r->incident_id, "0b9a3c2e-6f1d-8e8a-9c47-2d5e8f1a7b30");
    strcpy(r->vin, VIN);
    strcpy(r->rule_id, "vsoc.can.dos-high-priority-flood");
    r->state = VSOC_RUN_RUNNING;
    r->step = 1;
    r->started_us = T0 + 1;
    r->updated_us = T0 + 2;
    strcpy(r->reason, "a reason");
}

/* Every field set to a value distinct from its zero and from the others. */
static void a_command(vsoc_command_t *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->cmd_id, "c0ffee00-1111-8222-8333-444455556666");
    strcpy(c->run_id, "7d1f0c2a-0000-8000-8000-000000000001");
    strcpy(c->incident_id, "0b9a3c2e-6f1d-8e8a-9c47-2d5e8f1a7b30");
    strcpy(c->playbook, "contain-can-injection");
    strcpy(c->step_id, "isolate");
    strcpy(c->vin, VIN);
    c->action = VSOC_ACTION_QUARANTINE;
    strcpy(c->args, "{\"mode\":\"block_external\",\"segment\":\"telematics\","
                    "\"vehicle_state\":{\"speed_kph\":{\"lte\":0}}}");
    c->state = VSOC_CMD_PENDING_APPROVAL;
    c->approval = VSOC_APPROVAL_TWO_PERSON;
    c->napprovals = 1;
    strcpy(c->approved_by[0], "alice");
    strcpy(c->approved_by[1], "bob");
    c->seq = 42;
    c->attempts = 2;
    c->max_attempts = 4;
    c->ttl_s = 7200;
    c->expires_s = 300;
    c->ack_timeout_s = 60;
    c->approval_timeout_s = 900;
    c->created_us = T0 + 10;
    c->updated_us = T0 + 20;
    c->deadline_us = INT64_MAX;
    c->expires_at = 1795601100;
    strcpy(c->reason, "deferred: speed 30 km/h");
    c->envelope = NULL;
}

static void assert_command_eq(const vsoc_command_t *a, const vsoc_command_t *b)
{
    ASSERT_STREQ(a->cmd_id, b->cmd_id);
    ASSERT_STREQ(a->run_id, b->run_id);
    ASSERT_STREQ(a->incident_id, b->incident_id);
    ASSERT_STREQ(a->playbook, b->playbook);
    ASSERT_STREQ(a->step_id, b->step_id);
    ASSERT_STREQ(a->vin, b->vin);
    ASSERT_EQ(a->action, b->action);
    ASSERT_STREQ(a->args, b->args);
    ASSERT_EQ(a->state, b->state);
    ASSERT_EQ(a->approval, b->approval);
    ASSERT_EQ(a->napprovals, b->napprovals);
    ASSERT_STREQ(a->approved_by[0], b->approved_by[0]);
    ASSERT_STREQ(a->approved_by[1], b->approved_by[1]);
    ASSERT_EQ(a->seq, b->seq);
    ASSERT_EQ(a->attempts, b->attempts);
    ASSERT_EQ(a->max_attempts, b->max_attempts);
    ASSERT_EQ(a->ttl_s, b->ttl_s);
    ASSERT_EQ(a->expires_s, b->expires_s);
    ASSERT_EQ(a->ack_timeout_s, b->ack_timeout_s);
    ASSERT_EQ(a->approval_timeout_s, b->approval_timeout_s);
    ASSERT_EQ(a->created_us, b->created_us);
    ASSERT_EQ(a->updated_us, b->updated_us);
    ASSERT_EQ(a->deadline_us, b->deadline_us);
    ASSERT_EQ(a->expires_at, b->expires_at);
    ASSERT_STREQ(a->reason, b->reason);
}

static void assert_run_eq(const vsoc_run_t *a, const vsoc_run_t *b)
{
    ASSERT_STREQ(a->id, b->id);
    ASSERT_STREQ(a->playbook, b->playbook);
    ASSERT_STREQ(a->incident_id, b->incident_id);
    ASSERT_STREQ(a->vin, b->vin);
    ASSERT_STREQ(a->rule_id, b->rule_id);
    ASSERT_EQ(a->state, b->state);
    ASSERT_EQ(a->step, b->step);
    ASSERT_EQ(a->started_us, b->started_us);
    ASSERT_EQ(a->updated_us, b->updated_us);
    ASSERT_STREQ(a->reason, b->reason);
}

static void put_alert(vsoc_store_t *s, const char *uid, int64_t t, int expect)
{
    int rc = vsoc_store_put_alert(s, uid, "vsoc.can.dos-high-priority-flood", VSOC_LEVEL_HIGH,
                                  VIN, t, "{\"class_uid\":2004}");
    if (rc != expect)
        TEST_FAIL_("put_alert %s: %d (expected %d): %s", uid, rc, expect,
                   vsoc_store_errmsg(s));
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_open(void)
{
    char err[600], path[128];
    /* :memory: works and has the schema. */
    vsoc_store_t *m = open_ok(":memory:");
    put_alert(m, "m1", T0, 1);
    vsoc_store_close(m);
    vsoc_store_close(NULL);

    /* A file: WAL, the schema version, and the pragmas. */
    path_in(path, sizeof path, "open.db");
    vsoc_store_t *s = open_ok(path);
    put_alert(s, "a1", T0, 1);
    sqlite3 *db = raw_open(path);
    char mode[32];
    raw_text(db, "PRAGMA journal_mode", mode, sizeof mode);
    ASSERT_STREQ(mode, "wal");
    ASSERT_EQ(raw_int(db, "PRAGMA user_version"), VSOC_STORE_SCHEMA_VERSION);
    long long objects = raw_int(db, "SELECT count(*) FROM sqlite_master");
    ASSERT(objects >= 10);
    sqlite3_close(db);
    vsoc_store_close(s);

    /* Reopening migrates nothing and keeps every row. */
    s = open_ok(path);
    put_alert(s, "a1", T0, 0);
    ASSERT_EQ(audit_rows(s), 1);
    vsoc_store_close(s);
    s = vsoc_store_open_existing(path, err, sizeof err);
    ASSERT(s != NULL);
    vsoc_store_close(s);
    db = raw_open(path);
    ASSERT_EQ(raw_int(db, "SELECT count(*) FROM sqlite_master"), objects);
    ASSERT_EQ(raw_int(db, "PRAGMA user_version"), VSOC_STORE_SCHEMA_VERSION);

    /* A newer schema is refused, with both versions in the message. */
    raw_exec(db, "PRAGMA user_version=99");
    sqlite3_close(db);
    ASSERT(vsoc_store_open(path, err, sizeof err) == NULL);
    ASSERT(strstr(err, "newer") != NULL);
    ASSERT(strstr(err, "99") != NULL);
    ASSERT(strstr(err, path) != NULL);

    /* open_existing never creates a file. */
    path_in(path, sizeof path, "missing.db");
    ASSERT(vsoc_store_open_existing(path, err, sizeof err) == NULL);
    ASSERT(strstr(err, "no such store") != NULL);
    ASSERT(access(path, F_OK) != 0);

    /* Another program's database is not taken over. */
    path_in(path, sizeof path, "other.db");
    db = raw_open(path);
    raw_exec(db, "CREATE TABLE notes(x)");
    sqlite3_close(db);
    ASSERT(vsoc_store_open(path, err, sizeof err) == NULL);
    ASSERT(strstr(err, "not a vsoc store") != NULL);

    /* A file that is not a database: SQLite's own message. */
    path_in(path, sizeof path, "text.db");
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs("this is not a database, just some text that is long enough to be a header\n", f);
    fclose(f);
    ASSERT(vsoc_store_open(path, err, sizeof err) == NULL);
    ASSERT(strstr(err, "not a database") != NULL);
}

static void test_alerts(void)
{
    vsoc_store_t *s = open_ok(":memory:");
    put_alert(s, "a1", T0, 1);
    ASSERT_EQ(audit_rows(s), 1);
    last_audit_t l = last_audit(s);
    ASSERT_STREQ(l.event, "alert.raised");
    ASSERT_STREQ(l.subject, "a1");
    ASSERT_EQ(l.time_us, T0);
    put_alert(s, "a1", T0, 0);
    ASSERT_EQ(audit_rows(s), 1);
    ASSERT_EQ(vsoc_store_put_alert(s, "", "r", VSOC_LEVEL_LOW, VIN, 0, "{}"), VSOC_EINVAL);
    vsoc_store_close(s);
}

typedef struct inc_list {
    vsoc_incident_t inc[8];
    int n;
} inc_list_t;

static int collect_inc(void *ctx, const vsoc_incident_t *inc)
{
    inc_list_t *l = ctx;
    if (l->n < 8)
        l->inc[l->n++] = *inc;
    return 0;
}

typedef struct alert_list {
    char uid[8][40];
    int n;
} alert_list_t;

static int collect_alert(void *ctx, const char *uid, const char *rule_id, vsoc_level_t level,
                         int64_t time_us, const char *json)
{
    alert_list_t *l = ctx;
    ASSERT_STREQ(json, "{\"class_uid\":2004}");
    ASSERT_EQ(level, VSOC_LEVEL_HIGH);
    if (l->n < 8)
        snprintf(l->uid[l->n++], sizeof l->uid[0], "%s", uid);
    return 0;
}

static void test_incidents(void)
{
    vsoc_store_t *s = open_ok(":memory:");
    const char *id1 = "0b9a3c2e-6f1d-8e8a-9c47-2d5e8f1a7b30";
    vsoc_incident_t inc, got;
    incident(&inc, id1, VIN, T0);
    put_alert(s, "a2", T0 + 3000000, 1);
    put_alert(s, "a1", T0, 1);
    ASSERT_EQ(vsoc_store_put_incident(s, &inc, "a1", "incident.opened", "vsoc", T0), 0);
    ASSERT_EQ(audit_rows(s), 3);
    last_audit_t l = last_audit(s);
    ASSERT_STREQ(l.event, "incident.opened");
    ASSERT_STREQ(l.subject, id1);
    ASSERT_STREQ(l.actor, "vsoc");

    /* The same content again: nothing changes, no audit row. */
    ASSERT_EQ(vsoc_store_put_incident(s, &inc, "a1", "incident.updated", "vsoc", T0), 0);
    ASSERT_EQ(audit_rows(s), 3);

    /* A second alert joins and the level rises. */
    inc.alerts = 2;
    inc.level = VSOC_LEVEL_CRITICAL;
    inc.last_us = T0 + 3000000;
    ASSERT_EQ(vsoc_store_put_incident(s, &inc, "a2", "incident.updated", "vsoc", T0 + 3000000),
              0);
    ASSERT_EQ(audit_rows(s), 4);
    ASSERT_EQ(vsoc_store_get_incident(s, id1, &got), 0);
    ASSERT_STREQ(got.id, id1);
    ASSERT_STREQ(got.vin, VIN);
    ASSERT_EQ(got.level, VSOC_LEVEL_CRITICAL);
    ASSERT_EQ(got.state, VSOC_INC_OPEN);
    ASSERT_EQ(got.first_us, T0);
    ASSERT_EQ(got.last_us, T0 + 3000000);
    ASSERT_EQ(got.alerts, 2);
    ASSERT_EQ(got.tactics, 0x5);
    ASSERT_STREQ(got.first_rule, "vsoc.can.dos-high-priority-flood");
    ASSERT_STREQ(got.first_alert, "a1");

    alert_list_t al = {0};
    ASSERT_EQ(vsoc_store_each_incident_alert(s, id1, collect_alert, &al), 0);
    ASSERT_EQ(al.n, 2);
    ASSERT_STREQ(al.uid[0], "a1"); /* time order */
    ASSERT_STREQ(al.uid[1], "a2");

    /* Membership needs a stored alert (a foreign key), and a failed call changes nothing. */
    int before = audit_rows(s);
    inc.alerts = 3;
    ASSERT_EQ(vsoc_store_put_incident(s, &inc, "never-stored", "incident.updated", "vsoc", T0),
              VSOC_EIO);
    ASSERT(strstr(vsoc_store_errmsg(s), "FOREIGN KEY") != NULL);
    ASSERT(strncmp(vsoc_store_errmsg(s), ":memory:: ", 10) == 0);
    ASSERT_EQ(audit_rows(s), before);
    ASSERT_EQ(vsoc_store_get_incident(s, id1, &got), 0);
    ASSERT_EQ(got.alerts, 2);

    /* A second vehicle, and a newer incident of the first. */
    vsoc_incident_t b, c;
    incident(&b, "1111aaaa-0000-8000-8000-000000000000", "VIN2", T0 + 100);
    incident(&c, "2222bbbb-0000-8000-8000-000000000000", VIN, T0 + 3600000000LL);
    c.state = VSOC_INC_CONTAINED;
    ASSERT_EQ(vsoc_store_put_incident(s, &b, NULL, "incident.opened", "vsoc", T0), 0);
    ASSERT_EQ(vsoc_store_put_incident(s, &c, NULL, "incident.opened", "vsoc", T0), 0);

    inc_list_t li = {0};
    ASSERT_EQ(vsoc_store_each_incident(s, -1, NULL, collect_inc, &li), 0);
    ASSERT_EQ(li.n, 3);
    ASSERT_STREQ(li.inc[0].id, c.id); /* newest first */
    ASSERT_STREQ(li.inc[1].id, b.id);
    ASSERT_STREQ(li.inc[2].id, id1);
    memset(&li, 0, sizeof li);
    ASSERT_EQ(vsoc_store_each_incident(s, VSOC_INC_OPEN, VIN, collect_inc, &li), 0);
    ASSERT_EQ(li.n, 1);
    ASSERT_STREQ(li.inc[0].id, id1);
    memset(&li, 0, sizeof li);
    ASSERT_EQ(vsoc_store_each_latest_incident(s, collect_inc, &li), 0);
    ASSERT_EQ(li.n, 2);
    ASSERT_STREQ(li.inc[0].id, b.id); /* VIN2 < WVW... */
    ASSERT_STREQ(li.inc[1].id, c.id);
    ASSERT_EQ(li.inc[1].state, VSOC_INC_CONTAINED);

    /* People change the state; the state machine decides what is allowed. */
    before = audit_rows(s);
    ASSERT_EQ(vsoc_store_set_incident_state(s, "2222BBBB", VSOC_INC_OPEN, "alice", "lifted",
                                            T0 + 7),
              0);
    l = last_audit(s);
    ASSERT_STREQ(l.event, "incident.reopened");
    ASSERT_STREQ(l.actor, "alice");
    ASSERT_STREQ(l.detail, "lifted");
    ASSERT_STREQ(l.subject, c.id);
    ASSERT_EQ(vsoc_store_set_incident_state(s, id1, VSOC_INC_RESOLVED, "alice", NULL, T0 + 8),
              0);
    ASSERT_STREQ(last_audit(s).event, "incident.resolved");
    ASSERT_EQ(vsoc_store_get_incident(s, id1, &got), 0);
    ASSERT_EQ(got.state, VSOC_INC_RESOLVED);
    ASSERT_EQ(vsoc_store_set_incident_state(s, id1, VSOC_INC_OPEN, "bob", NULL, T0 + 9),
              VSOC_EINVAL);
    ASSERT(strstr(vsoc_store_errmsg(s), "cannot become open") != NULL);
    ASSERT_EQ(audit_rows(s), before + 2);
    ASSERT_EQ(vsoc_store_set_incident_state(s, "ffffffff", VSOC_INC_OPEN, "bob", NULL, 0),
              VSOC_ENOENT);
    vsoc_store_close(s);
}

typedef struct cmd_list {
    vsoc_command_t c[4];
    char env[4][64];
    int n;
} cmd_list_t;

static int collect_cmd(void *ctx, const vsoc_command_t *c)
{
    cmd_list_t *l = ctx;
    if (l->n < 4) {
        l->c[l->n] = *c;
        snprintf(l->env[l->n], sizeof l->env[0], "%s", c->envelope ? c->envelope : "(null)");
        l->c[l->n].envelope = NULL;
        l->n++;
    }
    return 0;
}

typedef struct run_list {
    vsoc_run_t r[4];
    int n;
    vsoc_store_t *s; /* set: iterate again from inside the callback */
    int inner;
} run_list_t;

static int collect_run(void *ctx, const vsoc_run_t *r)
{
    run_list_t *l = ctx;
    if (l->n < 4)
        l->r[l->n++] = *r;
    if (l->s) {
        run_list_t inner = {0};
        ASSERT_EQ(vsoc_store_each_run(l->s, collect_run, &inner), 0);
        l->inner += inner.n;
    }
    return 0;
}

static int collect_seq(void *ctx, const char *vin, uint64_t last_seq)
{
    ASSERT_STREQ(vin, VIN);
    *(uint64_t *)ctx = last_seq;
    return 0;
}

static void test_responder_records(void)
{
    vsoc_store_t *s = open_ok(":memory:");
    vsoc_run_t run;
    vsoc_command_t cmd, got;
    a_run(&run);
    a_command(&cmd);

    vsoc_change_t ch = {.kind = VSOC_CHANGE_RUN, .event = "run.started",
                        .detail = "playbook contain-can-injection started", .time_us = T0 + 1,
                        .actor = "vsoc", .run = &run};
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    ASSERT_EQ(audit_rows(s), 1);
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0); /* the same again: nothing */
    ASSERT_EQ(audit_rows(s), 1);

    /* A command, not signed yet. */
    ch = (vsoc_change_t){.kind = VSOC_CHANGE_COMMAND, .event = "command.pending_approval",
                         .detail = "waits", .time_us = T0 + 10, .actor = "vsoc", .run = &run,
                         .cmd = &cmd};
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    ASSERT_EQ(audit_rows(s), 2);
    last_audit_t l = last_audit(s);
    ASSERT_STREQ(l.event, "command.pending_approval");
    ASSERT_STREQ(l.subject, cmd.cmd_id);
    ASSERT_STREQ(l.detail, "waits");
    ASSERT_EQ(l.time_us, T0 + 10);
    char *env = (char *)"x";
    ASSERT_EQ(vsoc_store_get_command(s, cmd.cmd_id, &got, &env), 0);
    assert_command_eq(&got, &cmd);
    ASSERT(env == NULL);
    ASSERT(got.envelope == NULL);

    /* Signed and sent: the envelope is stored; then a change without one keeps it. */
    const char *envelope = "{\"v\":1,\"cmd_id\":\"c0ffee00-1111-8222-8333-444455556666\"}";
    cmd.state = VSOC_CMD_SENT;
    cmd.envelope = envelope;
    ch.event = "command.sent";
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    ASSERT_EQ(audit_rows(s), 3);
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    ASSERT_EQ(audit_rows(s), 3);
    cmd.envelope = NULL;
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0); /* NULL envelope: unchanged */
    ASSERT_EQ(audit_rows(s), 3);
    cmd.state = VSOC_CMD_ACKED;
    ch.event = "command.acked";
    ch.actor = VIN;
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    ASSERT_EQ(audit_rows(s), 4);
    ASSERT_STREQ(last_audit(s).actor, VIN);
    ASSERT_EQ(vsoc_store_get_command(s, "C0FFEE00-1111", &got, &env), 0);
    assert_command_eq(&got, &cmd);
    ASSERT_STREQ(env, envelope);
    free(env);
    ASSERT_EQ(vsoc_store_get_command(s, cmd.cmd_id, &got, NULL), 0);

    /* The vehicle's seq only moves forward. */
    uint64_t seq = 0;
    ASSERT_EQ(vsoc_store_each_seq(s, collect_seq, &seq), 0);
    ASSERT_EQ(seq, 42);

    /* Open commands: an acked quarantine still is (a release may follow); a second command
     * in a final state is not. */
    vsoc_command_t done = cmd;
    strcpy(done.cmd_id, "d0d0d0d0-1111-8222-8333-444455556666");
    done.state = VSOC_CMD_REJECTED;
    done.seq = 7;
    done.created_us = T0 + 30;
    ch.cmd = &done;
    ch.event = "command.rejected";
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    seq = 0;
    ASSERT_EQ(vsoc_store_each_seq(s, collect_seq, &seq), 0);
    ASSERT_EQ(seq, 42);
    cmd_list_t cl = {0};
    ASSERT_EQ(vsoc_store_each_command(s, 1, collect_cmd, &cl), 0);
    ASSERT_EQ(cl.n, 1);
    assert_command_eq(&cl.c[0], &cmd);
    ASSERT_STREQ(cl.env[0], envelope); /* the envelope is there during the callback */
    memset(&cl, 0, sizeof cl);
    ASSERT_EQ(vsoc_store_each_command(s, 0, collect_cmd, &cl), 0);
    ASSERT_EQ(cl.n, 2);
    ASSERT_STREQ(cl.c[1].cmd_id, done.cmd_id);
    ASSERT_STREQ(cl.env[1], "(null)"); /* never signed */
    /* Released: final. Each open state counts. */
    cmd.state = VSOC_CMD_RELEASED;
    ch.cmd = &cmd;
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    memset(&cl, 0, sizeof cl);
    ASSERT_EQ(vsoc_store_each_command(s, 1, collect_cmd, &cl), 0);
    ASSERT_EQ(cl.n, 0);
    static const vsoc_cmd_state_t open_states[] = {VSOC_CMD_PENDING_APPROVAL, VSOC_CMD_QUEUED,
                                                   VSOC_CMD_SENT, VSOC_CMD_DEFERRED,
                                                   VSOC_CMD_ESCALATED};
    /* A final state is final: a stale copy cannot bring a rejected command back. */
    done.state = VSOC_CMD_QUEUED;
    ch.cmd = &done;
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), VSOC_EINVAL);
    ASSERT(strstr(vsoc_store_errmsg(s), "is rejected already") != NULL);
    vsoc_command_t o = done;
    for (size_t i = 0; i < sizeof open_states / sizeof *open_states; i++) {
        o.cmd_id[35]++; /* each state on a command of its own */
        o.state = open_states[i];
        ch.cmd = &o;
        ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
        memset(&cl, 0, sizeof cl);
        ASSERT_EQ(vsoc_store_each_command(s, 1, collect_cmd, &cl), 0);
        ASSERT_EQ(cl.n, 1);
        ASSERT_EQ(cl.c[0].state, open_states[i]);
        if (i + 1 < sizeof open_states / sizeof *open_states) {
            o.state = VSOC_CMD_FAILED; /* closed before the next */
            ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
        }
    }
    /* The last one (escalated) ends: timed out, then applied late (the one way out). */
    o.state = VSOC_CMD_TIMED_OUT;
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    o.state = VSOC_CMD_QUEUED;
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), VSOC_EINVAL);
    o.action = VSOC_ACTION_COLLECT_LOGS; /* an acked collect_logs is done */
    o.state = VSOC_CMD_ACKED;
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    memset(&cl, 0, sizeof cl);
    ASSERT_EQ(vsoc_store_each_command(s, 1, collect_cmd, &cl), 0);
    ASSERT_EQ(cl.n, 0);

    /* Runs round trip; an iteration may iterate again from its callback. */
    run.state = VSOC_RUN_FAILED;
    strcpy(run.reason, "step isolate failed");
    ch = (vsoc_change_t){.kind = VSOC_CHANGE_RUN, .event = "run.failed", .time_us = T0 + 50,
                         .actor = "vsoc", .run = &run};
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    run_list_t rl = {.s = s};
    ASSERT_EQ(vsoc_store_each_run(s, collect_run, &rl), 0);
    ASSERT_EQ(rl.n, 1);
    ASSERT_EQ(rl.inner, 1);
    assert_run_eq(&rl.r[0], &run);

    /* A notification: stored once. */
    vsoc_notification_t note;
    memset(&note, 0, sizeof note);
    strcpy(note.id, "eeee0000-1111-8222-8333-444455556666");
    strcpy(note.run_id, run.id);
    strcpy(note.incident_id, run.incident_id);
    strcpy(note.vin, VIN);
    note.action = VSOC_ACTION_NOTIFY;
    strcpy(note.args, "{\"channel\":\"soc-oncall\"}");
    strcpy(note.message, "incident on " VIN);
    note.time_us = T0 + 60;
    ch = (vsoc_change_t){.kind = VSOC_CHANGE_NOTIFICATION, .event = "notification.sent",
                         .time_us = T0 + 60, .actor = "vsoc", .run = &run, .note = &note};
    int before = audit_rows(s);
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    ASSERT_EQ(audit_rows(s), before + 1);
    ASSERT_STREQ(last_audit(s).subject, note.id);

    /* A command change without its command is refused. */
    ch = (vsoc_change_t){.kind = VSOC_CHANGE_COMMAND, .event = "x", .run = &run};
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), VSOC_EINVAL);
    vsoc_store_close(s);
}

typedef struct appr {
    int64_t rowid[8];
    char by[8][64];
    int n;
} appr_t;

static int collect_approval(void *ctx, int64_t rowid, const char *cmd_id, const char *by,
                            const char *decision, const char *why, int64_t time_us)
{
    appr_t *a = ctx;
    ASSERT_STREQ(cmd_id, "c0ffee00-1111-8222-8333-444455556666");
    if (a->n < 8) {
        a->rowid[a->n] = rowid;
        snprintf(a->by[a->n++], sizeof a->by[0], "%s:%s:%s", by, decision, why);
    }
    return 0;
}

static void test_approvals_acks(void)
{
    vsoc_store_t *s = open_ok(":memory:");
    vsoc_run_t run;
    vsoc_command_t cmd;
    a_run(&run);
    a_command(&cmd);
    vsoc_change_t ch = {.kind = VSOC_CHANGE_COMMAND, .event = "command.pending_approval",
                        .time_us = T0, .actor = "vsoc", .run = &run, .cmd = &cmd};
    ASSERT_EQ(vsoc_store_apply_change(s, &ch), 0);
    int before = audit_rows(s);
    ASSERT_EQ(vsoc_store_add_approval(s, cmd.cmd_id, "alice", "approve", NULL, T0 + 1), 0);
    ASSERT_EQ(vsoc_store_add_approval(s, cmd.cmd_id, "bob", "approve", "ok", T0 + 2), 0);
    ASSERT_EQ(vsoc_store_add_approval(s, cmd.cmd_id, "carol", "reject", "too late", T0 + 3), 0);
    ASSERT_EQ(vsoc_store_add_approval(s, cmd.cmd_id, "dave", "maybe", NULL, T0 + 4),
              VSOC_EINVAL);
    ASSERT_EQ(audit_rows(s), before + 3);
    last_audit_t l = last_audit(s);
    ASSERT_STREQ(l.event, "approval.reject");
    ASSERT_STREQ(l.actor, "carol");
    appr_t a = {0};
    ASSERT_EQ(vsoc_store_each_approval(s, 0, collect_approval, &a), 0);
    ASSERT_EQ(a.n, 3);
    int64_t after = a.rowid[0];
    memset(&a, 0, sizeof a);
    ASSERT_EQ(vsoc_store_each_approval(s, after, collect_approval, &a), 0);
    ASSERT_EQ(a.n, 2);
    ASSERT(a.rowid[0] > after);
    ASSERT_STREQ(a.by[0], "bob:approve:ok");
    ASSERT_STREQ(a.by[1], "carol:reject:too late");
    memset(&a, 0, sizeof a);
    ASSERT_EQ(vsoc_store_each_approval(s, a.rowid[0] + 1000, collect_approval, &a), 0);
    ASSERT_EQ(a.n, 0);

    /* An ack: stored with an audit row by the vehicle; the same delivery again is one fact. */
    vsoc_ack_t ack;
    memset(&ack, 0, sizeof ack);
    ack.v = 1;
    strcpy(ack.cmd_id, cmd.cmd_id);
    strcpy(ack.vin, VIN);
    ack.seq = 42;
    ack.status = VSOC_ACK_APPLIED;
    ack.at = 1795600900;
    strcpy(ack.key_id, "veh-1");
    before = audit_rows(s);
    ASSERT_EQ(vsoc_store_put_ack(s, &ack, "{\"raw\":1}", "ok", T0 + 5), 0);
    ASSERT_EQ(vsoc_store_put_ack(s, &ack, "{\"raw\":1}", "ok", T0 + 6), 0);
    ASSERT_EQ(audit_rows(s), before + 1);
    l = last_audit(s);
    ASSERT_STREQ(l.event, "ack.applied");
    ASSERT_STREQ(l.actor, VIN);
    ASSERT_EQ(vsoc_store_put_ack(s, &ack, "{\"raw\":2}", "bad_signature", T0 + 7), 0);
    ASSERT_STREQ(last_audit(s).event, "ack.refused");
    vsoc_store_close(s);
}

static int count_alerts_cb(void *ctx, const char *uid, const char *rule_id, vsoc_level_t level,
                           int64_t time_us, const char *json)
{
    (*(int *)ctx)++;
    return 0;
}

static void test_transactions(void)
{
    char path[128];
    path_in(path, sizeof path, "tx.db");
    vsoc_store_t *s = open_ok(path);
    vsoc_incident_t inc;
    incident(&inc, "3333cccc-0000-8000-8000-000000000000", VIN, T0);
    ASSERT_EQ(vsoc_store_put_incident(s, &inc, NULL, "incident.opened", "vsoc", T0), 0);

    /* Nested begin/commit: the outermost commit writes. */
    ASSERT_EQ(vsoc_store_begin(s), 0);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    put_alert(s, "t1", T0, 1);
    ASSERT_EQ(vsoc_store_put_incident(s, &inc, "t1", "incident.updated", "vsoc", T0), 0);
    ASSERT_EQ(vsoc_store_commit(s), 0);
    /* Not visible to another connection before the outer commit. */
    sqlite3 *db = raw_open(path);
    ASSERT_EQ(raw_int(db, "SELECT count(*) FROM alerts WHERE uid='t1'"), 0);
    ASSERT_EQ(vsoc_store_commit(s), 0);
    ASSERT_EQ(raw_int(db, "SELECT count(*) FROM alerts WHERE uid='t1'"), 1);
    ASSERT_EQ(vsoc_store_commit(s), VSOC_EINVAL); /* no begin */

    /* A failing call inside a transaction undoes only itself. */
    int rows = audit_rows(s);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    put_alert(s, "t2", T0, 1);
    ASSERT_EQ(vsoc_store_put_incident(s, &inc, "t-missing", "incident.updated", "vsoc", T0),
              VSOC_EIO);
    ASSERT_EQ(vsoc_store_commit(s), 0);
    ASSERT_EQ(audit_rows(s), rows + 1);
    int n = 0;
    ASSERT_EQ(vsoc_store_each_incident_alert(s, inc.id, count_alerts_cb, &n), 0);
    ASSERT_EQ(n, 1);

    /* Rollback: nothing of the transaction stays, at any depth. */
    rows = audit_rows(s);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    put_alert(s, "t3", T0, 1);
    ASSERT_EQ(vsoc_store_rollback(s), 0);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    put_alert(s, "t4", T0, 1);
    ASSERT_EQ(vsoc_store_rollback(s), 0);
    ASSERT_EQ(vsoc_store_commit(s), VSOC_EIO);
    ASSERT_EQ(audit_rows(s), rows);
    ASSERT_EQ(raw_int(db, "SELECT count(*) FROM alerts WHERE uid IN ('t3','t4')"), 0);
    put_alert(s, "t3", T0, 1); /* and the handle goes on */

    /* Two handles appending in turn keep one chain (the head is read under the lock). */
    vsoc_store_t *s2 = open_ok(path);
    for (int i = 0; i < 20; i++) {
        char uid[16];
        snprintf(uid, sizeof uid, "x%d", i);
        put_alert(i % 2 ? s2 : s, uid, T0 + i, 1);
    }
    vsoc_audit_report_t r;
    ASSERT_EQ(vsoc_store_audit_verify(s2, NULL, &r), 0);
    ASSERT_EQ(r.rows, audit_rows(s));
    /* WAL: a reader is not blocked by a writer's open transaction, and does not see it. */
    ASSERT_EQ(vsoc_store_begin(s), 0);
    put_alert(s, "lock", T0, 1);
    ASSERT_EQ(raw_int(db, "SELECT count(*) FROM alerts WHERE uid='lock'"), 0);
    ASSERT_EQ(vsoc_store_commit(s), 0);
    vsoc_store_close(s2);
    sqlite3_close(db);
    vsoc_store_close(s);
}

static void test_prefix(void)
{
    vsoc_store_t *s = open_ok(":memory:");
    vsoc_incident_t a, b, got;
    incident(&a, "abcdef01-1111-8000-8000-000000000000", VIN, T0);
    incident(&b, "abcdef01-2222-8000-8000-000000000000", VIN, T0 + 1);
    ASSERT_EQ(vsoc_store_put_incident(s, &a, NULL, "incident.opened", "vsoc", T0), 0);
    ASSERT_EQ(vsoc_store_put_incident(s, &b, NULL, "incident.opened", "vsoc", T0), 0);
    ASSERT_EQ(vsoc_store_get_incident(s, "abcdef01-1", &got), 0);
    ASSERT_STREQ(got.id, a.id);
    ASSERT_EQ(vsoc_store_get_incident(s, "ABCDEF01-2222", &got), 0);
    ASSERT_STREQ(got.id, b.id);
    ASSERT_EQ(vsoc_store_get_incident(s, a.id, &got), 0);
    ASSERT_STREQ(got.id, a.id);
    ASSERT_EQ(vsoc_store_get_incident(s, "abcdef01", &got), VSOC_EINVAL);
    ASSERT(strstr(vsoc_store_errmsg(s), "ambiguous") != NULL);
    ASSERT_EQ(vsoc_store_get_incident(s, "abcdef0", &got), VSOC_EINVAL);
    ASSERT(strstr(vsoc_store_errmsg(s), "too short") != NULL);
    ASSERT_EQ(vsoc_store_get_incident(s, "abcdef02", &got), VSOC_ENOENT);
    ASSERT_EQ(vsoc_store_get_incident(s, "abcdef01-1111-8000-8000-0000000000001", &got),
              VSOC_ENOENT);
    vsoc_command_t c;
    ASSERT_EQ(vsoc_store_get_command(s, "abcdef01", &c, NULL), VSOC_ENOENT);
    vsoc_store_close(s);
}

/* ---- the audit chain ---------------------------------------------------------------------- */

static void test_audit_hash(void)
{
    /* Known answers, computed independently (Python hashlib over the documented layout). */
    char h1[65], h2[65];
    ASSERT_EQ(vsoc_store_audit_hash(1, T0, "vsoc", "alert.raised", "a1",
                                    "rule r.one, level high, vin V1",
                                    ZERO_H, h1),
              0);
    ASSERT_STREQ(h1, "a94534bac46a87e0b369016bf93affa023c5431bb1dc4c5f7c993ea5915254d4");
    ASSERT_EQ(vsoc_store_audit_hash(2, -5, "alice", "incident.resolved",
                                    "0b9a3c2e-6f1d-8e8a-9c47-2d5e8f1a7b30", NULL, h1, h2),
              0);
    ASSERT_STREQ(h2, "b09cda4401161a18cf73190410f3e6d33bbe85926fcb238f00757bb7bae56026");

    /* The store writes exactly those rows. */
    vsoc_store_t *s = open_ok(":memory:");
    ASSERT_EQ(vsoc_store_audit(s, "vsoc", "alert.raised", "a1", "rule r.one, level high, vin V1",
                               T0),
              0);
    ASSERT_EQ(vsoc_store_audit(s, "alice", "incident.resolved",
                               "0b9a3c2e-6f1d-8e8a-9c47-2d5e8f1a7b30", NULL, -5),
              0);
    vsoc_audit_report_t r;
    ASSERT_EQ(vsoc_store_audit_verify(s, NULL, &r), 0);
    ASSERT_EQ(r.rows, 2);
    ASSERT_EQ(r.first_bad, 0);
    ASSERT_STREQ(r.head, h2);
    vsoc_store_close(s);
}

/* A store with rows 1..n in its audit log, closed. */
static void make_chain(const char *path, int n)
{
    unlink(path);
    vsoc_store_t *s = open_ok(path);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    for (int i = 1; i <= n; i++) {
        char uid[16];
        snprintf(uid, sizeof uid, "u%d", i);
        put_alert(s, uid, T0 + i, 1);
    }
    ASSERT_EQ(vsoc_store_commit(s), 0);
    vsoc_audit_report_t r;
    ASSERT_EQ(vsoc_store_audit_verify(s, NULL, &r), 0);
    ASSERT_EQ(r.rows, n);
    vsoc_store_close(s);
}

static int verify_file(const char *path, const char *head, vsoc_audit_report_t *r)
{
    vsoc_store_t *s = open_ok(path);
    int rc = vsoc_store_audit_verify(s, head, r);
    if (rc < 0)
        TEST_FAIL_("verify %s: %s", path, vsoc_store_errmsg(s));
    vsoc_store_close(s);
    return rc;
}

static void drop_triggers(sqlite3 *db)
{
    raw_exec(db, "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete");
}

/* Runs sql on the store at path as anyone with the sqlite3 shell could (dropping the
 * append-only triggers first when drop), then expects verify to name row first_bad with a
 * problem that contains problem. */
static void expect_tampered(const char *path, int drop, const char *sql, int64_t first_bad,
                            const char *problem, vsoc_audit_report_t *r)
{
    sqlite3 *db = raw_open(path);
    if (drop)
        drop_triggers(db);
    raw_exec(db, sql);
    sqlite3_close(db);
    ASSERT_EQ(verify_file(path, NULL, r), 1);
    ASSERT_EQ(r->first_bad, first_bad);
    if (!strstr(r->problem, problem))
        TEST_FAIL_("after %s: problem '%s' does not say '%s'", sql, r->problem, problem);
}

/* The hash of audit row seq of the store at path into out (65 bytes). */
static void chain_hash(const char *path, int seq, char *out)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT hash FROM audit WHERE seq=%d", seq);
    sqlite3 *db = raw_open(path);
    raw_text(db, sql, out, 65);
    sqlite3_close(db);
}

static void test_audit_tamper(void)
{
    char path[128];
    vsoc_audit_report_t r;
    path_in(path, sizeof path, "audit.db");

    /* The triggers stop UPDATE and DELETE. */
    make_chain(path, 6);
    sqlite3 *db = raw_open(path);
    char *msg = NULL;
    ASSERT(sqlite3_exec(db, "UPDATE audit SET detail='x' WHERE seq=3", NULL, NULL, &msg) !=
           SQLITE_OK);
    ASSERT(msg && strstr(msg, "append-only"));
    sqlite3_free(msg);
    msg = NULL;
    ASSERT(sqlite3_exec(db, "DELETE FROM audit WHERE seq=3", NULL, NULL, &msg) != SQLITE_OK);
    ASSERT(msg && strstr(msg, "append-only"));
    sqlite3_free(msg);
    ASSERT_EQ(raw_int(db, "SELECT count(*) FROM audit"), 6);
    sqlite3_close(db);

    /* Changed: a detail rewritten with the sqlite3 shell. */
    expect_tampered(path, 1, "UPDATE audit SET detail='nothing to see' WHERE seq=3", 3,
                    "row 3 was changed", &r);
    ASSERT_EQ(r.rows, 3);

    /* Changed behind a NUL byte: the text before it still hashes the same, the column
     * does not. And a number where text belongs. */
    make_chain(path, 6);
    expect_tampered(path, 1, "UPDATE audit SET actor = actor || char(0) || 'mallory' WHERE seq=2",
                    2, "row 2 was changed", &r);
    make_chain(path, 6);
    expect_tampered(path, 1, "UPDATE audit SET detail = 5 WHERE seq=2", 2, "row 2 was changed",
                    &r);

    /* Changed and rehashed: the next row no longer chains. */
    make_chain(path, 6);
    char prev[65], h[65], sql[512];
    chain_hash(path, 2, prev);
    ASSERT_EQ(vsoc_store_audit_hash(3, T0 + 3, "vsoc", "alert.raised", "u3", "forged", prev, h),
              0);
    snprintf(sql, sizeof sql,
             "UPDATE audit SET actor='vsoc', event='alert.raised', subject='u3', detail='forged',"
             " time_us=%lld, hash='%s' WHERE seq=3",
             (long long)(T0 + 3), h);
    expect_tampered(path, 1, sql, 4, "row 4", &r);

    /* Deleted: a middle row ... */
    make_chain(path, 6);
    expect_tampered(path, 1, "DELETE FROM audit WHERE seq=4", 4, "row 4 was deleted", &r);
    /* ... and several, including the first. */
    expect_tampered(path, 0, "DELETE FROM audit WHERE seq IN (1,2)", 1, "rows 1..2 were deleted",
                    &r);

    /* Inserted: a forged row at the end whose hash is right for its content but whose
     * prev_hash is not the head (the forger did not know it). INSERT needs no dropped
     * trigger. */
    make_chain(path, 6);
    ASSERT_EQ(vsoc_store_audit_hash(7, T0 + 7, "mallory", "command.acked", "c1", "", ZERO_H, h),
              0);
    snprintf(sql, sizeof sql,
             "INSERT INTO audit VALUES(7, %lld, 'mallory', 'command.acked', 'c1', '', '%s', '%s')",
             (long long)(T0 + 7), ZERO_H, h);
    expect_tampered(path, 0, sql, 7, "row 7 was inserted", &r);

    /* Inserted with the right prev_hash but a made-up hash. */
    make_chain(path, 6);
    chain_hash(path, 6, prev);
    snprintf(sql, sizeof sql,
             "INSERT INTO audit VALUES(7, %lld, 'mallory', 'command.acked', 'c1', '', '%s', '%s')",
             (long long)(T0 + 7), prev, ZERO_H);
    expect_tampered(path, 0, sql, 7, "row 7 was changed", &r);

    /* Inserted before the first row (seq 0). */
    make_chain(path, 3);
    snprintf(sql, sizeof sql,
             "INSERT INTO audit VALUES(0, 0, 'mallory', 'x', 'y', '', '%s', '%s')", ZERO_H,
             ZERO_H);
    expect_tampered(path, 0, sql, 1, "inserted before row 1", &r);

    /* expect_head: a head recorded elsewhere finds a cut tail, which alone verifies. */
    make_chain(path, 5);
    ASSERT_EQ(verify_file(path, NULL, &r), 0);
    char head[65];
    memcpy(head, r.head, sizeof head);
    vsoc_store_t *s = open_ok(path);
    ASSERT_EQ(vsoc_store_audit(s, "vsoc", "replay.started", "", "more", T0 + 100), 0);
    ASSERT_EQ(vsoc_store_audit(s, "vsoc", "replay.done", "", "more", T0 + 101), 0);
    vsoc_store_close(s);
    ASSERT_EQ(verify_file(path, head, &r), 0); /* continues past the head: fine */
    ASSERT_EQ(r.rows, 7);
    for (char *p = head; *p; p++) /* upper case is the same hash */
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
    ASSERT_EQ(verify_file(path, head, &r), 0);
    db = raw_open(path);
    drop_triggers(db);
    raw_exec(db, "DELETE FROM audit WHERE seq >= 5");
    sqlite3_close(db);
    ASSERT_EQ(verify_file(path, NULL, &r), 0); /* a clean cut looks intact ... */
    ASSERT_EQ(r.rows, 4);
    ASSERT_EQ(verify_file(path, head, &r), 1); /* ... unless the head was kept */
    ASSERT_EQ(r.first_bad, 5);
    ASSERT(strstr(r.problem, "does not reach the recorded head") != NULL);
    s = open_ok(path);
    ASSERT_EQ(vsoc_store_audit_verify(s, "not-a-hash", &r), VSOC_EINVAL);
    vsoc_store_close(s);

    /* An empty log verifies, with the zero head. */
    s = open_ok(":memory:");
    ASSERT_EQ(vsoc_store_audit_verify(s, ZERO_H, &r), 0);
    ASSERT_EQ(r.rows, 0);
    ASSERT_STREQ(r.head, ZERO_H);
    vsoc_store_close(s);
}

/* Throughput of put_alert in one transaction: reported, not asserted. */
static void test_speed(void)
{
    char path[128];
    path_in(path, sizeof path, "speed.db");
    vsoc_store_t *s = open_ok(path);
    const int n = 20000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    for (int i = 0; i < n; i++) {
        char uid[48];
        snprintf(uid, sizeof uid, "%08x-0000-8000-8000-%012d", (unsigned)i * 2654435761u, i);
        put_alert(s, uid, T0 + i, 1);
    }
    ASSERT_EQ(vsoc_store_commit(s), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    fprintf(stderr, "put_alert: %d alerts in one transaction in %.3f s (%.0f alerts/s)\n", n,
            secs, n / (secs > 0 ? secs : 1e-9));
    vsoc_audit_report_t r;
    clock_gettime(CLOCK_MONOTONIC, &a);
    ASSERT_EQ(vsoc_store_audit_verify(s, NULL, &r), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    ASSERT_EQ(r.rows, n);
    fprintf(stderr, "audit verify: %lld rows in %.3f s\n", (long long)r.rows, secs);
    vsoc_store_close(s);
}

static void cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

typedef struct ck_ctx {
    int n;
    char seen[8][64];
    int64_t next[8];
} ck_ctx_t;

static int ck_offset(void *ctx, const char *topic, int32_t partition, int64_t next)
{
    ck_ctx_t *c = ctx;
    snprintf(c->seen[c->n], sizeof c->seen[0], "%s/%d", topic, (int)partition);
    c->next[c->n++] = next;
    return 0;
}

static int ck_state(void *ctx, const char *vin, size_t vinlen, const void *state, size_t n)
{
    ck_ctx_t *c = ctx;
    snprintf(c->seen[c->n], sizeof c->seen[0], "%.*s=%.*s", (int)vinlen, vin, (int)n,
             (const char *)state);
    c->next[c->n++] = (int64_t)n;
    return 0;
}

typedef struct blob_seen {
    int calls;
    size_t n;
    unsigned char p[16];
} blob_seen_t;

static int got_state(void *ctx, const void *state, size_t n)
{
    blob_seen_t *b = ctx;
    b->calls++;
    b->n = n;
    memcpy(b->p, state, n < sizeof b->p ? n : sizeof b->p);
    return 0;
}

/* The service's checkpoint: offsets and engine state per vehicle, replaced in place, per
 * partition, and state by name; a store of schema 1 is migrated to have them. */
static void test_checkpoint(void)
{
    char path[128];
    path_in(path, sizeof path, "checkpoint.db");
    /* A version-1 store, as vsoc made it before the service existed. */
    vsoc_store_t *s = open_ok(path);
    put_alert(s, "c1", T0, 1);
    vsoc_store_close(s);
    sqlite3 *db = raw_open(path);
    raw_exec(db, "DROP TABLE stream_offsets; DROP TABLE engine_state; DROP TABLE service_state;"
                 " PRAGMA user_version=1");
    sqlite3_close(db);
    s = open_ok(path);
    db = raw_open(path);
    ASSERT_EQ(raw_int(db, "PRAGMA user_version"), VSOC_STORE_SCHEMA_VERSION);
    ASSERT_EQ(raw_int(db, "SELECT count(*) FROM alerts"), 1);
    sqlite3_close(db);

    ASSERT_EQ(vsoc_store_begin(s), 0);
    ASSERT_EQ(vsoc_store_put_offset(s, "vsoc.events", 3, 100), 0);
    ASSERT_EQ(vsoc_store_put_offset(s, "vsoc.events", 0, 7), 0);
    ASSERT_EQ(vsoc_store_put_offset(s, "vsoc.events", 3, 250), 0); /* replaced */
    ASSERT_EQ(vsoc_store_put_engine_state(s, "VIN1", 4, "vsoc.events", 3, "aaa", 3, T0), 0);
    ASSERT_EQ(vsoc_store_put_engine_state(s, "VIN2", 4, "vsoc.events", 3, "b\0b", 3, T0), 0);
    ASSERT_EQ(vsoc_store_put_engine_state(s, "VIN3", 4, "vsoc.events", 0, "c", 1, T0), 0);
    ASSERT_EQ(vsoc_store_put_engine_state(s, "VIN1", 4, "vsoc.events", 3, "AAAA", 4, T0 + 1),
              0);
    ASSERT_EQ(vsoc_store_commit(s), 0);

    ck_ctx_t c = {0};
    ASSERT_EQ(vsoc_store_each_offset(s, ck_offset, &c), 0);
    ASSERT_EQ(c.n, 2);
    ASSERT_STREQ(c.seen[0], "vsoc.events/0");
    ASSERT_EQ(c.next[0], 7);
    ASSERT_STREQ(c.seen[1], "vsoc.events/3");
    ASSERT_EQ(c.next[1], 250);

    memset(&c, 0, sizeof c);
    ASSERT_EQ(vsoc_store_each_engine_state(s, "vsoc.events", 3, ck_state, &c), 0);
    ASSERT_EQ(c.n, 2);
    ASSERT_STREQ(c.seen[0], "VIN1=AAAA");
    ASSERT_EQ(c.next[1], 3); /* a NUL inside a blob is kept */

    ASSERT_EQ(vsoc_store_drop_engine_state(s, "vsoc.events", 3), 0);
    memset(&c, 0, sizeof c);
    ASSERT_EQ(vsoc_store_each_engine_state(s, "vsoc.events", 3, ck_state, &c), 0);
    ASSERT_EQ(c.n, 0);
    ASSERT_EQ(vsoc_store_each_engine_state(s, "vsoc.events", 0, ck_state, &c), 0);
    ASSERT_EQ(c.n, 1);
    ASSERT_STREQ(c.seen[0], "VIN3=c");

    /* State by name: none, then kept (NUL bytes and all), then replaced; rolled back with
     * its transaction. */
    blob_seen_t b = {0};
    ASSERT_EQ(vsoc_store_get_service_state(s, "fleet", got_state, &b), 0);
    ASSERT_EQ(b.calls, 0);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    ASSERT_EQ(vsoc_store_put_service_state(s, "fleet", "x\0y", 3, T0), 0);
    ASSERT_EQ(vsoc_store_commit(s), 0);
    ASSERT_EQ(vsoc_store_get_service_state(s, "fleet", got_state, &b), 0);
    ASSERT_EQ(b.calls, 1);
    ASSERT_EQ(b.n, 3);
    ASSERT(!memcmp(b.p, "x\0y", 3));
    ASSERT_EQ(vsoc_store_begin(s), 0);
    ASSERT_EQ(vsoc_store_put_service_state(s, "fleet", "zz", 2, T0 + 1), 0);
    vsoc_store_rollback(s);
    memset(&b, 0, sizeof b);
    ASSERT_EQ(vsoc_store_get_service_state(s, "fleet", got_state, &b), 0);
    ASSERT_EQ(b.n, 3);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    ASSERT_EQ(vsoc_store_put_service_state(s, "fleet", "zz", 2, T0 + 1), 0);
    ASSERT_EQ(vsoc_store_commit(s), 0);
    memset(&b, 0, sizeof b);
    ASSERT_EQ(vsoc_store_get_service_state(s, "fleet", got_state, &b), 0);
    ASSERT_EQ(b.n, 2);
    ASSERT(!memcmp(b.p, "zz", 2));
    ASSERT_EQ(vsoc_store_get_service_state(s, "other", got_state, &b), 0);
    ASSERT_EQ(b.calls, 1); /* not called again: nothing under that name */
    vsoc_store_close(s);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vsoc-store-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        TEST_FAIL_("mkdtemp %s failed", tmpdir);
    atexit(cleanup);
    test_open();
    test_alerts();
    test_incidents();
    test_responder_records();
    test_approvals_acks();
    test_transactions();
    test_prefix();
    test_audit_hash();
    test_audit_tamper();
    test_speed();
    test_checkpoint();
    printf("test_store: ok\n");
    return 0;
}
