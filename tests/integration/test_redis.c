/* test_redis.c: connectors/redis against real redis-server processes that this test starts
 * on loopback itself (a server that does not start fails the test): URL parsing, fleet_count
 * shared by two handles (two service instances) and compared hit by hit with the in-process
 * counter of engine/fleet.c, pipelining, cooldown locks, window counters, AUTH and SELECT,
 * and what happens while the server is stopped, killed and restarted.
 *
 * VSOC_REDIS_SERVER names the server binary (default: redis-server from PATH). */
#include "redis/redis.h"
#include "test.h"

#include "fleet.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T0 1767225600000000LL /* 2026-01-01T00:00:00Z in us: a realistic magnitude */
#define SEC 1000000LL

/* ---- servers -------------------------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    int port;
    char password[32];
    char log[160], sock[160];
} server_t;

static char g_dir[64];
static server_t *g_servers[4];

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void server_kill(server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void cleanup(void)
{
    for (size_t i = 0; i < sizeof g_servers / sizeof g_servers[0]; i++)
        if (g_servers[i])
            server_kill(g_servers[i]);
    if (g_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
}

/* A port nobody listens on right now (the kernel's pick for an ephemeral bind). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    ASSERT(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void print_log(const server_t *s)
{
    FILE *f = fopen(s->log, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        fprintf(stderr, "  redis-server: %s", line);
    if (f)
        fclose(f);
}

/* Starts redis-server on 127.0.0.1:s->port (and a unix socket) and waits until it answers
 * PING. Fails the test when it does not within 5 s. */
static void server_start(server_t *s, int slot)
{
    g_servers[slot] = s;
    snprintf(s->log, sizeof s->log, "%s/redis-%d.log", g_dir, s->port);
    snprintf(s->sock, sizeof s->sock, "%s/redis-%d.sock", g_dir, s->port);
    const char *bin = getenv("VSOC_REDIS_SERVER");
    if (!bin || !*bin)
        bin = "redis-server";
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        FILE *log = freopen(s->log, "a", stdout);
        if (!log || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        const char *argv[24];
        int n = 0;
        argv[n++] = bin;
        argv[n++] = "--port";
        argv[n++] = port;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "no";
        argv[n++] = "--daemonize";
        argv[n++] = "no";
        argv[n++] = "--dir";
        argv[n++] = g_dir;
        argv[n++] = "--unixsocket";
        argv[n++] = s->sock;
        if (s->password[0]) {
            argv[n++] = "--requirepass";
            argv[n++] = s->password;
        }
        argv[n] = NULL;
        execvp(bin, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    s->pid = pid;
    int64_t until = mono_ms() + 5000;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            print_log(s);
            TEST_FAIL_("redis-server (%s) on port %d exited at start (status %d)", bin,
                       s->port, status);
        }
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            /* NOAUTH also means it is up. */
            int up = rep && (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_ERROR);
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (up)
                return;
        } else if (c) {
            redisFree(c);
        }
        if (mono_ms() > until) {
            print_log(s);
            TEST_FAIL_("redis-server (%s) on port %d did not answer PING within 5 s", bin,
                       s->port);
        }
        sleep_ms(50);
    }
}

/* A direct hiredis connection, for looking at what the module left in Redis. */
static redisContext *raw(const server_t *s)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    ASSERT(c && !c->err);
    if (s->password[0]) {
        redisReply *rep = redisCommand(c, "AUTH %s", s->password);
        ASSERT(rep && rep->type == REDIS_REPLY_STATUS);
        freeReplyObject(rep);
    }
    return c;
}

static long long raw_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    ASSERT(rep);
    if (rep->type != REDIS_REPLY_INTEGER)
        TEST_FAIL_("'%s': reply type %d (%s)", fmt, rep->type, rep->str ? rep->str : "");
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

static void raw_ok(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    ASSERT(rep);
    if (rep->type == REDIS_REPLY_ERROR)
        TEST_FAIL_("'%s': %s", fmt, rep->str);
    freeReplyObject(rep);
}

static vsoc_redis_t *handle(const char *url, const char *prefix, int timeout_ms, int bmin,
                            int bmax)
{
    vsoc_redis_opts_t o = {url, prefix, timeout_ms, bmin, bmax};
    char err[256] = "";
    vsoc_redis_t *r = vsoc_redis_new(&o, err, sizeof err);
    if (!r)
        TEST_FAIL_("vsoc_redis_new(%s): %s", url, err);
    return r;
}

static vsoc_redis_t *handle_at(const server_t *s, const char *prefix)
{
    char url[128];
    if (s->password[0])
        snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", s->password, s->port);
    else
        snprintf(url, sizeof url, "redis://127.0.0.1:%d", s->port);
    return handle(url, prefix, 2000, 0, 0);
}

static vsoc_redis_fleet_hit_t hit(const char *rule, int64_t span, uint64_t gte, const char *vin,
                                  int64_t t)
{
    vsoc_redis_fleet_hit_t h = {rule, span, gte, vin, strlen(vin), t};
    return h;
}

static vsoc_fleet_result_t one(vsoc_redis_t *r, vsoc_redis_fleet_hit_t h)
{
    vsoc_fleet_result_t out;
    int rc = vsoc_redis_fleet_hits(r, &h, 1, &out);
    if (rc != 0)
        TEST_FAIL_("vsoc_redis_fleet_hits: %d: %s", rc, vsoc_redis_errstr(r));
    return out;
}

/* ---- URLs ----------------------------------------------------------------------------- */

static void bad_url(const char *url, const char *want)
{
    vsoc_redis_opts_t o = {url, NULL, 0, 0, 0};
    char err[256] = "";
    vsoc_redis_t *r = vsoc_redis_new(&o, err, sizeof err);
    if (r)
        TEST_FAIL_("vsoc_redis_new accepted '%s'", url);
    if (!strstr(err, want))
        TEST_FAIL_("'%s': message \"%s\" lacks \"%s\"", url, err, want);
    if (strstr(err, "sekret"))
        TEST_FAIL_("'%s': message \"%s\" shows the password", url, err);
}

