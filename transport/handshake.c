// SPDX-License-Identifier: MIT
/*
 * The migration streams' handshake (docs/protocol.md §2.4): each stream's
 * first frame, both ways, is a STREAM_HELLO that proves its sender holds the
 * migration's secret.  The source connects the control stream and every data
 * stream and waits for their answers together; the destination reads every
 * connection that has not proven itself yet at once, each on its own short
 * clock, and answers, closes and counts the ones that fail.  Both ends leave
 * each stream having sent and received frame 1.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <migrate/aead.h>
#include <migrate/stream.h>
#include <migrate/wire-order.h>

#include "util.h"

#define POLL_MS 100
/* The source waits this long for the destination's answers. */
#define HELLO_TIMEOUT_MS 30000
/* The destination waits this long for all its streams; each connection
 * must prove itself within HELLO_WAIT_MS, and at most PENDING_MAX wait at
 * once: idle or slow strangers are dropped on their own clock, never on
 * the migration's. */
#define ACCEPT_TIMEOUT_MS 30000
/* How soon a wait for the streams sees that the migration was called off. */
#define CANCEL_POLL_MS 100
#define HELLO_WAIT_MS 5000
#define PENDING_MAX 32

/* STREAM_HELLO's proof. */
static void stream_mac(const uint8_t *secret, const char *label, const struct mig_stream_hello *h,
		       uint8_t out[XPORT_MAC_LEN])
{
	uint32_t idx = htole32(h->index), n = htole32(h->nstreams), fl = htole32(h->flags);
	struct iovec iov[] = {
		{ (void *)label, strlen(label) },
		{ (void *)h->id, sizeof(h->id) },
		{ &idx, sizeof(idx) },
		{ &n, sizeof(n) },
		{ (void *)h->nonce, sizeof(h->nonce) },
		{ &fl, sizeof(fl) },
	};

	xport_hmac(secret, MIG_SECRET_LEN, iov, 6, out);
}

static const char *hello_label(bool ack)
{
	return ack ? "migratectl-stream-ack" : "migratectl-stream";
}

void mig_stream_hello_seal(struct mig_stream_hello *h, const uint8_t *secret, bool ack)
{
	stream_mac(secret, hello_label(ack), h, h->mac);
}

bool mig_stream_hello_proves(const struct mig_stream_hello *h, const uint8_t *secret, bool ack)
{
	uint8_t want[XPORT_MAC_LEN];

	stream_mac(secret, hello_label(ack), h, want);
	return xport_mac_equal(want, h->mac, sizeof(want));
}

int mig_stream_keys(const uint8_t *secret, const struct mig_stream_hello *h, bool source,
		    struct xport_aead **ret, struct mig_error *err)
{
	uint8_t ctx[20];
	uint32_t idx = htole32(h->index);

	memcpy(ctx, h->id, 16);
	memcpy(ctx + 16, &idx, 4);
	return xport_aead_new(secret, MIG_SECRET_LEN, h->nonce, sizeof(h->nonce),
			      "migratectl stream", ctx, sizeof(ctx), source, ret, err);
}

static const char *const encrypt_names[_MIG_ENCRYPT_END] = {
	[MIG_ENCRYPT_AUTO] = "auto", [MIG_ENCRYPT_ALWAYS] = "always", [MIG_ENCRYPT_NEVER] = "never",
};

const char *mig_encrypt_to_string(uint32_t e)
{
	return e < _MIG_ENCRYPT_END ? encrypt_names[e] : NULL;
}

int mig_encrypt_from_string(const char *str)
{
	for (unsigned i = 0; i < _MIG_ENCRYPT_END; i++)
		if (!strcmp(str, encrypt_names[i]))
			return (int)i;
	return -EINVAL;
}

bool mig_stream_seals(uint32_t e, int fd)
{
	return e == MIG_ENCRYPT_ALWAYS || (e == MIG_ENCRYPT_AUTO && !xport_same_host(fd));
}

/* ---- the source's half ---- */

/* One stream being opened: connected, its STREAM_HELLO sent, then its
 * answer awaited together with the others'. */
struct opening {
	struct xport_conn c;
	struct mig_stream_hello h;
	int r;                    /* 1 waiting for the answer, 0 accepted, <0 failed */
	bool refused;             /* the destination answered ERROR */
	struct mig_error err;
};

