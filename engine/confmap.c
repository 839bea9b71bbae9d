/* confmap.c: the table-driven configuration loader (confmap.h).
 *
 * A load walks the YAML document once: a key that names a table entry is converted into
 * the struct; a key that is a section (a prefix of entries) is walked into; anything else
 * is reported. Afterwards every entry the file did not set takes its default through the
 * same converters, so the table's default text means exactly what the same text in a file
 * would. Invariant: every table field of the target is written exactly once per load (it
 * is zeroed first), so freeing after any load is right. */
#include "confmap.h"
#include "util.h"
#include "vsoc.h"
#include "yamlfile.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* A value quoted in a diagnostic is cut here: enough to recognise, not a screenful. */
#define SHOW_MAX 60
/* A configuration file is a page or two; a bigger input is a mistake (-c /dev/zero). */
#define FILE_MAX (1 << 20)
/* Comments in the sample are wrapped to this width. */
#define WRAP_COLS 92

/* A section met in the file, for locating "missing required key" at its parent. */
typedef struct section {
    char *path;
    int line, col;
    int bad; /* not a mapping, reported: the keys under it are not missing too */
} section_t;

typedef struct ld {
    const vsoc_confmap_entry_t *t;
    size_t n;
    char *obj;
    const char *file;         /* diagnostics name */
    const char *base;         /* folder relative paths are resolved against, or NULL */
    yaml_document_t *doc;     /* the document being walked */
    vsoc_diags_t *d;
    vsoc_confmap_loc_t *locs; /* n */
    unsigned char *set;       /* n: the file gave the key */
    section_t *secs;
    size_t nsecs, capsecs;
    int docs;
    int root_bad;   /* no mapping was read: no key is reported missing */
    int defaulting; /* converting a default: positions are not the file's */
    int oom;
} ld_t;

/* ---- small helpers ------------------------------------------------------------------ */

