/* envelope.c: the signed command envelope (see envelope.h and docs/envelope.md), and what
 * the other signed messages share with it (envelope_internal.h): acks are written, parsed,
 * signed and checked by the same code, so the two cannot drift apart.
 *
 * The canonical form is written by hand rather than by jansson, because the outer keys keep
 * a fixed order while args' keys are sorted; strings go through jansson's own encoder so the
 * escaping is exactly jansson's. */
#include "envelope.h"
#include "envelope_internal.h"
#include "util.h"

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const reason_names[] = {
    "ok", "malformed", "unknown_key", "bad_signature", "wrong_vin", "expired", "replayed",
    "unknown_action",
};

const char *vsoc_envelope_reason_name(vsoc_envelope_reason_t r)
{
    if ((unsigned)r >= sizeof reason_names / sizeof reason_names[0])
        return "invalid";
    return reason_names[r];
}

static const char *const actions[] = {
    "quarantine", "release", "collect_logs", "rotate_credentials", "notify", "escalate",
};

int vsoc_envelope_action_known(const char *action)
{
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(action, actions[i]) == 0)
            return 1;
    return 0;
}

void vsoc_envelope_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* OpenSSL's message for its oldest queued error (or "unknown error"); clears the queue. */
static const char *ossl_msg(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "unknown error");
    ERR_clear_error();
    return buf;
}

int vsoc_envelope_is_uuid(const char *s)
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

int vsoc_envelope_is_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* ---- time ---------------------------------------------------------------------------- */


/* Years 0000..9999 in epoch seconds. */
#define TIME_MIN (-62167219200LL)
#define TIME_MAX (253402300799LL)

int vsoc_envelope_time_format(int64_t t, char buf[21])
{
    if (t < TIME_MIN || t > TIME_MAX)
        return VSOC_EINVAL;
    int64_t days = t / 86400, secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    int64_t y;
    int m, d;
    vsoc_civil_from_days(days, &y, &m, &d);
    char tmp[64]; /* the ranges above keep it to 20 characters; the compiler cannot tell */
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)y, m, d,
             (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    memcpy(buf, tmp, 21);
    return 0;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int vsoc_envelope_time_parse(const char *s, int64_t *out)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != sizeof shape - 1)
        return VSOC_EPARSE;
    for (size_t i = 0; i < sizeof shape - 1; i++)
        if (shape[i] != 'd' && s[i] != shape[i])
            return VSOC_EPARSE;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        se < 0 || se > 59)
        return VSOC_EPARSE;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return VSOC_EPARSE;
    *out = vsoc_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return 0;
}

int vsoc_envelope_time_arg(const char *s, int64_t *out)
{
    if (vsoc_envelope_time_parse(s, out) == 0)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

/* ---- canonical form ------------------------------------------------------------------ */

void vsoc_json_put(vsoc_json_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
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

void vsoc_json_put_str(vsoc_json_buf_t *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    if (!t) {
        b->oom = 1;
        return;
    }
    vsoc_json_put(b, t);
    free(t);
}

void vsoc_envelope_put_head(vsoc_json_buf_t *b, int v, const char *cmd_id, const char *vin,
                            uint64_t seq)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "{\"v\":%d,\"cmd_id\":", v);
    vsoc_json_put(b, tmp);
    vsoc_json_put_str(b, cmd_id);
    vsoc_json_put(b, ",\"vin\":");
    vsoc_json_put_str(b, vin);
    snprintf(tmp, sizeof tmp, ",\"seq\":%llu", (unsigned long long)seq);
    vsoc_json_put(b, tmp);
}

int vsoc_envelope_put_tail(vsoc_json_buf_t *b, const char *key_id, const char *sig,
                           char **out, size_t *len)
{
    vsoc_json_put(b, ",\"key_id\":");
    vsoc_json_put_str(b, key_id);
    if (sig) {
        vsoc_json_put(b, ",\"sig\":");
        vsoc_json_put_str(b, sig);
    }
    vsoc_json_put(b, "}");
    if (b->oom) {
        free(b->p);
        return VSOC_ENOMEM;
    }
    *out = b->p;
    if (len)
        *len = b->n;
    return 0;
}

