/* test_http.c: the service's HTTP endpoint (connectors/http) on loopback, driven over real
 * TCP sockets by a small HTTP/1.1 client and by curl when it is installed: every route,
 * methods, status codes and headers, reload that fails and succeeds, metrics passing
 * through intact, request bodies, concurrent requests, liveness during a slow reload,
 * stopping with requests in flight, and start errors (busy port, bad addresses). */
#include "http/http.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- the service stand-in --------------------------------------------------------------- */

struct svc {
    atomic_int ready;           /* what ready answers */
    atomic_int reload_ok;       /* what reload answers */
    atomic_int reload_delay_ms; /* how long a reload takes */
    atomic_int metrics_delay_ms;
    atomic_int reload_calls, metrics_calls;
    atomic_int in_reload, in_metrics, max_in_metrics;
};

/* The handler's page, built with the writer as the service would. */
static const char expected_page[] =
    "# HELP vsoc_events_total Events read, by source.\n"
    "# TYPE vsoc_events_total counter\n"
    "vsoc_events_total{source=\"kafka:vsoc.events\"} 123456789012\n"
    "vsoc_events_total{source=\"file \\\"a\\\\b\\\"\\nnext\"} 0\n"
    "# HELP vsoc_ruleset_loaded Whether a ruleset is loaded.\n"
    "# TYPE vsoc_ruleset_loaded gauge\n"
    "vsoc_ruleset_loaded 1\n"
    "# TYPE vsoc_match_seconds histogram\n"
    "vsoc_match_seconds_bucket{le=\"0.001\"} 1\n"
    "vsoc_match_seconds_bucket{le=\"0.01\"} 3\n"
    "vsoc_match_seconds_bucket{le=\"+Inf\"} 4\n"
    "vsoc_match_seconds_sum 0.5\n"
    "vsoc_match_seconds_count 4\n";

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void svc_metrics(void *ctx, vsoc_prom_t *out)
{
    struct svc *v = ctx;
    int in = atomic_fetch_add(&v->in_metrics, 1) + 1;
    int max = atomic_load(&v->max_in_metrics);
    while (in > max && !atomic_compare_exchange_weak(&v->max_in_metrics, &max, in))
        ;
    atomic_fetch_add(&v->metrics_calls, 1);
    if (atomic_load(&v->metrics_delay_ms) > 0)
        sleep_ms(atomic_load(&v->metrics_delay_ms));
    vsoc_prom_family(out, "vsoc_events_total", "counter", "Events read, by source.");
    vsoc_prom_label_t a[] = {{"source", "kafka:vsoc.events"}};
    vsoc_prom_sample_u64(out, "vsoc_events_total", a, 1, 123456789012ULL);
    vsoc_prom_label_t b[] = {{"source", "file \"a\\b\"\nnext"}};
    vsoc_prom_sample_u64(out, "vsoc_events_total", b, 1, 0);
    vsoc_prom_family(out, "vsoc_ruleset_loaded", "gauge", "Whether a ruleset is loaded.");
    vsoc_prom_sample(out, "vsoc_ruleset_loaded", NULL, 0, 1);
    const double bounds[] = {0.001, 0.01};
    const uint64_t counts[] = {1, 2, 1};
    vsoc_prom_family(out, "vsoc_match_seconds", "histogram", NULL);
    vsoc_prom_histogram(out, "vsoc_match_seconds", NULL, 0, bounds, counts, 2, 0.5);
    atomic_fetch_sub(&v->in_metrics, 1);
}

static int svc_ready(void *ctx, char *why, size_t n)
{
    struct svc *v = ctx;
    if (atomic_load(&v->ready))
        return 1;
    snprintf(why, n, "loading rules\nfrom /etc/vsoc/rules");
    return 0;
}

