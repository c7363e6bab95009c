// SPDX-License-Identifier: MIT
/*
 * The device-class core: state checks, next steps, the walker that takes a
 * VM's devices through a stage, the class registry and its names.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices-internal.h"
#include "util.h"

#define ADDED_MAX 16
static pthread_mutex_t added_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct mig_device_class *added[ADDED_MAX];
static unsigned nr_added;

static const char *const stage_names[_MIG_STAGE_MAX] = {
	[MIG_STAGE_TRACK] = "track",
	[MIG_STAGE_QUIESCE] = "quiesce",
	[MIG_STAGE_SAVE] = "save",
	[MIG_STAGE_RELEASE] = "release",
	[MIG_STAGE_ROLLBACK] = "rollback",
	[MIG_STAGE_RECEIVE] = "receive",
	[MIG_STAGE_LOAD] = "load",
	[MIG_STAGE_START] = "start",
	[MIG_STAGE_DISCARD] = "discard",
	[MIG_STAGE_HOLD] = "hold",
	[MIG_STAGE_RESUME] = "resume",
};
MIG_STRING_TABLE_TO(mig_stage, enum mig_stage, stage_names)

/* The classes of this build (devices/classes.c, generated from the class
 * folders the build took), NULL-terminated.  Order of work is not here: it
 * is in each class's stage steps. */
extern const struct mig_device_class *const mig_builtin_classes[];

unsigned mig_device_classes(const struct mig_device_class *const **ret)
{
	unsigned n = 0;

	while (mig_builtin_classes[n])
		n++;
	if (ret)
		*ret = mig_builtin_classes;
	return n;
}

const struct mig_device_class *mig_device_class_get(uint32_t id)
{
	const struct mig_device_class *c = NULL;

	if (id < MIG_DEV_CLASS_PRIVATE) {
		for (unsigned i = 0; mig_builtin_classes[i]; i++)
			if (mig_builtin_classes[i]->id == id)
				return mig_builtin_classes[i];
		return NULL;
	}
	pthread_mutex_lock(&added_lock);
	for (unsigned i = 0; i < nr_added && !c; i++)
		if (added[i]->id == id)
			c = added[i];
	pthread_mutex_unlock(&added_lock);
	return c;
}

int mig_device_class_add(const struct mig_device_class *cls)
{
	int r = 0;

	if (!cls || cls->id < MIG_DEV_CLASS_PRIVATE)
		return -EINVAL;
	pthread_mutex_lock(&added_lock);
	for (unsigned i = 0; i < nr_added; i++)
		if (added[i]->id == cls->id)
			r = added[i] == cls ? 0 : -EEXIST;
	if (r == 0 && nr_added == ADDED_MAX)
		r = -ENOSPC;
	if (r == 0) {
		bool known = false;

		for (unsigned i = 0; i < nr_added; i++)
			known |= added[i] == cls;
		if (!known)
			added[nr_added++] = cls;
	}
	pthread_mutex_unlock(&added_lock);
	return r;
}

const char *mig_dev_class_to_string(enum mig_dev_class id)
{
	const struct mig_device_class *c = mig_device_class_get(id);

	return c ? c->name : NULL;
}

int mig_dev_class_from_string(const char *s)
{
	for (unsigned i = 0; s && mig_builtin_classes[i]; i++)
		if (strcmp(s, mig_builtin_classes[i]->name) == 0)
			return (int)mig_builtin_classes[i]->id;
	return -EINVAL;
}

void mig_device_init(struct mig_device *d, const struct mig_device_class *cls,
		     unsigned id, int state)
{
	d->cls = cls;
	d->id = id;
	d->state = state;
	d->bytes = 0;
	d->notes = 0;
}

bool mig_device_arc_allowed(const struct mig_device_class *cls, int from, int to)
{
	if (from < 0 || to < 0 || (unsigned)from >= cls->nr_states ||
	    (unsigned)to >= cls->nr_states)
		return false;
	return cls->arcs[(unsigned)from * cls->nr_states + (unsigned)to];
}

static const char *state_name(const struct mig_device_class *cls, int s)
{
	return s >= 0 && (unsigned)s < cls->nr_states ? cls->state_names[s] : "invalid";
}

const char *mig_device_state_name(const struct mig_device *d)
{
	return state_name(d->cls, d->state);
}

