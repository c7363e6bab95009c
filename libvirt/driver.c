// SPDX-License-Identifier: MIT
/*
 * The libvirt driver (include/migrate/libvirt.h, docs/libvirt.md):
 * a connection to one libvirtd through the libvirt C API, the process's
 * one event-loop thread that libvirt's keepalive and events need, and
 * outgoing peer-to-peer migrations, each on a thread of its own because
 * virDomainMigrateToURI3 blocks until the migration ends.
 *
 * libvirt keeps its last error per thread: every message is read on the
 * thread whose call failed, right after the call.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <migrate/control.h>
#include <migrate/libvirt.h>
#include "util.h"

/*
 * libvirt is loaded when a libvirt host is first opened (dlopen): an agent
 * without --libvirt, and every other command, pays nothing for libvirt's
 * forty-odd libraries (some 10 MB of an agent's memory, and their load
 * time at every start of the hook).  The calls go through this table.
 */
#define LV_API(X) \
	X(virDomainFree) \
	X(virGetLastErrorCode) \
	X(virDomainGetUUIDString) \
	X(virTypedParamsFree) \
	X(virDomainGetJobStats) \
	X(virConnectDomainEventDeregisterAny) \
	X(virConnectClose) \
	X(virTypedParamsAddString) \
	X(virEventRemoveTimeout) \
	X(virEventAddTimeout) \
	X(virDomainMigrateToURI3) \
	X(virDomainLookupByName) \
	X(virDomainGetState) \
	X(virConnectSetKeepAlive) \
	X(virConnectOpen) \
	X(virConnectDomainEventRegisterAny) \
	X(virTypedParamsGetULLong) \
	X(virTypedParamsGetInt) \
	X(virTypedParamsAddULLong) \
	X(virTypedParamsAddInt) \
	X(virSetErrorFunc) \
	X(virInitialize) \
	X(virGetLastErrorMessage) \
	X(virEventRunDefaultImpl) \
	X(virEventRegisterDefaultImpl) \
	X(virDomainSuspend) \
	X(virDomainMigrateSetMaxDowntime) \
	X(virDomainLookupByUUIDString) \
	X(virDomainIsPersistent) \
	X(virDomainIsActive) \
	X(virDomainGetName) \
	X(virDomainGetJobInfo) \
	X(virDomainAbortJob) \
	X(virDomainMigrateStartPostCopy) \
	X(virConnectListAllDomains)
#define LV_API_FIELD(f) __typeof__(f) *f;
static struct {
	LV_API(LV_API_FIELD)
} lv_api;
static pthread_once_t lv_api_once = PTHREAD_ONCE_INIT;
static char lv_api_error[256];

