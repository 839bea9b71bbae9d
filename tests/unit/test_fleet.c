/* test_fleet.c: the in-process fleet_count counter (fleet.h): the window on event time,
 * distinct vehicles, one alert and its re-arming, late hits, the uid, the sample order, and
 * random sequences checked hit by hit against a plain model of fleet.h's rules. Run under
 * ASan in the sanitizer build, which also checks that everything is freed. */
#include "fleet.h"
#include "test.h"
#include "vsoc.h"

#define S 1000000LL /* one second in us */

static vsoc_fleet_result_t res;

/* One hit of rule id (window span seconds, threshold gte) by vin at t seconds. */
static int hit(vsoc_fleet_t *f, const char *rule, int64_t span, uint64_t gte, const char *vin,
               int64_t t)
{
    int rc = vsoc_fleet_hit(f, rule, span * S, gte, vin, strlen(vin), t * S, &res);
    ASSERT_EQ(rc, 0);
    return res.alert;
}

static void test_window_and_distinct(void)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    ASSERT(f != NULL);
    /* The same vehicle again and again is one vehicle. */
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(hit(f, "r", 100, 3, "V1", i), 0);
    ASSERT_EQ(res.vehicles, 1);
    ASSERT_EQ(res.first_us, 9 * S); /* its latest hit */
    ASSERT_EQ(hit(f, "r", 100, 3, "V2", 50), 0);
    ASSERT_EQ(res.vehicles, 2);
    ASSERT_EQ(res.first_us, 9 * S);
    /* At 109 s V1 (latest 9 s) is exactly 100 s old: still in (at most timespan older). */
    ASSERT_EQ(hit(f, "r", 100, 3, "V2", 109), 0);
    ASSERT_EQ(res.vehicles, 2);
    /* One microsecond later it has left. */
    ASSERT_EQ(vsoc_fleet_hit(f, "r", 100 * S, 3, "V2", 2, 109 * S + 1, &res), 0);
    ASSERT_EQ(res.vehicles, 1);
    ASSERT_EQ(res.first_us, 109 * S + 1);
    /* Another rule is another count. */
    ASSERT_EQ(hit(f, "other", 100, 3, "V1", 110), 0);
    ASSERT_EQ(res.vehicles, 1);
    vsoc_fleet_free(f);
}

static void test_alert_once_and_rearm(void)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    /* gte 3 within 60 s. */
    ASSERT_EQ(hit(f, "r", 60, 3, "A", 0), 0);
    ASSERT_EQ(hit(f, "r", 60, 3, "B", 10), 0);
    ASSERT_EQ(hit(f, "r", 60, 3, "C", 20), 1);
    ASSERT_EQ(res.vehicles, 3);
    ASSERT_EQ(res.first_us, 0);
    char want[37];
    vsoc_fleet_uid("r", 20 * S, want);
    ASSERT_STREQ(res.uid, want);
    /* Still at or above 3: no second alert, whoever hits. */
    ASSERT_EQ(hit(f, "r", 60, 3, "D", 30), 0);
    ASSERT_EQ(res.vehicles, 4);
    ASSERT_STREQ(res.uid, "");
    ASSERT_EQ(hit(f, "r", 60, 3, "A", 40), 0);
    ASSERT_EQ(hit(f, "r", 60, 3, "B", 50), 0);
    /* The count stayed at 3 or more for a whole timespan since the alert (20 s): again. */
    ASSERT_EQ(hit(f, "r", 60, 3, "C", 79), 0); /* 59 s after: not yet */
    ASSERT_EQ(hit(f, "r", 60, 3, "C", 80), 1);  /* 60 s after */
    ASSERT_EQ(res.vehicles, 4);                 /* A 40, B 50, C 80, D 30 */
    vsoc_fleet_uid("r", 80 * S, want);
    ASSERT_STREQ(res.uid, want);
    /* Fall below: at 111 s D (30) and A (40) have left; B (50) is 61 s old and left too. */
    ASSERT_EQ(hit(f, "r", 60, 3, "C", 111), 0);
    ASSERT_EQ(res.vehicles, 1);
    ASSERT_EQ(hit(f, "r", 60, 3, "A", 112), 0);
    /* Reaching 3 again re-arms at once, long before a timespan since the last alert. */
    ASSERT_EQ(hit(f, "r", 60, 3, "B", 113), 1);
    ASSERT_EQ(res.vehicles, 3);
    ASSERT_EQ(res.first_us, 111 * S);
    /* The hit that raised it, read again (a service after a crash): raised again, same
     * uid; any other hit of that moment is not. */
    ASSERT_EQ(hit(f, "r", 60, 3, "B", 113), 1);
    vsoc_fleet_uid("r", 113 * S, want);
    ASSERT_STREQ(res.uid, want);
    ASSERT_EQ(hit(f, "r", 60, 3, "A", 113), 0);
    ASSERT_EQ(hit(f, "r", 60, 3, "C", 113), 0);
    vsoc_fleet_free(f);
}

