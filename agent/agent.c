// SPDX-License-Identifier: MIT
/*
 * The agent: hosts lab VMs and is the source or destination of migrations.
 * An accept loop hands each control connection to a thread that
 * authenticates the peer and then serves requests through a handler table
 * indexed by operation.
 *
 * The VMs live in this process, so no client may make it exit or starve
 * it: the accept loop survives every transient error, and connections are
 * bounded (AGENT_MAX_* in agent.h) before they get a thread.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/engine.h>
#include <migrate/relay.h>
#include <migrate/wire-order.h>

#include "agent-internal.h"
#include "fault.h"
#include "journal.h"
#include "util.h"

#define AGENT_MAX_MIGRATIONS 16
#define FILL_TIMEOUT_MS 300000
/* The watchdog shuts down a handshake this long after its deadline: by
 * then the session thread, which watches the deadline itself, has failed
 * to end it (a frame begun just before, or a send that does not finish). */
#define AGENT_HANDSHAKE_GRACE_MS 1000
/* A shortage of descriptors or memory leaves the connection queued: pause
 * before the next accept() instead of spinning on it. */
#define AGENT_ACCEPT_BACKOFF_MS 100
/* The accept loop wakes at least this often for the watchdog and logs. */
#define AGENT_TICK_MS 1000
/* A burst of refusals or errors ends after this long without one. */
#define AGENT_LOG_QUIET_MS 10000
/* A destination's cancel waits this long for the migration to give its VM
 * back (under the start command's own bound for the call, 2 s). */
#define CANCEL_WAIT_MS 1500

