// SPDX-License-Identifier: MIT
/*
 * Chaos mode's agent side between real agents: MIG_OP_FAULT_ARM (refused
 * without --chaos), and each action of a fault plan carried out in a real
 * migration through the engines' fault hook.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <migrate/agent.h>
#include <migrate/fault.h>
#include <migrate/relay.h>
#include <migrate/wire-order.h>
#include <migrate/wire.h>

#include "proc-fixture.h"

/* An agent on listen, with --chaos if asked, a key and a journal file
 * where given (NULL: none). */
/* Where the next agents started write their log (NULL: --quiet). */
static const char *agent_log;

static pid_t agent_start(const char *listen, bool chaos, const char *key, const char *journal)
{
	const char *argv[12] = { "migratectl", "agent", "--listen", listen, "--quiet" };
	unsigned n = agent_log ? 4 : 5;
	pid_t pid;

	if (chaos)
		argv[n++] = "--chaos";
	if (key) {
		argv[n++] = "--key-file";
		argv[n++] = key;
	}
	if (journal) {
		argv[n++] = "--journal";
		argv[n++] = journal;
	}
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int fd = agent_log ? open(agent_log, O_WRONLY | O_CREAT | O_APPEND, 0600) : -1;

		if (fd >= 0)
			dup2(fd, 2);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(MIGRATECTL_PATH, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Two agents, with --chaos or without, and a VM cv on the source. */
static void pair_up(struct proc_pair *t, bool chaos)
{
	struct run_result r;
	char args[400];

	snprintf(t->dir, sizeof(t->dir), "/tmp/migratectl-test-XXXXXX");
	cr_assert_not_null(mkdtemp(t->dir));
	snprintf(t->src, sizeof(t->src), "unix://%s/src.sock", t->dir);
	snprintf(t->dst, sizeof(t->dst), "unix://%s/dst.sock", t->dir);
	t->src_journal[0] = t->dst_journal[0] = '\0';
	t->a = agent_start(t->src, chaos, NULL, NULL);
	t->b = agent_start(t->dst, chaos, NULL, NULL);
	proc_wait_agent(t->src, NULL);
	proc_wait_agent(t->dst, NULL);
	snprintf(args, sizeof(args), "vm create %s --name cv --lab mem=64M,vcpus=2,wss=4M", t->src);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
}

static struct mig_fault_plan plan(uint32_t action, enum mig_fault_kind point)
{
	struct mig_fault_plan p = { .action = action, .point = point + 1, .nth = 1,
				    .stage = -1, .dev_class = -1, .from = -1, .to = -1,
				    .frame_type = -1, .stream = -1 };

	strcpy(p.vm, "cv");
	return p;
}

/* Arms p; rep (if not NULL): what became of the VM's previous plan. */
static int arm_rep(const char *endpoint, const struct mig_fault_plan *p,
		   struct mig_fault_report *rep, struct mig_error *err)
{
	struct mig_fault_plan w = *p;
	struct mig_buf x = { 0 };
	struct mig_client c;
	int r;

	cr_assert_eq(mig_client_open(endpoint, NULL, &c, err), 0, "%s", err->msg);
	mig_wire_le(&mig_wl_fault_plan, &w, 1);
	r = mig_client_call(&c, MIG_OP_FAULT_ARM, &w, sizeof(w), &x, err);
	mig_client_close(&c);
	if (r == 0 && rep) {
		cr_assert_eq(x.len, sizeof(*rep));
		memcpy(rep, x.data, sizeof(*rep));
		mig_wire_le(&mig_wl_fault_report, rep, 1);
	}
	mig_buf_free(&x);
	return r;
}

static int arm(const char *endpoint, const struct mig_fault_plan *p, struct mig_error *err)
{
	return arm_rep(endpoint, p, NULL, err);
}

static void migrate(const struct proc_pair *t, struct run_result *r)
{
	char args[400];

	snprintf(args, sizeof(args), "start %s %s --vm cv --json", t->src, t->dst);
	proc_run(args, r);
}

/* The VM's state on an agent ("running", "held", ...; "" if it is not there). */
static void vm_state(const char *endpoint, char *state, size_t n)
{
	struct run_result r;
	char args[256];

	snprintf(args, sizeof(args), "vm list %s --json", endpoint);
	proc_run(args, &r);
	state[0] = '\0';
	if (r.status == 0 && strstr(r.out, "\"cv\""))
		json_field(strstr(r.out, "\"cv\""), "state", state, n);
}

Test(fault, an_agent_without_chaos_takes_no_fault)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_KILL, MIG_FAULT_PHASE);
	struct mig_error err = { 0 };

	pair_up(&t, false);
	cr_assert_eq(arm(t.src, &p, &err), -EPERM);
	cr_assert(strstr(err.msg, "--chaos"), "%s", err.msg);
	proc_pair_down(&t);
}

