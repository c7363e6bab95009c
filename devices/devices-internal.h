/* SPDX-License-Identifier: MIT */
/* The kvm classes (memory, vCPU, platform) as a backend composes them into
 * a VM: shared by devices/ and the backends. */
#ifndef DEVICES_INTERNAL_H
#define DEVICES_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include <migrate/device.h>
#include <migrate/policy.h>
#include <migrate/vm.h>

#define GUEST_PAGE_SHIFT 12
#define GUEST_PAGE_SIZE  (1ULL << GUEST_PAGE_SHIFT)

extern const struct mig_device_class vcpu_class;
extern const struct mig_device_class mem_class;
extern const struct mig_device_class platform_class;

/* What the kvm-backed classes share of their VM: its KVM fds and its
 * vCPUs' fds (the platform's clock is resumed on every vCPU). */
#define KVM_VM_MAX_VCPUS 64
/* Bytes of a vCPU's compatibility description left for its MSR list. */
#define KVM_VM_MSR_DESC_MAX 160
struct kvm_vm_fds {
	int kvm_fd;
	int vm_fd;
	int vcpu_fds[KVM_VM_MAX_VCPUS];
	unsigned nr_vcpus;
	/* arm64: the guest's counters (virtual, physical) are the VM's, not a
	 * vCPU's: the largest any loaded vCPU saved, set once more with each
	 * load so none goes back (vcpu_arch_load()) */
	uint64_t counters[2];
	bool has_phys_counter;
	/* x86: the CPUID features its vCPUs were given (compat_cpuid_features
	 * order), kept when they are set: a running vCPU's own CPUID can be
	 * read only by stopping it */
	uint32_t guest_cpuid[COMPAT_CPUID_REGS];
	bool has_guest_cpuid;
	/* x86: KVM_CPUID_FEATURES (0x40000001) EAX bits the VMM implements
	 * itself, added to what KVM offers (SEV: the map hypercall's exit and
	 * the migration-control MSR, which KVM does not report) */
	uint32_t kvm_features_add;
	/* x86: what its vCPUs' saved state will hold, read from the first
	 * before it ran: PERF_CAPABILITIES as KVM gave it (immutable once a
	 * vCPU runs), and the MSRs KVM_GET_MSRS reads, as compat_msrs_encode()
	 * runs (0 bytes with msrs_fit false: more than a description holds) */
	uint64_t guest_perf_caps;
	bool has_guest_perf_caps;
	uint8_t guest_msrs[KVM_VM_MSR_DESC_MAX];
	uint16_t guest_msrs_len;
	bool has_guest_msrs, guest_msrs_fit;
};

/* ---- memory ---- */

enum mem_log_mode {
	MEM_LOG_MANUAL,   /* MANUAL_PROTECT2 + INITIALLY_SET: GET snapshot, CLEAR in chunks */
	MEM_LOG_CLASSIC,  /* GET fetches, clears and re-protects in one call */
	MEM_LOG_RING,     /* per-vCPU dirty rings, harvest + RESET */
	_MEM_LOG_MAX,
};
const char *mem_log_mode_to_string(enum mem_log_mode m);

struct mem_slot {
	uint32_t id;
	uint64_t gpa;
	uint64_t first_pfn;       /* its first page from the RAM's base (where bitmaps count from) */
	uint64_t size;
	uint8_t *host;
	bool logging;
};

struct mem_ring {
	struct kvm_dirty_gfn *gfns;
	uint32_t entries;
	uint32_t next;            /* next entry to harvest, free-running */
	uint64_t harvested;       /* entries harvested in all */
	uint64_t last_sync;       /* entries the last sync harvested */
};

struct mem_postcopy;

