/* kafka_roundtrip.c: vsoc-kafka-roundtrip, a test driver for connectors/kafka, so that shell
 * tests can check the connector against a broker and against other clients (kcat).
 *
 *   vsoc-kafka-roundtrip [OPTIONS] produce BROKERS TOPIC KEY FILE
 *   vsoc-kafka-roundtrip [OPTIONS] consume BROKERS GROUP TOPIC N TIMEOUT_MS
 *   vsoc-kafka-roundtrip [OPTIONS] produce-async BROKERS TOPIC N
 *   vsoc-kafka-roundtrip [OPTIONS] member BROKERS GROUP TOPIC MAX_MS
 *   vsoc-kafka-roundtrip [OPTIONS] commit BROKERS GROUP TOPIC PARTITION:OFFSET...
 *   vsoc-kafka-roundtrip [OPTIONS] lag BROKERS GROUP TOPIC TOTAL M TIMEOUT_MS
 *   vsoc-kafka-roundtrip [OPTIONS] committed BROKERS GROUP TOPIC NPARTITIONS
 *
 * produce sends FILE's bytes exactly ('-': standard input) keyed by KEY and exits 0 once the
 * delivery report came, 1 with the connector's error otherwise.
 *
 * consume prints each message value on a line of its own until at least N came (every
 * message of the last batch is printed, so more than N lines means more messages than
 * expected), then commits and exits 0; it exits 1 without committing when TIMEOUT_MS passes
 * first. Errors the consumer reports while it waits go to stderr and do not stop it.
 *
 * produce-async queues N messages (value "mNNNNNN" for i from --first, default 0, key
 * "VIN%05d" of i % 100) with
 * produce_async, serving delivery reports as it goes and retrying when the queue is full,
 * then flushes (--flush-ms). --rate R spreads them over N/R seconds; --sync-every K also
 * sends a synchronous message ("sNNNNNN", key "CMD") through the same producer after every
 * K. It checks that every async message got exactly one report and no sync one reached dr,
 * prints "delivered D failed F sync S" and exits 0 only when all were delivered.
 *
 * member is one consumer of a group that logs what happens on stdout, one line each, times
 * in ms of CLOCK_MONOTONIC (one clock for every process on the host):
 *   assign T TOPIC:P@OFFSET ...      partitions taken (OFFSET: where reading resumes)
 *   revoke T lost=0|1 TOPIC:P ...    on_revoke called; it then waits --drain-ms and commits
 *   revoked T TOPIC:P@OFFSET ...     what the revoke committed, as it returns
 *   msg P OFFSET VALUE               a message handed over
 *   commit T TOPIC:P@OFFSET ...      on SIGUSR1: the offsets it committed
 *   revoked T failed: ERROR          or, for either: the commit failed
 *   exit T                           on SIGTERM, before it leaves the group (vsoc_kafka_
 *                                    consumer_free, whose on_revoke commits)
 * It commits only in on_revoke (also the one as it leaves) and on SIGUSR1, each time the
 * next offset of every partition it ever read or was assigned with a committed offset,
 * including those it gave up since (as a service that kept stale state would):
 * commit_offsets must skip those, so the lines list offsets asked for, not all of them
 * committed. It exits 0 after SIGTERM when the commit as it left worked, 1 on an error, 3
 * when MAX_MS passes first.
 *
 * commit joins the group, waits until it has partitions, commits the given offsets with
 * commit_offsets (partitions not assigned to it are skipped) and exits 0.
 *
 * lag reads at least M (>= 1) messages, then stops reading and waits until
 * vsoc_kafka_lag() reports TOTAL - BASE - got (--base BASE, default 0: messages read and
 * committed by earlier runs), printing "got G lag L"; exits 0 when it did within
 * TIMEOUT_MS, 1 otherwise. --commit commits what it read before it exits.
 *
 * committed prints the group's committed offset of partitions 0..NPARTITIONS-1 of TOPIC, one
 * "PARTITION OFFSET" line each (-1001: none), read with librdkafka directly, without joining
 * the group. */
