/* test_agent_core.c: the vehicle agent's logic without a network: apply, dedupe, every
 * rejection reason, defer then apply on tick, ttl release on tick, release, the filter
 * model, and persistence across free/new with a temporary state directory. Every ack the
 * agent hands out is checked against the vehicle's public key. */
#include "agent_core.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The SOC test key of test_envelope.c and the vehicle key of test_ack.c. */
static const char soc_priv_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                                   "MC4CAQAwBQYDK2VwBCIEIDHNRVIf0CiLNdTpr41OSHlz6e6/64ffoRGzOxvl8ItQ\n"
                                   "-----END PRIVATE KEY-----\n";
static const char soc_pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                  "MCowBQYDK2VwAyEAvm67v/z54+vPB5QtsDqX1e4BvsQwGhqja8Jrwo02SX4=\n"
                                  "-----END PUBLIC KEY-----\n";
static const char veh_priv_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                                   "MC4CAQAwBQYDK2VwBCIEIAS6zR4TtmWEYQcg5J464D+BaufUTE10KMueewzxKPGP\n"
                                   "-----END PRIVATE KEY-----\n";
static const char veh_pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                  "MCowBQYDK2VwAyEAn7B9dUDlnJ0WATsWrD0yhbCv/kDNDngYXXfci05R2fo=\n"
                                  "-----END PUBLIC KEY-----\n";

#define VIN "WVWZZZ1JZXW000001"
#define T0 1795600800LL /* 2026-11-25T10:00:00Z */

static vsoc_key_t *soc_priv, *soc_pub, *veh_priv, *veh_pub, *rogue_priv;

static vsoc_key_t *key(const char *pem, int priv, const char *id)
{
    char err[256];
    vsoc_key_t *k = vsoc_key_from_pem(pem, strlen(pem), priv, id, err, sizeof err);
    if (!k)
        TEST_FAIL_("key: %s", err);
    return k;
}

/* ---- captured acks ------------------------------------------------------------------- */

#define MAX_ACKS 4096
static struct {
    vsoc_ack_t ack;
    char json[1024];
} acks[MAX_ACKS];
static size_t nacks;

static void on_ack(void *ctx, const vsoc_ack_t *ack, const char *json, size_t n)
{
    (void)ctx;
    if (nacks == MAX_ACKS || n >= sizeof acks[0].json)
        TEST_FAIL_("too many or too long acks");
    /* Every ack parses, matches the struct handed out, and verifies with the vehicle key. */
    vsoc_ack_t parsed;
    char reason[256];
    if (vsoc_ack_parse(json, n, &parsed, reason, sizeof reason) != 0)
        TEST_FAIL_("ack does not parse: %s: %.*s", reason, (int)n, json);
    const vsoc_key_t *trusted[] = {veh_pub};
    ASSERT_EQ(vsoc_ack_verify(&parsed, trusted, 1, VIN), VSOC_ENVELOPE_OK);
    ASSERT_STREQ(parsed.sig, ack->sig);
    ASSERT_STREQ(parsed.cmd_id, ack->cmd_id);
    ASSERT_EQ(parsed.status, ack->status);
    acks[nacks].ack = parsed;
    memcpy(acks[nacks].json, json, n);
    acks[nacks].json[n] = 0;
    nacks++;
}

static const vsoc_ack_t *last_ack(void)
{
    ASSERT(nacks > 0);
    return &acks[nacks - 1].ack;
}

/* ---- envelopes ----------------------------------------------------------------------- */

static unsigned uuid_counter;

static void next_uuid(char out[37])
{
    snprintf(out, 37, "00000000-0000-4000-8000-%012x", ++uuid_counter);
}

/* A signed envelope for VIN from the SOC key, valid 300 s from T0; caller frees. */
static char *envelope_full(const char *cmd_id, const char *vin, uint64_t seq,
                           const char *action, const char *args, int64_t ttl,
                           const vsoc_key_t *k)
{
    static vsoc_envelope_t e;
    char err[256];
    memset(&e, 0, sizeof e);
    e.v = 1;
    snprintf(e.cmd_id, sizeof e.cmd_id, "%s", cmd_id);
    snprintf(e.vin, sizeof e.vin, "%s", vin);
    e.seq = seq;
    snprintf(e.action, sizeof e.action, "%s", action);
    if (vsoc_envelope_set_args(&e, args ? args : "{}", err, sizeof err) != 0)
        TEST_FAIL_("args: %s", err);
    e.ttl_s = ttl;
    e.issued_at = T0;
    e.expires_at = T0 + 300;
    strcpy(e.incident_id, "INC-1");
    if (vsoc_envelope_sign(&e, k, err, sizeof err) != 0)
        TEST_FAIL_("sign: %s", err);
    char *s;
    ASSERT_EQ(vsoc_envelope_serialize(&e, &s, NULL), 0);
    return s;
}

