// SPDX-License-Identifier: MIT
/*
 * The libvirt driver (libvirt/driver.c) against two real libvirtd "hosts",
 * A and B (tests/libvirt/hosts.sh), which tests/libvirt/test-lvdriver.sh
 * starts and describes in the environment:
 *   LVD_HOSTS, LVD_DIR    hosts.sh and its directory: the guests
 *   LVD_URI_A, LVD_URI_B  the two libvirtds
 *   LVD_RUN               the migration sockets' directory, the same path
 *                         on both hosts; on A a relay listens at
 *                         libvirt.sock and qemu.sock there and carries
 *                         each connection to B (what the agents' tunnel
 *                         does between real hosts)
 * Without them (run by hand) every case skips.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>

#include <migrate/control.h>
#include <migrate/libvirt.h>
#include "util.h"

static const char *env(const char *name)
{
	const char *v = getenv(name);

	if (!v || !v[0])
		cr_skip_test("%s is not set: run through tests/libvirt/test-lvdriver.sh", name);
	return v;
}

/* hosts.sh's small guest (its disk read-only, so shared storage is not
 * needed), started transiently. */
static void guest_start(const char *host, const char *name)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "'%s' guest '%s' %s %s >&2", env("LVD_HOSTS"), env("LVD_DIR"),
		 host, name);
	cr_assert_eq(system(cmd), 0, "starting guest %s on %s", name, host);
}

/* Waits (up to 180 s: SeaBIOS is slow here) until the guest wrote its
 * ballast and says so on its console ("pass N"): from then on a migration
 * has megabytes to carry, long enough to watch and to abort. */
static void guest_wait_booted(const char *host, const char *name)
{
	uint64_t until = mig_now_ms() + 180000;
	char path[1024], line[256];
	bool seen = false;

	snprintf(path, sizeof(path), "%s/%s/%s.console", env("LVD_DIR"), host, name);
	while (!seen && mig_now_ms() < until) {
		FILE *f = fopen(path, "r");

		while (f && !seen && fgets(line, sizeof(line), f))
			seen = strstr(line, "pass ") != NULL;
		if (f)
			fclose(f);
		if (!seen)
			usleep(200000);
	}
	cr_assert(seen, "guest %s did not boot (console %s)", name, path);
}

/* The guest's disk on the destination, at the same path. */
static void guest_disk(const char *host, const char *name)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "'%s' disk '%s' %s %s >&2", env("LVD_HOSTS"), env("LVD_DIR"),
		 host, name);
	cr_assert_eq(system(cmd), 0, "disk of %s on %s", name, host);
}

/* The test's own plain connection, to act on domains as a user would. */
static virDomainPtr domain(const char *host, const char *name, virConnectPtr *ret_conn)
{
	const char *uri = env(host[0] == 'A' ? "LVD_URI_A" : "LVD_URI_B");
	virConnectPtr c = virConnectOpen(uri);
	virDomainPtr d;

	cr_assert_not_null(c, "connecting to %s", uri);
	d = virDomainLookupByName(c, name);
	cr_assert_not_null(d, "domain %s on %s", name, host);
	*ret_conn = c;
	return d;
}

static void guest_destroy(const char *host, const char *name)
{
	virConnectPtr c = virConnectOpen(env(host[0] == 'A' ? "LVD_URI_A" : "LVD_URI_B"));
	virDomainPtr d = c ? virDomainLookupByName(c, name) : NULL;

	if (d) {
		virDomainDestroy(d);
		virDomainFree(d);
	}
	if (c)
		virConnectClose(c);
}

/* After every case, passed or not: no guest of ours stays behind to hold
 * a disk the next case needs. */
static void guests_clean(void)
{
	static const char *const names[] = { "lvd-state", "lvd-events", "lvd-mig", "lvd-abort",
					     "lvd-pc" };

	if (!getenv("LVD_URI_A") || !getenv("LVD_URI_B"))
		return;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		guest_destroy("A", names[i]);
		guest_destroy("B", names[i]);
	}
}