static void test_urls(void)
{
    const char *good[] = {
        "redis://127.0.0.1",
        "redis://localhost:6380",
        "redis://localhost:6380/",
        "redis://redis.example.net:6379/15",
        "redis://:sekret@127.0.0.1:1/0",
        "redis://alice:p%40ss:w@rd@host",
        "redis://[::1]:6379/2",
        "redis://[::1]",
        "unix:///run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=3&password=x%26y",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        vsoc_redis_free(handle(good[i], NULL, 0, 0, 0));

    bad_url("", "empty");
    bad_url("http://127.0.0.1", "column 1: expected redis://");
    bad_url("rediss://127.0.0.1", "TLS");
    bad_url("redis://", "column 9: missing host");
    bad_url("redis://:6379", "column 9: missing host");
    bad_url("redis://host:0", "column 14: port '0'");
    bad_url("redis://host:99999", "column 14: port '99999'");
    bad_url("redis://host:6x", "column 14: port '6x'");
    bad_url("redis://host:", "column 14: port ''");
    bad_url("redis://host/db1", "column 14: database 'db1'");
    bad_url("redis://host/1?timeout=3", "column 15: unexpected '?timeout=3'");
    bad_url("redis://ho st", "column 11: unexpected ' ' in the host");
    bad_url("redis://sekret@host", "column 9: expected ':password@'");
    bad_url("redis://:@host", "column 10: empty password");
    bad_url("redis://:sek%zzret@host", "column 13: bad %-escape in the password");
    bad_url("redis://:sekret%00@host", "column 16: bad %-escape in the password");
    bad_url("redis://:sekret@host:99999", "column 22: port '99999'");
    bad_url("redis://[::1:6379", "column 9: '[' of an IPv6 address without ']'");
    bad_url("unix://run/redis.sock", "column 8: expected an absolute socket path");
    bad_url("unix:///run/redis.sock?db=x", "column 27: database 'x'");
    bad_url("unix:///run/redis.sock?timeout=1", "column 24: unknown parameter 'timeout'");
    bad_url("unix:///run/redis.sock?password=", "column 33: empty password");

    /* Options. */
    char err[256];
    vsoc_redis_opts_t o = {"redis://h", NULL, -1, 0, 0};
    ASSERT(!vsoc_redis_new(&o, err, sizeof err));
    ASSERT(strstr(err, "negative"));
    vsoc_redis_opts_t o2 = {"redis://h", NULL, 0, 500, 100};
    ASSERT(!vsoc_redis_new(&o2, err, sizeof err));
    ASSERT(strstr(err, "backoff maximum 100 ms is below its minimum 500 ms"));
    vsoc_redis_opts_t o3 = {NULL, NULL, 0, 0, 0};
    ASSERT(!vsoc_redis_new(&o3, err, sizeof err));
    vsoc_redis_free(NULL);

    /* A handle to nowhere is created down and fails at use, naming the server. */
    int port = free_port();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    vsoc_redis_t *r = handle(url, NULL, 500, 0, 0);
    ASSERT_EQ(vsoc_redis_up(r), 0);
    ASSERT_STREQ(vsoc_redis_errstr(r), "");
    ASSERT_EQ(vsoc_redis_ping(r), VSOC_EIO);
    char want[64];
    snprintf(want, sizeof want, "redis 127.0.0.1:%d: connect: Connection refused", port);
    ASSERT_STREQ(vsoc_redis_errstr(r), want);
    vsoc_redis_free(r);
}

/* ---- fleet_count ------------------------------------------------------------------------ */

static void test_fleet_two_instances(const server_t *s)
{
    vsoc_redis_t *a = handle_at(s, "t1:"), *b = handle_at(s, "t1:");
    const char *rule = "vsoc.fleet.secoc";
    int64_t span = 600 * SEC;
    const char *vins[6] = {"VIN000000000001", "VIN000000000002", "VIN000000000003",
                           "VIN000000000004", "VIN000000000005", "VIN000000000006"};
    vsoc_fleet_result_t res[6];
    int alerts = 0;
    for (int i = 0; i < 6; i++) {
        /* The instances take turns: each sees only half of the vehicles. */
        res[i] = one(i % 2 ? b : a, hit(rule, span, 5, vins[i], T0 + i * SEC));
        ASSERT_EQ(res[i].vehicles, i + 1);
        ASSERT_EQ(res[i].first_us, T0);
        alerts += res[i].alert;
        ASSERT_EQ(res[i].alert, i == 4);
    }
    ASSERT_EQ(alerts, 1);
    char uid[37];
    vsoc_fleet_uid(rule, T0 + 4 * SEC, uid);
    ASSERT_STREQ(res[4].uid, uid);
    /* The sample: newest first. */
    ASSERT_EQ(res[5].nvins, VSOC_FLEET_SAMPLES);
    for (int i = 0; i < VSOC_FLEET_SAMPLES; i++)
        ASSERT_STREQ(res[5].vins[i], vins[5 - i]);
    /* A vehicle hitting again is not counted twice, and raises nothing. */
    vsoc_fleet_result_t again = one(b, hit(rule, span, 5, vins[0], T0 + 7 * SEC));
    ASSERT_EQ(again.vehicles, 6);
    ASSERT_EQ(again.alert, 0);
    ASSERT_EQ(again.first_us, T0 + 1 * SEC);
    ASSERT_STREQ(again.vins[0], vins[0]);

    /* The keys: hash-tagged by rule, expiring a minute after the window. */
    redisContext *c = raw(s);
    ASSERT_EQ(raw_int(c, "ZCARD t1:fleet:{%s}:vins", rule), 6);
    long long ttl = raw_int(c, "PTTL t1:fleet:{%s}:vins", rule);
    ASSERT(ttl > 600000 && ttl <= 660000);
    ttl = raw_int(c, "PTTL t1:fleet:{%s}:state", rule);
    ASSERT(ttl > 600000 && ttl <= 660000);
    redisFree(c);
    vsoc_redis_free(a);
    vsoc_redis_free(b);
}

static void test_fleet_window(const server_t *s)
{
    vsoc_redis_t *r = handle_at(s, "t2:");
    const char *rule = "vsoc.fleet.window";
    int64_t span = 10 * SEC;
    vsoc_fleet_result_t x;
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(one(r, hit(rule, span, 3, (const char[]){(char)('A' + i), 0}, T0 + i * SEC))
                      .vehicles,
                  i + 1); /* A@0 B@1 C@2 D@3; the alert came at C */
    /* Event time, not wall time: at T0+11s, A (T0) has left; B (T0+1s) is exactly one
     * timespan old and still counts. */
    x = one(r, hit(rule, span, 3, "E", T0 + 11 * SEC));
    ASSERT_EQ(x.vehicles, 4);
    ASSERT_EQ(x.first_us, T0 + 1 * SEC);
    ASSERT_EQ(x.alert, 0);
    /* A hit older than the window changes nothing: its vehicle is already out. */
    x = one(r, hit(rule, span, 3, "F", T0 + 500000));
    ASSERT_EQ(x.vehicles, 4);
    ASSERT_EQ(x.alert, 0);
    ASSERT_STREQ(x.vins[0], "E");
    /* A late hit inside the window counts as of its own time. */
    x = one(r, hit(rule, span, 3, "G", T0 + 2 * SEC + 1));
    ASSERT_EQ(x.vehicles, 5);
    ASSERT_STREQ(x.vins[0], "E");
    ASSERT_STREQ(x.vins[1], "D");
    ASSERT_STREQ(x.vins[2], "G");
    /* At T0+20s only E (T0+11s) and the new vehicle remain: below gte 3. */
    x = one(r, hit(rule, span, 3, "H", T0 + 20 * SEC));
    ASSERT_EQ(x.vehicles, 2);
    ASSERT_EQ(x.first_us, T0 + 11 * SEC);
    /* Re-armed by the fall below gte: the third vehicle alerts again at once. */
    x = one(r, hit(rule, span, 3, "I", T0 + 20 * SEC + 5));
    ASSERT_EQ(x.vehicles, 3);
    ASSERT_EQ(x.alert, 1);
    char uid[37];
    vsoc_fleet_uid(rule, T0 + 20 * SEC + 5, uid);
    ASSERT_STREQ(x.uid, uid);
    vsoc_redis_free(r);
}

/* Count held at gte: the next alert comes once a timespan has passed since the last. */
static void test_fleet_rearm_after_timespan(const server_t *s)
{
    vsoc_redis_t *r = handle_at(s, "t3:");
    const char *rule = "vsoc.fleet.rearm";
    int64_t span = 10 * SEC;
    ASSERT_EQ(one(r, hit(rule, span, 2, "V1", T0)).alert, 0);
    ASSERT_EQ(one(r, hit(rule, span, 2, "V2", T0 + 1 * SEC)).alert, 1);
    ASSERT_EQ(one(r, hit(rule, span, 2, "V1", T0 + 5 * SEC)).alert, 0);
    ASSERT_EQ(one(r, hit(rule, span, 2, "V2", T0 + 6 * SEC)).alert, 0);
    ASSERT_EQ(one(r, hit(rule, span, 2, "V1", T0 + 10 * SEC)).alert, 0);
    vsoc_fleet_result_t x = one(r, hit(rule, span, 2, "V2", T0 + 11 * SEC));
    ASSERT_EQ(x.alert, 1);
    ASSERT_EQ(x.vehicles, 2);
    ASSERT_EQ(one(r, hit(rule, span, 2, "V1", T0 + 12 * SEC)).alert, 0);
    vsoc_redis_free(r);
}

static int result_eq(const vsoc_fleet_result_t *a, const vsoc_fleet_result_t *b)
{
    if (a->vehicles != b->vehicles || a->alert != b->alert || a->first_us != b->first_us ||
        a->nvins != b->nvins || (a->alert && strcmp(a->uid, b->uid) != 0))
        return 0;
    for (size_t i = 0; i < a->nvins; i++)
        if (strcmp(a->vins[i], b->vins[i]) != 0)
            return 0;
    return 1;
}

static void dump(const char *who, const vsoc_fleet_result_t *x)
{
    fprintf(stderr, "  %s: vehicles %" PRIu64 " alert %d uid %s first %" PRId64 " vins", who,
            x->vehicles, x->alert, x->alert ? x->uid : "-", x->first_us);
    for (size_t i = 0; i < x->nvins; i++)
        fprintf(stderr, " %s", x->vins[i]);
    fputc('\n', stderr);
}

static uint64_t g_rng;
static uint64_t rnd(uint64_t n)
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (g_rng >> 33) % n;
}

