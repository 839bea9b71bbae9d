/* test_ack.c: the vehicle's signed ack: canonical bytes, signing, verification (including
 * every kind of tampering) and strict parsing. */
#include "ack.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A fixed vehicle key (also in tests/unit/test_agent_core.c and tests/fuzz/fuzz_ack.c). */
static const char veh_priv_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                                   "MC4CAQAwBQYDK2VwBCIEIAS6zR4TtmWEYQcg5J464D+BaufUTE10KMueewzxKPGP\n"
                                   "-----END PRIVATE KEY-----\n";
static const char veh_pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                  "MCowBQYDK2VwAyEAn7B9dUDlnJ0WATsWrD0yhbCv/kDNDngYXXfci05R2fo=\n"
                                  "-----END PUBLIC KEY-----\n";
/* The SOC test key of test_envelope.c: a key that is not the vehicle's. */
static const char other_pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                    "MCowBQYDK2VwAyEAvm67v/z54+vPB5QtsDqX1e4BvsQwGhqja8Jrwo02SX4=\n"
                                    "-----END PUBLIC KEY-----\n";

#define VIN "WVWZZZ1JZXW000001"
#define T_AT 1795600810LL /* 2026-11-25T10:00:10Z */

static const char canonical_example[] =
    "{\"v\":1,\"cmd_id\":\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\",\"vin\":\"WVWZZZ1JZXW000001\","
    "\"seq\":42,\"status\":\"deferred\",\"reason\":\"vehicle_state: speed 42.0 kph, needs <= "
    "0\",\"at\":\"2026-11-25T10:00:10Z\",\"key_id\":\"veh-test\"}";

static void example(vsoc_ack_t *a)
{
    memset(a, 0, sizeof *a);
    a->v = 1;
    strcpy(a->cmd_id, "0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30");
    strcpy(a->vin, VIN);
    a->seq = 42;
    a->status = VSOC_ACK_DEFERRED;
    strcpy(a->reason, "vehicle_state: speed 42.0 kph, needs <= 0");
    a->at = T_AT;
    strcpy(a->key_id, "veh-test");
}

static vsoc_key_t *key(const char *pem, int priv, const char *id)
{
    char err[256];
    vsoc_key_t *k = vsoc_key_from_pem(pem, strlen(pem), priv, id, err, sizeof err);
    if (!k)
        TEST_FAIL_("key: %s", err);
    return k;
}

static void test_status_names(void)
{
    vsoc_ack_status_t s;
    static const char *const names[] = {"applied", "rejected", "deferred", "released"};
    for (int i = 0; i < 4; i++) {
        ASSERT_STREQ(vsoc_ack_status_name((vsoc_ack_status_t)i), names[i]);
        ASSERT_EQ(vsoc_ack_status_from_name(names[i], &s), 0);
        ASSERT_EQ(s, i);
    }
    ASSERT(vsoc_ack_status_name((vsoc_ack_status_t)4) == NULL);
    ASSERT(vsoc_ack_status_name((vsoc_ack_status_t)-1) == NULL);
    ASSERT_EQ(vsoc_ack_status_from_name("Applied", &s), -1);
    ASSERT_EQ(vsoc_ack_status_from_name("", &s), -1);
}

static void test_canonical(void)
{
    vsoc_ack_t a;
    example(&a);
    char *c;
    size_t n;
    ASSERT_EQ(vsoc_ack_canonical(&a, &c, &n), 0);
    ASSERT_STRN_EQ(c, n, canonical_example);
    free(c);
    /* Escaping is jansson's, as in envelopes. */
    strcpy(a.reason, "a\"b\\c\n/é");
    ASSERT_EQ(vsoc_ack_canonical(&a, &c, &n), 0);
    ASSERT(strstr(c, "\"reason\":\"a\\\"b\\\\c\\n/é\"") != NULL);
    free(c);
    /* A status outside the enum or a time that cannot be written is refused. */
    example(&a);
    a.status = (vsoc_ack_status_t)9;
    ASSERT_EQ(vsoc_ack_canonical(&a, &c, &n), VSOC_EINVAL);
    example(&a);
    a.at = INT64_MAX;
    ASSERT_EQ(vsoc_ack_serialize(&a, &c, &n), VSOC_EINVAL);
}

