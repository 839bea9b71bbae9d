/* test_reader.c: the capture readers (connectors/file/reader.c): every line format through
 * vsoc_parse_line, then the buffered reader on temporary files (detection, malformed lines,
 * CRLF, buffer boundaries, overlong lines), then the real captures of ../shared/data/can
 * when they are present (skipped with a message when they are not). */
#include "file/reader.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/vsoc_test_reader.XXXXXX";

/* ---------------------------------------------------------------------------------------- */
/* Helpers */

static vsoc_event_t parse_ok_(const char *file, int line, vsoc_format_t fmt, const char *text,
                              vsoc_format_t *detected)
{
    vsoc_event_t ev;
    const char *reason = NULL;
    vsoc_event_clear(&ev);
    if (vsoc_parse_line(fmt, text, strlen(text), &ev, detected, &reason) != 0) {
        fprintf(stderr, "%s:%d: parse of \"%s\" failed: %s\n", file, line, text, reason);
        exit(1);
    }
    return ev;
}
#define parse_ok(fmt, text) parse_ok_(__FILE__, __LINE__, fmt, text, NULL)

static const char *parse_bad_(const char *file, int line, vsoc_format_t fmt, const char *text)
{
    vsoc_event_t ev;
    const char *reason = NULL;
    vsoc_event_clear(&ev);
    if (vsoc_parse_line(fmt, text, strlen(text), &ev, NULL, &reason) != VSOC_EPARSE) {
        fprintf(stderr, "%s:%d: parse of \"%s\" should have failed\n", file, line, text);
        exit(1);
    }
    if (!reason || !*reason) {
        fprintf(stderr, "%s:%d: no reason for \"%s\"\n", file, line, text);
        exit(1);
    }
    return reason;
}
#define parse_bad(fmt, text) parse_bad_(__FILE__, __LINE__, fmt, text)

/* The frame's payload as upper-case hex. */
static const char *hexdata(const vsoc_event_t *ev)
{
    static char buf[2 * VSOC_CAN_MAX_LEN + 1];
    for (size_t i = 0; i < ev->can.len; i++)
        snprintf(buf + 2 * i, 3, "%02X", (unsigned)ev->can.data[i]);
    buf[2 * ev->can.len] = '\0';
    return buf;
}

#define ASSERT_FRAME(ev, id_, ext_, hex_)                                                  \
    do {                                                                                   \
        vsoc_event_t f_ = (ev);                                                            \
        ASSERT_EQ(f_.kind, VSOC_EVENT_CAN);                                                \
        ASSERT_EQ(f_.can.id, id_);                                                         \
        ASSERT_EQ(f_.can.ext, ext_);                                                       \
        ASSERT_STREQ(hexdata(&f_), hex_);                                                  \
    } while (0)

static char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

static const char *write_file(const char *name, const char *data, size_t n)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
        TEST_FAIL_("cannot write %s: %s", path, strerror(errno));
    return path;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}

/* Collects on_bad reports. */
typedef struct bad_log {
    int n;
    char file[256];
    uint64_t lineno[64];
    char reason[64][160];
} bad_log_t;

static void on_bad(void *ctx, const char *file, uint64_t lineno, const char *reason)
{
    bad_log_t *b = ctx;
    if (b->n < 64) {
        snprintf(b->file, sizeof b->file, "%s", file);
        b->lineno[b->n] = lineno;
        snprintf(b->reason[b->n], sizeof b->reason[0], "%s", reason);
    }
    b->n++;
}

static vsoc_reader_t *open_ok(const char *path, const char *vin, int64_t gap, bad_log_t *bad)
{
    char err[256];
    vsoc_reader_opts_t o = {vin, gap, on_bad, bad};
    vsoc_reader_t *r = vsoc_reader_open(path, &o, err, sizeof err);
    if (!r)
        TEST_FAIL_("open %s: %s", path, err);
    return r;
}

/* Compares a reader's event with vsoc_parse_line's for the same line: the reader's fast path
 * for repeated layouts must agree with the full parser. Untimed lines get their time from
 * the reader, so time is compared only for lines that carry one. */
static void same_as_parse_line(const vsoc_event_t *ev, vsoc_format_t fmt)
{
    vsoc_event_t ref;
    const char *reason = NULL;
    vsoc_event_clear(&ref);
    if (vsoc_parse_line(fmt, ev->line.p, ev->line.n, &ref, NULL, &reason) != 0)
        TEST_FAIL_("line %llu \"%.*s\" read but does not parse alone: %s",
                   (unsigned long long)ev->lineno, (int)ev->line.n, ev->line.p, reason);
    size_t i = 0;
    while (i < ev->line.n && (ev->line.p[i] == ' ' || ev->line.p[i] == '\t'))
        i++;
    int timed = fmt != VSOC_FMT_LABELLED && i < ev->line.n && ev->line.p[i] == '(';
    if (memcmp(&ref.can, &ev->can, sizeof ref.can) != 0 || ref.kind != ev->kind ||
        ref.label != ev->label || ref.bus.n != ev->bus.n ||
        (ref.bus.n && memcmp(ref.bus.p, ev->bus.p, ref.bus.n) != 0) ||
        (timed && ref.ts_us != ev->ts_us))
        TEST_FAIL_("line %llu \"%.*s\": reader and vsoc_parse_line disagree (id %x/%x len %d/%d "
                   "ts %lld/%lld)",
                   (unsigned long long)ev->lineno, (int)ev->line.n, ev->line.p, ref.can.id,
                   ev->can.id, ref.can.len, ev->can.len, (long long)ref.ts_us,
                   (long long)ev->ts_us);
}

/* ---------------------------------------------------------------------------------------- */
/* vsoc_parse_line: candump -l */

static void test_format_names(void)
{
    ASSERT_STREQ(vsoc_format_name(VSOC_FMT_CANDUMP_LOG), "candump-log");
    ASSERT_STREQ(vsoc_format_name(VSOC_FMT_CANDUMP_SPACED), "candump-spaced");
    ASSERT_STREQ(vsoc_format_name(VSOC_FMT_LABELLED), "labelled");
    ASSERT_STREQ(vsoc_format_name(VSOC_FMT_JSONL), "jsonl");
    ASSERT_STREQ(vsoc_format_name(VSOC_FMT_UNKNOWN), "unknown");
    ASSERT_STREQ(vsoc_format_name((vsoc_format_t)99), "unknown");
}

