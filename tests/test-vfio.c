// SPDX-License-Identifier: MIT
/*
 * The VFIO class's state machine against the kernel's rules
 * (KERNEL-UAPI.md §1.3): for each feature set a device may declare, every
 * (from, to) pair's path, step by step, as the kernel's core would take
 * it, and the arcs a driver must implement.  The expected paths are
 * written out here from the kernel's documentation, not computed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/device.h>

#include "vfio/vfio.h"

#define SC VFIO_F_STOP_COPY
#define P2P VFIO_F_P2P
#define PC VFIO_F_PRE_COPY

static const char *const abbrev[VFIO_ST_N] = {
	"ERR", "S", "R", "SC", "RES", "P", "PC", "PCP",
};

static int state_of(const char *a)
{
	for (int i = 0; i < VFIO_ST_N; i++)
		if (!strcmp(abbrev[i], a))
			return i;
	cr_assert_fail("no state %s", a);
	return -1;
}

/* The path the state machine takes, "P,S,SC", or "EINVAL". */
static void path(uint32_t flags, int from, int to, char *out, size_t n)
{
	int at = from, steps = 0;

	out[0] = 0;
	while (at != to) {
		int next = vfio_next_step(flags, at, to);

		if (next < 0) {
			snprintf(out, n, "EINVAL");
			return;
		}
		cr_assert_neq(next, at, "%s -> %s: a step that goes nowhere", abbrev[from],
			      abbrev[to]);
		cr_assert_lt(++steps, 8, "%s -> %s does not end", abbrev[from], abbrev[to]);
		snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? "," : "",
			 abbrev[next]);
		at = next;
	}
}

struct expect {
	const char *from, *to, *path;
};

/* Every pair of states the device has: listed, or from == to. */
static void check_all(uint32_t flags, const struct expect *e, unsigned n)
{
	unsigned seen = 0;

	for (int a = 0; a < VFIO_ST_N; a++) {
		for (int b = 0; b < VFIO_ST_N; b++) {
			char got[64];
			const char *want = NULL;

			if (!vfio_state_exists(flags, a) || !vfio_state_exists(flags, b)) {
				cr_assert_lt(vfio_next_step(flags, a, b), 0, "flags %#x: %s -> %s "
					     "names a state the device lacks", flags, abbrev[a],
					     abbrev[b]);
				continue;
			}
			if (a == b) {
				cr_assert_eq(vfio_next_step(flags, a, b), a);
				continue;
			}
			for (unsigned i = 0; i < n; i++)
				if (state_of(e[i].from) == a && state_of(e[i].to) == b)
					want = e[i].path;
			cr_assert_not_null(want, "flags %#x: %s -> %s not in the expected table",
					   flags, abbrev[a], abbrev[b]);
			seen++;
			path(flags, a, b, got, sizeof(got));
			cr_assert_str_eq(got, want, "flags %#x: %s -> %s", flags, abbrev[a],
					 abbrev[b]);
		}
	}
	cr_assert_eq(seen, n, "every expected pair was checked");
}

/* The kernel's full-path table for STOP_COPY | P2P | PRE_COPY. */
Test(vfio_fsm, every_pair_with_every_feature)
{
	static const struct expect e[] = {
		{ "R", "P", "P" }, { "R", "PC", "PC" }, { "R", "PCP", "P,PCP" },
		{ "R", "S", "P,S" }, { "R", "SC", "P,S,SC" }, { "R", "RES", "P,S,RES" },
		{ "P", "R", "R" }, { "P", "PC", "R,PC" }, { "P", "PCP", "PCP" },
		{ "P", "S", "S" }, { "P", "SC", "S,SC" }, { "P", "RES", "S,RES" },
		{ "PC", "R", "R" }, { "PC", "P", "R,P" }, { "PC", "PCP", "PCP" },
		{ "PC", "S", "R,P,S" }, { "PC", "SC", "PCP,SC" }, { "PC", "RES", "R,P,S,RES" },
		{ "PCP", "R", "P,R" }, { "PCP", "P", "P" }, { "PCP", "PC", "PC" },
		{ "PCP", "S", "P,S" }, { "PCP", "SC", "SC" }, { "PCP", "RES", "P,S,RES" },
		{ "S", "R", "P,R" }, { "S", "P", "P" }, { "S", "PC", "P,R,PC" },
		{ "S", "PCP", "P,PCP" }, { "S", "SC", "SC" }, { "S", "RES", "RES" },
		{ "SC", "R", "S,P,R" }, { "SC", "P", "S,P" }, { "SC", "PC", "EINVAL" },
		{ "SC", "PCP", "EINVAL" }, { "SC", "S", "S" }, { "SC", "RES", "S,RES" },
		{ "RES", "R", "S,P,R" }, { "RES", "P", "S,P" }, { "RES", "PC", "S,P,R,PC" },
		{ "RES", "PCP", "S,P,PCP" }, { "RES", "S", "S" }, { "RES", "SC", "S,SC" },
	};

	check_all(SC | P2P | PC, e, sizeof(e) / sizeof(e[0]));
}

