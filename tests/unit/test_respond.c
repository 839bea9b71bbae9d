/* test_respond.c: playbook runs as state machines: triggers, approvals (one and two
 * people), signing and sending after the change is reported, acks, retries, timeouts,
 * escalation, the vehicle's deferral, cooldown, the blast-radius cap, dry runs, and
 * resuming from restored records. Time is given by the test. */
#include "respond.h"
#include "test.h"

#define S 1000000LL
#define VIN "1VSCTEST000000001"
#define T0 (1795600800LL * S) /* 2026-11-25T10:00:00Z */

static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MC4CAQAwBQYDK2VwBCIEIDHNRVIf0CiLNdTpr41OSHlz6e6/64ffoRGzOxvl8ItQ\n"
                              "-----END PRIVATE KEY-----\n";

static const char playbooks_yaml[] =
    "id: contain\n"
    "title: Contain\n"
    "trigger: {rules: ['vsoc.can.*'], min_level: high, cooldown: 30m}\n"
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
    "    retries: 1\n"
    "    expires: 10m\n"
    "    on_failure: escalate\n"
    "  - id: tell\n"
    "    action: notify\n"
    "    args: {channel: soc-oncall}\n"
    "---\n"
    "id: two\n"
    "title: Two people\n"
    "trigger: {rules: ['vsoc.uds.*']}\n"
    "steps:\n"
    "  - id: block\n"
    "    action: quarantine\n"
    "    args: {segment: diagnostics, mode: block_external}\n"
    "    ttl: 1h\n"
    "    approval: two_person\n"
    "    vehicle_state: {speed_kph: {lte: 0}}\n"
    "---\n"
    "id: capped\n"
    "title: Capped\n"
    "trigger: {rules: ['vsoc.ids.*'], min_level: low}\n"
    "steps:\n"
    "  - id: logs\n"
    "    action: collect_logs\n"
    "limits: {max_vehicles_per_hour: 1}\n";

#define MAX_LOG 256

typedef struct rec {
    char events[MAX_LOG][40];
    size_t n;
    int sent_after_change; /* each send saw its command.sent/resent change first */
    int sends;
    char last_envelope[16384];
    char last_cmd[37];
    int refuse_send;
    int fail_store;
} rec_t;

static int on_change(void *ctx, const vsoc_change_t *c)
{
    rec_t *r = ctx;
    if (r->fail_store)
        return -1;
    ASSERT(c->run != NULL);
    ASSERT(c->detail && *c->detail);
    if (r->n < MAX_LOG)
        snprintf(r->events[r->n++], sizeof r->events[0], "%s", c->event);
    return 0;
}

static int on_send(void *ctx, const vsoc_command_t *cmd, const char *env, size_t n)
{
    rec_t *r = ctx;
    ASSERT(r->n > 0);
    const char *last = r->events[r->n - 1];
    if (!strcmp(last, "command.sent") || !strcmp(last, "command.resent"))
        r->sent_after_change++;
    r->sends++;
    ASSERT(n < sizeof r->last_envelope);
    memcpy(r->last_envelope, env, n);
    r->last_envelope[n] = 0;
    snprintf(r->last_cmd, sizeof r->last_cmd, "%s", cmd->cmd_id);
    return r->refuse_send ? -1 : 0;
}

static int has(const rec_t *r, const char *ev)
{
    int k = 0;
    for (size_t i = 0; i < r->n; i++)
        k += !strcmp(r->events[i], ev);
    return k;
}

static vsoc_incident_t incident(const char *id, const char *vin, int64_t t)
{
    vsoc_incident_t inc;
    memset(&inc, 0, sizeof inc);
    snprintf(inc.id, sizeof inc.id, "%s", id);
    snprintf(inc.vin, sizeof inc.vin, "%s", vin);
    inc.level = VSOC_LEVEL_HIGH;
    inc.first_us = inc.last_us = t;
    return inc;
}

static vsoc_ack_t ack_for(const vsoc_command_t *c, vsoc_ack_status_t st, const char *reason)
{
    vsoc_ack_t a;
    memset(&a, 0, sizeof a);
    a.v = 1;
    snprintf(a.cmd_id, sizeof a.cmd_id, "%s", c->cmd_id);
    snprintf(a.vin, sizeof a.vin, "%s", c->vin);
    a.seq = c->seq;
    a.status = st;
    snprintf(a.reason, sizeof a.reason, "%s", reason);
    return a;
}

