// SPDX-License-Identifier: MIT
/*
 * The VFIO migration state machine as the kernel defines it
 * (KERNEL-UAPI.md §1.2-1.3): which states a device has, which arcs its
 * driver implements, and the step the kernel's core would take next.
 */
#include <errno.h>

#include "vfio.h"

#define ST(x) VFIO_ST_##x

const char *const vfio_state_names[VFIO_ST_N] = {
	[ST(ERROR)] = "error", [ST(STOP)] = "stop", [ST(RUNNING)] = "running",
	[ST(STOP_COPY)] = "stop_copy", [ST(RESUMING)] = "resuming",
	[ST(RUNNING_P2P)] = "running_p2p", [ST(PRE_COPY)] = "pre_copy",
	[ST(PRE_COPY_P2P)] = "pre_copy_p2p",
};

const char *vfio_state_name(int state)
{
	return state >= 0 && state < VFIO_ST_N ? vfio_state_names[state] : "?";
}

/* The flags a state needs; ERROR needs more than any device has. */
static uint32_t needs(int state)
{
	switch (state) {
	case ST(STOP): case ST(RUNNING): case ST(STOP_COPY): case ST(RESUMING):
		return VFIO_F_STOP_COPY;
	case ST(RUNNING_P2P):
		return VFIO_F_STOP_COPY | VFIO_F_P2P;
	case ST(PRE_COPY):
		return VFIO_F_STOP_COPY | VFIO_F_PRE_COPY;
	case ST(PRE_COPY_P2P):
		return VFIO_F_STOP_COPY | VFIO_F_P2P | VFIO_F_PRE_COPY;
	default:
		return ~0U;
	}
}

bool vfio_state_exists(uint32_t flags, int state)
{
	return state >= 0 && state < VFIO_ST_N && (needs(state) & flags) == needs(state);
}

bool vfio_state_saving(int state)
{
	return state == ST(PRE_COPY) || state == ST(PRE_COPY_P2P) || state == ST(STOP_COPY);
}

/*
 * First step from a state (row) towards a target (column) for a device
 * with every optional feature; the kernel's core skips over the states a
 * device lacks by looking up the step from the skipped state.  ERROR marks
 * what is refused.
 */
static const uint8_t first[VFIO_ST_N][VFIO_ST_N] = {
	[ST(STOP)] = {
		[ST(STOP)] = ST(STOP), [ST(RUNNING)] = ST(RUNNING_P2P),
		[ST(PRE_COPY)] = ST(RUNNING_P2P), [ST(PRE_COPY_P2P)] = ST(RUNNING_P2P),
		[ST(STOP_COPY)] = ST(STOP_COPY), [ST(RESUMING)] = ST(RESUMING),
		[ST(RUNNING_P2P)] = ST(RUNNING_P2P),
	},
	[ST(RUNNING)] = {
		[ST(STOP)] = ST(RUNNING_P2P), [ST(RUNNING)] = ST(RUNNING),
		[ST(PRE_COPY)] = ST(PRE_COPY), [ST(PRE_COPY_P2P)] = ST(RUNNING_P2P),
		[ST(STOP_COPY)] = ST(RUNNING_P2P), [ST(RESUMING)] = ST(RUNNING_P2P),
		[ST(RUNNING_P2P)] = ST(RUNNING_P2P),
	},
	[ST(PRE_COPY)] = {
		[ST(STOP)] = ST(RUNNING), [ST(RUNNING)] = ST(RUNNING),
		[ST(PRE_COPY)] = ST(PRE_COPY), [ST(PRE_COPY_P2P)] = ST(PRE_COPY_P2P),
		[ST(STOP_COPY)] = ST(PRE_COPY_P2P), [ST(RESUMING)] = ST(RUNNING),
		[ST(RUNNING_P2P)] = ST(RUNNING),
	},
	[ST(PRE_COPY_P2P)] = {
		[ST(STOP)] = ST(RUNNING_P2P), [ST(RUNNING)] = ST(RUNNING_P2P),
		[ST(PRE_COPY)] = ST(PRE_COPY), [ST(PRE_COPY_P2P)] = ST(PRE_COPY_P2P),
		[ST(STOP_COPY)] = ST(STOP_COPY), [ST(RESUMING)] = ST(RUNNING_P2P),
		[ST(RUNNING_P2P)] = ST(RUNNING_P2P),
	},
	[ST(STOP_COPY)] = {
		[ST(STOP)] = ST(STOP), [ST(RUNNING)] = ST(STOP),
		[ST(PRE_COPY)] = ST(ERROR), [ST(PRE_COPY_P2P)] = ST(ERROR),
		[ST(STOP_COPY)] = ST(STOP_COPY), [ST(RESUMING)] = ST(STOP),
		[ST(RUNNING_P2P)] = ST(STOP),
	},
	[ST(RESUMING)] = {
		[ST(STOP)] = ST(STOP), [ST(RUNNING)] = ST(STOP),
		[ST(PRE_COPY)] = ST(STOP), [ST(PRE_COPY_P2P)] = ST(STOP),
		[ST(STOP_COPY)] = ST(STOP), [ST(RESUMING)] = ST(RESUMING),
		[ST(RUNNING_P2P)] = ST(STOP),
	},
	[ST(RUNNING_P2P)] = {
		[ST(STOP)] = ST(STOP), [ST(RUNNING)] = ST(RUNNING),
		[ST(PRE_COPY)] = ST(RUNNING), [ST(PRE_COPY_P2P)] = ST(PRE_COPY_P2P),
		[ST(STOP_COPY)] = ST(STOP), [ST(RESUMING)] = ST(STOP),
		[ST(RUNNING_P2P)] = ST(RUNNING_P2P),
	},
	/* [ST(ERROR)]: all ERROR */
};

int vfio_next_step(uint32_t flags, int from, int to)
{
	int next;

	if (!vfio_state_exists(flags, from) || !vfio_state_exists(flags, to))
		return -EINVAL;
	next = first[from][to];
	/* a skipped state hands over to its own first step; the ERROR test
	 * is what older kernels lack */
	while (next != ST(ERROR) && !vfio_state_exists(flags, next))
		next = first[next][to];
	return next == ST(ERROR) ? -EINVAL : next;
}

bool vfio_arc_direct(uint32_t flags, int from, int to)
{
	return from != to && vfio_next_step(flags, from, to) == to;
}

bool vfio_arc_opens_session(int from, int to)
{
	return (from == ST(STOP) && (to == ST(STOP_COPY) || to == ST(RESUMING))) ||
	       (from == ST(RUNNING) && to == ST(PRE_COPY)) ||
	       (from == ST(RUNNING_P2P) && to == ST(PRE_COPY_P2P));
}
