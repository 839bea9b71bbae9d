/* response.c: vsoc replay's response side (response.h).
 *
 * The loopback is a pair of in-process queues standing in for the network: the responder's
 * send appends the envelope to the command queue, and the queues are drained after each
 * responder call, never inside one, so an ack can never re-enter the responder while it is
 * in the middle of a transition. */
#include "response.h"

#include "ack.h"
#include "agent_core.h"
#include "cli.h"
#include "cli_store.h"
#include "deliver.h"
#include "incident.h"
#include "playbook.h"
#include "respond.h"
#include "store/store.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define US 1000000LL

typedef struct vehicle {
    char vin[VSOC_VIN_MAX + 1];
    vsoc_vagent_t *agent; /* NULL until a command is sent to it */
    int speed_known;
    double speed_kph;
} vehicle_t;

typedef struct msg {
    char vin[VSOC_VIN_MAX + 1];
    char *text;
} msg_t;

typedef struct queue {
    msg_t *m;
    size_t head, n, cap;
} queue_t;

struct cli_response {
    cli_response_opts_t o;
    vsoc_store_t *store;
    const vsoc_playbooks_t *pbs;
    vsoc_playbooks_t *own_pbs; /* pbs when loaded here; NULL when borrowed */
    vsoc_incidents_t *inc;
    vsoc_responder_t *resp;
    cli_deliver_t *deliver;  /* with an external transport: acks and approvals */
    vsoc_key_t *key;         /* signs commands */
    vsoc_key_t *vehicle_key; /* signs the loopback agents' acks */
    const vsoc_key_t *trusted[1]; /* what the loopback agents trust: key (they keep it) */
    vehicle_t *veh;
    size_t nveh, capveh;
    size_t last_veh;         /* events come in runs of one vehicle */
    queue_t cmds, acks;
    int64_t now_us, next_tick_us;
    int failed;
    int in_tx;               /* the store's transaction is open */
    size_t since_commit;
    uint64_t long_vins; /* alerts left out of the response: vehicle id too long */
    /* for the summary */
    uint64_t alerts_new, alerts_dup, incidents, runs, sent, acked, deferred, rejected,
        pending, escalated, notes, dry;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void logf_(cli_response_t *r, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(cli_response_t *r, const char *event, const char *fmt, ...)
{
    if (r->o.log_fn) {
        char text[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        r->o.log_fn(r->o.log_ctx, event, text);
        return;
    }
    if (!r->o.log)
        return;
    char t[40];
    cli_fmt_time(r->now_us, t, sizeof t);
    fprintf(r->o.log, "%s %-24s ", t, event);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->o.log, fmt, ap);
    va_end(ap);
    fputc('\n', r->o.log);
}

/* A failure or warning: "prog: message" on stderr, or the log function's "error" event. */
static void errf(const cli_response_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errf(const cli_response_t *r, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (r->o.log_fn)
        r->o.log_fn(r->o.log_ctx, "error", text);
    else
        fprintf(stderr, "%s: %s\n", r->o.prog ? r->o.prog : "vsoc replay", text);
}

static int push(queue_t *q, const char *vin, const char *text, size_t n)
{
    if (vsoc_array_grow((void **)&q->m, &q->cap, q->n, sizeof *q->m) != 0)
        return VSOC_ENOMEM;
    msg_t *m = &q->m[q->n];
    snprintf(m->vin, sizeof m->vin, "%s", vin);
    if (!(m->text = strndup(text, n)))
        return VSOC_ENOMEM;
    q->n++;
    return 0;
}

static void queue_free(queue_t *q)
{
    for (size_t i = q->head; i < q->n; i++)
        free(q->m[i].text);
    free(q->m);
}

static vehicle_t *vehicle_of(cli_response_t *r, const char *vin, size_t n)
{
    if (n > VSOC_VIN_MAX)
        n = VSOC_VIN_MAX;
    if (r->last_veh < r->nveh) {
        vehicle_t *v = &r->veh[r->last_veh];
        if (strlen(v->vin) == n && !memcmp(v->vin, vin, n))
            return v;
    }
    for (size_t i = 0; i < r->nveh; i++)
        if (strlen(r->veh[i].vin) == n && !memcmp(r->veh[i].vin, vin, n)) {
            r->last_veh = i;
            return &r->veh[i];
        }
    if (vsoc_array_grow((void **)&r->veh, &r->capveh, r->nveh, sizeof *r->veh) != 0)
        return NULL;
    vehicle_t *v = &r->veh[r->nveh];
    memset(v, 0, sizeof *v);
    memcpy(v->vin, vin, n);
    r->last_veh = r->nveh++;
    return v;
}

/* The store's transaction opens with the first write after a commit, not at the commit:
 * while nothing is written (an idle service) the write lock is free for the processes
 * that share the store, such as `vsoc commands approve`. 0, or -1 when the store failed. */
static int tx(cli_response_t *r)
{
    if (!r->store || r->o.dry_run || r->in_tx || r->failed)
        return r->failed ? -1 : 0;
    if (vsoc_store_begin(r->store) != 0) {
        errf(r, "%s", vsoc_store_errmsg(r->store));
        r->failed = 1;
        return -1;
    }
    r->in_tx = 1;
    return 0;
}

/* Ends the open transaction, if any, keeping what it wrote. 0 or -1. */
static int commit(cli_response_t *r)
{
    if (!r->in_tx)
        return 0;
    r->in_tx = 0;
    r->since_commit = 0;
    if (vsoc_store_commit(r->store) != 0) {
        errf(r, "%s", vsoc_store_errmsg(r->store));
        r->failed = 1;
        return -1;
    }
    return 0;
}

/* ---- responder callbacks ------------------------------------------------------------------ */

static void incident_state(cli_response_t *r, const char *incident_id, const char *vin,
                           vsoc_incident_state_t from, vsoc_incident_state_t to,
                           const char *event)
{
    const vsoc_incident_t *cur = vsoc_incidents_get(r->inc, vin);
    if (!cur || strcmp(cur->id, incident_id) != 0 || cur->state != from)
        return;
    /* The store records the change itself, with the command's (store.h, apply_change). */
    vsoc_incidents_set_state(r->inc, incident_id, to);
    cur = vsoc_incidents_get(r->inc, vin);
    logf_(r, event, "incident %.8s on %s is %s", cur->id, vin, vsoc_incident_state_name(to));
}

static int on_change(void *ctx, const vsoc_change_t *c)
{
    cli_response_t *r = ctx;
    if (r->store && !r->o.dry_run && (tx(r) != 0 || cli_store_on_change(r->store, c) != 0)) {
        r->failed = 1;
        return -1;
    }
    const char *ev = c->event;
    if (!strcmp(ev, "run.started"))
        r->runs++;
    else if (!strcmp(ev, "command.sent"))
        r->sent++;
    else if (!strcmp(ev, "command.acked"))
        r->acked++;
    else if (!strcmp(ev, "command.deferred"))
        r->deferred++;
    else if (!strcmp(ev, "command.rejected"))
        r->rejected++;
    else if (!strcmp(ev, "command.pending_approval"))
        r->pending++;
    else if (!strcmp(ev, "command.escalated"))
        r->escalated++;
    else if (!strcmp(ev, "command.dry_run"))
        r->dry++;
    else if (c->kind == VSOC_CHANGE_NOTIFICATION)
        r->notes++;
    const char *id = c->cmd ? c->cmd->cmd_id : c->note ? c->note->id : c->run->id;
    logf_(r, ev, "%.8s %s", id, c->detail);
    if (c->cmd && c->cmd->envelope && r->o.log &&
        (!strcmp(ev, "command.sent") || !strcmp(ev, "command.dry_run")))
        fprintf(r->o.log, "%24s %s\n", "", c->cmd->envelope);
    if (c->cmd && c->cmd->action == VSOC_ACTION_QUARANTINE) {
        if (!strcmp(ev, "command.acked") || !strcmp(ev, "command.acked_late"))
            incident_state(r, c->cmd->incident_id, c->cmd->vin, VSOC_INC_OPEN,
                           VSOC_INC_CONTAINED, "incident.contained");
        else if (!strcmp(ev, "command.released"))
            incident_state(r, c->cmd->incident_id, c->cmd->vin, VSOC_INC_CONTAINED,
                           VSOC_INC_OPEN, "incident.released");
    }
    return r->failed ? -1 : 0;
}

static int limits(void *ctx, const vsoc_playbook_t *p, const char *vin, const char *run_id,
                  int *cooling, uint64_t *vehicles)
{
    cli_response_t *r = ctx;
    return r->o.limits(r->o.limits_ctx, p, vin, run_id, cooling, vehicles);
}

static int loop_send(void *ctx, const vsoc_command_t *cmd, const char *envelope, size_t n)
{
    cli_response_t *r = ctx;
    return push(&r->cmds, cmd->vin, envelope, n);
}

/* No transaction spans a send: what on_change wrote is committed first, so after a crash
 * the store knows every command that went out (and its seq) and resends it unchanged. */
static int ext_send(void *ctx, const vsoc_command_t *cmd, const char *envelope, size_t n)
{
    cli_response_t *r = ctx;
    if (cli_response_commit(r) != 0)
        return -1;
    return r->o.send(r->o.send_ctx, cmd->vin, envelope, n);
}

static void deliver_log(void *ctx, const char *event, const char *text)
{
    cli_response_t *r = ctx;
    if (!strcmp(event, "error"))
        errf(r, "%s", text);
    else
        logf_(r, event, "%s", text);
}

/* The responder's transport and key, the same for every responder built here. */
static void transport_opts(cli_response_t *r, vsoc_responder_opts_t *ro)
{
    if (r->o.send) {
        ro->key = r->key;
        ro->send = ext_send;
    } else {
        ro->key = r->o.loopback || r->o.dry_run ? r->key : NULL;
        ro->send = r->o.loopback ? loop_send : NULL;
    }
}

static void on_agent_ack(void *ctx, const vsoc_ack_t *ack, const char *json, size_t n)
{
    cli_response_t *r = ctx;
    if (push(&r->acks, ack->vin, json, n) != 0)
        r->failed = 1;
}

static vsoc_vagent_state_t state_of(const cli_response_t *r, const vehicle_t *v)
{
    vsoc_vagent_state_t st = {.now = r->now_us / US, .speed_known = v->speed_known,
                              .speed_kph = v->speed_kph};
    return st;
}

/* Delivers queued commands to the loopback agents and their acks to the responder until
 * both queues are empty. */
static int drain(cli_response_t *r)
{
    while (!r->failed && (r->cmds.head < r->cmds.n || r->acks.head < r->acks.n)) {
        if (r->cmds.head < r->cmds.n) {
            msg_t m = r->cmds.m[r->cmds.head++];
            vehicle_t *v = vehicle_of(r, m.vin, strlen(m.vin));
            if (v && !v->agent) {
                r->trusted[0] = r->key;
                vsoc_vagent_opts_t ao = {.vin = v->vin, .trusted = r->trusted, .ntrusted = 1,
                                         .key = r->vehicle_key, .on_ack = on_agent_ack,
                                         .ctx = r};
                char err[256];
                v->agent = vsoc_vagent_new(&ao, err, sizeof err);
                if (!v->agent)
                    errf(r, "loopback agent for %s: %s", v->vin, err);
            }
            if (v && v->agent) {
                vsoc_vagent_state_t st = state_of(r, v);
                vsoc_vagent_handle(v->agent, m.text, strlen(m.text), &st);
            }
            free(m.text);
            continue;
        }
        msg_t m = r->acks.m[r->acks.head++];
        vsoc_ack_t ack;
        char why[256];
        if (vsoc_ack_parse(m.text, strlen(m.text), &ack, why, sizeof why) != 0) {
            logf_(r, "ack.malformed", "from %s: %s", m.vin, why);
            free(m.text);
            continue;
        }
        const vsoc_key_t *vk[] = {r->vehicle_key};
        vsoc_envelope_reason_t vr = vsoc_ack_verify(&ack, vk, 1, m.vin);
        const char *verdict = vr == VSOC_ENVELOPE_OK ? "ok" : vsoc_envelope_reason_name(vr);
        if (r->store && !r->o.dry_run &&
            (tx(r) != 0 || vsoc_store_put_ack(r->store, &ack, m.text, verdict, r->now_us) != 0)) {
            errf(r, "%s", vsoc_store_errmsg(r->store));
            r->failed = 1;
        }
        logf_(r, "ack", "%.8s %s from %s%s%s (signature %s)", ack.cmd_id,
              vsoc_ack_status_name(ack.status), ack.vin, ack.reason[0] ? ": " : "", ack.reason,
              vr == VSOC_ENVELOPE_OK ? "verified" : verdict);
        if (vr == VSOC_ENVELOPE_OK)
            vsoc_responder_on_ack(r->resp, &ack, r->now_us);
        free(m.text);
    }
    /* Both queues are empty here: start them again from the front. */
    r->cmds.head = r->cmds.n = 0;
    r->acks.head = r->acks.n = 0;
    if (vsoc_responder_error(r->resp)) {
        r->failed = 1;
        errf(r, "%s", vsoc_responder_error(r->resp));
    }
    return r->failed ? -1 : 0;
}

/* ---- set-up ------------------------------------------------------------------------------- */

/* A key that lives only in this process: generated into a private temporary directory and
 * loaded back, then the files are removed. */
static vsoc_key_t *throwaway_key(const char *id, char *err, size_t errlen)
{
    char dir[] = "/tmp/vsoc-key-XXXXXX";
    if (!mkdtemp(dir)) {
        snprintf(err, errlen, "cannot make a temporary directory: %s", strerror(errno));
        return NULL;
    }
    vsoc_key_t *k = NULL;
    if (vsoc_key_generate(dir, id, err, errlen) == 0) {
        char path[sizeof dir + 80];
        snprintf(path, sizeof path, "%s/%s.key", dir, id);
        k = vsoc_key_load_private(path, id, err, errlen);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s.pub", dir, id);
        unlink(path);
    }
    rmdir(dir);
    return k;
}

cli_response_t *cli_response_new(const cli_response_opts_t *o, int *exit_code)
{
    *exit_code = 1;
    char err[512];
    cli_response_t *r = calloc(1, sizeof *r);
    if (!r) {
        errf(r, "out of memory");
        return NULL;
    }
    r->o = *o;
    r->now_us = INT64_MIN;
    r->next_tick_us = INT64_MIN;
    vsoc_diags_t *d = vsoc_diags_new();
    if (!d)
        goto oom;
    if (o->use_playbooks && !o->no_playbooks) {
        r->pbs = o->use_playbooks;
    } else if (o->no_playbooks) {
        r->pbs = r->own_pbs = vsoc_playbooks_load_string("none", "", 0, d);
    } else {
        const char *def = cli_default_playbooks();
        r->pbs = r->own_pbs = vsoc_playbooks_load(o->nplaybooks ? o->playbooks : &def,
                                                  o->nplaybooks ? o->nplaybooks : 1, d);
    }
    vsoc_diags_sort(d);
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        if (g->severity == VSOC_DIAG_ERROR)
            fprintf(stderr, "%s:%d:%d: error: %s\n", g->file, g->line, g->col, g->msg);
    }
    if (vsoc_diags_errors(d)) {
        errf(r, "%zu error%s in playbooks; nothing was run "
                        "(see vsoc playbooks lint)",
                vsoc_diags_errors(d), vsoc_diags_errors(d) == 1 ? "" : "s");
        *exit_code = 2;
        vsoc_diags_free(d);
        goto fail;
    }
    vsoc_diags_free(d);
    if (!r->pbs)
        goto oom;
    if (o->send && (o->loopback || o->dry_run || !o->db || !o->keyfile || !o->vehicle_keys)) {
        errf(r, "delivering commands needs a store, a signing key and the vehicles' keys, "
                "and no loopback or dry run");
        *exit_code = 2;
        goto fail;
    }
    if (o->send && !o->no_playbooks) {
        r->key = vsoc_key_load_private(o->keyfile, NULL, err, sizeof err);
        if (!r->key) {
            errf(r, "%s", err);
            goto fail;
        }
    } else if ((o->loopback || o->dry_run) && !o->no_playbooks) {
        if (o->keyfile) {
            r->key = vsoc_key_load_private(o->keyfile, NULL, err, sizeof err);
            if (!r->key) {
                errf(r, "%s", err);
                goto fail;
            }
        } else {
            r->key = throwaway_key("replay-throwaway", err, sizeof err);
            if (!r->key) {
                errf(r, "throwaway key: %s", err);
                goto fail;
            }
            if (r->o.log)
                fprintf(r->o.log, "vsoc replay: no --key: commands are signed with a throwaway "
                                  "key (replay-throwaway) that no real vehicle trusts\n");
        }
        r->vehicle_key = throwaway_key("loopback-vehicle", err, sizeof err);
        if (!r->vehicle_key) {
            errf(r, "throwaway key: %s", err);
            goto fail;
        }
    }
    /* A dry run writes nothing: it reads a store to resume from, if there is one. */
    if (o->db && !(o->dry_run && access(o->db, F_OK) != 0)) {
        r->store = cli_store_open(o->db, o->dry_run);
        if (!r->store)
            goto fail;
    }
    if (!(r->inc = vsoc_incidents_new(o->incident_gap_us)))
        goto oom;
    vsoc_responder_opts_t ro = {
        .playbooks = r->pbs,
        .on_change = on_change,
        .ctx = r,
        .limits = o->limits ? limits : NULL,
        .dry_run = o->dry_run,
        .approve_all = o->approve_all,
    };
    transport_opts(r, &ro);
    r->resp = vsoc_responder_new(&ro, err, sizeof err);
    if (!r->resp) {
        errf(r, "%s", err);
        goto fail;
    }
    if (r->store) {
        if (cli_incidents_restore(r->inc, r->store) != 0 ||
            cli_responder_restore(r->resp, r->store, o->send && o->owns_commands) != 0)
            goto fail;
        if (o->send) {
            if (!(r->deliver = cli_deliver_new(r->store, o->vehicle_keys, deliver_log, r)))
                goto oom;
            if (cli_deliver_skip_approvals(r->deliver) != 0)
                goto fail;
        }
    }
    if (o->approve_all)
        errf(r, "--approve-all: EVERY COMMAND THAT NEEDS A PERSON'S "
                        "APPROVAL IS APPROVED WITHOUT ONE (for demos only)\n");
    *exit_code = 0;
    return r;
oom:
    errf(r, "out of memory");
fail:
    cli_response_free(r);
    return NULL;
}

void cli_response_free(cli_response_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nveh; i++)
        vsoc_vagent_free(r->veh[i].agent);
    free(r->veh);
    queue_free(&r->cmds);
    queue_free(&r->acks);
    vsoc_responder_free(r->resp);
    cli_deliver_free(r->deliver);
    vsoc_incidents_free(r->inc);
    vsoc_playbooks_free(r->own_pbs);
    vsoc_key_free(r->key);
    vsoc_key_free(r->vehicle_key);
    vsoc_store_close(r->store);
    free(r);
}

/* ---- the flow ----------------------------------------------------------------------------- */

static int tick(cli_response_t *r)
{
    if (vsoc_responder_tick(r->resp, r->now_us) != 0 && vsoc_responder_error(r->resp))
        r->failed = 1;
    for (size_t i = 0; i < r->nveh && !r->failed; i++)
        if (r->veh[i].agent) {
            vsoc_vagent_state_t st = state_of(r, &r->veh[i]);
            vsoc_vagent_tick(r->veh[i].agent, &st);
        }
    return drain(r);
}

int cli_response_event(cli_response_t *r, const vsoc_event_t *ev)
{
    if (ev->derived & VSOC_HAS_SPEED) {
        vehicle_t *v = vehicle_of(r, ev->vin.p, ev->vin.n);
        if (v) {
            v->speed_known = 1;
            v->speed_kph = ev->speed_kph;
        }
    }
    if (ev->ts_us > r->now_us)
        r->now_us = ev->ts_us;
    if (r->now_us < r->next_tick_us)
        return r->failed ? -1 : 0;
    /* Timers have one-second resolution on event time, like correlation sweeps. */
    r->next_tick_us = (r->now_us / US + 1) * US;
    return tick(r);
}

int cli_response_alert(cli_response_t *r, const vsoc_alert_t *a, const char *json)
{
    if (r->failed)
        return -1;
    if (a->time_us > r->now_us)
        r->now_us = a->time_us;
    const char *rule_id = vsoc_rule_id(a->rule);
    vsoc_level_t level = vsoc_rule_level(a->rule);
    if (a->vin.n == 0 || a->vin.n > VSOC_VIN_MAX) {
        /* A command goes to exactly this vehicle: an id that does not fit is never cut. */
        if (r->long_vins++ == 0 && (r->o.log || r->o.log_fn))
            errf(r, "warning: alerts of vehicle id '%.*s' have no incident: a vehicle id is "
                    "1..%d bytes",
                 (int)(a->vin.n > 64 ? 64 : a->vin.n), a->vin.p, VSOC_VIN_MAX);
        return 0;
    }
    char vin[VSOC_VIN_MAX + 1];
    size_t vn = a->vin.n;
    memcpy(vin, a->vin.p, vn);
    vin[vn] = 0;
    if (r->store && !r->o.dry_run) {
        if (tx(r) != 0)
            return -1;
        int rc = vsoc_store_put_alert(r->store, a->uid, rule_id, level, vin, a->time_us, json);
        if (rc < 0) {
            errf(r, "%s", vsoc_store_errmsg(r->store));
            r->failed = 1;
            return -1;
        }
        if (rc == 0) {
            r->alerts_dup++; /* replayed before: its incident and runs exist already */
            return 0;
        }
    }
    r->alerts_new++;
    const char *tags[32];
    size_t nt = vsoc_rule_tag_count(a->rule);
    if (nt > 32)
        nt = 32;
    for (size_t i = 0; i < nt; i++)
        tags[i] = vsoc_rule_tag(a->rule, i);
    vsoc_incident_alert_t ia = {.uid = a->uid, .rule_id = rule_id, .level = level,
                                .vin = {vin, vn}, .time_us = a->time_us, .tags = tags,
                                .ntags = nt};
    const vsoc_incident_t *inc;
    unsigned flags;
    if (vsoc_incidents_add(r->inc, &ia, &inc, &flags) != 0) {
        errf(r, "out of memory grouping incidents");
        r->failed = 1;
        return -1;
    }
    const char *event = flags & VSOC_INC_NEW        ? "incident.opened"
                        : flags & VSOC_INC_LEVEL_UP ? "incident.raised"
                                                    : "incident.updated";
    if (flags & VSOC_INC_NEW) {
        r->incidents++;
        logf_(r, event, "%.8s %s on %s: %s", inc->id, vsoc_level_name(inc->level), inc->vin,
              rule_id);
    } else if (flags & VSOC_INC_LEVEL_UP) {
        logf_(r, event, "%.8s now %s: %s joined (%llu alerts)", inc->id,
              vsoc_level_name(inc->level), rule_id, (unsigned long long)inc->alerts);
    }
    if (r->store && !r->o.dry_run &&
        vsoc_store_put_incident(r->store, inc, a->uid, event, "vsoc", a->time_us) != 0) {
        errf(r, "%s", vsoc_store_errmsg(r->store));
        r->failed = 1;
        return -1;
    }
    vsoc_incident_t copy = *inc; /* the responder may change incident states meanwhile */
    vsoc_responder_on_alert(r->resp, &copy, rule_id, level, a->time_us);
    if (r->store && !r->o.dry_run && ++r->since_commit >= 256)
        commit(r);
    return drain(r);
}

int cli_response_finish(cli_response_t *r)
{
    if (!r->failed && r->now_us != INT64_MIN)
        tick(r);
    commit(r);
    return r->failed ? -1 : 0;
}

void cli_response_summary(const cli_response_t *r, FILE *out)
{
    fprintf(out, "incidents: %llu new", (unsigned long long)r->incidents);
    if (r->alerts_dup)
        fprintf(out, " (%llu alerts were in the store already)",
                (unsigned long long)r->alerts_dup);
    fputc('\n', out);
    fprintf(out, "playbooks: %zu loaded, %llu runs started, %llu notifications\n",
            vsoc_playbooks_count(r->pbs), (unsigned long long)r->runs,
            (unsigned long long)r->notes);
    if (r->o.dry_run)
        fprintf(out, "commands (dry run, nothing sent): %llu would be sent\n",
                (unsigned long long)r->dry);
    else
        fprintf(out,
                "commands: %llu sent%s, %llu acked, %llu deferred, %llu rejected, "
                "%llu waiting for approval, %llu escalated\n",
                (unsigned long long)r->sent, r->o.loopback ? " (loopback)" : "",
                (unsigned long long)r->acked, (unsigned long long)r->deferred,
                (unsigned long long)r->rejected, (unsigned long long)r->pending,
                (unsigned long long)r->escalated);
    if (r->o.db && !r->o.dry_run)
        fprintf(out, "store: %s (vsoc incidents list --db %s)\n", r->o.db, r->o.db);
    if (r->o.approve_all)
        fprintf(out, "WARNING: --approve-all approved every command without a person\n");
}

/* ---- the service ------------------------------------------------------------------------- */

struct vsoc_store *cli_response_store(cli_response_t *r)
{
    if (r->o.dry_run || !r->store)
        return NULL;
    /* The caller's rows go into the response's transaction (committed together). */
    tx(r);
    return r->store;
}

int cli_response_commit(cli_response_t *r)
{
    if (r->failed)
        return -1;
    if (!r->store || r->o.dry_run)
        return 0;
    return commit(r);
}

int cli_response_advance(cli_response_t *r, int64_t now_us)
{
    if (r->failed)
        return -1;
    if (now_us > r->now_us)
        r->now_us = now_us;
    if (r->now_us == INT64_MIN || r->now_us < r->next_tick_us)
        return 0;
    r->next_tick_us = (r->now_us / US + 1) * US;
    return tick(r);
}

int cli_response_set_playbooks(cli_response_t *r, const vsoc_playbooks_t *pbs)
{
    if (r->failed || r->o.no_playbooks)
        return r->failed ? -1 : 0;
    /* Runs refer to their playbooks: the new responder starts from what the store holds,
     * exactly as after a restart, so everything is committed first. */
    if (cli_response_commit(r) != 0)
        return -1;
    char err[512];
    vsoc_responder_opts_t ro = {
        .playbooks = pbs,
        .on_change = on_change,
        .ctx = r,
        .limits = r->o.limits ? limits : NULL,
        .dry_run = r->o.dry_run,
        .approve_all = r->o.approve_all,
    };
    transport_opts(r, &ro);
    vsoc_responder_t *nr = vsoc_responder_new(&ro, err, sizeof err);
    if (!nr) {
        errf(r, "%s", err);
        return -1;
    }
    if (r->store && cli_responder_restore(nr, r->store, r->o.send && r->o.owns_commands) != 0) {
        vsoc_responder_free(nr);
        return -1;
    }
    vsoc_responder_free(r->resp);
    r->resp = nr;
    r->pbs = pbs;
    vsoc_playbooks_free(r->own_pbs);
    r->own_pbs = NULL;
    return 0;
}

int cli_response_ack(cli_response_t *r, const void *buf, size_t n, int64_t wall_us)
{
    if (!r->deliver || tx(r) != 0)
        return -1;
    if (wall_us > r->now_us)
        r->now_us = wall_us;
    if (cli_deliver_ack(r->deliver, r->resp, NULL, buf, n, r->now_us) != 0) {
        r->failed = 1;
        return -1;
    }
    /* An ack may end a command and let the next of its vehicle go out (sent above, after
     * a commit); committing here makes the ack itself durable before the caller tells the
     * transport it has it. */
    if (vsoc_responder_error(r->resp)) {
        r->failed = 1;
        errf(r, "%s", vsoc_responder_error(r->resp));
        return -1;
    }
    return cli_response_commit(r);
}

int cli_response_approvals(cli_response_t *r)
{
    if (r->failed || !r->deliver)
        return r->failed ? -1 : 0;
    /* An open transaction reads what was committed when it began: committing first lets
     * this read see what `vsoc commands approve` wrote since. */
    if (cli_response_commit(r) != 0)
        return -1;
    if (cli_deliver_approvals(r->deliver, r->resp) != 0) {
        r->failed = 1;
        return -1;
    }
    return drain(r);
}

void cli_response_counts(const cli_response_t *r, cli_response_counts_t *c)
{
    c->alerts_new = r->alerts_new;
    c->alerts_dup = r->alerts_dup;
    c->incidents = r->incidents;
    c->runs = r->runs;
    c->sent = r->sent;
    c->acked = r->acked;
    c->deferred = r->deferred;
    c->rejected = r->rejected;
    c->pending = r->pending;
    c->escalated = r->escalated;
    c->notes = r->notes;
}