static void err(ld_t *c, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err(ld_t *c, int line, int col, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vsoc_diag_add(c->d, VSOC_DIAG_ERROR, c->file, line, col, "%s", msg);
}

static int line_of(const yaml_node_t *nd)
{
    return (int)nd->start_mark.line + 1;
}

static int col_of(const yaml_node_t *nd)
{
    return (int)nd->start_mark.column + 1;
}

static yaml_node_t *node(ld_t *c, int i)
{
    return yaml_document_get_node(c->doc, i);
}

static void *field(const ld_t *c, size_t i)
{
    return c->obj + c->t[i].offset;
}

/* A plain empty, "~" or "null" scalar: "key:" with nothing after it. */
static int is_null(const yaml_node_t *v)
{
    if (!v || v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)v->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *scalar(const yaml_node_t *v)
{
    return v && v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : NULL;
}

/* s cut to SHOW_MAX bytes for a message. */
static const char *show(const char *s, char *buf, size_t n)
{
    size_t len = strlen(s);
    if (len <= SHOW_MAX)
        return s;
    snprintf(buf, n, "%.*s...", SHOW_MAX, s);
    return buf;
}

/* What a scalar is, for "expected X, got Y". */
static const char *scalar_kind(const char *text, int null, char *buf, size_t n)
{
    if (null || !text)
        return "nothing";
    char cut[SHOW_MAX + 8];
    snprintf(buf, n, "'%s'", show(text, cut, sizeof cut));
    return buf;
}

/* What a node is, for "expected X, got Y". */
static const char *kind(const yaml_node_t *v, char *buf, size_t n)
{
    if (v && v->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (v && v->type == YAML_SEQUENCE_NODE)
        return "a sequence";
    return scalar_kind(scalar(v), !v || is_null(v), buf, n);
}

static size_t count_names(const char *const *names)
{
    size_t k = 0;
    while (names && names[k])
        k++;
    return k;
}

/* Duration as the largest unit that divides it: 200000 -> "200ms", 900000000 -> "15m". */
static void fmt_duration(int64_t us, char *buf, size_t n)
{
    static const struct {
        int64_t us;
        const char *unit;
    } units[] = {{86400000000LL, "d"}, {3600000000LL, "h"}, {60000000LL, "m"},
                 {1000000LL, "s"},     {1000LL, "ms"},      {1LL, "us"}};
    if (us == 0) {
        snprintf(buf, n, "0s");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (us % units[i].us == 0) {
            snprintf(buf, n, "%lld%s", (long long)(us / units[i].us), units[i].unit);
            return;
        }
    }
}

/* The inclusive range an INT entry accepts: its own within int's. */
static void int_range(const vsoc_confmap_entry_t *e, int64_t *lo, int64_t *hi)
{
    *lo = INT_MIN;
    *hi = INT_MAX;
    if (e->min < e->max) {
        if (e->min > *lo)
            *lo = e->min;
        if (e->max < *hi)
            *hi = e->max;
    }
}

/* The type as the docs' type column shows it. */
static void type_doc(const vsoc_confmap_entry_t *e, char *buf, size_t n)
{
    char a[32], b[32];
    switch (e->type) {
    case VSOC_CONFMAP_STRING:
        snprintf(buf, n, "string");
        return;
    case VSOC_CONFMAP_PATH:
        snprintf(buf, n, "path");
        return;
    case VSOC_CONFMAP_LIST:
        snprintf(buf, n, "list of strings");
        return;
    case VSOC_CONFMAP_PATH_LIST:
        snprintf(buf, n, "list of paths");
        return;
    case VSOC_CONFMAP_INT:
        if (e->min < e->max)
            snprintf(buf, n, "integer %lld..%lld", (long long)e->min, (long long)e->max);
        else
            snprintf(buf, n, "integer");
        return;
    case VSOC_CONFMAP_BOOL:
        snprintf(buf, n, "bool");
        return;
    case VSOC_CONFMAP_DURATION:
        if (e->min < e->max) {
            fmt_duration(e->min, a, sizeof a);
            fmt_duration(e->max, b, sizeof b);
            snprintf(buf, n, "duration %s..%s", a, b);
        } else {
            snprintf(buf, n, "duration");
        }
        return;
    case VSOC_CONFMAP_ENUM: {
        size_t used = (size_t)snprintf(buf, n, "one of ");
        for (size_t k = 0; e->names && e->names[k] && used < n; k++)
            used += (size_t)snprintf(buf + used, n - used, "%s%s", k ? ", " : "", e->names[k]);
        return;
    }
    case VSOC_CONFMAP_MAP:
        snprintf(buf, n, "map of string to string");
        return;
    }
    snprintf(buf, n, "?");
}

/* What a value of the entry must look like, for error messages. */
static void expected(const vsoc_confmap_entry_t *e, char *buf, size_t n)
{
    char a[32], b[32];
    int64_t lo, hi;
    switch (e->type) {
    case VSOC_CONFMAP_STRING:
        snprintf(buf, n, "a string");
        return;
    case VSOC_CONFMAP_PATH:
        snprintf(buf, n, "a path");
        return;
    case VSOC_CONFMAP_LIST:
        snprintf(buf, n, "a string or a list of strings");
        return;
    case VSOC_CONFMAP_PATH_LIST:
        snprintf(buf, n, "a path or a list of paths");
        return;
    case VSOC_CONFMAP_INT:
        int_range(e, &lo, &hi);
        snprintf(buf, n, "an integer %lld..%lld", (long long)lo, (long long)hi);
        return;
    case VSOC_CONFMAP_BOOL:
        snprintf(buf, n, "true or false (or yes/no, on/off)");
        return;
    case VSOC_CONFMAP_DURATION:
        if (e->min < e->max) {
            fmt_duration(e->min, a, sizeof a);
            fmt_duration(e->max, b, sizeof b);
            snprintf(buf, n, "a duration from %s to %s, such as 500ms or 15m", a, b);
        } else {
            snprintf(buf, n, "a duration such as 500ms or 15m");
        }
        return;
    case VSOC_CONFMAP_ENUM:
        type_doc(e, buf, n);
        return;
    case VSOC_CONFMAP_MAP:
        snprintf(buf, n, "a mapping of names to values");
        return;
    }
    snprintf(buf, n, "?");
}

static void type_error(ld_t *c, size_t i, const char *got, int line, int col)
{
    char exp[256];
    expected(&c->t[i], exp, sizeof exp);
    err(c, line, col, "%s: expected %s, got %s", c->t[i].key, exp, got);
}

static char *xstrdup(ld_t *c, const char *s)
{
    char *r = strdup(s);
    if (!r)
        c->oom = 1;
    return r;
}

/* A PATH value: relative ones joined to the base folder; "" stays "". */
static char *resolve(ld_t *c, const char *s)
{
    if (!c->base || !*s || s[0] == '/')
        return xstrdup(c, s);
    size_t bl = strlen(c->base), sl = strlen(s);
    char *r = malloc(bl + sl + 2);
    if (!r) {
        c->oom = 1;
        return NULL;
    }
    memcpy(r, c->base, bl);
    size_t k = bl;
    if (bl && c->base[bl - 1] != '/')
        r[k++] = '/';
    memcpy(r + k, s, sl + 1);
    return r;
}

static size_t field_size(vsoc_confmap_type_t type)
{
    switch (type) {
    case VSOC_CONFMAP_STRING:
    case VSOC_CONFMAP_PATH:
        return sizeof(char *);
    case VSOC_CONFMAP_LIST:
    case VSOC_CONFMAP_PATH_LIST:
        return sizeof(vsoc_confmap_list_t);
    case VSOC_CONFMAP_INT:
    case VSOC_CONFMAP_BOOL:
    case VSOC_CONFMAP_ENUM:
        return sizeof(int);
    case VSOC_CONFMAP_DURATION:
        return sizeof(int64_t);
    case VSOC_CONFMAP_MAP:
        return sizeof(vsoc_confmap_map_t);
    }
    return 0;
}

static void field_free(const vsoc_confmap_entry_t *e, void *f)
{
    switch (e->type) {
    case VSOC_CONFMAP_STRING:
    case VSOC_CONFMAP_PATH:
        free(*(char **)f);
        break;
    case VSOC_CONFMAP_LIST:
    case VSOC_CONFMAP_PATH_LIST: {
        vsoc_confmap_list_t *l = f;
        for (size_t k = 0; k < l->n; k++)
            free(l->v[k]);
        free(l->v);
        break;
    }
    case VSOC_CONFMAP_MAP: {
        vsoc_confmap_map_t *m = f;
        for (size_t k = 0; k < m->n; k++) {
            free(m->v[k].key);
            free(m->v[k].value);
        }
        free(m->v);
        break;
    }
    default:
        break;
    }
    memset(f, 0, field_size(e->type));
}

/* ---- converters --------------------------------------------------------------------- */

/* Converts a scalar (null: written as nothing) at line:col into entry i's field. Returns 0,
 * or -1 after reporting. */
static int conv_scalar(ld_t *c, size_t i, const char *text, int null, int line, int col)
{
    char got[SHOW_MAX + 16];
    const vsoc_confmap_entry_t *e = &c->t[i];
    void *f = field(c, i);
    field_free(e, f);
    int required = e->def == NULL;
    switch (e->type) {
    case VSOC_CONFMAP_STRING:
    case VSOC_CONFMAP_PATH: {
        const char *s = null ? "" : text;
        if (required && !*s) {
            err(c, line, col, "%s: needs a value", e->key);
            return -1;
        }
        *(char **)f = e->type == VSOC_CONFMAP_PATH ? resolve(c, s) : xstrdup(c, s);
        return 0;
    }
    case VSOC_CONFMAP_LIST:
    case VSOC_CONFMAP_PATH_LIST: {
        if (null) {
            if (required) {
                err(c, line, col, "%s: needs a value", e->key);
                return -1;
            }
            return 0;
        }
        vsoc_confmap_list_t *l = f;
        if (!(l->v = calloc(1, sizeof *l->v))) {
            c->oom = 1;
            return 0;
        }
        l->v[0] = e->type == VSOC_CONFMAP_PATH_LIST ? resolve(c, text) : xstrdup(c, text);
        l->n = l->v[0] ? 1 : 0;
        return 0;
    }
    case VSOC_CONFMAP_INT: {
        int64_t x, lo, hi;
        int_range(e, &lo, &hi);
        if (null || vsoc_parse_int(text, &x) != 0)
            break;
        if (x < lo || x > hi) {
            err(c, line, col, "%s: %lld is out of range %lld..%lld", e->key, (long long)x,
                (long long)lo, (long long)hi);
            return -1;
        }
        *(int *)f = (int)x;
        return 0;
    }
    case VSOC_CONFMAP_BOOL: {
        static const char *const yes[] = {"true", "yes", "on"};
        static const char *const no[] = {"false", "no", "off"};
        size_t tl = null ? 0 : strlen(text);
        for (size_t k = 0; k < 3; k++) {
            if (tl == strlen(yes[k]) && vsoc_eq_lower(text, yes[k], tl)) {
                *(int *)f = 1;
                return 0;
            }
            if (tl == strlen(no[k]) && vsoc_eq_lower(text, no[k], tl)) {
                *(int *)f = 0;
                return 0;
            }
        }
        break;
    }
    case VSOC_CONFMAP_DURATION: {
        int64_t us;
        if (null || vsoc_parse_duration(text, &us) != 0)
            break;
        if (e->min < e->max && (us < e->min || us > e->max)) {
            char a[32], b[32], x[32];
            fmt_duration(e->min, a, sizeof a);
            fmt_duration(e->max, b, sizeof b);
            fmt_duration(us, x, sizeof x);
            err(c, line, col, "%s: %s is out of range %s..%s", e->key, x, a, b);
            return -1;
        }
        *(int64_t *)f = us;
        return 0;
    }
    case VSOC_CONFMAP_ENUM: {
        size_t nn = count_names(e->names);
        int k = null ? -1 : vsoc_name_index(e->names, nn, text);
        if (k >= 0) {
            *(int *)f = k;
            return 0;
        }
        const char *sug = null ? NULL : vsoc_did_you_mean(text, e->names, nn);
        /* A longer or shorter spelling of a name ("warning" for "warn") is no typo by
         * edit distance but is just as likely meant. */
        for (size_t j = 0; !null && !sug && *text && j < nn; j++) {
            size_t a = strlen(text), b = strlen(e->names[j]);
            if (!strncmp(text, e->names[j], a < b ? a : b))
                sug = e->names[j];
        }
        if (sug) {
            char exp[256];
            expected(e, exp, sizeof exp);
            err(c, line, col, "%s: expected %s, got %s (did you mean '%s'?)", e->key, exp,
                scalar_kind(text, null, got, sizeof got), sug);
            return -1;
        }
        break;
    }
    case VSOC_CONFMAP_MAP:
        if (null) {
            if (required) {
                err(c, line, col, "%s: needs a value", e->key);
                return -1;
            }
            return 0;
        }
        break;
    }
    type_error(c, i, scalar_kind(text, null, got, sizeof got), line, col);
    return -1;
}

static int conv_seq(ld_t *c, size_t i, yaml_node_t *v)
{
    const vsoc_confmap_entry_t *e = &c->t[i];
    if (e->type != VSOC_CONFMAP_LIST && e->type != VSOC_CONFMAP_PATH_LIST) {
        char got[SHOW_MAX + 16];
        type_error(c, i, kind(v, got, sizeof got), line_of(v), col_of(v));
        return -1;
    }
    vsoc_confmap_list_t *l = field(c, i);
    field_free(e, l);
    size_t cap = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (cap && !(l->v = calloc(cap, sizeof *l->v))) {
        c->oom = 1;
        return 0;
    }
    int rc = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *item = node(c, *it);
        if (!item || item->type != YAML_SCALAR_NODE) {
            char got[SHOW_MAX + 16];
            err(c, item ? line_of(item) : line_of(v), item ? col_of(item) : col_of(v),
                "%s: list items must be %s, got %s", e->key,
                e->type == VSOC_CONFMAP_PATH_LIST ? "paths" : "strings",
                kind(item, got, sizeof got));
            rc = -1;
            continue;
        }
        const char *s = is_null(item) ? "" : scalar(item);
        char *x = e->type == VSOC_CONFMAP_PATH_LIST ? resolve(c, s) : xstrdup(c, s);
        if (x)
            l->v[l->n++] = x;
    }
    if (rc == 0 && l->n == 0 && !e->def) {
        err(c, line_of(v), col_of(v), "%s: needs a value", e->key);
        rc = -1;
    }
    return rc;
}

static int conv_map(ld_t *c, size_t i, yaml_node_t *v)
{
    const vsoc_confmap_entry_t *e = &c->t[i];
    if (e->type != VSOC_CONFMAP_MAP) {
        char got[SHOW_MAX + 16];
        type_error(c, i, kind(v, got, sizeof got), line_of(v), col_of(v));
        return -1;
    }
    vsoc_confmap_map_t *m = field(c, i);
    field_free(e, m);
    yaml_node_pair_t *start = v->data.mapping.pairs.start, *top = v->data.mapping.pairs.top;
    size_t cap = (size_t)(top - start);
    if (cap && !(m->v = calloc(cap, sizeof *m->v))) {
        c->oom = 1;
        return 0;
    }
    int rc = 0;
    char got[SHOW_MAX + 16], cut[SHOW_MAX + 8];
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k = node(c, p->key), *val = node(c, p->value);
        const char *ks = scalar(k);
        if (!ks) {
            err(c, k ? line_of(k) : line_of(v), k ? col_of(k) : col_of(v),
                "%s: names must be strings, got %s", e->key, kind(k, got, sizeof got));
            rc = -1;
            continue;
        }
        int dup = 0;
        for (size_t q = 0; q < m->n && !dup; q++) {
            if (!strcmp(m->v[q].key, ks)) {
                err(c, line_of(k), col_of(k), "%s: duplicate name '%s' (first at line %d)",
                    e->key, show(ks, cut, sizeof cut), m->v[q].line);
                dup = 1;
            }
        }
        if (dup) {
            rc = -1;
            continue;
        }
        if (!val || val->type != YAML_SCALAR_NODE) {
            err(c, val ? line_of(val) : line_of(k), val ? col_of(val) : col_of(k),
                "%s.%s: expected a string value, got %s", e->key, show(ks, cut, sizeof cut),
                kind(val, got, sizeof got));
            rc = -1;
            continue;
        }
        vsoc_confmap_pair_t *pr = &m->v[m->n];
        pr->key = xstrdup(c, ks);
        pr->value = xstrdup(c, is_null(val) ? "" : scalar(val));
        pr->line = c->defaulting ? 0 : line_of(k);
        pr->col = c->defaulting ? 0 : col_of(k);
        if (!pr->key || !pr->value) {
            free(pr->key);
            free(pr->value);
            memset(pr, 0, sizeof *pr);
            continue;
        }
        m->n++;
    }
    if (rc == 0 && m->n == 0 && !e->def) {
        err(c, line_of(v), col_of(v), "%s: needs a value", e->key);
        rc = -1;
    }
    return rc;
}

static int conv_node(ld_t *c, size_t i, yaml_node_t *v)
{
    if (v->type == YAML_SEQUENCE_NODE)
        return conv_seq(c, i, v);
    if (v->type == YAML_MAPPING_NODE)
        return conv_map(c, i, v);
    return conv_scalar(c, i, scalar(v), is_null(v), line_of(v), col_of(v));
}

/* Applies entry i's default text. The text is YAML for lists and maps, literal otherwise.
 * Diagnostics (only for a broken table) name the file "confmap". */
static int apply_default(ld_t *c, size_t i)
{
    const vsoc_confmap_entry_t *e = &c->t[i];
    const char *file = c->file;
    c->file = "confmap";
    c->defaulting = 1;
    int rc;
    if (e->type != VSOC_CONFMAP_LIST && e->type != VSOC_CONFMAP_PATH_LIST &&
        e->type != VSOC_CONFMAP_MAP) {
        rc = conv_scalar(c, i, e->def, 0, 0, 0);
        c->file = file;
        c->defaulting = 0;
        return rc;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        c->oom = 1;
        c->file = file;
        c->defaulting = 0;
        return 0;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)e->def, strlen(e->def));
    if (!yaml_parser_load(&parser, &doc)) {
        err(c, 0, 0, "%s: default '%s' is not YAML: %s", e->key, e->def,
            parser.problem ? parser.problem : "syntax error");
        yaml_parser_delete(&parser);
        c->file = file;
        c->defaulting = 0;
        return -1;
    }
    yaml_document_t *saved = c->doc;
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        field_free(e, field(c, i)); /* an empty text: an empty list or map */
        rc = 0;
    } else {
        rc = conv_node(c, i, root);
    }
    c->doc = saved;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    c->file = file;
    c->defaulting = 0;
    return rc;
}

