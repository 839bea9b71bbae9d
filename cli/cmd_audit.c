/* cmd_audit.c: vsoc audit verify | show (docs/vsoc-audit.md): checks a store's hash-chained
 * audit log, or lists it. Reads an existing store, never creates one. */
#include "cli.h"
#include "cli_store.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc audit verify --db FILE [--head HASH]\n"
            "       vsoc audit show --db FILE [--json]\n"
            "\n"
            "verify  recomputes the hash chain of the audit log and prints\n"
            "        'audit: N rows, chain intact, head HASH', or names the first row that was\n"
            "        changed, inserted or deleted ('audit: row K was changed: ...')\n"
            "show    lists the audit rows oldest first: seq, time (UTC), actor, event, subject,\n"
            "        detail\n"
            "\n"
            "options:\n"
            "  --db FILE    the store (required; it must exist)\n"
            "  --head HASH  a head printed by an earlier verify and kept elsewhere: the log\n"
            "               must still reach it (detects rows cut from the end)\n"
            "  --json       one JSON object per row, with its hash\n"
            "  -h, --help   this help\n"
            "\n"
            "exit status: 0 intact (verify) or listed (show), 1 the log does not verify or the\n"
            "store could not be read, 2 usage errors.\n");
}

typedef cli_store_opts_t opts_t;

static int check(const char *prog, const opts_t *o)
{
    if (o->head) {
        size_t n = strlen(o->head), i = 0;
        while (i < n && isxdigit((unsigned char)o->head[i]))
            i++;
        if (n != 64 || i != n) {
            fprintf(stderr, "%s: --head takes the 64 hex digits verify printed, not '%s'\n",
                    prog, o->head);
            return EXIT_USAGE;
        }
    }
    return -1;
}

static const cli_store_cmd_t cmd = {"vsoc audit", NULL, NULL, usage, check};

static int verify(int argc, char **argv)
{
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, "vsoc audit verify", &cmd, CLI_O_HEAD, &o, &rc);
    if (!s)
        return rc;
    vsoc_audit_report_t r;
    rc = vsoc_store_audit_verify(s, o.head, &r);
    if (rc == 0)
        printf("audit: %" PRId64 " row%s, chain intact, head %s\n", r.rows,
               r.rows == 1 ? "" : "s", r.head);
    else if (rc == 1)
        printf("audit: %s\n", r.problem);
    else
        fprintf(stderr, "vsoc: %s\n", vsoc_store_errmsg(s));
    vsoc_store_close(s);
    return rc == 0 ? 0 : 1;
}

static int show_row(void *ctx, int64_t seq, int64_t time_us, const char *actor,
                    const char *event, const char *subject, const char *detail,
                    const char *hash)
{
    const opts_t *o = ctx;
    char t[32];
    if (o->json) {
        json_t *j = json_pack("{s:I, s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "seq", (json_int_t)seq,
                              "time", cli_time_us(time_us, t), "time_us", (json_int_t)time_us,
                              "actor", actor, "event", event, "subject", subject, "detail",
                              detail, "hash", hash);
        return cli_print_json(j);
    }
    printf("%6" PRId64 "  %-20s  %-17s  %-24s  %-36s  %s\n", seq, cli_time_us(time_us, t), actor,
           event, subject, detail);
    return 0;
}

static int show(int argc, char **argv)
{
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, "vsoc audit show", &cmd, CLI_O_JSON, &o, &rc);
    if (!s)
        return rc;
    if (!o.json)
        printf("%6s  %-20s  %-17s  %-24s  %-36s  %s\n", "SEQ", "TIME", "ACTOR", "EVENT",
               "SUBJECT", "DETAIL");
    return cli_store_end(s, vsoc_store_each_audit(s, show_row, &o));
}

int cmd_audit(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "verify"))
        return verify(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show"))
        return show(argc - 1, argv + 1);
    fprintf(stderr, "vsoc audit: unknown subcommand '%s' (verify or show)\n", argv[1]);
    return EXIT_USAGE;
}
