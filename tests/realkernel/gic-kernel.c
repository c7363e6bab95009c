// SPDX-License-Identifier: MIT
/*
 * The GIC class's kernel backend against a real arm64 KVM: run inside a
 * QEMU guest booted at EL2 with a GICv3 and an ITS
 * (tests/realkernel/run-arm64-kernel.sh).  Two VMs of two vCPUs each (no
 * guest code runs: what a guest driver would do is done here through the
 * same registers), the source's ITS programmed through its command queue
 * and LPIs made pending with KVM_SIGNAL_MSI; then the class saves the
 * source and restores the destination in the kernel's orders, and the
 * destination is checked: the LPIs still pending, the ITS translating.
 * The kernel rules the class and its sim backend rely on are checked on
 * their own, and a corrupted ITS table is refused.
 *
 * Prints "RK-PASS name" or "RK-FAIL name: why" per check, timings as
 * "RK-TIME name ns", and "RK-DONE passed P failed F" at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <migrate/device.h>

#include "gic/gic.h"
#include "gic/gic-uapi.h"
#include "gic/sim.h"      /* the guest's table layout */
#include "rk.h"

#define RAM_GPA   0x40000000ULL
#define RAM_BYTES (16ULL << 20)
#define AREA_GPA  (RAM_GPA + (4ULL << 20))
#define GICD_BASE 0x08000000ULL
#define GITS_BASE 0x08080000ULL
#define GICR_BASE 0x080a0000ULL
#define VCPUS 2
#define DEVS 2
#define EVENTS 4

struct vm {
	int fd;
	int vcpu[VCPUS];
	uint8_t *ram;
	struct gic_kernel k;
	struct gic_dev g;
};

static int vm_create(int kvm, struct vm *vm, struct mig_error *err)
{
	const uint64_t its = GITS_BASE;
	struct kvm_userspace_memory_region mr = {
		.slot = 0, .guest_phys_addr = RAM_GPA, .memory_size = RAM_BYTES,
	};
	struct kvm_vcpu_init init;

	memset(vm, 0, sizeof(*vm));
	vm->fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		return mig_error_set(err, -errno, "KVM_CREATE_VM: %s", strerror(errno));
	vm->ram = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->ram == MAP_FAILED)
		return mig_error_set(err, -errno, "mmap: %s", strerror(errno));
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
	return gic_kernel_create(&vm->k, vm->fd, 128, GICD_BASE, GICR_BASE, 1, &its, err);
}

static void vm_destroy(struct vm *vm)
{
	gic_dev_fini(&vm->g);
	gic_kernel_close(&vm->k);
	for (int i = 0; i < VCPUS; i++)
		if (vm->vcpu[i] > 0)
			close(vm->vcpu[i]);
	if (vm->ram && vm->ram != MAP_FAILED)
		munmap(vm->ram, RAM_BYTES);
	if (vm->fd > 0)
		close(vm->fd);
}

static int attr(struct vm *vm, int its, bool set, uint32_t grp, uint64_t a, void *v)
{
	return gic_kernel_backend.attr(&vm->g, its, set, grp, a, v);
}

static int its_set(struct vm *vm, uint32_t off, uint64_t v)
{
	return attr(vm, 0, true, GIC_GRP_ITS_REGS, off, &v);
}

static uint64_t its_get(struct vm *vm, uint32_t off)
{
	uint64_t v = ~0ULL;

	attr(vm, 0, false, GIC_GRP_ITS_REGS, off, &v);
	return v;
}

static int rd_set(struct vm *vm, unsigned cpu, uint32_t off, uint32_t v)
{
	return attr(vm, -1, true, GIC_GRP_REDIST_REGS,
		    gic_vcpu_affinity(cpu) << GIC_ATTR_MPIDR_SHIFT | off, &v);
}

static uint32_t rd_get(struct vm *vm, unsigned cpu, uint32_t off)
{
	uint32_t v = ~0U;

	attr(vm, -1, false, GIC_GRP_REDIST_REGS, gic_vcpu_affinity(cpu) << GIC_ATTR_MPIDR_SHIFT | off,
	     &v);
	return v;
}

static uint8_t *gpa(struct vm *vm, uint64_t a)
{
	return vm->ram + (a - RAM_GPA);
}

static unsigned cmd_at;

static int cmd(struct vm *vm, uint64_t w0, uint64_t w1, uint64_t w2)
{
	uint64_t *c = (uint64_t *)gpa(vm, AREA_GPA + GIC_SIM_ITS_OFF + GIC_SIM_ITS_CMDQ + cmd_at);

	c[0] = w0;
	c[1] = w1;
	c[2] = w2;
	c[3] = 0;
	cmd_at += GITS_CMD_SIZE;
	return its_set(vm, GITS_CWRITER, cmd_at);
}

static uint32_t lpi(unsigned d, unsigned e)
{
	return GIC_LPI_BASE + d * EVENTS + e;
}

