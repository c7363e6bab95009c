// SPDX-License-Identifier: MIT
/*
 * The io_uring engine: whole-transfer send/receive operations on stream
 * sockets, many in flight on one ring, driven from one thread.
 *
 * Contract (see struct xport_op in transport.h):
 *  - An op moves exactly op->total bytes or fails.  The kernel may complete
 *    a SENDMSG/RECVMSG short (a signal, EOF or an error after partial
 *    progress, an old kernel that does not retry MSG_WAITALL itself, and
 *    routinely for `whole` receives, which go without MSG_WAITALL); the
 *    engine then advances op->cur past the bytes that moved and resubmits, so
 *    a caller of xport_ring_wait() only ever sees finished ops.
 *  - Ops on different fds, and one send plus one receive on the same fd, may
 *    be in flight together in any number.  Two ops in the SAME direction on
 *    the SAME fd are not supported: after a short transfer the engine
 *    resubmits the rest, and the other op's bytes could land in between, so
 *    the stream would interleave.  Queue them one after the other instead.
 *  - The op, its iovecs and the memory they point to belong to the engine
 *    from xport_ring_submit() until xport_ring_wait() hands the op back (or
 *    xport_ring_exit() returns, which cancels whatever is still in flight).
 *  - Closing an fd does NOT end the ops on it: the ring holds its own file
 *    reference.  To abort a stream, shutdown(fd, SHUT_RDWR); its receives
 *    then complete with -ECONNRESET and its sends with -EPIPE.
 */
#include <migrate/transport.h>

#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util.h"

/*
 * One submitted SQE.  SENDMSG/RECVMSG read the msghdr at issue time, and
 * an SQE that io_uring_submit() could not hand over yet (a full completion
 * queue) is issued later: the msghdr must outlive the call that prepared it,
 * and struct xport_op has no room for one.  So user_data points at a slot,
 * and the slot points at the op.  Cancel requests carry user_data 0.
 */
struct ring_slot {
	struct xport_op *op;
	struct msghdr msg;
	struct ring_slot *prev, *next;   /* in flight: list; free: ->next only */
};

struct ring_priv {
	struct io_uring uring;           /* xport_ring.ring points here */
	struct ring_slot busy;           /* circular list of slots in flight */
	struct ring_slot *free;
};

static struct ring_priv *ring_priv(struct xport_ring *r)
{
	return container_of(r->ring, struct ring_priv, uring);
}

int xport_ring_init(struct xport_ring *r, unsigned entries, struct mig_error *err)
{
	struct ring_priv *p;
	int ret;

	r->ring = NULL;
	r->inflight = 0;
	if (!entries)
		return mig_error_set(err, -EINVAL, "io_uring: a ring needs at least one entry");
	p = calloc(1, sizeof(*p));
	if (!p)
		return mig_error_set(err, -ENOMEM, "io_uring: out of memory");
	p->busy.prev = p->busy.next = &p->busy;
	/*
	 * COOP_TASKRUN: completions are posted when we next enter the kernel
	 * instead of interrupting the thread (we always enter to wait anyway);
	 * TASKRUN_FLAG tells liburing's peek when that is needed.
	 * SUBMIT_ALL: one bad SQE does not strand the ones behind it.  Older
	 * kernels reject unknown flags with EINVAL, so fall back to none.
	 */
	ret = io_uring_queue_init(entries, &p->uring, IORING_SETUP_COOP_TASKRUN |
				  IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL);
	if (ret == -EINVAL)
		ret = io_uring_queue_init(entries, &p->uring, 0);
	if (ret < 0) {
		free(p);
		switch (ret) {
		case -ENOSYS:
			return mig_error_set(err, ret, "io_uring is not available: this kernel "
					     "lacks it (5.6 or newer is needed)");
		case -EPERM:
			return mig_error_set(err, ret, "io_uring is not permitted here: check "
					     "sysctl kernel.io_uring_disabled and the seccomp "
					     "profile of this container");
		case -ENOMEM:
			return mig_error_set(err, ret, "io_uring ring of %u entries: out of "
					     "memory (locked-memory limit too low? see ulimit "
					     "-l)", entries);
		default:
			return mig_error_set(err, ret, "io_uring ring of %u entries: %s",
					     entries, strerror(-ret));
		}
	}
	r->ring = &p->uring;
	return 0;
}

