/* SPDX-License-Identifier: MIT */
/* Shared inside transport/: deadlines for the blocking control-plane helpers. */
#ifndef TRANSPORT_INTERNAL_H
#define TRANSPORT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

static inline int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -1 for no deadline; otherwise the milliseconds left, at least 0. */
static inline int remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* The flag given to xport_interrupt_on() is set (conn.c). */
bool xport_interrupted(void);

/* poll() for one fd until deadline, retrying on signals: 1 ready, 0 at the
 * deadline, -EINTR once xport_interrupted(), else -errno. */
struct pollfd;
int xport_poll_until(struct pollfd *p, int64_t deadline);

#endif