static char *envelope(char cmd_id[37], uint64_t seq, const char *action, const char *args,
                      int64_t ttl)
{
    next_uuid(cmd_id);
    return envelope_full(cmd_id, VIN, seq, action, args, ttl, soc_priv);
}

static vsoc_vagent_t *agent_new(const char *dir)
{
    const vsoc_key_t *const trusted[] = {soc_pub};
    static const vsoc_key_t *tr[1];
    tr[0] = trusted[0];
    vsoc_vagent_opts_t o = {.vin = VIN, .trusted = tr, .ntrusted = 1, .key = veh_priv,
                            .state_dir = dir, .on_ack = on_ack};
    char err[512];
    vsoc_vagent_t *a = vsoc_vagent_new(&o, err, sizeof err);
    if (!a)
        TEST_FAIL_("vsoc_vagent_new: %s", err);
    return a;
}

static int handle(vsoc_vagent_t *a, const char *text, int64_t now, int speed_known,
                  double speed)
{
    vsoc_vagent_state_t st = {.now = now, .speed_known = speed_known, .speed_kph = speed};
    return vsoc_vagent_handle(a, text, strlen(text), &st);
}

static int tick(vsoc_vagent_t *a, int64_t now, int speed_known, double speed)
{
    vsoc_vagent_state_t st = {.now = now, .speed_known = speed_known, .speed_kph = speed};
    return vsoc_vagent_tick(a, &st);
}

/* The status JSON contains needle. */
static void status_has(const vsoc_vagent_t *a, const char *needle)
{
    char *s = vsoc_vagent_status_json(a);
    ASSERT(s != NULL);
    if (!strstr(s, needle))
        TEST_FAIL_("status lacks %s: %s", needle, s);
    free(s);
}

static void status_lacks(const vsoc_vagent_t *a, const char *needle)
{
    char *s = vsoc_vagent_status_json(a);
    ASSERT(s != NULL);
    if (strstr(s, needle))
        TEST_FAIL_("status has %s: %s", needle, s);
    free(s);
}

#define QUAR "{\"segment\":\"telematics\",\"mode\":\"block_external\"}"
#define GATED "{\"segment\":\"telematics\",\"mode\":\"block_external\"," \
              "\"vehicle_state\":{\"speed_kph\":{\"lte\":0}}}"

/* ---- tests --------------------------------------------------------------------------- */

static void test_apply_and_dedupe(void)
{
    vsoc_vagent_t *a = agent_new(NULL);
    char id[37];
    nacks = 0;
    char *q = envelope(id, 1, "quarantine", QUAR, 0);
    ASSERT_EQ(handle(a, q, T0 + 1, 0, 0), VSOC_ACK_APPLIED);
    ASSERT_EQ(nacks, 1);
    ASSERT_STREQ(last_ack()->cmd_id, id);
    ASSERT_EQ(last_ack()->seq, 1);
    ASSERT_STREQ(last_ack()->reason, "");
    ASSERT_EQ(last_ack()->at, T0 + 1);
    ASSERT_STREQ(last_ack()->vin, VIN);
    ASSERT_EQ(vsoc_vagent_last_seq(a), 1);
    status_has(a, "\"segments\":{\"telematics\":{\"mode\":\"block_external\",\"cmd_id\":\"");
    status_has(a, "\"until\":null");

    /* A resent command is answered with the same bytes and not applied again, even later
     * and whatever the speed. */
    char first[1024];
    strcpy(first, acks[0].json);
    ASSERT_EQ(handle(a, q, T0 + 100, 1, 80), VSOC_ACK_APPLIED);
    ASSERT_EQ(nacks, 2);
    ASSERT_STREQ(acks[1].json, first);
    status_has(a, "\"counters\":{\"applied\":1,");
    status_has(a, "\"answered\":1");

    /* Other actions: recorded, seq moves on. */
    char *r = envelope(id, 2, "rotate_credentials", NULL, 0);
    ASSERT_EQ(handle(a, r, T0 + 2, 0, 0), VSOC_ACK_APPLIED);
    char *c = envelope(id, 3, "collect_logs", "{\"minutes\":10}", 0);
    ASSERT_EQ(handle(a, c, T0 + 3, 0, 0), VSOC_ACK_APPLIED);
    char *n = envelope(id, 4, "notify", "{\"channel\":\"soc\"}", 0);
    ASSERT_EQ(handle(a, n, T0 + 4, 0, 0), VSOC_ACK_APPLIED);
    char *e = envelope(id, 5, "escalate", NULL, 0);
    ASSERT_EQ(handle(a, e, T0 + 5, 0, 0), VSOC_ACK_APPLIED);
    ASSERT_EQ(vsoc_vagent_last_seq(a), 5);
    status_has(a, "\"collect_logs\":1,\"rotate_credentials\":1,\"notify\":1,\"escalate\":1");
    free(q);
    free(r);
    free(c);
    free(n);
    free(e);
    vsoc_vagent_free(a);
}

