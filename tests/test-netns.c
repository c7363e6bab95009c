// SPDX-License-Identifier: MIT
/*
 * The chaos runner's local cluster in network namespaces
 * (include/migrate/netns.h): agents in namespaces reach each other and the
 * root namespace over the bridge; each link fault cuts, shapes, drops or
 * resets, and heal undoes it; teardown and reap_stale leave nothing.
 *
 * The listener and the sender in a namespace are this binary in a helper
 * mode (`--sink ADDR PORT`, `--send ADDR PORT BYTES`), chosen before
 * criterion starts.  Skips (77) when not root or without `ip netns`.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <migrate/netns.h>

#include "util.h"

#define MiB (1024 * 1024)

/* ---- TCP: a sink that counts what it gets, and a sender ---- */

static uint64_t deadline_left(uint64_t deadline)
{
	uint64_t now = mig_now_ms();

	return now >= deadline ? 0 : deadline - now;
}

/* Waits for ev on fd until deadline: 0, -ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r;

	do {
		uint64_t left = deadline_left(deadline);

		if (!left)
			return -ETIMEDOUT;
		r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r ? 0 : -ETIMEDOUT;
}

/* A non-blocking socket connected to addr:port, or -errno. */
static int tcp_connect(const char *addr, int port, uint64_t deadline)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd, r, e = 0;
	socklen_t len = sizeof(e);

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		r = -errno;
		goto fail;
	}
	r = wait_fd(fd, POLLOUT, deadline);
	if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e)
		r = -e;
	if (r == 0)
		return fd;
fail:
	close(fd);
	return r;
}

/* Sends until *sent reaches total: 0, -ETIMEDOUT (a stall), or -errno. */
static int tcp_send(int fd, uint64_t total, uint64_t *sent, uint64_t deadline)
{
	static char chunk[256 * 1024];

	while (*sent < total) {
		size_t n = total - *sent < sizeof(chunk) ? total - *sent : sizeof(chunk);
		ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL);
		int r;

		if (w > 0) {
			*sent += w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		r = wait_fd(fd, POLLOUT, deadline);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Ends the sending and reads the sink's count: 0 if it got `total`. */
static int tcp_finish(int fd, uint64_t total, uint64_t deadline)
{
	uint64_t count = 0;
	size_t got = 0;

	if (shutdown(fd, SHUT_WR) < 0)
		return -errno;
	while (got < sizeof(count)) {
		ssize_t n = read(fd, (char *)&count + got, sizeof(count) - got);
		int r;

		if (n > 0) {
			got += n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			return r;
	}
	return count == total ? 0 : -EPROTO;
}

/* A whole transfer of `bytes` to addr:port within timeout_ms; its time in
 * *ret_ms.  0 or -errno. */
static int xfer(const char *addr, int port, uint64_t bytes, uint64_t timeout_ms,
		uint64_t *ret_ms)
{
	uint64_t t0 = mig_now_ms(), deadline = t0 + timeout_ms, sent = 0;
	int fd = tcp_connect(addr, port, deadline), r;

	if (fd < 0)
		return fd;
	r = tcp_send(fd, bytes, &sent, deadline);
	if (r == 0)
		r = tcp_finish(fd, bytes, deadline);
	close(fd);
	if (ret_ms)
		*ret_ms = mig_now_ms() - t0;
	return r;
}

/* The sink: each connection (in a child of its own, so a stalled one
 * holds up no other) read to EOF, then its byte count sent back. */
static void __attribute__((noreturn)) sink_main(const char *addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	static char buf[256 * 1024];

	signal(SIGCHLD, SIG_IGN);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
	    bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 64) < 0) {
		fprintf(stderr, "sink %s:%d: %s\n", addr, port, strerror(errno));
		_exit(1);
	}
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		uint64_t count = 0;
		ssize_t n;

		if (fd < 0)
			continue;
		if (fork() != 0) {
			close(fd);
			continue;
		}
		/* a connection a fault left hanging ends with the sink */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			count += n;
		if (n == 0 && write(fd, &count, sizeof(count)) < 0)
			_exit(1);
		_exit(0);
	}
}

/* The sender: prints "ok MS" or "err ERRNO", exits 0 or 1. */
static void __attribute__((noreturn)) send_main(const char *addr, int port, uint64_t bytes,
						uint64_t timeout_ms)
{
	uint64_t ms = 0;
	int r = xfer(addr, port, bytes, timeout_ms, &ms);

	if (r == 0)
		printf("ok %llu\n", (unsigned long long)ms);
	else
		printf("err %d\n", -r);
	fflush(stdout);
	_exit(r ? 1 : 0);
}