/* One line to the caller's log, if it keeps one. */
void agent_log(const struct agent *a, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (!a->opts.log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	a->opts.log(a->opts.log_arg, line);
}

/* body: exactly the size the handler table names (checked by the dispatcher) */
typedef int (*op_handler)(struct session *s, const uint8_t *body);

int agent_reply(struct session *s, int status, const char *msg, const void *extra, size_t n)
{
	struct mig_buf b = { 0 };
	struct mig_reply r = { .status = (int32_t)htole32((uint32_t)status) };
	int rc;

	str_copy(r.msg, sizeof(r.msg), msg ? msg : "");
	if (mig_buf_append(&b, &r, sizeof(r)) < 0 || (n && mig_buf_append(&b, extra, n) < 0)) {
		mig_buf_free(&b);
		return -ENOMEM;
	}
	rc = xport_conn_send(&s->c, MIG_FRAME_REPLY, 0, b.data, b.len, NULL);
	mig_buf_free(&b);
	return rc;
}

bool mig_vm_name_ok(const char *n, size_t cap)
{
	size_t len = strnlen(n, cap);

	if (len == 0 || len == cap)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(n[i] == '-' || n[i] == '_' || n[i] == '.' || (n[i] >= '0' && n[i] <= '9') ||
		      (n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z')))
			return false;
	return true;
}

static struct agent_vm *vm_find(struct agent *a, const char *name)
{
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++)
		if (a->vms[i].vm && !strcmp(a->vms[i].name, name))
			return &a->vms[i];
	return NULL;
}

/* Reserve a slot under a name (vm NULL, busy) so two requests cannot race. */
static struct agent_vm *vm_reserve(struct agent *a, const char *name, int *r)
{
	struct agent_vm *free_slot = NULL;

	for (unsigned i = 0; i < AGENT_MAX_VMS; i++) {
		if ((a->vms[i].vm || a->vms[i].busy) && !strcmp(a->vms[i].name, name)) {
			*r = -EEXIST;
			return NULL;
		}
		if (!a->vms[i].vm && !a->vms[i].busy && !free_slot)
			free_slot = &a->vms[i];
	}
	if (!free_slot) {
		*r = -ENOSPC;
		return NULL;
	}
	str_copy(free_slot->name, sizeof(free_slot->name), name);
	free_slot->busy = true;
	return free_slot;
}

/* Give up a slot reserved by vm_reserve() that never got its VM. */
static void slot_drop(struct agent *a, struct agent_vm *slot)
{
	pthread_mutex_lock(&a->lock);
	slot->busy = false;
	slot->name[0] = '\0';
	pthread_mutex_unlock(&a->lock);
}

/* Why a held VM refuses what was asked of it, and what the operator does
 * about it.  Returns -ENOTRECOVERABLE: nothing but an operator's decision
 * helps, and retrying does not. */
static int held_error(const struct agent_vm *v, char *msg, size_t n, const char *what)
{
	char id[37];

	uuid_unparse_lower(v->held_by, id);
	snprintf(msg, n, "VM %s is held paused here: migration %s to %.100s ended with "
		 "ownership unknown; it cannot %s until an operator checks whether it runs "
		 "there, then resumes it here (vm resume) or discards this copy (vm discard), "
		 "naming that migration", v->name, id, v->held_peer, what);
	return -ENOTRECOVERABLE;
}

/* Journal vm's vCPUs (journal.h); a VM it cannot tag still runs, and the
 * log says its records lack the tag (or, for a new VM, are missing). */
static void journal_watch(struct agent *a, struct mig_vm *vm, const char *name,
			  const uint8_t *mig_id)
{
	if (agent_journal_watch(a->journal, vm, name, mig_id) < 0)
		agent_log(a, "VM %s: out of memory for its journal tag; its vCPU starts and "
			  "stops are journaled under its previous tag, or not at all", name);
}

static int op_vm_create(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_vm_create req;
	struct mig_error err = { 0 };
	struct agent_vm *slot;
	struct mig_vm *vm = NULL;
	int r = 0;

	memcpy(&req, body, sizeof(req));
	if (!mig_vm_name_ok(req.name, sizeof(req.name)))
		return agent_reply(s, -EINVAL, "VM name must be 1-63 characters of [A-Za-z0-9._-]", NULL, 0);
	req.spec[sizeof(req.spec) - 1] = '\0';
	pthread_mutex_lock(&a->lock);
	slot = vm_reserve(a, req.name, &r);
	pthread_mutex_unlock(&a->lock);
	if (!slot)
		return agent_reply(s, r, r == -EEXIST ? "a VM of that name exists on this agent" :
			     "this agent hosts its maximum number of VMs", NULL, 0);
	/* The backend answers once the guest runs its workload. */
	r = a->backend->create(req.spec, &vm, &err);
	if (r >= 0)
		journal_watch(a, vm, req.name, NULL);
	pthread_mutex_lock(&a->lock);
	if (r >= 0)
		slot->vm = vm;
	slot->busy = false;
	if (r < 0)
		slot->name[0] = '\0';
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		return agent_reply(s, r, err.msg, NULL, 0);
	return agent_reply(s, 0, NULL, NULL, 0);
}

static int op_vm_list(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_vm_info info[AGENT_MAX_VMS];
	unsigned n = 0;

	(void)body;
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++) {
		struct agent_vm *v = &a->vms[i];
		struct mig_vm_summary sum;
		struct mig_vm_health h;
		size_t dl = 0;

		if (!v->vm)
			continue;
		a->backend->summary(v->vm, &sum);
		v->vm->ops->health(v->vm, &h);
		memset(&info[n], 0, sizeof(info[n]));
		str_copy(info[n].name, sizeof(info[n].name), v->name);
		info[n].state = v->busy ? MIG_VM_MIGRATING : v->held ? MIG_VM_HELD :
				mig_vm_is_running(v->vm) ? MIG_VM_RUNNING : MIG_VM_PAUSED;
		if (v->held) {
			memcpy(info[n].held_by, v->held_by, sizeof(info[n].held_by));
			str_copy(info[n].held_peer, sizeof(info[n].held_peer), v->held_peer);
		}
		info[n].vcpus = sum.vcpus;
		info[n].mem_bytes = sum.mem_bytes;
		info[n].wss_bytes = sum.workload_bytes;
		info[n].passes = h.passes;
		info[n].errors = h.errors;
		/* what a destination is prepared from */
		_Static_assert(sizeof(info[n].lab) <= MIG_VM_DESC_MAX, "description");
		v->vm->ops->describe(v->vm, (uint8_t *)&info[n].lab, &dl, NULL);
		n++;
	}
	pthread_mutex_unlock(&a->lock);
	mig_wire_le(&mig_wl_vm_info, info, n);
	return agent_reply(s, 0, NULL, info, n * sizeof(info[0]));
}

static int op_vm_destroy(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_vm_ref req;
	struct agent_vm *v;
	struct mig_vm *vm = NULL;
	char msg[480];
	int r = 0;

	memcpy(&req, body, sizeof(req));
	req.name[sizeof(req.name) - 1] = '\0';
	pthread_mutex_lock(&a->lock);
	v = vm_find(a, req.name);
	if (!v)
		r = -ENOENT;
	else if (v->busy)
		r = -EBUSY;
	else if (v->held)
		r = held_error(v, msg, sizeof(msg), "destroy");
	else {
		vm = v->vm;
		v->vm = NULL;
		v->name[0] = '\0';
	}
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		return agent_reply(s, r, r == -ENOENT ? "no VM of that name on this agent" :
			     r == -EBUSY ? "the VM is being migrated; cancel the migration first" :
			     msg, NULL, 0);
	vm->ops->destroy(vm);
	return agent_reply(s, 0, NULL, NULL, 0);
}

/* A free migration slot, taken for `id` (under the lock); NULL if none. */
struct agent_mig *mig_take(struct agent *a, const uint8_t id[16], uint32_t side,
			   const char *name, const char *peer, uint64_t ram_bytes)
{
	unsigned outgoing = 0;
	struct agent_mig *m = NULL;

	for (unsigned i = 0; i < ARRAY_SIZE(a->migs); i++) {
		if (!a->migs[i].used && !m)
			m = &a->migs[i];
		outgoing += a->migs[i].used && a->migs[i].side == MIG_SIDE_SOURCE;
	}
	if (!m || (side == MIG_SIDE_SOURCE && outgoing >= AGENT_MAX_MIGRATIONS))
		return NULL;
	memset(m, 0, sizeof(*m));
	m->used = true;
	memcpy(m->id, id, 16);
	m->side = side;
	str_copy(m->name, sizeof(m->name), name);
	str_copy(m->peer, sizeof(m->peer), peer);
	m->t0_ms = mig_now_ms();
	m->ram_bytes = ram_bytes;
	atomic_store(&m->cancel, false);
	return m;
}

void mig_drop(struct agent *a, struct agent_mig *m)
{
	pthread_mutex_lock(&a->lock);
	m->used = false;
	pthread_mutex_unlock(&a->lock);
}

struct incoming {
	struct agent *a;
	struct mig_in_opts o;
	struct agent_vm *slot;
	struct agent_mig *mig;
	struct mig_dest_status status;
	struct agent_fault *fault;   /* --chaos: this migration's plan (NULL: none) */
	struct chaos_relay *relay;   /* --chaos, a net plan: what the source connects to */
	char sock[108];              /* MIG_INCOMING_F_UNIX: the listener's path ("": tcp) */
};

/* --chaos: the plan armed for the next migration of VM name, if any, as
 * the engine's fault hook. */
void agent_fault_attach(struct agent *a, const char *name, struct agent_fault **ret,
			mig_fault_fn *fn, void **arg)
{
	*ret = a->opts.chaos ? agent_faults_take(&a->faults, name) : NULL;
	if (!*ret)
		return;
	agent_log(a, "chaos: the migration of %s carries a %s fault", name,
		  mig_fault_action_name((*ret)->plan.action));
	*fn = agent_fault_hook;
	*arg = *ret;
}

int agent_relay_begin(struct agent *a, const struct agent_fault *f, const char *name,
		      const char *host, char *addr, size_t n, struct chaos_relay **ret,
		      struct mig_error *err)
{
	const struct mig_fault_plan *p = f ? &f->plan : NULL;
	struct chaos_net_spec spec;
	char to[128];

	*ret = NULL;
	if (!p || p->action != MIG_FAULT_A_NET)
		return 0;
	spec = (struct chaos_net_spec){
		.fault = (enum chaos_net_fault)p->net_fault, .stream = p->net_stream,
		.to_source = p->net_to_source, .frame_type = (uint16_t)p->net_frame_type,
		.frame = p->net_frame, .byte = p->net_byte, .conn = p->net_conn, .ms = p->ms,
		.jitter_ms = p->net_jitter_ms, .rate = p->net_rate, .data = p->net_data,
		.seed = p->seed,
	};
	str_copy(to, sizeof(to), addr);
	if (chaos_relay_start(host, to, &spec, ret, addr, n, err) < 0)
		return -1;
	agent_log(a, "chaos: relay %s -> %s with a %s toxic for the migration of %s", addr, to,
		  chaos_net_fault_name(spec.fault), name);
	return 0;
}

void agent_relay_end(struct agent *a, struct agent_fault *f, struct chaos_relay **relay)
{
	struct chaos_relay_report rep;

	if (!*relay)
		return;
	chaos_relay_report(*relay, &rep);
	if (rep.fired) {
		agent_fault_fired(f, rep.what);
		agent_log(a, "chaos: relay fired: %s", rep.what);
	} else {
		agent_log(a, "chaos: relay did not fire (%u connections, %llu bytes up, %llu "
			  "down)", rep.conns, (unsigned long long)rep.bytes_up,
			  (unsigned long long)rep.bytes_down);
	}
	chaos_relay_stop(*relay);
	*relay = NULL;
}

static void *incoming_thread(void *arg)
{
	struct incoming *in = arg;
	struct agent *a = in->a;
	struct mig_vm *vm = NULL;
	struct mig_error err = { 0 };
	int r;

	r = mig_dest_run(&in->o, &vm, &err);
	close(in->o.listen_fd);
	if (in->sock[0])
		unlink(in->sock);
	pthread_mutex_lock(&a->lock);
	if (vm)
		in->slot->vm = vm;
	if (r < 0 && vm) {
		/* Post-copy broke: this half of the VM runs here, its vCPUs
		 * waiting on the pages the source still holds.  Kept as it is,
		 * held for an operator (docs/phases.md §2.2). */
		char peer[sizeof(in->slot->held_peer)];

		mig_dest_status_read(&in->status, &(uint32_t){ 0 }, &(uint32_t){ 0 },
				     &(uint64_t){ 0 }, peer, sizeof(peer));
		in->slot->held = true;
		memcpy(in->slot->held_by, in->o.id, sizeof(in->slot->held_by));
		str_copy(in->slot->held_peer, sizeof(in->slot->held_peer), peer);
		str_copy(in->slot->held_why, sizeof(in->slot->held_why), err.msg);
		in->slot->held_phase = MIG_PHASE_POSTCOPY;
		in->slot->held_pc_dst = true;
	}
	in->slot->busy = false;
	if (r < 0 && !vm)
		in->slot->name[0] = '\0';
	in->mig->used = false;
	in->mig->dst = NULL;
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		agent_log(a, "incoming migration of %s failed: %s", in->o.name, err.msg);
	agent_relay_end(a, in->fault, &in->relay);
	agent_fault_end(in->fault);
	free(in);
	return NULL;
}

/* An incoming migration that will not run: everything it holds, given back. */
static void incoming_drop(struct agent *a, struct incoming *in, int fd)
{
	agent_relay_end(a, in->fault, &in->relay);
	agent_fault_end(in->fault);
	if (fd >= 0)
		close(fd);
	if (in->sock[0])
		unlink(in->sock);
	in->o.vm->ops->destroy(in->o.vm);
	mig_drop(a, in->mig);
	slot_drop(a, in->slot);
	free(in);
}

static int op_mig_incoming(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_incoming req;
	struct mig_incoming_reply rep = { 0 };
	struct mig_error err = { 0 };
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP };
	struct incoming *in;
	pthread_t t;
	int fd, r = 0;

	memcpy(&req, body, sizeof(req));
	mig_wire_le(&mig_wl_incoming, &req, 1);
	req.listen_host[sizeof(req.listen_host) - 1] = '\0';
	if (!mig_vm_name_ok(req.name, sizeof(req.name)) || req.encrypt >= _MIG_ENCRYPT_END ||
	    (req.flags & ~MIG_INCOMING_F_UNIX) || req.streams < 1 ||
	    req.streams > MIG_MAX_STREAMS)
		return agent_reply(s, -EINVAL, "MIG_INCOMING: bad VM name, stream count (1-16) or "
				   "encryption", NULL, 0);
	in = calloc(1, sizeof(*in));
	if (!in)
		return agent_reply(s, -ENOMEM, "out of memory", NULL, 0);
	pthread_mutex_lock(&a->lock);
	in->slot = vm_reserve(a, req.name, &r);
	if (in->slot) {
		in->mig = mig_take(a, req.id, MIG_SIDE_DESTINATION, req.name, "", req.lab.mem_bytes);
		if (!in->mig) {
			in->slot->busy = false;
			in->slot->name[0] = '\0';
			in->slot = NULL;
			r = -ENOSPC;
		}
	}
	pthread_mutex_unlock(&a->lock);
	if (!in->slot) {
		free(in);
		return agent_reply(s, r, r == -EEXIST ? "a VM of that name already exists on the "
			     "destination" : "the destination hosts its maximum number of VMs", NULL, 0);
	}
	/* Prepare the VM now, before the source starts: its RAM must be
	 * allocated and pre-faulted before pages arrive, and that is the
	 * destination's preparation, not part of the migration. */
	{
		r = a->backend->prepare((const uint8_t *)&req.lab, sizeof(req.lab), &in->o.vm, &err);
		/* A VM whose RAM may be handed over waits for SETUP with it
		 * unfaulted; one that will be copied into is faulted in now. */
		if (r >= 0 && !(req.flags & MIG_INCOMING_F_UNIX) && in->o.vm->ops->ram_adopt) {
			r = in->o.vm->ops->ram_adopt(in->o.vm, -1, &err);
			if (r < 0)
				in->o.vm->ops->destroy(in->o.vm);
		}
		if (r < 0) {
			mig_drop(a, in->mig);
			slot_drop(a, in->slot);
			free(in);
			return agent_reply(s, r, err.msg, NULL, 0);
		}
		journal_watch(a, in->o.vm, req.name, req.id);
	}
	if (req.flags & MIG_INCOMING_F_UNIX) {
		/* both agents on this host: a unix socket, so that guest RAM can
		 * be handed over (SCM_RIGHTS), private to this user (0600) */
		const char *tmp = getenv("TMPDIR");
		char hex[33];

		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", req.id[i]);
		ep.kind = XPORT_EP_UNIX;
		snprintf(ep.path, sizeof(ep.path), "%s/migratectl-%d-%.16s.sock",
			 tmp && tmp[0] == '/' && strlen(tmp) < 48 ? tmp : "/tmp", (int)getpid(), hex);
		str_copy(in->sock, sizeof(in->sock), ep.path);
	} else {
		str_copy(ep.host, sizeof(ep.host), req.listen_host[0] ? req.listen_host :
			 "127.0.0.1");
		ep.port = 0;
	}
	fd = xport_listen(&ep, &err);
	if (fd >= 0 && xport_local_addr(fd, rep.addr, sizeof(rep.addr)) < 0) {
		close(fd);
		fd = mig_error_set(&err, -EIO, "cannot read the listening address");
	}
	if (fd < 0) {
		incoming_drop(a, in, -1);
		return agent_reply(s, fd, err.msg, NULL, 0);
	}
	in->a = a;
	memcpy(in->o.id, req.id, 16);
	memcpy(in->o.secret, req.secret, MIG_SECRET_LEN);
	str_copy(in->o.name, sizeof(in->o.name), req.name);
	in->o.streams = req.streams;
	in->o.encrypt = req.encrypt;
	in->o.listen_fd = fd;
	in->o.status = &in->status;
	in->o.cancel = &in->mig->cancel;
	agent_fault_attach(a, req.name, &in->fault, &in->o.fault, &in->o.fault_arg);
	if (!in->sock[0] && agent_relay_begin(a, in->fault, req.name, ep.host, rep.addr, sizeof(rep.addr),
			      &in->relay, &err) < 0) {
		incoming_drop(a, in, fd);
		return agent_reply(s, -EIO, err.msg, NULL, 0);
	}
	pthread_mutex_lock(&a->lock);
	in->mig->dst = &in->status;
	pthread_mutex_unlock(&a->lock);
	if (pthread_create(&t, NULL, incoming_thread, in)) {
		incoming_drop(a, in, fd);
		return agent_reply(s, -EAGAIN, "cannot start the receiving thread", NULL, 0);
	}
	pthread_detach(t);
	return agent_reply(s, 0, NULL, &rep, sizeof(rep));
}

