/* SPDX-License-Identifier: MIT */
/* Shared inside migrate/: the migration frames' payloads and the engines. */
#ifndef MIGRATE_INTERNAL_H
#define MIGRATE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/control.h>
#include <migrate/policy.h>
#include <migrate/transport.h>
#include <migrate/vm.h>

/* STREAM_HELLO: first frame of every migration stream, each direction. */
struct mig_stream_hello {
	uint8_t id[16];
	uint32_t index;           /* 0 = migration control stream, 1..N data */
	uint32_t nstreams;        /* data streams */
	uint8_t nonce[XPORT_NONCE_LEN];
	uint8_t mac[XPORT_MAC_LEN];
	uint8_t pad[8];
};
_Static_assert(sizeof(struct mig_stream_hello) == 96, "stream hello");

struct mig_setup {
	uint8_t vm_desc[MIG_VM_DESC_MAX];   /* the backend's description (describe()) */
	uint64_t nr_pages;
	uint32_t page_size;
	uint32_t codec;
	char name[MIG_NAME_MAX];
	uint32_t flags;           /* MIG_SETUP_F_* */
	uint32_t nr_devices;      /* struct mig_manifest_entry records after it */
};
_Static_assert(sizeof(struct mig_setup) == 136, "setup");
/* A VM's devices, as many as a SETUP frame lists. */
#define MIG_SETUP_DEVICES_MAX 4096U
_Static_assert(sizeof(struct mig_setup) + MIG_SETUP_DEVICES_MAX *
	       sizeof(struct mig_manifest_entry) <= MIG_SETUP_MAX, "a full manifest fits SETUP");
#define MIG_SETUP_F_VERIFY 1U     /* hash RAM at switchover (inside the blackout) */
#define MIG_SETUP_F_NO_PAGE_SUMS 2U  /* PAGES entries carry no sums (--checksum frames) */
#define MIG_SETUP_F_KNOWN (MIG_SETUP_F_VERIFY | MIG_SETUP_F_NO_PAGE_SUMS)

#define MIG_BATCH_PAGES MIG_PAGES_MAX

struct mig_round_end {
	uint32_t round;
	uint32_t final;           /* 1 after the stop-and-copy pages */
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

/* The peer's sums of `count` runs of `per` pages from `first`, into out. */
typedef int (*mig_sums_fetch)(void *ctx, uint64_t first, uint32_t count, uint32_t per,
			      uint64_t *out);

/* Where two copies of guest RAM differ, in words for an error: how many
 * 2 MiB chunks, and the first pages (guest page numbers) of the first
 * chunk that differs, each marked if its bit is set in final_set (the
 * final round's pages; NULL: no marks).  <0 if fetch failed. */
int mig_where_ram_differs(const uint8_t *ram, uint64_t nr_pages, const uint64_t *final_set,
			  mig_sums_fetch fetch, void *ctx, char *out, size_t n);

struct mig_running {
	uint32_t kind;            /* 1 vCPUs started, 2 health check after a while */
	int32_t status;
	uint64_t start_realtime_ns;
	uint64_t passes;
	uint64_t errors;
	uint64_t cpu_ms;          /* CPU time of the migration threads (main and streams) so far */
	char msg[472];
};
_Static_assert(sizeof(struct mig_running) == 512, "running");

const char *mig_phase_to_string(enum mig_phase p);
/* ERROR and ABORT payloads: fill one; read one (its text terminated) and
 * return its code, or fallback when the peer sent none. */
void mig_error_msg_fill(struct mig_error_msg *m, int code, const char *text);
int mig_error_msg_parse(const void *p, size_t n, struct mig_error_msg *m, int fallback);
/* The migration phase transition table: every phase change goes through it. */
bool mig_phase_arc_allowed(enum mig_phase from, enum mig_phase to);

/* ---- engines ---- */

struct mig_out_opts {
	uint8_t id[16];
	uint8_t secret[MIG_SECRET_LEN];
	char name[MIG_NAME_MAX];
	char dest_addr[128];
	uint32_t streams;
	struct xport_compress compress;
	bool verify;
	enum mig_checksum checksum;
	struct conv_params conv;
	uint64_t switchover_timeout_ms;   /* 0: conv_switchover_timeout_ms() */
	/* Consulted at every device step, frame and phase change (the chaos
	 * mode's seam); NULL in production. */
	mig_fault_fn fault;
	void *fault_arg;
};

typedef void (*mig_event_fn)(const struct mig_event *ev, void *arg);

/* Source: migrates vm; on success the caller drops its copy.  Fills res
 * (kind RESULT) and devs[0..res->nr_devices) (MIG_EVENT_DEVICES_MAX of
 * them).  Returns 0 when the migration completed.  With owner none
 * (res->src_held) the VM is left paused: only an operator may resume it
 * (mig_source_resume()) or drop it (mig_source_release(), then destroy). */
int mig_source_run(struct mig_vm *vm, const struct mig_out_opts *o, atomic_bool *cancel,
		   mig_event_fn fn, void *arg, struct mig_event *res,
		   struct mig_event_device *devs);
/* A paused source VM runs again: the ROLLBACK walk, every device back to
 * running from wherever it stopped. */
int mig_source_resume(struct mig_vm *vm, struct mig_error *err);
/* The source copy is given up: the RELEASE walk, every device to its end. */
void mig_source_release(struct mig_vm *vm);

/* What a destination's engine publishes while it runs (MIG_LIST): it
 * writes, the agent reads, both through mig_dest_status_*(). */
struct mig_dest_status {
	uint32_t phase;           /* enum mig_phase as this side sees it */
	uint32_t round;
	uint64_t pages;           /* pages received */
	bool peer_set;            /* peer is written, once */
	char peer[128];           /* the source's address */
};
void mig_dest_status_read(const struct mig_dest_status *st, uint32_t *ret_phase,
			  uint32_t *ret_round, uint64_t *ret_bytes, char *peer, size_t n);

struct mig_in_opts {
	uint8_t id[16];
	uint8_t secret[MIG_SECRET_LEN];
	char name[MIG_NAME_MAX];
	uint32_t streams;
	int listen_fd;
	struct mig_vm *vm;        /* prepared VM (never run); consumed by mig_dest_run */
	struct mig_dest_status *status;   /* NULL: nobody asks */
	mig_fault_fn fault;       /* as in mig_out_opts; NULL in production */
	void *fault_arg;
};

/* Destination: accepts and authenticates the streams on listen_fd, fills the
 * prepared VM, and on commit returns it running in *ret_vm; otherwise it
 * has discarded and destroyed it. */
int mig_dest_run(const struct mig_in_opts *o, struct mig_vm **ret_vm, struct mig_error *err);

/* The control connection's key proofs: HMAC(key, label || first || second)
 * over the two nonces; the client proves with "migratectl-client" and
 * (challenge, its nonce), the agent with "migratectl-agent" and the reverse. */
void ctl_auth_mac(const void *key, size_t key_len, const char *label,
		  const uint8_t first[XPORT_NONCE_LEN], const uint8_t second[XPORT_NONCE_LEN],
		  uint8_t out[XPORT_MAC_LEN]);
void stream_mac(const uint8_t *secret, const char *label, const struct mig_stream_hello *h,
		uint8_t out[XPORT_MAC_LEN]);
uint64_t mig_now_ms(void);
uint64_t mig_realtime_ns(void);
uint64_t mig_cpu_ms(void);   /* CPU time of the calling thread */

#endif
