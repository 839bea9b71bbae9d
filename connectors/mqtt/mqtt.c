/* mqtt.c: MQTT over TLS with libmosquitto (see mqtt.h).
 *
 * libmosquitto is driven without its thread: every wait (CONNACK, SUBACK, PUBACK) loops
 * mosquitto_loop on the caller's thread until the callback has set the flag it waits for, or
 * the time is up. Callbacks only record what happened: a received message is copied to a
 * queue, whatever wait it arrives in (a persistent session delivers right after CONNACK,
 * before the caller is ready), and vsoc_mqtt_loop hands the queue to on_message after
 * mosquitto_loop has returned. So on_message may publish (and wait for the PUBACK) on this
 * handle; messages arriving meanwhile join the queue. The handle remembers its
 * subscriptions and renews them after a reconnect. */
#include "mqtt.h"

#include <mosquitto.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define MAX_SUBS 16

struct vsoc_mqtt {
    struct mosquitto *mosq;
    vsoc_mqtt_opts_t o;
    char *host;
    int port;
    int connected;
    int connack;           /* -1 while waiting, else the CONNACK code */
    int wait_mid;          /* the SUBACK or PUBACK waited for */
    int wait_done;
    int wait_refused;      /* SUBACK granted 0x80 */
    int resub_refused;     /* a renewed subscription was refused after a reconnect */
    char *subs[MAX_SUBS];
    size_t nsubs;
    long long next_retry_ms;
    int backoff_ms;
    char lastlog[256];     /* libmosquitto's last error-level log line (TLS details) */
    char down[512];        /* why the connection is down, repeated while backing off */
    struct qmsg *head, *tail; /* received, not yet delivered, oldest first */
    int delivering;
};

struct qmsg {
    struct qmsg *next;
    char *topic;
    size_t n;
    char payload[]; /* n bytes and a NUL */
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mosquitto_lib_init();
}

/* Writes "mqtt: " and the message into err (when given): every error of this module names
 * it. Returns -1, for `return mqtt_err(...)`. */