static void test_late_hits(void)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    ASSERT_EQ(hit(f, "r", 60, 3, "A", 1000), 0);
    /* Late beyond the window: recorded nowhere. */
    ASSERT_EQ(hit(f, "r", 60, 3, "B", 900), 0);
    ASSERT_EQ(res.vehicles, 1);
    ASSERT_EQ(res.nvins, 1);
    ASSERT_STREQ(res.vins[0], "A");
    /* Late within the window: counted at its own time, which the window's start shows. */
    ASSERT_EQ(hit(f, "r", 60, 3, "B", 950), 0);
    ASSERT_EQ(res.vehicles, 2);
    ASSERT_EQ(res.first_us, 950 * S);
    /* An earlier hit of a known vehicle does not move it back. */
    ASSERT_EQ(hit(f, "r", 60, 3, "A", 990), 0);
    ASSERT_EQ(res.vehicles, 2);
    ASSERT_STREQ(res.vins[0], "A");
    /* A late hit can reach the threshold; the uid is its own time. */
    ASSERT_EQ(hit(f, "r", 60, 3, "C", 960), 1);
    char want[37];
    vsoc_fleet_uid("r", 960 * S, want);
    ASSERT_STREQ(res.uid, want);
    /* B at 950 leaves when the newest passes 1010. */
    ASSERT_EQ(hit(f, "r", 60, 3, "A", 1011), 0);
    ASSERT_EQ(res.vehicles, 2);
    vsoc_fleet_free(f);
}

static void test_sample_order(void)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    const char *v[] = {"V1", "V2", "V3", "V4", "V5", "V6", "V7"};
    for (int i = 0; i < 7; i++)
        hit(f, "r", 3600, 100, v[i], i);
    ASSERT_EQ(res.vehicles, 7);
    ASSERT_EQ(res.nvins, VSOC_FLEET_SAMPLES);
    ASSERT_STREQ(res.vins[0], "V7");
    ASSERT_STREQ(res.vins[4], "V3");
    /* A re-hit moves its vehicle to the front. */
    hit(f, "r", 3600, 100, "V1", 10);
    ASSERT_STREQ(res.vins[0], "V1");
    ASSERT_STREQ(res.vins[1], "V7");
    /* Equal times: descending byte order, a prefix after the longer vin. */
    vsoc_fleet_t *g = vsoc_fleet_new();
    hit(g, "r", 3600, 100, "AB", 5);
    hit(g, "r", 3600, 100, "ABC", 5);
    hit(g, "r", 3600, 100, "B", 5);
    hit(g, "r", 3600, 100, "A", 5);
    ASSERT_EQ(res.nvins, 4);
    ASSERT_STREQ(res.vins[0], "B");
    ASSERT_STREQ(res.vins[1], "ABC");
    ASSERT_STREQ(res.vins[2], "AB");
    ASSERT_STREQ(res.vins[3], "A");
    vsoc_fleet_free(g);
    vsoc_fleet_free(f);
}