/* ---- walking the file --------------------------------------------------------------- */

/* The entry whose key is key[0..len), or -1. */
static int find_n(const vsoc_confmap_entry_t *t, size_t n, const char *key, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (!strncmp(t[i].key, key, len) && t[i].key[len] == '\0')
            return (int)i;
    return -1;
}

int vsoc_confmap_find(const vsoc_confmap_entry_t *t, size_t n, const char *key)
{
    return find_n(t, n, key, strlen(key));
}

/* 1 when some entry lies under path (path + "."). */
static int is_section(const vsoc_confmap_entry_t *t, size_t n, const char *path, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (!strncmp(t[i].key, path, len) && t[i].key[len] == '.')
            return 1;
    return 0;
}

static void add_section(ld_t *c, const char *path, const yaml_node_t *k)
{
    if (c->nsecs == c->capsecs &&
        vsoc_array_grow((void **)&c->secs, &c->capsecs, c->nsecs, sizeof *c->secs) != 0) {
        c->oom = 1;
        return;
    }
    char *p = xstrdup(c, path);
    if (p)
        c->secs[c->nsecs++] = (section_t){p, line_of(k), col_of(k), 0};
}

/* Reports an unknown key: the closest key of the same section when it looks like a typo,
 * else the one key anywhere whose last name it is (a key put in the wrong section). */