static void test_log_basic(void)
{
    const vsoc_format_t L = VSOC_FMT_CANDUMP_LOG;
    vsoc_event_t ev = parse_ok(L, "(1436509052.249713) can0 123#DEADBEEF");
    ASSERT_FRAME(ev, 0x123, 0, "DEADBEEF");
    ASSERT_EQ(ev.ts_us, 1436509052249713LL);
    ASSERT_STRN_EQ(ev.bus.p, ev.bus.n, "can0");
    ASSERT_EQ(ev.can.dlc, 4);
    ASSERT_EQ(ev.can.len, 4);
    ASSERT_EQ(ev.can.fd, 0);
    ASSERT_EQ(ev.can.rtr, 0);
    ASSERT_EQ(ev.label, -1);
    ASSERT_STRN_EQ(ev.line.p, ev.line.n, "(1436509052.249713) can0 123#DEADBEEF");
    ASSERT_EQ(ev.vin.n, 0); /* left to the caller */

    /* The example from SOURCES.md (opel/benign.log, with its trailing space). */
    ev = parse_ok(L, "(0.000177) can0 300#0003009000461501 ");
    ASSERT_FRAME(ev, 0x300, 0, "0003009000461501");
    ASSERT_EQ(ev.ts_us, 177);
    ASSERT_EQ(ev.can.dlc, 8);

    /* 11 vs 29 bit: by digits, or by value. */
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 12345678#11"), 0x12345678, 1, "11");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 00000123#11"), 0x123, 1, "11");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 0123#"), 0x123, 1, "");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 7FF#"), 0x7FF, 0, "");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 800#"), 0x800, 1, "");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 1#01"), 0x1, 0, "01");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 1FFFFFFF#"), 0x1FFFFFFF, 1, "");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 7e0#0322f19000000000"), 0x7E0, 0, "0322F19000000000");

    /* cansend's '.' separators. */
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 123#11.22.33.44.55.66.77.88"), 0x123, 0,
                 "1122334455667788");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 123#1122.33"), 0x123, 0, "112233");

    /* Trailing whitespace and direction tokens; tabs as separators. */
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 123#11 T"), 0x123, 0, "11");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 123#11 R  "), 0x123, 0, "11");
    ASSERT_FRAME(parse_ok(L, "(0.1) can0 123#11   "), 0x123, 0, "11");
    ASSERT_FRAME(parse_ok(L, "(0.1)\tvcan1\t123#11"), 0x123, 0, "11");
    ev = parse_ok(L, "   (0.1)   vcan1   123#11\r");
    ASSERT_STRN_EQ(ev.bus.p, ev.bus.n, "vcan1");
    ASSERT_EQ(ev.line.n, strlen("   (0.1)   vcan1   123#11"));
}

static void test_log_fd_rtr_dlc(void)
{
    const vsoc_format_t L = VSOC_FMT_CANDUMP_LOG;
    vsoc_event_t ev = parse_ok(L, "(0.1) can0 123##1DEADBEEF");
    ASSERT_FRAME(ev, 0x123, 0, "DEADBEEF");
    ASSERT_EQ(ev.can.fd, 1);
    ASSERT_EQ(ev.can.fd_flags, 1);
    ASSERT_EQ(ev.can.dlc, 4);

    ev = parse_ok(L, "(0.1) can0 12345678##3");
    ASSERT_EQ(ev.can.fd, 1);
    ASSERT_EQ(ev.can.fd_flags, 3);
    ASSERT_EQ(ev.can.len, 0);
    ASSERT_EQ(ev.can.dlc, 0);

    /* Every valid CAN FD length and its DLC; the others are rejected. */
    static const struct { int len, dlc; } fd[] = {{8, 8},   {12, 9},  {16, 10}, {20, 11},
                                                  {24, 12}, {32, 13}, {48, 14}, {64, 15}};
    for (size_t i = 0; i < sizeof fd / sizeof fd[0]; i++) {
        char line[256] = "(0.1) can0 123##0";
        for (int k = 0; k < fd[i].len; k++)
            snprintf(line + strlen(line), 3, "%02X", (unsigned)(k & 0xFF));
        ev = parse_ok(L, line);
        ASSERT_EQ(ev.can.len, fd[i].len);
        ASSERT_EQ(ev.can.dlc, fd[i].dlc);
        ASSERT_EQ(ev.can.data[fd[i].len - 1], fd[i].len - 1);
    }
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123##0112233445566778899"),
                 "CAN FD data length is not one of 0-8,12,16,20,24,32,48,64");
    {
        char line[512] = "(0.1) can0 123##0";
        for (int k = 0; k < 65; k++)
            strcat(line, "AB");
        ASSERT_STREQ(parse_bad(L, line), "data longer than 64 bytes for CAN FD");
    }
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123##"), "missing CAN FD flags");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123##G11"), "bad CAN FD flags 'G'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123##01122334455667788_E"),
                 "DLC suffix is only for classic CAN");

    /* Remote requests: no payload, the requested length in dlc. */
    ev = parse_ok(L, "(0.1) can0 123#R");
    ASSERT_EQ(ev.can.rtr, 1);
    ASSERT_EQ(ev.can.len, 0);
    ASSERT_EQ(ev.can.dlc, 0);
    ev = parse_ok(L, "(0.1) can0 12345678#R5");
    ASSERT_EQ(ev.can.rtr, 1);
    ASSERT_EQ(ev.can.ext, 1);
    ASSERT_EQ(ev.can.dlc, 5);
    ASSERT_EQ(ev.can.len, 0);
    ASSERT_EQ(parse_ok(L, "(0.1) can0 123#r2").can.dlc, 2);
    ev = parse_ok(L, "(0.1) can0 123#R8_E");
    ASSERT_EQ(ev.can.dlc, 14);
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#R9"), "bad RTR length '9'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#R12"), "bad RTR length '12'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#R_E"), "DLC suffix needs 8 data bytes");

    /* len8_dlc: 8 bytes with a raw DLC of 9..F. */
    ev = parse_ok(L, "(0.1) can0 123#1122334455667788_E");
    ASSERT_FRAME(ev, 0x123, 0, "1122334455667788");
    ASSERT_EQ(ev.can.dlc, 14);
    ASSERT_EQ(ev.can.len, 8);
    ASSERT_EQ(parse_ok(L, "(0.1) can0 123#1122334455667788_9").can.dlc, 9);
    ASSERT_EQ(parse_ok(L, "(0.1) can0 123#1122334455667788_f").can.dlc, 15);
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#11_E"), "DLC suffix needs 8 data bytes");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#1122334455667788_8"), "bad DLC suffix '_8'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#1122334455667788_"), "bad DLC suffix '_'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#1122334455667788_EE"), "bad DLC suffix '_EE'");
}

static void test_log_errors(void)
{
    const vsoc_format_t L = VSOC_FMT_CANDUMP_LOG;
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 XYZ#11"), "bad CAN ID 'XYZ'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 #11"), "bad CAN ID ''");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123456789#11"), "bad CAN ID '123456789'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 20000080#0000000000000000"), "bad CAN ID '20000080'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 12G#11"), "bad CAN ID '12G'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123"), "missing '#'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123 T"), "missing '#'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 xyz"), "bad CAN ID 'xyz'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#112"), "odd number of hex digits in data");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#1.122"), "odd number of hex digits in data");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#1G"), "bad hex digit in data '1G'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#G1"), "bad hex digit in data 'G1'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#112233445566778899"),
                 "data longer than 8 bytes for classic CAN");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#11 X"), "unexpected text after frame 'X'");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 123#11 T R"), "unexpected text after frame 'R'");
    ASSERT_STREQ(parse_bad(L, "(abc) can0 123#11"), "bad timestamp '(abc)'");
    ASSERT_STREQ(parse_bad(L, "(1.) can0 123#11"), "bad timestamp '(1.)'");
    ASSERT_STREQ(parse_bad(L, "(.5) can0 123#11"), "bad timestamp '(.5)'");
    ASSERT_STREQ(parse_bad(L, "(12 can0 123#11"), "bad timestamp '(12'");
    ASSERT_STREQ(parse_bad(L, "(1234567890123.0) can0 123#11"),
                 "bad timestamp '(1234567890123.0)'");
    ASSERT_STREQ(parse_bad(L, "(0.1)can0 123#11"), "missing space after timestamp");
    ASSERT_STREQ(parse_bad(L, "can0 123#11"), "missing '(timestamp)'");
    ASSERT_STREQ(parse_bad(L, ""), "missing '(timestamp)'");
    ASSERT_STREQ(parse_bad(L, "(0.1)"), "missing interface");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0"), "missing CAN frame");
    ASSERT_STREQ(parse_bad(L, "(0.1) can0   "), "missing CAN frame");

    /* A long token is shortened in the reason and never copied whole. */
    const char *r = parse_bad(L, "(0.1) can0 0123456789ABCDEF0123456789ABCDEF0123456789#11");
    ASSERT(strlen(r) < 64);
    ASSERT(strstr(r, "...") != NULL);
    /* Bytes that are not printable are replaced. */
    ASSERT_STREQ(parse_bad(L, "(0.1) can0 1\x01\xff#11"), "bad CAN ID '1?" "?'");
}

