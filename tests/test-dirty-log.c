// SPDX-License-Identifier: MIT
/*
 * Dirty logging, one test per mode: after the fill, the pages a running guest
 * writes (its working set) are reported dirty, and pages it does not write
 * (the rest of its RAM, its code and page tables) are not.
 */
#include <criterion/criterion.h>
#include <liburing.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/lab.h>

#include "devices-internal.h"
#include "lab/lab-abi.h"
#include "lab/lab-internal.h"
#include "lab-fixture.h"

const int test_requires_kvm = 1;

#define PAGE 4096ULL

static bool bit(const uint64_t *bm, uint64_t pfn)
{
	return bm[pfn / 64] & (1ULL << (pfn % 64));
}

static uint64_t tbl_read(uint8_t *ram, unsigned vcpu, unsigned off)
{
	return *(volatile uint64_t *)(ram + LAB_TBL_VCPUS + (uint64_t)vcpu * LAB_VA_SIZE + off);
}

/* A 2-vCPU guest of `mem` bytes with a 4 MiB working set, booted and done
 * filling its RAM. */
static struct lab_vm *boot_filled(uint64_t mem, enum lab_dirty_log mode, bool classic,
				  uint32_t ring_entries)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };
	struct lab_vm *vm;

	lab_config_default(&cfg);
	cfg.mem_bytes = mem;
	cfg.wss_bytes = 4ULL << 20;
	cfg.vcpus = 2;
	cfg.dirty_log = mode;
	cfg.force_classic = classic;
	cfg.ring_entries = ring_entries;
	cr_assert_eq(lab_vm_create(&cfg, &vm, &err), 0, "%s", err.msg);
	cr_assert_eq(lab_vm_start(vm, &err), 0, "%s", err.msg);
	fixture_wait_filled(vm, 30);
	return vm;
}

static void check_mode(enum lab_dirty_log mode, bool classic, uint32_t ring_entries,
		       const char *want_mode)
{
	struct mig_error err = { 0 };
	struct lab_vm *vm;
	struct lab_stats base, st;
	uint64_t words, count = 0, mem, set = 0;
	uint64_t *bm;
	uint8_t *ram;
	bool *in_wss;

	vm = boot_filled(64ULL << 20, mode, classic, ring_entries);
	cr_assert_str_eq(lab_vm_dirty_log_mode(vm), want_mode);

	words = lab_vm_bitmap_words(vm);
	bm = calloc(words, 8);
	cr_assert_not_null(bm);
	/* Forget everything up to now (fill, INITIALLY_SET), then watch. */
	cr_assert_eq(lab_vm_dirty_sync(vm, bm, NULL, &err), 0, "%s", err.msg);
	memset(bm, 0, words * 8);
	lab_vm_stats(vm, &base);
	fixture_wait_passes(vm, &base, 2, 30);
	cr_assert_eq(lab_vm_dirty_sync(vm, bm, &count, &err), 0, "%s", err.msg);

	ram = lab_vm_ram(vm, &mem);
	in_wss = calloc(mem / PAGE, sizeof(bool));
	cr_assert_not_null(in_wss);
	for (uint32_t v = 0; v < lab_vm_config(vm)->vcpus; v++) {
		uint64_t first = tbl_read(ram, v, LAB_VA_REGION) / PAGE;
		uint64_t n = tbl_read(ram, v, LAB_VA_WSS_PAGES);

		cr_assert_gt(n, 0);
		for (uint64_t p = first; p < first + n; p++) {
			in_wss[p] = true;
			cr_assert(bit(bm, p), "working-set page %#llx of vCPU %u not reported dirty",
				  (unsigned long long)p, v);
		}
	}
	for (uint64_t p = 0; p < mem / PAGE; p++) {
		set += bit(bm, p);
		if (p * PAGE < LAB_SYSTEM_BYTES) {
			/* The table and the stacks are written; code and page tables are not. */
			if (p * PAGE >= 0x6000 && p * PAGE < 0x80000)
				cr_assert_not(bit(bm, p), "page-table/GDT page %#llx reported dirty",
					      (unsigned long long)p);
			if (p * PAGE >= 0x100000)
				cr_assert_not(bit(bm, p), "code page %#llx reported dirty",
					      (unsigned long long)p);
			continue;
		}
		if (!in_wss[p])
			cr_assert_not(bit(bm, p), "page %#llx outside the working set reported dirty",
				      (unsigned long long)p);
	}
	cr_assert_eq(set, count, "sync counted %llu pages, bitmap holds %llu",
		     (unsigned long long)count, (unsigned long long)set);
	if (mode == LAB_DIRTY_LOG_RING) {
		/* without ring-full drains, every reported page came from an
		 * entry of the last sync */
		char rep[96];
		unsigned long long all[2], last[2];

		lab_vm_ring_report(vm, rep, sizeof(rep));
		cr_assert_eq(sscanf(rep, "%llu/%llu %llu/%llu", &all[0], &last[0], &all[1],
				    &last[1]), 4, "ring report \"%s\"", rep);
		cr_assert(all[0] >= last[0] && all[1] >= last[1] && all[0] && all[1], "%s", rep);
		if (!ring_entries)
			cr_assert_geq(last[0] + last[1], count, "%s", rep);
	} else {
		char rep[8] = "x";

		lab_vm_ring_report(vm, rep, sizeof(rep));
		cr_assert_str_empty(rep);
	}

	/* Paused: once the stragglers are collected, nothing more is dirtied. */
	cr_assert_eq(lab_vm_pause(vm, &err), 0, "%s", err.msg);
	cr_assert_eq(lab_vm_dirty_sync(vm, bm, NULL, &err), 0, "%s", err.msg);
	memset(bm, 0, words * 8);
	fixture_sleep_ms(50);
	cr_assert_eq(lab_vm_dirty_sync(vm, bm, &count, &err), 0, "%s", err.msg);
	cr_assert_eq(count, 0, "%llu pages dirtied while paused", (unsigned long long)count);

	lab_vm_stats(vm, &st);
	cr_assert_eq(st.errors, 0);
	cr_assert_eq(st.error_reports, 0);
	if (ring_entries)
		cr_assert_gt(st.ring_full_exits, 0, "a %u-entry ring never filled", ring_entries);
	free(in_wss);
	free(bm);
	lab_vm_destroy(vm);
}

