/* http.c: the HTTP server of http.h over libmicrohttpd.
 *
 * Invariants:
 *   - The listening socket is made here (bind errors then name the address as the user
 *     wrote it, with the system's message) and handed to libmicrohttpd, which owns it from
 *     a successful start until MHD_stop_daemon closes it.
 *   - One thread per connection (libmicrohttpd's MHD_USE_THREAD_PER_CONNECTION): a reload
 *     blocks only the connection that asked for it, so liveness probes and scrapes keep
 *     being answered while the service reloads.
 *   - Each callback of vsoc_http_handlers_t has its own mutex, so the service never sees
 *     one callback re-entered, whatever the number of connections.
 *   - A request is answered only after its whole body has arrived (libmicrohttpd's last
 *     access-handler call, with no data), except for an early refusal (404, 405, 413),
 *     which is queued on the first call, before any body is read. */
#include "http.h"

#include "util.h"
#include "vsoc.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define LISTEN_BACKLOG 64
#define CT_TEXT "text/plain; charset=utf-8"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"
#define ALLOW_GET "GET, HEAD"
#define ALLOW_POST "POST, PUT"

enum route { R_METRICS, R_HEALTHZ, R_READYZ, R_RELOAD, R_OTHER, R_COUNT };

static const char *const route_names[R_COUNT] = {"/metrics", "/healthz", "/readyz",
                                                 "/-/reload", "other"};
static const unsigned codes[] = {200, 404, 405, 413, 500, 503};
#define NCODES (sizeof codes / sizeof codes[0])

struct vsoc_http {
    struct MHD_Daemon *d;
    vsoc_http_handlers_t h;
    int port;
    char where[128]; /* the listen address as given, for messages */
    pthread_mutex_t metrics_mu, ready_mu, reload_mu, log_mu;
    int nmutex;          /* mutexes initialised, for the destroyer */
    int started;         /* MHD_start_daemon returned a daemon; under log_mu */
    char start_log[256]; /* libmicrohttpd's last message while starting; under log_mu */
    vsoc_counter_t requests[R_COUNT][NCODES];
};

/* Per request, from the first access-handler call to libmicrohttpd's completion call. */
struct request {
    enum route route;
    size_t body; /* body bytes received */
};

/* Marks a request refused on its first call: later calls only drain its body. */
static struct request refused;

/* ---- the listening socket --------------------------------------------------------------- */

/* Parses "HOST:PORT" (see vsoc_http_start). Returns 0, or -1 with err. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sl,
                        char *err, size_t errlen)
{
    char buf[128];
    const char *why = NULL;
    char *host, *port, *end;
    if (strlen(listen) >= sizeof buf) {
        why = "too long";
        goto bad;
    }
    strcpy(buf, listen);
    if (buf[0] == '[') {
        end = strchr(buf, ']');
        if (!end || end[1] != ':') {
            why = "an IPv6 address is written [ADDRESS]:PORT";
            goto bad;
        }
        *end = '\0';
        host = buf + 1;
        port = end + 2;
    } else {
        end = strrchr(buf, ':');
        if (!end) {
            why = "no :PORT";
            goto bad;
        }
        *end = '\0';
        host = buf;
        port = end + 1;
        if (strchr(host, ':')) {
            why = "an IPv6 address is written [ADDRESS]:PORT";
            goto bad;
        }
        if (host[0] == '\0') {
            why = "no host (0.0.0.0:PORT listens on every interface)";
            goto bad;
        }
    }
    size_t np = strlen(port);
    if (np == 0 || np > 5 || strspn(port, "0123456789") != np || atol(port) > 65535) {
        why = "the port must be a number from 0 to 65535";
        goto bad;
    }
    uint16_t nport = htons((uint16_t)atol(port));
    memset(ss, 0, sizeof *ss);
    if (buf[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            why = "not an IPv6 address inside the brackets";
            goto bad;
        }
        a6->sin6_family = AF_INET6;
        a6->sin6_port = nport;
        *sl = sizeof *a6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        /* Only "localhost" among names: resolving others would pick one address among
         * several and bind somewhere the user did not say. */
        if (strcmp(host, "localhost") == 0)
            host = "127.0.0.1";
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
            why = "the host must be an IPv4 address, [IPv6 address] or localhost";
            goto bad;
        }
        a4->sin_family = AF_INET;
        a4->sin_port = nport;
        *sl = sizeof *a4;
    }
    return 0;
