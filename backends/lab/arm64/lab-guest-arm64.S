/* SPDX-License-Identifier: MIT */
/*
 * The lab guest for arm64: the workload contract of lab-guest.S (the table,
 * the per-vCPU areas, the fill pattern, the stamps, the self-check and every
 * LAB_VA_* output), run at EL1 with the MMU on, plus interrupts: a GICv3 CPU
 * interface per vCPU, LPIs and an ITS that vCPU 0 programs itself, and an IRQ
 * handler that counts every LPI it takes.  The arm64 additions are the
 * LAB_A64_* names of lab-abi.h.
 *
 * Entry, set up by the VMM (arm64-setup.c): EL1h, DAIF masked, the MMU on
 * with the VMM's identity map (RAM Normal write-back: with the MMU off every
 * access would be Device memory, which on real hardware bypasses the caches
 * the host's view of RAM goes through), SP_EL1 = this vCPU's stack,
 * x0 = vCPU index, x1 = guest address of the table.  The code is position
 * independent; the VMM copies it to a 2 KiB-aligned guest address (the vector
 * table's alignment is relative to the copy).
 *
 * 1. VBAR_EL1, then the table checks (magic, version, index, platform block).
 *    Until the doorbell page is known, a panic is a PSCI SYSTEM_OFF, the one
 *    exit that needs no address.
 * 2. This vCPU's GIC CPU interface: system registers on, all priorities
 *    unmasked, Group 1 on.  vCPU 0 then writes the LPI tables, enables LPIs on
 *    every redistributor and the distributor's Group 1, programs the ITS
 *    (tables, command queue, MAPC/MAPD/MAPTI/INV/SYNC) and publishes
 *    LAB_A64_ITS_READY; the others wait for it.  IRQs are unmasked from then
 *    on, through the fill and the stamping loop.
 * 3. Fill and stamp exactly as lab-guest.S does; pacing reads CNTVCT_EL0.
 *
 * A restored guest is past all of this: its GIC state comes back through the
 * kernel's save/restore, not by running this code again.
 *
 * Registers in the stamping loop (the IRQ handler saves what it uses):
 *   x19 per-vCPU area   x20 share base     x21 wss pages   x22 pass being written
 *   x23 stamp tag       x24 LCG mask       x25 ticks per page (0 = unpaced)
 *   x26 pacing start    x27 pages paced since x26          x28 page index
 *   x11/x12 random-order state and count   x13 LAB_FILL_MUL  x14 LAB_LCG_MUL
 *   x0-x7 scratch (x6/x7: doorbells)
 */
#include "../lab-abi.h"

/* GICv3 architecture: register offsets and fields the payload uses. */
#define GICD_CTLR             0x0000
#define GICD_CTLR_RWP         (1 << 31)
#define GICD_CTLR_G1_ARE      0x12          /* EnableGrp1 | ARE (single security state) */
#define GICR_CTLR             0x0000
#define GICR_TYPER            0x0008
#define GICR_PROPBASER        0x0070
#define GICR_PENDBASER        0x0078
#define GITS_CTLR             0x0000
#define GITS_TYPER            0x0008
#define GITS_CBASER           0x0080
#define GITS_CWRITER          0x0088
#define GITS_CREADR           0x0090
#define GITS_BASER            0x0100
#define GITS_BASER_TYPE_DEV   1
#define GITS_BASER_TYPE_COLL  4
#define GITS_TYPER_PTA        (1 << 19)
/* Inner shareable, inner write-back read/write-allocate: the attributes the
 * guest's own mapping of RAM has, so the ITS and redistributors see what it
 * wrote (GICR_*BASER put InnerCache at 9:7, GITS_*BASER at 61:59). */
