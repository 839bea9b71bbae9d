/* cmd_incidents.c: vsoc incidents list | show | resolve | false-positive | reopen
 * (docs/vsoc-incidents.md). Reads an existing store, never creates one; state changes by
 * people are checked against the incident state machine and written with an audit row. */
#include "cli.h"
#include "cli_store.h"

#include <jansson.h>

#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc incidents list --db FILE [--state S] [--vin VIN] [--json]\n"
            "       vsoc incidents show ID --db FILE [--json]\n"
            "       vsoc incidents resolve ID --by NAME [--why TEXT] --db FILE\n"
            "       vsoc incidents false-positive ID --by NAME [--why TEXT] --db FILE\n"
            "       vsoc incidents reopen ID --by NAME [--why TEXT] --db FILE\n"
            "\n"
            "list            incidents newest first: id (8 characters), vehicle, level, state,\n"
            "                alerts, first and last alert (UTC), first rule\n"
            "show            one incident with its alerts, playbook runs and commands\n"
            "resolve         close an incident (open or contained)\n"
            "false-positive  close an incident as a false positive\n"
            "reopen          set a contained incident back to open (its quarantine was\n"
            "                lifted); resolved and false_positive are final: later alerts\n"
            "                open a new incident\n"
            "\n"
            "ID is an incident id or a unique prefix of at least 8 characters.\n"
            "\n"
            "options:\n"
            "  --db FILE     the store (required; it must exist)\n"
            "  --state S     list only incidents in state S: open, contained, resolved,\n"
            "                false_positive\n"
            "  --vin VIN     list only this vehicle's incidents\n"
            "  --json        one JSON object per line (list) or one object (show)\n"
            "  --by NAME     who makes the change (recorded in the audit log)\n"
            "  --why TEXT    why (recorded in the audit log)\n"
            "  -h, --help    this help\n"
            "\n"
            "exit status: 0 done, 1 the store could not be read or the change is not allowed,\n"
            "2 usage errors.\n");
}

typedef cli_store_opts_t opts_t;

static int check(const char *prog, const opts_t *o)
{
    vsoc_incident_state_t st;
    if (o->state && vsoc_incident_state_from_name(o->state, &st) != 0) {
        fprintf(stderr, "%s: unknown state '%s' (open, contained, resolved, false_positive)\n",
                prog, o->state);
        return EXIT_USAGE;
    }
    return -1;
}

static const cli_store_cmd_t cmd = {"vsoc incidents", "incident", "say who makes the change",
                                    usage, check};

static json_t *incident_json(const vsoc_incident_t *inc)
{
    char f[32], l[32];
    const char *lv = vsoc_level_name(inc->level);
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:I, s:s, s:s, s:I}", "id",
                     inc->id, "vin", inc->vin, "level", lv ? lv : "?", "state",
                     vsoc_incident_state_name(inc->state), "alerts", (json_int_t)inc->alerts,
                     "first", cli_time_us(inc->first_us, f), "first_us",
                     (json_int_t)inc->first_us, "last", cli_time_us(inc->last_us, l),
                     "last_us", (json_int_t)inc->last_us, "first_rule", inc->first_rule,
                     "first_alert", inc->first_alert, "tactics", (json_int_t)inc->tactics);
}

/* ---- list -------------------------------------------------------------------------------- */

static int list_one(void *ctx, const vsoc_incident_t *inc)
{
    const opts_t *o = ctx;
    if (o->json)
        return cli_print_json(incident_json(inc));
    char f[32], l[32];
    const char *lv = vsoc_level_name(inc->level);
    printf("%-8.8s  %-17s  %-13s  %-14s  %6llu  %-20s  %-20s  %s\n", inc->id, inc->vin,
           lv ? lv : "?", vsoc_incident_state_name(inc->state),
           (unsigned long long)inc->alerts, cli_time_us(inc->first_us, f),
           cli_time_us(inc->last_us, l), inc->first_rule);
    return 0;
}