#include "kafka/kafka.h"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CONF 32
#define MAX_FILE (16u << 20)
#define MAX_PARTS 64

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vsoc-kafka-roundtrip [OPTIONS] produce BROKERS TOPIC KEY FILE\n"
            "       vsoc-kafka-roundtrip [OPTIONS] consume BROKERS GROUP TOPIC N TIMEOUT_MS\n"
            "       vsoc-kafka-roundtrip [OPTIONS] produce-async BROKERS TOPIC N\n"
            "       vsoc-kafka-roundtrip [OPTIONS] member BROKERS GROUP TOPIC MAX_MS\n"
            "       vsoc-kafka-roundtrip [OPTIONS] commit BROKERS GROUP TOPIC P:OFFSET...\n"
            "       vsoc-kafka-roundtrip [OPTIONS] lag BROKERS GROUP TOPIC TOTAL M TIMEOUT_MS\n"
            "       vsoc-kafka-roundtrip [OPTIONS] committed BROKERS GROUP TOPIC NPARTITIONS\n"
            "  --timeout-ms MS   how long produce waits for the delivery report (10000)\n"
            "  -X key=value      a librdkafka setting passed through (repeatable)\n"
            "  --rate R          produce-async: messages per second (0: at once; default 0)\n"
            "  --sync-every K    produce-async: a synchronous message after every K\n"
            "  --first I         produce-async: number of the first message (0)\n"
            "  --flush-ms MS     produce-async: how long the final flush waits (30000)\n"
            "  --drain-ms MS     member: how long on_revoke takes before it commits (0)\n"
            "  --base B          lag: messages earlier runs read and committed (0)\n"
            "  --commit          lag: commit what was read before exiting\n");
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

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

typedef struct opts {
    const char *conf[MAX_CONF];
    size_t nconf;
    long timeout_ms, rate, sync_every, first, flush_ms, drain_ms, base;
    int commit;
} opts_t;

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

/* ---- produce ------------------------------------------------------------------------------ */

static int cmd_produce(char **argv, const opts_t *o)
{
    const char *brokers = argv[0], *topic = argv[1], *key = argv[2], *file = argv[3];
    char err[512], *val = NULL;
    size_t n = 0;
    if (read_all(file, &val, &n) < 0)
        return 1;
    vsoc_kafka_producer_t *p = vsoc_kafka_producer_new(brokers, o->conf, o->nconf, err,
                                                       sizeof err);
    if (!p) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        free(val);
        return 1;
    }
    int rc = vsoc_kafka_produce(p, topic, key, strlen(key), val, n, (int)o->timeout_ms, err,
                                sizeof err);
    if (rc < 0)
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
    vsoc_kafka_producer_free(p);
    free(val);
    return rc < 0 ? 1 : 0;
}

/* What the delivery reports of produce-async said. */
typedef struct reports {
    unsigned char *seen; /* reports per message; message i's opaque is &seen[i] */
    long n, delivered, failed, stray;
    char first_error[256];
} reports_t;

static void on_report(void *ctx, void *opaque, int ok, const char *errstr)
{
    reports_t *r = ctx;
    unsigned char *s = opaque;
    if (!s || s < r->seen || s >= r->seen + r->n) {
        r->stray++; /* not one of ours: a synchronous message's report leaked */
        return;
    }
    if (++*s > 1)
        r->stray++;
    if (ok) {
        r->delivered++;
    } else {
        r->failed++;
        if (!r->first_error[0])
            snprintf(r->first_error, sizeof r->first_error, "%s", errstr ? errstr : "(null)");
    }
}

