/* serve_worker.c: a worker thread of vsoc serve (serve.h): parses the messages of the
 * vehicles it owns, runs its own engine over them, and hands alerts back.
 *
 * The worker owns its engine and its reference to the rule set; it never touches Kafka, the
 * store or Redis, and takes no lock per event. A set swap (reload) arrives in the input ring
 * between two events with an engine over the new set that the main thread built: the worker
 * carries its vehicles' windows over into it and sends RELEASE for the old set behind every
 * alert that still points into it. */
#include "serve.h"

#include "file/reader.h"
#include "util.h"

#include <jansson.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
    /* One writer: a plain load and store, no locked add. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void serve_set_ref(serve_set_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void serve_set_unref(serve_set_t *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    vsoc_playbooks_free(s->playbooks);
    vsoc_scorer_free(s->scorer);
    vsoc_baseline_free(s->baseline);
    vsoc_ruleset_unref(s->rules);
    free(s);
}

void serve_out_push(serve_worker_t *w, const serve_out_t *o)
{
    serve_out_t *slot;
    unsigned spins = 0;
    while (!(slot = cli_ring_claim(&w->out))) {
        if (++spins < 64)
            sched_yield();
        else {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
    *slot = *o;
    cli_ring_publish(&w->out);
}

typedef struct serve_vpart {
    uint8_t used, topic;
    uint8_t vinlen;
    int32_t partition;
    char vin[SERVE_KEY_MAX];
} serve_vpart_t;

void serve_snap_free(serve_snap_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].blob);
    free(s->v);
    free(s);
}

static uint64_t vin_hash64(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static serve_vpart_t *vpart_find(serve_worker_t *w, const char *vin, size_t n)
{
    if (!w->vpcap)
        return NULL;
    size_t h = (size_t)vin_hash64(vin, n) & (w->vpcap - 1);
    while (w->vp[h].used) {
        if (w->vp[h].vinlen == n && !memcmp(w->vp[h].vin, vin, n))
            return &w->vp[h];
        h = (h + 1) & (w->vpcap - 1);
    }
    return NULL;
}

/* Remembers that vin's events come from (topic, partition). Costs a compare when events
 * come in runs of one vehicle, a probe otherwise; allocates only to grow the table. */
static void vpart_note(serve_worker_t *w, const char *vin, size_t n, uint8_t topic,
                       int32_t partition)
{
    serve_vpart_t *v = w->vplast;
    if (!v || v->vinlen != n || memcmp(v->vin, vin, n))
        v = vpart_find(w, vin, n);
    if (!v) {
        if ((w->vpcount + 1) * 2 > w->vpcap) {
            size_t ncap = w->vpcap ? w->vpcap * 2 : 64;
            serve_vpart_t *nt = calloc(ncap, sizeof *nt);
            if (!nt)
                return; /* the vehicle's snapshot then names no partition (-1) */
            for (size_t i = 0; i < w->vpcap; i++) {
                if (!w->vp[i].used)
                    continue;
                size_t h = (size_t)vin_hash64(w->vp[i].vin, w->vp[i].vinlen) & (ncap - 1);
                while (nt[h].used)
                    h = (h + 1) & (ncap - 1);
                nt[h] = w->vp[i];
            }
            free(w->vp);
            w->vp = nt;
            w->vpcap = ncap;
        }
        size_t h = (size_t)vin_hash64(vin, n) & (w->vpcap - 1);
        while (w->vp[h].used)
            h = (h + 1) & (w->vpcap - 1);
        v = &w->vp[h];
        v->used = 1;
        v->vinlen = (uint8_t)n;
        memcpy(v->vin, vin, n);
        w->vpcount++;
    }
    v->topic = topic;
    v->partition = partition;
    w->vplast = v;
}

