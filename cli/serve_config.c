/* serve_config.c: the keys of `vsoc serve`'s configuration and the checks that span keys
 * (serve_config.h). The table below is the only list of keys: docs/config.md and
 * samples/vsoc.yaml are its printouts, and a unit test keeps them equal. */
#include "serve_config.h"
#include "redis/redis.h"
#include "vsoc.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

#define MS 1000LL
#define SEC (1000 * MS)
#define MIN (60 * SEC)
#define DAY (1440 * MIN)
#define AT(f) offsetof(serve_config_t, f)

/* In table order the sample and the docs list the keys: the service's identity first, then
 * what it reads and writes, what it runs, and where it keeps state. */
static const vsoc_confmap_entry_t serve_table[] = {
    {.key = "instance", .type = VSOC_CONFMAP_STRING, .def = "", .offset = AT(instance),
     .desc = "Name of this instance in logs, metrics and as the Kafka client.id; \"\" = the "
             "host name."},
    {.key = "workers", .type = VSOC_CONFMAP_INT, .def = "0", .offset = AT(workers), .min = 0,
     .max = 64, .desc = "Threads matching events; 0 = one per online CPU."},
    {.key = "log.level", .type = VSOC_CONFMAP_ENUM, .def = "info", .offset = AT(log.level),
     .names = log_levels, .desc = "The least severe log message written."},
    {.key = "kafka.brokers", .type = VSOC_CONFMAP_STRING, .def = NULL,
     .offset = AT(kafka.brokers), .example = "127.0.0.1:9092",
     .desc = "Bootstrap brokers, host:port,..."},
    {.key = "kafka.group", .type = VSOC_CONFMAP_STRING, .def = "vsoc",
     .offset = AT(kafka.group),
     .desc = "Consumer group reading the events; the instances of one group share the "
             "vehicles between them."},
    {.key = "kafka.topics.events", .type = VSOC_CONFMAP_LIST, .def = "[vsoc.events]",
     .offset = AT(kafka.topics.events), .desc = "Topics the vehicles' events are read from."},
    {.key = "kafka.topics.alerts", .type = VSOC_CONFMAP_STRING, .def = "vsoc.alerts",
     .offset = AT(kafka.topics.alerts),
     .desc = "Topic alerts are published to (OCSF JSON); \"\" = alerts are not published."},
    {.key = "kafka.topics.commands", .type = VSOC_CONFMAP_STRING, .def = "",
     .offset = AT(kafka.topics.commands),
     .desc = "Topic signed commands are handed to the connectivity platform on; \"\" = "
             "commands stay queued in the store for vsoc respond."},
    {.key = "kafka.topics.acks", .type = VSOC_CONFMAP_STRING, .def = "vsoc.acks",
     .offset = AT(kafka.topics.acks), .desc = "Topic the vehicles' signed acks are read from."},
    {.key = "kafka.properties", .type = VSOC_CONFMAP_MAP, .def = "{}",
     .offset = AT(kafka.properties),
     .desc = "librdkafka settings for every Kafka client: TLS, SASL, timeouts (e.g. "
             "security.protocol: ssl). bootstrap.servers and group.id come from the keys "
             "above; the settings vsoc's delivery guarantees rest on cannot be changed "
             "(docs/kafka.md)."},
    {.key = "kafka.commit_interval", .type = VSOC_CONFMAP_DURATION, .def = "200ms",
     .offset = AT(kafka.commit_interval_us), .min = MS, .max = 10 * MIN,
     .desc = "How often what was produced is made durable and the offsets of the events "
             "behind it are committed."},
    {.key = "rules", .type = VSOC_CONFMAP_PATH_LIST, .def = "[]", .offset = AT(rules),
     .desc = "Rule files or folders; [] = the default rule pack."},
    {.key = "skip_bad_rules", .type = VSOC_CONFMAP_BOOL, .def = "false",
     .offset = AT(skip_bad_rules),
     .desc = "Start with the rules that compile, naming the ones skipped; false = a rule "
             "that does not compile stops the start."},
    {.key = "baseline", .type = VSOC_CONFMAP_PATH, .def = "", .offset = AT(baseline),
     .desc = "Baseline of normal traffic (vsoc baseline learn); \"\" = none."},
    {.key = "playbooks", .type = VSOC_CONFMAP_PATH_LIST, .def = "[]", .offset = AT(playbooks),
     .desc = "Playbook files or folders; [] = the default playbooks."},
    {.key = "response.enabled", .type = VSOC_CONFMAP_BOOL, .def = "true",
     .offset = AT(response.enabled),
     .desc = "Run playbooks on incidents; false = incidents only, no playbook runs."},
    {.key = "response.key", .type = VSOC_CONFMAP_PATH, .def = "", .offset = AT(response.key),
     .desc = "Ed25519 key that signs the commands (vsoc keygen); needed when "
             "kafka.topics.commands is set."},
    {.key = "response.vehicle_keys", .type = VSOC_CONFMAP_PATH, .def = "",
     .offset = AT(response.vehicle_keys),
     .desc = "Folder of the vehicles' public keys, <VIN>.pub: an ack counts only when signed "
             "by its vehicle's key; needed when kafka.topics.commands is set."},
    {.key = "response.incident_gap", .type = VSOC_CONFMAP_DURATION, .def = "15m",
     .offset = AT(response.incident_gap_us), .min = SEC, .max = 30 * DAY,
     .desc = "Alerts of a vehicle further apart than this (on event time) start a new "
             "incident."},
    {.key = "store.sqlite", .type = VSOC_CONFMAP_PATH, .def = "vsoc.db",
     .offset = AT(store.sqlite),
     .desc = "SQLite store of alerts, incidents, playbook runs, commands and the audit log."},
    {.key = "redis.url", .type = VSOC_CONFMAP_STRING, .def = "", .offset = AT(redis.url),
     .desc = "Redis holding the fleet-wide state that instances share, "
             "redis://[[user]:password@]host[:port][/db] or unix:///path/to.sock "
             "(docs/redis.md); \"\" = fleet state in process (one instance)."},
    {.key = "redis.prefix", .type = VSOC_CONFMAP_STRING, .def = "vsoc:",
     .offset = AT(redis.prefix), .desc = "Prefix of every Redis key vsoc uses."},
    {.key = "redis.timeout", .type = VSOC_CONFMAP_DURATION, .def = "200ms",
     .offset = AT(redis.timeout_us), .min = MS, .max = MIN,
     .desc = "How long one Redis command may take."},
    {.key = "redis.handoff_timeout", .type = VSOC_CONFMAP_DURATION, .def = "10s",
     .offset = AT(redis.handoff_timeout_us), .min = MS, .max = 10 * MIN,
     .desc = "How long writing or reading a partition's handoff may take (the engine state "
             "of its vehicles, moved in a rebalance; docs/serve.md): a rebalance waits for "
             "it."},
    {.key = "http.listen", .type = VSOC_CONFMAP_STRING, .def = "127.0.0.1:9464",
     .offset = AT(http.listen),
     .desc = "Address of the HTTP endpoint (metrics, health, reload), HOST:PORT with an "
             "IPv4 address, [IPv6 address] or localhost (docs/http.md); \"\" = no HTTP "
             "endpoint."},
};

