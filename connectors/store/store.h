/* store.h: the SQLite store (docs/store.md): alerts, incidents and their alerts, playbook
 * runs, commands, approvals, acks, notifications, and an append-only audit log in which
 * each row carries the hash of the previous one.
 *
 * One database file in WAL mode, schema versioned by PRAGMA user_version and migrated
 * forward on open. Every write that changes a record also appends its audit row in the same
 * transaction. Records are keyed by content-derived ids, so writing the same alert, incident,
 * run or command twice changes nothing the second time (and adds no audit row). Times are
 * given by the caller (event time in replay, the wall clock for people and services): the
 * store never reads a clock. A handle is used by one thread; errors carry SQLite's message
 * on the handle (vsoc_store_errmsg). */
#ifndef VSOC_STORE_H
#define VSOC_STORE_H

#include "ack.h"
#include "incident.h"
#include "respond.h"

#include <stdint.h>

#define VSOC_STORE_SCHEMA_VERSION 3

typedef struct vsoc_store vsoc_store_t;

/* Opens (creating when missing) and migrates path; ":memory:" gives a private database.
 * Returns NULL with the file and SQLite's message in err. A database whose schema is newer
 * than this program is refused. */
vsoc_store_t *vsoc_store_open(const char *path, char *err, size_t errlen);
/* The same, but refuses to create the file: for commands that read an existing store. */
vsoc_store_t *vsoc_store_open_existing(const char *path, char *err, size_t errlen);
void vsoc_store_close(vsoc_store_t *s); /* NULL does nothing */
const char *vsoc_store_errmsg(const vsoc_store_t *s);

/* Groups writes into one transaction (many alerts per commit is much faster). Nested calls
 * are counted; the outermost commit writes. Returns 0 or VSOC_EIO. */
int vsoc_store_begin(vsoc_store_t *s);
int vsoc_store_commit(vsoc_store_t *s);
/* Ends a vsoc_store_begin without keeping anything: every write since the outermost begin
 * is undone when the outermost level ends (an enclosing vsoc_store_commit then returns
 * VSOC_EIO, and writes in between are refused). A failed call inside begin/commit undoes
 * only its own writes. Returns 0, VSOC_EINVAL (no begin) or VSOC_EIO. */
int vsoc_store_rollback(vsoc_store_t *s);

/* Stores an alert (its OCSF JSON as given) with an "alert.raised" audit row. Returns 1 when
 * new, 0 when that uid was stored already (nothing changes), VSOC_EINVAL (no uid) or
 * VSOC_EIO. */
int vsoc_store_put_alert(vsoc_store_t *s, const char *uid, const char *rule_id,
                         vsoc_level_t level, const char *vin, int64_t time_us,
                         const char *json);

/* Inserts or updates an incident and links alert_uid (may be NULL; stored before with
 * vsoc_store_put_alert, a foreign key) to it. The audit row is event ("incident.opened",
 * "incident.updated", "incident.contained", ...) by actor, written only when the row or
 * the link changed. Returns 0, VSOC_EINVAL (an invalid state) or VSOC_EIO. */
int vsoc_store_put_incident(vsoc_store_t *s, const vsoc_incident_t *inc, const char *alert_uid,
                            const char *event, const char *actor, int64_t time_us);

/* Records a responder transition: upserts the run, command (with its envelope once signed;
 * a NULL envelope keeps the stored one) or notification, moves a vehicle's last seq forward,
 * appends the audit row (actor, event, detail and time of c; subject the record's id) unless
 * nothing changed. Returns 0, VSOC_EINVAL (the record missing or invalid) or VSOC_EIO. */
int vsoc_store_apply_change(vsoc_store_t *s, const vsoc_change_t *c);

/* Records a person's decision on a command ("approve" or "reject") with an audit row.
 * Returns 0 or VSOC_EIO. */
int vsoc_store_add_approval(vsoc_store_t *s, const char *cmd_id, const char *by,
                            const char *decision, const char *why, int64_t time_us);