static struct ring_slot *slot_get(struct ring_priv *p)
{
	struct ring_slot *s = p->free;

	if (s)
		p->free = s->next;
	else
		s = malloc(sizeof(*s));
	if (!s)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->prev = &p->busy;
	s->next = p->busy.next;
	p->busy.next->prev = s;
	p->busy.next = s;
	return s;
}

static void slot_put(struct ring_priv *p, struct ring_slot *s)
{
	s->prev->next = s->next;
	s->next->prev = s->prev;
	s->next = p->free;
	p->free = s;
}

/* An SQE, flushing queued ones to the kernel first if the SQ is full. */
static struct io_uring_sqe *get_sqe(struct io_uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(u);

	if (!sqe) {
		(void)io_uring_submit(u);
		sqe = io_uring_get_sqe(u);
	}
	return sqe;
}

/*
 * Hands the SQEs to the kernel.  EINTR is retried.  On EAGAIN/EBUSY (the
 * kernel is short of memory or the CQ overflowed) the SQEs stay in the SQ
 * ring, which liburing has already published: xport_ring_wait() submits
 * again before it waits, so the op is queued either way and must not be
 * reported as failed (the kernel would still touch its memory later).
 */
static int push(struct io_uring *u)
{
	int ret;

	do
		ret = io_uring_submit(u);
	while (ret == -EINTR);
	if (ret == -EAGAIN || ret == -EBUSY)
		return 0;
	return ret < 0 ? ret : 0;
}

/*
 * SO_RCVLOWAT for a receive: the bytes op still expects when it is `whole`,
 * else the default of 1.  Returns whether the low-water mark is in use; the
 * receive must then not pass MSG_WAITALL, because the kernel's retry after
 * a partial copy would wait for the full mark again while fewer bytes are
 * left to come, and hang.  Without MSG_WAITALL a short receive comes back
 * here and the mark follows what is left.  A mark the kernel refuses leaves
 * the plain receive.  The kernel still wakes a receiver below the mark when
 * its window or its memory runs short, so the mark cannot stall a stream
 * (checked on 6.18).  An autotuned receive buffer (2 or more data streams)
 * is grown by the kernel to hold the mark; a lone stream's fixed 4 MiB
 * buffers keep 512 KiB marks far from either limit.
 */
static bool set_rcvlowat(struct xport_op *op)
{
	size_t left = op->total - op->done;
	int want = op->whole ? (int)(left < INT_MAX ? left : INT_MAX) : 1;

	if (want == (op->rcvlowat ? op->rcvlowat : 1))
		return want > 1;
	if (setsockopt(op->fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof(want)) < 0)
		want = 1;
	op->rcvlowat = want;
	return want > 1;
}

/* Prepares one SQE for the remaining part of op. */
static int queue_op(struct xport_ring *r, struct xport_op *op)
{
	struct ring_priv *p = ring_priv(r);
	struct io_uring_sqe *sqe;
	struct ring_slot *s;

	sqe = get_sqe(r->ring);
	if (!sqe)
		return -EBUSY;
	s = slot_get(p);
	if (!s) {
		/* Give the SQE back as a harmless no-op rather than leave it
		 * half-prepared in the ring. */
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
		return -ENOMEM;
	}
	s->op = op;
	if (op->total == 0) {
		/* Nothing to move; a NOP still completes through the ring so
		 * the caller sees every op come back the same way. */
		io_uring_prep_nop(sqe);
	} else {
		s->msg.msg_iov = op->cur;
		s->msg.msg_iovlen = (size_t)op->curcnt;
		/* MSG_WAITALL makes the kernel (5.18+) keep a stream transfer
		 * going after partial progress instead of completing short.
		 * MSG_NOSIGNAL: a vanished peer is an -EPIPE result, not a
		 * SIGPIPE that kills the agent. */
		if (op->is_send)
			io_uring_prep_sendmsg(sqe, op->fd, &s->msg, MSG_NOSIGNAL | MSG_WAITALL);
		else
			io_uring_prep_recvmsg(sqe, op->fd, &s->msg, set_rcvlowat(op) ? 0 : MSG_WAITALL);
	}
	io_uring_sqe_set_data(sqe, s);
	return 0;
}