/* Random hits of three rules from a pool of vehicles, in order with small gaps and ties,
 * sometimes late (inside and beyond the window), sent in batches of 1..60 by two handles
 * in turn: every result must equal engine/fleet.c's for the same hit. */
static void test_fleet_matches_in_process(const server_t *s, uint64_t seed)
{
    g_rng = seed;
    vsoc_redis_t *h[2] = {handle_at(s, "t4:"), handle_at(s, "t4:")};
    vsoc_fleet_t *ref = vsoc_fleet_new();
    ASSERT(ref);
    enum { N = 3000, BATCH = 60 };
    static const char *rules[3] = {"r.a", "r.b", "r.c"};
    const int64_t spans[3] = {10 * SEC, 3 * SEC, 30 * SEC};
    const uint64_t gtes[3] = {4, 2, 9};
    static char vins[N][VSOC_VIN_MAX + 1];
    static vsoc_redis_fleet_hit_t hits[N];
    static vsoc_fleet_result_t got[N];
    int64_t now = T0;
    for (int i = 0; i < N; i++) {
        int ri = (int)rnd(3);
        uint64_t roll = rnd(100);
        now += (int64_t)rnd(4) * (int64_t)rnd(400000); /* ties when a factor is 0 */
        int64_t t = now;
        if (roll < 8)
            t -= (int64_t)rnd((uint64_t)spans[ri] * 2); /* late, maybe beyond the window */
        int v = (int)rnd(14);
        snprintf(vins[i], sizeof vins[i], "%sVSOC%012d", v % 3 ? "W" : "", v);
        hits[i] = hit(rules[ri], spans[ri], gtes[ri], vins[i], t);
    }
    vsoc_redis_stats_t st0[2], st1[2];
    ASSERT_EQ(vsoc_redis_ping(h[0]), 0); /* connected: the handshake is not counted below */
    ASSERT_EQ(vsoc_redis_ping(h[1]), 0);
    vsoc_redis_stats(h[0], &st0[0]);
    vsoc_redis_stats(h[1], &st0[1]);
    int alerts = 0, nbatches = 0;
    for (int i = 0; i < N;) {
        int n = 1 + (int)rnd(BATCH);
        if (n > N - i)
            n = N - i;
        vsoc_redis_t *r = h[nbatches++ % 2];
        int rc = vsoc_redis_fleet_hits(r, &hits[i], (size_t)n, &got[i]);
        if (rc != 0)
            TEST_FAIL_("batch at %d: %d: %s", i, rc, vsoc_redis_errstr(r));
        for (int k = i; k < i + n; k++) {
            vsoc_fleet_result_t want;
            ASSERT_EQ(vsoc_fleet_hit(ref, hits[k].rule_id, hits[k].timespan_us, hits[k].gte,
                                     hits[k].vin, hits[k].vinlen, hits[k].time_us, &want),
                      0);
            if (!result_eq(&got[k], &want)) {
                fprintf(stderr, "hit %d (seed %" PRIu64 "): %s %s at %" PRId64 "\n", k, seed,
                        hits[k].rule_id, hits[k].vin, hits[k].time_us);
                dump("redis     ", &got[k]);
                dump("in-process", &want);
                TEST_FAIL_("the Redis counter differs from engine/fleet.c");
            }
            alerts += want.alert;
        }
        i += n;
    }
    ASSERT(alerts > 10); /* the sequence exercised alerting */
    /* One script call per hit, and nothing else, went out. */
    vsoc_redis_stats(h[0], &st1[0]);
    vsoc_redis_stats(h[1], &st1[1]);
    ASSERT_EQ(st1[0].commands - st0[0].commands + st1[1].commands - st0[1].commands, N);
    ASSERT_EQ(st1[0].errors + st1[1].errors, 0);
    vsoc_fleet_free(ref);
    vsoc_redis_free(h[0]);
    vsoc_redis_free(h[1]);
}