/* Connect stream `index` (0: control) and send its STREAM_HELLO. */
static int stream_begin(const struct xport_streams *who, unsigned index, struct opening *op)
{
	struct mig_stream_hello w;
	struct xport_endpoint ep;
	char url[160];
	int fd, r;

	/* HOST:PORT, or unix:///PATH where both agents share a host */
	snprintf(url, sizeof(url), "%s%s", strstr(who->addr, "://") ? "" : "tcp://", who->addr);
	r = xport_endpoint_parse(url, &ep, &op->err);
	if (r < 0)
		return r;
	fd = xport_connect(&ep, 10000, &op->err);
	if (fd < 0)
		return fd;
	if (index && who->n == 1)
		xport_lone_stream(fd);
	/* A blocking framed exchange for the handshake; the fd goes to the
	 * engine's rings afterwards, the sequence numbers carried over. */
	r = xport_conn_init(&op->c, fd, &op->err);
	if (r < 0) {
		close(fd);
		op->c.fd = -1;
		return r;
	}
	memcpy(op->h.id, who->id, 16);
	op->h.index = index;
	op->h.nstreams = who->n;
	op->h.flags = mig_stream_seals(who->encrypt, fd) ? MIG_STREAM_F_SEALED : 0;
	xport_random(op->h.nonce, sizeof(op->h.nonce));
	mig_stream_hello_seal(&op->h, who->secret, false);
	w = op->h;
	mig_wire_le(&mig_wl_stream_hello, &w, 1);
	return xport_conn_send(&op->c, MIG_FRAME_STREAM_HELLO, 0, &w, sizeof(w), &op->err);
}

/* The destination's answer, once its first bytes are in: its own proof that
 * it holds the secret, or a refusal. */
static int stream_answer(struct opening *op, const uint8_t *secret)
{
	struct mig_stream_hello back;
	struct mig_frame_hdr fh;
	struct mig_buf pl = { 0 };
	int r;

	r = xport_conn_recv(&op->c, &fh, &pl, 0, &op->err);
	if (r >= 0 && fh.type == MIG_FRAME_ERROR) {
		struct mig_error_msg m;

		op->refused = true;
		r = mig_error_set(&op->err, mig_error_msg_parse(pl.data, pl.len, &m, -EACCES), "%s",
				  m.msg);
	} else if (r >= 0 && (fh.type != MIG_FRAME_STREAM_HELLO || pl.len != sizeof(back))) {
		r = mig_error_set(&op->err, -EPROTO, "unexpected answer to STREAM_HELLO");
	} else if (r >= 0) {
		memcpy(&back, pl.data, sizeof(back));
		mig_wire_le(&mig_wl_stream_hello, &back, 1);
		/* our own nonce: an answer replayed from another stream fails */
		memcpy(back.nonce, op->h.nonce, sizeof(back.nonce));
		if (memcmp(back.id, op->h.id, 16) || back.index != op->h.index ||
		    back.flags != op->h.flags || !mig_stream_hello_proves(&back, secret, true))
			r = mig_error_set(&op->err, -EACCES, "the destination could not prove it "
					  "belongs to this migration");
	}
	mig_buf_free(&pl);
	return r;
}

/* What went wrong with the streams, in one message: how many the
 * destination refused and why, or the first other failure. */
static int streams_error(const struct opening *op, unsigned total, struct mig_error *err)
{
	unsigned refused = 0, late = 0;
	int first_refused = -1, first_failed = -1;

	for (unsigned i = 0; i < total; i++) {
		if (op[i].r >= 0)
			continue;
		if (op[i].refused && refused++ == 0)
			first_refused = (int)i;
		if (op[i].r == -ETIMEDOUT && !op[i].refused)
			late++;
		if (!op[i].refused && first_failed < 0)
			first_failed = (int)i;
	}
	if (refused)
		return mig_error_set(err, op[first_refused].r, "%u of %u migration streams "
				     "refused by the destination: stream %d: %s", refused, total,
				     first_refused, op[first_refused].err.msg);
	if (late)
		return mig_error_set(err, -ETIMEDOUT, "the destination did not answer %u of "
				     "%u migration streams in %d s", late, total,
				     HELLO_TIMEOUT_MS / 1000);
	return mig_error_set(err, op[first_failed].r, "migration stream %d: %s", first_failed,
			     op[first_failed].err.msg);
}

/* The streams connect one after another (a connect to a listener is
 * quick), then wait for their answers together, so a slow answer costs its
 * time once, not once per stream. */
int xport_streams_open(const struct xport_streams *who, atomic_bool *cancel, int *fds,
		       struct mig_error *err)
{
	unsigned total = who->n + 1, waiting = 0;
	struct opening *op;
	struct pollfd p[MIG_MAX_STREAMS + 1];
	unsigned at[MIG_MAX_STREAMS + 1];
	uint64_t end;
	int r = 0;

