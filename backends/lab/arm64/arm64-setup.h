/* SPDX-License-Identifier: MIT */
/*
 * The VMM side of the arm64 lab guest (lab-guest-arm64.S, the LAB_A64_* part
 * of lab-abi.h): the guest physical map, the guest's system area in RAM
 * (table, platform block, identity page tables, stacks, ITS and LPI tables,
 * payload), vCPUs started at EL1 with the MMU on, the vGICv3 and one ITS, the
 * doorbell exits, and the lab's MSI devices.
 *
 * Guest physical map, as QEMU's "virt" board lays it out:
 *   0x0800_0000  GICD, 64 KiB
 *   0x0808_0000  ITS, 128 KiB (control frame, then GITS_TRANSLATER's frame)
 *   0x080a_0000  redistributors, 128 KiB per vCPU in creation order
 *   0x0a00_0000  doorbell page (no device behind it: every access exits)
 *   0x4000_0000  RAM
 *
 * Functions return 0 or -errno and fill the struct mig_error; none prints.
 * arm64 only (the uapi of <asm/kvm.h> is the arm64 one).
 */
#ifndef LAB_ARM64_SETUP_H
#define LAB_ARM64_SETUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include <migrate/error.h>

#include "../lab-table.h"

#define ARM64_GICD_BASE       0x08000000ULL
#define ARM64_ITS_BASE        0x08080000ULL
#define ARM64_GICR_BASE       0x080a0000ULL
#define ARM64_GICR_STRIDE     0x20000ULL
#define ARM64_DOORBELL_BASE   0x0a000000ULL
#define ARM64_RAM_BASE        0x40000000ULL

#define ARM64_MAX_VCPUS       64
#define ARM64_LPI_ID_BITS     14      /* INTIDs up to 16383: 8192 LPIs */
#define ARM64_LPI_FIRST       8192
#define ARM64_LPI_PRIO        0xa0
#define ARM64_DEVID_BASE      32      /* DeviceID of MSI device 0 */
#define ARM64_MAX_EVENTS      32      /* one 256-byte ITT of 8-byte entries */
#define ARM64_NR_IRQS         64      /* SGIs, PPIs and 32 SPIs: the lab uses none of the SPIs */

/* Where everything of one guest is.  GPAs unless named *_bytes. */
struct arm64_layout {
	uint64_t ram_base, ram_bytes;
	unsigned nr_vcpus;
	unsigned nr_devices, events, event_bits;   /* MSI devices */
	uint64_t table;          /* lab-abi.h table: header, then the vCPU areas */
	uint64_t plat;           /* LAB_A64_PB_* block */
	uint64_t pgtable;        /* level-1 table, then one level-2 table per GiB of RAM */
	uint64_t stacks, stack_bytes;
	uint64_t cmdq, cmdq_bytes;
	uint64_t devtab, devtab_bytes;
	uint64_t coltab, coltab_bytes;
	uint64_t itt, itt_stride;
	uint64_t prop;
	uint64_t pend, pend_stride;
	uint64_t code, code_max;
	uint64_t sys_bytes;      /* RAM from ram_base the above take: the workload starts here */
	uint64_t gicd, gicr, its, doorbell;
};

/* A layout for ram_bytes (a multiple of 2 MiB) of RAM, nr_vcpus vCPUs and
 * nr_devices MSI devices of `events` events each (at most LAB_A64_MAX_LPIS
 * LPIs in all).  The system area is 2 MiB up to 20 vCPUs; each pending
 * table needs its own 64 KiB-aligned slot, so it grows past that. */
int arm64_layout_init(struct arm64_layout *l, uint64_t ram_bytes, unsigned nr_vcpus,
		      unsigned nr_devices, unsigned events, struct mig_error *err);


/* Writes the system area into guest RAM (`ram` = host view of ram_base):
 * the table with each vCPU's inputs from work[0..nr_vcpus), the platform
 * block, the page tables and the payload.  Every region must lie in RAM
 * above sys_bytes. */
int arm64_guest_write(const struct arm64_layout *l, uint8_t *ram,
		      const struct lab_work *work, struct mig_error *err);

/* Registers of a fresh vCPU so it enters the payload: PC, x0 = index,
 * x1 = table, SP_EL1, PSTATE = EL1h with DAIF masked, and the MMU's
 * SCTLR/TCR/MAIR/TTBR0.  Every vCPU starts so (no PSCI CPU_ON). */
int arm64_vcpu_boot(int vcpu_fd, const struct arm64_layout *l, unsigned index,
		    struct mig_error *err);

/* MPIDR_EL1's affinity as the vGIC's attributes want it
 * (Aff3 << 24 | Aff2 << 16 | Aff1 << 8 | Aff0). */
int arm64_vcpu_affinity(int vcpu_fd, uint32_t *ret, struct mig_error *err);

/* What a KVM_EXIT_MMIO of the guest is: a doorbell (LAB_PORT_* or
 * LAB_A64_DB_*) and the byte written (the vCPU index), or -EPROTO with why
 * (an access that is no 1-byte write, or outside the doorbell page). */
int arm64_mmio_doorbell(const struct arm64_layout *l, const struct kvm_run *run,
			unsigned *ret_door, uint8_t *ret_val, struct mig_error *err);

/* Error for an exit the lab guest never causes on purpose: its PSCI
 * SYSTEM_OFF (the payload's panic before it found its doorbell page), entry
 * failures, internal errors.  Returns the code set.  A SYSTEM_OFF concerns
 * the whole VM: the kernel powers every other vCPU off with it, and those
 * sleep inside KVM_RUN, exiting only when signalled. */
int arm64_exit_error(const struct kvm_run *run, unsigned index, struct mig_error *err);

/* The lab's MSI devices: event `event` of device `dev` through
 * KVM_SIGNAL_MSI.  1: the ITS translated it into an LPI (it is pending
 * now), 0: the guest has not mapped it (yet), -errno. */
int arm64_msi_raise(int vm_fd, const struct arm64_layout *l, unsigned dev, unsigned event,
		    struct mig_error *err);

/* CNTFRQ_EL0: the counter's ticks per second, guest and host alike. */
uint64_t arm64_counter_hz(void);

#endif
