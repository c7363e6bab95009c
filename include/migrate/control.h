/* SPDX-License-Identifier: MIT */
/*
 * Payloads of the control and migration frames (docs/protocol.md).  All
 * fields little-endian on the wire (each struct has a layout in
 * wire-order.h: mig_wire_le() converts), fixed width, explicitly padded; strings are
 * NUL-terminated within their fixed arrays (a receiver rejects one that is not).
 */
#ifndef MIGRATE_CONTROL_H
#define MIGRATE_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include <migrate/transport.h>

#define MIG_NAME_MAX 64
#define MIG_SECRET_LEN 32
#define MIG_MAX_STREAMS 16        /* data streams of one migration */

/* HELLO: first frame in each direction of a control connection. */
struct mig_hello {
	uint32_t role;            /* 1 client, 2 agent */
	uint32_t flags;           /* agent: MIG_HELLO_F_AUTH when a key must be proven */
	char software[56];
};
_Static_assert(sizeof(struct mig_hello) == 64, "hello");
#define MIG_ROLE_CLIENT 1
#define MIG_ROLE_AGENT 2
#define MIG_HELLO_F_AUTH 1U

struct mig_auth_challenge {
	uint8_t nonce[XPORT_NONCE_LEN];
};
_Static_assert(sizeof(struct mig_auth_challenge) == 32, "auth challenge");
struct mig_auth_response {
	uint8_t nonce[XPORT_NONCE_LEN];
	uint8_t mac[XPORT_MAC_LEN];   /* HMAC(key, "migratectl-client" | agent nonce | client nonce) */
};
struct mig_auth_proof {
	uint8_t mac[XPORT_MAC_LEN];   /* HMAC(key, "migratectl-agent" | client nonce | agent nonce) */
};
_Static_assert(sizeof(struct mig_auth_proof) == 32, "auth proof");
_Static_assert(sizeof(struct mig_auth_response) == 64, "auth response");

struct mig_error_msg {
	int32_t code;             /* -errno */
	uint32_t pad;
	char msg[504];
};
_Static_assert(sizeof(struct mig_error_msg) == 512, "error message");
/* ERROR and ABORT payloads: fill one; read one (its text terminated) and
 * return its code, or fallback when the peer sent none. */
void mig_error_msg_fill(struct mig_error_msg *m, int code, const char *text);
int mig_error_msg_parse(const void *p, size_t n, struct mig_error_msg *m, int fallback);

/* The control connection's key proofs: HMAC(key, label || first || second)
 * over the two nonces; the client proves with "migratectl-client" and
 * (challenge, its nonce), the agent with "migratectl-agent" and the reverse. */
void mig_ctl_auth_mac(const void *key, size_t key_len, const char *label,
		      const uint8_t first[XPORT_NONCE_LEN], const uint8_t second[XPORT_NONCE_LEN],
		      uint8_t out[XPORT_MAC_LEN]);
/* After the key challenge-response, both ends seal the rest of the
 * connection (docs/protocol.md §4.2): keys from the key file, salted with
 * the agent's nonce then the client's; the client is the initiator. */
struct xport_aead;
int mig_ctl_session_keys(const void *key, size_t key_len,
			 const uint8_t agent_nonce[XPORT_NONCE_LEN],
			 const uint8_t client_nonce[XPORT_NONCE_LEN], bool client,
			 struct xport_aead **ret, struct mig_error *err);

/* ---- control requests (migratectl -> agent) ---- */

