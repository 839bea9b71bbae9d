/* serve.h: the pieces of vsoc serve that its threads share (docs/serve.md).
 *
 * The main thread consumes Kafka and hands each message to the worker that owns its vehicle
 * (a hash of the key, the VIN) through that worker's input ring; the worker parses it, runs
 * its engine and hands alerts back through its output ring; the main thread publishes them,
 * writes them to the store and runs the response side. Rings are the only channel: the
 * per-event path takes no lock. Markers travel the same rings in order, which is what lets
 * the main thread know that everything before an offset is durable (MARK), that no alert of
 * an old rule set is still in flight (RELEASE), and that a worker has stopped (STOP). */
#ifndef VSOC_CLI_SERVE_H
#define VSOC_CLI_SERVE_H

#include "engine.h"
#include "playbook.h"
#include "ring.h"
#include "score.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* A loaded set of rules, baseline and playbooks: built whole on start and on reload, then
 * shared read-only. Each worker and the main thread hold a reference. */
typedef struct serve_set {
    _Atomic int refs;
    uint64_t generation;
    vsoc_ruleset_t *rules;
    vsoc_baseline_t *baseline; /* NULL: none */
    vsoc_scorer_t *scorer;     /* NULL: none */
    vsoc_playbooks_t *playbooks;
} serve_set_t;

void serve_set_ref(serve_set_t *s);
void serve_set_unref(serve_set_t *s); /* NULL does nothing */

enum {
    SERVE_IN_EVENT = 1,
    SERVE_IN_MARK,
    SERVE_IN_SWAP,
    SERVE_IN_RESTORE,
    SERVE_IN_FORGET, /* the vehicles of (topic, partition): its partition was given up */
    SERVE_IN_HANDOFF, /* snapshot every vehicle of the partitions listed, for their next
                         owners */
    SERVE_IN_STOP
};

#define SERVE_KEY_MAX 63 /* longer keys name no vehicle (the engine keeps 63 bytes) */

/* A partition of one of the service's topics (an index into its topic names). */
typedef struct serve_tp {
    uint8_t topic;
    int32_t partition;
} serve_tp_t;
#define SERVE_INLINE 400

/* A slot of a worker's input ring (about half a kilobyte; values longer than SERVE_INLINE
 * are copied to the heap, the one allocation per message, for large JSON events). */
typedef struct serve_in {
    uint8_t kind;
    uint8_t topic;        /* index into the service's topic names */
    uint16_t keylen;
    uint8_t dirty;        /* RESTORE: state from elsewhere (a handoff), not in this
                             instance's store yet: the next MARK snapshots the vehicle */
    int32_t partition;
    int64_t offset;
    int64_t ts_ms;        /* the message's timestamp, -1 if none */
    uint64_t epoch;       /* MARK */
    serve_set_t *set;     /* SWAP: taken by the worker */
    vsoc_engine_t *engine; /* SWAP: the worker's engine over set, built by the main thread
                              (taken by the worker) */
    uint32_t n;
    char *big;            /* the value when longer than SERVE_INLINE (malloc'd, taken);
                             RESTORE: the vehicle's engine state blob (n bytes);
                             HANDOFF: n serve_tp_t (the main thread's, read only) */
    char key[SERVE_KEY_MAX];
    char data[SERVE_INLINE];
} serve_in_t;

enum {
    SERVE_OUT_ALERT = 1,
    SERVE_OUT_BAD,
    SERVE_OUT_MARK,
    SERVE_OUT_RELEASE,
    SERVE_OUT_WARN, /* a message for the log (reason) */
    SERVE_OUT_HANDOFF, /* the vehicles of the partitions asked for (snap) */
    SERVE_OUT_STOP
};

/* One vehicle's engine state at a MARK, with the partition its events come from. */
typedef struct serve_snap_item {
    uint8_t topic;
    int32_t partition;
    size_t vinlen, n;
    char vin[SERVE_KEY_MAX + 1];
    unsigned char *blob; /* n bytes (malloc'd) */
} serve_snap_item_t;

