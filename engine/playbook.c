/* playbook.c: the playbook compiler: YAML (libyaml's document API, which keeps a position
 * for every node) to the immutable set of playbook.h, plus trigger globs and vehicle-state
 * gates.
 *
 * Like the rule compiler, every problem becomes a located diagnostic and compilation goes
 * on, so that lint reports all of them in one run; a playbook with any error is left out of
 * the set. Every default is filled in here, so that the responder and `vsoc playbooks show`
 * see the values a run will use. Nothing here runs per event. */
#include "playbook.h"
#include "incident.h"
#include "util.h"
#include "yamlfile.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Canonical args may use this much of the envelope's VSOC_ENVELOPE_ARGS_MAX (4096): the
 * responder adds the "vehicle_state" gate to them when it builds the command. */
#define PB_ARGS_MAX 3900
/* args deeper than this, or with more values, are refused: a YAML alias may point back at
 * its own parent, or expand exponentially (the "billion laughs"). */
#define PB_ARGS_DEPTH 16
#define PB_ARGS_NODES 4096
#define PB_DAY 86400
#define PB_DURATION_MAX (365 * PB_DAY) /* keeps every timer in microseconds far from overflow */
#define PB_QUARANTINE_TTL_MAX PB_DAY
#define PB_RETRIES_MAX 10
#define PB_SPEED_MAX 500.0
#define PB_VEHICLES_MAX 1000000

/* ---- actions and gates -------------------------------------------------------------- */

static const char *const action_names[] = {
    "quarantine", "release", "collect_logs", "rotate_credentials", "notify", "escalate",
};
#define NACTIONS (sizeof action_names / sizeof action_names[0])

const char *vsoc_action_name(vsoc_action_t a)
{
    return (unsigned)a < NACTIONS ? action_names[a] : NULL;
}

int vsoc_action_from_name(const char *name, vsoc_action_t *out)
{
    for (size_t i = 0; name && i < NACTIONS; i++) {
        if (!strcmp(name, action_names[i])) {
            *out = (vsoc_action_t)i;
            return 0;
        }
    }
    return -1;
}

int vsoc_action_is_command(vsoc_action_t a)
{
    return a == VSOC_ACTION_QUARANTINE || a == VSOC_ACTION_RELEASE ||
           a == VSOC_ACTION_COLLECT_LOGS || a == VSOC_ACTION_ROTATE_CREDENTIALS;
}

/* Indexed by vsoc_gate_op_t. */
static const char *const gate_ops[] = {"", "lt", "lte", "gt", "gte", "eq"};

int vsoc_gate_allows(const vsoc_gate_t *g, double v)
{
    /* Comparisons with NaN are false: an unknown speed never passes a gate. */
    switch (g->op) {
    case VSOC_GATE_NONE: return 1;
    case VSOC_GATE_LT: return v < g->speed_kph;
    case VSOC_GATE_LTE: return v <= g->speed_kph;
    case VSOC_GATE_GT: return v > g->speed_kph;
    case VSOC_GATE_GTE: return v >= g->speed_kph;
    case VSOC_GATE_EQ: return v == g->speed_kph;
    }
    return 0;
}

/* The shortest text that reads back as v: integers without a fraction or exponent. */
static void shortest_number(double v, char *buf, size_t n)
{
    if (v == 0)
        v = 0; /* -0 prints as 0 */
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, n, "%.0f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

void vsoc_gate_json(const vsoc_gate_t *g, char *buf, size_t n)
{
    if (!n)
        return;
    if (g->op <= VSOC_GATE_NONE || g->op > VSOC_GATE_EQ || !isfinite(g->speed_kph)) {
        buf[0] = 0;
        return;
    }
    char num[40];
    shortest_number(g->speed_kph, num, sizeof num);
    snprintf(buf, n, "{\"speed_kph\":{\"%s\":%s}}", gate_ops[g->op], num);
}

int vsoc_gate_from_args(const char *args_json, vsoc_gate_t *g)
{
    g->op = VSOC_GATE_NONE;
    g->speed_kph = 0;
    json_t *j = args_json ? json_loads(args_json, JSON_REJECT_DUPLICATES, NULL) : NULL;
    int rc = VSOC_EPARSE;
    if (!json_is_object(j))
        goto done;
    json_t *vs = json_object_get(j, "vehicle_state");
    if (!vs) {
        rc = 0;
        goto done;
    }
    json_t *sp = json_object_get(vs, "speed_kph");
    if (!json_is_object(vs) || json_object_size(vs) != 1 || !json_is_object(sp) ||
        json_object_size(sp) != 1)
        goto done;
    const char *op = json_object_iter_key(json_object_iter(sp));
    json_t *val = json_object_iter_value(json_object_iter(sp));
    if (!json_is_number(val) || !isfinite(json_number_value(val)))
        goto done;
    for (int i = VSOC_GATE_LT; i <= VSOC_GATE_EQ; i++) {
        if (!strcmp(op, gate_ops[i])) {
            g->op = (vsoc_gate_op_t)i;
            g->speed_kph = json_number_value(val);
            rc = 0;
        }
    }
done:
    json_decref(j);
    return rc;
}

int vsoc_glob_match(const char *glob, const char *s)
{
    /* Greedy with one backtrack point: on a mismatch, the last '*' takes one more byte.
     * Linear in practice and never exponential. */
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*glob == '*') {
            star = glob++;
            resume = s;
        } else if (*glob && (*glob == '?' || *glob == *s)) {
            glob++;
            s++;
        } else if (star) {
            glob = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*glob == '*')
        glob++;
    return !*glob;
}

int vsoc_playbook_triggered_by(const vsoc_playbook_t *p, const char *rule_id,
                               vsoc_level_t level)
{
    if (!rule_id || level < p->min_level)
        return 0;
    for (size_t i = 0; i < p->nrules; i++)
        if (vsoc_glob_match(p->rules[i], rule_id))
            return 1;
    return 0;
}

/* ---- the set ------------------------------------------------------------------------ */

typedef struct pos {
    int line, col;
} pos_t;

/* A playbook and what it owns; p's pointers alias the mutable ones here. */
typedef struct pb_item {
    vsoc_playbook_t p;
    char **rules;
    pos_t *rule_pos; /* of each trigger glob, for vsoc_playbooks_check_rules */
    vsoc_pb_step_t *steps;
} pb_item_t;

struct vsoc_playbooks {
    pb_item_t *v;
    size_t n;
    size_t nfiles;
};