static int svc_reload(void *ctx, char *msg, size_t n)
{
    struct svc *v = ctx;
    atomic_store(&v->in_reload, 1);
    atomic_fetch_add(&v->reload_calls, 1);
    if (atomic_load(&v->reload_delay_ms) > 0)
        sleep_ms(atomic_load(&v->reload_delay_ms));
    int ok = atomic_load(&v->reload_ok);
    if (ok)
        snprintf(msg, n, "reloaded: 38 rules, 4 playbooks");
    else
        snprintf(msg, n, "rules/can/dos.yml:3:7: error: unknown field 'conditon'\n"
                         "(the running ruleset is kept)");
    atomic_store(&v->in_reload, 0);
    return ok ? 0 : -1;
}

static vsoc_http_t *start_svc(const char *listen, struct svc *v)
{
    vsoc_http_handlers_t h = {svc_metrics, svc_ready, svc_reload, NULL, v};
    char err[256];
    vsoc_http_t *s = vsoc_http_start(listen, &h, err, sizeof err);
    if (!s)
        TEST_FAIL_("cannot start the HTTP server on %s: %s", listen, err);
    ASSERT(vsoc_http_port(s) > 0);
    return s;
}

/* ---- a small HTTP/1.1 client ------------------------------------------------------------ */

struct resp {
    int status;             /* 0: no status line (connection closed or timed out) */
    char head[4096];        /* status line and headers */
    char body[1 << 17];
    size_t body_len;
};

static int connect_to(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
        a.sin6_addr = in6addr_loopback;
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* A header's value from r->head (case-insensitive name), or NULL. */
static const char *header(const struct resp *r, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line && line[2]; ) {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r");
            if (len >= n)
                len = n - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        line = strstr(line, "\r\n");
    }
    return NULL;
}

/* Reads one response from fd: the head, then Content-Length bytes of body (none for HEAD).
 * Returns 0, or -1 when the connection closed or timed out first (r->status tells how far
 * it got). */
static int read_response(int fd, int head_only, struct resp *r)
{
    static _Thread_local char buf[sizeof r->head + sizeof r->body];
    size_t have = 0;
    memset(r, 0, offsetof(struct resp, body));
    r->body_len = 0;
    char *end = NULL;
    while (!end) {
        if (have == sizeof r->head - 1)
            return -1;
        ssize_t k = recv(fd, buf + have, sizeof r->head - 1 - have, 0);
        if (k <= 0)
            return -1;
        have += (size_t)k;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - buf) + 4;
    memcpy(r->head, buf, head_len);
    r->head[head_len] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
        return -1;
    char cl[32];
    size_t want = 0;
    if (!head_only && header(r, "Content-Length", cl, sizeof cl))
        want = strtoul(cl, NULL, 10);
    ASSERT(want < sizeof r->body);
    size_t got = have - head_len;
    memcpy(r->body, buf + head_len, got);
    while (got < want) {
        ssize_t k = recv(fd, r->body + got, want - got, 0);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    r->body_len = got;
    r->body[got] = '\0';
    return 0;
}

/* One request on its own connection. Returns r->status (0 when no response came). */
static int request_raw(int port, const char *req, size_t n, int head_only, struct resp *r)
{
    memset(r, 0, offsetof(struct resp, body));
    int fd = connect_to(AF_INET, port);
    if (fd < 0)
        TEST_FAIL_("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    if (send_all(fd, req, n) == 0)
        read_response(fd, head_only, r);
    close(fd);
    return r->status;
}

static int request(int port, const char *method, const char *path, const char *body,
                   struct resp *r)
{
    static _Thread_local char req[4096];
    int n;
    if (body)
        n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, port, strlen(body), body);
    else
        n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                     method, path, port);
    ASSERT(n > 0 && (size_t)n < sizeof req);
    return request_raw(port, req, (size_t)n, strcmp(method, "HEAD") == 0, r);
}

#define ASSERT_HEADER(r, name, want)                                                       \
    do {                                                                                   \
        char v__[256];                                                                     \
        const char *got__ = header((r), (name), v__, sizeof v__);                          \
        if (!got__ || strcmp(got__, (want)) != 0)                                          \
            TEST_FAIL_("header %s: \"%s\" != \"%s\"\n%s", (name), got__ ? got__ : "(none)",  \
                       (want), (r)->head);                                                 \
    } while (0)

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"

