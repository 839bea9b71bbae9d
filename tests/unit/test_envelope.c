/* test_envelope.c: the command envelope: canonical bytes, signing, every rejection reason,
 * strict parsing, key generation and key rotation. */
#include "envelope.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fixed test key (also embedded, public half, in tests/fuzz/fuzz_envelope.c). */
static const char test_priv_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                                    "MC4CAQAwBQYDK2VwBCIEIDHNRVIf0CiLNdTpr41OSHlz6e6/64ffoRGzOxvl8ItQ\n"
                                    "-----END PRIVATE KEY-----\n";
static const char test_pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                   "MCowBQYDK2VwAyEAvm67v/z54+vPB5QtsDqX1e4BvsQwGhqja8Jrwo02SX4=\n"
                                   "-----END PUBLIC KEY-----\n";

#define T_ISSUED 1795600800LL /* 2026-11-25T10:00:00Z */
#define VIN "WVWZZZ1JZXW000001"

static const char canonical_example[] =
    "{\"v\":1,\"cmd_id\":\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\",\"vin\":\"WVWZZZ1JZXW000001\","
    "\"seq\":42,\"action\":\"quarantine\",\"args\":{\"mode\":\"block_external\",\"segment\":"
    "\"telematics\"},\"ttl_s\":7200,\"issued_at\":\"2026-11-25T10:00:00Z\",\"expires_at\":"
    "\"2026-11-25T10:05:00Z\",\"incident_id\":\"INC-2026-0042\",\"key_id\":\"vsoc-test\"}";

static void example(vsoc_envelope_t *e)
{
    char err[128];
    memset(e, 0, sizeof *e);
    e->v = 1;
    strcpy(e->cmd_id, "0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30");
    strcpy(e->vin, VIN);
    e->seq = 42;
    strcpy(e->action, "quarantine");
    ASSERT_EQ(vsoc_envelope_set_args(e, "{ \"segment\": \"telematics\", \"mode\": "
                                        "\"block_external\" }",
                                     err, sizeof err),
              0);
    e->ttl_s = 7200;
    e->issued_at = T_ISSUED;
    e->expires_at = T_ISSUED + 300;
    strcpy(e->incident_id, "INC-2026-0042");
    strcpy(e->key_id, "vsoc-test");
}

static vsoc_key_t *test_key(int priv, const char *id)
{
    char err[256];
    const char *pem = priv ? test_priv_pem : test_pub_pem;
    vsoc_key_t *k = vsoc_key_from_pem(pem, strlen(pem), priv, id, err, sizeof err);
    if (!k)
        TEST_FAIL_("key: %s", err);
    return k;
}

static const vsoc_envelope_check_t check_ok = {.vin = VIN, .now = T_ISSUED + 10, .last_seq = 41};

static void test_time(void)
{
    char buf[21];
    int64_t t;
    ASSERT_EQ(vsoc_envelope_time_format(T_ISSUED, buf), 0);
    ASSERT_STREQ(buf, "2026-11-25T10:00:00Z");
    ASSERT_EQ(vsoc_envelope_time_parse("2026-11-25T10:00:00Z", &t), 0);
    ASSERT_EQ(t, T_ISSUED);
    ASSERT_EQ(vsoc_envelope_time_parse("1970-01-01T00:00:00Z", &t), 0);
    ASSERT_EQ(t, 0);
    ASSERT_EQ(vsoc_envelope_time_parse("2024-02-29T23:59:59Z", &t), 0);
    ASSERT_EQ(vsoc_envelope_time_format(t, buf), 0);
    ASSERT_STREQ(buf, "2024-02-29T23:59:59Z");
    ASSERT_EQ(vsoc_envelope_time_format(-1, buf), 0);
    ASSERT_STREQ(buf, "1969-12-31T23:59:59Z");
    ASSERT(vsoc_envelope_time_parse("2023-02-29T00:00:00Z", &t) != 0);
    ASSERT(vsoc_envelope_time_parse("2026-11-25T10:00:00+00:00", &t) != 0);
    ASSERT(vsoc_envelope_time_parse("2026-11-25 10:00:00Z", &t) != 0);
    ASSERT(vsoc_envelope_time_parse("2026-11-25T24:00:00Z", &t) != 0);
    ASSERT(vsoc_envelope_time_format(INT64_MAX, buf) != 0);
}

