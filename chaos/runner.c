// SPDX-License-Identifier: MIT
/*
 * The chaos campaign (include/migrate/chaos-run.h, docs/chaos.md).
 *
 * Each run migrates one VM between two agents of the cluster with one fault
 * from the catalogue, made from (seed, run) alone.  The start command runs
 * as a child process, exactly as an operator runs it, so its exit code and
 * its JSON are checked as the contract an operator relies on.  What the
 * runner checks it sees for itself: the agents' journal files (never two),
 * their VM lists (never none, nothing lost), their processes (no leaks,
 * deaths), and the clock (bounded).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <migrate/agent.h>
#include <migrate/buf.h>
#include <migrate/chaos-run.h>
#include <migrate/engine.h>
#include <migrate/hostile.h>
#include <migrate/journal.h>
#include <migrate/netns.h>
#include <migrate/procstat.h>
#include <migrate/transport.h>
#include <migrate/wire-order.h>

#include "start-proc.h"
#include "util.h"

/* How long an agent may take to listen, a start to exit beyond what its
 * fault explains, and the agents to end their side of a migration. */
#define AGENT_READY_MS 15000
#define RUN_BASE_MS 60000
#define DRAIN_MS 30000
/* The runner's calls to an agent: a stopped or stuck one must not hold it. */
#define RUNNER_CALL_MS 20000
/* An agent that killed itself is reapable within this. */
#define DEATH_WAIT_MS 3000
#define OBSERVE_POLL_MS 1
/* Agents in namespaces listen here, each on its own address. */
#define CHAOS_AGENT_PORT 7400
/* How long hostile clients hold on (the agents drop them sooner). */
#define HOSTILE_HOLD_MS 3000
/* An agent's resources after a run against its baseline: tolerances, and
 * how long it may take to get back within them (threads end, sockets close). */
#define LEAK_TOL_FDS 2
#define LEAK_TOL_THREADS 1
#define LEAK_TOL_RSS_KB (48 * 1024)
#define LEAK_WAIT_MS 3000
/* A run's --timeout unless the start options or the fault give one. */
#define CHAOS_START_TIMEOUT "20s"
/* A fault the runner acts on comes this far into its phase at most. */
#define OBSERVE_WINDOW_MS 20

const char *chaos_outcome_name(enum chaos_outcome o)
{
	static const char *const names[_CHAOS_OUT_END] = {
		[CHAOS_OUT_COMPLETED] = "completed", [CHAOS_OUT_ROLLED_BACK] = "rolled-back",
		[CHAOS_OUT_HELD] = "held", [CHAOS_OUT_OPERATOR] = "operator",
		[CHAOS_OUT_LOST_WITH_AGENT] = "lost-with-agent", [CHAOS_OUT_SPLIT] = "split",
		[CHAOS_OUT_LOST_IN_POSTCOPY] = "lost-in-postcopy", [CHAOS_OUT_NO_EXIT] = "no-exit",
		[CHAOS_OUT_VIOLATION] = "violation",
	};

	return (unsigned)o < _CHAOS_OUT_END && names[o] ? names[o] : "?";
}

const char *chaos_invariant_name(enum chaos_invariant i)
{
	static const char *const names[_CHAOS_INV_END] = {
		[CHAOS_INV_NEVER_TWO] = "never-two", [CHAOS_INV_NEVER_NONE] = "never-none",
		[CHAOS_INV_NOTHING_LOST] = "nothing-lost", [CHAOS_INV_CONTRACT] = "contract",
		[CHAOS_INV_NO_LEAKS] = "no-leaks", [CHAOS_INV_BOUNDED] = "bounded",
	};

	return (unsigned)i < _CHAOS_INV_END && names[i] ? names[i] : "?";
}

/* One incarnation of an agent's process: its journal records, and when the
 * runner saw it die (0: alive). */
struct incarnation {
	uint32_t pid;
	uint64_t died_ns;
};

struct agent_proc {
	char url[128];
	char host[64];
	uint16_t port;
	pid_t pid;                /* local: ours to start and reap; 0 remote */
	char log[PATH_MAX], journal[PATH_MAX];
	off_t log_seen;           /* bytes of its log read so far */
	off_t journal_seen;
	struct mig_buf recs;      /* every journal record so far */
	struct incarnation inc[256];
	unsigned nr_inc;
};

struct campaign {
	const struct chaos_opts *o;
	struct chaos_report *rep;
	char key[PATH_MAX];
	struct agent_proc ag[CHAOS_MAX_AGENTS];
	unsigned n;
	bool local;
	char vm[64];              /* the campaign's VM */
	unsigned holder;          /* the agent it runs on */
	uint64_t vms_made;
	uint64_t mask;            /* the kinds this cluster can take */
	uint64_t expect_ms;       /* a clean run's time, learned */
	struct chaos_cluster_net *net;    /* the agents' namespaces (NULL: plain processes) */
	/* each agent's resources when it first hosted that many VMs (no leaks) */
	struct {
		bool set;
		pid_t pid;
		struct chaos_proc_stat st;
	} base[CHAOS_MAX_AGENTS][4];
	struct mig_client obs;    /* the runner's look at a source during a run */
	bool obs_open;
	unsigned obs_agent;
	struct mig_error err;
};

/* ---- small helpers ---- */

static uint64_t mono_ns(void)
{
	return mig_clock_ns(CLOCK_MONOTONIC);
}

static int write_file(const char *path, const void *p, size_t n, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	bool ok;

	if (fd < 0)
		return -errno;
	ok = write(fd, p, n) == (ssize_t)n;
	close(fd);
	return ok ? 0 : -EIO;
}

/* The bytes of path from *seen on, NUL-terminated, into a malloc'd buffer. */
static char *read_from(const char *path, off_t *seen, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	ssize_t got;

	*ret_len = 0;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < *seen) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	buf = malloc((size_t)(st.st_size - *seen) + 1);
	if (!buf) {
		close(fd);
		return NULL;
	}
	got = pread(fd, buf, (size_t)(st.st_size - *seen), *seen);
	close(fd);
	if (got < 0)
		got = 0;
	buf[got] = '\0';
	*ret_len = (size_t)got;
	return buf;
}

static void copy_file(const char *from, const char *to)
{
	off_t zero = 0;
	size_t n;
	char *b = read_from(from, &zero, &n);

	if (b)
		write_file(to, b, n, 0644);
	free(b);
}

/* ---- the agents ---- */

static int free_port(uint16_t *ret)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		r = -errno;
	close(fd);
	*ret = ntohs(a.sin_port);
	return r;
}

static bool agent_alive(struct campaign *c, unsigned i);

/* Agent i in its namespace: the ready pipe's write end is inherited (as the
 * fd it has) and named by --ready-fd.  Returns its pid, or <0. */
static pid_t netns_spawn(struct campaign *c, unsigned i, int p[2], const char *listen,
			 struct mig_error *err)
{
	struct agent_proc *a = &c->ag[i];
	char rfd[16];
	char *argv[] = { (char *)c->o->self, "agent", "--listen", (char *)listen, "--key-file", c->key,
			 "--journal", a->journal, "--chaos", "--ready-fd", rfd, NULL };
	int fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t pid;

	snprintf(rfd, sizeof(rfd), "%d", p[1]);
	fcntl(p[1], F_SETFD, 0);
	pid = chaos_netns_spawn(c->net, i, argv, fd, fd, err);
	if (fd >= 0)
		close(fd);
	return pid;
}

/* Starts local agent i (again, after a death) and waits until it listens. */
static int agent_spawn(struct campaign *c, unsigned i, struct mig_error *err)
{
	struct agent_proc *a = &c->ag[i];

	for (int attempt = 0; attempt < 5; attempt++) {
		char listen[96], ready[8];
		int p[2], r;
		pid_t pid;

		if (c->net) {
			/* its own address: the same port on every agent */
			a->port = CHAOS_AGENT_PORT;
			snprintf(a->host, sizeof(a->host), "%s", chaos_netns_addr(c->net, i));
		} else if (free_port(&a->port) < 0) {
			return mig_error_set(err, -errno, "chaos: cannot start agent %u: %s", i,
					     strerror(errno));
		} else {
			snprintf(a->host, sizeof(a->host), "127.0.0.1");
		}
		if (pipe2(p, O_CLOEXEC) < 0)
			return mig_error_set(err, -errno, "chaos: cannot start agent %u: %s", i,
					     strerror(errno));
		snprintf(listen, sizeof(listen), "tcp://%s:%u", a->host, a->port);
		snprintf(a->url, sizeof(a->url), "%s", listen);
		if (c->net)
			pid = netns_spawn(c, i, p, listen, err);
		else
			pid = fork();
		if (!c->net && pid == 0) {
			int fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
			char rfd[16];

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			setpgid(0, 0);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
			dup2(p[1], 3);
			snprintf(rfd, sizeof(rfd), "3");
			execl(c->o->self, "migratectl", "agent", "--listen", listen, "--key-file",
			      c->key, "--journal", a->journal, "--chaos", "--ready-fd", rfd,
			      (char *)NULL);
			_exit(127);
		}
		close(p[1]);
		if (pid < 0) {
			close(p[0]);
			return c->net ? mig_error_prefix(err, "chaos: agent %u in its namespace", i) :
			       mig_error_set(err, -errno, "chaos: fork: %s", strerror(errno));
		}
		struct pollfd pf = { .fd = p[0], .events = POLLIN };

		r = poll(&pf, 1, AGENT_READY_MS);
		r = r > 0 ? (int)read(p[0], ready, 1) : 0;
		close(p[0]);
		a->pid = pid;
		if (r == 1) {
			if (a->nr_inc < ARRAY_SIZE(a->inc))
				a->inc[a->nr_inc++] = (struct incarnation){ (uint32_t)pid, 0 };
			return 0;
		}
		/* it did not listen: the port was taken meanwhile, or worse */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		a->pid = 0;
	}
	return mig_error_set(err, -EIO, "chaos: agent %u would not start (its log: %s)", i, a->log);
}

