/* ruleset.c: the immutable ruleset and its index, so that an event only visits the rules
 * that can match it: CAN frames by CAN ID, J1939 PGN and ID range; IDS events by type.
 *
 * The index is built once; lookups allocate nothing and are safe from any number of threads. */
#include "rule_internal.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* One index list: the rules under one key, in increasing rule order. */
typedef struct slot {
    uint64_t key; /* CAN ID or PGN; for types the hash of the lower-case name */
    const char *name; /* types only: the name, to confirm a hash hit */
    uint32_t off, n;  /* into ix->lists */
    int used;
} slot_t;

typedef struct table {
    slot_t *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
} table_t;

typedef struct vsoc_index {
    uint32_t *lists;
    size_t nlists;
    table_t ids, pgns, types;
    uint32_t *can_any, n_can_any;
    uint32_t *ids_any, n_ids_any;
    struct {
        int64_t lo, hi;
        uint32_t rule;
    } *ranges;
    size_t nranges;
} vsoc_index_t;

typedef struct pair {
    uint64_t key;
    const char *name;
    uint32_t rule;
} pair_t;

static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->name && y->name) {
        int c = strcmp(x->name, y->name);
        if (c)
            return c;
    }
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

static uint64_t type_hash(const char *s, size_t n)
{
    char buf[128];
    if (n > sizeof buf)
        n = sizeof buf;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)vsoc_lower((unsigned char)s[i]);
    return vsoc_hash_bytes(buf, n, 0);
}

/* Builds a table from pairs (sorted here), appending their rule lists to ix->lists. */
static int table_build(vsoc_index_t *ix, table_t *t, pair_t *pairs, size_t n)
{
    if (n == 0)
        return 0; /* no slots: lookups return at once */
    qsort(pairs, n, sizeof *pairs, pair_cmp);
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots)
        return -1;
    t->mask = cap - 1;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint32_t off = (uint32_t)ix->nlists;
        while (j < n && pairs[j].key == pairs[i].key &&
               (!pairs[i].name || !strcmp(pairs[j].name, pairs[i].name))) {
            if (j == i || pairs[j].rule != pairs[j - 1].rule)
                ix->lists[ix->nlists++] = pairs[j].rule;
            j++;
        }
        size_t h = (size_t)vsoc_hash_u64(pairs[i].key) & t->mask;
        while (t->slots[h].used)
            h = (h + 1) & t->mask;
        t->slots[h] = (slot_t){pairs[i].key, pairs[i].name, off,
                               (uint32_t)(ix->nlists - off), 1};
        i = j;
    }
    return 0;
}

static const slot_t *table_find(const table_t *t, uint64_t key, const char *name, size_t nlen)
{
    if (!t->slots)
        return NULL;
    size_t h = (size_t)vsoc_hash_u64(key) & t->mask;
    while (t->slots[h].used) {
        const slot_t *s = &t->slots[h];
        if (s->key == key &&
            (!name || (strlen(s->name) == nlen && vsoc_eq_lower(name, s->name, nlen))))
            return s;
        h = (h + 1) & t->mask;
    }
    return NULL;
}

void vsoc_index_free(vsoc_index_t *ix)
{
    if (!ix)
        return;
    free(ix->lists);
    free(ix->ids.slots);
    free(ix->pgns.slots);
    free(ix->types.slots);
    free(ix->can_any);
    free(ix->ids_any);
    free(ix->ranges);
    free(ix);
}

