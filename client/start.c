// SPDX-License-Identifier: MIT
/*
 * `start`'s two-agent choreography as one call (docs/protocol.md §5).
 * Until the source takes the migration on, nothing has moved: any failure,
 * or an interrupt, leaves the VM where it was.  After, an interrupt becomes
 * a cancel sent to the source, and only the source's RESULT says where the
 * VM is; a lost source agent leaves that unknown.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/lab.h>
#include <migrate/policy.h>
#include <migrate/ssh.h>
#include <migrate/start.h>
#include <migrate/transport.h>
#include <migrate/wire-order.h>

#include "util.h"

/* After the source's connection broke: how long to wait for the source
 * agent to end the migration and say where the VM is, and how often to ask. */
#define REATTACH_MS 30000
#define REATTACH_POLL_MS 200
/* A tcp source agent that refuses connections this long is gone. */
#define REATTACH_REFUSED_MS 5000
/* A call whose answer only helps (calling a destination off, asking a lost
 * source again) waits this long at most. */
#define CALL_OFF_MS 2000

static bool interrupted(const struct mig_start_opts *o)
{
	return o->interrupted && *o->interrupted;
}

static void step(const struct mig_start_opts *o, enum mig_start_step s,
		 const struct mig_start_result *st, const struct mig_event *ev)
{
	if (o->on_step)
		o->on_step(o->arg, s, st, ev);
}

static int cancel_remote(const struct mig_client *src, const char *key_file, const uint8_t *id)
{
	struct mig_client c2;
	struct mig_cancel req;
	struct mig_error err = { 0 };
	int r;

	if (mig_client_reopen(src, key_file, &c2, &err) < 0)
		return -1;
	memcpy(req.id, id, 16);
	r = mig_client_call(&c2, MIG_OP_MIG_CANCEL, &req, sizeof(req), NULL, &err);
	mig_client_close(&c2);
	return r;
}

/* The destination prepared a VM that will not come: it is told at once,
 * rather than waiting out its time for a source that has given up.  Only
 * where the source owns the VM (it never committed), so the destination
 * never ran it; a destination the source already reached is the source's
 * to end, and the call changes nothing there. */
static void call_off_destination(struct mig_client *dst, const uint8_t *id)
{
	struct mig_cancel req;
	struct mig_error err = { 0 };

	if (dst->conn.fd < 0)
		return;
	memcpy(req.id, id, 16);
	/* best effort: a destination stopped or cut off must not hold the start */
	mig_client_call_within(dst, MIG_OP_MIG_CANCEL, &req, sizeof(req), NULL, CALL_OFF_MS,
			       &err);
}

/* The VM named ret->name as the source lists it, and whether it is held. */
static int find_vm(struct mig_client *src, struct mig_start_result *ret, struct mig_error *err)
{
	struct mig_buf extra = { 0 };
	int r = mig_client_call(src, MIG_OP_VM_LIST, NULL, 0, &extra, err);

	for (size_t i = 0; r >= 0 && i + sizeof(struct mig_vm_info) <= extra.len;
	     i += sizeof(struct mig_vm_info)) {
		struct mig_vm_info v;

		memcpy(&v, extra.data + i, sizeof(v));
		mig_wire_le(&mig_wl_vm_info, &v, 1);
		if (strncmp(v.name, ret->name, sizeof(v.name)))
			continue;
		ret->vm = v;
		if (v.state == MIG_VM_HELD) {
			ret->held = true;
			uuid_unparse_lower(v.held_by, ret->held_id);
			v.held_peer[sizeof(v.held_peer) - 1] = '\0';
			str_copy(ret->held_peer, sizeof(ret->held_peer), v.held_peer);
		}
	}
	mig_buf_free(&extra);
	return r;
}

/* Whether the agent on c runs the migration id now (MIG_LIST). */
static int runs_migration(struct mig_client *c, const uint8_t *id, bool *running,
			  struct mig_error *err)
{
	struct mig_buf extra = { 0 };
	int r = mig_client_call_within(c, MIG_OP_MIG_LIST, NULL, 0, &extra, CALL_OFF_MS, err);

