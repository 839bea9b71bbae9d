/* test_deliver.c: the receiving side of command delivery that vsoc respond and vsoc serve
 * share (cli/deliver.c): a vehicle's signed ack checked against DIR/<VIN>.pub, kept in the
 * SQLite store with its verdict, and handed to the responder only when verified; refused
 * acks (bad signature, no key on file, a vehicle answering for another, malformed bytes, a
 * NUL) counted and kept out of the responder; duplicates and acks for no command in flight
 * ignored; approvals recorded by `vsoc commands approve` in another process polled from the
 * store exactly once, those the responder was restored with skipped; and the log lines
 * (events) each of these gives.
 *
 * Everything is real: keys generated into a temporary key directory as `vsoc keygen` writes
 * them, commands signed by the responder, acks signed with the vehicle's private key, a
 * store file read back with the raw sqlite3 API. Time is fixed: now_us is given. */
#include "deliver.h"
#include "test.h"

#include <sqlite3.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S 1000000LL
#define T0 (1795600800LL * S)    /* 2026-11-25T10:00:00Z */
#define VIN "WVWZZZ1JZXW000001"  /* its key is on file */
#define VIN2 "WVWZZZ1JZXW000002" /* its key is not on file (until test_refused adds it) */
#define NO_CMD "00000000-0000-4000-8000-000000000000"

static const char playbooks_yaml[] =
    "id: contain\n"
    "title: Contain\n"
    "trigger: {rules: ['vsoc.can.*'], min_level: high}\n"
    "steps:\n"
    "  - id: evidence\n"
    "    action: collect_logs\n"
    "    args: {minutes: 10}\n"
    "---\n"
    "id: hold\n"
    "title: Hold\n"
    "trigger: {rules: ['vsoc.uds.*']}\n"
    "steps:\n"
    "  - id: block\n"
    "    action: quarantine\n"
    "    args: {segment: diagnostics, mode: block_external}\n"
    "    ttl: 1h\n"
    "    approval: two_person\n"
    "    vehicle_state: {speed_kph: {lte: 0}}\n";

static char tmpdir[64];
static char keydir[128];   /* the vehicles' public keys, <VIN>.pub, as deliver.c reads them */
static char otherdir[128]; /* keys that are not in keydir */
/* SOC signing key; the vehicle's own key (its id is its VIN, as the agent's is); a key
 * pair with the same id that is not the vehicle's; VIN2's key, whose .pub is not on file. */
static vsoc_key_t *soc_key, *veh_key, *rogue_key, *veh2_key;

