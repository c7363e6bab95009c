// SPDX-License-Identifier: MIT
/*
 * The VFIO device class (KERNEL-UAPI.md §1): its stage steps, each arc as
 * one MIG_DEVICE_STATE SET, the data sessions those arcs open and close,
 * pre-copy data, the final state, DMA dirty tracking and what a destination
 * must match.  The device itself is behind a backend (struct vfio_backend):
 * the kernel's, or the sim's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vfio-uapi.h"
#include "vfio.h"
#include <migrate/policy.h>

#include "util.h"

#define ST(x) VFIO_ST_##x
#define CHUNK (1U << 20)

static struct vfio_dev *vdev(struct mig_device *d)
{
	return container_of(d, struct vfio_dev, dev);
}

static const struct vfio_dev *cvdev(const struct mig_device *d)
{
	return container_of(d, const struct vfio_dev, dev);
}

/* ---- VFIO_DEVICE_FEATURE ---- */

/* One feature call with `len` bytes of payload in and out of p. */
static int feature(struct vfio_dev *v, uint32_t flags, void *p, size_t len)
{
	union {
		struct vfio_device_feature f;
		uint8_t b[sizeof(struct vfio_device_feature) + 64];
	} u;
	int r;

	if (len > 64)
		return -EINVAL;
	memset(&u, 0, sizeof(u));
	u.f.argsz = (uint32_t)(sizeof(u.f) + len);
	u.f.flags = flags;
	if (len)
		memcpy(u.f.data, p, len);
	r = v->be->feature(v, &u.f);
	if (len)
		memcpy(p, u.f.data, len);
	return r;
}

static int get_state(struct vfio_dev *v, int *ret)
{
	struct vfio_device_feature_mig_state m = { .data_fd = -1 };
	int r = feature(v, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &m,
			sizeof(m));

	if (r == 0)
		*ret = (int)m.device_state;
	return r;
}

static void session_end(struct vfio_dev *v)
{
	if (v->data_fd >= 0)
		v->be->data_close(v, v->data_fd);
	v->data_fd = -1;
}

/* ---- stepping ---- */

/* ERROR is left only by a reset, which lands in RUNNING with the device's
 * state lost. */
static int reset(struct vfio_dev *v, struct mig_error *err)
{
	int r;

	session_end(v);
	r = v->be->reset(v);
	if (r < 0)
		return mig_error_set(err, r, "vfio %u (%s): reset: %s", v->dev.id, v->label,
				     strerror(-r));
	v->dev.state = ST(RUNNING);
	return 0;
}

static int step(struct mig_device *d, int to, struct mig_error *err)
{
	struct vfio_dev *v = vdev(d);
	struct vfio_device_feature_mig_state m = { .device_state = (uint32_t)to, .data_fd = -1 };
	int from = d->state, now = ST(ERROR), r;

	if (from == ST(ERROR) && to == ST(RUNNING))
		return reset(v, err);
	if (!vfio_arc_direct(v->desc.flags, from, to))
		return mig_error_set(err, -EINVAL, "vfio %u (%s): %s => %s is not an arc of this "
				     "device (flags %#x)", d->id, v->label, vfio_state_name(from),
				     vfio_state_name(to), v->desc.flags);
	r = feature(v, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &m,
		    sizeof(m));
	if (r == 0) {
		if (vfio_arc_opens_session(from, to)) {
			session_end(v);
			v->data_fd = m.data_fd;
			if (v->data_fd < 0)
				return mig_error_set(err, -EPROTO, "vfio %u (%s): %s => %s gave no "
						     "data fd", d->id, v->label,
						     vfio_state_name(from), vfio_state_name(to));
		} else if (m.data_fd >= 0) {
			/* a session we did not ask for: not ours to keep */
			v->be->data_close(v, m.data_fd);
		}
		if ((vfio_state_saving(from) && !vfio_state_saving(to)) || from == ST(RESUMING))
			session_end(v);
		return 0;
	}
	/* The device may be where it was, anywhere on the way, or in ERROR:
	 * ask it (KERNEL-UAPI §1.8). */
	if (get_state(v, &now) < 0 || !vfio_state_exists(v->desc.flags, now))
		now = ST(ERROR);
	mig_error_set(err, r, "vfio %u (%s): %s => %s: %s (the device is now %s)", d->id, v->label,
		      vfio_state_name(from), vfio_state_name(to), strerror(-r),
		      vfio_state_name(now));
	if (vfio_state_saving(from) && !vfio_state_saving(now))
		session_end(v);
	if (from == ST(RESUMING) && now == ST(RESUMING)) {
		/* refused data: a resume session ends only by a reset */
		reset(v, NULL);
		return r;
	}
	d->state = now;
	return r;
}

