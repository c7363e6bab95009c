// SPDX-License-Identifier: MIT
/*
 * The s390 DIAG 318 class (diag318.h): the per-vCPU value read from the
 * sync registers with the vCPU stopped, carried in a 16-byte state, and
 * written back before the vCPU runs on the destination, which must have
 * KVM_CAP_S390_DIAG318.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "diag318/diag318.h"
#include "util.h"

static const char *const state_names[DIAG318_ST_N] = {
	[DIAG318_CREATED] = "created",
	[DIAG318_RUNNING] = "running",
	[DIAG318_SAVED] = "saved",
	[DIAG318_RESTORING] = "restoring",
	[DIAG318_RESTORED] = "restored",
	[DIAG318_FAILED] = "failed",
	[DIAG318_DEAD] = "dead",
};

#define A(from, to) [(from) * DIAG318_ST_N + (to)] = true
static const bool arcs[DIAG318_ST_N * DIAG318_ST_N] = {
	A(DIAG318_CREATED, DIAG318_RUNNING),
	A(DIAG318_CREATED, DIAG318_RESTORING),
	A(DIAG318_CREATED, DIAG318_DEAD),
	A(DIAG318_RUNNING, DIAG318_SAVED),
	A(DIAG318_RUNNING, DIAG318_DEAD),
	A(DIAG318_SAVED, DIAG318_RUNNING),       /* a rollback */
	A(DIAG318_SAVED, DIAG318_DEAD),
	A(DIAG318_RESTORING, DIAG318_RESTORED),
	A(DIAG318_RESTORING, DIAG318_FAILED),
	A(DIAG318_RESTORED, DIAG318_RUNNING),
	A(DIAG318_RESTORED, DIAG318_DEAD),
	A(DIAG318_FAILED, DIAG318_DEAD),
};
#undef A

static int read_value(struct diag318_dev *g, uint64_t *val, struct mig_error *err)
{
	int r = g->be->get(g, val);

	if (r == -ENODATA)
		return mig_error_set(err, r, "diag318: vCPU %u: KVM_SYNC_DIAG318 is not in "
				     "kvm_valid_regs: this host's KVM does not sync the DIAG 318 "
				     "value (it needs KVM_CAP_S390_DIAG318, Linux 5.9 or later)",
				     g->core.id);
	if (r < 0)
		return mig_error_set(err, r, "diag318: vCPU %u: reading the DIAG 318 value (%s "
				     "backend): %s", g->core.id, g->be->name, strerror(-r));
	return 0;
}

static int step(struct mig_device *d, int to, struct mig_error *err)
{
	struct diag318_dev *g = container_of(d, struct diag318_dev, core);

	if (to == DIAG318_SAVED) {
		/* the vCPU is out of KVM_RUN (QUIESCE): kvm_run holds what
		 * its last exit stored */
		int r = read_value(g, &g->saved, err);

		if (r >= 0)
			d->bytes = DIAG318_STATE_LEN;
		return r;
	}
	/* RUNNING, RESTORING, RESTORED, FAILED, DEAD: bookkeeping (load()
	 * writes; the vCPU's next KVM_RUN takes it) */
	return 0;
}

static int save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	struct diag318_dev *g = container_of(d, struct diag318_dev, core);
	uint8_t b[DIAG318_STATE_LEN];
	uint32_t magic = htole32(DIAG318_STATE_MAGIC), version = htole32(DIAG318_STATE_VERSION);
	uint64_t v = htole64(g->saved);

	if (d->state != DIAG318_SAVED)
		return mig_error_set(err, -EINVAL, "diag318: save in state %s (needs saved)",
				     mig_device_state_name(d));
	memcpy(b, &magic, 4);
	memcpy(b + 4, &version, 4);
	memcpy(b + 8, &v, 8);
	return w->write(w, b, sizeof(b), err);
}

/* Checked whole before kvm_run is touched. */
static int load(struct mig_device *d, struct mig_reader *rd, struct mig_error *err)
{
	struct diag318_dev *g = container_of(d, struct diag318_dev, core);
	uint64_t n = rd->remaining(rd), v;
	uint32_t magic, version;
	uint8_t b[DIAG318_STATE_LEN];
	int r;

	if (d->state != DIAG318_RESTORING)
		return mig_error_set(err, -EINVAL, "diag318: load in state %s (needs restoring)",
				     mig_device_state_name(d));
	if (n != DIAG318_STATE_LEN)
		return mig_error_set(err, -EPROTO, "diag318: vCPU %u: a state of %llu bytes (%u "
				     "expected): the source is another migratectl version or the "
				     "state was damaged", d->id, (unsigned long long)n,
				     DIAG318_STATE_LEN);
	r = rd->read(rd, b, sizeof(b), err);
	if (r < 0)
		return r;
	memcpy(&magic, b, 4);
	memcpy(&version, b + 4, 4);
	memcpy(&v, b + 8, 8);
	if (le32toh(magic) != DIAG318_STATE_MAGIC)
		return mig_error_set(err, -EPROTO, "diag318: vCPU %u: the state starts with %#x, not "
				     "the DIAG 318 magic %#x: it is not a DIAG 318 state", d->id,
				     le32toh(magic), DIAG318_STATE_MAGIC);
	if (le32toh(version) != DIAG318_STATE_VERSION)
		return mig_error_set(err, -EPROTO, "diag318: vCPU %u: state version %u, this build "
				     "reads version %u: migrate between the same migratectl "
				     "versions", d->id, le32toh(version), DIAG318_STATE_VERSION);
	r = g->be->set(g, le64toh(v));
	if (r < 0)
		return mig_error_set(err, r, "diag318: vCPU %u: writing the DIAG 318 value (%s "
				     "backend): %s", d->id, g->be->name, strerror(-r));
	d->bytes = n;
	return 0;
}