Test(fault, a_bad_plan_is_refused_with_why)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_ERROR, MIG_FAULT_DEVICE_STEP);
	struct mig_error err = { 0 };

	pair_up(&t, true);
	p.err = 0;
	cr_assert_eq(arm(t.src, &p, &err), -EINVAL);
	cr_assert(strstr(err.msg, "errno"), "%s", err.msg);
	proc_pair_down(&t);
}

/* A destination device step that fails: the source resumes, exit 1. */
Test(fault, an_error_at_the_destinations_load_rolls_back)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_ERROR, MIG_FAULT_DEVICE_STEP);
	struct mig_error err = { 0 };
	struct run_result r;
	char st[32];

	pair_up(&t, true);
	p.stage = MIG_STAGE_LOAD;
	p.err = EIO;
	cr_assert_eq(arm(t.dst, &p, &err), 0, "%s", err.msg);
	migrate(&t, &r);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	json_expect_str(r.out, "owner", "source");
	cr_assert(strstr(r.out, "chaos: Input/output error injected at device step"), "%s", r.out);
	vm_state(t.src, st, sizeof(st));
	cr_assert_str_eq(st, "running");
	vm_state(t.dst, st, sizeof(st));
	cr_assert_str_eq(st, "");
	/* the agent says where it fired, once; a plan never taken says so */
	{
		struct mig_fault_plan off = plan(0, MIG_FAULT_PHASE);
		struct mig_fault_report rep;

		cr_assert_eq(arm_rep(t.dst, &off, &rep, &err), 0, "%s", err.msg);
		cr_assert(rep.taken && rep.fired);
		cr_assert(strstr(rep.what, "Input/output error at device step"), "%s", rep.what);
		cr_assert_eq(arm_rep(t.dst, &off, &rep, &err), 0, "%s", err.msg);
		cr_assert(!rep.taken && !rep.fired, "a report is read once");
		cr_assert_eq(arm_rep(t.src, &p, &rep, &err), 0, "%s", err.msg);
		cr_assert_eq(arm_rep(t.src, &off, &rep, &err), 0, "%s", err.msg);
		cr_assert(!rep.taken && !rep.fired, "armed and disarmed, never taken");
	}
	/* the plan was for one migration: the next one completes */
	migrate(&t, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	proc_pair_down(&t);
}

/* The destination dies after starting the VM, before it says RUNNING: the
 * source cannot know, keeps its copy paused and held, and start exits 3
 * naming it. */
Test(fault, a_kill_between_start_and_running_leaves_a_held_copy)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_KILL, MIG_FAULT_FRAME_SEND);
	struct mig_error err = { 0 };
	struct run_result r;
	char st[32];
	int ws;

	pair_up(&t, true);
	p.frame_type = MIG_FRAME_RUNNING;
	p.stream = 0;
	cr_assert_eq(arm(t.dst, &p, &err), 0, "%s", err.msg);
	migrate(&t, &r);
	cr_assert_eq(r.status, 3, "exit %d: %s", r.status, r.err);
	json_expect_str(r.out, "owner", "none");
	cr_assert(strstr(r.out, "\"source_copy\""), "%s", r.out);
	cr_assert_eq(waitpid(t.b, &ws, 0), t.b);
	cr_assert(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL, "the destination was not killed");
	t.b = 0;
	vm_state(t.src, st, sizeof(st));
	cr_assert_str_eq(st, "held");
	proc_pair_down(&t);
}

