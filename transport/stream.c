// SPDX-License-Identifier: MIT
/*
 * Pieces of a migration's streams that both engines use: a data stream's
 * worker (a thread with an io_uring of its own, named, its CPU time
 * counted; the source's send, the destination's receive), and the sending
 * half of the control stream.
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <migrate/aead.h>
#include <migrate/transport.h>

#include "util.h"

static void *worker_main(void *arg)
{
	struct xport_worker *w = arg;
	uint64_t cpu0 = mig_cpu_ms();

	pthread_setname_np(pthread_self(), w->name);
	w->fn(w);
	w->cpu_ms = mig_cpu_ms() - cpu0;
	return NULL;
}

int xport_worker_start(struct xport_worker *w, const char *name, unsigned ring_entries,
		       void (*fn)(struct xport_worker *w), struct mig_error *err)
{
	int r;

	str_copy(w->name, sizeof(w->name), name);
	w->fn = fn;
	if (!w->ring.ring) {
		r = xport_ring_init(&w->ring, ring_entries, err);
		if (r < 0)
			return r;
	}
	r = -pthread_create(&w->thread, NULL, worker_main, w);
	if (r < 0)
		return mig_error_set(err, r, "starting %s: %s", name, strerror(-r));
	w->started = true;
	return 0;
}

uint64_t xport_worker_stop(struct xport_worker *w)
{
	uint64_t cpu = 0;

	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = false;
		cpu = w->cpu_ms;
	}
	/* what it left in flight is cancelled and reaped before its buffers go */
	if (w->ring.ring)
		xport_ring_exit(&w->ring);
	return cpu;
}

int xport_chan_send(struct xport_chan_tx *c, struct xport_ring *ring, uint16_t type,
		    const void *p, size_t len, struct mig_error *err)
{
	struct iovec iov;

	if (c->busy)
		return mig_error_set(err, -EBUSY, "internal: a %s frame sent while the previous "
				     "one is in flight", mig_frame_type_to_string(type));
	c->buf.len = 0;
	if (len && mig_buf_append(&c->buf, p, len) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	iov = (struct iovec){ c->buf.data, len };
	/* the payload is our copy: sealed in place, its tag instead of a sum */
	if (c->aead) {
		mig_frame_header(&c->hdr, type, 0, ++c->seq, len);
		if (xport_aead_seal(c->aead, &c->hdr, 0, &iov, len ? 1 : 0, c->tag, err) < 0)
			return err->code;
	} else {
		mig_frame_seal(&c->hdr, type, 0, ++c->seq, &iov, len ? 1 : 0);
	}
	memset(&c->op, 0, sizeof(c->op));
	c->op.fd = c->fd;
	c->op.is_send = true;
	c->op.iov[0] = (struct iovec){ &c->hdr, sizeof(c->hdr) };
	c->op.iovcnt = 1;
	if (len)
		c->op.iov[c->op.iovcnt++] = iov;
	if (c->aead)
		c->op.iov[c->op.iovcnt++] = (struct iovec){ c->tag, sizeof(c->tag) };
	c->op.total = sizeof(c->hdr) + len + (c->aead ? sizeof(c->tag) : 0);
	c->busy = true;
	return xport_ring_submit(ring, &c->op, err);
}

bool xport_chan_sent(struct xport_chan_tx *c, const struct xport_op *op)
{
	if (op != &c->op)
		return false;
	c->busy = false;
	return true;
}

void xport_chan_free(struct xport_chan_tx *c)
{
	mig_buf_free(&c->buf);
}

/* Only the fields the ring engine does not set itself are filled: clearing
 * the whole op (it has room for 260 iovecs) three times per frame was
 * measurable work on the data streams. */
int xport_chan_rx_post(struct xport_chan_rx *c, enum xport_rx_stage stage, const struct iovec *iov,
		       int iovcnt, struct mig_error *err)
{
	c->op.fd = c->fd;
	c->op.is_send = false;
	c->op.whole = stage == XPORT_RX_DATA;
	memcpy(c->op.iov, iov, (size_t)iovcnt * sizeof(*iov));
	c->op.iovcnt = iovcnt;
	c->op.user = c->user;
	c->stage = stage;
	return xport_ring_submit(c->ring, &c->op, err);
}

int xport_chan_rx_hdr(struct xport_chan_rx *c, struct mig_error *err)
{
	struct iovec iov = { &c->hdr, sizeof(c->hdr) };

	return xport_chan_rx_post(c, XPORT_RX_HDR, &iov, 1, err);
}

int xport_chan_rx_step(struct xport_chan_rx *c, struct mig_error *err)
{
	int r;

	if (c->stage == XPORT_RX_HDR) {
		r = mig_frame_check_header(&c->hdr, c->seq + 1, err);
		if (r == 0)
			r = xport_sealing_check(&c->hdr, c->aead != NULL, err);
		if (r < 0)
			return r;
		c->trailer = c->aead ? le64toh(c->hdr.checksum) : 0;
		if (c->trailer && le16toh(c->hdr.type) != MIG_FRAME_PAGES)
			return mig_error_set(err, -EBADMSG, "a sealed %s frame (seq %llu) says %llu "
					     "bytes follow it; only PAGES has data after it",
					     mig_frame_type_to_string(le16toh(c->hdr.type)),
					     (unsigned long long)le64toh(c->hdr.seq),
					     (unsigned long long)c->trailer);
		if (c->hdr.length || c->aead) {
			struct iovec iov[2];
			int n = 0;

			c->buf.len = 0;
			r = mig_buf_reserve(&c->buf, c->hdr.length);
			if (r < 0)
				return mig_error_set(err, r, "out of memory");
			if (c->hdr.length)
				iov[n++] = (struct iovec){ c->buf.data, c->hdr.length };
			if (c->aead)
				iov[n++] = (struct iovec){ c->tag, sizeof(c->tag) };
			r = xport_chan_rx_post(c, XPORT_RX_PAYLOAD, iov, n, err);
			return r < 0 ? r : 0;
		}
	}
	c->buf.len = c->hdr.length;
	if (c->aead) {
		struct iovec pl = { c->buf.data, c->hdr.length };

		r = xport_aead_open(c->aead, &c->hdr, &pl, c->hdr.length ? 1 : 0, c->tag, err);
	} else {
		r = mig_frame_check_payload(&c->hdr, c->buf.data, err);
	}
	if (r < 0)
		return r;
	c->seq++;
	return 1;
}

int xport_chan_rx_data(struct xport_chan_rx *c, const struct iovec *iov, int iovcnt,
		       struct mig_error *err)
{
	struct iovec all[XPORT_OP_IOV];

	if (!c->aead)
		return xport_chan_rx_post(c, XPORT_RX_DATA, iov, iovcnt, err);
	if (iovcnt + 1 > XPORT_OP_IOV)
		return mig_error_set(err, -E2BIG, "internal: %d iovecs and a tag", iovcnt);
	memcpy(all, iov, (size_t)iovcnt * sizeof(*iov));
	all[iovcnt] = (struct iovec){ c->data_tag, sizeof(c->data_tag) };
	return xport_chan_rx_post(c, XPORT_RX_DATA, all, iovcnt + 1, err);
}

int xport_chan_rx_data_open(struct xport_chan_rx *c, const struct iovec *iov, int iovcnt,
			    struct mig_error *err)
{
	if (!c->aead)
		return 0;
	return xport_aead_open_data(c->aead, c->seq, iov, iovcnt, c->data_tag, err);
}
