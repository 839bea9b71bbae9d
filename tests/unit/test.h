/* test.h: assertion macros for unit tests; a failure prints both sides and the location
 * and exits 1 so that CTest reports it. */
#ifndef VSOC_TEST_H
#define VSOC_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_FAIL_(...)                                                                    \
    do {                                                                                   \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                    \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        exit(1);                                                                           \
    } while (0)

#define ASSERT(c)                                                                          \
    do {                                                                                   \
        if (!(c))                                                                          \
            TEST_FAIL_("assertion failed: %s", #c);                                        \
    } while (0)

#define ASSERT_EQ(a, b)                                                                    \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ != b_)                                                                      \
            TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                          \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                 \
    do {                                                                                   \
        const char *a_ = (a), *b_ = (b);                                                   \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                             \
            TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",           \
                       b_ ? b_ : "(null)");                                                \
    } while (0)

#define ASSERT_STRN_EQ(s, n, lit)                                                          \
    do {                                                                                   \
        const char *s_ = (s);                                                              \
        size_t n_ = (n);                                                                   \
        if (n_ != strlen(lit) || memcmp(s_, lit, n_) != 0)                                 \
            TEST_FAIL_("%s == %s: \"%.*s\" != \"%s\"", #s, #lit, (int)n_, s_, lit);        \
    } while (0)

#endif
