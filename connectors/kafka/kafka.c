/* kafka.c: the Kafka producer and consumer of kafka.h over librdkafka.
 *
 * Invariants:
 *   - The settings delivery rests on (idempotence, acks=all, manual commits of explicitly
 *     stored offsets, where a new group starts) are set here, after the caller's pass-through
 *     settings, and a pass-through setting naming one of them is refused rather than silently
 *     overridden.
 *   - A message's opaque tells the two produce paths apart. A synchronous message carries
 *     the address of one of the producer's own slots (sync_busy[i]), busy until its report
 *     comes; a slot is reused only after that, so a late report of a message given up on
 *     (after a timeout) cannot be taken for the report of a later one. Any other opaque is
 *     the caller's, from produce_async: a caller's pointer never points into the producer.
 *   - Every produce_async message that was taken gets exactly one report to the caller.
 *     Reports that come in while no caller's dr is being served (inside produce, or
 *     librdkafka refusing a message at once) wait in a FIFO whose capacity is reserved
 *     before a message is taken, so keeping a report never needs memory.
 *   - A consumer stores a message's offset only after fn returned for it (once per run of a
 *     partition, at the latest when poll returns), so a commit never covers a message the
 *     caller has not seen.
 *   - The consumer always handles rebalances itself (rebalance_cb), so its list of assigned
 *     partitions (parts) is the one librdkafka has, but inside on_assign, where it already
 *     holds the partitions about to be taken (dropped again if taking them fails):
 *     commit_offsets filters on it and lag sums over it. Each entry tracks the next offset
 *     to hand over.
 *   - librdkafka callbacks that touch a handle (delivery reports, errors, rebalances) run
 *     inside rd_kafka_poll / rd_kafka_consumer_poll on the caller's thread, so the handle
 *     needs no lock. librdkafka's own log lines go to stderr from its threads, or to
 *     the sink vsoc_kafka_set_log names (also from its threads). */
#include "kafka.h"

#include "util.h"

#include <librdkafka/rdkafka.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(VSOC_KAFKA_OFFSET_INVALID == RD_KAFKA_OFFSET_INVALID,
               "VSOC_KAFKA_OFFSET_INVALID is librdkafka's invalid offset");

#define KAFKA_ERR_MAX 512
/* How long produce keeps polling for the report of a message it purged after a timeout:
 * purging is synchronous, so the report is normally queued already. */
#define PURGE_GRACE_MS 500
/* Synchronous messages whose report has not come yet, at most: the one awaited plus those
 * given up on after a timeout, whose reports come within message.timeout.ms. */
#define SYNC_SLOTS 256
/* How long a rebalance waits for the group's committed offsets of the partitions it
 * assigns (they are only reported to on_assign and used for the lag). */
#define COMMITTED_TIMEOUT_MS 5000
/* Partitions reported to a rebalance callback per call, at most (a stack array). */
#define REBALANCE_CHUNK 256

typedef void (*dr_fn)(void *ctx, void *opaque, int ok, const char *errstr);

/* A delivery report kept for the caller. */
typedef struct kept_report {
    void *opaque;
    rd_kafka_resp_err_t err;
} kept_report_t;

struct vsoc_kafka_producer {
    rd_kafka_t *rk;
    /* Synchronous path. */
    unsigned char sync_busy[SYNC_SLOTS]; /* 1 while slot i's message awaits its report */
    int wait_slot;                       /* the slot produce waits for; -1: none */
    int done;                            /* the awaited report came */
    rd_kafka_resp_err_t dr_err;
    /* Asynchronous path. */
    dr_fn dr;           /* the caller's, while producer_poll or producer_flush serve it */
    void *dr_ctx;
    int served;         /* reports handed to dr during the current call */
    size_t outstanding; /* taken messages whose report the caller has not had */
    kept_report_t *kept; /* FIFO of reports not yet handed over: kept[head..nkept) */
    size_t head, nkept, capkept;
    int fatal;          /* librdkafka raised a fatal error: the handle is unusable */
    char last_error[KAFKA_ERR_MAX]; /* the last error callback's text */
};

/* An assigned partition. */
typedef struct part {
    char *topic;
    int32_t partition;
    int64_t next;  /* the next offset to hand over: after the last message handed over, else
                      the group's committed offset; RD_KAFKA_OFFSET_INVALID when unknown */
    int no_commit; /* the group had no committed offset: reading starts at the oldest */
} part_t;

