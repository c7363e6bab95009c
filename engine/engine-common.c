// SPDX-License-Identifier: MIT
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <xxhash.h>

#include <migrate/aead.h>

#include "util.h"
#include "engine-internal.h"

static const char *const phase_names[_MIG_PHASE_MAX] = {
	[MIG_PHASE_INVALID] = NULL,
	[MIG_PHASE_SETUP] = "setup",
	[MIG_PHASE_PRECOPY] = "precopy",
	[MIG_PHASE_STOP_COPY] = "stop_copy",
	[MIG_PHASE_COMMIT] = "commit",
	[MIG_PHASE_DONE] = "done",
	[MIG_PHASE_ROLLBACK] = "rollback",
	[MIG_PHASE_POSTCOPY] = "postcopy",
};

/*
 * The one table of migration phase arcs (docs/phases.md).  Before COMMIT
 * every phase may fall back to ROLLBACK (the source resumes); COMMIT may
 * only roll back when the destination said it did not start the VM.
 * POSTCOPY (the VM runs on the destination, pages still coming) never
 * rolls back: each side holds a half of the VM.
 */
#define P(from, to) [(from) * _MIG_PHASE_MAX + (to)] = true
static const bool phase_arcs[_MIG_PHASE_MAX * _MIG_PHASE_MAX] = {
	P(MIG_PHASE_SETUP, MIG_PHASE_PRECOPY),
	P(MIG_PHASE_SETUP, MIG_PHASE_ROLLBACK),
	P(MIG_PHASE_PRECOPY, MIG_PHASE_STOP_COPY),
	P(MIG_PHASE_PRECOPY, MIG_PHASE_ROLLBACK),
	P(MIG_PHASE_STOP_COPY, MIG_PHASE_COMMIT),
	P(MIG_PHASE_STOP_COPY, MIG_PHASE_ROLLBACK),
	P(MIG_PHASE_COMMIT, MIG_PHASE_DONE),
	P(MIG_PHASE_COMMIT, MIG_PHASE_ROLLBACK),
	P(MIG_PHASE_COMMIT, MIG_PHASE_POSTCOPY),
	P(MIG_PHASE_POSTCOPY, MIG_PHASE_DONE),
};
#undef P

bool mig_phase_arc_allowed(enum mig_phase from, enum mig_phase to)
{
	if ((unsigned)from >= _MIG_PHASE_MAX || (unsigned)to >= _MIG_PHASE_MAX)
		return false;
	return phase_arcs[from * _MIG_PHASE_MAX + to];
}

MIG_STRING_TABLE_TO(mig_phase, enum mig_phase, phase_names)

/* The words of the control payloads' enums, for every program and log. */
static const char *const checksum_names[_MIG_CHECKSUM_MAX] = {
	[MIG_CHECKSUM_PAGES] = "pages",
	[MIG_CHECKSUM_FRAMES] = "frames",
	[MIG_CHECKSUM_AUTO] = "auto",
};
static const char *const result_names[] = {
	[MIG_RESULT_COMPLETED] = "completed",
	[MIG_RESULT_FAILED] = "failed",
	[MIG_RESULT_CANCELLED] = "cancelled",
};
static const char *const owner_names[] = {
	[MIG_OWNER_SOURCE] = "source",
	[MIG_OWNER_DESTINATION] = "destination",
	[MIG_OWNER_NONE] = "none",
};
static const char *const vm_state_names[] = {
	[MIG_VM_RUNNING] = "running",
	[MIG_VM_PAUSED] = "paused",
	[MIG_VM_MIGRATING] = "migrating",
	[MIG_VM_HELD] = "held",
};
static const char *const side_names[] = {
	[MIG_SIDE_SOURCE] = "source",
	[MIG_SIDE_DESTINATION] = "destination",
};
static const char *const migration_state_names[] = {
	[MIG_MIGRATION_RUNNING] = "running",
	[MIG_MIGRATION_HELD] = "held",
};

