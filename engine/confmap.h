/* confmap.h: a table-driven loader from a YAML configuration file to a C struct, in the
 * manner of fluent-bit's config_map. One table per configurable module lists every key
 * (dotted: "kafka.topics.events"), its type, its default as text, where its value lives in
 * the struct, and what it means; the same table drives parsing, validation, the Markdown
 * reference and the commented sample file, so the three cannot drift apart.
 *
 * In the file, a dotted key is written nested: "kafka.topics.events" is the key events of
 * the mapping topics of the mapping kafka. Every problem is a located diagnostic
 * (file:line:col) and loading keeps going, so one run reports them all: unknown keys (with
 * a did-you-mean suggestion), values of the wrong type or out of range, duplicate keys,
 * required keys that are missing. A key that is absent takes its default, parsed from the
 * table's default text by the same code that parses the file.
 *
 * Field types in the target struct, by entry type:
 *   STRING, PATH          char *                 (malloc'd; NULL only where a load erred)
 *   LIST, PATH_LIST       vsoc_confmap_list_t    (malloc'd strings, file order)
 *   INT, BOOL, ENUM       int                    (BOOL is 0 or 1; ENUM is the name's index)
 *   DURATION              int64_t                (microseconds)
 *   MAP                   vsoc_confmap_map_t     (malloc'd pairs, file order)
 *
 * Pure: libyaml and memory only (and the file's folder looked up for PATH values); no
 * sockets, no global state. Thread-safe as long as each call has its own target struct. */
#ifndef VSOC_CONFMAP_H
#define VSOC_CONFMAP_H

#include "diag.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    VSOC_CONFMAP_STRING,    /* a scalar, taken as text */
    VSOC_CONFMAP_PATH,      /* a string; a relative one is resolved against the file's folder */
    VSOC_CONFMAP_LIST,      /* a sequence of scalars; a single scalar is a one-element list */
    VSOC_CONFMAP_PATH_LIST, /* a LIST whose items are PATHs */
    VSOC_CONFMAP_INT,       /* decimal, 0x hex or 0b binary; range min..max when min < max */
    VSOC_CONFMAP_BOOL,      /* true/false, yes/no, on/off (any case) */
    VSOC_CONFMAP_DURATION,  /* "500ms", "30s", "15m", "2h", "1d"; range min..max (us) when
                             * min < max */
    VSOC_CONFMAP_ENUM,      /* one of names (exact spelling) -> its index */
    VSOC_CONFMAP_MAP,       /* a mapping of scalar names to scalar values, passed through */
} vsoc_confmap_type_t;

typedef struct vsoc_confmap_list {
    char **v;
    size_t n;
} vsoc_confmap_list_t;

/* One name: value of a MAP, with where the name stands in the file (0 for a default), so
 * that whoever hands the value on (a Kafka client) can locate its own complaints. */
typedef struct vsoc_confmap_pair {
    char *key, *value;
    int line, col;
} vsoc_confmap_pair_t;

typedef struct vsoc_confmap_map {
    vsoc_confmap_pair_t *v;
    size_t n;
} vsoc_confmap_map_t;

/* Where a key's value stands in the file: 1-based; line 0 when the default applied. bad
 * is 1 when the value (or its absence, for a required key) was reported as an error: the
 * field then holds zero or the part that was right, and checks across keys should leave
 * it alone rather than report it again. */
typedef struct vsoc_confmap_loc {
    int line, col;
    int bad;
} vsoc_confmap_loc_t;

typedef struct vsoc_confmap_entry {
    const char *key;          /* dotted path; segments of [a-z0-9_] */
    vsoc_confmap_type_t type;
    const char *def;          /* default, as it would be written in the file (a YAML flow
                               * sequence or mapping for LIST and MAP: "[a, b]", "{}"); the
                               * literal text for the other types ("" is the empty string).
                               * NULL: the key is required and must have a non-empty value. */
    size_t offset;            /* offsetof the field in the target struct */
    const char *desc;         /* one or two sentences for the docs and the sample */
    int64_t min, max;         /* INT, DURATION: inclusive range, enforced when min < max */
    const char *const *names; /* ENUM: NULL-terminated list of the accepted names */
    const char *example;      /* required keys: the value the sample file shows */
} vsoc_confmap_entry_t;

/* Checks a table for mistakes of its author: malformed or duplicate keys, a key that is
 * also a section of another ("a" and "a.b"), an empty enum, a bad range, a default that
 * does not parse or lies out of range. Each is reported in d (file "confmap", line 0).
 * Returns 0, or VSOC_EINVAL when any was found. The loaders run it first. */
int vsoc_confmap_check(const vsoc_confmap_entry_t *t, size_t n, vsoc_diags_t *d);

/* Loads the YAML file at path into obj (the struct the table's offsets point into), with
 * diagnostics in d under the file's name. Relative PATH values, the defaults' too, become
 * absolute, resolved against the folder the file is in. When locs is not NULL it receives,
 * for each of the n entries, where its value stands (cross-field checks locate their
 * errors with it).
 *
 * Every table field of obj is written, whatever happens (a value, the default, or zero
 * when the value was wrong), so vsoc_confmap_free(t, n, obj) is always right afterwards;
 * fields outside the table are not touched. Returns 0 when no error was reported,
 * VSOC_EPARSE when one was (all are in d), VSOC_EIO when the file cannot be read or is
 * larger than 1 MiB (reported at line 0; no defaults were applied), VSOC_EINVAL when the
 * table fails vsoc_confmap_check, or VSOC_ENOMEM (also reported in d). */
int vsoc_confmap_load_file(const vsoc_confmap_entry_t *t, size_t n, void *obj, const char *path,
                           vsoc_confmap_loc_t *locs, vsoc_diags_t *d);

/* The same from text (len bytes; name is the file name used in diagnostics). Relative PATH
 * values are resolved against base_dir; when base_dir is NULL they are kept as written. */
int vsoc_confmap_load_string(const vsoc_confmap_entry_t *t, size_t n, void *obj,
                             const char *name, const char *text, size_t len,
                             const char *base_dir, vsoc_confmap_loc_t *locs, vsoc_diags_t *d);

/* Frees what a load put in obj's table fields and zeroes them. Safe on a zeroed struct and
 * after any load; a NULL obj does nothing. */
void vsoc_confmap_free(const vsoc_confmap_entry_t *t, size_t n, void *obj);

/* The index of key in the table, or -1. */
int vsoc_confmap_find(const vsoc_confmap_entry_t *t, size_t n, const char *key);

/* Prints the reference as a Markdown table, one row per key in table order:
 * | key | type | default | description |. */
void vsoc_confmap_print_docs(const vsoc_confmap_entry_t *t, size_t n, FILE *out);

/* Prints a sample file: every key with its default (a required key with its example),
 * nested by section, each preceded by its description as a comment. A table whose required
 * keys all have examples gives a sample that loads without errors. */
void vsoc_confmap_print_sample(const vsoc_confmap_entry_t *t, size_t n, FILE *out);

/* Prints obj's values as a YAML file in the same layout, quoted where YAML needs it, so
 * that loading the printout (without a base folder) gives the same values back. NULL
 * strings print as "". Secrets in the values are printed too. */
void vsoc_confmap_print_values(const vsoc_confmap_entry_t *t, size_t n, const void *obj,
                               FILE *out);

#endif