struct mem_dev {
	struct mig_device core;
	int vm_fd;
	enum mem_log_mode mode;
	bool ring_bitmap;         /* ring mode with KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP (arm64) */
	uint64_t base_gpa;        /* where guest RAM starts (0 on x86, 1 GiB on arm64) */
	uint8_t *ram;
	uint64_t ram_bytes;
	uint64_t nr_pages;
	/* MEM_RAM_SHARED: the memfd behind ram, mapped MAP_SHARED; -1: private
	 * anonymous memory.  Post-copy drops a shared RAM's pages with
	 * MADV_REMOVE and needs UFFD_FEATURE_MISSING_SHMEM. */
	int ram_fd;
	bool populated;           /* every page of ram faulted in */
	struct mem_postcopy *postcopy;  /* the destination's post-copy receiver, or NULL */
	struct mem_slot *slots;
	unsigned nr_slots;
	uint64_t *scratch;        /* one slot's bitmap for GET_DIRTY_LOG */
	/* ring mode */
	struct mem_ring *rings;
	unsigned nr_rings;
	uint32_t ring_entries;
	uint64_t *pending;        /* pages harvested from rings, not yet synced */
	uint64_t unreset;         /* entries harvested since the last reset */
	/* KVM_RESET_DIRTY_RINGS runs on its own thread (see ring_reset()) */
	pthread_t resetter;
	bool resetter_started;
	pthread_mutex_t reset_lock;
	pthread_cond_t reset_cond;
	uint64_t reset_asked, reset_done;  /* requests, free-running */
	int reset_ret;            /* the last ioctl's return, or -errno */
	bool reset_quit;
	pthread_mutex_t ring_lock; /* harvest to reset, and the hand-over of pending */
	_Atomic uint64_t ring_full_exits;
};

#define MEM_SLOT_MAX_BYTES (1ULL << 30)
/* KVM_CLEAR_DIRTY_LOG chunk: bounded so write protection is spread out (a
 * multiple of 64 pages, as the kernel requires). */
#define MEM_CLEAR_CHUNK_PAGES (1U << 15)
#define MEM_RING_DEFAULT_ENTRIES 65536

/* Before any vCPU exists: picks the log mode, allocates and pre-faults RAM,
 * registers the memslots from base_gpa with logging on (state LOGGING). */
/* Guest RAM in a memfd, mapped shared (a same-host hand-over passes it on) */
#define MEM_RAM_SHARED 1U
/* Do not pre-fault it now: mem_adopt() or mem_populate() follows */
#define MEM_RAM_LAZY 2U
int mem_dev_create(int kvm_fd, int vm_fd, uint64_t base_gpa, uint64_t ram_bytes, bool ring,
		   bool force_classic, uint32_t ring_entries, unsigned ram_flags,
		   struct mem_dev **ret, struct mig_error *err);
void mem_dev_destroy(struct mem_dev *m);
/* Fault every page of RAM in (after MEM_RAM_LAZY). */
int mem_populate(struct mem_dev *m);
/* Map the memfd fd (a same-host hand-over's) over RAM, at the same address. */
int mem_adopt(struct mem_dev *m, int fd, struct mig_error *err);
/* Ring mode: map vCPU `index`'s ring (call once per vCPU after creating it). */
int mem_ring_attach(struct mem_dev *m, unsigned index, int vcpu_fd, struct mig_error *err);
/* Ring mode: harvest one vCPU's ring into m->pending and reset (ring-full exits). */
int mem_ring_drain(struct mem_dev *m, unsigned index, struct mig_error *err);
/* Ring mode: "N/M" per vCPU, entries harvested in all and by the last sync,
 * for error messages; an empty string in bitmap mode. */
void mem_ring_report(struct mem_dev *m, char *out, size_t n);
/* Test seam, NULL in the product: called where a preempted thread would leave a
 * harvested-but-not-reset window (tests/test-dirty-log.c widens it). */
enum mem_ring_window { MEM_RING_DRAIN_HARVESTED, MEM_RING_SYNC_RESET };
extern void (*mem_ring_window_hook)(enum mem_ring_window where);
int mem_log_enable(struct mem_dev *m, bool on, struct mig_error *err);
uint64_t mem_bitmap_words(const struct mem_dev *m);

/*
 * Post-copy receiver (devices/memory/uffd.c, docs/devices.md): the
 * destination's guest RAM with its missing pages registered with
 * userfaultfd (MISSING mode).  A vCPU (or any thread) touching a missing
 * page blocks, in KVM_RUN or in user space, until the page is placed; the
 * fault is read here so the engine can ask the source for it.
 *
 * One thread may read faults while others place pages; placing is safe
 * from any number of threads at once (a page is placed once: a later copy
 * of it, from the background push or a duplicate, is counted and dropped).
 * Nothing may write guest RAM directly while post-copy is on: a write to a
 * missing page would block like a vCPU's.  Pages are counted from the
 * RAM's base, as in the dirty bitmaps.
 */
