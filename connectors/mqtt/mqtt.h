/* mqtt.h: an MQTT-over-TLS client (libmosquitto) for vehicles and the SOC: connect out with
 * a client certificate, subscribe, publish with QoS 1, deliver messages to a callback.
 *
 * TLS is required (TLS 1.2 or later, the broker's certificate checked against cafile);
 * nothing here listens. Messages are delivered from vsoc_mqtt_loop on the caller's thread.
 * Lost connections are re-established by vsoc_mqtt_loop with a back-off, and subscriptions
 * are renewed. Errors carry libmosquitto's message in err. A handle is used by one thread. */
#ifndef VSOC_MQTT_H
#define VSOC_MQTT_H

#include <stddef.h>

typedef struct vsoc_mqtt_opts {
    const char *host;            /* broker */
    int port;                    /* 0: 8883 */
    const char *client_id;       /* unique per connection (a vehicle uses its VIN) */
    const char *cafile;          /* CA that signed the broker's certificate (required) */
    const char *certfile;        /* this client's certificate (PEM) */
    const char *keyfile;         /* and its private key */
    int keepalive_s;             /* 0: 30 */
    int clean_session;           /* 0 keeps the broker-side session: QoS 1 messages sent
                                    while disconnected are delivered on reconnect */
    void (*on_message)(void *ctx, const char *topic, const void *payload, size_t n);
    void *ctx;
} vsoc_mqtt_opts_t;

typedef struct vsoc_mqtt vsoc_mqtt_t;

/* Creates the client and connects, waiting up to timeout_ms for the broker's CONNACK.
 * Returns NULL with the reason in err (TLS set-up, refused connection, timeout). */
vsoc_mqtt_t *vsoc_mqtt_connect(const vsoc_mqtt_opts_t *o, int timeout_ms, char *err,
                               size_t errlen);
void vsoc_mqtt_free(vsoc_mqtt_t *m); /* disconnects; NULL does nothing */

/* Subscribes with QoS 1 and waits up to timeout_ms for SUBACK; a refusal by the broker
 * (ACL) is an error. Returns 0 or -1 with err. */
int vsoc_mqtt_subscribe(vsoc_mqtt_t *m, const char *topic, int timeout_ms, char *err,
                        size_t errlen);
/* Publishes with QoS 1 and waits up to timeout_ms for PUBACK (0: do not wait). Returns 0 or
 * -1 with err. */
int vsoc_mqtt_publish(vsoc_mqtt_t *m, const char *topic, const void *payload, size_t n,
                      int timeout_ms, char *err, size_t errlen);
/* Runs the network for up to timeout_ms, delivering messages. Returns 0, or -1 with err
 * when the connection is down (it keeps trying on the next call). */
int vsoc_mqtt_loop(vsoc_mqtt_t *m, int timeout_ms, char *err, size_t errlen);

#endif