static void expect_rejected(vsoc_vagent_t *a, const char *text, const char *reason,
                            uint64_t seq)
{
    size_t before = nacks;
    int rc = handle(a, text, T0 + 10, 1, 0);
    if (rc != VSOC_ACK_REJECTED)
        TEST_FAIL_("%s: handle returned %d", reason, rc);
    ASSERT_EQ(nacks, before + 1);
    ASSERT_EQ(last_ack()->status, VSOC_ACK_REJECTED);
    ASSERT_STREQ(last_ack()->reason, reason);
    ASSERT_EQ(last_ack()->seq, seq);
}

static void test_rejections(void)
{
    vsoc_vagent_t *a = agent_new(NULL);
    char id[37], *t;
    nacks = 0;
    t = envelope(id, 10, "notify", NULL, 0);
    ASSERT_EQ(handle(a, t, T0 + 1, 0, 0), VSOC_ACK_APPLIED);
    free(t);

    /* bad_signature: one byte of the signed text changed (seq 11 -> 12). */
    t = envelope(id, 11, "quarantine", QUAR, 0);
    char *p = strstr(t, "\"seq\":11");
    ASSERT(p);
    p[7] = '2';
    expect_rejected(a, t, "bad_signature", 12);
    free(t);

    /* unknown_key: a key id the vehicle does not trust. */
    next_uuid(id);
    t = envelope_full(id, VIN, 11, "quarantine", QUAR, 0, rogue_priv);
    expect_rejected(a, t, "unknown_key", 11);
    free(t);

    next_uuid(id);
    t = envelope_full(id, "WVWZZZ1JZXW000002", 11, "quarantine", QUAR, 0, soc_priv);
    expect_rejected(a, t, "wrong_vin", 11);
    free(t);

    /* expired: judged by expires_at (T0 + 300) against the time given. */
    t = envelope(id, 11, "quarantine", QUAR, 0);
    vsoc_vagent_state_t late = {.now = T0 + 300, .speed_known = 1};
    ASSERT_EQ(vsoc_vagent_handle(a, t, strlen(t), &late), VSOC_ACK_REJECTED);
    ASSERT_STREQ(last_ack()->reason, "expired");
    free(t);

    t = envelope(id, 10, "quarantine", QUAR, 0);
    expect_rejected(a, t, "replayed", 10);
    free(t);
    t = envelope(id, 9, "quarantine", QUAR, 0);
    expect_rejected(a, t, "replayed", 9);
    free(t);

    t = envelope(id, 11, "self_destruct", NULL, 0);
    expect_rejected(a, t, "unknown_action", 11);
    free(t);

    /* Args the action cannot use. */
    t = envelope(id, 11, "quarantine", "{\"segment\":\"telematics\"}", 0);
    expect_rejected(a, t, "bad_args: segment and mode go together", 11);
    free(t);
    t = envelope(id, 11, "quarantine", "{}", 0);
    expect_rejected(a, t, "bad_args: quarantine needs segment, can_ids or feature", 11);
    free(t);
    t = envelope(id, 11, "quarantine", "{\"can_ids\":[\"0x123\",\"12\"]}", 0);
    expect_rejected(a, t, "bad_args: can_ids[1] is not a CAN id like \"0x123\"", 11);
    free(t);
    t = envelope(id, 11, "quarantine", "{\"feature\":\"remote start\"}", 0);
    expect_rejected(a, t, "bad_args: feature is a name (1..64 of A-Z a-z 0-9 . _ -)", 11);
    free(t);
    t = envelope(id, 11, "release", "{\"segment\":\"a\",\"cmd_id\":"
                                    "\"00000000-0000-4000-8000-000000000001\"}", 0);
    expect_rejected(a, t, "bad_args: release needs one of cmd_id or segment", 11);
    free(t);
    t = envelope(id, 11, "quarantine", "{\"feature\":\"x\",\"vehicle_state\":{\"rpm\":1}}", 0);
    expect_rejected(a, t, "bad_args: vehicle_state is not a speed_kph gate", 11);
    free(t);

    /* malformed: an ack with seq 0 when a cmd_id for this vehicle can be read... */
    const char *m = "{\"v\":1,\"cmd_id\":\"00000000-0000-4000-8000-0000000000ff\",\"vin\":\"" VIN
                    "\",\"seq\":12,\"action\":\"notify\"}";
    expect_rejected(a, m, "malformed", 0);
    ASSERT_STREQ(last_ack()->cmd_id, "00000000-0000-4000-8000-0000000000ff");
    /* ...else no ack at all. */
    size_t before = nacks;
    ASSERT_EQ(handle(a, "not json", 8, 1, 0), VSOC_EPARSE);
    ASSERT_EQ(handle(a, "{\"cmd_id\":\"00000000-0000-4000-8000-0000000000ff\"}", 50, 1, 0),
              VSOC_EPARSE);
    ASSERT_EQ(handle(a, "{\"cmd_id\":\"x\",\"vin\":\"" VIN "\"}", 30, 1, 0), VSOC_EPARSE);
    ASSERT_EQ(nacks, before);

    /* No rejection moved last_seq; a good command still goes through. */
    ASSERT_EQ(vsoc_vagent_last_seq(a), 10);
    t = envelope(id, 11, "quarantine", QUAR, 0);
    ASSERT_EQ(handle(a, t, T0 + 20, 1, 0), VSOC_ACK_APPLIED);
    free(t);
    status_has(a, "\"counters\":{\"applied\":2,\"rejected\":14,");
    vsoc_vagent_free(a);
}