static struct mig_lv *open_host(const char *host, void (*cb)(void *, const struct mig_lv_lifecycle *),
				void *arg)
{
	struct mig_error err = {0};
	struct mig_lv *lv = NULL;
	int r = mig_lv_open(env(host[0] == 'A' ? "LVD_URI_A" : "LVD_URI_B"), cb, arg, &lv, &err);

	cr_assert_eq(r, 0, "open %s: %s", host, err.msg);
	return lv;
}

static uint32_t state_of(struct mig_lv *lv, const char *name, char uuid[37], bool *persistent)
{
	struct mig_error err = {0};
	uint32_t state = 0;
	int r = mig_lv_domain_state(lv, name, &state, uuid, persistent, &err);

	cr_assert_eq(r, 0, "state of %s: %s", name, err.msg);
	return state;
}

static unsigned thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	unsigned n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

Test(lvdriver, bad_uri_is_a_clear_error)
{
	struct mig_error err = {0};
	struct mig_lv *lv = NULL;
	const char *uri = "qemu+unix:///system?socket=/nonexistent/lvdriver/sock";
	int r = mig_lv_open(uri, NULL, NULL, &lv, &err);

	cr_assert_lt(r, 0);
	cr_assert_null(lv);
	cr_assert_not_null(strstr(err.msg, "cannot reach libvirtd at qemu+unix"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "/nonexistent/lvdriver/sock"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "is libvirtd running?"), "%s", err.msg);
}

Test(lvdriver, close_ends_the_event_thread)
{
	unsigned before = thread_count();
	struct mig_lv *a = open_host("A", NULL, NULL);
	struct mig_lv *b = open_host("B", NULL, NULL);

	cr_assert_gt(thread_count(), before, "an event thread runs while open");
	mig_lv_close(a);
	mig_lv_close(b);
	/* The loop thread is joined by close, and libvirt's own client keeps
	 * no thread: the count is back where it was. */
	cr_assert_eq(thread_count(), before);
	/* and it starts again for the next connection */
	a = open_host("A", NULL, NULL);
	cr_assert_gt(thread_count(), before);
	mig_lv_close(a);
	cr_assert_eq(thread_count(), before);
}

Test(lvdriver, domain_states, .timeout = 300, .fini = guests_clean)
{
	struct mig_lv *lv = open_host("A", NULL, NULL);
	char uuid[37] = "x";
	bool persistent = true;
	virConnectPtr c;
	virDomainPtr d;

	cr_assert_eq(state_of(lv, "lvd-none", uuid, &persistent), MIG_LV_STATE_ABSENT);
	cr_assert_str_empty(uuid);
	cr_assert(!persistent);

	guest_start("A", "lvd-state");
	cr_assert_eq(state_of(lv, "lvd-state", uuid, &persistent), MIG_LV_STATE_RUNNING);
	cr_assert_eq(strlen(uuid), 36, "uuid %s", uuid);
	cr_assert(!persistent, "a transient guest");

	d = domain("A", "lvd-state", &c);
	cr_assert_eq(virDomainSuspend(d), 0);
	cr_assert_eq(state_of(lv, "lvd-state", uuid, &persistent), MIG_LV_STATE_PAUSED);
	cr_assert_eq(virDomainDestroy(d), 0);
	virDomainFree(d);
	virConnectClose(c);
	/* a transient domain is gone once destroyed */
	cr_assert_eq(state_of(lv, "lvd-state", uuid, &persistent), MIG_LV_STATE_ABSENT);
	mig_lv_close(lv);
}

/* What the lifecycle callback saw, filled from the event thread. */
struct seen {
	pthread_mutex_t lock;
	unsigned n;
	struct mig_lv_lifecycle e[32];
};

static void record(void *arg, const struct mig_lv_lifecycle *e)
{
	struct seen *s = arg;

	pthread_mutex_lock(&s->lock);
	if (s->n < ARRAY_SIZE(s->e))
		s->e[s->n++] = *e;
	pthread_mutex_unlock(&s->lock);
}

/* Polls (up to 60 s) for an event of type `event` on `name`; returns it. */
static struct mig_lv_lifecycle wait_event(struct seen *s, const char *name, int event)
{
	struct mig_lv_lifecycle found = {0};
	uint64_t until = mig_now_ms() + 60000;
	bool ok = false;

