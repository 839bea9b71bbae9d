/* diag.c: located diagnostics (see diag.h). */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct vsoc_diags {
    vsoc_diag_t *v;
    size_t n, cap;
    size_t errors, warnings;
};

vsoc_diags_t *vsoc_diags_new(void)
{
    return calloc(1, sizeof(vsoc_diags_t));
}

void vsoc_diags_free(vsoc_diags_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].msg);
    }
    free(d->v);
    free(d);
}

void vsoc_diag_add(vsoc_diags_t *d, vsoc_diag_severity_t sev, const char *file, int line,
                   int col, const char *fmt, ...)
{
    if (sev == VSOC_DIAG_ERROR)
        d->errors++;
    else
        d->warnings++;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        vsoc_diag_t *nv = realloc(d->v, cap * sizeof *nv);
        if (!nv)
            return;
        d->v = nv;
        d->cap = cap;
    }
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    vsoc_diag_t *e = &d->v[d->n];
    e->severity = sev;
    e->file = strdup(file ? file : "<input>");
    e->line = line;
    e->col = col;
    e->msg = strdup(buf);
    if (!e->file || !e->msg) {
        free(e->file);
        free(e->msg);
        return;
    }
    d->n++;
}

size_t vsoc_diags_count(const vsoc_diags_t *d) { return d->n; }
size_t vsoc_diags_errors(const vsoc_diags_t *d) { return d->errors; }
size_t vsoc_diags_warnings(const vsoc_diags_t *d) { return d->warnings; }

const vsoc_diag_t *vsoc_diags_get(const vsoc_diags_t *d, size_t i)
{
    return i < d->n ? &d->v[i] : NULL;
}

static int diag_cmp(const vsoc_diag_t *a, const vsoc_diag_t *b)
{
    int c = strcmp(a->file, b->file);
    if (c)
        return c;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->col != b->col)
        return a->col < b->col ? -1 : 1;
    return 0;
}

void vsoc_diags_sort(vsoc_diags_t *d)
{
    /* Insertion sort: stable, and lists are short. */
    for (size_t i = 1; i < d->n; i++) {
        vsoc_diag_t x = d->v[i];
        size_t j = i;
        while (j > 0 && diag_cmp(&d->v[j - 1], &x) > 0) {
            d->v[j] = d->v[j - 1];
            j--;
        }
        d->v[j] = x;
    }
}

void vsoc_diags_print(const vsoc_diags_t *d, FILE *out)
{
    for (size_t i = 0; i < d->n; i++) {
        const vsoc_diag_t *e = &d->v[i];
        fprintf(out, "%s:%d:%d: %s: %s\n", e->file, e->line, e->col,
                e->severity == VSOC_DIAG_ERROR ? "error" : "warning", e->msg);
    }
}