static void test_uid_and_arguments(void)
{
    /* Known answer, independent of this code: SHA-256 of "fleet\0vsoc.fleet.test\0
     * 1764064800000000\0", first 16 bytes shaped as a UUIDv8 (docs/alerts.md). */
    char uid[37], again[37];
    vsoc_fleet_uid("vsoc.fleet.test", 1764064800000000LL, uid);
    ASSERT_STREQ(uid, "75e0318f-42f9-82ac-8da7-4836f239bd62");
    vsoc_fleet_uid("vsoc.fleet.test", 1764064800000000LL, again);
    ASSERT_STREQ(uid, again);
    vsoc_fleet_uid("vsoc.fleet.test", 1764064800000001LL, again);
    ASSERT(strcmp(uid, again) != 0);
    vsoc_fleet_uid("vsoc.fleet.other", 1764064800000000LL, again);
    ASSERT(strcmp(uid, again) != 0);

    vsoc_fleet_t *f = vsoc_fleet_new();
    char longvin[VSOC_VIN_MAX + 2];
    memset(longvin, 'W', sizeof longvin - 1);
    longvin[sizeof longvin - 1] = 0;
    ASSERT_EQ(vsoc_fleet_hit(f, "r", S, 1, "", 0, 0, &res), VSOC_EINVAL);
    ASSERT_EQ(vsoc_fleet_hit(f, "r", S, 1, longvin, VSOC_VIN_MAX + 1, 0, &res), VSOC_EINVAL);
    ASSERT_EQ(vsoc_fleet_hit(f, "r", S, 0, "V", 1, 0, &res), VSOC_EINVAL);
    ASSERT_EQ(vsoc_fleet_hit(f, "r", 0, 1, "V", 1, 0, &res), VSOC_EINVAL);
    ASSERT_EQ(vsoc_fleet_hit(f, "", S, 1, "V", 1, 0, &res), VSOC_EINVAL);
    /* A vin of exactly VSOC_VIN_MAX bytes is fine and comes back whole. */
    ASSERT_EQ(vsoc_fleet_hit(f, "r", S, 1, longvin, VSOC_VIN_MAX, 0, &res), 0);
    ASSERT_EQ(res.alert, 1);
    ASSERT_EQ(strlen(res.vins[0]), VSOC_VIN_MAX);
    vsoc_fleet_free(f);
    vsoc_fleet_free(NULL);
}

/* ---- a plain model of fleet.h, for random sequences --------------------------------- */

#define MV 64
typedef struct model {
    int64_t latest[MV];
    int has[MV];
    int64_t newest;
    int any, alerted, below;
    int64_t clock;
    int ahit_v;      /* the hit that raised the last alert */
    int64_t ahit_t;
} model_t;

static int vcmp(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), m = na < nb ? na : nb;
    int c = memcmp(a, b, m);
    return c ? c : (na > nb) - (na < nb);
}

static void model_hit(model_t *m, char names[][8], int64_t span, uint64_t gte, int v, int64_t t,
                      vsoc_fleet_result_t *out)
{
    memset(out, 0, sizeof *out);
    int64_t newest = !m->any || t > m->newest ? t : m->newest;
    int late = t < newest - span;
    if (!late) {
        if (!m->has[v] || t > m->latest[v])
            m->latest[v] = t;
        m->has[v] = 1;
        m->newest = newest;
        m->any = 1;
    }
    uint64_t n = 0;
    int64_t first = INT64_MAX;
    for (int i = 0; i < MV; i++) {
        if (m->has[i] && m->latest[i] < m->newest - span)
            m->has[i] = 0;
        if (m->has[i]) {
            n++;
            if (m->latest[i] < first)
                first = m->latest[i];
        }
    }
    if (!late) {
        if (n < gte) {
            m->below = 1;
        } else if (!m->alerted || m->below || m->newest - m->clock >= span) {
            m->alerted = 1;
            m->below = 0;
            m->clock = m->newest;
            m->ahit_v = v;
            m->ahit_t = t;
            out->alert = 1;
        } else if (v == m->ahit_v && t == m->ahit_t) {
            out->alert = 1;
        }
    }
    out->vehicles = n;
    out->first_us = n ? first : 0;
    /* The sample: repeatedly the greatest (latest, vin) not yet taken. */
    int taken[MV] = {0};
    for (out->nvins = 0; out->nvins < VSOC_FLEET_SAMPLES && out->nvins < n; out->nvins++) {
        int best = -1;
        for (int i = 0; i < MV; i++) {
            if (!m->has[i] || taken[i])
                continue;
            if (best < 0 || m->latest[i] > m->latest[best] ||
                (m->latest[i] == m->latest[best] && vcmp(names[i], names[best]) > 0))
                best = i;
        }
        taken[best] = 1;
        strcpy(out->vins[out->nvins], names[best]);
    }
}