static int cmd_produce_async(char **argv, const opts_t *o)
{
    const char *brokers = argv[0], *topic = argv[1];
    long n;
    if (parse_int(argv[2], 1, 10000000, &n) < 0) {
        fprintf(stderr, "vsoc-kafka-roundtrip: produce-async: N must be >= 1\n");
        return 2;
    }
    char err[512];
    reports_t r = {.n = n};
    r.seen = calloc((size_t)n, 1);
    vsoc_kafka_producer_t *p =
        r.seen ? vsoc_kafka_producer_new(brokers, o->conf, o->nconf, err, sizeof err) : NULL;
    if (!p) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", r.seen ? err : "out of memory");
        free(r.seen);
        return 1;
    }
    int rc = 1;
    long sync_sent = 0, queue_full = 0;
    long long t0 = now_ms();
    for (long i = 0; i < n; i++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "VIN%05ld", i % 100);
        snprintf(val, sizeof val, "m%06ld", o->first + i);
        if (o->rate > 0) {
            long long due = t0 + i * 1000 / o->rate;
            while (now_ms() < due)
                vsoc_kafka_producer_poll(p, (int)(due - now_ms()), on_report, &r);
        }
        while (vsoc_kafka_produce_async(p, topic, key, strlen(key), val, strlen(val),
                                        &r.seen[i], err, sizeof err) < 0) {
            if (vsoc_kafka_producer_fatal(p)) {
                fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
                goto out;
            }
            queue_full++;
            vsoc_kafka_producer_poll(p, 100, on_report, &r);
        }
        vsoc_kafka_producer_poll(p, 0, on_report, &r);
        if (o->sync_every > 0 && (i + 1) % o->sync_every == 0) {
            snprintf(val, sizeof val, "s%06ld", o->first + i);
            if (vsoc_kafka_produce(p, topic, "CMD", 3, val, strlen(val), (int)o->timeout_ms,
                                   err, sizeof err) < 0) {
                fprintf(stderr, "vsoc-kafka-roundtrip: synchronous message %s: %s\n", val, err);
                goto out;
            }
            sync_sent++;
        }
    }
    int left = vsoc_kafka_producer_flush(p, (int)o->flush_ms, on_report, &r);
    printf("delivered %ld failed %ld sync %ld\n", r.delivered, r.failed, sync_sent);
    fflush(stdout);
    if (queue_full)
        fprintf(stderr, "vsoc-kafka-roundtrip: the queue was full %ld times\n", queue_full);
    if (left != 0)
        fprintf(stderr, "vsoc-kafka-roundtrip: %d messages not reported after %ld ms\n", left,
                o->flush_ms);
    else if (r.failed)
        fprintf(stderr, "vsoc-kafka-roundtrip: %ld failed, first: %s\n", r.failed,
                r.first_error);
    else if (r.stray)
        fprintf(stderr, "vsoc-kafka-roundtrip: %ld reports not for an async message once\n",
                r.stray);
    else if (r.delivered != n)
        fprintf(stderr, "vsoc-kafka-roundtrip: %ld of %ld reported\n", r.delivered, n);
    else
        rc = 0;
out:
    vsoc_kafka_producer_free(p);
    free(r.seen);
    return rc;
}

/* ---- consume ------------------------------------------------------------------------------ */

static void print_value(void *ctx, const vsoc_kafka_msg_t *m)
{
    long *count = ctx;
    fwrite(m->val, 1, m->n, stdout);
    fputc('\n', stdout);
    (*count)++;
}