static void test_timestamps(void)
{
    const vsoc_format_t L = VSOC_FMT_CANDUMP_LOG;
    ASSERT_EQ(parse_ok(L, "(1436509052.2) can0 1#").ts_us, 1436509052200000LL);
    ASSERT_EQ(parse_ok(L, "(1436509052.1234567) can0 1#").ts_us, 1436509052123456LL);
    ASSERT_EQ(parse_ok(L, "(0.000001) can0 1#").ts_us, 1);
    ASSERT_EQ(parse_ok(L, "(000.000000) can0 1#").ts_us, 0);
    ASSERT_EQ(parse_ok(L, "(029.997509) can0 1#").ts_us, 29997509);
    ASSERT_EQ(parse_ok(L, "(1436509052) can0 1#").ts_us, 1436509052000000LL);
    ASSERT_EQ(parse_ok(L, "(999999999999.999999) can0 1#").ts_us, 999999999999999999LL);
    /* candump -tA: a date, taken as UTC. 2015-07-10 08:17:32 UTC is 1436516252. */
    ASSERT_EQ(parse_ok(L, "(2015-07-10 08:17:32.249713) can0 1#").ts_us, 1436516252249713LL);
    ASSERT_EQ(parse_ok(L, "(2024-02-29 23:59:59) can0 1#").ts_us, 1709251199000000LL);
    ASSERT_EQ(parse_ok(L, "(1970-01-01 00:00:00.000001) can0 1#").ts_us, 1);
    ASSERT_STREQ(parse_bad(L, "(1969-12-31 23:59:59) can0 1#"), "bad timestamp '(1969-12-31'");
    ASSERT_STREQ(parse_bad(L, "(2023-02-29 00:00:00) can0 1#"),
                 "bad timestamp '(2023-02-29'");
    ASSERT_STREQ(parse_bad(L, "(2015-13-10 08:17:32) can0 1#"),
                 "bad timestamp '(2015-13-10'");
    ASSERT_STREQ(parse_bad(L, "(2015-07-10 24:00:00) can0 1#"),
                 "bad timestamp '(2015-07-10'");
    ASSERT_STREQ(parse_bad(L, "(2015-07-10T08:17:32Z) can0 1#"),
                 "bad timestamp '(2015-07-10T08:17:32Z)'");
}

/* ---------------------------------------------------------------------------------------- */
/* vsoc_parse_line: candump -ta and friends */

static void test_spaced(void)
{
    const vsoc_format_t S = VSOC_FMT_CANDUMP_SPACED;
    /* The example from SOURCES.md and reader.h. */
    vsoc_event_t ev = parse_ok(S, " (000.005001)  can0  18FEDF00   [8]  8A A0 28 7D 7D FF FF F5");
    ASSERT_FRAME(ev, 0x18FEDF00, 1, "8AA0287D7DFFFFF5");
    ASSERT_EQ(ev.ts_us, 5001);
    ASSERT_STRN_EQ(ev.bus.p, ev.bus.n, "can0");
    ASSERT_EQ(ev.can.dlc, 8);

    /* No time (candump without -t), 11-bit with and without indent. */
    ev = parse_ok(S, "  can0  123   [3]  11 22 33");
    ASSERT_FRAME(ev, 0x123, 0, "112233");
    ASSERT_EQ(ev.ts_us, 0);
    ASSERT_FRAME(parse_ok(S, "  can0       123   [3]  11 22 33"), 0x123, 0, "112233");
    ASSERT_FRAME(parse_ok(S, "can0 123 [0]"), 0x123, 0, "");
    ASSERT_FRAME(parse_ok(S, "\tcan0\t123\t[2]\t11\t22\t"), 0x123, 0, "1122");
    ASSERT_FRAME(parse_ok(S, " (1436509052.249713)  can0  123   [2]  11 22"), 0x123, 0, "1122");
    ASSERT_EQ(parse_ok(S, " (1436509052.249713)  can0  123   [2]  11 22").ts_us,
              1436509052249713LL);

    /* candump -tA. */
    ev = parse_ok(S, " (2015-07-10 08:17:32.249713)  can0  123   [2]  11 22");
    ASSERT_EQ(ev.ts_us, 1436516252249713LL);
    ASSERT_FRAME(ev, 0x123, 0, "1122");

    /* CAN FD: two-digit length. */
    ev = parse_ok(S, "  can0  123  [08]  11 22 33 44 55 66 77 88");
    ASSERT_EQ(ev.can.fd, 1);
    ASSERT_EQ(ev.can.dlc, 8);
    ev = parse_ok(S, "  can0  12345678  [12]  00 11 22 33 44 55 66 77 88 99 AA BB");
    ASSERT_FRAME(ev, 0x12345678, 1, "00112233445566778899AABB");
    ASSERT_EQ(ev.can.fd, 1);
    ASSERT_EQ(ev.can.dlc, 9);
    ASSERT_EQ(parse_ok(S, "  can0  123  [00]").can.fd, 1);

    /* Remote request. */
    ev = parse_ok(S, "  can0  123   [2]  remote request");
    ASSERT_EQ(ev.can.rtr, 1);
    ASSERT_EQ(ev.can.dlc, 2);
    ASSERT_EQ(ev.can.len, 0);
    ASSERT_EQ(parse_ok(S, " (0.5)  can0  12345678   [0]  remote request").can.rtr, 1);

    /* Raw DLC {X} of candump -8. */
    ev = parse_ok(S, "  can0  321   {B}  11 22 33 44 55 66 77 88");
    ASSERT_FRAME(ev, 0x321, 0, "1122334455667788");
    ASSERT_EQ(ev.can.dlc, 11);
    ASSERT_EQ(parse_ok(S, "  can0  321   {3}  11 22 33").can.dlc, 3);

    /* candump -x direction and flags; candump -a ASCII column. */
    ev = parse_ok(S, " (0.1)  can0  RX B -  123  [03]  11 22 33");
    ASSERT_EQ(ev.can.fd, 1);
    ASSERT_EQ(ev.can.fd_flags, 1);
    ASSERT_FRAME(ev, 0x123, 0, "112233");
    ASSERT_EQ(parse_ok(S, "  can0  TX - -  123   [1]  11").can.fd_flags, 0);
    ASSERT_EQ(parse_ok(S, "  can0  RX B E  123  [01]  11").can.fd_flags, 3);
    ASSERT_FRAME(parse_ok(S, " (0.1)  can0  14B0DC51   [8]  4A 94 E8 2A EC 58 55 62   'J..*.XUb'"),
                 0x14B0DC51, 1, "4A94E82AEC585562");
}