/* Without the optional states the kernel skips them. */
Test(vfio_fsm, every_pair_with_stop_copy_only)
{
	static const struct expect e[] = {
		{ "R", "S", "S" }, { "R", "SC", "S,SC" }, { "R", "RES", "S,RES" },
		{ "S", "R", "R" }, { "S", "SC", "SC" }, { "S", "RES", "RES" },
		{ "SC", "R", "S,R" }, { "SC", "S", "S" }, { "SC", "RES", "S,RES" },
		{ "RES", "R", "S,R" }, { "RES", "S", "S" }, { "RES", "SC", "S,SC" },
	};

	check_all(SC, e, sizeof(e) / sizeof(e[0]));
}

Test(vfio_fsm, every_pair_with_p2p)
{
	static const struct expect e[] = {
		{ "R", "P", "P" }, { "R", "S", "P,S" }, { "R", "SC", "P,S,SC" },
		{ "R", "RES", "P,S,RES" },
		{ "P", "R", "R" }, { "P", "S", "S" }, { "P", "SC", "S,SC" }, { "P", "RES", "S,RES" },
		{ "S", "R", "P,R" }, { "S", "P", "P" }, { "S", "SC", "SC" }, { "S", "RES", "RES" },
		{ "SC", "R", "S,P,R" }, { "SC", "P", "S,P" }, { "SC", "S", "S" },
		{ "SC", "RES", "S,RES" },
		{ "RES", "R", "S,P,R" }, { "RES", "P", "S,P" }, { "RES", "S", "S" },
		{ "RES", "SC", "S,SC" },
	};

	check_all(SC | P2P, e, sizeof(e) / sizeof(e[0]));
}

/* "STOP_COPY|PRE_COPY: PRE_COPY->STOP_COPY is direct; PRE_COPY->STOP goes
 * through RUNNING." */
Test(vfio_fsm, every_pair_with_pre_copy)
{
	static const struct expect e[] = {
		{ "R", "PC", "PC" }, { "R", "S", "S" }, { "R", "SC", "S,SC" },
		{ "R", "RES", "S,RES" },
		{ "PC", "R", "R" }, { "PC", "S", "R,S" }, { "PC", "SC", "SC" },
		{ "PC", "RES", "R,S,RES" },
		{ "S", "R", "R" }, { "S", "PC", "R,PC" }, { "S", "SC", "SC" }, { "S", "RES", "RES" },
		{ "SC", "R", "S,R" }, { "SC", "PC", "EINVAL" }, { "SC", "S", "S" },
		{ "SC", "RES", "S,RES" },
		{ "RES", "R", "S,R" }, { "RES", "PC", "S,R,PC" }, { "RES", "S", "S" },
		{ "RES", "SC", "S,SC" },
	};

	check_all(SC | PC, e, sizeof(e) / sizeof(e[0]));
}

/* The arcs a driver implements, per feature set (the comment on
 * vfio_mig_get_next_state()). */
static void check_arcs(uint32_t flags, const char *const *want, unsigned n)
{
	unsigned count = 0;

	for (int a = 0; a < VFIO_ST_N; a++)
		for (int b = 0; b < VFIO_ST_N; b++) {
			char name[16];
			bool listed = false;

			snprintf(name, sizeof(name), "%s>%s", abbrev[a], abbrev[b]);
			for (unsigned i = 0; i < n; i++)
				listed |= !strcmp(want[i], name);
			cr_assert_eq(vfio_arc_direct(flags, a, b), listed, "flags %#x: arc %s",
				     flags, name);
			count += listed;
		}
	cr_assert_eq(count, n);
}

