// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a receiver's checks of frames, as a stream of bytes
 * from a peer (docs/chaos.md, "Fuzzing").  The input is what the socket
 * gives: a 32-byte header, `length` bytes of payload, the next header ...
 * Each frame goes through the checks in the order xport_conn_recv() runs
 * them (the header before a payload byte is read, then the checksum), and
 * then through the payload checks of the part that takes a frame of its
 * type: a PAGES frame's meta, a DEVICE_DATA header, an ERROR message, a
 * REQUEST as the agent dispatches it.
 *
 * The checksum is no defence against a hostile peer, which can compute it,
 * so the payload checks run whether it matched or not; a header the
 * receiver refuses ends the stream, as it ends the connection.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/agent.h>
#include <migrate/wire.h>

#include "fuzz.h"

static void check_payload(const struct mig_frame_hdr *wire, const uint8_t *p, uint32_t len)
{
	/* Fixed copies, so an overread shows up as one to AddressSanitizer. */
	static struct mig_page_ent ent[MIG_PAGES_MAX];
	static uint8_t tags[MIG_PAGES_MAX * MIG_PAGE_TAG_SIZE];
	uint32_t flags = le32toh(wire->flags);
	struct mig_error err = { 0 };
	struct mig_pages_hdr ph;
	struct mig_device_data dd;
	struct mig_error_msg em;
	struct agent_request rq;

	switch (le16toh(wire->type)) {
	case MIG_FRAME_PAGES:
		/* a 64 MiB guest in round 1, with and without page hooks */
		if (mig_pages_meta_check(p, len, flags, 1, FUZZ_GUEST_PAGES, 0, &ph, ent, tags,
					 &err) == 0) {
			FUZZ_ASSERT(ph.count >= 1 && ph.count <= MIG_PAGES_MAX);
			FUZZ_ASSERT(ph.zero_count <= ph.count);
			for (unsigned i = 0; i < ph.count; i++)
				FUZZ_ASSERT((ent[i].page & ~MIG_PAGE_FLAGS) < FUZZ_GUEST_PAGES);
		}
		fuzz_error_ok(&err);
		mig_error_clear(&err);
		mig_pages_meta_check(p, len, flags, 1, FUZZ_GUEST_PAGES, 0, &ph, ent, NULL, &err);
		fuzz_error_ok(&err);
		break;
	case MIG_FRAME_DEVICE_DATA:
		if (mig_device_data_check(p, len, 1, 0, &dd, &err) == 0)
			FUZZ_ASSERT(sizeof(dd) + (size_t)dd.len == len);
		fuzz_error_ok(&err);
		break;
	case MIG_FRAME_ERROR:
		mig_error_msg_parse(p, len, &em, -EPROTO);
		FUZZ_ASSERT(strlen(em.msg) < sizeof(em.msg));
		break;
	default:
		break;
	}
	mig_error_clear(&err);
	/* the agent takes any frame after its handshake this way */
	if (agent_request_parse(le16toh(wire->type), p, len, &rq, &err) == 0)
		FUZZ_ASSERT(rq.body == p + sizeof(struct mig_request) &&
			    rq.body_len == len - sizeof(struct mig_request));
	fuzz_error_ok(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t seq = 1;

	while (size >= sizeof(struct mig_frame_hdr)) {
		struct mig_error err = { 0 };
		struct mig_frame_hdr h;
		uint8_t *payload;
		uint32_t len;

		memcpy(&h, data, sizeof(h));
		data += sizeof(h);
		size -= sizeof(h);
		if (mig_frame_check_header(&h, seq, &err) < 0) {
			fuzz_error_ok(&err);
			break;
		}
		len = le32toh(h.length);
		FUZZ_ASSERT(len <= mig_frame_max_payload(le16toh(h.type)));
		if (len > size)
			break;          /* the peer stopped mid-frame */
		/* exactly the payload, in a buffer of its own, as the receiver has it */
		payload = malloc(len ? len : 1);
		FUZZ_ASSERT(payload);
		memcpy(payload, data, len);
		data += len;
		size -= len;
		if (mig_frame_check_payload(&h, payload, &err) < 0)
			fuzz_error_ok(&err);
		check_payload(&h, payload, len);
		free(payload);
		seq++;
	}
	return 0;
}