static void test_spaced_errors(void)
{
    const vsoc_format_t S = VSOC_FMT_CANDUMP_SPACED;
    ASSERT_STREQ(parse_bad(S, "  can0  123   [8]  11 22 33 44 55"),
                 "fewer data bytes than the length");
    ASSERT_STREQ(parse_bad(S, "  can0  123   [2]  11 22 33"), "more data bytes than the length");
    ASSERT_STREQ(parse_bad(S, "  can0  123   [2]  11 22 xyz"),
                 "unexpected text after data 'xyz'");
    ASSERT_STREQ(parse_bad(S, "  can0  123   [9]  11"), "length over 8 for classic CAN");
    ASSERT_STREQ(parse_bad(S, "  can0  123  [13]  11"), "bad CAN FD length '[13]'");
    ASSERT_STREQ(parse_bad(S, "  can0  123  11 22"), "bad length '11'");
    ASSERT_STREQ(parse_bad(S, "  can0  123"), "missing '[length]'");
    ASSERT_STREQ(parse_bad(S, "  can0  123   [2]  11 2G"), "bad data byte '2G'");
    ASSERT_STREQ(parse_bad(S, "  can0  123   [2]  11 223"), "bad data byte '223'");
    ASSERT_STREQ(parse_bad(S, "  can0  123   [2]  11,22"), "bad data byte '11,22'");
    ASSERT_STREQ(parse_bad(S, "  can0  XYZ   [2]  11 22"), "bad CAN ID 'XYZ'");
    ASSERT_STREQ(parse_bad(S, "  can0  123#11"), "bad CAN ID '123#11'");
    ASSERT_STREQ(parse_bad(S, "  can0  20000080   [8]  00 00 00 00 00 00 00 00   ERRORFRAME"),
                 "bad CAN ID '20000080'");
    ASSERT_STREQ(parse_bad(S, "  can0"), "missing CAN ID");
    ASSERT_STREQ(parse_bad(S, ""), "missing interface");
    ASSERT_STREQ(parse_bad(S, " (0.1)"), "missing interface");
    ASSERT_STREQ(parse_bad(S, " (x)  can0  123   [0]"), "bad timestamp '(x)'");
    ASSERT_STREQ(parse_bad(S, "  can0  123  [08]  remote request"), "CAN FD has no remote request");
    ASSERT_STREQ(parse_bad(S, "  can0  RX Q -  123   [1]  11"), "bad candump -x flag 'Q'");
}

/* ---------------------------------------------------------------------------------------- */
/* vsoc_parse_line: labelled and JSON Lines */

static void test_labelled(void)
{
    const vsoc_format_t B = VSOC_FMT_LABELLED;
    vsoc_event_t ev = parse_ok(B, "0 080#0017dc09161116bb");
    ASSERT_FRAME(ev, 0x080, 0, "0017DC09161116BB");
    ASSERT_EQ(ev.label, 0);
    ASSERT_EQ(ev.ts_us, 0);
    ASSERT_EQ(ev.bus.n, 0);
    ev = parse_ok(B, "1 018#7F58B702BA3C97F7\r");
    ASSERT_EQ(ev.label, 1);
    ASSERT_FRAME(ev, 0x018, 0, "7F58B702BA3C97F7");
    ASSERT_EQ(parse_ok(B, "-3 080#00").label, -3);
    ASSERT_EQ(parse_ok(B, "2147483647 080#00").label, 2147483647);
    /* A frame without data is written as a bare ID in these captures. */
    ev = parse_ok(B, "0 5a0");
    ASSERT_FRAME(ev, 0x5A0, 0, "");
    ASSERT_EQ(ev.can.dlc, 0);
    ASSERT_FRAME(parse_ok(B, "0 18FEF100#11 T"), 0x18FEF100, 1, "11");

    ASSERT_STREQ(parse_bad(B, "x 080#00"), "bad label 'x'");
    ASSERT_STREQ(parse_bad(B, "2147483648 080#00"), "bad label '2147483648'");
    ASSERT_STREQ(parse_bad(B, "1a 080#00"), "bad label '1a'");
    ASSERT_STREQ(parse_bad(B, "0"), "missing CAN frame");
    ASSERT_STREQ(parse_bad(B, "0 XYZ"), "bad CAN ID 'XYZ'");
    ASSERT_STREQ(parse_bad(B, "0 080#0"), "odd number of hex digits in data");
}

static void test_jsonl(void)
{
    const vsoc_format_t J = VSOC_FMT_JSONL;
    vsoc_event_t ev = parse_ok(J, "{\"vin\":\"WVW123\",\"ts\":1764064800.25,\"type\":\"ids.can.flood\","
                                  "\"bus\":\"can0\",\"score\":0.9}");
    ASSERT_EQ(ev.kind, VSOC_EVENT_IDS);
    ASSERT_STRN_EQ(ev.vin.p, ev.vin.n, "WVW123");
    ASSERT_STRN_EQ(ev.ids_type.p, ev.ids_type.n, "ids.can.flood");
    ASSERT_EQ(ev.ts_us, 1764064800250000LL);
    ASSERT(ev.doc != NULL);
    ASSERT(json_real_value(json_object_get(ev.doc, "score")) == 0.9);
    json_decref(ev.doc);

    ev = parse_ok(J, "{\"vin\":\"V\",\"ts\":1764064800,\"type\":\"t\"}");
    ASSERT_EQ(ev.ts_us, 1764064800000000LL);
    json_decref(ev.doc);
    ev = parse_ok(J, "{\"vin\":\"V\",\"ts\":1764064800.123456,\"type\":\"t\"}");
    ASSERT_EQ(ev.ts_us, 1764064800123456LL);
    json_decref(ev.doc);

    /* RFC 3339 strings: 2026-11-25T10:00:00Z is 1795600800. */
    ev = parse_ok(J, "{\"vin\":\"V\",\"ts\":\"2026-11-25T10:00:00.250Z\",\"type\":\"t\"}");
    ASSERT_EQ(ev.ts_us, 1795600800250000LL);
    json_decref(ev.doc);
    ev = parse_ok(J, "{\"vin\":\"V\",\"ts\":\"2026-11-25T11:30:00+01:30\",\"type\":\"t\"}");
    ASSERT_EQ(ev.ts_us, 1795600800000000LL);
    json_decref(ev.doc);
    ev = parse_ok(J, "{\"vin\":\"V\",\"ts\":\"2026-11-25t05:00:00.0000009-05:00\",\"type\":\"t\"}");
    ASSERT_EQ(ev.ts_us, 1795600800000000LL);
    json_decref(ev.doc);
    ev = parse_ok(J, "  {\"type\":\"t\",\"ts\":\"2026-11-25 10:00:00z\",\"vin\":\"V\"}  \r");
    ASSERT_EQ(ev.ts_us, 1795600800000000LL);
    json_decref(ev.doc);

    ASSERT_STREQ(parse_bad(J, "{\"ts\":1,\"type\":\"t\"}"), "JSON: missing \"vin\"");
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"\",\"ts\":1,\"type\":\"t\"}"),
                 "JSON: \"vin\" must be a non-empty string");
    ASSERT_STREQ(parse_bad(J, "{\"vin\":7,\"ts\":1,\"type\":\"t\"}"),
                 "JSON: \"vin\" must be a non-empty string");
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"type\":\"t\"}"), "JSON: missing \"ts\"");
    const char *bad_ts = "JSON: \"ts\" must be epoch seconds or an RFC 3339 time";
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":\"yesterday\",\"type\":\"t\"}"), bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":-1,\"type\":\"t\"}"), bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":\"1969-12-31T23:59:59Z\",\"type\":\"t\"}"),
                 bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":\"1970-01-01T00:30:00+01:00\",\"type\":\"t\"}"),
                 bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":true,\"type\":\"t\"}"), bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":1e300,\"type\":\"t\"}"), bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":\"2026-11-25T10:00:00\",\"type\":\"t\"}"),
                 bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":\"2026-11-25T10:00:00Zx\",\"type\":\"t\"}"),
                 bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":\"2026-11-25T10:00:00+1:00\",\"type\":\"t\"}"),
                 bad_ts);
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":1}"), "JSON: missing \"type\"");
    ASSERT_STREQ(parse_bad(J, "{\"vin\":\"V\",\"ts\":1,\"type\":null}"),
                 "JSON: \"type\" must be a non-empty string");
    ASSERT_STREQ(parse_bad(J, "[1,2]"), "JSON: not an object");
    ASSERT(strncmp(parse_bad(J, "{\"vin\":"), "JSON: ", 6) == 0);
    ASSERT(strncmp(parse_bad(J, "{} x"), "JSON: ", 6) == 0);
    ASSERT(strncmp(parse_bad(J, ""), "JSON: ", 6) == 0);
    /* Two "vin" members could show two consumers two vehicles. */
    const char *dup = parse_bad(J, "{\"vin\":\"A\",\"vin\":\"B\",\"ts\":1,\"type\":\"t\"}");
    ASSERT(strncmp(dup, "JSON: ", 6) == 0 && strstr(dup, "duplicate") != NULL);
}

