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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <migrate/device.h>
#include <migrate/vm.h>

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

/* ---- the sim backend: the kernel's contract, and real work ---- */

#include "vfio/sim.h"

#define RAM (4ULL << 20)
#define DMA_AT (1ULL << 20)
#define DMA_LEN (2ULL << 20)

struct simdev {
	struct vfio_sim sim;
	struct vfio_sim_v1 v1;
	struct vfio_sim *m;       /* the device model: sim, or the one behind v1's region */
	bool is_v1;
	struct vfio_dev dev;
	uint8_t *ram;
};

/* sim_up makes v1-protocol devices while this is set */
static bool use_v1;

static void sim_up(struct simdev *d, uint32_t flags, const struct vfio_sim_opts *extra)
{
	struct vfio_sim_opts o = { 0 };
	struct mig_error err = { 0 };

	if (extra)
		o = *extra;
	o.flags = flags;
	if (!o.table_bytes)
		o.table_bytes = 256 * 1024;
	o.seed = 7;
	d->ram = calloc(1, RAM);
	cr_assert_not_null(d->ram);
	o.ram = d->ram;
	o.dma = (struct vfio_range){ DMA_AT, DMA_LEN };
	d->is_v1 = use_v1;
	if (use_v1) {
		cr_assert_eq(vfio_sim_v1_init(&d->v1, &o, &err), 0, "%s", err.msg);
		d->m = &d->v1.sim;
		cr_assert_eq(vfio_dev_init(&d->dev, 0, &vfio_sim_v1_backend, &d->v1, "v1", &err), 0,
			     "%s", err.msg);
	} else {
		cr_assert_eq(vfio_sim_init(&d->sim, &o, &err), 0, "%s", err.msg);
		d->m = &d->sim;
		cr_assert_eq(vfio_dev_init(&d->dev, 0, &vfio_sim_backend, &d->sim, "sim0", &err), 0,
			     "%s", err.msg);
	}
	d->dev.ranges[0] = (struct vfio_range){ DMA_AT, DMA_LEN };
	d->dev.nr_ranges = 1;
}

static void sim_down(struct simdev *d)
{
	vfio_dev_fini(&d->dev);
	if (d->is_v1)
		vfio_sim_v1_fini(&d->v1);
	else
		vfio_sim_fini(&d->sim);
	free(d->ram);
}

static int feat(struct simdev *d, uint32_t argsz, uint32_t flags, void *p, size_t len)
{
	union {
		struct vfio_device_feature f;
		uint8_t b[128];
	} u = { 0 };
	int r;

	u.f.argsz = argsz;
	u.f.flags = flags;
	memcpy(u.f.data, p, len);
	r = vfio_sim_backend.feature(&d->dev, &u.f);
	memcpy(p, u.f.data, len);
	return r;
}

#define GET VFIO_DEVICE_FEATURE_GET
#define SET VFIO_DEVICE_FEATURE_SET
#define PROBE VFIO_DEVICE_FEATURE_PROBE
#define MIGSTATE VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE

static int set_to(struct simdev *d, uint32_t state, int *fd)
{
	struct vfio_device_feature_mig_state m = { .device_state = state, .data_fd = -1 };
	int r = feat(d, 16, SET | MIGSTATE, &m, sizeof(m));

	*fd = m.data_fd;
	return r;
}

