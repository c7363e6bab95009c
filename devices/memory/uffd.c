// SPDX-License-Identifier: MIT
/*
 * Memory class, the destination's half of post-copy: guest RAM whose
 * missing pages are registered with userfaultfd (MISSING mode), so that
 * whoever touches one, a vCPU inside KVM_RUN or a thread of ours, blocks
 * until the page is placed.  The engine reads the faults, asks the source
 * for those pages first, and places whatever arrives (asked for or pushed
 * in the background) through here; a present-page bitmap makes each page
 * land once.  docs/devices.md §13 says what was measured on the lab host
 * and what the engine builds on it.
 *
 * Why the fault reaches us from inside KVM: KVM resolves a guest page by
 * the host virtual address of its memslot, with get_user_pages() (and,
 * for shadow paging, copy_from_user() of the guest's page tables); both
 * take the ordinary fault path, which hands a missing page in a
 * registered range to the userfaultfd and sleeps.  A signal (the vCPU
 * class's kick) gets a vCPU out of a get_user_pages() wait with EINTR,
 * but a kernel-mode copy_from_user() fault is retried on any signal that
 * is not fatal: that vCPU spins until its page comes or the descriptor is
 * closed (mem_postcopy_end()).  Those faults happen in kernel mode: the
 * descriptor must be made without UFFD_USER_MODE_ONLY, which needs
 * CAP_SYS_PTRACE (or vm.unprivileged_userfaultfd=1) for the system call,
 * or access to /dev/userfaultfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "devices-internal.h"
#include "util.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif

#define UFFD_DEV "/dev/userfaultfd"

struct mem_postcopy {
	int fd;
	uint64_t features;         /* as UFFDIO_API agreed them */
	uint64_t *present;         /* one bit per page, set once placed (atomics) */
	_Atomic uint64_t missing;
	_Atomic uint64_t faults, stale_faults, placed, zeroed, duplicates;
};

/*
 * A descriptor that also takes faults from kernel mode (KVM's).  The
 * system call first; where it is refused (no CAP_SYS_PTRACE while
 * vm.unprivileged_userfaultfd is 0, or a seccomp filter), the device node
 * Linux 6.1 added, whose file permissions decide instead.
 */
static int uffd_new(struct mig_error *err)
{
	int fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int sys_errno, dev;

	if (fd >= 0)
		return fd;
	sys_errno = errno;
	dev = open(UFFD_DEV, O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			sys_errno = errno;
		close(dev);
		if (fd >= 0)
			return fd;
	}
	if (sys_errno == ENOSYS)
		return mig_error_set(err, -ENOSYS, "this kernel has no userfaultfd "
				     "(CONFIG_USERFAULTFD): post-copy is not possible on this host");
	if (sys_errno == EPERM || sys_errno == EACCES)
		return mig_error_set(err, -EPERM, "userfaultfd for kernel faults is not permitted "
				     "to this process: post-copy needs CAP_SYS_PTRACE, "
				     "vm.unprivileged_userfaultfd=1, or read-write access to "
				     UFFD_DEV " (%s)", dev < 0 ? strerror(errno) : "refused");
	return mig_error_set(err, -sys_errno, "userfaultfd: %s", strerror(sys_errno));
}

/* The features the kernel offers (UFFDIO_API on a descriptor of its own:
 * one UFFDIO_API per descriptor, and a request it cannot meet fails). */
static int uffd_offered(uint64_t *ret, struct mig_error *err)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = uffd_new(err), r = 0;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		r = mig_error_set(err, -errno, "UFFDIO_API: %s", strerror(errno));
	close(fd);
	*ret = api.features;
	return r;
}

static int want_features(const struct mem_dev *m, uint64_t offered, uint64_t *ret,
			 struct mig_error *err)
{
	uint64_t want = offered & UFFD_FEATURE_THREAD_ID;

	if (m->ram_fd >= 0) {
		if (!(offered & UFFD_FEATURE_MISSING_SHMEM))
			return mig_error_set(err, -EOPNOTSUPP, "this kernel has no userfaultfd for "
					     "shared memory (UFFD_FEATURE_MISSING_SHMEM, Linux 4.11): "
					     "post-copy into memfd-backed guest RAM is not possible "
					     "on this host");
		want |= UFFD_FEATURE_MISSING_SHMEM;
	}
	*ret = want;
	return 0;
}

