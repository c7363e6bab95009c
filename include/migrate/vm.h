/* SPDX-License-Identifier: MIT */
/*
 * A VM as the engines see it: its guest RAM, the list of its devices, and a
 * backend that does what only it can (describe itself, sync the dirty log
 * with its own checks, say whether the guest is healthy, hash its RAM, go
 * away).  The engines take a struct mig_vm and never name a backend or a
 * class: devices change state only through walks (mig_vm_walk()).
 *
 * A backend embeds struct mig_vm and gets itself back with container_of():
 * the lab VM (devices/lab) is one.
 */
#ifndef MIGRATE_VM_H
#define MIGRATE_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/device.h>
#include <migrate/error.h>

/* What can be seen of the guest from outside. */
struct mig_vm_health {
	uint64_t passes;          /* the guest's own progress: passes over its working set */
	uint64_t progress;        /* finer: pages it wrote */
	uint64_t errors;          /* its self-check errors */
	bool has_progress;        /* it has a working set: its passes must climb */
	int fatal;                /* -errno: a vCPU stopped on an exit it could not handle */
	char fatal_msg[192];
};

/* A digest of guest RAM: XXH3-64 of each 2 MiB chunk, then XXH3-128 of those. */
struct mig_digest {
	uint64_t hi, lo;
};
#define MIG_DIGEST_HEX 33
void mig_digest_format(const struct mig_digest *d, char buf[static MIG_DIGEST_HEX]);
int mig_ram_digest(const uint8_t *ram, uint64_t bytes, const atomic_bool *stop,
		   struct mig_digest *ret);

/* The description a destination must match, as its backend writes it. */
#define MIG_VM_DESC_MAX 128
/* What one device's compatibility description may hold. */
#define MIG_MANIFEST_DESC_MAX 232

struct mig_vm;

/* What KVM counted of a VM (its binary statistics: the VM's and the sum of
 * its vCPUs'), for backends whose kernel has them. */
struct mig_vm_kvm {
	bool valid;
	uint64_t exits;               /* vCPU exits */
	uint64_t page_faults;         /* pf_taken: dirty logging's write-protect faults among them */
	uint64_t halt_exits;          /* a vCPU with nothing to do */
	uint64_t remote_tlb_flushes;  /* re-protecting pages flushes every vCPU's TLB */
	/* Halt polling: a vCPU that halts spins a while before it sleeps. */
	uint64_t halt_successful_polls;   /* polls a wakeup ended */
	uint64_t halt_attempted_polls;
	uint64_t halt_poll_success_ns;    /* time in polls that succeeded */
	uint64_t halt_poll_fail_ns;       /* and in those that gave up */
	uint64_t halt_wait_ns;            /* time asleep in halt, after polling */
	bool halt_ns_valid;           /* the kernel counts the three times above (5.16 on) */
	uint32_t vcpus;               /* how many vCPUs the sums cover */
};

struct mig_vm_ops {
	/* At most MIG_VM_DESC_MAX bytes that a destination's matches() checks. */
	int (*describe)(struct mig_vm *vm, uint8_t *out, size_t *ret_len, struct mig_error *err);
	/* Destination: is this the VM the source describes?  The error says
	 * how they differ. */
	int (*matches)(struct mig_vm *vm, const uint8_t *desc, size_t len, struct mig_error *err);
	/* OR the guest pages dirtied since the last sync into bitmap (one bit
	 * per page from GPA 0) and re-arm tracking: every device's log
	 * (mig_vm_devices_dirty_sync()) and whatever checks the backend adds. */
	int (*dirty_sync)(struct mig_vm *vm, uint64_t *bitmap, uint64_t *ret_count,
			  struct mig_error *err);
	void (*health)(struct mig_vm *vm, struct mig_vm_health *ret);
	/* Digest of guest RAM, given up with -ECANCELED once *stop is set. */
	int (*digest)(struct mig_vm *vm, const atomic_bool *stop, struct mig_digest *ret);
	/* NULL, or words for an error about lost writes (the dirty ring's counts). */
	void (*diagnose)(struct mig_vm *vm, char *out, size_t n);
	/* NULL, or KVM's counts now (valid false where the kernel has none). */
	void (*kvm)(struct mig_vm *vm, struct mig_vm_kvm *ret);
	void (*destroy)(struct mig_vm *vm);
	/* Same-host hand-over (docs/phases.md).  NULL, or the memfd behind
	 * guest RAM, which the source passes on (-1: RAM is not in one). */
	int (*ram_fd)(struct mig_vm *vm);
	/* NULL, or a destination's RAM made ready at SETUP: fd >= 0 maps that
	 * memfd (the source's RAM, handed over) in place of its own; fd -1
	 * keeps its own RAM, faulted in now if it was not yet. */
	int (*ram_adopt)(struct mig_vm *vm, int fd, struct mig_error *err);
};

