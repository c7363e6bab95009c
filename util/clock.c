// SPDX-License-Identifier: MIT
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#include "util.h"

uint64_t mig_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t mig_clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Chaos mode's clock skew (agent/fault.c): 0 in production. */
static _Atomic int64_t realtime_skew_ns;

void mig_realtime_skew_set(int64_t ns)
{
	realtime_skew_ns = ns;
}

uint64_t mig_realtime_ns(void)
{
	return mig_clock_ns(CLOCK_REALTIME) + (uint64_t)realtime_skew_ns;
}

struct timespec mig_timespec_after(clockid_t clk, uint64_t ns)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ts.tv_sec += (time_t)(ns / 1000000000ULL);
	ts.tv_nsec += (long)(ns % 1000000000ULL);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

uint64_t mig_cpu_ms(void)
{
	struct rusage ru;

	/* this thread only: the agent's vCPU threads share the process */
	getrusage(RUSAGE_THREAD, &ru);
	return (uint64_t)ru.ru_utime.tv_sec * 1000 + (uint64_t)ru.ru_utime.tv_usec / 1000 +
	       (uint64_t)ru.ru_stime.tv_sec * 1000 + (uint64_t)ru.ru_stime.tv_usec / 1000;
}

void mig_thread_prompt(void)
{
	/* not fatal: without CAP_SYS_NICE the thread keeps its nice value */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), MIG_PROMPT_NICE) < 0) {
		/* nothing to do */
	}
}