struct vsoc_kafka_consumer {
    rd_kafka_t *rk;
    part_t *parts; /* the assignment, as set by rebalance_cb */
    size_t nparts, capparts;
    size_t hint;   /* index of the partition the last message came from */
    int joined;    /* an assignment came at least once */
    int closing;   /* free is leaving the group: on_assign is not called any more */
    int lost;      /* inside on_revoke for partitions lost rather than revoked */
    void (*on_assign)(void *ctx, vsoc_kafka_partition_t *p, size_t n);
    void (*on_revoke)(void *ctx, const vsoc_kafka_partition_t *p, size_t n);
    void *rb_ctx;
    char pending[KAFKA_ERR_MAX]; /* an error not yet returned by poll (met after messages
                                    were handed over, or reported by a callback); "" when
                                    none. The first one wins until returned. */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- configuration ---------------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, char *err,
                    size_t errlen)
{
    char errstr[KAFKA_ERR_MAX];
    if (rd_kafka_conf_set(conf, key, val, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        vsoc_seterr(err, errlen, "kafka setting '%s': %s", key, errstr);
        return -1;
    }
    return 0;
}

/* The process's log sink for librdkafka's own messages (vsoc_kafka_set_log). Set once at
 * start-up, before any client exists, and only read afterwards. */
static void (*log_fn)(void *ctx, int level, const char *fac, const char *msg);
static void *log_ctx;

void vsoc_kafka_set_log(void (*fn)(void *ctx, int level, const char *fac, const char *msg),
                        void *ctx)
{
    log_fn = fn;
    log_ctx = ctx;
}

/* librdkafka's log callback: runs on its internal threads (the sink must be thread-safe). */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (log_fn)
        log_fn(log_ctx, level, fac, buf);
}

/* Builds a configuration: defaults (key, value pairs, NULL-terminated; the caller may
 * override them), then the caller's "key=value" settings, each checked by librdkafka, then
 * fixed (pairs, NULL-terminated) whose keys the caller may not name. Returns NULL with err. */
static rd_kafka_conf_t *conf_build(const char *const *defaults, const char *const *conf_kv,
                                   size_t nconf, const char *const *fixed, char *err,
                                   size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        vsoc_seterr(err, errlen, "kafka: out of memory");
        return NULL;
    }
    if (log_fn)
        rd_kafka_conf_set_log_cb(conf, log_cb);
    for (size_t i = 0; defaults[i]; i += 2)
        if (conf_set(conf, defaults[i], defaults[i + 1], err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < nconf; i++) {
        const char *kv = conf_kv[i];
        const char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq || eq == kv) {
            vsoc_seterr(err, errlen, "kafka setting '%s': expected key=value", kv ? kv : "(null)");
            goto fail;
        }
        char key[256];
        size_t klen = (size_t)(eq - kv);
        if (klen >= sizeof key) {
            vsoc_seterr(err, errlen, "kafka setting '%.40s...': key too long", kv);
            goto fail;
        }
        memcpy(key, kv, klen);
        key[klen] = '\0';
        for (size_t j = 0; fixed[j]; j += 2) {
            if (strcmp(key, fixed[j]) == 0) {
                vsoc_seterr(err, errlen,
                       "kafka setting '%s': set by vsoc (%s=%s) and cannot be changed", key,
                       fixed[j], strcmp(key, "bootstrap.servers") == 0 ? "the brokers given"
                                                                       : fixed[j + 1]);
                goto fail;
            }
        }
        if (conf_set(conf, key, eq + 1, err, errlen) < 0)
            goto fail;
    }
    for (size_t i = 0; fixed[i]; i += 2)
        if (conf_set(conf, fixed[i], fixed[i + 1], err, errlen) < 0)
            goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- producer --------------------------------------------------------------------------- */

/* Makes room for cap reports in the FIFO, moving what it holds to the front. Returns 0 or
 * -1 when out of memory. */
static int kept_reserve(vsoc_kafka_producer_t *p, size_t cap)
{
    if (p->head > 0) {
        memmove(p->kept, p->kept + p->head, (p->nkept - p->head) * sizeof *p->kept);
        p->nkept -= p->head;
        p->head = 0;
    }
    if (cap <= p->capkept)
        return 0;
    size_t ncap = p->capkept ? p->capkept : 64;
    while (ncap < cap)
        ncap *= 2;
    kept_report_t *k = realloc(p->kept, ncap * sizeof *k);
    if (!k)
        return -1;
    p->kept = k;
    p->capkept = ncap;
    return 0;
}

/* Hands one report to the caller's dr. */
static void deliver(vsoc_kafka_producer_t *p, void *opaque, rd_kafka_resp_err_t e)
{
    p->outstanding--;
    p->served++;
    p->dr(p->dr_ctx, opaque, e == RD_KAFKA_RESP_ERR_NO_ERROR,
          e == RD_KAFKA_RESP_ERR_NO_ERROR ? NULL : rd_kafka_err2str(e));
}

/* Keeps a report for the next producer_poll or producer_flush. Room for it was reserved
 * when its message was taken (at most outstanding reports are ever kept). */
static void keep(vsoc_kafka_producer_t *p, void *opaque, rd_kafka_resp_err_t e)
{
    if (p->nkept == p->capkept) /* only when head > 0: compacting needs no memory */
        kept_reserve(p, p->capkept);
    if (p->nkept == p->capkept)
        return; /* cannot happen (see the invariant); dropping beats writing past the end */
    p->kept[p->nkept].opaque = opaque;
    p->kept[p->nkept].err = e;
    p->nkept++;
}

/* Hands the kept reports over, oldest first. dr may take more messages meanwhile (the
 * FIFO may grow or move, so it is indexed afresh each time). */