Test(dirty_log, bitmap_manual_protect)
{
	check_mode(LAB_DIRTY_LOG_BITMAP, false, 0, "bitmap-manual");
}

Test(dirty_log, bitmap_classic)
{
	check_mode(LAB_DIRTY_LOG_BITMAP, true, 0, "bitmap-classic");
}

Test(dirty_log, ring)
{
	check_mode(LAB_DIRTY_LOG_RING, false, 0, "ring");
}

/* A ring far smaller than the working set: the vCPUs exit with
 * KVM_EXIT_DIRTY_RING_FULL, drain their own ring and carry on; no page is lost. */
Test(dirty_log, ring_full_exits)
{
	check_mode(LAB_DIRTY_LOG_RING, false, 256, "ring");
}

Test(dirty_log, ring_size_rejected)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };
	struct lab_vm *vm = NULL;

	lab_config_default(&cfg);
	cfg.mem_bytes = 16ULL << 20;
	cfg.wss_bytes = 0;
	cfg.dirty_log = LAB_DIRTY_LOG_RING;
	cfg.ring_entries = 1000;  /* not a power of two */
	cr_assert_lt(lab_vm_create(&cfg, &vm, &err), 0);
	cr_assert_null(vm);
	cr_assert_gt(strlen(err.msg), 0);
}

/* Where a ring-full drain is preempted between its harvest and its reset, and
 * the migration's sync takes the harvested pages meanwhile, the sync must not
 * copy a page that is still writable without a dirty entry: another vCPU's
 * write to it (the shared table page) would never be reported.  The seam
 * widens both windows; each checkpoint copies what the log reports, stops
 * the guest, takes the last sync and compares the copy with RAM. */
#define WANT_DRAINS 40

static _Atomic unsigned drains;

static void widen(enum mem_ring_window where)
{
	if (where == MEM_RING_DRAIN_HARVESTED) {
		drains++;
		fixture_sleep_ms(5);  /* the other vCPU keeps writing meanwhile */
		return;
	}
	/* The sync has reset the rings.  Return as soon as a drain has
	 * harvested, so the hand-over lands in that drain's window; a drain that
	 * must wait for the sync's lock cannot harvest here, and this waits out
	 * its 20 ms. */
	for (unsigned seen = drains, i = 0; i < 20 && drains == seen; i++)
		fixture_sleep_ms(1);
}

static void copy_dirty(uint8_t *shadow, const uint8_t *ram, uint64_t *bm, uint64_t words)
{
	for (uint64_t w = 0; w < words; w++) {
		while (bm[w]) {
			uint64_t pfn = w * 64 + (uint64_t)__builtin_ctzll(bm[w]);

			memcpy(shadow + pfn * PAGE, ram + pfn * PAGE, PAGE);
			bm[w] &= bm[w] - 1;
		}
	}
}