/* Whether agent i lives; a death is reaped and its time kept for the
 * journal check (a dead process runs no vCPU after it is reaped). */
static bool agent_alive(struct campaign *c, unsigned i)
{
	struct agent_proc *a = &c->ag[i];

	if (!c->local)
		return true;
	if (a->pid > 0 && waitpid(a->pid, NULL, WNOHANG) == a->pid) {
		for (unsigned k = 0; k < a->nr_inc; k++)
			if (a->inc[k].pid == (uint32_t)a->pid)
				a->inc[k].died_ns = mono_ns();
		a->pid = 0;
	}
	return a->pid > 0;
}

/* Stopped by a STOP fault: wait (bounded) until it runs again. */
static bool agent_wait_running(struct campaign *c, unsigned i, uint64_t ms)
{
	char path[64], st[512];
	uint64_t end = mig_now_ms() + ms;

	if (!c->local)
		return true;
	for (;;) {
		int fd;
		ssize_t n;
		char *p;

		if (!agent_alive(c, i))
			return false;
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)c->ag[i].pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd >= 0 ? read(fd, st, sizeof(st) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			return false;
		st[n] = '\0';
		p = strrchr(st, ')');
		if (!p || p[2] != 'T')
			return true;
		if (mig_now_ms() > end)
			return false;
		chaos_sleep_ms(10);
	}
}

static int call(struct campaign *c, unsigned i, uint32_t op, const void *body, size_t len,
		struct mig_buf *extra, struct mig_error *err)
{
	struct mig_client cl;
	int r;

	r = mig_client_open(c->ag[i].url, c->key[0] ? c->key : NULL, &cl, err);
	if (r < 0)
		return r;
	r = mig_client_call_within(&cl, op, body, len, extra, RUNNER_CALL_MS, err);
	mig_client_close(&cl);
	return r;
}

/* Agent i's VMs (VM_LIST) or migrations (MIG_LIST), names terminated. */
static int vm_list(struct campaign *c, unsigned i, struct mig_vm_info *out, unsigned max,
		   struct mig_error *err)
{
	struct mig_buf x = { 0 };
	int n = call(c, i, MIG_OP_VM_LIST, NULL, 0, &x, err);

	if (n < 0) {
		mig_buf_free(&x);
		return n;
	}
	n = chaos_table_reply(&x, &mig_wl_vm_info, out, max);
	for (int k = 0; k < n; k++)
		out[k].name[sizeof(out[k].name) - 1] = '\0';
	return n;
}

static int mig_list(struct campaign *c, unsigned i, struct mig_migration_info *out,
		    unsigned max, struct mig_error *err)
{
	struct mig_buf x = { 0 };
	int n = call(c, i, MIG_OP_MIG_LIST, NULL, 0, &x, err);

	if (n < 0) {
		mig_buf_free(&x);
		return n;
	}
	n = chaos_table_reply(&x, &mig_wl_migration_info, out, max);
	chaos_migs_terminate(out, n);
	return n;
}

static int vm_create(struct campaign *c, unsigned i, const char *name, const char *spec,
		     struct mig_error *err)
{
	struct mig_vm_create req = { 0 };

	str_copy(req.name, sizeof(req.name), name);
	str_copy(req.spec, sizeof(req.spec), spec);
	mig_wire_le(&mig_wl_vm_create, &req, 1);
	return call(c, i, MIG_OP_VM_CREATE, &req, sizeof(req), NULL, err);
}

static int vm_destroy(struct campaign *c, unsigned i, const char *name, struct mig_error *err)
{
	struct mig_vm_ref req = { 0 };

	str_copy(req.name, sizeof(req.name), name);
	mig_wire_le(&mig_wl_vm_ref, &req, 1);
	return call(c, i, MIG_OP_VM_DESTROY, &req, sizeof(req), NULL, err);
}

static int vm_resolve(struct campaign *c, unsigned i, const struct mig_vm_info *v,
		      uint32_t action, struct mig_error *err)
{
	struct mig_vm_resolve req = { .action = action };

	str_copy(req.name, sizeof(req.name), v->name);
	memcpy(req.id, v->held_by, sizeof(req.id));
	mig_wire_le(&mig_wl_vm_resolve, &req, 1);
	return call(c, i, MIG_OP_VM_RESOLVE, &req, sizeof(req), NULL, err);
}

/* Arms p on agent i (action 0: disarms), and says what became of the VM's
 * previous plan there (rep may be NULL). */
static int arm(struct campaign *c, unsigned i, const struct mig_fault_plan *p,
	       struct mig_fault_report *rep, struct mig_error *err)
{
	return chaos_plan_arm(c->ag[i].url, c->key[0] ? c->key : NULL, p, rep, RUNNER_CALL_MS,
			      err);
}

/* Every plan of the run disarmed, and each live agent's word on it. */
static void plans_collect(struct campaign *c, struct chaos_run *run)
{
	const char *urls[CHAOS_MAX_AGENTS];
	bool gone[CHAOS_MAX_AGENTS];

	for (unsigned i = 0; i < c->n; i++) {
		urls[i] = c->ag[i].url;
		gone[i] = !agent_alive(c, i);
	}
	chaos_plans_collect(run, urls, c->key[0] ? c->key : NULL, gone, RUNNER_CALL_MS);
}

/* ---- journals ---- */

/* The records agent i appended since the last look (local: its file). */
static int journal_pull(struct campaign *c, unsigned i, struct mig_error *err)
{
	struct agent_proc *a = &c->ag[i];
	size_t len, used = 0;
	char *buf, *line, *nl;

	if (!c->local) {
		struct mig_client cl;
		struct mig_journal_reply info;
		struct mig_buf recs = { 0 };
		int r = mig_client_open(a->url, c->key, &cl, err);

		if (r < 0)
			return r;
		r = mig_client_journal(&cl, 0, &recs, &info, err);
		mig_client_close(&cl);
		if (r >= 0) {
			a->recs.len = 0;
			r = mig_buf_append(&a->recs, recs.data, recs.len);
		}
		mig_buf_free(&recs);
		return r;
	}
	buf = read_from(a->journal, &a->journal_seen, &len);
	if (!buf)
		return 0;
	for (line = buf; (nl = memchr(line, '\n', len - (size_t)(line - buf))); line = nl + 1) {
		struct mig_journal_rec rec;

		*nl = '\0';
		used = (size_t)(nl + 1 - buf);
		if (!*line)
			continue;
		if (mig_journal_rec_parse(line, &rec, err) < 0) {
			free(buf);
			return mig_error_prefix(err, "%s", a->journal);
		}
		if (mig_buf_append(&a->recs, &rec, sizeof(rec)) < 0) {
			free(buf);
			return mig_error_set(err, -ENOMEM, "out of memory");
		}
	}
	/* a line still being written waits for the next look */
	a->journal_seen += (off_t)used;
	free(buf);
	return 0;
}

#define NT_VMS 2
#define NT_VCPUS 64

/* One incarnation's records of the run's VMs, as the check sees them: from
 * window_ns on, with a start at window_ns for each vCPU running then, and
 * a stop at its death for each still running when the runner reaped it. */
