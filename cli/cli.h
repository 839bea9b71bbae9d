/* cli.h: what the vsoc subcommands share: rule loading with the default pack, a monotonic
 * clock for the summary, and usage helpers. */
#ifndef VSOC_CLI_H
#define VSOC_CLI_H

#include "diag.h"
#include "rule.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE 2

int cmd_replay(int argc, char **argv);
int cmd_rules(int argc, char **argv);
int cmd_baseline(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_playbooks(int argc, char **argv);
int cmd_incidents(int argc, char **argv);
int cmd_commands(int argc, char **argv);
int cmd_respond(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* What `vsoc respond` runs, also run by `vsoc serve` on a thread of its own when it hands
 * commands to a Kafka topic (docs/vsoc-respond.md). Strings are borrowed for the call. */
typedef struct cli_respond_opts {
    const char *db, *keyfile, *keydir;               /* required */
    const char *mqtt, *cafile, *cert, *certkey, *client_id; /* MQTT over TLS, or */
    const char *kafka, *commands_topic, *acks_topic, *group; /* Kafka */
    const char *const *kset;                         /* librdkafka "key=value" settings */
    size_t nkset;
    const char *const *playbooks;                    /* none: the default playbooks */
    size_t nplaybooks;
    int64_t poll_us, max_us;                         /* 0: 1 s, no limit */
    int idle_exit, quiet;
    volatile sig_atomic_t *stop;                     /* set non-zero to stop */
    /* Log lines ("error" for failures); NULL: human lines on stderr. */
    void (*log)(void *ctx, const char *event, const char *text);
    void *log_ctx;
} cli_respond_opts_t;

/* Runs until *o->stop, idle (idle_exit) or max_us. Returns the exit status: 0 stopped,
 * 1 a store, key or transport error, 2 playbook errors. */
int cli_respond_run(const cli_respond_opts_t *o);

/* The default rule pack's directory: $VSOC_RULES, else the pack installed beside the
 * binary (../share/vsoc/rules), else the source tree's rules/. */
const char *cli_default_rules(void);
/* The same for the default playbooks ($VSOC_PLAYBOOKS, ../share/vsoc/playbooks, the source
 * tree's playbooks/). */
const char *cli_default_playbooks(void);

/* Loads rules from paths (the default pack when n is 0). Prints errors (and warnings when
 * show_warnings) to stderr. Returns the ruleset, or NULL when any rule failed to compile. */
vsoc_ruleset_t *cli_load_rules(const char *const *paths, size_t n, int show_warnings);

/* Rule loading that checks test events with the capture readers. */
extern const vsoc_rule_load_opts_t cli_rule_load_opts;

uint64_t cli_now_ns(void);

/* us (epoch microseconds) as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf (at least 32 bytes). */
void cli_fmt_time(int64_t us, char *buf, size_t n);

/* Malformed-line reporting for commands that read captures: the first max_errors lines are
 * printed as "file:line: reason", the rest only counted. */
typedef struct cli_bad {
    uint64_t lines;
    long max_errors;
} cli_bad_t;
void cli_on_bad(void *ctx, const char *file, uint64_t lineno, const char *reason);
/* Prints "... and N more malformed lines" when some were not printed. */
void cli_bad_summary(const cli_bad_t *b);

/* The value of option name at argv[*i]: inline_val ("--opt=v") or the next argument
 * (advancing *i). Returns NULL after printing "prog: name needs a value". */
const char *cli_value(int argc, char **argv, int *i, const char *inline_val, const char *prog,
                      const char *name);

/* Returns 1 when a and b are the same option ("--rules" and "--rules=..." both match). */
int cli_opt(const char *arg, const char *name, const char **inline_val);

#endif
