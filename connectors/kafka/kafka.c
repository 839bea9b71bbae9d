/* kafka.c: the Kafka producer and consumer of kafka.h over librdkafka.
 *
 * Invariants:
 *   - The settings delivery rests on (idempotence, acks=all, manual commits of explicitly
 *     stored offsets, where a new group starts) are set here, after the caller's pass-through
 *     settings, and a pass-through setting naming one of them is refused rather than silently
 *     overridden.
 *   - A producer has at most one message it waits for. Each message carries a fresh id as
 *     its opaque, and the delivery report callback only records the report whose id is
 *     awaited, so a late report of a message given up on (purged after a timeout) cannot be
 *     taken for the report of a later one.
 *   - A consumer stores a message's offset only after fn returned for it, so a commit never
 *     covers a message the caller has not seen.
 *   - librdkafka callbacks that touch a handle (delivery reports, errors) run inside
 *     rd_kafka_poll on the caller's thread, so the handle needs no lock. librdkafka's own
 *     log lines still go to stderr from its threads, as librdkafka does by default. */
#include "kafka.h"

#include <librdkafka/rdkafka.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KAFKA_ERR_MAX 512
/* How long produce keeps polling for the report of a message it purged after a timeout:
 * purging is synchronous, so the report is normally queued already. */
#define PURGE_GRACE_MS 500

struct vsoc_kafka_producer {
    rd_kafka_t *rk;
    uint64_t next_id;   /* opaque id of the next message */
    uint64_t wait_id;   /* the message whose report produce waits for; 0: none */
    int done;           /* the awaited report came */
    rd_kafka_resp_err_t dr_err;
    int fatal;          /* librdkafka raised a fatal error: the handle is unusable */
    char last_error[KAFKA_ERR_MAX]; /* the last error callback's text during this produce */
};

struct vsoc_kafka_consumer {
    rd_kafka_t *rk;
    char pending[KAFKA_ERR_MAX]; /* an error not yet returned by poll (met after messages
                                    were handed over, or reported by the error callback);
                                    "" when none. The first one wins until returned. */
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

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
        seterr(err, errlen, "kafka setting '%s': %s", key, errstr);
        return -1;
    }
    return 0;
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
        seterr(err, errlen, "kafka: out of memory");
        return NULL;
    }
    for (size_t i = 0; defaults[i]; i += 2)
        if (conf_set(conf, defaults[i], defaults[i + 1], err, errlen) < 0)
            goto fail;
    for (size_t i = 0; i < nconf; i++) {
        const char *kv = conf_kv[i];
        const char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq || eq == kv) {
            seterr(err, errlen, "kafka setting '%s': expected key=value", kv ? kv : "(null)");
            goto fail;
        }
        char key[256];
        size_t klen = (size_t)(eq - kv);
        if (klen >= sizeof key) {
            seterr(err, errlen, "kafka setting '%.40s...': key too long", kv);
            goto fail;
        }
        memcpy(key, kv, klen);
        key[klen] = '\0';
        for (size_t j = 0; fixed[j]; j += 2) {
            if (strcmp(key, fixed[j]) == 0) {
                seterr(err, errlen,
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

static void producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    vsoc_kafka_producer_t *p = opaque;
    if (p->wait_id == 0 || (uint64_t)(uintptr_t)m->_private != p->wait_id)
        return; /* a message produce gave up on */
    p->done = 1;
    p->dr_err = m->err;
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
        seterr(err, errlen, "kafka: no brokers given");
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
        seterr(err, errlen, "kafka: out of memory");
        return NULL;
    }
    conf = conf_build(defaults, conf_kv, nconf, fixed, err, errlen);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, producer_dr_cb);
    rd_kafka_conf_set_error_cb(conf, producer_error_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!p->rk) {
        seterr(err, errlen, "kafka producer: %s", errstr);
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
        /* Every message was either reported or purged by produce, so nothing is left to
         * flush; purge anyway so destroy never waits on a down broker. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0);
        rd_kafka_destroy(p->rk);
    }
    free(p);
}

int vsoc_kafka_produce(vsoc_kafka_producer_t *p, const char *topic, const void *key,
                       size_t keylen, const void *val, size_t n, int timeout_ms, char *err,
                       size_t errlen)
{
    if (!p || !topic || !*topic || timeout_ms <= 0 || (!val && n > 0) || (!key && keylen > 0)) {
        seterr(err, errlen, "kafka produce: invalid argument");
        return -1;
    }
    if (p->fatal) {
        seterr(err, errlen, "kafka produce to %s: producer unusable after %s", topic,
               p->last_error);
        return -1;
    }
    uint64_t id = ++p->next_id;
    p->wait_id = id;
    p->done = 0;
    p->dr_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    p->last_error[0] = '\0';
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE((void *)val, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)id), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->wait_id = 0;
        seterr(err, errlen, "kafka produce to %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }

    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (p->done || p->fatal || left <= 0)
            break;
        /* Short slices so that a fatal error ends the wait without waiting out the rest. */
        rd_kafka_poll(p->rk, left < 100 ? (int)left : 100);
    }
    int timed_out = !p->done;
    if (timed_out) {
        /* Take the message back, so it cannot reach the broker after we have reported it
         * as not delivered (unless it was already in flight: see kafka.h). */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        int64_t grace = now_ms() + PURGE_GRACE_MS;
        while (!p->done && now_ms() < grace)
            rd_kafka_poll(p->rk, 10);
    }
    p->wait_id = 0;
    if (p->done && p->dr_err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;

    if (p->fatal)
        seterr(err, errlen, "kafka produce to %s: %s", topic, p->last_error);
    else if (timed_out)
        seterr(err, errlen, "kafka produce to %s: not delivered within %d ms%s%s", topic,
               timeout_ms, p->last_error[0] ? ": " : " (no answer from the broker)",
               p->last_error);
    else
        seterr(err, errlen, "kafka produce to %s: %s%s%s", topic, rd_kafka_err2str(p->dr_err),
               p->last_error[0] ? "; last client error: " : "", p->last_error);
    return -1;
}

/* ---- consumer --------------------------------------------------------------------------- */

/* Client-wide errors (brokers down, TLS or SASL failures) that librdkafka would otherwise
 * only log: kept for poll to return. */
static void consumer_error_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    vsoc_kafka_consumer_t *c = opaque;
    if (c->pending[0])
        return;
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        char why[KAFKA_ERR_MAX - 32];
        rd_kafka_fatal_error(rk, why, sizeof why);
        snprintf(c->pending, sizeof c->pending, "kafka consume: fatal: %s", why);
    } else {
        snprintf(c->pending, sizeof c->pending, "kafka consume: %s", reason);
    }
}