static int window_recs(const struct agent_proc *a, const struct incarnation *inc,
		       const char *const vms[NT_VMS], uint64_t window_ns, struct mig_buf *out)
{
	const struct mig_journal_rec *r = (const void *)a->recs.data;
	size_t n = a->recs.len / sizeof(*r);
	static bool run[NT_VMS][NT_VCPUS];
	bool opened = false;
	uint64_t seq = 0;

	memset(run, 0, sizeof(run));
	for (size_t k = 0; k <= n; k++) {
		int v = -1;

		if (k < n && r[k].pid != inc->pid)
			continue;
		if (!opened && (k == n || r[k].monotonic_ns >= window_ns)) {
			/* the window opens: whoever runs, runs from its start */
			opened = true;
			for (int x = 0; x < NT_VMS; x++)
				for (unsigned y = 0; vms[x] && y < NT_VCPUS; y++) {
					struct mig_journal_rec s = { .seq = ++seq, .vcpu = y,
						.event = MIG_VCPU_RUN_START, .pid = inc->pid,
						.monotonic_ns = window_ns };

					if (!run[x][y])
						continue;
					str_copy(s.vm, sizeof(s.vm), vms[x]);
					if (mig_buf_append(out, &s, sizeof(s)) < 0)
						return -ENOMEM;
				}
		}
		if (k == n)
			break;
		for (int x = 0; x < NT_VMS; x++)
			if (vms[x] && !strcmp(r[k].vm, vms[x]))
				v = x;
		if (v < 0 || r[k].vcpu >= NT_VCPUS)
			continue;
		run[v][r[k].vcpu] = r[k].event == MIG_VCPU_RUN_START;
		if (opened) {
			struct mig_journal_rec s = r[k];

			s.seq = ++seq;
			if (mig_buf_append(out, &s, sizeof(s)) < 0)
				return -ENOMEM;
		}
	}
	if (!inc->died_ns)
		return 0;
	for (int x = 0; x < NT_VMS; x++)
		for (unsigned y = 0; vms[x] && y < NT_VCPUS; y++) {
			struct mig_journal_rec s = { .seq = ++seq, .vcpu = y,
				.event = MIG_VCPU_RUN_STOP, .pid = inc->pid,
				.monotonic_ns = inc->died_ns };

			if (!run[x][y])
				continue;
			str_copy(s.vm, sizeof(s.vm), vms[x]);
			if (mig_buf_append(out, &s, sizeof(s)) < 0)
				return -ENOMEM;
		}
	return 0;
}

/* Never two: the journals of every incarnation of every agent, merged, for
 * the run's VMs, since window_ns.  1 with the overlap in words. */
static int check_never_two(struct campaign *c, const char *const vms[NT_VMS],
			   uint64_t window_ns, char *why, size_t n, struct mig_error *err)
{
	struct mig_journal_src src[CHAOS_MAX_AGENTS * 8];
	struct mig_buf bufs[CHAOS_MAX_AGENTS * 8];
	char names[CHAOS_MAX_AGENTS * 8][48];
	struct mig_overlap ov[2];
	unsigned ns = 0;
	size_t nov = 0;
	int r = 0;

	memset(bufs, 0, sizeof(bufs));
	for (unsigned i = 0; i < c->n && r >= 0; i++) {
		struct agent_proc *a = &c->ag[i];

		r = journal_pull(c, i, err);
		/* the latest incarnations: older ones ended before earlier windows */
		for (unsigned k = a->nr_inc > 8 ? a->nr_inc - 8 : 0; r >= 0 && k < a->nr_inc; k++) {
			if (a->inc[k].died_ns && a->inc[k].died_ns < window_ns)
				continue;
			r = window_recs(a, &a->inc[k], vms, c->local ? window_ns : 0, &bufs[ns]);
			snprintf(names[ns], sizeof(names[ns]), "agent %u (pid %u)", i, a->inc[k].pid);
			src[ns] = (struct mig_journal_src){ names[ns], (const void *)bufs[ns].data,
							    bufs[ns].len / sizeof(struct mig_journal_rec) };
			ns++;
		}
	}
	if (r >= 0)
		r = mig_never_two(src, ns, c->local ? MIG_JOURNAL_MONOTONIC : MIG_JOURNAL_REALTIME,
				  ov, ARRAY_SIZE(ov), &nov, err);
	if (r == 1)
		snprintf(why, n, "VM %s ran on %s and on %s at once for %.3f ms (vCPU %u started "
			 "there, migration %02x%02x…, while vCPU %u ran here)", ov[0].vm,
			 src[ov[0].a].agent, src[ov[0].b].agent,
			 ov[0].overlap_ns == UINT64_MAX ? -1.0 : ov[0].overlap_ns / 1e6,
			 ov[0].b_start.vcpu, ov[0].b_start.mig_id[0], ov[0].b_start.mig_id[1],
			 ov[0].a_start.vcpu);
	for (unsigned k = 0; k < ns; k++)
		mig_buf_free(&bufs[k]);
	return r;
}

/* The guest's downtime as the journals show it: from the source's last
 * vCPU stop to the destination's first start of migration id. */
static bool journal_downtime(struct campaign *c, unsigned src, unsigned dst, const uint8_t id[16],
			     uint64_t *ret_ns)
{
	uint64_t stop = 0, start = UINT64_MAX;

	for (int side = 0; side < 2; side++) {
		const struct agent_proc *a = &c->ag[side ? dst : src];
		const struct mig_journal_rec *r = (const void *)a->recs.data;

		for (size_t k = 0; k < a->recs.len / sizeof(*r); k++) {
			if (memcmp(r[k].mig_id, id, 16))
				continue;
			if (!side && r[k].event == MIG_VCPU_RUN_STOP && r[k].monotonic_ns > stop)
				stop = r[k].monotonic_ns;
			if (side && r[k].event == MIG_VCPU_RUN_START && r[k].monotonic_ns < start)
				start = r[k].monotonic_ns;
		}
	}
	if (!stop || start == UINT64_MAX || start < stop)
		return false;
	*ret_ns = start - stop;
	return true;
}

/* ---- the start command ---- */

/* Whether the start options (theirs, or the fault's extra) give opt. */
static bool has_option(const char *const *args, unsigned n, const char *extra, const char *opt)
{
	size_t l = strlen(opt);

	for (unsigned k = 0; k < n; k++)
		if (!strncmp(args[k], opt, l) && (args[k][l] == '\0' || args[k][l] == '='))
			return true;
	for (const char *p = strstr(extra, opt); p; p = strstr(p + 1, opt))
		if ((p == extra || p[-1] == ' ') && (p[l] == ' ' || p[l] == '=' || !p[l]))
			return true;
	return false;
}

static int start_spawn(struct campaign *c, struct chaos_start_proc *sp, unsigned src, unsigned dst,
		       const char *vm, const char *extra, const char *tag)
{
	const char *argv[96];
	char extra_buf[sizeof(((struct chaos_fault *)0)->start_extra)], *save = NULL;
	unsigned n = 0;

	snprintf(sp->out, sizeof(sp->out), "%s/cur/start%s.json", c->o->dir, tag);
	snprintf(sp->err, sizeof(sp->err), "%s/cur/start%s.err", c->o->dir, tag);
	argv[n++] = "migratectl";
	argv[n++] = "start";
	argv[n++] = c->ag[src].url;
	argv[n++] = c->ag[dst].url;
	argv[n++] = "--key-file";
	argv[n++] = c->key;
	argv[n++] = "--vm";
	argv[n++] = vm;
	argv[n++] = "--json";
	for (unsigned k = 0; k < c->o->nr_start_args && n < ARRAY_SIZE(argv) - 24; k++)
		argv[n++] = c->o->start_args[k];
	/* every run is bounded by the product's own contract: a migration
	 * that cannot converge (a squeezed link) gives up at its timeout */
	if (!has_option(c->o->start_args, c->o->nr_start_args, extra, "--timeout")) {
		argv[n++] = "--timeout";
		argv[n++] = CHAOS_START_TIMEOUT;
	}
	str_copy(extra_buf, sizeof(extra_buf), extra);
	for (char *w = strtok_r(extra_buf, " ", &save); w && n < ARRAY_SIZE(argv) - 1;
	     w = strtok_r(NULL, " ", &save))
		argv[n++] = w;
	argv[n] = NULL;
	return chaos_start_exec(c->o->self, argv, sp);
}

/* What start printed on stdout: exactly one JSON object, with id, result
 * and owner; 0, or -1 with why. */
