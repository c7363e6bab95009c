/* SPDX-License-Identifier: MIT */
/*
 * The device-class interface.  Every class (memory, vCPU, the x86 platform,
 * and later VFIO, GIC/ITS, SEV) embeds struct mig_device and gets itself back
 * with container_of().  A class owns one state enum, a name table and a
 * transition table; mig_device_step() is the only way a device changes
 * state: it checks the table, then asks the class to carry out that single
 * arc.
 *
 * The engines never name a class.  They walk a VM's devices through stages
 * (mig_devices_walk()): each class says, as data, which state it must reach
 * in each stage and in what order relative to every other class, and the
 * walker takes each device there one arc at a time, along the class's
 * next-step table.  Rolling back is one more walk: every device back to
 * running, from wherever it stopped.
 */
#ifndef MIGRATE_DEVICE_H
#define MIGRATE_DEVICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/error.h>

/* Device class ids: the value travels on the wire (device records), so
 * each class has its number here, built or not (the device record of
 * docs/protocol.md §2.3); 0 is never a class. */
enum mig_dev_class {
	MIG_DEV_INVALID = 0,
	MIG_DEV_MEMORY = 1,       /* guest RAM and its dirty log */
	MIG_DEV_VCPU = 2,         /* one x86 vCPU */
	MIG_DEV_PLATFORM = 3,     /* x86 VM-wide state: irqchip, PIT, kvmclock */
	MIG_DEV_VFIO = 4,         /* a VFIO passthrough device (migration uAPI v2) */
	MIG_DEV_CCW = 5,          /* a channel I/O subchannel (vfio-ccw; sim) */
	MIG_DEV_GIC = 6,          /* an arm64 vGICv3 and its ITSes */
	MIG_DEV_MSI = 7,          /* the lab's MSI devices (LPIs counted both ways) */
	MIG_DEV_SEV = 8,          /* an AMD SEV guest's firmware context and encryption map */
	MIG_DEV_DIAG318 = 9,      /* an s390 vCPU's DIAG 318 value (sync registers) */
	_MIG_DEV_CLASS_MAX,
};
/* Classes that are not in this build's table (a test's, a plug-in's)
 * register at run time with an id from here up. */
#define MIG_DEV_CLASS_PRIVATE 0x8000U

/*
 * The stages a VM's devices go through, each a walk (mig_devices_walk()).
 * A class takes part in a stage by declaring steps for it (below).
 *
 *   TRACK     source, before PRECOPY: dirty tracking and pre-copy sessions on
 *   QUIESCE   source, STOP_COPY: nothing runs, nothing does DMA
 *   SAVE      source, STOP_COPY: state read.  Classes whose save writes
 *             guest RAM (save_writes_ram) are walked first, before the final
 *             dirty sync; the others after it
 *   RELEASE   source, once the destination owns the VM: the copy is given up
 *   ROLLBACK  source: back to running, from wherever a walk stopped
 *   RECEIVE   destination, before the first page: ready to take pages
 *   LOAD      destination: every device's state in (load() at load_state)
 *   START     destination, at COMMIT: the VM runs
 *   DISCARD   destination: the copy is given up
 *   HOLD      destination in post-copy, its link broken: nothing runs guest
 *             code again, but nothing is waited for either (a vCPU that
 *             waits in the kernel for a missing page leaves once it comes)
 *   RESUME    destination in post-copy, its link made again: what HOLD
 *             stopped runs again
 */
enum mig_stage {
	MIG_STAGE_TRACK,
	MIG_STAGE_QUIESCE,
	MIG_STAGE_SAVE,
	MIG_STAGE_RELEASE,
	MIG_STAGE_ROLLBACK,
	MIG_STAGE_RECEIVE,
	MIG_STAGE_LOAD,
	MIG_STAGE_START,
	MIG_STAGE_DISCARD,
	MIG_STAGE_HOLD,
	MIG_STAGE_RESUME,
	_MIG_STAGE_MAX,
};