enum mig_op {
	MIG_OP_INVALID = 0,
	MIG_OP_VM_CREATE = 1,     /* struct mig_vm_create -> reply */
	MIG_OP_VM_LIST = 2,       /* -> reply + struct mig_vm_info[] */
	MIG_OP_VM_DESTROY = 3,    /* struct mig_vm_ref -> reply */
	MIG_OP_MIG_INCOMING = 4,  /* struct mig_incoming -> reply + struct mig_incoming_reply */
	MIG_OP_MIG_OUTGOING = 5,  /* struct mig_outgoing -> reply, EVENT frames, final EVENT */
	MIG_OP_MIG_CANCEL = 6,    /* struct mig_cancel -> reply */
	MIG_OP_VM_RESOLVE = 7,    /* struct mig_vm_resolve -> reply: an operator settles a held VM */
	MIG_OP_MIG_LIST = 8,      /* -> reply + struct mig_migration_info[] */
	/* migratectl check (docs/policies.md): the source describes a VM, the
	 * destination runs the host compatibility policies on it; nothing moves */
	MIG_OP_VM_DESCRIBE = 9,   /* struct mig_vm_ref -> reply + struct mig_vm_described + entries */
	MIG_OP_VM_CHECK = 10,     /* struct mig_vm_check + entries -> reply + struct mig_check_reply
				   * + struct mig_check_result[] */
	/* the agent's journal of vCPU starts and stops (journal.h) */
	MIG_OP_JOURNAL = 11,      /* struct mig_journal_req -> reply + struct mig_journal_reply
				   * + struct mig_journal_rec[] */
	/* chaos mode (docs/chaos.md): a fault for the next migration of a VM;
	 * refused (-EPERM) unless the agent runs with --chaos */
	MIG_OP_FAULT_ARM = 12,    /* struct mig_fault_plan -> reply */
	/* libvirt domains (docs/libvirt.md): the agents carry libvirt's own
	 * migration between unix sockets on both hosts through a tunnel */
	MIG_OP_LV_INCOMING = 13,  /* struct mig_lv_incoming -> reply + struct mig_lv_incoming_reply */
	MIG_OP_LV_OUTGOING = 14,  /* struct mig_lv_outgoing -> reply, EVENT frames, final EVENT */
	MIG_OP_LV_DOMAIN = 15,    /* struct mig_lv_domain_ref -> reply + struct mig_lv_domain_info */
	/* `migratectl hook`: one call of libvirt's qemu hook on this host */
	MIG_OP_HOOK = 16,         /* struct mig_hook_call + the domain XML -> reply + struct
				   * mig_hook_verdict */
	_MIG_OP_END,
};

struct mig_request {
	uint32_t op;
	uint32_t pad;
};
_Static_assert(sizeof(struct mig_request) == 8, "request");

struct mig_reply {
	int32_t status;           /* 0 or -errno */
	uint32_t flags;           /* READY: MIG_READY_F_* (stream.h); 0 elsewhere */
	char msg[504];            /* error text when status < 0 */
};
_Static_assert(sizeof(struct mig_reply) == 512, "reply");

struct mig_vm_create {
	char name[MIG_NAME_MAX];
	char spec[256];           /* lab SPEC */
};
_Static_assert(sizeof(struct mig_vm_create) == 320, "vm create");

struct mig_vm_ref {
	char name[MIG_NAME_MAX];
};
_Static_assert(sizeof(struct mig_vm_ref) == 64, "vm ref");

struct mig_lab_wire {             /* struct lab_config on the wire */
	uint64_t mem_bytes;
	uint64_t wss_bytes;
	uint64_t rate;
	uint64_t seed;
	uint32_t vcpus;
	uint32_t pattern;
	uint32_t dirty_log;
	uint32_t ring_entries;
	/* sim passthrough devices (docs/devices.md §7) */
	uint32_t vfio;            /* VFIO devices, migration uAPI v2 */
	uint32_t vfio_v1;         /* of them, the v1 protocol (0 in this build) */
	uint16_t ccw;             /* channel I/O devices */
	uint16_t msi;             /* MSI devices (arm64) */
	uint32_t vfio_flags;      /* VFIO_MIGRATION_* they declare */
	uint32_t vfio_opts;       /* MIG_LAB_VFIO_* */
	/* a fault the sim devices inject (all 0: none): the arc from -> to of
	 * device (where >> 4) fails with errno err, on the side(s) where says */
	uint8_t vfio_fail_from, vfio_fail_to, vfio_fail_err, vfio_fail_where;
	uint64_t vfio_rate;       /* DMA pages a second, each */
	char mdev[16];            /* a real mediated device of this type ("": none) */
	/* an SEV guest (docs/devices.md §12): lab_sev + 1, lab_sev_report + 1 (0: none) */
	uint8_t sev, sev_report;
	uint8_t ram;              /* enum lab_ram + 1: anonymous, or a memfd (handed over) */
	uint8_t pad;
	uint32_t sev_ready_ms, sev_unready_ms, sev_flip_ms;
};
_Static_assert(sizeof(struct mig_lab_wire) == 112, "lab config");
#define MIG_LAB_VFIO_NO_LOG 1U    /* they cannot log their DMA */
#define MIG_LAB_VFIO_LOSE_LOG 2U  /* a source's devices lose their DMA log once */
#define MIG_LAB_VFIO_OVERSHOOT 4U /* a source's devices overrun their announced pre-copy data */
#define MIG_LAB_FAIL_SOURCE 1U    /* vfio_fail_where: on the source's devices */
#define MIG_LAB_FAIL_DEST 2U      /* on the destination's */
#define MIG_LAB_FAIL_ERROR 4U     /* the failed arc leaves the device in ERROR */

