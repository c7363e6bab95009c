// SPDX-License-Identifier: MIT
/*
 * The engines with a VM of fake classes: a source and a destination engine
 * in this process, over loopback, migrating a VM whose devices are defined
 * here and registered at run time, without anything in migrate/ knowing
 * them.  Every arc either side takes is logged, so the call order the
 * engines really produce is checked:
 *
 *   - a VFIO-like device goes to RUNNING_P2P before the vCPU-like devices
 *     stop, and to STOP only after they stopped (KERNEL-UAPI §1.6);
 *   - an ITS-like device, whose save writes guest RAM, saves after the
 *     vCPUs stopped and before the final dirty sync, so the page it wrote
 *     travels: the RAM digests compared under --verify would differ
 *     otherwise (§6.3);
 *   - the destination loads RAM's owner first and starts the VFIO-like
 *     device through RUNNING_P2P before any vCPU runs (§1.7);
 *   - a failed load on the destination, or a fault injected while the
 *     source pauses, rolls every source device back to running;
 *   - a class with a page hook (as SEV will have) sees every page with
 *     data on its way out and back in, and its veto rolls back.
 *
 * No KVM needed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <migrate/device.h>
#include <migrate/engine.h>
#include <migrate/vm.h>

#include "util.h"

#define RAM_BYTES (8ULL << 20)
#define ITS_PAGE 100

/* ---- the log, shared by both sides ---- */

struct arc {
	bool source;
	const struct mig_device *d;
	int to;
};
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct arc log_[1024];
static unsigned nlog;

struct fvm;
static bool is_source(const struct mig_device *d);

static void log_arc(const struct mig_device *d, int to)
{
	pthread_mutex_lock(&log_lock);
	if (nlog < ARRAY_SIZE(log_))
		log_[nlog++] = (struct arc){ is_source(d), d, to };
	pthread_mutex_unlock(&log_lock);
}

static int when(const struct mig_device *d, int to)
{
	for (unsigned i = 0; i < nlog; i++)
		if (log_[i].d == d && log_[i].to == to)
			return (int)i;
	return -1;
}

/* ---- the fake VM ---- */

struct fvm {
	struct mig_vm vm;
	bool source;
	uint64_t written[RAM_BYTES / 4096 / 64];  /* pages written behind the log's back */
	struct mig_device ram, vfio, its, cpu[2], cipher;
	struct mig_device *all[10];
	char fail_load[16];     /* a class whose load fails here */
	unsigned vfio_model;    /* what the VFIO-like device describes */
	/* its pre-copy data: bytes still to send (source), taken (destination) */
	uint64_t pre_left, pre_got;
	char pre_err[128];      /* the first thing wrong with what arrived */
	/* the page hook's work: pages encoded (source) or decoded (destination) */
	uint64_t hooked;        /* atomic: the stream threads call the hook */
	uint64_t veto_pfn;      /* a page the source's hook refuses (0: none) */
	unsigned log_starts, log_stops;   /* RAM's tracking turned on and off */
};

static struct fvm *owner_of[16];
static unsigned nowners;

static struct fvm *fvm_of(const struct mig_device *d)
{
	for (unsigned i = 0; i < nowners; i++)
		for (unsigned k = 0; k < owner_of[i]->vm.nr_devices; k++)
			if (owner_of[i]->all[k] == d)
				return owner_of[i];
	return NULL;
}

static bool is_source(const struct mig_device *d)
{
	struct fvm *v = fvm_of(d);

	return v && v->source;
}

static int step_logged(struct mig_device *d, int to, struct mig_error *err)
{
	(void)err;
	log_arc(d, to);
	return 0;
}

/* Each device's state is its class and id in words; a load checks it. */
static int save_words(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	char text[64];

	snprintf(text, sizeof(text), "%s %u", d->cls->name, d->id);
	return w->write(w, text, strlen(text), err);
}

static int load_words(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	char text[64] = "", want[64];
	uint64_t n = r->remaining(r);
	struct fvm *v = fvm_of(d);

	if (v && !strcmp(v->fail_load, d->cls->name))
		return mig_error_set(err, -EIO, "refused by the test");
	snprintf(want, sizeof(want), "%s %u", d->cls->name, d->id);
	if (n >= sizeof(text) || r->read(r, text, n, err) < 0 || strcmp(text, want))
		return mig_error_set(err, -EINVAL, "%s %u: state '%s'", d->cls->name, d->id, text);
	return 0;
}

static const struct mig_device_ops stateful = {
	.step = step_logged, .save = save_words, .load = load_words,
};

/* guest RAM's owner: its log is the VM's `written` set */
enum { R_LOGGING, R_FINAL, R_RECEIVING, R_LOADED, R_RELEASED, R_N };
static const char *const r_names[R_N] = { "logging", "final", "receiving", "loaded", "released" };
#define A(n, a, b) [(a) * (n) + (b)] = true
static const bool r_arcs[R_N * R_N] = {
	A(R_N, R_LOGGING, R_FINAL), A(R_N, R_FINAL, R_LOGGING), A(R_N, R_FINAL, R_RELEASED),
	A(R_N, R_LOGGING, R_RECEIVING), A(R_N, R_RECEIVING, R_LOADED),
	A(R_N, R_RECEIVING, R_RELEASED), A(R_N, R_LOADED, R_LOGGING),
	A(R_N, R_LOADED, R_RELEASED),
};
static const struct mig_stage_step r_steps[] = {
	{ MIG_STAGE_SAVE, 0, R_FINAL }, { MIG_STAGE_RELEASE, 20, R_RELEASED },
	{ MIG_STAGE_ROLLBACK, 0, R_LOGGING }, { MIG_STAGE_RECEIVE, 0, R_RECEIVING },
	{ MIG_STAGE_LOAD, 0, R_LOADED }, { MIG_STAGE_START, 0, R_LOGGING },
	{ MIG_STAGE_DISCARD, 20, R_RELEASED },
};

static int ram_sync(struct mig_device *d, uint64_t *bitmap, uint64_t *ret_count,
		    struct mig_error *err)
{
	struct fvm *v = fvm_of(d);
	uint64_t n = 0;

	(void)err;
	for (unsigned i = 0; i < ARRAY_SIZE(v->written); i++) {
		n += (uint64_t)__builtin_popcountll(v->written[i]);
		bitmap[i] |= v->written[i];
		v->written[i] = 0;
	}
	if (ret_count)
		*ret_count = n;
	return 0;
}

static int ram_start(struct mig_device *d, struct mig_error *err)
{
	(void)err;
	fvm_of(d)->log_starts++;
	return 0;
}

static int ram_stop(struct mig_device *d, struct mig_error *err)
{
	(void)err;
	fvm_of(d)->log_stops++;
	return 0;
}

static const struct mig_device_ops ram_ops = { .step = step_logged };
static const struct mig_dirty_ops ram_dirty = { .start = ram_start, .sync = ram_sync,
						.stop = ram_stop };
static const struct mig_device_class fake_ram = {
	.id = MIG_DEV_CLASS_PRIVATE + 10, .name = "fake-ram", .version = 1,
	.nr_states = R_N, .state_names = r_names, .arcs = r_arcs,
	.steps = r_steps, .nr_steps = ARRAY_SIZE(r_steps), .load_state = -1, .fail_state = -1,
	.carries_ram = true, .ops = &ram_ops, .dirty_ops = &ram_dirty,
};

