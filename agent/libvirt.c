// SPDX-License-Identifier: MIT
/*
 * The agent's libvirt domains (docs/libvirt.md).  libvirt migrates its own
 * domains, QEMU moves their memory; the agents carry the three kinds of
 * connections that takes (libvirtd's RPC, QEMU's migration stream and its
 * multifd channels, the disks' NBD copy) between unix sockets on the two
 * hosts through the tunnel (include/migrate/tunnel.h), and the source's
 * agent starts and follows the migration through the libvirt C API.
 *
 * The sockets live in one run directory per migration, at the same path on
 * both hosts (libvirt and QEMU name the destination by a path that must
 * work on the source too): the source's tunnel listens there, and on the
 * destination QEMU listens there and the tunnel connects.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/libvirt.h>
#include <migrate/policy.h>
#include <migrate/stream.h>
#include <migrate/tunnel.h>
#include <migrate/wire-order.h>

#include "agent-internal.h"
#include "journal.h"
#include "util.h"

#define LV_RUN_DIR_DEFAULT "/run/migratectl/libvirt"
#define LV_SOCKET_DEFAULT "/run/libvirt/libvirt-sock"
/* Progress events while libvirt migrates. */
#define LV_PROGRESS_MS 200
/* The destination gives its tunnel up when the source has not opened it
 * this soon (a start that gave up without calling it off). */
#define LV_SOURCE_WAIT_MS 60000
/* A run directory is named by the first hex digits of the migration's id:
 * a unix socket's path has 107 bytes at most. */
#define LV_RUN_ID_LEN 12
#define LV_RUN_BASE_MAX 80

static const char *run_base(const struct agent *a)
{
	return a->opts.libvirt_run_dir[0] ? a->opts.libvirt_run_dir : LV_RUN_DIR_DEFAULT;
}

static void run_dir_of(const struct agent *a, const uint8_t id[16], char *buf, size_t n)
{
	char s[37];

	uuid_unparse_lower(id, s);
	snprintf(buf, n, "%s/%.8s%.4s", run_base(a), s, s + 9);
}

/* libvirtd's own socket on this host: the URI's ?socket=, else libvirt's
 * default for qemu:///system. */
static void libvirtd_socket(const struct agent *a, char *buf, size_t n)
{
	const char *q = strstr(a->opts.libvirt_uri, "socket=");
	size_t len;

	if (!q) {
		str_copy(buf, n, LV_SOCKET_DEFAULT);
		return;
	}
	q += strlen("socket=");
	len = strcspn(q, "&");
	snprintf(buf, n, "%.*s", (int)len, q);
}

/* A name libvirt and the agents both accept, NUL-terminated within cap. */
static bool lv_name_ok(const char *n, size_t cap)
{
	size_t len = strnlen(n, cap);

	if (len == 0 || len == cap)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)n[i] < 0x20 || n[i] == '/' || n[i] == 0x7f)
			return false;
	return true;
}

/* ---- the connection to libvirtd, and the journal of domains ---- */

/* A domain's vCPUs start or stop: the journal has them as vCPU 0 of the
 * domain named by its UUID, its identity on every host. */
static void lv_lifecycle(void *arg, const struct mig_lv_lifecycle *e)
{
	struct agent *a = arg;
	struct mig_journal_rec rec = { 0 };

	str_copy(rec.vm, sizeof(rec.vm), e->uuid);
	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < ARRAY_SIZE(a->migs); i++) {
		struct agent_mig *m = &a->migs[i];

		if (!m->used || strcmp(m->name, e->name))
			continue;
		memcpy(rec.mig_id, m->id, sizeof(rec.mig_id));
		if (m->side == MIG_SIDE_SOURCE && !e->running)
			atomic_store(&m->lv_paused, true);
		if (m->side == MIG_SIDE_SOURCE && e->postcopy)
			atomic_store(&m->lv_postcopy, true);
	}
	pthread_mutex_unlock(&a->lock);
	rec.realtime_ns = e->realtime_ns;
	rec.monotonic_ns = e->monotonic_ns;
	rec.event = e->running ? MIG_VCPU_RUN_START : MIG_VCPU_RUN_STOP;
	agent_journal_add(a->journal, &rec);
}

/* A journal record of a domain: named by its UUID. */
static bool lv_record(const struct mig_journal_rec *r)
{
	uuid_t u;

	return uuid_parse(r->vm, u) == 0;
}

