// SPDX-License-Identifier: MIT
/*
 * The destination side of a migration.  It accepts the control stream and
 * the N data streams through the handshake (transport/handshake.c), which
 * refuses and counts any connection that does not prove it holds this
 * migration's secret, builds the VM with
 * pre-faulted RAM, and writes received pages straight into it.  The main
 * thread serves the control stream; each data stream has a worker thread
 * with its own io_uring, started once SETUP has built the VM.
 *
 * Pages of round r+1 may overtake pages of round r on another stream; the
 * ROUND_END barrier (every data stream must reach it before any stream is read
 * further) keeps an older copy of a page from landing on a newer one.  A
 * worker that fails, and the one that completes the last round's barrier,
 * wakes the main thread through a socket pair that the main thread's ring
 * also waits on.
 * Nothing of a frame is applied before its header, checksum and contents
 * have been checked.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if HAVE_ZSTD
#include <zstd.h>
#endif

#include <migrate/aead.h>
#include <migrate/wire-order.h>

#include "util.h"
#include "engine-internal.h"

#define PAGE ((uint64_t)MIG_PAGE_SIZE)
#define POLL_MS 100
#define IDLE_TIMEOUT_MS 120000
/* Post-copy broke: how long the destination waits for the source to make
 * the link again, its vCPUs waiting on their missing pages meanwhile. */
#define PC_RECOVER_WAIT_MS (10 * 60 * 1000)
#define HEALTH_CHECK_MS 300
/* A guest with a working set that has not completed a pass yet gets this
 * long before it is called stuck: on a loaded host its vCPUs may wait for a
 * core.  A guest without one never completes a pass, and is not waited for. */
#define HEALTH_CHECK_MAX_MS 3000

struct dst;

struct rx_stream {
	struct dst *owner;
	unsigned index;
	int fd;
	struct xport_ring *ring;  /* the main thread's for the control stream */
	struct mig_error *err;    /* likewise */
	struct xport_chan_rx rx;  /* its frames as they come in */
	uint32_t round;           /* data streams: the round being received */
	bool final;
	uint64_t frames;          /* PAGES and DEVICE_DATA frames in the current round */
	/* the PAGES frame whose data is being received */
	struct mig_pages_hdr ph;
	struct mig_page_ent ent[MIG_BATCH_PAGES];
	uint8_t *tags;            /* its pages' tags (with page hooks) */
	struct iovec runs[MIG_BATCH_PAGES];
	int nruns;
	struct xport_worker xw;   /* a data stream's worker: its thread and ring */
	struct mig_error own_err;
	uint8_t *scratch;         /* decompressed page data */
	uint8_t *stage;           /* post-copy: raw page data, before it is placed */
#if HAVE_ZSTD
	ZSTD_DCtx *dctx;
#endif
	struct xport_chan_tx tx;  /* the control stream's sends (one at a time) */
};

struct dst {
	const struct mig_in_opts *o;
	struct mig_error err;
	struct xport_ring ring;
	struct rx_stream *st;     /* [0] control, [1..n] data */
	unsigned n;
	/* each stream's keys when the source sealed it ([0] control) */
	struct xport_aead *aead[MIG_MAX_STREAMS + 1];
	uint64_t rejected;
	struct mig_vm *vm;
	uint8_t *ram;
	uint64_t nr_pages;
	/* Pages whose latest copy came in a LIVE frame and failed its sum:
	 * each must arrive again, intact, before the VM may load.  The
	 * workers update both atomically. */
	uint64_t *stale;
	uint64_t nr_stale;
	uint64_t torn_pages;      /* atomic */
	/* The round barrier and the workers' fate, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t advance;
	uint32_t round;           /* the round the data streams are in */
	unsigned arrived;         /* streams at this round's barrier */
	uint32_t round_final;     /* what the first of them said (ROUND_END's final) */
	bool all_final;           /* every stream delivered its last round */
	uint32_t final_kind;      /* and what that round's ROUND_END said */
	bool stop;                /* main or a worker failed: the rest end (atomic) */
	struct mig_error werr;    /* the first worker failure */
	uint64_t last_data_ms;    /* atomic: when a worker last got bytes */
	/* the workers wake the main thread by writing to note[1] */
	int note[2];
	uint8_t note_byte;
	struct xport_op note_op;
	/* Device state as it arrives, indexed like vm->devices: final state
	 * gathered in states[] until its END, pre-copy data loaded as it comes.
	 * Under dev_lock: a hostile source may send one device on two streams. */
	pthread_mutex_t dev_lock;
	struct mig_buf *states;
	struct dev_rx {
		uint64_t offset[2];   /* bytes taken: pre-copy, final */
		bool ended;
	} *dev_rx;
	/* SETUP -> PRECOPY (READY sent) -> STOP_COPY (loading) -> COMMIT ->
	 * DONE (running here), or ROLLBACK (the copy is discarded); through
	 * mig_phase_arc_allowed(), like the source's. */
	enum mig_phase phase;
	bool load_ok;             /* LOADED went out with status >= 0 */
	bool verify;
	bool page_sums;           /* check each page against its entry's sum */
	bool page_hooks;          /* a device turns pages back (mig_page_ops) */
	bool sessions, opened;    /* a device agrees with its peer first; OPEN came */
	struct mig_buf answers;   /* READY with the devices' answers */
	/* Same-host hand-over (engine/handover.c): READY took the source's
	 * offer; the memfd peeked from HANDOVER's bytes (-1: none yet); RAM
	 * mapped from it.  No page may come, and no load happens before. */
	bool handover, handover_peek, handover_taken;
	int handover_fd;
	uint64_t cpu0, workers_cpu_ms;
	/* Post-copy (docs/phases.md §2.2): POSTCOPY's bitmap of the pages
	 * still to come; the workers place pages (pc_place) once the vCPUs
	 * run; the fault thread asks the source for what they wait on, and
	 * when (asked_ns, per page, 0: never).  Counts are atomic. */
	bool pc, pc_place;
	uint64_t *pc_todo;
	uint64_t pc_to_come;
	uint64_t *pc_asked_ns;
	uint64_t pc_sum[2];       /* order-free digest, under --verify */
	uint64_t pc_faults, pc_requested, pc_worst_ns, pc_pages;
	uint64_t pc_t0;           /* CLOCK_MONOTONIC ns the vCPUs started */
	uint32_t pc_breaks;       /* links lost and made again */
	bool pc_held;             /* the vCPUs held while the link is down */
	pthread_t pc_thread;
	bool pc_thread_on;
	atomic_bool pc_stop;
	struct mig_running pc_run; /* RUNNING kind 1 as sent */
	/* completions that arrived while ctl_send waited for its previous send */
	struct xport_op *stash[64];
	unsigned nstash;
};

/* The fault hook, for the walks (NULL in production). */
static struct mig_walk walk_opts(const struct dst *d)
{
	return (struct mig_walk){ .fault = d->o->fault, .fault_arg = d->o->fault_arg };
}

void mig_dest_status_read(const struct mig_dest_status *st, uint32_t *ret_phase,
			  uint32_t *ret_round, uint64_t *ret_bytes, char *peer, size_t n)
{
	*ret_phase = __atomic_load_n(&st->phase, __ATOMIC_RELAXED);
	*ret_round = __atomic_load_n(&st->round, __ATOMIC_RELAXED);
	*ret_bytes = __atomic_load_n(&st->pages, __ATOMIC_RELAXED) * PAGE;
	if (n)
		peer[0] = '\0';
	if (n && __atomic_load_n(&st->peer_set, __ATOMIC_ACQUIRE))
		str_copy(peer, n, st->peer);
}

static int fault_at(struct dst *d, struct mig_fault_point p, struct mig_error *err)
{
	return d->o->fault ? d->o->fault(d->o->fault_arg, &p, err) : 0;
}

/* Every phase change: checked against the table, offered to the fault
 * hook, published for MIG_LIST. */
static int set_phase(struct dst *d, enum mig_phase p)
{
	int r;

	if (d->phase != p && !mig_phase_arc_allowed(d->phase, p))
		return mig_error_set(&d->err, -EINVAL, "internal: no phase transition %s => %s",
				     mig_phase_to_string(d->phase), mig_phase_to_string(p));
	r = fault_at(d, (struct mig_fault_point){ .kind = MIG_FAULT_PHASE, .from = (int)d->phase,
						   .to = (int)p }, &d->err);
	if (r < 0)
		return r;
	d->phase = p;
	if (d->o->status)
		__atomic_store_n(&d->o->status->phase, p, __ATOMIC_RELAXED);
	return 0;
}

static void publish_peer(struct dst *d, int fd)
{
	struct mig_dest_status *st = d->o->status;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (!st || getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(st->peer, sizeof(st->peer), "%s:%u", host, port);
	} else if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(st->peer, sizeof(st->peer), "[%s]:%u", host, port);
	}
	__atomic_store_n(&st->peer_set, true, __ATOMIC_RELEASE);
}

/* A stream has proven itself: the control stream names the peer. */
static void on_stream(void *ctx, unsigned index, int fd)
{
	if (index == 0)
		publish_peer(ctx, fd);
}

/* Accept the control stream and every data stream (the handshake answers,
 * closes and counts impostors) and hand them to the rings. */