static void item_fini(pb_item_t *it)
{
    free((char *)it->p.id);
    free((char *)it->p.title);
    free((char *)it->p.description);
    free((char *)it->p.file);
    for (size_t i = 0; i < it->p.nrules; i++)
        free(it->rules[i]);
    free(it->rules);
    free(it->rule_pos);
    for (size_t i = 0; i < it->p.nsteps; i++) {
        free((char *)it->steps[i].id);
        free((char *)it->steps[i].args);
    }
    free(it->steps);
    memset(it, 0, sizeof *it);
}

void vsoc_playbooks_free(vsoc_playbooks_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        item_fini(&s->v[i]);
    free(s->v);
    free(s);
}

size_t vsoc_playbooks_count(const vsoc_playbooks_t *s) { return s ? s->n : 0; }

const vsoc_playbook_t *vsoc_playbooks_get(const vsoc_playbooks_t *s, size_t i)
{
    return s && i < s->n ? &s->v[i].p : NULL;
}

size_t vsoc_playbooks_files(const vsoc_playbooks_t *s) { return s ? s->nfiles : 0; }

const vsoc_playbook_t *vsoc_playbooks_find(const vsoc_playbooks_t *s, const char *id)
{
    size_t lo = 0, hi = s ? s->n : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->v[mid].p.id, id);
        if (c == 0)
            return &s->v[mid].p;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- compilation context and diagnostics -------------------------------------------- */

/* Compilation context for one YAML document. */
typedef struct ctx {
    const char *file;
    yaml_document_t *doc;
    vsoc_diags_t *diags;
    int errors;      /* errors in this playbook */
    pb_item_t *it;   /* being built */
    char *id;        /* the document's id, kept even when the playbook fails */
    int id_line, id_col;
} ctx_t;

static void vdiag(ctx_t *c, vsoc_diag_severity_t sev, const yaml_node_t *n, const char *fmt,
                  va_list ap) __attribute__((format(printf, 4, 0)));
static void vdiag(ctx_t *c, vsoc_diag_severity_t sev, const yaml_node_t *n, const char *fmt,
                  va_list ap)
{
    char buf[900];
    vsnprintf(buf, sizeof buf, fmt, ap);
    vsoc_diag_add(c->diags, sev, c->file, n ? (int)n->start_mark.line + 1 : 0,
                  n ? (int)n->start_mark.column + 1 : 0, "%s", buf);
    if (sev == VSOC_DIAG_ERROR)
        c->errors++;
}

static void err_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdiag(c, VSOC_DIAG_ERROR, n, fmt, ap);
    va_end(ap);
}

static void warn_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdiag(c, VSOC_DIAG_WARNING, n, fmt, ap);
    va_end(ap);
}

static void oom(ctx_t *c, const yaml_node_t *n)
{
    err_at(c, n, "out of memory");
}

/* ---- YAML helpers ------------------------------------------------------------------- */

static yaml_node_t *node(ctx_t *c, int i)
{
    return yaml_document_get_node(c->doc, i);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int is_plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* A plain scalar "null", "~" or empty is YAML's null. */
static int is_null(const yaml_node_t *n)
{
    if (!n || !is_plain(n))
        return 0;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "null") || !strcmp(s, "~") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *type_name(const yaml_node_t *n)
{
    if (is_null(n))
        return "null";
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a map";
    default: return "nothing";
    }
}

/* A non-null scalar without NUL bytes (every string here ends up in C strings). */
static const char *expect_string(ctx_t *c, yaml_node_t *n, const char *what)
{
    const char *s = scalar(n);
    if (!s || is_null(n)) {
        err_at(c, n, "%s must be a string, not %s", what, type_name(n));
        return NULL;
    }
    if (strlen(s) != n->data.scalar.length) {
        err_at(c, n, "%s contains a NUL character", what);
        return NULL;
    }
    return s;
}

static size_t nitems(const yaml_node_t *seq)
{
    return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

/* Reports an unknown word with the nearest candidate, or the list of candidates. */
static void unknown_word(ctx_t *c, const yaml_node_t *n, const char *what, const char *word,
                         const char *const *cands, size_t ncands)
{
    const char *sug = vsoc_did_you_mean(word, cands, ncands);
    if (sug) {
        err_at(c, n, "unknown %s '%s' (did you mean '%s'?)", what, word, sug);
        return;
    }
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < ncands && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                                 i == 0 ? "" : i + 1 == ncands ? " or " : ", ", cands[i]);
    err_at(c, n, "unknown %s '%s' (%s)", what, word, list);
}

/* Walks a mapping: rejects non-scalar keys, duplicate keys and keys outside known (with a
 * suggestion), and gives each other pair's key index, key and value to fn. */
typedef void (*pair_fn)(ctx_t *c, size_t ki, yaml_node_t *k, yaml_node_t *v, void *arg);

static void each_pair(ctx_t *c, yaml_node_t *map, const char *const *known, size_t nknown,
                      const char *where, pair_fn fn, void *arg)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const char *key = scalar(k);
        if (!key) {
            err_at(c, k, "%s: keys must be strings", where);
            continue;
        }
        int dup = 0;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p && !dup; q++) {
            const char *kq = scalar(node(c, q->key));
            dup = kq && !strcmp(kq, key);
        }
        if (dup) {
            err_at(c, k, "duplicate key '%s' in %s", key, where);
            continue;
        }
        size_t i;
        for (i = 0; i < nknown; i++)
            if (!strcmp(known[i], key))
                break;
        if (i == nknown) {
            const char *s = vsoc_did_you_mean(key, known, nknown);
            if (s)
                err_at(c, k, "unknown key '%s' in %s (did you mean '%s'?)", key, where, s);
            else
                err_at(c, k, "unknown key '%s' in %s", key, where);
            continue;
        }
        fn(c, i, k, v, arg);
    }
}

/* A map's key and value nodes by key index, for the maps (step, playbook) that are read
 * after all their keys are known: each_pair with collect_pair fills it. */
#define KEYS_MAX 11
typedef struct key_nodes {
    yaml_node_t *k[KEYS_MAX], *v[KEYS_MAX];
} key_nodes_t;

static void collect_pair(ctx_t *c, size_t ki, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    (void)c;
    key_nodes_t *kn = arg;
    kn->k[ki] = k;
    kn->v[ki] = v;
}

/* Formats seconds in the largest unit that divides them: 7200 -> "2h", 90 -> "90s". */
void vsoc_playbook_duration(int64_t s, char *buf, size_t n)
{
    if (s > 0 && s % PB_DAY == 0)
        snprintf(buf, n, "%" PRId64 "d", s / PB_DAY);
    else if (s > 0 && s % 3600 == 0)
        snprintf(buf, n, "%" PRId64 "h", s / 3600);
    else if (s > 0 && s % 60 == 0)
        snprintf(buf, n, "%" PRId64 "m", s / 60);
    else
        snprintf(buf, n, "%" PRId64 "s", s);
}

