// SPDX-License-Identifier: MIT
/*
 * The arm64 lab guest's VMM side (arm64-setup.h).
 *
 * System area, offsets from the start of RAM (every ITS and LPI table at the
 * alignment the GIC wants; the guest reads all of them from the platform
 * block, so none of this is part of its contract):
 *   0x00_0000  table: header and up to 64 vCPU areas (0x4040 bytes)
 *   0x00_6000  platform block (LAB_A64_PB_SIZE)
 *   0x00_8000  level-1 page table, then one level-2 table per GiB of RAM
 *   0x05_0000  stacks, 1 KiB per vCPU
 *   0x06_0000  ITS command queue, 64 KiB (2048 commands)
 *   0x07_0000  ITS device table, one 64 KiB page (KVM forces 64 KiB pages)
 *   0x08_0000  ITS collection table, one 64 KiB page
 *   0x09_0000  ITTs, 256 bytes per device
 *   0x0a_0000  LPI configuration table (8 KiB for 14 INTID bits)
 *   0x0b_0000  payload, 64 KiB at most
 *   0x0c_0000  LPI pending tables, one 64 KiB-aligned slot per vCPU
 */
#ifndef __aarch64__
#error "arm64-setup.c drives arm64 KVM: build it for aarch64"
#endif

#include "arm64-setup.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../lab-abi.h"
#include "gic/gic-uapi.h"
#include "util.h"

extern const uint8_t lab_a64_guest_start[], lab_a64_guest_end[];

#define OFF_TABLE    0x000000ULL
#define OFF_PLAT     0x006000ULL
#define OFF_PGTABLE  0x008000ULL
#define OFF_STACKS   0x050000ULL
#define OFF_CMDQ     0x060000ULL
#define OFF_DEVTAB   0x070000ULL
#define OFF_COLTAB   0x080000ULL
#define OFF_ITT      0x090000ULL
#define OFF_PROP     0x0a0000ULL
#define OFF_CODE     0x0b0000ULL
#define OFF_PEND     0x0c0000ULL
#define SZ_64K       0x10000ULL
#define SZ_2M        (2ULL << 20)
#define SZ_1G        (1ULL << 30)
#define STACK_BYTES  1024ULL
#define ITT_STRIDE   256ULL
#define RAM_MAX      (64ULL << 30)

_Static_assert(OFF_TABLE + LAB_TBL_VCPUS + ARM64_MAX_VCPUS * LAB_VA_SIZE <= OFF_PLAT,
	       "the table runs into the platform block");
_Static_assert(OFF_PLAT + LAB_A64_PB_SIZE <= OFF_PGTABLE, "platform block");
_Static_assert(OFF_PGTABLE + (1 + RAM_MAX / SZ_1G) * 4096 <= OFF_STACKS, "page tables");
_Static_assert(OFF_STACKS + ARM64_MAX_VCPUS * STACK_BYTES <= OFF_CMDQ, "stacks");
_Static_assert(OFF_ITT + (LAB_A64_MAX_LPIS * ITT_STRIDE) <= OFF_PROP, "ITTs");
_Static_assert((1U << ARM64_LPI_ID_BITS) - ARM64_LPI_FIRST <= SZ_64K, "LPI configuration table");
_Static_assert(ARM64_MAX_EVENTS * 8 <= ITT_STRIDE, "an ITT slot holds a device's events");

/* Stage-1 descriptors (4 KiB granule). */
#define PTE_TABLE    3ULL
#define PTE_BLOCK    1ULL
#define PTE_ATTR(i)  ((uint64_t)(i) << 2)   /* MAIR_EL1 index */
#define PTE_SH_INNER (3ULL << 8)
#define PTE_AF       (1ULL << 10)
#define PTE_PXN      (1ULL << 53)
#define PTE_UXN      (1ULL << 54)
#define MAIR_DEVICE  0                       /* Attr0: Device-nGnRnE */
#define MAIR_NORMAL  1                       /* Attr1: Normal, write-back RW-allocate */
#define MAIR_VALUE   (0xffULL << 8)

/* TCR_EL1: 39-bit VA (T0SZ 25, so the walk starts at level 1), TTBR0 walks
 * inner/outer write-back cacheable and inner shareable like the RAM they
 * read, no TTBR1 walks, 4 KiB granules, 40-bit IPA (KVM's default). */
