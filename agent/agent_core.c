/* agent_core.c: the vehicle agent's logic (see agent_core.h and docs/vsoc-agent.md).
 *
 * Invariants:
 * - last_seq only grows: it is the last accepted seq, recorded when a command is applied or
 *   deferred (a deferred command has passed every check but the gate and keeps its place:
 *   commands accepted after it do not turn it into a replay). A command is applied at most
 *   once: its cmd_id is answered before anything else is judged, and a resend gets the
 *   stored ack again.
 * - Every change is written to state_dir/state.json (temp file, fsync, rename) before the
 *   acks it causes are handed to on_ack: acks wait in an outbox that commit() empties only
 *   after a successful write, so an ack never promises what a crash would forget.
 * - Only authentic answers are remembered: a text that fails parsing, names an unknown key
 *   or carries a bad signature is answered but not stored, so a forger cannot make the
 *   vehicle pre-answer (and so block) a cmd_id the SOC will use.
 * - The gateway model is derived from the active quarantines, oldest first: a newer
 *   quarantine of the same segment, CAN id or feature wins; lifting it reveals the older. */
#include "agent_core.h"
#include "envelope_internal.h"
#include "playbook.h"
#include "util.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ANSWERED_MAX 1024   /* newest answered cmd_ids kept for dedupe */
#define DEFERRED_MAX 256
#define QUARANTINES_MAX 1024
#define CAN_IDS_MAX 64      /* per quarantine */
#define NAME_MAX_ 64        /* segment, mode and feature names */
#define UUID_LEN 36
#define STATE_FILE "state.json"

typedef struct answered {
    char cmd_id[UUID_LEN + 1];
    char *ack; /* serialized, signed: resent byte for byte */
} answered_t;

typedef struct deferred {
    char cmd_id[UUID_LEN + 1];
    uint64_t seq;
    int64_t expires_at;
    char action[VSOC_ENVELOPE_STR_MAX + 1];
    char *text; /* the serialized envelope, re-judged by tick */
} deferred_t;

typedef struct quarantine {
    char cmd_id[UUID_LEN + 1];
    uint64_t seq;
    int64_t applied_at;
    int64_t until; /* 0: no end */
    char *args;    /* canonical JSON, persisted; the fields below are parsed from it */
    char segment[NAME_MAX_ + 1], mode[NAME_MAX_ + 1], feature[NAME_MAX_ + 1];
    uint32_t can_ids[CAN_IDS_MAX];
    size_t ncan;
} quarantine_t;

typedef struct outmsg {
    vsoc_ack_t ack;
    char *json;
    size_t n;
} outmsg_t;

enum {
    C_APPLIED, C_REJECTED, C_DEFERRED, C_RELEASED, C_COLLECT_LOGS, C_ROTATE_CREDENTIALS,
    C_NOTIFY, C_ESCALATE, NCOUNTERS
};
static const char *const counter_names[NCOUNTERS] = {
    "applied", "rejected", "deferred", "released", "collect_logs", "rotate_credentials",
    "notify", "escalate",
};

struct vsoc_vagent {
    vsoc_vagent_opts_t o;
    char vin[VSOC_ENVELOPE_VIN_MAX + 1];
    char *state_path, *tmp_path, *dir;
    uint64_t last_seq;
    uint64_t counters[NCOUNTERS];
    answered_t *ans;
    size_t nans;
    deferred_t *def;          /* sorted by seq: tick applies the lowest first */
    size_t ndef;
    quarantine_t *q;          /* in the order applied */
    size_t nq, capq;
    outmsg_t *out;
    size_t nout, capout;
    int dirty;                /* memory differs from state.json */
    vsoc_envelope_t scratch;  /* the envelope being judged (6 KB: not on the stack) */
};

/* Segment, mode and feature names: 1..64 of [A-Za-z0-9._-], safe in logs and file names. */
static int is_name(const char *s)
{
    return vsoc_envelope_is_name(s, NAME_MAX_);
}

/* cmd_ids are UUIDs once parsed; the copy is bounded anyway. */
static void copy_id(char dst[UUID_LEN + 1], const char *src)
{
    size_t n = strnlen(src, UUID_LEN);
    memcpy(dst, src, n);
    dst[n] = 0;
}

static json_t *time_json(int64_t t)
{
    char buf[21];
    if (t == 0 || vsoc_envelope_time_format(t, buf) != 0)
        return json_null();
    return json_string(buf);
}

/* ---- action arguments ---------------------------------------------------------------- */

/* "0x123" (hex, at most 29 bits: extended CAN ids included). */
static int parse_can_id(const char *s, uint32_t *out)
{
    if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X') || !s[2] || strlen(s) > 10)
        return -1;
    uint32_t v = 0;
    for (const char *p = s + 2; *p; p++) {
        int c = (unsigned char)*p, d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + (uint32_t)d;
        if (v > 0x1FFFFFFFu)
            return -1;
    }
    *out = v;
    return 0;
}

/* A command's args as a JSON object (caller frees with json_decref) with no key outside
 * keys (NULL-terminated; NULL: any key), or NULL with the reason (the ack's reason text) in
 * why. */
