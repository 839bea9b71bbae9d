/* cmd_respond.c: vsoc respond: the live side of playbook runs (docs/vsoc-respond.md). It
 * resumes every run and command kept in a store, signs and sends queued commands over MQTT
 * (TLS, client certificate) or a Kafka topic, takes the approvals people record with
 * `vsoc commands approve`, verifies the vehicles' signed acks, and runs timers on the wall
 * clock.
 *
 * Crash safety: each transition is committed to the store before the command goes out (no
 * transaction spans a send), so after a kill the restarted process knows every command it
 * sent; an unanswered one is resent with the same cmd_id and seq after its ack timeout and
 * the agent answers it again without applying it twice. The MQTT session is persistent
 * (clean_session off, fixed client id), so acks that arrive while it is down are delivered
 * when it is back. */
#include "cli.h"
#include "cli_store.h"
#include "deliver.h"
#include "kafka/kafka.h"
#include "mqtt/mqtt.h"
#include "respond.h"
#include "store/store.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_KAFKA_SET 32

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc respond --db FILE --key FILE --vehicle-keys DIR (--mqtt HOST[:PORT] "
            "...\n"
            "                    | --kafka BROKERS ...) [options]\n"
            "\n"
            "Delivers the commands of playbook runs kept in a store (vsoc replay --db, the\n"
            "service) to vehicles and records their acks. Resumes where a previous run of it\n"
            "stopped. Approvals made with `vsoc commands approve` are picked up while it runs.\n"
            "Timers (approval, ack, expiry) run on the wall clock.\n"
            "\n"
            "options:\n"
            "  --db FILE            the store (required)\n"
            "  --key FILE           Ed25519 private key that signs commands (required)\n"
            "  --vehicle-keys DIR   vehicles' public keys, DIR/<VIN>.pub: an ack counts only\n"
            "                       when signed by its vehicle's key (required)\n"
            "  --playbooks PATH     playbook file or directory (repeatable; default %s)\n"
            "  --poll DUR           how often timers and approvals are checked (default 1s)\n"
            "  --exit-when-idle     exit once no command is queued, sent or deferred\n"
            "  --max-runtime DUR    exit after this long (tests, batch use)\n"
            "  -q, --quiet          no log lines\n"
            "\n"
            "MQTT over TLS (commands to vehicles/<vin>/commands, acks from vehicles/+/acks):\n"
            "  --mqtt HOST[:PORT]   broker (port default 8883)\n"
            "  --cafile FILE        CA of the broker's certificate\n"
            "  --cert FILE          this SOC client's certificate\n"
            "  --cert-key FILE      and its private key\n"
            "  --client-id ID       session id kept by the broker (default vsoc-respond)\n"
            "\n"
            "Kafka (docs/kafka.md):\n"
            "  --kafka BROKERS      host:port,...\n"
            "  --commands-topic T   default vsoc.commands (key: the VIN)\n"
            "  --acks-topic T       default vsoc.acks\n"
            "  --kafka-group G      consumer group for acks (default vsoc-respond)\n"
            "  --kafka-set K=V      a librdkafka setting (TLS, SASL; repeatable)\n"
            "\n"
            "exit status: 0 stopped (signal, idle, max runtime), 1 a store, key or transport\n"
            "error, 2 usage or playbook errors.\n",
            cli_default_playbooks());
}

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct respond {
    vsoc_store_t *store;
    vsoc_responder_t *resp;
    vsoc_mqtt_t *mqtt;
    vsoc_kafka_producer_t *prod;
    vsoc_kafka_consumer_t *cons;
    const char *commands_topic;
    cli_deliver_t *deliver; /* acks and approvals */
    int quiet;
    void (*log)(void *ctx, const char *event, const char *text); /* NULL: stderr */
    void *log_ctx;
    int failed;
} respond_t;