	while (!ok && mig_now_ms() < until) {
		pthread_mutex_lock(&s->lock);
		for (unsigned i = 0; i < s->n && !ok; i++)
			if (s->e[i].event == event && !strcmp(s->e[i].name, name)) {
				found = s->e[i];
				ok = true;
			}
		pthread_mutex_unlock(&s->lock);
		if (!ok)
			usleep(20000);
	}
	cr_assert(ok, "no lifecycle event %d for %s", event, name);
	return found;
}

Test(lvdriver, lifecycle_events, .timeout = 300, .fini = guests_clean)
{
	static struct seen s = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mig_lv *lv = open_host("A", record, &s);
	struct mig_lv_lifecycle e;
	uint64_t t0 = mig_clock_ns(CLOCK_MONOTONIC);
	virConnectPtr c;
	virDomainPtr d;

	guest_start("A", "lvd-events");
	e = wait_event(&s, "lvd-events", VIR_DOMAIN_EVENT_STARTED);
	cr_assert(e.running);
	cr_assert_eq(strlen(e.uuid), 36);
	cr_assert_geq(e.monotonic_ns, t0);
	cr_assert_gt(e.realtime_ns, 1700000000ULL * 1000000000ULL);

	d = domain("A", "lvd-events", &c);
	cr_assert_eq(virDomainSuspend(d), 0);
	e = wait_event(&s, "lvd-events", VIR_DOMAIN_EVENT_SUSPENDED);
	cr_assert(!e.running);
	cr_assert_eq(e.detail, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED);
	cr_assert_eq(virDomainResume(d), 0);
	e = wait_event(&s, "lvd-events", VIR_DOMAIN_EVENT_RESUMED);
	cr_assert(e.running);
	cr_assert_eq(virDomainDestroy(d), 0);
	e = wait_event(&s, "lvd-events", VIR_DOMAIN_EVENT_STOPPED);
	cr_assert(!e.running);
	cr_assert_eq(e.detail, VIR_DOMAIN_EVENT_STOPPED_DESTROYED);
	virDomainFree(d);
	virConnectClose(c);
	mig_lv_close(lv);
}

struct lv_uris {
	char dconn[512], mig[512];
};

static struct mig_lv_migrate migration(const char *name, struct lv_uris *u)
{
	const char *run = env("LVD_RUN");

	snprintf(u->dconn, sizeof(u->dconn), "qemu+unix:///system?socket=%s/libvirt.sock", run);
	snprintf(u->mig, sizeof(u->mig), "unix://%s/qemu.sock", run);
	return (struct mig_lv_migrate){
		.name = name, .dconnuri = u->dconn, .miguri = u->mig, .parallel = 1,
	};
}

