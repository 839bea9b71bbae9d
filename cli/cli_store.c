/* cli_store.c: the store helpers shared by vsoc incidents, commands, audit and the commands
 * that run the responder (cli_store.h). */
#include "cli_store.h"
#include "cli.h"

#include "envelope.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

vsoc_store_t *cli_store_open(const char *path, int must_exist)
{
    char err[600];
    vsoc_store_t *s = must_exist ? vsoc_store_open_existing(path, err, sizeof err)
                                 : vsoc_store_open(path, err, sizeof err);
    if (!s)
        fprintf(stderr, "vsoc: %s\n", err);
    return s;
}

/* The options taking a value, in the order they are tried. */
static const struct {
    unsigned flag; /* 0: always accepted */
    const char *name;
    size_t off; /* of the field in cli_store_opts_t */
} value_opts[] = {
    {0, "--db", offsetof(cli_store_opts_t, db)},
    {CLI_O_STATE, "--state", offsetof(cli_store_opts_t, state)},
    {CLI_O_VIN, "--vin", offsetof(cli_store_opts_t, vin)},
    {CLI_O_BY, "--by", offsetof(cli_store_opts_t, by)},
    {CLI_O_WHY, "--why", offsetof(cli_store_opts_t, why)},
    {CLI_O_PLAYBOOKS, "--playbooks", offsetof(cli_store_opts_t, playbooks)},
    {CLI_O_HEAD, "--head", offsetof(cli_store_opts_t, head)},
};

int cli_store_parse(int argc, char **argv, const char *prog, const cli_store_cmd_t *cmd,
                    unsigned allowed, cli_store_opts_t *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *iv = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cmd->usage(stdout);
            return 0;
        }
        size_t k, nk = sizeof value_opts / sizeof value_opts[0];
        for (k = 0; k < nk; k++)
            if ((!value_opts[k].flag || (allowed & value_opts[k].flag)) &&
                cli_opt(a, value_opts[k].name, &iv))
                break;
        if (k < nk) {
            const char **dst = (const char **)((char *)o + value_opts[k].off);
            if (!(*dst = cli_value(argc, argv, &i, iv, prog, value_opts[k].name)))
                return EXIT_USAGE;
        } else if ((allowed & CLI_O_JSON) && !strcmp(a, "--json")) {
            o->json = 1;
        } else if ((allowed & CLI_O_ID) && !o->id && (a[0] != '-' || !a[1])) {
            o->id = a;
        } else {
            fprintf(stderr, "%s: unexpected argument %s (see %s --help)\n", prog, a,
                    cmd->name);
            return EXIT_USAGE;
        }
    }
    if (!o->db) {
        fprintf(stderr, "%s: --db FILE is required (see %s --help)\n", prog, cmd->name);
        return EXIT_USAGE;
    }
    if ((allowed & CLI_O_ID) && !o->id) {
        fprintf(stderr, "%s: which %s? give its ID (see %s --help)\n", prog, cmd->noun,
                cmd->name);
        return EXIT_USAGE;
    }
    if ((allowed & CLI_O_BY) && (!o->by || !*o->by)) {
        fprintf(stderr, "%s: --by NAME is required: %s\n", prog, cmd->by_to);
        return EXIT_USAGE;
    }
    return -1;
}

vsoc_store_t *cli_store_start(int argc, char **argv, const char *prog,
                              const cli_store_cmd_t *cmd, unsigned allowed,
                              cli_store_opts_t *o, int *status)
{
    int rc = cli_store_parse(argc, argv, prog, cmd, allowed, o);
    if (rc < 0 && cmd->check)
        rc = cmd->check(prog, o);
    if (rc >= 0) {
        *status = rc;
        return NULL;
    }
    vsoc_store_t *s = cli_store_open(o->db, 1);
    *status = s ? 0 : 1;
    return s;
}

int cli_store_end(vsoc_store_t *s, int rc)
{
    if (rc < 0)
        fprintf(stderr, "vsoc: %s\n", vsoc_store_errmsg(s));
    vsoc_store_close(s);
    return rc ? 1 : 0;
}

int cli_print_json(json_t *j)
{
    char *t = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    if (!t) {
        fprintf(stderr, "vsoc: out of memory\n");
        return 1;
    }
    printf("%s\n", t);
    free(t);
    return 0;
}

int cli_store_on_change(void *store, const vsoc_change_t *c)
{
    vsoc_store_t *s = store;
    int rc = vsoc_store_apply_change(s, c);
    if (rc != 0) {
        fprintf(stderr, "vsoc: %s\n", vsoc_store_errmsg(s));
        return rc < 0 ? rc : -1;
    }
    return 0;
}

