// SPDX-License-Identifier: MIT
/*
 * Hostile clients against real agents, and the process accounting the chaos
 * runner checks them with.  For each kind of hostile client, a tcp agent
 * (with a key) and a unix agent each take a campaign while a legitimate
 * client keeps listing their VMs: its requests must keep being answered,
 * the agent must drop the hostile connections within its handshake
 * deadline (plus the watchdog's grace), refuse those over its per-peer
 * bound, and give back every descriptor and thread afterwards.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <migrate/agent.h>
#include <migrate/hostile.h>
#include <migrate/procstat.h>

#include "util.h"
#include "proc-fixture.h"

const int test_requires_kvm = 1;

/* What the agent adds to its deadline before its watchdog shuts a
 * handshake down (agent/agent.c), and our poll's granularity besides. */
#define GRACE_MS 1000
#define SLACK_MS 700
/* A legitimate request is answered within this, whatever the campaign. */
#define LEGIT_MAX_MS 2000
/* Campaigns that wait for the deadline hold this long: they end as soon as
 * the agent has dropped them all. */
#define DEADLINE_HOLD_MS (AGENT_HANDSHAKE_MS + 30000)
/*
 * This machine's cores are shared with other work, and a test process was
 * seen to stall for seconds.  A thread of ours that sleeps 10 ms at a time
 * measures how late it wakes during a campaign: we may see a close, and a
 * legitimate reply, that much late (twice, for two stalls in a row), so
 * the time bounds grow by it.  An agent that does not drop at its
 * deadline, or starves a legitimate client, still fails: the stall would
 * have to be as long as the deadline.
 */
static atomic_bool meter_stop;
static _Atomic uint64_t meter_late_ms;

static void *meter(void *arg)
{
	(void)arg;
	while (!atomic_load(&meter_stop)) {
		uint64_t t0 = mig_now_ms(), late;

		usleep(10000);
		late = mig_now_ms() - t0;
		late = late > 10 ? late - 10 : 0;
		if (late > atomic_load(&meter_late_ms))
			atomic_store(&meter_late_ms, late);
	}
	return NULL;
}

static uint64_t stall_ms(void)
{
	return 2 * atomic_load(&meter_late_ms);
}

/* RSS may grow by glibc's arenas and thread stacks reused later. */
#define RSS_TOL_KB (64 * 1024)

/* An agent, and a client of it that stays connected.  No VM: a lab guest
 * keeps a core busy, and the campaign measures the agent's own timing. */
struct box {
	bool tcp;
	char dir[64], url[160], key[128], kopt[160];
	pid_t pid;
	struct mig_client c;
	struct chaos_proc_stat base;
	/* the legitimate client's loop */
	pthread_t t;
	atomic_bool stop;
	_Atomic unsigned ok, failed;
	uint64_t max_ms;
	char first_err[512];
};

static void box_up(struct box *b, bool tcp)
{
	struct mig_error err = { 0 };

	memset(b, 0, sizeof(*b));
	b->tcp = tcp;
	snprintf(b->dir, sizeof(b->dir), "/tmp/migratectl-test-XXXXXX");
	cr_assert_not_null(mkdtemp(b->dir));
	if (tcp) {
		snprintf(b->key, sizeof(b->key), "%s/key", b->dir);
		make_key_file(b->key, 'h');
		snprintf(b->kopt, sizeof(b->kopt), "--key-file %s", b->key);
		snprintf(b->url, sizeof(b->url), "tcp://127.0.0.1:%d", proc_free_port());
	} else {
		snprintf(b->url, sizeof(b->url), "unix://%s/agent.sock", b->dir);
	}
	b->pid = proc_agent(b->url, tcp ? b->key : NULL);
	proc_wait_agent(b->url, b->kopt);
	cr_assert_eq(mig_client_open(b->url, tcp ? b->key : NULL, &b->c, &err), 0, "%s", err.msg);
}

static void box_down(struct box *b)
{
	char p[200];

	mig_client_close(&b->c);
	proc_stop(b->pid);
	snprintf(p, sizeof(p), "%s/agent.sock", b->dir);
	unlink(p);
	if (b->tcp)
		unlink(b->key);
	rmdir(b->dir);
}

/* The agent's counts once they hold still: the sessions of the CLI runs
 * before may still be ending. */
