// SPDX-License-Identifier: MIT
/*
 * The PAGES frame's format in one place (docs/protocol.md §6.4): what the
 * source puts in a frame's meta for a batch of guest pages, and what the
 * destination checks of a frame's meta before it touches guest RAM.  The
 * engines keep only where the bytes go (their rings, their RAM).  Also
 * the DEVICE_DATA header's own checks (§6.6), before any device sees it.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <migrate/wire.h>
#include <migrate/wire-order.h>

#define PAGE ((uint64_t)MIG_PAGE_SIZE)

bool mig_page_is_zero(const void *page)
{
	const uint64_t *w = page;

	for (unsigned i = 0; i < PAGE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

int mig_pages_encode(const uint8_t *ram, const uint64_t *pfns, unsigned count, uint64_t seq,
		     bool sums, struct mig_page_ent *ent, struct iovec *runs, int *ret_nruns,
		     uint8_t *gather, mig_page_xform_fn xf, void *xf_ctx)
{
	uint8_t *tag = (uint8_t *)(ent + count);
	unsigned nz = 0;
	int nruns = 0;

	for (unsigned i = 0; i < count; i++) {
		const uint8_t *page = ram + pfns[i] * PAGE;
		uint64_t flags = 0;

		/* without a hook, a zero page needs no copy */
		if (!xf && mig_page_is_zero(page)) {
			ent[i] = (struct mig_page_ent){ htole64(pfns[i] | MIG_PAGE_ZERO), 0 };
			continue;
		}
		if (gather) {
			/* the copy is what goes, and what the sum covers */
			uint8_t *copy = gather + (size_t)nz * PAGE;

			memcpy(copy, page, PAGE);
			if (xf) {
				int r = xf(xf_ctx, pfns[i], copy, tag);

				if (r < 0)
					return r;
				if (r > 0) {
					flags = MIG_PAGE_TAGGED;
					tag += MIG_PAGE_TAG_SIZE;
				}
			}
			page = copy;
		}
		if (xf && !flags && mig_page_is_zero(page)) {
			ent[i] = (struct mig_page_ent){ htole64(pfns[i] | MIG_PAGE_ZERO), 0 };
			continue;
		}
		if (!gather) {
			if (nruns && (const uint8_t *)runs[nruns - 1].iov_base +
				     runs[nruns - 1].iov_len == page)
				runs[nruns - 1].iov_len += PAGE;
			else
				runs[nruns++] = (struct iovec){ (void *)page, PAGE };
		}
		ent[i] = (struct mig_page_ent){ htole64(pfns[i] | flags),
						htole64(sums ? mig_page_sum(page, seq, i) : 0) };
		nz++;
	}
	if (ret_nruns)
		*ret_nruns = nruns;
	return (int)nz;
}

size_t mig_pages_meta_len(const struct mig_page_ent *ent, unsigned count)
{
	size_t n = sizeof(struct mig_pages_hdr) + (size_t)count * sizeof(*ent);

	for (unsigned i = 0; i < count; i++)
		if (le64toh(ent[i].page) & MIG_PAGE_TAGGED)   /* as encoded: wire order */
			n += MIG_PAGE_TAG_SIZE;
	return n;
}

int mig_pages_meta_check(const void *meta, uint32_t length, uint32_t flags, uint32_t round,
			 uint64_t nr_pages, unsigned stream, struct mig_pages_hdr *ret,
			 struct mig_page_ent *ent, uint8_t *tags, struct mig_error *err)
{
	struct mig_pages_hdr ph;
	unsigned zeros = 0, tagged = 0;
	size_t nz, ents;