Test(dirty_log, ring_drain_racing_a_sync_loses_no_write, .timeout = 90)
{
	struct mig_error err = { 0 };
	struct lab_vm *vm;
	struct lab_stats st;
	uint64_t words, mem, checkpoints = 0;
	uint64_t *bm;
	uint8_t *ram, *shadow;
	double end;

	vm = boot_filled(32ULL << 20, LAB_DIRTY_LOG_RING, false, 256);
	ram = lab_vm_ram(vm, &mem);
	words = lab_vm_bitmap_words(vm);
	bm = calloc(words, 8);
	shadow = malloc(mem);
	cr_assert(bm && shadow);

	cr_assert_eq(lab_vm_dirty_sync(vm, bm, NULL, &err), 0, "%s", err.msg);
	memcpy(shadow, ram, mem);
	memset(bm, 0, words * 8);
	__atomic_store_n(&mem_ring_window_hook, widen, __ATOMIC_RELAXED);
	/* until enough drains fell into the widened windows, whatever the load */
	end = fixture_now() + 40;
	while (drains < WANT_DRAINS && fixture_now() < end) {
		/* a precopy round, then the stop and the final round */
		cr_assert_eq(lab_vm_dirty_sync(vm, bm, NULL, &err), 0, "%s", err.msg);
		copy_dirty(shadow, ram, bm, words);
		cr_assert_eq(lab_vm_pause(vm, &err), 0, "%s", err.msg);
		cr_assert_eq(lab_vm_dirty_sync(vm, bm, NULL, &err), 0, "%s", err.msg);
		copy_dirty(shadow, ram, bm, words);
		for (uint64_t off = 0; off < mem; off += PAGE)
			cr_assert(memcmp(shadow + off, ram + off, PAGE) == 0,
				  "checkpoint %llu: page %#llx changed without being reported dirty",
				  (unsigned long long)checkpoints, (unsigned long long)off);
		checkpoints++;
		cr_assert_eq(lab_vm_resume(vm, &err), 0, "%s", err.msg);
		fixture_sleep_ms(2);
	}
	__atomic_store_n(&mem_ring_window_hook, NULL, __ATOMIC_RELAXED);
	lab_vm_stats(vm, &st);
	cr_assert_geq(drains, WANT_DRAINS, "only %u ring-full drains in %llu checkpoints",
		      (unsigned)drains, (unsigned long long)checkpoints);
	cr_assert_eq(st.errors, 0);
	free(shadow);
	free(bm);
	lab_vm_destroy(vm);
}

/* The lab VM checks each sync against the pages its guest says it stamped.
 * Reports taken behind its back look like writes the log lost: the next
 * sync must fail, naming the vCPU; an honest sync passes. */
static void lost_reports_are_caught(enum lab_dirty_log mode)
{
	struct mig_error err = { 0 };
	struct mig_device *mem;
	struct lab_stats base;
	struct lab_vm *vm;
	uint64_t *bm;

	vm = boot_filled(64ULL << 20, mode, false, 0);
	mem = mig_vm_find(lab_vm_mig(vm), MIG_DEV_MEMORY, 0);
	bm = calloc(lab_vm_bitmap_words(vm), 8);
	cr_assert(bm && mem);
	for (int stolen = 0; stolen < 2; stolen++) {
		int r;

		cr_assert_eq(lab_vm_dirty_sync(vm, bm, NULL, &err), 0, "%s", err.msg);
		lab_vm_stats(vm, &base);
		fixture_wait_passes(vm, &base, 1, 30);
		cr_assert_eq(lab_vm_pause(vm, &err), 0, "%s", err.msg);
		if (stolen)
			cr_assert_eq(mig_device_dirty_sync(mem, bm, NULL, &err), 0, "%s", err.msg);
		r = lab_vm_dirty_sync(vm, bm, NULL, &err);
		if (stolen)
			cr_assert_not_null(strstr(err.msg, "missed writes: vCPU 0 stamped"),
					   "sync returned %d: %s", r, err.msg);
		cr_assert_eq(r, stolen ? -EIO : 0, "%s", err.msg);
		cr_assert_eq(lab_vm_resume(vm, &err), 0, "%s", err.msg);
	}
	free(bm);
	lab_vm_destroy(vm);
}

Test(dirty_log, lost_reports_are_caught_bitmap)
{
	lost_reports_are_caught(LAB_DIRTY_LOG_BITMAP);
}

Test(dirty_log, lost_reports_are_caught_ring)
{
	lost_reports_are_caught(LAB_DIRTY_LOG_RING);
}

/* A syncing thread with io_uring requests completing (as the migration
 * threads have) gets task work flagged as a pending signal, and the kernel
 * cuts KVM_RESET_DIRTY_RINGS short when it sees one: entries harvested but
 * never reset, pages left writable without an entry.  The ring mode resets
 * from a thread of its own, so every sync here must come out whole. */
#define URING_TIMERS 32

