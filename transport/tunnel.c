// SPDX-License-Identifier: MIT
/*
 * The tunnel (include/migrate/tunnel.h, docs/protocol.md §11): unix-socket
 * connections carried between hosts, one authenticated stream each, the
 * destination's connections opened in the order the source accepted them.
 *
 * Threads: one accept loop per side, and one pump per channel with its own
 * io_uring, moving bytes both ways.  The pump keeps one receive or send in
 * flight per direction; a direction's end is a TUNNEL_END frame.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <migrate/aead.h>
#include <migrate/control.h>
#include <migrate/stream.h>
#include <migrate/tunnel.h>
#include <migrate/wire-order.h>

#include "util.h"

/* A stream must prove itself this soon after it connects; the source
 * waits as long for the destination's answer (which comes once the
 * destination's own connection is made). */
#define HELLO_MS 10000
/* How long the destination holds a channel for the one before it. */
#define ORDER_WAIT_MS 10000
#define POLL_MS 200
#define HDR sizeof(struct mig_frame_hdr)

struct channel {
	struct mig_tunnel *t;
	unsigned ordinal, kind;
	int ufd;                  /* the unix socket's connection */
	int sfd;                  /* the stream */
	uint64_t tx_seq, rx_seq;  /* the stream's, after its STREAM_HELLO */
	struct xport_aead *aead;  /* sealed (NULL: clear) */
	pthread_t thread;
	bool done;
};