Test(vfio_fsm, driver_arcs_per_feature_set)
{
	static const char *const base[] = {
		"RES>S", "S>RES", "S>SC", "SC>S", "R>S", "S>R",
	};
	static const char *const p2p[] = {
		"RES>S", "S>RES", "S>SC", "SC>S", "R>P", "P>R", "P>S", "S>P",
	};
	static const char *const pc[] = {
		"RES>S", "S>RES", "S>SC", "SC>S", "R>S", "S>R", "R>PC", "PC>R", "PC>SC",
	};
	static const char *const all[] = {
		"RES>S", "S>RES", "S>SC", "SC>S", "R>P", "P>R", "P>S", "S>P",
		"PC>R", "PC>PCP", "PCP>PC", "PCP>P", "PCP>SC", "R>PC", "P>PCP",
	};

	check_arcs(SC, base, 6);
	check_arcs(SC | P2P, p2p, 8);
	check_arcs(SC | PC, pc, 9);
	check_arcs(SC | P2P | PC, all, 15);
}

/* The class's arc table is the union of those, and the reset out of ERROR. */
Test(vfio_fsm, class_arcs_are_the_union)
{
	const struct mig_device_class *cls = mig_device_class_get(MIG_DEV_VFIO);
	static const uint32_t sets[] = { SC, SC | P2P, SC | PC, SC | P2P | PC };

	cr_assert_not_null(cls, "the vfio class is built");
	cr_assert_eq(cls->nr_states, VFIO_ST_N);
	for (int a = 0; a < VFIO_ST_N; a++)
		for (int b = 0; b < VFIO_ST_N; b++) {
			bool any = a == VFIO_ST_ERROR && b == VFIO_ST_RUNNING;

			for (unsigned k = 0; k < 4; k++)
				any |= vfio_arc_direct(sets[k], a, b);
			cr_assert_eq(mig_device_arc_allowed(cls, a, b), any, "%s > %s", abbrev[a],
				     abbrev[b]);
			cr_assert_str_eq(cls->state_names[a], vfio_state_name(a));
		}
}

/* ERROR is never a target nor a place to step from; flags a device lacks
 * make their states unknown to it. */
Test(vfio_fsm, error_and_missing_states_are_refused)
{
	for (int s = 0; s < VFIO_ST_N; s++) {
		cr_assert_lt(vfio_next_step(SC | P2P | PC, s, VFIO_ST_ERROR), 0);
		cr_assert_lt(vfio_next_step(SC | P2P | PC, VFIO_ST_ERROR, s), 0);
	}
	cr_assert_lt(vfio_next_step(0, VFIO_ST_RUNNING, VFIO_ST_STOP), 0, "no STOP_COPY flag");
	cr_assert_lt(vfio_next_step(SC, VFIO_ST_RUNNING, VFIO_ST_RUNNING_P2P), 0);
	cr_assert_lt(vfio_next_step(SC | P2P, VFIO_ST_RUNNING, VFIO_ST_PRE_COPY), 0);
	cr_assert_lt(vfio_next_step(SC | PC, VFIO_ST_PRE_COPY, VFIO_ST_PRE_COPY_P2P), 0);
	cr_assert_lt(vfio_next_step(SC | P2P | PC, 8, VFIO_ST_RUNNING), 0);
}

/* Which arcs open a data session, and the saving group. */
Test(vfio_fsm, data_sessions)
{
	int opens = 0;

	for (int a = 0; a < VFIO_ST_N; a++)
		for (int b = 0; b < VFIO_ST_N; b++)
			opens += vfio_arc_opens_session(a, b);
	cr_assert_eq(opens, 4);
	cr_assert(vfio_arc_opens_session(VFIO_ST_STOP, VFIO_ST_STOP_COPY));
	cr_assert(vfio_arc_opens_session(VFIO_ST_STOP, VFIO_ST_RESUMING));
	cr_assert(vfio_arc_opens_session(VFIO_ST_RUNNING, VFIO_ST_PRE_COPY));
	cr_assert(vfio_arc_opens_session(VFIO_ST_RUNNING_P2P, VFIO_ST_PRE_COPY_P2P));
	cr_assert_not(vfio_arc_opens_session(VFIO_ST_PRE_COPY_P2P, VFIO_ST_STOP_COPY),
		      "the pre-copy stream goes on");
	cr_assert(vfio_state_saving(VFIO_ST_PRE_COPY) && vfio_state_saving(VFIO_ST_STOP_COPY));
	cr_assert_not(vfio_state_saving(VFIO_ST_RESUMING));
}

