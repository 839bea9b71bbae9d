/* reader.h: read captured vehicle logs (candump and JSON Lines) into events.
 *
 * The format is detected once per file from its first line that parses in any format;
 * every later line must be in that format. A line that does not parse is counted, reported
 * through the on_bad callback as (file, line, reason), and skipped: it never stops the read.
 * Blank lines and lines starting with '#' are ignored and not counted as malformed.
 *
 * Formats:
 *   VSOC_FMT_CANDUMP_LOG     (1436509052.249713) can0 123#DEADBEEF   (candump -l; also
 *                            FD "123##1DEADBEEF", RTR "123#R" / "123#R4", "_D" len8 dlc)
 *   VSOC_FMT_CANDUMP_SPACED   (000.005001)  can0  18FEDF00   [8]  8A A0 28 ...  (candump -ta,
 *                            -tz, -tA and no-time; "[08]" for FD; "remote request" for RTR;
 *                            -td parses, but its deltas are read as times: record with -ta)
 *   VSOC_FMT_LABELLED        0 080#0017dc09161116bb  (label, then ID#DATA; no time)
 *   VSOC_FMT_JSONL           {"vin":"...","ts":...,"type":"...", ...}  one IDS event per line
 *
 * Identifiers with more than 3 hex digits, or above 0x7FF, are 29-bit. Untimed formats get
 * synthetic event time: (events read before it) * frame_gap_us. */
#ifndef VSOC_READER_H
#define VSOC_READER_H

#include "../../engine/event.h"

#include <stdio.h>

typedef enum {
    VSOC_FMT_UNKNOWN = 0,
    VSOC_FMT_CANDUMP_LOG,
    VSOC_FMT_CANDUMP_SPACED,
    VSOC_FMT_LABELLED,
    VSOC_FMT_JSONL,
} vsoc_format_t;

/* Returns "candump-log", "candump-spaced", "labelled", "jsonl" or "unknown". */
const char *vsoc_format_name(vsoc_format_t fmt);

/* Called for each malformed line; file is the reader's display name. */
typedef void (*vsoc_reader_bad_fn)(void *ctx, const char *file, uint64_t lineno,
                                   const char *reason);

typedef struct vsoc_reader_opts {
    const char *vin;       /* VIN for events that carry none; NULL: the file's base name
                              without extension ("stdin" for "-") */
    int64_t frame_gap_us;  /* synthetic spacing for untimed lines; 0 means 1000 (1 ms) */
    vsoc_reader_bad_fn on_bad;
    void *on_bad_ctx;
} vsoc_reader_opts_t;

typedef struct vsoc_reader vsoc_reader_t;

/* Opens path ("-" for stdin) for reading. opts may be NULL. Returns NULL on failure with a
 * message naming the path and strerror in err. The caller frees with vsoc_reader_close. */
vsoc_reader_t *vsoc_reader_open(const char *path, const vsoc_reader_opts_t *opts, char *err,
                                size_t errlen);

/* Reads the next event into *ev. Returns 1 with *ev filled (its slices valid until the next
 * call), 0 at the end of input, or VSOC_EIO on a read error (message in vsoc_reader_errstr).
 * Does not allocate per line (JSON lines excepted: the document is owned by the reader and
 * freed at the next call). */
int vsoc_reader_next(vsoc_reader_t *r, vsoc_event_t *ev);

vsoc_format_t vsoc_reader_format(const vsoc_reader_t *r);
uint64_t vsoc_reader_lines(const vsoc_reader_t *r);   /* lines read so far */
uint64_t vsoc_reader_skipped(const vsoc_reader_t *r); /* malformed lines so far */
uint64_t vsoc_reader_bytes(const vsoc_reader_t *r);   /* bytes consumed so far */
const char *vsoc_reader_errstr(const vsoc_reader_t *r);
void vsoc_reader_close(vsoc_reader_t *r); /* NULL does nothing */

/* Parses one line (without its newline) in the given format into *ev, which the caller
 * has cleared; vin/source/lineno are left to the caller. For VSOC_FMT_JSONL the document is
 * stored in ev->doc and the caller frees it with json_decref. With VSOC_FMT_UNKNOWN every
 * format is tried and *detected receives the one that matched (detected may be NULL).
 * Returns 0, or VSOC_EPARSE with a reason in *reason (valid until this thread's next call). Used by the readers, by
 * embedded rule tests and by the Kafka source (one message = one line). */
int vsoc_parse_line(vsoc_format_t fmt, const char *line, size_t n, vsoc_event_t *ev,
                    vsoc_format_t *detected, const char **reason);

#endif
