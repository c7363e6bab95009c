// SPDX-License-Identifier: MIT
/*
 * The s390 DIAG 318 class (devices/diag318/) on its sim backend, which
 * keeps the kernel's contract: the value in kvm_run only valid with
 * KVM_SYNC_DIAG318 in kvm_valid_regs, written back through kvm_dirty_regs
 * at the next KVM_RUN.  A source and a destination vCPU, the class's steps
 * taken by the walker in the engines' stages:
 *
 *   - the value the guest set on the source is the one its vCPU has on the
 *     destination after the first KVM_RUN there, and the state is 16
 *     little-endian bytes whatever the host's byte order;
 *   - a damaged state (size, magic, version) is refused with a message
 *     before kvm_run is touched;
 *   - a destination whose KVM lacks KVM_CAP_S390_DIAG318 is refused at the
 *     compatibility check, naming the capability; a source that lacks it
 *     cannot save;
 *   - a rollback leaves the source's vCPU running with its value.
 *
 * Built where the class is (s390x); it runs under qemu-user in the s390x
 * cross build (tests/cross/run-cross.sh).  No KVM needed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/buf.h>
#include <migrate/device.h>

#include "diag318/diag318.h"

/* CPNC 4 (Linux), then a version code */
#define VALUE 0x0400000000c0ffeeULL

struct side {
	struct diag318_sim sim;
	struct diag318_dev dev;
	struct mig_device *devs[1];
};

static void side_init(struct side *x, bool cap, int state)
{
	diag318_sim_init(&x->sim, cap);
	diag318_dev_init(&x->dev, 3, &diag318_sim_backend, &x->sim, state);
	x->devs[0] = &x->dev.core;
}

static struct mig_reader *state_of(void *arg, struct mig_device *d)
{
	(void)d;
	return arg;
}

static int walk(struct side *x, enum mig_stage stage, struct mig_reader *rd,
		struct mig_error *err)
{
	struct mig_walk w = { .state_of = rd ? state_of : NULL, .state_arg = rd };

	return mig_devices_walk(x->devs, 1, stage, &w, err);
}