	*running = false;
	for (size_t i = 0; r >= 0 && i + sizeof(struct mig_migration_info) <= extra.len;
	     i += sizeof(struct mig_migration_info)) {
		struct mig_migration_info m;

		memcpy(&m, extra.data + i, sizeof(m));
		mig_wire_le(&mig_wl_migration_info, &m, 1);
		*running |= !memcmp(m.id, id, 16) && m.state == MIG_MIGRATION_RUNNING;
	}
	mig_buf_free(&extra);
	return r;
}

/* The connection to the source broke while the migration ran: the source
 * agent may well be there still (a link that reset, then healed).  On new
 * connections, wait (bounded) until it no longer runs the migration, then
 * look at the VM: a copy it holds for this migration is named, so the
 * operator learns where it waits.  The outcome stays unknown here (exit 3);
 * nothing is decided from this look. */
static void reattach(const struct mig_start_opts *o, const struct mig_client *src,
		     const uint8_t *id, struct mig_start_result *ret)
{
	uint64_t end = mig_now_ms() + REATTACH_MS, refused_since = 0;
	char want[37];

	uuid_unparse_lower(id, want);
	while (mig_now_ms() < end) {
		struct mig_error err = { 0 };
		struct mig_client c2;
		bool running = false;
		int r;

		if (mig_client_reopen(src, o->key_file, &c2, &err) < 0) {
			/* Nothing listens: the agent is gone, and its VMs with
			 * it.  Over tcp a refusal may also be a link that
			 * resets connections for a while (a firewall's REJECT),
			 * so it is believed only once it lasts; a timeout may
			 * be a link still cut, worth another try. */
			bool gone = err.code == -ECONNREFUSED || err.code == -ENOENT;

			if (gone && !refused_since)
				refused_since = mig_now_ms();
			if (gone && (src->ep.kind != XPORT_EP_TCP ||
				     mig_now_ms() - refused_since > REATTACH_REFUSED_MS))
				return;
			if (!gone)
				refused_since = 0;
			usleep(REATTACH_POLL_MS * 1000);
			continue;
		}
		r = runs_migration(&c2, id, &running, &err);
		if (r >= 0 && !running) {
			ret->held = false;
			if (find_vm(&c2, ret, &err) >= 0 && ret->held && strcmp(ret->held_id, want))
				ret->held = false;     /* held by another migration: not ours */
			mig_client_close(&c2);
			return;
		}
		mig_client_close(&c2);
		usleep(REATTACH_POLL_MS * 1000);
	}
}

/* Follows the source's EVENTs to the RESULT, sending a cancel once if
 * interrupted.  0 with the RESULT in ret, <0 when the source is lost. */
static int follow(const struct mig_start_opts *o, struct mig_client *src, const uint8_t *id,
		  struct mig_start_result *ret)
{
	struct mig_error err = { 0 };
	struct mig_buf pl = { 0 };
	bool cancel_sent = false;
	int r = 0;

	for (;;) {
		struct mig_frame_hdr fh;
		struct mig_event ev;

		if (interrupted(o) && !cancel_sent) {
			cancel_sent = true;
			step(o, MIG_START_CANCELLING, ret, NULL);
			cancel_remote(src, o->key_file, id);
		}
		r = xport_conn_recv(&src->conn, &fh, &pl, 200, &err);
		if (r == -ETIME) {
			mig_error_clear(&err);
			continue;
		}
		if (r < 0) {
			snprintf(ret->why, sizeof(ret->why), "lost the source agent: %s", err.msg);
			break;
		}
		if (pl.len >= sizeof(ev)) {
			memcpy(&ev, pl.data, sizeof(ev));
			mig_wire_le(&mig_wl_event, &ev, 1);
		}
		/* PROGRESS is the event alone, RESULT the event and its devices */
		if (fh.type != MIG_FRAME_EVENT || pl.len < sizeof(ev) ||
		    (ev.kind == MIG_EVENT_RESULT && ev.nr_devices > MIG_EVENT_DEVICES_MAX) ||
		    pl.len != sizeof(ev) + (ev.kind == MIG_EVENT_RESULT ?
					    (size_t)ev.nr_devices * sizeof(ret->devs[0]) : 0)) {
			snprintf(ret->why, sizeof(ret->why), "the source agent sent %s of %zu bytes, "
				 "expected EVENT of %zu: is it the same migratectl version?",
				 mig_frame_type_to_string(fh.type) ?: "a frame", pl.len, sizeof(ev));
			r = -EPROTO;
			break;
		}
		if (ev.kind == MIG_EVENT_RESULT) {
			memcpy(ret->devs, pl.data + sizeof(ev), ev.nr_devices * sizeof(ret->devs[0]));
			mig_wire_le(&mig_wl_event_device, ret->devs, ev.nr_devices);
			ret->res = ev;
			ret->res.error[sizeof(ret->res.error) - 1] = '\0';
			break;
		}
		/* a libvirt domain in post-copy: kept should the agent be lost */
		if (ev.postcopy)
			ret->res.postcopy = 1;
		step(o, MIG_START_PROGRESS, ret, &ev);
	}
	mig_buf_free(&pl);
	return r;
}