static void cleanup(void)
{
    vsoc_key_free(soc_key);
    vsoc_key_free(veh_key);
    vsoc_key_free(rogue_key);
    vsoc_key_free(veh2_key);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* A key pair written as `vsoc keygen --out dir --key-id id` writes it; the private half
 * loaded back by file name, so its id is the file's base name, as vsoc-agent's is. */
static vsoc_key_t *keygen(const char *dir, const char *id)
{
    char err[512], path[256];
    if (vsoc_key_generate(dir, id, err, sizeof err) != 0)
        TEST_FAIL_("keygen %s/%s: %s", dir, id, err);
    snprintf(path, sizeof path, "%s/%s.key", dir, id);
    vsoc_key_t *k = vsoc_key_load_private(path, NULL, err, sizeof err);
    if (!k)
        TEST_FAIL_("load %s: %s", path, err);
    ASSERT_STREQ(vsoc_key_id(k), id);
    return k;
}

/* ---- raw SQLite access: what the store kept, read as someone with the sqlite3 shell ---- */

/* count(*) of acks with that cmd_id and verdict (NULL: any), through a connection of its
 * own so that only committed rows count. */
static long long acks_in_db(const char *db, const char *cmd_id, const char *verdict)
{
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        TEST_FAIL_("raw open %s: %s", db, h ? sqlite3_errmsg(h) : "?");
    sqlite3_stmt *st;
    const char *sql = "SELECT count(*) FROM acks WHERE (?1 IS NULL OR cmd_id = ?1) AND "
                      "(?2 IS NULL OR verdict = ?2)";
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        TEST_FAIL_("%s: %s", sql, sqlite3_errmsg(h));
    sqlite3_bind_text(st, 1, cmd_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, verdict, -1, SQLITE_STATIC);
    long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

/* The stored row of the one ack with that cmd_id and verdict: its raw text and status. */
static void ack_row(const char *db, const char *cmd_id, const char *verdict, char *raw,
                    size_t rawlen, char *status, size_t statuslen)
{
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        TEST_FAIL_("raw open %s: %s", db, h ? sqlite3_errmsg(h) : "?");
    sqlite3_stmt *st;
    const char *sql = "SELECT raw, status FROM acks WHERE cmd_id = ?1 AND verdict = ?2";
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        TEST_FAIL_("%s: %s", sql, sqlite3_errmsg(h));
    sqlite3_bind_text(st, 1, cmd_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, verdict, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        TEST_FAIL_("no ack %.8s with verdict %s in %s", cmd_id, verdict, db);
    snprintf(raw, rawlen, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(status, statuslen, "%s", (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    sqlite3_close(h);
}

/* ---- the delivering process: store, responder, deliverer -------------------------------- */

#define MAX_REC 64

typedef struct fixture {
    char db[160];
    vsoc_store_t *store;
    vsoc_playbooks_t *pbs;
    vsoc_responder_t *r;
    cli_deliver_t *d;
    /* The responder's transitions, as they were written to the store. */
    char changes[MAX_REC][40];
    size_t nchanges;
    /* What went to the vehicles. */
    int sends;
    char envelope[16384];
    /* deliver.c's log lines. */
    char events[MAX_REC][32];
    char texts[MAX_REC][1024];
    size_t nlog;
} fixture_t;

/* The on_change of vsoc respond (cli_store_on_change): the transition is written to the
 * store before the responder acts on it. */
static int on_change(void *ctx, const vsoc_change_t *c)
{
    fixture_t *f = ctx;
    if (vsoc_store_apply_change(f->store, c) != 0)
        TEST_FAIL_("store: %s", vsoc_store_errmsg(f->store));
    ASSERT(f->nchanges < MAX_REC);
    snprintf(f->changes[f->nchanges++], sizeof f->changes[0], "%s", c->event);
    return 0;
}

static int on_send(void *ctx, const vsoc_command_t *cmd, const char *env, size_t n)
{
    fixture_t *f = ctx;
    ASSERT(n < sizeof f->envelope);
    memcpy(f->envelope, env, n);
    f->envelope[n] = 0;
    f->sends++;
    return 0;
}

static void on_log(void *ctx, const char *event, const char *text)
{
    fixture_t *f = ctx;
    ASSERT(f->nlog < MAX_REC);
    snprintf(f->events[f->nlog], sizeof f->events[0], "%s", event);
    snprintf(f->texts[f->nlog], sizeof f->texts[0], "%s", text);
    /* Lines may quote what unverified acks say: never a control character (a forged
     * reason with a newline would otherwise write a line of its own into a text log). */
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            TEST_FAIL_("a control character in the log line \"%s\"", text);
    f->nlog++;
}

static int changes_named(const fixture_t *f, const char *event)
{
    int k = 0;
    for (size_t i = 0; i < f->nchanges; i++)
        k += !strcmp(f->changes[i], event);
    return k;
}

/* The log lines since mark are exactly the events listed (NULL-terminated), in order. */
static void expect_log_(const fixture_t *f, size_t mark, const char *const *want, int line)
{
    size_t i = 0;
    for (; want[i]; i++)
        if (mark + i >= f->nlog || strcmp(f->events[mark + i], want[i]) != 0)
            TEST_FAIL_("line %d: log line %zu is \"%s\", expected \"%s\"", line, i,
                       mark + i < f->nlog ? f->events[mark + i] : "(none)", want[i]);
    if (mark + i != f->nlog)
        TEST_FAIL_("line %d: %zu log lines, expected %zu (one more: %s: %s)", line,
                   f->nlog - mark, i, f->events[mark + i], f->texts[mark + i]);
}
#define EXPECT_LOG(f, mark, ...)                                                           \
    expect_log_((f), (mark), (const char *const[]){__VA_ARGS__, NULL}, __LINE__)

/* The text of the log line at index i contains s. */
#define ASSERT_LOG_HAS(f, i, s)                                                            \
    do {                                                                                   \
        if ((i) >= (f)->nlog || !strstr((f)->texts[i], (s)))                               \
            TEST_FAIL_("log line %zu (%s) lacks \"%s\"", (size_t)(i),                      \
                       (i) < (f)->nlog ? (f)->texts[i] : "(none)", (s));                   \
    } while (0)

static void expect_counts(const fixture_t *f, uint64_t ok, uint64_t bad)
{
    uint64_t o = 99, b = 99;
    cli_deliver_counts(f->d, &o, &b);
    ASSERT_EQ(o, ok);
    ASSERT_EQ(b, bad);
}

/* What `vsoc respond` does at start: every run, the open commands and each vehicle's seq
 * from the store (cli_responder_restore). */
static int restore_run(void *ctx, const vsoc_run_t *run)
{
    return vsoc_responder_restore_run(ctx, run);
}
static int restore_cmd(void *ctx, const vsoc_command_t *cmd)
{
    return vsoc_responder_restore_command(ctx, cmd);
}
static int restore_seq(void *ctx, const char *vin, uint64_t last_seq)
{
    return vsoc_responder_restore_seq(ctx, vin, last_seq);
}
static void restore(vsoc_responder_t *r, vsoc_store_t *s)
{
    ASSERT_EQ(vsoc_store_each_run(s, restore_run, r), 0);
    ASSERT_EQ(vsoc_store_each_command(s, 1, restore_cmd, r), 0);
    ASSERT_EQ(vsoc_store_each_seq(s, restore_seq, r), 0);
}

static vsoc_playbooks_t *playbooks(void)
{
    vsoc_diags_t *dg = vsoc_diags_new();
    vsoc_playbooks_t *p =
        vsoc_playbooks_load_string("test.yml", playbooks_yaml, strlen(playbooks_yaml), dg);
    if (vsoc_diags_errors(dg))
        vsoc_diags_print(dg, stderr);
    ASSERT_EQ(vsoc_diags_errors(dg), 0);
    vsoc_diags_free(dg);
    ASSERT(p);
    return p;
}

/* The delivering process: the responder signs with the SOC key and sends; with from_store
 * it starts from what the store kept, as after a restart. */
static void start(fixture_t *f, int from_store)
{
    char err[600];
    f->store = vsoc_store_open(f->db, err, sizeof err);
    if (!f->store)
        TEST_FAIL_("open %s: %s", f->db, err);
    f->pbs = playbooks();
    vsoc_responder_opts_t o = {.playbooks = f->pbs, .key = soc_key, .on_change = on_change,
                               .send = on_send, .ctx = f};
    f->r = vsoc_responder_new(&o, err, sizeof err);
    ASSERT(f->r);
    if (from_store)
        restore(f->r, f->store);
    f->d = cli_deliver_new(f->store, keydir, on_log, f);
    ASSERT(f->d);
}

static void stop(fixture_t *f)
{
    cli_deliver_free(f->d);
    vsoc_responder_free(f->r);
    vsoc_playbooks_free(f->pbs);
    vsoc_store_close(f->store);
    f->d = NULL;
    f->r = NULL;
    f->pbs = NULL;
    f->store = NULL;
}

static fixture_t *setup(const char *name)
{
    fixture_t *f = calloc(1, sizeof *f);
    ASSERT(f);
    snprintf(f->db, sizeof f->db, "%s/%s.db", tmpdir, name);
    start(f, 0);
    return f;
}

static void teardown(fixture_t *f)
{
    stop(f);
    free(f);
}

static vsoc_incident_t incident(const char *id, const char *vin)
{
    vsoc_incident_t inc;
    memset(&inc, 0, sizeof inc);
    snprintf(inc.id, sizeof inc.id, "%s", id);
    snprintf(inc.vin, sizeof inc.vin, "%s", vin);
    inc.level = VSOC_LEVEL_HIGH;
    inc.first_us = inc.last_us = T0;
    return inc;
}

/* An alert starts playbook "contain" for vin: its collect_logs goes out at once. Returns
 * the envelope as the vehicle receives and verifies it. */
static vsoc_envelope_t send_logs(fixture_t *f, const char *incident_id, const char *vin)
{
    vsoc_incident_t inc = incident(incident_id, vin);
    int sends = f->sends;
    ASSERT_EQ(vsoc_responder_on_alert(f->r, &inc, "vsoc.can.flood", VSOC_LEVEL_HIGH, T0), 1);
    ASSERT_EQ(f->sends, sends + 1);
    vsoc_envelope_t e;
    char why[256];
    if (vsoc_envelope_parse(f->envelope, strlen(f->envelope), &e, why, sizeof why) != 0)
        TEST_FAIL_("envelope: %s", why);
    const vsoc_key_t *trusted[] = {soc_key};
    vsoc_envelope_check_t chk = {.vin = vin, .now = T0 / S, .last_seq = 0};
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &chk), VSOC_ENVELOPE_OK);
    ASSERT_EQ(vsoc_responder_command(f->r, e.cmd_id)->state, VSOC_CMD_SENT);
    return e;
}

/* The vehicle's answer to e as it goes on the wire: signed with key, serialized. vin is the
 * VIN the ack names (normally e's). Caller frees *out. */
static void signed_ack(const vsoc_envelope_t *e, const char *cmd_id, const char *vin,
                       vsoc_ack_status_t status, const vsoc_key_t *key, char **out,
                       size_t *n)
{
    vsoc_ack_t a;
    memset(&a, 0, sizeof a);
    a.v = 1;
    snprintf(a.cmd_id, sizeof a.cmd_id, "%s", cmd_id ? cmd_id : e->cmd_id);
    snprintf(a.vin, sizeof a.vin, "%s", vin ? vin : e->vin);
    a.seq = e->seq;
    a.status = status;
    a.at = T0 / S + 1;
    char err[256];
    if (vsoc_ack_sign(&a, key, err, sizeof err) != 0)
        TEST_FAIL_("sign ack: %s", err);
    ASSERT_EQ(vsoc_ack_serialize(&a, out, n), 0);
}

static vsoc_cmd_state_t state_of(const fixture_t *f, const char *cmd_id)
{
    const vsoc_command_t *c = vsoc_responder_command(f->r, cmd_id);
    if (!c)
        TEST_FAIL_("no command %.8s in the responder", cmd_id);
    return c->state;
}

/* ---- 1. a verified ack ------------------------------------------------------------------ */

static void test_verified(void)
{
    fixture_t *f = setup("verified");
    vsoc_envelope_t e = send_logs(f, "inc-ok", VIN);
    char *ack;
    size_t n;
    signed_ack(&e, NULL, NULL, VSOC_ACK_APPLIED, veh_key, &ack, &n);
    size_t mark = f->nlog, changes = f->nchanges;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 2 * S), 0);
    expect_counts(f, 1, 0);
    /* The responder took it: the command is acked, and that transition was written. */
    ASSERT_EQ(state_of(f, e.cmd_id), VSOC_CMD_ACKED);
    ASSERT(f->nchanges > changes);
    ASSERT_EQ(changes_named(f, "command.acked"), 1);
    /* Kept in the store as received, with its verdict, before the responder acted. */
    char raw[4096], status[32];
    ASSERT_EQ(acks_in_db(f->db, NULL, NULL), 1);
    ack_row(f->db, e.cmd_id, "ok", raw, sizeof raw, status, sizeof status);
    ASSERT_STRN_EQ(ack, n, raw);
    ASSERT_STREQ(status, "applied");
    EXPECT_LOG(f, mark, "ack");
    ASSERT_LOG_HAS(f, mark, "applied from " VIN);
    ASSERT_LOG_HAS(f, mark, "(signature verified)");
    free(ack);

    /* The key is kept while its file is unchanged; a key file removed (the vehicle's key
     * revoked) is no longer trusted at the next ack, and one put back is loaded again. */
    vsoc_envelope_t e2 = send_logs(f, "inc-ok2", VIN);
    char pub[256], moved[256];
    snprintf(pub, sizeof pub, "%s/%s.pub", keydir, VIN);
    snprintf(moved, sizeof moved, "%s/%s.pub.away", keydir, VIN);
    ASSERT_EQ(rename(pub, moved), 0);
    signed_ack(&e2, NULL, NULL, VSOC_ACK_APPLIED, veh_key, &ack, &n);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 3 * S), 0);
    expect_counts(f, 1, 1);
    ASSERT_EQ(state_of(f, e2.cmd_id), VSOC_CMD_SENT);
    ASSERT_EQ(acks_in_db(f->db, e2.cmd_id, "unknown_key"), 1);
    EXPECT_LOG(f, mark, "ack.key", "ack.key", "ack");
    ASSERT_LOG_HAS(f, mark, "no longer trusted");
    ASSERT_EQ(rename(moved, pub), 0);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 4 * S), 0);
    expect_counts(f, 2, 1);
    ASSERT_EQ(state_of(f, e2.cmd_id), VSOC_CMD_ACKED);
    ASSERT_EQ(acks_in_db(f->db, e2.cmd_id, "ok"), 1);
    EXPECT_LOG(f, mark, "ack");
    free(ack);

    /* A key file replaced (the vehicle's key rotated): the old key no longer verifies, the
     * new one does. */
    vsoc_envelope_t e3 = send_logs(f, "inc-ok3", VIN);
    char rotated[256], keep[256];
    snprintf(rotated, sizeof rotated, "%s/%s.pub", otherdir, VIN);
    snprintf(keep, sizeof keep, "%s/%s.pub.old", otherdir, VIN);
    ASSERT_EQ(rename(pub, keep), 0);
    ASSERT_EQ(rename(rotated, pub), 0);
    signed_ack(&e3, NULL, NULL, VSOC_ACK_APPLIED, veh_key, &ack, &n);
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 5 * S), 0);
    free(ack);
    ASSERT_EQ(state_of(f, e3.cmd_id), VSOC_CMD_SENT);
    ASSERT_EQ(acks_in_db(f->db, e3.cmd_id, "bad_signature"), 1);
    signed_ack(&e3, NULL, NULL, VSOC_ACK_APPLIED, rogue_key, &ack, &n);
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 6 * S), 0);
    free(ack);
    ASSERT_EQ(state_of(f, e3.cmd_id), VSOC_CMD_ACKED);
    ASSERT_EQ(rename(pub, rotated), 0);
    ASSERT_EQ(rename(keep, pub), 0);
    teardown(f);
}