typedef struct fixture {
    vsoc_playbooks_t *pbs;
    vsoc_key_t *key;
    vsoc_responder_t *r;
    rec_t rec;
} fixture_t;

static void setup(fixture_t *f, int dry_run, int approve_all)
{
    memset(f, 0, sizeof *f);
    vsoc_diags_t *d = vsoc_diags_new();
    f->pbs = vsoc_playbooks_load_string("test.yml", playbooks_yaml, strlen(playbooks_yaml), d);
    if (vsoc_diags_errors(d))
        vsoc_diags_print(d, stderr);
    ASSERT_EQ(vsoc_diags_errors(d), 0);
    ASSERT_EQ(vsoc_playbooks_count(f->pbs), 3);
    vsoc_diags_free(d);
    char err[256];
    f->key = vsoc_key_from_pem(key_pem, strlen(key_pem), 1, "vsoc-test", err, sizeof err);
    ASSERT(f->key);
    vsoc_responder_opts_t o = {.playbooks = f->pbs, .key = f->key, .on_change = on_change,
                               .send = on_send, .ctx = &f->rec, .dry_run = dry_run,
                               .approve_all = approve_all};
    f->r = vsoc_responder_new(&o, err, sizeof err);
    ASSERT(f->r);
}

static void teardown(fixture_t *f)
{
    vsoc_responder_free(f->r);
    vsoc_key_free(f->key);
    vsoc_playbooks_free(f->pbs);
}

static const vsoc_command_t *cmd_of(fixture_t *f, const char *run_playbook, const char *step,
                                    const char *incident_id)
{
    /* Commands are named by content: derive the id the responder derives. */
    char run_id[37], cmd_id[37];
    const char *rp[] = {"run", run_playbook, incident_id};
    vsoc_uuid_derive(rp, 3, run_id);
    const char *cp[] = {"command", run_id, step};
    vsoc_uuid_derive(cp, 3, cmd_id);
    return vsoc_responder_command(f->r, cmd_id);
}

static void test_full_loop(void)
{
    fixture_t f;
    setup(&f, 0, 0);
    vsoc_incident_t inc = incident("inc-1", VIN, T0);
    /* Below min_level or outside the globs: nothing. */
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.can.x", VSOC_LEVEL_MEDIUM, T0), 0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.j1939.x", VSOC_LEVEL_HIGH, T0), 0);
    ASSERT_EQ(f.rec.n, 0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0), 1);
    /* One run per playbook and incident. */
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0), 0);
    ASSERT_EQ(has(&f.rec, "run.started"), 1);
    const vsoc_command_t *logs = cmd_of(&f, "contain", "evidence", "inc-1");
    ASSERT(logs);
    ASSERT_EQ(logs->state, VSOC_CMD_SENT);
    ASSERT_EQ(logs->seq, 1);
    ASSERT_EQ(f.rec.sends, 1);
    ASSERT_EQ(f.rec.sent_after_change, 1);
    /* The envelope as sent parses and verifies for this vehicle. */
    vsoc_envelope_t e;
    char why[256];
    ASSERT_EQ(vsoc_envelope_parse(f.rec.last_envelope, strlen(f.rec.last_envelope), &e, why,
                                  sizeof why),
              0);
    const vsoc_key_t *trusted[] = {f.key};
    vsoc_envelope_check_t chk = {.vin = VIN, .now = T0 / S, .last_seq = 0};
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &chk), VSOC_ENVELOPE_OK);
    ASSERT_STREQ(e.action, "collect_logs");
    ASSERT_STREQ(e.args, "{\"minutes\":10}");
    ASSERT_STREQ(e.incident_id, "inc-1");
    ASSERT_STREQ(logs->envelope, f.rec.last_envelope);

    /* Applied: the quarantine waits for a person. */
    vsoc_ack_t a = ack_for(logs, VSOC_ACK_APPLIED, "");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 2 * S), 0);
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 2 * S), VSOC_EINVAL); /* duplicate */
    const vsoc_command_t *q = cmd_of(&f, "contain", "isolate", "inc-1");
    ASSERT(q);
    ASSERT_EQ(q->state, VSOC_CMD_PENDING_APPROVAL);
    ASSERT_EQ(f.rec.sends, 1);
    ASSERT(strstr(q->args, "\"vehicle_state\":{\"speed_kph\":{\"lte\":0}}") != NULL);
    char err[256];
    ASSERT_EQ(vsoc_responder_approve(f.r, "no-such", "alice", T0, err, sizeof err),
              VSOC_ENOENT);
    char qid[37];
    strcpy(qid, q->cmd_id);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "alice", T0 + 60 * S, err, sizeof err), 0);
    q = vsoc_responder_command(f.r, qid);
    ASSERT_EQ(q->state, VSOC_CMD_SENT);
    ASSERT_EQ(q->seq, 2);
    ASSERT_EQ(q->expires_at, T0 / S + 60 + 600);
    ASSERT_STREQ(q->approved_by[0], "alice");
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "bob", T0 + 61 * S, err, sizeof err),
              VSOC_EINVAL);
    /* Deferred by the vehicle (moving), then applied when it stops. */
    a = ack_for(q, VSOC_ACK_DEFERRED, "vehicle_state: speed 50.0 kph, needs <= 0");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 62 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_DEFERRED);
    /* Deferral lasts until expiry, not the ack timeout. */
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + 300 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_DEFERRED);
    a = ack_for(vsoc_responder_command(f.r, qid), VSOC_ACK_APPLIED, "");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 301 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_ACKED);
    ASSERT_EQ(has(&f.rec, "notify"), 1);
    ASSERT_EQ(has(&f.rec, "run.done"), 1);
    /* Cooldown: another incident of the same vehicle 10 minutes later starts nothing. */
    vsoc_incident_t inc2 = incident("inc-2", VIN, T0 + 600 * S);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc2, "vsoc.can.flood", VSOC_LEVEL_HIGH,
                                      T0 + 600 * S),
              0);
    /* The ttl ends on the vehicle: released. */
    a = ack_for(vsoc_responder_command(f.r, qid), VSOC_ACK_RELEASED, "ttl");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 7500 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_RELEASED);
    ASSERT_EQ(f.rec.sent_after_change, f.rec.sends);
    ASSERT_EQ(vsoc_responder_open_commands(f.r), 0);

    /* ... but after the cooldown, it does. */
    vsoc_incident_t inc3 = incident("inc-3", VIN, T0 + 7600 * S);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc3, "vsoc.can.flood", VSOC_LEVEL_HIGH,
                                      T0 + 7600 * S),
              1);
    ASSERT_EQ(cmd_of(&f, "contain", "evidence", "inc-3")->seq, 3);
    teardown(&f);
}

