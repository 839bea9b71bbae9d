/* cli_store.h: what the commands that use a store share: their options (--db, --state,
 * --vin, --json...) and usage messages, opening the store with the CLI's messages, ending a
 * listing, printing JSON lines, the responder's on_change that writes to the store, giving a
 * responder or an incident grouper back what the store kept, and the wall clock that stamps
 * people's actions. */
#ifndef VSOC_CLI_STORE_H
#define VSOC_CLI_STORE_H

#include "incident.h"
#include "respond.h"
#include "store/store.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

/* Opens path (must_exist: refuse to create it, for commands that only read or change an
 * existing store). Prints "vsoc: <message>" to stderr and returns NULL on failure. */
vsoc_store_t *cli_store_open(const char *path, int must_exist);

/* Options of the commands that read a store (vsoc incidents, commands, audit); which of them
 * a subcommand accepts is a mask of CLI_O_* (--db is always accepted, and required). */
enum {
    CLI_O_STATE = 1, CLI_O_VIN = 2, CLI_O_JSON = 4, CLI_O_BY = 8, CLI_O_WHY = 16, CLI_O_ID = 32,
    CLI_O_PLAYBOOKS = 64, CLI_O_HEAD = 128
};

/* The parsed options: pointers into argv, NULL when not given. */
typedef struct cli_store_opts {
    const char *db, *state, *vin, *by, *why, *id, *playbooks, *head;
    int json;
} cli_store_opts_t;

/* What a command says in the messages its subcommands share. */
typedef struct cli_store_cmd {
    const char *name;  /* "vsoc commands", as in "(see vsoc commands --help)" */
    const char *noun;  /* "command", as in "which command? give its ID" (with CLI_O_ID) */
    const char *by_to; /* "say who decides", after "--by NAME is required: " (CLI_O_BY) */
    void (*usage)(FILE *out);
    /* Checks the values once parsed, or NULL. Returns -1 to go on, else the exit status
     * after printing why. */
    int (*check)(const char *prog, const cli_store_opts_t *o);
} cli_store_cmd_t;

/* Parses argv[1..] for prog (e.g. "vsoc commands list") into o, accepting the options in
 * allowed and a positional ID with CLI_O_ID (then required, as --by is with CLI_O_BY).
 * Returns -1 to go on, else the exit status: 0 after printing --help, EXIT_USAGE after
 * printing the error. */
int cli_store_parse(int argc, char **argv, const char *prog, const cli_store_cmd_t *cmd,
                    unsigned allowed, cli_store_opts_t *o);

/* cli_store_parse, cmd->check, then cli_store_open(o->db, 1): usage errors are reported
 * before a missing store. Returns the store (caller closes), or NULL with *status set to
 * the exit status (0 after --help, EXIT_USAGE, 1 when the store cannot be opened). */
vsoc_store_t *cli_store_start(int argc, char **argv, const char *prog,
                              const cli_store_cmd_t *cmd, unsigned allowed,
                              cli_store_opts_t *o, int *status);

/* Ends a command that walked s: rc is what the vsoc_store_each_* call returned (negative:
 * the store's error, which is printed; positive: a callback stopped it after printing why).
 * Closes s and returns the exit status, 0 when rc is 0, else 1. */
int cli_store_end(vsoc_store_t *s, int rc);

/* Prints j on one line (compact, keys in insertion order, ASCII) and frees it; j may be
 * NULL, from a failed json_pack. Returns 0, or 1 (a callback's "stop") after printing that
 * memory ran out. */
int cli_print_json(json_t *j);

/* The responder's on_change: store is the vsoc_store_t. Writes the change with
 * vsoc_store_apply_change; on failure prints "vsoc: <store message>" to stderr and returns
 * non-zero (the responder then stops). */
int cli_store_on_change(void *store, const vsoc_change_t *c);

/* Gives r every run and each vehicle's last seq from s, and with commands the open commands
 * (with their stored envelopes). A replay leaves commands out: the commands in a store
 * belong to whoever delivers them (vsoc respond), never to replay's simulated vehicles.
 * Returns 0, or prints what failed and returns -1. */
int cli_responder_restore(vsoc_responder_t *r, vsoc_store_t *s, int commands);

/* Gives g each vehicle's newest incident from s. Returns 0, or prints and returns -1. */
int cli_incidents_restore(vsoc_incidents_t *g, vsoc_store_t *s);

/* Makes this process the one responder of the store at db: the one that delivers its
 * commands and takes their acks (vsoc respond, or vsoc serve with a commands topic). Two
 * would each resend what the other waits for. An exclusive flock on "<db>.responder", held
 * until the process exits (the kernel drops it on a crash, so no stale lock stays behind);
 * the file says who holds it. who: "vsoc serve" or "vsoc respond". Returns 0, or -1 with
 * err saying who holds it (or why the file cannot be locked). */
int cli_responder_lock(const char *db, const char *who, char *err, size_t errlen);

/* CLOCK_REALTIME in microseconds: people's actions are stamped with the wall clock. */
int64_t cli_wall_us(void);

/* A time in microseconds as "YYYY-MM-DDTHH:MM:SSZ" (UTC, the second it falls in) into buf;
 * "-" when it cannot be written. Returns buf. */
const char *cli_time_us(int64_t us, char buf[32]);

#endif
