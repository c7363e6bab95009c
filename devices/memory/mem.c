// SPDX-License-Identifier: MIT
/*
 * Memory class, kvm backend: guest RAM in memslots and its dirty log in one of
 * three modes (KERNEL-UAPI §2).  The mode is fixed when the VM is created,
 * because the dirty ring must be enabled before any vCPU exists.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices-internal.h"
#include "util.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define HUGE_2M (2ULL << 20)

static const char *const mem_state_names[_MEM_STATE_MAX] = {
	[MEM_MAPPED] = "mapped",
	[MEM_LOGGING] = "logging",
	[MEM_FINAL] = "final",
	[MEM_RECEIVING] = "receiving",
	[MEM_LOADED] = "loaded",
	[MEM_RELEASED] = "released",
};

static const char *const mem_log_mode_names[_MEM_LOG_MAX] = {
	[MEM_LOG_MANUAL] = "bitmap-manual",
	[MEM_LOG_CLASSIC] = "bitmap-classic",
	[MEM_LOG_RING] = "ring",
};

MIG_STRING_TABLE_TO(mem_log_mode, enum mem_log_mode, mem_log_mode_names)

#define A(from, to) [(from) * _MEM_STATE_MAX + (to)] = true
static const bool mem_arcs[_MEM_STATE_MAX * _MEM_STATE_MAX] = {
	A(MEM_MAPPED, MEM_LOGGING),      /* start tracking */
	A(MEM_LOGGING, MEM_MAPPED),      /* stop tracking (abort, or after commit) */
	A(MEM_LOGGING, MEM_FINAL),       /* vCPUs stopped, last sync taken */
	A(MEM_FINAL, MEM_LOGGING),       /* rollback: the source runs on, still tracked */
	A(MEM_FINAL, MEM_MAPPED),        /* rollback with tracking off */
	A(MEM_FINAL, MEM_RELEASED),      /* commit: the destination owns the VM */
	A(MEM_MAPPED, MEM_RECEIVING),    /* destination: pages start to arrive */
	A(MEM_LOGGING, MEM_RECEIVING),
	A(MEM_RECEIVING, MEM_LOADED),    /* every page arrived */
	A(MEM_RECEIVING, MEM_RELEASED),  /* destination discarded */
	A(MEM_LOADED, MEM_LOGGING),      /* destination runs (and may migrate again) */
	A(MEM_LOADED, MEM_MAPPED),
	A(MEM_LOADED, MEM_RELEASED),
	A(MEM_MAPPED, MEM_RELEASED),
	A(MEM_LOGGING, MEM_RELEASED),
};
#undef A

static int set_slot(struct mem_dev *m, struct mem_slot *s, bool log, struct mig_error *err)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->id,
		.flags = log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = s->gpa,
		.memory_size = s->size,
		.userspace_addr = (uintptr_t)s->host,
	};

	if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return mig_error_set(err, -errno, "KVM_SET_USER_MEMORY_REGION slot %u (%s logging): %s",
				     s->id, log ? "with" : "without", strerror(errno));
	s->logging = log;
	return 0;
}