/* ---- the class's stage steps, on a device that takes every arc it has ---- */

#include "vfio/vfio-uapi.h"

struct taker {
	uint32_t flags;
	int state;
	int next_fd;
	int sessions;             /* data fds handed out */
	char log[512];            /* "R>P R>PC ..." */
};

static struct taker *taker_of(struct vfio_dev *v)
{
	return v->be_data;
}

static int taker_feature(struct vfio_dev *v, struct vfio_device_feature *f)
{
	struct taker *t = taker_of(v);
	unsigned idx = f->flags & VFIO_DEVICE_FEATURE_MASK;

	if (idx == VFIO_DEVICE_FEATURE_MIGRATION) {
		struct vfio_device_feature_migration m = { .flags = t->flags };

		memcpy(f->data, &m, sizeof(m));
		return 0;
	}
	if (idx == VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE) {
		struct vfio_device_feature_mig_state m;

		memcpy(&m, f->data, sizeof(m));
		if (f->flags & VFIO_DEVICE_FEATURE_GET) {
			m.device_state = (uint32_t)t->state;
		} else {
			/* one arc at a time: the class never asks the core to split */
			if (!vfio_arc_direct(t->flags, t->state, (int)m.device_state))
				return -EINVAL;
			snprintf(t->log + strlen(t->log), sizeof(t->log) - strlen(t->log), "%s>%s ",
				 abbrev[t->state], abbrev[m.device_state]);
			m.data_fd = vfio_arc_opens_session(t->state, (int)m.device_state) ?
				    t->next_fd++ : -1;
			t->sessions += m.data_fd >= 0;
			t->state = (int)m.device_state;
		}
		memcpy(f->data, &m, sizeof(m));
		return 0;
	}
	return -ENOTTY;   /* no logging, no size estimate */
}

static ssize_t taker_read(struct vfio_dev *v, int fd, void *buf, size_t n)
{
	(void)v; (void)fd; (void)buf; (void)n;
	return 0;
}

static ssize_t taker_write(struct vfio_dev *v, int fd, const void *buf, size_t n)
{
	(void)v; (void)fd; (void)buf;
	return (ssize_t)n;
}

static int taker_info(struct vfio_dev *v, int fd, struct vfio_precopy_info *info)
{
	(void)v; (void)fd;
	info->initial_bytes = info->dirty_bytes = 0;
	return 0;
}

static void taker_close(struct vfio_dev *v, int fd)
{
	(void)v; (void)fd;
}

static int taker_reset(struct vfio_dev *v)
{
	taker_of(v)->state = VFIO_ST_RUNNING;
	return 0;
}

static const struct vfio_backend taker_be = {
	.name = "taker", .feature = taker_feature, .data_read = taker_read,
	.data_write = taker_write, .precopy_info = taker_info, .data_close = taker_close,
	.reset = taker_reset,
};

static struct mig_reader *empty_state(void *arg, struct mig_device *d)
{
	static struct mig_mem_reader rd;

	(void)arg; (void)d;
	mig_mem_reader_init(&rd, "", 0);
	return &rd.r;
}

static void walk(struct vfio_dev *v, enum mig_stage stage)
{
	struct mig_device *d = &v->dev;
	struct mig_walk w = { .state_of = empty_state };
	struct mig_error err = { 0 };

	cr_assert_eq(mig_devices_walk(&d, 1, stage, &w, &err), 0, "stage %s: %s",
		     mig_stage_to_string(stage), err.msg);
}

static void device(struct vfio_dev *v, struct taker *t, uint32_t flags, int state)
{
	struct mig_error err = { 0 };

	*t = (struct taker){ .flags = flags, .state = state, .next_fd = 100 };
	cr_assert_eq(vfio_dev_init(v, 0, &taker_be, t, "taker", &err), 0, "%s", err.msg);
	cr_assert_eq(v->dev.state, state);
}