static int next_state(const struct mig_device *d, int target)
{
	const struct vfio_dev *v = cvdev(d);
	int next;

	if (d->state == ST(ERROR))
		return ST(RUNNING);      /* by a reset, then on from there */
	next = vfio_next_step(v->desc.flags, d->state, target);
	return next < 0 ? -1 : next;
}

/*
 * The stage steps name states a device with every feature has; each
 * device goes to its nearest.  Without P2P the P2P states are skipped
 * (the kernel's rule), without PRE_COPY the pre-copy ones; a device in a
 * pre-copy session keeps it: its P2P quiesce is PRE_COPY_P2P and its stop
 * is STOP_COPY, so the stream it began goes on.
 */
static int target_of(const struct mig_device *d, enum mig_stage stage, int target)
{
	uint32_t f = cvdev(d)->desc.flags;
	int s = d->state;

	switch (target) {
	case ST(PRE_COPY):
		return f & VFIO_F_PRE_COPY ? target : ST(RUNNING);
	case ST(RUNNING_P2P):
		if (stage == MIG_STAGE_QUIESCE && (s == ST(PRE_COPY) || s == ST(PRE_COPY_P2P)))
			return f & VFIO_F_P2P ? ST(PRE_COPY_P2P) : s;
		if (!(f & VFIO_F_P2P))
			return s == ST(PRE_COPY) && stage == MIG_STAGE_QUIESCE ? s : ST(RUNNING);
		/* a rollback: what never stopped goes straight on running */
		if (stage == MIG_STAGE_ROLLBACK && (s == ST(RUNNING) || s == ST(PRE_COPY)))
			return ST(RUNNING);
		return target;
	case ST(STOP):
		if (stage == MIG_STAGE_QUIESCE && vfio_state_saving(s))
			return ST(STOP_COPY);
		return target;
	default:
		return target;
	}
}

/* ---- state: pre-copy and final ---- */

/* Read what the session has, up to `budget` bytes: 0 at its end (EOF in
 * STOP_COPY, nothing for now in PRE_COPY). */
/* The device's transfer buffer, made (and touched) with the device. */
static uint8_t *xfer_buf(struct vfio_dev *v)
{
	return v->buf;
}

static int drain(struct vfio_dev *v, struct mig_writer *w, uint64_t budget, uint64_t *got,
		 struct mig_error *err)
{
	uint8_t *buf = xfer_buf(v);
	int r = 0;

	if (!buf)
		return mig_error_set(err, -ENOMEM, "out of memory");
	*got = 0;
	while (*got < budget) {
		size_t want = budget - *got < CHUNK ? (size_t)(budget - *got) : CHUNK;
		ssize_t n = v->be->data_read(v, v->data_fd, buf, want);

		if (n == -ENOMSG || n == 0)
			break;
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0) {
			r = mig_error_set(err, (int)n, "vfio %u (%s): reading its state in %s: %s",
					  v->dev.id, v->label, vfio_state_name(v->dev.state),
					  strerror((int)-n));
			break;
		}
		r = w->write(w, buf, (size_t)n, err);
		if (r < 0)
			break;
		*got += (uint64_t)n;
	}
	return r;
}

static int save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	struct vfio_dev *v = vdev(d);
	uint64_t got;
	int r;

	if (d->state != ST(STOP_COPY) || v->data_fd < 0)
		return mig_error_set(err, -EPROTO, "vfio %u (%s): saved in %s, not stop_copy", d->id,
				     v->label, vfio_state_name(d->state));
	r = drain(v, w, UINT64_MAX, &got, err);
	v->final_bytes += got;
	return r;
}