static int snap_item(void *ctx, const char *vin, size_t vinlen, const void *blob, size_t n)
{
    serve_worker_t *w = ctx;
    serve_snap_t *s = w->pending_snap;
    if (vinlen > SERVE_KEY_MAX)
        return 0; /* cannot have come from a message key: not this service's */
    serve_vpart_t *vp = vpart_find(w, vin, vinlen);
    if (w->only) {
        size_t k = 0;
        while (vp && k < w->nonly &&
               (w->only[k].topic != vp->topic || w->only[k].partition != vp->partition))
            k++;
        if (!vp || k == w->nonly)
            return 0; /* not a vehicle of the partitions asked for */
    }
    if (vsoc_array_grow((void **)&s->v, &s->cap, s->n, sizeof *s->v) != 0)
        return VSOC_ENOMEM;
    serve_snap_item_t *it = &s->v[s->n];
    if (!(it->blob = malloc(n ? n : 1)))
        return VSOC_ENOMEM;
    memcpy(it->blob, blob, n);
    it->n = n;
    it->vinlen = vinlen;
    memcpy(it->vin, vin, vinlen);
    it->vin[vinlen] = 0;
    it->topic = vp ? vp->topic : 0;
    it->partition = vp ? vp->partition : -1;
    s->n++;
    return 0;
}

/* Snapshots the engine into a new serve_snap_t: every vehicle with all, else those that
 * changed, and only those of the partitions tp[0..n) when tp is not NULL. A snapshot that
 * fails comes back marked failed. NULL when out of memory. */
static serve_snap_t *collect(serve_worker_t *w, int all, const serve_tp_t *tp, size_t n)
{
    serve_snap_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    w->pending_snap = s;
    w->only = tp;
    w->nonly = n;
    s->failed = vsoc_engine_snapshot(w->engine, all, snap_item, w) != 0;
    w->only = NULL;
    w->nonly = 0;
    w->pending_snap = NULL;
    return s;
}

/* The state of the vehicles that changed since the last MARK. A snapshot that fails is
 * marked failed (the epoch then commits no offsets) and all vehicles are reported next
 * time. */
static serve_snap_t *snapshot(serve_worker_t *w)
{
    serve_snap_t *s = collect(w, w->snap_all, NULL, 0);
    if (s)
        w->snap_all = s->failed;
    return s;
}

static void warn(serve_worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(serve_worker_t *w, const char *fmt, ...)
{
    serve_out_t o = {.kind = SERVE_OUT_WARN};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o.reason, sizeof o.reason, fmt, ap);
    va_end(ap);
    serve_out_push(w, &o);
}

/* Every vehicle of the partitions being given up, for their next owners (a handoff). The
 * snapshot visits all vehicles and marks them all clean, which loses nothing: a handoff
 * follows a barrier, whose MARK took every change, and no event came since. */
static serve_snap_t *handoff(serve_worker_t *w, const serve_tp_t *tp, size_t n)
{
    return collect(w, 1, tp, n);
}

/* A vehicle's state from the store, or handed over by the partition's previous owner,
 * before any of its events. */
static void restore(serve_worker_t *w, const serve_in_t *m)
{
    size_t dropped = 0;
    char err[160];
    int rc = vsoc_engine_restore(w->engine, m->big, m->n, &dropped, err, sizeof err);
    /* VSOC_EINVAL: this engine holds the vehicle already, from before its partition went
     * and came back without another instance reading on (the offsets say so): the state
     * it holds is the one the store has. */
    if (rc == 0 || rc == VSOC_EINVAL)
        vpart_note(w, m->key, m->keylen, m->topic, m->partition);
    if (rc == 0 && m->dirty)
        vsoc_engine_touch(w->engine, m->key, m->keylen); /* not in this instance's store */
    if (rc != 0 && rc != VSOC_EINVAL)
        warn(w, "engine state of %.*s not restored (%s): its windows start afresh",
             (int)m->keylen, m->key, rc == VSOC_EPARSE ? err : "out of memory");
    else if (dropped)
        warn(w, "engine state of %.*s: %zu group%s of changed or removed rules dropped",
             (int)m->keylen, m->key, dropped, dropped == 1 ? "" : "s");
}