static void serve_kept(vsoc_kafka_producer_t *p)
{
    while (p->head < p->nkept) {
        kept_report_t r = p->kept[p->head++];
        deliver(p, r.opaque, r.err);
    }
    p->head = p->nkept = 0;
}

static void producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    vsoc_kafka_producer_t *p = opaque;
    uintptr_t o = (uintptr_t)m->_private, base = (uintptr_t)p->sync_busy;
    if (o >= base && o < base + SYNC_SLOTS) {
        int slot = (int)(o - base);
        p->sync_busy[slot] = 0;
        if (slot == p->wait_slot) {
            p->done = 1;
            p->dr_err = m->err;
        }
        return; /* else a message produce gave up on */
    }
    if (p->dr)
        deliver(p, m->_private, m->err);
    else
        keep(p, m->_private, m->err);
}

static void producer_error_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    vsoc_kafka_producer_t *p = opaque;
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        char why[KAFKA_ERR_MAX - 16]; /* leaves room for "fatal: " */
        rd_kafka_fatal_error(rk, why, sizeof why);
        p->fatal = 1;
        snprintf(p->last_error, sizeof p->last_error, "fatal: %s", why);
        return;
    }
    snprintf(p->last_error, sizeof p->last_error, "%s", reason);
}

vsoc_kafka_producer_t *vsoc_kafka_producer_new(const char *brokers, const char *const *conf_kv,
                                               size_t nconf, char *err, size_t errlen)
{
    if (!brokers || !*brokers) {
        vsoc_seterr(err, errlen, "kafka: no brokers given");
        return NULL;
    }
    /* murmur2_random is the Java client's partitioner: a VIN lands on the partition the
     * connectivity platform's own producers (most often Java) would choose for it. */
    const char *const defaults[] = {"client.id", "vsoc", "partitioner", "murmur2_random", NULL};
    const char *const fixed[] = {"bootstrap.servers", brokers, "enable.idempotence", "true",
                                 "acks", "all", NULL};
    char errstr[KAFKA_ERR_MAX];
    rd_kafka_conf_t *conf = NULL;
    vsoc_kafka_producer_t *p = calloc(1, sizeof *p);
    if (!p) {
        vsoc_seterr(err, errlen, "kafka: out of memory");
        return NULL;
    }
    p->wait_slot = -1;
    conf = conf_build(defaults, conf_kv, nconf, fixed, err, errlen);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, producer_dr_cb);
    rd_kafka_conf_set_error_cb(conf, producer_error_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!p->rk) {
        vsoc_seterr(err, errlen, "kafka producer: %s", errstr);
        goto fail;
    }
    return p; /* rd_kafka_new took conf */
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    vsoc_kafka_producer_free(p);
    return NULL;
}

void vsoc_kafka_producer_free(vsoc_kafka_producer_t *p)
{
    if (!p)
        return;
    if (p->rk) {
        /* Purged so that destroy never waits on a down broker; the reports this causes are
         * kept (room is reserved) and dropped with the producer. */
        p->dr = NULL;
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0);
        rd_kafka_destroy(p->rk);
    }
    free(p->kept);
    free(p);
}

int vsoc_kafka_producer_fatal(const vsoc_kafka_producer_t *p)
{
    return p && p->fatal;
}

int vsoc_kafka_produce(vsoc_kafka_producer_t *p, const char *topic, const void *key,
                       size_t keylen, const void *val, size_t n, int timeout_ms, char *err,
                       size_t errlen)
{
    if (!p || !topic || !*topic || timeout_ms <= 0 || (!val && n > 0) || (!key && keylen > 0)) {
        vsoc_seterr(err, errlen, "kafka produce: invalid argument");
        return -1;
    }
    if (p->fatal) {
        vsoc_seterr(err, errlen, "kafka produce to %s: producer unusable after %s", topic,
               p->last_error);
        return -1;
    }
    int slot = -1;
    for (int i = 0; i < SYNC_SLOTS && slot < 0; i++)
        if (!p->sync_busy[i])
            slot = i;
    if (slot < 0) {
        vsoc_seterr(err, errlen, "kafka produce to %s: %d earlier messages still wait for their "
                            "delivery report (%s)", topic, SYNC_SLOTS,
               p->last_error[0] ? p->last_error : "no answer from the broker");
        return -1;
    }
    p->sync_busy[slot] = 1;
    p->wait_slot = slot;
    p->done = 0;
    p->dr_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    p->last_error[0] = '\0';
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)val, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(&p->sync_busy[slot]), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->sync_busy[slot] = 0;
        p->wait_slot = -1;
        vsoc_seterr(err, errlen, "kafka produce to %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }

    /* Reports of produce_async messages that come in meanwhile are kept, not handed to a
     * dr this call may have been made from. */
    dr_fn saved_dr = p->dr;
    p->dr = NULL;
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (p->done || p->fatal || left <= 0)
            break;
        /* Short slices so that a fatal error ends the wait without waiting out the rest. */
        rd_kafka_poll(p->rk, left < 100 ? (int)left : 100);
    }
    int timed_out = !p->done;
    /* Purging takes back every queued message; with produce_async messages still inside
     * librdkafka it would fail them too, so then this one is left to its own fate. */
    if (timed_out && p->outstanding == p->nkept - p->head) {
        /* Take the message back, so it cannot reach the broker after we have reported it
         * as not delivered (unless it was already in flight: see kafka.h). */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        int64_t grace = now_ms() + PURGE_GRACE_MS;
        while (!p->done && now_ms() < grace)
            rd_kafka_poll(p->rk, 10);
    }
    p->dr = saved_dr;
    p->wait_slot = -1;
    if (p->done && p->dr_err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;

    if (p->fatal)
        vsoc_seterr(err, errlen, "kafka produce to %s: %s", topic, p->last_error);
    else if (timed_out)
        vsoc_seterr(err, errlen, "kafka produce to %s: not delivered within %d ms%s%s", topic,
               timeout_ms, p->last_error[0] ? ": " : " (no answer from the broker)",
               p->last_error);
    else
        vsoc_seterr(err, errlen, "kafka produce to %s: %s%s%s", topic, rd_kafka_err2str(p->dr_err),
               p->last_error[0] ? "; last client error: " : "", p->last_error);
    return -1;
}

