/* kafka_roundtrip.c: vsoc-kafka-roundtrip, a test driver for connectors/kafka: produces one
 * message, or consumes messages in a consumer group and commits them, so that shell tests
 * can check the connector against a broker and against other clients (kcat).
 *
 *   vsoc-kafka-roundtrip [OPTIONS] produce BROKERS TOPIC KEY FILE
 *   vsoc-kafka-roundtrip [OPTIONS] consume BROKERS GROUP TOPIC N TIMEOUT_MS
 *
 * produce sends FILE's bytes exactly ('-': standard input) keyed by KEY and exits 0 once the
 * delivery report came, 1 with the connector's error otherwise. consume prints each message
 * value on a line of its own until at least N came (every message of the last batch is
 * printed, so more than N lines means more messages than expected), then commits and exits
 * 0; it exits 1 without committing when TIMEOUT_MS passes first. Errors the consumer
 * reports while it waits go to stderr and do not stop it. */
#include "kafka/kafka.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CONF 32
#define MAX_FILE (16u << 20)

static void usage(FILE *f)
{
    fprintf(f, "usage: vsoc-kafka-roundtrip [--timeout-ms MS] [-X key=value]... produce BROKERS "
               "TOPIC KEY FILE\n"
               "       vsoc-kafka-roundtrip [-X key=value]... consume BROKERS GROUP TOPIC N "
               "TIMEOUT_MS\n"
               "  --timeout-ms MS   how long produce waits for the delivery report (10000)\n"
               "  -X key=value      a librdkafka setting passed through (repeatable)\n");
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads all of path ('-': stdin) into *out (caller frees). Returns 0 or -1 with a message. */
static int read_all(const char *path, char **out, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fprintf(stderr, "vsoc-kafka-roundtrip: out of memory\n");
            break;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        if (cap >= MAX_FILE) {
            fprintf(stderr, "vsoc-kafka-roundtrip: %s: larger than %u bytes\n", path, MAX_FILE);
            free(buf);
            buf = NULL;
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb)
            free(buf);
        buf = nb;
        cap *= 2;
    }
    int bad = !buf || ferror(f);
    if (buf && ferror(f))
        fprintf(stderr, "vsoc-kafka-roundtrip: %s: read error\n", path);
    if (f != stdin)
        fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int cmd_produce(char **argv, const char *const *conf, size_t nconf, int timeout_ms)
{
    const char *brokers = argv[0], *topic = argv[1], *key = argv[2], *file = argv[3];
    char err[512], *val = NULL;
    size_t n = 0;
    if (read_all(file, &val, &n) < 0)
        return 1;
    vsoc_kafka_producer_t *p = vsoc_kafka_producer_new(brokers, conf, nconf, err, sizeof err);
    if (!p) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        free(val);
        return 1;
    }
    int rc = vsoc_kafka_produce(p, topic, key, strlen(key), val, n, timeout_ms, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
    vsoc_kafka_producer_free(p);
    free(val);
    return rc < 0 ? 1 : 0;
}

static void print_value(void *ctx, const char *topic, const void *key, size_t keylen,
                        const void *val, size_t n)
{
    long *count = ctx;
    fwrite(val, 1, n, stdout);
    fputc('\n', stdout);
    (*count)++;
}

static int cmd_consume(char **argv, const char *const *conf, size_t nconf)
{
    const char *brokers = argv[0], *group = argv[1], *topic = argv[2];
    long want, timeout_ms;
    if (parse_int(argv[3], 1, 1000000, &want) < 0 ||
        parse_int(argv[4], 1, 3600 * 1000, &timeout_ms) < 0) {
        fprintf(stderr, "vsoc-kafka-roundtrip: consume: N must be >= 1 and TIMEOUT_MS > 0\n");
        return 2;
    }
    char err[512];
    vsoc_kafka_consumer_t *c =
        vsoc_kafka_consumer_new(brokers, group, &topic, 1, conf, nconf, err, sizeof err);
    if (!c) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        return 1;
    }
    long got = 0;
    long long deadline = now_ms() + timeout_ms;
    int rc = 1;
    while (got < want) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            fprintf(stderr, "vsoc-kafka-roundtrip: timed out after %ld ms: got %ld of %ld "
                            "messages\n", timeout_ms, got, want);
            goto out;
        }
        if (vsoc_kafka_poll(c, left < 200 ? (int)left : 200, print_value, &got, err,
                            sizeof err) < 0)
            fprintf(stderr, "vsoc-kafka-roundtrip: %s (still trying)\n", err);
    }
    fflush(stdout);
    if (vsoc_kafka_commit(c, err, sizeof err) < 0) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    vsoc_kafka_consumer_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    const char *conf[MAX_CONF];
    size_t nconf = 0;
    long timeout_ms = 10000;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (strcmp(argv[i], "-X") == 0 && nconf < MAX_CONF) {
            conf[nconf++] = argv[++i];
        } else if (strcmp(argv[i], "--timeout-ms") == 0 &&
                   parse_int(argv[i + 1], 1, 3600 * 1000, &timeout_ms) == 0) {
            i++;
        } else {
            fprintf(stderr, "vsoc-kafka-roundtrip: bad option %s %s\n", argv[i], argv[i + 1]);
            usage(stderr);
            return 2;
        }
    }
    if (i + 5 == argc && strcmp(argv[i], "produce") == 0)
        return cmd_produce(argv + i + 1, conf, nconf, (int)timeout_ms);
    if (i + 6 == argc && strcmp(argv[i], "consume") == 0)
        return cmd_consume(argv + i + 1, conf, nconf);
    usage(stderr);
    return 2;
}
