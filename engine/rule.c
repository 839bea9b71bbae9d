/* rule.c: the rule compiler: YAML (libyaml's document API, which keeps a position for every
 * node) to the compiled form in rule_internal.h.
 *
 * Every problem becomes a located diagnostic and compilation of the file goes on, so that
 * lint reports all of them in one run; a rule with any error is dropped from the ruleset.
 * Nothing here runs on the per-event path. */
#include "rule_internal.h"
#include "util.h"
#include "yamlfile.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Compilation context for one YAML document. */
typedef struct ctx {
    const char *file;
    yaml_document_t *doc;
    vsoc_diags_t *diags;
    int errors; /* errors in this rule */
    vsoc_rule_t *rule;
    const vsoc_rule_load_opts_t *opts;
    char *id;    /* the document's id, kept even when the rule fails (taken by load_doc) */
    int id_line, id_col;
    const unsigned char *text; /* the file, to find where block-scalar lines really start */
    size_t len;
} ctx_t;

static void err_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vdiag(ctx_t *c, vsoc_diag_severity_t sev, int line, int col, const char *fmt,
                  va_list ap) __attribute__((format(printf, 5, 0)));
static void vdiag(ctx_t *c, vsoc_diag_severity_t sev, int line, int col, const char *fmt,
                  va_list ap)
{
    char buf[900];
    vsnprintf(buf, sizeof buf, fmt, ap);
    vsoc_diag_add(c->diags, sev, c->file, line, col, "%s", buf);
    if (sev == VSOC_DIAG_ERROR)
        c->errors++;
}

static void err_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdiag(c, VSOC_DIAG_ERROR, n ? (int)n->start_mark.line + 1 : 0,
          n ? (int)n->start_mark.column + 1 : 0, fmt, ap);
    va_end(ap);
}

static void warn_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdiag(c, VSOC_DIAG_WARNING, n ? (int)n->start_mark.line + 1 : 0,
          n ? (int)n->start_mark.column + 1 : 0, fmt, ap);
    va_end(ap);
}

static void err_pos(ctx_t *c, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err_pos(ctx_t *c, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdiag(c, VSOC_DIAG_ERROR, line, col, fmt, ap);
    va_end(ap);
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

/* A plain (unquoted) scalar "null", "~" or empty is YAML's null. */
static int is_null(const yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "null") || !strcmp(s, "~") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

static const char *type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a map";
    default: return "nothing";
    }
}

static const char *expect_string(ctx_t *c, yaml_node_t *n, const char *what)
{
    const char *s = scalar(n);
    if (!s || is_null(n)) {
        err_at(c, n, "%s must be a string, not %s", what, is_null(n) ? "null" : type_name(n));
        return NULL;
    }
    return s;
}

static int parse_bool(const char *s, int *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes") || !strcmp(s, "1")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no") || !strcmp(s, "0")) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* Walks a mapping, rejecting duplicate keys and non-scalar keys. For each pair calls fn;
 * unknown keys are reported with a suggestion from known. */
typedef void (*pair_fn)(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg);

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
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const char *kq = scalar(node(c, q->key));
            if (kq && !strcmp(kq, key))
                dup = 1;
        }
        if (dup) {
            err_at(c, k, "duplicate key '%s' in %s", key, where);
            continue;
        }
        if (known) {
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
        }
        fn(c, key, k, v, arg);
    }
}

static yaml_node_t *map_get(ctx_t *c, yaml_node_t *map, const char *key, yaml_node_t **keynode)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node(c, p->key));
        if (k && !strcmp(k, key)) {
            if (keynode)
                *keynode = node(c, p->key);
            return node(c, p->value);
        }
    }
    return NULL;
}

/* ---- freeing ------------------------------------------------------------------------ */

static void cval_fini(cval_t *v)
{
    free(v->s);
    pcre2_code_free(v->re);
}

static void fmatch_fini(fmatch_t *m)
{
    vsoc_field_fini(&m->field);
    for (uint32_t i = 0; i < m->nvals; i++)
        cval_fini(&m->vals[i]);
    free(m->vals);
}

static void test_fini(vsoc_rule_test_t *t)
{
    free(t->name);
    free(t->vin);
    for (size_t i = 0; i < t->nlines; i++)
        free(t->lines[i]);
    free(t->lines);
    for (size_t i = 0; i < t->nlearn; i++)
        free(t->learn[i]);
    free(t->learn);
    free(t->line_nos);
    free(t->line_cols);
}

static void prefilter_fini(prefilter_t *pf)
{
    free(pf->ids);
    free(pf->pgns);
    free(pf->ranges);
    for (size_t i = 0; i < pf->ntypes; i++)
        free(pf->types[i]);
    free(pf->types);
    memset(pf, 0, sizeof *pf);
}

static void rule_free(vsoc_rule_t *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->title);
    free(r->description);
    free(r->status);
    free(r->file);
    for (size_t i = 0; i < r->ntags; i++)
        free(r->tags[i]);
    free(r->tags);
    for (uint32_t i = 0; i < r->ndets; i++) {
        det_t *d = &r->dets[i];
        for (uint32_t a = 0; a < d->nalt; a++) {
            for (uint32_t m = 0; m < d->alts[a].n; m++)
                fmatch_fini(&d->alts[a].m[m]);
            free(d->alts[a].m);
        }
        free(d->alts);
        free(d->name);
    }
    free(r->dets);
    free(r->nodes);
    for (uint32_t i = 0; i < r->corr.ngroup; i++)
        vsoc_field_fini(&r->corr.group_by[i]);
    vsoc_field_fini(&r->corr.value_field);
    for (uint32_t i = 0; i < r->sup.ngroup; i++)
        vsoc_field_fini(&r->sup.group_by[i]);
    prefilter_fini(&r->pf);
    for (size_t i = 0; i < r->ntests; i++)
        test_fini(&r->tests[i]);
    free(r->tests);
    free(r);
}

/* Atomic: rulesets built from one load (a subset for rule tests) share rules across threads. */
void vsoc_rule_unref(vsoc_rule_t *r)
{
    if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
        rule_free(r);
}

/* ---- values ------------------------------------------------------------------------- */

static const char *const modifier_names[] = {
    "contains", "startswith", "endswith", "re", "all", "cidr", "exists", "gt", "gte",
    "lt", "lte", "mask", "in_range", "bits", "cased", "i", "m", "s",
};
#define NMODIFIERS (sizeof modifier_names / sizeof modifier_names[0])

static int is_text_field(const vsoc_field_t *f)
{
    return f->type == VSOC_FT_STR || f->type == VSOC_FT_BYTES || f->type == VSOC_FT_JSON;
}

static int is_num_field(const vsoc_field_t *f)
{
    return f->type == VSOC_FT_INT || f->type == VSOC_FT_FLOAT || f->type == VSOC_FT_JSON ||
           f->type == VSOC_FT_BOOL;
}

static const char *ftype_name(vsoc_ftype_t t)
{
    switch (t) {
    case VSOC_FT_INT: return "an integer";
    case VSOC_FT_BOOL: return "a boolean";
    case VSOC_FT_FLOAT: return "a number";
    case VSOC_FT_STR: return "a string";
    case VSOC_FT_BYTES: return "bytes (hex text)";
    case VSOC_FT_REASONS: return "a list of reasons";
    case VSOC_FT_JSON: return "a JSON value";
    }
    return "?";
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    if (d)
        for (char *p = d; *p; p++)
            *p = (char)vsoc_lower((unsigned char)*p);
    return d;
}

/* Normalises a can.data pattern: drops spaces, upper-cases, checks hex digits. */
static char *hex_pattern(ctx_t *c, yaml_node_t *n, const char *s, int need_even)
{
    size_t len = strlen(s);
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == ' ' || ch == '.' || ch == ':')
            continue;
        if ((ch == '*' || ch == '?') && !need_even) {
            out[k++] = ch;
            continue;
        }
        if (vsoc_hexval((unsigned char)ch) < 0) {
            err_at(c, n, "bad hex '%s' in can.data value: '%c' is not a hex digit", s, ch);
            free(out);
            return NULL;
        }
        out[k++] = (char)(ch >= 'a' && ch <= 'f' ? ch - 32 : ch);
    }
    out[k] = 0;
    if (need_even && (k % 2)) {
        err_at(c, n, "bad hex '%s' in can.data value: odd number of digits", s);
        free(out);
        return NULL;
    }
    if (k > 2 * VSOC_CAN_MAX_LEN) {
        err_at(c, n, "can.data value '%s' is longer than 64 bytes", s);
        free(out);
        return NULL;
    }
    return out;
}

static int parse_num_for(ctx_t *c, yaml_node_t *n, const fmatch_t *m, cval_t *v)
{
    const char *s = scalar(n);
    if (!s) {
        err_at(c, n, "'%s' needs a number here, not %s", m->field.name, type_name(n));
        return -1;
    }
    int b;
    if (m->field.type == VSOC_FT_BOOL && parse_bool(s, &b) == 0) {
        v->kind = CV_INT;
        v->i = b;
        v->f = b;
        return 0;
    }
    int64_t i;
    if (vsoc_parse_int(s, &i) == 0) {
        v->kind = CV_INT;
        v->i = i;
        v->f = (double)i;
        return 0;
    }
    double d;
    if (m->field.type != VSOC_FT_INT && vsoc_parse_number(s, &d) == 0) {
        v->kind = CV_FLOAT;
        v->f = d;
        v->i = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
        return 0;
    }
    err_at(c, n, "'%s' is not %s (for '%s')", s,
           m->field.type == VSOC_FT_INT ? "an integer" : "a number", m->field.name);
    return -1;
}

static int compile_cidr(ctx_t *c, yaml_node_t *n, const char *s, cval_t *v)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen >= sizeof buf)
        goto bad;
    memcpy(buf, s, alen);
    buf[alen] = 0;
    int maxp;
    if (inet_pton(AF_INET, buf, v->addr) == 1) {
        v->family = 4;
        maxp = 32;
    } else if (inet_pton(AF_INET6, buf, v->addr) == 1) {
        v->family = 6;
        maxp = 128;
    } else {
        goto bad;
    }
    int64_t p = maxp;
    if (slash && (vsoc_parse_int(slash + 1, &p) != 0 || p < 0 || p > maxp))
        goto bad;
    v->prefix = (uint8_t)p;
    v->kind = CV_STR;
    return 0;