struct outgoing {
	struct session *s;
	struct agent_mig *m;
};

/* The engine's events go to the client that asked for the migration, and
 * the latest progress stays here for MIG_LIST (the client may be gone). */
static void send_event(const struct mig_event *ev, void *arg)
{
	struct outgoing *og = arg;
	struct mig_event w = *ev;

	if (ev->kind == MIG_EVENT_PROGRESS) {
		pthread_mutex_lock(&og->s->a->lock);
		og->m->last = *ev;
		pthread_mutex_unlock(&og->s->a->lock);
	}
	mig_wire_le(&mig_wl_event, &w, 1);
	xport_conn_send(&og->s->c, MIG_FRAME_EVENT, 0, &w, sizeof(w), NULL);
}

/* RESULT: the event and each device of the source VM after it. */
void agent_send_result(struct session *s, const struct mig_event *res,
			const struct mig_event_device *devs)
{
	struct mig_buf b = { 0 };

	if (mig_buf_append(&b, res, sizeof(*res)) >= 0 &&
	    mig_buf_append(&b, devs, res->nr_devices * sizeof(*devs)) >= 0) {
		mig_wire_le(&mig_wl_event, b.data, 1);
		mig_wire_le(&mig_wl_event_device, b.data + sizeof(*res), res->nr_devices);
		xport_conn_send(&s->c, MIG_FRAME_EVENT, 0, b.data, b.len, NULL);
	}
	mig_buf_free(&b);
}

static int op_mig_outgoing(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_outgoing req;
	struct mig_out_opts o = { 0 };
	struct mig_event res;
	struct agent_vm *v;
	struct agent_mig *m = NULL;
	struct outgoing og;
	struct mig_event_device devs[MIG_EVENT_DEVICES_MAX];
	struct agent_fault *fault = NULL;
	struct mig_vm *gone = NULL;
	char msg[480] = "";
	int r = 0;

	memcpy(&req, body, sizeof(req));
	mig_wire_le(&mig_wl_outgoing, &req, 1);
	req.name[sizeof(req.name) - 1] = '\0';
	req.dest_addr[sizeof(req.dest_addr) - 1] = '\0';
	/* 0 is never a codec, an action or a checksum mode */
	if (req.streams < 1 || req.streams > MIG_MAX_STREAMS || req.codec < XPORT_CODEC_NONE ||
	    req.codec > XPORT_CODEC_AUTO || req.timeout_action < CONV_TIMEOUT_ABORT ||
	    req.timeout_action > CONV_TIMEOUT_FORCE || req.checksum < MIG_CHECKSUM_PAGES ||
	    req.checksum > MIG_CHECKSUM_AUTO || req.encrypt >= _MIG_ENCRYPT_END ||
	    req.handover >= _MIG_HANDOVER_MODE_END)
		return agent_reply(s, -EINVAL, "MIG_OUTGOING: bad streams, codec, timeout action, "
			     "checksum mode, encryption or hand-over mode", NULL, 0);
	/* 0: what a caller that predates them means (rounds only, the default bound) */
	if (!req.converge)
		req.converge = CONV_MODE_NONE;
	if (!req.max_throttle_pct)
		req.max_throttle_pct = CONV_DEFAULT_MAX_THROTTLE;
	if (req.converge >= _CONV_MODE_MAX || req.max_throttle_pct > CONV_DEFAULT_MAX_THROTTLE ||
	    req.stall_action >= _CONV_STALL_ACTION_MAX)
		return agent_reply(s, -EINVAL, "MIG_OUTGOING: bad convergence mode, throttle bound "
			     "or stall action", NULL, 0);
	pthread_mutex_lock(&a->lock);
	v = vm_find(a, req.name);
	if (!v)
		r = -ENOENT;
	else if (v->busy)
		r = -EBUSY;
	else if (v->held)
		r = held_error(v, msg, sizeof(msg), "migrate");
	if (r == 0) {
		m = mig_take(a, req.id, MIG_SIDE_SOURCE, req.name, req.dest_addr,
			     v->vm->ram_bytes);
		if (m)
			m->last.phase = MIG_PHASE_SETUP;   /* until its first event */
		if (!m)
			r = -EAGAIN;
	}
	if (r == 0)
		v->busy = true;
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		return agent_reply(s, r, r == -ENOENT ? "no VM of that name on the source agent" :
			     r == -EBUSY ? "the VM is already being migrated" :
			     r == -EAGAIN ? "too many migrations on this agent" : msg, NULL, 0);
	r = agent_reply(s, 0, NULL, NULL, 0);
	/* its vCPUs' stops and any restart are this migration's */
	journal_watch(a, v->vm, req.name, req.id);
	memcpy(o.id, req.id, 16);
	memcpy(o.secret, req.secret, MIG_SECRET_LEN);
	str_copy(o.name, sizeof(o.name), req.name);
	str_copy(o.dest_addr, sizeof(o.dest_addr), req.dest_addr);
	o.streams = req.streams;
	o.compress.codec = (enum xport_codec)req.codec;
	o.compress.level = req.level;
	o.verify = req.verify;
	o.checksum = (enum mig_checksum)req.checksum;
	o.encrypt = req.encrypt;
	o.handover = req.handover;
	conv_params_default(&o.conv);
	o.conv.downtime_limit_ms = req.downtime_limit_ms;
	o.conv.max_bandwidth_bps = req.max_bandwidth_bps;
	o.conv.timeout_ms = req.timeout_ms;
	o.conv.timeout_action = (enum conv_timeout_action)req.timeout_action;
	o.conv.mode = (enum conv_mode)req.converge;
	o.conv.max_throttle_pct = req.max_throttle_pct;
	o.conv.stall_action = (enum conv_stall_action)req.stall_action;
	o.conv.postcopy_after = req.postcopy_after;
	o.recover_ms = req.recover_ms;
	o.conv.stall_ms = req.stall_ms;
	o.conv.stall_bytes = req.stall_bytes;
	o.switchover_timeout_ms = req.switchover_timeout_ms;
	og = (struct outgoing){ s, m };
	agent_fault_attach(a, req.name, &fault, &o.fault, &o.fault_arg);
	mig_source_run(v->vm, &o, &m->cancel, send_event, &og, &res, devs);
	agent_fault_end(fault);
	/* The VM's state here is settled before the client hears the result,
	 * so that a start made right after it finds the VM free (or gone). */
	pthread_mutex_lock(&a->lock);
	if (!res.src_held && (res.result == MIG_RESULT_COMPLETED ||
			      (res.result == MIG_RESULT_FAILED &&
			       res.owner == MIG_OWNER_DESTINATION))) {
		/* The destination owns the VM now: the source copy (stopped)
		 * goes, once the result is sent. */
		gone = v->vm;
		v->vm = NULL;
		v->name[0] = '\0';
	} else if (res.src_held) {
		/* Nobody knows where it runs: keep it paused for an operator. */
		v->held = true;
		memcpy(v->held_by, req.id, sizeof(v->held_by));
		str_copy(v->held_peer, sizeof(v->held_peer), req.dest_addr);
		str_copy(v->held_why, sizeof(v->held_why), res.error);
		v->held_phase = res.phase;
	}
	v->busy = false;
	m->used = false;
	pthread_mutex_unlock(&a->lock);
	agent_send_result(s, &res, devs);
	if (gone)
		gone->ops->destroy(gone);
	return r;
}

