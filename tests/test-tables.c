// SPDX-License-Identifier: MIT
/*
 * Table tests: every enum value has a name, every (from, to) pair of every
 * device-class state machine is walked through mig_device_step(), and every
 * class's stage steps name states it has and can reach.  No KVM needed: the
 * class's arc handler is swapped for one that records the call.  The order
 * the stages put the classes in is checked by walking them
 * (tests/test-walker.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <migrate/device.h>
#include <migrate/engine.h>
#include <migrate/lab.h>

#include "util.h"

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

static int record_load(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	(void)d; (void)r; (void)err;
	return 0;
}

static const struct mig_device_ops record_ops = { .step = record_step, .load = record_load };

static struct mig_mem_reader nothing;

static struct mig_reader *no_state(void *arg, struct mig_device *d)
{
	(void)arg; (void)d;
	mig_mem_reader_init(&nothing, "", 0);
	return &nothing.r;
}
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
	const struct mig_device_class *const *list;
	unsigned n = mig_device_classes(&list);

	cr_assert_null(mig_device_class_get(MIG_DEV_INVALID), "0 is never a class");
	cr_assert_null(mig_dev_class_to_string(MIG_DEV_INVALID));
	cr_assert_geq(n, 3, "memory, vCPU and platform are always built");
	cr_assert_null(list[n]);
	for (unsigned i = 0; i < n; i++) {
		const struct mig_device_class *cls = list[i];
		const char *name = mig_dev_class_to_string(cls->id);

		cr_assert(cls->id > MIG_DEV_INVALID && cls->id < _MIG_DEV_CLASS_MAX,
			  "%s has id %u, not one of enum mig_dev_class", cls->name, cls->id);
		for (unsigned k = 0; k < i; k++)
			cr_assert_neq(list[k]->id, cls->id, "%s and %s share id %u", list[k]->name,
				      cls->name, cls->id);
		cr_assert_eq(mig_device_class_get(cls->id), cls);
		cr_assert_not_null(name);
		cr_assert_str_eq(cls->name, name);
		cr_assert_eq(mig_dev_class_from_string(name), (int)cls->id);
		cr_assert_not_null(cls->ops);
		cr_assert_not_null(cls->ops->step);
	}
	cr_assert_not_null(mig_device_class_get(MIG_DEV_MEMORY));
	cr_assert_not_null(mig_device_class_get(MIG_DEV_VCPU));
	cr_assert_not_null(mig_device_class_get(MIG_DEV_PLATFORM));
	cr_assert_null(mig_dev_class_to_string(_MIG_DEV_CLASS_MAX));
	cr_assert_null(mig_device_class_get(_MIG_DEV_CLASS_MAX));
	cr_assert_eq(mig_dev_class_from_string("gpu"), -EINVAL);
	cr_assert_eq(mig_dev_class_from_string(NULL), -EINVAL);
}

Test(tables, state_names_unique_and_present)
{
	const struct mig_device_class *const *list;
	unsigned n = mig_device_classes(&list);

	for (unsigned i = 0; i < n; i++) {
		const struct mig_device_class *cls = list[i];

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
	const struct mig_device_class *const *list;
	unsigned n = mig_device_classes(&list);

	for (unsigned i = 0; i < n; i++) {
		const struct mig_device_class *real = list[i];
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
	/* Post-copy's hold: from running and back, or to its end; never read
	 * (it was not waited for) */
	cr_assert(mig_device_arc_allowed(cls, VCPU_RUNNING, VCPU_HELD));
	cr_assert(mig_device_arc_allowed(cls, VCPU_HELD, VCPU_RUNNING));
	cr_assert_not(mig_device_arc_allowed(cls, VCPU_HELD, VCPU_SAVED));
	cr_assert_eq(mig_device_class_step(cls, MIG_STAGE_HOLD)->target, VCPU_HELD);
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

Test(tables, platform_machine_shape)
{
	const struct mig_device_class *cls = mig_device_class_get(MIG_DEV_PLATFORM);
	int initial[] = { PLATFORM_CREATED };

	check_shape(MIG_DEV_PLATFORM, initial, 1, PLATFORM_DEAD);
	/* read only from a running VM whose vCPUs the walk stopped first */
	cr_assert(mig_device_arc_allowed(cls, PLATFORM_RUNNING, PLATFORM_SAVED));
	/* loaded only into one that never ran; a failed load never runs */
	for (int s = 0; s < _PLATFORM_STATE_MAX; s++)
		if (s != PLATFORM_CREATED)
			cr_assert_not(mig_device_arc_allowed(cls, s, PLATFORM_RESTORING));
	cr_assert_not(mig_device_arc_allowed(cls, PLATFORM_FAILED, PLATFORM_RUNNING));
	cr_assert(mig_device_arc_allowed(cls, PLATFORM_SAVED, PLATFORM_RUNNING));
}