/* a VFIO-like device (KERNEL-UAPI §1.2, trimmed) */
enum { V_RUNNING, V_P2P, V_STOP, V_STOP_COPY, V_RESUMING, V_ERROR, V_N };
static const char *const v_names[V_N] = { "running", "running_p2p", "stop", "stop_copy",
					  "resuming", "error" };
static const bool v_arcs[V_N * V_N] = {
	A(V_N, V_RUNNING, V_P2P), A(V_N, V_P2P, V_RUNNING), A(V_N, V_P2P, V_STOP),
	A(V_N, V_STOP, V_P2P), A(V_N, V_STOP, V_STOP_COPY), A(V_N, V_STOP_COPY, V_STOP),
	A(V_N, V_STOP, V_RESUMING), A(V_N, V_RESUMING, V_STOP), A(V_N, V_RESUMING, V_ERROR),
	A(V_N, V_STOP, V_ERROR),
};
static const struct mig_stage_step v_steps[] = {
	{ MIG_STAGE_QUIESCE, 0, V_P2P }, { MIG_STAGE_QUIESCE, 20, V_STOP },
	{ MIG_STAGE_SAVE, 10, V_STOP_COPY }, { MIG_STAGE_RELEASE, 0, V_STOP },
	{ MIG_STAGE_ROLLBACK, 20, V_RUNNING }, { MIG_STAGE_RECEIVE, 0, V_RESUMING },
	{ MIG_STAGE_LOAD, 5, V_STOP }, { MIG_STAGE_START, 5, V_P2P },
	{ MIG_STAGE_START, 20, V_RUNNING }, { MIG_STAGE_DISCARD, 0, V_STOP },
};
/* Its description is its model; another model's state does not load. */
static int vfio_describe(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "model %u", fvm_of(d)->vfio_model);

	if (mig_buf_append(out, text, (size_t)n) < 0)
		return mig_error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int vfio_check(struct mig_device *d, const void *desc, size_t n, struct mig_error *err)
{
	char want[32];
	int k = snprintf(want, sizeof(want), "model %u", fvm_of(d)->vfio_model);

	if (n != (size_t)k || memcmp(desc, want, n))
		return mig_error_set(err, -ENODEV, "the source's is %.*s, this host's is %s",
				     (int)n, (const char *)desc, want);
	return 0;
}

static const struct mig_compat_ops vfio_compat = {
	.describe = vfio_describe, .check = vfio_check,
};

/* Pre-copy data, as a VFIO device in PRE_COPY has (KERNEL-UAPI §1.4): more
 * than a DEVICE_DATA frame holds, byte k being (k * 7) & 0xff, taken on the
 * destination while it is resuming. */
#define VFIO_PRECOPY_BYTES (3ULL << 20)

static uint64_t vfio_pending(struct mig_device *d)
{
	return fvm_of(d)->pre_left;
}

static int vfio_save_chunk(struct mig_device *d, struct mig_writer *w, uint64_t budget,
			   struct mig_error *err)
{
	struct fvm *v = fvm_of(d);
	uint8_t buf[4096];

	while (v->pre_left && budget) {
		uint64_t at = VFIO_PRECOPY_BYTES - v->pre_left;
		size_t n = v->pre_left < sizeof(buf) ? v->pre_left : sizeof(buf);
		int r;

		if (n > budget)
			n = budget;
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)((at + i) * 7);
		r = w->write(w, buf, n, err);
		if (r < 0)
			return r;
		v->pre_left -= n;
		budget -= n;
	}
	return 0;
}

static int vfio_load_chunk(struct mig_device *d, struct mig_reader *r, struct mig_error *err)
{
	struct fvm *v = fvm_of(d);
	uint8_t buf[4096];

	if (d->state != V_RESUMING && !v->pre_err[0])
		snprintf(v->pre_err, sizeof(v->pre_err), "pre-copy data in state %s",
			 mig_device_state_name(d));
	while (r->remaining(r)) {
		size_t n = r->remaining(r) < sizeof(buf) ? r->remaining(r) : sizeof(buf);

		if (r->read(r, buf, n, err) < 0)
			return -EIO;
		for (size_t i = 0; i < n && !v->pre_err[0]; i++)
			if (buf[i] != (uint8_t)((v->pre_got + i) * 7))
				snprintf(v->pre_err, sizeof(v->pre_err), "byte %llu is %#x",
					 (unsigned long long)(v->pre_got + i), buf[i]);
		v->pre_got += n;
	}
	return 0;
}

static const struct mig_precopy_ops vfio_precopy = {
	.pending = vfio_pending, .save_chunk = vfio_save_chunk, .load_chunk = vfio_load_chunk,
};
static const struct mig_device_class fake_vfio = {
	.id = MIG_DEV_CLASS_PRIVATE + 11, .name = "fake-vfio", .version = 2,
	.nr_states = V_N, .state_names = v_names, .arcs = v_arcs,
	.steps = v_steps, .nr_steps = ARRAY_SIZE(v_steps), .load_state = V_RESUMING,
	.fail_state = V_ERROR, .ops = &stateful, .compat_ops = &vfio_compat,
	.precopy_ops = &vfio_precopy,
};

/* an ITS-like device: flushing writes its table into guest RAM */
enum { I_RUNNING, I_FLUSHED, I_SAVED, I_NEW, I_RESTORING, I_DEAD, I_N };
static const char *const i_names[I_N] = { "running", "flushed", "saved", "new", "restoring",
					  "dead" };
static const bool i_arcs[I_N * I_N] = {
	A(I_N, I_RUNNING, I_FLUSHED), A(I_N, I_FLUSHED, I_SAVED), A(I_N, I_FLUSHED, I_RUNNING),
	A(I_N, I_SAVED, I_RUNNING), A(I_N, I_SAVED, I_DEAD), A(I_N, I_NEW, I_RESTORING),
	A(I_N, I_RESTORING, I_RUNNING), A(I_N, I_RESTORING, I_DEAD), A(I_N, I_NEW, I_DEAD),
};
#undef A
static const struct mig_stage_step i_steps[] = {
	{ MIG_STAGE_SAVE, 5, I_SAVED }, { MIG_STAGE_RELEASE, 30, I_DEAD },
	{ MIG_STAGE_ROLLBACK, 25, I_RUNNING }, { MIG_STAGE_LOAD, 15, I_RESTORING },
	{ MIG_STAGE_START, 15, I_RUNNING }, { MIG_STAGE_DISCARD, 30, I_DEAD },
};

static int its_step(struct mig_device *d, int to, struct mig_error *err)
{
	struct fvm *v = fvm_of(d);

	if (to == I_FLUSHED) {
		/* the tables go into guest RAM, as KVM_DEV_ARM_ITS_SAVE_TABLES does */
		memset(v->vm.ram + ITS_PAGE * 4096ULL, 0x17, 4096);
		v->written[ITS_PAGE / 64] |= 1ULL << (ITS_PAGE % 64);
	}
	return step_logged(d, to, err);
}

