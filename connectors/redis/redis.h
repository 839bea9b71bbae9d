/* redis.h: the state that crosses vehicles when several vsoc serve instances run side by
 * side, kept in Redis (hiredis; docs/redis.md): fleet_count correlation with exactly the
 * semantics of engine/fleet.h, playbook cooldown locks, the blast-radius cap, and the engine state a partition's owner hands to the next one when a
 * rebalance moves the partition.
 *
 * Redis is optional to the service, so this client never makes the caller wait for it:
 *   - vsoc_redis_new does not connect. The handle starts down and connects on first use.
 *   - Every operation returns VSOC_EIO at once while the handle is down and its backoff
 *     (backoff_min_ms, doubling on each failed attempt up to backoff_max_ms, back to
 *     backoff_min_ms after a success) has not elapsed; once it has, the operation makes one
 *     connection attempt. One operation, connecting included, is bounded by about
 *     timeout_ms of wall time (not counting a host name's DNS lookup: use an address, or a
 *     name the resolver answers locally, where that matters).
 *   - An I/O error or a timeout drops the connection, marks the handle down, and returns
 *     VSOC_EIO; the caller falls back to its in-process state for that operation.
 *   - Each (re)connection sends AUTH (when the URL has a password), SELECT (when it names a
 *     database other than 0) and SCRIPT LOAD, pipelined in one round trip.
 *   - A failed handshake (a wrong password, an unknown database) is a failed attempt: the
 *     handle stays down and backs off.
 * An error reply to an operation's command (a key of the wrong type, OOM) returns VSOC_EIO
 * too but keeps the connection. vsoc_redis_errstr gives the last error with hiredis's or
 * the server's own message; a password never appears in it.
 *
 * Needs Redis 7.0 or later (ZADD GT, PEXPIRE NX). A closed connection does not raise SIGPIPE
 * in the caller: SIGPIPE is blocked on the calling thread during an operation, and one it
 * raised is discarded. Not thread-safe: one thread owns a handle. */
#ifndef VSOC_REDIS_H
#define VSOC_REDIS_H

#include "fleet.h"
#include "vsoc.h"

#include <stddef.h>
#include <stdint.h>

#define VSOC_REDIS_PREFIX "vsoc:"
#define VSOC_REDIS_TIMEOUT_MS 200
#define VSOC_REDIS_BACKOFF_MIN_MS 100
#define VSOC_REDIS_BACKOFF_MAX_MS 5000

typedef struct vsoc_redis_opts {
    /* "redis://[[user]:password@]host[:port][/db]" (host a name, an IPv4 address or an
     * [IPv6] address; port 6379 and db 0 by default; user and password may be
     * %-encoded) or "unix:///path/to.sock[?db=N][&password=P]". Required. */
    const char *url;
    const char *prefix;  /* prepended to every key; NULL: VSOC_REDIS_PREFIX */
    int timeout_ms;      /* bound of one operation, connecting included; 0: default */
    int backoff_min_ms;  /* first wait after a failure; 0: default */
    int backoff_max_ms;  /* longest wait between attempts; 0: default */
} vsoc_redis_opts_t;

/* Counters for metrics; they only grow. */
typedef struct vsoc_redis_stats {
    uint64_t commands;   /* commands written to the server, handshakes included */
    uint64_t errors;     /* operations that returned VSOC_EIO (while down too) */
    uint64_t attempts;   /* connection attempts, failed ones included */
    uint64_t reconnects; /* successful connections after the first one */
} vsoc_redis_stats_t;

typedef struct vsoc_redis vsoc_redis_t;

/* Creates a handle for o->url (copied; o is borrowed). Does not connect: an unreachable
 * server is no error here. Returns NULL with the reason in err: a malformed URL (with the
 * column of the problem, never the password), an option out of range (negative times,
 * backoff_max_ms below backoff_min_ms), or out of memory. */
vsoc_redis_t *vsoc_redis_new(const vsoc_redis_opts_t *o, char *err, size_t errlen);
void vsoc_redis_free(vsoc_redis_t *r); /* closes the connection; NULL does nothing */

/* 1 while connected and the last operation did not lose the connection, else 0. */
int vsoc_redis_up(const vsoc_redis_t *r);
/* The last error ("" when none yet), valid until the next call on r. It is not cleared
 * by a later success: use the return codes to learn whether an operation failed. */
const char *vsoc_redis_errstr(const vsoc_redis_t *r);
void vsoc_redis_stats(const vsoc_redis_t *r, vsoc_redis_stats_t *out);

/* Sends PING (connecting first when down and the backoff has elapsed). Returns 0 or
 * VSOC_EIO. For a health check, or to surface a wrong password at start-up. */
int vsoc_redis_ping(vsoc_redis_t *r);

/* One fleet_count hit: vehicle vin (vinlen bytes, 1..VSOC_VIN_MAX) hit rule rule_id
 * (1..VSOC_ID_MAX bytes) at event time time_us, for a rule with window timespan_us and
 * threshold gte (>= 1). time_us (Unix microseconds) and timespan_us (> 0) must be below
 * 2^53 (the year 2255), the integers Redis scores hold exactly; time_us not negative. */
