// SPDX-License-Identifier: MIT
/*
 * The network-fault relay (chaos/relay.c) on real loopback sockets: a fake
 * destination (one thread, one poll loop, recording what arrives and when)
 * and a fake source that writes hand-built frames through the relay.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <migrate/relay.h>
#include <migrate/stream.h>
#include <migrate/wire.h>

#include "util.h"

#define CONNS_MAX 8
#define WAIT_MS 10000

/* ---- the fake destination ---- */

struct arrival {
	size_t end;            /* bytes in after this recv */
	uint64_t t;            /* mig_now_ms() */
};

struct dconn {
	int fd;
	uint8_t *buf;
	size_t len, cap;
	struct arrival *log;
	size_t nlog, logcap;
	int end;               /* 1 open, 0 EOF, else -errno */
};

struct dst {
	int lfd;
	char addr[64];
	pthread_t th;
	atomic_bool stop;
	pthread_mutex_t lock;
	struct dconn c[CONNS_MAX];
	unsigned n;
	const uint8_t *reply;  /* sent on EOF, then the connection closes */
	size_t reply_len;
	bool discard;          /* count the bytes only (throughput) */
	atomic_bool hold;      /* read nothing meanwhile (backpressure) */
};

static void dconn_recv(struct dst *d, struct dconn *c)
{
	static __thread uint8_t tmp[256 << 10];
	ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);

	pthread_mutex_lock(&d->lock);
	if (n > 0 && d->discard) {
		c->len += (size_t)n;
	} else if (n > 0) {
		if (c->len + (size_t)n > c->cap) {
			c->cap = (c->len + (size_t)n) * 2;
			c->buf = realloc(c->buf, c->cap);
		}
		memcpy(c->buf + c->len, tmp, (size_t)n);
		c->len += (size_t)n;
		if (c->nlog == c->logcap) {
			c->logcap = c->logcap ? c->logcap * 2 : 64;
			c->log = realloc(c->log, c->logcap * sizeof(*c->log));
		}
		c->log[c->nlog++] = (struct arrival){ c->len, mig_now_ms() };
	} else if (n == 0 || errno != EAGAIN) {
		c->end = n == 0 ? 0 : -errno;
	}
	pthread_mutex_unlock(&d->lock);
	if (n == 0 && d->reply_len) {
		size_t off = 0;

		while (off < d->reply_len) {
			ssize_t w = send(c->fd, d->reply + off, d->reply_len - off, MSG_NOSIGNAL);

			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	if (n <= 0 && c->end != 1) {
		close(c->fd);
		c->fd = -1;
	}
}

static void *dst_thread(void *arg)
{
	struct dst *d = arg;

	while (!atomic_load(&d->stop)) {
		struct pollfd p[CONNS_MAX + 1] = { { .fd = d->lfd, .events = POLLIN } };

		for (unsigned i = 0; i < d->n; i++)
			p[i + 1] = (struct pollfd){ .fd = atomic_load(&d->hold) ? -1 : d->c[i].fd,
						    .events = POLLIN };
		if (poll(p, d->n + 1, 20) <= 0)
			continue;
		for (unsigned i = 0; i < d->n; i++)
			if (p[i + 1].revents)
				dconn_recv(d, &d->c[i]);
		if ((p[0].revents & POLLIN) && d->n < CONNS_MAX) {
			int fd = accept(d->lfd, NULL, NULL);

			if (fd >= 0) {
				pthread_mutex_lock(&d->lock);
				d->c[d->n++] = (struct dconn){ .fd = fd, .end = 1 };
				pthread_mutex_unlock(&d->lock);
			}
		}
	}
	return NULL;
}

static void dst_start(struct dst *d)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(d->lfd, 0);
	cr_assert_eq(bind(d->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(d->lfd, 16), 0);
	cr_assert_eq(getsockname(d->lfd, (struct sockaddr *)&a, &len), 0);
	snprintf(d->addr, sizeof(d->addr), "127.0.0.1:%u", ntohs(a.sin_port));
	cr_assert_eq(pthread_create(&d->th, NULL, dst_thread, d), 0);
}

static void dst_stop(struct dst *d)
{
	atomic_store(&d->stop, true);
	pthread_join(d->th, NULL);
	close(d->lfd);
	for (unsigned i = 0; i < d->n; i++) {
		if (d->c[i].fd >= 0)
			close(d->c[i].fd);
		free(d->c[i].buf);
		free(d->c[i].log);
	}
	pthread_mutex_destroy(&d->lock);
}

/* Wait (generously) until connection i has ended or holds at least len bytes. */
static void dst_wait(struct dst *d, unsigned i, size_t len)
{
	uint64_t deadline = mig_now_ms() + WAIT_MS;

	for (;;) {
		bool done;

		pthread_mutex_lock(&d->lock);
		done = i < d->n && (d->c[i].end != 1 || (len && d->c[i].len >= len));
		pthread_mutex_unlock(&d->lock);
		if (done)
			return;
		cr_assert_lt(mig_now_ms(), deadline, "destination connection %u: nothing "
			     "happened in %d ms", i, WAIT_MS);
		usleep(2000);
	}
}

/* When byte off of connection i arrived. */
static uint64_t arrived(struct dst *d, unsigned i, size_t off)
{
	uint64_t t = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t k = 0; k < d->c[i].nlog; k++) {
		if (d->c[i].log[k].end > off) {
			t = d->c[i].log[k].t;
			break;
		}
	}
	pthread_mutex_unlock(&d->lock);
	cr_assert_neq(t, 0, "byte %zu of connection %u never arrived", off, i);
	return t;
}

