/* cmd_serve.c: vsoc serve, the SOC service (docs/serve.md): vehicle events from Kafka
 * through the same engine as vsoc replay, alerts to a Kafka topic as OCSF JSON, alerts and
 * incidents into the store, playbook runs, /metrics, reload.
 *
 * Threads: the main thread consumes, dispatches each message to the worker owning its
 * vehicle, and is the only one to touch the store, the producer, Redis and the responder;
 * the workers run the engine (serve_worker.c); libmicrohttpd's thread answers HTTP and reads
 * counters. At-least-once: the main thread sends a MARK down every worker's ring each
 * commit interval; when every worker has passed it back, everything those workers produced
 * before it is in the main thread's hands; once the store has committed it and the broker
 * has acknowledged every alert published before it, the offsets dispatched before the MARK
 * are committed. A crash between the two redelivers those messages; alert and incident ids
 * are derived from content, so the store adds nothing twice and a consumer of the alerts
 * topic deduplicates by id. */
#include "cli.h"
#include "cli_store.h"
#include "fleet.h"
#include "http/http.h"
#include "http/prom.h"
#include "kafka/kafka.h"
#include "redis/redis.h"
#include "response.h"
#include "store/store.h"
#include "serve.h"
#include "serve_config.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_TOPICS 32
#define MAX_PENDING 64   /* epochs between a MARK and its offset commit */
#define MAX_WORKERS 64
/* How long a partition's handoff waits in Redis for its next owner. */
#define HANDOFF_TTL_MS (3600 * 1000)
/* librdkafka retries a delivery on its own until message.timeout.ms (5 min by default):
 * a failed report means that, or an error no retry cures (a message over the broker's
 * limit, no authorisation). An alert that fails this often stops the service, whose
 * offsets then stay before it: at-least-once is kept, and the operator is told why. */
#define MAX_DELIVERY_FAILURES 5

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* A partition this instance reads, and how far it has been handed to workers. */
typedef struct part {
    int topic;
    int32_t partition;
    int64_t next;      /* offset after the last message dispatched; -1: none yet */
    int64_t committed; /* last committed; -1: none */
    int64_t start_at;  /* where reading started when it was assigned; -1: not known */
    int given_up;      /* in an epoch: the partition went before the epoch could commit, so
                          its offset goes to the store's checkpoint (with the state as of it)
                          but never to the group, which its next owner may have passed */
} part_t;

typedef struct epoch {
    uint64_t id;
    int marked;           /* its MARK was sent; the newest epoch is open until then */
    unsigned marks;       /* workers that passed the MARK back */
    int stored;           /* the store committed everything before it */
    uint64_t outstanding; /* alerts published before it, not yet acknowledged */
    int64_t max_ts_us;
    size_t nparts;
    part_t *parts;        /* the partition table when the MARK was sent */
    int snap_failed;      /* a worker could not snapshot: no checkpoint for this epoch */
    size_t nsnaps;
    serve_snap_t **snaps; /* one per worker, as their MARKs came back */
} epoch_t;

/* A checkpoint offset read from the store at start (docs/serve.md, crash recovery). */
typedef struct stored_offset {
    char *topic;
    int32_t partition;
    int64_t next;
} stored_offset_t;

/* An alert handed to the producer: kept until the broker acknowledges it, re-sent if not. */
typedef struct pub {
    uint64_t epoch;
    unsigned failures;    /* delivery reports that said it failed */
    int64_t produced_ms;
    size_t vinlen;
    char vin[SERVE_KEY_MAX + 1];
    char *json;
} pub_t;

/* Alerts per rule for /metrics (the main thread writes under mu; HTTP reads under mu). */
typedef struct rule_count {
    char *id;
    const char *level;
    uint64_t alerts;
} rule_count_t;

typedef struct serve {
    serve_config_t *cfg;
    const char *config_path;
    char instance[256];
    int level;
    int nworkers;
    serve_worker_t *w;
    serve_set_t *set;
    uint64_t generation;
    vsoc_kafka_consumer_t *cons;
    vsoc_kafka_producer_t *prod;
    vsoc_kafka_consumer_t *acks; /* kafka.topics.acks; NULL: commands are not delivered */
    uint64_t last_deliver_ns;    /* approvals and wall-clock timers, once a second */
    cli_response_t *resp;
    vsoc_fleet_t *fleet;      /* in process: no Redis, or while Redis is away */
    vsoc_redis_t *redis;      /* NULL: no redis.url */
    serve_out_t *hits;        /* fleet hits of one drain pass, counted together */
    size_t nhits, caphits;
    uint64_t last_ping_ns;
    vsoc_http_t *http;
    char *topics[MAX_TOPICS];
    size_t ntopics;
    part_t *parts;
    size_t nparts, capparts;
    size_t last_part;      /* index of the last message's partition (a hint, checked) */
    uint64_t next_epoch;   /* id of the next MARK */
    uint64_t *wepoch;      /* per worker: the epoch its next outputs belong to */
    epoch_t pending[MAX_PENDING];
    size_t pending_head, npending;
    uint64_t dispatched_since_mark;
    uint64_t last_mark_ns;
    pub_t **retry;         /* alerts whose delivery failed or that the queue refused */
    uint64_t last_republish_ns;
    size_t nretry, capretry;
    int failed;            /* a store or response failure: stop */
    stored_offset_t *so;   /* the store's checkpoint offsets */
    size_t nso, capso;
    uint64_t restored;
    serve_snap_t **hand;   /* a handoff's snapshots, as the workers send them */
    size_t nhand, caphand;
    int hand_wait;         /* workers yet to answer a handoff */
    int hand_failed;       /* a worker could not snapshot its part of it */
    /* HTTP-visible state, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rule_count_t *rc;
    size_t nrc, caprc;
    uint64_t published, publish_retries, fleet_alerts, bad_total;
    uint64_t offset_commits, offset_commit_errors;
    uint64_t reloads_ok, reloads_failed;
    int redis_up;
    uint64_t redis_fallbacks;
    vsoc_redis_stats_t redis_stats;
    int64_t lag;
    size_t assigned;
    cli_response_counts_t counts;
    vsoc_hist_t *latency;    /* message timestamp to alert acknowledged by the broker */
    vsoc_hist_t *store_commit;
    int ready;
    _Atomic int reload_req;
    uint64_t reload_seq, reload_done;
    int reload_rc;
    int stopping;          /* the main loop ended: reloads are answered at once */
    char reload_msg[1024];
} serve_t;

static volatile sig_atomic_t got_term, got_hup;
static void on_signal(int sig)
{
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
}

/* ---- logging: JSON lines on stderr -------------------------------------------------------- */

static void slog(serve_t *s, int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void slog(serve_t *s, int level, const char *event, const char *fmt, ...)
{
    if (level < s->level)
        return;
    char msg[1536], t[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_fmt_time(cli_wall_us(), t, sizeof t);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "ts", t, "level", level_names[level], "event",
                          event, "msg", msg);
    char *line = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (line) {
        fprintf(stderr, "%s\n", line);
        free(line);
    } else {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory while logging\"}\n");
    }
    json_decref(j);
}

/* librdkafka's messages, on its threads: slog only formats and writes one line. */
static void kafka_log(void *ctx, int level, const char *fac, const char *msg)
{
    serve_t *s = ctx;
    int l = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
    /* kafka.properties go to every client; that a consumer setting means nothing to the
     * producer (and the reverse) is expected, not a warning. */
    if (strstr(msg, "property and will be ignored by this"))
        l = LOG_DEBUG;
    slog(s, l, "kafka.client", "%s: %s", fac, msg);
}

static void response_log(void *ctx, const char *event, const char *text)
{
    serve_t *s = ctx;
    slog(s, strcmp(event, "error") ? LOG_INFO : LOG_ERROR, event, "%s", text);
}

/* ---- the loaded set ----------------------------------------------------------------------- */

/* Loads rules, baseline and playbooks as the config names them. Returns the set, or NULL
 * with what went wrong in why (every diagnostic is also logged). */
static serve_set_t *load_set(serve_t *s, char *why, size_t n)
{
    serve_config_t *c = s->cfg;
    serve_set_t *set = calloc(1, sizeof *set);
    vsoc_diags_t *d = vsoc_diags_new();
    if (!set || !d) {
        snprintf(why, n, "out of memory");
        goto fail;
    }
    atomic_init(&set->refs, 1);
    const char *def = cli_default_rules();
    vsoc_rule_load_opts_t ro = cli_rule_load_opts;
    set->rules = vsoc_ruleset_load(c->rules.n ? (const char *const *)c->rules.v : &def,
                                   c->rules.n ? c->rules.n : 1, &ro, d);
    vsoc_diags_sort(d);
    size_t errors = vsoc_diags_errors(d);
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        if (g->severity == VSOC_DIAG_ERROR)
            slog(s, c->skip_bad_rules ? LOG_WARN : LOG_ERROR, "rules.error", "%s:%d:%d: %s",
                 g->file, g->line, g->col, g->msg);
    }
    if (!set->rules || (errors && !c->skip_bad_rules)) {
        const vsoc_diag_t *g = vsoc_diags_count(d) ? vsoc_diags_get(d, 0) : NULL;
        if (g)
            snprintf(why, n, "%zu error%s in rules, first %s:%d:%d: %s", errors,
                     errors == 1 ? "" : "s", g->file, g->line, g->col, g->msg);
        else
            snprintf(why, n, "rules could not be loaded");
        goto fail;
    }
    if (errors)
        slog(s, LOG_WARN, "rules.skipped", "skip_bad_rules: %zu rule error%s skipped", errors,
             errors == 1 ? "" : "s");
    vsoc_diags_free(d);
    d = NULL;
    if (c->baseline && c->baseline[0]) {
        char err[512];
        set->baseline = vsoc_baseline_load(c->baseline, err, sizeof err);
        if (!set->baseline) {
            snprintf(why, n, "%s", err);
            goto fail;
        }
        if (!(set->scorer = vsoc_scorer_new(set->baseline))) {
            snprintf(why, n, "out of memory");
            goto fail;
        }
    }
    if (!(d = vsoc_diags_new())) {
        snprintf(why, n, "out of memory");
        goto fail;
    }
    const char *defp = cli_default_playbooks();
    if (c->response.enabled)
        set->playbooks = vsoc_playbooks_load(
            c->playbooks.n ? (const char *const *)c->playbooks.v : &defp,
            c->playbooks.n ? c->playbooks.n : 1, d);
    else
        set->playbooks = vsoc_playbooks_load_string("none", "", 0, d);
    vsoc_diags_sort(d);
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        if (g->severity == VSOC_DIAG_ERROR)
            slog(s, LOG_ERROR, "playbooks.error", "%s:%d:%d: %s", g->file, g->line, g->col,
                 g->msg);
    }
    if (!set->playbooks || vsoc_diags_errors(d)) {
        const vsoc_diag_t *g = vsoc_diags_count(d) ? vsoc_diags_get(d, 0) : NULL;
        if (g)
            snprintf(why, n, "%zu error%s in playbooks, first %s:%d:%d: %s",
                     vsoc_diags_errors(d), vsoc_diags_errors(d) == 1 ? "" : "s", g->file,
                     g->line, g->col, g->msg);
        else
            snprintf(why, n, "playbooks could not be loaded");
        goto fail;
    }
    vsoc_diags_free(d);
    set->generation = ++s->generation;
    return set;
