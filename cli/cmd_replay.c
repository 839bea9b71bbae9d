/* cmd_replay.c: vsoc replay: captures through the rules, alerts out as OCSF JSON lines,
 * a summary on stderr (docs/vsoc-replay.md).
 *
 * Alerts depend only on the input and the rules, never on the wall clock, so two runs give
 * byte-identical output; the wall clock is read only for the summary and progress line. */
#include "cli.h"
#include "engine.h"
#include "fleet.h"
#include "score.h"
#include "file/reader.h"
#include "response.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc replay [options] FILE...\n"
            "\n"
            "Replays captured vehicle logs through detection rules and writes one OCSF\n"
            "Detection Finding (JSON) per alert. FILE is a candump log (compact or -ta\n"
            "spaced), a labelled ID#DATA list or JSON Lines IDS events; '-' reads stdin.\n"
            "The format is detected per file. Malformed lines are reported and skipped.\n"
            "\n"
            "options:\n"
            "  --rules PATH       rule file or directory (repeatable; default: the default\n"
            "                     pack, %s)\n"
            "  --baseline FILE    score CAN frames against a learnt baseline (vsoc baseline\n"
            "                     learn): adds baseline.score and baseline.reasons\n"
            "  --vin VIN          vehicle for captures that carry none (default: the file\n"
            "                     name without extension)\n"
            "  -o, --out FILE     write alerts to FILE instead of stdout\n"
            "  --max-errors N     print the first N malformed lines in full (default 10)\n"
            "  --frame-gap DUR    event-time spacing for captures without timestamps\n"
            "                     (default 1ms)\n"
            "  --stats            print per-rule counters (evaluations, matches, time)\n"
            "\n"
            "response (docs/playbooks.md): alerts are grouped into incidents, which run the\n"
            "playbooks; commands go to an in-process agent per vehicle (the loopback), all\n"
            "on event time. The response log goes to stderr.\n"
            "  --db FILE          keep alerts, incidents, runs, commands, acks and the audit\n"
            "                     log in a SQLite store (replaying again adds nothing)\n"
            "  --playbooks PATH   playbook file or directory (repeatable; default: the\n"
            "                     default playbooks, %s)\n"
            "  --no-playbooks     incidents only, no playbook runs\n"
            "  --key FILE         Ed25519 private key that signs commands (vsoc keygen);\n"
            "                     without one a throwaway key is made and the log says so\n"
            "  --transport T      loopback (default) or none: leave approved commands queued\n"
            "                     in --db for vsoc respond to deliver\n"
            "  --dry-run          show the commands that would be sent; send and store\n"
            "                     nothing of the response\n"
            "  --approve-all      approve every command that asks for a person (demos only;\n"
            "                     said loudly in the output)\n"
            "  --incident-gap DUR alerts of a vehicle further apart start a new incident\n"
            "                     (default 15m)\n"
            "  -q, --quiet        no summary and no response log\n"
            "  --no-progress      no progress line, even on a terminal\n"
            "  -h, --help         this help\n"
            "\n"
            "exit status: 0 done (with or without alerts), 1 a capture could not be read or\n"
            "the alerts could not be written or the store failed, 2 usage, rule or playbook\n"
            "errors.\n",
            cli_default_rules(), cli_default_playbooks());
}

typedef struct replay {
    FILE *out;
    int out_err;
    uint64_t alerts;
    cli_bad_t bad;
    cli_response_t *resp; /* NULL: no response side */
    int resp_err;
    /* fleet_count: every hit goes to one in-process counter (a replay is one instance) */
    vsoc_fleet_t *fleet;
    const vsoc_ruleset_t *rs;
    uint64_t *fleet_alerts; /* per rule index */
    uint64_t fleet_oom, fleet_bad_vin;
} replay_t;

static void write_alert(replay_t *rp, const vsoc_alert_t *a, const char *json)
{
    if (fputs(json, rp->out) == EOF || fputc('\n', rp->out) == EOF)
        rp->out_err = errno;
    if (rp->resp && cli_response_alert(rp->resp, a, json) != 0)
        rp->resp_err = 1;
    rp->alerts++;
}