static int accept_streams(struct dst *d, uint32_t timeout_ms)
{
	struct xport_streams who = { .id = d->o->id, .secret = d->o->secret, .n = d->n,
				     .on_stream = on_stream, .ctx = d, .cancel = d->o->cancel,
				     .encrypt = d->o->encrypt, .aeads = d->aead,
				     .timeout_ms = timeout_ms };
	int fds[MIG_MAX_STREAMS + 1];
	int r = xport_streams_accept(d->o->listen_fd, &who, fds, &d->rejected, &d->err);

	if (r < 0)
		return r;
	for (unsigned k = 0; k <= d->n; k++) {
		d->st[k].fd = fds[k];
		d->st[k].rx.fd = fds[k];
		d->st[k].rx.seq = 1;
		d->st[k].tx.fd = fds[k];
		d->st[k].tx.seq = 1;
		d->st[k].rx.aead = d->aead[k];
		d->st[k].tx.aead = d->aead[k];
	}
	return 0;
}

static int post_hdr(struct rx_stream *s)
{
	return xport_chan_rx_hdr(&s->rx, s->err);
}

static int ctl_send(struct dst *d, uint16_t type, const void *p, size_t len)
{
	struct rx_stream *s = &d->st[0];
	int r;

	/* Replies are strictly one at a time: wait for the previous one. */
	for (int waited = 0; s->tx.busy; ) {
		struct xport_op *op;

		r = xport_ring_wait(&d->ring, 1000, &op, &d->err);
		if (r == -ETIME && ++waited < IDLE_TIMEOUT_MS / 1000)
			continue;
		if (r == -ETIME)
			return mig_error_set(&d->err, -ETIMEDOUT, "the source has not read our "
					     "replies for %d s", IDLE_TIMEOUT_MS / 1000);
		if (!op)
			return r;
		if (xport_chan_sent(&s->tx, op)) {
			if (op->res < 0)
				return mig_error_set(&d->err, op->res, "replying to the source: %s",
						     strerror(-op->res));
		} else if (d->nstash < ARRAY_SIZE(d->stash)) {
			/* a receive finished meanwhile: run_loop handles it next */
			d->stash[d->nstash++] = op;
		} else {
			return mig_error_set(&d->err, -EOVERFLOW, "too many completions while replying");
		}
	}
	r = fault_at(d, (struct mig_fault_point){ .kind = MIG_FAULT_FRAME_SEND, .frame_type = type,
						   .stream = 0, .seq = s->tx.seq + 1 }, &d->err);
	if (r < 0)
		return r;
	/* The copy stays put until the send completes (the next call waits). */
	return xport_chan_send(&s->tx, &d->ring, type, p, len, &d->err);
}

/* ctl_send() of one struct of layout l, in the wire's byte order. */
static int ctl_send_le(struct dst *d, uint16_t type, const struct mig_wire_layout *l,
		       const void *p)
{
	uint8_t w[512];

	_Static_assert(sizeof(struct mig_reply) <= sizeof(w) && sizeof(struct mig_loaded) <=
		       sizeof(w) && sizeof(struct mig_running) <= sizeof(w), "ctl_send_le");
	if (l->size > sizeof(w))
		return mig_error_set(&d->err, -EINVAL, "internal: a %zu-byte %s", l->size, l->name);
	memcpy(w, p, l->size);
	mig_wire_le(l, w, 1);
	return ctl_send(d, type, w, l->size);
}

/* Atomic: within a round the source sends a page on one stream only, but
 * the words of the set are shared.  Mostly a plain read: a page that was
 * never stale needs no locked instruction. */
static void stale_mark(struct dst *d, uint64_t pfn, bool stale)
{
	uint64_t bit = 1ULL << (pfn % 64), *w = &d->stale[pfn / 64], old;

	if (!!(__atomic_load_n(w, __ATOMIC_RELAXED) & bit) == stale)
		return;
	old = stale ? __atomic_fetch_or(w, bit, __ATOMIC_RELAXED) :
		      __atomic_fetch_and(w, ~bit, __ATOMIC_RELAXED);
	if (stale && !(old & bit))
		__atomic_fetch_add(&d->nr_stale, 1, __ATOMIC_RELAXED);
	else if (!stale && (old & bit))
		__atomic_fetch_sub(&d->nr_stale, 1, __ATOMIC_RELAXED);
}

static uint64_t first_stale(const struct dst *d)
{
	for (uint64_t w = 0; w < DIV_ROUND_UP(d->nr_pages, 64); w++)
		if (d->stale[w])
			return w * 64 + (uint64_t)__builtin_ctzll(d->stale[w]);
	return 0;
}

/* The meta of a PAGES frame is in (its checksum checked).  Check all of it
 * before touching guest RAM, clear the zero pages, then receive the data:
 * raw pages straight into guest RAM, zstd into a buffer. */
static int pages_meta(struct dst *d, struct rx_stream *s)
{
	struct mig_pages_hdr ph;
	struct iovec iov;
	int r;

	/* (read by the workers: d->handover is set before any is started) */
	if (d->handover)
		return mig_error_set(s->err, -EPROTO, "stream %u: PAGES in a hand-over: guest "
				     "RAM is the source's own memory here, and no page may be "
				     "written into it", s->index);
	r = mig_pages_meta_check(s->rx.buf.data, s->rx.hdr.length, s->rx.hdr.flags, s->round, d->nr_pages,
				 s->index, &ph, s->ent, s->tags, s->err);
	if (r < 0)
		return r;
	if (s->rx.aead && s->rx.trailer != ph.data_len)
		return mig_error_set(s->err, -EBADMSG, "stream %u: sealed PAGES frame seq %llu says "
				     "%llu bytes follow it, its page list %u", s->index,
				     (unsigned long long)s->rx.hdr.seq,
				     (unsigned long long)s->rx.trailer, ph.data_len);
	s->ph = ph;
	s->nruns = 0;
	if (d->pc_place) {
		/* guest RAM is missing here: the data lands in the stream's
		 * staging buffer and is placed from there */
		if (!s->stage && !(s->stage = malloc(MIG_BATCH_PAGES * PAGE)))
			return mig_error_set(s->err, -ENOMEM, "out of memory");
		if (ph.count > ph.zero_count)
			s->runs[s->nruns++] = (struct iovec){ s->stage,
							      (size_t)(ph.count - ph.zero_count) * PAGE };
	}
	for (unsigned i = 0; i < ph.count && !d->pc_place; i++) {
		uint8_t *page = d->ram + (s->ent[i].page & ~MIG_PAGE_FLAGS) * PAGE;
		struct iovec *last = s->nruns ? &s->runs[s->nruns - 1] : NULL;

		if (s->ent[i].page & MIG_PAGE_ZERO)
			memset(page, 0, PAGE);
		else if (last && (uint8_t *)last->iov_base + last->iov_len == page)
			last->iov_len += PAGE;
		else
			s->runs[s->nruns++] = (struct iovec){ page, PAGE };
	}
	if (!ph.data_len)
		return 1;
	if (s->rx.hdr.flags & MIG_FRAME_F_ZSTD) {
		s->rx.buf.len = 0;
		if (mig_buf_reserve(&s->rx.buf, ph.data_len) < 0)
			return mig_error_set(s->err, -ENOMEM, "out of memory");
		iov = (struct iovec){ s->rx.buf.data, ph.data_len };
		return xport_chan_rx_data(&s->rx, &iov, 1, s->err);
	}
	return xport_chan_rx_data(&s->rx, s->runs, s->nruns, s->err);
}

static const uint8_t zero_page[MIG_PAGE_SIZE];

/* Post-copy: one page that came (src NULL: a zero page), placed unless it
 * is there already; counted in the digest, and the wait of a vCPU that
 * asked for it, only by the copy that placed it. */
static int pc_place(struct dst *d, struct rx_stream *s, uint64_t pfn, const uint8_t *src)
{
	uint64_t asked;
	int r = mig_vm_postcopy_place(d->vm, pfn, src, 1, s->err);

	if (r <= 0)
		return r;
	__atomic_fetch_add(&d->pc_pages, 1, __ATOMIC_RELAXED);
	stale_mark(d, pfn, false);
	if (d->verify)
		mig_pc_digest_page(d->pc_sum, pfn, src ? src : zero_page);
	asked = __atomic_load_n(&d->pc_asked_ns[pfn], __ATOMIC_RELAXED);
	if (asked) {
		uint64_t waited = mig_clock_ns(CLOCK_MONOTONIC) - asked,
			 worst = __atomic_load_n(&d->pc_worst_ns, __ATOMIC_RELAXED);

		while (waited > worst && !__atomic_compare_exchange_n(&d->pc_worst_ns, &worst, waited,
								     false, __ATOMIC_RELAXED,
								     __ATOMIC_RELAXED))
			;
	}
	return 0;
}

/* The data of the PAGES frame in s has arrived: check each page against its
 * sum.  A mismatch aborts, except in a LIVE frame, where that page stays
 * stale until it comes again. */