/*
 * Domains outlive the agent: while none ran (before this one, or between
 * a predecessor's death and this start) libvirt's events went unheard.
 * Once connected, the journal says what runs now where it says otherwise:
 * a start for each running domain whose last record is not a start, a
 * stop for each whose last record is a start and that no longer runs.
 * Each at this instant: the domain ran, or stopped, no later than now.
 */
static void lv_reconcile(struct agent *a, struct mig_lv *lv)
{
	static char uuids[MIG_LV_RECONCILE_MAX][37];
	struct mig_journal_rec rec = { .vcpu = 0 };
	struct mig_error err = { 0 };
	struct mig_buf seen = { 0 };
	unsigned n = 0;

	if (mig_lv_running(lv, uuids, MIG_LV_RECONCILE_MAX, &n, &err) < 0) {
		agent_log(a, "libvirt: the journal cannot be brought up to date: %s", err.msg);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		if (agent_journal_running(a->journal, uuids[i]) == 1)
			continue;
		str_copy(rec.vm, sizeof(rec.vm), uuids[i]);
		rec.realtime_ns = mig_realtime_ns();
		rec.monotonic_ns = mig_clock_ns(CLOCK_MONOTONIC);
		rec.event = MIG_VCPU_RUN_START;
		agent_journal_add(a->journal, &rec);
		agent_log(a, "libvirt: journal: domain %s runs (unheard before this agent)",
			  uuids[i]);
	}
	/* the ones journaled as running that are not among them */
	if (agent_journal_uuids(a->journal, lv_record, &seen) < 0)
		return;
	for (size_t k = 0; k + sizeof(rec.vm) <= seen.len; k += sizeof(rec.vm)) {
		const char *vm = (const char *)seen.data + k;
		bool runs = false;

		for (unsigned i = 0; i < n && !runs; i++)
			runs = !strcmp(uuids[i], vm);
		if (runs || agent_journal_running(a->journal, vm) != 1)
			continue;
		str_copy(rec.vm, sizeof(rec.vm), vm);
		rec.realtime_ns = mig_realtime_ns();
		rec.monotonic_ns = mig_clock_ns(CLOCK_MONOTONIC);
		rec.event = MIG_VCPU_RUN_STOP;
		agent_journal_add(a->journal, &rec);
		agent_log(a, "libvirt: journal: domain %s no longer runs (unheard before this "
			  "agent)", vm);
	}
	mig_buf_free(&seen);
}

/* The connection, made now if it was not yet; NULL with the reason. */
static struct mig_lv *lv_get(struct agent *a, char *why, size_t n)
{
	struct mig_error err = { 0 };
	struct mig_lv *lv;
	bool fresh = false;

	if (!a->opts.libvirt_uri[0]) {
		snprintf(why, n, "this agent serves no libvirt host: start it with --libvirt URI "
			 "(e.g. qemu:///system)");
		return NULL;
	}
	pthread_mutex_lock(&a->lv_lock);
	if (!a->lv && mig_lv_open(a->opts.libvirt_uri, lv_lifecycle, a, &a->lv, &err) < 0)
		snprintf(why, n, "%s", err.msg);
	else
		fresh = !a->lv_reconciled;
	a->lv_reconciled |= fresh;
	lv = a->lv;
	if (fresh)
		lv_reconcile(a, lv);
	pthread_mutex_unlock(&a->lv_lock);
	return lv;
}

int agent_lv_init(struct agent *a, struct mig_error *err)
{
	char why[512];
	int r;

	pthread_mutex_init(&a->lv_lock, NULL);
	if (!a->opts.libvirt_uri[0])
		return 0;
	if (a->opts.journal[0]) {
		r = agent_journal_preload(a->journal, a->opts.journal, lv_record, err);
		if (r < 0)
			return mig_error_prefix(err, "taking back the journal's domain records (move "
						"the file away to start a new one)");
	}
	if (lv_get(a, why, sizeof(why)))
		agent_log(a, "libvirt: connected to %s; migration sockets under %s",
			  a->opts.libvirt_uri, run_base(a));
	else
		agent_log(a, "libvirt: %s (tried again at the next request)", why);
	return 0;
}

