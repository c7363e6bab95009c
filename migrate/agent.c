// SPDX-License-Identifier: MIT
/*
 * The agent: hosts lab VMs and is the source or destination of migrations.
 * An accept loop hands each control connection to a thread that
 * authenticates the peer and then serves requests through a handler table
 * indexed by operation.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>

#include "migrate/macro.h"
#include "migrate/migrate-internal.h"

#define AGENT_MAX_VMS 64
#define AGENT_MAX_MIGRATIONS 16
#define FILL_TIMEOUT_MS 300000

struct agent_vm {
	char name[MIG_NAME_MAX];
	struct lab_vm *vm;
	bool busy;                /* a migration (or destroy) owns it */
	/* Held: a migration of it ended with ownership unknown (owner none),
	 * so the destination may run it.  It stays paused, and only
	 * MIG_OP_VM_RESOLVE naming that migration changes it. */
	bool held;
	uint8_t held_by[16];
	char held_peer[128];
	char held_why[256];
	uint32_t held_phase;
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
};

struct agent {
	struct agent_opts opts;
	struct mig_buf key;
	pthread_mutex_t lock;
	struct agent_vm vms[AGENT_MAX_VMS];
	/* every migration involves one of the VM slots: as many at most */
	struct agent_mig migs[AGENT_MAX_VMS];
};

struct session {
	struct agent *a;
	struct xport_conn c;
};

/* body: exactly the size the handler table names (checked by the dispatcher) */
typedef int (*op_handler)(struct session *s, const uint8_t *body);

static int reply(struct session *s, int status, const char *msg, const void *extra, size_t n)
{
	struct mig_buf b = { 0 };
	struct mig_reply r = { .status = status };
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

static int op_vm_create(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_vm_create req;
	struct mig_error err = { 0 };
	struct lab_config cfg;
	struct agent_vm *slot;
	struct lab_vm *vm = NULL;
	struct lab_stats st;
	uint64_t end;
	int r = 0;

	memcpy(&req, body, sizeof(req));
	if (!mig_vm_name_ok(req.name, sizeof(req.name)))
		return reply(s, -EINVAL, "VM name must be 1-63 characters of [A-Za-z0-9._-]", NULL, 0);
	req.spec[sizeof(req.spec) - 1] = '\0';
	lab_config_default(&cfg);
	if (req.spec[0] && lab_spec_parse(req.spec, &cfg, &err) < 0)
		return reply(s, err.code, err.msg, NULL, 0);
	if (lab_config_check(&cfg, &err) < 0)
		return reply(s, err.code, err.msg, NULL, 0);
	pthread_mutex_lock(&a->lock);
	slot = vm_reserve(a, req.name, &r);
	pthread_mutex_unlock(&a->lock);
	if (!slot)
		return reply(s, r, r == -EEXIST ? "a VM of that name exists on this agent" :
			     "this agent hosts its maximum number of VMs", NULL, 0);
	r = lab_vm_create(&cfg, &vm, &err);
	if (r >= 0)
		r = lab_vm_start(vm, &err);
	/* Answer once the guest runs its workload: a migration started right
	 * after create then moves a guest in its steady state. */
	end = mig_now_ms() + FILL_TIMEOUT_MS;
	while (r >= 0) {
		lab_vm_stats(vm, &st);
		if (st.fatal) {
			r = mig_error_set(&err, st.fatal, "%s", st.fatal_msg);
			break;
		}
		if (st.all_filled)
			break;
		if (mig_now_ms() > end) {
			r = mig_error_set(&err, -ETIMEDOUT, "the guest did not finish filling its RAM");
			break;
		}
		usleep(10000);
	}
	pthread_mutex_lock(&a->lock);
	if (r >= 0)
		slot->vm = vm;
	slot->busy = false;
	pthread_mutex_unlock(&a->lock);
	if (r < 0) {
		lab_vm_destroy(vm);
		return reply(s, r, err.msg, NULL, 0);
	}
	return reply(s, 0, NULL, NULL, 0);
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
		const struct lab_config *c;
		struct lab_stats st;

		if (!v->vm)
			continue;
		c = lab_vm_config(v->vm);
		lab_vm_stats(v->vm, &st);
		memset(&info[n], 0, sizeof(info[n]));
		str_copy(info[n].name, sizeof(info[n].name), v->name);
		info[n].state = v->busy ? MIG_VM_MIGRATING : v->held ? MIG_VM_HELD :
				lab_vm_is_running(v->vm) ? MIG_VM_RUNNING : MIG_VM_PAUSED;
		if (v->held) {
			memcpy(info[n].held_by, v->held_by, sizeof(info[n].held_by));
			str_copy(info[n].held_peer, sizeof(info[n].held_peer), v->held_peer);
		}
		info[n].vcpus = c->vcpus;
		info[n].mem_bytes = c->mem_bytes;
		info[n].wss_bytes = c->wss_bytes;
		info[n].passes = st.passes;
		info[n].errors = st.errors;
		lab_to_wire(c, &info[n].lab);
		n++;
	}
	pthread_mutex_unlock(&a->lock);
	return reply(s, 0, NULL, info, n * sizeof(info[0]));
}