/* What a guest driver does, through the same registers. */
static int guest_setup(struct vm *vm)
{
	uint64_t its = AREA_GPA + GIC_SIM_ITS_OFF;
	int r = 0;

	memset(gpa(vm, AREA_GPA + GIC_SIM_PROP_OFF), 0xa1, DEVS * EVENTS);
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
	for (unsigned d = 0; r >= 0 && d < DEVS; d++) {
		r = cmd(vm, GITS_CMD_MAPD | (uint64_t)d << 32, 4,
			1ULL << 63 | (its + GIC_SIM_ITS_ITT + 256ULL * d));
		for (unsigned e = 0; r >= 0 && e < EVENTS; e++)
			r = cmd(vm, GITS_CMD_MAPTI | (uint64_t)d << 32,
				e | (uint64_t)lpi(d, e) << 32, lpi(d, e) % VCPUS);
	}
	if (r >= 0)
		r = cmd(vm, GITS_CMD_SYNC, 0, 0);
	return r;
}

static int signal_msi(struct vm *vm, uint32_t devid, uint32_t event)
{
	uint64_t db = GITS_BASE + GITS_TRANSLATER;
	struct kvm_msi m = { .address_lo = (uint32_t)db, .address_hi = (uint32_t)(db >> 32),
			     .data = event, .flags = KVM_MSI_VALID_DEVID, .devid = devid };
	int r = ioctl(vm->fd, KVM_SIGNAL_MSI, &m);

	return r < 0 ? -errno : r;
}

static bool pend_bit(struct vm *vm, uint32_t intid)
{
	unsigned cpu = intid % VCPUS;
	uint8_t *t = gpa(vm, AREA_GPA + GIC_SIM_PEND_OFF + 0x10000ULL * cpu);

	return t[intid / 8] >> (intid % 8) & 1;
}

static int step_to(struct gic_dev *g, int to, struct mig_error *err)
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

static int restore(struct vm *src, struct vm *dst, struct mig_error *err)
{
	struct mig_mem_reader rd;
	int r;

	memcpy(dst->ram, src->ram, RAM_BYTES);
	r = step_to(&dst->g, GIC_RESTORING, err);
	if (r < 0)
		return r;
	mig_mem_reader_init(&rd, src->g.saved.data, src->g.saved.len);
	r = mig_device_load(&dst->g.core, &rd.r, err);
	if (r >= 0)
		r = step_to(&dst->g, GIC_RUNNING, err);
	return r;
}