struct mig_vm_info {
	char name[MIG_NAME_MAX];
	uint32_t state;           /* MIG_VM_* */
	uint32_t vcpus;
	uint64_t mem_bytes;
	uint64_t wss_bytes;
	uint64_t passes;
	uint64_t errors;
	struct mig_lab_wire lab;  /* the full description, to prepare a destination */
	uint8_t held_by[16];      /* MIG_VM_HELD: the migration whose outcome is unknown */
	char held_peer[128];      /* MIG_VM_HELD: that migration's destination */
};
_Static_assert(sizeof(struct mig_vm_info) == 360, "vm info");
#define MIG_VM_RUNNING 1
#define MIG_VM_PAUSED 2
#define MIG_VM_MIGRATING 3
/* Kept paused after a migration whose outcome is unknown (owner none): the
 * destination may run it.  Only MIG_OP_VM_RESOLVE, naming that migration,
 * changes it: resume it here, or discard this copy. */
#define MIG_VM_HELD 4

/* An operator's decision on a held VM. */
struct mig_vm_resolve {
	char name[MIG_NAME_MAX];
	uint8_t id[16];           /* the migration that left it held */
	uint32_t action;          /* MIG_RESOLVE_* */
	uint32_t pad;
};
_Static_assert(sizeof(struct mig_vm_resolve) == 88, "vm resolve");
#define MIG_RESOLVE_RESUME 1      /* run it here: the destination does not */
#define MIG_RESOLVE_DISCARD 2     /* drop this copy: the destination runs it */


/*
 * A fault an agent started with --chaos injects into the next migration of
 * VM `vm` it takes part in (as the source or the destination), through the
 * engines' fault hook (struct mig_fault_point) or, for a network fault, a
 * relay in front of its migration listener.  A new plan for the same VM
 * replaces the old one; action 0 disarms.
 */
struct mig_fault_plan {
	char vm[MIG_NAME_MAX];
	uint32_t action;          /* MIG_FAULT_A_* */
	/* the trigger: the nth point (from 1) of kind `point` that matches */
	uint32_t point;           /* enum mig_fault_kind + 1 */
	int32_t stage;            /* DEVICE_STEP: enum mig_stage, -1 any */
	int32_t dev_class;        /* DEVICE_STEP: MIG_DEV_*, -1 any */
	int32_t from, to;         /* DEVICE_STEP: states; PHASE: phases; -1 any */
	int32_t frame_type;       /* FRAME_*: -1 any */
	int32_t stream;           /* FRAME_*: 0 control, k data stream k, -1 any */
	uint64_t nth;
	/* the action's parameters */
	int32_t err;              /* ERROR: the errno injected */
	uint32_t ms;              /* STOP: how long the agent stays stopped; NET: the toxic's */
	int64_t skew_ms;          /* SKEW: added to this agent's CLOCK_REALTIME */
	/* NET: a relay toxic (chaos/relay.h) on this destination's listener */
	uint32_t net_fault;       /* enum chaos_net_fault, 0: none */
	int32_t net_stream;       /* -1 any */
	uint32_t net_to_source;
	uint32_t net_frame_type;  /* 0 any */
	uint64_t net_frame, net_byte;
	uint32_t net_conn, net_jitter_ms;
	uint64_t net_rate;        /* bytes/s */
	uint32_t net_data;
	uint32_t pad;
	uint64_t seed;
};
_Static_assert(sizeof(struct mig_fault_plan) == 184, "fault plan");
/* FAULT_ARM's reply: what became of the VM's previous plan, which the
 * request replaces (a runner disarms after each run to read it). */
struct mig_fault_report {
	uint32_t taken;           /* a migration took it */
	uint32_t fired;           /* ... and it fired */
	char what[248];           /* where, in words ("SIGKILL at sending frame 1 (RUNNING) ...") */
};
_Static_assert(sizeof(struct mig_fault_report) == 256, "fault report");
#define MIG_FAULT_A_ERROR 1       /* the point fails with -err */
#define MIG_FAULT_A_KILL 2        /* the agent SIGKILLs itself at the point */
#define MIG_FAULT_A_STOP 3        /* the agent is SIGSTOPped at the point for ms */
#define MIG_FAULT_A_NET 4         /* a relay with the net_* toxic (destination side) */
#define MIG_FAULT_A_SKEW 5        /* the agent's realtime clock is off by skew_ms */
#define _MIG_FAULT_A_END 6