static json_t *args_object(const char *args, const char *const *keys, char *why, size_t n)
{
    json_t *j = json_loads(args, JSON_REJECT_DUPLICATES, NULL);
    const char *key;
    json_t *v;
    if (!json_is_object(j)) {
        vsoc_envelope_seterr(why, n, "bad_args: not a JSON object");
        goto fail;
    }
    json_object_foreach(j, key, v) {
        size_t i = 0;
        while (keys && keys[i] && strcmp(key, keys[i]) != 0)
            i++;
        if (keys && !keys[i]) {
            vsoc_envelope_seterr(why, n, "bad_args: unknown key \"%.64s\"", key);
            goto fail;
        }
    }
    return j;
fail:
    json_decref(j);
    return NULL;
}

/* Fills q's segment/mode/can_ids/feature from a quarantine's args. Returns 0, or -1 with
 * the reason (the ack's reason text) in why. */
static int quarantine_args(const char *args, quarantine_t *q, char *why, size_t n)
{
    static const char *const keys[] = {"segment", "mode", "can_ids", "feature",
                                       "vehicle_state", NULL};
    json_t *j = args_object(args, keys, why, n);
    int rc = -1;
    if (!j)
        return -1;
    json_t *seg = json_object_get(j, "segment"), *mode = json_object_get(j, "mode");
    json_t *ids = json_object_get(j, "can_ids"), *feat = json_object_get(j, "feature");
    if (!seg && !ids && !feat) {
        vsoc_envelope_seterr(why, n, "bad_args: quarantine needs segment, can_ids or feature");
        goto done;
    }
    if (!seg != !mode) {
        vsoc_envelope_seterr(why, n, "bad_args: segment and mode go together");
        goto done;
    }
    if (seg) {
        if (!json_is_string(seg) || !is_name(json_string_value(seg)) ||
            !json_is_string(mode) || !is_name(json_string_value(mode))) {
            vsoc_envelope_seterr(why, n, "bad_args: segment and mode are names "
                                         "(1..64 of A-Z a-z 0-9 . _ -)");
            goto done;
        }
        snprintf(q->segment, sizeof q->segment, "%s", json_string_value(seg));
        snprintf(q->mode, sizeof q->mode, "%s", json_string_value(mode));
    }
    if (feat) {
        if (!json_is_string(feat) || !is_name(json_string_value(feat))) {
            vsoc_envelope_seterr(why, n,
                                 "bad_args: feature is a name (1..64 of A-Z a-z 0-9 . _ -)");
            goto done;
        }
        snprintf(q->feature, sizeof q->feature, "%s", json_string_value(feat));
    }
    if (ids) {
        size_t i;
        json_t *id;
        if (!json_is_array(ids) || json_array_size(ids) == 0 ||
            json_array_size(ids) > CAN_IDS_MAX) {
            vsoc_envelope_seterr(why, n, "bad_args: can_ids is a list of 1..%d ids", CAN_IDS_MAX);
            goto done;
        }
        json_array_foreach(ids, i, id) {
            if (!json_is_string(id) || parse_can_id(json_string_value(id), &q->can_ids[i])) {
                vsoc_envelope_seterr(why, n,
                                     "bad_args: can_ids[%zu] is not a CAN id like \"0x123\"", i);
                goto done;
            }
        }
        q->ncan = json_array_size(ids);
    }
    rc = 0;
done:
    json_decref(j);
    return rc;
}

/* A release names what it lifts: {"cmd_id": "<quarantine>"} or {"segment": "..."}. */
static int release_args(const char *args, char *cmd_id, char *segment, char *why, size_t n)
{
    cmd_id[0] = segment[0] = 0;
    json_t *j = args_object(args, NULL, why, n);
    int rc = -1;
    if (!j)
        return -1;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (!strcmp(key, "cmd_id") && json_is_string(v) &&
            vsoc_envelope_is_uuid(json_string_value(v)))
            snprintf(cmd_id, UUID_LEN + 1, "%s", json_string_value(v));
        else if (!strcmp(key, "segment") && json_is_string(v) && is_name(json_string_value(v)))
            snprintf(segment, NAME_MAX_ + 1, "%s", json_string_value(v));
        else if (strcmp(key, "vehicle_state") != 0) {
            vsoc_envelope_seterr(why, n,
                                 "bad_args: \"%.64s\" is not cmd_id (a UUID) or segment (a name)",
                                 key);
            goto done;
        }
    }
    if (!cmd_id[0] == !segment[0]) {
        vsoc_envelope_seterr(why, n, "bad_args: release needs one of cmd_id or segment");
        goto done;
    }
    rc = 0;
done:
    json_decref(j);
    return rc;
}

static const char *gate_op(vsoc_gate_op_t op)
{
    switch (op) {
    case VSOC_GATE_LT: return "<";
    case VSOC_GATE_LTE: return "<=";
    case VSOC_GATE_GT: return ">";
    case VSOC_GATE_GTE: return ">=";
    case VSOC_GATE_EQ: return "==";
    default: return "?";
    }
}

