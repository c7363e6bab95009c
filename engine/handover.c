// SPDX-License-Identifier: MIT
/*
 * Same-host hand-over (docs/phases.md, "Same-host hand-over"): when both
 * agents share this host and the migration's streams are unix sockets, the
 * source does not copy guest RAM; it passes the memfd that holds it to the
 * destination with SCM_RIGHTS, and only device state travels.  This file
 * holds what the two engines need for that beyond their usual flow: the
 * decision, and the descriptor's way over the control stream.
 *
 * The descriptor rides on the bytes of the HANDOVER frame.  The destination
 * reads its control stream with io_uring receives, which drop ancillary
 * data, so it peeks (MSG_PEEK) the frame's first byte with recvmsg() before
 * it posts the receive: a unix socket's peek installs a copy of the
 * descriptor and leaves the bytes, which then arrive and are checked as any
 * frame's (header, seq, checksum).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <migrate/wire-order.h>

#include "util.h"
#include "engine-internal.h"

static const char *const mode_names[_MIG_HANDOVER_MODE_END] = {
	[MIG_HANDOVER_AUTO] = "auto",
	[MIG_HANDOVER_NEVER] = "never",
	[MIG_HANDOVER_ALWAYS] = "always",
};

const char *mig_handover_mode_to_string(uint32_t m)
{
	return m < _MIG_HANDOVER_MODE_END ? mode_names[m] : NULL;
}

int mig_handover_mode_from_string(const char *s)
{
	for (unsigned i = 0; s && i < _MIG_HANDOVER_MODE_END; i++)
		if (!strcmp(s, mode_names[i]))
			return (int)i;
	return -EINVAL;
}

static const char *const why_names[_MIG_HANDOVER_WHY_END] = {
	[MIG_HANDOVER_UNDECIDED] = "the migration failed before it was decided",
	[MIG_HANDOVER_DONE] = "",
	[MIG_HANDOVER_OFF] = "--handover never",
	[MIG_HANDOVER_NOT_UNIX] = "the migration streams are not unix sockets: the agents "
				  "are not both on this host (give local or unix:// endpoints)",
	[MIG_HANDOVER_NO_MEMFD] = "the VM's RAM is not in a memfd (a lab VM made with "
				  "ram=anon)",
	[MIG_HANDOVER_SEALED] = "the streams are sealed (--encrypt always)",
	[MIG_HANDOVER_PAGE_HOOKS] = "a device transforms guest pages on the way (SEV)",
	[MIG_HANDOVER_DECLINED] = "the destination's VM cannot take a memfd",
};

const char *mig_handover_why_to_string(uint32_t w)
{
	return w < _MIG_HANDOVER_WHY_END ? why_names[w] : NULL;
}

uint32_t mig_handover_check(const struct mig_vm *vm, uint32_t mode, int ctl_fd, bool sealed)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (mode == MIG_HANDOVER_NEVER)
		return MIG_HANDOVER_OFF;
	/* SCM_RIGHTS needs AF_UNIX, which also proves both ends share a kernel */
	if (getpeername(ctl_fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family != AF_UNIX)
		return MIG_HANDOVER_NOT_UNIX;
	if (!vm->ops->ram_fd || vm->ops->ram_fd((struct mig_vm *)vm) < 0)
		return MIG_HANDOVER_NO_MEMFD;
	/* the frame with the descriptor is built here, in clear */
	if (sealed)
		return MIG_HANDOVER_SEALED;
	/* pages that a device turns (SEV's encryption) must travel through it */
	if (mig_vm_has_page_hooks((struct mig_vm *)vm) || mig_vm_has_sessions((struct mig_vm *)vm))
		return MIG_HANDOVER_PAGE_HOOKS;
	return MIG_HANDOVER_DONE;
}

int mig_handover_send(int fd, uint64_t seq, int memfd, const struct mig_handover *h,
		      struct mig_error *err)
{
	struct mig_handover w = *h;
	struct mig_frame_hdr hdr;
	struct iovec iov[2];
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = ctl.buf,
			      .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *c;
	size_t total = sizeof(hdr) + sizeof(w), sent = 0;

	mig_wire_le(&mig_wl_handover, &w, 1);
	iov[1] = (struct iovec){ &w, sizeof(w) };
	mig_frame_seal(&hdr, MIG_FRAME_HANDOVER, 0, seq, &iov[1], 1);
	iov[0] = (struct iovec){ &hdr, sizeof(hdr) };
	memset(&ctl, 0, sizeof(ctl));
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &memfd, sizeof(int));
	/* The descriptor goes with the first bytes; a short send (48 bytes on
	 * a unix socket: unlikely) finishes without it. */
	while (sent < total) {
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			poll(&p, 1, 1000);
			continue;
		}
		if (n <= 0)
			return mig_error_set(err, n < 0 ? -errno : -EPIPE, "handing guest RAM over: "
					     "sendmsg: %s", n < 0 ? strerror(errno) : "nothing sent");
		sent += (size_t)n;
		msg.msg_control = NULL;
		msg.msg_controllen = 0;
		while (n > 0 && msg.msg_iovlen) {
			size_t k = (size_t)n < msg.msg_iov->iov_len ? (size_t)n : msg.msg_iov->iov_len;

			msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + k;
			msg.msg_iov->iov_len -= k;
			n -= (ssize_t)k;
			if (!msg.msg_iov->iov_len) {
				msg.msg_iov++;
				msg.msg_iovlen--;
			}
		}
	}
	return 0;
}

int mig_handover_peek_fd(int fd, int timeout_ms, const atomic_bool *cancel, int *ret_fd,
			 struct mig_error *err)
{
	uint64_t end = mig_now_ms() + (uint64_t)timeout_ms;

	*ret_fd = -1;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		union {
			struct cmsghdr c;
			char buf[CMSG_SPACE(sizeof(int))];
		} ctl;
		char byte;
		struct iovec iov = { &byte, 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				      .msg_controllen = sizeof(ctl.buf) };
		struct cmsghdr *c;
		ssize_t n;
		int r;

		if (cancel && atomic_load(cancel))
			return mig_error_set(err, -ECANCELED, "cancelled");
		if (mig_now_ms() >= end)
			return mig_error_set(err, -ETIMEDOUT, "the source did not hand guest RAM "
					     "over within %d s", timeout_ms / 1000);
		r = poll(&p, 1, 100);
		if (r < 0 && errno != EINTR)
			return mig_error_set(err, -errno, "waiting for HANDOVER: poll: %s",
					     strerror(errno));
		if (r <= 0)
			continue;
		n = recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return mig_error_set(err, -errno, "waiting for HANDOVER: recvmsg: %s",
					     strerror(errno));
		if (n == 0)
			return mig_error_set(err, -ECONNRESET, "the source closed the control "
					     "stream before HANDOVER");
		for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			/* one descriptor is expected; any others are closed */
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int got;

				memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (*ret_fd < 0)
					*ret_fd = got;
				else
					close(got);
			}
		}
		/* No descriptor: the frame is read as it is (an ABORT says why;
		 * a HANDOVER without one is refused there). */
		return 0;
	}
}