struct mig_incoming {
	uint8_t id[16];
	uint8_t secret[MIG_SECRET_LEN];
	char name[MIG_NAME_MAX];
	uint32_t streams;         /* data streams, 1..16 */
	uint32_t encrypt;         /* enum mig_encrypt (stream.h): which streams it takes in clear */
	char listen_host[64];     /* where the destination listens for the source */
	struct mig_lab_wire lab;  /* the VM to prepare (RAM allocated and pre-faulted now) */
	uint32_t flags;           /* MIG_INCOMING_F_* */
	uint32_t pad;
};
_Static_assert(sizeof(struct mig_incoming) == 304, "incoming");
/* Listen on a unix socket, not tcp: both agents are on this host and RAM may
 * be handed over (SCM_RIGHTS needs AF_UNIX); the reply's addr is unix:///PATH */
#define MIG_INCOMING_F_UNIX 1U

struct mig_incoming_reply {
	char addr[128];           /* HOST:PORT the source connects its streams to */
};
_Static_assert(sizeof(struct mig_incoming_reply) == 128, "incoming reply");

struct mig_outgoing {
	uint8_t id[16];
	uint8_t secret[MIG_SECRET_LEN];
	char name[MIG_NAME_MAX];
	char dest_addr[128];
	uint32_t streams;
	uint32_t codec;           /* enum xport_codec (0 is never one) */
	int32_t level;
	uint32_t verify;
	uint64_t downtime_limit_ms;
	uint64_t max_bandwidth_bps;
	uint64_t timeout_ms;
	uint32_t timeout_action;
	uint32_t checksum;        /* enum mig_checksum */
	/* How long the source waits in STOP_COPY, its vCPUs stopped, for the
	 * destination to load the VM before it gives up and resumes; 0 =
	 * derived from the downtime limit (conv_switchover_timeout_ms()). */
	uint64_t switchover_timeout_ms;
	uint32_t encrypt;         /* enum mig_encrypt (stream.h): which streams it seals */
	uint32_t handover;        /* enum mig_handover_mode (--handover) */
	/* Making it converge (conv_params): enum conv_mode, the throttle's
	 * bound (1-99 %), and the stall bounds and action (0: none / by mode) */
	uint32_t converge;
	uint32_t max_throttle_pct;
	uint32_t stall_action;    /* enum conv_stall_action, 0: by mode */
	uint32_t postcopy_after;  /* post-copy: pre-copy rounds first (0: default, 1) */
	uint64_t stall_ms;
	uint64_t stall_bytes;
	uint64_t recover_ms;      /* post-copy: reconnect for this long (0: 10 min) */
};
_Static_assert(sizeof(struct mig_outgoing) == 344, "outgoing");
#define MIG_RECOVER_DEFAULT_MS (10 * 60 * 1000)

/* --handover: hand guest RAM's memfd to a destination on this host instead
 * of copying it (docs/phases.md, "Same-host hand-over") */
enum mig_handover_mode {      /* as enum mig_encrypt: 0 is the default, auto */
	MIG_HANDOVER_AUTO = 0,    /* when both agents share this host and RAM is a memfd */
	MIG_HANDOVER_NEVER = 1,   /* copy */
	MIG_HANDOVER_ALWAYS = 2,  /* hand over, or fail before anything moves */
	_MIG_HANDOVER_MODE_END,
};
const char *mig_handover_mode_to_string(uint32_t m);
int mig_handover_mode_from_string(const char *s);

/* A RESULT's `handover`: whether RAM was handed over, or why not */
enum mig_handover_why {
	MIG_HANDOVER_UNDECIDED = 0,   /* the migration failed before SETUP decided */
	MIG_HANDOVER_DONE = 1,        /* RAM was handed over, not copied */
	MIG_HANDOVER_OFF = 2,         /* --handover never */
	MIG_HANDOVER_NOT_UNIX = 3,    /* the streams are not on a unix socket (another host, tcp) */
	MIG_HANDOVER_NO_MEMFD = 4,    /* the VM's RAM is not in a memfd (ram=anon) */
	MIG_HANDOVER_SEALED = 5,      /* the streams are sealed (--encrypt always) */
	MIG_HANDOVER_PAGE_HOOKS = 6,  /* a device transforms pages on the way (SEV) */
	MIG_HANDOVER_DECLINED = 7,    /* the destination's VM cannot take a memfd */
	_MIG_HANDOVER_WHY_END,
};
/* The reason in words ("" for DONE), NULL outside the enum */
const char *mig_handover_why_to_string(uint32_t w);

/* What the migration's checksums cover (--checksum).  Frame checksums
 * (headers, page lists, device state) are always on; PAGES also checks each
 * page's data, at the cost of one more pass over guest RAM on each side.
 * AUTO is PAGES when the data streams leave the host and FRAMES when both
 * agents share one kernel, where page data never crosses a wire or a NIC.
 * Only the first hop is seen: a forwarder on this host (socat, a DNAT rule)
 * can hide a path that leaves it; ask for PAGES there.  In a RESULT, AUTO
 * means the migration failed before it was resolved. */