#define TCR_VALUE    (25ULL | (1ULL << 8) | (1ULL << 10) | (3ULL << 12) | (25ULL << 16) | \
		      (1ULL << 23) | (2ULL << 30) | (2ULL << 32))
/* SCTLR_EL1: the ARMv8.0 RES1 bits, MMU, data and instruction caches, SP
 * alignment check. */
#define SCTLR_VALUE  (0x30d00800ULL | (1ULL << 0) | (1ULL << 2) | (1ULL << 3) | (1ULL << 12))
/* EL1h, D, A, I and F masked: the payload unmasks IRQs once its GIC is set. */
#define PSTATE_VALUE 0x3c5ULL

#define REG_CORE(field) (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | \
			 KVM_REG_ARM_CORE_REG(field))
#define REG_SCTLR_EL1 ARM64_SYS_REG(3, 0, 1, 0, 0)
#define REG_TTBR0_EL1 ARM64_SYS_REG(3, 0, 2, 0, 0)
#define REG_TCR_EL1   ARM64_SYS_REG(3, 0, 2, 0, 2)
#define REG_MAIR_EL1  ARM64_SYS_REG(3, 0, 10, 2, 0)
#define REG_MPIDR_EL1 ARM64_SYS_REG(3, 0, 0, 0, 5)

static unsigned log2_up(unsigned v)
{
	unsigned b = 0;

	while ((1U << b) < v)
		b++;
	return b;
}

int arm64_layout_init(struct arm64_layout *l, uint64_t ram_bytes, unsigned nr_vcpus,
		      unsigned nr_devices, unsigned events, struct mig_error *err)
{
	uint64_t pend_end;

	if (!nr_vcpus || nr_vcpus > ARM64_MAX_VCPUS)
		return mig_error_set(err, -EINVAL, "%u vCPUs: an arm64 lab guest has 1 to %u",
				     nr_vcpus, ARM64_MAX_VCPUS);
	if (events > ARM64_MAX_EVENTS || (nr_devices && !events))
		return mig_error_set(err, -EINVAL, "%u events per MSI device: 1 to %u", events,
				     ARM64_MAX_EVENTS);
	if ((uint64_t)nr_devices * events > LAB_A64_MAX_LPIS)
		return mig_error_set(err, -EINVAL, "%u MSI devices of %u events are %u LPIs, "
				     "the guest counts at most %u", nr_devices, events,
				     nr_devices * events, LAB_A64_MAX_LPIS);
	*l = (struct arm64_layout){
		.ram_base = ARM64_RAM_BASE, .ram_bytes = ram_bytes, .nr_vcpus = nr_vcpus,
		.nr_devices = nr_devices, .events = events,
		.event_bits = events > 1 ? log2_up(events) : 1,
		.table = ARM64_RAM_BASE + OFF_TABLE, .plat = ARM64_RAM_BASE + OFF_PLAT,
		.pgtable = ARM64_RAM_BASE + OFF_PGTABLE,
		.stacks = ARM64_RAM_BASE + OFF_STACKS, .stack_bytes = STACK_BYTES,
		.cmdq = ARM64_RAM_BASE + OFF_CMDQ, .cmdq_bytes = SZ_64K,
		.devtab = ARM64_RAM_BASE + OFF_DEVTAB, .devtab_bytes = SZ_64K,
		.coltab = ARM64_RAM_BASE + OFF_COLTAB, .coltab_bytes = SZ_64K,
		.itt = ARM64_RAM_BASE + OFF_ITT, .itt_stride = ITT_STRIDE,
		.prop = ARM64_RAM_BASE + OFF_PROP,
		.pend = ARM64_RAM_BASE + OFF_PEND, .pend_stride = SZ_64K,
		.code = ARM64_RAM_BASE + OFF_CODE, .code_max = OFF_PEND - OFF_CODE,
		.gicd = ARM64_GICD_BASE, .gicr = ARM64_GICR_BASE, .its = ARM64_ITS_BASE,
		.doorbell = ARM64_DOORBELL_BASE,
	};
	pend_end = OFF_PEND + (uint64_t)nr_vcpus * SZ_64K;
	l->sys_bytes = ALIGN_UP(pend_end, SZ_2M);
	if (ram_bytes % SZ_2M || ram_bytes > RAM_MAX || ram_bytes <= l->sys_bytes)
		return mig_error_set(err, -EINVAL, "%llu bytes of RAM: an arm64 lab guest needs a "
				     "multiple of 2 MiB above its %llu MiB system area, at most "
				     "%llu GiB", (unsigned long long)ram_bytes,
				     (unsigned long long)(l->sys_bytes >> 20),
				     (unsigned long long)(RAM_MAX >> 30));
	return 0;
}

