/* rule.h: compile vsoc's Sigma-flavoured YAML rules into an immutable, reference-counted
 * ruleset (see docs/rules.md for the language).
 *
 * Loading reports every problem in every file as a located diagnostic and keeps going; the
 * returned ruleset holds the rules that compiled. The caller decides whether any error is
 * fatal (vsoc_diags_errors). A ruleset is immutable once built and may be shared by threads;
 * each engine that uses it takes a reference. */
#ifndef VSOC_RULE_H
#define VSOC_RULE_H

#include "diag.h"
#include "vsoc.h"

/* The longest rule id: ids travel in alerts, Redis keys and checkpoints (fleet.h). */
#define VSOC_RULE_ID_MAX 255

typedef struct vsoc_rule vsoc_rule_t;
typedef struct vsoc_ruleset vsoc_ruleset_t;

/* An embedded rule test: events (one capture line each, any reader format) and the number
 * of alerts of this rule they must raise. Positions point at the first event line. */
typedef struct vsoc_rule_test {
    char *name;
    char *vin;
    char **lines;    /* event lines */
    int *line_nos;   /* 1-based line of each event in the rule file */
    int *line_cols;  /* 1-based column of each event */
    size_t nlines;
    long expect;
    int line, col;   /* of the test item */
    char **learn;    /* clean traffic to learn a baseline from before the events run */
    size_t nlearn;
} vsoc_rule_test_t;

typedef struct vsoc_rule_load_opts {
    /* Checks that one test event line parses; returns 0, or -1 with a static reason. The
     * engine cannot parse captures itself (readers are connectors), so the caller injects
     * the check. NULL: test events are not checked at load time. */
    int (*check_event)(const char *line, size_t n, const char **reason);
} vsoc_rule_load_opts_t;

/* Loads rules from files and directories (recursed for *.yml and *.yaml, in sorted order).
 * opts may be NULL. Diagnostics go to d. Returns a ruleset (possibly empty) holding one
 * reference, or NULL on allocation failure. The caller releases it with vsoc_ruleset_unref. */
vsoc_ruleset_t *vsoc_ruleset_load(const char *const *paths, size_t npaths,
                                  const vsoc_rule_load_opts_t *opts, vsoc_diags_t *d);

/* Loads rules from a YAML text; name is used in diagnostics. */
vsoc_ruleset_t *vsoc_ruleset_load_string(const char *name, const char *text, size_t len,
                                         const vsoc_rule_load_opts_t *opts, vsoc_diags_t *d);

/* A new ruleset holding only rule i of rs (for running its tests). NULL on failure. */
vsoc_ruleset_t *vsoc_ruleset_subset(const vsoc_ruleset_t *rs, size_t i);

vsoc_ruleset_t *vsoc_ruleset_ref(vsoc_ruleset_t *rs);
void vsoc_ruleset_unref(vsoc_ruleset_t *rs); /* NULL does nothing */

/* Rules are ordered by id. */
size_t vsoc_ruleset_count(const vsoc_ruleset_t *rs);
const vsoc_rule_t *vsoc_ruleset_rule(const vsoc_ruleset_t *rs, size_t i);
/* The number of files the ruleset was loaded from. */
size_t vsoc_ruleset_files(const vsoc_ruleset_t *rs);

const char *vsoc_rule_id(const vsoc_rule_t *r);
const char *vsoc_rule_title(const vsoc_rule_t *r);
const char *vsoc_rule_description(const vsoc_rule_t *r);
vsoc_level_t vsoc_rule_level(const vsoc_rule_t *r);
size_t vsoc_rule_tag_count(const vsoc_rule_t *r);
const char *vsoc_rule_tag(const vsoc_rule_t *r, size_t i);
const char *vsoc_rule_file(const vsoc_rule_t *r);
int vsoc_rule_line(const vsoc_rule_t *r);
/* "event_count", "value_count", "temporal", "temporal_ordered", "fleet_count" or NULL. */
const char *vsoc_rule_correlation(const vsoc_rule_t *r);
/* 1 for a fleet_count rule, with its window in *timespan_us and its threshold (distinct
 * vehicles) in *gte (either may be NULL); 0 for any other rule. The engine reports such a
 * rule's matches as per-vehicle hits (vsoc_alert_t.fleet_hit) for a counter (fleet.h). */
int vsoc_rule_fleet(const vsoc_rule_t *r, int64_t *timespan_us, uint64_t *gte);
size_t vsoc_rule_test_count(const vsoc_rule_t *r);
const vsoc_rule_test_t *vsoc_rule_test(const vsoc_rule_t *r, size_t i);

#endif