#define NKEYS (sizeof serve_table / sizeof serve_table[0])

const vsoc_confmap_entry_t *serve_config_table(size_t *n)
{
    *n = NKEYS;
    return serve_table;
}

/* ---- checks across keys and of a value's form ------------------------------------------ */

typedef struct chk {
    const serve_config_t *c;
    const vsoc_confmap_loc_t *locs;
    vsoc_diags_t *d;
} chk_t;

/* The location of key's value, or NULL when that value already had its error reported. */
static const vsoc_confmap_loc_t *loc(const chk_t *k, const char *key)
{
    int i = vsoc_confmap_find(serve_table, NKEYS, key);
    return i < 0 || k->locs[i].bad ? NULL : &k->locs[i];
}

static void errk(const chk_t *k, const vsoc_confmap_loc_t *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errk(const chk_t *k, const vsoc_confmap_loc_t *l, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vsoc_diag_add(k->d, VSOC_DIAG_ERROR, k->c->file, l->line, l->col, "%s", msg);
}

/* Kafka's rule for topic names: 1 to 249 of [A-Za-z0-9._-]. */
static int topic_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 249)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* What is wrong with a listen address, or NULL: the rules of vsoc_http_start
 * (docs/http.md), checked here too so that a mistake is located in the file. */
static const char *listen_problem(const char *s)
{
    char host[128];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return "an IPv6 address is written [ADDRESS]:PORT";
        size_t hl = (size_t)(close - s - 1);
        if (hl >= sizeof host)
            return "too long";
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        port = close + 2;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return "not an IPv6 address inside the brackets";
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return "no :PORT";
        size_t hl = (size_t)(colon - s);
        if (memchr(s, ':', hl))
            return "an IPv6 address is written [ADDRESS]:PORT";
        if (hl == 0)
            return "no host (0.0.0.0:PORT listens on every interface)";
        if (hl >= sizeof host)
            return "too long";
        memcpy(host, s, hl);
        host[hl] = '\0';
        port = colon + 1;
        struct in_addr a4;
        if (strcmp(host, "localhost") != 0 && inet_pton(AF_INET, host, &a4) != 1)
            return "the host must be an IPv4 address, [IPv6 address] or localhost";
    }
    size_t np = strlen(port);
    if (np == 0 || np > 5 || strspn(port, "0123456789") != np || atol(port) > 65535)
        return "the port must be a number from 0 to 65535";
    return NULL;
}

