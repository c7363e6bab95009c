/* SPDX-License-Identifier: MIT */
/* Shared by the fuzz targets (tests/fuzz): what a finding is. */
#ifndef FUZZ_H
#define FUZZ_H

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/error.h>

/* 64 MiB of guest RAM: the page count the PAGES checks are given. */
#define FUZZ_GUEST_PAGES (16384ULL)

/* A broken promise is a crash libFuzzer keeps the input of. */
#define FUZZ_ASSERT(c) do {							\
	if (!(c)) {								\
		fprintf(stderr, "%s:%d: fuzz assertion failed: %s\n", __FILE__,	\
			__LINE__, #c);						\
		abort();							\
	}									\
} while (0)

/* A refusal must say what is wrong: a negative errno and some text. */
static inline void fuzz_error_ok(const struct mig_error *err)
{
	if (!err->code)
		return;
	FUZZ_ASSERT(err->code < 0);
	FUZZ_ASSERT(err->msg[0] != '\0');
	FUZZ_ASSERT(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
}

#endif