/* A duration in whole seconds within [min_s, max_s]. Returns 0, or -1 after reporting. */
static int duration(ctx_t *c, yaml_node_t *v, const char *what, int64_t min_s, int64_t max_s,
                    int64_t *out)
{
    const char *s = expect_string(c, v, what);
    if (!s)
        return -1;
    int64_t us;
    if (s[0] == '-') {
        err_at(c, v, "%s '%s' is negative", what, s);
        return -1;
    }
    if (vsoc_parse_duration(s, &us) != 0) {
        err_at(c, v, "bad duration '%s' for %s (expected e.g. 30s, 15m, 2h, 1d)", s, what);
        return -1;
    }
    if (us % 1000000) {
        err_at(c, v, "%s '%s' is not a whole number of seconds", what, s);
        return -1;
    }
    int64_t sec = us / 1000000;
    char lim[32];
    if (sec < min_s) {
        vsoc_playbook_duration(min_s, lim, sizeof lim);
        err_at(c, v, "%s must be at least %s", what, lim);
        return -1;
    }
    if (sec > max_s) {
        if (max_s == PB_DAY) /* the quarantine limit reads better as the 24h it is */
            snprintf(lim, sizeof lim, "24h");
        else
            vsoc_playbook_duration(max_s, lim, sizeof lim);
        err_at(c, v, "%s '%s' is longer than %s", what, s, lim);
        return -1;
    }
    *out = sec;
    return 0;
}

/* An integer in [lo, hi]. Returns 0, or -1 after reporting. */
static int integer(ctx_t *c, yaml_node_t *v, const char *what, int64_t lo, int64_t hi,
                   int64_t *out)
{
    const char *s = expect_string(c, v, what);
    if (!s)
        return -1;
    int64_t i;
    if (vsoc_parse_int(s, &i) != 0) {
        err_at(c, v, "%s '%s' is not an integer", what, s);
        return -1;
    }
    if (i < lo || i > hi) {
        err_at(c, v, "%s %s is out of range (%" PRId64 "..%" PRId64 ")", what, s, lo, hi);
        return -1;
    }
    *out = i;
    return 0;
}

/* Which name of names s is, or -1 after reporting. */
static int choice(ctx_t *c, yaml_node_t *v, const char *what, const char *const *names,
                  size_t n)
{
    const char *s = expect_string(c, v, what);
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return (int)i;
    unknown_word(c, v, what, s, names, n);
    return -1;
}

static char *dup_or_oom(ctx_t *c, yaml_node_t *n, const char *s)
{
    char *d = strdup(s);
    if (!d)
        oom(c, n);
    return d;
}

/* ---- ids and globs ------------------------------------------------------------------ */

static int id_char(int ch, int dot)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
           (dot && ch == '.');
}

/* Playbook ids are [a-z0-9][a-z0-9._-]*, step ids [a-z0-9][a-z0-9_-]*; both at most
 * VSOC_ID_MAX bytes, the size records keep. */
static int valid_id(const char *s, int dot)
{
    size_t n = strlen(s);
    if (n == 0 || n > VSOC_ID_MAX || !id_char((unsigned char)s[0], 0) || s[0] == '_' ||
        s[0] == '-')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!id_char((unsigned char)s[i], dot))
            return 0;
    return 1;
}

static int glob_char(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-' || ch == '*' || ch == '?';
}

/* ---- args --------------------------------------------------------------------------- */

typedef struct args_walk {
    size_t budget;   /* values left before the args are too large */
    int failed;      /* an error was reported */
} args_walk_t;

static int all_digits(const char *s, int (*ok)(int))
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!ok((unsigned char)*s))
            return 0;
    return 1;
}

static int is_dec(int ch) { return ch >= '0' && ch <= '9'; }
static int is_oct(int ch) { return ch >= '0' && ch <= '7'; }
static int is_hex(int ch) { return vsoc_hexval(ch) >= 0; }

/* YAML 1.2 core schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float_text(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    int digits = 0;
    while (is_dec((unsigned char)*s)) {
        s++;
        digits++;
    }
    if (*s == '.') {
        s++;
        while (is_dec((unsigned char)*s)) {
            s++;
            digits++;
        }
    }
    if (!digits)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        if (!is_dec((unsigned char)*s))
            return 0;
        while (is_dec((unsigned char)*s))
            s++;
    }
    return !*s;
}

/* A scalar as JSON: plain scalars follow YAML 1.2's core schema (null, true/false,
 * integers in decimal, 0x hex or 0o octal, floats); every quoted or block scalar, and every
 * other plain one, is a string. */
static json_t *scalar_json(ctx_t *c, yaml_node_t *n, args_walk_t *w)
{
    const char *s = scalar(n);
    size_t len = n->data.scalar.length;
    if (is_plain(n)) {
        if (is_null(n))
            return json_null();
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
            return json_true();
        if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
            return json_false();
        const char *d = s + (*s == '-' || *s == '+');
        int base = 0;
        if (all_digits(d, is_dec))
            base = 10;
        else if (s[0] == '0' && s[1] == 'x' && all_digits(s + 2, is_hex))
            base = 16;
        else if (s[0] == '0' && s[1] == 'o' && all_digits(s + 2, is_oct))
            base = 8;
        if (base) {
            errno = 0;
            char *end;
            long long v = base == 10 ? strtoll(s, &end, 10) : 0;
            if (base != 10) {
                unsigned long long u = strtoull(s + 2, &end, base);
                if (u > (unsigned long long)INT64_MAX)
                    errno = ERANGE;
                v = (long long)u;
            }
            if (errno == ERANGE) {
                err_at(c, n, "args: integer %s is out of range", s);
                w->failed = 1;
                return NULL;
            }
            return json_integer(v);
        }
        if (is_float_text(s)) {
            double v = strtod(s, NULL);
            if (!isfinite(v)) {
                err_at(c, n, "args: number %s is out of range", s);
                w->failed = 1;
                return NULL;
            }
            return json_real(v);
        }
        const char *f = s + (*s == '-' || *s == '+');
        if (!strcmp(f, ".inf") || !strcmp(f, ".Inf") || !strcmp(f, ".INF") ||
            !strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
            err_at(c, n, "args: %s has no JSON form (quote it for a string)", s);
            w->failed = 1;
            return NULL;
        }
    }
    if (strlen(s) != len) {
        /* JSON could write it (\u0000), but the envelope and the agent refuse it. */
        err_at(c, n, "args: string contains a NUL character");
        w->failed = 1;
        return NULL;
    }
    json_t *j = json_stringn(s, len);
    if (!j) {
        err_at(c, n, "args: string is not valid UTF-8");
        w->failed = 1;
    }
    return j;
}

