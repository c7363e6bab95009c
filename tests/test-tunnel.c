// SPDX-License-Identifier: MIT
/*
 * The tunnel (transport/tunnel.c) on real sockets: a client connects to the
 * source's unix sockets, the destination connects to a target server's,
 * and the bytes, the ends of each direction, the order of the connections
 * and the refusals are checked at the far end.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <migrate/aead.h>
#include <migrate/control.h>
#include <migrate/stream.h>
#include <migrate/transport.h>
#include <migrate/tunnel.h>
#include <migrate/wire-order.h>

#include "util.h"

#define WAIT_MS 10000

/* ---- the target: the destination host's unix socket (QEMU's, say) ---- */

struct target {
	int lfd;
	char path[108];
	pthread_t th;
	atomic_bool stop;
	pthread_mutex_t lock;
	int first[16];            /* each accepted connection's first byte, in accept order */
	unsigned n;
};

/* Echoes a connection back until its EOF, then ends its own direction. */
static void *echo_thread(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[65536];
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
			break;
	shutdown(fd, SHUT_WR);
	/* hold the connection until the far end closes */
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	close(fd);
	return NULL;
}

static void *target_thread(void *arg)
{
	struct target *t = arg;

	while (!atomic_load(&t->stop)) {
		struct pollfd p = { .fd = t->lfd, .events = POLLIN };
		pthread_t th;
		char b;
		int fd;

		if (poll(&p, 1, 100) <= 0)
			continue;
		fd = accept(t->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		/* the client writes its number first: which one came in */
		if (recv(fd, &b, 1, MSG_WAITALL) == 1) {
			pthread_mutex_lock(&t->lock);
			if (t->n < 16)
				t->first[t->n++] = b;
			pthread_mutex_unlock(&t->lock);
			send(fd, &b, 1, MSG_NOSIGNAL);
		}
		pthread_create(&th, NULL, echo_thread, (void *)(intptr_t)fd);
		pthread_detach(th);
	}
	return NULL;
}

static void target_start(struct target *t, const char *dir, const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	snprintf(t->path, sizeof(t->path), "%s/%s", dir, name);
	str_copy(sa.sun_path, sizeof(sa.sun_path), t->path);
	t->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_geq(t->lfd, 0);
	cr_assert_eq(bind(t->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	cr_assert_eq(listen(t->lfd, 16), 0);
	pthread_create(&t->th, NULL, target_thread, t);
}

static void target_stop(struct target *t)
{
	atomic_store(&t->stop, true);
	pthread_join(t->th, NULL);
	close(t->lfd);
	unlink(t->path);
}

/* ---- a tunnel between two directories on this host ---- */

struct pair {
	char dir[64];             /* the source host's sockets */
	char qemu[108], libvirt[108];
	uint8_t id[16], secret[MIG_SECRET_LEN];
	char addr[128];
	struct target tq, tl;
	struct mig_tunnel *dst, *src;
};

/* --encrypt of the next pair's source and destination */
static uint32_t src_encrypt, dst_encrypt;

/* The destination's listener: what the agent makes for LV_INCOMING. */
static int dst_listener(char *addr, size_t n)
{
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "127.0.0.1" };
	struct mig_error err = { 0 };
	int fd = xport_listen(&ep, &err);

	cr_assert_geq(fd, 0, "%s", err.msg);
	cr_assert_eq(xport_local_addr(fd, addr, n), 0);
	return fd;
}

static void pair_dst(struct pair *p, unsigned delay_ordinal, unsigned delay_ms)
{
	struct mig_error err = { 0 };
	struct mig_tunnel_dst d = {
		.id = p->id, .secret = p->secret, .delay_ordinal = delay_ordinal,
		.delay_ms = delay_ms, .encrypt = dst_encrypt,
	};

	d.listen_fd = dst_listener(p->addr, sizeof(p->addr));
	d.targets[MIG_TUNNEL_QEMU] = p->tq.path;
	d.targets[MIG_TUNNEL_LIBVIRT] = p->tl.path;
	cr_assert_eq(mig_tunnel_dst_start(&d, &p->dst, &err), 0, "%s", err.msg);
}

/* the source's fault hook, for the next pair made (NULL: none) */
static mig_fault_fn src_fault;
static void *src_fault_arg;

static int pair_src(struct pair *p, const uint8_t *secret, struct mig_error *err)
{
	struct mig_tunnel_src s = { .id = p->id, .secret = secret, .dest_addr = p->addr,
				    .fault = src_fault, .fault_arg = src_fault_arg,
				    .encrypt = src_encrypt };

	s.paths[MIG_TUNNEL_QEMU] = p->qemu;
	s.paths[MIG_TUNNEL_LIBVIRT] = p->libvirt;
	return mig_tunnel_src_start(&s, &p->src, err);
}

static void pair_init(struct pair *p, unsigned delay_ordinal, unsigned delay_ms)
{
	struct mig_error err = { 0 };

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "/tmp/mig-tunnel-XXXXXX");
	cr_assert_not_null(mkdtemp(p->dir));
	snprintf(p->qemu, sizeof(p->qemu), "%s/qemu.sock", p->dir);
	snprintf(p->libvirt, sizeof(p->libvirt), "%s/libvirt.sock", p->dir);
	xport_random(p->id, sizeof(p->id));
	xport_random(p->secret, sizeof(p->secret));
	target_start(&p->tq, p->dir, "target-qemu.sock");
	target_start(&p->tl, p->dir, "target-libvirt.sock");
	pair_dst(p, delay_ordinal, delay_ms);
	cr_assert_eq(pair_src(p, p->secret, &err), 0, "%s", err.msg);
}

static void pair_fini(struct pair *p)
{
	mig_tunnel_stop(p->src);
	mig_tunnel_stop(p->dst);
	target_stop(&p->tq);
	target_stop(&p->tl);
	rmdir(p->dir);
}

static int client(const char *path, char first)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = WAIT_MS / 1000 };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	str_copy(sa.sun_path, sizeof(sa.sun_path), path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s: %s", path,
		     strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(send(fd, &first, 1, 0), 1);
	return fd;
}