/* 1 when the gate lets the command through now; else 0 with the defer reason in why. */
static int gate_open(const vsoc_gate_t *g, const vsoc_vagent_state_t *st, char *why, size_t n)
{
    if (g->op == VSOC_GATE_NONE)
        return 1;
    if (st->speed_known && vsoc_gate_allows(g, st->speed_kph))
        return 1;
    if (st->speed_known)
        vsoc_envelope_seterr(why, n, "vehicle_state: speed %.1f kph, needs %s %g",
                             st->speed_kph, gate_op(g->op), g->speed_kph);
    else
        vsoc_envelope_seterr(why, n, "vehicle_state: speed unknown, needs %s %g",
                             gate_op(g->op), g->speed_kph);
    return 0;
}

/* ---- answers, outbox, persistence ---------------------------------------------------- */

static answered_t *find_answered(const vsoc_vagent_t *a, const char *cmd_id)
{
    for (size_t i = a->nans; i-- > 0;)
        if (strcmp(a->ans[i].cmd_id, cmd_id) == 0)
            return &a->ans[i];
    return NULL;
}

/* Remembers json (copied) as cmd_id's answer, replacing an older one; the oldest answer
 * goes when ANSWERED_MAX are kept. */
static int remember(vsoc_vagent_t *a, const char *cmd_id, const char *json)
{
    char *copy = strdup(json);
    if (!copy)
        return VSOC_ENOMEM;
    answered_t *x = find_answered(a, cmd_id);
    if (x) {
        free(x->ack);
        x->ack = copy;
    } else {
        if (a->nans == ANSWERED_MAX) {
            free(a->ans[0].ack);
            memmove(a->ans, a->ans + 1, (a->nans - 1) * sizeof *a->ans);
            a->nans--;
        }
        x = &a->ans[a->nans++];
        copy_id(x->cmd_id, cmd_id);
        x->ack = copy;
    }
    a->dirty = 1;
    return 0;
}

/* Queues an ack (taken: json) for on_ack after the next successful commit. */
static int outbox_push(vsoc_vagent_t *a, const vsoc_ack_t *ack, char *json, size_t n)
{
    if (vsoc_array_grow((void **)&a->out, &a->capout, a->nout, sizeof *a->out) != 0) {
        free(json);
        return VSOC_ENOMEM;
    }
    a->out[a->nout].ack = *ack;
    a->out[a->nout].json = json;
    a->out[a->nout].n = n;
    a->nout++;
    return 0;
}

/* Builds, signs and queues an ack; remembers it as cmd_id's answer when store is set.
 * Counts it. */
