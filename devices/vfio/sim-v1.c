// SPDX-License-Identifier: MIT
/*
 * The VFIO migration protocol v1 (the 2020 series, removed from the kernel
 * in 5.18; KERNEL-UAPI.md §1.9), as a second sim flavour.
 *
 * The device: a migration region whose first bytes are
 * struct vfio_device_migration_info { u32 device_state; u32 reserved;
 * u64 pending_bytes; u64 data_offset; u64 data_size; } and a data area
 * after it.  device_state holds _RUNNING, _SAVING and _RESUMING (bits 0-2;
 * 101 and 111 are invalid, 110 is the error state, bits 3-31 are kept by
 * read-modify-write).  Saving: reading pending_bytes starts an iteration
 * (0: nothing more), then data_offset and data_size say where the chunk
 * is.  Resuming: read data_offset, write the data there, write data_size.
 * Behind the region the same device as the v2 sim does the work.
 *
 * The backend: what the VFIO class asks (the v2 uAPI) carried out on that
 * region, so that a v1 device moves through the class's state machine
 * next to v2 devices: RUNNING 001, STOP 000, PRE_COPY 011, STOP_COPY 010,
 * RESUMING 100, ERROR 110; flags STOP_COPY | PRE_COPY (v1 has no P2P), no
 * DMA log of its own (v1 left dirty pages to the IOMMU container, which
 * for a real device reports all it maps), no size estimate.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "vfio-uapi.h"
#include "sim.h"
#include "util.h"

#define ST(x) VFIO_ST_##x
#define V1_RUNNING  VFIO_DEVICE_STATE_V1_RUNNING
#define V1_SAVING   VFIO_DEVICE_STATE_V1_SAVING
#define V1_RESUMING VFIO_DEVICE_STATE_V1_RESUMING
#define V1_MASK     (V1_RUNNING | V1_SAVING | V1_RESUMING)
#define V1_ERROR    (V1_SAVING | V1_RESUMING)
#define DATA_AT     4096U
#define DATA_BYTES  (1U << 20)
#define V1_FD       3000

_Static_assert(sizeof(struct vfio_device_migration_info) == 32, "v1 region header");

/* ---- the device: its region ---- */

static int v1_of_v2(int st)
{
	switch (st) {
	case ST(RUNNING): return V1_RUNNING;
	case ST(STOP): return 0;
	case ST(PRE_COPY): return V1_SAVING | V1_RUNNING;
	case ST(STOP_COPY): return V1_SAVING;
	case ST(RESUMING): return V1_RESUMING;
	default: return V1_ERROR;
	}
}

static int v2_of_v1(uint32_t bits)
{
	switch (bits & V1_MASK) {
	case V1_RUNNING: return ST(RUNNING);
	case 0: return ST(STOP);
	case V1_SAVING | V1_RUNNING: return ST(PRE_COPY);
	case V1_SAVING: return ST(STOP_COPY);
	case V1_RESUMING: return ST(RESUMING);
	default: return ST(ERROR);
	}
}

/* Ask the device inside for `v2`; a new session's fd is kept. */
static int inner_set(struct vfio_sim_v1 *s, int v2)
{
	union {
		struct vfio_device_feature f;
		uint8_t b[sizeof(struct vfio_device_feature) + 8];
	} u = { .f = { .argsz = sizeof(u),
		       .flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE } };
	struct vfio_device_feature_mig_state m = { .device_state = (uint32_t)v2, .data_fd = -1 };
	int r;

	memcpy(u.f.data, &m, sizeof(m));
	r = vfio_sim_backend.feature(&s->inner_dev, &u.f);
	memcpy(&m, u.f.data, sizeof(m));
	if (r == 0 && m.data_fd >= 0)
		s->inner_fd = m.data_fd;
	return r;
}

static int device_state_write(struct vfio_sim_v1 *s, uint32_t val)
{
	uint32_t bits = val & V1_MASK;
	int r;

	if (bits == (V1_RESUMING | V1_RUNNING) || bits == V1_MASK)
		return -EINVAL;       /* 101, 111 */
	if (bits == V1_ERROR)
		return -EINVAL;       /* the device's to set, not the user's */
	if ((s->device_state & V1_MASK) == V1_ERROR)
		return -EINVAL;       /* only a reset leaves it */
	r = inner_set(s, v2_of_v1(bits));
	/* where the device inside ended is where this one is */
	s->device_state = (val & ~V1_MASK) | (uint32_t)v1_of_v2(s->sim.state);
	/* pre-copy into stop-and-copy is one stream: a chunk not yet taken
	 * stays; leaving the saving states ends it */
	if (!(s->device_state & V1_SAVING)) {
		s->chunk = 0;
		s->taken = 0;
	}
	return r;
}

/* Reading pending_bytes: the next chunk of the stream into the data area. */
static int pending_read(struct vfio_sim_v1 *s, uint64_t *ret)
{
	ssize_t n;

	if (!(s->device_state & V1_SAVING) || (s->device_state & V1_RESUMING))
		return -EINVAL;
	if (!s->chunk) {
		n = vfio_sim_backend.data_read(&s->inner_dev, s->inner_fd, s->area, DATA_BYTES);
		if (n == -ENOMSG)
			n = 0;
		if (n < 0)
			return (int)n;
		s->chunk = (uint64_t)n;
		s->iteration = true;
	}
	*ret = s->chunk;
	return 0;
}

