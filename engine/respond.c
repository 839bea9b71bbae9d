/* respond.c: playbook runs and their commands as state machines on caller-given time.
 *
 * Every transition is reported to on_change before its side effect (persist, then send): a
 * crash between the two leaves a command the store knows as sent, and the ack timeout
 * resends the same envelope (same cmd_id and seq), which the agent answers without applying
 * it twice. Runs and commands live in growable arrays indexed by id through small
 * open-addressing tables of array positions; responses are rare next to events, so this is
 * off the hot path. */
#include "respond.h"

#include "util.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define US 1000000LL
#define HOUR_US (3600LL * US)
#define NO_DEADLINE INT64_MAX

static const char *const run_names[] = {"running", "done", "failed", "capped"};
static const char *const cmd_names[] = {"pending_approval", "queued",    "sent",
                                        "deferred",         "acked",     "rejected",
                                        "timed_out",        "escalated", "released",
                                        "failed",           "dry_run"};

#define NRUN (sizeof run_names / sizeof *run_names)
#define NCMD (sizeof cmd_names / sizeof *cmd_names)

const char *vsoc_run_state_name(vsoc_run_state_t s)
{
    return vsoc_name_of(run_names, NRUN, (unsigned)s);
}

int vsoc_run_state_from_name(const char *name, vsoc_run_state_t *out)
{
    int i = vsoc_name_index(run_names, NRUN, name);
    if (i >= 0)
        *out = (vsoc_run_state_t)i;
    return i >= 0 ? 0 : -1;
}

const char *vsoc_cmd_state_name(vsoc_cmd_state_t s)
{
    return vsoc_name_of(cmd_names, NCMD, (unsigned)s);
}

int vsoc_cmd_state_from_name(const char *name, vsoc_cmd_state_t *out)
{
    int i = vsoc_name_index(cmd_names, NCMD, name);
    if (i >= 0)
        *out = (vsoc_cmd_state_t)i;
    return i >= 0 ? 0 : -1;
}

/* Copies src into dst[n], cut to fit: record fields have fixed sizes, and a reason or an
 * id longer than its field is shortened rather than refused. */
static void setstr(char *dst, size_t n, const char *src)
{
    size_t len = strnlen(src, n - 1);
    memmove(dst, src, len);
    dst[len] = 0;
}

/* ---- an index of records by string id ---------------------------------------------------- */

/* Positions + 1 into a record array (0: empty); the key is read from the record. */
typedef struct idx {
    size_t *slot;
    size_t cap; /* a power of two, or 0 */
    size_t n;
} idx_t;

typedef const char *(*key_fn)(const void *base, size_t i);

static size_t idx_find(const idx_t *x, const void *base, key_fn key, const char *k)
{
    if (!x->cap)
        return SIZE_MAX;
    size_t h = (size_t)vsoc_hash_bytes(k, strlen(k), 0x5e9) & (x->cap - 1);
    for (;;) {
        size_t s = x->slot[h];
        if (!s)
            return SIZE_MAX;
        if (!strcmp(key(base, s - 1), k))
            return s - 1;
        h = (h + 1) & (x->cap - 1);
    }
}

static int idx_put(idx_t *x, const void *base, key_fn key, size_t pos)
{
    if ((x->n + 1) * 4 > x->cap * 3) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        size_t *slot = calloc(cap, sizeof *slot);
        if (!slot)
            return VSOC_ENOMEM;
        for (size_t i = 0; i < x->cap; i++)
            if (x->slot[i]) {
                const char *k = key(base, x->slot[i] - 1);
                size_t h = (size_t)vsoc_hash_bytes(k, strlen(k), 0x5e9) & (cap - 1);
                while (slot[h])
                    h = (h + 1) & (cap - 1);
                slot[h] = x->slot[i];
            }
        free(x->slot);
        x->slot = slot;
        x->cap = cap;
    }
    const char *k = key(base, pos);
    size_t h = (size_t)vsoc_hash_bytes(k, strlen(k), 0x5e9) & (x->cap - 1);
    while (x->slot[h])
        h = (h + 1) & (x->cap - 1);
    x->slot[h] = pos + 1;
    x->n++;
    return 0;
}

/* ---- the responder ------------------------------------------------------------------------ */

typedef struct seq_rec {
    char vin[VSOC_VIN_MAX + 1];
    uint64_t last;
} seq_rec_t;

struct vsoc_responder {
    vsoc_responder_opts_t o;
    vsoc_run_t *runs;
    size_t nruns, capruns;
    idx_t run_idx;
    vsoc_command_t *cmds; /* envelope points at a string the responder owns */
    size_t ncmds, capcmds;
    idx_t cmd_idx;
    seq_rec_t *seqs;
    size_t nseqs, capseqs;
    idx_t seq_idx;
    int64_t now_us;
    int failed;
    char err[256];
    char detail[1024]; /* the sentence of the change being reported */
};

static const char *run_key(const void *base, size_t i)
{
    return ((const vsoc_run_t *)base)[i].id;
}
static const char *cmd_key(const void *base, size_t i)
{
    return ((const vsoc_command_t *)base)[i].cmd_id;
}
static const char *seq_key(const void *base, size_t i)
{
    return ((const seq_rec_t *)base)[i].vin;
}

vsoc_responder_t *vsoc_responder_new(const vsoc_responder_opts_t *o, char *err, size_t errlen)
{
    if (!o->playbooks || !o->on_change) {
        snprintf(err, errlen, "a responder needs playbooks and an on_change callback");
        return NULL;
    }
    vsoc_responder_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->o = *o;
    r->now_us = INT64_MIN;
    return r;
}