typedef struct vsoc_redis_fleet_hit {
    const char *rule_id;
    int64_t timespan_us;
    uint64_t gte;
    const char *vin;
    size_t vinlen;
    int64_t time_us;
} vsoc_redis_fleet_hit_t;

/* Counts n hits (n >= 1; may name different rules) in Redis with the semantics of
 * vsoc_fleet_hit (engine/fleet.h), shared by every handle on the same server and prefix:
 * out[i] is what vsoc_fleet_hit would give for hits[i] had one counter seen all hits of
 * every instance in the order Redis executed them. Each hit is one atomic script call; the
 * n calls go out pipelined (all written, then all replies read), one round trip. An alert's
 * out[i].uid is vsoc_fleet_uid(rule_id, time_us), so the instances agree on it.
 * Returns 0 with out[0..n-1] filled; VSOC_EINVAL for an invalid hit and VSOC_ENOMEM (both
 * with nothing sent); VSOC_EIO when down or on an I/O or server error. After VSOC_EIO out
 * is unspecified and some of the hits may have been counted in Redis. */
int vsoc_redis_fleet_hits(vsoc_redis_t *r, const vsoc_redis_fleet_hit_t *hits, size_t n,
                          vsoc_fleet_result_t *out);

/* Takes the cooldown lock key for ttl_ms (> 0), shared by every instance: SET
 * <prefix>cooldown:<key> <owner> NX PX ttl_ms GET. *acquired is 1 when this call took it,
 * or when it is held by the same owner already (a playbook run of one id, asked again after
 * a service read its events a second time: taking the lock is idempotent per owner), 0 when
 * another owner holds it. owner NULL: anonymous, never the same as anyone. Returns 0,
 * VSOC_EINVAL (empty key or owner, ttl_ms <= 0), VSOC_ENOMEM, or VSOC_EIO (*acquired
 * untouched; the lock may or may not be taken). */
int vsoc_redis_cooldown(vsoc_redis_t *r, const char *key, int64_t ttl_ms, const char *owner,
                        int *acquired);

/* The blast-radius cap, shared by every instance: admits member (a VIN) into the
 * fixed-window set key of at most max members (0: no limit), checked and added in one step
 * (a Lua script) so that instances cannot both take the last place. A member already in
 * the set is admitted again without counting twice, so a service that reads its events a
 * second time after a crash, or a playbook that runs on the same vehicle again, does not
 * use up places; a member refused is not added. The window starts at the member that
 * creates <prefix>vset:<key> and lasts window_ms (> 0) of wall time. *admitted is 1 or 0;
 * *count the members counting this one (when refused: those in the set plus this one).
 * Returns 0, VSOC_EINVAL (empty key or member, window_ms <= 0), VSOC_ENOMEM, or VSOC_EIO
 * (nothing set; the member may or may not have been added). */
int vsoc_redis_window_admit(vsoc_redis_t *r, const char *key, const char *member,
                            int64_t window_ms, uint64_t max, int64_t *count, int *admitted);

/* One vehicle's engine state, for a handoff (vin: 1 to 63 bytes, as the engine keeps it). */
typedef struct vsoc_redis_blob {
    const char *vin;
    size_t vinlen;
    const void *blob;
    size_t n;
} vsoc_redis_blob_t;

/* Hands a partition's engine state to its next owner: replaces <prefix>handoff:<key> (a
 * hash) with field "offset" (the offset the state is as of: the next message to read)
 * and one field "v:<vin>" per vehicle holding its blob, expiring after ttl_ms (> 0); all in
 * one MULTI/EXEC, so a reader sees the old hash or the new one, never a mix. n may be 0
 * (the partition's vehicles have no state: the hash then says so at that offset). A handoff
 * can be megabytes: it gets timeout_ms (0: the handle's timeout) rather than the handle's
 * timeout for one command. Returns 0, VSOC_EINVAL, VSOC_ENOMEM or VSOC_EIO (the
 * transaction may or may not have run: a timeout can come after Redis applied it). */
int vsoc_redis_handoff_put(vsoc_redis_t *r, const char *key, int64_t offset,
                           const vsoc_redis_blob_t *v, size_t n, int64_t ttl_ms,
                           int timeout_ms);

/* Reads the handoff under key: *offset is its offset (-1 when there is none, or it is not
 * a handoff this client wrote), then fn is called once per vehicle with its vin and blob
 * (valid during the call only) when want_offset is that offset; nothing is called
 * otherwise. fn returns 0 to go on; any other value stops and is returned. timeout_ms as
 * for vsoc_redis_handoff_put. Returns 0, VSOC_EINVAL, VSOC_ENOMEM, VSOC_EIO, or fn's
 * value. */
int vsoc_redis_handoff_get(vsoc_redis_t *r, const char *key, int64_t want_offset,
                           int64_t *offset,
                           int (*fn)(void *ctx, const char *vin, size_t vinlen,
                                     const void *blob, size_t n),
                           void *ctx, int timeout_ms);

#endif
