/* kafka_mock.c: kafka-mock, a Kafka-protocol broker for tests, built on librdkafka's
 * mock cluster (rdkafka_mock.h). No Kafka broker package exists on the test machines; the
 * mock cluster listens on loopback TCP and serves real clients (kcat, vsoc's connector):
 * produce, idempotent produce, fetch, consumer groups with offset commits.
 *
 *   kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... [--port-file FILE]
 *
 * Prints the bootstrap list ("127.0.0.1:PORT,...") on stdout once the topics exist, and
 * writes it to FILE when asked (atomically: write a temporary file, then rename, so a reader
 * polling for FILE never sees half of it; it is removed again on exit). Runs until SIGTERM
 * or SIGINT, then exits 0. Any failure exits 1 with librdkafka's message on stderr.
 *
 * Fault control for tests: SIGUSR1 takes every broker down (connections are closed and new
 * ones refused), SIGUSR2 brings them up again; each is logged on stderr ("kafka-mock:
 * brokers down" / "kafka-mock: brokers up") once done. Topics, messages, groups and
 * committed offsets are kept meanwhile: only the network goes away.
 *
 * The mock cluster lives in the threads of the rd_kafka_t handle it is created on; that
 * handle is a producer with no bootstrap servers, which never connects anywhere.
 *
 * Unlike a real broker, the mock group coordinator answers a JoinGroup to a group whose last
 * member just left only after that member's session.timeout.ms less 1 s (45 s by default):
 * tests that start a group's consumer several times give it a short session.timeout.ms. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOPICS 64
#define MAX_BROKERS 16

static void usage(FILE *f)
{
    fprintf(f, "usage: kafka-mock [--brokers N] [--topic NAME:PARTITIONS]... "
               "[--port-file FILE]\n"
               "  --brokers N               brokers in the cluster (1..%d, default 1)\n"
               "  --topic NAME:PARTITIONS   create a topic (repeatable; others are created\n"
               "                            on first use with librdkafka's defaults)\n"
               "  --port-file FILE          also write the bootstrap list to FILE\n"
               "Prints the bootstrap list on stdout and runs until SIGTERM or SIGINT.\n"
               "SIGUSR1 takes every broker down, SIGUSR2 brings them up again.\n",
               MAX_BROKERS);
}

/* Parses a decimal in [lo, hi]. Returns 0 or -1. */
static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Kafka's rule for topic names (1..249 of [a-zA-Z0-9._-], not "." or ".."); the mock
 * cluster itself would accept anything, and a real broker would not. */
static int topic_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 249 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int write_port_file(const char *path, const char *bootstraps)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        fprintf(stderr, "kafka-mock: %s: path too long\n", path);
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "kafka-mock: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    int bad = fprintf(f, "%s\n", bootstraps) < 0;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        fprintf(stderr, "kafka-mock: writing %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Takes every broker of the cluster down or up (the mock numbers them 1..n). Returns 0, or
 * -1 with librdkafka's message on stderr. */
static int set_brokers(rd_kafka_mock_cluster_t *mc, int n, int up)
{
    for (int id = 1; id <= n; id++) {
        rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(mc, id)
                                   : rd_kafka_mock_broker_set_down(mc, id);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kafka-mock: setting broker %d %s: %s\n", id, up ? "up" : "down",
                    rd_kafka_err2str(e));
            return -1;
        }
    }
    fprintf(stderr, "kafka-mock: brokers %s\n", up ? "up" : "down");
    return 0;
}

int main(int argc, char **argv)
{
    int brokers = 1;
    const char *port_file = NULL;
    int port_written = 0; /* port_file exists and must go on exit */
    char *topics[MAX_TOPICS];
    int partitions[MAX_TOPICS];
    int ntopics = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kafka-mock: %s: unknown option or missing value\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--brokers") == 0) {
            if (parse_int(v, 1, MAX_BROKERS, &brokers) < 0) {
                fprintf(stderr, "kafka-mock: --brokers %s: expected 1..%d\n", v,
                        MAX_BROKERS);
                return 2;
            }
        } else if (strcmp(a, "--topic") == 0) {
            const char *colon = strrchr(v, ':');
            if (ntopics == MAX_TOPICS) {
                fprintf(stderr, "kafka-mock: more than %d topics\n", MAX_TOPICS);
                return 2;
            }
            if (!colon || !topic_name_ok(v, (size_t)(colon - v)) ||
                parse_int(colon + 1, 1, 1000, &partitions[ntopics]) < 0) {
                fprintf(stderr, "kafka-mock: --topic %s: expected NAME:PARTITIONS "
                                "(a Kafka topic name, 1..1000 partitions)\n", v);
                return 2;
            }
            topics[ntopics] = strndup(v, (size_t)(colon - v));
            if (!topics[ntopics]) {
                fprintf(stderr, "kafka-mock: out of memory\n");
                return 1;
            }
            ntopics++;
        } else if (strcmp(a, "--port-file") == 0) {
            port_file = v;
        } else {
            fprintf(stderr, "kafka-mock: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }

    /* Block the stop and fault signals before librdkafka starts its threads (they inherit
     * the mask), so that only sigwait below receives them. */
    /* A shell starts background jobs with SIGINT ignored, and an ignored signal is
     * discarded rather than left pending for sigwait: restore the default first. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
        fprintf(stderr, "kafka-mock: pthread_sigmask failed\n");
        return 1;
    }

    int rc = 1;
    char errstr[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only hosts the cluster; keep it from logging that it has no brokers. */
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-mock: log_level: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto done;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "kafka-mock: rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto done;
    }
    mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        /* librdkafka gives no error code here; its reason, if any, was logged above. */
        fprintf(stderr, "kafka-mock: rd_kafka_mock_cluster_new(%d brokers) failed\n",
                brokers);
        goto done;
    }
    for (int i = 0; i < ntopics; i++) {
        /* Replicas on up to 3 brokers, as a small real cluster would have them. */
        int replicas = brokers < 3 ? brokers : 3;
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topics[i], partitions[i],
                                                           replicas);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kafka-mock: creating topic %s (%d partitions): %s\n",
                    topics[i], partitions[i], rd_kafka_err2str(e));
            goto done;
        }
    }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    if (!bootstraps || !*bootstraps) {
        fprintf(stderr, "kafka-mock: the mock cluster has no listeners\n");
        goto done;
    }
    if (port_file && write_port_file(port_file, bootstraps) < 0)
        goto done;
    port_written = port_file != NULL;
    if (printf("%s\n", bootstraps) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "kafka-mock: writing stdout: %s\n", strerror(errno));
        goto done;
    }

    int sig = 0;
    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (set_brokers(mc, brokers, sig == SIGUSR2) < 0)
            break;
    }
    if (sig != SIGUSR1 && sig != SIGUSR2)
        rc = 0;
done:
    if (port_written)
        unlink(port_file); /* the listeners close now: the file must not outlive them */
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk)
        rd_kafka_destroy(rk);
    for (int i = 0; i < ntopics; i++)
        free(topics[i]);
    return rc;
}