static int cmd_consume(char **argv, const opts_t *o)
{
    const char *brokers = argv[0], *group = argv[1], *topic = argv[2];
    long want, timeout_ms;
    if (parse_int(argv[3], 1, 1000000, &want) < 0 ||
        parse_int(argv[4], 1, 3600 * 1000, &timeout_ms) < 0) {
        fprintf(stderr, "vsoc-kafka-roundtrip: consume: N must be >= 1 and TIMEOUT_MS > 0\n");
        return 2;
    }
    char err[512];
    vsoc_kafka_consumer_t *c = vsoc_kafka_consumer_new(brokers, group, &topic, 1, o->conf,
                                                       o->nconf, err, sizeof err);
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

/* ---- member ------------------------------------------------------------------------------- */

/* The next offset of every partition a member has read. */
typedef struct member {
    vsoc_kafka_consumer_t *c;
    char topic[256];
    int32_t part[MAX_PARTS];
    int64_t next[MAX_PARTS];
    size_t n;
    long drain_ms;
    int failed;
    int revoke_failed; /* the last commit in on_revoke failed */
} member_t;

static volatile sig_atomic_t stop_requested, commit_requested;

static void on_signal(int sig)
{
    if (sig == SIGTERM)
        stop_requested = 1;
    else
        commit_requested = 1;
}

/* Sets the next offset of a partition (a negative one forgets it). Returns 0 or -1 when
 * MAX_PARTS are known already. */
static int member_set(member_t *mb, int32_t partition, int64_t next)
{
    size_t i = 0;
    while (i < mb->n && mb->part[i] != partition)
        i++;
    if (next < 0) {
        if (i < mb->n) {
            mb->part[i] = mb->part[mb->n - 1];
            mb->next[i] = mb->next[mb->n - 1];
            mb->n--;
        }
        return 0;
    }
    if (i == mb->n) {
        if (mb->n == MAX_PARTS)
            return -1;
        mb->part[mb->n++] = partition;
    }
    mb->next[i] = next;
    return 0;
}

static void print_parts(const char *what, const vsoc_kafka_partition_t *p, size_t n,
                        int offsets)
{
    printf("%s %lld", what, now_ms());
    for (size_t i = 0; i < n; i++) {
        if (offsets)
            printf(" %s:%d@%lld", p[i].topic, (int)p[i].partition, (long long)p[i].offset);
        else
            printf(" %s:%d", p[i].topic, (int)p[i].partition);
    }
    printf("\n");
    fflush(stdout);
}

static void member_msg(void *ctx, const vsoc_kafka_msg_t *m)
{
    member_t *mb = ctx;
    printf("msg %d %lld %.*s\n", (int)m->partition, (long long)m->offset, (int)m->n,
           (const char *)m->val);
    if (member_set(mb, m->partition, m->offset + 1) < 0)
        mb->failed = 1;
}

/* Commits the next offset of every partition read so far; prints them after what, or
 * "WHAT T failed: ERROR" when the commit failed. Returns 0 or -1. */
static int member_commit(member_t *mb, const char *what)
{
    vsoc_kafka_partition_t p[MAX_PARTS];
    for (size_t i = 0; i < mb->n; i++)
        p[i] = (vsoc_kafka_partition_t){.topic = mb->topic, .partition = mb->part[i], .offset = mb->next[i]};
    char err[512];
    fflush(stdout);
    if (vsoc_kafka_commit_offsets(mb->c, p, mb->n, err, sizeof err) < 0) {
        printf("%s %lld failed: %s\n", what, now_ms(), err);
        fflush(stdout);
        fprintf(stderr, "vsoc-kafka-roundtrip: %s: %s\n", what, err);
        return -1;
    }
    print_parts(what, p, mb->n, 1);
    return 0;
}

static void member_assign(void *ctx, vsoc_kafka_partition_t *p, size_t n)
{
    member_t *mb = ctx;
    print_parts("assign", p, n, 1);
    for (size_t i = 0; i < n; i++)
        if (member_set(mb, p[i].partition, p[i].offset) < 0)
            mb->failed = 1;
}

static void member_revoke(void *ctx, const vsoc_kafka_partition_t *p, size_t n)
{
    member_t *mb = ctx;
    printf("revoke %lld lost=%d", now_ms(), vsoc_kafka_assignment_lost(mb->c));
    for (size_t i = 0; i < n; i++)
        printf(" %s:%d", p[i].topic, (int)p[i].partition);
    printf("\n");
    /* As the service drains its pipeline before committing. */
    if (mb->drain_ms > 0)
        sleep_ms(mb->drain_ms);
    mb->revoke_failed = member_commit(mb, "revoked") < 0;
}

static int cmd_member(char **argv, const opts_t *o)
{
    const char *brokers = argv[0], *group = argv[1], *topic = argv[2];
    long max_ms;
    if (parse_int(argv[3], 1, 3600 * 1000, &max_ms) < 0 || strlen(topic) >= 256) {
        fprintf(stderr, "vsoc-kafka-roundtrip: member: MAX_MS must be > 0\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    char err[512];
    member_t mb = {.drain_ms = o->drain_ms};
    snprintf(mb.topic, sizeof mb.topic, "%s", topic);
    mb.c = vsoc_kafka_consumer_new(brokers, group, &topic, 1, o->conf, o->nconf, err,
                                   sizeof err);
    if (!mb.c) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        return 1;
    }
    vsoc_kafka_consumer_on_rebalance(mb.c, member_assign, member_revoke, &mb);
    long long deadline = now_ms() + max_ms;
    int rc = 3;
    while (!stop_requested && !mb.failed && now_ms() < deadline) {
        if (vsoc_kafka_poll(mb.c, 100, member_msg, &mb, err, sizeof err) < 0)
            fprintf(stderr, "vsoc-kafka-roundtrip: %s (still trying)\n", err);
        if (commit_requested) {
            commit_requested = 0;
            member_commit(&mb, "commit");
        }
        fflush(stdout);
    }
    if (stop_requested) {
        printf("exit %lld\n", now_ms());
        fflush(stdout);
    }
    mb.revoke_failed = 0;
    vsoc_kafka_consumer_free(mb.c); /* calls member_revoke for what it holds */
    fflush(stdout);
    if (mb.failed || mb.revoke_failed)
        rc = 1;
    else if (stop_requested)
        rc = 0;
    else
        fprintf(stderr, "vsoc-kafka-roundtrip: member ran for %ld ms without SIGTERM\n",
                max_ms);
    return rc;
}

/* ---- commit ------------------------------------------------------------------------------- */

static void ignore_msg(void *ctx, const vsoc_kafka_msg_t *m)
{
}

static int cmd_commit(int argc, char **argv, const opts_t *o)
{
    const char *brokers = argv[0], *group = argv[1], *topic = argv[2];
    vsoc_kafka_partition_t p[MAX_PARTS];
    size_t n = 0;
    for (int i = 3; i < argc; i++) {
        const char *colon = strchr(argv[i], ':');
        long part, off;
        char pbuf[16];
        if (!colon || colon - argv[i] >= (long)sizeof pbuf || n == MAX_PARTS) {
            fprintf(stderr, "vsoc-kafka-roundtrip: commit: expected PARTITION:OFFSET, not %s\n",
                    argv[i]);
            return 2;
        }
        memcpy(pbuf, argv[i], (size_t)(colon - argv[i]));
        pbuf[colon - argv[i]] = '\0';
        if (parse_int(pbuf, 0, 100000, &part) < 0 ||
            parse_int(colon + 1, 0, LONG_MAX, &off) < 0) {
            fprintf(stderr, "vsoc-kafka-roundtrip: commit: bad PARTITION:OFFSET %s\n", argv[i]);
            return 2;
        }
        p[n++] = (vsoc_kafka_partition_t){.topic = topic, .partition = (int32_t)part, .offset = off};
    }
    char err[512];
    vsoc_kafka_consumer_t *c = vsoc_kafka_consumer_new(brokers, group, &topic, 1, o->conf,
                                                       o->nconf, err, sizeof err);
    if (!c) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        return 1;
    }
    int rc = 1;
    long long deadline = now_ms() + 30000;
    while (vsoc_kafka_assigned(c) == 0) {
        if (now_ms() >= deadline) {
            fprintf(stderr, "vsoc-kafka-roundtrip: commit: no partitions within 30 s\n");
            goto out;
        }
        if (vsoc_kafka_poll(c, 100, ignore_msg, NULL, err, sizeof err) < 0)
            fprintf(stderr, "vsoc-kafka-roundtrip: %s (still trying)\n", err);
    }
    if (vsoc_kafka_commit_offsets(c, p, n, err, sizeof err) < 0) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        goto out;
    }
    printf("committed with %zu partitions assigned\n", vsoc_kafka_assigned(c));
    rc = 0;
out:
    vsoc_kafka_consumer_free(c);
    return rc;
}

