/* vsoc_agent.c: the reference vehicle agent (docs/vsoc-agent.md).
 *
 * `vsoc-agent run` connects out to the SOC's MQTT broker over TLS with the vehicle's client
 * certificate, takes signed commands from vehicles/<vin>/commands, judges and applies them
 * with agent_core (a model of the gateway's filter table and feature flags) and publishes
 * signed acks on vehicles/<vin>/acks. It never listens. `vsoc-agent status` prints the
 * persisted state, `vsoc-agent verify` judges one envelope offline and `vsoc-agent
 * verify-ack` checks an ack's signature.
 *
 * Unlike engine/, the agent may read the wall clock: it is the vehicle's clock for `run`
 * and the default for --now. */
#include "ack.h"
#include "agent_core.h"
#include "envelope.h"
#include "envelope_internal.h"
#include "mqtt/mqtt.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_REJECTED 1
#define EXIT_USAGE 2
#define MAX_KEYS 16

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc-agent run --vin VIN --broker HOST[:PORT] --cafile FILE --cert FILE\n"
            "                      --key FILE --trust PUB [--trust PUB ...] --signing-key FILE\n"
            "                      --state-dir DIR [--speed-file FILE] [--once-idle SECONDS]\n"
            "       vsoc-agent status --state-dir DIR\n"
            "       vsoc-agent handle --vin VIN --trust PUB [--trust PUB ...] --signing-key FILE\n"
            "                         --state-dir DIR [--speed KPH] [--now TIME] [FILE|-]\n"
            "       vsoc-agent verify --pubkey FILE [--pubkey FILE ...] [--vin VIN]\n"
            "                         [--now TIME] [--last-seq N] ENVELOPE.json\n"
            "       vsoc-agent verify-ack --pubkey FILE [--pubkey FILE ...] [--vin VIN] ACK.json\n"
            "       vsoc-agent --help\n"
            "\n"
            "run: the vehicle agent. Connects out over MQTT with TLS (client certificate\n"
            "--cert/--key, broker checked against --cafile; port 8883 by default), takes\n"
            "commands from vehicles/VIN/commands, verifies them against the SOC keys given\n"
            "with --trust (key id = file name without extension), applies them to its model\n"
            "of the gateway, and publishes acks signed with --signing-key (the vehicle's\n"
            "private Ed25519 key) on vehicles/VIN/acks. State (last seq, answered commands,\n"
            "deferred commands, active quarantines) lives in --state-dir. --speed-file holds\n"
            "the current speed in kph (re-read every second; missing: unknown) for commands\n"
            "gated on vehicle_state. --once-idle exits 0 after that many seconds without a\n"
            "message. One line per command goes to stderr. SIGTERM or SIGINT stops it.\n"
            "\n"
            "status: prints the persisted state of --state-dir as one JSON object.\n"
            "\n"
            "handle: the agent without a network, for a vehicle reached through a\n"
            "connectivity platform that relays messages itself: reads envelopes one per line\n"
            "(FILE or stdin), judges and applies each like run (same --state-dir), and\n"
            "prints each ack, one per line, on stdout. --speed is the vehicle's speed (kph;\n"
            "default unknown), --now its clock (default the current time).\n"
            "\n"
            "verify-ack: checks an ack's signature against the vehicle's public key(s) and,\n"
            "with --vin, its VIN. Prints \"valid: STATUS\" (with the reason in parentheses)\n"
            "or \"invalid: REASON\" (malformed, unknown_key, bad_signature, wrong_vin).\n"
            "\n"
            "verify: judges a signed command envelope as the vehicle would, in this order:\n"
            "key id among the trusted keys, signature, VIN, expiry, seq (replay), action.\n"
            "Prints \"accepted\" or \"rejected: <reason>\" with reason one of malformed,\n"
            "unknown_key, bad_signature, wrong_vin, expired, replayed, unknown_action\n"
            "(a malformed envelope's details go to stderr). '-' reads stdin.\n"
            "\n"
            "options:\n"
            "  --pubkey FILE   a trusted public key (PEM); its key id is the file name\n"
            "                  without extension (keys/vsoc-2026-01.pub: vsoc-2026-01).\n"
            "                  Repeat to trust several keys (rotation), up to %d\n"
            "  --vin VIN       this vehicle's VIN (default: the VIN is not checked)\n"
            "  --now TIME      judge expiry at TIME: YYYY-MM-DDTHH:MM:SSZ or epoch seconds\n"
            "                  (default: the current time)\n"
            "  --last-seq N    the last seq this vehicle accepted (default 0)\n"
            "  -h, --help      this help\n"
            "\n"
            "exit status: 0 accepted (valid; run: stopped by a signal or --once-idle),\n"
            "1 rejected (invalid; run: cannot connect or subscribe), 2 usage errors or\n"
            "unreadable files.\n",
            MAX_KEYS);
}