static const struct mig_device_ops its_ops = {
	.step = its_step, .save = save_words, .load = load_words,
};
static const struct mig_device_class fake_its = {
	.id = MIG_DEV_CLASS_PRIVATE + 12, .name = "fake-its", .version = 1,
	.nr_states = I_N, .state_names = i_names, .arcs = i_arcs,
	.steps = i_steps, .nr_steps = ARRAY_SIZE(i_steps), .load_state = I_RESTORING,
	.fail_state = -1, .save_writes_ram = true, .ops = &its_ops,
};

/* vCPU-like devices */
enum { C_RUNNING, C_PAUSING, C_QUIESCED, C_SAVED, C_NEW, C_RESTORING, C_RESTORED, C_DEAD, C_N };
static const char *const c_names[C_N] = { "running", "pausing", "quiesced", "saved", "new",
					  "restoring", "restored", "dead" };
#define A(a, b) [(a) * C_N + (b)] = true
static const bool c_arcs[C_N * C_N] = {
	A(C_RUNNING, C_PAUSING), A(C_PAUSING, C_QUIESCED), A(C_QUIESCED, C_RUNNING),
	A(C_QUIESCED, C_SAVED), A(C_SAVED, C_RUNNING), A(C_SAVED, C_DEAD), A(C_NEW, C_RESTORING),
	A(C_RESTORING, C_RESTORED), A(C_RESTORED, C_RUNNING), A(C_RESTORING, C_DEAD),
	A(C_RESTORED, C_DEAD), A(C_NEW, C_DEAD),
};
#undef A
static const struct mig_stage_step c_steps[] = {
	{ MIG_STAGE_QUIESCE, 10, C_PAUSING }, { MIG_STAGE_QUIESCE, 11, C_QUIESCED },
	{ MIG_STAGE_SAVE, 20, C_SAVED }, { MIG_STAGE_RELEASE, 10, C_DEAD },
	{ MIG_STAGE_ROLLBACK, 30, C_RUNNING }, { MIG_STAGE_LOAD, 20, C_RESTORED },
	{ MIG_STAGE_START, 30, C_RUNNING }, { MIG_STAGE_DISCARD, 10, C_DEAD },
};
static const struct mig_device_class fake_cpu = {
	.id = MIG_DEV_CLASS_PRIVATE + 13, .name = "fake-cpu", .version = 1,
	.nr_states = C_N, .state_names = c_names, .arcs = c_arcs,
	.steps = c_steps, .nr_steps = ARRAY_SIZE(c_steps), .load_state = C_RESTORING,
	.fail_state = -1, .ops = &stateful,
};
/* the same class in a later build, whose state this build cannot read */
static const struct mig_device_class fake_cpu_v2 = {
	.id = MIG_DEV_CLASS_PRIVATE + 13, .name = "fake-cpu", .version = 2,
	.nr_states = C_N, .state_names = c_names, .arcs = c_arcs,
	.steps = c_steps, .nr_steps = ARRAY_SIZE(c_steps), .load_state = C_RESTORING,
	.fail_state = -1, .ops = &stateful,
};

/* A page-hook class with no state: the first half of RAM goes "encrypted"
 * (each byte XORed with a key) and comes back on the other side. */
#define CIPHER_KEY 0xa5
#define CIPHER_PAGES (RAM_BYTES / 4096 / 2)

static int cipher_xor(struct mig_device *d, uint64_t pfn, void *page)
{
	struct fvm *v = fvm_of(d);

	if (pfn >= CIPHER_PAGES)
		return 0;
	for (unsigned i = 0; i < 4096; i++)
		((uint8_t *)page)[i] ^= CIPHER_KEY;
	__atomic_fetch_add(&v->hooked, 1, __ATOMIC_RELAXED);
	return 0;
}

static int cipher_encode(struct mig_device *d, uint64_t pfn, void *page, void *tag,
			 struct mig_error *err)
{
	struct fvm *v = fvm_of(d);

	(void)tag;
	if (v->veto_pfn && pfn == v->veto_pfn)
		return mig_error_set(err, -EPERM, "refused by the test");
	return cipher_xor(d, pfn, page);
}

static int cipher_decode(struct mig_device *d, uint64_t pfn, void *page, const void *tag,
			 struct mig_error *err)
{
	(void)err;
	(void)tag;
	return cipher_xor(d, pfn, page);
}

static const struct mig_device_ops cipher_ops = { .step = step_logged };
static const struct mig_page_ops cipher_pages = {
	.encode = cipher_encode, .decode = cipher_decode,
};
static const char *const k_names[1] = { "on" };
static const bool k_arcs[1] = { false };
static const struct mig_device_class fake_cipher = {
	.id = MIG_DEV_CLASS_PRIVATE + 14, .name = "fake-cipher", .version = 1,
	.nr_states = 1, .state_names = k_names, .arcs = k_arcs, .load_state = -1,
	.fail_state = -1, .ops = &cipher_ops, .page_ops = &cipher_pages,
};

static int fvm_describe(struct mig_vm *vm, uint8_t *out, size_t *len, struct mig_error *err)
{
	(void)vm; (void)err;
	memcpy(out, "fake vm v1", 10);
	*len = 10;
	return 0;
}

static int fvm_matches(struct mig_vm *vm, const uint8_t *desc, size_t len, struct mig_error *err)
{
	(void)vm;
	if (len < 10 || memcmp(desc, "fake vm v1", 10))
		return mig_error_set(err, -EINVAL, "not a fake VM");
	return 0;
}

static void fvm_health(struct mig_vm *vm, struct mig_vm_health *ret)
{
	(void)vm;
	*ret = (struct mig_vm_health){ 0 };
}

static int fvm_digest(struct mig_vm *vm, const atomic_bool *stop, struct mig_digest *ret)
{
	return mig_ram_digest(vm->ram, vm->ram_bytes, stop, ret);
}

static void fvm_destroy(struct mig_vm *vm)
{
	(void)vm;   /* the test owns it and checks it afterwards */
}

static const struct mig_vm_ops fvm_ops = {
	.describe = fvm_describe, .matches = fvm_matches,
	.dirty_sync = mig_vm_devices_dirty_sync, .health = fvm_health,
	.digest = fvm_digest, .destroy = fvm_destroy,
};

static void fvm_init(struct fvm *v, bool source)
{
	memset(v, 0, sizeof(*v));
	cr_assert_lt(nowners, ARRAY_SIZE(owner_of));
	owner_of[nowners++] = v;
	v->source = source;
	v->pre_left = source ? VFIO_PRECOPY_BYTES : 0;
	v->vm.ops = &fvm_ops;
	v->vm.ram = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(v->vm.ram, MAP_FAILED);
	v->vm.ram_bytes = RAM_BYTES;
	if (source)
		for (uint64_t i = 0; i < RAM_BYTES / 8; i++)
			((uint64_t *)v->vm.ram)[i] = i * 0x9e3779b97f4a7c15ULL;
	mig_device_init(&v->ram, &fake_ram, 0, R_LOGGING);
	mig_device_init(&v->vfio, &fake_vfio, 0, source ? V_RUNNING : V_RUNNING);
	mig_device_init(&v->its, &fake_its, 0, source ? I_RUNNING : I_NEW);
	for (unsigned i = 0; i < 2; i++)
		mig_device_init(&v->cpu[i], &fake_cpu, i, source ? C_RUNNING : C_NEW);
	v->all[0] = &v->ram;
	v->all[1] = &v->cpu[0];
	v->all[2] = &v->vfio;
	v->all[3] = &v->its;
	v->all[4] = &v->cpu[1];
	v->vm.devices = v->all;
	v->vm.nr_devices = 5;
}

