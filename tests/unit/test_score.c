/* test_score.c: baseline scoring: each reason on the frame that deserves it, and none on
 * traffic like the one learnt. */
#include "baseline.h"
#include "field.h"
#include "score.h"
#include "test.h"

#include <stdlib.h>

static vsoc_event_t frame(double t, uint32_t id, const uint8_t *data, uint8_t len)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_CAN;
    ev.ts_us = (int64_t)(t * 1e6 + 0.5);
    ev.can.id = id;
    ev.can.ext = id > 0x7FF;
    ev.can.len = ev.can.dlc = len;
    memcpy(ev.can.data, data, len);
    ev.bus.p = "can0";
    ev.bus.n = 4;
    return ev;
}

int main(void)
{
    /* Learn 10 s of one 10 ms message: byte 0 a nibble counter, byte 1 in 0x10..0x20,
     * byte 2 always 0xFF. */
    vsoc_baseline_learner_t *l = vsoc_baseline_learner_new();
    ASSERT(l != NULL);
    vsoc_baseline_learner_file_begin(l, "t.log", "");
    for (int i = 0; i < 1000; i++) {
        uint8_t d[3] = {(uint8_t)(i & 15), (uint8_t)(0x10 + i % 17), 0xFF};
        vsoc_event_t ev = frame(i * 0.010 + (i % 3) * 0.0001, 0x123, d, 3);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
    }
    /* And a message whose byte 3 is the XOR of bytes 0..2. */
    for (int i = 0; i < 100; i++) {
        uint8_t d[4] = {(uint8_t)i, (uint8_t)(i * 7), 0x5A, 0};
        d[3] = d[0] ^ d[1] ^ d[2];
        vsoc_event_t ev = frame(i * 0.1, 0x200, d, 4);
        ASSERT_EQ(vsoc_baseline_learner_add(l, &ev), 0);
    }
    vsoc_baseline_t *b = vsoc_baseline_from_learner(l, "t", "test");
    ASSERT(b != NULL);
    vsoc_scorer_t *s = vsoc_scorer_new(b);
    ASSERT(s != NULL);
    void *st = malloc(vsoc_scorer_state_bytes(s));
    vsoc_scorer_state_init(s, st);
    ASSERT_EQ(vsoc_scorer_state_bytes(s), 48);
    ASSERT_EQ(vsoc_baseline_lookup(b, "can0", 4, 0x200, 0)->bytes[3].checksum,
              VSOC_BASELINE_CHECKSUM_XOR);
    {
        uint8_t good[4] = {3, 21, 0x5A, 3 ^ 21 ^ 0x5A}, bad[4] = {3, 21, 0x5A, 0x00};
        vsoc_event_t g = frame(50.0, 0x200, good, 4), x = frame(50.1, 0x200, bad, 4);
        vsoc_scorer_score(s, st, &g);
        ASSERT_EQ(g.baseline_reasons, 0);
        vsoc_scorer_score(s, st, &x);
        ASSERT(x.baseline_reasons & vsoc_reason_bit("checksum"));
        ASSERT(x.baseline_score >= VSOC_SCORE_THRESHOLD);
    }

    uint32_t unknown = vsoc_reason_bit("unknown_id"), shortp = vsoc_reason_bit("period_short"),
             dlc = vsoc_reason_bit("dlc"), payload = vsoc_reason_bit("payload"),
             counter = vsoc_reason_bit("counter");
    /* Traffic like the learnt one: no reason. */
    for (int i = 0; i < 50; i++) {
        uint8_t d[3] = {(uint8_t)(i & 15), 0x15, 0xFF};
        vsoc_event_t ev = frame(100 + i * 0.010, 0x123, d, 3);
        vsoc_scorer_score(s, st, &ev);
        ASSERT(ev.derived & VSOC_HAS_BASELINE);
        ASSERT_EQ(ev.baseline_reasons, 0);
        ASSERT(ev.baseline_score == 0);
    }
    /* An injected copy 2 ms after a genuine frame: too soon, and its counter repeats. */
    uint8_t d1[3] = {49 & 15, 0x15, 0xFF};
    vsoc_event_t ev = frame(100.492, 0x123, d1, 3);
    vsoc_scorer_score(s, st, &ev);
    ASSERT(ev.baseline_reasons & shortp);
    ASSERT(ev.baseline_reasons & counter);
    ASSERT(ev.baseline_score >= VSOC_SCORE_THRESHOLD);
    /* Payload out of range and a constant bit flipped: reported, below the flag alone. */
    uint8_t d2[3] = {50 & 15, 0x40, 0x7F};
    ev = frame(100.500, 0x123, d2, 3);
    vsoc_scorer_score(s, st, &ev);
    ASSERT_EQ(ev.baseline_reasons, payload);
    ASSERT(ev.baseline_score < VSOC_SCORE_THRESHOLD);
    /* A DLC never seen, and an ID never seen. */
    uint8_t d3[8] = {51 & 15, 0x15, 0xFF, 0, 0, 0, 0, 0};
    ev = frame(100.510, 0x123, d3, 8);
    vsoc_scorer_score(s, st, &ev);
    ASSERT(ev.baseline_reasons & dlc);
    ev = frame(100.511, 0x124, d3, 3);
    vsoc_scorer_score(s, st, &ev);
    ASSERT_EQ(ev.baseline_reasons, unknown);
    ASSERT(ev.baseline_score == 1.0);
    /* Silence: reported once when no learnt gap comes close, and again only after the ID
     * was seen. The learnt period is 10 ms, so 100 ms of silence is far beyond it. */
    size_t idx[4];
    /* 0x200 went quiet at 50.1 s: reported at the first look. */
    ASSERT_EQ(vsoc_scorer_missing(s, st, (int64_t)(100.525 * 1e6), idx, 4), 1);
    ASSERT_EQ(vsoc_scorer_missing(s, st, (int64_t)(100.530 * 1e6), idx, 4), 0);
    ASSERT_EQ(vsoc_scorer_missing(s, st, (int64_t)(100.700 * 1e6), idx, 4), 1);
    ASSERT_EQ(vsoc_scorer_missing(s, st, (int64_t)(100.900 * 1e6), idx, 4), 0);
    vsoc_event_t m;
    vsoc_event_clear(&m);
    vsoc_scorer_missing_event(s, st, idx[0], (int64_t)(100.700 * 1e6), &m);
    ASSERT_EQ(m.can.id, 0x123);
    ASSERT_EQ(m.baseline_reasons, vsoc_reason_bit("missing"));
    ASSERT(m.obs_period_ms > 180 && m.obs_period_ms < 200);
    ev = frame(101.0, 0x123, d1, 3);
    vsoc_scorer_score(s, st, &ev);
    ASSERT_EQ(vsoc_scorer_missing(s, st, (int64_t)(101.5 * 1e6), idx, 4), 1);
    char buf[128];
    ASSERT_STREQ(vsoc_score_reasons(shortp | counter, buf, sizeof buf), "period_short,counter");

    free(st);
    vsoc_scorer_free(s);
    vsoc_baseline_free(b);
    vsoc_baseline_learner_free(l);
    printf("test_score: ok\n");
    return 0;
}
