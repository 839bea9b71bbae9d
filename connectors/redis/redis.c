/* redis.c: fleet state in Redis over hiredis's blocking API (redis.h, docs/redis.md).
 *
 * Invariants:
 *   - r->c is NULL exactly when the handle is down. A context that saw an I/O error is
 *     freed at once (hiredis leaves it unusable), and next_try_ms is set from the backoff.
 *   - Every pipeline reads as many replies as it wrote commands, even after an error
 *     reply, so the connection never holds a reply for a later call; an I/O error ends the
 *     connection instead.
 *   - One operation has one deadline (timeout_ms from its start). Before each blocking
 *     step the socket timeout is set to what is left of it, so the connect, the handshake
 *     and the command together stay within about timeout_ms.
 *   - The fleet script is the single place where fleet_count's rules live on the Redis
 *     side; it must keep the semantics of engine/fleet.h (the integration test compares it
 *     hit by hit with engine/fleet.c).
 *   - Neither the URL's password nor any key value leaks into error texts: they name the
 *     server, the command and the server's or hiredis's message. */
#include "redis.h"

#include "util.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define REDIS_ERR_MAX 256
/* Redis scores and Lua numbers are doubles: integers are exact up to 2^53. */
#define EXACT_MAX ((int64_t)1 << 53)
/* How long a rule's keys outlive its last hit (wall time), beyond its timespan: room for
 * hits that arrive late. An idle rule's window is empty by then, and its last alert is
 * more than a timespan old, so expiry changes no result. */
#define FLEET_EXPIRE_EXTRA_MS 60000
#define FLEET_ARGC 11

/* The fleet_count script, engine/fleet.c's vsoc_fleet_hit in Lua. KEYS[1]: sorted set vin ->
 * the vehicle's latest hit time (us); KEYS[2]: hash with the rule's newest hit time
 * ("newest"), the rule's newest time when its last alert was raised ("alert"), and "below"
 * = "1" once a hit saw the count below gte after that alert, "ahit" = "vin\ntime" of the hit
 * that raised it (the same hit again raises it again). ARGV: time_us, timespan_us,
 * gte, vin, expire_ms, samples. Times reach Redis as decimal strings (the caller's, or
 * through "%.0f"), never through Lua's tostring, which keeps only 14 digits. A hit older
 * than the window changes nothing: as of its own time its vehicle is already out.
 * Returns {vehicles, alert, first_us, {vins, newest first}}. */
static const char FLEET_LUA[] =
    "local t = tonumber(ARGV[1])\n"
    "local span = tonumber(ARGV[2])\n"
    "local gte = tonumber(ARGV[3])\n"
    "local prev_s = redis.call('HGET', KEYS[2], 'newest')\n"
    "local newest, newest_s = t, ARGV[1]\n"
    "if prev_s and tonumber(prev_s) >= t then\n"
    "  newest, newest_s = tonumber(prev_s), prev_s\n"
    "end\n"
    "local alert = 0\n"
    "if t >= newest - span then\n"
    "  redis.call('ZADD', KEYS[1], 'GT', ARGV[1], ARGV[4])\n"
    "  if newest_s ~= prev_s then\n"
    "    redis.call('HSET', KEYS[2], 'newest', newest_s)\n"
    "  end\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf',\n"
    "             '(' .. string.format('%.0f', newest - span))\n"
    "  if redis.call('ZCARD', KEYS[1]) < gte then\n"
    "    redis.call('HSET', KEYS[2], 'below', '1')\n"
    "  else\n"
    "    local last = redis.call('HGET', KEYS[2], 'alert')\n"
    "    local hit = ARGV[4] .. '\\n' .. ARGV[1]\n"
    "    if not last or redis.call('HGET', KEYS[2], 'below') == '1'\n"
    "       or newest - tonumber(last) >= span then\n"
    "      redis.call('HSET', KEYS[2], 'alert', newest_s, 'below', '0', 'ahit', hit)\n"
    "      alert = 1\n"
    "    elseif redis.call('HGET', KEYS[2], 'ahit') == hit then\n"
    "      alert = 1\n"
    "    end\n"
    "  end\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[5])\n"
    "end\n"
    "local first = 0\n"
    "local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "if oldest[2] then first = tonumber(oldest[2]) end\n"
    "local vins = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[6]) - 1)\n"
    "return {redis.call('ZCARD', KEYS[1]), alert, first, vins}\n";

struct vsoc_redis {
    /* where: either host (TCP) or path (unix socket) */
    char *host;
    int port;
    char *path;
    char *user, *password; /* NULL when absent */
    long db;
    char *prefix;
    size_t prefixlen;
    int timeout_ms, backoff_min_ms, backoff_max_ms;
    int op_timeout_ms; /* > 0: the bound of the operation under way instead (a handoff) */
    char where[300]; /* "host:port" or "unix:/path", for messages */

    redisContext *c;       /* NULL: down */
    int64_t next_try_ms;   /* down: no attempt before this (monotonic ms) */
    int backoff_ms;        /* the wait after the next failure */
    int ever_connected;
    char sha[41];          /* the fleet script's SHA1, from SCRIPT LOAD */

    vsoc_redis_stats_t stats;
    char errstr[REDIS_ERR_MAX];

    char *kbuf;            /* scratch for key names, grown as needed */
    size_t kcap;
    size_t *retry;         /* scratch for the hits to resend with EVAL */
    size_t retrycap;
};

static void seterr(vsoc_redis_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));


