/* fuzz_config.c: the configuration loader (confmap) on arbitrary YAML through the table of
 * vsoc serve: it must report, never crash or leak; every field is set after any load; a
 * config that loads holds what the checks promise; and what loads without error prints as
 * YAML that loads back to the same printout. */
#include "confmap.h"
#include "serve_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Loads text with the bare table (no checks across keys) and returns its printout, or NULL
 * when it had errors. */
static char *load_print(const vsoc_confmap_entry_t *t, size_t n, const char *text, size_t len)
{
    vsoc_diags_t *d = vsoc_diags_new();
    if (!d)
        return NULL;
    serve_config_t c;
    memset(&c, 0, sizeof c);
    vsoc_confmap_loc_t locs[64];
    if (n > 64)
        abort();
    int rc = vsoc_confmap_load_string(t, n, &c, "fuzz.yaml", text, len, NULL, locs, d);
    if ((rc == 0) != (vsoc_diags_errors(d) == 0))
        abort(); /* the result and the diagnostics agree */
    for (size_t i = 0; i < vsoc_diags_count(d); i++) {
        const vsoc_diag_t *g = vsoc_diags_get(d, i);
        if (!g->msg || !g->file || g->line < 0 || g->col < 0)
            abort();
    }
    char *out = NULL;
    if (rc == 0) {
        /* Every field holds a value: strings and list items are never NULL. */
        for (size_t i = 0; i < n; i++) {
            const char *f = (const char *)&c + t[i].offset;
            if ((t[i].type == VSOC_CONFMAP_STRING || t[i].type == VSOC_CONFMAP_PATH) &&
                !*(char *const *)f)
                abort();
            if (t[i].type == VSOC_CONFMAP_LIST || t[i].type == VSOC_CONFMAP_PATH_LIST) {
                const vsoc_confmap_list_t *l = (const void *)f;
                for (size_t k = 0; k < l->n; k++)
                    if (!l->v[k])
                        abort();
            }
        }
        size_t len2 = 0;
        FILE *f = open_memstream(&out, &len2);
        if (f) {
            vsoc_confmap_print_values(t, n, &c, f);
            fclose(f);
        }
    }
    vsoc_confmap_free(t, n, &c);
    vsoc_diags_free(d);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n;
    const vsoc_confmap_entry_t *t = serve_config_table(&n);
    char *first = load_print(t, n, (const char *)data, size);
    if (first) {
        char *second = load_print(t, n, first, strlen(first));
        if (!second || strcmp(first, second) != 0)
            abort(); /* a printout that does not read back as itself */
        free(second);
        free(first);
    }

    vsoc_diags_t *d = vsoc_diags_new();
    if (!d)
        return 0;
    serve_config_t *c =
        serve_config_load_string("fuzz.yaml", (const char *)data, size, "/etc/vsoc", d);
    if (c) {
        if (vsoc_diags_errors(d) != 0 || !*c->kafka.brokers || c->kafka.topics.events.n == 0 ||
            c->workers < 0 || c->workers > 64 || c->log.level < SERVE_LOG_DEBUG ||
            c->log.level > SERVE_LOG_ERROR || !*c->store.sqlite || c->store.sqlite[0] != '/' ||
            (*c->kafka.topics.commands && !*c->response.key))
            abort(); /* what the checks promise */
        FILE *f = fopen("/dev/null", "w");
        if (f) {
            serve_config_print(c, f);
            fclose(f);
        }
    } else if (vsoc_diags_errors(d) == 0) {
        abort(); /* a refusal always says why */
    }
    serve_config_free(c);
    vsoc_diags_free(d);
    return 0;
}
