// SPDX-License-Identifier: MIT
/*
 * x86 platform class, kvm backend: the VM-wide state outside the vCPUs
 * (KERNEL-UAPI §4): the in-kernel irqchip (PIC and IOAPIC), the PIT and
 * kvmclock, in the blob format of docs/vcpu-state.md.  One per VM.
 *
 * Its order is the kernel's: the irqchip exists before the vCPUs (the lab
 * creates it), IRQCHIP and PIT are set before the vCPUs run, and the clock
 * is set last, at the start, right before the vCPUs run, followed by
 * KVM_KVMCLOCK_CTRL on each of them.  The GIC class will have this shape.
 */
#include <errno.h>
#include <stdlib.h>

#include "devices-internal.h"
#include "vcpu/x86-state.h"
#include "util.h"

static const char *const platform_state_names[_PLATFORM_STATE_MAX] = {
	[PLATFORM_CREATED] = "created",
	[PLATFORM_RUNNING] = "running",
	[PLATFORM_SAVED] = "saved",
	[PLATFORM_RESTORING] = "restoring",
	[PLATFORM_RESTORED] = "restored",
	[PLATFORM_FAILED] = "failed",
	[PLATFORM_DEAD] = "dead",
};

#define A(from, to) [(from) * _PLATFORM_STATE_MAX + (to)] = true
static const bool platform_arcs[_PLATFORM_STATE_MAX * _PLATFORM_STATE_MAX] = {
	A(PLATFORM_CREATED, PLATFORM_RUNNING),     /* fresh boot */
	A(PLATFORM_CREATED, PLATFORM_RESTORING),   /* destination */
	A(PLATFORM_CREATED, PLATFORM_DEAD),
	A(PLATFORM_RUNNING, PLATFORM_SAVED),       /* read it, every vCPU stopped */
	A(PLATFORM_SAVED, PLATFORM_RUNNING),       /* source rollback */
	A(PLATFORM_SAVED, PLATFORM_DEAD),          /* the destination owns the VM */
	A(PLATFORM_RESTORING, PLATFORM_RESTORED),
	A(PLATFORM_RESTORING, PLATFORM_FAILED),
	A(PLATFORM_RESTORED, PLATFORM_RUNNING),    /* the clock, then the vCPUs run */
	A(PLATFORM_RESTORED, PLATFORM_DEAD),
	A(PLATFORM_FAILED, PLATFORM_DEAD),
};
#undef A

static int platform_step(struct mig_device *d, int to, struct mig_error *err)
{
	struct platform_dev *p = container_of(d, struct platform_dev, core);

	switch (to) {
	case PLATFORM_SAVED:
		p->saved.len = 0;
		return x86_vm_state_save(p->fds->vm_fd, &p->saved, err);
	case PLATFORM_RUNNING:
		if (d->state != PLATFORM_RESTORED)
			return 0;   /* a fresh boot, or a rollback: the clock ran on */
		/* KVM_SET_CLOCK, then KVM_KVMCLOCK_CTRL on every vCPU (§9) */
		return x86_vm_clock_resume(p->fds->vm_fd, p->fds->vcpu_fds, (int)p->fds->nr_vcpus,
					   p->loaded.data, p->loaded.len, err);
	default:
		/* RESTORING, RESTORED, FAILED, DEAD: bookkeeping; load() sets */
		return 0;
	}
}

static int platform_save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	struct platform_dev *p = container_of(d, struct platform_dev, core);

	if (d->state != PLATFORM_SAVED)
		return mig_error_set(err, -EINVAL, "platform: save in state %s (needs saved)",
				     mig_device_state_name(d));
	return w->write(w, p->saved.data, p->saved.len, err);
}

/* Validated whole before KVM_SET_IRQCHIP; the clock part waits for the start. */
static int platform_load(struct mig_device *d, struct mig_reader *rd, struct mig_error *err)
{
	struct platform_dev *p = container_of(d, struct platform_dev, core);
	uint64_t n = rd->remaining(rd);
	int r;

	if (d->state != PLATFORM_RESTORING)
		return mig_error_set(err, -EINVAL, "platform: load in state %s (needs restoring)",
				     mig_device_state_name(d));
	if (n > MIG_DEVICE_STATE_MAX)
		return mig_error_set(err, -EFBIG, "platform: state of %llu bytes",
				     (unsigned long long)n);
	p->loaded.len = 0;
	r = mig_buf_reserve(&p->loaded, (size_t)n);
	if (r < 0)
		return mig_error_set(err, r, "out of memory");
	r = rd->read(rd, p->loaded.data, (size_t)n, err);
	if (r < 0)
		return r;
	p->loaded.len = (size_t)n;
	return x86_vm_state_load(p->fds->vm_fd, p->loaded.data, p->loaded.len, err);
}

static const struct mig_device_ops platform_ops = {
	.step = platform_step,
	.save = platform_save,
	.load = platform_load,
};

/*
 * Its place in each stage.  Source: read after the vCPUs (all stopped, so
 * the clock and the interrupt controllers are frozen); on a rollback it is
 * back before the vCPUs run.  Destination: loaded after RAM and before the
 * vCPUs; started (the clock) after every load and before the vCPUs run.
 */
static const struct mig_stage_step platform_steps[] = {
	{ MIG_STAGE_SAVE, 30, PLATFORM_SAVED },
	{ MIG_STAGE_RELEASE, 30, PLATFORM_DEAD },
	{ MIG_STAGE_ROLLBACK, 10, PLATFORM_RUNNING },
	{ MIG_STAGE_LOAD, 10, PLATFORM_RESTORED },
	{ MIG_STAGE_START, 10, PLATFORM_RUNNING },
	{ MIG_STAGE_DISCARD, 30, PLATFORM_DEAD },
};

const struct mig_device_class platform_class = {
	.id = MIG_DEV_PLATFORM,
	.name = "platform",
	.version = 1,
	.nr_states = _PLATFORM_STATE_MAX,
	.state_names = platform_state_names,
	.arcs = platform_arcs,
	.steps = platform_steps,
	.nr_steps = ARRAY_SIZE(platform_steps),
	.load_state = PLATFORM_RESTORING,
	.fail_state = PLATFORM_FAILED,
	.ops = &platform_ops,
};

int platform_dev_create(const struct kvm_vm_fds *fds, struct platform_dev **ret,
			struct mig_error *err)
{
	struct platform_dev *p = calloc(1, sizeof(*p));

	if (!p)
		return mig_error_set(err, -ENOMEM, "out of memory");
	mig_device_init(&p->core, &platform_class, 0, PLATFORM_CREATED);
	p->fds = fds;
	*ret = p;
	return 0;
}

void platform_dev_destroy(struct platform_dev *p)
{
	if (!p)
		return;
	mig_buf_free(&p->saved);
	mig_buf_free(&p->loaded);
	free(p);
}
