/* baseline.h: a per-vehicle-model baseline of normal CAN traffic, learned from captures and
 * kept as reviewable YAML (docs/vsoc-baseline.md).
 *
 * Learning: for each (bus, CAN ID, ext) the learner keeps the frame count, the inter-arrival
 * period (count, mean, std, min, max, and p1/p50/p99 from a fixed log-spaced histogram),
 * the DLCs seen, and per data byte 0..7 the range, the AND and OR of all values and a
 * counter detector. Periods and counters come from consecutive frames of one ID within one
 * file: they never span two files. Each file's statistics are merged into the totals with
 * the parallel (Chan et al.) formula when the next file begins, so the result is the same
 * as learning each file alone and merging.
 *
 * Nothing here reads the wall clock: the YAML's date is the last event time of the sources,
 * and the same input always gives byte-identical YAML. Not thread-safe per object; distinct
 * objects may be used from distinct threads. */
#ifndef VSOC_BASELINE_H
#define VSOC_BASELINE_H

#include "event.h"

#include <stdint.h>
#include <stdio.h>

#define VSOC_BASELINE_FORMAT 1
#define VSOC_BASELINE_BYTES 8 /* data bytes profiled per ID (the classic CAN payload) */

/* Period histogram: log-spaced buckets from 10 us to 100 s (periods outside go to the end
 * buckets); percentiles are interpolated geometrically within a bucket. */
#define VSOC_BASELINE_HIST_BUCKETS 400
#define VSOC_BASELINE_HIST_MIN_US 10.0
#define VSOC_BASELINE_HIST_MAX_US 1e8

typedef enum {
    VSOC_BASELINE_COUNTER_NONE = 0,
    VSOC_BASELINE_COUNTER_NIBBLE = 1, /* low nibble += 1 mod 16 in >= 99.5 % of frame pairs */
    VSOC_BASELINE_COUNTER_BYTE = 2,   /* whole byte += 1 mod 256 in >= 99.5 % of frame pairs */
} vsoc_baseline_counter_t;

typedef enum {
    VSOC_BASELINE_CHECKSUM_NONE = 0,
    VSOC_BASELINE_CHECKSUM_XOR = 1, /* the byte is the XOR of the frame's other bytes */
    VSOC_BASELINE_CHECKSUM_SUM = 2, /* the byte is the sum of the other bytes, mod 256 */
} vsoc_baseline_checksum_t;

typedef struct vsoc_baseline_byte {
    uint8_t min, max;
    uint8_t and_bits; /* AND of every value seen */
    uint8_t or_bits;  /* OR of every value seen; bits that never changed: ~(or ^ and) */
    uint8_t counter;  /* vsoc_baseline_counter_t */
    uint8_t checksum; /* vsoc_baseline_checksum_t: in >= 99.5 % of frames, never constant */
} vsoc_baseline_byte_t;

/* Inter-arrival period of one ID, in milliseconds. When count is 0 (fewer than two frames
 * in any one file) the other members are 0. */
typedef struct vsoc_baseline_period {
    uint64_t count;
    double mean, std, min, p1, p50, p99, max;
} vsoc_baseline_period_t;

/* What the baseline says about one (bus, id, ext). */
typedef struct vsoc_baseline_id {
    const char *bus; /* NUL-terminated; "" when the capture had none */
    uint32_t id;
    uint8_t ext;
    uint8_t nbytes;    /* entries of bytes[] that are valid: the longest payload, at most 8 */
    uint16_t dlc_mask; /* bit d set when DLC d (0..15) was seen */
    uint64_t frames;
    vsoc_baseline_period_t period;
    vsoc_baseline_byte_t bytes[VSOC_BASELINE_BYTES];
} vsoc_baseline_id_t;

/* ---------------------------------------------------------------------------------------- */
/* Learning */

typedef struct vsoc_baseline_learner vsoc_baseline_learner_t;

