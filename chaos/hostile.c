// SPDX-License-Identifier: MIT
/*
 * Hostile clients (include/migrate/hostile.h).  One thread drives all the
 * connections of a campaign through poll(), so a campaign of thousands of
 * connections costs the runner one thread, and it always knows, to the
 * poll's granularity, when the peer dropped each one.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <migrate/control.h>
#include <migrate/hostile.h>
#include <migrate/stream.h>
#include <migrate/transport.h>
#include <migrate/wire.h>

#include "util.h"

/* The most connections a campaign holds at once: descriptors are ours too. */
#define HOSTILE_COUNT_MAX 65536
/* How often a campaign looks at its stop flag. */
#define HOSTILE_POLL_MS 50
/* IDLE: pause before connecting again after a refusal. */
#define HOSTILE_RETRY_MS 100
/* What we keep of the peer's first bytes: a frame header and an error code. */
#define HOSTILE_KEEP (sizeof(struct mig_frame_hdr) + sizeof(int32_t))

static const char *const kind_names[] = {
	[CHAOS_HOSTILE_SILENT] = "silent",
	[CHAOS_HOSTILE_HALF_FRAME] = "half-frame",
	[CHAOS_HOSTILE_FLOOD] = "flood",
	[CHAOS_HOSTILE_IDLE] = "idle",
	[CHAOS_HOSTILE_GARBAGE] = "garbage",
};

const char *chaos_hostile_name(enum chaos_hostile_kind k)
{
	return (unsigned)k < ARRAY_SIZE(kind_names) ? kind_names[k] : NULL;
}

int chaos_hostile_parse(const char *name)
{
	for (unsigned i = 1; name && i < ARRAY_SIZE(kind_names); i++)
		if (!strcmp(name, kind_names[i]))
			return (int)i;
	return -EINVAL;
}

/* One connection of a campaign; fd -1: a free slot. */
struct hconn {
	int fd;
	uint64_t t0;                  /* connected */
	uint8_t in[HOSTILE_KEEP];     /* the peer's first bytes */
	size_t got;
};

struct campaign {
	enum chaos_hostile_kind kind;
	struct sockaddr_storage sa;
	socklen_t sa_len;
	char name[300];               /* the endpoint, for messages */
	unsigned count, hold_ms;
	uint64_t rng;
	uint64_t t0, end;
	unsigned index;               /* of the next connection */
	struct hconn *c;
	unsigned nc;
	atomic_bool *stop;            /* NULL: runs to its end */
	struct chaos_hostile_report rep;
};

/* splitmix64: a campaign replays from its seed */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* The endpoint's address, resolved once: a flood must not pay a lookup
 * per connection. */
static int target_resolve(struct campaign *cp, const char *endpoint, struct mig_error *err)
{
	struct xport_endpoint ep;
	int r = xport_endpoint_parse(endpoint, &ep, err);

	if (r < 0)
		return r;
	str_copy(cp->name, sizeof(cp->name), endpoint);
	if (ep.kind == XPORT_EP_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&cp->sa;

		sun->sun_family = AF_UNIX;
		str_copy(sun->sun_path, sizeof(sun->sun_path), ep.path);
		cp->sa_len = sizeof(*sun);
		return 0;
	}
	if (ep.kind == XPORT_EP_TCP) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
		char port[8];

		snprintf(port, sizeof(port), "%u", ep.port);
		r = getaddrinfo(ep.host, port, &hints, &ai);
		if (r != 0 || !ai)
			return mig_error_set(err, -EHOSTUNREACH, "%s: cannot resolve %s: %s",
					     endpoint, ep.host, gai_strerror(r));
		memcpy(&cp->sa, ai->ai_addr, ai->ai_addrlen);
		cp->sa_len = ai->ai_addrlen;
		freeaddrinfo(ai);
		return 0;
	}
	return mig_error_set(err, -EINVAL, "%s: a hostile client connects to tcp://HOST:PORT, "
			     "HOST:PORT or unix:///PATH", endpoint);
}

static uint64_t remaining(const struct campaign *cp)
{
	uint64_t now = mig_now_ms();

	return now < cp->end ? cp->end - now : 0;
}

static bool stopping(const struct campaign *cp)
{
	return cp->stop && atomic_load(cp->stop);
}

/*
 * A non-blocking connect, given up after ms.  SO_SNDTIMEO does not bound a
 * unix connect to a full queue (it waits again after each wakeup), so we
 * time it ourselves: a unix socket answers EAGAIN while the queue is full
 * and is tried again; a tcp one is waited on.
 */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len, uint64_t ms)
{
	uint64_t end = mig_now_ms() + ms;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		uint64_t now = mig_now_ms();
		socklen_t sl = sizeof(int);
		int e = 0;

		if (connect(fd, sa, len) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && sa->sa_family == AF_UNIX) {
			if (now >= end)
				return -ETIMEDOUT;
			usleep(1000);
			continue;
		}
		if (errno != EINPROGRESS)
			return -errno;
		if (poll(&p, 1, now < end ? (int)(end - now) : 0) <= 0)
			return -ETIMEDOUT;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0)
			return -errno;
		return -e;
	}
}