/* The core's checks of VFIO_DEVICE_FEATURE, and the driver's arcs. */
Test(vfio_sim, the_kernels_answers)
{
	struct simdev d;
	struct vfio_device_feature_mig_state m = { 0 };
	struct vfio_device_feature_mig_data_size ds = { 0 };
	struct vfio_precopy_info info = { .argsz = sizeof(info) };
	uint8_t buf[8192];
	uint64_t total = 0;
	ssize_t n;
	int fd;

	sim_up(&d, SC | P2P | PC, NULL);
	cr_assert_eq(feat(&d, 4, GET | MIGSTATE, &m, sizeof(m)), -EINVAL, "argsz below the header");
	cr_assert_eq(feat(&d, 16, GET | MIGSTATE | (1U << 20), &m, sizeof(m)), -EINVAL, "unknown flag");
	cr_assert_eq(feat(&d, 16, GET | SET | MIGSTATE, &m, sizeof(m)), -EINVAL, "GET and SET");
	cr_assert_eq(feat(&d, 16, GET | SET | PROBE | MIGSTATE, &m, sizeof(m)), 0, "a probe");
	cr_assert_eq(feat(&d, 16, SET | PROBE | VFIO_DEVICE_FEATURE_MIGRATION, &m, sizeof(m)),
		     -EINVAL, "MIGRATION has no SET");
	cr_assert_eq(feat(&d, 12, GET | MIGSTATE, &m, sizeof(m)), -EINVAL, "payload too short");
	cr_assert_eq(feat(&d, 16, GET | 42, &m, sizeof(m)), -ENOTTY, "no such feature");
	cr_assert_eq(set_to(&d, 42, &fd), -EINVAL);
	cr_assert_eq(set_to(&d, VFIO_ST_ERROR, &fd), -EINVAL, "ERROR is never asked for");
	/* several arcs in one SET, as the core splits them; the fd of the last */
	cr_assert_eq(set_to(&d, VFIO_ST_STOP_COPY, &fd), 0);
	cr_assert_geq(fd, 1000);
	cr_assert_eq(d.sim.state, VFIO_ST_STOP_COPY);
	cr_assert_eq(set_to(&d, VFIO_ST_PRE_COPY, &fd), -EINVAL, "blocked, and no hang");
	cr_assert_eq(d.sim.state, VFIO_ST_STOP_COPY);
	cr_assert_eq(vfio_sim_backend.precopy_info(&d.dev, d.sim.fd, &info), -EINVAL,
		     "PRECOPY_INFO outside pre-copy");
	cr_assert_eq(feat(&d, 16, GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, &ds, sizeof(ds)), 0);
	while ((n = vfio_sim_backend.data_read(&d.dev, d.sim.fd, buf, sizeof(buf))) > 0)
		total += (uint64_t)n;
	cr_assert_eq(n, 0, "STOP_COPY reads to EOF, never ENOMSG");
	cr_assert_eq(total, ds.stop_copy_length, "MIG_DATA_SIZE was the stream's size");
	sim_down(&d);
}

Test(vfio_sim, dma_logging_answers)
{
	struct simdev d;
	struct vfio_device_feature_dma_logging_range rg[300];
	struct vfio_device_feature_dma_logging_control c = { .page_size = 4096, .ranges = (uintptr_t)rg };
	struct vfio_device_feature_dma_logging_report rp = { .iova = 0, .length = RAM,
							     .page_size = 1000 };
	uint32_t start = SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START;

	sim_up(&d, SC | P2P | PC, NULL);
	cr_assert_eq(feat(&d, 32, start, &c, sizeof(c)), -EINVAL, "no ranges");
	c.num_ranges = 257;
	for (unsigned i = 0; i < 300; i++)
		rg[i] = (struct vfio_device_feature_dma_logging_range){ i * 8192ULL, 4096 };
	cr_assert_eq(feat(&d, 32, start, &c, sizeof(c)), -E2BIG, "more ranges than a page holds");
	c.num_ranges = 2;
	rg[1].iova = 100;
	cr_assert_eq(feat(&d, 32, start, &c, sizeof(c)), -EINVAL, "not page aligned");
	rg[1].iova = 0;
	cr_assert_eq(feat(&d, 32, start, &c, sizeof(c)), -EINVAL, "overlapping");
	rg[1].iova = 8192;
	cr_assert_eq(feat(&d, 32, start, &c, sizeof(c)), 0);
	cr_assert_eq(feat(&d, 32, start, &c, sizeof(c)), -EBUSY, "one START at a time");
	cr_assert_eq(feat(&d, 40, GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, &rp, sizeof(rp)),
		     -EINVAL, "report page size");
	sim_down(&d);
}

/* RAM as a migration would move it: the pages set in `dirty`. */
static void copy_pages(uint8_t *to, const uint8_t *from, const uint64_t *dirty)
{
	for (uint64_t p = 0; p < RAM / 4096; p++)
		if (dirty[p / 64] & (1ULL << (p % 64)))
			memcpy(to + p * 4096, from + p * 4096, 4096);
}