/* ---- tests -------------------------------------------------------------------------------- */

static void test_routes(void)
{
    static struct svc v;
    atomic_store(&v.ready, 1);
    atomic_store(&v.reload_ok, 1);
    vsoc_http_t *s = start_svc("127.0.0.1:0", &v);
    int port = vsoc_http_port(s);
    static struct resp r;

    ASSERT_EQ(request(port, "GET", "/healthz", NULL, &r), 200);
    ASSERT_STREQ(r.body, "ok\n");
    ASSERT_HEADER(&r, "Content-Type", CT_TEXT);
    ASSERT_HEADER(&r, "Content-Length", "3");

    ASSERT_EQ(request(port, "HEAD", "/healthz", NULL, &r), 200);
    ASSERT_EQ(r.body_len, 0);
    ASSERT_HEADER(&r, "Content-Length", "3");

    /* Readiness, and the reason flattened to one line. */
    ASSERT_EQ(request(port, "GET", "/readyz", NULL, &r), 200);
    ASSERT_STREQ(r.body, "ready\n");
    atomic_store(&v.ready, 0);
    ASSERT_EQ(request(port, "GET", "/readyz", NULL, &r), 503);
    ASSERT_STREQ(r.body, "loading rules from /etc/vsoc/rules\n");
    ASSERT_HEADER(&r, "Content-Type", CT_TEXT);
    atomic_store(&v.ready, 1);

    /* The handler's page passes through byte for byte, then the server's own family. */
    ASSERT_EQ(request(port, "GET", "/metrics", NULL, &r), 200);
    ASSERT_HEADER(&r, "Content-Type", CT_PROM);
    char cl[32];
    ASSERT(header(&r, "Content-Length", cl, sizeof cl));
    ASSERT_EQ(strtoul(cl, NULL, 10), r.body_len);
    if (r.body_len < sizeof expected_page - 1 ||
        memcmp(r.body, expected_page, sizeof expected_page - 1) != 0)
        TEST_FAIL_("/metrics does not start with the handler's page:\n%s", r.body);
    const char *own = r.body + sizeof expected_page - 1;
    ASSERT(strncmp(own, "# HELP vsoc_http_requests_total ", 32) == 0);
    ASSERT(strstr(own, "# TYPE vsoc_http_requests_total counter\n") != NULL);
    ASSERT(strstr(own, "vsoc_http_requests_total{handler=\"/healthz\",code=\"200\"} 2\n"));
    ASSERT(strstr(own, "vsoc_http_requests_total{handler=\"/readyz\",code=\"503\"} 1\n"));

    ASSERT_EQ(request(port, "HEAD", "/metrics", NULL, &r), 200);
    ASSERT_EQ(r.body_len, 0);
    ASSERT_HEADER(&r, "Content-Type", CT_PROM);
    ASSERT(header(&r, "Content-Length", cl, sizeof cl) && strtoul(cl, NULL, 10) > 100);

    /* The query string does not change the route. */
    ASSERT_EQ(request(port, "GET", "/metrics?name[]=vsoc_up", NULL, &r), 200);

    /* Unknown paths, near misses included. */
    const char *missing[] = {"/", "/metrics/", "/Metrics", "/healthz2", "/-/reload/x",
                             "/reload", "/../metrics"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        if (request(port, "GET", missing[i], NULL, &r) != 404)
            TEST_FAIL_("GET %s: %d, want 404", missing[i], r.status);
        ASSERT_STREQ(r.body, "not found\n");
        ASSERT_HEADER(&r, "Content-Type", CT_TEXT);
    }

    /* Known paths, wrong methods: 405 with Allow. */
    const char *get_paths[] = {"/metrics", "/healthz", "/readyz"};
    const char *bad_get[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = 0; j < sizeof bad_get / sizeof bad_get[0]; j++) {
            if (request(port, bad_get[j], get_paths[i], NULL, &r) != 405)
                TEST_FAIL_("%s %s: %d, want 405", bad_get[j], get_paths[i], r.status);
            ASSERT_HEADER(&r, "Allow", "GET, HEAD");
            ASSERT_STREQ(r.body, "method not allowed\n");
        }
    }
    const char *bad_post[] = {"GET", "HEAD", "DELETE"};
    for (size_t j = 0; j < 3; j++) {
        if (request(port, bad_post[j], "/-/reload", NULL, &r) != 405)
            TEST_FAIL_("%s /-/reload: %d, want 405", bad_post[j], r.status);
        ASSERT_HEADER(&r, "Allow", "POST, PUT");
    }
    ASSERT_EQ(atomic_load(&v.reload_calls), 0);

    /* A request libmicrohttpd cannot parse is refused and the server carries on. */
    static const char junk[] = "NONSENSE\r\n\r\n";
    ASSERT(request_raw(port, junk, sizeof junk - 1, 0, &r) != 200);
    ASSERT_EQ(request(port, "GET", "/healthz", NULL, &r), 200);

    /* Keep-alive: two requests on one connection. */
    int fd = connect_to(AF_INET, port);
    ASSERT(fd >= 0);
    static const char ka[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(send_all(fd, ka, sizeof ka - 1), 0);
    ASSERT_EQ(read_response(fd, 0, &r), 0);
    ASSERT_EQ(r.status, 200);
    static const char ka2[] = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(send_all(fd, ka2, sizeof ka2 - 1), 0);
    ASSERT_EQ(read_response(fd, 0, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "ready\n");
    close(fd);

    vsoc_http_stop(s);
}

static void test_reload(void)
{
    static struct svc v;
    atomic_store(&v.ready, 1);
    vsoc_http_t *s = start_svc("127.0.0.1:0", &v);
    int port = vsoc_http_port(s);
    static struct resp r;

    ASSERT_EQ(request(port, "POST", "/-/reload", NULL, &r), 500);
    ASSERT_STREQ(r.body, "rules/can/dos.yml:3:7: error: unknown field 'conditon' "
                         "(the running ruleset is kept)\n");
    ASSERT_HEADER(&r, "Content-Type", CT_TEXT);
    ASSERT_EQ(atomic_load(&v.reload_calls), 1);

    atomic_store(&v.reload_ok, 1);
    ASSERT_EQ(request(port, "POST", "/-/reload", NULL, &r), 200);
    ASSERT_STREQ(r.body, "reloaded: 38 rules, 4 playbooks\n");
    ASSERT_EQ(request(port, "PUT", "/-/reload", NULL, &r), 200); /* as Prometheus allows */
    ASSERT_EQ(atomic_load(&v.reload_calls), 3);

    /* A small body is accepted (and ignored); a large one is refused before the handler. */
    ASSERT_EQ(request(port, "POST", "/-/reload", "{\"why\":\"rules changed\"}", &r), 200);
    ASSERT_EQ(atomic_load(&v.reload_calls), 4);
    static char big[VSOC_HTTP_MAX_BODY + 2];
    memset(big, 'x', sizeof big - 1);
    ASSERT_EQ(request(port, "POST", "/-/reload", big, &r), 413);
    ASSERT_STREQ(r.body, "request body too large (at most 1024 bytes)\n");
    static const char huge[] = "POST /-/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               "Content-Length: 99999999999999\r\n\r\n";
    ASSERT_EQ(request_raw(port, huge, sizeof huge - 1, 0, &r), 413);
    ASSERT_EQ(atomic_load(&v.reload_calls), 4);

    /* A chunked body has no length to refuse up front: past the limit the connection
     * closes and the handler never runs. */
    static char chunked[4096];
    int n = snprintf(chunked, sizeof chunked,
                     "POST /-/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n%x\r\n",
                     (unsigned)sizeof big - 1);
    memcpy(chunked + n, big, sizeof big - 1);
    n += (int)sizeof big - 1;
    n += snprintf(chunked + n, sizeof chunked - (size_t)n, "\r\n0\r\n\r\n");
    ASSERT(request_raw(port, chunked, (size_t)n, 0, &r) != 200);
    ASSERT_EQ(atomic_load(&v.reload_calls), 4);
    /* A small chunked body is fine. */
    static const char small_chunked[] = "POST /-/reload HTTP/1.1\r\nHost: x\r\n"
                                        "Connection: close\r\nTransfer-Encoding: chunked\r\n"
                                        "\r\n3\r\nabc\r\n0\r\n\r\n";
    ASSERT_EQ(request_raw(port, small_chunked, sizeof small_chunked - 1, 0, &r), 200);
    ASSERT_EQ(atomic_load(&v.reload_calls), 5);

    vsoc_http_stop(s);
}

/* ---- concurrency ---------------------------------------------------------------------- */

#define NCONCURRENT 20

struct client {
    int port;
    const char *method, *path;
    pthread_barrier_t *go;
    struct resp r;
    double took;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    if (c->go)
        pthread_barrier_wait(c->go);
    double t0 = now_s();
    request(c->port, c->method, c->path, NULL, &c->r);
    c->took = now_s() - t0;
    return NULL;
}

static void test_concurrent(void)
{
    static struct svc v;
    atomic_store(&v.ready, 1);
    atomic_store(&v.reload_ok, 1);
    atomic_store(&v.metrics_delay_ms, 5);
    vsoc_http_t *s = start_svc("127.0.0.1:0", &v);
    int port = vsoc_http_port(s);

    /* 20 scrapes at once: all answered in full, the handler never re-entered. */
    static struct client c[NCONCURRENT];
    pthread_t th[NCONCURRENT];
    pthread_barrier_t go;
    ASSERT_EQ(pthread_barrier_init(&go, NULL, NCONCURRENT), 0);
    for (int i = 0; i < NCONCURRENT; i++) {
        c[i] = (struct client){.port = port, .method = "GET", .path = "/metrics", .go = &go};
        ASSERT_EQ(pthread_create(&th[i], NULL, client_main, &c[i]), 0);
    }
    for (int i = 0; i < NCONCURRENT; i++)
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < NCONCURRENT; i++) {
        if (c[i].r.status != 200)
            TEST_FAIL_("concurrent request %d: status %d", i, c[i].r.status);
        ASSERT(memcmp(c[i].r.body, expected_page, sizeof expected_page - 1) == 0);
    }
    ASSERT_EQ(atomic_load(&v.metrics_calls), NCONCURRENT);
    ASSERT_EQ(atomic_load(&v.max_in_metrics), 1);

    /* A reload that takes a while does not hold up liveness or scrapes. */
    atomic_store(&v.reload_delay_ms, 1500);
    struct client rl = {.port = port, .method = "POST", .path = "/-/reload"};
    pthread_t rt;
    ASSERT_EQ(pthread_create(&rt, NULL, client_main, &rl), 0);
    for (int i = 0; i < 200 && !atomic_load(&v.in_reload); i++)
        sleep_ms(5);
    ASSERT_EQ(atomic_load(&v.in_reload), 1);
    static struct resp r;
    double t0 = now_s();
    ASSERT_EQ(request(port, "GET", "/healthz", NULL, &r), 200);
    ASSERT_EQ(request(port, "GET", "/metrics", NULL, &r), 200);
    double took = now_s() - t0;
    if (took > 1.0)
        TEST_FAIL_("/healthz and /metrics took %.3f s during a reload", took);
    ASSERT_EQ(atomic_load(&v.in_reload), 1); /* answered while still reloading */
    ASSERT_EQ(pthread_join(rt, NULL), 0);
    ASSERT_EQ(rl.r.status, 200);
    ASSERT(rl.took >= 1.4);

    vsoc_http_stop(s);
}

