/* test_util.c: number and duration parsing, suggestions, diagnostics ordering. */
#include "diag.h"
#include "test.h"
#include "util.h"

static void test_numbers(void)
{
    int64_t v;
    ASSERT_EQ(vsoc_parse_int("0x7E0", &v), 0);
    ASSERT_EQ(v, 0x7E0);
    ASSERT_EQ(vsoc_parse_int("2016", &v), 0);
    ASSERT_EQ(v, 2016);
    ASSERT_EQ(vsoc_parse_int("-5", &v), 0);
    ASSERT_EQ(v, -5);
    ASSERT_EQ(vsoc_parse_int("0b101", &v), 0);
    ASSERT_EQ(v, 5);
    ASSERT_EQ(vsoc_parse_int("0x18FE_F100", &v), 0);
    ASSERT_EQ(v, 0x18FEF100);
    ASSERT_EQ(vsoc_parse_int("0x12G", &v), -1);
    ASSERT_EQ(vsoc_parse_int("", &v), -1);
    ASSERT_EQ(vsoc_parse_int("0x", &v), -1);
    ASSERT_EQ(vsoc_parse_int("99999999999999999999", &v), -1);
    double d;
    ASSERT_EQ(vsoc_parse_number("0.25", &d), 0);
    ASSERT(d == 0.25);
    ASSERT_EQ(vsoc_parse_number("nan", &d), -1);
    ASSERT_EQ(vsoc_parse_number("1e400", &d), -1);
}

static void test_durations(void)
{
    int64_t us;
    ASSERT_EQ(vsoc_parse_duration("30s", &us), 0);
    ASSERT_EQ(us, 30000000);
    ASSERT_EQ(vsoc_parse_duration("500ms", &us), 0);
    ASSERT_EQ(us, 500000);
    ASSERT_EQ(vsoc_parse_duration("10m", &us), 0);
    ASSERT_EQ(us, 600000000);
    ASSERT_EQ(vsoc_parse_duration("1.5h", &us), 0);
    ASSERT_EQ(us, 5400000000LL);
    ASSERT_EQ(vsoc_parse_duration("2", &us), 0);
    ASSERT_EQ(us, 2000000);
    ASSERT_EQ(vsoc_parse_duration("10 minutes", &us), -1);
    ASSERT_EQ(vsoc_parse_duration("s", &us), -1);
    ASSERT_EQ(vsoc_parse_duration("1.2.3s", &us), -1);
}

static void test_suggestions(void)
{
    static const char *const c[] = {"contains", "startswith", "endswith", "high", "can.id"};
    ASSERT_STREQ(vsoc_did_you_mean("contians", c, 5), "contains");
    ASSERT_STREQ(vsoc_did_you_mean("hihg", c, 5), "high");
    ASSERT_STREQ(vsoc_did_you_mean("can.idd", c, 5), "can.id");
    ASSERT(vsoc_did_you_mean("zzz", c, 5) == NULL);
    ASSERT(vsoc_did_you_mean("c", c, 5) == NULL);
}

static void test_diags(void)
{
    vsoc_diags_t *d = vsoc_diags_new();
    vsoc_diag_add(d, VSOC_DIAG_ERROR, "b.yml", 3, 1, "third");
    vsoc_diag_add(d, VSOC_DIAG_WARNING, "a.yml", 9, 2, "second %d", 2);
    vsoc_diag_add(d, VSOC_DIAG_ERROR, "a.yml", 1, 5, "first");
    vsoc_diags_sort(d);
    ASSERT_EQ(vsoc_diags_count(d), 3);
    ASSERT_EQ(vsoc_diags_errors(d), 2);
    ASSERT_EQ(vsoc_diags_warnings(d), 1);
    ASSERT_STREQ(vsoc_diags_get(d, 0)->msg, "first");
    ASSERT_STREQ(vsoc_diags_get(d, 1)->msg, "second 2");
    ASSERT_STREQ(vsoc_diags_get(d, 2)->file, "b.yml");
    vsoc_diags_free(d);
}

static void test_one_line(void)
{
    char s[] = "a\nb\rc\td\x1b[31me\x7f f\xc3\xa9";
    vsoc_one_line(s);
    ASSERT_STREQ(s, "a?b?c?d?[31me? f\xc3\xa9"); /* UTF-8 stays */
    char empty[] = "";
    vsoc_one_line(empty);
    ASSERT_STREQ(empty, "");
}

int main(void)
{
    test_numbers();
    test_durations();
    test_suggestions();
    test_diags();
    test_one_line();
    printf("test_util: ok\n");
    return 0;
}
