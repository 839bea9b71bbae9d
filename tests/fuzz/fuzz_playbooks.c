/* fuzz_playbooks.c: the playbook loader on arbitrary YAML: it must report, never crash or
 * leak; whatever compiles is also matched against rule ids, its gates judged and written,
 * and its args read back as the responder and the agent would. */
#include "envelope.h"
#include "playbook.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vsoc_diags_t *d = vsoc_diags_new();
    if (!d)
        return 0;
    vsoc_playbooks_t *s = vsoc_playbooks_load_string("fuzz.yml", (const char *)data, size, d);
    static const char *const rule_ids[] = {
        "vsoc.can.dos-high-priority-flood", "vsoc.uds.security-access-bruteforce",
        "vsoc.ids.secoc-mac-failures", "", "x",
    };
    static const vsoc_level_t levels[] = {VSOC_LEVEL_HIGH, VSOC_LEVEL_HIGH, VSOC_LEVEL_MEDIUM,
                                          VSOC_LEVEL_LOW, VSOC_LEVEL_CRITICAL};
    vsoc_playbooks_check_rules(s, rule_ids, levels, 5, "the fuzz rules", d);
    for (size_t i = 0; i < vsoc_playbooks_count(s); i++) {
        const vsoc_playbook_t *p = vsoc_playbooks_get(s, i);
        if (vsoc_playbooks_find(s, p->id) != p)
            abort(); /* ids are unique and sorted */
        for (size_t r = 0; r < 5; r++)
            vsoc_playbook_triggered_by(p, rule_ids[r], levels[r]);
        if (p->nsteps == 0)
            abort();
        for (size_t k = 0; k < p->nsteps; k++) {
            const vsoc_pb_step_t *st = &p->steps[k];
            if (!st->id || !st->args || strlen(st->args) > 3900 || !vsoc_action_name(st->action))
                abort();
            if (st->action == VSOC_ACTION_QUARANTINE && (st->ttl_s <= 0 || st->ttl_s > 86400))
                abort();
            char gate[128], dur[32];
            vsoc_gate_json(&st->gate, gate, sizeof gate);
            vsoc_playbook_duration(st->expires_s, dur, sizeof dur);
            vsoc_gate_t g;
            if (vsoc_gate_from_args(st->args, &g) != 0 || g.op != VSOC_GATE_NONE)
                abort(); /* vehicle_state is reserved in args */
            /* Compiled args are what the envelope signs, byte for byte. */
            static vsoc_envelope_t e;
            char err[128];
            if (vsoc_envelope_set_args(&e, st->args, err, sizeof err) != 0 ||
                strcmp(e.args, st->args) != 0)
                abort();
            if (*gate) {
                /* The gate as the responder carries it reads back the same. */
                char args[256];
                snprintf(args, sizeof args, "{\"vehicle_state\":%s}", gate);
                if (vsoc_gate_from_args(args, &g) != 0 || g.op != st->gate.op ||
                    g.speed_kph != st->gate.speed_kph)
                    abort();
            }
            vsoc_gate_allows(&st->gate, 0);
            vsoc_gate_allows(&st->gate, NAN);
        }
    }
    vsoc_playbooks_free(s);
    vsoc_diags_free(d);
    return 0;
}