void vsoc_responder_free(vsoc_responder_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->ncmds; i++)
        free((char *)r->cmds[i].envelope);
    free(r->runs);
    free(r->cmds);
    free(r->seqs);
    free(r->run_idx.slot);
    free(r->cmd_idx.slot);
    free(r->seq_idx.slot);
    free(r);
}

const char *vsoc_responder_error(const vsoc_responder_t *r)
{
    return r->failed ? r->err : NULL;
}

static vsoc_run_t *find_run(vsoc_responder_t *r, const char *id)
{
    size_t i = idx_find(&r->run_idx, r->runs, run_key, id);
    return i == SIZE_MAX ? NULL : &r->runs[i];
}

static vsoc_command_t *find_cmd(vsoc_responder_t *r, const char *id)
{
    size_t i = idx_find(&r->cmd_idx, r->cmds, cmd_key, id);
    return i == SIZE_MAX ? NULL : &r->cmds[i];
}

const vsoc_command_t *vsoc_responder_command(const vsoc_responder_t *r, const char *cmd_id)
{
    return find_cmd((vsoc_responder_t *)r, cmd_id);
}

static seq_rec_t *seq_of(vsoc_responder_t *r, const char *vin)
{
    size_t i = idx_find(&r->seq_idx, r->seqs, seq_key, vin);
    if (i != SIZE_MAX)
        return &r->seqs[i];
    if (vsoc_array_grow((void **)&r->seqs, &r->capseqs, r->nseqs, sizeof *r->seqs) != 0)
        return NULL;
    seq_rec_t *s = &r->seqs[r->nseqs];
    memset(s, 0, sizeof *s);
    setstr(s->vin, sizeof s->vin, vin);
    if (idx_put(&r->seq_idx, r->seqs, seq_key, r->nseqs) != 0)
        return NULL;
    r->nseqs++;
    return s;
}

/* Adds a run (copied); returns it, or NULL on allocation failure. */
static vsoc_run_t *add_run(vsoc_responder_t *r, const vsoc_run_t *run)
{
    if (vsoc_array_grow((void **)&r->runs, &r->capruns, r->nruns, sizeof *r->runs) != 0)
        return NULL;
    r->runs[r->nruns] = *run;
    if (idx_put(&r->run_idx, r->runs, run_key, r->nruns) != 0)
        return NULL;
    return &r->runs[r->nruns++];
}

static vsoc_command_t *add_cmd(vsoc_responder_t *r, const vsoc_command_t *c)
{
    if (vsoc_array_grow((void **)&r->cmds, &r->capcmds, r->ncmds, sizeof *r->cmds) != 0)
        return NULL;
    vsoc_command_t *d = &r->cmds[r->ncmds];
    *d = *c;
    d->envelope = NULL;
    if (c->envelope && !(d->envelope = strdup(c->envelope)))
        return NULL;
    if (idx_put(&r->cmd_idx, r->cmds, cmd_key, r->ncmds) != 0) {
        free((char *)d->envelope);
        return NULL;
    }
    r->ncmds++;
    return d;
}

int vsoc_responder_restore_run(vsoc_responder_t *r, const vsoc_run_t *run)
{
    vsoc_run_t *have = find_run(r, run->id);
    if (have) {
        *have = *run;
        return 0;
    }
    return add_run(r, run) ? 0 : VSOC_ENOMEM;
}

int vsoc_responder_restore_command(vsoc_responder_t *r, const vsoc_command_t *cmd)
{
    if (find_cmd(r, cmd->cmd_id))
        return 0;
    if (!add_cmd(r, cmd))
        return VSOC_ENOMEM;
    seq_rec_t *s = seq_of(r, cmd->vin);
    if (!s)
        return VSOC_ENOMEM;
    if (cmd->seq > s->last)
        s->last = cmd->seq;
    return 0;
}

int vsoc_responder_restore_seq(vsoc_responder_t *r, const char *vin, uint64_t last_seq)
{
    seq_rec_t *s = seq_of(r, vin);
    if (!s)
        return VSOC_ENOMEM;
    if (last_seq > s->last)
        s->last = last_seq;
    return 0;
}

static int is_final(vsoc_cmd_state_t s)
{
    return s == VSOC_CMD_REJECTED || s == VSOC_CMD_TIMED_OUT || s == VSOC_CMD_RELEASED ||
           s == VSOC_CMD_FAILED || s == VSOC_CMD_DRY_RUN ||
           s == VSOC_CMD_ACKED; /* a release may still follow an acked quarantine */
}

size_t vsoc_responder_open_commands(const vsoc_responder_t *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->ncmds; i++)
        n += !is_final(r->cmds[i].state);
    return n;
}

size_t vsoc_responder_in_flight(const vsoc_responder_t *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->ncmds; i++)
        n += r->cmds[i].state == VSOC_CMD_QUEUED || r->cmds[i].state == VSOC_CMD_SENT ||
             r->cmds[i].state == VSOC_CMD_DEFERRED;
    return n;
}

/* ---- reporting ---------------------------------------------------------------------------- */

/* Reports one transition; a store that cannot keep it stops the responder, since acting on
 * a change nobody recorded would break the crash guarantees. */