static void check_topic(const chk_t *k, const char *key, const char *topic, int may_be_empty)
{
    const vsoc_confmap_loc_t *l = loc(k, key);
    if (!l || (may_be_empty && !*topic))
        return;
    if (!topic_ok(topic))
        errk(k, l, "%s: '%.100s' is not a Kafka topic name (1 to 249 letters, digits, '.', "
                   "'_', '-')",
             key, topic);
}

/* Two topics that must differ: what vsoc writes is not what it reads (it would consume its
 * own output), and alerts and commands are not mixed on one topic. */
static void check_apart(const chk_t *k, const char *akey, const char *a, const char *bkey,
                        const char *b, const char *why)
{
    const vsoc_confmap_loc_t *la = loc(k, akey), *lb = loc(k, bkey);
    if (!la || !lb || !*a || strcmp(a, b) != 0)
        return;
    /* At whichever of the two the file wrote (the later, when it wrote both). */
    const vsoc_confmap_loc_t *l = la->line >= lb->line ? la : lb;
    errk(k, l, "%s and %s are both '%.100s': %s", akey, bkey, a, why);
}

static void check(const serve_config_t *c, const vsoc_confmap_loc_t *locs, vsoc_diags_t *d)
{
    chk_t k = {c, locs, d};
    const vsoc_confmap_loc_t *l;

    if ((l = loc(&k, "kafka.brokers"))) {
        const char *b = c->kafka.brokers;
        for (const char *p = b;; p++) {
            size_t n = strcspn(p, ",");
            if (n == 0 || memchr(p, ' ', n)) {
                errk(&k, l, "kafka.brokers: '%.100s' is not host:port,... (an empty or "
                            "spaced entry)",
                     b);
                break;
            }
            p += n;
            if (!*p)
                break;
        }
    }

    const vsoc_confmap_list_t *ev = &c->kafka.topics.events;
    if ((l = loc(&k, "kafka.topics.events"))) {
        if (ev->n == 0)
            errk(&k, l, "kafka.topics.events: needs at least one topic");
        for (size_t i = 0; i < ev->n; i++)
            check_topic(&k, "kafka.topics.events", ev->v[i], 0);
    }
    check_topic(&k, "kafka.topics.alerts", c->kafka.topics.alerts, 1);
    check_topic(&k, "kafka.topics.commands", c->kafka.topics.commands, 1);
    check_topic(&k, "kafka.topics.acks", c->kafka.topics.acks, 0);
    static const char loop[] = "vsoc would read what it writes";
    for (size_t i = 0; loc(&k, "kafka.topics.events") && i < ev->n; i++) {
        check_apart(&k, "kafka.topics.alerts", c->kafka.topics.alerts, "kafka.topics.events",
                    ev->v[i], loop);
        check_apart(&k, "kafka.topics.commands", c->kafka.topics.commands,
                    "kafka.topics.events", ev->v[i], loop);
    }
    check_apart(&k, "kafka.topics.commands", c->kafka.topics.commands, "kafka.topics.acks",
                c->kafka.topics.acks, loop);
    check_apart(&k, "kafka.topics.alerts", c->kafka.topics.alerts, "kafka.topics.acks",
                c->kafka.topics.acks, loop);
    check_apart(&k, "kafka.topics.alerts", c->kafka.topics.alerts, "kafka.topics.commands",
                c->kafka.topics.commands, "their readers expect one kind of message");

    /* The keys that have their own setting: one place for each value. */
    if (loc(&k, "kafka.properties")) {
        static const struct {
            const char *prop, *key;
        } own[] = {{"bootstrap.servers", "kafka.brokers"},
                   {"metadata.broker.list", "kafka.brokers"},
                   {"group.id", "kafka.group"}};
        for (size_t i = 0; i < c->kafka.properties.n; i++) {
            const vsoc_confmap_pair_t *p = &c->kafka.properties.v[i];
            for (size_t j = 0; j < sizeof own / sizeof own[0]; j++) {
                if (!strcmp(p->key, own[j].prop)) {
                    vsoc_confmap_loc_t pl = {p->line, p->col, 0};
                    errk(&k, &pl, "kafka.properties: %s is set with %s", p->key, own[j].key);
                }
            }
        }
    }

    if ((l = loc(&k, "kafka.topics.commands")) && *c->kafka.topics.commands &&
        loc(&k, "response.key") && !*c->response.key)
        errk(&k, l,
             "kafka.topics.commands is set but response.key is not: commands are signed "
             "(vsoc keygen makes a key)");

    if ((l = loc(&k, "kafka.topics.commands")) && *c->kafka.topics.commands &&
        loc(&k, "response.vehicle_keys") && !*c->response.vehicle_keys)
        errk(&k, l,
             "kafka.topics.commands is set but response.vehicle_keys is not: acks are "
             "verified with the vehicles' keys");

    if ((l = loc(&k, "store.sqlite")) && !*c->store.sqlite)
        errk(&k, l, "store.sqlite: needs a value (the service keeps its state there)");

    /* The Redis client reads its URL without connecting: its own reading, and message (which
     * never repeats a password), located in the file. */
    if ((l = loc(&k, "redis.url")) && *c->redis.url) {
        char err[256] = "";
        vsoc_redis_opts_t ro = {.url = c->redis.url, .prefix = c->redis.prefix};
        vsoc_redis_t *r = vsoc_redis_new(&ro, err, sizeof err);
        if (!r) {
            const char *why = err;
            unsigned long ucol;
            int used = 0;
            if (!strncmp(why, "redis url: ", 11))
                why += 11;
            /* Its column counts in the URL; the file's is the value's, given already. */
            if (sscanf(why, "column %lu: %n", &ucol, &used) == 1 && used > 0)
                errk(&k, l, "redis.url: %s (column %lu of the URL)", why + used, ucol);
            else
                errk(&k, l, "redis.url: %s", why);
        }
        vsoc_redis_free(r);
    }

    const char *why;
    if ((l = loc(&k, "http.listen")) && *c->http.listen &&
        (why = listen_problem(c->http.listen)))
        errk(&k, l, "http.listen: '%.100s': %s", c->http.listen, why);
}

