/* SPDX-License-Identifier: MIT */
/*
 * The s390 DIAG 318 class (KERNEL-UAPI.md §8): the control-program name
 * code and version the guest reported with DIAGNOSE 0x318, one u64 per
 * vCPU (a 1-byte CPNC, then a 7-byte CPVC), which the guest sets once at
 * boot and never again, so it must travel with the VM.  KVM keeps it per
 * vCPU and shows it only through the vCPU's sync registers, under
 * KVM_CAP_S390_DIAG318 (186, Linux 5.9):
 *
 *   - after a KVM_RUN exit, kvm_run->s.regs.diag318 holds the value, valid
 *     when KVM_SYNC_DIAG318 is set in kvm_run->kvm_valid_regs;
 *   - the VMM writes s.regs.diag318 and sets KVM_SYNC_DIAG318 in
 *     kvm_run->kvm_dirty_regs; the next KVM_RUN takes it.
 *
 * So the source reads it with the vCPU out of KVM_RUN (the SAVE stage,
 * after QUIESCE stopped the vCPUs), and the destination writes it before
 * the vCPU's first KVM_RUN there (LOAD, before START).  One device per
 * vCPU, its instance the vCPU's number.
 *
 * The kvm_run is behind a backend: `kernel` (the vCPU's mmapped kvm_run
 * and KVM_CHECK_EXTENSION; s390x only, never run here: no s390 KVM) and
 * `sim` (the kernel's contract in this process, for the tests).
 */
#ifndef DEVICES_DIAG318_H
#define DEVICES_DIAG318_H

#include <stdbool.h>
#include <stdint.h>

#include <migrate/device.h>

/* The uAPI's numbers (asm/kvm.h, linux/kvm.h of 5.9 and later). */
#define DIAG318_KVM_CAP      186            /* KVM_CAP_S390_DIAG318 */
#define DIAG318_KVM_SYNC     (1ULL << 12)   /* KVM_SYNC_DIAG318 */

enum diag318_state {
	DIAG318_CREATED,     /* the vCPU exists and never ran here */
	DIAG318_RUNNING,     /* the vCPU runs: the guest may issue DIAG 318 */
	DIAG318_SAVED,       /* source: read from kvm_run, the vCPU stopped */
	DIAG318_RESTORING,   /* destination: its state is going in */
	DIAG318_RESTORED,    /* written to kvm_run and flagged dirty */
	DIAG318_FAILED,      /* a restore failed: the destination VM is discarded */
	DIAG318_DEAD,
	DIAG318_ST_N
};

struct diag318_dev;

/*
 * A vCPU's kvm_run and its KVM.  has_cap() answers whether KVM has
 * KVM_CAP_S390_DIAG318 (1 or 0, or -errno); get() reads s.regs.diag318,
 * -ENODATA when KVM_SYNC_DIAG318 is not in kvm_valid_regs; set() writes it
 * and sets KVM_SYNC_DIAG318 in kvm_dirty_regs.
 */
struct diag318_backend {
	const char *name;
	int (*has_cap)(struct diag318_dev *d);
	int (*get)(struct diag318_dev *d, uint64_t *val);
	int (*set)(struct diag318_dev *d, uint64_t val);
};

struct diag318_dev {
	struct mig_device core;
	const struct diag318_backend *be;
	void *be_data;
	uint64_t saved;           /* SAVED: the value read */
};

/* Its state as it travels: 16 bytes, little-endian. */
#define DIAG318_STATE_MAGIC   0x38313344U   /* "D318" */
#define DIAG318_STATE_VERSION 1U
#define DIAG318_STATE_LEN     16U

extern const struct mig_device_class diag318_class;

/* vCPU `vcpu`'s device, CREATED or RUNNING (a VM that boots with it). */
void diag318_dev_init(struct diag318_dev *d, unsigned vcpu, const struct diag318_backend *be,
		      void *be_data, int state);
/* The value's control-program name code (its top byte). */
static inline uint8_t diag318_cpnc(uint64_t v)
{
	return (uint8_t)(v >> 56);
}

/* ---- the backends ---- */

/* kernel (s390x builds): be_data is a struct diag318_kernel. */
struct kvm_run;
struct diag318_kernel {
	int vm_fd;                /* for KVM_CHECK_EXTENSION */
	struct kvm_run *run;      /* the vCPU's mmapped kvm_run */
};
extern const struct diag318_backend diag318_kernel_backend;

/* sim: be_data is a struct diag318_sim, one vCPU as the kernel keeps it. */
struct diag318_sim {
	bool cap;                 /* KVM_CAP_S390_DIAG318 and the facility */
	uint64_t vcpu_val;        /* the kernel's own copy (vcpu->arch.diag318_info) */
	/* its kvm_run's part */
	uint64_t kvm_valid_regs, kvm_dirty_regs;
	uint64_t regs_diag318;
	unsigned runs;
};
extern const struct diag318_backend diag318_sim_backend;
/* A vCPU created on a host with or without the capability. */
void diag318_sim_init(struct diag318_sim *s, bool cap);
/* The guest issues DIAG 318 with this value (KVM intercepts it). */
void diag318_sim_guest_diag(struct diag318_sim *s, uint64_t val);
/* One KVM_RUN: dirty registers in at entry, the value out at exit. */
void diag318_sim_run(struct diag318_sim *s);

#endif
