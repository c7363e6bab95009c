/* SPDX-License-Identifier: MIT */
/*
 * The migratectl wire format (docs/protocol.md).  Every byte between
 * migratectl and an agent, and between two agents, travels in frames:
 * a fixed 32-byte little-endian header, then `length` payload bytes.
 * The checksum (XXH3-64, seeded with the frame's seq) covers the header with
 * the checksum field zeroed and the payload.  0 is never a valid type.
 */
#ifndef MIGRATE_WIRE_H
#define MIGRATE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <migrate/error.h>

/* Frame headers pass through htole/le*toh; payload structs through
 * mig_wire_le() (wire-order.h), so a big-endian host speaks the same bytes. */

#define MIG_WIRE_MAGIC      0x3146474dU   /* "MGF1" as little-endian bytes */
#define MIG_WIRE_VERSION    16
#define MIG_FRAME_MAX       (16U << 20)   /* hard limit on any payload */
#define MIG_SETUP_MAX       (512U << 10)  /* SETUP: its header and device manifest */

enum mig_frame_type {
	MIG_FRAME_INVALID = 0,
	/* connection setup, any connection */
	MIG_FRAME_HELLO = 1,          /* struct mig_hello */
	MIG_FRAME_AUTH_CHALLENGE = 2, /* struct mig_auth_challenge (agent -> client) */
	MIG_FRAME_AUTH_RESPONSE = 3,  /* struct mig_auth_response (client -> agent) */
	MIG_FRAME_AUTH_OK = 4,        /* struct mig_auth_proof (agent proves it holds the key too) */
	MIG_FRAME_STREAM_HELLO = 5,   /* struct mig_stream_hello: first frame of a migration stream */
	MIG_FRAME_ERROR = 6,          /* struct mig_error_msg */
	/* control: migratectl <-> agent */
	MIG_FRAME_REQUEST = 16,       /* struct mig_request + body */
	MIG_FRAME_REPLY = 17,         /* struct mig_reply + body */
	MIG_FRAME_EVENT = 18,         /* struct mig_event: progress of a migration */
	/* migration: source agent <-> destination agent */
	MIG_FRAME_SETUP = 32,
	MIG_FRAME_READY = 33,
	MIG_FRAME_PAGES = 34,
	MIG_FRAME_ROUND_END = 35,
	MIG_FRAME_DEVICE_DATA = 36,   /* struct mig_device_data + a chunk of one device's state */
	MIG_FRAME_LOADED = 37,
	MIG_FRAME_COMMIT = 38,
	MIG_FRAME_RUNNING = 39,
	MIG_FRAME_ABORT = 40,
	MIG_FRAME_SUMS_REQUEST = 41,  /* struct mig_sums_request: after LOADED, digests differ */
	MIG_FRAME_SUMS = 42,          /* the sums asked for, u64 each */
	MIG_FRAME_OPEN = 43,          /* source: its devices' open data (mig_vm_session_pack) */
	MIG_FRAME_OPENED = 44,        /* struct mig_reply: the destination took it */
	/* a tunnel stream (docs/protocol.md §11): bytes of the connection it
	 * carries, and the end of one direction of it */
	MIG_FRAME_TUNNEL_DATA = 45,
	MIG_FRAME_TUNNEL_END = 46,
	/* same-host hand-over: struct mig_handover, with the memfd of guest
	 * RAM attached (SCM_RIGHTS) to its bytes (docs/protocol.md §6.3) */
	MIG_FRAME_HANDOVER = 47,
	/* post-copy (docs/protocol.md §6.4): the pages still to come, as a
	 * bitmap after struct mig_postcopy (source -> destination, control
	 * stream); and the pages the destination's vCPUs wait for (struct
	 * mig_page_request, destination -> source, data stream 1) */
	MIG_FRAME_POSTCOPY = 48,
	MIG_FRAME_PAGE_REQUEST = 49,
	/* post-copy resumed on new streams after a break: struct
	 * mig_postcopy and the pages still missing (destination -> source) */
	MIG_FRAME_PC_RESUME = 50,
	_MIG_FRAME_TYPE_END,
};

/* frame flags */
#define MIG_FRAME_F_ZSTD    (1U << 0)     /* PAGES: page data is one zstd frame */
/* PAGES: the data was read from the guest's RAM while its vCPUs ran, with no
 * copy in between; if the guest wrote a page meanwhile, its sum will not
 * match.  Such a page is dirty again on the source and arrives once more. */
