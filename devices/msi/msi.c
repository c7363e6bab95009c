// SPDX-License-Identifier: MIT
/*
 * The lab's MSI devices (msi.h): a thread that raises LPIs while the VM
 * runs, a last round at QUIESCE that stays pending across the switchover,
 * and the check of the counts in guest RAM.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "msi/msi.h"
#include "util.h"

static const char *const state_names[MSI_ST_N] = {
	[MSI_CREATED] = "created",
	[MSI_RUNNING] = "running",
	[MSI_QUIESCED] = "quiesced",
	[MSI_DEAD] = "dead",
};

#define A(from, to) [(from) * MSI_ST_N + (to)] = true
static const bool arcs[MSI_ST_N * MSI_ST_N] = {
	A(MSI_CREATED, MSI_RUNNING),
	A(MSI_CREATED, MSI_DEAD),
	A(MSI_RUNNING, MSI_QUIESCED),
	A(MSI_QUIESCED, MSI_RUNNING),    /* a rollback */
	A(MSI_QUIESCED, MSI_DEAD),
};
#undef A

static uint64_t load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Raise k if the guest took the last one: raised[k] first, so the guest
 * never counts more than was raised. */
static bool raise_one(struct msi_dev *m, unsigned k)
{
	uint64_t n = load(&m->raised[k]);
	int r;

	if (load(&m->delivered[k]) != n)
		return false;
	__atomic_store_n(&m->raised[k], n + 1, __ATOMIC_RELEASE);
	r = m->ops->raise(m, k);
	if (r != 1) {
		/* not mapped yet (or refused): it was not raised */
		__atomic_store_n(&m->raised[k], n, __ATOMIC_RELEASE);
		return false;
	}
	m->since_ms[k] = mig_now_ms();
	m->raises++;
	m->dirty = true;
	return true;
}

static void *raiser(void *arg)
{
	struct msi_dev *m = arg;
	uint64_t gap_ns = m->rate ? 1000000000ULL / m->rate : 0;
	unsigned k = 0;

	pthread_setname_np(pthread_self(), "msi");
	pthread_mutex_lock(&m->lock);
	while (!m->quit) {
		struct timespec ts = mig_timespec_after(CLOCK_MONOTONIC, gap_ns);

		raise_one(m, k);
		k = (k + 1) % m->nr;
		pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static int start(struct msi_dev *m, struct mig_error *err)
{
	int r;

	for (unsigned k = 0; k < m->nr; k++)
		m->since_ms[k] = mig_now_ms();   /* outstanding ones start their clock now */
	if (!m->rate || !m->nr)
		return 0;
	m->quit = false;
	r = pthread_create(&m->thread, NULL, raiser, m);
	if (r)
		return mig_error_set(err, -r, "msi: starting its thread: %s", strerror(r));
	m->thread_started = true;
	return 0;
}

static void stop(struct msi_dev *m)
{
	if (!m->thread_started)
		return;
	pthread_mutex_lock(&m->lock);
	m->quit = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	m->thread_started = false;
}

static int step(struct mig_device *d, int to, struct mig_error *err)
{
	struct msi_dev *m = container_of(d, struct msi_dev, core);

	switch (to) {
	case MSI_RUNNING:
		return start(m, err);
	case MSI_QUIESCED:
		stop(m);
		/* the vCPUs are stopped: what is raised now is pending at the
		 * switchover */
		pthread_mutex_lock(&m->lock);
		for (unsigned k = 0; k < m->nr; k++)
			m->at_switchover += raise_one(m, k);
		pthread_mutex_unlock(&m->lock);
		return 0;
	default:
		stop(m);
		return 0;
	}
}

/* raised[] goes with RAM: its pages, when it wrote them. */
static int dirty_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
		      struct mig_error *err)
{
	struct msi_dev *m = container_of(d, struct msi_dev, core);
	uint64_t pages = DIV_ROUND_UP(m->nr * sizeof(uint64_t) +
				      ((uintptr_t)m->raised & 4095), 4096);

	(void)err;
	*ret_count = 0;
	pthread_mutex_lock(&m->lock);
	if (m->dirty) {
		for (uint64_t p = m->raised_pfn; p < m->raised_pfn + pages; p++)
			bitmap[p / 64] |= 1ULL << (p % 64);
		*ret_count = pages;
		m->dirty = false;
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

uint64_t msi_dev_errors(struct msi_dev *m)
{
	uint64_t errors = 0, now = mig_now_ms();
	bool running = m->core.state == MSI_RUNNING;

	for (unsigned k = 0; k < m->nr; k++) {
		uint64_t r = load(&m->raised[k]), d = load(&m->delivered[k]);

		if (d > r)
			errors++;                /* delivered twice */
		else if (d < r && running && now - m->since_ms[k] > MSI_LOST_MS)
			errors++;                /* never delivered */
	}
	return errors;
}

/*
 * Its place in each stage: it stops after the vCPUs (11) and raises its
 * last round then, before any device is saved; it raises again after the
 * GIC forwards (2) and before the vCPUs run (30).
 */
static const struct mig_stage_step steps[] = {
	{ MIG_STAGE_QUIESCE, 15, MSI_QUIESCED },
	{ MIG_STAGE_RELEASE, 25, MSI_DEAD },
	{ MIG_STAGE_ROLLBACK, 25, MSI_RUNNING },
	{ MIG_STAGE_START, 25, MSI_RUNNING },
	{ MIG_STAGE_DISCARD, 25, MSI_DEAD },
};

static const struct mig_device_ops dev_ops = { .step = step };
static const struct mig_dirty_ops dirty_ops = { .sync = dirty_sync };

const struct mig_device_class msi_class = {
	.id = MIG_DEV_MSI, .name = "msi", .version = 1,
	.nr_states = MSI_ST_N, .state_names = state_names, .arcs = arcs,
	.steps = steps, .nr_steps = ARRAY_SIZE(steps),
	.load_state = -1, .fail_state = -1,
	.ops = &dev_ops, .dirty_ops = &dirty_ops,
};

int msi_dev_init(struct msi_dev *m, unsigned nr, uint64_t *raised, const uint64_t *delivered,
		 uint64_t raised_pfn, uint64_t rate, const struct msi_ops *ops, void *arg,
		 struct mig_error *err)
{
	memset(m, 0, sizeof(*m));
	if (nr > MSI_LPIS_MAX)
		return mig_error_set(err, -EINVAL, "msi: %u LPIs (at most %u)", nr, MSI_LPIS_MAX);
	m->nr = nr;
	m->raised = raised;
	m->delivered = delivered;
	m->raised_pfn = raised_pfn;
	m->rate = rate;
	m->ops = ops;
	m->arg = arg;
	pthread_mutex_init(&m->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&m->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	mig_device_init(&m->core, &msi_class, 0, MSI_CREATED);
	return 0;
}

void msi_dev_fini(struct msi_dev *m)
{
	if (!m->ops)
		return;
	stop(m);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	m->ops = NULL;
}