/* The run directory: made here, reachable by QEMU's user only (and root). */
static int run_dir_make(struct agent *a, const char *dir, char *why, size_t n)
{
	const char *user = a->opts.libvirt_qemu_user[0] ? a->opts.libvirt_qemu_user :
			   "libvirt-qemu";
	struct passwd *pw;
	char base[128];

	str_copy(base, sizeof(base), run_base(a));
	for (char *p = base + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(base, 0755);
		*p = '/';
	}
	if (mkdir(base, 0755) < 0 && errno != EEXIST)
		return snprintf(why, n, "cannot make %s: %s", base, strerror(errno)), -errno;
	if (mkdir(dir, 0700) < 0)
		return snprintf(why, n, "cannot make the migration's directory %s: %s", dir,
				strerror(errno)), -errno;
	pw = geteuid() == 0 ? getpwnam(user) : NULL;
	if (pw && chown(dir, pw->pw_uid, pw->pw_gid) < 0)
		agent_log(a, "libvirt: cannot give %s to %s: %s", dir, user, strerror(errno));
	else if (!pw && a->opts.libvirt_qemu_user[0])
		agent_log(a, "libvirt: no user %s: %s stays the agent's", user, dir);
	return 0;
}

static void run_dir_remove(const char *dir)
{
	static const char *const names[] = { "libvirt.sock", "qemu.sock", "nbd.sock" };
	char p[160];

	for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
}

/* ---- the destination ---- */

struct lv_in {
	struct agent *a;
	struct agent_mig *m;
	struct mig_tunnel *t;
	struct agent_fault *fault;   /* --chaos: this migration's plan (NULL: none) */
	struct chaos_relay *relay;   /* --chaos, a net plan: what the source connects to */
	char dir[128];
};

/* Everything an incoming migration holds, given back (the tunnel's end
 * first: the relay and the plan outlive its threads). */
static void lv_in_free(struct lv_in *in)
{
	mig_tunnel_stop(in->t);
	agent_relay_end(in->a, in->fault, &in->relay);
	agent_fault_end(in->fault);
	run_dir_remove(in->dir);
	mig_drop(in->a, in->m);
	free(in);
}

/* Ends the tunnel when the source closes it, or calls it off, or never
 * comes. */
static void *lv_in_thread(void *arg)
{
	struct lv_in *in = arg;
	struct agent *a = in->a;
	uint64_t end = mig_now_ms() + LV_SOURCE_WAIT_MS;
	struct mig_tunnel_stats st;
	bool came = false;

	for (;;) {
		if (mig_tunnel_wait_closed(in->t, LV_PROGRESS_MS))
			break;
		if (atomic_load(&in->m->cancel)) {
			agent_log(a, "libvirt: the incoming migration of %s was called off",
				  in->m->name);
			break;
		}
		mig_tunnel_stats(in->t, &st);
		came |= st.control_up;
		if (!came && mig_now_ms() > end) {
			agent_log(a, "libvirt: the source of %s never opened the tunnel",
				  in->m->name);
			break;
		}
	}
	mig_tunnel_stats(in->t, &st);
	if (st.error[0])
		agent_log(a, "libvirt: tunnel of %s: %s", in->m->name, st.error);
	agent_log(a, "libvirt: tunnel of %s closed: %u libvirt, %u qemu, %u nbd connections, "
		  "%llu bytes in, %llu out", in->m->name, st.channels[MIG_TUNNEL_LIBVIRT],
		  st.channels[MIG_TUNNEL_QEMU], st.channels[MIG_TUNNEL_NBD],
		  (unsigned long long)st.bytes_out, (unsigned long long)st.bytes_in);
	lv_in_free(in);
	return NULL;
}