static void test_detection(void)
{
    static const struct {
        const char *line;
        vsoc_format_t fmt;
    } cases[] = {
        {"(0.000177) can0 300#0003009000461501", VSOC_FMT_CANDUMP_LOG},
        {" (000.005001)  can0  18FEDF00   [8]  8A A0 28 7D 7D FF FF F5", VSOC_FMT_CANDUMP_SPACED},
        {"  can0  123   [3]  11 22 33", VSOC_FMT_CANDUMP_SPACED},
        {" (2015-07-10 08:17:32.249713)  can0  123   [0]", VSOC_FMT_CANDUMP_SPACED},
        {"0 080#0017dc09161116bb", VSOC_FMT_LABELLED},
        {"0 5a0\r", VSOC_FMT_LABELLED},
        {"{\"vin\":\"V\",\"ts\":1,\"type\":\"t\"}", VSOC_FMT_JSONL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vsoc_format_t det = VSOC_FMT_UNKNOWN;
        vsoc_event_t ev = parse_ok_(__FILE__, __LINE__, VSOC_FMT_UNKNOWN, cases[i].line, &det);
        ASSERT_STREQ(vsoc_format_name(det), vsoc_format_name(cases[i].fmt));
        if (ev.doc)
            json_decref(ev.doc);
    }
    /* A line in no format gets the reason of the format it looks like. */
    ASSERT_STREQ(parse_bad(VSOC_FMT_UNKNOWN, "(0.1) can0 XYZ#11"), "bad CAN ID 'XYZ'");
    ASSERT_STREQ(parse_bad(VSOC_FMT_UNKNOWN, " (0.1)  can0  123   [2]  11"),
                 "fewer data bytes than the length");
    ASSERT_STREQ(parse_bad(VSOC_FMT_UNKNOWN, "0 080#0"), "odd number of hex digits in data");
    ASSERT_STREQ(parse_bad(VSOC_FMT_UNKNOWN, "{\"vin\":\"V\"}"), "JSON: missing \"ts\"");
    ASSERT_STREQ(parse_bad(VSOC_FMT_UNKNOWN, "can0 123#11"), "missing '(timestamp)'");
    ASSERT_STREQ(parse_bad(VSOC_FMT_UNKNOWN, "hello"), "missing CAN ID");
    vsoc_format_t det = VSOC_FMT_JSONL;
    vsoc_event_t ev;
    const char *reason;
    vsoc_event_clear(&ev);
    ASSERT_EQ(vsoc_parse_line(VSOC_FMT_UNKNOWN, "nothing", 7, &ev, &det, &reason), VSOC_EPARSE);
    ASSERT_EQ(det, VSOC_FMT_UNKNOWN);
    /* A NULL reason pointer is allowed. */
    ASSERT_EQ(vsoc_parse_line(VSOC_FMT_UNKNOWN, "nothing", 7, &ev, NULL, NULL), VSOC_EPARSE);
    /* Lines are not NUL-terminated: the length is what counts. */
    ev = parse_ok(VSOC_FMT_CANDUMP_LOG, "(0.1) can0 123#1122");
    vsoc_event_clear(&ev);
    ASSERT_EQ(vsoc_parse_line(VSOC_FMT_CANDUMP_LOG, "(0.1) can0 123#1122XXXX", 19, &ev, NULL,
                              &reason),
              0);
    ASSERT_STREQ(hexdata(&ev), "1122");
}

/* ---------------------------------------------------------------------------------------- */
/* The buffered reader */

static void test_reader_log_file(void)
{
    bad_log_t bad = {0};
    const char *path = write_text("bench-a.candump.log",
                                  "# a comment\n"
                                  "\n"
                                  "   \n"
                                  "(1436509052.249713) can0 123#DEADBEEF\n"
                                  "(1436509052.250000) can1 12345678#R\n"
                                  "(1436509052.250100) can0 123#XYZ\n"
                                  "  # indented comment\n"
                                  "  can0  123   [1]  11\n"
                                  "(1436509052.250200) can0 7E8#037F273500000000");
    vsoc_reader_t *r = open_ok(path, NULL, 0, &bad);
    vsoc_event_t ev;
    ASSERT_EQ(vsoc_reader_format(r), VSOC_FMT_UNKNOWN);

    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(vsoc_reader_format(r), VSOC_FMT_CANDUMP_LOG);
    ASSERT_FRAME(ev, 0x123, 0, "DEADBEEF");
    ASSERT_EQ(ev.ts_us, 1436509052249713LL);
    ASSERT_EQ(ev.lineno, 4);
    ASSERT_STRN_EQ(ev.vin.p, ev.vin.n, "bench-a.candump");
    ASSERT_STRN_EQ(ev.source.p, ev.source.n, path);
    ASSERT_STRN_EQ(ev.line.p, ev.line.n, "(1436509052.249713) can0 123#DEADBEEF");
    ASSERT_STRN_EQ(ev.bus.p, ev.bus.n, "can0");
    ASSERT_EQ(ev.label, -1);

    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(ev.lineno, 5);
    ASSERT_EQ(ev.can.rtr, 1);
    ASSERT_STRN_EQ(ev.bus.p, ev.bus.n, "can1");

    /* Line 6 is malformed; line 8 is in another format than the one detected. */
    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(ev.lineno, 9);
    ASSERT_FRAME(ev, 0x7E8, 0, "037F273500000000");
    ASSERT_EQ(vsoc_reader_next(r, &ev), 0);
    ASSERT_EQ(vsoc_reader_next(r, &ev), 0);

    ASSERT_EQ(bad.n, 2);
    ASSERT_STREQ(bad.file, path);
    ASSERT_EQ(bad.lineno[0], 6);
    ASSERT_STREQ(bad.reason[0], "bad hex digit in data 'XY'");
    ASSERT_EQ(bad.lineno[1], 8);
    ASSERT_STREQ(bad.reason[1], "missing '(timestamp)'");
    ASSERT_EQ(vsoc_reader_skipped(r), 2);
    ASSERT_EQ(vsoc_reader_lines(r), 9);
    struct stat st;
    ASSERT(stat(path, &st) == 0);
    ASSERT_EQ(vsoc_reader_bytes(r), st.st_size);
    ASSERT_STREQ(vsoc_reader_errstr(r), "");
    vsoc_reader_close(r);
}

static void test_reader_detection_and_crlf(void)
{
    bad_log_t bad = {0};
    /* Lines before the first parsable one are malformed in every format. */
    const char *path = write_text("crlf.txt", "garbage line\r\n"
                                              "\r\n"
                                              "0 080#0017dc09161116bb\r\n"
                                              "1 018#7F58B702BA3C97F7\r\n"
                                              "(0.1) can0 123#11\r\n"
                                              "0 5a0\r\n"
                                              "1 015#97938E8D27331922\r");
    vsoc_reader_t *r = open_ok(path, "VIN0000000000001", 0, &bad);
    vsoc_event_t ev;
    int64_t want_ts[] = {0, 1000, 2000, 3000};
    int want_label[] = {0, 1, 0, 1};
    uint64_t want_line[] = {3, 4, 6, 7};
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
        ASSERT_EQ(ev.ts_us, want_ts[i]);
        ASSERT_EQ(ev.label, want_label[i]);
        ASSERT_EQ(ev.lineno, want_line[i]);
        ASSERT_STRN_EQ(ev.vin.p, ev.vin.n, "VIN0000000000001");
        ASSERT(ev.line.n > 0 && ev.line.p[ev.line.n - 1] != '\r');
        ASSERT_EQ(ev.bus.n, 0);
    }
    ASSERT_FRAME(ev, 0x015, 0, "97938E8D27331922");
    ASSERT_EQ(vsoc_reader_next(r, &ev), 0);
    ASSERT_EQ(vsoc_reader_format(r), VSOC_FMT_LABELLED);
    ASSERT_EQ(bad.n, 2);
    ASSERT_EQ(bad.lineno[0], 1);
    ASSERT_EQ(bad.lineno[1], 5);
    ASSERT_STREQ(bad.reason[1], "bad label '(0.1)'");
    vsoc_reader_close(r);

    /* A custom gap for untimed lines; spaced lines without time are untimed too. */
    path = write_text("untimed", "  can0  123   [1]  11\n  can0  123   [1]  22\n"
                                 "  can0  123   [1]  33\n");
    r = open_ok(path, NULL, 250, &bad);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
        ASSERT_EQ(ev.ts_us, i * 250);
        ASSERT_EQ(ev.can.data[0], 0x11 * (i + 1));
    }
    ASSERT_STRN_EQ(ev.vin.p, ev.vin.n, "untimed");
    vsoc_reader_close(r);

    /* An empty file and a file of comments: no events, no format. */
    path = write_text("empty.log", "");
    r = open_ok(path, NULL, 0, &bad);
    ASSERT_EQ(vsoc_reader_next(r, &ev), 0);
    ASSERT_EQ(vsoc_reader_lines(r), 0);
    vsoc_reader_close(r);
    path = write_text(".hidden", "# only\n#comments\n\n");
    r = open_ok(path, NULL, 0, &bad);
    ASSERT_EQ(vsoc_reader_next(r, &ev), 0);
    ASSERT_EQ(vsoc_reader_lines(r), 3);
    ASSERT_EQ(vsoc_reader_format(r), VSOC_FMT_UNKNOWN);
    vsoc_reader_close(r);
}

