/* kafka.h: a small Kafka client (librdkafka) for handing vehicle commands to a connectivity
 * platform and reading its acks back (docs/kafka.md).
 *
 * The producer is idempotent with acks=all and waits for each message's delivery report:
 * commands are rare, and the responder must know one is on the broker before it records it as
 * sent. The consumer belongs to a consumer group, never commits by itself, and commits only
 * the offsets of messages it has handed to the caller, when the caller asks (after it made
 * their effects durable): at-least-once delivery.
 *
 * Extra librdkafka settings are passed through as "key=value" strings (TLS, SASL, timeouts);
 * the settings these guarantees rest on cannot be overridden. Errors carry librdkafka's own
 * message in err. A handle is used by one thread; callbacks run on that thread. */
#ifndef VSOC_KAFKA_H
#define VSOC_KAFKA_H

#include <stddef.h>

/* Messages handed to the callback by one vsoc_kafka_poll call at most. */
#define VSOC_KAFKA_BATCH 100

typedef struct vsoc_kafka_producer vsoc_kafka_producer_t;
typedef struct vsoc_kafka_consumer vsoc_kafka_consumer_t;

/* Creates an idempotent producer (enable.idempotence=true, acks=all) for brokers
 * ("host:port,..."). conf_kv holds nconf extra "key=value" librdkafka settings (may be NULL
 * when nconf is 0), e.g. security.protocol=ssl, ssl.ca.location=...; bootstrap.servers,
 * enable.idempotence and acks are refused. The broker is contacted lazily: an unreachable
 * one shows as a failing vsoc_kafka_produce. Returns NULL with the setting and librdkafka's
 * message in err. */
vsoc_kafka_producer_t *vsoc_kafka_producer_new(const char *brokers, const char *const *conf_kv,
                                               size_t nconf, char *err, size_t errlen);
void vsoc_kafka_producer_free(vsoc_kafka_producer_t *p); /* NULL does nothing */

/* Produces one message (key may be NULL with keylen 0; bytes are copied) and waits up to
 * timeout_ms (> 0) for its delivery report. Returns 0 once the broker has it (written to all
 * in-sync replicas), or -1 with the reason in err. After a timeout the message is purged
 * from the producer; if it was in flight it may still have reached the broker, so a caller
 * that retries may deliver it twice. */
int vsoc_kafka_produce(vsoc_kafka_producer_t *p, const char *topic, const void *key,
                       size_t keylen, const void *val, size_t n, int timeout_ms, char *err,
                       size_t errlen);

/* Creates a consumer in group subscribed to ntopics topics, with enable.auto.commit=false
 * and auto.offset.reset=earliest (a new group starts from the oldest message). conf_kv as for
 * the producer; bootstrap.servers, group.id, enable.auto.commit, enable.auto.offset.store
 * and auto.offset.reset are refused. Returns NULL with the reason in err. */
vsoc_kafka_consumer_t *vsoc_kafka_consumer_new(const char *brokers, const char *group,
                                               const char *const *topics, size_t ntopics,
                                               const char *const *conf_kv, size_t nconf,
                                               char *err, size_t errlen);
/* Leaves the group (uncommitted offsets are not committed) and frees; NULL does nothing. */
void vsoc_kafka_consumer_free(vsoc_kafka_consumer_t *c);

/* Waits up to timeout_ms for messages and hands up to VSOC_KAFKA_BATCH of them to fn, in
 * order within each partition; fn's pointers are valid during its call only. Returns the
 * number handed over (0 when none came in time), or -1 with the reason in err when the
 * client reports an error (a broker down, an unknown topic, a failed rebalance); the
 * consumer keeps retrying on its own, and calling poll again is right unless the error says
 * it is fatal. A call that returns -1 has called fn for no message: an error met after
 * messages were handed over is returned by the next call. */
int vsoc_kafka_poll(vsoc_kafka_consumer_t *c, int timeout_ms,
                    void (*fn)(void *ctx, const char *topic, const void *key, size_t keylen,
                               const void *val, size_t n),
                    void *ctx, char *err, size_t errlen);

/* Commits, synchronously, the offsets of every message handed to fn so far. Call it only
 * after their effects are durable: a crash before the commit redelivers them. Returns 0
 * (also when there is nothing to commit) or -1 with err. */
int vsoc_kafka_commit(vsoc_kafka_consumer_t *c, char *err, size_t errlen);

#endif
