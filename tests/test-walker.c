// SPDX-License-Identifier: MIT
/*
 * The walker that takes a VM's devices through a stage, with recording fake
 * classes: the order across classes and devices, classes with several steps
 * in one stage (a VFIO device's RUNNING_P2P, then STOP, with the vCPUs'
 * stop between), saves that write guest RAM, the next-step paths, a
 * rollback from a half-done pause, the deadline, cancel and the fault hook,
 * loads at the load state, the class registry and the device-state
 * container.  Then the real classes' steps, walked as the engines walk
 * them, must keep the orders of KERNEL-UAPI §3 and §4.  No KVM needed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/device.h>
#include <migrate/vm.h>

/* ---- a log of every arc taken, across devices ---- */

struct arc {
	const struct mig_device *d;
	int from, to;
};
static struct arc log_[512];
static unsigned nlog;

static int log_step(struct mig_device *d, int to, struct mig_error *err)
{
	(void)err;
	cr_assert_lt(nlog, 512);
	log_[nlog++] = (struct arc){ d, d->state, to };
	return 0;
}

/* Where in the log device d first reached state `to`; -1 if it never did. */
static int when(const struct mig_device *d, int to)
{
	for (unsigned i = 0; i < nlog; i++)
		if (log_[i].d == d && log_[i].to == to)
			return (int)i;
	return -1;
}

/* ---- a VFIO-like device: two steps in one stage ---- */

enum { V_RUNNING, V_P2P, V_STOP, V_STOP_COPY, V_RESUMING, V_ERROR, V_N };
static const char *const v_names[V_N] = { "running", "running_p2p", "stop", "stop_copy",
					  "resuming", "error" };
#define A(a, b) [(a) * V_N + (b)] = true
static const bool v_arcs[V_N * V_N] = {
	A(V_RUNNING, V_P2P), A(V_P2P, V_RUNNING), A(V_P2P, V_STOP), A(V_STOP, V_P2P),
	A(V_STOP, V_STOP_COPY), A(V_STOP_COPY, V_STOP), A(V_STOP, V_RESUMING),
	A(V_RESUMING, V_STOP),
};
#undef A
static const struct mig_stage_step v_steps[] = {
	{ MIG_STAGE_QUIESCE, 0, V_P2P },
	{ MIG_STAGE_QUIESCE, 20, V_STOP },
	{ MIG_STAGE_SAVE, 10, V_STOP_COPY },
	{ MIG_STAGE_ROLLBACK, 20, V_RUNNING },
	{ MIG_STAGE_START, 0, V_P2P },
	{ MIG_STAGE_START, 20, V_RUNNING },
};
static const struct mig_device_ops log_ops = { .step = log_step };
static const struct mig_device_class vfio_like = {
	.id = MIG_DEV_CLASS_PRIVATE + 1, .name = "vfio-like", .version = 1,
	.nr_states = V_N, .state_names = v_names, .arcs = v_arcs,
	.steps = v_steps, .nr_steps = 3 + 1 + 2, .load_state = -1, .fail_state = -1,
	.ops = &log_ops,
};

/* ---- a vCPU-like device ---- */

enum { C_RUNNING, C_PAUSING, C_QUIESCED, C_SAVED, C_N };
static const char *const c_names[C_N] = { "running", "pausing", "quiesced", "saved" };
#define A(a, b) [(a) * C_N + (b)] = true
static const bool c_arcs[C_N * C_N] = {
	A(C_RUNNING, C_PAUSING), A(C_PAUSING, C_QUIESCED), A(C_QUIESCED, C_RUNNING),
	A(C_QUIESCED, C_SAVED), A(C_SAVED, C_RUNNING),
};
#undef A
static const struct mig_stage_step c_steps[] = {
	{ MIG_STAGE_QUIESCE, 10, C_PAUSING },
	{ MIG_STAGE_QUIESCE, 11, C_QUIESCED },
	{ MIG_STAGE_SAVE, 20, C_SAVED },
	{ MIG_STAGE_ROLLBACK, 30, C_RUNNING },
	{ MIG_STAGE_START, 30, C_RUNNING },
};
static const struct mig_device_class cpu_like = {
	.id = MIG_DEV_CLASS_PRIVATE + 2, .name = "cpu-like", .version = 1,
	.nr_states = C_N, .state_names = c_names, .arcs = c_arcs,
	.steps = c_steps, .nr_steps = 5, .load_state = -1, .fail_state = -1,
	.ops = &log_ops,
};