__attribute__((format(printf, 8, 9))) static int
emit(vsoc_responder_t *r, vsoc_change_kind_t kind, const char *event, const char *actor,
     const vsoc_run_t *run, const vsoc_command_t *cmd, const vsoc_notification_t *note,
     const char *fmt, ...)
{
    if (r->failed)
        return VSOC_EIO;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
    vsoc_change_t c = {
        .kind = kind,
        .event = event,
        .detail = r->detail,
        .time_us = r->now_us,
        .actor = actor ? actor : "vsoc",
        .run = run,
        .cmd = cmd,
        .note = note,
    };
    if (r->o.on_change(r->o.ctx, &c) != 0) {
        r->failed = 1;
        snprintf(r->err, sizeof r->err, "the change %s of %s could not be stored", event,
                 cmd ? cmd->cmd_id : run ? run->id : "?");
        return VSOC_EIO;
    }
    return 0;
}

static const vsoc_playbook_t *playbook_of(const vsoc_responder_t *r, const char *id)
{
    size_t n = vsoc_playbooks_count(r->o.playbooks);
    for (size_t i = 0; i < n; i++) {
        const vsoc_playbook_t *p = vsoc_playbooks_get(r->o.playbooks, i);
        if (!strcmp(p->id, id))
            return p;
    }
    return NULL;
}

static void fmt_dur(int64_t s, char *buf, size_t n)
{
    if (s % 3600 == 0 && s >= 3600)
        snprintf(buf, n, "%lldh", (long long)(s / 3600));
    else if (s % 60 == 0 && s >= 60)
        snprintf(buf, n, "%lldm", (long long)(s / 60));
    else
        snprintf(buf, n, "%llds", (long long)s);
}

/* ---- runs and steps ----------------------------------------------------------------------- */

static int start_step(vsoc_responder_t *r, vsoc_run_t *run);

static int end_run(vsoc_responder_t *r, vsoc_run_t *run, vsoc_run_state_t st,
                   const char *reason)
{
    run->state = st;
    run->updated_us = r->now_us;
    setstr(run->reason, sizeof run->reason, reason ? reason : "");
    if (st == VSOC_RUN_DONE)
        return emit(r, VSOC_CHANGE_RUN, "run.done", NULL, run, NULL, NULL,
                    "playbook %s finished for incident %s", run->playbook, run->incident_id);
    return emit(r, VSOC_CHANGE_RUN, "run.failed", NULL, run, NULL, NULL,
                "playbook %s failed at step %u: %s", run->playbook, run->step + 1, reason);
}

/* A notify or escalate record; message is the sentence people read. */
static int notify(vsoc_responder_t *r, const vsoc_run_t *run, const char *step_id,
                  vsoc_action_t action, const char *args, const char *message)
{
    vsoc_notification_t n;
    memset(&n, 0, sizeof n);
    const char *parts[] = {"notification", run->id, step_id};
    vsoc_uuid_derive(parts, 3, n.id);
    setstr(n.run_id, sizeof n.run_id, run->id);
    setstr(n.incident_id, sizeof n.incident_id, run->incident_id);
    setstr(n.vin, sizeof n.vin, run->vin);
    n.action = action;
    setstr(n.args, sizeof n.args, args ? args : "{}");
    setstr(n.message, sizeof n.message, message);
    n.time_us = r->now_us;
    return emit(r, VSOC_CHANGE_NOTIFICATION, vsoc_action_name(action), NULL, run, NULL, &n,
                "%s %s: %s", vsoc_action_name(action), n.args, message);
}

static int step_failed(vsoc_responder_t *r, vsoc_run_t *run, const char *why_in)
{
    /* why often points into a command, which the next step's command may move. */
    char why[256];
    setstr(why, sizeof why, why_in);
    const vsoc_playbook_t *p = playbook_of(r, run->playbook);
    const vsoc_pb_step_t *st = p && run->step < p->nsteps ? &p->steps[run->step] : NULL;
    vsoc_onfail_t f = st ? st->on_failure : VSOC_ONFAIL_ABORT;
    if (f == VSOC_ONFAIL_CONTINUE) {
        run->step++;
        return start_step(r, run);
    }
    if (f == VSOC_ONFAIL_ESCALATE) {
        char msg[512];
        snprintf(msg, sizeof msg, "playbook %s, step %s failed for vehicle %s (incident %s): %s",
                 run->playbook, st ? st->id : "?", run->vin, run->incident_id, why);
        char sid[VSOC_ID_MAX + 16];
        snprintf(sid, sizeof sid, "%s/on_failure", st ? st->id : "?");
        int rc = notify(r, run, sid, VSOC_ACTION_ESCALATE, "{}", msg);
        if (rc != 0)
            return rc;
    }
    return end_run(r, run, VSOC_RUN_FAILED, why);
}

static int step_done(vsoc_responder_t *r, vsoc_run_t *run)
{
    run->step++;
    return start_step(r, run);
}

/* The step's args with the gate added as "vehicle_state", canonical. */
static int command_args(const vsoc_pb_step_t *st, char *out, size_t n)
{
    if (st->gate.op == VSOC_GATE_NONE) {
        snprintf(out, n, "%s", st->args);
        return 0;
    }
    char gate[128];
    vsoc_gate_json(&st->gate, gate, sizeof gate);
    json_t *a = json_loads(st->args, 0, NULL);
    json_t *g = json_loads(gate, 0, NULL);
    int rc = VSOC_EINVAL;
    if (a && g && json_is_object(a) && json_object_set(a, "vehicle_state", g) == 0) {
        char *s = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
        if (s && strlen(s) < n) {
            memcpy(out, s, strlen(s) + 1);
            rc = 0;
        }
        free(s);
    }
    json_decref(a);
    json_decref(g);
    return rc;
}

static int try_send(vsoc_responder_t *r, vsoc_command_t *c, vsoc_run_t *run);