/* Where the destination agent listens for the migration's streams: the
 * host the source reaches it by (a tcp or ssh endpoint's HOST; the
 * streams go straight between the agents, not through ssh), or loopback
 * for an agent on this host. */
static const char *dest_listen_host(const struct mig_start_opts *o,
				    const struct xport_endpoint *dep)
{
	if (o->tunnel)
		return "127.0.0.1";
	return dep->kind == XPORT_EP_TCP || dep->kind == XPORT_EP_SSH ? dep->host : "127.0.0.1";
}

/* --tunnel: the address the source connects to, a port sshd forwards at
 * its host to the destination's listener at its own (include/migrate/ssh.h). */
static int tunnel_addr(struct mig_client *src, struct mig_client *dst, const char *dest_addr,
		       char *buf, size_t n, struct mig_error *err)
{
	struct xport_endpoint ep;
	int port, r;

	r = xport_endpoint_parse(dest_addr, &ep, err);
	if (r < 0)
		return r;
	r = mig_ssh_tunnel(src->ssh, dst->ssh, ep.port, &port, err);
	if (r < 0)
		return r;
	snprintf(buf, n, "127.0.0.1:%d", port);
	return 0;
}

/* ---- libvirt domains (docs/libvirt.md) ---- */

/* Where a libvirt domain is on one host, asked on a connection of its own
 * (bounded: the answer only settles what the RESULT left open). */
static int lv_domain(const struct mig_client *c, const char *key_file, const char *name,
		     struct mig_lv_domain_info *info, struct mig_error *err)
{
	struct mig_lv_domain_ref ref = { 0 };
	struct mig_buf extra = { 0 };
	struct mig_client c2;
	int r;

	memset(info, 0, sizeof(*info));
	str_copy(ref.domain, sizeof(ref.domain), name);
	r = mig_client_reopen(c, key_file, &c2, err);
	if (r < 0)
		return r;
	r = mig_client_call_within(&c2, MIG_OP_LV_DOMAIN, &ref, sizeof(ref), &extra, CALL_OFF_MS,
				   err);
	if (r >= 0 && extra.len != sizeof(*info))
		r = mig_error_set(err, -EPROTO, "malformed LV_DOMAIN reply");
	if (r >= 0) {
		memcpy(info, extra.data, sizeof(*info));
		mig_wire_le(&mig_wl_lv_domain_info, info, 1);
		info->uuid[sizeof(info->uuid) - 1] = '\0';
	}
	mig_buf_free(&extra);
	mig_client_close(&c2);
	if (r < 0)
		memset(info, 0, sizeof(*info));
	return r;
}

static bool lv_there(const struct mig_lv_domain_info *d)
{
	return d->state == MIG_LV_STATE_RUNNING || d->state == MIG_LV_STATE_PAUSED;
}

static const char *lv_where(const struct mig_lv_domain_info *d)
{
	switch (d->state) {
	case MIG_LV_STATE_RUNNING: return "running";
	case MIG_LV_STATE_PAUSED: return "paused";
	case MIG_LV_STATE_SHUTOFF: return "shut off";
	case MIG_LV_STATE_ABSENT: return "absent";
	case MIG_LV_STATE_OTHER: return "neither running nor shut off";
	default: return "unknown (its agent did not answer)";
	}
}

/*
 * libvirt's RESULT says how its migration ended; where the domain is, both
 * hosts say.  Exactly one host has it: that one owns it.  Both or neither:
 * an operator must look.  A destination that cannot be asked has it only
 * if libvirt says the migration completed, or the source was paused for
 * the switchover (the destination runs nothing before that).
 */