/* ---- an ITS-like device: its save writes guest RAM ---- */

enum { I_RUNNING, I_FLUSHED, I_SAVED, I_N };
static const char *const i_names[I_N] = { "running", "flushed", "saved" };
#define A(a, b) [(a) * I_N + (b)] = true
static const bool i_arcs[I_N * I_N] = {
	A(I_RUNNING, I_FLUSHED), A(I_FLUSHED, I_SAVED), A(I_FLUSHED, I_RUNNING),
	A(I_SAVED, I_RUNNING),
};
#undef A
static const struct mig_stage_step i_steps[] = {
	{ MIG_STAGE_SAVE, 5, I_SAVED },
	{ MIG_STAGE_ROLLBACK, 25, I_RUNNING },
};
static const struct mig_device_class its_like = {
	.id = MIG_DEV_CLASS_PRIVATE + 3, .name = "its-like", .version = 1,
	.nr_states = I_N, .state_names = i_names, .arcs = i_arcs,
	.steps = i_steps, .nr_steps = 2, .load_state = -1, .fail_state = -1,
	.save_writes_ram = true, .ops = &log_ops,
};

/* Two VFIO-like devices, two vCPU-like, one ITS-like, in this list order. */
struct rig {
	struct mig_device v[2], c[2], its;
	struct mig_device *all[5];
};

static void rig_init(struct rig *g)
{
	nlog = 0;
	for (unsigned i = 0; i < 2; i++) {
		mig_device_init(&g->v[i], &vfio_like, i, V_RUNNING);
		mig_device_init(&g->c[i], &cpu_like, i, C_RUNNING);
	}
	mig_device_init(&g->its, &its_like, 0, I_RUNNING);
	g->all[0] = &g->v[0];
	g->all[1] = &g->c[0];
	g->all[2] = &g->its;
	g->all[3] = &g->v[1];
	g->all[4] = &g->c[1];
}

static void walk_ok(struct rig *g, enum mig_stage st, unsigned filter)
{
	struct mig_walk w = { .filter = filter };
	struct mig_error err = { 0 };

	cr_assert_eq(mig_devices_walk(g->all, 5, st, &w, &err), 0, "%s: %s",
		     mig_stage_to_string(st), err.msg);
	cr_assert_null(w.failed);
}

/* KERNEL-UAPI §1.6: every device reaches RUNNING_P2P before any reaches
 * STOP, and the vCPUs stop between; every vCPU is kicked before any is
 * waited for.  Equal orders go by the VM's list order. */
Test(walker, quiesce_orders_across_classes_and_devices)
{
	struct rig g;

	rig_init(&g);
	walk_ok(&g, MIG_STAGE_QUIESCE, 0);
	cr_assert_eq(nlog, 2 * 2 + 2 * 2);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned j = 0; j < 2; j++) {
			cr_assert_lt(when(&g.v[i], V_P2P), when(&g.c[j], C_PAUSING));
			cr_assert_lt(when(&g.c[i], C_PAUSING), when(&g.c[j], C_QUIESCED));
			cr_assert_lt(when(&g.c[i], C_QUIESCED), when(&g.v[j], V_STOP));
		}
	cr_assert_lt(when(&g.v[0], V_P2P), when(&g.v[1], V_P2P));
	cr_assert_lt(when(&g.c[0], C_PAUSING), when(&g.c[1], C_PAUSING));
	cr_assert_eq(g.its.state, I_RUNNING, "a class without a QUIESCE step is left alone");
}

/* A save that writes guest RAM runs before the final dirty sync: the
 * engine walks SAVE twice, the RAM writers first, then the others. */