int agent_op_lv_incoming(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct mig_lv_incoming req;
	struct mig_lv_incoming_reply rep = { 0 };
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP };
	struct mig_error err = { 0 };
	struct mig_tunnel_dst d = { 0 };
	char why[512] = "", sock[108], qemu[160], nbd[160], uuid[37];
	struct mig_lv *lv;
	struct lv_in *in;
	uint32_t state;
	bool persistent;
	pthread_t th;
	int fd, r;

	memcpy(&req, body, sizeof(req));
	mig_wire_le(&mig_wl_lv_incoming, &req, 1);
	req.listen_host[sizeof(req.listen_host) - 1] = '\0';
	if (!lv_name_ok(req.domain, sizeof(req.domain)) || req.encrypt >= _MIG_ENCRYPT_END)
		return agent_reply(s, -EINVAL, "LV_INCOMING: bad domain name or encryption", NULL,
				   0);
	lv = lv_get(a, why, sizeof(why));
	if (!lv)
		return agent_reply(s, -ENOTCONN, why, NULL, 0);
	r = mig_lv_domain_state(lv, req.domain, &state, uuid, &persistent, &err);
	if (r < 0)
		return agent_reply(s, r, err.msg, NULL, 0);
	if (state == MIG_LV_STATE_RUNNING || state == MIG_LV_STATE_PAUSED)
		return agent_reply(s, -EEXIST, "the domain already runs on the destination", NULL, 0);
	in = calloc(1, sizeof(*in));
	if (!in)
		return agent_reply(s, -ENOMEM, "out of memory", NULL, 0);
	in->a = a;
	run_dir_of(a, req.id, in->dir, sizeof(in->dir));
	if (strlen(run_base(a)) > LV_RUN_BASE_MAX) {
		free(in);
		return agent_reply(s, -ENAMETOOLONG, "--libvirt-run-dir is too long for unix socket "
				   "paths under it (80 bytes at most)", NULL, 0);
	}
	pthread_mutex_lock(&a->lock);
	in->m = mig_take(a, req.id, MIG_SIDE_DESTINATION, req.domain, "", 0);
	pthread_mutex_unlock(&a->lock);
	if (!in->m) {
		free(in);
		return agent_reply(s, -ENOSPC, "too many migrations on this agent", NULL, 0);
	}
	r = run_dir_make(a, in->dir, why, sizeof(why));
	if (r < 0)
		goto fail;
	str_copy(ep.host, sizeof(ep.host), req.listen_host[0] ? req.listen_host : "127.0.0.1");
	fd = xport_listen(&ep, &err);
	if (fd >= 0 && xport_local_addr(fd, rep.addr, sizeof(rep.addr)) < 0) {
		close(fd);
		fd = mig_error_set(&err, -EIO, "cannot read the listening address");
	}
	if (fd < 0) {
		r = fd;
		snprintf(why, sizeof(why), "%s", err.msg);
		goto fail_dir;
	}
	libvirtd_socket(a, sock, sizeof(sock));
	snprintf(qemu, sizeof(qemu), "%s/qemu.sock", in->dir);
	snprintf(nbd, sizeof(nbd), "%s/nbd.sock", in->dir);
	d.id = req.id;
	d.secret = req.secret;
	d.listen_fd = fd;
	d.targets[MIG_TUNNEL_LIBVIRT] = sock;
	d.targets[MIG_TUNNEL_QEMU] = qemu;
	d.targets[MIG_TUNNEL_NBD] = (req.flags & MIG_LV_F_COPY_STORAGE) ? nbd : NULL;
	d.encrypt = req.encrypt;
	agent_fault_attach(a, req.domain, &in->fault, &d.fault, &d.fault_arg);
	r = mig_tunnel_dst_start(&d, &in->t, &err);
	if (r >= 0)
		r = agent_relay_begin(a, in->fault, req.domain, ep.host, rep.addr,
				      sizeof(rep.addr), &in->relay, &err);
	if (r >= 0 && pthread_create(&th, NULL, lv_in_thread, in))
		r = mig_error_set(&err, -EAGAIN, "cannot start the tunnel's thread");
	if (r < 0) {
		snprintf(why, sizeof(why), "%s", err.msg);
		lv_in_free(in);
		return agent_reply(s, r, why, NULL, 0);
	}
	pthread_detach(th);
	str_copy(rep.run_dir, sizeof(rep.run_dir), in->dir);
	agent_log(a, "libvirt: incoming %s: tunnel at %s, sockets in %s", req.domain, rep.addr,
		  in->dir);
	mig_wire_le(&mig_wl_lv_incoming_reply, &rep, 1);
	return agent_reply(s, 0, NULL, &rep, sizeof(rep));
fail_dir:
	run_dir_remove(in->dir);
fail:
	mig_drop(a, in->m);
	free(in);
	return agent_reply(s, r, why, NULL, 0);
}

/* ---- the source ---- */

static uint64_t known(uint64_t v)
{
	return v == MIG_LV_UNKNOWN ? 0 : v;
}

