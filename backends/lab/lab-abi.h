/* SPDX-License-Identifier: MIT */
/*
 * The contract between the VMM and the lab guest payload (lab-guest.S).
 * Included by C and by the assembler, so only #defines live here.
 *
 * The VMM writes a table in guest RAM and starts each vCPU with
 *   RDI = vCPU index, RSI = guest address of the table,
 * so the payload assumes no fixed layout.  Guest virtual = guest physical
 * (identity-mapped with 2 MiB pages, user-accessible: the payload runs at CPL3).
 *
 * Table: a header, then one LAB_VA_SIZE area per vCPU at
 * table + LAB_TBL_VCPUS + index * LAB_VA_SIZE.
 */
#ifndef DEVICES_LAB_ABI_H
#define DEVICES_LAB_ABI_H

#define LAB_TBL_MAGIC        0x314241474d4c494dULL  /* "MILMGAB1" */
#define LAB_TBL_VERSION      1

/* table header */
#define LAB_TBL_OFF_MAGIC    0x00
#define LAB_TBL_OFF_VERSION  0x08
#define LAB_TBL_OFF_NR_VCPUS 0x10
#define LAB_TBL_VCPUS        0x40

/* per-vCPU area: the VMM fills the inputs, the guest keeps the outputs */
#define LAB_VA_ID            0x00  /* in: vCPU index */
#define LAB_VA_REGION        0x08  /* in: first page of this vCPU's share of RAM */
#define LAB_VA_REGION_PAGES  0x10  /* in: pages in that share (all filled) */
#define LAB_VA_WSS_PAGES     0x18  /* in: first N pages of the share are stamped */
#define LAB_VA_PATTERN       0x20  /* in: 0 sequential, 1 random page order */
#define LAB_VA_SEED          0x28  /* in: fill pattern seed */
#define LAB_VA_TSC_PER_PAGE  0x30  /* in: pacing in TSC ticks per page, 0 = no limit */
#define LAB_VA_STATE         0x38  /* out: LAB_STATE_* */
#define LAB_VA_FILLED        0x40  /* out: pages filled */
#define LAB_VA_PASS          0x48  /* out: passes completed over the working set */
#define LAB_VA_PAGES         0x50  /* out: pages stamped in total */
#define LAB_VA_ERRORS        0x58  /* out: self-check mismatches */
#define LAB_VA_ERR_GPA       0x60  /* out: last mismatch: page address, */
#define LAB_VA_ERR_EXPECT    0x68  /*      the value the guest last wrote, */
#define LAB_VA_ERR_FOUND     0x70  /*      and what it found */
#define LAB_VA_SLEEP_TICKS   0x78  /* out: with LAB_PORT_SLEEP, TSC ticks to wait */
#define LAB_VA_SIZE          0x100

#define LAB_STATE_INIT       0
#define LAB_STATE_FILLING    1
#define LAB_STATE_RUNNING    2
#define LAB_STATE_PANIC      3

/* port I/O doorbells (IOPL=3 lets CPL3 use them); the byte written is the vCPU index */
#define LAB_PORT_FILL_DONE   0x10
#define LAB_PORT_ERROR       0x11
#define LAB_PORT_SLEEP       0x12
#define LAB_PORT_IDLE        0x13
#define LAB_PORT_PANIC       0x14

/* fill pattern: per page s = (seed ^ (pfn * LAB_FILL_MUL)) | 1, then for each of
 * the 512 words: s ^= s << 13; s ^= s >> 7; s ^= s << 17; word = s */
#define LAB_FILL_MUL         0x9E3779B97F4A7C15
/* stamp written to the first and last word of a page: (index + 1) << 48 | pass */
#define LAB_STAMP_SHIFT      48
/* random order: full-period LCG x = x * A + 1 modulo the next power of two */
#define LAB_LCG_MUL          0x5851F42D4C957F2D