/* Returns a new learner, or NULL when out of memory. Free with vsoc_baseline_learner_free. */
vsoc_baseline_learner_t *vsoc_baseline_learner_new(void);
void vsoc_baseline_learner_free(vsoc_baseline_learner_t *l); /* NULL does nothing */

/* Starts the next source file. source is its display name, sha256_hex its digest (NULL or
 * "" when unknown, e.g. stdin); both are copied. Returns 0 or VSOC_ENOMEM. */
int vsoc_baseline_learner_file_begin(vsoc_baseline_learner_t *l, const char *source,
                                     const char *sha256_hex);

/* Learns one event of the current file. Non-CAN events are ignored (returns 0). Returns 0,
 * VSOC_EINVAL when no file was begun, or VSOC_ENOMEM when a new ID could not be stored (the
 * frame is then not counted). Allocates only when an ID appears for the first time. */
int vsoc_baseline_learner_add(vsoc_baseline_learner_t *l, const vsoc_event_t *ev);

uint64_t vsoc_baseline_learner_frames(const vsoc_baseline_learner_t *l);
size_t vsoc_baseline_learner_ids(const vsoc_baseline_learner_t *l);
/* Sum over sources of (last - first event time), in microseconds. */
int64_t vsoc_baseline_learner_duration_us(const vsoc_baseline_learner_t *l);

/* Writes what was learned as YAML (format 1) to out; name and tool_version are recorded in
 * the header. Returns 0, VSOC_ENOMEM, or VSOC_EIO when writing failed. */
int vsoc_baseline_write_yaml(const vsoc_baseline_learner_t *l, FILE *out, const char *name,
                             const char *tool_version);

/* ---------------------------------------------------------------------------------------- */
/* A loaded (or finished) baseline: immutable, safe to share between threads. */

typedef struct vsoc_baseline vsoc_baseline_t;

/* Returns the baseline as learned so far (the learner is left unchanged), or NULL when out
 * of memory. name and tool_version are copied. Caller frees with vsoc_baseline_free. */
vsoc_baseline_t *vsoc_baseline_from_learner(const vsoc_baseline_learner_t *l, const char *name,
                                            const char *tool_version);

/* Reads a baseline YAML file. Returns NULL on failure with "path:line:col: message" in err
 * (libyaml's own message for syntax errors). Caller frees with vsoc_baseline_free. */
vsoc_baseline_t *vsoc_baseline_load(const char *path, char *err, size_t errlen);

void vsoc_baseline_free(vsoc_baseline_t *b); /* NULL does nothing */

/* Writes b as YAML; load followed by write reproduces the written text exactly.
 * Returns 0 or VSOC_EIO. */
int vsoc_baseline_write(const vsoc_baseline_t *b, FILE *out);

const char *vsoc_baseline_name(const vsoc_baseline_t *b);
const char *vsoc_baseline_tool(const vsoc_baseline_t *b);
uint64_t vsoc_baseline_frames(const vsoc_baseline_t *b);
double vsoc_baseline_duration_s(const vsoc_baseline_t *b);
size_t vsoc_baseline_sources(const vsoc_baseline_t *b);
size_t vsoc_baseline_count(const vsoc_baseline_t *b);
/* The i-th ID in order of bus, then id, then ext; NULL when i is out of range. */
const vsoc_baseline_id_t *vsoc_baseline_at(const vsoc_baseline_t *b, size_t i);
/* The entry for (bus, id, ext), or NULL when the baseline never saw it. bus is a slice
 * (as in vsoc_event_t). O(log n), no allocation, thread-safe. */
const vsoc_baseline_id_t *vsoc_baseline_lookup(const vsoc_baseline_t *b, const char *bus,
                                               size_t buslen, uint32_t id, int ext);

/* "none", "nibble" or "byte". */
const char *vsoc_baseline_counter_name(vsoc_baseline_counter_t c);
/* "none", "xor" or "sum". */
const char *vsoc_baseline_checksum_name(vsoc_baseline_checksum_t c);

#endif