static void lv_settle(const struct mig_start_opts *o, const struct mig_client *src,
		      const struct mig_client *dst, struct mig_start_result *ret)
{
	struct mig_event *res = &ret->res;
	struct mig_error e1 = { 0 }, e2 = { 0 };
	bool s_ok, d_ok, s_there, d_there;
	char where[512];

	s_ok = lv_domain(src, o->key_file, ret->name, &ret->src_dom, &e1) >= 0;
	d_ok = lv_domain(dst, o->key_file, ret->name, &ret->dst_dom, &e2) >= 0;
	s_there = s_ok && lv_there(&ret->src_dom);
	d_there = d_ok && lv_there(&ret->dst_dom);
	if (res->result != MIG_RESULT_COMPLETED && res->postcopy) {
		/* The destination ran the domain before all of its memory was
		 * there: no copy can be taken to be whole, wherever libvirt left
		 * them (a destination that says running may be running in a
		 * failed post-copy, which LV_DOMAIN does not tell). */
		res->owner = MIG_OWNER_NONE;
		snprintf(where, sizeof(where), "post-copy had begun: domain %s ran on the "
			 "destination before all of its memory was there, and neither host can be "
			 "taken to hold all of it (it is %s on the source and %s on the "
			 "destination); check both hosts (virsh domstate --reason says post-copy "
			 "failed where a copy is not whole); migratectl does not recover a libvirt "
			 "post-copy", ret->name, lv_where(&ret->src_dom), lv_where(&ret->dst_dom));
		goto tell;
	}
	if (res->result == MIG_RESULT_COMPLETED)
		res->owner = s_ok && !s_there && (d_there || !d_ok) ? MIG_OWNER_DESTINATION :
			     MIG_OWNER_NONE;
	else if (s_there && (d_ok ? !d_there : res->phase < MIG_PHASE_STOP_COPY))
		res->owner = MIG_OWNER_SOURCE;
	else if (d_there && s_ok && !s_there)
		res->owner = MIG_OWNER_DESTINATION;
	else
		res->owner = MIG_OWNER_NONE;
	if (res->owner != MIG_OWNER_NONE)
		return;
	snprintf(where, sizeof(where), "domain %s is %s on the source and %s on the destination: "
		 "check both hosts (virsh list) and keep one", ret->name, lv_where(&ret->src_dom),
		 lv_where(&ret->dst_dom));
tell:
	if (res->error[0])
		snprintf(res->error + strlen(res->error), sizeof(res->error) - strlen(res->error),
			 "; %s", where);
	else
		str_copy(res->error, sizeof(res->error), where);
}

/* Whether the agent at c answers and runs no migration with this id. */
static bool lv_agent_idle(const struct mig_client *c, const char *key_file, const uint8_t *id)
{
	struct mig_error err = { 0 };
	struct mig_client c2;
	bool running = false;
	int r;

	if (mig_client_reopen(c, key_file, &c2, &err) < 0)
		return false;
	r = runs_migration(&c2, id, &running, &err);
	mig_client_close(&c2);
	return r >= 0 && !running;
}

/*
 * The source agent's connection broke while libvirt migrated (the agent
 * died, or its link broke).  The domain outlives the agent: its QEMU is
 * libvirt's.  Once the source agent answers again (restarted, or the link
 * healed) and runs the migration no more, and libvirt no longer holds the
 * domain paused for it (a domain in post-copy stays paused: no waiting
 * then), both hosts say where it is, as after a RESULT; true then.  false when that does not come within REATTACH_MS (exit 3).
 */
static bool lv_reattach(const struct mig_start_opts *o, const struct mig_client *src,
			const struct mig_client *dst, const uint8_t *id,
			struct mig_start_result *ret)
{
	uint64_t end = mig_now_ms() + REATTACH_MS;
	struct mig_event *res = &ret->res;
	char why[sizeof(ret->why)];
	uint32_t postcopy = res->postcopy;   /* a PROGRESS said so */