static void box_baseline(struct box *b)
{
	struct mig_error err = { 0 };
	struct chaos_proc_stat prev;

	cr_assert_eq(chaos_proc_stat(b->pid, &prev, &err), 0, "%s", err.msg);
	for (int i = 0; i < 50; i++) {
		usleep(100000);
		cr_assert_eq(chaos_proc_stat(b->pid, &b->base, &err), 0, "%s", err.msg);
		if (b->base.fds == prev.fds && b->base.threads == prev.threads)
			return;
		prev = b->base;
	}
	cr_assert_fail("agent %d's fds and threads never held still", (int)b->pid);
}

static void *legit_loop(void *arg)
{
	struct box *b = arg;

	while (!atomic_load(&b->stop)) {
		struct mig_error err = { 0 };
		struct mig_buf extra = { 0 };
		uint64_t t0 = mig_now_ms(), dt;
		int r = mig_client_call(&b->c, MIG_OP_VM_LIST, NULL, 0, &extra, &err);

		dt = mig_now_ms() - t0;
		if (dt > b->max_ms)
			b->max_ms = dt;
		if (r >= 0 && extra.len != 0) {
			r = -EPROTO;
			snprintf(err.msg, sizeof(err.msg), "VM_LIST of no VM gave %zu bytes", extra.len);
		}
		if (r < 0 && !b->failed++)
			str_copy(b->first_err, sizeof(b->first_err), err.msg);
		if (r >= 0)
			b->ok++;
		mig_buf_free(&extra);
		usleep(20000);
	}
	return NULL;
}

static void legit_start(struct box *b)
{
	atomic_init(&b->stop, false);
	cr_assert_eq(pthread_create(&b->t, NULL, legit_loop, b), 0);
}

/* The legitimate client was served throughout: every request answered
 * within LEGIT_MAX_MS. */
static void legit_check(struct box *b, const char *kind)
{
	/* a campaign the agent ends at once may be over before the client's
	 * second request: a few more then */
	for (int i = 0; i < 100 && b->ok + b->failed < 5; i++)
		usleep(50000);
	atomic_store(&b->stop, true);
	pthread_join(b->t, NULL);
	cr_assert_eq(b->failed, 0, "%s on %s: %u legitimate requests failed, first: %s", kind,
		     b->url, b->failed, b->first_err);
	cr_assert_geq(b->ok, 5, "%s on %s: only %u legitimate requests", kind, b->url, b->ok);
	cr_assert_leq(b->max_ms, LEGIT_MAX_MS + stall_ms(), "%s on %s: a legitimate request took "
		      "%llu ms (this process stalled up to %llu ms)", kind, b->url,
		      (unsigned long long)b->max_ms, (unsigned long long)stall_ms() / 2);
}

/* Back to the baseline: every descriptor and thread of the campaign gone
 * (polled: a session thread ends after its peer), and a new client
 * admitted. */
static void box_recovered(struct box *b, const char *kind)
{
	struct mig_error err = { 0 };
	struct chaos_proc_stat now;
	struct mig_client c2;
	char why[512] = "";
	bool ok = false;
	int r = -1;

	for (int i = 0; i < 150 && !ok; i++) {
		cr_assert_eq(chaos_proc_stat(b->pid, &now, &err), 0, "%s", err.msg);
		ok = chaos_proc_within(&b->base, &now, 0, 0, RSS_TOL_KB, why, sizeof(why));
		if (!ok)
			usleep(100000);
	}
	cr_assert(ok, "%s on %s: the agent kept resources after the campaign: %s", kind, b->url,
		  why);
	for (int i = 0; i < 50 && r < 0; i++) {
		mig_error_clear(&err);
		r = mig_client_open(b->url, b->tcp ? b->key : NULL, &c2, &err);
		if (r < 0)
			usleep(100000);
	}
	cr_assert_geq(r, 0, "%s on %s: no new client admitted after: %s", kind, b->url, err.msg);
	mig_client_close(&c2);
}