/* ---- 2. refused acks -------------------------------------------------------------------- */

static void test_refused(void)
{
    fixture_t *f = setup("refused");
    vsoc_envelope_t e = send_logs(f, "inc-r1", VIN);
    vsoc_envelope_t e2 = send_logs(f, "inc-r2", VIN2);
    size_t changes = f->nchanges;
    uint64_t bad = 0;
    char *ack;
    size_t n, mark;

    /* Signed by a key with the vehicle's key id that is not the vehicle's. */
    signed_ack(&e, NULL, NULL, VSOC_ACK_APPLIED, rogue_key, &ack, &n);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 2 * S), 0);
    expect_counts(f, 0, ++bad);
    ASSERT_EQ(acks_in_db(f->db, e.cmd_id, "bad_signature"), 1);
    EXPECT_LOG(f, mark, "ack");
    ASSERT_LOG_HAS(f, mark, "(bad_signature)");
    free(ack);

    /* A forged refusal whose reason carries a newline and a made-up log line: refused,
     * and quoted on one line (on_log checks). */
    {
        vsoc_ack_t a;
        memset(&a, 0, sizeof a);
        a.v = 1;
        snprintf(a.cmd_id, sizeof a.cmd_id, "%s", e.cmd_id);
        snprintf(a.vin, sizeof a.vin, "%s", VIN);
        a.seq = e.seq;
        a.status = VSOC_ACK_REJECTED;
        a.at = T0 / S + 1;
        snprintf(a.reason, sizeof a.reason, "x\n{\"event\":\"command.acked\"}");
        char err[256];
        ASSERT_EQ(vsoc_ack_sign(&a, rogue_key, err, sizeof err), 0);
        ASSERT_EQ(vsoc_ack_serialize(&a, &ack, &n), 0);
        mark = f->nlog;
        ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 2 * S), 0);
        expect_counts(f, 0, ++bad);
        EXPECT_LOG(f, mark, "ack");
        ASSERT_LOG_HAS(f, mark, "(bad_signature)");
        free(ack);
    }

    /* VIN2's own, correctly signed ack, but no VIN2.pub on file: not verifiable. */
    char *ack2;
    size_t n2;
    signed_ack(&e2, NULL, NULL, VSOC_ACK_APPLIED, veh2_key, &ack2, &n2);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN2, ack2, n2, T0 + 3 * S), 0);
    expect_counts(f, 0, ++bad);
    ASSERT_EQ(acks_in_db(f->db, e2.cmd_id, "unknown_key"), 1);
    EXPECT_LOG(f, mark, "ack.key", "ack");
    ASSERT_LOG_HAS(f, mark, "no key for " VIN2);
    ASSERT_LOG_HAS(f, mark + 1, "(unknown_key)");

    /* The vehicle's own valid ack, but arriving on VIN2's transport: one vehicle answering
     * for another. */
    signed_ack(&e, NULL, NULL, VSOC_ACK_APPLIED, veh_key, &ack, &n);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN2, ack, n, T0 + 4 * S), 0);
    expect_counts(f, 0, ++bad);
    ASSERT_EQ(acks_in_db(f->db, e.cmd_id, "wrong_vin"), 1);
    EXPECT_LOG(f, mark, "ack");
    ASSERT_LOG_HAS(f, mark, "(wrong_vin)");

    /* A VIN that would climb out of the key directory is not made into a path
     * (../other/VIN2.pub exists). */
    char *ack3;
    size_t n3;
    signed_ack(&e2, NULL, "../other/" VIN2, VSOC_ACK_APPLIED, veh2_key, &ack3, &n3);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, NULL, ack3, n3, T0 + 5 * S), 0);
    expect_counts(f, 0, ++bad);
    ASSERT_EQ(acks_in_db(f->db, e2.cmd_id, "unknown_key"), 2);
    EXPECT_LOG(f, mark, "ack.key", "ack");
    ASSERT_LOG_HAS(f, mark, "cannot name a key file");
    free(ack3);

    /* Bytes that are not an ack: logged, counted, and not stored (there is no ack to keep). */
    long long rows = acks_in_db(f->db, NULL, NULL);
    ASSERT_EQ(rows, 5); /* the forged refusal is kept too, with its verdict */
    static const char junk[] = "not an ack";
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, junk, sizeof junk - 1, T0 + 6 * S), 0);
    expect_counts(f, 0, ++bad);
    EXPECT_LOG(f, mark, "ack.malformed");
    ASSERT_LOG_HAS(f, mark, "from " VIN);
    /* A valid ack cut short, and an empty message (from a transport naming no VIN). */
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n - 1, T0 + 6 * S), 0);
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, NULL, "", 0, T0 + 6 * S), 0);
    /* An empty Kafka message has no payload at all. */
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, NULL, NULL, 0, T0 + 6 * S), 0);
    bad += 3;
    expect_counts(f, 0, bad);
    EXPECT_LOG(f, mark, "ack.malformed", "ack.malformed", "ack.malformed");
    ASSERT_LOG_HAS(f, mark + 1, "from ?");

    /* The vehicle's valid ack followed by a NUL: read as a C string it would verify, so the
     * NUL must refuse it; likewise a NUL inside. */
    char withnul[4200];
    ASSERT(n + 1 < sizeof withnul);
    memcpy(withnul, ack, n);
    withnul[n] = 0;
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, withnul, n + 1, T0 + 7 * S), 0);
    withnul[10] = 0;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, withnul, n, T0 + 7 * S), 0);
    bad += 2;
    expect_counts(f, 0, bad);
    EXPECT_LOG(f, mark, "ack.malformed", "ack.malformed");
    ASSERT_LOG_HAS(f, mark, "NUL");
    ASSERT_LOG_HAS(f, mark + 1, "NUL");
    ASSERT_EQ(acks_in_db(f->db, NULL, NULL), rows);

    /* None of this reached the responder: both commands still wait, nothing changed. */
    ASSERT_EQ(state_of(f, e.cmd_id), VSOC_CMD_SENT);
    ASSERT_EQ(state_of(f, e2.cmd_id), VSOC_CMD_SENT);
    ASSERT_EQ(f->nchanges, changes);
    ASSERT_EQ(changes_named(f, "command.acked"), 0);

    /* The same ack verifies once VIN2's key is put on file while the process runs: a key
     * not found is looked for again. It is a new fact (a new verdict), so a new row. */
    char from[256], to[256];
    snprintf(from, sizeof from, "%s/%s.pub", otherdir, VIN2);
    snprintf(to, sizeof to, "%s/%s.pub", keydir, VIN2);
    ASSERT_EQ(link(from, to), 0);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN2, ack2, n2, T0 + 8 * S), 0);
    expect_counts(f, 1, bad);
    ASSERT_EQ(acks_in_db(f->db, e2.cmd_id, "ok"), 1);
    ASSERT_EQ(state_of(f, e2.cmd_id), VSOC_CMD_ACKED);
    ASSERT_EQ(state_of(f, e.cmd_id), VSOC_CMD_SENT);
    EXPECT_LOG(f, mark, "ack");
    ASSERT_LOG_HAS(f, mark, "(signature verified)");
    ASSERT_EQ(unlink(to), 0);
    free(ack);
    free(ack2);
    teardown(f);
}