/* ---- hand-built streams ---- */

struct stream {
	uint8_t *buf;
	size_t len, cap;
	size_t start[32];      /* each frame's offset */
	unsigned n;
	uint64_t seq;
};

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 131 + (i >> 8) * 7 + 3);
}

static void put(struct stream *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->buf = realloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

/* A frame of type with payload (len bytes) and, for PAGES, data_len more
 * bytes after it; payload and data are a pattern, so a moved or changed
 * byte shows. */
static void frame(struct stream *s, uint16_t type, const void *payload, uint32_t len,
		  uint32_t data_len)
{
	struct mig_frame_hdr h;
	uint8_t *body = malloc(len + data_len + 1);
	struct iovec iov = { body, len };

	cr_assert(s->n < ARRAY_SIZE(s->start));
	for (size_t i = 0; i < len + data_len; i++)
		body[i] = pattern(s->len + i);
	if (payload)
		memcpy(body, payload, len);
	mig_frame_seal(&h, type, 0, ++s->seq, &iov, 1);
	s->start[s->n++] = s->len;
	put(s, &h, sizeof(h));
	put(s, body, len + data_len);
	free(body);
}

static void hello(struct stream *s, uint32_t index)
{
	struct mig_stream_hello h = { .index = htole32(index), .nstreams = htole32(2) };

	frame(s, MIG_FRAME_STREAM_HELLO, &h, sizeof(h), 0);
}

static void pages(struct stream *s, uint32_t data_len)
{
	struct {
		struct mig_pages_hdr h;
		struct mig_page_ent e;
	} m = { .h = { .count = htole32(1), .round = htole32(1), .data_len = htole32(data_len) } };

	frame(s, MIG_FRAME_PAGES, &m, sizeof(m), data_len);
}

/* HELLO(index), DEVICE_DATA, PAGES (8 KiB), ROUND_END, PAGES (12 KiB), DEVICE_DATA. */
static void standard(struct stream *s, uint32_t index)
{
	memset(s, 0, sizeof(*s));
	hello(s, index);
	frame(s, MIG_FRAME_DEVICE_DATA, NULL, 100, 0);
	pages(s, 8192);
	frame(s, MIG_FRAME_ROUND_END, NULL, 0, 0);
	pages(s, 12288);
	frame(s, MIG_FRAME_DEVICE_DATA, NULL, 1000, 0);
}

static size_t frame_end(const struct stream *s, unsigned k)
{
	return k + 1 < s->n ? s->start[k + 1] : s->len;
}

/* ---- the fake source ---- */

static int src_connect(const char *addr)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = WAIT_MS / 1000 };
	const char *colon = strrchr(addr, ':');
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_not_null(colon);
	a.sin_port = htons((uint16_t)atoi(colon + 1));
	cr_assert_eq(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
	/* a relay that forgets a connection fails the test instead of hanging it */
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

/* All of it, or the error that stopped it (a reset toxic may). */
static int send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static struct chaos_relay *relay_start(struct dst *d, const struct chaos_net_spec *spec,
				       char *addr, size_t n)
{
	struct mig_error err = { 0 };
	struct chaos_relay *r = NULL;
	int e = chaos_relay_start("127.0.0.1", d->addr, spec, &r, addr, n, &err);

	cr_assert_eq(e, 0, "%s", err.msg);
	return r;
}

/* One stream through a relay with spec, the source's side closed after it;
 * the destination's connection 0 waited for to its end. */
/* The stream s through a relay with spec to a destination d, all of it
 * received (t0: when the sending began, NULL if not wanted). */
static struct chaos_relay *one_stream_at(struct dst *d, const struct chaos_net_spec *spec,
					 const struct stream *s, uint64_t *t0)
{
	char addr[64];
	struct chaos_relay *r;
	int fd;

	dst_start(d);
	r = relay_start(d, spec, addr, sizeof(addr));
	fd = src_connect(addr);
	if (t0)
		*t0 = mig_now_ms();
	cr_assert_eq(send_all(fd, s->buf, s->len), 0);
	shutdown(fd, SHUT_WR);
	dst_wait(d, 0, 0);
	close(fd);
	return r;
}

static struct chaos_relay *one_stream(struct dst *d, const struct chaos_net_spec *spec,
				      const struct stream *s)
{
	return one_stream_at(d, spec, s, NULL);
}

static void report(struct chaos_relay *r, struct chaos_relay_report *rep)
{
	chaos_relay_report(r, rep);
	cr_log_info("relay: fired %d: %s; %u conns, %llu up, %llu down", rep->fired, rep->what,
		    rep->conns, (unsigned long long)rep->bytes_up,
		    (unsigned long long)rep->bytes_down);
}

/* ---- the tests ---- */

Test(relay, fault_names_round_trip)
{
	for (int f = 0; f < _CHAOS_NET_END; f++) {
		const char *name = chaos_net_fault_name(f);

		cr_assert_not_null(name, "fault %d has no name", f);
		cr_assert_eq(chaos_net_fault_parse(name), f, "%s", name);
	}
	cr_assert_null(chaos_net_fault_name(_CHAOS_NET_END));
	cr_assert_lt(chaos_net_fault_parse("bogus"), 0);
	cr_assert_lt(chaos_net_fault_parse(NULL), 0);
}

/* No toxic: 6 MiB up and 1 MiB down arrive as sent, and each side's EOF
 * reaches the other only after all its bytes (the destination answers
 * only once it saw the source's EOF). */
Test(relay, forwards_both_ways_with_half_close)
{
	size_t up = 6U << 20, down = 1U << 20, got = 0;
	uint8_t *a = malloc(up), *b = malloc(down), *back = malloc(down + 1);
	struct chaos_relay_report rep;
	struct chaos_relay *r;
	struct dst d;
	char addr[64];
	uint64_t t0;
	int fd;

	for (size_t i = 0; i < up; i++)
		a[i] = pattern(i * 3);
	for (size_t i = 0; i < down; i++)
		b[i] = pattern(i * 5 + 1);
	dst_start(&d);
	d.reply = b;
	d.reply_len = down;
	r = relay_start(&d, NULL, addr, sizeof(addr));
	fd = src_connect(addr);
	t0 = mig_now_ms();
	cr_assert_eq(send_all(fd, a, up), 0);
	cr_assert_eq(shutdown(fd, SHUT_WR), 0);
	for (;;) {
		ssize_t n = recv(fd, back + got, down + 1 - got, 0);

		cr_assert_geq(n, 0, "%s", strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
	}
	cr_log_info("6 MiB up, 1 MiB down in %llu ms", (unsigned long long)(mig_now_ms() - t0));
	cr_assert_eq(got, down, "got %zu of %zu; destination has %zu of %zu", got, down,
		     d.c[0].len, up);
	cr_assert_eq(memcmp(back, b, down), 0);
	dst_wait(&d, 0, 0);
	cr_assert_eq(d.c[0].end, 0);
	cr_assert_eq(d.c[0].len, up);
	cr_assert_eq(memcmp(d.c[0].buf, a, up), 0);
	report(r, &rep);
	cr_assert_not(rep.fired);
	cr_assert_eq(rep.conns, 1);
	cr_assert_eq(rep.bytes_up, up);
	cr_assert_eq(rep.bytes_down, down);
	close(fd);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(a);
	free(b);
	free(back);
}

/* DELAY 300 ms from frame 3: frames 1..2 at once, the rest no sooner
 * than 300 ms after it was sent, all of it intact. */
Test(relay, delay_from_frame)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_DELAY, .stream = -1, .frame = 3,
				       .ms = 300, .jitter_ms = 50, .seed = 7 };
	struct chaos_relay *r;
	struct stream s;
	struct dst d;
	uint64_t t0;

	standard(&s, 0);
	r = one_stream_at(&d, &spec, &s, &t0);
	cr_assert_eq(d.c[0].len, s.len);
	cr_assert_eq(memcmp(d.c[0].buf, s.buf, s.len), 0);
	cr_assert_lt(arrived(&d, 0, s.start[2] - 1), t0 + 250);
	cr_assert_geq(arrived(&d, 0, s.start[2]), t0 + 250);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* A trigger on the other direction: CORRUPT byte 10 of what the
 * destination sends back; the source's bytes pass untouched. */
Test(relay, corrupt_towards_source)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_CORRUPT, .stream = 0,
				       .to_source = true, .byte = 10 };
	uint8_t reply[4096], back[sizeof(reply) + 1];
	struct chaos_relay *r;
	struct stream s;
	struct dst d;
	char addr[64];
	size_t got = 0;
	int fd;

	standard(&s, 0);
	for (size_t i = 0; i < sizeof(reply); i++)
		reply[i] = pattern(i + 11);
	dst_start(&d);
	d.reply = reply;
	d.reply_len = sizeof(reply);
	r = relay_start(&d, &spec, addr, sizeof(addr));
	fd = src_connect(addr);
	cr_assert_eq(send_all(fd, s.buf, s.len), 0);
	shutdown(fd, SHUT_WR);
	for (ssize_t n; (n = recv(fd, back + got, sizeof(back) - got, 0)) > 0;)
		got += (size_t)n;
	cr_assert_eq(got, sizeof(reply));
	for (size_t i = 0; i < sizeof(reply); i++)
		cr_assert_eq(back[i], i == 10 ? reply[i] ^ 0xff : reply[i], "byte %zu", i);
	dst_wait(&d, 0, 0);
	cr_assert_eq(d.c[0].len, s.len);
	cr_assert_eq(memcmp(d.c[0].buf, s.buf, s.len), 0);
	close(fd);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* 512 MiB through the relay with no toxic: the relay must not be what
 * limits a migration.  Wall-clock rates on two cores shared with other
 * work say little (both are logged), so the bound is on the relay's own
 * CPU time: bytes moved per CPU second of its thread. */