vsoc_kafka_consumer_t *vsoc_kafka_consumer_new(const char *brokers, const char *group,
                                               const char *const *topics, size_t ntopics,
                                               const char *const *conf_kv, size_t nconf,
                                               char *err, size_t errlen)
{
    if (!brokers || !*brokers || !group || !*group || !topics || ntopics == 0) {
        seterr(err, errlen, "kafka consumer: brokers, group and at least one topic are needed");
        return NULL;
    }
    const char *const defaults[] = {"client.id", "vsoc", NULL};
    /* Offsets are stored by poll after fn returned and committed only by commit: nothing
     * is marked consumed behind the caller's back. */
    const char *const fixed[] = {"bootstrap.servers", brokers, "group.id", group,
                                 "enable.auto.commit", "false", "enable.auto.offset.store",
                                 "false", "auto.offset.reset", "earliest", NULL};
    char errstr[KAFKA_ERR_MAX];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    vsoc_kafka_consumer_t *c = calloc(1, sizeof *c);
    if (!c) {
        seterr(err, errlen, "kafka: out of memory");
        return NULL;
    }
    conf = conf_build(defaults, conf_kv, nconf, fixed, err, errlen);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!c->rk) {
        seterr(err, errlen, "kafka consumer: %s", errstr);
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
        seterr(err, errlen, "kafka subscribe to %s%s: %s", topics[0], ntopics > 1 ? ",..." : "",
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
         * enable.auto.commit=false this commits nothing. */
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    free(c);
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

int vsoc_kafka_poll(vsoc_kafka_consumer_t *c, int timeout_ms,
                    void (*fn)(void *ctx, const char *topic, const void *key, size_t keylen,
                               const void *val, size_t n),
                    void *ctx, char *err, size_t errlen)
{
    if (!c || !fn) {
        seterr(err, errlen, "kafka poll: invalid argument");
        return -1;
    }
    if (c->pending[0]) {
        seterr(err, errlen, "%s", c->pending);
        c->pending[0] = '\0';
        return -1;
    }
    int count = 0;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms < 0 ? 0 : timeout_ms);
    while (m) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Only seen when the caller enabled enable.partition.eof: not an error. */
        } else if (m->err) {
            if (count == 0) {
                char buf[KAFKA_ERR_MAX];
                describe_error(m, buf, sizeof buf);
                seterr(err, errlen, "%s", buf);
                rd_kafka_message_destroy(m);
                return -1;
            }
            if (!c->pending[0])
                describe_error(m, c->pending, sizeof c->pending);
            rd_kafka_message_destroy(m);
            break;
        } else {
            fn(ctx, rd_kafka_topic_name(m->rkt), m->key, m->key_len, m->payload, m->len);
            /* Stores offset + 1 for the next commit. A partition revoked meanwhile refuses
             * the store, and its new owner gets the message again: at least once. */
            rd_kafka_offset_store(m->rkt, m->partition, m->offset);
            count++;
        }
        rd_kafka_message_destroy(m);
        if (count >= VSOC_KAFKA_BATCH)
            break;
        m = rd_kafka_consumer_poll(c->rk, 0);
    }
    if (count == 0 && c->pending[0]) {
        seterr(err, errlen, "%s", c->pending);
        c->pending[0] = '\0';
        return -1;
    }
    return count;
}

int vsoc_kafka_commit(vsoc_kafka_consumer_t *c, char *err, size_t errlen)
{
    if (!c) {
        seterr(err, errlen, "kafka commit: invalid argument");
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(c->rk, NULL, 0);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return 0;
    seterr(err, errlen, "kafka commit: %s", rd_kafka_err2str(e));
    return -1;
}