/* ---- 3. duplicates and acks for no command in flight -------------------------------------- */

static void test_ignored(void)
{
    fixture_t *f = setup("ignored");
    vsoc_envelope_t e = send_logs(f, "inc-dup", VIN);
    char *ack;
    size_t n, mark;
    signed_ack(&e, NULL, NULL, VSOC_ACK_APPLIED, veh_key, &ack, &n);
    /* Over Kafka the transport names no vehicle: the ack's own VIN and signature decide. */
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, NULL, ack, n, T0 + 2 * S), 0);
    ASSERT_EQ(state_of(f, e.cmd_id), VSOC_CMD_ACKED);
    expect_counts(f, 1, 0);

    /* The same ack again (a transport redelivers after a crash): verified and counted as
     * such, but the command moves no further and the store keeps one row for it. */
    size_t changes = f->nchanges;
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 3 * S), 0);
    expect_counts(f, 2, 0);
    ASSERT_EQ(state_of(f, e.cmd_id), VSOC_CMD_ACKED);
    ASSERT_EQ(f->nchanges, changes);
    ASSERT_EQ(acks_in_db(f->db, e.cmd_id, NULL), 1);
    EXPECT_LOG(f, mark, "ack", "ack.ignored");
    ASSERT_LOG_HAS(f, mark + 1, "a duplicate");
    free(ack);

    /* A verified ack naming a command that does not exist: stored (it is the vehicle's
     * word), given to nobody. */
    signed_ack(&e, NO_CMD, NULL, VSOC_ACK_APPLIED, veh_key, &ack, &n);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 4 * S), 0);
    expect_counts(f, 3, 0);
    ASSERT_EQ(acks_in_db(f->db, NO_CMD, "ok"), 1);
    ASSERT_EQ(f->nchanges, changes);
    EXPECT_LOG(f, mark, "ack", "ack.ignored");
    ASSERT_LOG_HAS(f, mark + 1, "00000000: no such command in flight");
    free(ack);

    /* A second command waits; an ack for it with another seq is not its answer. */
    vsoc_envelope_t e2 = send_logs(f, "inc-dup2", VIN);
    ASSERT_EQ(e2.seq, e.seq + 1);
    changes = f->nchanges;
    vsoc_envelope_t other = e2;
    other.seq = e2.seq + 5;
    signed_ack(&other, NULL, NULL, VSOC_ACK_APPLIED, veh_key, &ack, &n);
    mark = f->nlog;
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 5 * S), 0);
    ASSERT_EQ(state_of(f, e2.cmd_id), VSOC_CMD_SENT);
    ASSERT_EQ(f->nchanges, changes);
    EXPECT_LOG(f, mark, "ack", "ack.ignored");
    ASSERT_LOG_HAS(f, mark + 1, "no such command in flight");
    free(ack);
    teardown(f);
}

