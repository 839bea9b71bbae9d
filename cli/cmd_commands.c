/* cmd_commands.c: vsoc commands list | show | approve | reject | export
 * (docs/vsoc-commands.md).
 *
 * approve and reject act through a responder restored from the store, so that the same
 * rules apply as in a running service (two different people for two_person, only commands
 * that wait can be approved); the decision, the approval row and every transition it causes
 * are written in one transaction. Without a signing key the responder leaves an approved
 * command queued: a service holding the key sends it. */
#include "cli.h"
#include "cli_store.h"

#include <jansson.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc commands list --db FILE [--state S] [--vin VIN] [--json]\n"
            "       vsoc commands show ID --db FILE [--json]\n"
            "       vsoc commands approve ID --by NAME --db FILE [--playbooks PATH]\n"
            "       vsoc commands reject ID --by NAME [--why TEXT] --db FILE [--playbooks PATH]\n"
            "       vsoc commands export ID --db FILE\n"
            "\n"
            "list     vehicle commands oldest first: id (8 characters), vehicle, action, state,\n"
            "         approvals given/needed, seq, incident, step\n"
            "show     every field of one command and the decisions people made on it\n"
            "approve  approve a command that waits for approval (pending_approval or\n"
            "         escalated); enough approvals queue it for sending\n"
            "reject   reject a command not yet sent; its playbook's on_failure follows\n"
            "export   print the signed envelope exactly as sent to the vehicle\n"
            "\n"
            "ID is a command id or a unique prefix of at least 8 characters.\n"
            "\n"
            "options:\n"
            "  --db FILE          the store (required; it must exist)\n"
            "  --state S          list only commands in state S (pending_approval, queued, sent,\n"
            "                     deferred, acked, rejected, timed_out, escalated, released,\n"
            "                     failed, dry_run)\n"
            "  --vin VIN          list only this vehicle's commands\n"
            "  --json             one JSON object per line (list) or one object (show)\n"
            "  --by NAME          who approves or rejects (recorded with the decision)\n"
            "  --why TEXT         why it is rejected\n"
            "  --playbooks PATH   the playbooks the commands came from, for the steps that\n"
            "                     follow a decision (default: %s)\n"
            "  -h, --help         this help\n"
            "\n"
            "exit status: 0 done, 1 the store could not be read, the decision was refused, or\n"
            "the command has no envelope yet (export), 2 usage errors.\n",
            cli_default_playbooks());
}

typedef cli_store_opts_t opts_t;

static int check(const char *prog, const opts_t *o)
{
    vsoc_cmd_state_t st;
    if (o->state && vsoc_cmd_state_from_name(o->state, &st) != 0) {
        fprintf(stderr, "%s: unknown state '%s' (see vsoc commands --help)\n", prog, o->state);
        return EXIT_USAGE;
    }
    return -1;
}

static const cli_store_cmd_t cmd = {"vsoc commands", "command", "say who decides", usage, check};

/* Approvals a command needs before it is sent. */
static int needed(const vsoc_command_t *c)
{
    return c->approval == VSOC_APPROVAL_TWO_PERSON ? 2
           : c->approval == VSOC_APPROVAL_REQUIRED ? 1
                                                   : 0;
}

static const char *approvals_text(const vsoc_command_t *c, char buf[16])
{
    if (needed(c) == 0)
        return "-";
    snprintf(buf, 16, "%d/%d", c->napprovals, needed(c));
    return buf;
}

static const char *str_or(const char *s, const char *dflt)
{
    return s ? s : dflt;
}

static const char *approval_text(vsoc_approval_t a)
{
    return a == VSOC_APPROVAL_TWO_PERSON ? "two_person"
           : a == VSOC_APPROVAL_REQUIRED ? "required"
                                         : "auto";
}

static json_t *command_json(const vsoc_command_t *c, const char *envelope)
{
    json_t *by = json_array();
    for (int i = 0; by && i < c->napprovals && i < 2; i++)
        json_array_append_new(by, json_string(c->approved_by[i]));
    json_t *args = json_loads(c->args, 0, NULL);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o?, s:s, s:s, s:i, s:o?, s:I, s:i,"
                     " s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:b}",
                     "cmd_id", c->cmd_id, "run_id", c->run_id, "incident_id", c->incident_id,
                     "playbook", c->playbook, "step", c->step_id, "vin", c->vin, "action",
                     str_or(vsoc_action_name(c->action), "?"), "args", args, "state",
                     str_or(vsoc_cmd_state_name(c->state), "?"), "approval",
                     approval_text(c->approval), "approvals", c->napprovals, "approved_by", by,
                     "seq", (json_int_t)c->seq, "attempts", c->attempts, "max_attempts",
                     c->max_attempts, "ttl_s", (json_int_t)c->ttl_s, "expires_s",
                     (json_int_t)c->expires_s, "ack_timeout_s", (json_int_t)c->ack_timeout_s,
                     "approval_timeout_s", (json_int_t)c->approval_timeout_s, "created_us",
                     (json_int_t)c->created_us, "updated_us", (json_int_t)c->updated_us,
                     "deadline_us", (json_int_t)c->deadline_us, "expires_at",
                     (json_int_t)c->expires_at, "reason", c->reason, "signed", envelope != NULL);
    if (j && c->deadline_us == INT64_MAX) /* none */
        json_object_set_new(j, "deadline_us", json_null());
    return j;
}

