// SPDX-License-Identifier: MIT
/*
 * The lab VM's arm64 part (lab-internal.h): RAM at 1 GiB as on QEMU's
 * "virt" board, the system area of arm64-setup.c (the table, the platform
 * block, identity page tables, the GIC's tables and the payload of
 * lab-guest-arm64.S), vCPUs entered at EL1 with the MMU on, doorbells as
 * MMIO writes, pacing by the virtual counter.  Its VM-wide devices are the
 * GIC (a vgic-v3 and one ITS, the GIC class's kernel backend) and, with
 * msi=N, the MSI devices whose LPIs the guest counts.
 */
#ifndef __aarch64__
#error "lab-arm64.c drives arm64 KVM: build it for aarch64"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arm64-setup.h"
#include "gic/gic.h"
#include "msi/msi.h"
#include "../lab-abi.h"
#include "../lab-internal.h"
#include "util.h"

/* LPIs a second the MSI devices raise in all, while the VM runs */
#define MSI_RATE 400

struct lab_arch {
	struct arm64_layout l;
	uint64_t hz;
	struct gic_kernel gick;
	bool gick_made;
	struct gic_dev gic;
	struct msi_dev msi;
	bool msi_made;
	int vm_fd;
};

uint64_t lab_arch_ram_base(void)
{
	return ARM64_RAM_BASE;
}

int lab_arch_create(struct lab_vm *vm, struct mig_error *err)
{
	struct lab_arch *a = calloc(1, sizeof(*a));
	int r;

	if (!a)
		return mig_error_set(err, -ENOMEM, "out of memory");
	vm->arch = a;
	a->vm_fd = vm->fds.vm_fd;
	a->hz = arm64_counter_hz();
	r = arm64_layout_init(&a->l, vm->cfg.mem_bytes, vm->cfg.vcpus, vm->cfg.msi,
			      LAB_MSI_EVENTS, err);
	if (r < 0)
		return r;
	/* the workload starts where lab-config.c says it does */
	if (a->l.sys_bytes != LAB_SYSTEM_BYTES)
		return mig_error_set(err, -EINVAL, "%u vCPUs: the arm64 lab guest's LPI pending "
				     "tables need more than its %llu MiB system area; give at most "
				     "20 vCPUs", vm->cfg.vcpus,
				     (unsigned long long)(LAB_SYSTEM_BYTES >> 20));
	vm->table = a->l.table - a->l.ram_base;
	return 0;
}

static int msi_raise(struct msi_dev *m, unsigned k)
{
	struct lab_arch *a = m->arg;
	int r = arm64_msi_raise(a->vm_fd, &a->l, k / LAB_MSI_EVENTS, k % LAB_MSI_EVENTS, NULL);

	return r < 0 ? r : r > 0 ? 1 : 0;
}

static const struct msi_ops msi_ops = { .raise = msi_raise };

int lab_arch_vcpus_made(struct lab_vm *vm, struct mig_device **out, unsigned *ret_n,
			struct mig_error *err)
{
	struct lab_arch *a = vm->arch;
	struct gic_config gc = {
		.nr_vcpus = vm->nr_vcpus, .nr_irqs = ARM64_NR_IRQS, .nr_its = 1,
	};
	uint64_t pb = a->l.plat - a->l.ram_base;
	int r;

	r = gic_kernel_create(&a->gick, vm->fds.vm_fd, ARM64_NR_IRQS, a->l.gicd, a->l.gicr, 1,
			      &a->l.its, err);
	a->gick_made = true;
	if (r >= 0)
		r = gic_dev_init(&a->gic, &gc, &gic_kernel_backend, &a->gick, GIC_CREATED, err);
	if (r < 0)
		return r;
	out[0] = &a->gic.core;
	*ret_n = 1;
	if (!vm->cfg.msi)
		return 0;
	r = msi_dev_init(&a->msi, vm->cfg.msi * LAB_MSI_EVENTS,
			 (uint64_t *)(vm->mem->ram + pb + LAB_A64_PB_RAISED),
			 (const uint64_t *)(vm->mem->ram + pb + LAB_A64_PB_DELIVERED),
			 (pb + LAB_A64_PB_RAISED) >> GUEST_PAGE_SHIFT, MSI_RATE, &msi_ops, a, err);
	if (r < 0)
		return r;
	a->msi_made = true;
	out[(*ret_n)++] = &a->msi.core;
	return 0;
}