enum mig_checksum {
	MIG_CHECKSUM_INVALID = 0,
	MIG_CHECKSUM_PAGES = 1,
	MIG_CHECKSUM_FRAMES = 2,
	MIG_CHECKSUM_AUTO = 3,
	_MIG_CHECKSUM_MAX,
};

/* Names of the values above and of the MIG_RESULT_, MIG_OWNER_, MIG_VM_,
 * MIG_SIDE_ and MIG_MIGRATION_ numbers: NULL (and -EINVAL) outside them. */
const char *mig_checksum_to_string(enum mig_checksum c);
int mig_checksum_from_string(const char *s);
const char *mig_result_to_string(uint32_t r);
const char *mig_owner_to_string(uint32_t o);
const char *mig_vm_state_to_string(uint32_t st);
const char *mig_side_to_string(uint32_t side);
const char *mig_migration_state_to_string(uint32_t st);

struct mig_cancel {
	uint8_t id[16];
};

/* ---- libvirt domains (docs/libvirt.md) ---- */

/* A libvirt domain name as the agents carry it: 1 to 63 bytes, no '/'
 * and no control characters (libvirt allows more; such domains are
 * refused with that reason). */
#define MIG_LV_NAME_MAX 64
/* The destination prepares a tunnel for libvirt's migration of `domain`:
 * a listener for the source's tunnel streams and the run directory in
 * which QEMU will listen. */
struct mig_lv_incoming {
	uint8_t id[16];
	uint8_t secret[MIG_SECRET_LEN];
	char domain[MIG_LV_NAME_MAX];
	char listen_host[64];     /* where the destination listens for the source */
	uint32_t flags;           /* MIG_LV_F_* */
	uint32_t encrypt;         /* enum mig_encrypt (stream.h): which channels must be sealed */
};
_Static_assert(sizeof(struct mig_lv_incoming) == 184, "lv incoming");
struct mig_lv_incoming_reply {
	char addr[128];           /* HOST:PORT the source's tunnel streams connect to */
	char run_dir[128];        /* the sockets' directory: the same path on both hosts */
};
_Static_assert(sizeof(struct mig_lv_incoming_reply) == 256, "lv incoming reply");
#define MIG_LV_F_COPY_STORAGE 1U  /* copy non-shared disks (NBD) too */
/* LV_OUTGOING only: how libvirt's migration is made to converge
 * (start --converge; docs/libvirt.md "Convergence") */
#define MIG_LV_F_AUTO_CONVERGE 2U /* QEMU's auto-converge: it throttles the vCPUs */
#define MIG_LV_F_POSTCOPY 4U      /* post-copy allowed; the source's agent starts it
				   * after postcopy_after memory passes */
/* A figure of a libvirt domain's EVENT that libvirt does not report (the
 * summary prints null). */
#define MIG_LV_UNKNOWN UINT64_MAX

struct mig_lv_outgoing {
	uint8_t id[16];
	uint8_t secret[MIG_SECRET_LEN];
	char domain[MIG_LV_NAME_MAX];
	char dest_addr[128];
	char run_dir[128];
	uint32_t parallel;        /* 1: one QEMU connection; 2..16: libvirt's parallel
				   * connections (QEMU adds its main channel) */
	uint32_t flags;           /* MIG_LV_F_* */
	uint64_t max_bandwidth_bps;   /* 0: libvirt's default */
	uint64_t downtime_limit_ms;   /* 0: libvirt's default */
	uint64_t timeout_ms;      /* 0: none */
	uint32_t timeout_action;  /* CONV_TIMEOUT_ABORT or _FORCE (the guest is paused) */
	uint32_t encrypt;         /* enum mig_encrypt (stream.h): which channels it seals */
	/* MIG_LV_F_POSTCOPY: complete passes over memory before the switch
	 * (0: 1, the bulk copy only) */
	uint32_t postcopy_after;
	uint32_t converge;        /* enum conv_mode asked for, for the summary (0: none) */
};
_Static_assert(sizeof(struct mig_lv_outgoing) == 416, "lv outgoing");