static double mb_per_s(const char *to, struct dst *d, unsigned ci)
{
	size_t n = 512U << 20, chunk = 1U << 20, sent = 0;
	uint8_t *a = calloc(1, chunk);
	uint64_t t0 = mig_now_ms(), ms;
	int fd = src_connect(to);

	for (size_t i = 0; i < chunk; i++)
		a[i] = pattern(i);
	for (; sent < n; sent += chunk)
		cr_assert_eq(send_all(fd, a, chunk), 0);
	shutdown(fd, SHUT_WR);
	dst_wait(d, ci, 0);
	ms = mig_now_ms() - t0;
	cr_assert_eq(d->c[ci].len, n);
	close(fd);
	free(a);
	return (double)n / 1e6 / ((double)(ms ? ms : 1) / 1000);
}

Test(relay, throughput)
{
	struct chaos_relay_report rep;
	struct chaos_relay *r;
	struct dst d;
	char addr[64];
	double direct, relayed, per_cpu;

	dst_start(&d);
	d.discard = true;
	r = relay_start(&d, NULL, addr, sizeof(addr));
	direct = mb_per_s(d.addr, &d, 0);
	relayed = mb_per_s(addr, &d, 1);
	chaos_relay_report(r, &rep);
	per_cpu = (double)rep.bytes_up / 1e6 / ((double)(rep.cpu_ms ? rep.cpu_ms : 1) / 1000);
	cr_log_info("loopback: %.0f MB/s straight, %.0f MB/s through the relay, "
		    "%.0f MB per CPU second of the relay (%llu ms)", direct, relayed, per_cpu,
		    (unsigned long long)rep.cpu_ms);
	cr_assert_eq(rep.bytes_up, 512U << 20);
	cr_assert_gt(per_cpu, 500, "%.0f MB per CPU second of the relay", per_cpu);
	chaos_relay_stop(r);
	dst_stop(&d);
}