/*
 * A connection (non-blocking), or -errno.  A refused or timed-out connect
 * (the peer's accept queue is full) is the peer's answer and counted as
 * refused (-ECONNREFUSED); running out of descriptors is ours (-EMFILE ...).
 */
static int hostile_connect(struct campaign *cp)
{
	uint64_t ms = remaining(cp), t0 = mig_now_ms();
	int fd, r;

	if (ms > CHAOS_HOSTILE_CONNECT_MS || ms == 0)
		ms = CHAOS_HOSTILE_CONNECT_MS;
	cp->rep.attempted++;
	fd = socket(cp->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	r = connect_within(fd, (struct sockaddr *)&cp->sa, cp->sa_len, ms);
	if (mig_now_ms() - t0 > cp->rep.max_connect_ms)
		cp->rep.max_connect_ms = mig_now_ms() - t0;
	if (r < 0) {
		close(fd);
		if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM)
			return r;
		cp->rep.refused++;
		return -ECONNREFUSED;
	}
	cp->rep.connected++;
	return fd;
}

/* The first half of a valid HELLO (or STREAM_HELLO) frame's header: the
 * peer has a frame begun and must still give up on it at its deadline. */
static void send_half_frame(int fd, unsigned index)
{
	uint8_t payload[sizeof(struct mig_stream_hello)] = { 0 };
	uint16_t type = index % 2 ? MIG_FRAME_STREAM_HELLO : MIG_FRAME_HELLO;
	struct iovec iov = { payload, type == MIG_FRAME_HELLO ? sizeof(struct mig_hello) :
					       sizeof(struct mig_stream_hello) };
	struct mig_frame_hdr h;

	mig_frame_seal(&h, type, 0, 1, &iov, 1);
	(void)send(fd, &h, sizeof(h) / 2, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* 32 to 2048 random bytes: at least a header, so the peer's decoder
 * judges it, and never the magic, so that it can only reject it. */
static void send_garbage(struct campaign *cp, int fd)
{
	uint8_t buf[2048];
	size_t n = 32 + rng_next(&cp->rng) % (sizeof(buf) - 31);
	uint32_t magic = htole32(MIG_WIRE_MAGIC);

	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rng_next(&cp->rng);

		memcpy(buf + i, &v, n - i < 8 ? n - i : 8);
	}
	if (!memcmp(buf, &magic, sizeof(magic)))
		buf[0] ^= 0xff;
	(void)send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Opens slot i's connection and sends what the kind sends.  -errno only
 * for a failure of ours; a refused connect leaves the slot free. */
static int slot_open(struct campaign *cp, struct hconn *hc)
{
	int fd = hostile_connect(cp);
	unsigned index = cp->index++;

	if (fd == -ECONNREFUSED)
		return 0;
	if (fd < 0)
		return fd;
	*hc = (struct hconn){ .fd = fd, .t0 = mig_now_ms() };
	if (cp->kind == CHAOS_HOSTILE_HALF_FRAME)
		send_half_frame(fd, index);
	else if (cp->kind == CHAOS_HOSTILE_GARBAGE)
		send_garbage(cp, fd);
	return 0;
}

/* Whether the peer's first bytes are an ERROR frame turning us away on
 * accept (busy, or not allowed), rather than ending a handshake. */
static bool refused_on_accept(const struct hconn *hc)
{
	struct mig_frame_hdr h;
	int32_t code;

	if (hc->got < HOSTILE_KEEP)
		return false;
	memcpy(&h, hc->in, sizeof(h));
	memcpy(&code, hc->in + sizeof(h), sizeof(code));
	if (le32toh(h.magic) != MIG_WIRE_MAGIC || le16toh(h.type) != MIG_FRAME_ERROR)
		return false;
	code = (int32_t)le32toh((uint32_t)code);
	return code == -EBUSY || code == -EAGAIN || code == -EACCES;
}

/* The peer ended slot hc's connection (reset: by a reset): counts it. */
static void slot_ended(struct campaign *cp, struct hconn *hc, bool reset)
{
	uint64_t held = mig_now_ms() - hc->t0;

	close(hc->fd);
	hc->fd = -1;
	if (refused_on_accept(hc)) {
		cp->rep.refused++;
		return;
	}
	if (reset)
		cp->rep.reset_by_peer++;
	else
		cp->rep.closed_by_peer++;
	if (!cp->rep.first_close_ms)
		cp->rep.first_close_ms = held ? held : 1;
	if (held > cp->rep.max_close_ms)
		cp->rep.max_close_ms = held;
}

/* Reads what the peer sent, keeping its first bytes; ends the slot at EOF
 * or an error. */
static void slot_read(struct campaign *cp, struct hconn *hc)
{
	uint8_t buf[4096];

	for (;;) {
		ssize_t n = recv(hc->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0) {
			size_t keep = HOSTILE_KEEP - hc->got;

			if (keep > (size_t)n)
				keep = (size_t)n;
			memcpy(hc->in + hc->got, buf, keep);
			hc->got += keep;
			continue;
		}
		if (n == 0) {
			slot_ended(cp, hc, false);
		} else if (errno == EINTR) {
			continue;
		} else if (errno != EAGAIN) {
			slot_ended(cp, hc, errno == ECONNRESET || errno == EPIPE);
		}
		return;
	}
}

static unsigned slots_open(const struct campaign *cp)
{
	unsigned n = 0;

	for (unsigned i = 0; i < cp->nc; i++)
		n += cp->c[i].fd >= 0;
	return n;
}

/* Waits up to ms for the peer on the open slots and counts what it did. */
static void slots_poll(struct campaign *cp, struct pollfd *pf, int ms)
{
	unsigned n = 0;

	for (unsigned i = 0; i < cp->nc; i++)
		if (cp->c[i].fd >= 0)
			pf[n++] = (struct pollfd){ .fd = cp->c[i].fd, .events = POLLIN | POLLRDHUP };
	if (poll(pf, n, ms) <= 0)
		return;
	for (unsigned i = 0, j = 0; i < cp->nc && j < n; i++) {
		if (cp->c[i].fd < 0 || cp->c[i].fd != pf[j].fd)
			continue;
		if (pf[j++].revents)
			slot_read(cp, &cp->c[i]);
	}
}

/* Closes what is still open: held to the end. */
static void slots_close(struct campaign *cp)
{
	for (unsigned i = 0; i < cp->nc; i++) {
		if (cp->c[i].fd < 0)
			continue;
		close(cp->c[i].fd);
		cp->c[i].fd = -1;
		cp->rep.held_to_end++;
	}
}

static int poll_ms(const struct campaign *cp)
{
	uint64_t ms = remaining(cp);

	return (int)(ms < HOSTILE_POLL_MS ? ms : HOSTILE_POLL_MS);
}

/* FLOOD: connections one after another for the first half of the hold;
 * every HOLD_EVERY-th is kept while there is a slot, the rest closed at
 * once.  The second half lets the peer work off its accept queue, so that
 * what is held at the end is what it admitted, not what it has yet to see. */
static int run_flood(struct campaign *cp, struct pollfd *pf)
{
	uint64_t settle = cp->t0 + cp->hold_ms / 2;

	for (unsigned i = 0; i < cp->count && mig_now_ms() < settle && !stopping(cp); i++) {
		struct hconn *free_slot = NULL;
		int fd;

		for (unsigned s = 0; i % CHAOS_FLOOD_HOLD_EVERY == 0 && s < cp->nc; s++)
			if (cp->c[s].fd < 0)
				free_slot = &cp->c[s];
		if (free_slot) {
			int r = slot_open(cp, free_slot);

			if (r < 0)
				return r;
		} else {
			fd = hostile_connect(cp);
			if (fd >= 0)
				close(fd);
			else if (fd != -ECONNREFUSED)
				return fd;
		}
		if (i % CHAOS_FLOOD_HOLD_EVERY == 0)
			slots_poll(cp, pf, 0);
	}
	while (slots_open(cp) && remaining(cp) && !stopping(cp))
		slots_poll(cp, pf, poll_ms(cp));
	return 0;
}

/* SILENT, HALF_FRAME, GARBAGE: all at once, then until the peer has
 * dropped them all.  IDLE: kept open, each dropped one opened again. */
static int run_held(struct campaign *cp, struct pollfd *pf)
{
	bool again = cp->kind == CHAOS_HOSTILE_IDLE;
	uint64_t retry_at = 0;
	unsigned refused;

	for (unsigned i = 0; i < cp->nc; i++) {
		int r = slot_open(cp, &cp->c[i]);

		if (r < 0)
			return r;
	}
	while (remaining(cp) && !stopping(cp)) {
		if (again && slots_open(cp) < cp->nc && mig_now_ms() >= retry_at) {
			refused = cp->rep.refused;
			for (unsigned i = 0; i < cp->nc; i++) {
				int r = cp->c[i].fd < 0 ? slot_open(cp, &cp->c[i]) : 0;

				if (r < 0)
					return r;
			}
			if (cp->rep.refused != refused)
				retry_at = mig_now_ms() + HOSTILE_RETRY_MS;
		}
		if (!again && !slots_open(cp))
			break;
		refused = cp->rep.refused;
		slots_poll(cp, pf, poll_ms(cp));
		/* turned away on accept: not again at once, or IDLE floods */
		if (cp->rep.refused != refused)
			retry_at = mig_now_ms() + HOSTILE_RETRY_MS;
	}
	return 0;
}

static int campaign_run(struct campaign *cp, struct mig_error *err)
{
	struct pollfd *pf;
	int r;

	cp->nc = cp->kind == CHAOS_HOSTILE_FLOOD ? CHAOS_FLOOD_HELD_MAX : cp->count;
	cp->c = calloc(cp->nc, sizeof(*cp->c));
	pf = calloc(cp->nc, sizeof(*pf));
	if (!cp->c || !pf) {
		free(cp->c);
		free(pf);
		cp->rep.error = -ENOMEM;
		return mig_error_set(err, -ENOMEM, "out of memory");
	}
	for (unsigned i = 0; i < cp->nc; i++)
		cp->c[i].fd = -1;
	cp->t0 = mig_now_ms();
	cp->end = cp->t0 + cp->hold_ms;
	r = cp->kind == CHAOS_HOSTILE_FLOOD ? run_flood(cp, pf) : run_held(cp, pf);
	slots_close(cp);
	cp->rep.elapsed_ms = mig_now_ms() - cp->t0;
	free(cp->c);
	free(pf);
	cp->c = NULL;
	if (r < 0) {
		cp->rep.error = r;
		return mig_error_set(err, r, "%s client against %s: %s", chaos_hostile_name(cp->kind),
				     cp->name, strerror(-r));
	}
	return 0;
}

static int campaign_init(struct campaign *cp, enum chaos_hostile_kind k, const char *endpoint,
			 unsigned count, unsigned hold_ms, uint64_t seed, struct mig_error *err)
{
	memset(cp, 0, sizeof(*cp));
	if (!chaos_hostile_name(k))
		return mig_error_set(err, -EINVAL, "unknown hostile client kind %d", (int)k);
	/* a flood holds few at a time; the others hold them all */
	if (count == 0 || (k != CHAOS_HOSTILE_FLOOD && count > HOSTILE_COUNT_MAX))
		return mig_error_set(err, -EINVAL, "a hostile campaign makes 1 to %d connections "
				     "at once, not %u", HOSTILE_COUNT_MAX, count);
	cp->kind = k;
	cp->count = count;
	cp->hold_ms = hold_ms;
	cp->rng = seed;
	return target_resolve(cp, endpoint, err);
}

int chaos_hostile_run(enum chaos_hostile_kind k, const char *endpoint, unsigned count,
		      unsigned hold_ms, uint64_t seed, struct chaos_hostile_report *rep,
		      struct mig_error *err)
{
	struct campaign cp;
	int r = campaign_init(&cp, k, endpoint, count, hold_ms, seed, err);

	if (r == 0)
		r = campaign_run(&cp, err);
	if (rep)
		*rep = cp.rep;
	return r;
}

struct chaos_hostile {
	struct campaign cp;
	pthread_t thread;
	atomic_bool stop, done;
	struct mig_error err;         /* the thread's; its code is in rep.error */
};

static void *hostile_thread(void *arg)
{
	struct chaos_hostile *h = arg;

	(void)campaign_run(&h->cp, &h->err);
	atomic_store(&h->done, true);
	return NULL;
}

int chaos_hostile_start(enum chaos_hostile_kind k, const char *endpoint, unsigned count,
			unsigned hold_ms, uint64_t seed, struct chaos_hostile **ret,
			struct mig_error *err)
{
	struct chaos_hostile *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return mig_error_set(err, -ENOMEM, "out of memory");
	r = campaign_init(&h->cp, k, endpoint, count, hold_ms, seed, err);
	if (r < 0) {
		free(h);
		return r;
	}
	atomic_init(&h->stop, false);
	atomic_init(&h->done, false);
	h->cp.stop = &h->stop;
	r = pthread_create(&h->thread, NULL, hostile_thread, h);
	if (r) {
		free(h);
		return mig_error_set(err, -r, "cannot start a hostile client thread: %s",
				     strerror(r));
	}
	*ret = h;
	return 0;
}

bool chaos_hostile_done(const struct chaos_hostile *h)
{
	return atomic_load(&h->done);
}

void chaos_hostile_stop(struct chaos_hostile *h, struct chaos_hostile_report *rep)
{
	if (!h)
		return;
	atomic_store(&h->stop, true);
	pthread_join(h->thread, NULL);
	if (rep)
		*rep = h->cp.rep;
	free(h);
}