/* ---- lag ---------------------------------------------------------------------------------- */

static void count_msg(void *ctx, const vsoc_kafka_msg_t *m)
{
    (*(long *)ctx)++;
}

static int cmd_lag(char **argv, const opts_t *o)
{
    const char *brokers = argv[0], *group = argv[1], *topic = argv[2];
    long total, want, timeout_ms;
    if (parse_int(argv[3], 0, 100000000, &total) < 0 ||
        parse_int(argv[4], 1, 100000000, &want) < 0 ||
        parse_int(argv[5], 1, 3600 * 1000, &timeout_ms) < 0) {
        fprintf(stderr, "vsoc-kafka-roundtrip: lag: TOTAL >= 0, M >= 1, TIMEOUT_MS > 0\n");
        return 2;
    }
    char err[512];
    vsoc_kafka_consumer_t *c = vsoc_kafka_consumer_new(brokers, group, &topic, 1, o->conf,
                                                       o->nconf, err, sizeof err);
    if (!c) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        return 1;
    }
    int rc = 1;
    long got = 0;
    int64_t lag = vsoc_kafka_lag(c);
    if (lag != -1) {
        fprintf(stderr, "vsoc-kafka-roundtrip: lag %lld before joining, expected -1\n",
                (long long)lag);
        goto out;
    }
    long long deadline = now_ms() + timeout_ms;
    while (got < want) {
        if (now_ms() >= deadline) {
            fprintf(stderr, "vsoc-kafka-roundtrip: lag: got %ld of %ld messages in time\n",
                    got, want);
            goto out;
        }
        if (vsoc_kafka_poll(c, 100, count_msg, &got, err, sizeof err) < 0)
            fprintf(stderr, "vsoc-kafka-roundtrip: %s (still trying)\n", err);
    }
    int64_t expect = total - o->base - got;
    while ((lag = vsoc_kafka_lag(c)) != expect && now_ms() < deadline)
        sleep_ms(50);
    printf("got %ld lag %lld\n", got, (long long)lag);
    fflush(stdout);
    if (lag != expect) {
        fprintf(stderr, "vsoc-kafka-roundtrip: lag %lld, expected %lld\n", (long long)lag,
                (long long)expect);
        goto out;
    }
    if (o->commit && vsoc_kafka_commit(c, err, sizeof err) < 0) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    vsoc_kafka_consumer_free(c);
    return rc;
}