static json_t *to_json(ctx_t *c, yaml_node_t *n, int depth, args_walk_t *w)
{
    if (depth > PB_ARGS_DEPTH) {
        if (!w->failed)
            err_at(c, n, "args: nested more than %d levels", PB_ARGS_DEPTH);
        w->failed = 1;
        return NULL;
    }
    if (w->budget == 0) {
        if (!w->failed)
            err_at(c, n, "args: more than %d values", PB_ARGS_NODES);
        w->failed = 1;
        return NULL;
    }
    w->budget--;
    json_t *j = NULL;
    switch (n->type) {
    case YAML_SCALAR_NODE:
        if (!(j = scalar_json(c, n, w)) && !w->failed)
            goto nomem;
        return j;
    case YAML_SEQUENCE_NODE:
        if (!(j = json_array()))
            goto nomem;
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             it < n->data.sequence.items.top; it++) {
            json_t *e = to_json(c, node(c, *it), depth + 1, w);
            if (!e || json_array_append_new(j, e) != 0) {
                if (!w->failed)
                    goto nomem;
                json_decref(j);
                return NULL;
            }
        }
        return j;
    case YAML_MAPPING_NODE:
        if (!(j = json_object()))
            goto nomem;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = node(c, p->key);
            const char *key = scalar(k);
            if (!key || strlen(key) != k->data.scalar.length) {
                err_at(c, k, "args: keys must be strings");
                w->failed = 1;
                break;
            }
            if (depth == 0 && !strcmp(key, "vehicle_state")) {
                err_at(c, k, "args: 'vehicle_state' is reserved (the step's vehicle_state "
                             "gate is carried there; write the gate as the step's "
                             "vehicle_state)");
                w->failed = 1;
                break;
            }
            if (json_object_get(j, key)) {
                err_at(c, k, "args: duplicate key '%s'", key);
                w->failed = 1;
                break;
            }
            json_t *e = to_json(c, node(c, p->value), depth + 1, w);
            if (!e)
                break;
            if (json_object_set_new(j, key, e) != 0) {
                err_at(c, k, "args: key is not valid UTF-8");
                w->failed = 1;
                break;
            }
        }
        if (w->failed) {
            json_decref(j);
            return NULL;
        }
        return j;
    default:
        err_at(c, n, "args: empty node");
        w->failed = 1;
        return NULL;
    }
nomem:
    json_decref(j);
    oom(c, n);
    w->failed = 1;
    return NULL;
}

/* The step's args as canonical JSON (malloc'd), or NULL after reporting. */
static char *compile_args(ctx_t *c, yaml_node_t *v)
{
    if (is_null(v))
        return dup_or_oom(c, v, "{}");
    if (v->type != YAML_MAPPING_NODE) {
        err_at(c, v, "args must be a map, not %s", type_name(v));
        return NULL;
    }
    args_walk_t w = {PB_ARGS_NODES, 0};
    json_t *j = to_json(c, v, 0, &w);
    if (!j)
        return NULL;
    /* The envelope canonicalises args with the same flags: these bytes are what is signed. */
    char *t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!t) {
        oom(c, v);
        return NULL;
    }
    size_t n = strlen(t);
    if (n > PB_ARGS_MAX) {
        err_at(c, v, "args: %zu bytes as canonical JSON, more than %d (the rest of the "
                     "envelope's %d is kept for the vehicle_state gate)",
               n, PB_ARGS_MAX, 4096);
        free(t);
        return NULL;
    }
    return t;
}

/* ---- the command contract of quarantine and release args ------------------------------ */

/* What the vehicle agent accepts (docs/playbooks.md, "Actions"): checked here so that a
 * mistake shows in lint rather than as a vehicle's bad_args rejection during an incident. */
#define PB_NAME_MAX 64
#define PB_CAN_IDS_MAX 64

static const char *const quarantine_args[] = {"segment", "mode", "can_ids", "feature"};
static const char *const release_args[] = {"segment", "cmd_id"};

/* 1 when n is a scalar that args turn into a JSON string. */
static int is_json_string(ctx_t *c, yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE)
        return 0;
    args_walk_t w = {1, 0};
    json_t *j = scalar_json(c, n, &w);
    int r = json_is_string(j);
    json_decref(j);
    return r;
}

/* Segment, mode and feature names: 1..64 of [A-Za-z0-9._-]. */
static int is_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PB_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (!glob_char((unsigned char)*s) || *s == '*' || *s == '?')
            return 0;
    return 1;
}

/* A CAN id as the agent reads it: "0x123", hex, at most 29 bits. */
static int is_can_id(const char *s)
{
    if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X') || !s[2] || strlen(s) > 10)
        return 0;
    uint64_t v = 0;
    for (const char *p = s + 2; *p; p++) {
        int d = vsoc_hexval((unsigned char)*p);
        if (d < 0)
            return 0;
        v = v * 16 + (uint64_t)d;
    }
    return v <= 0x1FFFFFFF;
}

static yaml_node_t *args_get(ctx_t *c, yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node(c, p->key));
        if (k && !strcmp(k, key))
            return node(c, p->value);
    }
    return NULL;
}

static void check_name(ctx_t *c, yaml_node_t *v, const char *what, const char *action)
{
    if (!v)
        return;
    if (!is_json_string(c, v) || !is_name(scalar(v)))
        err_at(c, v, "%s %s must be a name (1..%d of A-Z a-z 0-9 . _ -)", action, what,
               PB_NAME_MAX);
}

/* Checks args (already compiled without error) of a quarantine or a release; m is the
 * step, for args left out. */
