/* kafka.h: a small Kafka client (librdkafka) for the service and the responder
 * (docs/kafka.md): vehicle events in through a consumer group, alerts and commands out.
 *
 * The producer is idempotent with acks=all. It has two paths over one handle: produce waits
 * for one message's delivery report (commands: rare, and the responder must know one is on
 * the broker before it records it as sent); produce_async queues a message and reports its
 * delivery later through producer_poll or producer_flush (alerts: many, and waiting for each
 * would cap the rate at one per round trip). The reports of one path never reach the other.
 *
 * The consumer belongs to a consumer group and never commits by itself. It commits either
 * every message it has handed to the caller (commit) or exactly the offsets the caller names
 * (commit_offsets), when the caller asks, after it made their effects durable: at-least-once
 * delivery. Rebalances are reported to the caller before partitions are given up, so that it
 * can drain and commit what it holds for them first.
 *
 * Extra librdkafka settings are passed through as "key=value" strings (TLS, SASL, timeouts);
 * the settings these guarantees rest on cannot be overridden. Errors carry librdkafka's own
 * message in err. A handle is used by one thread; callbacks run on that thread, from inside
 * the call that serves them (poll, producer_poll, producer_flush). */
#ifndef VSOC_KAFKA_H
#define VSOC_KAFKA_H

#include <stddef.h>
#include <stdint.h>

/* Messages handed to the callback by one vsoc_kafka_poll call at most. */
#define VSOC_KAFKA_BATCH 100

/* The offset of a partition whose position is not known (librdkafka's
 * RD_KAFKA_OFFSET_INVALID). */
#define VSOC_KAFKA_OFFSET_INVALID (-1001)
/* on_assign's offset when the group's committed offset could not be read: unknown, which
 * is not the same as "none" (a caller with its own checkpoint must not trust either). */
#define VSOC_KAFKA_OFFSET_UNREAD (-1002)

typedef struct vsoc_kafka_producer vsoc_kafka_producer_t;
typedef struct vsoc_kafka_consumer vsoc_kafka_consumer_t;

/* One consumed message, as handed to vsoc_kafka_poll's callback. Every pointer is valid
 * during the callback only; key and val are not NUL-terminated (key is NULL with keylen 0
 * when the message has none). */
typedef struct vsoc_kafka_msg {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t keylen;
    const void *val;
    size_t n;
    int64_t timestamp_ms; /* the message's timestamp (CreateTime or LogAppendTime), -1 if none */
} vsoc_kafka_msg_t;

/* A partition of a topic and an offset in it (what offset means is said where it is used). */
typedef struct vsoc_kafka_partition {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t start; /* on_assign only: where reading starts (see vsoc_kafka_consumer_on_rebalance) */
} vsoc_kafka_partition_t;

/* Sends librdkafka's own log messages (syslog levels: 3 error, 4 warning, 6 info, 7 debug;
 * fac is its facility, e.g. "FAIL") to fn instead of stderr, for every client created
 * after the call: the service writes them as JSON log lines. fn runs on librdkafka's
 * threads and must be thread-safe. NULL restores stderr for clients created later. Call it
 * before creating clients; it is not synchronised with their creation. */
void vsoc_kafka_set_log(void (*fn)(void *ctx, int level, const char *fac, const char *msg),
                        void *ctx);

/* ---- producer ---------------------------------------------------------------------------- */

/* Creates an idempotent producer (enable.idempotence=true, acks=all) for brokers
 * ("host:port,..."). conf_kv holds nconf extra "key=value" librdkafka settings (may be NULL
 * when nconf is 0), e.g. security.protocol=ssl, ssl.ca.location=...; bootstrap.servers,
 * enable.idempotence and acks are refused. The broker is contacted lazily: an unreachable
 * one shows as a failing vsoc_kafka_produce or a failed delivery report. Returns NULL with
 * the setting and librdkafka's message in err. */
vsoc_kafka_producer_t *vsoc_kafka_producer_new(const char *brokers, const char *const *conf_kv,
                                               size_t nconf, char *err, size_t errlen);
/* Frees the producer; NULL does nothing. Messages of produce_async not yet reported are
 * dropped without a report (call vsoc_kafka_producer_flush first to deliver them). */
void vsoc_kafka_producer_free(vsoc_kafka_producer_t *p);