/*
 * A vCPU of a VM starting or stopping guest code, as its backend reports
 * it (mig_vm_run_event()) and a watcher sees it (mig_vm_run_watch()).
 * START is stamped just before the vCPU's thread enters its run loop's
 * first KVM_RUN after being created, loaded or paused; STOP once it is
 * out of KVM_RUN for good (parked for a migration, paused, a fatal exit,
 * destroyed).  So [START, STOP] covers every instant it ran guest code.
 */
enum mig_vcpu_run_kind { MIG_VCPU_RUN_START = 1, MIG_VCPU_RUN_STOP = 2 };
struct mig_vcpu_run {
	uint32_t vcpu;
	uint32_t kind;            /* enum mig_vcpu_run_kind */
	uint64_t realtime_ns;     /* CLOCK_REALTIME */
	uint64_t monotonic_ns;    /* CLOCK_MONOTONIC */
};
/* e NULL: the VM is gone (its backend's destroy), the last call. */
typedef void (*mig_vcpu_run_fn)(void *arg, struct mig_vm *vm, const struct mig_vcpu_run *e);
/* Events that came before a watcher, kept for it (more are counted as dropped). */
#define MIG_VM_RUN_PENDING 128

struct mig_vm {
	const struct mig_vm_ops *ops;
	/* Guest RAM, mapped for sending (source) or receiving (destination). */
	uint8_t *ram;
	uint64_t ram_bytes;
	/* Its devices, in creation order: a walk's ties go by this order. */
	struct mig_device **devices;
	unsigned nr_devices;
	/* vCPU run events: zeroed with the struct (an all-zero mutex is an
	 * unlocked one in glibc), set up before any vCPU runs. */
	pthread_mutex_t run_lock;
	mig_vcpu_run_fn run_fn;
	void *run_arg;
	struct mig_vcpu_run run_pending[MIG_VM_RUN_PENDING];
	unsigned run_nr_pending;
	uint64_t run_dropped;
	struct mig_vcpu_run run_last_stop;   /* the latest STOP (kind 0: none yet) */
};

/* Watch vm's vCPUs start and stop: fn gets the events kept since the VM
 * was made, then each as it comes, from the vCPU's own thread (it must be
 * quick and not call back into the VM).  One watcher: returns the arg of
 * the one it replaces (NULL: none), which is called no more. */
void *mig_vm_run_watch(struct mig_vm *vm, mig_vcpu_run_fn fn, void *arg);
/* Backends: a vCPU started or stopped; the VM is gone (after its vCPUs). */
void mig_vm_run_event(struct mig_vm *vm, const struct mig_vcpu_run *e);
void mig_vm_run_end(struct mig_vm *vm);
/* The latest vCPU STOP event's stamps; false if there was none. */
bool mig_vm_run_last_stop(struct mig_vm *vm, uint64_t *ret_monotonic_ns, uint64_t *ret_realtime_ns);

/* What an agent lists of a VM, beyond its health. */
struct mig_vm_summary {
	uint32_t vcpus;
	uint64_t mem_bytes;
	uint64_t workload_bytes;  /* the memory its workload keeps writing (lab: wss) */
};

/*
 * A kind of VM an agent can host, chosen by name.  The agent makes, lists
 * and prepares VMs only through this; the lab VM ("lab") is one backend.
 */
struct mig_vm_backend {
	const char *name;
	/* A new VM from an operator's SPEC ("" for the defaults), started,
	 * returned once its workload runs. */
	int (*create)(const char *spec, struct mig_vm **ret, struct mig_error *err);
	/* Whether create() would take SPEC (NULL: the defaults), and what it
	 * would make, without making it: a tool checks an operator's SPEC
	 * before any agent is asked. */
	int (*check_spec)(const char *spec, struct mig_vm_summary *ret, struct mig_error *err);
	/* A destination for a VM so described (describe()): everything in
	 * place, nothing run. */
	int (*prepare)(const uint8_t *desc, size_t len, struct mig_vm **ret,
		       struct mig_error *err);
	void (*summary)(struct mig_vm *vm, struct mig_vm_summary *ret);
};
/* NULL for a name no backend has. */
const struct mig_vm_backend *mig_vm_backend_get(const char *name);