bad:
    err_at(c, n, "bad CIDR '%s' (expected e.g. 10.0.0.0/8 or fd00::/8)", s);
    return -1;
}

/* Compiles one scalar (or pair, for mask/in_range) into v for match m. */
static int compile_value(ctx_t *c, yaml_node_t *n, fmatch_t *m, cval_t *v)
{
    memset(v, 0, sizeof *v);
    if (m->op == OP_MASK || m->op == OP_IN_RANGE) {
        const char *what = m->op == OP_MASK ? "mask" : "in_range";
        if (n->type != YAML_SEQUENCE_NODE ||
            n->data.sequence.items.top - n->data.sequence.items.start != 2) {
            err_at(c, n, "'%s' takes a pair [%s, %s]", what, m->op == OP_MASK ? "mask" : "lo",
                   m->op == OP_MASK ? "value" : "hi");
            return -1;
        }
        cval_t a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        yaml_node_t *na = node(c, n->data.sequence.items.start[0]);
        yaml_node_t *nb = node(c, n->data.sequence.items.start[1]);
        if (parse_num_for(c, na, m, &a) != 0 || parse_num_for(c, nb, m, &b) != 0)
            return -1;
        if (m->op == OP_MASK && (a.kind != CV_INT || b.kind != CV_INT)) {
            err_at(c, n, "'mask' needs integers");
            return -1;
        }
        if (m->op == OP_IN_RANGE && a.f > b.f) {
            err_at(c, n, "in_range: lower bound is above the upper bound");
            return -1;
        }
        v->kind = a.kind == CV_FLOAT || b.kind == CV_FLOAT ? CV_FLOAT : CV_INT;
        v->i = a.i;
        v->i2 = b.i;
        v->f = a.f;
        v->f2 = b.f;
        return 0;
    }
    if (n->type != YAML_SCALAR_NODE) {
        err_at(c, n, "value for '%s' must be a scalar or a list of scalars, not %s",
               m->field.name, type_name(n));
        return -1;
    }
    const char *s = scalar(n);
    switch (m->op) {
    case OP_EXISTS: {
        int b;
        if (parse_bool(s, &b) != 0) {
            err_at(c, n, "'exists' takes true or false, not '%s'", s);
            return -1;
        }
        v->kind = CV_BOOL;
        v->i = b;
        return 0;
    }
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
        return parse_num_for(c, n, m, v);
    case OP_CIDR:
        return compile_cidr(c, n, s, v);
    case OP_RE: {
        int errcode;
        PCRE2_SIZE erroff;
        uint32_t flags = 0;
        /* can.data is hex text: its letters' case means nothing. */
        if ((m->cased & 2) || m->field.type == VSOC_FT_BYTES)
            flags |= PCRE2_CASELESS;
        if (m->cased & 4)
            flags |= PCRE2_MULTILINE;
        if (m->cased & 8)
            flags |= PCRE2_DOTALL;
        v->re = pcre2_compile((PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, flags, &errcode, &erroff,
                              NULL);
        if (!v->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(errcode, msg, sizeof msg);
            err_at(c, n, "regex '%s' does not compile: %s at offset %zu", s, (char *)msg,
                   (size_t)erroff);
            return -1;
        }
        /* JIT failure is not an error: the interpreter runs the same pattern, slower. */
        pcre2_jit_compile(v->re, PCRE2_JIT_COMPLETE);
        v->kind = CV_STR;
        v->s = strdup(s);
        return v->s ? 0 : -1;
    }
    default:
        break;
    }
    /* EQ, CONTAINS, STARTSWITH, ENDSWITH on the field's type. */
    switch (m->field.type) {
    case VSOC_FT_INT:
    case VSOC_FT_BOOL:
    case VSOC_FT_FLOAT:
        return parse_num_for(c, n, m, v);
    case VSOC_FT_BYTES:
        /* Whole bytes, except a startswith prefix, which may end on a nibble. */
        v->s = hex_pattern(c, n, s, m->op != OP_STARTSWITH && !strpbrk(s, "*?"));
        if (!v->s)
            return -1;
        v->n = strlen(v->s);
        v->kind = CV_STR;
        v->glob = m->op == OP_EQ && strpbrk(v->s, "*?") != NULL;
        return 0;
    case VSOC_FT_REASONS: {
        uint32_t bit = vsoc_reason_bit(s);
        if (!bit) {
            const char *names[16];
            size_t k = 0;
            for (const char *r; k < 16 && (r = vsoc_reason_name((unsigned)k)); k++)
                names[k] = r;
            const char *sug = vsoc_did_you_mean(s, names, k);
            if (sug)
                err_at(c, n, "unknown baseline reason '%s' (did you mean '%s'?)", s, sug);
            else
                err_at(c, n, "unknown baseline reason '%s'", s);
            return -1;
        }
        v->kind = CV_INT;
        v->i = bit;
        return 0;
    }
    case VSOC_FT_STR:
    case VSOC_FT_JSON: {
        v->kind = CV_STR;
        v->s = m->cased ? strdup(s) : lower_dup(s);
        if (!v->s)
            return -1;
        v->n = strlen(v->s);
        if (m->field.type == VSOC_FT_JSON) {
            int64_t i;
            double d;
            int b;
            if (vsoc_parse_int(s, &i) == 0) {
                v->has_num = 1;
                v->i = i;
                v->f = (double)i;
            } else if (vsoc_parse_number(s, &d) == 0) {
                v->has_num = 1;
                v->f = d;
                v->i = d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
            } else if (parse_bool(s, &b) == 0 && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                       (s[0] == 't' || s[0] == 'f')) {
                v->has_num = 2; /* also compares with JSON booleans */
                v->i = b;
            }
        }
        /* Sigma: '*' and '?' in a plain comparison are wildcards. */
        if (m->op == OP_EQ && (strchr(v->s, '*') || strchr(v->s, '?')))
            v->glob = 1;
        return 0;
    }
    }
    return -1;
}

typedef struct bits_arg {
    fmatch_t *m;
    yaml_node_t *cmp_node;
    const char *cmp_key;
    int have_start, have_len;
} bits_arg_t;

static void bits_pair(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    bits_arg_t *b = arg;
    const char *s = scalar(v);
    int64_t i;
    if (!strcmp(key, "start") || !strcmp(key, "len")) {
        if (!s || vsoc_parse_int(s, &i) != 0 || i < 0 ||
            i >= (strcmp(key, "len") == 0 ? 65 : 512)) {
            err_at(c, v, "bits: '%s' must be an integer (start 0..511, len 1..64)", key);
            return;
        }
        if (!strcmp(key, "start")) {
            b->m->bits_start = (uint16_t)i;
            b->have_start = 1;
        } else {
            if (i < 1) {
                err_at(c, v, "bits: 'len' must be 1..64");
                return;
            }
            b->m->bits_len = (uint16_t)i;
            b->have_len = 1;
        }
        return;
    }
    if (!strcmp(key, "le")) {
        int bl;
        if (!s || parse_bool(s, &bl) != 0) {
            err_at(c, v, "bits: 'le' takes true or false");
            return;
        }
        b->m->bits_le = (uint8_t)bl;
        return;
    }
    if (b->cmp_node) {
        err_at(c, k, "bits: only one comparison may be given ('%s' and '%s')", b->cmp_key, key);
        return;
    }
    b->cmp_node = v;
    b->cmp_key = key;
}

static const char *const bits_keys[] = {"start", "len", "le", "eq", "gt",
                                        "gte", "lt", "lte", "in_range", "mask"};

static int compile_values(ctx_t *c, yaml_node_t *v, fmatch_t *m)
{
    yaml_node_t *single[1];
    yaml_node_t **items;
    size_t n;
    if (m->op == OP_MASK || m->op == OP_IN_RANGE) {
        /* A pair, or a list of pairs (any of them). */
        if (v->type == YAML_SEQUENCE_NODE && v->data.sequence.items.top > v->data.sequence.items.start &&
            node(c, v->data.sequence.items.start[0])->type == YAML_SEQUENCE_NODE) {
            n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
            items = malloc(n * sizeof *items);
            if (!items)
                return -1;
            for (size_t i = 0; i < n; i++)
                items[i] = node(c, v->data.sequence.items.start[i]);
        } else {
            single[0] = v;
            items = single;
            n = 1;
        }
    } else if (v->type == YAML_SEQUENCE_NODE) {
        n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (n == 0) {
            err_at(c, v, "empty list of values for '%s'", m->field.name);
            return -1;
        }
        items = malloc(n * sizeof *items);
        if (!items)
            return -1;
        for (size_t i = 0; i < n; i++)
            items[i] = node(c, v->data.sequence.items.start[i]);
    } else if (v->type == YAML_MAPPING_NODE) {
        err_at(c, v, "value for '%s' must be a scalar or a list, not a map%s", m->field.name,
               m->field.id == VSOC_F_CAN_DATA ? " (did you mean the 'bits' modifier?)" : "");
        return -1;
    } else {
        single[0] = v;
        items = single;
        n = 1;
    }
    m->vals = calloc(n, sizeof *m->vals);
    if (!m->vals) {
        if (items != single)
            free(items);
        return -1;
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (items != single && is_null(items[i]) && m->op != OP_MASK && m->op != OP_IN_RANGE) {
            /* "absent" cannot be one value among others of the same match */
            err_at(c, items[i], "null cannot be one of several values; write a separate "
                                "detection '%s: null' and join it with 'or'", m->field.name);
            bad = 1;
            continue;
        }
        if (compile_value(c, items[i], m, &m->vals[m->nvals]) == 0)
            m->nvals++;
        else {
            cval_fini(&m->vals[m->nvals]);
            memset(&m->vals[m->nvals], 0, sizeof m->vals[0]);
            bad = 1;
        }
    }
    if (items != single)
        free(items);
    return bad ? -1 : 0;
}

/* Marks matches the engine may compare as plain integers (the common case on CAN). */
static void set_fast(fmatch_t *m)
{
    /* baseline.reasons: a reason is one bit, so membership is a mask test */
    if (m->field.type == VSOC_FT_REASONS && m->op == OP_EQ && !m->all) {
        m->fast = 1;
        return;
    }
    if (m->field.type != VSOC_FT_INT && m->field.type != VSOC_FT_BOOL)
        return;
    switch (m->op) {
    case OP_EQ: case OP_GT: case OP_GTE: case OP_LT: case OP_LTE: case OP_IN_RANGE: case OP_MASK:
        break;
    default:
        return;
    }
    for (uint32_t i = 0; i < m->nvals; i++)
        if (m->vals[i].kind != CV_INT)
            return;
    m->fast = 1;
}

/* Compiles "field|mod|mod: value" into m. Returns 0 or -1 (diagnostics reported). */
static int compile_match(ctx_t *c, yaml_node_t *k, const char *key, yaml_node_t *v, fmatch_t *m)
{
    memset(m, 0, sizeof *m);
    m->line = (int)k->start_mark.line + 1;
    m->col = (int)k->start_mark.column + 1;
    char buf[256];
    if (strlen(key) >= sizeof buf) {
        err_at(c, k, "field key is too long");
        return -1;
    }
    strcpy(buf, key);
    char *save = NULL;
    char *fname = strtok_r(buf, "|", &save);
    if (!fname) {
        err_at(c, k, "empty field name");
        return -1;
    }
    char ferr[256];
    if (vsoc_field_resolve(fname, &m->field, ferr, sizeof ferr) != 0) {
        err_at(c, k, "%s", ferr);
        return -1;
    }
    if (c->rule->kind && !(m->field.kinds & (1u << c->rule->kind))) {
        err_at(c, k, "field '%s' does not exist on %s events", fname,
               c->rule->kind == VSOC_EVENT_CAN ? "CAN" : "IDS");
        return -1;
    }
    m->op = OP_EQ;
    int ops = 0, bad = 0;
    for (char *mod = strtok_r(NULL, "|", &save); mod; mod = strtok_r(NULL, "|", &save)) {
        static const struct {
            const char *name;
            match_op_t op;
        } opmods[] = {{"contains", OP_CONTAINS}, {"startswith", OP_STARTSWITH},
                      {"endswith", OP_ENDSWITH}, {"re", OP_RE},
                      {"cidr", OP_CIDR},         {"exists", OP_EXISTS},
                      {"gt", OP_GT},             {"gte", OP_GTE},
                      {"lt", OP_LT},             {"lte", OP_LTE},
                      {"mask", OP_MASK},         {"in_range", OP_IN_RANGE}};
        size_t i;
        for (i = 0; i < sizeof opmods / sizeof opmods[0]; i++)
            if (!strcmp(mod, opmods[i].name))
                break;
        if (i < sizeof opmods / sizeof opmods[0]) {
            if (ops++) {
                err_at(c, k, "modifier '%s' cannot be combined with another comparison", mod);
                bad = 1;
            }
            m->op = opmods[i].op;
            continue;
        }
        if (!strcmp(mod, "all"))
            m->all = 1;
        else if (!strcmp(mod, "cased"))
            m->cased |= 1;
        else if (!strcmp(mod, "bits"))
            m->bits = 1;
        else if ((!strcmp(mod, "i") || !strcmp(mod, "m") || !strcmp(mod, "s")) &&
                 m->op == OP_RE)
            m->cased |= mod[0] == 'i' ? 2 : mod[0] == 'm' ? 4 : 8;
        else if (!strcmp(mod, "windash") || !strcmp(mod, "base64") ||
                 !strcmp(mod, "base64offset") || !strcmp(mod, "utf16le") ||
                 !strcmp(mod, "utf16be") || !strcmp(mod, "wide") || !strcmp(mod, "utf16")) {
            err_at(c, k, "Sigma modifier '%s' is not supported by vsoc (no Windows command "
                         "lines or encoded strings in vehicle events)", mod);
            bad = 1;
        } else {
            const char *s = vsoc_did_you_mean(mod, modifier_names, NMODIFIERS);
            if (s)
                err_at(c, k, "unknown modifier '%s' (did you mean '%s'?)", mod, s);
            else
                err_at(c, k, "unknown modifier '%s'", mod);
            bad = 1;
        }
    }
    if (bad)
        return -1;
    const vsoc_field_t *f = &m->field;
    if (m->bits) {
        if (f->id != VSOC_F_CAN_DATA) {
            err_at(c, k, "'bits' applies to can.data only");
            return -1;
        }
        if (ops) {
            err_at(c, k, "'bits' takes its comparison inside its map (e.g. {start: 12, "
                         "len: 4, gte: 3})");
            return -1;
        }
        if (v->type != YAML_MAPPING_NODE) {
            err_at(c, v, "'bits' takes a map {start, len, le, and one of eq/gt/gte/lt/lte/"
                         "in_range/mask}");
            return -1;
        }
        bits_arg_t ba = {.m = m};
        int before = c->errors;
        each_pair(c, v, bits_keys, sizeof bits_keys / sizeof bits_keys[0], "bits", bits_pair,
                  &ba);
        if (c->errors != before)
            return -1;
        if (!ba.have_start || !ba.have_len || !ba.cmp_node) {
            err_at(c, v, "'bits' needs start, len and one comparison (eq, gt, gte, lt, lte, "
                         "in_range or mask)");
            return -1;
        }
        static const struct {
            const char *k;
            match_op_t op;
        } cmps[] = {{"eq", OP_EQ},   {"gt", OP_GT},   {"gte", OP_GTE},      {"lt", OP_LT},
                    {"lte", OP_LTE}, {"mask", OP_MASK}, {"in_range", OP_IN_RANGE}};
        for (size_t i = 0; i < sizeof cmps / sizeof cmps[0]; i++)
            if (!strcmp(ba.cmp_key, cmps[i].k))
                m->op = cmps[i].op;
        /* The extracted bits are an unsigned integer from here on. */
        m->field.type = VSOC_FT_INT;
        if (compile_values(c, ba.cmp_node, m) != 0)
            return -1;
        set_fast(m);
        return 0;
    }
    switch (m->op) {
    case OP_CONTAINS:
    case OP_STARTSWITH:
    case OP_ENDSWITH:
        if (f->type == VSOC_FT_REASONS && m->op == OP_CONTAINS) {
            m->op = OP_EQ; /* membership in the reason set */
            break;
        }
        /* fallthrough */
    case OP_RE:
        if (!is_text_field(f)) {
            err_at(c, k, "modifier '%s' needs a text field; '%s' is %s",
                   m->op == OP_RE ? "re" : m->op == OP_CONTAINS ? "contains"
                   : m->op == OP_STARTSWITH ? "startswith" : "endswith",
                   f->name, ftype_name(f->type));
            return -1;
        }
        break;
    case OP_CIDR:
        if (f->type != VSOC_FT_STR && f->type != VSOC_FT_JSON) {
            err_at(c, k, "modifier 'cidr' needs an address field; '%s' is %s", f->name,
                   ftype_name(f->type));
            return -1;
        }
        break;
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
    case OP_MASK:
    case OP_IN_RANGE:
        if (!is_num_field(f) || (m->op == OP_MASK && f->type == VSOC_FT_FLOAT)) {
            err_at(c, k, "this comparison needs a numeric field; '%s' is %s", f->name,
                   ftype_name(f->type));
            return -1;
        }
        break;
    default:
        break;
    }
    if (m->op == OP_EQ && is_null(v)) {
        m->op = OP_NULL;
        return 0;
    }
    if (m->all && v->type != YAML_SEQUENCE_NODE)
        warn_at(c, k, "'all' with a single value has no effect");
    if (compile_values(c, v, m) != 0)
        return -1;
    set_fast(m);
    return 0;
}

/* ---- detections --------------------------------------------------------------------- */

typedef struct alt_build {
    alt_t *alt;
    int bad;
} alt_build_t;

static void alt_pair(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    alt_build_t *ab = arg;
    fmatch_t m;
    if (compile_match(c, k, key, v, &m) != 0) {
        fmatch_fini(&m);
        ab->bad = 1;
        return;
    }
    fmatch_t *nm = realloc(ab->alt->m, (ab->alt->n + 1) * sizeof *nm);
    if (!nm) {
        fmatch_fini(&m);
        ab->bad = 1;
        return;
    }
    ab->alt->m = nm;
    nm[ab->alt->n++] = m;
}

static int compile_alt(ctx_t *c, yaml_node_t *map, alt_t *alt)
{
    memset(alt, 0, sizeof *alt);
    if (map->data.mapping.pairs.top == map->data.mapping.pairs.start) {
        err_at(c, map, "empty detection map");
        return -1;
    }
    alt_build_t ab = {alt, 0};
    each_pair(c, map, NULL, 0, "detection", alt_pair, &ab);
    return ab.bad ? -1 : 0;
}

static void compile_detection(ctx_t *c, const char *name, yaml_node_t *k, yaml_node_t *v)
{
    vsoc_rule_t *r = c->rule;
    det_t d;
    memset(&d, 0, sizeof d);
    d.line = (int)k->start_mark.line + 1;
    d.col = (int)k->start_mark.column + 1;
    d.name = strdup(name);
    int bad = !d.name;
    if (v->type == YAML_MAPPING_NODE) {
        d.alts = calloc(1, sizeof *d.alts);
        if (d.alts && compile_alt(c, v, &d.alts[0]) == 0)
            d.nalt = 1;
        else {
            bad = 1;
            if (d.alts)
                d.nalt = 1; /* free what was built */
        }
    } else if (v->type == YAML_SEQUENCE_NODE) {
        size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (n == 0) {
            err_at(c, v, "detection '%s' is an empty list", name);
            bad = 1;
        }
        d.alts = calloc(n ? n : 1, sizeof *d.alts);
        bad |= !d.alts;
        for (size_t i = 0; d.alts && i < n; i++) {
            yaml_node_t *it = node(c, v->data.sequence.items.start[i]);
            if (it->type != YAML_MAPPING_NODE) {
                err_at(c, it, "detection '%s': vsoc has no keyword search; each list item "
                              "must be a map of field: value", name);
                bad = 1;
                continue;
            }
            if (compile_alt(c, it, &d.alts[d.nalt]) != 0)
                bad = 1;
            d.nalt++;
        }
    } else {
        err_at(c, v, "detection '%s' must be a map or a list of maps, not %s", name,
               type_name(v));
        bad = 1;
    }
    det_t *nd = realloc(r->dets, (r->ndets + 1) * sizeof *nd);
    if (!nd) {
        bad = 1;
    } else {
        r->dets = nd;
        nd[r->ndets++] = d;
        return;
    }
    (void)bad;
}

/* ---- conditions --------------------------------------------------------------------- */

/* Limits that keep a hostile condition from exhausting the stack of the parser and of the
 * recursive prefilter and evaluation walks. */
#define COND_MAX_DEPTH 64
#define COND_MAX_NODES 4096

typedef struct cparse {
    ctx_t *c;
    const char *s, *p;
    int line, col; /* position of the condition text, when it is one plain line */
    int bad;
    int depth;
    int vcol; /* where the condition's scalar starts, for a condition spanning lines */
} cparse_t;

static void cerr(cparse_t *cp, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cerr(cparse_t *cp, const char *at, const char *fmt, ...)
{
    if (cp->bad)
        return;
    cp->bad = 1;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    err_pos(cp->c, cp->line, cp->col > 0 ? cp->col + (int)(at - cp->s) : cp->vcol,
            "condition: %s", buf);
}

static void skip_ws(cparse_t *cp)
{
    while (*cp->p == ' ' || *cp->p == '\t' || *cp->p == '\n')
        cp->p++;
}

static int is_word_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '*' || ch == '-' || ch == '.';
}

/* Reads a word into buf; returns its start or NULL when none. */
static const char *read_word(cparse_t *cp, char *buf, size_t cap)
{
    skip_ws(cp);
    const char *start = cp->p;
    size_t n = 0;
    while (is_word_char(*cp->p)) {
        if (n + 1 < cap)
            buf[n++] = *cp->p;
        cp->p++;
    }
    buf[n] = 0;
    return n ? start : NULL;
}

static int peek_word(cparse_t *cp, const char *w)
{
    skip_ws(cp);
    size_t n = strlen(w);
    return strncmp(cp->p, w, n) == 0 && !is_word_char(cp->p[n]);
}

static int add_node(vsoc_rule_t *r, cnode_op_t op, uint32_t det, uint32_t a, uint32_t b)
{
    cnode_t *nn = realloc(r->nodes, (r->nnodes + 1) * sizeof *nn);
    if (!nn)
        return -1;
    r->nodes = nn;
    nn[r->nnodes] = (cnode_t){op, det, a, b};
    return (int)r->nnodes++;
}

static int glob_match_simple(const char *pat, const char *s)
{
    /* '*' only, for "1 of sel_*". */
    if (!*pat)
        return !*s;
    if (*pat == '*')
        return glob_match_simple(pat + 1, s) || (*s && glob_match_simple(pat, s + 1));
    return *s == *pat && glob_match_simple(pat + 1, s + 1);
}

static int parse_or(cparse_t *cp);

static int parse_primary_(cparse_t *cp);

static int parse_primary(cparse_t *cp)
{
    if (++cp->depth > COND_MAX_DEPTH) {
        cerr(cp, cp->p, "nested deeper than %d levels", COND_MAX_DEPTH);
        return -1;
    }
    int n = parse_primary_(cp);
    cp->depth--;
    if (n >= 0 && cp->c->rule->nnodes > COND_MAX_NODES) {
        cerr(cp, cp->p, "more than %d terms", COND_MAX_NODES);
        return -1;
    }
    return n;
}

static int parse_primary_(cparse_t *cp)
{
    vsoc_rule_t *r = cp->c->rule;
    skip_ws(cp);
    if (*cp->p == '(') {
        const char *open = cp->p++;
        int n = parse_or(cp);
        skip_ws(cp);
        if (*cp->p != ')') {
            cerr(cp, open, "unclosed '('");
            return -1;
        }
        cp->p++;
        return n;
    }
    if (peek_word(cp, "not")) {
        cp->p += 3;
        int n = parse_primary(cp);
        if (n < 0)
            return -1;
        return add_node(r, CN_NOT, 0, (uint32_t)n, 0);
    }
    char w[128];
    const char *at = read_word(cp, w, sizeof w);
    if (!at) {
        if (*cp->p)
            cerr(cp, cp->p, "unexpected '%c'", *cp->p);
        else
            cerr(cp, cp->p, "expression expected at the end");
        return -1;
    }
    int quant = 0; /* 1: "1 of", 2: "all of" */
    if (!strcmp(w, "1") || !strcmp(w, "any"))
        quant = 1;
    else if (!strcmp(w, "all"))
        quant = 2;
    if (quant && peek_word(cp, "of")) {
        skip_ws(cp);
        cp->p += 2;
        char pat[128];
        const char *pat_at = read_word(cp, pat, sizeof pat);
        if (!pat_at) {
            cerr(cp, cp->p, "'%s of' needs a name pattern or 'them'", w);
            return -1;
        }
        int acc = -1;
        for (uint32_t i = 0; i < r->ndets; i++) {
            if (strcmp(pat, "them") && !glob_match_simple(pat, r->dets[i].name))
                continue;
            if (!strcmp(pat, "them") && r->dets[i].name[0] == '_')
                continue; /* Sigma: "them" skips names starting with an underscore */
            int leaf = add_node(r, CN_DET, i, 0, 0);
            if (leaf < 0)
                return -1;
            acc = acc < 0 ? leaf
                          : add_node(r, quant == 1 ? CN_OR : CN_AND, 0, (uint32_t)acc,
                                     (uint32_t)leaf);
            if (acc < 0)
                return -1;
        }
        if (acc < 0)
            cerr(cp, pat_at, "'%s' names no detection", pat);
        return acc;
    }
    if (!strcmp(w, "and") || !strcmp(w, "or") || !strcmp(w, "of")) {
        cerr(cp, at, "unexpected '%s'", w);
        return -1;
    }
    for (uint32_t i = 0; i < r->ndets; i++)
        if (!strcmp(r->dets[i].name, w))
            return add_node(r, CN_DET, i, 0, 0);
    const char *names[64];
    size_t nn = 0;
    for (uint32_t i = 0; i < r->ndets && nn < 64; i++)
        names[nn++] = r->dets[i].name;
    const char *sug = vsoc_did_you_mean(w, names, nn);
    if (sug)
        cerr(cp, at, "'%s' names no detection (did you mean '%s'?)", w, sug);
    else
        cerr(cp, at, "'%s' names no detection", w);
    return -1;
}

static int parse_and(cparse_t *cp)
{
    int a = parse_primary(cp);
    while (a >= 0 && peek_word(cp, "and")) {
        cp->p += 3;
        int b = parse_primary(cp);
        if (b < 0)
            return -1;
        a = add_node(cp->c->rule, CN_AND, 0, (uint32_t)a, (uint32_t)b);
    }
    return a;
}

static int parse_or(cparse_t *cp)
{
    int a = parse_and(cp);
    while (a >= 0 && peek_word(cp, "or")) {
        cp->p += 2;
        int b = parse_and(cp);
        if (b < 0)
            return -1;
        a = add_node(cp->c->rule, CN_OR, 0, (uint32_t)a, (uint32_t)b);
    }
    return a;
}

static void compile_condition(ctx_t *c, yaml_node_t *v)
{
    const char *s = scalar(v);
    if (v->type == YAML_SEQUENCE_NODE) {
        err_at(c, v, "condition: a list of conditions is deprecated in Sigma; join them "
                     "with 'or'");
        return;
    }
    if (!s || !*s) {
        err_at(c, v, "condition must be a non-empty string");
        return;
    }
    cparse_t cp = {c, s, s, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1, 0, 0,
                   (int)v->start_mark.column + 1};
    /* Columns are exact for a plain or quoted scalar on one line. */
    if (v->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
        v->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
        cp.col++;
    else if (v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || strchr(s, '\n') ||
             v->end_mark.line != v->start_mark.line)
        cp.col = 0; /* offsets in the folded text are not columns: point at the scalar */
    int root = parse_or(&cp);
    skip_ws(&cp);
    if (root >= 0 && *cp.p)
        cerr(&cp, cp.p, "unexpected '%s'", cp.p);
    if (cp.bad)
        return;
    if (root < 0) {
        err_at(c, v, "condition: out of memory");
        return;
    }
    c->rule->root = root;
}

typedef struct det_arg {
    yaml_node_t *cond;
    yaml_node_t *cond_key;
} det_arg_t;

static void detection_pair(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    det_arg_t *da = arg;
    if (!strcmp(key, "condition")) {
        da->cond = v;
        da->cond_key = k;
        return;
    }
    if (!strcmp(key, "timeframe")) {
        err_at(c, k, "'timeframe' is deprecated in Sigma; use a correlation with 'timespan'");
        return;
    }
    for (const char *p = key; *p; p++) {
        if (!is_word_char(*p) || *p == '*' || *p == '.') {
            err_at(c, k, "detection name '%s' may only use letters, digits, '_' and '-'", key);
            return;
        }
    }
    if (!strcmp(key, "them") || !strcmp(key, "and") || !strcmp(key, "or") ||
        !strcmp(key, "not") || !strcmp(key, "of") || !strcmp(key, "all")) {
        err_at(c, k, "'%s' is a condition keyword and cannot name a detection", key);
        return;
    }
    compile_detection(c, key, k, v);
}

/* ---- correlation, suppress ---------------------------------------------------------- */

static void compile_group_by(ctx_t *c, yaml_node_t *v, vsoc_field_t *out, uint32_t *n)
{
    yaml_node_t *single[1] = {v};
    yaml_node_item_t *it = NULL;
    size_t cnt = 1;
    if (v->type == YAML_SEQUENCE_NODE) {
        it = v->data.sequence.items.start;
        cnt = (size_t)(v->data.sequence.items.top - it);
    }
    if (cnt > VSOC_MAX_GROUP_BY) {
        err_at(c, v, "group-by: at most %d fields", VSOC_MAX_GROUP_BY);
        return;
    }
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *f = it ? node(c, it[i]) : single[0];
        const char *s = expect_string(c, f, "group-by field");
        if (!s)
            continue;
        char ferr[256];
        if (vsoc_field_resolve(s, &out[*n], ferr, sizeof ferr) != 0) {
            err_at(c, f, "%s", ferr);
            continue;
        }
        if (out[*n].type == VSOC_FT_BYTES || out[*n].type == VSOC_FT_REASONS) {
            err_at(c, f, "group-by field '%s' is not a scalar", s);
            vsoc_field_fini(&out[*n]);
            continue;
        }
        (*n)++;
    }
}

static const char *const corr_keys[] = {"type", "group-by", "timespan", "condition", "field",
                                        "detections", "rules", "generate", "aliases",
                                        "gte", "gt"};

typedef struct corr_arg {
    yaml_node_t *type, *type_key, *timespan, *cond, *field, *detections;
    yaml_node_t *group_by; /* the key, for errors located at it */
    yaml_node_t *short_key, *short_val; /* fleet_count's short threshold form, gte: N */
} corr_arg_t;

static void corr_pair(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    corr_arg_t *a = arg;
    corr_t *co = &c->rule->corr;
    if (!strcmp(key, "type")) {
        a->type = v;
        a->type_key = k;
    } else if (!strcmp(key, "group-by")) {
        a->group_by = k;
        compile_group_by(c, v, co->group_by, &co->ngroup);
    } else if (!strcmp(key, "gte") || !strcmp(key, "gt")) {
        a->short_key = k;
        a->short_val = v;
    } else if (!strcmp(key, "timespan")) {
        a->timespan = v;
    } else if (!strcmp(key, "condition")) {
        a->cond = v;
    } else if (!strcmp(key, "field")) {
        a->field = v;
    } else if (!strcmp(key, "detections")) {
        a->detections = v;
    } else if (!strcmp(key, "rules")) {
        err_at(c, k, "correlation 'rules' (other rules' ids) is not supported yet; list this "
                     "rule's detections under 'detections'");
    } else {
        err_at(c, k, "correlation '%s' is not supported", key);
    }
}

static void compile_comparison(ctx_t *c, yaml_node_t *k, yaml_node_t *val);

static void compile_threshold(ctx_t *c, yaml_node_t *v)
{
    if (!v) {
        err_at(c, NULL, "correlation needs a condition such as {gte: 3}");
        return;
    }
    if (v->type != YAML_MAPPING_NODE ||
        v->data.mapping.pairs.top - v->data.mapping.pairs.start != 1) {
        err_at(c, v, "correlation condition must be one comparison, e.g. {gte: 3}");
        return;
    }
    compile_comparison(c, node(c, v->data.mapping.pairs.start[0].key),
                       node(c, v->data.mapping.pairs.start[0].value));
}

/* One threshold, op k (gte or gt) and value val, into the rule's corr.threshold. */
static void compile_comparison(ctx_t *c, yaml_node_t *k, yaml_node_t *val)
{
    corr_t *co = &c->rule->corr;
    const char *op = scalar(k), *s = scalar(val);
    int64_t n;
    if (!s || vsoc_parse_int(s, &n) != 0 || n < 0) {
        err_at(c, val, "correlation threshold must be a non-negative integer");
        return;
    }
    if (op && !strcmp(op, "gt"))
        n = n == INT64_MAX ? n : n + 1; /* out of range below either way */
    else if (!op || strcmp(op, "gte")) {
        if (op && (!strcmp(op, "lt") || !strcmp(op, "lte") || !strcmp(op, "eq") ||
                   !strcmp(op, "neq")))
            err_at(c, k, "correlation condition '%s' is not supported: vsoc fires when a "
                         "sliding window reaches a threshold (use gte or gt)", op);
        else
            err_at(c, k, "unknown correlation condition '%s' (use gte or gt)", op ? op : "");
        return;
    }
    if (n < 1 || (uint64_t)n > VSOC_MAX_THRESHOLD) {
        err_at(c, val, "correlation threshold must be 1..%u", VSOC_MAX_THRESHOLD);
        return;
    }
    co->threshold = (uint32_t)n;
}

static int find_det(vsoc_rule_t *r, const char *name)
{
    for (uint32_t i = 0; i < r->ndets; i++)
        if (!strcmp(r->dets[i].name, name))
            return (int)i;
    return -1;
}

static void compile_correlation(ctx_t *c, yaml_node_t *v)
{
    corr_t *co = &c->rule->corr;
    if (v->type != YAML_MAPPING_NODE) {
        err_at(c, v, "correlation must be a map");
        return;
    }
    corr_arg_t a;
    memset(&a, 0, sizeof a);
    each_pair(c, v, corr_keys, sizeof corr_keys / sizeof corr_keys[0], "correlation",
              corr_pair, &a);
    static const char *const types[] = {"event_count", "value_count", "temporal",
                                        "temporal_ordered", "fleet_count"};
    if (!a.timespan) {
        err_at(c, v, "correlation needs a timespan (e.g. 30s, 10m)");
    } else {
        const char *s = scalar(a.timespan);
        if (!s || vsoc_parse_duration(s, &co->span_us) != 0 || co->span_us <= 0)
            err_at(c, a.timespan, "bad timespan '%s' (expected e.g. 500ms, 30s, 10m, 1h, 1d)",
                   s ? s : "");
    }
    const char *t = a.type ? scalar(a.type) : NULL;
    if (!a.type) {
        err_at(c, v, "correlation needs a type (event_count, value_count, temporal, "
                     "temporal_ordered, fleet_count)");
        return;
    }
    for (int i = 0; i < 5; i++)
        if (t && !strcmp(t, types[i]))
            co->type = (corr_type_t)(i + 1);
    if (!co->type) {
        const char *s = t ? vsoc_did_you_mean(t, types, 5) : NULL;
        if (s)
            err_at(c, a.type, "unknown correlation type '%s' (did you mean '%s'?)", t, s);
        else
            err_at(c, a.type, "unknown correlation type '%s'", t ? t : "");
        return;
    }
    if (a.short_key && co->type != CORR_FLEET_COUNT)
        err_at(c, a.short_key, "'%s' directly under correlation is fleet_count's short form; "
                               "write condition: {%s: N}", scalar(a.short_key),
               scalar(a.short_key));
    if (co->type == CORR_FLEET_COUNT) {
        /* One counter per rule across the whole fleet: nothing to group or count by. */
        if (a.group_by)
            err_at(c, a.group_by, "fleet_count counts distinct vehicles across the fleet; it "
                                  "takes no group-by");
        if (a.field)
            err_at(c, a.field, "fleet_count counts distinct vehicles; it takes no 'field'");
        if (a.detections)
            err_at(c, a.detections, "'detections' belongs to temporal correlations");
        if (a.cond && a.short_key)
            err_at(c, a.short_key, "give the threshold once: condition: {gte: N} or gte: N");
        else if (a.cond)
            compile_threshold(c, a.cond);
        else if (a.short_key)
            compile_comparison(c, a.short_key, a.short_val);
        else
            err_at(c, v, "correlation fleet_count needs a condition such as {gte: 5} "
                         "(distinct vehicles)");
        return;
    }
    if (co->type == CORR_EVENT_COUNT || co->type == CORR_VALUE_COUNT) {
        if (a.cond)
            compile_threshold(c, a.cond);
        else
            err_at(c, v, "correlation %s needs a condition such as {gte: 3}", t);
        if (a.detections)
            err_at(c, a.detections, "'detections' belongs to temporal correlations");
    }
    if (co->type == CORR_VALUE_COUNT) {
        const char *s = a.field ? expect_string(c, a.field, "correlation field") : NULL;
        char ferr[256];
        if (!a.field)
            err_at(c, v, "value_count needs 'field' (the field whose distinct values count)");
        else if (s && vsoc_field_resolve(s, &co->value_field, ferr, sizeof ferr) != 0)
            err_at(c, a.field, "%s", ferr);
        else if (s && (co->value_field.type == VSOC_FT_BYTES ||
                       co->value_field.type == VSOC_FT_REASONS)) {
            /* Bytes count by their hex text; reasons are a set, not a value. */
            if (co->value_field.type == VSOC_FT_REASONS)
                err_at(c, a.field, "value_count cannot count '%s'", s);
        }
    } else if (a.field) {
        err_at(c, a.field, "'field' belongs to value_count correlations");
    }
    if (co->type == CORR_TEMPORAL || co->type == CORR_TEMPORAL_ORDERED) {
        if (a.cond)
            err_at(c, a.cond, "temporal correlations fire when all detections are seen; "
                              "they take no condition");
        if (!a.detections || a.detections->type != YAML_SEQUENCE_NODE) {
            err_at(c, a.detections ? a.detections : v,
                   "%s needs 'detections': a list of this rule's detection names", t);
            return;
        }
        yaml_node_item_t *it = a.detections->data.sequence.items.start;
        size_t n = (size_t)(a.detections->data.sequence.items.top - it);
        if (n < 2 || n > VSOC_MAX_ITEMS) {
            err_at(c, a.detections, "'detections' lists 2..%d detections", VSOC_MAX_ITEMS);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *dn = node(c, it[i]);
            const char *name = expect_string(c, dn, "detection name");
            if (!name)
                continue;
            int d = find_det(c->rule, name);
            if (d < 0) {
                const char *names[64];
                size_t nn = 0;
                for (uint32_t j = 0; j < c->rule->ndets && nn < 64; j++)
                    names[nn++] = c->rule->dets[j].name;
                const char *s = vsoc_did_you_mean(name, names, nn);
                if (s)
                    err_at(c, dn, "'%s' names no detection (did you mean '%s'?)", name, s);
                else
                    err_at(c, dn, "'%s' names no detection", name);
                continue;
            }
            co->items[co->nitems++] = (uint32_t)d;
        }
    }
}

static const char *const suppress_keys[] = {"group-by", "for"};

static void suppress_pair(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    suppress_t *s = &c->rule->sup;
    (void)arg;
    (void)k;
    if (!strcmp(key, "group-by")) {
        compile_group_by(c, v, s->group_by, &s->ngroup);
    } else {
        const char *t = scalar(v);
        if (!t || vsoc_parse_duration(t, &s->for_us) != 0 || s->for_us <= 0)
            err_at(c, v, "bad suppress period '%s' (expected e.g. 30s, 10m, 1h)", t ? t : "");
    }
}

/* ---- tests -------------------------------------------------------------------------- */

static const char *const test_keys[] = {"name", "vin", "events", "expect", "learn"};

typedef struct test_arg {
    vsoc_rule_test_t *t;
    int have_events, have_expect;
} test_arg_t;

static int test_add_line(ctx_t *c, vsoc_rule_test_t *t, const char *s, size_t n, int line,
                         int col)
{
    const char *reason = NULL;
    if (c->opts && c->opts->check_event && c->opts->check_event(s, n, &reason) != 0)
        err_pos(c, line, col, "test '%s': event does not parse: %s",
                t->name ? t->name : "(unnamed)", reason ? reason : "malformed");
    char **nl = realloc(t->lines, (t->nlines + 1) * sizeof *nl);
    if (!nl)
        return -1;
    t->lines = nl;
    int *nn = realloc(t->line_nos, (t->nlines + 1) * sizeof *nn);
    if (!nn)
        return -1;
    t->line_nos = nn;
    int *nc = realloc(t->line_cols, (t->nlines + 1) * sizeof *nc);
    if (!nc)
        return -1;
    t->line_cols = nc;
    t->lines[t->nlines] = strndup(s, n);
    if (!t->lines[t->nlines])
        return -1;
    t->line_nos[t->nlines] = line;
    t->line_cols[t->nlines] = col;
    t->nlines++;
    return 0;
}

/* The indentation of a 1-based line of the source: where a block scalar's text starts. */
static int line_indent(const ctx_t *c, int line)
{
    size_t i = 0;
    for (int l = 1; l < line && i < c->len; i++)
        if (c->text[i] == '\n')
            l++;
    int n = 0;
    while (i + (size_t)n < c->len && c->text[i + (size_t)n] == ' ')
        n++;
    return n;
}

static void events_block(ctx_t *c, yaml_node_t *k, yaml_node_t *v, vsoc_rule_test_t *t);

static void test_pair(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    test_arg_t *ta = arg;
    vsoc_rule_test_t *t = ta->t;
    (void)k;
    if (!strcmp(key, "name") || !strcmp(key, "vin")) {
        const char *s = expect_string(c, v, key);
        if (s) {
            char **dst = !strcmp(key, "name") ? &t->name : &t->vin;
            free(*dst);
            *dst = strdup(s);
        }
        return;
    }
    if (!strcmp(key, "expect")) {
        const char *s = scalar(v);
        int64_t n;
        if (!s || vsoc_parse_int(s, &n) != 0 || n < 0) {
            err_at(c, v, "test 'expect' must be the number of alerts (0 or more)");
            return;
        }
        t->expect = (long)n;
        ta->have_expect = 1;
        return;
    }
    /* events (or learn): a block of lines, or a list of lines. Learn lines are collected
     * through the same code into the events arrays, then moved. */
    int learn = !strcmp(key, "learn");
    char **saved = t->lines;
    int *saved_nos = t->line_nos, *saved_cols = t->line_cols;
    size_t saved_n = t->nlines;
    if (learn) {
        t->lines = NULL;
        t->line_nos = t->line_cols = NULL;
        t->nlines = 0;
    } else {
        ta->have_events = 1;
    }
    events_block(c, k, v, t);
    if (learn) {
        t->learn = t->lines;
        t->nlearn = t->nlines;
        free(t->line_nos);
        free(t->line_cols);
        t->lines = saved;
        t->line_nos = saved_nos;
        t->line_cols = saved_cols;
        t->nlines = saved_n;
    }
}

static void events_block(ctx_t *c, yaml_node_t *k, yaml_node_t *v, vsoc_rule_test_t *t)
{
    if (v->type == YAML_SCALAR_NODE) {
        const char *s = scalar(v);
        int block = v->data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
                    v->data.scalar.style == YAML_FOLDED_SCALAR_STYLE;
        int line = (int)v->start_mark.line + 1 + (block ? 1 : 0);
        int col = block ? line_indent(c, line) + 1 : (int)v->start_mark.column + 1;
        for (const char *p = s; *p;) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            const char *q = p;
            while (q < p + n && (*q == ' ' || *q == '\t'))
                q++;
            if (q < p + n && *q != '#' && test_add_line(c, t, p, n, line, col) != 0)
                return;
            line++;
            p += n + (nl ? 1 : 0);
        }
    } else if (v->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            yaml_node_t *e = node(c, *it);
            const char *s = expect_string(c, e, "test event");
            if (s && test_add_line(c, t, s, strlen(s), (int)e->start_mark.line + 1,
                                   (int)e->start_mark.column + 1) != 0)
                return;
        }
    } else {
        err_at(c, v, "test 'events' must be a block of lines or a list of lines");
        return;
    }
    if (t->nlines == 0)
        err_at(c, v, "test has no events");
}