/* Before criterion: a helper mode, or the skip (exit 77) of a host that
 * cannot run these tests.  glibc hands constructors argc and argv. */
__attribute__((constructor)) static void netns_test_pre(int argc, char **argv)
{
	int st;

	if (argc == 4 && strcmp(argv[1], "--sink") == 0)
		sink_main(argv[2], atoi(argv[3]));
	if (argc == 6 && strcmp(argv[1], "--send") == 0)
		send_main(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 0),
			  strtoull(argv[5], NULL, 0));
	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: network namespaces need root\n");
		_exit(77);
	}
	st = system("ip netns list >/dev/null 2>&1");
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "SKIP: `ip netns` is not available on this host\n");
		_exit(77);
	}
}

/* ---- the cluster of a test, and the helpers it spawns ---- */

static struct chaos_cluster_net *net;
static pid_t kids[16];
static unsigned nkids;

static void cluster_up(unsigned n)
{
	struct mig_error err = { 0 };

	cr_assert_eq(chaos_netns_setup(n, &net, &err), 0, "%s", err.msg);
}

static void cluster_down(void)
{
	for (unsigned i = 0; i < nkids; i++) {
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
	}
	nkids = 0;
	chaos_netns_free(net);
	net = NULL;
}

static const char *self_exe(void)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	cr_assert_gt(n, 0);
	path[n] = '\0';
	return path;
}

/* This binary in a helper mode in namespace ns, stdout on out_fd (the
 * sink: bytes and timeout NULL). */
static pid_t helper(unsigned ns, const char *mode, const char *addr, int port,
		    const char *bytes, const char *timeout, int out_fd)
{
	struct mig_error err = { 0 };
	char p[16];
	pid_t pid;

	snprintf(p, sizeof(p), "%d", port);
	pid = chaos_netns_spawn(net, ns, (char *[]){ (char *)self_exe(), (char *)mode,
		(char *)addr, p, (char *)bytes, (char *)timeout, NULL }, out_fd, 2, &err);
	cr_assert_gt(pid, 0, "%s", err.msg);
	return pid;
}

/* A sink in namespace ns on its address and port, answering within 20 s
 * (from the root namespace, over the bridge). */
static void sink_up(unsigned ns, int port)
{
	const char *addr = chaos_netns_addr(net, ns);
	int r = -1;

	cr_assert_lt(nkids, ARRAY_SIZE(kids));
	kids[nkids++] = helper(ns, "--sink", addr, port, NULL, NULL, -1);
	for (uint64_t end = mig_now_ms() + 20000; r != 0 && mig_now_ms() < end;) {
		r = xfer(addr, port, 1, 2000, NULL);
		if (r)
			usleep(20000);
	}
	cr_assert_eq(r, 0, "sink %s:%d never answered: %s", addr, port, strerror(-r));
}

/* A sender in namespace ns to addr:port within timeout_ms; its verdict
 * and time in ms. */
static int send_from(unsigned ns, const char *addr, int port, uint64_t bytes,
		     uint64_t timeout_ms, uint64_t *ret_ms)
{
	int fd = memfd_create("send-out", MFD_CLOEXEC), st;
	char b[32], t[32], out[64] = "";
	unsigned long long ms = 0;
	pid_t pid;

	cr_assert_geq(fd, 0);
	snprintf(b, sizeof(b), "%llu", (unsigned long long)bytes);
	snprintf(t, sizeof(t), "%llu", (unsigned long long)timeout_ms);
	pid = helper(ns, "--send", addr, port, b, t, fd);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(pread(fd, out, sizeof(out) - 1, 0) > 0, "the sender printed nothing");
	close(fd);
	if (sscanf(out, "ok %llu", &ms) == 1) {
		if (ret_ms)
			*ret_ms = ms;
		return 0;
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "sender: %s", out);
	return -atoi(out + 4);
}

static double mb_per_s(uint64_t bytes, uint64_t ms)
{
	return (double)bytes / 1e6 / ((double)(ms ? ms : 1) / 1000.0);
}

static int cmd_has(const char *cmd, const char *needle)
{
	char line[512];
	FILE *f = popen(cmd, "r");
	int found = 0;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, needle) != NULL;
	cr_assert_eq(pclose(f), 0, "%s failed", cmd);
	return found;
}

TestSuite(netns, .fini = cluster_down, .timeout = 240);

/* ---- the tests ---- */

