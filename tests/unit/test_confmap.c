/* test_confmap.c: the table-driven configuration loader: every type, defaults, located
 * errors (unknown keys with suggestions, wrong types, ranges, duplicates, missing required
 * keys), path resolution, the table check, and the printouts (docs, sample, values) that
 * must read back as what they print. */
#include "confmap.h"
#include "test.h"
#include "vsoc.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct tconf {
    char *name;
    char *data_dir;
    char *extra_dir;
    vsoc_confmap_list_t tags;
    vsoc_confmap_list_t files;
    int count;
    int verbose;
    int64_t wait_us;
    int color;
    vsoc_confmap_map_t props;
    char *server;
    int port;
    char *ca;
    int untouched; /* not in the table: a load must leave it alone */
} tconf_t;

static const char *const colors[] = {"red", "green", "blue", NULL};

static const vsoc_confmap_entry_t table[] = {
    {.key = "name", .type = VSOC_CONFMAP_STRING, .def = "anon",
     .offset = offsetof(tconf_t, name), .desc = "A name | with a pipe."},
    {.key = "data_dir", .type = VSOC_CONFMAP_PATH, .def = "data",
     .offset = offsetof(tconf_t, data_dir), .desc = "A folder."},
    {.key = "extra_dir", .type = VSOC_CONFMAP_PATH, .def = "",
     .offset = offsetof(tconf_t, extra_dir), .desc = "Another folder; \"\" = none."},
    {.key = "tags", .type = VSOC_CONFMAP_LIST, .def = "[a, b]",
     .offset = offsetof(tconf_t, tags), .desc = "Tags."},
    {.key = "files", .type = VSOC_CONFMAP_PATH_LIST, .def = "[]",
     .offset = offsetof(tconf_t, files), .desc = "Files."},
    {.key = "count", .type = VSOC_CONFMAP_INT, .def = "3", .offset = offsetof(tconf_t, count),
     .min = 1, .max = 10, .desc = "How many."},
    {.key = "verbose", .type = VSOC_CONFMAP_BOOL, .def = "false",
     .offset = offsetof(tconf_t, verbose), .desc = "Talk more."},
    {.key = "wait", .type = VSOC_CONFMAP_DURATION, .def = "500ms",
     .offset = offsetof(tconf_t, wait_us), .min = 1000, .max = 3600000000LL, .desc = "Wait."},
    {.key = "color", .type = VSOC_CONFMAP_ENUM, .def = "green",
     .offset = offsetof(tconf_t, color), .names = colors, .desc = "Colour."},
    {.key = "props", .type = VSOC_CONFMAP_MAP, .def = "{}", .offset = offsetof(tconf_t, props),
     .desc = "Pass-through settings."},
    {.key = "net.server", .type = VSOC_CONFMAP_STRING, .def = NULL,
     .offset = offsetof(tconf_t, server), .example = "h:1", .desc = "Server."},
    {.key = "net.port", .type = VSOC_CONFMAP_INT, .def = "80",
     .offset = offsetof(tconf_t, port), .min = 1, .max = 65535, .desc = "Port."},
    {.key = "net.tls.ca", .type = VSOC_CONFMAP_PATH, .def = "", .offset = offsetof(tconf_t, ca),
     .desc = "CA file."},
};
#define N (sizeof table / sizeof table[0])

enum { K_NAME, K_DATA, K_EXTRA, K_TAGS, K_FILES, K_COUNT, K_VERBOSE, K_WAIT, K_COLOR, K_PROPS,
       K_SERVER, K_PORT, K_CA };

static vsoc_diags_t *d;
static tconf_t cfg;
static vsoc_confmap_loc_t locs[N];

static int load(const char *text, const char *base)
{
    vsoc_confmap_free(table, N, &cfg);
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    ASSERT(d);
    cfg.untouched = 77;
    int rc = vsoc_confmap_load_string(table, N, &cfg, "t.yaml", text, strlen(text), base, locs,
                                      d);
    ASSERT_EQ(cfg.untouched, 77);
    return rc;
}

/* Diagnostic i as "file:line:col: message". */
static const char *diag(size_t i)
{
    static char buf[1200];
    const vsoc_diag_t *g = vsoc_diags_get(d, i);
    if (!g)
        return "(none)";
    snprintf(buf, sizeof buf, "%s:%d:%d: %s", g->file, g->line, g->col, g->msg);
    return buf;
}