static void check_command_args(ctx_t *c, vsoc_action_t a, yaml_node_t *m, yaml_node_t *args)
{
    const char *act = vsoc_action_name(a);
    const char *const *known = a == VSOC_ACTION_QUARANTINE ? quarantine_args : release_args;
    size_t nknown = a == VSOC_ACTION_QUARANTINE ? 4 : 2;
    if (!args || args->type != YAML_MAPPING_NODE) {
        err_at(c, args ? args : m, a == VSOC_ACTION_QUARANTINE
                                       ? "quarantine needs args: segment and mode, can_ids "
                                         "or feature"
                                       : "release needs args: the segment it lifts");
        return;
    }
    for (yaml_node_pair_t *p = args->data.mapping.pairs.start;
         p < args->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(c, p->key);
        const char *key = scalar(k);
        size_t i;
        for (i = 0; i < nknown; i++)
            if (!strcmp(key, known[i]))
                break;
        if (i == nknown) {
            char what[32];
            snprintf(what, sizeof what, "%s argument", act);
            unknown_word(c, k, what, key, known, nknown);
        }
    }
    yaml_node_t *seg = args_get(c, args, "segment");
    check_name(c, seg, "segment", act);
    if (a == VSOC_ACTION_RELEASE) {
        yaml_node_t *id = args_get(c, args, "cmd_id");
        if (id)
            err_at(c, id, "release cmd_id names one command, unknown when a playbook is "
                          "written: release by segment");
        else if (!seg)
            err_at(c, args, "release needs args: the segment it lifts");
        return;
    }
    yaml_node_t *mode = args_get(c, args, "mode"), *feat = args_get(c, args, "feature");
    yaml_node_t *ids = args_get(c, args, "can_ids");
    check_name(c, mode, "mode", act);
    check_name(c, feat, "feature", act);
    if (!seg && !ids && !feat)
        err_at(c, args, "quarantine needs segment and mode, can_ids or feature");
    else if (!seg != !mode)
        err_at(c, seg ? seg : mode, "quarantine segment and mode go together");
    if (!ids)
        return;
    if (ids->type != YAML_SEQUENCE_NODE || nitems(ids) == 0 || nitems(ids) > PB_CAN_IDS_MAX) {
        err_at(c, ids, "quarantine can_ids must be a list of 1..%d CAN ids", PB_CAN_IDS_MAX);
        return;
    }
    for (yaml_node_item_t *it = ids->data.sequence.items.start;
         it < ids->data.sequence.items.top; it++) {
        yaml_node_t *e = node(c, *it);
        if (!is_json_string(c, e) || !is_can_id(scalar(e)))
            err_at(c, e, "quarantine can_ids: %s%s is not a CAN id written as a quoted hex "
                         "string, e.g. \"0x123\"",
                   e->type == YAML_SCALAR_NODE ? "" : "this", scalar(e) ? scalar(e) : "");
    }
}

/* ---- vehicle_state ------------------------------------------------------------------ */

static const char *const vstate_keys[] = {"speed_kph"};
static const char *const gate_op_names[] = {"lt", "lte", "gt", "gte", "eq"};

static void gate_op_pair(ctx_t *c, size_t ki, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    vsoc_gate_t *g = arg;
    if (g->op != VSOC_GATE_NONE) {
        err_at(c, k, "speed_kph takes exactly one comparison (lt, lte, gt, gte or eq)");
        g->op = VSOC_GATE_NONE;
        g->speed_kph = NAN; /* marks the gate as failed */
        return;
    }
    if (isnan(g->speed_kph))
        return;
    const char *s = scalar(v);
    double d;
    if (!s || is_null(v) || vsoc_parse_number(s, &d) != 0) {
        err_at(c, v, "speed_kph %s needs a number, not %s", gate_op_names[ki],
               s && !is_null(v) ? s : type_name(v));
        g->speed_kph = NAN;
        return;
    }
    if (d < 0 || d > PB_SPEED_MAX) {
        err_at(c, v, "speed_kph %s %s is outside 0..%g km/h", gate_op_names[ki], s,
               PB_SPEED_MAX);
        g->speed_kph = NAN;
        return;
    }
    if (ki == 0 && d == 0) {
        err_at(c, v, "speed_kph lt 0 never holds: the command would never be applied (use "
                     "lte 0 for a stopped vehicle)");
        g->speed_kph = NAN;
        return;
    }
    g->op = (vsoc_gate_op_t)(VSOC_GATE_LT + ki);
    g->speed_kph = d;
}

static void vstate_pair(ctx_t *c, size_t ki, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    (void)ki;
    (void)k;
    vsoc_gate_t *g = arg;
    if (v->type != YAML_MAPPING_NODE) {
        err_at(c, v, "speed_kph must be a map with one comparison, e.g. {lte: 0}");
        g->speed_kph = NAN;
        return;
    }
    int before = c->errors;
    each_pair(c, v, gate_op_names, 5, "speed_kph", gate_op_pair, g);
    if (g->op == VSOC_GATE_NONE && !isnan(g->speed_kph)) {
        if (c->errors == before)
            err_at(c, v, "speed_kph needs one comparison (lt, lte, gt, gte or eq)");
        g->speed_kph = NAN;
    }
}

/* The gate, or op NONE after reporting. */
static vsoc_gate_t compile_gate(ctx_t *c, yaml_node_t *v)
{
    vsoc_gate_t g = {VSOC_GATE_NONE, 0};
    if (v->type != YAML_MAPPING_NODE) {
        err_at(c, v, "vehicle_state must be a map, e.g. {speed_kph: {lte: 0}}");
        return g;
    }
    int before = c->errors;
    each_pair(c, v, vstate_keys, 1, "vehicle_state", vstate_pair, &g);
    if (g.op == VSOC_GATE_NONE && c->errors == before)
        err_at(c, v, "vehicle_state needs speed_kph, e.g. {speed_kph: {lte: 0}}");
    if (g.op == VSOC_GATE_NONE)
        g.speed_kph = 0;
    return g;
}

/* ---- steps -------------------------------------------------------------------------- */

enum {
    SK_ID, SK_ACTION, SK_ARGS, SK_APPROVAL, SK_APPROVAL_TIMEOUT, SK_ACK_TIMEOUT, SK_RETRIES,
    SK_ON_FAILURE, SK_TTL, SK_EXPIRES, SK_VEHICLE_STATE, SK_N
};
static const char *const step_keys[SK_N] = {
    "id", "action", "args", "approval", "approval_timeout", "ack_timeout", "retries",
    "on_failure", "ttl", "expires", "vehicle_state",
};
static const char *const approval_names[] = {"auto", "required", "two_person"};
static const char *const onfail_names[] = {"abort", "continue", "escalate"};

_Static_assert(SK_N <= KEYS_MAX, "a step's keys fit in key_nodes_t");

/* Per-playbook facts the playbook-level checks need. */
typedef struct step_facts {
    yaml_node_t *action;   /* the action's value node */
    int compiled;
} step_facts_t;