static void lv_api_load_once(void)
{
	void *h = dlopen("libvirt.so.0", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		snprintf(lv_api_error, sizeof(lv_api_error), "cannot load libvirt (%s): install "
			 "libvirt0", dlerror());
		return;
	}
#define LV_API_SYM(f)								\
	if (!lv_api_error[0] && !(*(void **)&lv_api.f = dlsym(h, #f)))		\
		snprintf(lv_api_error, sizeof(lv_api_error), "libvirt.so.0 has no %s: "	\
			 "too old a libvirt", #f);
	LV_API(LV_API_SYM)
#undef LV_API_SYM
}

/* 0 once libvirt's calls are in the table. */
static int lv_api_load(struct mig_error *err)
{
	pthread_once(&lv_api_once, lv_api_load_once);
	if (lv_api_error[0])
		return mig_error_set(err, -ENOTSUP, "%s", lv_api_error);
	return 0;
}

struct mig_lv {
	virConnectPtr conn;
	char uri[256];
	int cb_lifecycle, cb_completed;     /* libvirt's callback ids, -1: none */
	void (*on_lifecycle)(void *arg, const struct mig_lv_lifecycle *e);
	void *arg;
	pthread_mutex_t lock;               /* jobs */
	struct mig_lv_job *jobs;            /* running or unfinished, for JOB_COMPLETED */
};

struct mig_lv_job {
	struct mig_lv *lv;
	struct mig_lv_job *next;            /* in lv->jobs, under lv->lock */
	virDomainPtr dom;                   /* held until finish: stats, abort */
	/* The migration call's own connection: a call that blocks for the
	 * whole migration on lv->conn held back other threads' calls on it
	 * (their replies waited for the keepalive's tick, seen with 9.0). */
	virConnectPtr mconn;
	virDomainPtr mdom;
	char name[MIG_LV_NAME_MAX];
	char uuid[VIR_UUID_STRING_BUFLEN];
	char dconnuri[512];
	virTypedParameterPtr params;
	int nparams;
	unsigned int flags;
	pthread_t thread;
	bool joined;                        /* thread joined already */
	/* Under lv->lock: set by the migration thread or the event thread. */
	bool done;
	int result;                         /* 0, or -errno with msg */
	char msg[400];
	bool have_final;
	struct mig_lv_stats final;
	pthread_cond_t cond;                /* CLOCK_MONOTONIC: done, have_final */
};

static const char *lv_last_error(void)
{
	const char *m = lv_api.virGetLastErrorMessage();

	return m ? m : "unknown libvirt error";
}

/* libvirt prints every error on stderr unless told otherwise; the library
 * prints nothing, and callers read the message from the failed call. */
static void lv_error_quiet(void *opaque, virErrorPtr e)
{
	(void)opaque;
	(void)e;
}

/* ---- the event loop: one thread for the process ---- */

/*
 * libvirt's default event implementation is process-wide, so two
 * connections (the tests open A and B in one process) share one loop
 * thread: the first mig_lv_open starts it, the last mig_lv_close stops it.
 */
static struct {
	pthread_mutex_t lock;
	unsigned users;
	pthread_t thread;
	atomic_bool stop;
} loop = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t lv_once = PTHREAD_ONCE_INIT;
static int lv_once_result;

static void lv_init_once(void)
{
	if (lv_api.virInitialize() < 0 || lv_api.virEventRegisterDefaultImpl() < 0) {
		lv_once_result = -EIO;
		return;
	}
	lv_api.virSetErrorFunc(NULL, lv_error_quiet);
}

static void *loop_run(void *unused)
{
	(void)unused;
	while (!atomic_load(&loop.stop))
		if (lv_api.virEventRunDefaultImpl() < 0)
			break;
	return NULL;
}

/* A timer that fires once in the loop thread: its callback signals the
 * waiter.  Adding it wakes the loop from its poll, and since callbacks
 * run one after another on that thread, once it fired no event callback
 * that began earlier is still running. */
struct loop_mark {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool fired;
	int id;
};

static void loop_mark_fire(int timer, void *opaque)
{
	struct loop_mark *m = opaque;

	lv_api.virEventRemoveTimeout(timer);
	pthread_mutex_lock(&m->lock);
	m->fired = true;
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* Waits until the loop thread ran a callback queued now (see loop_mark). */
static void loop_sync(void)
{
	struct loop_mark m = { .lock = PTHREAD_MUTEX_INITIALIZER,
			       .cond = PTHREAD_COND_INITIALIZER };

	m.id = lv_api.virEventAddTimeout(0, loop_mark_fire, &m, NULL);
	if (m.id < 0)
		return;
	pthread_mutex_lock(&m.lock);
	while (!m.fired)
		pthread_cond_wait(&m.cond, &m.lock);
	pthread_mutex_unlock(&m.lock);
}

static int loop_get(struct mig_error *err)
{
	int r = 0;

	pthread_mutex_lock(&loop.lock);
	if (loop.users == 0) {
		atomic_store(&loop.stop, false);
		r = -pthread_create(&loop.thread, NULL, loop_run, NULL);
		if (r < 0)
			mig_error_set(err, r, "libvirt: starting the event thread: %s", strerror(-r));
	}
	if (r == 0)
		loop.users++;
	pthread_mutex_unlock(&loop.lock);
	return r;
}

static void loop_wake(int timer, void *opaque)
{
	(void)timer;
	(void)opaque;
}

static void loop_put(void)
{
	int wake;

	pthread_mutex_lock(&loop.lock);
	if (--loop.users == 0) {
		/* The flag first, then a timer whose adding wakes the loop to
		 * see it.  Not loop_sync: the loop may wake for another reason,
		 * see the flag and end before the timer fires. */
		atomic_store(&loop.stop, true);
		wake = lv_api.virEventAddTimeout(0, loop_wake, NULL, NULL);
		pthread_join(loop.thread, NULL);
		if (wake >= 0)
			lv_api.virEventRemoveTimeout(wake);
	}
	pthread_mutex_unlock(&loop.lock);
}

/* ---- events ---- */

static void stamp(struct mig_lv_lifecycle *e)
{
	e->realtime_ns = mig_clock_ns(CLOCK_REALTIME);
	e->monotonic_ns = mig_clock_ns(CLOCK_MONOTONIC);
}

static int on_lifecycle_event(virConnectPtr conn, virDomainPtr dom, int event, int detail,
			      void *opaque)
{
	struct mig_lv *lv = opaque;
	struct mig_lv_lifecycle e = { .event = event, .detail = detail };
	const char *name = lv_api.virDomainGetName(dom);

	(void)conn;
	stamp(&e);
	if (!lv->on_lifecycle)
		return 0;
	str_copy(e.name, sizeof(e.name), name ? name : "");
	if (lv_api.virDomainGetUUIDString(dom, e.uuid) < 0)
		e.uuid[0] = '\0';
	e.running = event == VIR_DOMAIN_EVENT_STARTED || event == VIR_DOMAIN_EVENT_RESUMED;
	e.postcopy = event == VIR_DOMAIN_EVENT_SUSPENDED &&
		     detail == VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY;
	lv->on_lifecycle(lv->arg, &e);
	return 0;
}

static void stats_from_params(struct mig_lv_stats *st, virTypedParameterPtr p, int n);

/*
 * The completed job's statistics, as the source's libvirtd sends them when
 * the job ends.  After a successful migration of a transient domain the
 * source no longer has the domain, so lv_api.virDomainGetJobStats(COMPLETED)
 * fails ("Domain not found"); this event is then the only carrier of the
 * measured downtime.
 */
static void on_job_completed(virConnectPtr conn, virDomainPtr dom, virTypedParameterPtr params,
			     int nparams, void *opaque)
{
	struct mig_lv *lv = opaque;
	char uuid[VIR_UUID_STRING_BUFLEN];

	(void)conn;
	if (lv_api.virDomainGetUUIDString(dom, uuid) < 0)
		return;
	pthread_mutex_lock(&lv->lock);
	for (struct mig_lv_job *j = lv->jobs; j; j = j->next) {
		if (strcmp(j->uuid, uuid) || j->have_final)
			continue;
		stats_from_params(&j->final, params, nparams);
		j->have_final = true;
		pthread_cond_broadcast(&j->cond);
	}
	pthread_mutex_unlock(&lv->lock);
}

/* ---- the connection ---- */

int mig_lv_open(const char *uri, void (*on_lifecycle)(void *arg, const struct mig_lv_lifecycle *e),
		void *arg, struct mig_lv **ret, struct mig_error *err)
{
	struct mig_lv *lv;
	int r;

	*ret = NULL;
	r = lv_api_load(err);
	if (r < 0)
		return r;
	pthread_once(&lv_once, lv_init_once);
	if (lv_once_result < 0)
		return mig_error_set(err, lv_once_result, "libvirt: initialising the library: %s",
				     lv_last_error());
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return mig_error_set(err, -ENOMEM, "libvirt: out of memory");
	str_copy(lv->uri, sizeof(lv->uri), uri);
	lv->on_lifecycle = on_lifecycle;
	lv->arg = arg;
	lv->cb_lifecycle = lv->cb_completed = -1;
	pthread_mutex_init(&lv->lock, NULL);
	r = loop_get(err);
	if (r < 0)
		goto err_free;

	lv->conn = lv_api.virConnectOpen(uri);
	if (!lv->conn) {
		r = mig_error_set(err, -ECONNREFUSED,
				  "cannot reach libvirtd at %s: %s; is libvirtd running?",
				  uri, lv_last_error());
		goto err_loop;
	}
	/* A libvirtd that stops answering closes the connection within
	 * 5 s x 3 instead of leaving a call hanging. */
	if (lv_api.virConnectSetKeepAlive(lv->conn, 5, 3) < 0) {
		r = mig_error_set(err, -EIO, "libvirt at %s: keepalive: %s", uri, lv_last_error());
		goto err_close;
	}
	lv->cb_lifecycle = lv_api.virConnectDomainEventRegisterAny(lv->conn, NULL,
		VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle_event),
		lv, NULL);
	if (lv->cb_lifecycle < 0) {
		r = mig_error_set(err, -EIO, "libvirt at %s: lifecycle events: %s", uri,
				  lv_last_error());
		goto err_close;
	}
	lv->cb_completed = lv_api.virConnectDomainEventRegisterAny(lv->conn, NULL,
		VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, VIR_DOMAIN_EVENT_CALLBACK(on_job_completed),
		lv, NULL);
	if (lv->cb_completed < 0) {
		r = mig_error_set(err, -EIO, "libvirt at %s: job events: %s", uri,
				  lv_last_error());
		goto err_deregister;
	}
	*ret = lv;
	return 0;

err_deregister:
	lv_api.virConnectDomainEventDeregisterAny(lv->conn, lv->cb_lifecycle);
err_close:
	lv_api.virConnectClose(lv->conn);
err_loop:
	loop_put();
err_free:
	pthread_mutex_destroy(&lv->lock);
	free(lv);
	return r;
}

/* Every job must have been finished (mig_lv_job_finish) before. */
void mig_lv_close(struct mig_lv *lv)
{
	if (!lv)
		return;
	lv_api.virConnectDomainEventDeregisterAny(lv->conn, lv->cb_lifecycle);
	lv_api.virConnectDomainEventDeregisterAny(lv->conn, lv->cb_completed);
	/* A callback already running on the loop thread still uses lv:
	 * wait for it before freeing. */
	loop_sync();
	lv_api.virConnectClose(lv->conn);
	loop_put();
	pthread_mutex_destroy(&lv->lock);
	free(lv);
}

/* ---- domains ---- */

static uint32_t state_from_libvirt(int state)
{
	switch (state) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED:      /* vCPUs running, waiting on a resource */
		return MIG_LV_STATE_RUNNING;
	case VIR_DOMAIN_PAUSED:
		return MIG_LV_STATE_PAUSED;
	case VIR_DOMAIN_SHUTOFF:
		return MIG_LV_STATE_SHUTOFF;
	default:
		return MIG_LV_STATE_OTHER;
	}
}

int mig_lv_domain_state(struct mig_lv *lv, const char *name, uint32_t *ret_state,
			char uuid[37], bool *ret_persistent, struct mig_error *err)
{
	virDomainPtr dom = lv_api.virDomainLookupByName(lv->conn, name);
	int state, reason, persistent;

	uuid[0] = '\0';
	*ret_persistent = false;
	if (!dom) {
		if (lv_api.virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
			*ret_state = MIG_LV_STATE_ABSENT;
			return 0;
		}
		return mig_error_set(err, -EIO, "libvirt at %s: looking up domain %s: %s",
				     lv->uri, name, lv_last_error());
	}
	if (lv_api.virDomainGetState(dom, &state, &reason, 0) < 0) {
		/* Gone between the two calls: a migration or destroy ended. */
		if (lv_api.virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
			lv_api.virDomainFree(dom);
			*ret_state = MIG_LV_STATE_ABSENT;
			return 0;
		}
		int r = mig_error_set(err, -EIO, "libvirt at %s: state of domain %s: %s", lv->uri,
				      name, lv_last_error());

		lv_api.virDomainFree(dom);
		return r;
	}
	persistent = lv_api.virDomainIsPersistent(dom);
	if (lv_api.virDomainGetUUIDString(dom, uuid) < 0)
		uuid[0] = '\0';
	lv_api.virDomainFree(dom);
	*ret_state = state_from_libvirt(state);
	*ret_persistent = persistent == 1;
	return 0;
}

int mig_lv_running(struct mig_lv *lv, char (*uuids)[37], unsigned max, unsigned *ret_n,
		   struct mig_error *err)
{
	virDomainPtr *doms = NULL;
	int n = lv_api.virConnectListAllDomains(lv->conn, &doms, VIR_CONNECT_LIST_DOMAINS_RUNNING);

	*ret_n = 0;
	if (n < 0)
		return mig_error_set(err, -EIO, "libvirt at %s: listing the running domains: %s",
				     lv->uri, lv_last_error());
	for (int i = 0; i < n; i++) {
		if (*ret_n < max && lv_api.virDomainGetUUIDString(doms[i], uuids[*ret_n]) == 0)
			(*ret_n)++;
		lv_api.virDomainFree(doms[i]);
	}
	free(doms);
	return 0;
}

/* ---- statistics ---- */

static void stats_unknown(struct mig_lv_stats *st)
{
	uint64_t *f = &st->elapsed_ms;

	/* Every figure is a uint64_t from elapsed_ms up to paused. */
	for (size_t i = 0; i < offsetof(struct mig_lv_stats, paused) / sizeof(*f); i++)
		f[i] = MIG_LV_UNKNOWN;
	st->paused = false;
	st->postcopy = false;
}

static const struct {
	const char *name;
	size_t off;
} stat_fields[] = {
#define F(key, field) { key, offsetof(struct mig_lv_stats, field) }
	F(VIR_DOMAIN_JOB_TIME_ELAPSED, elapsed_ms),
	F(VIR_DOMAIN_JOB_DATA_TOTAL, data_total),
	F(VIR_DOMAIN_JOB_DATA_PROCESSED, data_processed),
	F(VIR_DOMAIN_JOB_DATA_REMAINING, data_remaining),
	F(VIR_DOMAIN_JOB_MEMORY_TOTAL, mem_total),
	F(VIR_DOMAIN_JOB_MEMORY_PROCESSED, mem_processed),
	F(VIR_DOMAIN_JOB_MEMORY_REMAINING, mem_remaining),
	F(VIR_DOMAIN_JOB_MEMORY_BPS, mem_bps),
	F(VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, mem_dirty_rate),
	F(VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE, mem_page_size),
	F(VIR_DOMAIN_JOB_MEMORY_ITERATION, mem_iteration),
	F(VIR_DOMAIN_JOB_MEMORY_NORMAL, mem_normal),
	F(VIR_DOMAIN_JOB_MEMORY_NORMAL_BYTES, mem_normal_bytes),
	F(VIR_DOMAIN_JOB_MEMORY_CONSTANT, mem_constant),
	F(VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS, mem_postcopy_reqs),
	F(VIR_DOMAIN_JOB_DISK_TOTAL, disk_total),
	F(VIR_DOMAIN_JOB_DISK_PROCESSED, disk_processed),
	F(VIR_DOMAIN_JOB_DISK_REMAINING, disk_remaining),
	F(VIR_DOMAIN_JOB_DOWNTIME, downtime_ms),
	F(VIR_DOMAIN_JOB_SETUP_TIME, setup_ms),
	F(VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE, auto_converge_throttle),
#undef F
};

/* The table names every figure of struct mig_lv_stats. */
_Static_assert(offsetof(struct mig_lv_stats, paused) == ARRAY_SIZE(stat_fields) * sizeof(uint64_t),
	       "stat_fields covers struct mig_lv_stats");

static void stats_from_params(struct mig_lv_stats *st, virTypedParameterPtr p, int n)
{
	stats_unknown(st);
	for (size_t i = 0; i < ARRAY_SIZE(stat_fields); i++) {
		uint64_t *f = (uint64_t *)((char *)st + stat_fields[i].off);
		unsigned long long ull;
		int v;

		/* Most are ULLONG; auto_converge_throttle is INT. */
		if (lv_api.virTypedParamsGetULLong(p, n, stat_fields[i].name, &ull) == 1)
			*f = ull;
		else if (lv_api.virTypedParamsGetInt(p, n, stat_fields[i].name, &v) == 1 && v >= 0)
			*f = (uint64_t)v;
	}
}

/* ---- migrations ---- */

/* What QEMU answers a new migration while an earlier one never ended. */
#define MIG_LV_STUCK_QEMU_A "There's a migration process in progress"
#define MIG_LV_STUCK_QEMU_B "duplicate yank instance"

/* libvirt wraps a hook's refusal in the command line it ran ("Hook script
 * execution failed: internal error: Child process (LC_ALL=C PATH=...)
 * unexpected exit status 1: LINE"): the hook's own line is what the user
 * needs, and the rest must not push it past the end of the message.  A
 * QEMU stuck in an earlier migration is named first, with what to do. */
static void failure_text(const char *m, char *buf, size_t n)
{
	static const char status[] = "unexpected exit status ";
	const char *p = strstr(m, "Hook script execution failed") ? strstr(m, status) : NULL;

	if (p)
		p = strstr(p + strlen(status), ": ");
	if (p)
		snprintf(buf, n, "libvirt's hook refused: %s", p + 2);
	else if (strstr(m, MIG_LV_STUCK_QEMU_A) || strstr(m, MIG_LV_STUCK_QEMU_B))
		/* QEMU's own migration state outlived libvirt's job */
		snprintf(buf, n, "%s: %s", MIG_LV_STUCK, m);
	else
		str_copy(buf, n, m);
}

static void *job_run(void *opaque)
{
	struct mig_lv_job *j = opaque;
	struct mig_lv_stats final;
	virTypedParameterPtr p = NULL;
	bool have_final = false;
	char msg[sizeof(j->msg)] = "";
	int n = 0, type, r;

	r = lv_api.virDomainMigrateToURI3(j->mdom, j->dconnuri, j->params, j->nparams, j->flags);
	if (r < 0) {
		failure_text(lv_last_error(), msg, sizeof(msg));
		r = -EIO;
	}
	/* Right away, while the domain still exists on this host (a
	 * persistent one, or any after a failure): the completed job. */
	if (lv_api.virDomainGetJobStats(j->mdom, &type, &p, &n, VIR_DOMAIN_JOB_STATS_COMPLETED) == 0 &&
	    type != VIR_DOMAIN_JOB_NONE) {
		stats_from_params(&final, p, n);
		have_final = true;
	}
	lv_api.virTypedParamsFree(p, n);

	pthread_mutex_lock(&j->lv->lock);
	j->result = r;
	str_copy(j->msg, sizeof(j->msg), msg);
	if (have_final && !j->have_final) {
		j->final = final;
		j->have_final = true;
	}
	j->done = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lv->lock);
	return NULL;
}

static int job_params(struct mig_lv_job *j, const struct mig_lv_migrate *m,
		      struct mig_error *err)
{
	int max = 0;

	j->flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER;
	if (lv_api.virTypedParamsAddString(&j->params, &j->nparams, &max, VIR_MIGRATE_PARAM_URI,
				    m->miguri) < 0)
		goto fail;
	/* parallel is libvirt's own count: the multifd channels, beside
	 * which QEMU opens its main one (start --streams N is virsh's
	 * --parallel-connections N) */
	if (m->parallel > 1) {
		j->flags |= VIR_MIGRATE_PARALLEL;
		if (lv_api.virTypedParamsAddInt(&j->params, &j->nparams, &max,
					 VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS,
					 (int)m->parallel) < 0)
			goto fail;
	}
	if (m->copy_storage) {
		j->flags |= VIR_MIGRATE_NON_SHARED_DISK;
		if (m->disks_uri && lv_api.virTypedParamsAddString(&j->params, &j->nparams, &max,
					VIR_MIGRATE_PARAM_DISKS_URI, m->disks_uri) < 0)
			goto fail;
	}
	/* QEMU's own throttle, with its defaults: 9.0 has parameters for its
	 * first step and increment, none for its bound (QEMU's 99 %) */
	if (m->auto_converge)
		j->flags |= VIR_MIGRATE_AUTO_CONVERGE;
	/* allowed only: the switch is mig_lv_job_postcopy's */
	if (m->postcopy)
		j->flags |= VIR_MIGRATE_POSTCOPY;
	/* libvirt takes MiB/s: round up, so that a small limit is not 0
	 * (which means "no limit"). */
	if (m->bandwidth_bps &&
	    lv_api.virTypedParamsAddULLong(&j->params, &j->nparams, &max, VIR_MIGRATE_PARAM_BANDWIDTH,
				    DIV_ROUND_UP(m->bandwidth_bps, 1024 * 1024)) < 0)
		goto fail;
	return 0;
fail:
	return mig_error_set(err, -ENOMEM, "libvirt: migration parameters: %s", lv_last_error());
}

/* The domain must exist here and be active (running or paused). */
static int job_lookup(struct mig_lv_job *j, struct mig_error *err)
{
	struct mig_lv *lv = j->lv;
	int active;

	j->dom = lv_api.virDomainLookupByName(lv->conn, j->name);
	if (!j->dom) {
		if (lv_api.virGetLastErrorCode() == VIR_ERR_NO_DOMAIN)
			return mig_error_set(err, -ENOENT, "no domain %s on this host (%s)",
					     j->name, lv->uri);
		return mig_error_set(err, -EIO, "libvirt at %s: looking up domain %s: %s",
				     lv->uri, j->name, lv_last_error());
	}
	active = lv_api.virDomainIsActive(j->dom);
	if (active < 0)
		return mig_error_set(err, -EIO, "libvirt at %s: domain %s: %s", lv->uri, j->name,
				     lv_last_error());
	if (!active)
		return mig_error_set(err, -EINVAL, "domain %s is not running on this host (%s)",
				     j->name, lv->uri);
	if (lv_api.virDomainGetUUIDString(j->dom, j->uuid) < 0)
		return mig_error_set(err, -EIO, "libvirt: domain %s: %s", j->name, lv_last_error());

	j->mconn = lv_api.virConnectOpen(lv->uri);
	if (!j->mconn)
		return mig_error_set(err, -ECONNREFUSED,
				     "cannot reach libvirtd at %s: %s; is libvirtd running?",
				     lv->uri, lv_last_error());
	if (lv_api.virConnectSetKeepAlive(j->mconn, 5, 3) < 0)
		return mig_error_set(err, -EIO, "libvirt at %s: keepalive: %s", lv->uri,
				     lv_last_error());
	j->mdom = lv_api.virDomainLookupByUUIDString(j->mconn, j->uuid);
	if (!j->mdom)
		return mig_error_set(err, -EIO, "libvirt at %s: looking up domain %s: %s",
				     lv->uri, j->name, lv_last_error());
	return 0;
}

static void job_free(struct mig_lv_job *j)
{
	if (j->dom)
		lv_api.virDomainFree(j->dom);
	if (j->mdom)
		lv_api.virDomainFree(j->mdom);
	if (j->mconn)
		lv_api.virConnectClose(j->mconn);
	lv_api.virTypedParamsFree(j->params, j->nparams);
	pthread_cond_destroy(&j->cond);
	free(j);
}

static void job_unlink(struct mig_lv_job *j)
{
	pthread_mutex_lock(&j->lv->lock);
	for (struct mig_lv_job **p = &j->lv->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			break;
		}
	pthread_mutex_unlock(&j->lv->lock);
}

/* Whether libvirt has a job on the domain: the migration took hold. */
static bool job_active(struct mig_lv_job *j)
{
	virDomainJobInfo info;

	return lv_api.virDomainGetJobInfo(j->dom, &info) == 0 && info.type != VIR_DOMAIN_JOB_NONE;
}

int mig_lv_migrate_start(struct mig_lv *lv, const struct mig_lv_migrate *m,
			 struct mig_lv_job **ret, struct mig_error *err)
{
	struct mig_lv_job *j;
	pthread_condattr_t ca;
	uint64_t deadline;
	int r;

	if (m->parallel > 256)
		return mig_error_set(err, -EINVAL, "libvirt migration: %u connections is too many",
				     m->parallel);
	if (!m->name || !m->dconnuri || !m->miguri || !m->name[0])
		return mig_error_set(err, -EINVAL, "libvirt migration: domain, destination and "
				     "migration URI are required");
	if (strlen(m->name) >= MIG_LV_NAME_MAX || strlen(m->dconnuri) >= sizeof(j->dconnuri))
		return mig_error_set(err, -ENAMETOOLONG, "libvirt migration: name or URI too long");
	j = calloc(1, sizeof(*j));
	if (!j)
		return mig_error_set(err, -ENOMEM, "libvirt: out of memory");
	j->lv = lv;
	str_copy(j->name, sizeof(j->name), m->name);
	str_copy(j->dconnuri, sizeof(j->dconnuri), m->dconnuri);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cond, &ca);
	pthread_condattr_destroy(&ca);

	r = job_lookup(j, err);
	if (r < 0)
		goto err_free;
	r = job_params(j, m, err);
	if (r < 0)
		goto err_free;
	/* 9.0 has no migration parameter for it: QEMU's downtime-limit is
	 * set beforehand and the migration keeps it. */
	if (m->downtime_ms && lv_api.virDomainMigrateSetMaxDowntime(j->dom, m->downtime_ms, 0) < 0) {
		r = mig_error_set(err, -EIO, "libvirt: domain %s: setting the downtime limit: %s",
				  j->name, lv_last_error());
		goto err_free;
	}

	pthread_mutex_lock(&lv->lock);
	j->next = lv->jobs;
	lv->jobs = j;
	pthread_mutex_unlock(&lv->lock);
	r = -pthread_create(&j->thread, NULL, job_run, j);
	if (r < 0) {
		mig_error_set(err, r, "libvirt: starting the migration thread: %s", strerror(-r));
		job_unlink(j);
		goto err_free;
	}

	/* Until libvirt holds a job on the domain or the call returned: a
	 * refusal at once (destination unreachable, a hook's veto) is this
	 * call's error.  Bounded: a slow start is followed by job_done. */
	deadline = mig_now_ms() + 10000;
	while (!mig_lv_job_done(j, 20) && !job_active(j) && mig_now_ms() < deadline)
		;
	if (mig_lv_job_done(j, 0)) {
		pthread_join(j->thread, NULL);
		j->joined = true;
		if (j->result < 0) {
			job_unlink(j);
			r = mig_error_set(err, j->result, "libvirt: migrating %s to %s: %s", j->name,
					  j->dconnuri, j->msg);
			goto err_free;
		}
		/* Finished already (a tiny guest): finish reports it. */
	}
	*ret = j;
	return 0;

err_free:
	job_free(j);
	return r;
}

bool mig_lv_job_done(struct mig_lv_job *j, int timeout_ms)
{
	struct timespec until = mig_timespec_after(CLOCK_MONOTONIC,
						   (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000);
	bool done;

	pthread_mutex_lock(&j->lv->lock);
	while (!j->done && timeout_ms > 0 &&
	       pthread_cond_timedwait(&j->cond, &j->lv->lock, &until) != ETIMEDOUT)
		;
	done = j->done;
	pthread_mutex_unlock(&j->lv->lock);
	return done;
}

int mig_lv_job_stats(struct mig_lv_job *j, struct mig_lv_stats *st, struct mig_error *err)
{
	virTypedParameterPtr p = NULL;
	int n = 0, type, state, reason;

	if (lv_api.virDomainGetJobStats(j->dom, &type, &p, &n, 0) < 0) {
		int code = lv_api.virGetLastErrorCode();

		stats_unknown(st);
		/* After the switchover the source's domain is stopped, or gone:
		 * the end of the job, which mig_lv_job_finish tells. */
		if (code == VIR_ERR_NO_DOMAIN || code == VIR_ERR_OPERATION_INVALID)
			return mig_error_set(err, -ESRCH, "libvirt: %s no longer runs here: %s",
					     j->name, lv_last_error());
		return mig_error_set(err, -EIO, "libvirt: job statistics of %s: %s", j->name,
				     lv_last_error());
	}
	stats_from_params(st, p, n);
	lv_api.virTypedParamsFree(p, n);
	st->paused = lv_api.virDomainGetState(j->dom, &state, &reason, 0) == 0 &&
		     state == VIR_DOMAIN_PAUSED;
	st->postcopy = st->paused && (reason == VIR_DOMAIN_PAUSED_POSTCOPY ||
				      reason == VIR_DOMAIN_PAUSED_POSTCOPY_FAILED);
	return 0;
}

int mig_lv_job_postcopy(struct mig_lv_job *j, struct mig_error *err)
{
	if (lv_api.virDomainMigrateStartPostCopy(j->dom, 0) < 0)
		return mig_error_set(err, -EIO, "libvirt: switching the migration of %s to "
				     "post-copy: %s", j->name, lv_last_error());
	return 0;
}

int mig_lv_job_abort(struct mig_lv_job *j, struct mig_error *err)
{
	if (lv_api.virDomainAbortJob(j->dom) < 0)
		return mig_error_set(err, -EIO, "libvirt: aborting the migration of %s: %s",
				     j->name, lv_last_error());
	return 0;
}

int mig_lv_job_suspend(struct mig_lv_job *j, struct mig_error *err)
{
	if (lv_api.virDomainSuspend(j->dom) < 0)
		return mig_error_set(err, -EIO, "libvirt: pausing %s: %s", j->name,
				     lv_last_error());
	return 0;
}

int mig_lv_job_finish(struct mig_lv_job *j, struct mig_lv_stats *final, struct mig_error *err)
{
	struct timespec until;
	int r;

	if (!j->joined)
		pthread_join(j->thread, NULL);
	/* After a success the JOB_COMPLETED event may trail the call's return
	 * by a moment (it comes through the event thread): wait a little. */
	until = mig_timespec_after(CLOCK_MONOTONIC, 3000ULL * 1000000);
	pthread_mutex_lock(&j->lv->lock);
	while (j->result == 0 && !j->have_final &&
	       pthread_cond_timedwait(&j->cond, &j->lv->lock, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&j->lv->lock);
	job_unlink(j);

	if (final) {
		if (j->have_final)
			*final = j->final;
		else
			stats_unknown(final);
	}
	r = j->result;
	if (r < 0)
		mig_error_set(err, r, "libvirt: migrating %s to %s: %s", j->name, j->dconnuri,
			      j->msg);
	job_free(j);
	return r;
}