int vfio_sim_v1_region_read(struct vfio_sim_v1 *s, uint64_t off, void *buf, size_t n)
{
	uint64_t v = 0;
	int r = 0;

	if (off >= DATA_AT) {
		if (off - DATA_AT > DATA_BYTES || n > DATA_BYTES - (off - DATA_AT))
			return -EINVAL;
		memcpy(buf, s->area + (off - DATA_AT), n);
		if (s->iteration && off - DATA_AT + n >= s->chunk)
			s->chunk = 0;   /* taken: the next pending_bytes read starts anew */
		return 0;
	}
	switch (off) {
	case offsetof(struct vfio_device_migration_info, device_state):
		if (n != 4)
			return -EINVAL;
		memcpy(buf, &s->device_state, 4);
		return 0;
	case offsetof(struct vfio_device_migration_info, pending_bytes):
		r = pending_read(s, &v);
		break;
	case offsetof(struct vfio_device_migration_info, data_offset):
		v = DATA_AT;
		break;
	case offsetof(struct vfio_device_migration_info, data_size):
		if (!(s->device_state & V1_SAVING))
			return -EINVAL;
		v = s->chunk;
		break;
	default:
		return -EINVAL;
	}
	if (r == 0 && n != 8)
		r = -EINVAL;
	if (r == 0)
		memcpy(buf, &v, 8);
	return r;
}

int vfio_sim_v1_region_write(struct vfio_sim_v1 *s, uint64_t off, const void *buf, size_t n)
{
	uint64_t v;

	if (off >= DATA_AT) {
		if (!(s->device_state & V1_RESUMING) || off - DATA_AT > DATA_BYTES ||
		    n > DATA_BYTES - (off - DATA_AT))
			return -EINVAL;
		memcpy(s->area + (off - DATA_AT), buf, n);
		return 0;
	}
	if (off == offsetof(struct vfio_device_migration_info, device_state) && n == 4) {
		uint32_t val;

		memcpy(&val, buf, 4);
		return device_state_write(s, val);
	}
	if (off != offsetof(struct vfio_device_migration_info, data_size) || n != 8)
		return -EINVAL;
	/* writing data_size hands the data area's first bytes to the device,
	 * consumed before the write returns */
	memcpy(&v, buf, 8);
	if ((s->device_state & V1_MASK) != V1_RESUMING || v > DATA_BYTES)
		return -EINVAL;
	for (uint64_t at = 0; at < v;) {
		ssize_t k = vfio_sim_backend.data_write(&s->inner_dev, s->inner_fd, s->area + at,
							v - at);

		if (k <= 0)
			return k < 0 ? (int)k : -EIO;
		at += (uint64_t)k;
	}
	return 0;
}

/* ---- the backend: the class's v2 requests on the v1 region ---- */

static struct vfio_sim_v1 *v1_of(struct vfio_dev *v)
{
	return v->be_data;
}

static int state_bits(struct vfio_sim_v1 *s, uint32_t *ret)
{
	return vfio_sim_v1_region_read(s, offsetof(struct vfio_device_migration_info,
						   device_state), ret, 4);
}

/* One class arc as a read-modify-write of device_state. */
static int v1_arc(struct vfio_sim_v1 *s, int to)
{
	uint32_t val;
	int r = state_bits(s, &val);

	if (r < 0)
		return r;
	val = (val & ~(uint32_t)V1_MASK) | (uint32_t)v1_of_v2(to);
	return vfio_sim_v1_region_write(s, offsetof(struct vfio_device_migration_info,
						    device_state), &val, 4);
}

static int v1_feature(struct vfio_dev *v, struct vfio_device_feature *f)
{
	struct vfio_sim_v1 *s = v1_of(v);
	const uint32_t flags = VFIO_F_STOP_COPY | VFIO_F_PRE_COPY;
	struct vfio_device_feature_mig_state m;
	uint32_t bits;
	int r, from, to;

	if (f->argsz < sizeof(*f) + 8)
		return -EINVAL;
	switch (f->flags & VFIO_DEVICE_FEATURE_MASK) {
	case VFIO_DEVICE_FEATURE_MIGRATION:
		if (f->flags != (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION))
			return -EINVAL;
		memcpy(f->data, &(struct vfio_device_feature_migration){ .flags = flags }, 8);
		return 0;
	case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
		memcpy(&m, f->data, sizeof(m));
		r = state_bits(s, &bits);
		if (r < 0)
			return r;
		from = v2_of_v1(bits);
		if (f->flags & VFIO_DEVICE_FEATURE_GET) {
			m = (struct vfio_device_feature_mig_state){ (uint32_t)from, -1 };
			memcpy(f->data, &m, sizeof(m));
			return 0;
		}
		to = (int)m.device_state;
		m.data_fd = -1;
		/* the core's walk, one v1 state write per arc */
		while (r == 0 && from != to) {
			int next = vfio_next_step(flags, from, to);

			if (next < 0) {
				r = -EINVAL;
				break;
			}
			r = v1_arc(s, next);
			if (r == 0 && vfio_arc_opens_session(from, next))
				m.data_fd = V1_FD + s->sessions++;
			from = next;
		}
		if (m.data_fd >= 0)
			s->fd = m.data_fd;
		memcpy(f->data, &m, sizeof(m));
		return r;
	default:
		return -ENOTTY;   /* no DMA log, no size estimate */
	}
}