int vsoc_index_build(vsoc_ruleset_t *rs)
{
    vsoc_index_t *ix = calloc(1, sizeof *ix);
    if (!ix)
        return VSOC_ENOMEM;
    size_t nid = 0, npgn = 0, ntype = 0, nrange = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const prefilter_t *pf = &rs->rules[i]->pf;
        nid += pf->nids;
        npgn += pf->npgns;
        ntype += pf->ntypes;
        nrange += pf->nranges;
    }
    pair_t *ids = calloc(nid + 1, sizeof *ids), *pgns = calloc(npgn + 1, sizeof *pgns),
           *types = calloc(ntype + 1, sizeof *types);
    ix->lists = calloc(nid + npgn + ntype + 1, sizeof *ix->lists);
    ix->can_any = calloc(rs->n + 1, sizeof *ix->can_any);
    ix->ids_any = calloc(rs->n + 1, sizeof *ix->ids_any);
    ix->ranges = calloc(nrange + 1, sizeof *ix->ranges);
    if (!ids || !pgns || !types || !ix->lists || !ix->can_any || !ix->ids_any || !ix->ranges)
        goto fail;
    nid = npgn = ntype = 0;
    for (uint32_t i = 0; i < rs->n; i++) {
        const vsoc_rule_t *r = rs->rules[i];
        const prefilter_t *pf = &r->pf;
        if (pf->any) {
            if (r->kind == VSOC_EVENT_IDS)
                ix->ids_any[ix->n_ids_any++] = i;
            else
                ix->can_any[ix->n_can_any++] = i;
            continue;
        }
        for (size_t k = 0; k < pf->nids; k++)
            ids[nid++] = (pair_t){pf->ids[k], NULL, i};
        for (size_t k = 0; k < pf->npgns; k++)
            pgns[npgn++] = (pair_t){pf->pgns[k], NULL, i};
        for (size_t k = 0; k < pf->ntypes; k++)
            types[ntype++] = (pair_t){type_hash(pf->types[k], strlen(pf->types[k])),
                                      pf->types[k], i};
        for (size_t k = 0; k < pf->nranges; k++) {
            ix->ranges[ix->nranges].lo = pf->ranges[k][0];
            ix->ranges[ix->nranges].hi = pf->ranges[k][1];
            ix->ranges[ix->nranges].rule = i;
            ix->nranges++;
        }
    }
    if (table_build(ix, &ix->ids, ids, nid) != 0 || table_build(ix, &ix->pgns, pgns, npgn) != 0 ||
        table_build(ix, &ix->types, types, ntype) != 0)
        goto fail;
    free(ids);
    free(pgns);
    free(types);
    rs->index = ix;
    return 0;
fail:
    free(ids);
    free(pgns);
    free(types);
    vsoc_index_free(ix);
    return VSOC_ENOMEM;
}

/* Merges up to four increasing lists into out without duplicates. */
static size_t merge(const uint32_t *const *lists, const uint32_t *lens, int k, uint32_t *out)
{
    uint32_t pos[4] = {0, 0, 0, 0};
    size_t n = 0;
    for (;;) {
        uint32_t best = UINT32_MAX;
        for (int i = 0; i < k; i++)
            if (pos[i] < lens[i] && lists[i][pos[i]] < best)
                best = lists[i][pos[i]];
        if (best == UINT32_MAX)
            return n;
        out[n++] = best;
        for (int i = 0; i < k; i++)
            while (pos[i] < lens[i] && lists[i][pos[i]] == best)
                pos[i]++;
    }
}