int vsoc_kafka_produce_async(vsoc_kafka_producer_t *p, const char *topic, const void *key,
                             size_t keylen, const void *val, size_t n, void *opaque,
                             char *err, size_t errlen)
{
    if (!p || !topic || !*topic || (!val && n > 0) || (!key && keylen > 0)) {
        vsoc_seterr(err, errlen, "kafka produce: invalid argument");
        return -1;
    }
    if (p->fatal) {
        vsoc_seterr(err, errlen, "kafka produce to %s: producer unusable after %s", topic,
               p->last_error);
        return -1;
    }
    if (kept_reserve(p, p->outstanding + 1) < 0) {
        vsoc_seterr(err, errlen, "kafka produce to %s: out of memory", topic);
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)val, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        p->outstanding++;
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        vsoc_seterr(err, errlen, "kafka produce to %s: %s (serve delivery reports, then retry)",
               topic, rd_kafka_err2str(e));
        return -1;
    case RD_KAFKA_RESP_ERR__FATAL: {
        /* The error callback, which says why, may not have been served yet. */
        char why[KAFKA_ERR_MAX - 16];
        rd_kafka_fatal_error(p->rk, why, sizeof why);
        p->fatal = 1;
        snprintf(p->last_error, sizeof p->last_error, "fatal: %s", why);
        vsoc_seterr(err, errlen, "kafka produce to %s: %s", topic, p->last_error);
        return -1;
    }
    default:
        /* Refused for this message only (too large, unknown topic or partition): reported
         * like any other failed delivery, so the caller handles failures in one place. */
        p->outstanding++;
        keep(p, opaque, e);
        return 0;
    }
}

int vsoc_kafka_producer_poll(vsoc_kafka_producer_t *p, int timeout_ms,
                             void (*dr)(void *ctx, void *opaque, int ok, const char *errstr),
                             void *ctx)
{
    if (!p)
        return 0;
    p->dr = dr;
    p->dr_ctx = ctx;
    p->served = 0;
    if (dr)
        serve_kept(p);
    /* Without dr, the reports that come are kept for a call that has one. */
    rd_kafka_poll(p->rk, p->served || timeout_ms < 0 ? 0 : timeout_ms);
    int served = p->served;
    p->dr = NULL;
    return served;
}

int vsoc_kafka_producer_flush(vsoc_kafka_producer_t *p, int timeout_ms,
                              void (*dr)(void *ctx, void *opaque, int ok, const char *errstr),
                              void *ctx)
{
    if (!p || !dr)
        return p ? (int)p->outstanding : 0;
    p->dr = dr;
    p->dr_ctx = ctx;
    p->served = 0;
    serve_kept(p);
    int64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        int64_t left = deadline - now_ms();
        rd_kafka_poll(p->rk, p->outstanding == 0 || left <= 0 ? 0 : left < 100 ? (int)left : 100);
        if (p->outstanding == 0 || now_ms() >= deadline)
            break;
    }
    p->dr = NULL;
    return (int)p->outstanding;
}

/* ---- consumer: the assignment ----------------------------------------------------------- */

