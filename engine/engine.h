/* engine.h: the per-worker matcher: decodes an event, keeps the vehicle's state, visits the
 * rules the index selects, runs correlation windows and suppression on event time, and hands
 * each alert to a callback.
 *
 * An engine is owned by one thread and holds a reference to an immutable ruleset. Processing
 * an event does not lock and does not log; it allocates only when a new correlation or
 * suppression group appears (groups idle for longer than their window are freed). Its state
 * can be saved per vehicle and restored into another engine (snapshots, below). */
#ifndef VSOC_ENGINE_H
#define VSOC_ENGINE_H

#include "event.h"
#include "field.h"
#include "fleet.h"
#include "rule.h"

#define VSOC_ALERT_SAMPLES 5
#define VSOC_SAMPLE_MAX 200

/* An alert, valid only during the callback. With fleet_hit set it is a fleet_count rule's
 * per-vehicle hit instead: uid identifies the hit (derived like a plain rule's alert id),
 * count is 1, time, event and sample are the matching event's. */
typedef struct vsoc_alert {
    const vsoc_rule_t *rule;
    int fleet_hit;         /* 1: a fleet_count rule's per-vehicle hit, to be counted with
                              fleet.h; not an alert by itself */
    char uid[37];          /* stable: derived from rule, group and window start */
    int64_t time_us;       /* event time of the event that raised it */
    int64_t first_us;      /* first event of the window */
    int64_t last_us;       /* last event of the window */
    uint64_t count;        /* events (plain, event_count), distinct values (value_count),
                              detections (temporal) */
    uint64_t suppressed;   /* alerts held back by suppress since the previous one */
    vsoc_str_t vin;
    const vsoc_event_t *event; /* the event that raised it */
    size_t ngroup;
    const vsoc_field_t *group_fields[8];
    vsoc_value_t group_vals[8];
    int group_present[8];
    size_t nsamples;
    vsoc_str_t samples[VSOC_ALERT_SAMPLES]; /* raw input lines, oldest first */
} vsoc_alert_t;

typedef void (*vsoc_alert_fn)(void *ctx, const vsoc_alert_t *alert);

typedef struct vsoc_engine_opts {
    vsoc_alert_fn on_alert;
    void *ctx;
    /* A monotonic clock in ns for per-rule time (sampled); NULL: time is not measured.
     * Injected so that the engine itself never reads a clock. */
    uint64_t (*clock_ns)(void);
    uint32_t regex_match_limit; /* PCRE2 match limit; 0 means 100000 */
    /* Baseline scoring of CAN frames (score.h), borrowed; NULL: no baseline fields. */
    const struct vsoc_scorer *scorer;
} vsoc_engine_opts_t;

typedef struct vsoc_rule_stats {
    uint64_t evals;       /* events that visited the rule */
    uint64_t matches;     /* events that satisfied its condition (for a fleet_count rule,
                             throttled ones included) */
    uint64_t alerts;      /* alerts emitted (never a fleet_count rule's hits: its fleet
                             alerts are counted by the caller that counts the fleet) */
    uint64_t suppressed;  /* alerts held back by suppress */
    uint64_t regex_limit; /* regex evaluations stopped by the match limit */
    uint64_t ns;          /* estimated time spent (sampled 1 in 64 events) */
} vsoc_rule_stats_t;

typedef struct vsoc_engine vsoc_engine_t;

/* Creates an engine over rs (a reference is taken). Returns NULL on failure with a message
 * in err. */
vsoc_engine_t *vsoc_engine_new(vsoc_ruleset_t *rs, const vsoc_engine_opts_t *opts, char *err,
                               size_t errlen);
void vsoc_engine_free(vsoc_engine_t *e); /* NULL does nothing */

/* Processes one event: decodes it in place, updates vehicle state, matches and correlates,
 * calling on_alert for each alert. Returns the number of alerts raised (fleet hits
 * included), or VSOC_ENOMEM when a new group could not be allocated (the event is still
 * matched).
 *
 * A fleet_count rule's match is passed to on_alert as a hit (fleet_hit 1): a vehicle's
 * first match always, later ones only once timespan/16 of event time has passed since its
 * last hit, so that a rule matching every CAN frame of a vehicle gives about 16 hits per
 * timespan. A vehicle's latest hit may therefore be up to timespan/16 older than its latest
 * match, and it may leave the fleet window that much early. Time that goes back by more
 * than the timespan (a second capture) starts the vehicle afresh. */
int vsoc_engine_process(vsoc_engine_t *e, vsoc_event_t *ev);

const vsoc_rule_stats_t *vsoc_engine_rule_stats(const vsoc_engine_t *e, size_t rule_index);
uint64_t vsoc_engine_events(const vsoc_engine_t *e);
uint64_t vsoc_engine_groups(const vsoc_engine_t *e); /* live correlation/suppress groups */

