// SPDX-License-Identifier: MIT
/*
 * Frame headers: name and size tables, sealing and checking.
 *
 * Byte order.  The header travels little-endian.  mig_frame_seal() leaves the
 * struct in WIRE order (ready to hand to sendmsg as is), and both check
 * functions take the struct in WIRE order, exactly as it came off the socket.
 * Converting to host order is the receiver's last step, after every check
 * passed (xport_conn_recv() does it before returning the header).  On a
 * little-endian host the two orders are the same bytes, which is why a
 * missing conversion would go unnoticed here; every field access below goes
 * through htole / le*toh so a big-endian host speaks the same wire format.
 */
#include <migrate/vm.h>
#include <migrate/wire.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * The streaming XXH3 state is only declared with XXH_STATIC_LINKING_ONLY,
 * and its layout is not part of libxxhash's ABI.  Inlining the
 * implementation makes the state we put on the stack the one our own code
 * was compiled against, whatever libxxhash.so is installed at run time.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define KiB (1U << 10)

struct frame_type_info {
	const char *name;
	uint32_t max_payload;
	uint32_t flags;        /* flags this type may carry */
};

/*
 * Limits are tight on purpose: the receiver checks `length` against them
 * before it allocates or reads anything, so a damaged or hostile header can
 * make us wait for at most this many bytes.  Only device state, sums, the
 * device manifest and post-copy's bitmap go beyond 64 KiB.
 */
static const struct frame_type_info frame_types[_MIG_FRAME_TYPE_END] = {
	[MIG_FRAME_HELLO]          = { "HELLO",          4 * KiB,       0 },
	[MIG_FRAME_AUTH_CHALLENGE] = { "AUTH_CHALLENGE", 4 * KiB,       0 },
	[MIG_FRAME_AUTH_RESPONSE]  = { "AUTH_RESPONSE",  4 * KiB,       0 },
	[MIG_FRAME_AUTH_OK]        = { "AUTH_OK",        4 * KiB,       0 },
	[MIG_FRAME_STREAM_HELLO]   = { "STREAM_HELLO",   4 * KiB,       0 },
	[MIG_FRAME_ERROR]          = { "ERROR",          4 * KiB,       0 },
	[MIG_FRAME_REQUEST]        = { "REQUEST",        64 * KiB,      0 },
	[MIG_FRAME_REPLY]          = { "REPLY",          64 * KiB,      0 },
	[MIG_FRAME_EVENT]          = { "EVENT",          64 * KiB,      0 },
	/* SETUP describes the VM and lists its devices. */
	[MIG_FRAME_SETUP]          = { "SETUP",          MIG_SETUP_MAX, 0 },
	/* READY: a reply, then the devices' session answers */
	[MIG_FRAME_READY]          = { "READY",          4 * KiB + MIG_SESSION_MAX, 0 },
	[MIG_FRAME_PAGES]          = { "PAGES",          MIG_PAGES_META_MAX,
				       MIG_FRAME_F_ZSTD | MIG_FRAME_F_LIVE },
	[MIG_FRAME_ROUND_END]      = { "ROUND_END",      4 * KiB,       0 },
	[MIG_FRAME_DEVICE_DATA]    = { "DEVICE_DATA",
				       sizeof(struct mig_device_data) + MIG_DEVICE_CHUNK_MAX,
				       MIG_FRAME_F_PRECOPY | MIG_FRAME_F_FINAL | MIG_FRAME_F_END },
	[MIG_FRAME_LOADED]         = { "LOADED",         4 * KiB,       0 },
	[MIG_FRAME_COMMIT]         = { "COMMIT",         4 * KiB,       0 },
	[MIG_FRAME_RUNNING]        = { "RUNNING",        4 * KiB,       0 },
	[MIG_FRAME_ABORT]          = { "ABORT",          4 * KiB,       0 },
	[MIG_FRAME_SUMS_REQUEST]   = { "SUMS_REQUEST",   4 * KiB,       0 },
	[MIG_FRAME_SUMS]           = { "SUMS",           MIG_SUMS_MAX * 8, 0 },
	[MIG_FRAME_OPEN]           = { "OPEN",           MIG_SESSION_MAX, 0 },
	[MIG_FRAME_OPENED]         = { "OPENED",         4 * KiB,       0 },
	[MIG_FRAME_TUNNEL_DATA]    = { "TUNNEL_DATA",    MIG_TUNNEL_CHUNK, 0 },
	[MIG_FRAME_TUNNEL_END]     = { "TUNNEL_END",     4 * KiB,       0 },
	[MIG_FRAME_HANDOVER]       = { "HANDOVER",       4 * KiB,       0 },
	/* a bit per guest page: 16 MiB is a 512 GiB guest */
	[MIG_FRAME_POSTCOPY]       = { "POSTCOPY",       MIG_FRAME_MAX, 0 },
	[MIG_FRAME_PAGE_REQUEST]   = { "PAGE_REQUEST",   4 * KiB,       0 },
	[MIG_FRAME_PC_RESUME]      = { "PC_RESUME",      MIG_FRAME_MAX, 0 },
};

static const struct frame_type_info *frame_type_info(uint16_t type)
{
	if (type >= _MIG_FRAME_TYPE_END || !frame_types[type].name)
		return NULL;
	return &frame_types[type];
}

const char *mig_frame_type_to_string(uint16_t type)
{
	const struct frame_type_info *t = frame_type_info(type);

	return t ? t->name : NULL;
}

