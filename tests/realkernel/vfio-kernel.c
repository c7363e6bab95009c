// SPDX-License-Identifier: MIT
/*
 * The VFIO class's kernel backend against a real kernel: run inside a QEMU
 * guest (tests/realkernel/run-vfio-kernel.sh) whose kernel has the mtty
 * sample driver, with two mtty mdevs.  Through the class code it drives
 * the devices through every arc the driver implements, moves one device's
 * state to the other, feeds a device damaged state, and starts DMA
 * logging.  Prints "RK-PASS name" or "RK-FAIL name: why" per check and
 * "RK-DONE passed P failed F" at the end.
 *
 * usage: vfio-kernel SYSFS_DEV_A SYSFS_DEV_B
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <migrate/device.h>

#include "vfio/kernel.h"
#include "vfio/vfio-uapi.h"
#include "rk.h"

/* The device's state as the kernel says it. */
static int kernel_state(struct vfio_dev *v)
{
	union {
		struct vfio_device_feature f;
		uint8_t b[sizeof(struct vfio_device_feature) + 8];
	} u = { .f = { .argsz = sizeof(u),
		       .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE } };
	struct vfio_device_feature_mig_state m;

	if (vfio_kernel_backend.feature(v, &u.f) < 0)
		return -1;
	memcpy(&m, u.f.data, sizeof(m));
	return (int)m.device_state;
}