/* A vsoc_envelope_build_fn: msg is a vsoc_envelope_t. */
static int build(const void *msg, int with_sig, char **out, size_t *len)
{
    const vsoc_envelope_t *e = msg;
    char iss[21], exp[21], ttl[64];
    if (vsoc_envelope_time_format(e->issued_at, iss) ||
        vsoc_envelope_time_format(e->expires_at, exp))
        return VSOC_EINVAL;
    vsoc_json_buf_t b = {0};
    vsoc_envelope_put_head(&b, e->v, e->cmd_id, e->vin, e->seq);
    vsoc_json_put(&b, ",\"action\":");
    vsoc_json_put_str(&b, e->action);
    vsoc_json_put(&b, ",\"args\":");
    vsoc_json_put(&b, e->args[0] ? e->args : "{}");
    snprintf(ttl, sizeof ttl, ",\"ttl_s\":%lld", (long long)e->ttl_s);
    vsoc_json_put(&b, ttl);
    vsoc_json_put(&b, ",\"issued_at\":\"");
    vsoc_json_put(&b, iss);
    vsoc_json_put(&b, "\",\"expires_at\":\"");
    vsoc_json_put(&b, exp);
    vsoc_json_put(&b, "\",\"incident_id\":");
    vsoc_json_put_str(&b, e->incident_id);
    return vsoc_envelope_put_tail(&b, e->key_id, with_sig ? e->sig : NULL, out, len);
}

int vsoc_envelope_canonical(const vsoc_envelope_t *e, char **out, size_t *len)
{
    return build(e, 0, out, len);
}

int vsoc_envelope_serialize(const vsoc_envelope_t *e, char **out, size_t *len)
{
    return build(e, 1, out, len);
}

static int set_args_json(vsoc_envelope_t *e, const json_t *args, char *err, size_t errlen)
{
    if (!json_is_object(args)) {
        vsoc_envelope_seterr(err, errlen, "args: not a JSON object");
        return VSOC_EPARSE;
    }
    char *t = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
    if (!t) {
        vsoc_envelope_seterr(err, errlen, "args: out of memory");
        return VSOC_ENOMEM;
    }
    size_t n = strlen(t);
    if (n > VSOC_ENVELOPE_ARGS_MAX) {
        vsoc_envelope_seterr(err, errlen, "args: %zu bytes, more than %d", n,
                             VSOC_ENVELOPE_ARGS_MAX);
        free(t);
        return VSOC_EPARSE;
    }
    memcpy(e->args, t, n + 1);
    free(t);
    return 0;
}

int vsoc_envelope_set_args(vsoc_envelope_t *e, const char *json, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        vsoc_envelope_seterr(err, errlen, "args: %s at column %d", je.text, je.column);
        return VSOC_EPARSE;
    }
    int rc = set_args_json(e, j, err, errlen);
    json_decref(j);
    return rc;
}

/* ---- parse --------------------------------------------------------------------------- */