static void logline(respond_t *rs, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logline(respond_t *rs, const char *event, const char *fmt, ...)
{
    if (rs->quiet)
        return;
    if (rs->log) {
        char text[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        rs->log(rs->log_ctx, event, text);
        return;
    }
    char t[40], text[1024];
    cli_fmt_time(wall_us(), t, sizeof t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* What vehicles say (an ack's reason) is quoted in lines: one line each, whatever it
     * holds. */
    vsoc_one_line(text);
    fprintf(stderr, "%s %-24s %s\n", t, event, text);
}

/* A failure: said even when quiet. */
static void errline(respond_t *rs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errline(respond_t *rs, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (rs->log)
        rs->log(rs->log_ctx, "error", text);
    else
        fprintf(stderr, "vsoc respond: %s\n", text);
}

static int on_change(void *ctx, const vsoc_change_t *c)
{
    respond_t *rs = ctx;
    if (cli_store_on_change(rs->store, c) != 0) {
        rs->failed = 1;
        return -1;
    }
    const char *id = c->cmd ? c->cmd->cmd_id : c->note ? c->note->id : c->run->id;
    logline(rs, c->event, "%.8s %s", id, c->detail);
    return 0;
}

static int send_cmd(void *ctx, const vsoc_command_t *cmd, const char *envelope, size_t n)
{
    respond_t *rs = ctx;
    char err[512];
    int rc;
    if (rs->mqtt) {
        char topic[VSOC_VIN_MAX + 32];
        snprintf(topic, sizeof topic, "vehicles/%s/commands", cmd->vin);
        rc = vsoc_mqtt_publish(rs->mqtt, topic, envelope, n, 5000, err, sizeof err);
    } else {
        rc = vsoc_kafka_produce(rs->prod, rs->commands_topic, cmd->vin, strlen(cmd->vin),
                                envelope, n, 10000, err, sizeof err);
    }
    if (rc != 0)
        logline(rs, "transport.error", "%.8s to %s: %s (resent after the ack timeout)",
                cmd->cmd_id, cmd->vin, err);
    return rc;
}

/* Lines of the shared ack and approval handling: failures said even when quiet. */
static void deliver_log(void *ctx, const char *event, const char *text)
{
    respond_t *rs = ctx;
    if (!strcmp(event, "error"))
        errline(rs, "%s", text);
    else
        logline(rs, event, "%s", text);
}

/* One ack as received on a transport; from_vin is the VIN its topic names (NULL when the
 * transport has none). */
static void handle_ack(respond_t *rs, const char *from_vin, const void *buf, size_t n)
{
    if (rs->failed)
        return; /* the store failed: nothing more is acted on before the restart */
    if (cli_deliver_ack(rs->deliver, rs->resp, from_vin, buf, n, wall_us()) != 0)
        rs->failed = 1;
}

static void on_mqtt(void *ctx, const char *topic, const void *payload, size_t n)
{
    respond_t *rs = ctx;
    /* vehicles/<vin>/acks */
    char vin[VSOC_VIN_MAX + 1] = "";
    const char *p = strncmp(topic, "vehicles/", 9) == 0 ? topic + 9 : NULL;
    const char *slash = p ? strchr(p, '/') : NULL;
    if (!slash || strcmp(slash, "/acks") != 0 || (size_t)(slash - p) > VSOC_VIN_MAX) {
        logline(rs, "mqtt.ignored", "message on %s", topic);
        return;
    }
    memcpy(vin, p, (size_t)(slash - p));
    vin[slash - p] = 0;
    handle_ack(rs, vin, payload, n);
}

static void on_kafka(void *ctx, const vsoc_kafka_msg_t *m)
{
    handle_ack(ctx, NULL, m->val, m->n);
}

int cmd_respond(int argc, char **argv)
{
    const char *db = NULL, *keyfile = NULL, *keydir = NULL, *mqtt = NULL, *cafile = NULL,
               *cert = NULL, *certkey = NULL, *client_id = "vsoc-respond", *kafka = NULL,
               *acks_topic = "vsoc.acks", *group = "vsoc-respond";
    const char *kset[MAX_KAFKA_SET];
    size_t nkset = 0;
    const char **pbpaths = calloc((size_t)argc + 1, sizeof *pbpaths);
    size_t npb = 0;
    int64_t poll_us = 1000000, max_us = 0;
    int idle_exit = 0, rc = EXIT_USAGE;
    respond_t rs = {.commands_topic = "vsoc.commands"};
    if (!pbpaths) {
        fprintf(stderr, "vsoc respond: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const char **dst = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--exit-when-idle")) {
            idle_exit = 1;
            continue;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            rs.quiet = 1;
            continue;
        }
        static const char *const names[] = {
            "--db", "--key", "--vehicle-keys", "--mqtt", "--cafile", "--cert", "--cert-key",
            "--client-id", "--kafka", "--commands-topic", "--acks-topic", "--kafka-group",
            "--kafka-set", "--playbooks", "--poll", "--max-runtime"};
        const char *name = NULL;
        for (size_t k = 0; k < sizeof names / sizeof *names && !name; k++)
            if (cli_opt(a, names[k], &val))
                name = names[k];
        if (!name) {
            fprintf(stderr, "vsoc respond: %s '%s' (see vsoc respond --help)\n",
                    a[0] == '-' ? "unknown option" : "unexpected argument", a);
            goto done;
        }
        if (!(val = cli_value(argc, argv, &i, val, "vsoc respond", name)))
            goto done;
        if (!strcmp(name, "--db"))
            dst = &db;
        else if (!strcmp(name, "--key"))
            dst = &keyfile;
        else if (!strcmp(name, "--vehicle-keys"))
            dst = &keydir;
        else if (!strcmp(name, "--mqtt"))
            dst = &mqtt;
        else if (!strcmp(name, "--cafile"))
            dst = &cafile;
        else if (!strcmp(name, "--cert"))
            dst = &cert;
        else if (!strcmp(name, "--cert-key"))
            dst = &certkey;
        else if (!strcmp(name, "--client-id"))
            dst = &client_id;
        else if (!strcmp(name, "--kafka"))
            dst = &kafka;
        else if (!strcmp(name, "--commands-topic"))
            dst = &rs.commands_topic;
        else if (!strcmp(name, "--acks-topic"))
            dst = &acks_topic;
        else if (!strcmp(name, "--kafka-group"))
            dst = &group;
        if (dst) {
            *dst = val;
        } else if (!strcmp(name, "--kafka-set")) {
            if (nkset == MAX_KAFKA_SET || !strchr(val, '=')) {
                fprintf(stderr, "vsoc respond: --kafka-set takes KEY=VALUE (at most %d)\n",
                        MAX_KAFKA_SET);
                goto done;
            }
            kset[nkset++] = val;
        } else if (!strcmp(name, "--playbooks")) {
            pbpaths[npb++] = val;
        } else {
            int64_t *d = !strcmp(name, "--poll") ? &poll_us : &max_us;
            if (vsoc_parse_duration(val, d) != 0 || *d <= 0) {
                fprintf(stderr, "vsoc respond: bad %s '%s' (e.g. 1s, 500ms)\n", name, val);
                goto done;
            }
        }
    }
    if (!db || !keyfile || !keydir) {
        fprintf(stderr, "vsoc respond: --db, --key and --vehicle-keys are required\n");
        goto done;
    }
    if (!!mqtt == !!kafka) {
        fprintf(stderr, "vsoc respond: give one transport: --mqtt or --kafka\n");
        goto done;
    }
    if (mqtt && (!cafile || !cert || !certkey)) {
        fprintf(stderr, "vsoc respond: --mqtt needs --cafile, --cert and --cert-key (TLS with "
                        "a client certificate)\n");
        goto done;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    cli_respond_opts_t o = {.db = db, .keyfile = keyfile, .keydir = keydir, .mqtt = mqtt,
                            .cafile = cafile, .cert = cert, .certkey = certkey,
                            .client_id = client_id, .kafka = kafka,
                            .commands_topic = rs.commands_topic, .acks_topic = acks_topic,
                            .group = group, .kset = kset, .nkset = nkset,
                            .playbooks = pbpaths, .nplaybooks = npb, .poll_us = poll_us,
                            .max_us = max_us, .idle_exit = idle_exit, .quiet = rs.quiet,
                            .stop = &stop};
    rc = cli_respond_run(&o);
done:
    free(pbpaths);
    return rc;
}

int cli_respond_run(const cli_respond_opts_t *o)
{
    const char *db = o->db, *keyfile = o->keyfile, *keydir = o->keydir, *mqtt = o->mqtt,
               *cafile = o->cafile, *cert = o->cert, *certkey = o->certkey,
               *client_id = o->client_id ? o->client_id : "vsoc-respond", *kafka = o->kafka,
               *acks_topic = o->acks_topic ? o->acks_topic : "vsoc.acks",
               *group = o->group ? o->group : "vsoc-respond";
    const char *const *kset = o->kset;
    size_t nkset = o->nkset;
    const char *const *pbpaths = o->playbooks;
    size_t npb = o->nplaybooks;
    int64_t poll_us = o->poll_us > 0 ? o->poll_us : 1000000, max_us = o->max_us;
    int idle_exit = o->idle_exit, rc = EXIT_USAGE;
    respond_t rs = {.commands_topic = o->commands_topic ? o->commands_topic : "vsoc.commands",
                    .quiet = o->quiet, .log = o->log, .log_ctx = o->log_ctx};
    vsoc_playbooks_t *pbs = NULL;
    vsoc_key_t *key = NULL;
    char err[512];

    vsoc_diags_t *d = vsoc_diags_new();
    const char *def = cli_default_playbooks();
    pbs = d ? vsoc_playbooks_load(npb ? pbpaths : &def, npb ? npb : 1, d) : NULL;
    if (!pbs || vsoc_diags_errors(d)) {
        vsoc_diags_sort(d);
        if (d)
            vsoc_diags_print(d, stderr);
        fprintf(stderr, "vsoc respond: the playbooks do not compile (see vsoc playbooks "
                        "lint)\n");
        vsoc_diags_free(d);
        goto done;
    }
    vsoc_diags_free(d);
    rc = 1;
    key = vsoc_key_load_private(keyfile, NULL, err, sizeof err);
    if (!key) {
        errline(&rs, "%s", err);
        goto done;
    }
    rs.store = cli_store_open(db, 1);
    if (!rs.store)
        goto done;
    if (cli_responder_lock(db, "vsoc respond", err, sizeof err) != 0) {
        errline(&rs, "%s", err);
        goto done;
    }
    /* The responder exists and holds every open command before the transport connects: a
     * persistent MQTT session delivers waiting acks as soon as the connection is up. */
    vsoc_responder_opts_t ro = {.playbooks = pbs, .key = key, .on_change = on_change,
                                .send = send_cmd, .ctx = &rs};
    rs.resp = vsoc_responder_new(&ro, err, sizeof err);
    if (!rs.resp) {
        errline(&rs, "%s", err);
        goto done;
    }
    if (!(rs.deliver = cli_deliver_new(rs.store, keydir, deliver_log, &rs))) {
        errline(&rs, "out of memory");
        goto done;
    }
    if (cli_responder_restore(rs.resp, rs.store, 1) != 0 ||
        cli_deliver_skip_approvals(rs.deliver) != 0)
        goto done;
    if (mqtt) {
        char host[256];
        int port = 8883;
        snprintf(host, sizeof host, "%s", mqtt);
        char *colon = strrchr(host, ':');
        if (colon) {
            *colon = 0;
            port = atoi(colon + 1);
        }
        vsoc_mqtt_opts_t mo = {.host = host, .port = port, .client_id = client_id,
                               .cafile = cafile, .certfile = cert, .keyfile = certkey,
                               .clean_session = 0, .on_message = on_mqtt, .ctx = &rs};
        rs.mqtt = vsoc_mqtt_connect(&mo, 10000, err, sizeof err);
        if (!rs.mqtt || vsoc_mqtt_subscribe(rs.mqtt, "vehicles/+/acks", 5000, err,
                                            sizeof err) != 0) {
            errline(&rs, "mqtt %s: %s", mqtt, err);
            goto done;
        }
    } else {
        rs.prod = vsoc_kafka_producer_new(kafka, kset, nkset, err, sizeof err);
        const char *topics[] = {acks_topic};
        rs.cons = rs.prod ? vsoc_kafka_consumer_new(kafka, group, topics, 1, kset, nkset, err,
                                                    sizeof err)
                          : NULL;
        if (!rs.cons) {
            errline(&rs, "kafka %s: %s", kafka, err);
            goto done;
        }
    }
    logline(&rs, "respond.started", "%zu open commands in %s, %zu in flight, via %s",
            vsoc_responder_open_commands(rs.resp), db, vsoc_responder_in_flight(rs.resp),
            mqtt ? "mqtt" : "kafka");
    vsoc_store_audit(rs.store, "vsoc", "respond.started", db, mqtt ? "mqtt" : "kafka",
                     wall_us());
    int64_t t0 = wall_us(), next = 0;
    rc = 0;
    while (!*o->stop && !rs.failed) {
        int64_t now = wall_us();
        if (now >= next) {
            next = now + poll_us;
            if (cli_deliver_approvals(rs.deliver, rs.resp) != 0) {
                rc = 1;
                break;
            }
            vsoc_responder_tick(rs.resp, now);
            if (vsoc_responder_error(rs.resp))
                break;
            if (idle_exit && vsoc_responder_in_flight(rs.resp) == 0)
                break;
            if (max_us && now - t0 >= max_us)
                break;
        }
        int wait_ms = (int)((next - now) / 1000);
        if (wait_ms > 200)
            wait_ms = 200;
        if (wait_ms < 1)
            wait_ms = 1;
        if (rs.mqtt) {
            if (vsoc_mqtt_loop(rs.mqtt, wait_ms, err, sizeof err) != 0)
                logline(&rs, "mqtt.down", "%s (reconnecting)", err);
        } else {
            int got = vsoc_kafka_poll(rs.cons, wait_ms, on_kafka, &rs, err, sizeof err);
            if (got < 0)
                logline(&rs, "kafka.error", "%s", err);
            /* Acks are in the store now: only then may the group move past them. */
            else if (got > 0 && !rs.failed && vsoc_kafka_commit(rs.cons, err, sizeof err) != 0)
                logline(&rs, "kafka.error", "commit: %s", err);
        }
    }
    if (vsoc_responder_error(rs.resp)) {
        errline(&rs, "%s", vsoc_responder_error(rs.resp));
        rc = 1;
    }
    if (rs.failed)
        rc = 1;
    uint64_t acks_ok, acks_bad;
    cli_deliver_counts(rs.deliver, &acks_ok, &acks_bad);
    logline(&rs, "respond.stopped", "%llu acks verified, %llu refused, %zu commands in flight",
            (unsigned long long)acks_ok, (unsigned long long)acks_bad,
            vsoc_responder_in_flight(rs.resp));
done:
    vsoc_responder_free(rs.resp);
    vsoc_mqtt_free(rs.mqtt);
    vsoc_kafka_consumer_free(rs.cons);
    vsoc_kafka_producer_free(rs.prod);
    cli_deliver_free(rs.deliver);
    vsoc_store_close(rs.store);
    vsoc_key_free(key);
    vsoc_playbooks_free(pbs);
    return rc;
}