static void expect_greeting(int fd, char first)
{
	char b = 0;
	ssize_t n;

	while ((n = recv(fd, &b, 1, MSG_WAITALL)) < 0 && errno == EINTR)
		;
	cr_assert_eq(n, 1, "no answer through the tunnel: %s",
		     strerror(errno));
	cr_assert_eq(b, first);
}

/* The tunnel's first failure, polled for (WAIT_MS at most), in st. */
static void wait_error(struct mig_tunnel *t, struct mig_tunnel_stats *st)
{
	uint64_t end = mig_now_ms() + WAIT_MS;

	do {
		mig_tunnel_stats(t, st);
		if (st->error[0])
			return;
		usleep(10000);
	} while (mig_now_ms() < end);
}

/* Sends out[0..len) on fd, ends that direction, and reads back what the
 * echo returns until its end, all at once (the echo waits for its reader),
 * into in; the bytes read back.  A signal's EINTR is not an error here. */
static size_t round_trip(int fd, const uint8_t *out, uint8_t *in, size_t len)
{
	size_t sent = 0, got = 0;

	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN | (sent < len ? POLLOUT : 0) };
		ssize_t n;

		n = poll(&pf, 1, WAIT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		cr_assert_gt(n, 0, "the tunnel stalled at %zu of %zu bytes", got, len);
		if ((pf.revents & POLLOUT) && sent < len) {
			n = send(fd, out + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
			cr_assert(n > 0 || errno == EAGAIN || errno == EINTR, "send: %s",
				  strerror(errno));
			if (n > 0 && (sent += (size_t)n) == len)
				shutdown(fd, SHUT_WR);
		}
		if (pf.revents & (POLLIN | POLLHUP)) {
			n = recv(fd, in + got, len - got, MSG_DONTWAIT);
			cr_assert(n >= 0 || errno == EAGAIN || errno == EINTR, "recv: %s",
				  strerror(errno));
			if (n == 0)
				return got;
			if (n > 0)
				got += (size_t)n;
			cr_assert_leq(got, len);
		}
	}
}

