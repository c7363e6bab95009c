// SPDX-License-Identifier: MIT
/*
 * Snapshot and restore of a running lab VM inside one process: pause the
 * vCPUs, save their state and RAM, restore into a fresh VM, resume it, and
 * check the guest goes on with its self-check clean and the RAM digests equal
 * at the snapshot.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/lab.h>

#include "lab/lab-abi.h"
#include "lab-fixture.h"

const int test_requires_kvm = 1;

struct snap {
	struct lab_config cfg;
	struct lab_stats at;
	struct mig_digest digest;
	struct mig_buf state;
	uint8_t *ram;
	uint64_t ram_bytes;
};

static struct lab_vm *boot(const struct lab_config *cfg)
{
	struct mig_error err = { 0 };
	struct lab_vm *vm;

	cr_assert_eq(lab_vm_create(cfg, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(lab_vm_start(vm, &err), 0, "%s", err.msg);
	return vm;
}

/* Pause, then take state, RAM and digest; the source is destroyed so the
 * restored VM cannot lean on it. */
static void take(struct lab_vm *src, struct snap *s)
{
	struct mig_error err = { 0 };
	uint8_t *ram;

	s->cfg = *lab_vm_config(src);
	cr_assert_eq(lab_vm_pause(src, &err), 0, "%s", err.msg);
	lab_vm_stats(src, &s->at);
	cr_assert_eq(s->at.fatal, 0, "%s", s->at.fatal_msg);
	cr_assert_eq(lab_vm_digest(src, &s->digest), 0);
	memset(&s->state, 0, sizeof(s->state));
	cr_assert_eq(lab_vm_save_state(src, &s->state, &err), 0, "%s", err.msg);
	ram = lab_vm_ram(src, &s->ram_bytes);
	s->ram = malloc(s->ram_bytes);
	cr_assert_not_null(s->ram);
	memcpy(s->ram, ram, s->ram_bytes);
	lab_vm_destroy(src);
}

static struct lab_vm *restore(struct snap *s)
{
	struct mig_error err = { 0 };
	struct mig_digest d;
	struct lab_stats st;
	struct lab_vm *dst;
	uint64_t bytes;
	uint8_t *ram;

	cr_assert_eq(lab_vm_create(&s->cfg, &dst, &err), 0, "%s", err.msg);
	ram = lab_vm_ram(dst, &bytes);
	cr_assert_eq(bytes, s->ram_bytes);
	memcpy(ram, s->ram, bytes);
	cr_assert_eq(lab_vm_digest(dst, &d), 0);
	cr_assert(d.hi == s->digest.hi && d.lo == s->digest.lo, "RAM digests differ at the snapshot");
	cr_assert_eq(lab_vm_load_state(dst, s->state.data, s->state.len, &err), 0, "%s", err.msg);
	/* The guest's own counters travel in its RAM. */
	lab_vm_stats(dst, &st);
	cr_assert_eq(st.passes, s->at.passes);
	cr_assert_eq(st.pages, s->at.pages);
	return dst;
}

static void expect_runs_clean(struct lab_vm *dst, const struct snap *s, uint64_t passes)
{
	struct mig_error err = { 0 };
	struct lab_stats st;

	cr_assert_eq(lab_vm_resume(dst, &err), 0, "%s", err.msg);
	fixture_wait_filled(dst, 60);
	fixture_wait_passes(dst, &s->at, passes, 60);
	lab_vm_stats(dst, &st);
	cr_assert_eq(st.errors, 0, "guest self-check found %llu errors after restore",
		     (unsigned long long)st.errors);
	cr_assert_eq(st.error_reports, 0);
	cr_assert_gt(st.pages, s->at.pages);
}

static void snap_free(struct snap *s)
{
	mig_buf_free(&s->state);
	free(s->ram);
}

static void run_scenario(enum lab_dirty_log mode, enum lab_pattern pattern)
{
	struct lab_config cfg;
	struct lab_stats base;
	struct snap s;
	struct lab_vm *src, *dst;

	lab_config_default(&cfg);
	cfg.mem_bytes = 128ULL << 20;
	cfg.wss_bytes = 16ULL << 20;
	cfg.vcpus = 2;
	cfg.dirty_log = mode;
	cfg.pattern = pattern;
	src = boot(&cfg);
	fixture_wait_filled(src, 60);
	lab_vm_stats(src, &base);
	fixture_wait_passes(src, &base, 3, 60);
	take(src, &s);
	cr_assert_gt(s.at.passes, 0);
	dst = restore(&s);
	expect_runs_clean(dst, &s, 3);
	lab_vm_destroy(dst);
	snap_free(&s);
}

Test(snapshot, restore_running_guest_bitmap)
{
	run_scenario(LAB_DIRTY_LOG_BITMAP, LAB_PATTERN_SEQ);
}

Test(snapshot, restore_running_guest_ring_random)
{
	run_scenario(LAB_DIRTY_LOG_RING, LAB_PATTERN_RANDOM);
}

/* Snapshot in the middle of the fill loop: the guest resumes mid-page. */
Test(snapshot, restore_during_fill)
{
	struct lab_config cfg;
	struct lab_stats st;
	struct snap s;
	struct lab_vm *src, *dst;
	double end;

	lab_config_default(&cfg);
	cfg.mem_bytes = 256ULL << 20;
	cfg.wss_bytes = 8ULL << 20;
	src = boot(&cfg);
	end = fixture_now() + 30;
	do {
		lab_vm_stats(src, &st);
		cr_assert_lt(fixture_now(), end);
	} while (st.filled == 0);
	take(src, &s);
	cr_assert_not(s.at.all_filled, "fill finished before the snapshot; test proves nothing");
	dst = restore(&s);
	expect_runs_clean(dst, &s, 2);
	lab_vm_destroy(dst);
	snap_free(&s);
}

