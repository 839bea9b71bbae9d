/* rule_internal.h: the compiled form of a rule, shared by the compiler (rule.c), the index
 * (ruleset.c) and the matcher (engine.c). Not a public interface. */
#ifndef VSOC_RULE_INTERNAL_H
#define VSOC_RULE_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "field.h"
#include "rule.h"

#include <pcre2.h>

typedef enum {
    OP_EQ = 1,
    OP_GLOB,
    OP_CONTAINS,
    OP_STARTSWITH,
    OP_ENDSWITH,
    OP_RE,
    OP_CIDR,
    OP_EXISTS,
    OP_GT,
    OP_GTE,
    OP_LT,
    OP_LTE,
    OP_MASK,
    OP_IN_RANGE,
    OP_NULL, /* "field: null": the field is absent */
} match_op_t;

typedef enum { CV_INT = 1, CV_FLOAT, CV_STR, CV_BOOL } cval_kind_t;

/* One compiled value. Strings are owned; lower-cased unless the match is cased (can.data
 * patterns are upper-case hex, as rendered). */
typedef struct cval {
    cval_kind_t kind;
    int has_num;    /* a string value that also reads as a number (JSON fields) */
    int64_t i, i2;  /* INT; MASK (mask, value) and IN_RANGE (lo, hi) pairs */
    double f, f2;   /* numeric form; IN_RANGE as floats */
    char *s;
    size_t n;
    pcre2_code *re;
    int glob;       /* s holds '*' or '?' wildcards */
    uint8_t family; /* CIDR: 4 or 6 */
    uint8_t prefix;
    uint8_t addr[16];
} cval_t;

typedef struct fmatch {
    vsoc_field_t field;
    match_op_t op;
    uint8_t all;       /* every value must match (Sigma |all) */
    uint8_t cased;     /* case-sensitive strings (Sigma |cased) */
    uint8_t bits;      /* extract a bit field from can.data first */
    uint8_t fast;      /* integer field, integer values, numeric operator: compare directly */
    uint8_t bits_le;
    uint16_t bits_start, bits_len;
    uint32_t nvals;
    cval_t *vals;
    int line, col;
} fmatch_t;

/* A detection is an OR of alternatives; an alternative is an AND of field matches. */
typedef struct alt {
    uint32_t n;
    fmatch_t *m;
} alt_t;

typedef struct det {
    char *name;
    uint32_t nalt;
    alt_t *alts;
    int line, col;
} det_t;

typedef enum { CN_DET = 1, CN_AND, CN_OR, CN_NOT } cnode_op_t;
typedef struct cnode {
    cnode_op_t op;
    uint32_t det;  /* CN_DET */
    uint32_t a, b; /* children (node indices) */
} cnode_t;

typedef enum {
    CORR_NONE = 0,
    CORR_EVENT_COUNT,
    CORR_VALUE_COUNT,
    CORR_TEMPORAL,
    CORR_TEMPORAL_ORDERED,
    CORR_FLEET_COUNT, /* matches are per-vehicle hits for a fleet counter (fleet.h) */
} corr_type_t;

#define VSOC_MAX_GROUP_BY 8
#define VSOC_MAX_ITEMS 16
#define VSOC_MAX_THRESHOLD 100000u

typedef struct corr {
    corr_type_t type;
    vsoc_field_t group_by[VSOC_MAX_GROUP_BY];
    uint32_t ngroup;
    int64_t span_us;
    uint32_t threshold; /* fire when the count reaches this (gte N, gt N-1); fleet_count:
                           distinct vehicles */
    vsoc_field_t value_field;
    uint32_t items[VSOC_MAX_ITEMS]; /* temporal: detection indices, in order */
    uint32_t nitems;
} corr_t;

typedef struct suppress {
    int on;
    vsoc_field_t group_by[VSOC_MAX_GROUP_BY];
    uint32_t ngroup;
    int64_t for_us;
} suppress_t;

/* What a rule can match, so that an event only visits rules that might. */
typedef struct prefilter {
    int any;              /* no usable constraint: visit every event of the rule's kind */
    uint32_t *ids;        /* CAN IDs */
    size_t nids;
    uint32_t *pgns;       /* J1939 PGNs */
    size_t npgns;
    int64_t (*ranges)[2]; /* inclusive CAN ID ranges */
    size_t nranges;
    char **types;         /* IDS event types, lower case */
    size_t ntypes;
} prefilter_t;

struct vsoc_rule {
    int refs;
    char *id, *title, *description, *status, *file;
    int line;
    vsoc_level_t level;
    vsoc_event_kind_t kind; /* events it applies to */
    uint32_t need;          /* VSOC_HAS_* bits an event must carry (category j1939/uds) */
    char **tags;
    size_t ntags;
    det_t *dets;
    uint32_t ndets;
    cnode_t *nodes;
    uint32_t nnodes;
    int32_t root; /* condition root node, -1 for none (temporal items only) */
    corr_t corr;
    suppress_t sup;
    prefilter_t pf;
    vsoc_rule_test_t *tests;
    size_t ntests;
};

/* The hot form of rules whose condition is an AND of integer comparisons on CAN fields
 * (most CAN rules): packed in contiguous arrays in rule order, so that visiting a rule
 * touches a few adjacent cache lines instead of a tree of separate allocations. */
typedef struct fastop {
    uint8_t field; /* vsoc_field_id_t */
    uint8_t lo, hi; /* can.data[lo:hi]; hi is also the payload length it needs (0 for others) */
    uint8_t all;
    uint8_t shift;  /* can.data: 64 - 8 * (hi - lo), to right-align a big-endian load */
    uint8_t pad[3];
    uint32_t voff, nvals; /* into vsoc_ruleset.vals */
} fastop_t;
_Static_assert(sizeof(fastop_t) == 16, "fastop_t layout");

/* Every integer comparison as one shape, so evaluation needs no branch on the operator:
 * (x & mask) in [lo, hi]. */
typedef struct fastval {
    int64_t mask, lo, hi;
} fastval_t;

typedef struct rulehdr {
    uint8_t kind;  /* vsoc_event_kind_t */
    uint8_t corr;  /* corr_type_t */
    uint8_t fast;  /* ops below are the whole condition */
    uint8_t pad;
    uint32_t need; /* VSOC_HAS_* */
    uint32_t op_off, nops;
} rulehdr_t;
_Static_assert(sizeof(rulehdr_t) == 16, "rulehdr_t layout");

struct vsoc_ruleset {
    int refs;
    vsoc_rule_t **rules;
    size_t n;
    size_t nfiles;
    struct vsoc_index *index;
    rulehdr_t *hdr; /* one per rule */
    fastop_t *ops;
    fastval_t *vals;
};

/* ruleset.c */
int vsoc_index_build(vsoc_ruleset_t *rs);
void vsoc_index_free(struct vsoc_index *ix);
vsoc_ruleset_t *vsoc_ruleset_from_rules(vsoc_rule_t **rules, size_t n, size_t nfiles);
void vsoc_rule_unref(vsoc_rule_t *r);

/* Candidate rules for one event, as rule indices in increasing order, written to out
 * (capacity: twice the ruleset's rule count; the upper half is scratch). Returns how many. */
size_t vsoc_index_candidates(const vsoc_ruleset_t *rs, const vsoc_event_t *ev, uint32_t *out);

#endif
