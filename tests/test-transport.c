// SPDX-License-Identifier: MIT
/*
 * Transport: endpoint parsing and sockets, the io_uring engine (parallel
 * streams on one ring, short transfers, EOF, timeouts), framed connections
 * (round trips and every kind of bad frame), HMAC, key files and the
 * compression option.  No KVM needed; sockets are loopback or socketpairs.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <migrate/buf.h>
#include <migrate/error.h>
#include <migrate/transport.h>
#include <migrate/wire.h>

#define MiB (1U << 20)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fill_pattern(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

/* A connected loopback TCP pair, made through xport_listen (ephemeral
 * port), xport_local_addr, xport_endpoint_parse and xport_connect. */
static void tcp_pair(int *a, int *b)
{
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "127.0.0.1", .port = 0 };
	struct xport_endpoint dst;
	struct mig_error err = { 0 };
	char addr[64], url[80];
	int l;

	l = xport_listen(&ep, &err);
	cr_assert_geq(l, 0, "listen: %s", err.msg);
	cr_assert_eq(xport_local_addr(l, addr, sizeof(addr)), 0);
	snprintf(url, sizeof(url), "tcp://%s", addr);
	cr_assert_eq(xport_endpoint_parse(url, &dst, &err), 0, "%s: %s", url, err.msg);
	*a = xport_connect(&dst, 2000, &err);
	cr_assert_geq(*a, 0, "connect: %s", err.msg);
	*b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(*b, 0, "accept: %s", strerror(errno));
	xport_tune_socket(*b);
	close(l);
}

/* ---- endpoints ---- */

struct ep_good {
	const char *s;
	enum xport_ep_kind kind;
	const char *host;
	unsigned port;
	const char *path;
	const char *user;
	const char *formatted;
};

static const struct ep_good ep_good[] = {
	{ "local", XPORT_EP_LOCAL, "", 0, "", "", "local" },
	{ "tcp://host-1.example:4444", XPORT_EP_TCP, "host-1.example", 4444, "", "",
	  "tcp://host-1.example:4444" },
	{ "tcp://10.0.0.1:1", XPORT_EP_TCP, "10.0.0.1", 1, "", "", "tcp://10.0.0.1:1" },
	{ "tcp://h:65535", XPORT_EP_TCP, "h", 65535, "", "", "tcp://h:65535" },
	{ "db7:4444", XPORT_EP_TCP, "db7", 4444, "", "", "tcp://db7:4444" },
	{ "127.0.0.1:00080", XPORT_EP_TCP, "127.0.0.1", 80, "", "", "tcp://127.0.0.1:80" },
	{ "tcp://[::1]:4444", XPORT_EP_TCP, "::1", 4444, "", "", "tcp://[::1]:4444" },
	{ "[fe80::1%eth0]:9", XPORT_EP_TCP, "fe80::1%eth0", 9, "", "", "tcp://[fe80::1%eth0]:9" },
	{ "tcp://[::ffff:10.1.2.3]:7", XPORT_EP_TCP, "::ffff:10.1.2.3", 7, "", "",
	  "tcp://[::ffff:10.1.2.3]:7" },
	{ "unix:///run/migratectl/agent.sock", XPORT_EP_UNIX, "", 0,
	  "/run/migratectl/agent.sock", "", "unix:///run/migratectl/agent.sock" },
	{ "unix:///a b", XPORT_EP_UNIX, "", 0, "/a b", "", "unix:///a b" },
	/* no /PATH: the agent a host runs as a service (XPORT_SSH_AGENT_SOCK) */
	{ "ssh://host", XPORT_EP_SSH, "host", 22, "/run/migratectl/agent.sock", "", "ssh://host" },
	{ "ssh://root@host", XPORT_EP_SSH, "host", 22, "/run/migratectl/agent.sock", "root",
	  "ssh://root@host" },
	{ "ssh://ops.lab@host:2222", XPORT_EP_SSH, "host", 2222, "/run/migratectl/agent.sock",
	  "ops.lab", "ssh://ops.lab@host:2222" },
	{ "ssh://u@[2001:db8::5]:22", XPORT_EP_SSH, "2001:db8::5", 22,
	  "/run/migratectl/agent.sock", "u", "ssh://u@[2001:db8::5]" },
	{ "ssh://[::1]", XPORT_EP_SSH, "::1", 22, "/run/migratectl/agent.sock", "", "ssh://[::1]" },
	{ "ssh://root@host:2222/tmp/a b.sock", XPORT_EP_SSH, "host", 2222, "/tmp/a b.sock", "root",
	  "ssh://root@host:2222/tmp/a b.sock" },
	{ "ssh://[::1]/srv/agent.sock", XPORT_EP_SSH, "::1", 22, "/srv/agent.sock", "",
	  "ssh://[::1]/srv/agent.sock" },
	{ "ssh://h/run/migratectl/agent.sock", XPORT_EP_SSH, "h", 22, "/run/migratectl/agent.sock",
	  "", "ssh://h" },
};

Test(endpoint, parses_every_form)
{
	for (size_t i = 0; i < sizeof(ep_good) / sizeof(ep_good[0]); i++) {
		const struct ep_good *g = &ep_good[i];
		struct xport_endpoint ep, again;
		struct mig_error err = { 0 };
		char buf[400];

		memset(&ep, 0xab, sizeof(ep));
		cr_assert_eq(xport_endpoint_parse(g->s, &ep, &err), 0, "\"%s\": %s", g->s,
			     err.msg);
		cr_assert_eq(ep.kind, g->kind, "\"%s\" kind %d", g->s, ep.kind);
		cr_assert_str_eq(ep.host, g->host, "\"%s\"", g->s);
		cr_assert_eq(ep.port, g->port, "\"%s\" port %u", g->s, ep.port);
		cr_assert_str_eq(ep.path, g->path, "\"%s\"", g->s);
		cr_assert_str_eq(ep.user, g->user, "\"%s\"", g->s);

		xport_endpoint_format(&ep, buf, sizeof(buf));
		cr_assert_str_eq(buf, g->formatted);
		cr_assert_eq(xport_endpoint_parse(buf, &again, &err), 0, "%s: %s", buf, err.msg);
		cr_assert_eq(memcmp(&ep, &again, sizeof(ep)), 0, "\"%s\" does not round-trip",
			     buf);
	}
}

struct ep_bad {
	const char *s;
	int code;
	const char *msg;   /* a substring the message must contain */
};

static char long_unix[160], long_host[300], long_ssh[160];

static const struct ep_bad ep_bad[] = {
	{ "", -EINVAL, "expected local, tcp://HOST:PORT" },
	{ "tcp://host", -EINVAL, "missing port" },
	{ "tcp://host:", -EINVAL, "missing port" },
	{ "tcp://host:0", -ERANGE, "out of range" },
	{ "tcp://host:65536", -ERANGE, "1 to 65535" },
	{ "tcp://host:99999999999999999999", -ERANGE, "out of range" },
	{ "tcp://host:-1", -EINVAL, "not a number" },
	{ "tcp://host:80x", -EINVAL, "not a number" },
	{ "tcp://host: 80", -EINVAL, "not a number" },
	{ "tcp://:80", -EINVAL, "empty host" },
	{ ":80", -EINVAL, "empty host" },
	{ "tcp://ho st:80", -EINVAL, "not a valid host" },
	{ "tcp://host/x:80", -EINVAL, "not a valid host" },
	{ "tcp://::1:80", -EINVAL, "brackets" },
	{ "::1:80", -EINVAL, "brackets" },
	{ "tcp://[::1:80", -EINVAL, "missing ']'" },
	{ "tcp://[::1]80", -EINVAL, "expected :PORT" },
	{ "tcp://[]:80", -EINVAL, "empty host" },
	{ "tcp://[zz]:80", -EINVAL, "not an IPv6" },
	{ "tcp://[::1]", -EINVAL, "missing port" },
	{ "unix://", -EINVAL, "missing path" },
	{ "unix://run/agent.sock", -EINVAL, "absolute" },
	{ "unix://./agent.sock", -EINVAL, "unix:///ABSOLUTE/PATH" },
	{ long_unix, -ENAMETOOLONG, "at most 107" },
	{ long_host, -ENAMETOOLONG, "at most 255" },
	{ "ssh://@host", -EINVAL, "empty user" },
	{ "ssh://", -EINVAL, "empty host" },
	{ "ssh://root@", -EINVAL, "empty host" },
	{ "ssh://host:0", -ERANGE, "out of range" },
	{ "ssh://host:70000", -ERANGE, "out of range" },
	{ "ssh://host/", -EINVAL, "empty socket path" },
	{ "ssh://host:22/", -EINVAL, "empty socket path" },
	{ "ssh://host:/a.sock", -EINVAL, "missing port" },
	{ long_ssh, -ENAMETOOLONG, "at most 107" },
	{ "http://host:80", -EINVAL, "unknown endpoint scheme \"http\"" },
	{ "TCP://host:80", -EINVAL, "unknown endpoint scheme" },
	{ "host", -EINVAL, "needs a port" },
	{ "localhost", -EINVAL, "needs a port" },
	{ "local:", -EINVAL, "missing port" },
};

