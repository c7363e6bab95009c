// SPDX-License-Identifier: MIT
/*
 * The GIC class's kernel backend against a real arm64 KVM: run inside a
 * QEMU guest booted at EL2 with a GICv3 and an ITS
 * (tests/realkernel/run-arm64-kernel.sh).  Two VMs of two vCPUs each
 * (raw-vm.c: no guest code runs; what a guest driver would do is done here
 * through the same registers), the source's ITS programmed through its
 * command queue and LPIs made pending with KVM_SIGNAL_MSI; then the class
 * saves the source and restores the destination in the kernel's orders,
 * and the destination is checked: the LPIs still pending, the ITS
 * translating.
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
#include <linux/kvm.h>

#include <migrate/device.h>

#include "gic/gic.h"
#include "gic/gic-uapi.h"
#include "gic/sim.h"      /* the guest's table layout */
#include "raw-vm.h"
#include "rk.h"

#define DEVS 2
#define EVENTS 4

static uint32_t lpi(unsigned d, unsigned e)
{
	return GIC_LPI_BASE + d * EVENTS + e;
}

static int signal_msi(struct vm *vm, uint32_t devid, uint32_t event)
{
	uint64_t db = GITS_BASE + GITS_TRANSLATER;
	struct kvm_msi m = { .address_lo = (uint32_t)db, .address_hi = (uint32_t)(db >> 32),
			     .data = event, .flags = KVM_MSI_VALID_DEVID, .devid = devid };
	int r = ioctl(vm->fd, KVM_SIGNAL_MSI, &m);

	return r < 0 ? -errno : r;
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
	struct raw_map map[DEVS];
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
	for (unsigned d = 0; d < DEVS; d++)
		map[d] = (struct raw_map){ .devid = d, .events = EVENTS, .lpi = lpi(d, 0) };
	r = guest_setup(&src, map, DEVS);
	result(r >= 0 && its_get(&src, GITS_CREADR) == src.cmd_at, "its-commands",
	       "%d; CREADR %#llx, CWRITER %#x (a userspace CWRITER write runs the queue of an "
	       "enabled ITS)", r, (unsigned long long)its_get(&src, GITS_CREADR), src.cmd_at);
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
