// SPDX-License-Identifier: MIT
/*
 * The DIAG 318 class's sim backend: one vCPU as s390 KVM keeps it
 * (arch/s390/kvm/kvm-s390.c).  The kernel's copy lives in the vCPU; a
 * KVM_RUN takes kvm_run->s.regs.diag318 in when KVM_SYNC_DIAG318 is in
 * kvm_dirty_regs, and stores its copy back at the exit.  KVM_SYNC_DIAG318
 * is in kvm_valid_regs from the vCPU's creation only where KVM has the
 * capability (and the machine the facility).  A VMM that reads the value
 * without that bit reads nothing KVM wrote: get() refuses it.
 */
#include <errno.h>
#include <string.h>

#include "diag318/diag318.h"

void diag318_sim_init(struct diag318_sim *s, bool cap)
{
	memset(s, 0, sizeof(*s));
	s->cap = cap;
	if (cap)
		s->kvm_valid_regs |= DIAG318_KVM_SYNC;
}

void diag318_sim_guest_diag(struct diag318_sim *s, uint64_t val)
{
	/* without the facility the guest's DIAG 318 is an exception, not a value */
	if (s->cap)
		s->vcpu_val = val;
}

void diag318_sim_run(struct diag318_sim *s)
{
	if (s->cap && (s->kvm_dirty_regs & DIAG318_KVM_SYNC))
		s->vcpu_val = s->regs_diag318;
	if (s->cap)
		s->regs_diag318 = s->vcpu_val;
	s->runs++;
}

static int sim_has_cap(struct diag318_dev *d)
{
	return ((struct diag318_sim *)d->be_data)->cap;
}

static int sim_get(struct diag318_dev *d, uint64_t *val)
{
	struct diag318_sim *s = d->be_data;

	if (!(s->kvm_valid_regs & DIAG318_KVM_SYNC))
		return -ENODATA;
	*val = s->regs_diag318;
	return 0;
}

static int sim_set(struct diag318_dev *d, uint64_t val)
{
	struct diag318_sim *s = d->be_data;

	s->regs_diag318 = val;
	s->kvm_dirty_regs |= DIAG318_KVM_SYNC;
	return 0;
}

const struct diag318_backend diag318_sim_backend = {
	.name = "sim", .has_cap = sim_has_cap, .get = sim_get, .set = sim_set,
};