/* The source's state after SAVE, into b. */
static void save_source(struct side *s, struct mig_buf *b)
{
	struct mig_error err = { 0 };
	struct mig_buf_writer bw;

	side_init(s, true, DIAG318_RUNNING);
	diag318_sim_guest_diag(&s->sim, VALUE);
	diag318_sim_run(&s->sim);              /* the exit stores it in kvm_run */
	cr_assert_eq(walk(s, MIG_STAGE_SAVE, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(s->dev.core.state, DIAG318_SAVED);
	mig_buf_writer_init(&bw, b);
	cr_assert_eq(mig_device_save(&s->dev.core, &bw.w, &err), 0, "%s", err.msg);
	cr_assert_eq(b->len, DIAG318_STATE_LEN);
}

/* Load `p` into a fresh destination vCPU: the walk's result, err filled. */
static int load_dest(struct side *d, const void *p, size_t n, struct mig_error *err)
{
	struct mig_mem_reader mr;

	side_init(d, true, DIAG318_CREATED);
	d->sim.vcpu_val = 0x77;                /* what must survive a refused load */
	d->sim.regs_diag318 = 0x77;
	mig_mem_reader_init(&mr, p, n);
	return walk(d, MIG_STAGE_LOAD, &mr.r, err);
}

Test(diag318, table)
{
	const struct mig_device_class *c = mig_device_class_get(MIG_DEV_DIAG318);

	cr_assert_eq(c, &diag318_class);
	cr_assert_str_eq(mig_dev_class_to_string(MIG_DEV_DIAG318), "diag318");
	cr_assert(mig_device_arc_allowed(c, DIAG318_RUNNING, DIAG318_SAVED));
	cr_assert(mig_device_arc_allowed(c, DIAG318_SAVED, DIAG318_RUNNING));
	cr_assert_not(mig_device_arc_allowed(c, DIAG318_SAVED, DIAG318_RESTORED));
	cr_assert_not(mig_device_arc_allowed(c, DIAG318_RESTORING, DIAG318_RUNNING));
	for (int s = 0; s < DIAG318_ST_N; s++)
		cr_assert_not_null(c->state_names[s], "state %d has no name", s);
}

Test(diag318, sim_keeps_the_kernel_contract)
{
	struct side x;
	uint64_t v = 1;

	side_init(&x, false, DIAG318_RUNNING);
	cr_assert_eq(diag318_sim_backend.get(&x.dev, &v), -ENODATA);
	cr_assert_eq(diag318_sim_backend.has_cap(&x.dev), 0);
	side_init(&x, true, DIAG318_RUNNING);
	diag318_sim_guest_diag(&x.sim, VALUE);
	cr_assert_eq(diag318_sim_backend.get(&x.dev, &v), 0);
	cr_assert_eq(v, 0, "kvm_run shows the value only after an exit");
	diag318_sim_run(&x.sim);
	cr_assert_eq(diag318_sim_backend.get(&x.dev, &v), 0);
	cr_assert_eq(v, VALUE);
	/* a write is the vCPU's only through kvm_dirty_regs, at the next run */
	cr_assert_eq(diag318_sim_backend.set(&x.dev, 5), 0);
	cr_assert_eq(x.sim.vcpu_val, VALUE);
	cr_assert(x.sim.kvm_dirty_regs & DIAG318_KVM_SYNC);
	diag318_sim_run(&x.sim);
	cr_assert_eq(x.sim.vcpu_val, 5);
}

Test(diag318, migrates_the_value)
{
	struct side s, d;
	struct mig_buf b = { 0 };
	struct mig_error err = { 0 };
	static const uint8_t wire[DIAG318_STATE_LEN] = {
		0x44, 0x33, 0x31, 0x38, 1, 0, 0, 0,          /* "D318", version 1 */
		0xee, 0xff, 0xc0, 0, 0, 0, 0, 0x04,          /* the value, little-endian */
	};

	save_source(&s, &b);
	cr_assert_eq(memcmp(b.data, wire, sizeof(wire)), 0,
		     "the state is not the documented little-endian bytes");
	cr_assert_eq(load_dest(&d, b.data, b.len, &err), 0, "%s", err.msg);
	cr_assert_eq(d.dev.core.state, DIAG318_RESTORED);
	cr_assert_eq(d.dev.core.bytes, DIAG318_STATE_LEN);
	cr_assert_eq(walk(&d, MIG_STAGE_START, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(d.dev.core.state, DIAG318_RUNNING);
	/* the vCPU's first KVM_RUN on the destination takes it in */
	diag318_sim_run(&d.sim);
	cr_assert_eq(d.sim.vcpu_val, VALUE);
	cr_assert_eq(diag318_cpnc(d.sim.vcpu_val), 4);
	mig_buf_free(&b);
}

static void refused(const uint8_t *p, size_t n, const char *what)
{
	struct side d;
	struct mig_error err = { 0 };

	cr_assert_lt(load_dest(&d, p, n, &err), 0, "a state with %s was loaded", what);
	cr_assert_eq(d.dev.core.state, DIAG318_FAILED);
	cr_assert_not_null(strstr(err.msg, what), "'%s' does not say '%s'", err.msg, what);
	cr_assert_eq(d.sim.regs_diag318, 0x77, "kvm_run was written from a bad state");
	cr_assert_eq(d.sim.kvm_dirty_regs & DIAG318_KVM_SYNC, 0);
}

Test(diag318, bad_state_is_refused)
{
	struct side s;
	struct mig_buf b = { 0 };
	uint8_t p[DIAG318_STATE_LEN + 1];

	save_source(&s, &b);
	refused(b.data, 8, "a state of 8 bytes (16 expected)");
	memcpy(p, b.data, DIAG318_STATE_LEN);
	p[DIAG318_STATE_LEN] = 0;
	refused(p, sizeof(p), "a state of 17 bytes (16 expected)");
	p[0] ^= 1;
	refused(p, DIAG318_STATE_LEN, "not a DIAG 318 state");
	memcpy(p, b.data, DIAG318_STATE_LEN);
	p[4] = 2;
	refused(p, DIAG318_STATE_LEN, "state version 2");
	mig_buf_free(&b);
}

static int compat(bool src_cap, bool dst_cap, struct mig_error *err)
{
	struct side s, d;
	struct mig_buf b = { 0 };
	int r;

	side_init(&s, src_cap, DIAG318_RUNNING);
	diag318_sim_guest_diag(&s.sim, VALUE);
	diag318_sim_run(&s.sim);
	side_init(&d, dst_cap, DIAG318_CREATED);
	r = diag318_class.compat_ops->describe(&s.dev.core, &b, err);
	if (r >= 0)
		r = diag318_class.compat_ops->check(&d.dev.core, b.data, b.len, err);
	mig_buf_free(&b);
	return r;
}

Test(diag318, destination_without_the_capability)
{
	struct mig_error err = { 0 };

	cr_assert_eq(compat(true, true, &err), 0, "%s", err.msg);
	cr_assert_eq(compat(true, false, &err), -ENOTSUP);
	cr_assert_not_null(strstr(err.msg, "KVM_CAP_S390_DIAG318 (186)"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "0x0400000000c0ffee"), "%s", err.msg);
	cr_assert_not_null(strstr(err.msg, "choose a destination"), "%s", err.msg);
}

Test(diag318, bad_description)
{
	struct side d;
	struct mig_error err = { 0 };
	uint8_t desc[16] = { 2 };

	side_init(&d, true, DIAG318_CREATED);
	cr_assert_eq(diag318_class.compat_ops->check(&d.dev.core, desc, 8, &err), -EPROTO);
	cr_assert_not_null(strstr(err.msg, "a description of 8 bytes"), "%s", err.msg);
	mig_error_clear(&err);
	cr_assert_eq(diag318_class.compat_ops->check(&d.dev.core, desc, 16, &err), -EPROTO);
	cr_assert_not_null(strstr(err.msg, "description of version 2"), "%s", err.msg);
}

Test(diag318, source_without_the_capability)
{
	struct side s;
	struct mig_error err = { 0 };

	cr_assert_eq(compat(false, true, &err), -ENODATA);
	cr_assert_not_null(strstr(err.msg, "KVM_SYNC_DIAG318 is not in kvm_valid_regs"), "%s",
			   err.msg);
	side_init(&s, false, DIAG318_RUNNING);
	cr_assert_eq(walk(&s, MIG_STAGE_SAVE, NULL, &err), -ENODATA);
	cr_assert_eq(s.dev.core.state, DIAG318_RUNNING);
}

Test(diag318, rollback)
{
	struct side s;
	struct mig_buf b = { 0 };
	struct mig_error err = { 0 };

	save_source(&s, &b);
	cr_assert_eq(walk(&s, MIG_STAGE_ROLLBACK, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(s.dev.core.state, DIAG318_RUNNING);
	diag318_sim_run(&s.sim);
	cr_assert_eq(s.sim.vcpu_val, VALUE);
	mig_buf_free(&b);
}