static void test_canonical(void)
{
    vsoc_envelope_t e;
    example(&e);
    char *c;
    size_t n;
    ASSERT_EQ(vsoc_envelope_canonical(&e, &c, &n), 0);
    ASSERT_STRN_EQ(c, n, canonical_example);
    free(c);
    /* Stable: the same fields give the same bytes; sig is not part of them. */
    strcpy(e.sig, "anything");
    ASSERT_EQ(vsoc_envelope_canonical(&e, &c, &n), 0);
    ASSERT_STRN_EQ(c, n, canonical_example);
    free(c);
    /* Strings are escaped as jansson does. */
    strcpy(e.incident_id, "a\"b\\c\n\xc3\xa9");
    ASSERT_EQ(vsoc_envelope_canonical(&e, &c, &n), 0);
    ASSERT(strstr(c, "\"incident_id\":\"a\\\"b\\\\c\\n\xc3\xa9\"") != NULL);
    free(c);
}

static void test_sign_verify(void)
{
    vsoc_key_t *priv = test_key(1, "vsoc-test"), *pub = test_key(0, "vsoc-test");
    vsoc_envelope_t e;
    char err[256];
    example(&e);
    strcpy(e.key_id, "overwritten");
    ASSERT_EQ(vsoc_envelope_sign(&e, priv, err, sizeof err), 0);
    ASSERT_STREQ(e.key_id, "vsoc-test");
    ASSERT_EQ(strlen(e.sig), VSOC_ENVELOPE_SIG_LEN);
    /* Ed25519 is deterministic: the fixed key gives the documented signature. */
    ASSERT_STREQ(e.sig, "Y+3vRJd5wW/Y8mFW4UuDiQ8tixBViCnYpc5SuJwWYtPywrtuaxlcbx+Cpk5//mslngazrEY"
                        "XpjbwSlWg6/iyBw==");
    const vsoc_key_t *trusted[] = {pub};
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &check_ok), VSOC_ENVELOPE_OK);
    ASSERT_STREQ(vsoc_envelope_reason_name(VSOC_ENVELOPE_OK), "ok");

    /* Serialize, parse back: same envelope, same bytes, still accepted. */
    char *s, *s2;
    size_t n, n2;
    ASSERT_EQ(vsoc_envelope_serialize(&e, &s, &n), 0);
    vsoc_envelope_t p;
    ASSERT_EQ(vsoc_envelope_parse(s, n, &p, err, sizeof err), 0);
    ASSERT_EQ(vsoc_envelope_serialize(&p, &s2, &n2), 0);
    ASSERT_STRN_EQ(s2, n2, s);
    ASSERT_STREQ(p.key_id, e.key_id);
    ASSERT_EQ(p.seq, e.seq);
    ASSERT_EQ(p.issued_at, e.issued_at);
    ASSERT_EQ(vsoc_envelope_verify(&p, trusted, 1, &check_ok), VSOC_ENVELOPE_OK);
    free(s);
    free(s2);

    vsoc_envelope_t b;
    vsoc_envelope_check_t chk;
    /* Forged: one character of sig flipped. */
    b = e;
    b.sig[10] = b.sig[10] == 'A' ? 'B' : 'A';
    ASSERT_STREQ(vsoc_envelope_reason_name(vsoc_envelope_verify(&b, trusted, 1, &check_ok)),
                 "bad_signature");
    /* Tampered field under a valid signature. */
    b = e;
    b.seq = 43;
    ASSERT_STREQ(vsoc_envelope_reason_name(vsoc_envelope_verify(&b, trusted, 1, &check_ok)),
                 "bad_signature");
    /* Not canonical base64 / wrong length. */
    b = e;
    b.sig[VSOC_ENVELOPE_SIG_LEN - 3] = 'B'; /* non-zero padding bits */
    ASSERT_EQ(vsoc_envelope_verify(&b, trusted, 1, &check_ok), VSOC_ENVELOPE_BAD_SIGNATURE);
    strcpy(b.sig, "AAAA");
    ASSERT_EQ(vsoc_envelope_verify(&b, trusted, 1, &check_ok), VSOC_ENVELOPE_BAD_SIGNATURE);
    /* Unknown key id (checked before the signature). */
    b = e;
    strcpy(b.key_id, "vsoc-other");
    ASSERT_STREQ(vsoc_envelope_reason_name(vsoc_envelope_verify(&b, trusted, 1, &check_ok)),
                 "unknown_key");
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 0, &check_ok), VSOC_ENVELOPE_UNKNOWN_KEY);
    /* Wrong VIN; NULL skips the check. */
    chk = check_ok;
    chk.vin = "WVWZZZ1JZXW000002";
    ASSERT_STREQ(vsoc_envelope_reason_name(vsoc_envelope_verify(&e, trusted, 1, &chk)),
                 "wrong_vin");
    chk.vin = NULL;
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &chk), VSOC_ENVELOPE_OK);
    /* Expired: from expires_at on, judged by the caller's now. */
    chk = check_ok;
    chk.now = e.expires_at - 1;
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &chk), VSOC_ENVELOPE_OK);
    chk.now = e.expires_at;
    ASSERT_STREQ(vsoc_envelope_reason_name(vsoc_envelope_verify(&e, trusted, 1, &chk)),
                 "expired");
    /* Replayed: seq <= last accepted. */
    chk = check_ok;
    chk.last_seq = 42;
    ASSERT_STREQ(vsoc_envelope_reason_name(vsoc_envelope_verify(&e, trusted, 1, &chk)),
                 "replayed");
    chk.last_seq = 100;
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &chk), VSOC_ENVELOPE_REPLAYED);
    /* Order: an expired replay reports expired, a wrong-VIN expired one wrong_vin. */
    chk.now = e.expires_at + 1;
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &chk), VSOC_ENVELOPE_EXPIRED);
    chk.vin = "OTHER";
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &chk), VSOC_ENVELOPE_WRONG_VIN);
    /* Unknown action, properly signed. */
    b = e;
    strcpy(b.action, "self_destruct");
    ASSERT_EQ(vsoc_envelope_sign(&b, priv, err, sizeof err), 0);
    ASSERT_STREQ(vsoc_envelope_reason_name(vsoc_envelope_verify(&b, trusted, 1, &check_ok)),
                 "unknown_action");
    /* Every known action passes. */
    static const char *const acts[] = {"quarantine", "release", "collect_logs",
                                       "rotate_credentials", "notify", "escalate"};
    for (size_t i = 0; i < 6; i++) {
        b = e;
        strcpy(b.action, acts[i]);
        ASSERT_EQ(vsoc_envelope_sign(&b, priv, err, sizeof err), 0);
        ASSERT_EQ(vsoc_envelope_verify(&b, trusted, 1, &check_ok), VSOC_ENVELOPE_OK);
    }
    /* A public key cannot sign. */
    ASSERT(vsoc_envelope_sign(&b, pub, err, sizeof err) != 0);
    ASSERT_STREQ(vsoc_envelope_reason_name((vsoc_envelope_reason_t)99), "invalid");
    vsoc_key_free(priv);
    vsoc_key_free(pub);
}