/* libvirt's figures as a PROGRESS (or RESULT) event: what has no libvirt
 * equivalent stays MIG_LV_UNKNOWN, which the summary prints as null. */
static void lv_event(const struct mig_lv_stats *st, const struct mig_lv_outgoing *req,
		     uint64_t t0, struct mig_event *ev)
{
	ev->phase = st->paused ? MIG_PHASE_STOP_COPY : MIG_PHASE_PRECOPY;
	ev->round = (uint32_t)known(st->mem_iteration);
	ev->streams = req->parallel;
	ev->elapsed_ms = mig_now_ms() - t0;
	ev->remaining_bytes = st->data_remaining;
	ev->dirty_rate_bps = st->mem_dirty_rate == MIG_LV_UNKNOWN ||
			     st->mem_page_size == MIG_LV_UNKNOWN ? MIG_LV_UNKNOWN :
			     st->mem_dirty_rate * st->mem_page_size;
	ev->throughput_bps = st->mem_bps == MIG_LV_UNKNOWN ? MIG_LV_UNKNOWN : st->mem_bps;
	/* while the job runs, libvirt's downtime is QEMU's expectation */
	ev->expected_downtime_ms = st->downtime_ms;
	ev->ram_total_bytes = st->mem_total;
	ev->transferred_bytes = st->data_processed;
	ev->zero_pages = st->mem_constant;
	ev->normal_pages = st->mem_normal;
	ev->downtime_ms = st->downtime_ms;
	ev->setup_ms = st->setup_ms;
}

struct lv_out {
	struct agent *a;
	struct session *s;
	struct agent_mig *m;
	struct mig_lv_outgoing req;
	char dir[128];
	uint64_t t0;
	/* convergence, as followed: libvirt's throttle at its highest and
	 * how long one was on; post-copy asked for (after which pass, when)
	 * and seen (the domain paused for it) */
	uint32_t throttle_max;
	uint64_t throttle_ms;
	bool pc_asked, pc_seen;
	uint32_t pc_iteration;
	uint64_t pc_t0;
	uint32_t round;           /* QEMU's iteration, last seen */
};

static void progress(struct lv_out *o, const struct mig_event *ev)
{
	struct mig_event w = *ev;

	pthread_mutex_lock(&o->a->lock);
	o->m->last = *ev;
	pthread_mutex_unlock(&o->a->lock);
	mig_wire_le(&mig_wl_event, &w, 1);
	xport_conn_send(&o->s->c, MIG_FRAME_EVENT, 0, &w, sizeof(w), NULL);
}

/* Post-copy, once the passes asked for are done: QEMU's iteration counts
 * the pass it is in (1 during the bulk copy), so N passes are done when it
 * is past N. */
static void postcopy_check(struct lv_out *o, struct mig_lv_job *j, const struct mig_lv_stats *st)
{
	uint32_t after = o->req.postcopy_after ? o->req.postcopy_after : 1;
	struct mig_error err = { 0 };

	if (!(o->req.flags & MIG_LV_F_POSTCOPY) || o->pc_asked || st->paused ||
	    st->mem_iteration == MIG_LV_UNKNOWN || st->mem_iteration <= after)
		return;
	o->pc_asked = true;
	if (mig_lv_job_postcopy(j, &err) < 0) {
		/* the migration goes on in pre-copy: its timeout still holds */
		agent_log(o->a, "libvirt: %s", err.msg);
		return;
	}
	o->pc_iteration = (uint32_t)st->mem_iteration;
	o->pc_t0 = mig_now_ms();
	agent_log(o->a, "libvirt: %s: post-copy asked for after %u memory pass%s",
		  o->req.domain, o->pc_iteration - 1, o->pc_iteration == 2 ? "" : "es");
}

/* What the event says of convergence (PROGRESS and RESULT).  Post-copy
 * ran once libvirt paused the source for it (its lifecycle event, or the
 * domain's state): asking is not enough, QEMU may have failed before the
 * switch, with the source still whole.  A migration that completed after
 * the switch was asked for ran it. */
static void lv_converge(struct lv_out *o, struct mig_event *ev, bool completed)
{
	ev->converge = o->req.converge;
	ev->throttle_pct = o->throttle_max;
	ev->throttle_ms = o->throttle_ms;
	o->pc_seen |= atomic_load(&o->m->lv_postcopy);
	if (o->pc_seen || (completed && o->pc_iteration)) {
		ev->postcopy = 1;
		ev->postcopy_round = o->pc_iteration ? o->pc_iteration - 1 : 0;
		ev->phase = MIG_PHASE_POSTCOPY;
	}
}