/* Many hits in one call go out in one pipeline: with the server stopped, none of them is
 * answered, so the whole call waits one timeout, not one per hit. */
static void test_fleet_pipeline(server_t *s)
{
    vsoc_redis_t *r = handle_at(s, "t5:");
    enum { N = 2000 };
    static vsoc_redis_fleet_hit_t hits[N];
    static vsoc_fleet_result_t out[N];
    static char vins[N][20];
    for (int i = 0; i < N; i++) {
        snprintf(vins[i], sizeof vins[i], "P%05d", i);
        hits[i] = hit("r.pipe", 3600 * SEC, 1000, vins[i], T0 + i);
    }
    ASSERT_EQ(vsoc_redis_fleet_hits(r, hits, N, out), 0);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(out[i].vehicles, i + 1);
        ASSERT_EQ(out[i].alert, i == 999);
    }
    ASSERT_STREQ(out[N - 1].vins[0], "P01999");

    /* Invalid hits: nothing is sent. */
    vsoc_redis_stats_t st0, st1;
    vsoc_redis_stats(r, &st0);
    char longvin[VSOC_VIN_MAX + 2];
    memset(longvin, 'X', sizeof longvin - 1);
    longvin[sizeof longvin - 1] = '\0';
    char longrule[VSOC_ID_MAX + 2];
    memset(longrule, 'r', sizeof longrule - 1);
    longrule[sizeof longrule - 1] = '\0';
    vsoc_redis_fleet_hit_t badv[] = {
        hit("r", SEC, 1, "", T0),
        hit("r", SEC, 1, longvin, T0),
        hit(longrule, SEC, 1, "V", T0),
        hit("r", SEC, 0, "V", T0),
        hit("r", 0, 1, "V", T0),
        hit("", SEC, 1, "V", T0),
        hit("r", SEC, 1, "V", -1),
        hit("r", SEC, 1, "V", (int64_t)1 << 53),
    };
    for (size_t i = 0; i < sizeof badv / sizeof badv[0]; i++) {
        vsoc_redis_fleet_hit_t two[2] = {hit("r", SEC, 1, "OK", T0), badv[i]};
        ASSERT_EQ(vsoc_redis_fleet_hits(r, two, 2, out), VSOC_EINVAL);
    }
    ASSERT_EQ(vsoc_redis_fleet_hits(r, badv, 0, out), VSOC_EINVAL);
    vsoc_redis_stats(r, &st1);
    ASSERT_EQ(st1.commands, st0.commands);

    /* One round trip: a stopped server costs one timeout for the whole batch. */
    vsoc_redis_t *q = handle_at(s, "t5:");
    ASSERT_EQ(vsoc_redis_ping(q), 0);
    vsoc_redis_free(q);
    vsoc_redis_opts_t o = {NULL, "t5:", 300, 0, 0};
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", s->port);
    o.url = url;
    char err[256];
    q = vsoc_redis_new(&o, err, sizeof err);
    ASSERT(q);
    ASSERT_EQ(vsoc_redis_ping(q), 0);
    ASSERT_EQ(kill(s->pid, SIGSTOP), 0);
    int64_t t = mono_ms();
    ASSERT_EQ(vsoc_redis_fleet_hits(q, hits, 200, out), VSOC_EIO);
    int64_t took = mono_ms() - t;
    ASSERT_EQ(kill(s->pid, SIGCONT), 0);
    if (took < 250 || took > 1000)
        TEST_FAIL_("200 pipelined hits to a stopped server took %" PRId64 " ms, want ~300",
                   took);
    ASSERT(strstr(vsoc_redis_errstr(q), "timed out after 300 ms"));
    ASSERT_EQ(vsoc_redis_up(q), 0);
    vsoc_redis_free(q);
    vsoc_redis_free(r);
}

/* SCRIPT FLUSH under a live connection: EVALSHA fails with NOSCRIPT and the hits are sent
 * again with EVAL; an error reply for one hit fails the call but keeps the connection. */