static void unknown_key(ld_t *c, const yaml_node_t *k, const char *prefix, size_t plen,
                        const char *key, const char *full)
{
    char cut[SHOW_MAX + 8];
    size_t fl = strlen(full);
    if (strchr(key, '.') &&
        (find_n(c->t, c->n, full, fl) >= 0 || is_section(c->t, c->n, full, fl))) {
        err(c, line_of(k), col_of(k),
            "unknown key '%s' (write dotted keys nested, one mapping per name)", full);
        return;
    }
    /* The names that may stand here: each entry's next segment under prefix. */
    const char **cands = calloc(c->n + 1, sizeof *cands);
    char **owned = calloc(c->n + 1, sizeof *owned);
    size_t nc = 0;
    const char *sug = NULL;
    if (cands && owned) {
        for (size_t i = 0; i < c->n; i++) {
            const char *ki = c->t[i].key;
            if (strncmp(ki, prefix, plen) != 0)
                continue;
            size_t sl = strcspn(ki + plen, ".");
            int seen = 0;
            for (size_t j = 0; j < nc && !seen; j++)
                seen = strlen(cands[j]) == sl && !strncmp(cands[j], ki + plen, sl);
            if (seen)
                continue;
            if (!(owned[nc] = strndup(ki + plen, sl)))
                break;
            cands[nc] = owned[nc];
            nc++;
        }
        sug = vsoc_did_you_mean(key, cands, nc);
    }
    char where[512];
    if (sug) {
        snprintf(where, sizeof where, "%.*s%s", (int)plen, prefix, sug);
    } else {
        /* The key written in the wrong section: exactly one entry ends with it. */
        int hit = -1, hits = 0;
        size_t kl = strlen(key);
        for (size_t i = 0; i < c->n && kl; i++) {
            const char *ki = c->t[i].key;
            size_t il = strlen(ki);
            if (il > kl && ki[il - kl - 1] == '.' && !strcmp(ki + il - kl, key)) {
                hit = (int)i;
                hits++;
            }
        }
        if (hits == 1)
            snprintf(where, sizeof where, "%s", c->t[hit].key);
        else
            where[0] = '\0';
    }
    if (where[0])
        err(c, line_of(k), col_of(k), "unknown key '%s' (did you mean '%s'?)",
            show(full, cut, sizeof cut), where);
    else
        err(c, line_of(k), col_of(k), "unknown key '%s'", show(full, cut, sizeof cut));
    for (size_t j = 0; owned && j < nc; j++)
        free(owned[j]);
    free(owned);
    free(cands);
}

