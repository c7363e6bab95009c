// SPDX-License-Identifier: MIT
/* The device-class core: state checks, the class registry and its names. */
#include <errno.h>
#include <string.h>

#include "devices-internal.h"
#include "migrate/macro.h"

static const struct mig_device_class *const classes[_MIG_DEV_CLASS_MAX] = {
	[MIG_DEV_VCPU] = &vcpu_class,
	[MIG_DEV_MEMORY] = &mem_class,
};

static const char *const class_names[_MIG_DEV_CLASS_MAX] = {
	[MIG_DEV_VCPU] = "vcpu",
	[MIG_DEV_MEMORY] = "memory",
};

const struct mig_device_class *mig_device_class_get(enum mig_dev_class id)
{
	if ((unsigned)id >= _MIG_DEV_CLASS_MAX)
		return NULL;
	return classes[id];
}

const char *mig_dev_class_to_string(enum mig_dev_class id)
{
	if ((unsigned)id >= _MIG_DEV_CLASS_MAX)
		return NULL;
	return class_names[id];
}

int mig_dev_class_from_string(const char *s)
{
	for (unsigned i = 0; i < _MIG_DEV_CLASS_MAX; i++)
		if (s && strcmp(s, class_names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

void mig_device_init(struct mig_device *d, const struct mig_device_class *cls,
		     unsigned id, int state)
{
	d->cls = cls;
	d->id = id;
	d->state = state;
}

bool mig_device_arc_allowed(const struct mig_device_class *cls, int from, int to)
{
	if (from < 0 || to < 0 || (unsigned)from >= cls->nr_states ||
	    (unsigned)to >= cls->nr_states)
		return false;
	return cls->arcs[(unsigned)from * cls->nr_states + (unsigned)to];
}

const char *mig_device_state_name(const struct mig_device *d)
{
	if (d->state < 0 || (unsigned)d->state >= d->cls->nr_states)
		return "invalid";
	return d->cls->state_names[d->state];
}

int mig_device_step(struct mig_device *d, int to, struct mig_error *err)
{
	int r;

	if (!mig_device_arc_allowed(d->cls, d->state, to))
		return mig_error_set(err, -EINVAL, "%s %u: no transition %s => %s",
				     d->cls->name, d->id, mig_device_state_name(d),
				     (to >= 0 && (unsigned)to < d->cls->nr_states) ?
				     d->cls->state_names[to] : "invalid");
	r = d->cls->ops->step(d, to, err);
	if (r < 0)
		return r;
	d->state = to;
	return 0;
}

int mig_device_save(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	return d->cls->ops->save(d, out, err);
}

int mig_device_load(struct mig_device *d, const uint8_t *p, size_t n, struct mig_error *err)
{
	return d->cls->ops->load(d, p, n, err);
}

int mig_device_dirty_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
			  struct mig_error *err)
{
	if (!d->cls->dirty_ops)
		return mig_error_set(err, -EOPNOTSUPP, "%s: no dirty tracking", d->cls->name);
	return d->cls->dirty_ops->sync(d, bitmap, ret_count, err);
}