int mig_device_step(struct mig_device *d, int to, struct mig_error *err)
{
	int r;

	if (!mig_device_arc_allowed(d->cls, d->state, to))
		return mig_error_set(err, -EINVAL, "%s %u: no transition %s => %s",
				     d->cls->name, d->id, mig_device_state_name(d),
				     state_name(d->cls, to));
	r = d->cls->ops->step(d, to, err);
	if (r < 0)
		return r;
	d->state = to;
	return 0;
}

/* The first arc of a shortest path from `from` to `target` through the arc
 * table, breadth first with the lower state tried first, so the answer is
 * the same every time. */
static int shortest_next(const struct mig_device_class *cls, int from, int target)
{
	int first[64], queue[64];
	unsigned n = cls->nr_states, head = 0, tail = 0;

	if (from < 0 || target < 0 || (unsigned)from >= n || (unsigned)target >= n ||
	    n > ARRAY_SIZE(first) || from == target)
		return -1;
	for (unsigned s = 0; s < n; s++)
		first[s] = -1;
	queue[tail++] = from;
	first[from] = from;
	while (head < tail) {
		int s = queue[head++];

		for (unsigned t = 0; t < n; t++) {
			if (first[t] >= 0 || !cls->arcs[(unsigned)s * n + t])
				continue;
			first[t] = s == from ? (int)t : first[s];
			if ((int)t == target)
				return first[t];
			queue[tail++] = (int)t;
		}
	}
	return -1;
}

int mig_device_target(const struct mig_device *d, const struct mig_stage_step *st)
{
	return d->cls->target_of ? d->cls->target_of(d, st->stage, st->target) : st->target;
}

int mig_device_next_state(const struct mig_device *d, int target)
{
	if (d->cls->next_state)
		return d->cls->next_state(d, target);
	return shortest_next(d->cls, d->state, target);
}

bool mig_device_has_state(const struct mig_device *d)
{
	return d->cls->ops->save && d->cls->ops->load;
}

int mig_device_save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	if (!d->cls->ops->save)
		return mig_error_set(err, -EOPNOTSUPP, "%s %u: no state to save", d->cls->name,
				     d->id);
	return d->cls->ops->save(d, w, err);
}

int mig_device_load(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	if (!d->cls->ops->load)
		return mig_error_set(err, -EOPNOTSUPP, "%s %u: no state to load", d->cls->name,
				     d->id);
	return d->cls->ops->load(d, r, err);
}

int mig_device_dirty_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
			  struct mig_error *err)
{
	if (!d->cls->dirty_ops)
		return mig_error_set(err, -EOPNOTSUPP, "%s: no dirty tracking", d->cls->name);
	return d->cls->dirty_ops->sync(d, bitmap, ret_count, err);
}

const struct mig_stage_step *mig_device_class_step(const struct mig_device_class *cls,
						   enum mig_stage stage)
{
	const struct mig_stage_step *best = NULL;

	for (unsigned i = 0; i < cls->nr_steps; i++)
		if (cls->steps[i].stage == stage && (!best || cls->steps[i].order < best->order))
			best = &cls->steps[i];
	return best;
}

/* ---- writers and readers over memory ---- */

static int buf_write(struct mig_writer *w, const void *p, size_t n, struct mig_error *err)
{
	struct mig_buf_writer *bw = container_of(w, struct mig_buf_writer, w);
	int r = mig_buf_append(bw->buf, p, n);

	return r < 0 ? mig_error_set(err, r, "out of memory for %zu bytes of state", n) : 0;
}

void mig_buf_writer_init(struct mig_buf_writer *bw, struct mig_buf *buf)
{
	bw->w.write = buf_write;
	bw->buf = buf;
}

static int mem_read(struct mig_reader *r, void *p, size_t n, struct mig_error *err)
{
	struct mig_mem_reader *mr = container_of(r, struct mig_mem_reader, r);

	if (n > mr->len - mr->off)
		return mig_error_set(err, -EBADMSG, "device state ends after %zu of %zu bytes",
				     mr->len, mr->off + n);
	memcpy(p, mr->p + mr->off, n);
	mr->off += n;
	return 0;
}

static uint64_t mem_remaining(const struct mig_reader *r)
{
	const struct mig_mem_reader *mr = container_of(r, const struct mig_mem_reader, r);

	return mr->len - mr->off;
}