Test(walker, ram_writers_are_walked_apart)
{
	struct rig g;

	rig_init(&g);
	walk_ok(&g, MIG_STAGE_QUIESCE, 0);
	nlog = 0;
	walk_ok(&g, MIG_STAGE_SAVE, MIG_WALK_RAM_WRITERS);
	cr_assert_eq(nlog, 2, "only the ITS-like class: running => flushed => saved");
	cr_assert_eq(g.its.state, I_SAVED);
	cr_assert_eq(g.c[0].state, C_QUIESCED);
	walk_ok(&g, MIG_STAGE_SAVE, MIG_WALK_OTHERS);
	cr_assert_eq(g.c[1].state, C_SAVED);
	cr_assert_eq(g.v[1].state, V_STOP_COPY);
	cr_assert_lt(when(&g.v[0], V_STOP_COPY), when(&g.c[0], C_SAVED));
}

/* The walk stops at a failure, naming the device; the rollback walk takes
 * every device back to running from wherever it stopped, along its paths
 * (a vCPU kicked but not yet parked goes through QUIESCED). */
static int fail_at_second_park(void *arg, const struct mig_fault_point *p, struct mig_error *err)
{
	struct rig *g = arg;

	cr_assert_eq(p->kind, MIG_FAULT_DEVICE_STEP);
	cr_assert_eq(p->stage, MIG_STAGE_QUIESCE);
	if (p->dev == &g->c[1] && p->to == C_QUIESCED)
		return mig_error_set(err, -EIO, "injected at %s %u", p->dev->cls->name, p->dev->id);
	return 0;
}

Test(walker, rollback_from_a_half_done_pause)
{
	struct mig_walk w = { 0 };
	struct mig_error err = { 0 };
	struct rig g;

	rig_init(&g);
	w.fault = fail_at_second_park;
	w.fault_arg = &g;
	cr_assert_eq(mig_devices_walk(g.all, 5, MIG_STAGE_QUIESCE, &w, &err), -EIO);
	cr_assert_eq(w.failed, &g.c[1]);
	cr_assert_str_eq(err.msg, "injected at cpu-like 1");
	cr_assert_eq(g.c[0].state, C_QUIESCED);
	cr_assert_eq(g.c[1].state, C_PAUSING, "the failed arc is not taken");
	cr_assert_eq(g.v[0].state, V_P2P);
	cr_assert_eq(when(&g.v[0], V_STOP), -1, "no device stopped after the failure");
	nlog = 0;
	walk_ok(&g, MIG_STAGE_ROLLBACK, 0);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_eq(g.v[i].state, V_RUNNING);
		cr_assert_eq(g.c[i].state, C_RUNNING);
	}
	cr_assert_eq(g.its.state, I_RUNNING);
	cr_assert_lt(when(&g.c[1], C_QUIESCED), when(&g.c[1], C_RUNNING));
	/* ROLLBACK orders: the VFIO-like devices (20) run before the vCPUs (30) */
	cr_assert_lt(when(&g.v[1], V_RUNNING), when(&g.c[0], C_RUNNING));
}

/* The destination's start: every device to RUNNING_P2P, then every one
 * to RUNNING, then the vCPUs (KERNEL-UAPI §1.7). */
Test(walker, start_goes_through_p2p)
{
	struct rig g;

	rig_init(&g);
	g.v[0].state = g.v[1].state = V_RESUMING;
	g.c[0].state = g.c[1].state = C_SAVED;
	walk_ok(&g, MIG_STAGE_START, 0);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned j = 0; j < 2; j++) {
			cr_assert_lt(when(&g.v[i], V_P2P), when(&g.v[j], V_RUNNING));
			cr_assert_lt(when(&g.v[i], V_RUNNING), when(&g.c[j], C_RUNNING));
		}
	/* RESUMING → STOP → RUNNING_P2P: the shortest path through the arcs */
	cr_assert_lt(when(&g.v[0], V_STOP), when(&g.v[0], V_P2P));
}

/* A class's own next-step function is used in place of the arc table's
 * shortest path; one that finds no way makes the walk fail, device as it was. */
static int never(const struct mig_device *d, int target)
{
	(void)d; (void)target;
	return -1;
}