static int pages_data(struct dst *d, struct rx_stream *s)
{
	bool zstd = s->rx.hdr.flags & MIG_FRAME_F_ZSTD, live = s->rx.hdr.flags & MIG_FRAME_F_LIVE;
	const uint8_t *data = NULL, *tag = s->tags;
	struct iovec buf = { s->rx.buf.data, s->ph.data_len };

	/* sealed data: opened where it landed (guest RAM, or the buffer)
	 * before any of it is used */
	if (s->ph.data_len && xport_chan_rx_data_open(&s->rx, zstd ? &buf : s->runs,
						      zstd ? 1 : s->nruns, s->err) < 0)
		return mig_error_prefix(s->err, "stream %u", s->index);
	if (d->pc_place && !zstd)
		data = s->stage;
	if (zstd) {
#if HAVE_ZSTD
		size_t nz = s->ph.count - s->ph.zero_count, out;

		/* at the stream's first compressed frame: the source's memory
		 * budget lets only some streams compress */
		if ((!s->scratch && !(s->scratch = malloc(MIG_BATCH_PAGES * PAGE))) ||
		    (!s->dctx && !(s->dctx = ZSTD_createDCtx())))
			return mig_error_set(s->err, -ENOMEM, "out of memory for a stream's "
					     "decompression buffers");
		out = ZSTD_decompressDCtx(s->dctx, s->scratch, MIG_BATCH_PAGES * PAGE,
					  s->rx.buf.data, s->ph.data_len);
		if (ZSTD_isError(out) || out != nz * PAGE)
			return mig_error_set(s->err, -EBADMSG, "zstd data of a PAGES frame does not "
					     "decode to %zu pages", nz);
		data = s->scratch;
#endif
	}
	for (unsigned i = 0; i < s->ph.count; i++) {
		uint64_t pfn = s->ent[i].page & ~MIG_PAGE_FLAGS;
		uint8_t *page = d->ram + pfn * PAGE;
		const uint8_t *this_tag = NULL;
		uint64_t sum;

		if (d->pc_place) {
			if (!(s->ent[i].page & MIG_PAGE_ZERO) && d->page_sums &&
			    mig_page_sum(data, s->rx.hdr.seq, i) != s->ent[i].sum)
				return mig_error_set(s->err, -EBADMSG, "stream %u: page data checksum "
						     "mismatch on page %#llx of post-copy PAGES frame "
						     "seq %llu (data damaged in transit)", s->index,
						     (unsigned long long)pfn,
						     (unsigned long long)s->rx.hdr.seq);
			if (pc_place(d, s, pfn, s->ent[i].page & MIG_PAGE_ZERO ? NULL : data) < 0)
				return s->err->code;
			if (!(s->ent[i].page & MIG_PAGE_ZERO))
				data += PAGE;
			continue;
		}
		if (s->ent[i].page & MIG_PAGE_ZERO) {
			if (d->page_hooks && mig_vm_page_decode(d->vm, pfn, page, NULL, s->err) < 0)
				return s->err->code;
			stale_mark(d, pfn, false);
			continue;
		}
		if (s->ent[i].page & MIG_PAGE_TAGGED) {
			this_tag = tag;
			tag += MIG_PAGE_TAG_SIZE;
		}
		if (data) {
			memcpy(page, data, PAGE);
			data += PAGE;
		}
		sum = d->page_sums ? mig_page_sum(page, s->rx.hdr.seq, i) : s->ent[i].sum;
		if (sum != s->ent[i].sum && !live)
			return mig_error_set(s->err, -EBADMSG, "stream %u: page data checksum "
					     "mismatch on page %#llx of PAGES frame seq %llu: it hashes "
					     "to 0x%016llx, the frame says 0x%016llx (data damaged in "
					     "transit)", s->index, (unsigned long long)pfn,
					     (unsigned long long)s->rx.hdr.seq, (unsigned long long)sum,
					     (unsigned long long)s->ent[i].sum);
		if (sum != s->ent[i].sum)
			__atomic_fetch_add(&d->torn_pages, 1, __ATOMIC_RELAXED);
		else if (d->page_hooks && mig_vm_page_decode(d->vm, pfn, page, this_tag, s->err) < 0)
			return s->err->code;
		stale_mark(d, pfn, sum != s->ent[i].sum);
	}
	s->frames++;
	if (d->o->status)
		__atomic_fetch_add(&d->o->status->pages, s->ph.count, __ATOMIC_RELAXED);
	return 0;
}

static int workers_start(struct dst *d);

static int do_setup(struct dst *d, struct rx_stream *s)
{
	struct mig_setup st;
	struct mig_reply rep = { 0 };
	struct mig_walk w = walk_opts(d);
	int r = 0;

	if (s->rx.hdr.length < sizeof(st) || d->ram)
		return mig_error_set(&d->err, -EPROTO, "bad SETUP frame");
	memcpy(&st, s->rx.buf.data, sizeof(st));
	mig_wire_le(&mig_wl_setup, &st, 1);
	st.name[sizeof(st.name) - 1] = '\0';
	if (st.nr_devices > MIG_SETUP_DEVICES_MAX ||
	    s->rx.hdr.length != sizeof(st) + st.nr_devices * sizeof(struct mig_manifest_entry))
		return mig_error_set(&d->err, -EPROTO, "bad SETUP frame: %u bytes for %u devices",
				     s->rx.hdr.length, st.nr_devices);
	if (st.page_size != PAGE || st.nr_pages != mig_vm_pages(d->vm))
		r = mig_error_set(&d->err, -EPROTO, "SETUP: page size %u, %llu pages do not match "
				  "the VM's %llu pages of %u bytes", st.page_size,
				  (unsigned long long)st.nr_pages,
				  (unsigned long long)mig_vm_pages(d->vm), (unsigned)PAGE);
	/* Prepared in advance: the source's VM must be the one we built. */
	if (r >= 0)
		r = d->vm->ops->matches(d->vm, st.vm_desc, sizeof(st.vm_desc), &d->err);
	if (r >= 0)
		r = mig_vm_manifest_check(d->vm, s->rx.buf.data + sizeof(st),
					  s->rx.hdr.length - sizeof(st), st.nr_devices, &d->err);
	if (r >= 0 && (st.flags & ~MIG_SETUP_F_KNOWN))
		r = mig_error_set(&d->err, -EPROTO, "SETUP: unknown flags %#x", st.flags);
	/* A hand-over offered is taken where this VM can map a memfd; else
	 * its RAM is made ready for pages (faulted in, if it waited). */
	if (r >= 0 && (st.flags & MIG_SETUP_F_HANDOVER) && d->vm->ops->ram_adopt)
		d->handover = true;
	else if (r >= 0 && d->vm->ops->ram_adopt)
		r = d->vm->ops->ram_adopt(d->vm, -1, &d->err);
	if (r >= 0) {
		d->verify = st.flags & MIG_SETUP_F_VERIFY;
		d->page_sums = !(st.flags & MIG_SETUP_F_NO_PAGE_SUMS);
		d->page_hooks = mig_vm_has_page_hooks(d->vm);
		d->sessions = mig_vm_has_sessions(d->vm);
		d->ram = d->vm->ram;
		d->nr_pages = st.nr_pages;
		d->stale = calloc(DIV_ROUND_UP(d->nr_pages, 64), 8);
		d->states = calloc(d->vm->nr_devices + 1, sizeof(*d->states));
		d->dev_rx = calloc(d->vm->nr_devices + 1, sizeof(*d->dev_rx));
		if (!d->stale || !d->states || !d->dev_rx)
			r = mig_error_set(&d->err, -ENOMEM, "out of memory");
	}
	/* The devices take pages from here on (RECEIVE), the data streams
	 * are read, and READY says so. */
	if (r >= 0)
		r = mig_vm_walk(d->vm, MIG_STAGE_RECEIVE, &w, &d->err);
	if (r >= 0)
		r = workers_start(d);
	if (r >= 0)
		r = set_phase(d, MIG_PHASE_PRECOPY);
	/* with sessions, the devices' answers follow the reply */
	if (r >= 0 && d->sessions) {
		rep.status = 0;
		r = mig_buf_append(&d->answers, &rep, sizeof(rep));
		if (r < 0)
			r = mig_error_set(&d->err, -ENOMEM, "out of memory");
		else
			mig_wire_le(&mig_wl_reply, d->answers.data, 1);
		if (r >= 0)
			r = mig_vm_session_pack(d->vm, MIG_SESSION_ANSWER, &d->answers, &d->err);
	}
	rep.status = r;
	if (r < 0)
		str_copy(rep.msg, sizeof(rep.msg), d->err.msg);
	if (r >= 0 && d->handover) {
		rep.flags = MIG_READY_F_HANDOVER;
		d->handover_peek = true;
	}
	if (r >= 0 && d->sessions)
		ctl_send(d, MIG_FRAME_READY, d->answers.data, d->answers.len);
	else
		ctl_send_le(d, MIG_FRAME_READY, &mig_wl_reply, &rep);
	return r;
}

static int try_load(struct dst *d);

/* HANDOVER: guest RAM is the source's memfd, peeked from this frame's
 * bytes, mapped in place of ours.  The source's guest runs on meanwhile;
 * ours never runs before COMMIT, and a rollback only unmaps it. */
static int do_handover(struct dst *d, struct rx_stream *s)
{
	struct mig_handover h;
	int r = 0;

	if (!d->handover || d->handover_taken || d->phase != MIG_PHASE_PRECOPY)
		r = mig_error_set(&d->err, -EPROTO, "unexpected HANDOVER frame: no hand-over was "
				  "agreed at SETUP, or it came already");
	else if (s->rx.hdr.length != sizeof(h))
		r = mig_error_set(&d->err, -EBADMSG, "HANDOVER of %u bytes", s->rx.hdr.length);
	else if (d->handover_fd < 0)
		r = mig_error_set(&d->err, -EPROTO, "HANDOVER carries no descriptor");
	if (r < 0)
		return r;
	memcpy(&h, s->rx.buf.data, sizeof(h));
	mig_wire_le(&mig_wl_handover, &h, 1);
	if (h.ram_bytes != d->vm->ram_bytes || h.nr_pages != d->nr_pages)
		r = mig_error_set(&d->err, -EPROTO, "HANDOVER: %llu bytes, %llu pages do not match "
				  "the VM's %llu bytes, %llu pages", (unsigned long long)h.ram_bytes,
				  (unsigned long long)h.nr_pages,
				  (unsigned long long)d->vm->ram_bytes,
				  (unsigned long long)d->nr_pages);
	if (r >= 0)
		r = d->vm->ops->ram_adopt(d->vm, d->handover_fd, &d->err);
	close(d->handover_fd);
	d->handover_fd = -1;
	d->handover_taken = r >= 0;
	/* the last round may have ended already (try_load waited for this) */
	return r < 0 ? r : try_load(d);
}