Test(endpoint, rejects_bad_forms_and_leaves_the_result_alone)
{
	memcpy(long_unix, "unix:///", 8);
	memset(long_ssh, 'p', sizeof(long_ssh) - 1);
	memcpy(long_ssh, "ssh://h/", 8);
	memset(long_unix + 8, 'p', sizeof(long_unix) - 9);
	memcpy(long_host, "tcp://", 6);
	memset(long_host + 6, 'h', 260);
	memcpy(long_host + 266, ":80", 4);

	for (size_t i = 0; i < sizeof(ep_bad) / sizeof(ep_bad[0]); i++) {
		const struct ep_bad *b = &ep_bad[i];
		struct xport_endpoint ep, poison;
		struct mig_error err = { 0 };
		int r;

		memset(&ep, 0xab, sizeof(ep));
		memcpy(&poison, &ep, sizeof(ep));
		r = xport_endpoint_parse(b->s, &ep, &err);
		cr_assert_eq(r, b->code, "\"%.40s\": got %d (%s), want %d", b->s, r, err.msg,
			     b->code);
		cr_assert_eq(err.code, b->code);
		cr_assert_not_null(strstr(err.msg, b->msg), "\"%.40s\": message \"%s\" lacks "
				   "\"%s\"", b->s, err.msg, b->msg);
		cr_assert_eq(memcmp(&ep, &poison, sizeof(ep)), 0, "\"%.40s\" wrote the result "
			     "although it failed", b->s);
	}
}

Test(endpoint, connect_refused_names_the_endpoint)
{
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "127.0.0.1", .port = 0 };
	struct mig_error err = { 0 };
	char addr[64], url[80], want[200];
	int l, fd;

	/* An ephemeral port that nobody listens on any more. */
	l = xport_listen(&ep, &err);
	cr_assert_geq(l, 0, "%s", err.msg);
	cr_assert_eq(xport_local_addr(l, addr, sizeof(addr)), 0);
	close(l);
	snprintf(url, sizeof(url), "tcp://%s", addr);
	cr_assert_eq(xport_endpoint_parse(url, &ep, &err), 0);
	fd = xport_connect(&ep, 2000, &err);
	cr_assert_eq(fd, -ECONNREFUSED, "connect gave %d: %s", fd, err.msg);
	snprintf(want, sizeof(want), "nothing listens on %s (is the agent running?)", url);
	cr_assert_str_eq(err.msg, want);
}

Test(endpoint, connect_and_listen_refuse_local_and_ssh)
{
	struct xport_endpoint ep;
	struct mig_error err = { 0 };

	cr_assert_eq(xport_endpoint_parse("ssh://root@host", &ep, &err), 0);
	cr_assert_eq(xport_connect(&ep, 100, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "ssh://root@host"), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(xport_endpoint_parse("local", &ep, &err), 0);
	cr_assert_eq(xport_listen(&ep, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "local"), "%s", err.msg);
}

Test(endpoint, listen_on_a_busy_port)
{
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "127.0.0.1", .port = 0 };
	struct mig_error err = { 0 };
	char addr[64], url[80];
	int l, l2;

	l = xport_listen(&ep, &err);
	cr_assert_geq(l, 0, "%s", err.msg);
	cr_assert_eq(xport_local_addr(l, addr, sizeof(addr)), 0);
	snprintf(url, sizeof(url), "tcp://%s", addr);
	cr_assert_eq(xport_endpoint_parse(url, &ep, &err), 0);
	l2 = xport_listen(&ep, &err);
	cr_assert_eq(l2, -EADDRINUSE, "second listen gave %d", l2);
	cr_assert_not_null(strstr(err.msg, "in use"), "%s", err.msg);
	close(l);
}

Test(endpoint, local_addr_formats_v4_and_v6)
{
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "::1", .port = 0 };
	struct mig_error err = { 0 };
	char addr[64], tiny[4];
	int l;

	l = xport_listen(&ep, &err);
	if (l < 0)
		cr_skip_test("no IPv6 loopback here: %s", err.msg);
	cr_assert_eq(xport_local_addr(l, addr, sizeof(addr)), 0);
	cr_assert_eq(strncmp(addr, "[::1]:", 6), 0, "%s", addr);
	cr_assert_eq(xport_local_addr(l, tiny, sizeof(tiny)), -ENOSPC);
	close(l);
}

static struct sockaddr_storage inet_addr_of(const char *text)
{
	struct sockaddr_storage ss = { 0 };

	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		ss.ss_family = AF_UNIX;
	return ss;
}

/* --checksum auto keys on this: per-page sums stay on unless the
 * connection provably never leaves the host. */
Test(endpoint, same_host_only_for_loopback_unix_and_our_own_address)
{
	static const struct { const char *local, *peer; bool same; } t[] = {
		{ "127.0.0.1", "127.0.0.1", true },
		{ "127.0.0.1", "127.3.2.1", true },
		{ "::1", "::1", true },
		{ "::ffff:127.0.0.1", "::ffff:127.0.0.1", true },
		{ "10.0.0.5", "10.0.0.5", true },
		{ "fd00::5", "fd00::5", true },
		{ "unix", "unix", true },
		{ "10.0.0.5", "10.0.0.6", false },
		{ "fd00::5", "fd00::6", false },
		{ "::ffff:10.0.0.5", "::ffff:10.0.0.6", false },
		{ "10.0.0.5", "::ffff:10.0.0.5", false },
		{ "192.168.1.1", "128.0.0.1", false },
	};
	int a, b;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct sockaddr_storage l = inet_addr_of(t[i].local), p = inet_addr_of(t[i].peer);

		cr_expect_eq(xport_addrs_same_host(&l, &p), t[i].same, "%s -> %s: expected %s",
			     t[i].local, t[i].peer, t[i].same ? "same host" : "another host");
	}
	tcp_pair(&a, &b);
	cr_assert(xport_same_host(a));
	cr_assert_not(xport_same_host(-1));
	close(a);
	close(b);
}

static void unix_ep(struct xport_endpoint *ep, char *dir, const char *name)
{
	memset(ep, 0, sizeof(*ep));
	ep->kind = XPORT_EP_UNIX;
	snprintf(ep->path, sizeof(ep->path), "%s/%s", dir, name);
}

Test(endpoint, unix_listen_replaces_only_stale_sockets)
{
	char dir[] = "/tmp/mig-unix-XXXXXX";
	struct xport_endpoint ep;
	struct mig_error err = { 0 };
	struct stat st;
	int l, l2, c, fd;

	cr_assert_not_null(mkdtemp(dir));
	unix_ep(&ep, dir, "agent.sock");

	/* Nothing there yet: connect says so. */
	c = xport_connect(&ep, 500, &err);
	cr_assert_eq(c, -ENOENT, "%d %s", c, err.msg);
	cr_assert_not_null(strstr(err.msg, "is the agent running?"), "%s", err.msg);
	mig_error_clear(&err);

	l = xport_listen(&ep, &err);
	cr_assert_geq(l, 0, "%s", err.msg);
	/* A live listener is never taken over. */
	l2 = xport_listen(&ep, &err);
	cr_assert_eq(l2, -EADDRINUSE, "%d %s", l2, err.msg);
	cr_assert_not_null(strstr(err.msg, "already listens"), "%s", err.msg);
	mig_error_clear(&err);
	c = xport_connect(&ep, 500, &err);
	cr_assert_geq(c, 0, "%s", err.msg);
	close(c);

	/* The listener died and left its socket file: that one is stale. */
	close(l);
	cr_assert_eq(stat(ep.path, &st), 0);
	c = xport_connect(&ep, 500, &err);
	cr_assert_eq(c, -ECONNREFUSED, "%d %s", c, err.msg);
	mig_error_clear(&err);
	l = xport_listen(&ep, &err);
	cr_assert_geq(l, 0, "stale socket not replaced: %s", err.msg);
	close(l);
	unlink(ep.path);

	/* A regular file at the path is somebody's data: leave it alone. */
	fd = open(ep.path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "keep", 4), 4);
	close(fd);
	l = xport_listen(&ep, &err);
	cr_assert_eq(l, -EEXIST, "%d %s", l, err.msg);
	cr_assert_not_null(strstr(err.msg, "not a socket"), "%s", err.msg);
	cr_assert_eq(stat(ep.path, &st), 0);
	cr_assert_eq(st.st_size, 4);
	unlink(ep.path);
	rmdir(dir);
}

