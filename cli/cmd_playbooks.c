/* cmd_playbooks.c: vsoc playbooks lint | list | show (docs/vsoc-playbooks.md).
 *
 * lint reports every problem of every playbook file and checks trigger globs against the
 * rules that exist; list and show print the compiled playbooks, show with every default
 * filled in and in a form that itself compiles to the same playbook. */
#include "cli.h"
#include "playbook.h"
#include "rule.h"
#include "util.h"
#include "vsoc.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc playbooks lint [--strict] [--quiet] [--rules PATH]... [--no-rules]\n"
            "                           [PATH...]\n"
            "       vsoc playbooks list [PATH...]\n"
            "       vsoc playbooks show ID [PATH...]\n"
            "\n"
            "lint   compiles playbook files (PATH: files or directories, searched for *.yml\n"
            "       and *.yaml) and reports every problem as file:line:col: error|warning:\n"
            "       message, then checks each trigger glob against the rules (--rules PATH,\n"
            "       default the default rule pack; --no-rules skips it). Exits 1 when there\n"
            "       is any error (with --strict: any warning too).\n"
            "list   prints one line per playbook: id, trigger globs, min_level, step actions\n"
            "       (tab-separated, after a '# ' header line).\n"
            "show   prints playbook ID with every default filled in, as YAML that compiles\n"
            "       to the same playbook.\n"
            "\n"
            "Without PATH the default playbooks are used (%s).\n",
            cli_default_playbooks());
}

static void print_diags(vsoc_diags_t *d, FILE *out, int warnings)
{
    vsoc_diags_sort(d);
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        if (g->severity == VSOC_DIAG_WARNING && !warnings)
            continue;
        fprintf(out, "%s:%d:%d: %s: %s\n", g->file, g->line, g->col,
                g->severity == VSOC_DIAG_ERROR ? "error" : "warning", g->msg);
    }
}

/* Warns about trigger globs that no rule of paths (the default pack when n is 0) answers.
 * Returns 0, or -1 on allocation failure. */
static int check_rules(const vsoc_playbooks_t *pbs, const char *const *paths, size_t n,
                       vsoc_diags_t *d)
{
    const char *def = cli_default_rules();
    char from[512] = "the default rule pack";
    if (n == 0) {
        paths = &def;
        n = 1;
    } else {
        size_t used = (size_t)snprintf(from, sizeof from, "%s", paths[0]);
        for (size_t i = 1; i < n && used < sizeof from; i++)
            used += (size_t)snprintf(from + used, sizeof from - used, ", %s", paths[i]);
    }
    vsoc_diags_t *rd = vsoc_diags_new();
    vsoc_ruleset_t *rs = rd ? vsoc_ruleset_load(paths, n, NULL, rd) : NULL;
    size_t nr = rs ? vsoc_ruleset_count(rs) : 0;
    const char **ids = calloc(nr + 1, sizeof *ids);
    vsoc_level_t *levels = calloc(nr + 1, sizeof *levels);
    int rc = -1;
    if (!rs || !ids || !levels)
        goto done;
    rc = 0;
    if (vsoc_diags_errors(rd))
        fprintf(stderr, "vsoc playbooks lint: %zu error%s in the rules of %s (see vsoc rules "
                        "lint); globs are checked against the %zu rule%s that compiled\n",
                vsoc_diags_errors(rd), vsoc_diags_errors(rd) == 1 ? "" : "s", from, nr,
                nr == 1 ? "" : "s");
    if (nr == 0) {
        fprintf(stderr, "vsoc playbooks lint: no rules in %s: trigger globs not checked\n",
                from);
        goto done;
    }
    for (size_t i = 0; i < nr; i++) {
        const vsoc_rule_t *r = vsoc_ruleset_rule(rs, i);
        ids[i] = vsoc_rule_id(r);
        levels[i] = vsoc_rule_level(r);
    }
    vsoc_playbooks_check_rules(pbs, ids, levels, nr, from, d);
done:
    free(ids);
    free(levels);
    vsoc_ruleset_unref(rs);
    vsoc_diags_free(rd);
    return rc;
}