static void test_timeouts_and_escalation(void)
{
    fixture_t f;
    setup(&f, 0, 0);
    vsoc_incident_t inc = incident("inc-t", VIN, T0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0), 1);
    const vsoc_command_t *logs = cmd_of(&f, "contain", "evidence", "inc-t");
    char lid[37];
    strcpy(lid, logs->cmd_id);
    /* collect_logs has no retries: one ack timeout and it has failed, which aborts. */
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + 59 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, lid)->state, VSOC_CMD_SENT);
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + 60 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, lid)->state, VSOC_CMD_TIMED_OUT);
    ASSERT_EQ(has(&f.rec, "run.failed"), 1);
    ASSERT(cmd_of(&f, "contain", "isolate", "inc-t") == NULL);
    teardown(&f);

    /* Approval timeout: escalated, not sent; approving later still sends it; then one
     * retry and a timeout, which escalates (on_failure) and fails the run. */
    setup(&f, 0, 0);
    inc = incident("inc-e", VIN, T0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0), 1);
    vsoc_ack_t a = ack_for(cmd_of(&f, "contain", "evidence", "inc-e"), VSOC_ACK_APPLIED, "");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + S), 0);
    const vsoc_command_t *q = cmd_of(&f, "contain", "isolate", "inc-e");
    char qid[37];
    strcpy(qid, q->cmd_id);
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + S + 15 * 60 * S - 1), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_PENDING_APPROVAL);
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + S + 15 * 60 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_ESCALATED);
    ASSERT_EQ(has(&f.rec, "escalate"), 1);
    ASSERT_EQ(f.rec.sends, 1);
    char err[256];
    int64_t t = T0 + 20 * 60 * S;
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "carol", t, err, sizeof err), 0);
    ASSERT_EQ(f.rec.sends, 2);
    char first[16384];
    strcpy(first, f.rec.last_envelope);
    ASSERT_EQ(vsoc_responder_tick(f.r, t + 60 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_SENT);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->attempts, 2);
    ASSERT_EQ(f.rec.sends, 3);
    ASSERT_STREQ(f.rec.last_envelope, first); /* a resend is the same envelope */
    ASSERT_EQ(vsoc_responder_tick(f.r, t + 120 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_TIMED_OUT);
    ASSERT_EQ(has(&f.rec, "escalate"), 2);
    ASSERT_EQ(has(&f.rec, "run.failed"), 1);
    ASSERT_EQ(has(&f.rec, "notify"), 0);
    ASSERT_EQ(f.rec.sent_after_change, f.rec.sends);
    teardown(&f);
}