fail:
    vsoc_diags_free(d);
    serve_set_unref(set);
    return NULL;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

static uint64_t ld(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void metrics(void *ctx, vsoc_prom_t *p)
{
    serve_t *s = ctx;
    static const char *const kinds[] = {"can", "ids"};
    vsoc_prom_family(p, "vsoc_events_total", "counter", "Events processed, by type.");
    for (int k = 0; k < 2; k++) {
        uint64_t v = 0;
        for (int i = 0; i < s->nworkers; i++)
            v += ld(k == 0 ? &s->w[i].st.events_can : &s->w[i].st.events_ids);
        vsoc_prom_label_t l[] = {{"type", kinds[k]}};
        vsoc_prom_sample(p, "vsoc_events_total", l, 1, (double)v);
    }
    uint64_t bad = 0, nomem = 0, hits = 0;
    for (int i = 0; i < s->nworkers; i++) {
        bad += ld(&s->w[i].st.malformed);
        nomem += ld(&s->w[i].st.no_memory);
        hits += ld(&s->w[i].st.hits);
    }
    vsoc_prom_family(p, "vsoc_events_malformed_total", "counter",
                     "Messages that were not an event in any known format (skipped).");
    vsoc_prom_sample(p, "vsoc_events_malformed_total", NULL, 0, (double)bad);
    vsoc_prom_family(p, "vsoc_engine_no_memory_total", "counter",
                     "Events that could not open a correlation group (out of memory).");
    vsoc_prom_sample(p, "vsoc_engine_no_memory_total", NULL, 0, (double)nomem);
    vsoc_prom_family(p, "vsoc_fleet_hits_total", "counter", "fleet_count rule hits counted.");
    vsoc_prom_sample(p, "vsoc_fleet_hits_total", NULL, 0, (double)hits);
    vsoc_prom_family(p, "vsoc_worker_busy_seconds_total", "counter",
                     "Time each worker spent on events.");
    for (int i = 0; i < s->nworkers; i++) {
        char wi[16];
        snprintf(wi, sizeof wi, "%d", i);
        vsoc_prom_label_t l[] = {{"worker", wi}};
        vsoc_prom_sample(p, "vsoc_worker_busy_seconds_total", l, 1,
                         (double)ld(&s->w[i].st.busy_ns) / 1e9);
    }
    /* Per-rule evaluations and time, from each worker's last snapshot (a family's samples
     * follow its HELP and TYPE lines, so one pass per family). */
    static const char *const fam[] = {"vsoc_rule_evaluations_total", "vsoc_rule_matches_total",
                                      "vsoc_rule_seconds_total"};
    static const char *const help[] = {"Events that visited a rule (since its set was loaded).",
                                       "Events that satisfied a rule's condition.",
                                       "Estimated time spent in a rule (sampled)."};
    for (int f = 0; f < 3; f++) {
        vsoc_prom_family(p, fam[f], "counter", help[f]);
        for (int i = 0; i < s->nworkers; i++) {
            serve_worker_t *w = &s->w[i];
            char wi[16];
            snprintf(wi, sizeof wi, "%d", i);
            pthread_mutex_lock(&w->stats_mu);
            for (size_t r = 0; w->stats_set && r < w->nrule_stats; r++) {
                vsoc_prom_label_t l[] = {
                    {"rule", vsoc_rule_id(vsoc_ruleset_rule(w->stats_set->rules, r))},
                    {"worker", wi}};
                const vsoc_rule_stats_t *st = &w->rule_stats[r];
                vsoc_prom_sample(p, fam[f], l, 2,
                                 f == 0 ? (double)st->evals
                                 : f == 1 ? (double)st->matches
                                          : (double)st->ns / 1e9);
            }
            pthread_mutex_unlock(&w->stats_mu);
        }
    }
    pthread_mutex_lock(&s->mu);
    vsoc_prom_family(p, "vsoc_alerts_total", "counter", "Alerts raised, by rule and level.");
    for (size_t i = 0; i < s->nrc; i++) {
        vsoc_prom_label_t l[] = {{"rule", s->rc[i].id}, {"level", s->rc[i].level}};
        vsoc_prom_sample(p, "vsoc_alerts_total", l, 2, (double)s->rc[i].alerts);
    }
    vsoc_prom_family(p, "vsoc_alerts_published_total", "counter",
                     "Alerts acknowledged by the broker on the alerts topic.");
    vsoc_prom_sample(p, "vsoc_alerts_published_total", NULL, 0, (double)s->published);
    vsoc_prom_family(p, "vsoc_alerts_publish_retries_total", "counter",
                     "Alert deliveries that failed and were sent again.");
    vsoc_prom_sample(p, "vsoc_alerts_publish_retries_total", NULL, 0,
                     (double)s->publish_retries);
    vsoc_prom_family(p, "vsoc_consumer_lag", "gauge",
                     "Messages on the assigned partitions not yet read (-1: unknown).");
    vsoc_prom_sample(p, "vsoc_consumer_lag", NULL, 0, (double)s->lag);
    vsoc_prom_family(p, "vsoc_partitions_assigned", "gauge", "Partitions this instance reads.");
    vsoc_prom_sample(p, "vsoc_partitions_assigned", NULL, 0, (double)s->assigned);
    vsoc_prom_family(p, "vsoc_offset_commits_total", "counter", "Offset commits, by result.");
    vsoc_prom_label_t ok[] = {{"result", "ok"}}, ko[] = {{"result", "error"}};
    vsoc_prom_sample(p, "vsoc_offset_commits_total", ok, 1, (double)s->offset_commits);
    vsoc_prom_sample(p, "vsoc_offset_commits_total", ko, 1, (double)s->offset_commit_errors);
    vsoc_prom_family(p, "vsoc_store_commit_seconds", "histogram",
                     "Time of a store commit (one per commit interval).");
    vsoc_prom_hist(p, "vsoc_store_commit_seconds", NULL, 0, s->store_commit);
    vsoc_prom_family(p, "vsoc_event_to_alert_seconds", "histogram",
                     "From an event's Kafka timestamp to its alert acknowledged on the alerts "
                     "topic.");
    vsoc_prom_hist(p, "vsoc_event_to_alert_seconds", NULL, 0, s->latency);
    vsoc_prom_family(p, "vsoc_incidents_opened_total", "counter", "Incidents opened.");
    vsoc_prom_sample(p, "vsoc_incidents_opened_total", NULL, 0, (double)s->counts.incidents);
    vsoc_prom_family(p, "vsoc_playbook_runs_total", "counter", "Playbook runs started.");
    vsoc_prom_sample(p, "vsoc_playbook_runs_total", NULL, 0, (double)s->counts.runs);
    vsoc_prom_family(p, "vsoc_commands_total", "counter", "Command transitions, by status.");
    struct { const char *st; uint64_t v; } cs[] = {
        {"sent", s->counts.sent},         {"acked", s->counts.acked},
        {"deferred", s->counts.deferred}, {"rejected", s->counts.rejected},
        {"pending_approval", s->counts.pending}, {"escalated", s->counts.escalated}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        vsoc_prom_label_t l[] = {{"status", cs[i].st}};
        vsoc_prom_sample(p, "vsoc_commands_total", l, 1, (double)cs[i].v);
    }
    if (s->redis) {
        vsoc_prom_family(p, "vsoc_redis_up", "gauge",
                         "1 while Redis answers; 0: fleet state is kept in process.");
        vsoc_prom_sample(p, "vsoc_redis_up", NULL, 0, s->redis_up);
        vsoc_prom_family(p, "vsoc_redis_fallbacks_total", "counter",
                         "Fleet hits and playbook limits judged locally because Redis was "
                         "away.");
        vsoc_prom_sample(p, "vsoc_redis_fallbacks_total", NULL, 0, (double)s->redis_fallbacks);
        vsoc_prom_family(p, "vsoc_redis_errors_total", "counter", "Redis operations that "
                                                                   "failed.");
        vsoc_prom_sample(p, "vsoc_redis_errors_total", NULL, 0,
                         (double)s->redis_stats.errors);
        vsoc_prom_family(p, "vsoc_redis_reconnects_total", "counter",
                         "Connections to Redis made again after it went away.");
        vsoc_prom_sample(p, "vsoc_redis_reconnects_total", NULL, 0,
                         (double)s->redis_stats.reconnects);
    }
    vsoc_prom_family(p, "vsoc_fleet_alerts_total", "counter", "Fleet alerts raised.");
    vsoc_prom_sample(p, "vsoc_fleet_alerts_total", NULL, 0, (double)s->fleet_alerts);
    vsoc_prom_family(p, "vsoc_reloads_total", "counter", "Reloads of rules, baseline and "
                                                          "playbooks, by result.");
    vsoc_prom_sample(p, "vsoc_reloads_total", ok, 1, (double)s->reloads_ok);
    vsoc_prom_sample(p, "vsoc_reloads_total", ko, 1, (double)s->reloads_failed);
    vsoc_prom_family(p, "vsoc_ruleset_generation", "gauge",
                     "Generation of the loaded rule set (1 at start, +1 per good reload).");
    vsoc_prom_sample(p, "vsoc_ruleset_generation", NULL, 0, (double)s->set->generation);
    vsoc_prom_family(p, "vsoc_rules_loaded", "gauge", "Rules in the loaded set.");
    vsoc_prom_sample(p, "vsoc_rules_loaded", NULL, 0,
                     (double)vsoc_ruleset_count(s->set->rules));
    pthread_mutex_unlock(&s->mu);
}

static int ready(void *ctx, char *why, size_t n)
{
    serve_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    int r = s->ready;
    pthread_mutex_unlock(&s->mu);
    if (!r)
        snprintf(why, n, got_term ? "shutting down" : "not yet in the consumer group");
    return r;
}

/* On the HTTP thread: asks the main thread to reload and waits for its answer. */
static int http_reload(void *ctx, char *msg, size_t n)
{
    serve_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    uint64_t mine = ++s->reload_seq;
    atomic_store(&s->reload_req, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    while (s->reload_done < mine && !s->stopping)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
            break;
    int rc = s->reload_done >= mine ? s->reload_rc : -1;
    snprintf(msg, n, "%s", s->reload_done >= mine ? s->reload_msg
                           : s->stopping          ? "shutting down: no reload"
                                                  : "reload timed out");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static int topic_index(serve_t *s, const char *t)
{
    for (size_t i = 0; i < s->ntopics; i++)
        if (!strcmp(s->topics[i], t))
            return (int)i;
    if (s->ntopics == MAX_TOPICS || !(s->topics[s->ntopics] = strdup(t)))
        return -1;
    return (int)s->ntopics++;
}

/* The partition's entry, or NULL when this instance does not read it. */
static part_t *part_find(serve_t *s, int topic, int32_t partition)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].topic == topic && s->parts[i].partition == partition)
            return &s->parts[i];
    return NULL;
}

