/* SPDX-License-Identifier: MIT */
/*
 * What the vCPU class (vcpu.c: the run loop and the state machine) asks of
 * its architecture: one implementation per cpu_family, chosen by
 * devices/vcpu/meson.build (x86: x86-state.c).  An architecture without one
 * has no vCPU class.
 */
#ifndef DEVICES_VCPU_ARCH_H
#define DEVICES_VCPU_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/error.h>

struct kvm_vm_fds;

/* After KVM_CREATE_VCPU, before the vCPU first runs (x86: its CPUID;
 * arm64: KVM_ARM_VCPU_INIT). */
int vcpu_arch_init(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_error *err);
/* The state blob of a quiesced vCPU (no pending I/O completion). */
int vcpu_arch_save(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_buf *out,
		   struct mig_error *err);
/* A blob into a fresh vCPU that has not run, validated whole before the
 * first SET ioctl.  What is the VM's rather than the vCPU's (arm64's
 * counters) is kept in *vm across the vCPUs' loads. */
int vcpu_arch_load(struct kvm_vm_fds *vm, int vcpu_fd, const uint8_t *blob, size_t len,
		   struct mig_error *err);
/* Running again after a save, on this host (a rollback). */
void vcpu_arch_resumed(int vcpu_fd);
/* What a destination host must offer this vCPU, appended to out (x86: the
 * CPUID features the guest sees, its PERF_CAPABILITIES and the MSRs its
 * saved state holds; nothing where the architecture has no such check),
 * and whether this host offers what a description asks: the policies of
 * vcpu_arch_policies (NULL-terminated), one at a time (policies:
 * compat_cpuid(), compat_perf_caps(), compat_msrs()).  check_one returns 1
 * where it cannot judge (err says why). */
int vcpu_arch_describe(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_buf *out,
		       struct mig_error *err);
extern const char *const vcpu_arch_policies[];
int vcpu_arch_check_one(struct kvm_vm_fds *vm, const void *desc, size_t n, unsigned policy,
			struct mig_error *err);

#endif