static void test_sign_verify(void)
{
    vsoc_key_t *priv = key(veh_priv_pem, 1, "veh-test"), *pub = key(veh_pub_pem, 0, "veh-test");
    vsoc_key_t *other = key(other_pub_pem, 0, "veh-test"), *pub2 = key(veh_pub_pem, 0, "veh-2");
    char err[256], *s, *s2;
    size_t n, n2;
    vsoc_ack_t a, b;
    example(&a);
    a.key_id[0] = 0;
    ASSERT_EQ(vsoc_ack_sign(&a, priv, err, sizeof err), 0);
    ASSERT_STREQ(a.key_id, "veh-test");
    ASSERT_EQ(strlen(a.sig), VSOC_ENVELOPE_SIG_LEN);
    /* Ed25519 is deterministic: signing again gives the same bytes. */
    vsoc_ack_t again;
    example(&again);
    ASSERT_EQ(vsoc_ack_sign(&again, priv, err, sizeof err), 0);
    ASSERT_STREQ(again.sig, a.sig);

    /* The signature docs/envelope.md shows for its example ack. */
    vsoc_ack_t doc;
    example(&doc);
    doc.status = VSOC_ACK_APPLIED;
    doc.reason[0] = 0;
    ASSERT_EQ(vsoc_ack_sign(&doc, priv, err, sizeof err), 0);
    ASSERT_STREQ(doc.sig, "/zEDc9Om88xB9qxQNbm9xbn9kowBBFMVtCaaaKYXsgiCM56NaRsZ110bSMNIToPW6lMUe"
                          "DPhp68lXFG4Cxh4DA==");

    /* The serialized ack is the canonical bytes with sig last; it parses back to the same
     * bytes. */
    ASSERT_EQ(vsoc_ack_serialize(&a, &s, &n), 0);
    ASSERT(n > strlen(canonical_example));
    ASSERT(memcmp(s, canonical_example, strlen(canonical_example) - 1) == 0);
    ASSERT(strstr(s, ",\"sig\":\"") == s + strlen(canonical_example) - 1);
    ASSERT_EQ(vsoc_ack_parse(s, n, &b, err, sizeof err), 0);
    ASSERT_EQ(vsoc_ack_serialize(&b, &s2, &n2), 0);
    ASSERT_EQ(n, n2);
    ASSERT(memcmp(s, s2, n) == 0);
    free(s);
    free(s2);

    const vsoc_key_t *trusted[] = {pub};
    ASSERT_EQ(vsoc_ack_verify(&b, trusted, 1, VIN), VSOC_ENVELOPE_OK);
    ASSERT_EQ(vsoc_ack_verify(&b, trusted, 1, NULL), VSOC_ENVELOPE_OK);
    ASSERT_EQ(vsoc_ack_verify(&b, trusted, 1, "WVWZZZ1JZXW000002"), VSOC_ENVELOPE_WRONG_VIN);
    const vsoc_key_t *none[] = {pub2};
    ASSERT_EQ(vsoc_ack_verify(&b, none, 1, VIN), VSOC_ENVELOPE_UNKNOWN_KEY);
    ASSERT_EQ(vsoc_ack_verify(&b, trusted, 0, VIN), VSOC_ENVELOPE_UNKNOWN_KEY);
    /* The same id on a different key: the signature does not verify. */
    const vsoc_key_t *wrong[] = {other};
    ASSERT_EQ(vsoc_ack_verify(&b, wrong, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);
    /* Several keys with the id (rotation): any may verify. */
    const vsoc_key_t *both[] = {other, pub};
    ASSERT_EQ(vsoc_ack_verify(&b, both, 2, VIN), VSOC_ENVELOPE_OK);

    /* Every field is covered by the signature. */
    vsoc_ack_t t;
    t = b; t.status = VSOC_ACK_APPLIED;
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);
    t = b; t.seq = 43;
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);
    t = b; t.cmd_id[0] = '1';
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);
    t = b; t.reason[0] = 0;
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);
    t = b; t.at++;
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);
    t = b; strcpy(t.vin, "WVWZZZ1JZXW000002");
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, "WVWZZZ1JZXW000002"),
              VSOC_ENVELOPE_BAD_SIGNATURE);
    t = b; t.sig[5] = t.sig[5] == 'A' ? 'B' : 'A';
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);
    /* A second spelling of the same signature bits is refused (non-zero pad bits). */
    /* The last digit before "==" carries 4 pad bits, zero in the canonical spelling (digit
     * values 0, 16, 32, 48); setting the lowest keeps the 64 bytes and changes the text. */
    t = b;
    const char *canon = "AQgw", *padded = "BRhx", *at = strchr(canon, t.sig[85]);
    ASSERT(at != NULL && t.sig[85] != 0);
    t.sig[85] = padded[at - canon];
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);
    t = b; strcpy(t.sig, "not base64");
    ASSERT_EQ(vsoc_ack_verify(&t, trusted, 1, VIN), VSOC_ENVELOPE_BAD_SIGNATURE);

    /* A public key cannot sign. */
    example(&t);
    ASSERT_EQ(vsoc_ack_sign(&t, pub, err, sizeof err), VSOC_EINVAL);
    ASSERT(strstr(err, "public") != NULL);
    vsoc_key_free(priv);
    vsoc_key_free(pub);
    vsoc_key_free(pub2);
    vsoc_key_free(other);
}