/* A destination that reads nothing: the relay stops reading too once it
 * holds its bound (4 MiB a direction), and the source's sends block long
 * before 128 MiB; once the destination reads, all of it arrives. */
Test(relay, backpressure)
{
	size_t n = 128U << 20, chunk = 1U << 20, sent = 0;
	uint8_t *a = malloc(chunk);
	struct chaos_relay *r;
	struct dst d;
	char addr[64];
	int fd;

	for (size_t i = 0; i < chunk; i++)
		a[i] = pattern(i);
	dst_start(&d);
	d.discard = true;
	atomic_store(&d.hold, true);
	r = relay_start(&d, NULL, addr, sizeof(addr));
	fd = src_connect(addr);
	for (uint64_t quiet = mig_now_ms(); sent < n && mig_now_ms() - quiet < 300;) {
		ssize_t w = send(fd, a + sent % chunk, chunk - sent % chunk,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w > 0) {
			sent += (size_t)w;
			quiet = mig_now_ms();
		} else {
			cr_assert(errno == EAGAIN, "%s", strerror(errno));
			usleep(1000);
		}
	}
	cr_log_info("the source could send %zu KiB to a destination that reads nothing",
		    sent >> 10);
	cr_assert_lt(sent, 64U << 20, "the relay took %zu MiB", sent >> 20);
	atomic_store(&d.hold, false);
	for (; sent < n; sent += chunk - sent % chunk)
		cr_assert_eq(send_all(fd, a + sent % chunk, chunk - sent % chunk), 0);
	shutdown(fd, SHUT_WR);
	dst_wait(&d, 0, 0);
	cr_assert_eq(d.c[0].len, n);
	close(fd);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(a);
}

