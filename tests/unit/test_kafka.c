/* test_kafka.c: connectors/kafka without a broker: settings, argument checks, the consumer's
 * state before it joins, and the producer's two delivery-report paths against a broker
 * address nobody listens on (127.0.0.1:1), where every message fails by message.timeout.ms.
 * What needs a broker is in tests/integration/kafka.sh. */
#include "kafka/kafka.h"

#include "test.h"

#include <librdkafka/rdkafka.h>

#define DEAD "127.0.0.1:1"

/* What delivery reports said. */
typedef struct reports {
    int n, ok, failed;
    void *last_opaque;
    char last_err[128];
} reports_t;

static void on_report(void *ctx, void *opaque, int ok, const char *errstr)
{
    reports_t *r = ctx;
    r->n++;
    if (ok) {
        r->ok++;
        ASSERT(errstr == NULL);
    } else {
        r->failed++;
        ASSERT(errstr != NULL);
        snprintf(r->last_err, sizeof r->last_err, "%s", errstr);
    }
    r->last_opaque = opaque;
}

static void never(void *ctx, const vsoc_kafka_msg_t *m)
{
    TEST_FAIL_("fn called for a message from %s", m->topic);
}

static void test_settings(void)
{
    char err[512];
    const char *topic = "vsoc.events";
    const char *eof[] = {"enable.partition.eof=true"};
    ASSERT(!vsoc_kafka_consumer_new(DEAD, "g", &topic, 1, eof, 1, err, sizeof err));
    ASSERT_STREQ(err, "kafka setting 'enable.partition.eof': set by vsoc "
                      "(enable.partition.eof=false) and cannot be changed");
    const char *offstore[] = {"enable.auto.offset.store=true"};
    ASSERT(!vsoc_kafka_consumer_new(DEAD, "g", &topic, 1, offstore, 1, err, sizeof err));
    ASSERT(strstr(err, "'enable.auto.offset.store': set by vsoc"));
    const char *acks[] = {"acks=1"};
    ASSERT(!vsoc_kafka_producer_new(DEAD, acks, 1, err, sizeof err));
    ASSERT_STREQ(err, "kafka setting 'acks': set by vsoc (acks=all) and cannot be changed");
    const char *bad[] = {"fetch.wait.max.ms=soon"};
    ASSERT(!vsoc_kafka_consumer_new(DEAD, "g", &topic, 1, bad, 1, err, sizeof err));
    ASSERT(strstr(err, "kafka setting 'fetch.wait.max.ms': Invalid value"));

    /* The default fetch.wait.max.ms and the assignor may be changed. */
    const char *ok[] = {"fetch.wait.max.ms=100", "partition.assignment.strategy=cooperative-sticky",
                        "client.id=vsoc-serve", "log_level=0"};
    vsoc_kafka_consumer_t *c = vsoc_kafka_consumer_new(DEAD, "g", &topic, 1, ok, 4, err,
                                                       sizeof err);
    ASSERT(c != NULL);
    vsoc_kafka_consumer_free(c);
    vsoc_kafka_consumer_free(NULL);
    vsoc_kafka_producer_free(NULL);
}

