/* fuzz_ack.c: the ack parser on arbitrary bytes: it must report, never crash or leak.
 * Whatever parses is serialized, parsed again (the bytes must not change: serialize is
 * canonical) and verified against a fixed vehicle key, so the signature check sees odd acks
 * too. The key is the vehicle key of tests/unit/test_ack.c; the corpus holds acks it
 * signed. */
#include "ack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MCowBQYDK2VwAyEAn7B9dUDlnJ0WATsWrD0yhbCv/kDNDngYXXfci05R2fo=\n"
                              "-----END PUBLIC KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static vsoc_key_t *key;
    if (!key) {
        char err[256];
        key = vsoc_key_from_pem(pub_pem, sizeof pub_pem - 1, 0, "veh-test", err, sizeof err);
        if (!key) {
            fprintf(stderr, "fuzz_ack: %s\n", err);
            abort();
        }
    }
    vsoc_ack_t a, again;
    char reason[256];
    if (vsoc_ack_parse((const char *)data, size, &a, reason, sizeof reason) != 0) {
        if (!reason[0])
            abort(); /* a failure always says why */
        return 0;
    }
    char *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    if (vsoc_ack_serialize(&a, &s, &n) != 0)
        abort(); /* parse accepted a status or time that serialize cannot write */
    if (vsoc_ack_parse(s, n, &again, reason, sizeof reason) != 0 ||
        vsoc_ack_serialize(&again, &s2, &n2) != 0 || n != n2 || memcmp(s, s2, n) != 0)
        abort();
    const vsoc_key_t *trusted[] = {key};
    vsoc_envelope_reason_t r = vsoc_ack_verify(&a, trusted, 1, "WVWZZZ1JZXW000001");
    if (r != VSOC_ENVELOPE_OK && r != VSOC_ENVELOPE_UNKNOWN_KEY &&
        r != VSOC_ENVELOPE_BAD_SIGNATURE && r != VSOC_ENVELOPE_WRONG_VIN)
        abort();
    free(s);
    free(s2);
    return 0;
}