/* ---- list -------------------------------------------------------------------------------- */

static int list_one(void *ctx, const vsoc_command_t *c)
{
    const opts_t *o = ctx;
    if (o->vin && strcmp(o->vin, c->vin) != 0)
        return 0;
    if (o->state && strcmp(o->state, str_or(vsoc_cmd_state_name(c->state), "")) != 0)
        return 0;
    if (o->json)
        return cli_print_json(command_json(c, c->envelope));
    char ap[16], seq[24];
    if (c->seq)
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)c->seq);
    else
        snprintf(seq, sizeof seq, "-");
    printf("%-8.8s  %-17s  %-18s  %-16s  %-9s  %6s  %-8.8s  %s\n", c->cmd_id, c->vin,
           str_or(vsoc_action_name(c->action), "?"), str_or(vsoc_cmd_state_name(c->state), "?"),
           approvals_text(c, ap), seq, c->incident_id, c->step_id);
    return 0;
}

static int list(int argc, char **argv)
{
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, "vsoc commands list", &cmd,
                                      CLI_O_STATE | CLI_O_VIN | CLI_O_JSON, &o, &rc);
    if (!s)
        return rc;
    if (!o.json)
        printf("%-8s  %-17s  %-18s  %-16s  %-9s  %6s  %-8s  %s\n", "CMD_ID", "VIN", "ACTION",
               "STATE", "APPROVALS", "SEQ", "INCIDENT", "STEP");
    return cli_store_end(s, vsoc_store_each_command(s, 0, list_one, &o));
}

/* ---- show -------------------------------------------------------------------------------- */

typedef struct decisions {
    const char *cmd_id;
    json_t *arr; /* --json */
    int n;
} decisions_t;

static int show_decision(void *ctx, int64_t rowid, const char *cmd_id, const char *by,
                         const char *decision, const char *why, int64_t time_us)
{
    decisions_t *d = ctx;
    if (strcmp(cmd_id, d->cmd_id) != 0)
        return 0;
    char t[32];
    if (d->arr) {
        json_t *a = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I}", "id", (json_int_t)rowid, "by",
                              by, "decision", decision, "why", why, "time",
                              cli_time_us(time_us, t), "time_us", (json_int_t)time_us);
        return a && json_array_append_new(d->arr, a) == 0 ? 0 : 1;
    }
    if (d->n++ == 0)
        printf("\ndecisions:\n");
    printf("  %s  %-8s by %s%s%s\n", cli_time_us(time_us, t), decision, by, *why ? ": " : "",
           why);
    return 0;
}