/* The vehicles of a partition given up: whoever reads on from it has their state now, so
 * what this engine holds would be stale should the partition come back. */
static void forget(serve_worker_t *w, uint8_t topic, int32_t partition)
{
    for (size_t i = 0; i < w->vpcap; i++) {
        serve_vpart_t *v = &w->vp[i];
        if (v->used && v->topic == topic && v->partition == partition)
            vsoc_engine_forget(w->engine, v->vin, v->vinlen);
    }
}

typedef struct alert_ctx {
    serve_worker_t *w;
    const serve_in_t *msg;
} alert_ctx_t;

static _Thread_local alert_ctx_t cur;

static void on_alert(void *ctx, const vsoc_alert_t *a)
{
    serve_worker_t *w = ctx;
    serve_out_t o = {.kind = SERVE_OUT_ALERT};
    o.json = vsoc_alert_json(a);
    if (!o.json) {
        bump(&w->st.no_memory, 1);
        return;
    }
    o.fleet_hit = (uint8_t)a->fleet_hit;
    o.set = w->set;
    o.rule = a->rule;
    memcpy(o.uid, a->uid, sizeof o.uid);
    o.vinlen = (uint8_t)(a->vin.n < sizeof o.vin ? a->vin.n : sizeof o.vin - 1);
    memcpy(o.vin, a->vin.p, o.vinlen);
    o.vin[o.vinlen] = 0;
    o.time_us = a->time_us;
    if (cur.msg) {
        o.topic = cur.msg->topic;
        o.partition = cur.msg->partition;
        o.offset = cur.msg->offset;
        o.produced_ms = cur.msg->ts_ms;
    }
    bump(a->fleet_hit ? &w->st.hits : &w->st.alerts, 1);
    serve_out_push(w, &o);
}

static vsoc_engine_t *engine_over(serve_worker_t *w, serve_set_t *set, char *err, size_t n)
{
    vsoc_engine_opts_t eo = {.on_alert = on_alert, .ctx = w, .clock_ns = w->clock_ns,
                             .scorer = set->scorer};
    return vsoc_engine_new(set->rules, &eo, err, n);
}

static void bad(serve_worker_t *w, const serve_in_t *m, const char *reason)
{
    bump(&w->st.malformed, 1);
    serve_out_t o = {.kind = SERVE_OUT_BAD, .topic = m->topic, .partition = m->partition,
                     .offset = m->offset};
    snprintf(o.reason, sizeof o.reason, "%s", reason);
    serve_out_push(w, &o);
}