#define GICR_BASER_ATTR       ((7 << 7) | (1 << 10))
#define GITS_BASER_ATTR_HI    0xb800        /* Valid | InnerCache 7, bits 63:48 */
#define GITS_PAGE_64K         (2 << 8)
#define GITS_SHARE_INNER      (1 << 10)
#define LPI_FIRST             8192
#define INTID_SPURIOUS        1023
#define ITS_CMD_SYNC          0x05
#define ITS_CMD_MAPD          0x08
#define ITS_CMD_MAPC          0x09
#define ITS_CMD_MAPTI         0x0a
#define ITS_CMD_INV           0x0c
#define ITS_CMD_BYTES         32
#define ITS_POLL_LIMIT        50000000
#define PSCI_SYSTEM_OFF       0x84000008

	/* One step of the fill pattern's xorshift64 on \r. */
	.macro XORSHIFT r
	eor	\r, \r, \r, lsl #13
	eor	\r, \r, \r, lsr #7
	eor	\r, \r, \r, lsl #17
	.endm

	/* Ring doorbell \off with this vCPU's index (x19 = its area).  A plain
	 * STRB with an immediate offset, so the abort carries a valid syndrome
	 * and KVM can hand it to the VMM as KVM_EXIT_MMIO.  Clobbers x6, x7. */
	.macro DOORBELL off
	ldr	x6, [x19, #LAB_A64_VA_DOORBELL]
	ldr	x7, [x19, #LAB_VA_ID]
	strb	w7, [x6, #\off]
	.endm

	/* The u64 at \base + \off, plus one (a single writer). Clobbers \tmp. */
	.macro INC64 base, off, tmp
	ldr	\tmp, [\base, #\off]
	add	\tmp, \tmp, #1
	str	\tmp, [\base, #\off]
	.endm

	/* Queue one ITS command at x15 + x16 * 32: \w0..\w2 (DW3 is zero). */
	.macro ITS_CMD w0, w1, w2
	add	x7, x15, x16, lsl #5
	str	\w0, [x7]
	str	\w1, [x7, #8]
	str	\w2, [x7, #16]
	str	xzr, [x7, #24]
	add	x16, x16, #1
	.endm

	/* A vector entry that reports the exception as a fault. */
	.macro VFAULT off
	.balign 0x80
	mov	x0, #\off
	b	.Lfault
	.endm

	.section .rodata.lab_guest_arm64, "a"
	.balign 2048
	.globl	lab_a64_guest_start
	.globl	lab_a64_guest_end

lab_a64_guest_start:
	adr	x2, .Lvectors
	msr	vbar_el1, x2
	isb
	msr	tpidr_el1, xzr			/* no area yet: faults power off */

	ldr	x2, =LAB_TBL_MAGIC
	ldr	x3, [x1, #LAB_TBL_OFF_MAGIC]
	cmp	x2, x3
	b.ne	.Learly_panic
	ldr	x3, [x1, #LAB_TBL_OFF_VERSION]
	cmp	x3, #LAB_TBL_VERSION
	b.ne	.Learly_panic
	ldr	x3, [x1, #LAB_TBL_OFF_NR_VCPUS]
	cmp	x0, x3
	b.hs	.Learly_panic
	add	x19, x1, #LAB_TBL_VCPUS
	add	x19, x19, x0, lsl #8		/* LAB_VA_SIZE */
	ldr	x8, [x1, #LAB_A64_TBL_OFF_PLAT]
	cbz	x8, .Learly_panic
	ldr	x2, =LAB_A64_PB_MAGIC
	ldr	x3, [x8, #LAB_A64_PB_OFF_MAGIC]
	cmp	x2, x3
	b.ne	.Learly_panic
	ldr	x3, [x8, #LAB_A64_PB_DOORBELL]
	cbz	x3, .Learly_panic
	str	x8, [x19, #LAB_A64_VA_PLAT]
	str	x3, [x19, #LAB_A64_VA_DOORBELL]
	msr	tpidr_el1, x19			/* the IRQ and fault handlers' anchor */

	/* This vCPU's CPU interface: system register access (RAO under KVM's
	 * GICv3, written anyway as a real GIC needs it), no priority masked,
	 * EOI both drops priority and deactivates, Group 1 on. */
	mov	x2, #7
	msr	icc_sre_el1, x2
	isb
	mov	x2, #0xff
	msr	icc_pmr_el1, x2
	msr	icc_bpr1_el1, xzr
	msr	icc_ctlr_el1, xzr
	mov	x2, #1
	msr	icc_igrpen1_el1, x2
	isb

	mov	x9, x1				/* the table, for its_setup */
	add	x10, x8, #LAB_A64_PB_ITS_STATE
	cbnz	x0, .Lwait_its
	bl	.Lits_setup
.Lwait_its:
	ldar	x2, [x10]
	cmp	x2, #LAB_A64_ITS_READY
	b.eq	.Lits_ok
	cmp	x2, #LAB_A64_ITS_FAILED
	b.eq	.Lpanic
	yield
	b	.Lwait_its
.Lits_ok:
	msr	daifclr, #2			/* IRQs on, for good */

	/* A guest restored after the fill skips it: PC is past this point then. */
	mov	x2, #LAB_STATE_FILLING
	str	x2, [x19, #LAB_VA_STATE]
	ldr	x9, [x19, #LAB_VA_REGION]
	ldr	x10, [x19, #LAB_VA_REGION_PAGES]
	ldr	x11, [x19, #LAB_VA_SEED]
	ldr	x13, =LAB_FILL_MUL
	str	xzr, [x19, #LAB_VA_FILLED]
.Lfill_page:
	cbz	x10, .Lfill_done
	lsr	x0, x9, #12
	mul	x0, x0, x13
	eor	x0, x0, x11
	orr	x0, x0, #1
	mov	x3, x9
	mov	x4, #512
.Lfill_word:
	XORSHIFT x0
	str	x0, [x3], #8
	subs	x4, x4, #1
	b.ne	.Lfill_word
	add	x9, x9, #4096
	sub	x10, x10, #1
	INC64	x19, LAB_VA_FILLED, x1
	b	.Lfill_page
.Lfill_done:
	DOORBELL LAB_PORT_FILL_DONE

	mov	x2, #LAB_STATE_RUNNING
	str	x2, [x19, #LAB_VA_STATE]
	ldr	x21, [x19, #LAB_VA_WSS_PAGES]
	cbz	x21, .Lidle
	ldr	x20, [x19, #LAB_VA_REGION]
	ldr	x23, [x19, #LAB_VA_ID]
	add	x23, x23, #1
	lsl	x23, x23, #LAB_STAMP_SHIFT
	ldr	x22, [x19, #LAB_VA_PASS]
	add	x22, x22, #1
	ldr	x13, =LAB_FILL_MUL
	ldr	x14, =LAB_LCG_MUL
	/* x24 = next power of two >= wss pages, minus one */
	mov	x24, #0
	subs	x0, x21, #1
	b.eq	1f
	clz	x1, x0
	mov	x2, #64
	sub	x1, x2, x1
	mov	x24, #1
	lsl	x24, x24, x1
	sub	x24, x24, #1
1:	ldr	x25, [x19, #LAB_VA_TSC_PER_PAGE]
	isb
	mrs	x26, cntvct_el0
	mov	x27, #0

.Lpass:
	ldr	x0, [x19, #LAB_VA_PATTERN]
	cbnz	x0, .Lrandom_pass
	mov	x28, #0
.Lseq_next:
	cmp	x28, x21
	b.hs	.Lpass_done
	bl	.Ltouch_page
	add	x28, x28, #1
	b	.Lseq_next

	/* Random order: a full-period LCG modulo x24 + 1, skipping indices >= wss,
	 * visits every page exactly once per pass; the start point moves each pass. */
.Lrandom_pass:
	mul	x0, x22, x13
	and	x11, x0, x24
	mov	x12, #0
.Lrandom_next:
	cmp	x12, x21
	b.hs	.Lpass_done
	mul	x0, x11, x14
	add	x0, x0, #1
	and	x11, x0, x24
	cmp	x11, x21
	b.hs	.Lrandom_next
	mov	x28, x11
	bl	.Ltouch_page
	add	x12, x12, #1
	b	.Lrandom_next

.Lpass_done:
	INC64	x19, LAB_VA_PASS, x0
	add	x22, x22, #1
	b	.Lpass

	/* Check and stamp page x28 of the share.  Clobbers x0-x7. */
.Ltouch_page:
	str	x30, [sp, #-16]!
	add	x3, x20, x28, lsl #12
	cmp	x22, #1
	b.ne	.Lcheck_stamp
	/* pass 1: the first word must still be the fill pattern */
	lsr	x0, x3, #12
	mul	x0, x0, x13
	ldr	x1, [x19, #LAB_VA_SEED]
	eor	x0, x0, x1
	orr	x0, x0, #1
	XORSHIFT x0
	ldr	x2, [x3]
	cmp	x2, x0
	b.eq	.Lstamp
	bl	.Lreport
	b	.Lstamp
.Lcheck_stamp:
	sub	x0, x22, #1
	orr	x0, x0, x23
	ldr	x2, [x3]
	cmp	x2, x0
	b.eq	1f
	bl	.Lreport
1:	ldr	x2, [x3, #4088]
	cmp	x2, x0
	b.eq	.Lstamp
	bl	.Lreport
.Lstamp:
	orr	x0, x22, x23
	str	x0, [x3]
	str	x0, [x3, #4088]
	INC64	x19, LAB_VA_PAGES, x1
	cbz	x25, 2f
	bl	.Lpace
2:	ldr	x30, [sp], #16
	ret

	/* Pacing: page x27 is due at x26 + x27 * x25.  Ahead of schedule, ask the
	 * VMM to sleep; more than 1024 pages off schedule either way (a pause, a
	 * migration, a counter step), restart the schedule instead of bursting. */
.Lpace:
	add	x27, x27, #1
	madd	x4, x27, x25, x26		/* x4 = deadline */
	lsl	x5, x25, #10			/* x5 = slack */
	isb
	mrs	x0, cntvct_el0			/* x0 = now */
	subs	x1, x0, x4
	b.lo	.Lahead
	cmp	x1, x5
	b.ls	.Lpace_out
	b	.Lrestart
.Lahead:
	sub	x1, x4, x0			/* x1 = deadline - now */
	cmp	x1, x5
	b.hi	.Lrestart
	str	x1, [x19, #LAB_VA_SLEEP_TICKS]
	DOORBELL LAB_PORT_SLEEP
	b	.Lpace_out
.Lrestart:
	mov	x26, x0
	mov	x27, #0
.Lpace_out:
	ret

	/* x3 = page, x0 = expected, x2 = found; preserves x0 and x3 */
.Lreport:
	str	x3, [x19, #LAB_VA_ERR_GPA]
	str	x0, [x19, #LAB_VA_ERR_EXPECT]
	str	x2, [x19, #LAB_VA_ERR_FOUND]
	INC64	x19, LAB_VA_ERRORS, x1
	DOORBELL LAB_PORT_ERROR
	ret

.Lidle:
	DOORBELL LAB_PORT_IDLE
	b	.Lidle

.Lpanic:
	mov	x2, #LAB_STATE_PANIC
	str	x2, [x19, #LAB_VA_STATE]
1:	DOORBELL LAB_PORT_PANIC
	b	1b

.Learly_panic:
	ldr	x0, =PSCI_SYSTEM_OFF
	hvc	#0
	b	.Learly_panic

/*
 * vCPU 0: LPI tables, redistributors, distributor, ITS.  In: x8 platform
 * block, x9 table, x19 area, x10 &ITS_STATE.  Every input is checked against
 * what the tables can hold before anything is written.  Clobbers x0-x7 and
 * x11-x18 (nothing else runs yet).
 */
.Lits_setup:
	/* x11 = LPIs, x12 = vCPUs, x13 = ID bits */
	ldr	x0, [x8, #LAB_A64_PB_NR_DEVICES]
	ldr	x1, [x8, #LAB_A64_PB_EVENTS]
	mul	x11, x0, x1
	ldr	x12, [x9, #LAB_TBL_OFF_NR_VCPUS]
	ldr	x13, [x8, #LAB_A64_PB_ID_BITS]
	mov	x18, #LAB_A64_ITS_ERR_TABLE
	mov	x17, x11
	cmp	x11, #LAB_A64_MAX_LPIS
	b.hi	.Lits_fail
	cmp	x13, #14
	b.lo	.Lits_fail
	cmp	x13, #16
	b.hi	.Lits_fail
	ldr	x2, [x8, #LAB_A64_PB_EVENT_BITS]
	mov	x17, x2
	cbz	x2, .Lits_fail
	cmp	x2, #16				/* KVM's ITS: 16 EventID bits */
	b.hi	.Lits_fail
	mov	x3, #1
	lsl	x3, x3, x2
	cmp	x1, x3				/* the events fit the EventID bits */
	b.hi	.Lits_fail
	lsl	x3, x3, #3
	ldr	x4, [x8, #LAB_A64_PB_ITT_STRIDE]
	cmp	x3, x4				/* and 8-byte entries for all of them fit an ITT */
	b.hi	.Lits_fail
	ldr	x2, [x8, #LAB_A64_PB_LPI_BASE]
	mov	x17, x2
	cmp	x2, #LPI_FIRST
	b.lo	.Lits_fail
	add	x2, x2, x11
	mov	x3, #1
	lsl	x3, x3, x13
	cmp	x2, x3
	b.hi	.Lits_fail
	/* commands: MAPC and SYNC per vCPU, MAPD per device, MAPTI and INV per
	 * LPI; the queue is written once from its start, never wrapped */
	add	x2, x0, x12, lsl #1
	add	x2, x2, x11, lsl #1
	ldr	x3, [x8, #LAB_A64_PB_CMDQ_BYTES]
	lsr	x3, x3, #5
	mov	x17, x2
	cmp	x2, x3
	b.hs	.Lits_fail

	/* LPI configuration table: every LPI off but the lab's, at LPI_PRIO */
	ldr	x3, [x8, #LAB_A64_PB_PROP]
	mov	x4, #1
	lsl	x4, x4, x13
	sub	x4, x4, #LPI_FIRST		/* bytes: one per LPI INTID */
	mov	x5, x3
1:	str	xzr, [x5], #8
	subs	x4, x4, #8
	b.hi	1b
	ldr	x4, [x8, #LAB_A64_PB_LPI_BASE]
	sub	x4, x4, #LPI_FIRST
	add	x4, x3, x4
	ldr	x5, [x8, #LAB_A64_PB_LPI_PRIO]
	orr	x5, x5, #1			/* Enable */
	mov	x6, x11
2:	cbz	x6, 3f
	strb	w5, [x4], #1
	sub	x6, x6, #1
	b	2b
3:
	/* pending tables: zeroed, all of them (2^ID_BITS bits each) */
	ldr	x3, [x8, #LAB_A64_PB_PEND]
	ldr	x14, [x8, #LAB_A64_PB_PEND_STRIDE]
	mov	x6, #0
4:	cmp	x6, x12
	b.hs	6f
	madd	x5, x6, x14, x3
	mov	x4, #1
	lsl	x4, x4, x13
	lsr	x4, x4, #3
5:	str	xzr, [x5], #8
	subs	x4, x4, #8
	b.hi	5b
	add	x6, x6, #1
	b	4b
6:	dsb	ish				/* tables in RAM before the GIC reads them */

	/* redistributors: PROPBASER, PENDBASER, then EnableLPIs (the bases are
	 * ignored once LPIs are on) */
	ldr	x15, [x8, #LAB_A64_PB_GICR]
	ldr	x16, [x8, #LAB_A64_PB_GICR_STRIDE]
	ldr	x2, [x8, #LAB_A64_PB_PROP]
	orr	x2, x2, #GICR_BASER_ATTR
	sub	x4, x13, #1
	orr	x2, x2, x4			/* IDbits */
	mov	x6, #0
7:	cmp	x6, x12
	b.hs	8f
	madd	x5, x6, x16, x15		/* RD_base of vCPU x6 */
	ldr	x4, [x5, #GICR_TYPER]
	mov	x18, #LAB_A64_ITS_ERR_TYPER
	mov	x17, x4
	tbz	x4, #0, .Lits_fail		/* PLPIS */
	ubfx	x4, x4, #8, #16			/* Processor_Number */
	add	x7, x9, #LAB_TBL_VCPUS
	add	x7, x7, x6, lsl #8
	str	x4, [x7, #LAB_A64_VA_PROCNUM]
	str	x2, [x5, #GICR_PROPBASER]
	madd	x4, x6, x14, x3			/* this vCPU's pending table */
	orr	x4, x4, #GICR_BASER_ATTR
	str	x4, [x5, #GICR_PENDBASER]
	dsb	sy
	ldr	w4, [x5, #GICR_CTLR]
	orr	w4, w4, #1			/* EnableLPIs */
	str	w4, [x5, #GICR_CTLR]
	add	x6, x6, #1
	b	7b
8:
	/* distributor: KVM delivers nothing, LPIs included, without Group 1 */
	ldr	x5, [x8, #LAB_A64_PB_GICD]
	mov	w4, #GICD_CTLR_G1_ARE
	str	w4, [x5, #GICD_CTLR]
	ldr	x6, =ITS_POLL_LIMIT
9:	ldr	w4, [x5, #GICD_CTLR]
	tbz	w4, #31, 10f			/* RWP */
	subs	x6, x6, #1
	b.ne	9b
10:
	/* ITS: it must be disabled while its tables are given (it is at reset) */
	ldr	x5, [x8, #LAB_A64_PB_ITS]
	ldr	x4, [x5, #GITS_TYPER]
	mov	x18, #LAB_A64_ITS_ERR_TYPER
	mov	x17, x4
	tbz	x4, #0, .Lits_fail		/* Physical */
	ubfx	x6, x4, #4, #4
	cmp	x6, #7				/* ITT entries of 8 bytes, as the ITT slots assume */
	b.ne	.Lits_fail
	and	x16, x4, #GITS_TYPER_PTA	/* target by address or by processor number */

	/* GITS_BASERn: find the device and collection tables by type */
	mov	x18, #LAB_A64_ITS_ERR_BASER
	mov	x6, #0				/* n */
	mov	x7, #0				/* bit 1: devices done, bit 4: collections */
11:	cmp	x6, #8
	b.hs	14f
	add	x4, x5, #GITS_BASER
	add	x4, x4, x6, lsl #3
	ldr	x0, [x4]
	ubfx	x0, x0, #56, #3			/* Type */
	cmp	x0, #GITS_BASER_TYPE_DEV
	b.ne	12f
	ldr	x1, [x8, #LAB_A64_PB_DEVTAB]
	ldr	x2, [x8, #LAB_A64_PB_DEVTAB_BYTES]
	b	13f
12:	cmp	x0, #GITS_BASER_TYPE_COLL
	b.ne	15f
	ldr	x1, [x8, #LAB_A64_PB_COLTAB]
	ldr	x2, [x8, #LAB_A64_PB_COLTAB_BYTES]
13:	mov	x3, #1
	lsl	x3, x3, x0
	orr	x7, x7, x3
	lsr	x2, x2, #16
	sub	x2, x2, #1			/* Size: 64 KiB pages - 1 */
	orr	x1, x1, x2
	orr	x1, x1, #GITS_PAGE_64K
	orr	x1, x1, #GITS_SHARE_INNER
	mov	x2, #GITS_BASER_ATTR_HI
	orr	x1, x1, x2, lsl #48
	str	x1, [x4]
	ldr	x0, [x4]
	mov	x17, x0
	tbz	x0, #63, .Lits_fail		/* did not take it */
15:	add	x6, x6, #1
	b	11b
14:	mov	x17, x7
	cmp	x7, #((1 << GITS_BASER_TYPE_DEV) | (1 << GITS_BASER_TYPE_COLL))
	b.ne	.Lits_fail

	/* command queue, then enable */
	ldr	x15, [x8, #LAB_A64_PB_CMDQ]
	ldr	x2, [x8, #LAB_A64_PB_CMDQ_BYTES]
	lsr	x2, x2, #12
	sub	x2, x2, #1
	orr	x1, x15, x2
	orr	x1, x1, #GITS_SHARE_INNER
	mov	x2, #GITS_BASER_ATTR_HI
	orr	x1, x1, x2, lsl #48
	str	x1, [x5, #GITS_CBASER]
	ldr	w1, [x5, #GITS_CTLR]
	orr	w1, w1, #1
	str	w1, [x5, #GITS_CTLR]

	/* commands; x16 (PTA) is reused as the command index after this */
	ldr	x3, [x8, #LAB_A64_PB_GICR]
	ldr	x4, [x8, #LAB_A64_PB_GICR_STRIDE]
	mov	x14, x16
	mov	x16, #0
	mov	x6, #0
16:	cmp	x6, x12				/* MAPC ICID = vCPU, RDbase = its redistributor */
	b.hs	17f
	add	x7, x9, #LAB_TBL_VCPUS
	add	x7, x7, x6, lsl #8
	ldr	x1, [x7, #LAB_A64_VA_PROCNUM]
	cbz	x14, 18f
	madd	x1, x6, x4, x3			/* PTA: the RD_base address, in 64 KiB */
	lsr	x1, x1, #16
18:	lsl	x1, x1, #16
	orr	x1, x1, x6
	orr	x1, x1, #(1 << 63)
	mov	x0, #ITS_CMD_MAPC
	ITS_CMD	x0, xzr, x1
	add	x6, x6, #1
	b	16b
17:	ldr	x0, [x8, #LAB_A64_PB_NR_DEVICES]
	mov	x6, #0				/* device */
	mov	x13, #0				/* LPI k */
19:	cmp	x6, x0
	b.hs	21f
	ldr	x1, [x8, #LAB_A64_PB_DEVID_BASE]
	add	x17, x1, x6			/* DeviceID */
	ldr	x2, [x8, #LAB_A64_PB_ITT]
	ldr	x1, [x8, #LAB_A64_PB_ITT_STRIDE]
	madd	x2, x6, x1, x2
	orr	x2, x2, #(1 << 63)
	ldr	x1, [x8, #LAB_A64_PB_EVENT_BITS]
	sub	x1, x1, #1
	lsl	x18, x17, #32
	mov	x0, #ITS_CMD_MAPD
	orr	x0, x0, x18
	ITS_CMD	x0, x1, x2
	mov	x1, #0				/* event */
20:	ldr	x2, [x8, #LAB_A64_PB_EVENTS]
	cmp	x1, x2
	b.hs	22f
	ldr	x2, [x8, #LAB_A64_PB_LPI_BASE]
	add	x2, x2, x13			/* pINTID */
	orr	x2, x1, x2, lsl #32
	udiv	x7, x13, x12
	msub	x7, x7, x12, x13		/* ICID = k % vCPUs */
	mov	x0, #ITS_CMD_MAPTI
	orr	x0, x0, x18
	mov	x4, x7
	ITS_CMD	x0, x2, x4
	mov	x0, #ITS_CMD_INV
	orr	x0, x0, x18
	ITS_CMD	x0, x1, xzr
	add	x1, x1, #1
	add	x13, x13, #1
	b	20b
22:	ldr	x0, [x8, #LAB_A64_PB_NR_DEVICES]
	add	x6, x6, #1
	b	19b
21:	mov	x6, #0				/* SYNC each collection's target */
23:	cmp	x6, x12
	b.hs	24f
	add	x7, x9, #LAB_TBL_VCPUS
	add	x7, x7, x6, lsl #8
	ldr	x1, [x7, #LAB_A64_VA_PROCNUM]
	cbz	x14, 25f
	ldr	x3, [x8, #LAB_A64_PB_GICR]
	ldr	x4, [x8, #LAB_A64_PB_GICR_STRIDE]
	madd	x1, x6, x4, x3
	lsr	x1, x1, #16
25:	lsl	x1, x1, #16
	mov	x0, #ITS_CMD_SYNC
	ITS_CMD	x0, xzr, x1
	add	x6, x6, #1
	b	23b
24:	str	x16, [x8, #LAB_A64_PB_ITS_CMDS]
	dsb	ish				/* the commands in RAM before CWRITER moves */
	lsl	x1, x16, #5
	str	x1, [x5, #GITS_CWRITER]
	mov	x18, #LAB_A64_ITS_ERR_CREADR
	ldr	x6, =ITS_POLL_LIMIT
26:	ldr	x0, [x5, #GITS_CREADR]
	mov	x17, x0
	tbnz	x0, #0, .Lits_fail		/* Stalled */
	cmp	x0, x1
	b.eq	27f
	subs	x6, x6, #1
	b.eq	.Lits_fail
	b	26b
27:	mov	x0, #LAB_A64_ITS_READY
	stlr	x0, [x10]
	DOORBELL LAB_A64_DB_ITS_READY
	ret

	/* x18 = LAB_A64_ITS_ERR_*, x17 = the value behind it */
.Lits_fail:
	str	x18, [x8, #LAB_A64_PB_ITS_ERROR]
	str	x17, [x8, #LAB_A64_PB_ITS_DETAIL]
	mov	x0, #LAB_A64_ITS_FAILED
	stlr	x0, [x10]
	DOORBELL LAB_A64_DB_ITS_FAIL
	b	.Lpanic

/*
 * IRQ: one INTID per entry (a second pending one is taken right after the
 * ERET).  Acknowledge, count, EOI.  x0-x5 are saved on this vCPU's stack;
 * NZCV comes back with SPSR_EL1.  The delivery count is shared memory, so an
 * exclusive-access increment: an LPI moved to another collection could be
 * taken on another vCPU.
 */
.Lirq:
	stp	x0, x1, [sp, #-48]!
	stp	x2, x3, [sp, #16]
	stp	x4, x5, [sp, #32]
	mrs	x4, tpidr_el1
	mrs	x0, icc_iar1_el1
	and	x1, x0, #0xffffff
	INC64	x4, LAB_A64_VA_IRQS, x2
	cmp	x1, #INTID_SPURIOUS
	b.eq	.Lirq_spurious
	str	x1, [x4, #LAB_A64_VA_LAST_INTID]
	ldr	x2, [x4, #LAB_A64_VA_PLAT]
	ldr	x3, [x2, #LAB_A64_PB_LPI_BASE]
	subs	x1, x1, x3			/* k */
	b.lo	.Lirq_stray
	ldr	x3, [x2, #LAB_A64_PB_NR_DEVICES]
	ldr	x5, [x2, #LAB_A64_PB_EVENTS]
	mul	x3, x3, x5
	cmp	x1, x3
	b.hs	.Lirq_stray
	add	x2, x2, #LAB_A64_PB_DELIVERED
	add	x2, x2, x1, lsl #3
1:	ldxr	x3, [x2]
	add	x3, x3, #1
	stxr	w1, x3, [x2]
	cbnz	w1, 1b
.Lirq_eoi:
	msr	icc_eoir1_el1, x0
.Lirq_out:
	ldp	x4, x5, [sp, #32]
	ldp	x2, x3, [sp, #16]
	ldp	x0, x1, [sp], #48
	eret
.Lirq_stray:
	INC64	x4, LAB_A64_VA_STRAY, x2
	b	.Lirq_eoi
.Lirq_spurious:
	INC64	x4, LAB_A64_VA_SPURIOUS, x2
	b	.Lirq_out

	/* x0 = vector offset: record the exception, ring LAB_A64_DB_FAULT for good */
.Lfault:
	mrs	x1, tpidr_el1
	cbz	x1, .Learly_panic
	str	x0, [x1, #LAB_A64_VA_FAULT_VEC]
	mrs	x2, esr_el1
	str	x2, [x1, #LAB_A64_VA_FAULT_ESR]
	mrs	x2, elr_el1
	str	x2, [x1, #LAB_A64_VA_FAULT_ELR]
	mrs	x2, far_el1
	str	x2, [x1, #LAB_A64_VA_FAULT_FAR]
	mov	x19, x1
1:	DOORBELL LAB_A64_DB_FAULT
	b	1b

	.ltorg

	/* VBAR_EL1: 16 entries of 0x80 bytes; only an IRQ taken at EL1 on
	 * SP_EL1 is expected, anything else is a fault. */
	.balign 2048
.Lvectors:
	VFAULT	0x000
	VFAULT	0x080
	VFAULT	0x100
	VFAULT	0x180
	VFAULT	0x200
	.balign 0x80
	b	.Lirq				/* 0x280: IRQ, current EL, SP_EL1 */
	VFAULT	0x300
	VFAULT	0x380
	VFAULT	0x400
	VFAULT	0x480
	VFAULT	0x500
	VFAULT	0x580
	VFAULT	0x600
	VFAULT	0x680
	VFAULT	0x700
	VFAULT	0x780
	.balign 0x80
lab_a64_guest_end:

	.section .note.GNU-stack, "", @progbits
