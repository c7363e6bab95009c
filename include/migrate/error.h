/* SPDX-License-Identifier: MIT */
/*
 * One error convention for the whole library: functions return int, >= 0 on
 * success and -errno on failure.  Where a human needs context, the caller
 * passes a struct mig_error that the failing function fills once; programs
 * print it, library code never does.
 */
#ifndef MIGRATE_ERROR_H
#define MIGRATE_ERROR_H

#include <stddef.h>

struct mig_error {
	int code;          /* -errno of the first failure, 0 if none */
	char msg[512];     /* what went wrong and, where known, what to do */
};

/* Records the first error only: later calls keep the original cause. Returns code. */
int mig_error_set(struct mig_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prefixes context to an error already recorded ("loading vCPU 1: ..."). Returns err->code. */
int mig_error_prefix(struct mig_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void mig_error_clear(struct mig_error *err);

#endif