/* OPEN: the source's devices' session data to ours, then the RECEIVE walk
 * once more (a device that waited for it takes its step now). */
static int do_open(struct dst *d, struct rx_stream *s)
{
	struct mig_reply rep = { 0 };
	struct mig_walk w = walk_opts(d);
	int r = 0;

	if (!d->sessions || d->opened || !d->ram)
		r = mig_error_set(&d->err, -EPROTO, "unexpected OPEN frame");
	if (r >= 0)
		r = mig_vm_session_unpack(d->vm, MIG_SESSION_OPEN, s->rx.buf.data, s->rx.hdr.length,
					  &d->err);
	if (r >= 0)
		r = mig_vm_walk(d->vm, MIG_STAGE_RECEIVE, &w, &d->err);
	d->opened = true;
	rep.status = r;
	if (r < 0)
		str_copy(rep.msg, sizeof(rep.msg), d->err.msg);
	ctl_send_le(d, MIG_FRAME_OPENED, &mig_wl_reply, &rep);
	return r;
}

/* A worker failed: record the first cause, stop the others, wake main. */
static void worker_failed(struct dst *d, const struct mig_error *err)
{
	pthread_mutex_lock(&d->lock);
	if (!d->werr.code)
		d->werr = *err;
	__atomic_store_n(&d->stop, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&d->advance);
	pthread_mutex_unlock(&d->lock);
	if (write(d->note[1], "!", 1) < 0) {
		/* main sees d->stop within its next poll anyway */
	}
}

/* ROUND_END on stream s.  Returns 1 once the last round is complete, 0
 * when the next round may be read, <0 on failure. */
static int barrier(struct dst *d, struct rx_stream *s, uint32_t final)
{
	bool last;
	int r = 0;

	pthread_mutex_lock(&d->lock);
	s->final = final;
	if (__atomic_load_n(&d->stop, __ATOMIC_RELAXED)) {
		r = mig_error_set(s->err, -ECANCELED, "stopped at the barrier of round %u",
				  s->round);
	} else if (d->arrived && d->round_final != final) {
		r = mig_error_set(s->err, -EPROTO, "streams disagree on whether round %u is the "
				  "last", s->round);
	} else if (++d->arrived == 1) {
		d->round_final = final;
	}
	last = r == 0 && d->arrived == d->n;
	if (last) {
		uint64_t stale = __atomic_load_n(&d->nr_stale, __ATOMIC_RELAXED);

		/* (a post-copy switch takes them with the pages to come) */
		if (final == 1 && stale)
			r = mig_error_set(s->err, -EBADMSG, "%llu pages arrived damaged and were not "
					  "sent again (the first is page %#llx); the source's dirty "
					  "log missed a write, or the data was damaged in transit",
					  (unsigned long long)stale, (unsigned long long)first_stale(d));
		d->arrived = 0;
		d->round++;
		if (d->o->status)
			__atomic_store_n(&d->o->status->round, d->round, __ATOMIC_RELAXED);
		d->all_final = final && r == 0;
		d->final_kind = final;
		pthread_cond_broadcast(&d->advance);
	} else {
		while (r == 0 && d->round == s->round && !__atomic_load_n(&d->stop, __ATOMIC_RELAXED))
			pthread_cond_wait(&d->advance, &d->lock);
		if (r == 0 && d->round == s->round)
			r = mig_error_set(s->err, -ECANCELED, "stopped at the barrier of round %u",
					  s->round);
	}
	s->round++;
	s->frames = 0;
	pthread_mutex_unlock(&d->lock);
	if (r == 0 && last && final && write(d->note[1], "f", 1) < 0)
		r = mig_error_set(s->err, -errno, "waking the control thread: %s", strerror(errno));
	return r < 0 ? r : !!final;
}

/* A DEVICE_DATA frame on data stream s: a chunk of one device's state,
 * checked against the device and what came of it before.  Pre-copy data
 * is loaded at once; final state is kept until the LOAD walk. */
static int device_data(struct dst *d, struct rx_stream *s)
{
	uint32_t kind = s->rx.hdr.flags & (MIG_FRAME_F_PRECOPY | MIG_FRAME_F_FINAL);
	bool final = kind == MIG_FRAME_F_FINAL, end = s->rx.hdr.flags & MIG_FRAME_F_END;
	const struct mig_precopy_ops *pre;
	struct mig_device_data dd;
	struct mig_device *dev = NULL;
	struct dev_rx *rx;
	unsigned i;
	int r = 0;

	r = mig_device_data_check(s->rx.buf.data, s->rx.hdr.length, s->round, s->index, &dd,
				  s->err);
	if (r < 0)
		return r;
	for (i = 0; i < d->vm->nr_devices; i++)
		if (d->vm->devices[i]->cls->id == dd.cls && d->vm->devices[i]->id == dd.instance) {
			dev = d->vm->devices[i];
			break;
		}
	if (!dev)
		return mig_error_set(s->err, -EPROTO, "DEVICE_DATA for device %#x %u, which this VM "
				     "does not have", dd.cls, dd.instance);
	pre = dev->cls->precopy_ops;
	if (kind != MIG_FRAME_F_PRECOPY && kind != MIG_FRAME_F_FINAL)
		return mig_error_set(s->err, -EPROTO, "DEVICE_DATA for %s %u is neither pre-copy "
				     "nor final data (flags %#x)", dev->cls->name, dev->id,
				     s->rx.hdr.flags);
	if (end && !final)
		return mig_error_set(s->err, -EPROTO, "DEVICE_DATA for %s %u: END on pre-copy data",
				     dev->cls->name, dev->id);
	if (!mig_device_has_state(dev) || (!final && !(pre && pre->load_chunk)))
		return mig_error_set(s->err, -EPROTO, "DEVICE_DATA for %s %u, whose class has no "
				     "%s", dev->cls->name, dev->id,
				     final ? "state" : "pre-copy data");
	pthread_mutex_lock(&d->dev_lock);
	rx = &d->dev_rx[i];
	if (rx->ended)
		r = mig_error_set(s->err, -EPROTO, "DEVICE_DATA for %s %u after its last chunk",
				  dev->cls->name, dev->id);
	else if (!final && rx->offset[1])
		r = mig_error_set(s->err, -EPROTO, "pre-copy DEVICE_DATA for %s %u after its final "
				  "state began", dev->cls->name, dev->id);
	else if (dd.offset != rx->offset[final])
		r = mig_error_set(s->err, -EPROTO, "DEVICE_DATA for %s %u at offset %llu of its %s "
				  "data, %llu bytes of it came before", dev->cls->name, dev->id,
				  (unsigned long long)dd.offset, final ? "final" : "pre-copy",
				  (unsigned long long)rx->offset[final]);
	else if (final && rx->offset[1] + dd.len > MIG_DEVICE_STATE_MAX)
		r = mig_error_set(s->err, -EFBIG, "%s %u: more than %u MiB of state",
				  dev->cls->name, dev->id, MIG_DEVICE_STATE_MAX >> 20);
	if (r >= 0 && final) {
		if (mig_buf_append(&d->states[i], s->rx.buf.data + sizeof(dd), dd.len) < 0)
			r = mig_error_set(s->err, -ENOMEM, "out of memory");
	} else if (r >= 0) {
		struct mig_mem_reader mr;

		mig_mem_reader_init(&mr, s->rx.buf.data + sizeof(dd), dd.len);
		r = pre->load_chunk(dev, &mr.r, s->err);
		if (r < 0)
			mig_error_prefix(s->err, "pre-copy data of %s %u", dev->cls->name, dev->id);
	}
	if (r >= 0) {
		rx->offset[final] += dd.len;
		rx->ended = end;
		dev->bytes += dd.len;
	}
	pthread_mutex_unlock(&d->dev_lock);
	if (r >= 0)
		s->frames++;
	return r;
}

/* A frame on data stream s passed its checks: PAGES, DEVICE_DATA or ROUND_END.  Returns
 * 0 to read the next header, 2 when a PAGES frame's data is being
 * received, 1 after the last round, <0 on failure. */
static int data_frame(struct dst *d, struct rx_stream *s)
{
	struct mig_round_end re;
	int r;

	switch (s->rx.hdr.type) {
	case MIG_FRAME_PAGES:
		r = pages_meta(d, s);
		if (r == 0)
			return 2;
		return r == 1 ? pages_data(d, s) : r;
	case MIG_FRAME_DEVICE_DATA:
		return device_data(d, s);
	case MIG_FRAME_ROUND_END:
		if (s->rx.hdr.length != sizeof(re))
			return mig_error_set(s->err, -EBADMSG, "ROUND_END of %u bytes", s->rx.hdr.length);
		memcpy(&re, s->rx.buf.data, sizeof(re));
		mig_wire_le(&mig_wl_round_end, &re, 1);
		if (re.round != s->round || re.final > MIG_ROUND_POSTCOPY || re.frames != s->frames ||
		    (re.final == MIG_ROUND_POSTCOPY && __atomic_load_n(&d->pc_place, __ATOMIC_RELAXED)))
			return mig_error_set(s->err, -EPROTO, "stream %u: ROUND_END of round %u "
					     "(final %u, %llu frames) after %llu frames of "
					     "round %u", s->index, re.round, re.final,
					     (unsigned long long)re.frames,
					     (unsigned long long)s->frames, s->round);
		return barrier(d, s, re.final);
	default:
		return mig_error_set(s->err, -EPROTO, "unexpected %s frame on data stream %u",
				     mig_frame_type_to_string(s->rx.hdr.type), s->index);
	}
}