/* A source stopped for 400 ms mid-migration: the migration waits and completes. */
Test(fault, a_stop_freezes_the_agent_for_its_time)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_STOP, MIG_FAULT_PHASE);
	struct mig_error err = { 0 };
	struct run_result r;

	pair_up(&t, true);
	p.to = MIG_PHASE_STOP_COPY;
	p.ms = 400;
	cr_assert_eq(arm(t.src, &p, &err), 0, "%s", err.msg);
	migrate(&t, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	/* the guest was stopped for the migration's end, the agent for 400 ms on top */
	cr_assert_geq(json_num(r.out, "total_ms"), 400, "%s", r.out);
	cr_assert_eq(kill(t.a, 0), 0, "the source agent is gone");
	proc_pair_down(&t);
}

/* Regression (the campaign's first finding, seed 1 run 14): a destination
 * whose clock is seconds ahead made downtime_ms read as those seconds.
 * Now it is bounded by durations on each side's own clock. */
Test(fault, a_skewed_clock_does_not_skew_the_downtime)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_SKEW, MIG_FAULT_PHASE);
	struct mig_error err = { 0 };
	struct run_result r;

	pair_up(&t, true);
	for (int k = 0; k < 2; k++) {
		p.skew_ms = k ? -4000 : 4000;
		cr_assert_eq(arm(t.dst, &p, &err), 0, "%s", err.msg);
		migrate(&t, &r);
		cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
		cr_assert_lt(json_num(r.out, "downtime_ms"), 1000, "skew %+lld ms: %s",
			     (long long)p.skew_ms, r.out);
		/* back to the source for the next one */
		{
			char args[400];
			struct run_result b;

			snprintf(args, sizeof(args), "start %s %s --vm cv", t.dst, t.src);
			proc_run(args, &b);
			cr_assert_eq(b.status, 0, "%s", b.err);
		}
	}
	proc_pair_down(&t);
}

/* The destination's count of migrations it still runs (migrations --json). */
static int dst_migrations(const char *endpoint)
{
	struct run_result r;
	char args[256];
	int n = 0;

	snprintf(args, sizeof(args), "migrations %s --json", endpoint);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	for (const char *p = r.out; (p = strstr(p, "\"id\"")); p++)
		n++;
	return n;
}

/* Regression (the campaign's second finding, seed 4 runs 4, 5, 19): a
 * source that gives up at once (its first stream's hello corrupted on the
 * way, by a relay the destination runs) left the destination waiting out
 * 30 s for streams that would never come, its VM prepared.  Now the start
 * calls the destination off, and its wait ends at once. */
Test(fault, a_destination_whose_source_gave_up_lets_go_at_once)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_NET, MIG_FAULT_PHASE);
	struct mig_error err = { 0 };
	struct run_result r;
	uint64_t t0;

	pair_up(&t, true);
	p.point = 0;
	p.net_fault = CHAOS_NET_CORRUPT;
	p.net_stream = -1;
	p.net_frame_type = MIG_FRAME_STREAM_HELLO;
	p.net_frame = 1;
	cr_assert_eq(arm(t.dst, &p, &err), 0, "%s", err.msg);
	migrate(&t, &r);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	t0 = (uint64_t)time(NULL);
	while (dst_migrations(t.dst) && (uint64_t)time(NULL) - t0 < 20)
		usleep(50000);
	cr_assert_eq(dst_migrations(t.dst), 0, "the destination still waits");
	cr_assert_lt((uint64_t)time(NULL) - t0, 5, "the destination let go only after %llu s",
		     (unsigned long long)((uint64_t)time(NULL) - t0));
	/* and the next migration of the VM to it goes through */
	migrate(&t, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	proc_pair_down(&t);
}

/* Regression (the campaign's fourth finding, seed 1 run 112): a start whose
 * connection to the source agent broke (a link reset, here a relay between
 * them that resets it at the first EVENT) while the source went on to hold
 * its copy (the destination died before RUNNING) exited 3 without naming
 * the held copy.  Now it asks the source agent again once the migration
 * has ended there, and names it. */