static void test_random_against_model(void)
{
    char names[MV][8];
    for (int i = 0; i < MV; i++)
        snprintf(names[i], sizeof names[i], i % 7 ? "V%d" : "V%dX", i); /* some prefixes */
    unsigned seed = 12345;
    for (int round = 0; round < 40; round++) {
        vsoc_fleet_t *f = vsoc_fleet_new();
        model_t m;
        memset(&m, 0, sizeof m);
        int64_t span = 1 + (int64_t)(seed % 50), t = 0;
        uint64_t gte = 1 + round % 9;
        int nv = 4 + round % (MV - 4);
        int alerts = 0;
        for (int i = 0; i < 3000; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned x = seed >> 8;
            /* Mostly forward in small steps, sometimes late, sometimes equal times. */
            if (x % 10 < 6)
                t += x % 4;
            int64_t ht = x % 10 == 9 ? t - (int64_t)((x >> 8) % (2 * span + 2)) : t;
            int v = (int)((x >> 12) % (unsigned)nv);
            vsoc_fleet_result_t want;
            model_hit(&m, names, span, gte, v, ht, &want);
            ASSERT_EQ(vsoc_fleet_hit(f, "rule", span, gte, names[v], strlen(names[v]), ht,
                                     &res), 0);
            if (res.alert != want.alert || res.vehicles != want.vehicles ||
                res.first_us != want.first_us || res.nvins != want.nvins)
                TEST_FAIL_("round %d hit %d (%s at %lld): alert %d/%d vehicles %llu/%llu "
                           "first %lld/%lld nvins %zu/%zu", round, i, names[v], (long long)ht,
                           res.alert, want.alert, (unsigned long long)res.vehicles,
                           (unsigned long long)want.vehicles, (long long)res.first_us,
                           (long long)want.first_us, res.nvins, want.nvins);
            for (size_t k = 0; k < res.nvins; k++)
                ASSERT_STREQ(res.vins[k], want.vins[k]);
            alerts += res.alert;
        }
        ASSERT(alerts > 0); /* the sequences do exercise alerts */
        vsoc_fleet_free(f);
    }
}

/* Vehicles come and go for a long time: entries are reused, and ASan sees no leak. */
static void test_churn(void)
{
    vsoc_fleet_t *f = vsoc_fleet_new();
    char vin[32];
    int alerts = 0;
    for (int i = 0; i < 200000; i++) {
        snprintf(vin, sizeof vin, "CHURN%08d", i);
        ASSERT_EQ(vsoc_fleet_hit(f, i % 2 ? "a" : "b", 1000, 50, vin, strlen(vin), i * 100LL,
                                 &res), 0);
        alerts += res.alert;
        /* 1 ms window at one hit per 100 us, two rules alternating: about 5 per rule. */
        ASSERT(res.vehicles <= 6);
    }
    ASSERT_EQ(alerts, 0);
    vsoc_fleet_free(f);
}

int main(void)
{
    test_window_and_distinct();
    test_alert_once_and_rearm();
    test_late_hits();
    test_sample_order();
    test_uid_and_arguments();
    test_random_against_model();
    test_churn();
    printf("test_fleet: ok\n");
    return 0;
}
