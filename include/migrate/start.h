/* SPDX-License-Identifier: MIT */
/*
 * One migration between two agents, as `migratectl start` runs it
 * (docs/protocol.md §5): open both agents, find or make the VM, prepare the
 * destination, hand the migration to the source and follow it to its
 * RESULT.  The CLI, a libvirt hook and a chaos runner all call this; it
 * prints nothing, and reports progress through the caller's callback.
 */
#ifndef MIGRATE_START_H
#define MIGRATE_START_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/control.h>

enum mig_start_step {
	MIG_START_CREATING_VM = 1,   /* a lab VM is being made on the source */
	MIG_START_STARTED,           /* the source took the migration on */
	MIG_START_PROGRESS,          /* a PROGRESS event (ev) */
	MIG_START_CANCELLING,        /* *interrupted was set: a cancel goes to the source */
};

struct mig_start_result;

struct mig_start_opts {
	const char *src, *dst;    /* the agents' endpoints */
	const char *key_file;     /* NULL: no key */
	const char *vm;           /* the VM on src ("libvirt:NAME": a libvirt domain); NULL:
				   * make a lab VM */
	uint32_t lv_flags;        /* a libvirt domain: MIG_LV_F_* */
	/* ssh:// SRC and DST only: the migration streams go through the two
	 * ssh connections (the destination listens on its loopback, the
	 * source connects to a port sshd forwards on its own). */
	bool tunnel;
	const char *lab_spec;     /* for that lab VM ("" or NULL: defaults) */
	/* The migration's settings: streams, codec, limits, verify, checksum.
	 * Its id, secret, name and dest_addr are filled in here. */
	struct mig_outgoing params;
	/* Set asynchronously (a signal): before the source takes the
	 * migration on, the start gives up and nothing moves; after, a cancel
	 * goes to the source and the start waits for its RESULT.  NULL: never. */
	const volatile sig_atomic_t *interrupted;
	/* Optional: a look at the VM before anything is prepared; < 0 refuses
	 * it (the caller's settings do not fit it), the reason in why. */
	int (*check_vm)(void *arg, const struct mig_vm_info *v, char *why, size_t n);
	/* Optional: each step, and each PROGRESS event (ev, else NULL). */
	void (*on_step)(void *arg, enum mig_start_step step, const struct mig_start_result *st,
			const struct mig_event *ev);
	void *arg;
};

enum mig_start_outcome {
	MIG_START_NOT_STARTED = 1,   /* nothing moved: the VM is where it was */
	MIG_START_HELD,              /* refused: the VM waits for an operator (an earlier
				      * migration's outcome is unknown) */
	MIG_START_RESULT,            /* the source's RESULT is in `res` */
	MIG_START_LOST,              /* the migration ran, how it ended is unknown */
};

struct mig_start_result {
	enum mig_start_outcome outcome;
	bool usage;               /* NOT_STARTED because of the caller's input */
	bool cancelled;           /* NOT_STARTED because *interrupted was set */
	char id[37];              /* the migration, as agents and operators name it */
	char name[MIG_NAME_MAX];  /* the VM */
	char src_url[300];        /* where the source agent listens ("local": its socket) */
	char dest_addr[128];      /* where the destination listened */
	uint64_t prepare_ms;      /* the destination's MIG_INCOMING */
	struct mig_vm_info vm;    /* the VM as the source listed it (vcpus 0: not found) */
	/* the source copy kept paused for an operator, and the migration to name */
	bool held;
	char held_id[37];
	char held_peer[128];
	struct mig_event res;     /* RESULT */
	struct mig_event_device devs[MIG_EVENT_DEVICES_MAX];
	char why[1024];           /* every outcome but RESULT: what happened */
	/* A libvirt domain: libvirt migrated it (figures it has no equal of
	 * are MIG_LV_UNKNOWN), and where it was found after the RESULT
	 * (state 0: that host could not be asked) */
	bool libvirt;
	struct mig_lv_domain_info src_dom, dst_dom;
};
#define MIG_START_LIBVIRT_PREFIX "libvirt:"


/* Runs one migration; always fills *ret (outcome, why).  Returns 0 when
 * the RESULT says it completed, -1 otherwise. */
int mig_start(const struct mig_start_opts *o, struct mig_start_result *ret);

#endif