/* Whether migration `id` still runs on this agent's side `side`. */
static bool mig_runs(struct agent *a, const uint8_t *id, uint32_t side)
{
	bool runs = false;

	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < ARRAY_SIZE(a->migs) && !runs; i++)
		runs = a->migs[i].used && a->migs[i].side == side && !memcmp(a->migs[i].id, id, 16);
	pthread_mutex_unlock(&a->lock);
	return runs;
}

static int op_mig_cancel(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_cancel req;
	bool dst = false;
	int r = -ENOENT;

	memcpy(&req, body, sizeof(req));
	pthread_mutex_lock(&a->lock);
	/* On a destination it calls off a migration whose source never came
	 * (a start that gave up): its wait for the streams ends; once they are
	 * in, only the source decides. */
	for (unsigned i = 0; i < ARRAY_SIZE(a->migs); i++)
		if (a->migs[i].used && !memcmp(a->migs[i].id, req.id, 16)) {
			atomic_store(&a->migs[i].cancel, true);
			dst |= a->migs[i].side == MIG_SIDE_DESTINATION;
			r = 0;
		}
	pthread_mutex_unlock(&a->lock);
	/* The VM it prepared, and its name, are given back as its engine
	 * ends: the reply waits for that (bounded), so that the start which
	 * gave up returns with this destination ready for the next one. */
	for (uint64_t end = mig_now_ms() + CANCEL_WAIT_MS;
	     dst && mig_runs(a, req.id, MIG_SIDE_DESTINATION) && mig_now_ms() < end;)
		usleep(5000);
	return agent_reply(s, r, r < 0 ? "no migration with that id runs on this agent (migratectl "
		     "migrations lists them; cancel on the source agent)" : NULL, NULL, 0);
}

/* An operator settles a held VM: resume it here, or discard this copy.
 * The request must name the migration that left it held, so a decision
 * made about one migration cannot land on the outcome of another. */
static int op_vm_resolve(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_vm_resolve req;
	struct mig_error err = { 0 };
	struct agent_vm *v;
	struct mig_vm *vm = NULL;
	char msg[480] = "", want[37], got[37];
	int r = 0;

	memcpy(&req, body, sizeof(req));
	mig_wire_le(&mig_wl_vm_resolve, &req, 1);
	if (!mig_vm_name_ok(req.name, sizeof(req.name)) ||
	    (req.action != MIG_RESOLVE_RESUME && req.action != MIG_RESOLVE_DISCARD))
		return agent_reply(s, -EINVAL, "VM_RESOLVE: bad VM name or action", NULL, 0);
	uuid_unparse_lower(req.id, got);
	pthread_mutex_lock(&a->lock);
	v = vm_find(a, req.name);
	if (!v) {
		r = -ENOENT;
		snprintf(msg, sizeof(msg), "no VM named %s on this agent", req.name);
	} else if (v->busy) {
		r = -EBUSY;
		snprintf(msg, sizeof(msg), "VM %s is being migrated", req.name);
	} else if (!v->held) {
		r = -EINVAL;
		snprintf(msg, sizeof(msg), "VM %s is not held: no migration left its outcome "
			 "unknown, so there is nothing to resolve", req.name);
	} else if (memcmp(v->held_by, req.id, 16)) {
		uuid_unparse_lower(v->held_by, want);
		r = -EINVAL;
		snprintf(msg, sizeof(msg), "VM %s is held by migration %s, not %s", req.name, want,
			 got);
	} else if (req.action == MIG_RESOLVE_RESUME && v->held_pc_dst) {
		r = -EPERM;
		snprintf(msg, sizeof(msg), "VM %s is the destination's half of post-copy migration "
			 "%s: the pages it lacks are on the source, so it cannot run here; discard it "
			 "(the source's half resumes the guest as it was at the switch)", req.name,
			 got);
	} else if (req.action == MIG_RESOLVE_DISCARD) {
		vm = v->vm;
		memset(v, 0, sizeof(*v));
	} else {
		v->busy = true;
		vm = v->vm;
	}
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		return agent_reply(s, r, msg, NULL, 0);
	if (req.action == MIG_RESOLVE_DISCARD) {
		mig_source_release(vm);
		vm->ops->destroy(vm);
		agent_log(a, "VM %s discarded (held by migration %s)", req.name, got);
		return agent_reply(s, 0, NULL, NULL, 0);
	}
	r = mig_source_resume(vm, &err);
	pthread_mutex_lock(&a->lock);
	if (r >= 0)
		v->held = false;
	v->busy = false;
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		return agent_reply(s, r, err.msg, NULL, 0);
	agent_log(a, "VM %s resumed here (held by migration %s)", req.name, got);
	return agent_reply(s, 0, NULL, NULL, 0);
}

/* The migrations running here, either side, and the held outcomes. */
static int op_mig_list(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_migration_info *info;
	uint64_t now = mig_now_ms();
	unsigned n = 0;
	int r;

	(void)body;
	info = calloc(ARRAY_SIZE(a->migs) + AGENT_MAX_VMS, sizeof(*info));
	if (!info)
		return agent_reply(s, -ENOMEM, "out of memory", NULL, 0);
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < ARRAY_SIZE(a->migs); i++) {
		const struct agent_mig *m = &a->migs[i];
		struct mig_migration_info *x = &info[n];

		if (!m->used)
			continue;
		n++;
		memcpy(x->id, m->id, 16);
		str_copy(x->name, sizeof(x->name), m->name);
		x->side = m->side;
		x->state = MIG_MIGRATION_RUNNING;
		x->elapsed_ms = now - m->t0_ms;
		x->ram_bytes = m->ram_bytes;
		if (m->side == MIG_SIDE_SOURCE) {
			str_copy(x->peer, sizeof(x->peer), m->peer);
			x->phase = m->last.phase;
			x->round = m->last.round;
			x->transferred_bytes = m->last.transferred_bytes;
			x->remaining_bytes = m->last.remaining_bytes;
			x->throughput_bps = m->last.throughput_bps;
			x->expected_downtime_ms = m->last.expected_downtime_ms;
		} else if (m->dst) {
			mig_dest_status_read(m->dst, &x->phase, &x->round, &x->transferred_bytes,
					     x->peer, sizeof(x->peer));
			x->throughput_bps = x->elapsed_ms ?
				x->transferred_bytes * 1000 / x->elapsed_ms : 0;
		}
	}
	for (unsigned i = 0; i < AGENT_MAX_VMS; i++) {
		const struct agent_vm *v = &a->vms[i];
		struct mig_migration_info *x = &info[n];

		if (!v->vm || !v->held)
			continue;
		n++;
		memcpy(x->id, v->held_by, 16);
		str_copy(x->name, sizeof(x->name), v->name);
		str_copy(x->peer, sizeof(x->peer), v->held_peer);
		str_copy(x->error, sizeof(x->error), v->held_why);
		x->side = MIG_SIDE_SOURCE;
		x->state = MIG_MIGRATION_HELD;
		x->phase = v->held_phase;
		x->ram_bytes = v->vm->ram_bytes;
	}
	pthread_mutex_unlock(&a->lock);
	mig_wire_le(&mig_wl_migration_info, info, n);
	r = agent_reply(s, 0, NULL, info, n * sizeof(*info));
	free(info);
	return r;
}

