/* SPDX-License-Identifier: MIT */
/* What the real-kernel test programs print, one line per check:
 * "RK-PASS name" or "RK-FAIL name: why", and at the end
 * "RK-DONE passed P failed F"; the run-*.sh scripts read them back. */
#ifndef TESTS_REALKERNEL_RK_H
#define TESTS_REALKERNEL_RK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static unsigned rk_passed, rk_failed;

__attribute__((format(printf, 3, 4)))
static inline void result(bool ok, const char *name, const char *fmt, ...)
{
	char why[600] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (ok) {
		rk_passed++;
		printf("RK-PASS %s\n", name);
	} else {
		rk_failed++;
		printf("RK-FAIL %s: %s\n", name, why);
	}
	fflush(stdout);
}

/* The last line; the program's exit status. */
static inline int rk_done(void)
{
	printf("RK-DONE passed %u failed %u\n", rk_passed, rk_failed);
	return rk_failed ? 1 : 0;
}

#endif
