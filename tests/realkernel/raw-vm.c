// SPDX-License-Identifier: MIT
/*
 * A raw arm64 VM for the real-kernel GIC tests: vCPUs made and never run;
 * what a guest driver would do is done through the same registers
 * (raw-vm.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <migrate/device.h>

#include "gic/gic-uapi.h"
#include "gic/sim.h"      /* the guest's table layout */
#include "raw-vm.h"

int vm_create(int kvm, struct vm *vm, struct mig_error *err)
{
	const uint64_t its = GITS_BASE;
	struct kvm_userspace_memory_region mr = {
		.slot = 0, .guest_phys_addr = RAM_GPA, .memory_size = RAM_BYTES,
	};
	struct kvm_vcpu_init init;
	int r;

	/* everything marked absent first, so vm_destroy() can follow any failure */
	memset(vm, 0, sizeof(*vm));
	for (int i = 0; i < VCPUS; i++)
		vm->vcpu[i] = -1;
	vm->fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		return mig_error_set(err, -errno, "KVM_CREATE_VM: %s", strerror(errno));
	vm->ram = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->ram == MAP_FAILED) {
		vm->ram = NULL;
		return mig_error_set(err, -errno, "mmap: %s", strerror(errno));
	}
	mr.userspace_addr = (uint64_t)(uintptr_t)vm->ram;
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
		return mig_error_set(err, -errno, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	if (ioctl(vm->fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		return mig_error_set(err, -errno, "KVM_ARM_PREFERRED_TARGET: %s", strerror(errno));
	for (int i = 0; i < VCPUS; i++) {
		vm->vcpu[i] = ioctl(vm->fd, KVM_CREATE_VCPU, i);
		if (vm->vcpu[i] < 0 || ioctl(vm->vcpu[i], KVM_ARM_VCPU_INIT, &init) < 0)
			return mig_error_set(err, -errno, "vCPU %d: %s", i, strerror(errno));
	}
	/* the vgic after every vCPU: the kernel sizes the redistributors then */
	r = gic_kernel_create(&vm->k, vm->fd, 128, GICD_BASE, GICR_BASE, 1, &its, err);
	if (r < 0) {
		gic_kernel_close(&vm->k);
		return r;
	}
	vm->have_k = true;
	return 0;
}

void vm_destroy(struct vm *vm)
{
	gic_dev_fini(&vm->g);
	if (vm->have_k)
		gic_kernel_close(&vm->k);
	for (int i = 0; i < VCPUS; i++)
		if (vm->vcpu[i] >= 0)
			close(vm->vcpu[i]);
	if (vm->ram)
		munmap(vm->ram, RAM_BYTES);
	if (vm->fd >= 0)
		close(vm->fd);
	memset(vm, 0, sizeof(*vm));
	vm->fd = -1;
}

int attr(struct vm *vm, int its, bool set, uint32_t grp, uint64_t a, void *v)
{
	return gic_kernel_backend.attr(&vm->g, its, set, grp, a, v);
}

int its_set(struct vm *vm, uint32_t off, uint64_t v)
{
	return attr(vm, 0, true, GIC_GRP_ITS_REGS, off, &v);
}

uint64_t its_get(struct vm *vm, uint32_t off)
{
	uint64_t v = ~0ULL;

	attr(vm, 0, false, GIC_GRP_ITS_REGS, off, &v);
	return v;
}

int rd_set(struct vm *vm, unsigned cpu, uint32_t off, uint32_t v)
{
	return attr(vm, -1, true, GIC_GRP_REDIST_REGS,
		    gic_vcpu_affinity(cpu) << GIC_ATTR_MPIDR_SHIFT | off, &v);
}

uint32_t rd_get(struct vm *vm, unsigned cpu, uint32_t off)
{
	uint32_t v = ~0U;

	attr(vm, -1, false, GIC_GRP_REDIST_REGS, gic_vcpu_affinity(cpu) << GIC_ATTR_MPIDR_SHIFT | off,
	     &v);
	return v;
}

uint8_t *gpa(struct vm *vm, uint64_t a)
{
	return vm->ram + (a - RAM_GPA);
}

int cmd(struct vm *vm, uint64_t w0, uint64_t w1, uint64_t w2)
{
	uint64_t *c = (uint64_t *)gpa(vm, AREA_GPA + GIC_SIM_ITS_OFF + GIC_SIM_ITS_CMDQ + vm->cmd_at);

	c[0] = w0;
	c[1] = w1;
	c[2] = w2;
	c[3] = 0;
	vm->cmd_at += GITS_CMD_SIZE;
	return its_set(vm, GITS_CWRITER, vm->cmd_at);
}

int guest_setup(struct vm *vm, const struct raw_map *map, unsigned n)
{
	uint64_t its = AREA_GPA + GIC_SIM_ITS_OFF;
	uint8_t *prop = gpa(vm, AREA_GPA + GIC_SIM_PROP_OFF);
	int r = 0;

	/* the mapped LPIs enabled (bit 0) at priority 0xa0: MAPTI reads them */
	for (unsigned d = 0; d < n; d++)
		for (unsigned e = 0; e < map[d].events; e++)
			prop[map[d].lpi + e - GIC_LPI_BASE] = 0xa1;
	for (unsigned i = 0; r >= 0 && i < VCPUS; i++) {
		r = rd_set(vm, i, GICR_PROPBASER,
			   (uint32_t)(AREA_GPA + GIC_SIM_PROP_OFF) | (GIC_SIM_ID_BITS - 1));
		if (r >= 0)
			r = rd_set(vm, i, GICR_PENDBASER, (uint32_t)(AREA_GPA + GIC_SIM_PEND_OFF +
								    0x10000ULL * i));
		if (r >= 0)
			r = rd_set(vm, i, GICR_CTLR, GICR_CTLR_ENABLE_LPIS);
	}
	if (r >= 0)
		r = its_set(vm, GITS_CBASER, GITS_CBASER_VALID | (its + GIC_SIM_ITS_CMDQ) | 15);
	if (r >= 0)
		r = its_set(vm, GITS_BASER(0), GITS_BASER_VALID | (its + GIC_SIM_ITS_DT));
	if (r >= 0)
		r = its_set(vm, GITS_BASER(1), GITS_BASER_VALID | (its + GIC_SIM_ITS_CT));
	if (r >= 0)
		r = its_set(vm, GITS_CTLR, GITS_CTLR_ENABLE);
	for (unsigned i = 0; r >= 0 && i < VCPUS; i++)
		r = cmd(vm, GITS_CMD_MAPC, 0, 1ULL << 63 | (uint64_t)i << 16 | i);
	for (unsigned d = 0; r >= 0 && d < n; d++) {
		uint64_t dev = (uint64_t)map[d].devid << 32;

		/* an ITT of 256 bytes each, room for 32 events (size field 4: 5 bits) */
		r = cmd(vm, GITS_CMD_MAPD | dev, 4, 1ULL << 63 | (its + GIC_SIM_ITS_ITT + 256ULL * d));
		for (unsigned e = 0; r >= 0 && e < map[d].events; e++) {
			uint32_t lpi = map[d].lpi + e;

			r = cmd(vm, GITS_CMD_MAPTI | dev, e | (uint64_t)lpi << 32, lpi % VCPUS);
		}
	}
	for (unsigned i = 0; r >= 0 && i < VCPUS; i++)
		r = cmd(vm, GITS_CMD_SYNC, 0, (uint64_t)i << 16);
	if (r >= 0 && its_get(vm, GITS_CREADR) != vm->cmd_at)
		r = -EIO;
	return r;
}

bool pend_bit(struct vm *vm, uint32_t intid)
{
	uint8_t *t = gpa(vm, AREA_GPA + GIC_SIM_PEND_OFF + 0x10000ULL * (intid % VCPUS));

	return t[intid / 8] >> (intid % 8) & 1;
}

int step_to(struct gic_dev *g, int to, struct mig_error *err)
{
	while (g->core.state != to) {
		int r, next = mig_device_next_state(&g->core, to);

		if (next < 0)
			return mig_error_set(err, -EINVAL, "no way to %d", to);
		r = mig_device_step(&g->core, next, err);
		if (r < 0)
			return r;
	}
	return 0;
}
