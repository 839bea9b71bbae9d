/* fuzz_envelope.c: the command envelope parser on arbitrary bytes: it must report, never
 * crash or leak. Whatever parses is serialized, parsed again (the bytes must not change:
 * serialize is canonical) and verified against a fixed trusted key, so the signature and
 * the later checks see odd envelopes too. The key is the one tests/unit/test_envelope.c
 * signs with; the corpus holds envelopes it signed. */
#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MCowBQYDK2VwAyEAvm67v/z54+vPB5QtsDqX1e4BvsQwGhqja8Jrwo02SX4=\n"
                              "-----END PUBLIC KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static vsoc_key_t *key;
    if (!key) {
        char err[256];
        key = vsoc_key_from_pem(pub_pem, sizeof pub_pem - 1, 0, "vsoc-test", err, sizeof err);
        if (!key) {
            fprintf(stderr, "fuzz_envelope: %s\n", err);
            abort();
        }
    }
    static vsoc_envelope_t e, again;
    char reason[256];
    if (vsoc_envelope_parse((const char *)data, size, &e, reason, sizeof reason) != 0)
        return 0;
    char *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    if (vsoc_envelope_serialize(&e, &s, &n) != 0)
        abort(); /* parse accepted times that serialize cannot write */
    if (vsoc_envelope_parse(s, n, &again, reason, sizeof reason) != 0 ||
        vsoc_envelope_serialize(&again, &s2, &n2) != 0 || n != n2 || memcmp(s, s2, n) != 0)
        abort();
    const vsoc_key_t *trusted[] = {key};
    vsoc_envelope_check_t chk = {.vin = "WVWZZZ1JZXW000001", .now = 1795600810, .last_seq = 41};
    vsoc_envelope_reason_t r = vsoc_envelope_verify(&e, trusted, 1, &chk);
    if (r == VSOC_ENVELOPE_MALFORMED || !vsoc_envelope_reason_name(r))
        abort();
    free(s);
    free(s2);
    return 0;
}