/* ---- stopping ------------------------------------------------------------------------- */

static void test_stop_in_flight(void)
{
    static struct svc v;
    atomic_store(&v.ready, 1);
    atomic_store(&v.reload_ok, 1);
    atomic_store(&v.reload_delay_ms, 500);
    vsoc_http_t *s = start_svc("127.0.0.1:0", &v);
    int port = vsoc_http_port(s);

    /* A connection that sent half a request, and a reload in its handler. */
    int idle = connect_to(AF_INET, port);
    ASSERT(idle >= 0);
    static const char half[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    ASSERT_EQ(send_all(idle, half, sizeof half - 1), 0);
    static struct client rl;
    rl = (struct client){.port = port, .method = "POST", .path = "/-/reload"};
    pthread_t rt;
    ASSERT_EQ(pthread_create(&rt, NULL, client_main, &rl), 0);
    for (int i = 0; i < 200 && !atomic_load(&v.in_reload); i++)
        sleep_ms(5);
    ASSERT_EQ(atomic_load(&v.in_reload), 1);

    double t0 = now_s();
    vsoc_http_stop(s);
    double took = now_s() - t0;
    /* Stop waited for the running handler, not for the idle connection's timeout. */
    ASSERT_EQ(atomic_load(&v.in_reload), 0);
    ASSERT_EQ(atomic_load(&v.reload_calls), 1);
    if (took > 3.0)
        TEST_FAIL_("stop took %.3f s", took);
    ASSERT_EQ(pthread_join(rt, NULL), 0);
    ASSERT(rl.r.status == 200 || rl.r.status == 0);

    /* The half-sent request's connection was closed. */
    char buf[64];
    ssize_t k = recv(idle, buf, sizeof buf, 0);
    ASSERT(k <= 0);
    close(idle);

    /* Nothing listens any more. */
    int fd = connect_to(AF_INET, port);
    ASSERT(fd < 0);
    ASSERT_EQ(errno, ECONNREFUSED);
    vsoc_http_stop(NULL);
}

/* ---- start errors ------------------------------------------------------------------------ */

static void test_start_errors(void)
{
    static struct svc v;
    vsoc_http_t *s = start_svc("127.0.0.1:0", &v);
    int port = vsoc_http_port(s);
    char addr[64], err[256];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    vsoc_http_handlers_t h = {NULL, NULL, NULL, NULL, NULL};

    /* A port in use: the message names the address and the system's reason. */
    err[0] = '\0';
    ASSERT(vsoc_http_start(addr, &h, err, sizeof err) == NULL);
    char want[128];
    snprintf(want, sizeof want, "http: cannot listen on %s: %s", addr, strerror(EADDRINUSE));
    ASSERT_STREQ(err, want);

    /* Once stopped, the port is free again. */
    vsoc_http_stop(s);
    s = vsoc_http_start(addr, &h, err, sizeof err);
    if (!s)
        TEST_FAIL_("restart on %s: %s", addr, err);
    ASSERT_EQ(vsoc_http_port(s), port);
    vsoc_http_stop(s);

    static const struct {
        const char *listen, *why;
    } bad[] = {
        {"", "no :PORT"},
        {"9100", "no :PORT"},
        {"127.0.0.1", "no :PORT"},
        {":9100", "no host"},
        {"127.0.0.1:", "the port must be"},
        {"127.0.0.1:65536", "the port must be"},
        {"127.0.0.1:-1", "the port must be"},
        {"127.0.0.1:80x", "the port must be"},
        {"::1:9100", "[ADDRESS]:PORT"},
        {"[::1]9100", "[ADDRESS]:PORT"},
        {"[::1", "[ADDRESS]:PORT"},
        {"[127.0.0.1]:9100", "not an IPv6 address"},
        {"example.com:9100", "IPv4 address, [IPv6 address] or localhost"},
        {"127.1:9100", "IPv4 address"},
        {"256.0.0.1:9100", "IPv4 address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        vsoc_http_t *x = vsoc_http_start(bad[i].listen, &h, err, sizeof err);
        if (x)
            TEST_FAIL_("'%s' was accepted", bad[i].listen);
        char prefix[96];
        snprintf(prefix, sizeof prefix, "http: listen address '%s': ", bad[i].listen);
        if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, bad[i].why))
            TEST_FAIL_("'%s': \"%s\", want \"%s...%s\"", bad[i].listen, err, prefix,
                       bad[i].why);
    }
    ASSERT(vsoc_http_start(NULL, &h, err, sizeof err) == NULL);
    ASSERT(vsoc_http_start("nonsense", &h, NULL, 0) == NULL);
}