Test(walker, next_steps)
{
	struct mig_device_class c = vfio_like;
	struct mig_device d, *dp = &d;
	struct mig_walk w = { 0 };
	struct mig_error err = { 0 };

	mig_device_init(&d, &vfio_like, 0, V_RUNNING);
	cr_assert_eq(mig_device_next_state(&d, V_STOP_COPY), V_P2P);
	d.state = V_RESUMING;
	cr_assert_eq(mig_device_next_state(&d, V_RUNNING), V_STOP);
	d.state = V_ERROR;
	cr_assert_eq(mig_device_next_state(&d, V_RUNNING), -1, "no arc leaves ERROR");
	c.next_state = never;
	mig_device_init(&d, &c, 0, V_RUNNING);
	nlog = 0;
	cr_assert_eq(mig_devices_walk(&dp, 1, MIG_STAGE_QUIESCE, &w, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "no way from running to running_p2p"), "%s", err.msg);
	cr_assert_eq(d.state, V_RUNNING);
	cr_assert_eq(nlog, 0);
}

Test(walker, deadline_and_cancel_come_before_an_arc)
{
	struct rig g;
	struct mig_walk w = { .deadline_ms = 1 };
	struct mig_error err = { 0 };
	atomic_bool cancel = true;

	rig_init(&g);
	cr_assert_eq(mig_devices_walk(g.all, 5, MIG_STAGE_QUIESCE, &w, &err), -ETIMEDOUT);
	cr_assert_not_null(strstr(err.msg, "past the deadline"), "%s", err.msg);
	cr_assert_eq(nlog, 0);
	mig_error_clear(&err);
	w = (struct mig_walk){ .cancel = &cancel };
	cr_assert_eq(mig_devices_walk(g.all, 5, MIG_STAGE_QUIESCE, &w, &err), -ECANCELED);
	cr_assert_eq(nlog, 0);
	cr_assert_eq(g.v[0].state, V_RUNNING);
}

/* ---- loads ---- */

enum { L_NEW, L_LOADING, L_LOADED, L_BAD, L_N };
static const char *const l_names[L_N] = { "new", "loading", "loaded", "bad" };
#define A(a, b) [(a) * L_N + (b)] = true
static const bool l_arcs[L_N * L_N] = {
	A(L_NEW, L_LOADING), A(L_LOADING, L_LOADED), A(L_LOADING, L_BAD),
};
#undef A
static const struct mig_stage_step l_steps[] = {
	{ MIG_STAGE_SAVE, 0, L_LOADED },   /* (a source's walk, for the container) */
	{ MIG_STAGE_LOAD, 0, L_LOADED },
};
static char loaded_text[64];
static int loads;

static int l_save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	char text[32];

	snprintf(text, sizeof(text), "state of %u", d->id);
	return w->write(w, text, strlen(text), err);
}

static int l_load(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	uint64_t n = r->remaining(r);

	loads++;
	cr_assert_eq(d->state, L_LOADING, "load() runs in the class's load_state");
	if (n >= sizeof(loaded_text))
		return mig_error_set(err, -EINVAL, "too long");
	memset(loaded_text, 0, sizeof(loaded_text));
	if (r->read(r, loaded_text, n, err) < 0)
		return -EBADMSG;
	if (strncmp(loaded_text, "state", 5))
		return mig_error_set(err, -EINVAL, "bad state '%s'", loaded_text);
	return 0;
}

static const struct mig_device_ops l_ops = { .step = log_step, .save = l_save, .load = l_load };
static const struct mig_device_class loadable = {
	.id = MIG_DEV_CLASS_PRIVATE + 4, .name = "loadable", .version = 3,
	.nr_states = L_N, .state_names = l_names, .arcs = l_arcs,
	.steps = l_steps, .nr_steps = 2, .load_state = L_LOADING, .fail_state = L_BAD,
	.ops = &l_ops,
};

static struct mig_mem_reader the_reader;
static const char *the_state;

static struct mig_reader *state_for(void *arg, struct mig_device *d)
{
	(void)arg; (void)d;
	if (!the_state)
		return NULL;
	mig_mem_reader_init(&the_reader, the_state, strlen(the_state));
	return &the_reader.r;
}

