/* vsoc_agent.c: the reference vehicle agent. So far it only judges a command envelope
 * (docs/envelope.md): `vsoc-agent verify` prints "accepted" or "rejected: <reason>".
 *
 * Unlike engine/, the agent may read the wall clock: it is the default for --now. */
#include "envelope.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_REJECTED 1
#define EXIT_USAGE 2
#define MAX_KEYS 16

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc-agent verify --pubkey FILE [--pubkey FILE ...] [--vin VIN]\n"
            "                         [--now TIME] [--last-seq N] ENVELOPE.json\n"
            "       vsoc-agent --help\n"
            "\n"
            "verify: judges a signed command envelope as the vehicle would, in this order:\n"
            "key id among the trusted keys, signature, VIN, expiry, seq (replay), action.\n"
            "Prints \"accepted\" or \"rejected: <reason>\" with reason one of malformed,\n"
            "unknown_key, bad_signature, wrong_vin, expired, replayed, unknown_action\n"
            "(a malformed envelope's details go to stderr). '-' reads stdin.\n"
            "\n"
            "options:\n"
            "  --pubkey FILE   a trusted public key (PEM); its key id is the file name\n"
            "                  without extension (keys/vsoc-2026-01.pub: vsoc-2026-01).\n"
            "                  Repeat to trust several keys (rotation), up to %d\n"
            "  --vin VIN       this vehicle's VIN (default: the VIN is not checked)\n"
            "  --now TIME      judge expiry at TIME: YYYY-MM-DDTHH:MM:SSZ or epoch seconds\n"
            "                  (default: the current time)\n"
            "  --last-seq N    the last seq this vehicle accepted (default 0)\n"
            "  -h, --help      this help\n"
            "\n"
            "exit status: 0 accepted, 1 rejected, 2 usage errors or unreadable files.\n",
            MAX_KEYS);
}

/* The value of option name: "--name=v" or the next argument. */
static const char *value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 >= argc) {
        fprintf(stderr, "vsoc-agent: %s needs a value\n", name);
        return NULL;
    }
    return argv[++*i];
}

static int is_opt(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == 0 || arg[n] == '=');
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

static int parse_time(const char *s, int64_t *out)
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

/* Reads a whole file (or stdin for "-"), at most VSOC_ENVELOPE_MAX + 1 bytes: more is
 * rejected by the parser anyway. */
static char *read_all(const char *path, size_t *n)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "vsoc-agent: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(VSOC_ENVELOPE_MAX + 2);
    if (!buf) {
        fprintf(stderr, "vsoc-agent: out of memory\n");
    } else {
        *n = fread(buf, 1, VSOC_ENVELOPE_MAX + 1, f);
        if (ferror(f)) {
            fprintf(stderr, "vsoc-agent: %s: %s\n", path, strerror(errno));
            free(buf);
            buf = NULL;
        }
    }
    if (f != stdin)
        fclose(f);
    return buf;
}

static int cmd_verify(int argc, char **argv)
{
    const char *pubs[MAX_KEYS], *vin = NULL, *file = NULL;
    size_t npub = 0;
    int64_t now = (int64_t)time(NULL);
    uint64_t last_seq = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (is_opt(a, "--pubkey")) {
            if (!(v = value(argc, argv, &i, "--pubkey")))
                return EXIT_USAGE;
            if (npub == MAX_KEYS) {
                fprintf(stderr, "vsoc-agent: more than %d --pubkey\n", MAX_KEYS);
                return EXIT_USAGE;
            }
            pubs[npub++] = v;
        } else if (is_opt(a, "--vin")) {
            if (!(vin = value(argc, argv, &i, "--vin")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--now")) {
            if (!(v = value(argc, argv, &i, "--now")))
                return EXIT_USAGE;
            if (parse_time(v, &now) != 0) {
                fprintf(stderr, "vsoc-agent: --now: \"%s\" is neither YYYY-MM-DDTHH:MM:SSZ "
                                "nor epoch seconds\n", v);
                return EXIT_USAGE;
            }
        } else if (is_opt(a, "--last-seq")) {
            if (!(v = value(argc, argv, &i, "--last-seq")))
                return EXIT_USAGE;
            if (parse_u64(v, &last_seq) != 0) {
                fprintf(stderr, "vsoc-agent: --last-seq: \"%s\" is not a number\n", v);
                return EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vsoc-agent: unknown option %s (see vsoc-agent --help)\n", a);
            return EXIT_USAGE;
        } else if (file) {
            fprintf(stderr, "vsoc-agent: one envelope at a time (%s, %s)\n", file, a);
            return EXIT_USAGE;
        } else {
            file = a;
        }
    }
    if (!npub || !file) {
        fprintf(stderr, "vsoc-agent: verify needs %s (see vsoc-agent --help)\n",
                npub ? "an envelope file" : "at least one --pubkey");
        return EXIT_USAGE;
    }
    int rc = EXIT_USAGE;
    vsoc_key_t *keys[MAX_KEYS] = {0};
    char *buf = NULL;
    static vsoc_envelope_t e;
    for (size_t i = 0; i < npub; i++) {
        char err[512];
        if (!(keys[i] = vsoc_key_load_public(pubs[i], NULL, err, sizeof err))) {
            fprintf(stderr, "vsoc-agent: %s\n", err);
            goto done;
        }
    }
    size_t n = 0;
    if (!(buf = read_all(file, &n)))
        goto done;
    char reason[256];
    if (vsoc_envelope_parse(buf, n, &e, reason, sizeof reason) != 0) {
        fprintf(stderr, "vsoc-agent: %s: %s\n", file, reason);
        printf("rejected: %s\n", vsoc_envelope_reason_name(VSOC_ENVELOPE_MALFORMED));
        rc = EXIT_REJECTED;
        goto done;
    }
    vsoc_envelope_check_t chk = {.vin = vin, .now = now, .last_seq = last_seq};
    vsoc_envelope_reason_t r =
        vsoc_envelope_verify(&e, (const vsoc_key_t *const *)keys, npub, &chk);
    if (r == VSOC_ENVELOPE_OK) {
        printf("accepted\n");
        rc = 0;
    } else {
        printf("rejected: %s\n", vsoc_envelope_reason_name(r));
        rc = EXIT_REJECTED;
    }
done:
    free(buf);
    for (size_t i = 0; i < npub; i++)
        vsoc_key_free(keys[i]);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "verify"))
        return cmd_verify(argc - 1, argv + 1);
    fprintf(stderr, "vsoc-agent: unknown command \"%s\" (see vsoc-agent --help)\n", argv[1]);
    return EXIT_USAGE;
}