/*
 * Identity map: the first GiB (GIC, ITS, doorbell page) as one Device
 * block, never executable; RAM in 2 MiB Normal write-back blocks, exactly
 * as large as it is, so a stray access beyond it faults in the guest
 * instead of reaching an address with nothing behind it.
 */
static void write_page_tables(const struct arm64_layout *l, uint8_t *ram)
{
	uint64_t *l1 = (uint64_t *)(ram + (l->pgtable - l->ram_base));
	uint64_t gib = DIV_ROUND_UP(l->ram_bytes, SZ_1G);

	memset(l1, 0, 4096);
	l1[0] = 0 | PTE_BLOCK | PTE_ATTR(MAIR_DEVICE) | PTE_AF | PTE_PXN | PTE_UXN;
	for (uint64_t g = 0; g < gib; g++) {
		uint64_t l2_gpa = l->pgtable + (1 + g) * 4096;
		uint64_t *l2 = (uint64_t *)(ram + (l2_gpa - l->ram_base));
		uint64_t va = l->ram_base + g * SZ_1G;

		memset(l2, 0, 4096);
		l1[va / SZ_1G] = l2_gpa | PTE_TABLE;
		for (uint64_t e = 0; e < 512 && g * SZ_1G + e * SZ_2M < l->ram_bytes; e++)
			l2[e] = (va + e * SZ_2M) | PTE_BLOCK | PTE_ATTR(MAIR_NORMAL) |
				PTE_SH_INNER | PTE_AF | PTE_UXN;
	}
}

static void put64(uint8_t *p, uint64_t off, uint64_t v)
{
	memcpy(p + off, &v, sizeof(v));
}

int arm64_guest_write(const struct arm64_layout *l, uint8_t *ram,
		      const struct lab_work *work, struct mig_error *err)
{
	size_t code = (size_t)(lab_a64_guest_end - lab_a64_guest_start);
	uint8_t *t = ram + (l->table - l->ram_base), *pb = ram + (l->plat - l->ram_base);

	if (code > l->code_max)
		return mig_error_set(err, -E2BIG, "the arm64 guest payload of %zu bytes does not "
				     "fit in %llu", code, (unsigned long long)l->code_max);
	for (unsigned i = 0; i < l->nr_vcpus; i++) {
		const struct lab_work *w = &work[i];
		uint64_t lo = l->ram_base + l->sys_bytes, hi = l->ram_base + l->ram_bytes;

		if (w->region % 4096 || w->region < lo || w->region > hi ||
		    w->region_pages > (hi - w->region) / 4096 || w->wss_pages > w->region_pages)
			return mig_error_set(err, -EINVAL, "vCPU %u's share (%llu pages at %#llx, "
					     "%llu stamped) is not within the workload's RAM", i,
					     (unsigned long long)w->region_pages,
					     (unsigned long long)w->region,
					     (unsigned long long)w->wss_pages);
	}
	/* Nothing of a previous guest survives: RAM may be reused. */
	memset(ram, 0, l->sys_bytes);
	write_page_tables(l, ram);
	memcpy(ram + (l->code - l->ram_base), lab_a64_guest_start, code);

	lab_table_write(t, l->nr_vcpus, work);
	put64(t, LAB_A64_TBL_OFF_PLAT, l->plat);

	put64(pb, LAB_A64_PB_OFF_MAGIC, LAB_A64_PB_MAGIC);
	put64(pb, LAB_A64_PB_DOORBELL, l->doorbell);
	put64(pb, LAB_A64_PB_GICD, l->gicd);
	put64(pb, LAB_A64_PB_GICR, l->gicr);
	put64(pb, LAB_A64_PB_GICR_STRIDE, ARM64_GICR_STRIDE);
	put64(pb, LAB_A64_PB_ITS, l->its);
	put64(pb, LAB_A64_PB_CMDQ, l->cmdq);
	put64(pb, LAB_A64_PB_CMDQ_BYTES, l->cmdq_bytes);
	put64(pb, LAB_A64_PB_DEVTAB, l->devtab);
	put64(pb, LAB_A64_PB_DEVTAB_BYTES, l->devtab_bytes);
	put64(pb, LAB_A64_PB_COLTAB, l->coltab);
	put64(pb, LAB_A64_PB_COLTAB_BYTES, l->coltab_bytes);
	put64(pb, LAB_A64_PB_ITT, l->itt);
	put64(pb, LAB_A64_PB_ITT_STRIDE, l->itt_stride);
	put64(pb, LAB_A64_PB_PROP, l->prop);
	put64(pb, LAB_A64_PB_PEND, l->pend);
	put64(pb, LAB_A64_PB_PEND_STRIDE, l->pend_stride);
	put64(pb, LAB_A64_PB_ID_BITS, ARM64_LPI_ID_BITS);
	put64(pb, LAB_A64_PB_NR_DEVICES, l->nr_devices);
	put64(pb, LAB_A64_PB_EVENTS, l->events);
	put64(pb, LAB_A64_PB_EVENT_BITS, l->event_bits);
	put64(pb, LAB_A64_PB_DEVID_BASE, ARM64_DEVID_BASE);
	put64(pb, LAB_A64_PB_LPI_BASE, ARM64_LPI_FIRST);
	put64(pb, LAB_A64_PB_LPI_PRIO, ARM64_LPI_PRIO);
	return 0;
}