static void test_reader_jsonl(void)
{
    bad_log_t bad = {0};
    const char *path = write_text("ids.jsonl",
                                  "{\"vin\":\"WVWZZZ1\",\"ts\":1764064800.5,\"type\":\"ids.dos\"}\n"
                                  "{\"vin\":\"WVWZZZ2\",\"ts\":\"2026-11-25T10:00:00Z\"}\n"
                                  "{\"vin\":\"WVWZZZ2\",\"ts\":\"2026-11-25T10:00:00Z\",\"type\":\"x\","
                                  "\"nested\":{\"a\":[1,2,3]}}\n"
                                  "(0.1) can0 123#11\n"
                                  "{oops\n");
    vsoc_reader_t *r = open_ok(path, "ignored-for-json", 0, &bad);
    vsoc_event_t ev;
    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(ev.kind, VSOC_EVENT_IDS);
    ASSERT_STRN_EQ(ev.vin.p, ev.vin.n, "WVWZZZ1");
    ASSERT_STRN_EQ(ev.ids_type.p, ev.ids_type.n, "ids.dos");
    ASSERT_EQ(ev.ts_us, 1764064800500000LL);
    ASSERT_EQ(ev.lineno, 1);
    ASSERT_STRN_EQ(ev.source.p, ev.source.n, path);
    ASSERT(json_is_object((json_t *)ev.doc));
    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(ev.lineno, 3);
    ASSERT_EQ(ev.ts_us, 1795600800000000LL);
    ASSERT_EQ(json_array_size(json_object_get(json_object_get(ev.doc, "nested"), "a")), 3);
    ASSERT_EQ(vsoc_reader_next(r, &ev), 0);
    ASSERT_EQ(vsoc_reader_format(r), VSOC_FMT_JSONL);
    ASSERT_EQ(bad.n, 3);
    ASSERT_STREQ(bad.reason[0], "JSON: missing \"type\"");
    ASSERT_EQ(bad.lineno[1], 4);
    ASSERT(strncmp(bad.reason[1], "JSON: ", 6) == 0);
    ASSERT(strncmp(bad.reason[2], "JSON: ", 6) == 0);
    /* Closing with a document still held frees it (checked under ASan). */
    vsoc_reader_close(r);

    r = open_ok(path, NULL, 0, &bad);
    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    vsoc_reader_close(r);
}

/* Line i of the generated capture: a varying interface, ID and payload length so that lines
 * have many lengths and layouts and cross the 1 MiB buffer boundary at many offsets. */
static int gen_line(char *buf, size_t cap, int i)
{
    int len = i % 9, n;
    n = snprintf(buf, cap, "(%d.%06d) %s %03X#", 1000 + i / 1000, (i * 37) % 1000000,
                 (i % 3) ? "can0" : "vcan12", i % 0x800);
    for (int k = 0; k < len; k++)
        n += snprintf(buf + n, cap - (size_t)n, "%02X", (i + k) & 0xFF);
    return n;
}

static void test_reader_buffer_boundaries(void)
{
    const int lines = 60000; /* about 2 MiB */
    size_t cap = (size_t)lines * 64, n = 0;
    char *data = malloc(cap), line[128];
    ASSERT(data != NULL);
    for (int i = 0; i < lines; i++) {
        int k = gen_line(line, sizeof line, i);
        memcpy(data + n, line, (size_t)k);
        n += (size_t)k;
        if (i + 1 < lines) /* the last line has no newline */
            data[n++] = (i % 5 == 0) ? '\r' : '\n';
        if (i % 5 == 0 && i + 1 < lines)
            data[n++] = '\n';
    }
    ASSERT(n > (2u << 20) - (1u << 18));
    const char *path = write_file("big.log", data, n);
    free(data);

    bad_log_t bad = {0};
    vsoc_reader_t *r = open_ok(path, NULL, 0, &bad);
    vsoc_event_t ev;
    for (int i = 0; i < lines; i++) {
        ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
        int k = gen_line(line, sizeof line, i);
        if (ev.line.n != (size_t)k || memcmp(ev.line.p, line, (size_t)k) != 0)
            TEST_FAIL_("line %d: got \"%.*s\", want \"%s\"", i + 1, (int)ev.line.n, ev.line.p,
                       line);
        ASSERT_EQ(ev.lineno, i + 1);
        ASSERT_EQ(ev.can.id, i % 0x800);
        ASSERT_EQ(ev.can.len, i % 9);
        if (ev.can.len)
            ASSERT_EQ(ev.can.data[ev.can.len - 1], (i + ev.can.len - 1) & 0xFF);
        ASSERT_EQ(ev.ts_us, (int64_t)(1000 + i / 1000) * 1000000 + (i * 37) % 1000000);
        ASSERT_STRN_EQ(ev.bus.p, ev.bus.n, (i % 3) ? "can0" : "vcan12");
        same_as_parse_line(&ev, VSOC_FMT_CANDUMP_LOG);
    }
    ASSERT_EQ(vsoc_reader_next(r, &ev), 0);
    ASSERT_EQ(bad.n, 0);
    ASSERT_EQ(vsoc_reader_bytes(r), n);
    vsoc_reader_close(r);
}