/* A forged text reusing a cmd_id the SOC will use must not pre-answer it. */
static void test_forgery_does_not_block(void)
{
    vsoc_vagent_t *a = agent_new(NULL);
    char id[37];
    nacks = 0;
    char *good = envelope(id, 1, "quarantine", QUAR, 0);
    char *forged = strdup(good);
    char *p = strstr(forged, "block_external");
    p[0] = 'B';
    ASSERT_EQ(handle(a, forged, T0, 1, 0), VSOC_ACK_REJECTED);
    ASSERT_STREQ(last_ack()->reason, "bad_signature");
    ASSERT_EQ(handle(a, good, T0, 1, 0), VSOC_ACK_APPLIED);
    free(good);
    free(forged);
    vsoc_vagent_free(a);
}

static void test_defer_then_apply(void)
{
    vsoc_vagent_t *a = agent_new(NULL);
    char id[37], gated_id[37];
    nacks = 0;
    char *g = envelope(gated_id, 5, "quarantine", GATED, 0);
    ASSERT_EQ(handle(a, g, T0 + 1, 1, 42), VSOC_ACK_DEFERRED);
    ASSERT_STREQ(last_ack()->reason, "vehicle_state: speed 42.0 kph, needs <= 0");
    ASSERT_EQ(vsoc_vagent_last_seq(a), 5); /* accepted: its seq is used up */
    status_has(a, "\"deferred\":[{\"cmd_id\":\"");
    status_has(a, "\"action\":\"quarantine\",\"expires_at\":\"2026-11-25T10:05:00Z\"");
    status_has(a, "\"segments\":{}");

    /* Resent while deferred: the same deferred ack, still one deferred command. */
    ASSERT_EQ(handle(a, g, T0 + 2, 1, 42), VSOC_ACK_DEFERRED);
    ASSERT_STREQ(acks[1].json, acks[0].json);
    status_has(a, "\"deferred\":1,");

    /* Still moving: nothing happens on tick; unknown speed does not pass either. */
    ASSERT_EQ(tick(a, T0 + 3, 1, 5), 0);
    ASSERT_EQ(tick(a, T0 + 4, 0, 0), 0);
    ASSERT_EQ(nacks, 2);
    /* Stopped: applied on the next tick. */
    ASSERT_EQ(tick(a, T0 + 5, 1, 0), 0);
    ASSERT_EQ(nacks, 3);
    ASSERT_EQ(last_ack()->status, VSOC_ACK_APPLIED);
    ASSERT_STREQ(last_ack()->cmd_id, gated_id);
    ASSERT_EQ(last_ack()->at, T0 + 5);
    ASSERT_EQ(vsoc_vagent_last_seq(a), 5);
    status_has(a, "\"deferred\":[]");
    status_has(a, "\"segments\":{\"telematics\"");
    /* The answer is now the applied ack. */
    ASSERT_EQ(handle(a, g, T0 + 6, 1, 42), VSOC_ACK_APPLIED);
    free(g);

    /* Speed unknown: deferred with that reason. */
    g = envelope(id, 6, "quarantine",
                 "{\"feature\":\"remote_start\",\"vehicle_state\":{\"speed_kph\":{\"lt\":5}}}",
                 0);
    ASSERT_EQ(handle(a, g, T0 + 7, 0, 0), VSOC_ACK_DEFERRED);
    ASSERT_STREQ(last_ack()->reason, "vehicle_state: speed unknown, needs < 5");
    /* A gate that already allows applies at once. */
    free(g);
    g = envelope(id, 7, "collect_logs", "{\"vehicle_state\":{\"speed_kph\":{\"gte\":10}}}", 0);
    ASSERT_EQ(handle(a, g, T0 + 8, 1, 30), VSOC_ACK_APPLIED);
    free(g);
    /* The deferred seq 6 keeps its place although seq 7 was applied after it: applied when
     * its gate opens, and the last seq stays 7. */
    ASSERT_EQ(tick(a, T0 + 9, 1, 0), 0);
    ASSERT_EQ(last_ack()->status, VSOC_ACK_APPLIED);
    ASSERT_EQ(last_ack()->seq, 6);
    ASSERT_EQ(vsoc_vagent_last_seq(a), 7);
    status_has(a, "\"deferred\":[]");
    status_has(a, "\"disabled_features\":{\"remote_start\"");

    /* A deferred command that expires while waiting is rejected as expired. */
    g = envelope(id, 8, "quarantine", GATED, 0);
    ASSERT_EQ(handle(a, g, T0 + 10, 1, 50), VSOC_ACK_DEFERRED);
    ASSERT_EQ(tick(a, T0 + 299, 1, 50), 0);
    ASSERT_EQ(last_ack()->status, VSOC_ACK_DEFERRED);
    ASSERT_EQ(tick(a, T0 + 300, 1, 0), 0);
    ASSERT_EQ(last_ack()->status, VSOC_ACK_REJECTED);
    ASSERT_STREQ(last_ack()->reason, "expired");
    ASSERT_EQ(vsoc_vagent_last_seq(a), 8); /* accepted when deferred, even if never applied */
    free(g);

    /* Two deferred commands apply in seq order; one that arrives after a higher seq was
     * accepted is a replay, deferred or not. */
    char id9[37], id10[37];
    char *g10 = envelope(id10, 10, "quarantine", GATED, 0);
    char *g9 = envelope(id9, 9, "quarantine", "{\"can_ids\":[\"0x0cf\"],\"vehicle_state\":"
                                              "{\"speed_kph\":{\"eq\":0}}}", 0);
    ASSERT_EQ(handle(a, g9, T0 + 20, 1, 3), VSOC_ACK_DEFERRED);
    ASSERT_EQ(handle(a, g10, T0 + 21, 1, 3), VSOC_ACK_DEFERRED);
    char id85[37];
    char *g85 = envelope(id85, 8, "collect_logs", "{}", 0);
    ASSERT_EQ(handle(a, g85, T0 + 21, 1, 3), VSOC_ACK_REJECTED);
    ASSERT_STREQ(last_ack()->reason, "replayed");
    free(g85);
    size_t before = nacks;
    ASSERT_EQ(tick(a, T0 + 22, 1, 0), 0);
    ASSERT_EQ(nacks, before + 2);
    ASSERT_STREQ(acks[before].ack.cmd_id, id9);
    ASSERT_EQ(acks[before].ack.status, VSOC_ACK_APPLIED);
    ASSERT_STREQ(acks[before + 1].ack.cmd_id, id10);
    ASSERT_EQ(acks[before + 1].ack.status, VSOC_ACK_APPLIED);
    ASSERT_EQ(vsoc_vagent_last_seq(a), 10);
    status_has(a, "\"blocked_can_ids\":{\"0x0cf\":{\"cmd_id\":\"");
    free(g9);
    free(g10);
    vsoc_vagent_free(a);
}

