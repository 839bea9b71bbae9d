/* fuzz_rules.c: the rule loader on arbitrary YAML: it must report, never crash or leak;
 * whatever compiles is also run on a few events so the matcher sees odd rules too. */
#include "engine.h"
#include "rule.h"

#include <stdlib.h>
#include <string.h>

static void count(void *ctx, const vsoc_alert_t *a)
{
    char *s = vsoc_alert_json(a);
    free(s);
    (*(int *)ctx)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vsoc_diags_t *d = vsoc_diags_new();
    if (!d)
        return 0;
    vsoc_ruleset_t *rs = vsoc_ruleset_load_string("fuzz.yml", (const char *)data, size, NULL, d);
    if (rs && vsoc_ruleset_count(rs)) {
        int n = 0;
        char err[128];
        vsoc_engine_opts_t o = {.on_alert = count, .ctx = &n};
        vsoc_engine_t *e = vsoc_engine_new(rs, &o, err, sizeof err);
        static const struct {
            uint32_t id;
            uint8_t len;
            uint8_t data[8];
        } frames[] = {
            {0x7E8, 8, {0x03, 0x7F, 0x27, 0x35}},
            {0x7E0, 8, {0x02, 0x10, 0x03}},
            {0x18FEF100, 8, {0xFF, 0x00, 0x20, 0, 0, 0, 0, 0}},
            {0x0, 8, {0}},
            {0x18EA00F9, 3, {0x00, 0xEE, 0x00}},
        };
        for (int rep = 0; e && rep < 4; rep++) {
            for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
                vsoc_event_t ev;
                vsoc_event_clear(&ev);
                ev.kind = VSOC_EVENT_CAN;
                ev.ts_us = (int64_t)(rep * 5 + (int)i) * 1000;
                ev.can.id = frames[i].id;
                ev.can.ext = frames[i].id > 0x7FF;
                ev.can.len = ev.can.dlc = frames[i].len;
                memcpy(ev.can.data, frames[i].data, 8);
                ev.vin.p = "FUZZVIN";
                ev.vin.n = 7;
                ev.line.p = "fuzz";
                ev.line.n = 4;
                vsoc_engine_process(e, &ev);
            }
        }
        vsoc_engine_free(e);
    }
    vsoc_ruleset_unref(rs);
    vsoc_diags_free(d);
    return 0;
}
