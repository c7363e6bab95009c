/* SPDX-License-Identifier: MIT */
/*
 * The migration streams' payloads (docs/protocol.md §2.4, §6): what a source
 * and a destination agent send each other.  Little-endian on the wire,
 * converted with mig_wire_le() (wire-order.h).
 */
#ifndef MIGRATE_STREAM_H
#define MIGRATE_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/control.h>
#include <migrate/transport.h>
#include <migrate/vm.h>
#include <migrate/wire.h>

/* STREAM_HELLO: first frame of every migration stream, each direction. */
struct mig_stream_hello {
	uint8_t id[16];
	uint32_t index;           /* 0 = migration control stream, 1..N data */
	uint32_t nstreams;        /* data streams */
	uint8_t nonce[XPORT_NONCE_LEN];
	uint8_t mac[XPORT_MAC_LEN];
	uint32_t flags;           /* MIG_STREAM_F_*: the source's, echoed in the answer */
	uint32_t pad;
};
_Static_assert(sizeof(struct mig_stream_hello) == 96, "stream hello");
/* The source seals every frame after this one, both ways (aead.h): keys
 * from the per-migration secret, this hello's nonce, the migration's id
 * and the stream's index. */
#define MIG_STREAM_F_SEALED 1U
#define MIG_STREAM_F_KNOWN MIG_STREAM_F_SEALED

/* --encrypt: whether a migration's streams are sealed.  AUTO seals the
 * streams that leave the host (xport_same_host()), ALWAYS every one, NEVER
 * none; a destination takes a sealed stream whatever it was told, and
 * refuses one in clear that its setting wants sealed. */
enum mig_encrypt {
	MIG_ENCRYPT_AUTO = 0,
	MIG_ENCRYPT_ALWAYS = 1,
	MIG_ENCRYPT_NEVER = 2,
	_MIG_ENCRYPT_END,
};
const char *mig_encrypt_to_string(uint32_t e);
/* Whether a stream on fd is sealed under e: what the source decides, and
 * what a destination requires of a stream that comes to it on fd. */
bool mig_stream_seals(uint32_t e, int fd);
int mig_encrypt_from_string(const char *s);

struct mig_setup {
	uint8_t vm_desc[MIG_VM_DESC_MAX];   /* the backend's description (describe()) */
	uint64_t nr_pages;
	uint32_t page_size;
	uint32_t codec;
	char name[MIG_NAME_MAX];
	uint32_t flags;           /* MIG_SETUP_F_* */
	uint32_t nr_devices;      /* struct mig_manifest_entry records after it */
};
_Static_assert(sizeof(struct mig_setup) == 216, "setup");
/* A VM's devices, as many as a SETUP frame lists. */
#define MIG_SETUP_DEVICES_MAX 2000U
_Static_assert(sizeof(struct mig_setup) + MIG_SETUP_DEVICES_MAX *
	       sizeof(struct mig_manifest_entry) <= MIG_SETUP_MAX, "a full manifest fits SETUP");
#define MIG_SETUP_F_VERIFY 1U     /* hash RAM at switchover (inside the blackout) */
#define MIG_SETUP_F_NO_PAGE_SUMS 2U  /* PAGES entries carry no sums (--checksum frames) */
/* The source offers to hand guest RAM over (same host, unix streams): if
 * READY accepts (MIG_READY_F_HANDOVER), HANDOVER follows with its memfd and
 * no page is sent (docs/protocol.md §6.3) */
#define MIG_SETUP_F_HANDOVER 4U
#define MIG_SETUP_F_KNOWN (MIG_SETUP_F_VERIFY | MIG_SETUP_F_NO_PAGE_SUMS | MIG_SETUP_F_HANDOVER)
/* READY's mig_reply.flags: the destination takes the hand-over offered */
#define MIG_READY_F_HANDOVER 1U

/* HANDOVER: what the memfd attached to it holds */
struct mig_handover {
	uint64_t ram_bytes;       /* the memfd's size: all of guest RAM */
	uint64_t nr_pages;        /* as in SETUP */
};
_Static_assert(sizeof(struct mig_handover) == 16, "handover");

struct mig_round_end {
	uint32_t round;
	/* 1 after the stop-and-copy pages; 2 after STOP_COPY's device state
	 * when the pages left come in post-copy (MIG_ROUND_POSTCOPY) */
	uint32_t final;
	uint64_t frames;          /* PAGES frames this stream carried in the round */
};
_Static_assert(sizeof(struct mig_round_end) == 16, "round end");

struct mig_loaded {
	int32_t status;
	uint32_t pad;
	uint64_t digest[2];
	uint64_t verify_ns;       /* time the digest took (excluded from downtime) */
	uint64_t rejected_streams;
	uint64_t load_ns;         /* time loading the device state took */
	uint64_t torn_pages;      /* pages of LIVE frames that failed their sum */
	char msg[456];
};
_Static_assert(sizeof(struct mig_loaded) == 512, "loaded");

/* After LOADED, when the RAM digests differ: "hash `count` runs of
 * `pages_per_sum` pages from `first_page` and send them back".  The source
 * narrows down from 2 MiB chunks to pages to say which pages differ. */
