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

#endif