	str_copy(why, sizeof(why), ret->why);
	for (;;) {
		struct mig_error err = { 0 };
		struct mig_lv_domain_info d;
		bool late = mig_now_ms() >= end;

		if (lv_agent_idle(src, o->key_file, id) &&
		    lv_domain(src, o->key_file, ret->name, &d, &err) >= 0 &&
		    (d.state != MIG_LV_STATE_PAUSED || late || postcopy))
			break;
		if (late)
			return false;
		usleep(REATTACH_POLL_MS * 1000);
	}
	memset(res, 0, sizeof(*res));
	res->kind = MIG_EVENT_RESULT;
	res->result = MIG_RESULT_FAILED;
	res->postcopy = postcopy;
	/* how far it got is unknown: as far as the switchover, for a
	 * destination that cannot be asked */
	res->phase = MIG_PHASE_STOP_COPY;
	str_copy(res->error, sizeof(res->error), why);
	lv_settle(o, src, dst, ret);
	return true;
}

/*
 * A libvirt domain: the destination's agent opens a tunnel and names the
 * run directory, the source's starts libvirt's migration through it and
 * sends its EVENTs.  Returns with ret->outcome set; *prepared once the
 * destination has a tunnel to call off.
 */
static void start_libvirt(const struct mig_start_opts *o, struct mig_client *src,
			  struct mig_client *dst, const struct mig_incoming *ids,
			  struct mig_start_result *ret, bool *prepared)
{
	const char *name = o->vm + strlen(MIG_START_LIBVIRT_PREFIX);
	struct mig_lv_incoming in = { 0 };
	struct mig_lv_incoming_reply rep;
	struct mig_lv_outgoing out = { 0 };
	struct mig_error err = { 0 };
	struct mig_buf extra = { 0 };
	struct xport_endpoint dep;
	int r;

	ret->libvirt = true;
	if (!name[0] || strlen(name) >= MIG_LV_NAME_MAX) {
		ret->usage = true;
		snprintf(ret->why, sizeof(ret->why), "--vm %s: a libvirt domain's name has 1 to %d "
			 "bytes", o->vm, MIG_LV_NAME_MAX - 1);
		return;
	}
	str_copy(ret->name, sizeof(ret->name), name);
	r = lv_domain(src, o->key_file, name, &ret->src_dom, &err);
	if (r < 0 || !lv_there(&ret->src_dom)) {
		/* an agent without --libvirt, or no such domain: the caller's
		 * setup, and nothing started */
		ret->usage = r >= 0 || r == -ENOTCONN;
		if (r < 0)
			snprintf(ret->why, sizeof(ret->why), "source %s: %s", o->src, err.msg);
		else
			snprintf(ret->why, sizeof(ret->why), "no running domain %s on %s (it is %s "
				 "there)", name, o->src, lv_where(&ret->src_dom));
		return;
	}
	memcpy(in.id, ids->id, 16);
	memcpy(in.secret, ids->secret, sizeof(in.secret));
	str_copy(in.domain, sizeof(in.domain), name);
	in.flags = o->lv_flags;
	in.encrypt = o->params.encrypt;
	xport_endpoint_parse(o->dst, &dep, NULL);
	str_copy(in.listen_host, sizeof(in.listen_host),
		 dest_listen_host(o, &dep));
	ret->prepare_ms = mig_now_ms();
	mig_wire_le(&mig_wl_lv_incoming, &in, 1);
	r = interrupted(o) ? -EINTR : mig_client_call(dst, MIG_OP_LV_INCOMING, &in, sizeof(in),
						      &extra, &err);
	ret->prepare_ms = mig_now_ms() - ret->prepare_ms;
	if (r < 0 || extra.len != sizeof(rep)) {
		ret->usage = r == -ENOTCONN;   /* its agent serves no libvirt host */
		snprintf(ret->why, sizeof(ret->why), "preparing the destination: %s",
			 err.msg[0] ? err.msg : "malformed reply");
		mig_buf_free(&extra);
		return;
	}
	*prepared = true;
	memcpy(&rep, extra.data, sizeof(rep));
	mig_buf_free(&extra);
	mig_wire_le(&mig_wl_lv_incoming_reply, &rep, 1);
	rep.addr[sizeof(rep.addr) - 1] = rep.run_dir[sizeof(rep.run_dir) - 1] = '\0';
	str_copy(ret->dest_addr, sizeof(ret->dest_addr), rep.addr);