/* The value of option name: "--name=v" or the next argument. */
static const char *value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 >= argc) {
        fprintf(stderr, "vsoc-agent: %s needs a value\n", name);
        return NULL;
    }
    return argv[++*i];
}

static int is_opt(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == 0 || arg[n] == '=');
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

/* Reads a whole file (or stdin for "-"), at most VSOC_ENVELOPE_MAX + 1 bytes: more is
 * rejected by the parser anyway. */
static char *read_all(const char *path, size_t *n)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "vsoc-agent: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(VSOC_ENVELOPE_MAX + 2);
    if (!buf) {
        fprintf(stderr, "vsoc-agent: out of memory\n");
    } else {
        *n = fread(buf, 1, VSOC_ENVELOPE_MAX + 1, f);
        if (ferror(f)) {
            fprintf(stderr, "vsoc-agent: %s: %s\n", path, strerror(errno));
            free(buf);
            buf = NULL;
        }
    }
    if (f != stdin)
        fclose(f);
    return buf;
}

/* ---- verify, verify-ack -------------------------------------------------------------- */

/* What verify and verify-ack are given: the same options (verify also takes --now and
 * --last-seq) and one input file. */
typedef struct verify_in {
    int is_ack;
    const char *pubs[MAX_KEYS], *vin, *file;
    size_t npub;
    int64_t now;
    uint64_t last_seq;
    vsoc_key_t *keys[MAX_KEYS];
    char *buf; /* the input file */
    size_t n;
} verify_in_t;

/* Parses the command line into in. Returns -1 to go on, else the exit status (after --help
 * or a usage error). */
static int verify_args(int argc, char **argv, verify_in_t *in)
{
    const char *cmd = in->is_ack ? "verify-ack" : "verify";
    const char *what = in->is_ack ? "ack" : "envelope";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (is_opt(a, "--pubkey")) {
            if (!(v = value(argc, argv, &i, "--pubkey")))
                return EXIT_USAGE;
            if (in->npub == MAX_KEYS) {
                fprintf(stderr, "vsoc-agent: more than %d --pubkey\n", MAX_KEYS);
                return EXIT_USAGE;
            }
            in->pubs[in->npub++] = v;
        } else if (is_opt(a, "--vin")) {
            if (!(in->vin = value(argc, argv, &i, "--vin")))
                return EXIT_USAGE;
        } else if (!in->is_ack && is_opt(a, "--now")) {
            if (!(v = value(argc, argv, &i, "--now")))
                return EXIT_USAGE;
            if (vsoc_envelope_time_arg(v, &in->now) != 0) {
                fprintf(stderr, "vsoc-agent: --now: \"%s\" is neither YYYY-MM-DDTHH:MM:SSZ "
                                "nor epoch seconds\n", v);
                return EXIT_USAGE;
            }
        } else if (!in->is_ack && is_opt(a, "--last-seq")) {
            if (!(v = value(argc, argv, &i, "--last-seq")))
                return EXIT_USAGE;
            if (parse_u64(v, &in->last_seq) != 0) {
                fprintf(stderr, "vsoc-agent: --last-seq: \"%s\" is not a number\n", v);
                return EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vsoc-agent: unknown option %s (see vsoc-agent --help)\n", a);
            return EXIT_USAGE;
        } else if (in->file) {
            fprintf(stderr, "vsoc-agent: one %s at a time (%s, %s)\n", what, in->file, a);
            return EXIT_USAGE;
        } else {
            in->file = a;
        }
    }
    if (!in->npub || !in->file) {
        if (in->npub)
            fprintf(stderr, "vsoc-agent: %s needs an %s file (see vsoc-agent --help)\n", cmd,
                    what);
        else
            fprintf(stderr, "vsoc-agent: %s needs at least one --pubkey (see vsoc-agent "
                            "--help)\n", cmd);
        return EXIT_USAGE;
    }
    return -1;
}