Test(walker, load_runs_at_the_load_state)
{
	struct mig_device d, *dp = &d;
	struct mig_walk w = { .state_of = state_for };
	struct mig_error err = { 0 };

	mig_device_init(&d, &loadable, 0, L_NEW);
	the_state = "state of 0";
	loads = 0;
	cr_assert_eq(mig_devices_walk(&dp, 1, MIG_STAGE_LOAD, &w, &err), 0, "%s", err.msg);
	cr_assert_eq(loads, 1);
	cr_assert_eq(d.state, L_LOADED);
	cr_assert_str_eq(loaded_text, "state of 0");

	/* a bad state leaves the device in its fail state, and says why */
	mig_device_init(&d, &loadable, 0, L_NEW);
	the_state = "garbage";
	cr_assert_eq(mig_devices_walk(&dp, 1, MIG_STAGE_LOAD, &w, &err), -EINVAL);
	cr_assert_eq(d.state, L_BAD);
	cr_assert_eq(w.failed, &d);

	/* none at all: an error, not a device that runs on nothing */
	mig_error_clear(&err);
	mig_device_init(&d, &loadable, 0, L_NEW);
	the_state = NULL;
	cr_assert_eq(mig_devices_walk(&dp, 1, MIG_STAGE_LOAD, &w, &err), -ENODATA);
	cr_assert_not_null(strstr(err.msg, "loadable 0: no state arrived"), "%s", err.msg);
	cr_assert_eq(d.state, L_BAD);
}

/* ---- the registry ---- */

Test(walker, private_classes_register_explicitly)
{
	struct mig_device_class low = loadable;

	cr_assert_null(mig_device_class_get(loadable.id));
	cr_assert_eq(mig_device_class_add(&loadable), 0);
	cr_assert_eq(mig_device_class_get(loadable.id), &loadable);
	cr_assert_str_eq(mig_dev_class_to_string(loadable.id), "loadable");
	cr_assert_eq(mig_device_class_add(&loadable), 0, "the same class again is no error");
	{
		struct mig_device_class twin = loadable;

		cr_assert_eq(mig_device_class_add(&twin), -EEXIST);
	}
	low.id = MIG_DEV_VCPU;
	cr_assert_eq(mig_device_class_add(&low), -EINVAL, "the build's ids are not for taking");
}

/* ---- the device-state container ---- */

static const struct mig_vm_ops no_ops;

struct cvm {
	struct mig_vm vm;
	struct mig_device d[3], c;
	struct mig_device *all[4];
};

/* Three loadable devices and one without state. */
static void cvm_init(struct cvm *v, int state)
{
	for (unsigned i = 0; i < 3; i++) {
		mig_device_init(&v->d[i], &loadable, i, state);
		v->all[i] = &v->d[i];
	}
	mig_device_init(&v->c, &cpu_like, 0, C_RUNNING);
	v->all[3] = &v->c;
	v->vm = (struct mig_vm){ .ops = &no_ops, .devices = v->all, .nr_devices = 4 };
}

static int load_container(const struct mig_buf *b, struct mig_error *err)
{
	struct cvm dst;
	struct mig_walk w = { 0 };

	cvm_init(&dst, L_NEW);
	return mig_vm_state_load(&dst.vm, b->data, b->len, &w, err);
}