/*
 * ---- x86: an SEV guest (sev=sim|kernel; docs/devices.md §12) ----
 *
 * vCPU 0 plays the SEV guest kernel's part: it runs at CPL0 (KVM takes a
 * WRMSR or a hypercall only there), has no share of RAM and no working set
 * (under PVM, CPL0 code is emulated), and keeps its SEV fields in its area
 * from 0x80 up (the other vCPUs' stay 0).  At boot it reports all RAM encrypted and the VMM's table
 * shared, as a Linux SEV guest reports its E820 RAM and its shared pages;
 * LAB_X86_VA_SEV_READY ticks later it sets KVM_MIGRATION_READY; it may
 * clear it again (LAB_X86_VA_SEV_UNREADY), and it flips the flip range
 * between shared and encrypted every LAB_X86_VA_SEV_FLIP ticks.  It checks
 * these each time it wakes from idle.
 *
 * The hypercall (vmmcall: RAX 12, RBX GPA, RCX pages, RDX attributes)
 * returns its result in RAX.  In doorbell mode the same arguments go in
 * ARG0..2 and LAB_PORT_SEV_MAP is rung; the VMM puts the result in ARG2.
 * A non-zero result counts as an error.
 */
#define LAB_X86_VA_SEV_MODE      0x80  /* in: 0 no SEV, 1 the hypercall, 2 the doorbell */
#define LAB_X86_VA_SEV_READY     0x88  /* in: TSC ticks from boot to setting READY */
#define LAB_X86_VA_SEV_UNREADY   0x90  /* in: ticks from READY to clearing it, 0: never */
#define LAB_X86_VA_SEV_FLIP      0x98  /* in: ticks between flips, 0: never */
#define LAB_X86_VA_SEV_FLIP_GPA  0xa0  /* in: the flip range (LAB_SEV_FLIP_PAGES) */
#define LAB_X86_VA_SEV_RAM_PAGES 0xa8  /* in: guest RAM pages from GPA 0 */
#define LAB_X86_VA_SEV_SHARED    0xb0  /* in: the shared range (LAB_SEV_SHARED_PAGES) */
#define LAB_X86_VA_SEV_T0        0xc0  /* guest's: TSC at boot */
#define LAB_X86_VA_SEV_PHASE     0xc8  /* out: 0 not ready yet, 1 READY set, 2 cleared */
#define LAB_X86_VA_SEV_PHASE_T   0xd0  /* guest's: TSC of the last phase change */
#define LAB_X86_VA_SEV_NEXT_FLIP 0xd8  /* guest's: TSC of the next flip */
#define LAB_X86_VA_SEV_FLIPS     0xe0  /* out: flips done (odd: the range is shared) */
#define LAB_X86_VA_SEV_ARG0      0xe8  /* doorbell: GPA, */
#define LAB_X86_VA_SEV_ARG1      0xf0  /*   pages, */
#define LAB_X86_VA_SEV_ARG2      0xf8  /*   attributes in, the result out */
#define LAB_SEV_FLIP_PAGES       16
#define LAB_SEV_SHARED_PAGES     8
#define LAB_SEV_MODE_HYPERCALL   1
#define LAB_SEV_MODE_DOORBELL    2
#define LAB_PORT_SEV_MAP         0x18
#define LAB_SEV_MSR              0x4b564d08  /* MSR_KVM_MIGRATION_CONTROL */
#define LAB_SEV_HC_MAP_GPA_RANGE 12
#define LAB_SEV_MAP_ENCRYPTED    0x10

