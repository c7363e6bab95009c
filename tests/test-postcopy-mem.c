// SPDX-License-Identifier: MIT
/*
 * The memory class's post-copy receiver (devices/memory/uffd.c) on a real
 * lab VM: the guest is paused after its fill, its RAM is copied aside (the
 * "source"), every page is dropped and registered missing, and the guest
 * resumes.  Each page its vCPUs (or this process) touch faults; a server
 * thread reads the fault and places that page from the copy.  The guest's
 * own self-check then says whether every page came back with the content
 * it last wrote.  Around that: a background push of all pages, duplicates,
 * zero pages, dirty logging on arrived pages, a vCPU paused while it waits
 * for a page, a VM destroyed while its vCPUs wait, shmem (memfd) RAM, and
 * the refusals where userfaultfd is not permitted or not there.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>

#include <migrate/lab.h>

#include "devices-internal.h"
#include "lab/lab-abi.h"
#include "lab/lab-internal.h"
#include "lab-fixture.h"

const int test_requires_kvm = 1;

#define PAGE 4096ULL
#define MEM (64ULL << 20)
#define WSS (8ULL << 20)
#define MAX_LAT 65536

struct pc_env {
	struct lab_vm *vm;
	struct mem_dev *m;
	uint8_t *shadow;          /* RAM as it was when the guest was paused */
	pthread_t server, pusher;
	atomic_bool stop;
	atomic_bool hold;         /* keep vCPUs' faults unanswered */
	_Atomic unsigned held;    /* faults kept */
	pid_t main_tid;
	int server_r, push_r;     /* the threads' failures, read once joined */
	char server_msg[600], push_msg[600];
	/* per fault served: when it was read, and how long placing it took */
	double *t_read, *t_place;
	double *first_fault;      /* per page: when its first fault was read */
	uint32_t *fault_tid;      /* per page: by which thread */
	double t_resumed;
	_Atomic size_t nr_lat;
	_Atomic uint64_t done;    /* faults read and fully dealt with */
};

static bool bit(const uint64_t *bm, uint64_t pfn)
{
	return bm[pfn / 64] & (1ULL << (pfn % 64));
}

static bool page_is_zero(const uint8_t *p)
{
	for (size_t i = 0; i < PAGE; i += 8)
		if (*(const uint64_t *)(p + i))
			return false;
	return true;
}

/* Places pages [pfn, pfn + n) from the shadow, zero pages as zero pages. */
static int place_from_shadow(struct pc_env *e, uint64_t pfn, uint64_t n, struct mig_error *err)
{
	int placed = 0;

	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *src = e->shadow + (pfn + i) * PAGE;
		int r = page_is_zero(src) ? mem_postcopy_place_zero(e->m, pfn + i, 1, err) :
			mem_postcopy_place(e->m, pfn + i, src, 1, err);

		if (r < 0)
			return r;
		placed += r;
	}
	return placed;
}

static void *server_main(void *arg)
{
	struct pc_env *e = arg;
	struct mig_pc_fault f[16], kept[64];
	unsigned nr_kept = 0;
	struct mig_error err = { 0 };

	while (!atomic_load(&e->stop)) {
		int n = mem_postcopy_read_faults(e->m, f, 16, 20, &err);
		double t_read = fixture_now();

		if (n < 0) {
			e->server_r = n;
			snprintf(e->server_msg, sizeof(e->server_msg), "%s", err.msg);
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			size_t k;
			int r;

			/* this process's own faults (stats, pause) always: only
			 * the vCPUs wait */
			if (atomic_load(&e->hold) && f[i].tid != (uint32_t)e->main_tid) {
				bool known = false;

				/* a page asked for again is kept once; none is
				 * placed while holding */
				for (unsigned j = 0; j < nr_kept && !known; j++)
					known = kept[j].pfn == f[i].pfn;
				if (!known && nr_kept == 64) {
					e->server_r = -E2BIG;
					snprintf(e->server_msg, sizeof(e->server_msg),
						 "more than 64 pages held");
					return NULL;
				}
				if (!known)
					kept[nr_kept++] = f[i];
				atomic_store(&e->held, nr_kept);
				continue;
			}
			r = place_from_shadow(e, f[i].pfn, 1, &err);
			if (r < 0) {
				e->server_r = r;
				snprintf(e->server_msg, sizeof(e->server_msg), "%s", err.msg);
				return NULL;
			}
			if (!e->first_fault[f[i].pfn]) {
				e->first_fault[f[i].pfn] = t_read;
				e->fault_tid[f[i].pfn] = f[i].tid;
			}
			k = atomic_fetch_add(&e->nr_lat, 1);
			if (k < MAX_LAT) {
				e->t_read[k] = t_read;
				e->t_place[k] = fixture_now() - t_read;
			}
			atomic_fetch_add(&e->done, 1);
		}
		if (!atomic_load(&e->hold) && nr_kept) {
			for (unsigned i = 0; i < nr_kept; i++)
				if (place_from_shadow(e, kept[i].pfn, 1, &err) < 0) {
					e->server_r = -EIO;
					snprintf(e->server_msg, sizeof(e->server_msg), "%s", err.msg);
					return NULL;
				}
			atomic_fetch_add(&e->done, nr_kept);
			nr_kept = 0;
		}
	}
	return NULL;
}