static void test_two_person_reject_and_vehicle_reject(void)
{
    fixture_t f;
    setup(&f, 0, 0);
    vsoc_incident_t inc = incident("inc-2p", VIN, T0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.uds.bruteforce", VSOC_LEVEL_MEDIUM, T0),
              1);
    const vsoc_command_t *q = cmd_of(&f, "two", "block", "inc-2p");
    char qid[37], err[256];
    strcpy(qid, q->cmd_id);
    ASSERT_EQ(q->state, VSOC_CMD_PENDING_APPROVAL);
    /* No approval_timeout given: the default of 15m applies. */
    ASSERT_EQ(q->deadline_us, T0 + 15 * 60 * S);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "alice", T0 + S, err, sizeof err), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_PENDING_APPROVAL);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "alice", T0 + 2 * S, err, sizeof err),
              VSOC_EINVAL);
    ASSERT(strstr(err, "second") != NULL);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "", T0 + 2 * S, err, sizeof err), VSOC_EINVAL);
    ASSERT_EQ(has(&f.rec, "command.approval"), 1);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "bob", T0 + 3 * S, err, sizeof err), 0);
    q = vsoc_responder_command(f.r, qid);
    ASSERT_EQ(q->state, VSOC_CMD_SENT);
    ASSERT_STREQ(q->approved_by[1], "bob");
    /* The vehicle refuses it: the run aborts (default on_failure). */
    vsoc_ack_t a = ack_for(q, VSOC_ACK_REJECTED, "replayed");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 4 * S), 0);
    q = vsoc_responder_command(f.r, qid);
    ASSERT_EQ(q->state, VSOC_CMD_REJECTED);
    ASSERT_STREQ(q->reason, "vehicle: replayed");
    ASSERT_EQ(has(&f.rec, "run.failed"), 1);
    /* A person rejects a pending command. */
    vsoc_incident_t inc2 = incident("inc-rj", "OTHERVIN000000001", T0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc2, "vsoc.uds.x", VSOC_LEVEL_MEDIUM, T0), 1);
    q = cmd_of(&f, "two", "block", "inc-rj");
    strcpy(qid, q->cmd_id);
    ASSERT_EQ(vsoc_responder_reject(f.r, qid, "dave", "false positive", T0 + S, err,
                                    sizeof err),
              0);
    ASSERT_STREQ(vsoc_responder_command(f.r, qid)->reason, "rejected by dave: false positive");
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "erin", T0 + S, err, sizeof err), VSOC_EINVAL);
    ASSERT_EQ(has(&f.rec, "run.failed"), 2);
    teardown(&f);
}

static void test_cap_dry_run_approve_all(void)
{
    fixture_t f;
    setup(&f, 0, 0);
    vsoc_incident_t a = incident("inc-a", "VINA", T0), b = incident("inc-b", "VINB", T0 + S);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &a, "vsoc.ids.x", VSOC_LEVEL_LOW, T0), 1);
    /* A second vehicle within the hour: held back by the cap, and people are told. */
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &b, "vsoc.ids.x", VSOC_LEVEL_LOW, T0 + S), 1);
    ASSERT_EQ(has(&f.rec, "run.capped"), 1);
    ASSERT_EQ(has(&f.rec, "escalate"), 1);
    ASSERT(cmd_of(&f, "capped", "logs", "inc-b") == NULL);
    /* An hour later there is room again. */
    vsoc_incident_t c = incident("inc-c", "VINC", T0 + 3601 * S);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &c, "vsoc.ids.x", VSOC_LEVEL_LOW, T0 + 3601 * S), 1);
    ASSERT(cmd_of(&f, "capped", "logs", "inc-c") != NULL);
    teardown(&f);

    setup(&f, 1, 0);
    vsoc_incident_t d = incident("inc-d", VIN, T0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &d, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0), 1);
    ASSERT_EQ(f.rec.sends, 0);
    ASSERT_EQ(has(&f.rec, "command.dry_run"), 2);
    ASSERT_EQ(has(&f.rec, "run.done"), 1);
    const vsoc_command_t *q = cmd_of(&f, "contain", "isolate", "inc-d");
    ASSERT_EQ(q->state, VSOC_CMD_DRY_RUN);
    ASSERT(q->envelope && strstr(q->envelope, "\"sig\":"));
    teardown(&f);

    setup(&f, 0, 1);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &d, "vsoc.uds.x", VSOC_LEVEL_HIGH, T0), 1);
    q = cmd_of(&f, "two", "block", "inc-d");
    ASSERT_EQ(q->state, VSOC_CMD_SENT);
    ASSERT_STREQ(q->approved_by[0], "approve-all");
    teardown(&f);
}