static int lint(int argc, char **argv)
{
    int strict = 0, quiet = 0, no_rules = 0, rc = 1;
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    const char **rules = calloc((size_t)argc + 1, sizeof *rules);
    size_t n = 0, nrules = 0;
    vsoc_diags_t *d = NULL;
    vsoc_playbooks_t *pbs = NULL;
    if (!paths || !rules)
        goto oom;
    for (int i = 1; i < argc; i++) {
        const char *val;
        if (!strcmp(argv[i], "--strict")) {
            strict = 1;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "--no-rules")) {
            no_rules = 1;
        } else if (cli_opt(argv[i], "--rules", &val)) {
            if (!(rules[nrules] = cli_value(argc, argv, &i, val, "vsoc playbooks lint",
                                            "--rules"))) {
                rc = EXIT_USAGE;
                goto done;
            }
            nrules++;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "vsoc playbooks lint: unknown option '%s'\n", argv[i]);
            rc = EXIT_USAGE;
            goto done;
        } else {
            paths[n++] = argv[i];
        }
    }
    if (n == 0)
        paths[n++] = cli_default_playbooks();
    if (!(d = vsoc_diags_new()) || !(pbs = vsoc_playbooks_load(paths, n, d)))
        goto oom;
    if (!no_rules && check_rules(pbs, rules, nrules, d) != 0)
        goto oom;
    print_diags(d, stdout, !quiet);
    size_t errors = vsoc_diags_errors(d), warnings = vsoc_diags_warnings(d);
    size_t np = vsoc_playbooks_count(pbs), nf = vsoc_playbooks_files(pbs);
    fprintf(stderr, "%zu playbook%s in %zu file%s: %zu error%s, %zu warning%s\n", np,
            np == 1 ? "" : "s", nf, nf == 1 ? "" : "s", errors, errors == 1 ? "" : "s",
            warnings, warnings == 1 ? "" : "s");
    if (np == 0 && errors == 0)
        fprintf(stderr, "warning: no playbooks found (files must end in .yml or .yaml)\n");
    rc = errors || (strict && warnings) ? 1 : 0;
    goto done;
oom:
    fprintf(stderr, "vsoc playbooks lint: out of memory\n");
    rc = 1;
done:
    vsoc_playbooks_free(pbs);
    vsoc_diags_free(d);
    free(paths);
    free(rules);
    return rc;
}

/* Loads for list and show: any error is printed and nothing else is done (a partial set
 * would hide the playbooks that failed). Returns the set or NULL. */
static vsoc_playbooks_t *load_clean(const char *const *paths, size_t n, const char *prog)
{
    const char *def = cli_default_playbooks();
    if (n == 0) {
        paths = &def;
        n = 1;
    }
    vsoc_diags_t *d = vsoc_diags_new();
    vsoc_playbooks_t *pbs = d ? vsoc_playbooks_load(paths, n, d) : NULL;
    if (!pbs) {
        fprintf(stderr, "%s: out of memory\n", prog);
    } else if (vsoc_diags_errors(d)) {
        print_diags(d, stderr, 0);
        fprintf(stderr, "%s: %zu error%s in playbooks (see vsoc playbooks lint)\n", prog,
                vsoc_diags_errors(d), vsoc_diags_errors(d) == 1 ? "" : "s");
        vsoc_playbooks_free(pbs);
        pbs = NULL;
    } else if (vsoc_playbooks_count(pbs) == 0) {
        fprintf(stderr, "%s: no playbooks found (files must end in .yml or .yaml)\n", prog);
        vsoc_playbooks_free(pbs);
        pbs = NULL;
    }
    vsoc_diags_free(d);
    return pbs;
}

/* Collects PATH arguments; returns -1 (usage printed) on an option, 1 on --help. */
static int take_paths(int argc, char **argv, int from, const char **paths, size_t *n,
                      const char *prog)
{
    for (int i = from; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 1;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "%s: unknown option '%s'\n", prog, argv[i]);
            return -1;
        }
        paths[(*n)++] = argv[i];
    }
    return 0;
}

static int list(int argc, char **argv)
{
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    size_t n = 0;
    if (!paths)
        return 1;
    int t = take_paths(argc, argv, 1, paths, &n, "vsoc playbooks list");
    if (t != 0) {
        free(paths);
        return t > 0 ? 0 : EXIT_USAGE;
    }
    vsoc_playbooks_t *pbs = load_clean(paths, n, "vsoc playbooks list");
    free(paths);
    if (!pbs)
        return 1;
    printf("# id\trules\tmin_level\tsteps\n");
    for (size_t i = 0; i < vsoc_playbooks_count(pbs); i++) {
        const vsoc_playbook_t *p = vsoc_playbooks_get(pbs, i);
        printf("%s\t", p->id);
        for (size_t r = 0; r < p->nrules; r++)
            printf("%s%s", r ? "," : "", p->rules[r]);
        printf("\t%s\t", vsoc_level_name(p->min_level));
        for (size_t s = 0; s < p->nsteps; s++)
            printf("%s%s", s ? "," : "", vsoc_action_name(p->steps[s].action));
        printf("\n");
    }
    vsoc_playbooks_free(pbs);
    return 0;
}

/* s as a YAML double-quoted scalar (JSON's escapes are YAML's). */
static void put_quoted(const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(t ? t : "\"\"", stdout);
    free(t);
    json_decref(j);
}