/* ---- migratectl check: the host compatibility policies, nothing moved ---- */

/* Source: what a destination prepares the VM from, and its manifest. */
static int op_vm_describe(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_vm_ref req;
	struct mig_vm_described d = { 0 };
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	struct agent_vm *v;
	size_t dl = 0;
	int r = 0;

	memcpy(&req, body, sizeof(req));
	req.name[sizeof(req.name) - 1] = '\0';
	if (mig_buf_append(&b, &d, sizeof(d)) < 0)
		return agent_reply(s, -ENOMEM, "out of memory", NULL, 0);
	pthread_mutex_lock(&a->lock);
	v = vm_find(a, req.name);
	if (!v)
		r = mig_error_set(&err, -ENOENT, "no VM named %s on the source agent", req.name);
	if (r >= 0)
		r = v->vm->ops->describe(v->vm, (uint8_t *)&d.lab, &dl, &err);
	if (r >= 0)
		r = mig_vm_manifest(v->vm, &b, &err);
	pthread_mutex_unlock(&a->lock);
	d.nr_devices = (uint32_t)((b.len - sizeof(d)) / sizeof(struct mig_manifest_entry));
	if (r >= 0 && d.nr_devices > MIG_EVENT_DEVICES_MAX)
		r = mig_error_set(&err, -E2BIG, "the VM has %u devices, a description holds %u",
				  d.nr_devices, MIG_EVENT_DEVICES_MAX);
	if (r >= 0) {
		mig_wire_le(&mig_wl_vm_described, &d, 1);
		memcpy(b.data, &d, sizeof(d));
	}
	r = r < 0 ? agent_reply(s, r, err.msg, NULL, 0) : agent_reply(s, 0, NULL, b.data, b.len);
	mig_buf_free(&b);
	return r;
}

struct check_results {
	struct mig_check_reply head;
	struct mig_check_result res[MIG_CHECK_RESULTS_MAX];
};

/* One policy's verdict into the reply: a pass of a class's policy on the
 * instance after one that passed it is folded into that one. */
static void check_add(void *arg, uint32_t cls, uint32_t instance, const char *policy,
		      int verdict, const char *msg)
{
	struct check_results *cr = arg;
	struct mig_check_result *last;

	if (verdict < 0)
		cr->head.refused++;
	for (uint32_t i = 0; verdict == 0 && i < cr->head.nr_results; i++) {
		last = &cr->res[i];
		if (last->verdict == 0 && last->cls == cls && !strcmp(last->policy, policy) &&
		    last->instance + last->count == instance) {
			last->count++;
			return;
		}
	}
	if (cr->head.nr_results == MIG_CHECK_RESULTS_MAX) {
		cr->head.omitted++;
		return;
	}
	last = &cr->res[cr->head.nr_results++];
	memset(last, 0, sizeof(*last));
	last->cls = cls;
	last->instance = instance;
	last->count = 1;
	last->verdict = verdict < 0 ? verdict : verdict > 0 ? MIG_CHECK_UNCHECKED : 0;
	str_copy(last->policy, sizeof(last->policy), policy);
	str_copy(last->msg, sizeof(last->msg), verdict ? msg : "");
}

/* Destination: a VM prepared as for the migration, every policy of every
 * device against this host (and its host profile), then given up. */
static int op_vm_check(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_vm_check req;
	struct mig_error err = { 0 };
	struct check_results *cr;
	struct mig_vm *vm = NULL;
	size_t n = s->body_len - sizeof(req), nres;
	bool exists;
	int r;

	memcpy(&req, body, sizeof(req));
	mig_wire_le(&mig_wl_vm_check, &req, 1);
	if (!mig_vm_name_ok(req.name, sizeof(req.name)))
		return agent_reply(s, -EINVAL, "VM_CHECK: bad VM name", NULL, 0);
	if (n != (size_t)req.vm.nr_devices * sizeof(struct mig_manifest_entry))
		return agent_reply(s, -EINVAL, "VM_CHECK: the manifest's length does not match its "
			     "count", NULL, 0);
	cr = calloc(1, sizeof(*cr));
	if (!cr)
		return agent_reply(s, -ENOMEM, "out of memory", NULL, 0);
	pthread_mutex_lock(&a->lock);
	exists = vm_find(a, req.name) != NULL;
	pthread_mutex_unlock(&a->lock);
	if (exists)
		check_add(cr, 0, 0, "vm-name", -EEXIST, "a VM of that name already exists on "
			  "the destination: destroy it there, or migrate to another agent");
	r = a->backend->prepare((const uint8_t *)&req.vm.lab, sizeof(req.vm.lab), &vm, &err);
	if (r < 0) {
		check_add(cr, 0, 0, "prepare", r, err.msg);
	} else {
		r = mig_vm_manifest_report(vm, body + sizeof(req), n, req.vm.nr_devices,
					   check_add, cr, &err);
		if (r < 0)   /* a manifest that cannot be read at all */
			check_add(cr, 0, 0, "devices", r, err.msg);
		vm->ops->destroy(vm);
	}
	agent_log(a, "check of %s: %u polic%s refused", req.name, cr->head.refused,
		  cr->head.refused == 1 ? "y" : "ies");
	nres = cr->head.nr_results;
	mig_wire_le(&mig_wl_check_result, cr->res, nres);
	mig_wire_le(&mig_wl_check_reply, &cr->head, 1);
	r = agent_reply(s, 0, NULL, cr, sizeof(cr->head) + nres * sizeof(cr->res[0]));
	free(cr);
	return r;
}

/* The handler table: each operation with its name and the size of its
 * body, checked here once so handlers can copy it without more ado; where
 * `each` is set, the body is that size plus any number of `each`-byte
 * entries. */
/* The journal's records from a time or a seq on (journal.h). */
static int op_journal(struct session *s, const uint8_t *body)
{
	struct mig_journal_req req;
	struct {
		struct mig_journal_reply h;
		struct mig_journal_rec recs[MIG_JOURNAL_REPLY_MAX];
	} *out = malloc(sizeof(*out));
	uint32_t n;
	int r;

	if (!out)
		return agent_reply(s, -ENOMEM, "out of memory", NULL, 0);
	memcpy(&req, body, sizeof(req));
	mig_wire_le(&mig_wl_journal_req, &req, 1);
	n = agent_journal_read(s->a->journal, req.since_ns, req.after_seq, out->recs,
			       MIG_JOURNAL_REPLY_MAX, &out->h);
	mig_wire_le(&mig_wl_journal_reply, &out->h, 1);
	mig_wire_le(&mig_wl_journal_rec, out->recs, n);
	r = agent_reply(s, 0, NULL, out, sizeof(out->h) + n * sizeof(out->recs[0]));
	free(out);
	return r;
}

/* --chaos only: a fault for the next migration of a VM (fault.h). */
static int op_fault_arm(struct session *s, const uint8_t *body)
{
	struct mig_fault_plan p;
	struct mig_fault_report rep;
	struct mig_error err = { 0 };
	int r;

	if (!s->a->opts.chaos)
		return agent_reply(s, -EPERM, "this agent takes no faults: it was not started with "
			     "--chaos (chaos mode's agents only; never on a production host)",
			     NULL, 0);
	memcpy(&p, body, sizeof(p));
	mig_wire_le(&mig_wl_fault_plan, &p, 1);
	r = agent_faults_arm(&s->a->faults, &p, &rep, &err);
	if (r < 0)
		return agent_reply(s, r, err.msg, NULL, 0);
	if (p.action)
		agent_log(s->a, "chaos: a %s fault armed for the next migration of %s",
			  mig_fault_action_name(p.action), p.vm);
	mig_wire_le(&mig_wl_fault_report, &rep, 1);
	return agent_reply(s, 0, NULL, &rep, sizeof(rep));
}