/* Produces one message (key may be NULL with keylen 0; bytes are copied) and waits up to
 * timeout_ms (> 0) for its delivery report. Returns 0 once the broker has it (written to all
 * in-sync replicas), or -1 with the reason in err. After a timeout the message is purged
 * from the producer when no produce_async message is outstanding (purging would fail those
 * too); either way, if it was in flight it may still reach the broker, so a caller that
 * retries may deliver it twice. Reports of produce_async messages that come in while this
 * waits are kept for the next producer_poll or producer_flush. */
int vsoc_kafka_produce(vsoc_kafka_producer_t *p, const char *topic, const void *key,
                       size_t keylen, const void *val, size_t n, int timeout_ms, char *err,
                       size_t errlen);

/* Queues one message without waiting (key may be NULL with keylen 0; the bytes are copied).
 * opaque is the caller's and comes back in the message's delivery report. Returns 0 when the
 * message was taken: exactly one report follows, through producer_poll or producer_flush,
 * and it may say the message failed (after message.timeout.ms without a broker, or at once
 * when librdkafka refuses it: larger than message.max.bytes, a topic the cluster says does
 * not exist). Returns -1 with err when it was not taken and no report follows: librdkafka's
 * queue is full (call vsoc_kafka_producer_poll, then retry), or the producer is unusable
 * (vsoc_kafka_producer_fatal() says which). */
int vsoc_kafka_produce_async(vsoc_kafka_producer_t *p, const char *topic, const void *key,
                             size_t keylen, const void *val, size_t n, void *opaque,
                             char *err, size_t errlen);

/* Serves delivery reports of produce_async messages: calls dr(ctx, opaque, ok, errstr) once
 * per message, on this thread (errstr is NULL when ok, else librdkafka's reason, a static
 * string), waiting up to timeout_ms (0: not at all) when none is ready. Returns how many
 * reports were served. With dr NULL it only serves librdkafka's events and keeps the reports
 * that come for a later call (returns 0). dr may call vsoc_kafka_produce_async, not the
 * other producer functions. */
int vsoc_kafka_producer_poll(vsoc_kafka_producer_t *p, int timeout_ms,
                             void (*dr)(void *ctx, void *opaque, int ok, const char *errstr),
                             void *ctx);

/* Waits until no produce_async message is outstanding or timeout_ms passes, serving their
 * delivery reports through dr as above; returns the number still outstanding (0: all
 * reported). Messages of vsoc_kafka_produce are not waited for. */
int vsoc_kafka_producer_flush(vsoc_kafka_producer_t *p, int timeout_ms,
                              void (*dr)(void *ctx, void *opaque, int ok, const char *errstr),
                              void *ctx);

/* Returns 1 once librdkafka raised a fatal error for the producer (it cannot produce any
 * more; make a new one), else 0. */
int vsoc_kafka_producer_fatal(const vsoc_kafka_producer_t *p);

/* ---- consumer ---------------------------------------------------------------------------- */

/* Creates a consumer in group subscribed to ntopics topics, with enable.auto.commit=false
 * and auto.offset.reset=earliest (a new group starts from the oldest message). conf_kv as for
 * the producer; bootstrap.servers, group.id, enable.auto.commit, enable.auto.offset.store,
 * auto.offset.reset and enable.partition.eof are refused. fetch.wait.max.ms defaults to 10
 * (librdkafka's 500 would delay every message of a quiet partition by up to half a second);
 * partition.assignment.strategy may name eager (range, roundrobin) or cooperative
 * (cooperative-sticky) assignors. Returns NULL with the reason in err. */
vsoc_kafka_consumer_t *vsoc_kafka_consumer_new(const char *brokers, const char *group,
                                               const char *const *topics, size_t ntopics,
                                               const char *const *conf_kv, size_t nconf,
                                               char *err, size_t errlen);
/* Leaves the group and frees; NULL does nothing. Leaving gives the partitions up, so
 * on_revoke (when set) is called first, from inside this call, for the partitions still
 * assigned: its ctx must still be valid, and commits in it work. Nothing else is
 * committed. */
void vsoc_kafka_consumer_free(vsoc_kafka_consumer_t *c);