static void seterr(vsoc_redis_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errstr, sizeof r->errstr, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(int64_t ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    return tv;
}

/* ---- URL ---------------------------------------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Copies s[0..n) into a new string, decoding %XX. Returns NULL with err (column of the
 * bad escape, counted from url) on a bad escape or when out of memory. */
static char *pct_decode(const char *url, const char *s, size_t n, const char *what, char *err,
                        size_t errlen)
{
    char *out = malloc(n + 1);
    if (!out) {
        vsoc_seterr(err, errlen, "redis url: out of memory");
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[k++] = s[i];
            continue;
        }
        int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
        /* %00 would cut the string short where it is used as a C string. */
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            vsoc_seterr(err, errlen, "redis url: column %zu: bad %%-escape in the %s",
                   (size_t)(s - url) + i + 1, what);
            free(out);
            return NULL;
        }
        out[k++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[k] = '\0';
    return out;
}

/* Parses a decimal number in s[0..n) into 0..max. Returns 0, or -1 when empty, not all
 * digits, or out of range. */
static int parse_num(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

#define COL(p) ((size_t)((p) - url) + 1)

/* "redis://[[user]:password@]host[:port][/db]". The password may hold '@', ':' and '/'
 * unencoded: userinfo ends at the last '@'. */
static int parse_redis_url(vsoc_redis_t *r, const char *url, char *err, size_t errlen)
{
    const char *p = url + strlen("redis://");
    const char *end = url + strlen(url);
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            vsoc_seterr(err, errlen,
                   "redis url: column %zu: expected ':password@' or 'user:password@' before "
                   "the host",
                   COL(p));
            return -1;
        }
        if (colon > p && !(r->user = pct_decode(url, p, (size_t)(colon - p), "user name",
                                                err, errlen)))
            return -1;
        if (!(r->password = pct_decode(url, colon + 1, (size_t)(at - colon - 1), "password",
                                       err, errlen)))
            return -1;
        if (!r->password[0]) {
            vsoc_seterr(err, errlen, "redis url: column %zu: empty password", COL(colon + 1));
            return -1;
        }
        p = at + 1;
    }
    const char *host = p, *hend;
    int v6 = *p == '[';
    if (v6) {
        hend = strchr(p, ']');
        if (!hend) {
            vsoc_seterr(err, errlen, "redis url: column %zu: '[' of an IPv6 address without ']'",
                   COL(p));
            return -1;
        }
        host = p + 1;
        p = hend + 1;
    } else {
        hend = p + strcspn(p, ":/?#");
        p = hend;
    }
    if (hend == host) {
        vsoc_seterr(err, errlen, "redis url: column %zu: missing host", COL(host));
        return -1;
    }
    for (const char *q = host; q < hend; q++) {
        unsigned char ch = (unsigned char)*q;
        if (!(ch == '.' || ch == '-' || ch == '_' || (ch == ':' && v6) ||
              (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
              (ch >= 'A' && ch <= 'Z'))) {
            vsoc_seterr(err, errlen, "redis url: column %zu: unexpected '%c' in the host", COL(q),
                   *q);
            return -1;
        }
    }
    if (!(r->host = dupn(host, (size_t)(hend - host)))) {
        vsoc_seterr(err, errlen, "redis url: out of memory");
        return -1;
    }
    r->port = 6379;
    if (*p == ':') {
        const char *ps = p + 1, *pe = ps + strcspn(ps, "/?#");
        long port;
        if (parse_num(ps, (size_t)(pe - ps), 65535, &port) < 0 || port == 0) {
            vsoc_seterr(err, errlen, "redis url: column %zu: port '%.*s' is not a number 1..65535",
                   COL(ps), (int)(pe - ps), ps);
            return -1;
        }
        r->port = (int)port;
        p = pe;
    }
    if (*p == '/') {
        const char *ds = p + 1, *de = ds + strcspn(ds, "?#");
        if (de > ds && parse_num(ds, (size_t)(de - ds), INT_MAX, &r->db) < 0) {
            vsoc_seterr(err, errlen, "redis url: column %zu: database '%.*s' is not a number",
                   COL(ds), (int)(de - ds), ds);
            return -1;
        }
        p = de;
    }
    if (p != end) {
        vsoc_seterr(err, errlen,
               "redis url: column %zu: unexpected '%s' after the database (query parameters "
               "are not supported in redis:// URLs)",
               COL(p), p);
        return -1;
    }
    snprintf(r->where, sizeof r->where, "%s%.200s%s:%d", v6 ? "[" : "", r->host,
             v6 ? "]" : "", r->port);
    return 0;
}

/* "unix:///path/to.sock[?db=N][&password=P]" */
static int parse_unix_url(vsoc_redis_t *r, const char *url, char *err, size_t errlen)
{
    const char *p = url + strlen("unix://");
    if (*p != '/') {
        vsoc_seterr(err, errlen, "redis url: column %zu: expected an absolute socket path "
               "(unix:///path/to.sock)", COL(p));
        return -1;
    }
    const char *pe = p + strcspn(p, "?");
    if (!(r->path = dupn(p, (size_t)(pe - p)))) {
        vsoc_seterr(err, errlen, "redis url: out of memory");
        return -1;
    }
    snprintf(r->where, sizeof r->where, "unix:%.250s", r->path);
    if (!*pe)
        return 0;
    const char *q = pe + 1;
    for (;;) {
        const char *qe = q + strcspn(q, "&");
        const char *eq = memchr(q, '=', (size_t)(qe - q));
        if (eq && eq - q == 2 && strncmp(q, "db", 2) == 0) {
            if (parse_num(eq + 1, (size_t)(qe - eq - 1), INT_MAX, &r->db) < 0) {
                vsoc_seterr(err, errlen, "redis url: column %zu: database '%.*s' is not a number",
                       COL(eq + 1), (int)(qe - eq - 1), eq + 1);
                return -1;
            }
        } else if (eq && eq - q == 8 && strncmp(q, "password", 8) == 0) {
            free(r->password);
            if (!(r->password = pct_decode(url, eq + 1, (size_t)(qe - eq - 1), "password", err,
                                           errlen)))
                return -1;
            if (!r->password[0]) {
                vsoc_seterr(err, errlen, "redis url: column %zu: empty password", COL(eq + 1));
                return -1;
            }
        } else {
            vsoc_seterr(err, errlen,
                   "redis url: column %zu: unknown parameter '%.*s' (expected db=N or "
                   "password=P)",
                   COL(q), (int)(eq ? eq - q : qe - q), q);
            return -1;
        }
        if (!*qe)
            return 0;
        q = qe + 1;
    }
}

static int parse_url(vsoc_redis_t *r, const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "redis://", 8) == 0)
        return parse_redis_url(r, url, err, errlen);
    if (strncmp(url, "unix://", 7) == 0)
        return parse_unix_url(r, url, err, errlen);
    if (strncmp(url, "rediss://", 9) == 0) {
        vsoc_seterr(err, errlen,
               "redis url: column 1: rediss:// (TLS) is not supported by hiredis 0.14; reach "
               "a TLS Redis through a local TLS proxy such as stunnel (docs/redis.md)");
        return -1;
    }
    vsoc_seterr(err, errlen, "redis url: column 1: expected redis://[[user]:password@]host"
           "[:port][/db] or unix:///path/to.sock");
    return -1;
}