/* Loads the keys, then the input file. Returns 0, or -1 with the reason on stderr. */
static int verify_load(verify_in_t *in)
{
    for (size_t i = 0; i < in->npub; i++) {
        char err[512];
        if (!(in->keys[i] = vsoc_key_load_public(in->pubs[i], NULL, err, sizeof err))) {
            fprintf(stderr, "vsoc-agent: %s\n", err);
            return -1;
        }
    }
    return (in->buf = read_all(in->file, &in->n)) ? 0 : -1;
}

/* A text that does not parse: the details to stderr, the verdict to stdout. */
static int malformed(const verify_in_t *in, const char *reason, const char *verdict)
{
    fprintf(stderr, "vsoc-agent: %s: %s\n", in->file, reason);
    printf("%s: %s\n", verdict, vsoc_envelope_reason_name(VSOC_ENVELOPE_MALFORMED));
    return EXIT_REJECTED;
}

static int judge_envelope(const verify_in_t *in)
{
    static vsoc_envelope_t e;
    char reason[256];
    if (vsoc_envelope_parse(in->buf, in->n, &e, reason, sizeof reason) != 0)
        return malformed(in, reason, "rejected");
    vsoc_envelope_check_t chk = {.vin = in->vin, .now = in->now, .last_seq = in->last_seq};
    vsoc_envelope_reason_t r =
        vsoc_envelope_verify(&e, (const vsoc_key_t *const *)in->keys, in->npub, &chk);
    if (r != VSOC_ENVELOPE_OK) {
        printf("rejected: %s\n", vsoc_envelope_reason_name(r));
        return EXIT_REJECTED;
    }
    printf("accepted\n");
    return 0;
}

static int judge_ack(const verify_in_t *in)
{
    vsoc_ack_t ack;
    char reason[256];
    size_t n = in->n;
    /* mosquitto_sub and files written by hand end in a newline; it is not part of the ack. */
    while (n > 0 && (in->buf[n - 1] == '\n' || in->buf[n - 1] == '\r'))
        n--;
    if (vsoc_ack_parse(in->buf, n, &ack, reason, sizeof reason) != 0)
        return malformed(in, reason, "invalid");
    vsoc_envelope_reason_t r =
        vsoc_ack_verify(&ack, (const vsoc_key_t *const *)in->keys, in->npub, in->vin);
    if (r != VSOC_ENVELOPE_OK) {
        printf("invalid: %s\n", vsoc_envelope_reason_name(r));
        return EXIT_REJECTED;
    }
    if (ack.reason[0])
        printf("valid: %s (%s)\n", vsoc_ack_status_name(ack.status), ack.reason);
    else
        printf("valid: %s\n", vsoc_ack_status_name(ack.status));
    return 0;
}