/* No handlers: always ready, no reload route, the server's own metrics only. */
static void test_no_handlers(void)
{
    char err[256];
    vsoc_http_t *s = vsoc_http_start("localhost:0", NULL, err, sizeof err);
    if (!s)
        TEST_FAIL_("start on localhost:0: %s", err);
    int port = vsoc_http_port(s);
    static struct resp r;
    ASSERT_EQ(request(port, "GET", "/healthz", NULL, &r), 200);
    ASSERT_EQ(request(port, "GET", "/readyz", NULL, &r), 200);
    ASSERT_STREQ(r.body, "ready\n");
    ASSERT_EQ(request(port, "POST", "/-/reload", NULL, &r), 404);
    ASSERT_EQ(request(port, "DELETE", "/readyz", NULL, &r), 405);
    ASSERT_EQ(request(port, "GET", "/metrics", NULL, &r), 200);
    ASSERT_STREQ(r.body,
                 "# HELP vsoc_http_requests_total HTTP requests answered by the service's "
                 "endpoint, by handler and code.\n"
                 "# TYPE vsoc_http_requests_total counter\n"
                 "vsoc_http_requests_total{handler=\"/healthz\",code=\"200\"} 1\n"
                 "vsoc_http_requests_total{handler=\"/readyz\",code=\"200\"} 1\n"
                 "vsoc_http_requests_total{handler=\"/readyz\",code=\"405\"} 1\n"
                 "vsoc_http_requests_total{handler=\"other\",code=\"404\"} 1\n");
    vsoc_http_stop(s);
}