MIG_STRING_TABLE(mig_checksum, enum mig_checksum, checksum_names)
MIG_STRING_TABLE_TO(mig_result, uint32_t, result_names)
MIG_STRING_TABLE_TO(mig_owner, uint32_t, owner_names)
MIG_STRING_TABLE_TO(mig_vm_state, uint32_t, vm_state_names)
MIG_STRING_TABLE_TO(mig_side, uint32_t, side_names)
MIG_STRING_TABLE_TO(mig_migration_state, uint32_t, migration_state_names)

void mig_ctl_auth_mac(const void *key, size_t key_len, const char *label,
		      const uint8_t first[XPORT_NONCE_LEN], const uint8_t second[XPORT_NONCE_LEN],
		      uint8_t out[XPORT_MAC_LEN])
{
	struct iovec iov[] = {
		{ (void *)label, strlen(label) },
		{ (void *)first, XPORT_NONCE_LEN },
		{ (void *)second, XPORT_NONCE_LEN },
	};

	xport_hmac(key, key_len, iov, 3, out);
}

int mig_ctl_session_keys(const void *key, size_t key_len,
			 const uint8_t agent_nonce[XPORT_NONCE_LEN],
			 const uint8_t client_nonce[XPORT_NONCE_LEN], bool client,
			 struct xport_aead **ret, struct mig_error *err)
{
	uint8_t salt[2 * XPORT_NONCE_LEN];

	memcpy(salt, agent_nonce, XPORT_NONCE_LEN);
	memcpy(salt + XPORT_NONCE_LEN, client_nonce, XPORT_NONCE_LEN);
	return xport_aead_new(key, key_len, salt, sizeof(salt), "migratectl control", NULL, 0,
			      client, ret, err);
}

/* Sums of `count` runs of `per` pages from `first`: ours, the peer's through
 * fetch; how many differ, the first `nfirst` indexes in idx. */
static int differing(const uint8_t *ram, uint64_t first, uint32_t count, uint32_t per,
		     mig_sums_fetch fetch, void *ctx, uint32_t *idx, int nfirst)
{
	uint64_t *ours = malloc((size_t)count * 2 * sizeof(*ours)), *theirs;
	int r, n = 0;

	if (!ours)
		return -ENOMEM;
	theirs = ours + count;
	r = fetch(ctx, first, count, per, theirs);
	if (r >= 0) {
		mig_ram_sums(ram, first, count, per, ours);
		for (uint32_t i = 0; i < count; i++) {
			if (ours[i] == theirs[i])
				continue;
			if (n < nfirst)
				idx[n] = i;
			n++;
		}
	}
	free(ours);
	return r < 0 ? r : n;
}