struct mig_tunnel {
	bool source;
	uint8_t id[16];
	uint8_t secret[MIG_SECRET_LEN];
	char dest_addr[128];
	int lfd[_MIG_TUNNEL_KINDS];       /* source: its listeners */
	char paths[_MIG_TUNNEL_KINDS][sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;                    /* destination */
	unsigned delay_ordinal, delay_ms;
	uint32_t encrypt;                 /* enum mig_encrypt */
	mig_fault_fn fault;
	void *fault_arg;
	int ctl_fd;                       /* the control stream */
	int wake[2];                      /* stops the accept loop */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned next;                    /* source: next ordinal; destination: next to connect */
	bool seen[MIG_TUNNEL_MAX_CHANNELS + 1];
	unsigned order[MIG_TUNNEL_MAX_CHANNELS];
	unsigned norder;
	struct channel *chans[MIG_TUNNEL_MAX_CHANNELS + 1];
	unsigned greeting;                /* destination: connections proving themselves */
	bool ctl_closed;
	struct mig_tunnel_stats st;
	atomic_uint_fast64_t bytes_out, bytes_in;
};

static const char *const kind_names[_MIG_TUNNEL_KINDS] = {
	"control", "libvirt", "qemu", "nbd",
};

const char *mig_tunnel_kind_name(unsigned kind)
{
	return kind < _MIG_TUNNEL_KINDS ? kind_names[kind] : NULL;
}

static void tunnel_fail(struct mig_tunnel *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void tunnel_fail(struct mig_tunnel *t, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&t->lock);
	if (!t->st.error[0]) {
		va_start(ap, fmt);
		vsnprintf(t->st.error, sizeof(t->st.error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&t->lock);
}

/* ---- the pump: one channel, both directions ---- */

enum { UP = 1, DOWN = 2 };
enum up_state { UP_RECV, UP_SEND, UP_DONE };
enum down_state { DN_HDR, DN_PAYLOAD, DN_SEND, DN_DONE };

struct pump {
	struct channel *c;
	struct io_uring ring;
	unsigned inflight;
	enum up_state us;
	enum down_state ds;
	bool up_eof;
	uint8_t *ubuf, *dbuf;     /* HDR + MIG_TUNNEL_CHUNK each */
	size_t ulen, uoff;
	size_t dneed, dgot;
	char err[600];
};

static int post(struct pump *p, int dir)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
	struct channel *c = p->c;

	if (!sqe)
		return -EBUSY;
	if (dir == UP && p->us == UP_RECV)
		io_uring_prep_recv(sqe, c->ufd, p->ubuf + HDR, MIG_TUNNEL_CHUNK, 0);
	else if (dir == UP)
		io_uring_prep_send(sqe, c->sfd, p->ubuf + p->uoff, p->ulen - p->uoff, MSG_NOSIGNAL);
	else if (p->ds == DN_HDR || p->ds == DN_PAYLOAD)
		io_uring_prep_recv(sqe, c->sfd, p->dbuf + p->dgot, p->dneed - p->dgot, MSG_WAITALL);
	else
		io_uring_prep_send(sqe, c->ufd, p->dbuf + HDR + p->dgot, p->dneed - p->dgot,
				   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, (uint64_t)dir);
	p->inflight++;
	return io_uring_submit(&p->ring) < 0 ? -EIO : 0;
}

/* Chaos mode: the fault hook at a frame of this channel (0: go on). */
static int fault_at(struct pump *p, enum mig_fault_kind kind, uint16_t type, uint64_t seq)
{
	struct mig_tunnel *t = p->c->t;
	struct mig_fault_point pt = { .kind = kind, .frame_type = type,
				      .stream = p->c->ordinal, .seq = seq };
	struct mig_error e = { 0 };

	if (!t->fault || t->fault(t->fault_arg, &pt, &e) == 0)
		return 0;
	return snprintf(p->err, sizeof(p->err), "%s", e.msg), -1;
}

/* A frame of `type` with n bytes already at ubuf + HDR, sealed in front. */
static int up_frame(struct pump *p, uint16_t type, size_t n)
{
	struct iovec iov = { p->ubuf + HDR, n };
	struct mig_frame_hdr h;

	if (fault_at(p, MIG_FAULT_FRAME_SEND, type, p->c->tx_seq + 1) < 0)
		return -1;
	if (p->c->aead) {
		struct mig_error e = { 0 };

		/* in place, the tag right after the bytes, and no sum */
		mig_frame_header(&h, type, 0, ++p->c->tx_seq, n);
		if (xport_aead_seal(p->c->aead, &h, 0, &iov, n ? 1 : 0, p->ubuf + HDR + n, &e) < 0)
			return snprintf(p->err, sizeof(p->err), "%s", e.msg), -1;
		n += XPORT_AEAD_TAG;
	} else {
		mig_frame_seal(&h, type, 0, ++p->c->tx_seq, &iov, n ? 1 : 0);
	}
	memcpy(p->ubuf, &h, HDR);
	p->ulen = HDR + n;
	p->uoff = 0;
	p->us = UP_SEND;
	return 0;
}

static int up_done(struct pump *p, int res)
{
	if (p->us == UP_RECV) {
		if (res < 0)
			return snprintf(p->err, sizeof(p->err), "reading the %s connection: %s",
					kind_names[p->c->kind], strerror(-res)), -1;
		if (res == 0)
			p->up_eof = true;
		else
			atomic_fetch_add(p->c->t->source ? &p->c->t->bytes_out : &p->c->t->bytes_in,
					 (uint64_t)res);
		if (up_frame(p, res ? MIG_FRAME_TUNNEL_DATA : MIG_FRAME_TUNNEL_END, (size_t)res) < 0)
			return -1;
		return post(p, UP);
	}
	if (res <= 0)
		return snprintf(p->err, sizeof(p->err), "sending on the stream: %s",
				strerror(res ? -res : EPIPE)), -1;
	p->uoff += (size_t)res;
	if (p->uoff < p->ulen)
		return post(p, UP);
	if (p->up_eof) {
		p->us = UP_DONE;
		return 0;
	}
	p->us = UP_RECV;
	return post(p, UP);
}

/* A whole header is in: it must be the next TUNNEL_DATA or TUNNEL_END. */
static int down_header(struct pump *p)
{
	struct mig_frame_hdr h;
	struct mig_error e = { 0 };
	uint16_t type;

	memcpy(&h, p->dbuf, HDR);
	if (mig_frame_check_header(&h, p->c->rx_seq + 1, &e) < 0 ||
	    xport_sealing_check(&h, p->c->aead != NULL, &e) < 0)
		return snprintf(p->err, sizeof(p->err), "%s", e.msg), -1;
	type = le16toh(h.type);
	if (type != MIG_FRAME_TUNNEL_DATA && type != MIG_FRAME_TUNNEL_END)
		return snprintf(p->err, sizeof(p->err), "a %s frame on a tunnel stream",
				mig_frame_type_to_string(type)), -1;
	if (p->c->aead && le64toh(h.checksum))
		return snprintf(p->err, sizeof(p->err), "a sealed %s frame says data follows it",
				mig_frame_type_to_string(type)), -1;
	p->dneed = HDR + le32toh(h.length) + (p->c->aead ? XPORT_AEAD_TAG : 0);
	if (type == MIG_FRAME_TUNNEL_DATA && !h.length)
		return snprintf(p->err, sizeof(p->err), "an empty TUNNEL_DATA frame"), -1;
	p->ds = DN_PAYLOAD;
	return 0;
}

/* The whole frame is in: checked, then its bytes go on (or its end). */
static int down_frame(struct pump *p)
{
	struct mig_frame_hdr h;
	struct mig_error e = { 0 };

	memcpy(&h, p->dbuf, HDR);
	if (p->c->aead) {
		struct iovec pl = { p->dbuf + HDR, le32toh(h.length) };

		if (xport_aead_open(p->c->aead, &h, &pl, pl.iov_len ? 1 : 0,
				    p->dbuf + HDR + pl.iov_len, &e) < 0)
			return snprintf(p->err, sizeof(p->err), "%s", e.msg), -1;
		p->dneed -= XPORT_AEAD_TAG;
	} else if (mig_frame_check_payload(&h, p->dbuf + HDR, &e) < 0) {
		return snprintf(p->err, sizeof(p->err), "%s", e.msg), -1;
	}
	p->c->rx_seq++;
	if (fault_at(p, MIG_FAULT_FRAME_RECV, le16toh(h.type), p->c->rx_seq) < 0)
		return -1;
	if (le16toh(h.type) == MIG_FRAME_TUNNEL_END) {
		if (p->dneed != HDR)
			return snprintf(p->err, sizeof(p->err), "a TUNNEL_END frame with data"), -1;
		shutdown(p->c->ufd, SHUT_WR);
		p->ds = DN_DONE;
		return 0;
	}
	atomic_fetch_add(p->c->t->source ? &p->c->t->bytes_in : &p->c->t->bytes_out,
			 p->dneed - HDR);
	p->dneed -= HDR;
	p->dgot = 0;
	p->ds = DN_SEND;
	return post(p, DOWN);
}

static int down_done(struct pump *p, int res)
{
	if (p->ds == DN_SEND) {
		if (res <= 0)
			return snprintf(p->err, sizeof(p->err), "writing the %s connection: %s",
					kind_names[p->c->kind], strerror(res ? -res : EPIPE)), -1;
		p->dgot += (size_t)res;
		if (p->dgot < p->dneed)
			return post(p, DOWN);
		p->ds = DN_HDR;
		p->dgot = 0;
		p->dneed = HDR;
		return post(p, DOWN);
	}
	if (res < 0)
		return snprintf(p->err, sizeof(p->err), "reading the stream: %s",
				strerror(-res)), -1;
	if (res == 0)
		return snprintf(p->err, sizeof(p->err), "the stream ended without TUNNEL_END "
				"(the other agent or its link is gone)"), -1;
	p->dgot += (size_t)res;
	if (p->dgot < p->dneed)
		return post(p, DOWN);
	if (p->ds == DN_HDR && down_header(p) < 0)
		return -1;
	if (p->ds == DN_PAYLOAD && p->dgot == p->dneed)
		return down_frame(p);
	return post(p, DOWN);
}

static void *pump_thread(void *arg)
{
	struct channel *c = arg;
	struct mig_tunnel *t = c->t;
	struct pump p = { .c = c, .us = UP_RECV, .ds = DN_HDR, .dneed = HDR };
	unsigned wait_errors = 0;
	bool failed = false;

	p.ubuf = malloc(HDR + MIG_TUNNEL_CHUNK + XPORT_AEAD_TAG);
	p.dbuf = malloc(HDR + MIG_TUNNEL_CHUNK + XPORT_AEAD_TAG);
	if (!p.ubuf || !p.dbuf || io_uring_queue_init(4, &p.ring, 0) < 0) {
		tunnel_fail(t, "%s channel %u: cannot set up its io_uring", kind_names[c->kind],
			    c->ordinal);
		goto out_free;
	}
	if (post(&p, UP) < 0 || post(&p, DOWN) < 0) {
		snprintf(p.err, sizeof(p.err), "cannot submit to its io_uring");
		failed = true;
	}
	while (p.inflight) {
		struct io_uring_cqe *cqe;
		int dir, res, r = io_uring_wait_cqe(&p.ring, &cqe);

		/* a stop and continue of the process (SIGSTOP, a debugger)
		 * interrupts the wait: nothing happened to the channel */
		if (r == -EINTR)
			continue;
		if (r < 0) {
			/* the ops in flight still use the buffers: the
			 * shutdowns make them end, and they are reaped */
			if (!failed)
				snprintf(p.err, sizeof(p.err), "waiting on its io_uring: %s",
					 strerror(-r));
			failed = true;
			shutdown(c->ufd, SHUT_RDWR);
			shutdown(c->sfd, SHUT_RDWR);
			if (++wait_errors > 100)
				break;
			continue;
		}
		dir = (int)io_uring_cqe_get_data64(cqe);
		res = cqe->res;
		io_uring_cqe_seen(&p.ring, cqe);
		p.inflight--;
		if (failed)
			continue;
		if ((dir == UP ? up_done(&p, res) : down_done(&p, res)) < 0) {
			/* one side broke: both connections are reset, so that
			 * each peer sees the failure at once */
			failed = true;
			shutdown(c->ufd, SHUT_RDWR);
			shutdown(c->sfd, SHUT_RDWR);
		}
	}
	if (failed && !atomic_load(&t->stop))
		tunnel_fail(t, "%s channel %u: %s", kind_names[c->kind], c->ordinal, p.err);
	io_uring_queue_exit(&p.ring);
out_free:
	free(p.ubuf);
	free(p.dbuf);
	pthread_mutex_lock(&t->lock);
	c->done = true;
	t->st.open--;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* The channel is set up: its pump runs from here. */
static int channel_run(struct mig_tunnel *t, struct channel *c)
{
	pthread_mutex_lock(&t->lock);
	t->chans[c->ordinal] = c;
	t->st.channels[c->kind]++;
	t->st.open++;
	t->st.sealed += c->aead != NULL;
	pthread_mutex_unlock(&t->lock);
	if (pthread_create(&c->thread, NULL, pump_thread, c)) {
		pthread_mutex_lock(&t->lock);
		t->chans[c->ordinal] = NULL;
		t->st.open--;
		pthread_mutex_unlock(&t->lock);
		return -EAGAIN;
	}
	return 0;
}

/* ---- the source ---- */

/* Opens stream `ordinal` of `kind` and waits for the destination's
 * answer, which comes once its own connection is made.  The fd, or <0. */
static int stream_open(struct mig_tunnel *t, unsigned ordinal, unsigned kind, uint64_t *tx,
		       uint64_t *rx, struct xport_aead **aead, struct mig_error *err)
{
	struct mig_stream_hello h = { 0 }, w;
	struct xport_endpoint ep;
	struct xport_conn c;
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };
	char url[160];
	int fd, r;

	snprintf(url, sizeof(url), "tcp://%s", t->dest_addr);
	r = xport_endpoint_parse(url, &ep, err);
	if (r < 0)
		return r;
	fd = xport_connect(&ep, HELLO_MS, err);
	if (fd < 0)
		return fd;
	r = xport_conn_init(&c, fd, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	memcpy(h.id, t->id, 16);
	h.index = ordinal;
	h.nstreams = kind;
	/* the control stream carries nothing after its hello */
	h.flags = ordinal && mig_stream_seals(t->encrypt, fd) ? MIG_STREAM_F_SEALED : 0;
	xport_random(h.nonce, sizeof(h.nonce));
	mig_stream_hello_seal(&h, t->secret, false);
	w = h;
	mig_wire_le(&mig_wl_stream_hello, &w, 1);
	r = xport_conn_send(&c, MIG_FRAME_STREAM_HELLO, 0, &w, sizeof(w), err);
	if (r >= 0)
		r = xport_conn_recv(&c, &fh, &pl, HELLO_MS, err);
	if (r >= 0 && fh.type == MIG_FRAME_ERROR) {
		struct mig_error_msg m;

		r = mig_error_set(err, mig_error_msg_parse(pl.data, pl.len, &m, -EACCES), "%s",
				  m.msg);
	} else if (r >= 0 && (fh.type != MIG_FRAME_STREAM_HELLO || pl.len != sizeof(w))) {
		r = mig_error_set(err, -EPROTO, "unexpected answer to a tunnel STREAM_HELLO");
	} else if (r >= 0) {
		memcpy(&w, pl.data, sizeof(w));
		mig_wire_le(&mig_wl_stream_hello, &w, 1);
		memcpy(w.nonce, h.nonce, sizeof(w.nonce));
		if (memcmp(w.id, h.id, 16) || w.index != ordinal || w.nstreams != kind ||
		    w.flags != h.flags || !mig_stream_hello_proves(&w, t->secret, true))
			r = mig_error_set(err, -EACCES, "the destination could not prove it "
					  "belongs to this migration");
	}
	mig_buf_free(&pl);
	*tx = c.tx_seq;
	*rx = c.rx_seq;
	c.fd = -1;                /* ours now; the conn's ring goes */
	xport_conn_close(&c);
	*aead = NULL;
	if (r >= 0 && (h.flags & MIG_STREAM_F_SEALED))
		r = mig_stream_keys(t->secret, &h, true, aead, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

static void src_accept(struct mig_tunnel *t, unsigned kind)
{
	struct mig_error err = { 0 };
	struct channel *c;
	unsigned ordinal;
	int ufd = accept4(t->lfd[kind], NULL, NULL, SOCK_CLOEXEC);

	if (ufd < 0)
		return;
	pthread_mutex_lock(&t->lock);
	ordinal = t->next <= MIG_TUNNEL_MAX_CHANNELS ? t->next++ : 0;
	pthread_mutex_unlock(&t->lock);
	c = ordinal ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		tunnel_fail(t, "%s connection refused: the tunnel carries %u connections at most",
			    kind_names[kind], MIG_TUNNEL_MAX_CHANNELS);
		goto refuse;
	}
	*c = (struct channel){ .t = t, .ordinal = ordinal, .kind = kind, .ufd = ufd };
	c->sfd = stream_open(t, ordinal, kind, &c->tx_seq, &c->rx_seq, &c->aead, &err);
	if (c->sfd < 0) {
		tunnel_fail(t, "%s channel %u: %s", kind_names[kind], ordinal, err.msg);
		free(c);
		goto refuse;
	}
	if (channel_run(t, c) < 0) {
		close(c->sfd);
		xport_aead_free(c->aead);
		free(c);
		goto refuse;
	}
	return;
refuse:
	pthread_mutex_lock(&t->lock);
	t->st.refused++;
	pthread_mutex_unlock(&t->lock);
	close(ufd);
}

static void *src_loop(void *arg)
{
	struct mig_tunnel *t = arg;

	while (!atomic_load(&t->stop)) {
		struct pollfd p[_MIG_TUNNEL_KINDS + 1];
		unsigned kinds[_MIG_TUNNEL_KINDS + 1], n = 0;

		p[n++] = (struct pollfd){ .fd = t->wake[0], .events = POLLIN };
		for (unsigned k = 1; k < _MIG_TUNNEL_KINDS; k++)
			if (t->lfd[k] >= 0) {
				kinds[n] = k;
				p[n++] = (struct pollfd){ .fd = t->lfd[k], .events = POLLIN };
			}
		if (poll(p, n, POLL_MS) <= 0)
			continue;
		if (p[0].revents)
			break;
		for (unsigned i = 1; i < n; i++)
			if (p[i].revents & POLLIN)
				src_accept(t, kinds[i]);
	}
	return NULL;
}

static int listen_unix(const char *path, struct mig_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return mig_error_set(err, -ENAMETOOLONG, "%s: the path is too long for a unix "
				     "socket (%zu bytes at most)", path, sizeof(sa.sun_path) - 1);
	str_copy(sa.sun_path, sizeof(sa.sun_path), path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return mig_error_set(err, -errno, "socket: %s", strerror(errno));
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0666) < 0 || listen(fd, MIG_TUNNEL_MAX_CHANNELS) < 0) {
		int e = errno;

		close(fd);
		unlink(path);
		return mig_error_set(err, -e, "listening on %s: %s", path, strerror(e));
	}
	return fd;
}

static struct mig_tunnel *tunnel_new(const uint8_t *id, const uint8_t *secret)
{
	struct mig_tunnel *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	memcpy(t->id, id, 16);
	memcpy(t->secret, secret, MIG_SECRET_LEN);
	for (unsigned k = 0; k < _MIG_TUNNEL_KINDS; k++)
		t->lfd[k] = -1;
	t->listen_fd = t->ctl_fd = -1;
	t->next = 1;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	if (pipe2(t->wake, O_CLOEXEC) < 0) {
		free(t);
		return NULL;
	}
	return t;
}

int mig_tunnel_src_start(const struct mig_tunnel_src *o, struct mig_tunnel **ret,
			 struct mig_error *err)
{
	struct mig_tunnel *t = tunnel_new(o->id, o->secret);
	struct xport_aead *ctl_aead;   /* never: the control stream is not sealed */
	uint64_t tx, rx;
	int r;

	*ret = NULL;
	if (!t)
		return mig_error_set(err, -ENOMEM, "out of memory");
	t->source = true;
	t->encrypt = o->encrypt;
	str_copy(t->dest_addr, sizeof(t->dest_addr), o->dest_addr);
	t->fault = o->fault;
	t->fault_arg = o->fault_arg;
	r = t->ctl_fd = stream_open(t, 0, MIG_TUNNEL_CONTROL, &tx, &rx, &ctl_aead, err);
	for (unsigned k = 1; r >= 0 && k < _MIG_TUNNEL_KINDS; k++) {
		if (!o->paths[k] || !o->paths[k][0])
			continue;
		str_copy(t->paths[k], sizeof(t->paths[k]), o->paths[k]);
		r = t->lfd[k] = listen_unix(o->paths[k], err);
		if (r < 0)
			t->paths[k][0] = '\0';
	}
	if (r >= 0) {
		t->st.control_up = true;
		r = pthread_create(&t->thread, NULL, src_loop, t) ? -EAGAIN : 0;
		if (r < 0)
			mig_error_set(err, r, "cannot start the tunnel's thread");
		t->thread_started = r == 0;
	}
	if (r < 0) {
		mig_tunnel_stop(t);
		return r;
	}
	*ret = t;
	return 0;
}

/* ---- the destination ---- */

static int connect_unix(const char *path, struct mig_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!path[0])
		return mig_error_set(err, -ENOENT, "this tunnel carries no such connections");
	str_copy(sa.sun_path, sizeof(sa.sun_path), path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return mig_error_set(err, -errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return mig_error_set(err, -e, "connecting to %s: %s", path, strerror(e));
	}
	return fd;
}

struct greeting {
	struct mig_tunnel *t;
	int fd;
	char targets[_MIG_TUNNEL_KINDS][sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void refuse_stream(struct xport_conn *c, int code, const char *msg)
{
	struct mig_error_msg m;

	mig_error_msg_fill(&m, code, msg);
	xport_conn_send(c, MIG_FRAME_ERROR, 0, &m, sizeof(m), NULL);
}

/* Channel `ordinal` may connect once every channel before it has: the
 * order the source accepted them in.  false when the one before never
 * comes (the source failed it, or the tunnel stops). */
static bool wait_turn(struct mig_tunnel *t, unsigned ordinal)
{
	struct timespec until;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ORDER_WAIT_MS / 1000;
	pthread_mutex_lock(&t->lock);
	while (t->next != ordinal && !atomic_load(&t->stop))
		if (pthread_cond_timedwait(&t->cond, &t->lock, &until) == ETIMEDOUT)
			break;
	ok = t->next == ordinal && !atomic_load(&t->stop);
	pthread_mutex_unlock(&t->lock);
	return ok;
}

static void turn_done(struct mig_tunnel *t, unsigned ordinal)
{
	pthread_mutex_lock(&t->lock);
	if (t->next == ordinal) {
		t->order[t->norder++] = ordinal;
		t->next++;
	}
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

/* One connection to the tunnel's port: it proves itself, takes its turn,
 * and becomes a channel (or the control stream). */
static void greet(struct greeting *g)
{
	struct mig_tunnel *t = g->t;
	struct mig_error err = { 0 };
	struct mig_stream_hello h, w;
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };
	struct xport_conn c;
	struct channel *ch = NULL;
	char why[900];
	bool fresh = false;
	int ufd = -1, r;

	if (xport_conn_init(&c, g->fd, &err) < 0) {
		close(g->fd);
		return;
	}
	r = xport_conn_recv(&c, &fh, &pl, HELLO_MS, &err);
	if (r < 0 || fh.type != MIG_FRAME_STREAM_HELLO || pl.len != sizeof(h)) {
		refuse_stream(&c, -EPROTO, "the first frame of a tunnel stream must be a valid "
			      "STREAM_HELLO");
		goto refused;
	}
	memcpy(&h, pl.data, sizeof(h));
	mig_wire_le(&mig_wl_stream_hello, &h, 1);
	pthread_mutex_lock(&t->lock);
	if (!memcmp(h.id, t->id, 16) && mig_stream_hello_proves(&h, t->secret, false) &&
	    h.index <= MIG_TUNNEL_MAX_CHANNELS && h.nstreams < _MIG_TUNNEL_KINDS &&
	    (h.index == 0) == (h.nstreams == MIG_TUNNEL_CONTROL) && !t->seen[h.index] &&
	    !(h.flags & ~MIG_STREAM_F_KNOWN) && (h.index || !h.flags))
		fresh = t->seen[h.index] = true;
	pthread_mutex_unlock(&t->lock);
	if (!fresh) {
		refuse_stream(&c, -EACCES, "tunnel stream refused: it does not prove it belongs "
			      "to this migration (wrong id, secret, kind, or a channel already "
			      "open)");
		goto refused;
	}
	if (h.index) {
		if (t->delay_ordinal == h.index)
			usleep(t->delay_ms * 1000);
		if (!wait_turn(t, h.index)) {
			snprintf(why, sizeof(why), "%s channel %u: the channel before it never "
				 "came", kind_names[h.nstreams], h.index);
			tunnel_fail(t, "%s", why);
			refuse_stream(&c, -ETIMEDOUT, why);
			goto refused;
		}
		if (!(h.flags & MIG_STREAM_F_SEALED) && mig_stream_seals(t->encrypt, g->fd)) {
			turn_done(t, h.index);
			snprintf(why, sizeof(why), "%s channel %u refused: it comes in clear, and this "
				 "tunnel's channels must be encrypted (--encrypt %s)",
				 kind_names[h.nstreams], h.index, mig_encrypt_to_string(t->encrypt));
			tunnel_fail(t, "%s", why);
			refuse_stream(&c, -EACCES, why);
			goto refused;
		}
		ufd = connect_unix(g->targets[h.nstreams], &err);
		turn_done(t, h.index);
		if (ufd < 0) {
			snprintf(why, sizeof(why), "destination: %s channel %u: %s",
				 kind_names[h.nstreams], h.index, err.msg);
			tunnel_fail(t, "%s", why);
			refuse_stream(&c, err.code, why);
			goto refused;
		}
	}
	w = h;
	mig_stream_hello_seal(&w, t->secret, true);
	mig_wire_le(&mig_wl_stream_hello, &w, 1);
	if (xport_conn_send(&c, MIG_FRAME_STREAM_HELLO, 0, &w, sizeof(w), &err) < 0)
		goto refused;
	if (!h.index) {
		pthread_mutex_lock(&t->lock);
		t->ctl_fd = g->fd;
		t->st.control_up = true;
		pthread_mutex_unlock(&t->lock);
		c.fd = -1;
		xport_conn_close(&c);
		mig_buf_free(&pl);
		return;
	}
	ch = calloc(1, sizeof(*ch));
	if (ch && (h.flags & MIG_STREAM_F_SEALED) &&
	    mig_stream_keys(t->secret, &h, false, &ch->aead, &err) < 0) {
		tunnel_fail(t, "%s channel %u: %s", kind_names[h.nstreams], h.index, err.msg);
		free(ch);
		goto refused;
	}
	if (ch) {
		struct xport_aead *k = ch->aead;

		*ch = (struct channel){ .t = t, .ordinal = h.index, .kind = h.nstreams, .ufd = ufd,
					.sfd = g->fd, .tx_seq = c.tx_seq, .rx_seq = c.rx_seq,
					.aead = k };
		c.fd = -1;
		xport_conn_close(&c);
		mig_buf_free(&pl);
		if (channel_run(t, ch) == 0)
			return;
		close(ch->sfd);
		close(ufd);
		xport_aead_free(ch->aead);
		free(ch);
		pthread_mutex_lock(&t->lock);
		t->st.refused++;
		pthread_mutex_unlock(&t->lock);
		return;
	}
refused:
	if (ufd >= 0)
		close(ufd);
	mig_buf_free(&pl);
	xport_conn_close(&c);
	pthread_mutex_lock(&t->lock);
	t->st.refused++;
	pthread_mutex_unlock(&t->lock);
}

static void *greet_thread(void *arg)
{
	struct greeting *g = arg;
	struct mig_tunnel *t = g->t;

	greet(g);
	free(g);
	pthread_mutex_lock(&t->lock);
	t->greeting--;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void dst_accept(struct mig_tunnel *t, const struct mig_tunnel_dst *o)
{
	int fd = accept4(t->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct greeting *g;
	pthread_t th;
	bool room;

	if (fd < 0)
		return;
	xport_tune_socket(fd);
	pthread_mutex_lock(&t->lock);
	room = t->greeting < MIG_TUNNEL_MAX_CHANNELS;
	if (room)
		t->greeting++;
	pthread_mutex_unlock(&t->lock);
	g = room ? calloc(1, sizeof(*g)) : NULL;
	if (g) {
		g->t = t;
		g->fd = fd;
		for (unsigned k = 0; k < _MIG_TUNNEL_KINDS; k++)
			str_copy(g->targets[k], sizeof(g->targets[k]), o->targets[k] ?: "");
		if (!pthread_create(&th, NULL, greet_thread, g)) {
			pthread_detach(th);
			return;
		}
		free(g);
	}
	if (room) {
		pthread_mutex_lock(&t->lock);
		t->greeting--;
		pthread_mutex_unlock(&t->lock);
	}
	close(fd);
}

struct dst_loop_arg {
	struct mig_tunnel *t;
	struct mig_tunnel_dst o;
	char targets[_MIG_TUNNEL_KINDS][sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void *dst_loop(void *arg)
{
	struct dst_loop_arg *a = arg;
	struct mig_tunnel *t = a->t;

	while (!atomic_load(&t->stop)) {
		struct pollfd p[3] = {
			{ .fd = t->wake[0], .events = POLLIN },
			{ .fd = t->listen_fd, .events = POLLIN },
			{ .fd = -1, .events = POLLIN },
		};
		bool closed;

		pthread_mutex_lock(&t->lock);
		closed = t->ctl_closed;
		p[2].fd = closed ? -1 : t->ctl_fd;
		pthread_mutex_unlock(&t->lock);
		if (poll(p, 3, POLL_MS) <= 0)
			continue;
		if (p[0].revents)
			break;
		if (p[1].revents & POLLIN)
			dst_accept(t, &a->o);
		if (p[2].fd >= 0 && p[2].revents) {
			/* the source ends the tunnel by closing its control
			 * stream; nothing else travels on it */
			char b;

			if (recv(p[2].fd, &b, 1, MSG_DONTWAIT) <= 0) {
				pthread_mutex_lock(&t->lock);
				t->ctl_closed = true;
				t->st.control_up = false;
				pthread_cond_broadcast(&t->cond);
				pthread_mutex_unlock(&t->lock);
			}
		}
	}
	free(a);
	return NULL;
}

int mig_tunnel_dst_start(const struct mig_tunnel_dst *o, struct mig_tunnel **ret,
			 struct mig_error *err)
{
	struct mig_tunnel *t = tunnel_new(o->id, o->secret);
	struct dst_loop_arg *a = calloc(1, sizeof(*a));

	*ret = NULL;
	if (!t || !a) {
		free(a);
		if (t)
			mig_tunnel_stop(t);
		close(o->listen_fd);
		return mig_error_set(err, -ENOMEM, "out of memory");
	}
	t->listen_fd = o->listen_fd;
	t->delay_ordinal = o->delay_ordinal;
	t->encrypt = o->encrypt;
	t->fault = o->fault;
	t->fault_arg = o->fault_arg;
	t->delay_ms = o->delay_ms;
	a->t = t;
	a->o = *o;
	for (unsigned k = 0; k < _MIG_TUNNEL_KINDS; k++) {
		str_copy(a->targets[k], sizeof(a->targets[k]), o->targets[k] ?: "");
		a->o.targets[k] = a->targets[k];
	}
	if (pthread_create(&t->thread, NULL, dst_loop, a)) {
		free(a);
		mig_tunnel_stop(t);
		return mig_error_set(err, -EAGAIN, "cannot start the tunnel's thread");
	}
	t->thread_started = true;
	*ret = t;
	return 0;
}

/* ---- both ---- */

void mig_tunnel_stats(struct mig_tunnel *t, struct mig_tunnel_stats *st)
{
	pthread_mutex_lock(&t->lock);
	*st = t->st;
	pthread_mutex_unlock(&t->lock);
	st->bytes_out = atomic_load(&t->bytes_out);
	st->bytes_in = atomic_load(&t->bytes_in);
}

unsigned mig_tunnel_order(struct mig_tunnel *t, unsigned *ordinals, unsigned max)
{
	unsigned n;

	pthread_mutex_lock(&t->lock);
	n = t->norder < max ? t->norder : max;
	memcpy(ordinals, t->order, n * sizeof(*ordinals));
	pthread_mutex_unlock(&t->lock);
	return n;
}

bool mig_tunnel_wait_closed(struct mig_tunnel *t, int timeout_ms)
{
	struct timespec until;
	bool closed;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&t->lock);
	while (!t->ctl_closed)
		if (pthread_cond_timedwait(&t->cond, &t->lock, &until) == ETIMEDOUT)
			break;
	closed = t->ctl_closed;
	pthread_mutex_unlock(&t->lock);
	return closed;
}

void mig_tunnel_stop(struct mig_tunnel *t)
{
	if (!t)
		return;
	atomic_store(&t->stop, true);
	if (write(t->wake[1], "x", 1) < 0) {
		/* the loop still sees the flag within POLL_MS */
	}
	if (t->thread_started)
		pthread_join(t->thread, NULL);
	pthread_mutex_lock(&t->lock);
	pthread_cond_broadcast(&t->cond);
	/* greeters end on their own clock (HELLO_MS at most) */
	while (t->greeting)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
	for (unsigned i = 1; i <= MIG_TUNNEL_MAX_CHANNELS; i++) {
		struct channel *c = t->chans[i];

		if (!c)
			continue;
		shutdown(c->ufd, SHUT_RDWR);
		shutdown(c->sfd, SHUT_RDWR);
		pthread_join(c->thread, NULL);
		close(c->ufd);
		close(c->sfd);
		xport_aead_free(c->aead);
		free(c);
	}
	for (unsigned k = 0; k < _MIG_TUNNEL_KINDS; k++) {
		if (t->lfd[k] >= 0)
			close(t->lfd[k]);
		if (t->paths[k][0])
			unlink(t->paths[k]);
	}
	if (t->listen_fd >= 0)
		close(t->listen_fd);
	if (t->ctl_fd >= 0)
		close(t->ctl_fd);
	close(t->wake[0]);
	close(t->wake[1]);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	free(t);
}
