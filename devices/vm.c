// SPDX-License-Identifier: MIT
/* What the engines do with a VM's devices, whatever the backend. */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <migrate/policy.h>
#include <migrate/vm.h>
#include <migrate/wire-order.h>

#include "util.h"

/* A device with state adds about this much to the stop-and-copy (a vCPU's
 * state is about 9 KiB here, the platform's under 2 KiB). */
#define STATE_ALLOWANCE_BYTES 16384

extern const struct mig_vm_backend lab_backend;

static const struct mig_vm_backend *const backends[] = {
	&lab_backend,
};

const struct mig_vm_backend *mig_vm_backend_get(const char *name)
{
	for (unsigned i = 0; name && i < ARRAY_SIZE(backends); i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

int mig_vm_walk(struct mig_vm *vm, enum mig_stage stage, struct mig_walk *w,
		struct mig_error *err)
{
	return mig_devices_walk(vm->devices, vm->nr_devices, stage, w, err);
}

struct mig_device *mig_vm_find(struct mig_vm *vm, uint32_t cls, unsigned id)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->cls->id == cls && vm->devices[i]->id == id)
			return vm->devices[i];
	return NULL;
}

uint64_t mig_vm_pages(const struct mig_vm *vm)
{
	return vm->ram_bytes / 4096;
}

uint64_t mig_vm_bitmap_words(const struct mig_vm *vm)
{
	return DIV_ROUND_UP(mig_vm_pages(vm), 64);
}

int mig_vm_devices_dirty_sync(struct mig_vm *vm, uint64_t *bitmap, uint64_t *ret_count,
			      struct mig_error *err)
{
	uint64_t total = 0;
	bool lost = false;

	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];
		uint64_t n = 0;
		int r;

		if (!d->cls->dirty_ops)
			continue;
		r = mig_device_dirty_sync(d, bitmap, &n, err);
		if (r < 0)
			return r;
		lost |= r == MIG_DIRTY_LOST;
		total += n;
	}
	if (lost) {
		/* a log that lost track: every page goes again */
		memset(bitmap, 0xff, mig_vm_bitmap_words(vm) * 8);
		total = mig_vm_pages(vm);
	}
	if (ret_count)
		*ret_count = total;
	return lost ? MIG_DIRTY_LOST : 0;
}

int mig_vm_devices_dirty_start(struct mig_vm *vm, struct mig_error *err)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];
		int r;

		if (!d->cls->dirty_ops || !d->cls->dirty_ops->start)
			continue;
		r = d->cls->dirty_ops->start(d, err);
		if (r < 0) {
			for (unsigned k = 0; k < i; k++) {
				struct mig_device *e = vm->devices[k];

				if (e->cls->dirty_ops && e->cls->dirty_ops->stop)
					e->cls->dirty_ops->stop(e, NULL);
			}
			return mig_error_prefix(err, "starting the dirty tracking of %s %u",
						d->cls->name, d->id);
		}
	}
	return 0;
}

void mig_vm_devices_dirty_stop(struct mig_vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];

		if (d->cls->dirty_ops && d->cls->dirty_ops->stop)
			d->cls->dirty_ops->stop(d, NULL);
	}
}

unsigned mig_vm_throttled(const struct mig_vm *vm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->nr_devices; i++)
		n += vm->devices[i]->cls->throttle_ops != NULL;
	return n;
}

int mig_vm_throttle(struct mig_vm *vm, const uint32_t *pct, unsigned n, struct mig_error *err)
{
	int ret = 0;

	if (!n)
		return 0;
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];
		struct mig_error e = { 0 };
		uint32_t p;
		int r;

		if (!d->cls->throttle_ops)
			continue;
		p = n == 1 ? pct[0] : d->id < n ? pct[d->id] : 0;
		r = d->cls->throttle_ops->set(d, p, &e);
		if (r < 0 && !ret) {
			ret = r;
			if (err)
				*err = e;
		}
	}
	return ret;
}