	memcpy(out.id, ids->id, 16);
	memcpy(out.secret, ids->secret, sizeof(out.secret));
	str_copy(out.domain, sizeof(out.domain), name);
	str_copy(out.dest_addr, sizeof(out.dest_addr), rep.addr);
	str_copy(out.run_dir, sizeof(out.run_dir), rep.run_dir);
	out.parallel = o->params.streams;
	out.flags = o->lv_flags;
	out.max_bandwidth_bps = o->params.max_bandwidth_bps;
	out.downtime_limit_ms = o->params.downtime_limit_ms;
	out.timeout_ms = o->params.timeout_ms;
	out.timeout_action = o->params.timeout_action;
	out.encrypt = o->params.encrypt;
	/* convergence by libvirt's own means: auto and throttle are QEMU's
	 * auto-converge, post-copy is allowed and the agent starts it */
	out.converge = o->params.converge ? o->params.converge : CONV_MODE_NONE;
	if (out.converge == CONV_MODE_THROTTLE || out.converge == CONV_MODE_AUTO)
		out.flags |= MIG_LV_F_AUTO_CONVERGE;
	if (out.converge == CONV_MODE_POSTCOPY) {
		out.flags |= MIG_LV_F_POSTCOPY;
		out.postcopy_after = o->params.postcopy_after;
	}
	if (interrupted(o))
		return;
	xport_interrupt_on(NULL);
	mig_wire_le(&mig_wl_lv_outgoing, &out, 1);
	if (mig_client_call(src, MIG_OP_LV_OUTGOING, &out, sizeof(out), NULL, &err) < 0) {
		snprintf(ret->why, sizeof(ret->why), "starting the migration: %s", err.msg);
		return;
	}
	step(o, MIG_START_STARTED, ret, NULL);
	if (follow(o, src, ids->id, ret) < 0) {
		ret->outcome = lv_reattach(o, src, dst, ids->id, ret) ? MIG_START_RESULT :
			       MIG_START_LOST;
		return;
	}
	ret->outcome = MIG_START_RESULT;
	lv_settle(o, src, dst, ret);
}

/* An agent on this host: a private one (local) or one on a unix socket. */
static bool same_host_kind(const struct mig_client *c)
{
	return !c->ssh && (c->ep.kind == XPORT_EP_LOCAL || c->ep.kind == XPORT_EP_UNIX);
}

static bool same_host_pair(const struct mig_client *src, const struct mig_client *dst)
{
	return same_host_kind(src) && same_host_kind(dst);
}

/* Whether a lab SPEC ("k=v,k=v") sets key. */
static bool spec_has_key(const char *spec, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = spec; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, key, n) && p[n] == '=')
			return true;
	return false;
}

static void outgoing_of(const struct mig_start_opts *o, const struct mig_incoming *in,
			const struct mig_start_result *ret, struct mig_outgoing *out)
{
	*out = o->params;
	memcpy(out->id, in->id, 16);
	memcpy(out->secret, in->secret, sizeof(out->secret));
	str_copy(out->name, sizeof(out->name), ret->name);
	str_copy(out->dest_addr, sizeof(out->dest_addr), ret->dest_addr);
}