static int op_vm_destroy(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_vm_ref req;
	struct agent_vm *v;
	struct lab_vm *vm = NULL;
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
		return reply(s, r, r == -ENOENT ? "no VM of that name on this agent" :
			     r == -EBUSY ? "the VM is being migrated; cancel the migration first" :
			     msg, NULL, 0);
	lab_vm_destroy(vm);
	return reply(s, 0, NULL, NULL, 0);
}

/* A free migration slot, taken for `id` (under the lock); NULL if none. */
static struct agent_mig *mig_take(struct agent *a, const uint8_t id[16], uint32_t side,
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

static void mig_drop(struct agent *a, struct agent_mig *m)
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
};

static void *incoming_thread(void *arg)
{
	struct incoming *in = arg;
	struct agent *a = in->a;
	struct lab_vm *vm = NULL;
	struct mig_error err = { 0 };
	int r;

	r = mig_dest_run(&in->o, &vm, &err);
	close(in->o.listen_fd);
	pthread_mutex_lock(&a->lock);
	if (r >= 0)
		in->slot->vm = vm;
	in->slot->busy = false;
	if (r < 0)
		in->slot->name[0] = '\0';
	in->mig->used = false;
	in->mig->dst = NULL;
	pthread_mutex_unlock(&a->lock);
	if (r < 0 && !a->opts.quiet)
		fprintf(stderr, "migratectl agent: incoming migration of %s failed: %s\n",
			in->o.name, err.msg);
	free(in);
	return NULL;
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
	req.listen_host[sizeof(req.listen_host) - 1] = '\0';
	if (!mig_vm_name_ok(req.name, sizeof(req.name)) || req.streams < 1 ||
	    req.streams > MIG_MAX_STREAMS)
		return reply(s, -EINVAL, "MIG_INCOMING: bad VM name or stream count (1-16)", NULL, 0);
	in = calloc(1, sizeof(*in));
	if (!in)
		return reply(s, -ENOMEM, "out of memory", NULL, 0);
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
		return reply(s, r, r == -EEXIST ? "a VM of that name already exists on the "
			     "destination" : "the destination hosts its maximum number of VMs", NULL, 0);
	}
	/* Prepare the VM now, before the source starts: its RAM must be
	 * allocated and pre-faulted before pages arrive, and that is the
	 * destination's preparation, not part of the migration. */
	{
		struct lab_config cfg;

		r = lab_from_wire(&req.lab, &cfg, &err);
		if (r >= 0)
			r = lab_vm_create(&cfg, &in->o.vm, &err);
		if (r < 0) {
			mig_drop(a, in->mig);
			slot_drop(a, in->slot);
			free(in);
			return reply(s, r, err.msg, NULL, 0);
		}
	}
	str_copy(ep.host, sizeof(ep.host), req.listen_host[0] ? req.listen_host : "127.0.0.1");
	ep.port = 0;
	fd = xport_listen(&ep, &err);
	if (fd >= 0 && xport_local_addr(fd, rep.addr, sizeof(rep.addr)) < 0) {
		close(fd);
		fd = mig_error_set(&err, -EIO, "cannot read the listening address");
	}
	if (fd < 0) {
		lab_vm_destroy(in->o.vm);
		mig_drop(a, in->mig);
		slot_drop(a, in->slot);
		free(in);
		return reply(s, fd, err.msg, NULL, 0);
	}
	in->a = a;
	memcpy(in->o.id, req.id, 16);
	memcpy(in->o.secret, req.secret, MIG_SECRET_LEN);
	str_copy(in->o.name, sizeof(in->o.name), req.name);
	in->o.streams = req.streams;
	in->o.listen_fd = fd;
	in->o.status = &in->status;
	pthread_mutex_lock(&a->lock);
	in->mig->dst = &in->status;
	pthread_mutex_unlock(&a->lock);
	if (pthread_create(&t, NULL, incoming_thread, in)) {
		close(fd);
		lab_vm_destroy(in->o.vm);
		mig_drop(a, in->mig);
		slot_drop(a, in->slot);
		free(in);
		return reply(s, -EAGAIN, "cannot start the receiving thread", NULL, 0);
	}
	pthread_detach(t);
	return reply(s, 0, NULL, &rep, sizeof(rep));
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

	if (ev->kind == MIG_EVENT_PROGRESS) {
		pthread_mutex_lock(&og->s->a->lock);
		og->m->last = *ev;
		pthread_mutex_unlock(&og->s->a->lock);
	}
	xport_conn_send(&og->s->c, MIG_FRAME_EVENT, 0, ev, sizeof(*ev), NULL);
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
	char msg[480] = "";
	int r = 0;

	memcpy(&req, body, sizeof(req));
	req.name[sizeof(req.name) - 1] = '\0';
	req.dest_addr[sizeof(req.dest_addr) - 1] = '\0';
	if (req.streams < 1 || req.streams > MIG_MAX_STREAMS || req.codec > XPORT_CODEC_AUTO ||
	    req.timeout_action > CONV_TIMEOUT_FORCE || req.checksum > MIG_CHECKSUM_AUTO)
		return reply(s, -EINVAL, "MIG_OUTGOING: bad streams, codec, timeout action or "
			     "checksum mode", NULL, 0);
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
			     lab_vm_config(v->vm)->mem_bytes);
		if (!m)
			r = -EAGAIN;
	}
	if (r == 0)
		v->busy = true;
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		return reply(s, r, r == -ENOENT ? "no VM of that name on the source agent" :
			     r == -EBUSY ? "the VM is already being migrated" :
			     r == -EAGAIN ? "too many migrations on this agent" : msg, NULL, 0);
	r = reply(s, 0, NULL, NULL, 0);
	memcpy(o.id, req.id, 16);
	memcpy(o.secret, req.secret, MIG_SECRET_LEN);
	str_copy(o.name, sizeof(o.name), req.name);
	str_copy(o.dest_addr, sizeof(o.dest_addr), req.dest_addr);
	o.streams = req.streams;
	o.compress.codec = (enum xport_codec)req.codec;
	o.compress.level = req.level;
	o.verify = req.verify;
	o.checksum = (enum mig_checksum)req.checksum;
	conv_params_default(&o.conv);
	o.conv.downtime_limit_ms = req.downtime_limit_ms;
	o.conv.max_bandwidth_bps = req.max_bandwidth_bps;
	o.conv.timeout_ms = req.timeout_ms;
	o.conv.timeout_action = (enum conv_timeout_action)req.timeout_action;
	o.switchover_timeout_ms = req.switchover_timeout_ms;
	og = (struct outgoing){ s, m };
	mig_source_run(v->vm, &o, &m->cancel, send_event, &og, &res);
	send_event(&res, &og);
	pthread_mutex_lock(&a->lock);
	if (res.result == MIG_RESULT_COMPLETED ||
	    (res.result == MIG_RESULT_FAILED && res.owner == MIG_OWNER_DESTINATION)) {
		/* The destination owns the VM now: drop the source copy. */
		lab_vm_destroy(v->vm);
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
	return r;
}