/* One step of a class in a stage: reach `target`, at `order` among every
 * step of every class in that stage (lower first; equal orders go by device,
 * in the VM's list order).  A class may take several steps in one stage: a
 * VFIO device goes to RUNNING_P2P at one order and to STOP at a later one,
 * with the vCPUs' stop between them. */
struct mig_stage_step {
	enum mig_stage stage;
	int order;
	int target;
};

struct mig_device;

/* The most state one device may hand to load() at once. */
#define MIG_DEVICE_STATE_MAX (64U << 20)

/* Device state streams out through a writer and in through a reader: it may
 * be large, and may come in pieces. */
struct mig_writer {
	int (*write)(struct mig_writer *w, const void *p, size_t n, struct mig_error *err);
};
struct mig_reader {
	/* Exactly n bytes, or an error ("... ended after K of N bytes"). */
	int (*read)(struct mig_reader *r, void *p, size_t n, struct mig_error *err);
	/* Bytes still to read. */
	uint64_t (*remaining)(const struct mig_reader *r);
};
/* A writer that appends to a buffer, and a reader over bytes in memory. */
struct mig_buf_writer {
	struct mig_writer w;
	struct mig_buf *buf;
};
struct mig_mem_reader {
	struct mig_reader r;
	const uint8_t *p;
	size_t len, off;
};
void mig_buf_writer_init(struct mig_buf_writer *bw, struct mig_buf *buf);
void mig_mem_reader_init(struct mig_mem_reader *mr, const void *p, size_t len);

/* Mandatory for every class. */
struct mig_device_ops {
	/* Carry out the arc from d->state to `to` (already checked against the table). */
	int (*step)(struct mig_device *d, int to, struct mig_error *err);
	/* Write the device's state (source, after the SAVE walk).  NULL for a
	 * class whose state travels otherwise: guest RAM goes as pages. */
	int (*save)(struct mig_device *d, struct mig_writer *w, struct mig_error *err);
	/* Read and apply it (destination, in load_state, during the LOAD walk).
	 * Validates all of it before it changes anything.  NULL with save. */
	int (*load)(struct mig_device *d, struct mig_reader *r, struct mig_error *err);
	/* Optional: the bytes its final state will add to the switchover, as
	 * the device estimates them (NULL: a small fixed allowance).  Feeds
	 * the convergence policy's expected downtime. */
	uint64_t (*final_size)(struct mig_device *d);
};

/* Optional: state that can be sent while the VM runs (a VFIO device in
 * PRE_COPY).  What is pending feeds the convergence policy's estimate. */
struct mig_precopy_ops {
	uint64_t (*pending)(struct mig_device *d);
	/* At most `budget` bytes of it; 0 written means nothing more for now. */
	int (*save_chunk)(struct mig_device *d, struct mig_writer *w, uint64_t budget,
			  struct mig_error *err);
	int (*load_chunk)(struct mig_device *d, struct mig_reader *r, struct mig_error *err);
};

/* A sync that lost track (a log that overflowed, a device reset): the
 * caller must take every page as dirty. */
#define MIG_DIRTY_LOST 1

/* Optional: classes that track guest pages written while they run (guest
 * RAM's own log, a device's DMA log). */
struct mig_dirty_ops {
	/* NULL: tracking is always on. */
	int (*start)(struct mig_device *d, struct mig_error *err);
	/* OR the pages dirtied since the last sync into `bitmap` (one bit per
	 * guest page from GPA 0) and re-arm tracking for them.  Returns 0, or
	 * MIG_DIRTY_LOST, or -errno. */
	int (*sync)(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
		    struct mig_error *err);
	int (*stop)(struct mig_device *d, struct mig_error *err);
	/* Optional: the pages each vCPU has dirtied since the device was
	 * made, one counter per vCPU, into per_vcpu[0..n).  Returns how many
	 * vCPUs it told apart: 0 when it cannot (a bitmap does not say who
	 * wrote; the dirty ring does). */
	unsigned (*by_vcpu)(struct mig_device *d, uint64_t *per_vcpu, unsigned n);
};