static void compile_tests(ctx_t *c, yaml_node_t *v)
{
    vsoc_rule_t *r = c->rule;
    if (v->type != YAML_SEQUENCE_NODE) {
        err_at(c, v, "tests must be a list");
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *tn = node(c, *it);
        if (tn->type != YAML_MAPPING_NODE) {
            err_at(c, tn, "a test must be a map with name, events and expect");
            continue;
        }
        vsoc_rule_test_t *nt = realloc(r->tests, (r->ntests + 1) * sizeof *nt);
        if (!nt)
            return;
        r->tests = nt;
        vsoc_rule_test_t *t = &nt[r->ntests++];
        memset(t, 0, sizeof *t);
        t->line = (int)tn->start_mark.line + 1;
        t->col = (int)tn->start_mark.column + 1;
        test_arg_t ta = {t, 0, 0};
        each_pair(c, tn, test_keys, sizeof test_keys / sizeof test_keys[0], "test", test_pair,
                  &ta);
        if (!ta.have_events)
            err_at(c, tn, "test needs 'events'");
        if (!ta.have_expect)
            err_at(c, tn, "test needs 'expect' (the number of alerts)");
        if (!t->name) {
            char buf[32];
            snprintf(buf, sizeof buf, "test %zu", r->ntests);
            t->name = strdup(buf);
        }
        if (!t->vin)
            t->vin = strdup("TESTVIN0000000001");
    }
}