int xport_ring_submit(struct xport_ring *r, struct xport_op *op, struct mig_error *err)
{
	size_t total = 0;
	int ret;

	if (!r->ring)
		return mig_error_set(err, -EINVAL, "io_uring: submit on a ring that is not set up");
	if (op->fd < 0 || op->iovcnt < 0 || op->iovcnt > (int)ARRAY_SIZE(op->iov))
		return mig_error_set(err, -EINVAL, "io_uring: bad op (fd %d, %d iovecs; at most "
				     "%zu)", op->fd, op->iovcnt, ARRAY_SIZE(op->iov));
	/* cur is the not-yet-moved rest; empty iovecs are dropped so that a
	 * submitted op always has bytes to move and a 0 result means EOF. */
	op->curcnt = 0;
	for (int i = 0; i < op->iovcnt; i++) {
		if (!op->iov[i].iov_len)
			continue;
		op->cur[op->curcnt++] = op->iov[i];
		total += op->iov[i].iov_len;
	}
	op->total = total;
	op->done = 0;
	op->res = 0;
	ret = queue_op(r, op);
	if (ret < 0)
		return mig_error_set(err, ret, "io_uring: cannot queue %s on fd %d: %s",
				     op->is_send ? "send" : "receive", op->fd, strerror(-ret));
	r->inflight++;
	ret = push(r->ring);
	if (ret < 0)
		/* Published in the SQ: it will be issued and completed, so it
		 * stays counted in flight; report the ring itself as broken. */
		return mig_error_set(err, ret, "io_uring: submit failed: %s", strerror(-ret));
	return 0;
}

