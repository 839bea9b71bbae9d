/* incident.c: one vehicle's alerts grouped into incidents by event-time gap.
 *
 * The grouper keeps the newest incident of each vehicle in an open-addressing table keyed by
 * VIN. Alerts are rare next to events, so this is off the hot path; it allocates when a
 * vehicle is first seen and when the table grows. */
#include "incident.h"

#include "util.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_GAP_US (15LL * 60 * 1000000)

static const char *const state_names[] = {"open", "contained", "resolved", "false_positive"};

#define NSTATES (sizeof state_names / sizeof *state_names)

const char *vsoc_incident_state_name(vsoc_incident_state_t s)
{
    return vsoc_name_of(state_names, NSTATES, (unsigned)s);
}

int vsoc_incident_state_from_name(const char *name, vsoc_incident_state_t *out)
{
    int i = vsoc_name_index(state_names, NSTATES, name);
    if (i >= 0)
        *out = (vsoc_incident_state_t)i;
    return i >= 0 ? 0 : -1;
}

int vsoc_incident_transition_ok(vsoc_incident_state_t from, vsoc_incident_state_t to)
{
    switch (from) {
    case VSOC_INC_OPEN:
        return to == VSOC_INC_CONTAINED || to == VSOC_INC_RESOLVED ||
               to == VSOC_INC_FALSE_POSITIVE;
    case VSOC_INC_CONTAINED:
        return to == VSOC_INC_OPEN || to == VSOC_INC_RESOLVED || to == VSOC_INC_FALSE_POSITIVE;
    default:
        return 0;
    }
}

/* The tactics of the Auto-ISAC Automotive Threat Matrix, as rule tags spell them. */
static const char *const tactics[] = {
    "initial-access",   "execution",         "persistence",    "privilege-escalation",
    "defense-evasion",  "credential-access", "discovery",      "lateral-movement",
    "collection",       "command-and-control", "exfiltration", "affect-vehicle-function",
    "impact",           "manipulate-environment",
};

uint32_t vsoc_tactic_bit(const char *tag)
{
    if (strncmp(tag, "atm.", 4) != 0)
        return 0;
    for (size_t i = 0; i < sizeof tactics / sizeof *tactics; i++)
        if (!strcmp(tag + 4, tactics[i]))
            return 1u << i;
    return 0;
}

void vsoc_uuid_derive(const char *const *parts, size_t nparts, char out[37])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const unsigned char zero = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
        /* Without a digest there is no stable id; say so rather than invent one. */
        snprintf(out, 37, "00000000-0000-8000-8000-000000000000");
        EVP_MD_CTX_free(c);
        return;
    }
    for (size_t i = 0; i < nparts; i++) {
        EVP_DigestUpdate(c, parts[i], strlen(parts[i]));
        EVP_DigestUpdate(c, &zero, 1);
    }
    EVP_DigestFinal_ex(c, md, &mdlen);
    EVP_MD_CTX_free(c);
    vsoc_uuid_format(md, out);
}

struct vsoc_incidents {
    int64_t gap_us;
    vsoc_incident_t *slots; /* vin[0] == 0: empty */
    size_t cap, n;          /* cap a power of two */
};

vsoc_incidents_t *vsoc_incidents_new(int64_t gap_us)
{
    vsoc_incidents_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->gap_us = gap_us > 0 ? gap_us : DEFAULT_GAP_US;
    g->cap = 64;
    g->slots = calloc(g->cap, sizeof *g->slots);
    if (!g->slots) {
        free(g);
        return NULL;
    }
    return g;
}

void vsoc_incidents_free(vsoc_incidents_t *g)
{
    if (!g)
        return;
    free(g->slots);
    free(g);
}

static size_t slot_of(const vsoc_incidents_t *g, const char *vin, size_t n)
{
    size_t i = (size_t)vsoc_hash_bytes(vin, n, 0x1c1d) & (g->cap - 1);
    for (;;) {
        const vsoc_incident_t *s = &g->slots[i];
        if (!s->vin[0] || (strlen(s->vin) == n && !memcmp(s->vin, vin, n)))
            return i;
        i = (i + 1) & (g->cap - 1);
    }
}

static int grow(vsoc_incidents_t *g)
{
    vsoc_incident_t *old = g->slots;
    size_t oldcap = g->cap;
    vsoc_incident_t *slots = calloc(oldcap * 2, sizeof *slots);
    if (!slots)
        return VSOC_ENOMEM;
    g->slots = slots;
    g->cap = oldcap * 2;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].vin[0])
            g->slots[slot_of(g, old[i].vin, strlen(old[i].vin))] = old[i];
    free(old);
    return 0;
}