/* Optional: a class whose devices run guest code (vCPUs): the convergence
 * policy slows them so that a migration can finish. */
struct mig_throttle_ops {
	/* Let the device run at most (100 - pct) % of its time, in short
	 * slices, from now on; 0 lets it run free.  Safe from any thread, in
	 * any state: a device that is not running takes it when it runs. */
	int (*set)(struct mig_device *d, uint32_t pct, struct mig_error *err);
};

/* Optional: what a destination must offer to take this device, checked
 * before anything moves. */
struct mig_compat_ops {
	/* Source: the description the destination checks. */
	int (*describe)(struct mig_device *d, struct mig_buf *out, struct mig_error *err);
	/* Destination: can `d`, this VM's device of the same class and
	 * instance, take the state of a device so described?  The error says
	 * what differs and what to do. */
	int (*check)(struct mig_device *d, const void *desc, size_t n, struct mig_error *err);
	/* Optional: the host compatibility policies check() runs
	 * (docs/policies.md), by name, NULL-terminated, so a dry run
	 * (migratectl check) reports each rather than only the first refusal.
	 * check_one() runs policies[i] alone; check() is them all, in order.
	 * NULL: check() is one, named after the class; check_one NULL with
	 * one name: check() is that one. */
	const char *const *policies;
	int (*check_one)(struct mig_device *d, const void *desc, size_t n, unsigned i,
			 struct mig_error *err);
};

/* Optional: a class that must transform or veto guest pages on their way
 * (SEV: encrypted pages through the firmware).  A VM with a hook has its
 * pages copied before they are sent, so the hook works on a private copy
 * and the guest never sees it; and every page passes the hooks, zero
 * pages too (a zero page the hook leaves alone still travels as a flag).
 * A page's wire form may carry a tag of MIG_PAGE_TAG_SIZE bytes (SEV: the
 * transport packet's header); at most one device of a VM tags a page. */
struct mig_page_ops {
	/* Source: page `pfn` into its wire form, in place (same size),
	 * before its sum.  Returns 1 if it wrote `tag`, 0 if the page goes
	 * as it is, -errno to veto it: the migration fails, the VM stays. */
	int (*encode)(struct mig_device *d, uint64_t pfn, void *page, void *tag,
		      struct mig_error *err);
	/* Destination: page `pfn` back from its wire form, in place in guest
	 * RAM, once it has arrived and passed its checks; `tag` is the one
	 * it came with, or NULL (a zero page is already zeroed).  -errno
	 * fails the migration. */
	int (*decode)(struct mig_device *d, uint64_t pfn, void *page, const void *tag,
		      struct mig_error *err);
};

/* Optional: a class whose device must agree on something with its peer
 * before any page moves (SEV: the firmware's keys).  Two exchanges, both
 * on the control stream (docs/protocol.md §6.2):
 *   SETUP -> READY   the destination answers the source's description
 *                    (answer), the source takes the answer (accept);
 *   OPEN -> OPENED   after the source's TRACK walk, what the source's
 *                    device opened (open) goes to the destination's
 *                    (opened), whose RECEIVE walk is then taken again;
 *                    no page is sent before OPENED. */
struct mig_session_ops {
	int (*answer)(struct mig_device *d, struct mig_buf *out, struct mig_error *err);
	int (*accept)(struct mig_device *d, const void *p, size_t n, struct mig_error *err);
	int (*open)(struct mig_device *d, struct mig_buf *out, struct mig_error *err);
	int (*opened)(struct mig_device *d, const void *p, size_t n, struct mig_error *err);
};

/*
 * Post-copy (docs/devices.md §14): the class that holds guest RAM lets the
 * destination's vCPUs run with pages missing.  A thread touching one blocks
 * until it is placed; its fault is read here so the engine can ask the
 * source for it.  Pages count from the RAM's base, as in the dirty bitmap.
 */