static const struct {
	const char *name;
	op_handler fn;
	size_t body, each;
} handlers[_MIG_OP_END] = {
	[MIG_OP_VM_CREATE] = { "VM_CREATE", op_vm_create, sizeof(struct mig_vm_create) },
	[MIG_OP_VM_LIST] = { "VM_LIST", op_vm_list, 0 },
	[MIG_OP_VM_DESTROY] = { "VM_DESTROY", op_vm_destroy, sizeof(struct mig_vm_ref) },
	[MIG_OP_MIG_INCOMING] = { "MIG_INCOMING", op_mig_incoming, sizeof(struct mig_incoming) },
	[MIG_OP_MIG_OUTGOING] = { "MIG_OUTGOING", op_mig_outgoing, sizeof(struct mig_outgoing) },
	[MIG_OP_MIG_CANCEL] = { "MIG_CANCEL", op_mig_cancel, sizeof(struct mig_cancel) },
	[MIG_OP_VM_RESOLVE] = { "VM_RESOLVE", op_vm_resolve, sizeof(struct mig_vm_resolve) },
	[MIG_OP_MIG_LIST] = { "MIG_LIST", op_mig_list, 0 },
	[MIG_OP_VM_DESCRIBE] = { "VM_DESCRIBE", op_vm_describe, sizeof(struct mig_vm_ref) },
	[MIG_OP_JOURNAL] = { "JOURNAL", op_journal, sizeof(struct mig_journal_req) },
	[MIG_OP_FAULT_ARM] = { "FAULT_ARM", op_fault_arm, sizeof(struct mig_fault_plan) },
	[MIG_OP_LV_INCOMING] = { "LV_INCOMING", agent_op_lv_incoming,
				 sizeof(struct mig_lv_incoming) },
	[MIG_OP_LV_OUTGOING] = { "LV_OUTGOING", agent_op_lv_outgoing,
				 sizeof(struct mig_lv_outgoing) },
	[MIG_OP_LV_DOMAIN] = { "LV_DOMAIN", agent_op_lv_domain, sizeof(struct mig_lv_domain_ref) },
	[MIG_OP_VM_CHECK] = { "VM_CHECK", op_vm_check, sizeof(struct mig_vm_check),
			      sizeof(struct mig_manifest_entry) },
	/* the domain XML follows the call: any number of bytes (hook.c caps it) */
	[MIG_OP_HOOK] = { "HOOK", agent_op_hook, sizeof(struct mig_hook_call), 1 },
};

int agent_request_parse(uint16_t type, const void *payload, size_t len,
			struct agent_request *ret, struct mig_error *err)
{
	struct mig_request req;
	size_t body_len;

	if (type != MIG_FRAME_REQUEST || len < sizeof(req))
		return mig_error_set(err, -EPROTO, "expected a REQUEST frame");
	memcpy(&req, payload, sizeof(req));
	mig_wire_le(&mig_wl_request, &req, 1);
	if (req.op >= _MIG_OP_END || !handlers[req.op].fn)
		return mig_error_set(err, -EOPNOTSUPP, "unknown operation");
	body_len = len - sizeof(req);
	if (handlers[req.op].each ?
	    body_len < handlers[req.op].body ||
	    (body_len - handlers[req.op].body) % handlers[req.op].each :
	    body_len != handlers[req.op].body)
		return mig_error_set(err, -EINVAL, "%s: body of %zu bytes, expected %zu%s",
				     handlers[req.op].name, body_len, handlers[req.op].body,
				     handlers[req.op].each ? " and whole entries" : "");
	ret->op = req.op;
	ret->body = (const uint8_t *)payload + sizeof(req);
	ret->body_len = body_len;
	return 0;
}

static int send_error(struct session *s, int code, const char *msg)
{
	struct mig_error_msg m;

	mig_error_msg_fill(&m, code, msg);
	return xport_conn_send(&s->c, MIG_FRAME_ERROR, 0, &m, sizeof(m), NULL);
}

/* A client that hung up (EOF or reset) is no news; anything else it did is. */
static bool peer_gone(int r)
{
	return r == -ECONNRESET || r == -EPIPE;
}

/* Logs the start of a burst; counts the rest (see struct log_burst). */
static void burst_hit(struct agent *a, struct log_burst *b, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void burst_hit(struct agent *a, struct log_burst *b, const char *fmt, ...)
{
	uint64_t now = mig_now_ms();
	char line[768];
	va_list ap;

	pthread_mutex_lock(&a->conn_lock);
	if (b->count++ == 0) {
		b->first_ms = now;
		if (a->opts.log) {
			va_start(ap, fmt);
			vsnprintf(line, sizeof(line), fmt, ap);
			va_end(ap);
			a->opts.log(a->opts.log_arg, line);
		}
	}
	b->last_ms = now;
	pthread_mutex_unlock(&a->conn_lock);
}

/* Under conn_lock: closes a burst that has been quiet long enough. */
static void burst_end(struct agent *a, struct log_burst *b, uint64_t now)
{
	if (!b->count || now - b->last_ms < AGENT_LOG_QUIET_MS)
		return;
	if (b->count > 1)
		agent_log(a, "%llu %s within %llu s (only the first was logged)",
			  (unsigned long long)b->count, b->what,
			  (unsigned long long)((b->last_ms - b->first_ms) / 1000 + 1));
	b->count = 0;
}

/* One deadline for the whole handshake, counted from the accept: a peer
 * that trickles its frames gets no more time than one that sends none. */
static int handshake_recv(struct session *s, struct mig_frame_hdr *fh, struct mig_buf *pl,
			  struct mig_error *err)
{
	uint64_t now = mig_now_ms();
	int r;

	r = xport_conn_recv(&s->c, fh, pl, now < s->deadline ? (int)(s->deadline - now) : 0, err);
	if (r == -ETIME) {
		mig_error_clear(err);
		r = mig_error_set(err, -ETIME, "the handshake did not complete within %d s",
				  AGENT_HANDSHAKE_MS / 1000);
	}
	return r;
}

/* A failed handshake: tell the peer (in our own version, so that a peer of
 * another version reports the mismatch in its own words instead of a reset
 * connection) and log it, unless the peer just went away or ran out of time. */
static int handshake_refuse(struct session *s, int code, const char *msg)
{
	send_error(s, code, msg);
	if (!peer_gone(code) && code != -ETIME)
		burst_hit(s->a, &s->a->failed, "refused a client (%s): %s", s->peer, msg);
	return code;
}

/* HELLO both ways, then, with a key, challenge-response in both directions. */
static int handshake(struct session *s)
{
	struct agent *a = s->a;
	struct mig_hello h = { .role = MIG_ROLE_AGENT };
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };
	struct mig_auth_challenge ch;
	struct mig_auth_response resp;
	struct mig_auth_proof proof;
	struct mig_error err = { 0 };
	uint8_t want[XPORT_MAC_LEN];
	int r;

	r = handshake_recv(s, &fh, &pl, &err);
	if (r < 0) {
		r = handshake_refuse(s, r, err.msg);
		goto out;
	}
	if (fh.type != MIG_FRAME_HELLO || pl.len != sizeof(h)) {
		/* not logged: a valid frame of the wrong kind is a confused client */
		send_error(s, -EPROTO, "expected HELLO");
		r = -EPROTO;
		goto out;
	}
	h.flags = a->key.len ? MIG_HELLO_F_AUTH : 0;
	snprintf(h.software, sizeof(h.software), "migratectl agent");
	mig_wire_le(&mig_wl_hello, &h, 1);
	r = xport_conn_send(&s->c, MIG_FRAME_HELLO, 0, &h, sizeof(h), NULL);
	if (r < 0 || !a->key.len)
		goto out;
	xport_random(ch.nonce, sizeof(ch.nonce));
	r = xport_conn_send(&s->c, MIG_FRAME_AUTH_CHALLENGE, 0, &ch, sizeof(ch), NULL);
	if (r < 0)
		goto out;
	r = handshake_recv(s, &fh, &pl, &err);
	if (r < 0) {
		r = handshake_refuse(s, r, err.msg);
		goto out;
	}
	if (fh.type != MIG_FRAME_AUTH_RESPONSE || pl.len != sizeof(resp)) {
		send_error(s, -EACCES, "this agent requires a key: pass --key-file");
		r = -EACCES;
		goto out;
	}
	memcpy(&resp, pl.data, sizeof(resp));
	mig_ctl_auth_mac(a->key.data, a->key.len, "migratectl-client", ch.nonce, resp.nonce, want);
	if (!xport_mac_equal(want, resp.mac, sizeof(want))) {
		send_error(s, -EACCES, "authentication failed: the client's key does not match "
			   "this agent's --key-file");
		burst_hit(a, &a->failed, "refused a client with a wrong key (%s)", s->peer);
		r = -EACCES;
		goto out;
	}
	mig_ctl_auth_mac(a->key.data, a->key.len, "migratectl-agent", resp.nonce, ch.nonce, proof.mac);
	r = xport_conn_send(&s->c, MIG_FRAME_AUTH_OK, 0, &proof, sizeof(proof), NULL);
	if (r >= 0)
		r = mig_ctl_session_keys(a->key.data, a->key.len, ch.nonce, resp.nonce, false,
					 &s->c.aead, &err);
out:
	mig_buf_free(&pl);
	return r;
}