/* One completed receive on stream s: advance its frame.  Returns 1 when a
 * frame passed its checks and its payload is in s->rx.buf, 0 when the next
 * receive is posted, <0 on failure. */
static int rx_step(struct rx_stream *s, struct xport_op *op)
{
	int r;

	if (op->res < 0)
		return mig_error_set(s->err, op->res, "stream %u: %s", s->index,
				     op->res == -ECONNRESET ? "the source closed it" :
				     strerror(-op->res));
	r = xport_chan_rx_step(&s->rx, s->err);
	if (r < 0)
		return mig_error_prefix(s->err, "stream %u", s->index);
	if (r == 0)
		return 0;
	/* the workers' frames too: a fault hook must take calls from any thread */
	r = fault_at(s->owner, (struct mig_fault_point){ .kind = MIG_FAULT_FRAME_RECV,
							 .frame_type = s->rx.hdr.type,
							 .stream = s->index, .seq = s->rx.hdr.seq }, s->err);
	return r < 0 ? r : 1;
}

static void rx_worker_main(struct xport_worker *xw)
{
	struct rx_stream *s = container_of(xw, struct rx_stream, xw);
	struct dst *d = s->owner;
	int r;

	/* post-copy's stream 1 carries the pages vCPUs wait for */
	if (d->pc_place && s->index == 1)
		mig_thread_prompt();
	r = post_hdr(s);
	while (r >= 0) {
		struct xport_op *op = NULL;

		r = xport_ring_wait(s->ring, POLL_MS, &op, s->err);
		if (__atomic_load_n(&d->stop, __ATOMIC_RELAXED)) {
			/* another thread failed: its error is the one that counts */
			r = -ECANCELED;
			break;
		}
		if (r == -ETIME) {
			mig_error_clear(s->err);
			r = 0;
			continue;
		}
		if (!op)
			break;
		/* a failed op is rx_step's to report, naming the stream */
		mig_error_clear(s->err);
		__atomic_store_n(&d->last_data_ms, mig_now_ms(), __ATOMIC_RELAXED);
		if (s->rx.stage == XPORT_RX_DATA && op->res >= 0) {
			r = pages_data(d, s);
			if (r >= 0)
				r = post_hdr(s);
			continue;
		}
		r = rx_step(s, op);
		if (r <= 0)
			continue;
		r = data_frame(d, s);
		if (r == 1)
			break;
		if (r == 0)
			r = post_hdr(s);
	}
	if (r < 0 && r != -ECANCELED)
		worker_failed(d, s->err);
}

static int workers_start(struct dst *d)
{
	for (unsigned k = 1; k <= d->n; k++) {
		struct rx_stream *s = &d->st[k];
		char name[16];

		/* a page hook's tags: small, and only for a VM with one */
		s->tags = d->page_hooks ? malloc(MIG_PAGES_MAX * MIG_PAGE_TAG_SIZE) : NULL;
		if (d->page_hooks && !s->tags)
			return mig_error_set(&d->err, -ENOMEM, "out of memory");
		snprintf(name, sizeof(name), "mig-rx%u", k);
		if (xport_worker_start(&s->xw, name, 4, rx_worker_main, &d->err) < 0)
			return d->err.code;
	}
	return 0;
}

/* Join the workers (telling them to stop unless they are done). */
static void workers_stop(struct dst *d)
{
	bool stop;

	pthread_mutex_lock(&d->lock);
	stop = !d->all_final;
	if (stop)
		__atomic_store_n(&d->stop, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&d->advance);
	pthread_mutex_unlock(&d->lock);
	for (unsigned k = 1; d->st && k <= d->n; k++) {
		struct rx_stream *s = &d->st[k];

		/* a receive waiting for data ends now, not at the next poll */
		if (stop && s->xw.started)
			shutdown(s->fd, SHUT_RD);
		/* a receive may still point into guest RAM: the stop cancels
		 * and reaps it before the VM can go */
		d->workers_cpu_ms += xport_worker_stop(&s->xw);
		free(s->scratch);
		s->scratch = NULL;
		free(s->stage);
		s->stage = NULL;
		free(s->tags);
		s->tags = NULL;
#if HAVE_ZSTD
		ZSTD_freeDCtx(s->dctx);
		s->dctx = NULL;
#endif
	}
}

/* POSTCOPY: the pages that come only after the vCPUs start.  Taken in
 * PRECOPY, before the last round ends; a VM that cannot run with pages
 * missing here refuses it, and the source rolls back. */
static int do_postcopy(struct dst *d, struct rx_stream *s)
{
	struct mig_postcopy pc;
	uint64_t words = DIV_ROUND_UP(d->nr_pages, 64), n = 0;
	int r;

	if (d->phase != MIG_PHASE_PRECOPY || d->pc || d->handover)
		return mig_error_set(&d->err, -EPROTO, "unexpected POSTCOPY frame (phase %s%s)",
				     mig_phase_to_string(d->phase),
				     d->handover ? ", in a hand-over" : "");
	if (s->rx.hdr.length < sizeof(pc))
		return mig_error_set(&d->err, -EBADMSG, "POSTCOPY of %u bytes", s->rx.hdr.length);
	memcpy(&pc, s->rx.buf.data, sizeof(pc));
	mig_wire_le(&mig_wl_postcopy, &pc, 1);
	if (pc.nr_pages != d->nr_pages || pc.words != words ||
	    s->rx.hdr.length != sizeof(pc) + words * 8)
		return mig_error_set(&d->err, -EBADMSG, "POSTCOPY for %llu pages in %llu words "
				     "(%u bytes): the VM has %llu pages",
				     (unsigned long long)pc.nr_pages, (unsigned long long)pc.words,
				     s->rx.hdr.length, (unsigned long long)d->nr_pages);
	r = mig_vm_postcopy_check(d->vm, true, &d->err);
	if (r < 0)
		return r;
	d->pc_todo = malloc(words * 8);
	d->pc_asked_ns = calloc(d->nr_pages, sizeof(*d->pc_asked_ns));
	if (!d->pc_todo || !d->pc_asked_ns)
		return mig_error_set(&d->err, -ENOMEM, "out of memory");
	memcpy(d->pc_todo, s->rx.buf.data + sizeof(pc), words * 8);
	mig_wire_le64s(d->pc_todo, words);
	if (d->nr_pages % 64)
		d->pc_todo[words - 1] &= (1ULL << (d->nr_pages % 64)) - 1;
	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(d->pc_todo[i]);
	if (n != pc.to_come)
		return mig_error_set(&d->err, -EBADMSG, "POSTCOPY says %llu pages are to come, its "
				     "bitmap %llu", (unsigned long long)pc.to_come,
				     (unsigned long long)n);
	d->pc_to_come = n;
	d->pc = true;
	return try_load(d);
}

/* Before the load: a page that arrived damaged must be one still to come;
 * then every page to come goes missing. */
static int pc_begin(struct dst *d)
{
	uint64_t words = DIV_ROUND_UP(d->nr_pages, 64), *present;
	int r;

	for (uint64_t i = 0; i < words; i++)
		if (d->stale[i] & ~d->pc_todo[i])
			return mig_error_set(&d->err, -EBADMSG, "page %#llx arrived damaged and "
					     "is not among the pages post-copy brings",
					     (unsigned long long)(i * 64 + (uint64_t)__builtin_ctzll(
						     d->stale[i] & ~d->pc_todo[i])));
	present = malloc(words * 8);
	if (!present)
		return mig_error_set(&d->err, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < words; i++)
		present[i] = ~d->pc_todo[i];
	r = mig_vm_postcopy_begin(d->vm, present, &d->err);
	free(present);
	return r;
}

/* The fault thread: what the vCPUs wait for goes to the source on data
 * stream 1, against its flow, each page once; it runs until the last page
 * is placed or the migration fails. */
