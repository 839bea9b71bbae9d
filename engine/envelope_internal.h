/* envelope_internal.h: what envelope.c shares with ack.c, which signs and verifies with the
 * same keys: the key's layout and the signature helpers. Not for use outside engine/. */
#ifndef VSOC_ENVELOPE_INTERNAL_H
#define VSOC_ENVELOPE_INTERNAL_H

#include "envelope.h"

#include <openssl/evp.h>

struct vsoc_key {
    EVP_PKEY *pkey;
    int is_private;
    char id[VSOC_KEY_ID_MAX + 1];
};

/* Decodes a base64 signature into raw[64]; only the one canonical spelling of 64 bytes is
 * accepted. Returns 0 or -1. */
int vsoc_envelope_sig_decode(const char *sig, unsigned char raw[64]);
/* 1 when raw is k's Ed25519 signature of tbs[0..n). Clears OpenSSL's error queue. */
int vsoc_envelope_sig_ok(const vsoc_key_t *k, const unsigned char *tbs, size_t n,
                         const unsigned char raw[64]);

#endif