static int send_ack(vsoc_vagent_t *a, const char *cmd_id, uint64_t seq, vsoc_ack_status_t s,
                    const char *reason, int64_t now, int store)
{
    vsoc_ack_t ack;
    memset(&ack, 0, sizeof ack);
    ack.v = 1;
    copy_id(ack.cmd_id, cmd_id);
    snprintf(ack.vin, sizeof ack.vin, "%s", a->vin);
    ack.seq = seq;
    ack.status = s;
    snprintf(ack.reason, sizeof ack.reason, "%s", reason ? reason : "");
    ack.at = now;
    char *json;
    size_t n;
    int rc = vsoc_ack_sign(&ack, a->o.key, NULL, 0);
    if (rc == 0)
        rc = vsoc_ack_serialize(&ack, &json, &n);
    if (rc != 0)
        return rc;
    if (store && (rc = remember(a, cmd_id, json)) != 0) {
        free(json);
        return rc;
    }
    static const int counter_of[] = {C_APPLIED, C_REJECTED, C_DEFERRED, C_RELEASED};
    /* An answer not stored (a forgery, a malformed text) changes only a counter: it is
     * written with the next change rather than costing a disk write of its own. */
    a->counters[counter_of[s]]++;
    return outbox_push(a, &ack, json, n);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static json_t *quarantine_json(const quarantine_t *q)
{
    json_t *args = json_loads(q->args, 0, NULL);
    return json_pack("{s:s,s:I,s:o,s:o,s:o}", "cmd_id", q->cmd_id, "seq", (json_int_t)q->seq,
                     "applied_at", time_json(q->applied_at), "until", time_json(q->until),
                     "args", args ? args : json_object());
}

static json_t *state_json(const vsoc_vagent_t *a)
{
    json_t *root = json_object(), *c = json_object(), *ans = json_array(),
           *def = json_array(), *qs = json_array();
    if (!root || !c || !ans || !def || !qs) {
        json_decref(root);
        json_decref(c);
        json_decref(ans);
        json_decref(def);
        json_decref(qs);
        return NULL;
    }
    int bad = json_object_set_new(root, "v", json_integer(1));
    bad |= json_object_set_new(root, "vin", json_string(a->vin));
    bad |= json_object_set_new(root, "last_seq", json_integer((json_int_t)a->last_seq));
    for (int i = 0; i < NCOUNTERS; i++)
        bad |= json_object_set_new(c, counter_names[i],
                                   json_integer((json_int_t)a->counters[i]));
    bad |= json_object_set_new(root, "counters", c);
    for (size_t i = 0; i < a->nans; i++)
        bad |= json_array_append_new(ans, json_pack("{s:s,s:s}", "cmd_id", a->ans[i].cmd_id,
                                                    "ack", a->ans[i].ack));
    bad |= json_object_set_new(root, "answered", ans);
    for (size_t i = 0; i < a->ndef; i++)
        bad |= json_array_append_new(def, json_string(a->def[i].text));
    bad |= json_object_set_new(root, "deferred", def);
    for (size_t i = 0; i < a->nq; i++)
        bad |= json_array_append_new(qs, quarantine_json(&a->q[i]));
    bad |= json_object_set_new(root, "quarantines", qs);
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Writes state.json atomically: a crash leaves the old file or the new one, never a mix. */
static int persist(vsoc_vagent_t *a)
{
    json_t *j = state_json(a);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return VSOC_ENOMEM;
    int rc = VSOC_EIO;
    int fd = open(a->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto done;
    int ok = write_all(fd, text, strlen(text)) == 0 && write_all(fd, "\n", 1) == 0 &&
             fsync(fd) == 0;
    if (close(fd) != 0)
        ok = 0;
    if (!ok || rename(a->tmp_path, a->state_path) != 0) {
        unlink(a->tmp_path);
        goto done;
    }
    /* The rename itself must reach the disk before the ack promises it. */
    int dfd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
done:
    free(text);
    return rc;
}

/* Persists when needed, then hands the queued acks to on_ack. On a failed write the acks
 * stay queued for the next commit. */
static int commit(vsoc_vagent_t *a)
{
    if (a->dirty && a->dir) {
        int rc = persist(a);
        if (rc != 0)
            return rc;
    }
    a->dirty = 0;
    for (size_t i = 0; i < a->nout; i++) {
        if (a->o.on_ack)
            a->o.on_ack(a->o.ctx, &a->out[i].ack, a->out[i].json, a->out[i].n);
        free(a->out[i].json);
    }
    a->nout = 0;
    return 0;
}

/* ---- applying ------------------------------------------------------------------------ */

static void quarantine_clear(quarantine_t *q)
{
    free(q->args);
    q->args = NULL;
}

static int quarantine_add(vsoc_vagent_t *a, const quarantine_t *q)
{
    if (vsoc_array_grow((void **)&a->q, &a->capq, a->nq, sizeof *a->q) != 0)
        return VSOC_ENOMEM;
    a->q[a->nq++] = *q;
    return 0;
}

/* Lifts quarantine i: a released ack for its cmd_id, which also becomes its answer (a
 * resent quarantine then learns it is no longer in force). */
static int lift(vsoc_vagent_t *a, size_t i, const char *reason, int64_t now)
{
    quarantine_t q = a->q[i];
    memmove(a->q + i, a->q + i + 1, (a->nq - i - 1) * sizeof *a->q);
    a->nq--;
    int rc = send_ack(a, q.cmd_id, q.seq, VSOC_ACK_RELEASED, reason, now, 1);
    quarantine_clear(&q);
    return rc;
}

/* Applies a verified command whose gate is open, records its seq and answers it. */
static int apply(vsoc_vagent_t *a, const vsoc_envelope_t *e, int64_t now)
{
    char why[VSOC_ENVELOPE_STR_MAX + 1];
    int rc = 0;
    if (!strcmp(e->action, "quarantine")) {
        quarantine_t q;
        memset(&q, 0, sizeof q);
        if (quarantine_args(e->args, &q, why, sizeof why) != 0)
            return send_ack(a, e->cmd_id, e->seq, VSOC_ACK_REJECTED, why, now, 1);
        if (a->nq == QUARANTINES_MAX)
            return send_ack(a, e->cmd_id, e->seq, VSOC_ACK_REJECTED, "limit: quarantines",
                            now, 1);
        copy_id(q.cmd_id, e->cmd_id);
        q.seq = e->seq;
        q.applied_at = now;
        /* The parser bounds ttl_s; the clock is the vehicle's own and could be anything. */
        q.until = e->ttl_s > 0 ? (now > INT64_MAX - e->ttl_s ? INT64_MAX : now + e->ttl_s) : 0;
        if (!(q.args = strdup(e->args)) || quarantine_add(a, &q) != 0) {
            quarantine_clear(&q);
            return VSOC_ENOMEM;
        }
    } else if (!strcmp(e->action, "release")) {
        char cmd_id[UUID_LEN + 1], segment[NAME_MAX_ + 1];
        if (release_args(e->args, cmd_id, segment, why, sizeof why) != 0)
            return send_ack(a, e->cmd_id, e->seq, VSOC_ACK_REJECTED, why, now, 1);
        /* Lifting nothing is still applied: the state asked for (not quarantined) holds. */
        for (size_t i = a->nq; i-- > 0 && rc == 0;)
            if (cmd_id[0] ? !strcmp(a->q[i].cmd_id, cmd_id) : !strcmp(a->q[i].segment, segment))
                rc = lift(a, i, "release", now);
        if (rc != 0)
            return rc;
    } else if (!strcmp(e->action, "collect_logs")) {
        a->counters[C_COLLECT_LOGS]++;
    } else if (!strcmp(e->action, "rotate_credentials")) {
        a->counters[C_ROTATE_CREDENTIALS]++;
    } else if (!strcmp(e->action, "notify")) {
        a->counters[C_NOTIFY]++;
    } else {
        a->counters[C_ESCALATE]++;
    }
    if (e->seq > a->last_seq)
        a->last_seq = e->seq; /* a deferred command applied late does not move it back */
    return send_ack(a, e->cmd_id, e->seq, VSOC_ACK_APPLIED, "", now, 1);
}

static int defer(vsoc_vagent_t *a, const vsoc_envelope_t *e, const char *why, int64_t now)
{
    if (a->ndef == DEFERRED_MAX)
        return send_ack(a, e->cmd_id, e->seq, VSOC_ACK_REJECTED, "limit: deferred", now, 1);
    deferred_t d;
    memset(&d, 0, sizeof d);
    copy_id(d.cmd_id, e->cmd_id);
    snprintf(d.action, sizeof d.action, "%s", e->action);
    d.seq = e->seq;
    d.expires_at = e->expires_at;
    size_t n;
    int rc = vsoc_envelope_serialize(e, &d.text, &n);
    if (rc != 0)
        return rc;
    deferred_t *p = realloc(a->def, (a->ndef + 1) * sizeof *p);
    if (!p) {
        free(d.text);
        return VSOC_ENOMEM;
    }
    a->def = p;
    size_t at = a->ndef;
    while (at > 0 && a->def[at - 1].seq > d.seq)
        at--;
    memmove(a->def + at + 1, a->def + at, (a->ndef - at) * sizeof *a->def);
    a->def[at] = d;
    a->ndef++;
    /* Accepted: its seq is used up, so neither a resent copy nor a forged replay of an
     * older envelope can be taken for it. */
    if (e->seq > a->last_seq)
        a->last_seq = e->seq;
    return send_ack(a, e->cmd_id, e->seq, VSOC_ACK_DEFERRED, why, now, 1);
}

/* A verified command: checks its args and gate, then defers or applies it. Returns the
 * status answered or a VSOC_E* code. */
static int judge(vsoc_vagent_t *a, const vsoc_envelope_t *e, const vsoc_vagent_state_t *st)
{
    char why[VSOC_ENVELOPE_STR_MAX + 1];
    vsoc_gate_t g;
    quarantine_t q;
    char c[UUID_LEN + 1], s[NAME_MAX_ + 1];
    int bad = 0;
    if (vsoc_gate_from_args(e->args, &g) != 0) {
        snprintf(why, sizeof why, "bad_args: vehicle_state is not a speed_kph gate");
        bad = 1;
    } else if (!strcmp(e->action, "quarantine")) {
        /* Bad args are rejected now rather than after a long deferral. */
        memset(&q, 0, sizeof q);
        bad = quarantine_args(e->args, &q, why, sizeof why) != 0;
    } else if (!strcmp(e->action, "release")) {
        bad = release_args(e->args, c, s, why, sizeof why) != 0;
    }
    int rc;
    if (bad)
        rc = send_ack(a, e->cmd_id, e->seq, VSOC_ACK_REJECTED, why, st->now, 1);
    else if (!gate_open(&g, st, why, sizeof why))
        rc = defer(a, e, why, st->now);
    else
        rc = apply(a, e, st->now);
    if (rc != 0)
        return rc;
    return a->nout ? (int)a->out[a->nout - 1].ack.status : VSOC_EINVAL;
}

/* For a text that does not parse: its cmd_id when it is an object naming this vehicle with
 * a UUID cmd_id (the SOC can then match the rejection), else 0. */
static int peek_cmd_id(const vsoc_vagent_t *a, const char *buf, size_t n, char *cmd_id)
{
    if (n > VSOC_ENVELOPE_MAX)
        return 0;
    json_t *j = json_loadb(buf, n, 0, NULL);
    json_t *id = json_object_get(j, "cmd_id"), *vin = json_object_get(j, "vin");
    int ok = json_is_string(id) && vsoc_envelope_is_uuid(json_string_value(id)) &&
             json_is_string(vin) && strcmp(json_string_value(vin), a->vin) == 0;
    if (ok)
        snprintf(cmd_id, UUID_LEN + 1, "%s", json_string_value(id));
    json_decref(j);
    return ok;
}

/* Resends a stored answer. Returns its status or a VSOC_E* code. */
static int resend(vsoc_vagent_t *a, const answered_t *x)
{
    vsoc_ack_t ack;
    char *json = strdup(x->ack);
    if (!json)
        return VSOC_ENOMEM;
    size_t n = strlen(json);
    if (vsoc_ack_parse(json, n, &ack, NULL, 0) != 0) {
        free(json);
        return VSOC_EPARSE;
    }
    int rc = outbox_push(a, &ack, json, n);
    return rc ? rc : (int)ack.status;
}

int vsoc_vagent_handle(vsoc_vagent_t *a, const char *buf, size_t n,
                       const vsoc_vagent_state_t *st)
{
    if (!a->o.key || !a->vin[0])
        return VSOC_EINVAL;
    vsoc_envelope_t *e = &a->scratch;
    char cmd_id[UUID_LEN + 1];
    int status;
    if (vsoc_envelope_parse(buf, n, e, NULL, 0) != 0) {
        if (!peek_cmd_id(a, buf, n, cmd_id))
            return VSOC_EPARSE;
        answered_t *x = find_answered(a, cmd_id);
        status = x ? resend(a, x)
                   : send_ack(a, cmd_id, 0, VSOC_ACK_REJECTED, "malformed", st->now, 0);
        if (status == 0 && !x)
            status = VSOC_ACK_REJECTED;
    } else if (find_answered(a, e->cmd_id)) {
        status = resend(a, find_answered(a, e->cmd_id));
    } else {
        vsoc_envelope_check_t chk = {.vin = a->vin, .now = st->now, .last_seq = a->last_seq};
        vsoc_envelope_reason_t r = vsoc_envelope_verify(e, a->o.trusted, a->o.ntrusted, &chk);
        if (r == VSOC_ENVELOPE_OK) {
            status = judge(a, e, st);
        } else {
            int authentic = r != VSOC_ENVELOPE_UNKNOWN_KEY && r != VSOC_ENVELOPE_BAD_SIGNATURE;
            status = send_ack(a, e->cmd_id, e->seq, VSOC_ACK_REJECTED,
                              vsoc_envelope_reason_name(r), st->now, authentic);
            if (status == 0)
                status = VSOC_ACK_REJECTED;
        }
    }
    if (status < 0)
        return status;
    int rc = commit(a);
    return rc ? rc : status;
}

int vsoc_vagent_tick(vsoc_vagent_t *a, const vsoc_vagent_state_t *st)
{
    if (!a->o.key || !a->vin[0])
        return VSOC_EINVAL;
    vsoc_envelope_t *e = &a->scratch;
    int rc = 0;
    char why[VSOC_ENVELOPE_STR_MAX + 1];
    for (size_t i = 0; i < a->ndef && rc == 0;) {
        deferred_t *d = &a->def[i];
        vsoc_gate_t g = {0};
        vsoc_envelope_reason_t r = VSOC_ENVELOPE_MALFORMED;
        if (vsoc_envelope_parse(d->text, strlen(d->text), e, NULL, 0) == 0) {
            /* Its seq was checked when it arrived; only time and the gate can change. */
            vsoc_envelope_check_t chk = {.vin = a->vin, .now = st->now,
                                         .last_seq = d->seq - 1};
            r = vsoc_envelope_verify(e, a->o.trusted, a->o.ntrusted, &chk);
            if (r == VSOC_ENVELOPE_OK && vsoc_gate_from_args(e->args, &g) != 0)
                r = VSOC_ENVELOPE_MALFORMED;
        }
        if (r == VSOC_ENVELOPE_OK && !gate_open(&g, st, why, sizeof why)) {
            i++;
            continue;
        }
        deferred_t taken = *d;
        memmove(a->def + i, a->def + i + 1, (a->ndef - i - 1) * sizeof *a->def);
        a->ndef--;
        a->dirty = 1;
        if (r == VSOC_ENVELOPE_OK)
            rc = apply(a, e, st->now);
        else
            rc = send_ack(a, taken.cmd_id, taken.seq, VSOC_ACK_REJECTED,
                          vsoc_envelope_reason_name(r), st->now, 1);
        free(taken.text);
    }
    for (size_t i = a->nq; i-- > 0 && rc == 0;)
        if (a->q[i].until && st->now >= a->q[i].until)
            rc = lift(a, i, "ttl", st->now);
    int crc = commit(a);
    return rc ? rc : crc;
}

/* ---- state: load, status ------------------------------------------------------------- */

static int load_time(json_t *j, int64_t *out)
{
    if (json_is_null(j)) {
        *out = 0;
        return 0;
    }
    return json_is_string(j) ? vsoc_envelope_time_parse(json_string_value(j), out) : -1;
}

/* Reads state.json into a fresh agent. Returns 0 (also when there is none yet) or -1. */
static int load(vsoc_vagent_t *a, char *err, size_t errlen)
{
    json_error_t je;
    FILE *f = fopen(a->state_path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        vsoc_envelope_seterr(err, errlen, "%s: %s", a->state_path, strerror(errno));
        return -1;
    }
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root) {
        vsoc_envelope_seterr(err, errlen, "%s:%d:%d: %s", a->state_path, je.line, je.column,
                             je.text);
        return -1;
    }
    const char *what = NULL;
    json_t *vin = json_object_get(root, "vin"), *seq = json_object_get(root, "last_seq");
    json_t *c = json_object_get(root, "counters"), *ans = json_object_get(root, "answered");
    json_t *def = json_object_get(root, "deferred"), *qs = json_object_get(root, "quarantines");
    size_t i;
    json_t *v;
    if (!json_is_string(vin) || json_string_length(vin) > VSOC_ENVELOPE_VIN_MAX) {
        what = "vin";
        goto bad;
    }
    if (a->vin[0] && strcmp(a->vin, json_string_value(vin)) != 0) {
        vsoc_envelope_seterr(err, errlen, "%s: holds the state of VIN %s, not %s",
                             a->state_path, json_string_value(vin), a->vin);
        json_decref(root);
        return -1;
    }
    snprintf(a->vin, sizeof a->vin, "%s", json_string_value(vin));
    if (!json_is_integer(seq) || json_integer_value(seq) < 0) {
        what = "last_seq";
        goto bad;
    }
    a->last_seq = (uint64_t)json_integer_value(seq);
    for (int k = 0; k < NCOUNTERS; k++) {
        json_t *n = json_object_get(c, counter_names[k]);
        if (json_is_integer(n) && json_integer_value(n) >= 0)
            a->counters[k] = (uint64_t)json_integer_value(n);
    }
    if (!json_is_array(ans) || json_array_size(ans) > ANSWERED_MAX) {
        what = "answered";
        goto bad;
    }
    json_array_foreach(ans, i, v) {
        json_t *id = json_object_get(v, "cmd_id"), *ack = json_object_get(v, "ack");
        if (!json_is_string(id) || !vsoc_envelope_is_uuid(json_string_value(id)) ||
            !json_is_string(ack)) {
            what = "answered";
            goto bad;
        }
        if (remember(a, json_string_value(id), json_string_value(ack)) != 0) {
            what = "answered (out of memory)";
            goto bad;
        }
    }
    if (!json_is_array(def) || json_array_size(def) > DEFERRED_MAX) {
        what = "deferred";
        goto bad;
    }
    if (json_array_size(def) && !(a->def = calloc(json_array_size(def), sizeof *a->def))) {
        what = "deferred (out of memory)";
        goto bad;
    }
    json_array_foreach(def, i, v) {
        vsoc_envelope_t *e = &a->scratch;
        if (!json_is_string(v) ||
            vsoc_envelope_parse(json_string_value(v), json_string_length(v), e, NULL, 0)) {
            what = "deferred";
            goto bad;
        }
        deferred_t *d = &a->def[a->ndef];
        if (!(d->text = strdup(json_string_value(v)))) {
            what = "deferred (out of memory)";
            goto bad;
        }
        copy_id(d->cmd_id, e->cmd_id);
        snprintf(d->action, sizeof d->action, "%s", e->action);
        d->seq = e->seq;
        d->expires_at = e->expires_at;
        a->ndef++;
    }
    if (!json_is_array(qs) || json_array_size(qs) > QUARANTINES_MAX) {
        what = "quarantines";
        goto bad;
    }
    json_array_foreach(qs, i, v) {
        quarantine_t q;
        memset(&q, 0, sizeof q);
        json_t *id = json_object_get(v, "cmd_id"), *qseq = json_object_get(v, "seq");
        json_t *args = json_object_get(v, "args");
        char *text = json_is_object(args) ? json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS)
                                          : NULL;
        char why[256];
        if (!json_is_string(id) || !vsoc_envelope_is_uuid(json_string_value(id)) ||
            !json_is_integer(qseq) || json_integer_value(qseq) < 0 || !text ||
            load_time(json_object_get(v, "applied_at"), &q.applied_at) != 0 ||
            load_time(json_object_get(v, "until"), &q.until) != 0 ||
            quarantine_args(text, &q, why, sizeof why) != 0) {
            free(text);
            what = "quarantines";
            goto bad;
        }
        copy_id(q.cmd_id, json_string_value(id));
        q.seq = (uint64_t)json_integer_value(qseq);
        q.args = text;
        if (quarantine_add(a, &q) != 0) {
            free(text);
            what = "quarantines (out of memory)";
            goto bad;
        }
    }
    json_decref(root);
    a->dirty = 0;
    return 0;
bad:
    vsoc_envelope_seterr(err, errlen, "%s: bad or missing \"%s\"", a->state_path, what);
    json_decref(root);
    return -1;
}

void vsoc_vagent_free(vsoc_vagent_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nans; i++)
        free(a->ans[i].ack);
    for (size_t i = 0; i < a->ndef; i++)
        free(a->def[i].text);
    for (size_t i = 0; i < a->nq; i++)
        quarantine_clear(&a->q[i]);
    for (size_t i = 0; i < a->nout; i++)
        free(a->out[i].json);
    free(a->ans);
    free(a->def);
    free(a->q);
    free(a->out);
    free(a->state_path);
    free(a->tmp_path);
    free(a->dir);
    free(a);
}