/* Write all of r's bytes into the resume session. */
static int feed(struct vfio_dev *v, struct mig_reader *rd, struct mig_error *err)
{
	uint8_t *buf = xfer_buf(v);
	int r = 0;

	if (!buf)
		return mig_error_set(err, -ENOMEM, "out of memory");
	if (v->dev.state != ST(RESUMING) || v->data_fd < 0)
		r = mig_error_set(err, -EPROTO, "vfio %u (%s): state arrived in %s, not resuming",
				  v->dev.id, v->label, vfio_state_name(v->dev.state));
	while (r >= 0 && rd->remaining(rd)) {
		uint64_t left = rd->remaining(rd);
		size_t n = left < CHUNK ? (size_t)left : CHUNK, off = 0;

		r = rd->read(rd, buf, n, err);
		while (r >= 0 && off < n) {
			ssize_t k = v->be->data_write(v, v->data_fd, buf + off, n - off);

			if (k == -EINTR || k == -EAGAIN)
				continue;
			if (k <= 0)
				r = mig_error_set(err, k < 0 ? (int)k : -EIO, "vfio %u (%s): the device "
						  "refused its state: %s", v->dev.id, v->label,
						  k < 0 ? strerror((int)-k) : "wrote nothing");
			else
				off += (size_t)k;
		}
	}
	return r;
}

static int load(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	return feed(vdev(d), r, err);
}

static uint64_t pending(struct mig_device *d)
{
	struct vfio_dev *v = vdev(d);
	struct vfio_precopy_info info = { .argsz = sizeof(info) };

	if ((d->state != ST(PRE_COPY) && d->state != ST(PRE_COPY_P2P)) || v->data_fd < 0 ||
	    v->be->precopy_info(v, v->data_fd, &info) < 0)
		return 0;
	return info.initial_bytes + info.dirty_bytes;
}

static int save_chunk(struct mig_device *d, struct mig_writer *w, uint64_t budget,
		      struct mig_error *err)
{
	struct vfio_dev *v = vdev(d);
	uint64_t got;
	int r;

	if (d->state != ST(PRE_COPY) && d->state != ST(PRE_COPY_P2P))
		return 0;
	r = drain(v, w, budget, &got, err);
	v->precopy_bytes += got;
	return r;
}

static int load_chunk(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	return feed(vdev(d), r, err);
}

/* What its final state will add to the switchover: the device's own
 * estimate (MIG_DATA_SIZE), and all the RAM it reaches when it cannot log
 * its DMA. */
static uint64_t final_size(struct mig_device *d)
{
	struct vfio_dev *v = vdev(d);
	struct vfio_device_feature_mig_data_size ds = { 0 };
	uint64_t bytes = 0;

	if (feature(v, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, &ds,
		    sizeof(ds)) == 0)
		bytes = ds.stop_copy_length;
	if (v->no_log)
		for (unsigned i = 0; i < v->nr_ranges; i++)
			bytes += v->ranges[i].length;
	return bytes;
}

/* ---- DMA dirty tracking (KERNEL-UAPI §1.5) ---- */

static int log_start(struct mig_device *d, struct mig_error *err)
{
	struct vfio_dev *v = vdev(d);
	struct vfio_device_feature_dma_logging_range rg[VFIO_RANGES_MAX];
	struct vfio_device_feature_dma_logging_control c = {
		.page_size = 4096, .num_ranges = v->nr_ranges,
		.ranges = (uintptr_t)rg,
	};
	int r;

	v->no_log = false;
	if (!v->nr_ranges)
		return 0;
	for (unsigned i = 0; i < v->nr_ranges; i++)
		rg[i] = (struct vfio_device_feature_dma_logging_range){ v->ranges[i].iova,
									  v->ranges[i].length };
	r = feature(v, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START, &c,
		    sizeof(c));
	if (r == -ENOTTY || r == -EOPNOTSUPP) {
		v->no_log = true;   /* every page it reaches goes again at the end */
		d->notes |= VFIO_NOTE_NO_LOG;
		return 0;
	}
	if (r < 0)
		return mig_error_set(err, r, "vfio %u (%s): DMA_LOGGING_START: %s", d->id, v->label,
				     strerror(-r));
	v->logging = true;
	v->log_page = c.page_size;
	return 0;
}

static int log_stop(struct mig_device *d, struct mig_error *err)
{
	struct vfio_dev *v = vdev(d);
	int r;

	if (!v->logging)
		return 0;
	v->logging = false;
	r = feature(v, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, NULL, 0);
	if (r < 0)
		return mig_error_set(err, r, "vfio %u (%s): DMA_LOGGING_STOP: %s", d->id, v->label,
				     strerror(-r));
	return 0;
}

