// SPDX-License-Identifier: MIT
/*
 * The VFIO class's sim backend (sim.h): the kernel's VFIO core checks and a
 * small driver behind them.  Its data stream is its own, as a driver's is:
 * records of a 24-byte header and a payload,
 *
 *   u32 magic "VSIM"  u16 kind  u16 0  u64 offset  u32 length  u32 sum
 *
 * kind 1: `length` bytes of its table from `offset`; kind 2 (last, once):
 * its operation count, DMA write count, last DMA page and the table's
 * digest.  `sum` is XXH32 of the payload.  A resume takes records as they
 * are written and checks them all when it leaves RESUMING: a bad magic is
 * EFAULT (as the kernel's mtty sample answers), anything else wrong or
 * missing EINVAL, and the device goes to ERROR.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "vfio-uapi.h"
#include "sim.h"
#include "util.h"

#define ST(x) VFIO_ST_##x
#define MAGIC 0x4d495356U        /* "VSIM" */
#define CHUNK 4096U
#define REC_TABLE 1
#define REC_FINAL 2
#define FIRST_FD 1000

struct rec {
	uint32_t magic;
	uint16_t kind, pad;
	uint64_t offset;
	uint32_t length, sum;
};
_Static_assert(sizeof(struct rec) == 24, "sim record");


static struct vfio_sim *sim_of(struct vfio_dev *v)
{
	return v->be_data;
}

static uint64_t chunks(const struct vfio_sim *s)
{
	return DIV_ROUND_UP(s->o.table_bytes, CHUNK);
}

static uint64_t dma_pages(const struct vfio_sim *s)
{
	return s->o.dma.length / 4096;
}