static void fvm_free(struct fvm *v)
{
	munmap(v->vm.ram, RAM_BYTES);
}

/* The cipher device, after the others. */
static void fvm_add_cipher(struct fvm *v)
{
	mig_device_init(&v->cipher, &fake_cipher, 0, 0);
	v->all[v->vm.nr_devices++] = &v->cipher;
}

/* ---- one migration, both engines in this process ---- */

struct dst_run {
	struct mig_in_opts o;
	struct mig_vm *out;
	struct mig_error err;
	int r;
};

static void *dst_main(void *arg)
{
	struct dst_run *d = arg;

	d->r = mig_dest_run(&d->o, &d->out, &d->err);
	return NULL;
}

struct result {
	struct mig_event res;
	struct mig_event_device devs[MIG_EVENT_DEVICES_MAX];
	struct dst_run dst;
};

/* With a fault hook on each side (NULL: none). */
static void migrate_faults(struct fvm *src, struct fvm *dst, mig_fault_fn fault, void *fault_arg,
			   mig_fault_fn dst_fault, void *dst_fault_arg, struct result *out)
{
	struct xport_endpoint ep = { .kind = XPORT_EP_TCP, .host = "127.0.0.1" };
	struct mig_out_opts o = { 0 };
	struct mig_error err = { 0 };
	atomic_bool cancel = false;
	pthread_t t;
	int lfd;

	/* classes from outside the build's table, added as a plug-in would be */
	cr_assert_eq(mig_device_class_add(&fake_ram), 0);
	cr_assert_eq(mig_device_class_add(&fake_vfio), 0);
	cr_assert_eq(mig_device_class_add(&fake_its), 0);
	cr_assert_eq(mig_device_class_add(&fake_cpu), 0);
	cr_assert_eq(mig_device_class_add(&fake_cipher), 0);
	nlog = 0;
	lfd = xport_listen(&ep, &err);
	cr_assert_geq(lfd, 0, "%s", err.msg);
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 16; i++)
		o.id[i] = (uint8_t)(i + 1);
	xport_random(o.secret, sizeof(o.secret));
	memcpy(out->dst.o.id, o.id, 16);
	memcpy(out->dst.o.secret, o.secret, sizeof(o.secret));
	snprintf(o.name, sizeof(o.name), "fake");
	snprintf(out->dst.o.name, sizeof(out->dst.o.name), "fake");
	cr_assert_eq(xport_local_addr(lfd, o.dest_addr, sizeof(o.dest_addr)), 0);
	o.streams = out->dst.o.streams = 2;
	out->dst.o.listen_fd = lfd;
	out->dst.o.vm = &dst->vm;
	o.verify = true;
	o.compress.codec = XPORT_CODEC_NONE;
	o.checksum = MIG_CHECKSUM_PAGES;
	conv_params_default(&o.conv);
	o.fault = fault;
	o.fault_arg = fault_arg;
	out->dst.o.fault = dst_fault;
	out->dst.o.fault_arg = dst_fault_arg;
	cr_assert_eq(pthread_create(&t, NULL, dst_main, &out->dst), 0);
	mig_source_run(&src->vm, &o, &cancel, NULL, NULL, &out->res, out->devs);
	pthread_join(t, NULL);
	close(lfd);
}

static void migrate(struct fvm *src, struct fvm *dst, mig_fault_fn fault, void *fault_arg,
		    struct result *out)
{
	migrate_faults(src, dst, fault, fault_arg, NULL, NULL, out);
}

Test(engine, call_order_of_a_whole_migration, .timeout = 60)
{
	struct fvm src, dst;
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	migrate(&src, &dst, NULL, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_COMPLETED, "%s", r.res.error);
	cr_assert_eq(r.dst.r, 0, "%s", r.dst.err.msg);
	cr_assert_eq(r.dst.out, &dst.vm);
	cr_assert_eq(r.res.verified, 1);
	/* the ITS's page went: its flush came before the final sync */
	cr_assert_eq(memcmp(src.vm.ram, dst.vm.ram, RAM_BYTES), 0, "the copies differ");
	cr_assert_eq(dst.vm.ram[ITS_PAGE * 4096ULL], 0x17);

	/* source */
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_lt(when(&src.vfio, V_P2P), when(&src.cpu[i], C_PAUSING));
		cr_assert_lt(when(&src.cpu[i], C_QUIESCED), when(&src.vfio, V_STOP));
		cr_assert_lt(when(&src.cpu[i], C_QUIESCED), when(&src.its, I_FLUSHED));
		cr_assert_lt(when(&src.cpu[i], C_SAVED), when(&src.cpu[i], C_DEAD));
	}
	cr_assert_lt(when(&src.its, I_SAVED), when(&src.ram, R_FINAL), "RAM writers save first");
	cr_assert_geq(when(&src.ram, R_RELEASED), 0, "the source released its copy");
	cr_assert_eq(src.log_starts, 1, "tracking went on once");
	cr_assert_eq(src.log_stops, 1, "and off once, after the final sync");
	/* destination */
	cr_assert_lt(when(&dst.ram, R_RECEIVING), when(&dst.vfio, V_RESUMING) + 1);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_lt(when(&dst.ram, R_LOADED), when(&dst.cpu[i], C_RESTORING));
		cr_assert_lt(when(&dst.vfio, V_P2P), when(&dst.vfio, V_RUNNING));
		cr_assert_lt(when(&dst.vfio, V_RUNNING), when(&dst.cpu[i], C_RUNNING));
		cr_assert_lt(when(&dst.its, I_RUNNING), when(&dst.cpu[i], C_RUNNING));
		cr_assert_eq(dst.cpu[i].state, C_RUNNING);
	}
	cr_assert_eq(dst.vfio.state, V_RUNNING);
	cr_assert_eq(dst.its.bytes, strlen("fake-its 0"));
	/* the pre-copy data went while the VM ran, in several frames, intact */
	cr_assert_eq(src.pre_left, 0);
	cr_assert_eq(dst.pre_got, VFIO_PRECOPY_BYTES);
	cr_assert_eq(dst.pre_err[0], '\0', "%s", dst.pre_err);
	cr_assert_eq(dst.vfio.bytes, VFIO_PRECOPY_BYTES + strlen("fake-vfio 0"));
	/* the RESULT names every device of the source as the engine left it */
	cr_assert_eq(r.res.nr_devices, 5);
	for (unsigned i = 0; i < 5; i++) {
		cr_assert_eq(r.devs[i].cls, src.all[i]->cls->id);
		cr_assert_eq(r.devs[i].state, (uint32_t)src.all[i]->state);
	}
	cr_assert_eq(r.devs[0].bytes, r.res.wire_bytes, "RAM's owner reports the pages sent");
	cr_assert_eq(r.devs[2].bytes, VFIO_PRECOPY_BYTES + strlen("fake-vfio 0"),
		     "pre-copy and final bytes");
	fvm_free(&src);
	fvm_free(&dst);
}