static void dump(void)
{
    vsoc_diags_print(d, stderr);
}

/* Loads text expecting exactly one error, which must read want. */
static void one_error(const char *text, const char *want)
{
    int rc = load(text, NULL);
    if (rc != VSOC_EPARSE || vsoc_diags_count(d) != 1)
        dump();
    ASSERT_EQ(rc, VSOC_EPARSE);
    ASSERT_EQ(vsoc_diags_count(d), 1);
    ASSERT_STREQ(diag(0), want);
}

static void clean(const char *text, const char *base)
{
    int rc = load(text, base);
    if (rc != 0)
        dump();
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(vsoc_diags_count(d), 0);
}

static void test_defaults(void)
{
    clean("net:\n  server: h:1\n", "/base");
    ASSERT_STREQ(cfg.name, "anon");
    ASSERT_STREQ(cfg.data_dir, "/base/data");
    ASSERT_STREQ(cfg.extra_dir, "");
    ASSERT_EQ(cfg.tags.n, 2);
    ASSERT_STREQ(cfg.tags.v[0], "a");
    ASSERT_STREQ(cfg.tags.v[1], "b");
    ASSERT_EQ(cfg.files.n, 0);
    ASSERT_EQ(cfg.count, 3);
    ASSERT_EQ(cfg.verbose, 0);
    ASSERT_EQ(cfg.wait_us, 500000);
    ASSERT_EQ(cfg.color, 1);
    ASSERT_EQ(cfg.props.n, 0);
    ASSERT_STREQ(cfg.server, "h:1");
    ASSERT_EQ(cfg.port, 80);
    ASSERT_STREQ(cfg.ca, "");
    /* Where each value stands: the file's, or line 0 for a default. */
    ASSERT_EQ(locs[K_SERVER].line, 2);
    ASSERT_EQ(locs[K_SERVER].col, 11);
    ASSERT_EQ(locs[K_NAME].line, 0);
    ASSERT_EQ(locs[K_NAME].bad, 0);
    ASSERT_EQ(vsoc_confmap_find(table, N, "net.port"), K_PORT);
    ASSERT_EQ(vsoc_confmap_find(table, N, "net"), -1);
    ASSERT_EQ(vsoc_confmap_find(table, N, "net.por"), -1);
}

static void test_every_type(void)
{
    clean("name: box\n"
          "data_dir: rel/dir\n"
          "extra_dir: /abs/x\n"
          "tags: solo\n"
          "files: [a.yml, /b.yml, \"\"]\n"
          "count: 0x0A\n"
          "verbose: Yes\n"
          "wait: 15m\n"
          "color: blue\n"
          "props:\n"
          "  security.protocol: ssl\n"
          "  a.b: \"1\"\n"
          "  z:\n"
          "net:\n"
          "  server: \"h:2\"\n"
          "  port: 443\n"
          "  tls:\n"
          "    ca: ca.pem\n",
          "/base/");
    ASSERT_STREQ(cfg.name, "box");
    ASSERT_STREQ(cfg.data_dir, "/base/rel/dir");
    ASSERT_STREQ(cfg.extra_dir, "/abs/x");
    ASSERT_EQ(cfg.tags.n, 1); /* a scalar is a one-element list */
    ASSERT_STREQ(cfg.tags.v[0], "solo");
    ASSERT_EQ(cfg.files.n, 3);
    ASSERT_STREQ(cfg.files.v[0], "/base/a.yml");
    ASSERT_STREQ(cfg.files.v[1], "/b.yml");
    ASSERT_STREQ(cfg.files.v[2], ""); /* "" stays "" */
    ASSERT_EQ(cfg.count, 10);
    ASSERT_EQ(cfg.verbose, 1);
    ASSERT_EQ(cfg.wait_us, 15LL * 60 * 1000000);
    ASSERT_EQ(cfg.color, 2);
    ASSERT_EQ(cfg.props.n, 3); /* in file order, with where each name stands */
    ASSERT_STREQ(cfg.props.v[0].key, "security.protocol");
    ASSERT_STREQ(cfg.props.v[0].value, "ssl");
    ASSERT_EQ(cfg.props.v[0].line, 11);
    ASSERT_EQ(cfg.props.v[0].col, 3);
    ASSERT_STREQ(cfg.props.v[1].key, "a.b");
    ASSERT_STREQ(cfg.props.v[1].value, "1");
    ASSERT_STREQ(cfg.props.v[2].key, "z");
    ASSERT_STREQ(cfg.props.v[2].value, "");
    ASSERT_STREQ(cfg.server, "h:2");
    ASSERT_EQ(cfg.port, 443);
    ASSERT_STREQ(cfg.ca, "/base/ca.pem");
    ASSERT_EQ(locs[K_COUNT].line, 6);
    ASSERT_EQ(locs[K_COUNT].col, 8);

    /* Without a base folder paths stay as written; empty values are empty. */
    clean("data_dir: rel\nfiles:\ntags: []\nprops:\nnet: {server: s}\n", NULL);
    ASSERT_STREQ(cfg.data_dir, "rel");
    ASSERT_EQ(cfg.files.n, 0);
    ASSERT_EQ(cfg.tags.n, 0);
    ASSERT_EQ(cfg.props.n, 0);
    /* Anchors and aliases are YAML's own business. */
    clean("name: &n shared\nnet: {server: *n}\n", NULL);
    ASSERT_STREQ(cfg.server, "shared");
}