/* The partition's entry, added when missing. NULL when out of memory. */
static part_t *part_of(serve_t *s, int topic, int32_t partition)
{
    part_t *found = part_find(s, topic, partition);
    if (found)
        return found;
    if (vsoc_array_grow((void **)&s->parts, &s->capparts, s->nparts, sizeof *s->parts) != 0)
        return NULL;
    part_t *p = &s->parts[s->nparts++];
    *p = (part_t){topic, partition, -1, -1, -1, 0};
    return p;
}

static void drain(serve_t *s);

/* Publishes the events staged for every worker by on_message. */
static void flush_all(serve_t *s)
{
    for (int i = 0; i < s->nworkers; i++)
        cli_ring_flush(&s->w[i].in);
}

/* Hands a slot to worker i, draining outputs while its ring is full. */
static serve_in_t *claim_in(serve_t *s, int i)
{
    serve_in_t *slot;
    while (!(slot = cli_ring_claim(&s->w[i].in))) {
        flush_all(s); /* what is staged must reach the workers: this one to make room, the
                         others not to wait on it */
        drain(s);
        vsoc_kafka_producer_poll(s->prod, 0, NULL, NULL);
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    return slot;
}

/* Sends m (a marker or a request: kind and the fields it uses) down every worker's ring. */
static void to_every_worker(serve_t *s, const serve_in_t *m)
{
    for (int i = 0; i < s->nworkers; i++) {
        *claim_in(s, i) = *m;
        cli_ring_publish(&s->w[i].in);
    }
}

static uint32_t vin_hash(const void *p, size_t n)
{
    /* FNV-1a: stable across runs and machines, so a vehicle's worker is predictable. */
    const unsigned char *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static void on_message(void *ctx, const vsoc_kafka_msg_t *m)
{
    serve_t *s = ctx;
    /* Messages come in runs of one partition: the last one's entry is checked first, so
     * most messages cost neither a topic name compare nor a table scan. */
    part_t *p = s->last_part < s->nparts ? &s->parts[s->last_part] : NULL;
    int topic = p ? p->topic : -1;
    if (!p || p->partition != m->partition || strcmp(s->topics[topic], m->topic) != 0) {
        topic = topic_index(s, m->topic);
        p = topic < 0 ? NULL : part_of(s, topic, m->partition);
        if (p)
            s->last_part = (size_t)(p - s->parts);
    }
    if (!p) {
        slog(s, LOG_ERROR, "out_of_memory", "dispatching %s/%d@%lld", m->topic,
             (int)m->partition, (long long)m->offset);
        s->failed = 1;
        return;
    }
    size_t keylen = m->keylen;
    int wi = (int)(vin_hash(m->key, keylen) % (uint32_t)s->nworkers);
    serve_in_t *slot = claim_in(s, wi);
    slot->kind = SERVE_IN_EVENT;
    slot->topic = (uint8_t)topic;
    slot->partition = m->partition;
    slot->offset = m->offset;
    slot->ts_ms = m->timestamp_ms;
    slot->big = NULL;
    /* A key longer than any VIN cannot name a vehicle: the worker rejects it as unkeyed. */
    slot->keylen = (uint16_t)(keylen <= SERVE_KEY_MAX ? keylen : 0);
    memcpy(slot->key, m->key, slot->keylen);
    size_t n = m->n;
    while (n && (((const char *)m->val)[n - 1] == '\n' || ((const char *)m->val)[n - 1] == '\r'))
        n--;
    slot->n = (uint32_t)n;
    /* NUL-terminated, as a line from a file reader is. */
    if (n < SERVE_INLINE) {
        memcpy(slot->data, m->val, n);
        slot->data[n] = 0;
    } else if ((slot->big = malloc(n + 1))) {
        memcpy(slot->big, m->val, n);
        slot->big[n] = 0;
    } else {
        slot->n = 0; /* counted as malformed by the worker: an empty line parses as nothing */
    }
    cli_ring_stage(&s->w[wi].in); /* published with the rest of the batch (flush_all) */
    p->next = m->offset + 1;
    s->dispatched_since_mark++;
}

/* ---- epochs: from dispatched to committed ------------------------------------------------- */

static epoch_t *epoch_get(serve_t *s, uint64_t id)
{
    for (size_t k = 0; k < s->npending; k++) {
        epoch_t *e = &s->pending[(s->pending_head + k) % MAX_PENDING];
        if (e->id == id)
            return e;
    }
    return NULL;
}

/* Opens the next epoch (the queue's tail). Returns 0, or -1 when the queue is full. */
static int open_epoch(serve_t *s)
{
    if (s->npending == MAX_PENDING)
        return -1;
    epoch_t *e = &s->pending[(s->pending_head + s->npending) % MAX_PENDING];
    memset(e, 0, sizeof *e);
    e->id = s->next_epoch++;
    e->max_ts_us = INT64_MIN;
    /* Without room for the snapshots the epoch still commits, without a checkpoint. */
    e->snaps = calloc((size_t)s->nworkers, sizeof *e->snaps);
    s->npending++;
    return 0;
}

/* Sends the open epoch's MARK down every worker and opens the next one. Returns 0, or -1
 * when too many epochs wait for their commit (the broker or the store is behind). */
static int mark(serve_t *s)
{
    if (s->npending == MAX_PENDING)
        return -1;
    epoch_t *e = &s->pending[(s->pending_head + s->npending - 1) % MAX_PENDING];
    if (s->nparts) {
        if (!(e->parts = malloc(s->nparts * sizeof *e->parts)))
            return -1;
        memcpy(e->parts, s->parts, s->nparts * sizeof *e->parts);
        e->nparts = s->nparts;
    }
    e->marked = 1;
    to_every_worker(s, &(serve_in_t){.kind = SERVE_IN_MARK, .epoch = e->id});
    s->dispatched_since_mark = 0;
    s->last_mark_ns = cli_now_ns();
    return open_epoch(s);
}

static const stored_offset_t *stored_offset(serve_t *s, const char *topic, int32_t partition);
static int load_offset(void *ctx, const char *topic, int32_t partition, int64_t next);

static void epoch_free_snaps(epoch_t *e)
{
    for (size_t i = 0; i < e->nsnaps; i++)
        serve_snap_free(e->snaps[i]);
    free(e->snaps);
    e->snaps = NULL;
    e->nsnaps = 0;
}

/* Writes the epoch's checkpoint into the store's open transaction: where each partition was
 * read up to, and the engine state of every vehicle that changed, as of the MARK. It is
 * committed with what those events produced, so a restart from it finds the store and the
 * engines in step (docs/serve.md, crash recovery). */
static int checkpoint(serve_t *s, const epoch_t *e)
{
    vsoc_store_t *st = cli_response_store(s->resp);
    if (!st)
        return 0;
    for (size_t i = 0; i < e->nparts; i++) {
        const part_t *p = &e->parts[i];
        if (p->next < 0)
            continue;
        if (vsoc_store_put_offset(st, s->topics[p->topic], p->partition, p->next) != 0)
            goto fail;
        /* Kept in step in memory: a partition that goes and comes back is judged by it. */
        stored_offset_t *so = (stored_offset_t *)stored_offset(s, s->topics[p->topic],
                                                               p->partition);
        if (so)
            so->next = p->next;
        else if (load_offset(s, s->topics[p->topic], p->partition, p->next) != 0)
            goto fail;
    }
    int64_t now = cli_wall_us();
    /* The fleet counter in process (no Redis, or while it is away), when a hit changed it.
     * It may hold hits of events after this epoch's MARK too: a restart feeds those again,
     * and a hit the counter has seen changes nothing (the one that raised an alert raises
     * it again, same uid: fleet.h). */
    if (vsoc_fleet_changed(s->fleet)) {
        void *blob = NULL;
        size_t bn = 0;
        if (vsoc_fleet_snapshot(s->fleet, &blob, &bn) != 0) {
            slog(s, LOG_ERROR, "out_of_memory", "checkpoint: the fleet counter");
            return -1;
        }
        int rc = vsoc_store_put_service_state(st, "fleet", blob, bn, now);
        free(blob);
        if (rc != 0)
            goto fail;
    }
    for (size_t k = 0; k < e->nsnaps; k++) {
        const serve_snap_t *sn = e->snaps[k];
        for (size_t i = 0; i < sn->n; i++) {
            const serve_snap_item_t *it = &sn->v[i];
            if (it->partition < 0)
                continue; /* a vehicle of no partition (none can be restored for it) */
            if (vsoc_store_put_engine_state(st, it->vin, it->vinlen, s->topics[it->topic],
                                            it->partition, it->blob, it->n, now) != 0)
                goto fail;
        }
    }
    return 0;
fail:
    slog(s, LOG_ERROR, "store.failed", "checkpoint: %s", vsoc_store_errmsg(st));
    return -1;
}

/* Commits the offsets of finished epochs, oldest first. */
static void complete(serve_t *s)
{
    /* After a failure (an alert the store did not take) nothing more may be committed: a
     * checkpoint past that alert's event would lose it for good. */
    while (s->npending && !s->failed) {
        epoch_t *e = &s->pending[s->pending_head];
        /* All MARKs back and every alert before them acknowledged by the broker: only
         * then may the checkpoint pass these offsets, or a restart from it would skip
         * events whose alerts never reached the topic. */
        if (!e->marked || e->marks < (unsigned)s->nworkers || e->outstanding)
            return;
        if (!e->stored) {
            if (e->max_ts_us != INT64_MIN)
                cli_response_advance(s->resp, e->max_ts_us);
            uint64_t t0 = cli_now_ns();
            if (!e->snap_failed && checkpoint(s, e) != 0) {
                s->failed = 1;
                return;
            }
            if (cli_response_commit(s->resp) != 0) {
                s->failed = 1;
                return;
            }
            vsoc_hist_observe(s->store_commit, (double)(cli_now_ns() - t0) / 1e9);
            e->stored = 1;
            pthread_mutex_lock(&s->mu);
            cli_response_counts(s->resp, &s->counts);
            pthread_mutex_unlock(&s->mu);
        }
        vsoc_kafka_partition_t *list = malloc((e->nparts ? e->nparts : 1) * sizeof *list);
        if (!list)
            return; /* tried again at the next turn */
        size_t n = 0;
        for (size_t i = 0; i < e->nparts; i++) {
            const part_t *cur = part_find(s, e->parts[i].topic, e->parts[i].partition);
            if (!cur || e->parts[i].given_up || e->parts[i].next < 0 ||
                e->parts[i].next <= cur->committed)
                continue; /* revoked since, nothing read, or committed already */
            list[n++] = (vsoc_kafka_partition_t){.topic = s->topics[e->parts[i].topic],
                                                 .partition = e->parts[i].partition,
                                                 .offset = e->parts[i].next};
        }
        char err[512];
        if (n && vsoc_kafka_commit_offsets(s->cons, list, n, err, sizeof err) != 0) {
            /* The next epoch's commit covers these offsets too: nothing is lost, a crash
             * before it only redelivers more. */
            slog(s, LOG_WARN, "kafka.commit_failed", "%s", err);
            pthread_mutex_lock(&s->mu);
            s->offset_commit_errors++;
            pthread_mutex_unlock(&s->mu);
        } else if (n) {
            for (size_t i = 0; i < e->nparts; i++) {
                part_t *cur = part_find(s, e->parts[i].topic, e->parts[i].partition);
                if (cur && e->parts[i].next > cur->committed)
                    cur->committed = e->parts[i].next;
            }
            pthread_mutex_lock(&s->mu);
            s->offset_commits++;
            pthread_mutex_unlock(&s->mu);
        }
        free(list);
        free(e->parts);
        e->parts = NULL;
        epoch_free_snaps(e);
        s->pending_head = (s->pending_head + 1) % MAX_PENDING;
        s->npending--;
    }
}

/* ---- outputs: alerts, malformed messages, markers ----------------------------------------- */

static void count_alert(serve_t *s, const vsoc_rule_t *rule)
{
    const char *id = vsoc_rule_id(rule);
    pthread_mutex_lock(&s->mu);
    size_t i;
    for (i = 0; i < s->nrc; i++)
        if (!strcmp(s->rc[i].id, id))
            break;
    if (i == s->nrc) {
        if (vsoc_array_grow((void **)&s->rc, &s->caprc, s->nrc, sizeof *s->rc) != 0 ||
            !(s->rc[i].id = strdup(id))) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->rc[i].level = vsoc_level_name(vsoc_rule_level(rule));
        s->rc[i].alerts = 0;
        s->nrc++;
    }
    s->rc[i].alerts++;
    pthread_mutex_unlock(&s->mu);
}

static void retry_later(serve_t *s, pub_t *pb)
{
    if (vsoc_array_grow((void **)&s->retry, &s->capretry, s->nretry, sizeof *s->retry) != 0) {
        /* Without memory to keep it, the alert is still in the store; its epoch never
         * completes, so its offsets are not committed and a restart publishes it again. */
        slog(s, LOG_ERROR, "out_of_memory", "an alert could not be queued for publishing");
        free(pb->json);
        free(pb);
        return;
    }
    s->retry[s->nretry++] = pb;
}

static void publish(serve_t *s, pub_t *pb)
{
    char err[512];
    if (vsoc_kafka_produce_async(s->prod, s->cfg->kafka.topics.alerts, pb->vin, pb->vinlen,
                                 pb->json, strlen(pb->json), pb, err, sizeof err) != 0)
        retry_later(s, pb);
}

static void on_delivery(void *ctx, void *opaque, int ok, const char *errstr)
{
    serve_t *s = ctx;
    pub_t *pb = opaque;
    if (!pb)
        return;
    if (!ok) {
        pthread_mutex_lock(&s->mu);
        s->publish_retries++;
        pthread_mutex_unlock(&s->mu);
        if (++pb->failures >= MAX_DELIVERY_FAILURES) {
            slog(s, LOG_ERROR, "alert.publish_failed", "an alert of %.*s could not be "
                 "published in %u attempts (%s): stopping; its messages are read again on "
                 "restart", (int)pb->vinlen, pb->vin, pb->failures, errstr);
            s->failed = 1;
            free(pb->json);
            free(pb);
            return;
        }
        slog(s, LOG_WARN, "alert.publish_failed", "attempt %u of %d, sent again: %s",
             pb->failures, MAX_DELIVERY_FAILURES, errstr);
        retry_later(s, pb);
        return;
    }
    epoch_t *e = epoch_get(s, pb->epoch);
    if (e && e->outstanding)
        e->outstanding--;
    pthread_mutex_lock(&s->mu);
    s->published++;
    if (pb->produced_ms >= 0) {
        double lat = (double)(cli_wall_us() / 1000 - pb->produced_ms) / 1e3;
        vsoc_hist_observe(s->latency, lat < 0 ? 0 : lat);
    }
    pthread_mutex_unlock(&s->mu);
    free(pb->json);
    free(pb);
}

static void redis_state(serve_t *s)
{
    if (!s->redis)
        return;
    int up = vsoc_redis_up(s->redis);
    pthread_mutex_lock(&s->mu);
    if (up != s->redis_up)
        slog(s, up ? LOG_INFO : LOG_WARN, up ? "redis.up" : "redis.down", "%s",
             up ? "connected: fleet state is shared again"
                : vsoc_redis_errstr(s->redis));
    s->redis_up = up;
    vsoc_redis_stats(s->redis, &s->redis_stats);
    pthread_mutex_unlock(&s->mu);
}

/* Makes o (a hit that raised its rule's fleet alert) the alert: o->json and o->uid become
 * exactly what vsoc_fleet_alert_json writes in replay (the hit's finding with the counter's
 * uid, count, window and vehicles). Returns 0, or -1 when memory ran out. */
static int fleet_json(serve_out_t *o, const vsoc_fleet_result_t *res)
{
    json_error_t jerr;
    json_t *j = json_loads(o->json, 0, &jerr);
    if (!j)
        return -1;
    int64_t last = o->time_us > res->first_us ? o->time_us : res->first_us;
    json_t *fi = json_object_get(j, "finding_info");
    json_t *evd = json_object_get(json_array_get(json_object_get(j, "evidences"), 0), "data");
    json_t *veh = json_object_get(j, "vehicle");
    json_object_set_new(j, "start_time", json_integer(res->first_us / 1000));
    json_object_set_new(j, "end_time", json_integer(last / 1000));
    json_object_set_new(j, "count", json_integer((json_int_t)res->vehicles));
    json_object_set_new(fi, "uid", json_string(res->uid));
    json_object_set_new(fi, "first_seen_time", json_integer(res->first_us / 1000));
    json_object_set_new(fi, "last_seen_time", json_integer(last / 1000));
    json_object_set_new(evd, "count", json_integer((json_int_t)res->vehicles));
    json_object_set_new(evd, "first_seen_time", json_integer(res->first_us / 1000));
    json_object_set_new(evd, "last_seen_time", json_integer(last / 1000));
    json_t *fl = json_object(), *vins = json_array();
    json_object_set_new(fl, "vehicles", json_integer((json_int_t)res->vehicles));
    for (size_t i = 0; i < res->nvins && i < VSOC_FLEET_SAMPLES; i++)
        json_array_append_new(vins, json_string(res->vins[i]));
    json_object_set_new(fl, "vins", vins);
    json_object_set_new(veh, "fleet", fl);
    char *out = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!out)
        return -1;
    free(o->json);
    o->json = out;
    memcpy(o->uid, res->uid, sizeof o->uid);
    return 0;
}

static void handle_alert(serve_t *s, int wi, serve_out_t *o);

/* Counts the fleet hits of one drain pass: in one pipeline to Redis, or in process when
 * there is no Redis or it is away (then each instance counts only its own vehicles until
 * it is back; docs/redis.md). Hits that raise an alert go on as alerts. */
static void count_hits(serve_t *s)
{
    size_t n = s->nhits;
    if (!n)
        return;
    vsoc_fleet_result_t res[64];
    vsoc_redis_fleet_hit_t rh[64];
    for (size_t base = 0; base < n; base += 64) {
        size_t m = n - base < 64 ? n - base : 64;
        int valid[64];
        for (size_t i = 0; i < m; i++) {
            serve_out_t *o = &s->hits[base + i];
            int64_t span = 0;
            uint64_t gte = 0;
            valid[i] = vsoc_rule_fleet(o->rule, &span, &gte);
            rh[i] = (vsoc_redis_fleet_hit_t){vsoc_rule_id(o->rule), span, gte ? gte : 1,
                                             o->vin, o->vinlen, o->time_us};
        }
        int shared = s->redis && vsoc_redis_fleet_hits(s->redis, rh, m, res) == 0;
        if (s->redis && !shared) {
            pthread_mutex_lock(&s->mu);
            s->redis_fallbacks += m;
            pthread_mutex_unlock(&s->mu);
        }
        for (size_t i = 0; i < m; i++) {
            serve_out_t *o = &s->hits[base + i];
            int alert = 0;
            if (valid[i] && !shared &&
                vsoc_fleet_hit(s->fleet, rh[i].rule_id, rh[i].timespan_us, rh[i].gte, o->vin,
                               o->vinlen, o->time_us, &res[i]) != 0)
                valid[i] = 0;
            alert = valid[i] && res[i].alert;
            if (alert && fleet_json(o, &res[i]) == 0) {
                pthread_mutex_lock(&s->mu);
                s->fleet_alerts++;
                pthread_mutex_unlock(&s->mu);
                o->fleet_hit = 0;
                handle_alert(s, o->topic, o); /* topic holds the worker index here */
            } else {
                free(o->json);
            }
        }
    }
    s->nhits = 0;
    redis_state(s);
}

/* The responder's fleet-wide limits through Redis (respond.h, limits). */
static int shared_limits(void *ctx, const vsoc_playbook_t *p, const char *vin,
                         const char *run_id, int *cooling, uint64_t *vehicles)
{
    serve_t *s = ctx;
    char key[300];
    *cooling = 0;
    *vehicles = 0;
    int rc = 0;
    if (p->cooldown_s > 0) {
        int acquired = 0;
        snprintf(key, sizeof key, "playbook:%s:%s", p->id, vin);
        rc = vsoc_redis_cooldown(s->redis, key, p->cooldown_s * 1000, run_id, &acquired);
        if (rc == 0 && !acquired) {
            *cooling = 1;
            return 0;
        }
    }
    if (rc == 0 && p->max_vehicles_per_hour) {
        int64_t count = 0;
        int admitted = 0;
        snprintf(key, sizeof key, "blast:%s", p->id);
        /* Distinct vehicles started on, as the local count has them: the same vehicle read
         * again (after a crash) or run again (after its cooldown) within the hour counts
         * once, and a vehicle held back by the cap takes no place. */
        rc = vsoc_redis_window_admit(s->redis, key, vin, 3600 * 1000, p->max_vehicles_per_hour,
                                     &count, &admitted);
        *vehicles = (uint64_t)count;
    }
    if (rc != 0) {
        pthread_mutex_lock(&s->mu);
        s->redis_fallbacks++;
        pthread_mutex_unlock(&s->mu);
    }
    redis_state(s);
    return rc;
}

static void handle_alert(serve_t *s, int wi, serve_out_t *o)
{
    if (o->fleet_hit) {
        if (vsoc_array_grow((void **)&s->hits, &s->caphits, s->nhits, sizeof *s->hits) != 0) {
            free(o->json);
            slog(s, LOG_ERROR, "out_of_memory", "a fleet hit could not be counted");
            return;
        }
        o->topic = (uint8_t)wi;
        o->epoch = s->wepoch[wi]; /* its alert belongs where the hit came from */
        s->hits[s->nhits++] = *o;
        return;
    }
    count_alert(s, o->rule);
    vsoc_alert_t a = {.rule = o->rule, .time_us = o->time_us, .vin = {o->vin, o->vinlen}};
    memcpy(a.uid, o->uid, sizeof a.uid);
    if (cli_response_alert(s->resp, &a, o->json) != 0)
        s->failed = 1;
    if (!s->cfg->kafka.topics.alerts || !s->cfg->kafka.topics.alerts[0]) {
        free(o->json);
        return;
    }
    pub_t *pb = malloc(sizeof *pb);
    if (!pb) {
        free(o->json);
        slog(s, LOG_ERROR, "out_of_memory", "an alert could not be published");
        return;
    }
    pb->epoch = o->epoch ? o->epoch : s->wepoch[wi];
    pb->produced_ms = o->produced_ms;
    pb->vinlen = o->vinlen;
    memcpy(pb->vin, o->vin, sizeof pb->vin);
    pb->json = o->json;
    /* Counted before it is handed over: its delivery report may come at once. The epoch
     * is the open one or a marked one still pending: outputs of a worker before its MARK
     * come before the MARK, and an epoch leaves the queue only after all MARKs. */
    epoch_t *e = epoch_get(s, pb->epoch);
    if (e)
        e->outstanding++;
    publish(s, pb);
}

/* Takes every output the workers have ready. */
static void drain(serve_t *s)
{
    for (int i = 0; i < s->nworkers; i++) {
        serve_out_t *o;
        while ((o = cli_ring_peek(&s->w[i].out))) {
            switch (o->kind) {
            case SERVE_OUT_ALERT:
                handle_alert(s, i, o);
                break;
            case SERVE_OUT_BAD: {
                uint64_t n;
                pthread_mutex_lock(&s->mu);
                n = ++s->bad_total;
                pthread_mutex_unlock(&s->mu);
                if (n <= 20 || n % 10000 == 0)
                    slog(s, LOG_WARN, "event.malformed", "%s/%d@%lld: %s%s",
                         s->topics[o->topic], (int)o->partition, (long long)o->offset,
                         o->reason, n == 20 ? " (further ones are counted, and logged once "
                                              "every 10000)" : "");
                break;
            }
            case SERVE_OUT_MARK: {
                epoch_t *e = epoch_get(s, o->epoch);
                if (e) {
                    e->marks++;
                    if (o->max_ts_us > e->max_ts_us)
                        e->max_ts_us = o->max_ts_us;
                    if (!o->snap || o->snap->failed || !e->snaps)
                        e->snap_failed = 1;
                    if (o->snap && e->snaps)
                        e->snaps[e->nsnaps++] = o->snap;
                    else
                        serve_snap_free(o->snap);
                } else {
                    serve_snap_free(o->snap);
                }
                s->wepoch[i] = o->epoch + 1;
                break;
            }
            case SERVE_OUT_RELEASE:
                /* Queued fleet hits point into the set: count them while it lives. */
                count_hits(s);
                serve_set_unref(o->set);
                break;
            case SERVE_OUT_WARN:
                slog(s, LOG_WARN, "worker.warning", "worker %d: %s", i, o->reason);
                break;
            case SERVE_OUT_HANDOFF:
                s->hand_wait--;
                if (!o->snap || o->snap->failed ||
                    vsoc_array_grow((void **)&s->hand, &s->caphand, s->nhand,
                                    sizeof *s->hand) != 0) {
                    s->hand_failed = 1; /* a partial handoff would lose vehicles */
                    serve_snap_free(o->snap);
                } else {
                    s->hand[s->nhand++] = o->snap;
                }
                break;
            case SERVE_OUT_STOP:
                break;
            }
            cli_ring_release(&s->w[i].out);
        }
    }
    count_hits(s);
}

/* Publishes again what the producer refused or lost; their epochs wait for them. */
static void republish(serve_t *s)
{
    size_t n = s->nretry;
    /* At most ten times a second: a full queue needs the producer to make room first. */
    uint64_t now = cli_now_ns();
    if (!n || now - s->last_republish_ns < 100000000ull)
        return;
    s->last_republish_ns = now;
    pub_t **v = s->retry;
    s->retry = NULL;
    s->nretry = s->capretry = 0;
    for (size_t i = 0; i < n; i++)
        publish(s, v[i]);
    free(v);
}

/* One turn of the main loop's output side: outputs, delivery reports, finished epochs. */
static void turn(serve_t *s)
{
    drain(s);
    if (s->prod)
        vsoc_kafka_producer_poll(s->prod, 0, on_delivery, s);
    republish(s);
    complete(s);
}

/* Makes everything dispatched so far durable and commits its offsets, waiting up to
 * timeout_ms. Returns 0 when done, -1 when the time ran out (the offsets stay where they
 * were: those messages will be read again). */
static int barrier(serve_t *s, int timeout_ms)
{
    uint64_t end = cli_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (mark(s) != 0) {
        turn(s);
        if (s->failed || cli_now_ns() > end)
            return -1;
        if (s->prod)
            vsoc_kafka_producer_poll(s->prod, 5, on_delivery, s);
    }
    /* Done when only the (new, empty) open epoch is left. */
    while (s->npending > 1) {
        turn(s);
        if (s->failed || cli_now_ns() > end)
            return -1;
        if (s->npending > 1 && s->prod)
            vsoc_kafka_producer_poll(s->prod, 1, on_delivery, s);
    }
    return 0;
}

/* ---- rebalance ---------------------------------------------------------------------------- */

static const stored_offset_t *stored_offset(serve_t *s, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < s->nso; i++)
        if (s->so[i].partition == partition && !strcmp(s->so[i].topic, topic))
            return &s->so[i];
    return NULL;
}