/* A source device, for each feature set: which arcs each stage takes. */
Test(vfio_class, source_stages_for_each_feature_set)
{
	static const struct {
		uint32_t flags;
		const char *track, *quiesce, *save, *release, *rollback;
	} c[] = {
		{ SC | P2P | PC, "R>PC ", "PC>PCP PCP>SC ", "", "SC>S ", "SC>S S>P P>R " },
		{ SC | P2P, "", "R>P P>S ", "S>SC ", "SC>S ", "SC>S S>P P>R " },
		{ SC | PC, "R>PC ", "PC>SC ", "", "SC>S ", "SC>S S>R " },
		{ SC, "", "R>S ", "S>SC ", "SC>S ", "SC>S S>R " },
	};

	for (unsigned i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct vfio_dev v, w;
		struct taker t, u;

		device(&v, &t, c[i].flags, VFIO_ST_RUNNING);
		walk(&v, MIG_STAGE_TRACK);
		cr_assert_str_eq(t.log, c[i].track, "flags %#x: track", c[i].flags);
		t.log[0] = 0;
		walk(&v, MIG_STAGE_QUIESCE);
		cr_assert_str_eq(t.log, c[i].quiesce, "flags %#x: quiesce", c[i].flags);
		t.log[0] = 0;
		walk(&v, MIG_STAGE_SAVE);
		cr_assert_str_eq(t.log, c[i].save, "flags %#x: save", c[i].flags);
		cr_assert_eq(v.dev.state, VFIO_ST_STOP_COPY);
		cr_assert_eq(t.sessions, 1, "flags %#x: one stream, pre-copy and final", c[i].flags);
		cr_assert_geq(v.data_fd, 100, "the session is open to read");
		/* the same device twice: once released, once rolled back */
		w = v;
		u = t;
		w.be_data = &u;
		t.log[0] = 0;
		walk(&v, MIG_STAGE_RELEASE);
		cr_assert_str_eq(t.log, c[i].release, "flags %#x: release", c[i].flags);
		cr_assert_eq(v.data_fd, -1, "leaving the saving group ends the session");
		u.log[0] = 0;
		walk(&w, MIG_STAGE_ROLLBACK);
		cr_assert_str_eq(u.log, c[i].rollback, "flags %#x: rollback", c[i].flags);
	}
}

/* A rollback from pre-copy goes straight back to running, without P2P. */
Test(vfio_class, rollback_from_pre_copy)
{
	struct vfio_dev v;
	struct taker t;

	device(&v, &t, SC | P2P | PC, VFIO_ST_RUNNING);
	walk(&v, MIG_STAGE_TRACK);
	t.log[0] = 0;
	walk(&v, MIG_STAGE_ROLLBACK);
	cr_assert_str_eq(t.log, "PC>R ");
	cr_assert_eq(v.data_fd, -1);
}

/* A destination device: resuming before the first page, checked out of
 * RESUMING, then P2P before running. */
Test(vfio_class, destination_stages_for_each_feature_set)
{
	static const struct {
		uint32_t flags;
		const char *receive, *load, *start;
	} c[] = {
		{ SC | P2P | PC, "R>P P>S S>RES ", "RES>S ", "S>P P>R " },
		{ SC | P2P, "R>P P>S S>RES ", "RES>S ", "S>P P>R " },
		{ SC | PC, "R>S S>RES ", "RES>S ", "S>R " },
		{ SC, "R>S S>RES ", "RES>S ", "S>R " },
	};

	for (unsigned i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct vfio_dev v;
		struct taker t;

		device(&v, &t, c[i].flags, VFIO_ST_RUNNING);
		walk(&v, MIG_STAGE_RECEIVE);
		cr_assert_str_eq(t.log, c[i].receive, "flags %#x: receive", c[i].flags);
		cr_assert_geq(v.data_fd, 100);
		t.log[0] = 0;
		walk(&v, MIG_STAGE_LOAD);
		cr_assert_str_eq(t.log, c[i].load, "flags %#x: load", c[i].flags);
		cr_assert_eq(v.data_fd, -1, "leaving RESUMING ends the session");
		t.log[0] = 0;
		walk(&v, MIG_STAGE_START);
		cr_assert_str_eq(t.log, c[i].start, "flags %#x: start", c[i].flags);
	}
}