struct mig_pc_fault {
	uint64_t pfn;             /* the missing page */
	uint32_t tid;             /* the faulting thread (a vCPU's), 0 if unknown */
	bool write;               /* a write fault */
};
struct mig_pc_stats {
	uint64_t missing;         /* pages still missing */
	uint64_t faults;          /* faults read (each asked for once) */
	uint64_t stale_faults;    /* faults read for pages already placed */
	uint64_t placed;          /* pages placed by copy */
	uint64_t zeroed;          /* pages placed as zero pages */
	uint64_t duplicates;      /* placements of pages already there, ignored */
};
struct mig_postcopy_ops {
	/* Whether this host can: 0, or the refusal with what to change. */
	int (*probe)(struct mig_device *d, struct mig_error *err);
	/* Before the vCPUs run: drop every page whose bit is clear in
	 * `present` and hold back whoever touches one. */
	int (*begin)(struct mig_device *d, const uint64_t *present, struct mig_error *err);
	/* Up to max faults, waiting at most timeout_ms for the first; how many. */
	int (*read_faults)(struct mig_device *d, struct mig_pc_fault *ret, unsigned max,
			   int timeout_ms, struct mig_error *err);
	/* n pages at pfn from src (NULL: zeros), once each: the pages placed
	 * by this call.  Safe from any thread. */
	int (*place)(struct mig_device *d, uint64_t pfn, const void *src, uint64_t n,
		     struct mig_error *err);
	bool (*present)(struct mig_device *d, uint64_t pfn);
	void (*stats)(struct mig_device *d, struct mig_pc_stats *ret);
	/* every page placed: RAM is ordinary memory again (-EBUSY if not) */
	int (*complete)(struct mig_device *d, struct mig_error *err);
	/* given up: lets every waiting thread go (the VM will not run on) */
	void (*end)(struct mig_device *d);
};

struct mig_device_class {
	enum mig_dev_class id;
	const char *name;
	uint32_t version;         /* of its saved state */
	unsigned nr_states;
	const char *const *state_names;
	/* nr_states * nr_states, [from * nr_states + to] true where the arc exists */
	const bool *arcs;
	/* The next state on the way from d->state to target, or -1 if there
	 * is none.  NULL: the shortest path through `arcs` (ties go to the
	 * lower state).  A class whose paths depend on the device (VFIO's P2P
	 * and PRE_COPY flags) gives its own. */
	int (*next_state)(const struct mig_device *d, int target);
	/* The state this device goes to for a stage step's target.  NULL: the
	 * target itself.  A class whose devices differ in what they have maps
	 * a target to its nearest for each (a VFIO device without P2P goes on
	 * running where the step says RUNNING_P2P) and by where the device is
	 * (one in a pre-copy session stops into STOP_COPY, keeping it). */
	int (*target_of)(const struct mig_device *d, enum mig_stage stage, int target);
	/* Its part in each stage (see enum mig_stage). */
	const struct mig_stage_step *steps;
	unsigned nr_steps;
	/* The state in which load() runs during the LOAD walk, and where a
	 * failed load leaves the device (-1: none). */
	int load_state;
	int fail_state;
	/* Its save (its step to the SAVE target) writes guest RAM, as the ITS
	 * saves its tables into the guest: it must run after the vCPUs stop
	 * and before the final dirty sync. */
	bool save_writes_ram;
	/* Guest RAM itself: what it moves is the pages the engine sends. */
	bool carries_ram;
	const struct mig_device_ops *ops;
	const struct mig_precopy_ops *precopy_ops;  /* NULL: not supported */
	const struct mig_dirty_ops *dirty_ops;      /* NULL: not supported */
	const struct mig_compat_ops *compat_ops;    /* NULL: nothing to check */
	const struct mig_page_ops *page_ops;        /* NULL: pages go as they are */
	const struct mig_session_ops *session_ops;  /* NULL: nothing to agree on */
	const struct mig_throttle_ops *throttle_ops; /* NULL: never slowed */
	const struct mig_postcopy_ops *postcopy_ops; /* NULL: does not hold RAM */
	/* Why a VM with a device of this class cannot run with pages missing
	 * (NULL: it can) */
	const char *no_postcopy;
	/* Names of the bits of a device's `notes` (things a run reports of it:
	 * a VFIO device without P2P, or without a DMA log). */
	const char *const *note_names;
	unsigned nr_notes;
};