bad:
    vsoc_seterr(err, errlen, "http: listen address '%s': %s", listen, why);
    return -1;
}

/* Binds and listens. Returns the socket, or -1 with err naming the address. */
static int open_listener(const char *where, const struct sockaddr_storage *ss, socklen_t sl,
                         int *port, char *err, size_t errlen)
{
    const char *step = "socket";
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto fail;
    /* SO_REUSEADDR lets a restarted service bind while its old connections linger in
     * TIME_WAIT; on Linux it still refuses a port another socket listens on. */
    step = "setsockopt";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        goto fail;
    if (ss->ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        goto fail;
    step = "bind";
    if (bind(fd, (const struct sockaddr *)ss, sl) != 0)
        goto fail;
    step = "listen";
    if (listen(fd, LISTEN_BACKLOG) != 0)
        goto fail;
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    step = "getsockname";
    if (getsockname(fd, (struct sockaddr *)&bound, &bl) != 0)
        goto fail;
    *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
    return fd;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (strcmp(step, "bind") == 0)
        vsoc_seterr(err, errlen, "http: cannot listen on %s: %s", where, strerror(e));
    else
        vsoc_seterr(err, errlen, "http: cannot listen on %s: %s: %s", where, step, strerror(e));
    return -1;
}

/* ---- responses ---------------------------------------------------------------------------- */

static void count(vsoc_http_t *s, enum route r, unsigned code)
{
    for (size_t k = 0; k < NCODES; k++)
        if (codes[k] == code)
            vsoc_counter_add(&s->requests[r][k], 1);
}

static enum MHD_Result reply(vsoc_http_t *s, struct MHD_Connection *c, enum route r,
                             unsigned code, const char *body, size_t len, const char *ctype,
                             const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ok = MHD_YES;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) != MHD_YES ||
        (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES))
        ok = MHD_NO;
    if (ok == MHD_YES)
        ok = MHD_queue_response(c, code, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES)
        count(s, r, code);
    return ok;
}

/* Answers with text as one line: control characters (line breaks included) become spaces,
 * trailing spaces go, and fallback stands in for an empty text. */
static enum MHD_Result reply_line(vsoc_http_t *s, struct MHD_Connection *c, enum route r,
                                  unsigned code, const char *text, const char *fallback,
                                  const char *allow)
{
    char line[VSOC_HTTP_MSG_MAX + 1]; /* the text, cut at VSOC_HTTP_MSG_MAX, and '\n' */
    size_t n = 0;
    for (const char *t = text; *t && n < VSOC_HTTP_MSG_MAX; t++)
        line[n++] = ((unsigned char)*t < 0x20 || *t == 0x7f) ? ' ' : *t;
    while (n > 0 && line[n - 1] == ' ')
        n--;
    size_t start = 0;
    while (start < n && line[start] == ' ')
        start++;
    if (start == n) {
        n = strlen(fallback);
        memcpy(line, fallback, n);
        start = 0;
    }
    line[n++] = '\n';
    return reply(s, c, r, code, line + start, n - start, CT_TEXT, allow);
}

/* The server's own family: requests answered, by route and status. */
static void write_own_metrics(vsoc_http_t *s, vsoc_prom_t *p)
{
    static const char name[] = "vsoc_http_requests_total";
    vsoc_prom_family(p, name, "counter",
                     "HTTP requests answered by the service's endpoint, by handler and code.");
    for (int r = 0; r < R_COUNT; r++) {
        for (size_t k = 0; k < NCODES; k++) {
            uint64_t v = vsoc_counter_get(&s->requests[r][k]);
            if (v == 0)
                continue;
            char code[8];
            snprintf(code, sizeof code, "%u", codes[k]);
            vsoc_prom_label_t l[2] = {{"handler", route_names[r]}, {"code", code}};
            vsoc_prom_sample_u64(p, name, l, 2, v);
        }
    }
}