static int op_mig_cancel(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_cancel req;
	int r = -ENOENT;

	memcpy(&req, body, sizeof(req));
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < ARRAY_SIZE(a->migs); i++)
		if (a->migs[i].used && a->migs[i].side == MIG_SIDE_SOURCE &&
		    !memcmp(a->migs[i].id, req.id, 16)) {
			atomic_store(&a->migs[i].cancel, true);
			r = 0;
		}
	pthread_mutex_unlock(&a->lock);
	return reply(s, r, r < 0 ? "no migration with that id runs on this agent as its source "
		     "(migratectl migrations lists them; cancel on the source agent)" : NULL, NULL, 0);
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
	struct lab_vm *vm = NULL;
	char msg[480] = "", want[37], got[37];
	int r = 0;

	memcpy(&req, body, sizeof(req));
	if (!mig_vm_name_ok(req.name, sizeof(req.name)) ||
	    (req.action != MIG_RESOLVE_RESUME && req.action != MIG_RESOLVE_DISCARD))
		return reply(s, -EINVAL, "VM_RESOLVE: bad VM name or action", NULL, 0);
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
	} else if (req.action == MIG_RESOLVE_DISCARD) {
		vm = v->vm;
		memset(v, 0, sizeof(*v));
	} else {
		v->busy = true;
		vm = v->vm;
	}
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		return reply(s, r, msg, NULL, 0);
	if (req.action == MIG_RESOLVE_DISCARD) {
		mig_source_release(vm);
		lab_vm_destroy(vm);
		if (!a->opts.quiet)
			fprintf(stderr, "migratectl agent: VM %s discarded (held by migration %s)\n",
				req.name, got);
		return reply(s, 0, NULL, NULL, 0);
	}
	r = mig_source_resume(vm, &err);
	pthread_mutex_lock(&a->lock);
	if (r >= 0)
		v->held = false;
	v->busy = false;
	pthread_mutex_unlock(&a->lock);
	if (r < 0)
		return reply(s, r, err.msg, NULL, 0);
	if (!a->opts.quiet)
		fprintf(stderr, "migratectl agent: VM %s resumed here (held by migration %s)\n",
			req.name, got);
	return reply(s, 0, NULL, NULL, 0);
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
		return reply(s, -ENOMEM, "out of memory", NULL, 0);
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
		x->ram_bytes = lab_vm_config(v->vm)->mem_bytes;
	}
	pthread_mutex_unlock(&a->lock);
	r = reply(s, 0, NULL, info, n * sizeof(*info));
	free(info);
	return r;
}