static void compile_step(ctx_t *c, yaml_node_t *m, step_facts_t *facts)
{
    memset(facts, 0, sizeof *facts);
    pb_item_t *it = c->it;
    vsoc_pb_step_t *s = &it->steps[it->p.nsteps++];
    memset(s, 0, sizeof *s);
    s->line = (int)m->start_mark.line + 1;
    s->col = (int)m->start_mark.column + 1;
    s->on_failure = VSOC_ONFAIL_ABORT;
    if (m->type != YAML_MAPPING_NODE) {
        err_at(c, m, "a step must be a map with id and action, not %s", type_name(m));
        return;
    }
    key_nodes_t sn;
    memset(&sn, 0, sizeof sn);
    int before = c->errors;
    each_pair(c, m, step_keys, SK_N, "step", collect_pair, &sn);

    const char *id = NULL;
    if (!sn.v[SK_ID]) {
        err_at(c, m, "step needs an 'id'");
    } else if ((id = expect_string(c, sn.v[SK_ID], "step id"))) {
        if (!valid_id(id, 0)) {
            err_at(c, sn.v[SK_ID], "step id '%s' may only use a-z, 0-9, '_' and '-' (at most "
                                   "%d characters)", id, VSOC_ID_MAX);
            id = NULL;
        } else {
            for (size_t i = 0; i + 1 < it->p.nsteps; i++) {
                if (it->steps[i].id && !strcmp(it->steps[i].id, id)) {
                    err_at(c, sn.v[SK_ID], "duplicate step id '%s' (first at line %d)", id,
                           it->steps[i].line);
                    id = NULL;
                    break;
                }
            }
        }
    }
    int have_action = 0;
    if (!sn.v[SK_ACTION]) {
        err_at(c, m, "step needs an 'action' (quarantine, release, collect_logs, "
                     "rotate_credentials, notify or escalate)");
    } else {
        int a = choice(c, sn.v[SK_ACTION], "action", action_names, NACTIONS);
        if (a >= 0) {
            s->action = (vsoc_action_t)a;
            have_action = 1;
            facts->action = sn.v[SK_ACTION];
        }
    }
    int cmd = have_action && vsoc_action_is_command(s->action);
    /* Keys that shape a command make no sense on a notification: say so rather than let
     * the analyst believe a notify waits for approval. */
    static const int cmd_only[] = {SK_APPROVAL, SK_APPROVAL_TIMEOUT, SK_ACK_TIMEOUT,
                                   SK_RETRIES, SK_TTL, SK_EXPIRES, SK_VEHICLE_STATE};
    for (size_t i = 0; i < sizeof cmd_only / sizeof cmd_only[0]; i++) {
        int ki = cmd_only[i];
        if (have_action && !cmd && sn.k[ki]) {
            err_at(c, sn.k[ki], "'%s' applies only to commands sent to the vehicle "
                                "(quarantine, release, collect_logs, rotate_credentials), "
                                "not to %s", step_keys[ki], vsoc_action_name(s->action));
            sn.k[ki] = sn.v[ki] = NULL;
        }
    }

    if (sn.v[SK_ARGS])
        s->args = compile_args(c, sn.v[SK_ARGS]);
    else
        s->args = dup_or_oom(c, m, "{}");
    if (s->args && have_action &&
        (s->action == VSOC_ACTION_QUARANTINE || s->action == VSOC_ACTION_RELEASE))
        check_command_args(c, s->action, m, is_null(sn.v[SK_ARGS]) ? NULL : sn.v[SK_ARGS]);

    int approval_ok = 1;
    if (sn.v[SK_APPROVAL]) {
        int a = choice(c, sn.v[SK_APPROVAL], "approval", approval_names, 3);
        if (a >= 0)
            s->approval = (vsoc_approval_t)a;
        approval_ok = a >= 0;
    }
    if (sn.v[SK_APPROVAL_TIMEOUT]) {
        if (s->approval == VSOC_APPROVAL_AUTO && approval_ok)
            warn_at(c, sn.k[SK_APPROVAL_TIMEOUT],
                    "approval_timeout has no effect: approval is auto (the command is sent "
                    "at once)");
        else
            duration(c, sn.v[SK_APPROVAL_TIMEOUT], "approval_timeout", 1, PB_DURATION_MAX,
                     &s->approval_timeout_s);
    }
    if (cmd && s->approval != VSOC_APPROVAL_AUTO && !s->approval_timeout_s)
        s->approval_timeout_s = 15 * 60;

    if (cmd)
        s->ack_timeout_s = 60;
    if (sn.v[SK_ACK_TIMEOUT])
        duration(c, sn.v[SK_ACK_TIMEOUT], "ack_timeout", 1, PB_DURATION_MAX,
                 &s->ack_timeout_s);
    if (sn.v[SK_RETRIES]) {
        int64_t r;
        if (integer(c, sn.v[SK_RETRIES], "retries", 0, PB_RETRIES_MAX, &r) == 0)
            s->retries = (int)r;
    }
    if (sn.v[SK_ON_FAILURE]) {
        int f = choice(c, sn.v[SK_ON_FAILURE], "on_failure", onfail_names, 3);
        if (f >= 0)
            s->on_failure = (vsoc_onfail_t)f;
    }
    int quarantine = have_action && s->action == VSOC_ACTION_QUARANTINE;
    if (sn.v[SK_TTL]) {
        duration(c, sn.v[SK_TTL], "ttl", 1,
                 quarantine ? PB_QUARANTINE_TTL_MAX : PB_DURATION_MAX, &s->ttl_s);
    } else if (quarantine) {
        /* The agent lifts a quarantine by itself when its ttl ends: without one, a vehicle
         * that loses its connection stays isolated for good. */
        err_at(c, m, "step '%s': quarantine needs a ttl (at most 24h) so that the vehicle "
                     "lifts it by itself", id ? id : "?");
    }
    int64_t min_expires = s->ack_timeout_s * (s->retries + 1);
    if (sn.v[SK_EXPIRES]) {
        int64_t e;
        if (duration(c, sn.v[SK_EXPIRES], "expires", 1, PB_DURATION_MAX, &e) == 0) {
            char a[32], b[32];
            vsoc_playbook_duration(min_expires, a, sizeof a);
            vsoc_playbook_duration(s->ack_timeout_s, b, sizeof b);
            if (e <= min_expires)
                err_at(c, sn.v[SK_EXPIRES],
                       "expires must be more than ack_timeout x (retries + 1) = %s x %d = %s: "
                       "later resends would arrive expired",
                       b, s->retries + 1, a);
            else
                s->expires_s = e;
        }
    }
    if (cmd && !s->expires_s)
        s->expires_s = min_expires + 60;
    if (sn.v[SK_VEHICLE_STATE])
        s->gate = compile_gate(c, sn.v[SK_VEHICLE_STATE]);

    if (id)
        s->id = dup_or_oom(c, sn.v[SK_ID], id);
    if (c->errors == before && s->id && s->args && have_action)
        facts->compiled = 1;
}