Test(lvdriver, migrate_a_to_b, .timeout = 300, .fini = guests_clean)
{
	static struct seen sa = { .lock = PTHREAD_MUTEX_INITIALIZER },
			   sb = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mig_lv *a = open_host("A", record, &sa), *b = open_host("B", record, &sb);
	struct mig_lv_lifecycle e;
	struct mig_error err = {0};
	struct mig_lv_stats st, final;
	struct lv_uris u;
	struct mig_lv_migrate m = migration("lvd-mig", &u);
	uint64_t first = MIG_LV_UNKNOWN, last = 0;
	unsigned long long downtime = 0;
	struct mig_lv_job *j;
	char uuid[37];
	bool persistent;
	int r;

	guest_start("A", "lvd-mig");
	guest_disk("B", "lvd-mig");
	guest_wait_booted("A", "lvd-mig");
	/* Slow enough to be watched: its 24 MiB of ballast at 8 MiB/s. */
	m.bandwidth_bps = 8 * 1024 * 1024 - 1000;  /* rounds up to 8 MiB/s */
	m.downtime_ms = 250;
	r = mig_lv_migrate_start(a, &m, &j, &err);
	cr_assert_eq(r, 0, "%s", err.msg);
	while (!mig_lv_job_done(j, 20)) {
		struct mig_error e2 = {0};

		/* The memory copy's samples (a disk copy comes first) */
		if (mig_lv_job_stats(j, &st, &e2) < 0 || st.data_processed == MIG_LV_UNKNOWN ||
		    st.mem_total == MIG_LV_UNKNOWN || st.mem_total == 0)
			continue;
		if (first == MIG_LV_UNKNOWN)
			first = st.data_processed;
		last = st.data_processed;
		if (!downtime) {
			virConnectPtr c;
			virDomainPtr d = domain("A", "lvd-mig", &c);

			/* set before the start, kept by the migration */
			if (virDomainMigrateGetMaxDowntime(d, &downtime, 0) < 0)
				downtime = 1;
			virDomainFree(d);
			virConnectClose(c);
		}
	}
	/* The domain left A: no more statistics, the job's end instead */
	cr_assert_eq(mig_lv_job_stats(j, &st, &err), -ESRCH, "%s", err.msg);
	mig_error_clear(&err);
	r = mig_lv_job_finish(j, &final, &err);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert_neq(first, MIG_LV_UNKNOWN, "no statistics seen during the migration");
	cr_assert_gt(last, first, "data_processed grew (%" PRIu64 " -> %" PRIu64 ")", first, last);
	cr_assert_eq(downtime, 250, "downtime limit during the migration: %llu", downtime);
	cr_assert_neq(final.downtime_ms, MIG_LV_UNKNOWN, "the completed job's downtime");
	cr_assert_neq(final.elapsed_ms, MIG_LV_UNKNOWN);
	/* the bandwidth limit held: 24 MiB at 8 MiB/s take 3 s (unlimited,
	 * well under one here) */
	cr_assert_geq(final.elapsed_ms, 2000, "elapsed %" PRIu64 " ms", final.elapsed_ms);
	cr_assert_geq(final.data_processed, last);

	cr_assert_eq(state_of(a, "lvd-mig", uuid, &persistent), MIG_LV_STATE_ABSENT);
	cr_assert_eq(state_of(b, "lvd-mig", uuid, &persistent), MIG_LV_STATE_RUNNING);
	/* what the journals see: stopped on A, running on B, both "migrated" */
	e = wait_event(&sa, "lvd-mig", VIR_DOMAIN_EVENT_STOPPED);
	cr_assert(!e.running);
	cr_assert_eq(e.detail, VIR_DOMAIN_EVENT_STOPPED_MIGRATED);
	e = wait_event(&sb, "lvd-mig", VIR_DOMAIN_EVENT_RESUMED);
	cr_assert(e.running);
	cr_assert_eq(e.detail, VIR_DOMAIN_EVENT_RESUMED_MIGRATED);
	guest_destroy("B", "lvd-mig");
	mig_lv_close(a);
	mig_lv_close(b);
}

/* Post-copy allowed, and started while the bulk copy still runs: libvirt
 * pauses the source for it (the lifecycle event says post-copy), the rest
 * follows, and the domain runs on B only. */