/*
 * ---- arm64 (backends/lab/arm64/lab-guest-arm64.S) ----
 *
 * The same table, areas, fill pattern, stamps and LAB_VA_* outputs; the
 * values above do not change.  What differs, all named LAB_A64_*:
 *
 * - The VMM starts each vCPU at EL1 with the MMU on (identity map it built,
 *   RAM Normal write-back, the rest of the low 1 GiB Device-nGnRnE) and
 *   x0 = vCPU index, x1 = guest address of the table.
 * - LAB_VA_TSC_PER_PAGE and LAB_VA_SLEEP_TICKS count CNTVCT_EL0 ticks
 *   (CNTFRQ_EL0 per second), not TSC ticks.
 * - Doorbells are 1-byte MMIO writes of the vCPU index to the doorbell page
 *   at offset LAB_PORT_* (so the VMM decodes them into the same numbers),
 *   plus the arm64-only ones below.  The page is outside RAM and every
 *   in-kernel device, so each write exits with KVM_EXIT_MMIO.
 * - The header's LAB_A64_TBL_OFF_PLAT points at the platform block: where the
 *   GIC, the ITS and the doorbell page are, and the guest RAM the VMM set
 *   aside for the ITS and LPI tables.  vCPU 0 programs the redistributors'
 *   LPI tables and the ITS from it; the others wait for LAB_A64_ITS_READY.
 * - MSI devices: device d (0 <= d < NR_DEVICES) has DeviceID DEVID_BASE + d
 *   and events 0 <= e < EVENTS; event e of device d is LPI k = d * EVENTS + e,
 *   INTID LPI_BASE + k, routed to the collection of vCPU k % nr_vcpus.  The
 *   guest counts each delivery in DELIVERED[k]; the VMM counts what it
 *   raised with KVM_SIGNAL_MSI and raises k again only once DELIVERED[k]
 *   caught up (an LPI raised twice while pending is delivered once), so at
 *   any quiet moment raised[k] == DELIVERED[k] for every k.
 */
#define LAB_A64_TBL_OFF_PLAT 0x18  /* in: guest address of the platform block */

/* per-vCPU area, arm64 only (0x80 up: unused by the x86 contract) */
#define LAB_A64_VA_IRQS      0x80  /* out: interrupts taken (IAR reads) */
#define LAB_A64_VA_SPURIOUS  0x88  /* out: of them, INTID 1023 */
#define LAB_A64_VA_STRAY     0x90  /* out: of them, INTIDs that are no lab LPI */
#define LAB_A64_VA_LAST_INTID 0x98 /* out: the last INTID taken */
#define LAB_A64_VA_PLAT      0xa0  /* guest's own: the platform block, for the IRQ handler */
#define LAB_A64_VA_DOORBELL  0xa8  /* guest's own: the doorbell page */
#define LAB_A64_VA_FAULT_ESR 0xb0  /* out: with LAB_A64_DB_FAULT, the exception's ESR_EL1, */
#define LAB_A64_VA_FAULT_ELR 0xb8  /*      ELR_EL1, */
#define LAB_A64_VA_FAULT_FAR 0xc0  /*      FAR_EL1 */
#define LAB_A64_VA_FAULT_VEC 0xc8  /*      and the vector's offset in VBAR_EL1 */
#define LAB_A64_VA_PROCNUM   0xd0  /* out: GICR_TYPER.Processor_Number of its redistributor */