Test(walker, state_container_round_trip_and_checks)
{
	struct cvm src, dst;
	struct mig_buf b = { 0 };
	struct mig_walk w = { 0 };
	struct mig_error err = { 0 };
	size_t len;

	cvm_init(&src, L_LOADED);
	cr_assert_eq(mig_vm_state_save(&src.vm, &b, &err), 0, "%s", err.msg);
	cr_assert_eq(src.d[2].bytes, strlen("state of 2"));
	cvm_init(&dst, L_NEW);
	loads = 0;
	cr_assert_eq(mig_vm_state_load(&dst.vm, b.data, b.len, &w, &err), 0, "%s", err.msg);
	cr_assert_eq(loads, 3);
	cr_assert_str_eq(loaded_text, "state of 2");
	cr_assert_eq(dst.d[1].state, L_LOADED);
	cr_assert_eq(dst.d[1].bytes, strlen("state of 1"));
	len = b.len;

	/* each damage refused before any device loads */
	loads = 0;
	b.len = len - 1;
	cr_assert_lt(load_container(&b, &err), 0);
	cr_assert_not_null(strstr(err.msg, "claims"), "%s", err.msg);
	mig_error_clear(&err);
	b.len = len;
	cr_assert_eq(mig_buf_append(&b, "x", 1), 0);
	cr_assert_lt(load_container(&b, &err), 0);
	cr_assert_not_null(strstr(err.msg, "1 trailing bytes"), "%s", err.msg);
	mig_error_clear(&err);
	b.len = len;
	b.data[16 + 8] = 9;     /* the first record's class version */
	cr_assert_lt(load_container(&b, &err), 0);
	cr_assert_not_null(strstr(err.msg, "version 9 of its class, this build reads version 3"),
			   "%s", err.msg);
	mig_error_clear(&err);
	b.data[16 + 8] = 3;
	b.data[16 + 4] = 7;     /* the first record's instance */
	cr_assert_lt(load_container(&b, &err), 0);
	cr_assert_not_null(strstr(err.msg, "loadable 7, which this VM does not have"), "%s",
			   err.msg);
	mig_error_clear(&err);
	b.data[16 + 4] = 1;     /* now two records for instance 1, none for 0 */
	cr_assert_lt(load_container(&b, &err), 0);
	cr_assert_not_null(strstr(err.msg, "two records for loadable 1"), "%s", err.msg);
	mig_error_clear(&err);
	b.data[0] ^= 1;
	cr_assert_lt(load_container(&b, &err), 0);
	cr_assert_not_null(strstr(err.msg, "bad magic"), "%s", err.msg);
	cr_assert_eq(loads, 0, "a device loaded from a container that was not whole");
	mig_buf_free(&b);
}

/* ---- the real classes, walked as the engines walk them ---- */

static int real_load(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	(void)d; (void)r; (void)err;
	return 0;
}

static const struct mig_device_ops real_logged = { .step = log_step, .load = real_load };

static struct mig_reader *empty_state(void *arg, struct mig_device *d)
{
	static struct mig_mem_reader rd;

	(void)arg; (void)d;
	mig_mem_reader_init(&rd, "", 0);
	return &rd.r;
}

struct real_vm {
	struct mig_device_class cls[_MIG_DEV_CLASS_MAX];
	struct mig_device mem, plat, cpu[2];
	struct mig_device *all[4];
};

/* memory, the platform and two vCPUs, as the lab builds them, with the
 * classes' arcs logged instead of carried out */
static void real_init(struct real_vm *v, bool source)
{
	static const enum mig_dev_class used[] = { MIG_DEV_MEMORY, MIG_DEV_VCPU, MIG_DEV_PLATFORM };

	/* the order asserted here is the x86 classes' (the platform is x86's) */
	for (unsigned k = 0; k < sizeof(used) / sizeof(used[0]); k++)
		if (!mig_device_class_get(used[k]))
			cr_skip_test("this build has no %s class (the x86 vCPU and platform "
				     "classes are built on x86_64 only)",
				     used[k] == MIG_DEV_VCPU ? "vCPU" : "platform");
	for (unsigned k = 0; k < sizeof(used) / sizeof(used[0]); k++) {
		v->cls[used[k]] = *mig_device_class_get(used[k]);
		v->cls[used[k]].ops = &real_logged;
	}
	mig_device_init(&v->mem, &v->cls[MIG_DEV_MEMORY], 0, MEM_LOGGING);
	mig_device_init(&v->plat, &v->cls[MIG_DEV_PLATFORM], 0,
			source ? PLATFORM_RUNNING : PLATFORM_CREATED);
	for (unsigned i = 0; i < 2; i++)
		mig_device_init(&v->cpu[i], &v->cls[MIG_DEV_VCPU], i,
				source ? VCPU_RUNNING : VCPU_CREATED);
	v->all[0] = &v->mem;
	v->all[1] = &v->plat;
	v->all[2] = &v->cpu[0];
	v->all[3] = &v->cpu[1];
	nlog = 0;
}

