/* fleet.h: fleet_count correlation (docs/rules.md): how many distinct vehicles hit a rule
 * within a sliding window of event time, and one fleet alert each time that number reaches
 * the rule's threshold.
 *
 * The engine reports a fleet_count rule's matches per vehicle as hits (vsoc_alert_t with
 * fleet_hit set) instead of alerts, because one engine sees only the vehicles of its own
 * worker; the caller feeds every hit of every worker to one counter: this in-process one
 * (replay, a single service instance, or the service while Redis is away) or the Redis one
 * (connectors/redis), which several instances share. Both keep the same semantics, per rule:
 *
 *   - a vehicle counts while its latest hit is at most timespan older than the newest hit
 *     of the rule seen so far (newest - latest <= timespan, both event time: never the wall
 *     clock). A vehicle's latest hit is the latest time_us it was given, so a hit earlier
 *     than one already recorded for the vehicle changes nothing;
 *   - a hit older than that (time_us < newest - timespan, late beyond the window) is counted
 *     as of its own time, i.e. not at all: it records nothing and raises nothing, and *out
 *     describes the window as it stands;
 *   - otherwise the hit is recorded, vehicles that left the window are dropped, and the
 *     count is taken: when it is at or above gte, one fleet alert is raised if none was
 *     raised for the rule before, or the count was seen below gte by a hit since the last
 *     alert (it fell and reached gte again), or the rule's newest hit is at least timespan
 *     later than it was when the last alert was raised (the count stayed at gte or above for
 *     a whole timespan). A hit that changes neither the window nor the newest time therefore
 *     never raises an alert;
 *   - the alert's uid is derived from the rule id and the event time of the hit that
 *     raised it (vsoc_fleet_uid), so instances sharing Redis, and replays of one input, agree
 *     on it;
 *   - the very hit that raised the alert (same vehicle, same time) raises it again when it
 *     comes again: a service that reads its events a second time after a crash does not
 *     lose the alert; a consumer deduplicates it by uid.
 *
 * The sample of vehicles is ordered by latest hit, newest first; vehicles whose latest hits
 * are equal come in descending byte order of their vins (memcmp, a prefix before the longer
 * vin), which is the order of a Redis sorted set read backwards.
 *
 * Not thread-safe: one thread owns a counter. Memory: one entry per vehicle per fleet rule
 * with a hit within the window; an entry leaves at the rule's first hit after the vehicle
 * left the window, and its slot is reused by the next new vehicle of the rule (a counter
 * keeps as many slots per rule as the rule ever had vehicles in one window). */
#ifndef VSOC_FLEET_H
#define VSOC_FLEET_H

#include "incident.h" /* VSOC_VIN_MAX, vsoc_uuid_derive */

#include <stddef.h>
#include <stdint.h>

#define VSOC_FLEET_SAMPLES 5

typedef struct vsoc_fleet_result {
    uint64_t vehicles;   /* distinct vehicles in the window, this hit's included (unless
                            it was late beyond the window) */
    int alert;           /* 1: this hit raised the fleet alert */
    char uid[37];        /* the fleet alert's id (when alert; "" otherwise) */
    int64_t first_us;    /* the oldest latest-hit among the counted vehicles */
    size_t nvins;        /* sample: the most recently hit vehicles, newest first */
    char vins[VSOC_FLEET_SAMPLES][VSOC_VIN_MAX + 1];
} vsoc_fleet_result_t;

typedef struct vsoc_fleet vsoc_fleet_t;

vsoc_fleet_t *vsoc_fleet_new(void); /* NULL when out of memory */
void vsoc_fleet_free(vsoc_fleet_t *f); /* NULL does nothing */

/* Records that vehicle vin (1..VSOC_VIN_MAX bytes) hit rule_id at time_us, for a rule with
 * the given window and threshold, and fills *out. Returns 0, VSOC_EINVAL for an empty or
 * too long vin (or an empty rule_id or one over 65535 bytes, a timespan_us or gte below 1:
 * nothing a compiled rule gives), or VSOC_ENOMEM (nothing recorded). A rule's window and threshold are taken from
 * each call, so a reloaded rule applies its new ones from its next hit on. Does not
 * allocate for a vehicle the rule already counts. */
int vsoc_fleet_hit(vsoc_fleet_t *f, const char *rule_id, int64_t timespan_us, uint64_t gte,
                   const char *vin, size_t vinlen, int64_t time_us, vsoc_fleet_result_t *out);

/* Serialises the whole counter into a self-contained blob (binary, little-endian, magic
 * "VSF1"): every rule's newest hit, alert bookkeeping and vehicles with their latest hits,
 * rules in a stable order (by id), vehicles oldest first. *blob is malloc'd (caller frees).
 * For a service that checkpoints the counter beside its input offsets; a successful call
 * clears vsoc_fleet_changed. Returns 0 or VSOC_ENOMEM. */
int vsoc_fleet_snapshot(vsoc_fleet_t *f, void **blob, size_t *n);

/* Restores a blob of vsoc_fleet_snapshot into f, which must have no rule yet (VSOC_EINVAL
 * otherwise): f then counts exactly as the snapshotted counter did. A blob that does not
 * parse (truncated, wrong magic, lengths out of bounds, a rule twice, vehicles out of order
 * or twice, a latest hit after the rule's newest, trailing bytes) is refused with
 * VSOC_EPARSE and the reason, with its byte offset, in err (may be NULL); f is then left
 * with no rule. Returns 0, VSOC_EPARSE, VSOC_EINVAL or VSOC_ENOMEM (f left with no rule). */
int vsoc_fleet_restore(vsoc_fleet_t *f, const void *blob, size_t n, char *err, size_t errlen);

/* 1 when a hit changed the counter since the last vsoc_fleet_snapshot (or since it was
 * made), else 0: a checkpoint needs a new snapshot only then. */
int vsoc_fleet_changed(const vsoc_fleet_t *f);

/* The uid of a fleet alert of rule_id raised at time_us (what vsoc_fleet_hit and the Redis
 * counter put in out->uid): vsoc_uuid_derive over "fleet", rule_id and time_us in decimal
 * (docs/alerts.md gives the bytes). */
void vsoc_fleet_uid(const char *rule_id, int64_t time_us, char uid[37]);

#endif
