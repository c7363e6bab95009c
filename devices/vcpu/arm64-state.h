/* SPDX-License-Identifier: MIT */
/*
 * arm64 vCPU state: every register KVM_GET_REG_LIST names, with its value
 * from KVM_GET_ONE_REG, plus the MP state and the pending-event state
 * (SError), in a versioned, length-checked blob.
 *
 * Layout (little-endian, arm64 hosts only):
 *   header, 32 bytes: magic "MIGA64ST", u32 version (1), u32 nr_regs,
 *                     u32 mp_state (KVM_MP_STATE_*), u32 flags
 *                     (ARM64_STATE_HAS_EVENTS), u64 total_len
 *   struct kvm_vcpu_events, 64 bytes, if ARM64_STATE_HAS_EVENTS
 *   nr_regs records: u64 id, then KVM_REG_SIZE(id) bytes of value padded
 *                    with zeros to 8 bytes; ids strictly ascending
 *
 * Load checks the whole blob, and that the destination vCPU has every
 * register in it, before the first SET ioctl: a malformed blob or a vCPU of
 * other features leaves the destination untouched.  A SET that fails after
 * that leaves it half-loaded; the caller discards the destination VM.
 */
#ifndef DEVICES_ARM64_STATE_H
#define DEVICES_ARM64_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/error.h>

#define ARM64_STATE_HAS_EVENTS 1u

struct arm64_state_stats {
	unsigned regs;          /* records in the blob */
	unsigned set;           /* written with KVM_SET_ONE_REG */
	unsigned unchanged;     /* the destination held the value already: not written */
	unsigned dest_only;     /* the destination has, the blob does not: left as they were */
};

/* vcpu_fd out of KVM_RUN (the caller stopped it).  Appends the blob. */
int arm64_vcpu_state_save(int vcpu_fd, struct mig_buf *out, struct mig_error *err);
/* Parse and check a blob without touching the kernel. */
int arm64_vcpu_state_validate(const uint8_t *blob, size_t len, struct mig_error *err);
/* vcpu_fd: a vCPU initialised with the source's features that has not run.
 * stats may be NULL. */
int arm64_vcpu_state_load(int vcpu_fd, const uint8_t *blob, size_t len,
			  struct arm64_state_stats *stats, struct mig_error *err);

/*
 * The guest's counters a blob was saved at: the virtual one
 * (KVM_REG_ARM_TIMER_CNT) and, where the kernel lists it, the physical one
 * (KVM_REG_ARM_PTIMER_CNT).  Writing either sets one offset for the whole VM
 * (Linux 6.4 on; before, the virtual offset was kept equal on every vCPU),
 * so the vCPU loaded last would decide it, and vCPUs stopped a few
 * microseconds apart saved slightly different values.  After loading every
 * vCPU, fold the blobs' counters with arm64_counters_max() and write them
 * once with arm64_vm_counters_set(): no vCPU sees its counter go back.  The
 * time the VM spent stopped does not count (QEMU's default, "adjvtime").
 */
struct arm64_counters {
	uint64_t virt;
	uint64_t phys;
	bool has_phys;
};

int arm64_vcpu_state_counters(const uint8_t *blob, size_t len, struct arm64_counters *ret,
			      struct mig_error *err);
/* acc = the larger of acc and c, counter by counter (acc zeroed first). */
void arm64_counters_max(struct arm64_counters *acc, const struct arm64_counters *c);
int arm64_vm_counters_set(int vcpu_fd, const struct arm64_counters *c, struct mig_error *err);

/* "x5", "PC", "SCTLR_EL1", "S3_0_C1_C0_1", "FW 2", "CCSIDR 1": a register
 * id for messages. */
const char *arm64_reg_name(uint64_t id, char *buf, size_t n);

#endif
