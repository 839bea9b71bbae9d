/* cmd_baseline.c: vsoc baseline learn / show: learn a baseline of normal CAN traffic from
 * captures and write it as YAML; print a loaded baseline as a table (docs/vsoc-baseline.md).
 *
 * The YAML depends only on the captures, --name and the vsoc version, never on the wall
 * clock: learning the same captures twice gives byte-identical files. */
#include "baseline.h"
#include "score.h"
#include "cli.h"
#include "file/reader.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

int cmd_baseline(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: vsoc baseline learn [options] FILE...\n"
            "       vsoc baseline show BASELINE.yaml\n"
            "       vsoc baseline score --baseline BASELINE.yaml [--vin VIN] CAPTURE\n"
            "\n"
            "learn: learns the normal CAN traffic of a vehicle model from captures (candump\n"
            "compact or -ta spaced, labelled ID#DATA; '-' reads stdin) and writes it as\n"
            "YAML: per bus and CAN ID the frame count, the period statistics, the DLCs and\n"
            "per data byte its range, constant bits and counters. Periods never span two\n"
            "files. Malformed lines are reported and skipped; IDS events are ignored.\n"
            "show: prints a baseline as a table, one ID per line.\n"
            "score: scores every CAN frame of CAPTURE against the baseline and prints TSV\n"
            "with a '#' header: line, ts, id (hex), score (0..1), flag (1 when the score\n"
            "reaches 0.5), reasons (comma-separated).\n"
            "\n"
            "options (learn):\n"
            "  -o, --out FILE     write the baseline to FILE instead of stdout\n"
            "  --name NAME        the baseline's name (default: the VIN if given, else the\n"
            "                     first capture's file name without extension)\n"
            "  --vin VIN          vehicle for captures that carry none\n"
            "  --max-errors N     print the first N malformed lines in full (default 10)\n"
            "  -q, --quiet        no summary\n"
            "  -h, --help         this help\n"
            "\n"
            "exit status: 0 done, 1 a capture or baseline could not be read or written,\n"
            "2 usage errors.\n");
}


/* SHA-256 of a file as 64 hex digits into hex[65]. Returns 0, or -1 with errno's message
 * (or OpenSSL's failure) in err. */
static int file_sha256(const char *path, char hex[65], char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = -1;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "%s: cannot initialise SHA-256 (OpenSSL)", path);
        goto done;
    }
    static unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (EVP_DigestUpdate(md, buf, n) != 1) {
            snprintf(err, errlen, "%s: SHA-256 update failed (OpenSSL)", path);
            goto done;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    if (EVP_DigestFinal_ex(md, dig, &dn) != 1 || dn != 32) {
        snprintf(err, errlen, "%s: SHA-256 final failed (OpenSSL)", path);
        goto done;
    }
    for (unsigned i = 0; i < dn; i++)
        snprintf(hex + 2 * i, 3, "%02x", dig[i]);
    rc = 0;
done:
    EVP_MD_CTX_free(md);
    fclose(f);
    return rc;
}

