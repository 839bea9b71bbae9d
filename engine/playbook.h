/* playbook.h: compile incident playbooks (YAML, docs/playbooks.md) into an immutable set
 * and match incidents against their triggers.
 *
 * Loading reports every problem in every file as a located diagnostic (file:line:col) and
 * keeps going, like the rule compiler; the returned set holds the playbooks that compiled.
 * A set is immutable once built and may be shared by threads; the caller owns it and frees
 * it with vsoc_playbooks_free. Every string a playbook points at is owned by its set. */
#ifndef VSOC_PLAYBOOK_H
#define VSOC_PLAYBOOK_H

#include "diag.h"
#include "vsoc.h"

#include <stdint.h>

/* Who must agree before a step's command is signed and sent. */
typedef enum {
    VSOC_APPROVAL_AUTO = 0,     /* sent at once */
    VSOC_APPROVAL_REQUIRED,     /* one person */
    VSOC_APPROVAL_TWO_PERSON,   /* two different people */
} vsoc_approval_t;

/* What a run does when a step fails (rejected, timed out after its retries, escalated). */
typedef enum {
    VSOC_ONFAIL_ABORT = 0,      /* the run ends failed (default) */
    VSOC_ONFAIL_CONTINUE,       /* go on with the next step */
    VSOC_ONFAIL_ESCALATE,       /* raise an escalation, then the run ends failed */
} vsoc_onfail_t;

/* Comparison of a vehicle-state gate. */
typedef enum {
    VSOC_GATE_NONE = 0,
    VSOC_GATE_LT,
    VSOC_GATE_LTE,
    VSOC_GATE_GT,
    VSOC_GATE_GTE,
    VSOC_GATE_EQ,
} vsoc_gate_op_t;

/* vehicle_state: {speed_kph: {lte: 0}}. Speed is the only state known today (J1939 CCVS1
 * wheel-based speed from decoded traffic on the SOC side; the agent's own reading in the
 * vehicle). op == VSOC_GATE_NONE: no gate. */
typedef struct vsoc_gate {
    vsoc_gate_op_t op;
    double speed_kph;
} vsoc_gate_t;

/* Step actions. The first four go to the vehicle as signed commands; notify and escalate
 * stay in the SOC (a notification record). */
typedef enum {
    VSOC_ACTION_QUARANTINE = 0,
    VSOC_ACTION_RELEASE,
    VSOC_ACTION_COLLECT_LOGS,
    VSOC_ACTION_ROTATE_CREDENTIALS,
    VSOC_ACTION_NOTIFY,
    VSOC_ACTION_ESCALATE,
} vsoc_action_t;

/* "quarantine", ...; NULL outside the enum. */
const char *vsoc_action_name(vsoc_action_t a);
/* Returns 0 and *out for a known name, -1 otherwise. */
int vsoc_action_from_name(const char *name, vsoc_action_t *out);
/* 1 for the actions sent to a vehicle. */
int vsoc_action_is_command(vsoc_action_t a);

typedef struct vsoc_pb_step {
    const char *id;          /* unique within the playbook, [a-z0-9][a-z0-9_-]* */
    vsoc_action_t action;
    const char *args;        /* canonical JSON object (sorted keys, compact, as the
                                envelope signs it), at most 3900 bytes, never with a
                                "vehicle_state" member; "{}" if none */
    vsoc_approval_t approval;          /* default auto */
    int64_t approval_timeout_s;        /* default 15m when approval is not auto, else 0 */
    int64_t ack_timeout_s;             /* default 60s (commands only) */
    int retries;                       /* resends after an ack timeout, default 0, max 10 */
    vsoc_onfail_t on_failure;
    int64_t ttl_s;                     /* quarantine: lifted by the agent after this; 0: no
                                          ttl (only for actions other than quarantine) */
    int64_t expires_s;                 /* envelope validity from signing; default
                                          ack_timeout_s * (retries + 1) + 60; always more
                                          than ack_timeout_s * (retries + 1); 0 for notify
                                          and escalate */
    vsoc_gate_t gate;                  /* vehicle_state */
    int line, col;                     /* of the step's mapping */
} vsoc_pb_step_t;

