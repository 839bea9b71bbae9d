/* respond.h: the responder: playbook runs as state machines (docs/playbooks.md).
 *
 * An incident that matches a playbook's trigger starts a run; a run executes its steps in
 * order. A step whose action goes to the vehicle becomes a command that waits for approval
 * (when its step asks for it), is signed at sending, and waits for the vehicle's ack, with
 * retries and timeouts; notify and escalate steps become notifications. All time comes from
 * the caller (event time in replay, the wall clock in a service): nothing here reads a clock.
 *
 * The responder keeps its runs and commands in memory and reports every transition to
 * on_change before acting on it (persist, then send), so that a store can write it and give
 * it back through the restore calls after a restart. It is owned by one thread. */
#ifndef VSOC_RESPOND_H
#define VSOC_RESPOND_H

#include "ack.h"
#include "envelope.h"
#include "incident.h"
#include "playbook.h"

typedef enum {
    VSOC_RUN_RUNNING = 0,   /* a step is in progress */
    VSOC_RUN_DONE,          /* every step finished */
    VSOC_RUN_FAILED,        /* a step failed and on_failure ended the run */
    VSOC_RUN_CAPPED,        /* not started: the playbook's blast-radius cap was reached */
} vsoc_run_state_t;

const char *vsoc_run_state_name(vsoc_run_state_t s);
int vsoc_run_state_from_name(const char *name, vsoc_run_state_t *out);

typedef struct vsoc_run {
    char id[37];                        /* UUIDv8 from playbook id and incident id */
    char playbook[VSOC_ID_MAX + 1];
    char incident_id[37];
    char vin[VSOC_VIN_MAX + 1];
    char rule_id[VSOC_ID_MAX + 1];      /* the alert that triggered it */
    vsoc_run_state_t state;
    uint32_t step;                      /* index of the current (or last) step */
    int64_t started_us, updated_us;
    char reason[256];                   /* why it failed or was capped */
} vsoc_run_t;

typedef enum {
    VSOC_CMD_PENDING_APPROVAL = 0,  /* waits for people (deadline: approval timeout) */
    VSOC_CMD_QUEUED,                /* approved; waits for a transport to sign and send */
    VSOC_CMD_SENT,                  /* waits for the ack (deadline: ack timeout) */
    VSOC_CMD_DEFERRED,              /* the vehicle's state gate holds it (deadline: expiry) */
    VSOC_CMD_ACKED,                 /* applied by the vehicle */
    VSOC_CMD_REJECTED,              /* by the vehicle (reason) or by a person */
    VSOC_CMD_TIMED_OUT,             /* no ack after every retry, or deferred past expiry */
    VSOC_CMD_ESCALATED,             /* its approval timed out: not sent, people paged;
                                       approving it still sends it */
    VSOC_CMD_RELEASED,              /* applied, then lifted (ttl or release) */
    VSOC_CMD_FAILED,                /* could not be signed */
    VSOC_CMD_DRY_RUN,               /* --dry-run: built, shown, never sent */
} vsoc_cmd_state_t;

const char *vsoc_cmd_state_name(vsoc_cmd_state_t s);
int vsoc_cmd_state_from_name(const char *name, vsoc_cmd_state_t *out);

#define VSOC_APPROVER_MAX 64

typedef struct vsoc_command {
    char cmd_id[37];                    /* UUIDv8 from run id and step id */
    char run_id[37];
    char incident_id[37];
    char playbook[VSOC_ID_MAX + 1];
    char step_id[VSOC_ID_MAX + 1];
    char vin[VSOC_VIN_MAX + 1];
    vsoc_action_t action;
    char args[VSOC_ENVELOPE_ARGS_MAX + 1];   /* canonical JSON, with "vehicle_state" */
    vsoc_cmd_state_t state;
    vsoc_approval_t approval;
    int napprovals;
    char approved_by[2][VSOC_APPROVER_MAX + 1];
    uint64_t seq;                       /* 0 until signed */
    int attempts;                       /* sends so far */
    int max_attempts;                   /* 1 + retries */
    int64_t ttl_s, expires_s, ack_timeout_s, approval_timeout_s;
    int64_t created_us, updated_us;
    int64_t deadline_us;                /* of the current state; INT64_MAX: none */
    int64_t expires_at;                 /* epoch s once signed */
    char reason[256];                   /* the last rejection or timeout */
    const char *envelope;               /* the signed envelope as sent; NULL before */
} vsoc_command_t;

/* A notify or escalate step, or an escalation the responder raises itself. */
typedef struct vsoc_notification {
    char id[37];                        /* UUIDv8 from run id, step id and kind */
    char run_id[37];
    char incident_id[37];
    char vin[VSOC_VIN_MAX + 1];
    vsoc_action_t action;               /* VSOC_ACTION_NOTIFY or VSOC_ACTION_ESCALATE */
    char args[VSOC_ENVELOPE_ARGS_MAX + 1];
    char message[512];
    int64_t time_us;
} vsoc_notification_t;

typedef enum {
    VSOC_CHANGE_RUN = 0,
    VSOC_CHANGE_COMMAND,
    VSOC_CHANGE_NOTIFICATION,
} vsoc_change_kind_t;

/* One transition: what changed, its audit event name ("run.started", "run.done",
 * "command.pending_approval", "command.sent", "command.acked", ...), a sentence for people,
 * and the record after the change. */
typedef struct vsoc_change {
    vsoc_change_kind_t kind;
    const char *event;
    const char *detail;
    int64_t time_us;
    const char *actor;                  /* "vsoc", a person's name, or the vehicle's VIN */
    const vsoc_run_t *run;              /* set for every kind */
    const vsoc_command_t *cmd;          /* VSOC_CHANGE_COMMAND */
    const vsoc_notification_t *note;    /* VSOC_CHANGE_NOTIFICATION */
} vsoc_change_t;