/* The index of rule r in the ruleset (rules are sorted by id). */
static size_t rule_index(const vsoc_ruleset_t *rs, const vsoc_rule_t *r)
{
    size_t lo = 0, hi = vsoc_ruleset_count(rs);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(vsoc_rule_id(vsoc_ruleset_rule(rs, mid)), vsoc_rule_id(r));
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

/* A fleet_count rule's hit: counted, never written; the fleet alert it may raise is written
 * and handed to the response like any alert, under the fleet alert's uid. */
static void on_fleet_hit(replay_t *rp, const vsoc_alert_t *a)
{
    int64_t span;
    uint64_t gte;
    vsoc_fleet_result_t res;
    vsoc_rule_fleet(a->rule, &span, &gte);
    int rc = vsoc_fleet_hit(rp->fleet, vsoc_rule_id(a->rule), span, gte, a->vin.p, a->vin.n,
                            a->time_us, &res);
    if (rc == VSOC_EINVAL) {
        rp->fleet_bad_vin++; /* no vehicle id, or one longer than a vehicle id can be */
        return;
    }
    if (rc != 0) {
        rp->fleet_oom++;
        return;
    }
    if (!res.alert)
        return;
    char *s = vsoc_fleet_alert_json(a, &res);
    if (!s) {
        rp->out_err = ENOMEM;
        return;
    }
    vsoc_alert_t copy = *a;
    memcpy(copy.uid, res.uid, sizeof copy.uid);
    copy.count = res.vehicles;
    copy.first_us = res.first_us;
    write_alert(rp, &copy, s);
    free(s);
    size_t i = rule_index(rp->rs, a->rule);
    if (i != SIZE_MAX)
        rp->fleet_alerts[i]++;
}

static void on_alert(void *ctx, const vsoc_alert_t *a)
{
    replay_t *rp = ctx;
    if (a->fleet_hit) {
        on_fleet_hit(rp, a);
        return;
    }
    char *s = vsoc_alert_json(a);
    if (!s) {
        rp->out_err = ENOMEM;
        return;
    }
    write_alert(rp, a, s);
    free(s);
}


static const char *human_rate(double r, char *buf, size_t n)
{
    if (r >= 1e6)
        snprintf(buf, n, "%.2fM", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, n, "%.1fk", r / 1e3);
    else
        snprintf(buf, n, "%.0f", r);
    return buf;
}

int cmd_replay(int argc, char **argv)
{
    const char **rules = calloc((size_t)argc + 1, sizeof *rules);
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    size_t nrules = 0, nfiles = 0;
    const char *vin = NULL, *outpath = NULL, *bpath = NULL;
    long max_errors = 10;
    int64_t gap_us = 1000;
    int stats = 0, quiet = 0, progress = isatty(2);
    const char **pbs = calloc((size_t)argc + 1, sizeof *pbs);
    cli_response_opts_t ropt = {.loopback = 1, .playbooks = pbs};
    int rc = EXIT_USAGE;
    /* Everything below is released at done:, whatever stage failed. */
    vsoc_ruleset_t *rs = NULL;
    vsoc_baseline_t *baseline = NULL;
    vsoc_scorer_t *scorer = NULL;
    vsoc_engine_t *eng = NULL;
    replay_t rp = {.out = stdout, .bad = {0, 10}};
    if (!rules || !files || !pbs) {
        fprintf(stderr, "vsoc replay: out of memory\n");
        goto done;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (cli_opt(a, "--rules", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--rules")))
                goto done;
            rules[nrules++] = val;
        } else if (cli_opt(a, "--baseline", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--baseline")))
                goto done;
            bpath = val;
        } else if (cli_opt(a, "--vin", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--vin")))
                goto done;
            vin = val;
        } else if (cli_opt(a, "--out", &val) || cli_opt(a, "-o", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--out")))
                goto done;
            outpath = val;
        } else if (cli_opt(a, "--max-errors", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--max-errors")))
                goto done;
            char *end;
            max_errors = strtol(val, &end, 10);
            if (*end || max_errors < 0) {
                fprintf(stderr, "vsoc replay: --max-errors takes a number, not '%s'\n", val);
                goto done;
            }
        } else if (cli_opt(a, "--frame-gap", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--frame-gap")))
                goto done;
            if (vsoc_parse_duration(val, &gap_us) != 0 || gap_us <= 0) {
                fprintf(stderr, "vsoc replay: bad --frame-gap '%s' (e.g. 1ms, 500us)\n", val);
                goto done;
            }
        } else if (cli_opt(a, "--db", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--db")))
                goto done;
            ropt.db = val;
        } else if (cli_opt(a, "--playbooks", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--playbooks")))
                goto done;
            if (pbs)
                pbs[ropt.nplaybooks++] = val;
        } else if (!strcmp(a, "--no-playbooks")) {
            ropt.no_playbooks = 1;
        } else if (cli_opt(a, "--key", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--key")))
                goto done;
            ropt.keyfile = val;
        } else if (cli_opt(a, "--transport", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--transport")))
                goto done;
            if (!strcmp(val, "loopback")) {
                ropt.loopback = 1;
            } else if (!strcmp(val, "none")) {
                ropt.loopback = 0;
            } else {
                fprintf(stderr, "vsoc replay: --transport is loopback or none, not '%s'\n", val);
                goto done;
            }
        } else if (!strcmp(a, "--dry-run")) {
            ropt.dry_run = 1;
        } else if (!strcmp(a, "--approve-all")) {
            ropt.approve_all = 1;
        } else if (cli_opt(a, "--incident-gap", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc replay", "--incident-gap")))
                goto done;
            if (vsoc_parse_duration(val, &ropt.incident_gap_us) != 0 ||
                ropt.incident_gap_us <= 0) {
                fprintf(stderr, "vsoc replay: bad --incident-gap '%s' (e.g. 15m)\n", val);
                goto done;
            }
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--no-progress")) {
            progress = 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vsoc replay: unknown option '%s' (see vsoc replay --help)\n", a);
            goto done;
        } else {
            files[nfiles++] = a;
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "vsoc replay: no capture given (see vsoc replay --help)\n");
        goto done;
    }
    if (quiet)
        progress = 0;
    if (!ropt.loopback && !ropt.db && !ropt.dry_run) {
        fprintf(stderr, "vsoc replay: --transport none leaves commands in the store for vsoc "
                        "respond: it needs --db\n");
        goto done;
    }

    rs = cli_load_rules(rules, nrules, 0);
    if (!rs)
        goto done;
    if (vsoc_ruleset_count(rs) == 0)
        fprintf(stderr, "vsoc replay: warning: no rules found in %s: nothing can alert\n",
                nrules ? "the --rules paths" : cli_default_rules());
    rp.bad.max_errors = max_errors;
    rc = 1;
    if (outpath && strcmp(outpath, "-")) {
        rp.out = fopen(outpath, "w");
        if (!rp.out) {
            fprintf(stderr, "vsoc replay: cannot write %s: %s\n", outpath, strerror(errno));
            rp.out = stdout;
            goto done;
        }
    }
    static char outbuf[1 << 16];
    setvbuf(rp.out, outbuf, _IOFBF, sizeof outbuf);
    char err[512];
    if (bpath) {
        baseline = vsoc_baseline_load(bpath, err, sizeof err);
        scorer = baseline ? vsoc_scorer_new(baseline) : NULL;
        if (!scorer) {
            fprintf(stderr, "vsoc replay: %s\n", baseline ? "out of memory" : err);
            goto done;
        }
    }
    if (!ropt.no_playbooks || ropt.db) {
        ropt.log = quiet ? NULL : stderr;
        int code;
        rp.resp = cli_response_new(&ropt, &code);
        if (!rp.resp) {
            rc = code;
            goto done;
        }
    }
    rp.rs = rs;
    rp.fleet = vsoc_fleet_new();
    rp.fleet_alerts = calloc(vsoc_ruleset_count(rs) + 1, sizeof *rp.fleet_alerts);
    if (!rp.fleet || !rp.fleet_alerts) {
        fprintf(stderr, "vsoc replay: out of memory\n");
        goto done;
    }
    vsoc_engine_opts_t eo = {.on_alert = on_alert, .ctx = &rp,
                             .clock_ns = stats ? cli_now_ns : NULL, .scorer = scorer};
    eng = vsoc_engine_new(rs, &eo, err, sizeof err);
    if (!eng) {
        fprintf(stderr, "vsoc replay: %s\n", err);
        goto done;
    }
    rc = 0;
    uint64_t t0 = cli_now_ns(), last_progress = t0, events = 0, can = 0, ids = 0, lines = 0;
    uint64_t oom = 0;
    size_t opened = 0;
    vsoc_reader_opts_t ro = {.vin = vin, .frame_gap_us = gap_us, .on_bad = cli_on_bad,
                             .on_bad_ctx = &rp.bad};
    for (size_t f = 0; f < nfiles; f++) {
        vsoc_reader_t *r = vsoc_reader_open(files[f], &ro, err, sizeof err);
        if (!r) {
            fprintf(stderr, "vsoc replay: %s\n", err);
            rc = 1;
            continue;
        }
        opened++;
        vsoc_event_t ev;
        int got;
        while ((got = vsoc_reader_next(r, &ev)) == 1) {
            events++;
            if (ev.kind == VSOC_EVENT_CAN)
                can++;
            else
                ids++;
            if (vsoc_engine_process(eng, &ev) == VSOC_ENOMEM)
                oom++;
            if (rp.resp && cli_response_event(rp.resp, &ev) != 0)
                rp.resp_err = 1;
            if (progress && (events & 0xFFFF) == 0) {
                uint64_t now = cli_now_ns();
                if (now - last_progress > 250000000ull) {
                    char rb[32];
                    last_progress = now;
                    fprintf(stderr, "\r[vsoc] %s: %llu events, %s events/s, %llu alerts   ",
                            files[f], (unsigned long long)events,
                            human_rate((double)events * 1e9 / (double)(now - t0), rb, sizeof rb),
                            (unsigned long long)rp.alerts);
                }
            }
        }
        if (got < 0) {
            fprintf(stderr, "vsoc replay: %s: %s\n", files[f], vsoc_reader_errstr(r));
            rc = 1;
        }
        lines += vsoc_reader_lines(r);
        vsoc_reader_close(r);
    }
    if (rp.resp && cli_response_finish(rp.resp) != 0)
        rp.resp_err = 1;
    if (rp.resp_err)
        rc = 1;
    if (fflush(rp.out) != 0 && !rp.out_err)
        rp.out_err = errno;
    if (rp.out_err) {
        fprintf(stderr, "vsoc replay: writing alerts: %s\n", strerror(rp.out_err));
        rc = 1;
    }
    double secs = (double)(cli_now_ns() - t0) / 1e9;
    if (progress)
        fprintf(stderr, "\r%80s\r", "");
    cli_bad_summary(&rp.bad);
    if (oom)
        fprintf(stderr, "vsoc replay: warning: %llu events could not open a correlation group "
                        "(out of memory)\n", (unsigned long long)oom);
    if (rp.fleet_oom)
        fprintf(stderr, "vsoc replay: warning: %llu fleet_count hits could not be counted "
                        "(out of memory)\n", (unsigned long long)rp.fleet_oom);
    if (rp.fleet_bad_vin)
        fprintf(stderr, "vsoc replay: warning: %llu fleet_count hits not counted: their "
                        "vehicle id is empty or longer than %d bytes\n",
                (unsigned long long)rp.fleet_bad_vin, VSOC_VIN_MAX);
    if (!quiet) {
        char rb[32];
        fprintf(stderr,
                "replayed %zu file%s: %llu line%s, %llu event%s (%llu CAN, %llu IDS), "
                "%llu skipped as malformed\n",
                opened, opened == 1 ? "" : "s", (unsigned long long)lines, lines == 1 ? "" : "s",
                (unsigned long long)events, events == 1 ? "" : "s", (unsigned long long)can,
                (unsigned long long)ids, (unsigned long long)rp.bad.lines);
        fprintf(stderr, "rules: %zu from %s\n", vsoc_ruleset_count(rs),
                nrules ? "--rules" : cli_default_rules());
        fprintf(stderr, "alerts: %llu\n", (unsigned long long)rp.alerts);
        for (size_t i = 0; i < vsoc_ruleset_count(rs); i++) {
            const vsoc_rule_stats_t *st = vsoc_engine_rule_stats(eng, i);
            /* A fleet_count rule's alerts are raised here, by the fleet counter. */
            uint64_t n = st->alerts + rp.fleet_alerts[i];
            if (!n && !st->suppressed)
                continue;
            const vsoc_rule_t *rule = vsoc_ruleset_rule(rs, i);
            fprintf(stderr, "  %-48s %-13s %6llu", vsoc_rule_id(rule),
                    vsoc_level_name(vsoc_rule_level(rule)), (unsigned long long)n);
            if (st->suppressed)
                fprintf(stderr, "  (+%llu suppressed)", (unsigned long long)st->suppressed);
            fputc('\n', stderr);
        }
        if (rp.resp)
            cli_response_summary(rp.resp, stderr);
        fprintf(stderr, "elapsed %.3f s, %s events/s\n", secs,
                human_rate(secs > 0 ? (double)events / secs : 0, rb, sizeof rb));
    }
    if (stats) {
        fprintf(stderr, "\n%-48s %12s %10s %8s %10s %8s\n", "rule", "evaluations", "matches",
                "alerts", "time_ms", "re_limit");
        for (size_t i = 0; i < vsoc_ruleset_count(rs); i++) {
            const vsoc_rule_stats_t *st = vsoc_engine_rule_stats(eng, i);
            fprintf(stderr, "%-48s %12llu %10llu %8llu %10.2f %8llu\n",
                    vsoc_rule_id(vsoc_ruleset_rule(rs, i)), (unsigned long long)st->evals,
                    (unsigned long long)st->matches,
                    (unsigned long long)(st->alerts + rp.fleet_alerts[i]),
                    (double)st->ns / 1e6, (unsigned long long)st->regex_limit);
        }
        fprintf(stderr, "correlation groups live at the end: %llu\n",
                (unsigned long long)vsoc_engine_groups(eng));
    }
done:
    vsoc_fleet_free(rp.fleet);
    free(rp.fleet_alerts);
    cli_response_free(rp.resp);
    free(pbs);
    if (rp.out != stdout)
        fclose(rp.out);
    vsoc_engine_free(eng);
    vsoc_scorer_free(scorer);
    vsoc_baseline_free(baseline);
    vsoc_ruleset_unref(rs);
    free(rules);
    free(files);
    return rc;
}