/* The handler table: each operation with its name and the exact size of its
 * body, checked here once so handlers can copy it without more ado. */
static const struct {
	const char *name;
	op_handler fn;
	size_t body;
} handlers[_MIG_OP_END] = {
	[MIG_OP_VM_CREATE] = { "VM_CREATE", op_vm_create, sizeof(struct mig_vm_create) },
	[MIG_OP_VM_LIST] = { "VM_LIST", op_vm_list, 0 },
	[MIG_OP_VM_DESTROY] = { "VM_DESTROY", op_vm_destroy, sizeof(struct mig_vm_ref) },
	[MIG_OP_MIG_INCOMING] = { "MIG_INCOMING", op_mig_incoming, sizeof(struct mig_incoming) },
	[MIG_OP_MIG_OUTGOING] = { "MIG_OUTGOING", op_mig_outgoing, sizeof(struct mig_outgoing) },
	[MIG_OP_MIG_CANCEL] = { "MIG_CANCEL", op_mig_cancel, sizeof(struct mig_cancel) },
	[MIG_OP_VM_RESOLVE] = { "VM_RESOLVE", op_vm_resolve, sizeof(struct mig_vm_resolve) },
	[MIG_OP_MIG_LIST] = { "MIG_LIST", op_mig_list, 0 },
};