/* One message: one event line, its key the VIN. */
static void event(serve_worker_t *w, const serve_in_t *m)
{
    const char *text = m->big ? m->big : m->data;
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    const char *reason = NULL;
    if (vsoc_parse_line(VSOC_FMT_UNKNOWN, text, m->n, &ev, NULL, &reason) != 0) {
        bad(w, m, reason ? reason : "not an event in any known format");
        return;
    }
    if (ev.kind == VSOC_EVENT_IDS) {
        /* The key routes the message to the vehicle's worker: an event that names another
         * vehicle would land beside the wrong state. */
        if (!m->keylen) {
            json_decref(ev.doc);
            bad(w, m, "no message key (or one over 63 bytes): the key names the vehicle (its "
                      "VIN)");
            return;
        }
        if (ev.vin.n != m->keylen || memcmp(ev.vin.p, m->key, m->keylen)) {
            char why[SERVE_REASON_MAX];
            snprintf(why, sizeof why, "the event's vin '%.*s' is not the message key '%.*s'",
                     (int)(ev.vin.n > 40 ? 40 : ev.vin.n), ev.vin.p, (int)m->keylen, m->key);
            json_decref(ev.doc);
            bad(w, m, why);
            return;
        }
    } else {
        if (!m->keylen) {
            bad(w, m, "no message key (or one over 63 bytes): the key names the vehicle (its "
                      "VIN)");
            return;
        }
        ev.vin.p = m->key;
        ev.vin.n = m->keylen;
        /* Untimed lines (ID#DATA lists) take the message's time. */
        if (ev.ts_us == 0 && m->ts_ms >= 0 && m->ts_ms <= INT64_MAX / 1000)
            ev.ts_us = m->ts_ms * 1000;
    }
    /* Where the event came from, as a file's name and line are for a capture: the
     * partition, and the message's position in it counting from 1 (offset + 1). */
    if (m->topic != w->src_topic || m->partition != w->src_partition) {
        w->src_topic = m->topic;
        w->src_partition = m->partition;
        int k = snprintf(w->src, sizeof w->src, "kafka:%s/%d", w->topics[m->topic],
                         (int)m->partition);
        w->srclen = k < 0 ? 0 : (size_t)k < sizeof w->src ? (size_t)k : sizeof w->src - 1;
    }
    ev.source.p = w->src;
    ev.source.n = w->srclen;
    ev.lineno = (uint64_t)m->offset + 1;
    vpart_note(w, ev.vin.p, ev.vin.n < SERVE_KEY_MAX ? ev.vin.n : SERVE_KEY_MAX, m->topic,
               m->partition);
    bump(ev.kind == VSOC_EVENT_CAN ? &w->st.events_can : &w->st.events_ids, 1);
    if (ev.ts_us > w->max_ts_us)
        w->max_ts_us = ev.ts_us;
    cur.msg = m;
    if (vsoc_engine_process(w->engine, &ev) == VSOC_ENOMEM)
        bump(&w->st.no_memory, 1);
    cur.msg = NULL;
    if (ev.kind == VSOC_EVENT_IDS)
        json_decref(ev.doc);
}

/* Copies the engine's per-rule counters for /metrics: once per MARK, under the worker's own
 * mutex, which only the metrics reader also takes. */
static void snapshot_stats(serve_worker_t *w)
{
    size_t n = vsoc_ruleset_count(w->set->rules);
    pthread_mutex_lock(&w->stats_mu);
    if (w->stats_set != w->set || w->nrule_stats != n) {
        vsoc_rule_stats_t *v = realloc(w->rule_stats, (n ? n : 1) * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&w->stats_mu);
            return;
        }
        w->rule_stats = v;
        w->nrule_stats = n;
        serve_set_ref(w->set);
        serve_set_unref(w->stats_set);
        w->stats_set = w->set;
    }
    for (size_t i = 0; i < n; i++)
        w->rule_stats[i] = *vsoc_engine_rule_stats(w->engine, i);
    pthread_mutex_unlock(&w->stats_mu);
}

static int carry(void *ctx, const char *vin, size_t vinlen, const void *blob, size_t n)
{
    (void)vin;
    (void)vinlen;
    serve_worker_t *w = ctx;
    size_t d = 0;
    /* A blob of this very process always parses; what the new rules no longer have (or
     * define differently) is dropped and counted. */
    if (vsoc_engine_restore(w->next_engine, blob, n, &d, NULL, 0) == 0)
        w->carried += d;
    return 0;
}

vsoc_engine_t *serve_worker_engine(serve_worker_t *w, serve_set_t *set, char *err,
                                   size_t errlen)
{
    return engine_over(w, set, err, errlen);
}

static void swap(serve_worker_t *w, serve_set_t *set, vsoc_engine_t *e)
{
    /* Each vehicle's windows carry over to the new engine, but those of rules that the
     * new set changed or removed (docs/serve.md, reload). */
    w->next_engine = e;
    w->carried = 0;
    if (vsoc_engine_snapshot(w->engine, 1, carry, w) != 0)
        warn(w, "reload: the open windows could not be carried over (out of memory): "
                "they start afresh");
    else if (w->carried)
        warn(w, "reload: %zu open window%s of changed or removed rules closed", w->carried,
             w->carried == 1 ? "" : "s");
    w->next_engine = NULL;
    vsoc_engine_free(w->engine);
    w->engine = e;
    w->snap_all = 1; /* the store's copy must follow the new engine */
    serve_out_t o = {.kind = SERVE_OUT_RELEASE, .set = w->set};
    w->set = set;
    serve_out_push(w, &o);
}