	if (who->n < 1 || who->n > MIG_MAX_STREAMS)
		return mig_error_set(err, -EINVAL, "%u data streams: 1 to %u allowed", who->n,
				     MIG_MAX_STREAMS);
	op = calloc(total, sizeof(*op));
	if (!op)
		return mig_error_set(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < total; i++)
		op[i].c.fd = -1;
	for (unsigned i = 0; i < total && r >= 0; i++) {
		r = op[i].r = stream_begin(who, i, &op[i]);
		if (r >= 0) {
			op[i].r = 1;
			waiting++;
		} else {
			/* cannot reach it: the other streams would fare no better */
			mig_error_set(err, r, "migration stream %u: %s", i, op[i].err.msg);
		}
	}
	end = mig_now_ms() + HELLO_TIMEOUT_MS;
	while (r >= 0 && waiting) {
		unsigned n = 0;
		int ready;

		for (unsigned i = 0; i < total; i++)
			if (op[i].r == 1) {
				p[n] = (struct pollfd){ .fd = op[i].c.fd, .events = POLLIN };
				at[n++] = i;
			}
		ready = poll(p, n, POLL_MS);
		if (ready < 0 && errno != EINTR)
			r = mig_error_set(err, -errno, "waiting for the destination: poll: %s",
					  strerror(errno));
		for (unsigned k = 0; ready > 0 && k < n; k++) {
			if (!p[k].revents)
				continue;
			op[at[k]].r = stream_answer(&op[at[k]], who->secret);
			waiting--;
		}
		if (r >= 0 && cancel && atomic_load(cancel))
			r = mig_error_set(err, -ECANCELED, "cancelled");
		if (r >= 0 && waiting && mig_now_ms() > end) {
			for (unsigned i = 0; i < total; i++)
				if (op[i].r == 1)
					op[i].r = mig_error_set(&op[i].err, -ETIMEDOUT, "no answer");
			waiting = 0;
		}
	}
	for (unsigned i = 0; r >= 0 && i < total; i++)
		if (op[i].r < 0)
			r = streams_error(op, total, err);
	for (unsigned i = 0; who->aeads && i < total; i++) {
		who->aeads[i] = NULL;
		if (r >= 0 && (op[i].h.flags & MIG_STREAM_F_SEALED))
			r = mig_stream_keys(who->secret, &op[i].h, true, &who->aeads[i], err);
	}
	for (unsigned i = 0; r < 0 && who->aeads && i < total; i++) {
		xport_aead_free(who->aeads[i]);
		who->aeads[i] = NULL;
	}
	for (unsigned i = 0; i < total; i++) {
		fds[i] = -1;
		if (r >= 0) {
			/* the caller takes the fd over, the conn's own ring goes */
			fds[i] = op[i].c.fd;
			op[i].c.fd = -1;
		}
		if (op[i].c.ring.ring || op[i].c.fd >= 0)
			xport_conn_close(&op[i].c);
	}
	free(op);
	return r;
}

/* ---- the destination's half ---- */

/* A connection to the migration port that has not proven itself yet: the
 * first frame's bytes as they come in. */
struct pending {
	int fd;
	uint64_t deadline;
	size_t got;
	union {
		uint8_t buf[sizeof(struct mig_frame_hdr) + sizeof(struct mig_stream_hello)];
		struct {
			struct mig_frame_hdr hdr;
			struct mig_stream_hello hello;
		} f;
	};
};

struct accepting {
	const struct xport_streams *who;
	int *fds;
	uint64_t *rejected;
};

/* Send one frame (seq 1, the first in this direction) without waiting: a
 * stranger that does not read must not hold us up, and a fresh socket's
 * buffer always takes a frame this small. */
static int send_first(int fd, uint16_t type, const void *p, size_t len)
{
	struct mig_frame_hdr h;
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	mig_frame_seal(&h, type, 0, 1, &iov[1], 1);
	n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n == (ssize_t)(sizeof(h) + len) ? 0 : -EAGAIN;
}

/* Answer a connection that failed to prove itself, close it, count it. */
static void refuse(struct accepting *a, struct pending *p, int code, const char *msg)
{
	struct mig_error_msg m;

	mig_error_msg_fill(&m, code, msg);
	send_first(p->fd, MIG_FRAME_ERROR, &m, sizeof(m));
	close(p->fd);
	p->fd = -1;
	(*a->rejected)++;
}

