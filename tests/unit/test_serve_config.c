/* test_serve_config.c: the configuration of vsoc serve: every key's default as documented,
 * every key set, located errors (unknown keys with suggestions, wrong types, checks across
 * keys), several errors reported at once, and the shipped files kept equal to the table:
 * samples/vsoc.yaml loads and is the sample printout, docs/config.md holds the reference
 * printout. */
#include "serve_config.h"
#include "test.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static vsoc_diags_t *d;
static serve_config_t *cfg;

static serve_config_t *load(const char *text, const char *base)
{
    serve_config_free(cfg);
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    ASSERT(d);
    cfg = serve_config_load_string("s.yaml", text, strlen(text), base, d);
    return cfg;
}

static const char *diag(size_t i)
{
    static char buf[1200];
    const vsoc_diag_t *g = vsoc_diags_get(d, i);
    if (!g)
        return "(none)";
    snprintf(buf, sizeof buf, "%s:%d:%d: %s", g->file, g->line, g->col, g->msg);
    return buf;
}

static void clean(const char *text, const char *base)
{
    if (!load(text, base))
        vsoc_diags_print(d, stderr);
    ASSERT(cfg);
    ASSERT_EQ(vsoc_diags_count(d), 0);
}

static void one_error(const char *text, const char *want)
{
    load(text, "/etc/vsoc");
    if (vsoc_diags_count(d) != 1)
        vsoc_diags_print(d, stderr);
    ASSERT(cfg == NULL);
    ASSERT_EQ(vsoc_diags_count(d), 1);
    ASSERT_STREQ(diag(0), want);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        TEST_FAIL_("cannot open %s", path);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    ASSERT(m);
    int ch;
    while ((ch = fgetc(f)) != EOF)
        fputc(ch, m);
    fclose(f);
    fclose(m);
    return buf;
}

static char *printed(void (*fn)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERT(f);
    fn(f);
    fclose(f);
    return buf;
}

static const char *srcdir(void)
{
    const char *s = getenv("VSOC_SOURCE_DIR");
    if (!s)
        TEST_FAIL_("VSOC_SOURCE_DIR is not set (run through ctest)");
    return s;
}

static void test_defaults(void)
{
    clean("kafka:\n  brokers: k1:9092,k2:9092\n", "/etc/vsoc");
    ASSERT_STREQ(cfg->file, "s.yaml");
    ASSERT_STREQ(cfg->instance, "");
    ASSERT_EQ(cfg->workers, 0);
    ASSERT_EQ(cfg->log.level, SERVE_LOG_INFO);
    ASSERT_STREQ(cfg->kafka.brokers, "k1:9092,k2:9092");
    ASSERT_STREQ(cfg->kafka.group, "vsoc");
    ASSERT_EQ(cfg->kafka.topics.events.n, 1);
    ASSERT_STREQ(cfg->kafka.topics.events.v[0], "vsoc.events");
    ASSERT_STREQ(cfg->kafka.topics.alerts, "vsoc.alerts");
    ASSERT_STREQ(cfg->kafka.topics.commands, "");
    ASSERT_STREQ(cfg->kafka.topics.acks, "vsoc.acks");
    ASSERT_EQ(cfg->kafka.properties.n, 0);
    ASSERT_EQ(cfg->kafka.commit_interval_us, 200000);
    ASSERT_EQ(cfg->rules.n, 0);
    ASSERT_EQ(cfg->skip_bad_rules, 0);
    ASSERT_STREQ(cfg->baseline, "");
    ASSERT_EQ(cfg->playbooks.n, 0);
    ASSERT_EQ(cfg->response.enabled, 1);
    ASSERT_STREQ(cfg->response.key, "");
    ASSERT_STREQ(cfg->response.vehicle_keys, "");
    ASSERT_EQ(cfg->response.incident_gap_us, 15LL * 60 * 1000000);
    ASSERT_STREQ(cfg->store.sqlite, "/etc/vsoc/vsoc.db");
    ASSERT_STREQ(cfg->redis.url, "");
    ASSERT_STREQ(cfg->redis.prefix, "vsoc:");
    ASSERT_EQ(cfg->redis.timeout_us, 200000);
    ASSERT_STREQ(cfg->http.listen, "127.0.0.1:9464");
}