/* A device by class and instance, or NULL: for backends, tools and tests
 * (the engines never ask for a class). */
struct mig_device *mig_vm_find(struct mig_vm *vm, uint32_t cls, unsigned id);

/* Take every device of vm through `stage` (mig_devices_walk()). */
int mig_vm_walk(struct mig_vm *vm, enum mig_stage stage, struct mig_walk *w,
		struct mig_error *err);
/* Sync every device that tracks dirty pages; MIG_DIRTY_LOST from any makes
 * every page dirty (and is returned). */
int mig_vm_devices_dirty_sync(struct mig_vm *vm, uint64_t *bitmap, uint64_t *ret_count,
			      struct mig_error *err);
/* Guest pages, and 64-bit words of a bitmap of them. */
/* Start every device's dirty tracking (dirty_ops->start), in device order;
 * on a failure the ones started are stopped again.  Stop them all (on
 * every way out of a migration; errors are the devices' to report). */
int mig_vm_devices_dirty_start(struct mig_vm *vm, struct mig_error *err);
void mig_vm_devices_dirty_stop(struct mig_vm *vm);
/* How many of vm's devices can be throttled (its vCPUs). */
unsigned mig_vm_throttled(const struct mig_vm *vm);
/* Throttle them (throttle_ops): device instance i gets pct[i], or pct[0]
 * for all when n is 1.  Every device is tried; the first error is kept. */
int mig_vm_throttle(struct mig_vm *vm, const uint32_t *pct, unsigned n, struct mig_error *err);
/* The pages each vCPU has dirtied, cumulative, from the first device whose
 * log tells vCPUs apart; 0 when none does. */
unsigned mig_vm_dirty_by_vcpu(struct mig_vm *vm, uint64_t *per_vcpu, unsigned n);
/* Post-copy (postcopy_ops of the device holding RAM; docs/devices.md §14).
 * check: whether this VM can run with pages missing (every class agrees,
 * and with probe, the RAM's class finds this host can), or why not. */
int mig_vm_postcopy_check(struct mig_vm *vm, bool probe, struct mig_error *err);
int mig_vm_postcopy_begin(struct mig_vm *vm, const uint64_t *present, struct mig_error *err);
int mig_vm_postcopy_faults(struct mig_vm *vm, struct mig_pc_fault *ret, unsigned max,
			   int timeout_ms, struct mig_error *err);
int mig_vm_postcopy_place(struct mig_vm *vm, uint64_t pfn, const void *src, uint64_t n,
			  struct mig_error *err);
bool mig_vm_postcopy_present(struct mig_vm *vm, uint64_t pfn);
void mig_vm_postcopy_stats(struct mig_vm *vm, struct mig_pc_stats *ret);
int mig_vm_postcopy_complete(struct mig_vm *vm, struct mig_error *err);
void mig_vm_postcopy_end(struct mig_vm *vm);
uint64_t mig_vm_pages(const struct mig_vm *vm);
uint64_t mig_vm_bitmap_words(const struct mig_vm *vm);
/* What the devices' state will add to the stop-and-copy: what is pending
 * in their pre-copy, and each device's final_size() (a fixed allowance for
 * a device with state and no estimate of its own). */
uint64_t mig_vm_state_estimate(const struct mig_vm *vm);
/* Whether every device is where a running VM has it (its ROLLBACK target). */
bool mig_vm_is_running(const struct mig_vm *vm);
/* The page hooks of its devices (mig_page_ops): whether it has any, and
 * each one's encode in device order (source) or decode in reverse order
 * (destination) on one page; an error names the device and the page.
 * Encode returns 1 if a device wrote the page's tag (MIG_PAGE_TAG_SIZE
 * bytes), 0 if none did; a second device tagging the page is an error. */
bool mig_vm_has_page_hooks(const struct mig_vm *vm);
int mig_vm_page_encode(struct mig_vm *vm, uint64_t pfn, void *page, void *tag,
		       struct mig_error *err);
