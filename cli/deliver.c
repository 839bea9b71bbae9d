/* deliver.c: acks and approvals for the processes that deliver commands (deliver.h). */
#include "deliver.h"

#include "ack.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A vehicle's public key, loaded from the key directory the first time it is needed, with
 * what its file was then: a key file replaced or removed (a key rotated or revoked) is seen
 * at the vehicle's next ack. */
typedef struct vkey {
    char vin[VSOC_VIN_MAX + 1];
    vsoc_key_t *key;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} vkey_t;

struct cli_deliver {
    vsoc_store_t *store;
    const char *keydir;
    void (*log)(void *ctx, const char *event, const char *text);
    void *log_ctx;
    vkey_t *vkeys;
    size_t nvkeys, capvkeys;
    int64_t approvals_after;
    uint64_t acks_ok, acks_bad;
    int key_oom; /* the last vehicle_key ran out of memory: no verdict can be given */
};

static void logline(cli_deliver_t *d, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logline(cli_deliver_t *d, const char *event, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* Lines carry what acks say (reason, VIN) before or without a valid signature: control
     * characters would let a forged ack write lines of its own into a plain-text log. */
    vsoc_one_line(text);
    d->log(d->log_ctx, event, text);
}

cli_deliver_t *cli_deliver_new(vsoc_store_t *store, const char *keydir,
                               void (*log)(void *ctx, const char *event, const char *text),
                               void *log_ctx)
{
    cli_deliver_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->store = store;
    d->keydir = keydir;
    d->log = log;
    d->log_ctx = log_ctx;
    return d;
}

void cli_deliver_free(cli_deliver_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nvkeys; i++)
        vsoc_key_free(d->vkeys[i].key);
    free(d->vkeys);
    free(d);
}