/* The device whose class holds RAM for post-copy (the first one). */
static struct mig_device *pc_dev(struct mig_vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->cls->postcopy_ops)
			return vm->devices[i];
	return NULL;
}

int mig_vm_postcopy_check(struct mig_vm *vm, bool probe, struct mig_error *err)
{
	struct mig_device *pc = pc_dev(vm);

	for (unsigned i = 0; i < vm->nr_devices; i++) {
		const struct mig_device *d = vm->devices[i];

		if (d->cls->no_postcopy)
			return mig_error_set(err, -EOPNOTSUPP, "post-copy: this VM has %s %u, and %s; "
					     "use --converge throttle", d->cls->name, d->id,
					     d->cls->no_postcopy);
	}
	if (!pc)
		return mig_error_set(err, -EOPNOTSUPP, "post-copy: no device of this VM holds its "
				     "RAM so that it can run with pages missing; use --converge "
				     "throttle");
	return probe ? pc->cls->postcopy_ops->probe(pc, err) : 0;
}

int mig_vm_postcopy_begin(struct mig_vm *vm, const uint64_t *present, struct mig_error *err)
{
	struct mig_device *pc = pc_dev(vm);

	if (!pc)
		return mig_error_set(err, -EOPNOTSUPP, "post-copy: no device holds guest RAM");
	return pc->cls->postcopy_ops->begin(pc, present, err);
}

int mig_vm_postcopy_faults(struct mig_vm *vm, struct mig_pc_fault *ret, unsigned max,
			   int timeout_ms, struct mig_error *err)
{
	struct mig_device *pc = pc_dev(vm);

	return pc ? pc->cls->postcopy_ops->read_faults(pc, ret, max, timeout_ms, err) : 0;
}

int mig_vm_postcopy_place(struct mig_vm *vm, uint64_t pfn, const void *src, uint64_t n,
			  struct mig_error *err)
{
	struct mig_device *pc = pc_dev(vm);

	if (!pc)
		return mig_error_set(err, -EOPNOTSUPP, "post-copy: no device holds guest RAM");
	return pc->cls->postcopy_ops->place(pc, pfn, src, n, err);
}

bool mig_vm_postcopy_present(struct mig_vm *vm, uint64_t pfn)
{
	struct mig_device *pc = pc_dev(vm);

	return !pc || pc->cls->postcopy_ops->present(pc, pfn);
}

void mig_vm_postcopy_stats(struct mig_vm *vm, struct mig_pc_stats *ret)
{
	struct mig_device *pc = pc_dev(vm);

	memset(ret, 0, sizeof(*ret));
	if (pc)
		pc->cls->postcopy_ops->stats(pc, ret);
}

int mig_vm_postcopy_complete(struct mig_vm *vm, struct mig_error *err)
{
	struct mig_device *pc = pc_dev(vm);

	return pc ? pc->cls->postcopy_ops->complete(pc, err) : 0;
}

void mig_vm_postcopy_end(struct mig_vm *vm)
{
	struct mig_device *pc = pc_dev(vm);

	if (pc)
		pc->cls->postcopy_ops->end(pc);
}

unsigned mig_vm_dirty_by_vcpu(struct mig_vm *vm, uint64_t *per_vcpu, unsigned n)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];
		unsigned k;

		if (!d->cls->dirty_ops || !d->cls->dirty_ops->by_vcpu)
			continue;
		k = d->cls->dirty_ops->by_vcpu(d, per_vcpu, n);
		if (k)
			return k;
	}
	return 0;
}

uint64_t mig_vm_state_estimate(const struct mig_vm *vm)
{
	uint64_t bytes = 0;

	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];

		if (d->cls->precopy_ops && d->cls->precopy_ops->pending)
			bytes += d->cls->precopy_ops->pending(d);
		if (d->cls->ops->final_size)
			bytes += d->cls->ops->final_size(d);
		else if (d->cls->ops->save)
			bytes += STATE_ALLOWANCE_BYTES;
	}
	return bytes;
}