static int start_json_read(const struct chaos_start_proc *sp, struct chaos_start_json *j, char *why, size_t n)
{
	char *buf;
	struct json_object *o = chaos_start_json(sp, &buf, why, n), *v, *x;
	int r = -1;

	memset(j, 0, sizeof(*j));
	if (!o)
		goto out;
	if (!json_object_object_get_ex(o, "result", &v) || !json_object_is_type(v, json_type_string) ||
	    !json_object_object_get_ex(o, "owner", &x) || !json_object_is_type(x, json_type_string)) {
		snprintf(why, n, "start's JSON has no result or owner: %.200s", buf);
		goto out;
	}
	str_copy(j->result, sizeof(j->result), json_object_get_string(v));
	str_copy(j->owner, sizeof(j->owner), json_object_get_string(x));
	if (json_object_object_get_ex(o, "id", &v) && json_object_is_type(v, json_type_string))
		str_copy(j->id, sizeof(j->id), json_object_get_string(v));
	if (json_object_object_get_ex(o, "error", &v) && json_object_is_type(v, json_type_string))
		str_copy(j->error, sizeof(j->error), json_object_get_string(v));
	if (json_object_object_get_ex(o, "downtime_ms", &v) && json_object_is_type(v, json_type_int)) {
		j->has_downtime = true;
		j->downtime_ms = (uint64_t)json_object_get_int64(v);
	}
	if (json_object_object_get_ex(o, "switchover_timeout_ms", &v) &&
	    json_object_is_type(v, json_type_int))
		j->switchover_ms = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "phases", &v) && json_object_is_type(v, json_type_array))
		for (size_t k = 0; k < json_object_array_length(v); k++) {
			struct json_object *ph = json_object_array_get_idx(v, k), *name, *d;

			if (json_object_object_get_ex(ph, "name", &name) &&
			    !strcmp(json_object_get_string(name), "postcopy"))
				j->reached_postcopy = true;
			if (json_object_object_get_ex(ph, "name", &name) &&
			    !strcmp(json_object_get_string(name), "stop_copy") &&
			    json_object_object_get_ex(ph, "duration_ms", &d)) {
				j->has_precommit = true;
				j->precommit_ms = (uint64_t)json_object_get_int64(d);
			}
		}
	if (json_object_object_get_ex(o, "verify", &v) && json_object_is_type(v, json_type_object)) {
		j->verified = true;
		if (json_object_object_get_ex(v, "match", &x))
			j->match = json_object_get_boolean(x);
		if (json_object_object_get_ex(v, "verify_ms", &x))
			j->verify_ms = (uint64_t)json_object_get_int64(x);
		if (json_object_object_get_ex(v, "dst_selfcheck_errors", &x))
			j->dst_errors = (uint64_t)json_object_get_int64(x);
	}
	if (json_object_object_get_ex(o, "source_copy", &v) && json_object_is_type(v, json_type_object)) {
		j->source_copy = true;
		if (json_object_object_get_ex(v, "agent", &x))
			str_copy(j->copy_agent, sizeof(j->copy_agent), json_object_get_string(x));
		if (json_object_object_get_ex(v, "vm", &x))
			str_copy(j->copy_vm, sizeof(j->copy_vm), json_object_get_string(x));
	}
	r = 0;
out:
	json_object_put(o);
	free(buf);
	return r;
}

static void chaos_stacks_save(pid_t pid, const char *path)
{
	struct mig_error err = { 0 };

	chaos_proc_stacks(pid, path, &err);
}

/* ---- one run ---- */

#define violation chaos_violation

/* The log lines agent i wrote since the run began that say a fault fired. */
static void fired_from_log(struct campaign *c, unsigned i, struct chaos_run *run)
{
	size_t len;
	char *buf = read_from(c->ag[i].log, &c->ag[i].log_seen, &len), *p;

	if (!buf)
		return;
	c->ag[i].log_seen += (off_t)len;
	for (p = buf; (p = strstr(p, "chaos: ")); p++) {
		char *end = strchr(p, '\n');

		if (strncmp(p, "chaos: injecting", 16) && strncmp(p, "chaos: SIGKILL", 14) &&
		    strncmp(p, "chaos: SIGSTOP", 14) && strncmp(p, "chaos: relay fired", 18) &&
		    strncmp(p, "chaos: clock", 12) &&
		    strncmp(p, "chaos: relay", 12))
			continue;
		run->fired = true;
		snprintf(run->fired_how, sizeof(run->fired_how), "agent %u: %.*s", i,
			 end ? (int)(end - p) : 200, p);
		break;
	}
	free(buf);
}

static void copies_of(struct campaign *c, const char *vm, struct chaos_copies *cp)
{
	static struct mig_vm_info v[64];

	memset(cp, 0, sizeof(*cp));
	for (unsigned i = 0; i < c->n; i++) {
		struct mig_error err = { 0 };
		int n;

		if (!agent_alive(c, i))
			continue;
		n = vm_list(c, i, v, ARRAY_SIZE(v), &err);
		if (n < 0)
			continue;
		cp->listed[i] = true;
		for (int k = 0; k < n; k++) {
			if (strcmp(v[k].name, vm))
				continue;
			switch (v[k].state) {
			case MIG_VM_RUNNING:
				cp->running++;
				cp->run_at = i;
				cp->passes = v[k].passes;
				cp->errors = v[k].errors;
				break;
			case MIG_VM_HELD:
				cp->held++;
				cp->held_at = i;
				cp->held_info = v[k];
				cp->held_on[i] = true;
				break;
			case MIG_VM_MIGRATING:
				cp->migrating++;
				break;
			default:
				cp->paused++;
			}
		}
	}
}

/* Until no agent has a migration running (the destination ends its side
 * after the start has gone), bounded. */
static bool drained(struct campaign *c, uint64_t ms)
{
	uint64_t end = mig_now_ms() + ms;
	static struct mig_migration_info m[32];

	for (;;) {
		bool busy = false;

		for (unsigned i = 0; i < c->n && !busy; i++) {
			struct mig_error err = { 0 };
			int n;

			if (!agent_alive(c, i) || !agent_wait_running(c, i, 1))
				continue;
			n = mig_list(c, i, m, ARRAY_SIZE(m), &err);
			for (int k = 0; k < n; k++)
				if (m[k].state == MIG_MIGRATION_RUNNING)
					busy = true;
		}
		if (!busy)
			return true;
		if (mig_now_ms() > end)
			return false;
		chaos_sleep_ms(20);
	}
}

/* The source's migration of vm, if it runs: its phase and id.  It asks
 * on one connection kept open for the run, so that it sees a phase change
 * within a millisecond or two, not a handshake later. */
static bool src_phase(struct campaign *c, unsigned src, const char *vm, uint32_t *phase,
		      uint8_t id[16], char *peer, size_t n)
{
	static struct mig_migration_info m[32];
	struct mig_error err = { 0 };
	struct mig_buf x = { 0 };
	int k;

	if (!c->obs_open || c->obs_agent != src) {
		if (c->obs_open)
			mig_client_close(&c->obs);
		c->obs_open = mig_client_open(c->ag[src].url, c->key, &c->obs, &err) == 0;
		c->obs_agent = src;
		if (!c->obs_open)
			return false;
	}
	if (mig_client_call_within(&c->obs, MIG_OP_MIG_LIST, NULL, 0, &x, RUNNER_CALL_MS,
				   &err) < 0) {
		mig_client_close(&c->obs);
		c->obs_open = false;
		mig_buf_free(&x);
		return false;
	}
	k = chaos_table_reply(&x, &mig_wl_migration_info, m, ARRAY_SIZE(m));
	chaos_migs_terminate(m, k);

	for (int i = 0; i < k; i++)
		if (m[i].side == MIG_SIDE_SOURCE && m[i].state == MIG_MIGRATION_RUNNING &&
		    !strcmp(m[i].name, vm)) {
			*phase = m[i].phase;
			memcpy(id, m[i].id, 16);
			str_copy(peer, n, m[i].peer);
			return true;
		}
	return false;
}

/* Whether agent i holds its copy of vm from a migration that broke in
 * post-copy: a half of the VM, which no operator resumes. */
static bool held_in_postcopy(struct campaign *c, unsigned i, const char *vm)
{
	static struct mig_migration_info m[32];
	struct mig_error err = { 0 };
	int n = mig_list(c, i, m, ARRAY_SIZE(m), &err);

	for (int k = 0; k < n; k++)
		if (m[k].state == MIG_MIGRATION_HELD && m[k].phase == MIG_PHASE_POSTCOPY &&
		    !strcmp(m[k].name, vm))
			return true;
	return false;
}

/* Post-copy broke and the source is gone (its agent dead, or its side
 * ended split): the destination's half waits up to 10 minutes for streams
 * that will not come.  An operator cancels it there, which keeps the half
 * held at once; the runner does the same, so that the run ends. */
static void pc_release_dst(struct campaign *c, struct chaos_run *run, int exit_code)
{
	static struct mig_migration_info m[32];
	struct mig_error err = { 0 };
	uint32_t phase;
	uint8_t id[16];
	char peer[128];
	int n;

	if (run->fault.phase != MIG_PHASE_POSTCOPY || exit_code == 0 ||
	    !agent_alive(c, run->dst) ||
	    (agent_alive(c, run->src) && src_phase(c, run->src, run->vm, &phase, id, peer,
						   sizeof(peer))))
		return;
	n = mig_list(c, run->dst, m, ARRAY_SIZE(m), &err);
	for (int k = 0; k < n; k++) {
		struct mig_cancel req;

		if (m[k].side != MIG_SIDE_DESTINATION || m[k].state != MIG_MIGRATION_RUNNING ||
		    strcmp(m[k].name, run->vm))
			continue;
		memcpy(req.id, m[k].id, 16);
		mig_wire_le(&mig_wl_cancel, &req, 1);
		call(c, run->dst, MIG_OP_MIG_CANCEL, &req, sizeof(req), NULL, &err);
	}
}