static int start_command(vsoc_responder_t *r, vsoc_run_t *run, const vsoc_pb_step_t *st)
{
    vsoc_command_t c;
    memset(&c, 0, sizeof c);
    const char *parts[] = {"command", run->id, st->id};
    vsoc_uuid_derive(parts, 3, c.cmd_id);
    if (find_cmd(r, c.cmd_id))
        return 0; /* restored: it carries on from its own state */
    setstr(c.run_id, sizeof c.run_id, run->id);
    setstr(c.incident_id, sizeof c.incident_id, run->incident_id);
    setstr(c.playbook, sizeof c.playbook, run->playbook);
    setstr(c.step_id, sizeof c.step_id, st->id);
    setstr(c.vin, sizeof c.vin, run->vin);
    c.action = st->action;
    c.approval = st->approval;
    c.max_attempts = 1 + st->retries;
    c.ttl_s = st->ttl_s;
    c.expires_s = st->expires_s;
    c.ack_timeout_s = st->ack_timeout_s;
    c.approval_timeout_s = st->approval_timeout_s;
    c.created_us = c.updated_us = r->now_us;
    c.deadline_us = NO_DEADLINE;
    if (command_args(st, c.args, sizeof c.args) != 0) {
        c.state = VSOC_CMD_FAILED;
        snprintf(c.reason, sizeof c.reason, "its args and vehicle_state do not fit an envelope");
        vsoc_command_t *d = add_cmd(r, &c);
        if (!d)
            return VSOC_ENOMEM;
        int rc = emit(r, VSOC_CHANGE_COMMAND, "command.failed", NULL, run, d, NULL,
                      "%s for %s failed: %s", vsoc_action_name(d->action), d->vin, d->reason);
        return rc ? rc : step_failed(r, run, d->reason);
    }
    int need = st->approval == VSOC_APPROVAL_AUTO       ? 0
               : st->approval == VSOC_APPROVAL_REQUIRED ? 1
                                                        : 2;
    if (r->o.dry_run || need == 0 || r->o.approve_all) {
        if (need && !r->o.dry_run) {
            snprintf(c.approved_by[0], sizeof c.approved_by[0], "approve-all");
            c.napprovals = 1;
        }
        c.state = VSOC_CMD_QUEUED;
        vsoc_command_t *d = add_cmd(r, &c);
        if (!d)
            return VSOC_ENOMEM;
        if (!r->o.dry_run) {
            int rc = need ? emit(r, VSOC_CHANGE_COMMAND, "command.approved", "approve-all", run,
                                 d, NULL,
                                 "%s for %s approved by --approve-all, not by a person "
                                 "(step %s asks for %s approval)",
                                 vsoc_action_name(d->action), d->vin, st->id,
                                 need == 2 ? "two-person" : "one person's")
                          : emit(r, VSOC_CHANGE_COMMAND, "command.queued", NULL, run, d, NULL,
                                 "%s %s for %s (step %s, approval auto)",
                                 vsoc_action_name(d->action), d->args, d->vin, st->id);
            if (rc)
                return rc;
        }
        return try_send(r, d, run);
    }
    c.state = VSOC_CMD_PENDING_APPROVAL;
    c.deadline_us = st->approval_timeout_s > 0 ? r->now_us + st->approval_timeout_s * US
                                               : NO_DEADLINE;
    vsoc_command_t *d = add_cmd(r, &c);
    if (!d)
        return VSOC_ENOMEM;
    char tmo[32];
    fmt_dur(st->approval_timeout_s, tmo, sizeof tmo);
    return emit(r, VSOC_CHANGE_COMMAND, "command.pending_approval", NULL, run, d, NULL,
                "%s %s for %s waits for %s (escalated after %s)", vsoc_action_name(d->action),
                d->args, d->vin, need == 2 ? "two different people" : "a person's approval",
                tmo);
}

static int start_step(vsoc_responder_t *r, vsoc_run_t *run)
{
    for (;;) {
        if (r->failed)
            return VSOC_EIO;
        const vsoc_playbook_t *p = playbook_of(r, run->playbook);
        if (!p)
            return end_run(r, run, VSOC_RUN_FAILED, "its playbook is no longer loaded");
        run->updated_us = r->now_us;
        if (run->step >= p->nsteps)
            return end_run(r, run, VSOC_RUN_DONE, NULL);
        const vsoc_pb_step_t *st = &p->steps[run->step];
        if (vsoc_action_is_command(st->action))
            return start_command(r, run, st);
        char msg[512];
        snprintf(msg, sizeof msg, "incident %s on vehicle %s (rule %s), playbook %s step %s",
                 run->incident_id, run->vin, run->rule_id, run->playbook, st->id);
        int rc = notify(r, run, st->id, st->action, st->args, msg);
        if (rc)
            return rc;
        run->step++;
    }
}

/* ---- sending ------------------------------------------------------------------------------ */

static int sign_into(vsoc_responder_t *r, vsoc_command_t *c, uint64_t seq, char *err,
                     size_t errlen)
{
    vsoc_envelope_t e;
    memset(&e, 0, sizeof e);
    e.v = VSOC_ENVELOPE_VERSION;
    setstr(e.cmd_id, sizeof e.cmd_id, c->cmd_id);
    setstr(e.vin, sizeof e.vin, c->vin);
    e.seq = seq;
    setstr(e.action, sizeof e.action, vsoc_action_name(c->action));
    setstr(e.args, sizeof e.args, c->args);
    e.ttl_s = c->ttl_s;
    /* Envelope times are whole seconds; event time may carry a fraction. */
    e.issued_at = r->now_us / US;
    e.expires_at = e.issued_at + c->expires_s;
    setstr(e.incident_id, sizeof e.incident_id, c->incident_id);
    int rc = vsoc_envelope_sign(&e, r->o.key, err, errlen);
    if (rc)
        return rc;
    char *s = NULL;
    size_t n = 0;
    rc = vsoc_envelope_serialize(&e, &s, &n);
    if (rc) {
        snprintf(err, errlen, "the envelope cannot be written: %s", vsoc_strerror(rc));
        return rc;
    }
    free((char *)c->envelope);
    c->envelope = s;
    c->seq = seq;
    c->expires_at = e.expires_at;
    return 0;
}