/* A hook's failure, named; a hook that said nothing still fails. */
static int hook_failed(const struct mig_device *d, uint64_t pfn, int r, struct mig_error *err)
{
	if (!err->code)
		mig_error_set(err, r, "%s", strerror(-r));
	return mig_error_prefix(err, "device %s %u: page %#llx", d->cls->name, d->id,
				(unsigned long long)pfn);
}

bool mig_vm_has_page_hooks(const struct mig_vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->cls->page_ops)
			return true;
	return false;
}

int mig_vm_page_encode(struct mig_vm *vm, uint64_t pfn, void *page, void *tag,
		       struct mig_error *err)
{
	int tagged = 0;

	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];
		int r;

		if (!d->cls->page_ops || !d->cls->page_ops->encode)
			continue;
		r = d->cls->page_ops->encode(d, pfn, page, tag, err);
		if (r < 0)
			return hook_failed(d, pfn, r, err);
		if (r > 0 && tagged)
			return hook_failed(d, pfn, mig_error_set(err, -EINVAL, "a second device "
								  "tagged the page"), err);
		tagged |= r > 0;
	}
	return tagged;
}

int mig_vm_page_decode(struct mig_vm *vm, uint64_t pfn, void *page, const void *tag,
		       struct mig_error *err)
{
	for (unsigned i = vm->nr_devices; i-- > 0;) {
		struct mig_device *d = vm->devices[i];
		int r;

		if (!d->cls->page_ops || !d->cls->page_ops->decode)
			continue;
		r = d->cls->page_ops->decode(d, pfn, page, tag, err);
		if (r < 0)
			return hook_failed(d, pfn, r, err);
	}
	return 0;
}

bool mig_vm_has_sessions(const struct mig_vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->cls->session_ops)
			return true;
	return false;
}

int mig_vm_session_pack(struct mig_vm *vm, enum mig_session_op op, struct mig_buf *out,
			struct mig_error *err)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];
		const struct mig_session_ops *so = d->cls->session_ops;
		struct mig_session_entry e = { .cls = d->cls->id, .instance = d->id };
		size_t at = out->len;
		int r;

		if (!so)
			continue;
		if (mig_buf_append(out, &e, sizeof(e)) < 0)
			return mig_error_set(err, -ENOMEM, "out of memory");
		r = (op == MIG_SESSION_ANSWER ? so->answer : so->open)(d, out, err);
		if (r < 0)
			return mig_error_prefix(err, "device %s %u", d->cls->name, d->id);
		e.len = (uint32_t)(out->len - at - sizeof(e));
		mig_wire_le(&mig_wl_session_entry, &e, 1);
		memcpy(out->data + at, &e, sizeof(e));
		if (out->len > MIG_SESSION_MAX)
			return mig_error_set(err, -E2BIG, "device %s %u: session data over %u bytes",
					     d->cls->name, d->id, MIG_SESSION_MAX);
	}
	return 0;
}

int mig_vm_session_unpack(struct mig_vm *vm, enum mig_session_op op, const uint8_t *p, size_t n,
			  struct mig_error *err)
{
	const char *what = op == MIG_SESSION_ANSWER ? "answer" : "open";
	size_t off = 0;

	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];
		const struct mig_session_ops *so = d->cls->session_ops;
		struct mig_session_entry e;
		int r;

		if (!so)
			continue;
		if (n - off < sizeof(e))
			return mig_error_set(err, -EBADMSG, "device %s %u: no %s data from the peer",
					     d->cls->name, d->id, what);
		memcpy(&e, p + off, sizeof(e));
		mig_wire_le(&mig_wl_session_entry, &e, 1);
		off += sizeof(e);
		if (e.cls != d->cls->id || e.instance != d->id || e.len > n - off)
			return mig_error_set(err, -EBADMSG, "device %s %u: the peer's %s data is for "
					     "class %u instance %u, %u bytes", d->cls->name, d->id,
					     what, e.cls, e.instance, e.len);
		r = (op == MIG_SESSION_ANSWER ? so->accept : so->opened)(d, p + off, e.len, err);
		if (r < 0)
			return mig_error_prefix(err, "device %s %u", d->cls->name, d->id);
		off += e.len;
	}
	if (off != n)
		return mig_error_set(err, -EBADMSG, "%zu bytes of %s data nobody takes", n - off,
				     what);
	return 0;
}