/* ---- handle ------------------------------------------------------------------------------- */

static void wipe(char *s)
{
    if (s) {
        /* A password should not linger in freed memory. */
        volatile char *v = s;
        while (*v)
            *v++ = '\0';
    }
}

void vsoc_redis_free(vsoc_redis_t *r)
{
    if (!r)
        return;
    if (r->c)
        redisFree(r->c);
    free(r->host);
    free(r->path);
    free(r->user);
    wipe(r->password);
    free(r->password);
    free(r->prefix);
    free(r->kbuf);
    free(r->retry);
    free(r);
}

vsoc_redis_t *vsoc_redis_new(const vsoc_redis_opts_t *o, char *err, size_t errlen)
{
    if (!o || !o->url || !o->url[0]) {
        vsoc_seterr(err, errlen, "redis url: empty");
        return NULL;
    }
    if (o->timeout_ms < 0 || o->backoff_min_ms < 0 || o->backoff_max_ms < 0) {
        vsoc_seterr(err, errlen, "redis: timeout and backoff must not be negative (%d, %d, %d ms)",
               o->timeout_ms, o->backoff_min_ms, o->backoff_max_ms);
        return NULL;
    }
    vsoc_redis_t *r = calloc(1, sizeof *r);
    if (!r) {
        vsoc_seterr(err, errlen, "redis: out of memory");
        return NULL;
    }
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : VSOC_REDIS_TIMEOUT_MS;
    r->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : VSOC_REDIS_BACKOFF_MIN_MS;
    r->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : VSOC_REDIS_BACKOFF_MAX_MS;
    if (r->backoff_max_ms < r->backoff_min_ms) {
        vsoc_seterr(err, errlen, "redis: backoff maximum %d ms is below its minimum %d ms",
               r->backoff_max_ms, r->backoff_min_ms);
        goto fail;
    }
    r->backoff_ms = r->backoff_min_ms;
    if (parse_url(r, o->url, err, errlen) < 0)
        goto fail;
    if (!(r->prefix = strdup(o->prefix ? o->prefix : VSOC_REDIS_PREFIX))) {
        vsoc_seterr(err, errlen, "redis: out of memory");
        goto fail;
    }
    r->prefixlen = strlen(r->prefix);
    return r;
fail:
    vsoc_redis_free(r);
    return NULL;
}

int vsoc_redis_up(const vsoc_redis_t *r)
{
    return r->c != NULL;
}

const char *vsoc_redis_errstr(const vsoc_redis_t *r)
{
    return r->errstr;
}

void vsoc_redis_stats(const vsoc_redis_t *r, vsoc_redis_stats_t *out)
{
    *out = r->stats;
}

/* ---- connection --------------------------------------------------------------------------- */

/* SIGPIPE from writing to a connection the server closed would kill the service. It is
 * blocked on this thread for the duration of an operation; one raised meanwhile is taken
 * off the pending set unless it was pending already before (then it is the caller's). */
typedef struct {
    sigset_t old;
    int was_pending;
} pipe_guard_t;

