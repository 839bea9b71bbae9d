/* test_prom.c: the Prometheus text writer (names, escaping, HELP/TYPE once, numbers,
 * histograms), the fixed-bucket histogram read while it is written, its quantile
 * estimate, and the atomic counter. */
#include "http/prom.h"
#include "test.h"
#include "vsoc.h"

#include <math.h>
#include <pthread.h>

#define ASSERT_TEXT(p, lit)                                                                \
    do {                                                                                   \
        size_t n__;                                                                        \
        const char *t__ = vsoc_prom_text((p), &n__);                                       \
        ASSERT_STRN_EQ(t__, n__, lit);                                                     \
    } while (0)

static void test_family_once(void)
{
    vsoc_prom_t *p = vsoc_prom_new();
    ASSERT(p);
    ASSERT_EQ(vsoc_prom_family(p, "vsoc_events_total", "counter", "Events read."), 0);
    ASSERT_EQ(vsoc_prom_sample_u64(p, "vsoc_events_total", NULL, 0, 7), 0);
    /* Declaring again (e.g. once per shard) writes nothing. */
    ASSERT_EQ(vsoc_prom_family(p, "vsoc_events_total", "counter", "Events read."), 0);
    ASSERT_EQ(vsoc_prom_family(p, "vsoc_up", "gauge", NULL), 0);
    ASSERT_EQ(vsoc_prom_sample(p, "vsoc_up", NULL, 0, 1), 0);
    ASSERT_TEXT(p, "# HELP vsoc_events_total Events read.\n"
                   "# TYPE vsoc_events_total counter\n"
                   "vsoc_events_total 7\n"
                   "# TYPE vsoc_up gauge\n"
                   "vsoc_up 1\n");
    ASSERT_EQ(vsoc_prom_err(p), 0);
    ASSERT_STREQ(vsoc_prom_errstr(p), "");

    /* The same name with another type is a bug: refused, nothing written, recorded. */
    ASSERT_EQ(vsoc_prom_family(p, "vsoc_up", "counter", "x"), VSOC_EINVAL);
    ASSERT_TEXT(p, "# HELP vsoc_events_total Events read.\n"
                   "# TYPE vsoc_events_total counter\n"
                   "vsoc_events_total 7\n"
                   "# TYPE vsoc_up gauge\n"
                   "vsoc_up 1\n");
    ASSERT_EQ(vsoc_prom_err(p), VSOC_EINVAL);
    ASSERT(strstr(vsoc_prom_errstr(p), "vsoc_up") != NULL);

    ASSERT_EQ(vsoc_prom_family(p, "x", "counterr", "x"), VSOC_EINVAL);
    /* The first error stays the one reported. */
    ASSERT(strstr(vsoc_prom_errstr(p), "vsoc_up") != NULL);

    vsoc_prom_reset(p);
    ASSERT_TEXT(p, "");
    ASSERT_EQ(vsoc_prom_err(p), 0);
    /* After a reset the family is written again. */
    ASSERT_EQ(vsoc_prom_family(p, "vsoc_up", "gauge", "Up."), 0);
    ASSERT_TEXT(p, "# HELP vsoc_up Up.\n# TYPE vsoc_up gauge\n");
    vsoc_prom_free(p);
    vsoc_prom_free(NULL);
}

static void test_escaping(void)
{
    vsoc_prom_t *p = vsoc_prom_new();
    ASSERT(p);
    /* HELP escapes backslash and newline, not quotes. */
    ASSERT_EQ(vsoc_prom_family(p, "m", "gauge", "a \\ b\nc \"q\""), 0);
    vsoc_prom_label_t l[] = {{"vin", "1VSC\"X\\Y\nZ"}, {"rule", "vsoc.can.dos"}};
    ASSERT_EQ(vsoc_prom_sample(p, "m", l, 2, 2.5), 0);
    vsoc_prom_label_t empty[] = {{"path", ""}};
    ASSERT_EQ(vsoc_prom_sample(p, "m", empty, 1, -3), 0);
    ASSERT_TEXT(p, "# HELP m a \\\\ b\\nc \"q\"\n"
                   "# TYPE m gauge\n"
                   "m{vin=\"1VSC\\\"X\\\\Y\\nZ\",rule=\"vsoc.can.dos\"} 2.5\n"
                   "m{path=\"\"} -3\n");
    vsoc_prom_free(p);
}