void mig_mem_reader_init(struct mig_mem_reader *mr, const void *p, size_t len)
{
	mr->r.read = mem_read;
	mr->r.remaining = mem_remaining;
	mr->p = p;
	mr->len = len;
	mr->off = 0;
}

/* ---- the walker ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct walk_ent {
	struct mig_device *d;
	const struct mig_stage_step *step;
};

/* In LOAD, a device in its class's load_state takes its state now. */
static int walk_load(struct mig_device *d, struct mig_walk *w, struct mig_error *err)
{
	struct mig_reader *rd = w->state_of ? w->state_of(w->state_arg, d) : NULL;
	int r;

	if (!rd)
		r = mig_error_set(err, -ENODATA, "%s %u: no state arrived for it", d->cls->name,
				  d->id);
	else if ((r = mig_device_load(d, rd, err)) < 0)
		mig_error_prefix(err, "%s %u", d->cls->name, d->id);
	if (r < 0 && d->cls->fail_state >= 0 && d->state != d->cls->fail_state &&
	    mig_device_arc_allowed(d->cls, d->state, d->cls->fail_state))
		mig_device_step(d, d->cls->fail_state, NULL);
	return r;
}

static int walk_to(struct mig_device *d, enum mig_stage stage, int target, struct mig_walk *w,
		   struct mig_error *err)
{
	const struct mig_device_class *cls = d->cls;
	bool loaded = false;

	for (;;) {
		struct mig_fault_point fp;
		int next, r;

		if (stage == MIG_STAGE_LOAD && d->state == cls->load_state && !loaded) {
			r = walk_load(d, w, err);
			if (r < 0)
				return r;
			loaded = true;
		}
		if (d->state == target)
			return 0;
		next = mig_device_next_state(d, target);
		if (next < 0)
			return mig_error_set(err, -EINVAL, "%s %u: no way from %s to %s (stage %s)",
					     cls->name, d->id, mig_device_state_name(d),
					     state_name(cls, target), mig_stage_to_string(stage));
		if (w->cancel && atomic_load(w->cancel))
			return mig_error_set(err, -ECANCELED, "cancelled");
		if (w->deadline_ms && now_ms() > w->deadline_ms)
			return mig_error_set(err, -ETIMEDOUT, "%s %u: past the deadline, on the way "
					     "from %s to %s", cls->name, d->id,
					     mig_device_state_name(d), state_name(cls, target));
		if (w->fault) {
			fp = (struct mig_fault_point){
				.kind = MIG_FAULT_DEVICE_STEP, .stage = stage, .dev = d,
				.from = d->state, .to = next,
			};
			r = w->fault(w->fault_arg, &fp, err);
			if (r < 0)
				return r;
		}
		r = mig_device_step(d, next, err);
		if (r < 0)
			return r;
	}
}

int mig_devices_walk(struct mig_device *const *devs, unsigned n, enum mig_stage stage,
		     struct mig_walk *w, struct mig_error *err)
{
	struct walk_ent *ent;
	unsigned nent = 0, cap = 0;
	int r = 0;

	w->failed = NULL;
	for (unsigned i = 0; i < n; i++)
		cap += devs[i]->cls->nr_steps;
	ent = calloc(cap ? cap : 1, sizeof(*ent));
	if (!ent)
		return mig_error_set(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < n; i++) {
		const struct mig_device_class *cls = devs[i]->cls;

		if ((w->filter & MIG_WALK_RAM_WRITERS) && !cls->save_writes_ram)
			continue;
		if ((w->filter & MIG_WALK_OTHERS) && cls->save_writes_ram)
			continue;
		for (unsigned k = 0; k < cls->nr_steps; k++) {
			const struct mig_stage_step *st = &cls->steps[k];
			unsigned at = nent++;

			if (st->stage != stage) {
				nent--;
				continue;
			}
			/* insertion by order; equal orders keep device, then step, order */
			while (at > 0 && ent[at - 1].step->order > st->order) {
				ent[at] = ent[at - 1];
				at--;
			}
			ent[at] = (struct walk_ent){ devs[i], st };
		}
	}
	for (unsigned k = 0; k < nent && r >= 0; k++) {
		r = walk_to(ent[k].d, stage, mig_device_target(ent[k].d, ent[k].step), w, err);
		if (r < 0)
			w->failed = ent[k].d;
	}
	free(ent);
	return r;
}