struct mig_device {
	const struct mig_device_class *cls;
	unsigned id;              /* instance within its class (vCPU number) */
	int state;
	uint64_t bytes;           /* state saved or loaded, for the summary */
	uint32_t notes;           /* what the run should say of it: bits its class names */
};

void mig_device_init(struct mig_device *d, const struct mig_device_class *cls,
		     unsigned id, int state);
bool mig_device_arc_allowed(const struct mig_device_class *cls, int from, int to);
/* Where a stage step takes this device (the class's target_of). */
int mig_device_target(const struct mig_device *d, const struct mig_stage_step *st);
/* Check the arc, carry it out, record the new state.  -EINVAL for an arc the
 * table does not have (the device is left as it was). */
int mig_device_step(struct mig_device *d, int to, struct mig_error *err);
/* The next state on the way to `target` (the class's next-step table). */
int mig_device_next_state(const struct mig_device *d, int target);
const char *mig_device_state_name(const struct mig_device *d);
/* -EOPNOTSUPP where the class has no such op. */
/* Whether it has state of its own to save and load (guest RAM does not). */
bool mig_device_has_state(const struct mig_device *d);
int mig_device_save(struct mig_device *d, struct mig_writer *w, struct mig_error *err);
int mig_device_load(struct mig_device *d, struct mig_reader *r, struct mig_error *err);
int mig_device_dirty_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
			  struct mig_error *err);
/* The step a class takes in a stage with the lowest order, or NULL. */
const struct mig_stage_step *mig_device_class_step(const struct mig_device_class *cls,
						   enum mig_stage stage);

/* ---- walks ---- */

/* A point where a fault may be injected (the chaos mode's seam).  Every
 * device step, frame sent or received and phase change is one. */
enum mig_fault_kind {
	MIG_FAULT_DEVICE_STEP,
	MIG_FAULT_FRAME_SEND,
	MIG_FAULT_FRAME_RECV,
	MIG_FAULT_PHASE,
};
struct mig_fault_point {
	enum mig_fault_kind kind;
	enum mig_stage stage;             /* DEVICE_STEP */
	const struct mig_device *dev;     /* DEVICE_STEP */
	int from, to;                     /* DEVICE_STEP: states; PHASE: phases */
	uint16_t frame_type;              /* FRAME_* */
	unsigned stream;                  /* FRAME_*: 0 control, 1..N data */
	uint64_t seq;                     /* FRAME_* */
};
/* <0 injects that error at the point (with its message in err); 0 goes on. */
typedef int (*mig_fault_fn)(void *arg, const struct mig_fault_point *p, struct mig_error *err);

#define MIG_WALK_RAM_WRITERS 1U   /* only classes whose save writes guest RAM */
#define MIG_WALK_OTHERS 2U        /* only the others */

struct mig_walk {
	uint64_t deadline_ms;     /* CLOCK_MONOTONIC ms; 0: none */
	const atomic_bool *cancel;/* NULL: cannot be cancelled */
	unsigned filter;          /* MIG_WALK_*; 0: every class */
	mig_fault_fn fault;       /* NULL in production */
	void *fault_arg;
	/* LOAD: the state to load into d (NULL: none arrived, an error). */
	struct mig_reader *(*state_of)(void *arg, struct mig_device *d);
	void *state_arg;
	/* Set by the walk: the device it failed on (NULL if none). */
	struct mig_device *failed;
};

/*
 * Take devs[0..n) through `stage`: every step of every class in the stage,
 * in order, each device one arc at a time towards the step's target.
 * Before each arc the walk checks the cancel flag (-ECANCELED), the
 * deadline (-ETIMEDOUT) and the fault hook.  It stops at the first
 * failure, naming the device; a device already at its target is left alone.
 * In the LOAD stage a device that reaches its class's load_state gets its
 * state through w->state_of; a failed load moves it to fail_state.
 */