static int same_file(const vkey_t *v, const struct stat *st)
{
    return v->dev == st->st_dev && v->ino == st->st_ino && v->size == st->st_size &&
           v->mtime.tv_sec == st->st_mtim.tv_sec && v->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static const vsoc_key_t *vehicle_key(cli_deliver_t *d, const char *vin)
{
    /* VINs become file names: only the characters a key id may hold. */
    if (!vsoc_key_id_valid(vin)) {
        logline(d, "ack.key", "'%s' cannot name a key file", vin);
        return NULL;
    }
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/%s.pub", d->keydir, vin);
    /* The file is looked at for every ack (acks are few): a key kept while its file is
     * unchanged, loaded again when it changed, dropped when it is gone. */
    struct stat st;
    int on_file = stat(path, &st) == 0;
    vkey_t *v = NULL;
    for (size_t i = 0; i < d->nvkeys; i++)
        if (!strcmp(d->vkeys[i].vin, vin))
            v = &d->vkeys[i];
    if (v && on_file && same_file(v, &st))
        return v->key;
    if (v) {
        vsoc_key_free(v->key);
        *v = d->vkeys[--d->nvkeys];
        if (!on_file)
            logline(d, "ack.key", "the key of %s was removed from %s: no longer trusted", vin,
                    d->keydir);
    }
    /* A key not on file is not kept (it may be added while the process runs), so acks
     * naming made-up VINs cannot grow the cache. */
    vsoc_key_t *k = on_file ? vsoc_key_load_public(path, vin, err, sizeof err) : NULL;
    if (!k) {
        logline(d, "ack.key", "no key for %s: %s", vin, on_file ? err : strerror(errno));
        return NULL;
    }
    if (vsoc_array_grow((void **)&d->vkeys, &d->capvkeys, d->nvkeys, sizeof *d->vkeys)) {
        vsoc_key_free(k);
        d->key_oom = 1;
        return NULL;
    }
    v = &d->vkeys[d->nvkeys++];
    snprintf(v->vin, sizeof v->vin, "%s", vin);
    v->key = k;
    v->dev = st.st_dev;
    v->ino = st.st_ino;
    v->size = st.st_size;
    v->mtime = st.st_mtim;
    return v->key;
}

int cli_deliver_ack(cli_deliver_t *d, vsoc_responder_t *resp, const char *from_vin,
                    const void *buf, size_t n, int64_t now_us)
{
    vsoc_ack_t ack;
    char why[256];
    if (n == 0 || !buf) {
        logline(d, "ack.malformed", "from %s: an empty message", from_vin ? from_vin : "?");
        d->acks_bad++;
        return 0;
    }
    if (memchr(buf, 0, n)) {
        logline(d, "ack.malformed", "from %s: a NUL byte in the message",
                from_vin ? from_vin : "?");
        d->acks_bad++;
        return 0;
    }
    char *raw = strndup(buf, n);
    if (!raw) {
        logline(d, "error", "out of memory reading an ack");
        return -1;
    }
    if (vsoc_ack_parse(raw, n, &ack, why, sizeof why) != 0) {
        logline(d, "ack.malformed", "from %s: %s", from_vin ? from_vin : "?", why);
        d->acks_bad++;
        free(raw);
        return 0;
    }
    const char *verdict = "ok";
    if (from_vin && strcmp(from_vin, ack.vin) != 0) {
        verdict = "wrong_vin"; /* a vehicle answering for another */
    } else {
        d->key_oom = 0;
        const vsoc_key_t *k = vehicle_key(d, ack.vin);
        if (d->key_oom) {
            /* Not judged, not kept: the transport delivers it again after a restart. */
            logline(d, "error", "out of memory keeping the key of %s", ack.vin);
            free(raw);
            return -1;
        }
        vsoc_envelope_reason_t vr =
            k ? vsoc_ack_verify(&ack, &k, 1, ack.vin) : VSOC_ENVELOPE_UNKNOWN_KEY;
        if (vr != VSOC_ENVELOPE_OK)
            verdict = vsoc_envelope_reason_name(vr);
    }
    if (vsoc_store_put_ack(d->store, &ack, raw, verdict, now_us) != 0) {
        /* Not kept, so not acted on: the transport delivers it again after a restart. */
        logline(d, "error", "%s", vsoc_store_errmsg(d->store));
        free(raw);
        return -1;
    }
    free(raw);
    logline(d, "ack", "%.8s %s from %s%s%s (%s)", ack.cmd_id, vsoc_ack_status_name(ack.status),
            ack.vin, ack.reason[0] ? ": " : "", ack.reason,
            strcmp(verdict, "ok") ? verdict : "signature verified");
    if (strcmp(verdict, "ok") != 0) {
        d->acks_bad++;
        return 0;
    }
    d->acks_ok++;
    int rc = vsoc_responder_on_ack(resp, &ack, now_us);
    /* A refusal of a message the vehicle could not authenticate is logged by the responder
     * itself (command.answer_ignored); any other answer it does not take is a repeat. */
    int unauthenticated = ack.status == VSOC_ACK_REJECTED &&
                          (!strcmp(ack.reason, "malformed") ||
                           !strcmp(ack.reason, "unknown_key") ||
                           !strcmp(ack.reason, "bad_signature"));
    if (rc == VSOC_ENOENT || (rc == VSOC_EINVAL && !unauthenticated))
        logline(d, "ack.ignored", "%.8s: %s", ack.cmd_id,
                rc == VSOC_ENOENT ? "no such command in flight"
                                  : "a duplicate, or an answer its state has no use for");
    return 0;
}

typedef struct approval_ctx {
    cli_deliver_t *d;
    vsoc_responder_t *resp;
} approval_ctx_t;

static int on_approval(void *ctx, int64_t rowid, const char *cmd_id, const char *by,
                       const char *decision, const char *why, int64_t time_us)
{
    approval_ctx_t *a = ctx;
    a->d->approvals_after = rowid;
    char err[512];
    int rc = !strcmp(decision, "approve")
                 ? vsoc_responder_approve(a->resp, cmd_id, by, time_us, err, sizeof err)
                 : vsoc_responder_reject(a->resp, cmd_id, by, why, time_us, err, sizeof err);
    /* The approving command already updated the store; an error here only means this
     * process saw the command in that state already. */
    if (rc != 0 && !vsoc_responder_error(a->resp))
        logline(a->d, "approval.seen", "%.8s %s by %s: %s", cmd_id, decision, by, err);
    return 0;
}

int cli_deliver_approvals(cli_deliver_t *d, vsoc_responder_t *resp)
{
    approval_ctx_t a = {d, resp};
    if (vsoc_store_each_approval(d->store, d->approvals_after, on_approval, &a) < 0) {
        logline(d, "error", "%s", vsoc_store_errmsg(d->store));
        return -1;
    }
    return 0;
}

static int max_rowid(void *ctx, int64_t rowid, const char *cmd_id, const char *by,
                     const char *decision, const char *why, int64_t time_us)
{
    (void)cmd_id, (void)by, (void)decision, (void)why, (void)time_us;
    *(int64_t *)ctx = rowid;
    return 0;
}

int cli_deliver_skip_approvals(cli_deliver_t *d)
{
    if (vsoc_store_each_approval(d->store, 0, max_rowid, &d->approvals_after) < 0) {
        logline(d, "error", "%s", vsoc_store_errmsg(d->store));
        return -1;
    }
    return 0;
}

void cli_deliver_counts(const cli_deliver_t *d, uint64_t *ok, uint64_t *bad)
{
    *ok = d->acks_ok;
    *bad = d->acks_bad;
}