/* What the runner itself does to a run once the source is seen in the
 * fault's phase: signals, cancel, destroy, hostile clients. */
struct actor {
	bool armed, acted, seen;
	uint64_t at_ms;           /* when to act */
	uint64_t cont_ms;         /* SIGSTOP: when to SIGCONT (0: none pending) */
	uint8_t id[16];
	char peer[128];
	void *hostile;            /* a hostile campaign in the background */
	bool start_killed;        /* the runner killed the start */
	uint64_t heal_ms;         /* a link fault: when to heal it (0: none on) */
	unsigned link_agent;
};

static void act(struct campaign *c, struct chaos_run *run, struct chaos_start_proc *sp,
		struct actor *ac)
{
	const struct chaos_fault *f = &run->fault;
	struct mig_error err = { 0 };

	ac->acted = true;
	run->fired = true;
	ac->start_killed = chaos_start_signal(sp, f, &ac->cont_ms);
	if (f->cancel_op) {
		struct mig_cancel req;

		memcpy(req.id, ac->id, 16);
		mig_wire_le(&mig_wl_cancel, &req, 1);
		call(c, run->src, MIG_OP_MIG_CANCEL, &req, sizeof(req), NULL, &err);
	}
	if (f->destroy_src || f->destroy_dst) {
		int r = vm_destroy(c, f->destroy_src ? run->src : run->dst, run->vm, &err);

		/* a destroy of a VM a migration owns must be refused */
		if (r == 0)
			violation(run, CHAOS_INV_CONTRACT, "vm destroy of %s on the %s was accepted "
				  "while the migration ran", run->vm, f->destroy_src ? "source" :
				  "destination");
	}
	if (f->hostile) {
		/* below the agent's per-peer bound of handshakes (agent.h): the
		 * runner and the start share the hostile clients' address */
		static const unsigned count[] = { 0, 6, 6, 1000, 6 };
		bool mig = f->hostile_mig_port && ac->peer[0];
		const char *at = mig ? ac->peer : c->ag[run->src].url;

		if (chaos_hostile_start((enum chaos_hostile_kind)f->hostile, at,
					mig ? 16 : count[f->hostile], HOSTILE_HOLD_MS, run->index,
					(struct chaos_hostile **)&ac->hostile, &err) < 0) {
			run->fired = false;
			snprintf(run->fired_how, sizeof(run->fired_how), "not injected: %.200s",
				 err.msg);
			return;
		}
		snprintf(run->fired_how, sizeof(run->fired_how), "runner: %s clients at %s",
			 chaos_hostile_name((enum chaos_hostile_kind)f->hostile), at);
		return;
	}
	if (f->link) {
		unsigned who = f->link_dst ? run->dst : run->src;

		if (!c->net) {
			/* nothing to cut: the run goes on without its fault */
			run->fired = false;
			snprintf(run->fired_how, sizeof(run->fired_how), "not injected: the agents "
				 "are not in network namespaces");
			return;
		}
		if (chaos_netns_fault(c->net, who, (enum chaos_link_fault)f->link, f->link_arg,
				      &err) < 0) {
			run->fired = false;
			snprintf(run->fired_how, sizeof(run->fired_how), "not injected: %.200s",
				 err.msg);
			return;
		}
		ac->link_agent = who;
		ac->heal_ms = mig_now_ms() + f->link_ms;
	}
	snprintf(run->fired_how, sizeof(run->fired_how), "runner: %s", f->trigger);
}

/* A link fault's time is up (or the run is over): the link as it was. */
static void heal(struct campaign *c, struct chaos_run *run, struct actor *ac)
{
	struct mig_error err = { 0 };

	if (!ac->heal_ms)
		return;
	ac->heal_ms = 0;
	if (chaos_netns_heal(c->net, ac->link_agent, &err) < 0)
		violation(run, CHAOS_INV_NO_LEAKS, "agent %u's link could not be healed: %s",
			  ac->link_agent, err.msg);
}

static void observe(struct campaign *c, struct chaos_run *run, struct chaos_start_proc *sp,
		    struct actor *ac)
{
	const struct chaos_fault *f = &run->fault;
	uint32_t phase;

	if (ac->cont_ms && mig_now_ms() >= ac->cont_ms) {
		kill(sp->pid, SIGCONT);
		ac->cont_ms = 0;
	}
	if (ac->heal_ms && mig_now_ms() >= ac->heal_ms)
		heal(c, run, ac);
	if (!ac->armed || ac->acted)
		return;
	if (!ac->seen) {
		if (!src_phase(c, run->src, run->vm, &phase, ac->id, ac->peer, sizeof(ac->peer)) ||
		    phase < (uint32_t)f->phase)
			return;
		ac->seen = true;
		ac->at_ms = mig_now_ms() + f->delay_permille * OBSERVE_WINDOW_MS / 1000;
	}
	if (mig_now_ms() >= ac->at_ms)
		act(c, run, sp, ac);
}

static uint64_t run_limit_ms(const struct chaos_fault *f)
{
	uint64_t extra = (uint64_t)f->src_plan.ms + f->dst_plan.ms + f->stop_ms;

	/* post-copy: the source tries its link again for this long */
	return RUN_BASE_MS + 3 * extra + f->recover_ms;
}

/* Saves what a violation needs to be understood: the start's output, the
 * agents' logs and journals, and for a hang every thread's stack. */
static void save_violation(struct campaign *c, struct chaos_run *run, bool stacks)
{
	char path[PATH_MAX + 64], cmd[PATH_MAX * 2];

	snprintf(run->dir, sizeof(run->dir), "%s/violations/run-%" PRIu64, c->o->dir, run->index);
	snprintf(cmd, sizeof(cmd), "%s/violations", c->o->dir);
	mkdir(cmd, 0755);
	mkdir(run->dir, 0755);
	for (int k = 0; k < 2; k++) {
		const char *tag = k ? "2" : "";

		snprintf(cmd, sizeof(cmd), "%s/cur/start%s.json", c->o->dir, tag);
		snprintf(path, sizeof(path), "%s/start%s.json", run->dir, tag);
		copy_file(cmd, path);
		snprintf(cmd, sizeof(cmd), "%s/cur/start%s.err", c->o->dir, tag);
		snprintf(path, sizeof(path), "%s/start%s.err", run->dir, tag);
		copy_file(cmd, path);
	}
	for (unsigned i = 0; i < c->n; i++) {
		if (!c->local)
			break;
		snprintf(path, sizeof(path), "%s/agent-%u.log", run->dir, i);
		copy_file(c->ag[i].log, path);
		snprintf(path, sizeof(path), "%s/agent-%u.journal", run->dir, i);
		copy_file(c->ag[i].journal, path);
		if (stacks && c->ag[i].pid > 0) {
			snprintf(path, sizeof(path), "%s/agent-%u.stacks", run->dir, i);
			chaos_stacks_save(c->ag[i].pid, path);
		}
	}
	snprintf(path, sizeof(path), "%s/what.txt", run->dir);
	snprintf(cmd, sizeof(cmd), "run %" PRIu64 " (seed %" PRIu64 "): fault %s (%s), aimed at "
		 "%s: %s\ninvariant %s: %s\nreplay: %s\n", run->index, c->o->seed,
		 chaos_kinds[run->fault.kind].name, chaos_class_name(chaos_kinds[run->fault.kind].cls),
		 mig_phase_to_string(run->fault.phase), run->fault.trigger,
		 chaos_invariant_name(run->invariant), run->detail, run->replay);
	write_file(path, cmd, strlen(cmd), 0644);
}

static void replay_command(struct campaign *c, struct chaos_run *run)
{
	const struct chaos_opts *o = c->o;
	size_t n = 0;

	n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n, "migratectl chaos ");
	if (c->local)
		n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n, "--local %u", c->n);
	else
		for (unsigned i = 0; i < c->n; i++)
			n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n, "%s%s",
					      i ? "," : "--key-file KEY --agents ", c->ag[i].url);
	n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n,
			      " --seed %" PRIu64 " --faults %s%s%s --lab %s --replay %" PRIu64,
			      o->seed, o->faults ? o->faults : "all", o->phases_arg ? " --phases " : "",
			      o->phases_arg ? o->phases_arg : "", o->lab, run->index);
	if (o->nr_start_args) {
		n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n, " --");
		for (unsigned k = 0; k < o->nr_start_args && n < sizeof(run->replay); k++)
			n += (size_t)snprintf(run->replay + n, sizeof(run->replay) - n, " %s",
					      o->start_args[k]);
	}
}