/* Bytes both ways, intact, and each direction's end passed on. */
Test(tunnel, carries_bytes_both_ways_and_the_ends)
{
	struct pair p;
	struct mig_tunnel_stats st;
	size_t len = 8u << 20, got = 0;
	uint8_t *out = malloc(len), *in = malloc(len);
	int fd;

	pair_init(&p, 0, 0);
	xport_random(out, len);
	fd = client(p.qemu, 'q');
	expect_greeting(fd, 'q');
	got = round_trip(fd, out, in, len);
	/* the echo ended its direction only after our end reached it */
	cr_assert_eq(got, len, "%zu of %zu bytes came back before the end", got, len);
	cr_assert_eq(memcmp(in, out, len), 0, "the bytes changed on the way");
	close(fd);
	mig_tunnel_stats(p.src, &st);
	cr_assert_eq(st.channels[MIG_TUNNEL_QEMU], 1);
	cr_assert_eq(st.bytes_out, len + 1);
	cr_assert_eq(st.bytes_in, len + 1);
	cr_assert_str_empty(st.error);
	pair_fini(&p);
	free(out);
	free(in);
}

/* QEMU's connections reach the destination in the order they were made,
 * and libvirt's beside them. */
Test(tunnel, keeps_the_order_of_connections)
{
	struct pair p;
	unsigned order[8], n;
	int fds[5];

	pair_init(&p, 1, 300);
	fds[0] = client(p.libvirt, 'L');
	for (int i = 1; i < 5; i++)
		fds[i] = client(p.qemu, (char)('0' + i));
	expect_greeting(fds[0], 'L');
	for (int i = 1; i < 5; i++)
		expect_greeting(fds[i], (char)('0' + i));
	pthread_mutex_lock(&p.tq.lock);
	cr_assert_eq(p.tq.n, 4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(p.tq.first[i], '1' + i, "QEMU's connection %d came in as number %d",
			     p.tq.first[i] - '0', i + 1);
	pthread_mutex_unlock(&p.tq.lock);
	n = mig_tunnel_order(p.dst, order, 8);
	cr_assert_eq(n, 5);
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(order[i], i + 1);
	for (int i = 0; i < 5; i++)
		close(fds[i]);
	pair_fini(&p);
}

/* A hand-made source stream: HELLO for (ordinal, kind), not yet answered. */
static int raw_stream(const struct pair *p, const uint8_t *secret, unsigned ordinal,
		      unsigned kind, struct xport_conn *c)
{
	struct xport_endpoint ep;
	struct mig_error err = { 0 };
	struct mig_stream_hello h = { 0 };
	char url[160];
	int fd;

	snprintf(url, sizeof(url), "tcp://%s", p->addr);
	cr_assert_eq(xport_endpoint_parse(url, &ep, &err), 0);
	fd = xport_connect(&ep, WAIT_MS, &err);
	cr_assert_geq(fd, 0, "%s", err.msg);
	cr_assert_eq(xport_conn_init(c, fd, &err), 0);
	memcpy(h.id, p->id, 16);
	h.index = ordinal;
	h.nstreams = kind;
	xport_random(h.nonce, sizeof(h.nonce));
	mig_stream_hello_seal(&h, secret, false);
	mig_wire_le(&mig_wl_stream_hello, &h, 1);
	cr_assert_eq(xport_conn_send(c, MIG_FRAME_STREAM_HELLO, 0, &h, sizeof(h), &err), 0);
	return fd;
}

static uint16_t answer(struct xport_conn *c, struct mig_buf *pl)
{
	struct mig_frame_hdr fh;
	struct mig_error err = { 0 };

	cr_assert_eq(xport_conn_recv(c, &fh, pl, WAIT_MS, &err), 0, "%s", err.msg);
	return fh.type;
}

/* Streams that arrive out of order still connect in order: the second
 * waits for the first. */
Test(tunnel, destination_connects_in_ordinal_order)
{
	struct pair p;
	struct xport_conn c1, c2;
	struct mig_buf pl = { 0 };
	unsigned order[4];

	memset(&p, 0, sizeof(p));
	snprintf(p.dir, sizeof(p.dir), "/tmp/mig-tunnel-XXXXXX");
	cr_assert_not_null(mkdtemp(p.dir));
	xport_random(p.id, sizeof(p.id));
	xport_random(p.secret, sizeof(p.secret));
	target_start(&p.tq, p.dir, "target-qemu.sock");
	target_start(&p.tl, p.dir, "target-libvirt.sock");
	pair_dst(&p, 0, 0);
	raw_stream(&p, p.secret, 2, MIG_TUNNEL_QEMU, &c2);
	usleep(300 * 1000);       /* stream 2 is in and waiting: nothing connected */
	cr_assert_eq(mig_tunnel_order(p.dst, order, 4), 0);
	raw_stream(&p, p.secret, 1, MIG_TUNNEL_QEMU, &c1);
	cr_assert_eq(answer(&c1, &pl), MIG_FRAME_STREAM_HELLO);
	cr_assert_eq(answer(&c2, &pl), MIG_FRAME_STREAM_HELLO);
	cr_assert_eq(mig_tunnel_order(p.dst, order, 4), 2);
	cr_assert_eq(order[0], 1);
	cr_assert_eq(order[1], 2);
	xport_conn_close(&c1);
	xport_conn_close(&c2);
	mig_buf_free(&pl);
	mig_tunnel_stop(p.dst);
	target_stop(&p.tq);
	target_stop(&p.tl);
	rmdir(p.dir);
}

/* Without the migration's secret nothing is carried. */
Test(tunnel, refuses_a_source_without_the_secret)
{
	struct pair p;
	struct mig_error err = { 0 };
	struct mig_tunnel_stats st;
	uint8_t wrong[MIG_SECRET_LEN];
	uint64_t end;

	memset(&p, 0, sizeof(p));
	snprintf(p.dir, sizeof(p.dir), "/tmp/mig-tunnel-XXXXXX");
	cr_assert_not_null(mkdtemp(p.dir));
	snprintf(p.qemu, sizeof(p.qemu), "%s/qemu.sock", p.dir);
	xport_random(p.id, sizeof(p.id));
	xport_random(p.secret, sizeof(p.secret));
	memcpy(wrong, p.secret, sizeof(wrong));
	wrong[7] ^= 1;
	target_start(&p.tq, p.dir, "target-qemu.sock");
	target_start(&p.tl, p.dir, "target-libvirt.sock");
	pair_dst(&p, 0, 0);
	cr_assert_lt(pair_src(&p, wrong, &err), 0);
	cr_assert_not_null(strstr(err.msg, "does not prove it belongs"), "%s", err.msg);
	cr_assert_eq(access(p.qemu, F_OK), -1, "a refused tunnel left its socket behind");
	/* the destination counts the refusal once its answer has gone */
	end = mig_now_ms() + WAIT_MS;
	do {
		mig_tunnel_stats(p.dst, &st);
		if (st.refused)
			break;
		usleep(10000);
	} while (mig_now_ms() < end);
	cr_assert_eq(st.refused, 1);
	cr_assert(!st.control_up);
	mig_tunnel_stop(p.dst);
	target_stop(&p.tq);
	target_stop(&p.tl);
	rmdir(p.dir);
}

/* A damaged frame is not passed on: the target's connection is reset
 * and the tunnel says why. */
Test(tunnel, damaged_frame_resets_the_channel)
{
	struct pair p;
	struct xport_conn c;
	struct mig_buf pl = { 0 };
	struct mig_frame_hdr h;
	struct mig_tunnel_stats st;
	uint8_t data[64];
	struct iovec iov = { data, sizeof(data) };

	pair_init(&p, 0, 0);
	raw_stream(&p, p.secret, 1, MIG_TUNNEL_QEMU, &c);
	cr_assert_eq(answer(&c, &pl), MIG_FRAME_STREAM_HELLO);
	memset(data, 'x', sizeof(data));
	data[0] = '7';
	mig_frame_seal(&h, MIG_FRAME_TUNNEL_DATA, 0, c.tx_seq + 1, &iov, 1);
	data[40] ^= 0x10;         /* damaged after sealing */
	cr_assert_eq(send(c.fd, &h, sizeof(h), MSG_NOSIGNAL), (ssize_t)sizeof(h));
	cr_assert_eq(send(c.fd, data, sizeof(data), MSG_NOSIGNAL), (ssize_t)sizeof(data));
	wait_error(p.dst, &st);
	cr_assert_not_null(strstr(st.error, "checksum mismatch"), "'%s'", st.error);
	cr_assert_eq(st.bytes_out, 0, "damaged bytes were passed on");
	pthread_mutex_lock(&p.tq.lock);
	cr_assert_eq(p.tq.n, 0, "the target saw the damaged data");
	pthread_mutex_unlock(&p.tq.lock);
	xport_conn_close(&c);
	mig_buf_free(&pl);
	pair_fini(&p);
}

/* No socket to connect to on the destination: the source's connection is
 * closed and the tunnel says what was missing. */
Test(tunnel, missing_target_closes_the_connection)
{
	struct pair p;
	struct mig_tunnel_stats st;
	char b;
	int fd;

	pair_init(&p, 0, 0);
	target_stop(&p.tq);
	fd = client(p.qemu, 'q');
	cr_assert_leq(recv(fd, &b, 1, 0), 0, "a connection with nothing behind it answered");
	mig_tunnel_stats(p.src, &st);
	cr_assert_not_null(strstr(st.error, "target-qemu.sock"), "'%s'", st.error);
	cr_assert_eq(st.refused, 1);
	close(fd);
	mig_tunnel_stop(p.src);
	mig_tunnel_stop(p.dst);
	target_stop(&p.tl);
	rmdir(p.dir);
}

/* The destination's side gone mid-connection: the source's connection is
 * reset, not left hanging. */
Test(tunnel, destination_gone_resets_the_connection)
{
	struct pair p;
	char buf[16];
	int fd;

	pair_init(&p, 0, 0);
	fd = client(p.qemu, 'q');
	expect_greeting(fd, 'q');
	mig_tunnel_stop(p.dst);
	p.dst = NULL;
	cr_assert_leq(recv(fd, buf, sizeof(buf), 0), 0, "the connection outlived its tunnel");
	close(fd);
	pair_fini(&p);
}

/* The source closing the tunnel ends the destination's. */
Test(tunnel, source_stop_is_seen_by_the_destination)
{
	struct pair p;

	pair_init(&p, 0, 0);
	cr_assert(!mig_tunnel_wait_closed(p.dst, 200));
	mig_tunnel_stop(p.src);
	p.src = NULL;
	cr_assert(mig_tunnel_wait_closed(p.dst, WAIT_MS));
	pair_fini(&p);
}

/* Chaos mode's hook sees each channel's frames as points of the channel's
 * ordinal, and an error it injects breaks that channel at that frame. */
struct points {
	unsigned sent, received, fail_at;
	unsigned stream;
	uint16_t last_type;
};

static int count_points(void *arg, const struct mig_fault_point *pt, struct mig_error *err)
{
	struct points *s = arg;

	s->stream = pt->stream;
	s->last_type = pt->frame_type;
	if (pt->kind == MIG_FAULT_FRAME_RECV)
		s->received++;
	if (pt->kind == MIG_FAULT_FRAME_SEND && pt->frame_type == MIG_FRAME_TUNNEL_DATA &&
	    ++s->sent == s->fail_at)
		return mig_error_set(err, -EIO, "chaos: EIO injected at data frame %u", s->fail_at);
	return 0;
}

Test(tunnel, fault_hook_sees_frames_and_breaks_the_channel)
{
	struct points pts = { .fail_at = 2 };
	struct mig_tunnel_stats st;
	struct pair p;
	char b = 0;
	int fd;

	src_fault = count_points;
	src_fault_arg = &pts;
	pair_init(&p, 0, 0);
	src_fault = NULL;
	fd = client(p.qemu, 'q');
	/* the first frame went, and its echo came back */
	expect_greeting(fd, 'q');
	cr_assert_eq(pts.sent, 1);
	cr_assert_geq(pts.received, 1);
	cr_assert_eq(pts.stream, 1, "the channel's points name ordinal %u, not 1", pts.stream);
	/* the second is where the hook fails: the channel breaks there */
	cr_assert_eq(send(fd, "z", 1, MSG_NOSIGNAL), 1);
	cr_assert_leq(recv(fd, &b, 1, 0), 0, "a byte came back past the injected failure");
	wait_error(p.src, &st);
	cr_assert_not_null(strstr(st.error, "chaos: EIO injected at data frame 2"), "'%s'",
			   st.error);
	mig_tunnel_stats(p.dst, &st);
	cr_assert_eq(st.bytes_out, 1, "the failed frame reached the destination");
	close(fd);
	pair_fini(&p);
}

/* A stop and continue of the agent (SIGSTOP from outside, a debugger)
 * interrupts the pumps' waits; the channels carry on as before. */
Test(tunnel, survives_a_stop_and_continue_of_the_process)
{
	struct mig_tunnel_stats st;
	struct pair p;
	pid_t self = getpid(), child;
	int fd, status;

	pair_init(&p, 0, 0);
	fd = client(p.qemu, 'q');
	expect_greeting(fd, 'q');
	/* every pump waits on its io_uring now */
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		usleep(100000);
		kill(self, SIGSTOP);
		usleep(200000);
		kill(self, SIGCONT);
		_exit(0);
	}
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert_eq(send(fd, "s", 1, MSG_NOSIGNAL), 1);
	expect_greeting(fd, 's');
	mig_tunnel_stats(p.src, &st);
	cr_assert_str_empty(st.error);
	cr_assert_eq(st.open, 1, "%u channels open after the stop, not 1", st.open);
	close(fd);
	pair_fini(&p);
}

