/* SPDX-License-Identifier: MIT */
/*
 * x86 vCPU and VM-wide state in the versioned, self-describing binary format of
 * docs/vcpu-state.md.  Save reads the kernel in the order of KERNEL-UAPI §3.3;
 * load validates the whole blob before it issues a single SET ioctl, so a bad
 * blob leaves the destination vCPU untouched.
 */
#ifndef DEVICES_X86_STATE_H
#define DEVICES_X86_STATE_H

#include <stddef.h>
#include <stdint.h>

#include <migrate/buf.h>
#include <migrate/error.h>

/* vCPU must be out of KVM_RUN (quiesced: no pending I/O completion). */
int x86_vcpu_state_save(int kvm_fd, int vm_fd, int vcpu_fd, struct mig_buf *out,
			struct mig_error *err);
/* vcpu_fd: a fresh vCPU that has not run; CPUID is taken from the blob. */
int x86_vcpu_state_load(int kvm_fd, int vm_fd, int vcpu_fd, const uint8_t *blob,
			size_t len, struct mig_error *err);
/* Parse and check a blob without touching the kernel. */
int x86_vcpu_state_validate(const uint8_t *blob, size_t len, struct mig_error *err);

/* VM-wide: kvmclock and the in-kernel irqchip (PIC, IOAPIC, PIT if present). */
int x86_vm_state_save(int vm_fd, struct mig_buf *out, struct mig_error *err);
int x86_vm_state_validate(const uint8_t *blob, size_t len, struct mig_error *err);
/* Before vCPUs run: irqchip.  */
int x86_vm_state_load(int vm_fd, const uint8_t *blob, size_t len, struct mig_error *err);
/* At resume, after every vCPU is loaded: KVM_SET_CLOCK, then KVM_KVMCLOCK_CTRL on each vCPU. */
int x86_vm_clock_resume(int vm_fd, const int *vcpu_fds, int nr_vcpus, const uint8_t *blob,
			size_t len, struct mig_error *err);

/* CPUID the lab VM gives each new vCPU (KVM_GET_SUPPORTED_CPUID, filtered). */
int x86_vcpu_setup_cpuid(int kvm_fd, int vcpu_fd, struct mig_error *err);

#endif