/* (struct mig_pc_fault and mig_pc_stats: device.h) */

/* Whether this host can do post-copy into RAM like m's (an anonymous or
 * shared mapping): 0, or the refusal the engine reports (-ENOSYS, -EPERM,
 * -EOPNOTSUPP) with what to change. */
int mem_postcopy_probe(const struct mem_dev *m, struct mig_error *err);
/* Before the vCPUs run on the destination: drops every page whose bit is
 * clear in `present` (NULL: all of them) and registers RAM as missing.
 * The pages present stay as they are. */
int mem_postcopy_begin(struct mem_dev *m, const uint64_t *present, struct mig_error *err);
/* The descriptor to poll for faults (POLLIN). */
int mem_postcopy_fd(const struct mem_dev *m);
/* Up to `max` faults: waits at most timeout_ms (-1: no bound) for the
 * first; returns how many (0 on timeout) or -errno.  Faults on pages
 * placed meanwhile are dropped (their vCPU was already woken). */
int mem_postcopy_read_faults(struct mem_dev *m, struct mig_pc_fault *ret, unsigned max,
			     int timeout_ms, struct mig_error *err);
/* Places `n` pages of content `src` at `pfn` (UFFDIO_COPY) and wakes who
 * waits on them; pages already there are skipped.  Returns the pages
 * this call placed, or -errno. */
int mem_postcopy_place(struct mem_dev *m, uint64_t pfn, const void *src, uint64_t n,
		       struct mig_error *err);
/* The same for `n` zero pages (UFFDIO_ZEROPAGE). */
int mem_postcopy_place_zero(struct mem_dev *m, uint64_t pfn, uint64_t n,
			    struct mig_error *err);
/* Wakes threads waiting on pages [pfn, pfn + n) (UFFDIO_WAKE): they fault
 * again and wait once more if a page is still missing. */
int mem_postcopy_wake(struct mem_dev *m, uint64_t pfn, uint64_t n, struct mig_error *err);
bool mem_postcopy_present(const struct mem_dev *m, uint64_t pfn);
void mem_postcopy_stats(const struct mem_dev *m, struct mig_pc_stats *ret);
/* Every page present: unregisters RAM and closes the userfaultfd (RAM is
 * then ordinary memory).  -EBUSY while a page is missing. */
int mem_postcopy_complete(struct mem_dev *m, struct mig_error *err);
/* Teardown of a destination given up (and by mem_dev_destroy()): closes
 * the userfaultfd whatever is missing, which lets every waiting thread go.
 * Only when the VM will not run on: a missing page touched afterwards
 * reads as zeros.  Call it before stopping the vCPUs for good: a vCPU
 * waiting for a page KVM reads from kernel mode is not kicked out of
 * KVM_RUN by a signal (docs/devices.md §13). */
void mem_postcopy_end(struct mem_dev *m);
/* the memory class's face of it (device.h) */
extern const struct mig_postcopy_ops mem_postcopy_ops;

/* ---- vCPU ---- */

struct vcpu_dev;

/* The exits a vCPU's run loop hands to its VM, which alone knows what they
 * mean; the class handles the rest (signals, failures).  Each returns 0 to
 * go on, <0 to stop the vCPU (after vcpu_set_fatal()). */