static struct mig_buf carried;

static struct mig_reader *carried_state(void *arg, struct mig_device *d)
{
	static struct mig_mem_reader rd;

	(void)arg; (void)d;
	mig_mem_reader_init(&rd, carried.data, carried.len);
	return &rd.r;
}

static int walk_err(struct vfio_dev *v, enum mig_stage stage, struct mig_error *err)
{
	struct mig_device *d = &v->dev;
	struct mig_walk w = { .state_of = carried_state };

	return mig_devices_walk(&d, 1, stage, &w, err);
}

/*
 * A whole migration of one device through the class, by hand: pre-copy
 * data while it runs and DMA-writes, the DMA log merged into what is
 * copied of RAM each round, the final state, the destination's check.
 * `merge` false copies RAM once and never again, as an engine that
 * forgot the device's log would: the destination's self-check then fails.
 */
static void migrate_sim(uint32_t flags, const struct vfio_sim_opts *extra, bool merge,
			uint64_t *ret_errors)
{
	struct simdev s, d;
	uint64_t bitmap[RAM / 4096 / 64], count;
	struct mig_error err = { 0 };
	const struct mig_precopy_ops *pre = vfio_class.precopy_ops;
	const struct mig_dirty_ops *log = vfio_class.dirty_ops;

	struct vfio_sim_opts same = { .table_bytes = extra ? extra->table_bytes : 0 };

	sim_up(&s, flags, extra);
	sim_up(&d, flags, &same);    /* the same model, without the faults */
	cr_assert_eq(log->start(&s.dev.dev, &err), 0, "%s", err.msg);
	cr_assert_eq(walk_err(&s.dev, MIG_STAGE_TRACK, &err), 0, "%s", err.msg);
	cr_assert_eq(walk_err(&d.dev, MIG_STAGE_RECEIVE, &err), 0, "%s", err.msg);
	memcpy(d.ram, s.ram, RAM);            /* round 0: all of RAM */
	for (int round = 1; round <= 4; round++) {
		for (int k = 0; k < 200; k++)
			cr_assert_eq(vfio_sim_tick(s.m), 0);
		memset(bitmap, 0, sizeof(bitmap));
		cr_assert_eq(log->sync(&s.dev.dev, bitmap, &count, &err), 0, "%s", err.msg);
		if (merge)
			copy_pages(d.ram, s.ram, bitmap);
		while (pre->pending(&s.dev.dev)) {
			struct mig_buf chunk = { 0 };
			struct mig_buf_writer bw;
			struct mig_mem_reader rd;

			mig_buf_writer_init(&bw, &chunk);
			cr_assert_eq(pre->save_chunk(&s.dev.dev, &bw.w, 65536, &err), 0, "%s", err.msg);
			if (!chunk.len)
				break;
			mig_mem_reader_init(&rd, chunk.data, chunk.len);
			cr_assert_eq(pre->load_chunk(&d.dev.dev, &rd.r, &err), 0, "%s", err.msg);
			mig_buf_free(&chunk);
		}
	}
	/* work after the last round, and an estimate of what is left (as the
	 * engine's convergence policy asks) before the switchover */
	for (int k = 0; k < 50; k++)
		cr_assert_eq(vfio_sim_tick(s.m), 0);
	pre->pending(&s.dev.dev);
	cr_assert_eq(walk_err(&s.dev, MIG_STAGE_QUIESCE, &err), 0, "%s", err.msg);
	cr_assert_eq(vfio_sim_tick(s.m), -EBUSY, "a stopped device does no DMA");
	cr_assert_eq(walk_err(&s.dev, MIG_STAGE_SAVE, &err), 0, "%s", err.msg);
	memset(bitmap, 0, sizeof(bitmap));
	cr_assert_eq(log->sync(&s.dev.dev, bitmap, &count, &err), 0, "%s", err.msg);
	if (merge)
		copy_pages(d.ram, s.ram, bitmap);
	cr_assert_eq(log->stop(&s.dev.dev, &err), 0);
	carried.len = 0;
	{
		struct mig_buf_writer bw;

		mig_buf_writer_init(&bw, &carried);
		cr_assert_eq(vfio_class.ops->save(&s.dev.dev, &bw.w, &err), 0, "%s", err.msg);
	}
	cr_assert_eq(walk_err(&d.dev, MIG_STAGE_LOAD, &err), 0, "%s", err.msg);
	cr_assert_eq(walk_err(&d.dev, MIG_STAGE_START, &err), 0, "%s", err.msg);
	cr_assert_eq(d.m->state, VFIO_ST_RUNNING);
	cr_assert_eq(memcmp(d.m->table, s.m->table, d.m->o.table_bytes), 0, "the tables");
	cr_assert_eq(d.m->ops, s.m->ops);
	if (flags & PC)
		cr_assert_gt(s.dev.precopy_bytes, s.m->o.table_bytes, "the table went in pre-copy");
	else
		cr_assert_eq(s.dev.precopy_bytes, 0);
	cr_assert_gt(s.dev.final_bytes, 0);
	*ret_errors = vfio_sim_check(d.m);
	cr_assert_eq(vfio_sim_tick(d.m), 0, "it runs on");
	mig_buf_free(&carried);
	sim_down(&s);
	sim_down(&d);
}

