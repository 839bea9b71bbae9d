/* agent_core.h: the vehicle agent's logic without its transport (docs/vsoc-agent.md):
 * verify a command envelope in PLAYBOOKS.md's order, apply it to a model of the gateway's
 * filter table and feature flags, lift quarantines when their ttl ends, and answer with
 * signed acks.
 *
 * The agent is given the time and the vehicle's speed by its caller (the vehicle's own clock
 * and bus, or event time and decoded traffic in vsoc replay's in-process loopback). With a
 * state directory it persists the last accepted seq, the answered commands (cmd_id ->
 * ack, so a resent command is answered again, not applied twice) and the active
 * quarantines, writing each change atomically (write, fsync, rename) before acking. One
 * thread. */
#ifndef VSOC_AGENT_CORE_H
#define VSOC_AGENT_CORE_H

#include "ack.h"
#include "envelope.h"

typedef struct vsoc_vagent_opts {
    const char *vin;
    const vsoc_key_t *const *trusted;  /* the SOC's public keys (several for rotation) */
    size_t ntrusted;
    const vsoc_key_t *key;             /* this vehicle's private key, signs acks */
    const char *state_dir;             /* NULL: memory only */
    /* Publishes an ack (serialized, signed). */
    void (*on_ack)(void *ctx, const vsoc_ack_t *ack, const char *json, size_t n);
    void *ctx;
} vsoc_vagent_opts_t;

typedef struct vsoc_vagent vsoc_vagent_t;

/* Loads the state directory when given. NULL with the reason in err. */
vsoc_vagent_t *vsoc_vagent_new(const vsoc_vagent_opts_t *o, char *err, size_t errlen);
void vsoc_vagent_free(vsoc_vagent_t *a);

/* The vehicle's view of the world when it judges or re-judges a command. */
typedef struct vsoc_vagent_state {
    int64_t now;          /* epoch seconds, the vehicle's clock */
    int speed_known;
    double speed_kph;
} vsoc_vagent_state_t;

/* Handles one received message: parse (malformed -> rejected ack with seq 0 when a cmd_id
 * can be read, else none), verify, dedupe by cmd_id, check the gate (defer), apply, persist,
 * ack. Returns the status sent (vsoc_ack_status_t) or a negative VSOC_E* code. */
int vsoc_vagent_handle(vsoc_vagent_t *a, const char *buf, size_t n,
                       const vsoc_vagent_state_t *st);

/* Re-judges deferred commands (applies those whose gate now allows, rejects expired ones)
 * and lifts quarantines whose ttl has ended (a "released" ack). Returns 0 or VSOC_E*. */
int vsoc_vagent_tick(vsoc_vagent_t *a, const vsoc_vagent_state_t *st);

/* The gateway model as one JSON object (segments, blocked CAN IDs, feature flags, active
 * quarantines with their end time, last seq), caller frees. */
char *vsoc_vagent_status_json(const vsoc_vagent_t *a);
uint64_t vsoc_vagent_last_seq(const vsoc_vagent_t *a);

#endif