static void real_walk(struct real_vm *v, enum mig_stage st, unsigned filter)
{
	struct mig_walk w = { .filter = filter, .state_of = empty_state };
	struct mig_error err = { 0 };

	cr_assert_eq(mig_devices_walk(v->all, 4, st, &w, &err), 0, "%s: %s",
		     mig_stage_to_string(st), err.msg);
}

/* KERNEL-UAPI §3.2, §2.4: every vCPU out of KVM_RUN (kicked all, then
 * waited for all) before the final sync, after which memory is final and
 * only then state is read; the platform after the vCPUs. */
Test(walker, real_classes_on_the_source)
{
	struct real_vm v;
	int final;

	real_init(&v, true);
	real_walk(&v, MIG_STAGE_TRACK, 0);
	real_walk(&v, MIG_STAGE_QUIESCE, 0);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned j = 0; j < 2; j++)
			cr_assert_lt(when(&v.cpu[i], VCPU_PAUSING), when(&v.cpu[j], VCPU_QUIESCED));
	cr_assert_eq(when(&v.mem, MEM_FINAL), -1, "memory final before the vCPUs stopped");
	real_walk(&v, MIG_STAGE_SAVE, MIG_WALK_RAM_WRITERS);
	cr_assert_eq(when(&v.mem, MEM_FINAL), -1, "no real class writes RAM in its save");
	real_walk(&v, MIG_STAGE_SAVE, MIG_WALK_OTHERS);
	final = when(&v.mem, MEM_FINAL);
	cr_assert_geq(final, 0);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_lt(when(&v.cpu[i], VCPU_QUIESCED), final);
		cr_assert_lt(final, when(&v.cpu[i], VCPU_SAVED));
		cr_assert_lt(when(&v.cpu[i], VCPU_SAVED), when(&v.plat, PLATFORM_SAVED));
	}
	/* a rollback: memory tracked and the platform back before any vCPU runs */
	nlog = 0;
	real_walk(&v, MIG_STAGE_ROLLBACK, 0);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_lt(when(&v.mem, MEM_LOGGING), when(&v.cpu[i], VCPU_RUNNING));
		cr_assert_lt(when(&v.plat, PLATFORM_RUNNING), when(&v.cpu[i], VCPU_RUNNING));
	}
}

/* KERNEL-UAPI §3.3, §4, §9: all RAM in place before any state loads; the
 * irqchip before the vCPUs; the clock after every load and before the
 * vCPUs run; memory tracked again before anything runs. */
Test(walker, real_classes_on_the_destination)
{
	struct real_vm v;

	real_init(&v, false);
	real_walk(&v, MIG_STAGE_RECEIVE, 0);
	cr_assert_eq(v.mem.state, MEM_RECEIVING);
	nlog = 0;
	real_walk(&v, MIG_STAGE_LOAD, 0);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_lt(when(&v.mem, MEM_LOADED), when(&v.plat, PLATFORM_RESTORING));
		cr_assert_lt(when(&v.plat, PLATFORM_RESTORED), when(&v.cpu[i], VCPU_RESTORING));
	}
	nlog = 0;
	real_walk(&v, MIG_STAGE_START, 0);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_lt(when(&v.mem, MEM_LOGGING), when(&v.cpu[i], VCPU_RUNNING));
		cr_assert_lt(when(&v.plat, PLATFORM_RUNNING), when(&v.cpu[i], VCPU_RUNNING));
	}
	/* and a discarded copy: every device to its end */
	real_init(&v, false);
	real_walk(&v, MIG_STAGE_RECEIVE, 0);
	real_walk(&v, MIG_STAGE_DISCARD, 0);
	cr_assert_eq(v.mem.state, MEM_RELEASED);
	cr_assert_eq(v.plat.state, PLATFORM_DEAD);
	cr_assert_eq(v.cpu[1].state, VCPU_DEAD);
}
