// SPDX-License-Identifier: MIT
/*
 * Framed connections: one frame at a time over a private io_uring.
 *
 * A received frame is returned only after every check passed, in this
 * order: header (magic, version, type, flags, length limit, seq) before a
 * single payload byte is read, so a damaged or hostile length never makes us
 * allocate or wait for data; then the checksum over header and payload.
 * The header handed back is in HOST byte order (on the wire, and inside the
 * wire.c helpers, it is little-endian).
 *
 * Ownership: after a successful xport_conn_init() the conn owns fd and
 * xport_conn_close() closes it; if init fails the caller still owns fd.
 */
#include <migrate/aead.h>
#include <migrate/transport.h>

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport-internal.h"

#define CONN_RING_ENTRIES 8
/*
 * Once the first byte of a frame is in, the rest gets at least this long,
 * whatever the caller's timeout: a control loop that polls with a short
 * timeout must not kill a connection because a frame began just before its
 * deadline.  Only a peer that really stalls mid-frame runs into this.
 */
#define CONN_FRAME_STALL_MS 2000

int xport_conn_init(struct xport_conn *c, int fd, struct mig_error *err)
{
	int r;

	c->fd = fd;
	c->tx_seq = 0;
	c->rx_seq = 0;
	c->aead = NULL;
	c->sealbuf = (struct mig_buf){ 0 };
	r = xport_ring_init(&c->ring, CONN_RING_ENTRIES, err);
	if (r < 0) {
		/* the prefix answers 0 without an error object: keep r */
		mig_error_prefix(err, "setting up connection on fd %d", fd);
		return r;
	}
	return 0;
}

void xport_conn_close(struct xport_conn *c)
{
	/* Ring first: it cancels and reaps any op still using the fd. */
	xport_ring_exit(&c->ring);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	xport_aead_free(c->aead);
	c->aead = NULL;
	mig_buf_free(&c->sealbuf);
}

/*
 * Runs one op to completion.  If the deadline passes with the op still in
 * flight, part of a frame may already have been consumed and the stream can
 * no longer be parsed: shut the socket down, which forces the op to
 * complete, reap it (its buffers live on our caller's stack), and report
 * the stall.
 */
static int run_op(struct xport_conn *c, struct xport_op *op, int64_t deadline,
		  const char *what, struct mig_error *err)
{
	struct xport_op *done = NULL;
	int r;

	r = xport_ring_submit(&c->ring, op, err);
	if (r < 0)
		return r;
	r = xport_ring_wait(&c->ring, remaining_ms(deadline), &done, NULL);
	if (r == -ETIME && !done) {
		(void)shutdown(c->fd, SHUT_RDWR);
		(void)xport_ring_wait(&c->ring, -1, &done, NULL);
		return mig_error_set(err, -ETIME, "%s: the peer stopped sending in the middle "
				     "of a frame (%zu of %zu bytes); connection shut down",
				     what, done ? done->done : 0, op->total);
	}
	if (!done)
		return mig_error_set(err, r, "%s: io_uring: %s", what, strerror(-r));
	if (r == -ECONNRESET && !op->is_send)
		return mig_error_set(err, r, "%s: the peer closed the connection%s", what,
				     op->done ? " in the middle of a frame" : "");
	if (r < 0)
		return mig_error_set(err, r, "%s: %s (after %zu of %zu bytes)", what,
				     strerror(-r), op->done, op->total);
	return 0;
}

int xport_conn_send(struct xport_conn *c, uint16_t type, uint32_t flags,
		    const void *payload, size_t len, struct mig_error *err)
{
	struct iovec body = { .iov_base = (void *)payload, .iov_len = len };
	const char *name = mig_frame_type_to_string(type);
	uint32_t max = mig_frame_max_payload(type);
	struct mig_frame_hdr h;
	struct xport_op op = { 0 };
	uint8_t tag[XPORT_AEAD_TAG];
	char what[64];
	int r;

	if (!name)
		return mig_error_set(err, -EINVAL, "refusing to send a frame of unknown type %u",
				     type);
	if (len > max)
		return mig_error_set(err, -EMSGSIZE, "refusing to send a %s frame of %zu bytes: "
				     "the limit for that type is %u", name, len, max);
	/* a sealed frame's tag replaces the sum: no pass over the payload for it */
	if (c->aead)
		mig_frame_header(&h, type, flags, c->tx_seq + 1, len);
	else
		mig_frame_seal(&h, type, flags, c->tx_seq + 1, &body, len ? 1 : 0);
	/* Check our own header the way the peer will, so a bad flag is our
	 * clear error here and not a rejected frame over there. */
	r = mig_frame_check_header(&h, c->tx_seq + 1, err);
	if (r < 0) {
		mig_error_prefix(err, "refusing to send");
		return r;
	}

	if (c->aead) {
		/* the caller's payload stays as it was: sealed in our copy */
		c->sealbuf.len = 0;
		if (len && mig_buf_append(&c->sealbuf, payload, len) < 0)
			return mig_error_set(err, -ENOMEM, "out of memory sealing a %s frame", name);
		body.iov_base = c->sealbuf.data;
		r = xport_aead_seal(c->aead, &h, 0, &body, len ? 1 : 0, tag, err);
		if (r < 0)
			return r;
	}
	op.fd = c->fd;
	op.is_send = true;
	op.iov[0] = (struct iovec){ .iov_base = &h, .iov_len = sizeof(h) };
	op.iov[1] = body;
	op.iovcnt = len ? 2 : 1;
	if (c->aead)
		op.iov[op.iovcnt++] = (struct iovec){ .iov_base = tag, .iov_len = sizeof(tag) };
	snprintf(what, sizeof(what), "sending %s frame seq %llu", name,
		 (unsigned long long)(c->tx_seq + 1));
	/* No deadline: a peer that stops reading leaves us waiting until it
	 * closes or the caller shuts the socket down. */
	r = run_op(c, &op, -1, what, err);
	if (r < 0)
		return r;
	c->tx_seq++;
	return 0;
}