static void test_fleet_noscript_and_errors(const server_t *s)
{
    vsoc_redis_t *r = handle_at(s, "t6:");
    ASSERT_EQ(one(r, hit("r.ns", 10 * SEC, 2, "A", T0)).vehicles, 1);
    redisContext *c = raw(s);
    raw_ok(c, "SCRIPT FLUSH");
    vsoc_redis_fleet_hit_t hs[3] = {hit("r.ns", 10 * SEC, 2, "B", T0 + 1),
                                    hit("r.ns", 10 * SEC, 2, "C", T0 + 2),
                                    hit("r.ns", 10 * SEC, 2, "D", T0 + 3)};
    vsoc_fleet_result_t out[3];
    vsoc_redis_stats_t st0, st1;
    vsoc_redis_stats(r, &st0);
    ASSERT_EQ(vsoc_redis_fleet_hits(r, hs, 3, out), 0);
    vsoc_redis_stats(r, &st1);
    ASSERT_EQ(st1.commands - st0.commands, 6); /* 3 EVALSHA, 3 EVAL */
    ASSERT_EQ(out[0].vehicles, 2);
    ASSERT_EQ(out[0].alert, 1);
    ASSERT_EQ(out[2].vehicles, 4);
    ASSERT_EQ(out[2].alert, 0);

    /* A rule key of the wrong type: the call fails with the server's message... */
    raw_ok(c, "SET t6:fleet:{r.bad}:vins x");
    vsoc_redis_fleet_hit_t mix[3] = {hit("r.ok", 10 * SEC, 5, "A", T0),
                                     hit("r.bad", 10 * SEC, 5, "A", T0),
                                     hit("r.ok", 10 * SEC, 5, "B", T0 + 1)};
    ASSERT_EQ(vsoc_redis_fleet_hits(r, mix, 3, out), VSOC_EIO);
    ASSERT(strstr(vsoc_redis_errstr(r), "fleet script for rule 'r.bad'"));
    ASSERT(strstr(vsoc_redis_errstr(r), "WRONGTYPE"));
    /* ...the connection stays up and in step with its replies. */
    ASSERT_EQ(vsoc_redis_up(r), 1);
    ASSERT_EQ(one(r, hit("r.ok", 10 * SEC, 5, "C", T0 + 2)).vehicles, 3);
    ASSERT_EQ(vsoc_redis_ping(r), 0);
    vsoc_redis_stats(r, &st1);
    ASSERT_EQ(st1.errors, 1);
    redisFree(c);
    vsoc_redis_free(r);
}

/* ---- cooldowns and window counters ----------------------------------------------------- */

static void test_cooldown(const server_t *s)
{
    vsoc_redis_t *a = handle_at(s, "t7:"), *b = handle_at(s, "t7:");
    int got = -1;
    ASSERT_EQ(vsoc_redis_cooldown(a, "quarantine:VIN1", 300, NULL, &got), 0);
    ASSERT_EQ(got, 1);
    ASSERT_EQ(vsoc_redis_cooldown(a, "quarantine:VIN1", 300, NULL, &got), 0);
    ASSERT_EQ(got, 0);
    ASSERT_EQ(vsoc_redis_cooldown(b, "quarantine:VIN1", 300, NULL, &got), 0);
    ASSERT_EQ(got, 0);
    ASSERT_EQ(vsoc_redis_cooldown(b, "quarantine:VIN2", 300, NULL, &got), 0);
    ASSERT_EQ(got, 1);
    redisContext *c = raw(s);
    long long ttl = raw_int(c, "PTTL t7:cooldown:quarantine:VIN1");
    ASSERT(ttl > 0 && ttl <= 300);
    redisFree(c);
    sleep_ms(400);
    ASSERT_EQ(vsoc_redis_cooldown(b, "quarantine:VIN1", 300, NULL, &got), 0);
    ASSERT_EQ(got, 1);
    got = 7;
    ASSERT_EQ(vsoc_redis_cooldown(a, "", 300, NULL, &got), VSOC_EINVAL);
    ASSERT_EQ(vsoc_redis_cooldown(a, "k", 0, NULL, &got), VSOC_EINVAL);
    ASSERT_EQ(vsoc_redis_cooldown(a, "k", 300, "", &got), VSOC_EINVAL);
    ASSERT_EQ(got, 7);
    /* With an owner, asking again is idempotent for that owner only. */
    ASSERT_EQ(vsoc_redis_cooldown(a, "pb:VIN3", 60000, "run-1", &got), 0);
    ASSERT_EQ(got, 1);
    ASSERT_EQ(vsoc_redis_cooldown(b, "pb:VIN3", 60000, "run-1", &got), 0);
    ASSERT_EQ(got, 1);
    ASSERT_EQ(vsoc_redis_cooldown(b, "pb:VIN3", 60000, "run-2", &got), 0);
    ASSERT_EQ(got, 0);
    ASSERT_EQ(vsoc_redis_cooldown(a, "pb:VIN3", 60000, NULL, &got), 0);
    ASSERT_EQ(got, 0);
    vsoc_redis_free(a);
    vsoc_redis_free(b);
}