size_t vsoc_index_candidates(const vsoc_ruleset_t *rs, const vsoc_event_t *ev, uint32_t *out)
{
    const vsoc_index_t *ix = rs->index;
    const uint32_t *lists[4];
    uint32_t lens[4];
    int k = 0;
    if (ev->kind == VSOC_EVENT_CAN) {
        const slot_t *s = table_find(&ix->ids, ev->can.id, NULL, 0);
        if (s) {
            lists[k] = ix->lists + s->off;
            lens[k++] = s->n;
        }
        if (ev->derived & VSOC_HAS_J1939) {
            s = table_find(&ix->pgns, ev->j1939.pgn, NULL, 0);
            if (s) {
                lists[k] = ix->lists + s->off;
                lens[k++] = s->n;
            }
        }
        /* Range rules are few; those that contain this ID are written after the merge
         * area's end and merged as one more list. */
        uint32_t *rl = out + rs->n;
        uint32_t nr = 0;
        for (size_t i = 0; i < ix->nranges; i++)
            if ((int64_t)ev->can.id >= ix->ranges[i].lo && (int64_t)ev->can.id <= ix->ranges[i].hi)
                if (nr == 0 || rl[nr - 1] != ix->ranges[i].rule)
                    rl[nr++] = ix->ranges[i].rule; /* a rule's ranges are adjacent: once */
        if (nr) {
            lists[k] = rl;
            lens[k++] = nr;
        }
        if (ix->n_can_any) {
            lists[k] = ix->can_any;
            lens[k++] = ix->n_can_any;
        }
        if (k == 1 && lists[0] != rl) {
            memcpy(out, lists[0], lens[0] * sizeof *out);
            return lens[0];
        }
    } else if (ev->kind == VSOC_EVENT_IDS) {
        const slot_t *s = table_find(&ix->types, type_hash(ev->ids_type.p, ev->ids_type.n),
                                     ev->ids_type.p, ev->ids_type.n);
        if (s) {
            lists[k] = ix->lists + s->off;
            lens[k++] = s->n;
        }
        if (ix->n_ids_any) {
            lists[k] = ix->ids_any;
            lens[k++] = ix->n_ids_any;
        }
    }
    if (k == 0)
        return 0;
    return merge(lists, lens, k, out);
}

/* Collects the matches of an AND-only condition; returns 0 when the condition has any
 * other shape or a match the fast path cannot run. */
static int collect_fast(const vsoc_rule_t *r, uint32_t ni, const fmatch_t **out, size_t *n,
                        size_t cap)
{
    const cnode_t *c = &r->nodes[ni];
    if (c->op == CN_AND)
        return collect_fast(r, c->a, out, n, cap) && collect_fast(r, c->b, out, n, cap);
    if (c->op != CN_DET)
        return 0;
    const det_t *d = &r->dets[c->det];
    if (d->nalt != 1)
        return 0;
    for (uint32_t i = 0; i < d->alts[0].n; i++) {
        const fmatch_t *m = &d->alts[0].m[i];
        if (!m->fast || m->bits || m->field.id == VSOC_F_JSON || *n == cap)
            return 0;
        out[(*n)++] = m;
    }
    return 1;
}

static int build_fast(vsoc_ruleset_t *rs)
{
    size_t nops = 0, nvals = 0, cap_ops = 64, cap_vals = 64;
    rs->hdr = calloc(rs->n + 1, sizeof *rs->hdr);
    rs->ops = malloc(cap_ops * sizeof *rs->ops);
    rs->vals = malloc(cap_vals * sizeof *rs->vals);
    if (!rs->hdr || !rs->ops || !rs->vals)
        return VSOC_ENOMEM;
    for (size_t i = 0; i < rs->n; i++) {
        const vsoc_rule_t *r = rs->rules[i];
        rulehdr_t *h = &rs->hdr[i];
        h->kind = (uint8_t)r->kind;
        h->corr = (uint8_t)r->corr.type;
        h->need = r->need;
        const fmatch_t *ms[32];
        size_t nm = 0;
        if (r->root < 0 || r->corr.type == CORR_TEMPORAL || r->corr.type == CORR_TEMPORAL_ORDERED ||
            !collect_fast(r, (uint32_t)r->root, ms, &nm, 32))
            continue;
        size_t want_vals = 0;
        for (size_t k = 0; k < nm; k++)
            want_vals += ms[k]->nvals;
        while (nops + nm > cap_ops)
            cap_ops *= 2;
        while (nvals + want_vals > cap_vals)
            cap_vals *= 2;
        fastop_t *no = realloc(rs->ops, cap_ops * sizeof *no);
        if (!no)
            return VSOC_ENOMEM;
        rs->ops = no;
        fastval_t *nv = realloc(rs->vals, cap_vals * sizeof *nv);
        if (!nv)
            return VSOC_ENOMEM;
        rs->vals = nv;
        h->fast = 1;
        h->op_off = (uint32_t)nops;
        h->nops = (uint32_t)nm;
        for (size_t k = 0; k < nm; k++) {
            const fmatch_t *m = ms[k];
            fastop_t *o = &rs->ops[nops++];
            memset(o, 0, sizeof *o);
            o->field = (uint8_t)m->field.id;
            if (m->field.id == VSOC_F_CAN_BYTES) {
                o->lo = m->field.lo;
                o->hi = m->field.hi;
                o->shift = (uint8_t)(64 - 8 * (m->field.hi - m->field.lo));
            }
            o->all = m->all;
            o->voff = (uint32_t)nvals;
            o->nvals = m->nvals;
            for (uint32_t v = 0; v < m->nvals; v++) {
                int64_t a = m->vals[v].i, b = m->vals[v].i2;
                fastval_t fv = {-1, INT64_MIN, INT64_MAX};
                if (m->field.id == VSOC_F_BASELINE_REASONS) {
                    fv.mask = fv.lo = fv.hi = a; /* the reason's bit is set */
                    rs->vals[nvals++] = fv;
                    continue;
                }
                switch (m->op) {
                case OP_EQ: fv.lo = fv.hi = a; break;
                case OP_GT: fv.lo = a == INT64_MAX ? a : a + 1; if (a == INT64_MAX) fv.hi = INT64_MIN; break;
                case OP_GTE: fv.lo = a; break;
                case OP_LT: fv.hi = a == INT64_MIN ? a : a - 1; if (a == INT64_MIN) fv.lo = INT64_MAX; break;
                case OP_LTE: fv.hi = a; break;
                case OP_IN_RANGE: fv.lo = a; fv.hi = b; break;
                default: fv.mask = a; fv.lo = fv.hi = b; break; /* OP_MASK */
                }
                rs->vals[nvals++] = fv;
            }
        }
    }
    return 0;
}

