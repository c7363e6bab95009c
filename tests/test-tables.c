// SPDX-License-Identifier: MIT
/*
 * Table tests: every enum value has a name, every (from, to) pair of every
 * device-class state machine is walked through mig_device_step(), and the
 * save/load ordering between classes holds.  No KVM needed: the class's arc
 * handler is swapped for one that records the call.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <migrate/device.h>

#include "migrate/migrate-internal.h"

static unsigned step_calls;
static int step_to;

static int record_step(struct mig_device *d, int to, struct mig_error *err)
{
	(void)d; (void)err;
	step_calls++;
	step_to = to;
	return 0;
}

static int failing_step(struct mig_device *d, int to, struct mig_error *err)
{
	(void)d; (void)to;
	return mig_error_set(err, -EIO, "injected");
}

static const struct mig_device_ops record_ops = { .step = record_step };
static const struct mig_device_ops failing_ops = { .step = failing_step };

static struct mig_device_class with_ops(const struct mig_device_class *cls,
					const struct mig_device_ops *ops)
{
	struct mig_device_class c = *cls;

	c.ops = ops;
	return c;
}

Test(tables, class_names_round_trip)
{
	for (int i = 0; i < _MIG_DEV_CLASS_MAX; i++) {
		const struct mig_device_class *cls = mig_device_class_get(i);
		const char *name = mig_dev_class_to_string(i);

		cr_assert_not_null(cls, "class %d not registered", i);
		cr_assert_eq(cls->id, (enum mig_dev_class)i, "registry slot %d holds class %d", i, cls->id);
		cr_assert_not_null(name);
		cr_assert_str_eq(cls->name, name);
		cr_assert_eq(mig_dev_class_from_string(name), i);
		cr_assert_not_null(cls->ops);
		cr_assert_not_null(cls->ops->step);
	}
	cr_assert_null(mig_dev_class_to_string(_MIG_DEV_CLASS_MAX));
	cr_assert_null(mig_device_class_get(_MIG_DEV_CLASS_MAX));
	cr_assert_eq(mig_dev_class_from_string("gpu"), -EINVAL);
	cr_assert_eq(mig_dev_class_from_string(NULL), -EINVAL);
}

Test(tables, state_names_unique_and_present)
{
	for (int i = 0; i < _MIG_DEV_CLASS_MAX; i++) {
		const struct mig_device_class *cls = mig_device_class_get(i);

		cr_assert_gt(cls->nr_states, 1);
		for (unsigned a = 0; a < cls->nr_states; a++) {
			cr_assert_not_null(cls->state_names[a], "%s state %u has no name", cls->name, a);
			cr_assert_gt(strlen(cls->state_names[a]), 0);
			for (unsigned b = 0; b < a; b++)
				cr_assert_str_neq(cls->state_names[a], cls->state_names[b]);
		}
	}
}

/* Every pair: allowed arcs call the class exactly once and move the state;
 * others fail with -EINVAL, leave the state alone and name both states. */
Test(tables, every_pair_of_every_class)
{
	for (int i = 0; i < _MIG_DEV_CLASS_MAX; i++) {
		const struct mig_device_class *real = mig_device_class_get(i);
		struct mig_device_class cls = with_ops(real, &record_ops);
		unsigned allowed = 0;

		for (unsigned from = 0; from < cls.nr_states; from++) {
			for (unsigned to = 0; to < cls.nr_states; to++) {
				struct mig_device d;
				struct mig_error err = { 0 };
				bool ok = mig_device_arc_allowed(&cls, (int)from, (int)to);
				int r;

				mig_device_init(&d, &cls, 0, (int)from);
				step_calls = 0;
				r = mig_device_step(&d, (int)to, &err);
				if (ok) {
					allowed++;
					cr_assert_eq(r, 0);
					cr_assert_eq(step_calls, 1);
					cr_assert_eq(step_to, (int)to);
					cr_assert_eq(d.state, (int)to);
				} else {
					cr_assert_eq(r, -EINVAL, "%s %s => %s", cls.name,
						     cls.state_names[from], cls.state_names[to]);
					cr_assert_eq(step_calls, 0);
					cr_assert_eq(d.state, (int)from);
					cr_assert_not_null(strstr(err.msg, cls.state_names[from]), "%s", err.msg);
					cr_assert_not_null(strstr(err.msg, cls.state_names[to]), "%s", err.msg);
				}
			}
			/* self-loops are never arcs: a step must change something */
			cr_assert_not(mig_device_arc_allowed(&cls, (int)from, (int)from));
		}
		cr_assert_gt(allowed, 0);
		/* out of range is refused, not read past the table */
		cr_assert_not(mig_device_arc_allowed(&cls, -1, 0));
		cr_assert_not(mig_device_arc_allowed(&cls, 0, (int)cls.nr_states));
	}
}