	if (length < sizeof(ph))
		return mig_error_set(err, -EBADMSG, "PAGES frame of %u bytes on stream %u", length,
				     stream);
	memcpy(&ph, meta, sizeof(ph));
	mig_wire_le(&mig_wl_pages_hdr, &ph, 1);
	if (ph.count == 0 || ph.count > MIG_PAGES_MAX)
		return mig_error_set(err, -EBADMSG, "PAGES frame with %u pages on stream %u: 1 to "
				     "%u allowed", ph.count, stream, MIG_PAGES_MAX);
	if (ph.zero_count > ph.count)
		return mig_error_set(err, -EBADMSG, "PAGES frame says %u of its %u pages are zero",
				     ph.zero_count, ph.count);
	nz = ph.count - ph.zero_count;
	ents = sizeof(ph) + (size_t)ph.count * sizeof(*ent);
	if (length < ents)
		return mig_error_set(err, -EBADMSG, "PAGES frame length %u does not match its %u "
				     "pages", length, ph.count);
	if (ph.round != round)
		return mig_error_set(err, -EPROTO, "PAGES frame of round %u on stream %u during "
				     "round %u", ph.round, stream, round);
	memcpy(ent, (const uint8_t *)meta + sizeof(ph), (size_t)ph.count * sizeof(*ent));
	mig_wire_le(&mig_wl_page_ent, ent, ph.count);
	for (unsigned i = 0; i < ph.count; i++) {
		uint64_t pfn = ent[i].page & ~MIG_PAGE_FLAGS;

		zeros += !!(ent[i].page & MIG_PAGE_ZERO);
		tagged += !!(ent[i].page & MIG_PAGE_TAGGED);
		if ((ent[i].page & MIG_PAGE_FLAGS) == MIG_PAGE_FLAGS)
			return mig_error_set(err, -EBADMSG, "page %#llx is flagged both zero and "
					     "tagged", (unsigned long long)pfn);
		if (pfn >= nr_pages)
			return mig_error_set(err, -EBADMSG, "page %#llx is outside the guest's %llu "
					     "pages", (unsigned long long)pfn,
					     (unsigned long long)nr_pages);
	}
	if (zeros != ph.zero_count)
		return mig_error_set(err, -EBADMSG, "PAGES frame says %u zero pages, lists %u",
				     ph.zero_count, zeros);
	if (length != ents + (size_t)tagged * MIG_PAGE_TAG_SIZE)
		return mig_error_set(err, -EBADMSG, "PAGES frame length %u does not match its %u "
				     "pages, %u of them tagged", length, ph.count, tagged);
	if (tagged && !tags)
		return mig_error_set(err, -EPROTO, "PAGES frame with %u tagged pages, and no "
				     "device here takes a page's tag", tagged);
	if (tagged)
		memcpy(tags, (const uint8_t *)meta + ents, (size_t)tagged * MIG_PAGE_TAG_SIZE);
	if (flags & MIG_FRAME_F_ZSTD) {
		if (!nz || ph.data_len == 0 || ph.data_len > nz * PAGE)
			return mig_error_set(err, -EBADMSG, "zstd PAGES data of %u bytes for %zu "
					     "pages", ph.data_len, nz);
		if (!HAVE_ZSTD)
			return mig_error_set(err, -ENOTSUP, "zstd frame, but this build has no "
					     "zstd");
	} else if (ph.data_len != nz * PAGE) {
		return mig_error_set(err, -EBADMSG, "raw PAGES data of %u bytes for %zu pages",
				     ph.data_len, nz);
	}
	*ret = ph;
	return 0;
}

int mig_device_data_check(const void *payload, uint32_t length, uint32_t round, unsigned stream,
			  struct mig_device_data *ret, struct mig_error *err)
{
	struct mig_device_data dd;

	if (length < sizeof(dd))
		return mig_error_set(err, -EBADMSG, "DEVICE_DATA frame of %u bytes on stream %u",
				     length, stream);
	memcpy(&dd, payload, sizeof(dd));
	mig_wire_le(&mig_wl_device_data, &dd, 1);
	if (dd.len != length - sizeof(dd))
		return mig_error_set(err, -EBADMSG, "DEVICE_DATA frame of %u bytes says it "
				     "carries %u bytes of state", length, dd.len);
	if (dd.round != round)
		return mig_error_set(err, -EPROTO, "DEVICE_DATA of round %u on stream %u during "
				     "round %u", dd.round, stream, round);
	*ret = dd;
	return 0;
}
