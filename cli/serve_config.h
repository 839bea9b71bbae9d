/* serve_config.h: the configuration of `vsoc serve` (docs/config.md): one table of keys
 * (serve_config.c) drives the YAML loader, the checks, the reference in docs/config.md and
 * the sample samples/vsoc.yaml.
 *
 * The struct holds the values as the file gives them, with the defaults applied and
 * relative paths made absolute against the file's folder. Values whose meaning depends on
 * the machine are left for the service to settle: instance "" (the host name), workers 0
 * (one per online CPU), rules and playbooks empty (the default pack and playbooks).
 * A loaded config is immutable and may be read from any thread. */
#ifndef VSOC_SERVE_CONFIG_H
#define VSOC_SERVE_CONFIG_H

#include "confmap.h"
#include "diag.h"

#include <stdint.h>
#include <stdio.h>

/* log.level, least to most severe. */
typedef enum {
    SERVE_LOG_DEBUG = 0,
    SERVE_LOG_INFO = 1,
    SERVE_LOG_WARN = 2,
    SERVE_LOG_ERROR = 3,
} serve_log_level_t;

typedef struct serve_config {
    char *file;    /* the file it was loaded from, as given ("<name>" for a text) */
    char *instance; /* "" = the host name */
    int workers;    /* 0..64; 0 = one per online CPU */
    struct {
        int level; /* a serve_log_level_t */
    } log;
    struct {
        char *brokers; /* "host:port,...", never empty */
        char *group;
        struct {
            vsoc_confmap_list_t events; /* at least one, none empty */
            char *alerts;               /* "" = alerts are not published */
            char *commands;             /* "" = commands stay queued for vsoc respond */
            char *acks;
        } topics;
        vsoc_confmap_map_t properties; /* librdkafka settings for every client, file order */
        int64_t commit_interval_us;
    } kafka;
    vsoc_confmap_list_t rules;     /* empty = the default pack */
    int skip_bad_rules;
    char *baseline;                /* "" = none */
    vsoc_confmap_list_t playbooks; /* empty = the default playbooks */
    struct {
        int enabled;
        char *key; /* signing key; never "" when kafka.topics.commands is set */
        char *vehicle_keys; /* <VIN>.pub folder; never "" when kafka.topics.commands is set */
        int64_t incident_gap_us;
    } response;
    struct {
        char *sqlite; /* never "" */
    } store;
    struct {
        char *url; /* "" = fleet state in process; else a URL vsoc_redis_new accepts */
        char *prefix;
        int64_t timeout_us;
        int64_t handoff_timeout_us;
    } redis;
    struct {
        char *listen; /* "" = no HTTP endpoint; else an address vsoc_http_start accepts */
    } http;
} serve_config_t;

/* Loads and checks the file at path. Every problem is added to d as
 * file:line:col: error: message (all of them, not only the first). Returns the config,
 * caller frees with serve_config_free, or NULL when any error was reported (or memory ran
 * out, also reported). */
serve_config_t *serve_config_load(const char *path, vsoc_diags_t *d);

/* The same from text (len bytes), name standing for the file in diagnostics; relative paths
 * are resolved against base_dir, or kept as written when it is NULL. */
serve_config_t *serve_config_load_string(const char *name, const char *text, size_t len,
                                         const char *base_dir, vsoc_diags_t *d);

void serve_config_free(serve_config_t *c); /* NULL does nothing */

/* The table itself (n entries), for whoever prints or walks it (the fuzzer, --help). */
const vsoc_confmap_entry_t *serve_config_table(size_t *n);

/* The reference table of docs/config.md, in Markdown. */
void serve_config_print_docs(FILE *out);

/* A commented sample file with every key at its default (kafka.brokers 127.0.0.1:9092). */
void serve_config_print_sample(FILE *out);

/* The loaded values as YAML: the configuration in effect. It includes secrets (a Redis
 * password in redis.url, SASL settings in kafka.properties). */
void serve_config_print(const serve_config_t *c, FILE *out);

#endif