/* Follows the job to its end: progress, a cancel, the timeout, the
 * switch to post-copy. */
static void follow(struct lv_out *o, struct mig_lv_job *j)
{
	struct mig_error err = { 0 };
	bool aborted = false, forced = false;
	uint64_t last = mig_now_ms();

	while (!mig_lv_job_done(j, LV_PROGRESS_MS)) {
		struct mig_lv_stats st;
		struct mig_event ev = { .kind = MIG_EVENT_PROGRESS };
		/* in post-copy the domain runs on the destination: pausing or
		 * aborting would not give it back to the source */
		bool late = o->req.timeout_ms && mig_now_ms() - o->t0 > o->req.timeout_ms &&
			    !o->pc_iteration;
		uint64_t now;

		if (!aborted && (atomic_load(&o->m->cancel) ||
				 (late && o->req.timeout_action != CONV_TIMEOUT_FORCE))) {
			aborted = true;
			mig_error_clear(&err);
			if (mig_lv_job_abort(j, &err) < 0)
				agent_log(o->a, "libvirt: abort of %s: %s", o->req.domain, err.msg);
		} else if (!forced && late && o->req.timeout_action == CONV_TIMEOUT_FORCE) {
			forced = true;
			mig_error_clear(&err);
			if (mig_lv_job_suspend(j, &err) < 0)
				agent_log(o->a, "libvirt: pausing %s to finish: %s", o->req.domain,
					  err.msg);
		}
		mig_error_clear(&err);
		if (mig_lv_job_stats(j, &st, &err) < 0)
			continue;         /* between libvirt's phases: no job to read */
		now = mig_now_ms();
		if (st.auto_converge_throttle != MIG_LV_UNKNOWN && st.auto_converge_throttle) {
			if (st.auto_converge_throttle > o->throttle_max)
				o->throttle_max = (uint32_t)st.auto_converge_throttle;
			o->throttle_ms += now - last;
		}
		last = now;
		o->pc_seen |= st.postcopy;
		if (!aborted && !forced)
			postcopy_check(o, j, &st);
		lv_event(&st, &o->req, o->t0, &ev);
		lv_converge(o, &ev, false);
		if (ev.round > o->round)    /* no job, after an abort: no iteration */
			o->round = ev.round;
		progress(o, &ev);
	}
}

static void result(struct lv_out *o, struct mig_event *res, int r, const char *why)
{
	res->kind = MIG_EVENT_RESULT;
	res->total_ms = mig_now_ms() - o->t0;
	if (r == 0) {
		res->result = MIG_RESULT_COMPLETED;
		res->owner = MIG_OWNER_DESTINATION;
		res->phase = MIG_PHASE_DONE;
	} else {
		res->result = atomic_load(&o->m->cancel) ? MIG_RESULT_CANCELLED : MIG_RESULT_FAILED;
		/* Where the domain is, the start settles by asking both hosts.
		 * The phase says how far it got: a domain never paused for the
		 * switchover cannot have run on the destination. */
		res->owner = MIG_OWNER_NONE;
		if (res->postcopy)
			res->phase = MIG_PHASE_POSTCOPY;   /* neither host has all of it */
		else
			res->phase = atomic_load(&o->m->lv_paused) ||
				     res->phase == MIG_PHASE_STOP_COPY ?
				     MIG_PHASE_STOP_COPY : MIG_PHASE_PRECOPY;
		str_copy(res->error, sizeof(res->error), why);
	}
	res->streams = o->req.parallel;
}