static void test_consumer_before_join(void)
{
    char err[512];
    const char *topic = "vsoc.events";
    const char *quiet[] = {"log_level=0"}; /* the refused connections are expected */
    vsoc_kafka_consumer_t *c = vsoc_kafka_consumer_new(DEAD, "g", &topic, 1, quiet, 1, err,
                                                       sizeof err);
    ASSERT(c != NULL);
    /* Not joined: nothing assigned, the lag unknown. */
    ASSERT_EQ(vsoc_kafka_assigned(c), 0);
    ASSERT_EQ(vsoc_kafka_lag(c), -1);
    ASSERT_EQ(vsoc_kafka_assignment_lost(c), 0);
    /* Partitions not assigned are skipped: no broker is asked, so this succeeds. */
    vsoc_kafka_partition_t p[] = {{"vsoc.events", 0, 17, 0}, {"vsoc.events", 3, 0, 0}};
    ASSERT_EQ(vsoc_kafka_commit_offsets(c, p, 2, err, sizeof err), 0);
    ASSERT_EQ(vsoc_kafka_commit_offsets(c, NULL, 0, err, sizeof err), 0);
    /* An offset must name the next message to read. */
    vsoc_kafka_partition_t neg = {"vsoc.events", 1, -1, 0};
    ASSERT_EQ(vsoc_kafka_commit_offsets(c, &neg, 1, err, sizeof err), -1);
    ASSERT_STREQ(err, "kafka commit: vsoc.events [1]: invalid offset -1");
    ASSERT_EQ(vsoc_kafka_poll(c, 10, NULL, NULL, err, sizeof err), -1);
    ASSERT_STREQ(err, "kafka poll: invalid argument");
    /* The broker is down: poll hands nothing over, at most reports the connection. */
    int got = vsoc_kafka_poll(c, 200, never, NULL, err, sizeof err);
    ASSERT(got == 0 || got == -1);
    if (got < 0)
        ASSERT(strstr(err, "kafka consume: "));
    ASSERT_EQ(vsoc_kafka_lag(c), -1);
    vsoc_kafka_consumer_free(c);

    ASSERT_EQ(vsoc_kafka_lag(NULL), -1);
    ASSERT_EQ(vsoc_kafka_assigned(NULL), 0);
    ASSERT_EQ(vsoc_kafka_commit_offsets(NULL, p, 1, err, sizeof err), -1);
}

/* A producer whose messages fail after timeout_ms (librdkafka checks about once a second). */
static vsoc_kafka_producer_t *dead_producer(const char *timeout_ms)
{
    char err[512], kv[64];
    snprintf(kv, sizeof kv, "message.timeout.ms=%s", timeout_ms);
    /* Quiet: the refused connections would otherwise be logged on every attempt. */
    const char *conf[] = {kv, "log_level=0", "message.max.bytes=2000"};
    vsoc_kafka_producer_t *p = vsoc_kafka_producer_new(DEAD, conf, 3, err, sizeof err);
    if (!p)
        TEST_FAIL_("producer: %s", err);
    return p;
}

