// SPDX-License-Identifier: MIT
/*
 * The convergence throttle on real KVM vCPUs (mig_throttle_ops): a guest
 * throttled to 80 % makes far less progress, only the vCPU throttled slows,
 * and released it runs as before; the dirty ring tells which vCPU dirtied
 * how much (mig_vm_dirty_by_vcpu()).  Rates are measured side by side in
 * one run; a window the noisy host spoils is measured again, a few times,
 * before the test fails.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/lab.h>
#include <migrate/vm.h>

#include "devices-internal.h"
#include "lab-fixture.h"
#include "util.h"

const int test_requires_kvm = 1;

#define WINDOW_MS 600
#define TRIES 4

static struct lab_vm *boot(enum lab_dirty_log mode)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };
	struct lab_vm *vm;

	lab_config_default(&cfg);
	cfg.mem_bytes = 64ULL << 20;
	cfg.wss_bytes = 8ULL << 20;
	cfg.vcpus = 2;
	cfg.dirty_log = mode;
	cr_assert_eq(lab_vm_create(&cfg, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(lab_vm_start(vm, &err), 0, "%s", err.msg);
	fixture_wait_filled(vm, 30);
	return vm;
}

/* Pages each vCPU stamped per second over one window. */
static void rates(struct lab_vm *vm, double out[2])
{
	struct lab_stats a, b;
	double t0, t1;

	lab_vm_stats(vm, &a);
	t0 = fixture_now();
	fixture_sleep_ms(WINDOW_MS);
	lab_vm_stats(vm, &b);
	t1 = fixture_now();
	cr_assert_eq(b.fatal, 0, "%s", b.fatal_msg);
	cr_assert_eq(b.errors, 0, "self-check errors");
	for (int i = 0; i < 2; i++)
		out[i] = (double)(b.vcpu[i].pages - a.vcpu[i].pages) / (t1 - t0);
}

static void throttle(struct lab_vm *vm, uint32_t v0, uint32_t v1)
{
	uint32_t pct[2] = { v0, v1 };
	struct mig_error err = { 0 };

	cr_assert_eq(mig_vm_throttle(lab_vm_mig(vm), pct, 2, &err), 0, "%s", err.msg);
}

static uint64_t throttled_ns(struct lab_vm *vm, unsigned i)
{
	struct mig_vm *m = lab_vm_mig(vm);

	for (unsigned k = 0; k < m->nr_devices; k++) {
		struct mig_device *d = m->devices[k];

		if (d->cls->throttle_ops && d->id == i)
			return atomic_load(&container_of(d, struct vcpu_dev, core)->throttled_ns);
	}
	cr_assert_fail("no vCPU %u", i);
	return 0;
}

Test(throttle, slows_only_the_vcpu_throttled_and_releases, .timeout = 120)
{
	struct lab_vm *vm = boot(LAB_DIRTY_LOG_BITMAP);
	double free_[2], slow[2], back[2];
	bool ok = false;

	cr_assert_eq(mig_vm_throttled(lab_vm_mig(vm)), 2);
	for (int t = 0; t < TRIES && !ok; t++) {
		throttle(vm, 0, 0);
		rates(vm, free_);
		/* vCPU 0 at 80 %: it runs a fifth of its time */
		throttle(vm, 80, 0);
		fixture_sleep_ms(50);
		rates(vm, slow);
		throttle(vm, 0, 0);
		fixture_sleep_ms(50);
		rates(vm, back);
		fprintf(stderr, "try %d: vCPU 0 %.0f -> %.0f -> %.0f pages/s, vCPU 1 %.0f -> %.0f "
			"-> %.0f\n", t, free_[0], slow[0], back[0], free_[1], slow[1], back[1]);
		ok = free_[0] > 0 && slow[0] < free_[0] * 0.5 &&  /* slowed */
		     slow[1] > free_[1] * 0.6 &&                  /* the other one not */
		     back[0] > free_[0] * 0.6;                    /* released */
	}
	cr_assert(ok, "vCPU 0: free %.0f, throttled %.0f, released %.0f pages/s; vCPU 1: %.0f, "
		  "%.0f", free_[0], slow[0], back[0], free_[1], slow[1]);
	cr_assert_gt(throttled_ns(vm, 0), 0);
	cr_assert_eq(throttled_ns(vm, 1), 0, "vCPU 1 slept for a throttle it never had");
	lab_vm_destroy(vm);
}