static void test_restore(void)
{
    fixture_t f;
    setup(&f, 0, 0);
    vsoc_incident_t inc = incident("inc-r", VIN, T0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0), 1);
    vsoc_command_t saved = *cmd_of(&f, "contain", "evidence", "inc-r");
    char env[16384];
    strcpy(env, saved.envelope);
    saved.envelope = env;
    char run_id[37];
    const char *rp[] = {"run", "contain", "inc-r"};
    vsoc_uuid_derive(rp, 3, run_id);
    vsoc_run_t run;
    memset(&run, 0, sizeof run);
    /* What a store gave back: the run as it was at the crash. */
    strcpy(run.id, run_id);
    strcpy(run.playbook, "contain");
    strcpy(run.incident_id, "inc-r");
    strcpy(run.vin, VIN);
    strcpy(run.rule_id, "vsoc.can.flood");
    run.started_us = run.updated_us = T0;
    teardown(&f);

    setup(&f, 0, 0);
    ASSERT_EQ(vsoc_responder_restore_run(f.r, &run), 0);
    ASSERT_EQ(vsoc_responder_restore_command(f.r, &saved), 0);
    ASSERT_EQ(vsoc_responder_restore_seq(f.r, VIN, 7), 0);
    /* The same alert again starts nothing: the run exists. */
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0), 0);
    ASSERT_EQ(vsoc_responder_in_flight(f.r), 1);
    /* No ack came while it was down: after the ack timeout the same envelope goes again. */
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + 61 * S), 0);
    ASSERT_EQ(f.rec.sends, 0); /* collect_logs has no retries: it times out instead */
    ASSERT_EQ(vsoc_responder_command(f.r, saved.cmd_id)->state, VSOC_CMD_TIMED_OUT);
    teardown(&f);

    setup(&f, 0, 0);
    ASSERT_EQ(vsoc_responder_restore_run(f.r, &run), 0);
    ASSERT_EQ(vsoc_responder_restore_command(f.r, &saved), 0);
    ASSERT_EQ(vsoc_responder_restore_seq(f.r, VIN, 7), 0);
    /* The ack that arrives after the restart moves the run on; the next command gets the
     * seq after the restored one. */
    vsoc_ack_t a = ack_for(&saved, VSOC_ACK_APPLIED, "");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 5 * S), 0);
    const vsoc_command_t *q = cmd_of(&f, "contain", "isolate", "inc-r");
    ASSERT(q);
    char err[256];
    ASSERT_EQ(vsoc_responder_approve(f.r, q->cmd_id, "alice", T0 + 6 * S, err, sizeof err), 0);
    ASSERT_EQ(cmd_of(&f, "contain", "isolate", "inc-r")->seq, 8);
    teardown(&f);

    /* A store that cannot keep a change stops the responder before anything is sent. */
    setup(&f, 0, 0);
    f.rec.fail_store = 1;
    ASSERT(vsoc_responder_on_alert(f.r, &inc, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0) < 0);
    ASSERT(vsoc_responder_error(f.r) != NULL);
    ASSERT_EQ(f.rec.sends, 0);
    teardown(&f);
}