typedef struct vsoc_playbook {
    const char *id;
    const char *title;
    const char *description;           /* may be NULL */
    const char *file;
    int line, col;                     /* of the document */
    const char *const *rules;          /* trigger globs on rule ids ('*' and '?') */
    size_t nrules;
    vsoc_level_t min_level;            /* default medium */
    int64_t cooldown_s;                /* per vehicle, default 0 */
    const vsoc_pb_step_t *steps;
    size_t nsteps;                     /* >= 1 */
    uint32_t max_vehicles_per_hour;    /* fleet-wide cap on runs started; 0: no cap */
} vsoc_playbook_t;

typedef struct vsoc_playbooks vsoc_playbooks_t;

/* Loads playbooks from files and directories (recursed for *.yml and *.yaml in sorted
 * order; a file may hold several YAML documents). Diagnostics go to d. Playbook ids are
 * unique across the set (a duplicate is an error at its id). Returns a set (possibly empty),
 * or NULL on allocation failure. */
vsoc_playbooks_t *vsoc_playbooks_load(const char *const *paths, size_t npaths,
                                      vsoc_diags_t *d);
/* The same from a YAML text; name is used in diagnostics. */
vsoc_playbooks_t *vsoc_playbooks_load_string(const char *name, const char *text, size_t len,
                                             vsoc_diags_t *d);
void vsoc_playbooks_free(vsoc_playbooks_t *s); /* NULL does nothing */

/* Playbooks are ordered by id. */
size_t vsoc_playbooks_count(const vsoc_playbooks_t *s);
const vsoc_playbook_t *vsoc_playbooks_get(const vsoc_playbooks_t *s, size_t i);
/* The number of files the set was loaded from. */
size_t vsoc_playbooks_files(const vsoc_playbooks_t *s);
/* The playbook with this id, or NULL. */
const vsoc_playbook_t *vsoc_playbooks_find(const vsoc_playbooks_t *s, const char *id);

/* Checks the set's trigger globs against the rules that exist (ids with their levels, n of
 * them): adds a warning to d, at the glob, for each glob that matches no rule or only
 * rules below its playbook's min_level (such a glob never starts the playbook). from names
 * the rules in the message ("the default rule pack"). Returns the number of warnings. */
size_t vsoc_playbooks_check_rules(const vsoc_playbooks_t *s, const char *const *rule_ids,
                                  const vsoc_level_t *levels, size_t n, const char *from,
                                  vsoc_diags_t *d);

/* Seconds as the duration text playbooks use, in the largest unit that divides them
 * exactly: 7200 -> "2h", 900 -> "15m", 90 -> "90s", 0 -> "0s". */
void vsoc_playbook_duration(int64_t seconds, char *buf, size_t n);

/* 1 when an alert of rule_id at level matches the playbook's trigger: level >= min_level
 * and rule_id matches one of the globs. */
int vsoc_playbook_triggered_by(const vsoc_playbook_t *p, const char *rule_id,
                               vsoc_level_t level);

/* 1 when glob ('*' any run, '?' one byte, everything else literal) matches s whole. */
int vsoc_glob_match(const char *glob, const char *s);

/* 1 when speed satisfies the gate (always 1 for VSOC_GATE_NONE). */
int vsoc_gate_allows(const vsoc_gate_t *g, double speed_kph);
/* The gate as JSON, e.g. {"speed_kph":{"lte":0}}, into buf; "" for no gate. Commands carry
 * it in their args as "vehicle_state" so that the agent applies the same gate. */
void vsoc_gate_json(const vsoc_gate_t *g, char *buf, size_t n);
/* Reads args' "vehicle_state" member (the form above) into *g; no member gives
 * VSOC_GATE_NONE. Returns 0, or VSOC_EPARSE when args is not a JSON object or the member is
 * not a valid gate. */
int vsoc_gate_from_args(const char *args_json, vsoc_gate_t *g);

#endif
