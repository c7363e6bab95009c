/* SPDX-License-Identifier: MIT */
/*
 * The migration engines: a source migrates a struct mig_vm to a destination
 * that fills a prepared one (docs/phases.md).  Agents run them; the chaos
 * mode drives them through the fault hook.
 */
#ifndef MIGRATE_ENGINE_H
#define MIGRATE_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/control.h>
#include <migrate/device.h>
#include <migrate/policy.h>
#include <migrate/stream.h>
#include <migrate/transport.h>
#include <migrate/vm.h>

const char *mig_phase_to_string(enum mig_phase p);
/* The migration phase transition table: every phase change goes through it. */
bool mig_phase_arc_allowed(enum mig_phase from, enum mig_phase to);

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
	uint32_t encrypt;         /* enum mig_encrypt: which streams are sealed */
	uint32_t handover;        /* enum mig_handover_mode */
	/* Post-copy: how long the source tries to reconnect after the link
	 * broke (0: MIG_RECOVER_DEFAULT_MS) */
	uint64_t recover_ms;
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
	uint32_t encrypt;         /* enum mig_encrypt: which streams must come sealed */
	int listen_fd;
	struct mig_vm *vm;        /* prepared VM (never run); consumed by mig_dest_run */
	struct mig_dest_status *status;   /* NULL: nobody asks */
	/* Set when the migration is called off before the source connected
	 * (the start gave up on it); NULL: never. */
	const atomic_bool *cancel;
	mig_fault_fn fault;       /* as in mig_out_opts; NULL in production */
	void *fault_arg;
};

/* Destination: accepts and authenticates the streams on listen_fd, fills the
 * prepared VM, and on commit returns it running in *ret_vm; otherwise it
 * has discarded and destroyed it. */
int mig_dest_run(const struct mig_in_opts *o, struct mig_vm **ret_vm, struct mig_error *err);

/* ---- same-host hand-over (engine/handover.c, docs/phases.md) ---- */

/* Source, before SETUP: whether this migration can hand RAM over, and if
 * not, why (enum mig_handover_why; MIG_HANDOVER_DONE: it can). */
uint32_t mig_handover_check(const struct mig_vm *vm, uint32_t mode, int ctl_fd, bool sealed);
/* Source: the HANDOVER frame, seq `seq`, on the (clear) control stream fd,
 * with memfd attached (SCM_RIGHTS).  Blocking; the stream must be idle. */
int mig_handover_send(int fd, uint64_t seq, int memfd, const struct mig_handover *h,
		      struct mig_error *err);
/* Destination: waits up to timeout_ms (or the cancel flag) for the next
 * frame on fd and takes the descriptor its bytes carry (*ret_fd, -1: none)
 * without consuming the frame (MSG_PEEK): it is read as any other after. */
int mig_handover_peek_fd(int fd, int timeout_ms, const atomic_bool *cancel, int *ret_fd,
			 struct mig_error *err);

/* The peer's sums of `count` runs of `per` pages from `first`, into out. */
typedef int (*mig_sums_fetch)(void *ctx, uint64_t first, uint32_t count, uint32_t per,
			      uint64_t *out);

/* Where two copies of guest RAM differ, in words for an error: how many
 * 2 MiB chunks, and the first pages (guest page numbers) of the first
 * chunk that differs, each marked if its bit is set in final_set (the
 * final round's pages; NULL: no marks).  <0 if fetch failed. */
int mig_where_ram_differs(const uint8_t *ram, uint64_t nr_pages, const uint64_t *final_set,
			  mig_sums_fetch fetch, void *ctx, char *out, size_t n);

#endif
