/* sign_envelope.c: vsoc-sign-envelope, a test tool: builds a command envelope from its
 * command line, signs it with an Ed25519 private key file and prints it on one line, so that
 * shell tests can play the SOC (tests/integration/mqtt.sh).
 *
 *   vsoc-sign-envelope --key FILE [--key-id ID] --vin VIN --seq N --action ACTION
 *                      [--args JSON] [--ttl S] [--cmd-id UUID] [--incident ID]
 *                      [--issued TIME] [--expires TIME | --valid S] [--forge]
 *
 * The key id defaults to the key file's name without extension (as vsoc-agent --trust
 * takes it). TIME is YYYY-MM-DDTHH:MM:SSZ or epoch seconds; --issued defaults to now and
 * the envelope stays valid --valid seconds (default 300) unless --expires is given. The
 * cmd_id defaults to a random UUID. --forge changes one byte of the signature after signing
 * (still canonical base64), for tests of bad_signature. Exit 0, or 2 with a message. */
#include "envelope.h"
#include "envelope_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void)
{
    fprintf(stderr,
            "usage: vsoc-sign-envelope --key FILE [--key-id ID] --vin VIN --seq N --action A\n"
            "                          [--args JSON] [--ttl S] [--cmd-id UUID] [--incident ID]\n"
            "                          [--issued TIME] [--expires TIME | --valid S] [--forge]\n");
    return 2;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* A version 4 UUID from /dev/urandom. */
static int random_uuid(char out[37])
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(b, 1, sizeof b, f) != sizeof b) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

int main(int argc, char **argv)
{
    const char *keyfile = NULL, *key_id = NULL, *vin = NULL, *action = NULL, *args = "{}";
    const char *cmd_id = NULL, *incident = "INC-TEST";
    int64_t seq = -1, ttl = 0, issued = (int64_t)time(NULL), expires = -1, valid = 300;
    int forge = 0;
    /* Each option with a value sets a string, or a number through its parser. */
    const struct {
        const char *name;
        const char **str;
        int64_t *num;
        int (*parse)(const char *, int64_t *);
    } opts[] = {
        {"--key", &keyfile, NULL, NULL},
        {"--key-id", &key_id, NULL, NULL},
        {"--vin", &vin, NULL, NULL},
        {"--action", &action, NULL, NULL},
        {"--args", &args, NULL, NULL},
        {"--cmd-id", &cmd_id, NULL, NULL},
        {"--incident", &incident, NULL, NULL},
        {"--seq", NULL, &seq, parse_int},
        {"--ttl", NULL, &ttl, parse_int},
        {"--valid", NULL, &valid, parse_int},
        {"--issued", NULL, &issued, vsoc_envelope_time_arg},
        {"--expires", NULL, &expires, vsoc_envelope_time_arg},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--forge")) {
            forge = 1;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        const char *v = argv[++i];
        size_t k = 0;
        while (k < sizeof opts / sizeof opts[0] && strcmp(a, opts[k].name) != 0)
            k++;
        if (k == sizeof opts / sizeof opts[0])
            return usage();
        if (opts[k].str) {
            *opts[k].str = v;
        } else if (opts[k].parse(v, opts[k].num) != 0) {
            fprintf(stderr, "vsoc-sign-envelope: %s: bad value \"%s\"\n", a, v);
            return 2;
        }
    }
    if (!keyfile || !vin || !action || seq < 0)
        return usage();
    char err[512], uuid[37];
    if (!cmd_id) {
        if (random_uuid(uuid) != 0) {
            fprintf(stderr, "vsoc-sign-envelope: /dev/urandom: %s\n", strerror(errno));
            return 2;
        }
        cmd_id = uuid;
    }
    static vsoc_envelope_t e;
    e.v = VSOC_ENVELOPE_VERSION;
    if (strlen(cmd_id) >= sizeof e.cmd_id || strlen(vin) >= sizeof e.vin ||
        strlen(action) >= sizeof e.action || strlen(incident) >= sizeof e.incident_id) {
        fprintf(stderr, "vsoc-sign-envelope: a field is too long\n");
        return 2;
    }
    strcpy(e.cmd_id, cmd_id);
    strcpy(e.vin, vin);
    strcpy(e.action, action);
    strcpy(e.incident_id, incident);
    e.seq = (uint64_t)seq;
    e.ttl_s = ttl;
    e.issued_at = issued;
    e.expires_at = expires >= 0 ? expires : issued + valid;
    if (vsoc_envelope_set_args(&e, args, err, sizeof err) != 0) {
        fprintf(stderr, "vsoc-sign-envelope: %s\n", err);
        return 2;
    }
    vsoc_key_t *k = vsoc_key_load_private(keyfile, key_id, err, sizeof err);
    if (!k) {
        fprintf(stderr, "vsoc-sign-envelope: %s\n", err);
        return 2;
    }
    int rc = vsoc_envelope_sign(&e, k, err, sizeof err);
    vsoc_key_free(k);
    if (rc != 0) {
        fprintf(stderr, "vsoc-sign-envelope: %s\n", err);
        return 2;
    }
    if (forge) /* a base64 digit early in the signature: still 88 canonical characters */
        e.sig[10] = e.sig[10] == 'A' ? 'B' : 'A';
    char *out;
    size_t n;
    if (vsoc_envelope_serialize(&e, &out, &n) != 0) {
        fprintf(stderr, "vsoc-sign-envelope: cannot serialize (time out of range?)\n");
        return 2;
    }
    printf("%s\n", out);
    free(out);
    return 0;
}