static void run_outgoing(struct lv_out *o, struct mig_lv *lv)
{
	struct mig_error err = { 0 };
	struct mig_tunnel_src ts = { .id = o->req.id, .secret = o->req.secret,
				     .dest_addr = o->req.dest_addr, .encrypt = o->req.encrypt };
	struct mig_tunnel_stats tst = { 0 };
	struct mig_lv_stats fin;
	struct mig_event res;
	struct mig_tunnel *t = NULL;
	struct mig_lv_job *j = NULL;
	struct agent_fault *fault = NULL;
	char lsock[160], qsock[160], nsock[160], dconn[200], qemu_uri[170], nbd_uri[170];
	char why[900] = "";
	int r;

	memset(&res, 0, sizeof(res));
	snprintf(lsock, sizeof(lsock), "%s/libvirt.sock", o->dir);
	snprintf(qsock, sizeof(qsock), "%s/qemu.sock", o->dir);
	snprintf(nsock, sizeof(nsock), "%s/nbd.sock", o->dir);
	snprintf(dconn, sizeof(dconn), "qemu+unix:///system?socket=%s", lsock);
	snprintf(qemu_uri, sizeof(qemu_uri), "unix://%s", qsock);
	snprintf(nbd_uri, sizeof(nbd_uri), "unix://%s", nsock);
	ts.paths[MIG_TUNNEL_LIBVIRT] = lsock;
	ts.paths[MIG_TUNNEL_QEMU] = qsock;
	ts.paths[MIG_TUNNEL_NBD] = (o->req.flags & MIG_LV_F_COPY_STORAGE) ? nsock : NULL;
	agent_fault_attach(o->a, o->req.domain, &fault, &ts.fault, &ts.fault_arg);
	r = run_dir_make(o->a, o->dir, why, sizeof(why));
	if (r >= 0) {
		r = mig_tunnel_src_start(&ts, &t, &err);
		if (r < 0)
			snprintf(why, sizeof(why), "opening the tunnel to the destination: %s",
				 err.msg);
	}
	if (r >= 0) {
		struct mig_lv_migrate mm = {
			.name = o->req.domain, .dconnuri = dconn, .miguri = qemu_uri,
			.disks_uri = nbd_uri, .parallel = o->req.parallel,
			.copy_storage = o->req.flags & MIG_LV_F_COPY_STORAGE,
			.bandwidth_bps = o->req.max_bandwidth_bps,
			.downtime_ms = o->req.downtime_limit_ms,
			.auto_converge = o->req.flags & MIG_LV_F_AUTO_CONVERGE,
			.postcopy = o->req.flags & MIG_LV_F_POSTCOPY,
		};

		mig_error_clear(&err);
		r = mig_lv_migrate_start(lv, &mm, &j, &err);
		if (r < 0)
			snprintf(why, sizeof(why), "%s", err.msg);
	}
	if (j) {
		follow(o, j);
		mig_error_clear(&err);
		memset(&fin, 0, sizeof(fin));
		r = mig_lv_job_finish(j, &fin, &err);
		lv_event(&fin, &o->req, o->t0, &res);
		/* an aborted job's statistics lack the iteration it reached */
		if (fin.mem_iteration == MIG_LV_UNKNOWN || res.round < o->round)
			res.round = o->round;
		lv_converge(o, &res, r == 0);
		if (res.postcopy) {
			res.postcopy_requested = fin.mem_postcopy_reqs;
			res.postcopy_ms = o->pc_t0 ? mig_now_ms() - o->pc_t0 : 0;
		}
		if (o->pc_iteration || o->pc_seen)
			agent_log(o->a, "libvirt: post-copy of %s: %s by this agent; libvirt paused "
				  "the source for it: %s", o->req.domain, o->pc_iteration ? "asked" :
				  "not asked", o->pc_seen ? "seen" : "not seen");
		if (r < 0)
			snprintf(why, sizeof(why), "%s", err.msg);
	}
	if (t) {
		mig_tunnel_stats(t, &tst);
		res.wire_bytes = tst.bytes_out + tst.bytes_in;
		res.encrypted = tst.sealed > 0;
		/* the tunnel's own failure says more than libvirt's echo of it */
		if (r < 0 && tst.error[0])
			snprintf(why + strlen(why), sizeof(why) - strlen(why), " (tunnel: %s)",
				 tst.error);
	}
	result(o, &res, r, why);
	agent_log(o->a, "libvirt: migration of %s %s%s%s", o->req.domain,
		  mig_result_to_string(res.result), why[0] ? ": " : "", why);
	agent_send_result(o->s, &res, NULL);
	mig_tunnel_stop(t);
	agent_fault_end(fault);
	run_dir_remove(o->dir);
}