Test(netns, names_and_addresses)
{
	char want[32];

	cluster_up(3);
	cr_assert_eq(chaos_netns_count(net), 3);
	for (unsigned i = 0; i < 3; i++) {
		snprintf(want, sizeof(want), "mcc%d-%u", getpid(), i);
		cr_assert_str_eq(chaos_netns_name(net, i), want);
		snprintf(want, sizeof(want), "/run/netns/mcc%d-%u", getpid(), i);
		cr_assert_eq(access(want, F_OK), 0, "%s", want);
		/* one /24: .1, .2, .3 and the bridge .254 */
		cr_assert_eq(strncmp(chaos_netns_addr(net, i), chaos_netns_bridge_addr(net),
				     strlen(chaos_netns_bridge_addr(net)) - 3), 0);
		snprintf(want, sizeof(want), ".%u", i + 1);
		cr_assert_str_eq(strrchr(chaos_netns_addr(net, i), '.'), want);
	}
	cr_assert_null(chaos_netns_addr(net, 3));
	cr_assert_null(chaos_netns_name(net, 3));
	cr_assert_str_eq(strrchr(chaos_netns_bridge_addr(net), '.'), ".254");
	/* no other route of this host covers the /24 but our bridge's */
	snprintf(want, sizeof(want), "mcc%dbr", getpid());
	cr_assert(cmd_has("ip -4 route show dev lo table all; ip -4 route show dev eth0",
			  chaos_netns_bridge_addr(net)) == 0);
	cr_assert(cmd_has("ip -o link show", want));
}

Test(netns, setup_replaces_a_dead_runner_with_our_pid)
{
	char cmd[256];

	/* what a runner with this PID would have left */
	snprintf(cmd, sizeof(cmd), "ip netns add mcc%d-1 && ip link add mcc%dbr type bridge",
		 getpid(), getpid());
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	cluster_up(2);
	sink_up(1, 7010);
}

