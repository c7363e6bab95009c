/* SPDX-License-Identifier: MIT */
/* The VMM's table in guest RAM (lab-abi.h), the same on every
 * architecture: its header and each vCPU's inputs. */
#ifndef LAB_TABLE_H
#define LAB_TABLE_H

#include <stdint.h>

/* One vCPU's share of the workload; ticks_per_page in ticks of the
 * counter the guest paces itself by (x86 the TSC, arm64 CNTVCT). */
struct lab_work {
	uint64_t region;            /* guest address of its first page */
	uint64_t region_pages, wss_pages, pattern, seed, ticks_per_page;
};

/* The header (magic, version, nr_vcpus) and every vCPU's area at t,
 * zeroed first (the guest's outputs with them); the rest of the header is
 * left as it is. */
void lab_table_write(uint8_t *t, unsigned nr_vcpus, const struct lab_work *work);

#endif
