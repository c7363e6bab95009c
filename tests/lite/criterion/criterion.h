/* SPDX-License-Identifier: MIT */
/*
 * The lite test harness: the part of criterion's interface the pure tests
 * use (Test() with .timeout, .signal, .init, .fini, .disabled; cr_assert*,
 * cr_expect*, cr_skip_test, cr_log_info), for the architectures Debian
 * builds no criterion for (s390x, ppc64el, mips64el: its BoxFort sandbox
 * has no port there).  Built with -Dtest-harness=lite (tests/meson.build),
 * where lite.c is each test program's main(): every test runs in a child
 * of its own (fork, no exec, so it works under qemu-user), and a failed
 * assertion ends that child.
 */
#ifndef TESTS_LITE_CRITERION_H
#define TESTS_LITE_CRITERION_H

#include <stdbool.h>
#include <string.h>

struct lite_opts {
	double timeout;           /* seconds; 0: LITE_TIMEOUT_S */
	int signal;               /* the test passes when it dies of this signal */
	int exit_code;
	bool disabled;
	void (*init)(void);
	void (*fini)(void);
	const char *description;
};

struct lite_test {
	const char *suite, *name;
	void (*fn)(void);
	const struct lite_opts *opts;
	struct lite_test *next;
};

void lite_register(struct lite_test *t);
/* A failed check: print where and what; fatal ends the test. */
void lite_fail(bool fatal, const char *file, int line, const char *expr, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void lite_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void lite_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define Test(suite, name, ...) \
	static void suite##_##name(void); \
	static const struct lite_opts suite##_##name##_opts = { __VA_ARGS__ }; \
	static struct lite_test suite##_##name##_test = { \
		#suite, #name, suite##_##name, &suite##_##name##_opts, 0 }; \
	__attribute__((constructor)) static void suite##_##name##_reg(void) \
	{ lite_register(&suite##_##name##_test); } \
	static void suite##_##name(void)

/* The optional message is a format string literal and its arguments. */
#define LITE_CHECK(fatal, cond, expr, ...) \
	do { if (!(cond)) lite_fail(fatal, __FILE__, __LINE__, expr, " " __VA_ARGS__); } while (0)

#define cr_assert(c, ...)            LITE_CHECK(true, (c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...)        LITE_CHECK(true, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)      LITE_CHECK(true, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)     LITE_CHECK(true, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)      LITE_CHECK(true, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)     LITE_CHECK(true, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)      LITE_CHECK(true, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)     LITE_CHECK(true, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)       LITE_CHECK(true, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...)   LITE_CHECK(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)  LITE_CHECK(true, !strcmp((a), (b)), #a " eq " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) LITE_CHECK(true, strcmp((a), (b)), #a " ne " #b, __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...) LITE_CHECK(true, !memcmp((a), (b), (n)), #a " eq " #b, __VA_ARGS__)
#define cr_assert_fail(...)          lite_fail(true, __FILE__, __LINE__, "failed", " " __VA_ARGS__)

#define cr_expect(c, ...)            LITE_CHECK(false, (c), #c, __VA_ARGS__)
#define cr_expect_not(c, ...)        LITE_CHECK(false, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_expect_eq(a, b, ...)      LITE_CHECK(false, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...)     LITE_CHECK(false, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...)      LITE_CHECK(false, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...)     LITE_CHECK(false, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...)      LITE_CHECK(false, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...)     LITE_CHECK(false, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_null(p, ...)       LITE_CHECK(false, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...)   LITE_CHECK(false, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...)  LITE_CHECK(false, !strcmp((a), (b)), #a " eq " #b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) LITE_CHECK(false, strcmp((a), (b)), #a " ne " #b, __VA_ARGS__)

#define cr_skip_test(...) lite_skip(__VA_ARGS__)
#define cr_log_info(...)  lite_log(__VA_ARGS__)

#endif
