/* http.h: the service's small HTTP server (libmicrohttpd): Prometheus metrics, liveness,
 * readiness and a reload trigger (docs/http.md).
 *
 *   GET|HEAD /metrics     200, text/plain; version=0.0.4; charset=utf-8
 *   GET|HEAD /healthz     200 "ok"
 *   GET|HEAD /readyz      200 "ready", or 503 with the reason
 *   POST|PUT /-/reload    200 with what was loaded, or 500 with why not
 *   anything else         404; a known path with another method 405 with Allow
 *
 * Every response other than /metrics is one line of text/plain. The server binds only the
 * address it is given and runs on libmicrohttpd's threads, one per connection (at most
 * VSOC_HTTP_MAX_CONNECTIONS), so a reload that takes seconds never delays /healthz or
 * /metrics. Idle connections are closed after VSOC_HTTP_TIMEOUT_S seconds; a request
 * body above VSOC_HTTP_MAX_BODY bytes is refused (413, or the connection closed when the
 * body is chunked). */
#ifndef VSOC_HTTP_H
#define VSOC_HTTP_H

#include "prom.h"

#include <stddef.h>

#define VSOC_HTTP_MAX_CONNECTIONS 64
#define VSOC_HTTP_TIMEOUT_S 10
#define VSOC_HTTP_MAX_BODY 1024
/* Longest reason from ready and message from reload kept for the response (bytes,
 * including the NUL); longer text is cut. */
#define VSOC_HTTP_MSG_MAX 1024

/* What the server calls. Every member may be NULL. Each callback runs on a server thread;
 * the server never runs one callback twice at the same time (each has its own lock), but
 * different callbacks may run at the same time on different threads, so ctx must be safe
 * for that. The callbacks must not call vsoc_http_stop.
 *
 * The messages they write (why, msg) become one line of the response: line breaks and
 * other control characters are replaced by spaces. */
typedef struct vsoc_http_handlers {
    /* Writes the service's metric families into out (see prom.h). An error recorded on
     * out (an invalid name) turns the response into 500 with that error, so a broken
     * metric is noticed rather than missing. NULL: only the server's own metrics. */
    void (*metrics)(void *ctx, vsoc_prom_t *out);
    /* Returns 1 when ready to work, or 0 with the reason in why (n bytes). NULL: always
     * ready. */
    int (*ready)(void *ctx, char *why, size_t n);
    /* Reloads (it may block for seconds) and returns 0 with what was loaded in msg, or -1
     * with why not (what runs stays as it was). NULL: /-/reload answers 404. */
    int (*reload)(void *ctx, char *msg, size_t n);
    /* Receives libmicrohttpd's own messages after a successful start (accept failures,
     * malformed requests), one per call, without a trailing newline; any thread. NULL:
     * they are dropped. Messages met while starting go to the start error instead. */
    void (*log)(void *ctx, const char *msg);
    void *ctx;
} vsoc_http_handlers_t;

typedef struct vsoc_http vsoc_http_t;

/* Starts serving on listen, "HOST:PORT" where HOST is a dotted IPv4 address ("0.0.0.0"
 * for every interface), "localhost" (127.0.0.1) or a bracketed IPv6 address ("[::1]",
 * "[::]" for every IPv6 interface; IPv6 only, never the IPv4 side too); PORT 0 takes a
 * free port (see vsoc_http_port). h is copied; h->ctx is borrowed until vsoc_http_stop
 * returns. Returns NULL with the address and the system's or libmicrohttpd's message in
 * err (a malformed address, a port in use, no permission); then no callback is ever
 * called. */
vsoc_http_t *vsoc_http_start(const char *listen, const vsoc_http_handlers_t *h, char *err,
                             size_t errlen);

/* The port bound (useful after asking for port 0). */
int vsoc_http_port(const vsoc_http_t *s);

/* Stops listening, closes every connection and frees s; NULL does nothing. A request whose
 * callback is running is let finish first (so this may wait for a reload); when it
 * returns, no callback runs and none will be called, and the port is free again. */
void vsoc_http_stop(vsoc_http_t *s);

/* The server's own metric family, which /metrics appends after the handler's:
 *   vsoc_http_requests_total{handler="/metrics|/healthz|/readyz|/-/reload|other",
 *                            code="200|404|405|413|500|503"} (counter; only the pairs
 *   that happened) */

#endif