/* ---- prefilter ---------------------------------------------------------------------- */

typedef int64_t range_t[2];

static int pf_union(prefilter_t *dst, const prefilter_t *src)
{
    if (dst->any || src->any) {
        prefilter_fini(dst);
        dst->any = 1;
        return 0;
    }
#define APPEND(arr, n, T)                                                                      \
    do {                                                                                       \
        if (src->n) {                                                                          \
            T *na = realloc(dst->arr, (dst->n + src->n) * sizeof(T));                          \
            if (!na)                                                                           \
                return -1;                                                                     \
            memcpy(na + dst->n, src->arr, src->n * sizeof(T));                                 \
            dst->arr = na;                                                                     \
            dst->n += src->n;                                                                  \
        }                                                                                      \
    } while (0)
    APPEND(ids, nids, uint32_t);
    APPEND(pgns, npgns, uint32_t);
    APPEND(ranges, nranges, range_t);
#undef APPEND
    for (size_t i = 0; i < src->ntypes; i++) {
        char **nt = realloc(dst->types, (dst->ntypes + 1) * sizeof *nt);
        if (!nt)
            return -1;
        dst->types = nt;
        if (!(nt[dst->ntypes] = strdup(src->types[i])))
            return -1;
        dst->ntypes++;
    }
    return 0;
}

