/* kafka_rate.c: vsoc-kafka-rate, a producer that sends a file's lines to a Kafka topic at a
 * fixed rate, for the latency benchmark of vsoc serve (bench/serve-bench.sh, docs/bench.md).
 *
 *   vsoc-kafka-rate [--rate N] [-X key=value]... [-q] BROKERS TOPIC FILE
 *
 * Each line of FILE ('-': standard input) is one message: the text before the first TAB is
 * the key (a vehicle's VIN for vsoc serve), the rest the value, without the newline; a line
 * without a TAB is sent without a key, a blank line is skipped. This is kcat's
 * `-K $'\t'` convention, so the same file can go through either.
 *
 * Why not kcat: a latency figure needs a steady produced load whose send times are known.
 * kcat sends as fast as it can and batches; this program sends message i at
 * start + i / N seconds (an absolute schedule, so a late wake-up does not shift every later
 * message), with linger.ms=0 so that a message leaves when it is produced, and stamps each
 * message with the wall-clock time at which it was handed to librdkafka (CreateTime, in
 * ms): the timestamp vsoc serve measures its event-to-alert latency from.
 *
 * Invariants: the schedule is on CLOCK_MONOTONIC, the timestamps on CLOCK_REALTIME; the
 * schedule starts once the topic's metadata arrived, so connecting is not counted as lag.
 * When the program cannot keep up (the broker or the machine is too slow), messages go
 * out late rather than being dropped, and the summary says by how much: a latency figure
 * measured under a rate that was not held is not the figure asked for.
 *
 * Prints a summary on stderr (unless -q) and exits 0 when every message was delivered,
 * 1 on a Kafka or I/O failure (with librdkafka's or the system's message), 2 on a usage
 * error. SIGINT or SIGTERM stops reading, waits for what was sent, and reports. */
#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define PROG "vsoc-kafka-rate"
#define MAX_CONF 64
#define FLUSH_MS 30000
#define LATE_NS 1000000 /* a message sent more than 1 ms after its due time counts as late */

static volatile sig_atomic_t got_stop;
static void on_stop(int sig)
{
    (void)sig;
    got_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " [--rate N] [-X key=value]... [-q] BROKERS TOPIC FILE\n"
            "Sends each line of FILE ('-': stdin) as one message: the text before the first\n"
            "TAB is the key, the rest the value; blank lines are skipped.\n"
            "  --rate N       messages per second, on a fixed schedule (default 0: as fast\n"
            "                 as librdkafka takes them)\n"
            "  -X key=value   a librdkafka producer setting, applied after the defaults\n"
            "                 (linger.ms=0, partitioner=murmur2_random) (repeatable)\n"
            "  -q             no summary on stderr\n"
            "Each message's timestamp is the wall-clock time it was sent (CreateTime, ms).\n"
            "Exits 0 when every message was delivered, 1 on a failure, 2 on a usage error.\n");
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps until the CLOCK_MONOTONIC time t (ns); returns early on a signal. */
static void sleep_until(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* What the delivery reports said; written by the callback, which runs inside
 * rd_kafka_poll/rd_kafka_flush on this (the only) thread. */
typedef struct stats {
    uint64_t delivered, failed;
    char first_error[256];
} stats_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    stats_t *st = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        st->delivered++;
        return;
    }
    if (!st->failed++)
        snprintf(st->first_error, sizeof st->first_error, "%s", rd_kafka_err2str(m->err));
}

/* Builds the producer: defaults, then the caller's settings, then the brokers. Returns NULL
 * after printing librdkafka's message naming the setting at fault. */
static rd_kafka_t *producer_new(const char *brokers, char *const *conf_kv, size_t nconf,
                                stats_t *st)
{
    char errstr[512];
    static const char *const defaults[] = {"linger.ms", "0", "partitioner", "murmur2_random",
                                           "client.id", PROG, NULL};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; defaults[i]; i += 2)
        if (rd_kafka_conf_set(conf, defaults[i], defaults[i + 1], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    for (size_t i = 0; i < nconf; i++) {
        const char *eq = strchr(conf_kv[i], '=');
        char key[256];
        if (!eq || eq == conf_kv[i] || (size_t)(eq - conf_kv[i]) >= sizeof key) {
            snprintf(errstr, sizeof errstr, "-X '%s': expected key=value", conf_kv[i]);
            goto fail;
        }
        memcpy(key, conf_kv[i], (size_t)(eq - conf_kv[i]));
        key[eq - conf_kv[i]] = '\0';
        char why[384];
        if (rd_kafka_conf_set(conf, key, eq + 1, why, sizeof why) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, sizeof errstr, "-X '%s': %s", conf_kv[i], why);
            goto fail;
        }
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK)
        goto fail;
    rd_kafka_conf_set_opaque(conf, st);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    /* rd_kafka_new takes conf only on success. */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk)
        return rk;