int mig_where_ram_differs(const uint8_t *ram, uint64_t nr_pages, const uint64_t *final_set,
			  mig_sums_fetch fetch, void *ctx, char *out, size_t n)
{
	uint64_t chunks = nr_pages / MIG_SUMS_PER_MAX, bad = 0, first, bad_chunk[8];
	uint32_t idx[8], page[8], span;
	int pages, listed, in_final = 0;
	size_t len;

	/* whole 2 MiB chunks first, at most MIG_SUMS_MAX per request; a short
	 * tail is looked at page by page */
	for (uint64_t c0 = 0; c0 < chunks; c0 += MIG_SUMS_MAX) {
		uint32_t cnt = chunks - c0 < MIG_SUMS_MAX ? (uint32_t)(chunks - c0) : MIG_SUMS_MAX;
		int b = differing(ram, c0 * MIG_SUMS_PER_MAX, cnt, MIG_SUMS_PER_MAX, fetch, ctx,
				  idx, 8);

		if (b < 0)
			return b;
		for (int i = 0; i < b && bad + (uint64_t)i < 8; i++)
			bad_chunk[bad + (uint64_t)i] = c0 + idx[i];
		bad += (uint64_t)b;
	}
	first = (bad ? bad_chunk[0] : chunks) * MIG_SUMS_PER_MAX;
	if (first >= nr_pages) {
		snprintf(out, n, "no page differs, yet the digests do");
		return 0;
	}
	span = nr_pages - first < MIG_SUMS_PER_MAX ? (uint32_t)(nr_pages - first) :
						      MIG_SUMS_PER_MAX;
	pages = differing(ram, first, span, 1, fetch, ctx, page, 8);
	if (pages < 0)
		return pages;
	if (!pages) {
		if (bad)
			snprintf(out, n, "%llu of %llu 2 MiB chunks differ, yet no page of the "
				 "first does", (unsigned long long)bad, (unsigned long long)chunks);
		else
			snprintf(out, n, "no page differs, yet the digests do");
		return 0;
	}
	len = (size_t)snprintf(out, n, "%llu of %llu 2 MiB chunks differ",
			       (unsigned long long)bad, (unsigned long long)chunks);
	/* where they start tells whose memory it is (a vCPU's share, say) */
	for (uint64_t i = 0; i < bad && i < 8 && len < n; i++)
		len += (size_t)snprintf(out + len, n - len, "%s%#llx", i ? " " : ", from pages ",
					(unsigned long long)(bad_chunk[i] * MIG_SUMS_PER_MAX));
	if (bad > 8 && len < n)
		len += (size_t)snprintf(out + len, n - len, " ...");
	if (len < n)
		len += (size_t)snprintf(out + len, n - len, "; %d page%s of %s:", pages,
					pages == 1 ? "" : "s", bad ? "the first" : "the tail");
	listed = pages < 8 ? pages : 8;
	for (int i = 0; i < listed && len < n; i++) {
		uint64_t p = first + page[i];
		bool fin = final_set && (final_set[p / 64] >> (p % 64) & 1);

		in_final += fin;
		len += (size_t)snprintf(out + len, n - len, " %#llx%s", (unsigned long long)p,
					fin ? "*" : "");
	}
	if (pages > listed && len < n)
		len += (size_t)snprintf(out + len, n - len, " ...");
	/* Which of them the final round carried splits the causes: a page it
	 * sent while no vCPU ran arrived wrong; one it did not was last
	 * copied while the guest ran, so a write to it went unreported. */
	if (final_set && len < n)
		snprintf(out + len, n - len, "%s", !in_final ? " (none was dirty at the final sync)" :
			 in_final == listed ? " (all sent in the final round)" :
			 " (*: sent in the final round)");
	return 0;
}

/* Post-copy's RAM digest: each page's XXH3-128, seeded with its number,
 * summed word by word, so pages may be counted in any order and from any
 * thread.  A page counted twice, or missed, shows. */
void mig_pc_digest_page(uint64_t sum[2], uint64_t pfn, const void *page)
{
	XXH128_hash_t h = XXH3_128bits_withSeed(page, MIG_PAGE_SIZE, pfn);

	__atomic_fetch_add(&sum[0], h.high64, __ATOMIC_RELAXED);
	__atomic_fetch_add(&sum[1], h.low64, __ATOMIC_RELAXED);
}

int mig_pc_digest_ram(const uint8_t *ram, uint64_t nr_pages, const uint64_t *skip,
		      const atomic_bool *stop, uint64_t sum[2])
{
	uint64_t hi = 0, lo = 0;

	for (uint64_t pfn = 0; pfn < nr_pages; pfn++) {
		XXH128_hash_t h;

		if (skip && (skip[pfn / 64] >> (pfn % 64) & 1))
			continue;
		if (stop && pfn % 4096 == 0 && atomic_load(stop))
			return -ECANCELED;
		h = XXH3_128bits_withSeed(ram + pfn * MIG_PAGE_SIZE, MIG_PAGE_SIZE, pfn);
		hi += h.high64;
		lo += h.low64;
	}
	sum[0] += hi;
	sum[1] += lo;
	return 0;
}