Test(fault, a_start_that_lost_its_source_still_names_the_held_copy)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_RESET, .stream = -1, .to_source = true,
				       .frame_type = MIG_FRAME_EVENT, .frame = 1 };
	struct mig_fault_plan p = plan(MIG_FAULT_A_KILL, MIG_FAULT_FRAME_SEND);
	char dir[] = "/tmp/migratectl-test-XXXXXX", key[64], src[64], dst[64], to[32];
	char via[64], args[512], st[32], keyopt[96];
	struct chaos_relay *relay;
	struct mig_error err = { 0 };
	struct run_result r;
	pid_t a, b;
	int port = proc_free_port(), fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(key, sizeof(key), "%s/key", dir);
	fd = open(key, O_WRONLY | O_CREAT, 0600);
	cr_assert(fd >= 0 && write(fd, "0123456789abcdef0123456789abcdef", 32) == 32);
	close(fd);
	snprintf(src, sizeof(src), "tcp://127.0.0.1:%d", port);
	snprintf(dst, sizeof(dst), "unix://%s/dst.sock", dir);
	a = agent_start(src, true, key, NULL);
	b = agent_start(dst, true, NULL, NULL);
	snprintf(keyopt, sizeof(keyopt), "--key-file %s", key);
	proc_wait_agent(src, keyopt);
	proc_wait_agent(dst, NULL);
	snprintf(args, sizeof(args), "vm create %s --key-file %s --name cv --lab mem=64M,vcpus=2,"
		 "wss=4M", src, key);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	/* the destination dies before it says RUNNING: the source holds */
	p.frame_type = MIG_FRAME_RUNNING;
	p.stream = 0;
	cr_assert_eq(arm(dst, &p, &err), 0, "%s", err.msg);
	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	cr_assert_eq(chaos_relay_start(NULL, to, &spec, &relay, via, sizeof(via), &err), 0, "%s",
		     err.msg);
	snprintf(args, sizeof(args), "start tcp://%s %s --key-file %s --vm cv --json", via, dst, key);
	proc_run(args, &r);
	chaos_relay_stop(relay);
	cr_assert_eq(r.status, 3, "exit %d: %s", r.status, r.err);
	cr_assert(strstr(r.err, "lost the source agent"), "%s", r.err);
	cr_assert(strstr(r.out, "\"source_copy\""), "the held copy is not named: %s", r.out);
	{
		struct run_result l;

		snprintf(args, sizeof(args), "vm list %s --key-file %s --json", src, key);
		proc_run(args, &l);
		cr_assert(strstr(l.out, "\"cv\""), "%s", l.out);
		json_field(strstr(l.out, "\"cv\""), "state", st, sizeof(st));
		cr_assert_str_eq(st, "held");
	}
	proc_stop(a);
	proc_stop(b);
	unlink(key);
	snprintf(args, sizeof(args), "%s/dst.sock", dir);
	unlink(args);
	rmdir(dir);
}

/* A campaign on agents the runner did not start (--agents): it migrates
 * the VM among them, reads their journals over the control connection,
 * leaves out the faults that kill an agent, and reports as a local one. */
Test(campaign, on_named_agents)
{
	char dir[] = "/tmp/migratectl-test-XXXXXX", key[64], a1[64], a2[64], j1[80], j2[80];
	char args[600], keyopt[96], buf[64];
	struct run_result r;
	pid_t p1, p2;
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(key, sizeof(key), "%s/key", dir);
	fd = open(key, O_WRONLY | O_CREAT, 0600);
	cr_assert(fd >= 0 && write(fd, "0123456789abcdef0123456789abcdef", 32) == 32);
	close(fd);
	snprintf(a1, sizeof(a1), "tcp://127.0.0.1:%d", proc_free_port());
	snprintf(a2, sizeof(a2), "tcp://127.0.0.1:%d", proc_free_port());
	snprintf(j1, sizeof(j1), "%s/j1", dir);
	snprintf(j2, sizeof(j2), "%s/j2", dir);
	p1 = agent_start(a1, true, key, j1);
	p2 = agent_start(a2, true, key, j2);
	snprintf(keyopt, sizeof(keyopt), "--key-file %s", key);
	proc_wait_agent(a1, keyopt);
	proc_wait_agent(a2, keyopt);
	snprintf(args, sizeof(args), "chaos --agents %s,%s --key-file %s --runs 6 --seed 5 "
		 "--faults kill-src,cancel,step-error-dst --json --dir %s/c", a1, a2, key, dir);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s\n%s", r.status, r.err, r.out);
	cr_assert_eq(json_num(r.out, "runs"), 6);
	cr_assert_eq(json_num(r.out, "violation_count"), 0);
	cr_assert(strstr(r.out, "\"violations\":[]"), "%s", r.out);
	cr_assert(strstr(r.out, "kill-src and kill-dst left out"), "%s", r.out);
	cr_assert_null(strstr(r.out, "\"fault\":\"kill-src\""), "%s", r.out);
	cr_assert(json_field(strstr(r.out, "\"fault\":\"cancel\""), "fired", buf, sizeof(buf)),
		  "%s", r.out);
	cr_assert_gt(json_num(r.out, "fired"), 0, "%s", r.out);
	proc_stop(p1);
	proc_stop(p2);
	snprintf(args, sizeof(args), "rm -rf %s", dir);
	cr_assert_eq(system(args), 0);
}