Test(lvdriver, migrate_postcopy, .timeout = 300, .fini = guests_clean)
{
	static struct seen sa = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mig_lv *a = open_host("A", record, &sa), *b = open_host("B", NULL, NULL);
	struct mig_error err = {0};
	struct mig_lv_stats st, final;
	struct lv_uris u;
	struct mig_lv_migrate m = migration("lvd-pc", &u);
	struct mig_lv_job *j;
	bool asked = false, persistent;
	char uuid[37];
	int r;

	guest_start("A", "lvd-pc");
	guest_disk("B", "lvd-pc");
	guest_wait_booted("A", "lvd-pc");
	m.bandwidth_bps = 8 * 1024 * 1024;     /* its 24 MiB of ballast: some 3 s */
	m.postcopy = true;
	r = mig_lv_migrate_start(a, &m, &j, &err);
	cr_assert_eq(r, 0, "%s", err.msg);
	while (!mig_lv_job_done(j, 20)) {
		struct mig_error e2 = {0};

		if (asked || mig_lv_job_stats(j, &st, &e2) < 0 || st.mem_total == MIG_LV_UNKNOWN ||
		    st.mem_total == 0)
			continue;
		/* the memory copy runs: switch now */
		r = mig_lv_job_postcopy(j, &e2);
		cr_assert_eq(r, 0, "%s", e2.msg);
		asked = true;
	}
	r = mig_lv_job_finish(j, &final, &err);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert(asked, "the migration ended before its memory copy was seen");
	/* A's lifecycle, to its end: one of its suspends is post-copy's */
	wait_event(&sa, "lvd-pc", VIR_DOMAIN_EVENT_STOPPED);
	{
		char got[512] = "";
		bool pc = false;

		pthread_mutex_lock(&sa.lock);
		for (unsigned i = 0; i < sa.n; i++) {
			if (strcmp(sa.e[i].name, "lvd-pc"))
				continue;
			snprintf(got + strlen(got), sizeof(got) - strlen(got), " %d/%d%s",
				 sa.e[i].event, sa.e[i].detail, sa.e[i].postcopy ? "(postcopy)" : "");
			pc |= sa.e[i].postcopy;
			cr_assert_eq(sa.e[i].postcopy, sa.e[i].event == VIR_DOMAIN_EVENT_SUSPENDED &&
				     sa.e[i].detail == VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY);
		}
		pthread_mutex_unlock(&sa.lock);
		cr_assert(pc, "no post-copy suspend among A's events (event/detail):%s", got);
	}
	cr_assert_eq(state_of(a, "lvd-pc", uuid, &persistent), MIG_LV_STATE_ABSENT);
	cr_assert_eq(state_of(b, "lvd-pc", uuid, &persistent), MIG_LV_STATE_RUNNING);
	guest_destroy("B", "lvd-pc");
	mig_lv_close(a);
	mig_lv_close(b);
}

Test(lvdriver, migrate_aborted_stays_on_a, .timeout = 300, .fini = guests_clean)
{
	struct mig_lv *a = open_host("A", NULL, NULL), *b = open_host("B", NULL, NULL);
	struct mig_error err = {0};
	struct mig_lv_stats st, final;
	struct lv_uris u;
	struct mig_lv_migrate m = migration("lvd-abort", &u);
	struct mig_lv_job *j;
	char uuid[37];
	bool persistent, aborted = false;
	int r;

	guest_start("A", "lvd-abort");
	guest_disk("B", "lvd-abort");
	guest_wait_booted("A", "lvd-abort");
	m.bandwidth_bps = 1;        /* 1 MiB/s, libvirt's least */
	r = mig_lv_migrate_start(a, &m, &j, &err);
	cr_assert_eq(r, 0, "%s", err.msg);
	/* Abort once the memory copy is under way. */
	while (!aborted && !mig_lv_job_done(j, 10)) {
		struct mig_error e2 = {0};

		if (mig_lv_job_stats(j, &st, &e2) == 0 && st.mem_processed != MIG_LV_UNKNOWN &&
		    st.mem_processed > 0) {
			cr_assert_eq(mig_lv_job_abort(j, &e2), 0, "%s", e2.msg);
			aborted = true;
		}
	}
	cr_assert(aborted, "the migration ended before it could be aborted");
	cr_assert(mig_lv_job_done(j, 60000));
	r = mig_lv_job_finish(j, &final, &err);
	cr_assert_lt(r, 0);
	/* libvirt's own words: "operation aborted: migration out: canceled by client" */
	cr_assert_not_null(strstr(err.msg, "cancel"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "lvd-abort"), "%s", err.msg);

	cr_assert_eq(state_of(a, "lvd-abort", uuid, &persistent), MIG_LV_STATE_RUNNING);
	cr_assert_eq(state_of(b, "lvd-abort", uuid, &persistent), MIG_LV_STATE_ABSENT);
	guest_destroy("A", "lvd-abort");
	mig_lv_close(a);
	mig_lv_close(b);
}

Test(lvdriver, migrate_refused_at_start)
{
	struct mig_lv *a = open_host("A", NULL, NULL);
	struct mig_error err = {0};
	struct lv_uris u;
	struct mig_lv_migrate m = migration("lvd-none", &u);
	struct mig_lv_job *j = NULL;

	cr_assert_eq(mig_lv_migrate_start(a, &m, &j, &err), -ENOENT);
	cr_assert_not_null(strstr(err.msg, "no domain lvd-none"), "%s", err.msg);
	cr_assert_null(j);
	mig_lv_close(a);
}