/* Walks a mapping whose keys are under prefix ("" at the top, else "a.b."). Recursion is
 * bounded by the table's depth: only sections are walked into. */
static void walk(ld_t *c, yaml_node_t *map, const char *prefix)
{
    size_t plen = strlen(prefix);
    char got[SHOW_MAX + 16], cut[SHOW_MAX + 8];
    yaml_node_pair_t *start = map->data.mapping.pairs.start, *top = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = start; p < top && !c->oom; p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        if (!k || !v)
            continue;
        const char *key = scalar(k);
        if (!key) {
            if (plen)
                err(c, line_of(k), col_of(k), "%.*s: keys must be names, got %s",
                    (int)plen - 1, prefix, kind(k, got, sizeof got));
            else
                err(c, line_of(k), col_of(k), "keys must be names, got %s",
                    kind(k, got, sizeof got));
            continue;
        }
        const yaml_node_t *first = NULL;
        for (yaml_node_pair_t *q = start; q < p && !first; q++) {
            const char *kq = scalar(node(c, q->key));
            if (kq && !strcmp(kq, key))
                first = node(c, q->key);
        }
        size_t kl = strlen(key);
        char *full = malloc(plen + kl + 2);
        if (!full) {
            c->oom = 1;
            return;
        }
        memcpy(full, prefix, plen);
        memcpy(full + plen, key, kl + 1);
        if (first) {
            err(c, line_of(k), col_of(k), "duplicate key '%s' (first at line %d)",
                show(full, cut, sizeof cut), line_of(first));
            free(full);
            continue;
        }
        int i = strchr(key, '.') ? -1 : find_n(c->t, c->n, full, plen + kl);
        if (i >= 0) {
            c->set[i] = 1;
            c->locs[i] = (vsoc_confmap_loc_t){line_of(v), col_of(v), 0};
            if (conv_node(c, (size_t)i, v) != 0)
                c->locs[i].bad = 1;
        } else if (!strchr(key, '.') && is_section(c->t, c->n, full, plen + kl)) {
            add_section(c, full, k);
            if (v->type == YAML_MAPPING_NODE) {
                full[plen + kl] = '.';
                full[plen + kl + 1] = '\0';
                walk(c, v, full);
            } else if (!is_null(v)) {
                err(c, line_of(v), col_of(v), "%s: expected a mapping of settings, got %s",
                    full, kind(v, got, sizeof got));
                if (c->nsecs && !strcmp(c->secs[c->nsecs - 1].path, full))
                    c->secs[c->nsecs - 1].bad = 1;
            }
        } else {
            unknown_key(c, k, prefix, plen, key, full);
        }
        free(full);
    }
}

static int on_doc(void *ctx, yaml_document_t *doc, yaml_node_t *root)
{
    ld_t *c = ctx;
    char got[SHOW_MAX + 16];
    if (++c->docs > 1) {
        err(c, line_of(root), col_of(root),
            "a configuration file holds one YAML document; this is another");
        return 1;
    }
    c->doc = doc;
    if (root->type == YAML_MAPPING_NODE)
        walk(c, root, "");
    else if (!is_null(root)) {
        err(c, line_of(root), col_of(root), "expected a mapping of settings, got %s",
            kind(root, got, sizeof got));
        c->root_bad = 1;
    }
    c->doc = NULL;
    return 0;
}