Test(endpoint, tune_socket_sets_nodelay_and_cloexec)
{
	int a, b, v = 0, fl;
	socklen_t len = sizeof(v);

	tcp_pair(&a, &b);
	fl = fcntl(a, F_GETFD);
	cr_assert(fl & FD_CLOEXEC);
	cr_assert_eq(getsockopt(a, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
	cr_assert_neq(v, 0, "TCP_NODELAY is off");
	/* Connected sockets are blocking again after the timed connect. */
	cr_assert_eq(fcntl(a, F_GETFL) & O_NONBLOCK, 0);
	close(a);
	close(b);
}

/* ---- io_uring engine ---- */

#define STREAMS 4
#define STREAM_BYTES (16U * MiB)
#define CHUNK (1U * MiB)

struct stream {
	int tx, rx;
	size_t sent, rcvd;
	struct xport_op sop, rop;
};

/* One chunk as three iovecs with odd boundaries, so the kernel's and our
 * iovec bookkeeping both cross them. */
static void chunk_op(struct xport_op *op, int fd, bool send, uint8_t *base)
{
	memset(op, 0, sizeof(*op));
	op->fd = fd;
	op->is_send = send;
	op->iov[0] = (struct iovec){ base, 1 };
	op->iov[1] = (struct iovec){ base + 1, 4093 };
	op->iov[2] = (struct iovec){ base + 4094, CHUNK - 4094 };
	op->iovcnt = 3;
}

/*
 * STREAMS loopback TCP streams, each moving stream_bytes in CHUNK ops, all
 * driven from one ring: every stream keeps one send and one receive in
 * flight, so 2 * STREAMS ops are outstanding at once.
 */
static void run_streams(unsigned entries, size_t stream_bytes)
{
	const size_t total = (size_t)STREAMS * stream_bytes;
	uint8_t *src = malloc(total), *dst = calloc(1, total);
	struct stream s[STREAMS];
	struct xport_ring ring;
	struct mig_error err = { 0 };
	unsigned max_inflight = 0;
	size_t finished = 0;
	int64_t t0;

	cr_assert(src && dst);
	fill_pattern(src, total, 42);
	cr_assert_eq(xport_ring_init(&ring, entries, &err), 0, "%s", err.msg);
	for (int i = 0; i < STREAMS; i++) {
		uint8_t *sb = src + (size_t)i * stream_bytes, *db = dst + (size_t)i * stream_bytes;

		tcp_pair(&s[i].tx, &s[i].rx);
		s[i].sent = s[i].rcvd = 0;
		chunk_op(&s[i].rop, s[i].rx, false, db);
		s[i].rop.user = &s[i];
		cr_assert_eq(xport_ring_submit(&ring, &s[i].rop, &err), 0, "%s", err.msg);
		chunk_op(&s[i].sop, s[i].tx, true, sb);
		s[i].sop.user = &s[i];
		cr_assert_eq(xport_ring_submit(&ring, &s[i].sop, &err), 0, "%s", err.msg);
	}
	t0 = now_ms();
	while (finished < 2 * STREAMS) {
		struct xport_op *op = NULL;
		struct stream *st;
		int r;

		if (ring.inflight > max_inflight)
			max_inflight = ring.inflight;
		r = xport_ring_wait(&ring, 10000, &op, &err);
		cr_assert_not_null(op, "wait gave %d (%s) and no op", r, err.msg);
		cr_assert_eq(r, 0, "op on fd %d failed: %s", op->fd, err.msg);
		cr_assert_eq(op->res, 0);
		cr_assert_eq(op->done, CHUNK);
		cr_assert_eq(op->total, CHUNK);
		st = op->user;
		if (op == &st->sop) {
			st->sent += CHUNK;
			if (st->sent == stream_bytes) {
				finished++;
				continue;
			}
			chunk_op(op, st->tx, true, src + (size_t)(st - s) * stream_bytes + st->sent);
		} else {
			cr_assert_eq(op, &st->rop);
			st->rcvd += CHUNK;
			if (st->rcvd == stream_bytes) {
				finished++;
				continue;
			}
			chunk_op(op, st->rx, false, dst + (size_t)(st - s) * stream_bytes + st->rcvd);
		}
		op->user = st;
		cr_assert_eq(xport_ring_submit(&ring, op, &err), 0, "%s", err.msg);
	}
	cr_assert_eq(ring.inflight, 0);
	/* All ops (a send and a receive per stream) were in flight at once. */
	cr_assert_eq(max_inflight, 2 * STREAMS);
	cr_assert_eq(memcmp(src, dst, total), 0, "received bytes differ");
	cr_log_info("%zu MiB over %d loopback streams on one ring of %u entries in %lld ms",
		    total / MiB, STREAMS, entries, (long long)(now_ms() - t0));
	xport_ring_exit(&ring);
	for (int i = 0; i < STREAMS; i++) {
		close(s[i].tx);
		close(s[i].rx);
	}
	free(src);
	free(dst);
}

Test(uring, four_streams_64MiB_on_one_ring)
{
	run_streams(16, STREAM_BYTES);
}

/* More ops in flight than the ring has entries: the SQ only holds ops until
 * they are submitted, so this must work too. */
Test(uring, more_ops_in_flight_than_ring_entries)
{
	run_streams(2, 4 * CHUNK);
}

/* 8 iovecs of odd sizes, 76 bytes in all. */
static const size_t odd_sizes[8] = { 1, 3, 5, 7, 11, 13, 17, 19 };

static size_t odd_op(struct xport_op *op, int fd, bool send, uint8_t *base, size_t scale)
{
	size_t off = 0;

	memset(op, 0, sizeof(*op));
	op->fd = fd;
	op->is_send = send;
	op->iovcnt = 8;
	for (int i = 0; i < 8; i++) {
		op->iov[i] = (struct iovec){ base + off, odd_sizes[i] * scale };
		off += odd_sizes[i] * scale;
	}
	return off;
}

struct trickle {
	int fd;
	const uint8_t *data;
	uint8_t *into;
	size_t n, step;
	int err;
};

/* Writes one byte at a time, pausing in between, so the receive sees the
 * data arrive across every iovec boundary. */
static void *trickle_writer(void *arg)
{
	struct trickle *t = arg;

	for (size_t i = 0; i < t->n; i++) {
		if (write(t->fd, t->data + i, 1) != 1) {
			t->err = errno;
			break;
		}
		usleep(300);
	}
	return NULL;
}

/* Reads in small pieces with pauses, so a send finds the buffers full. */
static void *trickle_reader(void *arg)
{
	struct trickle *t = arg;
	size_t got = 0;

	while (got < t->n) {
		size_t want = t->n - got < t->step ? t->n - got : t->step;
		ssize_t r = read(t->fd, t->into + got, want);

		if (r <= 0) {
			t->err = r < 0 ? errno : EPIPE;
			break;
		}
		got += (size_t)r;
		if (got % (64 * t->step) < t->step)
			usleep(1000);
	}
	return NULL;
}

Test(uring, receive_trickled_one_byte_at_a_time_across_8_odd_iovecs)
{
	uint8_t data[76], buf[76];
	struct trickle t = { .data = data, .n = sizeof(data) };
	struct xport_ring ring;
	struct xport_op op, *done = NULL;
	struct mig_error err = { 0 };
	pthread_t th;
	int a, b, r;

	fill_pattern(data, sizeof(data), 7);
	memset(buf, 0, sizeof(buf));
	tcp_pair(&a, &b);
	t.fd = a;
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	cr_assert_eq(odd_op(&op, b, false, buf, 1), sizeof(buf));
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	cr_assert_eq(pthread_create(&th, NULL, trickle_writer, &t), 0);
	r = xport_ring_wait(&ring, 10000, &done, &err);
	pthread_join(th, NULL);
	cr_assert_eq(t.err, 0);
	cr_assert_eq(done, &op);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert_eq(op.done, sizeof(buf));
	cr_assert_eq(memcmp(buf, data, sizeof(buf)), 0);
	xport_ring_exit(&ring);
	close(a);
	close(b);
}

Test(uring, send_into_small_buffers_across_8_odd_iovecs)
{
	const size_t scale = 4099;            /* 76 * 4099 = about 300 KiB */
	uint8_t *data = malloc(76 * scale), *got = calloc(1, 76 * scale);
	struct trickle t = { .into = got, .n = 76 * scale, .step = 997 };
	struct xport_ring ring;
	struct xport_op op, *done = NULL;
	struct mig_error err = { 0 };
	int sv[2], small = 4096, r;
	pthread_t th;

	cr_assert(data && got);
	fill_pattern(data, 76 * scale, 9);
	/* A unix pair with tiny buffers: the send cannot complete at once. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	t.fd = sv[1];
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	cr_assert_eq(odd_op(&op, sv[0], true, data, scale), 76 * scale);
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	cr_assert_eq(pthread_create(&th, NULL, trickle_reader, &t), 0);
	r = xport_ring_wait(&ring, 20000, &done, &err);
	pthread_join(th, NULL);
	cr_assert_eq(done, &op, "wait gave %d: %s", r, err.msg);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert_eq(t.err, 0);
	cr_assert_eq(op.done, 76 * scale);
	cr_assert_eq(memcmp(got, data, 76 * scale), 0);
	xport_ring_exit(&ring);
	close(sv[0]);
	close(sv[1]);
	free(data);
	free(got);
}

/*
 * On stream sockets the kernel (5.18+) finishes MSG_WAITALL transfers by
 * itself, so the engine's own resubmission only runs after signals, errors,
 * on older kernels, or for `whole` receives (tested on their own below).
 * A datagram socket completes every receive short, one
 * datagram at a time: the deterministic way to drive the engine's iovec
 * advance through odd boundaries and check where every byte lands.
 */
Test(uring, engine_resubmits_short_receives_across_odd_iovecs)
{
	/* Datagram sizes chosen to end mid-iovec, on a boundary (1+3+5 = 9),
	 * and to span several iovecs at once. */
	static const size_t dgrams[] = { 2, 7, 1, 30, 35, 1 };
	uint8_t data[76], buf[77];
	struct xport_ring ring;
	struct xport_op op, *done = NULL;
	struct mig_error err = { 0 };
	size_t off = 0;
	int sv[2], r;

	fill_pattern(data, sizeof(data), 5);
	memset(buf, 0xee, sizeof(buf));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	odd_op(&op, sv[1], false, buf, 1);
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < sizeof(dgrams) / sizeof(dgrams[0]); i++) {
		cr_assert_eq(send(sv[0], data + off, dgrams[i], 0), (ssize_t)dgrams[i]);
		off += dgrams[i];
	}
	cr_assert_eq(off, sizeof(data));
	r = xport_ring_wait(&ring, 5000, &done, &err);
	cr_assert_eq(done, &op, "wait gave %d: %s", r, err.msg);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert_eq(op.done, sizeof(data));
	cr_assert_eq(memcmp(buf, data, sizeof(data)), 0, "bytes landed in the wrong place");
	cr_assert_eq(buf[76], 0xee, "wrote past the end of the op");
	cr_assert_eq(ring.inflight, 0);
	xport_ring_exit(&ring);
	close(sv[0]);
	close(sv[1]);
}

Test(uring, peer_close_mid_receive_is_connreset_with_bytes_in_place)
{
	uint8_t data[37], buf[76];
	struct xport_ring ring;
	struct xport_op op, *done = NULL;
	struct mig_error err = { 0 };
	int a, b, r;

	fill_pattern(data, sizeof(data), 3);
	memset(buf, 0xee, sizeof(buf));
	tcp_pair(&a, &b);
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	odd_op(&op, b, false, buf, 1);
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	/* 37 bytes end inside the 6th iovec (1+3+5+7+11 = 27, +13 = 40). */
	cr_assert_eq(write(a, data, sizeof(data)), (ssize_t)sizeof(data));
	close(a);
	r = xport_ring_wait(&ring, 5000, &done, &err);
	cr_assert_eq(done, &op);
	cr_assert_eq(r, -ECONNRESET, "got %d: %s", r, err.msg);
	cr_assert_eq(op.res, -ECONNRESET);
	cr_assert_eq(op.done, sizeof(data));
	cr_assert_eq(memcmp(buf, data, sizeof(data)), 0, "bytes landed in the wrong place");
	cr_assert_eq(buf[sizeof(data)], 0xee, "wrote past the bytes received");
	cr_assert_not_null(strstr(err.msg, "peer closed the connection"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "after 37 of 76 bytes"), "%s", err.msg);
	cr_assert_eq(ring.inflight, 0);
	xport_ring_exit(&ring);
	close(b);
}

Test(uring, peer_close_before_any_byte)
{
	uint8_t buf[16];
	struct xport_ring ring;
	struct xport_op op = { 0 }, *done = NULL;
	struct mig_error err = { 0 };
	int a, b, r;

	tcp_pair(&a, &b);
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	op.fd = b;
	op.iov[0] = (struct iovec){ buf, sizeof(buf) };
	op.iovcnt = 1;
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	close(a);
	r = xport_ring_wait(&ring, 5000, &done, &err);
	cr_assert_eq(done, &op);
	cr_assert_eq(r, -ECONNRESET);
	cr_assert_eq(op.done, 0);
	xport_ring_exit(&ring);
	close(b);
}

Test(uring, send_to_a_closed_peer_fails_without_sigpipe)
{
	size_t n = 16 * MiB;
	uint8_t *buf = calloc(1, n);
	struct xport_ring ring;
	struct xport_op op = { 0 }, *done = NULL;
	struct mig_error err = { 0 };
	int a, b, r;

	tcp_pair(&a, &b);
	close(b);
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	op.fd = a;
	op.is_send = true;
	op.iov[0] = (struct iovec){ buf, n };
	op.iovcnt = 1;
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	/* Without MSG_NOSIGNAL this test dies of SIGPIPE here. */
	r = xport_ring_wait(&ring, 5000, &done, &err);
	cr_assert_eq(done, &op);
	cr_assert(r == -EPIPE || r == -ECONNRESET, "got %d: %s", r, err.msg);
	cr_assert_lt(op.done, n);
	cr_assert_not_null(strstr(err.msg, "the peer is gone"), "%s", err.msg);
	xport_ring_exit(&ring);
	close(a);
	free(buf);
}

Test(uring, timeout_leaves_the_op_in_flight)
{
	uint8_t buf[8] = { 0 };
	struct xport_ring ring;
	struct xport_op op = { 0 }, *done = (void *)1;
	struct mig_error err = { 0 };
	int a, b, r;
	int64_t t0, dt;

	tcp_pair(&a, &b);
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	op.fd = b;
	op.iov[0] = (struct iovec){ buf, sizeof(buf) };
	op.iovcnt = 1;
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);

	t0 = now_ms();
	r = xport_ring_wait(&ring, 100, &done, &err);
	dt = now_ms() - t0;
	cr_assert_eq(r, -ETIME);
	cr_assert_null(done);
	cr_assert_geq(dt, 90, "returned after %lld ms", (long long)dt);
	cr_assert_lt(dt, 2000, "returned after %lld ms", (long long)dt);
	/* A timeout is not an error to record: err stays free for a real one. */
	cr_assert_eq(err.code, 0, "%s", err.msg);
	cr_assert_eq(ring.inflight, 1);

	done = (void *)1;
	cr_assert_eq(xport_ring_wait(&ring, 0, &done, &err), -ETIME);
	cr_assert_null(done);

	/* The op is still there and completes when data arrives. */
	cr_assert_eq(write(a, "12345678", 8), 8);
	r = xport_ring_wait(&ring, 5000, &done, &err);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert_eq(done, &op);
	cr_assert_eq(memcmp(buf, "12345678", 8), 0);
	cr_assert_eq(ring.inflight, 0);

	/* Nothing in flight: no waiting forever. */
	r = xport_ring_wait(&ring, -1, &done, &err);
	cr_assert_eq(r, -ENOENT);
	cr_assert_null(done);
	xport_ring_exit(&ring);
	close(a);
	close(b);
}

static int rcvlowat(int fd)
{
	int v = -1;
	socklen_t len = sizeof(v);

	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &len), 0);
	return v;
}