/* verify (is_ack 0) and verify-ack (is_ack 1). */
static int cmd_verify(int argc, char **argv, int is_ack)
{
    verify_in_t in = {.is_ack = is_ack, .now = (int64_t)time(NULL)};
    int rc = verify_args(argc, argv, &in);
    if (rc < 0 && verify_load(&in) != 0)
        rc = EXIT_USAGE;
    else if (rc < 0)
        rc = is_ack ? judge_ack(&in) : judge_envelope(&in);
    free(in.buf);
    for (size_t i = 0; i < in.npub; i++)
        vsoc_key_free(in.keys[i]);
    return rc;
}

/* ---- status -------------------------------------------------------------------------- */

static int cmd_status(int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (is_opt(a, "--state-dir")) {
            if (!(dir = value(argc, argv, &i, "--state-dir")))
                return EXIT_USAGE;
        } else {
            fprintf(stderr, "vsoc-agent: status: unexpected %s (see vsoc-agent --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (!dir) {
        fprintf(stderr, "vsoc-agent: status needs --state-dir\n");
        return EXIT_USAGE;
    }
    /* Opening a state directory creates it; a mistyped path must not show an empty state. */
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/state.json", dir);
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "vsoc-agent: %s: %s (no agent state in %s)\n", path, strerror(errno),
                dir);
        return EXIT_USAGE;
    }
    char err[512];
    vsoc_vagent_opts_t o = {.state_dir = dir};
    vsoc_vagent_t *a = vsoc_vagent_new(&o, err, sizeof err);
    if (!a) {
        fprintf(stderr, "vsoc-agent: %s\n", err);
        return EXIT_USAGE;
    }
    char *j = vsoc_vagent_status_json(a);
    vsoc_vagent_free(a);
    if (!j) {
        fprintf(stderr, "vsoc-agent: out of memory\n");
        return EXIT_USAGE;
    }
    printf("%s\n", j);
    free(j);
    return 0;
}

/* ---- run ----------------------------------------------------------------------------- */

#define NAMES_MAX 64     /* recent cmd_id -> action, for the log line */
#define SENT_MAX 1024    /* recent ack signatures, to log resent answers as such */
#define TICK_MS 1000

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

typedef struct run_ctx {
    vsoc_mqtt_t *mq;
    vsoc_vagent_t *agent;
    vsoc_vagent_state_t st;  /* the clock and the speed, refreshed by the main loop */
    const char *vin;
    char cmd_topic[128];
    char ack_topic[128];
    long long last_msg_ms;
    struct {
        char cmd_id[40];
        char action[32];
    } names[NAMES_MAX];
    size_t next_name;
    int in_handle;           /* inside vsoc_vagent_handle for a message received at... */
    int64_t handle_now;      /* ...this time */
    char sent[SENT_MAX][VSOC_ENVELOPE_SIG_LEN + 1]; /* signatures of acks sent lately */
    size_t next_sent;
} run_ctx_t;

__attribute__((format(printf, 1, 2)))
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vsoc-agent: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Remembers which action a cmd_id is, for the log line of its later acks. */
static void note_action(run_ctx_t *c, const char *buf, size_t n)
{
    static vsoc_envelope_t e;
    if (vsoc_envelope_parse(buf, n, &e, NULL, 0) != 0)
        return;
    size_t i = c->next_name++ % NAMES_MAX;
    snprintf(c->names[i].cmd_id, sizeof c->names[i].cmd_id, "%.36s", e.cmd_id);
    snprintf(c->names[i].action, sizeof c->names[i].action, "%.31s", e.action);
}

/* A message from the broker (called by vsoc_mqtt_loop, outside libmosquitto's callbacks:
 * the agent's acks may be published from here). */
static void run_on_message(void *ctx, const char *topic, const void *payload, size_t n)
{
    run_ctx_t *c = ctx;
    c->last_msg_ms = mono_ms();
    if (strcmp(topic, c->cmd_topic) != 0) {
        logf_("a message on %s ignored: not this vehicle's command topic", topic);
        return;
    }
    c->st.now = (int64_t)time(NULL);
    note_action(c, payload, n);
    c->in_handle = 1;
    c->handle_now = c->st.now;
    int r = vsoc_vagent_handle(c->agent, payload, n, &c->st);
    c->in_handle = 0;
    if (r == VSOC_EPARSE)
        logf_("a %zu-byte message on %s is not a command for %s; ignored", n, topic, c->vin);
    else if (r < 0)
        logf_("handling a command failed: %s (its ack waits for the next write)",
              vsoc_strerror(r));
}