fail:
    fprintf(stderr, PROG ": %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Hands one message to librdkafka, serving delivery reports while its queue is full.
 * Returns 0, or -1 after printing librdkafka's message. */
static int send_one(rd_kafka_t *rk, const char *topic, const char *key, size_t keylen,
                    const char *val, size_t vallen)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE((void *)val, vallen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_TIMESTAMP(wall_ms()), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, PROG ": producing to %s: %s\n", topic, rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 10);
    }
}

int main(int argc, char **argv)
{
    double rate = 0;
    int quiet = 0;
    char *conf_kv[MAX_CONF];
    size_t nconf = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "--rate") && i + 1 < argc) {
            char *end;
            errno = 0;
            rate = strtod(argv[++i], &end);
            if (errno || end == argv[i] || *end || !(rate >= 0 && rate <= 1e7)) {
                fprintf(stderr, PROG ": --rate '%s': expected a number of messages per "
                                "second, 0 to 10000000\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "-X") && i + 1 < argc) {
            if (nconf == MAX_CONF) {
                fprintf(stderr, PROG ": more than %d -X settings\n", MAX_CONF);
                return 2;
            }
            conf_kv[nconf++] = argv[++i];
        } else {
            fprintf(stderr, PROG ": unknown option '%s' (or its value is missing)\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (argc - i != 3) {
        usage(stderr);
        return 2;
    }
    const char *brokers = argv[i], *topic = argv[i + 1], *path = argv[i + 2];

    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return 1;
    }
    stats_t st = {0};
    rd_kafka_t *rk = producer_new(brokers, conf_kv, nconf, &st);
    if (!rk) {
        if (in != stdin)
            fclose(in);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int rc = 1;
    char *line = NULL;
    size_t cap = 0;
    uint64_t sent = 0, late = 0, max_behind_ns = 0;
    uint64_t t0 = 0, t_last = 0;
    rd_kafka_resp_err_t fe;
    /* Connect and learn the topic's partitions before the clock starts. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t me = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 10000)
                                 : rd_kafka_last_error();
    if (me != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, PROG ": %s: metadata of topic %s: %s\n", brokers, topic,
                rd_kafka_err2str(me));
        goto done;
    }
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, PROG ": %s: topic %s: %s\n", brokers, topic,
                rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
                                               : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
        goto done;
    }
    double period_ns = rate > 0 ? 1e9 / rate : 0;
    t0 = mono_ns();
    ssize_t n;
    while (!got_stop && (n = getline(&line, &cap, in)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (period_ns > 0) {
            uint64_t due = t0 + (uint64_t)((double)sent * period_ns);
            uint64_t now = mono_ns();
            if (now < due) {
                sleep_until(due);
                now = mono_ns();
            }
            if (now > due) {
                if (now - due > max_behind_ns)
                    max_behind_ns = now - due;
                if (now - due > LATE_NS)
                    late++;
            }
        }
        char *tab = memchr(line, '\t', (size_t)n);
        const char *key = tab ? line : NULL, *val = tab ? tab + 1 : line;
        size_t keylen = tab ? (size_t)(tab - line) : 0;
        if (send_one(rk, topic, key, keylen, val, (size_t)(line + n - val)) != 0)
            goto done;
        sent++;
        t_last = mono_ns();
        rd_kafka_poll(rk, 0);
    }
    if (ferror(in)) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    /* Whatever happened, what was handed over is given its chance to be delivered. */
    fe = rd_kafka_flush(rk, FLUSH_MS);
    if (fe != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, PROG ": %d messages not delivered within %d ms: %s\n",
                rd_kafka_outq_len(rk), FLUSH_MS, rd_kafka_err2str(fe));
        rc = 1;
    }
    if (st.failed) {
        fprintf(stderr, PROG ": %llu messages failed, the first with: %s\n",
                (unsigned long long)st.failed, st.first_error);
        rc = 1;
    }
    if (!quiet && rc == 0) {
        /* The rate between the first send and the last: n messages span n - 1 periods. */
        double secs = sent ? (double)(t_last - t0) / 1e9 : 0;
        char asked[64] = "as fast as possible";
        if (rate > 0)
            snprintf(asked, sizeof asked, "asked %.0f/s", rate);
        fprintf(stderr,
                PROG ": %llu messages in %.3f s (%.0f/s, %s), delivered %llu, failed %llu; "
                     "behind schedule: at most %.3f ms, %llu messages more than 1 ms late\n",
                (unsigned long long)sent, secs, secs > 0 ? (double)(sent - 1) / secs : 0.0, asked,
                (unsigned long long)st.delivered, (unsigned long long)st.failed,
                (double)max_behind_ns / 1e6, (unsigned long long)late);
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    free(line);
    if (in != stdin)
        fclose(in);
    return rc;
}