bool mig_vm_is_running(const struct mig_vm *vm)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		const struct mig_device *d = vm->devices[i];
		const struct mig_stage_step *st = mig_device_class_step(d->cls, MIG_STAGE_ROLLBACK);

		/* a running VM is where a rollback takes it */
		if (st && d->state != mig_device_target(d, st))
			return false;
	}
	return true;
}

/* ---- device state ---- */

/* The devices with state, in the order of their SAVE step (then list order). */
static unsigned state_order(struct mig_vm *vm, unsigned *out)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->nr_devices; i++) {
		const struct mig_device *d = vm->devices[i];
		const struct mig_stage_step *st = mig_device_class_step(d->cls, MIG_STAGE_SAVE);
		int order = st ? st->order : 0;
		unsigned at = n;

		if (!mig_device_has_state(d))
			continue;
		while (at > 0) {
			const struct mig_stage_step *p =
				mig_device_class_step(vm->devices[out[at - 1]]->cls, MIG_STAGE_SAVE);

			if ((p ? p->order : 0) <= order)
				break;
			out[at] = out[at - 1];
			at--;
		}
		out[at] = i;
		n++;
	}
	return n;
}

int mig_vm_save(struct mig_vm *vm, struct mig_buf *states, struct mig_error *err)
{
	unsigned order[vm->nr_devices ? vm->nr_devices : 1];
	unsigned n = state_order(vm, order);

	for (unsigned k = 0; k < n; k++) {
		struct mig_device *d = vm->devices[order[k]];
		struct mig_buf_writer bw;
		int r;

		states[order[k]].len = 0;
		mig_buf_writer_init(&bw, &states[order[k]]);
		r = mig_device_save(d, &bw.w, err);
		if (r < 0)
			return mig_error_prefix(err, "saving %s %u", d->cls->name, d->id);
	}
	return 0;
}

struct load_ctx {
	struct mig_vm *vm;
	const struct mig_buf *states;
	struct mig_mem_reader rd;
};

static struct mig_reader *state_of(void *arg, struct mig_device *d)
{
	struct load_ctx *c = arg;

	for (unsigned i = 0; i < c->vm->nr_devices; i++) {
		if (c->vm->devices[i] != d)
			continue;
		mig_mem_reader_init(&c->rd, c->states[i].data, c->states[i].len);
		return &c->rd.r;
	}
	return NULL;
}

int mig_vm_load(struct mig_vm *vm, const struct mig_buf *states, struct mig_walk *w,
		struct mig_error *err)
{
	struct load_ctx c = { .vm = vm, .states = states };
	int r;

	w->state_of = state_of;
	w->state_arg = &c;
	r = mig_vm_walk(vm, MIG_STAGE_LOAD, w, err);
	w->state_of = NULL;
	w->state_arg = NULL;
	return r;
}

/* A class's name for a message: this VM's own device of that class knows
 * it even when the class is not registered here. */
static void class_name(const struct mig_vm *vm, uint32_t id, char *out, size_t n)
{
	const char *name = mig_dev_class_to_string(id);

	for (unsigned i = 0; !name && i < vm->nr_devices; i++)
		if (vm->devices[i]->cls->id == id)
			name = vm->devices[i]->cls->name;
	if (name)
		snprintf(out, n, "%s", name);
	else
		snprintf(out, n, "class %#x", id);
}

/* ---- the whole VM's state in one buffer ---- */