static ssize_t v1_read(struct vfio_dev *v, int fd, void *buf, size_t n)
{
	struct vfio_sim_v1 *s = v1_of(v);
	uint64_t pending, at, size;
	int r;

	if (fd != s->fd)
		return -EBADF;
	r = vfio_sim_v1_region_read(s, offsetof(struct vfio_device_migration_info,
						pending_bytes), &pending, 8);
	if (r < 0)
		return r;
	if (!pending)
		return (s->device_state & V1_RUNNING) ? -ENOMSG : 0;
	vfio_sim_v1_region_read(s, offsetof(struct vfio_device_migration_info, data_offset), &at,
				8);
	vfio_sim_v1_region_read(s, offsetof(struct vfio_device_migration_info, data_size), &size,
				8);
	/* the rest of this iteration's chunk */
	if (size > n)
		size = n;
	at += s->taken;
	if (s->taken + size > s->chunk)
		size = s->chunk - s->taken;
	r = vfio_sim_v1_region_read(s, at, buf, size);
	if (r < 0)
		return r;
	s->taken += size;
	if (s->taken >= s->chunk)
		s->taken = 0;
	return (ssize_t)size;
}

static ssize_t v1_write(struct vfio_dev *v, int fd, const void *buf, size_t n)
{
	struct vfio_sim_v1 *s = v1_of(v);
	uint64_t at, size = n < DATA_BYTES ? n : DATA_BYTES;
	int r;

	if (fd != s->fd)
		return -EBADF;
	r = vfio_sim_v1_region_read(s, offsetof(struct vfio_device_migration_info, data_offset),
				    &at, 8);
	if (r == 0)
		r = vfio_sim_v1_region_write(s, at, buf, size);
	if (r == 0)
		r = vfio_sim_v1_region_write(s, offsetof(struct vfio_device_migration_info,
							 data_size), &size, 8);
	return r < 0 ? r : (ssize_t)size;
}

static int v1_precopy_info(struct vfio_dev *v, int fd, struct vfio_precopy_info *info)
{
	struct vfio_sim_v1 *s = v1_of(v);
	uint64_t pending;
	int r;

	if (fd != s->fd)
		return -EBADF;
	if ((s->device_state & V1_MASK) != (V1_SAVING | V1_RUNNING))
		return -EINVAL;
	/* v1 says only what is pending; it is not told apart */
	r = vfio_sim_v1_region_read(s, offsetof(struct vfio_device_migration_info,
						pending_bytes), &pending, 8);
	if (r < 0)
		return r;
	info->initial_bytes = 0;
	info->dirty_bytes = pending - s->taken;
	return 0;
}

static void v1_close(struct vfio_dev *v, int fd)
{
	struct vfio_sim_v1 *s = v1_of(v);

	if (fd == s->fd)
		s->fd = -1;
}

static int v1_reset(struct vfio_dev *v)
{
	struct vfio_sim_v1 *s = v1_of(v);
	int r = vfio_sim_backend.reset(&s->inner_dev);

	s->device_state = (s->device_state & ~(uint32_t)V1_MASK) | V1_RUNNING;
	s->chunk = 0;
	s->taken = 0;
	s->fd = -1;
	return r;
}

const struct vfio_backend vfio_sim_v1_backend = {
	.name = "sim-v1", .feature = v1_feature, .data_read = v1_read, .data_write = v1_write,
	.precopy_info = v1_precopy_info, .data_close = v1_close, .reset = v1_reset,
};

int vfio_sim_v1_init(struct vfio_sim_v1 *s, const struct vfio_sim_opts *o, struct mig_error *err)
{
	struct vfio_sim_opts inner = *o;
	int r;

	memset(s, 0, sizeof(*s));
	inner.flags = VFIO_F_STOP_COPY | VFIO_F_PRE_COPY;
	inner.no_log = true;
	r = vfio_sim_init(&s->sim, &inner, err);
	if (r < 0)
		return r;
	s->area = calloc(1, DATA_BYTES);
	if (!s->area) {
		vfio_sim_fini(&s->sim);
		return mig_error_set(err, -ENOMEM, "out of memory");
	}
	s->inner_dev.be = &vfio_sim_backend;
	s->inner_dev.be_data = &s->sim;
	s->inner_fd = -1;
	s->fd = -1;
	s->device_state = 0xf0000000U | V1_RUNNING;   /* reserved bits the user must keep */
	return 0;
}

void vfio_sim_v1_fini(struct vfio_sim_v1 *s)
{
	vfio_sim_fini(&s->sim);
	free(s->area);
	s->area = NULL;
}