static void test_names(void)
{
    vsoc_prom_t *p = vsoc_prom_new();
    ASSERT(p);
    ASSERT_EQ(vsoc_prom_sample(p, "ok:name_1", NULL, 0, 1), 0);
    ASSERT_EQ(vsoc_prom_sample(p, "1abc", NULL, 0, 1), VSOC_EINVAL);
    ASSERT(strstr(vsoc_prom_errstr(p), "'1abc'") != NULL);
    ASSERT_EQ(vsoc_prom_sample(p, "a-b", NULL, 0, 1), VSOC_EINVAL);
    ASSERT_EQ(vsoc_prom_sample(p, "", NULL, 0, 1), VSOC_EINVAL);
    ASSERT_EQ(vsoc_prom_sample(p, NULL, NULL, 0, 1), VSOC_EINVAL);
    vsoc_prom_label_t reserved[] = {{"__name__", "x"}};
    ASSERT_EQ(vsoc_prom_sample(p, "m", reserved, 1, 1), VSOC_EINVAL);
    vsoc_prom_label_t colon[] = {{"a:b", "x"}};
    ASSERT_EQ(vsoc_prom_sample(p, "m", colon, 1, 1), VSOC_EINVAL);
    vsoc_prom_label_t twice[] = {{"a", "x"}, {"a", "y"}};
    ASSERT_EQ(vsoc_prom_sample(p, "m", twice, 2, 1), VSOC_EINVAL);
    vsoc_prom_label_t noval[] = {{"a", NULL}};
    ASSERT_EQ(vsoc_prom_sample(p, "m", noval, 1, 1), VSOC_EINVAL);
    ASSERT_EQ(vsoc_prom_sample(p, "m", NULL, 1, 1), VSOC_EINVAL);
    /* Nothing of the refused samples was written. */
    ASSERT_TEXT(p, "ok:name_1 1\n");
    ASSERT_EQ(vsoc_prom_err(p), VSOC_EINVAL);
    vsoc_prom_free(p);
}