Test(netns, bad_sizes_and_non_root)
{
	struct chaos_cluster_net *c = NULL;
	struct mig_error err = { 0 };
	int st;
	pid_t pid;

	cr_assert_eq(chaos_netns_setup(0, &c, &err), -EINVAL);
	mig_error_clear(&err);
	cr_assert_eq(chaos_netns_setup(CHAOS_NETNS_MAX + 1, &c, &err), -EINVAL);
	cr_assert_null(c);
	/* as nobody: -EPERM, and a message that says root */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		mig_error_clear(&err);
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		_exit(chaos_netns_setup(2, &c, &err) == -EPERM && strstr(err.msg, "root") ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}

Test(netns, spawn_reports_exec_failure)
{
	struct mig_error err = { 0 };

	cluster_up(1);
	cr_assert_eq(chaos_netns_spawn(net, 0, (char *[]){ "/nonexistent/prog", NULL }, -1, -1,
				       &err), -ENOENT);
	cr_assert(strstr(err.msg, "/nonexistent/prog"), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(chaos_netns_spawn(net, 1, (char *[]){ "true", NULL }, -1, -1, &err), -EINVAL);
}

Test(netns, agents_reach_each_other_and_the_root_namespace)
{
	uint64_t ms = 0;

	cluster_up(2);
	/* the sink binds agent 1's address, which exists only in its
	 * namespace: it answers only if spawn entered it */
	sink_up(1, 7001);
	cr_assert_eq(xfer(chaos_netns_addr(net, 1), 7001, 4 * MiB, 30000, &ms), 0);
	cr_assert_eq(send_from(0, chaos_netns_addr(net, 1), 7001, 4 * MiB, 30000, &ms), 0);
	/* and the root namespace's bridge address from an agent: nothing
	 * listens there, so a refusal is an answer from the root namespace */
	cr_assert_eq(send_from(1, chaos_netns_bridge_addr(net), 7009, 1, 10000, &ms), -ECONNREFUSED);
}

Test(netns, down_stalls_and_heal_resumes)
{
	const char *a1;
	struct mig_error err = { 0 };
	uint64_t sent = 0, total = 64 * MiB;
	int fd;

	cluster_up(2);
	a1 = chaos_netns_addr(net, 1);
	sink_up(1, 7002);
	fd = tcp_connect(a1, 7002, mig_now_ms() + 10000);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	cr_assert_eq(chaos_netns_fault(net, 1, CHAOS_LINK_DOWN, 0, &err), 0, "%s", err.msg);
	/* nothing crosses: no new connection, and the open one's sending
	 * stalls once the buffers are full */
	cr_assert_eq(xfer(a1, 7002, 1, 1500, NULL), -ETIMEDOUT);
	cr_assert_eq(tcp_send(fd, total, &sent, mig_now_ms() + 3000), -ETIMEDOUT);
	cr_assert_lt(sent, total);
	cr_assert_eq(send_from(0, a1, 7002, 1, 1500, NULL), -ETIMEDOUT,
		     "agent 0 reached agent 1 through a link that is down");
	cr_assert_eq(chaos_netns_heal(net, 1, &err), 0, "%s", err.msg);
	/* the same connection carries on */
	cr_assert_eq(tcp_send(fd, total, &sent, mig_now_ms() + 120000), 0);
	cr_assert_eq(tcp_finish(fd, total, mig_now_ms() + 60000), 0);
	close(fd);
	cr_assert_eq(xfer(a1, 7002, MiB, 30000, NULL), 0);
}

Test(netns, rate_caps_both_directions)
{
	struct mig_error err = { 0 };
	const uint64_t rate = 2000000, bytes = 6000000;
	uint64_t ms = 0;
	double got;

	cluster_up(2);
	cr_assert(chaos_netns_supported(net) & (1u << CHAOS_LINK_RATE), "tc with tbf is here");
	sink_up(0, 7003);
	sink_up(1, 7003);
	cr_assert_eq(chaos_netns_fault(net, 1, CHAOS_LINK_RATE, rate, &err), 0, "%s", err.msg);
	/* towards agent 1: the root end's qdisc */
	cr_assert_eq(xfer(chaos_netns_addr(net, 1), 7003, bytes, 60000, &ms), 0);
	got = mb_per_s(bytes, ms);
	fprintf(stderr, "netns: rate %.1f MB/s into a link capped at %.1f\n", got, rate / 1e6);
	cr_assert(got < rate / 1e6 * 1.5 && got > rate / 1e6 / 3, "%.2f MB/s", got);
	/* from agent 1 to agent 0: its own end's qdisc */
	cr_assert_eq(send_from(1, chaos_netns_addr(net, 0), 7003, bytes, 60000, &ms), 0);
	got = mb_per_s(bytes, ms);
	fprintf(stderr, "netns: rate %.1f MB/s out of a link capped at %.1f\n", got, rate / 1e6);
	cr_assert(got < rate / 1e6 * 1.5 && got > rate / 1e6 / 3, "%.2f MB/s", got);
	cr_assert_eq(chaos_netns_heal(net, 1, &err), 0, "%s", err.msg);
	cr_assert_eq(xfer(chaos_netns_addr(net, 1), 7003, 4 * bytes, 60000, &ms), 0);
	got = mb_per_s(4 * bytes, ms);
	cr_assert_gt(got, rate / 1e6 * 4, "healed link still slow: %.2f MB/s", got);
}

Test(netns, drop_blackholes_one_port)
{
	const char *a1;
	struct mig_error err = { 0 };

	cluster_up(2);
	if (access("/usr/sbin/iptables", X_OK) == 0 || access("/sbin/iptables", X_OK) == 0)
		cr_assert(chaos_netns_supported(net) & (1u << CHAOS_LINK_DROP),
			  "iptables is installed but DROP is not supported");
	if (!(chaos_netns_supported(net) & (1u << CHAOS_LINK_DROP))) {
		cr_assert_eq(chaos_netns_fault(net, 1, CHAOS_LINK_DROP, 7004, &err), -ENOTSUP);
		return;
	}
	a1 = chaos_netns_addr(net, 1);
	sink_up(1, 7004);
	sink_up(1, 7005);
	cr_assert_eq(chaos_netns_fault(net, 1, CHAOS_LINK_DROP, 7004, &err), 0, "%s", err.msg);
	/* silence on that port (no refusal), the other port still answers */
	cr_assert_eq(xfer(a1, 7004, 1, 1500, NULL), -ETIMEDOUT);
	cr_assert_eq(xfer(a1, 7005, MiB, 30000, NULL), 0);
	cr_assert_eq(chaos_netns_heal(net, 1, &err), 0, "%s", err.msg);
	cr_assert_eq(xfer(a1, 7004, MiB, 30000, NULL), 0);
}

Test(netns, reset_refuses_and_breaks_open_connections)
{
	const char *a1;
	struct mig_error err = { 0 };
	uint64_t sent = 0;
	int fd, r = 0;

	cluster_up(2);
	if (!(chaos_netns_supported(net) & (1u << CHAOS_LINK_RESET))) {
		cr_assert_eq(chaos_netns_fault(net, 1, CHAOS_LINK_RESET, 7006, &err), -ENOTSUP);
		return;
	}
	a1 = chaos_netns_addr(net, 1);
	sink_up(1, 7006);
	fd = tcp_connect(a1, 7006, mig_now_ms() + 10000);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	cr_assert_eq(chaos_netns_fault(net, 1, CHAOS_LINK_RESET, 7006, &err), 0, "%s", err.msg);
	cr_assert_eq(xfer(a1, 7006, 1, 10000, NULL), -ECONNREFUSED);
	/* the open connection: its next segment is answered with a reset */
	for (uint64_t end = mig_now_ms() + 20000; r == 0 && mig_now_ms() < end;) {
		r = tcp_send(fd, sent + 4096, &sent, mig_now_ms() + 200);
		if (r == -ETIMEDOUT)
			r = 0;
		usleep(10000);
	}
	cr_assert(r == -ECONNRESET || r == -EPIPE, "sending on: %s", strerror(-r));
	close(fd);
	cr_assert_eq(chaos_netns_heal(net, 1, &err), 0, "%s", err.msg);
	cr_assert_eq(xfer(a1, 7006, MiB, 30000, NULL), 0);
}

Test(netns, teardown_leaves_nothing)
{
	char ns[32], link[32];

	cluster_up(2);
	snprintf(ns, sizeof(ns), "mcc%d-", getpid());
	snprintf(link, sizeof(link), "mcc%d", getpid());
	cr_assert(cmd_has("ip netns list", ns));
	cr_assert(cmd_has("ip -o link show", link));
	kids[nkids++] = helper(1, "--sink", chaos_netns_addr(net, 1), 7007, NULL, NULL, -1);
	/* with the sink still running in namespace 1 */
	chaos_netns_teardown(net);
	chaos_netns_teardown(net);
	cr_assert_not(cmd_has("ip netns list", ns));
	cr_assert_not(cmd_has("ip -o link show", link));
	cr_assert_eq(chaos_netns_fault(net, 0, CHAOS_LINK_DOWN, 0, &(struct mig_error){ 0 }),
		     -EINVAL);
}

Test(netns, reap_stale_removes_only_dead_runners)
{
	char cmd[512], dead_ns[32], mine[32];
	pid_t dead = fork();

	cr_assert_geq(dead, 0);
	if (dead == 0)
		_exit(0);
	cr_assert_eq(waitpid(dead, NULL, 0), dead);
	/* the leftovers of a runner that died before its teardown */
	snprintf(dead_ns, sizeof(dead_ns), "mcc%d-", dead);
	snprintf(cmd, sizeof(cmd), "ip netns add mcc%d-0 && ip netns add mcc%d-1 && "
		 "ip link add mcc%dbr type bridge && "
		 "ip link add mcc%d-0h type veth peer name eth0 netns mcc%d-0", dead, dead, dead,
		 dead, dead);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	cluster_up(1);
	chaos_netns_reap_stale();
	snprintf(mine, sizeof(mine), "mcc%d-0", getpid());
	cr_assert(cmd_has("ip netns list", mine), "reaped a live runner's namespace");
	snprintf(mine, sizeof(mine), "mcc%dbr", getpid());
	cr_assert(cmd_has("ip -o link show", mine), "reaped a live runner's bridge");
	cr_assert_not(cmd_has("ip netns list", dead_ns));
	snprintf(dead_ns, sizeof(dead_ns), "mcc%d", dead);
	cr_assert_not(cmd_has("ip -o link show", dead_ns));
}

Test(netns, throughput_veth_and_loopback)
{
	const uint64_t bytes = 256 * MiB;
	uint64_t lo_ms = 0, root_ms = 0, ns_ms = 0;
	pid_t lo_sink = fork();

	cr_assert_geq(lo_sink, 0);
	if (lo_sink == 0) {
		execl(self_exe(), self_exe(), "--sink", "127.0.0.1", "7008", (char *)NULL);
		_exit(127);
	}
	kids[nkids++] = lo_sink;
	cluster_up(2);
	sink_up(1, 7008);
	for (int r = -1, tries = 0; r; tries++) {
		r = xfer("127.0.0.1", 7008, bytes, 120000, &lo_ms);
		cr_assert(r == 0 || (r == -ECONNREFUSED && tries < 500), "%s", strerror(-r));
		if (r)
			usleep(20000);
	}
	cr_assert_eq(xfer(chaos_netns_addr(net, 1), 7008, bytes, 120000, &root_ms), 0);
	cr_assert_eq(send_from(0, chaos_netns_addr(net, 1), 7008, bytes, 120000, &ns_ms), 0);
	fprintf(stderr, "netns: TCP throughput, %llu MiB: loopback %.0f MB/s, root->agent over "
		"the bridge %.0f MB/s, agent->agent %.0f MB/s\n", (unsigned long long)bytes / MiB,
		mb_per_s(bytes, lo_ms), mb_per_s(bytes, root_ms), mb_per_s(bytes, ns_ms));
}
