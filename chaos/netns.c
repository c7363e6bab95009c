// SPDX-License-Identifier: MIT
/*
 * The chaos runner's local cluster in network namespaces
 * (include/migrate/netns.h).  Every change is one run of `ip`, `tc` or
 * `iptables`, forked and exec'd by full path without a shell; the
 * programs' paths are looked up once at setup so that teardown, which may
 * run from a signal handler, allocates nothing and searches nothing.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <migrate/netns.h>

#include "util.h"

#define NETNS_DIR "/run/netns/"
/* Far from the 10.0/16 to 10.1/16 that container engines and VPNs tend to
 * take; setup still checks this host's routes before picking a /24. */
#define SUBNET_A 10
#define SUBNET_B 237

struct netns_agent {
	char ns[24];          /* mcc<PID>-<i> */
	char veth[IFNAMSIZ];  /* mcc<PID>-<i>h, the root namespace's end */
	char addr[16];
	unsigned faults;      /* 1 << fault, since the last heal */
};

struct chaos_cluster_net {
	unsigned n;
	bool torn_down;
	unsigned supported;
	char bridge[IFNAMSIZ];
	char bridge_addr[16];
	char ip[PATH_MAX], tc[PATH_MAX], iptables[PATH_MAX];   /* "" where absent */
	struct netns_agent a[];
};

static const char *const fault_names[CHAOS_LINK_FAULT_MAX] = {
	[CHAOS_LINK_DOWN] = "down",
	[CHAOS_LINK_RATE] = "rate",
	[CHAOS_LINK_DROP] = "drop",
	[CHAOS_LINK_RESET] = "reset",
};
MIG_STRING_TABLE(chaos_link_fault, enum chaos_link_fault, fault_names)

/* The program `name` on PATH or in the sbin folders (which a root shell
 * from `su` may lack on its PATH), into path; false if none. */
static bool prog_find(const char *name, char *path, size_t n)
{
	const char *env = getenv("PATH");
	char dirs[4096];

	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/bin:/bin", env ? env : "");
	for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (!*d)
			continue;
		if ((size_t)snprintf(path, n, "%s/%s", d, name) < n && access(path, X_OK) == 0)
			return true;
	}
	path[0] = '\0';
	return false;
}

/*
 * The child's half of every run and spawn: into the namespace open at
 * nsfd (-1: stay), fds on 0, 1, 2, no blocked signals, then exec.  Only
 * async-signal-safe calls.  On failure, errno goes up errpipe (when >= 0).
 */
static void __attribute__((noreturn))
child_exec(int nsfd, int fd0, int fd1, int fd2, int errpipe, bool search, char *const argv[])
{
	sigset_t none;
	int e;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
		goto fail;
	if (dup2(fd0, 0) < 0 || dup2(fd1, 1) < 0 || dup2(fd2, 2) < 0)
		goto fail;
	if (search)
		execvp(argv[0], argv);
	else
		execv(argv[0], argv);
fail:
	e = errno;
	if (errpipe >= 0 && write(errpipe, &e, sizeof(e)) < 0)
		_exit(127);
	_exit(127);
}