/* Prefilter of one alternative (an AND of matches): the first usable constraint. */
static int pf_alt(const alt_t *a, prefilter_t *pf, vsoc_event_kind_t kind)
{
    memset(pf, 0, sizeof *pf);
    const fmatch_t *best = NULL;
    int best_rank = 0; /* ids 3, pgn 2, range 1 */
    for (uint32_t i = 0; i < a->n; i++) {
        const fmatch_t *m = &a->m[i];
        if (m->bits || m->all)
            continue;
        int rank = 0;
        if (m->field.id == VSOC_F_CAN_ID && m->op == OP_EQ)
            rank = 3;
        else if (m->field.id == VSOC_F_TYPE && m->op == OP_EQ && kind == VSOC_EVENT_IDS) {
            int glob = 0;
            for (uint32_t v = 0; v < m->nvals; v++)
                glob |= m->vals[v].glob;
            rank = glob ? 0 : 3;
        } else if (m->field.id == VSOC_F_J1939_PGN && m->op == OP_EQ)
            rank = 2;
        else if (m->field.id == VSOC_F_CAN_ID &&
                 (m->op == OP_IN_RANGE || m->op == OP_GT || m->op == OP_GTE || m->op == OP_LT ||
                  m->op == OP_LTE)) {
            /* A range that holds every identifier ("can.id|gte: 0") constrains nothing. */
            int all = 0;
            for (uint32_t v = 0; v < m->nvals; v++) {
                int64_t x = m->vals[v].i;
                all |= (m->op == OP_GTE && x <= 0) || (m->op == OP_GT && x < 0) ||
                       (m->op == OP_LTE && x >= 0x1FFFFFFF) || (m->op == OP_LT && x > 0x1FFFFFFF) ||
                       (m->op == OP_IN_RANGE && x <= 0 && m->vals[v].i2 >= 0x1FFFFFFF);
            }
            rank = all ? 0 : 1;
        }
        if (rank > best_rank) {
            best = m;
            best_rank = rank;
        }
    }
    if (!best) {
        pf->any = 1;
        return 0;
    }
    size_t n = best->nvals;
    if (best->field.id == VSOC_F_TYPE) {
        pf->types = calloc(n, sizeof *pf->types);
        if (!pf->types)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (!(pf->types[i] = lower_dup(best->vals[i].s)))
                return -1;
            pf->ntypes++;
        }
    } else if (best_rank >= 2) {
        uint32_t *arr = malloc(n * sizeof *arr);
        if (!arr)
            return -1;
        for (size_t i = 0; i < n; i++)
            arr[i] = (uint32_t)best->vals[i].i;
        if (best_rank == 3) {
            pf->ids = arr;
            pf->nids = n;
        } else {
            pf->pgns = arr;
            pf->npgns = n;
        }
    } else {
        pf->ranges = malloc(n * sizeof *pf->ranges);
        if (!pf->ranges)
            return -1;
        for (size_t i = 0; i < n; i++) {
            int64_t lo = 0, hi = 0x1FFFFFFF, v = best->vals[i].i;
            switch (best->op) {
            case OP_IN_RANGE: lo = v; hi = best->vals[i].i2; break;
            case OP_GT: lo = v == INT64_MAX ? v : v + 1; break;
            case OP_GTE: lo = v; break;
            case OP_LT: hi = v == INT64_MIN ? v : v - 1; break;
            case OP_LTE: hi = v; break;
            default: break;
            }
            pf->ranges[i][0] = lo;
            pf->ranges[i][1] = hi;
        }
        pf->nranges = n;
    }
    return 0;
}

