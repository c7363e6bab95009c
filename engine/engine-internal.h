/* SPDX-License-Identifier: MIT */
/* Shared by the two engines (engine/): what neither shows outside. */
#ifndef ENGINE_INTERNAL_H
#define ENGINE_INTERNAL_H

#include <migrate/engine.h>

#define MIG_BATCH_PAGES MIG_PAGES_MAX

/* Post-copy's order-free digest of guest RAM (docs/protocol.md §6.4): add
 * one page (atomically), or every page whose bit is clear in skip (NULL:
 * all); -ECANCELED when stop is set. */
void mig_pc_digest_page(uint64_t sum[2], uint64_t pfn, const void *page);
int mig_pc_digest_ram(const uint8_t *ram, uint64_t nr_pages, const uint64_t *skip,
		      const atomic_bool *stop, uint64_t sum[2]);

#endif