/* ---- sealed channels (protocol.md §1.8, §11) ---- */

/* With --encrypt always the channels are sealed at both ends, and the
 * bytes come through whole. */
Test(tunnel, sealed_channels_carry_the_bytes)
{
	struct mig_tunnel_stats st;
	struct pair p;
	size_t len = 4u << 20, got = 0;
	uint8_t *out = malloc(len), *in = malloc(len);
	int fd;

	src_encrypt = MIG_ENCRYPT_ALWAYS;
	dst_encrypt = MIG_ENCRYPT_ALWAYS;
	pair_init(&p, 0, 0);
	src_encrypt = dst_encrypt = MIG_ENCRYPT_AUTO;
	xport_random(out, len);
	fd = client(p.qemu, 'q');
	expect_greeting(fd, 'q');
	got = round_trip(fd, out, in, len);
	cr_assert_eq(got, len, "%zu of %zu bytes came back", got, len);
	cr_assert_eq(memcmp(in, out, len), 0, "the bytes changed on the way");
	mig_tunnel_stats(p.src, &st);
	cr_assert_eq(st.sealed, 1, "the source sealed %u channels, not 1", st.sealed);
	cr_assert_str_empty(st.error);
	mig_tunnel_stats(p.dst, &st);
	cr_assert_eq(st.sealed, 1, "the destination sealed %u channels, not 1", st.sealed);
	close(fd);
	pair_fini(&p);
	free(out);
	free(in);
}