/* ---- loading ------------------------------------------------------------------------ */

void serve_config_free(serve_config_t *c)
{
    if (!c)
        return;
    vsoc_confmap_free(serve_table, NKEYS, c);
    free(c->file);
    free(c);
}

/* Loads from path (text NULL) or from text, then checks across keys. */
static serve_config_t *load(const char *name, const char *text, size_t len,
                            const char *base_dir, vsoc_diags_t *d)
{
    vsoc_confmap_loc_t locs[NKEYS];
    size_t errors0 = vsoc_diags_errors(d);
    serve_config_t *c = calloc(1, sizeof *c);
    if (!c || !(c->file = strdup(name))) {
        vsoc_diag_add(d, VSOC_DIAG_ERROR, name, 0, 0, "out of memory");
        goto fail;
    }
    int rc = text ? vsoc_confmap_load_string(serve_table, NKEYS, c, name, text, len, base_dir,
                                             locs, d)
                  : vsoc_confmap_load_file(serve_table, NKEYS, c, name, locs, d);
    if (rc != 0 && rc != VSOC_EPARSE)
        goto fail; /* unreadable file, no memory: nothing to check */
    check(c, locs, d);
    if (vsoc_diags_errors(d) > errors0)
        goto fail;
    return c;
fail:
    serve_config_free(c);
    return NULL;
}

serve_config_t *serve_config_load(const char *path, vsoc_diags_t *d)
{
    return load(path, NULL, 0, NULL, d);
}

serve_config_t *serve_config_load_string(const char *name, const char *text, size_t len,
                                         const char *base_dir, vsoc_diags_t *d)
{
    return load(name ? name : "<config>", text ? text : "", len, base_dir, d);
}

/* ---- printing ----------------------------------------------------------------------- */

void serve_config_print_docs(FILE *out)
{
    vsoc_confmap_print_docs(serve_table, NKEYS, out);
}

void serve_config_print_sample(FILE *out)
{
    fputs("# vsoc serve -c vsoc.yaml: the service's configuration (docs/config.md).\n"
          "# Every key is shown at its default; a key left out takes its default, and an\n"
          "# unknown key is an error. Relative paths are resolved against this file's "
          "folder.\n\n",
          out);
    vsoc_confmap_print_sample(serve_table, NKEYS, out);
}

void serve_config_print(const serve_config_t *c, FILE *out)
{
    vsoc_confmap_print_values(serve_table, NKEYS, c, out);
}