int mig_vm_page_decode(struct mig_vm *vm, uint64_t pfn, void *page, const void *tag,
		       struct mig_error *err);

/* The session exchanges of its devices (mig_session_ops): whether it has
 * any; then one message of every such device's answer (destination) or
 * open (source) data, and the other side handing each part to its device
 * (accept, opened).  A message is entries of struct mig_session_entry and
 * their data, for the devices in the VM's order. */
struct mig_session_entry {
	uint32_t cls;
	uint32_t instance;
	uint32_t len;
	uint32_t pad;
};
#define MIG_SESSION_MAX (64U << 10)   /* bytes of one message */
enum mig_session_op { MIG_SESSION_ANSWER, MIG_SESSION_OPEN };
bool mig_vm_has_sessions(const struct mig_vm *vm);
int mig_vm_session_pack(struct mig_vm *vm, enum mig_session_op op, struct mig_buf *out,
			struct mig_error *err);
int mig_vm_session_unpack(struct mig_vm *vm, enum mig_session_op op, const uint8_t *p, size_t n,
			  struct mig_error *err);

/*
 * The device manifest SETUP carries after struct mig_setup: one entry per
 * device of the source VM.  The destination checks it against its own VM
 * before anything moves (mig_vm_manifest_check()): the same devices, each
 * class in the version this build reads, and each class's own check of its
 * description (compat_ops); a refusal names the device and says why.
 */
struct mig_manifest_entry {
	uint32_t cls;             /* enum mig_dev_class */
	uint32_t instance;
	uint32_t version;         /* the class's state version */
	uint32_t flags;           /* MIG_MANIFEST_F_* */
	uint32_t desc_len;        /* bytes of desc in use */
	uint32_t pad;
	uint8_t desc[MIG_MANIFEST_DESC_MAX];  /* compat_ops->describe() */
};
#define MIG_MANIFEST_F_STATE 1U       /* it has state (final DEVICE_DATA chunks) */
#define MIG_MANIFEST_F_KNOWN MIG_MANIFEST_F_STATE
_Static_assert(sizeof(struct mig_manifest_entry) == 256, "manifest entry");
int mig_vm_manifest(struct mig_vm *vm, struct mig_buf *out, struct mig_error *err);
int mig_vm_manifest_check(struct mig_vm *vm, const uint8_t *p, size_t n, uint32_t count,
			  struct mig_error *err);
/* The same checks as a dry run (migratectl check): every policy of every
 * device's class (compat_ops->policies, each alone), each reported with
 * its verdict (0 passes, 1 could not judge, <0 refuses) and message,
 * instead of stopping at the first refusal.  What is wrong with the
 * manifest itself is reported as the policy "devices".  Returns how many
 * refused, or -errno for a manifest that cannot be read. */
typedef void (*mig_compat_report_fn)(void *arg, uint32_t cls, uint32_t instance,
				     const char *policy, int verdict, const char *msg);
int mig_vm_manifest_report(struct mig_vm *vm, const uint8_t *p, size_t n, uint32_t count,
			   mig_compat_report_fn report, void *arg, struct mig_error *err);

/*
 * Each device's state, in an array indexed like vm->devices (entries of
 * devices without state are left alone).  mig_vm_save() has every device
 * with state write its own, in the SAVE stage's order, after the SAVE
 * walk; the engine sends each in DEVICE_DATA chunks.  mig_vm_load() walks
 * the LOAD stage with each device reading its own.
 */
int mig_vm_save(struct mig_vm *vm, struct mig_buf *states, struct mig_error *err);
int mig_vm_load(struct mig_vm *vm, const struct mig_buf *states, struct mig_walk *w,
		struct mig_error *err);

/*
 * The same state in one buffer, for a VM saved whole (docs/devices.md §6):
 * a 16-byte header, then one record per device in the SAVE stage's order:
 * class, instance, class version, length, bytes.  Load checks the whole
 * buffer against this VM's devices (every device with state has exactly
 * one record, of its class's version) before any device loads.
 */
#define MIG_STATE_MAGIC 0x3153564544474d4dULL   /* "MMGDEVS1" */
#define MIG_STATE_VERSION 1
int mig_vm_state_save(struct mig_vm *vm, struct mig_buf *out, struct mig_error *err);
int mig_vm_state_load(struct mig_vm *vm, const uint8_t *p, size_t n, struct mig_walk *w,
		      struct mig_error *err);

#endif