/* A handler that writes an invalid metric makes the scrape fail loudly. */
static void bad_metrics(void *ctx, vsoc_prom_t *out)
{
    vsoc_prom_family(out, "vsoc_ok", "gauge", "fine");
    vsoc_prom_sample(out, "vsoc_ok", NULL, 0, 1);
    vsoc_prom_label_t l[] = {{"bad-label", "x"}};
    vsoc_prom_sample(out, "vsoc_ok", l, 1, 2);
}

static void test_bad_metrics(void)
{
    vsoc_http_handlers_t h = {.metrics = bad_metrics};
    char err[256];
    vsoc_http_t *s = vsoc_http_start("127.0.0.1:0", &h, err, sizeof err);
    if (!s)
        TEST_FAIL_("start: %s", err);
    static struct resp r;
    ASSERT_EQ(request(vsoc_http_port(s), "GET", "/metrics", NULL, &r), 500);
    ASSERT_STREQ(r.body, "metrics: metric vsoc_ok: invalid label name 'bad-label'\n");
    ASSERT_HEADER(&r, "Content-Type", CT_TEXT);
    vsoc_http_stop(s);
}

static void test_ipv6(void)
{
    static struct svc v;
    vsoc_http_handlers_t h = {svc_metrics, svc_ready, svc_reload, NULL, &v};
    char err[256];
    vsoc_http_t *s = vsoc_http_start("[::1]:0", &h, err, sizeof err);
    if (!s) {
        /* A container without IPv6 loopback: say so, the IPv4 tests cover the rest. */
        printf("test_http: [::1] unavailable here (%s); IPv6 not exercised\n", err);
        ASSERT(strstr(err, "http: cannot listen on [::1]:0: ") == err);
        return;
    }
    int port = vsoc_http_port(s);
    int fd = connect_to(AF_INET6, port);
    ASSERT(fd >= 0);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(send_all(fd, req, sizeof req - 1), 0);
    static struct resp r;
    ASSERT_EQ(read_response(fd, 0, &r), 0);
    ASSERT_EQ(r.status, 200);
    close(fd);
    vsoc_http_stop(s);
}