/* The value text of a one-sample page. */
static const char *value_of(vsoc_prom_t *p, double v)
{
    vsoc_prom_reset(p);
    ASSERT_EQ(vsoc_prom_sample(p, "m", NULL, 0, v), 0);
    const char *t = vsoc_prom_text(p, NULL);
    ASSERT(strncmp(t, "m ", 2) == 0);
    static char out[64];
    snprintf(out, sizeof out, "%s", t + 2);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

static void test_numbers(void)
{
    vsoc_prom_t *p = vsoc_prom_new();
    ASSERT(p);
    ASSERT_STREQ(value_of(p, 0), "0");
    ASSERT_STREQ(value_of(p, -0.0), "0");
    ASSERT_STREQ(value_of(p, 1), "1");
    ASSERT_STREQ(value_of(p, -42), "-42");
    ASSERT_STREQ(value_of(p, 0.1), "0.1");
    ASSERT_STREQ(value_of(p, 0.0001), "0.0001");
    ASSERT_STREQ(value_of(p, 2.5e-7), "2.5e-07");
    ASSERT_STREQ(value_of(p, 9007199254740992.0), "9007199254740992");
    ASSERT_STREQ(value_of(p, 1e16), "10000000000000000");
    ASSERT_STREQ(value_of(p, INFINITY), "+Inf");
    ASSERT_STREQ(value_of(p, -INFINITY), "-Inf");
    ASSERT_STREQ(value_of(p, NAN), "NaN");
    /* Values needing 16 or 17 digits read back exactly. */
    const double hard[] = {1.0 / 3, 2.0 / 3, 0.1 + 0.2, 1e300 / 7, 5e-324, 123456.789e-10,
                           M_PI, 1e22, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++) {
        const char *s = value_of(p, hard[i]);
        if (strtod(s, NULL) != hard[i])
            TEST_FAIL_("%.17g printed as %s does not read back", hard[i], s);
        ASSERT(strlen(s) <= 24);
    }
    ASSERT_STREQ(value_of(p, 0.3), "0.3"); /* the shortest form, not 0.29999999999999999 */
    vsoc_prom_reset(p);
    ASSERT_EQ(vsoc_prom_sample_u64(p, "m", NULL, 0, UINT64_MAX), 0);
    ASSERT_TEXT(p, "m 18446744073709551615\n");
    vsoc_prom_reset(p);
    ASSERT_EQ(vsoc_prom_sample_u64(p, "m", NULL, 0, (1ULL << 53) + 1), 0);
    ASSERT_TEXT(p, "m 9007199254740993\n");
    vsoc_prom_free(p);
}

static void test_histogram_text(void)
{
    vsoc_prom_t *p = vsoc_prom_new();
    ASSERT(p);
    const double b[] = {0.1, 0.5, 1};
    const uint64_t c[] = {1, 2, 3, 4};
    vsoc_prom_label_t l[] = {{"stage", "match"}};
    ASSERT_EQ(vsoc_prom_family(p, "lat_seconds", "histogram", "Latency."), 0);
    ASSERT_EQ(vsoc_prom_histogram(p, "lat_seconds", l, 1, b, c, 3, 7.25), 0);
    ASSERT_EQ(vsoc_prom_histogram(p, "lat_seconds", NULL, 0, b, c, 3, 0.5), 0);
    ASSERT_TEXT(p, "# HELP lat_seconds Latency.\n"
                   "# TYPE lat_seconds histogram\n"
                   "lat_seconds_bucket{stage=\"match\",le=\"0.1\"} 1\n"
                   "lat_seconds_bucket{stage=\"match\",le=\"0.5\"} 3\n"
                   "lat_seconds_bucket{stage=\"match\",le=\"1\"} 6\n"
                   "lat_seconds_bucket{stage=\"match\",le=\"+Inf\"} 10\n"
                   "lat_seconds_sum{stage=\"match\"} 7.25\n"
                   "lat_seconds_count{stage=\"match\"} 10\n"
                   "lat_seconds_bucket{le=\"0.1\"} 1\n"
                   "lat_seconds_bucket{le=\"0.5\"} 3\n"
                   "lat_seconds_bucket{le=\"1\"} 6\n"
                   "lat_seconds_bucket{le=\"+Inf\"} 10\n"
                   "lat_seconds_sum 0.5\n"
                   "lat_seconds_count 10\n");
    size_t before;
    vsoc_prom_text(p, &before);
    vsoc_prom_label_t le[] = {{"le", "1"}};
    ASSERT_EQ(vsoc_prom_histogram(p, "lat_seconds", le, 1, b, c, 3, 1), VSOC_EINVAL);
    ASSERT(strstr(vsoc_prom_errstr(p), "le") != NULL);
    const double unsorted[] = {0.5, 0.1, 1};
    ASSERT_EQ(vsoc_prom_histogram(p, "lat_seconds", NULL, 0, unsorted, c, 3, 1), VSOC_EINVAL);
    const double inf[] = {0.1, 0.5, INFINITY};
    ASSERT_EQ(vsoc_prom_histogram(p, "lat_seconds", NULL, 0, inf, c, 3, 1), VSOC_EINVAL);
    size_t after;
    vsoc_prom_text(p, &after);
    ASSERT_EQ(after, before);
    vsoc_prom_free(p);
}

static void test_hist(void)
{
    char err[160];
    const double bad[] = {1, 1};
    ASSERT(vsoc_hist_new(bad, 2, err, sizeof err) == NULL);
    ASSERT(strstr(err, "bound 1") != NULL);
    const double nan_b[] = {NAN};
    ASSERT(vsoc_hist_new(nan_b, 1, err, sizeof err) == NULL);
    ASSERT(vsoc_hist_new(bad, 0, err, sizeof err) == NULL);
    vsoc_hist_free(NULL);

    /* The default latency bounds. */
    vsoc_hist_t *h = vsoc_hist_new(NULL, 0, err, sizeof err);
    ASSERT(h);
    ASSERT(isnan(vsoc_hist_quantile(h, 0.5)));
    vsoc_hist_observe(h, 0.0001); /* a bound itself belongs to its bucket (le: <=) */
    vsoc_hist_observe(h, 0.003);
    vsoc_hist_observe(h, 0.003);
    vsoc_hist_observe(h, 42);     /* above every bound */
    vsoc_hist_observe(h, NAN);    /* ignored */
    vsoc_hist_observe(h, -1);     /* below every bound: first bucket */
    ASSERT_EQ(vsoc_hist_count(h), 5);
    vsoc_prom_t *p = vsoc_prom_new();
    ASSERT(p);
    ASSERT_EQ(vsoc_prom_hist(p, "h", NULL, 0, h), 0);
    const char *t = vsoc_prom_text(p, NULL);
    ASSERT(strstr(t, "h_bucket{le=\"0.0001\"} 2\n") != NULL);
    ASSERT(strstr(t, "h_bucket{le=\"0.0025\"} 2\n") != NULL);
    ASSERT(strstr(t, "h_bucket{le=\"0.005\"} 4\n") != NULL);
    ASSERT(strstr(t, "h_bucket{le=\"10\"} 4\n") != NULL);
    ASSERT(strstr(t, "h_bucket{le=\"+Inf\"} 5\n") != NULL);
    const char *sum = strstr(t, "h_sum ");
    ASSERT(sum);
    ASSERT(strtod(sum + 6, NULL) == 0.0001 + 0.003 + 0.003 + 42 + -1.0);
    ASSERT(strstr(t, "h_count 5\n") != NULL);
    vsoc_prom_free(p);
    vsoc_hist_free(h);
}

static void test_quantile(void)
{
    char err[160];
    const double b[] = {1, 2, 4};
    vsoc_hist_t *h = vsoc_hist_new(b, 3, err, sizeof err);
    ASSERT(h);
    /* 10 in (0,1], 30 in (1,2], 60 in (2,4]. */
    for (int i = 0; i < 10; i++)
        vsoc_hist_observe(h, 0.5);
    for (int i = 0; i < 30; i++)
        vsoc_hist_observe(h, 1.5);
    for (int i = 0; i < 60; i++)
        vsoc_hist_observe(h, 3);
    /* rank 5 is halfway through the first bucket, from 0. */
    ASSERT(fabs(vsoc_hist_quantile(h, 0.05) - 0.5) < 1e-12);
    /* rank 25: 15 of the 30 in (1,2]. */
    ASSERT(fabs(vsoc_hist_quantile(h, 0.25) - 1.5) < 1e-12);
    /* rank 70: 30 of the 60 in (2,4]. */
    ASSERT(fabs(vsoc_hist_quantile(h, 0.7) - 3.0) < 1e-12);
    ASSERT(fabs(vsoc_hist_quantile(h, 1) - 4.0) < 1e-12);
    ASSERT(fabs(vsoc_hist_quantile(h, 0) - 0.0) < 1e-12);
    ASSERT(isnan(vsoc_hist_quantile(h, -0.1)));
    ASSERT(isnan(vsoc_hist_quantile(h, 1.5)));
    ASSERT(isnan(vsoc_hist_quantile(h, NAN)));
    /* Ranks in the +Inf bucket report the largest finite bound. */
    for (int i = 0; i < 100; i++)
        vsoc_hist_observe(h, 100);
    ASSERT(fabs(vsoc_hist_quantile(h, 0.99) - 4.0) < 1e-12);
    vsoc_hist_free(h);

    /* Leading empty buckets: q = 0 starts at the first bucket holding something. */
    h = vsoc_hist_new(b, 3, err, sizeof err);
    ASSERT(h);
    vsoc_hist_observe(h, 3);
    vsoc_hist_observe(h, 3);
    ASSERT(fabs(vsoc_hist_quantile(h, 0) - 2.0) < 1e-12);
    ASSERT(fabs(vsoc_hist_quantile(h, 0.5) - 3.0) < 1e-12);
    vsoc_hist_free(h);

    /* A first bound at or below zero is its own estimate. */
    const double neg[] = {-1, 0, 1};
    h = vsoc_hist_new(neg, 3, err, sizeof err);
    ASSERT(h);
    vsoc_hist_observe(h, -5);
    ASSERT(fabs(vsoc_hist_quantile(h, 0.5) - -1.0) < 1e-12);
    vsoc_hist_free(h);
}

/* One writer observes while this thread renders: every page must be self-consistent and
 * never go backwards. */
#define OBSERVATIONS 200000

static void *writer(void *arg)
{
    vsoc_hist_t *h = arg;
    for (int i = 0; i < OBSERVATIONS; i++)
        vsoc_hist_observe(h, (double)(i % 1000) * 1e-5);
    return NULL;
}

/* Reads "h_bucket{le=\"<le>\"} N" from a page. */
static uint64_t bucket(const char *t, const char *le)
{
    char key[64];
    snprintf(key, sizeof key, "h_bucket{le=\"%s\"} ", le);
    const char *at = strstr(t, key);
    ASSERT(at);
    return strtoull(at + strlen(key), NULL, 10);
}

static void test_hist_concurrent(void)
{
    char err[160];
    vsoc_hist_t *h = vsoc_hist_new(NULL, 0, err, sizeof err);
    ASSERT(h);
    vsoc_prom_t *p = vsoc_prom_new();
    ASSERT(p);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, writer, h), 0);
    uint64_t last_inf = 0, last_1ms = 0;
    int pages = 0;
    for (;;) {
        uint64_t seen = vsoc_hist_count(h);
        vsoc_prom_reset(p);
        ASSERT_EQ(vsoc_prom_hist(p, "h", NULL, 0, h), 0);
        const char *t = vsoc_prom_text(p, NULL);
        uint64_t inf = bucket(t, "+Inf"), ms = bucket(t, "0.001");
        const char *cnt = strstr(t, "h_count ");
        ASSERT(cnt);
        ASSERT_EQ(strtoull(cnt + 8, NULL, 10), inf);
        ASSERT(ms <= inf);
        ASSERT(inf >= last_inf && ms >= last_1ms);
        last_inf = inf;
        last_1ms = ms;
        pages++;
        if (seen == OBSERVATIONS)
            break;
    }
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(vsoc_hist_count(h), OBSERVATIONS);
    ASSERT_EQ(last_inf, OBSERVATIONS);
    ASSERT(pages >= 1);
    vsoc_prom_free(p);
    vsoc_hist_free(h);
}