/* A destination that wants its channels sealed refuses one in clear. */
Test(tunnel, a_clear_channel_is_refused_where_sealed_ones_are_required)
{
	struct mig_tunnel_stats st;
	struct pair p;
	char b;
	int fd;

	src_encrypt = MIG_ENCRYPT_NEVER;
	dst_encrypt = MIG_ENCRYPT_ALWAYS;
	pair_init(&p, 0, 0);
	src_encrypt = dst_encrypt = MIG_ENCRYPT_AUTO;
	fd = client(p.qemu, 'q');
	cr_assert_leq(recv(fd, &b, 1, 0), 0, "a byte came through a refused channel");
	wait_error(p.dst, &st);
	cr_assert(strstr(st.error, "comes in clear, and this tunnel's channels must be "
			 "encrypted (--encrypt always)"), "'%s'", st.error);
	pthread_mutex_lock(&p.tq.lock);
	cr_assert_eq(p.tq.n, 0, "the target was connected");
	pthread_mutex_unlock(&p.tq.lock);
	close(fd);
	pair_fini(&p);
}

/* On a sealed channel a frame with one byte flipped does not open: the
 * channel resets and its bytes go nowhere. */
Test(tunnel, a_damaged_sealed_frame_resets_the_channel)
{
	struct mig_stream_hello h = { 0 };
	struct mig_error err = { 0 };
	struct mig_buf pl = { 0 };
	struct mig_tunnel_stats st;
	struct xport_endpoint ep;
	struct xport_aead *k;
	struct xport_conn c;
	struct mig_frame_hdr fh;
	uint8_t frame[sizeof(fh) + 64 + XPORT_AEAD_TAG];
	struct iovec iov = { frame + sizeof(fh), 64 };
	struct pair p;
	char url[160];

	pair_init(&p, 0, 0);
	snprintf(url, sizeof(url), "tcp://%s", p.addr);
	cr_assert_eq(xport_endpoint_parse(url, &ep, &err), 0);
	cr_assert_eq(xport_conn_init(&c, xport_connect(&ep, WAIT_MS, &err), &err), 0, "%s",
		     err.msg);
	memcpy(h.id, p.id, 16);
	h.index = 1;
	h.nstreams = MIG_TUNNEL_QEMU;
	h.flags = MIG_STREAM_F_SEALED;
	xport_random(h.nonce, sizeof(h.nonce));
	mig_stream_hello_seal(&h, p.secret, false);
	cr_assert_eq(mig_stream_keys(p.secret, &h, true, &k, &err), 0, "%s", err.msg);
	mig_wire_le(&mig_wl_stream_hello, &h, 1);
	cr_assert_eq(xport_conn_send(&c, MIG_FRAME_STREAM_HELLO, 0, &h, sizeof(h), &err), 0);
	cr_assert_eq(answer(&c, &pl), MIG_FRAME_STREAM_HELLO);
	memset(frame + sizeof(fh), '7', 64);
	mig_frame_seal(&fh, MIG_FRAME_TUNNEL_DATA, 0, c.tx_seq + 1, &iov, 1);
	cr_assert_eq(xport_aead_seal(k, &fh, 0, &iov, 1, frame + sizeof(fh) + 64, &err), 0);
	memcpy(frame, &fh, sizeof(fh));
	frame[sizeof(fh) + 40] ^= 0x10;   /* damaged after sealing */
	cr_assert_eq(send(c.fd, frame, sizeof(frame), MSG_NOSIGNAL), (ssize_t)sizeof(frame));
	wait_error(p.dst, &st);
	cr_assert(strstr(st.error, "does not open"), "'%s'", st.error);
	cr_assert_eq(st.bytes_out, 0, "damaged bytes were passed on");
	xport_aead_free(k);
	xport_conn_close(&c);
	mig_buf_free(&pl);
	pair_fini(&p);
}