uint32_t mig_frame_max_payload(uint16_t type)
{
	const struct frame_type_info *t = frame_type_info(type);

	return t ? t->max_payload : 0;
}

/* Checksum of a header in wire order (its checksum field is ignored) and the
 * payload.  Seeding with seq makes a frame replayed at another position fail
 * even if the seq check were bypassed. */
static uint64_t frame_checksum(const struct mig_frame_hdr *wire, const struct iovec *iov,
			       int iovcnt)
{
	struct mig_frame_hdr h = *wire;
	XXH3_state_t st;

	h.checksum = 0;
	XXH3_INITSTATE(&st);    /* reset_withSeed reads the old seed first */
	XXH3_64bits_reset_withSeed(&st, le64toh(wire->seq));
	XXH3_64bits_update(&st, &h, sizeof(h));
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			XXH3_64bits_update(&st, iov[i].iov_base, iov[i].iov_len);
	return XXH3_64bits_digest(&st);
}

void mig_frame_seal(struct mig_frame_hdr *h, uint16_t type, uint32_t flags, uint64_t seq,
		    const struct iovec *iov, int iovcnt)
{
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	mig_frame_header(h, type, flags, seq, len);
	h->checksum = htole64(frame_checksum(h, iov, iovcnt));
}

void mig_frame_header(struct mig_frame_hdr *h, uint16_t type, uint32_t flags, uint64_t seq,
		      size_t len)
{
	/* A payload over 4 GiB cannot be described; the peer's length check
	 * rejects whatever the truncated value says long before that. */
	h->magic = htole32(MIG_WIRE_MAGIC);
	h->version = htole16(MIG_WIRE_VERSION);
	h->type = htole16(type);
	h->flags = htole32(flags);
	h->length = htole32((uint32_t)len);
	h->seq = htole64(seq);
	h->checksum = 0;
}

int mig_frame_check_header(const struct mig_frame_hdr *h, uint64_t expect_seq,
			   struct mig_error *err)
{
	uint32_t magic = le32toh(h->magic), flags = le32toh(h->flags);
	uint32_t length = le32toh(h->length);
	uint16_t version = le16toh(h->version), type = le16toh(h->type);
	uint64_t seq = le64toh(h->seq);
	const struct frame_type_info *t;

	/* Order matters: magic first (a stranger's bytes say nothing else we
	 * could trust), then version (a newer peer may use types we lack). */
	if (magic != MIG_WIRE_MAGIC)
		return mig_error_set(err, -EPROTO,
				     "frame header: bad magic 0x%08x, expected 0x%08x "
				     "(not a migratectl peer?)", magic, MIG_WIRE_MAGIC);
	if (version != MIG_WIRE_VERSION)
		return mig_error_set(err, -EPROTO,
				     "frame header: version mismatch: peer speaks protocol "
				     "version %u, this build speaks %u; upgrade the older side",
				     version, MIG_WIRE_VERSION);
	t = frame_type_info(type);
	if (!t)
		return mig_error_set(err, -EBADMSG,
				     "frame header: %s frame type %u (seq %llu)",
				     type == MIG_FRAME_INVALID ? "invalid" : "unknown",
				     type, (unsigned long long)seq);
	if (flags & ~(uint32_t)MIG_FRAME_F_KNOWN)
		return mig_error_set(err, -EBADMSG,
				     "frame header: unknown flags 0x%x on %s frame seq %llu "
				     "(known: 0x%x)", flags & ~(uint32_t)MIG_FRAME_F_KNOWN,
				     t->name, (unsigned long long)seq, MIG_FRAME_F_KNOWN);
	if (flags & ~(t->flags | MIG_FRAME_F_SEALED))
		return mig_error_set(err, -EBADMSG,
				     "frame header: flags 0x%x are not valid on %s frames "
				     "(seq %llu)", flags & ~(t->flags | MIG_FRAME_F_SEALED), t->name,
				     (unsigned long long)seq);
	if (length > t->max_payload)
		return mig_error_set(err, -EMSGSIZE,
				     "frame header: length %u of %s frame seq %llu exceeds "
				     "the limit of %u bytes for that type", length, t->name,
				     (unsigned long long)seq, t->max_payload);
	if (seq != expect_seq)
		return mig_error_set(err, -EPROTO,
				     "frame header: seq %llu of %s frame, expected %llu "
				     "(frame %s)", (unsigned long long)seq, t->name,
				     (unsigned long long)expect_seq,
				     seq < expect_seq ? "replayed" : "out of order or lost");
	return 0;
}

int mig_frame_check_payload(const struct mig_frame_hdr *h, const void *payload,
			    struct mig_error *err)
{
	struct iovec iov = {
		.iov_base = (void *)payload,
		.iov_len = le32toh(h->length),
	};
	uint64_t want = le64toh(h->checksum);
	uint64_t got = frame_checksum(h, &iov, iov.iov_len ? 1 : 0);
	const char *name = mig_frame_type_to_string(le16toh(h->type));

	if (got != want)
		return mig_error_set(err, -EBADMSG,
				     "checksum mismatch on %s frame seq %llu: header says "
				     "0x%016llx, payload of %u bytes hashes to 0x%016llx "
				     "(data damaged in transit)", name ? name : "unknown",
				     (unsigned long long)le64toh(h->seq),
				     (unsigned long long)want, (unsigned)iov.iov_len,
				     (unsigned long long)got);
	return 0;
}
