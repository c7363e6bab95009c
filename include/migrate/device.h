/* SPDX-License-Identifier: MIT */
/*
 * The device-class interface.  Every class (vCPU, memory, and later VFIO,
 * GIC/ITS, SEV) embeds struct mig_device and gets itself back with
 * container_of().  A class owns one state enum, a name table and a transition
 * table; mig_device_step() is the only way a device changes state: it checks
 * the table, then asks the class to carry out that single arc.
 */
#ifndef MIGRATE_DEVICE_H
#define MIGRATE_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/error.h>

enum mig_dev_class {
	MIG_DEV_VCPU,
	MIG_DEV_MEMORY,
	_MIG_DEV_CLASS_MAX,
};

struct mig_device;

/* Mandatory for every class. */
struct mig_device_ops {
	/* Carry out the arc from d->state to `to` (already checked against the table). */
	int (*step)(struct mig_device *d, int to, struct mig_error *err);
	/* Serialise the device's state (source, quiesced). */
	int (*save)(struct mig_device *d, struct mig_buf *out, struct mig_error *err);
	/* Apply a saved state (destination, before it runs). Validates first. */
	int (*load)(struct mig_device *d, const uint8_t *p, size_t n, struct mig_error *err);
};

/* Optional: classes that track guest pages dirtied while they run. */
struct mig_dirty_ops {
	/* OR the pages dirtied since the last sync into `bitmap` (one bit per
	 * guest page from GPA 0) and re-arm tracking for them. */
	int (*sync)(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
		    struct mig_error *err);
};

struct mig_device_class {
	enum mig_dev_class id;
	const char *name;
	/* Position in the stop-and-save sequence on the source (lower first) and
	 * in the load sequence on the destination; a test checks the constraints. */
	int save_order;
	int load_order;
	unsigned nr_states;
	const char *const *state_names;
	/* nr_states * nr_states, [from * nr_states + to] true where the arc exists */
	const bool *arcs;
	const struct mig_device_ops *ops;
	const struct mig_dirty_ops *dirty_ops;  /* NULL: not supported */
};

struct mig_device {
	const struct mig_device_class *cls;
	unsigned id;
	int state;
};

void mig_device_init(struct mig_device *d, const struct mig_device_class *cls,
		     unsigned id, int state);
bool mig_device_arc_allowed(const struct mig_device_class *cls, int from, int to);
/* Check the arc, carry it out, record the new state.  -EINVAL for an arc the
 * table does not have (the device is left as it was). */
int mig_device_step(struct mig_device *d, int to, struct mig_error *err);
const char *mig_device_state_name(const struct mig_device *d);
int mig_device_save(struct mig_device *d, struct mig_buf *out, struct mig_error *err);
int mig_device_load(struct mig_device *d, const uint8_t *p, size_t n, struct mig_error *err);
/* -EOPNOTSUPP where the class has no dirty tracking. */
int mig_device_dirty_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
			  struct mig_error *err);

/* The class registry, indexed by enum mig_dev_class. */
const struct mig_device_class *mig_device_class_get(enum mig_dev_class id);
const char *mig_dev_class_to_string(enum mig_dev_class id);
int mig_dev_class_from_string(const char *s);

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

#endif