/* Parses text and expects a failure whose reason contains want. */
static void bad(const char *text, const char *want)
{
    vsoc_envelope_t e;
    char reason[256] = "";
    if (vsoc_envelope_parse(text, strlen(text), &e, reason, sizeof reason) != VSOC_EPARSE)
        TEST_FAIL_("parsed, expected \"%s\": %s", want, text);
    if (!strstr(reason, want))
        TEST_FAIL_("reason \"%s\" lacks \"%s\"", reason, want);
}

/* The canonical example with sig, then the text with from replaced by to. */
static void bad_sub(const char *from, const char *to, const char *want)
{
    char text[4096];
    snprintf(text, sizeof text, "%.*s,\"sig\":\"x\"}", (int)strlen(canonical_example) - 1,
             canonical_example);
    char *at = strstr(text, from);
    if (!at)
        TEST_FAIL_("no \"%s\" in the example", from);
    static char out[16384];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    bad(out, want);
}

static void test_parse(void)
{
    char text[4096];
    vsoc_envelope_t e;
    char reason[256];
    snprintf(text, sizeof text, "%.*s,\"sig\":\"x\"}", (int)strlen(canonical_example) - 1,
             canonical_example);
    ASSERT_EQ(vsoc_envelope_parse(text, strlen(text), &e, reason, sizeof reason), 0);
    ASSERT_EQ(e.seq, 42);
    ASSERT_STREQ(e.args, "{\"mode\":\"block_external\",\"segment\":\"telematics\"}");
    ASSERT_EQ(e.expires_at, T_ISSUED + 300);
    /* A ttl beyond a year is refused (the agent adds it to its clock). */
    {
        char big[4096];
        const char *at = strstr(text, "\"ttl_s\":7200");
        ASSERT(at != NULL);
        snprintf(big, sizeof big, "%.*s\"ttl_s\":31536001%s", (int)(at - text), text,
                 at + strlen("\"ttl_s\":7200"));
        ASSERT_EQ(vsoc_envelope_parse(big, strlen(big), &e, reason, sizeof reason),
                  VSOC_EPARSE);
        ASSERT(strstr(reason, "ttl_s: 31536001 is more than 31536000") != NULL);
    }
    /* Whitespace and key order do not matter to parse, only to the signature. */
    const char *loose = "{ \"sig\":\"x\", \"key_id\":\"k\", \"incident_id\":\"\", \"v\":1,"
                        "\"cmd_id\":\"0B9A3C2E-6F1D-4E8A-9C47-2D5E8F1A7B30\", \"vin\":\"V\","
                        "\"seq\":0, \"action\":\"a\", \"args\":{}, \"ttl_s\":0,"
                        "\"issued_at\":\"2026-11-25T10:00:00Z\","
                        "\"expires_at\":\"2026-11-25T10:00:00Z\" }";
    ASSERT_EQ(vsoc_envelope_parse(loose, strlen(loose), &e, reason, sizeof reason), 0);
    ASSERT_STREQ(e.args, "{}");

    bad("", "envelope:");
    bad("[]", "not a JSON object");
    bad("{\"v\":1}", "cmd_id: missing");
    bad(canonical_example, "sig: missing");
    bad_sub("\"seq\":42,", "", "seq: missing");
    bad_sub("\"v\":1,", "\"v\":1,\"extra\":true,", "unknown field \"extra\"");
    bad_sub("\"v\":1,", "\"v\":2,", "v: unsupported version 2");
    bad_sub("\"v\":1,", "\"v\":\"1\",", "v: not an integer");
    bad_sub("\"v\":1,", "\"v\":1,\"v\":1,", "duplicate");
    bad_sub("\"seq\":42", "\"seq\":42.0", "seq: not an integer");
    bad_sub("\"seq\":42", "\"seq\":-1", "seq: negative");
    bad_sub("\"ttl_s\":7200", "\"ttl_s\":\"7200\"", "ttl_s: not an integer");
    bad_sub("\"action\":\"quarantine\"", "\"action\":7", "action: not a string");
    bad_sub("\"args\":{\"mode\":\"block_external\",\"segment\":\"telematics\"}", "\"args\":[]",
            "args: not a JSON object");
    bad_sub("\"vin\":\"WVWZZZ1JZXW000001\"", "\"vin\":\"WVWZZZ1JZXW000001WVWZZZ1JZXW000001\"",
            "vin: 34 bytes, more than 32");
    bad_sub("\"vin\":\"WVWZZZ1JZXW000001\"", "\"vin\":\"\"", "vin: empty");
    bad_sub("\"cmd_id\":\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\"", "\"cmd_id\":\"42\"",
            "cmd_id: \"42\" is not a UUID");
    bad_sub("\"issued_at\":\"2026-11-25T10:00:00Z\"", "\"issued_at\":1795600800",
            "issued_at: not a string");
    bad_sub("\"expires_at\":\"2026-11-25T10:05:00Z\"", "\"expires_at\":\"2026-11-25T10:05:00\"",
            "expires_at: \"2026-11-25T10:05:00\" is not YYYY-MM-DDTHH:MM:SSZ");
    bad_sub("\"key_id\":\"vsoc-test\"", "\"key_id\":null", "key_id: not a string");
    bad_sub("\"key_id\":\"vsoc-test\"", "\"key_id\":\"a\\u0000b\"", "");

    char big[6000];
    int n = snprintf(big, sizeof big, "\"args\":{\"k\":\"");
    memset(big + n, 'x', 4100);
    strcpy(big + n + 4100, "\"}");
    bad_sub("\"args\":{\"mode\":\"block_external\",\"segment\":\"telematics\"}", big,
            "args: 4108 bytes, more than 4096");
    char longs[400];
    n = snprintf(longs, sizeof longs, "\"incident_id\":\"");
    memset(longs + n, 'i', 257);
    strcpy(longs + n + 257, "\"");
    bad_sub("\"incident_id\":\"INC-2026-0042\"", longs, "incident_id: 257 bytes, more than 256");
    static char huge[VSOC_ENVELOPE_MAX + 10];
    memset(huge, ' ', sizeof huge - 1);
    bad(huge, "more than 16384");
}