static enum MHD_Result serve_metrics(vsoc_http_t *s, struct MHD_Connection *c)
{
    vsoc_prom_t *p = vsoc_prom_new();
    if (!p)
        return reply_line(s, c, R_METRICS, 500, "metrics: out of memory", "", NULL);
    if (s->h.metrics) {
        pthread_mutex_lock(&s->metrics_mu);
        s->h.metrics(s->h.ctx, p);
        pthread_mutex_unlock(&s->metrics_mu);
    }
    write_own_metrics(s, p);
    enum MHD_Result ok;
    if (vsoc_prom_err(p) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "metrics: %s", vsoc_prom_errstr(p));
        ok = reply_line(s, c, R_METRICS, 500, msg, "", NULL);
    } else {
        size_t len;
        const char *text = vsoc_prom_text(p, &len);
        ok = reply(s, c, R_METRICS, 200, text, len, CT_PROM, NULL);
    }
    vsoc_prom_free(p);
    return ok;
}

static enum MHD_Result serve(vsoc_http_t *s, struct MHD_Connection *c, enum route r)
{
    char msg[VSOC_HTTP_MSG_MAX];
    msg[0] = '\0';
    switch (r) {
    case R_METRICS:
        return serve_metrics(s, c);
    case R_HEALTHZ:
        return reply_line(s, c, r, 200, "ok", "", NULL);
    case R_READYZ: {
        int ready = 1;
        if (s->h.ready) {
            pthread_mutex_lock(&s->ready_mu);
            ready = s->h.ready(s->h.ctx, msg, sizeof msg) == 1;
            pthread_mutex_unlock(&s->ready_mu);
            msg[sizeof msg - 1] = '\0';
        }
        if (ready)
            return reply_line(s, c, r, 200, "ready", "", NULL);
        return reply_line(s, c, r, 503, msg, "not ready", NULL);
    }
    case R_RELOAD: {
        pthread_mutex_lock(&s->reload_mu);
        int rc = s->h.reload(s->h.ctx, msg, sizeof msg);
        pthread_mutex_unlock(&s->reload_mu);
        msg[sizeof msg - 1] = '\0';
        if (rc == 0)
            return reply_line(s, c, r, 200, msg, "reloaded", NULL);
        return reply_line(s, c, r, 500, msg, "reload failed", NULL);
    }
    default:
        return reply_line(s, c, R_OTHER, 404, "not found", "", NULL);
    }
}

/* ---- libmicrohttpd callbacks ---------------------------------------------------------- */

static enum route route_of(const vsoc_http_t *s, const char *url)
{
    /* url comes without its query string. */
    for (int r = 0; r < R_OTHER; r++)
        if (strcmp(url, route_names[r]) == 0)
            return (r == R_RELOAD && !s->h.reload) ? R_OTHER : (enum route)r;
    return R_OTHER;
}

