/* yamlfile.c: YAML sources for the rule and playbook compilers (yamlfile.h). */
#include "yamlfile.h"
#include "vsoc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Deeper folders are not walked: a link loop ends here instead of exhausting the stack. */
#define YAMLFILE_DEPTH_MAX 16

struct vsoc_yamlfile_id {
    char *id, *file;
    int line;
};

/* ---- files and folders -------------------------------------------------------------- */

static int read_file(const char *path, vsoc_diags_t *d, vsoc_yamlfile_text_fn fn, void *ctx)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0, "cannot open: %s", strerror(errno));
        return 0;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return VSOC_ENOMEM;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err)
        vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0, "read error");
    else
        fn(ctx, path, (const unsigned char *)buf, n);
    free(buf);
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_yaml_ext(const char *name)
{
    size_t n = strlen(name);
    return (n > 4 && !strcmp(name + n - 4, ".yml")) || (n > 5 && !strcmp(name + n - 5, ".yaml"));
}

static int load_path(const char *path, vsoc_diags_t *d, vsoc_yamlfile_text_fn fn, void *ctx,
                     int depth)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0, "cannot open: %s", strerror(errno));
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return read_file(path, d, fn, ctx);
    if (depth > YAMLFILE_DEPTH_MAX)
        return 0;
    DIR *dir = opendir(path);
    if (!dir) {
        vsoc_diag_add(d, VSOC_DIAG_ERROR, path, 0, 0, "cannot open: %s", strerror(errno));
        return 0;
    }
    char **names = NULL;
    size_t nn = 0;
    int rc = 0;
    struct dirent *de;
    /* Out of memory, the names listed so far are still read: as much as can be is loaded. */
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char **nv = realloc(names, (nn + 1) * sizeof *nv);
        if (!nv) {
            rc = VSOC_ENOMEM;
            break;
        }
        names = nv;
        size_t len = strlen(path) + strlen(de->d_name) + 2;
        if (!(names[nn] = malloc(len))) {
            rc = VSOC_ENOMEM;
            break;
        }
        snprintf(names[nn], len, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/",
                 de->d_name);
        nn++;
    }
    closedir(dir);
    if (nn)
        qsort(names, nn, sizeof *names, str_cmp);
    for (size_t i = 0; i < nn; i++) {
        struct stat cs;
        if (stat(names[i], &cs) == 0 &&
            (S_ISDIR(cs.st_mode) || has_yaml_ext(strrchr(names[i], '/') + 1))) {
            int r = load_path(names[i], d, fn, ctx, depth + 1);
            if (r != 0)
                rc = r;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int vsoc_yamlfile_load_path(const char *path, vsoc_diags_t *d, vsoc_yamlfile_text_fn fn,
                            void *ctx)
{
    return load_path(path, d, fn, ctx, 0);
}

/* ---- documents ---------------------------------------------------------------------- */

void vsoc_yamlfile_each_doc(const char *name, const unsigned char *text, size_t len,
                            vsoc_diags_t *d, vsoc_yamlfile_doc_fn fn, void *ctx)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        vsoc_diag_add(d, VSOC_DIAG_ERROR, name, 0, 0, "cannot initialise the YAML parser");
        return;
    }
    yaml_parser_set_input_string(&parser, text, len);
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(&parser, &doc)) {
            vsoc_diag_add(d, VSOC_DIAG_ERROR, name, (int)parser.problem_mark.line + 1,
                          (int)parser.problem_mark.column + 1, "YAML: %s%s%s",
                          parser.problem ? parser.problem : "syntax error",
                          parser.context ? " " : "", parser.context ? parser.context : "");
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        /* No root: the end of the stream. */
        int stop = !root || fn(ctx, &doc, root) != 0;
        yaml_document_delete(&doc);
        if (stop)
            break;
    }
    yaml_parser_delete(&parser);
}

/* ---- ids ---------------------------------------------------------------------------- */

int vsoc_yamlfile_ids_add(vsoc_yamlfile_ids_t *s, vsoc_diags_t *d, const char *what, char *id,
                          const char *file, int line, int col)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!strcmp(s->v[i].id, id)) {
            vsoc_diag_add(d, VSOC_DIAG_ERROR, file, line, col,
                          "duplicate %s id '%s' (first defined at %s:%d)", what, id,
                          s->v[i].file, s->v[i].line);
            free(id);
            return 0;
        }
    }
    struct vsoc_yamlfile_id *nv = realloc(s->v, (s->n + 1) * sizeof *nv);
    char *f = strdup(file);
    if (nv)
        s->v = nv;
    if (!nv || !f) {
        free(id);
        free(f);
        return VSOC_ENOMEM;
    }
    nv[s->n++] = (struct vsoc_yamlfile_id){id, f, line};
    return 0;
}

void vsoc_yamlfile_ids_fini(vsoc_yamlfile_ids_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].id);
        free(s->v[i].file);
    }
    free(s->v);
    s->v = NULL;
    s->n = 0;
}