int agent_op_lv_outgoing(struct session *s, const uint8_t *body)
{
	struct agent *a = s->a;
	struct lv_out o = { .a = a, .s = s, .t0 = mig_now_ms() };
	struct mig_error err = { 0 };
	char why[512] = "", uuid[37];
	struct mig_lv *lv;
	uint32_t state;
	bool persistent;
	int r;

	memcpy(&o.req, body, sizeof(o.req));
	mig_wire_le(&mig_wl_lv_outgoing, &o.req, 1);
	o.req.dest_addr[sizeof(o.req.dest_addr) - 1] = '\0';
	o.req.run_dir[sizeof(o.req.run_dir) - 1] = '\0';
	if (!lv_name_ok(o.req.domain, sizeof(o.req.domain)) || o.req.parallel < 1 ||
	    o.req.parallel > MIG_MAX_STREAMS || o.req.timeout_action < CONV_TIMEOUT_ABORT ||
	    o.req.timeout_action > CONV_TIMEOUT_FORCE || o.req.encrypt >= _MIG_ENCRYPT_END ||
	    o.req.converge >= _CONV_MODE_MAX || o.req.postcopy_after > 64)
		return agent_reply(s, -EINVAL, "LV_OUTGOING: bad domain name, connection count "
				   "(1-16), timeout action or convergence", NULL, 0);
	/* the directory is this agent's to make: the destination's must be
	 * the one this agent would have chosen */
	run_dir_of(a, o.req.id, o.dir, sizeof(o.dir));
	if (strcmp(o.dir, o.req.run_dir)) {
		snprintf(why, sizeof(why), "the destination's migration sockets are in %s, this "
			 "agent's would be in %s: give both hosts' agents the same "
			 "--libvirt-run-dir", o.req.run_dir, o.dir);
		return agent_reply(s, -EINVAL, why, NULL, 0);
	}
	lv = lv_get(a, why, sizeof(why));
	if (!lv)
		return agent_reply(s, -ENOTCONN, why, NULL, 0);
	r = mig_lv_domain_state(lv, o.req.domain, &state, uuid, &persistent, &err);
	if (r < 0)
		return agent_reply(s, r, err.msg, NULL, 0);
	if (state != MIG_LV_STATE_RUNNING && state != MIG_LV_STATE_PAUSED)
		return agent_reply(s, -ENOENT, state == MIG_LV_STATE_ABSENT ? "no such domain on "
				   "the source's libvirt" : "the domain is not running on the source",
				   NULL, 0);
	pthread_mutex_lock(&a->lock);
	o.m = mig_take(a, o.req.id, MIG_SIDE_SOURCE, o.req.domain, o.req.dest_addr, 0);
	if (o.m)
		o.m->last.phase = MIG_PHASE_SETUP;
	pthread_mutex_unlock(&a->lock);
	if (!o.m)
		return agent_reply(s, -EAGAIN, "too many migrations on this agent", NULL, 0);
	r = agent_reply(s, 0, NULL, NULL, 0);
	agent_log(a, "libvirt: migrating %s to %s over %u connection%s%s%s", o.req.domain,
		  o.req.dest_addr, o.req.parallel, o.req.parallel == 1 ? "" : "s",
		  o.req.flags & MIG_LV_F_AUTO_CONVERGE ? ", auto-converge" : "",
		  o.req.flags & MIG_LV_F_POSTCOPY ? ", post-copy allowed" : "");
	run_outgoing(&o, lv);
	mig_drop(a, o.m);
	return r;
}

int agent_op_lv_domain(struct session *s, const uint8_t *body)
{
	struct mig_lv_domain_ref req;
	struct mig_lv_domain_info info = { 0 };
	struct mig_error err = { 0 };
	char why[512];
	struct mig_lv *lv;
	bool persistent = false;
	int r;

	memcpy(&req, body, sizeof(req));
	if (!lv_name_ok(req.domain, sizeof(req.domain)))
		return agent_reply(s, -EINVAL, "LV_DOMAIN: bad domain name", NULL, 0);
	lv = lv_get(s->a, why, sizeof(why));
	if (!lv)
		return agent_reply(s, -ENOTCONN, why, NULL, 0);
	r = mig_lv_domain_state(lv, req.domain, &info.state, info.uuid, &persistent, &err);
	if (r < 0)
		return agent_reply(s, r, err.msg, NULL, 0);
	info.persistent = persistent;
	mig_wire_le(&mig_wl_lv_domain_info, &info, 1);
	return agent_reply(s, 0, NULL, &info, sizeof(info));
}