static const char *action_of(const run_ctx_t *c, const vsoc_ack_t *ack)
{
    for (size_t i = 0; i < NAMES_MAX; i++)
        if (!strcmp(c->names[i].cmd_id, ack->cmd_id))
            return c->names[i].action;
    return ack->status == VSOC_ACK_RELEASED ? "quarantine" : "command";
}

static void run_on_ack(void *ctx, const vsoc_ack_t *ack, const char *json, size_t n)
{
    run_ctx_t *c = ctx;
    /* A stored answer sent again for a resent command keeps its first time and signature;
     * it is logged apart so that the log counts each application once. */
    int again = c->in_handle && ack->at < c->handle_now;
    for (size_t i = 0; i < SENT_MAX && !again; i++)
        again = strcmp(c->sent[i], ack->sig) == 0;
    if (again) {
        logf_("cmd %s seq %llu %s: answered again (%s%s%s)", ack->cmd_id,
              (unsigned long long)ack->seq, action_of(c, ack),
              vsoc_ack_status_name(ack->status), ack->reason[0] ? ": " : "", ack->reason);
    } else {
        logf_("cmd %s seq %llu %s: %s%s%s", ack->cmd_id, (unsigned long long)ack->seq,
              action_of(c, ack), vsoc_ack_status_name(ack->status),
              ack->reason[0] ? ": " : "", ack->reason);
        snprintf(c->sent[c->next_sent++ % SENT_MAX], sizeof c->sent[0], "%.88s", ack->sig);
    }
    char err[512];
    if (vsoc_mqtt_publish(c->mq, c->ack_topic, json, n, 5000, err, sizeof err) != 0)
        logf_("ack for %s not confirmed by the broker: %s", ack->cmd_id, err);
}