/* Sends the rest of a buffer in 4 KiB pieces with pauses. */
static void *piecemeal_writer(void *arg)
{
	struct trickle *t = arg;

	for (size_t off = 0; off < t->n; off += t->step) {
		size_t want = t->n - off < t->step ? t->n - off : t->step;

		if (write(t->fd, t->data + off, want) != (ssize_t)want) {
			t->err = errno;
			break;
		}
		usleep(200);
	}
	return NULL;
}

/*
 * A `whole` receive whose first bytes are already queued: the kernel copies
 * those at once, and the rest must still arrive although fewer bytes than
 * the first low-water mark are left to come (a mark that stayed at the full
 * size would wait forever).  While it waits the mark is above 1; the next
 * plain receive puts it back to 1, or that one would wait for bytes that are
 * not coming.
 */
Test(uring, whole_receive_follows_what_is_left_and_then_steps_back)
{
	const size_t n = 256 << 10, first = 100 << 10;
	uint8_t *data = malloc(n), *buf = calloc(1, n), small[8];
	struct trickle t = { .data = data + first, .n = n - first, .step = 4096 };
	struct xport_ring ring;
	struct xport_op op = { 0 }, *done = NULL;
	struct mig_error err = { 0 };
	pthread_t th;
	int a, b, r;

	cr_assert(data && buf);
	fill_pattern(data, n, 11);
	tcp_pair(&a, &b);
	t.fd = a;
	cr_assert_eq(write(a, data, first), (ssize_t)first);
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	op.fd = b;
	op.whole = true;
	op.iov[0] = (struct iovec){ buf, n };
	op.iovcnt = 1;
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	r = xport_ring_wait(&ring, 200, &done, &err);
	cr_assert_eq(r, -ETIME, "the receive finished with %zu of %zu bytes sent", first, n);
	cr_assert_gt(rcvlowat(b), 1, "a whole receive left SO_RCVLOWAT at 1");
	cr_assert_leq((size_t)rcvlowat(b), n - first,
		      "SO_RCVLOWAT %d, but only %zu bytes are left to come", rcvlowat(b),
		      n - first);

	cr_assert_eq(pthread_create(&th, NULL, piecemeal_writer, &t), 0);
	r = xport_ring_wait(&ring, 10000, &done, &err);
	pthread_join(th, NULL);
	cr_assert_eq(t.err, 0);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert_eq(done, &op);
	cr_assert_eq(op.done, n);
	cr_assert_eq(memcmp(buf, data, n), 0);

	op.whole = false;
	op.iov[0] = (struct iovec){ small, sizeof(small) };
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	cr_assert_eq(rcvlowat(b), 1);
	cr_assert_eq(write(a, "12345678", 8), 8);
	r = xport_ring_wait(&ring, 5000, &done, &err);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert_eq(memcmp(small, "12345678", 8), 0);
	xport_ring_exit(&ring);
	close(a);
	close(b);
	free(data);
	free(buf);
}

