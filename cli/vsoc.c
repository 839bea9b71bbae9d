/* vsoc.c: the vsoc command: dispatches to subcommands (docs/vsoc.md). */
#include "cli.h"
#include "file/reader.h"
#include "util.h"
#include "vsoc.h"

#include <jansson.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc <command> [options]\n"
            "\n"
            "vsoc is a vehicle security operations center engine: it replays in-vehicle\n"
            "captures (candump, JSON Lines IDS events) through YAML detection rules and\n"
            "writes OCSF alerts.\n"
            "\n"
            "commands:\n"
            "  replay      replay captures through the rules, write alerts (vsoc replay --help)\n"
            "  rules lint  check rule files and report every problem as file:line:col\n"
            "  rules test  run the tests embedded in rules\n"
            "  baseline    learn, show or score a baseline of normal traffic (vsoc baseline --help)\n"
            "  playbooks   lint, list or show the incident playbooks (vsoc playbooks --help)\n"
            "  incidents   list, show, resolve incidents in a store (vsoc incidents --help)\n"
            "  commands    list, approve, reject, export vehicle commands (vsoc commands --help)\n"
            "  respond     deliver approved commands to vehicles and collect their acks\n"
            "  serve       the SOC service: Kafka in, alerts out, store, playbooks, metrics\n"
            "  audit       verify or show a store's hash-chained audit log\n"
            "  keygen      write an Ed25519 key pair for signing vehicle commands\n"
            "  version     print the version\n"
            "  help        print this help\n"
            "\n"
            "Each command has its own --help and a page in docs/.\n");
}

/* $env, else ../share/vsoc/<what> beside the binary when installed, else the source tree's
 * copy (fallback). */
static const char *default_dir(const char *env_name, const char *what, char *installed,
                               size_t cap, const char *fallback)
{
    const char *env = getenv(env_name);
    if (env && *env)
        return env;
    char exe[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(installed, cap, "%s/../share/vsoc/%s", exe, what);
            if (access(installed, R_OK) == 0)
                return installed;
        }
    }
    return fallback;
}

const char *cli_default_rules(void)
{
    static char installed[PATH_MAX + 32];
    return default_dir("VSOC_RULES", "rules", installed, sizeof installed, VSOC_DEFAULT_RULES);
}

const char *cli_default_playbooks(void)
{
    static char installed[PATH_MAX + 32];
    return default_dir("VSOC_PLAYBOOKS", "playbooks", installed, sizeof installed,
                       VSOC_DEFAULT_PLAYBOOKS);
}

vsoc_ruleset_t *cli_load_rules(const char *const *paths, size_t n, int show_warnings)
{
    const char *def = cli_default_rules();
    if (n == 0) {
        paths = &def;
        n = 1;
    }
    vsoc_diags_t *d = vsoc_diags_new();
    if (!d) {
        fprintf(stderr, "vsoc: out of memory\n");
        return NULL;
    }
    vsoc_ruleset_t *rs = vsoc_ruleset_load(paths, n, &cli_rule_load_opts, d);
    vsoc_diags_sort(d);
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        if (g->severity == VSOC_DIAG_ERROR || show_warnings)
            fprintf(stderr, "%s:%d:%d: %s: %s\n", g->file, g->line, g->col,
                    g->severity == VSOC_DIAG_ERROR ? "error" : "warning", g->msg);
    }
    if (vsoc_diags_errors(d)) {
        fprintf(stderr, "vsoc: %zu error%s in rules; nothing was run (see vsoc rules lint)\n",
                vsoc_diags_errors(d), vsoc_diags_errors(d) == 1 ? "" : "s");
        vsoc_ruleset_unref(rs);
        rs = NULL;
    } else if (!rs) {
        fprintf(stderr, "vsoc: out of memory loading rules\n");
    }
    vsoc_diags_free(d);
    return rs;
}

static int check_event(const char *line, size_t n, const char **reason)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    int rc = vsoc_parse_line(VSOC_FMT_UNKNOWN, line, n, &ev, NULL, reason);
    if (ev.doc)
        json_decref(ev.doc);
    return rc == 0 ? 0 : -1;
}

const vsoc_rule_load_opts_t cli_rule_load_opts = {.check_event = check_event};

uint64_t cli_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cli_fmt_time(int64_t us, char *buf, size_t n)
{
    int64_t s = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        s--;
    }
    int64_t days = s / 86400, rem = s % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    int m, d;
    vsoc_civil_from_days(days, &y, &m, &d);
    snprintf(buf, n, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
             (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)(frac / 1000));
}

void cli_on_bad(void *ctx, const char *file, uint64_t lineno, const char *reason)
{
    cli_bad_t *b = ctx;
    b->lines++;
    if ((long)b->lines <= b->max_errors)
        fprintf(stderr, "%s:%llu: %s\n", file, (unsigned long long)lineno, reason);
}

void cli_bad_summary(const cli_bad_t *b)
{
    if ((long)b->lines > b->max_errors)
        fprintf(stderr, "... and %llu more malformed lines\n",
                (unsigned long long)(b->lines - (uint64_t)b->max_errors));
}

const char *cli_value(int argc, char **argv, int *i, const char *inline_val, const char *prog,
                      const char *name)
{
    if (inline_val)
        return inline_val;
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", prog, name);
        return NULL;
    }
    return argv[++*i];
}

int cli_opt(const char *arg, const char *name, const char **inline_val)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == 0) {
        *inline_val = NULL;
        return 1;
    }
    if (arg[n] == '=') {
        *inline_val = arg + n + 1;
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "replay"))
        return cmd_replay(argc - 1, argv + 1);
    if (!strcmp(cmd, "rules"))
        return cmd_rules(argc - 1, argv + 1);
    if (!strcmp(cmd, "baseline"))
        return cmd_baseline(argc - 1, argv + 1);
    if (!strcmp(cmd, "keygen"))
        return cmd_keygen(argc - 1, argv + 1);
    if (!strcmp(cmd, "playbooks"))
        return cmd_playbooks(argc - 1, argv + 1);
    if (!strcmp(cmd, "incidents"))
        return cmd_incidents(argc - 1, argv + 1);
    if (!strcmp(cmd, "commands"))
        return cmd_commands(argc - 1, argv + 1);
    if (!strcmp(cmd, "respond"))
        return cmd_respond(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "audit"))
        return cmd_audit(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("vsoc %s\n", VSOC_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "vsoc: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