static const volatile sig_atomic_t *interrupt_flag;

void xport_interrupt_on(const volatile sig_atomic_t *flag)
{
	interrupt_flag = flag;
}

bool xport_interrupted(void)
{
	return interrupt_flag && *interrupt_flag;
}

int xport_poll_until(struct pollfd *p, int64_t deadline)
{
	for (;;) {
		int ms = remaining_ms(deadline), n;

		if (xport_interrupted())
			return -EINTR;
		/* slices while a flag is installed: a signal that landed just
		 * before poll() is seen within one */
		n = poll(p, 1, interrupt_flag && (ms < 0 || ms > 200) ? 200 : ms);
		if (n > 0)
			return 1;
		if (n == 0 && remaining_ms(deadline) == 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* Waits until at least one byte is readable, without consuming anything,
 * so that an idle timeout leaves the stream intact. */
static int wait_readable(int fd, int64_t deadline, int timeout_ms, struct mig_error *err)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = xport_poll_until(&p, deadline);

	if (n == 0)
		return mig_error_set(err, -ETIME, "no frame from the peer within %d ms", timeout_ms);
	if (n == -EINTR)
		return mig_error_set(err, -EINTR, "interrupted");
	if (n < 0)
		return mig_error_set(err, n, "waiting for a frame: poll: %s", strerror(-n));
	return 0;
}

int xport_conn_recv(struct xport_conn *c, struct mig_frame_hdr *ret_hdr, struct mig_buf *payload,
		    int timeout_ms, struct mig_error *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	struct mig_buf scratch = { 0 };
	struct mig_buf *body = payload ? payload : &scratch;
	struct mig_frame_hdr h;
	struct xport_op op = { 0 };
	uint8_t tag[XPORT_AEAD_TAG];
	const char *name;
	char what[80];
	uint32_t len;
	int r;

	body->len = 0;
	if (timeout_ms >= 0) {
		r = wait_readable(c->fd, deadline, timeout_ms, err);
		if (r < 0)
			return r;
		if (deadline < now_ms() + CONN_FRAME_STALL_MS)
			deadline = now_ms() + CONN_FRAME_STALL_MS;
	}
	op.fd = c->fd;
	op.iov[0] = (struct iovec){ .iov_base = &h, .iov_len = sizeof(h) };
	op.iovcnt = 1;
	snprintf(what, sizeof(what), "receiving frame seq %llu",
		 (unsigned long long)(c->rx_seq + 1));
	r = run_op(c, &op, deadline, what, err);
	if (r < 0)
		return r;
	r = mig_frame_check_header(&h, c->rx_seq + 1, err);
	if (r < 0)
		return r;
	r = xport_sealing_check(&h, c->aead != NULL, err);
	if (r < 0)
		return r;

	len = le32toh(h.length);
	name = mig_frame_type_to_string(le16toh(h.type));
	if (len || c->aead) {
		r = mig_buf_reserve(body, len);
		if (r < 0) {
			r = mig_error_set(err, r, "receiving %s frame seq %llu: no memory for "
					  "%u payload bytes", name,
					  (unsigned long long)le64toh(h.seq), len);
			goto out;
		}
		memset(&op, 0, sizeof(op));
		op.fd = c->fd;
		if (len)
			op.iov[op.iovcnt++] = (struct iovec){ .iov_base = body->data,
							      .iov_len = len };
		if (c->aead)
			op.iov[op.iovcnt++] = (struct iovec){ .iov_base = tag, .iov_len = sizeof(tag) };
		snprintf(what, sizeof(what), "receiving payload of %s frame seq %llu", name,
			 (unsigned long long)le64toh(h.seq));
		r = run_op(c, &op, deadline, what, err);
		if (r < 0)
			goto out;
	}
	if (c->aead) {
		struct iovec pl = { body->data, len };

		r = xport_aead_open(c->aead, &h, &pl, len ? 1 : 0, tag, err);
	} else {
		r = mig_frame_check_payload(&h, body->data, err);
	}
	if (r < 0)
		goto out;

	/* Every check passed: the frame is ours.  Host order from here on. */
	body->len = len;
	c->rx_seq++;
	ret_hdr->magic = le32toh(h.magic);
	ret_hdr->version = le16toh(h.version);
	ret_hdr->type = le16toh(h.type);
	ret_hdr->flags = le32toh(h.flags);
	ret_hdr->length = len;
	ret_hdr->seq = le64toh(h.seq);
	ret_hdr->checksum = le64toh(h.checksum);
	r = 0;
out:
	mig_buf_free(&scratch);
	return r;
}
