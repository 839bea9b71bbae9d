/* diag.h: a list of located diagnostics (file:line:col: severity: message) collected by the
 * compilers of user input, which keep going after an error so that one run reports all.
 * The list owns copies of every string it is given. Not thread-safe. */
#ifndef VSOC_DIAG_H
#define VSOC_DIAG_H

#include <stddef.h>
#include <stdio.h>

typedef enum { VSOC_DIAG_ERROR = 0, VSOC_DIAG_WARNING = 1 } vsoc_diag_severity_t;

typedef struct vsoc_diag {
    vsoc_diag_severity_t severity;
    char *file;
    int line; /* 1-based; 0 when unknown */
    int col;  /* 1-based; 0 when unknown */
    char *msg;
} vsoc_diag_t;

typedef struct vsoc_diags vsoc_diags_t;

vsoc_diags_t *vsoc_diags_new(void);
void vsoc_diags_free(vsoc_diags_t *d); /* NULL does nothing */

/* Appends a diagnostic; on allocation failure the message is counted but not kept. */
void vsoc_diag_add(vsoc_diags_t *d, vsoc_diag_severity_t sev, const char *file, int line,
                   int col, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

size_t vsoc_diags_count(const vsoc_diags_t *d);
size_t vsoc_diags_errors(const vsoc_diags_t *d);
size_t vsoc_diags_warnings(const vsoc_diags_t *d);
const vsoc_diag_t *vsoc_diags_get(const vsoc_diags_t *d, size_t i);

/* Sorts by file, line, column (stable), so output follows the files. */
void vsoc_diags_sort(vsoc_diags_t *d);

/* Prints each as "file:line:col: error: message\n". */
void vsoc_diags_print(const vsoc_diags_t *d, FILE *out);

#endif