Test(vfio_sim, migrates_through_the_class_for_each_feature_set)
{
	static const uint32_t sets[] = { SC, SC | P2P, SC | PC, SC | P2P | PC };

	for (unsigned i = 0; i < 4; i++) {
		uint64_t errors;

		migrate_sim(sets[i], NULL, true, &errors);
		cr_assert_eq(errors, 0, "flags %#x", sets[i]);
	}
}

Test(vfio_sim, forgetting_the_dma_log_fails_its_self_check)
{
	uint64_t errors;

	migrate_sim(SC | P2P | PC, NULL, false, &errors);
	cr_assert_gt(errors, 0, "the destination's last DMA page is stale");
}

/* A table that is not a whole number of 64 chunks, nor of chunks. */
Test(vfio_sim, odd_table_sizes)
{
	static const uint32_t sizes[] = { 65536, 65536 + 100, 4096 * 70 + 1 };

	for (unsigned i = 0; i < 3; i++) {
		struct vfio_sim_opts o = { .table_bytes = sizes[i] };
		uint64_t errors;

		migrate_sim(SC | P2P | PC, &o, true, &errors);
		cr_assert_eq(errors, 0, "table of %u bytes", sizes[i]);
	}
}

/* More pre-copy data than it announced: the class reads until ENOMSG, and
 * the rest goes with the final state. */
Test(vfio_sim, more_pre_copy_data_than_announced)
{
	struct vfio_sim_opts o = { .overshoot = 100000 };
	uint64_t errors;

	migrate_sim(SC | P2P | PC, &o, true, &errors);
	cr_assert_eq(errors, 0);
}

/* Its final state, damaged on the way: leaving RESUMING fails, the class
 * says where the device is, and a discard gets it running again. */
Test(vfio_sim, damaged_state_is_refused)
{
	struct simdev s, d;
	struct mig_error err = { 0 };
	struct mig_buf_writer bw;

	sim_up(&s, SC | P2P, NULL);
	sim_up(&d, SC | P2P, NULL);
	cr_assert_eq(walk_err(&s.dev, MIG_STAGE_QUIESCE, &err), 0, "%s", err.msg);
	cr_assert_eq(walk_err(&s.dev, MIG_STAGE_SAVE, &err), 0, "%s", err.msg);
	carried.len = 0;
	mig_buf_writer_init(&bw, &carried);
	cr_assert_eq(vfio_class.ops->save(&s.dev.dev, &bw.w, &err), 0, "%s", err.msg);
	carried.data[0] ^= 0xff;             /* the first record's magic */
	cr_assert_eq(walk_err(&d.dev, MIG_STAGE_RECEIVE, &err), 0, "%s", err.msg);
	cr_assert_eq(walk_err(&d.dev, MIG_STAGE_LOAD, &err), -EFAULT);
	cr_assert_not_null(strstr(err.msg, "resuming => stop: Bad address (the device is now "
				  "error)"), "%s", err.msg);
	cr_assert_eq(d.dev.dev.state, VFIO_ST_ERROR);
	mig_error_clear(&err);
	cr_assert_eq(walk_err(&d.dev, MIG_STAGE_DISCARD, &err), 0, "%s", err.msg);
	cr_assert_eq(d.sim.state, VFIO_ST_RUNNING, "reset");
	/* cut short: no closing record */
	mig_error_clear(&err);
	carried.data[0] ^= 0xff;
	carried.len -= 40;
	cr_assert_eq(walk_err(&d.dev, MIG_STAGE_RECEIVE, &err), 0, "%s", err.msg);
	cr_assert_eq(walk_err(&d.dev, MIG_STAGE_LOAD, &err), -EINVAL);
	mig_buf_free(&carried);
	sim_down(&s);
	sim_down(&d);
}