static int list(int argc, char **argv)
{
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, "vsoc incidents list", &cmd,
                                      CLI_O_STATE | CLI_O_VIN | CLI_O_JSON, &o, &rc);
    if (!s)
        return rc;
    /* check() has accepted the name. */
    vsoc_incident_state_t st = VSOC_INC_OPEN;
    if (o.state)
        vsoc_incident_state_from_name(o.state, &st);
    if (!o.json)
        printf("%-8s  %-17s  %-13s  %-14s  %6s  %-20s  %-20s  %s\n", "ID", "VIN", "LEVEL",
               "STATE", "ALERTS", "FIRST", "LAST", "RULE");
    return cli_store_end(s, vsoc_store_each_incident(s, o.state ? (int)st : -1, o.vin,
                                                     list_one, &o));
}

/* ---- show -------------------------------------------------------------------------------- */

typedef struct show_ctx {
    const opts_t *o;
    const char *incident_id;
    json_t *arr;   /* --json: the array being filled */
    int n;
} show_ctx_t;

static int show_alert(void *ctx, const char *uid, const char *rule_id, vsoc_level_t level,
                      int64_t time_us, const char *json)
{
    show_ctx_t *x = ctx;
    char t[32];
    const char *lv = vsoc_level_name(level);
    if (x->arr) {
        json_t *doc = json_loads(json, 0, NULL);
        json_t *a = json_pack("{s:s, s:I, s:s, s:s, s:s, s:o?}", "time", cli_time_us(time_us, t),
                              "time_us", (json_int_t)time_us, "rule", rule_id, "level",
                              lv ? lv : "?", "uid", uid, "alert", doc);
        return a && json_array_append_new(x->arr, a) == 0 ? 0 : 1;
    }
    if (x->n++ == 0)
        printf("\nalerts:\n  %-20s  %-40s  %-13s  %s\n", "TIME", "RULE", "LEVEL", "UID");
    printf("  %-20s  %-40s  %-13s  %s\n", cli_time_us(time_us, t), rule_id, lv ? lv : "?", uid);
    return 0;
}

static int show_run(void *ctx, const vsoc_run_t *run)
{
    show_ctx_t *x = ctx;
    if (strcmp(run->incident_id, x->incident_id) != 0)
        return 0;
    const char *st = vsoc_run_state_name(run->state);
    if (x->arr) {
        json_t *a = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "id", run->id, "playbook",
                              run->playbook, "state", st ? st : "?", "step",
                              (json_int_t)run->step, "rule_id", run->rule_id, "reason",
                              run->reason);
        return a && json_array_append_new(x->arr, a) == 0 ? 0 : 1;
    }
    if (x->n++ == 0)
        printf("\nruns:\n  %-32s  %-8s  %4s  %s\n", "PLAYBOOK", "STATE", "STEP", "REASON");
    printf("  %-32s  %-8s  %4u  %s\n", run->playbook, st ? st : "?", (unsigned)run->step,
           run->reason);
    return 0;
}

static int show_cmd(void *ctx, const vsoc_command_t *c)
{
    show_ctx_t *x = ctx;
    if (strcmp(c->incident_id, x->incident_id) != 0)
        return 0;
    const char *st = vsoc_cmd_state_name(c->state), *ac = vsoc_action_name(c->action);
    if (x->arr) {
        json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:I}", "cmd_id", c->cmd_id, "action",
                              ac ? ac : "?", "state", st ? st : "?", "step", c->step_id, "seq",
                              (json_int_t)c->seq);
        return a && json_array_append_new(x->arr, a) == 0 ? 0 : 1;
    }
    if (x->n++ == 0)
        printf("\ncommands:\n  %-36s  %-18s  %-16s  %s\n", "CMD_ID", "ACTION", "STATE", "SEQ");
    if (c->seq)
        printf("  %-36s  %-18s  %-16s  %llu\n", c->cmd_id, ac ? ac : "?", st ? st : "?",
               (unsigned long long)c->seq);
    else
        printf("  %-36s  %-18s  %-16s  -\n", c->cmd_id, ac ? ac : "?", st ? st : "?");
    return 0;
}