vsoc_vagent_t *vsoc_vagent_new(const vsoc_vagent_opts_t *o, char *err, size_t errlen)
{
    vsoc_vagent_t *a = calloc(1, sizeof *a);
    if (!a || !(a->ans = calloc(ANSWERED_MAX, sizeof *a->ans))) {
        vsoc_envelope_seterr(err, errlen, "agent: out of memory");
        free(a);
        return NULL;
    }
    a->o = *o;
    if (o->vin) {
        if (!o->vin[0] || strlen(o->vin) > VSOC_ENVELOPE_VIN_MAX) {
            vsoc_envelope_seterr(err, errlen, "agent: VIN \"%.40s\" is not 1..%d bytes",
                                 o->vin, VSOC_ENVELOPE_VIN_MAX);
            goto fail;
        }
        snprintf(a->vin, sizeof a->vin, "%s", o->vin);
    }
    if (o->key) {
        /* A trial signature: a public key given for the vehicle's own fails here, not at
         * the first ack. */
        vsoc_ack_t t;
        memset(&t, 0, sizeof t);
        t.v = 1;
        if (vsoc_ack_sign(&t, o->key, err, errlen) != 0)
            goto fail;
    }
    if (o->state_dir) {
        if (mkdir(o->state_dir, 0700) != 0 && errno != EEXIST) {
            vsoc_envelope_seterr(err, errlen, "%s: %s", o->state_dir, strerror(errno));
            goto fail;
        }
        size_t n = strlen(o->state_dir) + sizeof "/" STATE_FILE ".tmp";
        if (!(a->dir = strdup(o->state_dir)) || !(a->state_path = malloc(n)) ||
            !(a->tmp_path = malloc(n))) {
            vsoc_envelope_seterr(err, errlen, "agent: out of memory");
            goto fail;
        }
        snprintf(a->state_path, n, "%s/%s", o->state_dir, STATE_FILE);
        snprintf(a->tmp_path, n, "%s/%s.tmp", o->state_dir, STATE_FILE);
        if (access(a->state_path, F_OK) != 0 && a->vin[0] && o->key) {
            /* A fresh agent writes its (empty) state at once: an unwritable directory
             * fails here, not at the first command. */
            if (persist(a) != 0) {
                vsoc_envelope_seterr(err, errlen, "%s: cannot write: %s", a->state_path,
                                     strerror(errno));
                goto fail;
            }
        } else if (load(a, err, errlen) != 0) {
            goto fail;
        }
    }
    return a;
fail:
    vsoc_vagent_free(a);
    return NULL;
}

