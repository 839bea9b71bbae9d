/* ack.c: a vehicle's signed answer to a command (see ack.h and docs/envelope.md, "Acks").
 *
 * Built from envelope.c's parts (envelope_internal.h): the canonical form is written in a
 * fixed key order with strings through jansson's own encoder, parsing is strict (exactly the
 * nine fields, each of its type, no duplicates), and the signature is Ed25519 with the one
 * canonical base64 spelling. Only the fields and their order are the ack's own. */
#include "ack.h"
#include "envelope_internal.h"

#include <jansson.h>

#include <stddef.h>
#include <string.h>

static const char *const status_names[] = {"applied", "rejected", "deferred", "released"};
#define NSTATUS (sizeof status_names / sizeof status_names[0])

const char *vsoc_ack_status_name(vsoc_ack_status_t s)
{
    if ((unsigned)s >= NSTATUS)
        return NULL;
    return status_names[s];
}

int vsoc_ack_status_from_name(const char *name, vsoc_ack_status_t *out)
{
    for (size_t i = 0; i < NSTATUS; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (vsoc_ack_status_t)i;
            return 0;
        }
    }
    return -1;
}

/* ---- canonical form ------------------------------------------------------------------ */

/* A vsoc_envelope_build_fn: msg is a vsoc_ack_t. */
static int build(const void *msg, int with_sig, char **out, size_t *len)
{
    const vsoc_ack_t *a = msg;
    char at[21];
    const char *status = vsoc_ack_status_name(a->status);
    if (!status || vsoc_envelope_time_format(a->at, at) != 0)
        return VSOC_EINVAL;
    vsoc_json_buf_t b = {0};
    vsoc_envelope_put_head(&b, a->v, a->cmd_id, a->vin, a->seq);
    vsoc_json_put(&b, ",\"status\":\"");
    vsoc_json_put(&b, status);
    vsoc_json_put(&b, "\",\"reason\":");
    vsoc_json_put_str(&b, a->reason);
    vsoc_json_put(&b, ",\"at\":\"");
    vsoc_json_put(&b, at);
    vsoc_json_put(&b, "\"");
    return vsoc_envelope_put_tail(&b, a->key_id, with_sig ? a->sig : NULL, out, len);
}

int vsoc_ack_canonical(const vsoc_ack_t *a, char **out, size_t *len)
{
    return build(a, 0, out, len);
}

int vsoc_ack_serialize(const vsoc_ack_t *a, char **out, size_t *len)
{
    return build(a, 1, out, len);
}

/* ---- parse --------------------------------------------------------------------------- */

#define FIELD(name, type, max, flags) {#name, type, offsetof(vsoc_ack_t, name), max, flags}
static const vsoc_json_field_t fields[] = {
    FIELD(v, VSOC_JSON_VERSION, 1, 0),
    FIELD(cmd_id, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, VSOC_JSON_UUID),
    FIELD(vin, VSOC_JSON_STR, VSOC_ENVELOPE_VIN_MAX, 0),
    FIELD(seq, VSOC_JSON_U64, 0, 0),
    FIELD(status, VSOC_JSON_OTHER, 0, 0),
    FIELD(reason, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, VSOC_JSON_EMPTY_OK),
    FIELD(at, VSOC_JSON_TIME, 0, 0),
    FIELD(key_id, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, 0),
    FIELD(sig, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, 0),
};
#undef FIELD

/* status, the one field that is a name. */
static int parse_status(void *out, const vsoc_json_field_t *f, json_t *j, char *reason,
                        size_t reasonlen)
{
    vsoc_ack_t *a = out;
    if (!json_is_string(j)) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: not a string", f->name);
        return -1;
    }
    if (vsoc_ack_status_from_name(json_string_value(j), &a->status) != 0) {
        vsoc_envelope_seterr(reason, reasonlen,
                             "status: \"%.32s\" is not applied, rejected, deferred or released",
                             json_string_value(j));
        return -1;
    }
    return 0;
}

int vsoc_ack_parse(const char *buf, size_t n, vsoc_ack_t *out, char *reason, size_t reasonlen)
{
    return vsoc_json_parse_strict("ack", buf, n, VSOC_ACK_MAX, fields,
                                  sizeof fields / sizeof fields[0], parse_status, out,
                                  sizeof *out, reason, reasonlen);
}

/* ---- sign and verify ----------------------------------------------------------------- */

int vsoc_ack_sign(vsoc_ack_t *a, const vsoc_key_t *key, char *err, size_t errlen)
{
    return vsoc_envelope_sign_msg(a, build, a->key_id, a->sig, key, "ack ", err, errlen);
}

vsoc_envelope_reason_t vsoc_ack_verify(const vsoc_ack_t *a, const vsoc_key_t *const *trusted,
                                       size_t n, const char *vin)
{
    vsoc_envelope_reason_t r = vsoc_envelope_check_sig(a, build, a->key_id, a->sig, trusted, n);
    if (r != VSOC_ENVELOPE_OK)
        return r;
    if (vin && strcmp(vin, a->vin) != 0)
        return VSOC_ENVELOPE_WRONG_VIN;
    return VSOC_ENVELOPE_OK;
}
