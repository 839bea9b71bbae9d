/* fuzz_candump.c: the capture readers on arbitrary bytes. They must report, never crash,
 * read out of bounds or leak; and the buffered reader (with its fast path for repeated line
 * layouts) must agree with vsoc_parse_line on every line: the same event for a line it
 * reads, a malformed report for a line that parses in no format. A disagreement aborts.
 *
 * Each input is (1) split into lines, each parsed with VSOC_FMT_UNKNOWN and with every
 * fixed format, and (2) written to a temporary file that the reader reads to the end. */
#include "decode.h"
#include "file/reader.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BAD 4096

typedef struct bad_lines {
    size_t n;
    uint64_t lineno[MAX_BAD];
} bad_lines_t;

static void on_bad(void *ctx, const char *file, uint64_t lineno, const char *reason)
{
    bad_lines_t *b = ctx;
    (void)file;
    if (!reason || !*reason)
        abort();
    if (b->n < MAX_BAD)
        b->lineno[b->n] = lineno;
    b->n++;
}

/* Parses one line in fmt; decodes and frees what it gets. Returns 0 when it parsed. */
static int parse_one(vsoc_format_t fmt, const char *p, size_t n, vsoc_event_t *ev,
                     vsoc_format_t *det)
{
    const char *reason = NULL;
    vsoc_event_clear(ev);
    int rc = vsoc_parse_line(fmt, p, n, ev, det, &reason);
    if (rc != 0) {
        if (rc != VSOC_EPARSE || !reason || !*reason || ev->doc)
            abort();
        return -1;
    }
    if (ev->kind == VSOC_EVENT_CAN) {
        if (ev->can.len > VSOC_CAN_MAX_LEN || ev->can.dlc > 15 || ev->can.id > 0x1FFFFFFFu ||
            (!ev->can.fd && ev->can.len > 8) || (!ev->can.ext && ev->can.id > 0x7FF))
            abort();
        vsoc_decode(ev);
        double kph;
        if (vsoc_decode_speed(ev, &kph) && !(kph >= 0 && kph < 251))
            abort();
    } else if (ev->kind != VSOC_EVENT_IDS || !ev->doc || !ev->vin.n || !ev->ids_type.n) {
        abort();
    }
    return 0;
}

/* The line the reader would see: without '\n' and trailing CRs. NULL when it is blank or a
 * comment, which the reader skips. */
static const char *line_at(const uint8_t *data, size_t size, uint64_t lineno, size_t *n)
{
    const char *p = (const char *)data, *e = p + size;
    for (uint64_t l = 1; l < lineno; l++) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        if (!nl)
            abort(); /* the reader reported a line that does not exist */
        p = nl + 1;
    }
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(e - p);
    while (len && p[len - 1] == '\r')
        len--;
    *n = len;
    return p;
}

static void read_back(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/vsoc_fuzz_candump.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(fd);

    static bad_lines_t bad;
    bad.n = 0;
    char err[256];
    vsoc_reader_opts_t o = {.vin = NULL, .frame_gap_us = 0, .on_bad = on_bad, .on_bad_ctx = &bad};
    vsoc_reader_t *r = vsoc_reader_open(path, &o, err, sizeof err);
    if (!r)
        abort();
    vsoc_event_t ev, ref;
    uint64_t events = 0, first_lineno = 0;
    int rc;
    while ((rc = vsoc_reader_next(r, &ev)) == 1) {
        vsoc_format_t fmt = vsoc_reader_format(r);
        if (fmt == VSOC_FMT_UNKNOWN || ev.lineno == 0 || ev.lineno > vsoc_reader_lines(r))
            abort();
        if (!first_lineno)
            first_lineno = ev.lineno;
        /* The same event from the full parser, for the same text. */
        size_t n;
        const char *text = line_at(data, size, ev.lineno, &n);
        if (n != ev.line.n || memcmp(text, ev.line.p, n) != 0)
            abort();
        if (parse_one(fmt, ev.line.p, ev.line.n, &ref, NULL) != 0)
            abort();
        size_t i = 0;
        while (i < n && (text[i] == ' ' || text[i] == '\t'))
            i++;
        int timed = fmt != VSOC_FMT_LABELLED && i < n && text[i] == '(';
        if (ev.kind != ref.kind || ev.label != ref.label || ev.bus.n != ref.bus.n ||
            (ev.bus.n && memcmp(ev.bus.p, ref.bus.p, ev.bus.n) != 0) ||
            memcmp(&ev.can, &ref.can, sizeof ev.can) != 0 || (timed && ev.ts_us != ref.ts_us) ||
            (ev.kind == VSOC_EVENT_IDS && ev.ts_us != ref.ts_us))
            abort();
        if (ref.doc)
            json_decref(ref.doc);
        vsoc_decode(&ev);
        events++;
    }
    if (rc != 0)
        abort();
    if (vsoc_reader_skipped(r) != bad.n || vsoc_reader_bytes(r) != size)
        abort();

    /* Every malformed line parses in no format before detection, and not in the detected
     * format after it. */
    vsoc_format_t fmt = vsoc_reader_format(r);
    for (size_t k = 0; k < bad.n && k < MAX_BAD; k++) {
        size_t n;
        const char *text = line_at(data, size, bad.lineno[k], &n);
        vsoc_format_t f = (first_lineno && bad.lineno[k] > first_lineno) ? fmt : VSOC_FMT_UNKNOWN;
        if (n + 1 >= (1u << 20))
            continue; /* "line too long": longer than the reader's buffer, not a parse error */
        if (parse_one(f, text, n, &ref, NULL) == 0)
            abort();
    }
    vsoc_reader_close(r);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const vsoc_format_t fmts[] = {VSOC_FMT_UNKNOWN, VSOC_FMT_CANDUMP_LOG,
                                         VSOC_FMT_CANDUMP_SPACED, VSOC_FMT_LABELLED};
    const char *p = (const char *)data, *e = p + size;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(e - p);
        for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
            vsoc_event_t ev;
            vsoc_format_t det = VSOC_FMT_JSONL;
            if (parse_one(fmts[i], p, n, &ev, &det) == 0) {
                if (det == VSOC_FMT_UNKNOWN || (fmts[i] && det != fmts[i]))
                    abort();
                if (ev.doc)
                    json_decref(ev.doc);
            } else if (det != VSOC_FMT_UNKNOWN) {
                abort();
            }
        }
        p += n + 1;
    }
    read_back(data, size);
    return 0;
}