/* Reports a missing required key at the deepest of its sections the file has, else 1:1;
 * not when one of its sections was itself reported as no mapping. */
static void missing(ld_t *c, size_t i)
{
    const char *key = c->t[i].key;
    int line = 1, col = 1;
    size_t best = 0;
    if (c->root_bad)
        return;
    for (size_t s = 0; s < c->nsecs; s++) {
        size_t sl = strlen(c->secs[s].path);
        if (strncmp(key, c->secs[s].path, sl) != 0 || key[sl] != '.')
            continue;
        if (c->secs[s].bad)
            return;
        if (sl > best) {
            best = sl;
            line = c->secs[s].line;
            col = c->secs[s].col;
        }
    }
    err(c, line, col, "missing required key '%s'", key);
}

static void zero_fields(const vsoc_confmap_entry_t *t, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++)
        memset((char *)obj + t[i].offset, 0, field_size(t[i].type));
}

int vsoc_confmap_load_string(const vsoc_confmap_entry_t *t, size_t n, void *obj,
                             const char *name, const char *text, size_t len,
                             const char *base_dir, vsoc_confmap_loc_t *locs, vsoc_diags_t *d)
{
    zero_fields(t, n, obj);
    if (locs)
        memset(locs, 0, n * sizeof *locs);
    if (vsoc_confmap_check(t, n, d) != 0)
        return VSOC_EINVAL;
    size_t errors0 = vsoc_diags_errors(d);
    ld_t c = {.t = t, .n = n, .obj = obj, .file = name ? name : "<config>", .base = base_dir,
              .d = d};
    c.locs = calloc(n + 1, sizeof *c.locs);
    c.set = calloc(n + 1, 1);
    if (!c.locs || !c.set) {
        c.oom = 1;
        goto done;
    }
    vsoc_yamlfile_each_doc(c.file, (const unsigned char *)text, len, d, on_doc, &c);
    /* A first document that does not parse was never read: its keys are not missing. */
    if (c.docs == 0 && vsoc_diags_errors(d) > errors0)
        c.root_bad = 1;
    for (size_t i = 0; i < n && !c.oom; i++) {
        if (c.set[i])
            continue;
        if (!t[i].def) {
            missing(&c, i);
            c.locs[i].bad = 1;
        } else if (apply_default(&c, i) != 0) {
            c.locs[i].bad = 1;
        }
    }
    if (locs)
        memcpy(locs, c.locs, n * sizeof *locs);
done:
    for (size_t s = 0; s < c.nsecs; s++)
        free(c.secs[s].path);
    free(c.secs);
    free(c.locs);
    free(c.set);
    if (c.oom) {
        vsoc_diag_add(d, VSOC_DIAG_ERROR, c.file, 0, 0, "out of memory");
        return VSOC_ENOMEM;
    }
    return vsoc_diags_errors(d) > errors0 ? VSOC_EPARSE : 0;
}

/* The folder of path, absolute when it can be made so. Caller frees. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return NULL;
    char *abs = realpath(dir, NULL);
    if (!abs)
        return dir; /* kept as written: the file was read through it, so it resolves now */
    free(dir);
    return abs;
}

int vsoc_confmap_load_file(const vsoc_confmap_entry_t *t, size_t n, void *obj, const char *path,
                           vsoc_confmap_loc_t *locs, vsoc_diags_t *d)
{
    zero_fields(t, n, obj);
    if (locs)
        memset(locs, 0, n * sizeof *locs);
    FILE *f = fopen(path, "rb");
    if (!f) {
        vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0, "cannot open: %s", strerror(errno));
        return VSOC_EIO;
    }
    char *buf = malloc(FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0, "out of memory");
        return VSOC_ENOMEM;
    }
    size_t len = fread(buf, 1, FILE_MAX + 1, f);
    int rd_errno = ferror(f) ? errno : 0;
    fclose(f);
    if (rd_errno || len > FILE_MAX) {
        if (rd_errno)
            vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0, "cannot read: %s",
                          strerror(rd_errno));
        else
            vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0,
                          "larger than %d bytes: not a configuration file", FILE_MAX);
        free(buf);
        return VSOC_EIO;
    }
    char *dir = folder_of(path);
    if (!dir) {
        free(buf);
        vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0, "out of memory");
        return VSOC_ENOMEM;
    }
    int rc = vsoc_confmap_load_string(t, n, obj, path, buf, len, dir, locs, d);
    free(dir);
    free(buf);
    return rc;
}

void vsoc_confmap_free(const vsoc_confmap_entry_t *t, size_t n, void *obj)
{
    if (!obj)
        return;
    for (size_t i = 0; i < n; i++)
        field_free(&t[i], (char *)obj + t[i].offset);
}

/* ---- checking the table ------------------------------------------------------------- */

