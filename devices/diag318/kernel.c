// SPDX-License-Identifier: MIT
/*
 * The DIAG 318 class's kernel backend (s390x builds): the vCPU's mmapped
 * kvm_run and KVM_CHECK_EXTENSION on the VM.  Built and linked by the
 * s390x cross build; never run here (this host has no s390 KVM): the sim
 * backend (sim.c) is what the tests drive, and it keeps the same contract.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "diag318/diag318.h"

_Static_assert(KVM_CAP_S390_DIAG318 == DIAG318_KVM_CAP, "KVM_CAP_S390_DIAG318");
_Static_assert(KVM_SYNC_DIAG318 == DIAG318_KVM_SYNC, "KVM_SYNC_DIAG318");

static int kernel_has_cap(struct diag318_dev *d)
{
	const struct diag318_kernel *k = d->be_data;
	int r = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_S390_DIAG318);

	if (r < 0)
		return -errno;
	return r > 0;
}

static int kernel_get(struct diag318_dev *d, uint64_t *val)
{
	const struct diag318_kernel *k = d->be_data;

	if (!(k->run->kvm_valid_regs & KVM_SYNC_DIAG318))
		return -ENODATA;
	*val = k->run->s.regs.diag318;
	return 0;
}

static int kernel_set(struct diag318_dev *d, uint64_t val)
{
	const struct diag318_kernel *k = d->be_data;

	k->run->s.regs.diag318 = val;
	k->run->kvm_dirty_regs |= KVM_SYNC_DIAG318;
	return 0;
}

const struct diag318_backend diag318_kernel_backend = {
	.name = "kernel", .has_cap = kernel_has_cap, .get = kernel_get, .set = kernel_set,
};
