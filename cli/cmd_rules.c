/* cmd_rules.c: vsoc rules lint | test (docs/vsoc-rules.md).
 *
 * lint reports every problem of every file, including test events that no reader format
 * accepts; test runs each rule's embedded tests on a fresh engine holding only that rule. */
#include "cli.h"
#include "baseline.h"
#include "engine.h"
#include "score.h"
#include "vsoc.h"
#include "file/reader.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc rules lint [--strict] [--quiet] PATH...\n"
            "       vsoc rules test [--verbose] PATH...\n"
            "\n"
            "lint   compiles rule files (PATH: files or directories, searched for *.yml and\n"
            "       *.yaml) and reports every problem as file:line:col: error|warning: message.\n"
            "       Exits 1 when there is any error (with --strict: any warning too).\n"
            "test   runs the tests embedded in each rule (events and the expected number of\n"
            "       alerts) and prints 'N passed, N failed'. Exits 1 when any test fails or a\n"
            "       rule does not compile.\n"
            "\n"
            "Without PATH both use the default pack (%s).\n",
            cli_default_rules());
}

static int lint(int argc, char **argv)
{
    int strict = 0, quiet = 0;
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    size_t n = 0;
    if (!paths)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--strict"))
            strict = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q"))
            quiet = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            free(paths);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "vsoc rules lint: unknown option '%s'\n", argv[i]);
            free(paths);
            return EXIT_USAGE;
        } else
            paths[n++] = argv[i];
    }
    const char *def = cli_default_rules();
    if (n == 0)
        paths[n++] = def;
    vsoc_diags_t *d = vsoc_diags_new();
    vsoc_ruleset_t *rs = d ? vsoc_ruleset_load(paths, n, &cli_rule_load_opts, d) : NULL;
    if (!rs) {
        fprintf(stderr, "vsoc rules lint: out of memory\n");
        vsoc_diags_free(d);
        free(paths);
        return 1;
    }
    vsoc_diags_sort(d);
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        if (g->severity == VSOC_DIAG_WARNING && quiet)
            continue;
        printf("%s:%d:%d: %s: %s\n", g->file, g->line, g->col,
               g->severity == VSOC_DIAG_ERROR ? "error" : "warning", g->msg);
    }
    size_t errors = vsoc_diags_errors(d), warnings = vsoc_diags_warnings(d);
    fprintf(stderr, "%zu file%s, %zu rule%s compiled: %zu error%s, %zu warning%s\n",
            vsoc_ruleset_files(rs), vsoc_ruleset_files(rs) == 1 ? "" : "s",
            vsoc_ruleset_count(rs), vsoc_ruleset_count(rs) == 1 ? "" : "s", errors,
            errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
    if (vsoc_ruleset_count(rs) == 0 && errors == 0)
        fprintf(stderr, "warning: no rules found (files must end in .yml or .yaml)\n");
    int rc = errors || (strict && warnings) ? 1 : 0;
    vsoc_ruleset_unref(rs);
    vsoc_diags_free(d);
    free(paths);
    return rc;
}

static void count_alert(void *ctx, const vsoc_alert_t *a)
{
    (void)a;
    (*(long *)ctx)++;
}

/* Runs one test; returns the number of alerts, or -1 when an event does not parse. */
/* Parses test line l (of lines) into ev as a replay would read it. Returns 0, or -1 with the
 * reason in why (lines are checked by lint, so this is rare). */
static int test_event(const vsoc_rule_t *r, const vsoc_rule_test_t *t, const char *line,
                      size_t l, int lineno, vsoc_event_t *ev, char *why, size_t whylen)
{
    vsoc_event_clear(ev);
    vsoc_format_t fmt;
    const char *reason = NULL;
    const char *file = vsoc_rule_file(r);
    if (vsoc_parse_line(VSOC_FMT_UNKNOWN, line, strlen(line), ev, &fmt, &reason) != 0) {
        snprintf(why, whylen, "%s:%d: event does not parse: %s", file, lineno,
                 reason ? reason : "malformed");
        if (ev->doc)
            json_decref(ev->doc);
        return -1;
    }
    if (ev->kind == VSOC_EVENT_CAN) {
        ev->vin.p = t->vin;
        ev->vin.n = strlen(t->vin);
    }
    /* Untimed lines (labelled, or candump output recorded without -t) get the same 1 ms
     * spacing the reader gives them in a replay. */
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (fmt == VSOC_FMT_LABELLED || (fmt == VSOC_FMT_CANDUMP_SPACED && *p != '('))
        ev->ts_us = (int64_t)l * 1000;
    ev->source.p = file;
    ev->source.n = strlen(file);
    ev->line.p = line;
    ev->line.n = strlen(line);
    ev->lineno = (uint64_t)lineno;
    return 0;
}