/* ---- 4. approvals ------------------------------------------------------------------------- */

/* `vsoc commands approve|reject ID --by NAME` in another process: its own store handle, a
 * responder without key or transport restored from the store, the decision and every
 * transition it causes written in one transaction (cli/cmd_commands.c, decide()). */
static int decide_on_change(void *ctx, const vsoc_change_t *c)
{
    return vsoc_store_apply_change(ctx, c) != 0 ? -1 : 0;
}

static void person_decides(const char *db, const char *cmd_id, const char *by, int approve,
                           int64_t now_us)
{
    char err[600];
    vsoc_store_t *s = vsoc_store_open_existing(db, err, sizeof err);
    if (!s)
        TEST_FAIL_("open %s: %s", db, err);
    ASSERT_EQ(vsoc_store_begin(s), 0);
    vsoc_playbooks_t *pb = playbooks();
    vsoc_responder_opts_t ro = {.playbooks = pb, .on_change = decide_on_change, .ctx = s};
    vsoc_responder_t *r = vsoc_responder_new(&ro, err, sizeof err);
    ASSERT(r);
    restore(r, s);
    int rc = approve ? vsoc_responder_approve(r, cmd_id, by, now_us, err, sizeof err)
                     : vsoc_responder_reject(r, cmd_id, by, "false positive", now_us, err,
                                             sizeof err);
    if (rc != 0)
        TEST_FAIL_("%s by %s: %s", approve ? "approve" : "reject", by, err);
    ASSERT_EQ(vsoc_store_add_approval(s, cmd_id, by, approve ? "approve" : "reject",
                                      approve ? "" : "false positive", now_us),
              0);
    ASSERT_EQ(vsoc_store_commit(s), 0);
    vsoc_responder_free(r);
    vsoc_playbooks_free(pb);
    vsoc_store_close(s);
}