Test(dirty_log, ring_sync_with_io_uring_completions_in_flight, .timeout = 60)
{
	struct __kernel_timespec ts[URING_TIMERS];
	struct mig_error err = { 0 };
	struct io_uring ring;
	struct lab_vm *vm;
	uint64_t *bm, n;

	vm = boot_filled(128ULL << 20, LAB_DIRTY_LOG_RING, false, 0);
	bm = calloc(lab_vm_bitmap_words(vm), 8);
	cr_assert_not_null(bm);
	cr_assert_eq(io_uring_queue_init(2 * URING_TIMERS, &ring, 0), 0);
	for (int it = 0; it < 15; it++) {
		fixture_sleep_ms(100);  /* the guest dirties a few thousand pages */
		/* timers firing every 20 us through the sync's reset */
		for (int k = 0; k < URING_TIMERS; k++) {
			ts[k] = (struct __kernel_timespec){ 0, 20000 + k * 20000 };
			io_uring_prep_timeout(io_uring_get_sqe(&ring), &ts[k], 0, 0);
		}
		cr_assert_eq(io_uring_submit(&ring), URING_TIMERS);
		cr_assert_eq(lab_vm_dirty_sync(vm, bm, &n, &err), 0, "sync %d: %s", it, err.msg);
		cr_assert_gt(n, 0);
		for (int k = 0; k < URING_TIMERS; k++) {
			struct io_uring_cqe *cqe;

			cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	io_uring_queue_exit(&ring);
	free(bm);
	lab_vm_destroy(vm);
}

/* KVM_RESET_DIRTY_RINGS says how many entries it reset.  An entry marked
 * harvested behind the engine's back makes that count differ from ours, and
 * the sync must fail rather than trust a log that may hide writes. */
Test(dirty_log, ring_reset_count_is_checked)
{
	struct mig_error err = { 0 };
	struct lab_stats base;
	struct lab_vm *vm;
	struct mem_ring *r;
	struct kvm_dirty_gfn *e;
	uint64_t *bm;

	vm = boot_filled(32ULL << 20, LAB_DIRTY_LOG_RING, false, 0);
	bm = calloc(lab_vm_bitmap_words(vm), 8);
	cr_assert_not_null(bm);
	cr_assert_eq(lab_vm_dirty_sync(vm, bm, NULL, &err), 0, "%s", err.msg);
	lab_vm_stats(vm, &base);
	fixture_wait_passes(vm, &base, 1, 30);
	cr_assert_eq(lab_vm_pause(vm, &err), 0, "%s", err.msg);

	r = &vm->mem->rings[0];
	e = &r->gfns[r->next & (r->entries - 1)];
	cr_assert(e->flags & KVM_DIRTY_GFN_F_DIRTY, "vCPU 0 wrote nothing since the sync");
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
	cr_assert_lt(lab_vm_dirty_sync(vm, bm, NULL, &err), 0);
	cr_assert_not_null(strstr(err.msg, "KVM_RESET_DIRTY_RINGS reset"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "dirty-log=bitmap"), "%s", err.msg);
	free(bm);
	lab_vm_destroy(vm);
}

/* The source reads the vCPU state after its final sync and last pages
 * (phases.md §3.4): that read must write no guest RAM, in either log. */
static void save_dirties_nothing(enum lab_dirty_log mode)
{
	struct mig_error err = { 0 };
	struct mig_digest before, after;
	struct mig_buf state = { 0 };
	struct lab_vm *vm;
	uint64_t words, count = 0;
	uint64_t *bm;

	vm = boot_filled(32ULL << 20, mode, false, 0);
	fixture_sleep_ms(50);
	words = lab_vm_bitmap_words(vm);
	bm = calloc(words, 8);
	cr_assert_not_null(bm);
	cr_assert_eq(lab_vm_pause(vm, &err), 0, "%s", err.msg);
	cr_assert_eq(lab_vm_dirty_sync(vm, bm, &count, &err), 0, "%s", err.msg);
	cr_assert_gt(count, 0, "a running guest dirtied nothing");
	cr_assert_eq(lab_vm_digest(vm, &before), 0);
	cr_assert_eq(lab_vm_save_state(vm, &state, &err), 0, "%s", err.msg);
	cr_assert_gt(state.len, 0);
	cr_assert_eq(lab_vm_digest(vm, &after), 0);
	memset(bm, 0, words * 8);
	cr_assert_eq(lab_vm_dirty_sync(vm, bm, &count, &err), 0, "%s", err.msg);
	cr_assert_eq(count, 0, "reading the vCPU state dirtied %llu pages",
		     (unsigned long long)count);
	cr_assert(before.hi == after.hi && before.lo == after.lo,
		  "reading the vCPU state changed guest RAM");
	mig_buf_free(&state);
	free(bm);
	lab_vm_destroy(vm);
}

Test(dirty_log, saving_vcpu_state_dirties_nothing_bitmap)
{
	save_dirties_nothing(LAB_DIRTY_LOG_BITMAP);
}

Test(dirty_log, saving_vcpu_state_dirties_nothing_ring)
{
	save_dirties_nothing(LAB_DIRTY_LOG_RING);
}