static bool running(int st)
{
	return st == ST(RUNNING) || st == ST(RUNNING_P2P) || st == ST(PRE_COPY) ||
	       st == ST(PRE_COPY_P2P);
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

/* What the DMA write number `seq` puts in its page. */
static void dma_fill(uint8_t *page, uint64_t seq)
{
	uint64_t *w = (uint64_t *)page;

	for (unsigned i = 0; i < 4096 / 8; i++)
		w[i] = seq * 0x9e3779b97f4a7c15ULL + i;
}

/* ---- the device working (under lock) ---- */

static void tick_locked(struct vfio_sim *s)
{
	uint64_t pos = mix(s->ops * 2 + s->o.seed) % s->o.table_bytes;

	s->ops++;
	s->table[pos] = (uint8_t)(s->ops ^ s->o.seed);
	s->table_dirty[pos / CHUNK / 64] |= 1ULL << (pos / CHUNK % 64);
	if (s->o.ram && dma_pages(s)) {
		uint64_t p = mix(s->ops * 2 + 1 + s->o.seed) % dma_pages(s);

		s->dma_seq++;
		s->last_page = p;
		dma_fill(s->o.ram + s->o.dma.iova + p * 4096, s->dma_seq);
		if (s->logging)
			s->log[p / 64] |= 1ULL << (p % 64);
	}
}

int vfio_sim_tick(struct vfio_sim *s)
{
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (running(s->state))
		tick_locked(s);
	else
		r = -EBUSY;
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void *dma_main(void *arg)
{
	struct vfio_sim *s = arg;
	uint64_t per_tick_ns = s->o.dma_rate ? 1000000000ULL / s->o.dma_rate : 1000000;

	pthread_setname_np(pthread_self(), "vfio-sim");
	pthread_mutex_lock(&s->lock);
	while (!s->quit) {
		struct timespec ts;

		if (running(s->state) && s->armed)
			tick_locked(s);
		ts = mig_timespec_after(CLOCK_REALTIME, per_tick_ns);
		pthread_cond_timedwait(&s->wake, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int vfio_sim_start_dma(struct vfio_sim *s)
{
	if (s->thread_on || !s->o.dma_rate)
		return 0;
	s->quit = false;
	if (pthread_create(&s->thread, NULL, dma_main, s) != 0)
		return -EAGAIN;
	s->thread_on = true;
	return 0;
}

void vfio_sim_arm(struct vfio_sim *s)
{
	pthread_mutex_lock(&s->lock);
	s->armed = true;
	pthread_mutex_unlock(&s->lock);
}

void vfio_sim_stop_dma(struct vfio_sim *s)
{
	if (!s->thread_on)
		return;
	pthread_mutex_lock(&s->lock);
	s->quit = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	s->thread_on = false;
}

/* ---- data sessions ---- */

static void session_close(struct vfio_sim *s)
{
	s->fd = -1;
	s->out_len = s->out_pos = 0;
	s->in_len = 0;
}

static int session_open(struct vfio_sim *s, bool save)
{
	session_close(s);
	s->fd = s->next_fd++;
	s->save = save;
	if (!save) {
		/* a resume builds its table on a copy of this one */
		memcpy(s->scratch, s->table, s->o.table_bytes);
		s->resume_err = 0;
		s->have_final = false;
	}
	if (save) {
		/* a new stream carries the whole table first */
		for (uint64_t c = 0; c < chunks(s); c++)
			s->table_dirty[c / 64] |= 1ULL << (c % 64);
		s->initial_done = false;
		s->initial_left = chunks(s) * sizeof(struct rec) + s->o.table_bytes;
		s->final_queued = false;
	}
	return s->fd;
}

static uint64_t table_digest(const struct vfio_sim *s)
{
	return XXH3_64bits(s->table, s->o.table_bytes);
}

static int queue(struct vfio_sim *s, uint16_t kind, uint64_t off, const void *p, uint32_t len)
{
	struct rec h = { MAGIC, kind, 0, off, len, XXH32(p, len, 0) };

	memcpy(s->out, &h, sizeof(h));
	memcpy(s->out + sizeof(h), p, len);
	s->out_len = sizeof(h) + len;
	s->out_pos = 0;
	return 0;
}

static int64_t first_dirty(const struct vfio_sim *s)
{
	for (uint64_t w = 0; w < DIV_ROUND_UP(chunks(s), 64); w++)
		if (s->table_dirty[w])
			return (int64_t)(w * 64 + (uint64_t)__builtin_ctzll(s->table_dirty[w]));
	return -1;
}

static uint64_t dirty_chunks(const struct vfio_sim *s)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < DIV_ROUND_UP(chunks(s), 64); w++)
		n += (uint64_t)__builtin_popcountll(s->table_dirty[w]);
	return n;
}

/* The next record into s->out: 1, or 0 when there is nothing (for now in
 * PRE_COPY, for good once STOP_COPY's last record went). */
static int produce(struct vfio_sim *s)
{
	int64_t c = first_dirty(s);

	if (c >= 0) {
		uint64_t off = (uint64_t)c * CHUNK;
		uint32_t len = (uint32_t)(s->o.table_bytes - off < CHUNK ? s->o.table_bytes - off :
					  CHUNK);
		int r;

		s->table_dirty[c / 64] &= ~(1ULL << (c % 64));
		r = queue(s, REC_TABLE, off, s->table + off, len);
		if (r < 0)
			return r;
		if (!s->initial_done) {
			s->initial_left -= sizeof(struct rec) + len;
			if (first_dirty(s) < 0)
				s->initial_done = true;
		}
		return 1;
	}
	s->initial_done = true;
	s->initial_left = 0;
	if (s->state == ST(STOP_COPY) && !s->final_queued) {
		struct vfio_sim_final f = { s->ops, s->dma_seq, s->last_page, table_digest(s) };

		s->final_queued = true;
		return queue(s, REC_FINAL, 0, &f, sizeof(f)) < 0 ? -ENOMEM : 1;
	}
	return 0;
}

static ssize_t sim_read(struct vfio_dev *v, int fd, void *buf, size_t n)
{
	struct vfio_sim *s = sim_of(v);
	ssize_t r = 0;

	pthread_mutex_lock(&s->lock);
	if (fd != s->fd || !s->save) {
		r = -EBADF;
	} else if (!vfio_state_saving(s->state)) {
		r = -EINVAL;
	} else {
		while ((size_t)r < n) {
			size_t k;

			if (s->out_pos == s->out_len) {
				int p = produce(s);

				if (p < 0) {
					r = p;
					break;
				}
				if (p == 0) {
					/* the pre-copy stream's temporary end */
					if (r == 0 && s->state != ST(STOP_COPY))
						r = -ENOMSG;
					break;
				}
			}
			k = s->out_len - s->out_pos < n - (size_t)r ? s->out_len - s->out_pos :
								     n - (size_t)r;
			memcpy((uint8_t *)buf + r, s->out + s->out_pos, k);
			s->out_pos += k;
			r += (ssize_t)k;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* One whole record of a resume, taken as it is written: checked, and a
 * table chunk applied to the scratch copy.  The first fault sticks and is
 * the answer of leaving RESUMING; nothing reaches the table before then. */
static void take_record(struct vfio_sim *s, const struct rec *h, const uint8_t *p)
{
	if (s->resume_err)
		return;
	if (h->magic != MAGIC)
		s->resume_err = -EFAULT;
	else if (h->sum != XXH32(p, h->length, 0) || s->have_final)
		s->resume_err = -EINVAL;
	else if (h->kind == REC_TABLE && h->offset <= s->o.table_bytes &&
		 h->length <= s->o.table_bytes - h->offset)
		memcpy(s->scratch + h->offset, p, h->length);
	else if (h->kind == REC_FINAL && h->length == sizeof(s->final)) {
		memcpy(&s->final, p, sizeof(s->final));
		s->have_final = true;
	} else
		s->resume_err = -EINVAL;
}

static ssize_t sim_write(struct vfio_dev *v, int fd, const void *buf, size_t n)
{
	struct vfio_sim *s = sim_of(v);
	const uint8_t *p = buf;
	ssize_t r = (ssize_t)n;

	pthread_mutex_lock(&s->lock);
	if (fd != s->fd || s->save) {
		r = -EBADF;
		goto out;
	}
	if (s->state != ST(RESUMING)) {
		r = -EINVAL;
		goto out;
	}
	/* whole records straight from the caller; a record cut by the end
	 * of a write waits in s->in for the rest */
	while (n) {
		struct rec h;
		size_t need, k;

		if (s->in_len < sizeof(h)) {
			k = sizeof(h) - s->in_len < n ? sizeof(h) - s->in_len : n;
			memcpy(s->in + s->in_len, p, k);
			s->in_len += k;
			p += k;
			n -= k;
			continue;
		}
		memcpy(&h, s->in, sizeof(h));
		if (h.magic != MAGIC || h.length > CHUNK) {
			/* nothing after a broken header can be framed */
			if (!s->resume_err)
				s->resume_err = h.magic != MAGIC ? -EFAULT : -EINVAL;
			s->in_len = 0;
			break;
		}
		need = sizeof(h) + h.length - s->in_len;
		k = need < n ? need : n;
		memcpy(s->in + s->in_len, p, k);
		s->in_len += k;
		p += k;
		n -= k;
		if (s->in_len == sizeof(h) + h.length) {
			take_record(s, &h, s->in + sizeof(h));
			s->in_len = 0;
		}
	}
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int sim_precopy_info(struct vfio_dev *v, int fd, struct vfio_precopy_info *info)
{
	struct vfio_sim *s = sim_of(v);
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (fd != s->fd || !s->save) {
		r = -EBADF;
	} else if (s->state != ST(PRE_COPY) && s->state != ST(PRE_COPY_P2P)) {
		r = -EINVAL;
	} else {
		uint64_t queued = s->out_len - s->out_pos;
		uint64_t dirty = dirty_chunks(s) * (sizeof(struct rec) + CHUNK);

		info->flags = 0;
		if (!s->initial_done) {
			info->initial_bytes = s->initial_left + queued;
			info->dirty_bytes = 0;
		} else {
			info->initial_bytes = 0;
			info->dirty_bytes = dirty + queued;
		}
		/* told to say less than it has */
		if (info->dirty_bytes >= s->o.overshoot)
			info->dirty_bytes -= s->o.overshoot;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void sim_close(struct vfio_dev *v, int fd)
{
	struct vfio_sim *s = sim_of(v);

	pthread_mutex_lock(&s->lock);
	if (fd == s->fd)
		session_close(s);
	pthread_mutex_unlock(&s->lock);
}

/* Leaving RESUMING: what was taken must end with the closing record, and
 * the table must be the one it names. */
static int resume_check(struct vfio_sim *s)
{
	const struct vfio_sim_final *f = &s->final;
	uint8_t *table = s->scratch;

	if (s->resume_err)
		return s->resume_err;
	if (s->in_len || !s->have_final || XXH3_64bits(table, s->o.table_bytes) != f->digest ||
	    (s->o.ram && f->last_page >= dma_pages(s) && f->dma_seq))
		return -EINVAL;
	/* taken whole: the scratch becomes the table */
	s->scratch = s->table;
	s->table = table;
	s->ops = f->ops;
	s->dma_seq = f->dma_seq;
	s->last_page = f->last_page;
	s->errors = 0;
	s->error_msg[0] = 0;
	return 0;
}

static void check_locked(struct vfio_sim *s)
{
	uint8_t want[4096];

	if (!s->o.ram || !s->dma_seq)
		return;
	dma_fill(want, s->dma_seq);
	if (memcmp(s->o.ram + s->o.dma.iova + s->last_page * 4096, want, sizeof(want)) &&
	    !s->errors++)
		snprintf(s->error_msg, sizeof(s->error_msg), "guest page %#llx does not hold DMA "
			 "write %llu, the last this device made",
			 (unsigned long long)((s->o.dma.iova >> 12) + s->last_page),
			 (unsigned long long)s->dma_seq);
}

uint64_t vfio_sim_check(struct vfio_sim *s)
{
	uint64_t n;

	pthread_mutex_lock(&s->lock);
	check_locked(s);
	n = s->errors;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- the driver's arcs, and the core's walk along them ---- */

static int arc(struct vfio_sim *s, int from, int to, int *fd)
{
	if (from == s->o.fail_from && to == s->o.fail_to) {
		s->state = s->o.fail_at;
		if (vfio_state_saving(from) && !vfio_state_saving(s->state))
			session_close(s);
		return -s->o.fail_errno;
	}
	if (from == ST(RESUMING)) {
		int r = resume_check(s);

		session_close(s);
		if (r < 0) {
			s->state = ST(ERROR);
			return r;
		}
		/* resumed: it checks itself against guest RAM, then works on */
		check_locked(s);
		s->armed = true;
	}
	if (vfio_arc_opens_session(from, to))
		*fd = session_open(s, to != ST(RESUMING));
	else if (vfio_state_saving(from) && !vfio_state_saving(to))
		session_close(s);
	s->state = to;
	return 0;
}

/* The driver's set_state: the core's path, one arc at a time; the fd of
 * the last arc that opened a session. */
static int set_state(struct vfio_sim *s, int target, int *fd)
{
	*fd = -1;
	while (s->state != target) {
		int next = vfio_next_step(s->o.flags, s->state, target);
		int r;

		if (next < 0)
			return -EINVAL;
		r = arc(s, s->state, next, fd);
		if (r < 0)
			return r;
	}
	return 0;
}

/* vfio_check_feature(): 1 to go on, 0 for a probe that passed, -EINVAL. */
static int check_feature(uint32_t flags, size_t argsz, uint32_t supported, size_t minsz)
{
	if ((flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)) & ~supported)
		return -EINVAL;
	if (flags & VFIO_DEVICE_FEATURE_PROBE)
		return 0;
	if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)))
		return -EINVAL;
	if (argsz < minsz)
		return -EINVAL;
	return 1;
}

static int log_start(struct vfio_sim *s, struct vfio_device_feature_dma_logging_control *c)
{
	const struct vfio_device_feature_dma_logging_range *rg =
		(const void *)(uintptr_t)c->ranges;

	if (c->num_ranges == 0)
		return -EINVAL;
	if (c->num_ranges > 4096 / sizeof(*rg))
		return -E2BIG;
	for (uint32_t i = 0; i < c->num_ranges; i++) {
		uint64_t end;

		if (!c->page_size || rg[i].iova % c->page_size || rg[i].length % c->page_size)
			return -EINVAL;
		if (__builtin_add_overflow(rg[i].iova, rg[i].length, &end))
			return -EOVERFLOW;
		for (uint32_t k = 0; k < i; k++)
			if (rg[i].iova < rg[k].iova + rg[k].length &&
			    rg[k].iova < rg[i].iova + rg[i].length)
				return -EINVAL;
	}
	if (s->logging)
		return -EBUSY;
	memset(s->log, 0, DIV_ROUND_UP(dma_pages(s), 64) * 8 + 8);
	s->logging = true;
	c->page_size = 4096;
	return 0;
}

/* REPORT: this device's writes inside [iova, iova + length), read and
 * cleared, as bits of page_size from iova. */
static int log_report(struct vfio_sim *s, const struct vfio_device_feature_dma_logging_report *rp)
{
	uint64_t *bitmap = (uint64_t *)(uintptr_t)rp->bitmap, end;

	if (rp->page_size < 4096 || (rp->page_size & (rp->page_size - 1)))
		return -EINVAL;
	if (__builtin_add_overflow(rp->iova, rp->length, &end))
		return -EOVERFLOW;
	if (!s->logging)
		return -EINVAL;
	if (s->o.lose_log) {
		s->o.lose_log = false;
		return -EIO;
	}
	for (uint64_t p = 0; p < dma_pages(s); p++) {
		uint64_t a = s->o.dma.iova + p * 4096, bit;

		if (!(s->log[p / 64] & (1ULL << (p % 64))) || a < rp->iova || a >= end)
			continue;
		s->log[p / 64] &= ~(1ULL << (p % 64));
		bit = (a - rp->iova) / rp->page_size;
		bitmap[bit / 64] |= 1ULL << (bit % 64);
	}
	return 0;
}

static int sim_feature(struct vfio_dev *v, struct vfio_device_feature *f)
{
	struct vfio_sim *s = sim_of(v);
	const uint32_t known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET |
			       VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
	size_t argsz;
	int r;

	if (f->argsz < sizeof(*f))
		return -EINVAL;
	if (f->flags & ~known)
		return -EINVAL;
	if (!(f->flags & VFIO_DEVICE_FEATURE_PROBE) && (f->flags & VFIO_DEVICE_FEATURE_SET) &&
	    (f->flags & VFIO_DEVICE_FEATURE_GET))
		return -EINVAL;
	argsz = f->argsz - sizeof(*f);
	pthread_mutex_lock(&s->lock);
	switch (f->flags & VFIO_DEVICE_FEATURE_MASK) {
	case VFIO_DEVICE_FEATURE_MIGRATION: {
		struct vfio_device_feature_migration m = { .flags = s->o.flags };

		r = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_GET, sizeof(m));
		if (r == 1) {
			memcpy(f->data, &m, sizeof(m));
			r = 0;
		}
		break;
	}
	case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: {
		struct vfio_device_feature_mig_state m;

		r = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET,
				  sizeof(m));
		if (r != 1)
			break;
		memcpy(&m, f->data, sizeof(m));
		if (f->flags & VFIO_DEVICE_FEATURE_GET) {
			m.device_state = (uint32_t)s->state;
			m.data_fd = -1;
			r = 0;
		} else {
			int fd = -1;

			r = m.device_state >= VFIO_ST_N ? -EINVAL :
			    set_state(s, (int)m.device_state, &fd);
			m.data_fd = r == 0 ? fd : -1;
		}
		memcpy(f->data, &m, sizeof(m));
		break;
	}
	case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: {
		struct vfio_device_feature_mig_data_size ds = {
			.stop_copy_length = chunks(s) * sizeof(struct rec) + s->o.table_bytes +
					    sizeof(struct rec) + sizeof(struct vfio_sim_final),
		};

		r = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_GET, sizeof(ds));
		if (r == 1) {
			memcpy(f->data, &ds, sizeof(ds));
			r = 0;
		}
		break;
	}
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_START: {
		struct vfio_device_feature_dma_logging_control c;

		if (s->o.no_log) {
			r = -ENOTTY;
			break;
		}
		r = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_SET, sizeof(c));
		if (r != 1)
			break;
		memcpy(&c, f->data, sizeof(c));
		r = log_start(s, &c);
		if (r == 0)
			memcpy(f->data, &c, sizeof(c));
		break;
	}
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
		if (s->o.no_log) {
			r = -ENOTTY;
			break;
		}
		r = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_SET, 0);
		if (r == 1) {
			s->logging = false;
			r = 0;
		}
		break;
	case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: {
		struct vfio_device_feature_dma_logging_report rp;

		if (s->o.no_log) {
			r = -ENOTTY;
			break;
		}
		r = check_feature(f->flags, argsz, VFIO_DEVICE_FEATURE_GET, sizeof(rp));
		if (r != 1)
			break;
		memcpy(&rp, f->data, sizeof(rp));
		r = log_report(s, &rp);
		break;
	}
	default:
		r = -ENOTTY;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int sim_reset(struct vfio_dev *v)
{
	struct vfio_sim *s = sim_of(v);

	pthread_mutex_lock(&s->lock);
	session_close(s);
	s->state = ST(RUNNING);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

const struct vfio_backend vfio_sim_backend = {
	.name = "sim", .feature = sim_feature, .data_read = sim_read, .data_write = sim_write,
	.precopy_info = sim_precopy_info, .data_close = sim_close, .reset = sim_reset,
};

int vfio_sim_init(struct vfio_sim *s, const struct vfio_sim_opts *o, struct mig_error *err)
{
	memset(s, 0, sizeof(*s));
	s->o = *o;
	if (!o->fail_errno)
		s->o.fail_from = s->o.fail_to = -1;
	if (!(o->flags & VFIO_F_STOP_COPY) || (o->flags & ~VFIO_F_KNOWN))
		return mig_error_set(err, -EINVAL, "sim device: flags %#x: STOP_COPY (1) and any "
				     "of P2P (2) and PRE_COPY (4)", o->flags);
	if (!o->table_bytes)
		s->o.table_bytes = 64 * 1024;
	if (o->ram && (o->dma.iova % 4096 || o->dma.length % 4096 || !o->dma.length))
		return mig_error_set(err, -EINVAL, "sim device: DMA range not page aligned");
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	s->state = ST(RUNNING);
	s->fd = -1;
	s->next_fd = FIRST_FD;
	s->table = malloc(s->o.table_bytes);
	s->scratch = calloc(1, s->o.table_bytes);
	s->out = calloc(1, sizeof(struct rec) + CHUNK);
	s->in = calloc(1, sizeof(struct rec) + CHUNK);
	s->table_dirty = calloc(DIV_ROUND_UP(chunks(s), 64), 8);
	s->log = calloc(DIV_ROUND_UP(dma_pages(s), 64) + 1, 8);
	if (!s->table || !s->scratch || !s->out || !s->in || !s->table_dirty || !s->log) {
		vfio_sim_fini(s);
		return mig_error_set(err, -ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < s->o.table_bytes; i++)
		s->table[i] = (uint8_t)mix(i + (uint64_t)s->o.seed * 0x10001);
	return 0;
}

void vfio_sim_fini(struct vfio_sim *s)
{
	vfio_sim_stop_dma(s);
	session_close(s);
	free(s->table);
	free(s->scratch);
	free(s->out);
	free(s->in);
	s->scratch = s->out = s->in = NULL;
	free(s->table_dirty);
	free(s->log);
	s->table = NULL;
	s->table_dirty = s->log = NULL;
}