struct state_head {
	uint64_t magic;
	uint32_t version;
	uint32_t count;
};
_Static_assert(sizeof(struct state_head) == 16, "state container header");

struct state_rec {
	uint32_t cls;
	uint32_t instance;
	uint32_t version;
	uint32_t flags;           /* 0 */
	uint64_t len;
};
_Static_assert(sizeof(struct state_rec) == 24, "state record");

int mig_vm_state_save(struct mig_vm *vm, struct mig_buf *out, struct mig_error *err)
{
	unsigned order[vm->nr_devices ? vm->nr_devices : 1];
	struct state_head h;
	struct mig_buf *states = calloc(vm->nr_devices ? vm->nr_devices : 1, sizeof(*states));
	size_t head_at = out->len;
	int r;
	unsigned count = state_order(vm, order);

	if (!states)
		return mig_error_set(err, -ENOMEM, "out of memory");
	/* little-endian, as documented (docs/devices.md) */
	h = (struct state_head){ htole64(MIG_STATE_MAGIC), htole32(MIG_STATE_VERSION),
				 htole32(count) };
	r = mig_vm_save(vm, states, err);
	if (r >= 0 && mig_buf_append(out, &h, sizeof(h)) < 0)
		r = mig_error_set(err, -ENOMEM, "out of memory");
	for (unsigned k = 0; r >= 0 && k < count; k++) {
		struct mig_device *d = vm->devices[order[k]];
		struct state_rec rec = { htole32(d->cls->id), htole32(d->id),
					 htole32(d->cls->version), 0,
					 htole64(states[order[k]].len) };

		if (mig_buf_append(out, &rec, sizeof(rec)) < 0 ||
		    mig_buf_append(out, states[order[k]].data, states[order[k]].len) < 0)
			r = mig_error_set(err, -ENOMEM, "out of memory");
		d->bytes = states[order[k]].len;
	}
	if (r < 0)
		out->len = head_at;
	for (unsigned i = 0; i < vm->nr_devices; i++)
		mig_buf_free(&states[i]);
	free(states);
	return r;
}

/* Every record names one device of this VM with state, once, in its
 * class's version; every such device has one; nothing trails.  Each
 * device's record becomes a view in states[]. */
static int state_check(struct mig_vm *vm, const uint8_t *p, size_t n, struct mig_buf *states,
		       struct mig_error *err)
{
	bool seen[vm->nr_devices ? vm->nr_devices : 1];
	struct state_head h;
	size_t pos = sizeof(h);