/* An arc that fails with an errno, leaving the device where the driver
 * left it: the error names the arc and that state; the rollback walk takes
 * it back to running. */
Test(vfio_sim, a_failed_arc_rolls_back)
{
	static const struct { uint32_t flags; int from, to, at, err; const char *msg; } c[] = {
		{ SC | P2P, VFIO_ST_RUNNING_P2P, VFIO_ST_STOP, VFIO_ST_RUNNING_P2P, EIO,
		  "running_p2p => stop: Input/output error (the device is now running_p2p)" },
		{ SC | P2P | PC, VFIO_ST_PRE_COPY_P2P, VFIO_ST_STOP_COPY, VFIO_ST_ERROR, ENOMEM,
		  "pre_copy_p2p => stop_copy: Cannot allocate memory (the device is now error)" },
		{ SC | P2P | PC, VFIO_ST_RUNNING, VFIO_ST_PRE_COPY, VFIO_ST_RUNNING, EBUSY,
		  "running => pre_copy: Device or resource busy (the device is now running)" },
	};

	for (unsigned i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct vfio_sim_opts o = { .fail_from = c[i].from, .fail_to = c[i].to,
					   .fail_errno = c[i].err, .fail_at = c[i].at };
		struct mig_error err = { 0 };
		struct simdev s;
		int r;

		sim_up(&s, c[i].flags, &o);
		r = walk_err(&s.dev, MIG_STAGE_TRACK, &err);
		if (r == 0)
			r = walk_err(&s.dev, MIG_STAGE_QUIESCE, &err);
		cr_assert_eq(r, -c[i].err, "case %u", i);
		cr_assert_not_null(strstr(err.msg, c[i].msg), "case %u: %s", i, err.msg);
		cr_assert_eq(s.dev.dev.state, c[i].at);
		mig_error_clear(&err);
		cr_assert_eq(walk_err(&s.dev, MIG_STAGE_ROLLBACK, &err), 0, "%s", err.msg);
		cr_assert_eq(s.sim.state, VFIO_ST_RUNNING, "case %u", i);
		cr_assert_eq(s.dev.data_fd, -1, "case %u: no session left open", i);
		sim_down(&s);
	}
}

/* A device that cannot log its DMA: nothing while it runs, every page it
 * reaches once it is stopped, and that cost in its final size. */
Test(vfio_sim, without_a_dma_log_everything_it_reaches_goes_at_the_end)
{
	struct vfio_sim_opts o = { .no_log = true };
	const struct mig_dirty_ops *log = vfio_class.dirty_ops;
	uint64_t bitmap[RAM / 4096 / 64] = { 0 }, count = 1;
	struct mig_error err = { 0 };
	struct simdev s;

	sim_up(&s, SC | P2P, &o);
	cr_assert_eq(log->start(&s.dev.dev, &err), 0, "%s", err.msg);
	cr_assert(s.dev.no_log);
	cr_assert_geq(vfio_class.ops->final_size(&s.dev.dev), DMA_LEN);
	vfio_sim_tick(&s.sim);
	cr_assert_eq(log->sync(&s.dev.dev, bitmap, &count, &err), 0);
	cr_assert_eq(count, 0, "running: it cannot say");
	cr_assert_eq(walk_err(&s.dev, MIG_STAGE_QUIESCE, &err), 0, "%s", err.msg);
	cr_assert_eq(log->sync(&s.dev.dev, bitmap, &count, &err), 0);
	cr_assert_eq(count, DMA_LEN / 4096, "stopped: all it reaches");
	cr_assert_eq(bitmap[DMA_AT / 4096 / 64], ~0ULL);
	cr_assert_eq(bitmap[0], 0, "and nothing else");
	sim_down(&s);
}