/* The restore callbacks keep the first failure's message here and stop the iteration. */
typedef struct restore_ctx {
    vsoc_responder_t *r;
    vsoc_incidents_t *g;
    char what[160];
    int rc;
} restore_ctx_t;

static int on_run(void *ctx, const vsoc_run_t *run)
{
    restore_ctx_t *x = ctx;
    if ((x->rc = vsoc_responder_restore_run(x->r, run)) != 0)
        snprintf(x->what, sizeof x->what, "run %s", run->id);
    return x->rc;
}

/* cmd->envelope points at the stored envelope text for the duration of the call. */
static int on_cmd(void *ctx, const vsoc_command_t *cmd)
{
    restore_ctx_t *x = ctx;
    if ((x->rc = vsoc_responder_restore_command(x->r, cmd)) != 0)
        snprintf(x->what, sizeof x->what, "command %s", cmd->cmd_id);
    return x->rc;
}

static int on_seq(void *ctx, const char *vin, uint64_t last_seq)
{
    restore_ctx_t *x = ctx;
    if ((x->rc = vsoc_responder_restore_seq(x->r, vin, last_seq)) != 0)
        snprintf(x->what, sizeof x->what, "the seq of vehicle %s", vin);
    return x->rc;
}

static int on_incident(void *ctx, const vsoc_incident_t *inc)
{
    restore_ctx_t *x = ctx;
    if ((x->rc = vsoc_incidents_restore(x->g, inc)) != 0)
        snprintf(x->what, sizeof x->what, "incident %s", inc->id);
    return x->rc;
}

/* rc from an each_ call: the store's error, or the callback's (x->rc). */
static int restore_done(vsoc_store_t *s, const restore_ctx_t *x, int rc)
{
    if (rc == 0)
        return 0;
    if (x->rc != 0)
        fprintf(stderr, "vsoc: restoring %s: %s\n", x->what, vsoc_strerror(x->rc));
    else
        fprintf(stderr, "vsoc: %s\n", vsoc_store_errmsg(s));
    return -1;
}

int cli_responder_restore(vsoc_responder_t *r, vsoc_store_t *s, int commands)
{
    restore_ctx_t x = {.r = r};
    int rc = vsoc_store_each_run(s, on_run, &x);
    if (rc == 0 && commands)
        rc = vsoc_store_each_command(s, 1, on_cmd, &x);
    if (rc == 0)
        rc = vsoc_store_each_seq(s, on_seq, &x);
    return restore_done(s, &x, rc);
}

int cli_incidents_restore(vsoc_incidents_t *g, vsoc_store_t *s)
{
    restore_ctx_t x = {.g = g};
    return restore_done(s, &x, vsoc_store_each_latest_incident(s, on_incident, &x));
}

int64_t cli_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *cli_time_us(int64_t us, char buf[32])
{
    int64_t sec = us / 1000000;
    if (us % 1000000 < 0)
        sec--; /* floor: a time before 1970 belongs to the second before */
    if (vsoc_envelope_time_format(sec, buf) != 0)
        snprintf(buf, 32, "-");
    return buf;
}

int cli_responder_lock(const char *db, const char *who, char *err, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s.responder", db) >= (int)sizeof path) {
        snprintf(err, errlen, "%s: path too long", db);
        return -1;
    }
    /* Not through a symlink (the holder line is written into the file), and read-only when
     * it belongs to another user: flock needs no write access, only the line is left out. */
    int writable = 1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EACCES) {
        writable = 0;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    struct stat sb;
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fd = -1;
        errno = EINVAL;
    }
    if (fd < 0) {
        snprintf(err, errlen, "%s (the store's responder lock): %s", path,
                 errno == ELOOP ? "a symbolic link, refused"
                 : errno == EINVAL ? "not a regular file" : strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char holder[200] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "the commands of %s are delivered by another process (%s): "
                     "run one responder per store", db, holder[0] ? holder : "it did not say which");
        else
            snprintf(err, errlen, "%s: cannot lock: %s", path, strerror(e));
        close(fd);
        return -1;
    }
    /* Says who holds it, for a second responder's message; a line that cannot be written
     * leaves the lock in force all the same. */
    char line[200];
    int k = snprintf(line, sizeof line, "%s, pid %ld\n", who, (long)getpid());
    if (writable && ftruncate(fd, 0) == 0) {
        ssize_t w = pwrite(fd, line, (size_t)k, 0);
        (void)w;
    }
    return 0; /* fd stays open, and locked, until the process exits */
}
