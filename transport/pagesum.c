// SPDX-License-Identifier: MIT
/*
 * The checksum of one page of PAGES data: XXH3-64 seeded with the frame's
 * seq and the page's place in the frame.  It runs over every byte a
 * migration moves, on both sides, so it goes through libxxhash's x86
 * dispatcher, which picks the widest vector unit the CPU has (AVX2 runs it
 * about twice as fast as the SSE2 baseline here).
 */
#include <migrate/wire.h>

#include <xxhash.h>
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#endif

uint64_t mig_page_sum(const void *page, uint64_t seq, unsigned index)
{
	return XXH3_64bits_withSeed(page, MIG_PAGE_SIZE, seq * MIG_PAGES_MAX + index);
}

void mig_ram_sums(const uint8_t *ram, uint64_t first, uint32_t count, uint32_t per,
		  uint64_t *out)
{
	for (uint32_t i = 0; i < count; i++)
		out[i] = XXH3_64bits(ram + (first + (uint64_t)i * per) * MIG_PAGE_SIZE,
				     (size_t)per * MIG_PAGE_SIZE);
}