struct mig_lv_domain_ref {
	char domain[MIG_LV_NAME_MAX];
};
_Static_assert(sizeof(struct mig_lv_domain_ref) == 64, "lv domain ref");
struct mig_lv_domain_info {
	uint32_t state;           /* MIG_LV_STATE_* */
	uint32_t persistent;      /* 1: defined on this host */
	char uuid[40];            /* "" when absent */
};
_Static_assert(sizeof(struct mig_lv_domain_info) == 48, "lv domain info");
#define MIG_LV_STATE_ABSENT 1     /* no such domain on this host */
#define MIG_LV_STATE_RUNNING 2
#define MIG_LV_STATE_PAUSED 3     /* exists, vCPUs not running (incoming, suspended) */
#define MIG_LV_STATE_SHUTOFF 4    /* defined, not running */
#define MIG_LV_STATE_OTHER 5      /* crashed, shutting down, pmsuspended */
_Static_assert(sizeof(struct mig_cancel) == 16, "cancel");

/* ---- `migratectl hook`: libvirt's qemu hook (docs/libvirt.md) ---- */

/* The operations libvirt calls its qemu hook with (its second argument). */
enum mig_hook_op {
	MIG_HOOK_OP_INVALID = 0,
	MIG_HOOK_MIGRATE = 1,     /* destination, incoming migration: filters the XML */
	MIG_HOOK_PREPARE = 2,
	MIG_HOOK_START = 3,
	MIG_HOOK_STARTED = 4,
	MIG_HOOK_STOPPED = 5,
	MIG_HOOK_RELEASE = 6,
	MIG_HOOK_RECONNECT = 7,   /* a non-zero exit there kills QEMU */
	MIG_HOOK_RESTORE = 8,     /* filters the XML, as migrate */
	_MIG_HOOK_OP_END,
};
/* "migrate", "prepare", ...: NULL (and -EINVAL) outside the values above. */
const char *mig_hook_op_to_string(enum mig_hook_op op);
int mig_hook_op_from_string(const char *s);


/* HOOK: one call of the qemu hook; xml_len bytes of the domain XML (no
 * NUL) follow, the site's rewrite rules already applied. */
struct mig_hook_call {
	char domain[MIG_LV_NAME_MAX];  /* libvirt's name for it, cut to fit: for messages */
	uint32_t op;              /* enum mig_hook_op */
	uint32_t subop;           /* MIG_HOOK_SUB_* */
	uint32_t flags;           /* MIG_HOOK_F_* */
	uint32_t xml_len;
};
_Static_assert(sizeof(struct mig_hook_call) == 80, "hook call");
#define MIG_HOOK_SUB_OTHER 0      /* "-" or anything else */
#define MIG_HOOK_SUB_BEGIN 1
#define MIG_HOOK_SUB_END 2
#define MIG_HOOK_F_CHECK 1U       /* run the host checks on the XML (migrate/restore begin) */
/* The domain XML a hook call carries, at most: what one REQUEST frame
 * holds besides the call (64 KiB, transport/wire.c); libvirt's domain XML
 * is a few KiB. */
#define MIG_HOOK_XML_MAX (64U * 1024 - (uint32_t)sizeof(struct mig_request) - \
			  (uint32_t)sizeof(struct mig_hook_call))

/* HOOK's answer. */
struct mig_hook_verdict {
	int32_t status;           /* 0: the host takes it; -errno: the first refusal */
	uint32_t refused;         /* checks that refused (all in the agent's log) */
	uint32_t journaled;       /* 1: a journal record was made (seq) */
	uint32_t pad;
	uint64_t seq;
	char host[64];            /* the agent's host name, for the message */
	char uuid[40];            /* the domain's, lowercase ("" when the XML has none) */
	char msg[896];            /* the first refusal: the problem; the fix */
};
_Static_assert(sizeof(struct mig_hook_verdict) == 1024, "hook verdict");

/* VM_DESCRIBE's answer: what a destination prepares the VM from (the
 * description VM_LIST gives too) and its device manifest, as SETUP carries
 * it (struct mig_manifest_entry, <migrate/vm.h>), nr_devices entries after
 * it. */
struct mig_vm_described {
	struct mig_lab_wire lab;
	uint32_t nr_devices;      /* at most MIG_EVENT_DEVICES_MAX */
	uint32_t pad;
};
_Static_assert(sizeof(struct mig_vm_described) == 120, "vm described");

/* VM_CHECK: the VM the source described, nr_devices manifest entries after
 * it.  The destination prepares such a VM as for a migration, runs every
 * policy of every device's class against its host, and gives it up. */
struct mig_vm_check {
	char name[MIG_NAME_MAX];  /* the name it would have here */
	struct mig_vm_described vm;
};
_Static_assert(sizeof(struct mig_vm_check) == 184, "vm check");

/* VM_CHECK's answer: nr_results results after it.  Passing results of one
 * class and policy on consecutive instances come as one (count > 1);
 * refusals each come alone, up to what a reply holds (the rest counted in
 * omitted). */