/* The first frame of p is in: a STREAM_HELLO that proves the secret, for an
 * index not taken yet, becomes that stream.  0 when it did. */
static int prove(struct accepting *a, struct pending *p)
{
	const struct xport_streams *who = a->who;
	struct mig_stream_hello h, w;
	struct mig_error e = { 0 };
	char why[600];

	if (mig_frame_check_payload(&p->f.hdr, &p->f.hello, &e) < 0) {
		snprintf(why, sizeof(why), "the first frame of a migration stream must be a valid "
			 "STREAM_HELLO (%s)", e.msg);
		refuse(a, p, -EPROTO, why);
		return -EPROTO;
	}
	h = p->f.hello;
	mig_wire_le(&mig_wl_stream_hello, &h, 1);
	if (memcmp(h.id, who->id, 16) || !mig_stream_hello_proves(&h, who->secret, false) ||
	    h.nstreams != who->n || h.index > who->n || a->fds[h.index] >= 0 ||
	    (h.flags & ~MIG_STREAM_F_KNOWN)) {
		refuse(a, p, -EACCES, "stream refused: it does not prove it belongs to this "
		       "migration (wrong id, secret, index, stream count or flags)");
		return -EACCES;
	}
	if (!(h.flags & MIG_STREAM_F_SEALED) && mig_stream_seals(who->encrypt, p->fd)) {
		snprintf(why, sizeof(why), "stream %u refused: it comes in clear, and this "
			 "migration's streams must be encrypted (--encrypt %s)", h.index,
			 mig_encrypt_to_string(who->encrypt));
		refuse(a, p, -EACCES, why);
		return -EACCES;
	}
	if (h.flags & MIG_STREAM_F_SEALED) {
		struct xport_aead *k = NULL;

		if (mig_stream_keys(who->secret, &h, false, &k, &e) < 0) {
			refuse(a, p, e.code, e.msg);
			return e.code;
		}
		if (who->aeads)
			who->aeads[h.index] = k;
		else
			xport_aead_free(k);
	}
	/* Prove back that we hold the secret too. */
	mig_stream_hello_seal(&h, who->secret, true);
	w = h;
	mig_wire_le(&mig_wl_stream_hello, &w, 1);
	if (send_first(p->fd, MIG_FRAME_STREAM_HELLO, &w, sizeof(w)) < 0) {
		close(p->fd);
		p->fd = -1;
		(*a->rejected)++;
		return -EPIPE;
	}
	if (h.index && who->n == 1)
		xport_lone_stream(p->fd);
	a->fds[h.index] = p->fd;
	if (who->on_stream)
		who->on_stream(who->ctx, h.index, p->fd);
	p->fd = -1;
	return 0;
}

/* Read what p has sent so far; refuse it as soon as its bytes cannot be a
 * STREAM_HELLO.  1 while it may still become one, 0 once it became a
 * stream, <0 once it is gone. */
static int pending_read(struct accepting *a, struct pending *p)
{
	struct mig_error e = { 0 };
	ssize_t n = recv(p->fd, p->buf + p->got, sizeof(p->buf) - p->got, MSG_DONTWAIT);
	char why[600];

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 1;
	if (n <= 0) {
		close(p->fd);
		p->fd = -1;
		(*a->rejected)++;
		return -ECONNRESET;
	}
	p->got += (size_t)n;
	if (p->got >= sizeof(p->f.hdr) && p->got - (size_t)n < sizeof(p->f.hdr)) {
		if (mig_frame_check_header(&p->f.hdr, 1, &e) < 0) {
			snprintf(why, sizeof(why), "the first frame of a migration stream must be "
				 "a valid STREAM_HELLO (%s)", e.msg);
			refuse(a, p, -EPROTO, why);
			return -EPROTO;
		}
		if (le16toh(p->f.hdr.type) != MIG_FRAME_STREAM_HELLO ||
		    le32toh(p->f.hdr.length) != sizeof(p->f.hello)) {
			refuse(a, p, -EPROTO, "the first frame of a migration stream must be a "
			       "valid STREAM_HELLO");
			return -EPROTO;
		}
	}
	if (p->got < sizeof(p->buf))
		return 1;
	return prove(a, p);
}

/* Strangers that send nothing, or slowly, cost the migration nothing but a
 * slot, and the oldest gives its slot up when all are taken. */