/* Engine state snapshots, for a service that restarts from a checkpoint and must then
 * raise the alerts (and alert ids) an uninterrupted run would have (docs/design.md, "Engine
 * state snapshots"). State is kept per vehicle, so a vehicle's blob may be restored into
 * whichever engine owns the vehicle after a restart, whatever the number of engines.
 *
 * A blob holds the vehicle's record (its clock, speed state, the time of its next missing-
 * message check, its baseline scoring state) and every correlation and suppression group
 * an event of the vehicle opened, each tagged with its rule's id and a fingerprint of the
 * rule's compiled definition; groups opened by events without a vehicle go under vin ""
 * (empty). It also carries the engine clocks (newest event time, next sweep). Binary,
 * little-endian, magic "VSE1" and a format version; stable across runs of one build.
 * Vins are those of the engine: cut to 63 bytes.
 *
 * Both functions must be called on the engine's own thread, between two events. */

/* Calls fn once per vehicle whose state changed since the previous successful call (every
 * vehicle on the first call, or when all is non-zero), with its vin and a self-contained
 * blob, both valid during the call only. Vehicles come in no particular order. fn returns
 * 0 to go on; any other value stops the snapshot, which returns it. Returns 0, VSOC_EINVAL
 * (fn NULL), VSOC_ENOMEM (before fn is first called), or fn's value. Only a call that
 * returns 0 marks the vehicles clean: after a failure (or when the caller could not store
 * what fn received) the next call reports them again, and calling with all=1 is also right.
 * Does not change what the engine does: alerts are the same with and without snapshots.
 * Visits only the vehicles that changed (all of them with all); allocates only when a blob
 * is larger than any before it. */
int vsoc_engine_snapshot(vsoc_engine_t *e, int all,
                         int (*fn)(void *ctx, const char *vin, size_t vinlen, const void *blob,
                                   size_t n),
                         void *ctx);

/* Restores one vehicle's blob (n bytes) into e, which must not have seen that vehicle yet:
 * returns VSOC_EINVAL otherwise. Groups whose rule is no longer in e's ruleset, or whose
 * rule changed (fingerprint differs), are dropped; so is scoring state unless e has a
 * scorer over the same baseline (fingerprint), and a shared group (a group-by without vin)
 * that e already holds from another vehicle. *dropped (may be NULL) receives how many groups
 * and scoring states were dropped. A blob that does not parse (truncated, wrong magic or
 * version, lengths or counts out of bounds or beyond the engine's limits, times out of
 * range, groups repeated or out of order, state a rule could not have produced) is refused
 * with VSOC_EPARSE and the reason, with its byte offset, in err (may be NULL); e is then
 * unchanged. Also restores the engine clocks the blob carries when they are newer than e's
 * (max_ts never goes back). Returns 0, VSOC_EPARSE, VSOC_EINVAL or VSOC_ENOMEM (e unchanged
 * but for the capacity of its tables). */
int vsoc_engine_restore(vsoc_engine_t *e, const void *blob, size_t n, size_t *dropped,
                        char *err, size_t errlen);

/* Marks a vehicle (vin, n bytes) changed, so that the next snapshot reports it: one
 * restored from elsewhere than where the snapshots go (another instance's handoff). Returns
 * 1, or 0 when the engine holds nothing of it. Call between two events on the engine's
 * thread. */
int vsoc_engine_touch(vsoc_engine_t *e, const char *vin, size_t n);

/* Forgets a vehicle (vin, n bytes): frees the groups that are its own (a group-by with
 * vin) and resets its state, as if the engine had never seen it; groups it shares with
 * other vehicles stay. A forgotten vehicle is left out of snapshots until its next event,
 * and vsoc_engine_restore may fill it. The service calls it for the vehicles of partitions
 * it gives up, whose next owner may read on. Returns how many groups were freed (0 when
 * the engine does not know the vehicle). Call between two events on the engine's thread. */
int vsoc_engine_forget(vsoc_engine_t *e, const char *vin, size_t n);

/* Serialises an alert as one OCSF Detection Finding JSON object (no newline). Returns a
 * string the caller frees with free(), or NULL on allocation failure. */
char *vsoc_alert_json(const vsoc_alert_t *a);

/* Serialises the fleet alert that hit raised in a counter (res->alert set; res from
 * vsoc_fleet_hit or the Redis counter) as an OCSF Detection Finding: uid res->uid, count the
 * vehicles, times from res->first_us to the hit's time, the hit's vehicle, event and sample
 * as evidence, and vehicle.fleet with the count and the sample of vins (docs/alerts.md).
 * Returns a string the caller frees with free(), or NULL on allocation failure. */
char *vsoc_fleet_alert_json(const vsoc_alert_t *hit, const vsoc_fleet_result_t *res);

#endif