static void test_reader_long_lines(void)
{
    const size_t mib = 1u << 20;
    size_t cap = 3 * mib + 1024, n = 0;
    char *data = malloc(cap);
    ASSERT(data != NULL);
    n += (size_t)sprintf(data + n, "(0.1) can0 123#11\n");
    /* A comment of 1 MiB - 1 bytes plus its newline exactly fills the buffer: it fits. */
    data[n++] = '#';
    memset(data + n, 'c', mib - 2);
    n += mib - 2;
    data[n++] = '\n';
    /* One byte more does not fit: malformed, skipped, and the next line is intact. */
    memset(data + n, 'A', mib);
    n += mib;
    data[n++] = '\n';
    n += (size_t)sprintf(data + n, "(0.2) can0 124#22\n");
    /* An overlong last line without a newline. */
    memset(data + n, 'B', mib + 10);
    n += mib + 10;
    const char *path = write_file("long.log", data, n);
    free(data);

    bad_log_t bad = {0};
    vsoc_reader_t *r = open_ok(path, NULL, 0, &bad);
    vsoc_event_t ev;
    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(ev.lineno, 1);
    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(ev.lineno, 4);
    ASSERT_FRAME(ev, 0x124, 0, "22");
    ASSERT_EQ(vsoc_reader_next(r, &ev), 0);
    ASSERT_EQ(bad.n, 2);
    ASSERT_EQ(bad.lineno[0], 3);
    ASSERT(strncmp(bad.reason[0], "line too long", 13) == 0);
    ASSERT_EQ(bad.lineno[1], 5);
    ASSERT_EQ(vsoc_reader_lines(r), 5);
    ASSERT_EQ(vsoc_reader_bytes(r), n);
    vsoc_reader_close(r);
}

/* Lines that share a layout with their neighbours but differ in a way only the full parser
 * sees: the reader must still agree with vsoc_parse_line on every one of them. */
static void test_reader_repeated_layouts(void)
{
    static const char *spaced =
        " (000.000000)  can0  18FCF200   [8]  E1 FF FF FF FF FF FF FF\n"
        " (000.005001)  can0  18FEDF00   [8]  8A A0 28 7D 7D FF FF F5\n"
        " (000.005580)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005581)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF Fg\n"
        " (000.005582)  can0  18E0FF0G   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005583)  ca 0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005584)  ca\t0  18E0FF00  [8]  00 FF FF FF FF FF FF FF\n"
        " (000.00558x)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (00a.005585)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " [000.005586]  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " [000.005586)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005586]  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000,005586)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005586)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005586)  can0  18E0FF00   (8)  00 FF FF FF FF FF FF FF\n"
        " (000.005586)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005586)  can0  18E0FF00   [8]  00:FF FF FF FF FF FF FF\n"
        " (000.005587)  can0  18E0FF00   [9]  00 FF FF FF FF FF FF FF\n"
        " (000.005588)  can0  18E0FF00   {8}  00 FF FF FF FF FF FF FF\n"
        " (000.005589)  can0  98E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005590)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005591)  can1  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (000.005592)  can0  0CF00400   [8]  F0 7D 7D 00 00 F0 FF FF\n"
        " (000.005593)  can0  000007E0   [8]  02 10 03 00 00 00 00 00\n"
        " (000.005594)  can0       7E0   [8]  02 10 03 00 00 00 00 00\n"
        " (000.005595)  can0       7E8   [8]  06 50 03 00 32 01 F4 AA\n"
        " (000.005596)  can0       7E8   [3]  06 50 03\n"
        " (000.005597)  can0  1234567   [3]  06 50 03\n"
        " (000.005598)  can0  1234567  [03]  06 50 03\n"
        " (000.005599)  can0  1234567   [2]  remote request\n"
        " (000.005600)  can0  1234567   [0]\n"
        " (1436509052.249713)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (1436509052.249714)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (1436509052.249715)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (143650905a.249716)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (2015-07-10 08:17:32.249713)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (2015-07-10 08:17:33.249713)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (2015-07-10 08:17:34.249713)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (2015-02-30 08:17:34.249713)  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        " (2015-07-10T08:17:32)  can0  123   [1]  11\n"
        " ,2015-07-10T08:17:32)  can0  123   [1]  11\n"
        " (2015-07-10T08:17:33)  can0  123   [1]  11\n"
        "  can0  18E0FF00   [8]  00 FF FF FF FF FF FF FF\n"
        "  can0  18E0FF00   [8]  01 FF FF FF FF FF FF FF\n"
        "  (an0  18E0FF00   [8]  01 FF FF FF FF FF FF FF\n"
        "  can0  18E0FF00   [8]  02 FF FF FF FF FF FF FF\n";
    static const char *log =
        "(1436509052.249713) can0 123#DEADBEEF\n"
        "(1436509052.249714) can0 124#DEADBEEF\n"
        "(1436509052.249715) can0 124#DEADBEEG\n"
        "(1436509052.249716) can0 124#DEAD.EEF\n"
        "(1436509052.249717) can0 124#DEADBE_F\n"
        "(1436509052.249718) can0 124##DEADBEF\n"
        "(1436509052.249719) can0 124#R\n"
        "(1436509052.249720) can0 124#DEADBEEF\n"
        "(1436509052.249721) can0 12#DEADBEEFF\n"
        "(1436509052.249722) can0 124#DEADBEEF T\n"
        "(1436509052.249723) can0 124#DEADBEEF R\n"
        "(1436509052.249724) can0 124#DEADBEEF  \n"
        "(1436509052.249725) can0 124#DEADBEEF\n"
        "(1436509052.249726) can0 124 DEADBEEF\n"
        "(1436509052.249727) can0 124#DEAD BEF\n"
        "(1436509052.249728) can 0124#DEADBEEF\n"
        "(1436509052.249729) can0 1A4#0102030405060708\n"
        "(1436509052.249730) can0 1A4#0102030405060708\n"
        "(1436509052.249731) can0 1A4#01020304050607\n"
        "(1436509052.249732) can0 1A4#010203040506\n"
        "(1436509052.249733) can0 1A4#0102030405\n"
        "(1436509052.249734) can0 1A4#01020304\n"
        "(1436509052.249735) can0 1A4#010203\n"
        "(1436509052.249736) can0 1A4#0102\n"
        "(1436509052.249737) can0 1A4#01\n"
        "(1436509052.249738) can0 1A4#\n";
    const struct {
        const char *name, *text;
        vsoc_format_t fmt;
    } files[] = {{"spaced.log", spaced, VSOC_FMT_CANDUMP_SPACED},
                 {"compact.log", log, VSOC_FMT_CANDUMP_LOG}};

    for (size_t f = 0; f < 2; f++) {
        const char *path = write_text(files[f].name, files[f].text);
        bad_log_t bad = {0};
        vsoc_reader_t *r = open_ok(path, NULL, 0, &bad);
        vsoc_event_t ev;
        uint64_t events = 0;
        while (vsoc_reader_next(r, &ev) == 1) {
            same_as_parse_line(&ev, files[f].fmt);
            events++;
        }
        ASSERT_EQ(vsoc_reader_format(r), files[f].fmt);
        /* Every malformed line must be malformed for vsoc_parse_line too. */
        ASSERT_EQ(events + (uint64_t)bad.n, vsoc_reader_lines(r));
        for (int i = 0; i < bad.n && i < 64; i++) {
            const char *text = files[f].text;
            for (uint64_t l = 1; l < bad.lineno[i]; l++)
                text = strchr(text, '\n') + 1;
            const char *end = strchr(text, '\n');
            char one[256];
            snprintf(one, sizeof one, "%.*s", (int)(end - text), text);
            const char *why = parse_bad(files[f].fmt, one);
            ASSERT_STREQ(bad.reason[i], why);
        }
        vsoc_reader_close(r);
    }
}