/* A REPORT that fails: the log is unreliable, every page goes again. */
Test(vfio_sim, a_lost_log_marks_everything)
{
	struct vfio_sim_opts o = { .lose_log = true };
	const struct mig_dirty_ops *log = vfio_class.dirty_ops;
	uint64_t bitmap[RAM / 4096 / 64] = { 0 }, count;
	struct mig_error err = { 0 };
	struct simdev s;

	sim_up(&s, SC | P2P | PC, &o);
	cr_assert_eq(log->start(&s.dev.dev, &err), 0, "%s", err.msg);
	cr_assert_eq(log->sync(&s.dev.dev, bitmap, &count, &err), MIG_DIRTY_LOST);
	cr_assert_eq(log->sync(&s.dev.dev, bitmap, &count, &err), 0, "once");
	sim_down(&s);
}

/* The DMA thread writes at its rate while the device runs, and not once
 * it is stopped. */
Test(vfio_sim, the_dma_thread_runs_only_while_the_device_does)
{
	struct vfio_sim_opts o = { .dma_rate = 2000 };
	struct mig_error err = { 0 };
	struct simdev s;
	uint64_t seq;

	sim_up(&s, SC | P2P, &o);
	cr_assert_eq(vfio_sim_start_dma(&s.sim), 0);
	usleep(50000);
	cr_assert_eq(s.sim.dma_seq, 0, "not armed: no DMA");
	vfio_sim_arm(&s.sim);
	for (int i = 0; i < 500 && __atomic_load_n(&s.sim.dma_seq, __ATOMIC_RELAXED) < 20; i++)
		usleep(10000);
	cr_assert_geq(s.sim.dma_seq, 20, "it wrote");
	cr_assert_eq(walk_err(&s.dev, MIG_STAGE_QUIESCE, &err), 0, "%s", err.msg);
	seq = s.sim.dma_seq;
	usleep(50000);
	cr_assert_eq(s.sim.dma_seq, seq, "stopped: no DMA");
	vfio_sim_stop_dma(&s.sim);
	sim_down(&s);
}

/* What a destination's device must match, field by field. */
Test(vfio_class, compatibility_names_the_field)
{
	const struct mig_compat_ops *ops = vfio_class.compat_ops;
	struct mig_error err = { 0 };
	struct vfio_desc want;
	struct mig_buf b = { 0 };
	struct simdev s;

	sim_up(&s, SC | P2P | PC, NULL);
	s.dev.desc.vendor = 0x10de;
	s.dev.desc.device = 0x2330;
	snprintf(s.dev.desc.mdev_type, sizeof(s.dev.desc.mdev_type), "mtty-2");
	s.dev.desc.nr_regions = 2;
	s.dev.desc.regions[0] = (struct vfio_desc_region){ 1 << 20, 7, VFIO_REGION_PREFETCH };
	s.dev.desc.regions[1] = (struct vfio_desc_region){ 4096, 3, 0 };
	cr_assert_eq(ops->describe(&s.dev.dev, &b, &err), 0);
	cr_assert_eq(b.len, sizeof(want));
	cr_assert_leq(b.len, MIG_MANIFEST_DESC_MAX, "it fits a manifest entry");
	cr_assert_eq(ops->check(&s.dev.dev, b.data, b.len, &err), 0, "itself: %s", err.msg);
	memcpy(&want, b.data, sizeof(want));

#define EXPECT(field_change, text) do {                                              \
		struct vfio_desc d = want;                                            \
		field_change;                                                          \
		mig_error_clear(&err);                                                 \
		cr_assert_lt(ops->check(&s.dev.dev, &d, sizeof(d), &err), 0, text);    \
		cr_assert_not_null(strstr(err.msg, text), "%s", err.msg);              \
	} while (0)
	EXPECT(snprintf(d.mdev_type, sizeof(d.mdev_type), "mtty-1"),
	       "mdev type: the source's is 'mtty-1', this host's 'mtty-2'");
	EXPECT(d.device = 0x2331, "PCI ID: the source's is 10de:2331");
	EXPECT(d.flags = SC | P2P, "migration flags: the source's device has 0x3, this host's 0x7");
	EXPECT(d.nr_regions = 3, "regions: the source's device has 3, this host's 2");
	EXPECT(d.regions[0].size = 2 << 20, "BAR0 size: 2097152 bytes on the source, 1048576 here");
	EXPECT(d.regions[1].flags = 1, "BAR1 flags: 0x1 on the source, 0x3 here");
	EXPECT(d.regions[0].attrs = 0, "BAR0 is not prefetchable on the source, prefetchable here");
	EXPECT(d.regions[1].attrs = VFIO_REGION_WC,
	       "BAR1 is mapped write-combining on the source, not here");
	EXPECT(memset(d.mdev_type, 'x', sizeof(d.mdev_type)), "its mdev type is not a string");