static void report_log(const char *kind, const struct box *b, const struct chaos_hostile_report *p)
{
	cr_log_info("%s on %s: attempted %u connected %u refused %u closed %u reset %u held %u "
		    "first_close %llu max_close %llu max_connect %llu elapsed %llu ms; legit %u "
		    "ok, max %llu ms; stalled up to %llu ms", kind, b->tcp ? "tcp" : "unix",
		    p->attempted, p->connected, p->refused, p->closed_by_peer, p->reset_by_peer, p->held_to_end,
		    (unsigned long long)p->first_close_ms, (unsigned long long)p->max_close_ms,
		    (unsigned long long)p->max_connect_ms, (unsigned long long)p->elapsed_ms, b->ok,
		    (unsigned long long)b->max_ms, (unsigned long long)stall_ms() / 2);
}

/*
 * A campaign of kind k on both agents, with a legitimate client on each;
 * rep[0] is tcp's, rep[1] unix's.  At once (tcp in the background, unix in
 * the foreground), or with one_by_one tcp's first: a flood takes all the
 * CPU there is, and on two cores one flood starves the other agent's
 * accept loop (docs/chaos-hostile.md).  Checks what holds for every kind.
 */
static void campaign_how(enum chaos_hostile_kind k, unsigned count, unsigned hold_ms,
			 bool one_by_one, struct chaos_hostile_report rep[2])
{
	const char *kind = chaos_hostile_name(k);
	struct mig_error err = { 0 };
	struct chaos_hostile *h = NULL;
	struct box b[2];
	pthread_t mt;

	box_up(&b[0], true);
	box_up(&b[1], false);
	atomic_store(&meter_stop, false);
	atomic_store(&meter_late_ms, 0);
	cr_assert_eq(pthread_create(&mt, NULL, meter, NULL), 0);
	for (int i = 0; i < 2; i++) {
		box_baseline(&b[i]);
		legit_start(&b[i]);
	}
	cr_assert_eq(chaos_hostile_start(k, b[0].url, count, hold_ms, 17, &h, &err), 0, "%s",
		     err.msg);
	if (!one_by_one)
		cr_assert_eq(chaos_hostile_run(k, b[1].url, count, hold_ms, 42, &rep[1], &err), 0,
			     "%s", err.msg);
	/* it ends by itself within its hold and a connect time */
	for (int i = 0; i < 100 && !chaos_hostile_done(h); i++)
		usleep(100000);
	cr_assert(chaos_hostile_done(h), "%s on tcp did not end within its hold", kind);
	chaos_hostile_stop(h, &rep[0]);
	if (one_by_one)
		cr_assert_eq(chaos_hostile_run(k, b[1].url, count, hold_ms, 42, &rep[1], &err), 0,
			     "%s", err.msg);
	atomic_store(&meter_stop, true);
	pthread_join(mt, NULL);
	for (int i = 0; i < 2; i++) {
		report_log(kind, &b[i], &rep[i]);
		legit_check(&b[i], kind);
		cr_assert_eq(rep[i].error, 0);
		cr_assert_leq(rep[i].connected, rep[i].attempted);
		cr_assert_leq(rep[i].elapsed_ms, hold_ms + CHAOS_HOSTILE_CONNECT_MS + 500 + stall_ms(),
			      "%s on %s: the campaign took %llu ms", kind, b[i].url,
			      (unsigned long long)rep[i].elapsed_ms);
	}
	for (int i = 0; i < 2; i++) {
		box_recovered(&b[i], kind);
		box_down(&b[i]);
	}
}

static void campaign(enum chaos_hostile_kind k, unsigned count, unsigned hold_ms,
		     struct chaos_hostile_report rep[2])
{
	campaign_how(k, count, hold_ms, false, rep);
}

/* Every connection the agent admitted was dropped at its handshake deadline,
 * not before and not after the watchdog's grace. */
static void dropped_at_deadline(const char *kind, const struct chaos_hostile_report *p)
{
	cr_assert_geq(p->first_close_ms, AGENT_HANDSHAKE_MS - 200, "%s: dropped after %llu ms",
		      kind, (unsigned long long)p->first_close_ms);
	cr_assert_leq(p->max_close_ms, AGENT_HANDSHAKE_MS + GRACE_MS + SLACK_MS + stall_ms(),
		      "%s: a connection held %llu ms (this process stalled up to %llu ms)", kind,
		      (unsigned long long)p->max_close_ms, (unsigned long long)stall_ms() / 2);
}

/* Ten at once from one peer: eight in their handshake (the per-peer bound),
 * two refused on accept; the eight dropped at the deadline. */