static void *pc_fault_main(void *arg)
{
	struct dst *d = arg;
	struct xport_ring ring = { 0 };
	struct xport_chan_tx tx = { .fd = d->st[1].fd, .seq = 1, .aead = d->aead[1] };
	struct mig_error err = { 0 };
	/* after a break, first: what was asked for and never came is asked
	 * again (a vCPU waiting on it does not fault twice) */
	uint64_t again = d->pc_breaks ? 0 : d->nr_pages;
	int r;

	pthread_setname_np(pthread_self(), "mig-pcfault");
	mig_thread_prompt();
	r = xport_ring_init(&ring, 4, &err);
	while (r >= 0 && !atomic_load(&d->pc_stop)) {
		struct mig_pc_fault f[MIG_PAGE_REQUEST_MAX];
		struct mig_page_request q = { 0 };
		struct xport_op *op;
		uint64_t now;
		int n = 0;

		while (again < d->nr_pages && q.count < MIG_PAGE_REQUEST_MAX) {
			if (__atomic_load_n(&d->pc_asked_ns[again], __ATOMIC_RELAXED) &&
			    !mig_vm_postcopy_present(d->vm, again))
				q.pfn[q.count++] = again;
			again++;
		}
		if (!q.count) {
			n = mig_vm_postcopy_faults(d->vm, f, MIG_PAGE_REQUEST_MAX, POLL_MS, &err);
			if (n <= 0) {
				r = n;
				continue;
			}
		}
		now = mig_clock_ns(CLOCK_MONOTONIC);
		__atomic_fetch_add(&d->pc_faults, (uint64_t)n, __ATOMIC_RELAXED);
		for (int i = 0; i < n; i++) {
			uint64_t zero = 0;

			if (f[i].pfn >= d->nr_pages ||
			    !__atomic_compare_exchange_n(&d->pc_asked_ns[f[i].pfn], &zero, now, false,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
				continue;
			q.pfn[q.count++] = f[i].pfn;
		}
		if (!q.count)
			continue;
		__atomic_fetch_add(&d->pc_requested, q.count, __ATOMIC_RELAXED);
		r = fault_at(d, (struct mig_fault_point){ .kind = MIG_FAULT_FRAME_SEND,
							   .frame_type = MIG_FRAME_PAGE_REQUEST,
							   .stream = 1, .seq = tx.seq + 1 }, &err);
		if (r < 0)
			break;
		mig_wire_le(&mig_wl_page_request, &q, 1);
		r = xport_chan_send(&tx, &ring, MIG_FRAME_PAGE_REQUEST, &q,
				    offsetof(struct mig_page_request, pfn) +
				    le32toh(q.count) * sizeof(q.pfn[0]), &err);
		while (r >= 0 && tx.busy && !atomic_load(&d->pc_stop)) {
			r = xport_ring_wait(&ring, POLL_MS, &op, &err);
			if (r == -ETIME)
				r = 0;
			else if (r >= 0 && xport_chan_sent(&tx, op) && op->res < 0)
				r = mig_error_set(&err, op->res, "sending PAGE_REQUEST on data stream "
						  "1: %s", strerror(-op->res));
		}
	}
	/* No page would be asked for again: as a failed stream, the link is
	 * made again (unless post-copy is ending anyway). */
	if (r < 0 && !atomic_load(&d->pc_stop)) {
		if (!err.code)
			mig_error_set(&err, r, "post-copy's fault thread: %s", strerror(-r));
		worker_failed(d, &err);
	}
	/* a send still in flight is reaped (cancelled) before tx's buffer goes */
	if (ring.ring)
		xport_ring_exit(&ring);
	xport_chan_free(&tx);
	return NULL;
}

/* Post-copy's readers: the fault thread and the workers. */
static int pc_threads_start(struct dst *d)
{
	atomic_store(&d->pc_stop, false);
	if (pthread_create(&d->pc_thread, NULL, pc_fault_main, d) != 0)
		return mig_error_set(&d->err, -EAGAIN, "post-copy: no thread to read faults");
	d->pc_thread_on = true;
	return workers_start(d);
}

/* At COMMIT, before the vCPUs start here with pages missing: the workers
 * read again, placing what comes; the fault thread asks. */
static int pc_run(struct dst *d)
{
	pthread_mutex_lock(&d->lock);
	d->all_final = false;
	pthread_mutex_unlock(&d->lock);
	d->pc_place = true;
	return pc_threads_start(d);
}

static void pc_thread_stop(struct dst *d)
{
	if (!d->pc_thread_on)
		return;
	atomic_store(&d->pc_stop, true);
	pthread_join(d->pc_thread, NULL);
	d->pc_thread_on = false;
}

static int confirm(struct dst *d, struct mig_running *run, const struct mig_vm_health *st0);

/*
 * Post-copy's link broke: the vCPUs are held out of the guest at once, not
 * waited for (one waiting in the kernel for a missing page leaves once it
 * comes).  The source may give up its end of the link and its half of the
 * VM be resumed there; until the link is made again this half runs no
 * guest code.
 */
static void pc_hold(struct dst *d)
{
	struct mig_walk w = walk_opts(d);

	if (d->pc_held)
		return;
	/* running vCPUs only ever go to HELD (a kick): no failure to act on */
	mig_vm_walk(d->vm, MIG_STAGE_HOLD, &w, NULL);
	d->pc_held = true;
}

/* Every thread and stream of a broken post-copy link goes. */
static void pc_link_close(struct dst *d)
{
	char drain[16];

	workers_stop(d);
	pc_thread_stop(d);
	for (unsigned k = 0; k <= d->n; k++)
		if (d->st[k].fd >= 0)
			shutdown(d->st[k].fd, SHUT_RDWR);
	if (d->ring.ring)
		xport_ring_exit(&d->ring);
	for (unsigned k = 0; k <= d->n; k++) {
		if (d->st[k].fd >= 0)
			close(d->st[k].fd);
		d->st[k].fd = d->st[k].rx.fd = d->st[k].tx.fd = -1;
		d->st[k].tx.busy = false;
		d->st[k].frames = 0;
		d->st[k].final = false;
	}
	for (unsigned k = 0; k < ARRAY_SIZE(d->aead); k++) {
		xport_aead_free(d->aead[k]);
		d->aead[k] = NULL;
	}
	d->nstash = 0;
	while (recv(d->note[0], drain, sizeof(drain), MSG_DONTWAIT) > 0)
		;
	pthread_mutex_lock(&d->lock);
	d->stop = false;
	mig_error_clear(&d->werr);
	d->arrived = 0;
	d->all_final = false;
	pthread_mutex_unlock(&d->lock);
	mig_error_clear(&d->err);
}

/* On the new streams: PC_RESUME says which pages are still missing and in
 * which round the data streams go on; the fault thread asks again for what
 * it asked and never got. */
static int pc_link_resume(struct dst *d)
{
	struct mig_postcopy pc = { .nr_pages = d->nr_pages,
				   .words = DIV_ROUND_UP(d->nr_pages, 64) };
	struct mig_buf b = { 0 };
	uint64_t *missing;
	int r = xport_ring_init(&d->ring, 8, &d->err);

	if (r < 0)
		return r;
	for (unsigned k = 1; k <= d->n; k++)
		d->st[k].round = d->round;
	if (mig_buf_reserve(&b, sizeof(pc) + pc.words * 8) < 0)
		return mig_error_set(&d->err, -ENOMEM, "out of memory");
	missing = (uint64_t *)(b.data + sizeof(pc));
	memset(missing, 0, pc.words * 8);
	for (uint64_t pfn = 0; pfn < d->nr_pages; pfn++)
		if (!mig_vm_postcopy_present(d->vm, pfn)) {
			missing[pfn / 64] |= 1ULL << (pfn % 64);
			pc.to_come++;
		}
	d->pc_breaks++;
	pc.round = d->round;
	pc.breaks = d->pc_breaks;
	mig_wire_le(&mig_wl_postcopy, &pc, 1);
	memcpy(b.data, &pc, sizeof(pc));
	mig_wire_le64s(missing, DIV_ROUND_UP(d->nr_pages, 64));
	r = ctl_send(d, MIG_FRAME_PC_RESUME, b.data, sizeof(pc) + DIV_ROUND_UP(d->nr_pages, 64) * 8);
	mig_buf_free(&b);
	return r < 0 ? r : pc_threads_start(d);
}

/*
 * Post-copy's link broke.  The vCPUs are held, every thread and stream of
 * the link goes, and the listener takes new streams of this migration (the
 * source makes them again) for up to PC_RECOVER_WAIT_MS; a link made again
 * that fails before it carries anything is waited out again within that
 * time.  Once it runs, so do the vCPUs.
 */
static int pc_wait_recover(struct dst *d)
{
	struct mig_error why = d->err;
	uint64_t end = mig_now_ms() + PC_RECOVER_WAIT_MS, now;
	struct mig_walk w = walk_opts(d);
	int r;

	pc_hold(d);
	pc_link_close(d);
	for (;;) {
		now = mig_now_ms();
		r = now < end ? accept_streams(d, (uint32_t)(end - now)) :
				mig_error_set(&d->err, -ETIMEDOUT, "timed out");
		if (r < 0)
			return mig_error_prefix(&d->err, "post-copy: the link broke (%s), and the "
						"source did not make it again within %d min",
						why.msg, PC_RECOVER_WAIT_MS / 60000);
		r = pc_link_resume(d);
		if (r >= 0)
			break;
		/* that link failed at once: the source makes another */
		pc_link_close(d);
	}
	r = mig_vm_walk(d->vm, MIG_STAGE_RESUME, &w, &d->err);
	if (r < 0)
		return mig_error_prefix(&d->err, "post-copy: running the vCPUs again");
	d->pc_held = false;
	return 0;
}

/* Every stream ended post-copy's round: every page must be here now. */
static int pc_finish(struct dst *d)
{
	struct mig_pc_stats ps;
	struct mig_vm_health st;
	int r;

	workers_stop(d);
	pc_thread_stop(d);
	mig_vm_postcopy_stats(d->vm, &ps);
	if (ps.missing)
		return mig_error_set(&d->err, -EPROTO, "post-copy ended with %llu of %llu pages "
				     "never sent", (unsigned long long)ps.missing,
				     (unsigned long long)d->pc_to_come);
	r = mig_vm_postcopy_complete(d->vm, &d->err);
	if (r < 0)
		return r;
	d->pc_run.pc_ms = (mig_clock_ns(CLOCK_MONOTONIC) - d->pc_t0) / 1000000;
	d->pc_run.pc_digest[0] = d->pc_sum[0];
	d->pc_run.pc_digest[1] = d->pc_sum[1];
	d->pc_run.pc_faults = __atomic_load_n(&d->pc_faults, __ATOMIC_RELAXED);
	d->pc_run.pc_requested = __atomic_load_n(&d->pc_requested, __ATOMIC_RELAXED);
	d->pc_run.pc_worst_stall_us = __atomic_load_n(&d->pc_worst_ns, __ATOMIC_RELAXED) / 1000;
	d->pc_run.pc_pages = __atomic_load_n(&d->pc_pages, __ATOMIC_RELAXED);
	/* the health check counts from now: the guest must go on with all
	 * of its RAM here */
	d->vm->ops->health(d->vm, &st);
	d->pc_run.pc_progress = st.progress;
	return confirm(d, &d->pc_run, &st);
}

/* Once every data stream delivered its final pages and the state is in:
 * load, hash, and tell the source. */
static int try_load(struct dst *d)
{
	struct mig_loaded l = { 0 };
	struct mig_digest dg = { 0 };
	struct mig_walk w = walk_opts(d);
	bool all_final;
	uint64_t t0;
	int r;

	pthread_mutex_lock(&d->lock);
	all_final = d->all_final;
	pthread_mutex_unlock(&d->lock);
	if (d->phase != MIG_PHASE_PRECOPY || !all_final)
		return 0;
	/* The control stream is not ordered with the data streams: HANDOVER
	 * (guest RAM) may be read after the last round ended; it comes. */
	if (d->handover && !d->handover_taken)
		return 0;
	/* a post-copy switch: its last round said so, and POSTCOPY came */
	if ((d->final_kind == MIG_ROUND_POSTCOPY) != d->pc) {
		if (!d->pc)
			return 0;     /* POSTCOPY's bitmap is on its way */
		return mig_error_set(&d->err, -EPROTO, "POSTCOPY came, but the last round "
				     "ended as a stop-and-copy");
	}
	r = set_phase(d, MIG_PHASE_STOP_COPY);
	t0 = mig_realtime_ns();
	/* every device's state is in before any device loads */
	for (unsigned i = 0; r >= 0 && i < d->vm->nr_devices; i++) {
		const struct mig_device *dev = d->vm->devices[i];

		if (mig_device_has_state(dev) && !d->dev_rx[i].ended)
			r = mig_error_set(&d->err, -EPROTO, "%s %u: the last round ended before its "
					  "state did (%llu bytes, no END)", dev->cls->name, dev->id,
					  (unsigned long long)d->dev_rx[i].offset[1]);
	}
	/* RAM as it arrived, before any device loads: a load may write guest
	 * RAM (RESTORE_TABLES clears the pending bits it consumed) */
	if (r >= 0 && d->verify) {
		uint64_t t1 = mig_realtime_ns();

		if (d->pc)
			mig_pc_digest_ram(d->ram, d->nr_pages, d->pc_todo, NULL, d->pc_sum);
		else
			d->vm->ops->digest(d->vm, NULL, &dg);
		l.verify_ns = mig_realtime_ns() - t1;
	}
	/* Post-copy: the pages to come go missing, and whoever touches one
	 * (a device's load too) waits until it is placed. */
	if (r >= 0 && d->pc)
		r = pc_begin(d);
	if (r >= 0)
		r = mig_vm_load(d->vm, d->states, &w, &d->err);
	l.load_ns = mig_realtime_ns() - t0 - l.verify_ns;
	l.status = r;
	d->load_ok = r >= 0;
	l.digest[0] = dg.hi;
	l.digest[1] = dg.lo;
	l.rejected_streams = d->rejected;
	l.torn_pages = __atomic_load_n(&d->torn_pages, __ATOMIC_RELAXED);
	if (r < 0)
		str_copy(l.msg, sizeof(l.msg), d->err.msg);
	ctl_send_le(d, MIG_FRAME_LOADED, &mig_wl_loaded, &l);
	return r;
}

static int do_commit(struct dst *d)
{
	struct mig_running run = { .kind = 1, .cpu_ms = mig_cpu_ms() - d->cpu0 };
	struct mig_walk w = walk_opts(d);
	struct mig_vm_health st = { 0 };
	uint64_t t_commit = mig_clock_ns(CLOCK_MONOTONIC), t_started;
	int r;

	if (d->phase != MIG_PHASE_STOP_COPY || !d->load_ok)
		return mig_error_set(&d->err, -EPROTO, "COMMIT before the VM was loaded");
	/* the workers are done: the last round is in */
	workers_stop(d);
	run.cpu_ms += d->workers_cpu_ms;
	r = set_phase(d, MIG_PHASE_COMMIT);
	if (r < 0)
		return r;
	/* Post-copy: the pages start coming now, and whoever touches a missing
	 * one (a vCPU, or this thread reading the guest's health) is served. */
	if (d->pc)
		r = pc_run(d);
	if (r >= 0)
		r = mig_vm_walk(d->vm, MIG_STAGE_START, &w, &d->err);
	run.start_realtime_ns = mig_realtime_ns();
	t_started = mig_clock_ns(CLOCK_MONOTONIC);
	d->pc_t0 = t_started;
	/* In post-copy the guest's health lives in pages that may be missing:
	 * this thread would wait for them, and past a break it could not make
	 * the link again.  The source tells the guest's state at the switch
	 * from its own frozen copy instead (zeros here). */
	if (!d->pc)
		d->vm->ops->health(d->vm, &st);
	run.passes = st.passes;
	run.progress = st.progress;
	run.errors = st.errors;
	run.status = r;
	if (r < 0)
		str_copy(run.msg, sizeof(run.msg), d->err.msg);
	run.since_start_ns = mig_clock_ns(CLOCK_MONOTONIC) - t_started;
	run.since_commit_ns = mig_clock_ns(CLOCK_MONOTONIC) - t_commit;
	ctl_send_le(d, MIG_FRAME_RUNNING, &mig_wl_running, &run);
	if (r < 0)
		return r;
	if (d->pc) {
		/* RUNNING kind 2 once every page is here (pc_finish) */
		d->pc_run = run;
		return set_phase(d, MIG_PHASE_POSTCOPY);
	}
	return confirm(d, &run, &st);
}

/*
 * RUNNING kind 2 moves ownership: the source keeps its paused copy until it
 * arrives, so it says what can be seen of the guest here.  Under --verify
 * the source judges its health too: give it 300 ms, and up to 3 s for a
 * first pass (the source takes pages checked and stamped instead from a
 * guest whose working set is too big for one).  Without, the guest need
 * only show it runs: a page stamped since the start (at once for a guest
 * with no working set), which takes milliseconds, not a health check's
 * wait.  st: the guest's health to count from.
 */
static int confirm(struct dst *d, struct mig_running *run, const struct mig_vm_health *st0)
{
	struct mig_vm_health st = *st0;
	uint64_t start = st.passes, start_pages = st.progress;
	bool passes = st.has_progress;
	struct timespec ts = { 0, HEALTH_CHECK_MS * 1000000L };

	if (d->verify) {
		nanosleep(&ts, NULL);
		d->vm->ops->health(d->vm, &st);
		ts.tv_nsec = 50 * 1000000L;
		for (int waited = HEALTH_CHECK_MS; passes && st.passes == start &&
		     !st.errors && !st.fatal && waited < HEALTH_CHECK_MAX_MS; waited += 50) {
			nanosleep(&ts, NULL);
			d->vm->ops->health(d->vm, &st);
		}
	} else {
		ts.tv_nsec = 1000000L;
		for (int waited = 0; passes && st.progress == start_pages && !st.fatal &&
		     waited < HEALTH_CHECK_MAX_MS; waited++) {
			nanosleep(&ts, NULL);
			d->vm->ops->health(d->vm, &st);
		}
	}
	run->kind = 2;
	run->passes = st.passes;
	run->progress = st.progress;
	run->errors = st.errors;
	run->status = st.fatal;
	if (st.fatal)
		str_copy(run->msg, sizeof(run->msg), st.fatal_msg);
	ctl_send_le(d, MIG_FRAME_RUNNING, &mig_wl_running, run);
	/* The guest runs here whatever the source makes of its health. */
	return set_phase(d, MIG_PHASE_DONE);
}

/* The source found the RAM digests differ and asks for sums of parts of
 * this side's RAM, to name the pages.  Only between LOADED and COMMIT. */
static int send_sums(struct dst *d, struct rx_stream *s)
{
	struct mig_sums_request q;
	uint64_t *sums;
	int r;

	if (s->rx.hdr.length != sizeof(q))
		return mig_error_set(&d->err, -EBADMSG, "SUMS_REQUEST of %u bytes",
				     s->rx.hdr.length);
	memcpy(&q, s->rx.buf.data, sizeof(q));
	mig_wire_le(&mig_wl_sums_request, &q, 1);
	if (d->phase != MIG_PHASE_STOP_COPY || !d->load_ok)
		return mig_error_set(&d->err, -EPROTO, "SUMS_REQUEST before the VM loaded here");
	if (!q.count || q.count > MIG_SUMS_MAX || !q.pages_per_sum ||
	    q.pages_per_sum > MIG_SUMS_PER_MAX || q.first_page > d->nr_pages ||
	    (uint64_t)q.count * q.pages_per_sum > d->nr_pages - q.first_page)
		return mig_error_set(&d->err, -EBADMSG, "SUMS_REQUEST for %u sums of %u pages "
				     "from page %#llx: outside the guest's %llu pages, or over "
				     "the limits (%u sums, %u pages each)", q.count,
				     q.pages_per_sum, (unsigned long long)q.first_page,
				     (unsigned long long)d->nr_pages, MIG_SUMS_MAX,
				     MIG_SUMS_PER_MAX);
	sums = malloc((size_t)q.count * sizeof(*sums));
	if (!sums)
		return mig_error_set(&d->err, -ENOMEM, "out of memory");
	mig_ram_sums(d->ram, q.first_page, q.count, q.pages_per_sum, sums);
	mig_wire_le64s(sums, q.count);
	r = ctl_send(d, MIG_FRAME_SUMS, sums, (size_t)q.count * sizeof(*sums));
	free(sums);
	return r;
}

static int on_ctl_frame(struct dst *d, struct rx_stream *s, bool *repost)
{
	*repost = true;
	switch (s->rx.hdr.type) {
	case MIG_FRAME_SETUP:
		return do_setup(d, s);
	case MIG_FRAME_OPEN:
		return do_open(d, s);
	case MIG_FRAME_HANDOVER:
		return do_handover(d, s);
	case MIG_FRAME_POSTCOPY:
		return do_postcopy(d, s);
	case MIG_FRAME_COMMIT:
		*repost = false;
		return do_commit(d);
	case MIG_FRAME_SUMS_REQUEST:
		return send_sums(d, s);
	case MIG_FRAME_ABORT: {
		struct mig_error_msg m;

		mig_error_msg_parse(s->rx.buf.data, s->rx.hdr.length, &m, -ECANCELED);
		return mig_error_set(&d->err, -ECANCELED, "the source aborted: %s", m.msg);
	}
	default:
		return mig_error_set(&d->err, -EPROTO, "unexpected %s frame on the control "
				     "stream", mig_frame_type_to_string(s->rx.hdr.type));
	}
}

static int post_note(struct dst *d)
{
	d->note_op = (struct xport_op){ .fd = d->note[0], .iovcnt = 1, .total = 1 };
	d->note_op.iov[0] = (struct iovec){ &d->note_byte, 1 };
	return xport_ring_submit(&d->ring, &d->note_op, &d->err);
}

/* A worker woke us: it failed, or the last round is complete. */
static int on_note(struct dst *d)
{
	int r = 0;

	if (d->note_op.res < 0)
		return mig_error_set(&d->err, d->note_op.res, "the data stream workers' wake-up "
				     "channel failed: %s", strerror(-d->note_op.res));
	pthread_mutex_lock(&d->lock);
	if (d->werr.code) {
		d->err = d->werr;
		r = d->err.code;
	}
	pthread_mutex_unlock(&d->lock);
	if (r < 0)
		return r;
	pthread_mutex_lock(&d->lock);
	r = d->phase == MIG_PHASE_POSTCOPY && d->all_final;
	pthread_mutex_unlock(&d->lock);
	r = r ? pc_finish(d) : try_load(d);
	return r < 0 || d->phase == MIG_PHASE_DONE ? r : post_note(d);
}

/* The control stream, and the workers' wake-ups, until the VM runs here. */
static int run_loop(struct dst *d)
{
	struct rx_stream *s = &d->st[0];
	uint64_t last = mig_now_ms();
	int r;

	r = post_hdr(s);
	if (r >= 0)
		r = post_note(d);
	while (r >= 0 && d->phase != MIG_PHASE_DONE) {
		struct xport_op *op = NULL;
		bool repost;

		if (d->nstash) {
			op = d->stash[0];
			memmove(d->stash, d->stash + 1, --d->nstash * sizeof(d->stash[0]));
		} else {
			uint64_t data = __atomic_load_n(&d->last_data_ms, __ATOMIC_RELAXED);

			r = xport_ring_wait(&d->ring, 1000, &op, &d->err);
			if (r == -ETIME) {
				mig_error_clear(&d->err);
				last = data > last ? data : last;
				if (mig_now_ms() - last > IDLE_TIMEOUT_MS)
					return mig_error_set(&d->err, -ETIMEDOUT, "the source went "
							     "silent for %d s", IDLE_TIMEOUT_MS / 1000);
				r = 0;
				continue;
			}
			if (!op)
				return r;
			last = mig_now_ms();
		}
		if (xport_chan_sent(&s->tx, op)) {
			if (op->res < 0)
				return mig_error_set(&d->err, op->res, "replying to the source: %s",
						     strerror(-op->res));
			continue;
		}
		if (op == &d->note_op) {
			r = on_note(d);
			continue;
		}
		r = rx_step(s, op);
		if (r <= 0)
			continue;
		r = on_ctl_frame(d, s, &repost);
		/* after READY took a hand-over: HANDOVER's descriptor, before a
		 * receive that would drop it */
		if (r >= 0 && repost && d->handover_peek) {
			d->handover_peek = false;
			r = mig_handover_peek_fd(s->fd, IDLE_TIMEOUT_MS, d->o->cancel,
						 &d->handover_fd, &d->err);
		}
		if (r >= 0 && repost && d->phase != MIG_PHASE_DONE)
			r = post_hdr(s);
	}
	return r < 0 ? r : 0;
}

int mig_dest_run(const struct mig_in_opts *o, struct mig_vm **ret_vm, struct mig_error *err)
{
	struct dst d = {
		.o = o, .n = o->streams, .vm = o->vm, .note = { -1, -1 }, .handover_fd = -1,
		.lock = PTHREAD_MUTEX_INITIALIZER, .advance = PTHREAD_COND_INITIALIZER,
		.dev_lock = PTHREAD_MUTEX_INITIALIZER,
	};
	unsigned nr_devices = o->vm->nr_devices;   /* the VM may be gone at the end */
	int r;

	pthread_setname_np(pthread_self(), "mig-dest");
	*ret_vm = NULL;
	d.st = calloc(d.n + 1, sizeof(*d.st));
	if (!d.st) {
		r = mig_error_set(&d.err, -ENOMEM, "out of memory");
		goto out;
	}
	for (unsigned k = 0; k <= d.n; k++) {
		struct rx_stream *s = &d.st[k];

		s->owner = &d;
		s->index = k;
		s->fd = -1;
		s->ring = k ? &s->xw.ring : &d.ring;
		s->err = k ? &s->own_err : &d.err;
		s->rx = (struct xport_chan_rx){ .fd = -1, .ring = s->ring, .user = s };
	}
	d.cpu0 = mig_cpu_ms();
	d.phase = MIG_PHASE_SETUP;
	if (o->status)
		__atomic_store_n(&o->status->phase, MIG_PHASE_SETUP, __ATOMIC_RELAXED);
	r = accept_streams(&d, 0);
	if (r >= 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, d.note) < 0)
		r = mig_error_set(&d.err, -errno, "socketpair: %s", strerror(errno));
	if (r >= 0)
		r = xport_ring_init(&d.ring, 8, &d.err);
	if (r >= 0)
		r = run_loop(&d);
	/* Post-copy: a break is waited out, not given up (each side holds a
	 * half of the VM) */
	while (r < 0 && d.phase == MIG_PHASE_POSTCOPY && !(o->cancel && atomic_load(o->cancel))) {
		r = pc_wait_recover(&d);
		if (r < 0)
			break;
		r = run_loop(&d);
	}
	if (r < 0 && d.phase < MIG_PHASE_COMMIT && d.ring.ring && d.st[0].fd >= 0) {
		/* Tell the source why, so it rolls back with a reason, not a
		 * timeout: first, as the workers may take a moment to stop. */
		struct mig_error_msg m;

		mig_error_msg_fill(&m, r, d.err.msg);
		ctl_send(&d, MIG_FRAME_ABORT, &m, sizeof(m));
	}
	/* No worker may still write guest RAM once the VM can go. */
	workers_stop(&d);
	pc_thread_stop(&d);
	/* Let the last reply leave before the sockets close. */
	if (d.ring.ring && d.st[0].tx.busy) {
		struct xport_op *op;

		xport_ring_wait(&d.ring, 5000, &op, NULL);
	}
out:
	if (d.ring.ring)
		xport_ring_exit(&d.ring);
	for (unsigned k = 0; d.st && k <= d.n; k++) {
		if (d.st[k].fd >= 0)
			close(d.st[k].fd);
		mig_buf_free(&d.st[k].rx.buf);
		xport_chan_free(&d.st[k].tx);
	}
	for (unsigned k = 0; k < ARRAY_SIZE(d.aead); k++)
		xport_aead_free(d.aead[k]);
	for (int i = 0; i < 2; i++)
		if (d.note[i] >= 0)
			close(d.note[i]);
	if (r >= 0 && d.phase == MIG_PHASE_DONE) {
		*ret_vm = d.vm;
	} else if (d.phase == MIG_PHASE_POSTCOPY) {
		/* Post-copy broke: this half lacks the pages the source still
		 * holds, and its vCPUs are held out of the guest.  Neither half
		 * may go: this one is given back, failed, for the agent to hold,
		 * and it stays held (docs/phases.md §2.2). */
		pc_hold(&d);
		*ret_vm = d.vm;
	} else {
		if (r >= 0)
			r = mig_error_set(&d.err, -EPROTO, "the migration ended before commit");
		/* Before commit the source owns the VM: drop our copy, its
		 * devices to their end first. */
		struct mig_walk w = walk_opts(&d);

		if (d.phase != MIG_PHASE_ROLLBACK && mig_phase_arc_allowed(d.phase, MIG_PHASE_ROLLBACK)) {
			d.phase = MIG_PHASE_ROLLBACK;
			if (o->status)
				__atomic_store_n(&o->status->phase, d.phase, __ATOMIC_RELAXED);
		}

		mig_vm_walk(d.vm, MIG_STAGE_DISCARD, &w, NULL);
		d.vm->ops->destroy(d.vm);
	}
	if (d.handover_fd >= 0)
		close(d.handover_fd);
	free(d.st);
	free(d.stale);
	free(d.pc_todo);
	free(d.pc_asked_ns);
	mig_buf_free(&d.answers);
	for (unsigned i = 0; d.states && i < nr_devices; i++)
		mig_buf_free(&d.states[i]);
	free(d.states);
	free(d.dev_rx);
	if (r < 0 && err)
		*err = d.err;
	return r;
}