/* Moves op->cur past n bytes that the kernel transferred. */
static void op_advance(struct xport_op *op, size_t n)
{
	int i = 0;

	op->done += n;
	while (i < op->curcnt && n >= op->cur[i].iov_len) {
		n -= op->cur[i].iov_len;
		i++;
	}
	if (i < op->curcnt && n) {
		op->cur[i].iov_base = (char *)op->cur[i].iov_base + n;
		op->cur[i].iov_len -= n;
	}
	memmove(op->cur, op->cur + i, (size_t)(op->curcnt - i) * sizeof(op->cur[0]));
	op->curcnt -= i;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits for one CQE until deadline_ns (-1: forever).  -ETIME on timeout. */
static int wait_cqe(struct io_uring *u, int64_t deadline_ns, struct io_uring_cqe **cqe)
{
	for (;;) {
		struct __kernel_timespec ts;
		int64_t left;
		int ret;

		/* Publish resubmissions an earlier push() could not hand over. */
		if (io_uring_sq_ready(u))
			(void)push(u);
		if (io_uring_peek_cqe(u, cqe) == 0)
			return 0;
		if (deadline_ns < 0) {
			ret = io_uring_wait_cqe(u, cqe);
		} else {
			left = deadline_ns - now_ns();
			if (left < 0)
				left = 0;
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			/* Even a zero timeout enters the kernel: with
			 * COOP_TASKRUN that is what posts ready completions. */
			ret = io_uring_wait_cqe_timeout(u, cqe, &ts);
		}
		if (ret == 0)
			return 0;
		if (ret == -EINTR)
			continue;
		return ret;
	}
}

static int op_finish(struct xport_ring *r, struct xport_op *op, int res,
		     struct xport_op **ret_op, struct mig_error *err)
{
	const char *dir = op->is_send ? "send" : "receive";

	r->inflight--;
	op->res = res;
	*ret_op = op;
	if (res == -ECONNRESET && !op->is_send)
		mig_error_set(err, res, "peer closed the connection (fd %d) after %zu of %zu "
			      "bytes of a receive", op->fd, op->done, op->total);
	else if (res == -EPIPE || res == -ECONNRESET)
		mig_error_set(err, res, "%s on fd %d: the peer is gone (%s) after %zu of %zu "
			      "bytes", dir, op->fd, strerror(-res), op->done, op->total);
	else if (res < 0)
		mig_error_set(err, res, "%s on fd %d failed after %zu of %zu bytes: %s", dir,
			      op->fd, op->done, op->total, strerror(-res));
	return res;
}

int xport_ring_wait(struct xport_ring *r, int timeout_ms, struct xport_op **ret_op,
		    struct mig_error *err)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ns() + (int64_t)timeout_ms * 1000000;
	struct ring_priv *p;

	*ret_op = NULL;
	if (!r->ring)
		return mig_error_set(err, -EINVAL, "io_uring: wait on a ring that is not set up");
	if (!r->inflight)
		/* Waiting forever for nothing would hang the caller. */
		return mig_error_set(err, -ENOENT, "io_uring: wait with no operation in "
				     "flight");
	p = ring_priv(r);
	for (;;) {
		struct io_uring_cqe *cqe;
		struct ring_slot *s;
		struct xport_op *op;
		int res, ret;

		ret = wait_cqe(r->ring, deadline, &cqe);
		if (ret == -ETIME || ret == -EAGAIN)
			/* Not an error: event loops poll with short timeouts, and
			 * err keeps only the first message, which a timeout must
			 * not take from a real failure later. */
			return -ETIME;
		if (ret < 0)
			return mig_error_set(err, ret, "io_uring: waiting for completions: %s",
					     strerror(-ret));
		s = io_uring_cqe_get_data(cqe);
		res = cqe->res;
		io_uring_cqe_seen(r->ring, cqe);
		if (!s)
			continue;         /* a cancel request's own completion */
		op = s->op;
		slot_put(p, s);

		if (op->total == 0)
			return op_finish(r, op, 0, ret_op, err);
		if (res == -EINTR || res == -EAGAIN) {
			res = 0;          /* interrupted without progress: retry */
		} else if (res < 0) {
			return op_finish(r, op, res, ret_op, err);
		} else if (res == 0) {
			/* A stream receive of >0 bytes returns 0 only at EOF.  A
			 * send never should; failing beats resubmitting forever. */
			return op_finish(r, op, op->is_send ? -EPIPE : -ECONNRESET, ret_op,
					 err);
		} else if ((size_t)res > op->total - op->done) {
			return op_finish(r, op, -EIO, ret_op, err);
		}
		if (res)
			op_advance(op, (size_t)res);
		if (op->done == op->total)
			return op_finish(r, op, 0, ret_op, err);
		/* Short transfer: queue the rest and keep waiting, within the
		 * same deadline. */
		ret = queue_op(r, op);
		if (ret == 0)
			ret = push(r->ring);
		if (ret < 0)
			return op_finish(r, op, ret, ret_op, err);
	}
}

void xport_ring_exit(struct xport_ring *r)
{
	struct ring_priv *p;
	int64_t deadline;

	if (!r->ring)
		return;
	p = ring_priv(r);
	/*
	 * Cancel and reap whatever is still in flight before the ring goes:
	 * io_uring_queue_exit() alone lets the kernel tear requests down
	 * asynchronously, and a receive could still write into a buffer the
	 * caller frees right after we return.
	 */
	if (p->busy.next != &p->busy) {
		for (struct ring_slot *s = p->busy.next; s != &p->busy; s = s->next) {
			struct io_uring_sqe *sqe = get_sqe(r->ring);

			if (!sqe)
				break;
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)s, 0);
			io_uring_sqe_set_data(sqe, NULL);
		}
		(void)push(r->ring);
		deadline = now_ns() + 1000LL * 1000000;
		while (p->busy.next != &p->busy) {
			struct io_uring_cqe *cqe;
			struct ring_slot *s;

			if (wait_cqe(r->ring, deadline, &cqe) < 0)
				break;
			s = io_uring_cqe_get_data(cqe);
			io_uring_cqe_seen(r->ring, cqe);
			if (s)
				slot_put(p, s);
		}
	}
	io_uring_queue_exit(r->ring);
	while (p->busy.next != &p->busy) {
		struct ring_slot *s = p->busy.next;

		slot_put(p, s);
	}
	while (p->free) {
		struct ring_slot *s = p->free;

		p->free = s->next;
		free(s);
	}
	free(p);
	r->ring = NULL;
	r->inflight = 0;
}