Test(hostile, silent_clients_are_dropped_at_the_deadline, .timeout = 240)
{
	struct chaos_hostile_report rep[2];

	campaign(CHAOS_HOSTILE_SILENT, AGENT_MAX_UNAUTH_PER_PEER + 2, DEADLINE_HOLD_MS, rep);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(rep[i].connected, AGENT_MAX_UNAUTH_PER_PEER + 2);
		cr_assert_eq(rep[i].refused, 2, "refused %u", rep[i].refused);
		cr_assert_eq(rep[i].closed_by_peer + rep[i].reset_by_peer, AGENT_MAX_UNAUTH_PER_PEER);
		cr_assert_eq(rep[i].held_to_end, 0);
		dropped_at_deadline("silent", &rep[i]);
	}
}

/* A frame begun and never finished gets no more time than no frame. */
Test(hostile, half_frames_are_dropped_at_the_deadline, .timeout = 240)
{
	struct chaos_hostile_report rep[2];

	campaign(CHAOS_HOSTILE_HALF_FRAME, AGENT_MAX_UNAUTH_PER_PEER, DEADLINE_HOLD_MS, rep);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(rep[i].connected, AGENT_MAX_UNAUTH_PER_PEER);
		cr_assert_eq(rep[i].refused, 0);
		cr_assert_eq(rep[i].closed_by_peer + rep[i].reset_by_peer, AGENT_MAX_UNAUTH_PER_PEER);
		cr_assert_eq(rep[i].held_to_end, 0);
		dropped_at_deadline("half-frame", &rep[i]);
	}
}

/* Idle connections opened again as the agent drops them: each dropped at
 * its deadline, and the agent admits the next one at once (whose own
 * deadline comes after the hold). */
Test(hostile, idle_clients_are_dropped_and_replaced, .timeout = 240)
{
	struct chaos_hostile_report rep[2];

	campaign(CHAOS_HOSTILE_IDLE, AGENT_MAX_UNAUTH_PER_PEER, AGENT_HANDSHAKE_MS + 6000, rep);
	for (int i = 0; i < 2; i++) {
		unsigned ended = rep[i].closed_by_peer + rep[i].reset_by_peer;

		cr_assert_eq(rep[i].refused, 0);
		cr_assert_geq(ended, AGENT_MAX_UNAUTH_PER_PEER);
		cr_assert_gt(rep[i].connected, AGENT_MAX_UNAUTH_PER_PEER, "none replaced");
		cr_assert_eq(rep[i].held_to_end, rep[i].connected - ended);
		cr_assert_eq(rep[i].held_to_end, AGENT_MAX_UNAUTH_PER_PEER);
		dropped_at_deadline("idle", &rep[i]);
	}
}

/* Idle connections over the per-peer bound are refused on accept, and
 * tried again at a pace (a few a second each), not as a flood. */
Test(hostile, idle_over_the_bound_is_paced, .timeout = 240)
{
	struct chaos_hostile_report rep;
	struct mig_error err = { 0 };
	struct box b;

	box_up(&b, false);
	cr_assert_eq(chaos_hostile_run(CHAOS_HOSTILE_IDLE, b.url, AGENT_MAX_UNAUTH_PER_PEER + 4,
				       3000, 1, &rep, &err), 0, "%s", err.msg);
	report_log("idle over the bound", &b, &rep);
	cr_assert_geq(rep.refused, 4);
	cr_assert_leq(rep.refused, 4 * 50, "refused %u times in 3 s", rep.refused);
	cr_assert_eq(rep.held_to_end, AGENT_MAX_UNAUTH_PER_PEER);
	box_down(&b);
}

/* Garbage fails the agent's first frame check: dropped at once, long before
 * the deadline. */
Test(hostile, garbage_is_dropped_at_once, .timeout = 240)
{
	struct chaos_hostile_report rep[2];

	campaign(CHAOS_HOSTILE_GARBAGE, AGENT_MAX_UNAUTH_PER_PEER, 5000, rep);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(rep[i].connected, AGENT_MAX_UNAUTH_PER_PEER);
		cr_assert_eq(rep[i].refused, 0);
		cr_assert_eq(rep[i].closed_by_peer + rep[i].reset_by_peer, AGENT_MAX_UNAUTH_PER_PEER);
		cr_assert_eq(rep[i].held_to_end, 0);
		cr_assert_gt(rep[i].first_close_ms, 0);
		cr_assert_lt(rep[i].max_close_ms, 2000 + stall_ms(), "garbage held %llu ms",
			     (unsigned long long)rep[i].max_close_ms);
	}
}