/* RESET at frame 4: the destination has exactly frames 1..3, then a reset
 * (RST, not a FIN: a peer must not take the cut for an orderly end). */
Test(relay, reset_at_frame)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_RESET, .stream = -1, .frame = 4 };
	struct chaos_relay_report rep;
	struct chaos_relay *r;
	struct stream s;
	struct dst d;

	standard(&s, 0);
	r = one_stream(&d, &spec, &s);
	cr_assert_eq(d.c[0].end, -ECONNRESET, "end %d", d.c[0].end);
	cr_assert_eq(d.c[0].len, s.start[3]);
	cr_assert_eq(memcmp(d.c[0].buf, s.buf, s.start[3]), 0);
	report(r, &rep);
	cr_assert(rep.fired);
	{
		char want[160];

		snprintf(want, sizeof(want), "reset stream 0 at frame 4 (ROUND_END), byte %zu",
			 s.start[3]);
		cr_assert_str_eq(rep.what, want);
	}
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* n bytes in pieces, each given time to reach the relay on its own. */
static void send_slowly(int fd, const uint8_t *p, size_t n, size_t piece)
{
	for (size_t off = 0; off < n; off += piece) {
		cr_assert_eq(send_all(fd, p + off, n - off < piece ? n - off : piece), 0);
		usleep(3000);
	}
}

/* The same reset with the frames' first bytes arriving a few at a time
 * (frame 3 is a PAGES frame: its data length comes 16 bytes after its
 * header): nothing of frame 4 leaves before the relay knows it is frame 4. */
Test(relay, reset_with_headers_in_pieces)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_RESET, .stream = -1, .frame = 4 };
	struct chaos_relay_report rep;
	struct chaos_relay *r;
	struct stream s;
	struct dst d;
	char addr[64];
	size_t early;
	int fd;

	standard(&s, 0);
	dst_start(&d);
	r = relay_start(&d, &spec, addr, sizeof(addr));
	fd = src_connect(addr);
	send_slowly(fd, s.buf, s.start[1] + 40, 7);
	cr_assert_eq(send_all(fd, s.buf + s.start[1] + 40, s.start[2] - s.start[1] - 40), 0);
	send_slowly(fd, s.buf + s.start[2], 64, 5);
	cr_assert_eq(send_all(fd, s.buf + s.start[2] + 64, s.start[3] - s.start[2] - 64), 0);
	dst_wait(&d, 0, s.start[3]);
	(void)send_all(fd, s.buf + s.start[3], 30);
	usleep(50000);
	pthread_mutex_lock(&d.lock);
	early = d.c[0].len;
	pthread_mutex_unlock(&d.lock);
	cr_assert_eq(early, s.start[3], "bytes of frame 4 left before it was whole");
	(void)send_all(fd, s.buf + s.start[3] + 30, s.len - s.start[3] - 30);
	dst_wait(&d, 0, 0);
	cr_assert_eq(d.c[0].end, -ECONNRESET, "end %d", d.c[0].end);
	cr_assert_eq(d.c[0].len, s.start[3]);
	cr_assert_eq(memcmp(d.c[0].buf, s.buf, s.start[3]), 0);
	report(r, &rep);
	cr_assert(rep.fired);
	close(fd);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* CORRUPT at a byte inside the first PAGES frame's data: that byte, and
 * only it, arrives flipped. */
