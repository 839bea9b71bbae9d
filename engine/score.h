/* score.h: score CAN frames against a learned baseline (baseline.h): each frame gets
 * baseline.score (0..1) and baseline.reasons (unknown_id, period_short, period_long, dlc,
 * payload, counter), which rules and alerts can use.
 *
 * A scorer is an immutable index over a baseline, shared by threads. What scoring remembers
 * about a vehicle (per baseline ID: the last frame's time and payload) lives in a state
 * block the caller allocates once per vehicle (vsoc_scorer_state_bytes); scoring a frame
 * allocates nothing. */
#ifndef VSOC_SCORE_H
#define VSOC_SCORE_H

#include "baseline.h"
#include "event.h"

/* A frame whose score reaches this is judged anomalous ("flag" in vsoc baseline score). */
#define VSOC_SCORE_THRESHOLD 0.5

/* Weights of the reasons; a frame's score is the largest weight among its reasons. */
#define VSOC_SCORE_UNKNOWN_ID 1.0
#define VSOC_SCORE_DLC 0.9
#define VSOC_SCORE_PERIOD_SHORT 0.8
#define VSOC_SCORE_PAYLOAD 0.4 /* alone below the flag: ranges learnt from one drive are narrow */
#define VSOC_SCORE_COUNTER 0.6
#define VSOC_SCORE_CHECKSUM 0.7
#define VSOC_SCORE_PERIOD_LONG 0.3
#define VSOC_SCORE_MISSING 0.5

typedef struct vsoc_scorer vsoc_scorer_t;

/* Builds a scorer over b, which is borrowed and must outlive it. Returns NULL on
 * allocation failure. */
vsoc_scorer_t *vsoc_scorer_new(const vsoc_baseline_t *b);
void vsoc_scorer_free(vsoc_scorer_t *s); /* NULL does nothing */

/* Bytes of per-vehicle state: 24 per baseline ID. */
size_t vsoc_scorer_state_bytes(const vsoc_scorer_t *s);
/* Prepares a state block of vsoc_scorer_state_bytes() bytes (caller owns it). */
void vsoc_scorer_state_init(const vsoc_scorer_t *s, void *state);

/* Scores one event against the baseline and the vehicle's state, which it updates. For a
 * CAN frame sets ev->baseline_score, ev->baseline_reasons and VSOC_HAS_BASELINE; other
 * events are left alone. */
void vsoc_scorer_score(const vsoc_scorer_t *s, void *state, vsoc_event_t *ev);

/* Finds the vehicle's periodic IDs (at least 10 learnt periods) that have been silent at
 * event time now for longer than any learnt gap (over 3 x p99 and 1.5 x the longest): a
 * message gone missing (suspension attack, silenced ECU). Each silence is reported once,
 * until the ID is seen again. Writes up to max baseline indices to out; returns how many. */
size_t vsoc_scorer_missing(const vsoc_scorer_t *s, void *state, int64_t now, size_t *out,
                           size_t max);

/* Fills ev (cleared by the caller) as the synthetic event of a missing message: a CAN event
 * for baseline entry i at time now with reason "missing", its silence as the observed
 * period and the learnt period as expected. */
void vsoc_scorer_missing_event(const vsoc_scorer_t *s, const void *state, size_t i, int64_t now,
                               vsoc_event_t *ev);

/* Saving and restoring a vehicle's state, for engine snapshots (engine.h). */

/* A fingerprint of the baseline s scores against: a 64-bit FNV-1a over every entry's key,
 * counts, periods and byte profile, in a fixed little-endian form, so the same baseline
 * gives the same value in every run and on every host. A saved state is only meaningful
 * under a scorer with the same fingerprint. */
uint64_t vsoc_scorer_fingerprint(const vsoc_scorer_t *s);

/* Bytes vsoc_scorer_state_save() writes for state. */
size_t vsoc_scorer_state_saved_bytes(const vsoc_scorer_t *s, const void *state);

/* Writes state in a portable form to out, which has room for
 * vsoc_scorer_state_saved_bytes(): u32 entries of the baseline, u32 n, then for each ID
 * whose state is not that of a fresh vehicle, in increasing order: u32 index, i64 last
 * time, the last 8 payload bytes, u8 silent; all little-endian. Returns the bytes
 * written. */
size_t vsoc_scorer_state_save(const vsoc_scorer_t *s, const void *state, uint8_t *out);

/* Reads exactly n bytes written by vsoc_scorer_state_save() under a scorer with the same
 * fingerprint into state (a block of vsoc_scorer_state_bytes(), which it initialises
 * first). Returns 0, or VSOC_EPARSE when in is not such a form (a different entry count,
 * indices out of range or not increasing, an entry that a fresh state already has, a
 * silent flag other than 0 or 1, a time beyond +-2^62 us, a wrong length); state is then
 * unspecified. */
int vsoc_scorer_state_load(const vsoc_scorer_t *s, void *state, const uint8_t *in, size_t n);

/* Writes the names of the reason bits, comma-separated, into buf; returns buf. */
char *vsoc_score_reasons(uint32_t reasons, char *buf, size_t len);

#endif