static int send_error(struct session *s, int code, const char *msg)
{
	struct mig_error_msg m;

	mig_error_msg_fill(&m, code, msg);
	return xport_conn_send(&s->c, MIG_FRAME_ERROR, 0, &m, sizeof(m), NULL);
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

	r = xport_conn_recv(&s->c, &fh, &pl, 10000, &err);
	if (r < 0 || fh.type != MIG_FRAME_HELLO || pl.len != sizeof(h)) {
		/* Answer in our own version: a peer of another version then reports
		 * the mismatch in its own words instead of a reset connection. */
		send_error(s, r < 0 ? r : -EPROTO, r < 0 ? err.msg : "expected HELLO");
		if (!a->opts.quiet && r < 0 && r != -ETIME)
			fprintf(stderr, "migratectl agent: refused a client: %s\n", err.msg);
		mig_buf_free(&pl);
		return r < 0 ? r : -EPROTO;
	}
	h.flags = a->key.len ? MIG_HELLO_F_AUTH : 0;
	snprintf(h.software, sizeof(h.software), "migratectl agent");
	r = xport_conn_send(&s->c, MIG_FRAME_HELLO, 0, &h, sizeof(h), NULL);
	if (r < 0 || !a->key.len)
		goto out;
	xport_random(ch.nonce, sizeof(ch.nonce));
	r = xport_conn_send(&s->c, MIG_FRAME_AUTH_CHALLENGE, 0, &ch, sizeof(ch), NULL);
	if (r >= 0)
		r = xport_conn_recv(&s->c, &fh, &pl, 10000, NULL);
	if (r < 0)
		goto out;
	if (fh.type != MIG_FRAME_AUTH_RESPONSE || pl.len != sizeof(resp)) {
		send_error(s, -EACCES, "this agent requires a key: pass --key-file");
		r = -EACCES;
		goto out;
	}
	memcpy(&resp, pl.data, sizeof(resp));
	ctl_auth_mac(a->key.data, a->key.len, "migratectl-client", ch.nonce, resp.nonce, want);
	if (!xport_mac_equal(want, resp.mac, sizeof(want))) {
		send_error(s, -EACCES, "authentication failed: the client's key does not match "
			   "this agent's --key-file");
		if (!a->opts.quiet)
			fprintf(stderr, "migratectl agent: refused a client with a wrong key\n");
		r = -EACCES;
		goto out;
	}
	ctl_auth_mac(a->key.data, a->key.len, "migratectl-agent", resp.nonce, ch.nonce, proof.mac);
	r = xport_conn_send(&s->c, MIG_FRAME_AUTH_OK, 0, &proof, sizeof(proof), NULL);
out:
	mig_buf_free(&pl);
	return r;
}

static void *session_thread(void *arg)
{
	struct session *s = arg;
	struct mig_buf pl = { 0 };

	if (handshake(s) >= 0) {
		for (;;) {
			struct mig_frame_hdr fh;
			struct mig_request req;
			int r = xport_conn_recv(&s->c, &fh, &pl, -1, NULL);

			if (r < 0)
				break;
			if (fh.type != MIG_FRAME_REQUEST || pl.len < sizeof(req)) {
				send_error(s, -EPROTO, "expected a REQUEST frame");
				break;
			}
			memcpy(&req, pl.data, sizeof(req));
			if (req.op >= _MIG_OP_END || !handlers[req.op].fn) {
				reply(s, -EOPNOTSUPP, "unknown operation", NULL, 0);
				continue;
			}
			if (pl.len - sizeof(req) != handlers[req.op].body) {
				char msg[96];

				snprintf(msg, sizeof(msg), "%s: body of %zu bytes, expected %zu",
					 handlers[req.op].name, pl.len - sizeof(req),
					 handlers[req.op].body);
				reply(s, -EINVAL, msg, NULL, 0);
				continue;
			}
			if (handlers[req.op].fn(s, pl.data + sizeof(req)) < 0)
				break;
		}
	}
	mig_buf_free(&pl);
	xport_conn_close(&s->c);
	free(s);
	return NULL;
}

int agent_run(const struct agent_opts *opts, struct mig_error *err)
{
	struct agent *a = calloc(1, sizeof(*a));
	struct xport_endpoint ep;
	int lfd, r;

	if (!a)
		return mig_error_set(err, -ENOMEM, "out of memory");
	a->opts = *opts;
	pthread_mutex_init(&a->lock, NULL);
	r = xport_endpoint_parse(opts->listen, &ep, err);
	if (r < 0)
		goto out;
	if (ep.kind != XPORT_EP_TCP && ep.kind != XPORT_EP_UNIX) {
		r = mig_error_set(err, -EINVAL, "an agent listens on tcp://HOST:PORT or unix:///PATH");
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
	lfd = xport_listen(&ep, err);
	if (lfd < 0) {
		r = lfd;
		goto out;
	}
	if (opts->ready_fd >= 0) {
		/* tell a parent waiting for us that we listen */
		(void)!write(opts->ready_fd, "1", 1);
		close(opts->ready_fd);
	}
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct session *s;
		pthread_t t;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			r = mig_error_set(err, -errno, "accept: %s", strerror(errno));
			break;
		}
		xport_tune_socket(fd);
		s = calloc(1, sizeof(*s));
		if (!s || xport_conn_init(&s->c, fd, NULL) < 0) {
			free(s);
			close(fd);
			continue;
		}
		s->a = a;
		if (pthread_create(&t, NULL, session_thread, s)) {
			xport_conn_close(&s->c);
			free(s);
			continue;
		}
		pthread_detach(t);
	}
	close(lfd);
out:
	mig_buf_free(&a->key);
	free(a);
	return r;
}