Test(relay, corrupt_one_byte)
{
	struct stream s;
	size_t b;
	struct chaos_net_spec spec = { .fault = CHAOS_NET_CORRUPT, .stream = 0 };
	struct chaos_relay *r;
	struct chaos_relay_report rep;
	struct dst d;

	standard(&s, 0);
	b = s.start[2] + 32 + 32 + 5000;
	spec.byte = b;
	r = one_stream(&d, &spec, &s);
	cr_assert_eq(d.c[0].end, 0);
	cr_assert_eq(d.c[0].len, s.len);
	for (size_t i = 0; i < s.len; i++)
		cr_assert_eq(d.c[0].buf[i], i == b ? s.buf[i] ^ 0xff : s.buf[i], "byte %zu", i);
	report(r, &rep);
	cr_assert(rep.fired);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* TRUNCATE the first PAGES frame (header, meta, 8 KiB data): half of it
 * arrives after the frames before it, then the connection ends. */
Test(relay, truncate_frame)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_TRUNCATE, .stream = -1,
				       .frame_type = MIG_FRAME_PAGES, .frame = 1 };
	struct chaos_relay *r;
	struct stream s;
	struct dst d;
	size_t cut;

	standard(&s, 0);
	cut = s.start[2] + (frame_end(&s, 2) - s.start[2]) / 2;
	r = one_stream(&d, &spec, &s);
	cr_assert_eq(d.c[0].end, -ECONNRESET, "end %d", d.c[0].end);
	cr_assert_eq(d.c[0].len, cut);
	cr_assert_eq(memcmp(d.c[0].buf, s.buf, cut), 0);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* DUPLICATE the second PAGES frame: it arrives twice in a row, byte for
 * byte, and everything else once. */
Test(relay, duplicate_frame)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_DUPLICATE, .stream = -1,
				       .frame_type = MIG_FRAME_PAGES, .frame = 2 };
	struct chaos_relay *r;
	struct stream s;
	struct dst d;
	size_t a, e;

	standard(&s, 0);
	a = s.start[4];
	e = frame_end(&s, 4);
	r = one_stream(&d, &spec, &s);
	cr_assert_eq(d.c[0].end, 0);
	cr_assert_eq(d.c[0].len, s.len + (e - a));
	cr_assert_eq(memcmp(d.c[0].buf, s.buf, e), 0);
	cr_assert_eq(memcmp(d.c[0].buf + e, s.buf + a, e - a), 0);
	cr_assert_eq(memcmp(d.c[0].buf + e + (e - a), s.buf + e, s.len - e), 0);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* STALL at frame 3 for 600 ms: frames 1..2 at once, frame 3 no sooner
 * than 600 ms after the source sent it, then all of it. */
Test(relay, stall_holds_then_flows)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_STALL, .stream = -1, .frame = 3,
				       .ms = 600 };
	struct chaos_relay *r;
	struct stream s;
	struct dst d;
	uint64_t t0;

	standard(&s, 0);
	r = one_stream_at(&d, &spec, &s, &t0);
	cr_assert_eq(d.c[0].end, 0);
	cr_assert_eq(d.c[0].len, s.len);
	cr_assert_eq(memcmp(d.c[0].buf, s.buf, s.len), 0);
	cr_assert_geq(arrived(&d, 0, s.start[2]), t0 + 600);
	cr_assert_lt(arrived(&d, 0, s.start[2] - 1), t0 + 600);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* BANDWIDTH 2 MiB/s from the first frame: 2 MiB take about a second. */
Test(relay, bandwidth_limits_rate)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_BANDWIDTH, .stream = -1, .frame = 1,
				       .rate = 2U << 20 };
	size_t n = 2U << 20;
	uint8_t *a = malloc(n);
	struct chaos_relay *r;
	struct stream s = { 0 };
	struct dst d;
	char addr[64];
	uint64_t t0, ms;
	int fd;

	hello(&s, 1);
	for (size_t i = 0; i < n; i++)
		a[i] = pattern(i);
	put(&s, a, n);           /* after the hello, plain bytes: the stream goes dead */
	dst_start(&d);
	r = relay_start(&d, &spec, addr, sizeof(addr));
	fd = src_connect(addr);
	t0 = mig_now_ms();
	cr_assert_eq(send_all(fd, s.buf, s.len), 0);
	shutdown(fd, SHUT_WR);
	dst_wait(&d, 0, 0);
	ms = mig_now_ms() - t0;
	cr_log_info("%zu bytes at 2 MiB/s in %llu ms", s.len, (unsigned long long)ms);
	cr_assert_eq(d.c[0].len, s.len);
	cr_assert_eq(memcmp(d.c[0].buf, s.buf, s.len), 0);
	cr_assert_geq(ms, 600, "2 MiB at 2 MiB/s took only %llu ms", (unsigned long long)ms);
	cr_assert_leq(ms, 4000, "2 MiB at 2 MiB/s took %llu ms", (unsigned long long)ms);
	close(fd);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(a);
	free(s.buf);
}