int xport_streams_accept(int listen_fd, const struct xport_streams *who, int *fds,
			 uint64_t *rejected, struct mig_error *err)
{
	struct accepting a = { .who = who, .fds = fds, .rejected = rejected };
	uint32_t within = who->timeout_ms ? who->timeout_ms : ACCEPT_TIMEOUT_MS;
	uint64_t end = mig_now_ms() + within;
	struct pending pend[PENDING_MAX];
	unsigned have = 0, npend = 0;
	int r = 0, fl;

	for (unsigned k = 0; k <= who->n; k++) {
		fds[k] = -1;
		if (who->aeads)
			who->aeads[k] = NULL;
	}
	/* A connection reset between poll and accept must not block us. */
	fl = fcntl(listen_fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);
	while (have < who->n + 1) {
		struct pollfd pf[PENDING_MAX + 1 + MIG_MAX_STREAMS + 1];
		uint64_t now = mig_now_ms(), wake = end;
		unsigned nfd;

		if (who->cancel && atomic_load(who->cancel)) {
			r = mig_error_set(err, -ECANCELED, "the migration was called off with %u of "
					  "%u streams connected", have, who->n + 1);
			break;
		}
		if (wake > now + CANCEL_POLL_MS)
			wake = now + CANCEL_POLL_MS;
		if (now >= end) {
			r = mig_error_set(err, -ETIMEDOUT, "only %u of %u migration streams "
					  "connected and authenticated in %d s (%llu refused)", have,
					  who->n + 1, within / 1000,
					  (unsigned long long)*rejected);
			break;
		}
		/* the ones whose time is up go first */
		for (unsigned i = 0; i < npend; i++) {
			if (pend[i].deadline <= now) {
				refuse(&a, &pend[i], -EPROTO, "the first frame of a migration stream "
				       "must be a valid STREAM_HELLO (none arrived in time)");
				pend[i--] = pend[--npend];
			} else if (pend[i].deadline < wake) {
				wake = pend[i].deadline;
			}
		}
		pf[0] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
		for (unsigned i = 0; i < npend; i++)
			pf[1 + i] = (struct pollfd){ .fd = pend[i].fd, .events = POLLIN };
		/* the streams already in: a source that gave up closes them, and
		 * waiting on for the rest would only hold the prepared VM */
		nfd = 1 + npend;
		for (unsigned k = 0; k <= who->n; k++)
			if (fds[k] >= 0)
				pf[nfd++] = (struct pollfd){ .fd = fds[k], .events = POLLRDHUP };
		if (poll(pf, nfd, (int)(wake - now)) < 0 && errno != EINTR) {
			r = mig_error_set(err, -errno, "waiting for the migration streams: %s",
					  strerror(errno));
			break;
		}
		for (unsigned i = 1 + npend; i < nfd; i++)
			if (pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
				r = mig_error_set(err, -ECONNRESET, "the source closed a migration "
						  "stream before all %u were connected (it gave up)",
						  who->n + 1);
				break;
			}
		if (r < 0)
			break;
		/* pending first: a slot may be freed for the listener's next */
		for (unsigned i = npend; i-- > 0;) {
			if (!pf[1 + i].revents)
				continue;
			if (pending_read(&a, &pend[i]) <= 0)
				pend[i] = pend[--npend];
		}
		have = 0;
		for (unsigned k = 0; k <= who->n; k++)
			have += fds[k] >= 0;
		if (pf[0].revents & POLLIN) {
			int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (fd < 0) {
				/* out of descriptors or memory: let it pass, do not spin */
				if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
					nanosleep(&(struct timespec){ 0, 10 * 1000000L }, NULL);
				continue;
			}
			xport_tune_socket(fd);
			if (npend == PENDING_MAX) {
				/* the oldest has had the longest to prove itself */
				unsigned old = 0;

				for (unsigned i = 1; i < npend; i++)
					if (pend[i].deadline < pend[old].deadline)
						old = i;
				refuse(&a, &pend[old], -EPROTO, "the first frame of a migration stream "
				       "must be a valid STREAM_HELLO (too many connections wait)");
				pend[old] = pend[--npend];
			}
			pend[npend] = (struct pending){ .fd = fd,
							.deadline = mig_now_ms() + HELLO_WAIT_MS };
			npend++;
		}
	}
	for (unsigned i = 0; i < npend; i++)
		refuse(&a, &pend[i], -EPROTO, "the migration's streams are all connected");
	if (r < 0)
		for (unsigned k = 0; k <= who->n; k++) {
			if (fds[k] >= 0) {
				close(fds[k]);
				fds[k] = -1;
			}
			if (who->aeads) {
				xport_aead_free(who->aeads[k]);
				who->aeads[k] = NULL;
			}
		}
	return r;
}
