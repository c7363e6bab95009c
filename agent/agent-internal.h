/* SPDX-License-Identifier: MIT */
/* The agent's state, shared by its parts (agent.c, libvirt.c, hook.c). */
#ifndef AGENT_INTERNAL_H
#define AGENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <migrate/agent.h>
#include <migrate/engine.h>
#include <migrate/libvirt.h>

#include "fault.h"

#define AGENT_MAX_VMS 64

struct agent_vm {
	char name[MIG_NAME_MAX];
	struct mig_vm *vm;
	bool busy;                /* a migration (or destroy) owns it */
	/* Held: a migration of it ended with ownership unknown (owner none),
	 * so the destination may run it.  It stays paused, and only
	 * MIG_OP_VM_RESOLVE naming that migration changes it. */
	bool held;
	uint8_t held_by[16];
	char held_peer[128];
	char held_why[256];
	uint32_t held_phase;
	bool held_pc_dst;         /* the destination's half of a post-copy: it never runs alone */
};

/* A migration this agent takes part in, as the source or the destination. */
struct agent_mig {
	uint8_t id[16];
	bool used;
	uint32_t side;            /* MIG_SIDE_* */
	char name[MIG_NAME_MAX];
	char peer[128];           /* source: the destination's address */
	uint64_t t0_ms;
	uint64_t ram_bytes;
	atomic_bool cancel;
	struct mig_event last;    /* source: the latest PROGRESS event */
	struct mig_dest_status *dst;  /* destination: what its engine publishes */
	/* a libvirt domain's source: libvirt paused it for the switchover (a
	 * lifecycle event said so), so the destination may have run it */
	atomic_bool lv_paused;
	/* and paused it for post-copy: the domain runs on the destination,
	 * and neither host holds all of it until the migration completes */
	atomic_bool lv_postcopy;
};

/* Whom a connection comes from, for the per-peer bound: an IP address (an
 * IPv4 address mapped into IPv6 counts as itself), or for unix the uid. */
struct peer_key {
	int32_t family;
	uint8_t addr[16];
};

/* A connection in its handshake.  Its fd stays open while listed here, so
 * the watchdog can shut it down without racing a close. */
struct pending {
	bool used;
	bool shut;                /* the watchdog shut it down */
	int fd;
	uint64_t deadline;
	struct peer_key peer;
};

/*
 * Things a peer without a key can repeat thousands of times a second (a
 * flood of connections, descriptors running out) must not fill the log:
 * the first of a burst is logged, the rest are counted, and once
 * AGENT_LOG_QUIET_MS pass without one a line gives the count.
 */
struct log_burst {
	const char *what;         /* "connections refused as busy" */
	uint64_t count;
	uint64_t first_ms, last_ms;
};

struct agent {
	struct agent_opts opts;
	const struct mig_vm_backend *backend;   /* the kind of VM it hosts */
	struct mig_buf key;
	pthread_mutex_t lock;
	struct agent_vm vms[AGENT_MAX_VMS];
	/* every migration involves one of the VM slots: as many at most */
	struct agent_mig migs[AGENT_MAX_VMS];
	/* connections: conn_lock guards pending, sessions and the bursts */
	pthread_mutex_t conn_lock;
	struct pending pending[AGENT_MAX_UNAUTH];
	unsigned sessions;        /* authenticated */
	struct log_burst accept_errors, busy, denied, failed;
	uid_t uid;                /* ours: unix peers with it may connect */
	struct agent_journal *journal;   /* every vCPU start and stop (journal.h) */
	struct agent_faults faults;      /* --chaos: plans armed for the next migrations */
	/* --libvirt: the host's libvirtd (NULL until reached; libvirt.c) */
	pthread_mutex_t lv_lock;
	struct mig_lv *lv;
	bool lv_reconciled;       /* the journal was brought up to date once */
	char allowed[200];        /* unix: who may connect, for refusals */
};

struct session {
	struct agent *a;
	struct xport_conn c;
	int slot;                 /* in a->pending while in the handshake */
	uint64_t deadline;        /* of the handshake */
	char peer[64];            /* "127.0.0.1", "uid 1000 (pid 42)" */
	size_t body_len;          /* the request's body (for handlers whose body varies) */
};

/* One line to the caller's log, if it keeps one. */
void agent_log(const struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The REPLY to the session's request: status, error text, extra body. */
int agent_reply(struct session *s, int status, const char *msg, const void *extra, size_t n);
/* A RESULT EVENT: the event and nr_devices devices after it. */
void agent_send_result(struct session *s, const struct mig_event *res,
		       const struct mig_event_device *devs);
/* A migration slot for id (NULL: all taken), and its release. */
struct agent_mig *mig_take(struct agent *a, const uint8_t id[16], uint32_t side,
			   const char *name, const char *peer, uint64_t ram_bytes);
void mig_drop(struct agent *a, struct agent_mig *m);

/* --chaos: the plan armed for the next migration of `name` (*ret NULL:
 * none), set as the fault hook fn/arg. */
void agent_fault_attach(struct agent *a, const char *name, struct agent_fault **ret,
			mig_fault_fn *fn, void **arg);
/* --chaos, a network plan in f: a relay with its toxic in front of the
 * listener at addr, whose own address replaces addr (what the source is
 * given).  *ret NULL and 0 without one; <0 when it cannot start. */
struct chaos_relay;
int agent_relay_begin(struct agent *a, const struct agent_fault *f, const char *name,
		      const char *host, char *addr, size_t n, struct chaos_relay **ret,
		      struct mig_error *err);
/* The relay's report (into f's) and its end; *relay NULL is a no-op. */
void agent_relay_end(struct agent *a, struct agent_fault *f, struct chaos_relay **relay);

/* libvirt domains (libvirt.c): set up at start (a libvirtd not up yet is
 * reached later; the journal file's earlier records of domains are taken
 * back, <0 when it cannot be read), and the operations. */
int agent_lv_init(struct agent *a, struct mig_error *err);
int agent_op_lv_incoming(struct session *s, const uint8_t *body);
int agent_op_lv_outgoing(struct session *s, const uint8_t *body);
int agent_op_lv_domain(struct session *s, const uint8_t *body);
/* MIG_OP_HOOK (hook.c): libvirt's qemu hook on this host. */
int agent_op_hook(struct session *s, const uint8_t *body);

#endif