vsoc_ruleset_t *vsoc_ruleset_from_rules(vsoc_rule_t **rules, size_t n, size_t nfiles)
{
    vsoc_ruleset_t *rs = calloc(1, sizeof *rs);
    if (!rs)
        return NULL;
    rs->refs = 1;
    rs->nfiles = nfiles;
    rs->rules = calloc(n + 1, sizeof *rs->rules);
    if (!rs->rules)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        __atomic_add_fetch(&rules[i]->refs, 1, __ATOMIC_RELAXED);
        rs->rules[rs->n++] = rules[i];
    }
    if (vsoc_index_build(rs) != 0 || build_fast(rs) != 0)
        goto fail;
    return rs;
fail:
    vsoc_ruleset_unref(rs);
    return NULL;
}

vsoc_ruleset_t *vsoc_ruleset_subset(const vsoc_ruleset_t *rs, size_t i)
{
    if (i >= rs->n)
        return NULL;
    vsoc_rule_t *r = rs->rules[i];
    return vsoc_ruleset_from_rules(&r, 1, 1);
}

/* Atomic: a ruleset is shared by worker threads and released by whichever lets go last. */
vsoc_ruleset_t *vsoc_ruleset_ref(vsoc_ruleset_t *rs)
{
    __atomic_add_fetch(&rs->refs, 1, __ATOMIC_RELAXED);
    return rs;
}

void vsoc_ruleset_unref(vsoc_ruleset_t *rs)
{
    if (!rs || __atomic_sub_fetch(&rs->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (size_t i = 0; i < rs->n; i++)
        vsoc_rule_unref(rs->rules[i]);
    free(rs->rules);
    vsoc_index_free(rs->index);
    free(rs->hdr);
    free(rs->ops);
    free(rs->vals);
    free(rs);
}

size_t vsoc_ruleset_count(const vsoc_ruleset_t *rs) { return rs->n; }
size_t vsoc_ruleset_files(const vsoc_ruleset_t *rs) { return rs->nfiles; }
const vsoc_rule_t *vsoc_ruleset_rule(const vsoc_ruleset_t *rs, size_t i)
{
    return i < rs->n ? rs->rules[i] : NULL;
}
