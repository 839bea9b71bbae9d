/* deliver.h: the receiving side of command delivery that vsoc respond and vsoc serve share:
 * vehicles' acks checked against their public keys and kept in the store before the
 * responder acts on them, and the approvals people record with `vsoc commands approve`
 * polled from the store.
 *
 * Owned by one delivering process; it borrows the store (which must outlive it) and owns
 * the vehicle keys it loads. */
#ifndef VSOC_CLI_DELIVER_H
#define VSOC_CLI_DELIVER_H

#include "respond.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cli_deliver cli_deliver_t;

/* keydir holds the vehicles' public keys as DIR/<VIN>.pub. log receives every line (event
 * "error" for failures); it is required. NULL when out of memory. */
cli_deliver_t *cli_deliver_new(vsoc_store_t *store, const char *keydir,
                               void (*log)(void *ctx, const char *event, const char *text),
                               void *log_ctx);
void cli_deliver_free(cli_deliver_t *d);

/* Approvals already in the store were part of the state the responder was restored from:
 * only later ones are polled. Returns 0, or -1 (logged) when the store failed. */
int cli_deliver_skip_approvals(cli_deliver_t *d);

/* Hands every approval made since the last call to resp. Returns 0 or -1 (logged) when
 * the store failed. */
int cli_deliver_approvals(cli_deliver_t *d, vsoc_responder_t *resp);

/* One ack as received (buf, n: its bytes, not NUL-terminated); from_vin is the vehicle its
 * transport names (NULL when it names none). The ack is checked (its vehicle's key, from the
 * key directory, kept while its file is unchanged: a file replaced or removed takes effect
 * at the next ack), kept in the store with its verdict, and only a verified one goes
 * to resp. Malformed or refused acks are logged and counted, and return 0: they are
 * handled. Returns -1 (logged) when the store did not keep it: it must not be acknowledged
 * to the transport, so that it comes again after a restart. */
int cli_deliver_ack(cli_deliver_t *d, vsoc_responder_t *resp, const char *from_vin,
                    const void *buf, size_t n, int64_t now_us);

/* Acks verified and acks refused (malformed, unknown key, bad signature) so far. */
void cli_deliver_counts(const cli_deliver_t *d, uint64_t *ok, uint64_t *bad);

#endif