	memset(seen, 0, sizeof(seen));
	if (n < sizeof(h))
		return mig_error_set(err, -EINVAL, "device state: %zu bytes, shorter than its "
				     "16-byte header", n);
	memcpy(&h, p, sizeof(h));
	h.magic = le64toh(h.magic);
	h.version = le32toh(h.version);
	h.count = le32toh(h.count);
	if (h.magic != MIG_STATE_MAGIC)
		return mig_error_set(err, -EINVAL, "device state: bad magic %#llx (not a "
				     "migratectl device state)", (unsigned long long)h.magic);
	if (h.version != MIG_STATE_VERSION)
		return mig_error_set(err, -EPROTO, "device state: container version %u, this build "
				     "reads version %u", h.version, MIG_STATE_VERSION);
	if (h.count > vm->nr_devices)
		return mig_error_set(err, -EINVAL, "device state holds %u records, this VM has %u "
				     "devices", h.count, vm->nr_devices);
	for (uint32_t k = 0; k < h.count; k++) {
		struct state_rec rec;
		unsigned i;

		if (n - pos < sizeof(rec))
			return mig_error_set(err, -EINVAL, "device state truncated in record %u "
					     "(offset %zu of %zu)", k, pos, n);
		memcpy(&rec, p + pos, sizeof(rec));
		rec = (struct state_rec){ le32toh(rec.cls), le32toh(rec.instance),
					  le32toh(rec.version), le32toh(rec.flags),
					  le64toh(rec.len) };
		pos += sizeof(rec);
		for (i = 0; i < vm->nr_devices; i++)
			if (vm->devices[i]->cls->id == rec.cls && vm->devices[i]->id == rec.instance)
				break;
		if (i == vm->nr_devices || !mig_device_has_state(vm->devices[i])) {
			char cname[32];

			class_name(vm, rec.cls, cname, sizeof(cname));
			return mig_error_set(err, -EINVAL, "device state: record %u is for %s %u, "
					     "which this VM does not have", k, cname, rec.instance);
		}
		if (seen[i])
			return mig_error_set(err, -EINVAL, "device state: two records for %s %u",
					     vm->devices[i]->cls->name, rec.instance);
		if (rec.version != vm->devices[i]->cls->version)
			return mig_error_set(err, -EPROTO, "device state: %s %u is in version %u of "
					     "its class, this build reads version %u",
					     vm->devices[i]->cls->name, rec.instance, rec.version,
					     vm->devices[i]->cls->version);
		if (rec.flags)
			return mig_error_set(err, -EINVAL, "device state: record %u has unknown "
					     "flags %#x", k, rec.flags);
		if (rec.len > n - pos || rec.len > MIG_DEVICE_STATE_MAX)
			return mig_error_set(err, -EINVAL, "device state: %s %u claims %llu bytes, "
					     "only %zu remain", vm->devices[i]->cls->name,
					     rec.instance, (unsigned long long)rec.len, n - pos);
		seen[i] = true;
		/* a view: never grown or freed */
		states[i] = (struct mig_buf){ (uint8_t *)p + pos, (size_t)rec.len, 0 };
		pos += (size_t)rec.len;
	}
	if (pos != n)
		return mig_error_set(err, -EINVAL, "device state: %zu trailing bytes", n - pos);
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (mig_device_has_state(vm->devices[i]) && !seen[i])
			return mig_error_set(err, -EINVAL, "device state: nothing for %s %u",
					     vm->devices[i]->cls->name, vm->devices[i]->id);
	return 0;
}

int mig_vm_state_load(struct mig_vm *vm, const uint8_t *p, size_t n, struct mig_walk *w,
		      struct mig_error *err)
{
	struct mig_buf states[vm->nr_devices ? vm->nr_devices : 1];
	int r;

	memset(states, 0, sizeof(states));
	/* The container is checked before any device loads. */
	r = state_check(vm, p, n, states, err);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < vm->nr_devices; i++)
		vm->devices[i]->bytes = states[i].len;
	return mig_vm_load(vm, states, w, err);
}

/* ---- the device manifest ---- */

int mig_vm_manifest(struct mig_vm *vm, struct mig_buf *out, struct mig_error *err)
{
	for (unsigned i = 0; i < vm->nr_devices; i++) {
		struct mig_device *d = vm->devices[i];
		struct mig_manifest_entry e = {
			.cls = d->cls->id, .instance = d->id, .version = d->cls->version,
			.flags = mig_device_has_state(d) ? MIG_MANIFEST_F_STATE : 0,
		};
		int r;

		if (d->cls->compat_ops && d->cls->compat_ops->describe) {
			struct mig_buf desc = { 0 };

			r = d->cls->compat_ops->describe(d, &desc, err);
			if (r >= 0 && desc.len > sizeof(e.desc))
				r = mig_error_set(err, -E2BIG, "%s %u: a description of %zu bytes, "
						  "at most %zu", d->cls->name, d->id, desc.len,
						  sizeof(e.desc));
			if (r >= 0 && desc.len)
				memcpy(e.desc, desc.data, desc.len);
			e.desc_len = (uint32_t)desc.len;
			mig_buf_free(&desc);
			if (r < 0)
				return r;
		}
		mig_wire_le(&mig_wl_manifest_entry, &e, 1);
		r = mig_buf_append(out, &e, sizeof(e));
		if (r < 0)
			return mig_error_set(err, r, "out of memory");
	}
	return 0;
}