static void pending_set(vsoc_kafka_consumer_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void pending_set(vsoc_kafka_consumer_t *c, const char *fmt, ...)
{
    if (c->pending[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->pending, sizeof c->pending, fmt, ap);
    va_end(ap);
}

static part_t *part_find(vsoc_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    if (c->hint < c->nparts && c->parts[c->hint].partition == partition &&
        strcmp(c->parts[c->hint].topic, topic) == 0)
        return &c->parts[c->hint];
    for (size_t i = 0; i < c->nparts; i++) {
        if (c->parts[i].partition == partition && strcmp(c->parts[i].topic, topic) == 0) {
            c->hint = i;
            return &c->parts[i];
        }
    }
    return NULL;
}

/* Adds a partition to the assignment. Returns 0 or -1 when out of memory; a partition left
 * out is then not committed by commit_offsets, so its messages come again: at least once. */
static int part_add(vsoc_kafka_consumer_t *c, const char *topic, int32_t partition,
                    int64_t next, int no_commit)
{
    part_t *old = part_find(c, topic, partition);
    if (old) {
        old->next = next;
        old->no_commit = no_commit;
        return 0;
    }
    if (c->nparts == c->capparts) {
        size_t ncap = c->capparts ? c->capparts * 2 : 16;
        part_t *np = realloc(c->parts, ncap * sizeof *np);
        if (!np)
            return -1;
        c->parts = np;
        c->capparts = ncap;
    }
    char *t = strdup(topic);
    if (!t)
        return -1;
    c->parts[c->nparts++] = (part_t){t, partition, next, no_commit};
    return 0;
}

static void part_del(vsoc_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    part_t *pt = part_find(c, topic, partition);
    if (!pt)
        return;
    free(pt->topic);
    *pt = c->parts[--c->nparts];
}

static void parts_clear(vsoc_kafka_consumer_t *c)
{
    for (size_t i = 0; i < c->nparts; i++)
        free(c->parts[i].topic);
    c->nparts = 0;
}

/* Calls on_assign (when start is not NULL) or on_revoke with the partitions of list, in
 * groups of at most REBALANCE_CHUNK: on_assign with the offsets of list, writing the start
 * offset it sets for list's element i to start[i]; on_revoke with the invalid offset. */
static void report(vsoc_kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *list,
                   int64_t *start)
{
    int use_offsets = start != NULL;
    vsoc_kafka_partition_t buf[REBALANCE_CHUNK];
    size_t n = 0;
    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &list->elems[i];
        buf[n++] = (vsoc_kafka_partition_t){e->topic, e->partition,
                                            use_offsets ? e->offset : RD_KAFKA_OFFSET_INVALID,
                                            RD_KAFKA_OFFSET_INVALID};
        if (n == REBALANCE_CHUNK || i == list->cnt - 1) {
            if (start)
                c->on_assign(c->rb_ctx, buf, n);
            else
                c->on_revoke(c->rb_ctx, buf, n);
            for (size_t k = 0; start && k < n; k++)
                start[i + 1 - n + k] = buf[k].start;
            n = 0;
        }
    }
}

/* The group's committed offsets for the partitions being assigned: kept for lag and
 * reported to on_assign. A failed lookup leaves them unknown. */
static rd_kafka_topic_partition_list_t *assign_committed(vsoc_kafka_consumer_t *c,
                                                         const rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_topic_partition_list_t *copy = rd_kafka_topic_partition_list_copy(l);
    if (!copy) {
        /* Tracked with unknown offsets at least, so that commits for them are sent. */
        pending_set(c, "kafka rebalance: out of memory");
        for (int i = 0; i < l->cnt; i++)
            part_add(c, l->elems[i].topic, l->elems[i].partition, RD_KAFKA_OFFSET_INVALID, 0);
        return NULL;
    }
    int known = 1;
    rd_kafka_resp_err_t e = rd_kafka_committed(c->rk, copy, COMMITTED_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        pending_set(c, "kafka rebalance: reading the group's committed offsets: %s",
                    rd_kafka_err2str(e));
        known = 0;
    }
    for (int i = 0; i < copy->cnt; i++) {
        rd_kafka_topic_partition_t *t = &copy->elems[i];
        int ok = known && t->err == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (!ok)
            t->offset = VSOC_KAFKA_OFFSET_UNREAD;
        if (part_add(c, t->topic, t->partition, t->offset < 0 ? RD_KAFKA_OFFSET_INVALID
                                                                : t->offset,
                     ok && t->offset < 0) < 0)
            pending_set(c, "kafka rebalance: out of memory tracking %s [%d]", t->topic,
                        (int)t->partition);
    }
    return copy;
}

/* Asks on_assign where to start, then takes the partitions at those offsets: a start given
 * in the assignment is where the first fetch goes, so nothing before it is read (a seek
 * after the assignment would race the first fetch from the group's offset). */
static void on_assigned(vsoc_kafka_consumer_t *c, rd_kafka_topic_partition_list_t *l,
                        int cooperative)
{
    if (!cooperative)
        parts_clear(c); /* eager: the new assignment replaces the old one */
    rd_kafka_topic_partition_list_t *committed = NULL, *copy = NULL;
    int64_t *start = NULL;
    int told = 0; /* on_assign ran: a failure below must take back what it was told */
    if (!c->closing && l->cnt > 0) {
        committed = assign_committed(c, l);
        /* Everything the assignment needs is allocated before on_assign is called, so
         * that nothing after it can fail for want of memory. */
        if (committed && c->on_assign) {
            copy = rd_kafka_topic_partition_list_copy(l);
            start = malloc((size_t)l->cnt * sizeof *start);
            if (!copy || !start)
                pending_set(c, "kafka rebalance: out of memory: %d partitions resume at the "
                            "group's offsets", l->cnt);
        }
        if (copy && start) {
            for (int i = 0; i < l->cnt; i++)
                start[i] = RD_KAFKA_OFFSET_INVALID;
            report(c, committed, start);
            told = 1;
            for (int i = 0; i < l->cnt; i++) {
                if (start[i] < 0)
                    continue;
                copy->elems[i].offset = start[i];
                part_t *pt = part_find(c, l->elems[i].topic, l->elems[i].partition);
                if (pt) {
                    pt->next = start[i]; /* lag counts from where reading starts */
                    pt->no_commit = 0;
                }
            }
        }
    }
    rd_kafka_topic_partition_list_t *take = told ? copy : l;
    int ok = 1;
    if (cooperative) {
        rd_kafka_error_t *er = rd_kafka_incremental_assign(c->rk, take);
        if (er) {
            pending_set(c, "kafka rebalance: assigning %d partitions: %s", l->cnt,
                        rd_kafka_error_string(er));
            rd_kafka_error_destroy(er);
            ok = 0;
        }
    } else {
        rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, take);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            pending_set(c, "kafka rebalance: assigning %d partitions: %s", l->cnt,
                        rd_kafka_err2str(e));
            ok = 0;
        }
    }
    if (ok) {
        c->joined = 1;
    } else {
        for (int i = 0; i < l->cnt; i++)
            part_del(c, l->elems[i].topic, l->elems[i].partition);
        /* The caller was told these partitions were coming (and may have restored their
         * state): they never came, as if lost at once. */
        if (told && c->on_revoke) {
            c->lost = 1;
            report(c, l, NULL);
            c->lost = 0;
        }
    }
    free(start);
    if (copy)
        rd_kafka_topic_partition_list_destroy(copy);
    if (committed)
        rd_kafka_topic_partition_list_destroy(committed);
}

