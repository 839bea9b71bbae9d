/* envelope_internal.h: what envelope.c shares with the other signed messages (ack.c) and the
 * vehicle agent (agent/): the key's layout, the canonical writer, the strict field parser,
 * signing and signature checking, and small checks of ids. Not for use outside the project
 * (not installed); all functions are thread-safe. */
#ifndef VSOC_ENVELOPE_INTERNAL_H
#define VSOC_ENVELOPE_INTERNAL_H

#include "envelope.h"

#include <jansson.h>
#include <openssl/evp.h>

struct vsoc_key {
    EVP_PKEY *pkey;
    int is_private;
    char id[VSOC_KEY_ID_MAX + 1];
};

/* Formats into err[errlen] like snprintf; does nothing when err is NULL or errlen 0. */
__attribute__((format(printf, 3, 4)))
void vsoc_envelope_seterr(char *err, size_t errlen, const char *fmt, ...);

/* 1 when s is a UUID: 8-4-4-4-12 hex digits of either case. */
int vsoc_envelope_is_uuid(const char *s);
/* 1 when s is 1..max of [A-Za-z0-9._-]: safe in logs and file names. */
int vsoc_envelope_is_name(const char *s, size_t max);

/* A time given on a command line: YYYY-MM-DDTHH:MM:SSZ or epoch seconds. Returns 0 or -1. */
int vsoc_envelope_time_arg(const char *s, int64_t *out);

/* ---- canonical form ------------------------------------------------------------------ */

/* A growing NUL-terminated text; after an allocation failure it only records oom. */
typedef struct vsoc_json_buf {
    char *p;
    size_t n, cap;
    int oom;
} vsoc_json_buf_t;

void vsoc_json_put(vsoc_json_buf_t *b, const char *s);
/* A JSON string exactly as jansson escapes it (the canonical form's rule for strings). */
void vsoc_json_put_str(vsoc_json_buf_t *b, const char *s);
/* The fields every signed message starts with: {"v":V,"cmd_id":"...","vin":"...","seq":N */
void vsoc_envelope_put_head(vsoc_json_buf_t *b, int v, const char *cmd_id, const char *vin,
                            uint64_t seq);
/* The fields it ends with: ,"key_id":"..." then ,"sig":"..." unless sig is NULL, and "}".
 * Hands the text over: 0 with *out (caller frees) and *len (len may be NULL), or
 * VSOC_ENOMEM with the buffer freed. */
int vsoc_envelope_put_tail(vsoc_json_buf_t *b, const char *key_id, const char *sig,
                           char **out, size_t *len);

/* ---- strict parse -------------------------------------------------------------------- */

enum {
    VSOC_JSON_VERSION, /* an int that must equal the field's max */
    VSOC_JSON_U64,     /* integers >= 0, into uint64_t or int64_t */
    VSOC_JSON_I64,
    VSOC_JSON_STR,     /* a string of at most max bytes, no NUL, into char[max + 1] */
    VSOC_JSON_TIME,    /* "YYYY-MM-DDTHH:MM:SSZ" into int64_t */
    VSOC_JSON_OTHER,   /* judged and stored by the parser's callback */
};
#define VSOC_JSON_EMPTY_OK 1u /* STR: "" is allowed */
#define VSOC_JSON_UUID 2u     /* STR: must be a UUID */

typedef struct vsoc_json_field {
    const char *name;
    int type;
    size_t off;     /* offsetof the destination in the parsed struct */
    size_t max;     /* STR: bytes; VERSION: the one version accepted; I64: the largest
                       value (0: no bound) */
    unsigned flags;
} vsoc_json_field_t;

/* Judges and stores a VSOC_JSON_OTHER field j into out. Returns 0, or -1 with reason. */
typedef int (*vsoc_json_other_fn)(void *out, const vsoc_json_field_t *f, json_t *j,
                                  char *reason, size_t reasonlen);

/* Parses buf[0..n) strictly into out (outsize bytes, zeroed first): a JSON object of at most
 * max bytes with exactly the nfields fields, in no particular order, no duplicate keys. The
 * fields are judged in table order and the first failure is reported; reasons about the
 * whole text start with what ("envelope", "ack"). Returns 0, or VSOC_EPARSE with reason (and
 * *out unspecified). */
int vsoc_json_parse_strict(const char *what, const char *buf, size_t n, size_t max,
                           const vsoc_json_field_t *fields, size_t nfields,
                           vsoc_json_other_fn other, void *out, size_t outsize, char *reason,
                           size_t reasonlen);

/* ---- sign and verify ----------------------------------------------------------------- */

/* Writes a signed message: its canonical bytes, with ,"sig":"..." last when with_sig
 * (vsoc_envelope_canonical's contract). */
typedef int (*vsoc_envelope_build_fn)(const void *msg, int with_sig, char **out, size_t *len);

/* Signs msg: sets key_id (a char[VSOC_ENVELOPE_STR_MAX + 1] inside msg) to the key's id, then
 * sig (likewise) to the base64 Ed25519 signature of its canonical bytes from build_fn. The key
 * must be private. what names the message in the error about its canonical form ("" or
 * "ack "). Returns 0, or a VSOC_E* code with err. */
int vsoc_envelope_sign_msg(const void *msg, vsoc_envelope_build_fn build_fn, char *key_id,
                           char *sig, const vsoc_key_t *key, const char *what, char *err,
                           size_t errlen);
/* Checks msg's signature: VSOC_ENVELOPE_UNKNOWN_KEY when no trusted key has key_id,
 * VSOC_ENVELOPE_BAD_SIGNATURE when none of those verifies sig over msg's canonical bytes,
 * else VSOC_ENVELOPE_OK. Clears OpenSSL's error queue. */
vsoc_envelope_reason_t vsoc_envelope_check_sig(const void *msg, vsoc_envelope_build_fn build_fn,
                                               const char *key_id, const char *sig,
                                               const vsoc_key_t *const *trusted, size_t n);

#endif