static vsoc_counter_t shared_counter;

static void *adder(void *arg)
{
    for (int i = 0; i < 100000; i++)
        vsoc_counter_add(&shared_counter, 1);
    return arg;
}

static void test_counter(void)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, adder, NULL), 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
    ASSERT_EQ(vsoc_counter_get(&shared_counter), 400000);
    vsoc_counter_add(&shared_counter, 5);
    ASSERT_EQ(vsoc_counter_get(&shared_counter), 400005);
}

/* Many families and long values: the buffer grows and stays intact. */
static void test_growth(void)
{
    vsoc_prom_t *p = vsoc_prom_new();
    ASSERT(p);
    char big[5000];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%d", i);
        ASSERT_EQ(vsoc_prom_family(p, name, "gauge", "g"), 0);
        vsoc_prom_label_t l[] = {{"v", big}};
        ASSERT_EQ(vsoc_prom_sample(p, name, l, 1, i), 0);
    }
    size_t n;
    const char *t = vsoc_prom_text(p, &n);
    ASSERT(n > 200 * sizeof big);
    ASSERT_EQ(strlen(t), n);
    ASSERT(strstr(t, "# TYPE m199 gauge\nm199{v=\"vvv") != NULL);
    vsoc_prom_free(p);
}

int main(void)
{
    test_family_once();
    test_escaping();
    test_names();
    test_numbers();
    test_histogram_text();
    test_hist();
    test_quantile();
    test_hist_concurrent();
    test_counter();
    test_growth();
    printf("test_prom: ok\n");
    return 0;
}