static void expect_rolled_back(struct fvm *src, const struct result *r)
{
	cr_assert_eq(r->res.owner, MIG_OWNER_SOURCE, "%s", r->res.error);
	cr_assert_eq(src->log_starts, src->log_stops, "tracking is off on every way out");
	cr_assert_eq(src->ram.state, R_LOGGING);
	cr_assert_eq(src->vfio.state, V_RUNNING);
	cr_assert_eq(src->its.state, I_RUNNING);
	for (unsigned i = 0; i < 2; i++)
		cr_assert_eq(src->cpu[i].state, C_RUNNING);
}

/* The destination refuses one device's state: LOADED says so, the source
 * walks every device back to running. */
Test(engine, a_load_refused_rolls_the_source_back, .timeout = 60)
{
	struct fvm src, dst;
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	snprintf(dst.fail_load, sizeof(dst.fail_load), "fake-its");
	migrate(&src, &dst, NULL, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_FAILED);
	cr_assert_not_null(strstr(r.res.error, "could not load the VM: fake-its 0: refused by "
				  "the test"), "%s", r.res.error);
	expect_rolled_back(&src, &r);
	cr_assert_lt(r.dst.r, 0);
	cr_assert_eq(dst.cpu[0].state, C_DEAD, "the destination discarded its copy");
	fvm_free(&src);
	fvm_free(&dst);
}

/* A fault injected as the second vCPU parks (the chaos mode's seam): the
 * pause is half done, and the rollback walk takes every device back. */
static int fault_second_park(void *arg, const struct mig_fault_point *p, struct mig_error *err)
{
	struct fvm *src = arg;

	if (p->kind == MIG_FAULT_DEVICE_STEP && p->dev == &src->cpu[1] && p->to == C_QUIESCED)
		return mig_error_set(err, -EIO, "injected at the second park");
	return 0;
}

Test(engine, a_fault_while_pausing_rolls_the_source_back, .timeout = 60)
{
	struct fvm src, dst;
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	migrate(&src, &dst, fault_second_park, &src, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_FAILED);
	cr_assert_str_eq(r.res.error, "injected at the second park");
	expect_rolled_back(&src, &r);
	cr_assert_lt(when(&src.cpu[1], C_QUIESCED), when(&src.cpu[1], C_RUNNING),
		     "the half-paused vCPU went back through quiesced");
	cr_assert_eq(when(&src.vfio, V_STOP), -1, "nothing stopped after the fault");
	fvm_free(&src);
	fvm_free(&dst);
}

/*
 * SETUP's device manifest: a destination whose devices differ from the
 * source's refuses before anything moves, naming the device, and the
 * source's devices never leave running.
 */
static void expect_refused_at_setup(struct fvm *src, struct fvm *dst, const char *why)
{
	struct result r;

	migrate(src, dst, NULL, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_FAILED);
	cr_assert_not_null(strstr(r.res.error, "the destination could not prepare"), "%s",
			   r.res.error);
	cr_assert_not_null(strstr(r.res.error, why), "'%s' does not say '%s'", r.res.error, why);
	expect_rolled_back(src, &r);
	for (unsigned i = 0; i < 2; i++)
		cr_assert_eq(when(&src->cpu[i], C_PAUSING), -1, "a vCPU paused");
	cr_assert_eq(when(&src->vfio, V_P2P), -1, "the VFIO-like device moved");
	cr_assert_eq(when(&dst->ram, R_RECEIVING), -1, "the destination took pages");
	cr_assert_lt(r.dst.r, 0);
}

Test(engine, setup_refuses_another_device_model, .timeout = 60)
{
	struct fvm src, dst;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	src.vfio_model = 7;
	dst.vfio_model = 8;
	expect_refused_at_setup(&src, &dst, "device fake-vfio 0: the source's is model 7, "
				"this host's is model 8");
	fvm_free(&src);
	fvm_free(&dst);
}

Test(engine, setup_refuses_a_class_version_it_cannot_read, .timeout = 60)
{
	struct fvm src, dst;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	mig_device_init(&dst.cpu[1], &fake_cpu_v2, 1, C_NEW);
	expect_refused_at_setup(&src, &dst, "device fake-cpu 1: the source's state is version 1 "
				"of its class, this build reads version 2");
	fvm_free(&src);
	fvm_free(&dst);
}

Test(engine, setup_refuses_a_missing_or_extra_device, .timeout = 60)
{
	struct fvm src, dst;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	dst.vm.nr_devices = 4;     /* without the second vCPU */
	expect_refused_at_setup(&src, &dst, "device fake-cpu 1: the source's VM has it, this "
				"one does not");
	fvm_free(&dst);
	fvm_init(&dst, false);
	src.vm.nr_devices = 4;
	expect_refused_at_setup(&src, &dst, "device fake-cpu 1: this VM has it, the source's "
				"does not");
	fvm_free(&src);
	fvm_free(&dst);
}

/*
 * The destination's seam: its phases go SETUP, PRECOPY, STOP_COPY, COMMIT,
 * DONE through the hook, and its frames pass it too, from the control
 * stream and from the data streams' threads.  A fault there, as a fault
 * anywhere before COMMIT, leaves the VM running on the source only.
 */
struct dst_seen {
	pthread_mutex_t lock;
	int phases[16];
	unsigned nphases;
	unsigned device_data, pages, control;
	int fail_phase;           /* inject when entering it (0: never) */
	bool fail_device_data;    /* inject at the first DEVICE_DATA received */
};

static int dst_hook(void *arg, const struct mig_fault_point *p, struct mig_error *err)
{
	struct dst_seen *s = arg;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (p->kind == MIG_FAULT_PHASE) {
		if (s->nphases < ARRAY_SIZE(s->phases))
			s->phases[s->nphases++] = p->to;
		if (p->to == s->fail_phase)
			r = mig_error_set(err, -EIO, "injected entering %s",
					  mig_phase_to_string(p->to));
	} else if (p->kind == MIG_FAULT_FRAME_RECV) {
		if (p->frame_type == MIG_FRAME_DEVICE_DATA && p->stream > 0) {
			s->device_data++;
			if (s->fail_device_data)
				r = mig_error_set(err, -EIO, "injected at DEVICE_DATA on stream %u",
						  p->stream);
		}
		s->pages += p->frame_type == MIG_FRAME_PAGES;
		s->control += p->stream == 0;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

Test(engine, destination_phases_and_frames_pass_the_hook, .timeout = 60)
{
	static const int want[] = { MIG_PHASE_PRECOPY, MIG_PHASE_STOP_COPY, MIG_PHASE_COMMIT,
				    MIG_PHASE_DONE };
	struct dst_seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct fvm src, dst;
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	migrate_faults(&src, &dst, NULL, NULL, dst_hook, &seen, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_COMPLETED, "%s", r.res.error);
	cr_assert_eq(seen.nphases, ARRAY_SIZE(want));
	for (unsigned i = 0; i < ARRAY_SIZE(want); i++)
		cr_assert_eq(seen.phases[i], want[i], "phase %u is %s", i,
			     mig_phase_to_string(seen.phases[i]));
	/* 3 MiB of pre-copy data and the final state of four devices */
	cr_assert_geq(seen.device_data, 3 + 4);
	cr_assert_gt(seen.pages, 0);
	cr_assert_geq(seen.control, 2, "SETUP and COMMIT at least");
	fvm_free(&src);
	fvm_free(&dst);
}

static void expect_dst_fault(struct dst_seen *seen, const char *why)
{
	struct fvm src, dst;
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	migrate_faults(&src, &dst, NULL, NULL, dst_hook, seen, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_FAILED);
	cr_assert_not_null(strstr(r.res.error, why), "'%s' does not say '%s'", r.res.error, why);
	expect_rolled_back(&src, &r);
	cr_assert_lt(r.dst.r, 0);
	cr_assert_null(r.dst.out, "the destination kept the VM");
	for (unsigned i = 0; i < 2; i++)
		cr_assert_neq(dst.cpu[i].state, C_RUNNING, "a vCPU runs on the destination");
	fvm_free(&src);
	fvm_free(&dst);
}

Test(engine, a_fault_on_a_destination_data_stream_rolls_back, .timeout = 60)
{
	struct dst_seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER, .fail_device_data = true };

	expect_dst_fault(&seen, "injected at DEVICE_DATA on stream");
}

Test(engine, a_fault_as_the_destination_loads_rolls_back, .timeout = 60)
{
	struct dst_seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER,
				 .fail_phase = MIG_PHASE_STOP_COPY };

	expect_dst_fault(&seen, "injected entering stop_copy");
}