/*
 * Up to two thousand connections as fast as they go for 3 s, every eighth
 * held: those beyond the per-peer bound are refused on accept, and once the
 * flood stops, no more than the bound are left in their handshake.  How
 * many get through depends on the load: a full accept queue drops a tcp
 * SYN, and the connect waits a second for the retry.  Over 72 connections,
 * nine are held and one must be refused.
 */
Test(hostile, a_flood_is_turned_away, .timeout = 240)
{
	struct chaos_hostile_report rep[2];

	campaign_how(CHAOS_HOSTILE_FLOOD, 2000, 6000, true, rep);
	for (int i = 0; i < 2; i++) {
		cr_assert_gt(rep[i].attempted, CHAOS_FLOOD_HOLD_EVERY * AGENT_MAX_UNAUTH_PER_PEER,
			     "only %u connections in 3 s", rep[i].attempted);
		cr_assert_gt(rep[i].connected, 0);
		cr_assert_gt(rep[i].refused, 0);
		cr_assert_leq(rep[i].held_to_end, AGENT_MAX_UNAUTH_PER_PEER);
	}
}

Test(hostile, names_parse_back)
{
	for (int k = 1; k <= CHAOS_HOSTILE_KINDS; k++)
		cr_assert_eq(chaos_hostile_parse(chaos_hostile_name(k)), k);
	cr_assert_eq(chaos_hostile_parse("loud"), -EINVAL);
	cr_assert_null(chaos_hostile_name(0));
	cr_assert_null(chaos_hostile_name(CHAOS_HOSTILE_KINDS + 1));
}

Test(hostile, bad_arguments_are_refused)
{
	struct chaos_hostile_report rep;
	struct mig_error err = { 0 };

	cr_assert_eq(chaos_hostile_run(CHAOS_HOSTILE_SILENT, "ssh://h", 1, 10, 0, &rep, &err),
		     -EINVAL);
	mig_error_clear(&err);
	cr_assert_eq(chaos_hostile_run(CHAOS_HOSTILE_SILENT, "unix:///x", 0, 10, 0, &rep, &err),
		     -EINVAL);
	mig_error_clear(&err);
	cr_assert_eq(chaos_hostile_run(9, "unix:///x", 1, 10, 0, &rep, &err), -EINVAL);
}