/* The vehicles whose state changed since the previous MARK (malloc'd, taken). */
typedef struct serve_snap {
    size_t n, cap;
    int failed;          /* the engine could not snapshot: the epoch must not commit */
    serve_snap_item_t *v;
} serve_snap_t;

void serve_snap_free(serve_snap_t *s); /* NULL does nothing */

#define SERVE_REASON_MAX 200

/* A slot of a worker's output ring. */
typedef struct serve_out {
    uint8_t kind;
    uint8_t topic;
    uint8_t fleet_hit;          /* ALERT: a fleet_count hit, to be counted (fleet.h) */
    int32_t partition;
    int64_t offset;             /* BAD: where the message was */
    uint64_t epoch;             /* MARK */
    int64_t max_ts_us;          /* MARK: newest event time this worker has seen */
    serve_snap_t *snap;         /* MARK: engine state of the vehicles changed; HANDOFF: of
                                   the partition's vehicles (taken) */
    serve_set_t *set;           /* ALERT: the set rule belongs to; RELEASE: to unref */
    const vsoc_rule_t *rule;
    char *json;                 /* ALERT: the OCSF JSON (malloc'd, taken) */
    char uid[37];
    uint8_t vinlen;
    char vin[SERVE_KEY_MAX + 1];
    int64_t time_us;
    int64_t produced_ms;        /* ALERT: the message's timestamp, for latency */
    char reason[SERVE_REASON_MAX];
} serve_out_t;

/* Counters a worker writes alone and other threads read (relaxed atomics: no lock). */
typedef struct serve_wstats {
    _Atomic uint64_t events_can, events_ids, malformed, no_memory, alerts, hits;
    _Atomic uint64_t busy_ns; /* time spent on events */
} serve_wstats_t;

typedef struct serve_worker {
    int index;
    pthread_t thread;
    cli_ring_t in, out;
    serve_set_t *set;           /* worker-owned reference */
    vsoc_engine_t *engine;
    serve_wstats_t st;
    /* A copy of the engine's per-rule counters, refreshed at each MARK, for /metrics. */
    pthread_mutex_t stats_mu;
    serve_set_t *stats_set;     /* the set the copy's indexes refer to (referenced) */
    vsoc_rule_stats_t *rule_stats;
    size_t nrule_stats;
    int64_t max_ts_us;
    uint64_t (*clock_ns)(void);
    char *const *topics;        /* the service's topic names (appended to, never moved) */
    int src_topic, src_partition;
    size_t srclen;
    char src[300];              /* "kafka:<topic>/<partition>" of the last message */
    /* Which partition each vehicle's events come from, for its snapshot: open addressing
     * on the vin, grown (allocating) only for a vehicle seen for the first time. */
    struct serve_vpart *vp;
    size_t vpcap, vpcount;
    struct serve_vpart *vplast;
    serve_snap_t *pending_snap; /* being filled by vsoc_engine_snapshot */
    const serve_tp_t *only;     /* pending_snap takes only the vehicles of these partitions */
    size_t nonly;               /*   (a handoff); NULL: all */
    int snap_all;               /* the last snapshot failed: report every vehicle */
    vsoc_engine_t *next_engine; /* during a swap: the engine being filled */
    size_t carried;             /* during a swap: groups dropped on the way */
} serve_worker_t;

/* Starts a worker over set (a reference is taken); clock_ns measures its busy time.
 * Returns 0, or -1 with err and nothing left to free. */
int serve_worker_start(serve_worker_t *w, int index, serve_set_t *set,
                       uint64_t (*clock_ns)(void), char *err, size_t errlen);
/* A new engine for worker w over set, for a SWAP: built by the main thread, so that a
 * reload that cannot build one for every worker fails whole and changes nothing. NULL with
 * err when out of memory. */
vsoc_engine_t *serve_worker_engine(serve_worker_t *w, serve_set_t *set, char *err,
                                   size_t errlen);
/* After it has sent STOP: joins the thread and frees everything it owns. */
void serve_worker_join(serve_worker_t *w);

/* Pushes into a worker's output ring, spinning politely while it is full: the main thread
 * drains outputs while it waits on a full input ring, so this never deadlocks. */
void serve_out_push(serve_worker_t *w, const serve_out_t *o);

#endif