Test(tables, failed_arc_keeps_state)
{
	struct mig_device_class cls = with_ops(mig_device_class_get(MIG_DEV_VCPU), &failing_ops);
	struct mig_device d;
	struct mig_error err = { 0 };

	mig_device_init(&d, &cls, 3, VCPU_RUNNING);
	cr_assert_eq(mig_device_step(&d, VCPU_PAUSING, &err), -EIO);
	cr_assert_eq(d.state, VCPU_RUNNING);
	cr_assert_str_eq(err.msg, "injected");
}

static void reach(const struct mig_device_class *cls, unsigned from, bool *seen)
{
	if (seen[from])
		return;
	seen[from] = true;
	for (unsigned to = 0; to < cls->nr_states; to++)
		if (mig_device_arc_allowed(cls, (int)from, (int)to))
			reach(cls, to, seen);
}

/* Every state is reachable from the initial ones, and from every state a
 * terminal one (no outgoing arcs) is reachable: no machine can trap a device. */
static void check_shape(enum mig_dev_class id, const int *initial, unsigned n_initial,
			int terminal)
{
	const struct mig_device_class *cls = mig_device_class_get(id);
	bool seen[32] = { false };

	for (unsigned i = 0; i < n_initial; i++)
		reach(cls, (unsigned)initial[i], seen);
	for (unsigned s = 0; s < cls->nr_states; s++)
		cr_assert(seen[s], "%s: state %s unreachable", cls->name, cls->state_names[s]);
	for (unsigned s = 0; s < cls->nr_states; s++) {
		bool from_s[32] = { false };

		reach(cls, s, from_s);
		cr_assert(from_s[terminal], "%s: %s cannot reach %s", cls->name,
			  cls->state_names[s], cls->state_names[terminal]);
	}
	for (unsigned to = 0; to < cls->nr_states; to++)
		cr_assert_not(mig_device_arc_allowed(cls, terminal, (int)to),
			      "%s: terminal state has an arc", cls->name);
}

Test(tables, vcpu_machine_shape)
{
	const struct mig_device_class *cls = mig_device_class_get(MIG_DEV_VCPU);
	int initial[] = { VCPU_CREATED };

	check_shape(MIG_DEV_VCPU, initial, 1, VCPU_DEAD);
	/* KERNEL-UAPI §3.2/§3.7: state is read only from a quiesced vCPU. */
	cr_assert_not(mig_device_arc_allowed(cls, VCPU_RUNNING, VCPU_SAVED));
	cr_assert_not(mig_device_arc_allowed(cls, VCPU_PAUSING, VCPU_SAVED));
	cr_assert(mig_device_arc_allowed(cls, VCPU_QUIESCED, VCPU_SAVED));
	/* A vCPU that ran cannot be restored into (CPUID is frozen after KVM_RUN). */
	for (int s = 0; s < _VCPU_STATE_MAX; s++)
		if (s != VCPU_CREATED)
			cr_assert_not(mig_device_arc_allowed(cls, s, VCPU_RESTORING));
	/* A failed restore is never run. */
	cr_assert_not(mig_device_arc_allowed(cls, VCPU_FAILED, VCPU_RUNNING));
	/* Source rollback: a saved vCPU can run again. */
	cr_assert(mig_device_arc_allowed(cls, VCPU_SAVED, VCPU_RUNNING));
}