/* A test's "learn" lines as a baseline and its scorer; both NULL when it has none. */
static int test_baseline(const vsoc_rule_t *r, const vsoc_rule_test_t *t, vsoc_baseline_t **b,
                         vsoc_scorer_t **sc, char *why, size_t whylen)
{
    *b = NULL;
    *sc = NULL;
    if (!t->nlearn)
        return 0;
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    if (!l || vsoc_baseline_learner_file_begin(l, "learn", "") != 0) {
        vsoc_baseline_learner_free(l);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < t->nlearn; i++) {
        vsoc_event_t ev;
        if (test_event(r, t, t->learn[i], i, t->line, &ev, why, whylen) != 0) {
            vsoc_baseline_learner_free(l);
            return -1;
        }
        vsoc_baseline_learner_add(l, &ev);
        if (ev.doc)
            json_decref(ev.doc);
    }
    *b = vsoc_baseline_from_learner(l, "test", VSOC_VERSION);
    vsoc_baseline_learner_free(l);
    *sc = *b ? vsoc_scorer_new(*b) : NULL;
    if (!*sc) {
        vsoc_baseline_free(*b);
        *b = NULL;
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

static long run_test(vsoc_ruleset_t *one, const vsoc_rule_t *r, const vsoc_rule_test_t *t,
                     char *why, size_t whylen)
{
    long alerts = 0;
    char err[256];
    vsoc_baseline_t *b;
    vsoc_scorer_t *sc;
    if (test_baseline(r, t, &b, &sc, why, whylen) != 0)
        return -1;
    vsoc_engine_opts_t eo = {.on_alert = count_alert, .ctx = &alerts, .scorer = sc};
    vsoc_engine_t *e = vsoc_engine_new(one, &eo, err, sizeof err);
    if (!e) {
        snprintf(why, whylen, "%s", err);
        alerts = -1;
        goto done;
    }
    for (size_t l = 0; l < t->nlines; l++) {
        vsoc_event_t ev;
        if (test_event(r, t, t->lines[l], l, t->line_nos[l], &ev, why, whylen) != 0) {
            alerts = -1;
            break;
        }
        vsoc_engine_process(e, &ev);
        if (ev.doc)
            json_decref(ev.doc);
    }
done:
    vsoc_engine_free(e);
    vsoc_scorer_free(sc);
    vsoc_baseline_free(b);
    return alerts;
}

static int test(int argc, char **argv)
{
    int verbose = 0;
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    size_t n = 0;
    if (!paths)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v"))
            verbose = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            free(paths);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "vsoc rules test: unknown option '%s'\n", argv[i]);
            free(paths);
            return EXIT_USAGE;
        } else
            paths[n++] = argv[i];
    }
    vsoc_ruleset_t *rs = cli_load_rules(paths, n, 0);
    free(paths);
    if (!rs)
        return 1;
    long passed = 0, failed = 0, untested = 0;
    for (size_t i = 0; i < vsoc_ruleset_count(rs); i++) {
        const vsoc_rule_t *r = vsoc_ruleset_rule(rs, i);
        if (vsoc_rule_test_count(r) == 0) {
            untested++;
            continue;
        }
        vsoc_ruleset_t *one = vsoc_ruleset_subset(rs, i);
        if (!one) {
            fprintf(stderr, "vsoc rules test: out of memory\n");
            vsoc_ruleset_unref(rs);
            return 1;
        }
        for (size_t t = 0; t < vsoc_rule_test_count(r); t++) {
            const vsoc_rule_test_t *tt = vsoc_rule_test(r, t);
            char why[512] = "";
            long got = run_test(one, r, tt, why, sizeof why);
            if (got == tt->expect) {
                passed++;
                if (verbose)
                    printf("ok    %s: %s\n", vsoc_rule_id(r), tt->name);
            } else {
                failed++;
                if (got < 0)
                    printf("FAIL  %s: %s: %s\n", vsoc_rule_id(r), tt->name, why);
                else
                    printf("FAIL  %s:%d:%d: %s: %s: expected %ld alert%s, got %ld\n",
                           vsoc_rule_file(r), tt->line, tt->col, vsoc_rule_id(r), tt->name,
                           tt->expect, tt->expect == 1 ? "" : "s", got);
            }
        }
        vsoc_ruleset_unref(one);
    }
    printf("%ld passed, %ld failed", passed, failed);
    if (untested)
        printf(" (%ld rule%s without tests)", untested, untested == 1 ? "" : "s");
    printf("\n");
    vsoc_ruleset_unref(rs);
    return failed ? 1 : 0;
}

int cmd_rules(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "lint"))
        return lint(argc - 1, argv + 1);
    if (!strcmp(argv[1], "test"))
        return test(argc - 1, argv + 1);
    fprintf(stderr, "vsoc rules: unknown subcommand '%s' (lint or test)\n", argv[1]);
    return EXIT_USAGE;
}