int mem_postcopy_probe(const struct mem_dev *m, struct mig_error *err)
{
	uint64_t offered, want = 0;
	int r = uffd_offered(&offered, err);

	if (r < 0)
		return r;
	return want_features(m, offered, &want, err);
}

static bool test_bit64(const uint64_t *bm, uint64_t i)
{
	return __atomic_load_n(&bm[i / 64], __ATOMIC_ACQUIRE) & (1ULL << (i % 64));
}

/* Marks a page present; true if this call did. */
static bool mark_present(struct mem_postcopy *pc, uint64_t pfn)
{
	uint64_t bit = 1ULL << (pfn % 64);

	if (__atomic_fetch_or(&pc->present[pfn / 64], bit, __ATOMIC_RELEASE) & bit)
		return false;
	atomic_fetch_sub(&pc->missing, 1);
	return true;
}

static void *page_addr(const struct mem_dev *m, uint64_t pfn)
{
	return m->ram + (pfn << GUEST_PAGE_SHIFT);
}

/* Drops pages [pfn, pfn + n) so that the next touch is a missing-page
 * fault: anonymous memory frees them (MADV_DONTNEED), shmem must lose them
 * from the file, not only from this mapping (MADV_REMOVE punches the
 * hole).  KVM hears of it through its MMU notifier and unmaps them. */
static int drop_pages(struct mem_dev *m, uint64_t pfn, uint64_t n, struct mig_error *err)
{
	int advice = (m->ram_fd >= 0) ? MADV_REMOVE : MADV_DONTNEED;

	if (madvise(page_addr(m, pfn), n << GUEST_PAGE_SHIFT, advice) < 0)
		return mig_error_set(err, -errno, "dropping guest pages %#llx+%llu (%s): %s",
				     (unsigned long long)pfn, (unsigned long long)n,
				     (m->ram_fd >= 0) ? "MADV_REMOVE" : "MADV_DONTNEED",
				     strerror(errno));
	return 0;
}

int mem_postcopy_begin(struct mem_dev *m, const uint64_t *present, struct mig_error *err)
{
	uint64_t words = mem_bitmap_words(m), offered, want = 0, missing = 0;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)m->ram, .len = m->ram_bytes },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct mem_postcopy *pc;
	int r;

	if (m->postcopy)
		return mig_error_set(err, -EBUSY, "memory: post-copy has already begun");
	r = uffd_offered(&offered, err);
	if (r >= 0)
		r = want_features(m, offered, &want, err);
	if (r < 0)
		return r;
	pc = calloc(1, sizeof(*pc));
	if (pc)
		pc->present = calloc(words, 8);
	if (!pc || !pc->present) {
		free(pc);
		return mig_error_set(err, -ENOMEM, "out of memory");
	}
	pc->fd = -1;
	if (present)
		memcpy(pc->present, present, words * 8);
	/* bits past the last page would count as present pages that are not */
	if (m->nr_pages % 64)
		pc->present[words - 1] &= (1ULL << (m->nr_pages % 64)) - 1;

	pc->fd = uffd_new(err);
	if (pc->fd < 0) {
		r = pc->fd;
		goto err_free;
	}
	api.features = want;
	if (ioctl(pc->fd, UFFDIO_API, &api) < 0) {
		r = mig_error_set(err, -errno, "UFFDIO_API (features %#llx): %s",
				  (unsigned long long)want, strerror(errno));
		goto err_close;
	}
	pc->features = want;
	if (ioctl(pc->fd, UFFDIO_REGISTER, &reg) < 0) {
		r = mig_error_set(err, -errno, "registering %llu bytes of %s guest RAM with "
				  "userfaultfd: %s", (unsigned long long)m->ram_bytes,
				  (m->ram_fd >= 0) ? "shared" : "anonymous", strerror(errno));
		goto err_close;
	}
	if (!(reg.ioctls & (1ULL << _UFFDIO_COPY)) || !(reg.ioctls & (1ULL << _UFFDIO_ZEROPAGE)) ||
	    !(reg.ioctls & (1ULL << _UFFDIO_WAKE))) {
		r = mig_error_set(err, -EOPNOTSUPP, "userfaultfd on this guest RAM offers no "
				  "UFFDIO_COPY, UFFDIO_ZEROPAGE or UFFDIO_WAKE (ioctls %#llx)",
				  (unsigned long long)reg.ioctls);
		goto err_close;
	}

	/* Registered first, so that a refusal above leaves RAM as it was;
	 * then the missing pages go, in runs (the vCPUs are not running). */
	for (uint64_t p = 0; p < m->nr_pages;) {
		uint64_t q = p;

		if (test_bit64(pc->present, p)) {
			p++;
			continue;
		}
		while (q < m->nr_pages && !test_bit64(pc->present, q))
			q++;
		r = drop_pages(m, p, q - p, err);
		if (r < 0)
			goto err_close;   /* closing unregisters */
		missing += q - p;
		p = q;
	}
	pc->missing = missing;
	m->postcopy = pc;
	return 0;

