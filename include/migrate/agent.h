/* SPDX-License-Identifier: MIT */
/* The migratectl agent (daemon) and the client side of its control protocol. */
#ifndef MIGRATE_AGENT_H
#define MIGRATE_AGENT_H

#include <stdbool.h>
#include <sys/types.h>

#include <migrate/buf.h>
#include <migrate/control.h>
#include <migrate/error.h>
#include <migrate/transport.h>

struct agent_opts {
	char listen[256];       /* tcp://HOST:PORT or unix:///PATH */
	char key_file[256];     /* required for tcp */
	char journal[256];      /* "" or a file each vCPU start and stop is appended to */
	/* chaos mode: takes MIG_OP_FAULT_ARM (docs/chaos.md); never in production */
	bool chaos;
	/* Where its log lines go (one line each, without a newline); NULL:
	 * nowhere.  The library prints nothing itself. */
	void (*log)(void *arg, const char *line);
	void *log_arg;
	int ready_fd;           /* written once listening, -1 for none */
	/* unix only: the socket is 0660 with this group (else 0600), and its
	 * members may connect besides root and the agent's own user */
	bool socket_group_set;
	gid_t socket_group;
	/* libvirt domains (docs/libvirt.md): the local libvirtd ("": none),
	 * where the migration sockets go (the same path on every host), and
	 * the user QEMU runs as, who must reach them ("": as libvirt's
	 * default, libvirt-qemu, where that user exists) */
	char libvirt_uri[256];
	char libvirt_run_dir[96];
	char libvirt_qemu_user[64];
	/* A listening socket passed by a service manager (systemd's socket
	 * activation), served instead of binding `listen`, which must name
	 * its kind and address (xport_listen_inherited); its LISTEN_FDNAMES
	 * name ("" for none) is only logged.  Unset: the agent binds `listen`. */
	bool listen_fd_set;
	int listen_fd;
	char listen_fd_name[64];
};

/*
 * What the agent's clients may hold (docs/protocol.md §8).  A connection
 * is unauthenticated until its HELLO and, with a key, its challenge-response
 * are done; a peer is an IP address for tcp, a uid for unix.  Each
 * connection holds one thread and AGENT_FDS_PER_CONN descriptors (its
 * socket and its io_uring).  A connection over a bound is closed at once,
 * after an ERROR frame if the socket takes it without waiting.
 */
#define AGENT_MAX_UNAUTH          64     /* unauthenticated connections in all */
#define AGENT_MAX_UNAUTH_PER_PEER 8      /* ... from one peer */
#define AGENT_MAX_SESSIONS        64     /* authenticated connections */
#define AGENT_HANDSHAKE_MS        10000  /* from accept to the end of the handshake */
#define AGENT_FDS_PER_CONN        2

/* A VM name: 1 to cap-1 (63 on the wire) characters of [A-Za-z0-9._-],
 * NUL-terminated within cap. */
bool mig_vm_name_ok(const char *n, size_t cap);

/* A control frame as the agent's session takes it, before any handler
 * runs: a REQUEST with a known operation and a body of that operation's
 * size.  -EPROTO: not a REQUEST (the agent ends the session); -EOPNOTSUPP
 * (unknown operation) and -EINVAL (body size) go back as the reply.  body
 * points into payload.  Pure: no socket, no state (tests/fuzz). */
struct agent_request {
	uint32_t op;            /* enum mig_op */
	const uint8_t *body;
	size_t body_len;
};
int agent_request_parse(uint16_t type, const void *payload, size_t len,
			struct agent_request *ret, struct mig_error *err);

/* Serves until killed. */
int agent_run(const struct agent_opts *opts, struct mig_error *err);

struct mig_client {
	struct xport_conn conn;
	struct xport_endpoint ep;
	struct mig_ssh *ssh;    /* ssh://: the connection its channel runs on */
	pid_t child;            /* a private agent started for "local" */
	char tmpdir[64];
	char url[300];          /* where the agent listens */
};

/* Connects to ENDPOINT ("local" starts a private agent process) and runs the
 * HELLO / key handshake.  key_file may be NULL. */
int mig_client_open(const char *endpoint, const char *key_file, struct mig_client *c,
		    struct mig_error *err);
/* A second connection to the same agent (e.g. to cancel). */
int mig_client_reopen(const struct mig_client *c, const char *key_file, struct mig_client *ret,
		      struct mig_error *err);
void mig_client_close(struct mig_client *c);
/* One request, one reply; the reply's body beyond struct mig_reply goes to extra.
 * body and extra are as they travel: little-endian (mig_wire_le()). */
int mig_client_call(struct mig_client *c, uint32_t op, const void *body, size_t len,
		    struct mig_buf *extra, struct mig_error *err);
/* The same, waiting at most timeout_ms for the reply (-ETIMEDOUT): for a
 * call to an agent that may be stopped or cut off, whose answer only helps.
 * After a timeout the connection is out of step: close it. */
int mig_client_call_within(struct mig_client *c, uint32_t op, const void *body, size_t len,
			   struct mig_buf *extra, int timeout_ms, struct mig_error *err);

/* The agent's journal (MIG_OP_JOURNAL) from since_ns on (CLOCK_REALTIME),
 * every record it still holds, into ret_recs as struct mig_journal_rec in
 * host order; ret_info is its last reply's header (next_seq, dropped). */
struct mig_journal_reply;
int mig_client_journal(struct mig_client *c, uint64_t since_ns, struct mig_buf *ret_recs,
		       struct mig_journal_reply *ret_info, struct mig_error *err);

#endif