struct vcpu_exit_ops {
	/* OUT of one byte to `port` (x86) */
	int (*io_out)(void *arg, struct vcpu_dev *v, uint16_t port, uint8_t val);
	/* an MMIO access nothing in the kernel claimed (arm64's doorbells) */
	int (*mmio)(void *arg, struct vcpu_dev *v, const struct kvm_run *run);
	/* the vCPU's dirty ring is full: harvest and reset it before it runs */
	int (*dirty_ring_full)(void *arg, struct vcpu_dev *v);
	/* x86: a hypercall KVM forwards (KVM_CAP_EXIT_HYPERCALL): set
	 * run->hypercall.ret, which the next KVM_RUN gives the guest */
	int (*hypercall)(void *arg, struct vcpu_dev *v, struct kvm_run *run);
	/* x86: an RDMSR or WRMSR the MSR filter sent here: set run->msr.data
	 * (a read) or run->msr.error (1: the guest gets #GP) */
	int (*msr)(void *arg, struct vcpu_dev *v, struct kvm_run *run);
	/* NULL, or told when the vCPU's thread starts running guest code
	 * (kind MIG_VCPU_RUN_START, stamped before its KVM_RUN) and when it
	 * stops (STOP, stamped once it is out for good): from that thread */
	void (*ran)(void *arg, struct vcpu_dev *v, const struct mig_vcpu_run *e);
};

/* What a vCPU needs of its VM.  The class takes nothing else from it, so a
 * backend whose vCPUs run elsewhere can still use its state machine. */
struct vcpu_host {
	struct kvm_vm_fds *fds;
	const struct vcpu_exit_ops *exits;
	void *exit_arg;
};

struct vcpu_dev {
	struct mig_device core;
	const struct vcpu_host *host;
	unsigned index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool want_pause;      /* requested by the controller */
	bool parked;          /* the thread is out of KVM_RUN and waiting */
	bool quit;
	int fatal;            /* -errno or exit reason problem; the vCPU stopped */
	char fatal_msg[160];
	struct mig_buf saved; /* SAVED: the state blob */
	/* vcpu_halt(): the vCPU's own thread's, no lock */
	bool halted;          /* MP_STATE HALTED, its timer armed */
	bool no_halt;         /* the kernel refused HALTED: vcpu_wait() instead */
	bool halt_timer_ok;
	timer_t halt_timer;   /* SIG_KICK to the vCPU's thread */
	/* The convergence throttle (mig_throttle_ops): the share of its time
	 * the vCPU sleeps, set by any thread; the slice timer sends
	 * SIG_THROTTLE to the vCPU's thread, which sleeps its share before
	 * it runs on.  tid is the thread's, once it runs. */
	_Atomic uint32_t throttle_pct;
	_Atomic pid_t tid;
	pthread_mutex_t throttle_lock;  /* creating and arming the timer */
	bool throttle_timer_ok;
	timer_t throttle_timer;
	_Atomic uint64_t throttled_ns;  /* slept in all, for the tests and the summary */
};

/* KVM_CREATE_VCPU and its architecture's setup (vcpu-arch.h: x86, the CPUID
 * the lab gives it); state CREATED. */
int vcpu_dev_create(const struct vcpu_host *host, unsigned index, struct vcpu_dev **ret,
		    struct mig_error *err);
void vcpu_dev_destroy(struct vcpu_dev *v);
/* Sleep until `ns` from now or until a pause or quit is requested (from an
 * exit handler that paces the guest). */
void vcpu_wait(struct vcpu_dev *v, uint64_t ns);
/* The same, but asleep in KVM, as a guest's HLT would be, so that KVM
 * counts it (halt_wait_ns): the vCPU's MP_STATE becomes HALTED and a timer
 * kicks it out of KVM_RUN after `ns`; a pause kicks it out sooner.  Where
 * the kernel refuses HALTED (arm64 has no such state) it is vcpu_wait(). */
void vcpu_halt(struct vcpu_dev *v, uint64_t ns);
/* Record why a vCPU stopped (the first reason wins); it parks after the exit. */
void vcpu_set_fatal(struct vcpu_dev *v, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- x86 platform (KERNEL-UAPI §4) ---- */

struct platform_dev {
	struct mig_device core;
	const struct kvm_vm_fds *fds;
	struct mig_buf saved;     /* SAVED: the VM-wide blob */
	struct mig_buf loaded;    /* RESTORED: kept for the clock at the start */
};

/* After KVM_CREATE_IRQCHIP, before the vCPUs: state CREATED. */
int platform_dev_create(const struct kvm_vm_fds *fds, struct platform_dev **ret,
			struct mig_error *err);
void platform_dev_destroy(struct platform_dev *p);

#endif