/* Approvals with row id > after, oldest first, for a service that polls for decisions made
 * by `vsoc commands approve` in another process. fn returns non-zero to stop. */
int vsoc_store_each_approval(vsoc_store_t *s, int64_t after,
                             int (*fn)(void *ctx, int64_t rowid, const char *cmd_id,
                                       const char *by, const char *decision, const char *why,
                                       int64_t time_us),
                             void *ctx);

/* Stores an ack as received (raw text) with the verdict of its check ("ok" or a
 * vsoc_envelope_reason_name) and an audit row. Returns 0 or VSOC_EIO. */
int vsoc_store_put_ack(vsoc_store_t *s, const vsoc_ack_t *ack, const char *raw,
                       const char *verdict, int64_t time_us);

/* Appends one audit row of its own (e.g. "replay.started"). Returns 0 or VSOC_EIO. */
int vsoc_store_audit(vsoc_store_t *s, const char *actor, const char *event,
                     const char *subject, const char *detail, int64_t time_us);

/* ---- reading back ---------------------------------------------------------------------- */

/* Each callback returns non-zero to stop; the each_ functions return 0, VSOC_EIO, or the
 * callback's non-zero value. Pointers are valid during the callback only. */
int vsoc_store_each_run(vsoc_store_t *s, int (*fn)(void *ctx, const vsoc_run_t *run),
                        void *ctx);
/* open_only: commands not in a final state (pending_approval, queued, sent, deferred,
 * escalated, and acked quarantines that a release may still follow). */
int vsoc_store_each_command(vsoc_store_t *s, int open_only,
                            int (*fn)(void *ctx, const vsoc_command_t *cmd), void *ctx);
int vsoc_store_each_seq(vsoc_store_t *s,
                        int (*fn)(void *ctx, const char *vin, uint64_t last_seq), void *ctx);
/* The newest incident of each vehicle (to restore the grouper). */
int vsoc_store_each_latest_incident(vsoc_store_t *s,
                                    int (*fn)(void *ctx, const vsoc_incident_t *inc),
                                    void *ctx);
/* Incidents newest first; state < 0 means any; vin NULL means any. */
int vsoc_store_each_incident(vsoc_store_t *s, int state, const char *vin,
                             int (*fn)(void *ctx, const vsoc_incident_t *inc), void *ctx);
/* An incident's alerts in time order (the stored OCSF JSON). */
int vsoc_store_each_incident_alert(vsoc_store_t *s, const char *incident_id,
                                   int (*fn)(void *ctx, const char *uid, const char *rule_id,
                                             vsoc_level_t level, int64_t time_us,
                                             const char *json),
                                   void *ctx);
/* Looks a record up by id (a unique prefix of at least 8 characters is accepted, as people
 * copy ids from listings; case does not matter). Returns 0, VSOC_ENOENT, VSOC_EINVAL
 * (an ambiguous prefix, or one shorter than 8 characters) or VSOC_EIO, with the message on
 * the handle. A command's envelope is copied into *envelope (caller frees; NULL before it
 * was signed); envelope may be NULL. */
int vsoc_store_get_incident(vsoc_store_t *s, const char *id, vsoc_incident_t *out);
int vsoc_store_get_command(vsoc_store_t *s, const char *cmd_id, vsoc_command_t *out,
                           char **envelope);
/* Changes an incident's state by a person (checked with vsoc_incident_transition_ok), with
 * an audit row. Returns 0, VSOC_ENOENT, VSOC_EINVAL (not allowed: message on the handle) or
 * VSOC_EIO. */
int vsoc_store_set_incident_state(vsoc_store_t *s, const char *id, vsoc_incident_state_t to,
                                  const char *by, const char *why, int64_t time_us);
/* Each audit row oldest first (for `vsoc audit show`). */
int vsoc_store_each_audit(vsoc_store_t *s,
                          int (*fn)(void *ctx, int64_t seq, int64_t time_us, const char *actor,
                                    const char *event, const char *subject,
                                    const char *detail, const char *hash),
                          void *ctx);