/* Brings the cluster back to one running copy of the campaign's VM for the
 * next run: dead agents restarted, held copies settled as an operator
 * would (discarded where another copy runs, resumed otherwise), the run's
 * own VM destroyed.  <0 when it cannot (the campaign stops). */
static int settle(struct campaign *c, struct chaos_run *run, const char *fresh,
		  struct mig_error *err)
{
	struct chaos_copies cp;
	int r;

	for (unsigned i = 0; i < c->n; i++)
		if (c->local && !agent_alive(c, i)) {
			r = agent_spawn(c, i, err);
			if (r < 0)
				return r;
		}
	for (int k = 0; k < 2; k++) {
		const char *vm = k ? fresh : c->vm;

		if (!vm || !vm[0])
			continue;
		copies_of(c, vm, &cp);
		/* every held copy, one at a time: a split post-copy leaves two */
		for (unsigned tries = 0; cp.held && tries < c->n; tries++) {
			struct mig_error e = { 0 };
			/* a half of a VM split by post-copy: the VM is lost, and
			 * neither half is resumed (the destination's misses pages,
			 * the source's is the VM as it was at the switch) */
			bool half = held_in_postcopy(c, cp.held_at, vm);
			bool discard = cp.running || half;

			r = vm_resolve(c, cp.held_at, &cp.held_info, discard ? MIG_RESOLVE_DISCARD :
				       MIG_RESOLVE_RESUME, &e);
			if (r < 0 && !run->invariant)
				violation(run, CHAOS_INV_CONTRACT, "the held %s of %s on agent %u "
					  "could not be %s: %s", half ? "post-copy half" : "copy", vm,
					  cp.held_at, discard ? "discarded" : "resumed", e.msg);
			copies_of(c, vm, &cp);
			if (r < 0)
				break;
		}
		if (k) {
			for (unsigned i = 0; i < c->n; i++) {
				struct mig_error e = { 0 };

				if (cp.listed[i])
					vm_destroy(c, i, vm, &e);
			}
			continue;
		}
		if (cp.running > 1) {
			/* a never-two violation was recorded: keep one copy and go on */
			for (unsigned i = 0; i < c->n; i++) {
				struct mig_error e = { 0 };

				if (i != cp.run_at && cp.listed[i])
					vm_destroy(c, i, vm, &e);
			}
			cp.running = 1;
		}
		if (cp.running == 1) {
			c->holder = cp.run_at;
			continue;
		}
		if (cp.running == 0) {
			/* lost with an agent the fault killed: a new VM carries on */
			snprintf(c->vm, sizeof(c->vm), "chaos-%" PRIu64, ++c->vms_made);
			c->holder = 0;
			r = vm_create(c, 0, c->vm, c->o->lab, err);
			if (r < 0)
				return mig_error_prefix(err, "chaos: a new lab VM on agent 0");
		}
	}
	return 0;
}

static bool needs_actor(const struct chaos_fault *f)
{
	return f->start_signal || f->cancel_op || f->destroy_src || f->destroy_dst ||
	       f->hostile || f->link;
}

/* The baseline is the least an agent has needed with that many VMs: a
 * count first read while a session was still closing must not hide a
 * leak that grows one descriptor a run. */
static void base_lower(struct chaos_proc_stat *base, const struct chaos_proc_stat *now)
{
	if (now->fds < base->fds) {
		base->fds = now->fds;
		base->fd_sockets = now->fd_sockets;
		base->fd_anon = now->fd_anon;
	}
	if (now->threads < base->threads)
		base->threads = now->threads;
	if (now->rss_kb < base->rss_kb)
		base->rss_kb = now->rss_kb;
}

/* No leaks: each agent answers, and its descriptors, threads, children and
 * RSS are back within tolerance of what it had the first time it hosted as
 * many VMs (an agent restarted by the fault starts a new baseline). */
static void check_leaks(struct campaign *c, struct chaos_run *run)
{
	static struct mig_vm_info v[64];

	for (unsigned i = 0; i < c->n && c->local && !run->invariant; i++) {
		struct mig_error err = { 0 };
		struct chaos_proc_stat st;
		char why[512] = "";
		uint64_t end = mig_now_ms() + LEAK_WAIT_MS;
		int n = vm_list(c, i, v, ARRAY_SIZE(v), &err);
		unsigned k;

		if (n < 0) {
			violation(run, CHAOS_INV_NO_LEAKS, "agent %u does not serve the next run: %s",
				  i, err.msg);
			return;
		}
		k = (unsigned)n < ARRAY_SIZE(c->base[i]) ? (unsigned)n : ARRAY_SIZE(c->base[i]) - 1;
		if (!c->base[i][k].set || c->base[i][k].pid != c->ag[i].pid) {
			if (c->base[i][k].pid != c->ag[i].pid)
				memset(c->base[i], 0, sizeof(c->base[i]));
			if (chaos_proc_stat(c->ag[i].pid, &c->base[i][k].st, &err) == 0) {
				c->base[i][k].set = true;
				c->base[i][k].pid = c->ag[i].pid;
			}
			continue;
		}
		for (;;) {
			if (chaos_proc_stat(c->ag[i].pid, &st, &err) < 0)
				break;
			if (chaos_proc_within(&c->base[i][k].st, &st, LEAK_TOL_FDS, LEAK_TOL_THREADS,
					      LEAK_TOL_RSS_KB, why, sizeof(why))) {
				base_lower(&c->base[i][k].st, &st);
				break;
			}
			if (mig_now_ms() > end) {
				violation(run, CHAOS_INV_NO_LEAKS, "agent %u (hosting %d VMs) %s %u s "
					  "after the run", i, n, why, LEAK_WAIT_MS / 1000);
				break;
			}
			chaos_sleep_ms(50);
		}
	}
}

/* A hung run's agents are killed (their stacks saved first), so that the
 * next run starts on agents that serve; settle() starts them again. */
static void kill_hung(struct campaign *c, const struct chaos_run *run)
{
	unsigned who[2] = { run->src, run->dst };

	for (unsigned k = 0; k < 2 && c->local; k++)
		if (c->ag[who[k]].pid > 0) {
			kill(c->ag[who[k]].pid, SIGKILL);
			while (agent_alive(c, who[k]))
				chaos_sleep_ms(5);
		}
}

static void judge_exit(struct chaos_run *run, const struct chaos_start_proc *sp,
		       struct chaos_start_json *j, bool killed_by_runner)
{
	char why[512] = "";
	bool json_ok = false;

	if (WIFEXITED(sp->status))
		json_ok = start_json_read(sp, j, why, sizeof(why)) == 0;
	chaos_judge_exit(run, chaos_start_exit(sp), WIFSIGNALED(sp->status) ? WTERMSIG(sp->status) : 0,
			 killed_by_runner, json_ok, why, j);
}