static int load_offset(void *ctx, const char *topic, int32_t partition, int64_t next)
{
    serve_t *s = ctx;
    if (vsoc_array_grow((void **)&s->so, &s->capso, s->nso, sizeof *s->so) != 0)
        return VSOC_ENOMEM;
    if (!(s->so[s->nso].topic = strdup(topic)))
        return VSOC_ENOMEM;
    s->so[s->nso].partition = partition;
    s->so[s->nso++].next = next;
    return 0;
}

typedef struct restore_ctx {
    serve_t *s;
    int topic;
    int32_t partition;
    int dirty; /* handed over: not in this instance's store yet */
    size_t n;
} restore_ctx_t;

/* Hands one vehicle's stored state to the worker that owns the vehicle, ahead of its
 * events in the same ring. */
static int restore_one(void *ctx, const char *vin, size_t vinlen, const void *blob, size_t n)
{
    restore_ctx_t *x = ctx;
    serve_t *s = x->s;
    if (vinlen > SERVE_KEY_MAX)
        return 0;
    char *copy = malloc(n ? n : 1);
    if (!copy)
        return VSOC_ENOMEM;
    memcpy(copy, blob, n);
    int wi = (int)(vin_hash(vin, vinlen) % (uint32_t)s->nworkers);
    serve_in_t *slot = claim_in(s, wi);
    slot->kind = SERVE_IN_RESTORE;
    slot->topic = (uint8_t)x->topic;
    slot->partition = x->partition;
    slot->keylen = (uint16_t)vinlen;
    memcpy(slot->key, vin, vinlen);
    slot->big = copy;
    slot->n = (uint32_t)n;
    slot->dirty = (uint8_t)x->dirty;
    cli_ring_publish(&s->w[wi].in);
    x->n++;
    return 0;
}