static void test_async_reports(void)
{
    char err[512];
    reports_t r = {0};
    int a, b, c;
    vsoc_kafka_producer_t *p = dead_producer("300");
    ASSERT_EQ(vsoc_kafka_producer_fatal(p), 0);
    ASSERT_EQ(vsoc_kafka_produce_async(p, "vsoc.alerts", "VIN1", 4, "x", 1, &a, err, sizeof err),
              0);
    ASSERT_EQ(vsoc_kafka_produce_async(p, "vsoc.alerts", NULL, 0, "y", 1, &b, err, sizeof err), 0);
    /* Not reported yet: a flush that does not wait leaves both outstanding. */
    ASSERT_EQ(vsoc_kafka_producer_flush(p, 0, on_report, &r), 2);
    ASSERT_EQ(r.n, 0);
    /* A message librdkafka refuses at once is reported like a failed delivery. */
    char big[4000];
    memset(big, 'z', sizeof big);
    ASSERT_EQ(vsoc_kafka_produce_async(p, "vsoc.alerts", NULL, 0, big, sizeof big, &c, err,
                                       sizeof err), 0);
    ASSERT_EQ(vsoc_kafka_producer_poll(p, 0, on_report, &r), 1);
    ASSERT_EQ(r.failed, 1);
    ASSERT(r.last_opaque == &c);
    ASSERT_STREQ(r.last_err, rd_kafka_err2str(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
    /* The other two time out; each is reported once. Served without a dr, their reports
     * are kept for the next call with one. */
    for (int i = 0; i < 30; i++)
        ASSERT_EQ(vsoc_kafka_producer_poll(p, 100, NULL, NULL), 0);
    ASSERT_EQ(r.n, 1);
    ASSERT_EQ(vsoc_kafka_producer_flush(p, 5000, on_report, &r), 0);
    ASSERT_EQ(r.n, 3);
    ASSERT_EQ(r.failed, 3);
    ASSERT_EQ(r.ok, 0);
    ASSERT_STREQ(r.last_err, rd_kafka_err2str(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT));
    ASSERT_EQ(vsoc_kafka_producer_poll(p, 0, on_report, &r), 0);
    /* Invalid arguments take nothing. */
    ASSERT_EQ(vsoc_kafka_produce_async(p, NULL, NULL, 0, "x", 1, &a, err, sizeof err), -1);
    ASSERT_EQ(vsoc_kafka_produce_async(p, "t", NULL, 3, "x", 1, &a, err, sizeof err), -1);
    ASSERT_EQ(vsoc_kafka_producer_flush(p, 0, on_report, &r), 0);
    /* Freed with a message outstanding: dropped without a report, nothing leaks. */
    ASSERT_EQ(vsoc_kafka_produce_async(p, "vsoc.alerts", NULL, 0, "w", 1, &a, err, sizeof err), 0);
    vsoc_kafka_producer_free(p);
    ASSERT_EQ(r.n, 3);
}

static void test_sync_and_async_apart(void)
{
    char err[512];
    reports_t r = {0};
    int a;
    /* The async message times out (after ~1 s) while produce waits for its own: its report
     * is kept for producer_poll, and produce's never reaches dr. */
    vsoc_kafka_producer_t *p = dead_producer("1000");
    ASSERT_EQ(vsoc_kafka_produce_async(p, "vsoc.alerts", NULL, 0, "a", 1, &a, err, sizeof err), 0);
    ASSERT_EQ(vsoc_kafka_produce(p, "vsoc.commands", "VIN", 3, "c", 1, 4000, err, sizeof err), -1);
    ASSERT(strstr(err, "kafka produce to vsoc.commands: "));
    ASSERT_EQ(r.n, 0);
    ASSERT_EQ(vsoc_kafka_producer_poll(p, 0, on_report, &r), 1);
    ASSERT(r.last_opaque == &a);
    ASSERT_STREQ(r.last_err, rd_kafka_err2str(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT));
    ASSERT_EQ(vsoc_kafka_producer_flush(p, 3000, on_report, &r), 0);
    ASSERT_EQ(r.n, 1);
    vsoc_kafka_producer_free(p);

    /* A synchronous timeout with async messages outstanding does not purge them: they still
     * fail by their own timeout, not as purged. */
    memset(&r, 0, sizeof r);
    p = dead_producer("1500");
    ASSERT_EQ(vsoc_kafka_produce_async(p, "vsoc.alerts", NULL, 0, "a", 1, &a, err, sizeof err), 0);
    ASSERT_EQ(vsoc_kafka_produce(p, "vsoc.commands", "VIN", 3, "c", 1, 200, err, sizeof err), -1);
    ASSERT(strstr(err, "not delivered within 200 ms"));
    ASSERT_EQ(vsoc_kafka_producer_flush(p, 5000, on_report, &r), 0);
    ASSERT_EQ(r.n, 1);
    ASSERT(r.last_opaque == &a);
    ASSERT_STREQ(r.last_err, rd_kafka_err2str(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT));
    /* Without any, it purges its own message, which then fails at once. */
    ASSERT_EQ(vsoc_kafka_produce(p, "vsoc.commands", "VIN", 3, "c", 1, 200, err, sizeof err), -1);
    ASSERT(strstr(err, "not delivered within 200 ms"));
    ASSERT_EQ(vsoc_kafka_producer_poll(p, 0, on_report, &r), 0);
    ASSERT_EQ(r.n, 1);
    vsoc_kafka_producer_free(p);
}

int main(void)
{
    test_settings();
    test_consumer_before_join();
    test_async_reports();
    test_sync_and_async_apart();
    printf("test_kafka: ok\n");
    return 0;
}