int mem_log_enable(struct mem_dev *m, bool on, struct mig_error *err)
{
	for (unsigned i = 0; i < m->nr_slots; i++) {
		int r;

		if (m->slots[i].logging == on)
			continue;
		/* A flags-only change: KVM keeps the mapping, toggles tracking. */
		r = set_slot(m, &m->slots[i], on, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int mem_step(struct mig_device *d, int to, struct mig_error *err)
{
	struct mem_dev *m = container_of(d, struct mem_dev, core);

	switch (to) {
	case MEM_LOGGING:
		return mem_log_enable(m, true, err);
	case MEM_MAPPED:
		return mem_log_enable(m, false, err);
	default:
		/* FINAL, RECEIVING, LOADED, RELEASED are bookkeeping: the work is
		 * done by the sync, the receiver and the owner respectively. */
		return 0;
	}
}

uint64_t mem_bitmap_words(const struct mem_dev *m)
{
	return DIV_ROUND_UP(m->nr_pages, 64);
}

static uint64_t or_bits(uint64_t *dst, const uint64_t *src, uint64_t nwords)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < nwords; i++) {
		dst[i] |= src[i];
		n += (uint64_t)__builtin_popcountll(src[i]);
	}
	return n;
}

static int sync_bitmap_slot(struct mem_dev *m, struct mem_slot *s, uint64_t *bitmap,
			    uint64_t *count, struct mig_error *err)
{
	uint64_t npages = s->size >> GUEST_PAGE_SHIFT, nwords = DIV_ROUND_UP(npages, 64);
	struct kvm_dirty_log log = { .slot = s->id, .dirty_bitmap = m->scratch };

	memset(m->scratch, 0, nwords * 8);
	if (ioctl(m->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return mig_error_set(err, -errno, "KVM_GET_DIRTY_LOG slot %u: %s", s->id,
				     strerror(errno));

	if (m->mode == MEM_LOG_MANUAL) {
		/* GET was only a snapshot: clear and re-protect what we are about to
		 * send, chunk by chunk, so write protection (and, with INITIALLY_SET,
		 * the huge-page split) is spread over the round instead of one stall. */
		for (uint64_t first = 0; first < npages; first += MEM_CLEAR_CHUNK_PAGES) {
			uint64_t n = npages - first < MEM_CLEAR_CHUNK_PAGES ?
				     npages - first : MEM_CLEAR_CHUNK_PAGES;
			uint64_t *bits = m->scratch + first / 64, any = 0;
			struct kvm_clear_dirty_log clr = {
				.slot = s->id, .first_page = first, .num_pages = (uint32_t)n,
				.dirty_bitmap = bits,
			};

			for (uint64_t w = 0; w < DIV_ROUND_UP(n, 64); w++)
				any |= bits[w];
			if (!any)
				continue;
			if (ioctl(m->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
				return mig_error_set(err, -errno,
						     "KVM_CLEAR_DIRTY_LOG slot %u pages %llu+%llu: %s",
						     s->id, (unsigned long long)first,
						     (unsigned long long)n, strerror(errno));
		}
	}
	*count += or_bits(bitmap + s->first_pfn / 64, m->scratch, nwords);
	return 0;
}

static struct mem_slot *slot_by_id(struct mem_dev *m, uint32_t id)
{
	for (unsigned i = 0; i < m->nr_slots; i++)
		if (m->slots[i].id == id)
			return &m->slots[i];
	return NULL;
}

/* Harvest entries in ring order, without skipping, publishing each as
 * collected (RESET flag, store-release) so KVM_RESET_DIRTY_RINGS can recycle it. */
static uint64_t ring_harvest(struct mem_dev *m, struct mem_ring *r)
{
	uint64_t n = 0;

	for (;;) {
		struct kvm_dirty_gfn *e = &r->gfns[r->next & (r->entries - 1)];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		struct mem_slot *s;

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		s = slot_by_id(m, e->slot & 0xffff);
		if (s && e->offset < (s->size >> GUEST_PAGE_SHIFT)) {
			uint64_t pfn = s->first_pfn + e->offset;

			m->pending[pfn / 64] |= 1ULL << (pfn % 64);
		}
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		r->next++;
		n++;
	}
	m->unreset += n;
	r->harvested += n;
	return n;
}

void (*mem_ring_window_hook)(enum mem_ring_window where);

static void window_hook(enum mem_ring_window where)
{
	void (*hook)(enum mem_ring_window) = __atomic_load_n(&mem_ring_window_hook,
							      __ATOMIC_RELAXED);

	if (hook)
		hook(where);
}

/*
 * KVM_RESET_DIRTY_RINGS stops early, without an error, when the calling
 * thread has a signal pending, and that includes io_uring's task work
 * (TIF_NOTIFY_SIGNAL) for a thread with requests in flight, as the
 * migration threads always have.  The batch of up to 64 pages it was
 * gathering then stays writable with no entry to come, so writes to those
 * pages go unreported for good.  The ioctl therefore runs on a thread of its
 * own that blocks every signal it can and never submits io_uring work.  A
 * stop or freeze of the whole process (SIGSTOP, a cgroup freezer) can still
 * cut a reset short; ring_reset()'s count check catches that unless the cut
 * falls just after the last entry.
 */
static void *resetter_main(void *arg)
{
	struct mem_dev *m = arg;

	pthread_setname_np(pthread_self(), "dirty-reset");
	pthread_mutex_lock(&m->reset_lock);
	for (;;) {
		while (m->reset_done == m->reset_asked && !m->reset_quit)
			pthread_cond_wait(&m->reset_cond, &m->reset_lock);
		if (m->reset_quit)
			break;
		{
			/* a request made during the call is not served by it */
			uint64_t serving = m->reset_asked;
			int n;

			pthread_mutex_unlock(&m->reset_lock);
			n = ioctl(m->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
			pthread_mutex_lock(&m->reset_lock);
			m->reset_ret = n < 0 ? -errno : n;
			m->reset_done = serving;
		}
		pthread_cond_broadcast(&m->reset_cond);
	}
	pthread_mutex_unlock(&m->reset_lock);
	return NULL;
}

static int start_resetter(struct mem_dev *m, struct mig_error *err)
{
	sigset_t all, old;
	int r;

	pthread_mutex_init(&m->reset_lock, NULL);
	pthread_cond_init(&m->reset_cond, NULL);
	/* the thread inherits this mask: no signal is ever delivered to it */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&m->resetter, NULL, resetter_main, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return mig_error_set(err, -r, "starting the dirty-ring reset thread: %s",
				     strerror(r));
	m->resetter_started = true;
	return 0;
}

static void stop_resetter(struct mem_dev *m)
{
	if (!m->resetter_started)
		return;
	pthread_mutex_lock(&m->reset_lock);
	m->reset_quit = true;
	pthread_cond_broadcast(&m->reset_cond);
	pthread_mutex_unlock(&m->reset_lock);
	pthread_join(m->resetter, NULL);
}

/*
 * A harvested entry's page stays writable, with no new entry, until
 * KVM_RESET_DIRTY_RINGS write-protects it again.  So a page may be handed to
 * a sync (and copied) only once its reset is done: ring_lock spans each
 * harvest to its reset, and the sync's hand-over of m->pending.  Otherwise a
 * sync could take a page a ring-full drain had just harvested, copy it, and
 * another vCPU's write before that drain's reset would never be reported.
 */
static int ring_reset(struct mem_dev *m, struct mig_error *err)
{
	uint64_t want = m->unreset;
	int n;

	pthread_mutex_lock(&m->reset_lock);
	m->reset_asked++;
	pthread_cond_broadcast(&m->reset_cond);
	while (m->reset_done != m->reset_asked)
		pthread_cond_wait(&m->reset_cond, &m->reset_lock);
	n = m->reset_ret;
	pthread_mutex_unlock(&m->reset_lock);
	if (n < 0)
		return mig_error_set(err, n, "KVM_RESET_DIRTY_RINGS: %s", strerror(-n));
	m->unreset = 0;
	/* KVM says how many harvested entries it reset.  Any other count than
	 * ours means the rings and this process disagree on what was reported:
	 * a page left writable without an entry would hide its writes. */
	if ((uint64_t)n != want)
		return mig_error_set(err, -EIO,
				     "KVM_RESET_DIRTY_RINGS reset %d entries, but %llu were "
				     "harvested: the dirty log cannot be trusted; use "
				     "dirty-log=bitmap", n, (unsigned long long)want);
	return 0;
}

int mem_ring_drain(struct mem_dev *m, unsigned index, struct mig_error *err)
{
	int r;

	if (m->mode != MEM_LOG_RING || index >= m->nr_rings)
		return mig_error_set(err, -EINVAL, "no dirty ring for vCPU %u", index);
	pthread_mutex_lock(&m->ring_lock);
	ring_harvest(m, &m->rings[index]);
	atomic_fetch_add(&m->ring_full_exits, 1);
	window_hook(MEM_RING_DRAIN_HARVESTED);
	r = ring_reset(m, err);
	pthread_mutex_unlock(&m->ring_lock);
	return r;
}

static int sync_ring(struct mem_dev *m, uint64_t *bitmap, uint64_t *count, struct mig_error *err)
{
	uint64_t nwords = mem_bitmap_words(m);
	int r;

	pthread_mutex_lock(&m->ring_lock);
	for (unsigned i = 0; i < m->nr_rings; i++)
		if (m->rings[i].gfns)
			m->rings[i].last_sync = ring_harvest(m, &m->rings[i]);
	/* Reset before the caller copies page contents: a write after the reset
	 * faults again and lands in the ring for the next round. */
	r = ring_reset(m, err);
	if (r < 0)
		goto out;
	window_hook(MEM_RING_SYNC_RESET);
	for (uint64_t w = 0; w < nwords; w++) {
		uint64_t bits = m->pending[w];

		m->pending[w] = 0;

		bitmap[w] |= bits;
		*count += (uint64_t)__builtin_popcountll(bits);
	}
out:
	pthread_mutex_unlock(&m->ring_lock);
	return r;
}

void mem_ring_report(struct mem_dev *m, char *out, size_t n)
{
	size_t len = 0;

	if (n)
		out[0] = '\0';
	if (m->mode != MEM_LOG_RING)
		return;
	pthread_mutex_lock(&m->ring_lock);
	for (unsigned i = 0; i < m->nr_rings && len < n; i++)
		len += (size_t)snprintf(out + len, n - len, "%s%llu/%llu", i ? " " : "",
					(unsigned long long)m->rings[i].harvested,
					(unsigned long long)m->rings[i].last_sync);
	pthread_mutex_unlock(&m->ring_lock);
}

static int mem_dirty_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
			  struct mig_error *err)
{
	struct mem_dev *m = container_of(d, struct mem_dev, core);
	uint64_t count = 0;
	int r = 0;

	if (d->state != MEM_LOGGING && d->state != MEM_FINAL)
		return mig_error_set(err, -EINVAL, "memory: dirty sync in state %s",
				     mig_device_state_name(d));
	if (m->mode == MEM_LOG_RING) {
		r = sync_ring(m, bitmap, &count, err);
		/* what the kernel dirtied with no vCPU running (the vGIC's and
		 * ITS's tables) is only in the slots' bitmaps */
		for (unsigned i = 0; m->ring_bitmap && i < m->nr_slots && r >= 0; i++)
			r = sync_bitmap_slot(m, &m->slots[i], bitmap, &count, err);
	} else {
		for (unsigned i = 0; i < m->nr_slots && r >= 0; i++)
			r = sync_bitmap_slot(m, &m->slots[i], bitmap, &count, err);
	}
	if (r < 0)
		return r;
	if (ret_count)
		*ret_count = count;
	return 0;
}

/* ---- what a destination must offer (policies: compat_memslots()) ---- */

#define MEMSLOTS_DESC_MAGIC 0x31544f4c534d454dULL   /* "MEMSLOT1" */

struct memslots_desc {
	uint64_t magic;
	struct compat_memslots need;
};

/* Its slots, all in address space 0, their ids from 0. */
static int mem_describe(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	const struct mem_dev *m = container_of(d, struct mem_dev, core);
	struct memslots_desc desc = { .magic = MEMSLOTS_DESC_MAGIC };

	for (unsigned i = 0; i < m->nr_slots; i++) {
		uint32_t as = m->slots[i].id >> 16, id = m->slots[i].id & 0xffff;

		if (as >= COMPAT_ADDRESS_SPACES)
			return mig_error_set(err, -EINVAL, "memory: slot %#x is in address space "
					     "%u, beyond what a description holds", m->slots[i].id, as);
		desc.need.slots[as]++;
		if (id + 1 > desc.need.id_end[as])
			desc.need.id_end[as] = id + 1;
	}
	if (mig_buf_append(out, &desc, sizeof(desc)) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

/* This host's KVM_CAP_NR_MEMSLOTS and KVM_CAP_MULTI_ADDRESS_SPACE, as the
 * agent's host profile describes them. */
static int mem_check(struct mig_device *d, const void *p, size_t n, struct mig_error *err)
{
	const struct mem_dev *m = container_of(d, struct mem_dev, core);
	const struct compat_profile *prof = compat_profile_get();
	struct memslots_desc desc;
	int slots, as;

	if (n != sizeof(desc))
		return mig_error_set(err, -EPROTO, "a description of %zu bytes (%zu expected)", n,
				     sizeof(desc));
	memcpy(&desc, p, sizeof(desc));
	if (desc.magic != MEMSLOTS_DESC_MAGIC)
		return mig_error_set(err, -EPROTO, "the description is not of memory slots");
	slots = ioctl(m->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	as = ioctl(m->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MULTI_ADDRESS_SPACE);
	if (slots <= 0)
		return mig_error_set(err, slots < 0 ? -errno : -ENOTSUP, "KVM_CAP_NR_MEMSLOTS: "
				     "this host's KVM does not say how many slots it allows");
	return compat_memslots(&desc.need, compat_profile_memslots(prof, (uint32_t)slots),
			       compat_profile_address_spaces(prof, as > 0 ? (uint32_t)as : 0),
			       err);
}

static const char *const mem_policies[] = { "memslots", NULL };

static const struct mig_compat_ops mem_compat_ops = {
	.describe = mem_describe, .check = mem_check, .policies = mem_policies,
};

/* RAM travels as pages, not as saved state: no save or load. */
static const struct mig_device_ops mem_ops = {
	.step = mem_step,
};

/* Ring mode: each vCPU's harvested entries, and those waiting in its ring
 * (peeked, not harvested: the next sync or drain takes them). */
static unsigned mem_by_vcpu(struct mig_device *d, uint64_t *per_vcpu, unsigned n)
{
	struct mem_dev *m = container_of(d, struct mem_dev, core);
	unsigned k;

	if (m->mode != MEM_LOG_RING)
		return 0;
	pthread_mutex_lock(&m->ring_lock);
	k = m->nr_rings < n ? m->nr_rings : n;
	for (unsigned i = 0; i < k; i++) {
		struct mem_ring *r = &m->rings[i];
		uint64_t waiting = 0;

		while (r->gfns && waiting < r->entries) {
			const struct kvm_dirty_gfn *e = &r->gfns[(r->next + waiting) & (r->entries - 1)];

			if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
				break;
			waiting++;
		}
		per_vcpu[i] = r->harvested + waiting;
	}
	pthread_mutex_unlock(&m->ring_lock);
	return k;
}

static const struct mig_dirty_ops mem_dirty_ops = {
	.sync = mem_dirty_sync,
	.by_vcpu = mem_by_vcpu,
};

/*
 * Its place in each stage.  Source: it is `final` (the final sync taken)
 * before anything else is saved, and on a rollback it is tracked again
 * before anything runs.  Destination: all of it is in place (`loaded`)
 * before any other state is loaded, and tracked (`logging`) before the VM
 * starts, so the VM can migrate again.
 */
static const struct mig_stage_step mem_steps[] = {
	{ MIG_STAGE_TRACK, 0, MEM_LOGGING },
	{ MIG_STAGE_SAVE, 0, MEM_FINAL },
	{ MIG_STAGE_RELEASE, 20, MEM_RELEASED },
	{ MIG_STAGE_ROLLBACK, 0, MEM_LOGGING },
	{ MIG_STAGE_RECEIVE, 0, MEM_RECEIVING },
	{ MIG_STAGE_LOAD, 0, MEM_LOADED },
	{ MIG_STAGE_START, 0, MEM_LOGGING },
	{ MIG_STAGE_DISCARD, 20, MEM_RELEASED },
};

const struct mig_device_class mem_class = {
	.id = MIG_DEV_MEMORY,
	.name = "memory",
	.version = 1,
	.steps = mem_steps,
	.nr_steps = ARRAY_SIZE(mem_steps),
	.load_state = -1,
	.fail_state = -1,
	.carries_ram = true,
	.nr_states = _MEM_STATE_MAX,
	.state_names = mem_state_names,
	.arcs = mem_arcs,
	.ops = &mem_ops,
	.dirty_ops = &mem_dirty_ops,
	.compat_ops = &mem_compat_ops,
	.postcopy_ops = &mem_postcopy_ops,
};

/* Where a vCPU's dirty ring is in its mmap, in pages: the kernel's
 * KVM_DIRTY_LOG_PAGE_OFFSET, 64 on x86 and arm64 alike.  The 6.1 arm64 uAPI
 * headers lack it, and <linux/kvm.h> then says 0: the kvm_run page. */
#define MEM_RING_PAGE_OFFSET 64
#if KVM_DIRTY_LOG_PAGE_OFFSET && KVM_DIRTY_LOG_PAGE_OFFSET != MEM_RING_PAGE_OFFSET
#error "KVM_DIRTY_LOG_PAGE_OFFSET is not 64 on this architecture"
#endif

/* Newer than the 6.1 uAPI headers (KERNEL-UAPI §6.3 step 4). */
#ifndef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
#define KVM_CAP_DIRTY_LOG_RING_ACQ_REL 223
#endif
#ifndef KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP
#define KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP 225
#endif

/*
 * The ring is x86's KVM_CAP_DIRTY_LOG_RING (total store order) or arm64's
 * KVM_CAP_DIRTY_LOG_RING_ACQ_REL (ring_harvest() pairs acquire and release
 * either way).  arm64 also needs KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP, enabled
 * before any memslot: the pages the vGIC and ITS dirty with no vCPU running
 * go only to the slots' bitmaps, which every sync then reads too.
 */
static int pick_mode(int kvm_fd, int vm_fd, bool ring, bool force_classic,
		     uint32_t ring_entries, struct mem_dev *m, struct mig_error *err)
{
	if (ring) {
		uint32_t which = KVM_CAP_DIRTY_LOG_RING;
		int max = ioctl(kvm_fd, KVM_CHECK_EXTENSION, which);
		uint64_t bytes = (uint64_t)ring_entries * sizeof(struct kvm_dirty_gfn);
		struct kvm_enable_cap cap = { .args = { bytes } };

		if (max <= 0) {
			which = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
			max = ioctl(kvm_fd, KVM_CHECK_EXTENSION, which);
		}
		cap.cap = which;
		if (max <= 0)
			return mig_error_set(err, -EOPNOTSUPP,
					     "this kernel has no KVM dirty ring (KVM_CAP_DIRTY_LOG_RING "
					     "or _ACQ_REL); use --dirty-log bitmap");
		if (ring_entries & (ring_entries - 1) || bytes > (uint64_t)max || bytes < 4096)
			return mig_error_set(err, -EINVAL,
					     "dirty ring of %u entries: must be a power of two between "
					     "256 and %d entries", ring_entries,
					     max / (int)sizeof(struct kvm_dirty_gfn));
		if (ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0)
			return mig_error_set(err, -errno, "enabling the dirty ring (%u entries): %s",
					     ring_entries, strerror(errno));
		if (ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP) > 0) {
			struct kvm_enable_cap bm = { .cap = KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP };

			if (ioctl(vm_fd, KVM_ENABLE_CAP, &bm) < 0)
				return mig_error_set(err, -errno, "enabling the dirty ring's bitmap "
						     "(KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP): %s",
						     strerror(errno));
			m->ring_bitmap = true;
		}
		m->mode = MEM_LOG_RING;
		m->ring_entries = ring_entries;
		return 0;
	}
	if (!force_classic) {
		int mask = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
		uint64_t want = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
		struct kvm_enable_cap cap = {
			.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = { want },
		};

		if (mask > 0 && ((uint64_t)mask & want) == want) {
			if (ioctl(vm_fd, KVM_ENABLE_CAP, &cap) < 0)
				return mig_error_set(err, -errno, "enabling manual dirty-log protect: %s",
						     strerror(errno));
			m->mode = MEM_LOG_MANUAL;
			return 0;
		}
	}
	m->mode = MEM_LOG_CLASSIC;
	return 0;
}

/* Pre-fault: memory touched for the first time here costs ~7x more (the
 * host gives freed memory back to its own hypervisor). */
int mem_populate(struct mem_dev *m)
{
	if (madvise(m->ram, m->ram_bytes, MADV_POPULATE_WRITE) < 0) {
		for (uint64_t off = 0; off < m->ram_bytes; off += 4096)
			m->ram[off] = 0;
	}
	m->populated = true;
	return 0;
}

/*
 * Guest RAM: anonymous memory, or (MEM_RAM_SHARED) a memfd mapped shared,
 * whose descriptor a same-host hand-over passes to the destination
 * (docs/phases.md, "Same-host hand-over").  Shared memory gets huge pages
 * only where the host's shmem THP setting allows it
 * (/sys/kernel/mm/transparent_hugepage/shmem_enabled advise or always);
 * MADV_HUGEPAGE asks for them either way.
 */
static int alloc_ram(struct mem_dev *m, unsigned flags, struct mig_error *err)
{
	size_t span = m->ram_bytes + HUGE_2M;
	uint8_t *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t start;

	if (p == MAP_FAILED)
		return mig_error_set(err, -errno, "mapping %llu bytes of guest RAM: %s",
				     (unsigned long long)m->ram_bytes, strerror(errno));
	/* 2 MiB alignment so THP can back every guest huge page. */
	start = ALIGN_UP((uintptr_t)p, HUGE_2M);
	if (start > (uintptr_t)p)
		munmap(p, start - (uintptr_t)p);
	if ((uintptr_t)p + span > start + m->ram_bytes)
		munmap((void *)(start + m->ram_bytes), (uintptr_t)p + span - (start + m->ram_bytes));
	m->ram = (uint8_t *)start;
	if (flags & MEM_RAM_SHARED) {
		int fd = memfd_create("migratectl-guest-ram", MFD_CLOEXEC);

		if (fd < 0 || ftruncate(fd, (off_t)m->ram_bytes) < 0 ||
		    mmap(m->ram, m->ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
			 0) == MAP_FAILED) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			munmap(m->ram, m->ram_bytes);
			m->ram = NULL;
			return mig_error_set(err, -e, "guest RAM in a memfd of %llu bytes: %s",
					     (unsigned long long)m->ram_bytes, strerror(e));
		}
		m->ram_fd = fd;
	}
	madvise(m->ram, m->ram_bytes, MADV_HUGEPAGE);
	if (!(flags & MEM_RAM_LAZY))
		mem_populate(m);
	return 0;
}

/*
 * A same-host hand-over's destination: the source's memfd takes the place
 * of this VM's RAM at the same address, so the memslots, and every pointer
 * into RAM, stay as they are.  KVM's MMU notifier drops whatever it had
 * mapped of the old pages (nothing: these vCPUs never ran).  No pre-fault
 * and no copy: the pages are the source's own.
 */
int mem_adopt(struct mem_dev *m, int fd, struct mig_error *err)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return mig_error_set(err, -errno, "the handed-over RAM: fstat: %s", strerror(errno));
	if ((uint64_t)st.st_size != m->ram_bytes)
		return mig_error_set(err, -EINVAL, "the handed-over RAM is %llu bytes, this VM's "
				     "is %llu", (unsigned long long)st.st_size,
				     (unsigned long long)m->ram_bytes);
	if (mmap(m->ram, m->ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) ==
	    MAP_FAILED)
		return mig_error_set(err, -errno, "mapping the handed-over RAM: %s", strerror(errno));
	madvise(m->ram, m->ram_bytes, MADV_HUGEPAGE);
	if (m->ram_fd >= 0)
		close(m->ram_fd);
	m->ram_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	m->populated = true;
	return 0;
}

int mem_dev_create(int kvm_fd, int vm_fd, uint64_t base_gpa, uint64_t ram_bytes, bool ring,
		   bool force_classic, uint32_t ring_entries, unsigned ram_flags,
		   struct mem_dev **ret, struct mig_error *err)
{
	long host_page = sysconf(_SC_PAGESIZE);
	uint64_t max_slot_pages = 0;
	struct mem_dev *m;
	int r;

	/* KVM logs dirty memory per host page, and every bitmap here (and the
	 * wire's pages) has one bit per 4 KiB: a kernel with 16 or 64 KiB pages
	 * (arm64 offers both) is not supported yet. */
	if (host_page != (long)GUEST_PAGE_SIZE)
		return mig_error_set(err, -EOPNOTSUPP, "this host's pages are %ld bytes: guest RAM "
				     "is tracked in %llu-byte pages only", host_page,
				     (unsigned long long)GUEST_PAGE_SIZE);
	m = calloc(1, sizeof(*m));
	if (!m)
		return mig_error_set(err, -ENOMEM, "out of memory");
	mig_device_init(&m->core, &mem_class, 0, MEM_MAPPED);
	m->vm_fd = vm_fd;
	m->base_gpa = base_gpa;
	m->ram_bytes = ram_bytes;
	m->nr_pages = ram_bytes >> GUEST_PAGE_SHIFT;
	m->ram_fd = -1;
	pthread_mutex_init(&m->ring_lock, NULL);

	r = pick_mode(kvm_fd, vm_fd, ring, force_classic,
		      ring_entries ? ring_entries : MEM_RING_DEFAULT_ENTRIES, m, err);
	if (r >= 0 && m->mode == MEM_LOG_RING)
		r = start_resetter(m, err);
	if (r < 0)
		goto err_free;
	r = alloc_ram(m, ram_flags, err);
	if (r < 0)
		goto err_free;

	m->nr_slots = (unsigned)DIV_ROUND_UP(ram_bytes, MEM_SLOT_MAX_BYTES);
	m->slots = calloc(m->nr_slots, sizeof(*m->slots));
	if (!m->slots) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto err_unmap;
	}
	for (unsigned i = 0; i < m->nr_slots; i++) {
		struct mem_slot *s = &m->slots[i];
		uint64_t off = (uint64_t)i * MEM_SLOT_MAX_BYTES;

		s->id = i;
		s->gpa = base_gpa + off;
		s->first_pfn = off >> GUEST_PAGE_SHIFT;
		s->size = ram_bytes - off < MEM_SLOT_MAX_BYTES ? ram_bytes - off : MEM_SLOT_MAX_BYTES;
		s->host = m->ram + off;
		if ((s->size >> GUEST_PAGE_SHIFT) > max_slot_pages)
			max_slot_pages = s->size >> GUEST_PAGE_SHIFT;
		r = set_slot(m, s, true, err);
		if (r < 0)
			goto err_slots;
	}
	m->core.state = MEM_LOGGING;
	m->scratch = calloc(DIV_ROUND_UP(max_slot_pages, 64), 8);
	m->pending = calloc(mem_bitmap_words(m), 8);
	if (!m->scratch || !m->pending) {
		r = mig_error_set(err, -ENOMEM, "out of memory");
		goto err_slots;
	}
	*ret = m;
	return 0;

err_slots:
	free(m->scratch);
	free(m->pending);
	free(m->slots);
err_unmap:
	munmap(m->ram, m->ram_bytes);
	if (m->ram_fd >= 0)
		close(m->ram_fd);
err_free:
	stop_resetter(m);
	free(m);
	return r;
}

int mem_ring_attach(struct mem_dev *m, unsigned index, int vcpu_fd, struct mig_error *err)
{
	size_t bytes = (size_t)m->ring_entries * sizeof(struct kvm_dirty_gfn);
	void *p;

	if (m->mode != MEM_LOG_RING)
		return 0;
	if (index >= m->nr_rings) {
		struct mem_ring *n = realloc(m->rings, (index + 1) * sizeof(*n));

		if (!n)
			return mig_error_set(err, -ENOMEM, "out of memory");
		memset(n + m->nr_rings, 0, (index + 1 - m->nr_rings) * sizeof(*n));
		m->rings = n;
		m->nr_rings = index + 1;
	}
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd,
		 MEM_RING_PAGE_OFFSET * 4096L);
	if (p == MAP_FAILED)
		return mig_error_set(err, -errno, "mapping the dirty ring of vCPU %u: %s", index,
				     strerror(errno));
	m->rings[index].gfns = p;
	m->rings[index].entries = m->ring_entries;
	m->rings[index].next = 0;
	return 0;
}

void mem_dev_destroy(struct mem_dev *m)
{
	if (!m)
		return;
	mem_postcopy_end(m);
	stop_resetter(m);
	for (unsigned i = 0; i < m->nr_rings; i++)
		if (m->rings[i].gfns)
			munmap(m->rings[i].gfns,
			       (size_t)m->rings[i].entries * sizeof(struct kvm_dirty_gfn));
	free(m->rings);
	free(m->scratch);
	free(m->pending);
	free(m->slots);
	if (m->ram)
		munmap(m->ram, m->ram_bytes);
	if (m->ram_fd >= 0)
		close(m->ram_fd);
	free(m);
}