Test(uring, zero_length_op_completes)
{
	struct xport_ring ring;
	struct xport_op op = { 0 }, *done = NULL;
	struct mig_error err = { 0 };
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(xport_ring_init(&ring, 2, &err), 0, "%s", err.msg);
	op.fd = sv[0];
	op.is_send = true;
	op.iov[0] = (struct iovec){ NULL, 0 };
	op.iovcnt = 1;
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	cr_assert_eq(xport_ring_wait(&ring, 5000, &done, &err), 0, "%s", err.msg);
	cr_assert_eq(done, &op);
	cr_assert_eq(op.total, 0);
	xport_ring_exit(&ring);
	close(sv[0]);
	close(sv[1]);
}

Test(uring, bad_ops_are_refused)
{
	struct xport_ring ring;
	struct xport_op op = { 0 };
	struct mig_error err = { 0 };

	cr_assert_eq(xport_ring_init(&ring, 2, &err), 0, "%s", err.msg);
	op.fd = 0;
	op.iovcnt = XPORT_OP_IOV + 1;
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), -EINVAL);
	mig_error_clear(&err);
	op.fd = -1;
	op.iovcnt = 1;
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), -EINVAL);
	cr_assert_eq(ring.inflight, 0);
	xport_ring_exit(&ring);
	cr_assert_null(ring.ring);
}

Test(uring, exit_cancels_ops_in_flight)
{
	uint8_t buf[64];
	struct xport_ring ring;
	struct xport_op op = { 0 };
	struct mig_error err = { 0 };
	int a, b;

	memset(buf, 0, sizeof(buf));
	tcp_pair(&a, &b);
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	op.fd = b;
	op.iov[0] = (struct iovec){ buf, sizeof(buf) };
	op.iovcnt = 1;
	cr_assert_eq(xport_ring_submit(&ring, &op, &err), 0, "%s", err.msg);
	xport_ring_exit(&ring);
	/* After exit the kernel must not write into buf any more. */
	cr_assert_eq(write(a, "late data", 9), 9);
	usleep(20000);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0, "byte %zu written after ring exit", i);
	close(a);
	close(b);
}

/* ---- framed connections ---- */

static const size_t frame_sizes[] = { 0, 1, 4096, 1 * MiB };

struct echo {
	int fd;
	int status;
	char msg[600];
};

/* The peer: receives each frame and sends its payload back as a
 * DEVICE_DATA frame.  No criterion asserts off the main thread. */
static void *echo_peer(void *arg)
{
	struct echo *e = arg;
	struct xport_conn c;
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };

	if (xport_conn_init(&c, e->fd, &err) < 0)
		goto fail;
	for (size_t i = 0; i < sizeof(frame_sizes) / sizeof(frame_sizes[0]); i++) {
		struct mig_frame_hdr h;

		if (xport_conn_recv(&c, &h, &b, 10000, &err) < 0)
			goto fail_close;
		if (h.type != MIG_FRAME_DEVICE_DATA || h.length != frame_sizes[i] ||
		    b.len != frame_sizes[i] || h.seq != i + 1) {
			snprintf(e->msg, sizeof(e->msg), "frame %zu: type %u length %u seq %llu",
				 i, h.type, h.length, (unsigned long long)h.seq);
			e->status = -1;
			xport_conn_close(&c);
			mig_buf_free(&b);
			return NULL;
		}
		if (xport_conn_send(&c, MIG_FRAME_DEVICE_DATA, 0, b.data, b.len, &err) < 0)
			goto fail_close;
	}
	xport_conn_close(&c);
	mig_buf_free(&b);
	return NULL;
fail_close:
	xport_conn_close(&c);
fail:
	snprintf(e->msg, sizeof(e->msg), "peer: %s", err.msg);
	e->status = err.code ? err.code : -1;
	mig_buf_free(&b);
	return NULL;
}

Test(conn, round_trip_0_1_4096_1MiB_both_ways)
{
	uint8_t *data = malloc(MiB);
	struct echo e = { 0 };
	struct xport_conn c;
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	pthread_t th;
	int a, r;

	cr_assert_not_null(data);
	fill_pattern(data, MiB, 11);
	tcp_pair(&a, &e.fd);
	cr_assert_eq(xport_conn_init(&c, a, &err), 0, "%s", err.msg);
	cr_assert_eq(pthread_create(&th, NULL, echo_peer, &e), 0);
	for (size_t i = 0; i < sizeof(frame_sizes) / sizeof(frame_sizes[0]); i++) {
		struct mig_frame_hdr h;

		r = xport_conn_send(&c, MIG_FRAME_DEVICE_DATA, 0, data, frame_sizes[i], &err);
		cr_assert_eq(r, 0, "send %zu: %s", frame_sizes[i], err.msg);
		r = xport_conn_recv(&c, &h, &b, 10000, &err);
		cr_assert_eq(r, 0, "recv %zu: %s", frame_sizes[i], err.msg);
		/* The header comes back in host order. */
		cr_assert_eq(h.magic, MIG_WIRE_MAGIC);
		cr_assert_eq(h.version, MIG_WIRE_VERSION);
		cr_assert_eq(h.type, MIG_FRAME_DEVICE_DATA);
		cr_assert_eq(h.flags, 0);
		cr_assert_eq(h.length, frame_sizes[i]);
		cr_assert_eq(h.seq, i + 1);
		cr_assert_eq(b.len, frame_sizes[i]);
		if (frame_sizes[i])
			cr_assert_eq(memcmp(b.data, data, frame_sizes[i]), 0, "size %zu",
				     frame_sizes[i]);
	}
	pthread_join(th, NULL);
	cr_assert_eq(e.status, 0, "%s", e.msg);
	cr_assert_eq(c.tx_seq, 4);
	cr_assert_eq(c.rx_seq, 4);
	xport_conn_close(&c);
	cr_assert_eq(c.fd, -1);
	mig_buf_free(&b);
	free(data);
}

/* Writes a frame straight to the socket, after `mutate` had its way with
 * the sealed header or payload. */
static void raw_frame(int fd, uint16_t type, uint64_t seq, const void *payload, size_t len,
		      void (*mutate)(struct mig_frame_hdr *h, uint8_t *p), bool with_payload)
{
	uint8_t buf[sizeof(struct mig_frame_hdr) + 256];
	struct iovec iov = { (void *)payload, len };
	struct mig_frame_hdr h;

	cr_assert_leq(len, 256);
	mig_frame_seal(&h, type, 0, seq, &iov, len ? 1 : 0);
	memcpy(buf + sizeof(h), payload, len);
	if (mutate)
		mutate(&h, buf + sizeof(h));
	memcpy(buf, &h, sizeof(h));
	if (!with_payload)
		len = 0;
	cr_assert_eq(write(fd, buf, sizeof(h) + len), (ssize_t)(sizeof(h) + len));
}

static void flip_checksum(struct mig_frame_hdr *h, uint8_t *p) { (void)p; h->checksum ^= 1; }
static void flip_payload(struct mig_frame_hdr *h, uint8_t *p) { (void)h; p[3] ^= 0x80; }
/* A version this build will never speak, so the message below stays true
 * when MIG_WIRE_VERSION moves. */