static int show(int argc, char **argv)
{
    const char *prog = "vsoc commands show";
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, prog, &cmd, CLI_O_JSON | CLI_O_ID, &o, &rc);
    if (!s)
        return rc;
    vsoc_command_t *c = calloc(1, sizeof *c);
    char *env = NULL;
    json_t *doc = NULL;
    decisions_t d = {0};
    int ret = 1;
    if (!c) {
        fprintf(stderr, "vsoc: out of memory\n");
        goto done;
    }
    if (vsoc_store_get_command(s, o.id, c, &env) != 0) {
        fprintf(stderr, "%s: %s\n", prog, vsoc_store_errmsg(s));
        goto done;
    }
    d.cmd_id = c->cmd_id;
    if (o.json) {
        if (!(doc = command_json(c, env)) || !(d.arr = json_array()) ||
            json_object_set_new(doc, "decisions", d.arr) != 0) {
            fprintf(stderr, "vsoc: out of memory\n");
            goto done;
        }
    } else {
        char t1[32], t2[32], t3[32], ap[16], appr[256];
        if (needed(c) == 0)
            snprintf(appr, sizeof appr, "auto");
        else
            snprintf(appr, sizeof appr, "%s (%s given%s%s%s%s)", approval_text(c->approval),
                     approvals_text(c, ap), c->napprovals > 0 ? ", by " : "",
                     c->napprovals > 0 ? c->approved_by[0] : "", c->napprovals > 1 ? ", " : "",
                     c->napprovals > 1 ? c->approved_by[1] : "");
        printf("command       %s\n"
               "vin           %s\n"
               "action        %s\n"
               "args          %s\n"
               "state         %s\n"
               "approval      %s\n"
               "seq           %llu\n"
               "attempts      %d of %d\n"
               "incident      %s\n"
               "run           %s (playbook %s, step %s)\n"
               "created       %s\n"
               "updated       %s\n"
               "deadline      %s\n"
               "ttl           %llds\n"
               "expires       %llds after signing%s%s\n"
               "ack timeout   %llds\n"
               "reason        %s\n"
               "envelope      %s\n",
               c->cmd_id, c->vin, str_or(vsoc_action_name(c->action), "?"), c->args,
               str_or(vsoc_cmd_state_name(c->state), "?"), appr, (unsigned long long)c->seq,
               c->attempts, c->max_attempts, c->incident_id, c->run_id, c->playbook,
               c->step_id, cli_time_us(c->created_us, t1), cli_time_us(c->updated_us, t2),
               c->deadline_us == INT64_MAX ? "none" : cli_time_us(c->deadline_us, t3),
               (long long)c->ttl_s, (long long)c->expires_s, c->expires_at ? "; at " : "",
               c->expires_at ? cli_time_us(c->expires_at * 1000000, t3) : "",
               (long long)c->ack_timeout_s, c->reason[0] ? c->reason : "-",
               env ? "signed (vsoc commands export prints it)" : "not signed yet");
    }
    rc = vsoc_store_each_approval(s, 0, show_decision, &d);
    if (rc < 0)
        fprintf(stderr, "vsoc: %s\n", vsoc_store_errmsg(s));
    else if (rc == 0)
        ret = o.json ? cli_print_json(doc) : 0;
    if (o.json && rc == 0)
        doc = NULL; /* print_json freed it */
done:
    json_decref(doc);
    free(env);
    free(c);
    vsoc_store_close(s);
    return ret;
}

/* ---- approve, reject --------------------------------------------------------------------- */

static vsoc_playbooks_t *load_playbooks(const char *path)
{
    vsoc_diags_t *d = vsoc_diags_new();
    if (!d) {
        fprintf(stderr, "vsoc: out of memory\n");
        return NULL;
    }
    vsoc_playbooks_t *pb;
    /* Without --playbooks a missing default folder means none: the decision still counts,
     * only steps after it would fail their run for want of its playbook. */
    if (!path && access(cli_default_playbooks(), R_OK) != 0) {
        pb = vsoc_playbooks_load_string("none", "", 0, d);
    } else {
        const char *p = path ? path : cli_default_playbooks();
        pb = vsoc_playbooks_load(&p, 1, d);
    }
    if (vsoc_diags_errors(d)) {
        vsoc_diags_sort(d);
        vsoc_diags_print(d, stderr);
        fprintf(stderr, "vsoc: errors in playbooks; nothing was changed (see vsoc playbooks "
                        "--help)\n");
        vsoc_playbooks_free(pb);
        pb = NULL;
    } else if (!pb) {
        fprintf(stderr, "vsoc: out of memory loading playbooks\n");
    }
    vsoc_diags_free(d);
    return pb;
}