/* Every step of every class names one of its states, each stage's target
 * can be reached from where the previous stage of that side leaves the
 * device, and load and fail states are states of the class. */
Test(tables, stage_steps_are_sound)
{
	/* the two sides' stage sequences, from a running source and a fresh destination */
	static const enum mig_stage src[] = { MIG_STAGE_TRACK, MIG_STAGE_QUIESCE,
					      MIG_STAGE_SAVE, MIG_STAGE_ROLLBACK };
	static const enum mig_stage src_done[] = { MIG_STAGE_TRACK, MIG_STAGE_QUIESCE,
						   MIG_STAGE_SAVE, MIG_STAGE_RELEASE };
	static const enum mig_stage dst[] = { MIG_STAGE_RECEIVE, MIG_STAGE_LOAD, MIG_STAGE_START };
	static const enum mig_stage dst_gone[] = { MIG_STAGE_RECEIVE, MIG_STAGE_LOAD,
						   MIG_STAGE_DISCARD };
	/* post-copy: its link broken and made again, or broken for good */
	static const enum mig_stage dst_pc[] = { MIG_STAGE_RECEIVE, MIG_STAGE_LOAD,
						 MIG_STAGE_START, MIG_STAGE_HOLD,
						 MIG_STAGE_RESUME, MIG_STAGE_HOLD };
	static const enum mig_stage dst_pc_gone[] = { MIG_STAGE_RECEIVE, MIG_STAGE_LOAD,
						      MIG_STAGE_START, MIG_STAGE_HOLD,
						      MIG_STAGE_DISCARD };
	const struct { const enum mig_stage *s; unsigned n; bool source; } seqs[] = {
		{ src, 4, true }, { src_done, 4, true }, { dst, 3, false }, { dst_gone, 3, false },
		{ dst_pc, 6, false }, { dst_pc_gone, 5, false },
	};

	const struct mig_device_class *const *list;
	unsigned n = mig_device_classes(&list);

	for (unsigned i = 0; i < n; i++) {
		const struct mig_device_class *real = list[i];
		struct mig_device_class cls = with_ops(real, &record_ops);

		/* Paths that depend on the device (its features, where it is)
		 * need a real device of the class: its own test walks them
		 * (test-vfio.c). */
		if (real->next_state || real->target_of)
			continue;
		cr_assert_gt(cls.nr_steps, 0, "%s takes part in no stage", cls.name);
		for (unsigned k = 0; k < cls.nr_steps; k++) {
			cr_assert_lt((unsigned)cls.steps[k].stage, _MIG_STAGE_MAX);
			cr_assert_lt((unsigned)cls.steps[k].target, cls.nr_states);
		}
		cr_assert(cls.load_state < (int)cls.nr_states && cls.fail_state < (int)cls.nr_states);
		for (unsigned q = 0; q < ARRAY_SIZE(seqs); q++) {
			struct mig_device d, *dp = &d;
			/* a source device runs (its ROLLBACK target); a destination
			 * one is new: the state a DISCARD walk could never leave */
			const struct mig_stage_step *run = mig_device_class_step(&cls,
										 MIG_STAGE_ROLLBACK);
			int start = seqs[q].source ? run->target : 0;

			if (real->id == MIG_DEV_MEMORY && !seqs[q].source)
				start = MEM_LOGGING;   /* the kvm backend creates it logging */
			mig_device_init(&d, &cls, 0, start);
			for (unsigned k = 0; k < seqs[q].n; k++) {
				struct mig_walk w = { .state_of = no_state };
				struct mig_error err = { 0 };
				int r;

				r = mig_devices_walk(&dp, 1, seqs[q].s[k], &w, &err);
				cr_assert_eq(r, 0, "%s in stage %s: %s", cls.name,
					     mig_stage_to_string(seqs[q].s[k]), err.msg);
			}
		}
	}
}

/* The migration phases: every pair walked; SETUP is only ever left, DONE and
 * ROLLBACK are terminal, and every phase can end in one of them; POSTCOPY
 * only in DONE, as each host holds half of the VM. */