/* An alert starts playbook "hold" for vin: its quarantine waits for two people. */
static void hold(fixture_t *f, const char *incident_id, const char *vin, char cmd_id[37])
{
    vsoc_incident_t inc = incident(incident_id, vin);
    ASSERT_EQ(vsoc_responder_on_alert(f->r, &inc, "vsoc.uds.bruteforce", VSOC_LEVEL_HIGH, T0),
              1);
    char run_id[37];
    const char *rp[] = {"run", "hold", incident_id};
    vsoc_uuid_derive(rp, 3, run_id);
    const char *cp[] = {"command", run_id, "block"};
    vsoc_uuid_derive(cp, 3, cmd_id);
    ASSERT_EQ(state_of(f, cmd_id), VSOC_CMD_PENDING_APPROVAL);
}

static void test_approvals(void)
{
    fixture_t *f = setup("approvals");
    char q[37], q2[37];
    hold(f, "inc-a1", VIN, q);
    hold(f, "inc-a2", VIN2, q2);
    ASSERT_EQ(f->sends, 0);
    /* Alice approves while the delivering process is down; it then starts from the store,
     * which already holds her approval, and skips it. */
    stop(f);
    person_decides(f->db, q, "alice", 1, T0 + 10 * S);
    start(f, 1);
    const vsoc_command_t *c = vsoc_responder_command(f->r, q);
    ASSERT(c);
    ASSERT_EQ(c->state, VSOC_CMD_PENDING_APPROVAL);
    ASSERT_EQ(c->napprovals, 1);
    ASSERT_EQ(cli_deliver_skip_approvals(f->d), 0);
    size_t mark = f->nlog, changes = f->nchanges;
    /* Handing alice's approval again would be refused (she approved already) and logged
     * as approval.seen: nothing at all must happen. */
    ASSERT_EQ(cli_deliver_approvals(f->d, f->r), 0);
    ASSERT_EQ(f->nlog, mark);
    ASSERT_EQ(f->nchanges, changes);
    ASSERT_EQ(vsoc_responder_command(f->r, q)->napprovals, 1);

    /* Bob approves from another process while this one runs: nothing moves until polled. */
    person_decides(f->db, q, "bob", 1, T0 + 20 * S);
    ASSERT_EQ(state_of(f, q), VSOC_CMD_PENDING_APPROVAL);
    ASSERT_EQ(cli_deliver_approvals(f->d, f->r), 0);
    c = vsoc_responder_command(f->r, q);
    ASSERT_EQ(c->state, VSOC_CMD_SENT);
    ASSERT_EQ(c->napprovals, 2);
    ASSERT_STREQ(c->approved_by[1], "bob");
    ASSERT_EQ(f->sends, 1);
    ASSERT_EQ(changes_named(f, "command.sent"), 1);
    ASSERT_EQ(f->nlog, mark);

    /* Polled again: the same approval is not handed twice. */
    changes = f->nchanges;
    ASSERT_EQ(cli_deliver_approvals(f->d, f->r), 0);
    ASSERT_EQ(f->sends, 1);
    ASSERT_EQ(f->nchanges, changes);
    ASSERT_EQ(f->nlog, mark);

    /* A rejection is handed on the same way. */
    person_decides(f->db, q2, "carol", 0, T0 + 30 * S);
    ASSERT_EQ(cli_deliver_approvals(f->d, f->r), 0);
    ASSERT_EQ(state_of(f, q2), VSOC_CMD_REJECTED);
    ASSERT(strstr(vsoc_responder_command(f->r, q2)->reason, "carol") != NULL);
    ASSERT_EQ(f->sends, 1);
    ASSERT_EQ(f->nlog, mark);

    /* A decision this process already sees past (the command is sent) is logged as seen,
     * changes nothing, and is not a failure. */
    ASSERT_EQ(vsoc_store_add_approval(f->store, q, "dave", "approve", "", T0 + 40 * S), 0);
    changes = f->nchanges;
    ASSERT_EQ(cli_deliver_approvals(f->d, f->r), 0);
    ASSERT_EQ(state_of(f, q), VSOC_CMD_SENT);
    ASSERT_EQ(f->nchanges, changes);
    EXPECT_LOG(f, mark, "approval.seen");
    ASSERT_LOG_HAS(f, mark, "approve by dave");
    ASSERT_EQ(cli_deliver_approvals(f->d, f->r), 0);
    EXPECT_LOG(f, mark, "approval.seen");

    /* The vehicle answers the approved quarantine: the loop closes. */
    vsoc_envelope_t e;
    char why[256];
    if (vsoc_envelope_parse(f->envelope, strlen(f->envelope), &e, why, sizeof why) != 0)
        TEST_FAIL_("envelope: %s", why);
    ASSERT_STREQ(e.cmd_id, q);
    char *ack;
    size_t n;
    signed_ack(&e, NULL, NULL, VSOC_ACK_APPLIED, veh_key, &ack, &n);
    ASSERT_EQ(cli_deliver_ack(f->d, f->r, VIN, ack, n, T0 + 50 * S), 0);
    ASSERT_EQ(state_of(f, q), VSOC_CMD_ACKED);
    expect_counts(f, 1, 0);
    free(ack);
    teardown(f);
}