/* "<group>:<topic>:<partition>": where a partition's handoff is kept in Redis. Returns 0,
 * or -1 when it does not fit (no handoff then: two partitions must not share a key). */
static int handoff_key(const serve_t *s, const char *topic, int32_t partition, char *buf,
                       size_t n)
{
    int k = snprintf(buf, n, "%s:%s:%d", s->cfg->kafka.group, topic, (int)partition);
    return k > 0 && (size_t)k < n ? 0 : -1;
}

/* How the Redis client's return code reads in a log line. */
static const char *redis_why(serve_t *s, int rc)
{
    return rc == VSOC_EIO ? vsoc_redis_errstr(s->redis)
           : rc == VSOC_ENOMEM ? "out of memory"
                               : "a name too long for a key";
}

/* Restores the vehicles the previous owner of (topic, partition) handed over as of offset,
 * the group's committed offset. Returns how many. */
static size_t take_handoff(serve_t *s, int t, const char *topic, int32_t partition,
                           int64_t offset)
{
    char key[1024];
    restore_ctx_t x = {.s = s, .topic = t, .partition = partition, .dirty = 1};
    int64_t at = -1;
    int rc = handoff_key(s, topic, partition, key, sizeof key) != 0
                 ? VSOC_EINVAL
                 : vsoc_redis_handoff_get(s->redis, key, offset, &at, restore_one, &x,
                                          (int)(s->cfg->redis.handoff_timeout_us / 1000));
    redis_state(s);
    if (rc != 0) {
        slog(s, LOG_WARN, "kafka.handoff_unread", "%s/%d: the previous owner's engine state "
             "could not be read (%s): %s", topic, (int)partition, redis_why(s, rc),
             x.n ? "the vehicles restored before the failure keep their state, the others "
                   "start afresh" : "its vehicles' windows start afresh");
        return x.n;
    }
    if (at == offset)
        slog(s, LOG_INFO, "kafka.handoff_taken", "%s/%d: engine state of %zu vehicle%s handed "
             "over by the previous owner at offset %lld", topic, (int)partition, x.n,
             x.n == 1 ? "" : "s", (long long)offset);
    else if (at >= 0)
        slog(s, LOG_INFO, "kafka.handoff_stale", "%s/%d: the handoff in Redis is as of offset "
             "%lld, the group's is %lld: not used", topic, (int)partition, (long long)at,
             (long long)offset);
    return x.n;
}

/* A partition about to be taken: resume from the store's checkpoint when it is the newest
 * word on it (the group's committed offset is not ahead of it), restoring its vehicles'
 * engine state and starting the partition at the checkpoint's offset; otherwise another
 * instance read on from it since, and the stored state is stale: the previous owner's
 * handoff is used when it is as of the group's offset. */
static void on_assign(void *ctx, vsoc_kafka_partition_t *p, size_t n)
{
    serve_t *s = ctx;
    vsoc_store_t *st = cli_response_store(s->resp);
    size_t restored = 0;
    for (size_t i = 0; i < n; i++) {
        int t = topic_index(s, p[i].topic);
        if (t < 0)
            continue;
        part_t *pt = part_of(s, t, p[i].partition);
        /* An epoch still open from before the partition went (its revoke timed out) holds
         * offsets the group may have passed since: commits must not go back behind them. */
        if (pt && p[i].offset >= 0 && p[i].offset > pt->committed)
            pt->committed = p[i].offset;
        if (pt)
            pt->start_at = p[i].offset >= 0 ? p[i].offset : -1;
        const stored_offset_t *so = stored_offset(s, p[i].topic, p[i].partition);
        if (p[i].offset == VSOC_KAFKA_OFFSET_UNREAD) {
            /* Whether another instance read on is not known: no stored or handed-over state
             * can be trusted. At-least-once holds; only the windows start afresh. */
            if (st && so)
                slog(s, LOG_WARN, "kafka.offset_unread", "%s/%d: the group's committed offset "
                     "could not be read: the store's checkpoint is not used", p[i].topic,
                     (int)p[i].partition);
            continue;
        }
        if (st && so && p[i].offset >= 0 && p[i].offset > so->next) {
            /* Another instance read on: the stored state is stale. */
            if (vsoc_store_drop_engine_state(st, p[i].topic, p[i].partition) != 0)
                slog(s, LOG_WARN, "store.failed", "%s", vsoc_store_errmsg(st));
        } else if (st && so) {
            /* The state goes down the workers' rings ahead of any of the partition's events,
             * which are fetched from the checkpoint on. */
            p[i].start = so->next;
            if (pt)
                pt->start_at = so->next;
            restore_ctx_t x = {.s = s, .topic = t, .partition = p[i].partition};
            if (vsoc_store_each_engine_state(st, p[i].topic, p[i].partition, restore_one,
                                             &x) != 0)
                slog(s, LOG_WARN, "store.failed", "restoring %s/%d: %s", p[i].topic,
                     (int)p[i].partition, vsoc_store_errmsg(st));
            restored += x.n;
            if (p[i].offset != so->next)
                slog(s, LOG_INFO, "kafka.resumed", "%s/%d from the store's checkpoint at offset "
                     "%lld (the group had %lld)", p[i].topic, (int)p[i].partition,
                     (long long)so->next, (long long)p[i].offset);
            continue;
        }
        /* Not this instance's to resume: the previous owner's handoff, when it is as of the
         * group's committed offset, where reading resumes. */
        if (s->redis && p[i].offset >= 0) {
            restored += take_handoff(s, t, p[i].topic, p[i].partition, p[i].offset);
            p[i].start = p[i].offset; /* where the handoff is as of, whatever else may say */
        }
    }
    pthread_mutex_lock(&s->mu);
    s->ready = 1;
    s->assigned = vsoc_kafka_assigned(s->cons);
    s->restored += restored;
    pthread_mutex_unlock(&s->mu);
    slog(s, LOG_INFO, "kafka.assigned", "%zu partition%s assigned, %zu in all; engine state "
         "restored for %zu vehicle%s", n, n == 1 ? "" : "s", vsoc_kafka_assigned(s->cons),
         restored, restored == 1 ? "" : "s");
}