/* Every page with data passes the source's hook on its way out and the
 * destination's on its way in: the copies match only if both ran on the
 * same pages, and the counts say each ran. */
Test(engine, pages_pass_a_class_page_hook_both_ways, .timeout = 60)
{
	struct fvm src, dst;
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	fvm_add_cipher(&src);
	fvm_add_cipher(&dst);
	migrate(&src, &dst, NULL, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_COMPLETED, "%s", r.res.error);
	cr_assert_eq(r.res.verified, 1);
	cr_assert_eq(memcmp(src.vm.ram, dst.vm.ram, RAM_BYTES), 0, "the copies differ");
	cr_assert_geq(src.hooked, CIPHER_PAGES - 1, "every page with data in the range");
	cr_assert_eq(dst.hooked, src.hooked, "each page encoded is decoded once");
	fvm_free(&src);
	fvm_free(&dst);
}

/* A hook that vetoes a page fails the migration, names the device and the
 * page, and leaves the VM running on the source. */
Test(engine, a_page_hook_veto_rolls_the_source_back, .timeout = 60)
{
	struct fvm src, dst;
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	fvm_add_cipher(&src);
	fvm_add_cipher(&dst);
	src.veto_pfn = 7;
	migrate(&src, &dst, NULL, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_FAILED);
	cr_assert_not_null(strstr(r.res.error, "device fake-cipher 0: page 0x7: refused by the "
				  "test"), "%s", r.res.error);
	expect_rolled_back(&src, &r);
	cr_assert_lt(r.dst.r, 0);
	fvm_free(&src);
	fvm_free(&dst);
}

#if HAVE_VFIO
/* ---- the real VFIO class, on sim devices, through both engines ---- */

#include "vfio/sim.h"

#define SIMS 3

struct fsim {
	struct vfio_sim sim;
	struct vfio_dev dev;
};

/* Three sim devices that DMA-write the top 3 MiB of RAM, one each. */
static void fvm_add_sims(struct fvm *v, struct fsim *x)
{
	struct mig_error err = { 0 };

	for (unsigned i = 0; i < SIMS; i++) {
		struct vfio_range dma = { RAM_BYTES - (i + 1) * (1ULL << 20), 1ULL << 20 };
		struct vfio_sim_opts o = {
			.flags = 7, .table_bytes = 65536, .ram = v->vm.ram, .dma = dma,
			.dma_rate = 3000, .seed = i,
		};

		cr_assert_eq(vfio_sim_init(&x[i].sim, &o, &err), 0, "%s", err.msg);
		cr_assert_eq(vfio_dev_init(&x[i].dev, i, &vfio_sim_backend, &x[i].sim, "sim", &err),
			     0, "%s", err.msg);
		x[i].dev.ranges[0] = dma;
		x[i].dev.nr_ranges = 1;
		cr_assert_eq(vfio_sim_start_dma(&x[i].sim), 0);
		if (v->source)
			vfio_sim_arm(&x[i].sim);
		v->all[v->vm.nr_devices++] = &x[i].dev.dev;
	}
}

static void fsims_free(struct fsim *x)
{
	for (unsigned i = 0; i < SIMS; i++) {
		vfio_dev_fini(&x[i].dev);
		vfio_sim_fini(&x[i].sim);
	}
}

/* Every arc of a VFIO device, on either side, into the shared log. */
static int log_vfio(void *arg, const struct mig_fault_point *p, struct mig_error *err)
{
	(void)arg; (void)err;
	if (p->kind == MIG_FAULT_DEVICE_STEP && p->dev->cls == &vfio_class)
		log_arc(p->dev, p->to);
	return 0;
}

static int when_from(const struct mig_device *d, int to, int start)
{
	for (unsigned i = start < 0 ? 0 : (unsigned)start; i < nlog; i++)
		if (log_[i].d == d && log_[i].to == to)
			return (int)i;
	return -1;
}

/*
 * KERNEL-UAPI §1.6-1.7 with several devices: on the source every device is
 * in PRE_COPY_P2P before any vCPU stops and before any device stops; on the
 * destination every device is out of RESUMING (STOP) before any goes to
 * RUNNING_P2P, and every one is in RUNNING_P2P before any runs, and they
 * all run before the vCPUs.  Their DMA, logged only by them, goes with the
 * RAM: the digests match and each checks itself clean.
 */
Test(engine, vfio_sim_devices_in_the_kernels_order, .timeout = 60)
{
	struct fvm src, dst;
	struct fsim xs[SIMS], xd[SIMS];
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	fvm_add_sims(&src, xs);
	fvm_add_sims(&dst, xd);
	migrate_faults(&src, &dst, log_vfio, NULL, log_vfio, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_COMPLETED, "%s", r.res.error);
	cr_assert_eq(r.res.verified, 1, "the RAM digests match");
	for (unsigned i = 0; i < SIMS; i++) {
		const struct mig_device *a = &xs[i].dev.dev;

		cr_assert_gt(xs[i].sim.dma_seq, 0, "source device %u did DMA", i);
		cr_assert_eq(xd[i].sim.errors, 0, "device %u: %s", i, xd[i].sim.error_msg);
		cr_assert_geq(xd[i].sim.ops, xs[i].sim.ops, "device %u's state came over (and it "
			      "works on)", i);
		cr_assert_geq(when(a, VFIO_ST_PRE_COPY_P2P), 0);
		for (unsigned k = 0; k < 2; k++) {
			cr_assert_lt(when(a, VFIO_ST_PRE_COPY_P2P), when(&src.cpu[k], C_PAUSING));
			cr_assert_lt(when(&src.cpu[k], C_QUIESCED), when(a, VFIO_ST_STOP_COPY));
		}
		for (unsigned j = 0; j < SIMS; j++) {
			const struct mig_device *b = &xs[j].dev.dev, *c = &xd[i].dev.dev,
						*e = &xd[j].dev.dev;
			int c_stop = when_from(c, VFIO_ST_STOP, when(c, VFIO_ST_RESUMING));
			int e_stop = when_from(e, VFIO_ST_STOP, when(e, VFIO_ST_RESUMING));
			int c_p2p = when_from(c, VFIO_ST_RUNNING_P2P, c_stop);
			int e_p2p = when_from(e, VFIO_ST_RUNNING_P2P, e_stop);

			cr_assert_lt(when(a, VFIO_ST_PRE_COPY_P2P), when(b, VFIO_ST_STOP_COPY),
				     "source %u quiesced before %u stopped", i, j);
			cr_assert_geq(c_stop, 0);
			cr_assert_lt(c_stop, e_p2p, "destination %u checked before %u resumes", i, j);
			cr_assert_lt(c_p2p, when_from(e, VFIO_ST_RUNNING, e_p2p),
				     "destination %u in P2P before %u runs", i, j);
		}
		for (unsigned k = 0; k < 2; k++)
			cr_assert_lt(when_from(&xd[i].dev.dev, VFIO_ST_RUNNING,
					       when(&xd[i].dev.dev, VFIO_ST_RESUMING)),
				     when(&dst.cpu[k], C_RUNNING), "devices run before the vCPUs");
	}
	fsims_free(xs);
	fsims_free(xd);
	fvm_free(&src);
	fvm_free(&dst);
}
#endif