static uint64_t final_size(struct mig_device *d)
{
	(void)d;
	return DIAG318_STATE_LEN;
}

/* ---- what a destination must have ---- */

/* The source's description: 16 bytes, little-endian: u32 version (1),
 * u32 vCPU, u64 the value as the guest set it when the migration began. */
#define DESC_LEN 16U

static int describe(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	struct diag318_dev *g = container_of(d, struct diag318_dev, core);
	uint32_t version = htole32(1), vcpu = htole32(d->id);
	uint64_t v;
	uint8_t b[DESC_LEN];
	int r = read_value(g, &v, err);

	if (r < 0)
		return r;
	v = htole64(v);
	memcpy(b, &version, 4);
	memcpy(b + 4, &vcpu, 4);
	memcpy(b + 8, &v, 8);
	if (mig_buf_append(out, b, sizeof(b)) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int check(struct mig_device *d, const void *p, size_t n, struct mig_error *err)
{
	struct diag318_dev *g = container_of(d, struct diag318_dev, core);
	uint32_t version;
	uint64_t v;
	int cap;

	if (n != DESC_LEN)
		return mig_error_set(err, -EPROTO, "diag318: a description of %zu bytes (%u "
				     "expected)", n, DESC_LEN);
	memcpy(&version, p, 4);
	memcpy(&v, (const uint8_t *)p + 8, 8);
	v = le64toh(v);
	if (le32toh(version) != 1)
		return mig_error_set(err, -EPROTO, "diag318: a description of version %u (1 "
				     "expected): migrate between the same migratectl versions",
				     le32toh(version));
	cap = g->be->has_cap(g);
	if (cap < 0)
		return mig_error_set(err, cap, "diag318: vCPU %u: asking KVM for "
				     "KVM_CAP_S390_DIAG318 (%s backend): %s", d->id, g->be->name,
				     strerror(-cap));
	if (!cap)
		return mig_error_set(err, -ENOTSUP, "diag318: vCPU %u: this host's KVM has no "
				     "KVM_CAP_S390_DIAG318 (%d), so the guest's DIAG 318 "
				     "control-program code %#018llx (name code %#x) cannot be "
				     "restored: choose a destination with Linux 5.9 or later on a "
				     "machine with the diagnose 318 facility", d->id,
				     DIAG318_KVM_CAP, (unsigned long long)v, diag318_cpnc(v));
	return 0;
}

/*
 * Its place in each stage: read once the vCPUs are stopped (QUIESCE is
 * before SAVE), before the vCPUs' own state (20); written on the
 * destination before the vCPUs load (20) and run (30).
 */
static const struct mig_stage_step steps[] = {
	{ MIG_STAGE_SAVE, 15, DIAG318_SAVED },
	{ MIG_STAGE_RELEASE, 10, DIAG318_DEAD },
	{ MIG_STAGE_ROLLBACK, 25, DIAG318_RUNNING },
	{ MIG_STAGE_LOAD, 15, DIAG318_RESTORED },
	{ MIG_STAGE_START, 25, DIAG318_RUNNING },
	{ MIG_STAGE_DISCARD, 10, DIAG318_DEAD },
};

static const struct mig_device_ops ops = {
	.step = step, .save = save, .load = load, .final_size = final_size,
};
static const struct mig_compat_ops compat_ops = { .describe = describe, .check = check };

const struct mig_device_class diag318_class = {
	.id = MIG_DEV_DIAG318, .name = "diag318", .version = 1,
	.nr_states = DIAG318_ST_N, .state_names = state_names, .arcs = arcs,
	.steps = steps, .nr_steps = ARRAY_SIZE(steps),
	.load_state = DIAG318_RESTORING, .fail_state = DIAG318_FAILED,
	.ops = &ops, .compat_ops = &compat_ops,
};

void diag318_dev_init(struct diag318_dev *d, unsigned vcpu, const struct diag318_backend *be,
		      void *be_data, int state)
{
	memset(d, 0, sizeof(*d));
	d->be = be;
	d->be_data = be_data;
	mig_device_init(&d->core, &diag318_class, vcpu, state);
}
