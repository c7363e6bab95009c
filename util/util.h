/* SPDX-License-Identifier: MIT */
/* Small helpers shared by every folder: cleanup attributes, container_of,
 * string tables, clocks. */
#ifndef MIGRATE_UTIL_H
#define MIGRATE_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define ALIGN_UP(n, a) (((n) + (a) - 1) / (a) * (a))

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) close(*fd); }

/* Copy a string into a fixed array, always terminated, truncating silently
 * (error texts into wire messages). */
static inline void str_copy(char *dst, size_t n, const char *src)
{
	size_t len = 0;

	while (len + 1 < n && src[len])
		len++;
	for (size_t i = 0; i < len; i++)
		dst[i] = src[i];
	if (n)
		dst[len] = '\0';
}

/*
 * NAME_to_string() and NAME_from_string() for an enum and its name table
 * (the shape of systemd's DEFINE_STRING_TABLE_LOOKUP): NULL and -EINVAL
 * outside the table or for a hole in it.  One macro, so every enum's names
 * are looked up the same way and a test can walk them all.
 */
#define MIG_STRING_TABLE_TO(name, type, table)					\
	const char *name##_to_string(type v)					\
	{									\
		return (unsigned)v < ARRAY_SIZE(table) ? table[v] : NULL;	\
	}
#define MIG_STRING_TABLE_FROM(name, table)					\
	int name##_from_string(const char *s)					\
	{									\
		for (unsigned i_ = 0; s && i_ < ARRAY_SIZE(table); i_++)	\
			if (table[i_] && strcmp(s, table[i_]) == 0)		\
				return (int)i_;					\
		return -EINVAL;							\
	}
#define MIG_STRING_TABLE(name, type, table)					\
	MIG_STRING_TABLE_TO(name, type, table)					\
	MIG_STRING_TABLE_FROM(name, table)

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Hand ownership out of a _cleanup_ variable. */
#define TAKE_PTR(p) ({ __typeof__(p) _p = (p); (p) = NULL; _p; })
#define TAKE_FD(fd) ({ int _fd = (fd); (fd) = -1; _fd; })

uint64_t mig_now_ms(void);      /* CLOCK_MONOTONIC */
uint64_t mig_realtime_ns(void); /* CLOCK_REALTIME: comparable across hosts */
/* From now on mig_realtime_ns() is off by ns: a host whose clock is wrong
 * (chaos mode's skew fault; never in production). */
void mig_realtime_skew_set(int64_t ns);
uint64_t mig_clock_ns(clockid_t clk);
uint64_t mig_cpu_ms(void);      /* CPU time of the calling thread */
/* clk's time `ns` from now, for pthread_cond_timedwait() on a condition
 * variable that waits on clk. */
struct timespec mig_timespec_after(clockid_t clk, uint64_t ns);
/* The calling thread wakes ahead of others on a busy host (nice
 * MIG_PROMPT_NICE where allowed): post-copy's path from a vCPU's fault to
 * its page, where every wake-up the scheduler delays is the guest's wait. */
#define MIG_PROMPT_NICE (-10)
void mig_thread_prompt(void);

#endif