/* A small guest that completed a pass since its fill, snapshotted. */
static void take_small(struct snap *s)
{
	struct lab_config cfg;
	struct lab_stats base;
	struct lab_vm *src;

	lab_config_default(&cfg);
	cfg.mem_bytes = 64ULL << 20;
	cfg.wss_bytes = 4ULL << 20;
	src = boot(&cfg);
	fixture_wait_filled(src, 30);
	lab_vm_stats(src, &base);
	fixture_wait_passes(src, &base, 1, 30);
	take(src, s);
}

/* The self-check is real: a page the restore got wrong is reported. */
Test(snapshot, corrupted_page_is_caught)
{
	struct mig_error err = { 0 };
	struct lab_stats st;
	struct snap s;
	struct lab_vm *dst;
	uint8_t *ram;
	uint64_t region;
	double end;

	take_small(&s);
	dst = restore(&s);
	ram = lab_vm_ram(dst, NULL);
	region = *(uint64_t *)(ram + LAB_TBL_VCPUS + LAB_VA_REGION);
	ram[region + 5 * 4096] ^= 0xff;   /* first word of page 5 of vCPU 0's working set */
	cr_assert_eq(lab_vm_resume(dst, &err), 0, "%s", err.msg);
	end = fixture_now() + 30;
	do {
		lab_vm_stats(dst, &st);
		cr_assert_lt(fixture_now(), end, "the guest never noticed the corrupted page");
		fixture_sleep_ms(5);
	} while (st.errors == 0);
	cr_assert_eq(st.vcpu[0].errors, 1);
	cr_assert_eq(st.vcpu[1].errors, 0);
	cr_assert_eq(*(uint64_t *)(ram + LAB_TBL_VCPUS + LAB_VA_ERR_GPA), region + 5 * 4096);
	lab_vm_destroy(dst);
	snap_free(&s);
}

/* A damaged container is refused before anything is applied; the same VM
 * then accepts the good one. */
Test(snapshot, bad_state_changes_nothing)
{
	struct mig_error err = { 0 };
	struct snap s;
	struct lab_vm *dst;
	uint8_t *bad;

	take_small(&s);

	cr_assert_eq(lab_vm_create(&s.cfg, &dst, &err), 0, "%s", err.msg);
	memcpy(lab_vm_ram(dst, NULL), s.ram, s.ram_bytes);
	bad = malloc(s.state.len);
	cr_assert_not_null(bad);

	/* magic */
	memcpy(bad, s.state.data, s.state.len);
	bad[0] ^= 1;
	mig_error_clear(&err);
	cr_assert_lt(lab_vm_load_state(dst, bad, s.state.len, &err), 0);
	cr_assert_not_null(strstr(err.msg, "magic"), "%s", err.msg);
	/* version */
	memcpy(bad, s.state.data, s.state.len);
	bad[8] = 99;
	mig_error_clear(&err);
	cr_assert_lt(lab_vm_load_state(dst, bad, s.state.len, &err), 0);
	cr_assert_not_null(strstr(err.msg, "version"), "%s", err.msg);
	/* truncated anywhere */
	for (size_t n = 0; n < s.state.len; n += 97) {
		mig_error_clear(&err);
		cr_assert_lt(lab_vm_load_state(dst, s.state.data, n, &err), 0, "length %zu accepted", n);
		cr_assert_gt(strlen(err.msg), 0);
	}
	/* trailing garbage */
	{
		uint8_t *longer = calloc(1, s.state.len + 1);

		cr_assert_not_null(longer);
		memcpy(longer, s.state.data, s.state.len);
		mig_error_clear(&err);
		cr_assert_lt(lab_vm_load_state(dst, longer, s.state.len + 1, &err), 0);
		cr_assert_not_null(strstr(err.msg, "trailing"), "%s", err.msg);
		free(longer);
	}

	mig_error_clear(&err);
	cr_assert_eq(lab_vm_load_state(dst, s.state.data, s.state.len, &err), 0, "%s", err.msg);
	expect_runs_clean(dst, &s, 2);
	free(bad);
	lab_vm_destroy(dst);
	snap_free(&s);
}

/* The source's rollback: vCPUs paused (and their state read) resume, and the
 * guest runs on each time, not just once. */
Test(snapshot, paused_guest_resumes_each_time)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };
	struct lab_stats base;
	struct lab_vm *vm;

	lab_config_default(&cfg);
	cfg.mem_bytes = 32ULL << 20;
	cfg.wss_bytes = 1ULL << 20;
	cfg.vcpus = 2;
	vm = boot(&cfg);
	fixture_wait_filled(vm, 30);
	for (int i = 0; i < 4; i++) {
		struct mig_buf state = { 0 };

		cr_assert_eq(lab_vm_pause(vm, &err), 0, "%s", err.msg);
		if (i % 2) {
			cr_assert_eq(lab_vm_save_state(vm, &state, &err), 0, "%s", err.msg);
			mig_buf_free(&state);
		}
		lab_vm_stats(vm, &base);
		cr_assert_eq(lab_vm_resume(vm, &err), 0, "%s", err.msg);
		fixture_wait_passes(vm, &base, 2, 10);
	}
	lab_vm_stats(vm, &base);
	cr_assert_eq(base.errors, 0);
	lab_vm_destroy(vm);
}