/* The current speed from the speed file: a number of kph; missing or unreadable: unknown. */
static void read_speed(const char *path, vsoc_vagent_state_t *st, int *warned)
{
    st->speed_known = 0;
    if (!path)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char buf[64];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    while (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')
        end++;
    if (end == buf || *end || errno || v != v || v < 0) {
        if (!*warned)
            logf_("%s: \"%.20s\" is not a speed in kph; speed unknown", path, buf);
        *warned = 1;
        return;
    }
    *warned = 0;
    st->speed_known = 1;
    st->speed_kph = v;
}

/* --trust FILE at argv[*i], added to trust[MAX_KEYS]. Returns 0, or -1 after printing. */
static int add_trust(int argc, char **argv, int *i, const char **trust, size_t *ntrust)
{
    const char *v = value(argc, argv, i, "--trust");
    if (!v)
        return -1;
    if (*ntrust == MAX_KEYS) {
        fprintf(stderr, "vsoc-agent: more than %d --trust\n", MAX_KEYS);
        return -1;
    }
    trust[(*ntrust)++] = v;
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    const char *vin = NULL, *broker = NULL, *cafile = NULL, *cert = NULL, *key = NULL;
    const char *signing = NULL, *state_dir = NULL, *speed_file = NULL, *trust[MAX_KEYS];
    size_t ntrust = 0;
    long long once_idle = 0;
    /* The options that take one string each. */
    const struct {
        const char *name;
        const char **dst;
    } str_opts[] = {
        {"--vin", &vin}, {"--broker", &broker}, {"--cafile", &cafile}, {"--cert", &cert},
        {"--key", &key}, {"--signing-key", &signing}, {"--state-dir", &state_dir},
        {"--speed-file", &speed_file},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        size_t k = 0;
        while (k < sizeof str_opts / sizeof str_opts[0] && !is_opt(a, str_opts[k].name))
            k++;
        if (k < sizeof str_opts / sizeof str_opts[0]) {
            if (!(*str_opts[k].dst = value(argc, argv, &i, str_opts[k].name)))
                return EXIT_USAGE;
            continue;
        }
        if (is_opt(a, "--trust")) {
            if (add_trust(argc, argv, &i, trust, &ntrust) != 0)
                return EXIT_USAGE;
        } else if (is_opt(a, "--once-idle")) {
            uint64_t s;
            if (!(v = value(argc, argv, &i, "--once-idle")))
                return EXIT_USAGE;
            if (parse_u64(v, &s) != 0 || s == 0 || s > 86400) {
                fprintf(stderr, "vsoc-agent: --once-idle: \"%s\" is not 1..86400 seconds\n", v);
                return EXIT_USAGE;
            }
            once_idle = (long long)s;
        } else {
            fprintf(stderr, "vsoc-agent: run: unexpected %s (see vsoc-agent --help)\n", a);
            return EXIT_USAGE;
        }
    }
    const char *missing = !vin ? "--vin" : !broker ? "--broker" : !cafile ? "--cafile"
                        : !cert ? "--cert" : !key ? "--key" : !ntrust ? "--trust"
                        : !signing ? "--signing-key" : !state_dir ? "--state-dir" : NULL;
    if (missing) {
        fprintf(stderr, "vsoc-agent: run needs %s (see vsoc-agent --help)\n", missing);
        return EXIT_USAGE;
    }
    char host[256];
    int port = 8883;
    const char *colon = strrchr(broker, ':');
    if (colon && strchr(broker, ':') == colon) {
        uint64_t p;
        if (parse_u64(colon + 1, &p) != 0 || p == 0 || p > 65535) {
            fprintf(stderr, "vsoc-agent: --broker: bad port in \"%s\"\n", broker);
            return EXIT_USAGE;
        }
        port = (int)p;
        snprintf(host, sizeof host, "%.*s", (int)(colon - broker), broker);
    } else {
        snprintf(host, sizeof host, "%s", broker);
    }

    /* Unreadable TLS files are a configuration error, not a reason to retry. */
    const char *tls_files[] = {cafile, cert, key};
    for (size_t i = 0; i < 3; i++) {
        if (access(tls_files[i], R_OK) != 0) {
            fprintf(stderr, "vsoc-agent: %s: %s\n", tls_files[i], strerror(errno));
            return EXIT_USAGE;
        }
    }
    int rc = EXIT_USAGE;
    char err[512];
    vsoc_key_t *keys[MAX_KEYS] = {0}, *own = NULL;
    static run_ctx_t c; /* one per process */
    memset(&c, 0, sizeof c);
    c.vin = vin;
    for (size_t i = 0; i < ntrust; i++) {
        if (!(keys[i] = vsoc_key_load_public(trust[i], NULL, err, sizeof err))) {
            fprintf(stderr, "vsoc-agent: %s\n", err);
            goto done;
        }
    }
    if (!(own = vsoc_key_load_private(signing, NULL, err, sizeof err))) {
        fprintf(stderr, "vsoc-agent: %s\n", err);
        goto done;
    }
    snprintf(c.ack_topic, sizeof c.ack_topic, "vehicles/%s/acks", vin);
    snprintf(c.cmd_topic, sizeof c.cmd_topic, "vehicles/%s/commands", vin);
    vsoc_vagent_opts_t ao = {
        .vin = vin, .trusted = (const vsoc_key_t *const *)keys, .ntrusted = ntrust,
        .key = own, .state_dir = state_dir, .on_ack = run_on_ack, .ctx = &c,
    };
    if (!(c.agent = vsoc_vagent_new(&ao, err, sizeof err))) {
        fprintf(stderr, "vsoc-agent: %s\n", err);
        goto done;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the network wait returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The broker keeps the session (clean_session 0): commands sent while the vehicle is
     * offline wait for it. */
    vsoc_mqtt_opts_t mo = {
        .host = host, .port = port, .client_id = vin, .cafile = cafile, .certfile = cert,
        .keyfile = key, .clean_session = 0, .on_message = run_on_message, .ctx = &c,
    };
    int backoff_ms = 500;
    while (!stop_signal && !(c.mq = vsoc_mqtt_connect(&mo, 10000, err, sizeof err))) {
        logf_("%s; retrying in %d ms", err, backoff_ms);
        struct timespec ts = {backoff_ms / 1000, (long)(backoff_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        backoff_ms = backoff_ms * 2 > 30000 ? 30000 : backoff_ms * 2;
    }
    if (!c.mq) {
        rc = 0;
        goto done;
    }
    if (vsoc_mqtt_subscribe(c.mq, c.cmd_topic, 10000, err, sizeof err) != 0) {
        fprintf(stderr, "vsoc-agent: %s\n", err);
        rc = EXIT_REJECTED;
        goto done;
    }
    logf_("%s connected to %s:%d, waiting for commands on %s (last seq %llu)", vin, host,
          port, c.cmd_topic, (unsigned long long)vsoc_vagent_last_seq(c.agent));

    int warned = 0;
    char last_err[512] = "";
    read_speed(speed_file, &c.st, &warned);
    long long next_tick = mono_ms();
    c.last_msg_ms = mono_ms();
    while (!stop_signal) {
        /* Messages are handled inside this call (run_on_message). */
        if (vsoc_mqtt_loop(c.mq, 200, err, sizeof err) != 0) {
            if (strcmp(err, last_err) != 0) /* one line per change, not per retry */
                logf_("%s", err);
            snprintf(last_err, sizeof last_err, "%s", err);
        } else if (last_err[0]) {
            logf_("reconnected");
            last_err[0] = 0;
        }
        long long t = mono_ms();
        if (t >= next_tick) {
            next_tick = t + TICK_MS;
            read_speed(speed_file, &c.st, &warned);
            c.st.now = (int64_t)time(NULL);
            int r = vsoc_vagent_tick(c.agent, &c.st);
            if (r < 0)
                logf_("tick failed: %s", vsoc_strerror(r));
        }
        if (once_idle && t - c.last_msg_ms >= once_idle * 1000) {
            logf_("idle for %lld s; exiting", once_idle);
            break;
        }
    }
    if (stop_signal)
        logf_("stopping on signal %d", (int)stop_signal);
    rc = 0;
done:
    vsoc_mqtt_free(c.mq);
    c.mq = NULL;
    vsoc_vagent_free(c.agent);
    vsoc_key_free(own);
    for (size_t i = 0; i < ntrust; i++)
        vsoc_key_free(keys[i]);
    return rc;
}

static void handle_on_ack(void *ctx, const vsoc_ack_t *ack, const char *json, size_t n)
{
    (void)ctx;
    (void)ack;
    fwrite(json, 1, n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static int cmd_handle(int argc, char **argv)
{
    const char *vin = NULL, *signing = NULL, *state_dir = NULL, *file = "-", *trust[MAX_KEYS];
    size_t ntrust = 0;
    vsoc_vagent_state_t st = {.now = (int64_t)time(NULL)};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (is_opt(a, "--vin")) {
            if (!(vin = value(argc, argv, &i, "--vin")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--signing-key")) {
            if (!(signing = value(argc, argv, &i, "--signing-key")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--state-dir")) {
            if (!(state_dir = value(argc, argv, &i, "--state-dir")))
                return EXIT_USAGE;
        } else if (is_opt(a, "--trust")) {
            if (add_trust(argc, argv, &i, trust, &ntrust) != 0)
                return EXIT_USAGE;
        } else if (is_opt(a, "--speed")) {
            char *end;
            if (!(v = value(argc, argv, &i, "--speed")))
                return EXIT_USAGE;
            st.speed_kph = strtod(v, &end);
            if (*end || end == v || st.speed_kph < 0) {
                fprintf(stderr, "vsoc-agent: --speed: \"%s\" is not a speed in kph\n", v);
                return EXIT_USAGE;
            }
            st.speed_known = 1;
        } else if (is_opt(a, "--now")) {
            if (!(v = value(argc, argv, &i, "--now")))
                return EXIT_USAGE;
            if (vsoc_envelope_time_arg(v, &st.now) != 0) {
                fprintf(stderr, "vsoc-agent: --now: \"%s\" is neither YYYY-MM-DDTHH:MM:SSZ "
                                "nor epoch seconds\n", v);
                return EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vsoc-agent: handle: unexpected %s (see vsoc-agent --help)\n", a);
            return EXIT_USAGE;
        } else {
            file = a;
        }
    }
    const char *missing = !vin ? "--vin" : !ntrust ? "--trust" : !signing ? "--signing-key"
                        : !state_dir ? "--state-dir" : NULL;
    if (missing) {
        fprintf(stderr, "vsoc-agent: handle needs %s (see vsoc-agent --help)\n", missing);
        return EXIT_USAGE;
    }
    char err[512];
    vsoc_key_t *keys[MAX_KEYS] = {0}, *own = NULL;
    vsoc_vagent_t *agent = NULL;
    FILE *in = NULL;
    char *line = NULL;
    size_t cap = 0;
    int rc = EXIT_USAGE;
    for (size_t i = 0; i < ntrust; i++)
        if (!(keys[i] = vsoc_key_load_public(trust[i], NULL, err, sizeof err))) {
            fprintf(stderr, "vsoc-agent: %s\n", err);
            goto done;
        }
    if (!(own = vsoc_key_load_private(signing, NULL, err, sizeof err))) {
        fprintf(stderr, "vsoc-agent: %s\n", err);
        goto done;
    }
    vsoc_vagent_opts_t ao = {.vin = vin, .trusted = (const vsoc_key_t *const *)keys,
                             .ntrusted = ntrust, .key = own, .state_dir = state_dir,
                             .on_ack = handle_on_ack};
    if (!(agent = vsoc_vagent_new(&ao, err, sizeof err))) {
        fprintf(stderr, "vsoc-agent: %s\n", err);
        goto done;
    }
    in = strcmp(file, "-") ? fopen(file, "r") : stdin;
    if (!in) {
        fprintf(stderr, "vsoc-agent: %s: %s\n", file, strerror(errno));
        goto done;
    }
    rc = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0)
            continue;
        int st_rc = vsoc_vagent_handle(agent, line, (size_t)n, &st);
        if (st_rc == VSOC_EPARSE)
            fprintf(stderr, "vsoc-agent: a line that is not an envelope for %s was ignored\n",
                    vin);
        else if (st_rc < 0) {
            fprintf(stderr, "vsoc-agent: %s\n", vsoc_strerror(st_rc));
            rc = 1;
        }
    }
    if (vsoc_vagent_tick(agent, &st) != 0)
        rc = 1;
done:
    free(line);
    if (in && in != stdin)
        fclose(in);
    vsoc_vagent_free(agent);
    vsoc_key_free(own);
    for (size_t i = 0; i < ntrust; i++)
        vsoc_key_free(keys[i]);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "verify"))
        return cmd_verify(argc - 1, argv + 1, 0);
    if (!strcmp(argv[1], "verify-ack"))
        return cmd_verify(argc - 1, argv + 1, 1);
    if (!strcmp(argv[1], "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "status"))
        return cmd_status(argc - 1, argv + 1);
    if (!strcmp(argv[1], "handle"))
        return cmd_handle(argc - 1, argv + 1);
    fprintf(stderr, "vsoc-agent: unknown command \"%s\" (see vsoc-agent --help)\n", argv[1]);
    return EXIT_USAGE;
}