/* Entry k of the manifest against this VM: its device (into *ret), of this
 * build's version and flags, listed once. */
static int manifest_entry(struct mig_vm *vm, const uint8_t *p, uint32_t k, bool *seen,
			  struct mig_manifest_entry *e, struct mig_device **ret, char *cname,
			  size_t cn, struct mig_error *err)
{
	struct mig_device *d = NULL;
	unsigned i;

	memcpy(e, p + (size_t)k * sizeof(*e), sizeof(*e));
	mig_wire_le(&mig_wl_manifest_entry, e, 1);
	for (i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->cls->id == e->cls && vm->devices[i]->id == e->instance) {
			d = vm->devices[i];
			break;
		}
	class_name(vm, e->cls, cname, cn);
	if (!d)
		return mig_error_set(err, -ENODEV, "device %s %u: the source's VM has it, "
				     "this one does not", cname, e->instance);
	if (seen[i])
		return mig_error_set(err, -EBADMSG, "device %s %u: listed twice", cname,
				     e->instance);
	seen[i] = true;
	if (e->version != d->cls->version)
		return mig_error_set(err, -EPROTO, "device %s %u: the source's state is "
				     "version %u of its class, this build reads version %u: "
				     "upgrade the older side", cname, e->instance, e->version,
				     d->cls->version);
	if ((e->flags & ~MIG_MANIFEST_F_KNOWN) ||
	    !!(e->flags & MIG_MANIFEST_F_STATE) != mig_device_has_state(d))
		return mig_error_set(err, -EPROTO, "device %s %u: flags %#x do not match "
				     "this build's class", cname, e->instance, e->flags);
	if (e->desc_len > sizeof(e->desc))
		return mig_error_set(err, -EBADMSG, "device %s %u: a description of %u "
				     "bytes", cname, e->instance, e->desc_len);
	*ret = d;
	return 0;
}

/* A refusal on a host its agent describes otherwise than its KVM does
 * (agent --host-profile) says so: the operator must not go looking for a
 * missing feature on a host that has it. */
static void profile_note(struct mig_error *err)
{
	static const char note[] = " [this host as its agent's --host-profile describes it]";
	size_t len = strnlen(err->msg, sizeof(err->msg));

	if (compat_profile_get() && len + sizeof(note) <= sizeof(err->msg))
		memcpy(err->msg + len, note, sizeof(note));
}

/* The first device of this VM the manifest did not list, or -1. */
static int manifest_unseen(const struct mig_vm *vm, const bool *seen)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (!seen[i])
			return (int)i;
	return -1;
}

/*
 * The manifest against this VM.  With report NULL (SETUP) the first
 * problem is the error; with report (a dry run) every policy of every
 * device is run and reported, and the return is how many refused.
 */