static void test_window(const server_t *s)
{
    vsoc_redis_t *a = handle_at(s, "t8:"), *b = handle_at(s, "t8:");
    int64_t n = 0;
    int ok = 0;
    ASSERT_EQ(vsoc_redis_window_admit(a, "blast:pb1", "VIN1", 600, 3, &n, &ok), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(ok, 1);
    ASSERT_EQ(vsoc_redis_window_admit(b, "blast:pb1", "VIN2", 600, 3, &n, &ok), 0);
    ASSERT_EQ(n, 2);
    /* The same vehicle again (read a second time after a crash, or run again) counts once,
     * whichever instance asks. */
    ASSERT_EQ(vsoc_redis_window_admit(b, "blast:pb1", "VIN1", 600, 3, &n, &ok), 0);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(ok, 1);
    ASSERT_EQ(vsoc_redis_window_admit(b, "blast:pb2", "VIN1", 600, 3, &n, &ok), 0);
    ASSERT_EQ(n, 1);
    sleep_ms(250);
    /* A fixed window: later additions do not push its end out. The third vehicle takes the
     * last place; a fourth is refused and not added, so it takes no place; the ones in are
     * still admitted. */
    ASSERT_EQ(vsoc_redis_window_admit(a, "blast:pb1", "VIN3", 600, 3, &n, &ok), 0);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(ok, 1);
    ASSERT_EQ(vsoc_redis_window_admit(a, "blast:pb1", "VIN4", 600, 3, &n, &ok), 0);
    ASSERT_EQ(n, 4);
    ASSERT_EQ(ok, 0);
    ASSERT_EQ(vsoc_redis_window_admit(b, "blast:pb1", "VIN4", 600, 3, &n, &ok), 0);
    ASSERT_EQ(ok, 0);
    ASSERT_EQ(vsoc_redis_window_admit(b, "blast:pb1", "VIN2", 600, 3, &n, &ok), 0);
    ASSERT_EQ(ok, 1);
    ASSERT_EQ(n, 3);
    redisContext *c = raw(s);
    ASSERT_EQ(raw_int(c, "SCARD t8:vset:blast:pb1"), 3);
    long long ttl = raw_int(c, "PTTL t8:vset:blast:pb1");
    ASSERT(ttl > 0 && ttl <= 360);
    /* No limit (0) admits everyone. */
    ASSERT_EQ(vsoc_redis_window_admit(a, "blast:pb1", "VIN5", 600, 0, &n, &ok), 0);
    ASSERT_EQ(ok, 1);
    ASSERT_EQ(n, 4);
    /* A set that lost its expiry gets one again. */
    raw_ok(c, "DEL t8:vset:blast:pb3");
    ASSERT_EQ(raw_int(c, "SADD t8:vset:blast:pb3 A B"), 2);
    ASSERT_EQ(vsoc_redis_window_admit(a, "blast:pb3", "C", 600, 10, &n, &ok), 0);
    ASSERT_EQ(n, 3);
    ttl = raw_int(c, "PTTL t8:vset:blast:pb3");
    ASSERT(ttl > 0 && ttl <= 600);
    redisFree(c);
    sleep_ms(450);
    ASSERT_EQ(vsoc_redis_window_admit(b, "blast:pb1", "VIN4", 600, 3, &n, &ok), 0);
    ASSERT_EQ(n, 1); /* a new window: the vehicle refused before is in */
    ASSERT_EQ(ok, 1);
    ASSERT_EQ(vsoc_redis_window_admit(b, "blast:pb1", "VIN1", 0, 3, &n, &ok), VSOC_EINVAL);
    ASSERT_EQ(vsoc_redis_window_admit(b, NULL, "VIN1", 10, 3, &n, &ok), VSOC_EINVAL);
    ASSERT_EQ(vsoc_redis_window_admit(b, "blast:pb1", "", 10, 3, &n, &ok), VSOC_EINVAL);
    vsoc_redis_free(a);
    vsoc_redis_free(b);
}

/* ---- AUTH, SELECT, unix sockets ------------------------------------------------------ */

typedef struct got_blobs {
    size_t n;
    size_t bytes;
    int saw_nul;   /* a blob with a NUL byte inside came back whole */
    int stop_after;
} got_blobs_t;

static int take_blob(void *ctx, const char *vin, size_t vinlen, const void *blob, size_t n)
{
    got_blobs_t *g = ctx;
    ASSERT(vinlen > 0 && vinlen <= 63);
    ASSERT(vin[0] == 'V');
    /* Each blob is its vin's number repeated, with a NUL in the middle. */
    int k = atoi(vin + 1);
    ASSERT_EQ(n, (size_t)(k % 50) + 3);
    const unsigned char *b = blob;
    ASSERT_EQ(b[0], (unsigned char)k);
    ASSERT_EQ(b[1], 0);
    ASSERT_EQ(b[n - 1], (unsigned char)k);
    g->saw_nul |= b[1] == 0;
    g->n++;
    g->bytes += n;
    return g->stop_after && g->n == (size_t)g->stop_after ? 7 : 0;
}

static void test_auth(const server_t *s)
{
    char url[256];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/3", s->password, s->port);
    vsoc_redis_t *r = handle(url, "t9:", 2000, 0, 0);
    ASSERT_EQ(vsoc_redis_ping(r), 0);
    int got = 0;
    ASSERT_EQ(vsoc_redis_cooldown(r, "db3", 60000, NULL, &got), 0);
    ASSERT_EQ(got, 1);
    vsoc_redis_free(r);
    /* SELECT 3 took effect. */
    redisContext *c = raw(s);
    ASSERT_EQ(raw_int(c, "EXISTS t9:cooldown:db3"), 0);
    raw_ok(c, "SELECT 3");
    ASSERT_EQ(raw_int(c, "EXISTS t9:cooldown:db3"), 1);
    redisFree(c);

    /* The user name form (Redis 6 ACL): AUTH default <password>. */
    snprintf(url, sizeof url, "redis://default:%s@127.0.0.1:%d", s->password, s->port);
    r = handle(url, "t9:", 2000, 0, 0);
    ASSERT_EQ(vsoc_redis_ping(r), 0);
    vsoc_redis_free(r);

    /* A wrong password: the server's own message, not the password. */
    snprintf(url, sizeof url, "redis://:wrong-sekret@127.0.0.1:%d", s->port);
    r = handle(url, "t9:", 2000, 0, 0);
    ASSERT_EQ(vsoc_redis_ping(r), VSOC_EIO);
    ASSERT_EQ(vsoc_redis_up(r), 0);
    const char *e = vsoc_redis_errstr(r);
    if (!strstr(e, "AUTH failed: WRONGPASS") || strstr(e, "sekret"))
        TEST_FAIL_("wrong password: \"%s\"", e);
    vsoc_redis_free(r);

    /* No password at all. */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", s->port);
    r = handle(url, "t9:", 2000, 0, 0);
    ASSERT_EQ(vsoc_redis_ping(r), VSOC_EIO);
    if (!strstr(vsoc_redis_errstr(r), "NOAUTH"))
        TEST_FAIL_("no password: \"%s\"", vsoc_redis_errstr(r));
    vsoc_redis_free(r);

    /* An ACL user with exactly the rights docs/redis.md lists does all of it, the EVAL
     * fallback included. */
    c = raw(s);
    raw_ok(c, "ACL SETUSER vsoc on >pw-vsoc resetkeys ~vsoc:* resetchannels -@all +ping "
              "+select +evalsha +eval +script|load +set +pexpire +multi +exec +del +hset "
              "+hgetall +hget +zadd +zremrangebyscore +zcard +zrange +zrevrange +sismember "
              "+scard +sadd");
    snprintf(url, sizeof url, "redis://vsoc:pw-vsoc@127.0.0.1:%d/1", s->port);
    r = handle(url, NULL, 2000, 0, 0);
    for (int i = 0; i < 3; i++) {
        if (i == 1)
            raw_ok(c, "SCRIPT FLUSH");
        vsoc_fleet_result_t x;
        vsoc_redis_fleet_hit_t h = hit("r.acl", 10 * SEC, 2, i ? "B" : "A", T0 + i);
        if (vsoc_redis_fleet_hits(r, &h, 1, &x) != 0)
            TEST_FAIL_("ACL user: %s", vsoc_redis_errstr(r));
        ASSERT_EQ(x.vehicles, i ? 2 : 1);
        int64_t n;
        ASSERT_EQ(vsoc_redis_cooldown(r, "acl", 60000, NULL, &got), 0);
        ASSERT_EQ(got, i == 0);
        int adm = 0;
        ASSERT_EQ(vsoc_redis_window_admit(r, "acl", i ? (i == 1 ? "V1" : "V2") : "V0", 60000,
                                          10, &n, &adm),
                  0);
        vsoc_redis_blob_t hb = {"V1", 2, "\0b", 2};
        ASSERT_EQ(vsoc_redis_handoff_put(r, "acl", i, &hb, 1, 60000, 0), 0);
        int64_t at = -1;
        got_blobs_t none = {0};
        ASSERT_EQ(vsoc_redis_handoff_get(r, "acl", i + 1, &at, take_blob, &none, 0), 0);
        ASSERT_EQ(at, i);
        ASSERT_EQ(n, i + 1);
    }
    redisFree(c);
    vsoc_redis_free(r);

    /* The unix socket, with the password and database as parameters. */
    snprintf(url, sizeof url, "unix://%s?db=3&password=%s", s->sock, s->password);
    r = handle(url, "t9:", 2000, 0, 0);
    ASSERT_EQ(vsoc_redis_cooldown(r, "db3", 60000, NULL, &got), 0);
    ASSERT_EQ(got, 0);
    vsoc_redis_free(r);
}

/* ---- the server goes away ------------------------------------------------------------- */

static void test_down_and_back(server_t *s)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", s->port);
    vsoc_redis_t *r = handle(url, "t10:", 300, 200, 1000);
    vsoc_redis_stats_t st;
    vsoc_fleet_result_t out;
    int got;
    vsoc_redis_fleet_hit_t h = hit("r.down", 60 * SEC, 3, "A", T0);
    ASSERT_EQ(one(r, h).vehicles, 1);
    vsoc_redis_stats(r, &st);
    ASSERT_EQ(st.attempts, 1);
    ASSERT_EQ(st.reconnects, 0);

    /* A stopped server: the call gives up after the timeout. */
    ASSERT_EQ(kill(s->pid, SIGSTOP), 0);
    int64_t t = mono_ms();
    ASSERT_EQ(vsoc_redis_cooldown(r, "x", 1000, NULL, &got), VSOC_EIO);
    int64_t took = mono_ms() - t;
    if (took < 250 || took > 800)
        TEST_FAIL_("a stopped server took %" PRId64 " ms to fail, want ~300", took);
    ASSERT_EQ(vsoc_redis_up(r), 0);
    ASSERT(strstr(vsoc_redis_errstr(r), "timed out"));
    ASSERT_EQ(kill(s->pid, SIGCONT), 0);
    /* Within the backoff: no attempt, at once. */
    t = mono_ms();
    ASSERT_EQ(vsoc_redis_fleet_hits(r, &h, 1, &out), VSOC_EIO);
    ASSERT(mono_ms() - t < 50);
    vsoc_redis_stats(r, &st);
    ASSERT_EQ(st.attempts, 1);
    /* After it: one attempt, which works. */
    sleep_ms(250);
    ASSERT_EQ(vsoc_redis_ping(r), 0);
    vsoc_redis_stats(r, &st);
    ASSERT_EQ(st.attempts, 2);
    ASSERT_EQ(st.reconnects, 1);
    ASSERT_EQ(st.errors, 2);

    /* A killed server: the next call fails fast; a big pipeline into the closed socket
     * must not raise SIGPIPE in this process (the default action would end it). */
    server_kill(s);
    enum { N = 3000 };
    static vsoc_redis_fleet_hit_t many[N];
    static vsoc_fleet_result_t outs[N];
    static char rid[VSOC_ID_MAX + 1]; /* long keys: megabytes to write */
    memset(rid, 'r', sizeof rid - 1);
    for (int i = 0; i < N; i++)
        many[i] = hit(rid, 60 * SEC, 3, "A", T0 + i);
    t = mono_ms();
    ASSERT_EQ(vsoc_redis_fleet_hits(r, many, N, outs), VSOC_EIO);
    ASSERT(mono_ms() - t < 400);
    ASSERT_EQ(vsoc_redis_up(r), 0);
    /* Backoff: the success reset it to 200 ms; an attempt after that fails (refused) and
     * doubles it to 400 ms. */
    ASSERT_EQ(vsoc_redis_ping(r), VSOC_EIO);
    vsoc_redis_stats(r, &st);
    ASSERT_EQ(st.attempts, 2);
    sleep_ms(250);
    ASSERT_EQ(vsoc_redis_ping(r), VSOC_EIO);
    ASSERT(strstr(vsoc_redis_errstr(r), "connect: Connection refused"));
    vsoc_redis_stats(r, &st);
    ASSERT_EQ(st.attempts, 3);
    sleep_ms(250);
    ASSERT_EQ(vsoc_redis_ping(r), VSOC_EIO);
    vsoc_redis_stats(r, &st);
    ASSERT_EQ(st.attempts, 3); /* 250 ms < 400 ms */

    /* The server comes back on the same port (empty: it kept nothing). */
    server_start(s, 0);
    sleep_ms(450);
    ASSERT_EQ(one(r, h).vehicles, 1);
    ASSERT_EQ(vsoc_redis_up(r), 1);
    ASSERT_EQ(one(r, hit("r.down", 60 * SEC, 3, "B", T0 + 1)).vehicles, 2);
    vsoc_redis_stats(r, &st);
    ASSERT_EQ(st.attempts, 4);
    ASSERT_EQ(st.reconnects, 2);
    vsoc_redis_free(r);
}