/* ---- audit verification ---------------------------------------------------------------- */

typedef struct vsoc_audit_report {
    int64_t rows;            /* rows checked */
    int64_t first_bad;       /* seq of the first row that does not verify; 0: all good */
    char problem[256];       /* "row 12 was changed: ...", "row 40 was deleted (...)", ... */
    char head[65];           /* when intact: hex hash of the last row (64 zeros for an empty
                                log); record it elsewhere to detect truncation later */
} vsoc_audit_report_t;

/* Recomputes the chain. Returns 0 when intact, 1 when a row was changed, inserted or
 * deleted (first_bad and problem say where; for a deletion first_bad is the first missing
 * seq), VSOC_EINVAL when expect_head is not 64 hex digits, or VSOC_EIO. expect_head (hex,
 * may be NULL) also checks that the chain still ends at that hash or continues past it: a
 * log cut at its tail otherwise verifies. */
int vsoc_store_audit_verify(vsoc_store_t *s, const char *expect_head, vsoc_audit_report_t *r);

/* The hash of one audit row (hex, lower case) over the byte layout of docs/store.md;
 * NULL strings count as "". Returns 0, VSOC_ENOMEM or VSOC_EIO. Thread-safe. */
int vsoc_store_audit_hash(int64_t seq, int64_t time_us, const char *actor, const char *event,
                          const char *subject, const char *detail, const char *prev_hash,
                          char out[65]);

/* ---- the service's checkpoint (docs/serve.md) ---------------------------------------------
 * Where each partition was read up to, and each vehicle's engine state as of then. Written
 * inside the caller's transaction, with what those events produced, so that after a crash
 * the service resumes from a point where the store and the engines agree. */

/* Records that partition of topic was read up to next_offset (the next message to read). */
int vsoc_store_put_offset(vsoc_store_t *s, const char *topic, int32_t partition,
                          int64_t next_offset);
/* Calls fn for every recorded partition (in topic, partition order) until it returns
 * non-zero (returned). Returns 0 or VSOC_EIO. */
int vsoc_store_each_offset(vsoc_store_t *s,
                           int (*fn)(void *ctx, const char *topic, int32_t partition,
                                     int64_t next_offset),
                           void *ctx);
/* Keeps the engine state (an opaque blob, vsoc_engine_snapshot) of the vehicle vin (bytes,
 * not NUL-terminated) read from partition of topic, replacing what was kept for it. */
int vsoc_store_put_engine_state(vsoc_store_t *s, const char *vin, size_t vinlen,
                                const char *topic, int32_t partition, const void *state,
                                size_t n, int64_t time_us);
/* Calls fn for each vehicle kept for partition of topic (in vin order; pointers valid
 * during the call) until it returns non-zero (returned). Returns 0 or VSOC_EIO. */
int vsoc_store_each_engine_state(vsoc_store_t *s, const char *topic, int32_t partition,
                                 int (*fn)(void *ctx, const char *vin, size_t vinlen,
                                           const void *state, size_t n),
                                 void *ctx);
/* Forgets the vehicles kept for partition of topic (another instance read on from it). */
int vsoc_store_drop_engine_state(vsoc_store_t *s, const char *topic, int32_t partition);
/* Keeps the service's state named name (an opaque blob: "fleet", vsoc_fleet_snapshot),
 * replacing what was kept under that name. */
int vsoc_store_put_service_state(vsoc_store_t *s, const char *name, const void *state,
                                 size_t n, int64_t time_us);
/* Calls fn with the state kept under name (valid during the call) when there is one, and
 * returns what fn returned; 0 when none is kept; VSOC_EIO. */
int vsoc_store_get_service_state(vsoc_store_t *s, const char *name,
                                 int (*fn)(void *ctx, const void *state, size_t n), void *ctx);

#endif