err_close:
	/* pages already dropped stay dropped: they read as zeros */
	close(pc->fd);
err_free:
	free(pc->present);
	free(pc);
	return r;
}

int mem_postcopy_fd(const struct mem_dev *m)
{
	return m->postcopy ? m->postcopy->fd : -1;
}

bool mem_postcopy_present(const struct mem_dev *m, uint64_t pfn)
{
	return !m->postcopy || (pfn < m->nr_pages && test_bit64(m->postcopy->present, pfn));
}

static int wake_range(struct mem_dev *m, uint64_t pfn, uint64_t n, struct mig_error *err)
{
	struct uffdio_range range = {
		.start = (uintptr_t)page_addr(m, pfn), .len = n << GUEST_PAGE_SHIFT,
	};

	if (ioctl(m->postcopy->fd, UFFDIO_WAKE, &range) < 0)
		return mig_error_set(err, -errno, "UFFDIO_WAKE of pages %#llx+%llu: %s",
				     (unsigned long long)pfn, (unsigned long long)n,
				     strerror(errno));
	return 0;
}

int mem_postcopy_read_faults(struct mem_dev *m, struct mig_pc_fault *ret, unsigned max,
			     int timeout_ms, struct mig_error *err)
{
	struct mem_postcopy *pc = m->postcopy;
	struct uffd_msg msgs[16];
	struct pollfd pfd;
	unsigned n = 0;
	ssize_t got;
	int r;

	if (!pc)
		return mig_error_set(err, -EINVAL, "memory: post-copy has not begun");
	if (!max)
		return 0;
	pfd = (struct pollfd){ .fd = pc->fd, .events = POLLIN };
	r = poll(&pfd, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : mig_error_set(err, -errno, "polling the userfaultfd: %s",
							 strerror(errno));
	if (r == 0)
		return 0;
	if (pfd.revents & (POLLERR | POLLHUP))
		return mig_error_set(err, -EIO, "the userfaultfd reports an error (revents %#x)",
				     pfd.revents);
	got = read(pc->fd, msgs, (max < ARRAY_SIZE(msgs) ? max : ARRAY_SIZE(msgs)) *
		   sizeof(msgs[0]));
	if (got < 0)
		return errno == EAGAIN || errno == EINTR ? 0 :
		       mig_error_set(err, -errno, "reading the userfaultfd: %s", strerror(errno));
	for (size_t i = 0; i < (size_t)got / sizeof(msgs[0]); i++) {
		const struct uffd_msg *msg = &msgs[i];
		uint64_t addr = msg->arg.pagefault.address, pfn;
		bool dup = false;

		if (msg->event != UFFD_EVENT_PAGEFAULT)
			return mig_error_set(err, -EPROTO, "userfaultfd event %u, not a page fault",
					     msg->event);
		if (addr < (uintptr_t)m->ram || addr - (uintptr_t)m->ram >= m->ram_bytes)
			return mig_error_set(err, -EIO, "userfaultfd fault at %#llx, outside guest RAM",
					     (unsigned long long)addr);
		pfn = (addr - (uintptr_t)m->ram) >> GUEST_PAGE_SHIFT;
		if (test_bit64(pc->present, pfn)) {
			/* Placed between the fault and this read: the copy
			 * woke it, but a wake costs little and covers a copy
			 * that asked not to wake. */
			atomic_fetch_add(&pc->stale_faults, 1);
			r = wake_range(m, pfn, 1, err);
			if (r < 0)
				return r;
			continue;
		}
		/* two vCPUs on one page: ask for it once */
		for (unsigned j = 0; j < n && !dup; j++)
			dup = ret[j].pfn == pfn;
		if (dup)
			continue;
		ret[n++] = (struct mig_pc_fault){
			.pfn = pfn,
			.tid = pc->features & UFFD_FEATURE_THREAD_ID ? msg->arg.pagefault.feat.ptid : 0,
			.write = msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE,
		};
		atomic_fetch_add(&pc->faults, 1);
	}
	return (int)n;
}

static int check_range(const struct mem_dev *m, uint64_t pfn, uint64_t n, const char *what,
		       struct mig_error *err)
{
	if (!m->postcopy)
		return mig_error_set(err, -EINVAL, "memory: %s with post-copy not begun", what);
	if (pfn > m->nr_pages || n > m->nr_pages - pfn)
		return mig_error_set(err, -ERANGE, "memory: %s of pages %#llx+%llu, beyond the "
				     "guest's %llu pages", what, (unsigned long long)pfn,
				     (unsigned long long)n, (unsigned long long)m->nr_pages);
	return 0;
}

/*
 * One run of pages our bitmap says are missing.  UFFDIO_COPY and
 * UFFDIO_ZEROPAGE stop at the first page that exists (another thread
 * placed it since we looked): -EAGAIN with the bytes done, or -EEXIST
 * when that page is the first.  Returns the pages placed here, or -errno.
 */
static int64_t place_run(struct mem_dev *m, uint64_t pfn, const uint8_t *src, uint64_t n,
			 struct mig_error *err)
{
	struct mem_postcopy *pc = m->postcopy;
	uint64_t done = 0, placed = 0;

	while (done < n) {
		uint64_t at = pfn + done, len = (n - done) << GUEST_PAGE_SHIFT;
		int64_t res;
		int rc;

		if (src) {
			struct uffdio_copy c = {
				.dst = (uintptr_t)page_addr(m, at),
				.src = (uintptr_t)(src + (done << GUEST_PAGE_SHIFT)), .len = len,
			};

			rc = ioctl(pc->fd, UFFDIO_COPY, &c);
			res = c.copy;
		} else {
			struct uffdio_zeropage z = {
				.range = { .start = (uintptr_t)page_addr(m, at), .len = len },
			};

			rc = ioctl(pc->fd, UFFDIO_ZEROPAGE, &z);
			res = z.zeropage;
		}
		if (rc == 0)
			res = (int64_t)len;
		if (res > 0) {
			uint64_t k = (uint64_t)res >> GUEST_PAGE_SHIFT;

			for (uint64_t i = 0; i < k; i++)
				mark_present(pc, at + i);
			done += k;
			placed += k;
			continue;
		}
		if (res == -EEXIST || (rc < 0 && errno == EEXIST)) {
			/* there already: the placement that won counts it */
			mark_present(pc, at);
			atomic_fetch_add(&pc->duplicates, 1);
			done++;
			continue;
		}
		if (res == -EAGAIN || (rc < 0 && errno == EAGAIN))
			continue;   /* the address space was changing: again */
		return mig_error_set(err, rc < 0 ? -errno : (int)res, "%s of guest pages %#llx+%llu: %s",
				     src ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE", (unsigned long long)at,
				     (unsigned long long)(n - done),
				     strerror(rc < 0 ? errno : (int)-res));
	}
	atomic_fetch_add(src ? &pc->placed : &pc->zeroed, placed);
	return (int64_t)placed;
}

static int place(struct mem_dev *m, uint64_t pfn, const uint8_t *src, uint64_t n,
		 struct mig_error *err)
{
	struct mem_postcopy *pc = m->postcopy;
	uint64_t placed = 0;
	int r = check_range(m, pfn, n, src ? "placing" : "placing zero pages", err);

	if (r < 0)
		return r;
	for (uint64_t i = 0; i < n;) {
		uint64_t j = i;
		int64_t k;

		if (test_bit64(pc->present, pfn + i)) {
			atomic_fetch_add(&pc->duplicates, 1);   /* a late or second copy */
			i++;
			continue;
		}
		while (j < n && !test_bit64(pc->present, pfn + j))
			j++;
		k = place_run(m, pfn + i, src ? src + (i << GUEST_PAGE_SHIFT) : NULL, j - i, err);
		if (k < 0)
			return (int)k;
		placed += (uint64_t)k;
		i = j;
	}
	return (int)(placed > INT32_MAX ? INT32_MAX : placed);
}

int mem_postcopy_place(struct mem_dev *m, uint64_t pfn, const void *src, uint64_t n,
		       struct mig_error *err)
{
	if (!src)
		return mig_error_set(err, -EINVAL, "memory: placing pages from nowhere");
	return place(m, pfn, src, n, err);
}

int mem_postcopy_place_zero(struct mem_dev *m, uint64_t pfn, uint64_t n, struct mig_error *err)
{
	return place(m, pfn, NULL, n, err);
}

int mem_postcopy_wake(struct mem_dev *m, uint64_t pfn, uint64_t n, struct mig_error *err)
{
	int r = check_range(m, pfn, n, "waking", err);

	return r < 0 ? r : wake_range(m, pfn, n, err);
}

void mem_postcopy_stats(const struct mem_dev *m, struct mig_pc_stats *ret)
{
	const struct mem_postcopy *pc = m->postcopy;

	*ret = (struct mig_pc_stats){ 0 };
	if (!pc)
		return;
	ret->missing = pc->missing;
	ret->faults = pc->faults;
	ret->stale_faults = pc->stale_faults;
	ret->placed = pc->placed;
	ret->zeroed = pc->zeroed;
	ret->duplicates = pc->duplicates;
}

int mem_postcopy_complete(struct mem_dev *m, struct mig_error *err)
{
	struct mem_postcopy *pc = m->postcopy;
	struct uffdio_range range = { .start = (uintptr_t)m->ram, .len = m->ram_bytes };
	uint64_t missing;

	if (!pc)
		return mig_error_set(err, -EINVAL, "memory: post-copy has not begun");
	missing = pc->missing;
	if (missing)
		return mig_error_set(err, -EBUSY, "memory: %llu pages are still missing",
				     (unsigned long long)missing);
	if (ioctl(pc->fd, UFFDIO_UNREGISTER, &range) < 0)
		return mig_error_set(err, -errno, "unregistering guest RAM from userfaultfd: %s",
				     strerror(errno));
	mem_postcopy_end(m);
	return 0;
}

void mem_postcopy_end(struct mem_dev *m)
{
	struct mem_postcopy *pc = m->postcopy;

	if (!pc)
		return;
	m->postcopy = NULL;
	/* closing unregisters and wakes any waiter: it then faults as if the
	 * range had never been registered */
	close(pc->fd);
	free(pc->present);
	free(pc);
}

/* ---- the memory class's post-copy ops (device.h) ---- */

static struct mem_dev *mem_of(struct mig_device *d)
{
	return container_of(d, struct mem_dev, core);
}

static int pc_probe(struct mig_device *d, struct mig_error *err)
{
	return mem_postcopy_probe(mem_of(d), err);
}

static int pc_begin(struct mig_device *d, const uint64_t *present, struct mig_error *err)
{
	return mem_postcopy_begin(mem_of(d), present, err);
}

static int pc_read_faults(struct mig_device *d, struct mig_pc_fault *ret, unsigned max,
			  int timeout_ms, struct mig_error *err)
{
	return mem_postcopy_read_faults(mem_of(d), ret, max, timeout_ms, err);
}

static int pc_place(struct mig_device *d, uint64_t pfn, const void *src, uint64_t n,
		    struct mig_error *err)
{
	return src ? mem_postcopy_place(mem_of(d), pfn, src, n, err) :
		     mem_postcopy_place_zero(mem_of(d), pfn, n, err);
}

static bool pc_present(struct mig_device *d, uint64_t pfn)
{
	return mem_postcopy_present(mem_of(d), pfn);
}

static void pc_stats(struct mig_device *d, struct mig_pc_stats *ret)
{
	mem_postcopy_stats(mem_of(d), ret);
}

static int pc_complete(struct mig_device *d, struct mig_error *err)
{
	return mem_postcopy_complete(mem_of(d), err);
}

static void pc_end(struct mig_device *d)
{
	mem_postcopy_end(mem_of(d));
}

const struct mig_postcopy_ops mem_postcopy_ops = {
	.probe = pc_probe, .begin = pc_begin, .read_faults = pc_read_faults, .place = pc_place,
	.present = pc_present, .stats = pc_stats, .complete = pc_complete, .end = pc_end,
};