int vsoc_confmap_check(const vsoc_confmap_entry_t *t, size_t n, vsoc_diags_t *d)
{
    size_t errors0 = vsoc_diags_errors(d);
    for (size_t i = 0; i < n; i++) {
        const vsoc_confmap_entry_t *e = &t[i];
        const char *key = e->key ? e->key : "";
        int ok = *key && key[0] != '.' && key[strlen(key) - 1] != '.' && !strstr(key, "..");
        for (const char *p = key; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.';
        if (!ok) {
            vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0, "entry %zu: bad key '%s'", i,
                          key);
            continue;
        }
        if (!e->desc || !*e->desc)
            vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0, "%s: no description", key);
        if ((unsigned)e->type > VSOC_CONFMAP_MAP) {
            vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0, "%s: unknown type %d", key,
                          (int)e->type);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (!t[j].key)
                continue;
            size_t lj = strlen(t[j].key), li = strlen(key);
            if (!strcmp(t[j].key, key))
                vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0, "%s: listed twice", key);
            else if ((lj < li && !strncmp(key, t[j].key, lj) && key[lj] == '.') ||
                     (li < lj && !strncmp(t[j].key, key, li) && t[j].key[li] == '.'))
                vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0,
                              "%s: both a key and a section ('%s')", key, t[j].key);
        }
        if (e->type == VSOC_CONFMAP_ENUM && count_names(e->names) == 0)
            vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0, "%s: an enum without names",
                          key);
        if (e->type == VSOC_CONFMAP_INT && e->min < e->max &&
            (e->min < INT_MIN || e->max > INT_MAX))
            vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0, "%s: range beyond int", key);
        if (e->min > e->max)
            vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0, "%s: min %lld > max %lld", key,
                          (long long)e->min, (long long)e->max);
        if (!e->def || (e->type == VSOC_CONFMAP_ENUM && count_names(e->names) == 0))
            continue;
        /* The default must parse, and within range: convert it into scratch space. */
        union {
            char *s;
            vsoc_confmap_list_t l;
            vsoc_confmap_map_t m;
            int i;
            int64_t us;
        } scratch;
        vsoc_confmap_entry_t one = *e;
        one.offset = 0;
        memset(&scratch, 0, sizeof scratch);
        unsigned char set = 0;
        vsoc_confmap_loc_t loc = {0, 0, 0};
        ld_t c = {.t = &one, .n = 1, .obj = (char *)&scratch, .file = "confmap", .d = d,
                  .locs = &loc, .set = &set};
        apply_default(&c, 0);
        field_free(&one, &scratch);
        if (c.oom)
            vsoc_diag_add(d, VSOC_DIAG_ERROR, "confmap", 0, 0, "out of memory");
    }
    return vsoc_diags_errors(d) > errors0 ? VSOC_EINVAL : 0;
}

/* ---- printing ----------------------------------------------------------------------- */

static int is_special_word(const char *s)
{
    static const char *const words[] = {"~",   "null", "true", "false", "yes", "no",
                                        "on",  "off",  "y",    "n"};
    size_t l = strlen(s);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (l == strlen(words[i]) && vsoc_eq_lower(s, words[i], l))
            return 1;
    return 0;
}

/* 1 when s reads back as itself written plain. Conservative: anything unusual is quoted.
 * In flow context (inside [ ] or as a map name) ':' and ',' are quoted too; in block
 * context a ':' is plain when no space follows it ("127.0.0.1:9092"). */
static int plain_ok(const char *s, int flow)
{
    if (!*s || is_special_word(s) || !strncmp(s, "...", 3))
        return 0;
    unsigned char c0 = (unsigned char)s[0];
    if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || (c0 >= '0' && c0 <= '9') ||
          c0 == '.' || c0 == '/' || c0 == '_'))
        return 0;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("._/@+=~-", ch))
            continue;
        if (ch == ':' && !flow && p[1] && p[1] != ' ')
            continue;
        if (ch == ',' && !flow)
            continue;
        return 0;
    }
    return 1;
}

/* Decodes one UTF-8 sequence at s; returns its length (0 when invalid) and the code point. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
    if (!len || s[0] >= 0xF8)
        return 0;
    uint32_t v = s[0] & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* Writes s as a YAML scalar: plain when that reads back the same, else double-quoted with
 * every byte outside printable ASCII escaped (so no line-break or BOM rules can apply). */
static void put_scalar(FILE *out, const char *s, int flow)
{
    if (plain_ok(s, flow)) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        size_t len;
        if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p++, out);
        } else if (*p == '\n') {
            fputs("\\n", out);
            p++;
        } else if (*p == '\t') {
            fputs("\\t", out);
            p++;
        } else if (*p >= 0x20 && *p < 0x7F) {
            fputc(*p++, out);
        } else if (*p < 0x80 || !(len = utf8_decode(p, &cp))) {
            fprintf(out, "\\x%02X", *p++); /* a byte no UTF-8 decoder accepts: lossy */
        } else {
            if (cp > 0xFFFF)
                fprintf(out, "\\U%08X", (unsigned)cp);
            else
                fprintf(out, "\\u%04X", (unsigned)cp);
            p += len;
        }
    }
    fputc('"', out);
}

static void indent(FILE *out, int depth)
{
    for (int k = 0; k < depth; k++)
        fputs("  ", out);
}

typedef struct printer {
    const vsoc_confmap_entry_t *t;
    size_t n;
    const char *obj; /* values; NULL: the sample */
    FILE *out;
} printer_t;

/* Comment lines: text wrapped at WRAP_COLS, at depth. */
static void put_comment(FILE *out, int depth, const char *text)
{
    size_t width = WRAP_COLS - 2 * (size_t)depth - 2, col = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t wl = strcspn(p, " ");
        if (!wl)
            break;
        if (col && col + 1 + wl > width) {
            fputc('\n', out);
            col = 0;
        }
        if (!col) {
            indent(out, depth);
            fputs("#", out);
        }
        fprintf(out, " %.*s", (int)wl, p);
        col += 1 + wl;
        p += wl;
    }
    if (col)
        fputc('\n', out);
}