static void version_next(struct mig_frame_hdr *h, uint8_t *p)
{
	(void)p;
	h->version = htole16(0xfff0);
}
static void bad_magic(struct mig_frame_hdr *h, uint8_t *p) { (void)p; h->magic = htole32(0x20544547); }
static void huge_len(struct mig_frame_hdr *h, uint8_t *p) { (void)p; h->length = htole32(1U << 30); }
static void type_zero(struct mig_frame_hdr *h, uint8_t *p) { (void)p; h->type = 0; }

struct bad_frame {
	const char *what;
	void (*mutate)(struct mig_frame_hdr *h, uint8_t *p);
	bool with_payload;
	int code;
	const char *msg;
};

static const struct bad_frame bad_frames[] = {
	{ "corrupted checksum", flip_checksum, true, -EBADMSG, "checksum mismatch on REPLY frame seq 1" },
	{ "corrupted payload byte", flip_payload, true, -EBADMSG, "checksum" },
	{ "wrong version", version_next, true, -EPROTO, "peer speaks protocol version 65520" },
	{ "bad magic", bad_magic, true, -EPROTO, "bad magic 0x20544547" },
	{ "length of 1 GiB", huge_len, false, -EMSGSIZE, "length 1073741824" },
	{ "type 0", type_zero, true, -EBADMSG, "type 0" },
};

Test(conn, bad_frames_are_rejected_and_never_returned)
{
	static const char body[] = "this reply must not reach the caller";

	for (size_t i = 0; i < sizeof(bad_frames) / sizeof(bad_frames[0]); i++) {
		const struct bad_frame *f = &bad_frames[i];
		struct xport_conn c;
		struct mig_error err = { 0 };
		struct mig_buf b = { 0 };
		struct mig_frame_hdr h;
		int a, peer, r;

		tcp_pair(&a, &peer);
		cr_assert_eq(xport_conn_init(&c, a, &err), 0, "%s", err.msg);
		raw_frame(peer, MIG_FRAME_REPLY, 1, body, sizeof(body), f->mutate,
			  f->with_payload);
		memset(&h, 0x5a, sizeof(h));
		r = xport_conn_recv(&c, &h, &b, 5000, &err);
		cr_assert_eq(r, f->code, "%s: got %d (%s), want %d", f->what, r, err.msg, f->code);
		cr_assert_not_null(strstr(err.msg, f->msg), "%s: message \"%s\" lacks \"%s\"",
				   f->what, err.msg, f->msg);
		cr_assert_eq(b.len, 0, "%s: payload returned", f->what);
		cr_assert_eq(c.rx_seq, 0, "%s: frame counted", f->what);
		if (f->code != -EBADMSG || f->mutate == type_zero)
			/* Rejected on the header: nothing was even allocated. */
			cr_assert_null(b.data, "%s: buffer allocated before the header "
				       "was checked", f->what);
		xport_conn_close(&c);
		close(peer);
		mig_buf_free(&b);
	}
}

Test(conn, replayed_frame_is_rejected)
{
	static const char body[] = "ping";
	struct xport_conn c;
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	struct mig_frame_hdr h;
	int a, peer, r;

	tcp_pair(&a, &peer);
	cr_assert_eq(xport_conn_init(&c, a, &err), 0, "%s", err.msg);
	raw_frame(peer, MIG_FRAME_EVENT, 1, body, sizeof(body), NULL, true);
	raw_frame(peer, MIG_FRAME_EVENT, 1, body, sizeof(body), NULL, true);
	cr_assert_eq(xport_conn_recv(&c, &h, &b, 5000, &err), 0, "%s", err.msg);
	cr_assert_eq(b.len, sizeof(body));
	cr_assert_eq(h.seq, 1);
	r = xport_conn_recv(&c, &h, &b, 5000, &err);
	cr_assert_eq(r, -EPROTO, "%d %s", r, err.msg);
	cr_assert_not_null(strstr(err.msg, "seq 1 of EVENT frame, expected 2 (frame replayed)"),
			   "%s", err.msg);
	cr_assert_eq(b.len, 0);
	xport_conn_close(&c);
	close(peer);
	mig_buf_free(&b);
}

Test(conn, idle_timeout_keeps_the_stream_usable)
{
	static const char body[] = "late";
	struct xport_conn c;
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	struct mig_frame_hdr h;
	int a, peer, r;
	int64_t t0, dt;

	tcp_pair(&a, &peer);
	cr_assert_eq(xport_conn_init(&c, a, &err), 0, "%s", err.msg);
	t0 = now_ms();
	r = xport_conn_recv(&c, &h, &b, 100, &err);
	dt = now_ms() - t0;
	cr_assert_eq(r, -ETIME, "%d %s", r, err.msg);
	cr_assert_geq(dt, 90);
	cr_assert_not_null(strstr(err.msg, "no frame from the peer within 100 ms"), "%s",
			   err.msg);
	mig_error_clear(&err);
	raw_frame(peer, MIG_FRAME_HELLO, 1, body, sizeof(body), NULL, true);
	cr_assert_eq(xport_conn_recv(&c, &h, &b, 5000, &err), 0, "%s", err.msg);
	cr_assert_eq(h.type, MIG_FRAME_HELLO);
	cr_assert_eq(memcmp(b.data, body, sizeof(body)), 0);
	xport_conn_close(&c);
	close(peer);
	mig_buf_free(&b);
}

struct slow_writer {
	int fd;
	uint8_t frame[sizeof(struct mig_frame_hdr) + 100];
};

/* Sends the first half of a frame now and the rest 300 ms later. */
static void *slow_writer(void *arg)
{
	struct slow_writer *w = arg;

	if (write(w->fd, w->frame, 20) != 20)
		return NULL;
	usleep(300 * 1000);
	if (write(w->fd, w->frame + 20, sizeof(w->frame) - 20) != (ssize_t)sizeof(w->frame) - 20)
		return NULL;
	return NULL;
}

Test(conn, frame_begun_before_the_deadline_may_finish_after_it)
{
	struct slow_writer w;
	struct xport_conn c;
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	struct mig_frame_hdr h;
	struct iovec iov = { w.frame + sizeof(h), 100 };
	pthread_t th;
	int a, r;

	tcp_pair(&a, &w.fd);
	fill_pattern(w.frame + sizeof(h), 100, 1);
	mig_frame_seal(&h, MIG_FRAME_REQUEST, 0, 1, &iov, 1);
	memcpy(w.frame, &h, sizeof(h));
	cr_assert_eq(xport_conn_init(&c, a, &err), 0, "%s", err.msg);
	cr_assert_eq(pthread_create(&th, NULL, slow_writer, &w), 0);
	r = xport_conn_recv(&c, &h, &b, 100, &err);
	pthread_join(th, NULL);
	cr_assert_eq(r, 0, "%d %s", r, err.msg);
	cr_assert_eq(b.len, 100);
	cr_assert_eq(memcmp(b.data, w.frame + sizeof(h), 100), 0);
	xport_conn_close(&c);
	close(w.fd);
	mig_buf_free(&b);
}

Test(conn, stall_mid_frame_times_out_and_shuts_down)
{
	struct xport_conn c;
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	struct mig_frame_hdr h;
	int a, peer, r;
	int64_t t0, dt;

	tcp_pair(&a, &peer);
	cr_assert_eq(xport_conn_init(&c, a, &err), 0, "%s", err.msg);
	cr_assert_eq(write(peer, "MGF1\1\0\1\0\0\0", 10), 10);
	/* The frame has begun, so it gets the 2 s stall allowance, not 150 ms. */
	t0 = now_ms();
	r = xport_conn_recv(&c, &h, &b, 150, &err);
	dt = now_ms() - t0;
	cr_assert_geq(dt, 1900, "gave up after %lld ms", (long long)dt);
	cr_assert_eq(r, -ETIME, "%d %s", r, err.msg);
	cr_assert_not_null(strstr(err.msg, "middle of a frame"), "%s", err.msg);
	/* The stream cannot be resynchronised: it is shut, later calls fail. */
	mig_error_clear(&err);
	r = xport_conn_recv(&c, &h, &b, 1000, &err);
	cr_assert_lt(r, 0);
	xport_conn_close(&c);
	close(peer);
	mig_buf_free(&b);
}

Test(conn, peer_close_is_connreset)
{
	struct xport_conn c;
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	struct mig_frame_hdr h;
	int a, peer, r;

	tcp_pair(&a, &peer);
	cr_assert_eq(xport_conn_init(&c, a, &err), 0, "%s", err.msg);
	close(peer);
	r = xport_conn_recv(&c, &h, &b, 5000, &err);
	cr_assert_eq(r, -ECONNRESET, "%d %s", r, err.msg);
	cr_assert_not_null(strstr(err.msg, "closed the connection"), "%s", err.msg);
	xport_conn_close(&c);
}