/* The background push: every page in order, as a source would send them. */
static void *pusher_main(void *arg)
{
	struct pc_env *e = arg;
	struct mig_error err = { 0 };

	for (uint64_t p = 0; p < e->m->nr_pages; p += 64) {
		uint64_t n = e->m->nr_pages - p < 64 ? e->m->nr_pages - p : 64;

		if (place_from_shadow(e, p, n, &err) < 0) {
			e->push_r = -EIO;
			snprintf(e->push_msg, sizeof(e->push_msg), "push: %s", err.msg);
			return NULL;
		}
	}
	return NULL;
}

/* The guest's RAM becomes a MAP_SHARED mapping of a memfd holding the same
 * bytes, at the same address (KVM's memslots follow the address), as the
 * memfd-backed RAM of a same-host hand-over will be. */
static void make_shared(struct pc_env *e)
{
	int fd = memfd_create("guest-ram", MFD_CLOEXEC);
	void *p;

	cr_assert_geq(fd, 0, "memfd_create: %s", strerror(errno));
	cr_assert_eq(ftruncate(fd, (off_t)e->m->ram_bytes), 0);
	cr_assert_eq(pwrite(fd, e->shadow, e->m->ram_bytes, 0), (ssize_t)e->m->ram_bytes);
	p = mmap(e->m->ram, e->m->ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	cr_assert_eq(p, (void *)e->m->ram, "mmap of the memfd: %s", strerror(errno));
	/* the memory class's now: it closes it with the VM */
	e->m->ram_fd = fd;
}

/* How many of RAM's pages are in memory (mincore: anonymous pages, or
 * the shmem file's pages). */
static uint64_t resident_pages(struct mem_dev *m)
{
	unsigned char *v = malloc(m->nr_pages);
	uint64_t n = 0;

	cr_assert_not_null(v);
	cr_assert_eq(mincore(m->ram, m->ram_bytes, v), 0, "mincore: %s", strerror(errno));
	for (uint64_t i = 0; i < m->nr_pages; i++)
		n += v[i] & 1;
	free(v);
	return n;
}

static uint64_t tbl_read(uint8_t *ram, unsigned vcpu, unsigned off)
{
	return *(volatile uint64_t *)(ram + LAB_TBL_VCPUS + (uint64_t)vcpu * LAB_VA_SIZE + off);
}

/* Which pages the vCPUs write (their working sets), from the table. */
static bool *working_set(struct pc_env *e)
{
	bool *in = calloc(e->m->nr_pages, sizeof(bool));

	cr_assert_not_null(in);
	for (uint32_t v = 0; v < lab_vm_config(e->vm)->vcpus; v++) {
		uint64_t first = tbl_read(e->m->ram, v, LAB_VA_REGION) / PAGE;
		uint64_t n = tbl_read(e->m->ram, v, LAB_VA_WSS_PAGES);

		cr_assert_gt(n, 0);
		for (uint64_t p = first; p < first + n; p++)
			in[p] = true;
	}
	return in;
}

/* A guest booted, filled, one pass into its work, paused, its RAM copied
 * aside; then (with `begin`) every page dropped and registered missing. */
static void env_setup(struct pc_env *e, uint32_t vcpus, enum lab_dirty_log mode, bool shared,
		      bool begin)
{
	struct lab_config cfg;
	struct mig_error err = { 0 };
	struct lab_stats base;
	struct mig_pc_stats st;

	memset(e, 0, sizeof(*e));
	e->main_tid = (pid_t)syscall(SYS_gettid);
	lab_config_default(&cfg);
	cfg.mem_bytes = MEM;
	cfg.wss_bytes = WSS;
	cfg.vcpus = vcpus;
	cfg.dirty_log = mode;
	cr_assert_eq(lab_vm_create(&cfg, &e->vm, &err), 0, "%s", err.msg);
	cr_assert_eq(lab_vm_start(e->vm, &err), 0, "%s", err.msg);
	fixture_wait_filled(e->vm, 60);
	lab_vm_stats(e->vm, &base);
	fixture_wait_passes(e->vm, &base, 1, 60);
	cr_assert_eq(lab_vm_pause(e->vm, &err), 0, "%s", err.msg);
	e->m = e->vm->mem;
	e->shadow = malloc(e->m->ram_bytes);
	e->t_read = calloc(MAX_LAT, sizeof(double));
	e->t_place = calloc(MAX_LAT, sizeof(double));
	e->first_fault = calloc(e->m->nr_pages, sizeof(double));
	e->fault_tid = calloc(e->m->nr_pages, sizeof(uint32_t));
	cr_assert(e->shadow && e->t_read && e->t_place && e->first_fault && e->fault_tid);
	memcpy(e->shadow, e->m->ram, e->m->ram_bytes);
	if (shared)
		make_shared(e);

	if (!begin)
		return;   /* the caller chooses what is present, then begins */
	cr_assert_eq(mem_postcopy_begin(e->m, NULL, &err), 0, "%s", err.msg);
	mem_postcopy_stats(e->m, &st);
	cr_assert_eq(st.missing, e->m->nr_pages);
	cr_assert_eq(resident_pages(e->m), 0, "pages still in memory after they were dropped");
	cr_assert_geq(mem_postcopy_fd(e->m), 0);
}

static void env_serve(struct pc_env *e, bool push)
{
	cr_assert_eq(pthread_create(&e->server, NULL, server_main, e), 0);
	if (push) {
		cr_assert_eq(pthread_create(&e->pusher, NULL, pusher_main, e), 0);
	}
}

static void env_stop_server(struct pc_env *e)
{
	atomic_store(&e->stop, true);
	pthread_join(e->server, NULL);
	cr_assert_eq(e->server_r, 0, "fault server: %s", e->server_msg);
}

static void env_teardown(struct pc_env *e)
{
	lab_vm_destroy(e->vm);
	free(e->shadow);
	free(e->t_read);
	free(e->t_place);
	free(e->first_fault);
	free(e->fault_tid);
}

/* The guest runs `passes` more passes over its working set with its
 * self-check passing. */
static void guest_checks_out(struct pc_env *e, uint64_t passes)
{
	struct lab_stats base, st;

	lab_vm_stats(e->vm, &base);
	fixture_wait_passes(e->vm, &base, passes, 120);
	lab_vm_stats(e->vm, &st);
	cr_assert_eq(st.errors, 0, "the guest found %llu pages not as it left them",
		     (unsigned long long)st.errors);
	cr_assert_eq(st.error_reports, 0);
	for (uint32_t i = 0; i < st.nr_vcpus; i++)
		cr_assert_eq(st.vcpu[i].state, LAB_STATE_RUNNING, "vCPU %u in state %llu", i,
			     (unsigned long long)st.vcpu[i].state);
}

/*
 * The server has dealt with every fault read so far.  The kernel installs
 * a page and wakes its vCPU inside UFFDIO_COPY, before the call returns
 * and the page is counted: a guest that raced past its last page can be
 * seen before the server's bookkeeping of it (seen under heavy load).
 * No new fault comes once the guest's pages are all in.
 */
static void server_caught_up(struct pc_env *e)
{
	double end = fixture_now() + 30;
	struct mig_pc_stats st;

	for (;;) {
		mem_postcopy_stats(e->m, &st);
		cr_assert_eq(e->server_r, 0, "fault server: %s", e->server_msg);
		if (atomic_load(&e->done) >= st.faults)
			return;
		cr_assert_lt(fixture_now(), end, "the fault server has dealt with %llu of %llu "
			     "faults after 30 s", (unsigned long long)atomic_load(&e->done),
			     (unsigned long long)st.faults);
		fixture_sleep_ms(1);
	}
}

/*
 * Every page of the working sets was placed: the guest has made passes
 * over them all, and a vCPU can only get past a missing page once it is
 * placed.  A page missing here was read by the guest without a fault we
 * answered, so the message says when that page's first fault came.
 */
static void every_wss_page_arrived(struct pc_env *e, const bool *in_wss, double checked)
{
	struct mig_pc_stats st;

	server_caught_up(e);
	mem_postcopy_stats(e->m, &st);
	for (uint64_t p = 0; p < e->m->nr_pages; p++)
		if (in_wss[p] && !mem_postcopy_present(e->m, p)) {
			unsigned char v = 0;

			mincore(e->m->ram + p * PAGE, PAGE, &v);
			cr_assert_fail("working-set page %#llx not present (resident %d; first fault "
				       "%.3f s after resume by tid %u (main %d), checked at %.3f s; "
				       "faults %llu stale %llu placed %llu zeroed %llu dup %llu "
				       "missing %llu)", (unsigned long long)p, v & 1,
				       e->first_fault[p] ? e->first_fault[p] - e->t_resumed : -1.0,
				       e->fault_tid[p], (int)e->main_tid, checked - e->t_resumed,
				       (unsigned long long)st.faults,
				       (unsigned long long)st.stale_faults,
				       (unsigned long long)st.placed, (unsigned long long)st.zeroed,
				       (unsigned long long)st.duplicates,
				       (unsigned long long)st.missing);
		}
}

/* Pages the guest writes after they arrived are in the next dirty sync,
 * and pages it does not write are not. */
static void dirty_log_sees_writes(struct pc_env *e, const bool *in_wss)
{
	struct mig_error err = { 0 };
	uint64_t words = lab_vm_bitmap_words(e->vm), count = 0;
	uint64_t *bm = calloc(words, 8);
	struct lab_stats base;

	cr_assert_not_null(bm);
	cr_assert_eq(lab_vm_dirty_sync(e->vm, bm, NULL, &err), 0, "%s", err.msg);
	memset(bm, 0, words * 8);
	lab_vm_stats(e->vm, &base);
	fixture_wait_passes(e->vm, &base, 2, 60);
	cr_assert_eq(lab_vm_dirty_sync(e->vm, bm, &count, &err), 0, "%s", err.msg);
	for (uint64_t p = LAB_SYSTEM_BYTES / PAGE; p < e->m->nr_pages; p++) {
		if (in_wss[p])
			cr_assert(bit(bm, p), "working-set page %#llx written after it arrived, "
				  "but not reported dirty", (unsigned long long)p);
		else
			cr_assert_not(bit(bm, p), "page %#llx outside the working set reported dirty",
				      (unsigned long long)p);
	}
	free(bm);
}

/* Every page outside the system area and the working sets holds what the
 * source had: it came by fault, push or the final placement, once. */
static void cold_pages_match(struct pc_env *e, const bool *in_wss)
{
	for (uint64_t p = LAB_SYSTEM_BYTES / PAGE; p < e->m->nr_pages; p++)
		if (!in_wss[p])
			cr_assert_eq(memcmp(e->m->ram + p * PAGE, e->shadow + p * PAGE, PAGE), 0,
				     "page %#llx differs from the source's", (unsigned long long)p);
}

/* A page placed again, with other bytes, is ignored: the first copy stays. */
static void duplicate_is_ignored(struct pc_env *e, uint64_t pfn)
{
	struct mig_error err = { 0 };
	struct mig_pc_stats before, after;
	uint8_t junk[PAGE];

	memset(junk, 0xa5, sizeof(junk));
	cr_assert(mem_postcopy_present(e->m, pfn));
	mem_postcopy_stats(e->m, &before);
	cr_assert_eq(mem_postcopy_place(e->m, pfn, junk, 1, &err), 0, "%s", err.msg);
	cr_assert_eq(mem_postcopy_place_zero(e->m, pfn, 1, &err), 0, "%s", err.msg);
	mem_postcopy_stats(e->m, &after);
	cr_assert_eq(after.duplicates, before.duplicates + 2);
	cr_assert_eq(memcmp(e->m->ram + pfn * PAGE, e->shadow + pfn * PAGE, PAGE), 0,
		     "a duplicate overwrote page %#llx", (unsigned long long)pfn);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The figures docs/devices.md quotes: with one vCPU touching missing pages
 * one after another, the gap between two faults read is a whole round
 * trip (fault, read, copy, wake, the guest on to its next page). */
static void report_latency(struct pc_env *e, const char *what)
{
	size_t n = atomic_load(&e->nr_lat), k = 0;
	double *gap, *svc;

	if (n > MAX_LAT)
		n = MAX_LAT;
	if (n < 3)
		return;
	gap = malloc(n * sizeof(double));
	svc = malloc(n * sizeof(double));
	cr_assert(gap && svc);
	for (size_t i = 1; i < n; i++)
		gap[k++] = (e->t_read[i] - e->t_read[i - 1]) * 1e6;
	for (size_t i = 0; i < n; i++)
		svc[i] = e->t_place[i] * 1e6;
	qsort(gap, k, sizeof(double), cmp_double);
	qsort(svc, n, sizeof(double), cmp_double);
	cr_log_info("%s: %zu faults; fault-to-fault round trip us p50 %.1f p99 %.1f max %.1f; "
		    "read-to-placed us p50 %.1f p99 %.1f max %.1f", what, n, gap[k / 2],
		    gap[k * 99 / 100], gap[k - 1], svc[n / 2], svc[n * 99 / 100], svc[n - 1]);
	free(gap);
	free(svc);
}

/*
 * Only faults are served.  The pages the guest never touches stay
 * missing, so completing is refused until the rest is placed; then RAM
 * is ordinary memory again and the dirty log goes on as before.
 */
static void faults_only(uint32_t vcpus, enum lab_dirty_log mode, bool shared, const char *what)
{
	struct pc_env e;
	struct mig_error err = { 0 };
	struct mig_pc_stats st;
	bool *in_wss;
	double checked;
	int r;

	env_setup(&e, vcpus, mode, shared, true);
	env_serve(&e, false);
	e.t_resumed = fixture_now();
	cr_assert_eq(lab_vm_resume(e.vm, &err), 0, "%s", err.msg);
	guest_checks_out(&e, 3);
	checked = fixture_now();
	server_caught_up(&e);
	report_latency(&e, what);

	in_wss = working_set(&e);
	mem_postcopy_stats(e.m, &st);
	cr_assert_geq(st.faults, WSS / PAGE, "only %llu faults for a %llu-page working set",
		      (unsigned long long)st.faults, (unsigned long long)(WSS / PAGE));
	cr_assert_gt(st.missing, 0, "pages the guest never touched arrived anyway");
	cr_assert_eq(st.missing + st.placed + st.zeroed, e.m->nr_pages);
	every_wss_page_arrived(&e, in_wss, checked);

	/* writes to pages that arrived are logged while others are missing */
	dirty_log_sees_writes(&e, in_wss);

	r = mem_postcopy_complete(e.m, &err);
	cr_assert_eq(r, -EBUSY, "completing with pages missing: %d", r);
	cr_assert(strstr(err.msg, "still missing"), "%s", err.msg);

	/* the rest, as the source's last push would bring it */
	memset(&err, 0, sizeof(err));
	r = place_from_shadow(&e, 0, e.m->nr_pages, &err);
	cr_assert_geq(r, 0, "%s", err.msg);
	cr_assert_eq((uint64_t)r, st.missing, "%d pages placed, %llu were missing", r,
		     (unsigned long long)st.missing);
	mem_postcopy_stats(e.m, &st);
	cr_assert_eq(st.missing, 0);
	cold_pages_match(&e, in_wss);
	duplicate_is_ignored(&e, e.m->nr_pages - 1);

	env_stop_server(&e);
	cr_assert_eq(mem_postcopy_complete(e.m, &err), 0, "%s", err.msg);
	cr_assert_eq(mem_postcopy_fd(e.m), -1);
	guest_checks_out(&e, 1);
	dirty_log_sees_writes(&e, in_wss);
	free(in_wss);
	env_teardown(&e);
}

Test(postcopy_mem, faulted_pages_anonymous_bitmap, .timeout = 300)
{
	faults_only(1, LAB_DIRTY_LOG_BITMAP, false, "anonymous RAM, 1 vCPU");
}

Test(postcopy_mem, faulted_pages_anonymous_ring, .timeout = 300)
{
	faults_only(2, LAB_DIRTY_LOG_RING, false, "anonymous RAM, 2 vCPUs, dirty ring");
}

Test(postcopy_mem, faulted_pages_shmem_bitmap, .timeout = 300)
{
	faults_only(1, LAB_DIRTY_LOG_BITMAP, true, "shmem RAM, 1 vCPU");
}

Test(postcopy_mem, faulted_pages_shmem_ring, .timeout = 300)
{
	faults_only(2, LAB_DIRTY_LOG_RING, true, "shmem RAM, 2 vCPUs, dirty ring");
}

/*
 * The background push places every page while the vCPUs fault on theirs:
 * each page lands once, whichever comes first, and the other copy is a
 * counted duplicate.  Zero pages arrive as zero pages.
 */
static void push_and_faults(bool shared)
{
	struct pc_env e;
	struct mig_error err = { 0 };
	struct mig_pc_stats st;
	uint64_t zero = 0;
	bool *in_wss;

	env_setup(&e, 2, LAB_DIRTY_LOG_BITMAP, shared, true);
	for (uint64_t p = 0; p < e.m->nr_pages; p++)
		zero += page_is_zero(e.shadow + p * PAGE);
	cr_assert_gt(zero, 0, "the guest has no zero page to place as one");
	env_serve(&e, true);
	cr_assert_eq(lab_vm_resume(e.vm, &err), 0, "%s", err.msg);
	pthread_join(e.pusher, NULL);
	cr_assert_eq(e.push_r, 0, "%s", e.push_msg);
	server_caught_up(&e);
	mem_postcopy_stats(e.m, &st);
	cr_assert_eq(st.missing, 0, "%llu pages missing after the push",
		     (unsigned long long)st.missing);
	cr_assert_eq(st.placed + st.zeroed, e.m->nr_pages, "%llu + %llu pages placed of %llu",
		     (unsigned long long)st.placed, (unsigned long long)st.zeroed,
		     (unsigned long long)e.m->nr_pages);
	cr_assert_eq(st.zeroed, zero);
	guest_checks_out(&e, 2);

	in_wss = working_set(&e);
	cold_pages_match(&e, in_wss);
	duplicate_is_ignored(&e, e.m->nr_pages - 1);
	env_stop_server(&e);
	cr_assert_eq(mem_postcopy_complete(e.m, &err), 0, "%s", err.msg);
	dirty_log_sees_writes(&e, in_wss);
	free(in_wss);
	env_teardown(&e);
}

Test(postcopy_mem, background_push_anonymous, .timeout = 300)
{
	push_and_faults(false);
}

Test(postcopy_mem, background_push_shmem, .timeout = 300)
{
	push_and_faults(true);
}

/*
 * As after pre-copy: the pages that arrived stay (and keep their content,
 * THP-backed or not), only the rest is dropped and faults.  Here the
 * working sets are missing, as the pages the guest dirtied last would be.
 */
static void partly_present(bool shared)
{
	struct pc_env e;
	struct mig_error err = { 0 };
	struct mig_pc_stats st;
	uint64_t *present, nr_wss = 0;
	bool *in_wss;

	env_setup(&e, 2, LAB_DIRTY_LOG_BITMAP, shared, false);
	in_wss = working_set(&e);
	present = calloc(mem_bitmap_words(e.m), 8);
	cr_assert_not_null(present);
	for (uint64_t p = 0; p < e.m->nr_pages; p++) {
		if (in_wss[p])
			nr_wss++;
		else
			present[p / 64] |= 1ULL << (p % 64);
	}
	cr_assert_eq(mem_postcopy_begin(e.m, present, &err), 0, "%s", err.msg);
	mem_postcopy_stats(e.m, &st);
	cr_assert_eq(st.missing, nr_wss);
	cr_assert_eq(resident_pages(e.m), e.m->nr_pages - nr_wss);
	for (uint64_t p = 0; p < e.m->nr_pages; p++)
		cr_assert_eq(mem_postcopy_present(e.m, p), !in_wss[p]);
	cold_pages_match(&e, in_wss);

	env_serve(&e, false);
	e.t_resumed = fixture_now();
	cr_assert_eq(lab_vm_resume(e.vm, &err), 0, "%s", err.msg);
	guest_checks_out(&e, 2);
	every_wss_page_arrived(&e, in_wss, fixture_now());
	mem_postcopy_stats(e.m, &st);
	cr_assert_eq(st.missing, 0);
	/* each missing page faulted (a vCPU kicked while it waits may fault
	 * on the same page again: at least once) and came once */
	cr_assert_geq(st.faults, nr_wss, "%llu faults for %llu missing pages",
		      (unsigned long long)st.faults, (unsigned long long)nr_wss);
	cr_assert_eq(st.placed + st.zeroed, nr_wss);
	env_stop_server(&e);
	cr_assert_eq(mem_postcopy_complete(e.m, &err), 0, "%s", err.msg);
	cold_pages_match(&e, in_wss);
	free(present);
	free(in_wss);
	env_teardown(&e);
}

Test(postcopy_mem, partly_present_anonymous, .timeout = 300)
{
	partly_present(false);
}

Test(postcopy_mem, partly_present_shmem, .timeout = 300)
{
	partly_present(true);
}

/* MB/s of placing pages [first, first + n) in runs of `run` pages. */
static double place_runs(struct pc_env *e, uint64_t first, uint64_t n, uint64_t run)
{
	struct mig_error err = { 0 };
	double t0 = fixture_now();

	for (uint64_t p = first; p < first + n; p += run) {
		uint64_t k = first + n - p < run ? first + n - p : run;

		cr_assert_eq(mem_postcopy_place(e->m, p, e->shadow + p * PAGE, k, &err), (int)k,
			     "%s", err.msg);
	}
	return (double)(n * PAGE) / (fixture_now() - t0) / 1e6;
}

/* MB/s of copying `bytes` into memory never touched (`fresh`) or already
 * faulted in: what placing is measured beside. */
static double memcpy_mbs(const uint8_t *src, size_t bytes, bool fresh)
{
	uint8_t *dst = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double t0, mbs;

	cr_assert_neq(dst, MAP_FAILED);
	if (!fresh)
		memset(dst, 1, bytes);
	t0 = fixture_now();
	memcpy(dst, src, bytes);
	mbs = (double)bytes / (fixture_now() - t0) / 1e6;
	munmap(dst, bytes);
	return mbs;
}

/*
 * Runs of pages in one call, the engine's background push: a run that
 * meets pages already there places only the others and leaves those as
 * they are.  The guest stays paused.  The rates are logged for
 * docs/devices.md (nothing is asserted of them).
 */
Test(postcopy_mem, runs_of_pages, .timeout = 300)
{
	struct pc_env e;
	struct mig_error err = { 0 };
	struct mig_pc_stats st;
	uint8_t junk[PAGE];
	uint64_t pre = 0;
	double r1, r64, r512, fresh, warm;
	int r;

	env_setup(&e, 1, LAB_DIRTY_LOG_BITMAP, false, true);
	cr_assert_eq(e.m->nr_pages, 16384);
	r1 = place_runs(&e, 0, 1024, 1);

	/* every third page of [1024, 2048) first, from other bytes */
	memset(junk, 0x5a, sizeof(junk));
	for (uint64_t p = 1024; p < 2048; p += 3, pre++)
		cr_assert_eq(mem_postcopy_place(e.m, p, junk, 1, &err), 1, "%s", err.msg);
	r = mem_postcopy_place(e.m, 1024, e.shadow + 1024 * PAGE, 1024, &err);
	cr_assert_eq(r, (int)(1024 - pre), "%d placed, %llu expected: %s", r,
		     (unsigned long long)(1024 - pre), err.msg);

	r64 = place_runs(&e, 2048, 4096, 64);
	r512 = place_runs(&e, 6144, 8192, 512);
	cr_assert_eq(mem_postcopy_place(e.m, 14336, e.shadow + 14336 * PAGE, 2048, &err), 2048,
		     "%s", err.msg);
	mem_postcopy_stats(e.m, &st);
	cr_assert_eq(st.missing, 0);
	cr_assert_eq(st.placed, e.m->nr_pages);
	cr_assert_eq(st.duplicates, pre);
	for (uint64_t p = 0; p < e.m->nr_pages; p++) {
		bool first_junk = p >= 1024 && p < 2048 && (p - 1024) % 3 == 0;

		cr_assert_eq(memcmp(e.m->ram + p * PAGE, first_junk ? junk : e.shadow + p * PAGE,
				    PAGE), 0, "page %#llx is not the first copy placed",
			     (unsigned long long)p);
	}
	cr_assert_eq(mem_postcopy_complete(e.m, &err), 0, "%s", err.msg);

	fresh = memcpy_mbs(e.shadow, 32ULL << 20, true);
	warm = memcpy_mbs(e.shadow, 32ULL << 20, false);
	cr_log_info("placing MB/s: runs of 1 page %.0f, of 64 %.0f, of 512 %.0f; memcpy into "
		    "fresh memory %.0f, into faulted-in memory %.0f", r1, r64, r512, fresh, warm);
	env_teardown(&e);
}

/* Holds the vCPUs' faults until `n` pages are held. */
static void hold_until(struct pc_env *e, unsigned n)
{
	double end = fixture_now() + 30;

	while (atomic_load(&e->held) < n) {
		cr_assert_lt(fixture_now(), end, "the vCPUs did not fault on their missing pages");
		fixture_sleep_ms(5);
	}
}

/*
 * A vCPU waiting in KVM_RUN for a page of guest data (KVM maps it with
 * get_user_pages(), an interruptible wait) can be paused while the page
 * is missing: the engine must be able to stop vCPUs whose pages are late.
 * Woken with their pages still missing, the vCPUs fault again.
 */
Test(postcopy_mem, vcpu_waiting_for_a_data_page_pauses, .timeout = 300)
{
	struct pc_env e;
	struct mig_error err = { 0 };
	struct mig_pc_stats st, now;
	uint64_t *present;
	bool *in_wss;
	double end;

	env_setup(&e, 2, LAB_DIRTY_LOG_BITMAP, false, false);
	in_wss = working_set(&e);
	present = calloc(mem_bitmap_words(e.m), 8);
	cr_assert_not_null(present);
	for (uint64_t p = 0; p < e.m->nr_pages; p++)
		if (!in_wss[p])
			present[p / 64] |= 1ULL << (p % 64);
	cr_assert_eq(mem_postcopy_begin(e.m, present, &err), 0, "%s", err.msg);
	atomic_store(&e.hold, true);
	env_serve(&e, false);
	cr_assert_eq(lab_vm_resume(e.vm, &err), 0, "%s", err.msg);
	hold_until(&e, 2);

	mem_postcopy_stats(e.m, &st);
	cr_assert_eq(mem_postcopy_wake(e.m, 0, e.m->nr_pages, &err), 0, "%s", err.msg);
	end = fixture_now() + 30;
	for (;;) {
		mem_postcopy_stats(e.m, &now);
		if (now.faults >= st.faults + 2)
			break;
		cr_assert_lt(fixture_now(), end, "the woken vCPUs did not fault again (%llu, %llu)",
			     (unsigned long long)st.faults, (unsigned long long)now.faults);
		fixture_sleep_ms(5);
	}
	cr_assert_eq(lab_vm_pause(e.vm, &err), 0, "%s", err.msg);
	cr_assert_not(lab_vm_is_running(e.vm));
	mem_postcopy_stats(e.m, &now);
	cr_assert_eq(now.missing, st.missing, "a page was placed before the pause returned");
	atomic_store(&e.hold, false);
	cr_assert_eq(lab_vm_resume(e.vm, &err), 0, "%s", err.msg);
	guest_checks_out(&e, 2);
	env_stop_server(&e);
	free(present);
	free(in_wss);
	env_teardown(&e);
}

struct pause_call {
	struct lab_vm *vm;
	atomic_bool done;
	int r;
	struct mig_error err;
};

static void *pause_main(void *arg)
{
	struct pause_call *c = arg;

	c->r = lab_vm_pause(c->vm, &c->err);
	atomic_store(&c->done, true);
	return NULL;
}

/*
 * A guest page that KVM reads from kernel mode (under PVM's shadow paging,
 * the guest's page tables; elsewhere what KVM emulates or reads for
 * itself) is another matter.  That fault is retried on a signal that is
 * not fatal, so a kicked vCPU that waits for such a page spins in the
 * kernel, faulting again and again, and leaves KVM_RUN only once the page
 * is there.  What is checked: the pause completes once the page is
 * placed, and the guest runs on correctly; the log says whether the pause
 * had to wait for the page (it does on the lab host).
 */
Test(postcopy_mem, vcpu_waiting_for_a_page_table_page_pauses_once_it_arrives, .timeout = 300)
{
	struct pc_env e;
	struct mig_error err = { 0 };
	struct mig_pc_stats st, now;
	struct pause_call c = { 0 };
	pthread_t t;
	double end;

	env_setup(&e, 2, LAB_DIRTY_LOG_BITMAP, false, true);
	atomic_store(&e.hold, true);
	env_serve(&e, false);
	cr_assert_eq(lab_vm_resume(e.vm, &err), 0, "%s", err.msg);
	hold_until(&e, 1);
	mem_postcopy_stats(e.m, &st);
	c.vm = e.vm;
	cr_assert_eq(pthread_create(&t, NULL, pause_main, &c), 0);
	/* either the pause completes with the page missing, or the kicked
	 * vCPU is seen faulting on it again and again */
	end = fixture_now() + 30;
	for (;;) {
		mem_postcopy_stats(e.m, &now);
		if (atomic_load(&c.done) || now.faults >= st.faults + 20)
			break;
		cr_assert_lt(fixture_now(), end, "neither paused nor faulting again");
		fixture_sleep_ms(1);
	}
	cr_log_info("pause with a page-table page missing: %s (%llu faults read meanwhile)",
		    atomic_load(&c.done) ? "completed at once" :
		    "the kicked vCPU spins in the kernel until the page arrives",
		    (unsigned long long)(now.faults - st.faults));
	atomic_store(&e.hold, false);
	pthread_join(t, NULL);
	cr_assert_eq(c.r, 0, "%s", c.err.msg);
	cr_assert_not(lab_vm_is_running(e.vm));
	cr_assert_eq(lab_vm_resume(e.vm, &err), 0, "%s", err.msg);
	guest_checks_out(&e, 2);
	env_stop_server(&e);
	env_teardown(&e);
}

/* This process as on a kernel without userfaultfd: the system call and
 * /dev/userfaultfd's USERFAULTFD_IOC_NEW answer ENOSYS (a seccomp filter). */
static void no_userfaultfd(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, USERFAULTFD_IOC_NEW, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		_exit(3);
}

/* Where the kernel has no userfaultfd, the class says post-copy is not
 * possible here, and begin changes nothing. */
Test(postcopy_mem, refused_without_userfaultfd)
{
	int status;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct mem_dev fake = { .ram_fd = 0 };
		struct mig_error err = { 0 };
		int r;

		no_userfaultfd();
		r = mem_postcopy_probe(&fake, &err);
		if (r != -ENOSYS || !strstr(err.msg, "no userfaultfd") ||
		    !strstr(err.msg, "post-copy is not possible on this host")) {
			fprintf(stderr, "probe: %d %s\n", r, err.msg);
			_exit(1);
		}
		memset(&err, 0, sizeof(err));
		r = mem_postcopy_begin(&fake, NULL, &err);
		if (r != -ENOSYS || fake.postcopy) {
			fprintf(stderr, "begin: %d %s\n", r, err.msg);
			_exit(2);
		}
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the refusal was not the clear one (child status %#x)", status);
}

/* Where userfaultfd for kernel faults is not permitted (an unprivileged
 * user while vm.unprivileged_userfaultfd is 0, /dev/userfaultfd root's
 * alone), the class says so and nothing is registered. */
Test(postcopy_mem, refused_without_permission)
{
	int status;
	pid_t pid;

	if (geteuid() != 0)
		cr_skip_test("needs root to become an unprivileged user");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct mem_dev fake = { .ram_fd = -1 };
		struct mig_error err = { 0 };
		int r;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(3);
		r = mem_postcopy_probe(&fake, &err);
		if (r != -EPERM || !strstr(err.msg, "not permitted") ||
		    !strstr(err.msg, "CAP_SYS_PTRACE")) {
			fprintf(stderr, "probe: %d %s\n", r, err.msg);
			_exit(1);
		}
		memset(&err, 0, sizeof(err));
		r = mem_postcopy_begin(&fake, NULL, &err);
		if (r != -EPERM || fake.postcopy || !strstr(err.msg, "not permitted")) {
			fprintf(stderr, "begin: %d %s\n", r, err.msg);
			_exit(2);
		}
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the refusal was not the clear one (child status %#x)", status);
}

/* A destination given up while its vCPUs wait for pages: the VM goes
 * (kicked out of KVM_RUN, then the userfaultfd closed) without a hang. */
Test(postcopy_mem, destroyed_while_vcpus_wait, .timeout = 120)
{
	struct pc_env e;
	struct mig_error err = { 0 };
	struct mig_pc_stats st;

	env_setup(&e, 2, LAB_DIRTY_LOG_BITMAP, false, true);
	atomic_store(&e.hold, true);
	env_serve(&e, false);
	cr_assert_eq(lab_vm_resume(e.vm, &err), 0, "%s", err.msg);
	hold_until(&e, 1);
	env_stop_server(&e);
	mem_postcopy_stats(e.m, &st);
	cr_assert_gt(st.missing, 0);
	env_teardown(&e);
}