/* 1 when another command to c's vehicle is sent and not yet answered. */
static int unanswered(const vsoc_responder_t *r, const vsoc_command_t *c)
{
    for (size_t i = 0; i < r->ncmds; i++) {
        const vsoc_command_t *o = &r->cmds[i];
        if (o != c && o->state == VSOC_CMD_SENT && !strcmp(o->vin, c->vin))
            return 1;
    }
    return 0;
}

static int try_send(vsoc_responder_t *r, vsoc_command_t *c, vsoc_run_t *run)
{
    char err[256];
    if (r->o.dry_run) {
        /* Shown with the seq it would get. The seq moves on in memory only: a dry run's
         * store writes are dropped, so the next real run starts from the stored one. */
        seq_rec_t *s = seq_of(r, c->vin);
        if (!s)
            return VSOC_ENOMEM;
        if (r->o.key && sign_into(r, c, s->last + 1, err, sizeof err) != 0)
            setstr(c->reason, sizeof c->reason, err);
        else if (r->o.key)
            s->last = c->seq;
        c->state = VSOC_CMD_DRY_RUN;
        c->updated_us = r->now_us;
        int rc = emit(r, VSOC_CHANGE_COMMAND, "command.dry_run", NULL, run, c, NULL,
                      "would send %s %s to %s%s", vsoc_action_name(c->action), c->args,
                      c->vin, r->o.key ? "" : " (no signing key: unsigned)");
        return rc ? rc : step_done(r, run);
    }
    if (!r->o.key || !r->o.send)
        return 0; /* stays queued until a process with a key and a transport sends it */
    if (unanswered(r, c))
        return 0; /* waits for the vehicle's answer to the one before (tick sends it) */
    seq_rec_t *s = seq_of(r, c->vin);
    if (!s)
        return VSOC_ENOMEM;
    if (sign_into(r, c, s->last + 1, err, sizeof err) != 0) {
        c->state = VSOC_CMD_FAILED;
        c->updated_us = r->now_us;
        setstr(c->reason, sizeof c->reason, err);
        int rc = emit(r, VSOC_CHANGE_COMMAND, "command.failed", NULL, run, c, NULL,
                      "%s for %s could not be signed: %s", vsoc_action_name(c->action), c->vin,
                      err);
        return rc ? rc : step_failed(r, run, c->reason);
    }
    s->last = c->seq;
    c->state = VSOC_CMD_SENT;
    c->attempts = 1;
    c->updated_us = r->now_us;
    c->deadline_us = r->now_us + c->ack_timeout_s * US;
    int rc = emit(r, VSOC_CHANGE_COMMAND, "command.sent", NULL, run, c, NULL,
                  "%s seq %llu sent to %s, expires in %llds", vsoc_action_name(c->action),
                  (unsigned long long)c->seq, c->vin, (long long)c->expires_s);
    if (rc)
        return rc;
    /* A refused send is retried by the ack timeout like a lost message. */
    (void)r->o.send(r->o.ctx, c, c->envelope, strlen(c->envelope));
    return 0;
}

/* ---- entry points ------------------------------------------------------------------------- */

static void advance(vsoc_responder_t *r, int64_t now_us)
{
    if (now_us > r->now_us)
        r->now_us = now_us;
}