static void test_keygen_rotation(void)
{
    char dir[] = "/tmp/vsoc-envelope-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char err[512], path[256];
    ASSERT_EQ(vsoc_key_generate(dir, "vsoc-2026-01", err, sizeof err), 0);
    ASSERT_EQ(vsoc_key_generate(dir, "vsoc-2026-02", err, sizeof err), 0);
    struct stat st;
    snprintf(path, sizeof path, "%s/vsoc-2026-01.key", dir);
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    /* Never overwrites. */
    ASSERT(vsoc_key_generate(dir, "vsoc-2026-01", err, sizeof err) != 0);
    ASSERT(strstr(err, "already exists") != NULL);
    ASSERT(vsoc_key_generate(dir, "../evil", err, sizeof err) != 0);
    ASSERT(strstr(err, "invalid key id") != NULL);

    vsoc_key_t *k1 = vsoc_key_load_private(path, NULL, err, sizeof err);
    if (!k1)
        TEST_FAIL_("%s", err);
    ASSERT_STREQ(vsoc_key_id(k1), "vsoc-2026-01");
    snprintf(path, sizeof path, "%s/vsoc-2026-02.key", dir);
    vsoc_key_t *k2 = vsoc_key_load_private(path, NULL, err, sizeof err);
    ASSERT(k2 != NULL);
    snprintf(path, sizeof path, "%s/vsoc-2026-01.pub", dir);
    vsoc_key_t *p1 = vsoc_key_load_public(path, NULL, err, sizeof err);
    ASSERT(p1 != NULL);
    ASSERT_STREQ(vsoc_key_id(p1), "vsoc-2026-01");
    snprintf(path, sizeof path, "%s/vsoc-2026-02.pub", dir);
    vsoc_key_t *p2 = vsoc_key_load_public(path, NULL, err, sizeof err);
    ASSERT(p2 != NULL);

    /* Loading errors name the file and carry OpenSSL's message. */
    ASSERT(vsoc_key_load_public("/nonexistent/x.pub", NULL, err, sizeof err) == NULL);
    ASSERT(strstr(err, "/nonexistent/x.pub: No such file") != NULL);
    snprintf(path, sizeof path, "%s/vsoc-2026-01.key", dir);
    ASSERT(vsoc_key_load_public(path, NULL, err, sizeof err) == NULL);
    ASSERT(strstr(err, "cannot read public key") != NULL);
    ASSERT(strstr(err, "error:") != NULL);

    /* Rotation: both keys trusted, either signs. */
    const vsoc_key_t *trusted[] = {p1, p2};
    vsoc_envelope_t e;
    example(&e);
    ASSERT_EQ(vsoc_envelope_sign(&e, k1, err, sizeof err), 0);
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 2, &check_ok), VSOC_ENVELOPE_OK);
    ASSERT_EQ(vsoc_envelope_sign(&e, k2, err, sizeof err), 0);
    ASSERT_STREQ(e.key_id, "vsoc-2026-02");
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 2, &check_ok), VSOC_ENVELOPE_OK);
    /* Key retired: only the old one trusted. */
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 1, &check_ok), VSOC_ENVELOPE_UNKNOWN_KEY);
    /* Signed by key 2 but claiming key 1's id. */
    strcpy(e.key_id, "vsoc-2026-01");
    ASSERT_EQ(vsoc_envelope_verify(&e, trusted, 2, &check_ok), VSOC_ENVELOPE_BAD_SIGNATURE);

    vsoc_key_free(k1);
    vsoc_key_free(k2);
    vsoc_key_free(p1);
    vsoc_key_free(p2);
    vsoc_key_free(NULL);
    static const char *const names[] = {"vsoc-2026-01.key", "vsoc-2026-01.pub",
                                        "vsoc-2026-02.key", "vsoc-2026-02.pub"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    test_time();
    test_canonical();
    test_sign_verify();
    test_parse();
    test_keygen_rotation();
    printf("test_envelope: ok\n");
    return 0;
}