static int recv_end(int fd)
{
	uint8_t b[4096];

	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), 0);

		if (n <= 0)
			return n == 0 ? 0 : -errno;
	}
}

/* REFUSE from connection 2: the first is forwarded, the second and third
 * are reset at once and never reach the destination. */
Test(relay, refuse_from_second_connection)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_REFUSE, .stream = -1, .conn = 2 };
	struct chaos_relay_report rep;
	struct chaos_relay *r;
	struct stream s;
	struct dst d;
	char addr[64];
	int fd[3];

	standard(&s, 0);
	dst_start(&d);
	r = relay_start(&d, &spec, addr, sizeof(addr));
	fd[0] = src_connect(addr);
	cr_assert_eq(send_all(fd[0], s.buf, s.len), 0);
	dst_wait(&d, 0, s.len);
	for (int i = 1; i < 3; i++) {
		int e;

		fd[i] = src_connect(addr);
		e = recv_end(fd[i]);
		cr_assert_eq(e, -ECONNRESET, "connection %d: %d", i + 1, e);
	}
	shutdown(fd[0], SHUT_WR);
	dst_wait(&d, 0, 0);
	cr_assert_eq(d.c[0].end, 0);
	cr_assert_eq(d.c[0].len, s.len);
	cr_assert_eq(d.n, 1);
	report(r, &rep);
	cr_assert(rep.fired);
	cr_assert_eq(rep.conns, 3);
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s.buf);
}

/* Two streams through one relay, both hellos through before anything else:
 * returns the destination's connection index of each (0 and 1 in accept
 * order). */
static void two_streams(struct dst *d, struct chaos_relay *r, const char *addr,
			struct stream *s, int *fd, unsigned *ci)
{
	(void)r;
	for (int i = 0; i < 2; i++) {
		fd[i] = src_connect(addr);
		cr_assert_eq(send_all(fd[i], s[i].buf, s[i].start[1]), 0);
		dst_wait(d, (unsigned)i, s[i].start[1]);
		ci[i] = (unsigned)i;
	}
}

/* PARTITION for 2 s, triggered by the control stream's second frame: the
 * control stream (or with data, the data stream) forwards nothing, while
 * the other arrives whole at least a second before the partition ends
 * (not merely first: both released at once would pass that). */
static void partition_case(bool data)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_PARTITION, .stream = 0, .frame = 2,
				       .ms = 2000, .data = data };
	struct chaos_relay *r;
	struct stream s[2];
	struct dst d;
	char addr[64];
	unsigned ci[2], cut = data ? 1 : 0, free_ = 1 - cut;
	uint64_t t0, t_cut, t_free;
	int fd[2];

	standard(&s[0], 0);
	standard(&s[1], 1);
	dst_start(&d);
	r = relay_start(&d, &spec, addr, sizeof(addr));
	two_streams(&d, r, addr, s, fd, ci);
	t0 = mig_now_ms();
	cr_assert_eq(send_all(fd[0], s[0].buf + s[0].start[1], s[0].len - s[0].start[1]), 0);
	usleep(50000);
	cr_assert_eq(send_all(fd[1], s[1].buf + s[1].start[1], s[1].len - s[1].start[1]), 0);
	dst_wait(&d, ci[0], s[0].len);
	dst_wait(&d, ci[1], s[1].len);
	t_cut = arrived(&d, ci[cut], s[cut].start[1]);
	t_free = arrived(&d, ci[free_], s[free_].len - 1);
	cr_log_info("partitioned stream %u's frame 2 after %llu ms, stream %u done after %llu ms",
		    cut, (unsigned long long)(t_cut - t0), free_,
		    (unsigned long long)(t_free - t0));
	cr_assert_geq(t_cut, t0 + 2000);
	cr_assert_leq(t_free + 1000, t_cut, "the stream outside the partition waited for it");
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(memcmp(d.c[ci[i]].buf, s[i].buf, s[i].len), 0);
		close(fd[i]);
	}
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s[0].buf);
	free(s[1].buf);
}

Test(relay, partition_control_only)
{
	partition_case(false);
}

Test(relay, partition_data_only)
{
	partition_case(true);
}

/* A destination that does not listen: each connection to the relay is
 * reset at once (a refused connect is a failure, not an orderly end),
 * and the relay takes the next one. */
