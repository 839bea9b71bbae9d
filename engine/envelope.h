/* envelope.h: the signed command envelope (docs/envelope.md): the value a SOC sends to a
 * vehicle, its canonical bytes, Ed25519 keys, signing, strict parsing and verification.
 *
 * Invariants: the canonical bytes depend only on the envelope's fields (fixed key order, no
 * whitespace, args with sorted keys), so signer and verifier agree byte for byte; parse then
 * serialize gives back a canonical envelope's exact bytes. Nothing here reads the wall
 * clock: expiry is judged against a `now` the caller passes. All functions are thread-safe
 * (OpenSSL's error queue is per thread). */
#ifndef VSOC_ENVELOPE_H
#define VSOC_ENVELOPE_H

#include "vsoc.h"

#include <stddef.h>
#include <stdint.h>

#define VSOC_ENVELOPE_VERSION 1
#define VSOC_ENVELOPE_VIN_MAX 32    /* bytes */
#define VSOC_ENVELOPE_STR_MAX 256   /* bytes, every other string field */
#define VSOC_ENVELOPE_ARGS_MAX 4096 /* bytes of args' canonical JSON */
#define VSOC_ENVELOPE_MAX 16384     /* bytes of a whole envelope accepted by parse */
#define VSOC_ENVELOPE_SIG_LEN 88    /* base64 of a 64-byte Ed25519 signature */
#define VSOC_ENVELOPE_TTL_MAX 31536000 /* seconds (365 days) a ttl_s may ask for */
#define VSOC_KEY_ID_MAX 64          /* key ids are [A-Za-z0-9._-], not starting with '.' */

/* A command. A plain value: no pointers, copy it freely. Strings are NUL-terminated UTF-8;
 * times are epoch seconds (UTC), written as "YYYY-MM-DDTHH:MM:SSZ". */
typedef struct vsoc_envelope {
    int v;                                     /* always VSOC_ENVELOPE_VERSION */
    char cmd_id[VSOC_ENVELOPE_STR_MAX + 1];    /* UUID, 8-4-4-4-12 hex digits */
    char vin[VSOC_ENVELOPE_VIN_MAX + 1];       /* target vehicle */
    uint64_t seq;                              /* per vehicle, strictly increasing */
    char action[VSOC_ENVELOPE_STR_MAX + 1];    /* see vsoc_envelope_action_known() */
    char args[VSOC_ENVELOPE_ARGS_MAX + 1];     /* a JSON object as canonical text */
    int64_t ttl_s;                             /* how long the action stays applied, >= 0 */
    int64_t issued_at;
    int64_t expires_at;                        /* the command is void from this second on */
    char incident_id[VSOC_ENVELOPE_STR_MAX + 1];
    char key_id[VSOC_ENVELOPE_STR_MAX + 1];    /* which trusted key signed it */
    char sig[VSOC_ENVELOPE_STR_MAX + 1];       /* base64 Ed25519 over the canonical bytes */
} vsoc_envelope_t;

/* Why an envelope was rejected, in the order verify checks (PLAYBOOKS.md). */
typedef enum {
    VSOC_ENVELOPE_OK = 0,
    VSOC_ENVELOPE_MALFORMED,      /* parse failed (verify never returns it) */
    VSOC_ENVELOPE_UNKNOWN_KEY,    /* key_id is not among the trusted keys */
    VSOC_ENVELOPE_BAD_SIGNATURE,  /* sig does not verify with that key */
    VSOC_ENVELOPE_WRONG_VIN,
    VSOC_ENVELOPE_EXPIRED,        /* now >= expires_at */
    VSOC_ENVELOPE_REPLAYED,       /* seq <= the last accepted seq */
    VSOC_ENVELOPE_UNKNOWN_ACTION,
} vsoc_envelope_reason_t;

/* "ok", "malformed", "unknown_key", "bad_signature", "wrong_vin", "expired", "replayed",
 * "unknown_action"; "invalid" for a value outside the enum. */
const char *vsoc_envelope_reason_name(vsoc_envelope_reason_t r);

/* Returns 1 for quarantine, release, collect_logs, rotate_credentials, notify, escalate. */
int vsoc_envelope_action_known(const char *action);

/* Time as "YYYY-MM-DDTHH:MM:SSZ" into buf[21]. Returns 0, or VSOC_EINVAL outside years
 * 0000..9999. */
int vsoc_envelope_time_format(int64_t t, char buf[21]);
/* Parses exactly that form (UTC, no fraction, no offset). Returns 0 or VSOC_EPARSE. */
int vsoc_envelope_time_parse(const char *s, int64_t *out);