static void put_duration(const char *indent, const char *key, int64_t s)
{
    char b[32];
    vsoc_playbook_duration(s, b, sizeof b);
    printf("%s%s: %s\n", indent, key, b);
}

static void show_step(const vsoc_pb_step_t *s)
{
    static const char *const approvals[] = {"auto", "required", "two_person"};
    static const char *const onfail[] = {"abort", "continue", "escalate"};
    const char *in = "    ";
    printf("  - id: %s\n", s->id);
    printf("%saction: %s\n", in, vsoc_action_name(s->action));
    printf("%sargs: %s\n", in, s->args);
    if (vsoc_action_is_command(s->action)) {
        printf("%sapproval: %s\n", in, approvals[s->approval]);
        if (s->approval != VSOC_APPROVAL_AUTO)
            put_duration(in, "approval_timeout", s->approval_timeout_s);
        put_duration(in, "ack_timeout", s->ack_timeout_s);
        printf("%sretries: %d\n", in, s->retries);
    }
    printf("%son_failure: %s\n", in, onfail[s->on_failure]);
    if (!vsoc_action_is_command(s->action))
        return;
    if (s->ttl_s)
        put_duration(in, "ttl", s->ttl_s);
    else
        printf("%s# ttl: none\n", in);
    put_duration(in, "expires", s->expires_s);
    char gate[128];
    vsoc_gate_json(&s->gate, gate, sizeof gate);
    if (*gate)
        printf("%svehicle_state: %s\n", in, gate);
    else
        printf("%s# vehicle_state: none (sent whatever the vehicle's speed)\n", in);
}

static int show(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
    }
    if (argc < 2 || (argv[1][0] == '-' && argv[1][1])) {
        if (argc >= 2)
            fprintf(stderr, "vsoc playbooks show: unknown option '%s'\n", argv[1]);
        else
            fprintf(stderr, "usage: vsoc playbooks show ID [PATH...]\n");
        return EXIT_USAGE;
    }
    const char *id = argv[1];
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    size_t n = 0;
    if (!paths)
        return 1;
    if (take_paths(argc, argv, 2, paths, &n, "vsoc playbooks show") != 0) {
        free(paths);
        return EXIT_USAGE;
    }
    vsoc_playbooks_t *pbs = load_clean(paths, n, "vsoc playbooks show");
    free(paths);
    if (!pbs)
        return 1;
    const vsoc_playbook_t *p = vsoc_playbooks_find(pbs, id);
    if (!p) {
        size_t np = vsoc_playbooks_count(pbs);
        const char **ids = calloc(np, sizeof *ids);
        for (size_t i = 0; ids && i < np; i++)
            ids[i] = vsoc_playbooks_get(pbs, i)->id;
        const char *sug = ids ? vsoc_did_you_mean(id, ids, np) : NULL;
        if (sug)
            fprintf(stderr, "vsoc playbooks show: no playbook '%s' (did you mean '%s'?)\n", id,
                    sug);
        else
            fprintf(stderr, "vsoc playbooks show: no playbook '%s' (see vsoc playbooks list)\n",
                    id);
        free(ids);
        vsoc_playbooks_free(pbs);
        return 1;
    }
    printf("# %s:%d, every default filled in\n", p->file, p->line);
    printf("id: %s\ntitle: ", p->id);
    put_quoted(p->title);
    printf("\n");
    if (p->description) {
        printf("description: ");
        put_quoted(p->description);
        printf("\n");
    }
    /* Globs are quoted: a leading '*' would read as a YAML alias. */
    printf("trigger:\n  rules:\n");
    for (size_t r = 0; r < p->nrules; r++)
        printf("    - \"%s\"\n", p->rules[r]);
    printf("  min_level: %s\n", vsoc_level_name(p->min_level));
    put_duration("  ", "cooldown", p->cooldown_s);
    printf("steps:\n");
    for (size_t s = 0; s < p->nsteps; s++)
        show_step(&p->steps[s]);
    if (p->max_vehicles_per_hour)
        printf("limits:\n  max_vehicles_per_hour: %u\n", (unsigned)p->max_vehicles_per_hour);
    else
        printf("# limits: none (no cap on vehicles per hour)\n");
    vsoc_playbooks_free(pbs);
    return 0;
}

int cmd_playbooks(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "lint"))
        return lint(argc - 1, argv + 1);
    if (!strcmp(argv[1], "list"))
        return list(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show"))
        return show(argc - 1, argv + 1);
    fprintf(stderr, "vsoc playbooks: unknown subcommand '%s' (lint, list or show)\n", argv[1]);
    return EXIT_USAGE;
}