/* A store that fails: skip_approvals and approvals say so (event "error") and return -1. */
static void test_store_failure(void)
{
    fixture_t *f = setup("broken");
    /* Make the approvals table unreadable to this handle: drop it behind its back. */
    sqlite3 *h = NULL;
    ASSERT_EQ(sqlite3_open(f->db, &h), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(h, "ALTER TABLE approvals RENAME TO approvals_gone", NULL, NULL, &msg) !=
        SQLITE_OK)
        TEST_FAIL_("rename: %s", msg ? msg : "?");
    sqlite3_close(h);
    size_t mark = f->nlog;
    ASSERT_EQ(cli_deliver_skip_approvals(f->d), -1);
    ASSERT_EQ(cli_deliver_approvals(f->d, f->r), -1);
    EXPECT_LOG(f, mark, "error", "error");
    teardown(f);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vsoc-deliver-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        TEST_FAIL_("mkdtemp %s failed", tmpdir);
    atexit(cleanup);
    snprintf(keydir, sizeof keydir, "%s/keys", tmpdir);
    snprintf(otherdir, sizeof otherdir, "%s/other", tmpdir);
    char socdir[128];
    snprintf(socdir, sizeof socdir, "%s/soc", tmpdir);
    ASSERT_EQ(mkdir(keydir, 0700), 0);
    ASSERT_EQ(mkdir(otherdir, 0700), 0);
    ASSERT_EQ(mkdir(socdir, 0700), 0);
    soc_key = keygen(socdir, "vsoc-test");
    veh_key = keygen(keydir, VIN);
    rogue_key = keygen(otherdir, VIN);
    veh2_key = keygen(otherdir, VIN2);
    test_verified();
    test_refused();
    test_ignored();
    test_approvals();
    test_store_failure();
    printf("test_deliver: ok\n");
    return 0;
}