/* Sets e->args to the canonical form of json, which must be a JSON object whose canonical
 * form fits VSOC_ENVELOPE_ARGS_MAX. Returns 0, or VSOC_EPARSE with the reason in err. */
int vsoc_envelope_set_args(vsoc_envelope_t *e, const char *json, char *err, size_t errlen);

/* The canonical bytes (the envelope without "sig"), NUL-terminated, length in *len (may be
 * NULL). Returns 0 and *out (caller frees with free()), VSOC_EINVAL when a time cannot be
 * written, or VSOC_ENOMEM. */
int vsoc_envelope_canonical(const vsoc_envelope_t *e, char **out, size_t *len);

/* The canonical bytes with ,"sig":"..." last. Same contract as vsoc_envelope_canonical. */
int vsoc_envelope_serialize(const vsoc_envelope_t *e, char **out, size_t *len);

/* Parses an envelope strictly: a JSON object with exactly the twelve fields, each of its
 * type (v, seq, ttl_s integers; the rest strings; args an object), v == 1, cmd_id a UUID,
 * sizes within the limits above, times in the form above, no duplicate keys. On failure
 * returns VSOC_EPARSE with a reason naming the field in reason (and *out unspecified). The
 * action and the signature are not judged here: verify does. */
int vsoc_envelope_parse(const char *buf, size_t n, vsoc_envelope_t *out, char *reason,
                        size_t reasonlen);

/* An Ed25519 key (private or public only) and its id. */
typedef struct vsoc_key vsoc_key_t;

/* Returns 1 when id is a valid key id (1..VSOC_KEY_ID_MAX of [A-Za-z0-9._-], not starting
 * with '.'): ids become file names. */
int vsoc_key_id_valid(const char *id);

/* Generates a key pair and writes dir/<key_id>.key (private, PKCS#8 PEM, mode 0600) and
 * dir/<key_id>.pub (SubjectPublicKeyInfo PEM, mode 0644). Refuses to overwrite either file
 * (VSOC_EINVAL, nothing written). Returns 0, or a VSOC_E* code with the file and the
 * system's or OpenSSL's message in err. */
int vsoc_key_generate(const char *dir, const char *key_id, char *err, size_t errlen);

/* Loads a private (vsoc_key_load_private) or public key from a PEM file. key_id NULL takes
 * the file's base name without its extension ("keys/vsoc-2026-01.pub" -> "vsoc-2026-01").
 * A private key also verifies. Returns the key (free with vsoc_key_free), or NULL with the
 * file and OpenSSL's message in err. */
vsoc_key_t *vsoc_key_load_private(const char *path, const char *key_id, char *err,
                                  size_t errlen);
vsoc_key_t *vsoc_key_load_public(const char *path, const char *key_id, char *err,
                                 size_t errlen);
/* The same from PEM text in memory (is_private selects the kind); key_id is required. */
vsoc_key_t *vsoc_key_from_pem(const char *pem, size_t n, int is_private, const char *key_id,
                              char *err, size_t errlen);
void vsoc_key_free(vsoc_key_t *k);
const char *vsoc_key_id(const vsoc_key_t *k);

/* Sets e->key_id to the key's id and e->sig to the signature over the canonical bytes.
 * The key must be private. Returns 0, or a VSOC_E* code with the reason in err. */
int vsoc_envelope_sign(vsoc_envelope_t *e, const vsoc_key_t *key, char *err, size_t errlen);

/* What the vehicle knows when it judges an envelope. */
typedef struct vsoc_envelope_check {
    const char *vin;   /* this vehicle; NULL skips the VIN check */
    int64_t now;       /* epoch seconds */
    uint64_t last_seq; /* last accepted seq (0 before any: seq 0 is never accepted) */
} vsoc_envelope_check_t;

/* Verifies in this order and returns the first failure: key id among trusted (unknown_key),
 * signature (bad_signature), VIN (wrong_vin), expiry (expired), seq (replayed), action
 * (unknown_action); VSOC_ENVELOPE_OK when all pass. trusted holds n keys; several allow
 * rotation (each key with the envelope's key_id is tried). Does not update last_seq: the
 * caller stores seq once it has applied the command. */
vsoc_envelope_reason_t vsoc_envelope_verify(const vsoc_envelope_t *e,
                                            const vsoc_key_t *const *trusted, size_t n,
                                            const vsoc_envelope_check_t *chk);

#endif