static int pf_det(const det_t *d, prefilter_t *pf, vsoc_event_kind_t kind)
{
    memset(pf, 0, sizeof *pf);
    for (uint32_t a = 0; a < d->nalt; a++) {
        prefilter_t x;
        if (pf_alt(&d->alts[a], &x, kind) != 0 || pf_union(pf, &x) != 0) {
            prefilter_fini(&x);
            return -1;
        }
        prefilter_fini(&x);
        if (pf->any)
            break;
    }
    return 0;
}

static size_t pf_size(const prefilter_t *pf)
{
    return pf->any ? (size_t)-1 : pf->nids + pf->npgns * 4 + pf->nranges * 64 + pf->ntypes;
}

/* Prefilter of a condition node: AND keeps the more selective side, OR unites, NOT is
 * unconstrained. */
static int pf_node(const vsoc_rule_t *r, uint32_t ni, prefilter_t *pf)
{
    const cnode_t *n = &r->nodes[ni];
    memset(pf, 0, sizeof *pf);
    switch (n->op) {
    case CN_DET:
        return pf_det(&r->dets[n->det], pf, r->kind);
    case CN_NOT:
        pf->any = 1;
        return 0;
    case CN_AND:
    case CN_OR: {
        prefilter_t a, b;
        if (pf_node(r, n->a, &a) != 0)
            return -1;
        if (pf_node(r, n->b, &b) != 0) {
            prefilter_fini(&a);
            return -1;
        }
        if (n->op == CN_OR) {
            int rc = pf_union(&a, &b);
            prefilter_fini(&b);
            *pf = a;
            return rc;
        }
        if (pf_size(&a) <= pf_size(&b)) {
            prefilter_fini(&b);
            *pf = a;
        } else {
            prefilter_fini(&a);
            *pf = b;
        }
        return 0;
    }
    }
    pf->any = 1;
    return 0;
}