static void *run(void *arg)
{
    serve_worker_t *w = arg;
    /* Busy time runs from the first event found to the ring running dry (or a marker):
     * two clock reads a run of events rather than two an event. */
    uint64_t busy_since = 0;
    for (;;) {
        serve_in_t *m = cli_ring_peek(&w->in);
        if (!m || m->kind != SERVE_IN_EVENT) {
            if (busy_since) {
                bump(&w->st.busy_ns, w->clock_ns() - busy_since);
                busy_since = 0;
            }
            if (!m) {
                cli_ring_wait(&w->in, 50);
                continue;
            }
        }
        switch (m->kind) {
        case SERVE_IN_EVENT:
            if (!busy_since)
                busy_since = w->clock_ns();
            event(w, m);
            free(m->big);
            break;
        case SERVE_IN_MARK: {
            snapshot_stats(w);
            serve_out_t o = {.kind = SERVE_OUT_MARK, .epoch = m->epoch,
                             .max_ts_us = w->max_ts_us, .snap = snapshot(w)};
            serve_out_push(w, &o);
            break;
        }
        case SERVE_IN_SWAP:
            swap(w, m->set, m->engine);
            break;
        case SERVE_IN_RESTORE:
            restore(w, m);
            free(m->big);
            break;
        case SERVE_IN_FORGET:
            forget(w, m->topic, m->partition);
            break;
        case SERVE_IN_HANDOFF: {
            serve_out_t o = {.kind = SERVE_OUT_HANDOFF,
                             .snap = handoff(w, (const serve_tp_t *)(const void *)m->big, m->n)};
            serve_out_push(w, &o);
            break;
        }
        case SERVE_IN_STOP: {
            cli_ring_release(&w->in);
            serve_out_t o = {.kind = SERVE_OUT_STOP};
            serve_out_push(w, &o);
            return NULL;
        }
        }
        cli_ring_release(&w->in);
    }
}

int serve_worker_start(serve_worker_t *w, int index, serve_set_t *set,
                       uint64_t (*clock_ns)(void), char *err, size_t errlen)
{
    w->index = index;
    w->max_ts_us = INT64_MIN;
    w->clock_ns = clock_ns;
    w->src_topic = -1;
    pthread_mutex_init(&w->stats_mu, NULL);
    if (cli_ring_init(&w->in, 4096, sizeof(serve_in_t)) != 0 ||
        cli_ring_init(&w->out, 4096, sizeof(serve_out_t)) != 0) {
        snprintf(err, errlen, "worker %d: out of memory", index);
        goto fail;
    }
    w->set = set;
    serve_set_ref(set);
    if (!(w->engine = engine_over(w, set, err, errlen)))
        goto fail;
    int rc = pthread_create(&w->thread, NULL, run, w);
    if (rc != 0) {
        snprintf(err, errlen, "worker %d: cannot start a thread: %s", index, strerror(rc));
        goto fail;
    }
    return 0;
fail:
    vsoc_engine_free(w->engine);
    w->engine = NULL;
    serve_set_unref(w->set);
    w->set = NULL;
    cli_ring_fini(&w->in);
    cli_ring_fini(&w->out);
    pthread_mutex_destroy(&w->stats_mu);
    return -1;
}

void serve_worker_join(serve_worker_t *w)
{
    pthread_join(w->thread, NULL);
    vsoc_engine_free(w->engine);
    w->engine = NULL;
    serve_set_unref(w->set);
    w->set = NULL;
    pthread_mutex_lock(&w->stats_mu);
    serve_set_unref(w->stats_set);
    w->stats_set = NULL;
    free(w->rule_stats);
    w->rule_stats = NULL;
    pthread_mutex_unlock(&w->stats_mu);
    pthread_mutex_destroy(&w->stats_mu);
    free(w->vp);
    w->vp = NULL;
    cli_ring_fini(&w->in);
    cli_ring_fini(&w->out);
}
