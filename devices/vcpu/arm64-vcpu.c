// SPDX-License-Identifier: MIT
/*
 * The vCPU class's arm64 part (vcpu-arch.h): KVM_ARM_VCPU_INIT, and the
 * state blob of arm64-state.c, with the guest's counters, which are the
 * VM's, set to the largest any loaded vCPU saved.
 */
#ifndef __aarch64__
#error "arm64-vcpu.c drives arm64 KVM: build it for aarch64"
#endif

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "devices-internal.h"
#include "vcpu/arm64-state.h"
#include "vcpu/vcpu-arch.h"

/* The preferred target and PSCI 0.2, nothing optional: every vCPU of a VM
 * is initialised with the same features, and a destination's match a
 * source's on any host whose KVM offers PSCI 0.2. */
int vcpu_arch_init(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_error *err)
{
	struct kvm_vcpu_init init;

	if (ioctl(vm->vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		return mig_error_set(err, -errno, "KVM_ARM_PREFERRED_TARGET: %s", strerror(errno));
	memset(init.features, 0, sizeof(init.features));
	init.features[0] = 1U << KVM_ARM_VCPU_PSCI_0_2;
	if (ioctl(vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0)
		return mig_error_set(err, -errno, "KVM_ARM_VCPU_INIT (target %u, PSCI 0.2): %s",
				     init.target, strerror(errno));
	return 0;
}

int vcpu_arch_save(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_buf *out,
		   struct mig_error *err)
{
	(void)vm;
	return arm64_vcpu_state_save(vcpu_fd, out, err);
}

int vcpu_arch_load(struct kvm_vm_fds *vm, int vcpu_fd, const uint8_t *blob, size_t len,
		   struct mig_error *err)
{
	struct arm64_counters c, acc = {
		.virt = vm->counters[0], .phys = vm->counters[1], .has_phys = vm->has_phys_counter,
	};
	int r = arm64_vcpu_state_counters(blob, len, &c, err);

	if (r >= 0)
		r = arm64_vcpu_state_load(vcpu_fd, blob, len, NULL, err);
	if (r < 0)
		return r;
	/* the largest so far, for the whole VM: no vCPU's counter goes back */
	arm64_counters_max(&acc, &c);
	r = arm64_vm_counters_set(vcpu_fd, &acc, err);
	if (r >= 0) {
		vm->counters[0] = acc.virt;
		vm->counters[1] = acc.phys;
		vm->has_phys_counter = acc.has_phys;
	}
	return r;
}

void vcpu_arch_resumed(int vcpu_fd)
{
	(void)vcpu_fd;   /* the counters ran on: nothing to tell the guest */
}

/* A destination whose vCPUs lack a register of the blob refuses it at the
 * load, naming the register, before anything is set (arm64-state.c). */
int vcpu_arch_describe(struct kvm_vm_fds *vm, int vcpu_fd, struct mig_buf *out,
		       struct mig_error *err)
{
	(void)vm; (void)vcpu_fd; (void)out; (void)err;
	return 0;
}

const char *const vcpu_arch_policies[] = { NULL };

int vcpu_arch_check_one(struct kvm_vm_fds *vm, const void *desc, size_t n, unsigned policy,
			struct mig_error *err)
{
	(void)vm; (void)desc; (void)n; (void)policy; (void)err;
	return 0;
}