__attribute__((format(printf, 3, 4)))
static int mqtt_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        size_t k = (size_t)snprintf(err, errlen, "mqtt: ");
        va_list ap;
        va_start(ap, fmt);
        if (k < errlen)
            vsnprintf(err + k, errlen - k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libmosquitto's message for rc, with errno's for MOSQ_ERR_ERRNO and the last logged error
 * (where OpenSSL's reason ends up) for TLS failures. */
static void mosq_err(vsoc_mqtt_t *m, int rc, char *buf, size_t n)
{
    const char *msg = rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc);
    if (m->lastlog[0])
        snprintf(buf, n, "%s (%s)", msg, m->lastlog);
    else
        snprintf(buf, n, "%s", msg);
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    vsoc_mqtt_t *m = obj;
    if (level == MOSQ_LOG_ERR || level == MOSQ_LOG_WARNING)
        snprintf(m->lastlog, sizeof m->lastlog, "%s", str);
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    vsoc_mqtt_t *m = obj;
    m->connack = rc;
    m->connected = rc == 0;
    if (rc != 0)
        return;
    m->backoff_ms = BACKOFF_MIN_MS;
    /* A reconnect: renew the subscriptions (a clean session lost them). Their SUBACKs are
     * checked in on_subscribe without a waiter. */
    for (size_t i = 0; i < m->nsubs; i++)
        mosquitto_subscribe(mosq, NULL, m->subs[i], 1);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    vsoc_mqtt_t *m = obj;
    m->connected = 0;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *qos)
{
    vsoc_mqtt_t *m = obj;
    int refused = 0;
    for (int i = 0; i < n; i++)
        if (qos[i] == 0x80 || qos[i] < 0 || qos[i] > 2)
            refused = 1;
    if (mid == m->wait_mid) {
        m->wait_done = 1;
        m->wait_refused = refused;
    } else if (refused) {
        m->resub_refused = 1;
    }
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    vsoc_mqtt_t *m = obj;
    if (mid == m->wait_mid)
        m->wait_done = 1;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    vsoc_mqtt_t *m = obj;
    if (!m->o.on_message || msg->payloadlen < 0)
        return;
    size_t n = (size_t)msg->payloadlen;
    struct qmsg *q = malloc(sizeof *q + n + 1);
    if (!q || !(q->topic = strdup(msg->topic))) {
        /* Out of memory: the message is lost (already acknowledged to the broker), as it
         * would be by a client that crashed. */
        snprintf(m->lastlog, sizeof m->lastlog, "out of memory: a message on %s was lost",
                 msg->topic);
        free(q);
        return;
    }
    q->next = NULL;
    q->n = n;
    if (n)
        memcpy(q->payload, msg->payload, n); /* an empty message has no payload pointer */
    q->payload[n] = 0;
    if (m->tail)
        m->tail->next = q;
    else
        m->head = q;
    m->tail = q;
}

/* Hands the queued messages to on_message, oldest first, including those that arrive while
 * on_message runs. Not re-entered from inside on_message. */
static void deliver(vsoc_mqtt_t *m)
{
    if (m->delivering)
        return;
    m->delivering = 1;
    while (m->head) {
        struct qmsg *q = m->head;
        m->head = q->next;
        if (!m->head)
            m->tail = NULL;
        m->o.on_message(m->o.ctx, q->topic, q->payload, q->n);
        free(q->topic);
        free(q);
    }
    m->delivering = 0;
}

/* Runs the network until *flag is set or timeout_ms passes. Returns 0 when set, 1 on
 * timeout, or a MOSQ_ERR_* code when the connection fails. */
static int wait_for(vsoc_mqtt_t *m, const int *flag, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (!*flag) {
        long long left = end - now_ms();
        if (left <= 0)
            return 1;
        int rc = mosquitto_loop(m->mosq, left < 100 ? (int)left : 100, 1);
        if (rc != MOSQ_ERR_SUCCESS && !*flag)
            return rc;
    }
    return 0;
}

void vsoc_mqtt_free(vsoc_mqtt_t *m)
{
    if (!m)
        return;
    if (m->mosq) {
        if (m->connected) {
            mosquitto_disconnect(m->mosq);
            /* Lets the DISCONNECT packet out before the socket closes. */
            mosquitto_loop(m->mosq, 50, 1);
        }
        mosquitto_destroy(m->mosq);
    }
    for (size_t i = 0; i < m->nsubs; i++)
        free(m->subs[i]);
    while (m->head) {
        struct qmsg *q = m->head;
        m->head = q->next;
        free(q->topic);
        free(q);
    }
    free(m->host);
    free(m);
}

vsoc_mqtt_t *vsoc_mqtt_connect(const vsoc_mqtt_opts_t *o, int timeout_ms, char *err,
                               size_t errlen)
{
    pthread_once(&lib_once, lib_init);
    if (!o->host || !o->client_id || !o->cafile) {
        mqtt_err(err, errlen, "%s is required",
                 !o->host ? "a broker host" : !o->client_id ? "a client id" : "a CA file");
        return NULL;
    }
    char msg[512];
    vsoc_mqtt_t *m = calloc(1, sizeof *m);
    if (!m || !(m->host = strdup(o->host))) {
        mqtt_err(err, errlen, "out of memory");
        free(m);
        return NULL;
    }
    m->o = *o;
    m->port = o->port ? o->port : 8883;
    m->connack = -1;
    m->backoff_ms = BACKOFF_MIN_MS;
    m->mosq = mosquitto_new(o->client_id, o->clean_session != 0, m);
    if (!m->mosq) {
        mqtt_err(err, errlen, "mosquitto_new(%s): %s", o->client_id, strerror(errno));
        goto fail;
    }
    mosquitto_log_callback_set(m->mosq, on_log);
    mosquitto_connect_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
    mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
    mosquitto_publish_callback_set(m->mosq, on_publish);
    mosquitto_message_callback_set(m->mosq, on_message);
    /* libmosquitto only says "invalid arguments" for a file it cannot read: name it here. */
    const char *files[][2] = {{"CA file", o->cafile}, {"certificate", o->certfile},
                              {"key", o->keyfile}};
    for (size_t i = 0; i < 3; i++) {
        FILE *f = files[i][1] ? fopen(files[i][1], "r") : NULL;
        if (files[i][1] && !f) {
            mqtt_err(err, errlen, "%s %s: %s", files[i][0], files[i][1], strerror(errno));
            goto fail;
        }
        if (f)
            fclose(f);
    }
    int rc = mosquitto_tls_set(m->mosq, o->cafile, NULL, o->certfile, o->keyfile, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_tls_opts_set(m->mosq, SSL_VERIFY_PEER, "tlsv1.2", NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosq_err(m, rc, msg, sizeof msg);
        mqtt_err(err, errlen, "TLS set-up (ca %s, cert %s, key %s): %s", o->cafile,
                 o->certfile ? o->certfile : "none", o->keyfile ? o->keyfile : "none", msg);
        goto fail;
    }
    rc = mosquitto_connect(m->mosq, m->host, m->port, o->keepalive_s ? o->keepalive_s : 30);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosq_err(m, rc, msg, sizeof msg);
        mqtt_err(err, errlen, "connect to %s:%d: %s", m->host, m->port, msg);
        goto fail;
    }
    int done = 0;
    /* connack stays -1 until the CONNACK: wait on a flag derived from it. */
    long long end = now_ms() + timeout_ms;
    while (m->connack < 0) {
        long long left = end - now_ms();
        if (left <= 0) {
            mqtt_err(err, errlen, "%s:%d: no CONNACK within %d ms%s%s", m->host, m->port,
                     timeout_ms, m->lastlog[0] ? ": " : "", m->lastlog);
            goto fail;
        }
        rc = mosquitto_loop(m->mosq, left < 100 ? (int)left : 100, 1);
        if (rc != MOSQ_ERR_SUCCESS && m->connack < 0) {
            mosq_err(m, rc, msg, sizeof msg);
            mqtt_err(err, errlen, "%s:%d: %s", m->host, m->port, msg);
            goto fail;
        }
    }
    done = m->connack == 0;
    if (!done) {
        mqtt_err(err, errlen, "%s:%d refused the connection: %s", m->host, m->port,
                 mosquitto_connack_string(m->connack));
        goto fail;
    }
    return m;
fail:
    vsoc_mqtt_free(m);
    return NULL;
}

/* err = "mqtt: <op> <topic>: <libmosquitto's message for rc>". Returns -1. */
static int op_err(vsoc_mqtt_t *m, int rc, const char *op, const char *topic, char *err,
                  size_t errlen)
{
    char msg[512];
    mosq_err(m, rc, msg, sizeof msg);
    return mqtt_err(err, errlen, "%s %s: %s", op, topic, msg);
}

/* Waits for the broker's answer (ack: "SUBACK", "PUBACK") to m->wait_mid. Returns 0, or -1
 * with err. */
static int wait_ack(vsoc_mqtt_t *m, const char *op, const char *topic, const char *ack,
                    int timeout_ms, char *err, size_t errlen)
{
    int rc = wait_for(m, &m->wait_done, timeout_ms);
    m->wait_mid = 0;
    if (rc == 1)
        return mqtt_err(err, errlen, "%s %s: no %s within %d ms", op, topic, ack, timeout_ms);
    return rc != 0 ? op_err(m, rc, op, topic, err, errlen) : 0;
}

int vsoc_mqtt_subscribe(vsoc_mqtt_t *m, const char *topic, int timeout_ms, char *err,
                        size_t errlen)
{
    if (m->nsubs == MAX_SUBS)
        return mqtt_err(err, errlen, "subscribe %s: more than %d subscriptions", topic,
                        MAX_SUBS);
    m->wait_done = m->wait_refused = 0;
    int rc = mosquitto_subscribe(m->mosq, &m->wait_mid, topic, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        return op_err(m, rc, "subscribe", topic, err, errlen);
    if (wait_ack(m, "subscribe", topic, "SUBACK", timeout_ms, err, errlen) != 0)
        return -1;
    if (m->wait_refused)
        return mqtt_err(err, errlen, "subscribe %s: refused by the broker (not authorised)",
                        topic);
    if (!(m->subs[m->nsubs] = strdup(topic)))
        return mqtt_err(err, errlen, "out of memory");
    m->nsubs++;
    return 0;
}

int vsoc_mqtt_publish(vsoc_mqtt_t *m, const char *topic, const void *payload, size_t n,
                      int timeout_ms, char *err, size_t errlen)
{
    if (n > 268435455)
        return mqtt_err(err, errlen, "publish %s: %zu bytes is too large", topic, n);
    int mid = 0;
    int rc = mosquitto_publish(m->mosq, &mid, topic, (int)n, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS)
        return op_err(m, rc, "publish", topic, err, errlen);
    if (timeout_ms <= 0)
        return 0;
    m->wait_mid = mid;
    m->wait_done = 0;
    return wait_ack(m, "publish", topic, "PUBACK", timeout_ms, err, errlen);
}

int vsoc_mqtt_loop(vsoc_mqtt_t *m, int timeout_ms, char *err, size_t errlen)
{
    char msg[256];
    deliver(m); /* what arrived during connect, subscribe or publish waits */
    if (!m->connected) {
        long long t = now_ms();
        if (t < m->next_retry_ms) {
            /* Waiting out the back-off still sleeps, so a caller's loop does not spin. */
            long long left = m->next_retry_ms - t;
            struct timespec ts = {0, (long)(left < timeout_ms ? left : timeout_ms) * 1000000L};
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec = ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
            }
            nanosleep(&ts, NULL);
            /* The same text as the failure that started the wait: a caller that logs
             * changes only gets one line per failure, not one per call. */
            return mqtt_err(err, errlen, "%s", m->down);
        }
        m->connack = -1;
        m->lastlog[0] = 0;
        int rc = mosquitto_reconnect(m->mosq);
        m->next_retry_ms = now_ms() + m->backoff_ms;
        m->backoff_ms = m->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : m->backoff_ms * 2;
        if (rc != MOSQ_ERR_SUCCESS) {
            mosq_err(m, rc, msg, sizeof msg);
            snprintf(m->down, sizeof m->down, "reconnect to %.200s:%d: %s (retrying)",
                     m->host, m->port, msg);
            return mqtt_err(err, errlen, "%s", m->down);
        }
        int connected = 0;
        rc = wait_for(m, &m->connected, timeout_ms);
        connected = rc == 0;
        if (!connected) {
            if (m->connack > 0)
                snprintf(msg, sizeof msg, "%s", mosquitto_connack_string(m->connack));
            else if (rc == 1)
                snprintf(msg, sizeof msg, "no CONNACK within %d ms", timeout_ms);
            else
                mosq_err(m, rc, msg, sizeof msg);
            snprintf(m->down, sizeof m->down, "reconnect to %.200s:%d: %s (retrying)",
                     m->host, m->port, msg);
            return mqtt_err(err, errlen, "%s", m->down);
        }
        deliver(m); /* a persistent session may have delivered at once */
        return 0;
    }
    int rc = mosquitto_loop(m->mosq, timeout_ms, 1);
    if (rc != MOSQ_ERR_SUCCESS || !m->connected) {
        deliver(m); /* what came before the connection broke */
        m->connected = 0;
        m->next_retry_ms = now_ms() + m->backoff_ms;
        mosq_err(m, rc == MOSQ_ERR_SUCCESS ? MOSQ_ERR_CONN_LOST : rc, msg, sizeof msg);
        snprintf(m->down, sizeof m->down,
                 "%.200s:%d: connection lost: %s (reconnecting)", m->host, m->port, msg);
        return mqtt_err(err, errlen, "%s", m->down);
    }
    deliver(m);
    if (m->resub_refused) {
        m->resub_refused = 0;
        return mqtt_err(err, errlen, "a renewed subscription was refused by the broker");
    }
    return 0;
}