uint64_t vsoc_vagent_last_seq(const vsoc_vagent_t *a)
{
    return a->last_seq;
}

static int owner_set(json_t *obj, const char *key, const quarantine_t *q, const char *mode)
{
    json_t *e = mode ? json_pack("{s:s,s:s,s:o}", "mode", mode, "cmd_id", q->cmd_id, "until",
                                 time_json(q->until))
                     : json_pack("{s:s,s:o}", "cmd_id", q->cmd_id, "until",
                                 time_json(q->until));
    return json_object_set_new(obj, key, e);
}

char *vsoc_vagent_status_json(const vsoc_vagent_t *a)
{
    json_t *root = json_object(), *seg = json_object(), *can = json_object(),
           *feat = json_object(), *qs = json_array(), *def = json_array(), *c = json_object();
    char *out = NULL;
    int bad = !root || !seg || !can || !feat || !qs || !def || !c;
    /* Oldest first, so that a newer quarantine of the same thing overwrites the entry. */
    for (size_t i = 0; !bad && i < a->nq; i++) {
        const quarantine_t *q = &a->q[i];
        if (q->segment[0])
            bad |= owner_set(seg, q->segment, q, q->mode);
        if (q->feature[0])
            bad |= owner_set(feat, q->feature, q, NULL);
        for (size_t k = 0; k < q->ncan; k++) {
            char id[16];
            snprintf(id, sizeof id, "0x%03x", (unsigned)q->can_ids[k]);
            bad |= owner_set(can, id, q, NULL);
        }
        bad |= json_array_append_new(qs, quarantine_json(q));
    }
    for (size_t i = 0; !bad && i < a->ndef; i++)
        bad |= json_array_append_new(def, json_pack("{s:s,s:I,s:s,s:o}", "cmd_id",
                                                    a->def[i].cmd_id, "seq",
                                                    (json_int_t)a->def[i].seq, "action",
                                                    a->def[i].action, "expires_at",
                                                    time_json(a->def[i].expires_at)));
    for (int k = 0; !bad && k < NCOUNTERS; k++)
        bad |= json_object_set_new(c, counter_names[k],
                                   json_integer((json_int_t)a->counters[k]));
    if (!bad) {
        bad |= json_object_set_new(root, "vin", json_string(a->vin));
        bad |= json_object_set_new(root, "last_seq", json_integer((json_int_t)a->last_seq));
        bad |= json_object_set_new(root, "segments", seg);
        bad |= json_object_set_new(root, "blocked_can_ids", can);
        bad |= json_object_set_new(root, "disabled_features", feat);
        bad |= json_object_set_new(root, "quarantines", qs);
        bad |= json_object_set_new(root, "deferred", def);
        bad |= json_object_set_new(root, "counters", c);
        bad |= json_object_set_new(root, "answered", json_integer((json_int_t)a->nans));
        seg = can = feat = qs = def = c = NULL; /* owned by root now */
        if (!bad)
            out = json_dumps(root, JSON_COMPACT);
    }
    json_decref(seg);
    json_decref(can);
    json_decref(feat);
    json_decref(qs);
    json_decref(def);
    json_decref(c);
    json_decref(root);
    return out;
}