/* One field of a strict parse (see vsoc_json_parse_strict). Returns 0, or -1 with reason. */
static int parse_field(const vsoc_json_field_t *f, json_t *j, vsoc_json_other_fn other,
                       void *out, char *reason, size_t reasonlen)
{
    char *dst = (char *)out + f->off;
    if (f->type == VSOC_JSON_OTHER)
        return other(out, f, j, reason, reasonlen);
    if (f->type == VSOC_JSON_VERSION || f->type == VSOC_JSON_U64 || f->type == VSOC_JSON_I64) {
        if (!json_is_integer(j)) {
            vsoc_envelope_seterr(reason, reasonlen, "%s: not an integer", f->name);
            return -1;
        }
        json_int_t v = json_integer_value(j);
        if (v < 0) {
            vsoc_envelope_seterr(reason, reasonlen, "%s: negative (%lld)", f->name, (long long)v);
            return -1;
        }
        /* max bounds an I64 when set: a ttl of centuries is a mistake or an attack, and
         * the agent adds it to its clock. */
        if (f->type == VSOC_JSON_I64 && f->max && (unsigned long long)v > f->max) {
            vsoc_envelope_seterr(reason, reasonlen, "%s: %lld is more than %zu", f->name,
                                 (long long)v, f->max);
            return -1;
        }
        if (f->type == VSOC_JSON_U64)
            *(uint64_t *)(void *)dst = (uint64_t)v;
        else if (f->type == VSOC_JSON_I64)
            *(int64_t *)(void *)dst = (int64_t)v;
        else if ((unsigned long long)v == f->max)
            *(int *)(void *)dst = (int)v;
        else {
            vsoc_envelope_seterr(reason, reasonlen, "%s: unsupported version %lld (expected %zu)",
                                 f->name, (long long)v, f->max);
            return -1;
        }
        return 0;
    }
    if (!json_is_string(j)) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: not a string", f->name);
        return -1;
    }
    const char *s = json_string_value(j);
    size_t len = json_string_length(j);
    if (f->type == VSOC_JSON_TIME) {
        if (vsoc_envelope_time_parse(s, (int64_t *)(void *)dst) != 0) {
            vsoc_envelope_seterr(reason, reasonlen, "%s: \"%.32s\" is not YYYY-MM-DDTHH:MM:SSZ",
                                 f->name, s);
            return -1;
        }
        return 0;
    }
    if (len > f->max) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: %zu bytes, more than %zu", f->name, len,
                             f->max);
        return -1;
    }
    if (strlen(s) != len) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: contains NUL", f->name);
        return -1;
    }
    if (len == 0 && !(f->flags & VSOC_JSON_EMPTY_OK)) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: empty", f->name);
        return -1;
    }
    if ((f->flags & VSOC_JSON_UUID) && !vsoc_envelope_is_uuid(s)) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: \"%.40s\" is not a UUID", f->name, s);
        return -1;
    }
    memcpy(dst, s, len + 1);
    return 0;
}