/* Reports partitions that go away to on_revoke, then gives them up. lost: they are gone
 * already, so they leave the assignment first and commits skip them. */
static void on_revoked(vsoc_kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *l,
                       int cooperative, int lost)
{
    if (lost)
        for (int i = 0; i < l->cnt; i++)
            part_del(c, l->elems[i].topic, l->elems[i].partition);
    if (c->on_revoke && l->cnt > 0) {
        c->lost = lost;
        report(c, l, NULL);
        c->lost = 0;
    }
    if (cooperative) {
        rd_kafka_error_t *er = rd_kafka_incremental_unassign(c->rk, l);
        if (er) {
            pending_set(c, "kafka rebalance: revoking %d partitions: %s", l->cnt,
                        rd_kafka_error_string(er));
            rd_kafka_error_destroy(er);
        }
    } else {
        rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, NULL);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            pending_set(c, "kafka rebalance: revoking %d partitions: %s", l->cnt,
                        rd_kafka_err2str(e));
    }
    for (int i = 0; i < l->cnt; i++)
        part_del(c, l->elems[i].topic, l->elems[i].partition);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    vsoc_kafka_consumer_t *c = opaque;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    int cooperative = proto && strcmp(proto, "COOPERATIVE") == 0;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assigned(c, l, cooperative);
    } else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoked(c, l, cooperative, rd_kafka_assignment_lost(rk));
    } else {
        /* A failed rebalance: librdkafka asks for the assignment to be cleared. What we
         * held is gone as if lost. */
        pending_set(c, "kafka rebalance: %s", rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(
            (int)c->nparts);
        if (all) {
            for (size_t i = 0; i < c->nparts; i++)
                rd_kafka_topic_partition_list_add(all, c->parts[i].topic,
                                                  c->parts[i].partition);
            parts_clear(c);
            if (c->on_revoke && all->cnt > 0) {
                c->lost = 1;
                report(c, all, NULL);
                c->lost = 0;
            }
            rd_kafka_topic_partition_list_destroy(all);
        }
        parts_clear(c);
        rd_kafka_assign(rk, NULL);
    }
}

/* ---- consumer --------------------------------------------------------------------------- */

/* Client-wide errors (brokers down, TLS or SASL failures) that librdkafka would otherwise
 * only log: kept for poll to return. */
static void consumer_error_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    vsoc_kafka_consumer_t *c = opaque;
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        char why[KAFKA_ERR_MAX - 32];
        rd_kafka_fatal_error(rk, why, sizeof why);
        pending_set(c, "kafka consume: fatal: %s", why);
    } else {
        pending_set(c, "kafka consume: %s", reason);
    }
}