static void test_every_key(void)
{
    clean("instance: soc-eu-1\n"
          "workers: 8\n"
          "log: {level: debug}\n"
          "kafka:\n"
          "  brokers: k1:9093\n"
          "  group: vsoc-eu\n"
          "  topics:\n"
          "    events: [ids.events, can.frames]\n"
          "    alerts: \"\"\n"
          "    commands: vsoc.commands\n"
          "    acks: vsoc.acks.eu\n"
          "  properties:\n"
          "    security.protocol: ssl\n"
          "    ssl.ca.location: /etc/vsoc/ca.pem\n"
          "  commit_interval: 1s\n"
          "rules: [rules/, /opt/extra.yml]\n"
          "skip_bad_rules: yes\n"
          "baseline: baseline.yaml\n"
          "playbooks: playbooks\n"
          "response:\n"
          "  enabled: false\n"
          "  key: keys/soc.key\n"
          "  vehicle_keys: vehicles\n"
          "  incident_gap: 1h\n"
          "store: {sqlite: /var/lib/vsoc/soc.db}\n"
          "redis:\n"
          "  url: redis://:secret@10.0.0.5:6380/2\n"
          "  prefix: \"eu:\"\n"
          "  timeout: 50ms\n"
          "http: {listen: \"[::1]:0\"}\n",
          "/etc/vsoc");
    ASSERT_STREQ(cfg->instance, "soc-eu-1");
    ASSERT_EQ(cfg->workers, 8);
    ASSERT_EQ(cfg->log.level, SERVE_LOG_DEBUG);
    ASSERT_STREQ(cfg->kafka.group, "vsoc-eu");
    ASSERT_EQ(cfg->kafka.topics.events.n, 2);
    ASSERT_STREQ(cfg->kafka.topics.events.v[1], "can.frames");
    ASSERT_STREQ(cfg->kafka.topics.alerts, "");
    ASSERT_STREQ(cfg->kafka.topics.commands, "vsoc.commands");
    ASSERT_STREQ(cfg->kafka.topics.acks, "vsoc.acks.eu");
    ASSERT_EQ(cfg->kafka.properties.n, 2);
    ASSERT_STREQ(cfg->kafka.properties.v[1].key, "ssl.ca.location");
    ASSERT_STREQ(cfg->kafka.properties.v[1].value, "/etc/vsoc/ca.pem");
    ASSERT_EQ(cfg->kafka.commit_interval_us, 1000000);
    ASSERT_EQ(cfg->rules.n, 2);
    ASSERT_STREQ(cfg->rules.v[0], "/etc/vsoc/rules/");
    ASSERT_STREQ(cfg->rules.v[1], "/opt/extra.yml");
    ASSERT_EQ(cfg->skip_bad_rules, 1);
    ASSERT_STREQ(cfg->baseline, "/etc/vsoc/baseline.yaml");
    ASSERT_EQ(cfg->playbooks.n, 1);
    ASSERT_STREQ(cfg->playbooks.v[0], "/etc/vsoc/playbooks");
    ASSERT_EQ(cfg->response.enabled, 0);
    ASSERT_STREQ(cfg->response.key, "/etc/vsoc/keys/soc.key");
    ASSERT_STREQ(cfg->response.vehicle_keys, "/etc/vsoc/vehicles");
    ASSERT_EQ(cfg->response.incident_gap_us, 3600LL * 1000000);
    ASSERT_STREQ(cfg->store.sqlite, "/var/lib/vsoc/soc.db");
    ASSERT_STREQ(cfg->redis.url, "redis://:secret@10.0.0.5:6380/2");
    ASSERT_STREQ(cfg->redis.prefix, "eu:");
    ASSERT_EQ(cfg->redis.timeout_us, 50000);
    ASSERT_STREQ(cfg->http.listen, "[::1]:0");

    /* The configuration in effect prints and reads back the same. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERT(f);
    serve_config_print(cfg, f);
    fclose(f);
    ASSERT(strstr(buf, "\nredis:\n  url: redis://:secret@10.0.0.5:6380/2\n"
                       "  prefix: \"eu:\"\n"));
    serve_config_t *first = cfg;
    cfg = NULL;
    clean(buf, NULL);
    char *buf2 = NULL;
    f = open_memstream(&buf2, &len);
    ASSERT(f);
    serve_config_print(cfg, f);
    fclose(f);
    ASSERT_STREQ(buf2, buf);
    ASSERT_STREQ(cfg->response.key, first->response.key);
    serve_config_free(first);
    free(buf);
    free(buf2);
}

static void test_key_errors(void)
{
    /* A typo gets its suggestion, and the key it missed is reported where it belongs. */
    load("kafka:\n  brokrs: k:9092\n", NULL);
    ASSERT(!cfg);
    ASSERT_EQ(vsoc_diags_count(d), 2);
    ASSERT_STREQ(diag(0),
                 "s.yaml:2:3: unknown key 'kafka.brokrs' (did you mean 'kafka.brokers'?)");
    ASSERT_STREQ(diag(1), "s.yaml:1:1: missing required key 'kafka.brokers'");
    one_error("kafka: {brokers: k:1}\nworkrs: 4\n",
              "s.yaml:2:1: unknown key 'workrs' (did you mean 'workers'?)");
    one_error("kafka: {brokers: k:1}\nlevel: info\n",
              "s.yaml:2:1: unknown key 'level' (did you mean 'log.level'?)");
    one_error("kafka:\n  brokers: k:1\n  topics:\n    event: [a]\n",
              "s.yaml:4:5: unknown key 'kafka.topics.event' (did you mean "
              "'kafka.topics.events'?)");
    one_error("kafka: {brokers: k:1}\nworkers: 65\n",
              "s.yaml:2:10: workers: 65 is out of range 0..64");
    one_error("kafka: {brokers: k:1}\nlog: {level: warning}\n",
              "s.yaml:2:14: log.level: expected one of debug, info, warn, error, got 'warning' "
              "(did you mean 'warn'?)");
    one_error("kafka: {brokers: k:1}\nresponse: {enabled: maybe}\n",
              "s.yaml:2:21: response.enabled: expected true or false (or yes/no, on/off), got "
              "'maybe'");
    one_error("kafka: {brokers: k:1, commit_interval: 0s}\n",
              "s.yaml:1:40: kafka.commit_interval: 0s is out of range 1ms..10m");
    one_error("kafka: {brokers: k:1, properties: [a=b]}\n",
              "s.yaml:1:35: kafka.properties: expected a mapping of names to values, got a "
              "sequence");
    one_error("kafka: {brokers: k:1}\nkafka: {group: g}\n",
              "s.yaml:2:1: duplicate key 'kafka' (first at line 1)");
    one_error("kafka: {brokers: \"\"}\n", "s.yaml:1:18: kafka.brokers: needs a value");
}