/* Every page of its ranges into bitmap; how many. */
static uint64_t mark_ranges(struct vfio_dev *v, uint64_t *bitmap)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < v->nr_ranges; i++)
		for (uint64_t a = v->ranges[i].iova; a < v->ranges[i].iova + v->ranges[i].length;
		     a += 4096, n++)
			bitmap[a / 4096 / 64] |= 1ULL << (a / 4096 % 64);
	return n;
}

/* OR what the device wrote into the RAM bitmap (4 KiB pages from GPA 0). */
static int log_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
		    struct mig_error *err)
{
	struct vfio_dev *v = vdev(d);
	bool stopped = d->state == ST(STOP) || d->state == ST(STOP_COPY);

	*ret_count = 0;
	if (v->no_log) {
		/* It cannot say what it wrote.  Once it is stopped it writes
		 * nothing more, so every page it reaches goes now, with its
		 * final contents. */
		if (stopped)
			*ret_count = mark_ranges(v, bitmap);
		return 0;
	}
	if (!v->logging)
		return 0;
	for (unsigned i = 0; i < v->nr_ranges; i++) {
		const struct vfio_range *rg = &v->ranges[i];
		uint64_t pages = rg->length / 4096, words = (pages + 63) / 64;
		struct vfio_device_feature_dma_logging_report rep;
		int r;

		if (words > v->report_words) {
			uint64_t *b = realloc(v->report, words * 8);

			if (!b)
				return mig_error_set(err, -ENOMEM, "out of memory");
			v->report = b;
			v->report_words = words;
		}
		memset(v->report, 0, words * 8);
		rep = (struct vfio_device_feature_dma_logging_report){
			.iova = rg->iova, .length = rg->length, .page_size = 4096,
			.bitmap = (uintptr_t)v->report,
		};
		r = feature(v, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
			    &rep, sizeof(rep));
		if (r == -EOPNOTSUPP || r == -ENOTTY) {
			/* it started, but cannot report: as if it could not log */
			v->no_log = true;
			d->notes |= VFIO_NOTE_NO_LOG;
			if (stopped)
				*ret_count = mark_ranges(v, bitmap);
			return 0;
		}
		if (r < 0)
			return MIG_DIRTY_LOST;   /* "the log is unreliable": all of RAM */
		for (uint64_t w = 0; w < words; w++) {
			uint64_t bits = v->report[w];

			while (bits) {
				uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
				uint64_t pfn = rg->iova / 4096 + p;

				bits &= bits - 1;
				if (p >= pages)
					break;
				bitmap[pfn / 64] |= 1ULL << (pfn % 64);
				(*ret_count)++;
			}
		}
	}
	return 0;
}

/* ---- compatibility ---- */