static int method_allowed(enum route r, const char *method)
{
    if (r == R_RELOAD)
        return strcmp(method, MHD_HTTP_METHOD_POST) == 0 ||
               strcmp(method, MHD_HTTP_METHOD_PUT) == 0;
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
           strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* A Content-Length above the limit (a malformed one is libmicrohttpd's to refuse). */
static int body_too_large(struct MHD_Connection *c)
{
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return 0;
    size_t n = strlen(cl);
    if (n == 0 || strspn(cl, "0123456789") != n)
        return 0;
    return n > 9 || atol(cl) > VSOC_HTTP_MAX_BODY;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    vsoc_http_t *s = cls;
    struct request *rq = *con_cls;
    if (!rq) { /* the headers are in; no body read yet */
        enum route r = route_of(s, url);
        enum MHD_Result ok;
        if (r == R_OTHER)
            ok = reply_line(s, c, r, 404, "not found", "", NULL);
        else if (!method_allowed(r, method))
            ok = reply_line(s, c, r, 405, "method not allowed", "",
                            r == R_RELOAD ? ALLOW_POST : ALLOW_GET);
        else if (body_too_large(c))
            ok = reply_line(s, c, r, 413, "request body too large (at most 1024 bytes)", "",
                            NULL);
        else {
            rq = calloc(1, sizeof *rq);
            if (!rq)
                return MHD_NO;
            rq->route = r;
            *con_cls = rq;
            return MHD_YES;
        }
        *con_cls = &refused;
        return ok;
    }
    if (*upload_data_size > 0) {
        if (rq != &refused) {
            rq->body += *upload_data_size;
            /* A chunked body carries no length to refuse up front; libmicrohttpd takes no
             * response in the middle of a body, so the connection is closed. */
            if (rq->body > VSOC_HTTP_MAX_BODY)
                return MHD_NO;
        }
        *upload_data_size = 0; /* the body is not used: it is only counted */
        return MHD_YES;
    }
    if (rq == &refused)
        return MHD_YES;
    return serve(s, c, rq->route);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *rq = *con_cls;
    if (rq != &refused)
        free(rq);
    *con_cls = NULL;
}

static void on_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void on_log(void *cls, const char *fmt, va_list ap)
{
    vsoc_http_t *s = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    pthread_mutex_lock(&s->log_mu);
    int started = s->started;
    if (!started)
        memcpy(s->start_log, msg, n + 1);
    pthread_mutex_unlock(&s->log_mu);
    if (started && s->h.log)
        s->h.log(s->h.ctx, msg);
}

/* ---- start and stop ------------------------------------------------------------------------ */

static void http_free(vsoc_http_t *s)
{
    if (!s)
        return;
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_mutex_t *mus[] = {&s->metrics_mu, &s->ready_mu, &s->reload_mu, &s->log_mu};
    for (int i = 0; i < s->nmutex; i++)
        pthread_mutex_destroy(mus[i]);
    free(s);
}

/* After a failed MHD_start_daemon, closes fd unless libmicrohttpd already did (versions
 * differ on that). ref, still open, is the same socket: if fd no longer names it, fd was
 * closed (and its number perhaps reused by another thread) and must be left alone. */
static void close_if_same_socket(int fd, int ref)
{
    struct stat a, b;
    if (fstat(fd, &a) == 0 && fstat(ref, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        close(fd);
}

vsoc_http_t *vsoc_http_start(const char *listen, const vsoc_http_handlers_t *h, char *err,
                             size_t errlen)
{
    vsoc_http_t *s = NULL;
    int fd = -1;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!listen) {
        vsoc_seterr(err, errlen, "http: no listen address");
        return NULL;
    }
    if (parse_listen(listen, &ss, &sl, err, errlen) != 0)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s) {
        vsoc_seterr(err, errlen, "http: out of memory");
        return NULL;
    }
    if (h)
        s->h = *h;
    snprintf(s->where, sizeof s->where, "%s", listen);
    pthread_mutex_t *mus[] = {&s->metrics_mu, &s->ready_mu, &s->reload_mu, &s->log_mu};
    for (; s->nmutex < 4; s->nmutex++) {
        int e = pthread_mutex_init(mus[s->nmutex], NULL);
        if (e != 0) {
            vsoc_seterr(err, errlen, "http: %s", strerror(e));
            goto fail;
        }
    }
    fd = open_listener(listen, &ss, sl, &s->port, err, errlen);
    if (fd < 0)
        goto fail;
    /* libmicrohttpd gets its own descriptor of the socket, so that fd stays ours to close
     * whatever a failed start did with the one it was given. */
    int mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mhd_fd < 0) {
        vsoc_seterr(err, errlen, "http: cannot listen on %s: dup: %s", listen, strerror(errno));
        goto fail;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_log, s,
        MHD_OPTION_LISTEN_SOCKET, mhd_fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)VSOC_HTTP_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)VSOC_HTTP_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_END);
    if (!s->d) {
        int e = errno;
        close_if_same_socket(mhd_fd, fd);
        pthread_mutex_lock(&s->log_mu);
        vsoc_seterr(err, errlen, "http: cannot start the server on %s: %s", listen,
               s->start_log[0] ? s->start_log : strerror(e));
        pthread_mutex_unlock(&s->log_mu);
        goto fail;
    }
    close(fd);
    pthread_mutex_lock(&s->log_mu);
    s->started = 1;
    pthread_mutex_unlock(&s->log_mu);
    return s;
fail:
    if (fd >= 0)
        close(fd);
    http_free(s);
    return NULL;
}

int vsoc_http_port(const vsoc_http_t *s)
{
    return s->port;
}

void vsoc_http_stop(vsoc_http_t *s)
{
    http_free(s);
}