static int decide(int argc, char **argv, int approve)
{
    const char *prog = approve ? "vsoc commands approve" : "vsoc commands reject";
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, prog, &cmd,
                                      CLI_O_BY | CLI_O_ID | CLI_O_PLAYBOOKS |
                                          (approve ? 0 : CLI_O_WHY),
                                      &o, &rc);
    if (!s)
        return rc;
    vsoc_playbooks_t *pb = NULL;
    vsoc_responder_t *r = NULL;
    vsoc_command_t *c = calloc(1, sizeof *c);
    int ret = 1, in_tx = 0;
    char err[512];
    if (!c) {
        fprintf(stderr, "vsoc: out of memory\n");
        goto done;
    }
    char who[VSOC_APPROVER_MAX + 1];
    if (vsoc_approver_normalize(o.by, who) != 0) {
        fprintf(stderr, "%s: --by '%s' is not a person's name: 1..%d of A-Z a-z 0-9 . _ @ - "
                        "(compared without case)\n",
                prog, o.by, VSOC_APPROVER_MAX);
        ret = EXIT_USAGE;
        goto done;
    }
    o.by = who;
    /* Everything from the first read to the commit is one write transaction: two people
     * deciding at once are serialized, and the second sees the first's decision. */
    if (vsoc_store_begin(s) != 0) {
        fprintf(stderr, "vsoc: %s\n", vsoc_store_errmsg(s));
        goto done;
    }
    in_tx = 1;
    /* The full id from a prefix, and a clear message for an unknown one. */
    if (vsoc_store_get_command(s, o.id, c, NULL) != 0) {
        fprintf(stderr, "%s: %s\n", prog, vsoc_store_errmsg(s));
        goto done;
    }
    if (!(pb = load_playbooks(o.playbooks)))
        goto done;
    vsoc_responder_opts_t ro = {
        .playbooks = pb, .key = NULL, .on_change = cli_store_on_change, .send = NULL, .ctx = s};
    if (!(r = vsoc_responder_new(&ro, err, sizeof err))) {
        fprintf(stderr, "vsoc: %s\n", err);
        goto done;
    }
    if (cli_responder_restore(r, s, 1) != 0)
        goto done;
    /* Only open commands are restored: a final one is reported as such, not as unknown. */
    if (!vsoc_responder_command(r, c->cmd_id)) {
        fprintf(stderr, "%s: command %.8s is %s: it no longer waits for a decision\n", prog,
                c->cmd_id, str_or(vsoc_cmd_state_name(c->state), "?"));
        goto done;
    }
    int64_t now = cli_wall_us();
    rc = approve ? vsoc_responder_approve(r, c->cmd_id, o.by, now, err, sizeof err)
                 : vsoc_responder_reject(r, c->cmd_id, o.by, o.why, now, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto done;
    }
    if (vsoc_store_add_approval(s, c->cmd_id, o.by, approve ? "approve" : "reject", o.why,
                                now) != 0 ||
        vsoc_store_commit(s) != 0) {
        fprintf(stderr, "vsoc: %s\n", vsoc_store_errmsg(s));
        goto done;
    }
    in_tx = 0;
    const vsoc_command_t *now_c = vsoc_responder_command(r, c->cmd_id);
    vsoc_cmd_state_t st = now_c ? now_c->state : c->state;
    if (!approve)
        printf("rejected by %s: command %.8s will not be sent\n", o.by, c->cmd_id);
    else if (st == VSOC_CMD_PENDING_APPROVAL || st == VSOC_CMD_ESCALATED)
        printf("approved by %s; waits for a second person\n", o.by);
    else if (st == VSOC_CMD_QUEUED)
        printf("approved: queued for sending\n");
    else
        printf("approved: command %.8s is %s\n", c->cmd_id,
               str_or(vsoc_cmd_state_name(st), "?"));
    ret = 0;
done:
    if (in_tx)
        vsoc_store_rollback(s);
    vsoc_responder_free(r);
    vsoc_playbooks_free(pb);
    free(c);
    vsoc_store_close(s);
    return ret;
}

/* ---- export ------------------------------------------------------------------------------ */

static int export_env(int argc, char **argv)
{
    const char *prog = "vsoc commands export";
    opts_t o;
    int rc;
    vsoc_store_t *s = cli_store_start(argc, argv, prog, &cmd, CLI_O_ID, &o, &rc);
    if (!s)
        return rc;
    vsoc_command_t *c = calloc(1, sizeof *c);
    char *env = NULL;
    int ret = 1;
    if (!c)
        fprintf(stderr, "vsoc: out of memory\n");
    else if (vsoc_store_get_command(s, o.id, c, &env) != 0)
        fprintf(stderr, "%s: %s\n", prog, vsoc_store_errmsg(s));
    else if (!env)
        fprintf(stderr, "%s: command %.8s has not been signed yet (it is %s)\n", prog,
                c->cmd_id, str_or(vsoc_cmd_state_name(c->state), "?"));
    else {
        fwrite(env, 1, strlen(env), stdout);
        putchar('\n');
        ret = fflush(stdout) == 0 ? 0 : 1;
    }
    free(env);
    free(c);
    vsoc_store_close(s);
    return ret;
}

int cmd_commands(int argc, char **argv)
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
    if (!strcmp(sub, "approve"))
        return decide(argc - 1, argv + 1, 1);
    if (!strcmp(sub, "reject"))
        return decide(argc - 1, argv + 1, 0);
    if (!strcmp(sub, "export"))
        return export_env(argc - 1, argv + 1);
    fprintf(stderr, "vsoc commands: unknown subcommand '%s' (list, show, approve, reject or "
                    "export)\n", sub);
    return EXIT_USAGE;
}