vsoc_kafka_consumer_t *vsoc_kafka_consumer_new(const char *brokers, const char *group,
                                               const char *const *topics, size_t ntopics,
                                               const char *const *conf_kv, size_t nconf,
                                               char *err, size_t errlen)
{
    if (!brokers || !*brokers || !group || !*group || !topics || ntopics == 0) {
        vsoc_seterr(err, errlen, "kafka consumer: brokers, group and at least one topic are needed");
        return NULL;
    }
    /* A fetch waits at most fetch.wait.max.ms for data on the broker: with librdkafka's
     * 500 ms, an event on a quiet partition would wait up to half a second to be read.
     * queued.min.messages: librdkafka before 2.2 stops fetching a partition for a second
     * once 100,000 of its messages are queued (its issue #2879), which halves the rate at
     * which a backlog is read; the queue stays bounded by queued.max.messages.kbytes. */
    const char *const defaults[] = {"client.id", "vsoc", "fetch.wait.max.ms", "10",
                                    "queued.min.messages", "1000000", NULL};
    /* Offsets are stored by poll after fn returned and committed only by commit: nothing
     * is marked consumed behind the caller's back. poll has no use for end-of-partition
     * events: they would only wake it early. */
    const char *const fixed[] = {"bootstrap.servers", brokers, "group.id", group,
                                 "enable.auto.commit", "false", "enable.auto.offset.store",
                                 "false", "auto.offset.reset", "earliest",
                                 "enable.partition.eof", "false", NULL};
    char errstr[KAFKA_ERR_MAX];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    vsoc_kafka_consumer_t *c = calloc(1, sizeof *c);
    if (!c) {
        vsoc_seterr(err, errlen, "kafka: out of memory");
        return NULL;
    }
    conf = conf_build(defaults, conf_kv, nconf, fixed, err, errlen);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!c->rk) {
        vsoc_seterr(err, errlen, "kafka consumer: %s", errstr);
        goto fail;
    }
    conf = NULL; /* rd_kafka_new took it */
    /* Client errors (error callback) and rebalances are then served by
     * rd_kafka_consumer_poll, on the caller's thread; consumer errors come as messages. */
    rd_kafka_poll_set_consumer(c->rk);
    subs = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i < ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, subs);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        vsoc_seterr(err, errlen, "kafka subscribe to %s%s: %s", topics[0], ntopics > 1 ? ",..." : "",
               rd_kafka_err2str(e));
        goto fail;
    }
    rd_kafka_topic_partition_list_destroy(subs);
    return c;
fail:
    if (subs)
        rd_kafka_topic_partition_list_destroy(subs);
    if (conf)
        rd_kafka_conf_destroy(conf);
    vsoc_kafka_consumer_free(c);
    return NULL;
}

void vsoc_kafka_consumer_free(vsoc_kafka_consumer_t *c)
{
    if (!c)
        return;
    if (c->rk) {
        /* Leaves the group at once instead of making it wait a session timeout; with
         * enable.auto.commit=false it commits nothing itself. Its final revoke runs
         * rebalance_cb, so on_revoke can commit what it holds (see kafka.h). */
        c->closing = 1;
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    parts_clear(c);
    free(c->parts);
    free(c);
}

void vsoc_kafka_consumer_on_rebalance(
    vsoc_kafka_consumer_t *c, void (*on_assign)(void *ctx, vsoc_kafka_partition_t *p, size_t n),
    void (*on_revoke)(void *ctx, const vsoc_kafka_partition_t *p, size_t n), void *ctx)
{
    if (!c)
        return;
    c->on_assign = on_assign;
    c->on_revoke = on_revoke;
    c->rb_ctx = ctx;
}

/* Describes a consumer error message into buf. */
static void describe_error(const rd_kafka_message_t *m, char *buf, size_t len)
{
    if (m->rkt)
        snprintf(buf, len, "kafka consume from %s [%d]: %s", rd_kafka_topic_name(m->rkt),
                 (int)m->partition, rd_kafka_message_errstr(m));
    else
        snprintf(buf, len, "kafka consume: %s", rd_kafka_message_errstr(m));
}

/* Stores the offset after m for the next commit and notes it for the lag, then frees m. A
 * partition revoked meanwhile refuses the store, and its new owner gets the message again:
 * at least once. */
static void store_held(vsoc_kafka_consumer_t *c, rd_kafka_message_t *m)
{
    rd_kafka_offset_store(m->rkt, m->partition, m->offset);
    part_t *pt = part_find(c, rd_kafka_topic_name(m->rkt), m->partition);
    if (pt)
        pt->next = m->offset + 1;
    rd_kafka_message_destroy(m);
}

int vsoc_kafka_poll(vsoc_kafka_consumer_t *c, int timeout_ms,
                    void (*fn)(void *ctx, const vsoc_kafka_msg_t *m), void *ctx, char *err,
                    size_t errlen)
{
    if (!c || !fn) {
        vsoc_seterr(err, errlen, "kafka poll: invalid argument");
        return -1;
    }
    if (c->pending[0]) {
        vsoc_seterr(err, errlen, "%s", c->pending);
        c->pending[0] = '\0';
        return -1;
    }
    int count = 0;
    /* The last message handed over is held until a message of another partition comes or
     * the batch ends: its offset is stored then, once for a run of one partition rather than
     * once a message (a store takes the partition's lock). */
    rd_kafka_message_t *held = NULL;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms < 0 ? 0 : timeout_ms);
    while (m) {
        if (m->err) {
            if (count == 0) {
                char buf[KAFKA_ERR_MAX];
                describe_error(m, buf, sizeof buf);
                vsoc_seterr(err, errlen, "%s", buf);
                rd_kafka_message_destroy(m);
                return -1;
            }
            if (!c->pending[0])
                describe_error(m, c->pending, sizeof c->pending);
            rd_kafka_message_destroy(m);
            break;
        }
        if (held && (held->rkt != m->rkt || held->partition != m->partition)) {
            store_held(c, held);
            held = NULL;
        }
        vsoc_kafka_msg_t km = {
            .topic = rd_kafka_topic_name(m->rkt),
            .partition = m->partition,
            .offset = m->offset,
            .key = m->key,
            .keylen = m->key ? m->key_len : 0,
            .val = m->payload,
            .n = m->payload ? m->len : 0,
            .timestamp_ms = rd_kafka_message_timestamp(m, NULL),
        };
        fn(ctx, &km);
        if (held)
            rd_kafka_message_destroy(held);
        held = m;
        count++;
        if (count >= VSOC_KAFKA_BATCH)
            break;
        m = rd_kafka_consumer_poll(c->rk, 0);
    }
    if (held)
        store_held(c, held);
    if (count == 0 && c->pending[0]) {
        vsoc_seterr(err, errlen, "%s", c->pending);
        c->pending[0] = '\0';
        return -1;
    }
    return count;
}