static int ns_open(const char *ns)
{
	char path[64];

	snprintf(path, sizeof(path), NETNS_DIR "%s", ns);
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* A command line for messages: the program's name, then its arguments. */
static void argv_text(char *const argv[], char *buf, size_t n)
{
	const char *prog = strrchr(argv[0], '/');
	size_t len;

	snprintf(buf, n, "%s", prog ? prog + 1 : argv[0]);
	for (unsigned i = 1; argv[i]; i++) {
		len = strlen(buf);
		snprintf(buf + len, n - len, " %s", argv[i]);
	}
}

/* The contents of memfd fd as a string in buf, trailing newlines cut. */
static void memfd_text(int fd, char *buf, size_t n)
{
	ssize_t got = pread(fd, buf, n - 1, 0);

	buf[got > 0 ? got : 0] = '\0';
	for (size_t len = strlen(buf); len && buf[len - 1] == '\n'; len--)
		buf[len - 1] = '\0';
}

/*
 * Runs argv (argv[0] a full path) in namespace ns (NULL: this one) and
 * waits for it; its stdout into out when out is not NULL.  Exit status 0
 * is 0; anything else -EIO, with the command and its stderr in err.  err
 * NULL (teardown) makes it allocate nothing.
 */
static int run_out(const char *ns, char *const argv[], char *out, size_t out_n,
		   struct mig_error *err)
{
	int nsfd = -1, devnull, efd, ofd = -1, st = 0, r = 0;
	pid_t pid;

	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	efd = memfd_create("chaos-netns-stderr", MFD_CLOEXEC);
	if (out)
		ofd = memfd_create("chaos-netns-stdout", MFD_CLOEXEC);
	if (ns)
		nsfd = ns_open(ns);
	if (devnull < 0 || efd < 0 || (out && ofd < 0) || (ns && nsfd < 0)) {
		r = mig_error_set(err, -errno, "running %s%s%s: %s", argv[0], ns ? " in " : "",
				  ns ? ns : "", strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = mig_error_set(err, -errno, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		child_exec(nsfd, devnull, out ? ofd : devnull, efd, -1, false, argv);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			st = -1;
			break;
		}
	if (out)
		memfd_text(ofd, out, out_n);
	if (st != 0 && err) {
		char cmd[256], msg[300];

		argv_text(argv, cmd, sizeof(cmd));
		memfd_text(efd, msg, sizeof(msg));
		r = mig_error_set(err, -EIO, "`%s`%s%s failed (%s %d): %s", cmd,
				  ns ? " in " : "", ns ? ns : "",
				  WIFEXITED(st) ? "exit" : "signal",
				  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
				  msg[0] ? msg : "no message");
	} else if (st != 0) {
		r = -EIO;
	}
out:
	if (nsfd >= 0)
		close(nsfd);
	if (ofd >= 0)
		close(ofd);
	if (efd >= 0)
		close(efd);
	if (devnull >= 0)
		close(devnull);
	return r;
}

static int run(const char *ns, char *const argv[], struct mig_error *err)
{
	return run_out(ns, argv, NULL, 0, err);
}

/* argv's strings are the caller's; the casts only drop const for exec. */
#define ARGV(...) ((char *const[]){ __VA_ARGS__, NULL })
#define S(s) ((char *)(s))

/* Does a.b.c.d/len overlap our candidate /24 net (host order)? */
static bool prefix_overlaps(const char *text, uint32_t net)
{
	char buf[64], *slash;
	struct in_addr a;
	unsigned len = 32;
	uint32_t mask;

	str_copy(buf, sizeof(buf), text);
	slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		len = (unsigned)atoi(slash + 1);
	}
	if (inet_pton(AF_INET, buf, &a) != 1 || len > 32)
		return false;
	if (len > 24)
		len = 24;
	mask = len ? ~0u << (32 - len) : 0;
	return ((ntohl(a.s_addr) ^ net) & mask) == 0;
}

/* Does any route of any table (`ip -4 route show table all`: the local
 * table holds the host's own addresses) overlap 10.237.y.0/24?  The
 * default route does not count: a /24 is more specific. */
static bool subnet_used(const char *routes, unsigned y)
{
	static const char *const types[] = { "unicast", "local", "broadcast", "multicast",
		"anycast", "unreachable", "blackhole", "prohibit", "throw", "nat" };
	uint32_t net = (SUBNET_A << 24) | (SUBNET_B << 16) | (y << 8);
	const char *line = routes;

	while (line && *line) {
		char tok[64] = "";
		const char *p = line;
		int used = 0;

		if (sscanf(p, "%63s%n", tok, &used) == 1) {
			for (unsigned t = 0; t < ARRAY_SIZE(types); t++)
				if (strcmp(tok, types[t]) == 0 &&
				    sscanf(p + used, "%63s", tok) != 1)
					tok[0] = '\0';
			if (strcmp(tok, "default") != 0 && prefix_overlaps(tok, net))
				return true;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return false;
}

static int subnet_pick(struct chaos_cluster_net *c, unsigned *ret_y, struct mig_error *err)
{
	_cleanup_free_ char *routes = malloc(1 << 16);
	unsigned start = (unsigned)getpid() % 256;
	int r;

	if (!routes)
		return mig_error_set(err, -ENOMEM, "out of memory");
	r = run_out(NULL, ARGV(c->ip, S("-4"), S("-o"), S("route"), S("show"), S("table"),
			       S("all")), routes, 1 << 16, err);
	if (r < 0)
		return r;
	for (unsigned k = 0; k < 256; k++) {
		unsigned y = (start + k) % 256;

		if (!subnet_used(routes, y)) {
			*ret_y = y;
			return 0;
		}
	}
	return mig_error_set(err, -EADDRINUSE, "every %d.%d.Y.0/24 is routed on this host",
			     SUBNET_A, SUBNET_B);
}

static int bridge_make(struct chaos_cluster_net *c, struct mig_error *err)
{
	char cidr[24];
	int r;

	snprintf(cidr, sizeof(cidr), "%s/24", c->bridge_addr);
	r = run(NULL, ARGV(c->ip, S("link"), S("add"), c->bridge, S("type"), S("bridge")), err);
	/* Where br_netfilter is loaded, bridged frames would cross the root
	 * namespace's iptables (whose FORWARD policy a container engine may
	 * have set to DROP): this bridge's traffic is the agents' own.  An
	 * older `ip` without the option is no reason to fail. */
	if (r == 0)
		run(NULL, ARGV(c->ip, S("link"), S("set"), c->bridge, S("type"), S("bridge"),
			       S("nf_call_iptables"), S("0")), NULL);
	if (r == 0)
		r = run(NULL, ARGV(c->ip, S("addr"), S("add"), cidr, S("dev"), c->bridge), err);
	if (r == 0)
		r = run(NULL, ARGV(c->ip, S("link"), S("set"), c->bridge, S("up")), err);
	return r;
}

static int agent_make(struct chaos_cluster_net *c, struct netns_agent *a, struct mig_error *err)
{
	struct mig_error e = { 0 };
	char cidr[24];
	int r;

	snprintf(cidr, sizeof(cidr), "%s/24", a->addr);
	/* root failing to make a namespace: this host has none to make */
	if (run(NULL, ARGV(c->ip, S("netns"), S("add"), a->ns), &e) < 0)
		return mig_error_set(err, -ENOTSUP, "network namespaces are unavailable: %s",
				     e.msg);
	/* the agent's end is made in its namespace, so no name of it ever
	 * exists in the root namespace */
	r = run(NULL, ARGV(c->ip, S("link"), S("add"), a->veth, S("type"), S("veth"), S("peer"),
			   S("name"), S("eth0"), S("netns"), a->ns), err);
	if (r == 0)
		r = run(NULL, ARGV(c->ip, S("link"), S("set"), a->veth, S("master"), c->bridge,
				   S("up")), err);
	if (r == 0)
		r = run(NULL, ARGV(c->ip, S("-n"), a->ns, S("addr"), S("add"), cidr, S("dev"),
				   S("eth0")), err);
	if (r == 0)
		r = run(NULL, ARGV(c->ip, S("-n"), a->ns, S("link"), S("set"), S("eth0"), S("up")),
			err);
	if (r == 0)
		r = run(NULL, ARGV(c->ip, S("-n"), a->ns, S("link"), S("set"), S("lo"), S("up")),
			err);
	return r;
}

/* Which faults work here, by making each once on agent 0's link: a tbf
 * qdisc, and a REJECT rule in its namespace (iptables may be missing, or
 * its backend may not work in a namespace). */
static unsigned faults_probe(struct chaos_cluster_net *c)
{
	struct netns_agent *a = &c->a[0];
	unsigned ok = 1u << CHAOS_LINK_DOWN;

	if (c->tc[0] &&
	    run(NULL, ARGV(c->tc, S("qdisc"), S("add"), S("dev"), a->veth, S("root"), S("tbf"),
			   S("rate"), S("1gbit"), S("burst"), S("64kb"), S("latency"), S("100ms")),
		NULL) == 0 &&
	    run(NULL, ARGV(c->tc, S("qdisc"), S("del"), S("dev"), a->veth, S("root")), NULL) == 0)
		ok |= 1u << CHAOS_LINK_RATE;
	if (c->iptables[0] &&
	    run(a->ns, ARGV(c->iptables, S("-w"), S("-A"), S("OUTPUT"), S("-p"), S("tcp"),
			    S("--dport"), S("9"), S("-j"), S("REJECT"), S("--reject-with"),
			    S("tcp-reset")), NULL) == 0 &&
	    run(a->ns, ARGV(c->iptables, S("-w"), S("-F"), S("OUTPUT")), NULL) == 0)
		ok |= 1u << CHAOS_LINK_DROP | 1u << CHAOS_LINK_RESET;
	return ok;
}

/* The errors of a host that cannot do this at all, as the runner's cue to
 * fall back to plain processes. */
static int host_check(struct chaos_cluster_net *c, struct mig_error *err)
{
	if (geteuid() != 0)
		return mig_error_set(err, -EPERM, "network namespaces need root "
				     "(CAP_NET_ADMIN and CAP_SYS_ADMIN)");
	if (!prog_find("ip", c->ip, sizeof(c->ip)))
		return mig_error_set(err, -ENOTSUP, "no `ip` program (iproute2) on this host");
	if (access("/proc/self/ns/net", F_OK) < 0)
		return mig_error_set(err, -ENOTSUP, "this kernel has no network namespaces "
				     "(/proc/self/ns/net: %s)", strerror(errno));
	prog_find("tc", c->tc, sizeof(c->tc));
	prog_find("iptables", c->iptables, sizeof(c->iptables));
	return 0;
}

int chaos_netns_setup(unsigned n, struct chaos_cluster_net **ret, struct mig_error *err)
{
	struct chaos_cluster_net *c;
	unsigned pid = (unsigned)getpid(), y = 0;
	int r;

	if (n == 0 || n > CHAOS_NETNS_MAX)
		return mig_error_set(err, -EINVAL, "a local cluster has 1 to %d agents, not %u",
				     CHAOS_NETNS_MAX, n);
	c = calloc(1, sizeof(*c) + n * sizeof(c->a[0]));
	if (!c)
		return mig_error_set(err, -ENOMEM, "out of memory");
	/* nothing made yet: teardown must not delete another runner's names */
	c->torn_down = true;
	r = host_check(c, err);
	if (r == 0)
		r = subnet_pick(c, &y, err);
	if (r < 0)
		goto fail;
	c->n = n;
	c->torn_down = false;
	snprintf(c->bridge, sizeof(c->bridge), "mcc%ubr", pid);
	snprintf(c->bridge_addr, sizeof(c->bridge_addr), "%d.%d.%u.254", SUBNET_A, SUBNET_B, y);
	for (unsigned i = 0; i < n; i++) {
		snprintf(c->a[i].ns, sizeof(c->a[i].ns), "mcc%u-%u", pid, i);
		snprintf(c->a[i].veth, sizeof(c->a[i].veth), "mcc%u-%uh", pid, i);
		snprintf(c->a[i].addr, sizeof(c->a[i].addr), "%d.%d.%u.%u", SUBNET_A, SUBNET_B,
			 y, i + 1);
	}
	/* a runner that died before its teardown, with the PID we have now,
	 * left these very names: ours to delete */
	chaos_netns_teardown(c);
	c->torn_down = false;
	r = bridge_make(c, err);
	for (unsigned i = 0; i < n && r == 0; i++)
		r = agent_make(c, &c->a[i], err);
	if (r < 0) {
		mig_error_prefix(err, "making the local cluster's network");
		goto fail;
	}
	c->supported = faults_probe(c);
	*ret = c;
	return 0;
fail:
	chaos_netns_free(c);
	return r;
}

unsigned chaos_netns_count(const struct chaos_cluster_net *c)
{
	return c->n;
}

const char *chaos_netns_addr(const struct chaos_cluster_net *c, unsigned i)
{
	return i < c->n ? c->a[i].addr : NULL;
}

const char *chaos_netns_bridge_addr(const struct chaos_cluster_net *c)
{
	return c->bridge_addr;
}

const char *chaos_netns_name(const struct chaos_cluster_net *c, unsigned i)
{
	return i < c->n ? c->a[i].ns : NULL;
}

unsigned chaos_netns_supported(const struct chaos_cluster_net *c)
{
	return c->supported;
}

pid_t chaos_netns_spawn(const struct chaos_cluster_net *c, unsigned i, char *const argv[],
			int stdout_fd, int stderr_fd, struct mig_error *err)
{
	_cleanup_close_ int nsfd = -1, devnull = -1;
	int pipefd[2], e = 0;
	ssize_t got;
	pid_t pid;

	if (i >= c->n || c->torn_down || !argv || !argv[0])
		return mig_error_set(err, -EINVAL, "no agent namespace %u", i);
	nsfd = ns_open(c->a[i].ns);
	if (nsfd < 0)
		return mig_error_set(err, -errno, "opening namespace %s: %s", c->a[i].ns,
				     strerror(errno));
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || pipe2(pipefd, O_CLOEXEC) < 0)
		return mig_error_set(err, -errno, "spawning %s: %s", argv[0], strerror(errno));
	pid = fork();
	if (pid < 0) {
		e = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return mig_error_set(err, -e, "fork: %s", strerror(e));
	}
	if (pid == 0)
		child_exec(nsfd, devnull, stdout_fd >= 0 ? stdout_fd : devnull,
			   stderr_fd >= 0 ? stderr_fd : devnull, pipefd[1], true, argv);
	close(pipefd[1]);
	/* the pipe closes on exec (nothing read) or carries the child's errno */
	do
		got = read(pipefd[0], &e, sizeof(e));
	while (got < 0 && errno == EINTR);
	close(pipefd[0]);
	if (got == sizeof(e)) {
		waitpid(pid, NULL, 0);
		return mig_error_set(err, -e, "running %s in %s: %s", argv[0], c->a[i].ns,
				     strerror(e));
	}
	return pid;
}

/* tbf on one end (ns NULL: the root namespace's): `rate` bytes/s, a
 * burst of at least 64 KiB since a veth hands tbf whole GSO packets of up
 * to 64 KiB. */
static int rate_set(const struct chaos_cluster_net *c, const char *ns, const char *dev,
		    uint64_t rate, struct mig_error *err)
{
	char bits[32], burst[32], *argv[20] = { S(c->tc) };
	uint64_t b = rate / 20;
	unsigned k = 1;

	snprintf(bits, sizeof(bits), "%llubit", (unsigned long long)(rate * 8));
	snprintf(burst, sizeof(burst), "%llu", (unsigned long long)(b > 65536 ? b : 65536));
	if (ns) {
		argv[k++] = S("-n");
		argv[k++] = S(ns);
	}
	memcpy(argv + k, ARGV(S("qdisc"), S("replace"), S("dev"), S(dev), S("root"), S("tbf"),
			      S("rate"), bits, S("burst"), burst, S("latency"), S("200ms")),
	       13 * sizeof(argv[0]));
	return run(NULL, argv, err);
}

/* TCP to or from port (0: any) in both directions of agent a's namespace:
 * dropped, or refused with a reset. */
static int rules_add(const struct chaos_cluster_net *c, const struct netns_agent *a,
		     bool reset, uint64_t port, struct mig_error *err)
{
	static const char *const chains[] = { "INPUT", "OUTPUT" };
	static const char *const dirs[] = { "--dport", "--sport" };
	char num[16];
	int r = 0;

	snprintf(num, sizeof(num), "%llu", (unsigned long long)port);
	for (unsigned ch = 0; ch < 2 && r == 0; ch++)
		for (unsigned d = 0; d < (port ? 2u : 1u) && r == 0; d++) {
			char *argv[20] = { S(c->iptables), S("-w"), S("-A"), S(chains[ch]),
					   S("-p"), S("tcp") };
			unsigned k = 6;

			if (port) {
				argv[k++] = S(dirs[d]);
				argv[k++] = num;
			}
			/* not the resets themselves: the one REJECT makes for
			 * an incoming segment leaves through OUTPUT, with the
			 * port as its source, and a rule there would eat it */
			if (reset) {
				argv[k++] = S("--tcp-flags");
				argv[k++] = S("RST");
				argv[k++] = S("NONE");
			}
			argv[k++] = S("-j");
			argv[k++] = S(reset ? "REJECT" : "DROP");
			if (reset) {
				argv[k++] = S("--reject-with");
				argv[k++] = S("tcp-reset");
			}
			r = run(a->ns, argv, err);
		}
	return r;
}

int chaos_netns_fault(struct chaos_cluster_net *c, unsigned i, enum chaos_link_fault f,
		      uint64_t arg, struct mig_error *err)
{
	struct netns_agent *a;
	int r;

	if (i >= c->n || c->torn_down)
		return mig_error_set(err, -EINVAL, "no agent link %u", i);
	if (f <= 0 || f >= CHAOS_LINK_FAULT_MAX)
		return mig_error_set(err, -EINVAL, "no link fault %d", f);
	if (!(c->supported & (1u << f)))
		return mig_error_set(err, -ENOTSUP, "link fault %s does not work on this host (%s)",
				     chaos_link_fault_to_string(f),
				     f == CHAOS_LINK_RATE ? "no tc with tbf" :
				     "no iptables that works in a network namespace");
	a = &c->a[i];
	switch (f) {
	case CHAOS_LINK_DOWN:
		/* the root namespace's end: the agent's eth0 keeps its
		 * address and routes, and only loses its carrier */
		r = run(NULL, ARGV(c->ip, S("link"), S("set"), a->veth, S("down")), err);
		break;
	case CHAOS_LINK_RATE:
		if (arg == 0 || arg > UINT64_MAX / 8)
			return mig_error_set(err, -EINVAL, "a rate of %llu bytes/s",
					     (unsigned long long)arg);
		/* an egress qdisc shapes one direction: one on each end */
		r = rate_set(c, NULL, a->veth, arg, err);
		if (r == 0)
			r = rate_set(c, a->ns, "eth0", arg, err);
		break;
	case CHAOS_LINK_DROP:
	case CHAOS_LINK_RESET:
		if (arg > 65535)
			return mig_error_set(err, -EINVAL, "no TCP port %llu", (unsigned long long)arg);
		r = rules_add(c, a, f == CHAOS_LINK_RESET, arg, err);
		break;
	default:
		r = -EINVAL;
	}
	/* marked even on failure: heal undoes whatever part was made */
	a->faults |= 1u << f;
	if (r < 0)
		mig_error_prefix(err, "link fault %s on %s", chaos_link_fault_to_string(f), a->ns);
	return r;
}

int chaos_netns_heal(struct chaos_cluster_net *c, unsigned i, struct mig_error *err)
{
	struct netns_agent *a;
	int r;

	if (i >= c->n || c->torn_down)
		return mig_error_set(err, -EINVAL, "no agent link %u", i);
	a = &c->a[i];
	r = run(NULL, ARGV(c->ip, S("link"), S("set"), a->veth, S("up")), err);
	if (a->faults & (1u << CHAOS_LINK_RATE)) {
		int r1 = run(NULL, ARGV(c->tc, S("qdisc"), S("del"), S("dev"), a->veth, S("root")),
			     err);
		int r2 = run(NULL, ARGV(c->tc, S("-n"), a->ns, S("qdisc"), S("del"), S("dev"),
					S("eth0"), S("root")), err);

		r = r ? r : r1 ? r1 : r2;
	}
	/* the namespace is the agent's alone: nothing else puts rules there */
	if (a->faults & (1u << CHAOS_LINK_DROP | 1u << CHAOS_LINK_RESET)) {
		int r1 = run(a->ns, ARGV(c->iptables, S("-w"), S("-F"), S("INPUT")), err);
		int r2 = run(a->ns, ARGV(c->iptables, S("-w"), S("-F"), S("OUTPUT")), err);

		r = r ? r : r1 ? r1 : r2;
	}
	if (r == 0)
		a->faults = 0;
	else
		mig_error_prefix(err, "healing %s", a->ns);
	return r;
}

void chaos_netns_teardown(struct chaos_cluster_net *c)
{
	if (!c || c->torn_down)
		return;
	c->torn_down = true;
	/* the root end first: deleting it deletes the pair, even where a
	 * process still holds the namespace open */
	for (unsigned i = 0; i < c->n; i++) {
		run(NULL, ARGV(c->ip, S("link"), S("del"), c->a[i].veth), NULL);
		run(NULL, ARGV(c->ip, S("netns"), S("del"), c->a[i].ns), NULL);
	}
	run(NULL, ARGV(c->ip, S("link"), S("del"), c->bridge), NULL);
}

void chaos_netns_free(struct chaos_cluster_net *c)
{
	chaos_netns_teardown(c);
	free(c);
}

/*
 * The runner PID in one of our names, "mcc<PID>" followed by "-<i>" (a
 * namespace), or by "-<i>h" or "br" (a link); 0 for any other name.
 */
static pid_t name_owner(const char *name, bool link)
{
	const char *p = name + 3;
	unsigned long pid;
	char *end;

	if (strncmp(name, "mcc", 3) != 0 || *p < '1' || *p > '9')
		return 0;
	pid = strtoul(p, &end, 10);
	if (pid > INT_MAX)
		return 0;
	if (link && strcmp(end, "br") == 0)
		return (pid_t)pid;
	if (end[0] != '-' || end[1] < '0' || end[1] > '9')
		return 0;
	strtoul(end + 1, &end, 10);
	return strcmp(end, link ? "h" : "") == 0 ? (pid_t)pid : 0;
}

static bool pid_alive(pid_t pid)
{
	return pid == getpid() || kill(pid, 0) == 0 || errno == EPERM;
}

void chaos_netns_reap_stale(void)
{
	struct if_nameindex *links;
	char ip[PATH_MAX];
	struct dirent *e;
	DIR *d;

	if (geteuid() != 0 || !prog_find("ip", ip, sizeof(ip)))
		return;
	/* links first: a dead runner's veth may hold a namespace alive */
	links = if_nameindex();
	for (struct if_nameindex *l = links; l && l->if_index; l++) {
		pid_t owner = name_owner(l->if_name, true);

		if (owner > 0 && !pid_alive(owner))
			run(NULL, ARGV(ip, S("link"), S("del"), l->if_name), NULL);
	}
	if (links)
		if_freenameindex(links);
	d = opendir(NETNS_DIR);
	if (!d)
		return;
	while ((e = readdir(d))) {
		pid_t owner = name_owner(e->d_name, false);

		if (owner > 0 && !pid_alive(owner))
			run(NULL, ARGV(ip, S("netns"), S("del"), e->d_name), NULL);
	}
	closedir(d);
}
