/* response.h: the response side of vsoc replay and vsoc serve: alerts into the store and
 * into incidents, incidents into playbook runs, commands signed and delivered to an
 * in-process loopback agent per vehicle (replay) or handed to a transport (the service),
 * acks back to the runs. Timers run on event time, and on the wall clock too when the
 * caller advances it.
 *
 * Owned by one replay or service; it owns the store handle, the incident grouper, the
 * responder, the signing key, the loopback agents and the vehicle keys. */
#ifndef VSOC_CLI_RESPONSE_H
#define VSOC_CLI_RESPONSE_H

#include "engine.h"
#include "playbook.h"

#include <stdio.h>

typedef struct cli_response_opts {
    const char *db;                 /* store file; NULL: nothing is kept */
    const char *const *playbooks;   /* paths; none: the default playbooks */
    size_t nplaybooks;
    int no_playbooks;               /* incidents only */
    const char *keyfile;            /* signing key; NULL: a throwaway key */
    int dry_run;
    int approve_all;
    int loopback;                   /* 1: deliver to in-process agents; 0: leave commands
                                       queued in the store for `vsoc respond` */
    int64_t incident_gap_us;        /* 0: the default */
    FILE *log;                      /* the response log (stderr), NULL: silent */
    /* The service: log lines and errors go to log_fn instead (event "error" for errors),
     * and the playbooks are borrowed from its loaded set instead of loaded here. */
    void (*log_fn)(void *ctx, const char *event, const char *text);
    void *log_ctx;
    const vsoc_playbooks_t *use_playbooks;
    const char *prog;               /* prefix of errors on stderr; NULL: "vsoc replay" */
    /* Fleet-wide limits shared between instances (respond.h, limits); NULL: local. */
    int (*limits)(void *ctx, const vsoc_playbook_t *p, const char *vin, const char *run_id,
                  int *cooling, uint64_t *vehicles);
    void *limits_ctx;
    /* An external transport (the service): send hands one signed envelope for vehicle vin
     * to it and returns 0 once it took it, non-zero when not (the ack timeout resends).
     * It needs db, keyfile (required then) and vehicle_keys (DIR/<VIN>.pub, which verify
     * the acks given to cli_response_ack). The store is committed before every send, so
     * that no send is ever ahead of what the store knows. Not with loopback. */
    int (*send)(void *ctx, const char *vin, const char *envelope, size_t n);
    void *send_ctx;
    const char *vehicle_keys;
    /* 1: the open commands in the store are this process's to deliver: they are restored
     * at start (and after set_playbooks), and an unanswered one is resent with the same
     * cmd_id and seq after its ack timeout. Only with send. */
    int owns_commands;
} cli_response_opts_t;

typedef struct cli_response cli_response_t;

/* Prints what went wrong and returns NULL (with *exit_code 1 or 2). */
cli_response_t *cli_response_new(const cli_response_opts_t *o, int *exit_code);
void cli_response_free(cli_response_t *r);

/* An alert (and its JSON as written): store, incident, runs. Returns 0 or -1 when the
 * store failed (the message was printed). */
int cli_response_alert(cli_response_t *r, const vsoc_alert_t *a, const char *json);
/* Every event after the engine saw it: advances timers each second of event time and
 * keeps each vehicle's last speed for its loopback agent. */
int cli_response_event(cli_response_t *r, const vsoc_event_t *ev);
/* End of input: last timers, commit. Returns 0 or -1. */
int cli_response_finish(cli_response_t *r);
/* The store (NULL when none), for the service's checkpoint rows written in the same
 * transaction as the response's (opened here if none is). */
struct vsoc_store *cli_response_store(cli_response_t *r);
/* Commits what the store holds so far. The next transaction opens with the next write, so
 * that between writes other processes (vsoc commands approve) can take the write lock.
 * 0 or -1. */
int cli_response_commit(cli_response_t *r);
/* Moves the response's event time to now_us (never back) and runs due timers. */
int cli_response_advance(cli_response_t *r, int64_t now_us);
/* Replaces the playbooks (borrowed; they must outlive their use here): commits, then builds
 * a responder over pbs and restores the runs from the store, as after a restart. On failure
 * the old playbooks stay. 0 or -1. */
int cli_response_set_playbooks(cli_response_t *r, const vsoc_playbooks_t *pbs);

/* With send: one ack as read from the transport (its bytes, not NUL-terminated), checked
 * with its vehicle's key, kept in the store, committed, then given to the runs. Returns 0
 * once the store has it (the transport may then forget it), -1 when the store failed. */
int cli_response_ack(cli_response_t *r, const void *buf, size_t n, int64_t wall_us);
/* With send: commits, then hands the runs the approvals recorded in the store since the
 * last call (vsoc commands approve). 0 or -1. */
int cli_response_approvals(cli_response_t *r);

typedef struct cli_response_counts {
    uint64_t alerts_new, alerts_dup, incidents, runs, sent, acked, deferred, rejected,
        pending, escalated, notes;
} cli_response_counts_t;
void cli_response_counts(const cli_response_t *r, cli_response_counts_t *c);

/* A summary for the replay's stderr summary. */
void cli_response_summary(const cli_response_t *r, FILE *out);

#endif
