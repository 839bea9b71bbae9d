/* cmd_keygen.c: vsoc keygen: generates an Ed25519 key pair for signing command envelopes
 * (docs/envelope.md). Never overwrites a key. */
#include "cli.h"
#include "envelope.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc keygen --out DIR [--key-id ID]\n"
            "\n"
            "Generates an Ed25519 key pair for signing command envelopes and writes\n"
            "DIR/<ID>.key (private key, PEM, mode 0600) and DIR/<ID>.pub (public key, PEM)\n"
            "for the vehicles to trust. DIR is created (mode 0700) when missing. An existing\n"
            "key of that id is never overwritten. Envelopes carry the id as key_id; the\n"
            "agent takes it from the .pub file's name.\n"
            "\n"
            "options:\n"
            "  -o, --out DIR   where to write the key pair (required)\n"
            "  --key-id ID     the key id: 1..%d of A-Z a-z 0-9 . _ - (default\n"
            "                  vsoc-YYYY-MM, the current UTC month)\n"
            "  -h, --help      this help\n"
            "\n"
            "exit status: 0 written, 1 the key could not be written, 2 usage errors.\n",
            VSOC_KEY_ID_MAX);
}

int cmd_keygen(int argc, char **argv)
{
    const char *dir = NULL, *key_id = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *iv = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || cli_opt(a, "--out", &iv)) {
            if (!(dir = cli_value(argc, argv, &i, iv, "vsoc keygen", "--out")))
                return EXIT_USAGE;
        } else if (cli_opt(a, "--key-id", &iv)) {
            if (!(key_id = cli_value(argc, argv, &i, iv, "vsoc keygen", "--key-id")))
                return EXIT_USAGE;
        } else {
            fprintf(stderr, "vsoc keygen: unexpected argument %s (see vsoc keygen --help)\n",
                    a);
            return EXIT_USAGE;
        }
    }
    if (!dir) {
        fprintf(stderr, "vsoc keygen: --out DIR is required (see vsoc keygen --help)\n");
        return EXIT_USAGE;
    }
    char def[32];
    if (!key_id) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(def, sizeof def, "vsoc-%Y-%m", &tm);
        key_id = def;
    }
    if (!vsoc_key_id_valid(key_id)) {
        fprintf(stderr, "vsoc keygen: invalid key id \"%s\" (1..%d of A-Z a-z 0-9 . _ -, "
                        "not starting with '.')\n", key_id, VSOC_KEY_ID_MAX);
        return EXIT_USAGE;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "vsoc keygen: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char err[512];
    if (vsoc_key_generate(dir, key_id, err, sizeof err) != 0) {
        fprintf(stderr, "vsoc keygen: %s\n", err);
        return 1;
    }
    fprintf(stderr, "vsoc keygen: wrote %s/%s.key (private, keep it secret) and %s/%s.pub\n",
            dir, key_id, dir, key_id);
    return 0;
}
