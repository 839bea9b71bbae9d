/* test_incident.c: grouping alerts into incidents: gap on event time, per vehicle, level
 * with the tactic step, content-derived ids, restore and state changes. */
#include "incident.h"
#include "test.h"

#define MIN (60LL * 1000000)

static vsoc_incident_alert_t alert(const char *uid, const char *vin, vsoc_level_t lv,
                                   int64_t t, const char *const *tags, size_t ntags)
{
    vsoc_incident_alert_t a = {.uid = uid, .rule_id = "vsoc.test.rule", .level = lv,
                               .vin = {vin, strlen(vin)}, .time_us = t, .tags = tags,
                               .ntags = ntags};
    return a;
}

static void test_grouping(void)
{
    vsoc_incidents_t *g = vsoc_incidents_new(0);
    ASSERT(g);
    static const char *const evasion[] = {"atm.defense-evasion", "unr155.annex5.a.4.1"};
    static const char *const affect[] = {"atm.affect-vehicle-function"};
    const vsoc_incident_t *inc;
    unsigned flags;
    vsoc_incident_alert_t a = alert("a1", "VIN1", VSOC_LEVEL_MEDIUM, 0, evasion, 2);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_EQ(flags, VSOC_INC_NEW);
    ASSERT_EQ(inc->level, VSOC_LEVEL_MEDIUM);
    ASSERT_EQ(inc->state, VSOC_INC_OPEN);
    char first[37];
    strcpy(first, inc->id);
    ASSERT_EQ(strlen(first), 36);
    ASSERT_EQ(first[14], '8'); /* UUID version 8 */

    /* Same tactic 14 minutes later: same incident, same level. */
    a = alert("a2", "VIN1", VSOC_LEVEL_LOW, 14 * MIN, evasion, 2);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_EQ(flags, 0);
    ASSERT_STREQ(inc->id, first);
    ASSERT_EQ(inc->alerts, 2);
    ASSERT_EQ(inc->level, VSOC_LEVEL_MEDIUM);

    /* A second tactic raises the level one step above the highest alert. */
    a = alert("a3", "VIN1", VSOC_LEVEL_MEDIUM, 20 * MIN, affect, 1);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_EQ(flags, VSOC_INC_LEVEL_UP);
    ASSERT_EQ(inc->level, VSOC_LEVEL_HIGH);
    /* A high alert on top makes it critical (high + the tactic step). */
    a = alert("a4", "VIN1", VSOC_LEVEL_HIGH, 21 * MIN, affect, 1);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_EQ(inc->level, VSOC_LEVEL_CRITICAL);
    ASSERT_EQ(inc->last_us, 21 * MIN);

    /* Another vehicle has its own incident. */
    a = alert("b1", "VIN2", VSOC_LEVEL_LOW, 21 * MIN, NULL, 0);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_EQ(flags, VSOC_INC_NEW);
    ASSERT(strcmp(inc->id, first) != 0);

    /* More than 15 minutes after the last alert: a new incident. */
    a = alert("a5", "VIN1", VSOC_LEVEL_LOW, 37 * MIN, NULL, 0);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_EQ(flags, VSOC_INC_NEW);
    ASSERT(strcmp(inc->id, first) != 0);
    char second[37];
    strcpy(second, inc->id);

    /* A resolved incident is not joined, even within the gap. */
    ASSERT_EQ(vsoc_incidents_set_state(g, second, VSOC_INC_RESOLVED), 0);
    ASSERT_EQ(vsoc_incidents_set_state(g, first, VSOC_INC_RESOLVED), VSOC_ENOENT);
    a = alert("a6", "VIN1", VSOC_LEVEL_LOW, 38 * MIN, NULL, 0);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_EQ(flags, VSOC_INC_NEW);
    ASSERT_STREQ(vsoc_incidents_get(g, "VIN1")->id, inc->id);
    ASSERT(vsoc_incidents_get(g, "VIN3") == NULL);
    vsoc_incidents_free(g);

    /* The same alerts give the same ids in a new grouper (replays agree). */
    g = vsoc_incidents_new(0);
    a = alert("a1", "VIN1", VSOC_LEVEL_MEDIUM, 0, evasion, 2);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_STREQ(inc->id, first);
    vsoc_incidents_free(g);
}

static void test_restore_and_growth(void)
{
    vsoc_incidents_t *g = vsoc_incidents_new(5 * MIN);
    vsoc_incident_t saved;
    memset(&saved, 0, sizeof saved);
    strcpy(saved.id, "11111111-1111-8111-8111-111111111111");
    strcpy(saved.vin, "VINR");
    saved.level = VSOC_LEVEL_HIGH;
    saved.first_us = 0;
    saved.last_us = 10 * MIN;
    saved.alerts = 3;
    ASSERT_EQ(vsoc_incidents_restore(g, &saved), 0);
    const vsoc_incident_t *inc;
    unsigned flags;
    vsoc_incident_alert_t a = alert("r1", "VINR", VSOC_LEVEL_LOW, 14 * MIN, NULL, 0);
    ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
    ASSERT_EQ(flags, 0);
    ASSERT_STREQ(inc->id, saved.id);
    ASSERT_EQ(inc->alerts, 4);
    /* Many vehicles: the table grows and keeps each. */
    char vin[32], uid[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(vin, sizeof vin, "V%05d", i);
        snprintf(uid, sizeof uid, "u%d", i);
        a = alert(uid, vin, VSOC_LEVEL_LOW, 0, NULL, 0);
        ASSERT_EQ(vsoc_incidents_add(g, &a, &inc, &flags), 0);
        ASSERT_EQ(flags, VSOC_INC_NEW);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(vin, sizeof vin, "V%05d", i);
        ASSERT(vsoc_incidents_get(g, vin) != NULL);
    }
    ASSERT_STREQ(vsoc_incidents_get(g, "VINR")->id, saved.id);
    vsoc_incidents_free(g);
}

static void test_names(void)
{
    vsoc_incident_state_t s;
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(vsoc_incident_state_from_name(vsoc_incident_state_name(i), &s), 0);
        ASSERT_EQ(s, i);
    }
    ASSERT_EQ(vsoc_incident_state_from_name("closed", &s), -1);
    ASSERT(vsoc_incident_transition_ok(VSOC_INC_OPEN, VSOC_INC_CONTAINED));
    ASSERT(vsoc_incident_transition_ok(VSOC_INC_CONTAINED, VSOC_INC_RESOLVED));
    ASSERT(!vsoc_incident_transition_ok(VSOC_INC_RESOLVED, VSOC_INC_OPEN));
    ASSERT(!vsoc_incident_transition_ok(VSOC_INC_OPEN, VSOC_INC_OPEN));
    ASSERT_EQ(vsoc_tactic_bit("atm.initial-access"), 1);
    ASSERT_EQ(vsoc_tactic_bit("unr155.annex5.a.4.1"), 0);
    ASSERT_EQ(vsoc_tactic_bit("atm.no-such-tactic"), 0);
    char a[37], b[37];
    const char *p1[] = {"x", "yz"}, *p2[] = {"xy", "z"};
    vsoc_uuid_derive(p1, 2, a);
    vsoc_uuid_derive(p2, 2, b);
    ASSERT(strcmp(a, b) != 0); /* parts are separated, not concatenated */
}

int main(void)
{
    test_grouping();
    test_restore_and_growth();
    test_names();
    printf("test_incident: ok\n");
    return 0;
}