/* The file's base name without its extension, into buf. */
static const char *stem(const char *path, char *buf, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (!strcmp(path, "-"))
        b = "stdin";
    snprintf(buf, n, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = '\0';
    return buf;
}

static int cmd_learn(int argc, char **argv)
{
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    size_t nfiles = 0;
    const char *vin = NULL, *outpath = NULL, *name = NULL;
    long max_errors = 10;
    int quiet = 0, rc = EXIT_USAGE;
    vsoc_baseline_learner_t *l = NULL;
    FILE *out = stdout;
    if (!files) {
        fprintf(stderr, "vsoc baseline: out of memory\n");
        goto done;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (cli_opt(a, "--vin", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc baseline", "--vin")))
                goto done;
            vin = val;
        } else if (cli_opt(a, "--name", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc baseline", "--name")))
                goto done;
            name = val;
        } else if (cli_opt(a, "--out", &val) || cli_opt(a, "-o", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc baseline", "--out")))
                goto done;
            outpath = val;
        } else if (cli_opt(a, "--max-errors", &val)) {
            if (!(val = cli_value(argc, argv, &i, val, "vsoc baseline", "--max-errors")))
                goto done;
            char *end;
            max_errors = strtol(val, &end, 10);
            if (*end || max_errors < 0) {
                fprintf(stderr, "vsoc baseline: --max-errors takes a number, not '%s'\n", val);
                goto done;
            }
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vsoc baseline: unknown option '%s' (see vsoc baseline --help)\n",
                    a);
            goto done;
        } else {
            files[nfiles++] = a;
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "vsoc baseline: no capture given (see vsoc baseline --help)\n");
        goto done;
    }
    char namebuf[256];
    if (!name)
        name = vin ? vin : stem(files[0], namebuf, sizeof namebuf);

    rc = 1;
    l = vsoc_baseline_learner_new();
    if (!l) {
        fprintf(stderr, "vsoc baseline: out of memory\n");
        goto done;
    }
    cli_bad_t lc = {0, max_errors};
    vsoc_reader_opts_t ro = {.vin = vin, .on_bad = cli_on_bad, .on_bad_ctx = &lc};
    char err[512];
    size_t opened = 0;
    uint64_t oom = 0;
    int read_err = 0;
    for (size_t f = 0; f < nfiles; f++) {
        char hex[65] = "";
        /* Hash first: the digest names the bytes the baseline was learned from. stdin
         * cannot be read twice, so it has no digest. */
        if (strcmp(files[f], "-") && file_sha256(files[f], hex, err, sizeof err) != 0) {
            fprintf(stderr, "vsoc baseline: %s\n", err);
            read_err = 1;
            continue;
        }
        vsoc_reader_t *r = vsoc_reader_open(files[f], &ro, err, sizeof err);
        if (!r) {
            fprintf(stderr, "vsoc baseline: %s\n", err);
            read_err = 1;
            continue;
        }
        if (vsoc_baseline_learner_file_begin(l, files[f], hex) != 0) {
            fprintf(stderr, "vsoc baseline: out of memory\n");
            vsoc_reader_close(r);
            goto done;
        }
        opened++;
        vsoc_event_t ev;
        int got;
        while ((got = vsoc_reader_next(r, &ev)) == 1)
            if (vsoc_baseline_learner_add(l, &ev) == VSOC_ENOMEM)
                oom++;
        if (got < 0) {
            fprintf(stderr, "vsoc baseline: %s: %s\n", files[f], vsoc_reader_errstr(r));
            read_err = 1;
        }
        vsoc_reader_close(r);
    }
    cli_bad_summary(&lc);
    if (oom)
        fprintf(stderr, "vsoc baseline: warning: %llu frames not learned (out of memory)\n",
                (unsigned long long)oom);
    if (opened == 0) {
        fprintf(stderr, "vsoc baseline: no capture could be read: nothing written\n");
        goto done;
    }
    if (outpath && strcmp(outpath, "-")) {
        out = fopen(outpath, "w");
        if (!out) {
            fprintf(stderr, "vsoc baseline: cannot write %s: %s\n", outpath, strerror(errno));
            out = stdout;
            goto done;
        }
    }
    int wrc = vsoc_baseline_write_yaml(l, out, name, "vsoc " VSOC_VERSION);
    if (out != stdout && fclose(out) != 0 && wrc == 0)
        wrc = VSOC_EIO;
    out = stdout;
    if (wrc != 0) {
        fprintf(stderr, "vsoc baseline: writing %s: %s\n", outpath ? outpath : "stdout",
                vsoc_strerror(wrc));
        goto done;
    }
    if (!quiet)
        fprintf(stderr,
                "baseline: %zu file%s, %llu frames, %zu IDs, %.3f s, %llu skipped as "
                "malformed\n",
                opened, opened == 1 ? "" : "s",
                (unsigned long long)vsoc_baseline_learner_frames(l),
                vsoc_baseline_learner_ids(l),
                (double)vsoc_baseline_learner_duration_us(l) / 1e6,
                (unsigned long long)lc.lines);
    rc = read_err ? 1 : 0;
done:
    if (out != stdout)
        fclose(out);
    vsoc_baseline_learner_free(l);
    free(files);
    return rc;
}

static int cmd_show(int argc, char **argv)
{
    if (argc != 3 || argv[2][0] == '-') {
        if (argc == 3 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "vsoc baseline show: takes one baseline file (see --help)\n");
        return EXIT_USAGE;
    }
    char err[512];
    vsoc_baseline_t *b = vsoc_baseline_load(argv[2], err, sizeof err);
    if (!b) {
        fprintf(stderr, "vsoc baseline: %s\n", err);
        return 1;
    }
    printf("%s: %zu IDs, %llu frames, %.3f s from %zu source%s (%s)\n", vsoc_baseline_name(b),
           vsoc_baseline_count(b), (unsigned long long)vsoc_baseline_frames(b),
           vsoc_baseline_duration_s(b), vsoc_baseline_sources(b),
           vsoc_baseline_sources(b) == 1 ? "" : "s", vsoc_baseline_tool(b));
    printf("%-8s %-10s %8s %10s %10s %10s %-8s %s\n", "bus", "id", "frames", "p50_ms", "p1_ms",
           "p99_ms", "dlc", "counters");
    for (size_t i = 0; i < vsoc_baseline_count(b); i++) {
        const vsoc_baseline_id_t *e = vsoc_baseline_at(b, i);
        char id[16], dlc[48] = "", ctr[64] = "";
        snprintf(id, sizeof id, "%0*X%s", e->ext ? 8 : 3, (unsigned)e->id, e->ext ? "" : "   ");
        size_t n = 0;
        for (int d = 0; d < 16; d++)
            if (e->dlc_mask & (1u << d))
                n += (size_t)snprintf(dlc + n, sizeof dlc - n, "%s%d", n ? "," : "", d);
        n = 0;
        for (size_t k = 0; k < e->nbytes && n < sizeof ctr; k++)
            if (e->bytes[k].counter)
                n += (size_t)snprintf(ctr + n, sizeof ctr - n, "%sB%zu:%s", n ? " " : "", k,
                                      vsoc_baseline_counter_name(e->bytes[k].counter));
        printf("%-8s %-10s %8llu %10.3f %10.3f %10.3f %-8s %s\n", e->bus[0] ? e->bus : "-", id,
               (unsigned long long)e->frames, e->period.p50, e->period.p1, e->period.p99, dlc,
               ctr[0] ? ctr : "-");
    }
    vsoc_baseline_free(b);
    return 0;
}

static int cmd_score(int argc, char **argv)
{
    const char *bpath = NULL, *vin = NULL, *capture = NULL;
    for (int i = 2; i < argc; i++) {
        const char *val = NULL;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (cli_opt(argv[i], "--baseline", &val) || cli_opt(argv[i], "--vin", &val)) {
            int is_b = argv[i][2] == 'b';
            if (!val && i + 1 >= argc) {
                fprintf(stderr, "vsoc baseline score: %s needs a value\n", argv[i]);
                return EXIT_USAGE;
            }
            if (!val)
                val = argv[++i];
            if (is_b)
                bpath = val;
            else
                vin = val;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "vsoc baseline score: unknown option '%s'\n", argv[i]);
            return EXIT_USAGE;
        } else if (capture) {
            fprintf(stderr, "vsoc baseline score: one capture at a time\n");
            return EXIT_USAGE;
        } else {
            capture = argv[i];
        }
    }
    if (!bpath || !capture) {
        fprintf(stderr, "vsoc baseline score: needs --baseline FILE and a capture (see --help)\n");
        return EXIT_USAGE;
    }
    char err[512];
    vsoc_baseline_t *b = vsoc_baseline_load(bpath, err, sizeof err);
    if (!b) {
        fprintf(stderr, "vsoc baseline: %s\n", err);
        return 1;
    }
    vsoc_scorer_t *sc = vsoc_scorer_new(b);
    void *state = sc ? malloc(vsoc_scorer_state_bytes(sc)) : NULL;
    cli_bad_t lc = {0, 10};
    vsoc_reader_opts_t ro = {.vin = vin, .on_bad = cli_on_bad, .on_bad_ctx = &lc};
    vsoc_reader_t *r = state ? vsoc_reader_open(capture, &ro, err, sizeof err) : NULL;
    int rc = 0;
    if (!r) {
        fprintf(stderr, "vsoc baseline score: %s\n", state ? err : "out of memory");
        rc = 1;
        goto done;
    }
    vsoc_scorer_state_init(sc, state);
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    printf("# line\tts\tid\tscore\tflag\treasons\n");
    vsoc_event_t ev;
    int got;
    char why[128];
    while ((got = vsoc_reader_next(r, &ev)) == 1) {
        if (ev.kind != VSOC_EVENT_CAN)
            continue;
        vsoc_scorer_score(sc, state, &ev);
        printf("%llu\t%lld.%06lld\t%0*X\t%.3f\t%d\t%s\n", (unsigned long long)ev.lineno,
               (long long)(ev.ts_us / 1000000), (long long)(ev.ts_us % 1000000),
               ev.can.ext ? 8 : 3, (unsigned)ev.can.id, ev.baseline_score,
               ev.baseline_score >= VSOC_SCORE_THRESHOLD,
               vsoc_score_reasons(ev.baseline_reasons, why, sizeof why));
    }
    if (got < 0) {
        fprintf(stderr, "vsoc baseline score: %s\n", vsoc_reader_errstr(r));
        rc = 1;
    }
    if (fflush(stdout) != 0)
        rc = 1;
done:
    vsoc_reader_close(r);
    free(state);
    vsoc_scorer_free(sc);
    vsoc_baseline_free(b);
    return rc;
}

int cmd_baseline(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "learn"))
        return cmd_learn(argc, argv);
    if (!strcmp(argv[1], "show"))
        return cmd_show(argc, argv);
    if (!strcmp(argv[1], "score"))
        return cmd_score(argc, argv);
    fprintf(stderr, "vsoc baseline: unknown subcommand '%s' (learn, show or score)\n", argv[1]);
    return EXIT_USAGE;
}