typedef struct vsoc_responder_opts {
    const vsoc_playbooks_t *playbooks;  /* borrowed; must outlive the responder */
    const vsoc_key_t *key;              /* signing key, borrowed; NULL: approved commands
                                           wait in queued (vsoc commands approve) */
    /* Called for every transition, before the command is sent. Returns 0, or non-zero to
     * say it could not be stored: the responder stops (vsoc_responder_error). */
    int (*on_change)(void *ctx, const vsoc_change_t *c);
    /* Sends a signed envelope. NULL: commands stay queued (no transport). Returns 0, or
     * non-zero when the transport refused it (the ack timeout resends). */
    int (*send)(void *ctx, const vsoc_command_t *cmd, const char *envelope, size_t n);
    void *ctx;
    /* Fleet-wide limits kept outside this process (the service with Redis shares them
     * between instances). Called before a run would start: sets *cooling when the vehicle
     * is within the playbook's cooldown and *vehicles to the distinct vehicles the playbook
     * started on across the fleet in the current hour, counting this one (the run is held
     * back when the others alone reach max_vehicles_per_hour). Returns
     * 0, or non-zero when the shared state cannot be reached: the responder then judges by
     * its own runs. run_id is the run that would start (derived from playbook and incident):
     * asking again for the same run (events read a second time after a crash) must give
     * the same answer. NULL: always by its own runs (replay, one instance). */
    int (*limits)(void *ctx, const vsoc_playbook_t *p, const char *vin, const char *run_id,
                  int *cooling, uint64_t *vehicles);
    int dry_run;                        /* build and report commands, never send */
    int approve_all;                    /* treat every approval as given (by "approve-all") */
} vsoc_responder_opts_t;

typedef struct vsoc_responder vsoc_responder_t;

vsoc_responder_t *vsoc_responder_new(const vsoc_responder_opts_t *o, char *err,
                                     size_t errlen);
void vsoc_responder_free(vsoc_responder_t *r); /* NULL does nothing */

/* A store gives back what it kept, before the first event: every run (for cooldowns and
 * the blast-radius cap), the commands not yet final, and each vehicle's last seq. */
int vsoc_responder_restore_run(vsoc_responder_t *r, const vsoc_run_t *run);
int vsoc_responder_restore_command(vsoc_responder_t *r, const vsoc_command_t *cmd);
int vsoc_responder_restore_seq(vsoc_responder_t *r, const char *vin, uint64_t last_seq);

/* An alert joined inc at now_us: starts the runs whose trigger it matches (at most one
 * per playbook and incident; not within the playbook's cooldown for this vehicle; capped
 * by max_vehicles_per_hour). Returns the number of runs started, or a VSOC_E* code. */
int vsoc_responder_on_alert(vsoc_responder_t *r, const vsoc_incident_t *inc,
                            const char *rule_id, vsoc_level_t level, int64_t now_us);

/* Advances timers to now_us: approval timeouts escalate, ack timeouts resend or time out,
 * deferred commands past their expiry time out; queued commands are sent when a key and a
 * transport exist. Time never goes back (an earlier now_us is taken as the latest). */
int vsoc_responder_tick(vsoc_responder_t *r, int64_t now_us);

/* A person's name as the responder keeps it: surrounding blanks removed, lower case, only
 * [a-z0-9._@-], 1..VSOC_APPROVER_MAX bytes, so that "Alice" and "alice " are one person to
 * the two-person rule. Returns 0 with out set, or -1 when name is not a valid name. */
int vsoc_approver_normalize(const char *name, char out[VSOC_APPROVER_MAX + 1]);

/* A person approves or rejects a command; by is normalized (vsoc_approver_normalize) and
 * kept that way. Approve: the command must be pending_approval or escalated, and by must
 * not have approved it already; enough approvals queue it. Returns 0, VSOC_ENOENT (unknown
 * command) or VSOC_EINVAL with the reason in err. */
int vsoc_responder_approve(vsoc_responder_t *r, const char *cmd_id, const char *by,
                           int64_t now_us, char *err, size_t errlen);
int vsoc_responder_reject(vsoc_responder_t *r, const char *cmd_id, const char *by,
                          const char *why, int64_t now_us, char *err, size_t errlen);

/* A verified ack from the vehicle. It must name the command's cmd_id, vin and seq. Ignored
 * with VSOC_ENOENT (unknown command, other seq) or VSOC_EINVAL (does not fit the state: a
 * duplicate; or a rejection for "malformed", "unknown_key" or "bad_signature", which says
 * only that someone sent the vehicle a message claiming this command: the vehicle keeps no
 * record of those, so they are not the command's answer). An "applied" ack for a command
 * that timed out is taken late (event "command.acked_late"): the vehicle did apply it. */
int vsoc_responder_on_ack(vsoc_responder_t *r, const vsoc_ack_t *ack, int64_t now_us);

/* Looks up a command it holds; NULL when unknown. */
const vsoc_command_t *vsoc_responder_command(const vsoc_responder_t *r, const char *cmd_id);
/* Commands not yet in a final state. */
size_t vsoc_responder_open_commands(const vsoc_responder_t *r);
/* Commands on their way: queued, sent or deferred (not those waiting for people). At most
 * one command per vehicle is sent and not yet answered: the agent accepts only seqs above
 * the last it accepted, so a later command overtaking an unanswered one would make the
 * earlier one's resend a replay. The others wait queued. */
size_t vsoc_responder_in_flight(const vsoc_responder_t *r);

/* The first on_change failure's message, or NULL. */
const char *vsoc_responder_error(const vsoc_responder_t *r);

#endif