int vsoc_responder_on_alert(vsoc_responder_t *r, const vsoc_incident_t *inc,
                            const char *rule_id, vsoc_level_t level, int64_t now_us)
{
    if (r->failed)
        return VSOC_EIO;
    advance(r, now_us);
    if (inc->state == VSOC_INC_RESOLVED || inc->state == VSOC_INC_FALSE_POSITIVE)
        return 0;
    int started = 0;
    size_t np = vsoc_playbooks_count(r->o.playbooks);
    for (size_t i = 0; i < np; i++) {
        const vsoc_playbook_t *p = vsoc_playbooks_get(r->o.playbooks, i);
        if (!vsoc_playbook_triggered_by(p, rule_id, level))
            continue;
        vsoc_run_t run;
        memset(&run, 0, sizeof run);
        const char *parts[] = {"run", p->id, inc->id};
        vsoc_uuid_derive(parts, 3, run.id);
        if (find_run(r, run.id))
            continue; /* one run per playbook and incident */
        /* Cooldown per vehicle, and the fleet-wide cap: distinct vehicles whose runs of
         * this playbook started within the last hour. */
        int cooling = 0;
        size_t vehicles = 0;
        for (size_t j = 0; j < r->nruns && !cooling; j++) {
            const vsoc_run_t *o = &r->runs[j];
            if (strcmp(o->playbook, p->id) != 0 || o->state == VSOC_RUN_CAPPED)
                continue;
            if (!strcmp(o->vin, inc->vin)) {
                if (p->cooldown_s > 0 && r->now_us - o->started_us < p->cooldown_s * US)
                    cooling = 1;
                continue;
            }
            if (r->now_us - o->started_us < HOUR_US) {
                int seen = 0; /* count each other vehicle once */
                for (size_t k = 0; k < j && !seen; k++)
                    seen = !strcmp(r->runs[k].playbook, p->id) &&
                           r->runs[k].state != VSOC_RUN_CAPPED &&
                           !strcmp(r->runs[k].vin, o->vin) &&
                           r->now_us - r->runs[k].started_us < HOUR_US;
                vehicles += !seen;
            }
        }
        if (cooling)
            continue;
        int shared_cooling = 0;
        uint64_t shared = 0;
        if (r->o.limits && !r->o.dry_run &&
            r->o.limits(r->o.ctx, p, inc->vin, run.id, &shared_cooling, &shared) == 0) {
            if (shared_cooling)
                continue; /* another instance ran this playbook for the vehicle lately */
            /* The shared count includes this run; the local one counts the others. */
            vehicles = shared ? (size_t)(shared - 1) : 0;
        }
        setstr(run.playbook, sizeof run.playbook, p->id);
        setstr(run.incident_id, sizeof run.incident_id, inc->id);
        setstr(run.vin, sizeof run.vin, inc->vin);
        setstr(run.rule_id, sizeof run.rule_id, rule_id);
        run.started_us = run.updated_us = r->now_us;
        int capped = p->max_vehicles_per_hour && vehicles >= p->max_vehicles_per_hour;
        run.state = capped ? VSOC_RUN_CAPPED : VSOC_RUN_RUNNING;
        if (capped)
            snprintf(run.reason, sizeof run.reason,
                     "blast-radius cap: %zu vehicles in the last hour (max %u)", vehicles,
                     p->max_vehicles_per_hour);
        vsoc_run_t *rr = add_run(r, &run);
        if (!rr)
            return VSOC_ENOMEM;
        int rc;
        if (capped) {
            rc = emit(r, VSOC_CHANGE_RUN, "run.capped", NULL, rr, NULL, NULL,
                      "playbook %s not started for %s: %s", p->id, rr->vin, rr->reason);
            if (!rc) {
                char msg[512];
                snprintf(msg, sizeof msg, "playbook %s held back for vehicle %s: %s", p->id,
                         rr->vin, rr->reason);
                rc = notify(r, rr, "limits", VSOC_ACTION_ESCALATE, "{}", msg);
            }
        } else {
            rc = emit(r, VSOC_CHANGE_RUN, "run.started", NULL, rr, NULL, NULL,
                      "playbook %s started for incident %s on %s by rule %s (%s)", p->id,
                      rr->incident_id, rr->vin, rule_id, vsoc_level_name(level));
            /* rr stays valid: nothing below adds runs. */
            if (!rc)
                rc = start_step(r, rr);
        }
        if (rc)
            return rc;
        started++;
    }
    return started;
}

static vsoc_run_t *run_of(vsoc_responder_t *r, const vsoc_command_t *c)
{
    return find_run(r, c->run_id);
}

