/* yamlfile.h: reading YAML sources for the rule and playbook compilers, which must treat
 * their inputs alike: a path is a file, or a folder walked for *.yml and *.yaml files in
 * name order (so that diagnostics and "first defined at" come out the same on every
 * machine); a text is split into libyaml documents, a syntax error becoming a located
 * diagnostic; and ids are remembered across documents and files so that a duplicate is
 * reported where it stands, with where it was first defined.
 *
 * Nothing here runs per event. Not thread-safe beyond what libyaml is (one call, one
 * parser). */
#ifndef VSOC_YAMLFILE_H
#define VSOC_YAMLFILE_H

#include "diag.h"

#include <stddef.h>
#include <yaml.h>

/* Called with each file's whole text; name and text are borrowed for the call. */
typedef void (*vsoc_yamlfile_text_fn)(void *ctx, const char *name, const unsigned char *text,
                                      size_t len);

/* Reads path and calls fn with each file's text. A file named directly is read whatever its
 * name; a folder is walked up to 16 levels deep, skipping names that start with '.', and its
 * *.yml and *.yaml files are read in byte order of their paths. A path that cannot be
 * opened or read is reported in d as an error at line 0 and skipped. Returns 0, or
 * VSOC_ENOMEM when memory ran out: the files it could not list or read were skipped without
 * a diagnostic, and fn was never called for them. */
int vsoc_yamlfile_load_path(const char *path, vsoc_diags_t *d, vsoc_yamlfile_text_fn fn,
                            void *ctx);

/* Called with each document's root node; doc is borrowed for the call. Returns 0 to go on
 * with the next document, non-zero to stop. */
typedef int (*vsoc_yamlfile_doc_fn)(void *ctx, yaml_document_t *doc, yaml_node_t *root);

/* Parses text (name is the file diagnostics name) one document at a time and calls fn with
 * each document's root. A syntax error is reported in d where libyaml found it ("YAML:
 * problem context") and ends the stream: the documents before it were passed to fn. An empty
 * stream calls fn never and reports nothing. */
void vsoc_yamlfile_each_doc(const char *name, const unsigned char *text, size_t len,
                            vsoc_diags_t *d, vsoc_yamlfile_doc_fn fn, void *ctx);

/* The ids seen so far, in load order. Zero-initialise; vsoc_yamlfile_ids_fini frees. */
typedef struct vsoc_yamlfile_ids {
    struct vsoc_yamlfile_id *v;
    size_t n;
} vsoc_yamlfile_ids_t;

/* Takes id (malloc'd). The first time an id is seen it is remembered with file and line;
 * after that it is reported in d at file:line:col as "duplicate <what> id '<id>' (first
 * defined at <file>:<line>)" and freed. Returns 0, or VSOC_ENOMEM (id freed, not
 * remembered). */
int vsoc_yamlfile_ids_add(vsoc_yamlfile_ids_t *s, vsoc_diags_t *d, const char *what, char *id,
                          const char *file, int line, int col);

/* Frees what s remembers and empties it. */
void vsoc_yamlfile_ids_fini(vsoc_yamlfile_ids_t *s);

#endif