/* Take the device to `to` one class step at a time. */
static int go(struct vfio_dev *v, int to, struct mig_error *err)
{
	while (v->dev.state != to) {
		int next = mig_device_next_state(&v->dev, to);
		int r;

		if (next < 0)
			return mig_error_set(err, -EINVAL, "no way from %s to %s",
					     vfio_state_name(v->dev.state), vfio_state_name(to));
		r = mig_device_step(&v->dev, next, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int walk(struct vfio_dev *v, enum mig_stage stage, struct mig_buf *state,
		struct mig_error *err);

static struct mig_buf *walk_state;

static struct mig_reader *state_of(void *arg, struct mig_device *d)
{
	static struct mig_mem_reader rd;

	(void)arg; (void)d;
	mig_mem_reader_init(&rd, walk_state->data, walk_state->len);
	return &rd.r;
}

static int walk(struct vfio_dev *v, enum mig_stage stage, struct mig_buf *state,
		struct mig_error *err)
{
	struct mig_device *d = &v->dev;
	struct mig_walk w = { .state_of = state_of };

	walk_state = state;
	return mig_devices_walk(&d, 1, stage, &w, err);
}

/* Every arc the driver implements, each checked against the kernel's own
 * GET.  RESUMING -> STOP needs a stream, so the state move covers it. */
static void arc_tour(struct vfio_dev *v)
{
	char name[64];

	for (int a = 1; a < VFIO_ST_N; a++) {
		for (int b = 1; b < VFIO_ST_N; b++) {
			struct mig_error err = { 0 };
			int r, now;

			if (!vfio_arc_direct(v->desc.flags, a, b) || (a == VFIO_ST_RESUMING))
				continue;
			snprintf(name, sizeof(name), "arc %s>%s", vfio_state_name(a),
				 vfio_state_name(b));
			/* from where a is out of reach (STOP_COPY to the pre-copy
			 * states), by way of RUNNING */
			r = mig_device_next_state(&v->dev, a) < 0 && v->dev.state != a ?
			    go(v, VFIO_ST_RUNNING, &err) : 0;
			if (r == 0)
				r = go(v, a, &err);
			if (r == 0)
				r = mig_device_step(&v->dev, b, &err);
			now = kernel_state(v);
			result(r == 0 && now == b, name, "%s (the kernel says %d)",
			       r < 0 ? err.msg : "", now);
			if (r < 0) {
				/* back to a known place for the next arc */
				mig_error_clear(&err);
				walk(v, MIG_STAGE_ROLLBACK, NULL, &err);
			}
			if (r == 0 && b == VFIO_ST_RESUMING) {
				/* leaving RESUMING with no stream: the driver refuses,
				 * and the class resets the device */
				mig_error_clear(&err);
				r = go(v, VFIO_ST_STOP, &err);
				now = kernel_state(v);
				result(r < 0 && strstr(err.msg, "resuming => stop") &&
				       v->dev.state == VFIO_ST_RUNNING && now == VFIO_ST_RUNNING,
				       "an empty stream is refused, the device reset",
				       "%d: %s (the kernel says %d)", r, err.msg, now);
			}
		}
	}
	{
		struct mig_error err = { 0 };
		int r = go(v, VFIO_ST_RUNNING, &err);

		result(r == 0 && kernel_state(v) == VFIO_ST_RUNNING, "tour ends running", "%s",
		       err.msg);
	}
}

/* Pre-copy data and the final state of a, into b, through the class. */
static void move_state(struct vfio_dev *a, struct vfio_dev *b)
{
	const struct mig_precopy_ops *pre = vfio_class.precopy_ops;
	struct mig_buf pc = { 0 }, fin = { 0 };
	struct mig_buf_writer bw;
	struct mig_mem_reader rd;
	struct mig_error err = { 0 };
	uint64_t pending;
	int r;

	r = walk(a, MIG_STAGE_TRACK, NULL, &err);
	result(r == 0 && kernel_state(a) == VFIO_ST_PRE_COPY, "source to pre-copy", "%s",
	       err.msg);
	pending = pre->pending(&a->dev);
	result(pending > 0, "PRECOPY_INFO says what is pending", "%llu bytes",
	       (unsigned long long)pending);
	mig_buf_writer_init(&bw, &pc);
	r = pre->save_chunk(&a->dev, &bw.w, 1 << 20, &err);
	result(r == 0 && pc.len > 0, "pre-copy data read to ENOMSG", "%s (%zu bytes)", err.msg,
	       pc.len);
	r = walk(b, MIG_STAGE_RECEIVE, NULL, &err);
	result(r == 0 && kernel_state(b) == VFIO_ST_RESUMING, "destination resuming", "%s",
	       err.msg);
	mig_mem_reader_init(&rd, pc.data, pc.len);
	r = pre->load_chunk(&b->dev, &rd.r, &err);
	result(r == 0, "pre-copy data written", "%s", err.msg);
	r = walk(a, MIG_STAGE_QUIESCE, NULL, &err);
	if (r == 0)
		r = walk(a, MIG_STAGE_SAVE, NULL, &err);
	result(r == 0 && kernel_state(a) == VFIO_ST_STOP_COPY,
	       "source to stop-copy through pre_copy_p2p", "%s", err.msg);
	mig_buf_writer_init(&bw, &fin);
	r = vfio_class.ops->save(&a->dev, &bw.w, &err);
	result(r == 0, "final state read to EOF", "%s (%zu bytes)", err.msg, fin.len);
	r = walk(b, MIG_STAGE_LOAD, &fin, &err);
	result(r == 0 && kernel_state(b) == VFIO_ST_STOP, "destination took the state", "%s",
	       err.msg);
	r = walk(b, MIG_STAGE_START, NULL, &err);
	result(r == 0 && kernel_state(b) == VFIO_ST_RUNNING, "destination running", "%s",
	       err.msg);
	r = walk(a, MIG_STAGE_RELEASE, NULL, &err);
	if (r == 0)
		r = walk(a, MIG_STAGE_ROLLBACK, NULL, &err);
	result(r == 0 && kernel_state(a) == VFIO_ST_RUNNING, "source back to running", "%s",
	       err.msg);
	mig_buf_free(&pc);
	mig_buf_free(&fin);
}

/* A damaged stream is refused where the device checks it, and the device
 * comes back. */
static void damaged_state(struct vfio_dev *a, struct vfio_dev *b)
{
	struct mig_buf fin = { 0 };
	struct mig_buf_writer bw;
	struct mig_error err = { 0 };
	int r;

	r = go(a, VFIO_ST_STOP_COPY, &err);
	mig_buf_writer_init(&bw, &fin);
	if (r == 0)
		r = vfio_class.ops->save(&a->dev, &bw.w, &err);
	result(r == 0 && fin.len > 0, "a second stream from stop", "%s", err.msg);
	if (fin.len)
		fin.data[0] ^= 0xff;
	r = walk(b, MIG_STAGE_RECEIVE, NULL, &err);
	if (r == 0)
		r = walk(b, MIG_STAGE_LOAD, &fin, &err);
	/* mtty checks as the stream is written, others when it ends */
	result(r == -EFAULT && (strstr(err.msg, "resuming => stop") ||
				strstr(err.msg, "refused its state")), "damaged state refused",
	       "walk gave %d: %s", r, err.msg);
	printf("RK-INFO damaged state: %s\n", err.msg);
	mig_error_clear(&err);
	r = walk(b, MIG_STAGE_DISCARD, NULL, &err);
	result(r == 0 && kernel_state(b) == VFIO_ST_RUNNING, "refused device runs again", "%s",
	       err.msg);
	mig_error_clear(&err);
	r = go(a, VFIO_ST_RUNNING, &err);
	result(r == 0, "source back", "%s", err.msg);
	mig_buf_free(&fin);
}

/* DMA logging: START and STOP reach the driver; a REPORT the kernel cannot
 * give (EOPNOTSUPP without IOMMUFD) makes the class take every page the
 * device reaches once it is stopped. */
static void dma_log(struct vfio_dev *a)
{
	const struct mig_dirty_ops *log = vfio_class.dirty_ops;
	static uint64_t bitmap[(64 << 20) / 4096 / 64];
	struct mig_error err = { 0 };
	uint64_t count = 0;
	int r;

	a->ranges[0] = (struct vfio_range){ 0, 64 << 20 };
	a->nr_ranges = 1;
	r = log->start(&a->dev, &err);
	printf("RK-INFO DMA_LOGGING_START: %s, logging %d, no_log %d\n", r ? err.msg : "ok",
	       a->logging, a->no_log);
	result(r == 0, "logging start answered", "%s", err.msg);
	r = log->sync(&a->dev, bitmap, &count, &err);
	result(r == 0, "a running sync", "%d: %s", r, err.msg);
	printf("RK-INFO after a sync: no_log %d, notes %#x, %llu pages\n", a->no_log,
	       a->dev.notes, (unsigned long long)count);
	if (a->no_log) {
		r = go(a, VFIO_ST_STOP, &err);
		if (r == 0)
			r = log->sync(&a->dev, bitmap, &count, &err);
		result(r == 0 && count == (64 << 20) / 4096, "no log: all it reaches, once stopped",
		       "%d %s, %llu pages", r, err.msg, (unsigned long long)count);
		go(a, VFIO_ST_RUNNING, &err);
	}
	r = log->stop(&a->dev, &err);
	result(r == 0, "logging stop", "%s", err.msg);
}

int main(int argc, char **argv)
{
	struct vfio_kernel ka, kb;
	struct vfio_dev a, b;
	struct vfio_desc da = { 0 }, db = { 0 };
	struct mig_error err = { 0 };
	struct mig_buf desc = { 0 };
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: vfio-kernel SYSFS_DEV_A SYSFS_DEV_B\n");
		return 2;
	}
	r = vfio_kernel_open(&ka, argv[1], &err);
	if (r == 0)
		r = vfio_kernel_open(&kb, argv[2], &err);
	result(r == 0, "open two mdevs", "%s", err.msg);
	if (r < 0)
		goto done;
	r = vfio_dev_init(&a, 0, &vfio_kernel_backend, &ka, ka.name, &err);
	if (r == 0)
		r = vfio_dev_init(&b, 1, &vfio_kernel_backend, &kb, kb.name, &err);
	result(r == 0 && a.desc.flags == (VFIO_F_STOP_COPY | VFIO_F_P2P | VFIO_F_PRE_COPY),
	       "migration flags STOP_COPY|P2P|PRE_COPY", "%s (flags %#x)", err.msg, a.desc.flags);
	if (r < 0)
		goto done;
	r = vfio_kernel_describe(&ka, &da, &err);
	if (r == 0)
		r = vfio_kernel_describe(&kb, &db, &err);
	da.flags = a.desc.flags;
	db.flags = b.desc.flags;
	a.desc = da;
	b.desc = db;
	printf("RK-INFO %s: type %s, %04x:%04x, %u regions\n", ka.name, da.mdev_type, da.vendor,
	       da.device, da.nr_regions);
	result(r == 0 && !strcmp(da.mdev_type, "mtty-2"), "describe", "%s (type '%s')", err.msg,
	       da.mdev_type);
	r = vfio_class.compat_ops->describe(&a.dev, &desc, &err);
	if (r == 0)
		r = vfio_class.compat_ops->check(&b.dev, desc.data, desc.len, &err);
	result(r == 0, "the two match", "%s", err.msg);
	{
		/* guest RAM for its DMA, as a lab VM maps it */
		static uint8_t ram[2 << 20] __attribute__((aligned(4096)));

		r = vfio_kernel_map_ram(&ka, ram, 0, sizeof(ram), &err);
		result(r == 0, "guest RAM mapped for DMA", "%s", err.msg);
	}
	arc_tour(&a);
	move_state(&a, &b);
	damaged_state(&a, &b);
	dma_log(&a);
	vfio_dev_fini(&a);
	vfio_dev_fini(&b);
	vfio_kernel_close(&ka);
	vfio_kernel_close(&kb);
done:
	return rk_done();
}