Test(conn, send_refuses_frames_the_peer_would_reject)
{
	static uint8_t big[5000];
	struct xport_conn c;
	struct mig_error err = { 0 };
	int sv[2], r;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(xport_conn_init(&c, sv[0], &err), 0, "%s", err.msg);
	r = xport_conn_send(&c, MIG_FRAME_HELLO, 0, big, sizeof(big), &err);
	cr_assert_eq(r, -EMSGSIZE, "%d %s", r, err.msg);
	cr_assert_not_null(strstr(err.msg, "HELLO frame of 5000 bytes"), "%s", err.msg);
	mig_error_clear(&err);
	r = xport_conn_send(&c, 7, 0, NULL, 0, &err);
	cr_assert_eq(r, -EINVAL, "%d %s", r, err.msg);
	mig_error_clear(&err);
	r = xport_conn_send(&c, MIG_FRAME_HELLO, MIG_FRAME_F_ZSTD, NULL, 0, &err);
	cr_assert_eq(r, -EBADMSG, "%d %s", r, err.msg);
	cr_assert_not_null(strstr(err.msg, "refusing to send"), "%s", err.msg);
	cr_assert_eq(c.tx_seq, 0);
	xport_conn_close(&c);
	close(sv[1]);
}

/* ---- authentication ---- */

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

Test(auth, hmac_sha256_rfc4231_vectors)
{
	uint8_t key1[20], key6[131], mac[XPORT_MAC_LEN];
	char h[2 * XPORT_MAC_LEN + 1];
	/* Test case 1, data split over two iovecs. */
	struct iovec tc1[] = { { "Hi ", 3 }, { "There", 5 } };
	/* Test case 2, data in three pieces with an empty one. */
	struct iovec tc2[] = { { "what do ya", 10 }, { "", 0 },
			       { " want for nothing?", 18 } };
	struct iovec tc6[] = {
		{ "Test Using Larger Than Block-Size Key - Hash Key First", 54 } };

	memset(key1, 0x0b, sizeof(key1));
	xport_hmac(key1, sizeof(key1), tc1, 2, mac);
	hex(mac, sizeof(mac), h);
	cr_assert_str_eq(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

	xport_hmac("Jefe", 4, tc2, 3, mac);
	hex(mac, sizeof(mac), h);
	cr_assert_str_eq(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

	/* Test case 6: a key longer than the block size is hashed first. */
	memset(key6, 0xaa, sizeof(key6));
	xport_hmac(key6, sizeof(key6), tc6, 1, mac);
	hex(mac, sizeof(mac), h);
	cr_assert_str_eq(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

Test(auth, mac_equal)
{
	uint8_t a[XPORT_MAC_LEN], b[XPORT_MAC_LEN];

	memset(a, 0x11, sizeof(a));
	memcpy(b, a, sizeof(b));
	cr_assert(xport_mac_equal(a, b, sizeof(a)));
	b[31] ^= 1;
	cr_assert_not(xport_mac_equal(a, b, sizeof(a)));
	b[31] ^= 1;
	b[0] ^= 0x80;
	cr_assert_not(xport_mac_equal(a, b, sizeof(a)));
	cr_assert(xport_mac_equal(a, b, 0));
}

Test(auth, random_fills_and_differs)
{
	uint8_t a[64], b[64], zero[64] = { 0 };
	uint8_t *big = malloc(4 * MiB);

	cr_assert_eq(xport_random(a, sizeof(a)), 0);
	cr_assert_eq(xport_random(b, sizeof(b)), 0);
	cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
	cr_assert_neq(memcmp(a, zero, sizeof(a)), 0);
	/* Larger than one getrandom() call returns. */
	cr_assert_eq(xport_random(big, 4 * MiB), 0);
	cr_assert_neq(memcmp(big + 4 * MiB - 64, zero, 64), 0);
	free(big);
}

static char key_dir[32];

static void write_key(const char *name, size_t n, mode_t mode, char *path, size_t pathlen)
{
	uint8_t buf[5000];
	int fd;

	snprintf(path, pathlen, "%s/%s", key_dir, name);
	fill_pattern(buf, sizeof(buf), n);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, buf, n), (ssize_t)n);
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
}

static void make_key_dir(void)
{
	strcpy(key_dir, "/tmp/mig-key-XXXXXX");
	cr_assert_not_null(mkdtemp(key_dir));
}

struct key_case {
	const char *name;
	size_t size;
	mode_t mode;
	int code;
	const char *msg;     /* %s is the path */
};

static const struct key_case key_cases[] = {
	{ "short", 12, 0600, -EINVAL,
	  "key file %s holds 12 bytes; it needs at least 32 (create one with: "
	  "head -c 32 /dev/urandom > %s)" },
	{ "empty", 0, 0600, -EINVAL, "key file %s holds 0 bytes" },
	{ "31", 31, 0600, -EINVAL, "holds 31 bytes" },
	{ "long", 4097, 0600, -EFBIG, "key file %s holds more than 4096 bytes" },
	{ "world", 32, 0644, -EPERM, "key file %s is readable by other users (mode 0644; "
	  "chmod 600 %s)" },
	{ "group", 32, 0640, -EPERM, "readable by other users" },
	{ "gwrite", 32, 0620, -EPERM, "writable by other users" },
};

Test(auth, key_file_errors)
{
	char path[96], want[400];

	make_key_dir();
	for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
		const struct key_case *k = &key_cases[i];
		struct mig_error err = { 0 };
		struct mig_buf b = { 0 };
		int r;

		write_key(k->name, k->size, k->mode, path, sizeof(path));
		r = xport_key_load(path, &b, &err);
		cr_assert_eq(r, k->code, "%s: got %d (%s)", k->name, r, err.msg);
		snprintf(want, sizeof(want), k->msg, path, path);
		cr_assert_not_null(strstr(err.msg, want), "%s: \"%s\" lacks \"%s\"", k->name,
				   err.msg, want);
		cr_assert_null(b.data);
		cr_assert_eq(b.len, 0);
		unlink(path);
	}
	rmdir(key_dir);
}

Test(auth, key_file_missing_or_not_a_file)
{
	struct mig_error err = { 0 };
	struct mig_buf b = { 0 };
	char path[96];
	int r;

	make_key_dir();
	snprintf(path, sizeof(path), "%s/none", key_dir);
	r = xport_key_load(path, &b, &err);
	cr_assert_eq(r, -ENOENT, "%d %s", r, err.msg);
	cr_assert_not_null(strstr(err.msg, "does not exist"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "head -c 32 /dev/urandom"), "%s", err.msg);
	mig_error_clear(&err);
	r = xport_key_load(key_dir, &b, &err);
	cr_assert_eq(r, -EINVAL, "%d %s", r, err.msg);
	cr_assert_not_null(strstr(err.msg, "not a regular file"), "%s", err.msg);
	rmdir(key_dir);
}

Test(auth, key_file_loads)
{
	static const size_t sizes[] = { 32, 33, 4096 };
	struct mig_buf b = { 0 };
	uint8_t want[4096];
	char path[96];

	make_key_dir();
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct mig_error err = { 0 };

		write_key("key", sizes[i], 0600, path, sizeof(path));
		fill_pattern(want, sizes[i], sizes[i]);
		/* Loading into a buffer that holds an older key replaces it. */
		cr_assert_eq(xport_key_load(path, &b, &err), 0, "%zu: %s", sizes[i], err.msg);
		cr_assert_eq(b.len, sizes[i]);
		cr_assert_eq(memcmp(b.data, want, sizes[i]), 0);
		unlink(path);
	}
	write_key("key", 32, 0400, path, sizeof(path));
	{
		struct mig_error err = { 0 };

		cr_assert_eq(xport_key_load(path, &b, &err), 0, "0400: %s", err.msg);
	}
	unlink(path);
	mig_buf_free(&b);
	rmdir(key_dir);
}

/* ---- compression option ---- */