static void put_list(FILE *out, const vsoc_confmap_list_t *l)
{
    fputc('[', out);
    for (size_t k = 0; k < l->n; k++) {
        if (k)
            fputs(", ", out);
        put_scalar(out, l->v[k] ? l->v[k] : "", 1);
    }
    fputc(']', out);
}

static void put_leaf(printer_t *pr, size_t i, int depth)
{
    const vsoc_confmap_entry_t *e = &pr->t[i];
    FILE *out = pr->out;
    const char *name = strrchr(e->key, '.') ? strrchr(e->key, '.') + 1 : e->key;
    if (!pr->obj) {
        char type[256], text[1024];
        type_doc(e, type, sizeof type);
        snprintf(text, sizeof text, "%s (%s%s)", e->desc, type, e->def ? "" : ", required");
        put_comment(out, depth, text);
        const char *val = e->def ? e->def : e->example;
        if (!val) {
            indent(out, depth);
            fprintf(out, "# %s:\n", name);
            return;
        }
        indent(out, depth);
        fprintf(out, "%s: ", name);
        /* Only text may need quotes; the other defaults are written as the file would. */
        if (e->type == VSOC_CONFMAP_STRING || e->type == VSOC_CONFMAP_PATH ||
            e->type == VSOC_CONFMAP_ENUM)
            put_scalar(out, val, 0);
        else
            fputs(val, out);
        fputc('\n', out);
        return;
    }
    const void *f = pr->obj + e->offset;
    char buf[32];
    indent(out, depth);
    fprintf(out, "%s:", name);
    if (e->type != VSOC_CONFMAP_MAP || !((const vsoc_confmap_map_t *)f)->n)
        fputc(' ', out); /* a block mapping follows the colon directly */
    switch (e->type) {
    case VSOC_CONFMAP_STRING:
    case VSOC_CONFMAP_PATH: {
        const char *s = *(char *const *)f;
        put_scalar(out, s ? s : "", 0);
        break;
    }
    case VSOC_CONFMAP_LIST:
    case VSOC_CONFMAP_PATH_LIST:
        put_list(out, f);
        break;
    case VSOC_CONFMAP_INT:
        fprintf(out, "%d", *(const int *)f);
        break;
    case VSOC_CONFMAP_BOOL:
        fputs(*(const int *)f ? "true" : "false", out);
        break;
    case VSOC_CONFMAP_DURATION:
        fmt_duration(*(const int64_t *)f, buf, sizeof buf);
        fputs(buf, out);
        break;
    case VSOC_CONFMAP_ENUM: {
        int k = *(const int *)f;
        size_t nn = count_names(e->names);
        put_scalar(out, k >= 0 && (size_t)k < nn ? e->names[k] : "", 0);
        break;
    }
    case VSOC_CONFMAP_MAP: {
        const vsoc_confmap_map_t *m = f;
        if (!m->n)
            fputs("{}", out);
        for (size_t k = 0; k < m->n; k++) {
            fputc('\n', out);
            indent(out, depth + 1);
            put_scalar(out, m->v[k].key ? m->v[k].key : "", 1);
            fputs(": ", out);
            put_scalar(out, m->v[k].value ? m->v[k].value : "", 0);
        }
        break;
    }
    }
    fputc('\n', out);
}

/* Prints the entries under prefix[0..plen) in table order, each section once at the place
 * of its first entry, so that a table need not keep a section's keys together. */
static void put_tree(printer_t *pr, const char *prefix, size_t plen, int depth)
{
    int first = 1;
    for (size_t i = 0; i < pr->n; i++) {
        const char *key = pr->t[i].key;
        if (strncmp(key, prefix, plen) != 0)
            continue;
        const char *rest = key + plen;
        size_t sl = strcspn(rest, ".");
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = !strncmp(pr->t[j].key, key, plen + sl) &&
                  (pr->t[j].key[plen + sl] == '.' || pr->t[j].key[plen + sl] == '\0');
        if (dup)
            continue;
        /* The sample breathes: a blank line between entries, and before each top section. */
        if (!pr->obj && !first)
            fputc('\n', pr->out);
        first = 0;
        if (!rest[sl]) {
            put_leaf(pr, i, depth);
        } else {
            indent(pr->out, depth);
            fprintf(pr->out, "%.*s:\n", (int)sl, rest);
            put_tree(pr, key, plen + sl + 1, depth + 1);
        }
    }
}

void vsoc_confmap_print_sample(const vsoc_confmap_entry_t *t, size_t n, FILE *out)
{
    printer_t pr = {t, n, NULL, out};
    put_tree(&pr, "", 0, 0);
}

void vsoc_confmap_print_values(const vsoc_confmap_entry_t *t, size_t n, const void *obj,
                               FILE *out)
{
    printer_t pr = {t, n, obj, out};
    put_tree(&pr, "", 0, 0);
}

/* A Markdown table cell: '|' would end the cell. */
static void put_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

void vsoc_confmap_print_docs(const vsoc_confmap_entry_t *t, size_t n, FILE *out)
{
    fputs("| key | type | default | description |\n", out);
    fputs("|---|---|---|---|\n", out);
    for (size_t i = 0; i < n; i++) {
        const vsoc_confmap_entry_t *e = &t[i];
        char type[256];
        type_doc(e, type, sizeof type);
        fputs("| `", out);
        put_cell(out, e->key);
        fputs("` | ", out);
        put_cell(out, type);
        fputs(" | ", out);
        if (!e->def) {
            fputs("required", out);
        } else {
            fputc('`', out);
            put_cell(out, *e->def ? e->def : "\"\"");
            fputc('`', out);
        }
        fputs(" | ", out);
        put_cell(out, e->desc ? e->desc : "");
        fputs(" |\n", out);
    }
}