/*
 * After the handshake, a frame that fails the receive checks (magic,
 * version, checksum, seq, length over the limit ...) or is not a REQUEST
 * ends the session as a bad first frame does: with an ERROR that says why,
 * and a line in the log.  Only an authenticated peer gets this far, so no
 * burst limit: a line each.
 */
static void session_violation(struct session *s, int code, const char *msg)
{
	send_error(s, code, msg);
	agent_log(s->a, "closed a client connection: %s (peer %s)", msg, s->peer);
}

static void session_serve(struct session *s)
{
	struct mig_buf pl = { 0 };

	for (;;) {
		struct mig_error err = { 0 };
		struct mig_frame_hdr fh;
		struct agent_request req;
		int r = xport_conn_recv(&s->c, &fh, &pl, -1, &err);

		if (r < 0) {
			if (!peer_gone(r))
				session_violation(s, r, err.msg);
			break;
		}
		/* a frame that is no REQUEST ends the session; a bad request
		 * gets its error as the reply */
		r = agent_request_parse(fh.type, pl.data, pl.len, &req, &err);
		if (r == -EPROTO) {
			session_violation(s, r, err.msg);
			break;
		}
		if (r < 0) {
			agent_reply(s, r, err.msg, NULL, 0);
			continue;
		}
		s->body_len = req.body_len;
		if (handlers[req.op].fn(s, req.body) < 0)
			break;
	}
	mig_buf_free(&pl);
}

static void *session_thread(void *arg)
{
	struct session *s = arg;
	struct agent *a = s->a;
	bool admitted = false;
	int r;

	r = handshake(s);
	/* Out of the handshake table before the socket can close: the watchdog
	 * shuts down the fds listed there, and a closed fd's number is soon
	 * someone else's. */
	pthread_mutex_lock(&a->conn_lock);
	a->pending[s->slot].used = false;
	if (r >= 0 && a->sessions < AGENT_MAX_SESSIONS) {
		a->sessions++;
		admitted = true;
	}
	pthread_mutex_unlock(&a->conn_lock);
	if (r >= 0 && !admitted) {
		/* several handshakes ended at once with one session slot left */
		char msg[128];

		snprintf(msg, sizeof(msg), "agent busy: it serves its maximum of %d sessions; try "
			 "again later", AGENT_MAX_SESSIONS);
		send_error(s, -EBUSY, msg);
		burst_hit(a, &a->busy, "refused a connection from %s: %s", s->peer, msg);
	}
	if (admitted) {
		session_serve(s);
		pthread_mutex_lock(&a->conn_lock);
		a->sessions--;
		pthread_mutex_unlock(&a->conn_lock);
	}
	xport_conn_close(&s->c);
	free(s);
	return NULL;
}

/*
 * Closes a connection the agent will not serve, telling the peer why in an
 * ERROR frame (seq 1: the agent's first frame) if the socket takes it at
 * once; the accept loop never waits on a peer it refuses.  What the peer
 * sent already (its HELLO) is read first: a TCP socket closed with unread
 * data resets the connection, and a peer's stack may drop our ERROR if the
 * reset comes before its reader.
 */
static void refuse(int fd, int code, const char *msg)
{
	struct mig_error_msg m;
	struct mig_frame_hdr h;
	struct iovec iov[2];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	char sink[256];

	mig_error_msg_fill(&m, code, msg);
	iov[1] = (struct iovec){ .iov_base = &m, .iov_len = sizeof(m) };
	mig_frame_seal(&h, MIG_FRAME_ERROR, 0, 1, &iov[1], 1);
	iov[0] = (struct iovec){ .iov_base = &h, .iov_len = sizeof(h) };
	(void)sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	for (int i = 0; i < 4 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	close(fd);
}

/* The peer's key, and its name for messages: the address, or "uid N" (the
 * key's part) then " (pid P)" at pid_at. */
static int peer_identify(int fd, const struct sockaddr_storage *ss, struct peer_key *key,
			 struct ucred *cred, char *text, size_t n, size_t *pid_at)
{
	socklen_t len = sizeof(*cred);

	memset(key, 0, sizeof(*key));
	key->family = ss->ss_family;
	switch (ss->ss_family) {
	case AF_INET:
		memcpy(key->addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		break;
	case AF_INET6: {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			key->family = AF_INET;
			memcpy(key->addr, &a6->s6_addr[12], 4);
		} else {
			memcpy(key->addr, a6, 16);
		}
		break;
	}
	case AF_UNIX:
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
			return -errno;
		memcpy(key->addr, &cred->uid, sizeof(cred->uid));
		snprintf(text, n, "uid %u", (unsigned)cred->uid);
		*pid_at = strlen(text);
		snprintf(text + *pid_at, n - *pid_at, " (pid %d)", (int)cred->pid);
		return 0;
	default:
		return -EAFNOSUPPORT;
	}
	inet_ntop(key->family, key->addr, text, (socklen_t)n);
	*pid_at = strlen(text);
	return 0;
}

/*
 * The second layer under the unix socket's mode, which a chmod can open:
 * root, the agent's own user and, with --socket-group, the group's
 * members.  SO_PEERGROUPS gives the groups the peer process held when it
 * connected, with no lookup in the group database from the accept loop.
 */
static bool peer_allowed(const struct agent *a, int fd, const struct ucred *cred)
{
	gid_t small[64], *g = small;
	socklen_t len = sizeof(small);
	bool ok = false;

	if (cred->uid == 0 || cred->uid == a->uid)
		return true;
	if (!a->opts.socket_group_set)
		return false;
	if (cred->gid == a->opts.socket_group)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
		if (errno != ERANGE || !(g = malloc(len)))
			return false;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0)
			len = 0;
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (g[i] == a->opts.socket_group)
			ok = true;
	if (g != small)
		free(g);
	return ok;
}

/* Under conn_lock: a handshake slot for a new connection, or -1 and why not. */
static int pending_take(struct agent *a, int fd, const struct peer_key *key, const char *name,
			char *why, size_t n)
{
	unsigned used = 0, same = 0;
	int slot = -1;

	if (a->sessions >= AGENT_MAX_SESSIONS) {
		snprintf(why, n, "agent busy: it serves its maximum of %d sessions; try again "
			 "later", AGENT_MAX_SESSIONS);
		return -1;
	}
	for (unsigned i = 0; i < AGENT_MAX_UNAUTH; i++) {
		if (!a->pending[i].used) {
			if (slot < 0)
				slot = (int)i;
			continue;
		}
		used++;
		if (!memcmp(&a->pending[i].peer, key, sizeof(*key)))
			same++;
	}
	if (same >= AGENT_MAX_UNAUTH_PER_PEER) {
		snprintf(why, n, "agent busy: %u connections from %s are in their handshake "
			 "already (at most %d); try again later", same, name,
			 AGENT_MAX_UNAUTH_PER_PEER);
		return -1;
	}
	if (slot < 0) {
		snprintf(why, n, "agent busy: %u connections are in their handshake (at most "
			 "%d); try again later", used, AGENT_MAX_UNAUTH);
		return -1;
	}
	a->pending[slot] = (struct pending){
		.used = true,
		.fd = fd,
		.deadline = mig_now_ms() + AGENT_HANDSHAKE_MS,
		.peer = *key,
	};
	return slot;
}

/* A new connection: refused at once, or given a handshake slot, its ring
 * and its thread. */