/* Sealed streams (--encrypt always, protocol.md §1.8), damaged on the way
 * by a relay the destination runs: a byte flipped 2.7 MB into a data
 * stream (page data) does not open, a PAGES frame sent twice is a replay;
 * either way the
 * migration fails with that said, the source keeps the VM running, and
 * the next migration, sealed, goes through. */
static void sealed_damage(enum chaos_net_fault nf, uint64_t byte, const char *says)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_NET, MIG_FAULT_PHASE);
	struct mig_error err = { 0 };
	struct run_result r;
	char args[400], st[32], log[] = "/tmp/migratectl-test-log-XXXXXX", text[16384];
	int fd = mkstemp(log);

	cr_assert_geq(fd, 0);
	close(fd);
	agent_log = log;
	pair_up(&t, true);
	agent_log = NULL;
	p.point = 0;
	p.net_fault = nf;
	p.net_stream = 1;
	if (byte) {
		/* a data stream is almost all page data: 4 KiB of meta and 64
		 * bytes of header and tags per MiB */
		p.net_byte = byte;
	} else {
		p.net_frame_type = MIG_FRAME_PAGES;
		p.net_frame = 3;
	}
	cr_assert_eq(arm(t.dst, &p, &err), 0, "%s", err.msg);
	snprintf(args, sizeof(args), "start %s %s --vm cv --json --encrypt always", t.src, t.dst);
	proc_run(args, &r);
	cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	/* the destination's reason: start reports it, or the source's own
	 * failure to send when the reset came first; the agents log it */
	proc_slurp(log, text, sizeof(text));
	cr_assert(strstr(text, says), "no '%s' in the agents' log: %s\nstart said: %s", says, text,
		  r.err);
	unlink(log);
	vm_state(t.src, st, sizeof(st));
	cr_assert_str_eq(st, "running");
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_assert(strstr(r.out, "\"encryption\":\"aes-256-gcm\""), "%s", r.out);
	proc_pair_down(&t);
}

Test(fault, a_sealed_frame_damaged_on_the_way_does_not_open)
{
	sealed_damage(CHAOS_NET_CORRUPT, (2u << 20) + 700000, "does not open");
}

Test(fault, a_sealed_frame_sent_twice_is_refused)
{
	sealed_damage(CHAOS_NET_DUPLICATE, 0, "replayed");
}

/* Agents with --chaos, a VM pv of `lab` on the source, and (with frame)
 * the relay resetting data stream 1 at the destination's frame-th page
 * request. */
static void pc_pair(struct proc_pair *t, const char *lab, uint64_t frame)
{
	struct mig_fault_plan p = plan(MIG_FAULT_A_NET, MIG_FAULT_PHASE);
	struct mig_error err = { 0 };
	struct run_result r;
	char args[400];

	pair_up(t, true);
	snprintf(args, sizeof(args), "vm create %s --name pv --lab %s", t->src, lab);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s", r.err);
	if (!frame)
		return;
	strcpy(p.vm, "pv");
	p.point = 0;
	p.net_fault = CHAOS_NET_RESET;
	p.net_stream = 1;
	p.net_to_source = 1;
	p.net_frame_type = MIG_FRAME_PAGE_REQUEST;
	p.net_frame = frame;
	cr_assert_eq(arm(t->dst, &p, &err), 0, "%s", err.msg);
}

/* The post-copy migration completed, verified, its link made again once. */
static void pc_recovered_once(int status, const struct run_result *r)
{
	const char *pc;

	cr_assert_eq(status, 0, "exit %d: %s\n%s", status, r->out, r->err);
	json_expect_str(r->out, "result", "completed");
	json_expect_str(r->out, "match", "true");
	pc = strstr(r->out, "\"postcopy\":{");
	cr_assert_not_null(pc, "%s", r->out);
	cr_assert_eq(json_num(pc, "links_recovered"), 1, "the link broke once: %s", r->out);
}