Test(codec, parse_table)
{
	static const struct {
		const char *s;
		int code;
		enum xport_codec codec;
		int level;
		const char *msg;
	} cases[] = {
		{ "none", 0, XPORT_CODEC_NONE, 1, NULL },
		{ "zstd", 0, XPORT_CODEC_ZSTD, 1, NULL },
		{ "zstd:1", 0, XPORT_CODEC_ZSTD, 1, NULL },
		{ "zstd:3", 0, XPORT_CODEC_ZSTD, 3, NULL },
		{ "zstd:19", 0, XPORT_CODEC_ZSTD, 19, NULL },
		{ "zstd:007", 0, XPORT_CODEC_ZSTD, 7, NULL },
		{ "auto", 0, XPORT_CODEC_AUTO, 1, NULL },
		{ "zstd:0", -ERANGE, 0, 0, "out of range; use 1 (fastest) to 19" },
		{ "zstd:20", -ERANGE, 0, 0, "level 20 is out of range" },
		{ "zstd:99999999999", -ERANGE, 0, 0, "out of range" },
		{ "zstd:", -EINVAL, 0, 0, "missing level" },
		{ "zstd:x", -EINVAL, 0, 0, "not a number" },
		{ "zstd:-1", -EINVAL, 0, 0, "not a number" },
		{ "zstd:3 ", -EINVAL, 0, 0, "not a number" },
		{ "zstd3", -EINVAL, 0, 0, "unknown compression \"zstd3\"" },
		{ "lz4", -EINVAL, 0, 0, "expected none, zstd, zstd:LEVEL (1-19) or auto" },
		{ "ZSTD", -EINVAL, 0, 0, "unknown compression" },
		{ "", -EINVAL, 0, 0, "empty compression" },
		{ "none:1", -EINVAL, 0, 0, "unknown compression" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct xport_compress c = { .codec = 99, .level = -5 };
		struct mig_error err = { 0 };
		int r = xport_compress_parse(cases[i].s, &c, &err);

		cr_assert_eq(r, cases[i].code, "\"%s\": got %d (%s)", cases[i].s, r, err.msg);
		if (r == 0) {
			cr_assert_eq(c.codec, cases[i].codec, "\"%s\"", cases[i].s);
			cr_assert_eq(c.level, cases[i].level, "\"%s\"", cases[i].s);
		} else {
			cr_assert_eq(c.codec, 99, "\"%s\" wrote the result", cases[i].s);
			cr_assert_not_null(strstr(err.msg, cases[i].msg), "\"%s\": \"%s\"",
					   cases[i].s, err.msg);
		}
	}
}

Test(codec, names)
{
	cr_assert_str_eq(xport_codec_to_string(XPORT_CODEC_NONE), "none");
	cr_assert_str_eq(xport_codec_to_string(XPORT_CODEC_ZSTD), "zstd");
	cr_assert_str_eq(xport_codec_to_string(XPORT_CODEC_AUTO), "auto");
	cr_assert_null(xport_codec_to_string(XPORT_CODEC_INVALID), "0 is never a codec");
	cr_assert_null(xport_codec_to_string(_XPORT_CODEC_MAX));
	cr_assert_null(xport_codec_to_string((enum xport_codec)-1));
	/* Every name parses back to its codec. */
	for (int c = XPORT_CODEC_NONE; c <= XPORT_CODEC_AUTO; c++) {
		struct xport_compress x;
		struct mig_error err = { 0 };

		cr_assert_eq(xport_compress_parse(xport_codec_to_string(c), &x, &err), 0);
		cr_assert_eq((int)x.codec, c);
	}
}

/* The control stream's sending half: frames go one at a time with the next
 * seq, the payload copied (the caller's buffer may change at once), a
 * second send while one is in flight is refused, and the completion is
 * recognised as the channel's. */
Test(chan, sends_one_frame_at_a_time_in_sequence)
{
	struct xport_chan_tx c = { .seq = 1 };
	struct xport_ring ring = { 0 };
	struct mig_error err = { 0 };
	struct xport_conn peer;
	struct xport_op *op = NULL, other = { 0 };
	char payload[32] = "first";
	int a, b;

	tcp_pair(&a, &b);
	c.fd = a;
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	cr_assert_eq(xport_conn_init(&peer, b, &err), 0, "%s", err.msg);
	peer.rx_seq = 1;   /* as after a handshake's frame */
	for (int i = 0; i < 2; i++) {
		struct mig_frame_hdr h;
		struct mig_buf pl = { 0 };

		cr_assert_eq(xport_chan_send(&c, &ring, MIG_FRAME_READY, payload, sizeof(payload),
					     &err), 0, "%s", err.msg);
		memset(payload, 'x', sizeof(payload));   /* the copy went, not this */
		cr_assert_eq(xport_chan_send(&c, &ring, MIG_FRAME_READY, payload, 4, &err), -EBUSY);
		cr_assert_not_null(strstr(err.msg, "while the previous one is in flight"));
		mig_error_clear(&err);
		cr_assert_not(xport_chan_sent(&c, &other));
		cr_assert(c.busy);
		cr_assert_eq(xport_ring_wait(&ring, 5000, &op, &err), 0, "%s", err.msg);
		cr_assert(xport_chan_sent(&c, op));
		cr_assert_eq(op->res, 0);
		cr_assert_not(c.busy);
		cr_assert_eq(xport_conn_recv(&peer, &h, &pl, 5000, &err), 0, "%s", err.msg);
		cr_assert_eq(h.type, MIG_FRAME_READY);
		cr_assert_eq(h.seq, 2 + (uint64_t)i);
		cr_assert_eq(pl.len, 32);
		cr_assert_str_eq((const char *)pl.data, i ? "second" : "first");
		mig_buf_free(&pl);
		snprintf(payload, sizeof(payload), "second");
	}
	xport_chan_free(&c);
	xport_ring_exit(&ring);
	xport_conn_close(&peer);
	close(a);
}

/* The receiving half: a frame's header, then its payload, each checked;
 * a frame out of sequence or damaged is refused naming what is wrong. */
static int chan_rx_one(struct xport_chan_rx *c, struct xport_ring *ring, struct mig_error *err)
{
	struct xport_op *op;
	int r = xport_chan_rx_hdr(c, err);

	while (r == 0) {
		r = xport_ring_wait(ring, 5000, &op, err);
		cr_assert_geq(r, 0, "%s", err->msg);
		cr_assert_eq(op, &c->op);
		cr_assert_geq(op->res, 0);
		r = xport_chan_rx_step(c, err);
	}
	return r;
}

Test(chan, receives_checked_frames)
{
	struct xport_ring ring = { 0 };
	struct mig_error err = { 0 };
	struct xport_chan_rx c = { 0 };
	struct xport_conn peer;
	struct mig_frame_hdr h;
	struct iovec iov;
	char text[] = "hello, control stream";
	int a, b;

	tcp_pair(&a, &b);
	cr_assert_eq(xport_ring_init(&ring, 4, &err), 0, "%s", err.msg);
	cr_assert_eq(xport_conn_init(&peer, b, &err), 0, "%s", err.msg);
	c = (struct xport_chan_rx){ .fd = a, .ring = &ring };
	/* a frame with a payload, then one without */
	cr_assert_eq(xport_conn_send(&peer, MIG_FRAME_READY, 0, text, sizeof(text), &err), 0);
	cr_assert_eq(chan_rx_one(&c, &ring, &err), 1, "%s", err.msg);
	cr_assert_eq(c.hdr.type, MIG_FRAME_READY);
	cr_assert_eq(c.hdr.seq, 1);
	cr_assert_eq(c.buf.len, sizeof(text));
	cr_assert_str_eq((const char *)c.buf.data, text);
	cr_assert_eq(xport_conn_send(&peer, MIG_FRAME_COMMIT, 0, NULL, 0, &err), 0);
	cr_assert_eq(chan_rx_one(&c, &ring, &err), 1, "%s", err.msg);
	cr_assert_eq(c.hdr.type, MIG_FRAME_COMMIT);
	cr_assert_eq(c.seq, 2);
	/* a replayed seq */
	iov = (struct iovec){ text, sizeof(text) };
	mig_frame_seal(&h, MIG_FRAME_READY, 0, 2, &iov, 1);
	cr_assert_eq(write(b, &h, sizeof(h)), (ssize_t)sizeof(h));
	cr_assert_eq(write(b, text, sizeof(text)), (ssize_t)sizeof(text));
	cr_assert_lt(chan_rx_one(&c, &ring, &err), 0);
	cr_assert_not_null(strstr(err.msg, "replayed"), "%s", err.msg);
	/* damaged payload: the next seq, a flipped byte */
	mig_error_clear(&err);
	c.seq = 2;
	{
		uint8_t buf[64];

		while (read(a, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
			;   /* the replayed frame's payload, not read by the refusal */
	}
	mig_frame_seal(&h, MIG_FRAME_READY, 0, 3, &iov, 1);
	text[0] ^= 1;
	cr_assert_eq(write(b, &h, sizeof(h)), (ssize_t)sizeof(h));
	cr_assert_eq(write(b, text, sizeof(text)), (ssize_t)sizeof(text));
	cr_assert_lt(chan_rx_one(&c, &ring, &err), 0);
	cr_assert_not_null(strstr(err.msg, "checksum mismatch on READY"), "%s", err.msg);
	mig_buf_free(&c.buf);
	xport_ring_exit(&ring);
	xport_conn_close(&peer);
	close(a);
}