static int set_reg(int fd, uint64_t id, uint64_t v, const char *name, unsigned index,
		   struct mig_error *err)
{
	struct kvm_one_reg r = { .id = id, .addr = (uint64_t)(uintptr_t)&v };

	if (ioctl(fd, KVM_SET_ONE_REG, &r) < 0)
		return mig_error_set(err, -errno, "vCPU %u: KVM_SET_ONE_REG %s: %s", index, name,
				     strerror(errno));
	return 0;
}

int arm64_vcpu_boot(int vcpu_fd, const struct arm64_layout *l, unsigned index,
		    struct mig_error *err)
{
	const struct {
		uint64_t id, val;
		const char *name;
	} regs[] = {
		/* the MMU first: nothing runs in between, but a reader of the
		 * list sees the translation regime before the addresses in it */
		{ REG_MAIR_EL1, MAIR_VALUE, "MAIR_EL1" },
		{ REG_TCR_EL1, TCR_VALUE, "TCR_EL1" },
		{ REG_TTBR0_EL1, l->pgtable, "TTBR0_EL1" },
		{ REG_SCTLR_EL1, SCTLR_VALUE, "SCTLR_EL1" },
		{ REG_CORE(regs.regs[0]), index, "x0" },
		{ REG_CORE(regs.regs[1]), l->table, "x1" },
		{ REG_CORE(sp_el1), l->stacks + (uint64_t)(index + 1) * l->stack_bytes, "SP_EL1" },
		{ REG_CORE(regs.pstate), PSTATE_VALUE, "PSTATE" },
		{ REG_CORE(regs.pc), l->code, "PC" },
	};

	if (index >= l->nr_vcpus)
		return mig_error_set(err, -EINVAL, "vCPU %u of a %u-vCPU layout", index,
				     l->nr_vcpus);
	for (size_t i = 0; i < ARRAY_SIZE(regs); i++) {
		int r = set_reg(vcpu_fd, regs[i].id, regs[i].val, regs[i].name, index, err);

		if (r < 0)
			return r;
	}
	return 0;
}