/* ---- the playbook ------------------------------------------------------------------- */

enum { PK_ID, PK_TITLE, PK_DESCRIPTION, PK_TRIGGER, PK_STEPS, PK_LIMITS, PK_N };
static const char *const pb_keys[PK_N] = {"id",      "title", "description",
                                          "trigger", "steps", "limits"};
static const char *const trigger_keys[] = {"rules", "min_level", "cooldown"};
static const char *const limits_keys[] = {"max_vehicles_per_hour"};
static const char *const level_names[] = {"informational", "low", "medium", "high",
                                          "critical"};

_Static_assert(PK_N <= KEYS_MAX, "a playbook's keys fit in key_nodes_t");

static void trigger_rules(ctx_t *c, yaml_node_t *v)
{
    pb_item_t *it = c->it;
    if (v->type != YAML_SEQUENCE_NODE || nitems(v) == 0) {
        err_at(c, v, "trigger rules must be a non-empty list of rule id globs, e.g. "
                     "[\"vsoc.can.*\"]");
        return;
    }
    size_t n = nitems(v);
    it->rules = calloc(n, sizeof *it->rules);
    it->rule_pos = calloc(n, sizeof *it->rule_pos);
    if (!it->rules || !it->rule_pos) {
        oom(c, v);
        return;
    }
    for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top;
         i++) {
        yaml_node_t *g = node(c, *i);
        const char *s = expect_string(c, g, "a trigger rule glob");
        if (!s)
            continue;
        const char *p = s;
        while (*p && glob_char((unsigned char)*p))
            p++;
        if (!*s || *p) {
            err_at(c, g, "trigger rule glob '%s' may only use letters, digits, '.', '_', '-', "
                         "'*' and '?'", s);
            continue;
        }
        char *d = dup_or_oom(c, g, s);
        if (!d)
            continue;
        it->rule_pos[it->p.nrules] = (pos_t){(int)g->start_mark.line + 1,
                                             (int)g->start_mark.column + 1};
        it->rules[it->p.nrules++] = d;
    }
}

static void trigger_pair(ctx_t *c, size_t ki, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    (void)k;
    (void)arg;
    vsoc_playbook_t *p = &c->it->p;
    if (ki == 0) {
        trigger_rules(c, v);
    } else if (ki == 1) {
        int l = choice(c, v, "min_level", level_names, 5);
        if (l >= 0)
            p->min_level = vsoc_level_from_name(level_names[l]);
    } else {
        duration(c, v, "cooldown", 0, PB_DURATION_MAX, &p->cooldown_s);
    }
}

static void limits_pair(ctx_t *c, size_t ki, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    (void)ki;
    (void)k;
    (void)arg;
    int64_t n;
    if (integer(c, v, "max_vehicles_per_hour", 1, PB_VEHICLES_MAX, &n) == 0)
        c->it->p.max_vehicles_per_hour = (uint32_t)n;
}

static int mentions_moving(const char *s)
{
    for (; s && *s; s++)
        if (vsoc_eq_lower(s, "moving", 6))
            return 1;
    return 0;
}

/* Compiles one YAML document into c->it. Returns 0, or -1 when it has errors (all
 * reported). */
static int compile_playbook(ctx_t *c, yaml_node_t *root)
{
    pb_item_t *it = c->it;
    vsoc_playbook_t *p = &it->p;
    p->line = (int)root->start_mark.line + 1;
    p->col = (int)root->start_mark.column + 1;
    p->min_level = VSOC_LEVEL_MEDIUM;
    if (!(p->file = strdup(c->file))) {
        oom(c, root);
        return -1;
    }
    if (root->type != YAML_MAPPING_NODE) {
        err_at(c, root, "a playbook must be a map, not %s", type_name(root));
        return -1;
    }
    key_nodes_t pn;
    memset(&pn, 0, sizeof pn);
    each_pair(c, root, pb_keys, PK_N, "playbook", collect_pair, &pn);

    yaml_node_t *v;
    if (!(v = pn.v[PK_ID])) {
        err_at(c, root, "playbook needs an 'id'");
    } else {
        const char *s = expect_string(c, v, "id");
        if (s && !valid_id(s, 1)) {
            err_at(c, v, "playbook id '%s' must start with a-z or 0-9 and use only a-z, 0-9, "
                         "'.', '_' and '-' (at most %d characters)", s, VSOC_ID_MAX);
        } else if (s) {
            p->id = dup_or_oom(c, v, s);
            c->id = p->id ? strdup(s) : NULL;
            c->id_line = (int)v->start_mark.line + 1;
            c->id_col = (int)v->start_mark.column + 1;
        }
    }
    if (!(v = pn.v[PK_TITLE])) {
        err_at(c, root, "playbook needs a 'title'");
    } else {
        const char *s = expect_string(c, v, "title");
        if (s)
            p->title = dup_or_oom(c, v, s);
    }
    if ((v = pn.v[PK_DESCRIPTION])) {
        const char *s = expect_string(c, v, "description");
        if (s)
            p->description = dup_or_oom(c, v, s);
    }
    if (!(v = pn.v[PK_TRIGGER])) {
        err_at(c, root, "playbook needs a 'trigger' with the rules it answers");
    } else if (v->type != YAML_MAPPING_NODE) {
        err_at(c, v, "trigger must be a map, e.g. {rules: [\"vsoc.can.*\"], min_level: high}");
    } else {
        each_pair(c, v, trigger_keys, 3, "trigger", trigger_pair, NULL);
        yaml_node_t *r = NULL;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            const char *k = scalar(node(c, q->key));
            if (k && !strcmp(k, "rules"))
                r = node(c, q->value);
        }
        if (!r)
            err_at(c, v, "trigger needs 'rules' (a list of rule id globs)");
    }
    if ((v = pn.v[PK_LIMITS])) {
        if (v->type != YAML_MAPPING_NODE)
            err_at(c, v, "limits must be a map, e.g. {max_vehicles_per_hour: 50}");
        else
            each_pair(c, v, limits_keys, 1, "limits", limits_pair, NULL);
    }
    step_facts_t *facts = NULL;
    if (!(v = pn.v[PK_STEPS])) {
        err_at(c, root, "playbook needs 'steps'");
    } else if (v->type != YAML_SEQUENCE_NODE || nitems(v) == 0) {
        err_at(c, v, "steps must be a non-empty list of steps");
    } else {
        size_t n = nitems(v);
        it->steps = calloc(n, sizeof *it->steps);
        facts = calloc(n, sizeof *facts);
        if (!it->steps || !facts) {
            oom(c, v);
        } else {
            for (size_t i = 0; i < n; i++)
                compile_step(c, node(c, v->data.sequence.items.start[i]), &facts[i]);
        }
    }
    /* Checks across steps. */
    int quarantined = 0;
    for (size_t i = 0; facts && i < p->nsteps; i++) {
        const vsoc_pb_step_t *s = &it->steps[i];
        if (!facts[i].compiled)
            continue;
        if (s->action == VSOC_ACTION_QUARANTINE) {
            quarantined = 1;
            /* Isolating a segment can take away functions the driver relies on; without a
             * person in the loop only a gate keeps it off a moving vehicle. */
            if (s->approval == VSOC_APPROVAL_AUTO && s->gate.op == VSOC_GATE_NONE &&
                !mentions_moving(p->description))
                warn_at(c, facts[i].action,
                        "step '%s': quarantine while moving: add vehicle_state or say why in "
                        "description", s->id);
        } else if (s->action == VSOC_ACTION_RELEASE && !quarantined) {
            warn_at(c, facts[i].action,
                    "step '%s': release before any quarantine in this playbook lifts what "
                    "other runs applied", s->id);
        }
    }
    p->steps = it->steps;
    p->rules = (const char *const *)it->rules;
    free(facts);
    return c->errors ? -1 : 0;
}