static void test_ttl_and_release(void)
{
    vsoc_vagent_t *a = agent_new(NULL);
    char q1[37], q2[37], q3[37], rel[37];
    nacks = 0;
    char *t1 = envelope(q1, 1, "quarantine", QUAR, 10);
    ASSERT_EQ(handle(a, t1, T0, 1, 0), VSOC_ACK_APPLIED);
    status_has(a, "\"until\":\"2026-11-25T10:00:10Z\"");
    ASSERT_EQ(tick(a, T0 + 9, 1, 0), 0);
    ASSERT_EQ(nacks, 1);
    ASSERT_EQ(tick(a, T0 + 10, 1, 0), 0);
    ASSERT_EQ(nacks, 2);
    ASSERT_EQ(last_ack()->status, VSOC_ACK_RELEASED);
    ASSERT_STREQ(last_ack()->reason, "ttl");
    ASSERT_STREQ(last_ack()->cmd_id, q1);
    ASSERT_EQ(last_ack()->seq, 1);
    ASSERT_EQ(last_ack()->at, T0 + 10);
    status_has(a, "\"quarantines\":[]");
    status_has(a, "\"segments\":{}");
    /* Lifted once only; a resend of the quarantine now learns it was released. */
    ASSERT_EQ(tick(a, T0 + 11, 1, 0), 0);
    ASSERT_EQ(nacks, 2);
    ASSERT_EQ(handle(a, t1, T0 + 12, 1, 0), VSOC_ACK_RELEASED);
    free(t1);

    /* Release by cmd_id: a released ack for the quarantine, applied for the release. */
    char *t2 = envelope(q2, 2, "quarantine",
                        "{\"can_ids\":[\"0x123\",\"0x18FEF100\"],\"feature\":\"remote_start\"}",
                        0);
    ASSERT_EQ(handle(a, t2, T0 + 20, 1, 0), VSOC_ACK_APPLIED);
    char *t3 = envelope(q3, 3, "quarantine", QUAR, 0);
    ASSERT_EQ(handle(a, t3, T0 + 21, 1, 0), VSOC_ACK_APPLIED);
    status_has(a, "\"blocked_can_ids\":{\"0x123\":{\"cmd_id\":\"");
    status_has(a, "\"0x18fef100\":{\"cmd_id\":\"");
    status_has(a, "\"disabled_features\":{\"remote_start\":{\"cmd_id\":\"");
    char args[128];
    snprintf(args, sizeof args, "{\"cmd_id\":\"%s\"}", q2);
    char *r = envelope(rel, 4, "release", args, 0);
    size_t before = nacks;
    ASSERT_EQ(handle(a, r, T0 + 22, 1, 0), VSOC_ACK_APPLIED);
    ASSERT_EQ(nacks, before + 2);
    ASSERT_EQ(acks[before].ack.status, VSOC_ACK_RELEASED);
    ASSERT_STREQ(acks[before].ack.cmd_id, q2);
    ASSERT_STREQ(acks[before].ack.reason, "release");
    ASSERT_EQ(acks[before + 1].ack.status, VSOC_ACK_APPLIED);
    ASSERT_STREQ(acks[before + 1].ack.cmd_id, rel);
    status_has(a, "\"blocked_can_ids\":{}");
    status_has(a, "\"disabled_features\":{}");
    status_has(a, "\"segments\":{\"telematics\"");
    free(r);

    /* Release by segment; releasing what is not there is still applied. */
    r = envelope(rel, 5, "release", "{\"segment\":\"telematics\"}", 0);
    ASSERT_EQ(handle(a, r, T0 + 23, 1, 0), VSOC_ACK_APPLIED);
    ASSERT_EQ(acks[nacks - 2].ack.status, VSOC_ACK_RELEASED);
    ASSERT_STREQ(acks[nacks - 2].ack.cmd_id, q3);
    status_has(a, "\"segments\":{}");
    free(r);
    r = envelope(rel, 6, "release", "{\"segment\":\"body\"}", 0);
    before = nacks;
    ASSERT_EQ(handle(a, r, T0 + 24, 1, 0), VSOC_ACK_APPLIED);
    ASSERT_EQ(nacks, before + 1);
    free(r);

    /* Stacked quarantines of one segment: the newer wins; lifting it reveals the older. */
    char qa[37], qb[37];
    char *ta = envelope(qa, 7, "quarantine", QUAR, 0);
    char *tb = envelope(qb, 8, "quarantine",
                        "{\"segment\":\"telematics\",\"mode\":\"isolate\"}", 5);
    ASSERT_EQ(handle(a, ta, T0 + 30, 1, 0), VSOC_ACK_APPLIED);
    ASSERT_EQ(handle(a, tb, T0 + 31, 1, 0), VSOC_ACK_APPLIED);
    status_has(a, "\"segments\":{\"telematics\":{\"mode\":\"isolate\"");
    ASSERT_EQ(tick(a, T0 + 36, 1, 0), 0);
    ASSERT_STREQ(last_ack()->cmd_id, qb);
    status_has(a, "\"segments\":{\"telematics\":{\"mode\":\"block_external\"");
    free(ta);
    free(tb);
    free(t2);
    free(t3);
    vsoc_vagent_free(a);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_persistence(void)
{
    char dir[] = "/tmp/vsoc-agent-core-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char sub[128], path[160];
    snprintf(sub, sizeof sub, "%s/state", dir); /* created by the agent */
    snprintf(path, sizeof path, "%s/state.json", sub);

    vsoc_vagent_t *a = agent_new(sub);
    char q1[37], d1[37], old[37];
    nacks = 0;
    char *t1 = envelope(q1, 3, "quarantine", QUAR, 60);
    char *t2 = envelope(d1, 4, "quarantine", GATED, 0);
    char *t0 = envelope(old, 2, "notify", NULL, 0);
    ASSERT_EQ(handle(a, t1, T0, 1, 0), VSOC_ACK_APPLIED);
    /* Written before the ack was handed out. */
    char *s = read_file(path);
    ASSERT(s != NULL);
    ASSERT(strstr(s, q1) != NULL);
    ASSERT_EQ(handle(a, t2, T0 + 1, 1, 30), VSOC_ACK_DEFERRED);
    char applied_ack[1024];
    strcpy(applied_ack, acks[0].json);
    vsoc_vagent_free(a);

    /* No temp file left behind. */
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ASSERT(access(tmp, F_OK) != 0);

    a = agent_new(sub);
    ASSERT_EQ(vsoc_vagent_last_seq(a), 4); /* the deferred one's seq was accepted */
    status_has(a, "\"quarantines\":[{\"cmd_id\":\"");
    status_has(a, "\"until\":\"2026-11-25T10:01:00Z\"");
    status_has(a, "\"deferred\":[{\"cmd_id\":\"");
    status_has(a, "\"counters\":{\"applied\":1,\"rejected\":0,\"deferred\":1,");
    /* Dedupe survives: the same bytes again. */
    size_t before = nacks;
    ASSERT_EQ(handle(a, t1, T0 + 5, 1, 0), VSOC_ACK_APPLIED);
    ASSERT_STREQ(acks[before].json, applied_ack);
    /* An older seq is replayed. */
    ASSERT_EQ(handle(a, t0, T0 + 5, 1, 0), VSOC_ACK_REJECTED);
    ASSERT_STREQ(last_ack()->reason, "replayed");
    /* The deferred command applies once the vehicle stops; the quarantine's ttl ends. */
    ASSERT_EQ(tick(a, T0 + 6, 1, 0), 0);
    ASSERT_EQ(last_ack()->status, VSOC_ACK_APPLIED);
    ASSERT_STREQ(last_ack()->cmd_id, d1);
    ASSERT_EQ(tick(a, T0 + 60, 1, 0), 0);
    ASSERT_EQ(last_ack()->status, VSOC_ACK_RELEASED);
    ASSERT_STREQ(last_ack()->cmd_id, q1);
    vsoc_vagent_free(a);

    a = agent_new(sub);
    ASSERT_EQ(vsoc_vagent_last_seq(a), 4);
    status_has(a, "\"deferred\":[]");
    status_lacks(a, q1);
    status_has(a, d1);
    vsoc_vagent_free(a);

    /* The state of another vehicle, or a damaged file, refuses to load (starting afresh
     * would forget last_seq and accept replays). */
    vsoc_vagent_opts_t o = {.vin = "WVWZZZ1JZXW000002", .key = veh_priv, .state_dir = sub};
    char err[512];
    ASSERT(vsoc_vagent_new(&o, err, sizeof err) == NULL);
    ASSERT(strstr(err, "holds the state of VIN " VIN) != NULL);
    char saved[1 << 16];
    snprintf(saved, sizeof saved, "%s", read_file(path));
    write_file(path, "{\"v\":1,\"vin\":\"" VIN "\",\"last_seq\":\"x\"}");
    o.vin = VIN;
    ASSERT(vsoc_vagent_new(&o, err, sizeof err) == NULL);
    ASSERT(strstr(err, "last_seq") != NULL);
    write_file(path, "{not json");
    ASSERT(vsoc_vagent_new(&o, err, sizeof err) == NULL);
    ASSERT(strstr(err, "state.json") != NULL);
    write_file(path, saved);
    /* Without a VIN (vsoc-agent status) the state's own VIN is taken. */
    vsoc_vagent_opts_t so = {.state_dir = sub};
    a = vsoc_vagent_new(&so, err, sizeof err);
    ASSERT(a != NULL);
    status_has(a, "\"vin\":\"" VIN "\"");
    ASSERT_EQ(handle(a, t1, T0, 1, 0), VSOC_EINVAL); /* no key: cannot ack */
    vsoc_vagent_free(a);
    /* A public key cannot be the vehicle's signing key. */
    vsoc_vagent_opts_t po = {.vin = VIN, .key = veh_pub};
    ASSERT(vsoc_vagent_new(&po, err, sizeof err) == NULL);
    ASSERT(strstr(err, "public") != NULL);

    free(t0);
    free(t1);
    free(t2);
    unlink(path);
    rmdir(sub);
    rmdir(dir);
}

/* Answers are kept for the newest 1024 cmd_ids; older ones are forgotten (their seq still
 * protects against replay). */
static void test_answered_bound(void)
{
    vsoc_vagent_t *a = agent_new(NULL);
    char id[37], first[37];
    nacks = 0;
    char *t1 = envelope(id, 1, "notify", NULL, 0);
    strcpy(first, id);
    ASSERT_EQ(handle(a, t1, T0, 1, 0), VSOC_ACK_APPLIED);
    for (uint64_t seq = 2; seq <= 1030; seq++) {
        char *t = envelope(id, seq, "notify", NULL, 0);
        ASSERT_EQ(handle(a, t, T0, 1, 0), VSOC_ACK_APPLIED);
        nacks = 0; /* keep the capture small */
        free(t);
    }
    status_has(a, "\"answered\":1024");
    /* The first is forgotten: judged afresh, and its old seq is replayed. */
    ASSERT_EQ(handle(a, t1, T0, 1, 0), VSOC_ACK_REJECTED);
    ASSERT_STREQ(last_ack()->reason, "replayed");
    ASSERT_STREQ(last_ack()->cmd_id, first);
    free(t1);
    vsoc_vagent_free(a);
}

int main(void)
{
    soc_priv = key(soc_priv_pem, 1, "vsoc-test");
    soc_pub = key(soc_pub_pem, 0, "vsoc-test");
    veh_priv = key(veh_priv_pem, 1, "veh-test");
    veh_pub = key(veh_pub_pem, 0, "veh-test");
    rogue_priv = key(veh_priv_pem, 1, "vsoc-rogue");
    test_apply_and_dedupe();
    test_rejections();
    test_forgery_does_not_block();
    test_defer_then_apply();
    test_ttl_and_release();
    test_persistence();
    test_answered_bound();
    vsoc_key_free(soc_priv);
    vsoc_key_free(soc_pub);
    vsoc_key_free(veh_priv);
    vsoc_key_free(veh_pub);
    vsoc_key_free(rogue_priv);
    printf("test_agent_core: ok\n");
    return 0;
}