static void test_bools(void)
{
    static const struct {
        const char *text;
        int v;
    } cases[] = {{"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0},  {"on", 1},
                 {"off", 0},  {"TRUE", 1},  {"Off", 0}, {"\"yes\"", 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "net: {server: s}\nverbose: %s\n", cases[i].text);
        clean(text, NULL);
        ASSERT_EQ(cfg.verbose, cases[i].v);
    }
    one_error("net: {server: s}\nverbose: maybe\n",
              "t.yaml:2:10: verbose: expected true or false (or yes/no, on/off), got 'maybe'");
    one_error("net: {server: s}\nverbose: 1\n",
              "t.yaml:2:10: verbose: expected true or false (or yes/no, on/off), got '1'");
}

static void test_ints(void)
{
    one_error("net: {server: s}\ncount: 11\n", "t.yaml:2:8: count: 11 is out of range 1..10");
    one_error("net: {server: s}\ncount: abc\n",
              "t.yaml:2:8: count: expected an integer 1..10, got 'abc'");
    one_error("net: {server: s}\ncount: [1]\n",
              "t.yaml:2:8: count: expected an integer 1..10, got a sequence");
    one_error("net: {server: s}\ncount:\n",
              "t.yaml:2:7: count: expected an integer 1..10, got nothing");
    one_error("net: {server: s}\ncount: 99999999999999999999\n",
              "t.yaml:2:8: count: expected an integer 1..10, got '99999999999999999999'");
    ASSERT_EQ(locs[K_COUNT].bad, 1);
    ASSERT_EQ(cfg.count, 0); /* a wrong value leaves zero */
    clean("net: {server: s, port: 65535}\ncount: 1\n", NULL);
    ASSERT_EQ(cfg.count, 1);
    ASSERT_EQ(cfg.port, 65535);
}

static void test_durations(void)
{
    clean("net: {server: s}\nwait: 1.5s\n", NULL);
    ASSERT_EQ(cfg.wait_us, 1500000);
    clean("net: {server: s}\nwait: 1ms\n", NULL);
    ASSERT_EQ(cfg.wait_us, 1000);
    one_error("net: {server: s}\nwait: 2h\n", "t.yaml:2:7: wait: 2h is out of range 1ms..1h");
    one_error("net: {server: s}\nwait: 999us\n",
              "t.yaml:2:7: wait: 999us is out of range 1ms..1h");
    one_error("net: {server: s}\nwait: soon\n",
              "t.yaml:2:7: wait: expected a duration from 1ms to 1h, such as 500ms or 15m, "
              "got 'soon'");
}

static void test_enums(void)
{
    clean("net: {server: s}\ncolor: red\n", NULL);
    ASSERT_EQ(cfg.color, 0);
    one_error("net: {server: s}\ncolor: gren\n",
              "t.yaml:2:8: color: expected one of red, green, blue, got 'gren' (did you mean "
              "'green'?)");
    one_error("net: {server: s}\ncolor: purple\n",
              "t.yaml:2:8: color: expected one of red, green, blue, got 'purple'");
    one_error("net: {server: s}\ncolor: greenish\n",
              "t.yaml:2:8: color: expected one of red, green, blue, got 'greenish' (did you "
              "mean 'green'?)");
    one_error("net: {server: s}\ncolor: Red\n",
              "t.yaml:2:8: color: expected one of red, green, blue, got 'Red' (did you mean "
              "'red'?)");
}

static void test_maps(void)
{
    one_error("net: {server: s}\nprops: [a]\n",
              "t.yaml:2:8: props: expected a mapping of names to values, got a sequence");
    one_error("net: {server: s}\nprops: x\n",
              "t.yaml:2:8: props: expected a mapping of names to values, got 'x'");
    one_error("net: {server: s}\nprops:\n  a: [1]\n",
              "t.yaml:3:6: props.a: expected a string value, got a sequence");
    one_error("net: {server: s}\nprops:\n  a: 1\n  a: 2\n",
              "t.yaml:4:3: props: duplicate name 'a' (first at line 3)");
    ASSERT_EQ(cfg.props.n, 1); /* the part that was right */
    ASSERT_EQ(locs[K_PROPS].bad, 1);
}

static void test_lists(void)
{
    one_error("net: {server: s}\ntags: {a: b}\n",
              "t.yaml:2:7: tags: expected a string or a list of strings, got a mapping");
    one_error("net: {server: s}\ntags:\n  - a\n  - [b]\n  - c\n",
              "t.yaml:4:5: tags: list items must be strings, got a sequence");
    ASSERT_EQ(cfg.tags.n, 2);
    one_error("net: {server: s}\nfiles: [{a: b}]\n",
              "t.yaml:2:9: files: list items must be paths, got a mapping");
}

static void test_unknown_keys(void)
{
    const char *text = "nmae: x\n"     /* a typo at the top */
                       "net:\n"
                       "  sever: y\n"  /* a typo in a section */
                       "  server: h\n"
                       "port: 1\n"     /* a key in the wrong section */
                       "zzz: 1\n"      /* nothing like it */
                       "net.port: 2\n" /* dotted instead of nested */
                       "net2:\n"
                       "  tls: {cq: 1}\n";
    ASSERT_EQ(load(text, NULL), VSOC_EPARSE);
    if (vsoc_diags_count(d) != 6)
        dump();
    ASSERT_EQ(vsoc_diags_count(d), 6);
    ASSERT_STREQ(diag(0), "t.yaml:1:1: unknown key 'nmae' (did you mean 'name'?)");
    ASSERT_STREQ(diag(1), "t.yaml:3:3: unknown key 'net.sever' (did you mean 'net.server'?)");
    ASSERT_STREQ(diag(2), "t.yaml:5:1: unknown key 'port' (did you mean 'net.port'?)");
    ASSERT_STREQ(diag(3), "t.yaml:6:1: unknown key 'zzz'");
    ASSERT_STREQ(diag(4), "t.yaml:7:1: unknown key 'net.port' (write dotted keys nested, one "
                          "mapping per name)");
    ASSERT_STREQ(diag(5), "t.yaml:8:1: unknown key 'net2' (did you mean 'net'?)");
    /* What was right is loaded all the same. */
    ASSERT_STREQ(cfg.server, "h");
    ASSERT_EQ(cfg.port, 80);
    one_error("net:\n  server: s\n  tls:\n    cq: 1\n",
              "t.yaml:4:5: unknown key 'net.tls.cq' (did you mean 'net.tls.ca'?)");
    one_error("net: {server: s}\n[a]: 1\n", "t.yaml:2:1: keys must be names, got a sequence");
    one_error("net: {server: s, {a: 1}: 2}\n",
              "t.yaml:1:18: net: keys must be names, got a mapping");
}

static void test_wrong_types(void)
{
    one_error("net: {server: s}\nname: [a]\n",
              "t.yaml:2:7: name: expected a string, got a sequence");
    one_error("net: {server: s}\ndata_dir: {a: 1}\n",
              "t.yaml:2:11: data_dir: expected a path, got a mapping");
    one_error("name: x\nnet: 5\n",
              "t.yaml:2:6: net: expected a mapping of settings, got '5'");
    /* One error for one mistake: net.server is not reported missing as well. */
    one_error("net: [1]\n", "t.yaml:1:6: net: expected a mapping of settings, got a sequence");
    ASSERT_EQ(locs[K_SERVER].bad, 1);
    one_error("- a\n- b\n", "t.yaml:1:1: expected a mapping of settings, got a sequence");
}

static void test_required(void)
{
    one_error("", "t.yaml:1:1: missing required key 'net.server'");
    ASSERT_EQ(locs[K_SERVER].bad, 1);
    ASSERT(cfg.server == NULL);
    ASSERT_STREQ(cfg.name, "anon"); /* the others still have their defaults */
    one_error("# only a comment\n", "t.yaml:1:1: missing required key 'net.server'");
    /* At the section that should hold it. */
    one_error("name: x\nnet:\n  port: 8\n", "t.yaml:2:1: missing required key 'net.server'");
    one_error("name: x\n  \nnet:\n", "t.yaml:3:1: missing required key 'net.server'");
    /* Present but empty. */
    one_error("net:\n  server: \"\"\n", "t.yaml:2:11: net.server: needs a value");
    one_error("net:\n  server:\n", "t.yaml:2:10: net.server: needs a value");
}

static void test_duplicates(void)
{
    one_error("net: {server: s}\nname: a\nname: b\n",
              "t.yaml:3:1: duplicate key 'name' (first at line 2)");
    ASSERT_STREQ(cfg.name, "a"); /* the first stands */
    one_error("net:\n  server: s\n  port: 1\n  port: 2\n",
              "t.yaml:4:3: duplicate key 'net.port' (first at line 3)");
    one_error("net:\n  server: s\nnet:\n  port: 2\n",
              "t.yaml:3:1: duplicate key 'net' (first at line 1)");
}

static void test_many_errors(void)
{
    const char *text = "name: [x]\n"
                       "count: 0\n"
                       "colour: red\n"
                       "wait: never\n"
                       "net:\n"
                       "  port: 70000\n"
                       "  port: 1\n";
    ASSERT_EQ(load(text, NULL), VSOC_EPARSE);
    vsoc_diags_sort(d);
    if (vsoc_diags_count(d) != 7)
        dump();
    ASSERT_EQ(vsoc_diags_count(d), 7);
    ASSERT_STREQ(diag(0), "t.yaml:1:7: name: expected a string, got a sequence");
    ASSERT_STREQ(diag(1), "t.yaml:2:8: count: 0 is out of range 1..10");
    ASSERT_STREQ(diag(2), "t.yaml:3:1: unknown key 'colour' (did you mean 'color'?)");
    ASSERT_STREQ(diag(3), "t.yaml:4:7: wait: expected a duration from 1ms to 1h, such as 500ms "
                          "or 15m, got 'never'");
    ASSERT_STREQ(diag(4), "t.yaml:5:1: missing required key 'net.server'");
    ASSERT_STREQ(diag(5), "t.yaml:6:9: net.port: 70000 is out of range 1..65535");
    ASSERT_STREQ(diag(6), "t.yaml:7:3: duplicate key 'net.port' (first at line 6)");
}

static void test_yaml_problems(void)
{
    /* A syntax error, and nothing else: the keys of a document that was never read are
     * not reported missing. */
    ASSERT_EQ(load("net: {server: s}\nname: [a\n", NULL), VSOC_EPARSE);
    ASSERT_EQ(vsoc_diags_count(d), 1);
    ASSERT(strstr(diag(0), "t.yaml:3:1: YAML: ") == diag(0));
    one_error("net: {server: s}\n---\nname: b\n",
              "t.yaml:3:1: a configuration file holds one YAML document; this is another");
    one_error("just text\n", "t.yaml:1:1: expected a mapping of settings, got 'just text'");
}

static void test_files(void)
{
    char tmpl[] = "/tmp/test_confmap_XXXXXX";
    ASSERT(mkdtemp(tmpl));
    char *real = realpath(tmpl, NULL);
    ASSERT(real);
    char path[PATH_MAX], want[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/c.yaml", tmpl);
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs("net:\n  server: s\n  tls: {ca: certs/ca.pem}\n", f);
    fclose(f);
    vsoc_confmap_free(table, N, &cfg);
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    ASSERT_EQ(vsoc_confmap_load_file(table, N, &cfg, path, NULL, d), 0);
    snprintf(want, sizeof want, "%s/certs/ca.pem", real);
    ASSERT_STREQ(cfg.ca, want);
    snprintf(want, sizeof want, "%s/data", real); /* defaults are resolved too */
    ASSERT_STREQ(cfg.data_dir, want);

    /* A file named relative to the working directory: paths still come out absolute. */
    char cwd[PATH_MAX];
    ASSERT(getcwd(cwd, sizeof cwd));
    ASSERT_EQ(chdir(tmpl), 0);
    vsoc_confmap_free(table, N, &cfg);
    ASSERT_EQ(vsoc_confmap_load_file(table, N, &cfg, "c.yaml", NULL, d), 0);
    snprintf(want, sizeof want, "%s/certs/ca.pem", real);
    ASSERT_STREQ(cfg.ca, want);
    ASSERT_EQ(chdir(cwd), 0);

    /* Errors are reported under the name the file was given by. */
    f = fopen(path, "w");
    ASSERT(f);
    fputs("net:\n  server: s\n  prot: 1\n", f);
    fclose(f);
    vsoc_confmap_free(table, N, &cfg);
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    ASSERT_EQ(vsoc_confmap_load_file(table, N, &cfg, path, NULL, d), VSOC_EPARSE);
    char msg[PATH_MAX + 128];
    snprintf(msg, sizeof msg, "%s:3:3: unknown key 'net.prot' (did you mean 'net.port'?)",
             path);
    ASSERT_STREQ(diag(0), msg);
    unlink(path);
    rmdir(tmpl);
    free(real);

    vsoc_confmap_free(table, N, &cfg);
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    ASSERT_EQ(vsoc_confmap_load_file(table, N, &cfg, "/nonexistent/c.yaml", NULL, d), VSOC_EIO);
    ASSERT_STREQ(diag(0), "/nonexistent/c.yaml:0:0: cannot open: No such file or directory");
    ASSERT(cfg.name == NULL); /* zeroed, safe to free */
    ASSERT_EQ(vsoc_confmap_load_file(table, N, &cfg, "/", NULL, d), VSOC_EIO);
    ASSERT_STREQ(diag(1), "/:0:0: cannot read: Is a directory");
    /* An endless input is cut short, not read until memory runs out. */
    ASSERT_EQ(vsoc_confmap_load_file(table, N, &cfg, "/dev/zero", locs, d), VSOC_EIO);
    ASSERT_STREQ(diag(2), "/dev/zero:0:0: larger than 1048576 bytes: not a configuration file");
}

/* Text printed by fn into a malloc'd string. */
static char *printed(void (*fn)(const vsoc_confmap_entry_t *, size_t, FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERT(f);
    fn(table, N, f);
    fclose(f);
    return buf;
}

static void test_docs(void)
{
    char *doc = printed(vsoc_confmap_print_docs);
    ASSERT(strstr(doc, "| key | type | default | description |\n|---|---|---|---|\n") == doc);
    for (size_t i = 0; i < N; i++) {
        char row[128];
        snprintf(row, sizeof row, "\n| `%s` | ", table[i].key);
        ASSERT(strstr(doc, row));
    }
    ASSERT(strstr(doc, "| `name` | string | `anon` | A name \\| with a pipe. |\n"));
    ASSERT(strstr(doc, "| `extra_dir` | path | `\"\"` | Another folder; \"\" = none. |\n"));
    ASSERT(strstr(doc, "| `tags` | list of strings | `[a, b]` | Tags. |\n"));
    ASSERT(strstr(doc, "| `count` | integer 1..10 | `3` |"));
    ASSERT(strstr(doc, "| `wait` | duration 1ms..1h | `500ms` |"));
    ASSERT(strstr(doc, "| `color` | one of red, green, blue | `green` |"));
    ASSERT(strstr(doc, "| `net.server` | string | required | Server. |\n"));
    free(doc);
}

static void test_sample(void)
{
    char *s = printed(vsoc_confmap_print_sample);
    ASSERT(strstr(s, "# A name | with a pipe. (string)\nname: anon\n"));
    ASSERT(strstr(s, "\nnet:\n  # Server. (string, required)\n  server: h:1\n"));
    ASSERT(strstr(s, "\n  tls:\n    # CA file. (path)\n    ca: \"\"\n"));
    clean(s, NULL);
    ASSERT_STREQ(cfg.server, "h:1");
    ASSERT_STREQ(cfg.name, "anon");
    ASSERT_EQ(cfg.tags.n, 2);
    for (size_t i = 0; i < N; i++)
        ASSERT_EQ(locs[i].line > 0, 1); /* every key is in the sample */
    free(s);
}

/* Values that YAML would read otherwise unless quoted print and read back unchanged. */
static void test_values_roundtrip(void)
{
    const char *text = "name: \"vsoc:\"\n"
                       "data_dir: \"yes\"\n"
                       "extra_dir: \"a b #c\"\n"
                       "tags: [\"x: y\", \"a,b\", \"~\", \"\", \"- d\", \"[e]\","
                       " \"\\u00fc\\u2028\", \"line\\nbreak\", \"q\\\"b\\\\\", \"...\","
                       " \"\\x01\", \"@x\", 127.0.0.1:9]\n"
                       "files: [\"null\", \"\\U0001F600\", \"&a\", \"*b\", \"!c\", \"%d\"]\n"
                       "props: {\"k:1\": \"v: 1\", \"\": \"\", \"true\": \"{}\"}\n"
                       "net: {server: \"  padded  \", port: 9}\n";
    clean(text, NULL);
    ASSERT_STREQ(cfg.name, "vsoc:");
    ASSERT_STREQ(cfg.tags.v[6], "\xc3\xbc\xe2\x80\xa8");
    ASSERT_STREQ(cfg.tags.v[7], "line\nbreak");
    ASSERT_EQ(cfg.tags.n, 13);
    ASSERT_EQ(cfg.props.n, 3);
    tconf_t first = cfg;
    memset(&cfg, 0, sizeof cfg);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERT(f);
    vsoc_confmap_print_values(table, N, &first, f);
    fclose(f);
    clean(buf, NULL);
    ASSERT_STREQ(cfg.name, first.name);
    ASSERT_STREQ(cfg.data_dir, first.data_dir);
    ASSERT_STREQ(cfg.extra_dir, first.extra_dir);
    ASSERT_EQ(cfg.tags.n, first.tags.n);
    for (size_t i = 0; i < cfg.tags.n; i++)
        ASSERT_STREQ(cfg.tags.v[i], first.tags.v[i]);
    ASSERT_EQ(cfg.files.n, first.files.n);
    for (size_t i = 0; i < cfg.files.n; i++)
        ASSERT_STREQ(cfg.files.v[i], first.files.v[i]);
    ASSERT_EQ(cfg.props.n, first.props.n);
    for (size_t i = 0; i < cfg.props.n; i++) {
        ASSERT_STREQ(cfg.props.v[i].key, first.props.v[i].key);
        ASSERT_STREQ(cfg.props.v[i].value, first.props.v[i].value);
    }
    ASSERT_STREQ(cfg.server, first.server);
    ASSERT_EQ(cfg.port, first.port);
    ASSERT_EQ(cfg.count, first.count);
    ASSERT_EQ(cfg.verbose, first.verbose);
    ASSERT_EQ(cfg.wait_us, first.wait_us);
    ASSERT_EQ(cfg.color, first.color);
    /* Printing what was read back gives the same text. */
    char *buf2 = NULL;
    size_t len2 = 0;
    f = open_memstream(&buf2, &len2);
    ASSERT(f);
    vsoc_confmap_print_values(table, N, &cfg, f);
    fclose(f);
    ASSERT_STREQ(buf2, buf);
    ASSERT(strstr(buf, "name: \"vsoc:\"\n") == buf);
    ASSERT(strstr(buf, "\nwait: 500ms\n"));
    ASSERT(strstr(buf, "\nnet:\n  server: \"  padded  \"\n  port: 9\n"));
    free(buf);
    free(buf2);
    vsoc_confmap_free(table, N, &first);
}

static int check_one(const vsoc_confmap_entry_t *t, size_t n, const char *want)
{
    vsoc_diags_t *dd = vsoc_diags_new();
    ASSERT(dd);
    int rc = vsoc_confmap_check(t, n, dd);
    int found = 0;
    for (size_t i = 0; i < vsoc_diags_count(dd); i++)
        if (strstr(vsoc_diags_get(dd, i)->msg, want))
            found = 1;
    if (!found) {
        fprintf(stderr, "wanted: %s\n", want);
        vsoc_diags_print(dd, stderr);
    }
    ASSERT(found);
    vsoc_diags_free(dd);
    return rc;
}

static void test_table_check(void)
{
    vsoc_diags_t *dd = vsoc_diags_new();
    ASSERT_EQ(vsoc_confmap_check(table, N, dd), 0);
    ASSERT_EQ(vsoc_diags_count(dd), 0);
    vsoc_diags_free(dd);

    struct {
        int a;
        int b;
    } obj;
    vsoc_confmap_entry_t t[2] = {
        {.key = "a", .type = VSOC_CONFMAP_INT, .def = "1", .offset = 0, .desc = "A."},
        {.key = "a", .type = VSOC_CONFMAP_INT, .def = "1", .offset = sizeof(int), .desc = "B."},
    };
    ASSERT_EQ(check_one(t, 2, "a: listed twice"), VSOC_EINVAL);
    t[1].key = "a.b";
    ASSERT_EQ(check_one(t, 2, "a.b: both a key and a section ('a')"), VSOC_EINVAL);
    t[1].key = "B";
    ASSERT_EQ(check_one(t, 2, "entry 1: bad key 'B'"), VSOC_EINVAL);
    t[1].key = "b.";
    ASSERT_EQ(check_one(t, 2, "entry 1: bad key 'b.'"), VSOC_EINVAL);
    t[1].key = "b";
    t[1].def = "x";
    ASSERT_EQ(check_one(t, 2, "b: expected an integer"), VSOC_EINVAL);
    t[1].def = "5";
    t[1].min = 1;
    t[1].max = 4;
    ASSERT_EQ(check_one(t, 2, "b: 5 is out of range 1..4"), VSOC_EINVAL);
    t[1].min = 5;
    t[1].max = 1;
    ASSERT_EQ(check_one(t, 2, "b: min 5 > max 1"), VSOC_EINVAL);
    t[1] = (vsoc_confmap_entry_t){.key = "b", .type = VSOC_CONFMAP_ENUM, .def = "x",
                                  .offset = sizeof(int), .desc = "B."};
    ASSERT_EQ(check_one(t, 2, "b: an enum without names"), VSOC_EINVAL);
    t[1] = (vsoc_confmap_entry_t){.key = "b", .type = VSOC_CONFMAP_LIST, .def = "[a",
                                  .offset = sizeof(int), .desc = "B."};
    ASSERT_EQ(check_one(t, 2, "b: default '[a' is not YAML"), VSOC_EINVAL);
    t[1].def = "{a: b}";
    ASSERT_EQ(check_one(t, 2, "b: expected a string or a list of strings, got a mapping"),
              VSOC_EINVAL);
    t[1].def = "[]";
    t[1].desc = NULL;
    ASSERT_EQ(check_one(t, 2, "b: no description"), VSOC_EINVAL);

    /* A load with a broken table reports and loads nothing. */
    t[1] = t[0];
    vsoc_diags_free(d);
    d = vsoc_diags_new();
    obj.a = obj.b = 9;
    ASSERT_EQ(vsoc_confmap_load_string(t, 2, &obj, "x", "a: 2", 4, NULL, NULL, d), VSOC_EINVAL);
    ASSERT_EQ(obj.a, 0);
    vsoc_diags_free(d);
    d = NULL;
}

int main(void)
{
    vsoc_confmap_free(table, N, NULL);
    vsoc_confmap_free(table, N, &cfg); /* zeroed: nothing to free */
    test_defaults();
    test_every_type();
    test_bools();
    test_ints();
    test_durations();
    test_enums();
    test_maps();
    test_lists();
    test_unknown_keys();
    test_wrong_types();
    test_required();
    test_duplicates();
    test_many_errors();
    test_yaml_problems();
    test_files();
    test_docs();
    test_sample();
    test_values_roundtrip();
    test_table_check();
    vsoc_confmap_free(table, N, &cfg);
    vsoc_diags_free(d);
    printf("test_confmap: ok\n");
    return 0;
}