int vsoc_responder_tick(vsoc_responder_t *r, int64_t now_us)
{
    if (r->failed)
        return VSOC_EIO;
    advance(r, now_us);
    /* Index loop: handling one command may add others (the next step's). */
    for (size_t i = 0; i < r->ncmds; i++) {
        vsoc_command_t *c = &r->cmds[i];
        vsoc_run_t *run = run_of(r, c);
        if (!run)
            continue;
        int rc = 0;
        if (c->state == VSOC_CMD_QUEUED) {
            rc = try_send(r, c, run);
        } else if (c->state == VSOC_CMD_PENDING_APPROVAL && r->now_us >= c->deadline_us) {
            c->state = VSOC_CMD_ESCALATED;
            c->updated_us = r->now_us;
            c->deadline_us = NO_DEADLINE;
            char tmo[32];
            fmt_dur(c->approval_timeout_s, tmo, sizeof tmo);
            snprintf(c->reason, sizeof c->reason, "no approval within %s", tmo);
            rc = emit(r, VSOC_CHANGE_COMMAND, "command.escalated", NULL, run, c, NULL,
                      "%s for %s not sent: no approval within %s; escalated",
                      vsoc_action_name(c->action), c->vin, tmo);
            if (!rc) {
                char msg[512];
                snprintf(msg, sizeof msg,
                         "%s for vehicle %s (incident %s) waits for approval since %s: "
                         "vsoc commands approve %s",
                         vsoc_action_name(c->action), c->vin, c->incident_id, tmo, c->cmd_id);
                char sid[VSOC_ID_MAX + 16];
                snprintf(sid, sizeof sid, "%s/approval", c->step_id);
                rc = notify(r, run, sid, VSOC_ACTION_ESCALATE, "{}", msg);
            }
        } else if (c->state == VSOC_CMD_SENT && r->now_us >= c->deadline_us) {
            if (c->attempts < c->max_attempts && r->now_us / US < c->expires_at && r->o.send) {
                c->attempts++;
                c->updated_us = r->now_us;
                c->deadline_us = r->now_us + c->ack_timeout_s * US;
                rc = emit(r, VSOC_CHANGE_COMMAND, "command.resent", NULL, run, c, NULL,
                          "%s seq %llu resent to %s (attempt %d of %d)",
                          vsoc_action_name(c->action), (unsigned long long)c->seq, c->vin,
                          c->attempts, c->max_attempts);
                if (!rc)
                    (void)r->o.send(r->o.ctx, c, c->envelope, strlen(c->envelope));
            } else {
                c->state = VSOC_CMD_TIMED_OUT;
                c->updated_us = r->now_us;
                c->deadline_us = NO_DEADLINE;
                snprintf(c->reason, sizeof c->reason, "no ack after %d attempt%s",
                         c->attempts, c->attempts == 1 ? "" : "s");
                rc = emit(r, VSOC_CHANGE_COMMAND, "command.timed_out", NULL, run, c, NULL,
                          "%s for %s timed out: %s", vsoc_action_name(c->action), c->vin,
                          c->reason);
                if (!rc)
                    rc = step_failed(r, run_of(r, c), c->reason);
            }
        } else if (c->state == VSOC_CMD_DEFERRED && r->now_us / US >= c->expires_at) {
            c->state = VSOC_CMD_TIMED_OUT;
            c->updated_us = r->now_us;
            c->deadline_us = NO_DEADLINE;
            char was[sizeof c->reason];
            memcpy(was, c->reason, sizeof was);
            snprintf(c->reason, sizeof c->reason, "deferred by the vehicle until it expired (%.200s)",
                     was);
            rc = emit(r, VSOC_CHANGE_COMMAND, "command.timed_out", NULL, run, c, NULL,
                      "%s for %s timed out: %s", vsoc_action_name(c->action), c->vin,
                      c->reason);
            if (!rc)
                rc = step_failed(r, run_of(r, c), c->reason);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int vsoc_approver_normalize(const char *name, char out[VSOC_APPROVER_MAX + 1])
{
    if (!name)
        return -1;
    while (*name == ' ' || *name == '\t')
        name++;
    size_t n = strlen(name);
    while (n && (name[n - 1] == ' ' || name[n - 1] == '\t'))
        n--;
    if (n == 0 || n > VSOC_APPROVER_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int ch = vsoc_lower((unsigned char)name[i]);
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '@' || ch == '-'))
            return -1;
        out[i] = (char)ch;
    }
    out[n] = 0;
    return 0;
}

static int needed(const vsoc_command_t *c)
{
    return c->approval == VSOC_APPROVAL_AUTO ? 0 : c->approval == VSOC_APPROVAL_REQUIRED ? 1 : 2;
}

/* What approve and reject check first: a working responder, the command, a valid name
 * (normalized into who). Returns 0, or a VSOC_E* code with err. */
static int decision_start(vsoc_responder_t *r, const char *cmd_id, const char *by,
                          int64_t now_us, char who[VSOC_APPROVER_MAX + 1], vsoc_command_t **c,
                          char *err, size_t errlen)
{
    if (r->failed) {
        snprintf(err, errlen, "%s", r->err);
        return VSOC_EIO;
    }
    advance(r, now_us);
    if (!(*c = find_cmd(r, cmd_id))) {
        snprintf(err, errlen, "no command %s", cmd_id);
        return VSOC_ENOENT;
    }
    if (vsoc_approver_normalize(by, who) != 0) {
        snprintf(err, errlen, "'%.80s' is not a person's name: 1..%d of A-Z a-z 0-9 . _ @ -",
                 by ? by : "", VSOC_APPROVER_MAX);
        return VSOC_EINVAL;
    }
    return 0;
}

int vsoc_responder_approve(vsoc_responder_t *r, const char *cmd_id, const char *by,
                           int64_t now_us, char *err, size_t errlen)
{
    char who[VSOC_APPROVER_MAX + 1];
    vsoc_command_t *c;
    int rc0 = decision_start(r, cmd_id, by, now_us, who, &c, err, errlen);
    if (rc0)
        return rc0;
    by = who;
    if (c->state != VSOC_CMD_PENDING_APPROVAL && c->state != VSOC_CMD_ESCALATED) {
        snprintf(err, errlen, "command %s is %s, not waiting for approval", c->cmd_id,
                 vsoc_cmd_state_name(c->state));
        return VSOC_EINVAL;
    }
    for (int i = 0; i < c->napprovals && i < 2; i++)
        if (!strcmp(c->approved_by[i], by)) {
            snprintf(err, errlen, "%s has approved command %s already%s", by, c->cmd_id,
                     needed(c) == 2 ? "; two_person needs a second, different person" : "");
            return VSOC_EINVAL;
        }
    vsoc_run_t *run = run_of(r, c);
    if (!run) {
        snprintf(err, errlen, "command %s has no run", c->cmd_id);
        return VSOC_ENOENT;
    }
    if (c->napprovals < 2)
        setstr(c->approved_by[c->napprovals], sizeof c->approved_by[0], by);
    c->napprovals++;
    c->updated_us = r->now_us;
    int rc;
    if (c->napprovals < needed(c)) {
        rc = emit(r, VSOC_CHANGE_COMMAND, "command.approval", by, run, c, NULL,
                  "%s approved %s for %s (%d of %d)", by, vsoc_action_name(c->action), c->vin,
                  c->napprovals, needed(c));
    } else {
        c->state = VSOC_CMD_QUEUED;
        c->deadline_us = NO_DEADLINE;
        rc = emit(r, VSOC_CHANGE_COMMAND, "command.approved", by, run, c, NULL,
                  "%s approved %s for %s%s%s", by, vsoc_action_name(c->action), c->vin,
                  c->napprovals > 1 ? " after " : "", c->napprovals > 1 ? c->approved_by[0] : "");
        if (!rc)
            rc = try_send(r, c, run);
    }
    if (rc)
        snprintf(err, errlen, "%s", r->failed ? r->err : vsoc_strerror(rc));
    return rc;
}

int vsoc_responder_reject(vsoc_responder_t *r, const char *cmd_id, const char *by,
                          const char *why, int64_t now_us, char *err, size_t errlen)
{
    char who[VSOC_APPROVER_MAX + 1];
    vsoc_command_t *c;
    int rc0 = decision_start(r, cmd_id, by, now_us, who, &c, err, errlen);
    if (rc0)
        return rc0;
    by = who;
    if (c->state != VSOC_CMD_PENDING_APPROVAL && c->state != VSOC_CMD_ESCALATED &&
        c->state != VSOC_CMD_QUEUED) {
        snprintf(err, errlen, "command %s is %s: only a command not yet sent can be rejected",
                 c->cmd_id, vsoc_cmd_state_name(c->state));
        return VSOC_EINVAL;
    }
    vsoc_run_t *run = run_of(r, c);
    if (!run) {
        snprintf(err, errlen, "command %s has no run", c->cmd_id);
        return VSOC_ENOENT;
    }
    c->state = VSOC_CMD_REJECTED;
    c->updated_us = r->now_us;
    c->deadline_us = NO_DEADLINE;
    snprintf(c->reason, sizeof c->reason, "rejected by %s%s%s", by, why && *why ? ": " : "",
             why ? why : "");
    int rc = emit(r, VSOC_CHANGE_COMMAND, "command.rejected", by, run, c, NULL, "%s %s for %s",
                  c->reason, vsoc_action_name(c->action), c->vin);
    if (!rc)
        rc = step_failed(r, run, c->reason);
    if (rc)
        snprintf(err, errlen, "%s", r->failed ? r->err : vsoc_strerror(rc));
    return rc;
}

int vsoc_responder_on_ack(vsoc_responder_t *r, const vsoc_ack_t *ack, int64_t now_us)
{
    if (r->failed)
        return VSOC_EIO;
    advance(r, now_us);
    vsoc_command_t *c = find_cmd(r, ack->cmd_id);
    /* Only an answer to this very envelope counts: a message that claims the cmd_id with
     * another (or no) seq is not it. */
    if (!c || strcmp(c->vin, ack->vin) != 0 || c->seq == 0 || ack->seq != c->seq)
        return VSOC_ENOENT;
    vsoc_run_t *run = run_of(r, c);
    if (!run)
        return VSOC_ENOENT;
    const char *act = vsoc_action_name(c->action);
    int waiting = c->state == VSOC_CMD_SENT || c->state == VSOC_CMD_DEFERRED;
    int rc;
    switch (ack->status) {
    case VSOC_ACK_APPLIED:
        if (c->state == VSOC_CMD_TIMED_OUT) {
            /* It reached the vehicle after all (it was offline past our retries, not past
             * the expiry): record what is in force. The run has moved on already. */
            c->state = VSOC_CMD_ACKED;
            c->updated_us = r->now_us;
            c->deadline_us = NO_DEADLINE;
            setstr(c->reason, sizeof c->reason, "applied after it had timed out");
            return emit(r, VSOC_CHANGE_COMMAND, "command.acked_late", c->vin, run, c, NULL,
                        "%s %s applied by %s after it had timed out", act, c->args, c->vin);
        }
        if (!waiting)
            return VSOC_EINVAL;
        c->state = VSOC_CMD_ACKED;
        c->updated_us = r->now_us;
        c->deadline_us = NO_DEADLINE;
        c->reason[0] = 0;
        rc = emit(r, VSOC_CHANGE_COMMAND, "command.acked", c->vin, run, c, NULL,
                  "%s %s applied by %s", act, c->args, c->vin);
        return rc ? rc : step_done(r, run);
    case VSOC_ACK_DEFERRED:
        if (c->state != VSOC_CMD_SENT)
            return VSOC_EINVAL;
        c->state = VSOC_CMD_DEFERRED;
        c->updated_us = r->now_us;
        c->deadline_us = c->expires_at * US;
        setstr(c->reason, sizeof c->reason, ack->reason);
        return emit(r, VSOC_CHANGE_COMMAND, "command.deferred", c->vin, run, c, NULL,
                    "%s deferred by %s: %s", act, c->vin, ack->reason);
    case VSOC_ACK_REJECTED:
        if (!waiting)
            return VSOC_EINVAL;
        /* The vehicle answers these to anything it could not authenticate, and keeps no
         * record: they say nothing about the envelope we signed. */
        if (!strcmp(ack->reason, "malformed") || !strcmp(ack->reason, "unknown_key") ||
            !strcmp(ack->reason, "bad_signature")) {
            emit(r, VSOC_CHANGE_COMMAND, "command.answer_ignored", c->vin, run, c, NULL,
                 "%s: the vehicle refused a message claiming this command (%s); still "
                 "waiting for the answer to the signed one", act, ack->reason);
            return VSOC_EINVAL;
        }
        c->state = VSOC_CMD_REJECTED;
        c->updated_us = r->now_us;
        c->deadline_us = NO_DEADLINE;
        snprintf(c->reason, sizeof c->reason, "vehicle: %.240s", ack->reason);
        rc = emit(r, VSOC_CHANGE_COMMAND, "command.rejected", c->vin, run, c, NULL,
                  "%s rejected by %s: %s", act, c->vin, ack->reason);
        return rc ? rc : step_failed(r, run, c->reason);
    case VSOC_ACK_RELEASED:
        if (c->state != VSOC_CMD_ACKED)
            return VSOC_EINVAL;
        c->state = VSOC_CMD_RELEASED;
        c->updated_us = r->now_us;
        setstr(c->reason, sizeof c->reason, ack->reason);
        return emit(r, VSOC_CHANGE_COMMAND, "command.released", c->vin, run, c, NULL,
                    "%s lifted by %s%s%s", act, c->vin, ack->reason[0] ? ": " : "",
                    ack->reason);
    }
    return VSOC_EINVAL;
}