/* Nobody listening: every connect counts as refused, nothing else. */
Test(hostile, nobody_listening_is_refused)
{
	struct chaos_hostile_report rep;
	struct mig_error err = { 0 };
	char url[96];

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", proc_free_port());
	cr_assert_eq(chaos_hostile_run(CHAOS_HOSTILE_FLOOD, url, 50, 3000, 1, &rep, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(rep.attempted, 50);
	cr_assert_eq(rep.connected, 0);
	cr_assert_eq(rep.refused, 50);
}

/* ---- procstat ---- */

static void *parked(void *arg)
{
	char c;

	(void)!read(*(int *)arg, &c, 1);
	return NULL;
}

Test(procstat, counts_fds_threads_and_children)
{
	struct chaos_proc_stat base, now;
	struct mig_error err = { 0 };
	int fds[5], sp[2], p[2];
	char why[512];
	pthread_t t;
	pid_t child;

	cr_assert_eq(chaos_proc_stat(getpid(), &base, &err), 0, "%s", err.msg);
	cr_assert_gt(base.threads, 0);
	cr_assert_gt(base.rss_kb, 0);
	for (int i = 0; i < 5; i++)
		cr_assert_geq(fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
	cr_assert_eq(chaos_proc_stat(getpid(), &now, &err), 0);
	cr_assert_eq(now.fds, base.fds + 5, "%u -> %u", base.fds, now.fds);
	cr_assert_not(chaos_proc_within(&base, &now, 4, 0, RSS_TOL_KB, why, sizeof(why)));
	cr_assert_not_null(strstr(why, "fds +5"), "%s", why);
	cr_assert(chaos_proc_within(&base, &now, 5, 0, RSS_TOL_KB, why, sizeof(why)), "%s", why);
	for (int i = 0; i < 5; i++)
		close(fds[i]);

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	cr_assert_eq(chaos_proc_stat(getpid(), &now, &err), 0);
	cr_assert_eq(now.fd_sockets, base.fd_sockets + 2);
	close(sp[0]);
	close(sp[1]);

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(chaos_proc_stat(getpid(), &base, &err), 0);
	cr_assert_eq(pthread_create(&t, NULL, parked, &p[0]), 0);
	cr_assert_eq(chaos_proc_stat(getpid(), &now, &err), 0);
	cr_assert_eq(now.threads, base.threads + 1);
	cr_assert_not(chaos_proc_within(&base, &now, 0, 0, RSS_TOL_KB, why, sizeof(why)));
	cr_assert_not_null(strstr(why, "threads +1"), "%s", why);
	cr_assert(chaos_proc_within(&base, &now, 0, 1, RSS_TOL_KB, why, sizeof(why)), "%s", why);
	cr_assert_eq(write(p[1], "x", 1), 1);
	pthread_join(t, NULL);

	cr_assert_eq(chaos_proc_stat(getpid(), &base, &err), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		pause();
		_exit(0);
	}
	cr_assert_eq(chaos_proc_stat(getpid(), &now, &err), 0);
	cr_assert_eq(now.children, base.children + 1);
	/* children have no tolerance */
	cr_assert_not(chaos_proc_within(&base, &now, 100, 100, RSS_TOL_KB, why, sizeof(why)));
	cr_assert_not_null(strstr(why, "children +1"), "%s", why);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	cr_assert_eq(chaos_proc_stat(getpid(), &now, &err), 0);
	cr_assert_eq(now.children, base.children);
	cr_assert_eq(chaos_proc_state(child), 0, "a reaped child is gone");
	mig_error_clear(&err);
	cr_assert_eq(chaos_proc_stat(child, &now, &err), -ESRCH);
	close(p[0]);
	close(p[1]);
}

/* A child stopped by SIGSTOP while it sleeps in pause(), as a hung agent
 * would be found. */
static pid_t stopped_child(void)
{
	int p[2];
	pid_t child;
	char c;

	cr_assert_eq(pipe(p), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		/* a failed assertion must not leave it stopped behind us */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		(void)!write(p[1], "r", 1);
		for (;;)
			pause();
	}
	close(p[1]);
	cr_assert_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	for (int i = 0; i < 250 && chaos_proc_state(child) != 'S'; i++)
		usleep(20000);
	cr_assert_eq(chaos_proc_state(child), 'S', "the child never slept");
	kill(child, SIGSTOP);
	for (int i = 0; i < 250 && chaos_proc_state(child) != 'T'; i++)
		usleep(20000);
	cr_assert_eq(chaos_proc_state(child), 'T');
	return child;
}

static void stacks_expect(pid_t child, enum chaos_stacks_method how, const char *method,
			  const char *also)
{
	struct mig_error err = { 0 };
	char path[] = "/tmp/migratectl-test-XXXXXX", text[16384];
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(chaos_proc_stacks_by(child, path, how, &err), 0, "%s", err.msg);
	proc_slurp(path, text, sizeof(text));
	unlink(path);
	cr_assert_not_null(strstr(text, method), "no '%s' in: %s", method, text);
	cr_assert_not_null(strstr(text, also), "no '%s' in: %s", also, text);
}

Test(procstat, stacks_of_a_stopped_process, .timeout = 240)
{
	pid_t child = stopped_child();
	char tid[32];

	snprintf(tid, sizeof(tid), "thread %d\n", (int)child);
	stacks_expect(child, CHAOS_STACKS_PROC, "method: /proc", tid);
	stacks_expect(child, CHAOS_STACKS_PROC, "method: /proc", "wchan:");
	if (access("/usr/bin/gdb", X_OK) == 0)
		stacks_expect(child, CHAOS_STACKS_AUTO, "method: gdb", "pause");
	else
		stacks_expect(child, CHAOS_STACKS_AUTO, "method: /proc", tid);
	cr_assert_eq(chaos_proc_state(child), 'T', "still stopped after the stacks");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
}