/* ---- committed ---------------------------------------------------------------------------- */

static int cmd_committed(char **argv, const opts_t *o)
{
    const char *brokers = argv[0], *group = argv[1], *topic = argv[2];
    long nparts;
    if (parse_int(argv[3], 1, 10000, &nparts) < 0) {
        fprintf(stderr, "vsoc-kafka-roundtrip: committed: NPARTITIONS must be >= 1\n");
        return 2;
    }
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr)) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    for (size_t i = 0; i < o->nconf; i++) {
        char key[256];
        const char *eq = strchr(o->conf[i], '=');
        size_t klen = eq ? (size_t)(eq - o->conf[i]) : 0;
        if (!eq || klen >= sizeof key) {
            fprintf(stderr, "vsoc-kafka-roundtrip: bad setting %s\n", o->conf[i]);
            rd_kafka_conf_destroy(conf);
            return 2;
        }
        memcpy(key, o->conf[i], klen);
        key[klen] = '\0';
        /* Only client-wide settings matter here; group ones are ignored. */
        rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof errstr);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "vsoc-kafka-roundtrip: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)nparts);
    for (long i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(l, topic, (int32_t)i);
    int rc = 1;
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "vsoc-kafka-roundtrip: committed: %s\n", rd_kafka_err2str(e));
    } else {
        for (int i = 0; i < l->cnt; i++)
            printf("%d %lld\n", (int)l->elems[i].partition, (long long)l->elems[i].offset);
        rc = 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv)
{
    opts_t o = {.timeout_ms = 10000, .flush_ms = 30000};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--commit") == 0) {
            o.commit = 1;
            continue;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        long *num = !strcmp(a, "--timeout-ms")   ? &o.timeout_ms
                    : !strcmp(a, "--rate")       ? &o.rate
                    : !strcmp(a, "--sync-every") ? &o.sync_every
                    : !strcmp(a, "--first")      ? &o.first
                    : !strcmp(a, "--flush-ms")   ? &o.flush_ms
                    : !strcmp(a, "--drain-ms")   ? &o.drain_ms
                    : !strcmp(a, "--base")       ? &o.base
                                                 : NULL;
        if (strcmp(a, "-X") == 0 && o.nconf < MAX_CONF) {
            o.conf[o.nconf++] = v;
        } else if (!num || parse_int(v, !strcmp(a, "--timeout-ms") ? 1 : 0, 3600 * 1000, num) < 0) {
            fprintf(stderr, "vsoc-kafka-roundtrip: bad option %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    int left = argc - i - 1;
    const char *cmd = i < argc ? argv[i] : "";
    char **args = argv + i + 1;
    if (left == 4 && strcmp(cmd, "produce") == 0)
        return cmd_produce(args, &o);
    if (left == 5 && strcmp(cmd, "consume") == 0)
        return cmd_consume(args, &o);
    if (left == 3 && strcmp(cmd, "produce-async") == 0)
        return cmd_produce_async(args, &o);
    if (left == 4 && strcmp(cmd, "member") == 0)
        return cmd_member(args, &o);
    if (left >= 3 && strcmp(cmd, "commit") == 0)
        return cmd_commit(left, args, &o);
    if (left == 6 && strcmp(cmd, "lag") == 0)
        return cmd_lag(args, &o);
    if (left == 4 && strcmp(cmd, "committed") == 0)
        return cmd_committed(args, &o);
    usage(stderr);
    return 2;
}