/* A partition's engine state handed from one instance to the next: binary blobs (NUL
 * bytes) of more vehicles than one HSET carries, the offset checked, a newer handoff
 * replacing an older one whole, an empty one, the expiry, and a key of another type. */
static void test_handoff(const server_t *s)
{
    vsoc_redis_t *a = handle_at(s, "t9:"), *b = handle_at(s, "t9:");
    enum { N = 1300 };
    static char vins[N][8];
    static unsigned char blobs[N][60];
    static vsoc_redis_blob_t v[N];
    for (int i = 0; i < N; i++) {
        snprintf(vins[i], sizeof vins[i], "V%d", i);
        size_t n = (size_t)(i % 50) + 3;
        memset(blobs[i], (unsigned char)i, n);
        blobs[i][1] = 0;
        v[i] = (vsoc_redis_blob_t){vins[i], strlen(vins[i]), blobs[i], n};
    }
    ASSERT_EQ(vsoc_redis_handoff_put(a, "g:t:3", 1234, v, N, 60000, 0), 0);
    got_blobs_t g = {0};
    int64_t at = 0;
    /* Another offset: the handoff is not used, and nothing is handed over. */
    ASSERT_EQ(vsoc_redis_handoff_get(b, "g:t:3", 1200, &at, take_blob, &g, 0), 0);
    ASSERT_EQ(at, 1234);
    ASSERT_EQ(g.n, 0);
    ASSERT_EQ(vsoc_redis_handoff_get(b, "g:t:3", 1234, &at, take_blob, &g, 0), 0);
    ASSERT_EQ(at, 1234);
    ASSERT_EQ(g.n, N);
    ASSERT(g.saw_nul);
    /* fn stops the walk with its value. */
    got_blobs_t g2 = {.stop_after = 5};
    ASSERT_EQ(vsoc_redis_handoff_get(b, "g:t:3", 1234, &at, take_blob, &g2, 0), 7);
    ASSERT_EQ(g2.n, 5);
    /* A later handoff replaces the whole hash: fewer vehicles, a new offset. */
    ASSERT_EQ(vsoc_redis_handoff_put(b, "g:t:3", 2000, v, 10, 60000, 0), 0);
    got_blobs_t g3 = {0};
    ASSERT_EQ(vsoc_redis_handoff_get(a, "g:t:3", 2000, &at, take_blob, &g3, 0), 0);
    ASSERT_EQ(g3.n, 10);
    redisContext *c = raw(s);
    long long ttl = raw_int(c, "PTTL t9:handoff:g:t:3");
    ASSERT(ttl > 0 && ttl <= 60000);
    /* No vehicles: the offset alone says the partition had none. */
    ASSERT_EQ(vsoc_redis_handoff_put(a, "g:t:4", 7, NULL, 0, 60000, 0), 0);
    got_blobs_t g4 = {0};
    ASSERT_EQ(vsoc_redis_handoff_get(b, "g:t:4", 7, &at, take_blob, &g4, 0), 0);
    ASSERT_EQ(at, 7);
    ASSERT_EQ(g4.n, 0);
    /* None there, or a key that is not a hash of ours: no handoff (-1), not an error for
     * the missing one. */
    ASSERT_EQ(vsoc_redis_handoff_get(b, "g:t:5", 0, &at, take_blob, &g4, 0), 0);
    ASSERT_EQ(at, -1);
    raw_ok(c, "SET t9:handoff:g:t:6 x");
    ASSERT_EQ(vsoc_redis_handoff_get(b, "g:t:6", 0, &at, take_blob, &g4, 0), VSOC_EIO);
    ASSERT_EQ(at, -1);
    ASSERT(vsoc_redis_up(b)); /* an error reply keeps the connection */
    /* Expiry. */
    ASSERT_EQ(vsoc_redis_handoff_put(a, "g:t:7", 1, v, 1, 200, 0), 0);
    sleep_ms(300);
    ASSERT_EQ(vsoc_redis_handoff_get(b, "g:t:7", 1, &at, take_blob, &g4, 0), 0);
    ASSERT_EQ(at, -1);
    redisFree(c);
    ASSERT_EQ(vsoc_redis_handoff_put(a, "", 1, v, 1, 200, 0), VSOC_EINVAL);
    ASSERT_EQ(vsoc_redis_handoff_put(a, "k", -1, v, 1, 200, 0), VSOC_EINVAL);
    ASSERT_EQ(vsoc_redis_handoff_put(a, "k", 1, NULL, 1, 200, 0), VSOC_EINVAL);
    vsoc_redis_blob_t empty_vin = {"", 0, "x", 1};
    ASSERT_EQ(vsoc_redis_handoff_put(a, "k", 1, &empty_vin, 1, 200, 0), VSOC_EINVAL);
    vsoc_redis_free(a);
    vsoc_redis_free(b);
}

int main(void)
{
    uint64_t seed = (uint64_t)time(NULL);
    const char *env = getenv("VSOC_TEST_SEED");
    if (env && *env)
        seed = strtoull(env, NULL, 10);
    snprintf(g_dir, sizeof g_dir, "/tmp/vsoc-redis-XXXXXX");
    ASSERT(mkdtemp(g_dir));
    atexit(cleanup);

    test_urls();

    server_t plain = {0}, secured = {0};
    plain.port = free_port();
    server_start(&plain, 0);
    secured.port = free_port();
    snprintf(secured.password, sizeof secured.password, "s3kret-%d", secured.port);
    server_start(&secured, 1);

    test_fleet_two_instances(&plain);
    test_fleet_window(&plain);
    test_fleet_rearm_after_timespan(&plain);
    test_fleet_matches_in_process(&plain, seed);
    test_fleet_matches_in_process(&secured, seed + 1);
    test_fleet_noscript_and_errors(&plain);
    test_fleet_pipeline(&plain);
    test_cooldown(&plain);
    test_window(&plain);
    test_handoff(&plain);
    test_auth(&secured);
    test_down_and_back(&plain);
    printf("redis: all tests passed (seed %" PRIu64 ")\n", seed);
    return 0;
}