int vsoc_json_parse_strict(const char *what, const char *buf, size_t n, size_t max,
                           const vsoc_json_field_t *fields, size_t nfields,
                           vsoc_json_other_fn other, void *out, size_t outsize, char *reason,
                           size_t reasonlen)
{
    if (n > max) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: %zu bytes, more than %zu", what, n, max);
        return VSOC_EPARSE;
    }
    json_error_t je;
    json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: %s at line %d column %d", what, je.text,
                             je.line, je.column);
        return VSOC_EPARSE;
    }
    int rc = VSOC_EPARSE;
    memset(out, 0, outsize);
    if (!json_is_object(root)) {
        vsoc_envelope_seterr(reason, reasonlen, "%s: not a JSON object", what);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        size_t i = 0;
        while (i < nfields && strcmp(key, fields[i].name) != 0)
            i++;
        if (i == nfields) {
            vsoc_envelope_seterr(reason, reasonlen, "unknown field \"%.64s\"", key);
            goto done;
        }
    }
    for (size_t i = 0; i < nfields; i++) {
        json_t *j = json_object_get(root, fields[i].name);
        if (!j) {
            vsoc_envelope_seterr(reason, reasonlen, "%s: missing", fields[i].name);
            goto done;
        }
        if (parse_field(&fields[i], j, other, out, reason, reasonlen) != 0)
            goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

#define FIELD(name, type, max, flags) {#name, type, offsetof(vsoc_envelope_t, name), max, flags}
static const vsoc_json_field_t fields[] = {
    FIELD(v, VSOC_JSON_VERSION, VSOC_ENVELOPE_VERSION, 0),
    FIELD(cmd_id, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, VSOC_JSON_UUID),
    FIELD(vin, VSOC_JSON_STR, VSOC_ENVELOPE_VIN_MAX, 0),
    FIELD(seq, VSOC_JSON_U64, 0, 0),
    FIELD(action, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, 0),
    FIELD(args, VSOC_JSON_OTHER, 0, 0),
    FIELD(ttl_s, VSOC_JSON_I64, VSOC_ENVELOPE_TTL_MAX, 0),
    FIELD(issued_at, VSOC_JSON_TIME, 0, 0),
    FIELD(expires_at, VSOC_JSON_TIME, 0, 0),
    FIELD(incident_id, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, VSOC_JSON_EMPTY_OK),
    FIELD(key_id, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, 0),
    FIELD(sig, VSOC_JSON_STR, VSOC_ENVELOPE_STR_MAX, 0),
};
#undef FIELD

/* args, the one field that is an object. */
static int parse_args(void *out, const vsoc_json_field_t *f, json_t *j, char *reason,
                      size_t reasonlen)
{
    return set_args_json(out, j, reason, reasonlen) == 0 ? 0 : -1;
}

int vsoc_envelope_parse(const char *buf, size_t n, vsoc_envelope_t *out, char *reason,
                        size_t reasonlen)
{
    return vsoc_json_parse_strict("envelope", buf, n, VSOC_ENVELOPE_MAX, fields,
                                  sizeof fields / sizeof fields[0], parse_args, out, sizeof *out,
                                  reason, reasonlen);
}

/* ---- keys ---------------------------------------------------------------------------- */

int vsoc_key_id_valid(const char *id)
{
    return id[0] != '.' && vsoc_envelope_is_name(id, VSOC_KEY_ID_MAX);
}

void vsoc_key_free(vsoc_key_t *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

const char *vsoc_key_id(const vsoc_key_t *k)
{
    return k->id;
}

/* Takes pkey (freed on failure). */
static vsoc_key_t *key_wrap(EVP_PKEY *pkey, int is_private, const char *id, const char *what,
                            char *err, size_t errlen)
{
    if (EVP_PKEY_id(pkey) != EVP_PKEY_ED25519) {
        vsoc_envelope_seterr(err, errlen, "%s: not an Ed25519 key", what);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    if (!vsoc_key_id_valid(id)) {
        vsoc_envelope_seterr(err, errlen,
                             "%s: invalid key id \"%.80s\" (1..%d of A-Z a-z 0-9 . _ -)", what, id,
                             VSOC_KEY_ID_MAX);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    vsoc_key_t *k = calloc(1, sizeof *k);
    if (!k) {
        vsoc_envelope_seterr(err, errlen, "%s: out of memory", what);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    k->pkey = pkey;
    k->is_private = is_private;
    snprintf(k->id, sizeof k->id, "%s", id);
    return k;
}

static vsoc_key_t *key_from_bio(BIO *bio, int is_private, const char *id, const char *what,
                                char *err, size_t errlen)
{
    EVP_PKEY *pkey = is_private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                                : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (!pkey) {
        char m[256];
        vsoc_envelope_seterr(err, errlen, "%s: cannot read %s key: %s", what,
                             is_private ? "private" : "public", ossl_msg(m, sizeof m));
        return NULL;
    }
    return key_wrap(pkey, is_private, id, what, err, errlen);
}

vsoc_key_t *vsoc_key_from_pem(const char *pem, size_t n, int is_private, const char *key_id,
                              char *err, size_t errlen)
{
    if (!key_id || n > 65536) {
        vsoc_envelope_seterr(err, errlen, "PEM: %s", key_id ? "too large" : "no key id");
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    if (!bio) {
        vsoc_envelope_seterr(err, errlen, "PEM: out of memory");
        return NULL;
    }
    vsoc_key_t *k = key_from_bio(bio, is_private, key_id, "PEM", err, errlen);
    BIO_free(bio);
    return k;
}

static vsoc_key_t *key_load(const char *path, int is_private, const char *key_id, char *err,
                            size_t errlen)
{
    char id[VSOC_KEY_ID_MAX + 2];
    if (!key_id) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        const char *dot = strrchr(base, '.');
        size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
        if (n > VSOC_KEY_ID_MAX)
            n = VSOC_KEY_ID_MAX + 1; /* rejected as too long below */
        memcpy(id, base, n);
        id[n] = 0;
        key_id = id;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        vsoc_envelope_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    BIO *bio = BIO_new_fp(f, BIO_NOCLOSE);
    vsoc_key_t *k = NULL;
    if (!bio)
        vsoc_envelope_seterr(err, errlen, "%s: out of memory", path);
    else
        k = key_from_bio(bio, is_private, key_id, path, err, errlen);
    BIO_free(bio);
    fclose(f);
    return k;
}

vsoc_key_t *vsoc_key_load_private(const char *path, const char *key_id, char *err,
                                  size_t errlen)
{
    return key_load(path, 1, key_id, err, errlen);
}

vsoc_key_t *vsoc_key_load_public(const char *path, const char *key_id, char *err,
                                 size_t errlen)
{
    return key_load(path, 0, key_id, err, errlen);
}

/* Writes the PEM in bio to a new file (O_EXCL) with mode. Returns 0 or a VSOC_E* code. */
static int write_new(const char *path, BIO *bio, mode_t mode, char *err, size_t errlen)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        vsoc_envelope_seterr(err, errlen, "%s: %s", path,
                             errno == EEXIST ? "already exists; not overwriting a key"
                                             : strerror(errno));
        return errno == EEXIST ? VSOC_EINVAL : VSOC_EIO;
    }
    /* open() applied the umask; the private key's mode must be exactly 0600. */
    int ok = fchmod(fd, mode) == 0;
    for (long off = 0; ok && off < n;) {
        ssize_t w = write(fd, data + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += w > 0 ? w : 0;
    }
    if (ok)
        ok = fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        vsoc_envelope_seterr(err, errlen, "%s: %s", path, strerror(e));
        unlink(path);
        return VSOC_EIO;
    }
    return 0;
}

int vsoc_key_generate(const char *dir, const char *key_id, char *err, size_t errlen)
{
    if (!vsoc_key_id_valid(key_id)) {
        vsoc_envelope_seterr(err, errlen, "invalid key id \"%.80s\" (1..%d of A-Z a-z 0-9 . _ -)",
                             key_id, VSOC_KEY_ID_MAX);
        return VSOC_EINVAL;
    }
    char kpath[4096], ppath[4096];
    if ((size_t)snprintf(kpath, sizeof kpath, "%s/%s.key", dir, key_id) >= sizeof kpath ||
        (size_t)snprintf(ppath, sizeof ppath, "%s/%s.pub", dir, key_id) >= sizeof ppath) {
        vsoc_envelope_seterr(err, errlen, "%s: path too long", dir);
        return VSOC_EINVAL;
    }
    if (access(ppath, F_OK) == 0) {
        vsoc_envelope_seterr(err, errlen, "%s: already exists; not overwriting a key", ppath);
        return VSOC_EINVAL;
    }
    char m[256];
    int rc = VSOC_EIO;
    EVP_PKEY *pkey = NULL;
    BIO *kb = NULL, *pb = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1) {
        vsoc_envelope_seterr(err, errlen, "cannot generate an Ed25519 key: %s",
                             ossl_msg(m, sizeof m));
        goto done;
    }
    kb = BIO_new(BIO_s_mem());
    pb = BIO_new(BIO_s_mem());
    if (!kb || !pb || PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_PUBKEY(pb, pkey) != 1) {
        vsoc_envelope_seterr(err, errlen, "cannot write the key as PEM: %s",
                             ossl_msg(m, sizeof m));
        goto done;
    }
    rc = write_new(kpath, kb, 0600, err, errlen);
    if (rc != 0)
        goto done;
    rc = write_new(ppath, pb, 0644, err, errlen);
    if (rc != 0)
        unlink(kpath); /* both or neither */
done:
    BIO_free(kb);
    BIO_free(pb);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

/* ---- sign and verify ----------------------------------------------------------------- */

int vsoc_envelope_sign_msg(const void *msg, vsoc_envelope_build_fn build_fn, char *key_id,
                           char *sig, const vsoc_key_t *key, const char *what, char *err,
                           size_t errlen)
{
    if (!key->is_private) {
        vsoc_envelope_seterr(err, errlen, "key %s: a public key cannot sign", key->id);
        return VSOC_EINVAL;
    }
    snprintf(key_id, VSOC_ENVELOPE_STR_MAX + 1, "%s", key->id);
    char *tbs;
    size_t n;
    int rc = build_fn(msg, 0, &tbs, &n);
    if (rc != 0) {
        vsoc_envelope_seterr(err, errlen, "%scanonical form: %s", what, vsoc_strerror(rc));
        return rc;
    }
    unsigned char raw[64];
    size_t siglen = sizeof raw;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, NULL, NULL, key->pkey) != 1 ||
        EVP_DigestSign(md, raw, &siglen, (const unsigned char *)tbs, n) != 1 || siglen != 64) {
        char m[256];
        vsoc_envelope_seterr(err, errlen, "key %s: signing failed: %s", key->id,
                             ossl_msg(m, sizeof m));
        rc = VSOC_EINVAL;
    } else {
        EVP_EncodeBlock((unsigned char *)sig, raw, 64);
    }
    EVP_MD_CTX_free(md);
    free(tbs);
    return rc;
}

int vsoc_envelope_sign(vsoc_envelope_t *e, const vsoc_key_t *key, char *err, size_t errlen)
{
    return vsoc_envelope_sign_msg(e, build, e->key_id, e->sig, key, "", err, errlen);
}

/* Decodes sig into raw[64]: only the one canonical base64 spelling of 64 bytes is accepted,
 * so a signature cannot be re-encoded into a second valid envelope. Returns 0 or -1. */
static int sig_decode(const char *sig, unsigned char raw[64])
{
    if (strlen(sig) != VSOC_ENVELOPE_SIG_LEN)
        return -1;
    unsigned char tmp[66], back[VSOC_ENVELOPE_SIG_LEN + 1];
    if (EVP_DecodeBlock(tmp, (const unsigned char *)sig, VSOC_ENVELOPE_SIG_LEN) != 66)
        return -1;
    memcpy(raw, tmp, 64);
    EVP_EncodeBlock(back, raw, 64);
    return memcmp(back, sig, VSOC_ENVELOPE_SIG_LEN) == 0 ? 0 : -1;
}

/* 1 when raw is k's Ed25519 signature of tbs[0..n). Clears OpenSSL's error queue. */
static int sig_ok(const vsoc_key_t *k, const unsigned char *tbs, size_t n,
                  const unsigned char raw[64])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, k->pkey) == 1 &&
             EVP_DigestVerify(md, raw, 64, tbs, n) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

vsoc_envelope_reason_t vsoc_envelope_check_sig(const void *msg, vsoc_envelope_build_fn build_fn,
                                               const char *key_id, const char *sig,
                                               const vsoc_key_t *const *trusted, size_t n)
{
    int known = 0, good = 0;
    unsigned char raw[64];
    int decoded = sig_decode(sig, raw) == 0;
    char *tbs = NULL;
    size_t len = 0;
    for (size_t i = 0; i < n && !good; i++) {
        if (strcmp(trusted[i]->id, key_id) != 0)
            continue;
        known = 1;
        if (!decoded)
            break;
        /* Out of memory or an unwritable time cannot be verified: a bad signature. */
        if (!tbs && build_fn(msg, 0, &tbs, &len) != 0)
            break;
        good = sig_ok(trusted[i], (const unsigned char *)tbs, len, raw);
    }
    free(tbs);
    if (!known)
        return VSOC_ENVELOPE_UNKNOWN_KEY;
    return good ? VSOC_ENVELOPE_OK : VSOC_ENVELOPE_BAD_SIGNATURE;
}

vsoc_envelope_reason_t vsoc_envelope_verify(const vsoc_envelope_t *e,
                                            const vsoc_key_t *const *trusted, size_t n,
                                            const vsoc_envelope_check_t *chk)
{
    vsoc_envelope_reason_t r = vsoc_envelope_check_sig(e, build, e->key_id, e->sig, trusted, n);
    if (r != VSOC_ENVELOPE_OK)
        return r;
    if (chk->vin && strcmp(chk->vin, e->vin) != 0)
        return VSOC_ENVELOPE_WRONG_VIN;
    if (chk->now >= e->expires_at)
        return VSOC_ENVELOPE_EXPIRED;
    if (e->seq <= chk->last_seq)
        return VSOC_ENVELOPE_REPLAYED;
    if (!vsoc_envelope_action_known(e->action))
        return VSOC_ENVELOPE_UNKNOWN_ACTION;
    return VSOC_ENVELOPE_OK;
}