#define MIG_FRAME_F_LIVE    (1U << 1)
/* DEVICE_DATA: exactly one of PRECOPY (data sent while the VM runs, loaded
 * as it comes) and FINAL (its state once stopped, loaded with the rest);
 * END marks a device's last FINAL chunk. */
#define MIG_FRAME_F_PRECOPY (1U << 2)
#define MIG_FRAME_F_FINAL   (1U << 3)
#define MIG_FRAME_F_END     (1U << 4)
/* Any type: the frame is sealed (AES-256-GCM, include/migrate/aead.h): its
 * payload is encrypted and followed by a 16-byte tag, and the checksum
 * field gives the sealed bytes after the frame (PAGES data), not a sum. */
#define MIG_FRAME_F_SEALED  (1U << 5)
#define MIG_FRAME_F_KNOWN   (MIG_FRAME_F_ZSTD | MIG_FRAME_F_LIVE | MIG_FRAME_F_PRECOPY | \
			     MIG_FRAME_F_FINAL | MIG_FRAME_F_END | MIG_FRAME_F_SEALED)

struct mig_frame_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t flags;
	uint32_t length;      /* payload bytes, <= mig_frame_max_payload(type) */
	uint64_t seq;         /* per direction of a connection, starts at 1 */
	uint64_t checksum;
};
_Static_assert(sizeof(struct mig_frame_hdr) == 32, "frame header is 32 bytes");

const char *mig_frame_type_to_string(uint16_t type);   /* NULL for unknown */
/* Largest payload a frame of this type may carry (0 for unknown types). */
uint32_t mig_frame_max_payload(uint16_t type);

/* Fill magic/version/type/flags/length (len)/seq, the checksum 0: the header
 * of a frame that is sealed (aead.h) instead of summed. */
void mig_frame_header(struct mig_frame_hdr *h, uint16_t type, uint32_t flags, uint64_t seq,
		      size_t len);
/* Fill magic/version/type/flags/length/seq and the checksum over hdr + iov. */
void mig_frame_seal(struct mig_frame_hdr *h, uint16_t type, uint32_t flags, uint64_t seq,
		    const struct iovec *iov, int iovcnt);
/* PAGES frames (docs/protocol.md §6.4).  The payload is the meta: this
 * header and `count` entries, one per page.  The frame's checksum covers the
 * meta; the data of the non-zero pages follows the frame on the stream
 * (`data_len` bytes: raw pages, or one zstd frame with MIG_FRAME_F_ZSTD), and
 * each page is checked by its entry's `sum`.  Keeping the data outside the
 * frame lets both sides move it straight between guest RAM and the socket;
 * a checksum per page lets a page the guest changed in flight be told apart
 * from its neighbours. */
struct mig_pages_hdr {
	uint32_t count;
	uint32_t zero_count;
	uint32_t round;
	uint32_t data_len;
};
_Static_assert(sizeof(struct mig_pages_hdr) == 16, "pages header");
struct mig_page_ent {
	uint64_t page;         /* page number; MIG_PAGE_ZERO: all zero, no data */
	uint64_t sum;          /* mig_page_sum() of its data; 0 for a zero page */
};
_Static_assert(sizeof(struct mig_page_ent) == 16, "page entry");
#define MIG_PAGE_SIZE        4096U
#define MIG_PAGE_ZERO        (1ULL << 63)
/* the page's tag (a device's, mig_page_ops) follows the entries */
#define MIG_PAGE_TAGGED      (1ULL << 62)
#define MIG_PAGE_FLAGS       (MIG_PAGE_ZERO | MIG_PAGE_TAGGED)
#define MIG_PAGE_TAG_SIZE    64U
#define MIG_PAGES_MAX        256U          /* pages per PAGES frame */
#define MIG_SUMS_MAX         65536U        /* sums per SUMS frame (512 KiB) */
#define MIG_SUMS_PER_MAX     512U          /* pages per sum: 2 MiB at most */
#define MIG_PAGES_META_MAX   (sizeof(struct mig_pages_hdr) + \
			      MIG_PAGES_MAX * (sizeof(struct mig_page_ent) + MIG_PAGE_TAG_SIZE))