static void run_one(struct campaign *c, uint64_t index, struct chaos_run *run)
{
	const struct chaos_opts *o = c->o;
	struct chaos_fault *f = &run->fault;
	struct chaos_start_proc sp = { 0 }, sp2 = { 0 };
	struct chaos_start_json j = { 0 }, j2;
	struct chaos_copies before, after;
	struct actor ac = { 0 };
	char fresh[64] = "", why[512];
	const char *vms[NT_VMS] = { c->vm, NULL };
	bool src_dead, dst_dead, hung = false;
	uint64_t window_ns = mono_ns(), limit;
	unsigned dst2;
	struct mig_error err = { 0 };

	memset(run, 0, sizeof(*run));
	run->index = index;
	run->exit_code = -1;
	run->src = c->holder;
	run->dst = (c->holder + 1 + (unsigned)(index % (c->n - 1))) % c->n;
	dst2 = (run->dst + 1) % c->n == run->src ? run->dst : (run->dst + 1) % c->n;
	chaos_fault_make_in(o->seed, index, c->mask, o->phases, c->vm, f);
	replay_command(c, run);
	if (f->lab_extra[0] || f->phase == MIG_PHASE_POSTCOPY) {
		/* the fault lives in the VM, or post-copy needs a VM that can
		 * (no VFIO device) and does not converge: it gets a VM of its own */
		char spec[320];

		snprintf(fresh, sizeof(fresh), "chaos-run-%" PRIu64, index);
		chaos_fault_make_in(o->seed, index, c->mask, o->phases, fresh, f);
		if (f->phase == MIG_PHASE_POSTCOPY)
			snprintf(spec, sizeof(spec), "%s", CHAOS_PC_LAB);
		else    /* the fault is a device's: the VM has one, whatever the campaign's has */
			snprintf(spec, sizeof(spec), "%s%s,%s", o->lab, strstr(o->lab, "vfio=") ?
				 "" : ",vfio=1", f->lab_extra);
		if (vm_create(c, run->src, fresh, spec, &err) < 0) {
			violation(run, CHAOS_INV_CONTRACT, "the run's VM could not be made on agent "
				  "%u: %s", run->src, err.msg);
			goto out;
		}
		vms[1] = fresh;
	}
	str_copy(run->vm, sizeof(run->vm), fresh[0] ? fresh : c->vm);
	for (unsigned i = 0; i < c->n; i++) {
		size_t len;

		free(read_from(c->ag[i].log, &c->ag[i].log_seen, &len));
		c->ag[i].log_seen += (off_t)len;
	}
	if ((f->src_plan.action && arm(c, run->src, &f->src_plan, NULL, &err) < 0) ||
	    (f->dst_plan.action && arm(c, run->dst, &f->dst_plan, NULL, &err) < 0)) {
		violation(run, CHAOS_INV_CONTRACT, "an agent refused the fault plan: %s", err.msg);
		goto out;
	}
	if (f->lab_extra[0] || f->double_start)
		run->fired = true;     /* the fault is in the run's settings */
	if (f->timeout_ms) {
		/* round 0 takes 60 % of the timeout: the rest cannot converge */
		static struct mig_vm_info v[64];
		uint64_t mem = 0, bw;
		int n = vm_list(c, run->src, v, ARRAY_SIZE(v), &err);

		for (int k = 0; k < n; k++)
			if (!strcmp(v[k].name, run->vm))
				mem = v[k].mem_bytes;
		bw = (mem ? mem : 64ULL << 20) * 1000 / (f->timeout_ms * 6 / 10);
		snprintf(f->start_extra, sizeof(f->start_extra), "--timeout %ums --timeout-action %s "
			 "--max-bandwidth %llu", f->timeout_ms, f->timeout_force ? "force" : "abort",
			 (unsigned long long)bw);
	}
	ac.armed = needs_actor(f);
	if (start_spawn(c, &sp, run->src, run->dst, run->vm, f->start_extra, "") < 0 ||
	    (f->double_start && start_spawn(c, &sp2, run->src, dst2, run->vm, "", "2") < 0)) {
		violation(run, CHAOS_INV_CONTRACT, "cannot run start: %s", strerror(errno));
		goto out;
	}
	limit = sp.t0_ms + run_limit_ms(f);
	while (!chaos_start_reap(&sp) || (f->double_start && !chaos_start_reap(&sp2))) {
		observe(c, run, &sp, &ac);
		if (mig_now_ms() > limit) {
			hung = true;
			break;
		}
		chaos_sleep_ms(ac.armed && !ac.acted ? OBSERVE_POLL_MS : 5);
	}
	if (ac.cont_ms)
		kill(sp.pid, SIGCONT);
	heal(c, run, &ac);
	if (ac.hostile) {
		struct chaos_hostile_report hr;

		chaos_hostile_stop(ac.hostile, &hr);
		ac.hostile = NULL;
		snprintf(run->fired_how + strlen(run->fired_how),
			 sizeof(run->fired_how) - strlen(run->fired_how), ": %u connected, %u "
			 "refused, %u dropped by the agent", hr.connected, hr.refused,
			 hr.reset_by_peer + hr.closed_by_peer);
	}
	if (hung) {
		for (unsigned i = 0; i < c->n && c->local; i++)
			fired_from_log(c, i, run);
		violation(run, CHAOS_INV_BOUNDED, "start ran past %" PRIu64 " ms", run_limit_ms(f));
		save_violation(c, run, true);
		kill_hung(c, run);
		kill(sp.pid, SIGKILL);
		if (sp2.pid > 0)
			kill(sp2.pid, SIGKILL);
		waitpid(sp.pid, NULL, 0);
		if (sp2.pid > 0)
			waitpid(sp2.pid, NULL, 0);
		goto out;
	}
	run->ms = sp.t1_ms - sp.t0_ms;
	/* a killed agent's word is its log's last line */
	for (unsigned i = 0; i < c->n && c->local; i++)
		fired_from_log(c, i, run);
	/* a stopped agent runs again; a migration the start left goes on to its end */
	for (unsigned i = 0; i < c->n; i++)
		agent_wait_running(c, i, (uint64_t)f->src_plan.ms + f->dst_plan.ms + 10000);
	pc_release_dst(c, run, chaos_start_exit(&sp));
	if (!drained(c, DRAIN_MS)) {
		violation(run, CHAOS_INV_BOUNDED, "a migration still ran on an agent %u ms after "
			  "start exited", DRAIN_MS);
		save_violation(c, run, true);
		kill_hung(c, run);
		goto out;
	}
	plans_collect(c, run);
	judge_exit(run, &sp, &j, ac.start_killed);
	if (f->double_start) {
		struct chaos_run r2 = *run;

		r2.invariant = 0;
		r2.outcome = 0;
		judge_exit(&r2, &sp2, &j2, false);
		if (r2.invariant)
			violation(run, r2.invariant, "the second start: %s", r2.detail);
		else if (run->exit_code == 0 && r2.exit_code == 0)
			violation(run, CHAOS_INV_NEVER_TWO, "both starts of %s completed", run->vm);
		else if (r2.exit_code == 0 || (r2.exit_code != 1 && run->exit_code == 1)) {
			/* the second won: the checks follow its migration */
			run->dst = dst2;
			run->exit_code = r2.exit_code;
			run->outcome = r2.outcome;
			j = j2;
		}
	}
	/* a timeout fired when the policy acted on it: it gave up, or forced
	 * the switchover no sooner than the timeout */
	if (f->timeout_ms && !run->fired &&
	    ((run->exit_code == 1 && strstr(j.error, "timeout:")) ||
	     (run->exit_code == 0 && f->timeout_force && run->ms >= f->timeout_ms))) {
		run->fired = true;
		snprintf(run->fired_how, sizeof(run->fired_how), "the policy: %s",
			 run->exit_code ? "gave up at the timeout" : "forced the switchover at "
			 "the timeout");
	}
	/* An agent that SIGKILLed itself closes its sockets as it dies, so the
	 * start may exit before the runner can reap it: give it a moment. */
	for (int k = 0; k < 2 && run->fired; k++) {
		unsigned who = k ? run->dst : run->src;
		uint64_t end = mig_now_ms() + DEATH_WAIT_MS;

		if (!(k ? f->kills_dst : f->kills_src))
			continue;
		while (agent_alive(c, who) && mig_now_ms() < end)
			chaos_sleep_ms(5);
	}
	src_dead = !agent_alive(c, run->src);
	dst_dead = !agent_alive(c, run->dst);
	for (unsigned i = 0; i < c->n; i++) {
		bool expected = (i == run->src && f->kills_src) || (i == run->dst && f->kills_dst);

		if (!agent_alive(c, i) && !expected)
			violation(run, CHAOS_INV_NO_LEAKS, "agent %u died, and the fault did not "
				  "kill it (its log: %s)", i, c->ag[i].log);
	}
	copies_of(c, run->vm, &before);
	chaos_sleep_ms(o->settle_ms);
	copies_of(c, run->vm, &after);
	chaos_judge_copies(run, &before, &after, &j, src_dead, dst_dead, o->settle_ms);
	if (check_never_two(c, vms, window_ns, why, sizeof(why), &err) != 0)
		violation(run, CHAOS_INV_NEVER_TWO, "%s", err.code ? err.msg : why);
	if (run->exit_code == 0 && j.has_downtime && c->local && !run->invariant) {
		uint8_t id[16];
		uint64_t jdt_ns;

		if (uuid_parse(j.id, id) == 0 && journal_downtime(c, run->src, run->dst, id, &jdt_ns))
			chaos_judge_downtime(run, j.downtime_ms, jdt_ns / 1000000, j.verify_ms,
					     f->src_plan.action == MIG_FAULT_A_STOP && run->fired ?
					     f->src_plan.ms : 0);
		run->downtime_ms = j.downtime_ms;
	}
	if (run->invariant)
		save_violation(c, run, false);
out:
	if (ac.cont_ms && sp.pid > 0)
		kill(sp.pid, SIGCONT);
	heal(c, run, &ac);
	if (ac.hostile)
		chaos_hostile_stop(ac.hostile, NULL);
	if (c->obs_open) {
		mig_client_close(&c->obs);
		c->obs_open = false;
	}
	plans_collect(c, run);     /* again after a hang: nothing stays armed */
	if (settle(c, run, fresh, &err) < 0 && !run->invariant)
		violation(run, CHAOS_INV_NO_LEAKS, "%s", err.msg);
	if (!run->invariant) {
		check_leaks(c, run);
		if (run->invariant)
			save_violation(c, run, false);
	}
	if (!run->outcome)
		run->outcome = CHAOS_OUT_VIOLATION;
}

/* ---- the campaign ---- */