static int compute_prefilter(vsoc_rule_t *r)
{
    if (r->corr.type == CORR_TEMPORAL || r->corr.type == CORR_TEMPORAL_ORDERED) {
        /* Events reach the rule if they can match any item (and the condition gate, which
         * only narrows: the union of items is a safe superset). */
        memset(&r->pf, 0, sizeof r->pf);
        for (uint32_t i = 0; i < r->corr.nitems; i++) {
            prefilter_t x;
            if (pf_det(&r->dets[r->corr.items[i]], &x, r->kind) != 0 || pf_union(&r->pf, &x) != 0) {
                prefilter_fini(&x);
                return -1;
            }
            prefilter_fini(&x);
        }
        return 0;
    }
    if (r->root < 0) {
        r->pf.any = 1;
        return 0;
    }
    return pf_node(r, (uint32_t)r->root, &r->pf);
}

/* ---- the rule ----------------------------------------------------------------------- */

static const char *const rule_keys[] = {
    "id", "title", "name", "status", "level", "description", "author", "date", "modified",
    "references", "tags", "logsource", "detection", "correlation", "suppress",
    "falsepositives", "tests", "fields", "license", "related", "taxonomy", "scope",
};

static const char *const logsource_keys[] = {"product", "category", "service", "definition"};
static const char *const categories[] = {"can", "ids", "j1939", "uds"};

typedef struct rule_arg {
    yaml_node_t *detection, *correlation, *logsource, *tests, *suppress;
    yaml_node_t *suppress_key;
    int have_id, have_level, have_title;
} rule_arg_t;

static void copy_str(ctx_t *c, yaml_node_t *v, const char *what, char **dst)
{
    const char *s = expect_string(c, v, what);
    if (s) {
        free(*dst);
        *dst = strdup(s);
    }
}

static void string_list(ctx_t *c, yaml_node_t *v, const char *what, char ***out, size_t *n)
{
    if (v->type != YAML_SEQUENCE_NODE) {
        err_at(c, v, "%s must be a list of strings", what);
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        const char *s = expect_string(c, node(c, *it), what);
        if (!s || !out)
            continue;
        char **nl = realloc(*out, (*n + 1) * sizeof *nl);
        if (!nl)
            return;
        *out = nl;
        if ((nl[*n] = strdup(s)))
            (*n)++;
    }
}

static void logsource_pair(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    vsoc_rule_t *r = c->rule;
    (void)k;
    (void)arg;
    const char *s = expect_string(c, v, key);
    if (!s)
        return;
    if (!strcmp(key, "product")) {
        if (strcmp(s, "vehicle"))
            err_at(c, v, "logsource product '%s' is not 'vehicle'", s);
    } else if (!strcmp(key, "category")) {
        if (!strcmp(s, "can")) {
            r->kind = VSOC_EVENT_CAN;
        } else if (!strcmp(s, "j1939")) {
            r->kind = VSOC_EVENT_CAN;
            r->need = VSOC_HAS_J1939;
        } else if (!strcmp(s, "uds")) {
            r->kind = VSOC_EVENT_CAN;
            r->need = VSOC_HAS_UDS;
        } else if (!strcmp(s, "ids")) {
            r->kind = VSOC_EVENT_IDS;
        } else {
            const char *sug = vsoc_did_you_mean(s, categories, 4);
            if (sug)
                err_at(c, v, "unknown logsource category '%s' (did you mean '%s'?)", s, sug);
            else
                err_at(c, v, "unknown logsource category '%s' (can, j1939, uds or ids)", s);
        }
    }
}

static void rule_pair(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg)
{
    rule_arg_t *ra = arg;
    vsoc_rule_t *r = c->rule;
    (void)k;
    if (!strcmp(key, "id")) {
        const char *s = expect_string(c, v, "id");
        if (!s)
            return;
        for (const char *p = s; *p; p++) {
            if (!is_word_char(*p) || *p == '*') {
                err_at(c, v, "rule id '%s' may only use letters, digits, '.', '_' and '-'", s);
                return;
            }
        }
        if (strlen(s) > VSOC_RULE_ID_MAX) {
            err_at(c, v, "rule id '%.40s...' is longer than %d characters", s,
                   VSOC_RULE_ID_MAX);
            return;
        }
        r->id = strdup(s);
        r->line = (int)v->start_mark.line + 1;
        ra->have_id = 1;
        free(c->id);
        c->id = strdup(s);
        c->id_line = r->line;
        c->id_col = (int)v->start_mark.column + 1;
    } else if (!strcmp(key, "title") || !strcmp(key, "name")) {
        if (!strcmp(key, "title"))
            ra->have_title = 1;
        if (!strcmp(key, "title"))
            copy_str(c, v, key, &r->title);
        else
            expect_string(c, v, key);
    } else if (!strcmp(key, "status")) {
        static const char *const st[] = {"experimental", "test", "stable", "deprecated",
                                         "unsupported"};
        const char *s = expect_string(c, v, key);
        if (!s)
            return;
        for (int i = 0; i < 5; i++)
            if (!strcmp(s, st[i])) {
                r->status = strdup(s);
                return;
            }
        const char *sug = vsoc_did_you_mean(s, st, 5);
        if (sug)
            err_at(c, v, "unknown status '%s' (did you mean '%s'?)", s, sug);
        else
            err_at(c, v, "unknown status '%s' (experimental, test, stable, deprecated)", s);
    } else if (!strcmp(key, "level")) {
        static const char *const lv[] = {"informational", "low", "medium", "high", "critical"};
        const char *s = expect_string(c, v, key);
        if (!s)
            return;
        r->level = vsoc_level_from_name(s);
        if (!r->level) {
            const char *sug = vsoc_did_you_mean(s, lv, 5);
            if (sug)
                err_at(c, v, "unknown level '%s' (did you mean '%s'?)", s, sug);
            else
                err_at(c, v, "unknown level '%s' (informational, low, medium, high, critical)",
                       s);
        }
        ra->have_level = 1;
    } else if (!strcmp(key, "description")) {
        copy_str(c, v, key, &r->description);
    } else if (!strcmp(key, "tags")) {
        string_list(c, v, key, &r->tags, &r->ntags);
        for (size_t i = 0; i < r->ntags; i++) {
            const char *t = r->tags[i];
            const char *dot = strchr(t, '.');
            if (!dot || dot == t || !dot[1])
                err_at(c, v, "tag '%s' should be namespace.value (e.g. atm.t0012, "
                             "unr155.annex5.b.4)", t);
        }
    } else if (!strcmp(key, "references") || !strcmp(key, "falsepositives") ||
               !strcmp(key, "fields")) {
        string_list(c, v, key, NULL, NULL);
    } else if (!strcmp(key, "logsource")) {
        ra->logsource = v;
    } else if (!strcmp(key, "detection")) {
        ra->detection = v;
    } else if (!strcmp(key, "correlation")) {
        ra->correlation = v;
    } else if (!strcmp(key, "suppress")) {
        ra->suppress = v;
        ra->suppress_key = k;
    } else if (!strcmp(key, "tests")) {
        ra->tests = v;
    }
    /* author, date, modified, license, related, taxonomy, scope: kept in the file only. */
}

/* Compiles one YAML document into a rule. Returns the rule (refs 1) or NULL when it has
 * errors (all reported). */
