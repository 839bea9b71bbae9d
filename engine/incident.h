/* incident.h: group one vehicle's alerts into incidents (docs/incidents.md).
 *
 * Alerts of one vehicle that arrive within the gap (event time) of the incident's last
 * alert join it; otherwise, or once the incident is resolved or marked a false positive, a
 * new incident opens. An incident's level is the highest level among its alerts, raised one
 * step (up to critical) once alerts of two different ATM tactics (rule tags "atm.<tactic>")
 * meet. Its id is derived from its vehicle and its first alert, so replaying the same input
 * gives the same incidents. A grouper is owned by one thread and keeps one incident per
 * vehicle (the newest). */
#ifndef VSOC_INCIDENT_H
#define VSOC_INCIDENT_H

#include "vsoc.h"

#include <stdint.h>

#define VSOC_VIN_MAX 32
#define VSOC_ID_MAX 128 /* rule, playbook and step ids in records */

typedef enum {
    VSOC_INC_OPEN = 0,
    VSOC_INC_CONTAINED,      /* a quarantine for it is in force */
    VSOC_INC_RESOLVED,
    VSOC_INC_FALSE_POSITIVE,
} vsoc_incident_state_t;

/* "open", "contained", "resolved", "false_positive"; NULL outside the enum. */
const char *vsoc_incident_state_name(vsoc_incident_state_t s);
int vsoc_incident_state_from_name(const char *name, vsoc_incident_state_t *out);
/* 1 when an incident may move from -> to: open -> contained | resolved | false_positive,
 * contained -> open (its quarantine was lifted) | resolved | false_positive. */
int vsoc_incident_transition_ok(vsoc_incident_state_t from, vsoc_incident_state_t to);

/* An incident: a plain value. */
typedef struct vsoc_incident {
    char id[37];                   /* UUIDv8 from vin and first alert uid */
    char vin[VSOC_VIN_MAX + 1];
    vsoc_level_t level;
    vsoc_incident_state_t state;
    int64_t first_us, last_us;     /* event time of its first and last alert */
    uint64_t alerts;               /* alerts added through this grouper or restored */
    uint32_t tactics;              /* bit per ATM tactic seen (vsoc_tactic_bit) */
    char first_rule[VSOC_ID_MAX + 1];
    char first_alert[37];
} vsoc_incident_t;

/* What the grouper needs of an alert. */
typedef struct vsoc_incident_alert {
    const char *uid;
    const char *rule_id;
    vsoc_level_t level;
    vsoc_str_t vin;
    int64_t time_us;
    const char *const *tags;       /* the rule's tags */
    size_t ntags;
} vsoc_incident_alert_t;

/* Flags from vsoc_incidents_add. */
#define VSOC_INC_NEW 0x1u          /* the alert opened a new incident */
#define VSOC_INC_LEVEL_UP 0x2u     /* the incident's level rose */

typedef struct vsoc_incidents vsoc_incidents_t;

/* gap_us <= 0 means the default, 15 minutes. NULL on allocation failure. */
vsoc_incidents_t *vsoc_incidents_new(int64_t gap_us);
void vsoc_incidents_free(vsoc_incidents_t *g); /* NULL does nothing */

/* Adds an alert and returns its incident in *out (valid until the next call on g) with
 * VSOC_INC_* flags in *flags. Returns 0 or VSOC_ENOMEM. */
int vsoc_incidents_add(vsoc_incidents_t *g, const vsoc_incident_alert_t *a,
                       const vsoc_incident_t **out, unsigned *flags);

/* Makes inc the vehicle's current incident (as loaded from a store), replacing an older
 * one. Returns 0 or VSOC_ENOMEM. */
int vsoc_incidents_restore(vsoc_incidents_t *g, const vsoc_incident_t *inc);

/* Updates the state of the vehicle's current incident when its id is id (a responder or
 * a person changed it). Returns 0, or VSOC_ENOENT when that is not the current one. */
int vsoc_incidents_set_state(vsoc_incidents_t *g, const char *id, vsoc_incident_state_t s);

/* The vehicle's current incident, or NULL (valid until the next call that changes g). */
const vsoc_incident_t *vsoc_incidents_get(const vsoc_incidents_t *g, const char *vin);

/* The bit of an ATM tactic tag ("atm.initial-access"); 0 for a tag that is not one. */
uint32_t vsoc_tactic_bit(const char *tag);

/* A UUIDv8 (8-4-4-4-12, lower-case hex) from SHA-256 over the parts, each followed by a
 * NUL byte: the content-derived ids of incidents, runs and commands. */
void vsoc_uuid_derive(const char *const *parts, size_t nparts, char out[37]);

#endif