Test(relay, destination_down)
{
	struct mig_error err = { 0 };
	struct chaos_relay_report rep;
	struct chaos_relay *r = NULL;
	char addr[64], dead[64];
	struct dst d;

	dst_start(&d);
	str_copy(dead, sizeof(dead), d.addr);
	dst_stop(&d);             /* nothing listens on its port any more */
	cr_assert_eq(chaos_relay_start("127.0.0.1", dead, NULL, &r, addr, sizeof(addr), &err),
		     0, "%s", err.msg);
	for (int i = 0; i < 2; i++) {
		int fd = src_connect(addr), e = recv_end(fd);

		cr_assert_eq(e, -ECONNRESET, "connection %d: %d", i + 1, e);
		close(fd);
	}
	report(r, &rep);
	cr_assert_eq(rep.conns, 2);
	cr_assert_eq(rep.bytes_up, 0);
	chaos_relay_stop(r);
}

/* REORDER data stream 1's second frame (held at most 5 s): sent 300 ms
 * before a frame of stream 2, it arrives after that frame, and long
 * before its 5 s are up. */
Test(relay, reorder_across_streams)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_REORDER, .stream = 1, .frame = 2,
				       .ms = 5000 };
	struct chaos_relay *r;
	struct stream s[2];
	struct dst d;
	char addr[64];
	unsigned ci[2];
	uint64_t t0, t_held, t_other;
	int fd[2];

	standard(&s[0], 1);
	standard(&s[1], 2);
	dst_start(&d);
	r = relay_start(&d, &spec, addr, sizeof(addr));
	two_streams(&d, r, addr, s, fd, ci);
	t0 = mig_now_ms();
	cr_assert_eq(send_all(fd[0], s[0].buf + s[0].start[1], s[0].start[2] - s[0].start[1]), 0);
	usleep(300000);
	cr_assert_eq(send_all(fd[1], s[1].buf + s[1].start[1], s[1].start[2] - s[1].start[1]), 0);
	dst_wait(&d, ci[0], s[0].start[2]);
	dst_wait(&d, ci[1], s[1].start[2]);
	t_held = arrived(&d, ci[0], s[0].start[1]);
	t_other = arrived(&d, ci[1], s[1].start[2] - 1);
	cr_log_info("held frame after %llu ms, the other stream's after %llu ms",
		    (unsigned long long)(t_held - t0), (unsigned long long)(t_other - t0));
	cr_assert_geq(t_held, t_other, "the held frame arrived first");
	cr_assert_lt(t_held, t0 + 4000, "the held frame waited for its timeout");
	cr_assert_eq(memcmp(d.c[ci[0]].buf, s[0].buf, s[0].start[2]), 0);
	for (int i = 0; i < 2; i++)
		close(fd[i]);
	chaos_relay_stop(r);
	dst_stop(&d);
	free(s[0].buf);
	free(s[1].buf);
}

static unsigned count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	unsigned n = 0;

	cr_assert_not_null(dir);
	while (readdir(dir))
		n++;
	closedir(dir);
	return n;
}

/* stop() with connections open and bytes held (a long delay) leaves no
 * socket, eventfd or thread of its own behind. */
Test(relay, stop_leaves_no_fds)
{
	struct chaos_net_spec spec = { .fault = CHAOS_NET_DELAY, .stream = 0, .frame = 2,
				       .ms = 60000 };
	struct chaos_relay_report rep;
	struct chaos_relay *r;
	struct stream s[2];
	struct dst d;
	char addr[64];
	unsigned before, ci[2];
	int fd[2];

	standard(&s[0], 0);
	standard(&s[1], 1);
	before = count_fds();
	dst_start(&d);
	r = relay_start(&d, &spec, addr, sizeof(addr));
	two_streams(&d, r, addr, s, fd, ci);
	cr_assert_eq(send_all(fd[0], s[0].buf + s[0].start[1], s[0].len - s[0].start[1]), 0);
	for (uint64_t deadline = mig_now_ms() + WAIT_MS;; usleep(2000)) {
		chaos_relay_report(r, &rep);
		if (rep.fired)
			break;
		cr_assert_lt(mig_now_ms(), deadline);
	}
	cr_assert_gt(count_fds(), before + 6);
	chaos_relay_stop(r);
	for (int i = 0; i < 2; i++)
		close(fd[i]);
	dst_stop(&d);
	cr_assert_eq(count_fds(), before);
	free(s[0].buf);
	free(s[1].buf);
}