static void test_cross_checks(void)
{
    one_error("kafka:\n  brokers: k:1\n  topics:\n    commands: vsoc.commands\n"
              "response: {vehicle_keys: v}\n",
              "s.yaml:4:15: kafka.topics.commands is set but response.key is not: commands are "
              "signed (vsoc keygen makes a key)");
    one_error("kafka:\n  brokers: k:1\n  topics:\n    commands: vsoc.commands\n"
              "response: {key: soc.key}\n",
              "s.yaml:4:15: kafka.topics.commands is set but response.vehicle_keys is not: acks "
              "are verified with the vehicles' keys");
    clean("kafka:\n  brokers: k:1\n  topics:\n    commands: vsoc.commands\n"
          "response: {key: soc.key, vehicle_keys: vehicles}\n",
          "/etc/vsoc");
    one_error("kafka:\n  brokers: k:1\n  topics:\n    alerts: vsoc.events\n",
              "s.yaml:4:13: kafka.topics.alerts and kafka.topics.events are both "
              "'vsoc.events': vsoc would read what it writes");
    one_error("kafka:\n  brokers: k:1\n  topics:\n    alerts: x\n    events: [a, x]\n",
              "s.yaml:5:13: kafka.topics.alerts and kafka.topics.events are both 'x': vsoc "
              "would read what it writes");
    one_error("kafka:\n  brokers: k:1\n  topics:\n    alerts: vsoc.acks\n",
              "s.yaml:4:13: kafka.topics.alerts and kafka.topics.acks are both 'vsoc.acks': "
              "vsoc would read what it writes");
    one_error("kafka:\n  brokers: k:1\n  topics: {events: []}\n",
              "s.yaml:3:20: kafka.topics.events: needs at least one topic");
    one_error("kafka:\n  brokers: k:1\n  topics: {events: [ok, \"bad topic\"]}\n",
              "s.yaml:3:20: kafka.topics.events: 'bad topic' is not a Kafka topic name (1 to "
              "249 letters, digits, '.', '_', '-')");
    one_error("kafka:\n  brokers: k:1\n  topics: {acks: \"\"}\n",
              "s.yaml:3:18: kafka.topics.acks: '' is not a Kafka topic name (1 to 249 letters, "
              "digits, '.', '_', '-')");
    one_error("kafka:\n  brokers: k:1,,k2:1\n",
              "s.yaml:2:12: kafka.brokers: 'k:1,,k2:1' is not host:port,... (an empty or "
              "spaced entry)");
    one_error("kafka:\n  brokers: k:1\n  properties:\n    client.id: x\n    group.id: g\n",
              "s.yaml:5:5: kafka.properties: group.id is set with kafka.group");
    one_error("kafka: {brokers: k:1}\nstore: {sqlite: \"\"}\n",
              "s.yaml:2:17: store.sqlite: needs a value (the service keeps its state there)");
    one_error("kafka: {brokers: k:1}\nhttp: {listen: localhost}\n",
              "s.yaml:2:16: http.listen: 'localhost': no :PORT");
    one_error("kafka: {brokers: k:1}\nhttp: {listen: \"::1:80\"}\n",
              "s.yaml:2:16: http.listen: '::1:80': an IPv6 address is written [ADDRESS]:PORT");
    one_error("kafka: {brokers: k:1}\nhttp: {listen: \"1.2.3.4:99999\"}\n",
              "s.yaml:2:16: http.listen: '1.2.3.4:99999': the port must be a number from 0 to "
              "65535");
    one_error("kafka: {brokers: k:1}\nhttp: {listen: \"metrics.example.net:9464\"}\n",
              "s.yaml:2:16: http.listen: 'metrics.example.net:9464': the host must be an IPv4 "
              "address, [IPv6 address] or localhost");
    clean("kafka: {brokers: k:1}\nhttp: {listen: \"\"}\nredis: {url: \"redis://r\"}\n", NULL);
    clean("kafka: {brokers: k:1}\nhttp: {listen: \"[::]:0\"}\n", NULL);
    clean("kafka: {brokers: k:1}\nhttp: {listen: \"localhost:9464\"}\n", NULL);
    clean("kafka: {brokers: k:1}\nredis: {url: \"redis://u:p@[::1]:6379/0\"}\n", NULL);
    clean("kafka: {brokers: k:1}\nredis: {url: \"unix:///run/redis.sock?db=2\"}\n", NULL);
    /* The Redis client's own reading of its URL, located in the file. */
    one_error("kafka: {brokers: k:1}\nredis: {url: \"http://r:6379\"}\n",
              "s.yaml:2:14: redis.url: expected redis://[[user]:password@]host[:port][/db] or "
              "unix:///path/to.sock (column 1 of the URL)");
    one_error("kafka: {brokers: k:1}\nredis: {url: \"redis://r:0\"}\n",
              "s.yaml:2:14: redis.url: port '0' is not a number 1..65535 (column 11 of the "
              "URL)");
    /* A password never shows in a message. */
    one_error("kafka: {brokers: k:1}\nredis: {url: \"redis://:hunter2@r:x\"}\n",
              "s.yaml:2:14: redis.url: port 'x' is not a number 1..65535 (column 20 of the "
              "URL)");
    ASSERT(!strstr(diag(0), "hunter2"));
}