Test(tables, migration_phases)
{
	cr_assert_null(mig_phase_to_string(MIG_PHASE_INVALID), "0 is never a phase");
	for (int p = MIG_PHASE_SETUP; p < _MIG_PHASE_MAX; p++) {
		cr_assert_not_null(mig_phase_to_string(p));
		for (int q = MIG_PHASE_SETUP; q < p; q++)
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
	cr_assert(mig_phase_arc_allowed(MIG_PHASE_COMMIT, MIG_PHASE_POSTCOPY));
	cr_assert(mig_phase_arc_allowed(MIG_PHASE_POSTCOPY, MIG_PHASE_DONE));
	/* no skipping: DONE only after COMMIT or POSTCOPY, POSTCOPY only after
	 * COMMIT, COMMIT only after STOP_COPY */
	for (int p = MIG_PHASE_SETUP; p < _MIG_PHASE_MAX; p++) {
		if (p != MIG_PHASE_COMMIT && p != MIG_PHASE_POSTCOPY)
			cr_assert_not(mig_phase_arc_allowed(p, MIG_PHASE_DONE));
		if (p != MIG_PHASE_COMMIT)
			cr_assert_not(mig_phase_arc_allowed(p, MIG_PHASE_POSTCOPY));
		if (p != MIG_PHASE_STOP_COPY)
			cr_assert_not(mig_phase_arc_allowed(p, MIG_PHASE_COMMIT));
		/* every non-terminal phase but POSTCOPY can give up */
		if (p != MIG_PHASE_DONE && p != MIG_PHASE_ROLLBACK && p != MIG_PHASE_POSTCOPY)
			cr_assert(mig_phase_arc_allowed(p, MIG_PHASE_ROLLBACK));
	}
	cr_assert_not(mig_phase_arc_allowed(MIG_PHASE_POSTCOPY, MIG_PHASE_ROLLBACK));
}

/* The control payloads' words: one per value, none for 0 or past the end,
 * and the names an option takes read back to their value. */
Test(tables, control_names)
{
	static const struct {
		const char *(*name)(uint32_t);
		uint32_t last;
	} t[] = {
		{ mig_result_to_string, MIG_RESULT_CANCELLED },
		{ mig_owner_to_string, MIG_OWNER_NONE },
		{ mig_vm_state_to_string, MIG_VM_HELD },
		{ mig_side_to_string, MIG_SIDE_DESTINATION },
		{ mig_migration_state_to_string, MIG_MIGRATION_HELD },
	};

	for (unsigned k = 0; k < ARRAY_SIZE(t); k++) {
		cr_assert_null(t[k].name(0), "table %u names 0", k);
		cr_assert_null(t[k].name(t[k].last + 1), "table %u names %u", k, t[k].last + 1);
		for (uint32_t v = 1; v <= t[k].last; v++)
			cr_assert_not_null(t[k].name(v), "table %u has no name for %u", k, v);
	}
	cr_assert_str_eq(mig_result_to_string(MIG_RESULT_COMPLETED), "completed");
	cr_assert_str_eq(mig_owner_to_string(MIG_OWNER_NONE), "none");
	for (int c = MIG_CHECKSUM_PAGES; c < _MIG_CHECKSUM_MAX; c++)
		cr_assert_eq(mig_checksum_from_string(mig_checksum_to_string(c)), c);
	cr_assert_null(mig_checksum_to_string(MIG_CHECKSUM_INVALID));
	cr_assert_eq(mig_checksum_from_string("sums"), -EINVAL);
}

/* --handover's words read back to their value, every reason a RESULT may
 * give has its words (none past the end), and the lab's RAM kinds too. */
Test(tables, handover_names)
{
	for (uint32_t m = 0; m < _MIG_HANDOVER_MODE_END; m++) {
		cr_assert_not_null(mig_handover_mode_to_string(m), "mode %u", m);
		cr_assert_eq(mig_handover_mode_from_string(mig_handover_mode_to_string(m)), (int)m);
	}
	cr_assert_null(mig_handover_mode_to_string(_MIG_HANDOVER_MODE_END));
	cr_assert_eq(mig_handover_mode_from_string("sometimes"), -EINVAL);
	cr_assert_eq(mig_handover_mode_from_string(NULL), -EINVAL);
	for (uint32_t w = 0; w < _MIG_HANDOVER_WHY_END; w++) {
		const char *t = mig_handover_why_to_string(w);

		cr_assert_not_null(t, "reason %u", w);
		/* handed over: no reason; every other value says why not */
		cr_assert_eq(t[0] == '\0', w == MIG_HANDOVER_DONE, "reason %u: \"%s\"", w, t);
	}
	cr_assert_null(mig_handover_why_to_string(_MIG_HANDOVER_WHY_END));
	for (int k = 0; k < _LAB_RAM_MAX; k++)
		cr_assert_eq(lab_ram_from_string(lab_ram_to_string((enum lab_ram)k)), k);
	cr_assert_eq(lab_ram_from_string("hugetlb"), -EINVAL);
}