static int manifest_walk(struct mig_vm *vm, const uint8_t *p, size_t n, uint32_t count,
			 mig_compat_report_fn report, void *arg, struct mig_error *err)
{
	bool seen[vm->nr_devices ? vm->nr_devices : 1];
	unsigned refused = 0;
	char cname[32];
	int u;

	if (n != (size_t)count * sizeof(struct mig_manifest_entry))
		return mig_error_set(err, -EBADMSG, "the device manifest is %zu bytes for %u "
				     "devices", n, count);
	memset(seen, 0, sizeof(seen));
	for (uint32_t k = 0; k < count; k++) {
		const struct mig_compat_ops *c;
		struct mig_manifest_entry e;
		struct mig_device *d = NULL;
		struct mig_error one = { 0 };
		int r = manifest_entry(vm, p, k, seen, &e, &d, cname, sizeof(cname),
				       report ? &one : err);

		if (r < 0 && !report)
			return r;
		if (r < 0) {
			refused++;
			report(arg, e.cls, e.instance, "devices", r, one.msg);
			continue;
		}
		c = d->cls->compat_ops;
		if (!c || !c->check)
			continue;
		if (!report) {
			r = c->check(d, e.desc, e.desc_len, err);
			if (r < 0) {
				profile_note(err);
				return mig_error_prefix(err, "device %s %u", cname, e.instance);
			}
			continue;
		}
		/* each policy alone; a class without names is one, its own */
		for (unsigned i = 0; i == 0 || (c->policies && c->policies[i]); i++) {
			const char *name = c->policies && c->policies[0] ? c->policies[i] :
					   d->cls->name;

			mig_error_clear(&one);
			r = c->check_one ? c->check_one(d, e.desc, e.desc_len, i, &one) :
			    c->check(d, e.desc, e.desc_len, &one);
			if (r < 0) {
				refused++;
				profile_note(&one);
			}
			report(arg, e.cls, e.instance, name, r, one.msg);
		}
	}
	while ((u = manifest_unseen(vm, seen)) >= 0) {
		struct mig_error one = { 0 };

		seen[u] = true;
		mig_error_set(report ? &one : err, -ENODEV, "device %s %u: this VM has it, the "
			      "source's does not", vm->devices[u]->cls->name, vm->devices[u]->id);
		if (!report)
			return -ENODEV;
		refused++;
		report(arg, vm->devices[u]->cls->id, vm->devices[u]->id, "devices", one.code,
		       one.msg);
	}
	return (int)refused;
}

int mig_vm_manifest_check(struct mig_vm *vm, const uint8_t *p, size_t n, uint32_t count,
			  struct mig_error *err)
{
	return manifest_walk(vm, p, n, count, NULL, NULL, err);
}

int mig_vm_manifest_report(struct mig_vm *vm, const uint8_t *p, size_t n, uint32_t count,
			   mig_compat_report_fn report, void *arg, struct mig_error *err)
{
	return manifest_walk(vm, p, n, count, report, arg, err);
}

void *mig_vm_run_watch(struct mig_vm *vm, mig_vcpu_run_fn fn, void *arg)
{
	void *old;

	pthread_mutex_lock(&vm->run_lock);
	old = vm->run_fn ? vm->run_arg : NULL;
	vm->run_fn = fn;
	vm->run_arg = arg;
	for (unsigned i = 0; fn && i < vm->run_nr_pending; i++)
		fn(arg, vm, &vm->run_pending[i]);
	if (fn)
		vm->run_nr_pending = 0;
	pthread_mutex_unlock(&vm->run_lock);
	return old;
}

/* Under the lock, so a watcher sees each vCPU's events in order and never
 * one after the VM's end. */
void mig_vm_run_event(struct mig_vm *vm, const struct mig_vcpu_run *e)
{
	pthread_mutex_lock(&vm->run_lock);
	if (e->kind == MIG_VCPU_RUN_STOP && e->monotonic_ns >= vm->run_last_stop.monotonic_ns)
		vm->run_last_stop = *e;
	if (vm->run_fn)
		vm->run_fn(vm->run_arg, vm, e);
	else if (vm->run_nr_pending < MIG_VM_RUN_PENDING)
		vm->run_pending[vm->run_nr_pending++] = *e;
	else
		vm->run_dropped++;
	pthread_mutex_unlock(&vm->run_lock);
}

bool mig_vm_run_last_stop(struct mig_vm *vm, uint64_t *ret_monotonic_ns, uint64_t *ret_realtime_ns)
{
	bool any;

	pthread_mutex_lock(&vm->run_lock);
	any = vm->run_last_stop.kind != 0;
	*ret_monotonic_ns = vm->run_last_stop.monotonic_ns;
	*ret_realtime_ns = vm->run_last_stop.realtime_ns;
	pthread_mutex_unlock(&vm->run_lock);
	return any;
}

void mig_vm_run_end(struct mig_vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	if (vm->run_fn)
		vm->run_fn(vm->run_arg, vm, NULL);
	vm->run_fn = NULL;
	pthread_mutex_unlock(&vm->run_lock);
}