/* ---- curl ----------------------------------------------------------------------------- */

/* Runs a shell command and returns its stdout. */
static const char *run(const char *cmd)
{
    static char out[1 << 16];
    FILE *f = popen(cmd, "r");
    if (!f)
        TEST_FAIL_("popen %s: %s", cmd, strerror(errno));
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    if (st != 0)
        TEST_FAIL_("%s: exit status %d, output:\n%s", cmd, st, out);
    return out;
}

static void test_curl(void)
{
    const char *curl = NULL;
    if (access("/usr/bin/curl", X_OK) == 0)
        curl = "/usr/bin/curl";
    else if (access("/usr/local/bin/curl", X_OK) == 0)
        curl = "/usr/local/bin/curl";
    if (!curl) {
        printf("test_http: curl not installed; curl checks not run\n");
        return;
    }
    static struct svc v;
    atomic_store(&v.ready, 1);
    atomic_store(&v.reload_ok, 1);
    vsoc_http_t *s = start_svc("127.0.0.1:0", &v);
    int port = vsoc_http_port(s);
    char cmd[512];
    const char *out;
    /* --noproxy: an http_proxy in the environment must not intercept loopback. */
#define CURL "%s -sS -m 5 --noproxy '*' "
    snprintf(cmd, sizeof cmd, CURL "-w '%%{http_code} %%{content_type}' http://127.0.0.1:%d/healthz",
             curl, port);
    ASSERT_STREQ(run(cmd), "ok\n200 text/plain; charset=utf-8");

    snprintf(cmd, sizeof cmd, CURL "-w '%%{http_code}' -X POST http://127.0.0.1:%d/-/reload",
             curl, port);
    ASSERT_STREQ(run(cmd), "reloaded: 38 rules, 4 playbooks\n200");
    atomic_store(&v.reload_ok, 0);
    snprintf(cmd, sizeof cmd, CURL "-w '%%{http_code}' -X PUT http://127.0.0.1:%d/-/reload",
             curl, port);
    out = run(cmd);
    ASSERT(strstr(out, "error: unknown field 'conditon' (the running ruleset is kept)\n500"));

    snprintf(cmd, sizeof cmd, CURL "-w '%%{http_code} %%{content_type}' http://127.0.0.1:%d/metrics",
             curl, port);
    out = run(cmd);
    ASSERT(strncmp(out, expected_page, sizeof expected_page - 1) == 0);
    ASSERT(strstr(out, "\n200 " CT_PROM) != NULL);

    snprintf(cmd, sizeof cmd, CURL "-I http://127.0.0.1:%d/metrics", curl, port);
    out = run(cmd);
    ASSERT(strncmp(out, "HTTP/1.1 200", 12) == 0);
    ASSERT(strcasestr(out, "Content-Type: " CT_PROM "\r\n") != NULL);

    snprintf(cmd, sizeof cmd, CURL "-i -X DELETE http://127.0.0.1:%d/healthz", curl, port);
    out = run(cmd);
    ASSERT(strncmp(out, "HTTP/1.1 405", 12) == 0);
    ASSERT(strcasestr(out, "Allow: GET, HEAD\r\n") != NULL);
    ASSERT(strstr(out, "\r\n\r\nmethod not allowed\n") != NULL);

    snprintf(cmd, sizeof cmd, CURL "-w '%%{http_code}' http://127.0.0.1:%d/nope", curl, port);
    ASSERT_STREQ(run(cmd), "not found\n404");
#undef CURL
    vsoc_http_stop(s);
}

int main(void)
{
    test_routes();
    test_reload();
    test_concurrent();
    test_stop_in_flight();
    test_start_errors();
    test_no_handlers();
    test_bad_metrics();
    test_ipv6();
    test_curl();
    printf("test_http: ok\n");
    return 0;
}