/* platform block: "in" fields written by the VMM, "out" by vCPU 0 */
#define LAB_A64_PB_MAGIC       0x314650343641494dULL  /* "MIA64PF1" */
#define LAB_A64_PB_OFF_MAGIC   0x00
#define LAB_A64_PB_DOORBELL    0x08  /* in: the doorbell page */
#define LAB_A64_PB_GICD        0x10  /* in: distributor */
#define LAB_A64_PB_GICR        0x18  /* in: vCPU 0's redistributor (RD_base) */
#define LAB_A64_PB_GICR_STRIDE 0x20  /* in: from one vCPU's redistributor to the next */
#define LAB_A64_PB_ITS         0x28  /* in: ITS control frame */
#define LAB_A64_PB_CMDQ        0x30  /* in: ITS command queue (64 KiB aligned) */
#define LAB_A64_PB_CMDQ_BYTES  0x38  /* in: its size, a multiple of 4 KiB */
#define LAB_A64_PB_DEVTAB      0x40  /* in: ITS device table (64 KiB aligned) */
#define LAB_A64_PB_DEVTAB_BYTES 0x48 /* in: a multiple of 64 KiB */
#define LAB_A64_PB_COLTAB      0x50  /* in: ITS collection table (64 KiB aligned) */
#define LAB_A64_PB_COLTAB_BYTES 0x58 /* in: a multiple of 64 KiB */
#define LAB_A64_PB_ITT         0x60  /* in: device 0's ITT (256-byte aligned) */
#define LAB_A64_PB_ITT_STRIDE  0x68  /* in: from one device's ITT to the next */
#define LAB_A64_PB_PROP        0x70  /* in: LPI configuration table (4 KiB aligned) */
#define LAB_A64_PB_PEND        0x78  /* in: vCPU 0's LPI pending table (64 KiB aligned) */
#define LAB_A64_PB_PEND_STRIDE 0x80  /* in: from one vCPU's pending table to the next */
#define LAB_A64_PB_ID_BITS     0x88  /* in: INTID bits the LPI tables cover (14..16) */
#define LAB_A64_PB_NR_DEVICES  0x90  /* in: MSI devices */
#define LAB_A64_PB_EVENTS      0x98  /* in: events (LPIs) per device */
#define LAB_A64_PB_EVENT_BITS  0xa0  /* in: EventID bits of each ITT */
#define LAB_A64_PB_DEVID_BASE  0xa8  /* in: DeviceID of device 0 */
#define LAB_A64_PB_LPI_BASE    0xb0  /* in: INTID of LPI 0 (>= 8192) */
#define LAB_A64_PB_LPI_PRIO    0xb8  /* in: the LPIs' priority byte */
#define LAB_A64_PB_ITS_STATE   0xc0  /* out: LAB_A64_ITS_* */
#define LAB_A64_PB_ITS_ERROR   0xc8  /* out: LAB_A64_ITS_ERR_*, the step that failed */
#define LAB_A64_PB_ITS_DETAIL  0xd0  /* out: the register value behind it */
#define LAB_A64_PB_ITS_CMDS    0xd8  /* out: ITS commands vCPU 0 issued */
#define LAB_A64_PB_DELIVERED   0x100 /* out: u64 deliveries of LPI k at + 8 * k */
#define LAB_A64_MAX_LPIS       256
/* the VMM's own: u64 raises of LPI k at + 8 * k (the guest never reads it;
 * it is in guest RAM so that it migrates with DELIVERED) */
#define LAB_A64_PB_RAISED      (LAB_A64_PB_DELIVERED + 8 * LAB_A64_MAX_LPIS)
#define LAB_A64_PB_SIZE        (LAB_A64_PB_RAISED + 8 * LAB_A64_MAX_LPIS)

#define LAB_A64_ITS_INIT       0
#define LAB_A64_ITS_READY      1
#define LAB_A64_ITS_FAILED     2

#define LAB_A64_ITS_ERR_TYPER   1  /* GITS_TYPER: no physical LPIs, or an ITT entry that is not 8 bytes */
#define LAB_A64_ITS_ERR_BASER   2  /* no GITS_BASER of a needed type, or it did not take the table */
#define LAB_A64_ITS_ERR_CREADR  3  /* the command queue stalled or did not drain */
#define LAB_A64_ITS_ERR_TABLE   4  /* the platform block asks for more than the tables hold */

/* arm64-only doorbell offsets (after LAB_PORT_*) */
#define LAB_A64_DB_ITS_READY 0x15  /* vCPU 0 finished programming the ITS */
#define LAB_A64_DB_ITS_FAIL  0x16  /* ... and failed: LAB_A64_PB_ITS_ERROR says where; then
					every vCPU rings LAB_PORT_PANIC */
#define LAB_A64_DB_FAULT     0x17  /* an unexpected exception: LAB_A64_VA_FAULT_* */
#define LAB_A64_DB_BYTES     0x1000

#endif