void lab_arch_destroy(struct lab_vm *vm)
{
	struct lab_arch *a = vm->arch;

	if (!a)
		return;
	if (a->msi_made)
		msi_dev_fini(&a->msi);
	gic_dev_fini(&a->gic);
	if (a->gick_made)
		gic_kernel_close(&a->gick);
	free(a);
	vm->arch = NULL;
}

int lab_arch_boot(struct lab_vm *vm, const struct lab_work *work, struct mig_error *err)
{
	struct lab_arch *a = vm->arch;
	int r;

	r = arm64_guest_write(&a->l, vm->mem->ram, work, err);
	for (unsigned i = 0; r >= 0 && i < vm->nr_vcpus; i++)
		r = arm64_vcpu_boot(vm->vcpus[i]->fd, &a->l, i, err);
	if (r >= 0)
		r = mig_device_step(&a->gic.core, GIC_RUNNING, err);
	if (r >= 0 && a->msi_made)
		r = mig_device_step(&a->msi.core, MSI_RUNNING, err);
	return r;
}

uint64_t lab_arch_ticks_hz(const struct lab_vm *vm)
{
	return vm->arch->hz;
}

uint64_t lab_arch_errors(struct lab_vm *vm)
{
	return vm->arch && vm->arch->msi_made ? msi_dev_errors(&vm->arch->msi) : 0;
}

/* The payload's doorbells: MMIO writes to its page (arm64-setup.h). */
static int mmio(void *arg, struct vcpu_dev *v, const struct kvm_run *run)
{
	struct lab_vm *vm = arg;
	struct lab_arch *a = vm->arch;
	struct mig_error err = { 0 };
	uint64_t pb = a->l.plat - a->l.ram_base;
	unsigned door;
	uint8_t val;
	int r;

	r = arm64_mmio_doorbell(&a->l, run, &door, &val, &err);
	if (r < 0) {
		vcpu_set_fatal(v, r, "vCPU %u: %s", v->index, err.msg);
		return r;
	}
	switch (door) {
	case LAB_A64_DB_ITS_READY:
		return 0;
	case LAB_A64_DB_ITS_FAIL:
		vcpu_set_fatal(v, -EPROTO, "vCPU %u: the guest could not program its ITS (step %llu, "
			       "register value %#llx)", v->index,
			       (unsigned long long)*(uint64_t *)(vm->mem->ram + pb + LAB_A64_PB_ITS_ERROR),
			       (unsigned long long)*(uint64_t *)(vm->mem->ram + pb +
								 LAB_A64_PB_ITS_DETAIL));
		return -EPROTO;
	case LAB_A64_DB_FAULT:
		vcpu_set_fatal(v, -EFAULT, "vCPU %u: the guest took an exception (ESR %#llx at "
			       "%#llx, address %#llx)", v->index,
			       (unsigned long long)lab_va_read(vm, v->index, LAB_A64_VA_FAULT_ESR),
			       (unsigned long long)lab_va_read(vm, v->index, LAB_A64_VA_FAULT_ELR),
			       (unsigned long long)lab_va_read(vm, v->index, LAB_A64_VA_FAULT_FAR));
		return -EFAULT;
	}
	r = lab_doorbell(vm, v, door);
	if (r == -ENOENT) {
		vcpu_set_fatal(v, -EPROTO, "vCPU %u: doorbell %#x unknown", v->index, door);
		return -EPROTO;
	}
	return r;
}

const struct vcpu_exit_ops lab_arch_exits = {
	.mmio = mmio,
	.dirty_ring_full = lab_ring_full,
	.ran = lab_vcpu_ran,
};