static int describe(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	const struct vfio_dev *v = vdev(d);

	if (mig_buf_append(out, &v->desc, sizeof(v->desc)) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static const char *region_name(unsigned i)
{
	static const char *const n[VFIO_DESC_REGIONS] = {
		"BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "config space", "VGA",
	};
	return i < VFIO_DESC_REGIONS ? n[i] : "region";
}

_Static_assert(VFIO_REGION_PREFETCH == COMPAT_BAR_PREFETCH && VFIO_REGION_WC == COMPAT_BAR_WC,
	       "region attributes are the policy's");

static const char *const policies[] = { "vfio-device", "vfio-bars", NULL };

/* policies[0]: the same device (type, model, migration flags, regions);
 * policies[1]: each BAR keeps its prefetchable bit and its write-combining
 * mapping (policies: compat_vfio_bar()). */
static int check_one(struct mig_device *d, const void *p, size_t n, unsigned policy,
		     struct mig_error *err)
{
	const struct vfio_dev *v = vdev(d);
	const struct vfio_desc *o = &v->desc;
	struct vfio_desc s;

	if (n != sizeof(s))
		return mig_error_set(err, -EBADMSG, "a description of %zu bytes, %zu expected", n,
				     sizeof(s));
	memcpy(&s, p, sizeof(s));
	if (memchr(s.mdev_type, 0, sizeof(s.mdev_type)) == NULL)
		return mig_error_set(err, -EBADMSG, "its mdev type is not a string");
	if (policy == 1) {
		for (unsigned i = 0; i < s.nr_regions && i < o->nr_regions &&
		     i < VFIO_DESC_REGIONS; i++) {
			int r = compat_vfio_bar(region_name(i), s.regions[i].attrs,
						o->regions[i].attrs, err);

			if (r < 0)
				return r;
		}
		return 0;
	}
	if (strcmp(s.mdev_type, o->mdev_type))
		return mig_error_set(err, -ENODEV, "mdev type: the source's is '%s', this host's "
				     "'%s': give the VM a device of the same type here",
				     s.mdev_type, o->mdev_type);
	if (s.vendor != o->vendor || s.device != o->device || s.subvendor != o->subvendor ||
	    s.subdevice != o->subdevice)
		return mig_error_set(err, -ENODEV, "PCI ID: the source's is %04x:%04x (%04x:%04x), "
				     "this host's %04x:%04x (%04x:%04x): give the VM the same "
				     "model here", s.vendor, s.device, s.subvendor, s.subdevice,
				     o->vendor, o->device, o->subvendor, o->subdevice);
	if (s.flags != o->flags)
		return mig_error_set(err, -ENODEV, "migration flags: the source's device has %#x, "
				     "this host's %#x (STOP_COPY 1, P2P 2, PRE_COPY 4): the same "
				     "driver on both hosts", s.flags, o->flags);
	if (s.nr_regions != o->nr_regions)
		return mig_error_set(err, -ENODEV, "regions: the source's device has %u, this "
				     "host's %u", s.nr_regions, o->nr_regions);
	for (unsigned i = 0; i < s.nr_regions && i < VFIO_DESC_REGIONS; i++) {
		const struct vfio_desc_region *a = &s.regions[i], *b = &o->regions[i];

		if (a->size != b->size)
			return mig_error_set(err, -ENODEV, "%s size: %llu bytes on the source, %llu "
					     "here", region_name(i), (unsigned long long)a->size,
					     (unsigned long long)b->size);
		if (a->flags != b->flags)
			return mig_error_set(err, -ENODEV, "%s flags: %#x on the source, %#x here",
					     region_name(i), a->flags, b->flags);
	}
	return 0;
}

static int check(struct mig_device *d, const void *p, size_t n, struct mig_error *err)
{
	for (unsigned i = 0; policies[i]; i++) {
		int r = check_one(d, p, n, i, err);

		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- the class ---- */

/* Every arc some device has (the union over the feature sets; the table
 * test checks it against vfio_arc_direct()), and the reset out of ERROR.
 * Which of them a given device has is next_state()'s business. */
#define A(f, t) [ST(f) * VFIO_ST_N + ST(t)] = true
static const bool arcs[VFIO_ST_N * VFIO_ST_N] = {
	A(STOP, RUNNING), A(STOP, STOP_COPY), A(STOP, RESUMING), A(STOP, RUNNING_P2P),
	A(RUNNING, STOP), A(RUNNING, RUNNING_P2P), A(RUNNING, PRE_COPY),
	A(STOP_COPY, STOP),
	A(RESUMING, STOP),
	A(RUNNING_P2P, RUNNING), A(RUNNING_P2P, STOP), A(RUNNING_P2P, PRE_COPY_P2P),
	A(PRE_COPY, RUNNING), A(PRE_COPY, STOP_COPY), A(PRE_COPY, PRE_COPY_P2P),
	A(PRE_COPY_P2P, PRE_COPY), A(PRE_COPY_P2P, RUNNING_P2P), A(PRE_COPY_P2P, STOP_COPY),
	A(ERROR, RUNNING),
};
#undef A

static const struct mig_stage_step steps[] = {
	{ MIG_STAGE_TRACK, 5, ST(PRE_COPY) },
	{ MIG_STAGE_QUIESCE, 0, ST(RUNNING_P2P) },   /* every device, before the vCPUs */
	{ MIG_STAGE_QUIESCE, 20, ST(STOP) },         /* after them */
	{ MIG_STAGE_SAVE, 10, ST(STOP_COPY) },
	{ MIG_STAGE_RELEASE, 0, ST(STOP) },
	{ MIG_STAGE_ROLLBACK, 15, ST(RUNNING_P2P) }, /* all, before any runs */
	{ MIG_STAGE_ROLLBACK, 20, ST(RUNNING) },
	{ MIG_STAGE_RECEIVE, 0, ST(RESUMING) },
	{ MIG_STAGE_LOAD, 5, ST(STOP) },             /* the device checks what it got */
	{ MIG_STAGE_START, 5, ST(RUNNING_P2P) },
	{ MIG_STAGE_START, 20, ST(RUNNING) },        /* all, before the vCPUs (30) */
	{ MIG_STAGE_DISCARD, 0, ST(RUNNING) },
};

static const struct mig_device_ops ops = {
	.step = step, .save = save, .load = load, .final_size = final_size,
};
static const struct mig_precopy_ops precopy_ops = {
	.pending = pending, .save_chunk = save_chunk, .load_chunk = load_chunk,
};
static const struct mig_dirty_ops dirty_ops = {
	.start = log_start, .sync = log_sync, .stop = log_stop,
};
static const struct mig_compat_ops compat_ops = {
	.describe = describe, .check = check, .policies = policies, .check_one = check_one,
};

static const char *const note_names[] = { "no-p2p", "no-dma-log" };

const struct mig_device_class vfio_class = {
	.id = MIG_DEV_VFIO, .name = "vfio", .version = 1,
	.no_postcopy = "its device writes guest RAM by DMA, which cannot wait for a missing page",
	.nr_states = VFIO_ST_N, .state_names = vfio_state_names, .arcs = arcs,
	.next_state = next_state, .target_of = target_of,
	.steps = steps, .nr_steps = ARRAY_SIZE(steps),
	.load_state = ST(RESUMING), .fail_state = -1,
	.ops = &ops, .precopy_ops = &precopy_ops, .dirty_ops = &dirty_ops,
	.compat_ops = &compat_ops,
	.note_names = note_names, .nr_notes = ARRAY_SIZE(note_names),
};

int vfio_dev_init(struct vfio_dev *v, unsigned id, const struct vfio_backend *be, void *be_data,
		  const char *label, struct mig_error *err)
{
	struct vfio_device_feature_migration mf = { 0 };
	int r, state = -1;

	memset(v, 0, sizeof(*v));
	v->be = be;
	v->be_data = be_data;
	v->data_fd = -1;
	snprintf(v->label, sizeof(v->label), "%s", label);
	r = feature(v, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, &mf, sizeof(mf));
	if (r == -ENOTTY)
		return mig_error_set(err, r, "vfio %u (%s): the device cannot migrate (its driver "
				     "has no migration support)", id, label);
	if (r < 0)
		return mig_error_set(err, r, "vfio %u (%s): VFIO_DEVICE_FEATURE_MIGRATION: %s", id,
				     label, strerror(-r));
	if (!(mf.flags & VFIO_F_STOP_COPY) || (mf.flags & ~(uint64_t)VFIO_F_KNOWN))
		return mig_error_set(err, -ENOTSUP, "vfio %u (%s): migration flags %#llx: this "
				     "build knows STOP_COPY, P2P and PRE_COPY", id, label,
				     (unsigned long long)mf.flags);
	v->desc.flags = (uint32_t)mf.flags;
	r = get_state(v, &state);
	if (r < 0)
		return mig_error_set(err, r, "vfio %u (%s): reading its migration state: %s", id,
				     label, strerror(-r));
	if (!vfio_state_exists(v->desc.flags, state))
		return mig_error_set(err, -EPROTO, "vfio %u (%s): in state %d", id, label, state);
	/* touched now, so a switchover does not wait for its pages */
	v->buf = malloc(CHUNK);
	if (!v->buf)
		return mig_error_set(err, -ENOMEM, "out of memory");
	memset(v->buf, 0, CHUNK);
	mig_device_init(&v->dev, &vfio_class, id, state);
	if (!(v->desc.flags & VFIO_F_P2P))
		v->dev.notes |= VFIO_NOTE_NO_P2P;
	return 0;
}

void vfio_dev_fini(struct vfio_dev *v)
{
	if (!v->be)
		return;   /* never set up */
	if (v->logging)
		log_stop(&v->dev, NULL);
	session_end(v);
	free(v->report);
	v->report = NULL;
	free(v->buf);
	v->buf = NULL;
}