static void pipe_block(pipe_guard_t *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigemptyset(&pend);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void pipe_restore(pipe_guard_t *g)
{
    if (!g->was_pending) {
        sigset_t set, pend;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigemptyset(&pend);
        sigpending(&pend);
        if (sigismember(&pend, SIGPIPE) == 1) {
            struct timespec zero = {0, 0};
            while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Drops the connection and schedules the next attempt. */
static void go_down(vsoc_redis_t *r)
{
    if (r->c) {
        redisFree(r->c);
        r->c = NULL;
    }
    r->next_try_ms = now_ms() + r->backoff_ms;
    r->backoff_ms = r->backoff_ms > r->backoff_max_ms / 2 ? r->backoff_max_ms
                                                          : r->backoff_ms * 2;
}

/* The bound of the operation under way. */
static int op_timeout(const vsoc_redis_t *r)
{
    return r->op_timeout_ms > 0 ? r->op_timeout_ms : r->timeout_ms;
}

/* Records hiredis's error on r->c (what: the step) and drops the connection. */
static void io_error(vsoc_redis_t *r, const char *what, int64_t timeout_ms)
{
    if (r->c && r->c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        seterr(r, "redis %s: %s: timed out after %" PRId64 " ms (%s)", r->where, what,
               timeout_ms, r->c->errstr);
    else
        seterr(r, "redis %s: %s: %s", r->where, what, r->c ? r->c->errstr : "out of memory");
    go_down(r);
}

/* Sets the socket timeout to what is left until deadline. Returns 0, or -1 (down) when
 * nothing is left: a zero SO_RCVTIMEO would mean "wait forever". */
static int arm(vsoc_redis_t *r, int64_t deadline, const char *what)
{
    int64_t left = deadline - now_ms();
    if (left <= 0) {
        seterr(r, "redis %s: %s: timed out after %d ms", r->where, what, op_timeout(r));
        go_down(r);
        return -1;
    }
    if (redisSetTimeout(r->c, ms_tv(left)) != REDIS_OK) {
        io_error(r, what, op_timeout(r));
        return -1;
    }
    return 0;
}

/* Reads one reply. Returns it (caller frees), or NULL after an I/O error (down). */
static redisReply *read_reply(vsoc_redis_t *r, const char *what)
{
    void *reply = NULL;
    errno = 0;
    if (redisGetReply(r->c, &reply) != REDIS_OK || !reply) {
        io_error(r, what, op_timeout(r));
        return NULL;
    }
    return reply;
}

static int append(vsoc_redis_t *r, int argc, const char **argv, const size_t *lens,
                  const char *what)
{
    if (redisAppendCommandArgv(r->c, argc, argv, lens) != REDIS_OK) {
        io_error(r, what, op_timeout(r));
        return -1;
    }
    r->stats.commands++;
    return 0;
}

/* Connects and runs the handshake: AUTH, SELECT and SCRIPT LOAD, pipelined. Returns 0
 * (up), or -1 (down, errstr set). */
static int connect_now(vsoc_redis_t *r, int64_t deadline)
{
    r->stats.attempts++;
    struct timeval tv = ms_tv(deadline - now_ms() > 0 ? deadline - now_ms() : 1);
    r->c = r->path ? redisConnectUnixWithTimeout(r->path, tv)
                   : redisConnectWithTimeout(r->host, r->port, tv);
    if (!r->c || r->c->err) {
        io_error(r, "connect", op_timeout(r));
        return -1;
    }
    /* Keepalive notices a peer that vanished under an idle connection. */
    if (!r->path && redisEnableKeepAlive(r->c) != REDIS_OK) {
        io_error(r, "keepalive", op_timeout(r));
        return -1;
    }
    int nauth = 0, nsel = 0;
    if (r->password) {
        const char *argv[3] = {"AUTH", r->user ? r->user : r->password, r->password};
        size_t lens[3] = {4, strlen(argv[1]), strlen(r->password)};
        if (append(r, r->user ? 3 : 2, argv, lens, "AUTH") < 0)
            return -1;
        nauth = 1;
    }
    if (r->db != 0) {
        char db[24];
        int dn = snprintf(db, sizeof db, "%ld", r->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)dn};
        if (append(r, 2, argv, lens, "SELECT") < 0)
            return -1;
        nsel = 1;
    }
    const char *argv[3] = {"SCRIPT", "LOAD", FLEET_LUA};
    size_t lens[3] = {6, 4, sizeof FLEET_LUA - 1};
    if (append(r, 3, argv, lens, "SCRIPT LOAD") < 0 || arm(r, deadline, "handshake") < 0)
        return -1;
    /* Read every reply before judging any, so a failed AUTH is the error reported (the
     * commands after it fail with NOAUTH) and the connection stays in step. */
    char msg[REDIS_ERR_MAX] = "";
    int nreplies = nauth + nsel + 1;
    for (int i = 0; i < nreplies; i++) {
        const char *what = i < nauth ? "AUTH" : i < nauth + nsel ? "SELECT" : "SCRIPT LOAD";
        redisReply *rep = read_reply(r, what);
        if (!rep)
            return -1;
        if (rep->type == REDIS_REPLY_ERROR && !msg[0])
            snprintf(msg, sizeof msg, "%s failed: %s", what, rep->str);
        else if (i == nreplies - 1 && rep->type == REDIS_REPLY_STRING && rep->len == 40)
            memcpy(r->sha, rep->str, 41);
        else if (i == nreplies - 1 && !msg[0])
            snprintf(msg, sizeof msg, "SCRIPT LOAD: unexpected reply type %d", rep->type);
        freeReplyObject(rep);
    }
    if (msg[0]) {
        seterr(r, "redis %s: %s", r->where, msg);
        go_down(r);
        return -1;
    }
    if (r->ever_connected)
        r->stats.reconnects++;
    r->ever_connected = 1;
    r->backoff_ms = r->backoff_min_ms;
    return 0;
}

/* Starts an operation: connects when down and due. Returns 0 with a live connection and
 * *deadline set, or -1 (errstr says why; the caller returns VSOC_EIO). */
static int begin(vsoc_redis_t *r, int64_t *deadline)
{
    int64_t now = now_ms();
    *deadline = now + op_timeout(r);
    if (r->c)
        return 0;
    if (now < r->next_try_ms)
        return -1; /* errstr keeps the failure that took it down */
    return connect_now(r, *deadline);
}

static int fail_io(vsoc_redis_t *r)
{
    r->stats.errors++;
    return VSOC_EIO;
}

int vsoc_redis_ping(vsoc_redis_t *r)
{
    pipe_guard_t g;
    int64_t deadline;
    int rc = VSOC_EIO;
    pipe_block(&g);
    if (begin(r, &deadline) < 0)
        goto out;
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    if (append(r, 1, argv, lens, "PING") < 0 || arm(r, deadline, "PING") < 0)
        goto out;
    redisReply *rep = read_reply(r, "PING");
    if (!rep)
        goto out;
    if (rep->type == REDIS_REPLY_ERROR)
        seterr(r, "redis %s: PING: %s", r->where, rep->str);
    else
        rc = 0;
    freeReplyObject(rep);
out:
    pipe_restore(&g);
    return rc == 0 ? 0 : fail_io(r);
}

/* ---- fleet_count -------------------------------------------------------------------------- */

/* Makes r->kbuf hold two keys: "<prefix>fleet:{<rule>}:vins" and the same with ":state".
 * Returns 0 or VSOC_ENOMEM. */
static int fleet_keys(vsoc_redis_t *r, const char *rule, size_t rulelen, const char **k1,
                      size_t *n1, const char **k2, size_t *n2)
{
    size_t one = r->prefixlen + rulelen + sizeof "fleet:{}:state";
    if (2 * one > r->kcap) {
        char *nb = realloc(r->kbuf, 2 * one);
        if (!nb)
            return VSOC_ENOMEM;
        r->kbuf = nb;
        r->kcap = 2 * one;
    }
    int a = snprintf(r->kbuf, one, "%sfleet:{%.*s}:vins", r->prefix, (int)rulelen, rule);
    int b = snprintf(r->kbuf + one, one, "%sfleet:{%.*s}:state", r->prefix, (int)rulelen,
                     rule);
    *k1 = r->kbuf;
    *n1 = (size_t)a;
    *k2 = r->kbuf + one;
    *n2 = (size_t)b;
    return 0;
}

static int hit_valid(const vsoc_redis_fleet_hit_t *h)
{
    if (!h->rule_id || !h->rule_id[0] || strlen(h->rule_id) > VSOC_ID_MAX)
        return 0;
    if (!h->vin || h->vinlen == 0 || h->vinlen > VSOC_VIN_MAX)
        return 0;
    if (h->gte < 1 || h->timespan_us <= 0 || h->timespan_us >= EXACT_MAX)
        return 0;
    /* With both in [0, 2^53), every difference the script takes is exact in a double. */
    return h->time_us >= 0 && h->time_us < EXACT_MAX;
}

/* Appends the script call for one hit; use_eval sends the script's text instead of its
 * SHA1. */
static int append_hit(vsoc_redis_t *r, const vsoc_redis_fleet_hit_t *h, int use_eval)
{
    const char *k1, *k2;
    size_t n1, n2;
    if (fleet_keys(r, h->rule_id, strlen(h->rule_id), &k1, &n1, &k2, &n2) < 0) {
        /* Commands already appended would be sent by the next operation and their replies
         * taken for its own: drop the connection with them. */
        seterr(r, "redis %s: fleet: out of memory", r->where);
        go_down(r);
        return -1;
    }
    char t[24], span[24], gte[24], exp[24], ns[8];
    int tn = snprintf(t, sizeof t, "%" PRId64, h->time_us);
    int sn = snprintf(span, sizeof span, "%" PRId64, h->timespan_us);
    int gn = snprintf(gte, sizeof gte, "%" PRIu64, h->gte);
    int en = snprintf(exp, sizeof exp, "%" PRId64,
                      (h->timespan_us + 999) / 1000 + FLEET_EXPIRE_EXTRA_MS);
    int nn = snprintf(ns, sizeof ns, "%d", VSOC_FLEET_SAMPLES);
    const char *argv[FLEET_ARGC] = {use_eval ? "EVAL" : "EVALSHA",
                                    use_eval ? FLEET_LUA : r->sha,
                                    "2", k1, k2, t, span, gte, h->vin, exp, ns};
    size_t lens[FLEET_ARGC] = {use_eval ? 4 : 7,
                               use_eval ? sizeof FLEET_LUA - 1 : 40,
                               1, n1, n2, (size_t)tn, (size_t)sn, (size_t)gn, h->vinlen,
                               (size_t)en, (size_t)nn};
    return append(r, FLEET_ARGC, argv, lens, "fleet script");
}

/* Fills out from the script's reply {vehicles, alert, first_us, {vins}}. Returns 0, or -1
 * for a reply of another shape (errstr set). */
static int fleet_result(vsoc_redis_t *r, const redisReply *rep,
                        const vsoc_redis_fleet_hit_t *h, vsoc_fleet_result_t *out)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER ||
        rep->element[2]->type != REDIS_REPLY_INTEGER ||
        rep->element[3]->type != REDIS_REPLY_ARRAY) {
        seterr(r, "redis %s: fleet script: unexpected reply", r->where);
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->vehicles = rep->element[0]->integer < 0 ? 0 : (uint64_t)rep->element[0]->integer;
    out->alert = rep->element[1]->integer != 0;
    out->first_us = (int64_t)rep->element[2]->integer;
    const redisReply *vins = rep->element[3];
    for (size_t i = 0; i < vins->elements && out->nvins < VSOC_FLEET_SAMPLES; i++) {
        const redisReply *v = vins->element[i];
        if (v->type != REDIS_REPLY_STRING || v->len == 0 || v->len > VSOC_VIN_MAX)
            continue;
        memcpy(out->vins[out->nvins], v->str, v->len);
        out->vins[out->nvins][v->len] = '\0';
        out->nvins++;
    }
    if (out->alert)
        vsoc_fleet_uid(h->rule_id, h->time_us, out->uid);
    return 0;
}

/* Reads n script replies of the hits in idx[0..n) into out. A NOSCRIPT reply (the
 * server's script cache was flushed) puts the hit's index into retry[*nretry]; another
 * error reply is remembered in errstr and makes the result -1 after all replies are read.
 * Returns 0, -1 (connection fine, errstr set) or -2 (I/O error, down). */
static int read_hits(vsoc_redis_t *r, const vsoc_redis_fleet_hit_t *hits, const size_t *idx,
                     size_t n, vsoc_fleet_result_t *out, size_t *retry, size_t *nretry)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = idx ? idx[i] : i;
        redisReply *rep = read_reply(r, "fleet script");
        if (!rep)
            return -2;
        if (rep->type == REDIS_REPLY_ERROR) {
            if (retry && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
                retry[(*nretry)++] = k;
            } else if (rc == 0) {
                seterr(r, "redis %s: fleet script for rule '%.*s': %s", r->where, 64,
                       hits[k].rule_id, rep->str);
                rc = -1;
            }
        } else if (fleet_result(r, rep, &hits[k], &out[k]) < 0) {
            rc = -1;
        }
        freeReplyObject(rep);
    }
    return rc;
}

int vsoc_redis_fleet_hits(vsoc_redis_t *r, const vsoc_redis_fleet_hit_t *hits, size_t n,
                          vsoc_fleet_result_t *out)
{
    if (n == 0 || !hits || !out)
        return VSOC_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!hit_valid(&hits[i]))
            return VSOC_EINVAL;
    if (n > r->retrycap) {
        size_t *nr = realloc(r->retry, n * sizeof *nr);
        if (!nr)
            return VSOC_ENOMEM;
        r->retry = nr;
        r->retrycap = n;
    }
    size_t *retry = r->retry;
    pipe_guard_t g;
    int64_t deadline;
    size_t nretry = 0;
    int rc = -1;
    pipe_block(&g);
    if (begin(r, &deadline) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (append_hit(r, &hits[i], 0) < 0)
            goto out;
    if (arm(r, deadline, "fleet script") < 0)
        goto out;
    rc = read_hits(r, hits, NULL, n, out, retry, &nretry);
    if (rc != 0 || nretry == 0)
        goto out;
    /* The script vanished from the server (SCRIPT FLUSH, a restarted or failed-over
     * server under a live connection): send its text. EVAL caches it again, so later
     * EVALSHA calls work. The hits resent here run after the others of this call; that
     * order is what the results describe. */
    for (size_t i = 0; i < nretry; i++)
        if (append_hit(r, &hits[retry[i]], 1) < 0) {
            rc = -1;
            goto out;
        }
    if (arm(r, deadline, "fleet script") < 0) {
        rc = -1;
        goto out;
    }
    rc = read_hits(r, hits, retry, nretry, out, NULL, NULL);
out:
    pipe_restore(&g);
    return rc == 0 ? 0 : fail_io(r);
}

/* ---- cooldown and the blast-radius cap ------------------------------------------------------ */

/* Builds "<prefix><kind><key>" in r->kbuf. Returns its length, or 0 when out of memory. */
static size_t plain_key(vsoc_redis_t *r, const char *kind, const char *key)
{
    size_t n = r->prefixlen + strlen(kind) + strlen(key) + 1;
    if (n > r->kcap) {
        char *nb = realloc(r->kbuf, n);
        if (!nb)
            return 0;
        r->kbuf = nb;
        r->kcap = n;
    }
    return (size_t)snprintf(r->kbuf, n, "%s%s%s", r->prefix, kind, key);
}

int vsoc_redis_cooldown(vsoc_redis_t *r, const char *key, int64_t ttl_ms, const char *owner,
                        int *acquired)
{
    if (!key || !key[0] || ttl_ms <= 0 || !acquired || (owner && !owner[0]))
        return VSOC_EINVAL;
    if (!owner)
        owner = "1";
    size_t kn = plain_key(r, "cooldown:", key);
    if (!kn)
        return VSOC_ENOMEM;
    pipe_guard_t g;
    int64_t deadline;
    int rc = -1;
    pipe_block(&g);
    if (begin(r, &deadline) < 0)
        goto out;
    char ttl[24];
    int tn = snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    /* SET ... NX GET (Redis 7): the old value comes back when the key was held, so one
     * round trip tells "taken now", "held by this owner already" and "held by another". */
    const char *argv[7] = {"SET", r->kbuf, owner, "NX", "PX", ttl, "GET"};
    size_t lens[7] = {3, kn, strlen(owner), 2, 2, (size_t)tn, 3};
    if (append(r, 7, argv, lens, "SET NX") < 0 || arm(r, deadline, "SET NX") < 0)
        goto out;
    redisReply *rep = read_reply(r, "SET NX");
    if (!rep)
        goto out;
    if (rep->type == REDIS_REPLY_NIL) {
        *acquired = 1; /* nobody held it: this call took it */
        rc = 0;
    } else if (rep->type == REDIS_REPLY_STRING) {
        *acquired = strcmp(owner, "1") != 0 && rep->len == strlen(owner) &&
                    memcmp(rep->str, owner, rep->len) == 0;
        rc = 0;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        seterr(r, "redis %s: SET NX of a cooldown: %s", r->where, rep->str);
    } else {
        seterr(r, "redis %s: SET NX of a cooldown: unexpected reply type %d", r->where,
               rep->type);
    }
    freeReplyObject(rep);
out:
    pipe_restore(&g);
    return rc == 0 ? 0 : fail_io(r);
}

/* Admits member into the window set at most max members large (0: no limit): a member
 * already in it is admitted again; KEYS[1] the set, ARGV member, window (ms), max. Returns
 * {admitted, members counting this one}. PEXPIRE NX: only the member that creates the set
 * starts the window; a set left without an expiry gets one on the next call. */
static const char ADMIT_LUA[] =
    "local k, m, ms, max = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "if redis.call('SISMEMBER', k, m) == 1 then\n"
    "  redis.call('PEXPIRE', k, ms, 'NX')\n"
    "  return {1, redis.call('SCARD', k)}\n"
    "end\n"
    "local n = redis.call('SCARD', k)\n"
    "if max > 0 and n >= max then\n"
    "  if n > 0 then redis.call('PEXPIRE', k, ms, 'NX') end\n"
    "  return {0, n + 1}\n"
    "end\n"
    "redis.call('SADD', k, m)\n"
    "redis.call('PEXPIRE', k, ms, 'NX')\n"
    "return {1, n + 1}\n";

int vsoc_redis_window_admit(vsoc_redis_t *r, const char *key, const char *member,
                            int64_t window_ms, uint64_t max, int64_t *count, int *admitted)
{
    if (!key || !key[0] || !member || !member[0] || window_ms <= 0 || !count || !admitted)
        return VSOC_EINVAL;
    size_t kn = plain_key(r, "vset:", key);
    if (!kn)
        return VSOC_ENOMEM;
    pipe_guard_t g;
    int64_t deadline;
    int rc = -1;
    redisReply *rep = NULL;
    pipe_block(&g);
    if (begin(r, &deadline) < 0)
        goto out;
    char ms[24], mx[24];
    int mn = snprintf(ms, sizeof ms, "%" PRId64, window_ms);
    int xn = snprintf(mx, sizeof mx, "%" PRIu64, max);
    const char *argv[7] = {"EVAL", ADMIT_LUA, "1", r->kbuf, member, ms, mx};
    size_t lens[7] = {4, sizeof ADMIT_LUA - 1, 1, kn, strlen(member), (size_t)mn, (size_t)xn};
    if (append(r, 7, argv, lens, "EVAL") < 0 || arm(r, deadline, "EVAL") < 0 ||
        !(rep = read_reply(r, "EVAL")))
        goto out;
    if (rep->type == REDIS_REPLY_ERROR) {
        seterr(r, "redis %s: admitting to a window set: %s", r->where, rep->str);
    } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
               rep->element[0]->type != REDIS_REPLY_INTEGER ||
               rep->element[1]->type != REDIS_REPLY_INTEGER) {
        seterr(r, "redis %s: admitting to a window set: unexpected reply", r->where);
    } else {
        *admitted = rep->element[0]->integer == 1;
        *count = (int64_t)rep->element[1]->integer;
        rc = 0;
    }
out:
    if (rep)
        freeReplyObject(rep);
    pipe_restore(&g);
    return rc == 0 ? 0 : fail_io(r);
}