struct mig_check_reply {
	uint32_t nr_results;
	uint32_t refused;         /* policies that refused, omitted ones included */
	uint32_t omitted;
	uint32_t pad;
};
_Static_assert(sizeof(struct mig_check_reply) == 16, "check reply");

struct mig_check_result {
	uint32_t cls;             /* enum mig_dev_class; 0: the VM as a whole */
	uint32_t instance;        /* the first instance it covers */
	uint32_t count;           /* instances it covers, from instance on */
	int32_t verdict;          /* 0 passes, MIG_CHECK_UNCHECKED, or -errno: refuses */
	char policy[32];          /* "cpuid", "memslots", ... (docs/policies.md) */
	char msg[464];            /* a refusal's reason and what to do */
};
_Static_assert(sizeof(struct mig_check_result) == 512, "check result");
#define MIG_CHECK_UNCHECKED 1     /* the policy could not judge (msg says why) */
/* Results in one reply: REPLY's 64 KiB, less its headers. */
#define MIG_CHECK_RESULTS_MAX 120

/* MIG_LIST: one per migration the agent takes part in, and one per VM it
 * holds after a migration whose outcome is unknown. */
struct mig_migration_info {
	uint8_t id[16];
	char name[MIG_NAME_MAX];  /* the VM */
	char peer[128];           /* source: the destination's HOST:PORT; destination: the source's */
	uint32_t side;            /* MIG_SIDE_SOURCE, MIG_SIDE_DESTINATION */
	uint32_t state;           /* MIG_MIGRATION_RUNNING, MIG_MIGRATION_HELD */
	uint32_t phase;           /* enum mig_phase: the current one, or where a held one ended */
	uint32_t round;
	uint64_t elapsed_ms;      /* since the agent took it on */
	uint64_t ram_bytes;
	uint64_t transferred_bytes;   /* guest bytes sent (source) or received (destination) */
	uint64_t remaining_bytes;     /* source: the policy's estimate */
	uint64_t throughput_bps;
	uint64_t expected_downtime_ms;
	char error[256];          /* held: why the outcome is unknown */
};
_Static_assert(sizeof(struct mig_migration_info) == 528, "migration info");
#define MIG_SIDE_SOURCE 1
#define MIG_SIDE_DESTINATION 2
#define MIG_MIGRATION_RUNNING 1
#define MIG_MIGRATION_HELD 2

/* EVENT payload: progress while running, the result at the end. */
/* On the wire (EVENT, MIG_LIST): 0 is never a phase. */
enum mig_phase {
	MIG_PHASE_INVALID = 0,
	MIG_PHASE_SETUP = 1,
	MIG_PHASE_PRECOPY,
	MIG_PHASE_STOP_COPY,
	MIG_PHASE_COMMIT,
	MIG_PHASE_DONE,
	MIG_PHASE_ROLLBACK,
	/* after COMMIT, the VM runs on the destination while the pages left
	 * come: split between the hosts until the last is placed */
	MIG_PHASE_POSTCOPY,
	_MIG_PHASE_MAX,
};

#define MIG_EVENT_PROGRESS 1
#define MIG_EVENT_RESULT 2

#define MIG_RESULT_COMPLETED 1
#define MIG_RESULT_FAILED 2
#define MIG_RESULT_CANCELLED 3

#define MIG_OWNER_SOURCE 1
#define MIG_OWNER_DESTINATION 2
#define MIG_OWNER_NONE 3          /* could not be settled: operator needed */