static int cluster_up(struct campaign *c, struct mig_error *err)
{
	const struct chaos_opts *o = c->o;
	char path[PATH_MAX];
	uint8_t key[32];
	int r;

	snprintf(path, sizeof(path), "%s/cur", o->dir);
	if ((mkdir(o->dir, 0755) < 0 && errno != EEXIST) || (mkdir(path, 0755) < 0 && errno != EEXIST))
		return mig_error_set(err, -errno, "chaos: cannot make %s: %s", path, strerror(errno));
	c->local = o->local > 0;
	c->n = c->local ? o->local : o->nr_agents;
	if (c->n < 2 || c->n > CHAOS_MAX_AGENTS)
		return mig_error_set(err, -EINVAL, "chaos: a cluster is 2 to %d agents, not %u",
				     CHAOS_MAX_AGENTS, c->n);
	if (!c->local) {
		str_copy(c->key, sizeof(c->key), o->key_file);
		for (unsigned i = 0; i < c->n; i++)
			str_copy(c->ag[i].url, sizeof(c->ag[i].url), o->agents[i]);
		snprintf(c->rep->cluster, sizeof(c->rep->cluster), "%u agents named by --agents", c->n);
		return 0;
	}
	if (o->netns >= 0 && geteuid() == 0) {
		struct mig_error e = { 0 };

		chaos_netns_reap_stale();
		if (chaos_netns_setup(c->n, &c->net, &e) < 0) {
			if (o->netns > 0) {
				*err = e;
				return mig_error_prefix(err, "chaos: --netns always");
			}
			snprintf(c->rep->cluster, sizeof(c->rep->cluster), "%u agents on this host, "
				 "plain processes on 127.0.0.1 (no namespaces: %.150s)", c->n, e.msg);
		}
	} else if (o->netns > 0) {
		return mig_error_set(err, -EPERM, "chaos: --netns always needs root (network "
				     "namespaces and veth links)");
	}
	snprintf(c->key, sizeof(c->key), "%s/key", o->dir);
	if (xport_random(key, sizeof(key)) < 0 || write_file(c->key, key, sizeof(key), 0600) < 0)
		return mig_error_set(err, -EIO, "chaos: cannot write the cluster's key %s", c->key);
	for (unsigned i = 0; i < c->n; i++) {
		snprintf(c->ag[i].log, sizeof(c->ag[i].log), "%s/agent-%u.log", o->dir, i);
		snprintf(c->ag[i].journal, sizeof(c->ag[i].journal), "%s/agent-%u.journal", o->dir, i);
		unlink(c->ag[i].log);
		unlink(c->ag[i].journal);
		r = agent_spawn(c, i, err);
		if (r < 0)
			return r;
	}
	if (c->net)
		snprintf(c->rep->cluster, sizeof(c->rep->cluster), "%u agents on this host, each "
			 "in a network namespace of its own (%s, %s, ...), joined by veth links to "
			 "a bridge", c->n, chaos_netns_addr(c->net, 0), chaos_netns_addr(c->net, 1));
	else if (!c->rep->cluster[0])
		snprintf(c->rep->cluster, sizeof(c->rep->cluster), "%u agents on this host, plain "
			 "processes on 127.0.0.1", c->n);
	return 0;
}

static void cluster_down(struct campaign *c)
{
	for (unsigned i = 0; i < c->n && c->local; i++)
		if (c->ag[i].pid > 0) {
			kill(c->ag[i].pid, SIGKILL);
			waitpid(c->ag[i].pid, NULL, 0);
			c->ag[i].pid = 0;
		}
	for (unsigned i = 0; i < c->n; i++)
		mig_buf_free(&c->ag[i].recs);
	chaos_netns_free(c->net);
	c->net = NULL;
}

/* One line per run in DIR/runs.jsonl: what was injected, where, and how it ended. */
static void put_str(struct json_object *o, const char *key, const char *val)
{
	json_object_object_add(o, key, val && val[0] ? json_object_new_string(val) : NULL);
}

static void run_line(const char *dir, const struct chaos_run *run)
{
	char path[PATH_MAX + 16];
	struct json_object *o = json_object_new_object();
	FILE *f;

	snprintf(path, sizeof(path), "%s/runs.jsonl", dir);
	f = o ? fopen(path, "a") : NULL;
	if (!f) {
		json_object_put(o);
		return;
	}
	json_object_object_add(o, "run", json_object_new_uint64(run->index));
	put_str(o, "fault", chaos_kinds[run->fault.kind].name);
	put_str(o, "phase", mig_phase_to_string(run->fault.phase));
	put_str(o, "trigger", run->fault.trigger);
	json_object_object_add(o, "fired", json_object_new_boolean(run->fired));
	put_str(o, "fired_how", run->fired_how);
	json_object_object_add(o, "src", json_object_new_int((int)run->src));
	json_object_object_add(o, "dst", json_object_new_int((int)run->dst));
	json_object_object_add(o, "exit", json_object_new_int(run->exit_code));
	put_str(o, "result", run->result);
	put_str(o, "outcome", chaos_outcome_name(run->outcome));
	json_object_object_add(o, "ms", json_object_new_uint64(run->ms));
	put_str(o, "invariant", run->invariant ? chaos_invariant_name(run->invariant) : NULL);
	put_str(o, "detail", run->invariant ? run->detail : NULL);
	fprintf(f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fclose(f);
	json_object_put(o);
}

void chaos_report_run(struct chaos_report *rep, const char *dir, const struct chaos_run *run)
{
	run_line(dir, run);
	rep->runs++;
	rep->table[run->fault.kind][run->fault.phase][run->outcome]++;
	if (run->fired) {
		rep->fired++;
		rep->fired_by_kind[run->fault.kind][run->fault.phase]++;
	}
	if (rep->nr_run_ms == rep->cap_run_ms) {
		uint32_t *p = realloc(rep->run_ms, (rep->cap_run_ms + 1024) * sizeof(*p));

		if (p) {
			rep->run_ms = p;
			rep->cap_run_ms += 1024;
		}
	}
	if (rep->nr_run_ms < rep->cap_run_ms)
		rep->run_ms[rep->nr_run_ms++] = (uint32_t)run->ms;
	if (run->invariant) {
		rep->violations++;
		if (rep->nr_bad < 100) {
			struct chaos_run *b = realloc(rep->bad, (rep->nr_bad + 1) * sizeof(*b));

			if (b) {
				rep->bad = b;
				rep->bad[rep->nr_bad++] = *run;
			}
		}
	}
}

int chaos_campaign(const struct chaos_opts *o, struct chaos_report *rep, struct mig_error *err)
{
	static struct campaign c;
	uint64_t t0 = mig_now_ms();
	struct chaos_run run;
	int r;

	if (o->lv_domain)
		return chaos_lv_campaign(o, rep, err);
	memset(&c, 0, sizeof(c));
	memset(rep, 0, sizeof(*rep));
	c.o = o;
	c.rep = rep;
	c.mask = o->mask;
	rep->seed = o->seed;
	signal(SIGPIPE, SIG_IGN);
	r = cluster_up(&c, err);
	if (r < 0)
		goto out;
	c.mask = chaos_cluster_mask(o->mask, c.local);
	if (c.mask != o->mask)
		snprintf(rep->cluster + strlen(rep->cluster), sizeof(rep->cluster) -
			 strlen(rep->cluster), "; kill-src and kill-dst left out (the runner "
			 "cannot restart agents it did not start)");
	c.mask = chaos_phase_mask(c.mask, o->phases);
	if (!c.mask) {
		r = mig_error_set(err, -EINVAL, "chaos: no fault left to inject on this cluster%s",
				  o->phases ? " in the phases of --phases" : "");
		goto out;
	}
	snprintf(rep->network, sizeof(rep->network), "stream faults by a relay in front of the "
		 "destination agent's migration listener (in the agent process, outside its "
		 "engine)%s", c.net ? "; link faults on the agents' veth links (ip link down, tc "
		 "tbf, iptables DROP and REJECT; no netem here)" : "; no link faults (the agents "
		 "are not in network namespaces)");
	snprintf(c.vm, sizeof(c.vm), "chaos-%" PRIu64, c.vms_made);
	r = vm_create(&c, 0, c.vm, o->lab, err);
	if (r < 0) {
		mig_error_prefix(err, "chaos: the lab VM (--lab %s) on agent 0", o->lab);
		goto out;
	}
	for (uint64_t i = o->replay ? o->replay_run : 0; chaos_run_next(o, i, t0); i++) {
		run_one(&c, i, &run);
		chaos_run_done(o, rep, &run);
	}
	r = 0;
out:
	rep->elapsed_ms = mig_now_ms() - t0;
	cluster_down(&c);
	return r;
}

void chaos_report_free(struct chaos_report *rep)
{
	free(rep->run_ms);
	free(rep->bad);
	rep->run_ms = NULL;
	rep->bad = NULL;
}