static void expect_bad(const char *json, const char *want)
{
    vsoc_ack_t a;
    char reason[256] = "";
    int rc = vsoc_ack_parse(json, strlen(json), &a, reason, sizeof reason);
    if (rc != VSOC_EPARSE)
        TEST_FAIL_("parsed (%d) but should not: %s", rc, json);
    if (!strstr(reason, want))
        TEST_FAIL_("reason \"%s\" does not mention \"%s\" for %s", reason, want, json);
}

#define HEAD "{\"v\":1,\"cmd_id\":\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\",\"vin\":\"V1\","
#define GOOD_SIG "\"sig\":\"" \
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\""
#define TAIL "\"at\":\"2026-11-25T10:00:10Z\",\"key_id\":\"k\"," GOOD_SIG "}"

static void test_parse(void)
{
    vsoc_ack_t a;
    char reason[256];
    const char *ok = HEAD "\"seq\":0,\"status\":\"released\",\"reason\":\"\"," TAIL;
    ASSERT_EQ(vsoc_ack_parse(ok, strlen(ok), &a, reason, sizeof reason), 0);
    ASSERT_EQ(a.status, VSOC_ACK_RELEASED);
    ASSERT_EQ(a.seq, 0);
    ASSERT_STREQ(a.vin, "V1");
    ASSERT_EQ(a.at, T_AT);
    /* Key order and whitespace do not matter to the parser. */
    const char *spaced = "{ \"sig\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                         "AAAAAAAAAAAAAAAAAAAAAAAAAA==\", \"key_id\": \"k\", \"at\": "
                         "\"2026-11-25T10:00:10Z\", \"reason\": \"r\", \"status\": \"applied\", "
                         "\"seq\": 7, \"vin\": \"V1\", \"cmd_id\": "
                         "\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\", \"v\": 1 }\n";
    ASSERT_EQ(vsoc_ack_parse(spaced, strlen(spaced), &a, reason, sizeof reason), 0);
    ASSERT_EQ(a.seq, 7);
    ASSERT_STREQ(a.reason, "r");

    expect_bad("[]", "not a JSON object");
    expect_bad("{", "ack:");
    expect_bad(HEAD "\"seq\":0,\"status\":\"applied\",\"reason\":\"\"," TAIL "x", "ack:");
    expect_bad(HEAD "\"seq\":0,\"status\":\"applied\",\"reason\":\"\",\"extra\":1," TAIL,
               "unknown field \"extra\"");
    expect_bad(HEAD "\"seq\":0,\"status\":\"applied\"," TAIL, "reason: missing");
    expect_bad(HEAD "\"seq\":0,\"seq\":1,\"status\":\"applied\",\"reason\":\"\"," TAIL,
               "duplicate");
    expect_bad(HEAD "\"seq\":-1,\"status\":\"applied\",\"reason\":\"\"," TAIL, "seq: negative");
    expect_bad(HEAD "\"seq\":\"1\",\"status\":\"applied\",\"reason\":\"\"," TAIL,
               "seq: not an integer");
    expect_bad(HEAD "\"seq\":1.5,\"status\":\"applied\",\"reason\":\"\"," TAIL,
               "seq: not an integer");
    expect_bad(HEAD "\"seq\":1,\"status\":\"done\",\"reason\":\"\"," TAIL, "status:");
    expect_bad(HEAD "\"seq\":1,\"status\":1,\"reason\":\"\"," TAIL, "status: not a string");
    expect_bad(HEAD "\"seq\":1,\"status\":\"applied\",\"reason\":null," TAIL,
               "reason: not a string");
    expect_bad("{\"v\":2,\"cmd_id\":\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\",\"vin\":\"V1\","
               "\"seq\":1,\"status\":\"applied\",\"reason\":\"\"," TAIL,
               "v: unsupported version 2");
    expect_bad("{\"v\":1,\"cmd_id\":\"cmd-1\",\"vin\":\"V1\",\"seq\":1,\"status\":\"applied\","
               "\"reason\":\"\"," TAIL,
               "cmd_id: \"cmd-1\" is not a UUID");
    expect_bad("{\"v\":1,\"cmd_id\":\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\",\"vin\":\"\","
               "\"seq\":1,\"status\":\"applied\",\"reason\":\"\"," TAIL,
               "vin: empty");
    expect_bad("{\"v\":1,\"cmd_id\":\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\",\"vin\":"
               "\"123456789012345678901234567890123\",\"seq\":1,\"status\":\"applied\","
               "\"reason\":\"\"," TAIL,
               "vin: 33 bytes, more than 32");
    expect_bad("{\"v\":1,\"cmd_id\":\"0b9a3c2e-6f1d-4e8a-9c47-2d5e8f1a7b30\",\"vin\":\"V\\u0000"
               "1\",\"seq\":1,\"status\":\"applied\",\"reason\":\"\"," TAIL,
               "not allowed"); /* jansson refuses NUL in strings before we see them */
    expect_bad(HEAD "\"seq\":1,\"status\":\"applied\",\"reason\":\"\",\"at\":"
                    "\"2026-11-25T10:00:10+00:00\",\"key_id\":\"k\"," GOOD_SIG "}",
               "at: ");
    expect_bad(HEAD "\"seq\":1,\"status\":\"applied\",\"reason\":\"\",\"at\":"
                    "\"2026-11-25T10:00:10Z\",\"key_id\":\"\"," GOOD_SIG "}",
               "key_id: empty");

    /* Size limits: a reason of 257 bytes, and a whole ack over VSOC_ACK_MAX. */
    char big[VSOC_ACK_MAX + 64];
    char r257[258];
    memset(r257, 'r', 257);
    r257[257] = 0;
    snprintf(big, sizeof big, HEAD "\"seq\":1,\"status\":\"applied\",\"reason\":\"%s\"," TAIL,
             r257);
    expect_bad(big, "reason: 257 bytes, more than 256");
    memset(big, ' ', sizeof big);
    memcpy(big, ok, strlen(ok));
    ASSERT_EQ(vsoc_ack_parse(big, VSOC_ACK_MAX, &a, reason, sizeof reason), 0);
    ASSERT_EQ(vsoc_ack_parse(big, VSOC_ACK_MAX + 1, &a, reason, sizeof reason), VSOC_EPARSE);
    ASSERT(strstr(reason, "more than 4096") != NULL);
    /* reason and reasonlen may be NULL/0. */
    ASSERT_EQ(vsoc_ack_parse("[]", 2, &a, NULL, 0), VSOC_EPARSE);
}

int main(void)
{
    test_status_names();
    test_canonical();
    test_sign_verify();
    test_parse();
    printf("test_ack: ok\n");
    return 0;
}