int mig_devices_walk(struct mig_device *const *devs, unsigned n, enum mig_stage stage,
		     struct mig_walk *w, struct mig_error *err);

/* ---- the class registry ---- */

/* This build's classes: each class folder the build took (an optional
 * class only with its meson feature enabled, devices/meson.build).  Their
 * count; *ret gets the list, NULL-terminated. */
unsigned mig_device_classes(const struct mig_device_class *const **ret);
/* One of this build's classes by its wire id (enum mig_dev_class), or one
 * added at run time.  NULL for an id nobody registered. */
const struct mig_device_class *mig_device_class_get(uint32_t id);
/* A class from outside the table (id >= MIG_DEV_CLASS_PRIVATE), for tests
 * and plug-ins: added explicitly, never by a constructor.  -EEXIST, -ENOSPC. */
int mig_device_class_add(const struct mig_device_class *cls);
const char *mig_dev_class_to_string(enum mig_dev_class id);
int mig_dev_class_from_string(const char *s);
const char *mig_stage_to_string(enum mig_stage s);

/*
 * vCPU class (KERNEL-UAPI §3.7).
 *   CREATED    KVM_CREATE_VCPU done, CPUID set, never run
 *   RUNNING    its thread is in the KVM_RUN loop
 *   PAUSING    asked to leave KVM_RUN (kicked with a signal)
 *   QUIESCED   out of KVM_RUN, pending I/O completed: state is complete
 *   SAVED      state read into a blob (source)
 *   RESTORING  SETs under way (destination)
 *   RESTORED   every SET succeeded; may run
 *   FAILED     a SET failed: the destination VM is discarded
 *   DEAD       the thread and fd are gone
 *   HELD       asked to leave KVM_RUN and to stay out, with no wait (a
 *              destination's post-copy, its link broken)
 */
enum vcpu_state {
	VCPU_CREATED,
	VCPU_RUNNING,
	VCPU_PAUSING,
	VCPU_QUIESCED,
	VCPU_SAVED,
	VCPU_RESTORING,
	VCPU_RESTORED,
	VCPU_FAILED,
	VCPU_DEAD,
	VCPU_HELD,
	_VCPU_STATE_MAX,
};

/*
 * Memory class (KERNEL-UAPI §2.5): guest RAM in memslots plus its dirty log.
 *   MAPPED     RAM allocated, pre-faulted and in memslots; logging off
 *   LOGGING    KVM_MEM_LOG_DIRTY_PAGES on every slot; syncs collect dirty pages
 *   FINAL      source: vCPUs stopped and the last sync taken; RAM is frozen
 *   RECEIVING  destination: pages are being written in, no vCPU has run
 *   LOADED     destination: every page arrived
 *   RELEASED   the copy is given up (source after commit, destination on abort)
 */
enum mem_state {
	MEM_MAPPED,
	MEM_LOGGING,
	MEM_FINAL,
	MEM_RECEIVING,
	MEM_LOADED,
	MEM_RELEASED,
	_MEM_STATE_MAX,
};

/*
 * x86 platform class (KERNEL-UAPI §4): the VM-wide state outside the vCPUs,
 * the in-kernel irqchip (PIC, IOAPIC), the PIT and kvmclock.  One per VM.
 * The GIC class will have this shape.
 *   CREATED    the irqchip exists (before the vCPUs); nothing loaded
 *   RUNNING    the VM runs with it
 *   SAVED      source: read with every vCPU stopped (the clock frozen here)
 *   RESTORING  destination: its state is being set
 *   RESTORED   irqchip and PIT set; the clock waits for the start
 *   FAILED     a SET failed: the destination VM is discarded
 *   DEAD       given up
 */
enum platform_state {
	PLATFORM_CREATED,
	PLATFORM_RUNNING,
	PLATFORM_SAVED,
	PLATFORM_RESTORING,
	PLATFORM_RESTORED,
	PLATFORM_FAILED,
	PLATFORM_DEAD,
	_PLATFORM_STATE_MAX,
};

#endif