int mig_start(const struct mig_start_opts *o, struct mig_start_result *ret)
{
	struct mig_error err = { 0 };
	struct mig_client src = { .conn.fd = -1 }, dst = { .conn.fd = -1 };
	struct mig_incoming in = { 0 }, win;
	struct mig_outgoing out;
	struct mig_incoming_reply inrep;
	struct mig_buf extra = { 0 };
	struct xport_endpoint dep;
	bool prepared = false, handover, anon = false;
	uuid_t uu;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->outcome = MIG_START_NOT_STARTED;
	uuid_generate_random(uu);
	uuid_unparse_lower(uu, ret->id);
	memcpy(in.id, uu, 16);
	xport_random(in.secret, sizeof(in.secret));

	/* Until the source takes the migration on, an interrupt ends any wait. */
	xport_interrupt_on(o->interrupted);
	/* A refused key is the caller's mistake: nothing started. */
	if (mig_client_open(o->src, o->key_file, &src, &err) < 0) {
		ret->usage = err.code == -EACCES;
		snprintf(ret->why, sizeof(ret->why), "source %s: %s", o->src, err.msg);
		goto out;
	}
	str_copy(ret->src_url, sizeof(ret->src_url), src.url);
	if (mig_client_open(o->dst, o->key_file, &dst, &err) < 0) {
		ret->usage = err.code == -EACCES;
		snprintf(ret->why, sizeof(ret->why), "destination %s: %s", o->dst, err.msg);
		goto out;
	}
	if (o->tunnel && (!src.ssh || !dst.ssh)) {
		ret->usage = true;
		snprintf(ret->why, sizeof(ret->why), "--tunnel carries the migration through the "
			 "ssh connections: give ssh:// SRC and DST");
		goto out;
	}
	if (o->vm && !strncmp(o->vm, MIG_START_LIBVIRT_PREFIX, strlen(MIG_START_LIBVIRT_PREFIX))) {
		if (o->tunnel) {
			ret->usage = true;
			snprintf(ret->why, sizeof(ret->why), "--tunnel does not carry libvirt "
				 "domains yet: libvirt's migration goes through the agents' own "
				 "tunnel, directly between the hosts");
			goto out;
		}
		start_libvirt(o, &src, &dst, &in, ret, &prepared);
		if (ret->outcome == MIG_START_NOT_STARTED)
			goto out;
		goto out_started;
	}

	/* Same-host hand-over: both agents on this host (local or unix://) get
	 * unix streams and a lab VM made for it RAM in a memfd; otherwise
	 * `always` cannot be met, and nothing starts. */
	handover = o->params.handover != MIG_HANDOVER_NEVER && same_host_pair(&src, &dst);
	if (o->params.handover == MIG_HANDOVER_ALWAYS && !handover) {
		ret->usage = true;
		snprintf(ret->why, sizeof(ret->why), "--handover always: guest RAM can be handed "
			 "over only between two agents on this host, and %s is not (give local or "
			 "unix:// endpoints for both, or --handover auto to copy instead)",
			 same_host_kind(&src) ? o->dst : o->src);
		goto out;
	}

	/* The VM: an existing one, or a lab VM made for this migration. */
	if (o->vm) {
		str_copy(ret->name, sizeof(ret->name), o->vm);
	} else {
		struct mig_vm_create req = { 0 };

		snprintf(ret->name, sizeof(ret->name), "lab-%.8s", ret->id);
		str_copy(req.name, sizeof(req.name), ret->name);
		str_copy(req.spec, sizeof(req.spec), o->lab_spec ? o->lab_spec : "");
		/* memfd RAM only where it can be handed over (unless asked) */
		if (handover && !spec_has_key(req.spec, "ram") && !spec_has_key(req.spec, "mdev"))
			snprintf(req.spec + strlen(req.spec), sizeof(req.spec) - strlen(req.spec),
				 "%sram=memfd", req.spec[0] ? "," : "");
		if (interrupted(o))
			goto out;
		step(o, MIG_START_CREATING_VM, ret, NULL);
		if (mig_client_call(&src, MIG_OP_VM_CREATE, &req, sizeof(req), NULL, &err) < 0) {
			snprintf(ret->why, sizeof(ret->why), "creating the lab VM: %s", err.msg);
			goto out;
		}
	}
	find_vm(&src, ret, &err);
	mig_error_clear(&err);
	if (!ret->vm.vcpus && !interrupted(o)) {
		ret->usage = true;
		snprintf(ret->why, sizeof(ret->why), "no VM named %s on %s (see migratectl vm list "
			 "%s)", ret->name, o->src, o->src);
		goto out;
	}
	if (ret->held) {
		/* An earlier migration of it ended with ownership unknown: it
		 * may run on that destination, and only an operator may say. */
		ret->outcome = MIG_START_HELD;
		snprintf(ret->why, sizeof(ret->why), "VM %s on %s is held paused: migration %s to "
			 "%s ended with ownership unknown, and it may run there; an operator must "
			 "resolve that first", ret->name, o->src, ret->held_id, ret->held_peer);
		goto out;
	}
	if (o->check_vm && ret->vm.vcpus &&
	    o->check_vm(o->arg, &ret->vm, ret->why, sizeof(ret->why)) < 0) {
		ret->usage = true;
		goto out;
	}

	/* Unix streams only for a VM whose RAM can go (a memfd); a copy keeps
	 * its TCP streams.  Under always the source says why it cannot. */
	if (handover && o->params.handover != MIG_HANDOVER_ALWAYS &&
	    ret->vm.lab.ram != LAB_RAM_MEMFD + 1) {
		handover = false;
		anon = true;
	}
	in.lab = ret->vm.lab;
	str_copy(in.name, sizeof(in.name), ret->name);
	in.streams = o->params.streams;
	in.encrypt = o->params.encrypt;
	in.flags = handover ? MIG_INCOMING_F_UNIX : 0;
	xport_endpoint_parse(o->dst, &dep, NULL);
	str_copy(in.listen_host, sizeof(in.listen_host),
		 dest_listen_host(o, &dep));
	ret->prepare_ms = mig_now_ms();
	win = in;
	mig_wire_le(&mig_wl_incoming, &win, 1);
	r = interrupted(o) ? -EINTR : mig_client_call(&dst, MIG_OP_MIG_INCOMING, &win, sizeof(win),
						      &extra, &err);
	ret->prepare_ms = mig_now_ms() - ret->prepare_ms;
	if (r < 0 || extra.len != sizeof(inrep)) {
		snprintf(ret->why, sizeof(ret->why), "preparing the destination: %s",
			 err.msg[0] ? err.msg : "malformed reply");
		goto out;
	}
	prepared = true;
	memcpy(&inrep, extra.data, sizeof(inrep));
	inrep.addr[sizeof(inrep.addr) - 1] = '\0';
	str_copy(ret->dest_addr, sizeof(ret->dest_addr), inrep.addr);
	outgoing_of(o, &in, ret, &out);
	if (o->tunnel && tunnel_addr(&src, &dst, inrep.addr, out.dest_addr, sizeof(out.dest_addr),
				     &err) < 0) {
		snprintf(ret->why, sizeof(ret->why), "--tunnel: %s", err.msg);
		goto out;
	}
	/* The destination gives its prepared VM up when no source connects. */
	if (interrupted(o))
		goto out;
	/* From here an interrupt is a cancel sent to the source, never a wait
	 * cut short: the source may already run the migration. */
	xport_interrupt_on(NULL);
	mig_wire_le(&mig_wl_outgoing, &out, 1);
	if (mig_client_call(&src, MIG_OP_MIG_OUTGOING, &out, sizeof(out), NULL, &err) < 0) {
		snprintf(ret->why, sizeof(ret->why), "starting the migration: %s", err.msg);
		if (err.code == -ENOTRECOVERABLE)
			ret->outcome = MIG_START_HELD;   /* held since the list above */
		goto out_started;
	}
	step(o, MIG_START_STARTED, ret, NULL);
	if (follow(o, &src, in.id, ret) < 0) {
		ret->outcome = MIG_START_LOST;
		reattach(o, &src, in.id, ret);
		goto out_started;
	}
	ret->outcome = MIG_START_RESULT;
	/* the source saw TCP streams; they were because its RAM could not go */
	if (anon && ret->res.handover == MIG_HANDOVER_NOT_UNIX)
		ret->res.handover = MIG_HANDOVER_NO_MEMFD;
	if (ret->res.src_held) {
		ret->held = true;
		str_copy(ret->held_id, sizeof(ret->held_id), ret->id);
		str_copy(ret->held_peer, sizeof(ret->held_peer), ret->dest_addr);
	}
	goto out_started;

out:
	/* not started: an interrupt is why, whatever the wait it ended said */
	if (ret->outcome == MIG_START_NOT_STARTED && interrupted(o)) {
		ret->cancelled = true;
		ret->usage = false;
		snprintf(ret->why, sizeof(ret->why), "cancelled before the migration started");
	}
out_started:
	xport_interrupt_on(NULL);
	if (prepared && (ret->outcome == MIG_START_NOT_STARTED || ret->outcome == MIG_START_HELD ||
			 (ret->outcome == MIG_START_RESULT && ret->res.owner == MIG_OWNER_SOURCE)))
		call_off_destination(&dst, in.id);
	mig_buf_free(&extra);
	mig_client_close(&src);
	mig_client_close(&dst);
	return ret->outcome == MIG_START_RESULT && ret->res.result == MIG_RESULT_COMPLETED ? 0 : -1;
}
