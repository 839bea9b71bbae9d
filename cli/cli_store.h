/* cli_store.h: what the commands that use a store share: opening it with the CLI's messages,
 * the responder's on_change that writes to it, giving a responder or an incident grouper
 * back what the store kept, and the wall clock that stamps people's actions. */
#ifndef VSOC_CLI_STORE_H
#define VSOC_CLI_STORE_H

#include "incident.h"
#include "respond.h"
#include "store/store.h"

#include <stdint.h>

/* Opens path (must_exist: refuse to create it, for commands that only read or change an
 * existing store). Prints "vsoc: <message>" to stderr and returns NULL on failure. */
vsoc_store_t *cli_store_open(const char *path, int must_exist);

/* The responder's on_change: store is the vsoc_store_t. Writes the change with
 * vsoc_store_apply_change; on failure prints "vsoc: <store message>" to stderr and returns
 * non-zero (the responder then stops). */
int cli_store_on_change(void *store, const vsoc_change_t *c);

/* Gives r every run, the open commands (with their stored envelopes) and each vehicle's
 * last seq from s. Returns 0, or prints what failed and returns -1. */
int cli_responder_restore(vsoc_responder_t *r, vsoc_store_t *s);

/* Gives g each vehicle's newest incident from s. Returns 0, or prints and returns -1. */
int cli_incidents_restore(vsoc_incidents_t *g, vsoc_store_t *s);

/* CLOCK_REALTIME in microseconds: people's actions are stamped with the wall clock. */
int64_t cli_wall_us(void);

/* A time in microseconds as "YYYY-MM-DDTHH:MM:SSZ" (UTC, the second it falls in) into buf;
 * "-" when it cannot be written. Returns buf. */
const char *cli_time_us(int64_t us, char buf[32]);

#endif