#if HAVE_GIC
/* ---- the real GIC class, on its sim, through both engines ---- */

#include "gic/sim.h"

#define GIC_AREA (4ULL << 20)
#define GIC_DEVS 2
#define GIC_EVENTS 8

struct fgic {
	struct gic_sim sim;
	struct gic_dev dev;
	bool raised;
};

static void fvm_add_gic(struct fvm *v, struct fgic *g, enum gic_v4 v4, const struct gic_vlpi *vl)
{
	struct gic_sim_opts o = {
		.nr_vcpus = 2, .nr_irqs = 128, .nr_its = 1, .v4 = v4, .ram = v->vm.ram,
		.ram_bytes = RAM_BYTES, .its_base = { 0x08080000 }, .area_gpa = GIC_AREA,
	};
	struct gic_config cfg = { .nr_vcpus = 2, .nr_irqs = 128, .nr_its = 1, .v4 = v4 };
	struct mig_error err = { 0 };

	memset(g, 0, sizeof(*g));
	if (vl) {
		cfg.vlpis[0] = *vl;
		cfg.nr_vlpis = 1;
	}
	cr_assert_eq(gic_sim_init(&g->sim, &o, &err), 0, "%s", err.msg);
	cr_assert_eq(gic_sim_create(&g->sim), 0);
	cr_assert_eq(gic_dev_init(&g->dev, &cfg, &gic_sim_backend, &g->sim, GIC_CREATED, &err), 0,
		     "%s", err.msg);
	if (v->source) {
		cr_assert_eq(gic_sim_guest_boot(&g->sim, GIC_DEVS, GIC_EVENTS, &err), 0, "%s",
			     err.msg);
		gic_sim_set_running(&g->sim, true);
		cr_assert_eq(mig_device_step(&g->dev.core, GIC_RUNNING, &err), 0, "%s", err.msg);
		if (vl)
			cr_assert_eq(gic_vlpi_enable(&g->dev, 0, &err), 0, "%s", err.msg);
		/* every LPI once, taken at once */
		for (unsigned d = 0; d < GIC_DEVS; d++)
			for (unsigned e = 0; e < GIC_EVENTS; e++)
				cr_assert_eq(gic_sim_msi(&g->sim, 0, d, e), 1);
	}
	v->all[v->vm.nr_devices++] = &g->dev.core;
}

static struct fgic *gic_src;

/* The source's vCPUs stop: from here the guest takes nothing, and every
 * LPI is raised once more (pending at the switchover). */
static int stop_and_raise(void *arg, const struct mig_fault_point *p, struct mig_error *err)
{
	(void)arg; (void)err;
	if (p->kind == MIG_FAULT_DEVICE_STEP && p->dev->cls == &fake_cpu && p->to == C_PAUSING &&
	    is_source(p->dev) && !gic_src->raised) {
		gic_sim_set_running(&gic_src->sim, false);
		for (unsigned d = 0; d < GIC_DEVS; d++)
			for (unsigned e = 0; e < GIC_EVENTS; e++)
				gic_sim_msi(&gic_src->sim, 0, d, e);
		gic_src->raised = true;
	}
	return 0;
}

/*
 * KERNEL-UAPI §6.3-6.4 through the engines: the GIC's save writes its
 * pending and ITS tables into guest RAM after the vCPUs stopped and before
 * the final dirty sync, so the pages travel; the destination restores them
 * and, after the restore, forwards its VLPI again.  Every LPI, raised once
 * while the source ran and once while it was stopped, is taken exactly
 * twice in all, and the forwarded one is direct again.
 */
Test(engine, gic_sim_lpis_pending_at_the_switchover_arrive_exactly_once, .timeout = 60)
{
	const struct gic_vlpi vl = { .its = 0, .devid = 1, .event = 3 };
	struct fvm src, dst;
	struct fgic gs, gd;
	struct result r;

	fvm_init(&src, true);
	fvm_init(&dst, false);
	fvm_add_gic(&src, &gs, GIC_V4_1, &vl);
	fvm_add_gic(&dst, &gd, GIC_V4_1, &vl);
	gic_src = &gs;
	cr_assert(gic_sim_lpi_forwarded(&gs.sim, GIC_LPI_BASE + 1 * GIC_EVENTS + 3));
	migrate_faults(&src, &dst, stop_and_raise, NULL, NULL, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_COMPLETED, "%s", r.res.error);
	cr_assert_eq(r.res.verified, 1, "the RAM digests match");
	cr_assert(gs.raised);
	cr_assert_eq(gd.dev.core.state, GIC_RUNNING);
	gic_sim_set_running(&gd.sim, true);
	for (unsigned i = 0; i < GIC_DEVS * GIC_EVENTS; i++)
		cr_assert_eq(gic_sim_delivered(&gd.sim, GIC_LPI_BASE + i), 2,
			     "LPI %u taken %u times", GIC_LPI_BASE + i,
			     gic_sim_delivered(&gd.sim, GIC_LPI_BASE + i));
	cr_assert(gic_sim_lpi_forwarded(&gd.sim, GIC_LPI_BASE + 1 * GIC_EVENTS + 3),
		  "direct injection again");
	/* and the ITS works on */
	cr_assert_eq(gic_sim_msi(&gd.sim, 0, 1, 0), 1);
	cr_assert_eq(gic_sim_delivered(&gd.sim, GIC_LPI_BASE + GIC_EVENTS), 3);
	gic_dev_fini(&gs.dev);
	gic_dev_fini(&gd.dev);
	gic_sim_fini(&gs.sim);
	gic_sim_fini(&gd.sim);
	fvm_free(&src);
	fvm_free(&dst);
}
#endif

#if HAVE_SEV
/* ---- the SEV class on its psp-sim firmware, through both engines ---- */

#include "sev/sev.h"

#define SEV_PAGES (RAM_BYTES / 4096)

static struct sev_dev *fvm_add_sev(struct fvm *v)
{
	struct sev_fw *fw = NULL;
	struct sev_dev *s = NULL;
	struct mig_error err = { 0 };

	cr_assert_eq(sev_fw_sim_create(&fw, &err), 0, "%s", err.msg);
	cr_assert_eq(sev_dev_create(fw, v->vm.ram, 0, SEV_PAGES, SEV_POLICY_NODBG, !v->source, &s,
				    &err), 0, "%s", err.msg);
	if (v->source) {
		/* the guest shares pages 32..39 (a bounce buffer), then consents */
		cr_assert_eq(sev_map_gpa_range(s, 32 * 4096, 8, 0, false), 0);
		cr_assert_eq(sev_msr_write(s, SEV_MIGRATION_READY), 0);
	}
	v->all[v->vm.nr_devices++] = &s->core;
	return s;
}