/* Hands the engine state of the partitions tp[0..n) to their next owners through Redis:
 * every worker snapshots their vehicles in one pass, and each partition's lot is written as
 * of at[k], where the next owner resumes when the commit went through (it checks that
 * against the group's committed offset, so a handoff that does not match is never used). */
static void give_handoffs(serve_t *s, const serve_tp_t *tp, const int64_t *at, size_t n)
{
    s->nhand = 0;
    s->hand_failed = 0;
    s->hand_wait = s->nworkers;
    /* The list is read by the workers and freed by the caller once all have answered. */
    to_every_worker(s, &(serve_in_t){.kind = SERVE_IN_HANDOFF, .big = (char *)(void *)tp,
                                     .n = (uint32_t)n});
    while (s->hand_wait > 0) {
        drain(s);
        if (s->hand_wait > 0) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
    size_t total = 0;
    for (size_t k = 0; k < s->nhand; k++)
        total += s->hand[k]->n;
    vsoc_redis_blob_t *v = malloc((total ? total : 1) * sizeof *v);
    for (size_t k = 0; k < n; k++) {
        const char *topic = s->topics[tp[k].topic];
        int32_t partition = tp[k].partition;
        int rc = VSOC_ENOMEM;
        size_t j = 0;
        if (v && !s->hand_failed) {
            for (size_t h = 0; h < s->nhand; h++)
                for (size_t i = 0; i < s->hand[h]->n; i++) {
                    const serve_snap_item_t *it = &s->hand[h]->v[i];
                    if (it->topic == tp[k].topic && it->partition == partition)
                        v[j++] = (vsoc_redis_blob_t){it->vin, it->vinlen, it->blob, it->n};
                }
            char key[1024];
            rc = handoff_key(s, topic, partition, key, sizeof key) != 0
                     ? VSOC_EINVAL
                     : vsoc_redis_handoff_put(s->redis, key, at[k], v, j, HANDOFF_TTL_MS,
                                              (int)(s->cfg->redis.handoff_timeout_us / 1000));
            redis_state(s);
        }
        if (rc == 0)
            slog(s, LOG_INFO, "kafka.handoff_given", "%s/%d: engine state of %zu vehicle%s "
                 "handed over at offset %lld", topic, (int)partition, j, j == 1 ? "" : "s",
                 (long long)at[k]);
        else
            slog(s, LOG_WARN, "kafka.handoff_failed", "%s/%d: the engine state of its "
                 "vehicles may not have been handed over (%s): if not, the next owner starts "
                 "their windows afresh", topic, (int)partition, redis_why(s, rc));
    }
    free(v);
    for (size_t k = 0; k < s->nhand; k++)
        serve_snap_free(s->hand[k]);
    s->nhand = 0;
}

static void on_revoke(void *ctx, const vsoc_kafka_partition_t *p, size_t n)
{
    serve_t *s = ctx;
    /* The partitions go to another instance, which starts where the committed offsets
     * say: everything read from them is made durable and committed first. */
    int committed = barrier(s, 20000) == 0;
    if (!committed)
        slog(s, LOG_WARN, "kafka.revoke_uncommitted",
             "could not commit before giving up %zu partition%s: their last messages will be "
             "read again by the next owner", n, n == 1 ? "" : "s");
    /* With Redis, the vehicles' open windows go with their partitions, all in one pass of
     * the workers. Not when they were lost (another member may own them and have read on)
     * nor when the commit failed (the next owner reads again what the state has seen). */
    if (s->redis && committed && !vsoc_kafka_assignment_lost(s->cons)) {
        serve_tp_t *tp = malloc((n ? n : 1) * sizeof *tp);
        int64_t *at = malloc((n ? n : 1) * sizeof *at);
        size_t m = 0;
        for (size_t i = 0; tp && at && i < n; i++) {
            int t = topic_index(s, p[i].topic);
            const part_t *pt = t >= 0 ? part_find(s, t, p[i].partition) : NULL;
            int64_t from = !pt ? -1 : pt->next >= 0 ? pt->next : pt->start_at;
            if (from >= 0) {
                tp[m] = (serve_tp_t){(uint8_t)t, p[i].partition};
                at[m++] = from;
            }
        }
        if (!tp || !at)
            slog(s, LOG_WARN, "kafka.handoff_failed", "out of memory: the engine state of "
                 "%zu partition%s is not handed over", n, n == 1 ? "" : "s");
        else if (m)
            give_handoffs(s, tp, at, m);
        free(tp);
        free(at);
    }
    for (size_t i = 0; i < n; i++) {
        int t = topic_index(s, p[i].topic);
        /* Epochs still waiting hold offsets of this partition that its next owner may pass:
         * should the partition come back before they complete, they must not commit them
         * (behind the group's offset, when it cannot be read to tell). */
        for (size_t k = 0; !committed && t >= 0 && k < s->npending; k++) {
            epoch_t *e = &s->pending[(s->pending_head + k) % MAX_PENDING];
            for (size_t j = 0; j < e->nparts; j++)
                if (e->parts[j].topic == t && e->parts[j].partition == p[i].partition)
                    e->parts[j].given_up = 1;
        }
        part_t *gone = t >= 0 ? part_find(s, t, p[i].partition) : NULL;
        if (gone)
            *gone = s->parts[--s->nparts];
        /* The next owner reads on from here with the state it restores: what the engines
         * hold of these vehicles would be stale should the partition come back. */
        if (t >= 0)
            to_every_worker(s, &(serve_in_t){.kind = SERVE_IN_FORGET, .topic = (uint8_t)t,
                                             .partition = p[i].partition});
    }
    slog(s, LOG_INFO, "kafka.revoked", "%zu partition%s revoked", n, n == 1 ? "" : "s");
}

/* The fleet counter as the last checkpoint left it. A blob that does not parse is logged
 * and dropped (the counts start afresh); only running out of memory stops the start. */
static int load_fleet(void *ctx, const void *blob, size_t n)
{
    serve_t *s = ctx;
    char err[256];
    int rc = vsoc_fleet_restore(s->fleet, blob, n, err, sizeof err);
    if (rc == VSOC_ENOMEM) {
        slog(s, LOG_ERROR, "start.failed", "restoring the fleet counter: out of memory");
        s->failed = 1;
        return 0;
    }
    if (rc != 0)
        slog(s, LOG_WARN, "fleet.not_restored", "%s: fleet counts start afresh", err);
    return 0;
}

/* ---- reload ------------------------------------------------------------------------------- */

static int reload(serve_t *s, char *msg, size_t n)
{
    char why[512];
    serve_set_t *set = load_set(s, why, sizeof why);
    if (!set) {
        snprintf(msg, n, "reload failed, generation %llu keeps running: %s",
                 (unsigned long long)s->set->generation, why);
        slog(s, LOG_ERROR, "reload.failed", "%s", msg);
        pthread_mutex_lock(&s->mu);
        s->reloads_failed++;
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    /* Every worker's engine is built before anything changes: a reload goes through for all
     * of them or for none. */
    vsoc_engine_t *eng[MAX_WORKERS] = {0};
    for (int i = 0; i < s->nworkers; i++) {
        if (!(eng[i] = serve_worker_engine(&s->w[i], set, why, sizeof why))) {
            for (int k = 0; k < i; k++)
                vsoc_engine_free(eng[k]);
            snprintf(msg, n, "reload failed, generation %llu keeps running: worker %d: %s",
                     (unsigned long long)s->set->generation, i, why);
            slog(s, LOG_ERROR, "reload.failed", "%s", msg);
            serve_set_unref(set);
            pthread_mutex_lock(&s->mu);
            s->reloads_failed++;
            pthread_mutex_unlock(&s->mu);
            return -1;
        }
    }
    if (cli_response_set_playbooks(s->resp, set->playbooks) != 0) {
        for (int i = 0; i < s->nworkers; i++)
            vsoc_engine_free(eng[i]);
        snprintf(msg, n, "reload failed, generation %llu keeps running: the playbooks could "
                         "not be swapped", (unsigned long long)s->set->generation);
        serve_set_unref(set);
        pthread_mutex_lock(&s->mu);
        s->reloads_failed++;
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    for (int i = 0; i < s->nworkers; i++) {
        serve_in_t *slot = claim_in(s, i);
        slot->kind = SERVE_IN_SWAP;
        slot->big = NULL;
        serve_set_ref(set);
        slot->set = set;
        slot->engine = eng[i];
        cli_ring_publish(&s->w[i].in);
    }
    pthread_mutex_lock(&s->mu);
    serve_set_t *old = s->set;
    s->set = set;
    s->reloads_ok++;
    pthread_mutex_unlock(&s->mu);
    serve_set_unref(old);
    snprintf(msg, n, "reloaded: generation %llu, %zu rules, %zu playbooks%s",
             (unsigned long long)set->generation, vsoc_ruleset_count(set->rules),
             vsoc_playbooks_count(set->playbooks), set->baseline ? ", a baseline" : "");
    slog(s, LOG_INFO, "reload.done", "%s", msg);
    return 0;
}

/* ---- command delivery (kafka.topics.commands) ---------------------------------------------- */

/* The responder's transport: the signed envelope goes to the commands topic keyed by the VIN
 * and this waits for the broker, so command.sent is true when it is said. A failure is
 * logged; the ack timeout resends. */
static int send_command(void *ctx, const char *vin, const char *envelope, size_t n)
{
    serve_t *s = ctx;
    char err[512];
    if (!s->prod) {
        slog(s, LOG_WARN, "transport.error", "command to %s: the producer is not up yet "
             "(resent after the ack timeout)", vin);
        return -1;
    }
    if (vsoc_kafka_produce(s->prod, s->cfg->kafka.topics.commands, vin, strlen(vin), envelope,
                           n, 10000, err, sizeof err) != 0) {
        slog(s, LOG_WARN, "transport.error", "command to %s: %s (resent after the ack timeout)",
             vin, err);
        return -1;
    }
    return 0;
}

static void on_ack(void *ctx, const vsoc_kafka_msg_t *m)
{
    serve_t *s = ctx;
    if (s->failed)
        return; /* not kept: read again after the restart */
    if (cli_response_ack(s->resp, m->val, m->n, cli_wall_us()) != 0)
        s->failed = 1;
}

/* One turn of delivery on the main thread: the acks waiting now (no wait), and once a
 * second the approvals made with `vsoc commands approve` and the timers on the wall clock
 * (ack timeouts resend, approvals time out, deferred commands expire). */
static void deliver_turn(serve_t *s, uint64_t now_ns)
{
    if (!s->acks || s->failed)
        return;
    char err[512];
    int got = vsoc_kafka_poll(s->acks, 0, on_ack, s, err, sizeof err);
    if (got < 0)
        slog(s, LOG_WARN, "kafka.error", "acks: %s", err);
    /* The acks are committed in the store now: only then may the group move past them. */
    else if (got > 0 && !s->failed && vsoc_kafka_commit(s->acks, err, sizeof err) != 0)
        slog(s, LOG_WARN, "kafka.commit_failed", "acks: %s", err);
    if (s->failed || now_ns - s->last_deliver_ns < 1000000000ull)
        return;
    s->last_deliver_ns = now_ns;
    if (cli_response_approvals(s->resp) != 0 || cli_response_advance(s->resp, cli_wall_us()) != 0)
        s->failed = 1;
}

/* ---- set-up and the main loop ------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc serve -c FILE [--check] | --config-docs | --config-sample\n"
            "\n"
            "Runs the SOC service: reads vehicle events from Kafka (key: the VIN, value: one\n"
            "candump line or one JSON IDS event), runs the rules, baseline and playbooks,\n"
            "publishes alerts as OCSF JSON to Kafka, and keeps alerts, incidents, runs and\n"
            "commands in the store. Logs are JSON lines on stderr.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE  the configuration (docs/config.md; samples/vsoc.yaml)\n"
            "  --check            load the configuration, rules, baseline and playbooks,\n"
            "                     report every problem, and exit (0: all good)\n"
            "  --config-docs      print the configuration reference (Markdown) and exit\n"
            "  --config-sample    print a sample configuration with every key at its\n"
            "                     default (samples/vsoc.yaml) and exit\n"
            "  -h, --help         this help\n"
            "\n"
            "signals: SIGHUP reloads rules, baseline and playbooks (a set that fails to load\n"
            "leaves the running one in place); SIGTERM or SIGINT drains, commits and exits 0.\n"
            "HTTP (http.listen): /metrics, /healthz, /readyz, POST /-/reload.\n"
            "\n"
            "exit status: 0 stopped cleanly, 1 a Kafka, store or runtime failure, 2 usage,\n"
            "configuration, rule or playbook errors.\n");
}

static void free_serve(serve_t *s)
{
    for (size_t i = 0; i < s->ntopics; i++)
        free(s->topics[i]);
    free(s->parts);
    for (size_t k = 0; k < MAX_PENDING; k++) {
        free(s->pending[k].parts);
        epoch_free_snaps(&s->pending[k]);
    }
    for (size_t i = 0; i < s->nso; i++)
        free(s->so[i].topic);
    free(s->so);
    for (size_t i = 0; i < s->nretry; i++) {
        free(s->retry[i]->json);
        free(s->retry[i]);
    }
    free(s->retry);
    for (size_t i = 0; i < s->nrc; i++)
        free(s->rc[i].id);
    free(s->rc);
    free(s->wepoch);
    free(s->w);
    for (size_t i = 0; i < s->nhits; i++)
        free(s->hits[i].json);
    free(s->hits);
    free(s->hand);
    vsoc_hist_free(s->latency);
    vsoc_hist_free(s->store_commit);
}

int cmd_serve(int argc, char **argv)
{
    const char *cpath = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (cli_opt(a, "--config", &val) || cli_opt(a, "-c", &val)) {
            if (!(cpath = cli_value(argc, argv, &i, val, "vsoc serve", "--config")))
                return EXIT_USAGE;
        } else if (!strcmp(a, "--check")) {
            check = 1;
        } else if (!strcmp(a, "--config-docs")) {
            serve_config_print_docs(stdout);
            return 0;
        } else if (!strcmp(a, "--config-sample")) {
            serve_config_print_sample(stdout);
            return 0;
        } else {
            fprintf(stderr, "vsoc serve: unknown argument '%s' (see vsoc serve --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (!cpath) {
        fprintf(stderr, "vsoc serve: no configuration: vsoc serve -c FILE (see "
                        "samples/vsoc.yaml)\n");
        return EXIT_USAGE;
    }
    serve_t sv = {.config_path = cpath, .level = LOG_INFO};
    serve_t *s = &sv;
    int rc = EXIT_USAGE;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    vsoc_diags_t *d = vsoc_diags_new();
    if (!d) {
        fprintf(stderr, "vsoc serve: out of memory\n");
        return 1;
    }
    s->cfg = serve_config_load(cpath, d);
    vsoc_diags_sort(d);
    vsoc_diags_print(d, stderr);
    if (!s->cfg || vsoc_diags_errors(d)) {
        fprintf(stderr, "vsoc serve: %zu error%s in %s\n", vsoc_diags_errors(d),
                vsoc_diags_errors(d) == 1 ? "" : "s", cpath);
        vsoc_diags_free(d);
        serve_config_free(s->cfg);
        return EXIT_USAGE;
    }
    vsoc_diags_free(d);
    s->level = s->cfg->log.level;
    char err[1024];
    if (!(s->set = load_set(s, err, sizeof err))) {
        slog(s, LOG_ERROR, "start.failed", "%s", err);
        goto done;
    }
    if (check) {
        printf("%s: configuration good; %zu rules, %zu playbooks%s\n", cpath,
               vsoc_ruleset_count(s->set->rules), vsoc_playbooks_count(s->set->playbooks),
               s->set->baseline ? ", a baseline" : "");
        rc = 0;
        goto done;
    }
    rc = 1;
    /* Before any thread starts: a SIGHUP (systemctl reload) during start-up must not end
     * the process, and the threads inherit the dispositions. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    s->nworkers = s->cfg->workers > 0 ? s->cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->nworkers < 1)
        s->nworkers = 1;
    if (s->nworkers > MAX_WORKERS)
        s->nworkers = MAX_WORKERS;
    if (!(s->fleet = vsoc_fleet_new()) ||
        !(s->w = calloc((size_t)s->nworkers, sizeof *s->w)) ||
        !(s->wepoch = calloc((size_t)s->nworkers, sizeof *s->wepoch))) {
        slog(s, LOG_ERROR, "start.failed", "out of memory");
        goto done;
    }
    /* Finer where the aim lies (10 ms at p99): Kafka timestamps are in milliseconds. */
    static const double lat_bounds[] = {0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015,
                                        0.02,  0.03,  0.05,  0.1,    0.25,  0.5,  1,
                                        2.5,   10};
    if (!(s->latency = vsoc_hist_new(lat_bounds, sizeof lat_bounds / sizeof *lat_bounds, err,
                                     sizeof err)) ||
        !(s->store_commit = vsoc_hist_new(vsoc_hist_latency_bounds, VSOC_HIST_LATENCY_NBOUNDS,
                                          err, sizeof err))) {
        slog(s, LOG_ERROR, "start.failed", "%s", err);
        goto done;
    }
    if (s->cfg->redis.url && s->cfg->redis.url[0]) {
        vsoc_redis_opts_t rop = {.url = s->cfg->redis.url, .prefix = s->cfg->redis.prefix,
                                 .timeout_ms = (int)(s->cfg->redis.timeout_us / 1000)};
        if (!(s->redis = vsoc_redis_new(&rop, err, sizeof err))) {
            slog(s, LOG_ERROR, "start.failed", "redis.url: %s", err);
            goto done;
        }
        /* Not fatal: the service runs on local state until Redis answers. */
        if (vsoc_redis_ping(s->redis) != 0)
            slog(s, LOG_WARN, "redis.down", "%s: running on local state until it answers",
                 vsoc_redis_errstr(s->redis));
        redis_state(s);
    }
    cli_response_opts_t ro = {.db = s->cfg->store.sqlite, .no_playbooks = !s->cfg->response.enabled,
                              .incident_gap_us = s->cfg->response.incident_gap_us,
                              .log_fn = response_log, .log_ctx = s,
                              .use_playbooks = s->set->playbooks, .prog = "vsoc serve",
                              .limits = s->redis ? shared_limits : NULL, .limits_ctx = s};
    /* With a commands topic this instance is the responder: it delivers the commands in
     * the store, new and open ones alike (docs/serve.md, commands). */
    int deliver = s->cfg->kafka.topics.commands[0] && s->cfg->response.enabled;
    if (deliver) {
        ro.send = send_command;
        ro.send_ctx = s;
        ro.keyfile = s->cfg->response.key;
        ro.vehicle_keys = s->cfg->response.vehicle_keys;
        ro.owns_commands = 1;
    }
    int code;
    if (deliver && s->cfg->store.sqlite[0] &&
        cli_responder_lock(s->cfg->store.sqlite, "vsoc serve", err, sizeof err) != 0) {
        slog(s, LOG_ERROR, "start.failed", "%s", err);
        goto done;
    }
    if (!(s->resp = cli_response_new(&ro, &code)))
        goto done;
    if (cli_response_store(s->resp) &&
        vsoc_store_each_offset(cli_response_store(s->resp), load_offset, s) != 0) {
        slog(s, LOG_ERROR, "start.failed", "%s", vsoc_store_errmsg(cli_response_store(s->resp)));
        goto done;
    }
    if (cli_response_store(s->resp) &&
        vsoc_store_get_service_state(cli_response_store(s->resp), "fleet", load_fleet, s) !=
            0 &&
        !s->failed) {
        slog(s, LOG_ERROR, "start.failed", "%s", vsoc_store_errmsg(cli_response_store(s->resp)));
        goto done;
    }
    if (s->failed)
        goto done;
    /* Every client gets the pass-through properties; client.id names this instance. */
    if (s->cfg->instance[0])
        snprintf(s->instance, sizeof s->instance, "%s", s->cfg->instance);
    else if (gethostname(s->instance, sizeof s->instance - 1) != 0)
        snprintf(s->instance, sizeof s->instance, "vsoc");
    const vsoc_confmap_map_t *props = &s->cfg->kafka.properties;
    char **kv = calloc(props->n + 3, sizeof *kv);
    size_t nkv = 0;
    int has_cid = 0, oom = !kv;
    for (size_t i = 0; kv && i < props->n; i++) {
        if (asprintf(&kv[nkv], "%s=%s", props->v[i].key, props->v[i].value) < 0) {
            oom = 1;
            break;
        }
        nkv++;
        if (!strcmp(props->v[i].key, "client.id"))
            has_cid = 1;
    }
    if (kv && !oom && !has_cid && asprintf(&kv[nkv], "client.id=vsoc-%s", s->instance) >= 0)
        nkv++;
    /* Incremental rebalances: only the partitions that move are revoked (and drained),
     * the others keep flowing. A setting in kafka.properties wins. */
    int has_strategy = 0;
    for (size_t i = 0; i < props->n; i++)
        has_strategy |= !strcmp(props->v[i].key, "partition.assignment.strategy");
    /* Alerts leave at once: librdkafka's default linger.ms (5 ms) would add to every
     * event-to-alert latency; alerts are few, so batching gains little. */
    int has_linger = 0;
    for (size_t i = 0; i < props->n; i++)
        has_linger |= !strcmp(props->v[i].key, "linger.ms") ||
                      !strcmp(props->v[i].key, "queue.buffering.max.ms");
    if (kv && !oom && !has_linger && (kv[nkv] = strdup("linger.ms=0")))
        nkv++;
    size_t nprod = nkv; /* the producer has no use for consumer settings */
    if (kv && !oom && !has_strategy &&
        (kv[nkv] = strdup("partition.assignment.strategy=cooperative-sticky")))
        nkv++;
    if (oom) {
        slog(s, LOG_ERROR, "start.failed", "out of memory");
        for (size_t i = 0; i < nkv; i++)
            free(kv[i]);
        free(kv);
        goto done;
    }
    vsoc_kafka_set_log(kafka_log, s);
    s->prod = vsoc_kafka_producer_new(s->cfg->kafka.brokers, (const char *const *)kv, nprod, err, sizeof err);
    if (s->prod)
        s->cons = vsoc_kafka_consumer_new(
            s->cfg->kafka.brokers, s->cfg->kafka.group,
            (const char *const *)s->cfg->kafka.topics.events.v, s->cfg->kafka.topics.events.n,
            (const char *const *)kv,
            nkv, err, sizeof err);
    /* Every instance reads every ack in a group of its own, and ignores acks for commands
     * it does not know. */
    char acks_group[600];
    int long_group = snprintf(acks_group, sizeof acks_group, "%s.acks.%s", s->cfg->kafka.group,
                              s->instance) >= (int)sizeof acks_group;
    const char *acks_topic = s->cfg->kafka.topics.acks;
    if (long_group)
        snprintf(err, sizeof err, "kafka.group and the instance name are too long together");
    if (s->prod && s->cons && deliver && !long_group)
        s->acks = vsoc_kafka_consumer_new(s->cfg->kafka.brokers, acks_group, &acks_topic, 1,
                                          (const char *const *)kv, nkv, err, sizeof err);
    if (s->prod && s->cons && deliver && !s->acks) {
        for (size_t i = 0; i < nkv; i++)
            free(kv[i]);
        free(kv);
        slog(s, LOG_ERROR, "start.failed", "kafka acks consumer: %s", err);
        goto done;
    }
    for (size_t i = 0; i < nkv; i++)
        free(kv[i]);
    free(kv);
    if (!s->prod || !s->cons) {
        slog(s, LOG_ERROR, "start.failed", "kafka: %s", err);
        goto done;
    }
    vsoc_kafka_consumer_on_rebalance(s->cons, on_assign, on_revoke, s);
    for (int i = 0; i < s->nworkers; i++) {
        s->w[i].topics = s->topics;
        if (serve_worker_start(&s->w[i], i, s->set, cli_now_ns, err, sizeof err) != 0) {
            slog(s, LOG_ERROR, "start.failed", "%s", err);
            s->nworkers = i; /* the started ones are stopped below */
            s->failed = 1;
            break;
        }
    }
    s->next_epoch = 1;
    for (int i = 0; i < s->nworkers; i++)
        s->wepoch[i] = 1;
    open_epoch(s);
    if (!s->failed && s->cfg->http.listen && s->cfg->http.listen[0]) {
        vsoc_http_handlers_t h = {.metrics = metrics, .ready = ready, .reload = http_reload,
                                  .ctx = s};
        s->http = vsoc_http_start(s->cfg->http.listen, &h, err, sizeof err);
        if (!s->http) {
            slog(s, LOG_ERROR, "start.failed", "http: %s", err);
            s->failed = 1;
        }
    }
    /* The bound address: with port 0 in http.listen, this is where to find it. */
    char http[300] = "off";
    if (s->http) {
        const char *hl = s->cfg->http.listen;
        const char *colon = strrchr(hl, ':');
        snprintf(http, sizeof http, "%.*s:%d", (int)(colon ? colon - hl : (long)strlen(hl)),
                 hl, vsoc_http_port(s->http));
    }
    if (!s->failed)
        slog(s, LOG_INFO, "start", "instance %s: %d worker%s, %zu rules, %zu playbooks, "
             "brokers %s, group %s, store %s, http %s", s->instance, s->nworkers,
             s->nworkers == 1 ? "" : "s", vsoc_ruleset_count(s->set->rules),
             vsoc_playbooks_count(s->set->playbooks), s->cfg->kafka.brokers,
             s->cfg->kafka.group, s->cfg->store.sqlite, http);
    if (!s->failed && s->acks)
        slog(s, LOG_INFO, "commands", "delivering commands to %s, acks from %s (group %s)",
             s->cfg->kafka.topics.commands, acks_topic, acks_group);
    else if (!s->failed && s->cfg->kafka.topics.commands[0])
        slog(s, LOG_WARN, "commands", "kafka.topics.commands is set but response.enabled is "
             "false: no playbook runs, so no commands to deliver");
    uint64_t interval_ns = (uint64_t)s->cfg->kafka.commit_interval_us * 1000ull;
    uint64_t last_lag_ns = 0;
    s->last_mark_ns = cli_now_ns();
    while (!got_term && !s->failed) {
        if (got_hup || atomic_exchange(&s->reload_req, 0)) {
            got_hup = 0;
            /* The requests made so far are answered by this load, which reads the files
             * after they were made; later ones get a load of their own. */
            pthread_mutex_lock(&s->mu);
            uint64_t covers = s->reload_seq;
            pthread_mutex_unlock(&s->mu);
            char msg[1024];
            int r = reload(s, msg, sizeof msg);
            pthread_mutex_lock(&s->mu);
            s->reload_done = covers;
            s->reload_rc = r;
            snprintf(s->reload_msg, sizeof s->reload_msg, "%s", msg);
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
        }
        /* Short polls while work is in flight keep alerts moving; longer ones when idle.
         * While too much waits for the broker (every epoch slot taken, or many alerts to
         * send again), nothing new is read: memory stays bounded while the broker is away. */
        int busy = s->npending > 1 || s->dispatched_since_mark || s->nretry;
        if (s->npending >= MAX_PENDING - 1 || s->nretry > 100000) {
            if (s->prod)
                vsoc_kafka_producer_poll(s->prod, 10, on_delivery, s);
        } else {
            int got = vsoc_kafka_poll(s->cons, busy ? 1 : 50, on_message, s, err, sizeof err);
            flush_all(s);
            if (got < 0)
                slog(s, LOG_WARN, "kafka.error", "%s", err);
        }
        turn(s);
        uint64_t now = cli_now_ns();
        deliver_turn(s, now);
        if (s->dispatched_since_mark && now - s->last_mark_ns >= interval_ns)
            mark(s);
        if (now - last_lag_ns > 1000000000ull) {
            last_lag_ns = now;
            /* A Redis that went away is tried again (within its backoff) even when no
             * hit needs it, so /metrics says when it is back. */
            if (s->redis && !vsoc_redis_up(s->redis)) {
                vsoc_redis_ping(s->redis);
                redis_state(s);
            }
            int64_t lag = vsoc_kafka_lag(s->cons);
            pthread_mutex_lock(&s->mu);
            s->lag = lag;
            s->assigned = vsoc_kafka_assigned(s->cons);
            if (vsoc_kafka_joined(s->cons))
                s->ready = 1; /* also with an empty assignment */
            pthread_mutex_unlock(&s->mu);
            if (s->prod && vsoc_kafka_producer_fatal(s->prod)) {
                slog(s, LOG_ERROR, "kafka.fatal", "the alerts producer failed for good: "
                     "stopping; what was not published is read again on restart");
                s->failed = 1;
            }
        }
    }
    pthread_mutex_lock(&s->mu);
    s->ready = 0;
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!s->failed) {
        slog(s, LOG_INFO, "stop", "draining: making what was read durable, then committing");
        if (barrier(s, 30000) == 0) {
            rc = 0;
        } else {
            slog(s, LOG_ERROR, "stop.uncommitted", "could not make everything durable within "
                 "30 s: the last messages will be read again on restart");
        }
    }
done:
    vsoc_kafka_consumer_free(s->acks); /* what it read was committed as it went */
    s->acks = NULL;
    if (s->cons) {
        /* Leaving the group revokes the partitions: on_revoke commits what is left. */
        vsoc_kafka_consumer_free(s->cons);
        s->cons = NULL;
    }
    /* No HTTP handler may read the workers once they are gone. */
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    vsoc_http_stop(s->http);
    s->http = NULL;
    for (int i = 0; i < s->nworkers; i++) {
        serve_in_t *slot;
        while (!(slot = cli_ring_claim(&s->w[i].in))) {
            cli_ring_flush(&s->w[i].in);
            turn(s);
        }
        slot->kind = SERVE_IN_STOP;
        slot->big = NULL;
        cli_ring_publish(&s->w[i].in);
    }
    for (int i = 0; i < s->nworkers; i++) {
        /* Outputs drained until the worker's STOP, so it never blocks on a full ring. */
        int stopped = 0;
        while (!stopped) {
            serve_out_t *o = cli_ring_peek(&s->w[i].out);
            if (!o) {
                struct timespec ts = {0, 100000};
                nanosleep(&ts, NULL);
                continue;
            }
            if (o->kind == SERVE_OUT_STOP)
                stopped = 1;
            else if (o->kind == SERVE_OUT_ALERT)
                free(o->json);
            else if (o->kind == SERVE_OUT_RELEASE)
                serve_set_unref(o->set);
            else if (o->kind == SERVE_OUT_MARK)
                serve_snap_free(o->snap);
            cli_ring_release(&s->w[i].out);
        }
        serve_worker_join(&s->w[i]);
    }
    if (s->prod) {
        vsoc_kafka_producer_flush(s->prod, 5000, on_delivery, s);
        vsoc_kafka_producer_free(s->prod);
    }
    if (s->resp) {
        /* A failed service leaves its last transaction uncommitted: the messages behind it
         * are read again on restart. */
        if (s->failed && cli_response_store(s->resp))
            vsoc_store_rollback(cli_response_store(s->resp));
        else if (cli_response_finish(s->resp) != 0)
            rc = 1;
        cli_response_free(s->resp);
    }
    if (s->failed)
        rc = 1;
    if (rc == 0 && !check)
        slog(s, LOG_INFO, "stopped", "offsets committed, store closed");
    vsoc_kafka_set_log(NULL, NULL); /* its context is this function's */
    vsoc_fleet_free(s->fleet);
    vsoc_redis_free(s->redis);
    serve_set_unref(s->set);
    free_serve(s);
    serve_config_free(s->cfg);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    return rc;
}