/* Sets the rebalance callbacks (either may be NULL); call it before the first poll. Both are
 * called on the polling thread from inside vsoc_kafka_poll, with the partitions that move
 * (valid during the call only):
 *   on_revoke, BEFORE the partitions are given up: the caller drains what it holds for them,
 *     makes it durable and commits (vsoc_kafka_commit_offsets works inside it). Their offset
 *     is VSOC_KAFKA_OFFSET_INVALID. When the assignment was lost rather than revoked (the
 *     group went on without this member, e.g. after the brokers were out of reach longer
 *     than session.timeout.ms), vsoc_kafka_assignment_lost() returns 1 inside the call:
 *     another member may own them already, and commits for them are skipped.
 *   on_assign, just before the partitions are taken, so before any of their messages is
 *     fetched; offset is the group's committed offset, VSOC_KAFKA_OFFSET_INVALID when the
 *     group has none (consumption starts at the oldest message), or VSOC_KAFKA_OFFSET_UNREAD
 *     when it could not be read within 5 s. start comes as VSOC_KAFKA_OFFSET_INVALID
 *     (consumption resumes at the group's offset, or wherever librdkafka finds it); the
 *     callback may set it to an offset >= 0 to read from there instead (a service that keeps
 *     its own checkpoint resumes from it): the partition is then assigned at that offset,
 *     and nothing before it is fetched.
 * With an eager assignor every rebalance revokes the whole assignment and assigns the new
 * one; with cooperative-sticky only the partitions that move are revoked or assigned. The
 * callbacks must not call vsoc_kafka_poll. */
void vsoc_kafka_consumer_on_rebalance(
    vsoc_kafka_consumer_t *c, void (*on_assign)(void *ctx, vsoc_kafka_partition_t *p, size_t n),
    void (*on_revoke)(void *ctx, const vsoc_kafka_partition_t *p, size_t n), void *ctx);

/* Waits up to timeout_ms for messages and hands up to VSOC_KAFKA_BATCH of them to fn, in
 * order within each partition; m and what it points to are valid during fn's call only.
 * Rebalance callbacks may run between messages. Returns the number handed over (0 when none
 * came in time), or -1 with the reason in err when the client reports an error (a broker
 * down, an unknown topic, a failed rebalance); the consumer keeps retrying on its own, and
 * calling poll again is right unless the error says it is fatal. A call that returns -1 has
 * called fn for no message: an error met after messages were handed over is returned by the
 * next call. */
int vsoc_kafka_poll(vsoc_kafka_consumer_t *c, int timeout_ms,
                    void (*fn)(void *ctx, const vsoc_kafka_msg_t *m), void *ctx, char *err,
                    size_t errlen);

/* Commits, synchronously, the offsets of every message handed to fn by the vsoc_kafka_poll
 * calls that have returned (the last message of a call is stored for commit as the call
 * ends: not from inside fn or a rebalance callback). Call it only after their effects are
 * durable: a crash before the commit redelivers them. Returns 0
 * (also when there is nothing to commit) or -1 with err. Do not mix with commit_offsets on
 * one consumer: this one would move the group past messages handed over but not yet
 * durable. */
int vsoc_kafka_commit(vsoc_kafka_consumer_t *c, char *err, size_t errlen);

/* Commits, synchronously, exactly these n offsets, each the NEXT message to read in its
 * partition (the last one processed + 1). Partitions not assigned to this consumer any more
 * (moved to another member, or lost) are skipped, not an error: their new owner's commits
 * must not be overwritten with older offsets. Returns 0 (also when every one was skipped) or
 * -1 with librdkafka's message in err, naming the first partition that failed. */
int vsoc_kafka_commit_offsets(vsoc_kafka_consumer_t *c, const vsoc_kafka_partition_t *p,
                              size_t n, char *err, size_t errlen);

/* Returns the messages left to read in the assignment: the sum over its partitions of (high
 * watermark - the next offset to hand over), from values the client caches (no broker round
 * trip; the high watermark comes with every fetch response). Returns -1 when that is not
 * known yet (before the first assignment, or before a partition's first fetch response),
 * and 0 for an empty assignment. */
int64_t vsoc_kafka_lag(vsoc_kafka_consumer_t *c);

/* Returns how many partitions are assigned to this consumer now. */
size_t vsoc_kafka_assigned(vsoc_kafka_consumer_t *c);

/* Returns 1 inside on_revoke when the partitions were lost rather than revoked (see
 * vsoc_kafka_consumer_on_rebalance), else 0. */
int vsoc_kafka_assignment_lost(vsoc_kafka_consumer_t *c);

/* 1 once the consumer has joined its group and had an assignment, even an empty one (an
 * instance beyond the topics' partition count reads nothing and is still in service). */
int vsoc_kafka_joined(const vsoc_kafka_consumer_t *c);

#endif