/* Post-copy through a cut link: the relay resets data stream 1 at the
 * third page request the destination sends, in post-copy.  Neither half is
 * given up: the destination's vCPUs wait, the source makes the link again,
 * the destination says which pages are still missing, and the migration
 * completes, verified, with the guest running on the destination. */
Test(fault, postcopy_recovers_from_a_cut_link, .timeout = 180)
{
	struct proc_pair t;
	struct run_result r;
	char args[400];

	pc_pair(&t, "mem=128M,vcpus=2,wss=32M", 3);
	snprintf(args, sizeof(args), "start %s %s --vm pv --json --converge postcopy "
		 "--max-bandwidth 32M", t.src, t.dst);
	proc_run(args, &r);
	pc_recovered_once(r.status, &r);
	cr_assert_gt(json_num(r.out, "dst_passes_after"), json_num(r.out, "dst_passes_at_start"),
		     "%s", r.out);
	snprintf(args, sizeof(args), "vm list %s --json", t.dst);
	proc_run(args, &r);
	json_expect_str(strstr(r.out, "\"pv\""), "state", "running");
	snprintf(args, sizeof(args), "vm list %s --json", t.src);
	proc_run(args, &r);
	cr_assert_null(strstr(r.out, "\"pv\""), "the source still has it: %s", r.out);
	proc_pair_down(&t);
}

/* A cancel in post-copy is ignored, and stays ignored when the link then
 * breaks: the source still makes the link again (the cancel must not stop
 * it), and the migration completes.  The relay resets data stream 1 at the
 * 300th page request, well after the cancel went. */
Test(fault, postcopy_cancel_then_a_cut_link_still_recovers, .timeout = 180)
{
	struct proc_pair t;
	struct run_result r;
	char dir[] = "/tmp/migratectl-test-XXXXXX", args[400], id[40] = "";
	pid_t mig;
	int st;

	cr_assert_not_null(mkdtemp(dir));
	pc_pair(&t, "mem=160M,vcpus=2,wss=128M", 300);
	snprintf(args, sizeof(args), "start %s %s --vm pv --json --converge postcopy "
		 "--max-bandwidth 16M", t.src, t.dst);
	mig = proc_start_background(dir, args);
	proc_wait_phase(dir, "commit => postcopy", 0);
	proc_background_id(dir, id);
	snprintf(args, sizeof(args), "cancel %s %s", t.src, id);
	proc_run(args, &r);
	cr_assert_eq(r.status, 0, "%s %s", r.out, r.err);

	st = proc_finish_background(dir, mig, &r);
	pc_recovered_once(st, &r);
	proc_pair_down(&t);
	rmdir(dir);
}

/* Post-copy's link broken at once after COMMIT, before RUNNING kind 1
 * reaches the source (its receive fails): the destination may already run
 * the VM, so this is a break like any later one.  The link is made again
 * and the migration completes, verified. */
Test(fault, postcopy_break_before_the_first_running_recovers, .timeout = 180)
{
	struct proc_pair t;
	struct mig_fault_plan p = plan(MIG_FAULT_A_ERROR, MIG_FAULT_FRAME_RECV);
	struct mig_error err = { 0 };
	struct run_result r;
	char args[400];

	pc_pair(&t, "mem=128M,vcpus=2,wss=32M", 0);
	strcpy(p.vm, "pv");
	p.frame_type = MIG_FRAME_RUNNING;
	p.stream = 0;
	p.err = ECONNRESET;
	cr_assert_eq(arm(t.src, &p, &err), 0, "%s", err.msg);
	snprintf(args, sizeof(args), "start %s %s --vm pv --json --converge postcopy "
		 "--max-bandwidth 32M", t.src, t.dst);
	proc_run(args, &r);
	pc_recovered_once(r.status, &r);
	snprintf(args, sizeof(args), "vm list %s --json", t.dst);
	proc_run(args, &r);
	json_expect_str(strstr(r.out, "\"pv\""), "state", "running");
	proc_pair_down(&t);
}