struct mig_sums_request {
	uint64_t first_page;
	uint32_t count;           /* 1..MIG_SUMS_MAX sums, all inside the guest */
	uint32_t pages_per_sum;   /* 1..MIG_SUMS_PER_MAX */
};
_Static_assert(sizeof(struct mig_sums_request) == 16, "sums request");

struct mig_running {
	uint32_t kind;            /* 1 vCPUs started, 2 health check after a while */
	int32_t status;
	uint64_t start_realtime_ns;
	uint64_t passes;
	uint64_t errors;
	uint64_t cpu_ms;          /* CPU time of the migration threads (main and streams) so far */
	/* Kind 1, on the destination's own clock: from its vCPUs' start, and
	 * from COMMIT's arrival, to this frame.  With them the source bounds
	 * the downtime by durations alone, whatever the hosts' clocks say. */
	uint64_t since_start_ns;
	uint64_t since_commit_ns;
	/* the guest's finer progress (mig_vm_health.progress): pages it checked
	 * and stamped, for a working set too big to pass over in the check */
	uint64_t progress;
	/* Post-copy, kind 2, once every page is placed: the order-free digest
	 * of RAM as it arrived (under --verify; mig_pc_digest), the faults its
	 * vCPUs took and the pages they asked for, the longest any waited,
	 * and the time from the vCPUs' start to the last page placed. */
	uint64_t pc_digest[2];
	uint64_t pc_faults;
	uint64_t pc_requested;
	uint64_t pc_worst_stall_us;
	uint64_t pc_ms;
	uint64_t pc_pages;        /* pages that came after the start */
	uint64_t pc_progress;     /* the guest's progress (health) when the last page came */
	char msg[384];
};
_Static_assert(sizeof(struct mig_running) == 512, "running");
#define MIG_ROUND_POSTCOPY 2

/* POSTCOPY (docs/protocol.md §6.4): sent in STOP_COPY, before the last
 * round's device state; `words` little-endian u64 follow, a bit set for
 * each page that comes only after the destination's vCPUs start.
 * PC_RESUME, the same from the destination on new streams after a break:
 * the pages still missing, and the round the data streams go on with. */
struct mig_postcopy {
	uint64_t nr_pages;        /* as in SETUP */
	uint64_t to_come;         /* bits set */
	uint64_t words;           /* (nr_pages + 63) / 64 */
	uint32_t round;           /* PC_RESUME: the data streams' round (POSTCOPY: 0) */
	uint32_t breaks;          /* PC_RESUME: the links lost so far, this one too */
};
_Static_assert(sizeof(struct mig_postcopy) == 32, "postcopy");

/* PAGE_REQUEST: pages vCPUs wait for, first come first */
#define MIG_PAGE_REQUEST_MAX 64U
struct mig_page_request {
	uint32_t count;           /* 1..MIG_PAGE_REQUEST_MAX */
	uint32_t pad;
	uint64_t pfn[MIG_PAGE_REQUEST_MAX];
};
_Static_assert(sizeof(struct mig_page_request) == 520, "page request");

/* STREAM_HELLO's proof: HMAC-SHA256(secret, label || id || index ||
 * nstreams || nonce || flags), "migratectl-stream" from the source (ack false),
 * "migratectl-stream-ack" in the destination's answer (ack true).  Seal
 * fills h->mac; proves compares in constant time. */
void mig_stream_hello_seal(struct mig_stream_hello *h, const uint8_t *secret, bool ack);
bool mig_stream_hello_proves(const struct mig_stream_hello *h, const uint8_t *secret, bool ack);

/* The handshake (transport/handshake.c): who the streams are for.  Each
 * stream's fd comes back having sent and received frame 1. */
struct xport_streams {
	const char *addr;         /* source: the destination's HOST:PORT */
	const uint8_t *id;        /* the migration's 16-byte id */
	const uint8_t *secret;    /* MIG_SECRET_LEN bytes */
	unsigned n;               /* data streams; fds[0] is the control stream */
	/* destination: told of each stream as soon as it has proven itself */
	void (*on_stream)(void *ctx, unsigned index, int fd);
	void *ctx;
	/* destination: set when the migration is called off before all its
	 * streams are in (NULL: never); the wait ends with -ECANCELED */
	const atomic_bool *cancel;
	/* enum mig_encrypt; aeads[0..n] (if not NULL) gets each sealed
	 * stream's keys (NULL for a stream in clear), the caller's to free */
	uint32_t encrypt;
	struct xport_aead **aeads;
	/* destination: how long to wait for them all (0: 30 s) */
	uint32_t timeout_ms;
};
/* A stream's keys, as both ends make them (aead.h): ikm the secret, salt
 * the source's nonce, info "migratectl stream" || id || index; the source
 * is the initiator. */
int mig_stream_keys(const uint8_t *secret, const struct mig_stream_hello *h, bool source,
		    struct xport_aead **ret, struct mig_error *err);
/* Source: connect the n + 1 streams and prove both ends, all answers
 * awaited together; fds[0..n] on success. */
int xport_streams_open(const struct xport_streams *who, atomic_bool *cancel, int *fds,
		       struct mig_error *err);
/* Destination: accept on listen_fd until all n + 1 streams have proven
 * they belong to this migration; every connection that fails is answered,
 * closed and counted in *rejected. */
int xport_streams_accept(int listen_fd, const struct xport_streams *who, int *fds,
			 uint64_t *rejected, struct mig_error *err);

#endif