/* A source and a destination, each with its SEV device. */
static void sev_pair(struct fvm *src, struct fvm *dst, struct sev_dev **ss, struct sev_dev **ds)
{
	fvm_init(src, true);
	fvm_init(dst, false);
	*ss = fvm_add_sev(src);
	*ds = fvm_add_sev(dst);
}

static void sev_pair_free(struct fvm *src, struct fvm *dst, struct sev_dev *ss, struct sev_dev *ds)
{
	sev_dev_destroy(ss);
	sev_dev_destroy(ds);
	fvm_free(src);
	fvm_free(dst);
}

static uint64_t enc_count(const struct sev_dev *s)
{
	uint64_t n = 0;

	for (uint64_t p = 0; p < SEV_PAGES; p++)
		n += sev_page_encrypted(s, p);
	return n;
}

static void expect_same_map(const struct sev_dev *a, const struct sev_dev *b)
{
	for (uint64_t p = 0; p < SEV_PAGES; p++)
		cr_assert_eq(sev_page_encrypted(a, p), sev_page_encrypted(b, p), "page %llu",
			     (unsigned long long)p);
}

Test(engine, sev_guest_pages_go_through_the_firmware, .timeout = 60)
{
	struct fvm src, dst;
	struct sev_dev *ss, *ds;
	struct result r;
	unsigned state = 0;
	struct mig_error err = { 0 };

	sev_pair(&src, &dst, &ss, &ds);
	migrate(&src, &dst, NULL, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_COMPLETED, "%s", r.res.error);
	cr_assert_eq(r.res.verified, 1, "the decrypted views' digests match");
	cr_assert_eq(memcmp(src.vm.ram, dst.vm.ram, RAM_BYTES), 0, "the copies differ");
	/* every encrypted page through the firmware at least once, each
	 * taken back once; the shared ones in clear */
	cr_assert_geq(ss->pages_sent_enc, SEV_PAGES - 8);
	cr_assert_eq(ds->pages_recv_enc, ss->pages_sent_enc);
	expect_same_map(ss, ds);
	cr_assert_eq(sev_msr_read(ds), SEV_MIGRATION_READY, "the gate's value moved");
	cr_assert_eq(ss->core.state, SEV_FINISHED, "SEND_FINISH after the commit");
	cr_assert_eq(ds->core.state, SEV_RUNNING);
	cr_assert_eq(ss->fw->ops->status(ss->fw, &state, &err), 0);
	cr_assert_eq(state, SEV_FW_SENT);
	cr_assert_eq(ds->fw->ops->status(ds->fw, &state, &err), 0);
	cr_assert_eq(state, SEV_FW_RUNNING);
	sev_pair_free(&src, &dst, ss, ds);
}

/* What the guest does while pages are on their way (from the first PAGES
 * frame the source sends): change pages' status, or withdraw its consent. */
struct sev_meddle {
	struct sev_dev *s;
	bool clear_ready;
	int done;
};

static int sev_meddle(void *arg, const struct mig_fault_point *p, struct mig_error *err)
{
	struct sev_meddle *m = arg;

	(void)err;
	if (p->kind != MIG_FAULT_FRAME_SEND || p->frame_type != MIG_FRAME_PAGES ||
	    __atomic_exchange_n(&m->done, 1, __ATOMIC_RELAXED))
		return 0;
	if (m->clear_ready) {
		sev_msr_write(m->s, 0);
		return 0;
	}
	/* 10..19 shared, 32..35 private again */
	sev_map_gpa_range(m->s, 10 * 4096, 10, 0, false);
	sev_map_gpa_range(m->s, 32 * 4096, 4, SEV_MAP_ENCRYPTED, false);
	return 0;
}

/* A page whose status changes mid-migration goes again in its new form:
 * the destination's load checks every page came last as the guest has it. */
Test(engine, sev_status_changes_mid_migration_resend_the_pages, .timeout = 60)
{
	struct fvm src, dst;
	struct sev_dev *ss, *ds;
	struct sev_meddle m = { 0 };
	struct result r;

	sev_pair(&src, &dst, &ss, &ds);
	m.s = ss;
	migrate(&src, &dst, sev_meddle, &m, &r);
	cr_assert_eq(m.done, 1);
	cr_assert_eq(r.res.result, MIG_RESULT_COMPLETED, "%s", r.res.error);
	cr_assert_eq(memcmp(src.vm.ram, dst.vm.ram, RAM_BYTES), 0, "the copies differ");
	cr_assert_eq(ss->status_changes, 8 + 14);
	cr_assert(!sev_page_encrypted(ds, 15) && sev_page_encrypted(ds, 33) &&
		  !sev_page_encrypted(ds, 37));
	expect_same_map(ss, ds);
	cr_assert_eq(enc_count(ds), SEV_PAGES - 14);
	sev_pair_free(&src, &dst, ss, ds);
}

/* The guest clears KVM_MIGRATION_READY mid-migration: rolled back with
 * SEND_CANCEL, the guest running here with its context. */
Test(engine, sev_ready_cleared_mid_migration_rolls_back, .timeout = 60)
{
	struct fvm src, dst;
	struct sev_dev *ss, *ds;
	struct sev_meddle m = { .clear_ready = true };
	struct result r;
	unsigned state = 0;
	struct mig_error err = { 0 };

	sev_pair(&src, &dst, &ss, &ds);
	m.s = ss;
	migrate(&src, &dst, sev_meddle, &m, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_FAILED, "%u %s", r.res.result, r.res.error);
	cr_assert(strstr(r.res.error, "cleared KVM_MIGRATION_READY"), "%s", r.res.error);
	expect_rolled_back(&src, &r);
	cr_assert_eq(ss->core.state, SEV_RUNNING);
	cr_assert_eq(ss->fw->ops->status(ss->fw, &state, &err), 0);
	cr_assert_eq(state, SEV_FW_RUNNING, "SEND_CANCEL");
	cr_assert_lt(r.dst.r, 0);
	sev_pair_free(&src, &dst, ss, ds);
}

/* A guest that has not consented is not migrated: nothing moves. */
Test(engine, sev_guest_without_ready_is_refused_before_anything_moves, .timeout = 60)
{
	struct fvm src, dst;
	struct sev_dev *ss, *ds;
	struct result r;

	sev_pair(&src, &dst, &ss, &ds);
	sev_msr_write(ss, 0);
	migrate(&src, &dst, NULL, NULL, &r);
	cr_assert_eq(r.res.result, MIG_RESULT_FAILED);
	cr_assert(strstr(r.res.error, "has not set KVM_MIGRATION_READY"), "%s", r.res.error);
	expect_rolled_back(&src, &r);
	for (unsigned i = 0; i < 2; i++)
		cr_assert_eq(when(&src.cpu[i], C_PAUSING), -1, "a vCPU paused");
	cr_assert_eq(ss->core.state, SEV_RUNNING);
	cr_assert_eq(ss->pages_sent_enc, 0);
	sev_pair_free(&src, &dst, ss, ds);
}
#endif