#undef EXPECT
	mig_error_clear(&err);
	cr_assert_lt(ops->check(&s.dev.dev, &want, sizeof(want) - 1, &err), 0, "a short one");
	mig_buf_free(&b);
	sim_down(&s);
}

/* ---- the v1 protocol flavour ---- */

#define V1_STATE 0
#define V1_PENDING 8
#define V1_OFFSET 16
#define V1_SIZE 24

Test(vfio_v1, the_regions_answers)
{
	struct vfio_sim_opts o = { .flags = SC | PC, .table_bytes = 65536 };
	struct mig_error err = { 0 };
	struct vfio_sim_v1 s;
	uint32_t st;
	uint64_t v;

	cr_assert_eq(vfio_sim_v1_init(&s, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(vfio_sim_v1_region_read(&s, V1_STATE, &st, 4), 0);
	cr_assert_eq(st & 7, 1, "running");
	cr_assert_eq(st & ~7U, 0xf0000000U, "reserved bits, kept by read-modify-write");
	cr_assert_eq(vfio_sim_v1_region_read(&s, V1_PENDING, &v, 8), -EINVAL, "not saving");
	cr_assert_eq(vfio_sim_v1_region_read(&s, V1_SIZE, &v, 8), -EINVAL, "not saving");
	for (uint32_t bad = 5; bad <= 7; bad++) {
		uint32_t w = (st & ~7U) | bad;

		if (bad == 5 || bad == 7)
			cr_assert_eq(vfio_sim_v1_region_write(&s, V1_STATE, &w, 4), -EINVAL,
				     "state %u", bad);
	}
	st = (st & ~7U) | 6;
	cr_assert_eq(vfio_sim_v1_region_write(&s, V1_STATE, &st, 4), -EINVAL, "error is not asked for");
	/* pre-copy: pending_bytes starts an iteration */
	st = (st & ~7U) | 3;
	cr_assert_eq(vfio_sim_v1_region_write(&s, V1_STATE, &st, 4), 0);
	cr_assert_eq(s.sim.state, VFIO_ST_PRE_COPY, "the device behind it");
	cr_assert_eq(vfio_sim_v1_region_read(&s, V1_PENDING, &v, 8), 0);
	cr_assert_gt(v, 0);
	cr_assert_eq(vfio_sim_v1_region_read(&s, V1_OFFSET, &v, 8), 0);
	cr_assert_eq(v, 4096);
	/* resuming data only in RESUMING */
	v = 16;
	cr_assert_eq(vfio_sim_v1_region_write(&s, V1_SIZE, &v, 8), -EINVAL);
	vfio_sim_v1_fini(&s);
}

/* A v1 device through the class, for the feature set v1 has: its pre-copy
 * and final data, its DMA sent again at the end (it has no log), its
 * self-check on the destination. */
Test(vfio_v1, migrates_through_the_class)
{
	uint64_t errors;

	use_v1 = true;
	migrate_sim(SC | PC, NULL, true, &errors);
	cr_assert_eq(errors, 0);
	use_v1 = false;
}
