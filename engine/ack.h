/* ack.h: a vehicle's signed answer to a command (docs/envelope.md, "Acks"): its canonical
 * bytes, signing with the vehicle's own Ed25519 key, strict parsing and verification.
 *
 * Same conventions as envelope.h: canonical bytes depend only on the fields (fixed key order,
 * no whitespace), parse then serialize gives back a canonical ack's exact bytes, nothing here
 * reads the wall clock. Keys are the vsoc_key_t of envelope.h. Thread-safe. */
#ifndef VSOC_ACK_H
#define VSOC_ACK_H

#include "envelope.h"

#define VSOC_ACK_MAX 4096 /* bytes of a whole ack accepted by parse */

typedef enum {
    VSOC_ACK_APPLIED = 0,  /* the action is in force */
    VSOC_ACK_REJECTED,     /* verification failed; reason says why */
    VSOC_ACK_DEFERRED,     /* valid, but the vehicle-state gate does not allow it yet */
    VSOC_ACK_RELEASED,     /* a quarantine was lifted (its ttl ended, or a release) */
} vsoc_ack_status_t;

/* "applied", "rejected", "deferred", "released"; NULL outside the enum. */
const char *vsoc_ack_status_name(vsoc_ack_status_t s);
/* Returns 0 and *out for a known name, -1 otherwise. */
int vsoc_ack_status_from_name(const char *name, vsoc_ack_status_t *out);

/* A plain value; strings NUL-terminated. Canonical key order: v, cmd_id, vin, seq, status,
 * reason, at, key_id; then sig. */
typedef struct vsoc_ack {
    int v;                                     /* always 1 */
    char cmd_id[VSOC_ENVELOPE_STR_MAX + 1];    /* the command answered (a UUID) */
    char vin[VSOC_ENVELOPE_VIN_MAX + 1];       /* the answering vehicle */
    uint64_t seq;                              /* the command's seq (0 when unparseable) */
    vsoc_ack_status_t status;
    char reason[VSOC_ENVELOPE_STR_MAX + 1];    /* "" when applied/released; a
                                                  vsoc_envelope_reason_name() or gate text */
    int64_t at;                                /* vehicle time of the answer, epoch s */
    char key_id[VSOC_ENVELOPE_STR_MAX + 1];    /* the vehicle's key */
    char sig[VSOC_ENVELOPE_STR_MAX + 1];       /* base64 Ed25519 over the canonical bytes */
} vsoc_ack_t;

/* Canonical bytes without sig (caller frees *out). Returns 0, VSOC_EINVAL, VSOC_ENOMEM. */
int vsoc_ack_canonical(const vsoc_ack_t *a, char **out, size_t *len);
/* Canonical bytes with ,"sig":"..." last. */
int vsoc_ack_serialize(const vsoc_ack_t *a, char **out, size_t *len);
/* Strict parse: exactly the nine fields with their types, no duplicates, limits as
 * envelope.h. Returns 0 or VSOC_EPARSE with the reason (naming the field) in reason. */
int vsoc_ack_parse(const char *buf, size_t n, vsoc_ack_t *out, char *reason,
                   size_t reasonlen);
/* Sets key_id and sig. The key must be private. Returns 0 or VSOC_E* with err. */
int vsoc_ack_sign(vsoc_ack_t *a, const vsoc_key_t *key, char *err, size_t errlen);
/* Checks key id among trusted (VSOC_ENVELOPE_UNKNOWN_KEY), then the signature
 * (VSOC_ENVELOPE_BAD_SIGNATURE), then vin when non-NULL (VSOC_ENVELOPE_WRONG_VIN). */
vsoc_envelope_reason_t vsoc_ack_verify(const vsoc_ack_t *a, const vsoc_key_t *const *trusted,
                                       size_t n, const char *vin);

#endif
