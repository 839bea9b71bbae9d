/* ack.c: a vehicle's signed answer to a command (see ack.h and docs/envelope.md, "Acks").
 *
 * Built like envelope.c: the canonical form is written by hand in a fixed key order with
 * strings through jansson's own encoder, parsing is strict (exactly the nine fields, each of
 * its type, no duplicates), and the signature is Ed25519 with the one canonical base64
 * spelling, through the helpers envelope.c shares in envelope_internal.h. */
#include "ack.h"
#include "envelope_internal.h"

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

__attribute__((format(printf, 3, 4)))
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- canonical form ------------------------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf_t;

static void put(buf_t *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* A JSON string exactly as jansson escapes it (the envelope's rule 3). */
static void put_jstr(buf_t *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    if (!t) {
        b->oom = 1;
        return;
    }
    put(b, t);
    free(t);
}

static int build(const vsoc_ack_t *a, int with_sig, char **out, size_t *len)
{
    char at[21], tmp[64];
    const char *status = vsoc_ack_status_name(a->status);
    if (!status || vsoc_envelope_time_format(a->at, at) != 0)
        return VSOC_EINVAL;
    buf_t b = {0};
    snprintf(tmp, sizeof tmp, "{\"v\":%d", a->v);
    put(&b, tmp);
    put(&b, ",\"cmd_id\":");
    put_jstr(&b, a->cmd_id);
    put(&b, ",\"vin\":");
    put_jstr(&b, a->vin);
    snprintf(tmp, sizeof tmp, ",\"seq\":%llu", (unsigned long long)a->seq);
    put(&b, tmp);
    put(&b, ",\"status\":\"");
    put(&b, status);
    put(&b, "\",\"reason\":");
    put_jstr(&b, a->reason);
    put(&b, ",\"at\":\"");
    put(&b, at);
    put(&b, "\",\"key_id\":");
    put_jstr(&b, a->key_id);
    if (with_sig) {
        put(&b, ",\"sig\":");
        put_jstr(&b, a->sig);
    }
    put(&b, "}");
    if (b.oom) {
        free(b.p);
        return VSOC_ENOMEM;
    }
    *out = b.p;
    if (len)
        *len = b.n;
    return 0;
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

enum { F_INT, F_STR, F_TIME, F_STATUS };

static const struct field {
    const char *name;
    int type;
    size_t max;   /* strings: bytes */
    int may_be_empty;
} fields[] = {
    {"v", F_INT, 0, 0},
    {"cmd_id", F_STR, VSOC_ENVELOPE_STR_MAX, 0},
    {"vin", F_STR, VSOC_ENVELOPE_VIN_MAX, 0},
    {"seq", F_INT, 0, 0},
    {"status", F_STATUS, 0, 0},
    {"reason", F_STR, VSOC_ENVELOPE_STR_MAX, 1},
    {"at", F_TIME, 0, 0},
    {"key_id", F_STR, VSOC_ENVELOPE_STR_MAX, 0},
    {"sig", F_STR, VSOC_ENVELOPE_STR_MAX, 0},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static int is_uuid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (strlen(s) != sizeof shape - 1)
        return 0;
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        int c = (unsigned char)s[i];
        int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (shape[i] == '-' ? c != '-' : !hex)
            return 0;
    }
    return 1;
}

static char *str_dest(vsoc_ack_t *a, const char *name)
{
    if (!strcmp(name, "cmd_id"))
        return a->cmd_id;
    if (!strcmp(name, "vin"))
        return a->vin;
    if (!strcmp(name, "reason"))
        return a->reason;
    if (!strcmp(name, "key_id"))
        return a->key_id;
    return a->sig;
}

int vsoc_ack_parse(const char *buf, size_t n, vsoc_ack_t *out, char *reason, size_t reasonlen)
{
    if (n > VSOC_ACK_MAX) {
        seterr(reason, reasonlen, "ack: %zu bytes, more than %d", n, VSOC_ACK_MAX);
        return VSOC_EPARSE;
    }
    json_error_t je;
    json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        seterr(reason, reasonlen, "ack: %s at line %d column %d", je.text, je.line,
               je.column);
        return VSOC_EPARSE;
    }
    int rc = VSOC_EPARSE;
    memset(out, 0, sizeof *out);
    if (!json_is_object(root)) {
        seterr(reason, reasonlen, "ack: not a JSON object");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        size_t i = 0;
        while (i < NFIELDS && strcmp(key, fields[i].name) != 0)
            i++;
        if (i == NFIELDS) {
            seterr(reason, reasonlen, "unknown field \"%.64s\"", key);
            goto done;
        }
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        const struct field *f = &fields[i];
        json_t *j = json_object_get(root, f->name);
        if (!j) {
            seterr(reason, reasonlen, "%s: missing", f->name);
            goto done;
        }
        if (f->type == F_INT) {
            if (!json_is_integer(j)) {
                seterr(reason, reasonlen, "%s: not an integer", f->name);
                goto done;
            }
            json_int_t v = json_integer_value(j);
            if (v < 0) {
                seterr(reason, reasonlen, "%s: negative (%lld)", f->name, (long long)v);
                goto done;
            }
            if (!strcmp(f->name, "v")) {
                if (v != 1) {
                    seterr(reason, reasonlen, "v: unsupported version %lld (expected 1)",
                           (long long)v);
                    goto done;
                }
                out->v = 1;
            } else {
                out->seq = (uint64_t)v;
            }
            continue;
        }
        if (!json_is_string(j)) {
            seterr(reason, reasonlen, "%s: not a string", f->name);
            goto done;
        }
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        if (f->type == F_TIME) {
            if (vsoc_envelope_time_parse(s, &out->at) != 0) {
                seterr(reason, reasonlen, "%s: \"%.32s\" is not YYYY-MM-DDTHH:MM:SSZ", f->name,
                       s);
                goto done;
            }
            continue;
        }
        if (f->type == F_STATUS) {
            if (vsoc_ack_status_from_name(s, &out->status) != 0) {
                seterr(reason, reasonlen,
                       "status: \"%.32s\" is not applied, rejected, deferred or released", s);
                goto done;
            }
            continue;
        }
        if (len > f->max) {
            seterr(reason, reasonlen, "%s: %zu bytes, more than %zu", f->name, len, f->max);
            goto done;
        }
        if (strlen(s) != len) {
            seterr(reason, reasonlen, "%s: contains NUL", f->name);
            goto done;
        }
        if (len == 0 && !f->may_be_empty) {
            seterr(reason, reasonlen, "%s: empty", f->name);
            goto done;
        }
        if (!strcmp(f->name, "cmd_id") && !is_uuid(s)) {
            seterr(reason, reasonlen, "cmd_id: \"%.40s\" is not a UUID", s);
            goto done;
        }
        memcpy(str_dest(out, f->name), s, len + 1);
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- sign and verify ----------------------------------------------------------------- */

int vsoc_ack_sign(vsoc_ack_t *a, const vsoc_key_t *key, char *err, size_t errlen)
{
    if (!key->is_private) {
        seterr(err, errlen, "key %s: a public key cannot sign", key->id);
        return VSOC_EINVAL;
    }
    snprintf(a->key_id, sizeof a->key_id, "%s", key->id);
    char *tbs;
    size_t n;
    int rc = vsoc_ack_canonical(a, &tbs, &n);
    if (rc != 0) {
        seterr(err, errlen, "ack canonical form: %s", vsoc_strerror(rc));
        return rc;
    }
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, NULL, NULL, key->pkey) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)tbs, n) != 1 || siglen != 64) {
        char m[256];
        unsigned long e = ERR_get_error();
        if (e)
            ERR_error_string_n(e, m, sizeof m);
        else
            snprintf(m, sizeof m, "unknown error");
        ERR_clear_error();
        seterr(err, errlen, "key %s: signing failed: %s", key->id, m);
        rc = VSOC_EINVAL;
    } else {
        EVP_EncodeBlock((unsigned char *)a->sig, sig, 64);
    }
    EVP_MD_CTX_free(md);
    free(tbs);
    return rc;
}

vsoc_envelope_reason_t vsoc_ack_verify(const vsoc_ack_t *a, const vsoc_key_t *const *trusted,
                                       size_t n, const char *vin)
{
    int known = 0, good = 0;
    unsigned char raw[64];
    int decoded = vsoc_envelope_sig_decode(a->sig, raw) == 0;
    char *tbs = NULL;
    size_t len = 0;
    for (size_t i = 0; i < n && !good; i++) {
        if (strcmp(trusted[i]->id, a->key_id) != 0)
            continue;
        known = 1;
        if (!decoded)
            break;
        /* Out of memory or an unwritable time cannot be verified: a bad signature. */
        if (!tbs && vsoc_ack_canonical(a, &tbs, &len) != 0)
            break;
        good = vsoc_envelope_sig_ok(trusted[i], (const unsigned char *)tbs, len, raw);
    }
    free(tbs);
    if (!known)
        return VSOC_ENVELOPE_UNKNOWN_KEY;
    if (!good)
        return VSOC_ENVELOPE_BAD_SIGNATURE;
    if (vin && strcmp(vin, a->vin) != 0)
        return VSOC_ENVELOPE_WRONG_VIN;
    return VSOC_ENVELOPE_OK;
}