/* A throttle set while the vCPUs are paused takes hold when they run, and
 * a pause is not held up by a throttle's sleep. */
Test(throttle, pause_is_prompt_under_a_heavy_throttle, .timeout = 120)
{
	struct lab_vm *vm = boot(LAB_DIRTY_LOG_BITMAP);
	struct mig_error err = { 0 };
	double t0, r[2];

	throttle(vm, 99, 99);
	fixture_sleep_ms(100);
	t0 = fixture_now();
	cr_assert_eq(lab_vm_pause(vm, &err), 0, "%s", err.msg);
	/* a throttled vCPU sleeps ~1 s per slice at 99 %: the pause wakes it */
	cr_assert_lt(fixture_now() - t0, 0.5, "pause took %.3f s", fixture_now() - t0);
	cr_assert_eq(lab_vm_resume(vm, &err), 0, "%s", err.msg);
	throttle(vm, 0, 0);
	fixture_sleep_ms(50);
	rates(vm, r);
	cr_assert_gt(r[0] + r[1], 0, "the guest does not run after the throttle was lifted");
	lab_vm_destroy(vm);
}

Test(throttle, the_dirty_ring_counts_each_vcpus_pages, .timeout = 120)
{
	struct lab_vm *vm = boot(LAB_DIRTY_LOG_RING);
	struct mig_vm *m = lab_vm_mig(vm);
	uint64_t a[2], b[2], *bitmap = calloc(lab_vm_bitmap_words(vm), 8);
	struct mig_error err = { 0 };

	cr_assert_not_null(bitmap);
	/* the counts move with the guest's writes after a sync re-armed its
	 * pages, before the next one harvests them */
	cr_assert_eq(lab_vm_dirty_sync(vm, bitmap, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_vm_dirty_by_vcpu(m, a, 2), 2);
	fixture_sleep_ms(300);
	cr_assert_eq(mig_vm_dirty_by_vcpu(m, b, 2), 2);
	cr_assert_gt(b[0], a[0], "vCPU 0: %llu -> %llu", (unsigned long long)a[0],
		     (unsigned long long)b[0]);
	cr_assert_gt(b[1], a[1]);
	/* a sync harvests them: the count goes on from there, never back */
	cr_assert_eq(lab_vm_dirty_sync(vm, bitmap, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(mig_vm_dirty_by_vcpu(m, a, 2), 2);
	cr_assert_geq(a[0], b[0]);
	free(bitmap);
	lab_vm_destroy(vm);

	/* a bitmap cannot tell the vCPUs apart */
	vm = boot(LAB_DIRTY_LOG_BITMAP);
	cr_assert_eq(mig_vm_dirty_by_vcpu(lab_vm_mig(vm), a, 2), 0);
	lab_vm_destroy(vm);
}

/* A throttle lifted wakes a vCPU asleep in its share at once: at 99 % it
 * sleeps 990 ms a slice, and the migration that ends must not leave it
 * asleep that long. */
Test(throttle, lifting_it_wakes_a_sleeping_vcpu, .timeout = 120)
{
	struct lab_vm *vm = boot(LAB_DIRTY_LOG_BITMAP);
	struct lab_stats a, b;

	throttle(vm, 99, 99);
	fixture_sleep_ms(300);
	throttle(vm, 0, 0);
	lab_vm_stats(vm, &a);
	fixture_sleep_ms(150);
	lab_vm_stats(vm, &b);
	for (int i = 0; i < 2; i++)
		cr_assert_gt(b.vcpu[i].pages, a.vcpu[i].pages,
			     "vCPU %d did not run in the 150 ms after its throttle was lifted", i);
	lab_vm_destroy(vm);
}