/* ---- partition handoff -------------------------------------------------------------------- */

/* Fields per HSET: a partition of many vehicles goes in several, inside one transaction. */
#define HANDOFF_CHUNK 512
/* The longest vin a handoff carries: the engine keeps 63 bytes of one. */
#define HANDOFF_VIN_MAX 63

int vsoc_redis_handoff_put(vsoc_redis_t *r, const char *key, int64_t offset,
                           const vsoc_redis_blob_t *v, size_t n, int64_t ttl_ms,
                           int timeout_ms)
{
    if (!key || !key[0] || offset < 0 || ttl_ms <= 0 || (n && !v))
        return VSOC_EINVAL;
    size_t kn = plain_key(r, "handoff:", key);
    if (!kn)
        return VSOC_ENOMEM;
    /* "v:<vin>" names, built before anything is sent. */
    char *names = malloc(n ? n * (HANDOFF_VIN_MAX + 3) : 1);
    const char **argv = malloc((4 + 2 * HANDOFF_CHUNK) * sizeof *argv);
    size_t *lens = malloc((4 + 2 * HANDOFF_CHUNK) * sizeof *lens);
    if (!names || !argv || !lens) {
        free(names);
        free(argv);
        free(lens);
        return VSOC_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (!v[i].vinlen || v[i].vinlen > HANDOFF_VIN_MAX || (v[i].n && !v[i].blob)) {
            free(names);
            free(argv);
            free(lens);
            return VSOC_EINVAL;
        }
        char *nm = names + i * (HANDOFF_VIN_MAX + 3);
        nm[0] = 'v';
        nm[1] = ':';
        memcpy(nm + 2, v[i].vin, v[i].vinlen);
    }
    pipe_guard_t g;
    int64_t deadline;
    int rc = -1;
    size_t sent = 0; /* commands appended, to read as many replies */
    pipe_block(&g);
    r->op_timeout_ms = timeout_ms;
    if (begin(r, &deadline) < 0)
        goto out;
    char off[24], ms[24];
    int on = snprintf(off, sizeof off, "%" PRId64, offset);
    int mn = snprintf(ms, sizeof ms, "%" PRId64, ttl_ms);
    const char *multi[1] = {"MULTI"}, *exec[1] = {"EXEC"};
    size_t multil[1] = {5}, execl[1] = {4};
    const char *del[2] = {"DEL", r->kbuf};
    size_t dell[2] = {3, kn};
    if (append(r, 1, multi, multil, "MULTI") < 0 || append(r, 2, del, dell, "DEL") < 0)
        goto out;
    sent = 2;
    size_t i = 0;
    do {
        int argc = 0;
        argv[argc] = "HSET";
        lens[argc++] = 4;
        argv[argc] = r->kbuf;
        lens[argc++] = kn;
        if (i == 0) {
            argv[argc] = "offset";
            lens[argc++] = 6;
            argv[argc] = off;
            lens[argc++] = (size_t)on;
        }
        for (size_t k = 0; k < HANDOFF_CHUNK && i < n; k++, i++) {
            argv[argc] = names + i * (HANDOFF_VIN_MAX + 3);
            lens[argc++] = 2 + v[i].vinlen;
            argv[argc] = v[i].n ? v[i].blob : "";
            lens[argc++] = v[i].n;
        }
        if (append(r, argc, argv, lens, "HSET") < 0)
            goto out;
        sent++;
    } while (i < n);
    const char *pexp[3] = {"PEXPIRE", r->kbuf, ms};
    size_t pexpl[3] = {7, kn, (size_t)mn};
    if (append(r, 3, pexp, pexpl, "PEXPIRE") < 0 || append(r, 1, exec, execl, "EXEC") < 0 ||
        arm(r, deadline, "HSET") < 0)
        goto out;
    sent += 2;
    /* Every reply is read, so that the connection stays in step; the first error is kept. */
    int bad = 0;
    for (size_t k = 0; k < sent; k++) {
        redisReply *rep = read_reply(r, "HSET");
        if (!rep) {
            bad = 1;
            break;
        }
        if (!bad && rep->type == REDIS_REPLY_ERROR) {
            seterr(r, "redis %s: HSET of a handoff: %s", r->where, rep->str);
            bad = 1;
        }
        for (size_t e = 0; !bad && k == sent - 1 && rep->type == REDIS_REPLY_ARRAY &&
                           e < rep->elements; e++)
            if (rep->element[e]->type == REDIS_REPLY_ERROR) {
                seterr(r, "redis %s: HSET of a handoff: %s", r->where, rep->element[e]->str);
                bad = 1;
            }
        if (!bad && k == sent - 1 && rep->type != REDIS_REPLY_ARRAY) {
            seterr(r, "redis %s: HSET of a handoff: the transaction was not run", r->where);
            bad = 1;
        }
        freeReplyObject(rep);
    }
    if (!bad)
        rc = 0;
out:
    r->op_timeout_ms = 0;
    pipe_restore(&g);
    free(names);
    free(argv);
    free(lens);
    return rc == 0 ? 0 : fail_io(r);
}

