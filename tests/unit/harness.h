/*
 * A tiny TAP harness for unit tests (meson: protocol: 'tap'). Each test file defines its tests
 * with TEST(name), lists them in a table, and returns RUN_TESTS(table) from main:
 *
 *     TEST(adds) { ASSERT_EQ(4, 2 + 2); }
 *     int main(void)
 *     {
 *         static const struct test_case t[] = { TEST_CASE(adds) };
 *         return RUN_TESTS(t);
 *     }
 *
 * A failing assertion prints both operands as TAP comments and returns from the test, which is
 * then reported "not ok". The exit code is 0 only when every test passed. ASSERT_EQ evaluates its
 * operands again to print them on failure, so pass values without side effects.
 */
#ifndef EG_TEST_HARNESS_H
#define EG_TEST_HARNESS_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct test_case {
    const char *name;
    void (*fn)(void);
};

#define TEST(name) static void name(void)
#define TEST_CASE(name)                                                                            \
    {                                                                                              \
#name, name                                                                                \
    }
#define RUN_TESTS(table) harness_run(table, sizeof(table) / sizeof((table)[0]))

static bool harness_failed; /* set by a failing assertion in the current test */

static inline void harness_fail(const char *file, int line, const char *what, const char *expected,
                                const char *got)
{
    printf("# %s:%d: %s failed\n", file, line, what);
    if (expected != NULL)
        printf("#   expected %s\n#   got      %s\n", expected, got);
    harness_failed = true;
}

/* Formatters for ASSERT_EQ, chosen by the operand's type. */
static inline void harness_fmt_i(char *o, size_t n, intmax_t v)
{
    snprintf(o, n, "%" PRIdMAX, v);
}
static inline void harness_fmt_u(char *o, size_t n, uintmax_t v)
{
    snprintf(o, n, "%" PRIuMAX, v);
}
static inline void harness_fmt_f(char *o, size_t n, double v)
{
    snprintf(o, n, "%.17g", v);
}
static inline void harness_fmt_p(char *o, size_t n, const volatile void *v)
{
    snprintf(o, n, "%p", (const void *)v);
}
#define HARNESS_FMT(out, x)                                                                        \
    _Generic((x), float                                                                            \
             : harness_fmt_f, double                                                               \
             : harness_fmt_f, char                                                                 \
             : harness_fmt_i, signed char                                                          \
             : harness_fmt_i, short                                                                \
             : harness_fmt_i, int                                                                  \
             : harness_fmt_i, long                                                                 \
             : harness_fmt_i, long long                                                            \
             : harness_fmt_i, _Bool                                                                \
             : harness_fmt_u, unsigned char                                                        \
             : harness_fmt_u, unsigned short                                                       \
             : harness_fmt_u, unsigned                                                             \
             : harness_fmt_u, unsigned long                                                        \
             : harness_fmt_u, unsigned long long                                                   \
             : harness_fmt_u, default                                                              \
             : harness_fmt_p)(out, sizeof(out), (x))

/* Writes the n bytes at p into out as a quoted C-style literal, truncated to fit. */
static inline void harness_quote(char *out, size_t cap, const char *p, size_t n)
{
    size_t len = 0;
    size_t i;

    out[len++] = '"';
    for (i = 0; i < n && len + 8 < cap; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[len++] = (char)c;
        else
            len += (size_t)snprintf(out + len, cap - len, "\\x%02x", c);
    }
    snprintf(out + len, cap - len, i < n ? "\"..." : "\"");
}

static inline bool harness_mem_eq(const char *file, int line, const char *what, const char *got,
                                  long long got_len, const char *want, size_t want_len)
{
    char e[512];
    char g[512];

    if (got != NULL && got_len == (long long)want_len && memcmp(got, want, want_len) == 0)
        return true;
    harness_quote(e, sizeof(e), want, want_len);
    if (got == NULL || got_len < 0)
        snprintf(g, sizeof(g), "%s (length %lld)", got == NULL ? "NULL" : "error", got_len);
    else
        harness_quote(g, sizeof(g), got, (size_t)got_len);
    harness_fail(file, line, what, e, g);
    return false;
}

#define ASSERT_TRUE(x)                                                                             \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            harness_fail(__FILE__, __LINE__, "ASSERT_TRUE(" #x ")", NULL, NULL);                   \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Generic equality for integers, doubles and pointers: expected first, then the value got. */
#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        if (!((a) == (b))) {                                                                       \
            char ha_[48];                                                                          \
            char hb_[48];                                                                          \
            HARNESS_FMT(ha_, a);                                                                   \
            HARNESS_FMT(hb_, b);                                                                   \
            harness_fail(__FILE__, __LINE__, "ASSERT_EQ(" #a ", " #b ")", ha_, hb_);               \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Integer equality, each operand evaluated once as intmax_t. */
#define ASSERT_INT_EQ(a, b)                                                                        \
    do {                                                                                           \
        intmax_t ia_ = (intmax_t)(a);                                                              \
        intmax_t ib_ = (intmax_t)(b);                                                              \
        if (ia_ != ib_) {                                                                          \
            char ha_[24];                                                                          \
            char hb_[24];                                                                          \
            harness_fmt_i(ha_, sizeof(ha_), ia_);                                                  \
            harness_fmt_i(hb_, sizeof(hb_), ib_);                                                  \
            harness_fail(__FILE__, __LINE__, "ASSERT_INT_EQ(" #a ", " #b ")", ha_, hb_);           \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* NUL-terminated strings; NULL only equals NULL. */
#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *sa_ = (a);                                                                     \
        const char *sb_ = (b);                                                                     \
        if ((sa_ == NULL || sb_ == NULL) ? sa_ != sb_ : strcmp(sa_, sb_) != 0) {                   \
            harness_mem_eq(__FILE__, __LINE__, "ASSERT_STR_EQ(" #a ", " #b ")", sb_,               \
                           sb_ ? (long long)strlen(sb_) : -1, sa_ ? sa_ : "(NULL)",                \
                           sa_ ? strlen(sa_) : 6);                                                 \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* The len bytes at ptr equal the string literal lit (len may be a negative error code). */
#define ASSERT_MEM_EQ(ptr, len, lit)                                                               \
    do {                                                                                           \
        if (!harness_mem_eq(__FILE__, __LINE__, "ASSERT_MEM_EQ(" #ptr ", " #len ", " #lit ")",     \
                            (ptr), (long long)(len), "" lit, sizeof(lit) - 1))                     \
            return;                                                                                \
    } while (0)

static inline int harness_run(const struct test_case *tests, size_t n)
{
    size_t failures = 0;
    size_t i;

    printf("1..%zu\n", n);
    for (i = 0; i < n; i++) {
        harness_failed = false;
        tests[i].fn();
        printf("%s %zu - %s\n", harness_failed ? "not ok" : "ok", i + 1, tests[i].name);
        failures += harness_failed;
        fflush(stdout);
    }
    return failures == 0 ? 0 : 1;
}

#endif /* EG_TEST_HARNESS_H */