static void test_many_errors(void)
{
    const char *text = "workers: -1\n"
                       "kafka:\n"
                       "  brokers: k:1\n"
                       "  topic: {events: [a]}\n"
                       "  topics: {commands: cmds}\n"
                       "http:\n"
                       "  listen: nowhere\n"
                       "redis:\n"
                       "  url: redis://\n"
                       "  url: redis://r\n";
    load(text, NULL);
    ASSERT(!cfg);
    vsoc_diags_sort(d);
    if (vsoc_diags_count(d) != 7)
        vsoc_diags_print(d, stderr);
    ASSERT_EQ(vsoc_diags_count(d), 7);
    ASSERT_STREQ(diag(0), "s.yaml:1:10: workers: -1 is out of range 0..64");
    ASSERT_STREQ(diag(1),
                 "s.yaml:4:3: unknown key 'kafka.topic' (did you mean 'kafka.topics'?)");
    ASSERT_STREQ(diag(2), "s.yaml:5:22: kafka.topics.commands is set but response.key is not: "
                          "commands are signed (vsoc keygen makes a key)");
    ASSERT_STREQ(diag(3), "s.yaml:5:22: kafka.topics.commands is set but response.vehicle_keys "
                          "is not: acks are verified with the vehicles' keys");
    ASSERT_STREQ(diag(4), "s.yaml:7:11: http.listen: 'nowhere': no :PORT");
    ASSERT_STREQ(diag(5), "s.yaml:9:8: redis.url: missing host (column 9 of the URL)");
    ASSERT_STREQ(diag(6), "s.yaml:10:3: duplicate key 'redis.url' (first at line 9)");
}