int arm64_vcpu_affinity(int vcpu_fd, uint32_t *ret, struct mig_error *err)
{
	uint64_t mpidr = 0;
	struct kvm_one_reg r = { .id = REG_MPIDR_EL1, .addr = (uint64_t)(uintptr_t)&mpidr };

	if (ioctl(vcpu_fd, KVM_GET_ONE_REG, &r) < 0)
		return mig_error_set(err, -errno, "KVM_GET_ONE_REG MPIDR_EL1: %s", strerror(errno));
	*ret = (uint32_t)(((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xffffff));
	return 0;
}

static bool doorbell_known(unsigned door)
{
	switch (door) {
	case LAB_PORT_FILL_DONE:
	case LAB_PORT_ERROR:
	case LAB_PORT_SLEEP:
	case LAB_PORT_IDLE:
	case LAB_PORT_PANIC:
	case LAB_A64_DB_ITS_READY:
	case LAB_A64_DB_ITS_FAIL:
	case LAB_A64_DB_FAULT:
		return true;
	default:
		return false;
	}
}

int arm64_mmio_doorbell(const struct arm64_layout *l, const struct kvm_run *run,
			unsigned *ret_door, uint8_t *ret_val, struct mig_error *err)
{
	uint64_t a = run->mmio.phys_addr;

	if (run->exit_reason != KVM_EXIT_MMIO)
		return mig_error_set(err, -EINVAL, "exit reason %u is no MMIO exit",
				     run->exit_reason);
	if (a < l->doorbell || a - l->doorbell >= LAB_A64_DB_BYTES)
		return mig_error_set(err, -EPROTO, "a %u-byte guest %s at %#llx, where it has no "
				     "device", run->mmio.len, run->mmio.is_write ? "write" : "read",
				     (unsigned long long)a);
	if (!run->mmio.is_write || run->mmio.len != 1 || !doorbell_known((unsigned)(a - l->doorbell)))
		return mig_error_set(err, -EPROTO, "a %u-byte guest %s at doorbell offset %#llx: "
				     "a doorbell is a 1-byte write to a known offset", run->mmio.len,
				     run->mmio.is_write ? "write" : "read",
				     (unsigned long long)(a - l->doorbell));
	*ret_door = (unsigned)(a - l->doorbell);
	*ret_val = run->mmio.data[0];
	return 0;
}

int arm64_exit_error(const struct kvm_run *run, unsigned index, struct mig_error *err)
{
	switch (run->exit_reason) {
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
			return mig_error_set(err, -EPROTO, "vCPU %u powered off: the guest payload "
					     "rejected the VMM's table, or faulted before it found "
					     "its doorbell page", index);
		return mig_error_set(err, -EPROTO, "vCPU %u: system event %u from the guest",
				     index, run->system_event.type);
	case KVM_EXIT_FAIL_ENTRY:
		return mig_error_set(err, -EIO, "vCPU %u: KVM could not enter the guest (reason "
				     "%#llx)", index, (unsigned long long)
				     run->fail_entry.hardware_entry_failure_reason);
	case KVM_EXIT_INTERNAL_ERROR:
		return mig_error_set(err, -EIO, "vCPU %u: KVM internal error %u", index,
				     run->internal.suberror);
	case KVM_EXIT_ARM_NISV:
		return mig_error_set(err, -EPROTO, "vCPU %u: an access KVM cannot decode at %#llx "
				     "(no valid syndrome)", index,
				     (unsigned long long)run->arm_nisv.fault_ipa);
	default:
		return mig_error_set(err, -EPROTO, "vCPU %u: unexpected exit reason %u", index,
				     run->exit_reason);
	}
}

int arm64_msi_raise(int vm_fd, const struct arm64_layout *l, unsigned dev, unsigned event,
		    struct mig_error *err)
{
	uint64_t db = l->its + GITS_TRANSLATER;
	struct kvm_msi m = {
		.address_lo = (uint32_t)db, .address_hi = (uint32_t)(db >> 32), .data = event,
		.flags = KVM_MSI_VALID_DEVID, .devid = ARM64_DEVID_BASE + dev,
	};
	int r;

	if (dev >= l->nr_devices || event >= l->events)
		return mig_error_set(err, -EINVAL, "MSI device %u event %u: the guest has %u "
				     "devices of %u events", dev, event, l->nr_devices, l->events);
	r = ioctl(vm_fd, KVM_SIGNAL_MSI, &m);
	if (r < 0)
		return mig_error_set(err, -errno, "KVM_SIGNAL_MSI device %u event %u: %s", dev,
				     event, strerror(errno));
	return r > 0;
}

uint64_t arm64_counter_hz(void)
{
	uint64_t f;

	__asm__ volatile("mrs %0, cntfrq_el0" : "=r"(f));
	return f;
}