static vsoc_rule_t *compile_rule(ctx_t *c, yaml_node_t *root)
{
    vsoc_rule_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->refs = 1;
    r->root = -1;
    r->file = strdup(c->file);
    r->line = (int)root->start_mark.line + 1;
    c->rule = r;
    c->errors = 0;
    if (root->type != YAML_MAPPING_NODE) {
        err_at(c, root, "a rule must be a map, not %s", type_name(root));
        rule_free(r);
        return NULL;
    }
    rule_arg_t ra;
    memset(&ra, 0, sizeof ra);
    each_pair(c, root, rule_keys, sizeof rule_keys / sizeof rule_keys[0], "rule", rule_pair,
              &ra);
    if (!ra.have_id)
        err_at(c, root, "rule needs an 'id'");
    if (!ra.have_title)
        err_at(c, root, "rule needs a 'title'");
    if (!ra.have_level)
        err_at(c, root, "rule needs a 'level'");
    if (!ra.logsource) {
        err_at(c, root, "rule needs a 'logsource' with a category (can, j1939, uds or ids)");
    } else if (ra.logsource->type != YAML_MAPPING_NODE) {
        err_at(c, ra.logsource, "logsource must be a map");
    } else {
        each_pair(c, ra.logsource, logsource_keys,
                  sizeof logsource_keys / sizeof logsource_keys[0], "logsource", logsource_pair,
                  NULL);
        if (!r->kind && !map_get(c, ra.logsource, "category", NULL))
            err_at(c, ra.logsource, "logsource needs a category (can, j1939, uds or ids)");
    }
    det_arg_t da = {0};
    if (!ra.detection) {
        err_at(c, root, "rule needs a 'detection'");
    } else if (ra.detection->type != YAML_MAPPING_NODE) {
        err_at(c, ra.detection, "detection must be a map");
    } else {
        each_pair(c, ra.detection, NULL, 0, "detection", detection_pair, &da);
    }
    if (ra.correlation)
        compile_correlation(c, ra.correlation);
    int temporal = r->corr.type == CORR_TEMPORAL || r->corr.type == CORR_TEMPORAL_ORDERED;
    if (da.cond)
        compile_condition(c, da.cond);
    else if (ra.detection && !temporal)
        err_at(c, ra.detection, "detection needs a 'condition'");
    if (ra.detection && r->ndets == 0)
        err_at(c, ra.detection, "detection has no named selection");
    if (ra.suppress && r->corr.type == CORR_FLEET_COUNT) {
        /* Hits feed the fleet count; holding some back would hide vehicles from it. */
        err_at(c, ra.suppress_key, "fleet_count takes no suppress: a fleet alert repeats at "
                                   "most once per timespan while the count stays reached");
    } else if (ra.suppress) {
        if (ra.suppress->type != YAML_MAPPING_NODE) {
            err_at(c, ra.suppress, "suppress must be a map {group-by: [...], for: 10m}");
        } else {
            r->sup.on = 1;
            each_pair(c, ra.suppress, suppress_keys, 2, "suppress", suppress_pair, NULL);
            if (!r->sup.for_us)
                err_at(c, ra.suppress, "suppress needs 'for' (a period such as 10m)");
        }
    }
    if (ra.tests)
        compile_tests(c, ra.tests);
    /* Detections the condition never uses are almost always a mistake. */
    if (c->errors == 0 && r->root >= 0 && !temporal) {
        for (uint32_t i = 0; i < r->ndets; i++) {
            int used = 0;
            for (uint32_t n = 0; n < r->nnodes; n++)
                used |= r->nodes[n].op == CN_DET && r->nodes[n].det == i;
            if (!used)
                vsoc_diag_add(c->diags, VSOC_DIAG_WARNING, c->file, r->dets[i].line,
                              r->dets[i].col, "detection '%s' is not used by the condition",
                              r->dets[i].name);
        }
    }
    if (c->errors == 0) {
        if (r->ntests == 0)
            warn_at(c, root, "rule '%s' has no tests", r->id);
        if (!r->ntags)
            warn_at(c, root, "rule '%s' has no tags (ATM / UN R155 threat ids)", r->id);
    }
    if (c->errors == 0 && compute_prefilter(r) != 0)
        err_at(c, root, "out of memory");
    if (c->errors) {
        rule_free(r);
        return NULL;
    }
    return r;
}

/* ---- files -------------------------------------------------------------------------- */

/* Rules compiled so far, and every id seen (compiled or not), in load order. */
typedef struct rule_vec {
    vsoc_rule_t **v;
    size_t n, cap;
    vsoc_yamlfile_ids_t seen;
    const vsoc_rule_load_opts_t *opts;
    vsoc_diags_t *d;
    size_t nfiles;
} rule_vec_t;

static int vec_push(rule_vec_t *rv, vsoc_rule_t *r)
{
    if (rv->n == rv->cap) {
        size_t cap = rv->cap ? rv->cap * 2 : 64;
        vsoc_rule_t **nv = realloc(rv->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        rv->v = nv;
        rv->cap = cap;
    }
    rv->v[rv->n++] = r;
    return 0;
}

/* vsoc_yamlfile_each_doc's callback for one file: name and text outlive the call. */
typedef struct rule_text {
    const char *name;
    const unsigned char *text;
    size_t len;
    rule_vec_t *out;
} rule_text_t;

static int load_doc(void *arg, yaml_document_t *doc, yaml_node_t *root)
{
    rule_text_t *t = arg;
    rule_vec_t *out = t->out;
    ctx_t c = {t->name, doc, out->d, 0, NULL, out->opts, NULL, 0, 0, t->text, t->len};
    vsoc_rule_t *r = compile_rule(&c, root);
    /* Out of memory, an id is not remembered: at worst a later duplicate goes unreported. */
    if (c.id)
        vsoc_yamlfile_ids_add(&out->seen, out->d, "rule", c.id, t->name, c.id_line, c.id_col);
    if (r && vec_push(out, r) != 0)
        rule_free(r);
    return 0;
}

static void load_text(const char *name, const unsigned char *text, size_t len, rule_vec_t *out)
{
    rule_text_t t = {name, text, len, out};
    vsoc_yamlfile_each_doc(name, text, len, out->d, load_doc, &t);
}

/* vsoc_yamlfile_load_path's callback: counts the files read. */
static void load_file(void *arg, const char *name, const unsigned char *text, size_t len)
{
    rule_vec_t *out = arg;
    out->nfiles++;
    load_text(name, text, len, out);
}

static int rule_cmp(const void *a, const void *b)
{
    return strcmp((*(vsoc_rule_t *const *)a)->id, (*(vsoc_rule_t *const *)b)->id);
}

static vsoc_ruleset_t *finish(rule_vec_t *rv)
{
    /* Duplicate ids were reported by vsoc_yamlfile_ids_add; keep the first rule of each id. */
    size_t keep = 0;
    for (size_t i = 0; i < rv->n; i++) {
        vsoc_rule_t *r = rv->v[i];
        size_t j;
        for (j = 0; j < keep; j++)
            if (!strcmp(rv->v[j]->id, r->id))
                break;
        if (j < keep) {
            rule_free(r);
            continue;
        }
        rv->v[keep++] = r;
    }
    rv->n = keep;
    vsoc_yamlfile_ids_fini(&rv->seen);
    if (rv->n)
        qsort(rv->v, rv->n, sizeof *rv->v, rule_cmp);
    vsoc_ruleset_t *rs = vsoc_ruleset_from_rules(rv->v, rv->n, rv->nfiles);
    for (size_t i = 0; i < rv->n; i++)
        vsoc_rule_unref(rv->v[i]); /* the ruleset holds its own references */
    free(rv->v);
    return rs;
}

vsoc_ruleset_t *vsoc_ruleset_load(const char *const *paths, size_t npaths,
                                  const vsoc_rule_load_opts_t *opts, vsoc_diags_t *d)
{
    rule_vec_t rv = {.opts = opts, .d = d};
    /* Running out of memory while reading only skips files: the rules read are still
     * returned, and a rule that fails to compile for want of memory is an error anyway. */
    for (size_t i = 0; i < npaths; i++)
        vsoc_yamlfile_load_path(paths[i], d, load_file, &rv);
    return finish(&rv);
}

vsoc_ruleset_t *vsoc_ruleset_load_string(const char *name, const char *text, size_t len,
                                         const vsoc_rule_load_opts_t *opts, vsoc_diags_t *d)
{
    rule_vec_t rv = {.opts = opts, .d = d, .nfiles = 1};
    load_text(name, (const unsigned char *)text, len, &rv);
    return finish(&rv);
}

/* ---- accessors ---------------------------------------------------------------------- */

const char *vsoc_rule_id(const vsoc_rule_t *r) { return r->id; }
const char *vsoc_rule_title(const vsoc_rule_t *r) { return r->title; }
const char *vsoc_rule_description(const vsoc_rule_t *r)
{
    return r->description ? r->description : "";
}
vsoc_level_t vsoc_rule_level(const vsoc_rule_t *r) { return r->level; }
size_t vsoc_rule_tag_count(const vsoc_rule_t *r) { return r->ntags; }
const char *vsoc_rule_tag(const vsoc_rule_t *r, size_t i)
{
    return i < r->ntags ? r->tags[i] : NULL;
}
const char *vsoc_rule_file(const vsoc_rule_t *r) { return r->file; }
int vsoc_rule_line(const vsoc_rule_t *r) { return r->line; }
size_t vsoc_rule_test_count(const vsoc_rule_t *r) { return r->ntests; }
const vsoc_rule_test_t *vsoc_rule_test(const vsoc_rule_t *r, size_t i)
{
    return i < r->ntests ? &r->tests[i] : NULL;
}

const char *vsoc_rule_correlation(const vsoc_rule_t *r)
{
    switch (r->corr.type) {
    case CORR_EVENT_COUNT: return "event_count";
    case CORR_VALUE_COUNT: return "value_count";
    case CORR_TEMPORAL: return "temporal";
    case CORR_TEMPORAL_ORDERED: return "temporal_ordered";
    case CORR_FLEET_COUNT: return "fleet_count";
    default: return NULL;
    }
}

int vsoc_rule_fleet(const vsoc_rule_t *r, int64_t *timespan_us, uint64_t *gte)
{
    if (r->corr.type != CORR_FLEET_COUNT)
        return 0;
    if (timespan_us)
        *timespan_us = r->corr.span_us;
    if (gte)
        *gte = r->corr.threshold;
    return 1;
}