static void test_reader_open_errors(void)
{
    char err[256] = "";
    ASSERT(vsoc_reader_open(tmp_path("does-not-exist.log"), NULL, err, sizeof err) == NULL);
    ASSERT(strstr(err, "does-not-exist.log") != NULL);
    ASSERT(strstr(err, strerror(ENOENT)) != NULL);
    err[0] = '\0';
    ASSERT(vsoc_reader_open(tmpdir, NULL, err, sizeof err) == NULL);
    ASSERT(strstr(err, strerror(EISDIR)) != NULL);
    vsoc_reader_opts_t o = {NULL, -5, NULL, NULL};
    ASSERT(vsoc_reader_open(write_text("x.log", ""), &o, err, sizeof err) == NULL);
    ASSERT(strstr(err, "negative") != NULL);
    ASSERT(vsoc_reader_open(NULL, NULL, err, sizeof err) == NULL);
    ASSERT(vsoc_reader_open("", NULL, NULL, 0) == NULL);
    vsoc_reader_close(NULL);

    /* opts may be NULL; defaults apply. */
    write_text("noopts", "0 080#00\n0 081#00\n");
    vsoc_reader_t *r;
    r = vsoc_reader_open(tmp_path("noopts"), NULL, err, sizeof err);
    ASSERT(r != NULL);
    vsoc_event_t ev;
    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(vsoc_reader_next(r, &ev), 1);
    ASSERT_EQ(ev.ts_us, 1000);
    ASSERT_STRN_EQ(ev.vin.p, ev.vin.n, "noopts");
    vsoc_reader_close(r);
}

/* ---------------------------------------------------------------------------------------- */
/* The real captures of ../shared/data/can */

typedef struct capture {
    const char *file;
    vsoc_format_t fmt;
    uint64_t events;
} capture_t;

static void check_capture(const char *dir, const capture_t *c, uint64_t *first_id,
                          int64_t *last_ts, uint64_t *count_id0, size_t *distinct)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, c->file);
    bad_log_t bad = {0};
    vsoc_reader_t *r = open_ok(path, NULL, 0, &bad);
    vsoc_event_t ev;
    uint64_t n = 0;
    /* Distinct IDs: an open-addressing set of ID + 1 (0 marks a free slot). */
    static uint32_t seen[1u << 15];
    memset(seen, 0, sizeof seen);
    *distinct = 0;
    *count_id0 = 0;
    int rc;
    while ((rc = vsoc_reader_next(r, &ev)) == 1) {
        if (n == 0)
            *first_id = ev.can.id;
        *last_ts = ev.ts_us;
        if (ev.can.id == 0 && ev.can.ext)
            (*count_id0)++;
        uint32_t h = (ev.can.id * 2654435761u) >> 17;
        while (seen[h] && seen[h] != ev.can.id + 1)
            h = (h + 1) & ((1u << 15) - 1);
        if (!seen[h]) {
            ASSERT(*distinct < (1u << 14));
            seen[h] = ev.can.id + 1;
            (*distinct)++;
        }
        same_as_parse_line(&ev, c->fmt);
        n++;
    }
    ASSERT_EQ(rc, 0);
    if (bad.n)
        TEST_FAIL_("%s:%llu: %s", path, (unsigned long long)bad.lineno[0], bad.reason[0]);
    ASSERT_EQ(vsoc_reader_skipped(r), 0);
    ASSERT_STREQ(vsoc_format_name(vsoc_reader_format(r)), vsoc_format_name(c->fmt));
    if (c->events)
        ASSERT_EQ(n, c->events);
    ASSERT_EQ(n, vsoc_reader_lines(r));
    vsoc_reader_close(r);
}

static void test_shared_captures(void)
{
    char dir[1024];
    const char *env = getenv("VSOC_SHARED_DATA");
    if (env && *env)
        snprintf(dir, sizeof dir, "%s", env);
    else
        snprintf(dir, sizeof dir, "%s/../shared/data/can",
                 getenv("VSOC_SOURCE_DIR") ? getenv("VSOC_SOURCE_DIR") : ".");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("SKIP: ../shared/data/can not found (%s); set VSOC_SHARED_DATA\n", dir);
        return;
    }
    static const capture_t caps[] = {
        {"j1939/normal.log", VSOC_FMT_CANDUMP_SPACED, 19957},
        {"j1939/dos_1ms.log", VSOC_FMT_CANDUMP_SPACED, 0},
        {"j1939/fuzz_id_and_data.log", VSOC_FMT_CANDUMP_SPACED, 0},
        {"j1939/request_overload.log", VSOC_FMT_CANDUMP_SPACED, 0},
        {"opel/benign.log", VSOC_FMT_CANDUMP_LOG, 17935},
        {"labelled-dos/test_data.log", VSOC_FMT_LABELLED, 2000},
    };
    uint64_t first_id, id0;
    int64_t last_ts;
    size_t distinct;
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        check_capture(dir, &caps[i], &first_id, &last_ts, &id0, &distinct);
        switch (i) {
        case 0: /* normal.log: 30 s, a few dozen IDs */
            ASSERT_EQ(first_id, 0x18FCF200);
            ASSERT_EQ(last_ts, 29997509);
            ASSERT(distinct >= 24 && distinct < 100);
            break;
        case 1: /* the DoS flood of ID 00000000 */
            ASSERT_EQ(id0, 7237);
            break;
        case 2: /* random IDs */
            ASSERT_EQ(distinct, 7823);
            break;
        case 4:
            ASSERT_EQ(first_id, 0x110);
            ASSERT_EQ(last_ts, 30082310);
            break;
        case 5: /* untimed: the last of 2000 events at 1999 ms */
            ASSERT_EQ(first_id, 0x080);
            ASSERT_EQ(last_ts, 1999000);
            break;
        }
    }
    printf("shared captures: %zu files read without malformed lines\n",
           sizeof caps / sizeof caps[0]);
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            unlink(tmp_path(de->d_name));
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        TEST_FAIL_("mkdtemp: %s", strerror(errno));
    atexit(remove_tmpdir);

    test_format_names();
    test_log_basic();
    test_log_fd_rtr_dlc();
    test_log_errors();
    test_timestamps();
    test_spaced();
    test_spaced_errors();
    test_labelled();
    test_jsonl();
    test_detection();
    test_reader_log_file();
    test_reader_detection_and_crlf();
    test_reader_jsonl();
    test_reader_buffer_boundaries();
    test_reader_long_lines();
    test_reader_repeated_layouts();
    test_reader_open_errors();
    test_shared_captures();
    printf("test_reader: ok\n");
    return 0;
}