/* The vehicle's slot, claimed (vin set, rest zero) when new. NULL on allocation failure. */
static vsoc_incident_t *claim(vsoc_incidents_t *g, const char *vin, size_t n)
{
    if (n > VSOC_VIN_MAX)
        n = VSOC_VIN_MAX; /* VINs are 17 characters; longer ids are cut, not refused */
    if ((g->n + 1) * 4 > g->cap * 3 && grow(g) != 0)
        return NULL;
    vsoc_incident_t *s = &g->slots[slot_of(g, vin, n)];
    if (!s->vin[0]) {
        memset(s, 0, sizeof *s);
        memcpy(s->vin, vin, n);
        s->vin[n] = 0;
        g->n++;
    }
    return s;
}

static vsoc_level_t level_of(vsoc_level_t max_alert, uint32_t tactic_mask)
{
    int lv = (int)max_alert;
    /* Two different tactics on one vehicle read as a campaign, not a stray detection. */
    if (__builtin_popcount(tactic_mask) >= 2 && lv < VSOC_LEVEL_CRITICAL)
        lv++;
    return (vsoc_level_t)lv;
}

int vsoc_incidents_add(vsoc_incidents_t *g, const vsoc_incident_alert_t *a,
                       const vsoc_incident_t **out, unsigned *flags)
{
    *flags = 0;
    vsoc_incident_t *s = claim(g, a->vin.p ? a->vin.p : "", a->vin.p ? a->vin.n : 0);
    if (!s)
        return VSOC_ENOMEM;
    uint32_t bits = 0;
    for (size_t i = 0; i < a->ntags; i++)
        bits |= vsoc_tactic_bit(a->tags[i]);
    int closed = s->state == VSOC_INC_RESOLVED || s->state == VSOC_INC_FALSE_POSITIVE;
    if (!s->id[0] || closed || a->time_us - s->last_us > g->gap_us) {
        char vin[VSOC_VIN_MAX + 1];
        memcpy(vin, s->vin, sizeof vin);
        memset(s, 0, sizeof *s);
        memcpy(s->vin, vin, sizeof vin);
        const char *parts[] = {"incident", s->vin, a->uid};
        vsoc_uuid_derive(parts, 3, s->id);
        s->state = VSOC_INC_OPEN;
        s->first_us = s->last_us = a->time_us;
        snprintf(s->first_rule, sizeof s->first_rule, "%s", a->rule_id);
        snprintf(s->first_alert, sizeof s->first_alert, "%s", a->uid);
        s->tactics = bits;
        s->level = level_of(a->level, bits);
        s->alerts = 1;
        *flags = VSOC_INC_NEW;
        *out = s;
        return 0;
    }
    /* Alerts may come slightly out of order (correlation windows close late): the
     * incident spans the earliest and latest. The level only ever rises. */
    if (a->time_us > s->last_us)
        s->last_us = a->time_us;
    if (a->time_us < s->first_us)
        s->first_us = a->time_us;
    s->alerts++;
    /* The highest alert level is the incident level without the tactic step (at critical
     * the step cannot be told apart, but the result is critical either way). */
    vsoc_level_t base = s->level;
    if (__builtin_popcount(s->tactics) >= 2 && base > VSOC_LEVEL_INFORMATIONAL)
        base = (vsoc_level_t)(base - 1);
    if (a->level > base)
        base = a->level;
    s->tactics |= bits;
    vsoc_level_t lv = level_of(base, s->tactics);
    if (lv > s->level) {
        s->level = lv;
        *flags |= VSOC_INC_LEVEL_UP;
    }
    *out = s;
    return 0;
}

int vsoc_incidents_restore(vsoc_incidents_t *g, const vsoc_incident_t *inc)
{
    vsoc_incident_t *s = claim(g, inc->vin, strlen(inc->vin));
    if (!s)
        return VSOC_ENOMEM;
    if (s->id[0] && s->last_us > inc->last_us)
        return 0; /* keep the newer */
    *s = *inc;
    return 0;
}

int vsoc_incidents_set_state(vsoc_incidents_t *g, const char *id, vsoc_incident_state_t st)
{
    for (size_t i = 0; i < g->cap; i++)
        if (g->slots[i].vin[0] && !strcmp(g->slots[i].id, id)) {
            g->slots[i].state = st;
            return 0;
        }
    return VSOC_ENOENT;
}

const vsoc_incident_t *vsoc_incidents_get(const vsoc_incidents_t *g, const char *vin)
{
    size_t n = strlen(vin);
    if (n > VSOC_VIN_MAX)
        n = VSOC_VIN_MAX;
    const vsoc_incident_t *s = &g->slots[slot_of(g, vin, n)];
    return s->vin[0] && s->id[0] ? s : NULL;
}