/* ---- files -------------------------------------------------------------------------- */

/* Playbooks compiled so far, and every id seen (compiled or not), in load order. */
typedef struct pb_vec {
    pb_item_t *v;
    size_t n, cap;
    vsoc_yamlfile_ids_t seen;
    size_t nfiles;
    vsoc_diags_t *d;
    int oom;
} pb_vec_t;

/* vsoc_yamlfile_each_doc's callback for one file: name and text outlive the call. */
typedef struct pb_text {
    const char *name;
    pb_vec_t *out;
} pb_text_t;

static int load_doc(void *arg, yaml_document_t *doc, yaml_node_t *root)
{
    pb_text_t *t = arg;
    pb_vec_t *out = t->out;
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        pb_item_t *nv = realloc(out->v, cap * sizeof *nv);
        if (!nv) {
            out->oom = 1;
            return -1;
        }
        out->v = nv;
        out->cap = cap;
    }
    pb_item_t *it = &out->v[out->n];
    memset(it, 0, sizeof *it);
    ctx_t c = {t->name, doc, out->d, 0, it, NULL, 0, 0};
    int rc = compile_playbook(&c, root);
    if (c.id &&
        vsoc_yamlfile_ids_add(&out->seen, out->d, "playbook", c.id, t->name, c.id_line,
                              c.id_col) != 0)
        out->oom = 1;
    if (rc == 0)
        out->n++;
    else
        item_fini(it);
    return 0;
}

static void load_text(const char *name, const unsigned char *text, size_t len, pb_vec_t *out)
{
    pb_text_t t = {name, out};
    vsoc_yamlfile_each_doc(name, text, len, out->d, load_doc, &t);
}

/* vsoc_yamlfile_load_path's callback: counts the files read. */
static void load_file(void *arg, const char *name, const unsigned char *text, size_t len)
{
    pb_vec_t *out = arg;
    out->nfiles++;
    load_text(name, text, len, out);
}

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const pb_item_t *)a)->p.id, ((const pb_item_t *)b)->p.id);
}

static vsoc_playbooks_t *finish(pb_vec_t *pv)
{
    vsoc_yamlfile_ids_fini(&pv->seen);
    vsoc_playbooks_t *s = calloc(1, sizeof *s);
    if (!s || pv->oom)
        goto fail;
    /* Duplicate ids were reported by vsoc_yamlfile_ids_add; keep the first playbook of each
     * id. */
    size_t keep = 0;
    for (size_t i = 0; i < pv->n; i++) {
        size_t j;
        for (j = 0; j < keep; j++)
            if (!strcmp(pv->v[j].p.id, pv->v[i].p.id))
                break;
        if (j < keep)
            item_fini(&pv->v[i]);
        else
            pv->v[keep++] = pv->v[i];
    }
    if (keep)
        qsort(pv->v, keep, sizeof *pv->v, item_cmp);
    s->v = pv->v;
    s->n = keep;
    s->nfiles = pv->nfiles;
    return s;
fail:
    for (size_t i = 0; i < pv->n; i++)
        item_fini(&pv->v[i]);
    free(pv->v);
    free(s);
    return NULL;
}

vsoc_playbooks_t *vsoc_playbooks_load(const char *const *paths, size_t npaths,
                                      vsoc_diags_t *d)
{
    pb_vec_t pv = {.d = d};
    for (size_t i = 0; i < npaths; i++)
        if (vsoc_yamlfile_load_path(paths[i], d, load_file, &pv) != 0)
            pv.oom = 1;
    return finish(&pv);
}

vsoc_playbooks_t *vsoc_playbooks_load_string(const char *name, const char *text, size_t len,
                                             vsoc_diags_t *d)
{
    pb_vec_t pv = {.nfiles = 1, .d = d};
    load_text(name, (const unsigned char *)text, len, &pv);
    return finish(&pv);
}

/* ---- trigger globs against a rule set ------------------------------------------------ */

size_t vsoc_playbooks_check_rules(const vsoc_playbooks_t *s, const char *const *rule_ids,
                                  const vsoc_level_t *levels, size_t n, const char *from,
                                  vsoc_diags_t *d)
{
    size_t found = 0;
    for (size_t i = 0; s && i < s->n; i++) {
        const pb_item_t *it = &s->v[i];
        for (size_t g = 0; g < it->p.nrules; g++) {
            size_t matched = 0, reachable = 0;
            for (size_t r = 0; r < n; r++) {
                if (vsoc_glob_match(it->p.rules[g], rule_ids[r])) {
                    matched++;
                    reachable += levels[r] >= it->p.min_level;
                }
            }
            if (!matched)
                vsoc_diag_add(d, VSOC_DIAG_WARNING, it->p.file, it->rule_pos[g].line,
                              it->rule_pos[g].col, "trigger rule glob '%s' matches no rule "
                              "of %s", it->p.rules[g], from);
            else if (!reachable)
                vsoc_diag_add(d, VSOC_DIAG_WARNING, it->p.file, it->rule_pos[g].line,
                              it->rule_pos[g].col, "trigger rule glob '%s' matches only "
                              "rules below min_level %s: it never starts this playbook",
                              it->p.rules[g], vsoc_level_name(it->p.min_level));
            found += !matched || !reachable;
        }
    }
    return found;
}