int main(void)
{
	struct gic_config cfg = { .nr_vcpus = VCPUS, .nr_irqs = 128, .nr_its = 1 };
	struct mig_error err = { 0 };
	struct vm src, dst, bad, fresh;
	bool ok;
	int kvm, r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	result(kvm >= 0, "dev-kvm", "/dev/kvm: %s", strerror(errno));
	if (kvm < 0)
		goto out;
	r = vm_create(kvm, &src, &err);
	if (r >= 0)
		r = vm_create(kvm, &dst, &err);
	if (r >= 0)
		r = vm_create(kvm, &bad, &err);
	if (r >= 0)
		r = vm_create(kvm, &fresh, &err);
	result(r >= 0, "create-vms", "%s", err.msg);
	if (r < 0)
		goto out;
	r = gic_dev_init(&src.g, &cfg, &gic_kernel_backend, &src.k, GIC_RUNNING, &err);
	if (r >= 0)
		r = gic_dev_init(&dst.g, &cfg, &gic_kernel_backend, &dst.k, GIC_CREATED, &err);
	if (r >= 0)
		r = gic_dev_init(&bad.g, &cfg, &gic_kernel_backend, &bad.k, GIC_CREATED, &err);
	if (r >= 0)
		r = gic_dev_init(&fresh.g, &cfg, &gic_kernel_backend, &fresh.k, GIC_CREATED, &err);
	result(r >= 0 && src.g.its_rev[0] == 0, "class-init", "%s (ITS ABI revision %u)", err.msg,
	       src.g.its_rev[0]);

	/* the guest's programming and the interrupts */
	r = guest_setup(&src);
	result(r >= 0 && its_get(&src, GITS_CREADR) == cmd_at, "its-commands",
	       "%d; CREADR %#llx, CWRITER %#x (a userspace CWRITER write runs the queue of an "
	       "enabled ITS)", r, (unsigned long long)its_get(&src, GITS_CREADR), cmd_at);
	ok = true;
	for (unsigned d = 0; d < DEVS; d++)
		for (unsigned e = 0; e < EVENTS; e++)
			if (((d + e) % 2 == 0) && signal_msi(&src, d, e) != 1)
				ok = false;
	result(ok, "signal-msi", "KVM_SIGNAL_MSI did not make every LPI pending");
	result(signal_msi(&src, DEVS + 3, 0) == 0, "signal-msi-untranslated",
	       "an MSI of an unmapped device is not reported as blocked (0)");

	/* the kernel's rules the class and its sim rely on */
	rd_set(&src, 0, GICR_PROPBASER, 0x12340000);
	result(rd_get(&src, 0, GICR_PROPBASER) != 0x12340000, "propbaser-ignored-with-lpis-on",
	       "GICR_PROPBASER changed after EnableLPIs");
	result(its_set(&src, GITS_CREADR, 0) == -EBUSY, "creadr-busy-while-enabled",
	       "writing CREADR of an enabled ITS was not refused with EBUSY");
	result(its_set(&src, GITS_IIDR, 1ULL << GITS_IIDR_REV_SHIFT) == -EINVAL,
	       "iidr-unknown-revision", "ITS ABI revision 1 was not refused with EINVAL");
	its_set(&fresh, GITS_CTLR, GITS_CTLR_ENABLE);
	result(!(its_get(&fresh, GITS_CTLR) & GITS_CTLR_ENABLE), "its-enable-needs-tables",
	       "an ITS without valid tables enabled itself");

	/* the source's save, in the class's order */
	r = step_to(&src.g, GIC_SAVED, &err);
	result(r >= 0, "save", "%s", err.msg);
	ok = true;
	for (unsigned d = 0; d < DEVS; d++)
		for (unsigned e = 0; e < EVENTS; e++)
			if (pend_bit(&src, lpi(d, e)) != ((d + e) % 2 == 0))
				ok = false;
	result(ok, "pending-tables-written", "the pending tables do not hold what was raised");
	result(*(uint64_t *)gpa(&src, AREA_GPA + GIC_SIM_ITS_OFF + GIC_SIM_ITS_DT) >> 63,
	       "device-table-written", "device 0 has no valid entry after ITS_SAVE_TABLES");
	printf("RK-TIME save-pending-tables %llu\nRK-TIME its-save-tables %llu\n",
	       (unsigned long long)src.g.save_pending_ns, (unsigned long long)src.g.its_save_ns);

	/* the destination's restore */
	r = restore(&src, &dst, &err);
	result(r >= 0, "restore", "%s", err.msg);
	printf("RK-TIME its-restore-tables %llu\n", (unsigned long long)dst.g.its_restore_ns);
	result(its_get(&dst, GITS_CTLR) & GITS_CTLR_ENABLE, "restored-its-enabled",
	       "GITS_CTLR %#llx", (unsigned long long)its_get(&dst, GITS_CTLR));
	ok = true;
	for (unsigned d = 0; d < DEVS; d++)
		for (unsigned e = 0; e < EVENTS; e++)
			ok &= !pend_bit(&dst, lpi(d, e));
	result(ok, "restore-consumed-pending-bits", "RESTORE_TABLES left pending bits in RAM");
	/* what is pending now, as the kernel writes it out again */
	r = attr(&dst, -1, true, GIC_GRP_CTRL, GIC_CTRL_SAVE_PENDING_TABLES, NULL);
	ok = r >= 0;
	for (unsigned d = 0; d < DEVS; d++)
		for (unsigned e = 0; e < EVENTS; e++)
			if (pend_bit(&dst, lpi(d, e)) != ((d + e) % 2 == 0))
				ok = false;
	result(ok, "pending-lpis-restored", "the destination's pending LPIs differ (%d)", r);
	ok = true;
	for (unsigned d = 0; d < DEVS; d++)
		for (unsigned e = 0; e < EVENTS; e++)
			ok &= signal_msi(&dst, d, e) == 1;
	result(ok && signal_msi(&dst, 0, EVENTS + 1) == 0, "restored-its-translates",
	       "the destination's ITS does not translate as the source's did");

	/* a damaged device table: RESTORE_TABLES refuses it */
	*(uint64_t *)gpa(&src, AREA_GPA + GIC_SIM_ITS_OFF + GIC_SIM_ITS_DT) &= ~0x1fULL;
	mig_error_clear(&err);
	r = restore(&src, &bad, &err);
	result(r == -EINVAL && strstr(err.msg, "RESTORE_TABLES"), "corrupted-table-refused",
	       "%d: %s", r, err.msg);

	/* a destination that cannot take the GIC */
	{
		struct mig_buf desc = { 0 };

		fresh.g.cfg.nr_irqs = 96;
		mig_error_clear(&err);
		r = gic_class.compat_ops->describe(&src.g.core, &desc, &err);
		if (r >= 0)
			r = gic_class.compat_ops->check(&fresh.g.core, desc.data, desc.len, &err);
		result(r == -ENOTSUP && strstr(err.msg, "interrupts"), "fewer-interrupts-refused",
		       "%d: %s", r, err.msg);
		mig_buf_free(&desc);
	}
	vm_destroy(&src);
	vm_destroy(&dst);
	vm_destroy(&bad);
	vm_destroy(&fresh);
out:
	return rk_done();
}