/* A batch of guest pages into a PAGES frame's entries (transport/pages.c):
 * a zero page is flagged and carries no data; each other page gets its
 * sum when `sums`.  Without `gather` the data stays in guest RAM, adjacent
 * pages joined into runs[0..*ret_nruns); with it, each page is copied
 * there (as a codec that must not see bytes change needs), given to `xf`
 * (when not NULL) to be turned into its wire form in place, and summed
 * there; a page `xf` tags (returns 1) is flagged MIG_PAGE_TAGGED and its
 * tag goes after the entries, in order (so ent needs room for them:
 * MIG_PAGES_META_MAX).  A page goes as a zero flag only if it is zero in
 * its wire form and untagged.  Returns how many pages carry data, or the
 * first error of `xf`. */
bool mig_page_is_zero(const void *page);
typedef int (*mig_page_xform_fn)(void *ctx, uint64_t pfn, void *page, void *tag);
/* The entries are written in the wire's byte order; mig_pages_meta_check()
 * gives them back in the host's. */
/* The meta's length for count entries as encoded (with their tags). */
size_t mig_pages_meta_len(const struct mig_page_ent *ent, unsigned count);
int mig_pages_encode(const uint8_t *ram, const uint64_t *pfns, unsigned count, uint64_t seq,
		     bool sums, struct mig_page_ent *ent, struct iovec *runs, int *ret_nruns,
		     uint8_t *gather, mig_page_xform_fn xf, void *xf_ctx);
/* A received PAGES frame's meta (its checksum already checked), against
 * the guest's page count and the stream's current round: the counts, the
 * length, every page inside the guest, the data length for raw or zstd
 * data.  Copies the entries into ent (MIG_PAGES_MAX of them), their tags
 * into tags (MIG_PAGES_MAX * MIG_PAGE_TAG_SIZE bytes; NULL: this side
 * takes no tagged page) and the header into *ret; nothing of guest RAM is
 * touched. */
int mig_pages_meta_check(const void *meta, uint32_t length, uint32_t flags, uint32_t round,
			 uint64_t nr_pages, unsigned stream, struct mig_pages_hdr *ret,
			 struct mig_page_ent *ent, uint8_t *tags, struct mig_error *err);

/* DEVICE_DATA frames (docs/protocol.md §6.6): this header, then `len`
 * bytes of one device's state, from `offset` of its pre-copy or final data.
 * A device's chunks all travel on one data stream, in order, each in the
 * round it was sent in. */
struct mig_device_data {
	uint32_t cls;          /* enum mig_dev_class */
	uint32_t instance;
	uint64_t offset;
	uint32_t round;
	uint32_t len;
};
_Static_assert(sizeof(struct mig_device_data) == 24, "device data header");
#define MIG_DEVICE_CHUNK_MAX (1U << 20)    /* bytes of state per DEVICE_DATA frame */
#define MIG_TUNNEL_CHUNK     (256U << 10)  /* bytes of a tunnelled connection per TUNNEL_DATA frame */
/* A received DEVICE_DATA frame's header (transport/pages.c), before the
 * destination looks for its device: the payload holds the header, its
 * `len` is the rest of the payload, its round is the stream's.  The header
 * goes to *ret in host order; the state follows it in the payload. */
int mig_device_data_check(const void *payload, uint32_t length, uint32_t round, unsigned stream,
			  struct mig_device_data *ret, struct mig_error *err);

/* XXH3-64 of one page, seeded with seq * MIG_PAGES_MAX + index (its place
 * in the frame): a page moved to another entry or frame does not match. */
uint64_t mig_page_sum(const void *page, uint64_t seq, unsigned index);
/* SUMS: XXH3-64 (seed 0) of each run of `per` pages from page `first` of
 * `ram`, into out[0..count). */
void mig_ram_sums(const uint8_t *ram, uint64_t first, uint32_t count, uint32_t per,
		  uint64_t *out);

/* Check a received header before reading its payload: magic, version, type,
 * flags, length limit, expected seq.  Clear error naming the bad field. */
int mig_frame_check_header(const struct mig_frame_hdr *h, uint64_t expect_seq,
			   struct mig_error *err);
/* Check the checksum once the payload is in. */
int mig_frame_check_payload(const struct mig_frame_hdr *h, const void *payload,
			    struct mig_error *err);

#endif