int vsoc_redis_handoff_get(vsoc_redis_t *r, const char *key, int64_t want_offset,
                           int64_t *offset,
                           int (*fn)(void *ctx, const char *vin, size_t vinlen,
                                     const void *blob, size_t n),
                           void *ctx, int timeout_ms)
{
    if (!key || !key[0] || !offset || !fn)
        return VSOC_EINVAL;
    *offset = -1;
    size_t kn = plain_key(r, "handoff:", key);
    if (!kn)
        return VSOC_ENOMEM;
    pipe_guard_t g;
    int64_t deadline;
    int rc = 0, io = 1;
    redisReply *rep = NULL;
    pipe_block(&g);
    r->op_timeout_ms = timeout_ms;
    if (begin(r, &deadline) < 0)
        goto out;
    const char *get[2] = {"HGETALL", r->kbuf};
    size_t getl[2] = {7, kn};
    if (append(r, 2, get, getl, "HGETALL") < 0 || arm(r, deadline, "HGETALL") < 0 ||
        !(rep = read_reply(r, "HGETALL")))
        goto out;
    if (rep->type == REDIS_REPLY_ERROR) {
        seterr(r, "redis %s: HGETALL of a handoff: %s", r->where, rep->str);
        goto out;
    }
    io = 0;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 2)
        goto out; /* not a hash this client wrote: no handoff */
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *val = rep->element[i + 1];
        if (f->type == REDIS_REPLY_STRING && f->len == 6 && !memcmp(f->str, "offset", 6) &&
            val->type == REDIS_REPLY_STRING && val->len > 0 && val->len < 20) {
            char buf[24];
            memcpy(buf, val->str, val->len);
            buf[val->len] = 0;
            char *end;
            long long o = strtoll(buf, &end, 10);
            if (*end == 0 && o >= 0)
                *offset = o;
        }
    }
    if (*offset < 0 || *offset != want_offset)
        goto out;
    for (size_t i = 0; i + 1 < rep->elements && rc == 0; i += 2) {
        const redisReply *f = rep->element[i], *val = rep->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING || f->len < 3 ||
            f->str[0] != 'v' || f->str[1] != ':' || f->len - 2 > HANDOFF_VIN_MAX)
            continue;
        rc = fn(ctx, f->str + 2, f->len - 2, val->str, val->len);
    }
out:
    r->op_timeout_ms = 0;
    if (rep)
        freeReplyObject(rep);
    pipe_restore(&g);
    return io ? fail_io(r) : rc;
}