int vsoc_kafka_commit(vsoc_kafka_consumer_t *c, char *err, size_t errlen)
{
    if (!c) {
        vsoc_seterr(err, errlen, "kafka commit: invalid argument");
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return 0;
    vsoc_seterr(err, errlen, "kafka commit: %s", rd_kafka_err2str(e));
    return -1;
}

/* The outcome of one commit_offsets, filled by commit_cb. */
typedef struct commit_result {
    int called;
    rd_kafka_resp_err_t err;
    char first[KAFKA_ERR_MAX]; /* the first partition that failed, described */
} commit_result_t;

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    commit_result_t *r = opaque;
    r->called = 1;
    r->err = e;
    for (int i = 0; offsets && i < offsets->cnt && !r->first[0]; i++) {
        const rd_kafka_topic_partition_t *t = &offsets->elems[i];
        if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR)
            snprintf(r->first, sizeof r->first, "%s [%d] at %lld: %s", t->topic,
                     (int)t->partition, (long long)t->offset, rd_kafka_err2str(t->err));
    }
}

int vsoc_kafka_commit_offsets(vsoc_kafka_consumer_t *c, const vsoc_kafka_partition_t *p,
                              size_t n, char *err, size_t errlen)
{
    if (!c || (!p && n > 0)) {
        vsoc_seterr(err, errlen, "kafka commit: invalid argument");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!p[i].topic || p[i].offset < 0) {
            vsoc_seterr(err, errlen, "kafka commit: %s [%d]: invalid offset %lld",
                   p[i].topic ? p[i].topic : "(null)", (int)p[i].partition,
                   (long long)p[i].offset);
            return -1;
        }
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n ? (int)n : 1);
    if (!l) {
        vsoc_seterr(err, errlen, "kafka commit: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (part_find(c, p[i].topic, p[i].partition))
            rd_kafka_topic_partition_list_add(l, p[i].topic, p[i].partition)->offset =
                p[i].offset;
    int rc = 0;
    if (l->cnt > 0) {
        /* The queue form of the commit: same wait, but the callback says which partition
         * failed. NULL queue: it is served by this call, on this thread. */
        commit_result_t r = {0};
        rd_kafka_resp_err_t e = rd_kafka_commit_queue(c->rk, l, NULL, commit_cb, &r);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR && r.called)
            e = r.err;
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR || r.first[0]) {
            if (r.first[0])
                vsoc_seterr(err, errlen, "kafka commit: %s", r.first);
            else
                vsoc_seterr(err, errlen, "kafka commit of %d partitions: %s", l->cnt,
                       rd_kafka_err2str(e));
            rc = -1;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int64_t vsoc_kafka_lag(vsoc_kafka_consumer_t *c)
{
    if (!c || !c->joined)
        return -1;
    int64_t sum = 0;
    for (size_t i = 0; i < c->nparts; i++) {
        const part_t *pt = &c->parts[i];
        int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID;
        if (rd_kafka_get_watermark_offsets(c->rk, pt->topic, pt->partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0)
            return -1;
        int64_t next = pt->next;
        /* Without a committed offset reading starts at the oldest message kept (the low
         * watermark, also cached from fetch responses); messages older than it are gone,
         * whatever was committed. */
        if (next < 0 && pt->no_commit)
            next = lo;
        else if (next >= 0 && lo >= 0 && next < lo)
            next = lo;
        if (next < 0)
            return -1;
        if (hi > next)
            sum += hi - next;
    }
    return sum;
}

size_t vsoc_kafka_assigned(vsoc_kafka_consumer_t *c)
{
    return c ? c->nparts : 0;
}

int vsoc_kafka_joined(const vsoc_kafka_consumer_t *c)
{
    return c && c->joined;
}

int vsoc_kafka_assignment_lost(vsoc_kafka_consumer_t *c)
{
    return c && c->lost;
}