static void agent_admit(struct agent *a, int fd, const struct sockaddr_storage *ss)
{
	struct mig_error cerr = { 0 };
	struct ucred cred = { 0 };
	struct peer_key key;
	struct session *s;
	char peer[64] = "?", name[64], why[320];
	size_t pid_at = 0;
	pthread_t t;
	int slot, r;

	r = peer_identify(fd, ss, &key, &cred, peer, sizeof(peer), &pid_at);
	if (r < 0) {
		refuse(fd, r, "the agent cannot identify this connection's peer");
		return;
	}
	if (key.family == AF_UNIX && !peer_allowed(a, fd, &cred)) {
		snprintf(why, sizeof(why), "permission denied: this agent serves %s; uid %u is not "
			 "one of them", a->allowed, (unsigned)cred.uid);
		refuse(fd, -EACCES, why);
		burst_hit(a, &a->denied, "refused a connection from %s: it serves %s", peer,
			  a->allowed);
		return;
	}
	snprintf(name, sizeof(name), "%.*s", (int)pid_at, peer);
	/* a client whose side of the connection is gone (its host cut off,
	 * its socket aborted) must not keep a session thread forever */
	xport_keepalive(fd, XPORT_KEEPALIVE_IDLE_S, XPORT_KEEPALIVE_INTVL_S, XPORT_KEEPALIVE_CNT);
	pthread_mutex_lock(&a->conn_lock);
	slot = pending_take(a, fd, &key, name, why, sizeof(why));
	pthread_mutex_unlock(&a->conn_lock);
	if (slot < 0) {
		refuse(fd, -EBUSY, why);
		burst_hit(a, &a->busy, "refused a connection from %s: %s", peer, why);
		return;
	}
	xport_tune_socket(fd);
	s = calloc(1, sizeof(*s));
	/* An error object, not NULL: without one, a failed init reads as 0. */
	if (s && xport_conn_init(&s->c, fd, &cerr) == 0) {
		s->a = a;
		s->slot = slot;
		s->deadline = a->pending[slot].deadline;
		str_copy(s->peer, sizeof(s->peer), peer);
		if (pthread_create(&t, NULL, session_thread, s) == 0) {
			pthread_detach(t);
			return;
		}
		s->c.fd = -1;         /* the ring goes; refuse() closes the socket */
		xport_conn_close(&s->c);
	}
	free(s);
	pthread_mutex_lock(&a->conn_lock);
	a->pending[slot].used = false;
	pthread_mutex_unlock(&a->conn_lock);
	snprintf(why, sizeof(why), "agent busy: no memory, thread or descriptor left for a new "
		 "connection; try again later");
	refuse(fd, -EAGAIN, why);
	burst_hit(a, &a->busy, "refused a connection from %s: %s", peer, why);
}

/*
 * Shuts down the handshakes past their deadline and closes quiet log
 * bursts.  Returns how long the accept loop may wait for the next call.
 */
static int agent_tick(struct agent *a)
{
	uint64_t now = mig_now_ms(), next = now + AGENT_TICK_MS;

	pthread_mutex_lock(&a->conn_lock);
	for (unsigned i = 0; i < AGENT_MAX_UNAUTH; i++) {
		struct pending *p = &a->pending[i];
		uint64_t end = p->deadline + AGENT_HANDSHAKE_GRACE_MS;

		if (!p->used || p->shut)
			continue;
		if (now >= end) {
			/* wakes the thread wherever it waits, mid-frame or in a send */
			(void)shutdown(p->fd, SHUT_RDWR);
			p->shut = true;
		} else if (end < next) {
			next = end;
		}
	}
	burst_end(a, &a->accept_errors, now);
	burst_end(a, &a->busy, now);
	burst_end(a, &a->denied, now);
	burst_end(a, &a->failed, now);
	pthread_mutex_unlock(&a->conn_lock);
	return (int)(next - now);
}

/*
 * accept() failed for want of resources, or because of one connection;
 * either way the agent serves on (its VMs live in this process).  At
 * EMFILE/ENFILE the connection stays queued and poll() would report it
 * again at once: giving up the spare descriptor for a moment lets us take
 * it and close it, with a word to its peer, instead of spinning.  Another
 * thread may take the freed number first; then we only back off.
 */
static void accept_failed(struct agent *a, int lfd, int *spare, int r)
{
	burst_hit(a, &a->accept_errors, "accept: %s; still serving", strerror(-r));
	if ((r == -EMFILE || r == -ENFILE) && *spare >= 0) {
		int fd;

		close(*spare);
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			refuse(fd, -EBUSY, "agent busy: out of file descriptors; try again later");
		*spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
		/* One connection fewer in the queue: no spin, so no pause.
		 * A flood is turned away at full speed. */
		if (fd >= 0 && *spare >= 0)
			return;
	}
	/* These leave the connection queued; the others consumed it. */
	if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM)
		(void)poll(NULL, 0, AGENT_ACCEPT_BACKOFF_MS);
	if (*spare < 0)
		*spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Services start with a soft limit of 1024 descriptors where the hard limit
 * is often far higher: take it all.  The bounds on clients hold without. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Who may connect to a unix agent, in words, for refusals. */
static void describe_allowed(struct agent *a)
{
	char grp[128] = "";

	if (a->opts.socket_group_set) {
		struct group gr, *res = NULL;
		char buf[1024];

		if (getgrgid_r(a->opts.socket_group, &gr, buf, sizeof(buf), &res) == 0 && res)
			snprintf(grp, sizeof(grp), " and members of group %s (gid %u)", res->gr_name,
				 (unsigned)a->opts.socket_group);
		else
			snprintf(grp, sizeof(grp), " and members of group %u",
				 (unsigned)a->opts.socket_group);
	}
	if (a->uid == 0)
		snprintf(a->allowed, sizeof(a->allowed), "only root%s", grp);
	else
		snprintf(a->allowed, sizeof(a->allowed), "only root, uid %u (its own user)%s",
			 (unsigned)a->uid, grp);
}

int agent_run(const struct agent_opts *opts, struct mig_error *err)
{
	struct agent *a = calloc(1, sizeof(*a));
	struct xport_endpoint ep;
	int lfd, spare, r;

	if (!a)
		return mig_error_set(err, -ENOMEM, "out of memory");
	a->opts = *opts;
	a->backend = mig_vm_backend_get("lab");
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->conn_lock, NULL);
	agent_faults_init(&a->faults, opts->log, opts->log_arg);
	a->accept_errors.what = "accept errors";
	a->busy.what = "connections refused as busy";
	a->denied.what = "connections refused for their user";
	a->failed.what = "failed handshakes";
	r = xport_endpoint_parse(opts->listen, &ep, err);
	if (r < 0)
		goto out;
	if (ep.kind != XPORT_EP_TCP && ep.kind != XPORT_EP_UNIX) {
		r = mig_error_set(err, -EINVAL, "an agent listens on tcp://HOST:PORT or unix:///PATH");
		goto out;
	}
	if (opts->socket_group_set && ep.kind != XPORT_EP_UNIX) {
		r = mig_error_set(err, -EINVAL, "--socket-group applies to unix:// listeners only; "
				  "a tcp agent admits the clients that hold its --key-file");
		goto out;
	}
	if (opts->key_file[0]) {
		r = xport_key_load(opts->key_file, &a->key, err);
		if (r < 0)
			goto out;
	} else if (ep.kind == XPORT_EP_TCP) {
		r = mig_error_set(err, -EINVAL, "a tcp agent needs --key-file F (at least 32 bytes, "
				  "e.g. head -c 32 /dev/urandom > F; chmod 600 F)");
		goto out;
	}
	r = agent_journal_open(opts->journal, AGENT_JOURNAL_RING, &a->journal, err);
	if (r < 0)
		goto out;
	r = agent_lv_init(a, err);
	if (r < 0)
		goto out;
	raise_nofile();
	a->uid = geteuid();
	describe_allowed(a);
	if (opts->listen_fd_set)
		lfd = xport_listen_inherited(&ep, opts->listen_fd, err);
	else if (opts->socket_group_set)
		lfd = xport_listen_group(&ep, opts->socket_group, err);
	else
		lfd = xport_listen(&ep, err);
	if (lfd < 0) {
		r = lfd;
		goto out;
	}
	if (opts->listen_fd_set)
		agent_log(a, "serving the socket its service manager passed (fd %d%s%s%s) as %s",
			  lfd, opts->listen_fd_name[0] ? ", \"" : "", opts->listen_fd_name,
			  opts->listen_fd_name[0] ? "\"" : "", opts->listen);
	/* poll() decides when to accept; a connection gone in between must
	 * not block the loop that also runs the watchdog */
	r = fcntl(lfd, F_GETFL);
	if (r < 0 || fcntl(lfd, F_SETFL, r | O_NONBLOCK) < 0) {
		r = mig_error_set(err, -errno, "cannot listen on %s: fcntl: %s", opts->listen,
				  strerror(errno));
		close(lfd);
		goto out;
	}
	spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (opts->ready_fd >= 0) {
		/* tell a parent waiting for us that we listen */
		(void)!write(opts->ready_fd, "1", 1);
		close(opts->ready_fd);
	}
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd;

		(void)poll(&p, 1, agent_tick(a));
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd >= 0) {
			agent_admit(a, fd, &ss);
			continue;
		}
		r = -errno;
		if (r == -EAGAIN || r == -EINTR || r == -ECONNABORTED)
			continue;
		/* Only our own mistake ends the loop: no listening socket left. */
		if (r == -EBADF || r == -EFAULT || r == -EINVAL || r == -ENOTSOCK)
			break;
		accept_failed(a, lfd, &spare, r);
	}
	r = mig_error_set(err, r, "accept: %s", strerror(-r));
	close(lfd);
	/* Session threads may still use `a`; the process ends right after. */
	return r;
out:
	mig_buf_free(&a->key);
	free(a);
	return r;
}