Test(tables, memory_machine_shape)
{
	const struct mig_device_class *cls = mig_device_class_get(MIG_DEV_MEMORY);
	int initial[] = { MEM_MAPPED, MEM_LOGGING };

	check_shape(MIG_DEV_MEMORY, initial, 2, MEM_RELEASED);
	/* FINAL only comes from LOGGING: a final sync needs a log. */
	for (int s = 0; s < _MEM_STATE_MAX; s++)
		if (s != MEM_LOGGING)
			cr_assert_not(mig_device_arc_allowed(cls, s, MEM_FINAL));
	/* Source rollback keeps the RAM. */
	cr_assert(mig_device_arc_allowed(cls, MEM_FINAL, MEM_LOGGING));
	cr_assert_not_null(cls->dirty_ops);
}

Test(tables, save_and_load_order)
{
	const struct mig_device_class *vcpu = mig_device_class_get(MIG_DEV_VCPU);
	const struct mig_device_class *mem = mig_device_class_get(MIG_DEV_MEMORY);

	/* Source: vCPUs stop before the final RAM sync, or RAM could change after it. */
	cr_assert_lt(vcpu->save_order, mem->save_order);
	/* Destination: all RAM in place before vCPU state loads and they run. */
	cr_assert_lt(mem->load_order, vcpu->load_order);
	/* No two classes share a slot: the order is total. */
	for (int a = 0; a < _MIG_DEV_CLASS_MAX; a++)
		for (int b = 0; b < a; b++) {
			cr_assert_neq(mig_device_class_get(a)->save_order,
				      mig_device_class_get(b)->save_order);
			cr_assert_neq(mig_device_class_get(a)->load_order,
				      mig_device_class_get(b)->load_order);
		}
}

/* The migration phases: every pair walked; SETUP is only ever left, DONE and
 * ROLLBACK are terminal, and every phase can end in one of them. */
Test(tables, migration_phases)
{
	for (int p = 0; p < _MIG_PHASE_MAX; p++) {
		cr_assert_not_null(mig_phase_to_string(p));
		for (int q = 0; q < p; q++)
			cr_assert_str_neq(mig_phase_to_string(p), mig_phase_to_string(q));
		cr_assert_not(mig_phase_arc_allowed(p, MIG_PHASE_SETUP));
		cr_assert_not(mig_phase_arc_allowed(MIG_PHASE_DONE, p));
		cr_assert_not(mig_phase_arc_allowed(MIG_PHASE_ROLLBACK, p));
		cr_assert_not(mig_phase_arc_allowed(p, p));
	}
	cr_assert_null(mig_phase_to_string(_MIG_PHASE_MAX));
	cr_assert_not(mig_phase_arc_allowed(-1, MIG_PHASE_DONE));
	cr_assert_not(mig_phase_arc_allowed(MIG_PHASE_SETUP, _MIG_PHASE_MAX));
	/* the forward path */
	cr_assert(mig_phase_arc_allowed(MIG_PHASE_SETUP, MIG_PHASE_PRECOPY));
	cr_assert(mig_phase_arc_allowed(MIG_PHASE_PRECOPY, MIG_PHASE_STOP_COPY));
	cr_assert(mig_phase_arc_allowed(MIG_PHASE_STOP_COPY, MIG_PHASE_COMMIT));
	cr_assert(mig_phase_arc_allowed(MIG_PHASE_COMMIT, MIG_PHASE_DONE));
	/* no skipping: DONE only after COMMIT, COMMIT only after STOP_COPY */
	for (int p = 0; p < _MIG_PHASE_MAX; p++) {
		if (p != MIG_PHASE_COMMIT)
			cr_assert_not(mig_phase_arc_allowed(p, MIG_PHASE_DONE));
		if (p != MIG_PHASE_STOP_COPY)
			cr_assert_not(mig_phase_arc_allowed(p, MIG_PHASE_COMMIT));
		/* every non-terminal phase can give up */
		if (p != MIG_PHASE_DONE && p != MIG_PHASE_ROLLBACK)
			cr_assert(mig_phase_arc_allowed(p, MIG_PHASE_ROLLBACK));
	}
}