struct mig_event {
	uint32_t kind;            /* MIG_EVENT_* */
	uint32_t phase;           /* enum mig_phase */
	uint32_t round;
	uint32_t result;          /* MIG_RESULT_* (RESULT only) */
	uint32_t owner;           /* MIG_OWNER_* (RESULT only) */
	uint32_t streams;
	uint32_t codec;
	uint32_t verified;        /* 1 when verify ran */
	uint32_t nr_devices;      /* RESULT: struct mig_event_device records after it */
	uint32_t handover;        /* RESULT: enum mig_handover_why */
	uint64_t elapsed_ms;
	uint64_t remaining_bytes;
	uint64_t dirty_rate_bps;
	uint64_t throughput_bps;
	uint64_t expected_downtime_ms;
	/* RESULT */
	uint64_t total_ms;
	uint64_t setup_ms;
	uint64_t downtime_ms;
	uint64_t ram_total_bytes;
	uint64_t transferred_bytes;   /* guest bytes carried (pages x 4096, before compression) */
	uint64_t wire_bytes;
	uint64_t zero_pages;
	uint64_t normal_pages;
	uint64_t phase_start_ms[_MIG_PHASE_MAX];
	uint64_t phase_duration_ms[_MIG_PHASE_MAX];
	uint64_t vcpu_state_bytes;
	uint64_t digest_src[2];
	uint64_t digest_dst[2];
	uint64_t dst_passes_before;
	uint64_t dst_passes_after;
	uint64_t dst_errors;
	uint64_t rejected_streams;
	uint64_t src_cpu_ms;          /* CPU of the migration threads (main and streams) on each side */
	uint64_t dst_cpu_ms;
	uint64_t precopy_wire_bytes;
	uint64_t verify_ms;           /* blackout spent verifying, excluded from downtime_ms */
	uint64_t torn_pages;          /* pages the guest wrote while they were being sent */
	uint32_t checksum;            /* enum mig_checksum in use (auto resolves to one) */
	uint32_t same_host;           /* 1 when the data streams stay on one host */
	char error[512];
	/* RESULT: 1 when the source keeps the VM paused and held (owner none):
	 * only an operator's MIG_OP_VM_RESOLVE moves it from there. */
	uint32_t src_held;
	uint32_t encrypted;           /* 1 when the migration's streams were sealed */
	uint64_t switchover_timeout_ms;   /* the deadline STOP_COPY had */
	/* RESULT: what KVM counted on the source during PRECOPY (kvm_valid 0:
	 * its kernel has no binary statistics, or PRECOPY never began) */
	uint64_t kvm_exits;
	uint64_t kvm_page_faults;
	uint64_t kvm_halt_exits;
	uint64_t kvm_remote_tlb_flushes;
	uint32_t kvm_valid;
	uint32_t pad2;
	/* and of its vCPUs' halts (summed): halt polling, and the time asleep */
	uint64_t kvm_halt_successful_polls;
	uint64_t kvm_halt_attempted_polls;
	uint64_t kvm_halt_poll_success_ns;
	uint64_t kvm_halt_poll_fail_ns;
	uint64_t kvm_halt_wait_ns;
	uint32_t kvm_vcpus;
	/* Per mille of the vCPUs' time since PRECOPY began spent halted
	 * (polling or asleep): how idle the guest was.  MIG_KVM_HALTED_UNKNOWN
	 * where the kernel does not count halt times. */
	uint32_t kvm_halted_permille;
	/* Convergence (PRECOPY on the source): the throttle on the vCPUs (the
	 * most any had: now in PROGRESS, the most applied in RESULT), the
	 * mode in use (enum conv_mode), what a stall made it do (enum
	 * conv_stall_action, 0: no stall) and when (ms into PRECOPY), how long
	 * a throttle was on, and the guest's progress per second (its
	 * health's `progress`): lately in PROGRESS, over PRECOPY in RESULT,
	 * and over the part of PRECOPY no throttle slowed (0: unknown). */
	uint32_t throttle_pct;
	uint32_t converge;
	uint32_t stall_action;
	uint32_t pad3;
	uint64_t stall_ms;
	uint64_t throttle_ms;
	uint64_t guest_rate;
	uint64_t guest_rate_free;
	/* Post-copy (RESULT): 1 when the VM started on the destination before
	 * all its pages were there, after how many pre-copy rounds; pages sent
	 * after the start, pages the vCPUs asked for, their faults, the longest
	 * any vCPU waited for a page, and the start-to-last-page time. */
	uint32_t postcopy;
	uint32_t postcopy_round;
	uint64_t postcopy_pages;
	uint64_t postcopy_requested;
	uint64_t postcopy_faults;
	uint64_t postcopy_worst_stall_us;
	uint64_t postcopy_ms;
	uint64_t postcopy_served; /* pages sent as asked for, ahead of the push */
	uint64_t postcopy_breaks; /* links lost in post-copy and made again */
	uint64_t postcopy_guest_rate; /* the guest's progress per second meanwhile */
};
_Static_assert(sizeof(struct mig_event) == 1128, "event");
#define MIG_KVM_HALTED_UNKNOWN UINT32_MAX

/* RESULT: after struct mig_event, one per device of the source VM, as the
 * engine left it. */
struct mig_event_device {
	uint32_t cls;             /* enum mig_dev_class */
	uint32_t id;              /* instance within its class */
	uint32_t state;           /* the class's state at the end */
	uint32_t notes;           /* bits the class names (note_names) */
	uint64_t bytes;           /* its state sent; guest RAM: the pages' wire bytes */
};
_Static_assert(sizeof(struct mig_event_device) == 24, "event device");
#define MIG_EVENT_DEVICES_MAX 128

#endif