static void test_files(void)
{
    serve_config_free(cfg);
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    cfg = serve_config_load("/nonexistent/vsoc.yaml", d);
    ASSERT(!cfg);
    ASSERT_EQ(vsoc_diags_count(d), 1);
    ASSERT_STREQ(diag(0), "/nonexistent/vsoc.yaml:0:0: cannot open: No such file or directory");

    /* The shipped sample: a local test broker, every section, no errors; its relative
     * paths resolve against its own folder. */
    char path[PATH_MAX], want[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/samples/vsoc.yaml", srcdir());
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    cfg = serve_config_load(path, d);
    if (!cfg)
        vsoc_diags_print(d, stderr);
    ASSERT(cfg);
    ASSERT_EQ(vsoc_diags_count(d), 0);
    ASSERT_STREQ(cfg->kafka.brokers, "127.0.0.1:9092");
    snprintf(path, sizeof path, "%s/samples", srcdir());
    char *real = realpath(path, NULL);
    ASSERT(real);
    snprintf(want, sizeof want, "%s/vsoc.db", real);
    ASSERT_STREQ(cfg->store.sqlite, want);
    free(real);

    /* ... and it is exactly the sample the table prints. */
    snprintf(path, sizeof path, "%s/samples/vsoc.yaml", srcdir());
    char *file = slurp(path), *sample = printed(serve_config_print_sample);
    if (strcmp(file, sample) != 0) {
        FILE *f = fopen("vsoc.yaml.expected", "w");
        if (f) {
            fputs(sample, f);
            fclose(f);
        }
        TEST_FAIL_("samples/vsoc.yaml differs from serve_config_print_sample; the printout "
                   "is in vsoc.yaml.expected in the test's working directory");
    }
    clean(sample, NULL);
    free(file);
    free(sample);
}

static void test_docs(void)
{
    /* Every key of the service, as the docs promise them. */
    static const char *const keys[] = {
        "instance",          "workers",           "log.level",
        "kafka.brokers",     "kafka.group",       "kafka.topics.events",
        "kafka.topics.alerts", "kafka.topics.commands", "kafka.topics.acks",
        "kafka.properties",  "kafka.commit_interval", "rules",
        "skip_bad_rules",    "baseline",          "playbooks",
        "response.enabled",  "response.key",      "response.vehicle_keys",
        "response.incident_gap",
        "store.sqlite",      "redis.url",         "redis.prefix",
        "redis.timeout",     "redis.handoff_timeout", "http.listen",
    };
    size_t nkeys = sizeof keys / sizeof keys[0], n;
    serve_config_table(&n);
    ASSERT_EQ(n, nkeys);
    char *table = printed(serve_config_print_docs);
    size_t rows = 0;
    for (const char *p = table; (p = strstr(p, "\n| `")); p++)
        rows++;
    ASSERT_EQ(rows, nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        char row[128];
        snprintf(row, sizeof row, "\n| `%s` | ", keys[i]);
        if (!strstr(table, row))
            TEST_FAIL_("docs printout lacks %s", keys[i]);
    }
    ASSERT(strstr(table, "| `kafka.brokers` | string | required | "));
    ASSERT(strstr(table, "| `kafka.topics.events` | list of strings | `[vsoc.events]` | "));
    ASSERT(strstr(table, "| `workers` | integer 0..64 | `0` | "));
    ASSERT(strstr(table, "| `log.level` | one of debug, info, warn, error | `info` | "));
    ASSERT(strstr(table, "| `redis.prefix` | string | `vsoc:` | "));
    ASSERT(strstr(table, "| `response.incident_gap` | duration 1s..30d | `15m` | "));

    /* docs/config.md shows the table exactly as printed. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/docs/config.md", srcdir());
    char *md = slurp(path);
    if (!strstr(md, table)) {
        FILE *f = fopen("config-table.md", "w");
        if (f) {
            fputs(table, f);
            fclose(f);
        }
        TEST_FAIL_("docs/config.md does not hold serve_config_print_docs's table; the "
                   "printout is in config-table.md in the test's working directory");
    }
    free(md);
    free(table);
}

int main(void)
{
    serve_config_free(NULL);
    test_defaults();
    test_every_key();
    test_key_errors();
    test_cross_checks();
    test_many_errors();
    test_files();
    test_docs();
    serve_config_free(cfg);
    vsoc_diags_free(d);
    printf("test_serve_config: ok\n");
    return 0;
}