static int show(int argc, char **argv)
{
    const char *prog = "vsoc incidents show";
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, prog, &cmd, CLI_O_JSON | CLI_O_ID, &o, &rc);
    if (!s)
        return rc;
    vsoc_incident_t inc;
    json_t *doc = NULL;
    if ((rc = vsoc_store_get_incident(s, o.id, &inc)) != 0) {
        fprintf(stderr, "%s: %s\n", prog, vsoc_store_errmsg(s));
        vsoc_store_close(s);
        return 1;
    }
    show_ctx_t x = {.o = &o, .incident_id = inc.id};
    if (o.json) {
        doc = json_object();
        json_t *ij = incident_json(&inc);
        if (!doc || !ij || json_object_set_new(doc, "incident", ij) != 0)
            goto oom;
    } else {
        char f[32], l[32];
        const char *lv = vsoc_level_name(inc.level);
        printf("incident     %s\n"
               "vin          %s\n"
               "level        %s\n"
               "state        %s\n"
               "alerts       %llu\n"
               "first        %s  (rule %s, alert %s)\n"
               "last         %s\n",
               inc.id, inc.vin, lv ? lv : "?", vsoc_incident_state_name(inc.state),
               (unsigned long long)inc.alerts, cli_time_us(inc.first_us, f), inc.first_rule,
               inc.first_alert, cli_time_us(inc.last_us, l));
    }
    static const char *const parts[] = {"alerts", "runs", "commands"};
    for (int p = 0; p < 3; p++) {
        x.n = 0;
        x.arr = NULL;
        if (o.json && (!(x.arr = json_array()) || json_object_set_new(doc, parts[p], x.arr)))
            goto oom;
        if (p == 0)
            rc = vsoc_store_each_incident_alert(s, inc.id, show_alert, &x);
        else if (p == 1)
            rc = vsoc_store_each_run(s, show_run, &x);
        else
            rc = vsoc_store_each_command(s, 0, show_cmd, &x);
        if (rc == 1)
            goto oom;
        if (rc) {
            fprintf(stderr, "vsoc: %s\n", vsoc_store_errmsg(s));
            json_decref(doc);
            vsoc_store_close(s);
            return 1;
        }
    }
    vsoc_store_close(s);
    if (o.json)
        return cli_print_json(doc) ? 1 : 0;
    return 0;
oom:
    fprintf(stderr, "vsoc: out of memory\n");
    json_decref(doc);
    vsoc_store_close(s);
    return 1;
}

/* ---- resolve, false-positive, reopen ----------------------------------------------------- */

static int set_state(int argc, char **argv, vsoc_incident_state_t to)
{
    char prog[64];
    snprintf(prog, sizeof prog, "vsoc incidents %s", argv[0]);
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, prog, &cmd, CLI_O_BY | CLI_O_WHY | CLI_O_ID,
                                      &o, &rc);
    if (!s)
        return rc;
    vsoc_incident_t inc;
    rc = vsoc_store_get_incident(s, o.id, &inc);
    if (rc == 0)
        rc = vsoc_store_set_incident_state(s, inc.id, to, o.by, o.why, cli_wall_us());
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", prog, vsoc_store_errmsg(s));
        vsoc_store_close(s);
        return 1;
    }
    const char *done = to == VSOC_INC_RESOLVED         ? "resolved"
                       : to == VSOC_INC_FALSE_POSITIVE ? "marked a false positive"
                                                       : "reopened";
    printf("incident %.8s %s by %s\n", inc.id, done, o.by);
    vsoc_store_close(s);
    return 0;
}

int cmd_incidents(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "list"))
        return list(argc - 1, argv + 1);
    if (!strcmp(sub, "show"))
        return show(argc - 1, argv + 1);
    if (!strcmp(sub, "resolve"))
        return set_state(argc - 1, argv + 1, VSOC_INC_RESOLVED);
    if (!strcmp(sub, "false-positive"))
        return set_state(argc - 1, argv + 1, VSOC_INC_FALSE_POSITIVE);
    if (!strcmp(sub, "reopen"))
        return set_state(argc - 1, argv + 1, VSOC_INC_OPEN);
    fprintf(stderr, "vsoc incidents: unknown subcommand '%s' (list, show, resolve, "
                    "false-positive or reopen)\n", sub);
    return EXIT_USAGE;
}
