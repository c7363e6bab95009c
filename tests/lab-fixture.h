/* SPDX-License-Identifier: MIT */
/* Helpers shared by the KVM scenario tests: wait for guest progress. */
#ifndef TESTS_LAB_FIXTURE_H
#define TESTS_LAB_FIXTURE_H

#include <criterion/criterion.h>
#include <time.h>

#include <migrate/lab.h>

static inline double fixture_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void fixture_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Waits until every vCPU finished its fill. */
static inline void fixture_wait_filled(struct lab_vm *vm, double timeout_s)
{
	double end = fixture_now() + timeout_s;
	struct lab_stats st;

	for (;;) {
		lab_vm_stats(vm, &st);
		cr_assert_eq(st.fatal, 0, "guest stopped: %s", st.fatal_msg);
		if (st.all_filled)
			return;
		cr_assert_lt(fixture_now(), end, "guest did not finish its fill in %.0f s", timeout_s);
		fixture_sleep_ms(10);
	}
}

/* Waits until every vCPU completed `n` more passes than in `base`. */
static inline void fixture_wait_passes(struct lab_vm *vm, const struct lab_stats *base,
				       uint64_t n, double timeout_s)
{
	double end = fixture_now() + timeout_s;
	struct lab_stats st;

	for (;;) {
		bool done = true;

		lab_vm_stats(vm, &st);
		cr_assert_eq(st.fatal, 0, "guest stopped: %s", st.fatal_msg);
		for (uint32_t i = 0; i < st.nr_vcpus; i++)
			if (st.vcpu[i].passes < base->vcpu[i].passes + n)
				done = false;
		if (done)
			return;
		cr_assert_lt(fixture_now(), end, "guest made no progress in %.0f s", timeout_s);
		fixture_sleep_ms(5);
	}
}

#endif