static void test_review_fixes(void)
{
    fixture_t f;
    char err[256];
    /* Names are one person whatever their case or blanks. */
    setup(&f, 0, 0);
    vsoc_incident_t inc = incident("inc-n", VIN, T0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &inc, "vsoc.uds.x", VSOC_LEVEL_HIGH, T0), 1);
    const vsoc_command_t *q = cmd_of(&f, "two", "block", "inc-n");
    char qid[37];
    strcpy(qid, q->cmd_id);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "alice", T0 + S, err, sizeof err), 0);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, " ALICE ", T0 + S, err, sizeof err), VSOC_EINVAL);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "Alice", T0 + S, err, sizeof err), VSOC_EINVAL);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "al ice", T0 + S, err, sizeof err), VSOC_EINVAL);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "bob\n", T0 + S, err, sizeof err), VSOC_EINVAL);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_PENDING_APPROVAL);
    ASSERT_EQ(vsoc_responder_approve(f.r, qid, "Bob@SOC", T0 + S, err, sizeof err), 0);
    q = vsoc_responder_command(f.r, qid);
    ASSERT_EQ(q->state, VSOC_CMD_SENT);
    ASSERT_STREQ(q->approved_by[1], "bob@soc");
    /* A rejection the vehicle gives to messages it cannot authenticate, or an answer with
     * another seq, is not this command's answer. */
    vsoc_ack_t a = ack_for(q, VSOC_ACK_REJECTED, "malformed");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 2 * S), VSOC_EINVAL);
    a = ack_for(q, VSOC_ACK_REJECTED, "bad_signature");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 2 * S), VSOC_EINVAL);
    a = ack_for(q, VSOC_ACK_APPLIED, "");
    a.seq = 0;
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 2 * S), VSOC_ENOENT);
    a.seq = q->seq + 1;
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 2 * S), VSOC_ENOENT);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_SENT);
    ASSERT_EQ(has(&f.rec, "command.answer_ignored"), 2);
    /* No answer: timed out (no retries) ... then the vehicle comes back and applies it. */
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + 120 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_TIMED_OUT);
    a = ack_for(vsoc_responder_command(f.r, qid), VSOC_ACK_APPLIED, "");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 121 * S), 0);
    ASSERT_EQ(vsoc_responder_command(f.r, qid)->state, VSOC_CMD_ACKED);
    ASSERT_EQ(has(&f.rec, "command.acked_late"), 1);
    teardown(&f);

    /* One unanswered command per vehicle: a second run's command waits for the first's
     * answer, then goes with the next seq. */
    setup(&f, 0, 0);
    vsoc_incident_t i1 = incident("inc-s1", VIN, T0);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &i1, "vsoc.can.x", VSOC_LEVEL_HIGH, T0), 1);
    ASSERT_EQ(vsoc_responder_on_alert(f.r, &i1, "vsoc.ids.x", VSOC_LEVEL_HIGH, T0), 1);
    const vsoc_command_t *c1 = cmd_of(&f, "contain", "evidence", "inc-s1");
    const vsoc_command_t *c2 = cmd_of(&f, "capped", "logs", "inc-s1");
    ASSERT_EQ(c1->state, VSOC_CMD_SENT);
    ASSERT_EQ(c2->state, VSOC_CMD_QUEUED);
    ASSERT_EQ(f.rec.sends, 1);
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + S), 0);
    ASSERT_EQ(f.rec.sends, 1);
    a = ack_for(c1, VSOC_ACK_APPLIED, "");
    ASSERT_EQ(vsoc_responder_on_ack(f.r, &a, T0 + 2 * S), 0);
    ASSERT_EQ(vsoc_responder_tick(f.r, T0 + 3 * S), 0);
    c2 = cmd_of(&f, "capped", "logs", "inc-s1");
    ASSERT_EQ(c2->state, VSOC_CMD_SENT);
    ASSERT_EQ(c2->seq, 2);
    teardown(&f);
}

static void test_names(void)
{
    char n[VSOC_APPROVER_MAX + 1];
    ASSERT_EQ(vsoc_approver_normalize("  Alice.Smith@SOC  ", n), 0);
    ASSERT_STREQ(n, "alice.smith@soc");
    ASSERT_EQ(vsoc_approver_normalize("   ", n), -1);
    ASSERT_EQ(vsoc_approver_normalize("a;drop", n), -1);
    vsoc_cmd_state_t s;
    for (int i = 0; i <= VSOC_CMD_DRY_RUN; i++) {
        ASSERT(vsoc_cmd_state_name(i) != NULL);
        ASSERT_EQ(vsoc_cmd_state_from_name(vsoc_cmd_state_name(i), &s), 0);
        ASSERT_EQ(s, i);
    }
    ASSERT(vsoc_cmd_state_name(VSOC_CMD_DRY_RUN + 1) == NULL);
    vsoc_run_state_t rs;
    ASSERT_EQ(vsoc_run_state_from_name("capped", &rs), 0);
    ASSERT_EQ(rs, VSOC_RUN_CAPPED);
}

int main(void)
{
    test_names();
    test_full_loop();
    test_timeouts_and_escalation();
    test_two_person_reject_and_vehicle_reject();
    test_cap_dry_run_approve_all();
    test_restore();
    test_review_fixes();
    printf("test_respond: ok\n");
    return 0;
}
